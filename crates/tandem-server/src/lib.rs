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

/// [`serve`] with draining: on `signal`, refuse new requests and wait for those in
/// flight for at most `timeout`, then stop.
pub async fn serve_draining(
    listener: tokio::net::TcpListener,
    state: std::sync::Arc<AppState>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let drain = state.drain.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = {
        let drain = drain.clone();
        async move {
            signal.await;
            drain.start();
            tracing::info!(in_flight = drain.in_flight(), ?timeout, "draining");
            let _ = stop_tx.send(());
            if !drain.idle(timeout).await {
                tracing::warn!(
                    in_flight = drain.in_flight(),
                    "drain timeout: closing with requests still in flight"
                );
            }
        }
    };
    let server = serve(listener, state, shutdown);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        // The graceful shutdown itself waits for open connections: bound it by the timeout
        // (plus a moment for the last bytes).
        _ = async {
            if stop_rx.await.is_ok() {
                tokio::time::sleep(timeout + std::time::Duration::from_millis(500)).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => Ok(()),
    }
}
