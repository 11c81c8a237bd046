//! The OpenAI Responses dialect (`POST /v1/responses`), stateless: requests parsed into the
//! internal [`ChatRequest`], answers and stream chunks rendered back as a `response` object
//! and its stream events. Errors keep OpenAI's shape.
//!
//! # Request mapping
//! * `instructions` → a `system` message first; `input` as a string → one `user` message;
//!   as items: messages (`role` user / assistant / system / developer, content a string or
//!   `input_text` / `output_text` parts), `function_call` items → an assistant message's
//!   `tool_calls`, `function_call_output` → `tool` messages; `reasoning` items are dropped.
//! * Function `tools` (flat: `name`, `description`, `parameters`, `strict`), `tool_choice`,
//!   `parallel_tool_calls`; `text.format` (`text`, `json_object`, `json_schema` with `name`,
//!   `schema`, `strict`) → `response_format`.
//! * `max_output_tokens`, `temperature`, `top_p`, `stream`.
//! * Accepted without effect: `store` (nothing is stored), `metadata` (echoed), `user`,
//!   `truncation: "disabled"`, `reasoning`, `include: []`, `service_tier`.
//! * Refused with a 400 naming the field: `previous_response_id` and `conversation` (Tandem
//!   keeps no state: send the whole conversation in `input`), `background: true`, tools other
//!   than functions, image / file inputs.

use crate::dialect::{Dialect, Event, rename_param};
use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest, check_unknown, get_bool,
    get_f32, get_model, get_u32, parse_object, present,
};
use crate::tools::{
    ResponseFormat, ToolCall, parse_response_format, parse_tool_choice, parse_tools, type_name,
};
use serde_json::{Map, Value, json};

const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "metadata",
    "user",
    "truncation",
    "reasoning",
    "include",
    "service_tier",
    "previous_response_id",
    "conversation",
    "background",
    "tandem",
];

fn content_text(v: &Value, param: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => match p.get("text") {
                        Some(Value::String(t)) => out.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{pp}.text"),
                                format!("Missing required parameter: '{pp}.text'."),
                            ));
                        }
                    },
                    Some(other) => {
                        return Err(ApiError::invalid(
                            format!("{pp}.type"),
                            format!(
                                "Invalid value '{other}' for '{pp}.type': Tandem accepts text parts only ('input_text', 'output_text')."
                            ),
                        ));
                    }
                    None => {
                        return Err(ApiError::invalid(
                            format!("{pp}.type"),
                            format!("Missing required parameter: '{pp}.type'."),
                        ));
                    }
                }
            }
            Ok(out)
        }
        other => Err(ApiError::invalid(
            param,
            format!(
                "Invalid type for '{param}': expected a string or an array of content parts, got {}.",
                type_name(other)
            ),
        )),
    }
}

fn item_str<'a>(o: &'a Map<String, Value>, key: &str, param: &str) -> Result<&'a str, ApiError> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(ApiError::invalid(
            format!("{param}.{key}"),
            format!(
                "Invalid type for '{param}.{key}': expected a string, got {}.",
                type_name(v)
            ),
        )),
        None => Err(ApiError::invalid(
            format!("{param}.{key}"),
            format!("Missing required parameter: '{param}.{key}'."),
        )),
    }
}

