//! The gateway over real HTTP: the real SmolLM2 as the local SLM, scripted upstreams
//! (wiremock) as remote LLMs, the real ledger in a temp dir.
#![allow(clippy::unwrap_used)]

mod common;

use common::upstream::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn remote_route_masks_pii_and_restores_it() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion_body("Sure, I will email [EMAIL_1] today.")),
        )
        .mount(&up)
        .await;
    let (_dir, ledger) = temp_ledger();
    let cfg = config(&up.uri(), "", "  - name: to-gpt\n    then: {model: gpt}\n");
    let state = routed_state(&cfg, Some(ledger.clone()));
    let base = serve(state).await;
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("Please email alice.chen@example.com about my order")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-route"], "to-gpt");
    assert_eq!(resp.headers()["x-tandem-model"], "gpt");
    let overhead: f64 = resp.headers()["x-tandem-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Sure, I will email alice.chen@example.com today."
    );
    assert_eq!(v["tandem"]["route"], "to-gpt");
    // What the upstream saw: its own model id, the key, a placeholder instead of the address.
    let seen = upstream_bodies(&up).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["model"], "gpt-4o-mini");
    let sent = seen[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        sent.contains("[EMAIL_1]") && !sent.contains("alice.chen"),
        "{sent}"
    );
    let auth = up.received_requests().await.unwrap()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, "Bearer test-key-123456789");
    // The ledger: who answered, what left (masked), the cost.
    ledger.flush().unwrap();
    let r = &ledger.recent(1).unwrap()[0];
    assert_eq!(r.route, "to-gpt");
    assert_eq!(r.answered_by.as_deref(), Some("gpt"));
    assert!(r.left_machine && !r.local);
    assert_eq!(r.pii_kinds, vec!["email".to_string()]);
    assert_eq!(r.pii_action.as_deref(), Some("mask"));
    let out = r.sent_out.as_ref().unwrap().to_string();
    assert!(
        out.contains("[EMAIL_1]") && !out.contains("alice.chen"),
        "{out}"
    );
    assert!((r.cost_usd - (12.0 * 1.0 + 8.0 * 2.0) / 1e6).abs() < 1e-12);
    assert_eq!(r.remote_prompt_tokens, 12);
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn remote_stream_restores_placeholders_split_across_chunks() {
    let up = MockServer::start().await;
    let body = sse_body(
        &["Mail [EMA", "IL_1", "] now, ", "call [PHONE_1]."],
        &sse_ok_tail(),
    );
    mount_sse(&up, body).await;
    let cfg = config(&up.uri(), "", "  - name: to-gpt\n    then: {model: gpt}\n");
    let base = serve(routed_state(&cfg, None)).await;
    let events = post_stream(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true,
                "messages": user("I am bob@example.org, phone 0912-345-678")}),
    )
    .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(
        content_of(&events),
        "Mail bob@example.org now, call 0912-345-678."
    );
    // The client did not ask for usage: no usage-only chunk; every chunk names Tandem's model.
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(!v["choices"].as_array().unwrap().is_empty(), "{e}");
        assert_eq!(v["model"], "gpt");
    }
    let sent = upstream_bodies(&up).await;
    let text = sent[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        text.contains("[EMAIL_1]") && text.contains("[PHONE_1]") && !text.contains("0912"),
        "{text}"
    );
    assert_eq!(sent[0]["stream"], true);
}

