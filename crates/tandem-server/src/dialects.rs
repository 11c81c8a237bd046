//! The three chat dialects over one gateway: `POST /v1/chat/completions` (OpenAI),
//! `POST /v1/messages` (Anthropic) and `POST /v1/responses` (OpenAI Responses). Each is
//! parsed into the internal [`ChatRequest`] by `tandem-types`, routed and answered by
//! [`gateway::chat`] (auth, PII guard, routing, cascade, RAG, fallbacks, ledger), and the
//! answer — a completion or a stream of chunks — is rendered back in the client's dialect,
//! errors included.

use crate::gateway;
use crate::respond::{HttpError, finish, model_label, read_body, routing_headers, sse};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tandem_types::dialect::{Dialect, StreamEncoder};
use tandem_types::openai::{ChatCompletionChunk, ChatRequest};
use tandem_types::{ApiError, ErrorKind, anthropic, openai, responses};
use tokio_stream::wrappers::ReceiverStream;

/// An error in Anthropic's shape, with the status and `Retry-After`.
fn anthropic_error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(anthropic::error_body(e))).into_response();
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// An error in `dialect`'s shape.
fn error_response(dialect: Dialect, e: ApiError) -> Response {
    match dialect {
        Dialect::Anthropic => anthropic_error(&e),
        Dialect::OpenAiChat | Dialect::Responses => HttpError(e).into_response(),
    }
}

fn endpoint(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAiChat => "chat",
        Dialect::Anthropic => "messages",
        Dialect::Responses => "responses",
    }
}

fn parse(
    state: &AppState,
    dialect: Dialect,
    bytes: &[u8],
    meta: &gateway::RequestMeta,
) -> Result<ChatRequest, ApiError> {
    let drop_unknown = state.options.drop_unknown_params;
    match dialect {
        Dialect::OpenAiChat => openai::parse_chat_request(bytes, drop_unknown),
        Dialect::Anthropic => anthropic::parse_request(bytes, &meta.headers, drop_unknown),
        Dialect::Responses => responses::parse_request(bytes, drop_unknown),
    }
}

/// What a gateway stream payload is.
enum Payload {
    Chunk(Box<ChatCompletionChunk>),
    Error(ApiError),
    Done,
}

/// The kind of an error from its OpenAI `type` (for errors that arrive inside a stream).
fn kind_of(ty: Option<&str>) -> ErrorKind {
    match ty {
        Some("invalid_request_error") => ErrorKind::InvalidRequest,
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") => ErrorKind::Forbidden,
        Some("rate_limit_error") => ErrorKind::RateLimited,
        Some("service_unavailable_error") => ErrorKind::Unavailable,
        Some("timeout_error") => ErrorKind::Timeout,
        _ => ErrorKind::Internal,
    }
}

fn classify(p: &str) -> Option<Payload> {
    if p == "[DONE]" {
        return Some(Payload::Done);
    }
    let v: Value = serde_json::from_str(p).ok()?;
    if let Some(e) = v.get("error") {
        let mut err = ApiError::new(
            kind_of(e.get("type").and_then(Value::as_str)),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("stream failed"),
        );
        err.code = e.get("code").and_then(Value::as_str).map(str::to_string);
        err.param = e.get("param").and_then(Value::as_str).map(str::to_string);
        return Some(Payload::Error(err));
    }
    serde_json::from_value(v)
        .ok()
        .map(|c| Payload::Chunk(Box::new(c)))
}

