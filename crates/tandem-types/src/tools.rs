//! Function tools, tool choice, tool calls and structured-output formats (OpenAI shapes),
//! parsed by hand like the rest of the request so every error names its `param`.
//!
//! JSON schemas are only checked for shape here (an object); whether a schema can be
//! enforced is decided where it is compiled into a grammar (the local engine), which names
//! the keyword it cannot enforce.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest function name, as in OpenAI's API.
pub const MAX_FUNCTION_NAME: usize = 64;
/// Most tools in one request, as in OpenAI's API.
pub const MAX_TOOLS: usize = 128;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments object.
    pub parameters: Value,
    /// OpenAI's strict mode (arguments always follow the schema); Tandem's local engine
    /// constrains arguments either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tools[]`: only function tools exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// Never call a tool (what a request without tools gets).
    #[default]
    None,
    /// The model decides (the default when tools are given).
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this function.
    Function(String),
}

impl ToolChoice {
    /// OpenAI's wire form.
    pub fn to_value(&self) -> Value {
        match self {
            ToolChoice::None => Value::from("none"),
            ToolChoice::Auto => Value::from("auto"),
            ToolChoice::Required => Value::from("required"),
            ToolChoice::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}})
            }
        }
    }
}

/// The tool fields of a request, as a dialect parser produces them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSet {
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which to call.
    pub tool_choice: ToolChoice,
    /// May the model make several calls in one turn.
    pub parallel_tool_calls: bool,
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against `schema`.
    JsonSchema {
        /// `json_schema.name`.
        name: String,
        /// `json_schema.schema`.
        schema: Value,
        /// `json_schema.strict`.
        strict: bool,
    },
}

impl ResponseFormat {
    /// True for the two JSON formats.
    pub fn is_structured(&self) -> bool {
        !matches!(self, ResponseFormat::Text)
    }

    /// OpenAI's wire form.
    pub fn to_value(&self) -> Value {
        match self {
            ResponseFormat::Text => serde_json::json!({"type": "text"}),
            ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => serde_json::json!({"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": strict}}),
        }
    }
}

/// A function call made by the model (in a response, or in an assistant message of the
/// history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// `call_…`; tool results refer to it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name and arguments.
    pub function: FunctionCall,
}

impl ToolCall {
    /// A function call with a fresh-looking id given by the caller.
    pub fn function(id: impl Into<String>, name: impl Into<String>, arguments: String) -> Self {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments,
            },
        }
    }
}

/// `tool_calls[].function`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Arguments as a JSON text.
    pub arguments: String,
}

