//! OpenAI-compatible request parsing and response bodies.
//!
//! Requests are parsed by hand from a [`serde_json::Value`] rather than derived, so that
//! every error names the parameter at fault (`param`) the way OpenAI does, and unknown or
//! unsupported parameters are rejected with a 400 instead of being silently ignored (unless
//! the server is configured to drop them).

use crate::error::ApiError;
use crate::tools::{
    ResponseFormat, Tool, ToolCall, ToolCallDelta, ToolChoice, parse_message_tool_calls,
    parse_response_format, parse_tool_choice, parse_tools, type_name,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which API a client spoke (see [`crate::dialect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// `POST /v1/chat/completions` (and the internal requests Tandem makes itself).
    #[default]
    OpenAiChat,
    /// `POST /v1/messages` (Anthropic Messages).
    Anthropic,
    /// `POST /v1/responses` (OpenAI Responses).
    Responses,
}

impl Dialect {
    /// The name the ledger and metrics record.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Responses => "responses",
        }
    }
}

/// Largest `n` accepted (choices per prompt).
pub const MAX_N: u32 = 16;
/// Largest number of `stop` sequences, as in OpenAI's API.
pub const MAX_STOP: usize = 4;
/// Largest `top_logprobs`.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Sampling and stopping parameters shared by chat and legacy completions.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling mass, (0, 1].
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens; 0 disables.
    pub top_k: u32,
    /// Drop tokens whose probability is below `min_p` × the best token's; 0 disables.
    pub min_p: f32,
    /// Seed for the random generator; `None` draws one.
    pub seed: Option<u64>,
    /// OpenAI frequency penalty, [-2, 2].
    pub frequency_penalty: f32,
    /// OpenAI presence penalty, [-2, 2].
    pub presence_penalty: f32,
    /// llama.cpp-style repetition penalty (1 disables).
    pub repeat_penalty: f32,
    /// Stop sequences; the matched text is not returned.
    pub stop: Vec<String>,
    /// Token id → additive bias, [-100, 100].
    pub logit_bias: Vec<(i32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            repeat_penalty: 1.0,
            stop: Vec::new(),
            logit_bias: Vec::new(),
        }
    }
}

/// A chat message after validation; content parts are flattened into text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text content.
    pub content: String,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Calls an assistant message made (history of a tool-using conversation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }
}

/// A validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Requested model id.
    pub model: String,
    /// Conversation, at least one message.
    pub messages: Vec<ChatMessage>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// `max_completion_tokens` or `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Choices to generate.
    pub n: u32,
    /// Stream as server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Return log-probabilities of the sampled tokens.
    pub logprobs: bool,
    /// Alternatives per position when `logprobs` is set.
    pub top_logprobs: u32,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool to call (`None` when there are no tools).
    pub tool_choice: ToolChoice,
    /// May the model make several calls in one turn (default true).
    pub parallel_tool_calls: bool,
    /// Free text, any JSON object, or JSON following a schema.
    pub response_format: ResponseFormat,
    /// Fields Tandem defines beyond OpenAI's (the `tandem` object), passed through untouched.
    pub extensions: Map<String, Value>,
    /// The API the client spoke.
    pub dialect: Dialect,
    /// Client headers forwarded unchanged to upstreams of the client's dialect
    /// (`anthropic-version`, `anthropic-beta`), names lower-case.
    pub forward_headers: Vec<(String, String)>,
}

impl ChatRequest {
    /// A request for `messages` to `model` with every other field at its default.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            sampling: SamplingParams::default(),
            max_tokens: None,
            n: 1,
            stream: false,
            include_usage: false,
            logprobs: false,
            top_logprobs: 0,
            tools: Vec::new(),
            tool_choice: ToolChoice::None,
            parallel_tool_calls: true,
            response_format: ResponseFormat::Text,
            extensions: Map::new(),
            dialect: Dialect::OpenAiChat,
            forward_headers: Vec::new(),
        }
    }

    /// True when the answer may or must be a tool call.
    pub fn wants_tools(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != ToolChoice::None
    }
}

