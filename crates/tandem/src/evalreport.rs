//! The second half of `tandem eval route` (grading, routers, curves, calibration, report)
//! and `tandem router train|calibrate`.

use crate::evalroute::{
    Answer, EvalRouteArgs, JsonlCache, ModelArgs, answer_key, chat_text, item_key,
    judge_prompts_text, load_dataset,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_eval::calibrate::{self, Target};
use tandem_eval::dataset::{Grader, Item, Split};
use tandem_eval::grade;
use tandem_eval::knn::LearnedRouter;
use tandem_eval::metrics::{self, RouterKind, Sample};
use tandem_eval::report::{self, CalibratedResult, Report, RouterResult};
use tandem_server::AppState;

/// Bootstrap resamples of each router's APGR interval, and their fixed seed (a report is
/// reproducible).
const APGR_RESAMPLES: usize = 1000;
const APGR_SEED: u64 = 0x7a6e_6465_6d00_0001;

/// Neighbours of the learned router trained by `eval route` and `router train`.
pub const DEFAULT_K: usize = 10;

/// The judge's verdict on one answer (a line of `judgements.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judgement {
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// Key of the answer's request.
    pub key: String,
    pub judge: String,
    /// 1–10, `None` when the judge's reply had no rating.
    pub score: Option<f64>,
    /// The judge's reply (with the follow-up's, if there was one).
    pub text: String,
    /// The first reply had no rating and the judge was asked again for it.
    #[serde(default)]
    pub followed_up: bool,
}

fn judgement_key(id: &str, model: &str, key: &str, judge: &str) -> String {
    format!("{id}\u{0}{model}\u{0}{key}\u{0}{judge}")
}

/// Quality of an answer in 0..=1, `None` while a judge verdict is missing.
fn quality(it: &Item, ans: &Answer, judged: Option<&Judgement>) -> Option<f64> {
    match &it.grader {
        Grader::Choice { answer } => {
            let want = answer.chars().next()?;
            Some(f64::from(u8::from(grade::grade_choice(&ans.text, want))))
        }
        Grader::Number { answer } => Some(f64::from(u8::from(
            grade::extract_number(&ans.text).is_some_and(|n| grade::numbers_match(n, *answer)),
        ))),
        Grader::Judge { .. } => judged.and_then(|j| j.score).map(|s| s / 10.0),
    }
}

/// What the judge is told when its verdict has no `[[rating]]` (small judges often run on
/// until `max_tokens` without one).
pub const JUDGE_FOLLOW_UP: &str = "You did not give your rating. Reply with only the rating, \
    strictly in this format: \"[[rating]]\", for example: \"Rating: [[5]]\".";