#[tokio::test]
async fn failing_upstream_falls_back_to_the_local_model() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "boom"}})),
        )
        .mount(&up)
        .await;
    let cfg = config(&up.uri(), "", "  - name: to-gpt\n    then: {model: gpt}\n").replace(
        "    timeout_ms: 3000\n",
        &format!("    timeout_ms: 3000\n    fallback: [{LOCAL}]\n"),
    );
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(&cfg, Some(ledger.clone()))).await;
    let body =
        json!({"model": "auto", "messages": user("Say hi"), "max_tokens": 4, "temperature": 0});
    let resp = post_h(&base, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-model"], LOCAL);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], LOCAL);
    assert_eq!(v["tandem"]["fallback_from"], json!(["gpt"]));
    // Streaming falls back before the first byte too.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let events = post_stream(&base, "/v1/chat/completions", &sbody).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    ledger.flush().unwrap();
    let recs = ledger.recent(2).unwrap();
    for r in &recs {
        assert_eq!(r.models_called, vec!["gpt".to_string(), LOCAL.to_string()]);
        assert_eq!(r.answered_by.as_deref(), Some(LOCAL));
        assert!(
            r.reasons.iter().any(|x| x.contains("fell back")),
            "{:?}",
            r.reasons
        );
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn dead_slow_and_broken_upstreams_fail_cleanly() {
    // Dead: nothing listens.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let base = serve(routed_state(
        &config(&dead, "", "  - name: r\n    then: {model: gpt}\n"),
        None,
    ))
    .await;
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("hi")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-tandem-route"], "r");
    assert_error_shape(&resp.json().await.unwrap());

    // Slow: longer than the model's timeout → 504.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion_body("late"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&slow)
        .await;
    let cfg = config(&slow.uri(), "", "  - name: r\n    then: {model: gpt}\n")
        .replace("timeout_ms: 3000", "timeout_ms: 300");
    let base = serve(routed_state(&cfg, None)).await;
    let t = std::time::Instant::now();
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("hi")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 504);
    assert!(t.elapsed() < Duration::from_secs(3));

    // Broken mid-stream: one good chunk, then garbage → an error event ends the stream.
    let broken = MockServer::start().await;
    let body = sse_body(&["Hello"], "data: {not json\n\n");
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body),
        )
        .mount(&broken)
        .await;
    let base = serve(routed_state(
        &config(&broken.uri(), "", "  - name: r\n    then: {model: gpt}\n"),
        None,
    ))
    .await;
    let events = post_stream(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "stream": true, "messages": user("hi")}),
    )
    .await;
    assert_eq!(content_of(&events), "Hello");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_error_shape(&last);
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn pii_guard_forces_local_or_blocks() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body("remote")))
        .mount(&up)
        .await;
    let routes = "  - name: cards-local\n    when: {keywords: [card]}\n    then: {model: gpt}\n    pii: force_local\n  - name: blocked\n    then: {model: gpt}\n    pii: block\n";
    let base = serve(routed_state(&config(&up.uri(), "", routes), None)).await;
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "max_tokens": 4, "messages": user("My card is 4111 1111 1111 1111, is it valid?")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-model"], LOCAL);
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("我的身分證是A123456789")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        assert_error_shape(&v)["message"]
            .as_str()
            .unwrap()
            .contains("tw_national_id"),
        "{v}"
    );
    assert!(
        upstream_bodies(&up).await.is_empty(),
        "nothing may reach the upstream"
    );
}

