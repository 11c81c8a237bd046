//! The tool-call format of the bundled models (Qwen2.5 / Hermes): the model writes
//! `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` for each call. This module
//! describes tools to a template that cannot, builds the grammar that holds the model to
//! the declared functions and their parameter schemas, and parses the output back into calls,
//! incrementally for streams.

use crate::constrain::{GrammarSpec, Trigger, with_layout};
use serde_json::{Value, json};
use tandem_types::tools::{Tool, ToolCall, ToolChoice};

/// Opens a call.
pub const OPEN: &str = "<tool_call>";
/// Closes a call.
pub const CLOSE: &str = "</tool_call>";

/// The system-message text that offers `tools` to a model whose template does not render
/// them (the wording Qwen2.5's own template uses).
pub fn system_prompt(tools: &[Tool]) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&crate::pyjson::to_string(
            &serde_json::to_value(t).unwrap_or_default(),
        ));
    }
    s.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and \
         arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": \
         <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
    );
    s
}

/// A history call in Hugging Face's template shape: `arguments` as an object when it parses.
pub fn hf_tool_call(c: &ToolCall) -> Value {
    let args = serde_json::from_str::<Value>(&c.function.arguments)
        .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
    json!({"id": c.id, "type": "function",
           "function": {"name": c.function.name, "arguments": args}})
}

/// A tool result written as text, for templates without a `tool` role.
pub fn tool_response_text(content: &str) -> String {
    format!("<tool_response>\n{content}\n</tool_response>")
}

/// An assistant turn with calls, written as the model writes them.
pub fn calls_as_text(content: &str, calls: &[ToolCall]) -> String {
    let mut s = content.to_string();
    for c in calls {
        let call = hf_tool_call(c);
        let body = json!({"name": c.function.name, "arguments": call["function"]["arguments"]});
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(OPEN);
        s.push('\n');
        s.push_str(&crate::pyjson::to_string(&body));
        s.push('\n');
        s.push_str(CLOSE);
    }
    s
}

/// How the model is held to its tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolGrammar {
    /// From the first token.
    Strict(GrammarSpec),
    /// Free text until one of these triggers, then its grammar.
    Lazy(Vec<(Trigger, GrammarSpec)>),
}

/// Where a bare call may begin: the start of the output, optionally in a code fence,
/// `{"name": "` (small models often write the call as a JSON block instead of in the tags).
pub const BARE_CALL_START: &str = r#"^\s*(?:```(?:json)?\s*)?\{\s*"name"\s*:\s*""#;

