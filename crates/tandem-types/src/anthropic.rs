//! The Anthropic Messages dialect (`POST /v1/messages`, `POST /v1/messages/count_tokens`):
//! requests parsed into the internal [`ChatRequest`], answers and stream chunks rendered back
//! as Anthropic messages and stream events, errors in Anthropic's shape.
//!
//! # Request mapping
//! * `system` (a string or text blocks) → a `system` message first.
//! * `user` text blocks → a `user` message; `tool_result` blocks → `tool` messages (with
//!   `tool_call_id` = `tool_use_id`) placed before the user's text, as Anthropic orders them.
//! * `assistant` text blocks → its content; `tool_use` blocks → `tool_calls` (arguments are
//!   the `input` object as JSON text). `thinking` / `redacted_thinking` blocks are dropped.
//! * `tools` (`name`, `description`, `input_schema`) → function tools; `tool_choice` `auto` /
//!   `any` / `tool` / `none` → `auto` / `required` / the named function / `none`;
//!   `disable_parallel_tool_use` → `parallel_tool_calls: false`.
//! * `max_tokens` (required), `stop_sequences`, `temperature`, `top_p`, `top_k`, `stream`.
//! * `output_config.format` (`{"type": "json_schema", "schema"}`, what the SDK's
//!   `messages.parse(output_format=…)` sends) → a JSON-schema `response_format`; the answer
//!   is the JSON text in a text block. `output_config.effort` is accepted without effect.
//! * Accepted and not forwarded: `metadata`, `thinking` (answers come without thinking
//!   blocks), `service_tier`, `speed`, `inference_geo`, `diagnostics`, `user_profile_id`,
//!   `workspace_id`, `cache_control` (top level and on blocks), `citations` on blocks,
//!   `context_management` (Claude Code sends it to clear old thinking, which Tandem never
//!   forwards; the whole conversation goes on as sent, so nothing is lost).
//! * A `system` message inside `messages` (the `mid-conversation-system` beta Claude Code
//!   uses) → a `system` message at that place; its blocks must be text.
//! * `container` (code-execution containers) is refused: Tandem runs no server tools.
//! * Refused with a 400 naming the field: image and document blocks, server tools (a `type`
//!   other than `custom`), anything else unknown (unless the server drops unknown fields).
//!
//! Errors name the field Anthropic's way (`messages.0.content.1.tool_use_id`).

use crate::dialect::{Dialect, Event, dotted, rename_param};
use crate::error::{ApiError, ErrorKind};
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest, check_unknown, get_bool,
    get_f32, get_model, get_u32, parse_object, present,
};
use crate::tools::{ResponseFormat, ToolCall, parse_tool_choice, parse_tools, type_name};
use serde_json::{Map, Value, json};

/// Fields of a Messages request Tandem understands.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
    "output_config",
    "cache_control",
    "diagnostics",
    "inference_geo",
    "speed",
    "user_profile_id",
    "workspace_id",
    "container",
    "context_management",
    "tandem",
];

/// Fields of a count_tokens request.
const COUNT_KNOWN: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "context_management",
    "tandem",
];

/// Anthropic's `error.type` for an error kind.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind.status() {
        400 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if s < 500 => "invalid_request_error",
        _ => "api_error",
    }
}

/// `{"type": "error", "error": {"type", "message"}}`.
pub fn error_body(e: &ApiError) -> Value {
    json!({"type": "error", "error": {"type": error_type(e.kind), "message": e.message}})
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::invalid(param, format!("{param}: {message}"))
}

fn text_blocks(v: &Value, param: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let p = format!("{param}.{j}");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => match b.get("text") {
                        Some(Value::String(t)) => {
                            if !out.is_empty() {
                                out.push('\n');
                            }
                            out.push_str(t);
                        }
                        _ => return Err(invalid(&format!("{p}.text"), "Field required")),
                    },
                    Some(other) => {
                        return Err(invalid(
                            &format!("{p}.type"),
                            format!("only text blocks are supported here, not '{other}'"),
                        ));
                    }
                    None => return Err(invalid(&format!("{p}.type"), "Field required")),
                }
            }
            Ok(out)
        }
        other => Err(invalid(
            param,
            format!(
                "Input should be a string or a list of blocks, not {}",
                type_name(other)
            ),
        )),
    }
}

