//! Configuration validation and routing decisions, table-driven.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use tandem_policy::classify::Classification;
use tandem_policy::config::{self, DEFAULT_CONFIG};
use tandem_policy::pii::Detector;
use tandem_policy::{Action, Config, Decision, Facts, PiiAction, RouteRequest};
use tandem_types::openai::ChatMessage;

fn env(var: &str) -> Option<String> {
    match var {
        "OPENAI_KEY" => Some("sk-test-secret-value-1234".into()),
        "TEAM_A_KEY" => Some("team-a-key-123456".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Config {
    config::parse_with_env(text, &env).unwrap_or_else(|e| panic!("{e}"))
}

fn user(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage {
        role: "user".into(),
        content: text.into(),
        name: None,
        ..Default::default()
    }]
}

fn cat(name: &str) -> Classification {
    Classification {
        category: name.into(),
        score: 0.9,
        method: "embedding",
        matched: None,
        scores: Vec::new(),
    }
}

struct Req<'a> {
    model: &'a str,
    text: &'a str,
    category: &'a str,
    budget: Option<f64>,
    headers: Vec<(String, String)>,
    tenant: Option<&'a str>,
    api_key: Option<&'a str>,
    tokens: usize,
    tools: usize,
    structured: bool,
}

impl<'a> Req<'a> {
    fn new(text: &'a str, category: &'a str) -> Self {
        Req {
            model: "auto",
            text,
            category,
            budget: None,
            headers: Vec::new(),
            tenant: None,
            api_key: None,
            tokens: 20,
            tools: 0,
            structured: false,
        }
    }
}

/// A request for `model` with `messages` and nothing else (no headers, key, tenant, budget
/// or PII).
fn plain<'a>(model: &'a str, messages: &'a [ChatMessage]) -> RouteRequest<'a> {
    RouteRequest {
        requested_model: model,
        messages,
        headers: &[],
        api_key: None,
        tenant: None,
        latency_budget_ms: None,
        pii: &[],
        tools: 0,
        structured_output: false,
    }
}

fn decide_counting(cfg: &Config, r: &Req, classified: &Cell<u32>) -> Decision {
    let messages = user(r.text);
    let pii = Detector::new().detect(r.text);
    let count = || r.tokens;
    let classify = || {
        classified.set(classified.get() + 1);
        Some(cat(r.category))
    };
    let facts = Facts::new(&count, &classify);
    let rr = RouteRequest {
        requested_model: r.model,
        messages: &messages,
        headers: &r.headers,
        api_key: r.api_key,
        tenant: r.tenant,
        latency_budget_ms: r.budget,
        pii: &pii,
        tools: r.tools,
        structured_output: r.structured,
    };
    cfg.decide(&rr, &facts).unwrap()
}

fn decide(cfg: &Config, r: &Req) -> Decision {
    decide_counting(cfg, r, &Cell::new(0))
}

#[test]
fn tools_and_structured_output_conditions_route_to_the_slm() {
    let cfg = parse(DEFAULT_CONFIG);
    let slm = "qwen2.5-coder-0.5b";
    let llm = "qwen2.5-coder-1.5b";
    // A JSON schema: the SLM, whatever the category (long-form would go to the LLM).
    let mut r = Req::new("Describe the claim as JSON", "long_form");
    r.structured = true;
    let d = decide(&cfg, &r);
    assert_eq!(
        (d.route.as_str(), d.model.as_deref()),
        ("structured-output", Some(slm))
    );
    assert!(
        d.trace
            .iter()
            .flat_map(|t| t.conditions.iter())
            .any(|c| c.condition == "structured output = true" && c.matched),
        "{:?}",
        d.trace
    );
    // Tools on a chat request: local function calls on the SLM.
    let mut r = Req::new("Book a meeting room for 3pm", "customer_chat");
    r.tools = 2;
    let d = decide(&cfg, &r);
    assert_eq!(
        (d.route.as_str(), d.model.as_deref()),
        ("local-integration", Some(slm))
    );
    // Tools on a code request (a coding agent): the LLM.
    let mut r = Req::new("Refactor this function", "code");
    r.tools = 12;
    let d = decide(&cfg, &r);
    assert_eq!((d.route.as_str(), d.model.as_deref()), ("code", Some(llm)));
    // No tools, no format: the category decides as before.
    let d = decide(&cfg, &Req::new("Hi, where is my order?", "customer_chat"));
    assert_eq!(d.route, "customer-chat");
    // `tools: false` matches requests without tools.
    let cfg = parse(
        "models: [{name: s, local: s}]\npolicy: {local_model: s}\nroutes:\n  - {name: plain, when: {tools: false, structured_output: false}, then: {model: s}}\n  - {name: other, then: {model: s}}\n",
    );
    assert_eq!(decide(&cfg, &Req::new("hi", "x")).route, "plain");
    let mut r = Req::new("hi", "x");
    r.tools = 1;
    assert_eq!(decide(&cfg, &r).route, "other");
}

#[test]
fn default_policy_encodes_the_table() {
    let cfg = parse(DEFAULT_CONFIG);
    let slm = "qwen2.5-coder-0.5b";
    let llm = "qwen2.5-coder-1.5b";
    // (text, category, latency budget, expected route, expected action, expected first model)
    type Row<'a> = (&'a str, &'a str, Option<f64>, &'a str, &'a str, &'a str);
    let table: &[Row] = &[
        (
            "Write a 2000-word essay on AI",
            "long_form",
            None,
            "long-form",
            "model",
            llm,
        ),
        (
            "Summarise this report",
            "summarization",
            None,
            "summarization",
            "model",
            slm,
        ),
        (
            "Fix my Rust borrow error",
            "code",
            None,
            "code",
            "model",
            llm,
        ),
        (
            "Extract the fields as JSON",
            "local_integration",
            None,
            "local-integration",
            "model",
            slm,
        ),
        (
            "我的保單理賠要多久",
            "regulated",
            None,
            "regulated",
            "model",
            slm,
        ),
        (
            "What is our travel expense policy?",
            "knowledge_base",
            None,
            "knowledge-base",
            "cascade",
            slm,
        ),
        (
            "Hi, where is my order?",
            "customer_chat",
            None,
            "customer-chat",
            "model",
            llm,
        ),
        (
            "Write a 2000-word essay on AI",
            "long_form",
            Some(500.0),
            "realtime",
            "model",
            slm,
        ),
        ("Hello there", "general", None, "default", "cascade", slm),
    ];
    for (text, category, budget, route, action, model) in table {
        let mut r = Req::new(text, category);
        r.budget = *budget;
        let d = decide(&cfg, &r);
        assert_eq!(d.route, *route, "{text} / {category}: {:?}", d.reasons);
        assert_eq!(d.action.kind(), *action, "{text}");
        assert_eq!(d.model.as_deref(), Some(*model), "{text}");
        assert!(!d.reasons.is_empty());
    }
    // A national ID keeps even a code question on the SLM.
    let d = decide(&cfg, &Req::new("Debug this: my ID is A123456789", "code"));
    assert_eq!(d.route, "sensitive-ids");
    assert_eq!(d.model.as_deref(), Some(slm));
    assert_eq!(d.pii_kinds.len(), 1);
    // Cascade escalates to the large tier.
    let d = decide(
        &cfg,
        &Req::new("What is the VPN address?", "knowledge_base"),
    );
    match d.action {
        Action::Cascade(c) => {
            assert_eq!(c.slm, slm);
            assert_eq!(c.llm, llm);
            assert!((c.thresholds.min_mean_logprob + 0.8).abs() < 1e-6);
        }
        other => panic!("expected cascade, got {other:?}"),
    }
}

