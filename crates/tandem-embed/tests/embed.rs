//! Tests against the real all-MiniLM-L6-v2 model.
//!
//! The model directory is `$TANDEM_MINILM_DIR`, or `$TANDEM_HOME/models/minilm-l6` with
//! `TANDEM_HOME` defaulting to `~/.cache/tandem`. The tests fail (they do not skip) when the
//! model is missing; fetch it with `tandem pull minilm-l6`.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tandem_embed::{EmbedError, Embedder};

mod common;
use common::model_dir;

fn embedder() -> &'static Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = model_dir();
        assert!(
            dir.join("model.safetensors").is_file(),
            "MiniLM-L6 model not found in {} — run `tandem pull minilm-l6` \
             (or set TANDEM_MINILM_DIR to a directory holding the model)",
            dir.display()
        );
        Arc::new(Embedder::load(&dir).expect("failed to load MiniLM-L6"))
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn embed_one(text: &str) -> Vec<f32> {
    let mut out = embedder().embed(&[text]).unwrap();
    assert_eq!(out.vectors.len(), 1);
    out.vectors.pop().unwrap()
}

/// Sentences of varied lengths, including an empty one and a long one.
fn mixed_texts() -> Vec<String> {
    let mut texts: Vec<String> = vec![
        "".into(),
        "cat".into(),
        "The quick brown fox jumps over the lazy dog.".into(),
        "Rust is a systems programming language focused on safety, speed and concurrency, \
         and it achieves memory safety without a garbage collector."
            .into(),
        "short".into(),
        "我喜欢在周末和朋友一起去公园散步。".into(),
        "Stocks fell sharply on Monday as investors worried about rising interest rates.".into(),
        "word ".repeat(300),
    ];
    for i in 0..37 {
        texts.push(format!(
            "Sentence number {i} talks about {}.",
            "several interesting things ".repeat(i % 7)
        ));
    }
    texts
}

#[test]
fn dimensions_and_limits() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.max_tokens(), 512);
    assert_eq!(e.vocab_size(), 30522);
    let out = e.embed(&["hello world"]).unwrap();
    assert_eq!(out.vectors.len(), 1);
    assert_eq!(out.vectors[0].len(), 384);
}

#[test]
fn vectors_are_unit_norm() {
    let texts = mixed_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = embedder().embed(&refs).unwrap();
    assert_eq!(out.vectors.len(), texts.len());
    for (i, v) in out.vectors.iter().enumerate() {
        assert_eq!(v.len(), 384);
        assert!(
            v.iter().all(|x| x.is_finite()),
            "input {i} has non-finite values"
        );
        let n = norm(v);
        assert!((n - 1.0).abs() < 1e-4, "input {i} has norm {n}");
    }
}

#[test]
fn similar_meanings_are_close() {
    let out = embedder()
        .embed(&["cat", "kitten", "stock market"])
        .unwrap();
    let cat_kitten = dot(&out.vectors[0], &out.vectors[1]);
    let cat_stocks = dot(&out.vectors[0], &out.vectors[2]);
    println!("cos(cat, kitten) = {cat_kitten:.4}, cos(cat, stock market) = {cat_stocks:.4}");
    assert!(cat_kitten > 0.6, "cos(cat, kitten) = {cat_kitten}");
    assert!(cat_stocks < 0.25, "cos(cat, stock market) = {cat_stocks}");
    assert!(cat_kitten - cat_stocks > 0.4);

    let out = embedder()
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
        ])
        .unwrap();
    let close = dot(&out.vectors[0], &out.vectors[1]);
    let far = dot(&out.vectors[0], &out.vectors[2]);
    println!("cos(eating food, eating bread) = {close:.4}, cos(eating food, movie) = {far:.4}");
    assert!(close > far + 0.4, "close {close}, far {far}");
    // Reference value published in the sentence-transformers documentation for
    // all-MiniLM-L6-v2 (semantic search example).
    assert!(
        (close - 0.7553).abs() < 1e-3,
        "cos = {close}, reference 0.7553"
    );
}

