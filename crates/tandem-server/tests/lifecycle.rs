//! Disconnects and overload, each with its own engine so counts are not disturbed by other tests.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_engine::Engine;
use tandem_server::{AppState, ServerOptions};

fn own_state(parallel: u32, max_queue: usize) -> Arc<AppState> {
    let mut c = engine_config(CHAT);
    c.parallel = parallel;
    c.max_queue = max_queue;
    Arc::new(AppState::new(
        vec![Engine::load(c).unwrap()],
        vec![],
        ServerOptions::default(),
    ))
}

#[tokio::test]
async fn disconnect_frees_the_slot() {
    let state = own_state(2, 8);
    let base = serve(state.clone()).await;
    let body = json!({"model": CHAT, "messages": user("Write a very long essay about rivers."), "max_tokens": 2000, "stream": true});
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    // Read until at least one content chunk arrived, then hang up.
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    let engine = state.chat_engine(CHAT).unwrap().clone();
    assert_eq!(engine.running(), 1);
    drop(stream);
    // The engine notices at its next step; bounded wait, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.running() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        engine.running(),
        0,
        "slot not freed after the client went away"
    );
    // And it serves the next request normally.
    let (s, _) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": CHAT, "messages": user("Hi"), "max_tokens": 2}),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn overload_gets_429_with_retry_after() {
    let state = own_state(1, 1);
    let base = serve(state.clone()).await;
    let body = json!({"model": CHAT, "messages": user("Write a long poem."), "max_tokens": 64, "temperature": 0});
    let futs = (0..6).map(|_| {
        let base = base.clone();
        let body = body.clone();
        async move {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|h| h.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            (status, retry, v)
        }
    });
    let results = futures::future::join_all(futs).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(ok >= 1, "someone must be served");
    assert!(
        !limited.is_empty(),
        "1 slot + 1 queue place cannot hold 6 requests"
    );
    assert_eq!(ok + limited.len(), 6);
    for (_, retry, v) in limited {
        assert!(retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()));
        assert_eq!(assert_error_shape(v)["type"], "rate_limit_error");
    }
}
