//! Constrained decoding: grammars compiled by llguidance, applied as a token mask before
//! sampling, with per-sequence parser state.
//!
//! Why llguidance and not llama.cpp's GBNF sampler: llguidance computes the set of allowed
//! tokens by walking a token trie with a lexer/Earley parser, so a step costs roughly the same
//! for every vocabulary size, while the GBNF sampler tries every candidate token against the
//! grammar stacks (151k candidates for Qwen2.5). It also compiles JSON schemas directly and
//! refuses, naming it, a keyword it cannot enforce; see docs/benchmarks.md for the
//! per-token cost measured on our models.
//!
//! A [`Constraint`] is either active from the first token or *lazy*: unconstrained until
//! the generated text contains a trigger (the model's tool-call marker), then constrained to
//! the grammar for the rest of the generation.

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;

/// Formatting options given to llguidance's JSON compiler: Python's `json.dumps` layout
/// (`", "` and `": "`, no free whitespace), the layout the bundled models were trained on and
/// the one in which a small model cannot loop on whitespace.
fn json_options() -> Value {
    serde_json::json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
    })
}

/// Calls `f` on `schema` and on every subschema in it (properties, definitions, items,
/// combinators, conditionals).
fn each_subschema(schema: &mut Value, f: &mut impl FnMut(&mut serde_json::Map<String, Value>)) {
    match schema {
        Value::Object(o) => {
            f(o);
            for (k, v) in o.iter_mut() {
                match k.as_str() {
                    "properties" | "$defs" | "definitions" | "patternProperties" => {
                        if let Value::Object(m) = v {
                            m.values_mut().for_each(|s| each_subschema(s, f));
                        }
                    }
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "if"
                    | "then"
                    | "else"
                    | "contains" => each_subschema(v, f),
                    "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                        if let Value::Array(a) = v {
                            a.iter_mut().for_each(|s| each_subschema(s, f));
                        }
                    }
                    _ => {}
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|s| each_subschema(s, f)),
        _ => {}
    }
}

/// Objects that list `properties` and say nothing of `additionalProperties` get
/// `additionalProperties: false`, recursively (as OpenAI's strict mode requires of every
/// schema). JSON Schema's default would let the grammar accept any further key, and a small
/// model uses that: measured on `make eval-tools`, Qwen2.5-0.5B added invented keys (`"to"`,
/// `"type": "object"`) and repeated them until the arguments no longer parsed. A schema that
/// wants extra keys says `additionalProperties: true` (or a schema) and keeps them.
pub fn close_objects(schema: &mut Value) {
    each_subschema(schema, &mut |o| {
        if o.contains_key("properties") && !o.contains_key("additionalProperties") {
            o.insert("additionalProperties".into(), Value::Bool(false));
        }
    });
}

/// The largest integer JSON carries exactly everywhere (2^53 - 1, JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Integers without bounds get JSON's safe range, ±(2^53 − 1), so that at most 16 digits
/// are allowed. Unbounded, the grammar lets a small model write digits until `max_tokens`:
/// measured on `make eval-tools`, SmolLM2-135M wrote `"amount_twd": 1000…` for 160 tokens and
/// the arguments never closed. A bound the schema sets is kept.
pub fn bound_integers(schema: &mut Value) {
    each_subschema(schema, &mut |o| {
        let integer = match o.get("type") {
            Some(Value::String(t)) => t == "integer",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
            _ => false,
        };
        if !integer {
            return;
        }
        if !o.contains_key("minimum") && !o.contains_key("exclusiveMinimum") {
            o.insert("minimum".into(), Value::from(-MAX_SAFE_INTEGER));
        }
        if !o.contains_key("maximum") && !o.contains_key("exclusiveMaximum") {
            o.insert("maximum".into(), Value::from(MAX_SAFE_INTEGER));
        }
    });
}

/// `schema` closed (see [`close_objects`]), its integers bounded (see [`bound_integers`]),
/// and with Tandem's JSON layout options (unless the caller set `x-guidance` itself).
pub fn with_layout(schema: &Value) -> Value {
    let mut s = schema.clone();
    close_objects(&mut s);
    bound_integers(&mut s);
    if let Value::Object(o) = &mut s
        && !o.contains_key("x-guidance")
    {
        o.insert("x-guidance".into(), json_options());
    }
    s
}

/// What a generation must follow.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// One JSON value valid under this schema.
    JsonSchema(Value),
    /// An llguidance Lark grammar (may embed `%json { … }` schemas).
    Lark(String),
}

impl GrammarSpec {
    fn top_level(&self) -> TopLevelGrammar {
        match self {
            GrammarSpec::JsonSchema(s) => TopLevelGrammar::from_json_schema(with_layout(s)),
            GrammarSpec::Lark(l) => TopLevelGrammar::from_lark(l.clone()),
        }
    }
}