#[test]
fn batch_matches_single_in_input_order() {
    let texts = mixed_texts();
    assert!(texts.len() > 32, "must span several internal batches");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = embedder().embed(&refs).unwrap();
    assert_eq!(batch.vectors.len(), texts.len());
    let mut worst = 0.0f32;
    for (i, text) in texts.iter().enumerate() {
        let single = embed_one(text);
        let diff = max_abs_diff(&batch.vectors[i], &single);
        worst = worst.max(diff);
        assert!(
            diff < 1e-5,
            "input {i} differs from its single embedding by {diff}"
        );
    }
    println!("largest batch-vs-single difference: {worst:e}");
}

#[test]
fn order_is_preserved_with_mixed_lengths() {
    let long = "This is a much longer sentence that goes on and on about nothing in particular, \
                just to make sure that it is padded differently from the others.";
    let texts = [
        "tiny",
        long,
        "",
        "a medium length sentence here",
        long,
        "tiny",
    ];
    let out = embedder().embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let diff = max_abs_diff(&out.vectors[i], &embed_one(text));
        assert!(
            diff < 1e-5,
            "input {i} ({text:?}) out of place: diff {diff}"
        );
    }
    // Identical inputs at different positions give identical vectors, distinct inputs don't.
    assert!(max_abs_diff(&out.vectors[0], &out.vectors[5]) < 1e-5);
    assert!(max_abs_diff(&out.vectors[1], &out.vectors[4]) < 1e-5);
    assert!(max_abs_diff(&out.vectors[0], &out.vectors[1]) > 1e-2);
    // Reversing the request reverses the result.
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    let rev = embedder().embed(&reversed).unwrap();
    for (i, v) in rev.vectors.iter().enumerate() {
        assert!(max_abs_diff(v, &out.vectors[texts.len() - 1 - i]) < 1e-5);
    }
}

#[test]
fn prompt_tokens_and_count_tokens_agree() {
    let e = embedder();
    assert_eq!(e.count_tokens("").unwrap(), 2);
    assert_eq!(e.count_tokens("hello world").unwrap(), 4);
    let texts = [
        "hello world",
        "",
        "The quick brown fox jumps over the lazy dog.",
    ];
    let out = e.embed(&texts).unwrap();
    let expected: usize = texts.iter().map(|t| e.count_tokens(t).unwrap()).sum();
    assert_eq!(out.prompt_tokens, expected);
    assert_eq!(e.tokenize("hello world").unwrap().len(), 2);
}

#[test]
fn empty_string_and_empty_request() {
    let e = embedder();
    let out = e.embed(&[""]).unwrap();
    assert_eq!(out.prompt_tokens, 2);
    assert!((norm(&out.vectors[0]) - 1.0).abs() < 1e-4);

    let out = e.embed(&[]).unwrap();
    assert!(out.vectors.is_empty());
    assert_eq!(out.prompt_tokens, 0);
    let out = e.embed_ids(&[]).unwrap();
    assert!(out.vectors.is_empty());
}

