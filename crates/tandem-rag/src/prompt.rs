//! The prompts of the modes. Each returns `(system, user)` messages; the caller wraps them
//! in its chat request type. The instructions are in the question's language, since small
//! models follow instructions in the language they answer in.

use crate::text::Lang;
use crate::{Passage, compress::Compressed, draft::Draft};

/// The exact phrase the models are told to use when the sources lack the answer.
pub fn idk_phrase(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I don't know.",
        Lang::Zh => "我不知道。",
    }
}

/// The examples the prompts show, deliberately from a domain no knowledge base of ours
/// is about: a small model copies examples, and a copied one must be recognisable
/// ([`copies_example`]) rather than pass for an answer.
pub const EXAMPLES: [&str; 2] = [
    "The museum's east wing opens at 9 a.m. [2].",
    "博物館東翼每天上午 9 點開放 [2]。",
];

/// Whether an answer is (essentially) one of the prompts' examples.
pub fn copies_example(answer: &str) -> bool {
    let squash = |s: &str| -> String {
        crate::cite::strip_markers(s, usize::MAX)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let a = squash(answer);
    !a.is_empty() && EXAMPLES.iter().any(|e| a == squash(e))
}

/// Asks the SLM which numbered lines state the answer (to `part` of the question when it
/// asks several things). The reply is constrained by [`crate::evidence::selection_schema`].
pub fn select_evidence(question: &str, part: Option<&str>, listing: &str) -> (String, String) {
    let lang = Lang::detect(question);
    let q = question.trim();
    match lang {
        Lang::En => (
            format!(
                "You find evidence. Read the numbered lines and the question, then reply with \
                 the numbers of the lines that state the answer, best first, at most {}, as \
                 JSON with the key \"lines\". If no line states the answer, give no numbers.",
                crate::evidence::MAX_PICKS
            ),
            match part {
                Some(p) => format!(
                    "Lines:\n{listing}\n\nQuestion: {q}\nFind the lines for this part only: {}",
                    p.trim()
                ),
                None => format!("Lines:\n{listing}\n\nQuestion: {q}"),
            },
        ),
        Lang::Zh => (
            format!(
                "你要找出證據。閱讀編號的句子和問題，回覆寫出答案的句子編號，最相關的放前面，最多 {} 個，\
                 以 JSON 回覆，鍵為 \"lines\"。如果沒有任何句子寫出答案，就不要給編號。",
                crate::evidence::MAX_PICKS
            ),
            match part {
                Some(p) => format!(
                    "句子：\n{listing}\n\n問題：{q}\n只找這一部分的句子：{}",
                    p.trim()
                ),
                None => format!("句子：\n{listing}\n\n問題：{q}"),
            },
        ),
    }
}

/// The numbered sources block: `[n] label` then the text, blank line between sources.
pub fn sources_block(passages: &[Passage]) -> String {
    let mut out = String::new();
    for p in passages {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&format!("[{}] {}\n{}", p.n, p.label(), p.text.trim()));
    }
    out
}

fn answer_system(lang: Lang) -> String {
    match lang {
        Lang::En => format!(
            "Answer the question using only the numbered sources. Reply with one or two \
             complete sentences in English that state the answer, and end each sentence with \
             the number of its source in square brackets, for example: \"{}\" If the \
             sources do not contain the answer, reply exactly: {}",
            EXAMPLES[0],
            idk_phrase(lang)
        ),
        Lang::Zh => format!(
            "請只根據編號資料回答問題。用一到兩個完整的繁體中文句子寫出答案，每句結尾用方括號標註\
             資料編號，例如：「{}」如果資料中沒有答案，請只回答：{}",
            EXAMPLES[1],
            idk_phrase(lang)
        ),
    }
}

fn question_block(lang: Lang, context: &str, question: &str) -> String {
    match lang {
        Lang::En => format!("Sources:\n{context}\n\nQuestion: {question}"),
        Lang::Zh => format!("資料：\n{context}\n\n問題：{question}"),
    }
}

/// `local` / `escalate` / the LLM's answer from the full retrieved context.
pub fn answer(question: &str, passages: &[Passage]) -> (String, String) {
    let lang = Lang::detect(question);
    (
        answer_system(lang),
        question_block(lang, &sources_block(passages), question.trim()),
    )
}

/// The LLM's answer from the compressed context (sentences keep their source numbers).
pub fn answer_compressed(question: &str, c: &Compressed) -> (String, String) {
    let lang = Lang::detect(question);
    (
        answer_system(lang),
        question_block(lang, &c.context, question.trim()),
    )
}

/// Asks the SLM which numbered sentences are needed to answer.
pub fn select(question: &str, numbered: &str) -> (String, String) {
    let lang = Lang::detect(question);
    match lang {
        Lang::En => (
            "You pick the sentences needed to answer a question. Reply only with the \
             sentence numbers, separated by commas, most useful first, for example: 3, 7, 12. \
             Reply 0 if no sentence helps."
                .into(),
            format!("Sentences:\n{numbered}\n\nQuestion: {}\nSentence numbers:", question.trim()),
        ),
        Lang::Zh => (
            "請挑出回答問題所需的句子。只回覆句子編號，用逗號分隔，最有用的放前面，例如：3, 7, 12。\
             如果沒有任何句子有幫助，請回覆 0。"
                .into(),
            format!("句子：\n{numbered}\n\n問題：{}\n句子編號：", question.trim()),
        ),
    }
}

