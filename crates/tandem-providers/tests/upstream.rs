//! End-to-end tests over loopback HTTP: wiremock for scripted responses, and a tiny raw TCP
//! server for byte-level control of streams (tiny writes, stalls, abrupt closes).
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tandem_providers::{
    BreakerState, ProviderError, ProviderKind, Upstream, UpstreamConfig, UpstreamStream,
};
use tandem_types::openai::{ChatCompletionChunk, ChatMessage, ChatRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-very-secret-123";

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
        name: None,
        ..Default::default()
    }
}

fn req() -> ChatRequest {
    ChatRequest::new("gpt", vec![msg("system", "Be brief."), msg("user", "hi")])
}

fn cfg(kind: ProviderKind, base: &str) -> UpstreamConfig {
    let mut c = UpstreamConfig::new("gpt", kind, base, "up-model").with_api_key(KEY);
    c.backoff_initial = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(50);
    c.request_timeout = Duration::from_secs(5);
    c.idle_timeout = Duration::from_secs(5);
    c
}

fn openai(base: &str) -> Upstream {
    Upstream::new(cfg(ProviderKind::OpenAi, base)).unwrap()
}

fn completion_json() -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
        "model": "up-model-2024", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    })
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Drain a stream (bounded in time so a hang fails the test), checking that nothing follows
/// an error.
async fn collect(s: UpstreamStream) -> (Vec<ChatCompletionChunk>, Option<ProviderError>) {
    let mut stream = s.stream;
    let mut chunks = Vec::new();
    let fut = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(c) => chunks.push(c),
                Err(e) => {
                    assert!(stream.next().await.is_none(), "items after an error");
                    return Some(e);
                }
            }
        }
        None
    };
    let err = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("stream hung");
    (chunks, err)
}

fn text_of(chunks: &[ChatCompletionChunk]) -> String {
    chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP server
// ---------------------------------------------------------------------------------------------

enum Step {
    Write(Vec<u8>),
    Sleep(u64),
    Hang,
}

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

fn w(s: &str) -> Step {
    Step::Write(s.as_bytes().to_vec())
}

/// `s` written in pieces of `n` bytes with `ms` between them.
fn pieces(s: &str, n: usize, ms: u64) -> Vec<Step> {
    s.as_bytes()
        .chunks(n)
        .flat_map(|c| [Step::Write(c.to_vec()), Step::Sleep(ms)])
        .collect()
}

async fn read_request(sock: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = sock.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
    }
}

/// Serve one script per incoming connection, in order; returns the base URL (`…/v1`).
async fn raw_server(scripts: Vec<Vec<Step>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for script in scripts {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                read_request(&mut sock).await;
                for step in script {
                    match step {
                        Step::Write(b) => {
                            if sock.write_all(&b).await.is_err() {
                                return;
                            }
                            let _ = sock.flush().await;
                        }
                        Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                        Step::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

const OPENAI_SSE: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model-2024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model-2024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"},\"finish_reason\":null}]}\r\n\r\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model-2024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld €\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model-2024\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n",
    "data: [DONE]\n\n",
);

const FIRST_CHUNK: &str = "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"}}]}\n\n";

fn assert_full_openai_stream(chunks: &[ChatCompletionChunk]) {
    assert_eq!(chunks.len(), 5, "{chunks:#?}");
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert_eq!(text_of(chunks), "Héllo wörld €");
    assert_eq!(chunks[3].choices[0].finish_reason.as_deref(), Some("stop"));
    assert!(chunks[4].choices.is_empty());
    assert_eq!(chunks[4].usage.unwrap().total_tokens, 8);
    assert!(chunks.iter().all(|c| c.model == "up-model-2024"));
}

