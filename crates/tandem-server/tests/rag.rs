//! Knowledge bases and RAG modes over real HTTP: the real SmolLM2 as the SLM, the real
//! MiniLM and SQLite knowledge base, a scripted upstream (wiremock) as the LLM so that each
//! mode's hand-over can be checked exactly (what the LLM saw, what came back).
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_ledger::Ledger;
use tandem_server::AppState;
use tandem_server::kb::KbService;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LOCAL: &str = "smollm2-135m";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(upstream: &str, rag: &str) -> String {
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
    timeout_ms: 5000
policy:
  local_model: {LOCAL}
  llm_model: gpt
  classifier:
    embedding_model: minilm-l6
rag:
  max_answer_tokens: 48
{rag}
routes:
  - name: everything-local
    then: {{model: {LOCAL}}}
"#
    )
}

fn completion_body(content: &str) -> Value {
    json!({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}
    })
}

async fn llm(content: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body(content)))
        .mount(&server)
        .await;
    server
}

async fn upstream_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

struct Setup {
    base: String,
    _dir: tempfile::TempDir,
    ledger_path: PathBuf,
    state: Arc<AppState>,
}

/// A server whose knowledge base `hr` holds three English documents of the evaluation set
/// and a note with personal data.
async fn setup(upstream: &str, rag: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&ledger_path).unwrap();
    let state = routed_state(&config(upstream, rag), Some(ledger));
    let embed = embed_model();
    let embedder = tandem_kb::LocalEmbedder::from_shared(embed.embedder.clone(), "minilm-l6");
    let manager = tandem_kb::KbManager::new(dir.path().join("kb"), Arc::new(embedder));
    let kb = manager.create("hr").unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for f in [
        "hr-leave-policy.md",
        "it-vpn-helpdesk-guide.md",
        "auto-insurance-faq.md",
    ] {
        std::fs::copy(repo_root().join("eval/rag/kb").join(f), docs.join(f)).unwrap();
    }
    std::fs::write(
        docs.join("claims-contact.md"),
        "# Claims officer\n\nThe claims officer for large losses is reachable at \
         claims.officer@formosa-harbor.com.tw. Write to that address for claims above \
         NT$500,000.\n",
    )
    .unwrap();
    let s = kb.ingest(&[docs], &Default::default(), &|_| {}).unwrap();
    assert_eq!((s.added, s.failed.len()), (4, 0), "{s:?}");
    let state = Arc::new(
        Arc::try_unwrap(state)
            .unwrap_or_else(|_| panic!("state is shared"))
            .with_kb(Arc::new(KbService::new(manager))),
    );
    Setup {
        base: serve(state.clone()).await,
        _dir: dir,
        ledger_path,
        state,
    }
}

fn ask(question: &str, mode: &str) -> Value {
    json!({
        "model": "kb:hr",
        "messages": [{"role": "user", "content": question}],
        "tandem": {"mode": mode},
    })
}

fn ledger_last(s: &Setup) -> tandem_ledger::LedgerRecord {
    if let Some(l) = &s.state.ledger {
        l.flush().unwrap();
    }
    let l = Ledger::open(&s.ledger_path).unwrap();
    l.recent(1).unwrap().pop().unwrap()
}