#[test]
fn too_long_input_is_rejected() {
    let e = embedder();
    let long = "word ".repeat(600);
    let err = e.embed(&["fine", &long]).unwrap_err();
    match err {
        EmbedError::InputTooLong { index, tokens, max } => {
            assert_eq!(index, 1);
            assert_eq!(tokens, 602);
            assert_eq!(max, 512);
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    assert!(err_is_invalid_input(e.embed(&[&long])));
    println!("{}", e.embed(&[&long]).unwrap_err());

    // Exactly at the limit works; one more token does not.
    let word = e.tokenize("word").unwrap();
    assert_eq!(word.len(), 1);
    let at_limit = vec![word[0]; 510];
    let out = e.embed_ids(&[at_limit]).unwrap();
    assert_eq!(out.prompt_tokens, 512);
    match e
        .embed_ids(&[vec![word[0]; 5], vec![word[0]; 511]])
        .unwrap_err()
    {
        EmbedError::InputTooLong { index, tokens, max } => {
            assert_eq!((index, tokens, max), (1, 513, 512));
        }
        other => panic!("expected InputTooLong, got {other:?}"),
    }
    let text_at_limit = "word ".repeat(510);
    assert_eq!(e.count_tokens(&text_at_limit).unwrap(), 512);
    assert!(e.embed(&[&text_at_limit]).is_ok());
}

fn err_is_invalid_input<T: std::fmt::Debug>(result: Result<T, EmbedError>) -> bool {
    result.unwrap_err().is_invalid_input()
}

#[test]
fn bad_token_ids_are_rejected() {
    let e = embedder();
    match e
        .embed_ids(&[vec![7592], vec![7592, 30522, 3]])
        .unwrap_err()
    {
        EmbedError::InvalidTokenId {
            index,
            position,
            id,
            vocab_size,
        } => {
            assert_eq!((index, position, id, vocab_size), (1, 1, 30522, 30522));
        }
        other => panic!("expected InvalidTokenId, got {other:?}"),
    }
    match e.embed_ids(&[vec![7592], vec![]]).unwrap_err() {
        EmbedError::EmptyInput { index } => assert_eq!(index, 1),
        other => panic!("expected EmptyInput, got {other:?}"),
    }
    assert!(err_is_invalid_input(e.embed_ids(&[vec![u32::MAX]])));
    // The largest valid id works.
    assert!(e.embed_ids(&[vec![30521]]).is_ok());
}

#[test]
fn token_ids_match_text() {
    let e = embedder();
    let texts = ["The cat sat on the mat.", "hello world", "我爱自然语言处理"];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| e.tokenize(t).unwrap()).collect();
    let from_text = e.embed(&texts).unwrap();
    let from_ids = e.embed_ids(&ids).unwrap();
    assert_eq!(from_text.prompt_tokens, from_ids.prompt_tokens);
    for (a, b) in from_text.vectors.iter().zip(&from_ids.vectors) {
        assert!(max_abs_diff(a, b) < 1e-5);
    }
    // Ids that already carry [CLS] … [SEP] are used as is.
    let wrapped: Vec<u32> = [101]
        .into_iter()
        .chain(ids[0].clone())
        .chain([102])
        .collect();
    let out = e.embed_ids(&[wrapped]).unwrap();
    assert_eq!(out.prompt_tokens, ids[0].len() + 2);
    assert!(max_abs_diff(&out.vectors[0], &from_text.vectors[0]) < 1e-5);
}

#[test]
fn non_latin_text_works() {
    let texts = [
        "我喜欢猫。",
        "今天天气很好，我们去公园散步吧！",
        "日本語のテキストも大丈夫です",
        "Привет, мир",
        "🐱🐈 emoji 🚀",
        "مرحبا بالعالم",
        "\u{0}\u{1f}\t\n  ",
    ];
    let out = embedder().embed(&texts).unwrap();
    assert_eq!(out.vectors.len(), texts.len());
    for v in &out.vectors {
        assert!((norm(v) - 1.0).abs() < 1e-4);
    }
}

#[test]
fn concurrent_use_from_threads() {
    let e = Arc::clone(embedder());
    let expected = embed_one("shared across threads");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || e.embed(&["shared across threads"]).unwrap())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(max_abs_diff(&out.vectors[0], &expected) < 1e-5);
    }
}

#[test]
fn load_errors_name_the_file() {
    let missing = std::env::temp_dir().join("tandem-embed-no-such-model-dir");
    let err = Embedder::load(&missing).unwrap_err();
    assert!(matches!(err, EmbedError::Load { .. }), "{err:?}");
    assert!(!err.is_invalid_input());
    assert!(err.to_string().contains("config.json"), "{err}");
}

/// Throughput for 32 sentences of about 40 tokens. Run with
/// `cargo test --release -p tandem-embed -- --ignored --nocapture throughput`.
#[test]
#[ignore = "benchmark"]
fn throughput() {
    let e = embedder();
    let texts: Vec<String> = (0..32)
        .map(|i| {
            format!(
                "Sentence {i}: the local language model server answers embedding requests \
                 quickly, batching inputs of similar length together so that the busy CPU stays \
                 fully occupied and nobody has to wait for very long."
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = e.count_tokens(refs[0]).unwrap();
    e.embed(&refs).unwrap(); // warm-up
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        e.embed(&refs).unwrap();
    }
    let batched = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for text in &refs {
        e.embed(&[text]).unwrap();
    }
    let one_by_one = started.elapsed().as_secs_f64();
    println!(
        "{} sentences x ~{tokens} tokens: batched {:.1} embeddings/s ({:.1} ms per request), \
         one at a time {:.1} embeddings/s; {} threads available",
        refs.len(),
        (rounds * refs.len()) as f64 / batched,
        1000.0 * batched / rounds as f64,
        refs.len() as f64 / one_by_one,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
}