// ---------------------------------------------------------------------------------------------
// OpenAI, non-streaming
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_happy_path_sends_exact_body_and_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("x-title", "tandem"))
        .and(body_partial_json(json!({"model": "up-model"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_json()))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = cfg(ProviderKind::OpenAi, &format!("{}/v1/", server.uri()));
    c.headers = vec![("X-Title".into(), "tandem".into())];
    let up = Upstream::new(c).unwrap();
    let mut r = req();
    r.max_tokens = Some(16);
    r.sampling.temperature = 0.2;
    r.sampling.top_k = 5; // llama.cpp-only: never sent
    let reply = up.chat(&r).await.unwrap();
    assert_eq!(reply.attempts, 1);
    assert_eq!(reply.completion.model, "up-model-2024");
    assert_eq!(reply.completion.choices[0].message.content, "Hello!");
    assert_eq!(reply.completion.usage.total_tokens, 11);
    let expected = json!({
        "model": "up-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "temperature": 0.2,
    });
    assert_eq!(bodies(&server).await, vec![expected.clone()]);
    assert_eq!(reply.sent, expected);
    assert_eq!(up.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_json()))
        .with_priority(2)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let reply = up.chat(&req()).await.unwrap();
    assert_eq!(reply.attempts, 3);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"error": {"message": "slow down", "type": "rate_limit_error"}}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_json()))
        .with_priority(2)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let t0 = Instant::now();
    let reply = up.chat(&req()).await.unwrap();
    let waited = t0.elapsed();
    assert_eq!(reply.attempts, 2);
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

#[tokio::test]
async fn retry_after_beyond_cap_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let t0 = Instant::now();
    let e = up.chat(&req()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        e,
        ProviderError::Status { status: 429, retry_after: Some(ra), .. } if ra == Duration::from_secs(120)
    ));
    let api = e.to_api_error();
    assert_eq!((api.status(), api.retry_after), (429, Some(120)));
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_their_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "max_tokens is too large", "type": "invalid_request_error",
                      "param": "max_tokens", "code": null}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let e = up.chat(&req()).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.upstream(), "gpt");
    let api = e.to_api_error();
    assert_eq!(api.status(), 400);
    assert_eq!(api.message, "max_tokens is too large");
    // A 4xx proves the upstream is alive: the breaker stays closed.
    assert_eq!(up.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn retries_exhausted_returns_last_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "down"}})),
        )
        .expect(3)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let e = up.chat(&req()).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Status { status: 503, message, .. } if message == "down"),
        "{e}"
    );
    let api = e.to_api_error();
    assert_eq!(api.status(), 502);
    assert!(api.message.contains("gpt") && api.message.contains("down"));
}

#[tokio::test]
async fn slow_upstream_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion_json())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let mut c = cfg(ProviderKind::OpenAi, &format!("{}/v1", server.uri()));
    c.request_timeout = Duration::from_millis(300);
    c.max_retries = 0;
    let up = Upstream::new(c).unwrap();
    let t0 = Instant::now();
    let e = up.chat(&req()).await.unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        matches!(
            e,
            ProviderError::Timeout {
                phase: "response",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.to_api_error().status(), 504);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = cfg(ProviderKind::OpenAi, &format!("http://{addr}/v1"));
    c.max_retries = 1;
    let up = Upstream::new(c).unwrap();
    let e = up.chat(&req()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Connect { .. }), "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.to_api_error().status(), 502);
}

#[tokio::test]
async fn malformed_json_response_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"choices\": [oops"))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let e = up.chat(&req()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Protocol { .. }), "{e}");
    assert_eq!(e.to_api_error().status(), 502);
}

