//! What every RAG mode shares: the sub-requests it sends to a model, the job it works
//! from, and the bookkeeping of tokens, reasons and escalation.

use crate::gateway::{Ctx, call_full, with_fallbacks};
use tandem_policy::RagSettings;
use tandem_rag::Passage;
use tandem_types::ApiError;
use tandem_types::openai::{ChatCompletion, ChatMessage, ChatRequest, Usage};

pub(super) fn message(role: &str, content: String) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content,
        name: None,
        ..Default::default()
    }
}

/// A greedy sub-request to one model.
pub(super) fn sub_request(
    model: &str,
    (system, user): (String, String),
    max_tokens: u32,
    logprobs: bool,
) -> ChatRequest {
    let mut req = ChatRequest::new(
        model,
        vec![message("system", system), message("user", user)],
    );
    req.sampling.temperature = 0.0;
    req.max_tokens = Some(max_tokens);
    req.logprobs = logprobs;
    req
}

pub(super) fn text_of(c: &ChatCompletion) -> String {
    c.choices
        .first()
        .map(|ch| ch.message.content.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn mean_logprob(c: &ChatCompletion) -> Option<f32> {
    let lps: Vec<f32> = c
        .choices
        .iter()
        .filter_map(|ch| ch.logprobs.as_ref())
        .flat_map(|lp| lp.content.iter().map(|t| t.logprob))
        .filter(|l| l.is_finite())
        .collect();
    (!lps.is_empty()).then(|| lps.iter().sum::<f32>() / lps.len() as f32)
}

/// What every mode works from.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    pub(super) s: &'a RagSettings,
    pub(super) question: &'a str,
    pub(super) passages: &'a [Passage],
    /// The answer prompt over all retrieved passages.
    pub(super) full_prompt: &'a (String, String),
    pub(super) max_answer: u32,
}

/// Bookkeeping of one RAG answer.
#[derive(Default)]
pub(super) struct Trace {
    pub(super) usage: Usage,
    pub(super) llm_tokens: u32,
    /// Estimated prompt tokens sent to the LLM.
    pub(super) llm_prompt_estimate: usize,
    pub(super) reasons: Vec<String>,
    pub(super) escalated: bool,
    pub(super) extra: serde_json::Map<String, serde_json::Value>,
}

impl Trace {
    pub(super) fn add(&mut self, c: &ChatCompletion, llm: bool) {
        self.usage.prompt_tokens += c.usage.prompt_tokens;
        self.usage.completion_tokens += c.usage.completion_tokens;
        self.usage.total_tokens += c.usage.total_tokens;
        if llm {
            self.llm_tokens += c.usage.prompt_tokens + c.usage.completion_tokens;
        }
    }
}

/// Call `model` (with its fallbacks) on a sub-request; the PII guard sees the sub-request's
/// own messages (retrieved chunks can hold personal data too).
pub(super) async fn call(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<(ChatCompletion, String), ApiError> {
    let sub = ctx.for_messages(&req.messages);
    let (c, who, _) = with_fallbacks(&sub, model, |m| {
        let sub = &sub;
        async move { call_full(sub, &m, req).await }
    })
    .await?;
    Ok((c, who))
}

/// Asks `model` (greedy, no log-probabilities) and books its tokens (`llm`: as LLM tokens).
/// Returns the answer's text and who gave it.
pub(super) async fn answer_from(
    ctx: &Ctx,
    model: &str,
    prompt: (String, String),
    max_tokens: u32,
    llm: bool,
    t: &mut Trace,
) -> Result<(String, String), ApiError> {
    let (c, who) = call(ctx, model, &sub_request(model, prompt, max_tokens, false)).await?;
    t.add(&c, llm);
    Ok((text_of(&c), who))
}
