//! The embedding interface the knowledge base needs, and its implementation for Tandem's
//! local BERT embedder.

use std::path::Path;

use crate::error::BoxError;

/// A text-embedding model as seen by a knowledge base.
///
/// Vectors must be L2-normalised (the dot product is used as cosine similarity).
/// Implementations must accept inputs of any length (truncating them as needed).
pub trait Embed: Send + Sync {
    /// Stable identifier of the model, recorded in a base; a base refuses another model.
    fn model_id(&self) -> &str;
    /// Number of dimensions of the vectors.
    fn dim(&self) -> usize;
    /// Tokens `text` occupies for this model (used to size chunks).
    fn count_tokens(&self, text: &str) -> usize;
    /// Embeds document passages (with the model's passage prefix, if any).
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError>;
    /// Embeds a search query (with the model's query prefix, if any).
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError>;
}

/// [`Embed`] for a [`tandem_embed::Embedder`] (e.g. all-MiniLM-L6-v2): adds the model id
/// the embedder itself does not know, optional query/passage prefixes (empty for MiniLM),
/// and truncates inputs to the model's maximum length by tokens.
pub struct LocalEmbedder {
    inner: std::sync::Arc<tandem_embed::Embedder>,
    model_id: String,
    query_prefix: String,
    passage_prefix: String,
    /// Special tokens added around every input (`[CLS]`, `[SEP]`).
    special_tokens: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model_id", &self.model_id)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Wraps a loaded embedder under the id `model_id` (recorded in the bases it builds).
    pub fn new(inner: tandem_embed::Embedder, model_id: impl Into<String>) -> Self {
        Self::from_shared(std::sync::Arc::new(inner), model_id)
    }

    /// As [`new`](Self::new), over an embedder shared with others (e.g. the server's
    /// `/v1/embeddings` model). The model's own query/passage prefixes (`"query: "` and
    /// `"passage: "` for e5 models) are used.
    pub fn from_shared(
        inner: std::sync::Arc<tandem_embed::Embedder>,
        model_id: impl Into<String>,
    ) -> Self {
        let special_tokens = inner.count_tokens("").unwrap_or(2);
        Self {
            query_prefix: inner.query_prefix().to_string(),
            passage_prefix: inner.passage_prefix().to_string(),
            inner,
            model_id: model_id.into(),
            special_tokens,
        }
    }

    /// Loads the model in `dir`; its id is the directory's name (e.g. `minilm-l6` for
    /// `$TANDEM_HOME/models/minilm-l6`).
    pub fn load(dir: &Path) -> Result<Self, BoxError> {
        let inner = tandem_embed::Embedder::load(dir)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self::new(inner, id))
    }

    /// Replaces the model id (e.g. with the catalog name the model was resolved from).
    pub fn with_id(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = model_id.into();
        self
    }

    /// Sets the prefixes put before queries and passages (e5 models use `"query: "` and
    /// `"passage: "`).
    pub fn with_prefixes(mut self, query: impl Into<String>, passage: impl Into<String>) -> Self {
        self.query_prefix = query.into();
        self.passage_prefix = passage.into();
        self
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &tandem_embed::Embedder {
        &self.inner
    }

    fn embed_prefixed(&self, prefix: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        let room = self
            .inner
            .max_tokens()
            .saturating_sub(self.special_tokens)
            .max(1);
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let mut seq = if prefix.is_empty() {
                self.inner.tokenize(text)?
            } else {
                self.inner.tokenize(&format!("{prefix}{text}"))?
            };
            seq.truncate(room);
            ids.push(seq);
        }
        // `embed_ids` rejects empty inputs; embed those as the empty string.
        if ids.iter().any(Vec::is_empty) {
            let mut out = Vec::with_capacity(ids.len());
            for seq in &ids {
                let v = if seq.is_empty() {
                    self.inner.embed(&[""])?.vectors
                } else {
                    self.inner.embed_ids(std::slice::from_ref(seq))?.vectors
                };
                out.extend(v);
            }
            return Ok(out);
        }
        Ok(self.inner.embed_ids(&ids)?.vectors)
    }
}

impl Embed for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.inner
            .count_tokens(text)
            .unwrap_or_else(|_| text.chars().count() + self.special_tokens)
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        self.embed_prefixed(&self.passage_prefix, texts)
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError> {
        self.embed_prefixed(&self.query_prefix, &[text])?
            .pop()
            .ok_or_else(|| "the embedder returned no vector".into())
    }
}
