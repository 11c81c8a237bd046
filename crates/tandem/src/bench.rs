//! `tandem bench`: prompt and generation speed measured through Tandem's own HTTP API
//! (streaming), and aggregate generation speed with several concurrent streams.
//!
//! Methods (chosen to be comparable with llama.cpp's `llama-bench` and `llama-batched-bench`):
//! * prompt tokens/s: a prompt of `--prompt-tokens` random token ids, `max_tokens: 1`; time
//!   from sending the request to the first streamed chunk.
//! * generation tokens/s: `--gen-tokens` tokens with end-of-generation tokens banned; the
//!   gaps between streamed chunks (first to last).
//! * N streams: N requests of 128 random prompt tokens each, sent at once; tokens that arrive
//!   after every stream has produced its first token, divided by that window.

use crate::models::resolve;
use crate::serve::{EngineArgs, engine_config};
use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_engine::Engine;
use tandem_models::{ModelKind, ModelStore};
use tandem_server::state::EmbedModel;
use tandem_server::{AppState, ServerOptions};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Catalog name or GGUF path.
    model: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Prompt length for the prompt-processing test.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate per stream.
    #[arg(long, default_value_t = 128)]
    gen_tokens: u32,
    /// Concurrent stream counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    streams: Vec<usize>,
    /// Repetitions of the single-stream tests (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also load this embedding model (for the idle-memory figure); "none" to skip.
    #[arg(long, default_value = "minilm-l6")]
    embedding_model: String,
    #[command(flatten)]
    engine: EngineArgs,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Arrival times of the chunks of one streamed completion that carried a token.
struct StreamTiming {
    sent: Instant,
    chunks: Vec<Instant>,
    completion_tokens: u64,
}

async fn stream_completion(
    client: &reqwest::Client,
    url: &str,
    body: Value,
) -> Result<StreamTiming> {
    let sent = Instant::now();
    let resp = client.post(url).json(&body).send().await?;
    if !resp.status().is_success() {
        bail!(
            "HTTP {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    let mut chunks = Vec::new();
    let mut completion_tokens = 0;
    let mut buf = String::new();
    let mut bytes = resp.bytes_stream();
    while let Some(b) = bytes.next().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&b?));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(data).context("bad SSE chunk")?;
                if let Some(e) = v.get("error") {
                    bail!("stream error: {e}");
                }
                if let Some(u) = v
                    .get("usage")
                    .and_then(|u| u.get("completion_tokens"))
                    .and_then(Value::as_u64)
                {
                    completion_tokens = u;
                }
                let has_token = v["choices"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["finish_reason"].is_null()));
                if has_token {
                    chunks.push(now);
                }
            }
        }
    }
    Ok(StreamTiming {
        sent,
        chunks,
        completion_tokens,
    })
}

fn random_prompt(n: usize, n_vocab: i32, banned: &[i32]) -> Vec<i32> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            loop {
                let t = rng.random_range(0..n_vocab);
                if !banned.contains(&t) {
                    break t;
                }
            }
        })
        .collect()
}

