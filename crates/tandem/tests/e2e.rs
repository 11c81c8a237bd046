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

/// A second `tandem serve` process with SmolLM2 (one thread), the "remote LLM" of the
/// evaluation tests, with its own ledger (what reached it).
fn smollm2_upstream(dir: &Path) -> (Server, std::path::PathBuf) {
    let ledger = dir.join("upstream.sqlite");
    let server = Server::start(&[
        "serve",
        "-m",
        "smollm2-135m",
        "--port",
        "0",
        "--threads",
        "1",
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    (server, ledger)
}

/// Runs the CLI quietly on one thread with extra environment variables: (success, stdout,
/// stderr).
fn cli(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    cmd.args(args)
        .env("TANDEM_LOG", "error")
        .env("TANDEM_THREADS", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tandem ingest`, `ask`, `kb ls|rm` and `eval rag` in every mode, with a second `tandem
/// serve` process as the LLM; a second `eval rag` run answers from its cache.
#[test]
fn eval_rag_runs_every_mode_against_a_second_tandem() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, up_ledger) = smollm2_upstream(dir.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for f in [
        "hr-leave-policy.md",
        "it-vpn-helpdesk-guide.md",
        "auto-insurance-faq.md",
    ] {
        std::fs::copy(root.join("eval/rag/kb").join(f), docs.join(f)).unwrap();
    }
    let all = std::fs::read_to_string(root.join("eval/rag/questions.jsonl")).unwrap();
    let picked: Vec<&str> = all
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            ["q001", "q002", "q069"].contains(&v["id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(picked.len(), 3);
    let questions = dir.path().join("q.jsonl");
    std::fs::write(&questions, picked.join("\n")).unwrap();
    let cfg = dir.path().join("tandem.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
models:
  - name: slm
    local: smollm2-135m
    engine: {{threads: 1}}
  - name: minilm-l6
    local: minilm-l6
  - name: llm
    provider: openai
    base_url: {}/v1
    model: smollm2-135m
policy:
  local_model: slm
  llm_model: llm
  classifier: {{embedding_model: minilm-l6}}
rag:
  top_k: 3
  drafts: 2
  max_answer_tokens: 24
  compress_max_tokens: 120
"#,
            upstream.url
        ),
    )
    .unwrap();
    let kb_dir = dir.path().join("kb");
    let run = |args: &[&str]| cli(args, &[("TANDEM_KB_DIR", kb_dir.as_os_str())]);
    let (ok, out, err) = run(&["ingest", "e2e", docs.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("3 added"), "{out}");
    let (ok, out, err) = run(&["ingest", "e2e", docs.to_str().unwrap()]);
    assert!(ok && out.contains("3 unchanged"), "{out}{err}");
    let (ok, out, err) = run(&[
        "ask",
        "e2e",
        "Which HarborVPN client version is required?",
        "-k",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("[1] ")
            && out
                .lines()
                .next()
                .unwrap()
                .contains("it-vpn-helpdesk-guide.md"),
        "{out}"
    );
    let (ok, out, _) = run(&["kb", "ls"]);
    assert!(ok && out.contains("e2e"), "{out}");

    let out_dir = dir.path().join("eval");
    let eval_args = [
        "eval",
        "rag",
        "--kb",
        "e2e",
        "--questions",
        questions.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let (ok, out, err) = run(&eval_args);
    assert!(ok, "{out}{err}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let modes: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["local", "escalate", "compress", "draft_verify"]);
    for r in report.as_array().unwrap() {
        assert_eq!(
            (r["questions"].as_u64(), r["errors"].as_u64()),
            (Some(3), Some(0)),
            "{r}"
        );
    }
    assert_eq!(
        report[0]["llm_tokens_total"], 0,
        "local never calls the LLM"
    );
    assert!(
        report[2]["llm_tokens_total"].as_u64().unwrap() > 0,
        "compress always does"
    );
    assert!(
        report[3]["llm_tokens_total"].as_u64().unwrap() > 0,
        "draft_verify always does"
    );
    let svg = std::fs::read_to_string(out_dir.join("chart.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 4);
    assert!(
        std::fs::read_to_string(out_dir.join("report.md"))
            .unwrap()
            .contains("| draft_verify |")
    );
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(lines(&out_dir.join("outcomes.jsonl")), 12);
    let upstream_calls = stats(&up_ledger)["requests"].as_u64().unwrap();
    assert!(
        upstream_calls >= 6,
        "compress and draft_verify call the LLM for each question"
    );

    // A second run answers from the cache: nothing new reaches the LLM.
    let (ok, out, err) = run(&eval_args);
    assert!(ok, "{out}{err}");
    assert_eq!(lines(&out_dir.join("outcomes.jsonl")), 12);
    upstream.stop();
    assert_eq!(
        stats(&up_ledger)["requests"].as_u64().unwrap(),
        upstream_calls
    );

    // A malformed question file names its line.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{{\"id\": 1}}\n", picked[0])).unwrap();
    let (ok, _, err) = run(&[
        "eval",
        "rag",
        "--kb",
        "e2e",
        "--questions",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("line 2"), "{err}");
    let (ok, out, err) = run(&["kb", "rm", "e2e"]);
    assert!(ok && out.contains("removed"), "{err}");
    let (ok, _, err) = run(&["ask", "e2e", "anything"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

/// `eval route` on a tiny dataset with the real SmolLM2 as the SLM and a second `tandem
/// serve` process as the LLM (and judge); a second run generates nothing; `router train`
/// and `router calibrate` work on the results, and the trained router file drives a policy
/// condition.
#[test]
fn eval_route_caches_answers_and_trains_a_router() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, up_ledger) = smollm2_upstream(dir.path());
    let letter = "\n\nReply with the letter (A, B, C or D) of the correct option only.";
    let item = |id: &str, split: &str, prompt: String, grader: Value, max: u32| {
        serde_json::json!({"id": id, "split": split, "prompt": prompt, "grader": grader,
            "max_tokens": max})
        .to_string()
    };
    let items = [
        item(
            "d1",
            "dev",
            format!(
                "What colour is the sky on a clear day?\nA. Green\nB. Blue\nC. Red\nD. Black{letter}"
            ),
            serde_json::json!({"kind": "choice", "answer": "B"}),
            6,
        ),
        item(
            "d2",
            "dev",
            "What is 2 + 3? End with #### and the number.".into(),
            serde_json::json!({"kind": "number", "answer": 5}),
            24,
        ),
        item(
            "d3",
            "dev",
            format!("What is the capital of France?\nA. Paris\nB. Rome\nC. Oslo\nD. Bern{letter}"),
            serde_json::json!({"kind": "choice", "answer": "A"}),
            6,
        ),
        item(
            "t1",
            "test",
            format!("Which animal barks?\nA. Cat\nB. Cow\nC. Dog\nD. Fish{letter}"),
            serde_json::json!({"kind": "choice", "answer": "C"}),
            6,
        ),
        item(
            "t2",
            "test",
            "What is 10 - 4? End with #### and the number.".into(),
            serde_json::json!({"kind": "number", "answer": 6}),
            24,
        ),
        item(
            "t3",
            "test",
            "Write one sentence about the sea.".into(),
            serde_json::json!({"kind": "judge"}),
            16,
        ),
    ];
    let dataset = dir.path().join("d.jsonl");
    std::fs::write(&dataset, items.join("\n")).unwrap();
    let cfg = dir.path().join("tandem.yaml");
    let cfg_text = format!(
        r#"
models:
  - name: slm
    local: smollm2-135m
    engine: {{threads: 1}}
  - name: minilm-l6
    local: minilm-l6
  - name: llm
    provider: openai
    base_url: {}/v1
    model: smollm2-135m
    price: {{input: 0.15, output: 0.60}}
policy:
  local_model: slm
  llm_model: llm
  classifier: {{embedding_model: minilm-l6}}
"#,
        upstream.url
    );
    std::fs::write(&cfg, &cfg_text).unwrap();
    let run = |args: &[&str]| cli(args, &[]);
    let out_dir = dir.path().join("route");
    let (d, c, o) = (
        dataset.to_str().unwrap(),
        cfg.to_str().unwrap(),
        out_dir.to_str().unwrap(),
    );
    let args = ["eval", "route", "--dataset", d, "--config", c, "--out", o];
    let (ok, out, err) = run(&args);
    assert!(ok, "{out}{err}");
    assert!(err.contains("12 to generate"), "{err}");
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(lines(&out_dir.join("answers.jsonl")), 12);
    // The open-ended answers went to the judge (the LLM): two verdicts, whether or not the
    // small judge wrote a rating.
    assert_eq!(lines(&out_dir.join("judgements.jsonl")), 2);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["split"], "test");
    let n = report["n"].as_u64().unwrap();
    assert!((2..=3).contains(&n), "{report}");
    for side in ["slm_only", "llm_only"] {
        let q = report[side]["quality"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&q), "{side}: {q}");
    }
    let names: Vec<&str> = report["routers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("cascade") && names[1].starts_with("rule policy"));
    assert!(names[2].starts_with("learned kNN"), "{names:?}");
    assert!(out_dir.join("router.knn").exists());
    let svg = std::fs::read_to_string(out_dir.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("random"), "{svg}");
    assert!(out.contains("| random |"), "{out}");
    let calls = stats(&up_ledger)["requests"].as_u64().unwrap();
    // A verdict without a rating cost one more request (the follow-up asking for it).
    let follow_ups = std::fs::read_to_string(out_dir.join("judgements.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"followed_up\":true"))
        .count() as u64;
    assert_eq!(
        calls,
        6 + 2 + follow_ups,
        "6 answers and 2 verdicts from the LLM"
    );

    // A second run answers from the caches: nothing reaches either model.
    let (ok, out, err) = run(&args);
    assert!(ok, "{out}{err}");
    assert!(err.contains("0 to generate"), "{err}");
    assert_eq!(lines(&out_dir.join("answers.jsonl")), 12);
    assert_eq!(stats(&up_ledger)["requests"].as_u64().unwrap(), calls);

    // Train a router on the dev split, calibrate it, and route with it.
    let router = dir.path().join("r.knn");
    let r = router.to_str().unwrap();
    let res = ["--dataset", d, "--results", o, "--config", c];
    let (ok, out, err) = run(&[&["router", "train"][..], &res, &["-o", r]].concat());
    assert!(ok, "{out}{err}");
    assert!(out.contains("trained on 3 dev items"), "{out}");
    let (ok, out, err) = run(&[&["router", "calibrate"][..], &res, &["--router", r]].concat());
    assert!(ok || err.contains("no threshold reaches"), "{out}{err}");
    upstream.stop();

    let routed = dir.path().join("routed.yaml");
    std::fs::write(
        &routed,
        format!(
            "{cfg_text}  router: {r}\nroutes:\n  - name: hard\n    when: {{slm_win_probability: {{max: 1.0}}}}\n    then: {{model: slm}}\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = run(&["config", "check", routed.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&[
        "route",
        "--explain",
        "Which animal barks?",
        "--config",
        routed.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("slm_win_probability"), "{out}");
    assert!(out.contains("\"hard\""), "{out}");

    // Without a router file the condition is a configuration error naming the route.
    let unrouted = dir.path().join("unrouted.yaml");
    std::fs::write(
        &unrouted,
        format!("{cfg_text}routes:\n  - name: hard\n    when: {{slm_win_probability: {{max: 0.5}}}}\n    then: {{model: slm}}\n"),
    )
    .unwrap();
    let (ok, _, err) = run(&["config", "check", unrouted.to_str().unwrap()]);
    assert!(
        !ok && err.contains("route `hard` uses slm_win_probability"),
        "{err}"
    );

    // A malformed dataset names its line; an empty one says so.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{{\"id\": \"x\"}}\n", items[0])).unwrap();
    let (ok, _, err) = run(&[
        "eval",
        "route",
        "--dataset",
        bad.to_str().unwrap(),
        "--config",
        c,
    ]);
    assert!(
        !ok && err.contains("line 2") && err.contains("missing field"),
        "{err}"
    );
    std::fs::write(&bad, "\n").unwrap();
    let (ok, _, err) = run(&[
        "eval",
        "route",
        "--dataset",
        bad.to_str().unwrap(),
        "--config",
        c,
    ]);
    assert!(!ok && err.contains("no items"), "{err}");
}

/// Learning from the ledger: with `server.ledger_vectors` the gateway stores each request's
/// classifier embedding, `POST /v1/tandem/feedback` rates answers by their
/// `x-tandem-request-id`, and `tandem router train --ledger` learns from the rated SLM
/// answers a router file the policy accepts. Malformed ratings get OpenAI-shaped errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_learns_from_rated_answers_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("gateway.sqlite");
    let cfg_text = format!(
        r#"server:
  ledger: {}
  ledger_vectors: true
models:
  - name: slm
    local: smollm2-135m
    engine: {{threads: 1}}
  - name: minilm-l6
    local: minilm-l6
  - name: llm
    provider: openai
    base_url: http://127.0.0.1:9/v1
    model: never-called
aliases:
  auto: policy
policy:
  local_model: slm
  llm_model: llm
  classifier: {{embedding_model: minilm-l6}}
"#,
        ledger.display()
    );
    let cfg = dir.path().join("tandem.yaml");
    std::fs::write(
        &cfg,
        format!("{cfg_text}routes:\n  - name: local\n    then: {{model: slm}}\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let server = Server::start(&["serve", "--config", c, "--port", "0"]);
    let base = server.url.clone();
    let client = reqwest::Client::new();
    let rate = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/v1/tandem/feedback");
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let texts = [
        ("Say hello to the team.", "good"),
        ("Reply with one word: yes.", "good"),
        ("Prove the Riemann hypothesis in full.", "bad"),
        ("Write a 5000-word legal contract for a merger.", "bad"),
    ];
    let mut ids = Vec::new();
    for (i, (text, rating)) in texts.iter().enumerate() {
        let r = chat(&base, text, i == 3).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-tandem-model"], "slm");
        let id = r.headers()["x-tandem-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        if i == 3 {
            // Streamed: the header is the handle.
            assert!(r.text().await.unwrap().contains("[DONE]"));
        } else {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["id"], id.as_str(), "the completion's id is the ledger id");
        }
        ids.push((id, *rating));
    }
    for (id, rating) in &ids {
        let (status, v) = rate(json!({"id": id, "rating": rating})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["answered_by"], "slm");
        assert_eq!(v["local"], true);
        assert_eq!(v["score"], if *rating == "good" { 1.0 } else { 0.0 });
    }
    // A graded score is fine too.
    let (status, _) = rate(json!({"id": ids[0].0, "score": 0.9})).await;
    assert_eq!(status, 200);
    // Malformed ratings: 400 with the parameter named; an unknown id: 404.
    for (body, param) in [
        (json!({"rating": "good"}), "id"),
        (json!({"id": "", "rating": "good"}), "id"),
        (json!({"id": 7, "rating": "good"}), "id"),
        (json!({"id": ids[0].0, "rating": "meh"}), "rating"),
        (json!({"id": ids[0].0}), "rating"),
        (json!({"id": ids[0].0, "score": 1.5}), "score"),
        (json!({"id": ids[0].0, "score": "high"}), "score"),
        (
            json!({"id": ids[0].0, "score": 1, "rating": "good"}),
            "score",
        ),
        (
            json!({"id": ids[0].0, "rating": "good", "comment": "x"}),
            "comment",
        ),
    ] {
        let (status, v) = rate(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    let r = client
        .post(format!("{base}/v1/tandem/feedback"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (status, v) = rate(json!({"id": "chatcmpl-nobody", "rating": "good"})).await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chatcmpl-nobody")
    );
    server.stop();

    let out_file = dir.path().join("router.knn");
    let (ok, out, err) = cli(
        &[
            "router",
            "train",
            "--ledger",
            ledger.to_str().unwrap(),
            "-c",
            c,
            "-o",
            out_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("trained on 4 rated answers of slm"), "{out}");
    assert!(out.contains("(2 rated good)"), "{out}");
    assert!(out.contains("0 rated ids not in the ledger"), "{out}");
    assert!(
        out.contains("0 without a stored minilm-l6 embedding"),
        "{out}"
    );
    // The file drives the policy's condition.
    let routed = dir.path().join("routed.yaml");
    std::fs::write(
        &routed,
        format!(
            "{cfg_text}  router: {}\nroutes:\n  - name: hard\n    when: {{slm_win_probability: {{max: 0.5}}}}\n    then: {{model: llm}}\n  - name: local\n    then: {{model: slm}}\n",
            out_file.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&["config", "check", routed.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    // Clear errors: no ledger file; --ledger with --dataset; vectors without an embedding
    // model is a configuration error at its line.
    let (ok, _, err) = cli(
        &[
            "router",
            "train",
            "--ledger",
            dir.path().join("none.sqlite").to_str().unwrap(),
            "-c",
            c,
        ],
        &[],
    );
    assert!(!ok && err.contains("no ledger at"), "{err}");
    let (ok, _, err) = cli(
        &[
            "router",
            "train",
            "--ledger",
            ledger.to_str().unwrap(),
            "--dataset",
            c,
            "-c",
            c,
        ],
        &[],
    );
    assert!(!ok && err.contains("not both"), "{err}");
    let bare = dir.path().join("bare.yaml");
    std::fs::write(
        &bare,
        "server:\n  ledger_vectors: true\nmodels:\n  - name: slm\n    local: smollm2-135m\n",
    )
    .unwrap();
    let (ok, _, err) = cli(&["config", "check", bare.to_str().unwrap()], &[]);
    assert!(
        !ok && err.contains("line 2") && err.contains("ledger_vectors needs"),
        "{err}"
    );
}

/// A judge whose verdict has no `[[rating]]` is asked once more for the rating alone. The
/// follow-up is cached with the verdict, so a re-run asks nothing, even where the judge
/// still gave no rating. Both models are one scripted upstream (wiremock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_route_asks_a_judge_without_a_rating_for_it() {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let up = MockServer::start().await;
    let reply = |text: &str| {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
    };
    let chat = || Mock::given(method("POST")).and(path("/v1/chat/completions"));
    let follow_up = "You did not give your rating";
    // The follow-up on the LLM's answer gets a rating; on the SLM's it does not.
    chat()
        .and(body_string_contains(follow_up))
        .and(body_string_contains("deep blue"))
        .respond_with(reply("Rating: [[7]]"))
        .with_priority(1)
        .mount(&up)
        .await;
    chat()
        .and(body_string_contains(follow_up))
        .respond_with(reply("It is hard to say."))
        .with_priority(2)
        .mount(&up)
        .await;
    chat()
        .and(body_string_contains("impartial judge"))
        .respond_with(reply(
            "The answer is good. The answer is good. The answer is",
        ))
        .with_priority(3)
        .mount(&up)
        .await;
    chat()
        .and(body_string_contains("\"up-llm\""))
        .respond_with(reply("The sea is deep blue."))
        .with_priority(4)
        .mount(&up)
        .await;
    chat()
        .respond_with(reply("The sea is wide."))
        .with_priority(5)
        .mount(&up)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let item = |id: &str, split: &str, prompt: &str| {
        json!({"id": id, "source": "mtbench", "lang": "en", "split": split, "prompt": prompt,
               "grader": {"kind": "judge"}, "max_tokens": 16})
        .to_string()
    };
    let items = [
        item("d1", "dev", "Describe the sea."),
        item("d2", "dev", "Describe a lake."),
        item("t1", "test", "Describe a river."),
        item("t2", "test", "Describe the rain."),
    ];
    let dataset = dir.path().join("d.jsonl");
    std::fs::write(&dataset, items.join("\n")).unwrap();
    let cfg = dir.path().join("tandem.yaml");
    std::fs::write(
        &cfg,
        format!(
            "models:\n  - name: slm\n    provider: openai\n    base_url: {u}/v1\n    model: up-slm\n  \
             - name: llm\n    provider: openai\n    base_url: {u}/v1\n    model: up-llm\n  \
             - name: minilm-l6\n    local: minilm-l6\n\
             policy:\n  classifier: {{embedding_model: minilm-l6}}\n",
            u = up.uri()
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("route");
    let args: Vec<String> = [
        "eval",
        "route",
        "--dataset",
        dataset.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        // A scripted SLM cannot be the policy's local model: name both models.
        "--slm",
        "slm",
        "--llm",
        "llm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = move || {
        let args = args.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&a, &[])
        })
    };
    let (ok, out, err) = run().await.unwrap();
    // The SLM's answers have no rating, so no item is graded: said, with why.
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("4 items lack an answer or a verdict")
            && err.contains("on 4 of them the judge gave no rating even when asked again")
            && err.contains("no item has both answers graded"),
        "{err}"
    );
    // 8 answers, 8 verdicts without a rating, 8 follow-ups.
    let requests = up.received_requests().await.unwrap().len();
    assert_eq!(requests, 24, "{out}{err}");
    let verdicts: Vec<Value> = std::fs::read_to_string(out_dir.join("judgements.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), 8);
    for v in &verdicts {
        assert_eq!(v["followed_up"], true, "{v}");
        let want = if v["model"] == "llm" {
            json!(7.0)
        } else {
            Value::Null
        };
        assert_eq!(v["score"], want, "{v}");
        assert!(v["text"].as_str().unwrap().contains(follow_up), "{v}");
    }
    // Nothing is asked again: not the answers, not the verdicts, not the follow-ups.
    let (ok, out, err) = run().await.unwrap();
    assert!(!ok && err.contains("0 to generate"), "{out}{err}");
    assert_eq!(
        up.received_requests().await.unwrap().len(),
        requests,
        "{out}{err}"
    );
}

/// `tandem router train --outcomes` and `router score` on labelled outcomes, no generation:
/// the strong model wins only on chemistry prompts, so a router trained on one set of such
/// prompts sends the chemistry prompts of another set first (APGR near a perfect ordering's
/// 0.75, random's 0.5);
/// items missing a model are counted and skipped, a malformed line is named.
#[test]
fn router_trains_and_scores_on_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let chem = [
        "Balance the redox equation of permanganate and oxalate in acid solution",
        "What is the hybridisation of the carbon atoms in benzene and ethyne",
        "Compute the pH of a 0.1 M acetic acid solution with Ka 1.8e-5",
        "Which reagent converts a primary alcohol to an aldehyde without over-oxidation",
        "Explain why the boiling point of water is higher than that of hydrogen sulfide",
        "Name the product of the electrophilic nitration of toluene",
    ];
    let easy = [
        "What colour is the sky on a clear day",
        "How many days are there in a week",
        "Say hello to my friend Anna",
        "What is the capital city of France",
        "Name a fruit that is yellow",
        "Which season comes after summer",
    ];
    let write = |name: &str, variant: &str, extra: &str| {
        let mut text = String::new();
        for (i, p) in chem.iter().enumerate() {
            text.push_str(&format!(
                "{{\"id\":\"c{i}\",\"source\":\"science\",\"prompt\":\"{p} {variant}\",\"outcomes\":{{\"big\":1,\"small\":0}}}}\n"
            ));
        }
        for (i, p) in easy.iter().enumerate() {
            text.push_str(&format!(
                "{{\"id\":\"e{i}\",\"source\":\"chat\",\"prompt\":\"{p} {variant}\",\"outcomes\":{{\"big\":1,\"small\":1}}}}\n"
            ));
        }
        text.push_str(extra);
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let train = write(
        "train.jsonl",
        "please",
        "{\"id\":\"lone\",\"prompt\":\"only one model here\",\"outcomes\":{\"big\":1}}\n",
    );
    let test = write("test.jsonl", "?", "");
    let router = dir.path().join("r.knn");
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let (ok, out, err) = tandem(&[
        "router",
        "train",
        "--outcomes",
        &p(&train),
        "--strong",
        "big",
        "--weak",
        "small",
        "--k",
        "3",
        "-o",
        &p(&router),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("1 of 13 items lack an outcome"), "{err}");
    assert!(
        out.contains("leave-one-out") && out.contains("calibration"),
        "{out}"
    );
    let score = |outcomes: &Path| {
        tandem(&[
            "router",
            "score",
            "--outcomes",
            &p(outcomes),
            "--router",
            &p(&router),
            "--strong",
            "big",
            "--weak",
            "small",
            "--json",
        ])
    };
    let (ok, out, err) = score(&test);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["all"]["n"], 12);
    assert_eq!(v["by_source"]["science"]["n"], 6);
    assert_eq!(v["all"]["weak"], 0.5);
    let apgr = v["all"]["apgr"].as_f64().unwrap();
    // Half the prompts need the strong model: a perfect ordering scores 0.75 (0.5 of the
    // area below 50% strong calls ramps up), random routing 0.5.
    assert!(apgr > 0.7, "{out}");
    let share = v["all"]["strong_share_for_95"].as_f64().unwrap();
    assert!(share <= 0.6, "{out}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\":\"a\",\"prompt\":\"x\",\"outcomes\":{\"big\":1,\"small\":0}}\n{oops\n",
    )
    .unwrap();
    let (ok, _, err) = score(&bad);
    assert!(!ok && err.contains("line 2"), "{err}");
}