/// The `prompt` of a legacy completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Text to tokenize.
    Text(String),
    /// Already tokenized.
    Tokens(Vec<i32>),
}

/// A validated `POST /v1/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// Requested model id.
    pub model: String,
    /// One or more prompts; each gets `n` choices.
    pub prompts: Vec<Prompt>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Defaults to 16 as in OpenAI's legacy API.
    pub max_tokens: Option<u32>,
    /// Choices per prompt.
    pub n: u32,
    /// Stream as server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Legacy integer logprobs (0–5): alternatives per position.
    pub logprobs: Option<u32>,
    /// Prepend the prompt to the completion text.
    pub echo: bool,
}

/// The `input` of an embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddingInput {
    /// Texts to embed.
    Texts(Vec<String>),
    /// Token-id arrays to embed.
    Tokens(Vec<Vec<u32>>),
}

/// Embedding vector encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// JSON array of floats.
    Float,
    /// Base64 of little-endian f32 (the Python SDK's default).
    Base64,
}

/// A validated `POST /v1/embeddings` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingRequest {
    /// Requested model id.
    pub model: String,
    /// Inputs, at least one.
    pub input: EmbeddingInput,
    /// Output encoding.
    pub encoding_format: EncodingFormat,
    /// Requested dimensions, if any (must equal the model's).
    pub dimensions: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------------------------

/// Parse a request body into a JSON object, with OpenAI-shaped errors for invalid UTF-8,
/// malformed JSON and non-object bodies.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; expected a JSON object.",
        ));
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::bad_request(format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}).",
            e.valid_up_to()
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}.",
            type_name(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}."
        ))),
    }
}

/// Reject parameters that are not in `known`; ignore them when `drop_unknown` is set.
pub(crate) fn check_unknown(
    obj: &Map<String, Value>,
    known: &[&str],
    drop_unknown: bool,
) -> Result<(), ApiError> {
    if drop_unknown {
        return Ok(());
    }
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::invalid(
                k.clone(),
                format!("Unrecognized request argument supplied: {k}"),
            )
            .with_code("unsupported_parameter"));
        }
    }
    Ok(())
}

pub(crate) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn get_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ApiError::invalid(
            key,
            format!(
                "Invalid type for '{key}': expected a string, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn get_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::invalid(
            key,
            format!(
                "Invalid type for '{key}': expected a boolean, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn get_f32(
    obj: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, ApiError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if !(min..=max).contains(&x) {
                return Err(ApiError::invalid(
                    key,
                    format!("Invalid value for '{key}': {x} is not between {min} and {max}."),
                )
                .with_code("invalid_value"));
            }
            Ok(Some(x as f32))
        }
        Some(v) => Err(ApiError::invalid(
            key,
            format!(
                "Invalid type for '{key}': expected a number, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn get_u64(
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                key,
                format!(
                    "Invalid value for '{key}': {n} is not an integer between {min} and {max}."
                ),
            )
            .with_code("invalid_value")),
        },
        Some(v) => Err(ApiError::invalid(
            key,
            format!(
                "Invalid type for '{key}': expected an integer, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn get_u32(
    obj: &Map<String, Value>,
    key: &str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ApiError> {
    Ok(get_u64(obj, key, u64::from(min), u64::from(max))?.map(|x| x as u32))
}

fn get_seed(obj: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match present(obj, "seed") {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if let Some(i) = n.as_i64() {
                // OpenAI accepts negative seeds; map them onto u64 deterministically.
                Ok(Some(i as u64))
            } else {
                Err(ApiError::invalid(
                    "seed",
                    "Invalid value for 'seed': expected an integer.",
                ))
            }
        }
        Some(v) => Err(ApiError::invalid(
            "seed",
            format!(
                "Invalid type for 'seed': expected an integer, got {}.",
                type_name(v)
            ),
        )),
    }
}

fn get_stop(obj: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let stops = match present(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    "stop",
                    format!(
                        "Invalid 'stop': at most {MAX_STOP} sequences are allowed, got {}.",
                        items.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        return Err(ApiError::invalid(
                            "stop",
                            format!(
                                "Invalid 'stop': every item must be a string, got {}.",
                                type_name(other)
                            ),
                        ));
                    }
                }
            }
            out
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "Invalid type for 'stop': expected a string or a list of strings, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "Invalid 'stop': sequences must not be empty.",
        ));
    }
    Ok(stops)
}