const REMOTE: &str = r#"
models:
  - name: slm
    local: smollm2-135m
  - name: gpt
    provider: openai
    base_url: http://127.0.0.1:9/v1
    api_key: ${OPENAI_KEY}
    model: gpt-4o-mini
    price: {input: 0.15, output: 0.6}
    fallback: [slm]
api_keys:
  - name: team-a
    key: ${TEAM_A_KEY}
    tenant: a
aliases:
  smart: gpt
policy:
  local_model: slm
  llm_model: gpt
routes:
  - name: block-secrets
    when: {pii: [api_key]}
    then: {reject: {message: "no secrets please", status: 422}}
  - name: tenant-b-local
    when: {tenant: b}
    then: {model: slm}
  - name: chinese-billing
    when: {keywords: ["帳單", "invoice"], scope: conversation}
    then: {model: slm}
  - name: premium-header
    when: {header: {x-plan: "^(gold|platinum)$"}}
    then: {model: gpt}
    direct: true
  - name: long
    when: {prompt_tokens: {min: 1000}}
    then: {model: gpt}
    pii: block
  - name: nested
    when:
      all:
        - any: [{regex: "(?i)\\bhaiku\\b"}, {regex: "詩"}]
        - not: {api_key: team-a}
    then: {model: gpt}
    pii: force_local
  - name: fallback
    then: {model: gpt}