/// Compiles grammars for one model's vocabulary (built once, on first use).
pub struct GrammarCompiler {
    factory: ParserFactory,
}

impl std::fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarCompiler").finish_non_exhaustive()
    }
}

impl GrammarCompiler {
    /// A compiler over `tok_env` (the model's token trie).
    pub fn new(tok_env: &toktrie::TokEnv) -> Result<Self, String> {
        let mut factory = ParserFactory::new_simple(tok_env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(GrammarCompiler { factory })
    }

    /// Compile `spec`; `lazy_trigger` = `Some(text)` leaves generation free until `text`
    /// has been generated. The error is llguidance's message (it names an unsupported
    /// schema keyword, e.g. `Unimplemented keys: ["not"]`).
    pub fn compile(
        &self,
        spec: &GrammarSpec,
        lazy_trigger: Option<&str>,
    ) -> Result<Constraint, String> {
        match lazy_trigger {
            None => Ok(Constraint {
                active: Some(self.matcher(spec)?),
                ..self.empty()
            }),
            Some(t) => self.compile_lazy(&[(Trigger::Text(t.to_string()), spec.clone())]),
        }
    }

    /// A lazy constraint with several triggers, each activating its own grammar; the first
    /// trigger seen wins.
    pub fn compile_lazy(&self, triggers: &[(Trigger, GrammarSpec)]) -> Result<Constraint, String> {
        let mut pending = Vec::with_capacity(triggers.len());
        for (t, spec) in triggers {
            let m = self.matcher(spec)?;
            let t = match t {
                Trigger::Text(s) => Pending::Text(s.as_bytes().to_vec(), m),
                Trigger::StartRegex(r) => {
                    let re = regex::bytes::Regex::new(r).map_err(|e| e.to_string())?;
                    Pending::Start(re, m)
                }
            };
            pending.push(t);
        }
        Ok(Constraint {
            pending,
            ..self.empty()
        })
    }

    fn matcher(&self, spec: &GrammarSpec) -> Result<Matcher, String> {
        let parser = self
            .factory
            .create_parser(spec.top_level())
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(matcher),
        }
    }

    fn empty(&self) -> Constraint {
        Constraint {
            active: None,
            pending: Vec::new(),
            trie: self.factory.tok_env().clone(),
            seen: Vec::new(),
            steps: 0,
            mask_nanos: 0,
        }
    }
}

/// What activates a lazy grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// This text, anywhere in the output.
    Text(String),
    /// A match of this regex at the start of the output (within its first
    /// [`START_WINDOW`] bytes); the grammar continues after the match.
    StartRegex(String),
}

/// How far into the output a [`Trigger::StartRegex`] is looked for.
pub const START_WINDOW: usize = 48;

enum Pending {
    Text(Vec<u8>, Matcher),
    Start(regex::bytes::Regex, Matcher),
}

impl Pending {
    fn deep_clone(&self) -> Self {
        match self {
            Pending::Text(t, m) => Pending::Text(t.clone(), m.deep_clone()),
            Pending::Start(r, m) => Pending::Start(r.clone(), m.deep_clone()),
        }
    }
}

/// The grammar state of one sequence.
pub struct Constraint {
    /// The grammar being enforced (from the start, or since a trigger).
    active: Option<Matcher>,
    /// Lazy grammars waiting for their trigger.
    pending: Vec<Pending>,
    trie: toktrie::TokEnv,
    /// Output so far while lazy (for text triggers only the tail that may hold one is kept
    /// once the start window has passed).
    seen: Vec<u8>,
    steps: u64,
    mask_nanos: u64,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("active", &self.active.is_some())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Constraint {
            active: self.active.as_ref().map(Matcher::deep_clone),
            pending: self.pending.iter().map(Pending::deep_clone).collect(),
            trie: self.trie.clone(),
            seen: self.seen.clone(),
            steps: 0,
            mask_nanos: 0,
        }
    }
}

impl Constraint {
    /// Is a grammar being enforced now (a lazy one only after its trigger)?
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Masked steps so far and the nanoseconds spent computing masks.
    pub fn stats(&self) -> (u64, u64) {
        (self.steps, self.mask_nanos)
    }

