//! Knowledge-base tests with the real all-MiniLM-L6-v2 model and real SQLite files.
//!
//! The model is read from `$TANDEM_HOME/models/minilm-l6` (`TANDEM_HOME` defaulting to
//! `~/.cache/tandem`); the tests print a message and pass without checking anything only
//! when that directory is missing. Run them with `--release`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tandem_kb::{
    Embed, IngestEvent, IngestOptions, KbError, KbManager, KnowledgeBase, LocalEmbedder,
    SearchFilter, SearchMode, SearchOptions,
};

fn model_dir() -> PathBuf {
    tandem_kb::tandem_home().join("models").join("minilm-l6")
}

/// The multilingual model (`tandem pull multilingual-e5-small`), for cross-language recall.
fn e5() -> Arc<LocalEmbedder> {
    let dir = tandem_kb::tandem_home()
        .join("models")
        .join("multilingual-e5-small");
    Arc::new(
        LocalEmbedder::load(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run `tandem pull multilingual-e5-small`)",
                    dir.display()
                )
            })
            .with_id("multilingual-e5-small"),
    )
}

fn embedder() -> Option<Arc<LocalEmbedder>> {
    static EMBEDDER: OnceLock<Option<Arc<LocalEmbedder>>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let dir = model_dir();
            if !dir.join("model.safetensors").is_file() {
                eprintln!(
                    "SKIPPED: embedding model not found at {} (set TANDEM_HOME)",
                    dir.display()
                );
                return None;
            }
            Some(Arc::new(LocalEmbedder::load(&dir).unwrap()))
        })
        .clone()
}

fn eval_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../eval/rag")
}

fn manager(dir: &Path) -> Option<KbManager> {
    Some(KbManager::new(dir.join("kb"), embedder()?))
}

fn quiet(_: &IngestEvent) {}

/// Chunks, full-text rows and vectors agree.
fn assert_consistent(kb: &KnowledgeBase) {
    let s = kb.stats().unwrap();
    assert_eq!(s.chunks, s.fts_rows, "FTS rows differ from chunks: {s:?}");
    assert_eq!(s.chunks, s.vectors, "vectors differ from chunks: {s:?}");
    let per_doc: usize = kb.documents().unwrap().iter().map(|d| d.chunks).sum();
    assert_eq!(per_doc, s.chunks);
}

#[derive(Debug, serde::Deserialize)]
struct Question {
    id: String,
    lang: String,
    question: String,
    sources: Vec<String>,
    answerable: bool,
    #[serde(rename = "type")]
    kind: String,
}

fn doc_lang(file: &str) -> &'static str {
    if file.starts_with("zh-") { "zh" } else { "en" }
}

/// `mono`: every source in the question's language; `cross`: none; `mixed`: both.
fn lang_class(q: &Question) -> &'static str {
    let same = q.sources.iter().filter(|s| doc_lang(s) == q.lang).count();
    if same == q.sources.len() {
        "mono"
    } else if same == 0 {
        "cross"
    } else {
        "mixed"
    }
}

/// Whether the top hits contain the evidence: every source for multi-hop questions, any
/// source otherwise (the facts are stated in each listed document).
fn retrieved(q: &Question, files: &[String]) -> bool {
    let has = |s: &String| files.contains(s);
    if q.kind == "multi_hop" {
        q.sources.iter().all(has)
    } else {
        q.sources.iter().any(has)
    }
}

/// Whether the question can be answered from documents in its own language (the bar for
/// an English-only embedder): not `cross`, and for multi-hop, `mono`.
fn same_language(q: &Question) -> bool {
    match lang_class(q) {
        "mono" => true,
        "mixed" => q.kind != "multi_hop",
        _ => false,
    }
}

#[derive(Default)]
struct Tally(BTreeMap<String, (usize, usize)>);