fn required_str<'a>(b: &'a Value, key: &str, param: &str) -> Result<&'a str, ApiError> {
    match b.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(invalid(
            &format!("{param}.{key}"),
            format!("Input should be a string, not {}", type_name(v)),
        )),
        None => Err(invalid(&format!("{param}.{key}"), "Field required")),
    }
}

/// The internal messages for one Anthropic message.
fn parse_message(i: usize, m: &Value, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let param = format!("messages.{i}");
    let Value::Object(o) = m else {
        return Err(invalid(&param, "Input should be an object"));
    };
    let role = match o.get("role") {
        Some(Value::String(r)) if r == "user" || r == "assistant" || r == "system" => r.clone(),
        Some(Value::String(r)) => {
            return Err(invalid(
                &format!("{param}.role"),
                format!("Input should be 'user', 'assistant' or 'system', not '{r}'"),
            ));
        }
        _ => return Err(invalid(&format!("{param}.role"), "Field required")),
    };
    let content = match o.get("content") {
        Some(Value::String(s)) => {
            out.push(ChatMessage::new(role, s.clone()));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        Some(v) => {
            return Err(invalid(
                &format!("{param}.content"),
                format!(
                    "Input should be a string or a list of blocks, not {}",
                    type_name(v)
                ),
            ));
        }
        None => return Err(invalid(&format!("{param}.content"), "Field required")),
    };
    let mut text = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for (j, b) in content.iter().enumerate() {
        let p = format!("{param}.content.{j}");
        if !b.is_object() {
            return Err(invalid(&p, "Input should be an object"));
        }
        let ty = required_str(b, "type", &p)?;
        match (ty, role.as_str()) {
            ("text", _) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(required_str(b, "text", &p)?);
            }
            ("tool_use", "assistant") => {
                let id = required_str(b, "id", &p)?;
                let name = required_str(b, "name", &p)?;
                let input = match b.get("input") {
                    Some(v @ Value::Object(_)) => v.to_string(),
                    Some(v) => {
                        return Err(invalid(
                            &format!("{p}.input"),
                            format!("Input should be an object, not {}", type_name(v)),
                        ));
                    }
                    None => return Err(invalid(&format!("{p}.input"), "Field required")),
                };
                calls.push(ToolCall::function(id, name, input));
            }
            ("tool_result", "user") => {
                let id = required_str(b, "tool_use_id", &p)?;
                let mut result = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(v) => text_blocks(v, &format!("{p}.content"))?,
                };
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    result = format!("Error: {result}");
                }
                let mut m = ChatMessage::new("tool", result);
                m.tool_call_id = Some(id.to_string());
                out.push(m);
            }
            ("thinking" | "redacted_thinking", "assistant") => {}
            ("tool_use" | "thinking" | "redacted_thinking", _) => {
                return Err(invalid(
                    &format!("{p}.type"),
                    format!("'{ty}' blocks may only appear in assistant messages"),
                ));
            }
            (_, "system") => {
                return Err(invalid(
                    &format!("{p}.type"),
                    format!("system messages take text blocks only, not '{ty}'"),
                ));
            }
            ("tool_result", _) => {
                return Err(invalid(
                    &format!("{p}.type"),
                    "'tool_result' blocks may only appear in user messages",
                ));
            }
            ("image" | "document", _) => {
                return Err(invalid(
                    &format!("{p}.type"),
                    format!("'{ty}' blocks are not supported by Tandem; send text"),
                ));
            }
            (other, _) => {
                return Err(invalid(
                    &format!("{p}.type"),
                    format!("unknown content block type '{other}'"),
                ));
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() || content.is_empty() {
        let mut m = ChatMessage::new(role, text);
        m.tool_calls = calls;
        out.push(m);
    }
    Ok(())
}

/// Anthropic tools in the OpenAI shape the shared parser validates.
fn tools_as_openai(v: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(invalid(
                "tools",
                format!("Input should be a list, not {}", type_name(v)),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let p = format!("tools.{i}");
        let Value::Object(t) = t else {
            return Err(invalid(&p, "Input should be an object"));
        };
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(invalid(
                    &format!("{p}.type"),
                    format!(
                        "server tool '{other}' is not supported by Tandem; only custom tools (name, description, input_schema)"
                    ),
                ));
            }
        }
        let Some(schema) = t.get("input_schema") else {
            return Err(invalid(&format!("{p}.input_schema"), "Field required"));
        };
        let mut f = Map::new();
        f.insert("name".into(), t.get("name").cloned().unwrap_or(Value::Null));
        if let Some(d) = t.get("description") {
            f.insert("description".into(), d.clone());
        }
        f.insert("parameters".into(), schema.clone());
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Some(Value::Array(out)))
}