/// Asks the judge for every open-ended answer not judged yet. A verdict without a rating
/// gets one follow-up turn asking only for the rating (also for verdicts cached by an
/// earlier run without one); the follow-up's reply is appended to the verdict's text.
fn judge_all(
    state: &Arc<AppState>,
    rt: &tokio::runtime::Runtime,
    items: &[Item],
    answers: &JsonlCache<Answer>,
    models: [&str; 2],
    judge: &str,
    cache: &mut JsonlCache<Judgement>,
) -> Result<()> {
    // (item, answer, the cached verdict without a rating, if any)
    let todo: Vec<(&Item, &Answer, Option<String>)> = items
        .iter()
        .filter(|it| matches!(it.grader, Grader::Judge { .. }))
        .flat_map(|it| {
            models
                .iter()
                .filter_map(move |m| answers.get(&answer_key(&it.id, m, &item_key(it))))
                .map(move |a| (it, a))
        })
        .filter_map(
            |(it, a)| match cache.get(&judgement_key(&it.id, &a.model, &a.key, judge)) {
                None => Some((it, a, None)),
                Some(j) if j.score.is_none() && !j.followed_up => {
                    Some((it, a, Some(j.text.clone())))
                }
                Some(_) => None,
            },
        )
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let prompts = grade::load_judge_prompts(&judge_prompts_text()?)?;
    let mut requests = Vec::with_capacity(todo.len());
    for (it, a, earlier) in todo {
        let Grader::Judge { reference } = &it.grader else {
            continue;
        };
        let name = if reference.is_some() {
            grade::JUDGE_WITH_REFERENCE
        } else {
            grade::JUDGE_GENERAL
        };
        let prompt = grade::find_judge(&prompts, name)
            .ok_or_else(|| anyhow!("the judge prompts have no `{name}`"))?;
        let (system, user) =
            grade::render_judge(prompt, &it.prompt, &a.text, reference.as_deref())?;
        requests.push((it, a, system, user, earlier));
    }
    // Verdicts are independent and their latency is not measured: keep every sequence slot
    // of the judge busy (a local engine batches them; one request alone leaves cores idle).
    let slots = state
        .chat_engine(judge)
        .map(|e| e.info().parallel as usize)
        .unwrap_or(1)
        .max(1);
    let pb = crate::evalroute::bar(requests.len(), "judgements");
    pb.set_message(format!("{slots} at a time"));
    let verdict = |system: String, user: String, earlier: Option<String>| async move {
        let mut messages = vec![
            serde_json::json!({"role": "system", "content": system}),
            serde_json::json!({"role": "user", "content": user}),
        ];
        let text = match earlier {
            Some(t) => t,
            None => {
                let body = serde_json::json!({
                    "model": judge, "messages": messages, "max_tokens": 320, "temperature": 0,
                });
                chat_text(state, body).await?.0.text()
            }
        };
        if let Some(score) = grade::parse_judge_score(&text) {
            return Ok((Some(score), text, false));
        }
        messages.push(serde_json::json!({"role": "assistant", "content": text}));
        messages.push(serde_json::json!({"role": "user", "content": JUDGE_FOLLOW_UP}));
        let body = serde_json::json!({
            "model": judge, "messages": messages, "max_tokens": 16, "temperature": 0,
        });
        let again = chat_text(state, body).await?.0.text();
        let score = grade::parse_judge_score(&again);
        anyhow::Ok((
            score,
            format!("{text}\n\n[{JUDGE_FOLLOW_UP}]\n{again}"),
            true,
        ))
    };
    rt.block_on(async {
        use futures::StreamExt;
        let mut verdicts =
            futures::stream::iter(requests.into_iter().map(|(it, a, system, user, earlier)| {
                let v = verdict(system, user, earlier);
                async move { (it, a, v.await) }
            }))
            .buffer_unordered(slots);
        while let Some((it, a, reply)) = verdicts.next().await {
            match reply {
                Ok((score, text, followed_up)) => {
                    let j = Judgement {
                        id: it.id.clone(),
                        model: a.model.clone(),
                        key: a.key.clone(),
                        judge: judge.to_owned(),
                        score,
                        text,
                        followed_up,
                    };
                    cache.insert(judgement_key(&j.id, &j.model, &j.key, judge), j)?;
                }
                Err(e) => pb.println(format!("judging {} ({}): {e:#}", it.id, a.model)),
            }
            pb.inc(1);
        }
        anyhow::Ok(())
    })?;
    pb.finish_and_clear();
    Ok(())
}

/// One graded item: both answers with their quality, cost and latency.
struct Graded<'a> {
    item: &'a Item,
    slm: &'a Answer,
    sample: Sample,
}

fn price_of(cfg: &tandem_policy::Config, model: &str) -> tandem_policy::config::Price {
    cfg.model(model).map(|m| m.price).unwrap_or_default()
}

/// Items whose two answers are cached and graded, with the count of the others.
fn graded<'a>(
    cfg: &tandem_policy::Config,
    items: &'a [Item],
    answers: &'a JsonlCache<Answer>,
    judgements: &JsonlCache<Judgement>,
    slm: &str,
    llm: &str,
    judge: &str,
) -> (Vec<Graded<'a>>, usize) {
    let (ps, pl) = (price_of(cfg, slm), price_of(cfg, llm));
    let mut out = Vec::new();
    let mut missing = 0;
    for it in items {
        let key = item_key(it);
        let (Some(a), Some(b)) = (
            answers.get(&answer_key(&it.id, slm, &key)),
            answers.get(&answer_key(&it.id, llm, &key)),
        ) else {
            missing += 1;
            continue;
        };
        let jq = |ans: &Answer| judgements.get(&judgement_key(&it.id, &ans.model, &key, judge));
        let (Some(qa), Some(qb)) = (quality(it, a, jq(a)), quality(it, b, jq(b))) else {
            missing += 1;
            continue;
        };
        out.push(Graded {
            item: it,
            slm: a,
            sample: Sample {
                id: it.id.clone(),
                slm_quality: qa,
                llm_quality: qb,
                slm_cost: ps.cost(a.prompt_tokens, a.completion_tokens),
                llm_cost: pl.cost(b.prompt_tokens, b.completion_tokens),
                slm_latency_ms: a.latency_ms,
                llm_latency_ms: b.latency_ms,
                slm_score: a.mean_logprob.unwrap_or(f64::NEG_INFINITY),
            },
        });
    }
    (out, missing)
}