impl Tally {
    fn add(&mut self, key: impl Into<String>, ok: bool) {
        let e = self.0.entry(key.into()).or_default();
        e.0 += usize::from(ok);
        e.1 += 1;
    }
    fn rate(&self, key: &str) -> f64 {
        self.0.get(key).map_or(0.0, |&(a, n)| a as f64 / n as f64)
    }
}

#[test]
fn eval_kb_recall_at_5() {
    let Some(emb) = embedder() else { return };
    let hybrid = recall_at_5(emb.clone(), true);
    for key in [
        "same-language lang=en",
        "same-language lang=zh",
        "same-language",
    ] {
        assert!(
            hybrid.rate(key) >= 0.9,
            "hybrid recall@5 for {key} is {:.3} < 0.9",
            hybrid.rate(key)
        );
    }
}

/// With the multilingual e5 model (the default for new bases), the goal: recall@5
/// ≥ 0.9 over all answerable questions in both languages, same-language questions found
/// in both languages. Measured 2026-11-29: all 0.935, en 0.956, zh 0.915, same-language
/// 0.992 (en 0.983, zh 1.000), cross-language 0.643, multi-hop 0.615 (before the
/// cross-script place in the top k: 0.863, 0.838, 0.887, 0.992, 0.214, 0.308). The
/// floors leave one question of slack per class.
#[test]
fn eval_kb_recall_at_5_multilingual() {
    let hybrid = recall_at_5(e5(), false);
    for (key, floor) in [
        ("same-language lang=en", 0.95),
        ("same-language lang=zh", 0.95),
        ("all", 0.9),
        ("lang=en", 0.93),
        ("lang=zh", 0.9),
        ("class=cross", 0.57),
        ("type=multi_hop", 0.53),
    ] {
        assert!(
            hybrid.rate(key) >= floor,
            "hybrid recall@5 (multilingual-e5-small) for {key} is {:.3} < {floor}",
            hybrid.rate(key)
        );
    }
}

