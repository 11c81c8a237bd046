//! The Anthropic Messages and OpenAI Responses dialects over real HTTP: the real SmolLM2 as
//! the local model, scripted OpenAI and Anthropic upstreams (wiremock), the real ledger.
//! Translation both ways, streamed tool calls, fallbacks across dialects, errors in each
//! dialect's shape.
#![allow(clippy::unwrap_used)]

mod common;

use common::upstream::{post_h, temp_ledger};
use common::*;
use serde_json::{Value, json};
use tandem_ledger::Ledger;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LOCAL: &str = "smollm2-135m";

/// `gpt` (OpenAI-compatible) and `claude` (Anthropic) upstreams; `claude` falls back to
/// `gpt`. `routes` decide.
fn config(openai: &str, anthropic: &str, routes: &str) -> String {
    format!(
        r#"
models:
  - name: {LOCAL}
    local: {LOCAL}
  - name: minilm-l6
    local: minilm-l6
  - name: gpt
    provider: openai
    base_url: {openai}/v1
    api_key: test-key-123456789
    model: gpt-4o-mini
    retries: 0
    timeout_ms: 3000
  - name: claude
    provider: anthropic
    base_url: {anthropic}
    api_key: ant-key-123456
    model: claude-x
    retries: 0
    timeout_ms: 3000
    fallback: [gpt]
policy:
  local_model: {LOCAL}
  llm_model: gpt
routes:
{routes}
"#
    )
}

/// A gateway over both scripted upstreams whose one rule sends everything to `model`.
async fn gateway_to(
    oa: &MockServer,
    an: &MockServer,
    model: &str,
    ledger: Option<Ledger>,
) -> String {
    let routes = format!("  - name: r\n    then: {{model: {model}}}\n");
    serve(routed_state(&config(&oa.uri(), &an.uri(), &routes), ledger)).await
}

/// A named-event SSE response as `(event, data)` pairs.
async fn named_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = resp.text().await.unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            } else if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push(d);
            } else {
                panic!("bad SSE line {line:?}");
            }
        }
        if !data.is_empty() {
            let v: Value = serde_json::from_str(&data.join("\n")).unwrap();
            out.push((name.expect("every event is named"), v));
        }
    }
    out
}

fn weather_tools() -> Value {
    json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

fn openai_tool_call_body() -> Value {
    json!({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_up1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"台北\"}"}}]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}
    })
}

#[tokio::test]
async fn anthropic_in_anthropic_out_forwards_headers_and_translates_tools() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("anthropic-beta", "interleaved-thinking-2025-05-14"))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("x-api-key", "ant-key-123456"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Taipei"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 33, "output_tokens": 11}
        })))
        .expect(1)
        .mount(&an)
        .await;
    let (_dir, ledger) = temp_ledger();
    let base = gateway_to(&oa, &an, "claude", Some(ledger.clone())).await;
    let body = json!({"model": "auto", "max_tokens": 100, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Taipei?"}], "tools": weather_tools()});
    let resp = post_h(
        &base,
        "/v1/messages",
        &body,
        &[
            ("x-api-key", "client-key"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-model"], "claude");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "Checking."})
    );
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["id"], "toolu_9");
    assert_eq!(v["content"][1]["input"], json!({"city": "Taipei"}));
    assert_eq!(v["usage"], json!({"input_tokens": 33, "output_tokens": 11}));
    let sent: Value =
        serde_json::from_slice(&an.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["tools"], weather_tools());
    assert_eq!(sent["system"], "Be brief.");
    ledger.flush().unwrap();
    let rec = &ledger.recent(1).unwrap()[0];
    assert_eq!(rec.dialect.as_deref(), Some("anthropic"));
    assert_eq!(rec.tool_calls, ["get_weather"]);
    assert!(!rec.constrained && rec.left_machine);
}

#[tokio::test]
async fn anthropic_request_falls_back_to_an_openai_upstream_with_its_tools() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(529).set_body_json(
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ))
        .mount(&an)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_tool_call_body()))
        .expect(1)
        .mount(&oa)
        .await;
    let base = gateway_to(&oa, &an, "claude", None).await;
    let body = json!({"model": "auto", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "台北天氣？"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "台中"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "25°C"}, {"type": "text", "text": "那台北呢？"}]}
        ],
        "tools": weather_tools(), "tool_choice": {"type": "any"}});
    let resp = post_h(&base, "/v1/messages", &body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-model"], "gpt");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["name"], "get_weather");
    assert_eq!(v["content"][0]["input"], json!({"city": "台北"}));
    assert_eq!(v["stop_reason"], "tool_use");
    let sent: Value =
        serde_json::from_slice(&oa.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"],
        weather_tools()[0]["input_schema"]
    );
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(msgs[2]["role"], "tool");
    assert_eq!(msgs[2]["tool_call_id"], "toolu_1");
    assert_eq!(msgs[2]["content"], "25°C");
    assert_eq!(msgs[3]["content"], "那台北呢？");
}

