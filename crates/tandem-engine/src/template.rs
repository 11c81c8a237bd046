//! Chat templates: the Jinja template stored in the GGUF (`tokenizer.chat_template`),
//! rendered with minijinja and Python-compatible string methods, as HF transformers does.

use crate::toolcall;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;
use tandem_types::openai::ChatMessage;
use tandem_types::tools::Tool;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    supports_tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// Fallback when a GGUF carries no template: ChatML, which most small instruct models use.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

#[derive(Serialize)]
struct Msg<'a> {
    role: &'a str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// Jinja's `tojson` as Hugging Face's templates expect it: Python's `json.dumps` layout
/// (`", "`, `": "`, non-ASCII kept, no HTML escaping), optional `indent`.
fn tojson(v: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let text = match indent {
        Some(n) => crate::pyjson::to_string_indent(&json, n),
        None => crate::pyjson::to_string(&json),
    };
    Ok(Value::from_safe_string(text))
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(fmt: String) -> String {
    // Templates use this for "today's date" in system prompts. Format with UTC via chrono-free
    // arithmetic: only the common directives are supported.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    fmt.replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", MONTHS[(m - 1) as usize % 12])
        .replace("%b", &MONTHS[(m - 1) as usize % 12][..3])
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl ChatTemplate {
    /// Compile `source`; `bos`/`eos` are exposed to the template as `bos_token`/`eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
            supports_tools: source.contains("tools"),
        })
    }

    /// Does the template render `tools` itself (Qwen2.5, Llama 3.1, Hermes)? Otherwise
    /// Tandem describes the tools in a system message (see [`toolcall::system_prompt`]).
    pub fn supports_tools(&self) -> bool {
        self.supports_tools
    }

    /// Render a conversation. `developer` messages are given to the template as `system`,
    /// since templates written before that role existed do not know it.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        self.render_with_tools(messages, &[], add_generation_prompt)
    }

    /// Render a conversation offering `tools`. Assistant tool calls and `tool` results in
    /// the history are given to a template that knows them in Hugging Face's shape
    /// (`arguments` as an object); for one that does not, the tools are described in the
    /// system message and calls and results are written out as text in the same format.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        let native = self.supports_tools;
        let has_tool_history = messages
            .iter()
            .any(|m| !m.tool_calls.is_empty() || m.role == "tool");
        let mut msgs: Vec<Msg<'_>> = Vec::with_capacity(messages.len() + 1);
        if !native && !tools.is_empty() {
            let intro = toolcall::system_prompt(tools);
            msgs.push(Msg {
                role: "system",
                content: intro,
                name: None,
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        for m in messages {
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            if native || !has_tool_history {
                msgs.push(Msg {
                    role,
                    content: m.content.clone(),
                    name: m.name.as_deref(),
                    tool_calls: m.tool_calls.iter().map(toolcall::hf_tool_call).collect(),
                    tool_call_id: m.tool_call_id.as_deref(),
                });
                continue;
            }
            // A template without tool support: calls and results become text.
            let (role, content) = match role {
                "tool" => ("user", toolcall::tool_response_text(&m.content)),
                "assistant" if !m.tool_calls.is_empty() => (
                    "assistant",
                    toolcall::calls_as_text(&m.content, &m.tool_calls),
                ),
                r => (r, m.content.clone()),
            };
            msgs.push(Msg {
                role,
                content,
                name: m.name.as_deref(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        // A leading system message of Tandem's own merges with the caller's.
        if !native && !tools.is_empty() && msgs.len() > 1 && msgs[1].role == "system" {
            let caller = msgs.remove(1);
            msgs[0].content = format!("{}\n\n{}", caller.content, msgs[0].content);
        }
        let tools_json: Option<Vec<serde_json::Value>> = (native && !tools.is_empty()).then(|| {
            tools
                .iter()
                .map(|t| serde_json::to_value(t).unwrap_or_default())
                .collect()
        });
        let tmpl = self.env.get_template("chat")?;
        tmpl.render(minijinja::context! {
            messages => msgs,
            tools => tools_json,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let s = t
            .render(&[msg("developer", "be brief"), msg("user", "hi")], true)
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn pycompat_methods_and_raise_exception() {
        let src = "{% for m in messages %}{% if m.role.startswith('u') %}{{ m.content.strip() | upper }}{% endif %}{% endfor %}{% if messages|length > 5 %}{{ raise_exception('too many') }}{% endif %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[msg("user", "  hi ")], false).unwrap(), "HI");
        let many: Vec<ChatMessage> = (0..6).map(|_| msg("user", "x")).collect();
        let e = t.render(&many, false).unwrap_err();
        assert!(e.to_string().contains("too many"));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert!(strftime_now("%Y-%m-%d".into()).len() == 10);
    }
}