fn get_logit_bias(obj: &Map<String, Value>) -> Result<Vec<(i32, f32)>, ApiError> {
    let Some(v) = present(obj, "logit_bias") else {
        return Ok(Vec::new());
    };
    let Value::Object(m) = v else {
        return Err(ApiError::invalid(
            "logit_bias",
            "Invalid type for 'logit_bias': expected an object mapping token ids to biases.",
        ));
    };
    let mut out = Vec::with_capacity(m.len());
    for (k, b) in m {
        let id: i32 = k.parse().map_err(|_| {
            ApiError::invalid(
                "logit_bias",
                format!("Invalid 'logit_bias' key {k:?}: expected a token id."),
            )
        })?;
        let bias = b.as_f64().filter(|x| (-100.0..=100.0).contains(x)).ok_or_else(|| {
            ApiError::invalid(
                "logit_bias",
                format!("Invalid 'logit_bias' value for token {k}: expected a number in [-100, 100]."),
            )
        })?;
        out.push((id, bias as f32));
    }
    Ok(out)
}

fn parse_sampling(obj: &Map<String, Value>) -> Result<SamplingParams, ApiError> {
    let d = SamplingParams::default();
    Ok(SamplingParams {
        temperature: get_f32(obj, "temperature", 0.0, 2.0)?.unwrap_or(d.temperature),
        top_p: {
            let p = get_f32(obj, "top_p", 0.0, 1.0)?.unwrap_or(d.top_p);
            // top_p = 0 is treated as "only the most likely token", as OpenAI does.
            if p <= 0.0 { f32::MIN_POSITIVE } else { p }
        },
        top_k: get_u32(obj, "top_k", 0, 1_000_000)?.unwrap_or(d.top_k),
        min_p: get_f32(obj, "min_p", 0.0, 1.0)?.unwrap_or(d.min_p),
        seed: get_seed(obj)?,
        frequency_penalty: get_f32(obj, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        presence_penalty: get_f32(obj, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        repeat_penalty: get_f32(obj, "repeat_penalty", 0.0, 10.0)?.unwrap_or(1.0),
        stop: get_stop(obj)?,
        logit_bias: get_logit_bias(obj)?,
    })
}

pub(crate) fn get_model(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match get_str(obj, "model")? {
        Some(m) if !m.trim().is_empty() => Ok(m),
        Some(_) => Err(ApiError::invalid(
            "model",
            "Invalid 'model': must not be empty.",
        )),
        None => Err(ApiError::invalid(
            "model",
            "Missing required parameter: 'model'.",
        )),
    }
}

fn get_include_usage(obj: &Map<String, Value>, stream: bool) -> Result<bool, ApiError> {
    match present(obj, "stream_options") {
        None => Ok(false),
        Some(Value::Object(so)) => {
            if !stream {
                return Err(ApiError::invalid(
                    "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                ));
            }
            match so.get("include_usage") {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(ApiError::invalid(
                    "stream_options.include_usage",
                    "Invalid type for 'stream_options.include_usage': expected a boolean.",
                )),
            }
        }
        Some(_) => Err(ApiError::invalid(
            "stream_options",
            "Invalid type for 'stream_options': expected an object.",
        )),
    }
}

/// Parameters that exist in OpenAI's API but that Tandem does not implement: rejected with a
/// clear message naming them (never silently ignored, since they change the output).
const CHAT_UNSUPPORTED: &[&str] = &[
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
];

const CHAT_KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "logit_bias",
    "n",
    "logprobs",
    "top_logprobs",
    "stream",
    "stream_options",
    "response_format",
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "tandem",
];

fn parse_content(idx: usize, v: Option<&Value>) -> Result<String, ApiError> {
    let param = format!("messages[{idx}].content");
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let ty = p.get("type").and_then(Value::as_str);
                match (ty, p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    (Some("text"), _) => {
                        return Err(ApiError::invalid(
                            format!("{param}[{j}].text"),
                            "A text content part needs a string 'text'.",
                        ));
                    }
                    (Some(other), _) => {
                        return Err(ApiError::invalid(
                            format!("{param}[{j}].type"),
                            format!(
                                "Content parts of type '{other}' are not supported by this model; only 'text'."
                            ),
                        ));
                    }
                    (None, _) => {
                        return Err(ApiError::invalid(
                            format!("{param}[{j}]"),
                            "Every content part needs a 'type'.",
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(other) => Err(ApiError::invalid(
            param,
            format!(
                "Invalid type for message content: expected a string or an array of parts, got {}.",
                type_name(other)
            ),
        )),
    }
}

fn parse_messages(obj: &Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match present(obj, "messages") {
        None => {
            return Err(ApiError::invalid(
                "messages",
                "Missing required parameter: 'messages'.",
            ));
        }
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "Invalid type for 'messages': expected an array, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
        )
        .with_code("empty_array"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::invalid(
                format!("messages[{i}]"),
                "Every message must be an object.",
            ));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.clone(),
            _ => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    "Every message needs a string 'role'.",
                ));
            }
        };
        if !matches!(
            role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!(
                    "Invalid value '{role}' for 'messages[{i}].role': expected one of system, developer, user, assistant, tool."
                ),
            ));
        }
        let tool_calls = parse_message_tool_calls(i, m.get("tool_calls"))?;
        if !tool_calls.is_empty() && role != "assistant" {
            return Err(ApiError::invalid(
                format!("messages[{i}].tool_calls"),
                "Only assistant messages carry 'tool_calls'.",
            ));
        }
        let tool_call_id = match m.get("tool_call_id") {
            Some(Value::String(id)) => Some(id.clone()),
            None | Some(Value::Null) => None,
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_call_id"),
                    "'tool_call_id' must be a string.",
                ));
            }
        };
        if role == "tool" && tool_call_id.is_none() {
            return Err(ApiError::invalid(
                format!("messages[{i}].tool_call_id"),
                format!(
                    "Missing required parameter: 'messages[{i}].tool_call_id' (a tool message answers a call)."
                ),
            ));
        }
        let content = parse_content(i, m.get("content"))?;
        let name = match m.get("name") {
            Some(Value::String(n)) => Some(n.clone()),
            None | Some(Value::Null) => None,
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].name"),
                    "'name' must be a string.",
                ));
            }
        };
        out.push(ChatMessage {
            role,
            content,
            name,
            tool_calls,
            tool_call_id,
        });
    }
    if out
        .iter()
        .all(|m| m.content.trim().is_empty() && m.tool_calls.is_empty())
    {
        return Err(ApiError::invalid(
            "messages",
            "All messages are empty: there is nothing to answer.",
        ));
    }
    Ok(out)
}