    /// Set the logits of tokens the grammar does not allow to −∞. Errors when the grammar
    /// is in an error state or allows nothing.
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let Some(matcher) = self.active.as_mut() else {
            return Ok(());
        };
        let t0 = std::time::Instant::now();
        let mask = matcher.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let words = mask.as_slice();
        let mut any = false;
        for (w, chunk) in words.iter().zip(logits.chunks_mut(32)) {
            if *w == u32::MAX {
                any = true;
                continue;
            }
            if *w == 0 {
                chunk.fill(f32::NEG_INFINITY);
                continue;
            }
            any = true;
            for (b, l) in chunk.iter_mut().enumerate() {
                if w & (1 << b) == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        // Logits beyond the mask (padding tokens of the vocabulary) are never allowed.
        if logits.len() > words.len() * 32 {
            logits[words.len() * 32..].fill(f32::NEG_INFINITY);
        }
        self.steps += 1;
        self.mask_nanos += t0.elapsed().as_nanos() as u64;
        if any {
            Ok(())
        } else {
            Err("the grammar allows no next token".into())
        }
    }

    /// Record the sampled token: advance the parser, or (lazy) look for a trigger.
    pub fn accept(&mut self, token: i32) -> Result<(), String> {
        if let Some(m) = self.active.as_mut() {
            if m.is_stopped() {
                return Ok(());
            }
            return m.consume_token(token as u32).map_err(|e| e.to_string());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.trie.tok_trie().token(token as u32);
        // A special token's bytes carry llguidance's 0xFF marker; the text has none.
        let bytes = bytes.strip_prefix(&[0xFF]).unwrap_or(bytes);
        self.seen.extend_from_slice(bytes);
        let mut hit: Option<(usize, usize)> = None;
        for (i, p) in self.pending.iter().enumerate() {
            let end = match p {
                Pending::Text(t, _) => find(&self.seen, t).map(|at| at + t.len()),
                Pending::Start(re, _) => re
                    .find(&self.seen)
                    .filter(|m| m.start() == 0 && m.end() <= START_WINDOW)
                    .map(|m| m.end()),
            };
            if let Some(end) = end
                && hit.is_none_or(|(_, e)| end < e)
            {
                hit = Some((i, end));
            }
        }
        if let Some((i, end)) = hit {
            let rest = self.seen.split_off(end);
            let mut m = match self.pending.swap_remove(i) {
                Pending::Text(_, m) | Pending::Start(_, m) => m,
            };
            self.pending.clear();
            self.seen.clear();
            // Text after the trigger inside the same token is the grammar's first input.
            let rest = String::from_utf8_lossy(&rest);
            let rest = rest.trim_start_matches([' ', '\t']);
            if !rest.is_empty() {
                let toks = self.trie.tokenize_bytes(rest.as_bytes());
                if m.consume_tokens(&toks).is_err() {
                    // The model went its own way: leave it free rather than fail.
                    return Ok(());
                }
            }
            self.active = Some(m);
            return Ok(());
        }
        // Once past the start window only text triggers remain, and only the tail that may
        // still hold one is kept.
        if self.seen.len() > START_WINDOW {
            self.pending.retain(|p| matches!(p, Pending::Text(..)));
            let keep = self
                .pending
                .iter()
                .map(|p| match p {
                    Pending::Text(t, _) => t.len(),
                    Pending::Start(..) => 0,
                })
                .max()
                .unwrap_or(0);
            let cut = self.seen.len().saturating_sub(keep);
            self.seen.drain(..cut);
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod close_tests {
    use super::{MAX_SAFE_INTEGER, bound_integers, close_objects};
    use serde_json::json;

    #[test]
    fn integers_without_bounds_get_the_safe_range() {
        let mut s = json!({"type": "object", "properties": {
            "n": {"type": "integer"},
            "m": {"type": ["integer", "null"], "minimum": 1},
            "x": {"type": "number"},
            "k": {"type": "array", "items": {"type": "integer", "exclusiveMaximum": 10}}}});
        bound_integers(&mut s);
        let p = &s["properties"];
        assert_eq!(p["n"]["minimum"], -MAX_SAFE_INTEGER);
        assert_eq!(p["n"]["maximum"], MAX_SAFE_INTEGER);
        assert_eq!(p["m"]["minimum"], 1);
        assert_eq!(p["m"]["maximum"], MAX_SAFE_INTEGER);
        assert!(p["x"].get("maximum").is_none());
        assert!(p["k"]["items"].get("maximum").is_none());
        assert_eq!(p["k"]["items"]["minimum"], -MAX_SAFE_INTEGER);
    }

    #[test]
    fn objects_with_properties_are_closed_unless_they_say_otherwise() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"x": {"type": "string"}}},
            "b": {"type": "array", "items": {"type": "object", "properties": {"y": {}}}},
            "c": {"type": "object", "properties": {}, "additionalProperties": true},
            "d": {"anyOf": [{"type": "object", "properties": {"z": {}}}, {"type": "null"}]},
            "e": {"type": "object"}}});
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["b"]["items"]["additionalProperties"], false);
        assert_eq!(s["properties"]["c"]["additionalProperties"], true);
        assert_eq!(
            s["properties"]["d"]["anyOf"][0]["additionalProperties"],
            false
        );
        assert!(s["properties"]["e"].get("additionalProperties").is_none());
    }
}
