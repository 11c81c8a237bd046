//! PII detectors with validation, masking with stable placeholders, and restoring.
//!
//! * [`Detector`] finds personal data and secrets in free text (English and Traditional
//!   Chinese alike). Every detector validates its candidates — Luhn for cards, ISO 7064
//!   mod 97 for IBANs, the official checksums for Taiwan IDs and resident certificates,
//!   range rules for SSNs and IP addresses, Shannon entropy for generic secrets — so that
//!   dates, order numbers, versions and times are left alone. Names, addresses, dates of
//!   birth and record numbers have no checksum: they are found by their shape next to the
//!   words that introduce them (`context`).
//! * [`Masker`] replaces the values with stable placeholders such as `[EMAIL_1]` before text
//!   leaves the machine, and [`Masker::restore`] / [`StreamRestorer`] put them back into
//!   the (possibly streamed) answer.
//!
//! Offsets in [`Finding`] always refer to the text handed to [`Detector::detect`], in bytes
//! and in Unicode scalar values, even when full-width characters (`０９１２`, `＠`) were
//! normalised for matching.

mod checks;
mod context;
mod mask;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

pub use mask::{Masker, StreamRestorer};

/// The kinds of personal data and secrets the guard knows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    CreditCard,
    Iban,
    TwNationalId,
    TwResidentCert,
    UsSsn,
    IpAddress,
    ApiKey,
    /// Policy, claim, medical-record and bank-account numbers, next to words that say so.
    RecordNumber,
    /// A date next to words of birth (民國 and Western calendars).
    DateOfBirth,
    /// Postal addresses: Taiwan (縣市、區、路/街、段、巷、弄、號、樓) and Western street addresses.
    Address,
    /// Personal names: Chinese names after a role (被保險人、姓名…) or before a title
    /// (先生、小姐…), English names after a title or a role.
    PersonName,
}

impl PiiKind {
    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 13] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::TwNationalId,
        PiiKind::TwResidentCert,
        PiiKind::UsSsn,
        PiiKind::IpAddress,
        PiiKind::ApiKey,
        PiiKind::RecordNumber,
        PiiKind::DateOfBirth,
        PiiKind::Address,
        PiiKind::PersonName,
    ];

    /// The snake_case name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::TwNationalId => "tw_national_id",
            PiiKind::TwResidentCert => "tw_resident_cert",
            PiiKind::UsSsn => "us_ssn",
            PiiKind::IpAddress => "ip_address",
            PiiKind::ApiKey => "api_key",
            PiiKind::RecordNumber => "record_number",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::Address => "address",
            PiiKind::PersonName => "person_name",
        }
    }

    /// The inverse of [`PiiKind::as_str`].
    pub fn parse(s: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The tag inside placeholders, as in `[EMAIL_1]`.
    pub fn placeholder_tag(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::CreditCard => "CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::TwNationalId => "TW_ID",
            PiiKind::TwResidentCert => "TW_ARC",
            PiiKind::UsSsn => "SSN",
            PiiKind::IpAddress => "IP",
            PiiKind::ApiKey => "SECRET",
            PiiKind::RecordNumber => "RECORD",
            PiiKind::DateOfBirth => "DOB",
            PiiKind::Address => "ADDRESS",
            PiiKind::PersonName => "NAME",
        }
    }

    /// Tie-break between overlapping findings of equal length: lower is more specific.
    fn specificity(self) -> u8 {
        match self {
            PiiKind::ApiKey => 0,
            PiiKind::Iban => 1,
            PiiKind::CreditCard => 2,
            PiiKind::TwNationalId => 3,
            PiiKind::TwResidentCert => 4,
            PiiKind::UsSsn => 5,
            PiiKind::Email => 6,
            PiiKind::Phone => 7,
            PiiKind::IpAddress => 8,
            PiiKind::RecordNumber => 9,
            PiiKind::DateOfBirth => 10,
            PiiKind::Address => 11,
            PiiKind::PersonName => 12,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detected value: its kind and where it is, in bytes and in chars (Unicode scalar
/// values) of the text given to [`Detector::detect`]. Ranges are half-open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub char_start: usize,
    pub char_end: usize,
}

/// A candidate span in the (normalised) text, before overlaps are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    kind: PiiKind,
    start: usize,
    end: usize,
}

/// Finds PII in text. The patterns are compiled once per process and shared, so a
/// `Detector` is cheap to create, clone and share between threads.
#[derive(Clone, Copy)]
pub struct Detector {
    enabled: [bool; PiiKind::ALL.len()],
    patterns: &'static scan::Patterns,
}

impl Detector {
    /// A detector for every kind.
    pub fn new() -> Detector {
        Detector::with_kinds(&PiiKind::ALL)
    }

    /// A detector for the given kinds only.
    pub fn with_kinds(kinds: &[PiiKind]) -> Detector {
        let mut enabled = [false; PiiKind::ALL.len()];
        for k in kinds {
            enabled[k.index()] = true;
        }
        Detector {
            enabled,
            patterns: scan::Patterns::get(),
        }
    }

    /// The kinds this detector looks for, in declaration order.
    pub fn kinds(&self) -> Vec<PiiKind> {
        PiiKind::ALL
            .into_iter()
            .filter(|k| self.enabled[k.index()])
            .collect()
    }

    /// Finds PII in `text`: sorted by start, never overlapping (where candidates overlap the
    /// longer one wins, then the more specific kind).
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        if text.is_empty() || !self.enabled.iter().any(|&e| e) {
            return Vec::new();
        }
        let normalized = normalize(text);
        let (norm_text, map) = match &normalized {
            Some((t, m)) => (t.as_str(), Some(m.as_slice())),
            None => (text, None),
        };
        let mut spans = Vec::new();
        for kind in PiiKind::ALL {
            if self.enabled[kind.index()] {
                self.patterns.find(kind, norm_text, &mut spans);
            }
        }
        let mut spans = resolve_overlaps(spans);
        if let Some(map) = map {
            for s in &mut spans {
                s.start = map[s.start];
                s.end = map[s.end];
            }
        }
        with_char_offsets(text, &spans)
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("kinds", &self.kinds())
            .finish()
    }
}

