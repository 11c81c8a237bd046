//! What the server holds: loaded chat engines, embedding models and options.

use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tandem_embed::{EmbedError, Embedder, LoadOptions};
use tandem_engine::Engine;
use tandem_ledger::Ledger;
use tandem_policy::Config;
use tandem_types::ApiError;

/// Server behaviour switches.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Ignore unknown request parameters instead of rejecting them with a 400.
    pub drop_unknown_params: bool,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Embedding requests processed at once (each uses the CPU fully).
    pub embed_concurrency: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            drop_unknown_params: false,
            max_body_bytes: 8 * 1024 * 1024,
            embed_concurrency: 1,
        }
    }
}

/// An embedding model served under a name.
#[derive(Clone)]
pub struct EmbedModel {
    /// Served id.
    pub name: String,
    /// The model, with its exact (f32) weights: serves `/v1/embeddings`.
    pub embedder: Arc<Embedder>,
    /// The same model with [`CLASSIFIER_WEIGHTS`](crate::runtime::CLASSIFIER_WEIGHTS), for
    /// the task classifier when it names this model (latency-bound, tolerant of a small
    /// loss of accuracy). May be the same `Arc` as `embedder`.
    pub classifier_embedder: Arc<Embedder>,
    /// Unix seconds when loaded.
    pub loaded_at: u64,
}

impl EmbedModel {
    /// Loads the model in `dir` twice: exact for the API, and with
    /// [`CLASSIFIER_WEIGHTS`](crate::runtime::CLASSIFIER_WEIGHTS) for the classifier.
    pub fn load(name: &str, dir: &Path, loaded_at: u64) -> Result<Self, EmbedError> {
        let embedder = Arc::new(Embedder::load(dir)?);
        let weights = crate::runtime::CLASSIFIER_WEIGHTS;
        let classifier_embedder = if weights == embedder.weight_precision() {
            embedder.clone()
        } else {
            Arc::new(Embedder::load_with(dir, &LoadOptions { weights })?)
        };
        Ok(EmbedModel {
            name: name.to_owned(),
            embedder,
            classifier_embedder,
            loaded_at,
        })
    }
}

/// Shared server state.
pub struct AppState {
    chat: BTreeMap<String, Engine>,
    embed: BTreeMap<String, EmbedModel>,
    /// Options.
    pub options: ServerOptions,
    embed_permits: tokio::sync::Semaphore,
    /// Prometheus handle.
    pub metrics: crate::metrics::Metrics,
    /// Fingerprint reported in responses.
    pub fingerprint: String,
    runtime: ArcSwap<Runtime>,
    reload_lock: std::sync::Mutex<()>,
    /// Reload attempts so far, accepted or refused (what a watcher waits on).
    reloads: tokio::sync::watch::Sender<u64>,
    /// Draining at shutdown: refused requests and those still in flight.
    pub drain: Arc<crate::drain::Drain>,
    /// Where every routed request is recorded (None: not recorded).
    pub ledger: Option<Ledger>,
    /// Knowledge bases for RAG answers (None: not enabled).
    pub kb: Option<std::sync::Arc<crate::kb::KbService>>,
}

impl AppState {
    /// State over the given models, without routing rules: `auto` is the first chat model.
    pub fn new(chat: Vec<Engine>, embed: Vec<EmbedModel>, options: ServerOptions) -> Self {
        let chat_names: Vec<String> = chat.iter().map(|e| e.info().name.clone()).collect();
        let embed_names: Vec<String> = embed.iter().map(|m| m.name.clone()).collect();
        let config = Runtime::local_only_config(&chat_names, &embed_names);
        match Self::with_config(chat, embed, options, config, None) {
            Ok(s) => s,
            Err((e, chat, embed, options)) => {
                // The generated configuration only names loaded models; keep serving them.
                tracing::error!(error = %e, "routing runtime for the loaded models failed");
                let rt = Runtime::build(Config::empty(), &BTreeMap::new(), &BTreeMap::new(), None);
                Self::assemble(chat, embed, options, rt.ok(), None)
            }
        }
    }

    /// State over the given models with a routing configuration and a ledger. On failure,
    /// the reason and the models are handed back.
    #[allow(clippy::type_complexity)]
    pub fn with_config(
        chat: Vec<Engine>,
        embed: Vec<EmbedModel>,
        options: ServerOptions,
        config: Config,
        ledger: Option<Ledger>,
    ) -> Result<Self, (String, Vec<Engine>, Vec<EmbedModel>, ServerOptions)> {
        let chat_map: BTreeMap<String, Engine> = chat
            .iter()
            .map(|e| (e.info().name.clone(), e.clone()))
            .collect();
        let embed_map: BTreeMap<String, EmbedModel> =
            embed.iter().map(|m| (m.name.clone(), m.clone())).collect();
        match Runtime::build(config, &chat_map, &embed_map, None) {
            Ok(rt) => Ok(Self::assemble(chat, embed, options, Some(rt), ledger)),
            Err(e) => Err((e, chat, embed, options)),
        }
    }

