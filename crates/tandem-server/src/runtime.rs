//! The routing runtime: a validated configuration together with what it needs to run —
//! remote upstream clients, the task classifier, the PII detector. Built once at start and
//! again on every reload; the server swaps it atomically, so a request sees one
//! configuration from start to end and a failed reload changes nothing.

use crate::state::EmbedModel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tandem_embed::{Embedder, WeightPrecision};
use tandem_engine::Engine;
use tandem_eval::knn::LearnedRouter;
use tandem_policy::classify::{Classifier, TextEmbedder, embed_window};
use tandem_policy::config::{ModelSource, Provider, RemoteModel};
use tandem_policy::pii::Detector;
use tandem_policy::{Action, Config};
use tandem_providers::{ProviderKind, Secret, Upstream, UpstreamConfig};

/// Weight precision of the embedding model used by the task classifier. Int8 weights make
/// the classifier's MiniLM forward pass over a ~20-token window about twice as fast as
/// f32 (see docs/benchmarks.md), for the same accuracy on the classifier's evaluation sets;
/// `/v1/embeddings` keeps the exact f32 model (see [`EmbedModel`]).
pub const CLASSIFIER_WEIGHTS: WeightPrecision = WeightPrecision::Int8;

/// [`TextEmbedder`] over a loaded MiniLM.
pub struct EmbedAdapter(pub Arc<Embedder>);

impl TextEmbedder for EmbedAdapter {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.0
            .embed(texts)
            .map(|o| o.vectors)
            .map_err(|e| e.to_string())
    }
}

/// Remembers the vectors of the last few single texts embedded, so that the classifier and
/// the learned router — which embed the same window of a request's last user message — pay
/// for one forward pass between them. Batches (the classifier's examples) pass through.
pub struct RecentEmbeddings<E> {
    inner: E,
    recent: std::sync::Mutex<std::collections::VecDeque<(String, Vec<f32>)>>,
    capacity: usize,
}

