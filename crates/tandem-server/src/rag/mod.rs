//! Knowledge-base answers: retrieve, then let the SLM and the LLM share the work in the
//! route's mode (see [`tandem_rag`] for the modes' logic). Model calls go through the
//! gateway's machinery, so fallbacks, PII masking of anything that leaves the machine, and
//! the ledger apply as for any other request.

mod call;
mod evidence;

use crate::gateway::Ctx;
use crate::pipeline::new_id;
use call::{Job, Trace, answer_from, call, sub_request, text_of};
use std::sync::Arc;
use tandem_policy::RagAction;
use tandem_policy::RagSettings;
use tandem_rag::text::estimate_tokens;
use tandem_rag::{Lang, Mode, Passage, compress, draft, ground, prompt};
use tandem_types::openai::{ChatCompletion, ChatRequest};
use tandem_types::{ApiError, ErrorKind};

/// Where passages come from: the knowledge bases (implemented over `tandem-kb`).
pub trait Retriever: Send + Sync {
    /// The `k` best passages of base `kb` for `query`, best first, numbered from 1.
    /// A base that does not exist is an [`ErrorKind::NotFound`] error.
    fn search(&self, kb: &str, query: &str, k: usize) -> Result<Vec<Passage>, ApiError>;
}

/// A RAG answer and what it cost.
pub struct RagAnswer {
    /// The completion returned to the client (`tandem` holds citations and the trace).
    pub completion: ChatCompletion,
    /// Model whose text was returned.
    pub answered_by: String,
}

/// The request's own `tandem: {kb, mode}` extension, if any.
pub fn requested(req: &ChatRequest) -> Result<Option<(String, Option<Mode>)>, ApiError> {
    let Some(t) = req.extensions.get("tandem") else {
        return Ok(None);
    };
    let Some(obj) = t.as_object() else {
        return Err(ApiError::invalid("tandem", "`tandem` must be an object."));
    };
    let kb = match obj.get("kb") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if tandem_policy::config::valid_kb_name(s.trim()) => {
            Some(s.trim().to_string())
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "tandem.kb",
                format!(
                    "`tandem.kb` must be a knowledge base name (letters, digits, `-`, `_`; at most 64), got {v}."
                ),
            ));
        }
    };
    let mode = match obj.get("mode") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            s.parse::<Mode>()
                .map_err(|e| ApiError::invalid("tandem.mode", format!("{e}.")))?,
        ),
        Some(v) => {
            return Err(ApiError::invalid(
                "tandem.mode",
                format!("`tandem.mode` must be a string, got {v}."),
            ));
        }
    };
    let from_model = req
        .model
        .strip_prefix(tandem_policy::KB_PREFIX)
        .map(|k| k.trim().to_string());
    match (kb, from_model, mode) {
        (Some(a), Some(b), _) if a != b => Err(ApiError::invalid(
            "tandem.kb",
            format!("`tandem.kb` (`{a}`) and the model (`kb:{b}`) name different knowledge bases."),
        )),
        (Some(kb), _, mode) | (None, Some(kb), mode @ Some(_)) => Ok(Some((kb, mode))),
        (None, None, Some(_)) => Err(ApiError::invalid(
            "tandem.mode",
            "`tandem.mode` needs `tandem.kb` (or `model: \"kb:NAME\"`).",
        )),
        (None, _, None) => Ok(None),
    }
}

fn prompt_estimate(p: &(String, String)) -> usize {
    estimate_tokens(&p.0) + estimate_tokens(&p.1) + 8
}

