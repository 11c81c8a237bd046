//! Calling models: one model (through its [`Backend`](super::backend::Backend)), and the
//! fallback chain.

use super::*;

/// The models to try for `model`: itself, then its fallbacks.
pub(super) fn chain(rt: &Runtime, model: &str) -> Vec<String> {
    let mut v = vec![model.to_string()];
    if let Some(m) = rt.config.model(model) {
        v.extend(m.fallback.iter().cloned());
    }
    v
}

/// Failures worth trying the next model for (the upstream or engine, not the request).
pub(super) fn worth_falling_back(e: &ApiError) -> bool {
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

/// Call one model, non-streaming.
pub(crate) async fn call_full(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<ChatCompletion, ApiError> {
    let c = backend(ctx, model)?.complete(ctx, req).await?;
    ctx.acct
        .call(model, c.usage.prompt_tokens, c.usage.completion_tokens);
    Ok(c)
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
pub(super) async fn run_full(
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
pub(super) async fn run_stream(
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

/// Start streaming from one model.
pub(super) async fn start_stream(
    ctx: &Ctx,
    model: &str,
    req: &ChatRequest,
) -> Result<mpsc::Receiver<SsePayload>, ApiError> {
    backend(ctx, model)?.stream(ctx, req).await
}
