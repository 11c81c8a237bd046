//! `compress` mode: the passages are split into numbered sentences, the SLM names the ones
//! needed ([`crate::prompt::select`]), and the kept sentences — grouped under their
//! passage's number, so the LLM cites the original sources — form the LLM's context.
//! Sentences sharing the most terms with the question are kept too, as a safety net for a
//! small model that picks badly, all within a token budget.

use crate::Passage;
use crate::text::{estimate_tokens, sentence_spans, term_set};
use std::collections::HashSet;

/// A sentence of a passage, numbered across all passages from 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sentence {
    pub id: usize,
    /// The passage's number (`Passage::n`).
    pub passage: usize,
    pub text: String,
    /// Share of the question's terms found in the sentence.
    pub overlap: f32,
}

/// Sentences longer than this many characters are cut for the selection prompt.
const MAX_SENTENCE_CHARS: usize = 300;

/// Splits the passages into sentences and scores each against the question. At most
/// `max_sentences` are returned (the passages' order is kept, later ones are dropped).
pub fn sentences(question: &str, passages: &[Passage], max_sentences: usize) -> Vec<Sentence> {
    let q = term_set(question);
    let mut out = Vec::new();
    for p in passages {
        for r in sentence_spans(&p.text) {
            if out.len() >= max_sentences {
                return out;
            }
            let text = p.text[r].to_string();
            let s = term_set(&text);
            let overlap = if q.is_empty() {
                0.0
            } else {
                q.intersection(&s).count() as f32 / q.len() as f32
            };
            out.push(Sentence {
                id: out.len() + 1,
                passage: p.n,
                text,
                overlap,
            });
        }
    }
    out
}

