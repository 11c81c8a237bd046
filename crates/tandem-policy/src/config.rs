//! `tandem.yaml`: raw YAML → validated [`Config`].
//!
//! Parsing keeps the line and column of every value that later validation may reject
//! (model names, regexes, route references), so `tandem config check` can say *where* each
//! problem is. All problems are collected, not just the first. Secrets are written as
//! `${VAR}`, resolved from the environment at load time (an unset variable is an error) and
//! never printed: [`Secret`] redacts itself.

use crate::classify::ClassifierConfig;
use crate::pii::PiiKind;
use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The configuration Tandem runs with when no file is given: the default routing table.
pub const DEFAULT_CONFIG: &str = include_str!("../data/default.yaml");

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

/// A secret resolved from the environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file shape
// ---------------------------------------------------------------------------------------------

/// A string or a list of strings.
#[derive(Debug, Clone, Default)]
pub struct OneOrMany(pub Vec<Spanned<String>>);

/// The items of a [`OneOrMany`] before the outer span is known.
struct OneOrManyInner(Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for OneOrManyInner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrManyInner;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrManyInner(vec![Spanned::new(
                    marked_yaml::Span::new_blank(),
                    v.to_string(),
                )]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(OneOrManyInner(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sp: Spanned<OneOrManyInner> = Spanned::deserialize(d)?;
        let outer = *sp.span();
        let items =
            sp.0.iter()
                .map(|s| {
                    if s.span().start().is_some() {
                        s.clone()
                    } else {
                        Spanned::new(outer, s.to_string())
                    }
                })
                .collect();
        Ok(OneOrMany(items))
    }
}

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listener and API behaviour.
    #[serde(default)]
    pub server: ServerSection,
    /// Engine defaults for every local chat model.
    #[serde(default)]
    pub engine: EngineSection,
    /// Models: local (GGUF / embedding) or remote.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// Requested model name → `policy` or a model name.
    #[serde(default)]
    pub aliases: BTreeMap<String, Spanned<String>>,
    /// Known API keys and the tenant each belongs to.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Policy-wide settings.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Ordered routing rules; the first that matches decides.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Knowledge-base answers (retrieval-augmented generation).
    #[serde(default)]
    pub rag: RawRag,
}

/// `rag:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRag {
    /// Model that retrieves, drafts and answers locally (default `policy.local_model`).
    pub slm: Option<Spanned<String>>,
    /// Model that escalations, compressed contexts and draft checks go to (default
    /// `policy.llm_model`).
    pub llm: Option<Spanned<String>>,
    /// Default mode: `local`, `escalate` (default), `compress` or `draft_verify`.
    pub mode: Option<Spanned<String>>,
    /// Chunks retrieved per question (default 5).
    pub top_k: Option<usize>,
    /// Drafts in `draft_verify` (default 3).
    pub drafts: Option<usize>,
    /// Token budget of the compressed context in `compress` (default 350).
    pub compress_max_tokens: Option<usize>,
    /// Longest answer, in tokens (default 256).
    pub max_answer_tokens: Option<u32>,
    /// When `escalate` hands over to the LLM.
    pub escalate: Option<tandem_rag::ground::EscalatePolicy>,
    /// Per knowledge base: `{mode: ...}`.
    #[serde(default)]
    pub knowledge_bases: BTreeMap<String, RawKbSettings>,
    /// Embedding model of new knowledge bases (default: the classifier's).
    pub embedding_model: Option<Spanned<String>>,
}

/// `rag.knowledge_bases.NAME:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKbSettings {
    /// Mode for this base.
    pub mode: Option<Spanned<String>>,
}

/// Validated `rag:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RagSettings {
    /// The SLM (empty when the config has no local model).
    pub slm: String,
    /// The LLM (empty when the config has none).
    pub llm: String,
    /// Default mode.
    pub mode: tandem_rag::Mode,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// Drafts in `draft_verify`.
    pub drafts: usize,
    /// Token budget of the compressed context.
    pub compress_max_tokens: usize,
    /// Longest answer, in tokens.
    pub max_answer_tokens: u32,
    /// When `escalate` hands over.
    pub escalate: tandem_rag::ground::EscalatePolicy,
    /// Modes set per base.
    pub bases: BTreeMap<String, tandem_rag::Mode>,
    /// Embedding model of new knowledge bases (None: the classifier's).
    pub embedding_model: Option<String>,
}

impl Default for RagSettings {
    fn default() -> Self {
        RagSettings {
            slm: String::new(),
            llm: String::new(),
            mode: tandem_rag::Mode::Escalate,
            top_k: 5,
            drafts: 3,
            compress_max_tokens: 350,
            max_answer_tokens: 256,
            escalate: tandem_rag::ground::EscalatePolicy::default(),
            bases: BTreeMap::new(),
            embedding_model: None,
        }
    }
}

impl RagSettings {
    /// The mode for base `kb`: its own, else the default.
    pub fn mode_for(&self, kb: &str) -> tandem_rag::Mode {
        self.bases.get(kb).copied().unwrap_or(self.mode)
    }
}

