//! Fuzzing the policy YAML (proptest drivers): arbitrary text, and the default policy with
//! bytes deleted, replaced or inserted anywhere. Parsing must return a configuration or
//! errors with their lines, and never panic. Failing inputs are kept in
//! `proptest-regressions/`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tandem_policy::config::{self, DEFAULT_CONFIG};

fn check(text: &str) {
    if let Err(e) = config::parse_with_env(text, &|_| None) {
        assert!(!e.issues.is_empty());
        assert!(e.issues.iter().all(|i| !i.message.is_empty()));
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                Just(":".to_string()),
                Just("\n  ".to_string()),
                Just("- ".to_string()),
                Just("{".to_string()),
                Just("[".to_string()),
                Just("\"".to_string()),
                Just("${X}".to_string()),
                Just("&a *a".to_string()),
                Just("!!binary ".to_string()),
                "\\PC{0,8}".prop_map(String::from),
            ]
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text);
    }

    #[test]
    fn edited_default_policies_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
        let mut chars: Vec<char> = DEFAULT_CONFIG.chars().collect();
        for e in edits {
            match e {
                Edit::Delete(i, n) => {
                    let at = i.index(chars.len().max(1)).min(chars.len());
                    let end = (at + n).min(chars.len());
                    chars.drain(at..end);
                }
                Edit::Insert(i, s) => {
                    let at = i.index(chars.len() + 1);
                    chars.splice(at..at, s.chars());
                }
            }
        }
        check(&chars.into_iter().collect::<String>());
    }
}
