//! `answer_script` through the gateway over real HTTP: a scripted upstream that answers in
//! Simplified Chinese (whole, streamed with phrases split across chunks, in tool-call
//! arguments, in a JSON answer, through the Anthropic dialect), the real local SLM, and the
//! real ledger. What the model was told, what the client got, what the ledger says.
#![allow(clippy::unwrap_used)]

mod common;

use common::upstream::*;
use common::*;
use serde_json::{Value, json};
use wiremock::MockServer;

const ROUTES: &str = "  - name: to-gpt\n    then: {model: gpt}\n";

#[tokio::test]
async fn a_traditional_request_gets_a_traditional_answer_and_the_ledger_says_so() {
    let up = MockServer::start().await;
    mount_json(
        &up,
        completion_body(
            "台北是台湾的首都，这个软件需要优化。请写信到 [EMAIL_1]。\n```\n# 这是代码\n```",
        ),
    )
    .await;
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(
        &config(&up.uri(), "", ROUTES),
        Some(ledger.clone()),
    ))
    .await;
    let (status, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("請用一句話介紹台北，並寄到 amy@example.com。")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "臺北是臺灣的首都，這個軟體需要最佳化。請寫信到 amy@example.com。\n```\n# 这是代码\n```"
    );
    // The model was told, in a system message put first; the PII mask still lines up.
    let seen = upstream_bodies(&up).await;
    let messages = seen[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("台灣繁體中文")
    );
    let asked = messages[1]["content"].as_str().unwrap();
    assert!(
        asked.contains("[EMAIL_1]") && !asked.contains("amy@"),
        "{asked}"
    );
    ledger.flush().unwrap();
    let r = &ledger.recent(1).unwrap()[0];
    assert_eq!(r.answer_script.as_deref(), Some("zh-TW"));
    assert!(r.script_converted);
    assert!(
        r.reasons.iter().any(|x| x.contains("answer in zh-TW")),
        "{:?}",
        r.reasons
    );
}

#[tokio::test]
async fn an_existing_system_message_gets_the_instruction_appended() {
    let up = MockServer::start().await;
    mount_json(&up, completion_body("好的。")).await;
    let base = serve(routed_state(&config(&up.uri(), "", ROUTES), None)).await;
    let (status, _) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": [
            {"role": "system", "content": "你是保險客服。"},
            {"role": "user", "content": "請問理賠需要哪些文件？"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let seen = upstream_bodies(&up).await;
    let messages = seen[0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("你是保險客服。\n\n") && system.contains("不要使用簡體字"),
        "{system}"
    );
}

#[tokio::test]
async fn streams_convert_phrases_split_across_chunks_and_are_recorded() {
    let up = MockServer::start().await;
    let body = sse_body(&["这个软", "件需要优", "化", "，谢谢"], &sse_ok_tail());
    mount_sse(&up, body).await;
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(
        &config(&up.uri(), "", ROUTES),
        Some(ledger.clone()),
    ))
    .await;
    let events = post_stream(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "messages": user("這個軟體要怎麼優化？")}),
    )
    .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(content_of(&events), "這個軟體需要最佳化，謝謝");
    ledger.flush().unwrap();
    let r = &ledger.recent(1).unwrap()[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.answer_script.as_deref(), Some("zh-TW"));
    assert!(r.script_converted);
}

#[tokio::test]
async fn tool_call_arguments_and_json_answers_convert_string_values_only() {
    let up = MockServer::start().await;
    mount_json(
        &up,
        json!({
            "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "lookup_policy", "arguments": "{\"城市\": \"台湾省台北市\", \"备注\": \"请尽快处理\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
        }),
    )
    .await;
    let base = serve(routed_state(&config(&up.uri(), "", ROUTES), None)).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup_policy", "parameters": {
        "type": "object", "properties": {"城市": {"type": "string"}, "备注": {"type": "string"}}}}}]);
    let (status, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "tools": tools, "messages": user("請幫我查詢保單進度。")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    // The function's name and the keys are the client's own: unchanged.
    assert_eq!(call["name"], "lookup_policy");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"城市": "臺灣省臺北市", "备注": "請儘快處理"}));
}