/// Parse and validate a chat completion request.
pub fn parse_chat_request(body: &[u8], drop_unknown: bool) -> Result<ChatRequest, ApiError> {
    let obj = parse_object(body)?;
    chat_request_from_object(obj, drop_unknown)
}

/// Validate an already-parsed chat completion body.
pub fn chat_request_from_object(
    obj: Map<String, Value>,
    drop_unknown: bool,
) -> Result<ChatRequest, ApiError> {
    for k in CHAT_UNSUPPORTED {
        if present(&obj, k).is_some() && !drop_unknown {
            return Err(ApiError::invalid(
                *k,
                format!("The '{k}' parameter is not supported by this server."),
            )
            .with_code("unsupported_parameter"));
        }
    }
    check_unknown(&obj, &[CHAT_KNOWN, CHAT_UNSUPPORTED].concat(), drop_unknown)?;
    let response_format = parse_response_format(present(&obj, "response_format"))?;
    let tools = parse_tools(present(&obj, "tools"))?;
    let tool_choice = parse_tool_choice(present(&obj, "tool_choice"), &tools)?;
    let parallel_tool_calls = get_bool(&obj, "parallel_tool_calls")?.unwrap_or(true);
    let model = get_model(&obj)?;
    let messages = parse_messages(&obj)?;
    let stream = get_bool(&obj, "stream")?.unwrap_or(false);
    let mct = get_u32(&obj, "max_completion_tokens", 1, u32::MAX)?;
    let mt = get_u32(&obj, "max_tokens", 1, u32::MAX)?;
    let logprobs = get_bool(&obj, "logprobs")?.unwrap_or(false);
    let top_logprobs = get_u32(&obj, "top_logprobs", 0, MAX_TOP_LOGPROBS)?;
    if top_logprobs.is_some_and(|t| t > 0) && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "'top_logprobs' requires 'logprobs' to be true.",
        ));
    }
    let mut extensions = Map::new();
    if let Some(t) = obj.get("tandem") {
        extensions.insert("tandem".into(), t.clone());
    }
    Ok(ChatRequest {
        include_usage: get_include_usage(&obj, stream)?,
        sampling: parse_sampling(&obj)?,
        max_tokens: mct.or(mt),
        n: get_u32(&obj, "n", 1, MAX_N)?.unwrap_or(1),
        stream,
        logprobs,
        top_logprobs: top_logprobs.unwrap_or(0),
        model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        extensions,
        dialect: Dialect::OpenAiChat,
        forward_headers: Vec::new(),
    })
}

