//! Lexical similarity for CJK text: TF-IDF cosine over character bigrams (plus single
//! characters and ASCII words).
//!
//! MiniLM is an English model: Chinese reaches it as single characters, mostly `[UNK]`,
//! and its cosine similarities between Chinese sentences are uniformly high (0.6–0.9 for
//! related and unrelated pairs alike), so they cannot tell a Chinese request's category
//! or detect that it belongs to none. Overlapping character bigrams are the classic
//! dictionary-free representation of Chinese text; weighted by IDF over the examples,
//! function-word bigrams (可以, 什麼, 幫我) count little and topical ones (退貨, 會議) a lot,
//! and a request sharing nothing with any example scores near 0.

use std::collections::HashMap;

use super::text::normalize_for_match;

/// Weight of a single-character feature relative to a bigram.
const UNIGRAM_WEIGHT: f32 = 0.5;

/// Sparse TF-IDF vectors of the examples, as an inverted index.
pub(super) struct NgramIndex {
    /// feature -> (row, weight) for every example containing it.
    postings: HashMap<u64, Vec<(usize, f32)>>,
    idf: HashMap<u64, f32>,
    /// IDF of a feature no example has.
    unseen_idf: f32,
    /// L2 norm of each row's TF-IDF vector.
    norms: Vec<f32>,
}

impl NgramIndex {
    pub(super) fn build(texts: &[String]) -> Self {
        let rows: Vec<Vec<(u64, f32)>> = texts.iter().map(|t| features(t)).collect();
        let mut df: HashMap<u64, usize> = HashMap::new();
        for row in &rows {
            for (f, _) in row {
                *df.entry(*f).or_default() += 1;
            }
        }
        let n = rows.len().max(1) as f32;
        let idf: HashMap<u64, f32> = df
            .into_iter()
            .map(|(f, d)| (f, (1.0 + n / d as f32).ln()))
            .collect();
        let mut postings: HashMap<u64, Vec<(usize, f32)>> = HashMap::new();
        let mut norms = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let mut norm = 0.0;
            for &(f, w) in row {
                let x = w * idf.get(&f).copied().unwrap_or(0.0);
                norm += x * x;
                postings.entry(f).or_default().push((i, x));
            }
            norms.push(norm.sqrt());
        }
        Self {
            postings,
            idf,
            unseen_idf: (1.0 + n).ln(),
            norms,
        }
    }

    /// Cosine similarity (in [0, 1]) of `text` to every example row.
    pub(super) fn similarities(&self, text: &str) -> Vec<f32> {
        let mut dots = vec![0f32; self.norms.len()];
        let mut qnorm = 0.0;
        for (f, w) in features(text) {
            let x = w * self.idf.get(&f).copied().unwrap_or(self.unseen_idf);
            qnorm += x * x;
            if let Some(list) = self.postings.get(&f) {
                for &(row, y) in list {
                    dots[row] += x * y;
                }
            }
        }
        let qnorm = qnorm.sqrt();
        for (d, n) in dots.iter_mut().zip(&self.norms) {
            *d = if qnorm > 0.0 && *n > 0.0 {
                (*d / (qnorm * n)).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
        dots
    }
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul syllables).
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3007}'                 // 〇
        | '\u{3040}'..='\u{30FF}'  // kana
        | '\u{3400}'..='\u{4DBF}'  // Han extension A
        | '\u{4E00}'..='\u{9FFF}'  // Han
        | '\u{AC00}'..='\u{D7AF}'  // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'  // Han compatibility
        | '\u{20000}'..='\u{2FFFF}' // Han extensions B+
    )
}

/// Share of the text's letters that are CJK, weighting a CJK character like three ASCII
/// letters (about one English word's worth of meaning). 0 for English, 1 for pure Chinese.
pub(super) fn cjk_share(text: &str) -> f32 {
    let (mut cjk, mut ascii) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 3;
        } else if c.is_ascii_alphanumeric() {
            ascii += 1;
        }
    }
    if cjk + ascii == 0 {
        0.0
    } else {
        cjk as f32 / (cjk + ascii) as f32
    }
}

/// Distinct features of `text` with their weights: CJK bigrams (weight 1) and characters
/// ([`UNIGRAM_WEIGHT`]), and lowercased ASCII words (weight 1).
fn features(text: &str) -> Vec<(u64, f32)> {
    let norm = normalize_for_match(text);
    let mut out: HashMap<u64, f32> = HashMap::new();
    let mut prev_cjk: Option<char> = None;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut HashMap<u64, f32>| {
        if !word.is_empty() {
            out.insert(hash(b"w", word.as_bytes()), 1.0);
            word.clear();
        }
    };
    for c in norm.chars() {
        if is_cjk(c) {
            flush(&mut word, &mut out);
            let mut buf = [0u8; 4];
            out.insert(
                hash(b"u", c.encode_utf8(&mut buf).as_bytes()),
                UNIGRAM_WEIGHT,
            );
            if let Some(p) = prev_cjk {
                let pair = format!("{p}{c}");
                out.insert(hash(b"b", pair.as_bytes()), 1.0);
            }
            prev_cjk = Some(c);
        } else {
            prev_cjk = None;
            if c.is_ascii_alphanumeric() {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
            }
        }
    }
    flush(&mut word, &mut out);
    out.into_iter().collect()
}

/// FNV-1a over a kind tag and the feature bytes.
fn hash(kind: &[u8], bytes: &[u8]) -> u64 {
    kind.iter()
        .chain([0xffu8].iter())
        .chain(bytes)
        .fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_find_the_related_example_and_ignore_unrelated_text() {
        let texts: Vec<String> = [
            "我想退貨，請問要怎麼辦理",
            "請幫我摘要這篇文章",
            "公司的特休規定是什麼",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let ix = NgramIndex::build(&texts);
        let s = ix.similarities("這件衣服可以退貨嗎");
        assert!(s[0] > s[1] && s[0] > s[2], "{s:?}");
        let s = ix.similarities("蒙娜麗莎是誰畫的");
        assert!(s.iter().all(|&x| x < 0.1), "{s:?}");
        assert!(ix.similarities("").iter().all(|&x| x == 0.0));
    }

    #[test]
    fn cjk_share_of_mixed_text() {
        assert_eq!(cjk_share("hello world"), 0.0);
        assert_eq!(cjk_share("保險理賠"), 1.0);
        let mixed = cjk_share("這個 SQL 查詢要怎麼改");
        assert!(mixed > 0.8 && mixed < 1.0, "{mixed}");
        assert_eq!(cjk_share("!!!"), 0.0);
    }
}
