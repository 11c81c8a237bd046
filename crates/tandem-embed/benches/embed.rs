//! Embedding benchmark (run: `cargo bench -p tandem-embed --bench embed`; see
//! docs/benchmarks.md): single-input latency at ~5, ~20 and ~60 tokens and the throughput of
//! a 32 × ~40-token batch, for f32 (the baseline), f16 and int8 weights, each printed with its
//! ratio to f32 measured in the same run. The precisions are interleaved round by round, so
//! that machine noise hits them alike.
//!
//! Needs the real all-MiniLM-L6-v2 (`$TANDEM_MINILM_DIR`, or `$TANDEM_HOME/models/minilm-l6`).
//! `BENCH_REPS` sets the rounds per input (default 200); `RAYON_NUM_THREADS=1` runs the
//! forward pass on the calling thread only.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use tandem_embed::{Embedder, LoadOptions, WeightPrecision};

fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TANDEM_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("TANDEM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache")
                .join("tandem")
        });
    home.join("models").join("minilm-l6")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn main() {
    let dir = model_dir();
    if !dir.join("model.safetensors").is_file() {
        println!("embed: no MiniLM-L6 in {}; skipped", dir.display());
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // BENCH_PRECISIONS=int8 (a comma-separated list) measures only those (for profiling;
    // the ratios then use the first one as the baseline).
    let precisions: Vec<WeightPrecision> = match std::env::var("BENCH_PRECISIONS") {
        Ok(list) => list.split(',').map(|p| p.trim().parse().unwrap()).collect(),
        Err(_) => vec![
            WeightPrecision::F32,
            WeightPrecision::F16,
            WeightPrecision::Int8,
        ],
    };
    let baseline = precisions[0];
    let models: Vec<Embedder> = precisions
        .iter()
        .map(|&weights| {
            let t = Instant::now();
            let e = Embedder::load_with(&dir, &LoadOptions { weights }).unwrap();
            println!(
                "loaded {weights:>4} in {:6.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            e
        })
        .collect();
    println!(
        "rayon threads: {}; {reps} rounds per input",
        rayon::current_num_threads()
    );

    let inputs = [
        "classify this request",
        "Can you help me write a short Python script that renames all files in a folder?",
        "I am planning a two-week trip to Japan in April with my family, including two small \
         children, and I would like a detailed day-by-day itinerary that balances sightseeing \
         in Tokyo and Kyoto with rest days, kid-friendly activities and budget tips.",
    ];
    for text in inputs {
        let tokens = models[0].count_tokens(text).unwrap();
        for e in &models {
            for _ in 0..5 {
                e.embed(&[text]).unwrap();
            }
        }
        let mut ms = vec![Vec::with_capacity(reps); models.len()];
        for _ in 0..reps {
            for (e, ms) in models.iter().zip(ms.iter_mut()) {
                let t = Instant::now();
                std::hint::black_box(e.embed(&[text]).unwrap());
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mut base = 0.0;
        for (p, ms) in precisions.iter().zip(ms.iter_mut()) {
            ms.sort_by(f64::total_cmp);
            let (min, p50, p99) = (ms[0], pct(ms, 50.0), pct(ms, 99.0));
            if *p == baseline {
                base = p50;
            }
            println!(
                "{tokens:3} tokens {p:>4}: min {min:6.2} ms  p50 {p50:6.2} ms  p99 {p99:6.2} ms  \
                 p50 ratio vs {baseline} {:.2}",
                p50 / base
            );
        }
    }

    let texts: Vec<String> = (0..32)
        .map(|i| {
            format!(
                "Sentence {i}: the local language model server answers embedding requests \
                 quickly, batching inputs of similar length together so that the busy CPU stays."
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = models[0].count_tokens(refs[0]).unwrap();
    let rounds = (reps / 20).max(3);
    let mut secs = vec![Vec::with_capacity(rounds); models.len()];
    for e in &models {
        e.embed(&refs).unwrap();
    }
    for _ in 0..rounds {
        for (e, s) in models.iter().zip(secs.iter_mut()) {
            let t = Instant::now();
            std::hint::black_box(e.embed(&refs).unwrap());
            s.push(t.elapsed().as_secs_f64());
        }
    }
    let mut base = 0.0;
    for (p, s) in precisions.iter().zip(secs.iter_mut()) {
        s.sort_by(f64::total_cmp);
        let rate = refs.len() as f64 / pct(s, 50.0);
        if *p == baseline {
            base = rate;
        }
        println!(
            "batch 32 x {tokens} tokens {p:>4}: {rate:7.1} texts/s (median of {rounds}; best {:7.1})  \
             ratio vs {baseline} {:.2}",
            refs.len() as f64 / s[0],
            rate / base
        );
    }
}
