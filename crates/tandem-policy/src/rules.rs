//! Compiled routing rules and the decision procedure.
//!
//! A rule is `when` (conditions, all of which must hold) → `then` (an action). Rules are
//! tried in order and the first that matches decides. Facts that cost something — the
//! prompt's token count and the task category (an embedding) — are computed lazily, the
//! first time a rule asks for them, so a decision made by cheap rules stays in
//! microseconds. Every decision carries a trace of each rule and condition tried, which is
//! what `explain` shows.

use crate::cascade::Thresholds;
use crate::classify::Classification;
use crate::config::{Config, Issues, OneOrMany, PiiAction, Range, RawCondition, RawRoute};
use crate::pii::{Finding, PiiKind};
use aho_corasick::AhoCorasick;
use marked_yaml::Spanned;
use regex::Regex;
use serde::Serialize;
use std::cell::OnceCell;
use std::collections::BTreeSet;
use tandem_types::openai::ChatMessage;

/// What text a keyword or regex condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The last `user` message.
    LastUser,
    /// Every message, joined.
    Conversation,
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Requested model name is one of these.
    Model(Vec<String>),
    /// Task category is one of these (with at least `min_score`).
    Category {
        /// Accepted categories.
        any: Vec<String>,
        /// Lowest score.
        min_score: Option<f32>,
    },
    /// A keyword occurs (case-insensitive).
    Keywords {
        /// Matcher over lower-cased text.
        matcher: AhoCorasick,
        /// The keywords, lower-cased.
        words: Vec<String>,
        /// Where to look.
        scope: Scope,
    },
    /// A regex matches.
    Regex {
        /// Patterns (any of).
        patterns: Vec<Regex>,
        /// Where to look.
        scope: Scope,
    },
    /// Prompt tokens in range.
    PromptTokens(Range),
    /// PII found: `None` any kind, else one of these kinds.
    Pii(Option<Vec<PiiKind>>),
    /// Header values match.
    Header(Vec<(String, Regex)>),
    /// API key name is one of these.
    ApiKey(Vec<String>),
    /// Tenant is one of these.
    Tenant(Vec<String>),
    /// Latency budget in range (no header: no match).
    LatencyBudget(Range),
    /// The learned router's probability that the SLM's answer is good enough, in range (no
    /// router or no text: no match).
    SlmWin(Range),
    /// The request offers callable tools (`true`) or none (`false`).
    Tools(bool),
    /// The answer must be JSON (`true`) or free text (`false`).
    StructuredOutput(bool),
    /// All hold.
    All(Vec<Cond>),
    /// One holds.
    Any(Vec<Cond>),
    /// Does not hold.
    Not(Box<Cond>),
}

/// A cascade action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cascade {
    /// First model.
    pub slm: String,
    /// Escalation model.
    pub llm: String,
    /// When to escalate.
    pub thresholds: Thresholds,
    /// Cap on the SLM answer.
    pub slm_max_tokens: Option<u32>,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// Answer with one model.
    Model {
        /// The model.
        model: String,
    },
    /// SLM first, LLM when unsure.
    Cascade(Cascade),
    /// Refuse.
    Reject {
        /// Message for the client.
        message: String,
        /// HTTP status.
        status: u16,
    },
    /// Answer from a knowledge base (retrieval-augmented generation).
    Rag(RagAction),
}

/// `then.rag:` or a `kb:NAME` request: which base, and how the SLM and LLM share the work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RagAction {
    /// Knowledge base name.
    pub kb: String,
    /// Mode (from the rule, the request, `rag.knowledge_bases`, or `rag.mode`).
    pub mode: tandem_rag::Mode,
    /// Chunks to retrieve.
    pub top_k: usize,
}

impl Action {
    /// Short name: `model`, `cascade`, `reject`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Model { .. } => "model",
            Action::Cascade(_) => "cascade",
            Action::Reject { .. } => "reject",
            Action::Rag(_) => "rag",
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name.
    pub name: String,
    /// Note.
    pub description: Option<String>,
    /// Conditions (None: always).
    pub when: Option<Cond>,
    /// Action.
    pub action: Action,
    /// PII action override.
    pub pii: Option<PiiAction>,
    /// Applies to direct model requests too.
    pub direct: bool,
    /// Whether the conditions need the classifier.
    pub needs_category: bool,
    /// The script of this route's answers, when the route sets one.
    pub answer_script: Option<crate::script::ScriptSetting>,
}

pub(crate) struct CompileCtx<'a> {
    pub models: &'a BTreeSet<String>,
    pub local_model: Option<&'a str>,
    pub llm_model: Option<&'a str>,
    pub rag: &'a crate::config::RagSettings,
}