#[tokio::test]
async fn rejects_auth_and_bad_headers() {
    let up = MockServer::start().await;
    let extra = "api_keys:\n  - name: team-a\n    key: team-a-secret-1\n    tenant: a\n";
    let routes = "  - name: no-legal\n    when: {keywords: [lawsuit]}\n    then: {reject: {message: \"Legal questions go to legal@.\", status: 451}}\n  - name: tenant-a\n    when: {tenant: a}\n    then: {model: smollm2-135m}\n";
    let cfg = config(&up.uri(), "", routes).replace(
        "policy:\n",
        &format!("{extra}policy:\n  require_api_key: true\n"),
    );
    let base = serve(routed_state(&cfg, None)).await;
    let body = json!({"model": "auto", "max_tokens": 2, "messages": user("hello")});
    let resp = post_h(&base, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(resp.status(), 401);
    assert_error_shape(&resp.json().await.unwrap());
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &body,
        &[("authorization", "Bearer wrong-key-000")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &body,
        &[("authorization", "Bearer team-a-secret-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-route"], "tenant-a");
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("about the lawsuit")}),
        &[("x-api-key", "team-a-secret-1")],
    )
    .await;
    assert_eq!(resp.status(), 451);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(assert_error_shape(&v)["code"], "rejected_by_policy");
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &body,
        &[
            ("x-api-key", "team-a-secret-1"),
            ("x-tandem-latency-budget-ms", "soon"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        assert_error_shape(&v)["param"],
        "x-tandem-latency-budget-ms"
    );
    let resp = post_h(
        &base,
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": user("x")}),
        &[("x-api-key", "team-a-secret-1")],
    )
    .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn cascade_keeps_confident_answers_and_escalates_the_rest() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body("from the LLM")))
        .mount(&up)
        .await;
    let routes = "  - name: easy\n    when: {keywords: [easy]}\n    then: {cascade: {min_mean_logprob: -100, escalate_on_refusal: false}}\n  - name: hard\n    then: {cascade: {min_mean_logprob: 0.5}}\n";
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(
        &config(&up.uri(), "", routes),
        Some(ledger.clone()),
    ))
    .await;
    let easy = json!({"model": "auto", "max_tokens": 6, "temperature": 0, "messages": user("an easy one: say hello")});
    let resp = post_h(&base, "/v1/chat/completions", &easy, &[]).await;
    assert_eq!(resp.headers()["x-tandem-model"], LOCAL);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["tandem"]["escalated"], false);
    assert!(
        v["choices"][0]["logprobs"].is_null(),
        "logprobs were not asked for"
    );
    assert!(upstream_bodies(&up).await.is_empty());
    // Streaming, confident: the buffered SLM answer is replayed as a stream.
    let mut s = easy.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let events = post_stream(&base, "/v1/chat/completions", &s).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(!content_of(&events).is_empty());
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    // Hard: the threshold cannot be met, so the LLM answers.
    let hard =
        json!({"model": "auto", "max_tokens": 6, "messages": user("what is the meaning of life")});
    let resp = post_h(&base, "/v1/chat/completions", &hard, &[]).await;
    assert_eq!(resp.headers()["x-tandem-model"], "gpt");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from the LLM");
    assert_eq!(v["tandem"]["escalated"], true);
    assert_eq!(upstream_bodies(&up).await.len(), 1);
    ledger.flush().unwrap();
    let r = &ledger.recent(1).unwrap()[0];
    assert!(r.escalated);
    assert_eq!(r.models_called, vec![LOCAL.to_string(), "gpt".to_string()]);
    assert!(r.confidence.is_some());
    assert!(
        r.reasons.iter().any(|x| x.contains("mean logprob")),
        "{:?}",
        r.reasons
    );
}

#[tokio::test]
async fn anthropic_upstream_through_the_gateway() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Bonjour"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 9, "output_tokens": 2}
        })))
        .mount(&up)
        .await;
    let extra = format!(
        "  - name: claude\n    provider: anthropic\n    base_url: {}\n    api_key: ant-key-123456\n    model: claude-x\n",
        up.uri()
    );
    let cfg = config(
        &up.uri(),
        &extra,
        "  - name: r\n    then: {model: claude}\n",
    );
    let base = serve(routed_state(&cfg, None)).await;
    let (status, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": [
        {"role": "system", "content": "Be French."}, {"role": "user", "content": "Hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Bonjour");
    assert_eq!(v["model"], "claude");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    let seen = upstream_bodies(&up).await;
    assert_eq!(seen[0]["system"], "Be French.");
    assert_eq!(
        up.received_requests().await.unwrap()[0].headers["x-api-key"],
        "ant-key-123456"
    );
}