/// "The SLM's answer was good enough", graded: 1 − the quality the LLM would have added
/// (1 when the SLM's answer was at least as good). For right/wrong graders this is 1 or 0;
/// for judged answers a one-point difference on the 10-point scale is 0.9, not 0: a weak
/// judge's small differences must not outweigh the questions the SLM simply gets wrong.
pub fn win_label(s: &Sample) -> f32 {
    (1.0 - (s.llm_quality - s.slm_quality).clamp(0.0, 1.0)) as f32
}

/// The router's input: the classifier's embedding (int8 MiniLM) of the classifier's window
/// of the user message — exactly what the server computes for `slm_win_probability`.
pub fn router_vectors(embedder: &tandem_embed::Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let windows: Vec<std::borrow::Cow<'_, str>> = texts
        .iter()
        .map(|t| tandem_policy::classify::embed_window(t))
        .collect();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in windows.chunks(32) {
        let refs: Vec<&str> = chunk.iter().map(|w| w.as_ref()).collect();
        out.extend(embedder.embed(&refs)?.vectors);
    }
    Ok(out)
}

/// [`router_vectors`] of the items' user messages.
fn item_vectors<'a>(
    embedder: &tandem_embed::Embedder,
    items: impl Iterator<Item = &'a Item>,
) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<&str> = items.map(|it| it.prompt.as_str()).collect();
    router_vectors(embedder, &texts)
}

/// Router scores (higher: more in need of the LLM): 1 − the SLM win probability.
pub fn llm_scores(router: &LearnedRouter, vectors: &[Vec<f32>]) -> Vec<f64> {
    vectors
        .iter()
        .map(|v| 1.0 - f64::from(router.slm_win_probability(v)))
        .collect()
}

/// The classifier's embedder of a loaded state, with its name.
fn classifier_embedder(state: &AppState) -> Result<(String, Arc<tandem_embed::Embedder>)> {
    let rt = state.runtime();
    let name =
        rt.config.embedding_model.clone().ok_or_else(|| {
            anyhow!("the configuration has no embedding model for the classifier")
        })?;
    let m = state
        .embed_models()
        .find(|m| m.name == name)
        .ok_or_else(|| anyhow!("embedding model `{name}` is not loaded"))?;
    Ok((name, m.classifier_embedder.clone()))
}

/// Scores of the configured rule policy: 1 where it sends the item to the LLM (a cascade
/// escalates by its own thresholds on the cached SLM answer), else 0.
fn policy_scores(
    state: &Arc<AppState>,
    rt: &tokio::runtime::Runtime,
    g: &[&Graded],
    llm: &str,
) -> Result<Vec<f64>> {
    use tandem_server::gateway;
    let mut out = Vec::with_capacity(g.len());
    for x in g {
        let body =
            serde_json::json!({"model": "auto", "messages": crate::evalroute::messages(x.item)});
        let (req, meta) = crate::evalroute::request(&body)?;
        let (doc, ..) = rt
            .block_on(gateway::explain(state, &req, &meta))
            .map_err(|e| anyhow!("explaining {}: {}", x.item.id, e.message))?;
        let action = &doc["action"];
        let to_llm = match action["type"].as_str() {
            Some("cascade") => {
                let t = &action["thresholds"];
                let below = |v: Option<f64>, limit: Option<f64>| match (v, limit) {
                    (Some(v), Some(l)) => v < l,
                    (None, Some(_)) => true,
                    _ => false,
                };
                below(x.slm.mean_logprob, t["min_mean_logprob"].as_f64())
                    || below(x.slm.min_logprob, t["min_token_logprob"].as_f64())
                    || (t["escalate_on_refusal"].as_bool().unwrap_or(false)
                        && tandem_rag::cite::is_idk(&x.slm.text))
            }
            _ => doc["model"].as_str() == Some(llm),
        };
        out.push(if to_llm { 1.0 } else { 0.0 });
    }
    Ok(out)
}

