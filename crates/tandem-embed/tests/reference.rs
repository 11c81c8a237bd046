//! Compares the embedder's hand-written forward pass with the original candle
//! implementation (`candle_transformers::models::bert::BertModel`, padded batches and
//! masked mean pooling, exactly as the crate used to compute embeddings), and benchmarks
//! both.
//!
//! The model directory is found like in `tests/embed.rs`. Run the benchmark with
//! `cargo test --release -p tandem-embed --test reference -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tandem_embed::Embedder;
use tokenizers::Tokenizer;

mod common;
use common::model_dir;

/// The original candle-based implementation (MiniLM: no prefix, mean pooling).
struct Reference {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl Reference {
    fn load() -> Self {
        let dir = model_dir();
        let config: BertConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        tokenizer.with_truncation(None).unwrap();
        tokenizer.with_padding(None);
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &Device::Cpu,
            )
        }
        .unwrap();
        let model = BertModel::load(vb, &config).unwrap();
        Self { model, tokenizer }
    }

    /// Old `Embedder::embed`: batches of up to 32 sorted by length, padded and masked.
    fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        let seqs: Vec<Vec<u32>> = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .unwrap()
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut vectors = vec![Vec::new(); seqs.len()];
        let mut rest = order.as_slice();
        while let Some(&first) = rest.first() {
            let size = (8192 / seqs[first].len().max(1))
                .clamp(1, 32)
                .min(rest.len());
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            let batch_seqs: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
            for (&i, v) in batch.iter().zip(self.forward_batch(&batch_seqs)) {
                vectors[i] = v;
            }
        }
        vectors
    }

    fn forward_batch(&self, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let batch = seqs.len();
        let len = seqs.iter().map(|s| s.len()).max().unwrap();
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for seq in seqs {
            let padding = len - seq.len();
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(0u32, padding));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, padding));
        }
        let ids = Tensor::from_vec(ids, (batch, len), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (batch, len), &Device::Cpu).unwrap();
        let token_types = ids.zeros_like().unwrap();
        let hidden = self.model.forward(&ids, &token_types, Some(&mask)).unwrap();
        let weights = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let summed = hidden.broadcast_mul(&weights).unwrap().sum(1).unwrap();
        let counts = weights.sum(1).unwrap().clamp(1e-9f32, f32::MAX).unwrap();
        let pooled = summed.broadcast_div(&counts).unwrap();
        let norms = pooled
            .sqr()
            .unwrap()
            .sum_keepdim(1)
            .unwrap()
            .sqrt()
            .unwrap()
            .clamp(1e-12f32, f32::MAX)
            .unwrap();
        pooled.broadcast_div(&norms).unwrap().to_vec2().unwrap()
    }
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(Reference::load)
}

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| Embedder::load(&model_dir()).expect("failed to load MiniLM-L6"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Varied English and Chinese sentences (and a few edge cases) of many lengths.
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        "cat",
        "hi",
        "Translate this to French.",
        "What is the capital of Australia?",
        "Write a Python function that reverses a linked list.",
        "Summarise the following article in three bullet points.",
        "The quick brown fox jumps over the lazy dog.",
        "Can you help me debug this segmentation fault in my C++ code?",
        "Explain quantum entanglement to a five-year-old.",
        "How do I configure nginx as a reverse proxy for a Node.js app?",
        "Write a haiku about autumn leaves falling in the rain.",
        "What's the difference between TCP and UDP?",
        "Rust is a systems programming language focused on safety, speed and concurrency, \
         and it achieves memory safety without a garbage collector.",
        "Stocks fell sharply on Monday as investors worried about rising interest rates.",
        "Please classify the sentiment of this review: the food was cold and the waiter rude.",
        "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
        "fn main() { println!(\"Hello, world!\"); }",
        "Give me a recipe for vegan chocolate cake without nuts.",
        "I need a cover letter for a junior data analyst position at a logistics company.",
        "Prove that the square root of two is irrational.",
        "Solve for x: 3x + 7 = 22.",
        "Who won the FIFA World Cup in 2014, and who scored the winning goal?",
        "Draft a polite email declining a meeting invitation next Tuesday.",
        "List five tips for improving sleep quality.",
        "Convert 72 degrees Fahrenheit to Celsius.",
        "Is it safe to eat raw cookie dough?",
        "Describe the plot of Hamlet in two sentences.",
        "Generate ten creative names for a coffee shop near the university campus.",
        "The mitochondria is the powerhouse of the cell.",
        "URGENT!!! Your account has been suspended, click here to verify: http://example.com",
        "Emojis 🎉🚀 and symbols ©®™ should not break the tokenizer…",
        "Ünïcödé àccents, naïve café, jalapeño, Straße.",
        "1234567890 3.14159 2.71828 1e-12",
        "   leading and trailing spaces   ",
        "我喜欢在周末和朋友一起去公园散步。",
        "今天天气很好。",
        "请帮我把这段话翻译成英文。",
        "人工智能正在改变我们的生活和工作方式。",
        "如何用 Python 读取一个 CSV 文件并计算每一列的平均值？",
        "北京是中国的首都，也是一座历史悠久的城市。",
        "写一首关于春天的短诗。",
        "这家餐厅的菜很好吃，但是服务太慢了。",
        "请解释一下什么是区块链技术。",
        "我明天要去上海出差，请帮我查一下天气。",
        "机器学习模型需要大量的数据进行训练，数据质量直接影响模型的效果。",
        "你好",
        "量子计算机与传统计算机有什么区别？",
        "Mixed 中英文 text: 请 summarise this 段落 in English.",
        "他说：“我们下周再讨论这个问题吧。”",
        "Bonjour, comment ça va aujourd'hui ?",
        "Der schnelle braune Fuchs springt über den faulen Hund.",
        "¿Dónde está la biblioteca más cercana?",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    texts.push(
        "In a distant future, humanity has spread across the stars, building vast cities on \
         worlds that orbit faraway suns; yet despite all its progress, it still argues about \
         the same old questions of fairness, freedom and what it means to live a good life."
            .repeat(3),
    );
    texts.push("长文本测试。".repeat(60));
    texts.push("word ".repeat(300));
    texts
}

