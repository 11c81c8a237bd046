//! Fuzzing the request parsers of the three dialects with proptest drivers (stable Rust):
//! arbitrary bytes, and JSON documents built from the dialects' own field names with values
//! of every type at every depth. Each parser must return — a request or a 400 that names a
//! field — and never panic. Failing inputs are kept by proptest in `proptest-regressions/`
//! and replayed first on every run. `PROPTEST_CASES=100000` for a long run.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use tandem_types::{anthropic, openai, responses};

const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "name",
    "tools",
    "tool_choice",
    "function",
    "parameters",
    "arguments",
    "tool_calls",
    "id",
    "tool_call_id",
    "tool_use_id",
    "input",
    "instructions",
    "system",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "include_usage",
    "stop",
    "stop_sequences",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "format",
    "seed",
    "user",
    "metadata",
    "source",
    "image_url",
    "url",
    "call_id",
    "output",
    "previous_response_id",
    "thinking",
    "budget_tokens",
    "reasoning",
    "disable_parallel_tool_use",
    "parallel_tool_calls",
    "logit_bias",
    "frequency_penalty",
];

const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "function_call",
    "function_call_output",
    "message",
    "input_text",
    "output_text",
    "tool_use",
    "tool_result",
    "json_schema",
    "json_object",
    "text",
    "function",
    "auto",
    "required",
    "none",
    "any",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(KEYS).prop_map(|k| Value::String(k.to_string())),
        prop::sample::select(WORDS).prop_map(|k| Value::String(k.to_string())),
        "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A request-shaped object: the top-level fields a parser looks at first, then anything.
fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((prop::sample::select(KEYS), json()), 0..10),
        any::<bool>(),
    )
        .prop_map(|(kv, with_model)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if with_model {
                m.insert("model".into(), Value::String("auto".into()));
            }
            Value::Object(m)
        })
}

fn parse_all(body: &[u8]) {
    for drop in [false, true] {
        for r in [
            openai::parse_chat_request(body, drop),
            anthropic::parse_request(body, &[], drop),
            responses::parse_request(body, drop),
        ] {
            if let Err(e) = r {
                // A client error with a message, never a server error.
                assert!(e.status() < 500, "{e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&body);
    }

    #[test]
    fn request_shaped_json_never_panics(v in request()) {
        parse_all(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn truncated_valid_requests_never_panic(cut in 0usize..400) {
        let body = br#"{"model":"auto","max_tokens":64,"stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"\u4f60\u597d"}]}],"tools":[{"type":"function","name":"f","function":{"name":"f","parameters":{"type":"object"}},"input_schema":{"type":"object"}}],"tool_choice":"auto","input":"hi"}"#;
        parse_all(&body[..cut.min(body.len())]);
    }
}