fn openai_tool_stream() -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut s = String::new();
    let mut push = |v: Value| s.push_str(&format!("data: {v}\n\n"));
    push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    push(chunk(json!({"content": "Let me check."}), Value::Null));
    push(chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_s1", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]}),
        Value::Null,
    ));
    for part in ["{\"city\": ", "\"Taipei\"}"] {
        push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
            Value::Null,
        ));
    }
    push(chunk(json!({}), json!("tool_calls")));
    push(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 13, "total_tokens": 34}}),
    );
    s.push_str("data: [DONE]\n\n");
    s
}

#[tokio::test]
async fn streamed_tool_calls_in_anthropic_and_responses_events() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(openai_tool_stream(), "text/event-stream"),
        )
        .mount(&oa)
        .await;
    let base = gateway_to(&oa, &an, "gpt", None).await;

    // Anthropic events.
    let body = json!({"model": "auto", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "Weather?"}], "tools": weather_tools()});
    let evs = named_events(post_h(&base, "/v1/messages", &body, &[]).await).await;
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (n, v) in &evs {
        assert_eq!(v["type"], n.as_str(), "event name and type agree");
    }
    assert_eq!(
        evs[3].1["delta"],
        json!({"type": "text_delta", "text": "Let me check."})
    );
    assert_eq!(
        evs[5].1["content_block"],
        json!({"type": "tool_use", "id": "call_s1", "name": "get_weather", "input": {}})
    );
    let json_text: String = evs[6..8]
        .iter()
        .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(json_text, "{\"city\": \"Taipei\"}");
    assert_eq!(evs[9].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs[9].1["usage"]["output_tokens"], 13);

    // Responses events.
    let body = json!({"model": "auto", "stream": true, "input": "Weather?",
        "tools": [{"type": "function", "name": "get_weather", "parameters": weather_tools()[0]["input_schema"]}]});
    let evs = named_events(post_h(&base, "/v1/responses", &body, &[]).await).await;
    let types: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(types.first(), Some(&"response.created"));
    assert_eq!(types.last(), Some(&"response.completed"));
    assert!(types.contains(&"response.output_text.delta"));
    let args: String = evs
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(args, "{\"city\": \"Taipei\"}");
    let done = &evs.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Let me check.");
    assert_eq!(done["output"][1]["type"], "function_call");
    assert_eq!(done["output"][1]["call_id"], "call_s1");
    assert_eq!(done["output"][1]["name"], "get_weather");
    assert_eq!(done["usage"]["total_tokens"], 34);
}

