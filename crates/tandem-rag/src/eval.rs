//! Evaluation of RAG answers against a question set (`eval/rag/questions.jsonl`): grading,
//! per-mode metrics, and the Markdown table and SVG chart of `tandem eval rag`.

use crate::cite::is_idk;
use crate::text::fold_width;
use std::collections::HashSet;

/// One question of the set (one JSON object per line).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    /// `en` or `zh`.
    pub lang: String,
    pub question: String,
    /// Reference answer (empty for unanswerable questions).
    #[serde(default)]
    pub answer: String,
    /// Strings any of which, found in an answer, makes it correct.
    #[serde(default)]
    pub accept: Vec<String>,
    /// A question that asks several things: one list of accepted strings per part, and
    /// every part must be matched (then `accept` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Vec<String>>,
    /// File names of the documents that answer it.
    #[serde(default)]
    pub sources: Vec<String>,
    pub answerable: bool,
    /// `fact`, `number`, `multi_hop`, `cross_language`, `unanswerable`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A bad question file.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("the question file has no questions")]
    Empty,
}

/// Parses a JSONL question file; errors name the line.
pub fn load_questions(text: &str) -> Result<Vec<Question>, EvalError> {
    let mut out: Vec<Question> = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let q: Question = serde_json::from_str(line).map_err(|e| EvalError::Line {
            line: line_no,
            reason: e.to_string(),
        })?;
        let bad = |reason: &str| EvalError::Line {
            line: line_no,
            reason: reason.to_string(),
        };
        if q.id.trim().is_empty() {
            return Err(bad("`id` is empty"));
        }
        if q.question.trim().is_empty() {
            return Err(bad("`question` is empty"));
        }
        if q.parts
            .iter()
            .any(|p| p.iter().all(|a| a.trim().is_empty()))
        {
            return Err(bad(
                "every entry of `parts` needs a non-empty accepted string",
            ));
        }
        if q.answerable
            && q.parts.is_empty()
            && q.accept.iter().all(|a| a.trim().is_empty())
            && q.answer.trim().is_empty()
        {
            return Err(bad(
                "an answerable question needs `accept` strings or an `answer`",
            ));
        }
        if !ids.insert(q.id.clone()) {
            return Err(bad(&format!("duplicate id `{}`", q.id)));
        }
        out.push(q);
    }
    if out.is_empty() {
        return Err(EvalError::Empty);
    }
    Ok(out)
}

