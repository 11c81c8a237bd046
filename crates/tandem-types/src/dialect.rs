//! Which API a client spoke: every dialect is parsed into the same internal
//! [`crate::openai::ChatRequest`] and its answer rendered back in the client's own shape.

pub use crate::openai::Dialect;

/// A stream event of a non-OpenAI dialect: the SSE event name and its JSON data.
pub type Event = (&'static str, serde_json::Value);

/// Re-encodes a stream of OpenAI chunks (Tandem's internal stream) as a dialect's events.
pub trait StreamEncoder {
    /// Events for one chunk.
    fn chunk(&mut self, c: &crate::openai::ChatCompletionChunk) -> Vec<Event>;
    /// The closing events, once the stream ended normally.
    fn finish(&mut self) -> Vec<Event>;
    /// The events for a failure after the stream started.
    fn error(&mut self, e: &crate::ApiError) -> Vec<Event>;
}

/// Rewrite an error raised by the OpenAI chat parsers (on a request another dialect was
/// translated into) so that its `param` and message name the client's own field:
/// `renames` are applied in order to both, e.g. `(".function.parameters", ".input_schema")`.
pub(crate) fn rename_param(mut e: crate::ApiError, renames: &[(&str, &str)]) -> crate::ApiError {
    let apply = |s: &str| {
        let mut s = s.to_string();
        for (from, to) in renames {
            s = s.replace(from, to);
        }
        s
    };
    e.param = e.param.as_deref().map(apply);
    e.message = apply(&e.message);
    e
}

/// `a[3].b` → `a.3.b`: Anthropic's way of writing a path (only numeric indices change).
pub(crate) fn dotted(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        let (head, tail) = rest.split_at(open);
        out.push_str(head);
        let digits = tail[1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[1 + digits..].starts_with(']') {
            out.push('.');
            out.push_str(&tail[1..1 + digits]);
            rest = &tail[2 + digits..];
        } else {
            out.push('[');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A one-choice chunk of a model `m` stream (the dialects' encoder tests).
#[cfg(test)]
pub(crate) fn test_chunk(
    delta: crate::openai::ChunkDelta,
    finish: Option<&str>,
) -> crate::openai::ChatCompletionChunk {
    crate::openai::ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 0,
        model: "m".into(),
        system_fingerprint: String::new(),
        choices: vec![crate::openai::ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish.map(str::to_string),
        }],
        usage: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dotted_rewrites_numeric_indices_only() {
        assert_eq!(super::dotted("tools[12].name"), "tools.12.name");
        assert_eq!(super::dotted("a [x] b[]"), "a [x] b[]");
    }
}
