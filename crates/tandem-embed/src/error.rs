//! Error type of the embedding crate.

use std::path::PathBuf;

/// A boxed, thread-safe error used as the source of load and tokenizer failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while loading the model or embedding inputs.
///
/// [`EmbedError::is_invalid_input`] tells caller-caused errors (which a server should
/// answer with `400 Bad Request`) apart from internal failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// A model file could not be read or parsed, or the model is not supported.
    #[error("failed to load embedding model file {}: {source}", path.display())]
    Load {
        /// The file (or directory) that failed to load.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// The tokenizer failed on an input.
    #[error("tokenization failed: {0}")]
    Tokenize(#[source] BoxError),

    /// An input has more tokens (special tokens included) than the model accepts.
    /// Inputs are never truncated silently.
    #[error(
        "input {index} is too long: {tokens} tokens (including special tokens), \
         but the model accepts at most {max}"
    )]
    InputTooLong {
        /// Position of the offending input in the request.
        index: usize,
        /// Number of tokens the input would occupy, special tokens included.
        tokens: usize,
        /// The model's maximum sequence length.
        max: usize,
    },

    /// A pre-tokenised input is an empty token array.
    #[error("input {index} is an empty token array")]
    EmptyInput {
        /// Position of the offending input in the request.
        index: usize,
    },

    /// A pre-tokenised input contains a token id outside the model's vocabulary.
    #[error(
        "input {index} has invalid token id {id} at position {position} \
         (vocabulary size is {vocab_size})"
    )]
    InvalidTokenId {
        /// Position of the offending input in the request.
        index: usize,
        /// Position of the offending token within that input.
        position: usize,
        /// The offending token id.
        id: u32,
        /// Size of the model's vocabulary; valid ids are `0..vocab_size`.
        vocab_size: usize,
    },

    /// The forward pass failed.
    #[error("embedding inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}

impl EmbedError {
    /// `true` when the error was caused by the request's inputs (too long, empty token
    /// array, bad token id) rather than by the model or the machine.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InputTooLong { .. } | Self::EmptyInput { .. } | Self::InvalidTokenId { .. }
        )
    }

    pub(crate) fn load(path: impl Into<PathBuf>, source: impl Into<BoxError>) -> Self {
        Self::Load {
            path: path.into(),
            source: source.into(),
        }
    }
}
