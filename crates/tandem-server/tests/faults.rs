//! Upstream faults in the middle of a stream, through the gateway over real HTTP: an upstream
//! that dies after a few tokens, one that stalls, one that sends an event that is not JSON,
//! and one that answers 200 and then sends an error event; and a full disk under the ledger. For each: what the client saw (the text so far, then one error event in
//! OpenAI's shape, and never `[DONE]`) and what the ledger stored (an error status with its
//! reason). The upstream is a raw TCP server so that it can misbehave at the byte level.
#![allow(clippy::unwrap_used)]

mod common;

use common::upstream::*;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy)]
enum Fault {
    /// Close the connection after the chunks.
    Die,
    /// Keep the connection open and send nothing more.
    Stall,
    /// Send an error event (what some providers do after a 200).
    ErrorEvent,
    /// Send an event that is not JSON.
    Garbage,
}

/// An upstream that streams `parts` and then misbehaves; serves any number of connections.
async fn faulty_upstream(parts: &'static [&'static str], fault: Fault) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request: headers, then the body by its length.
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let body_start = loop {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                );
                let chunk = |delta: Value| {
                    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
                };
                out.push_str(&format!(
                    "data: {}\n\n",
                    chunk(json!({"role": "assistant", "content": ""}))
                ));
                for p in parts {
                    out.push_str(&format!("data: {}\n\n", chunk(json!({"content": p}))));
                }
                match fault {
                    Fault::ErrorEvent => out.push_str("data: {\"error\": {\"message\": \"upstream overloaded\", \"type\": \"server_error\"}}\n\n"),
                    Fault::Garbage => out.push_str("data: {not json\n\n"),
                    Fault::Die | Fault::Stall => {}
                }
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.flush().await;
                match fault {
                    Fault::Die => {}
                    Fault::Stall | Fault::ErrorEvent | Fault::Garbage => {
                        tokio::time::sleep(Duration::from_secs(30)).await
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Streams one request through a gateway whose `gpt` is `upstream`; returns the events and
/// the ledger's record.
async fn stream_through(upstream: &str) -> (Vec<String>, tandem_ledger::LedgerRecord) {
    let (_dir, ledger) = temp_ledger();
    let cfg = config(upstream, "", "  - name: r\n    then: {model: gpt}\n").replace(
        "    retries: 0\n",
        "    retries: 0\n    idle_timeout_ms: 500\n",
    );
    let base = serve(routed_state(&cfg, Some(ledger.clone()))).await;
    let events = tokio::time::timeout(
        Duration::from_secs(20),
        post_stream(
            &base,
            "/v1/chat/completions",
            &json!({"model": "auto", "stream": true, "messages": user("Tell me a story.")}),
        ),
    )
    .await
    .expect("the client was left hanging");
    // The record is written when the stream ends; wait for it (bounded), not for a time.
    let mut rec = None;
    for _ in 0..100 {
        ledger.flush().unwrap();
        if let Some(r) = ledger.recent(1).unwrap().into_iter().next() {
            rec = Some(r);
            break;
        }
        tokio::task::yield_now().await;
    }
    (events, rec.expect("no ledger record"))
}

/// The text before the fault, then exactly one error event, and no `[DONE]`.
fn assert_partial_then_error(events: &[String], text: &str) -> Value {
    assert_eq!(content_of(events), text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    last
}

#[tokio::test]
async fn an_upstream_that_dies_mid_stream() {
    let up = faulty_upstream(&["Once ", "upon "], Fault::Die).await;
    let (events, r) = stream_through(&up).await;
    assert_partial_then_error(&events, "Once upon ");
    assert!(r.status >= 500 && r.error.is_some(), "{r:?}");
    assert_eq!(r.answered_by.as_deref(), Some("gpt"));
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_stream() {
    let up = faulty_upstream(&["Once "], Fault::Stall).await;
    let t = std::time::Instant::now();
    let (events, r) = stream_through(&up).await;
    assert_partial_then_error(&events, "Once ");
    // The idle timeout (500 ms) ended it, not the 30 s stall.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.status, 504, "{r:?}");
}

#[tokio::test]
async fn malformed_sse_mid_stream() {
    let up = faulty_upstream(&["Once "], Fault::Garbage).await;
    let (events, r) = stream_through(&up).await;
    assert_partial_then_error(&events, "Once ");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.error.is_some());
}

#[tokio::test]
async fn an_error_event_after_a_200() {
    let up = faulty_upstream(&["Once "], Fault::ErrorEvent).await;
    let (events, r) = stream_through(&up).await;
    let last = assert_partial_then_error(&events, "Once ");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{last}"
    );
    assert!(r.status >= 500, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap_or_default()
            .contains("overloaded"),
        "{r:?}"
    );
}

/// The disk fills while the ledger writes: requests are still answered (the ledger is never
/// on their path), the records wait, and once there is room again all of them are stored.
#[tokio::test]
async fn a_full_disk_under_the_ledger_loses_no_record() {
    let up = wiremock::MockServer::start().await;
    mount_json(&up, completion_body("ok")).await;
    let (_dir, ledger) = temp_ledger();
    let cfg = config(&up.uri(), "", "  - name: r\n    then: {model: gpt}\n");
    let base = serve(routed_state(&cfg, Some(ledger.clone()))).await;
    ledger.set_max_bytes(Some(0)).unwrap();
    let body = json!({"model": "auto", "messages": user(&"A question that fills the ledger. ".repeat(40))});
    for _ in 0..60 {
        let (status, v) = post(&base, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "ok");
    }
    ledger.flush().unwrap();
    assert!(ledger.pending() > 0, "the cap did not bite");
    ledger.set_max_bytes(None).unwrap();
    ledger.flush().unwrap();
    assert_eq!(ledger.pending(), 0);
    assert_eq!(ledger.recent(100).unwrap().len(), 60);
    assert_eq!(ledger.dropped(), 0);
}
