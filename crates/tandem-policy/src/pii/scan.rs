//! Candidate patterns per kind, with boundary rules and validation.
//!
//! The `regex` crate has no look-around, and its `\b` is Unicode-aware (CJK characters are
//! word characters, so `是A123456789` would have no boundary). Patterns therefore match the
//! bare value and the boundaries are checked by hand on ASCII bytes: a value must not be
//! glued to an ASCII letter, digit or `_`, and numbers must not continue a dotted or dashed
//! number (`1.2.3.4.5`, `2024-01-15`). CJK text and full-width punctuation are boundaries.

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use regex::Regex;

use super::checks;
use super::{PiiKind, Span};

/// Extra validation of a prefixed key (the whole match).
type KeyCheck = fn(&str) -> bool;

/// Compiled patterns, shared by every [`super::Detector`].
pub(crate) struct Patterns {
    email: Regex,
    phone_intl: Regex,
    phone_tw_mobile: Regex,
    phone_tw_landline: Regex,
    phone_us: Regex,
    digit_run: Regex,
    iban: Regex,
    tw_id: Regex,
    tw_arc: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
    keys: Vec<(Regex, KeyCheck)>,
    bearer: Regex,
    assignment: Regex,
}

#[allow(clippy::expect_used)]
fn re(pattern: &str) -> Regex {
    // The patterns are constants covered by the tests; failing here is a programming error.
    Regex::new(pattern).expect("PII pattern must compile")
}