/// One draft from a subset of the passages: a short answer with citations and a rationale.
pub fn draft(question: &str, subset: &[Passage]) -> (String, String) {
    let lang = Lang::detect(question);
    let system = match lang {
        Lang::En => format!(
            "You draft an answer to a question from the numbered sources only. Write one or \
             two sentences citing source numbers in square brackets, like [1]. Then write a \
             line starting with \"Rationale:\" explaining in one sentence which source \
             supports the answer. If the sources do not contain the answer, write \"{}\" \
             and a rationale.",
            idk_phrase(lang)
        ),
        Lang::Zh => format!(
            "請只根據編號資料草擬答案。用一到兩句繁體中文回答，並用方括號標註資料編號，例如 [1]。\
             接著另起一行，以「理由：」開頭，用一句話說明哪份資料支持這個答案。如果資料中沒有答案，\
             請寫「{}」並附上理由。",
            idk_phrase(lang)
        ),
    };
    (
        system,
        question_block(lang, &sources_block(subset), question.trim()),
    )
}

/// Asks the LLM to judge the drafts in one call and give the final answer.
pub fn verify(question: &str, drafts: &[Draft]) -> (String, String) {
    let lang = Lang::detect(question);
    let mut listed = String::new();
    for (i, d) in drafts.iter().enumerate() {
        let label = match lang {
            Lang::En => format!(
                "Draft {}: {}\nRationale: {}\n\n",
                i + 1,
                d.answer,
                d.rationale
            ),
            Lang::Zh => format!("草稿 {}：{}\n理由：{}\n\n", i + 1, d.answer, d.rationale),
        };
        listed.push_str(&label);
    }
    match lang {
        Lang::En => (
            format!(
                "You check draft answers written by a smaller model from company documents. \
                 Pick the draft whose answer is best supported by its rationale and most \
                 likely correct. Reply with a first line \"Best: N\", then the final answer \
                 on the next line, corrected if needed, keeping the source numbers in square \
                 brackets. If no draft answers the question, write \"Best: 0\" and then \"{}\"",
                idk_phrase(lang)
            ),
            format!("Question: {}\n\n{listed}", question.trim()),
        ),
        Lang::Zh => (
            format!(
                "你要審查較小模型根據公司文件寫的答案草稿。請選出理由最能支持、最可能正確的草稿。\
                 第一行回覆「Best: N」，下一行寫出最終答案（必要時修正），保留方括號中的資料編號。\
                 如果沒有草稿回答了問題，請寫「Best: 0」，再寫「{}」",
                idk_phrase(lang)
            ),
            format!("問題：{}\n\n{listed}", question.trim()),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::passage;

    #[test]
    fn prompts_follow_the_question_language() {
        let ps = vec![
            passage(1, "a.md", "Annual leave is 14 days."),
            passage(2, "b.md", "B"),
        ];
        let (sys, user) = answer("How many days?", &ps);
        assert!(sys.contains("I don't know.") && sys.contains(EXAMPLES[0]));
        assert!(
            !sys.contains("leave"),
            "no example from a domain we answer about"
        );
        assert!(user.starts_with("Sources:\n[1] a.md\nAnnual leave is 14 days.\n\n[2] b.md\nB"));
        assert!(user.ends_with("Question: How many days?"));
        let (sys, user) = answer("特休有幾天？", &ps);
        assert!(sys.contains("我不知道。"));
        assert!(user.contains("問題：特休有幾天？"));
    }

    #[test]
    fn copied_examples_are_recognised() {
        assert!(copies_example(
            "The museum's east wing opens at 9 a.m. [1]."
        ));
        assert!(copies_example("博物館東翼每天上午 9 點開放【2】"));
        assert!(!copies_example(
            "The east wing of the office opens at 9 a.m. [1]."
        ));
        assert!(!copies_example(""));
    }

    #[test]
    fn evidence_prompts() {
        let (sys, user) =
            select_evidence("Who approves trips?", None, "(1) Managers approve trips.");
        assert!(sys.contains("\"lines\"") && user.ends_with("Question: Who approves trips?"));
        let (_, user) = select_evidence("幾天，以及誰核准？", Some("誰核准？"), "(1) x");
        assert!(user.ends_with("只找這一部分的句子：誰核准？"));
    }

    #[test]
    fn verify_lists_drafts() {
        let drafts = vec![
            Draft {
                subset: vec![1],
                answer: "14 days [1]".into(),
                rationale: "[1] says so".into(),
            },
            Draft {
                subset: vec![2],
                answer: "I don't know.".into(),
                rationale: "none".into(),
            },
        ];
        let (sys, user) = verify("How many days?", &drafts);
        assert!(sys.contains("Best: N"));
        assert!(user.contains("Draft 1: 14 days [1]\nRationale: [1] says so"));
        assert!(user.contains("Draft 2: I don't know."));
    }
}