/// Lower-cased, full-width folded, without whitespace and without thousands separators.
pub fn normalize(s: &str) -> String {
    let folded: Vec<char> = s
        .chars()
        .map(fold_width)
        .flat_map(char::to_lowercase)
        .collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in folded.iter().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let digit_around = i > 0
            && folded[i - 1].is_ascii_digit()
            && folded.get(i + 1).is_some_and(char::is_ascii_digit);
        if c == ',' && digit_around {
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether `answer` is right: an unanswerable question needs an "I don't know"; an
/// answerable one needs one of its `accept` strings (or its reference answer) in the answer.
pub fn grade(q: &Question, answer: &str) -> bool {
    if !q.answerable {
        return is_idk(answer);
    }
    let a = normalize(answer);
    let matches = |alts: &[String]| {
        alts.iter()
            .map(|s| normalize(s))
            .any(|s| !s.is_empty() && a.contains(&s))
    };
    if !q.parts.is_empty() {
        return q.parts.iter().all(|p| matches(p));
    }
    let accept: Vec<&String> = if q.accept.is_empty() {
        vec![&q.answer]
    } else {
        q.accept.iter().collect()
    };
    accept
        .into_iter()
        .map(|s| normalize(s))
        .any(|s| !s.is_empty() && a.contains(&s))
}

/// File name of a source path (`docs/hr/leave.md` → `leave.md`).
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// What happened to one question in one mode.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub id: String,
    pub mode: String,
    pub answerable: bool,
    pub answer: String,
    pub correct: bool,
    pub idk: bool,
    /// Source paths the answer cites.
    pub cited: Vec<String>,
    /// Source file names of the question.
    pub gold: Vec<String>,
    /// Tokens the LLM read and wrote for this question.
    pub llm_prompt_tokens: u32,
    pub llm_completion_tokens: u32,
    /// Estimated tokens saved against sending every retrieved chunk to the LLM.
    pub tokens_saved: i64,
    pub escalated: bool,
    pub latency_ms: f64,
    #[serde(default)]
    pub error: Option<String>,
}

impl Outcome {
    /// Builds the outcome of `answer` for `q`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(q: &Question, mode: &str, answer: &str, cited: Vec<String>) -> Outcome {
        Outcome {
            id: q.id.clone(),
            mode: mode.to_string(),
            answerable: q.answerable,
            answer: answer.to_string(),
            correct: grade(q, answer),
            idk: is_idk(answer),
            cited,
            gold: q.sources.clone(),
            llm_prompt_tokens: 0,
            llm_completion_tokens: 0,
            tokens_saved: 0,
            escalated: false,
            latency_ms: 0.0,
            error: None,
        }
    }

    /// (precision, recall) of the cited sources against the gold ones, by file name;
    /// precision is `None` when nothing is cited.
    pub fn citation_pr(&self) -> (Option<f64>, f64) {
        let gold: HashSet<&str> = self.gold.iter().map(|s| file_name(s)).collect();
        let cited: HashSet<&str> = self.cited.iter().map(|s| file_name(s)).collect();
        let hit = cited.intersection(&gold).count() as f64;
        let p = (!cited.is_empty()).then(|| hit / cited.len() as f64);
        let r = if gold.is_empty() {
            0.0
        } else {
            hit / gold.len() as f64
        };
        (p, r)
    }
}

/// Per-mode summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModeReport {
    pub mode: String,
    pub questions: usize,
    pub errors: usize,
    /// Share of all questions answered correctly (unanswerable ones need "I don't know").
    pub accuracy: f64,
    pub accuracy_answerable: f64,
    /// Mean over answerable questions whose answer cites something.
    pub citation_precision: f64,
    /// Mean over answerable questions.
    pub citation_recall: f64,
    /// Of the "I don't know" answers, the share given to unanswerable questions.
    pub idk_precision: f64,
    /// Of the unanswerable questions, the share answered "I don't know".
    pub idk_recall: f64,
    pub escalated_share: f64,
    pub llm_tokens_total: u64,
    pub llm_tokens_per_question: f64,
    pub tokens_saved_per_question: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The value at quantile `q` (nearest rank) of `v`.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// Summarises the outcomes of one mode.
pub fn summarize(mode: &str, outcomes: &[Outcome]) -> ModeReport {
    let all: Vec<&Outcome> = outcomes.iter().filter(|o| o.mode == mode).collect();
    let n = all.len();
    let answerable: Vec<&&Outcome> = all.iter().filter(|o| o.answerable).collect();
    let unanswerable = n - answerable.len();
    let precisions: Vec<f64> = answerable
        .iter()
        .filter_map(|o| o.citation_pr().0)
        .collect();
    let recalls: Vec<f64> = answerable.iter().map(|o| o.citation_pr().1).collect();
    let idk_all = all.iter().filter(|o| o.idk).count();
    let idk_right = all.iter().filter(|o| o.idk && !o.answerable).count();
    let llm: u64 = all
        .iter()
        .map(|o| u64::from(o.llm_prompt_tokens) + u64::from(o.llm_completion_tokens))
        .sum();
    let lat: Vec<f64> = all.iter().map(|o| o.latency_ms).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    ModeReport {
        mode: mode.to_string(),
        questions: n,
        errors: all.iter().filter(|o| o.error.is_some()).count(),
        accuracy: ratio(all.iter().filter(|o| o.correct).count(), n),
        accuracy_answerable: ratio(
            answerable.iter().filter(|o| o.correct).count(),
            answerable.len(),
        ),
        citation_precision: mean(&precisions),
        citation_recall: mean(&recalls),
        idk_precision: ratio(idk_right, idk_all),
        idk_recall: ratio(idk_right, unanswerable),
        escalated_share: ratio(all.iter().filter(|o| o.escalated).count(), n),
        llm_tokens_total: llm,
        llm_tokens_per_question: if n == 0 { 0.0 } else { llm as f64 / n as f64 },
        tokens_saved_per_question: mean(
            &all.iter()
                .map(|o| o.tokens_saved as f64)
                .collect::<Vec<_>>(),
        ),
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p95_ms: percentile(&lat, 0.95),
    }
}

