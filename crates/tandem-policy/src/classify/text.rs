//! Text preparation for the classifier: normalisation for keyword matching and the cheap,
//! character-based windows that bound the work done per request.

use std::borrow::Cow;

/// Bytes from the start of the text scanned by keywords and patterns.
pub(super) const SCAN_HEAD_BYTES: usize = 8 * 1024;
/// Bytes from the end of the text scanned by keywords and patterns (instructions such as
/// "summarise the above" often come after a pasted document).
pub(super) const SCAN_TAIL_BYTES: usize = 2 * 1024;

/// Budget of the text handed to the embedder, in cost units (see [`char_cost`]). 64 units
/// are about 64 characters of English (≈ 12 words, ≈ 16 WordPiece tokens) or 21 CJK
/// characters. The budget keeps the classifier's embedding inside its latency budget (the
/// forward pass costs a fixed part plus a part per token). Measured on the labelled sets
/// (2026-11-29, int8 MiniLM): 64 units give tuning 0.914 / holdout 0.893, 80 units
/// 0.896 / 0.893, 56 units 0.905 / 0.877 (Chinese holdout 0.803), 256 units 0.896 / 0.885:
/// the head of a request says what kind of task it is.
pub(super) const EMBED_BUDGET: usize = 64;
/// Share of [`EMBED_BUDGET`] given to the head of an over-long text; the rest goes to its
/// tail.
const EMBED_HEAD_SHARE: usize = 3; // out of 4

/// Cost of one character towards [`EMBED_BUDGET`]: an ASCII letter, digit or whitespace is
/// a fraction of a typical token (1 unit), while punctuation, CJK and other characters
/// usually are a token each (3 units).
fn char_cost(c: char) -> usize {
    if c.is_ascii_alphanumeric() || c.is_whitespace() {
        1
    } else {
        3
    }
}

/// The part of `text` that is embedded: the whole (trimmed) text when it fits
/// [`EMBED_BUDGET`], otherwise its head (¾ of the budget) and tail (¼) joined by a newline.
/// Runs in time proportional to the budget, not to the text.
pub fn embed_window(text: &str) -> Cow<'_, str> {
    let text = text.trim();
    let head_end = prefix_within(text, EMBED_BUDGET);
    if head_end == text.len() {
        return Cow::Borrowed(text);
    }
    let head_end = prefix_within(text, EMBED_BUDGET * EMBED_HEAD_SHARE / 4);
    let tail_start =
        suffix_within(text, EMBED_BUDGET - EMBED_BUDGET * EMBED_HEAD_SHARE / 4).max(head_end);
    let head = text[..head_end].trim_end();
    let tail = text[tail_start..].trim_start();
    if tail.is_empty() {
        return Cow::Borrowed(head);
    }
    Cow::Owned(format!("{head}\n{tail}"))
}

/// Byte length of the longest prefix of `text` whose cost is at most `budget`.
fn prefix_within(text: &str, budget: usize) -> usize {
    let mut spent = 0;
    for (i, c) in text.char_indices() {
        spent += char_cost(c);
        if spent > budget {
            return i;
        }
    }
    text.len()
}

/// Byte offset of the longest suffix of `text` whose cost is at most `budget`.
fn suffix_within(text: &str, budget: usize) -> usize {
    let mut spent = 0;
    let mut start = text.len();
    for (i, c) in text.char_indices().rev() {
        spent += char_cost(c);
        if spent > budget {
            return start;
        }
        start = i;
    }
    start
}

/// The part of `text` scanned by keywords and patterns: all of it up to
/// [`SCAN_HEAD_BYTES`] + [`SCAN_TAIL_BYTES`], otherwise its head and tail joined by a
/// newline.
pub(super) fn scan_window(text: &str) -> Cow<'_, str> {
    if text.len() <= SCAN_HEAD_BYTES + SCAN_TAIL_BYTES {
        return Cow::Borrowed(text);
    }
    let head_end = floor_char_boundary(text, SCAN_HEAD_BYTES);
    let tail_start = ceil_char_boundary(text, text.len() - SCAN_TAIL_BYTES);
    Cow::Owned(format!("{}\n{}", &text[..head_end], &text[tail_start..]))
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Normalises text for keyword matching: full-width ASCII forms (`ＰＹＴＨＯＮ`, `（`) are
/// folded to ASCII, every run of whitespace (the ideographic space included) becomes one
/// space, and letters are lowercased. Applied to keywords and to the scanned text alike.
pub(super) fn normalize_for_match(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        let c = fold_width(c);
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Maps a full-width ASCII variant (U+FF01..U+FF5E) to its ASCII character and the
/// ideographic space to a space; other characters are returned unchanged.
fn fold_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// Whether a byte is an ASCII letter or digit (word character for keyword boundaries).
pub(super) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(s: &str) -> usize {
        s.chars().map(char_cost).sum()
    }

    #[test]
    fn short_text_is_embedded_whole_and_trimmed() {
        assert_eq!(embed_window("  hello world \n"), "hello world");
        assert_eq!(embed_window("你好"), "你好");
        assert_eq!(embed_window(""), "");
    }

    #[test]
    fn long_text_keeps_head_and_tail_within_budget() {
        let body = "lorem ipsum dolor sit amet ".repeat(2000);
        let text = format!("Summarise the following.\n{body}\nThanks, keep it short");
        let w = embed_window(&text);
        assert!(w.starts_with("Summarise the following."));
        assert!(w.ends_with("keep it short"));
        assert!(cost(&w) <= EMBED_BUDGET + 3, "cost {}", cost(&w));
        assert!(w.len() < 600, "{}", w.len());
    }

    #[test]
    fn long_cjk_text_is_cut_on_char_boundaries() {
        let text = "保險理賠".repeat(10_000);
        let w = embed_window(&text);
        assert!(w.chars().count() <= EMBED_BUDGET / 3 + 1);
        assert!(w.starts_with("保險理賠"));
        let s = scan_window(&text);
        assert!(s.len() <= SCAN_HEAD_BYTES + SCAN_TAIL_BYTES + 1);
        assert!(s.starts_with("保險"));
    }

    #[test]
    fn normalisation_folds_width_case_and_space() {
        assert_eq!(
            normalize_for_match("ＰＹＴＨＯＮ　Code\n\n  Ok"),
            "python code ok"
        );
        assert_eq!(normalize_for_match("ＳＱＬ查詢（急）"), "sql查詢(急)");
        assert_eq!(normalize_for_match("İstanbul"), "i̇stanbul");
    }
}
