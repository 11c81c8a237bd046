//! Tests with the real all-MiniLM-L6-v2 model: accuracy on the held-out set
//! `data/classify-eval.jsonl`, latency, vector reuse, and (ignored by default) the parameter
//! sweep behind the defaults:
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo test --release -p tandem-policy classify -- --nocapture
//! cargo test --release -p tandem-policy classify::eval_tests::sweep -- --ignored --nocapture
//! SWEEP_HOLDOUT=1 cargo test ... sweep ...   # the same sweep over the holdout set
//! cargo test --release -p tandem-policy classify::eval_tests::diagnose -- --ignored --nocapture
//! TANDEM_CLASSIFIER_WEIGHTS=f32 cargo test ...  # exact MiniLM weights instead of int8
//! ```
//!
//! `classify-eval.jsonl` is the tuning set (it includes two earlier holdout sets that were
//! measured once and then merged); `classify-holdout.jsonl` was written after the last
//! tuning change. Tuning against the holdout makes its numbers meaningless: when the data
//! or parameters change substantially, merge it into the tuning set and write a new one.
//!
//! Like `tandem-embed`'s tests, these fail (they do not skip) when the model has not been
//! pulled into `$TANDEM_HOME` (default `~/.cache/tandem`): `tandem pull minilm-l6`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::tests::Counting;
use super::*;

pub(super) const EVAL_JSONL: &str = include_str!("../../data/classify-eval.jsonl");
/// Second labelled set, written after the defaults were tuned on `EVAL_JSONL` and never
/// used for tuning: an estimate of accuracy on unseen requests.
pub(super) const HOLDOUT_JSONL: &str = include_str!("../../data/classify-holdout.jsonl");

/// Accuracy floors asserted by `eval_accuracy_and_latency`. Measured with the defaults
/// (int8 MiniLM, 64-unit window, 2026-11-29): tuning set 0.914 (en 0.931, zh 0.898);
/// holdout 0.893 (en 0.951, zh 0.836); with 7-bit int8 weights (session 5) tuning 0.912
/// (en 0.926, zh 0.898), holdout 0.893 (en 0.951, zh 0.836). The floors
/// leave room for a few items of noise (one zh holdout item is 1.6 points), not for a
/// regression.
const FLOOR_OVERALL: f64 = 0.85;
const FLOOR_PER_LANGUAGE: f64 = 0.84;
const HOLDOUT_FLOOR_OVERALL: f64 = 0.82;
const HOLDOUT_FLOOR_PER_LANGUAGE: f64 = 0.76;

struct MiniLm(tandem_embed::Embedder);

impl TextEmbedder for MiniLm {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.0
            .embed(texts)
            .map(|o| o.vectors)
            .map_err(|e| e.to_string())
    }
}

fn minilm() -> Arc<dyn TextEmbedder> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = tandem_models::ModelStore::from_env()
                .resolve("minilm-l6")
                .expect("minilm-l6 must be pulled (`tandem pull minilm-l6`)")
                .path;
            let weights = eval_weights();
            eprintln!("MiniLM weights: {weights} (TANDEM_CLASSIFIER_WEIGHTS)");
            let options = tandem_embed::LoadOptions { weights };
            Arc::new(MiniLm(
                tandem_embed::Embedder::load_with(&path, &options).unwrap(),
            ))
        })
        .clone()
}

/// Weight precision of the MiniLM under test: `$TANDEM_CLASSIFIER_WEIGHTS` (`f32`, `f16` or
/// `int8`), by default int8 — what the server's classifier uses
/// (`tandem_server::runtime::CLASSIFIER_WEIGHTS`).
fn eval_weights() -> tandem_embed::WeightPrecision {
    std::env::var("TANDEM_CLASSIFIER_WEIGHTS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(tandem_embed::WeightPrecision::Int8)
}

/// The default classifier over MiniLM, built once for all tests.
fn default_classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        let started = Instant::now();
        let c = Classifier::new(&ClassifierConfig::default(), minilm(), None).unwrap();
        eprintln!(
            "built the classifier ({} examples embedded) in {:?}",
            c.example_count(),
            started.elapsed()
        );
        c
    })
}

