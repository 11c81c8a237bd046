//! Routing benchmarks (run: `cargo bench -p tandem-server --bench routing`; see
//! docs/benchmarks.md). Each prints its numbers and a ratio against a named baseline measured
//! in the same run:
//!
//! 1. rule-only decision (the default policy with the category already known, so only rule
//!    evaluation is timed) — baseline: the budget of 50 µs p99;
//! 2. PII detection on the same messages, the 9 checksummed kinds and then all 13 (with the
//!    context kinds) — baselines: the rule-only decision, and the checksummed kinds;
//! 3. the task classifier with the real MiniLM over the held-out set, with the server's weight
//!    precision (int8; `BENCH_CLASSIFIER_WEIGHTS=f32` for the exact model) — baseline: 10 ms p99;
//! 4. the learned router's decision (`slm_win_probability`: the classifier's int8 MiniLM
//!    embedding of the message window, then kNN over 432 stored vectors) — baselines: the
//!    10 ms p99 budget and the classifier in the same run;
//! 5. gateway overhead: open-loop load at a fixed rate over loopback against a fast scripted
//!    upstream, directly and through Tandem in interleaved rounds (`BENCH_ROUNDS`, default 6,
//!    of `BENCH_SECS` each); load generator, gateway and upstream are three processes
//!    (`BENCH_LOADGEN=inprocess`, `BENCH_UPSTREAM=inprocess` fold them into this one) —
//!    baselines: the direct call, and a bare axum + reqwest proxy in this process (what any
//!    gateway on this stack pays for two HTTP hops, with no parsing or policy). `BENCH_DIALECT=anthropic|responses` sends the gateway leg
//!    as `/v1/messages` or `/v1/responses` instead of chat completions.
#![allow(clippy::unwrap_used)]

use axum::routing::post;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_policy::classify::{Classification, Classifier};
use tandem_policy::config::{self, DEFAULT_CONFIG};
use tandem_policy::pii::Detector;
use tandem_policy::{Facts, RouteRequest};
use tandem_server::runtime::EmbedAdapter;
use tandem_server::{AppState, ServerOptions};
use tandem_types::openai::ChatMessage;

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

fn summary(name: &str, v: &mut [f64], unit: &str) -> (f64, f64) {
    let p50 = pct(v, 50.0);
    let p99 = pct(v, 99.0);
    println!(
        "{name:<44} n={:<7} p50 {p50:>9.3} {unit}  p99 {p99:>9.3} {unit}",
        v.len()
    );
    (p50, p99)
}

fn texts() -> Vec<String> {
    let eval = include_str!("../../tandem-policy/data/classify-eval.jsonl");
    eval.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect()
}

