//! The hybrid gateway: route a chat request by the policy, call the chosen model(s) — local
//! engine or remote upstream, with fallbacks, PII masking and the cascade — and account for
//! it in the ledger. No sockets here beyond the upstream clients: the HTTP layer hands in a
//! parsed request and its headers and gets back a body (JSON or SSE payloads) plus the
//! routing headers.

use crate::pipeline::{self, SsePayload, StreamOutcome, error_payload, new_id};
use crate::runtime::Runtime;
use crate::state::AppState;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tandem_ledger::LedgerRecord;
use tandem_policy::cascade::{TokenScore, Verdict, judge, structure_faults};
use tandem_policy::classify::Classification;
use tandem_policy::pii::{Finding, Masker, StreamRestorer};
use tandem_policy::rules::{Cascade, last_user};
use tandem_policy::{Action, Decision, Facts, PiiAction, RouteError, RouteRequest};
use tandem_providers::ProviderError;
use tandem_types::openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, ChunkChoice, ChunkDelta, Usage,
};
use tandem_types::{ApiError, ErrorKind};
use tokio::sync::mpsc;

/// Header with the latency budget in milliseconds.
pub const LATENCY_BUDGET_HEADER: &str = "x-tandem-latency-budget-ms";
/// Header naming the tenant (when the API key does not).
pub const TENANT_HEADER: &str = "x-tandem-tenant";

/// What the HTTP layer knows about a request besides its body.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// Headers, names lower-cased (values that are not UTF-8 are dropped).
    pub headers: Vec<(String, String)>,
    /// When the request arrived.
    pub start: Instant,
    /// Unix milliseconds when it arrived.
    pub ts_ms: i64,
}