// ---------------------------------------------------------------------------------------------
// OpenAI, streaming
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openai_stream_happy_path() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(OPENAI_SSE, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let s = up.chat_stream(&req()).await.unwrap();
    assert_eq!(s.attempts, 1);
    assert_eq!(s.sent["stream"], json!(true));
    let (chunks, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_full_openai_stream(&chunks);
}

#[tokio::test]
async fn stream_split_into_tiny_writes() {
    let mut script = vec![w(SSE_HEAD)];
    script.extend(pieces(OPENAI_SSE, 3, 1));
    let base = raw_server(vec![script]).await;
    let up = openai(&base);
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_full_openai_stream(&chunks);
}

#[tokio::test]
async fn malformed_data_ends_stream_with_protocol_error() {
    let base = raw_server(vec![vec![
        w(SSE_HEAD),
        w(FIRST_CHUNK),
        Step::Sleep(20),
        w("data: {not json\n\n"),
        Step::Hang,
    ]])
    .await;
    let up = openai(&base);
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert_eq!(text_of(&chunks), "Hi");
    let err = err.unwrap();
    assert!(matches!(err, ProviderError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn invalid_utf8_ends_stream_with_protocol_error() {
    let base = raw_server(vec![vec![
        w(SSE_HEAD),
        w(FIRST_CHUNK),
        Step::Write(b"data: \xff\xfe\n\n".to_vec()),
        Step::Hang,
    ]])
    .await;
    let up = openai(&base);
    let (_, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert!(
        matches!(err, Some(ProviderError::Protocol { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn close_before_done_is_interrupted() {
    let base = raw_server(vec![vec![w(SSE_HEAD), w(FIRST_CHUNK), Step::Sleep(20)]]).await;
    let up = openai(&base);
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert_eq!(chunks.len(), 1);
    let err = err.unwrap();
    assert!(matches!(err, ProviderError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("[DONE]"), "{err}");
    assert_eq!(err.to_api_error().status(), 502);
}

#[tokio::test]
async fn truncated_chunked_body_is_interrupted() {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let chunk = format!("{:x}\r\n{FIRST_CHUNK}\r\n", FIRST_CHUNK.len());
    let base = raw_server(vec![vec![
        w(head),
        w(&chunk),
        Step::Sleep(20),
        w("40\r\ndata: {\"cho"),
    ]])
    .await;
    let up = openai(&base);
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert_eq!(chunks.len(), 1);
    assert!(
        matches!(err, Some(ProviderError::Interrupted { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn stalled_stream_hits_idle_timeout() {
    let base = raw_server(vec![vec![w(SSE_HEAD), w(FIRST_CHUNK), Step::Hang]]).await;
    let mut c = cfg(ProviderKind::OpenAi, &base);
    c.idle_timeout = Duration::from_millis(300);
    let up = Upstream::new(c).unwrap();
    let s = up.chat_stream(&req()).await.unwrap();
    let t0 = Instant::now();
    let (chunks, err) = collect(s).await;
    let waited = t0.elapsed();
    assert_eq!(chunks.len(), 1);
    let err = err.unwrap();
    assert!(
        matches!(err, ProviderError::Timeout { phase: "idle", after, .. } if after == Duration::from_millis(300)),
        "{err}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn keepalive_comments_reset_the_idle_timer() {
    let mut script = vec![w(SSE_HEAD), w(FIRST_CHUNK)];
    for _ in 0..4 {
        script.push(Step::Sleep(300));
        script.push(w(": ping\n\n"));
    }
    script.push(w("data: [DONE]\n\n"));
    let base = raw_server(vec![script]).await;
    let mut c = cfg(ProviderKind::OpenAi, &base);
    c.idle_timeout = Duration::from_millis(1000);
    let up = Upstream::new(c).unwrap();
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(chunks.len(), 1);
}

#[tokio::test]
async fn error_event_mid_stream_is_yielded() {
    let sse = format!(
        "{FIRST_CHUNK}data: {{\"error\":{{\"message\":\"model crashed\",\"type\":\"server_error\"}}}}\n\n"
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert_eq!(chunks.len(), 1);
    let err = err.unwrap();
    assert!(matches!(err, ProviderError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("model crashed"), "{err}");
}

#[tokio::test]
async fn stream_is_retried_until_the_first_chunk() {
    // First connection: headers, then closed before any chunk. Second: a full stream.
    let mut second = vec![w(SSE_HEAD)];
    second.extend(pieces(OPENAI_SSE, 64, 0));
    let base = raw_server(vec![vec![w(SSE_HEAD), w(": hello\n\n")], second]).await;
    let up = openai(&base);
    let s = up.chat_stream(&req()).await.unwrap();
    assert_eq!(s.attempts, 2);
    let (chunks, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_full_openai_stream(&chunks);
}

#[tokio::test]
async fn stream_error_status_and_first_byte_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"message": "no such model", "type": "invalid_request_error"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let e = up.chat_stream(&req()).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Status { status: 404, .. }),
        "{e}"
    );
    assert_eq!(e.to_api_error().status(), 404);

    let base = raw_server(vec![vec![w(SSE_HEAD), Step::Hang]]).await;
    let mut c = cfg(ProviderKind::OpenAi, &base);
    c.request_timeout = Duration::from_millis(300);
    c.max_retries = 0;
    let up = Upstream::new(c).unwrap();
    let t0 = Instant::now();
    let e = up.chat_stream(&req()).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::Timeout {
                phase: "first byte",
                ..
            }
        ),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn json_answer_to_a_stream_request_is_a_protocol_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_json()))
        .expect(1)
        .mount(&server)
        .await;
    let up = openai(&format!("{}/v1", server.uri()));
    let e = up.chat_stream(&req()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Protocol { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------------------------

fn anthropic(server: &MockServer) -> Upstream {
    let mut c = cfg(ProviderKind::Anthropic, &server.uri());
    c.name = "claude".into();
    Upstream::new(c).unwrap()
}

#[tokio::test]
async fn anthropic_request_and_response_mapping() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-real",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 4}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let up = anthropic(&server);
    let mut r = req();
    r.messages.push(msg("user", "again"));
    r.sampling.temperature = 1.5;
    r.sampling.stop = vec!["END".into()];
    let reply = up.chat(&r).await.unwrap();
    let expected = json!({
        "model": "up-model",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi\n\nagain"}],
        "max_tokens": 1024,
        "temperature": 1.0,
        "stop_sequences": ["END"],
    });
    assert_eq!(bodies(&server).await, vec![expected.clone()]);
    assert_eq!(reply.sent, expected);
    let c = reply.completion;
    assert_eq!(c.model, "claude-real");
    assert_eq!(c.object, "chat.completion");
    assert_eq!(c.choices[0].message.content, "Hi there");
    assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!((c.usage.prompt_tokens, c.usage.completion_tokens), (12, 4));
}

fn anthropic_sse(tail: &str) -> String {
    let mut s = String::new();
    let mut ev = |name: &str, data: Value| {
        s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_7", "type": "message", "role": "assistant",
            "model": "claude-real", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 21, "output_tokens": 1}}}),
    );
    ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    ev("ping", json!({"type": "ping"}));
    for t in ["Hello", ", world"] {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        );
    }
    s.push_str(tail);
    s
}

const ANTHROPIC_TAIL: &str = concat!(
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":6}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test]
async fn anthropic_stream_mapping() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(
            json!({"stream": true, "max_tokens": 1024}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(anthropic_sse(ANTHROPIC_TAIL), "text/event-stream"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let up = anthropic(&server);
    let s = up.chat_stream(&req()).await.unwrap();
    assert!(s.sent.get("stream_options").is_none());
    let (chunks, err) = collect(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(chunks.len(), 5, "{chunks:#?}");
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "msg_7" && c.model == "claude-real")
    );
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert_eq!(text_of(&chunks), "Hello, world");
    assert_eq!(
        chunks[3].choices[0].finish_reason.as_deref(),
        Some("length")
    );
    assert!(chunks[3].choices[0].delta.content.is_none());
    assert!(chunks[4].choices.is_empty());
    let u = chunks[4].usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (21, 6, 27)
    );
}

#[tokio::test]
async fn anthropic_error_event_mid_stream() {
    let tail = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(anthropic_sse(tail), "text/event-stream"),
        )
        .mount(&server)
        .await;
    let up = anthropic(&server);
    let (chunks, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    assert_eq!(text_of(&chunks), "Hello, world");
    let err = err.unwrap();
    assert!(matches!(err, ProviderError::Interrupted { .. }), "{err}");
    assert!(
        err.to_string().contains("Overloaded") && err.upstream() == "claude",
        "{err}"
    );
}

#[tokio::test]
async fn anthropic_stream_without_message_stop_is_interrupted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(anthropic_sse(""), "text/event-stream"),
        )
        .mount(&server)
        .await;
    let up = anthropic(&server);
    let (_, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
    let err = err.unwrap();
    assert!(matches!(err, ProviderError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("message_stop"), "{err}");
}

#[tokio::test]
async fn anthropic_overloaded_is_retried_and_unsupported_is_refused_locally() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(529).set_body_json(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(anthropic_sse(ANTHROPIC_TAIL), "text/event-stream"),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let up = anthropic(&server);
    let s = up.chat_stream(&req()).await.unwrap();
    assert_eq!(s.attempts, 2);
    let (_, err) = collect(s).await;
    assert!(err.is_none());

    let mut r = req();
    r.n = 3;
    let e = up.chat(&r).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Unsupported { param: "n", .. }),
        "{e}"
    );
    assert_eq!(e.to_api_error().status(), 400);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn breaker_opens_fails_fast_and_recovers_after_cooldown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_json()))
        .with_priority(2)
        .mount(&server)
        .await;
    let mut c = cfg(ProviderKind::OpenAi, &format!("{}/v1", server.uri()));
    c.max_retries = 0;
    c.breaker_failures = 2;
    c.breaker_cooldown = Duration::from_millis(1000);
    let up = Upstream::new(c).unwrap();
    assert!(up.chat(&req()).await.is_err());
    assert_eq!(up.breaker_state(), BreakerState::Closed);
    assert!(up.chat(&req()).await.is_err());
    assert!(matches!(up.breaker_state(), BreakerState::Open { .. }));

    let t0 = Instant::now();
    let e = up.chat(&req()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert!(matches!(e, ProviderError::CircuitOpen { .. }), "{e}");
    let api = e.to_api_error();
    assert_eq!(api.status(), 503);
    assert!(api.retry_after.is_some());
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    // Streaming calls are refused too.
    assert!(matches!(
        up.chat_stream(&req()).await.unwrap_err(),
        ProviderError::CircuitOpen { .. }
    ));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // The cooldown passes on tokio's clock, advanced rather than waited for (the breaker
    // reads `tokio::time::Instant`); the clock runs on from there.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(1050)).await;
    tokio::time::resume();
    assert_eq!(up.breaker_state(), BreakerState::HalfOpen);
    let reply = up.chat(&req()).await.unwrap();
    assert_eq!(reply.attempts, 1);
    assert_eq!(up.breaker_state(), BreakerState::Closed);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn broken_streams_count_as_failures() {
    let base = raw_server(vec![
        vec![w(SSE_HEAD), w(FIRST_CHUNK)],
        vec![w(SSE_HEAD), w(FIRST_CHUNK)],
    ])
    .await;
    let mut c = cfg(ProviderKind::OpenAi, &base);
    c.breaker_failures = 2;
    let up = Upstream::new(c).unwrap();
    for _ in 0..2 {
        let (_, err) = collect(up.chat_stream(&req()).await.unwrap()).await;
        assert!(matches!(err, Some(ProviderError::Interrupted { .. })));
    }
    assert!(matches!(up.breaker_state(), BreakerState::Open { .. }));
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_key_never_leaks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error"}
        })))
        .mount(&server)
        .await;
    let c = cfg(ProviderKind::OpenAi, &format!("{}/v1", server.uri()));
    assert!(!format!("{c:?}").contains(KEY));
    let up = Upstream::new(c).unwrap();
    assert!(!format!("{up:?}").contains(KEY));
    let e = up.chat(&req()).await.unwrap_err();
    for text in [e.to_string(), format!("{e:?}"), e.to_api_error().message] {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("***"), "{text}");
    }
    // Tandem's key for the upstream was refused: not the client's fault.
    assert_eq!(e.to_api_error().status(), 502);

    let bad = Upstream::new(
        UpstreamConfig::new("x", ProviderKind::OpenAi, "not a url", "m").with_api_key(KEY),
    )
    .unwrap_err();
    assert!(matches!(bad, ProviderError::Config { .. }));
    assert!(!bad.to_string().contains(KEY));
}

#[test]
fn upstream_types_are_shareable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Upstream>();
    send_sync::<ProviderError>();
    send::<UpstreamStream>();
}

fn weather_tool() -> tandem_types::tools::Tool {
    tandem_types::tools::Tool {
        kind: "function".into(),
        function: tandem_types::tools::FunctionDef {
            name: "weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: None,
        },
    }
}

/// A conversation with a call and its result, offering the tool again.
fn tool_req() -> ChatRequest {
    let mut r = req();
    let mut call = msg("assistant", "Checking.");
    call.tool_calls
        .push(tandem_types::tools::ToolCall::function(
            "toolu_1",
            "weather",
            r#"{"city": "Taipei"}"#.into(),
        ));
    r.messages.push(call);
    let mut result = msg("tool", "23C");
    result.tool_call_id = Some("toolu_1".into());
    r.messages.push(result);
    r.messages.push(msg("user", "And Tainan?"));
    r.tools.push(weather_tool());
    r.tool_choice = tandem_types::tools::ToolChoice::Required;
    r.parallel_tool_calls = false;
    r.forward_headers = vec![
        ("anthropic-version".into(), "2023-06-01".into()),
        (
            "anthropic-beta".into(),
            "fine-grained-tool-streaming-2025-05-14".into(),
        ),
    ];
    r
}

#[tokio::test]
async fn anthropic_tools_are_translated_both_ways_and_client_headers_forwarded() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-real",
            "content": [{"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Tainan"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 9}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let reply = anthropic(&server).chat(&tool_req()).await.unwrap();
    let sent = &bodies(&server).await[0];
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Taipei"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "23C"},
                {"type": "text", "text": "And Tainan?"}]}
        ])
    );
    assert_eq!(
        sent["tools"],
        json!([{"name": "weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let ch = &reply.completion.choices[0];
    assert_eq!(ch.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(ch.message.content, "Let me look.");
    assert_eq!(ch.message.tool_calls[0].id, "toolu_2");
    assert_eq!(ch.message.tool_calls[0].function.name, "weather");
    let args: Value = serde_json::from_str(&ch.message.tool_calls[0].function.arguments).unwrap();
    assert_eq!(args, json!({"city": "Tainan"}));
}

#[tokio::test]
async fn anthropic_streamed_tool_use_becomes_tool_call_deltas() {
    let server = MockServer::start().await;
    let mut s = String::new();
    let mut ev = |name: &str, data: Value| s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_8", "model": "claude-real",
        "usage": {"input_tokens": 30, "output_tokens": 1}}}),
    );
    ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_3", "name": "weather", "input": {}}}),
    );
    for part in ["{\"city\": ", "\"Tainan\"}"] {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": part}}),
        );
    }
    ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
        "usage": {"output_tokens": 12}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(s, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let st = anthropic(&server).chat_stream(&tool_req()).await.unwrap();
    let (chunks, err) = collect(st).await;
    assert!(err.is_none(), "{err:?}");
    let deltas: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .flat_map(|c| c.delta.tool_calls.iter().flatten())
        .collect();
    assert_eq!(deltas[0].id.as_deref(), Some("toolu_3"));
    assert_eq!(
        deltas[0].function.as_ref().unwrap().name.as_deref(),
        Some("weather")
    );
    let args: String = deltas
        .iter()
        .filter_map(|d| d.function.as_ref()?.arguments.clone())
        .collect();
    assert_eq!(args, "{\"city\": \"Tainan\"}");
    assert!(deltas.iter().all(|d| d.index == 0));
    let finish = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .find_map(|c| c.finish_reason.clone());
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn anthropic_structured_output_is_a_forced_tool_whose_input_is_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(body_partial_json(
            json!({"tool_choice": {"type": "tool", "name": "json_output"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_03", "type": "message", "role": "assistant", "model": "claude-real",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "json_output",
                "input": {"name": "王小明", "age": 42}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 5}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut r = req();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}});
    r.response_format = tandem_types::tools::ResponseFormat::JsonSchema {
        name: "person".into(),
        schema: schema.clone(),
        strict: true,
    };
    let reply = anthropic(&server).chat(&r).await.unwrap();
    assert_eq!(reply.sent["tools"][0]["input_schema"], schema);
    let ch = &reply.completion.choices[0];
    assert!(ch.message.tool_calls.is_empty());
    assert_eq!(ch.finish_reason.as_deref(), Some("stop"));
    let v: Value = serde_json::from_str(&ch.message.content).unwrap();
    assert_eq!(v, json!({"name": "王小明", "age": 42}));
    // Combined with other tools it is refused, never silently dropped.
    r.tools.push(weather_tool());
    r.tool_choice = tandem_types::tools::ToolChoice::Auto;
    let e = anthropic(&server).chat(&r).await.unwrap_err();
    assert_eq!(e.to_api_error().param.as_deref(), Some("response_format"));
}
