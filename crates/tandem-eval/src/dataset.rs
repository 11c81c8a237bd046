//! The routing-evaluation dataset: one JSON object per line (JSONL).
//!
//! ```json
//! {"id": "mmlu-00042", "source": "mmlu", "lang": "en", "split": "test",
//!  "category": "high_school_physics",
//!  "system": "Answer with the letter of the correct option only.",
//!  "prompt": "A ball is dropped ...\nA. ...\nB. ...\nC. ...\nD. ...",
//!  "grader": {"kind": "choice", "answer": "B"}, "max_tokens": 8}
//! ```
//!
//! - `id` (string, unique), `prompt` (string: the user message), `grader` (object) are
//!   required.
//! - `grader.kind` is `choice` (`answer`: one of A–D, graded by the answer letter),
//!   `number` (`answer`: a number, graded by the final number of the answer) or `judge`
//!   (`reference`: optional reference answer; graded 1–10 by the LLM as judge with the
//!   MT-Bench judge prompts).
//! - `split` is `dev` (tuning: thresholds, router training) or `test` (reported; tuning never
//!   sees it); default `test`.
//! - `source` (default `custom`), `lang` (default `en`), `category` (default empty),
//!   `system` (default none), `max_tokens` (default 512, at most 8192).
//!
//! Blank lines are ignored; every other error names its line.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest `max_tokens` an item may ask for.
pub const MAX_TOKENS_LIMIT: u32 = 8192;

/// Which part of the data an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Used for tuning (thresholds, training the learned router).
    Dev,
    /// Used only for reporting.
    Test,
}

impl Split {
    /// `dev` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dev" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => Err(format!("unknown split `{other}` (expected dev or test)")),
        }
    }
}

/// How an answer is graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grader {
    /// Multiple choice: the answer letter (A–D).
    Choice {
        /// The correct letter.
        answer: String,
    },
    /// Arithmetic: the final number of the answer.
    Number {
        /// The correct number.
        answer: f64,
    },
    /// Open-ended: scored 1–10 by the LLM as judge.
    Judge {
        /// Reference answer (math, reasoning and coding questions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

impl Grader {
    /// `choice`, `number` or `judge`.
    pub fn kind(&self) -> &'static str {
        match self {
            Grader::Choice { .. } => "choice",
            Grader::Number { .. } => "number",
            Grader::Judge { .. } => "judge",
        }
    }
}

fn default_source() -> String {
    "custom".to_owned()
}
fn default_lang() -> String {
    "en".to_owned()
}
fn default_split() -> Split {
    Split::Test
}
fn default_max_tokens() -> u32 {
    512
}

/// One question of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Unique id.
    pub id: String,
    /// Where it comes from (`mmlu`, `gsm`, `mtbench`, `custom`, …).
    #[serde(default = "default_source")]
    pub source: String,
    /// Language of the prompt (`en`, `zh`, …).
    #[serde(default = "default_lang")]
    pub lang: String,
    /// `dev` or `test`.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Finer label (MMLU subject, MT-Bench category).
    #[serde(default)]
    pub category: String,
    /// System message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The user message.
    pub prompt: String,
    /// How the answer is graded.
    pub grader: Grader,
    /// Answer length cap.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

/// A dataset that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DatasetError {
    /// No items at all.
    #[error("the dataset has no items (every line is blank)")]
    Empty,
    /// A line is not a valid item.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Two items share an id.
    #[error("line {line}: duplicate id `{id}` (first used on line {first})")]
    Duplicate {
        /// The id.
        id: String,
        /// Line of the first use.
        first: usize,
        /// Line of the second use.
        line: usize,
    },
}

/// Parses and validates a JSONL dataset.
pub fn load(text: &str) -> Result<Vec<Item>, DatasetError> {
    load_lines(
        text,
        |raw| {
            // serde_json's own position is relative to the line; the line number is ours.
            let value: serde_json::Value =
                serde_json::from_str(raw).map_err(|e| strip_position(&e.to_string()))?;
            if !value.is_object() {
                return Err(format!(
                    "expected a JSON object (one item per line), got {}",
                    kind_of(&value)
                ));
            }
            let item: Item = serde_json::from_value(value).map_err(|e| e.to_string())?;
            validate(&item)?;
            Ok(item)
        },
        |item| &item.id,
    )
}

/// The non-blank lines of a JSONL file parsed by `parse` (its error is reported with the
/// 1-based line number), with unique ids and at least one item.
pub(crate) fn load_lines<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>, DatasetError> {
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let item = parse(raw).map_err(|message| DatasetError::Line { line, message })?;
        if let Some(&first) = seen.get(id(&item)) {
            return Err(DatasetError::Duplicate {
                id: id(&item).to_owned(),
                first,
                line,
            });
        }
        seen.insert(id(&item).to_owned(), line);
        items.push(item);
    }
    if items.is_empty() {
        return Err(DatasetError::Empty);
    }
    Ok(items)
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub(crate) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &msg[..at], column_of(&msg[at..])),
        None => msg.to_owned(),
    }
}

fn column_of(tail: &str) -> &str {
    tail.rsplit(' ').next().unwrap_or("?")
}