impl Patterns {
    pub(crate) fn get() -> &'static Patterns {
        static PATTERNS: OnceLock<Patterns> = OnceLock::new();
        PATTERNS.get_or_init(Patterns::compile)
    }

    fn compile() -> Patterns {
        Patterns {
            email: re(
                r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}",
            ),
            phone_intl: re(r"\+[1-9](?:[ .()\-]{0,3}[0-9]){0,40}"),
            phone_tw_mobile: re(r"09[0-9]{2}[- .]?[0-9]{3}[- .]?[0-9]{3}"),
            phone_tw_landline: re(
                r"(?:\(0[2-8][0-9]{0,2}\) ?|0[2-8][0-9]{0,2}[- ])[1-9][0-9]{0,3}[- ]?[0-9]{4}",
            ),
            phone_us: re(
                r"(?:1[-. ])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}",
            ),
            digit_run: re(r"[0-9]+(?:[ -][0-9]+)*"),
            iban: re(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}"),
            tw_id: re(r"[A-Za-z][12][0-9]{8}"),
            tw_arc: re(r"[A-Za-z][A-Da-d89][0-9]{8}"),
            ssn: re(r"[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}"),
            ipv4: re(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"),
            ipv6: re(
                r"(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4})",
            ),
            keys: vec![
                // OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-api03-…).
                (re(r"sk-[A-Za-z0-9_-]{20,300}"), sk_key_ok),
                // GitHub classic and fine-grained tokens.
                (re(r"gh[pousr]_[A-Za-z0-9]{36,255}"), any_key_ok),
                (re(r"github_pat_[A-Za-z0-9_]{22,255}"), any_key_ok),
                // AWS access key IDs.
                (re(r"(?:AKIA|ASIA)[A-Z0-9]{16}"), any_key_ok),
                // Slack.
                (re(r"xox[abposr]-[A-Za-z0-9-]{10,300}"), has_digit),
                // Stripe secret and restricted keys, and webhook signing secrets.
                (
                    re(r"(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{16,247}"),
                    any_key_ok,
                ),
                (re(r"whsec_[A-Za-z0-9+/=]{24,128}"), any_key_ok),
                // Google API keys.
                (re(r"AIza[0-9A-Za-z_-]{35}"), any_key_ok),
                // JSON Web Tokens.
                (
                    re(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{8,}"),
                    any_key_ok,
                ),
            ],
            bearer: re(r"(?i:bearer)[ \t]+([A-Za-z0-9._~+/=-]{16,})"),
            assignment: re(
                r#"(?i:(?:api|access|auth|refresh|client|secret|private|session)[_-]?(?:key|token|secret)|apikey|secret|token|password|passwd|pwd)["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9_./+=~-]{20,})"#,
            ),
        }
    }

    /// Appends the candidates of `kind` found in `text` to `out`.
    pub(crate) fn find(&self, kind: PiiKind, text: &str, out: &mut Vec<Span>) {
        let mut push = |(start, end): (usize, usize)| out.push(Span { kind, start, end });
        match kind {
            // A rejected address is skipped up to its `@`: any later start in the same local
            // part would end at the same domain.
            PiiKind::Email => scan_skipping(
                &self.email,
                text,
                |s, e| email(text, s, e),
                |s, e| text[s..e].find('@').map_or(e, |at| s + at + 1),
                &mut push,
            ),
            PiiKind::Phone => {
                scan(
                    &self.phone_intl,
                    text,
                    |s, e| phone_intl(text, s, e),
                    &mut push,
                );
                scan(
                    &self.phone_tw_mobile,
                    text,
                    |s, e| numeric_bounds(text, s, e),
                    &mut push,
                );
                scan(
                    &self.phone_tw_landline,
                    text,
                    |s, e| tw_landline(text, s, e),
                    &mut push,
                );
                scan(&self.phone_us, text, |s, e| us_phone(text, s, e), &mut push);
            }
            PiiKind::CreditCard => {
                for m in self.digit_run.find_iter(text) {
                    let mut found = false;
                    cards_in_run(text, m.start(), m.end(), &mut |span| {
                        found = true;
                        push(span);
                    });
                    // Next to card words, 13–19 digits are a card even when Luhn fails.
                    let digits = digits_of(m.as_str().as_bytes()).len();
                    if !found
                        && (13..=19).contains(&digits)
                        && numeric_bounds(text, m.start(), m.end()).is_some()
                        && words_near(text, m.start(), m.end(), &CARD_WORDS)
                    {
                        push((m.start(), m.end()));
                    }
                }
            }
            PiiKind::Iban => scan(&self.iban, text, |s, e| iban(text, s, e), &mut push),
            PiiKind::TwNationalId => scan(
                &self.tw_id,
                text,
                |s, e| checked_or_named(text, s, e, checks::tw_national_id_ok, &TW_ID_WORDS),
                &mut push,
            ),
            PiiKind::TwResidentCert => scan(
                &self.tw_arc,
                text,
                |s, e| checked_or_named(text, s, e, checks::tw_resident_cert_ok, &TW_ARC_WORDS),
                &mut push,
            ),
            PiiKind::UsSsn => scan(&self.ssn, text, |s, e| ssn(text, s, e), &mut push),
            PiiKind::IpAddress => {
                scan(&self.ipv4, text, |s, e| ipv4(text, s, e), &mut push);
                scan(&self.ipv6, text, |s, e| ipv6(text, s, e), &mut push);
            }
            PiiKind::RecordNumber
            | PiiKind::DateOfBirth
            | PiiKind::Address
            | PiiKind::PersonName => super::context::find(kind, text, &mut push),
            PiiKind::ApiKey => {
                for (re, ok) in &self.keys {
                    scan(re, text, |s, e| api_key(text, s, e, *ok), &mut push);
                }
                for caps in self.bearer.captures_iter(text) {
                    let (Some(all), Some(v)) = (caps.get(0), caps.get(1)) else {
                        continue;
                    };
                    if left_ok(text, all.start())
                        && let Some(span) = secret_value(text, v.start(), v.end(), 3.0)
                    {
                        push(span);
                    }
                }
                for caps in self.assignment.captures_iter(text) {
                    if let Some(v) = caps.get(1)
                        && let Some(span) = secret_value(text, v.start(), v.end(), 3.5)
                    {
                        push(span);
                    }
                }
            }
        }
    }
}