#[tokio::test]
async fn the_local_model_answers_all_three_dialects_alike() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    let (_dir, ledger) = temp_ledger();
    let base = gateway_to(&oa, &an, LOCAL, Some(ledger.clone())).await;
    let prompt = "Name a colour.";
    let (s, chat) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "max_tokens": 12, "temperature": 0, "messages": user(prompt)}),
    )
    .await;
    assert_eq!(s, 200, "{chat}");
    let want = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!want.is_empty());
    let (s, msg) = post(
        &base,
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 12, "temperature": 0, "messages": user(prompt)}),
    )
    .await;
    assert_eq!(s, 200, "{msg}");
    assert_eq!(msg["content"][0]["text"], want);
    assert_eq!(msg["stop_reason"], "max_tokens");
    assert_eq!(msg["usage"]["output_tokens"], 12);
    let (s, resp) = post(
        &base,
        "/v1/responses",
        &json!({"model": "auto", "max_output_tokens": 12, "temperature": 0, "input": prompt}),
    )
    .await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["output"][0]["content"][0]["text"], want);
    assert_eq!(resp["status"], "incomplete");
    assert_eq!(resp["incomplete_details"]["reason"], "max_output_tokens");
    // Streamed, the same text.
    let evs = named_events(
        post_h(
            &base,
            "/v1/messages",
            &json!({"model": "auto", "max_tokens": 12, "temperature": 0, "stream": true, "messages": user(prompt)}),
            &[],
        )
        .await,
    )
    .await;
    let text: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, want);
    assert_eq!(evs.last().unwrap().0, "message_stop");
    let evs = named_events(
        post_h(
            &base,
            "/v1/responses",
            &json!({"model": "auto", "max_output_tokens": 12, "temperature": 0, "stream": true, "input": prompt}),
            &[],
        )
        .await,
    )
    .await;
    let (last, done) = evs.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], want);
    // count_tokens: the local model's own template; more text, more tokens.
    let (s, short) = post(
        &base,
        "/v1/messages/count_tokens",
        &json!({"model": "auto", "messages": user(prompt)}),
    )
    .await;
    assert_eq!(s, 200, "{short}");
    let (_, long) = post(
        &base,
        "/v1/messages/count_tokens",
        &json!({"model": "auto", "messages": user(&prompt.repeat(5)), "tools": weather_tools()}),
    )
    .await;
    let (short, long) = (
        short["input_tokens"].as_u64().unwrap(),
        long["input_tokens"].as_u64().unwrap(),
    );
    assert!(short > 4 && long > short + 20, "{short} {long}");
    ledger.flush().unwrap();
    let dialects: Vec<Option<String>> = ledger
        .recent(10)
        .unwrap()
        .into_iter()
        .map(|r| r.dialect)
        .collect();
    for d in ["openai", "anthropic", "responses"] {
        assert!(dialects.contains(&Some(d.to_string())), "{dialects:?}");
    }
}