fn strings(v: &OneOrMany) -> Vec<String> {
    v.0.iter().map(|s| s.to_string()).collect()
}

fn first_span(v: &OneOrMany) -> Option<&marked_yaml::Span> {
    v.0.first().map(|s| s.span())
}

fn parse_scope(issues: &mut Issues, s: Option<&Spanned<String>>) -> Scope {
    match s.map(|s| (s.as_str(), s)) {
        None | Some(("last_user", _)) => Scope::LastUser,
        Some(("conversation", _)) => Scope::Conversation,
        Some((other, s)) => {
            issues.at(
                s.span(),
                format!("unknown scope `{other}` (use last_user or conversation)"),
            );
            Scope::LastUser
        }
    }
}

fn check_range(issues: &mut Issues, r: &Range, what: &str, span: Option<&marked_yaml::Span>) {
    if let (Some(a), Some(b)) = (r.min, r.max)
        && a > b
    {
        let msg = format!("{what}: min {a} is greater than max {b}");
        match span {
            Some(s) => issues.at(s, msg),
            None => issues.0.push(crate::config::ConfigIssue {
                line: 0,
                column: 0,
                message: msg,
            }),
        }
    }
}

fn compile_cond(c: &RawCondition, issues: &mut Issues, route: &Spanned<String>) -> Cond {
    let mut parts = Vec::new();
    let scope = parse_scope(issues, c.scope.as_ref());
    if let Some(m) = &c.model {
        parts.push(Cond::Model(strings(m)));
    }
    if let Some(cat) = &c.category {
        parts.push(Cond::Category {
            any: strings(cat),
            min_score: c.min_score,
        });
    } else if c.min_score.is_some() {
        issues.at(
            route.span(),
            format!("route `{}`: `min_score` needs `category`", route.as_str()),
        );
    }
    if let Some(k) = &c.keywords {
        let words: Vec<String> =
            k.0.iter()
                .map(|w| w.to_lowercase())
                .filter(|w| !w.is_empty())
                .collect();
        if words.is_empty() {
            if let Some(s) = first_span(k) {
                issues.at(s, "keywords: give at least one non-empty keyword");
            }
        } else {
            match AhoCorasick::new(&words) {
                Ok(matcher) => parts.push(Cond::Keywords {
                    matcher,
                    words,
                    scope,
                }),
                Err(e) => {
                    if let Some(s) = first_span(k) {
                        issues.at(s, format!("keywords: {e}"));
                    }
                }
            }
        }
    }
    if let Some(rx) = &c.regex {
        let mut patterns = Vec::new();
        for p in &rx.0 {
            match Regex::new(p) {
                Ok(r) => patterns.push(r),
                Err(e) => issues.at(
                    p.span(),
                    format!(
                        "invalid regex `{}`: {}",
                        p.as_str(),
                        first_line(&e.to_string())
                    ),
                ),
            }
        }
        parts.push(Cond::Regex { patterns, scope });
    }
    if let Some(r) = &c.prompt_tokens {
        check_range(issues, r, "prompt_tokens", Some(route.span()));
        parts.push(Cond::PromptTokens(*r));
    }
    if let Some(p) = &c.pii {
        let vals = strings(p);
        if vals.iter().any(|v| v == "any" || v == "true") {
            parts.push(Cond::Pii(None));
        } else {
            let mut kinds = Vec::new();
            for k in &p.0 {
                match PiiKind::parse(k) {
                    Some(kind) => kinds.push(kind),
                    None => issues.at(k.span(), format!("unknown PII kind `{}`", k.as_str())),
                }
            }
            parts.push(Cond::Pii(Some(kinds)));
        }
    }
    if let Some(h) = &c.header {
        let mut v = Vec::new();
        for (name, pat) in h {
            match Regex::new(pat) {
                Ok(r) => v.push((name.to_ascii_lowercase(), r)),
                Err(e) => issues.at(
                    pat.span(),
                    format!(
                        "header `{name}`: invalid regex: {}",
                        first_line(&e.to_string())
                    ),
                ),
            }
        }
        parts.push(Cond::Header(v));
    }
    if let Some(k) = &c.api_key {
        parts.push(Cond::ApiKey(strings(k)));
    }
    if let Some(t) = &c.tenant {
        parts.push(Cond::Tenant(strings(t)));
    }
    if let Some(r) = &c.latency_budget_ms {
        check_range(issues, r, "latency_budget_ms", Some(route.span()));
        parts.push(Cond::LatencyBudget(*r));
    }
    if let Some(r) = &c.slm_win_probability {
        check_range(issues, r, "slm_win_probability", Some(route.span()));
        for v in [r.min, r.max].into_iter().flatten() {
            if !(0.0..=1.0).contains(&v) {
                issues.at(
                    route.span(),
                    format!("slm_win_probability: bounds are probabilities (0 to 1), got {v}"),
                );
            }
        }
        parts.push(Cond::SlmWin(*r));
    }
    if let Some(t) = c.tools {
        parts.push(Cond::Tools(t));
    }
    if let Some(t) = c.structured_output {
        parts.push(Cond::StructuredOutput(t));
    }
    if let Some(all) = &c.all {
        parts.push(Cond::All(
            all.iter().map(|c| compile_cond(c, issues, route)).collect(),
        ));
    }
    if let Some(any) = &c.any {
        if any.is_empty() {
            issues.at(
                route.span(),
                format!(
                    "route `{}`: `any` needs at least one condition",
                    route.as_str()
                ),
            );
        }
        parts.push(Cond::Any(
            any.iter().map(|c| compile_cond(c, issues, route)).collect(),
        ));
    }
    if let Some(n) = &c.not {
        parts.push(Cond::Not(Box::new(compile_cond(n, issues, route))));
    }
    if parts.is_empty() {
        issues.at(
            route.span(),
            format!(
                "route `{}`: an empty condition (omit `when` to match everything)",
                route.as_str()
            ),
        );
    }
    if parts.len() == 1 {
        parts.pop().unwrap_or(Cond::All(Vec::new()))
    } else {
        Cond::All(parts)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

fn cond_uses_router(c: &Cond) -> bool {
    match c {
        Cond::SlmWin(_) => true,
        Cond::All(v) | Cond::Any(v) => v.iter().any(cond_uses_router),
        Cond::Not(c) => cond_uses_router(c),
        _ => false,
    }
}

impl Route {
    /// Whether the conditions look at the learned router (`slm_win_probability`).
    pub fn uses_router(&self) -> bool {
        self.when.as_ref().is_some_and(cond_uses_router)
    }
}

/// Whether deciding may need an embedding (the task category or the learned router): such
/// decisions run off the async threads.
fn cond_needs_category(c: &Cond) -> bool {
    match c {
        Cond::Category { .. } | Cond::SlmWin(_) => true,
        Cond::All(v) | Cond::Any(v) => v.iter().any(cond_needs_category),
        Cond::Not(c) => cond_needs_category(c),
        _ => false,
    }
}

pub(crate) fn compile_route(
    r: &RawRoute,
    pii: Option<PiiAction>,
    ctx: &CompileCtx,
    issues: &mut Issues,
) -> Option<Route> {
    let name = &r.name;
    let before = issues.0.len();
    let when = r.when.as_ref().map(|c| compile_cond(c, issues, name));
    let a = &r.then.0;
    let given = [
        a.model.is_some(),
        a.cascade.is_some(),
        a.reject.is_some(),
        a.rag.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        issues.at(
            r.then.span(),
            format!(
                "route `{}`: `then` needs exactly one of `model`, `cascade`, `reject`, `rag`",
                name.as_str()
            ),
        );
        return None;
    }
    let known = |issues: &mut Issues, s: &Spanned<String>, what: &str| {
        if !ctx.models.contains(s.as_str()) {
            issues.at(
                s.span(),
                format!(
                    "route `{}`: {what} `{}` is not a defined model",
                    name.as_str(),
                    s.as_str()
                ),
            );
        }
    };
    let action = if let Some(m) = &a.model {
        known(issues, m, "model");
        Action::Model {
            model: m.to_string(),
        }
    } else if let Some(c) = &a.cascade {
        let slm = match &c.slm {
            Some(s) => {
                known(issues, s, "cascade.slm");
                s.to_string()
            }
            None => match ctx.local_model {
                Some(m) => m.to_string(),
                None => {
                    issues.at(
                        r.then.span(),
                        format!(
                            "route `{}`: cascade needs `slm` (or policy.local_model)",
                            name.as_str()
                        ),
                    );
                    String::new()
                }
            },
        };
        let llm = match &c.llm {
            Some(s) => {
                known(issues, s, "cascade.llm");
                s.to_string()
            }
            None => match ctx.llm_model {
                Some(m) => m.to_string(),
                None => {
                    issues.at(
                        r.then.span(),
                        format!(
                            "route `{}`: cascade needs `llm` (or policy.llm_model)",
                            name.as_str()
                        ),
                    );
                    String::new()
                }
            },
        };
        let d = Thresholds::default();
        Action::Cascade(Cascade {
            slm,
            llm,
            thresholds: Thresholds {
                min_mean_logprob: c.min_mean_logprob.unwrap_or(d.min_mean_logprob),
                min_token_logprob: c.min_token_logprob,
                max_mean_entropy: c.max_mean_entropy,
                escalate_on_refusal: c.escalate_on_refusal.unwrap_or(d.escalate_on_refusal),
            },
            slm_max_tokens: c.slm_max_tokens,
        })
    } else if let Some(rg) = &a.rag {
        let kb = rg.kb.to_string();
        if !crate::config::valid_kb_name(&kb) {
            issues.at(
                rg.kb.span(),
                format!(
                    "route `{}`: `{kb}` is not a valid knowledge base name (letters, digits, `-` and `_`, at most 64)",
                    name.as_str()
                ),
            );
        }
        let mode = match &rg.mode {
            Some(m) => match m.as_str().parse::<tandem_rag::Mode>() {
                Ok(m) => m,
                Err(e) => {
                    issues.at(m.span(), format!("route `{}`: {e}", name.as_str()));
                    tandem_rag::Mode::Local
                }
            },
            None => ctx.rag.mode_for(&kb),
        };
        let top_k = rg.top_k.unwrap_or(ctx.rag.top_k);
        if !(1..=50).contains(&top_k) {
            issues.at(
                r.then.span(),
                format!("route `{}`: rag.top_k must be 1 to 50", name.as_str()),
            );
        }
        Action::Rag(RagAction { kb, mode, top_k })
    } else if let Some(rj) = &a.reject {
        let status = rj.status.unwrap_or(403);
        if !(400..=599).contains(&status) {
            issues.at(
                r.then.span(),
                format!(
                    "route `{}`: reject status {status} is not an HTTP error status",
                    name.as_str()
                ),
            );
        }
        Action::Reject {
            message: rj
                .message
                .clone()
                .unwrap_or_else(|| format!("Rejected by routing rule `{}`.", name.as_str())),
            status,
        }
    } else {
        return None;
    };
    if issues.0.len() > before {
        return None;
    }
    let needs_category = when.as_ref().is_some_and(cond_needs_category);
    Some(Route {
        name: name.to_string(),
        description: r.description.clone(),
        when,
        action,
        pii,
        direct: r.direct.unwrap_or(false),
        needs_category,
        answer_script: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// A requested model of the form `kb:NAME` asks for an answer from knowledge base `NAME`.
pub const KB_PREFIX: &str = "kb:";

/// What the rules look at, beyond the lazily computed facts.
pub struct RouteRequest<'a> {
    /// `model` as the client sent it.
    pub requested_model: &'a str,
    /// The conversation.
    pub messages: &'a [ChatMessage],
    /// Request headers, names lower-cased.
    pub headers: &'a [(String, String)],
    /// Name of the API key used (from `api_keys:`).
    pub api_key: Option<&'a str>,
    /// Tenant.
    pub tenant: Option<&'a str>,
    /// `x-tandem-latency-budget-ms`.
    pub latency_budget_ms: Option<f64>,
    /// PII found in the conversation (the guard runs on every request).
    pub pii: &'a [Finding],
    /// Tools the model may call (0 when none are offered or `tool_choice` is `none`).
    pub tools: usize,
    /// The answer must be JSON (a JSON-object or JSON-schema format).
    pub structured_output: bool,
}

/// Facts computed on demand, at most once.
pub struct Facts<'a> {
    count_tokens: &'a dyn Fn() -> usize,
    classify: &'a dyn Fn() -> Option<Classification>,
    router: Option<&'a dyn Fn() -> Option<f32>>,
    tokens: OnceCell<usize>,
    category: OnceCell<Option<Classification>>,
    slm_win: OnceCell<Option<f32>>,
    last_user: OnceCell<String>,
    conversation: OnceCell<String>,
}

impl<'a> Facts<'a> {
    /// Facts backed by a token counter and a classifier.
    pub fn new(
        count_tokens: &'a dyn Fn() -> usize,
        classify: &'a dyn Fn() -> Option<Classification>,
    ) -> Self {
        Facts {
            count_tokens,
            classify,
            router: None,
            tokens: OnceCell::new(),
            category: OnceCell::new(),
            slm_win: OnceCell::new(),
            last_user: OnceCell::new(),
            conversation: OnceCell::new(),
        }
    }

    /// Adds the learned router: the probability that the SLM's answer is good enough for
    /// this request (`None`: cannot tell).
    pub fn with_router(mut self, router: &'a dyn Fn() -> Option<f32>) -> Self {
        self.router = Some(router);
        self
    }

    /// The learned router's SLM win probability (computed now if not yet).
    pub fn slm_win_probability(&self) -> Option<f32> {
        *self.slm_win.get_or_init(|| self.router.and_then(|r| r()))
    }

    /// The SLM win probability if it was computed.
    pub fn slm_win_if_computed(&self) -> Option<f32> {
        self.slm_win.get().copied().flatten()
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        *self.tokens.get_or_init(|| (self.count_tokens)())
    }

    /// The category (computed now if no rule needed it yet).
    pub fn category(&self) -> Option<&Classification> {
        self.category.get_or_init(|| (self.classify)()).as_ref()
    }

    /// The category if it was computed.
    pub fn category_if_computed(&self) -> Option<&Classification> {
        self.category.get().and_then(|c| c.as_ref())
    }

    /// The token count if it was computed.
    pub fn tokens_if_computed(&self) -> Option<usize> {
        self.tokens.get().copied()
    }

    fn text(&self, req: &RouteRequest, scope: Scope) -> &str {
        match scope {
            Scope::LastUser => self
                .last_user
                .get_or_init(|| last_user(req.messages).to_lowercase()),
            Scope::Conversation => self.conversation.get_or_init(|| {
                req.messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
                    .to_lowercase()
            }),
        }
    }
}

/// The last user message (or the last message if none is from the user).
pub fn last_user(messages: &[ChatMessage]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .or(messages.last())
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

/// One condition's outcome, for explain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CondTrace {
    /// The condition, in words.
    pub condition: String,
    /// Whether it held.
    pub matched: bool,
    /// What was observed.
    pub observed: String,
}

/// One rule's outcome, for explain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleTrace {
    /// Rule name.
    pub route: String,
    /// Whether it matched.
    pub matched: bool,
    /// Skipped because the request named a model directly and the rule is not `direct`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Conditions tried (evaluation stops at the first that fails).
    pub conditions: Vec<CondTrace>,
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

fn eval(c: &Cond, req: &RouteRequest, facts: &Facts, trace: &mut Vec<CondTrace>) -> bool {
    let (matched, condition, observed) = match c {
        Cond::Model(names) => (
            names.iter().any(|n| n == req.requested_model),
            format!("model in [{}]", list(names)),
            req.requested_model.to_string(),
        ),
        Cond::Category { any, min_score } => {
            let cat = facts.category();
            let m = cat.is_some_and(|c| {
                any.contains(&c.category) && min_score.is_none_or(|s| c.score >= s)
            });
            let mut cond = format!("category in [{}]", list(any));
            if let Some(s) = min_score {
                cond.push_str(&format!(" with score ≥ {s}"));
            }
            let obs = cat
                .map(|c| format!("{} ({:.2}, {})", c.category, c.score, c.method))
                .unwrap_or_else(|| "no classifier".into());
            (m, cond, obs)
        }
        Cond::Keywords {
            matcher,
            words,
            scope,
        } => {
            let text = facts.text(req, *scope);
            let hit = matcher
                .find(text)
                .map(|m| words[m.pattern().as_usize()].clone());
            (
                hit.is_some(),
                format!("{} contains any of [{}]", scope_name(*scope), list(words)),
                hit.map(|h| format!("found `{h}`"))
                    .unwrap_or_else(|| "none found".into()),
            )
        }
        Cond::Regex { patterns, scope } => {
            let text = match scope {
                Scope::LastUser => last_user(req.messages).to_string(),
                Scope::Conversation => req
                    .messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            let hit = patterns.iter().find(|p| p.is_match(&text));
            (
                hit.is_some(),
                format!(
                    "{} matches any of [{}]",
                    scope_name(*scope),
                    patterns
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                hit.map(|p| format!("matched /{}/", p.as_str()))
                    .unwrap_or_else(|| "no match".into()),
            )
        }
        Cond::PromptTokens(r) => {
            let n = facts.prompt_tokens();
            (
                r.contains(n as f64),
                format!("prompt tokens {}", range_text(r)),
                n.to_string(),
            )
        }
        Cond::Pii(kinds) => {
            let found: BTreeSet<PiiKind> = req.pii.iter().map(|f| f.kind).collect();
            let m = match kinds {
                None => !found.is_empty(),
                Some(k) => k.iter().any(|k| found.contains(k)),
            };
            let cond = match kinds {
                None => "PII found (any kind)".to_string(),
                Some(k) => format!(
                    "PII of kind [{}]",
                    k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
            let obs = if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (m, cond, obs)
        }
        Cond::Header(hs) => {
            let mut ok = true;
            let mut obs = Vec::new();
            for (name, re) in hs {
                let v = req
                    .headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str());
                obs.push(format!("{name}: {}", v.unwrap_or("(absent)")));
                if !v.is_some_and(|v| re.is_match(v)) {
                    ok = false;
                }
            }
            (
                ok,
                format!(
                    "headers {}",
                    hs.iter()
                        .map(|(n, r)| format!("{n} =~ /{}/", r.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                obs.join("; "),
            )
        }
        Cond::ApiKey(names) => (
            req.api_key.is_some_and(|k| names.iter().any(|n| n == k)),
            format!("api key in [{}]", list(names)),
            req.api_key.unwrap_or("(none)").to_string(),
        ),
        Cond::Tenant(names) => (
            req.tenant.is_some_and(|k| names.iter().any(|n| n == k)),
            format!("tenant in [{}]", list(names)),
            req.tenant.unwrap_or("(none)").to_string(),
        ),
        Cond::LatencyBudget(r) => (
            req.latency_budget_ms.is_some_and(|b| r.contains(b)),
            format!("latency budget ms {}", range_text(r)),
            req.latency_budget_ms
                .map(|b| format!("{b}"))
                .unwrap_or_else(|| "(no x-tandem-latency-budget-ms)".into()),
        ),
        Cond::Tools(want) => (
            (req.tools > 0) == *want,
            format!("tools offered = {want}"),
            match req.tools {
                0 => "no callable tools".to_string(),
                1 => "1 tool".to_string(),
                n => format!("{n} tools"),
            },
        ),
        Cond::StructuredOutput(want) => (
            req.structured_output == *want,
            format!("structured output = {want}"),
            if req.structured_output {
                "JSON format requested".to_string()
            } else {
                "free text".to_string()
            },
        ),
        Cond::SlmWin(r) => {
            let p = facts.slm_win_probability();
            // Rounded to 6 decimals: an f32 such as 0.4 widens to 0.4000000059604645, which
            // would miss `max: 0.4`.
            (
                p.is_some_and(|p| r.contains((f64::from(p) * 1e6).round() / 1e6)),
                format!("slm_win_probability {}", range_text(r)),
                p.map(|p| format!("{p:.3}"))
                    .unwrap_or_else(|| "(no learned router loaded)".into()),
            )
        }
        Cond::All(v) => {
            // Flatten: each part reports itself.
            for c in v {
                if !eval(c, req, facts, trace) {
                    return false;
                }
            }
            return true;
        }
        Cond::Any(v) => {
            let mut sub = Vec::new();
            let mut m = false;
            for c in v {
                if eval(c, req, facts, &mut sub) {
                    m = true;
                    break;
                }
            }
            let obs = sub
                .iter()
                .map(|t| format!("{}: {}", t.condition, if t.matched { "yes" } else { "no" }))
                .collect::<Vec<_>>()
                .join("; ");
            (m, "any of".to_string(), obs)
        }
        Cond::Not(c) => {
            let mut sub = Vec::new();
            let m = !eval(c, req, facts, &mut sub);
            let cond = format!(
                "not ({})",
                sub.iter()
                    .map(|t| t.condition.clone())
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            let obs = sub
                .iter()
                .map(|t| t.observed.clone())
                .collect::<Vec<_>>()
                .join("; ");
            (m, cond, obs)
        }
    };
    trace.push(CondTrace {
        condition,
        matched,
        observed,
    });
    matched
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::LastUser => "last user message",
        Scope::Conversation => "conversation",
    }
}

fn range_text(r: &Range) -> String {
    match (r.min, r.max) {
        (Some(a), Some(b)) => format!("in [{a}, {b}]"),
        (Some(a), None) => format!("≥ {a}"),
        (None, Some(b)) => format!("≤ {b}"),
        (None, None) => "any".into(),
    }
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// The requested model is neither a model nor an alias.
    #[error("The model `{model}` does not exist")]
    UnknownModel {
        /// Requested name.
        model: String,
    },
}

/// The outcome of routing one request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    /// Rule that decided (`direct` / `default` when none did).
    pub route: String,
    /// What to do.
    pub action: Action,
    /// Model that answers first (None for reject).
    pub model: Option<String>,
    /// The request named a model directly.
    pub direct: bool,
    /// PII kinds found.
    pub pii_kinds: Vec<PiiKind>,
    /// What the guard does with them (None when nothing was found or nothing leaves).
    pub pii_action: Option<PiiAction>,
    /// What the guard does if a call made for this request goes to a remote model (e.g. a
    /// fallback or an escalation): the route's PII action or the policy's default.
    pub remote_pii_action: PiiAction,
    /// Reasons, in words.
    pub reasons: Vec<String>,
    /// Every rule tried.
    pub trace: Vec<RuleTrace>,
    /// The script the answer is written in, when the policy sets one for this request.
    pub answer_script: Option<crate::script::AnswerScript>,
}

impl Config {
    /// Resolve the requested model: `Ok(None)` = routed by the policy, `Ok(Some(m))` = direct.
    pub fn resolve_requested(&self, requested: &str) -> Result<Option<String>, RouteError> {
        if let Some(a) = self.aliases.get(requested) {
            return Ok(a.clone());
        }
        if self.model(requested).is_some() {
            return Ok(Some(requested.to_string()));
        }
        Err(RouteError::UnknownModel {
            model: requested.to_string(),
        })
    }

    fn is_remote(&self, model: &str) -> bool {
        self.model(model).is_some_and(|m| !m.is_local())
    }

    /// The local model PII is forced to: `policy.local_model`, else the first local model.
    pub fn fallback_local(&self) -> Option<&str> {
        self.local_model.as_deref().or_else(|| {
            self.models
                .iter()
                .find(|m| m.is_local())
                .map(|m| m.name.as_str())
        })
    }

    /// Route one request.
    pub fn decide(&self, req: &RouteRequest, facts: &Facts) -> Result<Decision, RouteError> {
        if let Some(kb) = req.requested_model.strip_prefix(KB_PREFIX) {
            return self.decide_kb(kb, req);
        }
        let direct_model = self.resolve_requested(req.requested_model)?;
        let direct = direct_model.is_some();
        let mut trace = Vec::with_capacity(self.routes.len());
        let mut reasons = Vec::new();
        let mut chosen: Option<(&Route, usize)> = None;
        for (i, r) in self.routes.iter().enumerate() {
            if direct && !r.direct {
                trace.push(RuleTrace {
                    route: r.name.clone(),
                    matched: false,
                    skipped: true,
                    conditions: Vec::new(),
                });
                continue;
            }
            let mut conds = Vec::new();
            let m = match &r.when {
                None => true,
                Some(c) => eval(c, req, facts, &mut conds),
            };
            trace.push(RuleTrace {
                route: r.name.clone(),
                matched: m,
                skipped: false,
                conditions: conds,
            });
            if m {
                chosen = Some((r, i));
                break;
            }
        }
        let (route_name, action, route_pii) = match (chosen, &direct_model) {
            (Some((r, i)), _) => {
                let t = &trace[i];
                if t.conditions.is_empty() {
                    reasons.push(format!("rule `{}` matches every request", r.name));
                } else {
                    for c in &t.conditions {
                        reasons.push(format!("{} ({})", c.condition, c.observed));
                    }
                }
                (r.name.clone(), r.action.clone(), r.pii)
            }
            (None, Some(m)) => {
                if !self.allow_direct {
                    reasons.push("naming a model directly is not allowed by the policy".into());
                    (
                        "direct".to_string(),
                        Action::Reject {
                            message: format!(
                                "Requests must use `auto` (or an alias); naming `{m}` directly is not allowed."
                            ),
                            status: 403,
                        },
                        None,
                    )
                } else {
                    reasons.push(format!("the request named `{m}` directly"));
                    (
                        "direct".to_string(),
                        Action::Model { model: m.clone() },
                        None,
                    )
                }
            }
            (None, None) => {
                let m = self
                    .llm_model
                    .as_deref()
                    .or(self.fallback_local())
                    .unwrap_or_default()
                    .to_string();
                reasons.push(format!("no rule matched; default model `{m}`"));
                ("default".to_string(), Action::Model { model: m }, None)
            }
        };
        let (action, model, pii_kinds, pii_action, remote_pii_action) =
            self.guard(action, route_pii, req, &mut reasons);
        let answer_script = self.answer_script(chosen.map(|(r, _)| r), req, &mut reasons);
        Ok(Decision {
            route: route_name,
            action,
            model,
            direct,
            pii_kinds,
            pii_action,
            remote_pii_action,
            reasons,
            trace,
            answer_script,
        })
    }

    /// The PII guard: only matters when something would leave the machine. Returns the
    /// (possibly changed) action, the answering model, the kinds found, the guard's action
    /// and the action for remote calls made later (fallbacks, escalations).
    #[allow(clippy::type_complexity)]
    fn guard(
        &self,
        mut action: Action,
        route_pii: Option<PiiAction>,
        req: &RouteRequest,
        reasons: &mut Vec<String>,
    ) -> (
        Action,
        Option<String>,
        Vec<PiiKind>,
        Option<PiiAction>,
        PiiAction,
    ) {
        let pii_kinds: Vec<PiiKind> = req
            .pii
            .iter()
            .map(|f| f.kind)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let leaves = match &action {
            Action::Model { model } => self.is_remote(model),
            Action::Cascade(c) => self.is_remote(&c.slm) || self.is_remote(&c.llm),
            Action::Reject { .. } => false,
            Action::Rag(r) => r.mode.uses_llm() && self.is_remote(&self.rag.llm),
        };
        let mut pii_action = None;
        let remote_pii_action = route_pii.unwrap_or(self.pii_action);
        if !pii_kinds.is_empty() && leaves {
            let a = route_pii.unwrap_or(self.pii_action);
            let kinds = pii_kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            pii_action = Some(a);
            match a {
                PiiAction::ForceLocal => match self.fallback_local() {
                    Some(local) => {
                        reasons.push(format!(
                            "PII ({kinds}) must stay local: answered by `{local}`"
                        ));
                        action = match action {
                            Action::Cascade(c) if !self.is_remote(&c.slm) => {
                                Action::Model { model: c.slm }
                            }
                            Action::Rag(r) if !self.is_remote(&self.rag.slm) => {
                                Action::Rag(RagAction {
                                    mode: tandem_rag::Mode::Local,
                                    ..r
                                })
                            }
                            _ => Action::Model {
                                model: local.to_string(),
                            },
                        };
                    }
                    None => {
                        reasons.push(format!(
                            "PII ({kinds}) must stay local but no local model is configured"
                        ));
                        action = Action::Reject {
                            message: format!(
                                "The request contains personal data ({kinds}) that may not leave this machine, and no local model is configured."
                            ),
                            status: 400,
                        };
                    }
                },
                PiiAction::Block => {
                    reasons.push(format!("PII ({kinds}) found: blocked"));
                    action = Action::Reject {
                        message: format!(
                            "The request contains personal data ({kinds}) and this route does not allow sending it to a remote model."
                        ),
                        status: 400,
                    };
                }
                PiiAction::Mask => reasons.push(format!("PII ({kinds}) masked before leaving")),
                PiiAction::Allow => {
                    reasons.push(format!("PII ({kinds}) allowed to leave by policy"))
                }
            }
        }
        let model = match &action {
            Action::Model { model } => Some(model.clone()),
            Action::Cascade(c) => Some(c.slm.clone()),
            Action::Reject { .. } => None,
            Action::Rag(_) => Some(self.rag.slm.clone()),
        };
        (action, model, pii_kinds, pii_action, remote_pii_action)
    }

    /// A `kb:NAME` request: answered from the knowledge base in the mode the policy sets for
    /// it; the PII guard still applies. No routing rule is tried.
    fn decide_kb(&self, kb: &str, req: &RouteRequest) -> Result<Decision, RouteError> {
        let kb = kb.trim();
        if !crate::config::valid_kb_name(kb) {
            return Err(RouteError::UnknownModel {
                model: format!("{KB_PREFIX}{kb}"),
            });
        }
        let mode = self.rag.mode_for(kb);
        let mut reasons = vec![format!(
            "the request asked for knowledge base `{kb}` (mode `{mode}`)"
        )];
        let action = Action::Rag(RagAction {
            kb: kb.to_string(),
            mode,
            top_k: self.rag.top_k,
        });
        let (action, model, pii_kinds, pii_action, remote_pii_action) =
            self.guard(action, None, req, &mut reasons);
        let answer_script = self.answer_script(None, req, &mut reasons);
        Ok(Decision {
            route: "kb".to_string(),
            action,
            model,
            direct: true,
            pii_kinds,
            pii_action,
            remote_pii_action,
            reasons,
            trace: Vec::new(),
            answer_script,
        })
    }
}

impl Config {
    /// The answer script of a request decided by `route` (None: the default rule, a direct
    /// request or a knowledge base). A route's setting wins over the tenant's, which wins
    /// over the policy's. When one applies, its reason is added to `reasons`.
    fn answer_script(
        &self,
        route: Option<&Route>,
        req: &RouteRequest,
        reasons: &mut Vec<String>,
    ) -> Option<crate::script::AnswerScript> {
        use crate::script::{Source, resolve};
        let tenant = req
            .tenant
            .and_then(|t| self.tenant_scripts.get(t).map(|s| (t, *s)));
        let (setting, source) = match (route.and_then(|r| r.answer_script.map(|s| (r, s))), tenant)
        {
            (Some((r, s)), _) => (s, Source::Route(&r.name)),
            (None, Some((t, s))) => (s, Source::Tenant(t)),
            (None, None) => (self.answer_script, Source::Policy),
        };
        let script = resolve(setting, source, last_user(req.messages))?;
        reasons.push(format!("answer in {}: {}", script.locale, script.why));
        Some(script)
    }
}
