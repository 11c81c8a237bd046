//! Both RAG question sets parse with the harness's own loader (what `tandem eval rag`
//! reads), and the second set's multi-part questions carry their parts.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use tandem_rag::eval::load_questions;

fn load(rel: &str) -> Vec<tandem_rag::eval::Question> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    load_questions(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn both_sets_load() {
    assert_eq!(load("eval/rag/questions.jsonl").len(), 155);
    let ins = load("eval/rag-insurer/questions.jsonl");
    assert_eq!(ins.len(), 80);
    let multi: Vec<_> = ins.iter().filter(|q| q.kind == "multi_part").collect();
    assert_eq!(multi.len(), 14);
    assert!(
        multi
            .iter()
            .all(|q| q.parts.len() >= 2 && q.accept.is_empty())
    );
    assert_eq!(ins.iter().filter(|q| !q.answerable).count(), 14);
}