#[tokio::test]
async fn english_requests_are_left_alone_and_off_turns_it_off() {
    let up = MockServer::start().await;
    mount_json(&up, completion_body("台湾 means Taiwan.")).await;
    let cfg = config(&up.uri(), "", ROUTES).replace(
        "policy:\n",
        "policy:\n  tenants:\n    raw: {answer_script: off}\n",
    );
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(&cfg, Some(ledger.clone()))).await;
    let (_, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("How do you write Taiwan in Chinese?")}),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "台湾 means Taiwan.");
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-tandem-tenant", "raw")
        .json(&json!({"model": "auto", "messages": user("請用一句話介紹台北。")}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "台湾 means Taiwan.");
    let seen = upstream_bodies(&up).await;
    assert!(seen.iter().all(|b| b["messages"][0]["role"] == "user"));
    ledger.flush().unwrap();
    assert!(
        ledger
            .recent(2)
            .unwrap()
            .iter()
            .all(|r| r.answer_script.is_none() && !r.script_converted)
    );
}

#[tokio::test]
async fn the_anthropic_dialect_and_explain_see_it_too() {
    let up = MockServer::start().await;
    mount_json(&up, completion_body("这是台湾的网络。")).await;
    let base = serve(routed_state(&config(&up.uri(), "", ROUTES), None)).await;
    let (status, v) = post(
        &base,
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 50, "messages": user("這是哪裡的網路？")}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"][0]["text"], "這是臺灣的網路。");
    let (status, v) = post(
        &base,
        "/v1/route/explain",
        &json!({"model": "auto", "messages": user("這是哪裡的網路？")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["answer_script"]["locale"], "zh-TW");
    assert!(
        v["answer_script"]["why"]
            .as_str()
            .unwrap()
            .contains("Traditional Chinese")
    );
}

/// The real local SLM: asked in Traditional Chinese, its answer has no Simplified-only
/// character, whatever it wrote (the 135M model writes mostly Simplified or English).
#[tokio::test]
async fn the_local_model_answers_in_traditional_characters() {
    let up = MockServer::start().await;
    let routes = format!("  - name: local\n    then: {{model: {LOCAL}}}\n");
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(
        &config(&up.uri(), "", &routes),
        Some(ledger.clone()),
    ))
    .await;
    for stream in [false, true] {
        let body = json!({"model": "auto", "stream": stream, "max_tokens": 48, "temperature": 0,
                          "messages": user("請用中文介紹一下台灣的健保制度。")});
        let text = if stream {
            content_of(&post_stream(&base, "/v1/chat/completions", &body).await)
        } else {
            let (status, v) = post(&base, "/v1/chat/completions", &body).await;
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(!text.is_empty());
        assert!(!tandem_zh::has_simplified(&text), "{text}");
    }
    ledger.flush().unwrap();
    let recs = ledger.recent(2).unwrap();
    assert!(
        recs.iter()
            .all(|r| r.answer_script.as_deref() == Some("zh-TW") && r.local)
    );
}

#[tokio::test]
async fn streamed_tool_call_arguments_convert_across_fragments() {
    let up = MockServer::start().await;
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let call = |args: &str, first: bool| {
        let mut d = json!({"index": 0, "function": {"arguments": args}});
        if first {
            d["id"] = json!("call_1");
            d["type"] = json!("function");
            d["function"]["name"] = json!("lookup_policy");
        }
        chunk(json!({"tool_calls": [d]}), Value::Null)
    };
    let mut body = String::new();
    for c in [
        chunk(json!({"role": "assistant"}), Value::Null),
        call("{\"备注\": \"请尽", true),
        call("快处理\"}", false),
        chunk(json!({}), json!("tool_calls")),
    ] {
        body.push_str(&format!("data: {c}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    mount_sse(&up, body).await;
    let base = serve(routed_state(&config(&up.uri(), "", ROUTES), None)).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup_policy", "parameters": {
        "type": "object", "properties": {"备注": {"type": "string"}}}}}]);
    let events = post_stream(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "tools": tools, "messages": user("請幫我查詢保單進度。")}),
    )
    .await;
    let args: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .flat_map(|v| {
            v["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["function"]["arguments"].as_str().map(str::to_string))
        .collect();
    assert_eq!(args, "{\"备注\": \"請儘快處理\"}");
}

#[tokio::test]
async fn held_back_text_is_not_lost_when_a_stream_ends_without_a_finish() {
    let up = MockServer::start().await;
    // No finishing chunk, and the last clause has no punctuation: still sent, before [DONE].
    let body = sse_body(&["好的，这个软", "件"], "data: [DONE]\n\n");
    mount_sse(&up, body).await;
    let base = serve(routed_state(&config(&up.uri(), "", ROUTES), None)).await;
    let events = post_stream(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "messages": user("這個軟體好用嗎？")}),
    )
    .await;
    assert_eq!(content_of(&events), "好的，這個軟體");
    assert_eq!(events.last().unwrap(), "[DONE]");
}
