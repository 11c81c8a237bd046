//! Text helpers shared by the modes: language, sentences, and the terms used to compare a
//! sentence with a passage (lower-cased Latin words and CJK character bigrams).

use std::collections::HashSet;

/// True for CJK ideographs (and the compatibility block), the characters that have no
/// spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Share of letters (alphabetic characters) that are CJK.
pub fn cjk_share(text: &str) -> f32 {
    let (mut cjk, mut letters) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        cjk += usize::from(is_cjk(c));
    }
    if letters == 0 {
        0.0
    } else {
        cjk as f32 / letters as f32
    }
}

/// The language a question is asked in, which the answer should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// Chinese when at least a fifth of the letters are CJK (Chinese questions often carry
    /// English product names).
    pub fn detect(text: &str) -> Lang {
        if cjk_share(text) >= 0.2 {
            Lang::Zh
        } else {
            Lang::En
        }
    }
}

/// Splits text into sentences at `. ! ?` followed by whitespace, at `。！？；!?` and at line
/// breaks. Returns byte ranges of trimmed, non-empty sentences.
pub fn sentence_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let end = match c {
            '。' | '！' | '？' | '；' | '\n' => Some(i + c.len_utf8()),
            '.' | '!' | '?' => match next {
                None => Some(i + 1),
                Some(n) if n.is_whitespace() => Some(i + 1),
                // Closing quotes and brackets stay with their sentence.
                Some(_) => None,
            },
            _ => None,
        };
        if let Some(end) = end {
            push_trimmed(text, start..end, &mut out);
            start = end;
        }
    }
    push_trimmed(text, start..text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, r: std::ops::Range<usize>, out: &mut Vec<std::ops::Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead + trail < s.len() {
        out.push(r.start + lead..r.end - trail);
    }
}

/// The sentences of `text`.
pub fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|r| &text[r]).collect()
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "by", "with", "from", "is",
    "are", "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "as", "if",
    "can", "do", "does", "did", "how", "what", "when", "where", "which", "who", "why", "i", "you",
    "your", "we", "our", "they", "their", "he", "she", "my", "me", "not", "no", "yes", "will",
    "would", "should", "may", "must", "has", "have", "had", "there", "than", "then", "so", "about",
    "into", "per", "any", "all", "each", "more", "most",
];

/// Content terms of `text`: lower-cased Latin words and numbers (stop words dropped) and
/// CJK character bigrams (single characters for isolated ideographs).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let w = std::mem::take(word);
            if !STOPWORDS.contains(&w.as_str()) {
                out.push(w);
            }
        }
    };
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => out.push(run[0].to_string()),
            _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in text.chars().map(fold_width) {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.extend(c.to_lowercase());
        } else if (c == '.' || c == ',') && word.chars().last().is_some_and(|l| l.is_ascii_digit())
        {
            // Keep "1.5" and "30,000" whole (a trailing separator is dropped below).
            word.push(c);
        } else {
            if word.ends_with(['.', ',']) {
                word.pop();
            }
            flush_word(&mut word, &mut out);
            flush_run(&mut run, &mut out);
        }
    }
    if word.ends_with(['.', ',']) {
        word.pop();
    }
    flush_word(&mut word, &mut out);
    flush_run(&mut run, &mut out);
    for t in &mut out {
        if t.contains(',')
            && t.chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '.')
        {
            t.retain(|c| c != ',');
        }
    }
    out
}

/// The distinct terms of `text`.
pub fn term_set(text: &str) -> HashSet<String> {
    terms(text).into_iter().collect()
}

/// Full-width ASCII forms (`０`, `Ａ`, `％`) to their ASCII counterparts.
pub fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// Rough token count used for budgets when no tokenizer is at hand: a CJK character is
/// about one token, other text about four characters per token.
pub fn estimate_tokens(text: &str) -> usize {
    let (mut cjk, mut other) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) || (c as u32) >= 0x3000 {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    cjk + other.div_ceil(4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_in_both_languages() {
        let s = sentences("First one. Second? 第三句。第四句！最後\nLast line v1.5 ok");
        assert_eq!(
            s,
            vec![
                "First one.",
                "Second?",
                "第三句。",
                "第四句！",
                "最後",
                "Last line v1.5 ok"
            ]
        );
        assert!(sentences("  \n ").is_empty());
    }

    #[test]
    fn terms_mix_words_and_bigrams() {
        let t = terms("The VPN 用戶端版本 is 5.3, costs NT$30,000.");
        assert!(t.contains(&"vpn".to_string()));
        assert!(t.contains(&"用戶".to_string()) && t.contains(&"端版".to_string()));
        assert!(t.contains(&"5.3".to_string()), "{t:?}");
        assert!(t.contains(&"30000".to_string()), "{t:?}");
        assert!(!t.contains(&"the".to_string()));
        assert_eq!(terms("字"), vec!["字".to_string()]);
        assert_eq!(terms("１５分鐘"), vec!["15", "分鐘"]);
    }

    #[test]
    fn language_detection() {
        assert_eq!(Lang::detect("HarborNet 的登入逾時是多久？"), Lang::Zh);
        assert_eq!(Lang::detect("How long is the HarborNet timeout?"), Lang::En);
        assert_eq!(Lang::detect("123"), Lang::En);
    }

    #[test]
    fn token_estimate() {
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("中文字"), 3);
        assert_eq!(estimate_tokens(""), 0);
    }
}
