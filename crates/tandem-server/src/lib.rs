//! Tandem's HTTP server: OpenAI-compatible routes over the local engines.
//!
//! The handlers in [`http`] are thin: they parse bodies with `tandem-types`, hand requests to
//! the [`pipeline`] (which drives `tandem-engine` and builds response objects and stream
//! chunks), and map errors to OpenAI-shaped bodies. [`state::AppState`] holds the loaded
//! models; [`metrics`] the Prometheus recorder. Chat requests go through the [`gateway`]:
//! the routing policy decides (see `tandem-policy`), the chosen local engine or remote
//! upstream answers (with fallbacks, PII masking and the cascade), and the ledger records it.
//! [`runtime`] holds the configuration in force; [`reload`] swaps it on file change/SIGHUP.

pub mod dialects;
pub mod drain;
pub mod gateway;
pub mod http;
pub mod kb;
pub mod metrics;
pub mod pipeline;
pub mod rag;
pub mod reload;
pub mod respond;
pub mod runtime;
pub mod state;

pub use http::router;
pub use state::{AppState, ServerOptions};

/// Serve `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: std::sync::Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Small writes (SSE chunks, short JSON bodies) go out at once instead of waiting for
    // Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
