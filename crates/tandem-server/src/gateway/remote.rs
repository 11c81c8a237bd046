//! What leaves the machine and what comes back: PII masking out, restoring in answers and streams (also in tool-call arguments), provider errors.

use super::*;

/// PII in the arguments of each message's calls (`[message][call]`): the history's calls
/// carry data too (their results are messages, scanned as such).
pub(super) fn scan_args(
    rt: &Runtime,
    messages: &[tandem_types::openai::ChatMessage],
) -> Vec<Vec<Vec<Finding>>> {
    messages
        .iter()
        .map(|m| {
            m.tool_calls
                .iter()
                .map(|c| rt.detector.detect(&c.function.arguments))
                .collect()
        })
        .collect()
}

/// The request as it may leave the machine, and the masker to restore the answer.
pub(super) fn outbound<'r>(
    ctx: &Ctx,
    req: &'r ChatRequest,
) -> Result<(std::borrow::Cow<'r, ChatRequest>, Option<Masker>), ApiError> {
    use std::borrow::Cow;
    let arg_findings = &ctx.arg_findings;
    if ctx.findings.iter().all(Vec::is_empty) && arg_findings.iter().flatten().all(Vec::is_empty) {
        return Ok((Cow::Borrowed(req), None));
    }
    match ctx.remote_pii {
        PiiAction::Allow => Ok((Cow::Borrowed(req), None)),
        PiiAction::Mask => {
            let mut masker = Masker::new();
            let mut out = req.clone();
            for ((m, f), args) in out.messages.iter_mut().zip(&ctx.findings).zip(arg_findings) {
                if !f.is_empty() {
                    m.content = masker.mask(&m.content, f);
                }
                for (c, f) in m.tool_calls.iter_mut().zip(args) {
                    if !f.is_empty() {
                        c.function.arguments = masker.mask(&c.function.arguments, f);
                    }
                }
            }
            Ok((Cow::Owned(out), Some(masker)))
        }
        PiiAction::ForceLocal | PiiAction::Block => Err(ApiError::invalid(
            "messages",
            "The request contains personal data that the policy does not allow to leave this machine.",
        )
        .with_code("pii_must_stay_local")),
    }
}

pub(super) fn provider_error(model: &str, e: &ProviderError) -> ApiError {
    crate::metrics::upstream_error(model, e);
    e.to_api_error()
}

/// Relay an upstream stream to the client: rename the model, restore masked values (also
/// when a placeholder is split across chunks), keep the usage chunk only if the client asked
/// for it, account at the end, and end with an error event if the upstream fails.
pub(super) fn forward_remote(
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
pub(super) type ArgRestorers = HashMap<(u32, u32), StreamRestorer>;

/// Restore masked values in a streamed chunk's tool-call argument fragments (a placeholder
/// may be split across fragments: the restorer holds back a possible start); at the
/// choice's end, the held-back tails are sent as last fragments of their calls.
pub(super) fn restore_call_args(m: &Masker, restorers: &mut ArgRestorers, ch: &mut ChunkChoice) {
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