const COMPLETION_KNOWN: &[&str] = &[
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "logit_bias",
    "n",
    "best_of",
    "logprobs",
    "echo",
    "stream",
    "stream_options",
    "suffix",
    "user",
];

fn parse_prompts(obj: &Map<String, Value>) -> Result<Vec<Prompt>, ApiError> {
    let bad = |msg: &str| ApiError::invalid("prompt", msg.to_string());
    let v = present(obj, "prompt").ok_or_else(|| bad("Missing required parameter: 'prompt'."))?;
    let to_tokens = |items: &[Value]| -> Result<Vec<i32>, ApiError> {
        items
            .iter()
            .map(|t| {
                t.as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .filter(|x| *x >= 0)
                    .ok_or_else(|| bad("Token arrays must contain non-negative integers."))
            })
            .collect()
    };
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(items) if items.is_empty() => {
            return Err(bad("Invalid 'prompt': empty array."));
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|x| x.as_str().map(|s| Prompt::Text(s.to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("A list of prompts must contain only strings."))?,
            Value::Number(_) => vec![Prompt::Tokens(to_tokens(items)?)],
            Value::Array(_) => items
                .iter()
                .map(|x| match x {
                    Value::Array(inner) if !inner.is_empty() => {
                        to_tokens(inner).map(Prompt::Tokens)
                    }
                    _ => Err(bad(
                        "A list of token arrays must contain only non-empty integer arrays.",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(bad(&format!(
                    "Invalid 'prompt': expected strings or token arrays, got {}.",
                    type_name(other)
                )));
            }
        },
        other => {
            return Err(bad(&format!(
                "Invalid type for 'prompt': expected a string or a list, got {}.",
                type_name(other)
            )));
        }
    };
    if prompts.len() > 64 {
        return Err(bad("At most 64 prompts are accepted per request."));
    }
    Ok(prompts)
}

/// Parse and validate a legacy completion request.
pub fn parse_completion_request(
    body: &[u8],
    drop_unknown: bool,
) -> Result<CompletionRequest, ApiError> {
    let obj = parse_object(body)?;
    check_unknown(&obj, COMPLETION_KNOWN, drop_unknown)?;
    if get_str(&obj, "suffix")?.is_some_and(|s| !s.is_empty()) && !drop_unknown {
        return Err(ApiError::invalid(
            "suffix",
            "The 'suffix' parameter is not supported by this server.",
        )
        .with_code("unsupported_parameter"));
    }
    let model = get_model(&obj)?;
    let prompts = parse_prompts(&obj)?;
    let stream = get_bool(&obj, "stream")?.unwrap_or(false);
    let n = get_u32(&obj, "n", 1, MAX_N)?.unwrap_or(1);
    if let Some(b) = get_u32(&obj, "best_of", 1, MAX_N)?
        && b != n
        && !drop_unknown
    {
        return Err(ApiError::invalid(
            "best_of",
            "'best_of' different from 'n' is not supported.",
        ));
    }
    if prompts.len() as u32 * n > 64 {
        return Err(ApiError::invalid(
            "n",
            "Too many choices: prompts × n must be at most 64.",
        ));
    }
    Ok(CompletionRequest {
        include_usage: get_include_usage(&obj, stream)?,
        sampling: parse_sampling(&obj)?,
        max_tokens: get_u32(&obj, "max_tokens", 0, u32::MAX)?,
        n,
        stream,
        logprobs: get_u32(&obj, "logprobs", 0, 5)?,
        echo: get_bool(&obj, "echo")?.unwrap_or(false),
        model,
        prompts,
    })
}

const EMBEDDING_KNOWN: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];

/// Largest number of inputs in one embeddings request (as OpenAI).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Parse and validate an embeddings request.
pub fn parse_embedding_request(
    body: &[u8],
    drop_unknown: bool,
) -> Result<EmbeddingRequest, ApiError> {
    let obj = parse_object(body)?;
    check_unknown(&obj, EMBEDDING_KNOWN, drop_unknown)?;
    let model = get_model(&obj)?;
    let bad = |msg: String| ApiError::invalid("input", msg);
    let input = match present(&obj, "input") {
        None => return Err(bad("Missing required parameter: 'input'.".into())),
        Some(Value::String(s)) => EmbeddingInput::Texts(vec![s.clone()]),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad(
                "Invalid 'input': empty array. Expected at least one input.".into(),
            ));
        }
        Some(Value::Array(items)) if items.len() > MAX_EMBEDDING_INPUTS => {
            return Err(bad(format!(
                "Invalid 'input': at most {MAX_EMBEDDING_INPUTS} inputs per request."
            )));
        }
        Some(Value::Array(items)) => match &items[0] {
            Value::String(_) => EmbeddingInput::Texts(
                items
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("A list of inputs must contain only strings.".into()))?,
            ),
            Value::Number(_) => {
                EmbeddingInput::Tokens(vec![to_u32s(items).ok_or_else(|| {
                    bad("Token arrays must contain non-negative integers.".into())
                })?])
            }
            Value::Array(_) => EmbeddingInput::Tokens(
                items
                    .iter()
                    .map(|x| x.as_array().and_then(|a| to_u32s(a)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad("A list of token arrays must contain only integer arrays.".into())
                    })?,
            ),
            other => {
                return Err(bad(format!(
                    "Invalid 'input': expected strings or token arrays, got {}.",
                    type_name(other)
                )));
            }
        },
        Some(v) => {
            return Err(bad(format!(
                "Invalid type for 'input': expected a string or a list, got {}.",
                type_name(v)
            )));
        }
    };
    let encoding_format = match get_str(&obj, "encoding_format")?.as_deref() {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!(
                    "Invalid value '{other}' for 'encoding_format': expected 'float' or 'base64'."
                ),
            ));
        }
    };
    Ok(EmbeddingRequest {
        model,
        input,
        encoding_format,
        dimensions: get_u32(&obj, "dimensions", 1, 1 << 16)?,
    })
}