/// A router evaluated on the report split, calibrated on the dev split.
fn result(
    name: &str,
    kind: RouterKind,
    test: &[Sample],
    test_scores: &[f64],
    dev: Option<(&[Sample], &[f64])>,
    target: f64,
) -> Result<RouterResult> {
    let mut r = RouterResult::new(name, kind, metrics::curve(test, test_scores, kind)?);
    r.apgr_interval = Some(metrics::apgr_interval(
        test,
        test_scores,
        kind,
        APGR_RESAMPLES,
        APGR_SEED,
    )?);
    if let Some((dev, dev_scores)) = dev.filter(|(d, _)| !d.is_empty()) {
        let s = metrics::summary(dev)?;
        let dev_curve = metrics::curve(dev, dev_scores, kind)?;
        if let Some(c) = calibrate::calibrate(
            &dev_curve,
            s.llm_only.quality,
            s.slm_only.quality,
            Target::QualityFraction(target),
        ) {
            let test_point = calibrate::apply(c.threshold, test, test_scores, kind)?;
            r.calibrated = Some(CalibratedResult {
                calibration: c,
                test: test_point,
            });
        }
    }
    Ok(r)
}

/// The dev samples and scores to tune a router's threshold on, when tuning.
fn tuned<'a>(on: bool, dev: &'a [Sample], scores: &'a [f64]) -> Option<(&'a [Sample], &'a [f64])> {
    on.then_some((dev, scores))
}

fn split_of<'a, 'b>(g: &'b [Graded<'a>], s: Split) -> Vec<&'b Graded<'a>> {
    g.iter().filter(|x| x.item.split == s).collect()
}