/// Ingests the evaluation set with `emb`, prints recall@5 per mode, language and type, and
/// returns the hybrid tallies; `extra` also checks filters and MMR.
fn recall_at_5(emb: Arc<LocalEmbedder>, extra: bool) -> Tally {
    let tmp = tempfile::tempdir().unwrap();
    let kbs = KbManager::new(tmp.path().join("kb"), emb.clone());
    let kb = kbs.create("eval").unwrap();
    let started = std::time::Instant::now();
    let summary = kb
        .ingest(&[eval_dir().join("kb")], &IngestOptions::default(), &quiet)
        .unwrap();
    eprintln!(
        "ingested {} files, {} chunks in {:.1?} (embed {:.1?}, store {:.1?})",
        summary.added,
        summary.chunks_added,
        started.elapsed(),
        summary.embed_time,
        summary.store_time
    );
    assert_eq!(summary.files_seen, 34);
    assert_eq!(summary.added, 34, "{summary:?}");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert_consistent(&kb);

    let questions: Vec<Question> = std::fs::read_to_string(eval_dir().join("questions.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answerable: Vec<&Question> = questions.iter().filter(|q| q.answerable).collect();
    assert_eq!(answerable.len(), 139);

    let mut report = String::new();
    let mut hybrid = Tally::default();
    for (mode, name) in [
        (SearchMode::Hybrid, "hybrid"),
        (SearchMode::Bm25, "bm25"),
        (SearchMode::Vector, "vector"),
    ] {
        let mut t = Tally::default();
        let mut misses = Vec::new();
        for q in &answerable {
            let opts = SearchOptions {
                k: 5,
                mode,
                ..SearchOptions::default()
            };
            let hits = kb.search(&q.question, &opts).unwrap();
            assert!(hits.len() <= 5);
            let files: Vec<String> = hits.iter().map(|h| h.path.clone()).collect();
            let ok = retrieved(q, &files);
            if !ok {
                misses.push(format!("{}({})", q.id, lang_class(q)));
            }
            t.add("all", ok);
            t.add(format!("lang={}", q.lang), ok);
            t.add(format!("type={}", q.kind), ok);
            t.add(format!("class={}", lang_class(q)), ok);
            if same_language(q) {
                t.add("same-language", ok);
                t.add(format!("same-language lang={}", q.lang), ok);
            }
        }
        report.push_str(&format!("\nrecall@5 {name}:\n"));
        for (key, (a, n)) in &t.0 {
            report.push_str(&format!(
                "  {key:<28} {a:>3}/{n:<3} = {:.3}\n",
                *a as f64 / *n as f64
            ));
        }
        report.push_str(&format!("  misses: {}\n", misses.join(" ")));
        if mode == SearchMode::Hybrid {
            hybrid = t;
        }
    }
    eprintln!("embedding model {}:{report}", emb.model_id());
    if !extra {
        return hybrid;
    }

    // Filters: a path prefix keeps only matching documents.
    let zh_only = SearchOptions {
        k: 10,
        filter: SearchFilter {
            path_prefix: Some("zh-".into()),
            tags: vec![],
        },
        ..SearchOptions::default()
    };
    let hits = kb.search("annual leave days", &zh_only).unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.path.starts_with("zh-")), "{hits:?}");
    let tagged = SearchOptions {
        filter: SearchFilter {
            path_prefix: None,
            tags: vec!["nonexistent".into()],
        },
        ..SearchOptions::default()
    };
    assert!(kb.search("annual leave", &tagged).unwrap().is_empty());

    // MMR returns k distinct chunks and keeps the best one first.
    let plain = kb
        .search("VPN client version", &SearchOptions::default())
        .unwrap();
    let diverse = kb
        .search(
            "VPN client version",
            &SearchOptions {
                mmr: Some(0.5),
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(diverse.len(), 5);
    assert_eq!(diverse[0].chunk_id, plain[0].chunk_id);
    let mut ids: Vec<i64> = diverse.iter().map(|h| h.chunk_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    // Hits carry their provenance.
    let hit = &plain[0];
    assert!(hit.abs_path.ends_with(&hit.path));
    assert!(hit.char_range.end > hit.char_range.start);
    assert!(hit.bm25_rank.is_some() || hit.vector_rank.is_some());
    assert_eq!(kbs.list().unwrap()[0].model_id, emb.model_id());
    hybrid
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn small_corpus(dir: &Path) {
    write(
        &dir.join("leave.md"),
        "# Leave policy\n\nEmployees get 14 days of annual leave after three years.\n\n\
         ## Sick leave\n\nA medical certificate is needed after 3 consecutive days.\n",
    );
    write(
        &dir.join("zh-leave.md"),
        "# 請假辦法\n\n## 特別休假\n\n年資三年以上未滿五年者，每年特別休假十四日。\n\n\
         ## 病假\n\n連續病假超過三日，應檢附醫師證明。\n",
    );
    write(
        &dir.join("sub/vpn.txt"),
        "VPN GUIDE\n\nInstall HarborVPN client version 5.3 before connecting.\n",
    );
    write(&dir.join("image.bin"), "not a document");
    write(&dir.join(".hidden.md"), "# Hidden\n\nnever ingested\n");
}

fn bm25(kb: &KnowledgeBase, q: &str) -> Vec<tandem_kb::Hit> {
    kb.search(
        q,
        &SearchOptions {
            mode: SearchMode::Bm25,
            k: 10,
            ..SearchOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn reingest_update_and_prune() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    small_corpus(&docs);
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("small").unwrap();

    let events = std::sync::Mutex::new(Vec::new());
    let s = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &|e| events.lock().unwrap().push(e.clone()),
        )
        .unwrap();
    assert_eq!(s.files_seen, 4, "{s:?}");
    assert_eq!((s.added, s.updated, s.unchanged), (3, 0, 0), "{s:?}");
    assert_eq!(s.skipped.len(), 1);
    assert!(s.skipped[0].0.ends_with("image.bin"));
    assert!(
        s.skipped[0].1.contains("unsupported file type .bin"),
        "{s:?}"
    );
    assert!(s.failed.is_empty());
    let events = events.into_inner().unwrap();
    assert_eq!(events[0], IngestEvent::Scanned { files: 4 });
    assert_eq!(events.len(), 5);
    let paths: Vec<String> = kb
        .documents()
        .unwrap()
        .iter()
        .map(|d| d.display_path.clone())
        .collect();
    assert_eq!(paths, ["leave.md", "sub/vpn.txt", "zh-leave.md"]);
    assert_consistent(&kb);

    // Same content: nothing re-embedded.
    let again = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &quiet,
        )
        .unwrap();
    assert_eq!((again.added, again.updated, again.unchanged), (0, 0, 3));
    assert_eq!(again.chunks_added, 0);

    // A changed file replaces its chunks: the old text is gone from FTS and vectors.
    let old_hits = bm25(&kb, "medical certificate");
    assert_eq!(old_hits.len(), 1);
    let old_ids: Vec<i64> = bm25(&kb, "annual leave medical certificate days")
        .iter()
        .filter(|h| h.path == "leave.md")
        .map(|h| h.chunk_id)
        .collect();
    assert!(!old_ids.is_empty());
    write(
        &docs.join("leave.md"),
        "# Leave policy\n\nEmployees get 15 days of annual leave after three years.\n\n\
         ## Sick leave\n\nA doctor's note is required after 2 consecutive days.\n",
    );
    let upd = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &quiet,
        )
        .unwrap();
    assert_eq!(
        (upd.added, upd.updated, upd.unchanged),
        (0, 1, 2),
        "{upd:?}"
    );
    assert!(upd.chunks_removed >= 1);
    assert!(bm25(&kb, "medical certificate").is_empty());
    assert_eq!(bm25(&kb, "doctor's note")[0].path, "leave.md");
    assert!(kb.store().chunks(&old_ids).unwrap().is_empty());
    assert!(
        kb.store()
            .vectors(&old_ids)
            .unwrap()
            .iter()
            .all(Option::is_none)
    );
    let vec_hits = kb
        .search(
            "medical certificate for sick leave",
            &SearchOptions {
                mode: SearchMode::Vector,
                k: 10,
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert!(vec_hits.iter().all(|h| !old_ids.contains(&h.chunk_id)));
    assert_consistent(&kb);

    // Chinese BM25 works through the bigram column.
    let zh = bm25(&kb, "病假要醫師證明嗎？");
    assert_eq!(zh[0].path, "zh-leave.md");
    assert_eq!(zh[0].heading_path, ["請假辦法", "病假"]);

    // Prune: a deleted file's document goes, only with `prune`.
    std::fs::remove_file(docs.join("sub/vpn.txt")).unwrap();
    let no_prune = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &quiet,
        )
        .unwrap();
    assert_eq!(no_prune.removed, 0);
    assert_eq!(kb.documents().unwrap().len(), 3);
    let pruned = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions {
                prune: true,
                ..IngestOptions::default()
            },
            &quiet,
        )
        .unwrap();
    assert_eq!(pruned.removed, 1, "{pruned:?}");
    assert_eq!(kb.documents().unwrap().len(), 2);
    assert!(bm25(&kb, "HarborVPN").is_empty());
    assert_consistent(&kb);
}

#[test]
fn bad_files_are_reported_and_the_batch_continues() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs.join("a-good.md"), "# Good\n\nThis one is fine.\n");
    std::fs::write(docs.join("b-latin1.md"), b"caf\xe9 au lait\n").unwrap();
    std::fs::write(docs.join("c-binary.txt"), b"text\0with\0nul").unwrap();
    std::fs::write(docs.join("d-empty.md"), b"").unwrap();
    write(&docs.join("e-large.txt"), &"big file. ".repeat(200));
    write(&docs.join("f-report.pdf"), "%PDF-1.4 not really");
    write(&docs.join("g-last.txt"), "The last file is ingested too.\n");
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("bad").unwrap();
    let s = kb
        .ingest(
            &[docs.clone(), tmp.path().join("missing.md")],
            &IngestOptions {
                max_file_bytes: 1000,
                ..IngestOptions::default()
            },
            &quiet,
        )
        .unwrap();
    let names = |v: &[(PathBuf, String)]| -> Vec<String> {
        v.iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    // Latin-1 text is detected and decoded, not refused.
    assert_eq!(s.added, 3, "{s:?}");
    assert_eq!(
        names(&s.failed),
        ["missing.md", "c-binary.txt", "f-report.pdf"],
        "{s:?}"
    );
    assert!(s.failed[0].1.contains("cannot access"), "{s:?}");
    assert!(s.failed[1].1.contains("binary"), "{s:?}");
    assert!(s.failed[2].1.contains("malformed"), "{s:?}");
    assert_eq!(names(&s.skipped), ["d-empty.md", "e-large.txt"], "{s:?}");
    assert!(s.skipped[1].1.contains("larger than the limit"), "{s:?}");
    assert!(!bm25(&kb, "café").is_empty());
    assert_consistent(&kb);
}

#[test]
fn interrupted_ingest_leaves_a_consistent_base_and_resumes() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    small_corpus(&docs);
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("resume").unwrap();
    // Simulate a kill: the progress callback aborts after the third file (image.bin is
    // skipped, leave.md and sub/vpn.txt are stored).
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kb.ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &|e| {
                if let IngestEvent::File { index: 3, .. } = e {
                    panic!("simulated crash");
                }
            },
        )
    }));
    assert!(crashed.is_err());
    drop(kb);
    let kb = kbs.open("resume").unwrap();
    assert_consistent(&kb);
    assert_eq!(kb.documents().unwrap().len(), 2);
    let s = kb
        .ingest(
            std::slice::from_ref(&docs),
            &IngestOptions::default(),
            &quiet,
        )
        .unwrap();
    assert_eq!((s.added, s.unchanged), (1, 2), "{s:?}");
    assert_consistent(&kb);
}