/// Anthropic `tool_choice` in the OpenAI shape; also whether parallel calls are disabled.
fn tool_choice_as_openai(v: Option<&Value>) -> Result<(Option<Value>, bool), ApiError> {
    let o = match v {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(o)) => o,
        Some(v) => {
            return Err(invalid(
                "tool_choice",
                format!("Input should be an object, not {}", type_name(v)),
            ));
        }
    };
    let no_parallel = match o.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                "tool_choice.disable_parallel_tool_use",
                "Input should be a boolean",
            ));
        }
    };
    let choice = match o.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match o.get("name") {
            Some(Value::String(n)) => json!({"type": "function", "function": {"name": n}}),
            _ => return Err(invalid("tool_choice.name", "Field required")),
        },
        Some(other) => {
            return Err(invalid(
                "tool_choice.type",
                format!("Input should be 'auto', 'any', 'tool' or 'none', not '{other}'"),
            ));
        }
        None => return Err(invalid("tool_choice.type", "Field required")),
    };
    Ok((Some(choice), no_parallel))
}

const RENAMES: &[(&str, &str)] = &[
    (".function.parameters", ".input_schema"),
    ("tool_choice.function.name", "tool_choice.name"),
    (".function.", "."),
    ("'tools'", "tools"),
];

fn anthropic_param(e: ApiError) -> ApiError {
    let e = rename_param(e, RENAMES);
    let param = e.param.as_deref().map(dotted);
    let mut message = dotted(&e.message);
    if let Some(p) = &param
        && !message.contains(p.as_str())
    {
        message = format!("{p}: {message}");
    }
    ApiError {
        param,
        message,
        ..e
    }
}

fn parse_common(
    obj: &Map<String, Value>,
) -> Result<(String, Vec<ChatMessage>, crate::tools::ToolSet), ApiError> {
    let model = get_model(obj)?;
    let mut messages = Vec::new();
    if let Some(s) = present(obj, "system") {
        let system = text_blocks(s, "system")?;
        if !system.is_empty() {
            messages.push(ChatMessage::new("system", system));
        }
    }
    match present(obj, "messages") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid("messages", "at least one message is required"));
            }
            for (i, m) in items.iter().enumerate() {
                parse_message(i, m, &mut messages)?;
            }
        }
        Some(v) => {
            return Err(invalid(
                "messages",
                format!("Input should be a list, not {}", type_name(v)),
            ));
        }
        None => return Err(invalid("messages", "Field required")),
    }
    let tools =
        parse_tools(tools_as_openai(obj.get("tools"))?.as_ref()).map_err(anthropic_param)?;
    let (choice, no_parallel) = tool_choice_as_openai(obj.get("tool_choice"))?;
    let tool_choice = parse_tool_choice(choice.as_ref(), &tools).map_err(anthropic_param)?;
    Ok((
        model,
        messages,
        crate::tools::ToolSet {
            tools,
            tool_choice,
            parallel_tool_calls: !no_parallel,
        },
    ))
}