"#;

#[test]
fn conditions_and_pii_guard() {
    let cfg = parse(REMOTE);
    // Keyword in Chinese, no spaces around it.
    assert_eq!(
        decide(&cfg, &Req::new("請問這個月的帳單金額", "general")).route,
        "chinese-billing"
    );
    // PII kind condition wins before anything else.
    let d = decide(
        &cfg,
        &Req::new("my key is sk-proj-abcdefghijklmnopqrstuvwx12", "general"),
    );
    assert_eq!(d.route, "block-secrets");
    assert_eq!(
        d.action,
        Action::Reject {
            message: "no secrets please".into(),
            status: 422
        }
    );
    // Tenant.
    let mut r = Req::new("hello", "general");
    r.tenant = Some("b");
    assert_eq!(decide(&cfg, &r).model.as_deref(), Some("slm"));
    // Header regex.
    let mut r = Req::new("hello", "general");
    r.headers = vec![("x-plan".into(), "gold".into())];
    assert_eq!(decide(&cfg, &r).route, "premium-header");
    r.headers = vec![("x-plan".into(), "silver".into())];
    assert_eq!(decide(&cfg, &r).route, "fallback");
    // Prompt length, and the route's own PII action (block) on a remote target.
    let mut r = Req::new("call me at 0912-345-678", "general");
    r.tokens = 5000;
    let d = decide(&cfg, &r);
    assert_eq!(d.route, "long");
    assert_eq!(d.pii_action, Some(PiiAction::Block));
    assert!(matches!(d.action, Action::Reject { status: 400, .. }));
    // Default PII action is mask: the remote model stays, the guard masks.
    let d = decide(&cfg, &Req::new("mail me at a.b@example.com", "general"));
    assert_eq!(d.route, "fallback");
    assert_eq!(d.model.as_deref(), Some("gpt"));
    assert_eq!(d.pii_action, Some(PiiAction::Mask));
    assert_eq!(d.remote_pii_action, PiiAction::Mask);
    // Nested all/any/not with force_local.
    let d = decide(
        &cfg,
        &Req::new("write a haiku for a@example.com", "general"),
    );
    assert_eq!(d.route, "nested");
    assert_eq!(d.model.as_deref(), Some("slm"));
    assert_eq!(d.pii_action, Some(PiiAction::ForceLocal));
    let mut r = Req::new("write a haiku", "general");
    r.api_key = Some("team-a");
    assert_eq!(decide(&cfg, &r).route, "fallback");
    assert_eq!(
        decide(&cfg, &Req::new("寫一首詩", "general")).route,
        "nested"
    );
    // No PII on a remote route: no action.
    let d = decide(&cfg, &Req::new("hello", "general"));
    assert_eq!(d.pii_action, None);
}