/// One entry of `delta.tool_calls` in a streamed chunk: id, type and name come once, then
/// argument fragments, all keyed by `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ToolCallDelta {
    /// Which call of the choice this fragment belongs to.
    pub index: u32,
    /// Set in the call's first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in the first fragment.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first fragment) and/or an arguments fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// `delta.tool_calls[].function`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FunctionCallDelta {
    /// The function's name (first fragment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Next piece of the arguments text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn valid_function_name(name: &str) -> bool {
    (1..=MAX_FUNCTION_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn opt_string(
    o: &Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<Option<String>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ApiError::invalid(
            format!("{param}.{key}"),
            format!(
                "Invalid type for '{param}.{key}': expected a string, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn opt_bool(
    o: &Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<Option<bool>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::invalid(
            format!("{param}.{key}"),
            format!(
                "Invalid type for '{param}.{key}': expected a boolean, got {}.",
                type_name(v)
            ),
        )),
    }
}

pub(crate) fn schema_object(
    v: Option<&Value>,
    param: &str,
    default_empty: bool,
) -> Result<Value, ApiError> {
    match v {
        None | Some(Value::Null) if default_empty => {
            Ok(serde_json::json!({"type": "object", "properties": {}}))
        }
        None | Some(Value::Null) => Err(ApiError::invalid(
            param,
            format!("Missing required parameter: '{param}'."),
        )),
        Some(Value::Object(o)) => Ok(Value::Object(o.clone())),
        Some(Value::Bool(true)) if default_empty => Ok(serde_json::json!({"type": "object"})),
        Some(v) => Err(ApiError::invalid(
            param,
            format!(
                "Invalid type for '{param}': expected a JSON schema object, got {}.",
                type_name(v)
            ),
        )),
    }
}

/// Parse `tools` (absent or `null` = no tools).
pub fn parse_tools(v: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(ApiError::invalid(
                "tools",
                format!(
                    "Invalid type for 'tools': expected an array, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "tools",
            "Invalid 'tools': empty array. Expected an array with minimum length 1 (or leave 'tools' out).",
        )
        .with_code("empty_array"));
    }
    if items.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            format!(
                "Invalid 'tools': array too long. Expected at most {MAX_TOOLS} tools, got {}.",
                items.len()
            ),
        ));
    }
    let mut out: Vec<Tool> = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let param = format!("tools[{i}]");
        let Value::Object(t) = t else {
            return Err(ApiError::invalid(
                &param,
                format!("Invalid '{param}': expected an object."),
            ));
        };
        match t.get("type") {
            Some(Value::String(s)) if s == "function" => {}
            Some(Value::String(s)) => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    format!(
                        "Invalid value '{s}' for '{param}.type': only 'function' tools are supported."
                    ),
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    format!("{param}.type"),
                    format!("Missing required parameter: '{param}.type' (expected 'function')."),
                ));
            }
        }
        let fparam = format!("{param}.function");
        let Some(Value::Object(f)) = t.get("function") else {
            return Err(ApiError::invalid(
                &fparam,
                format!("Missing required parameter: '{fparam}' (an object)."),
            ));
        };
        let name = match f.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => {
                return Err(ApiError::invalid(
                    format!("{fparam}.name"),
                    format!("Missing required parameter: '{fparam}.name' (a string)."),
                ));
            }
        };
        if !valid_function_name(&name) {
            return Err(ApiError::invalid(
                format!("{fparam}.name"),
                format!(
                    "Invalid '{fparam}.name': '{name}' must be 1 to {MAX_FUNCTION_NAME} letters, digits, underscores or dashes."
                ),
            ));
        }
        if out.iter().any(|o| o.function.name == name) {
            return Err(ApiError::invalid(
                format!("{fparam}.name"),
                format!("Duplicate function name '{name}' in 'tools'."),
            ));
        }
        let parameters = schema_object(f.get("parameters"), &format!("{fparam}.parameters"), true)?;
        out.push(Tool {
            kind: "function".into(),
            function: FunctionDef {
                name,
                description: opt_string(f, "description", &fparam)?,
                parameters,
                strict: opt_bool(f, "strict", &fparam)?,
            },
        });
    }
    Ok(out)
}

/// Parse `tool_choice` against the parsed `tools`.
pub fn parse_tool_choice(v: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let choice = match v {
        None | Some(Value::Null) => {
            return Ok(if tools.is_empty() {
                ToolChoice::None
            } else {
                ToolChoice::Auto
            });
        }
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "Invalid value '{other}' for 'tool_choice': expected 'none', 'auto', 'required' or an object naming a function."
                    ),
                ));
            }
        },
        Some(Value::Object(o)) => {
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid(
                    "tool_choice.type",
                    "Invalid 'tool_choice.type': expected 'function'.",
                ));
            }
            match o.get("function").and_then(|f| f.get("name")) {
                Some(Value::String(n)) => ToolChoice::Function(n.clone()),
                _ => {
                    return Err(ApiError::invalid(
                        "tool_choice.function.name",
                        "Missing required parameter: 'tool_choice.function.name'.",
                    ));
                }
            }
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "Invalid type for 'tool_choice': expected a string or an object, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    if tools.is_empty() && choice != ToolChoice::None {
        return Err(ApiError::invalid(
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ));
    }
    if let ToolChoice::Function(name) = &choice
        && !tools.iter().any(|t| &t.function.name == name)
    {
        return Err(ApiError::invalid(
            "tool_choice.function.name",
            format!("Invalid 'tool_choice': no function named '{name}' in 'tools'."),
        ));
    }
    Ok(choice)
}

