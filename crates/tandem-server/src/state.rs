//! What the server holds: loaded chat engines, embedding models and options.

use std::collections::BTreeMap;
use std::sync::Arc;
use tandem_embed::Embedder;
use tandem_engine::Engine;
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
pub struct EmbedModel {
    /// Served id.
    pub name: String,
    /// The model.
    pub embedder: Arc<Embedder>,
    /// Unix seconds when loaded.
    pub loaded_at: u64,
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
}

impl AppState {
    /// State over the given models.
    pub fn new(chat: Vec<Engine>, embed: Vec<EmbedModel>, options: ServerOptions) -> Self {
        let permits = options.embed_concurrency.max(1);
        AppState {
            chat: chat
                .into_iter()
                .map(|e| (e.info().name.clone(), e))
                .collect(),
            embed: embed.into_iter().map(|m| (m.name.clone(), m)).collect(),
            embed_permits: tokio::sync::Semaphore::new(permits),
            options,
            metrics: crate::metrics::Metrics::global(),
            fingerprint: format!("tandem-{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Every served model id.
    pub fn model_ids(&self) -> Vec<String> {
        self.chat.keys().chain(self.embed.keys()).cloned().collect()
    }

    /// Whether `model` is served (chat or embedding).
    pub fn has_model(&self, model: &str) -> bool {
        self.chat.contains_key(model) || self.embed.contains_key(model)
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
