//! Scripted upstreams (wiremock) for the gateway tests: a configuration with a remote `gpt`
//! beside the local SmolLM2, canned completions and SSE bodies, what the upstream received.

use super::client;
use serde_json::{Value, json};
use tandem_ledger::Ledger;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const LOCAL: &str = "smollm2-135m";

pub fn config(upstream: &str, extra_model: &str, routes: &str) -> String {
    format!(
        r#"
models:
  - name: {LOCAL}
    local: {LOCAL}
  - name: minilm-l6
    local: minilm-l6
  - name: gpt
    provider: openai
    base_url: {upstream}/v1
    api_key: test-key-123456789
    model: gpt-4o-mini
    price: {{input: 1.0, output: 2.0}}
    retries: 0
    timeout_ms: 3000
{extra_model}
policy:
  local_model: {LOCAL}
  llm_model: gpt
routes:
{routes}
"#
    )
}

pub fn completion_body(content: &str) -> Value {
    json!({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    })
}

pub fn sse_body(parts: &[&str], tail: &str) -> String {
    let mut s = String::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    s.push_str(&format!(
        "data: {}\n\n",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    ));
    for p in parts {
        s.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({"content": p}), Value::Null)
        ));
    }
    s.push_str(tail);
    s
}

pub fn sse_ok_tail() -> String {
    let fin = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                       "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}});
    format!("data: {fin}\n\ndata: {usage}\n\ndata: [DONE]\n\n")
}

pub async fn upstream_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

pub async fn post_h(
    base: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = client().post(format!("{base}{path}")).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

pub fn content_of(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

pub fn temp_ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    (dir, l)
}

/// Makes `up` answer chat completions with `body` (a JSON completion).
pub async fn mount_json(up: &MockServer, body: Value) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(up)
        .await;
}

/// Makes `up` answer chat completions with `body` as an event stream.
pub async fn mount_sse(up: &MockServer, body: String) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body),
        )
        .mount(up)
        .await;
}
