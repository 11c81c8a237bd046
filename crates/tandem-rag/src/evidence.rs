//! Evidence first: the SLM reads, it does not write. The retrieved passages are cut into
//! numbered units (a sentence, or a table row with its header), the SLM names the units
//! that state the answer under a JSON-schema grammar ([`selection_schema`]) or none, and
//! the answer is quoted out of those units ([`quote`]). An answer written by a model is
//! held to its sources by [`bind`]. A question's named entities that no selected
//! unit mentions ([`missing_entities`]) mean the base does not answer it.

use crate::Passage;
use crate::text::{Lang, cjk_share, fold_width, sentence_spans, term_set};
use std::collections::HashSet;

/// One numbered unit of evidence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unit {
    /// 1-based, across all passages.
    pub id: usize,
    /// The passage's number (`Passage::n`), which answers cite.
    pub passage: usize,
    pub text: String,
    /// A table row (`label：value；…`), kept whole.
    pub row: bool,
}

/// Units longer than this many characters are cut.
const MAX_UNIT_CHARS: usize = 320;

/// Whether a line is a serialised table row: two or more `label：value` cells.
pub fn is_row(line: &str) -> bool {
    let zh = line.matches('：').count() >= 2 && line.contains('；');
    let en = line.matches(": ").count() >= 2 && line.contains("; ");
    zh || en
}

/// Whether a line reads as a heading rather than a statement: short, with no figure and
/// no sentence or clause punctuation ("Carry-over and payout", "二、密碼規定").
fn is_heading(line: &str) -> bool {
    let has_punct = line.chars().any(|c| {
        matches!(
            c,
            '.' | '!' | '?' | ':' | ';' | ',' | '。' | '！' | '？' | '：' | '；' | '，'
        )
    });
    let has_digit = line.chars().map(fold_width).any(|c| c.is_ascii_digit());
    !has_punct && !has_digit && term_set(line).len() <= 6
}

/// The passages' units: table rows whole, other lines cut into sentences. When there are
/// more than `max_units`, those sharing the fewest terms with the question are dropped
/// (the passages' order is kept).
pub fn units(question: &str, passages: &[Passage], max_units: usize) -> Vec<Unit> {
    let mut all: Vec<(usize, String, bool)> = Vec::new();
    for p in passages {
        for line in p.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if is_row(line) {
                all.push((p.n, line.to_string(), true));
            } else {
                for r in sentence_spans(line) {
                    let s = line[r].trim();
                    // A bare heading or list marker is no evidence on its own.
                    if term_set(s).len() >= 2 && !is_heading(s) {
                        all.push((p.n, s.to_string(), false));
                    }
                }
            }
        }
    }
    if all.len() > max_units {
        // Rank by the question's terms, each weighted by how rare it is among the units
        // (a term every table row repeats, like its header, says little).
        let q = term_set(question);
        let sets: Vec<HashSet<String>> = all.iter().map(|(_, t, _)| term_set(t)).collect();
        let n = sets.len() as f32;
        let weight = |term: &String| {
            let df = sets.iter().filter(|s| s.contains(term)).count() as f32;
            if df == 0.0 { 0.0 } else { (1.0 + n / df).ln() }
        };
        let weights: Vec<(String, f32)> = q.iter().map(|t| (t.clone(), weight(t))).collect();
        let mut scored: Vec<(f32, usize)> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let w: f32 = weights
                    .iter()
                    .filter(|(t, _)| s.contains(t))
                    .map(|(_, w)| w)
                    .sum();
                (w, i)
            })
            .collect();
        // Highest score first; ties keep the earlier (better-retrieved) passage's unit.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let keep: HashSet<usize> = scored.iter().take(max_units).map(|&(_, i)| i).collect();
        all = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, u)| u)
            .collect();
    }
    all.into_iter()
        .enumerate()
        .map(|(i, (passage, text, row))| Unit {
            id: i + 1,
            passage,
            text: text.chars().take(MAX_UNIT_CHARS).collect(),
            row,
        })
        .collect()
}