#[test]
fn direct_requests_and_aliases() {
    let cfg = parse(REMOTE);
    // Naming a model directly skips rules that are not `direct`.
    let mut r = Req::new("invoice please", "general");
    r.model = "gpt";
    let d = decide(&cfg, &r);
    assert_eq!(d.route, "direct");
    assert!(d.direct);
    assert_eq!(d.model.as_deref(), Some("gpt"));
    assert!(d.trace.iter().any(|t| t.skipped));
    // ... but a `direct: true` rule applies.
    r.headers = vec![("x-plan".into(), "platinum".into())];
    r.model = "slm";
    assert_eq!(decide(&cfg, &r).route, "premium-header");
    // Alias to a model.
    let mut r = Req::new("hello", "general");
    r.model = "smart";
    assert_eq!(decide(&cfg, &r).model.as_deref(), Some("gpt"));
    // Unknown model.
    let messages = user("x");
    let count = || 1;
    let classify = || None;
    let facts = Facts::new(&count, &classify);
    let rr = plain("nope", &messages);
    assert!(cfg.decide(&rr, &facts).is_err());
    // Direct naming can be switched off.
    let strict = parse(&format!("{REMOTE}\n").replace(
        "  llm_model: gpt\n",
        "  llm_model: gpt\n  allow_direct: false\n",
    ));
    let mut r = Req::new("hello", "general");
    r.model = "gpt";
    assert!(matches!(
        decide(&strict, &r).action,
        Action::Reject { status: 403, .. }
    ));
}

#[test]
fn classifier_is_only_called_when_a_rule_needs_it() {
    let cfg = parse(DEFAULT_CONFIG);
    let n = Cell::new(0);
    let mut r = Req::new("anything", "code");
    r.budget = Some(100.0);
    let d = decide_counting(&cfg, &r, &n);
    assert_eq!(d.route, "realtime");
    assert_eq!(
        n.get(),
        0,
        "the latency rule decides before any category rule"
    );
    let d = decide_counting(&cfg, &Req::new("anything", "code"), &n);
    assert_eq!(d.route, "code");
    assert_eq!(
        n.get(),
        1,
        "classified once even though several rules look at it"
    );
}

#[test]
fn explain_trace_lists_every_rule_tried() {
    let cfg = parse(DEFAULT_CONFIG);
    let d = decide(&cfg, &Req::new("Fix my code", "code"));
    let names: Vec<&str> = d.trace.iter().map(|t| t.route.as_str()).collect();
    assert_eq!(
        names,
        [
            "realtime",
            "regulated",
            "sensitive-ids",
            "structured-output",
            "summarization",
            "local-integration",
            "knowledge-base",
            "code"
        ]
    );
    assert!(d.trace[..7].iter().all(|t| !t.matched));
    assert!(d.trace[7].matched);
    let c = &d.trace[1].conditions[0];
    assert!(c.condition.contains("regulated"));
    assert!(c.observed.starts_with("code"), "{}", c.observed);
    assert!(!c.matched);
    let budget = &d.trace[0].conditions[0];
    assert!(budget.observed.contains("no x-tandem-latency-budget-ms"));
}

fn issues(text: &str) -> Vec<String> {
    match config::parse_with_env(text, &env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
    }
}

#[test]
fn every_error_is_reported_with_its_line() {
    let text = r#"models:
  - name: slm
    local: smollm2-135m
  - name: gpt
    provider: openai
    base_url: http://x/v1
    api_key: ${MISSING_KEY}
  - name: slm
    local: other
  - name: both
    local: a
    provider: openai
policy:
  pii:
    action: shred
routes:
  - name: r1
    when: {regex: "([unclosed"}
    then: {model: nowhere}
  - name: r2
    when: {pii: [passport]}
    then: {model: slm}
  - name: r3
    then: {}
"#;
    let errs = issues(text);
    let joined = errs.join("\n");
    for (line, needle) in [
        (7, "MISSING_KEY"),
        (8, "defined twice"),
        (12, "not both"),
        (15, "shred"),
        (18, "invalid regex"),
        (19, "nowhere"),
        (21, "passport"),
        (24, "exactly one of"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("line {line},")) && e.contains(needle)),
            "no error on line {line} mentioning {needle}:\n{joined}"
        );
    }
    // The secret itself never appears, even though another variable is set.
    assert!(!joined.contains("sk-test"));
}

