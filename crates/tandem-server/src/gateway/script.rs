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
/// arguments. What a converter holds back goes out before anything that must follow it —
/// with the choice's finishing chunk, before its first tool call (text) or before the next
/// call's fragment (arguments), and as a chunk of its own before `[DONE]`, before an error
/// event or when the stream ends. The ledger record waits for this stage (`hold`).
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
            template: None,
        };
        'relay: loop {
            let payload = tokio::select! {
                _ = tx.closed() => break,
                p = rx.recv() => p,
            };
            let Some(payload) = payload else {
                if let Some(t) = state.tails() {
                    let _ = tx.send(t).await;
                }
                break;
            };
            for p in state.payload(payload) {
                if tx.send(p).await.is_err() {
                    break 'relay;
                }
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
    /// The last chunk seen: the id, model and time of a chunk made for held-back text.
    template: Option<Value>,
}

/// A fragment of call `call`'s arguments.
fn args_fragment(call: u64, text: String) -> Value {
    serde_json::json!({"index": call, "function": {"arguments": text}})
}

/// The converter of `key`, made on first use (None if the converter cannot load).
fn converter_for<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Converter>,
    key: K,
    format: Format,
) -> Option<&mut Converter> {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(e) => converter(format).map(|c| e.insert(c)),
    }
}

/// What the argument converters of choice `index` hold back (all calls but `except`), as
/// fragments of their calls.
fn arg_tails(
    args: &mut HashMap<(u64, u64), Converter>,
    index: u64,
    except: Option<u64>,
) -> Vec<Value> {
    args.iter_mut()
        .filter(|((i, k), _)| *i == index && Some(*k) != except)
        .filter_map(|((_, k), c)| {
            let tail = c.finish();
            (!tail.is_empty()).then(|| args_fragment(*k, tail))
        })
        .collect()
}

impl StreamState {
    /// The payloads to send for one from upstream.
    fn payload(&mut self, payload: SsePayload) -> Vec<SsePayload> {
        let chunk = (payload != "[DONE]")
            .then(|| serde_json::from_str::<Value>(&payload).ok())
            .flatten();
        let Some(mut chunk) = chunk.filter(|c| c.get("choices").is_some_and(Value::is_array))
        else {
            // `[DONE]` or an error event: what is held back goes first.
            return self.tails().into_iter().chain([payload]).collect();
        };
        if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
            for ch in choices {
                self.choice(ch);
            }
        }
        let out = serde_json::to_string(&chunk).unwrap_or(payload);
        self.template = Some(chunk);
        vec![out]
    }

    /// A chunk with everything still held back, if anything is.
    fn tails(&mut self) -> Option<SsePayload> {
        let mut choices: std::collections::BTreeMap<u64, (String, Vec<Value>)> =
            std::collections::BTreeMap::new();
        for (i, c) in &mut self.text {
            let t = c.finish();
            if !t.is_empty() {
                choices.entry(*i).or_default().0 = t;
            }
        }
        for ((i, call), c) in &mut self.args {
            let t = c.finish();
            if !t.is_empty() {
                choices
                    .entry(*i)
                    .or_default()
                    .1
                    .push(args_fragment(*call, t));
            }
        }
        if choices.is_empty() {
            return None;
        }
        let mut chunk = self.template.clone().unwrap_or_else(
            || serde_json::json!({"object": "chat.completion.chunk", "choices": []}),
        );
        chunk["usage"] = Value::Null;
        chunk["choices"] = choices
            .into_iter()
            .map(|(i, (text, calls))| {
                let mut delta = serde_json::Map::new();
                if !text.is_empty() {
                    delta.insert("content".into(), Value::String(text));
                }
                if !calls.is_empty() {
                    delta.insert("tool_calls".into(), Value::Array(calls));
                }
                serde_json::json!({"index": i, "delta": delta, "logprobs": null, "finish_reason": null})
            })
            .collect();
        serde_json::to_string(&chunk).ok()
    }

    fn choice(&mut self, ch: &mut Value) {
        let index = ch.get("index").and_then(Value::as_u64).unwrap_or(0);
        let finished = ch.get("finish_reason").is_some_and(|f| !f.is_null());
        let format = self.format;
        let Some(delta) = ch.get_mut("delta").and_then(Value::as_object_mut) else {
            return;
        };
        let calls_start = delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let mut text = delta.get("content").and_then(Value::as_str).map(|t| {
            converter_for(&mut self.text, index, format)
                .map_or_else(|| t.to_string(), |c| c.push(t))
        });
        // Text held back goes out before the choice's calls or its end.
        if (finished || calls_start)
            && let Some(c) = self.text.get_mut(&index)
        {
            let tail = c.finish();
            if !tail.is_empty() {
                text.get_or_insert_with(String::new).push_str(&tail);
            }
        }
        if let Some(t) = text {
            delta.insert("content".into(), Value::String(t));
        }
        if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
            let mut out = Vec::with_capacity(calls.len());
            for mut d in std::mem::take(calls) {
                let call = d.get("index").and_then(Value::as_u64).unwrap_or(0);
                // Another call's held-back arguments end before this one's fragment.
                out.extend(arg_tails(&mut self.args, index, Some(call)));
                if let Some(f) = d.get_mut("function").and_then(Value::as_object_mut)
                    && let Some(a) = f.get("arguments").and_then(Value::as_str)
                    && let Some(c) = converter_for(&mut self.args, (index, call), Format::Json)
                {
                    let pushed = c.push(a);
                    f.insert("arguments".into(), Value::String(pushed));
                }
                out.push(d);
            }
            *calls = out;
        }
        if finished {
            let tails = arg_tails(&mut self.args, index, None);
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