/// Answers `req` from knowledge base `action.kb` in `mode`.
pub(crate) async fn answer(
    ctx: &Ctx,
    action: &RagAction,
    mode: Mode,
    req: &ChatRequest,
    route: &str,
) -> Result<RagAnswer, ApiError> {
    let settings: RagSettings = ctx.rt.config.rag.clone();
    let question = tandem_policy::rules::last_user(&req.messages)
        .trim()
        .to_string();
    if question.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "A knowledge-base question needs a non-empty user message.",
        ));
    }
    if settings.slm.is_empty() {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "No local model is configured to answer knowledge-base questions (rag.slm).",
        ));
    }
    if mode.uses_llm() && settings.llm.is_empty() {
        return Err(ApiError::invalid(
            "tandem.mode",
            format!(
                "RAG mode `{mode}` needs a large model, and none is configured (rag.llm or policy.llm_model)."
            ),
        ));
    }
    let retriever = ctx.state.kb.clone().ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unavailable,
            "Knowledge bases are not enabled on this server.",
        )
    })?;
    let passages = {
        let (kb, q, k) = (action.kb.clone(), question.clone(), action.top_k);
        let r: Arc<dyn Retriever> = retriever as Arc<dyn Retriever>;
        tokio::task::spawn_blocking(move || r.search(&kb, &q, k))
            .await
            .map_err(|e| ApiError::internal(format!("retrieval task failed: {e}")))??
    };
    let lang = Lang::detect(&question);
    let full_prompt = prompt::answer(&question, &passages);
    let baseline = prompt_estimate(&full_prompt);
    let max_answer = req.max_tokens.map_or(settings.max_answer_tokens, |m| {
        m.min(settings.max_answer_tokens).max(16)
    });
    let mut t = Trace::default();
    let job = Job {
        s: &settings,
        question: &question,
        passages: &passages,
        full_prompt: &full_prompt,
        max_answer,
    };
    let (text, answered_by) = if passages.is_empty() {
        t.reasons
            .push("retrieval found nothing: answered \"I don't know\" without a model".into());
        (prompt::idk_phrase(lang).to_string(), settings.slm.clone())
    } else {
        match mode {
            Mode::Local => {
                let e = evidence::answer(ctx, job, &mut t).await?;
                if let evidence::Evidence::Unanswered { why } = &e {
                    t.reasons.push(format!("answered \"I don't know\": {why}"));
                }
                e.into_reply(&question, &settings.slm)
            }
            Mode::Escalate => escalate(ctx, job, &mut t).await?,
            Mode::Compress => compress_mode(ctx, job, &mut t).await?,
            Mode::DraftVerify => draft_verify(ctx, job, &mut t).await?,
        }
    };
    let citations = tandem_rag::citations(&text, &passages);
    let saved = baseline as i64 - t.llm_prompt_estimate as i64;
    ctx.acct.with(|r| {
        r.rag_kb = Some(action.kb.clone());
        r.rag_mode = Some(mode.as_str().to_string());
        r.rag_tokens_saved = saved;
        r.escalated = t.escalated;
        r.reasons
            .extend(t.reasons.iter().map(|x| format!("rag: {x}")));
    });
    let mut meta = serde_json::json!({
        "route": route,
        "model": answered_by,
        "kb": action.kb,
        "mode": mode.as_str(),
        "citations": citations,
        "escalated": t.escalated,
        "reasons": t.reasons,
        "retrieved": passages.iter().map(|p| serde_json::json!({
            "index": p.n, "source": p.source, "score": p.score,
        })).collect::<Vec<_>>(),
        "llm_tokens": t.llm_tokens,
        "tokens_saved": saved,
    });
    if let Some(obj) = meta.as_object_mut() {
        obj.extend(t.extra);
    }
    ctx.acct.answered(
        &answered_by,
        t.usage.prompt_tokens,
        t.usage.completion_tokens,
    );
    let completion = ChatCompletion {
        id: new_id("chatcmpl"),
        object: "chat.completion".into(),
        created: crate::pipeline::now_secs(),
        model: answered_by.clone(),
        system_fingerprint: ctx.state.fingerprint.clone(),
        choices: vec![tandem_types::openai::ChatChoice {
            index: 0,
            message: tandem_types::openai::ResponseMessage::text(text),
            logprobs: None,
            finish_reason: Some("stop".into()),
        }],
        usage: t.usage,
        tandem: Some(meta),
    };
    Ok(RagAnswer {
        completion,
        answered_by,
    })
}