fn to_u32s(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|t| t.as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Token accounting.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt(s).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
}

impl Usage {
    /// Usage with `total_tokens` filled in.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// One alternative in `top_logprobs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
}

/// Log-probability of one sampled token (chat shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenLogprob {
    /// Token text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Vec<u8>,
    /// Most likely alternatives at this position.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs` of a chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChoiceLogprobs {
    /// Per-token entries.
    pub content: Vec<TokenLogprob>,
}

/// An assistant message in a response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: String,
    /// Generated text; `null` on the wire when the message is only tool calls.
    #[serde(
        serialize_with = "content_or_null",
        deserialize_with = "null_as_empty",
        default
    )]
    pub content: String,
    /// Function calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl ResponseMessage {
    /// An assistant text answer.
    pub fn text(content: impl Into<String>) -> Self {
        ResponseMessage {
            role: "assistant".into(),
            content: content.into(),
            tool_calls: Vec::new(),
        }
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn content_or_null<S: serde::Serializer>(c: &str, s: S) -> Result<S::Ok, S::Error> {
    if c.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(c)
    }
}

/// One choice of a chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatChoice {
    /// Index among the choices.
    pub index: u32,
    /// The answer.
    pub message: ResponseMessage,
    /// Log-probabilities, when asked for.
    pub logprobs: Option<ChoiceLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: Option<String>,
}

