//! Shared harness: the real SmolLM2-135M and MiniLM, served over loopback.
#![allow(dead_code, clippy::unwrap_used)]

pub mod upstream;

use std::sync::{Arc, OnceLock};
use tandem_engine::{Engine, EngineConfig};
use tandem_models::ModelStore;
use tandem_server::state::EmbedModel;
use tandem_server::{AppState, ServerOptions};

pub const CHAT: &str = "smollm2-135m";
pub const EMBED: &str = "minilm-l6";

fn resolve(name: &str) -> std::path::PathBuf {
    ModelStore::from_env()
        .resolve(name)
        .unwrap_or_else(|e| panic!("model {name} is needed by the tests: {e}. Run `make test-models` (tandem pull {name})."))
        .path
}

pub fn threads() -> usize {
    std::env::var("TANDEM_TEST_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

pub fn engine_config(name: &str) -> EngineConfig {
    let mut c = EngineConfig::new(resolve(CHAT), name);
    c.threads = Some(threads());
    c.ctx_size = 4096;
    c.parallel = 4;
    c
}

/// The real SmolLM2 engine, loaded once per test binary.
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| Engine::load(engine_config(CHAT)).expect("load smollm2"))
        .clone()
}

/// The real MiniLM, loaded once per test binary.
pub fn embed_model() -> EmbedModel {
    static EMBED_MODEL: OnceLock<EmbedModel> = OnceLock::new();
    EMBED_MODEL
        .get_or_init(|| EmbedModel::load(EMBED, &resolve(EMBED), 1).expect("load minilm"))
        .clone()
}

/// One engine + embedder per test binary.
pub fn state() -> Arc<AppState> {
    static STATE: OnceLock<Arc<AppState>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            Arc::new(AppState::new(
                vec![engine()],
                vec![embed_model()],
                ServerOptions::default(),
            ))
        })
        .clone()
}

/// A state over the shared models with a routing configuration (YAML) and a ledger.
pub fn routed_state(yaml: &str, ledger: Option<tandem_ledger::Ledger>) -> Arc<AppState> {
    let cfg = tandem_policy::config::parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    match AppState::with_config(
        vec![engine()],
        vec![embed_model()],
        ServerOptions::default(),
        cfg,
        ledger,
    ) {
        Ok(s) => Arc::new(s),
        Err((e, ..)) => panic!("{e}"),
    }
}

/// Serve `state` on a fresh loopback port for the current test's runtime.
pub async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tandem_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

pub async fn server() -> String {
    serve(state()).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .unwrap()
}

/// POST JSON, return (status, body as JSON).
pub async fn post(base: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

/// POST raw bytes.
pub async fn post_raw(base: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Read a whole SSE response into its `data:` payloads, checking the framing.
pub async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = resp.text().await.unwrap();
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let mut data = Vec::new();
        for line in event.lines() {
            if line.starts_with(':') {
                continue; // keep-alive comment
            }
            let d = line
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad SSE line {line:?}"));
            data.push(d);
        }
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// Assert the OpenAI error shape and return the error object.
pub fn assert_error_shape(v: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    let e = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    for k in ["message", "type", "param", "code"] {
        assert!(e.contains_key(k), "error lacks {k}: {v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e
}

pub fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

/// POST a streaming request and return its SSE payloads (framing checked).
pub async fn post_stream(base: &str, path: &str, body: &serde_json::Value) -> Vec<String> {
    let resp = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    sse_events(resp).await
}