#[tokio::test]
async fn explain_shows_the_decision_without_generating() {
    let up = MockServer::start().await;
    let routes = "  - name: regulated\n    when: {category: regulated}\n    then: {model: smollm2-135m}\n  - name: to-gpt\n    then: {model: gpt}\n";
    let base = serve(routed_state(&config(&up.uri(), "", routes), None)).await;
    let resp = post_h(
        &base,
        "/v1/route/explain",
        &json!({"model": "auto", "messages": user("我的保單理賠進度？身分證A123456789")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tandem-route"], "regulated");
    assert_eq!(resp.headers()["x-tandem-model"], LOCAL);
    assert!(resp.headers().contains_key("x-tandem-overhead-ms"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["route"], "regulated");
    assert_eq!(v["model"], LOCAL);
    assert_eq!(v["action"]["type"], "model");
    assert_eq!(v["category"]["name"], "regulated");
    assert!(v["category"]["score"].as_f64().unwrap() > 0.0);
    let pii = &v["pii"][0];
    assert_eq!(pii["kind"], "tw_national_id");
    // Character offsets count CJK characters as one each.
    assert_eq!(pii["char_start"], 12);
    assert_eq!(pii["char_end"], 22);
    assert!(v["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(!v["reasons"].as_array().unwrap().is_empty());
    assert_eq!(v["rules"][0]["matched"], true);
    // The explanation for the other route lists the first rule as not matched.
    let (_, v) = post(
        &base,
        "/v1/route/explain",
        &json!({"model": "auto", "messages": user("Write a poem about the sea")}),
    )
    .await;
    assert_eq!(v["route"], "to-gpt");
    assert_eq!(v["rules"][0]["matched"], false);
    assert!(upstream_bodies(&up).await.is_empty());
    // Malformed bodies get the OpenAI error shape.
    let r = post_raw(&base, "/v1/route/explain", b"{not json".to_vec()).await;
    assert_eq!(r.status(), 400);
    assert_error_shape(&r.json().await.unwrap());
}

#[tokio::test]
async fn stats_report_local_share_cost_and_savings() {
    let up = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body("ok")))
        .mount(&up)
        .await;
    let routes = "  - name: local\n    when: {keywords: [local]}\n    then: {model: smollm2-135m}\n  - name: remote\n    then: {model: gpt}\n";
    let (_dir, ledger) = temp_ledger();
    let base = serve(routed_state(&config(&up.uri(), "", routes), Some(ledger))).await;
    let (s, _) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "max_tokens": 3, "messages": user("stay local")}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("go remote")}),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = client()
        .get(format!("{base}/v1/tandem/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let st = &v["stats"];
    assert_eq!(st["requests"], 2);
    assert_eq!(st["local_requests"], 1);
    assert!((st["local_share"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let cost = st["cost_usd"].as_f64().unwrap();
    assert!((cost - 28.0 / 1e6).abs() < 1e-12, "{st}");
    let base_cost = st["baseline_cost_usd"].as_f64().unwrap();
    assert!(
        base_cost > cost,
        "the local answer would have cost something on the LLM: {st}"
    );
    assert!((st["savings_usd"].as_f64().unwrap() - (base_cost - cost)).abs() < 1e-12);
    assert_eq!(v["baseline_model"], "gpt");
    let r = client()
        .get(format!("{base}/v1/tandem/stats?since_secs=-5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Prometheus: per-route decisions.
    let m = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("tandem_route_decisions_total{route=\"remote\",model=\"gpt\",action=\"model\"}"),
        "{m}"
    );
    assert!(m.contains("tandem_routed_requests_total"));
}

/// Waits (at most 10 s) for the configuration watcher's next reload attempt.
async fn next_attempt(rx: &mut tokio::sync::watch::Receiver<u64>) {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("the watcher did not try to reload within 10 s")
        .unwrap();
}

#[tokio::test]
async fn hot_reload_swaps_good_configs_and_refuses_bad_ones() {
    let up = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tandem.yaml");
    let a = config(
        &up.uri(),
        "",
        "  - name: first\n    then: {model: smollm2-135m}\n",
    );
    std::fs::write(&file, &a).unwrap();
    let state = routed_state(&a, None);
    tandem_server::reload::spawn_watcher(state.clone(), file.clone(), Duration::from_millis(100));
    let base = serve(state.clone()).await;
    let route = |base: String| async move {
        let (_, v) = post(
            &base,
            "/v1/route/explain",
            &json!({"model": "auto", "messages": user("hi")}),
        )
        .await;
        v["route"].as_str().unwrap().to_string()
    };
    assert_eq!(route(base.clone()).await, "first");
    // Each write is followed by waiting for the watcher's reload attempt (the file's
    // contents are part of what it watches, so no wait for the modification time to move).
    let mut attempts = state.reload_attempts();
    let b = config(&up.uri(), "", "  - name: second\n    then: {model: gpt}\n");
    std::fs::write(&file, &b).unwrap();
    next_attempt(&mut attempts).await;
    assert_eq!(route(base.clone()).await, "second");
    let g = state.runtime().generation;
    // Invalid YAML: refused, the old configuration keeps serving.
    std::fs::write(&file, "routes: [unclosed\n").unwrap();
    next_attempt(&mut attempts).await;
    assert_eq!(route(base.clone()).await, "second");
    assert_eq!(state.runtime().generation, g);
    // Valid YAML that needs a model this server has not loaded: refused too.
    let c = b.replace(
        "  - name: gpt\n",
        "  - name: big\n    local: qwen2.5-coder-1.5b\n  - name: gpt\n",
    );
    let e = state.reload_text(&c).unwrap_err();
    assert!(e.contains("not loaded"), "{e}");
    assert_eq!(route(base).await, "second");
}