fn decisions(texts: &[String]) -> f64 {
    let cfg = config::parse(DEFAULT_CONFIG).unwrap();
    let cats = [
        "code",
        "regulated",
        "general",
        "knowledge_base",
        "summarization",
        "customer_chat",
    ];
    let detector = Detector::new();
    let msgs: Vec<Vec<ChatMessage>> = texts
        .iter()
        .map(|t| {
            vec![ChatMessage {
                role: "user".into(),
                content: t.clone(),
                name: None,
                ..Default::default()
            }]
        })
        .collect();
    let pii: Vec<_> = texts.iter().map(|t| detector.detect(t)).collect();
    let mut times = Vec::new();
    for round in 0..200 {
        for (i, m) in msgs.iter().enumerate() {
            let cat = cats[(i + round) % cats.len()];
            let count = || 40usize;
            let classify = || {
                Some(Classification {
                    category: cat.into(),
                    score: 0.8,
                    method: "embedding",
                    matched: None,
                    scores: Vec::new(),
                })
            };
            let t = Instant::now();
            let facts = Facts::new(&count, &classify);
            let rr = RouteRequest {
                requested_model: "auto",
                messages: m,
                headers: &[],
                api_key: None,
                tenant: None,
                latency_budget_ms: None,
                pii: &pii[i],
                tools: 0,
                structured_output: false,
            };
            let d = cfg.decide(&rr, &facts).unwrap();
            std::hint::black_box(d);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let (_, p99) = summary("rule-only decision (default policy)", &mut times, "µs");
    println!("  ratio p99 / 50 µs budget: {:.3}", p99 / 50.0);
    let time_pii = |d: &Detector| {
        let mut ptimes = Vec::new();
        for _ in 0..50 {
            for t in texts {
                let s = Instant::now();
                std::hint::black_box(d.detect(t));
                ptimes.push(s.elapsed().as_secs_f64() * 1e6);
            }
        }
        ptimes
    };
    // The checksummed kinds alone, then with the context kinds (names, addresses, dates of
    // birth, record numbers): what those add, in the same run.
    let checksummed = Detector::with_kinds(&tandem_policy::pii::PiiKind::ALL[..9]);
    let (_, cp99) = summary(
        "PII detection (9 checksummed kinds)",
        &mut time_pii(&checksummed),
        "µs",
    );
    let (_, pp99) = summary(
        "PII detection (all 13 kinds, same messages)",
        &mut time_pii(&detector),
        "µs",
    );
    println!("  ratio p99 / rule-only decision p99: {:.2}", pp99 / p99);
    println!("  ratio p99 / checksummed kinds p99: {:.2}", pp99 / cp99);
    p99
}

fn classifier(texts: &[String], with_router: bool) {
    let store = tandem_models::ModelStore::from_env();
    let Ok(m) = store.resolve("minilm-l6") else {
        println!("classifier: minilm-l6 not pulled; skipped");
        return;
    };
    // BENCH_CLASSIFIER_WEIGHTS=f32 measures the exact model instead of the server's choice.
    let weights = std::env::var("BENCH_CLASSIFIER_WEIGHTS")
        .map(|w| w.parse().unwrap())
        .unwrap_or(tandem_server::runtime::CLASSIFIER_WEIGHTS);
    let options = tandem_embed::LoadOptions { weights };
    let emb = Arc::new(tandem_embed::Embedder::load_with(&m.path, &options).unwrap());
    println!("classifier MiniLM weights: {weights}");
    let c = Classifier::new(&Default::default(), Arc::new(EmbedAdapter(emb)), None).unwrap();
    for t in texts.iter().take(20) {
        c.classify(t).unwrap();
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        for t in texts {
            let s = Instant::now();
            std::hint::black_box(c.classify(t).unwrap());
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (_, p99) = summary("classifier (MiniLM, 432 labelled texts)", &mut times, "ms");
    println!("  ratio p99 / 10 ms budget: {:.3}", p99 / 10.0);
    if with_router {
        router(texts, &emb_for_router(&m.path, weights), p99);
    }
}

fn emb_for_router(
    path: &std::path::Path,
    weights: tandem_embed::WeightPrecision,
) -> Arc<tandem_embed::Embedder> {
    Arc::new(
        tandem_embed::Embedder::load_with(path, &tandem_embed::LoadOptions { weights }).unwrap(),
    )
}

/// The learned router's decision, as the server makes it: window, embedding, kNN.
fn router(texts: &[String], emb: &Arc<tandem_embed::Embedder>, classifier_p99: f64) {
    use tandem_policy::classify::embed_window;
    // Train on the labelled texts themselves (label: "the SLM suffices" unless the task is
    // code or long-form writing) — the decision's cost does not depend on the labels.
    let eval = include_str!("../../tandem-policy/data/classify-eval.jsonl");
    let labels: Vec<f32> = eval
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["text"].is_string())
        .map(|v| match v["category"].as_str() {
            Some("code") | Some("long_form") => 0.0,
            _ => 1.0,
        })
        .collect();
    let examples: Vec<(Vec<f32>, f32)> = texts
        .iter()
        .zip(labels)
        .map(|(t, l)| {
            let w = embed_window(t);
            (emb.embed(&[w.as_ref()]).unwrap().vectors.remove(0), l)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("router.knn");
    tandem_eval::knn::LearnedRouter::train(&examples, "minilm-l6", 10)
        .unwrap()
        .save(&file)
        .unwrap();
    let r = tandem_eval::knn::LearnedRouter::load_expecting(&file, "minilm-l6", emb.dim()).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        for t in texts {
            let s = Instant::now();
            let w = embed_window(t);
            let v = emb.embed(&[w.as_ref()]).unwrap().vectors.remove(0);
            std::hint::black_box(r.predict(&v).unwrap());
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (_, p99) = summary(
        &format!("learned router ({} vectors, k=10)", r.len()),
        &mut times,
        "ms",
    );
    println!(
        "  ratio p99 / 10 ms budget: {:.3}; p99 / classifier p99 (same run): {:.3}",
        p99 / 10.0,
        p99 / classifier_p99
    );
}

/// Process CPU time (user + system) in seconds, from /proc (Linux; 0 elsewhere).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

const COMPLETION: &str = r#"{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"fast","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

async fn load(url: String, rate: f64, secs: f64, body: serde_json::Value) -> (Vec<f64>, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let n = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let c = client.clone();
        let u = url.clone();
        let b = body.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.post(&u).json(&b).send().await;
            let ok = match r {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (t.elapsed().as_secs_f64() * 1e3, ok)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for h in handles {
        let (l, ok) = h.await.unwrap();
        if ok {
            lat.push(l);
        } else {
            errors += 1;
        }
    }
    (lat, errors)
}

/// Runs the open-loop load in a separate process (this bench binary again, in load-generator
/// mode), so that the client's work does not share this process's threads with the gateway
/// and the upstream. `BENCH_LOADGEN=inprocess` keeps the old in-process client.
async fn load_any(url: String, rate: f64, secs: f64, body: serde_json::Value) -> (Vec<f64>, usize) {
    if std::env::var("BENCH_LOADGEN").as_deref() == Ok("inprocess") {
        return load(url, rate, secs, body).await;
    }
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(exe)
        .env("BENCH_LOADGEN_URL", &url)
        .env("BENCH_LOADGEN_BODY", body.to_string())
        .env("BENCH_RATE", rate.to_string())
        .env("BENCH_SECS", secs.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lat = v["lat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (lat, v["errors"].as_u64().unwrap() as usize)
}

/// Load-generator mode: `BENCH_LOADGEN_URL` set; prints `{"lat": [ms...], "errors": n}`.
fn loadgen_main(url: String, rate: f64, secs: f64) {
    let body: serde_json::Value =
        serde_json::from_str(&std::env::var("BENCH_LOADGEN_BODY").unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (lat, errors) = rt.block_on(load(url, rate, secs, body));
    println!("{}", serde_json::json!({"lat": lat, "errors": errors}));
}

/// Serves `app` on a free loopback port (TCP_NODELAY, as `tandem serve` sets it) on this
/// runtime. Returns its base URL.
async fn spawn_server(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let l = l.tap_io(|t| {
            let _ = t.set_nodelay(true);
        });
        axum::serve(l, app).await
    });
    url
}

/// The fast upstream: a fixed completion, no work. Returns its base URL.
async fn serve_upstream() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([("content-type", "application/json")], COMPLETION) }),
    );
    spawn_server(app).await
}

/// Upstream mode (`BENCH_UPSTREAM=1`): serves the fast upstream on its own runtime (one
/// worker thread), prints `listening on URL` and runs until stdin closes.
fn upstream_main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let up = rt.block_on(serve_upstream());
    println!("listening on {up}");
    // The server runs on the runtime's worker; this thread waits for the parent to go.
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
}

/// The upstream: in a separate process (the bench binary again, in upstream mode), as a
/// real deployment has it, unless `BENCH_UPSTREAM=inprocess`. The child lives as long as
/// the returned handle.
async fn start_upstream() -> (String, Option<tokio::process::Child>) {
    if std::env::var("BENCH_UPSTREAM").as_deref() == Ok("inprocess") {
        return (serve_upstream().await, None);
    }
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_UPSTREAM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let up = line.strip_prefix("listening on ").unwrap().to_string();
    (up, Some(child))
}

/// The floor any HTTP gateway on this stack pays: an axum handler that forwards the body
/// unchanged to the upstream with a pooled reqwest client and returns the upstream's bytes
/// (no parsing, no policy). Returns its base URL.
async fn serve_bare_proxy(up: String) -> String {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let target = format!("{up}/v1/chat/completions");
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| {
            let (client, target) = (client.clone(), target.clone());
            async move {
                let r = client
                    .post(&target)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let bytes = r.bytes().await.unwrap();
                ([("content-type", "application/json")], bytes)
            }
        }),
    );
    spawn_server(app).await
}

async fn gateway(rate: f64, secs: f64) {
    let (up, _upstream) = start_upstream().await;
    let yaml = format!(
        "models:\n  - name: fast\n    provider: openai\n    base_url: {up}/v1\n    retries: 0\npolicy:\n  llm_model: fast\nroutes:\n  - name: budget\n    when: {{latency_budget_ms: {{max: 100}}}}\n    then: {{model: fast}}\n  - name: kw\n    when: {{keywords: [invoice, 帳單]}}\n    then: {{model: fast}}\n  - name: default\n    then: {{model: fast}}\n"
    );
    let cfg = config::parse(&yaml).unwrap();
    let state =
        match AppState::with_config(Vec::new(), Vec::new(), ServerOptions::default(), cfg, None) {
            Ok(s) => Arc::new(s),
            Err((e, ..)) => panic!("{e}"),
        };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(tandem_server::serve(l, state, std::future::pending()));
    // BENCH_DIALECT: the client's API on the gateway leg (the upstream is OpenAI-compatible).
    let dialect = std::env::var("BENCH_DIALECT").unwrap_or_else(|_| "openai".into());
    let text = "Hello, what is the status of my order 12345?";
    let (gw_path, body) = match dialect.as_str() {
        "anthropic" => (
            "/v1/messages",
            serde_json::json!({"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}),
        ),
        "responses" => (
            "/v1/responses",
            serde_json::json!({"model": "auto", "input": text}),
        ),
        _ => (
            "/v1/chat/completions",
            serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": text}]}),
        ),
    };
    println!("  client dialect on the gateway leg: {dialect} ({gw_path})");
    let bare = serve_bare_proxy(up.clone()).await;
    let direct_body = serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "Hello, what is the status of my order 12345?"}]});
    // Warm up both paths.
    load(
        format!("{up}/v1/chat/completions"),
        200.0,
        1.0,
        direct_body.clone(),
    )
    .await;
    load(format!("{gw}{gw_path}"), 200.0, 1.0, body.clone()).await;
    load(
        format!("{bare}/v1/chat/completions"),
        200.0,
        1.0,
        direct_body.clone(),
    )
    .await;
    // Interleaved rounds (the legs' order rotates each round): all paths see the
    // same machine over the run, so a slow stretch (another process, the hypervisor) does
    // not land on one side only. The pooled latencies give the headline p99s; each round's
    // p99 difference shows the spread.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
        .max(1);
    // Three legs per round, in rotating order: 0 direct to the upstream, 1 through the bare
    // proxy (the stack's floor), 2 through Tandem.
    // BENCH_LEGS (e.g. `2`): only these legs, to profile one path alone.
    let legs: Vec<usize> = std::env::var("BENCH_LEGS")
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![0, 1, 2]);
    let mut lat_of: [Vec<f64>; 3] = Default::default();
    let mut errors_of = [0usize; 3];
    let mut cpu_of = [0.0f64; 3];
    let mut round_diffs = Vec::new();
    for r in 0..rounds {
        let mut p99 = [0.0f64; 3];
        for k in 0..3 {
            let leg = (k + r) % 3;
            if !legs.contains(&leg) {
                continue;
            }
            let (url, b) = match leg {
                2 => (format!("{gw}{gw_path}"), body.clone()),
                1 => (format!("{bare}/v1/chat/completions"), direct_body.clone()),
                _ => (format!("{up}/v1/chat/completions"), direct_body.clone()),
            };
            let c0 = cpu_secs();
            let (mut lat, errors) = load_any(url, rate, secs, b).await;
            cpu_of[leg] += cpu_secs() - c0;
            p99[leg] = pct(&mut lat, 99.0);
            errors_of[leg] += errors;
            lat_of[leg].extend(lat);
        }
        round_diffs.push(p99[2] - p99[0]);
    }
    let [mut d, mut b, mut g] = lat_of;
    let per = |c: f64, n: usize| c / n.max(1) as f64 * 1e6;
    println!(
        "open-loop {rate} requests/s, {rounds} interleaved rounds of {secs} s per path, loopback; load generator: {}; upstream: {} (all share the 2 cores)",
        if std::env::var("BENCH_LOADGEN").as_deref() == Ok("inprocess") {
            "in this process"
        } else {
            "a separate process"
        },
        if _upstream.is_some() {
            "a separate process"
        } else {
            "in this process"
        }
    );
    let (d50, d99) = summary("  direct to upstream (baseline)", &mut d, "ms");
    let (b50, b99) = summary("  through a bare axum+reqwest proxy", &mut b, "ms");
    let (g50, g99) = summary("  through Tandem", &mut g, "ms");
    println!(
        "  errors: direct {}, bare proxy {}, gateway {}",
        errors_of[0], errors_of[1], errors_of[2]
    );
    let (cd, cb, cg) = (
        per(cpu_of[0], d.len()),
        per(cpu_of[1], b.len()),
        per(cpu_of[2], g.len()),
    );
    println!(
        "  CPU per request of this process (the gateway; plus upstream and client where in-process): direct {cd:.0} µs, bare proxy {cb:.0} µs, through Tandem {cg:.0} µs; Tandem adds {:.0} µs, {:.0} µs over the bare proxy (ratio Tandem / bare proxy {:.2})",
        cg - cd,
        cg - cb,
        (cg - cd) / (cb - cd).max(1e-9)
    );
    println!(
        "  overhead p50 {:.3} ms, p99 {:.3} ms (pooled); bare proxy's p50 {:.3} ms, p99 {:.3} ms; ratio p99 gateway/direct {:.2}; ratio overhead p99 / 1 ms budget {:.2}",
        g50 - d50,
        g99 - d99,
        b50 - d50,
        b99 - d99,
        g99 / d99,
        g99 - d99
    );
    let mut sorted = round_diffs.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  per-round p99 differences (ms): {}; median {:.3}",
        round_diffs
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        pct(&mut sorted, 50.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: f64 = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000.0);
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    if let Ok(url) = std::env::var("BENCH_LOADGEN_URL") {
        loadgen_main(url, rate, secs);
        return;
    }
    if std::env::var("BENCH_UPSTREAM").as_deref() == Ok("1") {
        upstream_main();
        return;
    }
    let only = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let texts = texts();
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if run("decision") {
        decisions(&texts);
    }
    // The router's baseline is the classifier in the same run.
    if run("classifier") || run("router") {
        classifier(&texts, run("router"));
    }
    if run("gateway") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(gateway(rate, secs));
    }
}
