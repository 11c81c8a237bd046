//! Anthropic Messages API wire mapping.
//!
//! # Request
//! * `system` and `developer` messages are joined (blank line between) into the top-level
//!   `system` string, wherever they appear in the conversation.
//! * An assistant message's `tool_calls` become `tool_use` blocks (arguments parsed into
//!   `input`); a `tool` message with a `tool_call_id` becomes a `tool_result` block of a user
//!   turn (results first in the turn, as Anthropic requires); one without is user text.
//! * Empty messages are dropped and consecutive messages of the same role are merged (text
//!   joined by a blank line; a turn that is only text is sent as a string), since Anthropic
//!   requires alternating roles.
//! * `tools` → `name`, `description`, `input_schema`; `tool_choice` `none` / `auto` /
//!   `required` / a function → `none` / `auto` / `any` / `tool`; `parallel_tool_calls: false`
//!   → `disable_parallel_tool_use`.
//! * A structured output (`response_format` JSON object or schema) is asked for as a forced
//!   call of the tool [`JSON_TOOL`] whose `input_schema` is the schema; its input comes back
//!   as the answer's text (finish `stop`). It cannot be combined with other tools (refused).
//! * If the conversation would start with `assistant` (or has no user/assistant message at
//!   all), a user message [`CONTINUE_PROMPT`] is put first, since Anthropic requires the
//!   first message to be from the user.
//! * A final `assistant` message is a prefill; its trailing whitespace is removed, which
//!   Anthropic requires.
//! * `max_tokens` is the request's or [`crate::UpstreamConfig::anthropic_max_tokens`];
//!   `temperature` (if ≠ 1) is clamped to [0, 1]; `top_p` (if < 1), `top_k` (if > 0) and
//!   `stop` (as `stop_sequences`) are passed on. `seed`, penalties and `logit_bias` have no
//!   Anthropic equivalent and are dropped; `n > 1` and `logprobs` are refused with
//!   [`crate::ProviderError::Unsupported`], since the response could not honour them.
//!
//! # Response
//! Text blocks are concatenated; `tool_use` blocks become `tool_calls` (streamed:
//! `content_block_start` of a tool_use opens a call delta with id and name, each
//! `input_json_delta` is an arguments fragment); thinking blocks are ignored; `stop_reason` `end_turn`,
//! `stop_sequence`, `pause_turn` → `stop`, `max_tokens`, `model_context_window_exceeded` →
//! `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`. `prompt_tokens` is
//! `input_tokens` plus the cache-creation and cache-read input tokens (as OpenAI counts
//! cached tokens in the prompt).

use crate::config::UpstreamConfig;
use crate::error::ProviderError;
use crate::sse::SseEvent;
use crate::stream::{Fault, status_for_error_type};
use crate::util::{error_body_message, f32_json, json_body, random_id, truncate, unix_now};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tandem_types::openai::{
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatRequest, ChunkChoice, ChunkDelta,
    ResponseMessage, Usage,
};
use tandem_types::tools::{FunctionCallDelta, ResponseFormat, ToolCall, ToolCallDelta, ToolChoice};

/// The user message put first when a conversation would otherwise start with the assistant.
pub const CONTINUE_PROMPT: &str = "(continue)";

