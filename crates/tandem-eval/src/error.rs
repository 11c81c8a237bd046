//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in the evaluation harness. Parsing errors name their line
/// (1-based); file errors name their path.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A line of a JSONL file could not be parsed.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// An input that must not be empty was empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Two inputs that must have the same length did not.
    #[error("{what}: expected {expected} values, got {got}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it had.
        got: usize,
    },
    /// A value was out of its range or not finite.
    #[error("{what}: {message}")]
    Invalid {
        /// Which input (with its index where useful).
        what: String,
        /// What was wrong.
        message: String,
    },
    /// A judge template needs `{ref_answer_1}` and no reference answer was given.
    #[error("judge prompt `{prompt}` needs a reference answer")]
    MissingReference {
        /// The judge prompt's name.
        prompt: String,
    },
    /// A judge template has a placeholder this crate cannot fill (e.g. multi-turn ones).
    #[error("judge prompt `{prompt}`: cannot fill placeholder `{{{placeholder}}}`")]
    Template {
        /// The judge prompt's name.
        prompt: String,
        /// The placeholder's name, or a description of the syntax error.
        placeholder: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A router file is not a Tandem router file at all.
    #[error("{}: not a Tandem kNN router file ({reason})", path.display())]
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// A router file of a version this build cannot read.
    #[error("{}: router file version {found}, this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A router file whose payload is shorter or longer than its header announces.
    #[error("{}: payload has {found} bytes, the header announces {expected}", path.display())]
    PayloadSize {
        /// The file.
        path: PathBuf,
        /// Bytes announced by the header.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A router file (or router) does not match the embedding model/dimension expected.
    #[error("router mismatch: {0}")]
    Mismatch(String),
    /// A router file whose header or payload is inconsistent.
    #[error("{}: corrupt router file: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl EvalError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        EvalError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}