/// The grammar of the model's calls to `tools` under `choice`.
///
/// * `required` / a named function: strict, `<tool_call>` first.
/// * `auto`: lazy, on `<tool_call>` (then the tagged format) or on a bare call at the start
///   of the output (then the function name, its arguments and the closing brace).
/// * `auto` with `text_schema` (a structured-output request that also offers tools):
///   strict, either an answer following the schema or tagged calls.
pub fn grammar(
    tools: &[Tool],
    choice: &ToolChoice,
    parallel: bool,
    text_schema: Option<&Value>,
) -> ToolGrammar {
    let allowed: Vec<&Tool> = match choice {
        ToolChoice::Function(name) => tools.iter().filter(|t| &t.function.name == name).collect(),
        _ => tools.iter().collect(),
    };
    let calls: Vec<Value> = allowed
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": t.function.name},
                    "arguments": t.function.parameters,
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    let call_schema = if calls.len() == 1 {
        calls.into_iter().next().unwrap_or_default()
    } else {
        json!({"anyOf": calls})
    };
    let call = format!("call: %json {}", with_layout(&call_schema));
    let more = if parallel {
        "(\"\\n<tool_call>\\n\" call \"\\n</tool_call>\")*"
    } else {
        ""
    };
    let tagged = |prefix: &str| {
        GrammarSpec::Lark(format!(
            "start: \"{prefix}\" call \"\\n</tool_call>\" {more}\n{call}\n"
        ))
    };
    match (choice, text_schema) {
        (ToolChoice::Auto, None) => {
            // After `{"name": "`: one of the names, its arguments, the closing brace.
            let alts: Vec<String> = allowed
                .iter()
                .enumerate()
                .map(|(i, t)| format!("\"{}\\\", \\\"arguments\\\": \" args{i}", t.function.name))
                .collect();
            let args: String = allowed
                .iter()
                .enumerate()
                .map(|(i, t)| format!("args{i}: %json {}\n", with_layout(&t.function.parameters)))
                .collect();
            let bare = GrammarSpec::Lark(format!(
                "start: ({}) \"}}\" (\"\\n```\")?\n{args}",
                alts.join(" | ")
            ));
            ToolGrammar::Lazy(vec![
                (Trigger::Text(OPEN.to_string()), tagged("\\n")),
                (Trigger::StartRegex(BARE_CALL_START.to_string()), bare),
            ])
        }
        (ToolChoice::Auto, Some(schema)) => ToolGrammar::Strict(GrammarSpec::Lark(format!(
            "start: answer | calls\nanswer: %json {}\ncalls: \"<tool_call>\\n\" call \"\\n</tool_call>\" {more}\n{call}\n",
            with_layout(schema)
        ))),
        _ => ToolGrammar::Strict(tagged("<tool_call>\\n")),
    }
}

/// What the parser found in a piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    /// Answer text (outside calls).
    Text(String),
    /// Call number `index` begins: its function's name.
    Start {
        /// 0-based call index within the choice.
        index: usize,
        /// Function name.
        name: String,
    },
    /// More of call `index`'s arguments text.
    Args {
        /// Call index.
        index: usize,
        /// Fragment of the arguments JSON.
        fragment: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Text,
    /// After `<tool_call>`, before the arguments begin.
    Header,
    /// Inside the arguments value: JSON nesting depth and string state.
    Args {
        depth: usize,
        in_str: bool,
        esc: bool,
    },
    /// Arguments done; skipping to `</tool_call>`.
    Tail,
}

/// Incremental parser of the model's output into text and calls.
#[derive(Debug)]
pub struct ToolCallParser {
    state: State,
    buf: String,
    calls: usize,
    /// Still at the start of the output, where a bare call (no tags) may begin.
    at_start: bool,
    /// The current call is bare: it ends with its closing brace (and fence), not a tag.
    bare: bool,
}

/// Does `s` (the output so far) begin a bare call? `Some(Some(i))`: yes, the call's `{` is
/// at byte `i`; `Some(None)`: cannot tell yet; `None`: no.
fn bare_start(s: &str) -> Option<Option<usize>> {
    let t = s.trim_start();
    let mut off = s.len() - t.len();
    let mut u = t;
    if let Some(rest) = u.strip_prefix("```") {
        let rest2 = rest.strip_prefix("json").unwrap_or(rest);
        if rest2.len() == rest.len() && !rest.is_empty() && "json".starts_with(rest) {
            return Some(None);
        }
        let r = rest2.trim_start();
        off += u.len() - r.len();
        u = r;
    } else if "```".starts_with(u) && !u.is_empty() {
        return Some(None);
    }
    if u.is_empty() {
        return Some(None);
    }
    let body = u.strip_prefix('{')?;
    let v = body.trim_start();
    if v.starts_with("\"name\"") {
        Some(Some(off))
    } else if "\"name\"".starts_with(v) {
        Some(None)
    } else {
        None
    }
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self::new()
    }
}

fn header(buf: &str) -> Option<(String, usize)> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE
        .get_or_init(|| {
            regex::Regex::new(
                r#"^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*"#,
            )
            .ok()
        })
        .as_ref()?;
    let c = re.captures(buf)?;
    // The value must have begun (the trailing `\s*` may still be growing otherwise).
    if c.get(0)?.end() >= buf.len() {
        return None;
    }
    let raw = c.get(1)?.as_str();
    let name = serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or(raw.to_string());
    Some((name, c.get(0)?.end()))
}