/// The `anthropic-version` header sent unless configured otherwise.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The JSON body for `POST …/v1/messages`; see the module docs for the mapping.
pub(crate) fn build_body(
    cfg: &UpstreamConfig,
    req: &ChatRequest,
    stream: bool,
) -> Result<Value, ProviderError> {
    let unsupported = |param: &'static str, message: &str| ProviderError::Unsupported {
        upstream: cfg.name.clone(),
        param,
        message: message.to_string(),
    };
    if req.n > 1 {
        return Err(unsupported(
            "n",
            "Anthropic generates one choice per request.",
        ));
    }
    if req.logprobs {
        return Err(unsupported(
            "logprobs",
            "Anthropic does not return log-probabilities.",
        ));
    }
    if json_tool(req) && !req.tools.is_empty() {
        return Err(unsupported(
            "response_format",
            "Anthropic upstreams get structured outputs as a forced tool call, which cannot be combined with other tools.",
        ));
    }
    let mut system: Vec<&str> = Vec::new();
    let mut msgs: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let mut blocks: Vec<Value> = Vec::new();
        let role = match m.role.as_str() {
            "system" | "developer" => {
                if !m.content.trim().is_empty() {
                    system.push(&m.content);
                }
                continue;
            }
            "assistant" => "assistant",
            _ => "user",
        };
        match (m.role.as_str(), &m.tool_call_id) {
            ("tool", Some(id)) => blocks.push(json!({"type": "tool_result", "tool_use_id": id,
                "content": m.content})),
            _ if !m.content.trim().is_empty() => {
                blocks.push(json!({"type": "text", "text": m.content}))
            }
            _ => {}
        }
        for c in &m.tool_calls {
            let input = match serde_json::from_str::<Value>(&c.function.arguments) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({}),
            };
            blocks.push(
                json!({"type": "tool_use", "id": c.id, "name": c.function.name,
                "input": input}),
            );
        }
        if blocks.is_empty() {
            continue;
        }
        match msgs.last_mut() {
            Some((r, prev)) if *r == role => prev.extend(blocks),
            _ => msgs.push((role, blocks)),
        }
    }
    if msgs.first().is_none_or(|(r, _)| *r == "assistant") {
        msgs.insert(
            0,
            (
                "user",
                vec![json!({"type": "text", "text": CONTINUE_PROMPT})],
            ),
        );
    }
    // Anthropic wants tool results first in a user turn.
    for (role, blocks) in &mut msgs {
        if *role == "user" {
            blocks.sort_by_key(|b| b["type"] != "tool_result");
        }
    }
    if let Some((role, blocks)) = msgs.last_mut()
        && *role == "assistant"
        && let Some(Value::String(text)) = blocks.last_mut().and_then(|b| b.get_mut("text"))
    {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
    }
    let mut b = Map::new();
    b.insert("model".into(), json!(cfg.model));
    if !system.is_empty() {
        b.insert("system".into(), json!(system.join("\n\n")));
    }
    b.insert(
        "messages".into(),
        Value::Array(
            msgs.into_iter()
                .map(|(role, blocks)| json!({"role": role, "content": content_of(blocks)}))
                .collect(),
        ),
    );
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut o = Map::new();
                o.insert("name".into(), json!(t.function.name));
                if let Some(d) = &t.function.description {
                    o.insert("description".into(), json!(d));
                }
                o.insert("input_schema".into(), t.function.parameters.clone());
                Value::Object(o)
            })
            .collect();
        b.insert("tools".into(), Value::Array(tools));
        let mut choice = match &req.tool_choice {
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(n) => json!({"type": "tool", "name": n}),
        };
        if !req.parallel_tool_calls && req.tool_choice != ToolChoice::None {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        b.insert("tool_choice".into(), choice);
    } else if json_tool(req) {
        let schema = match &req.response_format {
            ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
            _ => json!({"type": "object"}),
        };
        b.insert(
            "tools".into(),
            json!([{"name": JSON_TOOL, "description": "Give the answer as this tool's input.",
                "input_schema": schema}]),
        );
        b.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": JSON_TOOL}),
        );
    }
    b.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(cfg.anthropic_max_tokens)),
    );
    if stream {
        b.insert("stream".into(), json!(true));
    }
    let s = &req.sampling;
    if s.temperature != 1.0 {
        b.insert(
            "temperature".into(),
            f32_json(s.temperature.clamp(0.0, 1.0)),
        );
    }
    if s.top_p < 1.0 {
        b.insert("top_p".into(), f32_json(s.top_p.max(0.0)));
    }
    if s.top_k > 0 {
        b.insert("top_k".into(), json!(s.top_k));
    }
    if !s.stop.is_empty() {
        b.insert("stop_sequences".into(), json!(s.stop));
    }
    if s.seed.is_some()
        || s.frequency_penalty != 0.0
        || s.presence_penalty != 0.0
        || !s.logit_bias.is_empty()
    {
        tracing::debug!(
            upstream = %cfg.name,
            "seed, penalties and logit_bias have no Anthropic equivalent; dropped"
        );
    }
    Ok(Value::Object(b))
}

/// The tool a structured output is asked for with (`tool_choice` forces it); its input is
/// the answer.
pub const JSON_TOOL: &str = "json_output";

/// Whether `req` asks for JSON, which an Anthropic upstream gives as a forced [`JSON_TOOL`]
/// call whose input becomes the answer's text.
pub(crate) fn json_tool(req: &ChatRequest) -> bool {
    req.response_format.is_structured()
}