/// `escalate`: the SLM's evidence step answers; when it finds no evidence, misses an
/// entity the question names, or was unsure of its selection, the LLM answers from the
/// same passages.
async fn escalate(ctx: &Ctx, job: Job<'_>, t: &mut Trace) -> Result<(String, String), ApiError> {
    let Job {
        s,
        full_prompt,
        max_answer,
        ..
    } = job;
    let slm = evidence::answer(ctx, job, t).await?;
    let why = match &slm {
        evidence::Evidence::Answer { mean_logprob, .. } => {
            t.extra.insert(
                "grounding".into(),
                serde_json::json!({"mean_logprob": mean_logprob}),
            );
            match (mean_logprob, s.escalate.min_mean_logprob) {
                (Some(lp), Some(min)) if *lp < min => Some(format!(
                    "the SLM was unsure of its evidence (mean log-probability {lp:.2} < {min:.2})"
                )),
                _ => None,
            }
        }
        evidence::Evidence::Unanswered { why } => s.escalate.on_idk.then(|| why.clone()),
    };
    let Some(why) = why else {
        if matches!(slm, evidence::Evidence::Answer { .. }) {
            t.reasons
                .push("the SLM's answer stands on the evidence it selected".into());
        }
        return Ok(slm.into_reply(job.question, &s.slm));
    };
    t.escalated = true;
    t.reasons.push(why);
    t.llm_prompt_estimate += prompt_estimate(full_prompt);
    let fallback = |slm: evidence::Evidence| slm.into_reply(job.question, &s.slm);
    match answer_from(ctx, &s.llm, full_prompt.clone(), max_answer, true, t).await {
        Ok((text, who)) => {
            let mut rejected = llm_answer_problems(&text, job);
            if rejected.is_empty() {
                return Ok((text, who));
            }
            rejected.insert(0, "the LLM's answer was rejected".into());
            t.reasons.push(rejected.join("; "));
            Ok(fallback(slm))
        }
        Err(e) => {
            t.reasons.push(format!(
                "the LLM failed ({}); returning the SLM's answer",
                e.message
            ));
            Ok(fallback(slm))
        }
    }
}

/// Why an LLM answer cannot be returned: it is a prompt's example, or it states a figure
/// that no sentence or row of its cited passages (all passages when it cites none) holds
/// next to the question's terms. Empty when it stands; an "I don't know" always stands.
fn llm_answer_problems(text: &str, job: Job<'_>) -> Vec<String> {
    if tandem_rag::is_idk(text) {
        return Vec::new();
    }
    if prompt::copies_example(text) {
        return vec!["it copies the prompt's example".into()];
    }
    let max = job.passages.iter().map(|p| p.n).max().unwrap_or(0);
    let cited = tandem_rag::cite::cited(text, max);
    let sources: Vec<Passage> = job
        .passages
        .iter()
        .filter(|p| cited.is_empty() || cited.contains(&p.n))
        .cloned()
        .collect();
    let units = tandem_rag::evidence::units(job.question, &sources, usize::MAX);
    let refs: Vec<&tandem_rag::evidence::Unit> = units.iter().collect();
    tandem_rag::evidence::bind(text, job.question, &refs)
}

