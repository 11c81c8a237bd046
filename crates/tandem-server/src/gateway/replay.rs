//! Finished completions replayed as streams; the cascade's view of an answer's tokens.

use super::*;

/// Turn a finished completion into the SSE payloads of a stream.
pub(super) fn completion_as_stream(
    c: &ChatCompletion,
    include_usage: bool,
) -> mpsc::Receiver<SsePayload> {
    completion_as_stream_with(c, include_usage, None)
}

/// As [`completion_as_stream`], with a last event (before `[DONE]`) that carries `tandem`
/// metadata, e.g. a RAG answer's citations: a chunk with no choices and a `tandem` field.
pub(super) fn completion_as_stream_with(
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
pub(super) fn trim_logprobs(c: &mut ChatCompletion, req: &ChatRequest) {
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

pub(super) fn token_scores(c: &ChatCompletion) -> Vec<TokenScore> {
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