/// The numbered listing shown to the SLM: `(id) text`, one per line.
pub fn listing(units: &[Unit]) -> String {
    units
        .iter()
        .map(|u| format!("({}) {}", u.id, u.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Most units one selection may name.
pub const MAX_PICKS: usize = 3;

/// The JSON schema of the SLM's selection: `{"lines": [ids…]}`, ids among the units', at
/// most [`MAX_PICKS`], possibly none. (Measured against copying the chosen line's text
/// under an enum of the units' texts: numbers chose right more often and cost fewer
/// tokens.)
pub fn selection_schema(n_units: usize) -> serde_json::Value {
    let ids: Vec<usize> = (1..=n_units).collect();
    serde_json::json!({
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {"type": "integer", "enum": ids},
                "maxItems": MAX_PICKS,
            }
        },
        "required": ["lines"],
        "additionalProperties": false,
    })
}

/// The ids of a selection reply (`{"lines": [3, 7]}`), without repeats or unknown ids.
/// A reply that is not that JSON falls back to the numbers it contains.
pub fn parse_selection(reply: &str, n_units: usize) -> Vec<usize> {
    let from_json = serde_json::from_str::<serde_json::Value>(reply.trim())
        .ok()
        .and_then(|v| v.get("lines").and_then(|l| l.as_array()).cloned());
    let raw: Vec<usize> = match from_json {
        Some(ids) => ids
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .map(|v| v as usize)
            .collect(),
        None => crate::compress::parse_selection(reply, n_units),
    };
    let mut out = Vec::new();
    for id in raw {
        if (1..=n_units).contains(&id) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Splits a question that asks two or more things at once into its parts ("How many days
/// …, and who approves them?" → two). A question that asks one thing is one part.
pub fn parts(question: &str) -> Vec<String> {
    let q = question.trim();
    let mut cuts: Vec<usize> = Vec::new();
    // A question mark with more question after it.
    for (i, c) in q.char_indices() {
        if matches!(c, '?' | '？') {
            let rest = q[i + c.len_utf8()..].trim();
            if term_set(rest).len() >= 2 {
                cuts.push(i + c.len_utf8());
            }
        }
    }
    // ", and what …" / " and how many …": a conjunction opening a new question.
    let lower = q.to_lowercase();
    const WH: &[&str] = &[
        "what", "which", "who", "whom", "how", "when", "where", "why", "is", "are", "does", "do",
        "can",
    ];
    for conj in [", and ", "; and ", " and also ", ", as well as "] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(conj) {
            let at = from + pos;
            let next = lower[at + conj.len()..]
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            if WH.contains(&next) {
                cuts.push(at);
            }
            from = at + conj.len();
        }
    }
    // Chinese: "…幾天，並由誰核准？", "…多少，以及…", "…？還有…".
    for conj in [
        "，以及",
        "，並且",
        "，還有",
        "，另外",
        "；以及",
        "以及",
        "，而且",
    ] {
        let mut from = 0;
        while let Some(pos) = q[from..].find(conj) {
            let at = from + pos;
            let rest = &q[at + conj.len()..];
            if asks_zh(rest) && asks_zh(&q[..at]) {
                cuts.push(at);
            }
            from = at + conj.len();
        }
    }
    if cuts.is_empty() {
        return vec![q.to_string()];
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain(std::iter::once(q.len())) {
        let piece = q[start..c]
            .trim()
            .trim_start_matches([',', '，', ';', '；'])
            .trim();
        let piece = piece
            .strip_prefix("and ")
            .or_else(|| piece.strip_prefix("以及"))
            .or_else(|| piece.strip_prefix("還有"))
            .or_else(|| piece.strip_prefix("另外"))
            .or_else(|| piece.strip_prefix("並且"))
            .or_else(|| piece.strip_prefix("而且"))
            .unwrap_or(piece)
            .trim();
        if !term_set(piece).is_empty() {
            out.push(piece.to_string());
        }
        start = c;
    }
    if out.len() < 2 {
        vec![q.to_string()]
    } else {
        out
    }
}

/// Whether Chinese text asks something (a question word or particle).
fn asks_zh(s: &str) -> bool {
    [
        "幾", "多少", "什麼", "哪", "誰", "是否", "嗎", "如何", "怎麼", "多久", "何時",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// Named entities of a question that evidence must mention for the base to answer it:
/// product and plan names (`HarborWatch`, `Plan C`, `方案 B`), version numbers (`3.2`) and
/// quoted names (「福港理賠通」). Plain numbers are left out ("4 years" is answered by a
/// "3 to 5 years" row).
pub fn entities(question: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let folded: String = question.chars().map(fold_width).collect();
    let words: Vec<&str> = folded
        .split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
        .map(|w| w.trim_matches(['.', '-']))
        .filter(|w| !w.is_empty())
        .collect();
    for w in &words {
        let latin: String = w.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if latin.is_empty() {
            continue;
        }
        let has_digit = latin.chars().any(|c| c.is_ascii_digit());
        let has_alpha = latin.chars().any(|c| c.is_ascii_alphabetic());
        let inner_upper = latin.chars().skip(1).any(|c| c.is_ascii_uppercase());
        if has_digit && w.contains('.') && !has_alpha {
            // A version or a decimal: "3.2".
            out.push((*w).to_string());
        } else if has_alpha && inner_upper && latin.len() > 2 {
            // CamelCase product names ("HarborWatch"); plain capitalised words are left
            // out, since a question may name in English what a Chinese document names
            // in Chinese.
            out.push(latin.to_lowercase());
        } else if latin.len() == 1 && latin.chars().all(|c| c.is_ascii_uppercase()) {
            // A plan letter: "Plan C", "方案 B".
            out.push(latin.to_lowercase());
        }
    }
    // 「quoted」 names.
    let mut rest = question;
    while let Some(a) = rest.find('「') {
        let after = &rest[a + '「'.len_utf8()..];
        let Some(b) = after.find('」') else { break };
        let name = after[..b].trim();
        if !name.is_empty() && name.chars().count() <= 20 {
            out.push(name.to_lowercase());
        }
        rest = &after[b..];
    }
    let mut seen = HashSet::new();
    out.retain(|e| seen.insert(e.clone()));
    out
}

/// Lower-cased, full-width folded, without whitespace: how entities are looked up.
fn squash(s: &str) -> String {
    s.chars()
        .map(fold_width)
        .flat_map(char::to_lowercase)
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The question's entities that neither the selected units nor their passages' titles
/// and headings mention. A single letter counts only next to its plan word ("Plan C",
/// "方案 C", "C 方案"), a version only as a whole number.
pub fn missing_entities(question: &str, picked: &[&Unit], passages: &[Passage]) -> Vec<String> {
    let mut hay = String::new();
    for u in picked {
        hay.push_str(&squash(&u.text));
        hay.push('\n');
        if let Some(p) = passages.iter().find(|p| p.n == u.passage) {
            hay.push_str(&squash(&p.label()));
            hay.push('\n');
        }
    }
    entities(question)
        .into_iter()
        .filter(|e| {
            let e_sq = squash(e);
            if e_sq.chars().count() == 1 {
                let l = e_sq.as_str();
                ![
                    format!("plan{l}"),
                    format!("方案{l}"),
                    format!("{l}方案"),
                    format!("level{l}"),
                    format!("{l}級"),
                    format!("計畫{l}"),
                    format!("計劃{l}"),
                    format!("type{l}"),
                    format!("{l}型"),
                ]
                .iter()
                .any(|p| hay.contains(p.as_str()))
            } else if e_sq.chars().all(|c| c.is_ascii_digit() || c == '.') {
                !contains_number(&hay, &e_sq)
            } else {
                !hay.contains(&e_sq)
            }
        })
        .collect()
}

/// Whether `hay` holds the number `n` whole (not as part of a longer number).
fn contains_number(hay: &str, n: &str) -> bool {
    let mut from = 0;
    while let Some(pos) = hay[from..].find(n) {
        let at = from + pos;
        let before = hay[..at].chars().next_back();
        let after = hay[at + n.len()..].chars().next();
        let digitish = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
        // A trailing full stop ends a sentence; a trailing digit continues the number.
        if !digitish(before) && !after.is_some_and(|c| c.is_ascii_digit()) {
            return true;
        }
        from = at + n.len();
    }
    false
}

/// The answer quoted out of the units: each unit's text with its passage's marker, the
/// units of one passage sharing one marker.
pub fn quote(picked: &[&Unit]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < picked.len() {
        let p = picked[i].passage;
        let mut j = i;
        let mut texts: Vec<&str> = Vec::new();
        while j < picked.len() && picked[j].passage == p {
            texts.push(picked[j].text.trim());
            j += 1;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let joined = texts.join(" ");
        out.push_str(&joined);
        out.push_str(&format!(" [{p}]"));
        i = j;
    }
    out
}

/// Numbers (with decimals and thousands separators folded) in `text`.
pub fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let folded: Vec<char> = text.chars().map(fold_width).collect();
    for (i, &c) in folded.iter().enumerate() {
        let sep_in_number = (c == '.' || c == ',')
            && !cur.is_empty()
            && folded.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() {
            cur.push(c);
        } else if sep_in_number {
            if c == '.' {
                cur.push('.');
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Why a written answer does not hold to its evidence (empty when it does): every number
/// it states must appear in a selected unit that also shares a term with the question (a
/// unit in the other language than the question counts when it was selected), so a
/// figure copied from a neighbouring table row or another passage is caught.
pub fn bind(answer: &str, question: &str, picked: &[&Unit]) -> Vec<String> {
    let q_terms = term_set(question);
    let q_lang = Lang::detect(question);
    let mut why = Vec::new();
    let plain = crate::cite::strip_markers(answer, usize::MAX);
    for n in numbers(&plain) {
        let held = picked.iter().any(|u| {
            let other_lang = (cjk_share(&u.text) >= 0.2) != (q_lang == Lang::Zh);
            numbers(&u.text).contains(&n)
                && (other_lang || term_set(&u.text).intersection(&q_terms).next().is_some())
        });
        if !held {
            why.push(format!(
                "the answer states {n}, which its evidence does not"
            ));
        }
    }
    why
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::passage;

    fn leave() -> Vec<Passage> {
        vec![
            passage(
                1,
                "zh-leave.md",
                "特休依年資計算。\n年資：滿 2 年未滿 3 年；特休天數：10 天\n年資：滿 3 年未滿 5 年；特休天數：每年 14 天",
            ),
            passage(
                2,
                "travel.md",
                "Economy class is the default. Managers approve trips.",
            ),
        ]
    }

    #[test]
    fn units_keep_rows_whole_and_split_sentences() {
        let u = units("特休", &leave(), 20);
        let texts: Vec<&str> = u.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "特休依年資計算。",
                "年資：滿 2 年未滿 3 年；特休天數：10 天",
                "年資：滿 3 年未滿 5 年；特休天數：每年 14 天",
                "Economy class is the default.",
                "Managers approve trips."
            ]
        );
        assert!(u[1].row && !u[0].row);
        assert_eq!(u[4].passage, 2);
        assert_eq!(u[4].id, 5);
        assert!(listing(&u).starts_with("(1) 特休依年資計算。\n(2) 年資："));
        // Over the cap, the units sharing least with the question go.
        let few = units("Who approves trips?", &leave(), 2);
        assert_eq!(few.len(), 2);
        assert!(few.iter().any(|u| u.text == "Managers approve trips."));
    }

    #[test]
    fn headings_are_not_units() {
        let ps = vec![passage(
            1,
            "a.md",
            "Carry-over and payout\nUnused days carry over to 30 June.\n二、密碼規定\n密碼至少 12 個字元。",
        )];
        let texts: Vec<String> = units("x", &ps, 10).into_iter().map(|u| u.text).collect();
        assert_eq!(
            texts,
            vec!["Unused days carry over to 30 June.", "密碼至少 12 個字元。"]
        );
    }

    #[test]
    fn selections_parse_from_json_or_text() {
        assert_eq!(parse_selection(r#"{"lines": [3, 1, 3, 9]}"#, 5), vec![3, 1]);
        assert_eq!(parse_selection(r#"{"lines": []}"#, 5), Vec::<usize>::new());
        assert_eq!(parse_selection("Lines 2 and 4.", 5), vec![2, 4]);
        let s = selection_schema(3);
        assert_eq!(
            s["properties"]["lines"]["items"]["enum"],
            serde_json::json!([1, 2, 3])
        );
    }

    #[test]
    fn multi_part_questions_split() {
        assert_eq!(
            parts("How many days of leave do I get, and who approves it?"),
            vec!["How many days of leave do I get", "who approves it?"]
        );
        assert_eq!(
            parts("What is the limit? Which form do I use?"),
            vec!["What is the limit?", "Which form do I use?"]
        );
        assert_eq!(
            parts("出差住宿每晚上限多少，以及誰負責核准？"),
            vec!["出差住宿每晚上限多少", "誰負責核准？"]
        );
        // One question with "and" inside stays whole.
        assert_eq!(
            parts("What do salt and pepper cost?"),
            vec!["What do salt and pepper cost?"]
        );
        assert_eq!(parts("特休和病假有幾天？"), vec!["特休和病假有幾天？"]);
    }

    #[test]
    fn entities_of_questions() {
        assert_eq!(
            entities("What is the battery life of the HarborWatch smartwatch?"),
            vec!["harborwatch"]
        );
        assert_eq!(
            entities("What is the annual premium of Harbor Health Plus Plan C?"),
            vec!["c"]
        );
        assert_eq!(
            entities("「福港理賠通」3.2 版新增了哪些功能？"),
            vec!["3.2", "福港理賠通"]
        );
        assert_eq!(
            entities("How many days after 10 years of service?"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn missing_entities_are_found() {
        let ps = vec![
            passage(
                1,
                "plans.md",
                "Plan: A; Premium: NT$1,000; Cover: basic\nPlan B covers more.",
            ),
            passage(
                2,
                "app.md",
                "Version 3.1 added travel claims. Version 3.10 is planned.",
            ),
        ];
        let u = units("x", &ps, 20);
        let refs: Vec<&Unit> = u.iter().collect();
        assert!(missing_entities("What does Plan B cost?", &refs, &ps).is_empty());
        assert_eq!(
            missing_entities("What does Plan C cost?", &refs, &ps),
            vec!["c"]
        );
        assert_eq!(
            missing_entities("What did version 3.2 add?", &refs, &ps),
            vec!["3.2"]
        );
        assert!(missing_entities("What did version 3.1 add?", &refs, &ps).is_empty());
        assert_eq!(
            missing_entities("HarborWatch battery?", &refs, &ps),
            vec!["harborwatch"]
        );
    }

    #[test]
    fn quotes_cite_their_passages() {
        let u = units("特休", &leave(), 20);
        assert_eq!(
            quote(&[&u[2], &u[4]]),
            "年資：滿 3 年未滿 5 年；特休天數：每年 14 天 [1]\nManagers approve trips. [2]"
        );
    }

    #[test]
    fn binding_catches_a_neighbouring_row() {
        let u = units("年資 3 年有幾天特休？", &leave(), 20);
        let picked = [&u[2]];
        assert!(bind("每年 14 天 [1]。", "年資 3 年有幾天特休？", &picked).is_empty());
        let why = bind("10 天 [1]。", "年資 3 年有幾天特休？", &picked);
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(
            numbers("NT$30,000 and 1.5 days, 2024."),
            vec!["30000", "1.5", "2024"]
        );
    }
}