/// The Markdown table of the reports.
pub fn markdown(reports: &[ModeReport]) -> String {
    let mut s = String::from(
        "| mode | questions | accuracy | answerable acc. | citation P | citation R | IDK precision | IDK recall | escalated | LLM tokens/q | tokens saved/q | p50 ms | p95 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        s.push_str(&format!(
            "| {} | {}{} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            r.mode,
            r.questions,
            if r.errors > 0 { format!(" ({} errors)", r.errors) } else { String::new() },
            r.accuracy,
            r.accuracy_answerable,
            r.citation_precision,
            r.citation_recall,
            r.idk_precision,
            r.idk_recall,
            r.escalated_share,
            r.llm_tokens_per_question,
            r.tokens_saved_per_question,
            r.latency_p50_ms,
            r.latency_p95_ms,
        ));
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG scatter chart: accuracy (y) against LLM tokens per question (x), one labelled
/// point per mode.
pub fn svg_chart(reports: &[ModeReport], title: &str) -> String {
    let (w, h) = (640.0f64, 420.0f64);
    let (left, right, top, bottom) = (70.0, 30.0, 50.0, 60.0);
    let max_x = reports
        .iter()
        .map(|r| r.llm_tokens_per_question)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let nice = |v: f64| {
        let p = 10f64.powf(v.log10().floor());
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * p)
            .find(|&c| c >= v)
            .unwrap_or(10.0 * p)
    };
    let max_x = nice(max_x * 1.1);
    let px = |x: f64| left + (w - left - right) * x / max_x;
    let py = |y: f64| top + (h - top - bottom) * (1.0 - y);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let y = i as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\n<text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4:.1}</text>\n",
            py(y), w - right, left - 8.0, py(y) + 4.0, y
        ));
        let x = max_x * i as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\n<text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3:.0}</text>\n",
            px(x), h - bottom, h - bottom + 18.0, x
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{0}\" stroke=\"black\"/>\n\
         <text x=\"{2}\" y=\"{3}\" text-anchor=\"middle\">LLM tokens per question</text>\n\
         <text x=\"18\" y=\"{4}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {4})\">accuracy</text>\n",
        h - bottom,
        w - right,
        (left + w - right) / 2.0,
        h - 15.0,
        (top + h - bottom) / 2.0
    ));
    const COLORS: [&str; 6] = [
        "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
    ];
    for (i, r) in reports.iter().enumerate() {
        let (x, y) = (px(r.llm_tokens_per_question), py(r.accuracy));
        s.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{} ({:.2})</text>\n",
            COLORS[i % COLORS.len()],
            x + 9.0,
            y - 8.0,
            esc(&r.mode),
            r.accuracy
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(answerable: bool, accept: &[&str], sources: &[&str]) -> Question {
        Question {
            id: "q1".into(),
            lang: "en".into(),
            question: "How many?".into(),
            answer: String::new(),
            accept: accept.iter().map(|s| s.to_string()).collect(),
            parts: Vec::new(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            answerable,
            kind: "fact".into(),
        }
    }

    #[test]
    fn loading_reports_lines() {
        let good = r#"{"id":"a","lang":"en","question":"Q?","answer":"A","accept":["A"],"sources":["x.md"],"answerable":true,"type":"fact"}"#;
        assert_eq!(
            load_questions(&format!("{good}\n\n")).map(|v| v.len()).ok(),
            Some(1)
        );
        let e = load_questions(&format!("{good}\n{{\"id\": 3}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = load_questions(&format!("{good}\n{good}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("duplicate"), "{e}");
        let e = load_questions(r#"{"id":"b","lang":"en","question":"Q?","answerable":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `accept`"), "{e}");
        assert!(matches!(load_questions("\n \n"), Err(EvalError::Empty)));
        assert!(
            load_questions("not json")
                .unwrap_err()
                .to_string()
                .starts_with("line 1:")
        );
        let e = load_questions(r#"{"id":"a","lang":"en","question":"Q","answerable":"yes"}"#);
        assert!(e.is_err());
    }

    #[test]
    fn grading() {
        let q1 = q(true, &["14 days", "14天"], &["hr.md"]);
        assert!(grade(&q1, "You get 14 Days [1]."));
        assert!(grade(&q1, "可享 14 天特休"));
        assert!(grade(&q1, "１４ days"));
        assert!(!grade(&q1, "You get 41 days."));
        let money = q(true, &["NT$30,000"], &[]);
        assert!(grade(&money, "up to NT$ 30000 online"));
        let none = q(false, &[], &[]);
        assert!(grade(&none, "I don't know."));
        assert!(!grade(&none, "It is 3 days."));
    }

    #[test]
    fn citation_metrics() {
        let q1 = q(true, &["x"], &["hr.md", "zh-hr.md"]);
        let mut o = Outcome::new(
            &q1,
            "local",
            "x [1]",
            vec!["kb/hr.md".into(), "other.md".into()],
        );
        assert_eq!(o.citation_pr(), (Some(0.5), 0.5));
        o.cited.clear();
        assert_eq!(o.citation_pr(), (None, 0.0));
    }

    #[test]
    fn multi_part_questions_need_every_part() {
        let mut m = q(true, &[], &["a.md"]);
        m.parts = vec![vec!["14 days".into(), "14 天".into()], vec!["HR-12".into()]];
        assert!(grade(&m, "14 天 [1], form HR-12 [2]"));
        assert!(!grade(&m, "14 days [1]"));
        let line = r#"{"id":"m","lang":"en","question":"Q?","parts":[["x"],[" "]],"answerable":true,"type":"multi_part"}"#;
        let e = load_questions(line).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("parts"), "{e}");
        let ok = r#"{"id":"m","lang":"en","question":"Q?","parts":[["x"],["y"]],"answerable":true,"type":"multi_part"}"#;
        assert_eq!(load_questions(ok).unwrap()[0].parts.len(), 2);
    }

    #[test]
    fn summaries_and_outputs() {
        let qa = q(true, &["14"], &["hr.md"]);
        let qu = Question {
            id: "q2".into(),
            ..q(false, &[], &[])
        };
        let mut a = Outcome::new(&qa, "local", "14 [1]", vec!["hr.md".into()]);
        a.latency_ms = 100.0;
        let mut b = Outcome::new(&qu, "local", "I don't know.", vec![]);
        b.latency_ms = 300.0;
        let mut c = Outcome::new(&qa, "escalate", "I don't know.", vec![]);
        c.llm_prompt_tokens = 90;
        c.llm_completion_tokens = 10;
        c.escalated = true;
        let outs = vec![a, b, c];
        let r = summarize("local", &outs);
        assert_eq!(r.questions, 2);
        assert_eq!((r.accuracy, r.accuracy_answerable), (1.0, 1.0));
        assert_eq!((r.citation_precision, r.citation_recall), (1.0, 1.0));
        assert_eq!((r.idk_precision, r.idk_recall), (1.0, 1.0));
        assert_eq!((r.latency_p50_ms, r.latency_p95_ms), (100.0, 300.0));
        let e = summarize("escalate", &outs);
        assert_eq!(
            (e.accuracy, e.idk_precision, e.escalated_share),
            (0.0, 0.0, 1.0)
        );
        assert_eq!(e.llm_tokens_per_question, 100.0);
        let md = markdown(&[r.clone(), e.clone()]);
        assert_eq!(md.lines().count(), 4);
        assert!(md.contains("| local | 2 | 1.000 |"), "{md}");
        let svg = svg_chart(&[r, e], "RAG <modes>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("RAG &lt;modes&gt;") && svg.contains("escalate (0.00)"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), 4.0);
    }
}