#[test]
fn bases_refuse_other_models_and_foreign_files() {
    let Some(emb) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kbs = manager(tmp.path()).unwrap();
    kbs.create("mini").unwrap();

    let other: Arc<dyn Embed> = Arc::new(LocalEmbedder::new(
        tandem_embed::Embedder::load(&model_dir()).unwrap(),
        "some-other-model",
    ));
    let other_kbs = KbManager::new(kbs.dir(), other);
    let err = other_kbs.open("mini").unwrap_err();
    assert!(matches!(err, KbError::ModelMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(emb.model_id()) && msg.contains("some-other-model"),
        "{msg}"
    );
    assert!(msg.contains("mini.sqlite"), "{msg}");

    // Garbage, an empty file and another program's SQLite database are refused.
    std::fs::write(kbs.dir().join("garbage.sqlite"), vec![0x5a_u8; 8192]).unwrap();
    std::fs::write(kbs.dir().join("empty.sqlite"), b"").unwrap();
    {
        let c = rusqlite::Connection::open(kbs.dir().join("foreign.sqlite")).unwrap();
        c.execute_batch("CREATE TABLE meta (key TEXT, value TEXT);")
            .unwrap();
    }
    for name in ["garbage", "empty", "foreign"] {
        let err = kbs.open(name).unwrap_err();
        assert!(matches!(err, KbError::NotABase { .. }), "{name}: {err}");
        assert!(
            err.to_string().contains("not a Tandem knowledge base"),
            "{err}"
        );
    }
    let before = std::fs::read(kbs.dir().join("garbage.sqlite")).unwrap();
    assert_eq!(
        before,
        vec![0x5a_u8; 8192],
        "opening must not modify the file"
    );
    assert_eq!(
        std::fs::metadata(kbs.dir().join("empty.sqlite"))
            .unwrap()
            .len(),
        0
    );

    let list = kbs.list().unwrap();
    let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["empty", "foreign", "garbage", "mini"]);
    assert!(list[0].problem.is_some() && list[2].problem.is_some());
    assert!(list[3].problem.is_none());
    assert_eq!(list[3].model_id, emb.model_id());
    assert_eq!(list[3].dim, 384);
    assert_eq!(KbManager::list_dir(kbs.dir()).unwrap(), list);
    let meta = tandem_kb::SqliteStore::read_meta(&kbs.dir().join("mini.sqlite")).unwrap();
    assert_eq!((meta.model_id.as_str(), meta.dim), (emb.model_id(), 384));
    assert!(matches!(
        tandem_kb::SqliteStore::read_meta(&kbs.dir().join("garbage.sqlite")).unwrap_err(),
        KbError::NotABase { .. }
    ));
}

