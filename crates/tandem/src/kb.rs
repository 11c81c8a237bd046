//! `tandem kb create|ls|rm`, `tandem ingest`, `tandem ask`, `tandem eval rag`.

use crate::models::resolve;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tandem_kb::{
    Embed, IngestEvent, IngestOptions, KbManager, LocalEmbedder, SearchMode, SearchOptions,
};
use tandem_models::ModelStore;
use tandem_rag::Mode;
use tandem_rag::eval::{self, Outcome};

/// Embedding model of new knowledge bases when neither the flag nor the configuration says.
pub const DEFAULT_EMBEDDING: &str = "multilingual-e5-small";

#[derive(Subcommand, Debug)]
pub enum KbCmd {
    /// Create an empty knowledge base.
    Create {
        /// Name (letters, digits, `-`, `_`).
        name: String,
        /// Embedding model (catalog name or path); fixed for the life of the base.
        #[arg(long, env = "TANDEM_KB_EMBEDDING")]
        embedding: Option<String>,
    },
    /// List the knowledge bases.
    #[command(alias = "list")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a knowledge base (its documents on disk are not touched).
    Rm {
        /// Name.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Knowledge base (created when missing).
    pub name: String,
    /// Files and folders (Markdown, text, HTML, PDF, DOCX).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Remove documents under these paths whose files are gone.
    #[arg(long)]
    pub prune: bool,
    /// Tag every ingested document (repeatable); searches can filter on tags.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Embedding model for a new base.
    #[arg(long, env = "TANDEM_KB_EMBEDDING")]
    pub embedding: Option<String>,
}

#[derive(Args, Debug)]
pub struct AskArgs {
    /// Knowledge base.
    pub name: String,
    /// The question.
    pub question: String,
    /// Chunks to return.
    #[arg(short, long, default_value_t = 5)]
    pub k: usize,
    /// Retrieval: hybrid, bm25 or vector.
    #[arg(long, default_value = "hybrid")]
    pub search: String,
    /// Only documents whose path starts with this.
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Only documents with this tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where knowledge bases live: `$TANDEM_KB_DIR`, else `$TANDEM_HOME/kb`.
pub fn kb_dir() -> PathBuf {
    match std::env::var_os("TANDEM_KB_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => KbManager::default_dir(),
    }
}

/// Loads embedding model `name` (catalog name or path) for knowledge bases.
pub fn load_embedder(name: &str) -> Result<Arc<dyn Embed>> {
    let store = ModelStore::from_env();
    let r = resolve(&store, name, true)?;
    let e = LocalEmbedder::load(&r.path)
        .map_err(|e| anyhow!("loading embedding model {}: {e}", r.path.display()))?;
    Ok(Arc::new(e.with_id(&r.name)))
}

/// The embedding model a base was built with, read from its file.
fn base_model(name: &str) -> Result<Option<String>> {
    let path = kb_dir().join(format!("{name}.sqlite"));
    if !path.exists() {
        return Ok(None);
    }
    let meta = tandem_kb::SqliteStore::read_meta(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(meta.model_id))
}

/// The embedding model of new bases: flag, configuration, default.
fn new_base_model(flag: Option<&str>) -> Result<String> {
    if let Some(f) = flag {
        return Ok(f.to_string());
    }
    let (cfg, _) = crate::config::load_or_default(None)?;
    Ok(cfg
        .rag
        .embedding_model
        .clone()
        .or(cfg.embedding_model.clone())
        .and_then(|m| match cfg.model(&m).map(|s| &s.source) {
            Some(tandem_policy::config::ModelSource::Local { source, .. }) => Some(source.clone()),
            _ => None,
        })
        .unwrap_or_else(|| DEFAULT_EMBEDDING.to_string()))
}

/// A manager over the default directory with the model `name` was built with (or the
/// default model for a new base).
pub fn manager_for(name: &str, flag: Option<&str>) -> Result<KbManager> {
    let model = match base_model(name)? {
        Some(m) => {
            if let Some(f) = flag
                && f != m
            {
                bail!("knowledge base `{name}` was built with `{m}`, not `{f}`");
            }
            m
        }
        None => new_base_model(flag)?,
    };
    Ok(KbManager::new(kb_dir(), load_embedder(&model)?))
}

pub fn run(cmd: KbCmd) -> Result<()> {
    match cmd {
        KbCmd::Create { name, embedding } => {
            tandem_kb::validate_name(&name)?;
            let m = KbManager::new(
                kb_dir(),
                load_embedder(&new_base_model(embedding.as_deref())?)?,
            );
            let b = m.create(&name)?;
            println!(
                "created knowledge base `{name}` ({}; embedding model {}, {} dimensions)",
                m.path_of(&name)?.display(),
                b.meta().model_id,
                b.meta().dim
            );
            Ok(())
        }
        KbCmd::Ls { json } => {
            let bases = KbManager::list_dir(&kb_dir())?;
            if json {
                let v: Vec<serde_json::Value> = bases
                    .iter()
                    .map(|b| serde_json::json!({"name": b.name, "documents": b.documents, "chunks": b.chunks, "size_bytes": b.size_bytes, "embedding_model": b.model_id, "problem": b.problem}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if bases.is_empty() {
                println!(
                    "no knowledge bases in {} (create one with `tandem kb create NAME`)",
                    kb_dir().display()
                );
                return Ok(());
            }
            println!(
                "{:<24} {:>9} {:>8} {:>10}  MODEL",
                "NAME", "DOCUMENTS", "CHUNKS", "SIZE"
            );
            for b in bases {
                println!(
                    "{:<24} {:>9} {:>8} {:>9.1}M  {}{}",
                    b.name,
                    b.documents,
                    b.chunks,
                    b.size_bytes as f64 / 1e6,
                    b.model_id,
                    b.problem
                        .map(|p| format!("  (unreadable: {p})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        KbCmd::Rm { name } => {
            tandem_kb::validate_name(&name)?;
            KbManager::remove_in(&kb_dir(), &name)?;
            println!("removed knowledge base `{name}`");
            Ok(())
        }
    }
}

pub fn ingest(a: IngestArgs) -> Result<()> {
    tandem_kb::validate_name(&a.name)?;
    for p in &a.paths {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
    }
    let m = manager_for(&a.name, a.embedding.as_deref())?;
    let base = match m.open(&a.name) {
        Ok(b) => b,
        Err(tandem_kb::KbError::NotFound { .. }) => {
            eprintln!("creating knowledge base `{}`", a.name);
            m.create(&a.name)?
        }
        Err(e) => return Err(e.into()),
    };
    let opts = IngestOptions {
        prune: a.prune,
        tags: a.tags.clone(),
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |e: &IngestEvent| match e {
        IngestEvent::Scanned { files } => bar.set_length(*files as u64),
        IngestEvent::File { path, status, .. } => {
            bar.inc(1);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            bar.set_message(name.clone());
            if matches!(
                status,
                tandem_kb::FileStatus::Failed(_) | tandem_kb::FileStatus::Skipped(_)
            ) {
                bar.println(format!(
                    "{}: {}",
                    path.display(),
                    tandem_server::kb::status_text(status)
                ));
            }
        }
        IngestEvent::Removed { path } => bar.println(format!("{path}: removed (file is gone)")),
    };
    let s = base.ingest(&a.paths, &opts, &progress)?;
    bar.finish_and_clear();
    println!(
        "{}: {} files seen; {} added, {} updated, {} unchanged, {} removed; {} failed, {} skipped; {} chunks written ({} tokens) in {:.1}s (extract {:.1}s, embed {:.1}s, store {:.1}s)",
        a.name,
        s.files_seen,
        s.added,
        s.updated,
        s.unchanged,
        s.removed,
        s.failed.len(),
        s.skipped.len(),
        s.chunks_added,
        s.tokens,
        (s.extract_time + s.embed_time + s.store_time).as_secs_f64(),
        s.extract_time.as_secs_f64(),
        s.embed_time.as_secs_f64(),
        s.store_time.as_secs_f64()
    );
    for (p, r) in &s.failed {
        println!("  failed  {}: {r}", p.display());
    }
    for (p, r) in &s.skipped {
        println!("  skipped {}: {r}", p.display());
    }
    Ok(())
}

pub fn ask(a: AskArgs) -> Result<()> {
    tandem_kb::validate_name(&a.name)?;
    if !(1..=100).contains(&a.k) {
        bail!("-k must be 1 to 100");
    }
    let mode = match a.search.as_str() {
        "hybrid" => SearchMode::Hybrid,
        "bm25" => SearchMode::Bm25,
        "vector" => SearchMode::Vector,
        other => bail!("--search must be hybrid, bm25 or vector, not `{other}`"),
    };
    let m = manager_for(&a.name, None)?;
    let base = m.open(&a.name)?;
    let opts = SearchOptions {
        k: a.k,
        mode,
        filter: tandem_kb::SearchFilter {
            path_prefix: a.path_prefix.clone(),
            tags: a.tags.clone(),
        },
        candidates: SearchOptions::default().candidates.max(a.k * 4),
        ..SearchOptions::default()
    };
    let start = std::time::Instant::now();
    let hits = base.search(&a.question, &opts)?;
    let took = start.elapsed().as_secs_f64() * 1000.0;
    if a.json {
        let v: Vec<serde_json::Value> = hits
            .iter()
            .enumerate()
            .map(|(i, h)| tandem_server::kb::hit_json(i + 1, h))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"data": v, "took_ms": took}))?
        );
        return Ok(());
    }
    if hits.is_empty() {
        println!("nothing found ({took:.1} ms)");
    }
    for (i, h) in hits.iter().enumerate() {
        let heading = if h.heading_path.is_empty() {
            String::new()
        } else {
            format!(" › {}", h.heading_path.join(" › "))
        };
        let page = h.page.map(|p| format!(" (page {p})")).unwrap_or_default();
        println!("[{}] {:.4}  {}{heading}{page}", i + 1, h.score, h.path);
        println!("    {}", tandem_rag::cite::snippet(&h.text, 240));
    }
    eprintln!("{} results in {took:.1} ms", hits.len());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tandem eval rag
// ---------------------------------------------------------------------------------------------

#[derive(Args, Debug)]
pub struct EvalRagArgs {
    /// Knowledge base to ask.
    #[arg(long)]
    pub kb: String,
    /// Questions (JSONL: id, lang, question, answer, accept, sources, answerable, type).
    #[arg(long)]
    pub questions: PathBuf,
    /// Ingest this folder into the base first (created when missing; unchanged files are skipped).
    #[arg(long)]
    pub ingest: Option<PathBuf>,
    /// Modes to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "local,escalate,compress,draft_verify"
    )]
    pub modes: Vec<String>,
    /// Only the first N questions of each language (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Configuration naming the SLM and LLM (`rag.slm`, `rag.llm`); default: the built-in one.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Output folder: outcomes.jsonl (the cache: a re-run skips answered questions),
    /// report.json, report.md, chart.svg.
    #[arg(long, default_value = "eval-out/rag")]
    pub out: PathBuf,
    /// Pull missing catalog models.
    #[arg(long)]
    pub pull: bool,
}

fn select_questions(all: Vec<eval::Question>, limit: usize) -> Vec<eval::Question> {
    if limit == 0 {
        return all;
    }
    let mut per_lang: std::collections::BTreeMap<String, usize> = Default::default();
    all.into_iter()
        .filter(|q| {
            let n = per_lang.entry(q.lang.clone()).or_default();
            *n += 1;
            *n <= limit
        })
        .collect()
}

pub fn eval_rag(a: EvalRagArgs) -> Result<()> {
    tandem_kb::validate_name(&a.kb)?;
    let modes: Vec<Mode> = a
        .modes
        .iter()
        .map(|m| m.parse::<Mode>().map_err(|e| anyhow!("--modes: {e}")))
        .collect::<Result<_>>()?;
    let text = std::fs::read_to_string(&a.questions)
        .with_context(|| format!("reading {}", a.questions.display()))?;
    let questions =
        eval::load_questions(&text).map_err(|e| anyhow!("{}: {e}", a.questions.display()))?;
    let questions = select_questions(questions, a.limit);
    if let Some(dir) = &a.ingest {
        ingest(IngestArgs {
            name: a.kb.clone(),
            paths: vec![dir.clone()],
            prune: true,
            tags: Vec::new(),
            embedding: None,
        })?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let cache_path = a.out.join("outcomes.jsonl");
    let mut outcomes: Vec<Outcome> = match std::fs::read_to_string(&cache_path) {
        Ok(t) => t
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Outcome>(l).ok())
            .filter(|o| o.error.is_none())
            .collect(),
        Err(_) => Vec::new(),
    };
    let (cfg, label) = crate::config::load_or_default(a.config.as_deref())?;
    let state = crate::serve::local_state(cfg, a.pull)
        .with_context(|| format!("loading the models of {label}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut cache = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cache_path)
        .with_context(|| format!("opening {}", cache_path.display()))?;
    let total = questions.len() * modes.len();
    let mut done = 0;
    for mode in &modes {
        for q in &questions {
            done += 1;
            if outcomes
                .iter()
                .any(|o| o.id == q.id && o.mode == mode.as_str())
            {
                continue;
            }
            let o = rt.block_on(ask_one(&state, &a.kb, *mode, q));
            eprintln!(
                "[{done}/{total}] {:<12} {:<5} {} {:>6.1}s{}{}",
                mode.as_str(),
                q.id,
                if o.correct { "ok  " } else { "miss" },
                o.latency_ms / 1000.0,
                if o.escalated { " escalated" } else { "" },
                o.error
                    .as_deref()
                    .map(|e| format!(" ERROR {e}"))
                    .unwrap_or_default()
            );
            writeln!(cache, "{}", serde_json::to_string(&o)?)?;
            outcomes.push(o);
        }
    }
    let ids: std::collections::HashSet<&str> = questions.iter().map(|q| q.id.as_str()).collect();
    let mine: Vec<Outcome> = outcomes
        .into_iter()
        .filter(|o| ids.contains(o.id.as_str()))
        .collect();
    let reports: Vec<eval::ModeReport> = modes
        .iter()
        .map(|m| eval::summarize(m.as_str(), &mine))
        .collect();
    let md = eval::markdown(&reports);
    let cfg = &state.runtime().config;
    let title = format!(
        "RAG modes on {} questions: SLM {} · LLM {}",
        questions.len(),
        cfg.rag.slm,
        cfg.rag.llm
    );
    std::fs::write(a.out.join("report.md"), format!("# {title}\n\n{md}"))?;
    std::fs::write(
        a.out.join("report.json"),
        serde_json::to_string_pretty(&reports)?,
    )?;
    std::fs::write(a.out.join("chart.svg"), eval::svg_chart(&reports, &title))?;
    println!("{title}\n\n{md}");
    println!(
        "wrote {}/report.md, report.json, chart.svg",
        a.out.display()
    );
    Ok(())
}

async fn ask_one(
    state: &Arc<tandem_server::AppState>,
    kb: &str,
    mode: Mode,
    q: &eval::Question,
) -> Outcome {
    use tandem_server::gateway::{self, Reply, RequestMeta};
    let body = serde_json::json!({
        "model": format!("kb:{kb}"),
        "messages": [{"role": "user", "content": q.question}],
        "tandem": {"mode": mode.as_str(), "kb": kb},
    });
    let meta = RequestMeta {
        headers: Vec::new(),
        start: std::time::Instant::now(),
        ts_ms: gateway::now_ms(),
    };
    let mut o = Outcome::new(q, mode.as_str(), "", Vec::new());
    let req = match tandem_types::openai::parse_chat_request(body.to_string().as_bytes(), false) {
        Ok(r) => r,
        Err(e) => {
            o.error = Some(e.message);
            return o;
        }
    };
    match gateway::chat(state.clone(), req, meta.clone()).await {
        Ok(r) => {
            let Reply::Json(c) = r.reply else {
                o.error = Some("unexpected stream".into());
                return o;
            };
            let answer = c.text();
            let t = c.tandem.clone().unwrap_or_default();
            let cited: Vec<String> = t["citations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["source"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut out = Outcome::new(q, mode.as_str(), &answer, cited);
            out.escalated = t["escalated"].as_bool().unwrap_or(false);
            out.tokens_saved = t["tokens_saved"].as_i64().unwrap_or(0);
            let llm = t["llm_tokens"].as_u64().unwrap_or(0) as u32;
            // Split by the usage of the whole answer is not possible per model; report the
            // LLM's total as its prompt share (completion tokens are small here).
            out.llm_prompt_tokens = llm;
            out.latency_ms = meta.start.elapsed().as_secs_f64() * 1000.0;
            out
        }
        Err(f) => {
            o.error = Some(f.error.message);
            o.latency_ms = meta.start.elapsed().as_secs_f64() * 1000.0;
            o
        }
    }
}
