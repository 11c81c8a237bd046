//! OpenAI Chat Completions wire mapping: request body, response and stream chunks.
//!
//! Responses are parsed leniently (missing `id`, `created`, `system_fingerprint`, `usage`,
//! `null` content are tolerated) because "OpenAI-compatible" servers differ in such details;
//! what cannot be understood (no `choices`, wrong types) is a protocol error.

use crate::config::UpstreamConfig;
use crate::sse::SseEvent;
use crate::stream::{Fault, status_for_error_type};
use crate::util::{error_body_message, f32_json, json_body, random_id, truncate, unix_now};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tandem_types::openai::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatRequest, ChoiceLogprobs, ChunkChoice,
    ChunkDelta, ResponseMessage, TokenLogprob, TopLogprob, Usage,
};
use tandem_types::tools::{ToolCall, ToolCallDelta};

/// The JSON body for `POST {base}/chat/completions`.
///
/// Only parameters that were set or differ from OpenAI's defaults are sent: `max_tokens`,
/// `temperature` (≠ 1), `top_p` (< 1), `n` (≠ 1), `stop`, `seed`, the penalties (≠ 0),
/// `logprobs`/`top_logprobs`, `logit_bias`. llama.cpp-only knobs (`top_k`, `min_p`,
/// `repeat_penalty`) are never sent. `developer` messages are sent as `system`, which every
/// compatible server understands (OpenAI maps it back for reasoning models). Streaming
/// requests always ask for `stream_options.include_usage`, so usage can be accounted.
pub(crate) fn build_body(cfg: &UpstreamConfig, req: &ChatRequest, stream: bool) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(cfg.model));
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            let mut o = json!({"role": role, "content": m.content});
            if let Some(name) = &m.name {
                o["name"] = json!(name);
            }
            if !m.tool_calls.is_empty() {
                o["tool_calls"] = json!(m.tool_calls);
                if m.content.is_empty() {
                    o["content"] = Value::Null;
                }
            }
            if let Some(id) = &m.tool_call_id {
                o["tool_call_id"] = json!(id);
            }
            o
        })
        .collect();
    b.insert("messages".into(), Value::Array(messages));
    if stream {
        b.insert("stream".into(), json!(true));
        b.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(mt) = req.max_tokens {
        b.insert("max_tokens".into(), json!(mt));
    }
    let s = &req.sampling;
    if s.temperature != 1.0 {
        b.insert("temperature".into(), f32_json(s.temperature));
    }
    if s.top_p < 1.0 {
        // The request parser turns `top_p: 0` into the smallest positive float.
        let p = if s.top_p <= f32::MIN_POSITIVE {
            0.0
        } else {
            s.top_p
        };
        b.insert("top_p".into(), f32_json(p));
    }
    if req.n != 1 {
        b.insert("n".into(), json!(req.n));
    }
    if !s.stop.is_empty() {
        b.insert("stop".into(), json!(s.stop));
    }
    if let Some(seed) = s.seed {
        // Negative seeds were stored as their two's-complement u64; send them back as given.
        b.insert("seed".into(), json!(seed as i64));
    }
    if s.frequency_penalty != 0.0 {
        b.insert("frequency_penalty".into(), f32_json(s.frequency_penalty));
    }
    if s.presence_penalty != 0.0 {
        b.insert("presence_penalty".into(), f32_json(s.presence_penalty));
    }
    if req.logprobs {
        b.insert("logprobs".into(), json!(true));
        if req.top_logprobs > 0 {
            b.insert("top_logprobs".into(), json!(req.top_logprobs));
        }
    }
    if !s.logit_bias.is_empty() {
        let bias: Map<String, Value> = s
            .logit_bias
            .iter()
            .map(|(id, x)| (id.to_string(), f32_json(*x)))
            .collect();
        b.insert("logit_bias".into(), Value::Object(bias));
    }
    if !req.tools.is_empty() {
        b.insert("tools".into(), json!(req.tools));
        b.insert("tool_choice".into(), req.tool_choice.to_value());
        if !req.parallel_tool_calls {
            b.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if req.response_format.is_structured() {
        b.insert("response_format".into(), req.response_format.to_value());
    }
    Value::Object(b)
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

impl WireUsage {
    fn to_usage(&self) -> Usage {
        Usage::new(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        )
    }
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u32>,
    message: WireMessage,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<Value>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_fingerprint: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<Value>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_fingerprint: Option<String>,
    #[serde(default)]
    choices: Option<Vec<WireChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireTop {
    token: String,
    logprob: f32,
    #[serde(default)]
    bytes: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct WireTokenLogprob {
    token: String,
    logprob: f32,
    #[serde(default)]
    bytes: Option<Vec<u8>>,
    #[serde(default)]
    top_logprobs: Option<Vec<WireTop>>,
}

#[derive(Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireTokenLogprob>>,
}

/// Chat-shaped logprobs, or `None` when absent or in a shape we do not understand (logprobs
/// are informational; a server's variant shape should not fail the request).
fn convert_logprobs(v: Option<Value>) -> Option<ChoiceLogprobs> {
    let lp: WireLogprobs = serde_json::from_value(v?).ok()?;
    let content = lp
        .content?
        .into_iter()
        .map(|t| TokenLogprob {
            bytes: t.bytes.unwrap_or_else(|| t.token.as_bytes().to_vec()),
            token: t.token,
            logprob: t.logprob,
            top_logprobs: t
                .top_logprobs
                .unwrap_or_default()
                .into_iter()
                .map(|a| TopLogprob {
                    bytes: a.bytes.unwrap_or_else(|| a.token.as_bytes().to_vec()),
                    token: a.token,
                    logprob: a.logprob,
                })
                .collect(),
        })
        .collect();
    Some(ChoiceLogprobs { content })
}

fn created_of(v: Option<&Value>) -> u64 {
    v.and_then(|c| c.as_u64().or_else(|| c.as_f64().map(|f| f as u64)))
        .filter(|c| *c > 0)
        .unwrap_or_else(unix_now)
}

/// Text of a message `content`: a string, or an array of `{type:"text", text}` parts.
fn content_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// An upstream error object in a 200 body or a stream event.
fn fault_of(v: &Value) -> Option<Fault> {
    let (message, ty) = error_body_message(v)?;
    let code = v
        .get("error")
        .and_then(|e| e.get("code"))
        .or_else(|| v.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let status = code.unwrap_or_else(|| status_for_error_type(ty.as_deref()));
    Some(Fault::Upstream { status, message })
}

/// Parse a non-streaming response body.
pub(crate) fn parse_completion(body: &[u8], cfg: &UpstreamConfig) -> Result<ChatCompletion, Fault> {
    let v = json_body(body, fault_of)?;
    let w: WireCompletion = serde_json::from_value(v)
        .map_err(|e| Fault::Protocol(format!("unexpected chat completion shape: {e}")))?;
    if w.choices.is_empty() {
        return Err(Fault::Protocol("response has no choices".into()));
    }
    let choices = w
        .choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut content = content_text(c.message.content);
            if content.is_empty()
                && let Some(r) = c.message.refusal
            {
                content = r;
            }
            ChatChoice {
                index: c.index.unwrap_or(i as u32),
                message: ResponseMessage {
                    role: "assistant".into(),
                    content,
                    tool_calls: c.message.tool_calls.unwrap_or_default(),
                },
                logprobs: convert_logprobs(c.logprobs),
                finish_reason: c.finish_reason,
            }
        })
        .collect();
    Ok(ChatCompletion {
        id: w.id.filter(|s| !s.is_empty()).unwrap_or_else(random_id),
        object: "chat.completion".into(),
        created: created_of(w.created.as_ref()),
        model: w
            .model
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cfg.model.clone()),
        system_fingerprint: w.system_fingerprint.unwrap_or_default(),
        choices,
        usage: w.usage.map(|u| u.to_usage()).unwrap_or_default(),
        tandem: None,
    })
}

/// Turns OpenAI `chat.completion.chunk` events into chunks, filling in what lenient servers
/// leave out. Ends at `data: [DONE]`. Chunks with neither choices nor usage (Azure's
/// `prompt_filter_results` preamble) are dropped.
pub(crate) struct StreamTranslator {
    fallback_id: String,
    fallback_model: String,
    created: u64,
}

impl StreamTranslator {
    pub(crate) fn new(cfg: &UpstreamConfig) -> Self {
        StreamTranslator {
            fallback_id: random_id(),
            fallback_model: cfg.model.clone(),
            created: unix_now(),
        }
    }

    /// Handle one event; `Ok(true)` at the end of the stream.
    pub(crate) fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<bool, Fault> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Fault::Protocol(format!(
                "stream event is not valid JSON ({e}): {}",
                truncate(data, 200)
            ))
        })?;
        if let Some(f) = fault_of(&v) {
            return Err(f);
        }
        if ev.event.as_deref() == Some("error") {
            return Err(Fault::Upstream {
                status: 500,
                message: truncate(data, 2000),
            });
        }
        let w: WireChunk = serde_json::from_value(v)
            .map_err(|e| Fault::Protocol(format!("unexpected chunk shape: {e}")))?;
        let choices: Vec<ChunkChoice> = w
            .choices
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let d = c.delta.unwrap_or_default();
                ChunkChoice {
                    index: c.index.unwrap_or(i as u32),
                    delta: ChunkDelta {
                        role: d.role,
                        content: d.content.or(d.refusal),
                        tool_calls: d.tool_calls,
                    },
                    logprobs: convert_logprobs(c.logprobs),
                    finish_reason: c.finish_reason,
                }
            })
            .collect();
        let usage = w.usage.map(|u| u.to_usage());
        if choices.is_empty() && usage.is_none() {
            return Ok(false);
        }
        if let Some(id) = w.id.filter(|s| !s.is_empty()) {
            self.fallback_id = id;
        }
        if let Some(m) = w.model.filter(|s| !s.is_empty()) {
            self.fallback_model = m;
        }
        out.push(ChatCompletionChunk {
            id: self.fallback_id.clone(),
            object: "chat.completion.chunk".into(),
            created: w
                .created
                .as_ref()
                .and_then(Value::as_u64)
                .filter(|c| *c > 0)
                .unwrap_or(self.created),
            model: self.fallback_model.clone(),
            system_fingerprint: w.system_fingerprint.unwrap_or_default(),
            choices,
            usage,
        });
        Ok(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use tandem_types::openai::{ChatMessage, SamplingParams};

    fn cfg() -> UpstreamConfig {
        UpstreamConfig::new("gpt", ProviderKind::OpenAi, "http://x/v1", "gpt-4o-mini")
    }

    fn req() -> ChatRequest {
        ChatRequest::new(
            "gpt",
            vec![
                ChatMessage {
                    role: "developer".into(),
                    content: "be brief".into(),
                    name: None,
                    ..Default::default()
                },
                ChatMessage {
                    role: "user".into(),
                    content: "hi".into(),
                    name: Some("ann".into()),
                    ..Default::default()
                },
            ],
        )
    }

    #[test]
    fn minimal_body_has_only_defaults_omitted() {
        let mut r = req();
        r.sampling.top_k = 40;
        r.sampling.min_p = 0.1;
        r.sampling.repeat_penalty = 1.3;
        let b = build_body(&cfg(), &r, false);
        assert_eq!(
            b,
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi", "name": "ann"}
            ]})
        );
    }

    #[test]
    fn full_body() {
        let mut r = req();
        r.max_tokens = Some(20);
        r.n = 2;
        r.logprobs = true;
        r.top_logprobs = 3;
        r.sampling = SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: Some(-5i64 as u64),
            frequency_penalty: 0.5,
            presence_penalty: -0.5,
            stop: vec!["END".into()],
            logit_bias: vec![(42, -100.0)],
            ..SamplingParams::default()
        };
        let b = build_body(&cfg(), &r, true);
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert_eq!(b["max_tokens"], json!(20));
        assert_eq!(b["n"], json!(2));
        assert_eq!(b["temperature"].to_string(), "0.7");
        assert_eq!(b["top_p"].to_string(), "0.9");
        assert_eq!(b["seed"], json!(-5));
        assert_eq!(b["frequency_penalty"].to_string(), "0.5");
        assert_eq!(b["presence_penalty"].to_string(), "-0.5");
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["logprobs"], json!(true));
        assert_eq!(b["top_logprobs"], json!(3));
        assert_eq!(b["logit_bias"], json!({"42": -100.0}));
        assert!(b.get("top_k").is_none());
    }

    #[test]
    fn top_p_zero_is_sent_as_zero() {
        let mut r = req();
        r.sampling.top_p = f32::MIN_POSITIVE;
        assert_eq!(build_body(&cfg(), &r, false)["top_p"].to_string(), "0.0");
    }

    #[test]
    fn lenient_completion() {
        let c = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"stop"}]}"#,
            &cfg(),
        )
        .unwrap();
        assert!(c.id.starts_with("chatcmpl-"));
        assert_eq!(c.model, "gpt-4o-mini");
        assert_eq!(c.choices[0].message.content, "no");
        assert_eq!(c.usage, Usage::default());
        assert!(c.created > 0);
    }

    #[test]
    fn completion_with_logprobs_and_usage() {
        let c = parse_completion(
            br#"{"id":"x","object":"chat.completion","created":5,"model":"gpt-4o-2024","system_fingerprint":null,
                "choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length",
                "logprobs":{"content":[{"token":"Hi","logprob":-0.1,"bytes":null,"top_logprobs":[{"token":"Hi","logprob":-0.1,"bytes":[72,105]}]}]}}],
                "usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            &cfg(),
        )
        .unwrap();
        assert_eq!(c.model, "gpt-4o-2024");
        assert_eq!(c.created, 5);
        assert_eq!(c.usage, Usage::new(3, 1));
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp.content[0].bytes, b"Hi".to_vec());
        assert_eq!(lp.content[0].top_logprobs[0].bytes, vec![72, 105]);
    }

    #[test]
    fn bad_completions() {
        assert!(matches!(
            parse_completion(b"{nope", &cfg()),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(
            parse_completion(br#"{"choices":[]}"#, &cfg()),
            Err(Fault::Protocol(_))
        ));
        assert!(matches!(
            parse_completion(br#"{"id":"x"}"#, &cfg()),
            Err(Fault::Protocol(_))
        ));
        assert_eq!(
            parse_completion(
                br#"{"error":{"message":"nope","type":"invalid_request_error"}}"#,
                &cfg()
            )
            .unwrap_err(),
            Fault::Upstream {
                status: 400,
                message: "nope".into()
            }
        );
    }

    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: s.into(),
        }
    }

    #[test]
    fn stream_translation() {
        let mut t = StreamTranslator::new(&cfg());
        let mut out = Vec::new();
        assert!(
            !t.on_event(
                &data(r#"{"id":"","choices":[],"prompt_filter_results":[]}"#),
                &mut out
            )
            .unwrap()
        );
        assert!(out.is_empty());
        t.on_event(
            &data(r#"{"id":"c1","model":"m2","created":7,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#),
            &mut out,
        )
        .unwrap();
        t.on_event(
            &data(r#"{"choices":[{"delta":{"content":"Hi"}}],"usage":null}"#),
            &mut out,
        )
        .unwrap();
        t.on_event(
            &data(r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#),
            &mut out,
        )
        .unwrap();
        assert!(t.on_event(&data("[DONE]"), &mut out).unwrap());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].delta_role(), Some("assistant"));
        assert_eq!(out[1].id, "c1");
        assert_eq!(out[1].model, "m2");
        assert_eq!(out[1].choices[0].delta.content.as_deref(), Some("Hi"));
        assert_eq!(out[2].usage, Some(Usage::new(2, 1)));
        assert!(out.iter().all(|c| c.object == "chat.completion.chunk"));
    }

    trait Role {
        fn delta_role(&self) -> Option<&str>;
    }
    impl Role for ChatCompletionChunk {
        fn delta_role(&self) -> Option<&str> {
            self.choices[0].delta.role.as_deref()
        }
    }

    #[test]
    fn stream_faults() {
        let mut t = StreamTranslator::new(&cfg());
        let mut out = Vec::new();
        assert!(matches!(
            t.on_event(&data("{not json"), &mut out),
            Err(Fault::Protocol(_))
        ));
        assert_eq!(
            t.on_event(
                &data(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
                &mut out
            ),
            Err(Fault::Upstream {
                status: 500,
                message: "overloaded".into()
            })
        );
        assert_eq!(
            t.on_event(
                &data(r#"{"object":"error","message":"bad","type":"BadRequestError","code":400}"#),
                &mut out
            ),
            Err(Fault::Upstream {
                status: 400,
                message: "bad".into()
            })
        );
        assert!(matches!(
            t.on_event(&data(r#"{"choices":"x"}"#), &mut out),
            Err(Fault::Protocol(_))
        ));
    }
}