#[test]
fn base_names_and_lifecycle() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kbs = manager(tmp.path()).unwrap();
    assert!(kbs.list().unwrap().is_empty());
    for bad in ["", "a b", "../x", "x.sqlite", "名字", &"a".repeat(65)] {
        let err = kbs.create(bad).unwrap_err();
        assert!(matches!(err, KbError::InvalidName { .. }), "{bad:?}: {err}");
    }
    let long = "A".repeat(64);
    kbs.create(&long).unwrap();
    kbs.create("team_docs-2").unwrap();
    let err = kbs.create("team_docs-2").unwrap_err();
    assert!(matches!(err, KbError::AlreadyExists { .. }), "{err}");
    assert!(matches!(
        kbs.open("nope").unwrap_err(),
        KbError::NotFound { .. }
    ));
    let list = kbs.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!((list[1].documents, list[1].chunks), (0, 0));
    assert!(list[1].size_bytes > 0);
    kbs.remove("team_docs-2").unwrap();
    assert!(matches!(
        kbs.remove("team_docs-2").unwrap_err(),
        KbError::NotFound { .. }
    ));
    assert_eq!(kbs.list().unwrap().len(), 1);
    KbManager::remove_in(kbs.dir(), &long).unwrap();
    assert!(kbs.list().unwrap().is_empty());
}

