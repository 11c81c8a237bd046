//! The SLM's evidence step of `local` and `escalate` (see [`tandem_rag::evidence`]): pick
//! the lines that state the answer under a grammar, part by part, and quote them; "none"
//! or a named entity the lines never mention means the base does not answer.

use super::call::{Job, Trace, call, mean_logprob, sub_request, text_of};
use crate::gateway::Ctx;
use tandem_rag::evidence::{self, Unit};
use tandem_rag::prompt;
use tandem_types::ApiError;
use tandem_types::tools::ResponseFormat;

/// Most units shown to the SLM: a 0.5B model picks well among a dozen or so, and a short
/// listing keeps the prompt (most of the latency) small.
const MAX_UNITS: usize = 24;
/// Token budget of one selection reply (`{"lines": [12, 3, 40]}` is ~14 tokens).
const SELECT_TOKENS: u32 = 32;

/// What the evidence step gave.
pub(super) enum Evidence {
    /// An answer built from the selected units only, every sentence citing its passage.
    Answer {
        text: String,
        who: String,
        /// Mean token log-probability of the selections.
        mean_logprob: Option<f32>,
    },
    /// The base does not answer the question; `why` says how the step knew.
    Unanswered { why: String },
}

impl Evidence {
    /// The text to return and who gave it: the answer, or the "I don't know" of the
    /// question's language on behalf of `slm`.
    pub(super) fn into_reply(self, question: &str, slm: &str) -> (String, String) {
        match self {
            Evidence::Answer { text, who, .. } => (text, who),
            Evidence::Unanswered { .. } => (
                prompt::idk_phrase(tandem_rag::Lang::detect(question)).to_string(),
                slm.to_string(),
            ),
        }
    }
}

/// Runs the evidence step with the SLM of `job`.
pub(super) async fn answer(ctx: &Ctx, job: Job<'_>, t: &mut Trace) -> Result<Evidence, ApiError> {
    let Job {
        s,
        question,
        passages,
        ..
    } = job;
    let units = evidence::units(question, passages, MAX_UNITS);
    if units.is_empty() {
        return Ok(Evidence::Unanswered {
            why: "the retrieved passages hold no sentence to answer from".into(),
        });
    }
    let listing = evidence::listing(&units);
    let schema = evidence::selection_schema(units.len());
    let parts = evidence::parts(question);
    let multi = parts.len() > 1;
    let mut who = s.slm.clone();
    let mut lps: Vec<f32> = Vec::new();
    let mut answered: Vec<String> = Vec::new();
    let mut all_picked: Vec<&Unit> = Vec::new();
    let mut picks_log: Vec<serde_json::Value> = Vec::new();
    for part in &parts {
        let mut req = sub_request(
            &s.slm,
            prompt::select_evidence(question, multi.then_some(part.as_str()), &listing),
            SELECT_TOKENS,
            true,
        );
        req.response_format = ResponseFormat::JsonSchema {
            name: "evidence".into(),
            schema: schema.clone(),
            strict: true,
        };
        let (c, by) = call(ctx, &s.slm, &req).await?;
        t.add(&c, false);
        who = by;
        if let Some(lp) = mean_logprob(&c) {
            lps.push(lp);
        }
        let ids = evidence::parse_selection(&text_of(&c), units.len());
        picks_log.push(serde_json::json!({"part": part, "lines": ids}));
        let picked: Vec<&Unit> = ids.iter().filter_map(|&i| units.get(i - 1)).collect();
        if picked.is_empty() {
            t.reasons.push(if multi {
                format!("the SLM found no line that answers \"{part}\"")
            } else {
                "the SLM found no line that answers the question".into()
            });
            continue;
        }
        // The answer quotes the evidence. (Measured against the SLM writing a sentence from
        // it, held to it by `evidence::bind`: on the same 12 questions quoting was right 9
        // times against 7 and 2.3 s faster; written answers misread figures and slipped
        // into Simplified Chinese.)
        answered.push(evidence::quote(&picked));
        all_picked.extend(picked);
    }
    t.extra.insert(
        "evidence".into(),
        serde_json::json!({"units": units.len(), "parts": picks_log}),
    );
    if answered.is_empty() {
        return Ok(Evidence::Unanswered {
            why: "no retrieved line states the answer".into(),
        });
    }
    let missing = evidence::missing_entities(question, &all_picked, passages);
    if !missing.is_empty() {
        let why = format!(
            "the question names {}, which the selected evidence never mentions",
            missing.join(", ")
        );
        t.reasons.push(why.clone());
        return Ok(Evidence::Unanswered { why });
    }
    if answered.len() < parts.len() {
        t.reasons.push(format!(
            "answered {} of the question's {} parts",
            answered.len(),
            parts.len()
        ));
    }
    let sep = if tandem_rag::Lang::detect(question) == tandem_rag::Lang::Zh {
        ""
    } else {
        " "
    };
    let mean = (!lps.is_empty()).then(|| lps.iter().sum::<f32>() / lps.len() as f32);
    Ok(Evidence::Answer {
        text: answered.join(sep),
        who,
        mean_logprob: mean,
    })
}