/// The numbered list shown to the SLM: `id. [passage] sentence`, one per line.
pub fn numbered(sentences: &[Sentence]) -> String {
    sentences
        .iter()
        .map(|s| {
            let t: String = s.text.chars().take(MAX_SENTENCE_CHARS).collect();
            format!("{}. [{}] {}", s.id, s.passage, t.replace('\n', " "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sentence ids in the SLM's reply, in its order, without repeats or ids out of range.
/// Anything that is not a number is ignored, so "3, 7 and 12." gives `[3, 7, 12]`.
pub fn parse_selection(reply: &str, max_id: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur: Option<usize> = None;
    let folded: String = reply.chars().map(crate::text::fold_width).collect();
    for c in folded.chars().chain(std::iter::once(' ')) {
        if let Some(d) = c.to_digit(10) {
            cur = Some(
                cur.unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(d as usize),
            );
        } else if let Some(v) = cur.take()
            && (1..=max_id).contains(&v)
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

/// The compressed context and what it saved.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Compressed {
    /// Kept sentences grouped by passage: `[n] label\nsentence sentence`.
    pub context: String,
    /// Ids of the kept sentences, in context order.
    pub kept: Vec<usize>,
    /// How many of them the SLM picked (the rest came from the term overlap).
    pub picked_by_slm: usize,
    /// Estimated tokens of all the passages' text and of the compressed context.
    pub tokens_before: usize,
    pub tokens_after: usize,
}

impl Compressed {
    /// `1 − after / before`.
    pub fn reduction(&self) -> f32 {
        if self.tokens_before == 0 {
            0.0
        } else {
            1.0 - self.tokens_after as f32 / self.tokens_before as f32
        }
    }
}

/// How much to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// At most this many estimated tokens of context.
    pub max_tokens: usize,
    /// Always keep this many sentences with the highest overlap with the question.
    pub min_overlap_sentences: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_tokens: 350,
            min_overlap_sentences: 2,
        }
    }
}

/// Builds the compressed context from the SLM's picks (`picked`, ids in its order) and the
/// best-overlapping sentences, within `budget`.
pub fn compress(
    passages: &[Passage],
    sentences: &[Sentence],
    picked: &[usize],
    budget: Budget,
) -> Compressed {
    let tokens_before = passages.iter().map(|p| estimate_tokens(&p.text)).sum();
    let mut by_overlap: Vec<&Sentence> = sentences.iter().filter(|s| s.overlap > 0.0).collect();
    by_overlap.sort_by(|a, b| b.overlap.total_cmp(&a.overlap).then(a.id.cmp(&b.id)));
    // Order of preference: the best overlaps (safety net), the SLM's picks, then the rest
    // by overlap.
    let mut order: Vec<usize> = by_overlap
        .iter()
        .take(budget.min_overlap_sentences)
        .map(|s| s.id)
        .collect();
    order.extend(picked.iter().copied());
    order.extend(by_overlap.iter().map(|s| s.id));
    let mut kept: HashSet<usize> = HashSet::new();
    let mut used = 0;
    let mut labelled: HashSet<usize> = HashSet::new();
    let mut picked_by_slm = 0;
    for id in order {
        if kept.contains(&id) {
            continue;
        }
        let Some(s) = sentences.iter().find(|s| s.id == id) else {
            continue;
        };
        // The first sentence of a passage also brings its "[n] label" line.
        let label = if labelled.contains(&s.passage) {
            0
        } else {
            passages.iter().find(|p| p.n == s.passage).map_or(0, |p| {
                estimate_tokens(&format!("[{}] {}", p.n, p.label())) + 1
            })
        };
        let cost = estimate_tokens(&s.text) + 1 + label;
        if used + cost > budget.max_tokens && !kept.is_empty() {
            continue;
        }
        used += cost;
        labelled.insert(s.passage);
        kept.insert(id);
        if picked.contains(&id) {
            picked_by_slm += 1;
        }
    }
    let mut context = String::new();
    let mut kept_ids = Vec::new();
    for p in passages {
        let mine: Vec<&Sentence> = sentences
            .iter()
            .filter(|s| s.passage == p.n && kept.contains(&s.id))
            .collect();
        if mine.is_empty() {
            continue;
        }
        if !context.is_empty() {
            context.push_str("\n\n");
        }
        context.push_str(&format!("[{}] {}\n", p.n, p.label()));
        let joined: Vec<&str> = mine.iter().map(|s| s.text.as_str()).collect();
        context.push_str(&joined.join(" "));
        kept_ids.extend(mine.iter().map(|s| s.id));
    }
    Compressed {
        tokens_after: estimate_tokens(&context),
        context,
        kept: kept_ids,
        picked_by_slm,
        tokens_before,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::passage;

    fn sample() -> Vec<Passage> {
        vec![
            passage(
                1,
                "hr.md",
                "Annual leave depends on service. Employees with 3 to 5 years get 14 days. \
                 The office has a gym.",
            ),
            passage(2, "zh.md", "員工滿三年可享十四天特休。公司提供免費午餐。"),
        ]
    }

    #[test]
    fn sentences_are_numbered_across_passages() {
        let s = sentences(
            "How many days of annual leave after 3 years?",
            &sample(),
            100,
        );
        assert_eq!(s.len(), 5);
        assert_eq!(
            s.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(s[3].passage, 2);
        assert!(s[1].overlap > s[2].overlap, "{s:?}");
        assert_eq!(sentences("q", &sample(), 2).len(), 2);
        let listing = numbered(&s);
        assert!(listing.starts_with("1. [1] Annual leave depends on service."));
        assert!(listing.contains("\n4. [2] 員工滿三年可享十四天特休。"));
    }

    #[test]
    fn selection_parsing() {
        assert_eq!(parse_selection("3, 7 and 12.", 20), vec![3, 7, 12]);
        assert_eq!(parse_selection("Sentences 2，2、５ and 99", 20), vec![2, 5]);
        assert!(parse_selection("none", 20).is_empty());
        assert!(parse_selection("0", 20).is_empty());
    }

    #[test]
    fn compress_keeps_picks_and_overlap_within_budget() {
        let ps = sample();
        let s = sentences("How many days of annual leave after 3 years?", &ps, 100);
        let c = compress(&ps, &s, &[4], Budget::default());
        assert!(c.kept.contains(&2) && c.kept.contains(&4), "{c:?}");
        assert!(!c.kept.contains(&3) || c.kept.contains(&1));
        assert_eq!(c.picked_by_slm, 1);
        assert!(c.context.starts_with("[1] hr.md\n"), "{}", c.context);
        assert!(c.context.contains("[2] zh.md\n員工滿三年可享十四天特休。"));
        assert!(c.tokens_after <= c.tokens_before && c.reduction() >= 0.0);
        let tight = compress(
            &ps,
            &s,
            &[1, 2, 3, 4, 5],
            Budget {
                max_tokens: 12,
                min_overlap_sentences: 1,
            },
        );
        assert!(tight.tokens_after <= 12 + 8, "{tight:?}");
        assert!(!tight.kept.is_empty());
    }
}