#[test]
fn query_syntax_is_never_an_sql_error() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    small_corpus(&docs);
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("syntax").unwrap();
    kb.ingest(&[docs], &IngestOptions::default(), &quiet)
        .unwrap();
    let queries = [
        "\"unterminated",
        "\"quoted phrase\"",
        "leave*",
        "AND",
        "OR NOT",
        "annual AND leave",
        "-leave",
        "(leave",
        "leave)",
        "NEAR(annual leave, 2)",
        "body:annual",
        "cjk : 病假",
        "{body cjk}: leave",
        "^annual",
        "leave + sick - days",
        "「病假」要多久？",
        "病假（三日）、證明；",
        "O'Reilly's 14 days",
        "'; DROP TABLE chunks; --",
    ];
    for q in queries {
        for mode in [SearchMode::Hybrid, SearchMode::Bm25, SearchMode::Vector] {
            let opts = SearchOptions {
                mode,
                ..SearchOptions::default()
            };
            if let Err(e) = kb.search(q, &opts) {
                panic!("query {q:?} ({mode:?}) failed: {e}");
            }
        }
    }
    assert!(!bm25(&kb, "\"annual leave\" AND (days*)").is_empty());
    for q in ["", "   ", "\t\n", "?!*()\"", "。，「」？", "-- ** ::"] {
        let err = kb.search(q, &SearchOptions::default()).unwrap_err();
        assert!(matches!(err, KbError::EmptyQuery), "{q:?}: {err}");
    }
    assert_consistent(&kb);
}

