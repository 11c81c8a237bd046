//! `answer_script`: validation with lines, precedence (route > tenant > policy) and `auto`.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use tandem_policy::config;
use tandem_policy::{Config, Facts, RouteRequest};
use tandem_types::openai::ChatMessage;

const BASE: &str = "
models:
  - name: slm
    local: qwen2.5-coder-0.5b
";

fn parse(extra: &str) -> Result<Config, config::ConfigError> {
    config::parse_with_env(&format!("{BASE}{extra}"), &|_| None)
}

fn script_of(cfg: &Config, text: &str, tenant: Option<&str>) -> Option<String> {
    let messages = vec![ChatMessage {
        role: "user".into(),
        content: text.into(),
        ..Default::default()
    }];
    let count = || 10;
    let classified = Cell::new(0);
    let classify = || {
        classified.set(classified.get() + 1);
        None
    };
    let facts = Facts::new(&count, &classify);
    let req = RouteRequest {
        requested_model: "auto",
        messages: &messages,
        headers: &[],
        api_key: None,
        tenant,
        latency_budget_ms: None,
        pii: &[],
        tools: 0,
        structured_output: false,
    };
    let d = cfg.decide(&req, &facts).unwrap();
    if let Some(s) = &d.answer_script {
        // The reason is in the decision's reasons too (explain, ledger).
        assert!(
            d.reasons.iter().any(|r| r.contains(&s.why)),
            "{:?}",
            d.reasons
        );
    }
    d.answer_script
        .map(|s| format!("{} {}", s.locale, s.chinese_request))
}

const TRADITIONAL: &str = "請用一句話介紹台北。";
const SIMPLIFIED: &str = "请用一句话介绍台北。";

#[test]
fn auto_answers_traditional_requests_in_zh_tw_by_default() {
    let cfg = parse("").unwrap();
    assert_eq!(
        script_of(&cfg, TRADITIONAL, None).as_deref(),
        Some("zh-TW true")
    );
    assert_eq!(script_of(&cfg, SIMPLIFIED, None), None);
    assert_eq!(
        script_of(&cfg, "Describe Taipei in one sentence.", None),
        None
    );
    // Only shared characters: no script to infer.
    assert_eq!(script_of(&cfg, "台北", None), None);
}

#[test]
fn route_wins_over_tenant_which_wins_over_the_policy() {
    let cfg = parse(
        "
policy:
  answer_script: off
  tenants:
    tw-insurer: {answer_script: zh-TW}
    cn-office: {answer_script: off}
routes:
  - name: code
    when: {keywords: [rust]}
    then: {model: slm}
    answer_script: off
  - name: chat
    then: {model: slm}
",
    )
    .unwrap();
    // The policy says off: even a Traditional request is left alone.
    assert_eq!(script_of(&cfg, TRADITIONAL, None), None);
    // The tenant says zh-TW: every answer, the instruction conditional for English.
    assert_eq!(
        script_of(&cfg, "Hello", Some("tw-insurer")).as_deref(),
        Some("zh-TW false")
    );
    assert_eq!(
        script_of(&cfg, SIMPLIFIED, Some("tw-insurer")).as_deref(),
        Some("zh-TW false")
    );
    assert_eq!(script_of(&cfg, TRADITIONAL, Some("cn-office")), None);
    // The route says off, over the tenant.
    assert_eq!(script_of(&cfg, "rust 請問", Some("tw-insurer")), None);
}

#[test]
fn bad_values_are_errors_with_their_lines() {
    let e = parse(
        "
policy:
  answer_script: zh-CN
  tenants:
    acme: {answer_script: zh-TW}
routes:
  - name: chat
    then: {model: slm}
    answer_script: klingon
",
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "policy.answer_script: unknown answer script `zh-CN` (use auto, zh-TW or off)"
        ),
        "{text}"
    );
    assert!(
        text.contains("route `chat`: unknown answer script `klingon`"),
        "{text}"
    );
    let lines: Vec<usize> = e.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [7, 13], "{text}");
    let e = parse("\npolicy:\n  tenants:\n    other: {answer_scripts: zh-TW}\n").unwrap_err();
    assert!(
        e.to_string().contains("Unknown field `answer_scripts`"),
        "{e}"
    );
    let e = parse("\npolicy:\n  tenants:\n    acme: {answer_script: traditional}\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("policy.tenants.acme.answer_script: unknown answer script `traditional`"),
        "{e}"
    );
    assert_eq!(e.issues[0].line, 8);
}
