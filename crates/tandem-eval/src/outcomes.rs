//! Outcome datasets: prompts labelled with how well each model answered them (RouteLLM's
//! evaluation data, `../shared/data/routellm/`). No answer needs generating: a router is
//! trained and scored on the recorded outcomes alone.
//!
//! One JSON object per line: `{"id": "…", "source": "mmlu", "prompt": "…", "outcomes":
//! {"model-a": 1.0, "model-b": 0.0}}`; `source` defaults to `custom`. Other fields (such as
//! `category`) are accepted and never read: a router deployed on traffic sees only the
//! prompt, so nothing here hands it anything else.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::dataset::{self, DatasetError};
use crate::metrics::Sample;

/// One labelled prompt.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutcomeItem {
    /// Unique id.
    pub id: String,
    /// Where it comes from (`mmlu`, `gsm8k`, …); reports are broken down by it.
    #[serde(default = "default_source")]
    pub source: String,
    /// The user message the router sees.
    pub prompt: String,
    /// Model → quality of its answer, 0..=1.
    pub outcomes: BTreeMap<String, f64>,
}

fn default_source() -> String {
    "custom".to_owned()
}

/// Parses an outcomes file; a malformed line is an error naming its line.
pub fn load(text: &str) -> Result<Vec<OutcomeItem>, DatasetError> {
    dataset::load_lines(
        text,
        |raw| {
            let item: OutcomeItem =
                serde_json::from_str(raw).map_err(|e| dataset::strip_position(&e.to_string()))?;
            if item.id.trim().is_empty() {
                return Err("`id` is empty".into());
            }
            if item.prompt.trim().is_empty() {
                return Err(format!("item `{}`: `prompt` is empty", item.id));
            }
            if let Some((m, q)) = item
                .outcomes
                .iter()
                .find(|(_, q)| !(q.is_finite() && (0.0..=1.0).contains(*q)))
            {
                return Err(format!(
                    "item `{}`: outcome of `{m}` is {q}, not in 0..=1",
                    item.id
                ));
            }
            Ok(item)
        },
        |item| &item.id,
    )
}

/// The items that carry both models' outcomes, as samples (weak = the SLM side, strong =
/// the LLM side; no cost or latency is recorded), and the number of items skipped for
/// lacking one of them.
pub fn pair<'a>(
    items: &'a [OutcomeItem],
    strong: &str,
    weak: &str,
) -> (Vec<(&'a OutcomeItem, Sample)>, usize) {
    let mut out = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for it in items {
        let (Some(&s), Some(&w)) = (it.outcomes.get(strong), it.outcomes.get(weak)) else {
            skipped += 1;
            continue;
        };
        out.push((
            it,
            Sample {
                id: it.id.clone(),
                slm_quality: w,
                llm_quality: s,
                slm_cost: 0.0,
                llm_cost: 0.0,
                slm_latency_ms: 0.0,
                llm_latency_ms: 0.0,
                slm_score: 0.0,
            },
        ));
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = concat!(
        r#"{"id":"a","source":"mmlu","category":"anatomy","prompt":"Q1","outcomes":{"s":1.0,"w":0.0}}"#,
        "\n\n",
        r#"{"id":"b","prompt":"Q2","outcomes":{"s":1.0}}"#,
        "\n"
    );

    #[test]
    fn loads_items_and_skips_those_missing_a_model() {
        let items = load(TWO).expect("valid");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].source, "custom");
        let (pairs, skipped) = pair(&items, "s", "w");
        assert_eq!(skipped, 1);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].1.llm_quality, 1.0);
        assert_eq!(pairs[0].1.slm_quality, 0.0);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            (
                "{\"id\":\"a\",\"prompt\":\"x\",\"outcomes\":{}}\nnot json",
                2,
            ),
            ("{\"id\":\"a\",\"prompt\":\"x\"}", 1),
            (
                "\n{\"id\":\"a\",\"prompt\":\"x\",\"outcomes\":{\"m\":1.5}}",
                2,
            ),
            ("{\"id\":\"\",\"prompt\":\"x\",\"outcomes\":{}}", 1),
            ("{\"id\":\"a\",\"prompt\":\" \",\"outcomes\":{}}", 1),
            (
                "{\"id\":\"a\",\"prompt\":\"x\",\"outcomes\":{\"m\":\"yes\"}}",
                1,
            ),
        ];
        for (text, want) in cases {
            match load(text) {
                Err(DatasetError::Line { line, .. }) => assert_eq!(line, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let dup = "{\"id\":\"a\",\"prompt\":\"x\",\"outcomes\":{}}\n{\"id\":\"a\",\"prompt\":\"y\",\"outcomes\":{}}";
        assert!(matches!(
            load(dup),
            Err(DatasetError::Duplicate {
                line: 2,
                first: 1,
                ..
            })
        ));
        assert_eq!(load("\n  \n"), Err(DatasetError::Empty));
    }
}