#[test]
fn searches_run_while_ingesting() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    small_corpus(&docs);
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("busy").unwrap();
    kb.ingest(&[docs], &IngestOptions::default(), &quiet)
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (searches, ingested) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let r = kb.ingest(&[eval_dir().join("kb")], &IngestOptions::default(), &quiet);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        // A second handle (its own connections) reads while the first one writes.
        let reader_kb = kbs.open("busy").unwrap();
        let mut searches = 0;
        let mut counts = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            for q in ["annual leave days", "病假證明"] {
                let hits = reader_kb.search(q, &SearchOptions::default()).unwrap();
                assert!(!hits.is_empty());
                searches += 1;
            }
            counts.push(reader_kb.stats().unwrap().documents);
        }
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        (searches, writer.join().unwrap().unwrap())
    });
    eprintln!("{searches} searches ran during the ingest");
    assert!(searches >= 2);
    assert_eq!(ingested.added, 34);
    assert_consistent(&kb);
    assert_eq!(kb.documents().unwrap().len(), 37);
}

/// A unit vector from a seed (xorshift), for model-free store tests.
fn seeded_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / norm).collect()
}

fn synthetic_doc(
    store: &tandem_kb::SqliteStore,
    name: &str,
    texts: &[String],
    seed: u64,
) -> tandem_kb::PutOutcome {
    let chunks: Vec<tandem_kb::NewChunk> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| tandem_kb::NewChunk {
            index: i,
            text: t.clone(),
            heading_path: vec![],
            page: None,
            byte_range: 0..t.len(),
            char_range: 0..t.chars().count(),
            hash: String::new(),
            tokens: 0,
            context: String::new(),
            embedding: seeded_vector(seed * 1000 + i as u64, 32),
        })
        .collect();
    let doc = tandem_kb::NewDocument {
        path: format!("/synthetic/{name}"),
        display_path: name.to_string(),
        content_hash: format!("{seed}"),
        size: 0,
        mtime: None,
        format: "text".into(),
        encoding: "UTF-8".into(),
        title: None,
        tags: vec![],
    };
    tandem_kb::KbStore::put_document(store, &doc, &chunks).unwrap()
}

