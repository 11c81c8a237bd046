//! The cascade: the SLM first, its answer kept when confident and well-formed, else the LLM.

use super::*;

/// SLM first; return its answer when confident, else the LLM's.
pub(super) async fn cascade(
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