/// Maps full-width ASCII variants (U+FF01–U+FF5E) to ASCII and the ideographic space to a
/// space, so `０９１２－３４５－６７８` and `ａ＠ｂ．ｃｏｍ` are found. Returns `None` when there
/// is nothing to map; otherwise the mapped text and, for every byte offset in it (plus its
/// end), the byte offset in the original.
fn normalize(text: &str) -> Option<(String, Vec<usize>)> {
    fn mapped(c: char) -> Option<char> {
        match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
            '\u{3000}' => Some(' '),
            _ => None,
        }
    }
    if !text.chars().any(|c| mapped(c).is_some()) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        let c = mapped(c).unwrap_or(c);
        for _ in 0..c.len_utf8() {
            map.push(i);
        }
        out.push(c);
    }
    map.push(text.len());
    Some((out, map))
}

/// Keeps the longest candidates (ties: the more specific kind, then the earlier one) that
/// do not overlap anything kept before; returns them sorted by start.
fn resolve_overlaps(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|s| s.end > s.start);
    spans.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.kind.specificity().cmp(&b.kind.specificity()))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: BTreeMap<usize, Span> = BTreeMap::new();
    for s in spans {
        let clash_before = kept
            .range(..s.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > s.start);
        if !clash_before {
            kept.insert(s.start, s);
        }
    }
    kept.into_values().collect()
}

/// Turns byte spans of `text` (sorted, non-overlapping) into findings with char offsets.
fn with_char_offsets(text: &str, spans: &[Span]) -> Vec<Finding> {
    let mut out = Vec::with_capacity(spans.len());
    let mut byte = 0usize;
    let mut chars = 0usize;
    let mut advance = |to: usize| -> usize {
        if to > byte {
            chars += text[byte..to].chars().count();
            byte = to;
        }
        chars
    };
    for s in spans {
        let char_start = advance(s.start);
        let char_end = advance(s.end);
        out.push(Finding {
            kind: s.kind,
            start: s.start,
            end: s.end,
            char_start,
            char_end,
        });
    }
    out
}