const LEAVE_Q: &str = "How many days of annual leave does an employee with 3 years of service get?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_answers_from_the_base_and_nothing_leaves() {
    let up = llm("unused").await;
    let s = setup(&up.uri(), "").await;
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(LEAVE_Q, "local")).await;
    assert_eq!(status, 200, "{body}");
    let t = &body["tandem"];
    assert_eq!(t["mode"], "local");
    assert_eq!(t["kb"], "hr");
    assert_eq!(t["model"], LOCAL);
    assert_eq!(t["retrieved"][0]["source"], "hr-leave-policy.md", "{t}");
    // The evidence step ran under its grammar: what the SLM selected is in the trace, and
    // the answer is either quoted evidence citing its passage or "I don't know".
    let parts = t["evidence"]["parts"].as_array().expect("evidence trace");
    assert_eq!(parts.len(), 1, "{t}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    if tandem_rag::is_idk(content) {
        assert!(t["citations"].as_array().unwrap().is_empty(), "{t}");
    } else {
        assert!(
            !t["citations"].as_array().unwrap().is_empty(),
            "{content} {t}"
        );
        assert!(!parts[0]["lines"].as_array().unwrap().is_empty(), "{t}");
    }
    assert!(upstream_bodies(&up).await.is_empty());
    let r = ledger_last(&s);
    assert_eq!(
        (r.rag_kb.as_deref(), r.rag_mode.as_deref()),
        (Some("hr"), Some("local"))
    );
    assert_eq!(
        (r.llm_tokens, r.left_machine, r.action.as_str()),
        (0, false, "rag")
    );
    assert!(r.rag_tokens_saved > 100, "{}", r.rag_tokens_saved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_hands_the_same_context_to_the_llm_when_the_check_fails() {
    // A confidence floor of 0 fails every answer, so the LLM always answers.
    let up = llm("An employee with 3 years of service gets 14 days [1].").await;
    let s = setup(&up.uri(), "  escalate: {min_mean_logprob: 0.0}").await;
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(LEAVE_Q, "escalate")).await;
    assert_eq!(status, 200, "{body}");
    let t = &body["tandem"];
    assert_eq!(t["escalated"], true, "{t}");
    assert_eq!(t["model"], "gpt");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "An employee with 3 years of service gets 14 days [1]."
    );
    assert_eq!(t["citations"][0]["index"], 1);
    assert_eq!(t["citations"][0]["source"], t["retrieved"][0]["source"]);
    assert!(!t["reasons"].as_array().unwrap().is_empty(), "{t}");
    let sent = upstream_bodies(&up).await;
    assert_eq!(sent.len(), 1);
    let user = sent[0]["messages"][1]["content"].as_str().unwrap();
    assert!(user.starts_with("Sources:\n[1] "), "{user}");
    assert!(user.contains(LEAVE_Q));
    let r = ledger_last(&s);
    assert!(r.escalated && r.left_machine);
    assert_eq!(r.llm_tokens, 40);
    assert_eq!(r.answered_by.as_deref(), Some("gpt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_rejects_an_llm_figure_its_sources_do_not_hold() {
    // 37 days is in no sentence or row of the leave policy: the LLM's answer is not
    // returned, whatever the SLM's evidence step gave.
    let up = llm("An employee with 3 years of service gets 37 days [1].").await;
    let s = setup(&up.uri(), "  escalate: {min_mean_logprob: 0.0}").await;
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(LEAVE_Q, "escalate")).await;
    assert_eq!(status, 200, "{body}");
    let t = &body["tandem"];
    assert_eq!(upstream_bodies(&up).await.len(), 1, "the LLM was asked");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.contains("37"), "{content}");
    assert_eq!(t["model"], LOCAL, "{t}");
    let reasons = t["reasons"].to_string();
    assert!(
        reasons.contains("rejected") && reasons.contains("37"),
        "{reasons}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_keeps_a_passing_answer_local() {
    let up = llm("unused").await;
    let lenient = "  escalate: {on_idk: false, require_citation: false, min_support: 0.0, check_numbers: false, min_mean_logprob: -100.0}";
    let s = setup(&up.uri(), lenient).await;
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(LEAVE_Q, "escalate")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tandem"]["escalated"], false, "{body}");
    assert_eq!(body["tandem"]["model"], LOCAL);
    assert!(upstream_bodies(&up).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_sends_the_llm_fewer_tokens_than_the_chunks() {
    let up = llm("14 days [1].").await;
    let s = setup(&up.uri(), "  compress_max_tokens: 120").await;
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(LEAVE_Q, "compress")).await;
    assert_eq!(status, 200, "{body}");
    let c = &body["tandem"]["compression"];
    let (before, after) = (
        c["tokens_before"].as_u64().unwrap(),
        c["tokens_after"].as_u64().unwrap(),
    );
    assert!(after > 0 && after <= 140 && after < before, "{c}");
    assert_eq!(body["choices"][0]["message"]["content"], "14 days [1].");
    let sent = upstream_bodies(&up).await;
    assert_eq!(sent.len(), 1);
    let user = sent[0]["messages"][1]["content"].as_str().unwrap();
    // The compressed context keeps the sources' numbers and is far shorter than all chunks.
    assert!(user.contains("[1] ") || user.contains("[2] "), "{user}");
    assert!(
        tandem_rag::text::estimate_tokens(user) < before as usize,
        "{user}"
    );
    let r = ledger_last(&s);
    assert_eq!(r.rag_mode.as_deref(), Some("compress"));
    assert!(r.rag_tokens_saved > 0, "{}", r.rag_tokens_saved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draft_verify_lets_the_llm_pick_among_slm_drafts() {
    let up = llm("Best: 2\nEmployees with 3 years of service get 14 days [1].").await;
    let s = setup(&up.uri(), "  drafts: 2").await;
    let (status, body) = post(
        &s.base,
        "/v1/chat/completions",
        &ask(LEAVE_Q, "draft_verify"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let t = &body["tandem"];
    assert_eq!(t["drafts"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(t["verdict"]["best"], 2);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Employees with 3 years of service get 14 days [1]."
    );
    let sent = upstream_bodies(&up).await;
    assert_eq!(sent.len(), 1, "one LLM call for all drafts");
    let user = sent[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("Draft 1:") && user.contains("Draft 2:"),
        "{user}"
    );
    assert!(
        !user.contains("Sources:"),
        "the verifier reads drafts, not chunks: {user}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_in_retrieved_chunks_is_masked_before_it_leaves() {
    let up = llm("Write to [EMAIL_1] [1].").await;
    let s = setup(&up.uri(), "  escalate: {min_mean_logprob: 0.0}").await;
    let q = "Which address should I write to about a claim above NT$500,000?";
    let (status, body) = post(&s.base, "/v1/chat/completions", &ask(q, "escalate")).await;
    assert_eq!(status, 200, "{body}");
    let sent = upstream_bodies(&up).await;
    assert_eq!(sent.len(), 1);
    let raw = sent[0].to_string();
    assert!(
        !raw.contains("claims.officer@formosa-harbor.com.tw"),
        "{raw}"
    );
    assert!(raw.contains("[EMAIL_1]"), "{raw}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Write to claims.officer@formosa-harbor.com.tw [1]."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_ends_with_its_citations() {
    let up = llm("unused").await;
    let s = setup(&up.uri(), "").await;
    let mut req = ask(LEAVE_Q, "local");
    req["stream"] = json!(true);
    let resp = client()
        .post(format!("{}/v1/chat/completions", s.base))
        .json(&req)
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(last["tandem"]["citations"].is_array(), "{last}");
    assert_eq!(last["tandem"]["mode"], "local");
    let text: String = events[..events.len() - 2]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rag_requests_get_clear_errors() {
    let up = llm("unused").await;
    let s = setup(&up.uri(), "").await;
    let cases = [
        (
            json!({"model": "kb:nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "nope",
        ),
        (
            json!({"model": "kb:bad name!", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "kb:bad name!",
        ),
        (ask("hi", "fastest"), 400, "unknown RAG mode"),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tandem": "hr"}),
            400,
            "must be an object",
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tandem": {"kb": 7}}),
            400,
            "tandem.kb",
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tandem": {"mode": "local"}}),
            400,
            "needs `tandem.kb`",
        ),
    ];
    for (req, want, text) in cases {
        let (status, body) = post(&s.base, "/v1/chat/completions", &req).await;
        assert_eq!(status, want, "{req} → {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(text),
            "{body}"
        );
    }
    // `tandem.kb` on an `auto` request asks the base too; punctuation alone retrieves nothing.
    let (status, body) = post(
        &s.base,
        "/v1/chat/completions",
        &json!({"model": "auto", "messages": [{"role": "user", "content": "？？？"}], "tandem": {"kb": "hr", "mode": "local"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "I don't know.");
    assert!(upstream_bodies(&up).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_bases_over_http() {
    let up = llm("unused").await;
    let s = setup(&up.uri(), "").await;
    let b = &s.base;
    let (status, body) = post(b, "/v1/kb", &json!({"name": "faq"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(b, "/v1/kb", &json!({"name": "faq"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("kb_exists")),
        "{body}"
    );
    let pdfish = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 garbage");
    let (status, body) = post(
        b,
        "/v1/kb/faq/ingest",
        &json!({"files": [
            {"name": "vpn.md", "content": "# VPN\n\nThe HarborVPN client version is 5.3.\n"},
            {"name": "hours.txt", "content": "Clinics open at 8:30 on weekdays."},
            {"name": "broken.pdf", "content_base64": pdfish},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["added"].as_u64(),
            body["failed"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1)),
        "{body}"
    );
    let (status, body) = post(
        b,
        "/v1/kb/faq/search",
        &json!({"query": "VPN client version", "k": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["source"], "vpn.md", "{body}");
    let list: Value = client()
        .get(format!("{b}/v1/kb"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"faq") && names.contains(&"hr"), "{list}");
    for (path, req, want) in [
        ("/v1/kb", json!({"name": "../x"}), 400),
        ("/v1/kb", json!({"nom": "x"}), 400),
        ("/v1/kb/faq/ingest", json!({}), 400),
        (
            "/v1/kb/faq/ingest",
            json!({"files": [{"name": ".env", "content": "x"}]}),
            400,
        ),
        (
            "/v1/kb/faq/ingest",
            json!({"files": [{"name": "a.md", "content_base64": "%%%"}]}),
            400,
        ),
        (
            "/v1/kb/faq/ingest",
            json!({"files": [{"name": "a.md"}]}),
            400,
        ),
        ("/v1/kb/faq/ingest", json!({"paths": "docs"}), 400),
        (
            "/v1/kb/faq/ingest",
            json!({"paths": ["/x"], "delete": true}),
            400,
        ),
        ("/v1/kb/faq/search", json!({"query": ""}), 400),
        ("/v1/kb/faq/search", json!({"query": "x", "k": 0}), 400),
        ("/v1/kb/faq/search", json!({"query": "!!!"}), 400),
        ("/v1/kb/none/search", json!({"query": "x"}), 404),
    ] {
        let (status, body) = post(b, path, &req).await;
        assert_eq!(status, want, "{path} {req} → {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let resp = post_raw(b, "/v1/kb/faq/search", b"{not json".to_vec()).await;
    assert_eq!(resp.status().as_u16(), 400);
    let resp = client()
        .delete(format!("{b}/v1/kb/faq"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client()
        .delete(format!("{b}/v1/kb/faq"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