#[derive(Debug, Deserialize)]
struct Item {
    text: String,
    category: String,
    lang: String,
}

fn eval_items() -> Vec<Item> {
    parse_items(EVAL_JSONL)
}

fn parse_items(jsonl: &str) -> Vec<Item> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Accuracy figures of one run over the evaluation set.
struct Report {
    overall: f64,
    en: f64,
    zh: f64,
    per_category: BTreeMap<String, (usize, usize, usize, usize)>, // en ok/n, zh ok/n
    confusion: BTreeMap<(String, String), Vec<String>>,
}

fn report(items: &[Item], predicted: &[String]) -> Report {
    let mut per_category: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut confusion: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let (mut ok, mut en_ok, mut en_n, mut zh_ok, mut zh_n) = (0, 0, 0, 0, 0);
    for (item, pred) in items.iter().zip(predicted) {
        let hit = *pred == item.category;
        let entry = per_category.entry(item.category.clone()).or_default();
        if item.lang == "zh" {
            zh_n += 1;
            entry.3 += 1;
            if hit {
                zh_ok += 1;
                entry.2 += 1;
            }
        } else {
            en_n += 1;
            entry.1 += 1;
            if hit {
                en_ok += 1;
                entry.0 += 1;
            }
        }
        if hit {
            ok += 1;
        } else {
            confusion
                .entry((item.category.clone(), pred.clone()))
                .or_default()
                .push(item.text.chars().take(60).collect());
        }
    }
    Report {
        overall: ok as f64 / items.len() as f64,
        en: en_ok as f64 / en_n.max(1) as f64,
        zh: zh_ok as f64 / zh_n.max(1) as f64,
        per_category,
        confusion,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Classifies every item, prints accuracy, confusions and latency, and returns the report.
fn evaluate(name: &str, items: &[Item]) -> Report {
    let c = default_classifier();
    // Warm up (first forward pass allocates).
    for _ in 0..3 {
        c.classify("warm up the model please").unwrap();
    }
    let mut predicted = Vec::new();
    let mut all = Vec::new();
    let mut embedded = Vec::new();
    let mut methods: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for item in items {
        let started = Instant::now();
        let r = c.classify(&item.text).unwrap();
        let t = started.elapsed();
        all.push(t);
        if !r.scores.is_empty() {
            embedded.push(t);
        }
        let m = methods.entry(r.method).or_default();
        m.1 += 1;
        if r.category == item.category {
            m.0 += 1;
        }
        predicted.push(r.category);
    }
    let rep = report(items, &predicted);
    eprintln!(
        "\n== classifier {name}: {} items; overall {:.3}, en {:.3}, zh {:.3}",
        items.len(),
        rep.overall,
        rep.en,
        rep.zh
    );
    eprintln!("correct/decided by method: {methods:?}");
    for (cat, (eo, en, zo, zn)) in &rep.per_category {
        eprintln!(
            "  {cat:<18} en {eo:>2}/{en:<2} zh {zo:>2}/{zn:<2} all {:.2}",
            (eo + zo) as f64 / (en + zn) as f64
        );
    }
    eprintln!("confusions (expected -> predicted):");
    for ((exp, pred), texts) in &rep.confusion {
        eprintln!("  {exp} -> {pred} ({}): {texts:?}", texts.len());
    }
    all.sort();
    embedded.sort();
    eprintln!(
        "latency over {} texts: p50 {:?}, p99 {:?}, max {:?}; embedded ({}): p50 {:?}, p99 {:?}",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or_default(),
        embedded.len(),
        percentile(&embedded, 0.5),
        percentile(&embedded, 0.99),
    );
    rep
}

#[test]
fn eval_accuracy_and_latency() {
    // Both sets in one test, so that the latency figures are not disturbed by the other
    // MiniLM tests running in parallel (run with --test-threads=1 for clean numbers).
    let dev = evaluate("eval (tuning set)", &eval_items());
    assert!(dev.overall >= FLOOR_OVERALL, "overall {:.3}", dev.overall);
    assert!(dev.en >= FLOOR_PER_LANGUAGE, "en {:.3}", dev.en);
    assert!(dev.zh >= FLOOR_PER_LANGUAGE, "zh {:.3}", dev.zh);

    let holdout = evaluate("holdout", &parse_items(HOLDOUT_JSONL));
    assert!(
        holdout.overall >= HOLDOUT_FLOOR_OVERALL,
        "overall {:.3}",
        holdout.overall
    );
    assert!(
        holdout.en >= HOLDOUT_FLOOR_PER_LANGUAGE,
        "en {:.3}",
        holdout.en
    );
    assert!(
        holdout.zh >= HOLDOUT_FLOOR_PER_LANGUAGE,
        "zh {:.3}",
        holdout.zh
    );
}

#[test]
fn reload_reuses_example_vectors_with_minilm() {
    let emb = Counting::new(minilm());
    let first = Classifier::new(&ClassifierConfig::default(), emb.clone(), None).unwrap();
    let n = first.example_count();
    assert_eq!(emb.texts.load(Ordering::SeqCst), n);

    emb.reset();
    let cfg: ClassifierConfig = marked_yaml::from_yaml(
        0,
        "examples:\n  travel: ['Book me a flight to Tokyo and a hotel near the office']\n",
    )
    .unwrap();
    let started = Instant::now();
    let second = Classifier::new(&cfg, emb.clone(), Some(&first)).unwrap();
    eprintln!("reload with one new example: {:?}", started.elapsed());
    assert_eq!(emb.calls.load(Ordering::SeqCst), 1);
    assert_eq!(emb.texts.load(Ordering::SeqCst), 1);
    assert_eq!(second.example_count(), n + 1);

    // Reused vectors give the same answers as freshly computed ones.
    let r1 = first
        .classify("How do I get to the office from the airport?")
        .unwrap();
    let r2 = default_classifier()
        .classify("How do I get to the office from the airport?")
        .unwrap();
    assert_eq!(r1, r2);
    let r = second
        .classify("Can you book a flight to Osaka for my business trip next week?")
        .unwrap();
    assert_eq!(r.category, "travel", "{r:?}");
}

#[test]
/// 100 KB inputs go through the real model in one bounded call (the window itself is
/// property-tested in `tests.rs`); the time is printed, not asserted.
fn long_text_with_minilm_is_classified() {
    let c = default_classifier();
    let text = "The committee met again on Thursday and went through the agenda items. "
        .repeat(100 * 1024 / 72);
    assert!(text.len() > 100_000);
    c.classify("warm up").unwrap();
    let started = Instant::now();
    let r = c.classify(&text).unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "100 KB English text: {elapsed:?} -> {} ({})",
        r.category, r.method
    );
    assert!(
        !r.category.is_empty() && (0.0..=1.0).contains(&r.score),
        "{r:?}"
    );

    let zh = "本次會議討論了下一季的工作安排與各部門的協作方式。".repeat(1400);
    assert!(zh.len() > 100_000);
    let started = Instant::now();
    let r = c.classify(&zh).unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "100 KB Chinese text: {elapsed:?} -> {} ({})",
        r.category, r.method
    );
    assert!(
        !r.category.is_empty() && (0.0..=1.0).contains(&r.score),
        "{r:?}"
    );
}