/// A turn's content: a string when it is only text (joined by blank lines), else blocks.
fn content_of(blocks: Vec<Value>) -> Value {
    if blocks.iter().all(|b| b["type"] == "text") {
        let texts: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        Value::String(texts.join("\n\n"))
    } else {
        Value::Array(blocks)
    }
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Prompt tokens including cache writes and reads, if `input_tokens` is present.
    fn prompt_tokens(&self) -> Option<u32> {
        self.input_tokens.map(|i| {
            i.saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
        })
    }
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

fn fault_of(v: &Value) -> Option<Fault> {
    let (message, ty) = error_body_message(v)?;
    Some(Fault::Upstream {
        status: status_for_error_type(ty.as_deref()),
        message,
    })
}

/// Parse a non-streaming Messages response into a chat completion. With `json` (the
/// request asked for structured output, see [`json_tool`]) the forced tool's input is the
/// answer's text.
pub(crate) fn parse_message(
    body: &[u8],
    cfg: &UpstreamConfig,
    json: bool,
) -> Result<ChatCompletion, Fault> {
    let v = json_body(body, fault_of)?;
    let m: WireMessage = serde_json::from_value(v)
        .map_err(|e| Fault::Protocol(format!("unexpected message shape: {e}")))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in &m.content {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or("")),
            "tool_use" if json && b.name.as_deref() == Some(JSON_TOOL) => {
                text.push_str(&b.input.clone().unwrap_or_else(|| json!({})).to_string());
            }
            "tool_use" => calls.push(ToolCall::function(
                b.id.clone().unwrap_or_else(random_id),
                b.name.clone().unwrap_or_default(),
                b.input.clone().unwrap_or_else(|| json!({})).to_string(),
            )),
            _ => {}
        }
    }
    let mut finish = finish_reason(m.stop_reason.as_deref().unwrap_or(""));
    if json && finish == "tool_calls" {
        finish = "stop";
    }
    let mut message = ResponseMessage::text(text);
    message.tool_calls = calls;
    let usage = m.usage.unwrap_or_default();
    Ok(ChatCompletion {
        id: m.id.filter(|s| !s.is_empty()).unwrap_or_else(random_id),
        object: "chat.completion".into(),
        created: unix_now(),
        model: m
            .model
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cfg.model.clone()),
        system_fingerprint: String::new(),
        choices: vec![ChatChoice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: Some(finish.into()),
        }],
        usage: Usage::new(
            usage.prompt_tokens().unwrap_or(0),
            usage.output_tokens.unwrap_or(0),
        ),
        tandem: None,
    })
}

/// Turns Anthropic's named stream events into OpenAI chunks:
///
/// * `message_start` → the first chunk, `delta: {role: "assistant", content: ""}` (and the
///   id, model and input tokens are remembered);
/// * `content_block_start` / `content_block_delta` with text → `delta: {content}`;
/// * `message_delta` → remembers `stop_reason` and the output tokens;
/// * `message_stop` → a chunk with an empty delta and the `finish_reason`, then a usage chunk
///   (`choices: []`); the stream ends;
/// * `ping`, `content_block_stop`, non-text blocks and unknown events are ignored;
/// * `error` → an upstream fault.
pub(crate) struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u32,
    completion_tokens: u32,
    finish: Option<&'static str>,
    started: bool,
    /// Structured output: the forced tool's input is streamed as text.
    json: bool,
    /// Tool calls started so far; the open block's call index.
    calls: u32,
    open_call: Option<u32>,
}

impl StreamTranslator {
    pub(crate) fn new(cfg: &UpstreamConfig, json: bool) -> Self {
        StreamTranslator {
            id: random_id(),
            model: cfg.model.clone(),
            created: unix_now(),
            prompt_tokens: 0,
            completion_tokens: 0,
            finish: None,
            started: false,
            json,
            calls: 0,
            open_call: None,
        }
    }

