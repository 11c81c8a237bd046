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

mod acct;
mod backend;
mod call;
mod cascade;
mod decide;
mod remote;
mod replay;
mod script;

pub(crate) use acct::{Acct, AcctHold};
use backend::*;
use call::*;
pub(crate) use call::{call_full, with_fallbacks};
use cascade::*;
use decide::*;
pub use decide::{Prepared, explain, explanation, prepare, prepare_with};
use remote::*;
use replay::*;

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
// Serving a chat request
// ---------------------------------------------------------------------------------------------

/// Everything a call needs.
pub(crate) struct Ctx {
    pub(crate) state: Arc<AppState>,
    pub(crate) rt: Arc<Runtime>,
    findings: Vec<Vec<Finding>>,
    arg_findings: Vec<Vec<Vec<Finding>>>,
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
            arg_findings: scan_args(&self.rt, messages),
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
    let (mut findings, mut arg_findings) = (p.findings, p.arg_findings);
    let instructed;
    let req = match &d.answer_script {
        Some(s) => {
            instructed = script::instruct(&req, s, &mut findings, &mut arg_findings);
            &instructed
        }
        None => &req,
    };
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
        answer_script: d.answer_script.as_ref().map(|s| s.locale.to_string()),
        ..LedgerRecord::default()
    };
    let request_id = rec.id.clone();
    let acct = Acct::new(&state, &p.rt, rec, meta.start);
    // The conversion of a stream comes after its producer has finished the record.
    let hold = d.answer_script.as_ref().map(|_| acct.hold());
    let route = d.route.clone();
    let ctx = Ctx {
        state: state.clone(),
        rt: p.rt.clone(),
        remote_pii: d.remote_pii_action,
        findings,
        arg_findings,
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
                run_stream(&ctx, model, req)
                    .await
                    .map(|(rx, m)| (Reply::Stream(rx), m))
            } else {
                run_full(&ctx, model, req, &route, None)
                    .await
                    .map(|(c, m)| (Reply::Json(Box::new(c)), m))
            }
        }
        Action::Cascade(c) => cascade(&ctx, c, req, &route).await,
        Action::Rag(r) => {
            let override_mode = rag_request.as_ref().and_then(|(_, m)| *m);
            rag_reply(&ctx, d, r, override_mode, req, &route).await
        }
    };
    let result = match (result, hold) {
        (Ok((Reply::Json(mut c), m)), Some(hold)) => {
            let changed = script::convert_completion(&mut c, req);
            hold.acct().with(|r| r.script_converted = changed);
            Ok((Reply::Json(c), m))
        }
        (Ok((Reply::Stream(rx), m)), Some(hold)) => {
            Ok((Reply::Stream(script::convert_stream(rx, req, hold)), m))
        }
        (result, _) => result,
    };
    if let Some(ledger) = &state.ledger
        && result.is_ok()
        && p.rt.ledger_vectors()
    {
        record_vector(ledger, &p.rt, &request_id, req);
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
                acct.output(names, wants_grammar(req) || called);
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