/// `chat.completion` response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// Build fingerprint.
    pub system_fingerprint: String,
    /// The answers.
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    pub usage: Usage,
    /// Tandem's own metadata (routing, citations), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tandem: Option<Value>,
}

impl ChatCompletion {
    /// The first choice's text (empty when there is no choice).
    pub fn text(&self) -> String {
        self.choices
            .first()
            .map(|ch| ch.message.content.clone())
            .unwrap_or_default()
    }
}

/// Delta of a streamed chat chunk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkDelta {
    /// Present in the first chunk of each choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// One choice of a streamed chunk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkChoice {
    /// Choice index.
    pub index: u32,
    /// The change.
    pub delta: ChunkDelta,
    /// Log-probabilities of the tokens in this chunk.
    pub logprobs: Option<ChoiceLogprobs>,
    /// Set on the last chunk of the choice.
    pub finish_reason: Option<String>,
}

/// `chat.completion.chunk` event body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatCompletionChunk {
    /// Same id for every chunk of a response.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answers.
    pub model: String,
    /// Build fingerprint.
    pub system_fingerprint: String,
    /// Choices touched by this chunk (empty in the usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// `null` except in the final usage chunk.
    pub usage: Option<Usage>,
}

/// Legacy logprobs (`/v1/completions`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LegacyLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<Option<f32>>,
    /// Alternatives per position.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    /// Character offset of each token in the returned text.
    pub text_offset: Vec<u32>,
}

/// One choice of a legacy completion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompletionChoice {
    /// Generated text.
    pub text: String,
    /// Index: prompt index × n + choice.
    pub index: u32,
    /// Legacy logprobs when asked for.
    pub logprobs: Option<LegacyLogprobs>,
    /// `stop` or `length` (null in intermediate stream chunks).
    pub finish_reason: Option<String>,
}

/// `text_completion` body (also each streamed chunk).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Completion {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Model that answered.
    pub model: String,
    /// Build fingerprint.
    pub system_fingerprint: String,
    /// The answers.
    pub choices: Vec<CompletionChoice>,
    /// Token usage (null in intermediate stream chunks).
    pub usage: Option<Usage>,
}

/// One embedding in a response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// Input index.
    pub index: u32,
    /// Float array or base64 string.
    pub embedding: Value,
}

/// Embeddings usage.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbeddingUsage {
    /// Tokens embedded.
    pub prompt_tokens: u32,
    /// Same as `prompt_tokens`.
    pub total_tokens: u32,
}

/// `/v1/embeddings` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One per input, in order.
    pub data: Vec<EmbeddingData>,
    /// Model used.
    pub model: String,
    /// Token usage.
    pub usage: EmbeddingUsage,
}

/// An entry of `/v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelObject {
    /// Model id.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds when loaded.
    pub created: u64,
    /// Owner string.
    pub owned_by: String,
}

/// `/v1/models` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// Models.
    pub data: Vec<ModelObject>,
}