/// `output_config`: its `format` as a response format (`effort` has no local meaning).
fn output_format(obj: &Map<String, Value>) -> Result<ResponseFormat, ApiError> {
    let o = match present(obj, "output_config") {
        None => return Ok(ResponseFormat::Text),
        Some(Value::Object(o)) => o,
        Some(v) => {
            return Err(invalid(
                "output_config",
                format!("Input should be an object, not {}", type_name(v)),
            ));
        }
    };
    let f = match o.get("format") {
        None | Some(Value::Null) => return Ok(ResponseFormat::Text),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(invalid("output_config.format", "Input should be an object")),
    };
    match f.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        Some(other) => {
            return Err(invalid(
                "output_config.format.type",
                format!("Input should be 'json_schema', not '{other}'"),
            ));
        }
        None => return Err(invalid("output_config.format.type", "Field required")),
    }
    match f.get("schema") {
        Some(schema @ Value::Object(_)) => Ok(ResponseFormat::JsonSchema {
            name: "output".into(),
            schema: schema.clone(),
            strict: true,
        }),
        Some(_) => Err(invalid(
            "output_config.format.schema",
            "Input should be a JSON schema object",
        )),
        None => Err(invalid("output_config.format.schema", "Field required")),
    }
}

fn forward_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| k == "anthropic-version" || k == "anthropic-beta")
        .cloned()
        .collect()
}

/// Parse a Messages request body. `headers` are the request's (lower-case names);
/// `anthropic-version` and `anthropic-beta` are kept to forward to Anthropic upstreams.
pub fn parse_request(
    body: &[u8],
    headers: &[(String, String)],
    drop_unknown: bool,
) -> Result<ChatRequest, ApiError> {
    let obj = parse_object(body)?;
    check_unknown(&obj, KNOWN, drop_unknown)?;
    if present(&obj, "container").is_some() {
        return Err(invalid(
            "container",
            "code-execution containers are not supported by Tandem (it runs no server tools)",
        ));
    }
    let (model, messages, tools) = parse_common(&obj)?;
    let max_tokens = match get_u32(&obj, "max_tokens", 1, u32::MAX)? {
        Some(m) => m,
        None => return Err(invalid("max_tokens", "Field required")),
    };
    let stream = get_bool(&obj, "stream")?.unwrap_or(false);
    let mut req = ChatRequest::new(model, messages);
    req.max_tokens = Some(max_tokens);
    req.stream = stream;
    // The usage chunk carries the token counts of `message_delta`.
    req.include_usage = stream;
    if let Some(t) = get_f32(&obj, "temperature", 0.0, 1.0)? {
        req.sampling.temperature = t;
    }
    if let Some(p) = get_f32(&obj, "top_p", 0.0, 1.0)? {
        req.sampling.top_p = p;
    }
    if let Some(k) = get_u32(&obj, "top_k", 0, 1_000_000)? {
        req.sampling.top_k = k;
    }
    match present(&obj, "stop_sequences") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, s) in items.iter().enumerate() {
                match s {
                    Value::String(s) if !s.is_empty() => req.sampling.stop.push(s.clone()),
                    _ => {
                        return Err(invalid(
                            &format!("stop_sequences.{i}"),
                            "Input should be a non-empty string",
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(invalid("stop_sequences", "Input should be a list")),
    }
    req.tools = tools.tools;
    req.tool_choice = tools.tool_choice;
    req.parallel_tool_calls = tools.parallel_tool_calls;
    req.response_format = output_format(&obj)?;
    if let Some(t) = obj.get("tandem") {
        req.extensions.insert("tandem".into(), t.clone());
    }
    req.dialect = Dialect::Anthropic;
    req.forward_headers = forward_headers(headers);
    Ok(req)
}

/// Parse a `count_tokens` body into the request whose prompt is counted.
pub fn parse_count_request(body: &[u8], drop_unknown: bool) -> Result<ChatRequest, ApiError> {
    let obj = parse_object(body)?;
    check_unknown(&obj, COUNT_KNOWN, drop_unknown)?;
    let (model, messages, tools) = parse_common(&obj)?;
    let mut req = ChatRequest::new(model, messages);
    req.tools = tools.tools;
    req.tool_choice = tools.tool_choice;
    req.parallel_tool_calls = tools.parallel_tool_calls;
    req.response_format = output_format(&obj)?;
    req.dialect = Dialect::Anthropic;
    Ok(req)
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// A `message` object for a finished completion (its first choice).
pub fn render_message(c: &ChatCompletion) -> Value {
    let mut content = Vec::new();
    let mut finish = None;
    if let Some(ch) = c.choices.first() {
        finish = ch.finish_reason.as_deref();
        if !ch.message.content.is_empty() || ch.message.tool_calls.is_empty() {
            content.push(json!({"type": "text", "text": ch.message.content}));
        }
        for t in &ch.message.tool_calls {
            content.push(
                json!({"type": "tool_use", "id": t.id, "name": t.function.name,
                "input": tool_input(&t.function.arguments)}),
            );
        }
    }
    let mut m = json!({
        "id": c.id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": {"input_tokens": c.usage.prompt_tokens, "output_tokens": c.usage.completion_tokens},
    });
    if let Some(t) = &c.tandem {
        m["tandem"] = t.clone();
    }
    m
}

/// What kind of content block is open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Tool(u32),
}

/// Turns a stream of OpenAI chunks (choice 0) into Anthropic stream events, each an
/// `(event name, data)` pair: `message_start` and `ping` first, `content_block_start` /
/// `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop` per block,
/// `message_delta` (stop reason, usage) and `message_stop` at the end.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    open: Option<Open>,
    index: usize,
    finish: Option<String>,
    usage: (u32, u32),
    chars: usize,
}

impl StreamEncoder {
    /// An encoder for message `id`, answered by `model`.
    pub fn new(id: &str, model: &str) -> Self {
        StreamEncoder {
            id: id.to_string(),
            model: model.to_string(),
            started: false,
            open: None,
            index: 0,
            finish: None,
            usage: (0, 0),
            chars: 0,
        }
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push((
            "message_start",
            json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.usage.0, "output_tokens": 0}}}),
        ));
        out.push(("ping", json!({"type": "ping"})));
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        if self.open.take().is_some() {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.index += 1;
        }
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<Event>) {
        self.close(out);
        self.open = Some(kind);
        out.push((
            "content_block_start",
            json!({"type": "content_block_start",
            "index": self.index, "content_block": block}),
        ));
    }
}