/// The same N-stream measurement straight on the engine (no HTTP), to separate the
/// engine's speed from the server's overhead.
async fn direct_streams(
    engine: &Engine,
    streams: usize,
    gen_tokens: u32,
    banned: &[i32],
) -> Result<f64> {
    let n_vocab = engine.info().n_vocab;
    let sampling = tandem_types::openai::SamplingParams {
        temperature: 0.0,
        logit_bias: banned.iter().map(|&t| (t, -100.0)).collect(),
        ..Default::default()
    };
    let mut rxs = Vec::new();
    for _ in 0..streams {
        rxs.push(engine.generate(tandem_engine::GenerateRequest {
            prompt: random_prompt(128, n_vocab, banned),
            sampling: sampling.clone(),
            max_tokens: Some(gen_tokens),
            logprobs: None,
            constraint: None,
        })?);
    }
    let timings = futures::future::join_all(rxs.into_iter().map(|mut rx| async move {
        let mut times = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                tandem_engine::GenEvent::Token { token: Some(_), .. } => times.push(Instant::now()),
                tandem_engine::GenEvent::Token { .. } => {}
                tandem_engine::GenEvent::Done(_) | tandem_engine::GenEvent::Error(_) => break,
            }
        }
        times
    }))
    .await;
    let all_started = timings
        .iter()
        .filter_map(|t| t.first().copied())
        .max()
        .context("no tokens")?;
    let end = timings
        .iter()
        .filter_map(|t| t.last().copied())
        .max()
        .context("no tokens")?;
    let in_window: usize = timings
        .iter()
        .map(|t| t.iter().filter(|c| **c > all_started).count())
        .sum();
    Ok(in_window as f64 / end.duration_since(all_started).as_secs_f64().max(1e-9))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let store = ModelStore::from_env();
    let m = resolve(&store, &args.model, false)?;
    if m.kind != ModelKind::Chat {
        bail!("{} is not a chat model", m.name);
    }
    let max_streams = args.streams.iter().copied().max().unwrap_or(1).max(1);
    let mut ecfg = engine_config(m.path.clone(), m.name.clone(), &args.engine, &[]);
    ecfg.parallel = max_streams as u32;
    // Each sequence has its own share of the cache: big enough for the longest test.
    let per_seq =
        (args.prompt_tokens.max(128) + args.gen_tokens as usize + 8).next_multiple_of(256);
    ecfg.ctx_size = ecfg.ctx_size.max((per_seq * max_streams) as u32);
    ecfg.prompt_cache = false;
    let engine = Engine::load(ecfg)?;
    let mut embed = Vec::new();
    if args.embedding_model != "none" {
        match store.resolve(&args.embedding_model) {
            Ok(e) if e.kind == ModelKind::Embedding => {
                embed.push(EmbedModel::load(&e.name, &e.path, 0)?);
            }
            _ => eprintln!(
                "note: embedding model {} not loaded (not pulled)",
                args.embedding_model
            ),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = rss_bytes();
    let info = engine.info().clone();
    let banned = engine.eog_tokens();
    let direct = engine.clone();
    let state = Arc::new(AppState::new(vec![engine], embed, ServerOptions::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tandem_server::serve(listener, state, async {
            let _ = stop_rx.await;
        }));
        let url = format!("http://{addr}/v1/completions");
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        let bias: serde_json::Map<String, Value> = banned.iter().map(|t| (t.to_string(), json!(-100))).collect();
        let body = |prompt: Vec<i32>, max_tokens: u32| {
            json!({"model": info.name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                   "stream": true, "stream_options": {"include_usage": true}, "logit_bias": bias})
        };
        // Warm-up.
        stream_completion(&client, &url, body(random_prompt(32, info.n_vocab, &banned), 8)).await?;
        let mut pp = Vec::new();
        let mut tg = Vec::new();
        for _ in 0..args.reps {
            let t = stream_completion(&client, &url, body(random_prompt(args.prompt_tokens, info.n_vocab, &banned), 1)).await?;
            let first = t.chunks.first().copied().context("no token streamed")?;
            pp.push(args.prompt_tokens as f64 / first.duration_since(t.sent).as_secs_f64());
            let t = stream_completion(&client, &url, body(random_prompt(1, info.n_vocab, &banned), args.gen_tokens)).await?;
            let (Some(a), Some(b)) = (t.chunks.first(), t.chunks.last()) else { bail!("no tokens streamed") };
            let n = t.chunks.len().saturating_sub(1) as f64;
            tg.push(n / b.duration_since(*a).as_secs_f64().max(1e-9));
        }
        let mut conc = Vec::new();
        for &s in &args.streams {
            let t0 = Instant::now();
            let futs = (0..s).map(|_| stream_completion(&client, &url, body(random_prompt(128, info.n_vocab, &banned), args.gen_tokens)));
            let results: Vec<StreamTiming> = futures::future::try_join_all(futs).await?;
            let wall = t0.elapsed().as_secs_f64();
            let all_started = results.iter().filter_map(|r| r.chunks.first().copied()).max().context("no tokens")?;
            let end = results.iter().filter_map(|r| r.chunks.last().copied()).max().context("no tokens")?;
            let in_window: usize = results.iter().map(|r| r.chunks.iter().filter(|c| **c > all_started).count()).sum();
            let total: u64 = results.iter().map(|r| r.completion_tokens).sum();
            let engine_only = direct_streams(&direct, s, args.gen_tokens, &banned).await?;
            conc.push(json!({
                "streams": s,
                "engine_aggregate_tokens_per_s": engine_only,
                "aggregate_tokens_per_s": in_window as f64 / end.duration_since(all_started).as_secs_f64().max(1e-9),
                "wall_tokens_per_s": total as f64 / wall,
                "wall_secs": wall,
            }));
        }
        let _ = stop_tx.send(());
        let _ = server.await;
        Ok::<Value, anyhow::Error>(json!({
            "model": info.name,
            "path": info.path,
            "threads": info.threads,
            "threads_batch": info.threads_batch,
            "prompt_tokens": args.prompt_tokens,
            "gen_tokens": args.gen_tokens,
            "prompt_tokens_per_s": median(pp),
            "gen_tokens_per_s": median(tg),
            "concurrency": conc,
            "rss_idle_bytes": rss_idle,
            "model_file_bytes": std::fs::metadata(&info.path).map(|m| m.len()).unwrap_or(0),
        }))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("model {} ({} threads)", report["model"], report["threads"]);
        println!(
            "prompt     {:>8.1} tok/s  (pp{})",
            report["prompt_tokens_per_s"].as_f64().unwrap_or(0.0),
            args.prompt_tokens
        );
        println!(
            "generation {:>8.1} tok/s  (tg{})",
            report["gen_tokens_per_s"].as_f64().unwrap_or(0.0),
            args.gen_tokens
        );
        for c in report["concurrency"].as_array().into_iter().flatten() {
            println!(
                "{:>2} streams {:>8.1} tok/s aggregate over HTTP, {:.1} on the engine alone ({:.1} tok/s over the whole run incl. prompts)",
                c["streams"],
                c["aggregate_tokens_per_s"].as_f64().unwrap_or(0.0),
                c["engine_aggregate_tokens_per_s"].as_f64().unwrap_or(0.0),
                c["wall_tokens_per_s"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "idle RSS   {:>8.1} MB",
            report["rss_idle_bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
    }
    Ok(())
}