    fn call_delta(&mut self, d: ToolCallDelta, out: &mut Vec<ChatCompletionChunk>) {
        self.start(out);
        let c = self.delta(
            ChunkDelta {
                tool_calls: Some(vec![d]),
                ..ChunkDelta::default()
            },
            None,
        );
        out.push(c);
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: String::new(),
            choices,
            usage,
        }
    }

    fn delta(&mut self, delta: ChunkDelta, finish: Option<&str>) -> ChatCompletionChunk {
        self.chunk(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish.map(str::to_string),
            }],
            None,
        )
    }

    fn start(&mut self, out: &mut Vec<ChatCompletionChunk>) {
        if !self.started {
            self.started = true;
            let c = self.delta(
                ChunkDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    tool_calls: None,
                },
                None,
            );
            out.push(c);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<ChatCompletionChunk>) {
        self.start(out);
        if !text.is_empty() {
            let c = self.delta(
                ChunkDelta {
                    role: None,
                    content: Some(text.to_string()),
                    tool_calls: None,
                },
                None,
            );
            out.push(c);
        }
    }

    fn usage(&mut self, u: Option<&Value>) {
        let Some(u) = u.and_then(|u| serde_json::from_value::<WireUsage>(u.clone()).ok()) else {
            return;
        };
        if let Some(p) = u.prompt_tokens() {
            self.prompt_tokens = p;
        }
        if let Some(o) = u.output_tokens {
            self.completion_tokens = o;
        }
    }

    /// Handle one event; `Ok(true)` at `message_stop`.
    pub(crate) fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<bool, Fault> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Fault::Protocol(format!(
                "stream event is not valid JSON ({e}): {}",
                truncate(data, 200)
            ))
        })?;
        let name = ev
            .event
            .clone()
            .or_else(|| v.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        match name.as_str() {
            "message_start" => {
                let msg = v.get("message").ok_or_else(|| {
                    Fault::Protocol("message_start event without a message".into())
                })?;
                if let Some(id) = msg
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    self.id = id.to_string();
                }
                if let Some(m) = msg
                    .get("model")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    self.model = m.to_string();
                }
                self.usage(msg.get("usage"));
                self.start(out);
            }
            "content_block_start" => {
                let block = v.get("content_block");
                let field = |k: &str| {
                    block
                        .and_then(|b| b.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                self.open_call = None;
                match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    Some("text") => self.text(&field("text"), out),
                    Some("tool_use") if self.json => self.start(out),
                    Some("tool_use") => {
                        let index = self.calls;
                        self.calls += 1;
                        self.open_call = Some(index);
                        self.call_delta(
                            ToolCallDelta {
                                index,
                                id: Some(field("id")),
                                kind: Some("function".into()),
                                function: Some(FunctionCallDelta {
                                    name: Some(field("name")),
                                    arguments: Some(String::new()),
                                }),
                            },
                            out,
                        );
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                let field = |k: &str, what: &str| {
                    delta
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| Fault::Protocol(format!("{what} without {k}")))
                };
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => self.text(&field("text", "text_delta")?, out),
                    Some("input_json_delta") => {
                        let part = field("partial_json", "input_json_delta")?;
                        if self.json {
                            self.text(&part, out);
                        } else if let Some(index) = self.open_call
                            && !part.is_empty()
                        {
                            self.call_delta(
                                ToolCallDelta {
                                    index,
                                    function: Some(FunctionCallDelta {
                                        name: None,
                                        arguments: Some(part),
                                    }),
                                    ..ToolCallDelta::default()
                                },
                                out,
                            );
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    let f = finish_reason(r);
                    self.finish = Some(if self.json && f == "tool_calls" {
                        "stop"
                    } else {
                        f
                    });
                }
                self.usage(v.get("usage"));
            }
            "message_stop" => {
                self.start(out);
                let finish = self.finish.unwrap_or("stop");
                let c = self.delta(ChunkDelta::default(), Some(finish));
                out.push(c);
                out.push(self.chunk(
                    Vec::new(),
                    Some(Usage::new(self.prompt_tokens, self.completion_tokens)),
                ));
                return Ok(true);
            }
            "error" => {
                return Err(fault_of(&v).unwrap_or_else(|| Fault::Upstream {
                    status: 500,
                    message: truncate(data, 2000),
                }));
            }
            _ => {}
        }
        Ok(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use tandem_types::openai::ChatMessage;

    fn cfg() -> UpstreamConfig {
        UpstreamConfig::new(
            "claude",
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
            "claude-x",
        )
    }

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            name: None,
            ..Default::default()
        }
    }

    fn req(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest::new("claude", messages)
    }

    #[test]
    fn messages_are_normalised() {
        let r = req(vec![
            msg("system", "S1"),
            msg("assistant", "A0"),
            msg("user", "U1"),
            msg("developer", "S2"),
            msg("user", "U2"),
            msg("tool", "T"),
            msg("assistant", ""),
            msg("assistant", "prefill  \n"),
        ]);
        let b = build_body(&cfg(), &r, false).unwrap();
        assert_eq!(
            b,
            json!({
                "model": "claude-x",
                "system": "S1\n\nS2",
                "messages": [
                    {"role": "user", "content": CONTINUE_PROMPT},
                    {"role": "assistant", "content": "A0"},
                    {"role": "user", "content": "U1\n\nU2\n\nT"},
                    {"role": "assistant", "content": "prefill"},
                ],
                "max_tokens": 1024,
            })
        );
    }

    #[test]
    fn only_system_gets_a_user_turn() {
        let b = build_body(&cfg(), &req(vec![msg("system", "S")]), true).unwrap();
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": CONTINUE_PROMPT}])
        );
        assert_eq!(b["stream"], json!(true));
    }

    #[test]
    fn sampling_mapping() {
        let mut r = req(vec![msg("user", "hi")]);
        r.max_tokens = Some(50);
        r.sampling.temperature = 1.6;
        r.sampling.top_p = 0.9;
        r.sampling.top_k = 40;
        r.sampling.stop = vec!["X".into()];
        r.sampling.seed = Some(3);
        r.sampling.frequency_penalty = 1.0;
        let b = build_body(&cfg(), &r, false).unwrap();
        assert_eq!(b["max_tokens"], json!(50));
        assert_eq!(b["temperature"].to_string(), "1.0");
        assert_eq!(b["top_p"].to_string(), "0.9");
        assert_eq!(b["top_k"], json!(40));
        assert_eq!(b["stop_sequences"], json!(["X"]));
        assert!(b.get("seed").is_none() && b.get("frequency_penalty").is_none());
        r.sampling.temperature = 0.3;
        let b = build_body(&cfg(), &r, false).unwrap();
        assert_eq!(b["temperature"].to_string(), "0.3");
    }

    #[test]
    fn unsupported_params() {
        let mut r = req(vec![msg("user", "hi")]);
        r.n = 2;
        assert!(matches!(
            build_body(&cfg(), &r, false),
            Err(ProviderError::Unsupported { param: "n", .. })
        ));
        r.n = 1;
        r.logprobs = true;
        let e = build_body(&cfg(), &r, false).unwrap_err();
        assert_eq!(e.to_api_error().status(), 400);
        assert_eq!(e.to_api_error().param.as_deref(), Some("logprobs"));
    }

    #[test]
    fn response_mapping() {
        let c = parse_message(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x-2025",
                "content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Hel"},{"type":"text","text":"lo"}],
                "stop_reason":"max_tokens","stop_sequence":null,
                "usage":{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":5}}"#,
            &cfg(),
            false,
        )
        .unwrap();
        assert_eq!(c.id, "msg_1");
        assert_eq!(c.model, "claude-x-2025");
        assert_eq!(c.choices[0].message.content, "Hello");
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(c.usage, Usage::new(15, 2));
        for (r, f) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(r), f);
        }
        assert_eq!(
            parse_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &cfg(),
                false
            )
            .unwrap_err(),
            Fault::Upstream {
                status: 529,
                message: "Overloaded".into()
            }
        );
        assert!(matches!(
            parse_message(br#"{"id":"x"}"#, &cfg(), false),
            Err(Fault::Protocol(_))
        ));
    }

    fn ev(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: Some(name.into()),
            data: data.into(),
        }
    }

    #[test]
    fn stream_mapping() {
        let mut t = StreamTranslator::new(&cfg(), false);
        let mut out = Vec::new();
        let events = [
            ev(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_9","model":"claude-x-1","usage":{"input_tokens":7,"output_tokens":1}}}"#,
            ),
            ev(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ev("ping", r#"{"type":"ping"}"#),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            ),
            ev(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#,
            ),
            ev(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            ev(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
            ),
        ];
        for e in &events {
            assert!(!t.on_event(e, &mut out).unwrap());
        }
        assert!(
            t.on_event(&ev("message_stop", r#"{"type":"message_stop"}"#), &mut out)
                .unwrap()
        );
        assert_eq!(out.len(), 5);
        assert!(
            out.iter()
                .all(|c| c.id == "msg_9" && c.model == "claude-x-1")
        );
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        let text: String = out
            .iter()
            .flat_map(|c| c.choices.iter())
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Hi there");
        assert_eq!(out[3].choices[0].delta, ChunkDelta::default());
        assert_eq!(out[3].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(out[4].choices.is_empty());
        assert_eq!(out[4].usage, Some(Usage::new(7, 3)));
    }

    #[test]
    fn stream_error_event() {
        let mut t = StreamTranslator::new(&cfg(), false);
        let mut out = Vec::new();
        let e = t
            .on_event(
                &ev(
                    "error",
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(
            e,
            Fault::Upstream {
                status: 529,
                message: "Overloaded".into()
            }
        );
        assert!(matches!(
            t.on_event(&ev("message_start", "{oops"), &mut out),
            Err(Fault::Protocol(_))
        ));
    }
}
