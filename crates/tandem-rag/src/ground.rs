//! The `escalate` mode's check of an SLM answer: does it say it does not know, does it cite,
//! do the cited passages support each sentence (terms and, above all, numbers), and was the
//! model sure of its tokens.

use crate::Passage;
use crate::cite::{cited, is_idk, markers, strip_markers};
use crate::text::{sentences, term_set};
use std::collections::HashSet;

/// One sentence of the answer and how well its sources support it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SentenceCheck {
    pub text: String,
    /// Passages it cites (or, when it cites none, those the whole answer cites).
    pub sources: Vec<usize>,
    /// Share of the sentence's terms found in those passages.
    pub support: f32,
    /// Numbers in the sentence that none of those passages contains.
    pub unsupported_numbers: Vec<String>,
}

/// The check of one answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grounding {
    /// The answer says it does not know.
    pub idk: bool,
    /// Passages the answer cites.
    pub cited: Vec<usize>,
    /// Checked sentences (those with at least two terms).
    pub sentences: Vec<SentenceCheck>,
}

impl Grounding {
    /// Lowest support of any checked sentence (1 when there is none).
    pub fn min_support(&self) -> f32 {
        self.sentences.iter().map(|s| s.support).fold(1.0, f32::min)
    }
}

/// Checks `answer` against the passages it was written from.
pub fn check(answer: &str, passages: &[Passage]) -> Grounding {
    let max = passages.iter().map(|p| p.n).max().unwrap_or(0);
    let all_cited = cited(answer, max);
    let idk = is_idk(answer);
    let mut checks = Vec::new();
    for s in sentences(answer) {
        let own: Vec<usize> = markers(s, max).into_iter().flat_map(|(_, n)| n).collect();
        let sources = if own.is_empty() {
            all_cited.clone()
        } else {
            own
        };
        let plain = strip_markers(s, max);
        let terms = term_set(&plain);
        if terms.len() < 2 {
            continue;
        }
        let mut known: HashSet<String> = HashSet::new();
        for p in passages.iter().filter(|p| sources.contains(&p.n)) {
            known.extend(term_set(&p.text));
        }
        let support =
            terms.iter().filter(|t| known.contains(*t)).count() as f32 / terms.len() as f32;
        let mut unsupported_numbers: Vec<String> = terms
            .iter()
            .filter(|t| t.chars().any(|c| c.is_ascii_digit()) && !known.contains(*t))
            .cloned()
            .collect();
        unsupported_numbers.sort();
        checks.push(SentenceCheck {
            text: s.to_string(),
            sources,
            support,
            unsupported_numbers,
        });
    }
    Grounding {
        idk,
        cited: all_cited,
        sentences: checks,
    }
}

/// When `escalate` hands the question to the LLM.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalatePolicy {
    /// Escalate when the SLM says it does not know (the LLM may find the answer).
    pub on_idk: bool,
    /// Escalate an answer that cites nothing.
    pub require_citation: bool,
    /// Escalate when a sentence's support is below this.
    pub min_support: f32,
    /// Escalate when a sentence states a number its sources do not contain.
    pub check_numbers: bool,
    /// Escalate when the mean token log-probability is below this.
    pub min_mean_logprob: Option<f32>,
}

impl Default for EscalatePolicy {
    fn default() -> Self {
        EscalatePolicy {
            on_idk: true,
            require_citation: true,
            min_support: 0.5,
            check_numbers: true,
            min_mean_logprob: Some(-1.0),
        }
    }
}

/// Whether to escalate, and why (empty when the answer stands).
pub fn escalate_reasons(
    g: &Grounding,
    mean_logprob: Option<f32>,
    p: &EscalatePolicy,
) -> Vec<String> {
    let mut why = Vec::new();
    if g.idk {
        if p.on_idk {
            why.push("the SLM said it does not know".to_string());
        }
        // An "I don't know" needs no citations or support.
        return why;
    }
    if p.require_citation && g.cited.is_empty() {
        why.push("the answer cites no source".into());
    }
    if let Some(s) = g.sentences.iter().find(|s| s.support < p.min_support) {
        why.push(format!(
            "a sentence is weakly supported by its sources ({:.2} < {:.2}): {}",
            s.support, p.min_support, s.text
        ));
    }
    if p.check_numbers
        && let Some(s) = g
            .sentences
            .iter()
            .find(|s| !s.unsupported_numbers.is_empty())
    {
        why.push(format!(
            "numbers not in the cited sources: {}",
            s.unsupported_numbers.join(", ")
        ));
    }
    if let (Some(min), Some(lp)) = (p.min_mean_logprob, mean_logprob)
        && lp < min
    {
        why.push(format!("low confidence: mean logprob {lp:.2} < {min:.2}"));
    }
    why
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::passage;

    fn ps() -> Vec<Passage> {
        vec![
            passage(
                1,
                "hr.md",
                "Employees with 3 to 5 years of service get 14 days of annual leave.",
            ),
            passage(2, "zh.md", "員工年資滿三年者，每年可享十四天特別休假。"),
        ]
    }

    #[test]
    fn supported_answer_passes() {
        let g = check(
            "Employees with 3 years of service get 14 days of annual leave [1].",
            &ps(),
        );
        assert!(!g.idk);
        assert_eq!(g.cited, vec![1]);
        assert_eq!(g.sentences.len(), 1);
        assert!(g.sentences[0].support >= 0.8, "{g:?}");
        assert!(escalate_reasons(&g, Some(-0.3), &EscalatePolicy::default()).is_empty());
        let g = check("員工滿三年可享十四天特別休假 [2]。", &ps());
        assert!(g.min_support() >= 0.5, "{g:?}");
        assert!(escalate_reasons(&g, None, &EscalatePolicy::default()).is_empty());
    }

    #[test]
    fn failures_escalate_with_reasons() {
        let p = EscalatePolicy::default();
        let g = check("Employees get 21 days of annual leave [1].", &ps());
        let why = escalate_reasons(&g, None, &p);
        assert!(why.iter().any(|w| w.contains("21")), "{why:?}");
        let g = check("Employees get 14 days of annual leave.", &ps());
        assert!(
            escalate_reasons(&g, None, &p)
                .iter()
                .any(|w| w.contains("cites no source"))
        );
        let g = check(
            "The cafeteria serves pizza on Fridays and tacos on Mondays [1].",
            &ps(),
        );
        assert!(
            escalate_reasons(&g, None, &p)
                .iter()
                .any(|w| w.contains("weakly supported"))
        );
        let g = check("Employees get 14 days of annual leave [1].", &ps());
        assert!(
            escalate_reasons(&g, Some(-2.5), &p)
                .iter()
                .any(|w| w.contains("low confidence"))
        );
        let g = check("I don't know.", &ps());
        assert!(g.idk);
        assert_eq!(escalate_reasons(&g, Some(-3.0), &p).len(), 1);
        let quiet = EscalatePolicy { on_idk: false, ..p };
        assert!(escalate_reasons(&g, None, &quiet).is_empty());
    }
}
