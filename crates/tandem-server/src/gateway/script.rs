//! The script of the answer (`answer_script`): tell the model which script and locale to
//! write, then convert what still comes back in Simplified characters — in a completion and
//! in a stream, in text and in tool-call arguments and JSON answers (string values only) —
//! whoever answered (local, remote, cascade, RAG). The ledger records the target and whether
//! anything was converted.

use super::*;
use serde_json::Value;
use tandem_policy::AnswerScript;
use tandem_zh::{Converter, Format};

/// The request with the instruction added to its system message (or a new one first), and
/// the PII findings re-indexed to match.
pub(super) fn instruct(
    req: &ChatRequest,
    s: &AnswerScript,
    findings: &mut Vec<Vec<Finding>>,
    arg_findings: &mut Vec<Vec<Vec<Finding>>>,
) -> ChatRequest {
    let mut out = req.clone();
    match out.messages.first_mut() {
        Some(m) if m.role == "system" || m.role == "developer" => {
            // Appended: the findings' offsets in the original text stay valid.
            m.content.push_str("\n\n");
            m.content.push_str(s.instruction());
        }
        _ => {
            out.messages.insert(
                0,
                tandem_types::openai::ChatMessage {
                    role: "system".into(),
                    content: s.instruction().into(),
                    ..Default::default()
                },
            );
            findings.insert(0, Vec::new());
            arg_findings.insert(0, Vec::new());
        }
    }
    out
}

/// Whether the answer's text is JSON (a JSON-object or JSON-schema format).
fn text_format(req: &ChatRequest) -> Format {
    if req.response_format.is_structured() {
        Format::Json
    } else {
        Format::Prose
    }
}

fn converter(format: Format) -> Option<Converter> {
    match Converter::new(format) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!("{e}; answers are not converted");
            None
        }
    }
}

/// Converts a finished completion in place; whether anything changed.
pub(super) fn convert_completion(c: &mut ChatCompletion, req: &ChatRequest) -> bool {
    let mut changed = false;
    let mut one = |text: &mut String, format: Format| {
        if !tandem_zh::has_simplified(text) {
            return;
        }
        if let Ok((out, ch)) = tandem_zh::convert(text, format) {
            *text = out;
            changed |= ch;
        }
    };
    for ch in &mut c.choices {
        one(&mut ch.message.content, text_format(req));
        for call in &mut ch.message.tool_calls {
            one(&mut call.function.arguments, Format::Json);
        }
    }
    changed
}

/// Converts a stream of chunk payloads: one converter per choice's text and per call's
/// arguments; what a converter holds back goes out with the choice's finishing chunk (or
/// before an error event). The ledger record waits for this stage (`hold`).
pub(super) fn convert_stream(
    mut rx: mpsc::Receiver<SsePayload>,
    req: &ChatRequest,
    hold: AcctHold,
) -> mpsc::Receiver<SsePayload> {
    let (tx, out) = mpsc::channel::<SsePayload>(256);
    let format = text_format(req);
    tokio::spawn(async move {
        let mut state = StreamState {
            format,
            text: HashMap::new(),
            args: HashMap::new(),
        };
        loop {
            let payload = tokio::select! {
                _ = tx.closed() => break,
                p = rx.recv() => p,
            };
            let Some(payload) = payload else { break };
            let payload = state.payload(payload);
            if tx.send(payload).await.is_err() {
                break;
            }
        }
        let converted = state
            .text
            .values()
            .chain(state.args.values())
            .any(|c| c.converted() > 0);
        hold.acct().with(|r| r.script_converted = converted);
    });
    out
}

struct StreamState {
    format: Format,
    text: HashMap<u64, Converter>,
    args: HashMap<(u64, u64), Converter>,
}

impl StreamState {
    fn payload(&mut self, payload: SsePayload) -> SsePayload {
        if payload == "[DONE]" {
            return payload;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&payload) else {
            return payload;
        };
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            // An error event: what is held back is lost with the stream (at most HOLD_MAX
            // characters per choice).
            return payload;
        };
        for ch in choices {
            self.choice(ch);
        }
        serde_json::to_string(&chunk).unwrap_or(payload)
    }

    fn choice(&mut self, ch: &mut Value) {
        let index = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
        let finished = ch.get("finish_reason").is_some_and(|f| !f.is_null());
        let format = self.format;
        let Some(delta) = ch.get_mut("delta").and_then(Value::as_object_mut) else {
            return;
        };
        let text = match delta.get("content").and_then(Value::as_str) {
            Some(t) => match self.text.get_mut(&index) {
                Some(c) => Some(c.push(t)),
                None => {
                    let mut c = converter(format);
                    let out = c.as_mut().map(|c| c.push(t));
                    if let Some(c) = c {
                        self.text.insert(index, c);
                    }
                    out.or_else(|| Some(t.to_string()))
                }
            },
            None => None,
        };
        let mut text = text;
        if finished && let Some(c) = self.text.get_mut(&index) {
            let tail = c.finish();
            if !tail.is_empty() {
                text.get_or_insert_with(String::new).push_str(&tail);
            }
        }
        if let Some(t) = text {
            delta.insert("content".into(), Value::String(t));
        }
        if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for d in calls.iter_mut() {
                let call = d.get("index").and_then(Value::as_u64).unwrap_or(0);
                let Some(f) = d.get_mut("function").and_then(Value::as_object_mut) else {
                    continue;
                };
                let Some(a) = f.get("arguments").and_then(Value::as_str) else {
                    continue;
                };
                let c = match self.args.entry((index, call)) {
                    std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        converter(Format::Json).map(|c| e.insert(c))
                    }
                };
                if let Some(c) = c {
                    let pushed = c.push(a);
                    f.insert("arguments".into(), Value::String(pushed));
                }
            }
        }
        if finished {
            let mut tails = Vec::new();
            for ((_, call), conv) in self.args.iter_mut().filter(|((c, _), _)| *c == index) {
                let tail = conv.finish();
                if !tail.is_empty() {
                    tails.push(serde_json::json!({
                        "index": call,
                        "function": {"arguments": tail}
                    }));
                }
            }
            if !tails.is_empty() {
                let calls = delta
                    .entry("tool_calls")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(a) = calls.as_array_mut() {
                    a.extend(tails);
                }
            }
        }
    }
}
