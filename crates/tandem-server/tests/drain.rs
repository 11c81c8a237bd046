//! Shutdown under traffic: once the signal comes, new requests get a 503 in the caller's
//! dialect while a stream in flight runs to its end and is recorded; with a short drain
//! timeout the server stops within it even though a stream is still going.
#![allow(clippy::unwrap_used)]

mod common;

use common::upstream::{LOCAL, temp_ledger};
use common::*;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

const CONFIG: &str = "
models:
  - name: smollm2-135m
    local: smollm2-135m
routes:
  - name: local
    then: {model: smollm2-135m}
";

/// Starts a draining server; returns its address, the trigger and the server's task.
async fn start(
    state: std::sync::Arc<tandem_server::AppState>,
    timeout: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tandem_server::serve_draining(
        listener,
        state,
        async move {
            let _ = rx.await;
        },
        timeout,
    ));
    (base, tx, task)
}

/// Opens a stream and reads until its first content token.
async fn open_stream(
    base: &str,
    max_tokens: u32,
) -> impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> {
    let body = json!({"model": "auto", "stream": true, "max_tokens": max_tokens,
                      "messages": user("Write a long story about a river.")});
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut s = Box::pin(resp.bytes_stream());
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(&s.next().await.unwrap().unwrap()));
    }
    s
}

#[tokio::test]
async fn shutdown_refuses_new_requests_and_lets_the_stream_finish() {
    let (_dir, ledger) = temp_ledger();
    let state = routed_state(CONFIG, Some(ledger.clone()));
    let (base, trigger, server) = start(state.clone(), Duration::from_secs(120)).await;
    let mut stream = open_stream(&base, 400).await;
    trigger.send(()).unwrap();
    // Wait for the drain to begin (an event, not a sleep), then ask again.
    let drain = &state.drain;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !drain.is_draining() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(drain.in_flight(), 1);
    let (status, v) = post(
        &base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": user("hi")}),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_error_shape(&v);
    let (status, v) = post(
        &base,
        "/v1/messages",
        &json!({"model": "auto", "max_tokens": 5, "messages": user("hi")}),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(v["type"], "error", "{v}");
    // The stream in flight runs to its end.
    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("data: [DONE]"), "{rest}");
    // Then the server stops by itself, and the stream is in the ledger.
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server did not stop after the drain")
        .unwrap()
        .unwrap();
    ledger.flush().unwrap();
    let r = &ledger.recent(1).unwrap()[0];
    assert_eq!((r.status, r.answered_by.as_deref()), (200, Some(LOCAL)));
}

#[tokio::test]
async fn the_drain_timeout_bounds_the_shutdown() {
    let state = routed_state(CONFIG, None);
    let (base, trigger, server) = start(state, Duration::from_millis(300)).await;
    let _stream = open_stream(&base, 2000).await;
    let t = Instant::now();
    trigger.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the server outlived its drain timeout")
        .unwrap()
        .unwrap();
    // 300 ms of drain and the 500 ms allowance for the last bytes, with room for a busy machine.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
