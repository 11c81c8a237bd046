//! `draft_verify` mode (Speculative RAG): the SLM drafts an answer from each of several
//! disjoint subsets of the passages; the LLM picks and corrects the best in one call.

use crate::text::fold_width;

/// One SLM draft.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    /// Passage numbers the draft was written from.
    pub subset: Vec<usize>,
    pub answer: String,
    pub rationale: String,
}

/// Splits passage positions `0..n` into at most `drafts` subsets, dealing them out in rank
/// order so that every subset gets some of the best passages. Empty subsets are dropped.
pub fn subsets(n: usize, drafts: usize) -> Vec<Vec<usize>> {
    let drafts = drafts.clamp(1, n.max(1));
    let mut out = vec![Vec::new(); drafts];
    for i in 0..n {
        out[i % drafts].push(i);
    }
    out.retain(|s| !s.is_empty());
    out
}

const RATIONALE_MARKERS: &[&str] = &["rationale:", "理由：", "理由:", "rationale：", "reason:"];

/// Splits a draft reply into its answer and its rationale.
pub fn parse_draft(reply: &str, subset: Vec<usize>) -> Draft {
    let lower = reply.to_ascii_lowercase();
    let cut = RATIONALE_MARKERS
        .iter()
        .filter_map(|m| lower.find(m).map(|i| (i, m.len())))
        .min_by_key(|&(i, _)| i);
    let (answer, rationale) = match cut {
        // `to_ascii_lowercase` keeps byte offsets.
        Some((i, len)) if reply.is_char_boundary(i) && reply.is_char_boundary(i + len) => {
            (reply[..i].trim(), reply[i + len..].trim())
        }
        _ => (reply.trim(), ""),
    };
    let answer = answer
        .strip_prefix("Answer:")
        .or_else(|| answer.strip_prefix("回答："))
        .unwrap_or(answer)
        .trim();
    Draft {
        subset,
        answer: answer.to_string(),
        rationale: rationale.to_string(),
    }
}

/// The LLM's verdict on the drafts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// 1-based draft number the LLM chose; `None` for "Best: 0" or no readable choice.
    pub best: Option<usize>,
    /// The final answer.
    pub answer: String,
}

/// Reads "Best: N" and the answer after it. Without a readable answer, the chosen draft's
/// answer is used; without a readable choice, the whole reply is the answer.
pub fn parse_verdict(reply: &str, drafts: &[Draft]) -> Verdict {
    let folded: String = reply.chars().map(fold_width).collect();
    let lower = folded.to_ascii_lowercase();
    let Some(pos) = lower.find("best") else {
        return Verdict {
            best: None,
            answer: reply.trim().to_string(),
        };
    };
    let after = &folded[pos + 4..];
    let digits: String = after
        .trim_start_matches([':', ' ', '：', '*', '#'])
        .trim_start_matches("draft")
        .trim_start_matches("Draft")
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let best = digits
        .parse::<usize>()
        .ok()
        .filter(|&b| (1..=drafts.len()).contains(&b));
    let rest = after
        .find('\n')
        .map(|i| after[i + 1..].trim())
        .unwrap_or("");
    let rest = rest
        .strip_prefix("Answer:")
        .or_else(|| rest.strip_prefix("Final answer:"))
        .or_else(|| rest.strip_prefix("回答："))
        .or_else(|| rest.strip_prefix("回答:"))
        .unwrap_or(rest)
        .trim();
    let answer = if rest.is_empty() {
        best.and_then(|b| drafts.get(b - 1))
            .map(|d| d.answer.clone())
            .unwrap_or_else(|| reply.trim().to_string())
    } else {
        rest.to_string()
    };
    Verdict { best, answer }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subsets_deal_passages_round_robin() {
        assert_eq!(subsets(5, 3), vec![vec![0, 3], vec![1, 4], vec![2]]);
        assert_eq!(subsets(2, 3), vec![vec![0], vec![1]]);
        assert_eq!(subsets(0, 3), Vec::<Vec<usize>>::new());
        assert_eq!(subsets(4, 0), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn drafts_parse() {
        let d = parse_draft(
            "Answer: 14 days [1].\nRationale: source [1] lists it.",
            vec![1],
        );
        assert_eq!(d.answer, "14 days [1].");
        assert_eq!(d.rationale, "source [1] lists it.");
        let d = parse_draft("十四天 [2]。\n理由：資料 [2] 寫明。", vec![2]);
        assert_eq!(
            (d.answer.as_str(), d.rationale.as_str()),
            ("十四天 [2]。", "資料 [2] 寫明。")
        );
        let d = parse_draft("just an answer", vec![]);
        assert_eq!(
            (d.answer.as_str(), d.rationale.as_str()),
            ("just an answer", "")
        );
    }

    #[test]
    fn verdicts_parse() {
        let drafts = vec![
            parse_draft("A [1]\nRationale: r", vec![1]),
            parse_draft("B [2]\nRationale: r", vec![2]),
        ];
        let v = parse_verdict("Best: 2\nB, corrected [2].", &drafts);
        assert_eq!((v.best, v.answer.as_str()), (Some(2), "B, corrected [2]."));
        let v = parse_verdict("**Best: Draft 1**", &drafts);
        assert_eq!((v.best, v.answer.as_str()), (Some(1), "A [1]"));
        let v = parse_verdict("Best: 0\nI don't know.", &drafts);
        assert_eq!((v.best, v.answer.as_str()), (None, "I don't know."));
        let v = parse_verdict("The answer is A [1].", &drafts);
        assert_eq!((v.best, v.answer.as_str()), (None, "The answer is A [1]."));
        let v = parse_verdict("Best：２\n回答：乙 [2]。", &drafts);
        assert_eq!((v.best, v.answer.as_str()), (Some(2), "乙 [2]。"));
    }
}
