//! Knowledge-base benchmark: `cargo bench -p tandem-kb --bench kb`.
//!
//! 1. Ingests `eval/rag/kb` with the real all-MiniLM-L6-v2 (`$TANDEM_HOME/models/minilm-l6`)
//!    and reports chunks/s, split into extraction, embedding and store time.
//! 2. Embeds the 155 eval questions and reports query-embedding latency.
//! 3. Builds synthetic bases of 10k and 100k chunks (texts recombined from the eval chunks,
//!    random unit vectors; `KB_BENCH_SIZES=10000,100000` to change) and reports retrieval
//!    p50/p95 for hybrid, BM25-only and vector-only search with the eval questions
//!    (query embeddings precomputed), with ratios against BM25-only; the same run times
//!    the previous paths as baselines — BM25 by SQLite FTS5 instead of the in-memory
//!    index, the exact f32 vector scan instead of the int8 pass with f32 re-ranking, and
//!    the hybrid search made of both — and the exact scan against sqlite-vec's `vec0` KNN
//!    over the same vectors. It also reports how many of the exact top-50 vector hits the
//!    int8 pass keeps, and how long the in-memory indexes take to build.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_kb::{
    ChunkOptions, Embed, IngestOptions, KbManager, KbStore, KnowledgeBase, LocalEmbedder, NewChunk,
    NewDocument, SearchFilter, SearchMode, SearchOptions, SqliteStore,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p95: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Stats {
        p50: percentile(&v, 0.5),
        p95: percentile(&v, 0.95),
        mean,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_all<T>(items: &[T], mut f: impl FnMut(&T)) -> Stats {
    // One warm-up pass (page cache, statement cache, vector cache), then the timed pass.
    for it in items.iter().take(5) {
        f(it);
    }
    stats(
        items
            .iter()
            .map(|it| {
                let t = Instant::now();
                f(it);
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let home = tandem_kb::tandem_home();
    let model_dir = home.join("models").join("minilm-l6");
    if !model_dir.join("model.safetensors").is_file() {
        eprintln!("SKIPPED: no embedding model at {}", model_dir.display());
        return;
    }
    let sizes: Vec<usize> = std::env::var("KB_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let embedder = Arc::new(LocalEmbedder::load(&model_dir).unwrap());
    let eval = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../eval/rag");
    let tmp = tempfile::tempdir().unwrap();

    // 1. Ingestion of the eval knowledge base.
    let kbs = KbManager::new(tmp.path().join("kb"), embedder.clone());
    let kb = kbs.create("eval").unwrap();
    let t = Instant::now();
    let s = kb
        .ingest(&[eval.join("kb")], &IngestOptions::default(), &|_| {})
        .unwrap();
    let total = t.elapsed();
    let n = s.chunks_added as f64;
    println!(
        "== ingest eval/rag/kb ({} files, {} chunks, {} tokens)",
        s.added, s.chunks_added, s.tokens
    );
    println!(
        "   total {:.2} s = {:.1} chunks/s; extract+chunk {:.2} s, embed {:.2} s ({:.1} chunks/s), store {:.3} s ({:.0} chunks/s)",
        total.as_secs_f64(),
        n / total.as_secs_f64(),
        s.extract_time.as_secs_f64(),
        s.embed_time.as_secs_f64(),
        n / s.embed_time.as_secs_f64(),
        s.store_time.as_secs_f64(),
        n / s.store_time.as_secs_f64()
    );

    // 2. Query embedding.
    let questions: Vec<String> = std::fs::read_to_string(eval.join("questions.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["question"].as_str().unwrap().to_string()
        })
        .collect();
    let mut query_vecs = Vec::new();
    let qe = time_all(&questions, |q| {
        let _ = embedder.embed_query(q).unwrap();
    });
    for q in &questions {
        query_vecs.push(embedder.embed_query(q).unwrap());
    }
    println!(
        "== query embedding ({} queries): p50 {:.2} ms, p95 {:.2} ms",
        questions.len(),
        ms(qe.p50),
        ms(qe.p95)
    );
    let queries: Vec<(&str, &[f32])> = questions
        .iter()
        .map(String::as_str)
        .zip(query_vecs.iter().map(Vec::as_slice))
        .collect();

    // Texts to recombine for the synthetic bases.
    let eval_chunks = kb.stats().unwrap().chunks;
    let ids: Vec<i64> = (1..=eval_chunks as i64).collect();
    let texts: Vec<String> = kb
        .store()
        .chunks(&ids)
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();

    // 3. Retrieval at scale.
    for &size in &sizes {
        let path = tmp.path().join(format!("synthetic-{size}.sqlite"));
        let store = SqliteStore::create(
            &path,
            embedder.model_id(),
            embedder.dim(),
            ChunkOptions::default(),
        )
        .unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ size as u64);
        let dim = embedder.dim();
        let mut all_vectors: Vec<f32> = Vec::with_capacity(size * dim);
        let t = Instant::now();
        let per_doc = 100;
        for d in 0..size.div_ceil(per_doc) {
            let chunks: Vec<NewChunk> = (0..per_doc.min(size - d * per_doc))
                .map(|i| {
                    let a = &texts[rng.next() as usize % texts.len()];
                    let b = &texts[rng.next() as usize % texts.len()];
                    let tail: String = b.split_whitespace().take(25).collect::<Vec<_>>().join(" ");
                    let text = format!("{a}\n{tail}");
                    let embedding = rng.vector(dim);
                    all_vectors.extend_from_slice(&embedding);
                    NewChunk {
                        index: i,
                        char_range: 0..text.chars().count(),
                        byte_range: 0..text.len(),
                        hash: String::new(),
                        tokens: 0,
                        heading_path: vec![],
                        page: None,
                        context: String::new(),
                        text,
                        embedding,
                    }
                })
                .collect();
            let doc = NewDocument {
                path: format!("/synthetic/doc-{d:06}.md"),
                display_path: format!("doc-{d:06}.md"),
                content_hash: format!("{d}"),
                size: 0,
                mtime: None,
                format: "markdown".into(),
                encoding: "UTF-8".into(),
                title: None,
                tags: vec![],
            };
            store.put_document(&doc, &chunks).unwrap();
        }
        let build = t.elapsed();
        let t = Instant::now();
        let _ = store.vector_candidates(query_vecs[0].as_slice(), 1, &SearchFilter::default());
        let cache_load = t.elapsed();
        let t = Instant::now();
        let _ = store.bm25_candidates("annual leave", 1, &SearchFilter::default());
        let index_load = t.elapsed();
        let size_mb = store.size_bytes() as f64 / 1e6;
        println!(
            "== {size} chunks: built in {:.1} s ({:.0} chunks/s, {size_mb:.0} MB), vector cache load {:.0} ms, text index build {:.0} ms",
            build.as_secs_f64(),
            size as f64 / build.as_secs_f64(),
            ms(cache_load),
            ms(index_load)
        );
        let store = Arc::new(store);
        let kb = KnowledgeBase::new("synthetic", store.clone(), embedder.clone()).unwrap();
        let mut results = Vec::new();
        for (mode, name) in [
            (SearchMode::Bm25, "bm25-only"),
            (SearchMode::Vector, "vector-only"),
            (SearchMode::Hybrid, "hybrid"),
        ] {
            let opts = SearchOptions {
                k: 5,
                mode,
                ..SearchOptions::default()
            };
            let st = time_all(&queries, |(q, v)| {
                let hits = if mode == SearchMode::Bm25 {
                    kb.search(q, &opts).unwrap()
                } else {
                    kb.search_with_embedding(q, v, &opts).unwrap()
                };
                std::hint::black_box(hits);
            });
            println!(
                "   {name:<12} p50 {:>7.2} ms  p95 {:>7.2} ms  mean {:>7.2} ms",
                ms(st.p50),
                ms(st.p95),
                ms(st.mean)
            );
            results.push((name, st));
        }
        let base = &results[0].1;
        for (name, st) in &results[1..] {
            println!(
                "   ratio {name} / bm25-only: p50 {:.2}x, p95 {:.2}x",
                ms(st.p50) / ms(base.p50),
                ms(st.p95) / ms(base.p95)
            );
        }
        // Baselines: the previous paths, in the same run.
        let nf = SearchFilter::default();
        let fts = time_all(&queries, |(q, _)| {
            std::hint::black_box(store.fts5_bm25_candidates(q, 50, &nf).unwrap());
        });
        let exact = time_all(&query_vecs, |v| {
            std::hint::black_box(store.exact_vector_candidates(v, 50, &nf).unwrap());
        });
        let old_hybrid = time_all(&queries, |(q, v)| {
            let b = store.fts5_bm25_candidates(q, 50, &nf).unwrap();
            let e = store.exact_vector_candidates(v, 50, &nf).unwrap();
            let mut fused: std::collections::HashMap<i64, f64> = Default::default();
            for (r, (id, _)) in b.iter().enumerate() {
                *fused.entry(*id).or_default() += 1.0 / (61.0 + r as f64);
            }
            for (r, (id, _)) in e.iter().enumerate() {
                *fused.entry(*id).or_default() += 1.0 / (61.0 + r as f64);
            }
            let mut v: Vec<(i64, f64)> = fused.into_iter().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            let ids: Vec<i64> = v.iter().take(5).map(|x| x.0).collect();
            std::hint::black_box(store.chunks(&ids).unwrap());
        });
        let new_bm25 = time_all(&queries, |(q, _)| {
            std::hint::black_box(store.bm25_candidates(q, 50, &nf).unwrap());
        });
        let new_vec = time_all(&query_vecs, |v| {
            std::hint::black_box(store.vector_candidates(v, 50, &nf).unwrap());
        });
        let kept: usize = query_vecs
            .iter()
            .map(|v| {
                let a = store.exact_vector_candidates(v, 50, &nf).unwrap();
                let b = store.vector_candidates(v, 50, &nf).unwrap();
                a.iter().filter(|x| b.iter().any(|y| y.0 == x.0)).count()
            })
            .sum();
        let hybrid = &results[2].1;
        println!(
            "   baseline (previous) hybrid: FTS5 BM25 + exact scan + RRF p50 {:>7.2} ms  p95 {:>7.2} ms; \
             now {:.2} / {:.2} ms = {:.2}x / {:.2}x",
            ms(old_hybrid.p50),
            ms(old_hybrid.p95),
            ms(hybrid.p50),
            ms(hybrid.p95),
            ms(hybrid.p50) / ms(old_hybrid.p50),
            ms(hybrid.p95) / ms(old_hybrid.p95)
        );
        println!(
            "   top-50 BM25: FTS5 p50 {:.2} ms p95 {:.2} ms; in-memory index p50 {:.2} ms p95 {:.2} ms ({:.3}x p50)",
            ms(fts.p50),
            ms(fts.p95),
            ms(new_bm25.p50),
            ms(new_bm25.p95),
            ms(new_bm25.p50) / ms(fts.p50)
        );
        println!(
            "   top-50 vectors: exact f32 p50 {:.2} ms p95 {:.2} ms; int8 + f32 re-rank p50 {:.2} ms p95 {:.2} ms ({:.3}x p50); \
             exact top-50 kept {:.4}",
            ms(exact.p50),
            ms(exact.p95),
            ms(new_vec.p50),
            ms(new_vec.p95),
            ms(new_vec.p50) / ms(exact.p50),
            kept as f64 / (50 * query_vecs.len()) as f64
        );
        // Raw vector retrieval (50 candidates): exact scan vs sqlite-vec vec0.
        let scan = exact;
        match vec0_knn(&all_vectors, dim, &query_vecs) {
            Ok((vec0, build)) => println!(
                "   top-50 vectors: exact scan p50 {:.2} ms p95 {:.2} ms; sqlite-vec vec0 \
                 (baseline, built in {:.1} s) p50 {:.2} ms p95 {:.2} ms; scan/vec0 p50 ratio {:.2}x",
                ms(scan.p50),
                ms(scan.p95),
                build.as_secs_f64(),
                ms(vec0.p50),
                ms(vec0.p95),
                ms(scan.p50) / ms(vec0.p50)
            ),
            Err(e) => println!("   sqlite-vec baseline unavailable: {e}"),
        }
    }
}

/// KNN (k = 50) over the same vectors with sqlite-vec's `vec0` (brute force, in memory).
fn vec0_knn(
    vectors: &[f32],
    dim: usize,
    queries: &[Vec<f32>],
) -> Result<(Stats, Duration), rusqlite::Error> {
    type Init = unsafe extern "C" fn(
        *mut rusqlite::ffi::sqlite3,
        *mut *mut std::os::raw::c_char,
        *const rusqlite::ffi::sqlite3_api_routines,
    ) -> std::os::raw::c_int;
    // SAFETY: sqlite3_vec_init has the signature of an SQLite extension entry point.
    unsafe {
        let init: Init = std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
        rusqlite::ffi::sqlite3_auto_extension(Some(init));
    }
    let conn = rusqlite::Connection::open_in_memory()?;
    let t = Instant::now();
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}])"
    ))?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO v (rowid, embedding) VALUES (?1, ?2)")?;
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            ins.execute(rusqlite::params![i as i64 + 1, blob])?;
        }
    }
    tx.commit()?;
    let build = t.elapsed();
    let mut stmt =
        conn.prepare("SELECT rowid, distance FROM v WHERE embedding MATCH ?1 AND k = 50")?;
    let mut err = None;
    let st = time_all(queries, |q| {
        let blob: Vec<u8> = q.iter().flat_map(|x| x.to_le_bytes()).collect();
        let r: Result<Vec<(i64, f64)>, _> = stmt
            .query_map([blob], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect());
        if let Err(e) = r {
            err = Some(e);
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok((st, build)),
    }
}
