//! The real server, the real SmolLM2-135M and MiniLM, over loopback HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

fn chat_body(prompt: &str, max_tokens: u32) -> Value {
    json!({"model": CHAT, "messages": user(prompt), "max_tokens": max_tokens, "temperature": 0, "seed": 1})
}

#[tokio::test]
async fn chat_greedy_counts_tokens_exactly_and_is_deterministic() {
    let base = server().await;
    let body = chat_body("Write a long story about a dragon who loves tea.", 12);
    let (s, a) = post(&base, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["model"], CHAT);
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &a["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "length");
    assert!(!choice["message"]["content"].as_str().unwrap().is_empty());
    let usage = &a["usage"];
    assert_eq!(usage["completion_tokens"], 12);
    // Prompt tokens equal the template-rendered conversation's tokens.
    let state = state();
    let engine = state.chat_engine(CHAT).unwrap();
    let msgs = vec![tandem_types::openai::ChatMessage {
        role: "user".into(),
        content: "Write a long story about a dragon who loves tea.".into(),
        name: None,
        ..Default::default()
    }];
    let expected_prompt = engine.chat_prompt(&msgs).unwrap().len() as u64;
    assert_eq!(usage["prompt_tokens"].as_u64().unwrap(), expected_prompt);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        expected_prompt + 12
    );
    let (_, b) = post(&base, "/v1/chat/completions", &body).await;
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
}

#[tokio::test]
async fn max_completion_tokens_and_n_choices() {
    let base = server().await;
    let mut body = chat_body("Tell me about the sea.", 100);
    body["max_completion_tokens"] = json!(5);
    body["n"] = json!(2);
    let (s, v) = post(&base, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    // Greedy: both choices are the same text.
    assert_eq!(
        choices[0]["message"]["content"],
        choices[1]["message"]["content"]
    );
    assert_eq!(v["usage"]["completion_tokens"], 10);
}

#[tokio::test]
async fn stop_sequence_cuts_the_text() {
    let base = server().await;
    let body = chat_body("List the days of the week, one per line.", 40);
    let (_, full) = post(&base, "/v1/chat/completions", &body).await;
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // Pick a stop string from the middle of the greedy answer.
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 4, "answer too short to test stop: {text:?}");
    let stop = words[3].to_string();
    let cut = text.find(&stop).unwrap();
    let mut body2 = body.clone();
    body2["stop"] = json!([stop, "zzzz-never"]);
    let (s, v) = post(&base, "/v1/chat/completions", &body2).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        &text[..cut]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() < 40);
}

#[tokio::test]
async fn streaming_framing_matches_non_streaming() {
    let base = server().await;
    let body = chat_body("Describe a sunrise over mountains.", 16);
    let (_, plain) = post(&base, "/v1/chat/completions", &body).await;
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let events = post_stream(&base, "/v1/chat/completions", &sbody).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    // Usage chunk last: empty choices; all earlier chunks carry usage null.
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage_chunk["usage"], plain["usage"]);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );
    // The chunk before usage finishes with an empty delta.
    let fin = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(fin["finish_reason"], "length");
    assert!(fin["delta"].as_object().unwrap().get("content").is_none());
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)
                .and_then(|x| x["delta"]["content"].as_str())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        text,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[tokio::test]