/// Whether `name` is a valid knowledge base name: 1–64 of `A-Z a-z 0-9 - _`.
pub fn valid_kb_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `server:`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to bind.
    pub host: Option<String>,
    /// Port to bind.
    pub port: Option<u16>,
    /// Ignore unknown OpenAI parameters instead of answering 400.
    pub drop_unknown_params: Option<bool>,
    /// Largest request body (bytes).
    pub max_body_bytes: Option<usize>,
    /// Ledger database path (default `$TANDEM_HOME/ledger.sqlite`); `off` disables it.
    pub ledger: Option<String>,
    /// Also store the classifier's embedding of each chat request's last user message in
    /// the ledger (off by default), so that `tandem router train --ledger` can learn from
    /// users' ratings (`POST /v1/tandem/feedback`). Needs the classifier's embedding model.
    pub ledger_vectors: Option<Spanned<bool>>,
}

/// Engine settings (`engine:` and per local model).
#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Generation threads.
    pub threads: Option<usize>,
    /// Prompt-processing threads.
    pub threads_batch: Option<usize>,
    /// KV cache size in tokens.
    pub ctx_size: Option<u32>,
    /// Sequences decoded together.
    pub parallel: Option<u32>,
    /// Logical batch size.
    pub batch_size: Option<u32>,
    /// Waiting requests before 429.
    pub max_queue: Option<usize>,
    /// Reuse KV prefixes across requests.
    pub prompt_cache: Option<bool>,
}

/// Price in USD per 1M tokens.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per 1M input (prompt) tokens.
    #[serde(default)]
    pub input: f64,
    /// Per 1M output (completion) tokens.
    #[serde(default)]
    pub output: f64,
}

impl Price {
    /// Cost of one call in USD.
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        (f64::from(prompt_tokens) * self.input + f64::from(completion_tokens) * self.output)
            / 1_000_000.0
    }
}

/// One entry of `models:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Id clients and rules use.
    pub name: Spanned<String>,
    /// Local model: catalog name or file/directory path.
    pub local: Option<Spanned<String>>,
    /// Remote model: `openai` (any OpenAI-compatible server) or `anthropic`.
    pub provider: Option<Spanned<String>>,
    /// Remote base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<Spanned<String>>,
    /// Remote API key, normally `${ENV_VAR}`.
    pub api_key: Option<Spanned<String>>,
    /// Upstream model id (default: `name`).
    pub model: Option<String>,
    /// Extra request headers (values may use `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// USD per 1M tokens.
    pub price: Option<Price>,
    /// Remote: total time for a response / until the first streamed chunk.
    pub timeout_ms: Option<u64>,
    /// Remote: connection timeout.
    pub connect_timeout_ms: Option<u64>,
    /// Remote: longest gap between streamed chunks.
    pub idle_timeout_ms: Option<u64>,
    /// Remote: retries after the first attempt.
    pub retries: Option<u32>,
    /// Remote: consecutive failures that open the circuit breaker.
    pub breaker_failures: Option<u32>,
    /// Remote: how long the breaker stays open before probing.
    pub breaker_cooldown_ms: Option<u64>,
    /// Anthropic: `max_tokens` when the request sets none.
    pub default_max_tokens: Option<u32>,
    /// Models to try, in order, when this one fails.
    #[serde(default)]
    pub fallback: Vec<Spanned<String>>,
    /// Local: engine overrides.
    pub engine: Option<EngineSection>,
}

/// One entry of `api_keys:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Name used in rules (`api_key: [name]`) and in the ledger.
    pub name: Spanned<String>,
    /// The key, normally `${ENV_VAR}`.
    pub key: Spanned<String>,
    /// Tenant the key belongs to.
    pub tenant: Option<String>,
}

/// `policy:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Local model that answers when PII forces a request to stay local.
    pub local_model: Option<Spanned<String>>,
    /// The "large" model: cascade escalation default and the savings baseline.
    pub llm_model: Option<Spanned<String>>,
    /// Reject requests without a known API key.
    pub require_api_key: Option<bool>,
    /// Let clients name a model directly (default true); rules with `direct: true` still apply.
    pub allow_direct: Option<bool>,
    /// PII guard settings.
    #[serde(default)]
    pub pii: RawPii,
    /// Task classifier settings.
    #[serde(default)]
    pub classifier: RawClassifier,
    /// Learned router file (`tandem router train`): enables `slm_win_probability`
    /// conditions. It reads the classifier's embeddings, so it needs
    /// `policy.classifier.embedding_model` (the model it was trained with).
    pub router: Option<Spanned<String>>,
    /// The script of answers: `auto` (default: zh-TW for a request in Traditional Chinese),
    /// `zh-TW` or `off`; a tenant's or a route's `answer_script` wins over it.
    pub answer_script: Option<Spanned<String>>,
    /// Settings per tenant (the tenant of the API key, or the `x-tandem-tenant` header).
    #[serde(default)]
    pub tenants: BTreeMap<String, RawTenant>,
}