/// `compress`: the SLM picks sentences; the LLM answers from them.
async fn compress_mode(
    ctx: &Ctx,
    job: Job<'_>,
    t: &mut Trace,
) -> Result<(String, String), ApiError> {
    let Job {
        s,
        question,
        passages,
        full_prompt,
        max_answer,
    } = job;
    let sentences = compress::sentences(question, passages, 80);
    let listing = compress::numbered(&sentences);
    let picked = match call(
        ctx,
        &s.slm,
        &sub_request(&s.slm, prompt::select(question, &listing), 48, false),
    )
    .await
    {
        Ok((c, _)) => {
            t.add(&c, false);
            compress::parse_selection(&text_of(&c), sentences.len())
        }
        Err(e) => {
            t.reasons.push(format!("the SLM could not select sentences ({}); kept those sharing the most terms with the question", e.message));
            Vec::new()
        }
    };
    let budget = compress::Budget {
        max_tokens: s.compress_max_tokens,
        ..compress::Budget::default()
    };
    let comp = compress::compress(passages, &sentences, &picked, budget);
    t.reasons.push(format!(
        "compressed the context from ~{} to ~{} tokens ({:.0}% less; {} sentences, {} picked by the SLM)",
        comp.tokens_before,
        comp.tokens_after,
        comp.reduction() * 100.0,
        comp.kept.len(),
        comp.picked_by_slm
    ));
    t.extra.insert(
        "compression".into(),
        serde_json::json!({
            "tokens_before": comp.tokens_before, "tokens_after": comp.tokens_after,
            "reduction": comp.reduction(), "sentences_kept": comp.kept.len(),
            "picked_by_slm": comp.picked_by_slm,
        }),
    );
    let p = prompt::answer_compressed(question, &comp);
    t.llm_prompt_estimate += prompt_estimate(&p);
    match answer_from(ctx, &s.llm, p, max_answer, true, t).await {
        Ok(answer) => Ok(answer),
        Err(e) => {
            t.reasons.push(format!(
                "the LLM failed ({}); the SLM answered from all passages",
                e.message
            ));
            t.llm_prompt_estimate = 0;
            answer_from(ctx, &s.slm, full_prompt.clone(), max_answer, false, t).await
        }
    }
}

/// `draft_verify`: SLM drafts from passage subsets; the LLM picks and corrects in one call.
async fn draft_verify(
    ctx: &Ctx,
    job: Job<'_>,
    t: &mut Trace,
) -> Result<(String, String), ApiError> {
    let Job {
        s,
        question,
        passages,
        full_prompt,
        max_answer,
    } = job;
    let subsets = draft::subsets(passages.len(), s.drafts);
    let calls = subsets.iter().map(|idx| {
        let subset: Vec<Passage> = idx
            .iter()
            .filter_map(|&i| passages.get(i).cloned())
            .collect();
        let numbers: Vec<usize> = subset.iter().map(|p| p.n).collect();
        let req = sub_request(&s.slm, prompt::draft(question, &subset), 160, false);
        async move { (numbers, call(ctx, &s.slm, &req).await) }
    });
    let mut drafts = Vec::new();
    let mut slm_who = s.slm.clone();
    for (numbers, r) in futures::future::join_all(calls).await {
        match r {
            Ok((c, who)) => {
                t.add(&c, false);
                slm_who = who;
                drafts.push(draft::parse_draft(&text_of(&c), numbers));
            }
            Err(e) => t.reasons.push(format!("a draft failed: {}", e.message)),
        }
    }
    if drafts.is_empty() {
        return Err(ApiError::new(
            ErrorKind::BadGateway,
            "every SLM draft failed",
        ));
    }
    t.extra.insert("drafts".into(), serde_json::json!(drafts));
    let p = prompt::verify(question, &drafts);
    t.llm_prompt_estimate += prompt_estimate(&p);
    match answer_from(ctx, &s.llm, p, max_answer, true, t).await {
        Ok((text, llm)) => {
            let v = draft::parse_verdict(&text, &drafts);
            t.reasons.push(match v.best {
                Some(b) => format!("the LLM chose draft {b} of {}", drafts.len()),
                None => format!("the LLM chose none of the {} drafts", drafts.len()),
            });
            t.extra
                .insert("verdict".into(), serde_json::json!({"best": v.best}));
            Ok((v.answer, llm))
        }
        Err(e) => {
            // Without the verifier: the first draft that cites and is supported, else the SLM
            // answers from all passages.
            t.reasons.push(format!(
                "the LLM failed ({}); picked a draft locally",
                e.message
            ));
            t.llm_prompt_estimate = 0;
            let best = drafts.iter().find(|d| {
                let g = ground::check(&d.answer, passages);
                !g.idk && !g.cited.is_empty() && g.min_support() >= s.escalate.min_support
            });
            match best {
                Some(d) => Ok((d.answer.clone(), slm_who)),
                None => answer_from(ctx, &s.slm, full_prompt.clone(), max_answer, false, t).await,
            }
        }
    }
}