async fn stream_without_usage_ends_with_done() {
    let base = server().await;
    let mut body = chat_body("Hello!", 4);
    body["stream"] = json!(true);
    let events = post_stream(&base, "/v1/chat/completions", &body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(last["usage"].is_null());
}

#[tokio::test]
async fn logprobs_are_consistent_with_greedy_choice() {
    let base = server().await;
    let mut body = chat_body("What is the capital of France?", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (s, v) = post(&base, "/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let n = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    let eos = if v["choices"][0]["finish_reason"] == "stop" {
        1
    } else {
        0
    };
    assert_eq!(content.len(), n - eos);
    let mut joined = Vec::new();
    for t in content {
        let lp = t["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy decoding picks the most likely token.
        assert_eq!(top[0]["token"], t["token"]);
        assert!((top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-6);
        assert!(top[0]["logprob"].as_f64().unwrap() >= top[1]["logprob"].as_f64().unwrap());
        joined.extend(
            t["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8),
        );
    }
    assert_eq!(
        String::from_utf8(joined).unwrap(),
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[tokio::test]
async fn legacy_completions() {
    let base = server().await;
    let (s, v) = post(
        &base,
        "/v1/completions",
        &json!({"model": CHAT, "prompt": "The quick brown fox", "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    // OpenAI's legacy default is 16 tokens.
    let c = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(c == 16 || v["choices"][0]["finish_reason"] == "stop");
    let (s, v) = post(
        &base,
        "/v1/completions",
        &json!({"model": CHAT, "prompt": ["One, two,", "Red, green,"], "max_tokens": 3, "temperature": 0, "echo": true, "logprobs": 2}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert!(
        choices[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("One, two,")
    );
    assert!(
        choices[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Red, green,")
    );
    let lp = &choices[0]["logprobs"];
    assert_eq!(
        lp["tokens"].as_array().unwrap().len(),
        lp["top_logprobs"].as_array().unwrap().len()
    );
    assert!(lp["top_logprobs"][0].as_object().unwrap().len() <= 2);
    // Token-array prompt.
    let (s, v) = post(
        &base,
        "/v1/completions",
        &json!({"model": CHAT, "prompt": [504, 3303, 8], "max_tokens": 2}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn legacy_completion_stream() {
    let base = server().await;
    let body = json!({"model": CHAT, "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let events = post_stream(&base, "/v1/completions", &body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let (_, plain) = post(
        &base,
        "/v1/completions",
        &json!({"model": CHAT, "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}),
    )
    .await;
    let text: String = events[..events.len() - 2]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, plain["choices"][0]["text"].as_str().unwrap());
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let base = server().await;
    let inputs = json!([
        "The cat sits on the mat.",
        "貓坐在墊子上。",
        "Stock markets fell sharply today."
    ]);
    let (s, f) = post(
        &base,
        "/v1/embeddings",
        &json!({"model": EMBED, "input": inputs}),
    )
    .await;
    assert_eq!(s, 200, "{f}");
    assert_eq!(f["object"], "list");
    let data = f["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 384);
    }
    assert!(f["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    let (s, b) = post(
        &base,
        "/v1/embeddings",
        &json!({"model": EMBED, "input": inputs, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, 200);
    for (df, db) in data.iter().zip(b["data"].as_array().unwrap()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(db["embedding"].as_str().unwrap())
            .unwrap();
        let v: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let fl: Vec<f32> = df["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v, fl);
    }
    // Single string input.
    let (s, one) = post(
        &base,
        "/v1/embeddings",
        &json!({"model": EMBED, "input": "The cat sits on the mat."}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["data"][0]["embedding"], data[0]["embedding"]);
}

#[tokio::test]
async fn models_endpoints() {
    let base = server().await;
    let v: Value = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&CHAT) && ids.contains(&EMBED), "{ids:?}");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model" && m["owned_by"].is_string())
    );
    let r = client()
        .get(format!("{base}/v1/models/{CHAT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["id"], CHAT);
    let r = client()
        .get(format!("{base}/v1/models/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(assert_error_shape(&v)["code"], "model_not_found");
    let h: Value = client()
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
}

#[tokio::test]
async fn malformed_inputs_get_openai_errors_and_server_keeps_serving() {
    let base = server().await;
    let long = "word ".repeat(5000);
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", b"{not json".to_vec(), 400, None),
        ("/v1/chat/completions", b"".to_vec(), 400, None),
        ("/v1/chat/completions", b"[1,2]".to_vec(), 400, None),
        ("/v1/chat/completions", b"{\"model\":\"smollm2-135m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}".to_vec(), 400, None),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": []}).to_string().into_bytes(), 400, Some("messages")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("")}).to_string().into_bytes(), 400, Some("messages")),
        ("/v1/chat/completions", json!({"model": "no-such-model", "messages": user("hi")}).to_string().into_bytes(), 404, Some("model")),
        ("/v1/chat/completions", json!({"model": EMBED, "messages": user("hi")}).to_string().into_bytes(), 400, Some("model")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "temperature": -1}).to_string().into_bytes(), 400, Some("temperature")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "n": 100}).to_string().into_bytes(), 400, Some("n")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "tools": [{}]}).to_string().into_bytes(), 400, Some("tools[0].type")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "tools": []}).to_string().into_bytes(), 400, Some("tools")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}}}}]}).to_string().into_bytes(), 400, Some("tools[0].function.parameters")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}).to_string().into_bytes(), 400, Some("tool_choice.function.name")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {"required": ["a"]}}}}}).to_string().into_bytes(), 400, Some("response_format.json_schema.schema")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user("hi"), "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}}).to_string().into_bytes(), 400, Some("response_format.json_schema.schema")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": 3}}]}, {"role": "user", "content": "hi"}]}).to_string().into_bytes(), 400, Some("messages[0].tool_calls[0].function.arguments")),
        ("/v1/chat/completions", json!({"model": CHAT, "messages": user(&long)}).to_string().into_bytes(), 400, Some("messages")),
        ("/v1/completions", b"{\"model\": 3}".to_vec(), 400, Some("model")),
        ("/v1/completions", json!({"model": CHAT}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"model": CHAT, "prompt": [99999999]}).to_string().into_bytes(), 400, Some("prompt")),
        ("/v1/completions", json!({"model": CHAT, "prompt": "x", "max_tokens": "many"}).to_string().into_bytes(), 400, Some("max_tokens")),
        ("/v1/embeddings", b"nope".to_vec(), 400, None),
        ("/v1/embeddings", json!({"model": EMBED}).to_string().into_bytes(), 400, Some("input")),
        ("/v1/embeddings", json!({"model": EMBED, "input": []}).to_string().into_bytes(), 400, Some("input")),
        ("/v1/embeddings", json!({"model": EMBED, "input": [[999999]]}).to_string().into_bytes(), 400, Some("input")),
        ("/v1/embeddings", json!({"model": EMBED, "input": long.repeat(2)}).to_string().into_bytes(), 400, Some("input")),
        ("/v1/embeddings", json!({"model": EMBED, "input": "x", "dimensions": 12}).to_string().into_bytes(), 400, Some("dimensions")),
        ("/v1/embeddings", json!({"model": CHAT, "input": "x"}).to_string().into_bytes(), 400, Some("model")),
    ];
    for (path, body, status, param) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let r = post_raw(&base, path, body).await;
        assert_eq!(r.status().as_u16(), status, "{path} {shown}");
        let v: Value = r.json().await.unwrap();
        let e = assert_error_shape(&v);
        assert_eq!(e["param"].as_str(), param, "{path} {shown}: {v}");
    }
    let (s, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": CHAT, "messages": user(&long)}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // Unknown route and wrong method keep the shape.
    let r = client()
        .get(format!("{base}/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_error_shape(&r.json::<Value>().await.unwrap());
    let r = client()
        .get(format!("{base}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_error_shape(&r.json::<Value>().await.unwrap());
    // Still serving.
    let (s, _) = post(&base, "/v1/chat/completions", &chat_body("Hi", 2)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn concurrent_requests_do_not_cross_talk() {
    let base = server().await;
    let prompts = [
        "Name three fruits.",
        "What is 2 plus 2?",
        "Say hello in French.",
        "Describe the color blue.",
    ];
    let mut sequential = Vec::new();
    for p in prompts {
        let (_, v) = post(&base, "/v1/chat/completions", &chat_body(p, 12)).await;
        sequential.push(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let futs = prompts.iter().map(|p| {
        let base = base.clone();
        async move { post(&base, "/v1/chat/completions", &chat_body(p, 12)).await }
    });
    let concurrent = futures::future::join_all(futs).await;
    for (i, (s, v)) in concurrent.iter().enumerate() {
        assert_eq!(*s, 200);
        assert_eq!(
            v["choices"][0]["message"]["content"].as_str().unwrap(),
            sequential[i],
            "prompt {i} changed under batching"
        );
    }
}

#[tokio::test]
async fn metrics_are_exposed() {
    let base = server().await;
    let _ = post(&base, "/v1/chat/completions", &chat_body("Hi there", 3)).await;
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tandem_requests_total",
        "tandem_prompt_tokens_total",
        "tandem_generated_tokens_total",
        "tandem_time_to_first_token_seconds_bucket",
        "tandem_inter_token_latency_seconds_bucket",
        "tandem_queue_depth",
        "tandem_running_requests",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
    assert!(text.contains("model=\"smollm2-135m\""));
}
