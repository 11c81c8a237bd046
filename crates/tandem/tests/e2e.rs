//! End to end: a `tandem serve` process with a routing configuration whose "remote LLM" is a
//! second `tandem serve` process serving a real model over HTTP. Asserts which model answered
//! each request and what the upstream saw (its own ledger), plus the CLI around it.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .env("TANDEM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// SIGTERM: a graceful shutdown that flushes the ledger.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tandem(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("TANDEM_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stats(ledger: &Path) -> Value {
    let (ok, out, err) = tandem(&["stats", "--ledger", ledger.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

async fn chat(base: &str, text: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "auto", "max_tokens": 12, "temperature": 0, "stream": stream,
                      "messages": [{"role": "user", "content": text}]}),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_between_the_local_slm_and_a_second_tandem() {
    let dir = tempfile::tempdir().unwrap();
    let up_ledger = dir.path().join("upstream.sqlite");
    let gw_ledger = dir.path().join("gateway.sqlite");
    let upstream = Server::start(&[
        "serve",
        "-m",
        "smollm2-135m",
        "--port",
        "0",
        "--threads",
        "1",
        "--parallel",
        "2",
        "--ledger",
        up_ledger.to_str().unwrap(),
    ]);
    let cfg = format!(
        r#"
models:
  - name: slm
    local: smollm2-135m
    engine: {{threads: 1, parallel: 2}}
  - name: minilm-l6
    local: minilm-l6
  - name: llm
    provider: openai
    base_url: {}/v1
    model: smollm2-135m
    price: {{input: 0.15, output: 0.60}}
    retries: 1
aliases:
  auto: policy
policy:
  local_model: slm
  llm_model: llm
  pii: {{action: mask}}
  classifier: {{embedding_model: minilm-l6}}
routes:
  - name: regulated
    when: {{category: regulated}}
    then: {{model: slm}}
  - name: code
    when: {{category: code}}
    then: {{model: llm}}
  - name: default
    then: {{model: llm}}
"#,
        upstream.url
    );
    let cfg_path = dir.path().join("tandem.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let (ok, out, err) = tandem(&["config", "check", cfg_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("3 routes"), "{out}");
    let gateway = Server::start(&[
        "serve",
        "--config",
        cfg_path.to_str().unwrap(),
        "--port",
        "0",
        "--ledger",
        gw_ledger.to_str().unwrap(),
    ]);
    let base = gateway.url.clone();

    // Regulated (Traditional Chinese insurance question) → the local SLM; nothing leaves.
    let r = chat(&base, "我的保單理賠需要準備哪些文件？", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tandem-route"], "regulated");
    assert_eq!(r.headers()["x-tandem-model"], "slm");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "slm");

    // Code help with an e-mail address → the "remote" Tandem, with the address masked.
    let r = chat(
        &base,
        "Write a Python function that reverses a string. Send it to dev.lin@example.com",
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tandem-route"], "code");
    assert_eq!(r.headers()["x-tandem-model"], "llm");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "llm");
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Streaming through the gateway from the upstream.
    let r = chat(&base, "Tell me a fun fact about the ocean.", true).await;
    assert_eq!(r.headers()["x-tandem-model"], "llm");
    let body = r.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // The route explanation from the CLI agrees with the server.
    let (ok, out, err) = tandem(&[
        "route",
        "--config",
        cfg_path.to_str().unwrap(),
        "--explain",
        "我的保單理賠需要準備哪些文件？",
        "--brief",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("route regulated"), "{out}");

    gateway.stop();
    upstream.stop();

    // What the upstream saw: exactly the two LLM-routed requests, never the SLM's.
    let up = stats(&up_ledger);
    assert_eq!(up["requests"], 2, "{up}");
    // What the gateway recorded: three requests, one answered locally, two left the machine.
    let gw = stats(&gw_ledger);
    assert_eq!(gw["requests"], 3, "{gw}");
    assert_eq!(gw["local_requests"], 1);
    assert_eq!(gw["left_machine"], 2);
    assert!(gw["savings_usd"].as_f64().unwrap() > 0.0, "{gw}");
    let ledger = tandem_ledger::Ledger::open(&gw_ledger).unwrap();
    let recs = ledger.recent(3).unwrap();
    let code = recs.iter().find(|r| r.route == "code").unwrap();
    let sent = code.sent_out.as_ref().unwrap().to_string();
    assert!(
        sent.contains("[EMAIL_1]") && !sent.contains("dev.lin@"),
        "{sent}"
    );
    assert_eq!(code.pii_action.as_deref(), Some("mask"));
    let reg = recs.iter().find(|r| r.route == "regulated").unwrap();
    assert!(reg.local && !reg.left_machine && reg.sent_out.is_none());

    // Human-readable stats.
    let (ok, out, err) = tandem(&["stats", "--ledger", gw_ledger.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("requests 3") && out.contains("regulated"),
        "{out}"
    );
}

#[test]
fn config_check_reports_each_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "models:\n  - name: a\n    local: smollm2-135m\nroutes:\n  - name: r\n    when: {regex: \"(\"}\n    then: {model: b}\n",
    )
    .unwrap();
    let (ok, _, err) = tandem(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("line 6") && err.contains("regex"), "{err}");
    assert!(err.contains("line 7") && err.contains("`b`"), "{err}");
    let (ok, out, _) = tandem(&["config", "default"]);
    assert!(ok);
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, out).unwrap();
    let (ok, out, err) = tandem(&["config", "check", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok"), "{out}");
    let (ok, _, err) = tandem(&["route", "--explain", "hi", "--header", "no-colon"]);
    assert!(!ok);
    assert!(err.contains("name: value"), "{err}");
    let (ok, _, err) = tandem(&["route", "--explain", "  "]);
    assert!(!ok);
    assert!(err.contains("non-empty"), "{err}");
    let (ok, _, err) = tandem(&[
        "stats",
        "--ledger",
        dir.path().join("none.sqlite").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no ledger"), "{err}");
}