/// Longest suffix of `s` that is a proper prefix of `pat`.
fn partial_suffix(s: &str, pat: &str) -> usize {
    (1..pat.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && pat.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}

impl ToolCallParser {
    /// A parser at the start of an answer.
    pub fn new() -> Self {
        ToolCallParser {
            state: State::Text,
            buf: String::new(),
            calls: 0,
            at_start: true,
            bare: false,
        }
    }

    /// Calls begun so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Feed generated text; returns what can be told now (text that may begin a marker is
    /// held back until it is known).
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            let progressed = match self.state.clone() {
                State::Text => self.step_text(&mut out),
                State::Header => self.step_header(&mut out),
                State::Args { depth, in_str, esc } => self.step_args(depth, in_str, esc, &mut out),
                State::Tail => self.step_tail(),
            };
            if !progressed {
                break;
            }
        }
        out
    }

    /// The end of the output: whatever is held back. An unfinished call header is returned
    /// as text, so nothing the model wrote is lost.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let rest = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        match self.state {
            State::Text => {
                if !rest.is_empty() {
                    out.push(ToolEvent::Text(rest));
                }
            }
            // A bare call's closing brace and fence are not answer text.
            State::Tail if self.bare => {}
            State::Header => {
                let body = if self.bare {
                    rest.trim_end().trim_end_matches("```").to_string()
                } else {
                    rest.clone()
                };
                if let Some((name, args)) = parse_whole(&body) {
                    self.whole_call(name, args, &mut out);
                } else if self.bare {
                    out.push(ToolEvent::Text(rest));
                } else {
                    out.push(ToolEvent::Text(format!("{OPEN}{rest}")));
                }
            }
            State::Args { .. } => {
                // Cut short (length): the fragment so far is all there is.
                if !rest.is_empty() {
                    out.push(ToolEvent::Args {
                        index: self.calls.saturating_sub(1),
                        fragment: rest,
                    });
                }
            }
            State::Tail => {}
        }
        self.state = State::Text;
        out
    }

    /// A call parsed in one piece: its start and all its arguments.
    fn whole_call(&mut self, name: String, args: String, out: &mut Vec<ToolEvent>) {
        out.push(ToolEvent::Start {
            index: self.calls,
            name,
        });
        out.push(ToolEvent::Args {
            index: self.calls,
            fragment: args,
        });
        self.calls += 1;
    }

    fn step_text(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        if self.at_start {
            match bare_start(&self.buf) {
                Some(Some(at)) => {
                    self.buf.drain(..at);
                    self.at_start = false;
                    self.bare = true;
                    self.state = State::Header;
                    return true;
                }
                Some(None) => return false,
                None => self.at_start = false,
            }
        }
        if let Some(at) = self.buf.find(OPEN) {
            let before: String = self.buf[..at].to_string();
            self.buf.drain(..at + OPEN.len());
            if !before.trim().is_empty() || (self.calls == 0 && !before.is_empty()) {
                out.push(ToolEvent::Text(before));
            }
            self.state = State::Header;
            return true;
        }
        let hold = partial_suffix(&self.buf, OPEN);
        let emit = self.buf.len() - hold;
        if emit > 0 {
            let t: String = self.buf.drain(..emit).collect();
            // Between calls only whitespace is expected; it is not part of the answer.
            if self.calls == 0 || !t.trim().is_empty() {
                out.push(ToolEvent::Text(t));
            }
        }
        false
    }

    fn step_header(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        if let Some((name, end)) = header(&self.buf) {
            self.buf.drain(..end);
            out.push(ToolEvent::Start {
                index: self.calls,
                name,
            });
            self.calls += 1;
            self.state = State::Args {
                depth: 0,
                in_str: false,
                esc: false,
            };
            return true;
        }
        // Another layout (arguments first, say): parse the whole call at its close.
        if let Some(at) = self.buf.find(CLOSE) {
            let body: String = self.buf[..at].to_string();
            self.buf.drain(..at + CLOSE.len());
            match parse_whole(&body) {
                Some((name, args)) => self.whole_call(name, args, out),
                None => out.push(ToolEvent::Text(format!("{OPEN}{body}{CLOSE}"))),
            }
            self.state = State::Text;
            return true;
        }
        false
    }

    fn step_args(
        &mut self,
        mut depth: usize,
        mut in_str: bool,
        mut esc: bool,
        out: &mut Vec<ToolEvent>,
    ) -> bool {
        let mut end = None;
        for (i, c) in self.buf.char_indices() {
            if in_str {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    in_str = false;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '{' | '[' => depth += 1,
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                c if depth == 0 && (c == ',' || c == '\n') => {
                    // A scalar argument value ended (not an object: unusual but valid JSON).
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let index = self.calls - 1;
        match end {
            Some(e) => {
                let frag: String = self.buf.drain(..e).collect();
                if !frag.is_empty() {
                    out.push(ToolEvent::Args {
                        index,
                        fragment: frag,
                    });
                }
                self.state = State::Tail;
                true
            }
            None => {
                let frag = std::mem::take(&mut self.buf);
                if !frag.is_empty() {
                    out.push(ToolEvent::Args {
                        index,
                        fragment: frag,
                    });
                }
                self.state = State::Args { depth, in_str, esc };
                false
            }
        }
    }

    fn step_tail(&mut self) -> bool {
        if self.bare {
            // Everything after a bare call's arguments (`}` and a closing fence) is its end.
            self.buf.clear();
            return false;
        }
        if let Some(at) = self.buf.find(CLOSE) {
            self.buf.drain(..at + CLOSE.len());
            self.state = State::Text;
            return true;
        }
        // Keep only what may still begin the close marker.
        let hold = partial_suffix(&self.buf, CLOSE);
        let cut = self.buf.len() - hold;
        self.buf.drain(..cut);
        false
    }
}

fn parse_whole(body: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get("arguments").cloned().unwrap_or(json!({}));
    let args = match args {
        Value::String(s) => s,
        other => crate::pyjson::to_string(&other),
    };
    Some((name, args))
}

/// A whole output split into its answer text and its calls `(name, arguments)`.
pub fn parse_output(text: &str) -> (String, Vec<(String, String)>) {
    let mut p = ToolCallParser::new();
    let mut events = p.push(text);
    events.extend(p.finish());
    let mut content = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for e in events {
        match e {
            ToolEvent::Text(t) => content.push_str(&t),
            ToolEvent::Start { name, .. } => calls.push((name, String::new())),
            ToolEvent::Args { index, fragment } => {
                if let Some(c) = calls.get_mut(index) {
                    c.1.push_str(&fragment);
                }
            }
        }
    }
    let content = if calls.is_empty() {
        content
    } else {
        content.trim().to_string()
    };
    (content, calls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tandem_types::tools::parse_tools;

    const OUT: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"台北\", \"days\": [1, {\"x\": \"}\"}]}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";

    #[test]
    fn whole_output_parses_into_calls() {
        let (content, calls) = parse_output(OUT);
        assert_eq!(content, "");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].1).unwrap();
        assert_eq!(args["city"], "台北");
        assert_eq!(args["days"][1]["x"], "}");
        assert_eq!(calls[1], ("now".to_string(), "{}".to_string()));
        let (content, calls) = parse_output("Just text, no <tool call.");
        assert_eq!(content, "Just text, no <tool call.");
        assert!(calls.is_empty());
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_calls() {
        let text = format!("Let me check. {OUT}");
        let (want_content, want_calls) = parse_output(&text);
        assert_eq!(want_content, "Let me check.");
        let chars: Vec<char> = text.chars().collect();
        for step in [1, 2, 3, 5, 7, 11] {
            let mut p = ToolCallParser::new();
            let mut events = Vec::new();
            for chunk in chars.chunks(step) {
                events.extend(p.push(&chunk.iter().collect::<String>()));
            }
            events.extend(p.finish());
            let mut content = String::new();
            let mut calls: Vec<(String, String)> = Vec::new();
            let mut starts = 0;
            for e in events {
                match e {
                    ToolEvent::Text(t) => content.push_str(&t),
                    ToolEvent::Start { index, name } => {
                        assert_eq!(index, starts);
                        starts += 1;
                        calls.push((name, String::new()));
                    }
                    ToolEvent::Args { index, fragment } => calls[index].1.push_str(&fragment),
                }
            }
            assert_eq!(content.trim(), want_content, "step {step}");
            assert_eq!(calls, want_calls, "step {step}");
        }
    }

    #[test]
    fn other_layouts_and_broken_calls_lose_nothing() {
        let (c, calls) =
            parse_output("<tool_call>{\"arguments\": {\"a\": 1}, \"name\": \"f\"}</tool_call>");
        assert_eq!(c, "");
        assert_eq!(calls, vec![("f".into(), "{\"a\": 1}".into())]);
        let (c, calls) = parse_output("<tool_call>\n{\"nam");
        assert_eq!(c, "<tool_call>\n{\"nam");
        assert!(calls.is_empty());
        // Cut short inside the arguments: the call is reported with what there is.
        let (_, calls) = parse_output("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": ");
        assert_eq!(calls, vec![("f".into(), "{\"a\": ".into())]);
    }

    #[test]
    fn bare_calls_in_code_fences_are_calls() {
        for text in [
            "```json\n{\n  \"name\": \"f\",\n  \"arguments\": {\"a\": 1}\n}\n```",
            "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            "  ```\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n```",
        ] {
            let (c, calls) = parse_output(text);
            assert_eq!(c, "", "{text}");
            assert_eq!(calls, vec![("f".into(), "{\"a\": 1}".into())], "{text}");
            // Split at every character, the same.
            let mut p = ToolCallParser::new();
            let mut ev = Vec::new();
            for ch in text.chars() {
                ev.extend(p.push(&ch.to_string()));
            }
            ev.extend(p.finish());
            assert!(
                ev.iter().all(|e| !matches!(e, ToolEvent::Text(_))),
                "{ev:?}"
            );
            assert_eq!(p.calls(), 1);
        }
        // Code that is not a call stays text.
        for text in [
            "```python\nprint(1)\n```",
            "{\"answer\": 1}",
            "`x`",
            "```js",
        ] {
            let (c, calls) = parse_output(text);
            assert_eq!(c, text);
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn grammars_name_the_tools() {
        let tools = parse_tools(Some(&json!([
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
              "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
            {"type": "function", "function": {"name": "g"}}
        ])))
        .unwrap();
        let ToolGrammar::Lazy(t) = grammar(&tools, &ToolChoice::Auto, true, None) else {
            panic!()
        };
        assert_eq!(t[0].0, Trigger::Text(OPEN.into()));
        let GrammarSpec::Lark(l) = &t[0].1 else {
            panic!()
        };
        assert!(l.contains("anyOf") && l.contains("\"const\":\"g\""), "{l}");
        let GrammarSpec::Lark(l) = &t[1].1 else {
            panic!()
        };
        assert!(l.contains("\"g\\\", \\\"arguments\\\": \" args1"), "{l}");
        let ToolGrammar::Strict(GrammarSpec::Lark(l)) =
            grammar(&tools, &ToolChoice::Function("g".into()), false, None)
        else {
            panic!()
        };
        assert!(!l.contains("anyOf") && !l.contains(")*"), "{l}");
        let s = system_prompt(&tools);
        assert!(s.contains("<tools>\n{\"type\": \"function\""), "{s}");
    }
}
