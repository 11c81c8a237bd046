//! Masking with stable placeholders (`[EMAIL_1]`) and restoring, whole or streamed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::{Finding, PiiKind};

/// Replaces detected values with placeholders `[TAG_N]` (N from 1 per tag) and remembers
/// them, so the answer to the masked text can be restored. Within one `Masker` (one request
/// or conversation) the same value always gets the same placeholder and different values get
/// different ones. `Debug` shows counts only, never the values.
#[derive(Clone, Default)]
pub struct Masker {
    /// original value → placeholder
    by_value: HashMap<String, String>,
    /// placeholder → original value
    by_placeholder: HashMap<String, String>,
    /// last number handed out per tag
    counters: BTreeMap<&'static str, usize>,
    kinds: BTreeSet<PiiKind>,
    /// length in bytes of the longest placeholder handed out
    max_len: usize,
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Returns `text` with every finding replaced by its placeholder. `findings` should come
    /// from `Detector::detect(text)`; findings that overlap an earlier one, are empty or do
    /// not fall on char boundaries of `text` are ignored.
    ///
    /// A new placeholder never uses a number whose placeholder already occurs literally in
    /// `text`, so restoring gives back exactly the original text.
    pub fn mask(&mut self, text: &str, findings: &[Finding]) -> String {
        let mut sorted: Vec<&Finding> = findings.iter().collect();
        sorted.sort_by_key(|f| (f.start, f.end));
        let literals = bracketed_tokens(text);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in sorted {
            if f.start < last || f.end <= f.start {
                continue;
            }
            let Some(value) = text.get(f.start..f.end) else {
                continue;
            };
            out.push_str(&text[last..f.start]);
            out.push_str(self.placeholder_for(f.kind, value, &literals));
            last = f.end;
        }
        out.push_str(&text[last..]);
        out
    }

    fn placeholder_for(&mut self, kind: PiiKind, value: &str, literals: &HashSet<&str>) -> &str {
        if !self.by_value.contains_key(value) {
            let tag = kind.placeholder_tag();
            let counter = self.counters.entry(tag).or_insert(0);
            let placeholder = loop {
                *counter += 1;
                let candidate = format!("[{tag}_{counter}]");
                if !literals.contains(candidate.as_str()) {
                    break candidate;
                }
            };
            self.max_len = self.max_len.max(placeholder.len());
            self.kinds.insert(kind);
            self.by_placeholder
                .insert(placeholder.clone(), value.to_owned());
            self.by_value.insert(value.to_owned(), placeholder);
        }
        self.by_value.get(value).map_or("", String::as_str)
    }

    /// Puts the original values back for every known placeholder in `text`; anything else,
    /// including unknown placeholders, is left as it is.
    pub fn restore(&self, text: &str) -> String {
        restore_with(&self.by_placeholder, self.max_len, text)
    }

    /// The number of distinct values masked so far.
    pub fn len(&self) -> usize {
        self.by_value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_value.is_empty()
    }

    /// The distinct kinds masked so far, sorted.
    pub fn kinds(&self) -> Vec<PiiKind> {
        self.kinds.iter().copied().collect()
    }

    /// A restorer for a streamed answer, owning a copy of the current placeholders.
    pub fn stream_restorer(&self) -> StreamRestorer {
        let mut placeholders: Vec<String> = self.by_placeholder.keys().cloned().collect();
        placeholders.sort();
        StreamRestorer {
            map: Arc::new(self.by_placeholder.clone()),
            placeholders: Arc::new(placeholders),
            max_len: self.max_len,
            pending: String::new(),
        }
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("values", &self.by_value.len())
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// Every `[…]` in `text` without another `[` inside, up to 64 bytes long: the strings a
/// new placeholder must not be equal to.
fn bracketed_tokens(text: &str) -> HashSet<&str> {
    let mut out = HashSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        let tail = &rest[i..];
        let close = tail
            .bytes()
            .take(64)
            .skip(1)
            .position(|b| b == b']' || b == b'[')
            .map(|p| p + 1);
        match close {
            Some(p) if tail.as_bytes()[p] == b']' => {
                out.insert(&tail[..=p]);
                rest = &tail[p + 1..];
            }
            Some(p) => rest = &tail[p..],
            None => rest = &tail[1..],
        }
    }
    out
}

/// Replaces known placeholders in `text`. A placeholder is `[`, no other `[`, then `]`, and
/// at most `max_len` bytes long, so a lookup only happens for plausible candidates.
fn restore_with(map: &HashMap<String, String>, max_len: usize, text: &str) -> String {
    if map.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let close = tail
            .bytes()
            .take(max_len)
            .skip(1)
            .position(|b| b == b']' || b == b'[')
            .map(|p| p + 1)
            .filter(|&p| tail.as_bytes()[p] == b']');
        match close.and_then(|p| map.get(&tail[..=p]).map(|original| (p, original))) {
            Some((p, original)) => {
                out.push_str(original);
                rest = &tail[p + 1..];
            }
            None => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Restores placeholders in a streamed answer whose chunks may split a placeholder
/// (`"[EMA"` + `"IL_1] is"`). It holds back only a suffix that is still the beginning of a
/// known placeholder (so never more than the longest placeholder) and releases it as soon
/// as it cannot be one. `Debug` never shows values.
#[derive(Clone)]
pub struct StreamRestorer {
    map: Arc<HashMap<String, String>>,
    /// the known placeholders, sorted, for prefix queries
    placeholders: Arc<Vec<String>>,
    max_len: usize,
    pending: String,
}

impl StreamRestorer {
    /// Adds a chunk; returns the restored text that is safe to emit now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let hold = self.held_suffix_start();
        let out = restore_with(&self.map, self.max_len, &self.pending[..hold]);
        self.pending.drain(..hold);
        out
    }

    /// Ends the stream: returns whatever was held back, restored.
    pub fn finish(&mut self) -> String {
        let out = restore_with(&self.map, self.max_len, &self.pending);
        self.pending.clear();
        out
    }

    /// Where the suffix to hold back starts (`pending.len()` when nothing is held). Only
    /// the suffix from the last `[` can be an unfinished placeholder: a placeholder contains
    /// no `[` after its first byte.
    fn held_suffix_start(&self) -> usize {
        let len = self.pending.len();
        let Some(i) = self.pending.rfind('[') else {
            return len;
        };
        let suffix = &self.pending[i..];
        if suffix.len() >= self.max_len {
            return len;
        }
        let k = self.placeholders.partition_point(|p| p.as_str() < suffix);
        let unfinished = self
            .placeholders
            .get(k)
            .is_some_and(|p| p.len() > suffix.len() && p.starts_with(suffix));
        if unfinished { i } else { len }
    }
}

impl fmt::Debug for StreamRestorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRestorer")
            .field("placeholders", &self.placeholders.len())
            .field("held_bytes", &self.pending.len())
            .finish()
    }
}