fn validate(item: &Item) -> Result<(), String> {
    if item.id.trim().is_empty() {
        return Err("`id` is empty".into());
    }
    if item.prompt.trim().is_empty() {
        return Err(format!("item `{}`: `prompt` is empty", item.id));
    }
    if item.lang.trim().is_empty() {
        return Err(format!("item `{}`: `lang` is empty", item.id));
    }
    if item.max_tokens == 0 || item.max_tokens > MAX_TOKENS_LIMIT {
        return Err(format!(
            "item `{}`: `max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {}",
            item.id, item.max_tokens
        ));
    }
    match &item.grader {
        Grader::Choice { answer } => {
            if !matches!(answer.as_str(), "A" | "B" | "C" | "D") {
                return Err(format!(
                    "item `{}`: a `choice` answer must be one of A, B, C, D, got `{answer}`",
                    item.id
                ));
            }
        }
        Grader::Number { answer } => {
            if !answer.is_finite() {
                return Err(format!(
                    "item `{}`: the `number` answer is not finite",
                    item.id
                ));
            }
        }
        Grader::Judge { reference } => {
            if reference.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(format!("item `{}`: `reference` is empty", item.id));
            }
        }
    }
    Ok(())
}

/// The dataset as JSONL (one item per line, trailing newline).
pub fn to_jsonl(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        // An `Item` is plain data: serialization cannot fail.
        if let Ok(line) = serde_json::to_string(item) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// A stable 64-bit hash of `s`: splits and samples must not change between runs, platforms
/// or Rust versions, which `std`'s hasher does not promise. FNV-1a followed by MurmurHash3's
/// finalizer, so that ids differing only in their last characters (`mmlu-00041`,
/// `mmlu-00042`) land far apart — FNV-1a alone keeps such ids next to each other when sorted.
pub fn stable_hash(s: &str) -> u64 {
    fmix64(fnv1a(s))
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"a","prompt":"2+2?","grader":{"kind":"number","answer":4}}"#;

    #[test]
    fn defaults_fill_optional_fields() {
        let items = load(GOOD).unwrap();
        assert_eq!(items.len(), 1);
        let it = &items[0];
        assert_eq!(it.source, "custom");
        assert_eq!(it.lang, "en");
        assert_eq!(it.split, Split::Test);
        assert_eq!(it.max_tokens, 512);
        assert_eq!(it.grader, Grader::Number { answer: 4.0 });
    }

    #[test]
    fn roundtrip_through_jsonl() {
        let text = format!(
            "{GOOD}\n\n{}\n{}\n",
            r#"{"id":"b","split":"dev","lang":"zh","category":"x","system":"s","prompt":"p","grader":{"kind":"choice","answer":"C"},"max_tokens":8}"#,
            r#"{"id":"c","prompt":"write","grader":{"kind":"judge","reference":"r"}}"#
        );
        let items = load(&text).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(load(&to_jsonl(&items)).unwrap(), items);
    }

    fn line_err(text: &str) -> (usize, String) {
        match load(text) {
            Err(DatasetError::Line { line, message }) => (line, message),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_lines_name_their_line_and_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"id":"x","grader":{"kind":"number","answer":1}}"#,
                "missing field `prompt`",
            ),
            (r#"{"id":"x","prompt":"p"}"#, "missing field `grader`"),
            (
                r#"{"id":5,"prompt":"p","grader":{"kind":"number","answer":1}}"#,
                "invalid type: integer `5`",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"number","answer":"four"}}"#,
                "invalid type",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"essay"}}"#,
                "unknown variant `essay`",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"choice","answer":"E"}}"#,
                "one of A, B, C, D",
            ),
            (
                r#"{"id":"x","prompt":"  ","grader":{"kind":"judge"}}"#,
                "`prompt` is empty",
            ),
            (
                r#"{"id":"","prompt":"p","grader":{"kind":"judge"}}"#,
                "`id` is empty",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"judge"},"max_tokens":0}"#,
                "`max_tokens` must be",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"judge"},"split":"train"}"#,
                "unknown variant `train`",
            ),
            (
                r#"{"id":"x","prompt":"p","grader":{"kind":"judge"},"colour":1}"#,
                "unknown field `colour`",
            ),
            (r#"{"id":"x","prompt":"p","#, "EOF while parsing"),
            ("oops, not json", "expected value"),
            (
                "[1,2]",
                "expected a JSON object (one item per line), got an array",
            ),
        ];
        for (bad, want) in cases {
            let text = format!("{GOOD}\n\n{bad}\n");
            let (line, message) = line_err(&text);
            assert_eq!(line, 3, "{bad}");
            assert!(message.contains(want), "{bad}: `{message}` lacks `{want}`");
            assert!(!message.contains(" at line "), "{message}");
        }
    }

    #[test]
    fn empty_and_duplicate_datasets_are_refused() {
        assert_eq!(load(""), Err(DatasetError::Empty));
        assert_eq!(load("\n  \n"), Err(DatasetError::Empty));
        let dup = format!("{GOOD}\n{GOOD}\n");
        assert_eq!(
            load(&dup),
            Err(DatasetError::Duplicate {
                id: "a".into(),
                first: 1,
                line: 2
            })
        );
        assert!(load(&dup).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn stable_hash_is_fnv1a_then_fmix64() {
        // Reference values of 64-bit FNV-1a and of MurmurHash3's fmix64.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fmix64(0), 0);
        assert_eq!(stable_hash("a"), fmix64(0xaf63_dc4c_8601_ec8c));
        // Neighbouring ids are spread over the whole range: the top bits differ.
        let tops: std::collections::BTreeSet<u64> = (0..64)
            .map(|i| stable_hash(&format!("mmlu-{i:05}")) >> 60)
            .collect();
        assert!(tops.len() >= 12, "{tops:?}");
    }
}