/// Runs `re` over `text`, asking `check` about each match. An accepted span continues the
/// search after it; a rejected match retries from the next position where a value may
/// start (after a non-word byte), so a shorter or later valid value is not skipped.
fn scan(
    re: &Regex,
    text: &str,
    check: impl FnMut(usize, usize) -> Option<(usize, usize)>,
    push: &mut impl FnMut((usize, usize)),
) {
    scan_skipping(re, text, check, |s, _| next_start(text, s), push);
}

/// [`scan`] with a custom restart position after a rejected match `(start, end)`; it must
/// be greater than `start`.
fn scan_skipping(
    re: &Regex,
    text: &str,
    mut check: impl FnMut(usize, usize) -> Option<(usize, usize)>,
    skip: impl Fn(usize, usize) -> usize,
    push: &mut impl FnMut((usize, usize)),
) {
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = re.find_at(text, pos) else {
            break;
        };
        let restart = skip(m.start(), m.end()).max(m.start() + 1);
        match check(m.start(), m.end()) {
            Some((s, e)) => {
                push((s, e));
                pos = e.max(restart);
            }
            None => pos = restart,
        }
        while !text.is_char_boundary(pos) {
            pos += 1;
        }
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The next char boundary after `from` that follows a non-word byte (or the end).
fn next_start(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let mut p = from + 1;
    while p < b.len() && (!text.is_char_boundary(p) || is_word(b[p - 1])) {
        p += 1;
    }
    p.min(b.len())
}

fn byte_at(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

fn byte_before(text: &str, i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| byte_at(text, j))
}

/// Not glued to a preceding ASCII letter, digit or `_`.
fn left_ok(text: &str, s: usize) -> bool {
    !byte_before(text, s).is_some_and(is_word)
}

/// Not glued to a following ASCII letter, digit or `_`.
fn right_ok(text: &str, e: usize) -> bool {
    !byte_at(text, e).is_some_and(is_word)
}

/// [`left_ok`], and not the continuation of a dotted or dashed token (`v1.2.3.4`, `A-1234`).
fn left_num_ok(text: &str, s: usize) -> bool {
    left_ok(text, s)
        && !(matches!(byte_before(text, s), Some(b'.' | b'-'))
            && s >= 2
            && byte_at(text, s - 2).is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// [`right_ok`], and not followed by more of a dotted or dashed number (`1.2.3.4.5`).
fn right_num_ok(text: &str, e: usize) -> bool {
    right_ok(text, e)
        && !(matches!(byte_at(text, e), Some(b'.' | b'-'))
            && byte_at(text, e + 1).is_some_and(|b| b.is_ascii_digit()))
}

fn numeric_bounds(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    (left_num_ok(text, s) && right_num_ok(text, e)).then_some((s, e))
}

fn digits_of(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(u8::is_ascii_digit).collect()
}

fn email(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let v = &text[s..e];
    let at = v.find('@')?;
    let ok = left_ok(text, s)
        && right_ok(text, e)
        && !matches!(byte_at(text, e), Some(b'-' | b'@'))
        && at <= 64
        && v.len() <= 254;
    ok.then_some((s, e))
}

/// `+<country> …`: digits with single separators (space, dash, dot) and optional
/// parentheses around one group. The longest prefix ending at a group end with 8–15 digits
/// wins, so a number written after the phone number is not swallowed.
fn phone_intl(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !left_ok(text, s) {
        return None;
    }
    let b = text.as_bytes();
    // `(+886) 2 …`: the closing parenthesis of a country code opened before the `+`.
    let mut open_before = byte_before(text, s) == Some(b'(');
    let mut depth = 0u8;
    let mut digits = 0usize;
    let mut best = None;
    let mut i = s + 1;
    while i < e {
        // A group of digits.
        let group_start = i;
        while i < e && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - group_start;
        if digits > 15 {
            break;
        }
        if depth == 0 && digits >= 8 && right_num_ok(text, i) {
            best = Some((s, i));
        }
        if i >= e {
            break;
        }
        // Separators before the next group.
        let mut plain = 0;
        while i < e && !b[i].is_ascii_digit() {
            match b[i] {
                b'(' if depth == 0 => depth = 1,
                b')' if depth == 1 => depth = 0,
                b')' if open_before => open_before = false,
                b' ' | b'-' | b'.' => plain += 1,
                _ => return best,
            }
            i += 1;
        }
        if plain > 1 {
            break;
        }
        open_before = false;
    }
    best
}

/// Taiwan landlines: area code (in parentheses or followed by a separator) and a subscriber
/// number of the length that area uses.
fn tw_landline(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !(left_num_ok(text, s) && right_num_ok(text, e)) {
        return None;
    }
    let v = &text.as_bytes()[s..e];
    let v = v.strip_prefix(b"(").unwrap_or(v);
    let area_len = v.iter().position(|b| !b.is_ascii_digit())?;
    let (area, rest) = v.split_at(area_len);
    let subscriber = digits_of(rest).len();
    let ok = match area {
        b"02" => subscriber == 8,
        b"04" => subscriber == 7 || subscriber == 8,
        b"03" | b"05" | b"06" | b"07" | b"08" | b"049" => subscriber == 7,
        b"037" | b"082" | b"089" => subscriber == 6,
        b"0826" | b"0836" => subscriber == 5,
        _ => false,
    };
    ok.then_some((s, e))
}

/// US numbers: `(415) 555-0132`, `415-555-0132`, `415.555.0132`, `415 555 0132`; the two
/// separators must agree unless the area code is in parentheses.
fn us_phone(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !(left_num_ok(text, s) && right_num_ok(text, e)) {
        return None;
    }
    let v = &text.as_bytes()[s..e];
    let sep2 = v[v.len() - 5];
    let paren = v.contains(&b'(');
    let sep1 = v[v.len() - 9];
    (paren || sep1 == sep2).then_some((s, e))
}

/// Splits a run of digit groups (joined by single spaces or dashes) and finds cards in it:
/// 13–19 digits in whole groups with one kind of separator, a known issuer prefix and a
/// valid Luhn digit.
fn cards_in_run(text: &str, s: usize, e: usize, push: &mut impl FnMut((usize, usize))) {
    let b = text.as_bytes();
    // (start, end) of each group; the separator before group i > 0 is b[groups[i].0 - 1].
    let mut groups = Vec::new();
    let mut i = s;
    while i < e {
        let g = i;
        while i < e && b[i].is_ascii_digit() {
            i += 1;
        }
        groups.push((g, i));
        i += 1; // the separator
    }
    let n = groups.len();
    let sep_before = |k: usize| b[groups[k].0 - 1];
    let can_start = |k: usize| {
        if k == 0 {
            left_num_ok(text, s)
        } else {
            sep_before(k) == b' '
        }
    };
    let can_end = |k: usize| {
        if k + 1 == n {
            right_num_ok(text, e)
        } else {
            sep_before(k + 1) == b' '
        }
    };
    let mut first = 0;
    while first < n {
        let mut found = None;
        if can_start(first) {
            let mut digits = 0;
            for last in first..n {
                let len = groups[last].1 - groups[last].0;
                digits += len;
                if digits > 19 {
                    break;
                }
                if last > first {
                    if sep_before(last) != sep_before(first + 1) {
                        break;
                    }
                    let prev_len = groups[last - 1].1 - groups[last - 1].0;
                    if !(3..=6).contains(&prev_len) || len > 6 {
                        break;
                    }
                }
                if digits >= 13
                    && can_end(last)
                    && checks::card_ok(&digits_of(&b[groups[first].0..groups[last].1]))
                {
                    found = Some(last);
                }
            }
        }
        match found {
            Some(last) => {
                push((groups[first].0, groups[last].1));
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

/// IBANs, compact or in groups of four: the country's length (or 15–34 for countries not in
/// the table) and ISO 7064 mod 97.
fn iban(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !left_ok(text, s) {
        return None;
    }
    let b = text.as_bytes();
    let mut compact = Vec::with_capacity(34);
    // For each character of the compact form: its end offset and its group index.
    let mut ends = Vec::with_capacity(34);
    let mut group = 0usize;
    for (i, &c) in b.iter().enumerate().take(e).skip(s) {
        if c == b' ' {
            group += 1;
        } else {
            compact.push(c);
            ends.push((i + 1, group));
        }
    }
    let spaced = group > 0;
    let lengths: Vec<usize> = match checks::iban_length(&compact[..2]) {
        Some(l) => vec![l],
        None => (15..=34).rev().collect(),
    };
    for len in lengths {
        if len > compact.len() {
            continue;
        }
        let end = ends[len - 1].0;
        let ends_group = if end == e {
            right_ok(text, e)
        } else {
            b[end] == b' '
        };
        let grouped = !spaced
            || ends[..len]
                .iter()
                .enumerate()
                .all(|(k, &(_, g))| g == k / 4);
        // Next to "IBAN" a value in IBAN shape is masked even when its check digits fail.
        if ends_group
            && grouped
            && (checks::iban_mod97_ok(&compact[..len]) || words_near(text, s, end, &IBAN_WORDS))
        {
            return Some((s, end));
        }
    }
    None
}

/// `AAA-GG-SSSS` or `AAA GG SSSS`; nine bare digits only after a context word.
fn ssn(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !(left_num_ok(text, s) && right_num_ok(text, e)) {
        return None;
    }
    let v = &text.as_bytes()[s..e];
    let d = digits_of(v);
    let num = |r: std::ops::Range<usize>| {
        d[r].iter()
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'))
    };
    // Next to words that say so, a number in SSN shape is masked whatever its area: ITINs
    // start with 9, and a privacy gateway errs on the side of masking.
    let context = ssn_context(text, s, e);
    let form_ok = match v.len() {
        11 => v[3] == v[6] && !v[3].is_ascii_digit(),
        9 => context,
        _ => false,
    };
    (form_ok && (context || checks::ssn_ok(num(0..3), num(3..5), num(5..9)))).then_some((s, e))
}

/// SSN words in the 24 characters before the number or the 16 after it.
fn ssn_context(text: &str, s: usize, e: usize) -> bool {
    const WORDS: [&str; 9] = [
        "ssn",
        "social security",
        "itin",
        "taxpayer",
        "tax id",
        "社會安全",
        "社安號",
        "社安",
        "稅號",
    ];
    words_near(text, s, e, &WORDS)
}

/// One of `words` (lower-case) in the 24 characters before `s..e` or the 16 after it.
fn words_near(text: &str, s: usize, e: usize, words: &[&str]) -> bool {
    let start = text[..s]
        .char_indices()
        .rev()
        .take(24)
        .last()
        .map_or(s, |(i, _)| i);
    let end = text[e..]
        .char_indices()
        .nth(16)
        .map_or(text.len(), |(i, _)| e + i);
    let before = text[start..s].to_ascii_lowercase();
    let after = text[e..end].to_ascii_lowercase();
    words
        .iter()
        .any(|w| has_word(&before, w) || has_word(&after, w))
}

/// `w` in `hay`; an ASCII word must stand alone (`itin` is not in `writing`, `arc` not in
/// `search`), a Chinese one need not.
fn has_word(hay: &str, w: &str) -> bool {
    if !w.is_ascii() {
        return hay.contains(w);
    }
    let b = hay.as_bytes();
    hay.match_indices(w).any(|(i, _)| {
        let j = i + w.len();
        (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && (j == b.len() || !b[j].is_ascii_alphanumeric())
    })
}

/// Words that say a value is a Taiwan national ID / resident certificate / card number: next
/// to them the value is masked even when its checksum fails (a typo is still personal data).
const TW_ID_WORDS: [&str; 7] = [
    "身分證",
    "身份證",
    "國民身分",
    "national id",
    "id no",
    "id number",
    "身分字號",
];
const TW_ARC_WORDS: [&str; 5] = [
    "居留證",
    "居留證號",
    "統一證號",
    "arc",
    "resident certificate",
];
const IBAN_WORDS: [&str; 3] = ["iban", "國際銀行帳號", "国际银行账号"];
const CARD_WORDS: [&str; 8] = [
    "信用卡",
    "卡號",
    "金融卡",
    "card",
    "visa",
    "mastercard",
    "amex",
    "jcb",
];

/// A value in its shape that passes its check, or sits next to words that name its kind.
fn checked_or_named(
    text: &str,
    s: usize,
    e: usize,
    ok: fn(&[u8]) -> bool,
    words: &[&str],
) -> Option<(usize, usize)> {
    (left_ok(text, s)
        && right_ok(text, e)
        && (ok(&text.as_bytes()[s..e]) || words_near(text, s, e, words)))
    .then_some((s, e))
}

fn ipv4(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    if !(left_num_ok(text, s) && right_num_ok(text, e)) {
        return None;
    }
    let ok = text[s..e]
        .split('.')
        .all(|octet| (octet.len() == 1 || !octet.starts_with('0')) && octet.parse::<u8>().is_ok());
    ok.then_some((s, e))
}

/// IPv6: at least two colons, parsed by `std`, at least two non-empty groups and at least
/// one decimal digit (so `12:30:45`, MAC addresses and `dead::beef`-like words are left).
fn ipv6(text: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let valid = |v: &str| {
        v.parse::<Ipv6Addr>().is_ok()
            && v.bytes().any(|b| b.is_ascii_digit())
            && v.split([':', '.']).filter(|g| !g.is_empty()).count() >= 2
    };
    let right = right_ok(text, e) && byte_at(text, e) != Some(b':');
    // A leading single colon is punctuation (`IPv6:2001:db8::1`, or a full-width `：`).
    let starts: &[usize] = if byte_at(text, s) == Some(b':') {
        &[s, s + 1]
    } else {
        &[s]
    };
    for &start in starts {
        let left = if start == s {
            left_ok(text, s) && byte_before(text, s) != Some(b':')
        } else {
            true
        };
        if !left {
            continue;
        }
        let v = &text[start..e];
        if right && valid(v) {
            return Some((start, e));
        }
        // A trailing colon is punctuation too (`… 2001:db8::1: blocked`).
        if v.ends_with(':') && !v.ends_with("::") && valid(&v[..v.len() - 1]) {
            return Some((start, e - 1));
        }
    }
    None
}

fn api_key(text: &str, s: usize, e: usize, ok: KeyCheck) -> Option<(usize, usize)> {
    let left = left_ok(text, s) && byte_before(text, s) != Some(b'-');
    let right = !byte_at(text, e).is_some_and(|b| is_word(b) || b == b'-');
    (left && right && ok(&text[s..e])).then_some((s, e))
}

fn has_digit(v: &str) -> bool {
    v.bytes().any(|b| b.is_ascii_digit())
}

fn any_key_ok(_: &str) -> bool {
    true
}

/// `sk-…` must look random: letters and digits, and not a low-entropy slug such as
/// `sk-this-is-not-a-real-key`.
fn sk_key_ok(v: &str) -> bool {
    has_digit(v) && v.bytes().any(|b| b.is_ascii_alphabetic()) && checks::shannon_entropy(v) >= 3.0
}

/// A secret after `Bearer` or `api_key=`: trailing dots are punctuation; the value must be
/// at least 20 (Bearer: 16) characters and have at least `min_entropy` bits per char.
fn secret_value(text: &str, s: usize, e: usize, min_entropy: f64) -> Option<(usize, usize)> {
    let v = text[s..e].trim_end_matches('.');
    let e = s + v.len();
    let long_enough = v.len() >= 20 || (min_entropy < 3.5 && v.len() >= 16);
    let varied = has_digit(v)
        || (v.bytes().any(|b| b.is_ascii_uppercase()) && v.bytes().any(|b| b.is_ascii_lowercase()));
    (long_enough && varied && checks::shannon_entropy(v) >= min_entropy).then_some((s, e))
}
