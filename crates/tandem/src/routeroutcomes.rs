//! `tandem router train --outcomes` and `tandem router score`: a learned router trained and
//! scored on labelled outcomes (RouteLLM's GPT-4 vs Mixtral data) with no generation.

use crate::evalreport::{llm_scores, load_classifier_embedder, router_vectors, win_label};
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tandem_eval::knn::LearnedRouter;
use tandem_eval::metrics::Sample;
use tandem_eval::outcomes::{self, OutcomeItem};
use tandem_eval::routellm;

/// Where the outcomes are and which two models they compare.
#[derive(Args, Debug)]
pub struct OutcomeArgs {
    /// An outcomes file (JSONL: `id`, `source`, `prompt`, `outcomes` {model: 0..1}); the
    /// router learns from the prompts alone.
    #[arg(long, requires_all = ["strong", "weak"])]
    pub outcomes: Option<PathBuf>,
    /// The strong model's name in `outcomes`.
    #[arg(long)]
    pub strong: Option<String>,
    /// The weak model's name in `outcomes` (the side Tandem's SLM stands for).
    #[arg(long)]
    pub weak: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The outcomes file to score on.
    #[arg(long)]
    pub outcomes: PathBuf,
    /// The router file (`tandem router train`).
    #[arg(long)]
    pub router: PathBuf,
    /// The strong model's name in the outcomes.
    #[arg(long)]
    pub strong: String,
    /// The weak model's name in the outcomes.
    #[arg(long)]
    pub weak: String,
    /// Print one JSON object (`{"all": …, "by_source": {…}}`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Configuration naming the classifier's embedding model; default: the built-in one.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Loads the outcomes and keeps the items with both models' outcomes.
fn load(path: &Path) -> Result<Vec<OutcomeItem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    outcomes::load(&text).with_context(|| format!("in {}", path.display()))
}

fn paired<'a>(
    items: &'a [OutcomeItem],
    strong: &str,
    weak: &str,
    path: &Path,
) -> Result<Vec<(&'a OutcomeItem, Sample)>> {
    let (pairs, skipped) = outcomes::pair(items, strong, weak);
    if skipped > 0 {
        eprintln!(
            "{skipped} of {} items lack an outcome of `{strong}` or `{weak}` and are skipped",
            items.len()
        );
    }
    if pairs.len() < 2 {
        bail!(
            "{} has {} items with outcomes of both `{strong}` and `{weak}`: at least 2 are needed",
            path.display(),
            pairs.len()
        );
    }
    Ok(pairs)
}

/// Embeds the prompts as the server does for `slm_win_probability`.
fn vectors(
    embedder: &tandem_embed::Embedder,
    pairs: &[(&OutcomeItem, Sample)],
) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<&str> = pairs.iter().map(|(it, _)| it.prompt.as_str()).collect();
    router_vectors(embedder, &texts)
}

/// `{"all": M, "by_source": {source: M}}` of one router's scores.
#[derive(Serialize)]
struct Scored {
    all: routellm::Score,
    by_source: BTreeMap<String, routellm::Score>,
}

