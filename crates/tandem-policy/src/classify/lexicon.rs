//! Keyword (Aho-Corasick) and pattern (regex set) rules.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Regex, RegexSet};

use super::ClassifyError;
use super::builtin::CategorySpec;
use super::text::{is_word_byte, normalize_for_match, scan_window};

/// One distinct keyword (after normalisation) and the categories that list it.
#[derive(Debug)]
struct Keyword {
    /// As written in the data or config (reported in `Classification::matched`).
    original: String,
    categories: Vec<usize>,
    /// Starts with an ASCII letter/digit: must not be preceded by one.
    word_start: bool,
    /// Ends with an ASCII letter/digit: must be followed by a non-word character, optionally
    /// after an English plural `s`/`es`.
    word_end: bool,
}

#[derive(Debug)]
struct Pattern {
    source: String,
    category: usize,
}

/// The compiled keyword and pattern rules of all categories.
pub(super) struct Lexicon {
    matcher: Option<AhoCorasick>,
    keywords: Vec<Keyword>,
    patterns: Option<RegexSet>,
    pattern_info: Vec<Pattern>,
    n_categories: usize,
}

/// Rule hits of one category in one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CategoryHits {
    /// Distinct keywords plus distinct patterns that fired.
    pub(super) count: u32,
    /// The first pattern that fired (in declaration order), if any.
    pub(super) pattern: Option<String>,
    /// The keyword that fired earliest in the text, if any.
    pub(super) keyword: Option<String>,
}

impl CategoryHits {
    /// The rule reported as `matched`: a pattern wins over a keyword.
    pub(super) fn matched(&self) -> Option<&str> {
        self.pattern.as_deref().or(self.keyword.as_deref())
    }

    pub(super) fn method(&self) -> &'static str {
        if self.pattern.is_some() {
            "pattern"
        } else {
            "keyword"
        }
    }
}

/// Rule hits of every category (indexed like the classifier's categories).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scan {
    pub(super) hits: Vec<CategoryHits>,
}

impl Scan {
    /// The categories with the most hits (at least one), in category order.
    pub(super) fn leaders(&self) -> Vec<usize> {
        let best = self.hits.iter().map(|h| h.count).max().unwrap_or(0);
        if best == 0 {
            return Vec::new();
        }
        (0..self.hits.len())
            .filter(|&i| self.hits[i].count == best)
            .collect()
    }
}

impl Lexicon {
    pub(super) fn build(categories: &[CategorySpec]) -> Result<Self, ClassifyError> {
        let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
        let mut keywords: Vec<Keyword> = Vec::new();
        let mut needles: Vec<String> = Vec::new();
        let mut pattern_info = Vec::new();
        let mut pattern_sources = Vec::new();
        for (ci, cat) in categories.iter().enumerate() {
            for kw in &cat.keywords {
                let norm = normalize_for_match(kw.trim());
                if norm.is_empty() || norm == " " {
                    return Err(ClassifyError::Invalid {
                        category: cat.id.clone(),
                        message: "empty keyword".to_owned(),
                    });
                }
                let norm = norm.trim().to_owned();
                let idx = match by_text.get(&norm) {
                    Some(&i) => i,
                    None => {
                        let bytes = norm.as_bytes();
                        keywords.push(Keyword {
                            original: kw.trim().to_owned(),
                            categories: Vec::new(),
                            word_start: bytes.first().is_some_and(|&b| is_word_byte(b)),
                            word_end: bytes.last().is_some_and(|&b| is_word_byte(b)),
                        });
                        needles.push(norm.clone());
                        by_text.insert(norm, keywords.len() - 1);
                        keywords.len() - 1
                    }
                };
                if !keywords[idx].categories.contains(&ci) {
                    keywords[idx].categories.push(ci);
                }
            }
            for pat in &cat.patterns {
                // Compiled alone first so that an error names the pattern and category.
                Regex::new(pat).map_err(|e| ClassifyError::InvalidPattern {
                    category: cat.id.clone(),
                    pattern: pat.clone(),
                    message: e.to_string(),
                })?;
                pattern_sources.push(pat.clone());
                pattern_info.push(Pattern {
                    source: pat.clone(),
                    category: ci,
                });
            }
        }
        let matcher = if needles.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&needles)
                    .map_err(|e| ClassifyError::Invalid {
                        category: "*".to_owned(),
                        message: format!("cannot build the keyword matcher: {e}"),
                    })?,
            )
        };
        let patterns = if pattern_sources.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&pattern_sources).map_err(|e| ClassifyError::InvalidPattern {
                    category: "*".to_owned(),
                    pattern: "(all patterns together)".to_owned(),
                    message: e.to_string(),
                })?,
            )
        };
        Ok(Self {
            matcher,
            keywords,
            patterns,
            pattern_info,
            n_categories: categories.len(),
        })
    }

    pub(super) fn keyword_count(&self) -> usize {
        self.keywords.len()
    }

    pub(super) fn pattern_count(&self) -> usize {
        self.pattern_info.len()
    }

    /// Runs every keyword and pattern over the scan window of `text`.
    pub(super) fn scan(&self, text: &str) -> Scan {
        let mut hits = vec![CategoryHits::default(); self.n_categories];
        let window = scan_window(text);
        if let Some(matcher) = &self.matcher {
            let hay = normalize_for_match(&window);
            let bytes = hay.as_bytes();
            let mut seen: Vec<usize> = Vec::new();
            for m in matcher.find_overlapping_iter(&hay) {
                let id = m.pattern().as_usize();
                let Some(kw) = self.keywords.get(id) else {
                    continue;
                };
                if seen.contains(&id) {
                    continue;
                }
                if kw.word_start && m.start() > 0 && is_word_byte(bytes[m.start() - 1]) {
                    continue;
                }
                if kw.word_end && !word_ends_at(bytes, m.end()) {
                    continue;
                }
                seen.push(id);
                for &ci in &kw.categories {
                    let h = &mut hits[ci];
                    h.count += 1;
                    if h.keyword.is_none() {
                        h.keyword = Some(kw.original.clone());
                    }
                }
            }
        }
        if let Some(set) = &self.patterns {
            for id in set.matches(&window).iter() {
                if let Some(p) = self.pattern_info.get(id) {
                    let h = &mut hits[p.category];
                    h.count += 1;
                    if h.pattern.is_none() {
                        h.pattern = Some(p.source.clone());
                    }
                }
            }
        }
        Scan { hits }
    }
}

/// Whether a keyword ending at byte `end` ends a word: the next byte is not a word byte,
/// or the word continues only with a plural `s` / `es`.
fn word_ends_at(bytes: &[u8], end: usize) -> bool {
    let rest = &bytes[end..];
    let ends = |n: usize| rest.get(n).is_none_or(|&b| !is_word_byte(b));
    ends(0) || (rest.first() == Some(&b's') && ends(1)) || (rest.starts_with(b"es") && ends(2))
}
