//! Tandem's HTTP server: OpenAI-compatible routes over the local engines.
//!
//! The handlers in [`http`] are thin: they parse bodies with `tandem-types`, hand requests to
//! the [`pipeline`] (which drives `tandem-engine` and builds response objects and stream
//! chunks), and map errors to OpenAI-shaped bodies. [`state::AppState`] holds the loaded
//! models; [`metrics`] the Prometheus recorder.

pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod state;

pub use http::router;
pub use state::{AppState, ServerOptions};

/// Serve `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: std::sync::Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