/// The stream of a non-OpenAI dialect: each gateway payload re-encoded by `enc` as named
/// events.
fn translated_sse(
    rx: tokio::sync::mpsc::Receiver<String>,
    mut enc: impl StreamEncoder + Send + 'static,
) -> Response {
    let stream = ReceiverStream::new(rx).flat_map(move |p| {
        let events = match classify(&p) {
            Some(Payload::Chunk(c)) => enc.chunk(&c),
            Some(Payload::Error(e)) => enc.error(&e),
            Some(Payload::Done) => enc.finish(),
            None => Vec::new(),
        };
        futures::stream::iter(events.into_iter().map(|(name, data)| {
            Ok::<Event, Infallible>(Event::default().event(name).data(data.to_string()))
        }))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// Serve one chat request of `dialect`.
pub(crate) async fn chat(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
    dialect: Dialect,
) -> Response {
    let meta = gateway::RequestMeta::from_headers(&headers);
    let start = meta.start;
    let mut model = String::from("unknown");
    let r: Result<Response, Response> = async {
        let bytes = read_body(&state, body)
            .await
            .map_err(|e| error_response(dialect, e.0))?;
        let req = parse(&state, dialect, &bytes, &meta).map_err(|e| error_response(dialect, e))?;
        // The Responses envelope echoes the request's tools and format.
        let echo = (dialect == Dialect::Responses).then(|| responses::Echo::of(&req));
        match gateway::chat(state.clone(), req, meta).await {
            Ok(routed) => {
                model = model_label(&state, &routed.model);
                let mut resp = match (routed.reply, dialect, &echo) {
                    (gateway::Reply::Json(c), Dialect::OpenAiChat, _) => {
                        axum::Json(c).into_response()
                    }
                    (gateway::Reply::Json(c), Dialect::Anthropic, _) => {
                        axum::Json(anthropic::render_message(&c)).into_response()
                    }
                    (gateway::Reply::Json(c), Dialect::Responses, Some(echo)) => {
                        axum::Json(responses::render_response(echo, &c)).into_response()
                    }
                    (gateway::Reply::Stream(rx), Dialect::Anthropic, _) => translated_sse(
                        rx,
                        anthropic::StreamEncoder::new(&routed.request_id, &routed.model),
                    ),
                    (gateway::Reply::Stream(rx), Dialect::Responses, Some(echo)) => translated_sse(
                        rx,
                        responses::StreamEncoder::new(
                            echo,
                            &routed.request_id,
                            &routed.model,
                            crate::pipeline::now_secs(),
                        ),
                    ),
                    (gateway::Reply::Stream(rx), _, _) => sse(rx),
                    (gateway::Reply::Json(c), _, None) => axum::Json(c).into_response(),
                };
                routing_headers(
                    &mut resp,
                    Some(&routed.route),
                    Some(&routed.model),
                    routed.overhead_ms,
                );
                if let Ok(v) = HeaderValue::from_str(&routed.request_id) {
                    resp.headers_mut().insert("x-tandem-request-id", v);
                }
                Ok(resp)
            }
            Err(f) => {
                if let Some(m) = &f.model {
                    model = model_label(&state, m);
                }
                let mut resp = error_response(dialect, f.error);
                routing_headers(
                    &mut resp,
                    f.route.as_deref(),
                    f.model.as_deref(),
                    f.overhead_ms,
                );
                Err(resp)
            }
        }
    }
    .await;
    let resp = r.unwrap_or_else(|resp| resp);
    finish(&model, endpoint(dialect), start, Ok(resp))
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(state, headers, body, Dialect::Anthropic).await
}

/// `POST /v1/responses`.
pub(crate) async fn responses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat(state, headers, body, Dialect::Responses).await
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` for the prompt the answering
/// model would see. Exact for a local model (its own template and tokenizer, tools
/// included); for a remote model an estimate with a local tokenizer (or ~4 bytes a token
/// when none is loaded). The policy decides the model for `auto`, as for a real request.
pub(crate) async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let meta = gateway::RequestMeta::from_headers(&headers);
    let start = meta.start;
    let r: Result<Response, ApiError> = async {
        let bytes = read_body(&state, body).await.map_err(|e| e.0)?;
        let req = anthropic::parse_count_request(&bytes, state.options.drop_unknown_params)?;
        let (_, route, model, overhead) = gateway::explain(&state, &req, &meta).await?;
        let engine = model
            .as_deref()
            .and_then(|m| state.chat_engine(m).ok())
            .or_else(|| state.chat_engines().next());
        let n = match engine {
            Some(e) => crate::pipeline::chat_prompt(e, &req)?.len(),
            None => {
                req.messages.iter().map(|m| m.content.len()).sum::<usize>() / 4
                    + req
                        .tools
                        .iter()
                        .map(|t| t.function.parameters.to_string().len())
                        .sum::<usize>()
                        / 4
            }
        };
        let mut resp = axum::Json(json!({"input_tokens": n})).into_response();
        routing_headers(&mut resp, Some(&route), model.as_deref(), overhead);
        Ok(resp)
    }
    .await;
    let resp = r.unwrap_or_else(|e| anthropic_error(&e));
    finish("none", "count_tokens", start, Ok(resp))
}