/// `policy.tenants.NAME:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// The script of this tenant's answers (see `policy.answer_script`).
    pub answer_script: Option<Spanned<String>>,
}

/// `policy.pii:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPii {
    /// Kinds to detect (default: all).
    pub detect: Option<OneOrMany>,
    /// What to do when a request with PII would leave the machine (default `mask`).
    pub action: Option<Spanned<String>>,
}

/// `policy.classifier:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    /// Embedding model for similarity to the examples (a local embedding model's name).
    pub embedding_model: Option<Spanned<String>>,
    /// Extra examples per category.
    #[serde(default)]
    pub examples: BTreeMap<String, Vec<String>>,
    /// Extra keywords per category.
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
    /// Extra regexes per category.
    #[serde(default)]
    pub patterns: BTreeMap<String, Vec<String>>,
    /// Similarity below which the category is `general`.
    pub min_score: Option<f32>,
    /// Load the built-in examples and keywords (default true).
    pub builtin: Option<bool>,
}

/// A numeric range; either bound may be absent. Bounds are inclusive.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Smallest value that matches.
    pub min: Option<f64>,
    /// Largest value that matches.
    pub max: Option<f64>,
}

impl Range {
    /// Whether `v` lies in the range.
    pub fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// A rule's `when:` (every field given must match; `all`/`any`/`not` nest).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// Requested model name(s).
    pub model: Option<OneOrMany>,
    /// Task category (any of).
    pub category: Option<OneOrMany>,
    /// Lowest classifier score for `category` to count.
    pub min_score: Option<f32>,
    /// Case-insensitive substrings (any of).
    pub keywords: Option<OneOrMany>,
    /// Regular expression(s) (any of).
    pub regex: Option<OneOrMany>,
    /// Text the keywords/regexes look at: `last_user` (default) or `conversation`.
    pub scope: Option<Spanned<String>>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<Range>,
    /// PII found: `any` or kinds (any of).
    pub pii: Option<OneOrMany>,
    /// Request headers: name → regex the value must match.
    pub header: Option<BTreeMap<String, Spanned<String>>>,
    /// API key name(s).
    pub api_key: Option<OneOrMany>,
    /// Tenant(s).
    pub tenant: Option<OneOrMany>,
    /// Latency budget from `x-tandem-latency-budget-ms`.
    pub latency_budget_ms: Option<Range>,
    /// The learned router's probability that the SLM's answer is good enough (needs
    /// `router.file`).
    pub slm_win_probability: Option<Range>,
    /// `true`: the request offers tools the model may call (`tool_choice` not `none`);
    /// `false`: it offers none.
    pub tools: Option<bool>,
    /// `true`: the answer must be JSON (`response_format` / `text.format` JSON object or
    /// schema); `false`: free text.
    pub structured_output: Option<bool>,
    /// Every sub-condition matches.
    pub all: Option<Vec<RawCondition>>,
    /// At least one sub-condition matches.
    pub any: Option<Vec<RawCondition>>,
    /// The sub-condition does not match.
    pub not: Option<Box<RawCondition>>,
}

/// A rule's `then:` — exactly one of `model`, `cascade`, `reject`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// Answer with this model.
    pub model: Option<Spanned<String>>,
    /// SLM first, LLM when unsure.
    pub cascade: Option<RawCascade>,
    /// Refuse with a message.
    pub reject: Option<RawReject>,
    /// Answer from a knowledge base.
    pub rag: Option<RawRagAction>,
}

/// `then.rag:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRagAction {
    /// Knowledge base name.
    pub kb: Spanned<String>,
    /// Mode (default: `rag.knowledge_bases.NAME.mode`, then `rag.mode`).
    pub mode: Option<Spanned<String>>,
    /// Chunks retrieved (default `rag.top_k`).
    pub top_k: Option<usize>,
}

/// `then.cascade:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCascade {
    /// First model (default `policy.local_model`).
    pub slm: Option<Spanned<String>>,
    /// Escalation model (default `policy.llm_model`).
    pub llm: Option<Spanned<String>>,
    /// Escalate when the mean token log-probability is below this (default −0.8).
    pub min_mean_logprob: Option<f32>,
    /// Escalate when any token's log-probability is below this (default: off).
    pub min_token_logprob: Option<f32>,
    /// Escalate when the mean top-k entropy (nats) is above this (default: off).
    pub max_mean_entropy: Option<f32>,
    /// Escalate when the SLM says it does not know (default true).
    pub escalate_on_refusal: Option<bool>,
    /// Cap on the SLM's answer length in the cascade.
    pub slm_max_tokens: Option<u32>,
}