impl RequestMeta {
    /// From an axum header map.
    pub fn from_headers(h: &axum::http::HeaderMap) -> RequestMeta {
        RequestMeta {
            headers: h
                .iter()
                .filter_map(|(k, v)| {
                    v.to_str()
                        .ok()
                        .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
                })
                .collect(),
            start: Instant::now(),
            ts_ms: now_ms(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The API key: `Authorization: Bearer …` or `x-api-key`.
    pub fn api_key(&self) -> Option<&str> {
        if let Some(a) = self.header("authorization") {
            let a = a.trim();
            if let Some(k) = a
                .strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
            {
                return Some(k.trim());
            }
        }
        self.header("x-api-key").map(str::trim)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A response body.
pub enum Reply {
    /// Non-streaming.
    Json(Box<ChatCompletion>),
    /// Server-sent event payloads.
    Stream(mpsc::Receiver<SsePayload>),
}

/// A routed response with what the routing headers report.
pub struct Routed {
    /// Body.
    pub reply: Reply,
    /// Rule that decided.
    pub route: String,
    /// Model that answers.
    pub model: String,
    /// Tandem's own time before the model was called, in ms.
    pub overhead_ms: f64,
    /// The request's id in the ledger (also the `id` of a non-streamed completion): what
    /// `POST /v1/tandem/feedback` rates.
    pub request_id: String,
}

/// A failed request, with routing headers when the decision was made.
pub struct Failed {
    /// The error.
    pub error: ApiError,
    /// Rule that decided, if any.
    pub route: Option<String>,
    /// Model, if any.
    pub model: Option<String>,
    /// Overhead so far.
    pub overhead_ms: f64,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed {
            error,
            route: None,
            model: None,
            overhead_ms: 0.0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accounting
// ---------------------------------------------------------------------------------------------

/// The request's ledger record, filled in as calls happen and written once.
#[derive(Clone)]
pub(crate) struct Acct {
    inner: Arc<Mutex<Option<LedgerRecord>>>,
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    start: Instant,
}

impl Acct {
    fn new(state: &Arc<AppState>, rt: &Arc<Runtime>, rec: LedgerRecord, start: Instant) -> Acct {
        Acct {
            inner: Arc::new(Mutex::new(Some(rec))),
            state: state.clone(),
            rt: rt.clone(),
            start,
        }
    }

    pub(crate) fn with(&self, f: impl FnOnce(&mut LedgerRecord)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = g.as_mut() {
            f(r);
        }
    }

    /// One model call's tokens and cost.
    fn call(&self, model: &str, prompt: u32, completion: u32) {
        let spec = self.rt.config.model(model);
        let local = spec.is_none_or(|m| m.is_local());
        let price = spec.map(|m| m.price).unwrap_or_default();
        let cfg = &self.rt.config;
        let llm = !local
            || cfg.llm_model.as_deref() == Some(model)
            || (cfg.rag.llm == model && cfg.rag.slm != model);
        self.with(|r| {
            r.prompt_tokens += prompt;
            r.completion_tokens += completion;
            if llm {
                r.llm_tokens += prompt + completion;
            }
            if !local {
                r.remote_prompt_tokens += prompt;
                r.remote_completion_tokens += completion;
            }
            r.cost_usd += price.cost(prompt, completion);
        });
    }

    fn called(&self, model: &str) {
        let local = self.rt.config.model(model).is_none_or(|m| m.is_local());
        self.with(|r| {
            r.models_called.push(model.to_string());
            if !local {
                r.left_machine = true;
            }
        });
    }

    pub(crate) fn answered(&self, model: &str, prompt: u32, completion: u32) {
        let local = self.rt.config.model(model).is_none_or(|m| m.is_local());
        let baseline = self
            .rt
            .config
            .llm_model
            .as_deref()
            .and_then(|m| self.rt.config.model(m))
            .map(|m| m.price)
            .unwrap_or_default();
        self.with(|r| {
            r.answered_by = Some(model.to_string());
            r.local = local;
            r.baseline_cost_usd = baseline.cost(prompt, completion);
        });
    }

    /// What the answer was made of: the functions it called, and whether the request asked
    /// for grammar-constrained output (`grammar`; recorded only when a local model answered,
    /// since only the local engine enforces it).
    pub(crate) fn output(&self, tool_calls: Vec<String>, grammar: bool) {
        self.with(|r| {
            r.constrained = grammar && r.local;
            r.tool_calls = tool_calls;
        });
    }

    fn finish(&self, status: u16, error: Option<String>, ttft_ms: Option<f64>) {
        let rec = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.take()
        };
        let Some(mut rec) = rec else { return };
        rec.status = status;
        rec.error = error;
        rec.total_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        if ttft_ms.is_some() {
            rec.ttft_ms = ttft_ms;
        }
        crate::metrics::routed(&rec);
        if let Some(l) = &self.state.ledger {
            l.record(rec);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deciding
// ---------------------------------------------------------------------------------------------

/// The decision and everything computed on the way.
pub struct Prepared {
    /// Runtime the request uses from start to end.
    pub rt: Arc<Runtime>,
    /// The decision.
    pub decision: Decision,
    /// Category, if some rule (or explain) computed it.
    pub category: Option<Classification>,
    /// Prompt tokens, if computed.
    pub prompt_tokens: Option<usize>,
    /// PII findings per message.
    pub findings: Vec<Vec<Finding>>,
    /// API key name.
    pub key_name: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authenticate, detect PII and decide. `eager` computes the category and token count even
/// when no rule needs them (for explain).
pub async fn prepare(
    state: &Arc<AppState>,
    req: &ChatRequest,
    meta: &RequestMeta,
    eager: bool,
) -> Result<Prepared, ApiError> {
    let rt = state.runtime();
    let token_engine = rt
        .config
        .fallback_local()
        .and_then(|m| state.chat_engine(m).ok())
        .cloned();
    prepare_with(rt, token_engine, req, meta, eager).await
}

/// [`prepare`] over an explicit runtime and the engine whose tokenizer counts prompt tokens.
pub async fn prepare_with(
    rt: Arc<Runtime>,
    token_engine: Option<tandem_engine::Engine>,
    req: &ChatRequest,
    meta: &RequestMeta,
    eager: bool,
) -> Result<Prepared, ApiError> {
    let cfg = &rt.config;
    let (key_name, key_tenant) = match meta.api_key() {
        Some(k) => cfg
            .api_keys
            .iter()
            .find(|(s, _, _)| constant_time_eq(s.expose(), k))
            .map(|(_, n, t)| (Some(n.clone()), t.clone()))
            .unwrap_or((None, None)),
        None => (None, None),
    };
    if cfg.require_api_key && key_name.is_none() {
        return Err(ApiError::new(
            ErrorKind::Authentication,
            "A valid API key is required (Authorization: Bearer <key>).",
        )
        .with_code("invalid_api_key"));
    }
    let tenant = key_tenant.or_else(|| meta.header(TENANT_HEADER).map(str::to_string));
    let budget = match meta.header(LATENCY_BUDGET_HEADER) {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(b) if b.is_finite() && b >= 0.0 => Some(b),
            _ => {
                return Err(ApiError::invalid(
                    LATENCY_BUDGET_HEADER,
                    format!(
                        "`{LATENCY_BUDGET_HEADER}` must be a non-negative number of milliseconds, got `{v}`."
                    ),
                ));
            }
        },
    };
    let findings: Vec<Vec<Finding>> = req
        .messages
        .iter()
        .map(|m| rt.detector.detect(&m.content))
        .collect();
    // The guard also looks at the arguments of calls in the history.
    let flat: Vec<Finding> = findings
        .iter()
        .flatten()
        .cloned()
        .chain(req.messages.iter().flat_map(|m| {
            m.tool_calls
                .iter()
                .flat_map(|c| rt.detector.detect(&c.function.arguments))
        }))
        .collect();
    let run = {
        let rt = rt.clone();
        let messages = req.messages.clone();
        let requested = req.model.clone();
        let (wants_tools, tool_count) = (req.wants_tools(), req.tools.len());
        let structured = req.response_format.is_structured();
        let headers = meta.headers.clone();
        let key = key_name.clone();
        let tenant = tenant.clone();
        move || {
            let count = || match &token_engine {
                Some(e) => e
                    .chat_prompt(&messages)
                    .map(|t| t.len())
                    .unwrap_or_else(|_| estimate_tokens(&messages)),
                None => estimate_tokens(&messages),
            };
            let classify = || rt.classifier.classify(last_user(&messages)).ok();
            let router = || rt.slm_win_probability(last_user(&messages));
            let facts = Facts::new(&count, &classify).with_router(&router);
            let rr = RouteRequest {
                requested_model: &requested,
                messages: &messages,
                headers: &headers,
                api_key: key.as_deref(),
                tenant: tenant.as_deref(),
                latency_budget_ms: budget,
                pii: &flat,
                tools: if wants_tools { tool_count } else { 0 },
                structured_output: structured,
            };
            let d = rt.config.decide(&rr, &facts);
            if eager {
                facts.category();
                facts.prompt_tokens();
            }
            d.map(|d| {
                (
                    d,
                    facts.category_if_computed().cloned(),
                    facts.tokens_if_computed(),
                )
            })
        }
    };
    let out = if rt.needs_category || eager {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| ApiError::internal(format!("routing task failed: {e}")))?
    } else {
        run()
    };
    let (decision, category, prompt_tokens) = out.map_err(|e| match e {
        RouteError::UnknownModel { model } => {
            let mut names: Vec<String> = cfg.aliases.keys().cloned().collect();
            names.extend(cfg.models.iter().map(|m| m.name.clone()));
            ApiError::model_not_found(&model, &names)
        }
    })?;
    Ok(Prepared {
        rt,
        decision,
        category,
        prompt_tokens,
        findings,
        key_name,
        tenant,
    })
}

fn estimate_tokens(messages: &[tandem_types::openai::ChatMessage]) -> usize {
    // ~4 characters per token for English; CJK characters are about one token each.
    messages
        .iter()
        .map(|m| {
            let cjk = m.content.chars().filter(|c| (*c as u32) >= 0x2E80).count();
            let other = m.content.chars().count() - cjk;
            cjk + other / 4 + 4
        })
        .sum()
}

fn reject_error(message: &str, status: u16) -> ApiError {
    let kind = match status {
        400 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Unavailable,
        s => ErrorKind::Custom(s),
    };
    ApiError::new(kind, message).with_code("rejected_by_policy")
}

// ---------------------------------------------------------------------------------------------
// Serving a chat request
// ---------------------------------------------------------------------------------------------

/// Everything a call needs.
pub(crate) struct Ctx {
    pub(crate) state: Arc<AppState>,
    pub(crate) rt: Arc<Runtime>,
    findings: Vec<Vec<Finding>>,
    remote_pii: PiiAction,
    pub(crate) acct: Acct,
}

impl Ctx {
    /// The same context for a request with other messages (the PII guard looks at these).
    pub(crate) fn for_messages(&self, messages: &[tandem_types::openai::ChatMessage]) -> Ctx {
        Ctx {
            state: self.state.clone(),
            rt: self.rt.clone(),
            findings: messages
                .iter()
                .map(|m| self.rt.detector.detect(&m.content))
                .collect(),
            remote_pii: self.remote_pii,
            acct: self.acct.clone(),
        }
    }
}

/// Route and answer a chat completion.
pub async fn chat(
    state: Arc<AppState>,
    req: ChatRequest,
    meta: RequestMeta,
) -> Result<Routed, Failed> {
    let rag_request = crate::rag::requested(&req)?;
    let p = match &rag_request {
        Some((kb, _)) => {
            let mut routed = req.clone();
            routed.model = format!("{}{kb}", tandem_policy::KB_PREFIX);
            prepare(&state, &routed, &meta, false).await?
        }
        None => prepare(&state, &req, &meta, false).await?,
    };
    let d = &p.decision;
    let rec = LedgerRecord {
        id: new_id("chatcmpl"),
        ts_ms: meta.ts_ms,
        tenant: p.tenant.clone(),
        key_id: p.key_name.clone(),
        endpoint: "chat".into(),
        requested_model: req.model.clone(),
        route: d.route.clone(),
        reasons: d.reasons.clone(),
        category: p.category.as_ref().map(|c| c.category.clone()),
        action: if d.direct && d.route == "direct" {
            "direct".into()
        } else {
            d.action.kind().into()
        },
        pii_kinds: d.pii_kinds.iter().map(|k| k.as_str().to_string()).collect(),
        pii_action: (!d.pii_kinds.is_empty()).then(|| {
            d.pii_action
                .map(|a| a.as_str().to_string())
                .unwrap_or_else(|| "none".into())
        }),
        dialect: Some(req.dialect.as_str().into()),
        ..LedgerRecord::default()
    };
    let request_id = rec.id.clone();
    let acct = Acct::new(&state, &p.rt, rec, meta.start);
    let route = d.route.clone();
    let ctx = Ctx {
        state: state.clone(),
        rt: p.rt.clone(),
        remote_pii: d.remote_pii_action,
        findings: p.findings,
        acct: acct.clone(),
    };
    let overhead_ms = meta.start.elapsed().as_secs_f64() * 1000.0;
    acct.with(|r| r.overhead_ms = overhead_ms);
    crate::metrics::decision(
        &route,
        d.model.as_deref().unwrap_or("none"),
        d.action.kind(),
        overhead_ms / 1000.0,
    );
    let result = match &d.action {
        Action::Reject { message, status } => Err(reject_error(message, *status)),
        Action::Model { model } => {
            if req.stream {
                run_stream(&ctx, model, &req)
                    .await
                    .map(|(rx, m)| (Reply::Stream(rx), m))
            } else {
                run_full(&ctx, model, &req, &route, None)
                    .await
                    .map(|(c, m)| (Reply::Json(Box::new(c)), m))
            }
        }
        Action::Cascade(c) => cascade(&ctx, c, &req, &route).await,
        Action::Rag(r) => {
            let override_mode = rag_request.as_ref().and_then(|(_, m)| *m);
            rag_reply(&ctx, d, r, override_mode, &req, &route).await
        }
    };
    if let Some(ledger) = &state.ledger
        && result.is_ok()
        && p.rt.ledger_vectors()
    {
        record_vector(ledger, &p.rt, &request_id, &req);
    }
    match result {
        Ok((mut reply, model)) => {
            if let Reply::Json(c) = &mut reply {
                c.id = request_id.clone();
                let names: Vec<String> = c
                    .choices
                    .first()
                    .map(|ch| {
                        ch.message
                            .tool_calls
                            .iter()
                            .map(|t| t.function.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let called = !names.is_empty();
                acct.output(names, wants_grammar(&req) || called);
                acct.finish(200, None, None);
            }
            Ok(Routed {
                reply,
                route,
                model,
                overhead_ms,
                request_id,
            })
        }
        Err(e) => {
            acct.finish(e.status(), Some(e.message.clone()), None);
            Err(Failed {
                error: e,
                route: Some(route),
                model: d.model.clone(),
                overhead_ms,
            })
        }
    }
}

/// Whether the local engine constrains this request's output with a grammar: a JSON
/// format always; tools when a call is required (under `auto` only a call's arguments are,
/// which [`Acct::output`] learns from the calls made).
fn wants_grammar(req: &ChatRequest) -> bool {
    use tandem_types::tools::ToolChoice;
    req.response_format.is_structured()
        || (req.wants_tools()
            && matches!(
                req.tool_choice,
                ToolChoice::Required | ToolChoice::Function(_)
            ))
}

/// Stores the classifier's embedding of the request's last user message in the ledger, on a
/// blocking thread after the answer (usually remembered from the classification, else one
/// forward pass that must not delay the reply).
fn record_vector(ledger: &tandem_ledger::Ledger, rt: &Arc<Runtime>, id: &str, req: &ChatRequest) {
    let text = tandem_policy::rules::last_user(&req.messages).to_owned();
    let (ledger, rt, id) = (ledger.clone(), rt.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        if let Some((model, vector)) = rt.request_vector(&text) {
            ledger.record_vector(tandem_ledger::RequestVector { id, model, vector });
        }
    });
}

/// A knowledge-base answer, in the mode of the decision or (when allowed) of the request.
async fn rag_reply(
    ctx: &Ctx,
    d: &Decision,
    r: &tandem_policy::RagAction,
    override_mode: Option<tandem_rag::Mode>,
    req: &ChatRequest,
    route: &str,
) -> Result<(Reply, String), ApiError> {
    let forced_local = d.pii_action == Some(PiiAction::ForceLocal);
    let mut mode = if forced_local {
        r.mode
    } else {
        override_mode.unwrap_or(r.mode)
    };
    let cfg = &ctx.rt.config;
    let llm_remote = cfg.model(&cfg.rag.llm).is_some_and(|m| !m.is_local());
    if mode.uses_llm() && llm_remote && !d.pii_kinds.is_empty() && override_mode.is_some() {
        // The request chose a mode the decision did not see: apply the PII guard to it.
        match d.remote_pii_action {
            PiiAction::ForceLocal => mode = tandem_rag::Mode::Local,
            PiiAction::Block => {
                return Err(ApiError::invalid(
                    "messages",
                    "The request contains personal data that the policy does not allow to leave this machine.",
                )
                .with_code("pii_must_stay_local"));
            }
            PiiAction::Mask | PiiAction::Allow => {}
        }
    }
    let a = crate::rag::answer(ctx, r, mode, req, route).await?;
    crate::metrics::cascade(
        route,
        a.completion
            .tandem
            .as_ref()
            .is_some_and(|t| t["escalated"] == true),
    );
    let reply = if req.stream {
        let rx = completion_as_stream_with(
            &a.completion,
            req.include_usage,
            a.completion.tandem.clone(),
        );
        ctx.acct.finish(200, None, None);
        Reply::Stream(rx)
    } else {
        Reply::Json(Box::new(a.completion))
    };
    Ok((reply, a.answered_by))
}

/// The models to try for `model`: itself, then its fallbacks.
fn chain(rt: &Runtime, model: &str) -> Vec<String> {
    let mut v = vec![model.to_string()];
    if let Some(m) = rt.config.model(model) {
        v.extend(m.fallback.iter().cloned());
    }
    v
}

/// Failures worth trying the next model for (the upstream or engine, not the request).
fn worth_falling_back(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ErrorKind::RateLimited
            | ErrorKind::Internal
            | ErrorKind::BadGateway
            | ErrorKind::Unavailable
            | ErrorKind::Timeout
    ) || matches!(e.kind, ErrorKind::Custom(s) if s >= 500)
        || e.code.as_deref() == Some("pii_must_stay_local")
}

/// The request as it may leave the machine, and the masker to restore the answer.
fn outbound(ctx: &Ctx, req: &ChatRequest) -> Result<(ChatRequest, Option<Masker>), ApiError> {
    // Arguments of the calls in the history carry data too (tool results are messages).
    let arg_findings: Vec<Vec<Vec<Finding>>> = req
        .messages
        .iter()
        .map(|m| {
            m.tool_calls
                .iter()
                .map(|c| ctx.rt.detector.detect(&c.function.arguments))
                .collect()
        })
        .collect();
    if ctx.findings.iter().all(Vec::is_empty) && arg_findings.iter().flatten().all(Vec::is_empty) {
        return Ok((req.clone(), None));
    }
    match ctx.remote_pii {
        PiiAction::Allow => Ok((req.clone(), None)),
        PiiAction::Mask => {
            let mut masker = Masker::new();
            let mut out = req.clone();
            for ((m, f), args) in out.messages.iter_mut().zip(&ctx.findings).zip(&arg_findings) {
                if !f.is_empty() {
                    m.content = masker.mask(&m.content, f);
                }
                for (c, f) in m.tool_calls.iter_mut().zip(args) {
                    if !f.is_empty() {
                        c.function.arguments = masker.mask(&c.function.arguments, f);
                    }
                }
            }
            Ok((out, Some(masker)))
        }
        PiiAction::ForceLocal | PiiAction::Block => Err(ApiError::invalid(
            "messages",
            "The request contains personal data that the policy does not allow to leave this machine.",
        )
        .with_code("pii_must_stay_local")),
    }
}

fn provider_error(model: &str, e: &ProviderError) -> ApiError {
    crate::metrics::upstream_error(model, e);
    e.to_api_error()
}

/// Call one model, non-streaming.
pub(crate) async fn call_full(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<ChatCompletion, ApiError> {
    if let Some(remote) = ctx.rt.remotes.get(model) {
        let (out, masker) = outbound(ctx, req)?;
        ctx.acct.called(model);
        let reply = remote
            .upstream
            .chat(&out)
            .await
            .map_err(|e| provider_error(model, &e))?;
        ctx.acct.with(|r| r.sent_out = Some(reply.sent.clone()));
        let mut c = reply.completion;
        c.model = model.to_string();
        if let Some(m) = &masker {
            for ch in &mut c.choices {
                ch.message.content = m.restore(&ch.message.content);
                for t in &mut ch.message.tool_calls {
                    t.function.arguments = m.restore(&t.function.arguments);
                }
            }
        }
        ctx.acct
            .call(model, c.usage.prompt_tokens, c.usage.completion_tokens);
        Ok(c)
    } else {
        let engine = ctx.state.chat_engine(model)?;
        ctx.acct.called(model);
        let c = pipeline::chat_completion(engine, req, &ctx.state.fingerprint).await?;
        ctx.acct
            .call(model, c.usage.prompt_tokens, c.usage.completion_tokens);
        Ok(c)
    }
}

/// Try `model`, then its fallbacks, with `call`, moving on only for failures of the model
/// (not of the request). Returns the result, who gave it and the models that failed before.
pub(crate) async fn with_fallbacks<T, F, Fut>(
    ctx: &Ctx,
    model: &str,
    mut call: F,
) -> Result<(T, String, Vec<String>), ApiError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let candidates = chain(&ctx.rt, model);
    let mut last = None;
    for (i, cand) in candidates.iter().enumerate() {
        match call(cand.clone()).await {
            Ok(t) => return Ok((t, cand.clone(), candidates[..i].to_vec())),
            Err(e) if worth_falling_back(&e) && i + 1 < candidates.len() => {
                let next = &candidates[i + 1];
                tracing::warn!(model = %cand, next = %next, error = %e.message, "falling back");
                crate::metrics::fallback(cand, next);
                ctx.acct.with(|r| {
                    r.reasons.push(format!(
                        "`{cand}` failed ({}); fell back to `{next}`",
                        e.message
                    ))
                });
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::internal("no model to call")))
}

/// Call `model` (then its fallbacks), non-streaming. Returns the answer and who gave it.
async fn run_full(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
    route: &str,
    extra: Option<serde_json::Value>,
) -> Result<(ChatCompletion, String), ApiError> {
    let (mut c, cand, failed) =
        with_fallbacks(ctx, model, |m| async move { call_full(ctx, &m, req).await }).await?;
    ctx.acct
        .answered(&cand, c.usage.prompt_tokens, c.usage.completion_tokens);
    let mut meta = serde_json::json!({"route": route, "model": cand});
    if !failed.is_empty() {
        meta["fallback_from"] = serde_json::json!(failed);
    }
    if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (&extra, meta.as_object_mut()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    c.tandem = Some(meta);
    Ok((c, cand))
}

/// Call `model` (then its fallbacks before the first byte), streaming.
async fn run_stream(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<(mpsc::Receiver<SsePayload>, String), ApiError> {
    let (rx, cand, _) = with_fallbacks(
        ctx,
        model,
        |m| async move { start_stream(ctx, &m, req).await },
    )
    .await?;
    Ok((rx, cand))
}

async fn start_stream(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<mpsc::Receiver<SsePayload>, ApiError> {
    if let Some(remote) = ctx.rt.remotes.get(model) {
        let (out, masker) = outbound(ctx, req)?;
        ctx.acct.called(model);
        let us = remote
            .upstream
            .chat_stream(&out)
            .await
            .map_err(|e| provider_error(model, &e))?;
        ctx.acct.with(|r| r.sent_out = Some(us.sent.clone()));
        Ok(forward_remote(
            us.stream,
            model.to_string(),
            req.include_usage,
            masker,
            ctx.acct.clone(),
        ))
    } else {
        let engine = ctx.state.chat_engine(model)?;
        ctx.acct.called(model);
        let acct = ctx.acct.clone();
        let name = model.to_string();
        let grammar = wants_grammar(req);
        let on_done: pipeline::OnDone = Box::new(move |o: StreamOutcome| {
            acct.call(&name, o.prompt_tokens, o.completion_tokens);
            acct.answered(&name, o.prompt_tokens, o.completion_tokens);
            let called = !o.tool_calls.is_empty();
            acct.output(o.tool_calls, grammar || called);
            let status = if o.error.is_some() {
                500
            } else if o.cancelled {
                499
            } else {
                200
            };
            acct.finish(status, o.error, o.ttft_ms);
        });
        pipeline::chat_stream(engine, req, &ctx.state.fingerprint, Some(on_done))
    }
}

/// Relay an upstream stream to the client: rename the model, restore masked values (also
/// when a placeholder is split across chunks), keep the usage chunk only if the client asked
/// for it, account at the end, and end with an error event if the upstream fails.
fn forward_remote(
    mut stream: futures::stream::BoxStream<'static, Result<ChatCompletionChunk, ProviderError>>,
    model: String,
    include_usage: bool,
    masker: Option<Masker>,
    acct: Acct,
) -> mpsc::Receiver<SsePayload> {
    let (tx, rx) = mpsc::channel::<SsePayload>(256);
    let start = acct.start;
    tokio::spawn(async move {
        let mut restorers: HashMap<u32, StreamRestorer> = HashMap::new();
        let mut arg_restorers: ArgRestorers = HashMap::new();
        let mut usage: Option<Usage> = None;
        let mut chars = 0usize;
        let mut ttft = None;
        let mut names: Vec<String> = Vec::new();
        let finish_call = |usage: Option<Usage>, chars: usize, names: Vec<String>| {
            let u = usage.unwrap_or_else(|| Usage::new(0, (chars / 4) as u32));
            acct.call(&model, u.prompt_tokens, u.completion_tokens);
            acct.answered(&model, u.prompt_tokens, u.completion_tokens);
            acct.output(names, false);
        };
        loop {
            let item = tokio::select! {
                _ = tx.closed() => {
                    finish_call(usage, chars, std::mem::take(&mut names));
                    acct.finish(499, Some("client disconnected".into()), ttft);
                    return;
                }
                item = stream.next() => item,
            };
            let Some(item) = item else { break };
            match item {
                Ok(mut chunk) => {
                    if let Some(u) = chunk.usage {
                        usage = Some(u);
                        if !include_usage {
                            if chunk.choices.is_empty() {
                                continue;
                            }
                            chunk.usage = None;
                        }
                    }
                    chunk.model = model.clone();
                    for ch in &mut chunk.choices {
                        if let Some(m) = &masker {
                            let r = restorers
                                .entry(ch.index)
                                .or_insert_with(|| m.stream_restorer());
                            let mut text = match ch.delta.content.take() {
                                Some(c) => r.push(&c),
                                None => String::new(),
                            };
                            if ch.finish_reason.is_some() {
                                text.push_str(&r.finish());
                            }
                            if !text.is_empty() || ch.delta.role.is_some() {
                                ch.delta.content = Some(text);
                            }
                            restore_call_args(m, &mut arg_restorers, ch);
                        }
                        if ch.index == 0 {
                            names.extend(
                                ch.delta
                                    .tool_calls
                                    .iter()
                                    .flatten()
                                    .filter_map(|d| d.function.as_ref()?.name.clone()),
                            );
                        }
                        if let Some(c) = &ch.delta.content {
                            chars += c.len();
                            if ttft.is_none() && !c.is_empty() {
                                ttft = Some(start.elapsed().as_secs_f64() * 1000.0);
                            }
                        }
                    }
                    let payload = serde_json::to_string(&chunk).unwrap_or_default();
                    if tx.send(payload).await.is_err() {
                        finish_call(usage, chars, std::mem::take(&mut names));
                        acct.finish(499, Some("client disconnected".into()), ttft);
                        return;
                    }
                }
                Err(e) => {
                    let api = provider_error(&model, &e);
                    let _ = tx.send(error_payload(&api)).await;
                    finish_call(usage, chars, std::mem::take(&mut names));
                    acct.finish(api.status(), Some(api.message), ttft);
                    return;
                }
            }
        }
        let _ = tx.send("[DONE]".to_string()).await;
        finish_call(usage, chars, std::mem::take(&mut names));
        acct.finish(200, None, ttft);
    });
    rx
}

/// One restorer per (choice, call) of a stream.
type ArgRestorers = HashMap<(u32, u32), StreamRestorer>;

/// Restore masked values in a streamed chunk's tool-call argument fragments (a placeholder
/// may be split across fragments: the restorer holds back a possible start); at the
/// choice's end, the held-back tails are sent as last fragments of their calls.
fn restore_call_args(m: &Masker, restorers: &mut ArgRestorers, ch: &mut ChunkChoice) {
    use tandem_types::tools::{FunctionCallDelta, ToolCallDelta};
    for d in ch.delta.tool_calls.iter_mut().flatten() {
        let r = restorers
            .entry((ch.index, d.index))
            .or_insert_with(|| m.stream_restorer());
        if let Some(f) = d.function.as_mut()
            && let Some(a) = f.arguments.take()
        {
            f.arguments = Some(r.push(&a));
        }
    }
    if ch.finish_reason.is_none() {
        return;
    }
    let mut tails: Vec<ToolCallDelta> = restorers
        .iter_mut()
        .filter(|((c, _), _)| *c == ch.index)
        .filter_map(|((_, call), r)| {
            let tail = r.finish();
            (!tail.is_empty()).then(|| ToolCallDelta {
                index: *call,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(tail),
                }),
                ..ToolCallDelta::default()
            })
        })
        .collect();
    tails.sort_by_key(|d| d.index);
    if !tails.is_empty() {
        ch.delta
            .tool_calls
            .get_or_insert_with(Vec::new)
            .extend(tails);
    }
}

/// Turn a finished completion into the SSE payloads of a stream.
fn completion_as_stream(c: &ChatCompletion, include_usage: bool) -> mpsc::Receiver<SsePayload> {
    completion_as_stream_with(c, include_usage, None)
}

/// As [`completion_as_stream`], with a last event (before `[DONE]`) that carries `tandem`
/// metadata, e.g. a RAG answer's citations: a chunk with no choices and a `tandem` field.
fn completion_as_stream_with(
    c: &ChatCompletion,
    include_usage: bool,
    tandem: Option<serde_json::Value>,
) -> mpsc::Receiver<SsePayload> {
    let base = ChatCompletionChunk {
        id: c.id.clone(),
        object: "chat.completion.chunk".into(),
        created: c.created,
        model: c.model.clone(),
        system_fingerprint: c.system_fingerprint.clone(),
        choices: Vec::new(),
        usage: None,
    };
    let mut out = Vec::new();
    for ch in &c.choices {
        let mut k = base.clone();
        k.choices.push(ChunkChoice {
            index: ch.index,
            delta: ChunkDelta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                tool_calls: None,
            },
            logprobs: None,
            finish_reason: None,
        });
        out.push(k);
        let mut k = base.clone();
        k.choices.push(ChunkChoice {
            index: ch.index,
            delta: ChunkDelta {
                role: None,
                content: Some(ch.message.content.clone()),
                tool_calls: (!ch.message.tool_calls.is_empty()).then(|| {
                    ch.message
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(i, t)| tandem_types::tools::ToolCallDelta {
                            index: i as u32,
                            id: Some(t.id.clone()),
                            kind: Some("function".into()),
                            function: Some(tandem_types::tools::FunctionCallDelta {
                                name: Some(t.function.name.clone()),
                                arguments: Some(t.function.arguments.clone()),
                            }),
                        })
                        .collect()
                }),
            },
            logprobs: ch.logprobs.clone(),
            finish_reason: None,
        });
        out.push(k);
        let mut k = base.clone();
        k.choices.push(ChunkChoice {
            index: ch.index,
            delta: ChunkDelta::default(),
            logprobs: None,
            finish_reason: ch.finish_reason.clone(),
        });
        out.push(k);
    }
    if include_usage {
        let mut k = base.clone();
        k.usage = Some(c.usage);
        out.push(k);
    }
    let mut payloads: Vec<String> = out
        .iter()
        .map(|k| serde_json::to_string(k).unwrap_or_default())
        .collect();
    if let Some(t) = tandem
        && let Ok(serde_json::Value::Object(mut obj)) = serde_json::to_value(&base)
    {
        obj.insert("tandem".into(), t);
        payloads.push(serde_json::Value::Object(obj).to_string());
    }
    let (tx, rx) = mpsc::channel(payloads.len() + 2);
    for k in payloads {
        let _ = tx.try_send(k);
    }
    let _ = tx.try_send("[DONE]".to_string());
    rx
}

/// Keep only the log-probabilities the client asked for.
fn trim_logprobs(c: &mut ChatCompletion, req: &ChatRequest) {
    for ch in &mut c.choices {
        if !req.logprobs {
            ch.logprobs = None;
        } else if let Some(lp) = &mut ch.logprobs {
            for t in &mut lp.content {
                t.top_logprobs.truncate(req.top_logprobs as usize);
            }
        }
    }
}

fn token_scores(c: &ChatCompletion) -> Vec<TokenScore> {
    c.choices
        .iter()
        .filter_map(|ch| ch.logprobs.as_ref())
        .flat_map(|lp| lp.content.iter())
        .map(|t| TokenScore {
            logprob: t.logprob,
            top: t.top_logprobs.iter().map(|x| x.logprob).collect(),
        })
        .collect()
}

/// SLM first; return its answer when confident, else the LLM's.
async fn cascade(
    ctx: &Ctx,
    c: &Cascade,
    req: &ChatRequest,
    route: &str,
) -> Result<(Reply, String), ApiError> {
    let mut slm_req = req.clone();
    slm_req.stream = false;
    slm_req.logprobs = true;
    slm_req.top_logprobs = if c.thresholds.max_mean_entropy.is_some() {
        req.top_logprobs.max(5)
    } else {
        req.top_logprobs
    };
    if let Some(m) = c.slm_max_tokens {
        slm_req.max_tokens = Some(req.max_tokens.map_or(m, |x| x.min(m)));
    }
    let slm = call_full(ctx, &c.slm, &slm_req).await;
    let verdict: Option<Verdict> = match &slm {
        Ok(answer) => {
            let text: String = answer
                .choices
                .iter()
                .map(|ch| ch.message.content.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let mut v = judge(&text, &token_scores(answer), &c.thresholds);
            let faults: Vec<String> = answer
                .choices
                .iter()
                .flat_map(|ch| structure_faults(req, &ch.message))
                .collect();
            if !faults.is_empty() {
                // A malformed call or answer escalates whatever the log-probabilities say.
                if !v.escalate {
                    v.reasons.clear();
                }
                v.escalate = true;
                v.reasons.extend(faults);
            }
            Some(v)
        }
        Err(e) => {
            tracing::warn!(model = %c.slm, error = %e.message, "cascade SLM failed; escalating");
            None
        }
    };
    let escalate = verdict.as_ref().is_none_or(|v| v.escalate);
    let confidence = verdict.as_ref().map(|v| v.confidence.score);
    ctx.acct.with(|r| {
        r.escalated = escalate;
        r.confidence = confidence.map(f64::from);
        match &verdict {
            Some(v) => r
                .reasons
                .extend(v.reasons.iter().map(|x| format!("cascade: {x}"))),
            None => r.reasons.push("cascade: the SLM failed".into()),
        }
    });
    crate::metrics::cascade(route, escalate);
    let meta = serde_json::json!({
        "escalated": escalate,
        "confidence": confidence,
        "cascade_reasons": verdict.as_ref().map(|v| v.reasons.clone()),
    });
    if !escalate && let Ok(mut answer) = slm {
        ctx.acct.answered(
            &c.slm,
            answer.usage.prompt_tokens,
            answer.usage.completion_tokens,
        );
        trim_logprobs(&mut answer, req);
        let mut m = meta;
        m["route"] = serde_json::json!(route);
        m["model"] = serde_json::json!(c.slm);
        answer.tandem = Some(m);
        let reply = if req.stream {
            let rx = completion_as_stream(&answer, req.include_usage);
            ctx.acct.finish(200, None, None);
            Reply::Stream(rx)
        } else {
            Reply::Json(Box::new(answer))
        };
        return Ok((reply, c.slm.clone()));
    }
    if req.stream {
        run_stream(ctx, &c.llm, req)
            .await
            .map(|(rx, m)| (Reply::Stream(rx), m))
    } else {
        run_full(ctx, &c.llm, req, route, Some(meta))
            .await
            .map(|(c, m)| (Reply::Json(Box::new(c)), m))
    }
}

// ---------------------------------------------------------------------------------------------
// Explain
// ---------------------------------------------------------------------------------------------

/// The decision for a request, without generating.
pub async fn explain(
    state: &Arc<AppState>,
    req: &ChatRequest,
    meta: &RequestMeta,
) -> Result<(serde_json::Value, String, Option<String>, f64), ApiError> {
    let p = prepare(state, req, meta, true).await?;
    let overhead_ms = meta.start.elapsed().as_secs_f64() * 1000.0;
    let body = explanation(&p, req, overhead_ms);
    Ok((
        body,
        p.decision.route.clone(),
        p.decision.model.clone(),
        overhead_ms,
    ))
}

/// The explain document for a prepared request.
pub fn explanation(p: &Prepared, req: &ChatRequest, overhead_ms: f64) -> serde_json::Value {
    let d = &p.decision;
    let pii: Vec<serde_json::Value> = p
        .findings
        .iter()
        .enumerate()
        .flat_map(|(i, fs)| {
            fs.iter().map(move |f| {
                serde_json::json!({
                    "kind": f.kind.as_str(), "message_index": i,
                    "start": f.start, "end": f.end, "char_start": f.char_start, "char_end": f.char_end,
                })
            })
        })
        .collect();
    serde_json::json!({
        "object": "tandem.route.explanation",
        "requested_model": req.model,
        "route": d.route,
        "action": d.action,
        "model": d.model,
        "direct": d.direct,
        "category": p.category.as_ref().map(|c| serde_json::json!({
            "name": c.category, "score": c.score, "method": c.method, "matched": c.matched, "scores": c.scores,
        })),
        "prompt_tokens": p.prompt_tokens,
        "pii": pii,
        "pii_action": d.pii_action,
        "reasons": d.reasons,
        "rules": d.trace,
        "tenant": p.tenant,
        "api_key": p.key_name,
        "config_generation": p.rt.generation,
        "overhead_ms": overhead_ms,
    })
}