/// Encode an embedding as base64 of little-endian f32, as the OpenAI SDK expects.
pub fn embedding_to_base64(v: &[f32]) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.as_bytes(), false)
    }

    #[test]
    fn minimal_chat_request() {
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.model, "m");
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.n, 1);
        assert!(!r.stream);
        assert_eq!(r.sampling.temperature, 1.0);
    }

    #[test]
    fn content_parts_are_flattened() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].content, "ab");
        let e = chat(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    #[test]
    fn max_completion_tokens_wins_and_stop_forms() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":7,"stop":"\n"}"#,
        )
        .unwrap();
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.sampling.stop, vec!["\n".to_string()]);
        let r =
            chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b"]}"#)
                .unwrap();
        assert_eq!(r.sampling.stop.len(), 2);
    }

    #[test]
    fn malformed_chat_requests_name_the_param() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("[]", None),
            ("{\"model\":", None),
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (r#"{"model":"m","messages":"hi"}"#, Some("messages")),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":42}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":""}]}"#,
                Some("messages"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1.5}"#,
                Some("top_p"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#,
                Some("n"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":1.5}"#,
                Some("n"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-3}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                Some("stop"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                Some("stop"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":""}"#,
                Some("stop"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":3}"#,
                Some("top_logprobs"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}"#,
                Some("top_logprobs"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                Some("stream_options"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#,
                Some("tools"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frobnicate":1}"#,
                Some("frobnicate"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#,
                Some("response_format.type"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}"#,
                Some("tool_choice"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                Some("messages[0].tool_call_id"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"id":"c","function":{"name":"f"}}]}]}"#,
                Some("messages[0].tool_calls"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"parallel_tool_calls":"no"}"#,
                Some("parallel_tool_calls"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"abc":1}}"#,
                Some("logit_bias"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frequency_penalty":-3}"#,
                Some("frequency_penalty"),
            ),
        ];
        for (body, param) in cases {
            let e = chat(body).expect_err(body);
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), *param, "{body}: {}", e.message);
        }
    }

    #[test]
    fn invalid_utf8_is_a_400() {
        let e = parse_chat_request(b"{\"model\":\"\xff\"}", false).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn unknown_params_dropped_when_configured() {
        let r = parse_chat_request(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"frobnicate":1}"#,
            true,
        );
        assert!(r.is_ok());
    }

    #[test]
    fn completion_prompt_forms() {
        let p = |b: &str| parse_completion_request(b.as_bytes(), false);
        assert_eq!(
            p(r#"{"model":"m","prompt":"a"}"#).unwrap().prompts,
            vec![Prompt::Text("a".into())]
        );
        assert_eq!(
            p(r#"{"model":"m","prompt":["a","b"]}"#)
                .unwrap()
                .prompts
                .len(),
            2
        );
        assert_eq!(
            p(r#"{"model":"m","prompt":[1,2,3]}"#).unwrap().prompts,
            vec![Prompt::Tokens(vec![1, 2, 3])]
        );
        assert_eq!(
            p(r#"{"model":"m","prompt":[[1],[2,3]]}"#)
                .unwrap()
                .prompts
                .len(),
            2
        );
        for bad in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","prompt":[]}"#,
            r#"{"model":"m","prompt":["a",1]}"#,
            r#"{"model":"m","prompt":[-1]}"#,
            r#"{"model":"m","prompt":{}}"#,
            r#"{"model":"m","prompt":[[]]}"#,
            r#"{"model":"m","prompt":"a","logprobs":6}"#,
            r#"{"model":"m","prompt":"a","logprobs":true}"#,
            r#"{"model":"m","prompt":"a","suffix":"z"}"#,
            r#"{"model":"m","prompt":"a","best_of":3}"#,
        ] {
            let e = p(bad).expect_err(bad);
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.param.is_some(), "{bad}");
        }
    }

    #[test]
    fn embedding_inputs() {
        let p = |b: &str| parse_embedding_request(b.as_bytes(), false);
        let r = p(r#"{"model":"m","input":"hello"}"#).unwrap();
        assert_eq!(r.input, EmbeddingInput::Texts(vec!["hello".into()]));
        assert_eq!(r.encoding_format, EncodingFormat::Float);
        let r = p(r#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#).unwrap();
        assert_eq!(r.encoding_format, EncodingFormat::Base64);
        assert_eq!(
            p(r#"{"model":"m","input":[[1,2],[3]]}"#).unwrap().input,
            EmbeddingInput::Tokens(vec![vec![1, 2], vec![3]])
        );
        for bad in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":5}"#,
            r#"{"model":"m","input":["a",{}]}"#,
            r#"{"model":"m","input":"a","encoding_format":"hex"}"#,
            r#"{"model":"m","input":[1.5]}"#,
        ] {
            let e = p(bad).expect_err(bad);
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.param.is_some(), "{bad}");
        }
    }

    #[test]
    fn base64_roundtrip_little_endian() {
        let v = [1.0f32, -2.5, 0.125];
        let s = embedding_to_base64(&v);
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&s)
            .unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, v);
    }
}
