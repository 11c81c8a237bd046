//! Deciding: auth, PII scan, the policy's decision with its lazy facts; and explain.

use super::*;

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
    /// PII findings in the arguments of each message's calls (`[message][call]`).
    pub arg_findings: Vec<Vec<Vec<Finding>>>,
    /// API key name.
    pub key_name: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
}

pub(super) fn constant_time_eq(a: &str, b: &str) -> bool {
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
    let arg_findings = scan_args(&rt, &req.messages);
    let flat: Vec<Finding> = findings
        .iter()
        .flatten()
        .chain(arg_findings.iter().flatten().flatten())
        .cloned()
        .collect();
    let facts_in = DecideIn {
        requested: &req.model,
        messages: &req.messages,
        headers: &meta.headers,
        key: key_name.as_deref(),
        tenant: tenant.as_deref(),
        budget,
        pii: &flat,
        tools: if req.wants_tools() {
            req.tools.len()
        } else {
            0
        },
        structured: req.response_format.is_structured(),
        eager,
    };
    // The classifier and the tokenizer are CPU work of milliseconds: off the async workers.
    // A decision by rules alone runs here, on borrowed data.
    let out = if rt.needs_category || eager {
        let (rt2, requested, messages, headers) = (
            rt.clone(),
            req.model.clone(),
            req.messages.clone(),
            meta.headers.clone(),
        );
        let (key, tenant2, pii) = (key_name.clone(), tenant.clone(), flat.clone());
        let (tools, structured) = (facts_in.tools, facts_in.structured);
        tokio::task::spawn_blocking(move || {
            decide_now(
                &rt2,
                token_engine.as_ref(),
                &DecideIn {
                    requested: &requested,
                    messages: &messages,
                    headers: &headers,
                    key: key.as_deref(),
                    tenant: tenant2.as_deref(),
                    budget,
                    pii: &pii,
                    tools,
                    structured,
                    eager,
                },
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("routing task failed: {e}")))?
    } else {
        decide_now(&rt, token_engine.as_ref(), &facts_in)
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
        arg_findings,
        key_name,
        tenant,
    })
}

/// What the policy looks at, borrowed.
struct DecideIn<'a> {
    requested: &'a str,
    messages: &'a [tandem_types::openai::ChatMessage],
    headers: &'a [(String, String)],
    key: Option<&'a str>,
    tenant: Option<&'a str>,
    budget: Option<f64>,
    pii: &'a [Finding],
    tools: usize,
    structured: bool,
    eager: bool,
}

type Decided = (Decision, Option<Classification>, Option<usize>);

/// The policy's decision, with the facts (category, prompt tokens) computed lazily.
fn decide_now(
    rt: &Runtime,
    token_engine: Option<&tandem_engine::Engine>,
    d: &DecideIn<'_>,
) -> Result<Decided, RouteError> {
    let count = || match token_engine {
        Some(e) => e
            .chat_prompt(d.messages)
            .map(|t| t.len())
            .unwrap_or_else(|_| estimate_tokens(d.messages)),
        None => estimate_tokens(d.messages),
    };
    let classify = || rt.classifier.classify(last_user(d.messages)).ok();
    let router = || rt.slm_win_probability(last_user(d.messages));
    let facts = Facts::new(&count, &classify).with_router(&router);
    let rr = RouteRequest {
        requested_model: d.requested,
        messages: d.messages,
        headers: d.headers,
        api_key: d.key,
        tenant: d.tenant,
        latency_budget_ms: d.budget,
        pii: d.pii,
        tools: d.tools,
        structured_output: d.structured,
    };
    let decision = rt.config.decide(&rr, &facts);
    if d.eager {
        facts.category();
        facts.prompt_tokens();
    }
    decision.map(|dec| {
        (
            dec,
            facts.category_if_computed().cloned(),
            facts.tokens_if_computed(),
        )
    })
}

pub(super) fn estimate_tokens(messages: &[tandem_types::openai::ChatMessage]) -> usize {
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

pub(super) fn reject_error(message: &str, status: u16) -> ApiError {
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
        "answer_script": d.answer_script.as_ref().map(|s| serde_json::json!({
            "locale": s.locale, "why": s.why, "instruction": s.instruction(),
        })),
        "reasons": d.reasons,
        "rules": d.trace,
        "tenant": p.tenant,
        "api_key": p.key_name,
        "config_generation": p.rt.generation,
        "overhead_ms": overhead_ms,
    })
}