/// The measurements behind the defaults: accuracy for rule modes × top-k × min_score.
#[test]
#[ignore = "slow parameter sweep; run with --ignored --nocapture"]
fn sweep() {
    let c = default_classifier();
    let index = c.index.as_ref().unwrap();
    let items = if std::env::var_os("SWEEP_HOLDOUT").is_some() {
        parse_items(HOLDOUT_JSONL)
    } else {
        eval_items()
    };
    let prepared: Vec<(Scan, Sims)> = items
        .iter()
        .map(|i| {
            (
                c.lexicon.scan(i.text.trim()),
                index.similarities(i.text.trim()).unwrap(),
            )
        })
        .collect();
    let run = |tuning: Tuning| -> Report {
        let predicted: Vec<String> = prepared
            .iter()
            .map(|(scan, sims)| c.decide(scan, Some(sims), tuning).category)
            .collect();
        report(&items, &predicted)
    };
    // Rules alone (keywords-only classifier).
    let k = Classifier::keywords_only(&ClassifierConfig::default()).unwrap();
    let predicted: Vec<String> = items
        .iter()
        .map(|i| k.classify(&i.text).unwrap().category)
        .collect();
    let rep = report(&items, &predicted);
    eprintln!(
        "rules only: overall {:.3} en {:.3} zh {:.3}",
        rep.overall, rep.en, rep.zh
    );
    let base = c.tuning;
    let off = run(Tuning {
        rules: RuleMode::Off,
        ..base
    });
    let boost = run(Tuning {
        rules: RuleMode::Boost(0.2),
        ..base
    });
    let fmt = |r: &Report| format!("{:.3}/{:.3}/{:.3}", r.overall, r.en, r.zh);
    eprintln!(
        "defaults {base:?}: decide {} | embeddings only {} | boost 0.2 {}",
        fmt(&run(base)),
        fmt(&off),
        fmt(&boost)
    );
    // The embedding stage is tuned with the rules switched off ("Off"): that is the
    // situation it has to handle (phrasings no keyword catches). Tuning it behind rules that
    // were themselves written against the same set over-fits the threshold.
    for rules in [RuleMode::Off, RuleMode::Decide] {
        for cjk_dense_weight in [0.0, 0.15, 0.3] {
            for cjk_min_ratio in [0.6, 0.7, 0.8, 1.0] {
                for top_k in [1, 2, 3, 5] {
                    let mut line = format!(
                        "{rules:?} dense={cjk_dense_weight} ratio={cjk_min_ratio} k={top_k}:"
                    );
                    for min_score in [0.15, 0.2, 0.25, 0.3, 0.35] {
                        let rep = run(Tuning {
                            top_k,
                            min_score,
                            rules,
                            cjk_dense_weight,
                            cjk_min_ratio,
                        });
                        line.push_str(&format!("  {min_score:.2}→{}", fmt(&rep)));
                    }
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Per-item detail of the texts that reach the embedding (not a test of anything).
#[test]
#[ignore = "diagnostics; run with --ignored --nocapture"]
fn diagnose() {
    let c = default_classifier();
    let index = c.index.as_ref().unwrap();
    for i in eval_items() {
        let scan = c.lexicon.scan(i.text.trim());
        if scan.leaders().len() == 1 {
            continue;
        }
        let sims = index.similarities(i.text.trim()).unwrap();
        let r = c.classify(&i.text).unwrap();
        let lex = index.category_scores(&sims.lexical, 1);
        let best_lex = lex
            .iter()
            .enumerate()
            .filter_map(|(j, s)| s.map(|s| (j, s.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        eprintln!(
            "{} {} {:<17} -> {:<17} {:.3} {:?} | lex best {} {:.3} cjk {:.2} | {}",
            if r.category == i.category {
                "ok "
            } else {
                "BAD"
            },
            i.lang,
            i.category,
            r.category,
            r.score,
            r.scores.first(),
            c.ids[best_lex.0],
            best_lex.1,
            sims.cjk,
            i.text.chars().take(40).collect::<String>()
        );
    }
}