impl crate::dialect::StreamEncoder for StreamEncoder {
    fn chunk(&mut self, c: &ChatCompletionChunk) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        if let Some(u) = c.usage {
            self.usage = (u.prompt_tokens, u.completion_tokens);
        }
        for ch in c.choices.iter().filter(|ch| ch.index == 0) {
            if let Some(t) = ch.delta.content.as_deref().filter(|t| !t.is_empty()) {
                if self.open != Some(Open::Text) {
                    self.open_block(Open::Text, json!({"type": "text", "text": ""}), &mut out);
                }
                self.chars += t.len();
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": self.index, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            for d in ch.delta.tool_calls.iter().flatten() {
                let f = d.function.as_ref();
                if self.open != Some(Open::Tool(d.index)) {
                    let name = f.and_then(|f| f.name.clone()).unwrap_or_default();
                    let id = d.id.clone().unwrap_or_default();
                    self.open_block(
                        Open::Tool(d.index),
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        &mut out,
                    );
                }
                if let Some(a) = f
                    .and_then(|f| f.arguments.as_deref())
                    .filter(|a| !a.is_empty())
                {
                    self.chars += a.len();
                    out.push((
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": self.index,
                        "delta": {"type": "input_json_delta", "partial_json": a}}),
                    ));
                }
            }
            if let Some(f) = &ch.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        out
    }

    /// `message_delta` (stop reason, usage), then `message_stop`.
    fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let output = if self.usage.1 > 0 || self.usage.0 > 0 {
            self.usage.1
        } else {
            (self.chars / 4) as u32
        };
        out.push((
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
            "usage": {"input_tokens": self.usage.0, "output_tokens": output}}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    /// An `error` event.
    fn error(&mut self, e: &ApiError) -> Vec<Event> {
        vec![("error", error_body(e))]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dialect::StreamEncoder as _;
    use crate::dialect::test_chunk as chunk;
    use crate::openai::{ChunkDelta, Usage};
    use crate::tools::{FunctionCallDelta, ToolCallDelta, ToolChoice};

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        parse_request(body.to_string().as_bytes(), &[], false)
    }

    #[test]
    fn blocks_tools_and_results_map_to_the_internal_conversation() {
        let req = parse(json!({
            "model": "auto", "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "Weather in Taipei?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "…", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Taipei"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "23C"}]},
                    {"type": "text", "text": "And tomorrow?"}]}
            ],
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5, "stream": true,
            "metadata": {"user_id": "u"}
        }))
        .unwrap();
        let roles: Vec<&str> = req.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(req.messages[0].content, "Be brief.");
        assert_eq!(req.messages[2].content, "Checking.");
        assert_eq!(req.messages[2].tool_calls[0].id, "toolu_1");
        assert_eq!(
            req.messages[2].tool_calls[0].function.arguments,
            r#"{"city":"Taipei"}"#
        );
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(req.messages[3].content, "23C");
        assert_eq!(req.tools[0].function.name, "weather");
        assert_eq!(req.tool_choice, ToolChoice::Required);
        assert!(!req.parallel_tool_calls);
        assert_eq!(req.sampling.stop, ["END"]);
        assert_eq!(req.sampling.top_k, 5);
        assert!(req.stream && req.include_usage);
        assert_eq!(req.max_tokens, Some(64));
        assert_eq!(req.dialect, Dialect::Anthropic);
    }

    /// What Claude Code 2.1 sends besides the basics: a system message between turns (the
    /// `mid-conversation-system` beta), `context_management`, adaptive thinking, `effort`.
    #[test]
    fn claude_code_requests_parse() {
        let req = parse(json!({
            "model": "claude-x", "max_tokens": 32000, "stream": true,
            "system": [{"type": "text", "text": "You are an agent."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What does notes.txt say?"}]},
                {"role": "system", "content": "Available agent types: ..."}
            ],
            "thinking": {"type": "adaptive"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"},
            "metadata": {"user_id": "{\"session_id\":\"s\"}"}
        }))
        .unwrap();
        let roles: Vec<&str> = req.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "system"]);
        assert_eq!(req.messages[2].content, "Available agent types: ...");
        let err = parse(json!({"model": "m", "max_tokens": 8, "messages": [
            {"role": "system", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]}))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages.0.content.0.type"));
    }

    #[test]
    fn output_config_format_is_a_json_schema_response_format() {
        let req = parse(json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            "speed": "standard", "cache_control": {"type": "ephemeral"}}))
        .unwrap();
        assert_eq!(
            req.response_format,
            ResponseFormat::JsonSchema {
                name: "output".into(),
                schema: json!({"type": "object"}),
                strict: true
            }
        );
    }

    #[test]
    fn version_and_beta_headers_are_kept_for_forwarding() {
        let headers = vec![
            ("anthropic-version".to_string(), "2023-06-01".to_string()),
            ("anthropic-beta".to_string(), "tools-2024".to_string()),
            ("x-api-key".to_string(), "secret".to_string()),
        ];
        let body =
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]});
        let req = parse_request(body.to_string().as_bytes(), &headers, false).unwrap();
        assert_eq!(req.forward_headers, headers[..2].to_vec());
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let base = || json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
                "max_tokens",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([]);
                    b
                },
                "messages",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([{"role": "tool", "content": "x"}]);
                    b
                },
                "messages.0.role",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([{"role": "user"}]);
                    b
                },
                "messages.0.content",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] =
                        json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]);
                    b
                },
                "messages.0.content.0.type",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([{"role": "user", "content": [{"type": "tool_result"}]}]);
                    b
                },
                "messages.0.content.0.tool_use_id",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]);
                    b
                },
                "messages.0.content.0.type",
            ),
            (
                {
                    let mut b = base();
                    b["messages"] = json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}]}]);
                    b
                },
                "messages.0.content.0.input",
            ),
            (
                {
                    let mut b = base();
                    b["tools"] = json!([{"name": "f"}]);
                    b
                },
                "tools.0.input_schema",
            ),
            (
                {
                    let mut b = base();
                    b["tools"] = json!([{"name": "bad name", "input_schema": {}}]);
                    b
                },
                "tools.0.name",
            ),
            (
                {
                    let mut b = base();
                    b["tools"] = json!([{"type": "web_search_20250305", "name": "w"}]);
                    b
                },
                "tools.0.type",
            ),
            (
                {
                    let mut b = base();
                    b["tools"] = json!([{"name": "f", "input_schema": 3}]);
                    b
                },
                "tools.0.input_schema",
            ),
            (
                {
                    let mut b = base();
                    b["tools"] = json!([{"name": "f", "input_schema": {}}]);
                    b["tool_choice"] = json!({"type": "tool", "name": "g"});
                    b
                },
                "tool_choice.name",
            ),
            (
                {
                    let mut b = base();
                    b["tool_choice"] = json!({"type": "sometimes"});
                    b
                },
                "tool_choice.type",
            ),
            (
                {
                    let mut b = base();
                    b["temperature"] = json!(1.5);
                    b
                },
                "temperature",
            ),
            (
                {
                    let mut b = base();
                    b["stop_sequences"] = json!([""]);
                    b
                },
                "stop_sequences.0",
            ),
            (
                {
                    let mut b = base();
                    b["system"] = json!(5);
                    b
                },
                "system",
            ),
            (
                {
                    let mut b = base();
                    b["frobnicate"] = json!(1);
                    b
                },
                "frobnicate",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(
                error_body(&e)["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(param),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn error_types_follow_anthropic() {
        let e = |k| error_body(&ApiError::new(k, "x"))["error"]["type"].clone();
        assert_eq!(e(ErrorKind::InvalidRequest), "invalid_request_error");
        assert_eq!(e(ErrorKind::Authentication), "authentication_error");
        assert_eq!(e(ErrorKind::NotFound), "not_found_error");
        assert_eq!(e(ErrorKind::RateLimited), "rate_limit_error");
        assert_eq!(e(ErrorKind::Unavailable), "overloaded_error");
        assert_eq!(e(ErrorKind::BadGateway), "api_error");
    }

    #[test]
    fn stream_events_open_and_close_blocks() {
        let mut enc = StreamEncoder::new("msg_1", "m");
        let mut evs = Vec::new();
        let text = |t: &str| ChunkDelta {
            content: Some(t.into()),
            ..Default::default()
        };
        let call = |id: Option<&str>, name: Option<&str>, args: &str| ChunkDelta {
            tool_calls: Some(vec![ToolCallDelta {
                index: 0,
                id: id.map(str::to_string),
                kind: id.map(|_| "function".to_string()),
                function: Some(FunctionCallDelta {
                    name: name.map(str::to_string),
                    arguments: Some(args.into()),
                }),
            }]),
            ..Default::default()
        };
        evs.extend(enc.chunk(&chunk(text(""), None)));
        evs.extend(enc.chunk(&chunk(text("Hi"), None)));
        evs.extend(enc.chunk(&chunk(call(Some("call_1"), Some("f"), ""), None)));
        evs.extend(enc.chunk(&chunk(call(None, None, "{\"a\": "), None)));
        evs.extend(enc.chunk(&chunk(call(None, None, "1}"), None)));
        evs.extend(enc.chunk(&chunk(ChunkDelta::default(), Some("tool_calls"))));
        let mut u = chunk(ChunkDelta::default(), None);
        u.choices.clear();
        u.usage = Some(Usage::new(11, 7));
        evs.extend(enc.chunk(&u));
        evs.extend(enc.finish());
        let names: Vec<&str> = evs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[5].1["content_block"]["name"], "f");
        assert_eq!(evs[5].1["content_block"]["id"], "call_1");
        assert_eq!(evs[5].1["index"], 1);
        assert_eq!(evs[7].1["delta"]["partial_json"], "1}");
        assert_eq!(evs[9].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(evs[9].1["usage"]["output_tokens"], 7);
        assert_eq!(evs[9].1["usage"]["input_tokens"], 11);
    }

    #[test]
    fn a_message_renders_text_and_tool_use() {
        let mut c: ChatCompletion = serde_json::from_value(json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 0, "model": "m",
            "system_fingerprint": "", "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}]
        }))
        .unwrap();
        let m = render_message(&c);
        assert_eq!(m["content"][0]["type"], "tool_use");
        assert_eq!(m["content"][0]["input"]["a"], 1);
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["output_tokens"], 4);
        c.choices[0].finish_reason = Some("length".into());
        c.choices[0].message.tool_calls.clear();
        c.choices[0].message.content = "abc".into();
        let m = render_message(&c);
        assert_eq!(m["content"][0]["text"], "abc");
        assert_eq!(m["stop_reason"], "max_tokens");
    }
}