/// `then.reject:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReject {
    /// Message for the client.
    pub message: Option<String>,
    /// HTTP status (default 403).
    pub status: Option<u16>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Rule name (shown in `x-tandem-route`, explain, ledger, metrics).
    pub name: Spanned<String>,
    /// Conditions; absent means always.
    pub when: Option<RawCondition>,
    /// Action.
    pub then: Spanned<RawActionWrapper>,
    /// PII action on this route when the answer would leave the machine.
    pub pii: Option<Spanned<String>>,
    /// Also apply to requests that name a model directly.
    pub direct: Option<bool>,
    /// The script of this route's answers (see `policy.answer_script`).
    pub answer_script: Option<Spanned<String>>,
    /// Human note.
    pub description: Option<String>,
}

/// Wrapper so the action keeps its span.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct RawActionWrapper(pub RawAction);

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// Where a model runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// In-process: catalog name or path.
    Local {
        /// Catalog name or path.
        source: String,
        /// Engine overrides.
        engine: EngineSection,
    },
    /// A remote upstream.
    Remote(RemoteModel),
}

/// Remote upstream kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Any OpenAI-compatible server.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
}

/// A remote model's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteModel {
    /// Kind of API.
    pub provider: Provider,
    /// Base URL.
    pub base_url: String,
    /// API key.
    pub api_key: Option<Secret>,
    /// Upstream model id.
    pub model: String,
    /// Extra headers (values resolved).
    pub headers: Vec<(String, Secret)>,
    /// Timeouts, retries, breaker.
    pub timeout_ms: Option<u64>,
    /// Connection timeout.
    pub connect_timeout_ms: Option<u64>,
    /// Idle stream timeout.
    pub idle_timeout_ms: Option<u64>,
    /// Retries.
    pub retries: Option<u32>,
    /// Breaker threshold.
    pub breaker_failures: Option<u32>,
    /// Breaker cooldown.
    pub breaker_cooldown_ms: Option<u64>,
    /// Anthropic default max_tokens.
    pub default_max_tokens: Option<u32>,
}

/// A configured model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Served id.
    pub name: String,
    /// Where it runs.
    pub source: ModelSource,
    /// Price (zero when not given).
    pub price: Price,
    /// Fallback chain.
    pub fallback: Vec<String>,
}

impl ModelSpec {
    /// Whether the model runs in-process.
    pub fn is_local(&self) -> bool {
        matches!(self.source, ModelSource::Local { .. })
    }
}

/// What to do with PII when the answer would come from a remote model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    /// Answer with the local model instead.
    ForceLocal,
    /// Refuse the request.
    Block,
    /// Replace values with placeholders before sending; restore them in the answer.
    Mask,
    /// Send as is (logged).
    Allow,
}

impl PiiAction {
    /// Parse the config spelling.
    pub fn parse(s: &str) -> Option<PiiAction> {
        Some(match s {
            "force_local" => PiiAction::ForceLocal,
            "block" => PiiAction::Block,
            "mask" => PiiAction::Mask,
            "allow" => PiiAction::Allow,
            _ => return None,
        })
    }
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiAction::ForceLocal => "force_local",
            PiiAction::Block => "block",
            PiiAction::Mask => "mask",
            PiiAction::Allow => "allow",
        }
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Listener settings.
    pub server: ServerSection,
    /// Engine defaults.
    pub engine: EngineSection,
    /// Models in file order.
    pub models: Vec<ModelSpec>,
    /// Requested name → `None` (the policy) or `Some(model)`.
    pub aliases: BTreeMap<String, Option<String>>,
    /// API key → (name, tenant).
    pub api_keys: Vec<(Secret, String, Option<String>)>,
    /// Local model for `force_local`.
    pub local_model: Option<String>,
    /// Large model (cascade default, savings baseline).
    pub llm_model: Option<String>,
    /// Reject requests without a known key.
    pub require_api_key: bool,
    /// Clients may name models directly.
    pub allow_direct: bool,
    /// PII kinds detected.
    pub pii_kinds: Vec<PiiKind>,
    /// Default PII action.
    pub pii_action: PiiAction,
    /// Embedding model for the classifier (None: keyword-only classification).
    pub embedding_model: Option<String>,
    /// Classifier settings.
    pub classifier: ClassifierConfig,
    /// Compiled rules.
    pub routes: Vec<crate::rules::Route>,
    /// Knowledge-base answers.
    pub rag: RagSettings,
    /// Learned router file (`policy.router`).
    pub router: Option<String>,
    /// `policy.answer_script`.
    pub answer_script: crate::script::ScriptSetting,
    /// `policy.tenants.NAME.answer_script`.
    pub tenant_scripts: BTreeMap<String, crate::script::ScriptSetting>,
}

impl Config {
    /// A configuration with no models and no rules.
    pub fn empty() -> Config {
        Config {
            server: ServerSection::default(),
            engine: EngineSection::default(),
            models: Vec::new(),
            aliases: BTreeMap::from([("auto".to_string(), None)]),
            api_keys: Vec::new(),
            local_model: None,
            llm_model: None,
            require_api_key: false,
            allow_direct: true,
            pii_kinds: PiiKind::ALL.to_vec(),
            pii_action: PiiAction::Mask,
            embedding_model: None,
            classifier: ClassifierConfig::default(),
            routes: Vec::new(),
            rag: RagSettings::default(),
            router: None,
            answer_script: crate::script::ScriptSetting::Auto,
            tenant_scripts: BTreeMap::new(),
        }
    }