/// The in-memory BM25 index and int8 vectors agree with what is in the file: after writes
/// through the store (applied in place), after writes by another handle (rebuilt), and
/// against a store opened afresh; the int8 pass keeps the exact top hits.
#[test]
fn in_memory_indexes_follow_writes() {
    use tandem_kb::{KbStore, Script, SqliteStore};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mem.sqlite");
    let store = SqliteStore::create(&path, "test", 32, tandem_kb::ChunkOptions::default()).unwrap();
    let words = [
        "annual", "leave", "claims", "policy", "vpn", "client", "version", "clinic", "refill",
        "password", "travel", "expense", "harbor", "days", "form",
    ];
    let text = |d: usize, i: usize| -> String {
        let mut t: Vec<&str> = (0..12)
            .map(|j| words[(d * 7 + i * 3 + j * j) % words.len()])
            .collect();
        t.push(if i.is_multiple_of(5) {
            "rareterm"
        } else {
            "common"
        });
        t.join(" ")
    };
    let nf = SearchFilter::default();
    for d in 0..8 {
        let texts: Vec<String> = (0..80).map(|i| text(d, i)).collect();
        synthetic_doc(&store, &format!("doc{d}.txt"), &texts, d as u64);
    }
    let queries = [
        "annual leave days",
        "VPN client version",
        "rareterm claims",
        "特休假",
        "policies",
    ];
    // Build the index, then write through the same store: replace, remove, add (CJK).
    assert!(
        !store
            .bm25_candidates("annual leave", 5, &nf)
            .unwrap()
            .is_empty()
    );
    let texts: Vec<String> = (0..30)
        .map(|i| format!("{} replaced", text(9, i)))
        .collect();
    assert!(matches!(
        synthetic_doc(&store, "doc3.txt", &texts, 33),
        tandem_kb::PutOutcome::Replaced { .. }
    ));
    assert!(store.remove_document("/synthetic/doc5.txt").unwrap());
    synthetic_doc(
        &store,
        "zh.txt",
        &["員工特休假十四日，HarborNet 登入。".to_string()],
        40,
    );
    let zh = store.bm25_candidates("特休假", 5, &nf).unwrap();
    assert_eq!(zh.len(), 1);
    assert_eq!(
        store.scripts(&[zh[0].0, 1]).unwrap(),
        [Some(Script::Cjk), Some(Script::Other)]
    );
    let fresh = SqliteStore::open(&path).unwrap();
    for q in queries {
        let a = store.bm25_candidates(q, 20, &nf).unwrap();
        let b = fresh.bm25_candidates(q, 20, &nf).unwrap();
        assert_eq!(a.len(), b.len(), "{q}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.0, y.0, "{q}");
            assert!((x.1 - y.1).abs() < 1e-4, "{q}: {x:?} {y:?}");
        }
        // SQLite's FTS5 finds the same best chunk for the rare term.
        if q.starts_with("rareterm") {
            let f = store.fts5_bm25_candidates(q, 1, &nf).unwrap();
            assert!(a.iter().take(10).any(|h| h.0 == f[0].0));
        }
    }
    // Removed and replaced chunks are gone from both indexes.
    assert!(store.bm25_candidates("replaced", 100, &nf).unwrap().len() == 30);
    // Another handle writes: this store sees it at its next search.
    synthetic_doc(&fresh, "other.txt", &["zanzibar quokka".to_string()], 50);
    assert_eq!(store.bm25_candidates("quokka", 5, &nf).unwrap().len(), 1);
    // Filters apply in memory.
    let only_zh = SearchFilter {
        path_prefix: Some("zh".into()),
        tags: vec![],
    };
    assert!(
        store
            .bm25_candidates("annual", 5, &only_zh)
            .unwrap()
            .is_empty()
    );
    // int8 first pass + f32 re-rank keeps the exact top hits (578 vectors > 4·10 + 32).
    let total = store.stats().unwrap().vectors;
    assert!(total > 100, "{total}");
    for s in 0..20 {
        let q = seeded_vector(7_000 + s, 32);
        let exact = store.exact_vector_candidates(&q, 10, &nf).unwrap();
        let fast = store.vector_candidates(&q, 10, &nf).unwrap();
        assert_eq!(
            exact.iter().map(|h| h.0).collect::<Vec<_>>(),
            fast.iter().map(|h| h.0).collect::<Vec<_>>()
        );
        for (a, b) in exact.iter().zip(&fast) {
            assert!((a.1 - b.1).abs() < 1e-6);
        }
        let f = store.vector_candidates(&q, 10, &only_zh).unwrap();
        assert_eq!(f.len(), 1);
    }
}

/// Hybrid search keeps a place for the best chunk in the other script than the query's.
#[test]
fn hybrid_keeps_a_cross_script_chunk() {
    let Some(_) = embedder() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    small_corpus(&docs);
    let kbs = manager(tmp.path()).unwrap();
    let kb = kbs.create("cross").unwrap();
    kb.ingest(&[docs], &IngestOptions::default(), &quiet)
        .unwrap();
    let opts = |cross_script| SearchOptions {
        k: 2,
        cross_script,
        ..SearchOptions::default()
    };
    for (q, zh) in [
        ("medical certificate sick leave", false),
        ("病假醫師證明", true),
    ] {
        let hits = kb.search(q, &opts(1)).unwrap();
        assert_eq!(hits.len(), 2);
        // One hit in the query's script (the best), one in the other.
        assert_eq!(hits[0].path.starts_with("zh-"), zh, "{q}: {hits:?}");
        assert!(
            hits.iter().any(|h| h.path.starts_with("zh-") != zh),
            "{q}: {hits:?}"
        );
        let plain = kb.search(q, &opts(0)).unwrap();
        assert_eq!(hits[0].chunk_id, plain[0].chunk_id, "{q}");
    }
    // Not in the single-retriever modes.
    let bm = kb
        .search(
            "medical certificate",
            &SearchOptions {
                k: 1,
                mode: SearchMode::Bm25,
                ..SearchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(bm[0].path, "leave.md");
}