fn parse_input(v: &Value, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let items = match v {
        Value::String(s) => {
            out.push(ChatMessage::new("user", s.clone()));
            return Ok(());
        }
        Value::Array(items) => items,
        other => {
            return Err(ApiError::invalid(
                "input",
                format!(
                    "Invalid type for 'input': expected a string or an array of items, got {}.",
                    type_name(other)
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "input",
            "Invalid 'input': empty array. Expected at least one item.",
        ));
    }
    for (i, it) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let Value::Object(o) = it else {
            return Err(ApiError::invalid(
                &param,
                format!("Invalid '{param}': expected an object."),
            ));
        };
        let ty = match o.get("type") {
            None => "message",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    format!("Invalid type for '{param}.type': expected a string."),
                ));
            }
        };
        match ty {
            "message" => {
                let role = item_str(o, "role", &param)?;
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(ApiError::invalid(
                        format!("{param}.role"),
                        format!(
                            "Invalid value '{role}' for '{param}.role': expected 'user', 'assistant', 'system' or 'developer'."
                        ),
                    ));
                }
                let Some(c) = o.get("content") else {
                    return Err(ApiError::invalid(
                        format!("{param}.content"),
                        format!("Missing required parameter: '{param}.content'."),
                    ));
                };
                let text = content_text(c, &format!("{param}.content"))?;
                out.push(ChatMessage::new(role, text));
            }
            "function_call" => {
                let call_id = item_str(o, "call_id", &param)?;
                let name = item_str(o, "name", &param)?;
                let arguments = item_str(o, "arguments", &param)?;
                let call = ToolCall::function(call_id, name, arguments.to_string());
                // A call right after an assistant message (or another call) is part of
                // that turn.
                match out.last_mut() {
                    Some(m) if m.role == "assistant" => m.tool_calls.push(call),
                    _ => {
                        let mut m = ChatMessage::new("assistant", "");
                        m.tool_calls.push(call);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                let call_id = item_str(o, "call_id", &param)?;
                let output = match o.get("output") {
                    Some(v @ (Value::String(_) | Value::Array(_))) => {
                        content_text(v, &format!("{param}.output"))?
                    }
                    Some(v) => {
                        return Err(ApiError::invalid(
                            format!("{param}.output"),
                            format!(
                                "Invalid type for '{param}.output': expected a string, got {}.",
                                type_name(v)
                            ),
                        ));
                    }
                    None => {
                        return Err(ApiError::invalid(
                            format!("{param}.output"),
                            format!("Missing required parameter: '{param}.output'."),
                        ));
                    }
                };
                let mut m = ChatMessage::new("tool", output);
                m.tool_call_id = Some(call_id.to_string());
                out.push(m);
            }
            "reasoning" => {}
            "item_reference" => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    "Item references need stored responses, which Tandem does not keep; send the items themselves.",
                ));
            }
            other => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    format!(
                        "Invalid value '{other}' for '{param}.type': expected 'message', 'function_call' or 'function_call_output'."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Responses tools (flat) in the chat shape the shared parser validates.
fn tools_as_chat(v: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Ok(v.cloned()),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let Value::Object(t) = t else {
            out.push(t.clone());
            continue;
        };
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!(
                        "Invalid value '{other}' for 'tools[{i}].type': Tandem supports 'function' tools only."
                    ),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!("Missing required parameter: 'tools[{i}].type'."),
                ));
            }
        }
        let mut f = t.clone();
        f.remove("type");
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(Some(Value::Array(out)))
}

fn tool_choice_as_chat(v: Option<&Value>) -> Option<Value> {
    match v {
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Some(
                json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}}),
            )
        }
        other => other.cloned(),
    }
}