#[tokio::test]
async fn errors_come_in_each_dialects_shape() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    let cfg = config(
        &oa.uri(),
        &an.uri(),
        "  - name: r\n    then: {model: gpt}\n",
    )
    .replace(
        "policy:\n",
        "api_keys:\n  - name: team\n    key: team-secret-123\npolicy:\n  require_api_key: true\n",
    );
    let base = serve(routed_state(&cfg, None)).await;
    let key = [("x-api-key", "team-secret-123")];
    let anthropic_error = |v: &Value, ty: &str, needle: &str| {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], ty, "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m}");
    };
    // No key: 401 in Anthropic's shape.
    let body = json!({"model": "auto", "max_tokens": 5, "messages": user("hi")});
    let r = post_h(&base, "/v1/messages", &body, &[]).await;
    assert_eq!(r.status(), 401);
    anthropic_error(&r.json().await.unwrap(), "authentication_error", "");
    // Malformed bodies: 400 naming the field.
    let cases = [
        (
            json!({"model": "auto", "messages": user("hi")}),
            "max_tokens",
        ),
        (
            json!({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            "messages.0.content.0.type",
        ),
        (
            json!({"model": "auto", "max_tokens": 5, "messages": user("hi"), "tools": [{"name": "f"}]}),
            "tools.0.input_schema",
        ),
        (
            json!({"model": "auto", "max_tokens": 5, "messages": user("hi"), "tool_choice": {"type": "tool", "name": "nope"}}),
            "tool_choice",
        ),
    ];
    for (body, field) in cases {
        let r = post_h(&base, "/v1/messages", &body, &key).await;
        assert_eq!(r.status(), 400, "{body}");
        anthropic_error(&r.json().await.unwrap(), "invalid_request_error", field);
    }
    let r = client()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "team-secret-123")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    anthropic_error(&r.json().await.unwrap(), "invalid_request_error", "JSON");
    // An unknown model named directly: 404 in Anthropic's shape.
    let body = json!({"model": "no-such-model", "max_tokens": 5, "messages": user("hi")});
    let r = post_h(&base, "/v1/messages", &body, &key).await;
    assert_eq!(r.status(), 404);
    anthropic_error(&r.json().await.unwrap(), "not_found_error", "no-such-model");
    // An upstream failure: Anthropic's error type for the status.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .mount(&oa)
        .await;
    let body = json!({"model": "auto", "max_tokens": 5, "messages": user("hi")});
    let r = post_h(&base, "/v1/messages", &body, &key).await;
    assert!(r.status().is_server_error());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    // Responses: OpenAI's shape with `param`.
    let auth = [("authorization", "Bearer team-secret-123")];
    for (body, param) in [
        (json!({"model": "auto"}), "input"),
        (
            json!({"model": "auto", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "auto", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            "text.format.schema",
        ),
    ] {
        let r = post_h(&base, "/v1/responses", &body, &auth).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        let e = assert_error_shape(&v);
        assert_eq!(e["param"], param, "{v}");
    }
    // The server keeps serving.
    let r = client().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn personal_data_in_tool_arguments_is_masked_out_and_restored_back() {
    let oa = MockServer::start().await;
    let an = MockServer::start().await;
    // The upstream answers with a call whose arguments carry the placeholders, streamed in
    // fragments that split them.
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut sse = String::new();
    sse.push_str(&format!(
        "data: {}\n\n",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    ));
    sse.push_str(&format!(
        "data: {}\n\n",
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_m", "type": "function",
        "function": {"name": "send_mail", "arguments": ""}}]}),
            Value::Null
        )
    ));
    for part in ["{\"to\": \"[EMA", "IL_1]\", \"cc\": \"[EMAIL_2", "]\"}"] {
        sse.push_str(&format!(
            "data: {}\n\n",
            chunk(
                json!({"tool_calls": [{"index": 0,
            "function": {"arguments": part}}]}),
                Value::Null
            )
        ));
    }
    sse.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        chunk(json!({}), json!("tool_calls"))
    ));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .mount(&oa)
        .await;
    let base = gateway_to(&oa, &an, "gpt", None).await;
    let mail_tool = json!([{"type": "function", "function": {"name": "send_mail",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "cc": {"type": "string"}}}}}]);
    let body = json!({"model": "auto", "stream": true, "tools": mail_tool, "messages": [
        {"role": "user", "content": "Mail alice.chen@example.com and cc bob@example.org"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "send_mail", "arguments": "{\"to\": \"alice.chen@example.com\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "bounced: alice.chen@example.com"},
        {"role": "user", "content": "Try again with bob in cc."}
    ]});
    let resp = post_h(&base, "/v1/chat/completions", &body, &[]).await;
    let events = sse_events(resp).await;
    let args: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .flat_map(|v| {
            v["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["function"]["arguments"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"to": "alice.chen@example.com", "cc": "bob@example.org"})
    );
    // Nothing personal left the machine: not in the history's call arguments, not in the
    // tool result.
    let sent = String::from_utf8(oa.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(
        !sent.contains("alice.chen") && !sent.contains("bob@"),
        "{sent}"
    );
    let v: Value = serde_json::from_str(&sent).unwrap();
    let call_args = v["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert!(call_args.contains("[EMAIL_1]"), "{call_args}");
    assert!(
        v["messages"][2]["content"]
            .as_str()
            .unwrap()
            .contains("[EMAIL_1]")
    );
}
