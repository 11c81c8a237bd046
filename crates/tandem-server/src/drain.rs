//! Draining on shutdown: when the signal comes, new requests get a 503 with `Retry-After` (in
//! the caller's dialect) while the ones in flight — streams included, until their last byte —
//! finish, for at most the drain timeout; then the listener closes and the server returns
//! (the binary flushes the ledger after it). [`crate::serve_draining`] runs the sequence.

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tandem_types::ApiError;
use tokio::sync::watch;

/// Whether the server is draining, and how many requests are in flight.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: watch::Sender<usize>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: AtomicBool::new(false),
            in_flight: watch::Sender::new(0),
        }
    }
}

impl Drain {
    /// Requests (and streamed bodies) not finished yet.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Whether new requests are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Refuses new requests from now on.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Waits until nothing is in flight or `timeout` passes; whether it emptied.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let mut rx = self.in_flight.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    fn enter(self: &Arc<Self>) -> Guard {
        self.in_flight.send_modify(|n| *n += 1);
        Guard(self.clone())
    }
}

/// One request in flight; dropped when its response (or its streamed body) is done.
struct Guard(Arc<Drain>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The 503 of a draining server, in Anthropic's shape on `/v1/messages`, else OpenAI's.
fn refusal(path: &str) -> Response {
    let e = ApiError::unavailable("The server is shutting down; retry on another replica.", 5);
    let body = if path.starts_with("/v1/messages") {
        tandem_types::anthropic::error_body(&e)
    } else {
        serde_json::to_value(e.body()).unwrap_or_default()
    };
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Middleware: refuse while draining (health checks still answer), else count the request
/// until its body has been sent.
pub(crate) async fn track(State(drain): State<Arc<Drain>>, req: Request, next: Next) -> Response {
    if drain.is_draining() && req.uri().path() != "/health" {
        return refusal(req.uri().path());
    }
    let guard = drain.enter();
    let resp = next.run(req).await;
    if resp.body().size_hint().exact().is_some() {
        // A body already in memory: the request is done.
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // A stream: the guard lives until its last event has been sent (or the client left).
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _ = &guard;
        chunk
    }));
    Response::from_parts(parts, body)
}