fn text_format(obj: &Map<String, Value>) -> Result<ResponseFormat, ApiError> {
    let Some(text) = present(obj, "text") else {
        return Ok(ResponseFormat::Text);
    };
    let Value::Object(t) = text else {
        return Err(ApiError::invalid(
            "text",
            "Invalid type for 'text': expected an object.",
        ));
    };
    let Some(f) = t.get("format").filter(|f| !f.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    // The chat shape nests the schema under `json_schema`; Responses puts it flat.
    let chat = match f {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("json_schema") => {
            let mut js = o.clone();
            js.remove("type");
            json!({"type": "json_schema", "json_schema": js})
        }
        other => other.clone(),
    };
    parse_response_format(Some(&chat)).map_err(|e| {
        rename_param(
            e,
            &[
                ("response_format.json_schema", "text.format"),
                ("response_format", "text.format"),
            ],
        )
    })
}

/// Parse a Responses request body.
pub fn parse_request(body: &[u8], drop_unknown: bool) -> Result<ChatRequest, ApiError> {
    let obj = parse_object(body)?;
    check_unknown(&obj, KNOWN, drop_unknown)?;
    if present(&obj, "previous_response_id").is_some() || present(&obj, "conversation").is_some() {
        let param = if present(&obj, "previous_response_id").is_some() {
            "previous_response_id"
        } else {
            "conversation"
        };
        return Err(ApiError::invalid(
            param,
            format!(
                "'{param}' is not supported: Tandem does not store responses. Send the whole conversation in 'input' (earlier output items included)."
            ),
        )
        .with_code("unsupported_parameter"));
    }
    if get_bool(&obj, "background")? == Some(true) {
        return Err(ApiError::invalid(
            "background",
            "Background responses are not supported; leave 'background' out or false.",
        )
        .with_code("unsupported_parameter"));
    }
    let model = get_model(&obj)?;
    let mut messages = Vec::new();
    match present(&obj, "instructions") {
        None => {}
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        Some(Value::String(_)) => {}
        Some(v) => {
            return Err(ApiError::invalid(
                "instructions",
                format!(
                    "Invalid type for 'instructions': expected a string, got {}.",
                    type_name(v)
                ),
            ));
        }
    }
    match present(&obj, "input") {
        Some(v) => parse_input(v, &mut messages)?,
        None => {
            return Err(ApiError::invalid(
                "input",
                "Missing required parameter: 'input'.",
            ));
        }
    }
    let renames = [
        (".function.", "."),
        ("tool_choice.function.name", "tool_choice.name"),
    ];
    let tools = parse_tools(tools_as_chat(obj.get("tools"))?.as_ref())
        .map_err(|e| rename_param(e, &renames))?;
    let tool_choice =
        parse_tool_choice(tool_choice_as_chat(obj.get("tool_choice")).as_ref(), &tools)
            .map_err(|e| rename_param(e, &renames))?;
    let stream = get_bool(&obj, "stream")?.unwrap_or(false);
    let mut req = ChatRequest::new(model, messages);
    req.tools = tools;
    req.tool_choice = tool_choice;
    req.parallel_tool_calls = get_bool(&obj, "parallel_tool_calls")?.unwrap_or(true);
    req.response_format = text_format(&obj)?;
    req.max_tokens = get_u32(&obj, "max_output_tokens", 1, u32::MAX)?;
    if let Some(t) = get_f32(&obj, "temperature", 0.0, 2.0)? {
        req.sampling.temperature = t;
    }
    if let Some(p) = get_f32(&obj, "top_p", 0.0, 1.0)? {
        req.sampling.top_p = p;
    }
    req.stream = stream;
    req.include_usage = stream;
    if let Some(t) = obj.get("tandem") {
        req.extensions.insert("tandem".into(), t.clone());
    }
    if let Some(m) = present(&obj, "metadata") {
        if !m.is_object() {
            return Err(ApiError::invalid(
                "metadata",
                "Invalid type for 'metadata': expected an object.",
            ));
        }
        req.extensions.insert("metadata".into(), m.clone());
    }
    req.dialect = Dialect::Responses;
    Ok(req)
}

fn usage_json(input: u32, output: u32) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output})
}