fn scored(pairs: &[(&OutcomeItem, Sample)], scores: &[f64]) -> Result<Scored> {
    let samples: Vec<Sample> = pairs.iter().map(|(_, s)| s.clone()).collect();
    let all = routellm::score(&samples, scores)?;
    let mut groups: BTreeMap<&str, (Vec<Sample>, Vec<f64>)> = BTreeMap::new();
    for ((it, s), &sc) in pairs.iter().zip(scores) {
        let g = groups.entry(it.source.as_str()).or_default();
        g.0.push(s.clone());
        g.1.push(sc);
    }
    let mut by_source = BTreeMap::new();
    for (src, (s, sc)) in groups {
        by_source.insert(src.to_owned(), routellm::score(&s, &sc)?);
    }
    Ok(Scored { all, by_source })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn table(title: &str, s: &Scored) -> String {
    let mut out = format!(
        "{title}\n| set | n | weak | strong | APGR | CPT(50%) | CPT(80%) | strong share for 95% |\n|---|---|---|---|---|---|---|---|\n"
    );
    let rows =
        std::iter::once(("all", &s.all)).chain(s.by_source.iter().map(|(k, v)| (k.as_str(), v)));
    for (name, m) in rows {
        out.push_str(&format!(
            "| {name} | {} | {:.3} | {:.3} | {} | {} | {} | {} |\n",
            m.n,
            m.weak,
            m.strong,
            fmt(m.apgr),
            fmt(m.cpt50),
            fmt(m.cpt80),
            fmt(m.strong_share_for_95)
        ));
    }
    out
}

/// Predicted against observed "the weak model was good enough" by decile of the
/// prediction, per source: a router that learned a label bias shows it here.
fn calibration(pairs: &[(&OutcomeItem, Sample)], predicted: &[f32]) -> String {
    let mut groups: BTreeMap<&str, Vec<(f32, f32)>> = BTreeMap::new();
    for ((it, s), &p) in pairs.iter().zip(predicted) {
        groups
            .entry(it.source.as_str())
            .or_default()
            .push((p, win_label(s)));
    }
    let mut out = String::from(
        "calibration (leave-one-out predicted vs observed weak-win rate, by decile of the prediction)\n",
    );
    for (src, mut v) in groups {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let cells: Vec<String> = (0..10)
            .filter_map(|d| {
                let part = &v[d * v.len() / 10..(d + 1) * v.len() / 10];
                (!part.is_empty()).then(|| {
                    let n = part.len() as f32;
                    let p = part.iter().map(|x| x.0).sum::<f32>() / n;
                    let o = part.iter().map(|x| x.1).sum::<f32>() / n;
                    format!("{p:.2}/{o:.2}")
                })
            })
            .collect();
        out.push_str(&format!("  {src}: {}\n", cells.join(" ")));
    }
    out
}

/// Trains the kNN router on every paired item and reports its leave-one-out scores
/// (cross-validated: no prompt votes on itself) beside random routing and the oracle.
pub fn train(a: &OutcomeArgs, k: usize, out: &Path, config: Option<&Path>) -> Result<()> {
    let (Some(path), Some(strong), Some(weak)) = (&a.outcomes, &a.strong, &a.weak) else {
        bail!("--outcomes needs --strong and --weak");
    };
    let items = load(path)?;
    let pairs = paired(&items, strong, weak, path)?;
    let (cfg, label) = crate::config::load_or_default(config)?;
    let (emb_name, embedder) = load_classifier_embedder(&cfg, &label)?;
    eprintln!("embedding {} prompts with {emb_name}", pairs.len());
    let vecs = vectors(&embedder, &pairs)?;
    let examples: Vec<(Vec<f32>, f32)> = vecs
        .into_iter()
        .zip(&pairs)
        .map(|(v, (_, s))| (v, win_label(s)))
        .collect();
    let router = LearnedRouter::train(&examples, &emb_name, k.min(pairs.len() - 1))?;
    router.save(out)?;
    let loo = router.leave_one_out_predictions();
    let scores: Vec<f64> = loo.iter().map(|p| 1.0 - f64::from(*p)).collect();
    let oracle: Vec<f64> = pairs
        .iter()
        .map(|(_, s)| s.llm_quality - s.slm_quality)
        .collect();
    println!(
        "{}",
        table(
            &format!(
                "kNN router (k={}), leave-one-out on {} prompts",
                router.k(),
                pairs.len()
            ),
            &scored(&pairs, &scores)?
        )
    );
    println!(
        "{}",
        table("oracle (knows the outcomes)", &scored(&pairs, &oracle)?)
    );
    println!("{}", calibration(&pairs, &loo));
    println!("random routing: APGR 0.500 by construction");
    println!("wrote {}", out.display());
    Ok(())
}

pub fn score(a: ScoreArgs) -> Result<()> {
    let items = load(&a.outcomes)?;
    let pairs = paired(&items, &a.strong, &a.weak, &a.outcomes)?;
    let (cfg, label) = crate::config::load_or_default(a.config.as_deref())?;
    let (emb_name, embedder) = load_classifier_embedder(&cfg, &label)?;
    let router = LearnedRouter::load_expecting(&a.router, &emb_name, embedder.dim())
        .with_context(|| format!("loading the router {}", a.router.display()))?;
    let scores = llm_scores(&router, &vectors(&embedder, &pairs)?);
    let s = scored(&pairs, &scores)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!(
            "{}",
            table(
                &format!("{} on {}", a.router.display(), a.outcomes.display()),
                &s
            )
        );
    }
    Ok(())
}
