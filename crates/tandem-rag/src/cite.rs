//! Citations: the `[n]` markers in an answer, mapped to their passages, and the
//! "I don't know" signal.

use crate::Passage;
use crate::text::fold_width;

/// A cited source, as returned to the client in `tandem.citations`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Citation {
    /// The number the answer cites (`[1]` → 1).
    pub index: usize,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Heading path joined with " › " (empty when the chunk has none).
    pub heading: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The start of the passage's text.
    pub snippet: String,
}

impl Citation {
    /// The citation of `p`.
    pub fn of(p: &Passage) -> Citation {
        Citation {
            index: p.n,
            source: p.source.clone(),
            title: p.title.clone(),
            heading: p.heading.join(" › "),
            page: p.page,
            snippet: snippet(&p.text, 200),
        }
    }
}

/// The first `max` characters of `text` on one line, with "…" when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut s: String = flat.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// Citation markers in `text` with their byte ranges: `[1]`, `[1, 3]`, `[1][2]`, `[2-3]`,
/// `【1】`, `［1］`, `[1、2]`. Numbers outside `1..=max` are ignored.
pub fn markers(text: &str, max: usize) -> Vec<(std::ops::Range<usize>, Vec<usize>)> {
    let mut out = Vec::new();
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        let close = match c {
            '[' => ']',
            '【' => '】',
            '［' => '］',
            _ => continue,
        };
        let mut nums = Vec::new();
        let mut cur: Option<usize> = None;
        let mut range_from: Option<usize> = None;
        let mut ok = false;
        let mut end = start;
        let mut len = 0;
        for (i, d) in iter.clone() {
            len += 1;
            if len > 24 {
                break;
            }
            let d = fold_width(d);
            if d == close || (close != ']' && d == ']') {
                ok = cur.is_some();
                end = i + text[i..].chars().next().map_or(1, char::len_utf8);
                break;
            }
            if let Some(v) = d.to_digit(10) {
                cur = Some(
                    cur.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(v as usize),
                );
            } else if matches!(d, ',' | '、' | ' ' | ';' | '，' | '-' | '–') {
                if let Some(v) = cur.take() {
                    if let Some(a) = range_from.take() {
                        nums.extend((a..=v).take(50));
                    } else if d == '-' || d == '–' {
                        range_from = Some(v);
                    } else {
                        nums.push(v);
                    }
                }
            } else {
                break;
            }
        }
        if !ok {
            continue;
        }
        if let Some(v) = cur {
            if let Some(a) = range_from {
                nums.extend((a..=v).take(50));
            } else {
                nums.push(v);
            }
        }
        nums.retain(|&n| (1..=max).contains(&n));
        // Skip the marker's characters.
        while iter.peek().is_some_and(|&(i, _)| i < end) {
            iter.next();
        }
        if !nums.is_empty() {
            out.push((start..end, nums));
        }
    }
    out
}

/// The passage numbers cited in `text`, in order of first citation, without repeats.
pub fn cited(text: &str, max: usize) -> Vec<usize> {
    let mut seen = Vec::new();
    for (_, nums) in markers(text, max) {
        for n in nums {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
    }
    seen
}

/// `text` without its citation markers.
pub fn strip_markers(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (r, _) in markers(text, max) {
        out.push_str(&text[last..r.start]);
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// The citations of `answer`, in order of first citation.
pub fn citations(answer: &str, passages: &[Passage]) -> Vec<Citation> {
    let max = passages.iter().map(|p| p.n).max().unwrap_or(0);
    cited(answer, max)
        .into_iter()
        .filter_map(|n| passages.iter().find(|p| p.n == n).map(Citation::of))
        .collect()
}

const IDK_EN: &[&str] = &[
    "i don't know",
    "i do not know",
    "i don’t know",
    "don't know",
    "do not know",
    "not contain",
    "does not mention",
    "do not mention",
    "not mentioned",
    "no information",
    "not provided",
    "not specified",
    "cannot find",
    "can't find",
    "cannot answer",
    "can't answer",
    "unable to answer",
    "unable to find",
    "not available in the",
    "no mention",
];

const IDK_ZH: &[&str] = &[
    "我不知道",
    "不知道",
    "無法回答",
    "无法回答",
    "沒有提到",
    "没有提到",
    "未提及",
    "沒有提及",
    "沒有相關",
    "没有相关",
    "資料中沒有",
    "资料中没有",
    "無相關資訊",
    "找不到",
    "未提供",
    "沒有說明",
    "無法得知",
    "无法得知",
    "不清楚",
];

/// Whether `answer` says it does not know (in English or Chinese). Only the first two
/// sentences count, so an answer that merely mentions a missing detail at its end is not
/// an "I don't know".
pub fn is_idk(answer: &str) -> bool {
    let head: String = crate::text::sentences(answer)
        .into_iter()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let lower = head.to_lowercase().replace('’', "'");
    if lower.trim().is_empty() {
        return false;
    }
    IDK_EN.iter().any(|p| lower.contains(p)) || IDK_ZH.iter().any(|p| lower.contains(p))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::passage;

    #[test]
    fn marker_forms() {
        let t =
            "A [1]. B [2, 3] and [4][5]. C 【2】 D ［3］ E [1、2] F [2-4] G [9] H [x] I [] J [1";
        let m = markers(t, 5);
        let nums: Vec<Vec<usize>> = m.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            nums,
            vec![
                vec![1],
                vec![2, 3],
                vec![4],
                vec![5],
                vec![2],
                vec![3],
                vec![1, 2],
                vec![2, 3, 4]
            ]
        );
        for (r, _) in &m {
            let s = &t[r.clone()];
            assert!(
                s.starts_with(['[', '【', '［']) && s.ends_with([']', '】', '］']),
                "{s}"
            );
        }
        assert_eq!(cited(t, 5), vec![1, 2, 3, 4, 5]);
        assert_eq!(strip_markers("x [1] y [2].", 5), "x  y .");
    }

    #[test]
    fn citations_map_to_passages() {
        let ps = vec![
            passage(1, "a.md", "Alpha text"),
            passage(2, "b.md", "Beta   text\nsecond line"),
        ];
        let c = citations("Yes [2], see also [1] and [7].", &ps);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].index, c[0].source.as_str()), (2, "b.md"));
        assert_eq!(c[0].snippet, "Beta text second line");
        assert!(citations("no markers", &ps).is_empty());
        assert_eq!(snippet(&"字".repeat(300), 5), "字字字字字…");
    }

    #[test]
    fn idk_detection() {
        for yes in [
            "I don't know.",
            "I do not know based on the sources.",
            "The sources do not contain this information.",
            "我不知道。",
            "資料中沒有提到這一點。",
            "抱歉，文件未提及此事。",
        ] {
            assert!(is_idk(yes), "{yes}");
        }
        for no in [
            "Employees get 14 days [1].",
            "員工可享 14 天特休 [1]。",
            "",
            "The timeout is 15 minutes [1]. Other details are fine. It is not mentioned whether weekends count.",
        ] {
            assert!(!is_idk(no), "{no}");
        }
    }
}