fn assert_matches(label: &str, texts: &[String], got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len());
    let mut worst = (1.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let c = cosine(g, w);
        if c < worst.0 {
            worst = (c, i);
        }
        assert!(
            c >= 0.99999,
            "{label}: input {i} ({:?}) has cosine {c} with the reference",
            texts[i]
        );
    }
    println!(
        "{label}: {} inputs, worst 1 - cosine {:.2e} (input {})",
        got.len(),
        1.0 - worst.0,
        worst.1
    );
}

#[test]
fn single_inputs_match_candle_reference() {
    let texts = corpus();
    assert!(texts.len() >= 50);
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| reference().embed(&[t]).pop().unwrap())
        .collect();
    let got: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| embedder().embed(&[t]).unwrap().vectors.pop().unwrap())
        .collect();
    assert_matches("single", &texts, &got, &want);
}

#[test]
fn mixed_batch_matches_candle_reference() {
    let texts = corpus();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = reference().embed(&refs);
    let got = embedder().embed(&refs).unwrap().vectors;
    assert_matches("batch", &texts, &got, &want);
    // Small batch of mixed lengths too.
    let small = &refs[30..40];
    let want = reference().embed(small);
    let got = embedder().embed(small).unwrap().vectors;
    assert_matches("small batch", &texts[30..40], &got, &want);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn latency(f: impl Fn(), reps: usize) -> (f64, f64) {
    for _ in 0..5 {
        f();
    }
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Single-query latency (p50/p99) for ~5, ~20 and ~60-token inputs and the throughput of
/// a 32 × ~40-token batch, old candle path vs the embedder.
#[test]
#[ignore = "benchmark"]
fn benchmark_old_vs_new() {
    let e = embedder();
    let inputs = [
        "classify this request",
        "Can you help me write a short Python script that renames all files in a folder?",
        "I am planning a two-week trip to Japan in April with my family, including two small \
         children, and I would like a detailed day-by-day itinerary that balances sightseeing \
         in Tokyo and Kyoto with rest days, kid-friendly activities and budget tips.",
    ];
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // BENCH_NEW_ONLY=1 skips the old path (for profiling).
    let new_only = std::env::var_os("BENCH_NEW_ONLY").is_some();
    let r = if new_only { None } else { Some(reference()) };
    for text in inputs {
        let tokens = e.count_tokens(text).unwrap();
        let (old50, old99) = if new_only {
            (f64::NAN, f64::NAN)
        } else {
            latency(
                || {
                    r.unwrap().embed(&[text]);
                },
                reps / 4,
            )
        };
        let (new50, new99) = latency(
            || {
                e.embed(&[text]).unwrap();
            },
            reps,
        );
        println!(
            "{tokens:3} tokens: old p50 {old50:6.2} ms p99 {old99:6.2} ms | \
             new p50 {new50:6.2} ms p99 {new99:6.2} ms"
        );
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
    let tokens = e.count_tokens(refs[0]).unwrap();
    let rounds = 5;
    let time = |f: &dyn Fn()| {
        f();
        let t = Instant::now();
        for _ in 0..rounds {
            f();
        }
        t.elapsed().as_secs_f64() / rounds as f64
    };
    let old = if new_only {
        f64::NAN
    } else {
        time(&|| {
            r.unwrap().embed(&refs);
        })
    };
    let new = time(&|| {
        e.embed(&refs).unwrap();
    });
    println!(
        "batch 32 x {tokens} tokens: old {:.1} ms ({:.0} emb/s) | new {:.1} ms ({:.0} emb/s); \
         rayon threads {}",
        old * 1000.0,
        32.0 / old,
        new * 1000.0,
        32.0 / new,
        rayon::current_num_threads()
    );
}