#[allow(clippy::too_many_arguments)]
pub fn report(
    a: &EvalRouteArgs,
    state: &Arc<AppState>,
    rt: &tokio::runtime::Runtime,
    items: &[Item],
    answers: &JsonlCache<Answer>,
    slm: &str,
    llm: &str,
    judge: &str,
) -> Result<()> {
    let mut judgements: JsonlCache<Judgement> =
        JsonlCache::open(&a.out.join("judgements.jsonl"), |j: &Judgement| {
            judgement_key(&j.id, &j.model, &j.key, &j.judge)
        })?;
    if !a.cached_only {
        judge_all(
            state,
            rt,
            items,
            answers,
            [slm, llm],
            judge,
            &mut judgements,
        )?;
    }
    let runtime = state.runtime();
    let (all, missing) = graded(
        &runtime.config,
        items,
        answers,
        &judgements,
        slm,
        llm,
        judge,
    );
    if missing > 0 {
        // Items the judge would not rate even when asked again: a re-run does not ask again.
        let unrated = items
            .iter()
            .filter(|it| {
                [slm, llm].iter().any(|m| {
                    judgements
                        .get(&judgement_key(&it.id, m, &item_key(it), judge))
                        .is_some_and(|j| j.score.is_none() && j.followed_up)
                })
            })
            .count();
        eprintln!(
            "{missing} items lack an answer or a verdict and are left out (re-run to complete \
             them){}",
            if unrated > 0 {
                format!(
                    "; on {unrated} of them the judge gave no rating even when asked again (a \
                     re-run does not ask again; delete their lines in judgements.jsonl to retry)"
                )
            } else {
                String::new()
            }
        );
    }
    let dev = split_of(&all, Split::Dev);
    let mut test = split_of(&all, Split::Test);
    let mut split = "test";
    if test.is_empty() {
        test = dev.clone();
        split = "dev";
    }
    if test.is_empty() {
        bail!("no item has both answers graded yet");
    }
    let samples = |v: &[&Graded]| -> Vec<Sample> { v.iter().map(|x| x.sample.clone()).collect() };
    let (test_s, dev_s) = (samples(&test), samples(&dev));
    // Thresholds are tuned on the dev split when the report is on the test split.
    let tune_on_dev = split == "test" && !dev_s.is_empty();
    let mut routers = Vec::new();

    // Cascade on the SLM's mean token log-probability (low confidence → LLM).
    let conf = |v: &[&Graded]| -> Vec<f64> { v.iter().map(|x| -x.sample.slm_score).collect() };
    let dev_conf = conf(&dev);
    routers.push(result(
        "cascade (SLM mean logprob)",
        RouterKind::Cascade,
        &test_s,
        &conf(&test),
        tuned(tune_on_dev, &dev_s, &dev_conf),
        a.target,
    )?);

    // The configured rule policy (a single operating point).
    let pol_test = policy_scores(state, rt, &test, llm)?;
    let pol_dev = if tune_on_dev {
        policy_scores(state, rt, &dev, llm)?
    } else {
        Vec::new()
    };
    routers.push(result(
        "rule policy (config)",
        RouterKind::Route,
        &test_s,
        &pol_test,
        tuned(tune_on_dev, &dev_s, &pol_dev),
        a.target,
    )?);

    // Learned kNN router: trained on the dev split (its dev scores are leave-one-out), or
    // the router files given.
    let (emb_name, embedder) = classifier_embedder(state)?;
    let test_vecs = item_vectors(&embedder, test.iter().map(|x| x.item))?;
    // The dev vectors, embedded once for every learned router.
    let dev_vecs = if tune_on_dev {
        Some(item_vectors(&embedder, dev.iter().map(|x| x.item))?)
    } else {
        None
    };
    if let Some(dev_vecs) = dev_vecs.as_ref().filter(|_| dev.len() >= 2) {
        let examples: Vec<(Vec<f32>, f32)> = dev_vecs
            .iter()
            .zip(&dev)
            .map(|(v, x)| (v.clone(), win_label(&x.sample)))
            .collect();
        let router = LearnedRouter::train(&examples, &emb_name, DEFAULT_K.min(dev.len() - 1))?;
        let path = a.out.join("router.knn");
        router.save(&path)?;
        let loo: Vec<f64> = router
            .leave_one_out_predictions()
            .iter()
            .map(|p| 1.0 - f64::from(*p))
            .collect();
        routers.push(result(
            &format!("learned kNN (k={}, trained on dev)", router.k()),
            RouterKind::Route,
            &test_s,
            &llm_scores(&router, &test_vecs),
            tuned(tune_on_dev, &dev_s, &loo),
            a.target,
        )?);
        eprintln!("trained router saved to {}", path.display());
    }
    for file in &a.routers {
        let router = LearnedRouter::load_expecting(file, &emb_name, embedder.dim())
            .with_context(|| format!("loading the router {}", file.display()))?;
        let dev_scores = dev_vecs
            .as_ref()
            .map(|d| llm_scores(&router, d))
            .unwrap_or_default();
        routers.push(result(
            &format!("learned kNN ({})", file.display()),
            RouterKind::Route,
            &test_s,
            &llm_scores(&router, &test_vecs),
            tuned(tune_on_dev, &dev_s, &dev_scores),
            a.target,
        )?);
    }

    let s = metrics::summary(&test_s)?;
    let rep = Report {
        dataset: a.dataset.display().to_string(),
        split: split.to_owned(),
        slm: slm.to_owned(),
        llm: llm.to_owned(),
        n: test_s.len(),
        slm_only: s.slm_only,
        llm_only: s.llm_only,
        routers,
        random: metrics::random_curve(&test_s)?,
    };
    let md = format!("{}\n{}", report::markdown(&rep), breakdown(&test));
    std::fs::write(a.out.join("report.md"), &md)?;
    std::fs::write(
        a.out.join("report.json"),
        serde_json::to_string_pretty(&rep)?,
    )?;
    std::fs::write(a.out.join("chart.svg"), report::svg_chart(&rep))?;
    println!("{md}");
    println!(
        "wrote {}/report.md, report.json, chart.svg",
        a.out.display()
    );
    Ok(())
}