#[test]
fn syntax_and_shape_errors_name_the_line() {
    let e = issues("models:\n  - name: a\n    local: x\n    colour: blue\n");
    assert!(
        e[0].starts_with("line 4") && e[0].contains("colour"),
        "{e:?}"
    );
    let e = issues("routes:\n  - name: a\n    then: {model: [unclosed\n");
    assert!(e[0].starts_with("line "), "{e:?}");
    let e = issues("server:\n  port: not-a-port\n");
    assert!(e[0].starts_with("line 2"), "{e:?}");
    let e = issues("models:\n  - name: a\n    local: x\n    local: y\n");
    assert!(e[0].starts_with("line 4"), "{e:?}");
    // An empty file is a valid (empty) configuration.
    assert!(config::parse_with_env("", &env).is_ok());
    assert!(config::parse_with_env("\n# only a comment\n", &env).is_ok());
}

#[test]
fn secrets_are_resolved_and_redacted() {
    let cfg = parse(REMOTE);
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("sk-test-secret-value-1234"), "{dbg}");
    assert!(!dbg.contains("team-a-key-123456"));
    match &cfg.model("gpt").unwrap().source {
        config::ModelSource::Remote(r) => {
            assert_eq!(
                r.api_key.as_ref().unwrap().expose(),
                "sk-test-secret-value-1234"
            );
            assert_eq!(r.model, "gpt-4o-mini");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        config::substitute_env("a-${OPENAI_KEY}-b", &env).unwrap(),
        "a-sk-test-secret-value-1234-b"
    );
    assert!(
        config::substitute_env("${NOPE}", &env)
            .unwrap_err()
            .contains("NOPE")
    );
    assert!(config::substitute_env("${", &env).is_err());
    assert!(config::substitute_env("${A B}", &env).is_err());
}

#[test]
fn price_and_cost() {
    let cfg = parse(REMOTE);
    let p = cfg.model("gpt").unwrap().price;
    assert!((p.cost(1_000_000, 1_000_000) - 0.75).abs() < 1e-12);
    assert!((p.cost(2000, 500) - (2000.0 * 0.15 + 500.0 * 0.6) / 1e6).abs() < 1e-15);
    assert_eq!(cfg.model("slm").unwrap().price.cost(100, 100), 0.0);
}

const ROUTER_CFG: &str = r#"
models:
  - {name: slm, local: smollm2-135m}
  - {name: llm, local: qwen2.5-coder-1.5b}
  - {name: minilm-l6, local: minilm-l6}
policy:
  local_model: slm
  llm_model: llm
  classifier: {embedding_model: minilm-l6}
  router: router.knn
routes:
  - name: hard-for-the-slm
    when: {slm_win_probability: {max: 0.4}}
    then: {model: llm}
  - name: rest
    then: {model: slm}
"#;

fn decide_with_router(cfg: &Config, p: Option<f32>, calls: &Cell<u32>) -> Decision {
    let messages = user("Prove that there are infinitely many primes.");
    let count = || 10;
    let classify = || Some(cat("general"));
    let router = || {
        calls.set(calls.get() + 1);
        p
    };
    let facts = Facts::new(&count, &classify).with_router(&router);
    let rr = plain("auto", &messages);
    cfg.decide(&rr, &facts).unwrap()
}