    fn assemble(
        chat: Vec<Engine>,
        embed: Vec<EmbedModel>,
        options: ServerOptions,
        rt: Option<Runtime>,
        ledger: Option<Ledger>,
    ) -> Self {
        let permits = options.embed_concurrency.max(1);
        let chat: BTreeMap<String, Engine> = chat
            .into_iter()
            .map(|e| (e.info().name.clone(), e))
            .collect();
        let embed: BTreeMap<String, EmbedModel> =
            embed.into_iter().map(|m| (m.name.clone(), m)).collect();
        let rt = match rt {
            Some(rt) => rt,
            None => match Runtime::build(Config::empty(), &BTreeMap::new(), &BTreeMap::new(), None)
            {
                Ok(rt) => rt,
                Err(e) => panic!("an empty configuration must always build: {e}"),
            },
        };
        AppState {
            chat,
            embed,
            embed_permits: tokio::sync::Semaphore::new(permits),
            options,
            metrics: crate::metrics::Metrics::global(),
            fingerprint: format!("tandem-{}", env!("CARGO_PKG_VERSION")),
            runtime: ArcSwap::from_pointee(rt),
            reload_lock: std::sync::Mutex::new(()),
            reloads: tokio::sync::watch::Sender::new(0),
            drain: Arc::new(crate::drain::Drain::default()),
            ledger,
            kb: None,
        }
    }

    /// Enables the knowledge bases (`/v1/kb/...` and RAG answers).
    pub fn with_kb(mut self, kb: std::sync::Arc<crate::kb::KbService>) -> Self {
        self.kb = Some(kb);
        self
    }

    /// The routing runtime in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swap in a new configuration. A configuration that cannot run (a local model that is
    /// not loaded, a bad classifier) is refused and the old one keeps serving.
    pub fn reload(&self, config: Config) -> Result<u64, String> {
        let _g = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let prev = self.runtime();
        let r = Runtime::build(config, &self.chat, &self.embed, Some(&prev));
        crate::metrics::reload(r.is_ok());
        let r = r.map(|rt| {
            let generation = rt.generation;
            self.runtime.store(Arc::new(rt));
            generation
        });
        self.reloads.send_modify(|n| *n += 1);
        r
    }

    /// Counts reload attempts (accepted or refused): `changed()` on the receiver waits for
    /// the next one.
    pub fn reload_attempts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Parse, validate and swap in configuration text.
    pub fn reload_text(&self, text: &str) -> Result<u64, String> {
        match tandem_policy::config::parse(text) {
            Ok(c) => self.reload(c),
            Err(e) => {
                crate::metrics::reload(false);
                self.reloads.send_modify(|n| *n += 1);
                Err(e.to_string())
            }
        }
    }

    /// Every served model id.
    pub fn model_ids(&self) -> Vec<String> {
        self.chat.keys().chain(self.embed.keys()).cloned().collect()
    }

    /// Whether `model` is served (chat or embedding).
    pub fn has_model(&self, model: &str) -> bool {
        self.chat.contains_key(model)
            || self.embed.contains_key(model)
            || self.runtime().config.model(model).is_some()
    }

    /// Chat engines.
    pub fn chat_engines(&self) -> impl Iterator<Item = &Engine> {
        self.chat.values()
    }

    /// Embedding models.
    pub fn embed_models(&self) -> impl Iterator<Item = &EmbedModel> {
        self.embed.values()
    }

    /// The chat engine for `model`, or a 404 naming the available ones.
    pub fn chat_engine(&self, model: &str) -> Result<&Engine, ApiError> {
        if let Some(e) = self.chat.get(model) {
            return Ok(e);
        }
        if self.embed.contains_key(model) {
            return Err(ApiError::invalid(
                "model",
                format!("`{model}` is an embedding model; use /v1/embeddings."),
            )
            .with_code("model_not_supported"));
        }
        Err(ApiError::model_not_found(
            model,
            &self.chat.keys().cloned().collect::<Vec<_>>(),
        ))
    }

    /// The embedding model for `model`, or a 404.
    pub fn embed_model(&self, model: &str) -> Result<&EmbedModel, ApiError> {
        if let Some(m) = self.embed.get(model) {
            return Ok(m);
        }
        if self.chat.contains_key(model) {
            return Err(ApiError::invalid(
                "model",
                format!(
                    "`{model}` is a chat model; embeddings need an embedding model ({}).",
                    self.embed.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .with_code("model_not_supported"));
        }
        Err(ApiError::model_not_found(
            model,
            &self.embed.keys().cloned().collect::<Vec<_>>(),
        ))
    }

    /// Wait for an embedding slot.
    pub async fn embed_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.embed_permits
            .acquire()
            .await
            .map_err(|_| ApiError::unavailable("the server is shutting down", 5))
    }
}

/// Map an embedding failure to the API: input problems are 400s naming `input`.
pub fn embed_error(e: tandem_embed::EmbedError) -> ApiError {
    if e.is_invalid_input() {
        ApiError::invalid("input", e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}