/// Quality of each model per source and language.
fn breakdown(test: &[&Graded]) -> String {
    let mut by: BTreeMap<(String, String), (usize, f64, f64)> = BTreeMap::new();
    for x in test {
        let e = by
            .entry((x.item.source.clone(), x.item.lang.clone()))
            .or_default();
        e.0 += 1;
        e.1 += x.sample.slm_quality;
        e.2 += x.sample.llm_quality;
    }
    let mut out = String::from(
        "\n| source | lang | n | SLM quality | LLM quality |\n|---|---|---|---|---|\n",
    );
    for ((src, lang), (n, q1, q2)) in by {
        out.push_str(&format!(
            "| {src} | {lang} | {n} | {:.3} | {:.3} |\n",
            q1 / n as f64,
            q2 / n as f64
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// tandem router train | calibrate
// ---------------------------------------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum RouterCmd {
    /// Train a learned router (kNN over query embeddings) from `eval route` results:
    /// label 1 where the SLM's answer was as good as the LLM's.
    Train(TrainArgs),
    /// Pick the router threshold that keeps a target share of the LLM-only quality on the
    /// dev split, and report the LLM share and quality it gives on the test split.
    Calibrate(CalibrateArgs),
    /// Score a router file on an outcomes file (RouteLLM's protocol), as one JSON object.
    Score(crate::routeroutcomes::ScoreArgs),
}

#[derive(Args, Debug)]
pub struct ResultsArgs {
    /// The dataset the results were made from (not with `--ledger`).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// The `eval route` output folder (answers.jsonl, judgements.jsonl).
    #[arg(long, default_value = "eval-out/route")]
    pub results: PathBuf,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Configuration (models, prices, the classifier's embedding model).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub results: ResultsArgs,
    /// Split to train on.
    #[arg(long, default_value = "dev")]
    pub split: Split,
    /// Neighbours per prediction.
    #[arg(long, default_value_t = DEFAULT_K)]
    pub k: usize,
    /// Router file to write.
    #[arg(long, short = 'o', default_value = "router.knn")]
    pub out: PathBuf,
    /// Learn from the ledger instead of eval results: the SLM's answers that users rated
    /// (`POST /v1/tandem/feedback`), with the embeddings `server.ledger_vectors` stored.
    /// Without a FILE: the configuration's `server.ledger`, else $TANDEM_HOME/ledger.sqlite.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub outcomes: crate::routeroutcomes::OutcomeArgs,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub results: ResultsArgs,
    /// The router file.
    #[arg(long)]
    pub router: PathBuf,
    /// Keep at least this fraction of the LLM-only quality.
    #[arg(long, default_value_t = 0.95)]
    pub target: f64,
}

pub fn run_router(cmd: RouterCmd) -> Result<()> {
    match cmd {
        RouterCmd::Train(a) => train(a),
        RouterCmd::Calibrate(a) => calibrate_cmd(a),
        RouterCmd::Score(a) => crate::routeroutcomes::score(a),
    }
}

/// Loaded results: config, the classifier's embedder and the graded items.
struct Loaded {
    items: Vec<Item>,
    answers: JsonlCache<Answer>,
    judgements: JsonlCache<Judgement>,
    cfg: tandem_policy::Config,
    slm: String,
    llm: String,
    judge: String,
    emb_name: String,
    embedder: tandem_embed::Embedder,
}

fn load_results(r: &ResultsArgs) -> Result<Loaded> {
    let Some(dataset) = &r.dataset else {
        bail!("--dataset is required: the dataset the `eval route` results were made from");
    };
    let items = load_dataset(dataset)?;
    let (cfg, label) = crate::config::load_or_default(r.config.as_deref())?;
    let (slm, llm, judge) = r.models.resolve(&cfg, &label)?;
    let answers_path = r.results.join("answers.jsonl");
    if !answers_path.exists() {
        bail!(
            "{} does not exist: run `tandem eval route --out {}` first",
            answers_path.display(),
            r.results.display()
        );
    }
    let answers = JsonlCache::open(&answers_path, |x: &Answer| {
        answer_key(&x.id, &x.model, &x.key)
    })?;
    let judgements = JsonlCache::open(&r.results.join("judgements.jsonl"), |j: &Judgement| {
        judgement_key(&j.id, &j.model, &j.key, &j.judge)
    })?;
    let (emb_name, embedder) = load_classifier_embedder(&cfg, &label)?;
    Ok(Loaded {
        items,
        answers,
        judgements,
        cfg,
        slm,
        llm,
        judge,
        emb_name,
        embedder,
    })
}

/// The configuration's classifier embedder (the router's input), loaded as the server
/// loads it, with its name; pulled from the catalog when missing.
pub fn load_classifier_embedder(
    cfg: &tandem_policy::Config,
    label: &str,
) -> Result<(String, tandem_embed::Embedder)> {
    let emb_name = cfg
        .embedding_model
        .clone()
        .ok_or_else(|| anyhow!("{label} has no embedding model for the classifier"))?;
    let source = match cfg.model(&emb_name).map(|m| &m.source) {
        Some(tandem_policy::config::ModelSource::Local { source, .. }) => source.clone(),
        _ => emb_name.clone(),
    };
    let resolved = crate::models::resolve(&tandem_models::ModelStore::from_env(), &source, true)?;
    let embedder = tandem_embed::Embedder::load_with(
        &resolved.path,
        &tandem_embed::LoadOptions {
            weights: tandem_server::runtime::CLASSIFIER_WEIGHTS,
        },
    )
    .with_context(|| format!("loading {emb_name}"))?;
    Ok((emb_name, embedder))
}

fn split_samples<'a>(l: &'a Loaded, s: Split) -> (Vec<Graded<'a>>, usize) {
    let (g, missing) = graded(
        &l.cfg,
        &l.items,
        &l.answers,
        &l.judgements,
        &l.slm,
        &l.llm,
        &l.judge,
    );
    (
        g.into_iter().filter(|x| x.item.split == s).collect(),
        missing,
    )
}

fn train(a: TrainArgs) -> Result<()> {
    if a.outcomes.outcomes.is_some() {
        if a.results.dataset.is_some() || a.ledger.is_some() {
            bail!("give one of --outcomes, --dataset or --ledger");
        }
        return crate::routeroutcomes::train(&a.outcomes, a.k, &a.out, a.results.config.as_deref());
    }
    if let Some(ledger) = &a.ledger {
        if a.results.dataset.is_some() {
            bail!("give either --ledger or --dataset, not both");
        }
        return train_from_ledger(&a, ledger);
    }
    let l = load_results(&a.results)?;
    let (g, _) = split_samples(&l, a.split);
    if g.len() < 2 {
        bail!(
            "only {} graded {} items in {}: run `tandem eval route` on this dataset first",
            g.len(),
            a.split.as_str(),
            a.results.results.display()
        );
    }
    let vecs = item_vectors(&l.embedder, g.iter().map(|x| x.item))?;
    let examples: Vec<(Vec<f32>, f32)> = vecs
        .into_iter()
        .zip(&g)
        .map(|(v, x)| (v, win_label(&x.sample)))
        .collect();
    let router = LearnedRouter::train(&examples, &l.emb_name, a.k.min(g.len() - 1))?;
    router.save(&a.out)?;
    let wins = examples.iter().filter(|e| e.1 > 0.5).count();
    println!(
        "trained on {} {} items ({} where the SLM was as good as the LLM); k={}; leave-one-out accuracy {}",
        g.len(),
        a.split.as_str(),
        wins,
        router.k(),
        router
            .leave_one_out_accuracy()
            .map_or("n/a".into(), |v| format!("{v:.3}"))
    );
    println!("wrote {}", a.out.display());
    print_usage(&a.out, &l.llm);
    Ok(())
}

/// How to use a trained router file (`tandem router calibrate` suggests the bound).
fn print_usage(out: &Path, llm: &str) {
    println!(
        "use it in tandem.yaml:\npolicy:\n  router: {}\nroutes:\n  - name: hard-for-the-slm\n    when: {{slm_win_probability: {{max: 0.5}}}}\n    then: {{model: {llm}}}",
        out.display()
    );
}

/// The rating at or above which an SLM answer counts as good enough.
const GOOD_RATING: f64 = 0.5;

fn train_from_ledger(a: &TrainArgs, ledger: &Path) -> Result<()> {
    let (cfg, label) = crate::config::load_or_default(a.results.config.as_deref())?;
    let (slm, llm, _) = a.results.models.resolve(&cfg, &label)?;
    let emb_name = cfg.embedding_model.clone().ok_or_else(|| {
        anyhow!("{label} has no embedding model for the classifier: the router needs one")
    })?;
    let path = if ledger.as_os_str().is_empty() {
        crate::serve::ledger_path(cfg.server.ledger.as_deref()).ok_or_else(|| {
            anyhow!("{label} turns the ledger off (server.ledger); give --ledger FILE")
        })?
    } else {
        ledger.to_path_buf()
    };
    if !path.exists() {
        bail!(
            "no ledger at {} (it is created by `tandem serve`)",
            path.display()
        );
    }
    let ledger = tandem_ledger::Ledger::open(&path)
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    let set = ledger.training_examples(&emb_name, &slm)?;
    let skipped = format!(
        "skipped: {} rated ids not in the ledger, {} answered by other models, {} without a \
         stored {emb_name} embedding (turn on server.ledger_vectors)",
        set.unknown_ids, set.other_model, set.without_vector
    );
    if set.examples.len() < 2 {
        bail!(
            "{} has {} rated answers of {slm} with embeddings; at least 2 are needed ({skipped})",
            path.display(),
            set.examples.len()
        );
    }
    let examples: Vec<(Vec<f32>, f32)> = set
        .examples
        .iter()
        .map(|e| {
            let good = if e.score >= GOOD_RATING { 1.0 } else { 0.0 };
            (e.vector.clone(), good)
        })
        .collect();
    let router = LearnedRouter::train(&examples, &emb_name, a.k.min(examples.len() - 1))?;
    router.save(&a.out)?;
    let good = examples.iter().filter(|e| e.1 > 0.5).count();
    println!(
        "trained on {} rated answers of {slm} from {} ({good} rated good); k={}; leave-one-out accuracy {}",
        examples.len(),
        path.display(),
        router.k(),
        router
            .leave_one_out_accuracy()
            .map_or("n/a".into(), |v| format!("{v:.3}"))
    );
    println!("{skipped}");
    println!("wrote {}", a.out.display());
    print_usage(&a.out, &llm);
    Ok(())
}

fn calibrate_cmd(a: CalibrateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.target) {
        bail!("--target must be between 0 and 1, got {}", a.target);
    }
    let l = load_results(&a.results)?;
    let router = LearnedRouter::load_expecting(&a.router, &l.emb_name, l.embedder.dim())
        .with_context(|| format!("loading the router {}", a.router.display()))?;
    let mut scored: HashMap<Split, (Vec<Sample>, Vec<f64>)> = HashMap::new();
    for s in [Split::Dev, Split::Test] {
        let (g, _) = split_samples(&l, s);
        let vecs = item_vectors(&l.embedder, g.iter().map(|x| x.item))?;
        let scores = llm_scores(&router, &vecs);
        scored.insert(s, (g.into_iter().map(|x| x.sample).collect(), scores));
    }
    let (dev, dev_scores) = &scored[&Split::Dev];
    let (test, test_scores) = &scored[&Split::Test];
    if dev.is_empty() || test.is_empty() {
        bail!("calibration needs graded items in both the dev and the test split");
    }
    let ds = metrics::summary(dev)?;
    let curve = metrics::curve(dev, dev_scores, RouterKind::Route)?;
    let c = calibrate::calibrate(
        &curve,
        ds.llm_only.quality,
        ds.slm_only.quality,
        Target::QualityFraction(a.target),
    )
    .ok_or_else(|| {
        anyhow!(
            "no threshold reaches {:.0}% of the LLM quality on the dev split",
            a.target * 100.0
        )
    })?;
    let p = calibrate::apply(c.threshold, test, test_scores, RouterKind::Route)?;
    let ts = metrics::summary(test)?;
    // score = 1 - p ≥ threshold → LLM, i.e. p ≤ 1 - threshold.
    let max_p = 1.0 - c.threshold;
    println!(
        "dev ({} items): threshold {:.4} → LLM share {:.1}%, quality {:.3} (LLM-only {:.3}, SLM-only {:.3})",
        dev.len(),
        c.threshold,
        100.0 * c.dev.llm_share,
        c.dev.quality,
        ds.llm_only.quality,
        ds.slm_only.quality
    );
    println!(
        "test ({} items): LLM share {:.1}%, quality {:.3} = {:.1}% of LLM-only {:.3} (SLM-only {:.3}), cost/request {}",
        test.len(),
        100.0 * p.llm_share,
        p.quality,
        if ts.llm_only.quality > 0.0 {
            100.0 * p.quality / ts.llm_only.quality
        } else {
            0.0
        },
        ts.llm_only.quality,
        ts.slm_only.quality,
        report::fmt_usd(p.cost_per_request)
    );
    println!(
        "policy rule: when: {{slm_win_probability: {{max: {max_p:.4}}}}} then: {{model: {}}}",
        l.llm
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(slm: f64, llm: f64) -> Sample {
        Sample {
            id: "x".into(),
            slm_quality: slm,
            llm_quality: llm,
            slm_cost: 0.0,
            llm_cost: 0.0,
            slm_latency_ms: 0.0,
            llm_latency_ms: 0.0,
            slm_score: 0.0,
        }
    }

    #[test]
    fn win_labels_are_one_minus_what_the_llm_adds() {
        for (slm, llm, want) in [
            // Right/wrong graders: as a binary "the SLM sufficed".
            (1.0, 1.0, 1.0),
            (0.0, 1.0, 0.0),
            (1.0, 0.0, 1.0),
            (0.0, 0.0, 1.0),
            // Judge scores / 10: a one-point gap is a small loss, not a lost item.
            (0.6, 0.7, 0.9),
            (0.2, 0.9, 0.3),
            (0.8, 0.5, 1.0),
        ] {
            let got = win_label(&sample(slm, llm));
            assert!((got - want).abs() < 1e-6, "{slm} vs {llm}: {got}");
        }
    }
}