/// Parse `response_format`.
pub fn parse_response_format(v: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let o = match v {
        None | Some(Value::Null) => return Ok(ResponseFormat::Text),
        Some(Value::Object(o)) => o,
        Some(v) => {
            return Err(ApiError::invalid(
                "response_format",
                format!(
                    "Invalid type for 'response_format': expected an object, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(Value::Object(js)) = o.get("json_schema") else {
                return Err(ApiError::invalid(
                    "response_format.json_schema",
                    "Missing required parameter: 'response_format.json_schema' (an object with 'name' and 'schema').",
                ));
            };
            let param = "response_format.json_schema";
            let name = opt_string(js, "name", param)?.ok_or_else(|| {
                ApiError::invalid(
                    "response_format.json_schema.name",
                    "Missing required parameter: 'response_format.json_schema.name'.",
                )
            })?;
            if !valid_function_name(&name) {
                return Err(ApiError::invalid(
                    "response_format.json_schema.name",
                    format!(
                        "Invalid 'response_format.json_schema.name': '{name}' must be 1 to {MAX_FUNCTION_NAME} letters, digits, underscores or dashes."
                    ),
                ));
            }
            opt_string(js, "description", param)?;
            let schema = schema_object(
                js.get("schema"),
                "response_format.json_schema.schema",
                false,
            )?;
            let strict = opt_bool(js, "strict", param)?.unwrap_or(false);
            Ok(ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            })
        }
        Some(other) => Err(ApiError::invalid(
            "response_format.type",
            format!(
                "Invalid value '{other}' for 'response_format.type': expected 'text', 'json_object' or 'json_schema'."
            ),
        )),
        None => Err(ApiError::invalid(
            "response_format.type",
            "Missing required parameter: 'response_format.type'.",
        )),
    }
}

/// Parse `messages[i].tool_calls` of an assistant message.
pub fn parse_message_tool_calls(i: usize, v: Option<&Value>) -> Result<Vec<ToolCall>, ApiError> {
    let param = format!("messages[{i}].tool_calls");
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(ApiError::invalid(
                &param,
                format!(
                    "Invalid type for '{param}': expected an array, got {}.",
                    type_name(v)
                ),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, c) in items.iter().enumerate() {
        let cparam = format!("{param}[{j}]");
        let Value::Object(c) = c else {
            return Err(ApiError::invalid(
                &cparam,
                format!("Invalid '{cparam}': expected an object."),
            ));
        };
        let id = opt_string(c, "id", &cparam)?.ok_or_else(|| {
            ApiError::invalid(
                format!("{cparam}.id"),
                format!("Missing required parameter: '{cparam}.id'."),
            )
        })?;
        if let Some(t) = opt_string(c, "type", &cparam)?
            && t != "function"
        {
            return Err(ApiError::invalid(
                format!("{cparam}.type"),
                format!("Invalid value '{t}' for '{cparam}.type': expected 'function'."),
            ));
        }
        let fparam = format!("{cparam}.function");
        let Some(Value::Object(f)) = c.get("function") else {
            return Err(ApiError::invalid(
                &fparam,
                format!("Missing required parameter: '{fparam}' (an object)."),
            ));
        };
        let name = opt_string(f, "name", &fparam)?.ok_or_else(|| {
            ApiError::invalid(
                format!("{fparam}.name"),
                format!("Missing required parameter: '{fparam}.name'."),
            )
        })?;
        let arguments = match f.get("arguments") {
            Some(Value::String(a)) => a.clone(),
            None | Some(Value::Null) => "{}".into(),
            // Some clients send the object itself; keep it as its JSON text.
            Some(v @ Value::Object(_)) => v.to_string(),
            Some(v) => {
                return Err(ApiError::invalid(
                    format!("{fparam}.arguments"),
                    format!(
                        "Invalid type for '{fparam}.arguments': expected a JSON string, got {}.",
                        type_name(v)
                    ),
                ));
            }
        };
        out.push(ToolCall::function(id, name, arguments));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(v: Value) -> Result<Vec<Tool>, ApiError> {
        parse_tools(Some(&v))
    }

    fn param(e: ApiError) -> String {
        e.param.unwrap_or_default()
    }

    #[test]
    fn tools_parse_and_default_parameters() {
        let t = tools(json!([
            {"type": "function", "function": {"name": "get_weather", "description": "d",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "now"}}
        ]))
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].function.description.as_deref(), Some("d"));
        assert_eq!(t[1].function.parameters["type"], "object");
        assert!(parse_tools(None).unwrap().is_empty());
    }

    #[test]
    fn malformed_tools_name_the_field() {
        let cases = [
            (json!({"a": 1}), "tools"),
            (json!([1]), "tools[0]"),
            (json!([{"type": "retrieval"}]), "tools[0].type"),
            (json!([{"function": {"name": "f"}}]), "tools[0].type"),
            (json!([{"type": "function"}]), "tools[0].function"),
            (
                json!([{"type": "function", "function": {}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "has space"}}]),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                "tools[0].function.parameters",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "description": 3}}]),
                "tools[0].function.description",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "strict": "yes"}}]),
                "tools[0].function.strict",
            ),
            (
                json!([{"type": "function", "function": {"name": "f"}},
                       {"type": "function", "function": {"name": "f"}}]),
                "tools[1].function.name",
            ),
        ];
        for (v, want) in cases {
            let e = tools(v.clone()).unwrap_err();
            assert_eq!(param(e), want, "{v}");
        }
        assert_eq!(param(tools(json!([])).unwrap_err()), "tools");
        let many: Vec<Value> = (0..=MAX_TOOLS)
            .map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}}))
            .collect();
        assert_eq!(param(tools(Value::Array(many)).unwrap_err()), "tools");
    }

    #[test]
    fn tool_choice_forms() {
        let t = tools(json!([{"type": "function", "function": {"name": "f"}}])).unwrap();
        let c = |v: Value| parse_tool_choice(Some(&v), &t);
        assert_eq!(c(json!("none")).unwrap(), ToolChoice::None);
        assert_eq!(c(json!("auto")).unwrap(), ToolChoice::Auto);
        assert_eq!(c(json!("required")).unwrap(), ToolChoice::Required);
        assert_eq!(
            c(json!({"type": "function", "function": {"name": "f"}})).unwrap(),
            ToolChoice::Function("f".into())
        );
        assert_eq!(parse_tool_choice(None, &t).unwrap(), ToolChoice::Auto);
        assert_eq!(parse_tool_choice(None, &[]).unwrap(), ToolChoice::None);
        assert_eq!(param(c(json!("sometimes")).unwrap_err()), "tool_choice");
        assert_eq!(param(c(json!(3)).unwrap_err()), "tool_choice");
        assert_eq!(
            param(c(json!({"type": "function", "function": {"name": "g"}})).unwrap_err()),
            "tool_choice.function.name"
        );
        assert_eq!(
            param(c(json!({"type": "other"})).unwrap_err()),
            "tool_choice.type"
        );
        assert_eq!(
            param(c(json!({"type": "function"})).unwrap_err()),
            "tool_choice.function.name"
        );
        let e = parse_tool_choice(Some(&json!("required")), &[]).unwrap_err();
        assert_eq!(param(e), "tool_choice");
        assert_eq!(
            ToolChoice::Function("f".into()).to_value()["function"]["name"],
            "f"
        );
    }

    #[test]
    fn response_formats() {
        let rf = |v: Value| parse_response_format(Some(&v));
        assert_eq!(rf(json!({"type": "text"})).unwrap(), ResponseFormat::Text);
        assert_eq!(
            rf(json!({"type": "json_object"})).unwrap(),
            ResponseFormat::JsonObject
        );
        let s = rf(
            json!({"type": "json_schema", "json_schema": {"name": "person",
            "schema": {"type": "object"}, "strict": true}}),
        )
        .unwrap();
        assert!(s.is_structured());
        assert_eq!(s.to_value()["json_schema"]["name"], "person");
        let bad = [
            (json!("json"), "response_format"),
            (json!({}), "response_format.type"),
            (json!({"type": "yaml"}), "response_format.type"),
            (
                json!({"type": "json_schema"}),
                "response_format.json_schema",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "p"}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "p", "schema": [1]}}),
                "response_format.json_schema.schema",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "p", "schema": {},
                    "strict": 1}}),
                "response_format.json_schema.strict",
            ),
        ];
        for (v, want) in bad {
            assert_eq!(param(rf(v.clone()).unwrap_err()), want, "{v}");
        }
    }

    #[test]
    fn history_tool_calls() {
        let v = json!([{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": "call_2", "function": {"name": "g", "arguments": {"b": 2}}}]);
        let c = parse_message_tool_calls(1, Some(&v)).unwrap();
        assert_eq!(c[0].function.arguments, "{\"a\":1}");
        assert_eq!(c[1].function.arguments, "{\"b\":2}");
        let bad = [
            (json!({}), "messages[1].tool_calls"),
            (json!([1]), "messages[1].tool_calls[0]"),
            (
                json!([{"function": {"name": "f"}}]),
                "messages[1].tool_calls[0].id",
            ),
            (json!([{"id": "x"}]), "messages[1].tool_calls[0].function"),
            (
                json!([{"id": "x", "function": {}}]),
                "messages[1].tool_calls[0].function.name",
            ),
            (
                json!([{"id": "x", "type": "code", "function": {"name": "f"}}]),
                "messages[1].tool_calls[0].type",
            ),
            (
                json!([{"id": "x", "function": {"name": "f", "arguments": 5}}]),
                "messages[1].tool_calls[0].function.arguments",
            ),
        ];
        for (v, want) in bad {
            assert_eq!(
                param(parse_message_tool_calls(1, Some(&v)).unwrap_err()),
                want,
                "{v}"
            );
        }
    }
}