fn text_config(req: &ChatRequest) -> Value {
    match &req.response_format {
        ResponseFormat::Text => json!({"format": {"type": "text"}}),
        ResponseFormat::JsonObject => json!({"format": {"type": "json_object"}}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            json!({"format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}})
        }
    }
}

/// The fields of a `response` object that echo the request (tools, format, instructions,
/// sampling, metadata), taken before the request is handed on, so that answering does not
/// need to keep the whole conversation.
#[derive(Debug, Clone)]
pub struct Echo(Value);

impl Echo {
    /// What `req`'s response will echo.
    pub fn of(req: &ChatRequest) -> Echo {
        Echo(envelope(req, "", "", 0))
    }

    /// A `response` object with these fields, its id, model and creation time.
    fn response(&self, id: &str, model: &str, created: u64) -> Value {
        let mut r = self.0.clone();
        r["id"] = json!(id);
        r["model"] = json!(model);
        r["created_at"] = json!(created);
        r
    }
}

fn envelope(req: &ChatRequest, id: &str, model: &str, created: u64) -> Value {
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            json!({"type": "function", "name": t.function.name, "description": t.function.description,
                "parameters": t.function.parameters, "strict": t.function.strict.unwrap_or(false)})
        })
        .collect();
    let tool_choice = match &req.tool_choice {
        crate::tools::ToolChoice::Function(n) => json!({"type": "function", "name": n}),
        other => other.to_value(),
    };
    let instructions = req
        .messages
        .first()
        .filter(|m| m.role == "system")
        .map(|m| Value::String(m.content.clone()))
        .unwrap_or(Value::Null);
    json!({
        "id": id, "object": "response", "created_at": created, "status": "in_progress",
        "error": null, "incomplete_details": null, "instructions": instructions,
        "max_output_tokens": req.max_tokens, "model": model, "output": [],
        "parallel_tool_calls": req.parallel_tool_calls, "previous_response_id": null,
        "temperature": req.sampling.temperature, "top_p": req.sampling.top_p,
        "text": text_config(req), "tool_choice": tool_choice, "tools": tools,
        "truncation": "disabled", "store": false,
        "metadata": req.extensions.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "usage": null,
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

fn finish_status(resp: &mut Value, finish: Option<&str>) {
    if finish == Some("length") {
        resp["status"] = json!("incomplete");
        resp["incomplete_details"] = json!({"reason": "max_output_tokens"});
    } else if finish == Some("content_filter") {
        resp["status"] = json!("incomplete");
        resp["incomplete_details"] = json!({"reason": "content_filter"});
    } else {
        resp["status"] = json!("completed");
    }
}

/// A finished `response` for a completion (its first choice).
pub fn render_response(echo: &Echo, c: &ChatCompletion) -> Value {
    let id = response_id(&c.id);
    let mut r = echo.response(&id, &c.model, c.created);
    let mut output = Vec::new();
    let mut finish = None;
    if let Some(ch) = c.choices.first() {
        finish = ch.finish_reason.as_deref();
        if !ch.message.content.is_empty() || ch.message.tool_calls.is_empty() {
            output.push(message_item(
                &format!("msg_{id}"),
                &ch.message.content,
                "completed",
            ));
        }
        for (i, t) in ch.message.tool_calls.iter().enumerate() {
            output.push(call_item(
                &format!("fc_{i}_{id}"),
                &t.id,
                &t.function.name,
                &t.function.arguments,
                "completed",
            ));
        }
    }
    r["output"] = Value::Array(output);
    r["usage"] = usage_json(c.usage.prompt_tokens, c.usage.completion_tokens);
    finish_status(&mut r, finish);
    if let Some(t) = &c.tandem {
        r["tandem"] = t.clone();
    }
    r
}

/// `resp_…` from Tandem's request id.
pub fn response_id(request_id: &str) -> String {
    if request_id.starts_with("resp_") {
        request_id.to_string()
    } else {
        format!("resp_{}", request_id.trim_start_matches("chatcmpl-"))
    }
}

/// One output item being streamed.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    fn done(&self) -> Value {
        match self {
            Item::Message { id, text } => message_item(id, text, "completed"),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => call_item(id, call_id, name, arguments, "completed"),
        }
    }
}

/// Turns a stream of OpenAI chunks (choice 0) into Responses stream events (`type` and
/// `sequence_number` in each; the SSE event name is the `type`): `response.created` and
/// `response.in_progress` first; per output item `response.output_item.added`, then for text
/// `response.content_part.added`, `response.output_text.delta`…, `response.output_text.done`,
/// `response.content_part.done`, or for a call `response.function_call_arguments.delta`…,
/// `response.function_call_arguments.done`; `response.output_item.done`; and
/// `response.completed` (or `response.incomplete`) with the whole response last.
#[derive(Debug)]
pub struct StreamEncoder {
    resp: Value,
    id: String,
    seq: u64,
    started: bool,
    open: Option<Item>,
    done: Vec<Value>,
    finish: Option<String>,
    usage: (u32, u32),
}

impl StreamEncoder {
    /// An encoder for the answer to `req` with Tandem's request id, from `model`.
    pub fn new(echo: &Echo, request_id: &str, model: &str, created: u64) -> Self {
        let id = response_id(request_id);
        StreamEncoder {
            resp: echo.response(&id, model, created),
            id,
            seq: 0,
            started: false,
            open: None,
            done: Vec::new(),
            finish: None,
            usage: (0, 0),
        }
    }

    fn ev(&mut self, out: &mut Vec<Event>, ty: &'static str, mut body: Value) {
        body["type"] = json!(ty);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push((ty, body));
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.resp.clone();
        self.ev(out, "response.created", json!({"response": r}));
        let r = self.resp.clone();
        self.ev(out, "response.in_progress", json!({"response": r}));
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let oi = self.done.len();
        match &item {
            Item::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                self.ev(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id,
                    "output_index": oi, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.ev(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id,
                    "output_index": oi, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
            }
            Item::Call { id, arguments, .. } => {
                let (id, arguments) = (id.clone(), arguments.clone());
                self.ev(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id,
                    "output_index": oi, "arguments": arguments}),
                );
            }
        }
        let done = item.done();
        self.ev(
            out,
            "response.output_item.done",
            json!({"output_index": oi, "item": done.clone()}),
        );
        self.done.push(done);
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
                if !matches!(self.open, Some(Item::Message { .. })) {
                    self.close(&mut out);
                    let id = format!("msg_{}", self.id);
                    let oi = self.done.len();
                    self.ev(
                        &mut out,
                        "response.output_item.added",
                        json!({"output_index": oi,
                        "item": {"type": "message", "id": id, "status": "in_progress",
                            "role": "assistant", "content": []}}),
                    );
                    self.ev(
                        &mut out,
                        "response.content_part.added",
                        json!({"item_id": id,
                        "output_index": oi, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []}}),
                    );
                    self.open = Some(Item::Message {
                        id,
                        text: String::new(),
                    });
                }
                let oi = self.done.len();
                if let Some(Item::Message { id, text }) = &mut self.open {
                    text.push_str(t);
                    let id = id.clone();
                    self.ev(
                        &mut out,
                        "response.output_text.delta",
                        json!({"item_id": id,
                        "output_index": oi, "content_index": 0, "delta": t, "logprobs": []}),
                    );
                }
            }
            for d in ch.delta.tool_calls.iter().flatten() {
                let f = d.function.as_ref();
                let same =
                    matches!(&self.open, Some(Item::Call { index, .. }) if *index == d.index);
                if !same {
                    self.close(&mut out);
                    let oi = self.done.len();
                    let id = format!("fc_{}_{}", d.index, self.id);
                    let call_id = d.id.clone().unwrap_or_else(|| id.clone());
                    let name = f.and_then(|f| f.name.clone()).unwrap_or_default();
                    self.ev(
                        &mut out,
                        "response.output_item.added",
                        json!({"output_index": oi,
                        "item": call_item(&id, &call_id, &name, "", "in_progress")}),
                    );
                    self.open = Some(Item::Call {
                        id,
                        index: d.index,
                        call_id,
                        name,
                        arguments: String::new(),
                    });
                }
                let oi = self.done.len();
                if let Some(a) = f
                    .and_then(|f| f.arguments.as_deref())
                    .filter(|a| !a.is_empty())
                    && let Some(Item::Call { id, arguments, .. }) = &mut self.open
                {
                    arguments.push_str(a);
                    let id = id.clone();
                    self.ev(
                        &mut out,
                        "response.function_call_arguments.delta",
                        json!({
                        "item_id": id, "output_index": oi, "delta": a}),
                    );
                }
            }
            if let Some(f) = &ch.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        out
    }

    /// The closing events, ending with `response.completed` (or `response.incomplete`).
    fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let mut r = self.resp.clone();
        r["output"] = Value::Array(self.done.clone());
        r["usage"] = usage_json(self.usage.0, self.usage.1);
        finish_status(&mut r, self.finish.as_deref());
        let ty = if r["status"] == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.ev(&mut out, ty, json!({"response": r}));
        out
    }

    /// An `error` event, then `response.failed`.
    fn error(&mut self, e: &ApiError) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.ev(
            &mut out,
            "error",
            json!({"code": e.code, "message": e.message, "param": e.param}),
        );
        let mut r = self.resp.clone();
        r["status"] = json!("failed");
        r["output"] = Value::Array(self.done.clone());
        r["error"] = json!({"code": e.code.clone().unwrap_or_else(|| "server_error".into()),
            "message": e.message});
        self.ev(&mut out, "response.failed", json!({"response": r}));
        out
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
        parse_request(body.to_string().as_bytes(), false)
    }

    #[test]
    fn items_tools_and_format_map_to_the_internal_request() {
        let req = parse(json!({
            "model": "auto", "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\": \"Taipei\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "23C"},
                {"type": "message", "role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 50, "stream": true, "store": false, "metadata": {"k": "v"}
        }))
        .unwrap();
        let roles: Vec<&str> = req.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(req.messages[2].tool_calls[0].function.name, "weather");
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(req.tool_choice, ToolChoice::Function("weather".into()));
        assert!(matches!(
            req.response_format,
            ResponseFormat::JsonSchema { strict: true, .. }
        ));
        assert_eq!(req.max_tokens, Some(50));
        assert!(req.stream && req.include_usage);
        assert_eq!(req.dialect, Dialect::Responses);
        let plain = parse(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(plain.messages, [ChatMessage::new("user", "hi")]);
    }

    #[test]
    fn malformed_requests_name_the_param() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": 3}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
                "input[0].role",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
                "input[0].output",
            ),
            (
                json!({"model": "m", "input": [{"type": "computer_call"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a b"}]}),
                "tools[0].name",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": 1}]}),
                "tools[0].parameters",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}),
                "tool_choice.name",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
                "text.format.schema",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"model": "m", "input": "x", "frobnicate": 1}),
                "frobnicate",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    #[test]
    fn stream_events_follow_the_item_lifecycle() {
        let req = parse(json!({"model": "m", "input": "hi", "stream": true})).unwrap();
        let mut enc = StreamEncoder::new(&Echo::of(&req), "chatcmpl-7", "m", 0);
        let mut evs = Vec::new();
        evs.extend(enc.chunk(&chunk(
            ChunkDelta {
                content: Some("Hel".into()),
                ..Default::default()
            },
            None,
        )));
        evs.extend(enc.chunk(&chunk(
            ChunkDelta {
                content: Some("lo".into()),
                ..Default::default()
            },
            None,
        )));
        evs.extend(enc.chunk(&chunk(
            ChunkDelta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: Some("call_1".into()),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some("f".into()),
                        arguments: Some("{}".into()),
                    }),
                }]),
                ..Default::default()
            },
            Some("tool_calls"),
        )));
        let mut u = chunk(ChunkDelta::default(), None);
        u.choices.clear();
        u.usage = Some(Usage::new(5, 6));
        evs.extend(enc.chunk(&u));
        evs.extend(enc.finish());
        for (name, v) in &evs {
            assert_eq!(v["type"], *name, "the event name is its type");
        }
        let evs: Vec<Value> = evs.into_iter().map(|(_, v)| v).collect();
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let seqs: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
        let last = &evs[evs.len() - 1]["response"];
        assert_eq!(last["id"], "resp_7");
        assert_eq!(last["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["output"][1]["call_id"], "call_1");
        assert_eq!(last["usage"]["total_tokens"], 11);
    }
}
