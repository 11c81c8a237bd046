//! The crate's error type.

use std::path::PathBuf;

/// A boxed error from an embedding backend (or any other pluggable component).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a knowledge base.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    /// The base name is not allowed.
    #[error("invalid knowledge base name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `create` of a base that exists.
    #[error("knowledge base {name:?} already exists ({})", path.display())]
    AlreadyExists {
        /// Base name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// `open` / `remove` of a base that does not exist.
    #[error("knowledge base {name:?} does not exist (no file {})", path.display())]
    NotFound {
        /// Base name.
        name: String,
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The file is not a knowledge base (not SQLite at all, or another program's database).
    #[error("{} is not a Tandem knowledge base: {reason}", path.display())]
    NotABase {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The base was written by an incompatible version of this crate.
    #[error(
        "{} has knowledge base schema version {found}, but this build reads version {supported}",
        path.display()
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: i64,
        /// Version this build reads and writes.
        supported: i64,
    },
    /// The base was built with another embedding model; its vectors cannot be compared
    /// with this model's.
    #[error(
        "{} was built with embedding model {base_model:?} ({base_dim} dimensions) but the \
         loaded model is {model:?} ({dim} dimensions); use that model or re-create the base",
        path.display()
    )]
    ModelMismatch {
        /// The file.
        path: PathBuf,
        /// Model recorded in the base.
        base_model: String,
        /// Dimension recorded in the base.
        base_dim: usize,
        /// Model offered now.
        model: String,
        /// Its dimension.
        dim: usize,
    },
    /// The query has no letter or digit.
    #[error("the query is empty: it has no letters or digits")]
    EmptyQuery,
    /// An option has an unusable value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The embedding backend failed.
    #[error("embedding failed: {0}")]
    Embed(#[source] BoxError),
    /// A vector has the wrong number of dimensions.
    #[error("vector has {got} dimensions, the base expects {expected}")]
    Dimension {
        /// Dimension of the base.
        expected: usize,
        /// Dimension received.
        got: usize,
    },
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("knowledge base database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The base's content is inconsistent (e.g. a malformed stored vector).
    #[error("corrupt knowledge base: {0}")]
    Corrupt(String),
}

impl KbError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