    /// The model named `name`.
    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Where a span starts, as (line, column).
pub(crate) fn pos(span: &marked_yaml::Span) -> (usize, usize) {
    span.start()
        .map(|m| (m.line(), m.column()))
        .unwrap_or((0, 0))
}

/// Collects issues during validation.
#[derive(Default)]
pub(crate) struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    pub(crate) fn at(&mut self, span: &marked_yaml::Span, message: impl Into<String>) {
        let (line, column) = pos(span);
        self.0.push(ConfigIssue {
            line,
            column,
            message: message.into(),
        });
    }
}

/// Replace `${VAR}` with the environment's value (via `env`); unset variables are errors.
pub fn substitute_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            return Err("unterminated `${` (write `${VAR}`)".into());
        };
        let var = &after[..j];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{var}}}` is not a valid environment variable name"
            ));
        }
        match env(var) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable `{var}` is not set")),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn process_env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Parse and validate a configuration, reading `${VAR}`s from the process environment.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, &process_env)
}

/// Parse and validate with an explicit environment (for tests).
pub fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = parse_raw(text)?;
    validate(raw, env)
}

/// Parse the YAML only (syntax and shape), with line numbers.
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let opts = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    marked_yaml::from_yaml_with_options::<RawConfig>(0, text, opts).map_err(|e| {
        let (line, column, message) = match &e {
            marked_yaml::FromYamlError::ParseYaml(le) => {
                let m = load_error_marker(le);
                (m.0, m.1, le.to_string())
            }
            marked_yaml::FromYamlError::FromNode(ne) => {
                let (mut l, mut c) = ne
                    .start_mark()
                    .map(|m| (m.line(), m.column()))
                    .unwrap_or((0, 0));
                let message = match ne.path() {
                    Some(p) => format!("{p}: {ne}"),
                    None => ne.to_string(),
                };
                if l == 0
                    && let Some((fl, fc)) = unknown_field_position(text, &message)
                {
                    (l, c) = (fl, fc);
                }
                (l, c, message)
            }
        };
        ConfigError {
            issues: vec![ConfigIssue {
                line,
                column,
                message: strip_position(&message),
            }],
        }
    })
}

/// The loader does not keep the position of an unknown key; find its first occurrence as a
/// mapping key in the text.
fn unknown_field_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let rest = message.strip_prefix("Unknown field `")?;
    let field = &rest[..rest.find('`')?];
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - trimmed.len();
        if let Some(after) = trimmed.strip_prefix(field)
            && after.trim_start().starts_with(':')
        {
            return Some((i + 1, indent + 1));
        }
        // Flow mappings: `{a: 1, colour: 2}`.
        if let Some(pos) = line.find(&format!("{field}:"))
            && line[..pos].trim_end().ends_with(['{', ','])
        {
            return Some((i + 1, pos + 1));
        }
    }
    None
}

fn strip_position(m: &str) -> String {
    m.trim().to_string()
}

fn load_error_marker(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError as L;
    let m = match e {
        L::TopLevelMustBeMapping(m)
        | L::TopLevelMustBeSequence(m)
        | L::UnexpectedAnchor(m)
        | L::MappingKeyMustBeScalar(m)
        | L::UnexpectedTag(m)
        | L::ScanError(m, _) => Some(*m),
        L::DuplicateKey(d) => d.key.span().start().copied(),
    };
    m.map(|m| (m.line(), m.column())).unwrap_or((0, 0))
}

fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut issues = Issues::default();
    let mut models: Vec<ModelSpec> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &raw.models {
        let name = m.name.as_str();
        if name.is_empty() || name == "auto" || name.starts_with("kb:") {
            issues.at(m.name.span(), format!("`{name}` cannot be a model name"));
        }
        if !seen.insert(name.to_string()) {
            issues.at(m.name.span(), format!("model `{name}` is defined twice"));
        }
        let source = match (&m.local, &m.provider) {
            (Some(_), Some(p)) => {
                issues.at(
                    p.span(),
                    format!("model `{name}`: give either `local` or `provider`, not both"),
                );
                continue;
            }
            (None, None) => {
                issues.at(m.name.span(), format!("model `{name}`: needs `local: <catalog name or path>` or `provider: openai|anthropic`"));
                continue;
            }
            (Some(l), None) => {
                for (field, given) in [
                    ("base_url", m.base_url.is_some()),
                    ("api_key", m.api_key.is_some()),
                    ("timeout_ms", m.timeout_ms.is_some()),
                    ("retries", m.retries.is_some()),
                ] {
                    if given {
                        issues.at(
                            m.name.span(),
                            format!("model `{name}`: `{field}` only applies to remote models"),
                        );
                    }
                }
                ModelSource::Local {
                    source: l.to_string(),
                    engine: m.engine.clone().unwrap_or_default(),
                }
            }
            (None, Some(p)) => {
                let provider = match p.as_str() {
                    "openai" | "openai_compatible" => Provider::OpenAi,
                    "anthropic" => Provider::Anthropic,
                    other => {
                        issues.at(p.span(), format!("model `{name}`: unknown provider `{other}` (use `openai` or `anthropic`)"));
                        continue;
                    }
                };
                if m.engine.is_some() {
                    issues.at(
                        p.span(),
                        format!("model `{name}`: `engine` only applies to local models"),
                    );
                }
                let base_url = match &m.base_url {
                    Some(u) => match substitute_env(u, env) {
                        Ok(v) if v.starts_with("http://") || v.starts_with("https://") => {
                            v.trim_end_matches('/').to_string()
                        }
                        Ok(v) => {
                            issues.at(u.span(), format!("model `{name}`: base_url `{v}` must start with http:// or https://"));
                            continue;
                        }
                        Err(e) => {
                            issues.at(u.span(), format!("model `{name}`: base_url: {e}"));
                            continue;
                        }
                    },
                    None => match provider {
                        Provider::OpenAi => {
                            issues.at(
                                p.span(),
                                format!("model `{name}`: remote models need `base_url`"),
                            );
                            continue;
                        }
                        Provider::Anthropic => "https://api.anthropic.com".to_string(),
                    },
                };
                let api_key = match &m.api_key {
                    Some(k) => match substitute_env(k, env) {
                        Ok(v) if v.is_empty() => {
                            issues.at(k.span(), format!("model `{name}`: api_key is empty"));
                            None
                        }
                        Ok(v) => Some(Secret(v)),
                        Err(e) => {
                            issues.at(k.span(), format!("model `{name}`: api_key: {e}"));
                            None
                        }
                    },
                    None => None,
                };
                let mut headers = Vec::new();
                for (h, v) in &m.headers {
                    match substitute_env(v, env) {
                        Ok(val) => headers.push((h.clone(), Secret(val))),
                        Err(e) => issues.at(v.span(), format!("model `{name}`: header `{h}`: {e}")),
                    }
                }
                ModelSource::Remote(RemoteModel {
                    provider,
                    base_url,
                    api_key,
                    model: m.model.clone().unwrap_or_else(|| name.to_string()),
                    headers,
                    timeout_ms: m.timeout_ms,
                    connect_timeout_ms: m.connect_timeout_ms,
                    idle_timeout_ms: m.idle_timeout_ms,
                    retries: m.retries,
                    breaker_failures: m.breaker_failures,
                    breaker_cooldown_ms: m.breaker_cooldown_ms,
                    default_max_tokens: m.default_max_tokens,
                })
            }
        };
        let price = m.price.unwrap_or_default();
        if price.input < 0.0
            || price.output < 0.0
            || !price.input.is_finite()
            || !price.output.is_finite()
        {
            issues.at(
                m.name.span(),
                format!("model `{name}`: prices must be non-negative numbers"),
            );
        }
        models.push(ModelSpec {
            name: name.to_string(),
            source,
            price,
            fallback: m.fallback.iter().map(|f| f.to_string()).collect(),
        });
    }
    let names: BTreeSet<String> = raw.models.iter().map(|m| m.name.to_string()).collect();
    let check_model = |issues: &mut Issues, s: &Spanned<String>, what: &str| {
        if !names.contains(s.as_str()) {
            issues.at(
                s.span(),
                format!(
                    "{what}: unknown model `{}` (defined: {})",
                    s.as_str(),
                    names.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    };
    for m in &raw.models {
        for f in &m.fallback {
            check_model(
                &mut issues,
                f,
                &format!("model `{}` fallback", m.name.as_str()),
            );
            if f.as_str() == m.name.as_str() {
                issues.at(
                    f.span(),
                    format!("model `{}` cannot fall back to itself", m.name.as_str()),
                );
            }
        }
    }
    let mut aliases = BTreeMap::new();
    aliases.insert("auto".to_string(), None);
    for (k, v) in &raw.aliases {
        if v.as_str() == "policy" {
            aliases.insert(k.clone(), None);
        } else {
            check_model(&mut issues, v, &format!("alias `{k}`"));
            if names.contains(k) {
                issues.at(
                    v.span(),
                    format!("alias `{k}` shadows a model of the same name"),
                );
            }
            aliases.insert(k.clone(), Some(v.to_string()));
        }
    }
    let mut api_keys = Vec::new();
    for k in &raw.api_keys {
        match substitute_env(&k.key, env) {
            Ok(v) if v.len() >= 8 => {
                api_keys.push((Secret(v), k.name.to_string(), k.tenant.clone()))
            }
            Ok(_) => issues.at(
                k.key.span(),
                format!("api key `{}` is shorter than 8 characters", k.name.as_str()),
            ),
            Err(e) => issues.at(k.key.span(), format!("api key `{}`: {e}", k.name.as_str())),
        }
    }
    let local_names: BTreeSet<String> = models
        .iter()
        .filter(|m| m.is_local())
        .map(|m| m.name.clone())
        .collect();
    let local_model = match &raw.policy.local_model {
        Some(s) => {
            check_model(&mut issues, s, "policy.local_model");
            if names.contains(s.as_str()) && !local_names.contains(s.as_str()) {
                issues.at(
                    s.span(),
                    format!("policy.local_model `{}` is not a local model", s.as_str()),
                );
            }
            Some(s.to_string())
        }
        None => None,
    };
    let llm_model = raw.policy.llm_model.as_ref().map(|s| {
        check_model(&mut issues, s, "policy.llm_model");
        s.to_string()
    });
    let pii_kinds = match &raw.policy.pii.detect {
        None => PiiKind::ALL.to_vec(),
        Some(list) => {
            let mut v = Vec::new();
            for k in &list.0 {
                match PiiKind::parse(k) {
                    Some(kind) => v.push(kind),
                    None => issues.at(
                        k.span(),
                        format!(
                            "unknown PII kind `{}` (known: {})",
                            k.as_str(),
                            pii_kind_list()
                        ),
                    ),
                }
            }
            v
        }
    };
    let pii_action =
        parse_pii_action(&mut issues, raw.policy.pii.action.as_ref()).unwrap_or(PiiAction::Mask);
    let embedding_model = raw.policy.classifier.embedding_model.as_ref().map(|s| {
        check_model(&mut issues, s, "policy.classifier.embedding_model");
        s.to_string()
    });
    let c = &raw.policy.classifier;
    let classifier = ClassifierConfig {
        examples: c.examples.clone(),
        keywords: c.keywords.clone(),
        patterns: c.patterns.clone(),
        min_score: c.min_score,
        builtin: c.builtin,
    };
    if let Err(e) = crate::classify::Classifier::keywords_only(&classifier) {
        issues.0.push(ConfigIssue {
            line: 0,
            column: 0,
            message: format!("policy.classifier: {e}"),
        });
    }
    let rag = compile_rag(
        &raw.rag,
        &mut issues,
        &local_model,
        &llm_model,
        &models,
        check_model,
    );
    let ctx = crate::rules::CompileCtx {
        models: &names,
        local_model: local_model.as_deref(),
        llm_model: llm_model.as_deref(),
        rag: &rag,
    };
    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    for r in &raw.routes {
        if !route_names.insert(r.name.to_string()) {
            issues.at(
                r.name.span(),
                format!("route `{}` is defined twice", r.name.as_str()),
            );
        }
        let pii = parse_pii_action(&mut issues, r.pii.as_ref());
        let script = parse_answer_script(
            &mut issues,
            r.answer_script.as_ref(),
            &format!("route `{}`", r.name.as_str()),
        );
        if let Some(mut route) = crate::rules::compile_route(r, pii, &ctx, &mut issues) {
            route.answer_script = script;
            routes.push(route);
        }
    }
    let answer_script = parse_answer_script(
        &mut issues,
        raw.policy.answer_script.as_ref(),
        "policy.answer_script",
    )
    .unwrap_or_default();
    let mut tenant_scripts = BTreeMap::new();
    for (name, t) in &raw.policy.tenants {
        let what = format!("policy.tenants.{name}.answer_script");
        if let Some(s) = parse_answer_script(&mut issues, t.answer_script.as_ref(), &what) {
            tenant_scripts.insert(name.clone(), s);
        }
    }
    let router = raw.policy.router.as_ref().map(|r| r.to_string());
    if let Some(r) = &raw.policy.router
        && embedding_model.is_none()
    {
        issues.at(
            r.span(),
            "policy.router needs policy.classifier.embedding_model: the router reads the \
             classifier's embeddings",
        );
    }
    if let Some(v) = &raw.server.ledger_vectors
        && **v
        && embedding_model.is_none()
    {
        issues.at(
            v.span(),
            "server.ledger_vectors needs policy.classifier.embedding_model: the vectors are \
             the classifier's embeddings",
        );
    }
    for route in &routes {
        if let Some(raw_route) = raw.routes.iter().find(|r| r.name.as_str() == route.name)
            && route.uses_router()
            && router.is_none()
        {
            issues.at(
                raw_route.name.span(),
                format!(
                    "route `{}` uses slm_win_probability but no learned router is configured \
                     (policy.router: FILE from `tandem router train`)",
                    route.name
                ),
            );
        }
    }
    if issues.0.is_empty() {
        Ok(Config {
            server: raw.server,
            engine: raw.engine,
            models,
            aliases,
            api_keys,
            local_model,
            llm_model,
            require_api_key: raw.policy.require_api_key.unwrap_or(false),
            allow_direct: raw.policy.allow_direct.unwrap_or(true),
            pii_kinds,
            pii_action,
            embedding_model,
            classifier,
            routes,
            rag,
            router,
            answer_script,
            tenant_scripts,
        })
    } else {
        issues.0.sort_by_key(|i| (i.line == 0, i.line, i.column));
        Err(ConfigError { issues: issues.0 })
    }
}

fn parse_mode(issues: &mut Issues, m: &Spanned<String>, what: &str) -> Option<tandem_rag::Mode> {
    match m.as_str().parse::<tandem_rag::Mode>() {
        Ok(m) => Some(m),
        Err(e) => {
            issues.at(m.span(), format!("{what}: {e}"));
            None
        }
    }
}

fn compile_rag(
    raw: &RawRag,
    issues: &mut Issues,
    local_model: &Option<String>,
    llm_model: &Option<String>,
    models: &[ModelSpec],
    mut check_model: impl FnMut(&mut Issues, &Spanned<String>, &str),
) -> RagSettings {
    let d = RagSettings::default();
    // The default knowledge-base SLM: the first local *chat* model (an embedding model listed
    // first, as the classifier's, cannot answer).
    let local_chat = |m: &&ModelSpec| match &m.source {
        ModelSource::Local { source, .. } => match tandem_models::catalog::find(source) {
            Some(e) => e.kind == tandem_models::catalog::ModelKind::Chat,
            None => source.to_ascii_lowercase().ends_with(".gguf"),
        },
        _ => false,
    };
    let first_local = || models.iter().find(local_chat).map(|m| m.name.clone());
    let slm = match &raw.slm {
        Some(s) => {
            check_model(issues, s, "rag.slm");
            s.to_string()
        }
        None => local_model.clone().or_else(first_local).unwrap_or_default(),
    };
    let llm = match &raw.llm {
        Some(s) => {
            check_model(issues, s, "rag.llm");
            s.to_string()
        }
        None => llm_model.clone().unwrap_or_default(),
    };
    let mode = raw
        .mode
        .as_ref()
        .and_then(|m| parse_mode(issues, m, "rag.mode"))
        .unwrap_or(d.mode);
    let mut bases = BTreeMap::new();
    for (name, kb) in &raw.knowledge_bases {
        if !valid_kb_name(name) {
            issues.0.push(ConfigIssue {
                line: 0,
                column: 0,
                message: format!(
                    "rag.knowledge_bases: `{name}` is not a valid knowledge base name (letters, digits, `-` and `_`, at most 64)"
                ),
            });
        }
        if let Some(m) = kb
            .mode
            .as_ref()
            .and_then(|m| parse_mode(issues, m, &format!("rag.knowledge_bases.{name}.mode")))
        {
            bases.insert(name.clone(), m);
        }
    }
    let mut bounded = |v: Option<usize>, def: usize, lo: usize, hi: usize, what: &str| match v {
        Some(v) if !(lo..=hi).contains(&v) => {
            issues.0.push(ConfigIssue {
                line: 0,
                column: 0,
                message: format!("{what} must be {lo} to {hi}, got {v}"),
            });
            def
        }
        Some(v) => v,
        None => def,
    };
    let top_k = bounded(raw.top_k, d.top_k, 1, 50, "rag.top_k");
    let drafts = bounded(raw.drafts, d.drafts, 1, 8, "rag.drafts");
    let compress_max_tokens = bounded(
        raw.compress_max_tokens,
        d.compress_max_tokens,
        32,
        8192,
        "rag.compress_max_tokens",
    );
    let max_answer_tokens = bounded(
        raw.max_answer_tokens.map(|v| v as usize),
        d.max_answer_tokens as usize,
        16,
        4096,
        "rag.max_answer_tokens",
    ) as u32;
    let embedding_model = raw.embedding_model.as_ref().map(|s| {
        check_model(issues, s, "rag.embedding_model");
        s.to_string()
    });
    let escalate = raw.escalate.unwrap_or(d.escalate);
    if !(0.0..=1.0).contains(&escalate.min_support) {
        issues.0.push(ConfigIssue {
            line: 0,
            column: 0,
            message: "rag.escalate.min_support must be between 0 and 1".into(),
        });
    }
    RagSettings {
        slm,
        llm,
        mode,
        top_k,
        drafts,
        compress_max_tokens,
        max_answer_tokens,
        escalate,
        bases,
        embedding_model,
    }
}

fn pii_kind_list() -> String {
    PiiKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validates one `answer_script:` value.
fn parse_answer_script(
    issues: &mut Issues,
    s: Option<&Spanned<String>>,
    what: &str,
) -> Option<crate::script::ScriptSetting> {
    let s = s?;
    let parsed = crate::script::ScriptSetting::parse(s);
    if parsed.is_none() {
        issues.at(
            s.span(),
            format!(
                "{what}: unknown answer script `{}` (use auto, zh-TW or off)",
                s.as_str()
            ),
        );
    }
    parsed
}

fn parse_pii_action(issues: &mut Issues, s: Option<&Spanned<String>>) -> Option<PiiAction> {
    let s = s?;
    match PiiAction::parse(s) {
        Some(a) => Some(a),
        None => {
            issues.at(
                s.span(),
                format!(
                    "unknown PII action `{}` (use force_local, block, mask or allow)",
                    s.as_str()
                ),
            );
            None
        }
    }
}