impl<E> RecentEmbeddings<E> {
    /// Keeps the last `capacity` single-text results.
    pub fn new(inner: E, capacity: usize) -> Self {
        RecentEmbeddings {
            inner,
            recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(String, Vec<f32>)>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<E: TextEmbedder> TextEmbedder for RecentEmbeddings<E> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let [text] = texts else {
            return self.inner.embed(texts);
        };
        if let Some((_, v)) = self.recent().iter().find(|(t, _)| t == text) {
            return Ok(vec![v.clone()]);
        }
        let out = self.inner.embed(texts)?;
        if let Some(v) = out.first() {
            let mut recent = self.recent();
            if recent.len() >= self.capacity {
                recent.pop_front();
            }
            recent.push_back(((*text).to_owned(), v.clone()));
        }
        Ok(out)
    }
}

/// Single texts remembered by the classifier's embedder (requests in flight at once).
const RECENT_EMBEDDINGS: usize = 64;

/// A remote model's client, with the settings it was built from (to reuse it across reloads
/// when they do not change, keeping its circuit-breaker state).
pub struct RemoteEntry {
    /// Settings.
    pub spec: RemoteModel,
    /// Client.
    pub upstream: Arc<Upstream>,
}

/// Everything a request needs from the configuration.
pub struct Runtime {
    /// The validated configuration.
    pub config: Config,
    /// Remote models by name.
    pub remotes: BTreeMap<String, RemoteEntry>,
    /// Task classifier.
    pub classifier: Arc<Classifier>,
    /// PII detector for the configured kinds.
    pub detector: Detector,
    /// Some rule looks at the task category (decisions then run off the async threads).
    pub needs_category: bool,
    /// Reload counter (0 for the first configuration).
    pub generation: u64,
    /// The learned router (`policy.router`) with the classifier's embedder it reads.
    pub router: Option<(Arc<LearnedRouter>, Arc<dyn TextEmbedder>)>,
    /// The classifier's embedder (model name, embedder), shared with the router and kept
    /// across reloads.
    pub shared_embedder: Option<(String, Arc<dyn TextEmbedder>)>,
}

/// Upstream client settings from a remote model's configuration.
pub fn upstream_config(name: &str, r: &RemoteModel) -> UpstreamConfig {
    let kind = match r.provider {
        Provider::OpenAi => ProviderKind::OpenAi,
        Provider::Anthropic => ProviderKind::Anthropic,
    };
    let mut c = UpstreamConfig::new(name, kind, &r.base_url, &r.model);
    c.api_key = r.api_key.as_ref().map(|k| Secret::new(k.expose()));
    c.headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_string()))
        .collect();
    if let Some(ms) = r.timeout_ms {
        c.request_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = r.connect_timeout_ms {
        c.connect_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = r.idle_timeout_ms {
        c.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = r.retries {
        c.max_retries = n;
    }
    if let Some(n) = r.breaker_failures {
        c.breaker_failures = n;
    }
    if let Some(ms) = r.breaker_cooldown_ms {
        c.breaker_cooldown = Duration::from_millis(ms);
    }
    if let Some(n) = r.default_max_tokens {
        c.anthropic_max_tokens = n;
    }
    c
}

impl Runtime {
    /// Build the runtime for `config` over the loaded models. Fails (with every reason) when
    /// the configuration needs a local model that is not loaded or uses a model for a job
    /// it cannot do. `previous` lets a reload keep upstream clients and classifier vectors.
    pub fn build(
        config: Config,
        chat: &BTreeMap<String, Engine>,
        embed: &BTreeMap<String, EmbedModel>,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, String> {
        Self::build_inner(config, chat, embed, previous, true)
    }

    /// A runtime for deciding only (`tandem route --explain`): local chat models that are not
    /// loaded are taken as they are configured.
    pub fn for_decisions(
        config: Config,
        chat: &BTreeMap<String, Engine>,
        embed: &BTreeMap<String, EmbedModel>,
    ) -> Result<Runtime, String> {
        Self::build_inner(config, chat, embed, None, false)
    }

    fn build_inner(
        config: Config,
        chat: &BTreeMap<String, Engine>,
        embed: &BTreeMap<String, EmbedModel>,
        previous: Option<&Runtime>,
        strict: bool,
    ) -> Result<Runtime, String> {
        let mut problems = Vec::new();
        for m in &config.models {
            if !strict {
                break;
            }
            if let ModelSource::Local { source, .. } = &m.source
                && !chat.contains_key(&m.name)
                && !embed.contains_key(&m.name)
            {
                problems.push(format!(
                    "local model `{}` ({source}) is not loaded; new local models need a restart",
                    m.name
                ));
            }
        }
        let is_chat = |name: &str| {
            chat.contains_key(name)
                || config.model(name).is_some_and(|m| !m.is_local())
                || (!strict && !embed.contains_key(name))
        };
        let mut check_chat = |name: &str, what: &str| {
            if config.model(name).is_some() && !is_chat(name) {
                problems.push(format!("{what}: `{name}` is not a chat model"));
            }
        };
        if let Some(m) = &config.local_model {
            check_chat(m, "policy.local_model");
        }
        if let Some(m) = &config.llm_model {
            check_chat(m, "policy.llm_model");
        }
        let mut rag_without_slm = Vec::new();
        for r in &config.routes {
            match &r.action {
                Action::Model { model } => check_chat(model, &format!("route `{}`", r.name)),
                Action::Cascade(c) => {
                    check_chat(&c.slm, &format!("route `{}` cascade.slm", r.name));
                    check_chat(&c.llm, &format!("route `{}` cascade.llm", r.name));
                }
                Action::Reject { .. } => {}
                Action::Rag(_) => {
                    if config.rag.slm.is_empty() {
                        rag_without_slm.push(r.name.clone());
                    }
                }
            }
        }
        if !config.rag.slm.is_empty() {
            check_chat(&config.rag.slm, "rag.slm");
        }
        if !config.rag.llm.is_empty() {
            check_chat(&config.rag.llm, "rag.llm");
        }
        for (alias, target) in &config.aliases {
            if let Some(t) = target {
                check_chat(t, &format!("alias `{alias}`"));
            }
        }
        for name in rag_without_slm {
            problems.push(format!(
                "route `{name}`: rag needs a local model (rag.slm or policy.local_model)"
            ));
        }
        let mut remotes = BTreeMap::new();
        for m in &config.models {
            if let ModelSource::Remote(r) = &m.source {
                let reused = previous
                    .and_then(|p| p.remotes.get(&m.name))
                    .filter(|e| e.spec == *r)
                    .map(|e| e.upstream.clone());
                let upstream = match reused {
                    Some(u) => u,
                    None => match Upstream::new(upstream_config(&m.name, r)) {
                        Ok(u) => Arc::new(u),
                        Err(e) => {
                            problems.push(format!("model `{}`: {e}", m.name));
                            continue;
                        }
                    },
                };
                remotes.insert(
                    m.name.clone(),
                    RemoteEntry {
                        spec: r.clone(),
                        upstream,
                    },
                );
            }
        }
        // One embedder for the classifier and the learned router (see RecentEmbeddings),
        // kept across reloads while the model stays the same: the classifier reuses the
        // previous example vectors only when it is handed the same embedder.
        let shared: Option<(String, Arc<dyn TextEmbedder>)> = config
            .embedding_model
            .as_ref()
            .and_then(|name| embed.get(name).map(|e| (name, e)))
            .map(
                |(name, e)| match previous.and_then(|p| p.shared_embedder.as_ref()) {
                    Some((prev, a)) if prev == name => (name.clone(), a.clone()),
                    _ => (
                        name.clone(),
                        Arc::new(RecentEmbeddings::new(
                            EmbedAdapter(e.classifier_embedder.clone()),
                            RECENT_EMBEDDINGS,
                        )) as Arc<dyn TextEmbedder>,
                    ),
                },
            );
        let classifier = match &config.embedding_model {
            Some(name) => match (embed.get(name), &shared) {
                (Some(_), Some((_, adapter))) => {
                    let adapter = adapter.clone();
                    Classifier::new(
                        &config.classifier,
                        adapter,
                        previous.map(|p| p.classifier.as_ref()),
                    )
                    .map_err(|e| format!("classifier: {e}"))
                }
                _ => Err(format!(
                    "policy.classifier.embedding_model `{name}` is not a loaded embedding model"
                )),
            },
            None => Classifier::keywords_only(&config.classifier)
                .map_err(|e| format!("classifier: {e}")),
        };
        let classifier = match classifier {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                problems.push(e);
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let Some(classifier) = classifier else {
            return Err("classifier could not be built".into());
        };
        let router = match (&config.router, &config.embedding_model) {
            (Some(file), Some(name)) => {
                let Some(e) = embed.get(name) else {
                    return Err(format!(
                        "policy.router: the embedding model `{name}` is not loaded"
                    ));
                };
                let r = LearnedRouter::load_expecting(
                    std::path::Path::new(file),
                    name,
                    e.classifier_embedder.dim(),
                )
                .map_err(|err| format!("policy.router `{file}`: {err}"))?;
                let adapter = match &shared {
                    Some((_, a)) => a.clone(),
                    None => Arc::new(EmbedAdapter(e.classifier_embedder.clone())),
                };
                Some((Arc::new(r), adapter))
            }
            _ => None,
        };
        let needs_category = config.routes.iter().any(|r| r.needs_category);
        let detector = Detector::with_kinds(&config.pii_kinds);
        Ok(Runtime {
            config,
            remotes,
            classifier,
            detector,
            needs_category,
            generation: previous.map(|p| p.generation + 1).unwrap_or(0),
            router,
            shared_embedder: shared,
        })
    }

    /// The learned router's probability that the SLM answers `text` (the last user message)
    /// well enough: the classifier's embedding of the classifier's window of the text, then
    /// k nearest neighbours. `None` without a router, for empty text, or if embedding fails.
    pub fn slm_win_probability(&self, text: &str) -> Option<f32> {
        let (router, embedder) = self.router.as_ref()?;
        router
            .predict(&window_vector(embedder.as_ref(), text)?)
            .ok()
    }

    /// The classifier's embedding of the classifier's window of `text` (the last user
    /// message), with the embedding model's name: what the ledger stores for learning
    /// (`server.ledger_vectors`). Usually remembered from the request's own classification.
    /// `None` without an embedding model, for empty text, or if embedding fails.
    pub fn request_vector(&self, text: &str) -> Option<(String, Vec<f32>)> {
        let (name, embedder) = self.shared_embedder.as_ref()?;
        Some((name.clone(), window_vector(embedder.as_ref(), text)?))
    }

    /// Whether chat requests' embeddings go to the ledger (`server.ledger_vectors`).
    pub fn ledger_vectors(&self) -> bool {
        self.shared_embedder.is_some()
            && self
                .config
                .server
                .ledger_vectors
                .as_ref()
                .is_some_and(|v| **v)
    }

    /// A configuration serving exactly the loaded models, without routing rules: `auto`
    /// goes to the first chat model. Used when no configuration file is given.
    pub fn local_only_config(chat: &[String], embed: &[String]) -> Config {
        let mut y = String::from("models:\n");
        for n in chat.iter().chain(embed) {
            let q = serde_json::to_string(n).unwrap_or_default();
            y.push_str(&format!("  - name: {q}\n    local: {q}\n"));
        }
        if let Some(first) = chat.first() {
            let q = serde_json::to_string(first).unwrap_or_default();
            y.push_str(&format!("policy:\n  local_model: {q}\n"));
        }
        tandem_policy::config::parse_with_env(&y, &|_| None).unwrap_or_else(|e| {
            // Names are quoted, so this only fails on an internal bug.
            tracing::error!(error = %e, "generated configuration did not validate");
            Config::empty()
        })
    }
}

/// The embedding of the classifier's window of `text`; `None` for empty text or if
/// embedding fails.
fn window_vector(embedder: &dyn TextEmbedder, text: &str) -> Option<Vec<f32>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let window = embed_window(text);
    embedder.embed(&[window.as_ref()]).ok()?.into_iter().next()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl TextEmbedder for Counting {
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    /// A reload with the same embedding model hands the classifier the same embedder, so
    /// that it reuses its example vectors; another model gets a new one.
    #[test]
    fn reload_keeps_the_classifier_embedder() {
        let store = tandem_models::ModelStore::from_env();
        let Ok(m) = store.resolve("minilm-l6") else {
            eprintln!("minilm-l6 not pulled; skipped");
            return;
        };
        let e = EmbedModel::load("minilm-l6", &m.path, 0).unwrap();
        let embed = BTreeMap::from([("minilm-l6".to_owned(), e.clone())]);
        let yaml = "models:\n  - {name: slm, local: smollm2-135m}\n  - {name: minilm-l6, local: minilm-l6}\npolicy:\n  local_model: slm\n  classifier: {embedding_model: minilm-l6}\n";
        let cfg = || tandem_policy::config::parse(yaml).unwrap();
        // Deciding-only runtimes: the chat model need not be loaded.
        let build = |c, e: &BTreeMap<String, EmbedModel>, p| {
            Runtime::build_inner(c, &BTreeMap::new(), e, p, false).unwrap()
        };
        let first = build(cfg(), &embed, None);
        let second = build(cfg(), &embed, Some(&first));
        let ptr = |r: &Runtime| Arc::as_ptr(&r.shared_embedder.as_ref().unwrap().1);
        assert!(std::ptr::addr_eq(ptr(&first), ptr(&second)));
        let other = BTreeMap::from([("other".to_owned(), e)]);
        let yaml2 = yaml
            .replace("minilm-l6}", "other}")
            .replace("name: minilm-l6", "name: other");
        let third = build(
            tandem_policy::config::parse(&yaml2).unwrap(),
            &other,
            Some(&second),
        );
        assert!(!std::ptr::addr_eq(ptr(&second), ptr(&third)));
    }

    #[test]
    fn recent_embeddings_serve_a_repeated_single_text_once() {
        let e = RecentEmbeddings::new(Counting(AtomicUsize::new(0)), 2);
        let calls = || e.inner.0.load(Ordering::Relaxed);
        assert_eq!(e.embed(&["hello"]).unwrap(), vec![vec![5.0]]);
        assert_eq!(e.embed(&["hello"]).unwrap(), vec![vec![5.0]]);
        assert_eq!(
            calls(),
            1,
            "the second request for the same window is remembered"
        );
        // Batches pass through and are not remembered.
        assert_eq!(e.embed(&["a", "bb"]).unwrap().len(), 2);
        assert_eq!(calls(), 2);
        e.embed(&["a"]).unwrap();
        e.embed(&["bb"]).unwrap();
        assert_eq!(calls(), 4);
        // Capacity 2: "hello" was the oldest and is gone.
        e.embed(&["hello"]).unwrap();
        assert_eq!(calls(), 5);
        e.embed(&["bb"]).unwrap();
        assert_eq!(calls(), 5);
    }
}