#[test]
fn slm_win_probability_routes_by_the_learned_router() {
    let cfg = parse(ROUTER_CFG);
    assert_eq!(cfg.router.as_deref(), Some("router.knn"));
    assert!(cfg.routes[0].uses_router() && !cfg.routes[1].uses_router());
    assert!(
        cfg.routes[0].needs_category,
        "decided off the async threads"
    );
    for (p, route) in [
        (Some(0.1), "hard-for-the-slm"),
        (Some(0.4), "hard-for-the-slm"),
        (Some(0.41), "rest"),
        (Some(0.9), "rest"),
        (None, "rest"),
    ] {
        let calls = Cell::new(0);
        let d = decide_with_router(&cfg, p, &calls);
        assert_eq!(d.route, route, "p = {p:?}");
        assert_eq!(calls.get(), 1, "computed once");
        let why = format!("{:?}", d.trace);
        assert!(why.contains("slm_win_probability"), "{why}");
        if p.is_none() {
            assert!(why.contains("no learned router loaded"), "{why}");
        }
    }
    // Facts without a router never match the condition.
    let messages = user("hello");
    let count = || 1;
    let classify = || None;
    let facts = Facts::new(&count, &classify);
    let rr = plain("auto", &messages);
    assert_eq!(cfg.decide(&rr, &facts).unwrap().route, "rest");
}

#[test]
fn slm_win_probability_misconfigurations_are_refused() {
    let err = |text: &str| {
        config::parse_with_env(text, &env)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let no_router = ROUTER_CFG.replace("  router: router.knn\n", "");
    let e = err(&no_router);
    assert!(
        e.contains("route `hard-for-the-slm` uses slm_win_probability"),
        "{e}"
    );
    let no_embedding = ROUTER_CFG.replace("  classifier: {embedding_model: minilm-l6}\n", "");
    let e = err(&no_embedding);
    assert!(
        e.contains("policy.router needs policy.classifier.embedding_model"),
        "{e}"
    );
    let e = err(&ROUTER_CFG.replace("{max: 0.4}", "{max: 40}"));
    assert!(e.contains("bounds are probabilities"), "{e}");
    let e = err(&ROUTER_CFG.replace("{max: 0.4}", "{min: 0.6, max: 0.4}"));
    assert!(e.contains("min 0.6 is greater than max 0.4"), "{e}");
    let e = err(&ROUTER_CFG.replace("{max: 0.4}", "{below: 0.4}"));
    assert!(e.contains("below"), "{e}");
}

/// Without `rag.slm` or `policy.local_model`, knowledge-base answers default to the first
/// local *chat* model: an embedding model listed first (the classifier's) is skipped, and
/// with no local chat model there is no default (rather than an embedding model that the
/// server would refuse as "not a chat model").
#[test]
fn rag_slm_defaults_to_the_first_local_chat_model() {
    let cfg = parse(
        "models:\n  - name: emb\n    local: minilm-l6\n  - name: e5\n    local: /m/e5-small-q4.bin\n  \
         - name: small\n    local: /m/Small.Q4_0.GGUF\n  - name: qwen\n    local: qwen2.5-coder-0.5b\n",
    );
    assert_eq!(cfg.rag.slm, "small");
    let cfg = parse(
        "models:\n  - name: emb\n    local: minilm-l6\n  - name: qwen\n    local: qwen2.5-coder-0.5b\n",
    );
    assert_eq!(cfg.rag.slm, "qwen");
    let cfg = parse(
        "models:\n  - name: emb\n    local: minilm-l6\n  - name: up\n    provider: openai\n    \
         base_url: http://127.0.0.1:9/v1\n    model: x\n",
    );
    assert_eq!(cfg.rag.slm, "");
    // An explicit policy.local_model still wins.
    let cfg = parse(
        "models:\n  - name: a\n    local: /m/a.gguf\n  - name: b\n    local: /m/b.gguf\npolicy:\n  local_model: b\n",
    );
    assert_eq!(cfg.rag.slm, "b");
}
