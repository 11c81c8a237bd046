//! Building responses shared by every route: errors in OpenAI's shape, the body limit,
//! SSE, the routing headers and request metrics.

use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tandem_types::{ApiError, ErrorKind};
use tokio_stream::wrappers::ReceiverStream;

/// An [`ApiError`] as an HTTP response: status, OpenAI-shaped body, `Retry-After`.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.0.body())).into_response();
        if let Some(secs) = self.0.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

pub(crate) type HttpResult = Result<Response, HttpError>;

/// Read the body with the configured limit, answering 413 in OpenAI's shape.
pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(body, state.options.max_body_bytes)
        .await
        .map_err(|_| {
            HttpError(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "The request body exceeds the limit of {} bytes.",
                    state.options.max_body_bytes
                ),
            ))
        })
}

pub(crate) fn sse(rx: tokio::sync::mpsc::Receiver<String>) -> Response {
    let stream =
        ReceiverStream::new(rx).map(|data| Ok::<Event, Infallible>(Event::default().data(data)));
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(10))
                .text("keep-alive"),
        )
        .into_response()
}

pub(crate) fn finish(
    model: &str,
    endpoint: &'static str,
    start: Instant,
    r: HttpResult,
) -> Response {
    let resp = match r {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(status = e.0.status(), error = %e.0.message, endpoint, "request rejected");
            e.into_response()
        }
    };
    crate::metrics::request(
        model,
        endpoint,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

pub(crate) fn model_label(state: &AppState, model: &str) -> String {
    // Bounded label cardinality: unknown model names are not echoed into metrics.
    if state.has_model(model) {
        model.to_string()
    } else {
        "unknown".into()
    }
}

pub(crate) fn routing_headers(
    resp: &mut Response,
    route: Option<&str>,
    model: Option<&str>,
    overhead_ms: f64,
) {
    let h = resp.headers_mut();
    if let Some(r) = route.and_then(|r| HeaderValue::from_str(r).ok()) {
        h.insert("x-tandem-route", r);
    }
    if let Some(m) = model.and_then(|m| HeaderValue::from_str(m).ok()) {
        h.insert("x-tandem-model", m);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{overhead_ms:.3}")) {
        h.insert("x-tandem-overhead-ms", v);
    }
}
