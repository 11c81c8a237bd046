//! Named knowledge bases in a directory, and the handle to one base.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_docs::ChunkOptions;

use crate::embed::Embed;
use crate::error::KbError;
use crate::store::{BaseMeta, DocumentRecord, KbStore, SqliteStore, StoreStats};

/// Longest base name.
pub const MAX_NAME_LEN: usize = 64;

/// File extension of a base.
const EXTENSION: &str = "sqlite";

/// `$TANDEM_HOME`, or `~/.cache/tandem` when it is unset or empty.
pub fn tandem_home() -> PathBuf {
    if let Some(home) = std::env::var_os("TANDEM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(".cache")
        .join("tandem")
}

/// Checks a base name: 1 to [`MAX_NAME_LEN`] characters out of `A-Z a-z 0-9 _ -`.
pub fn validate_name(name: &str) -> Result<(), KbError> {
    let invalid = |reason: String| KbError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "the name has {} characters; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(invalid(format!(
            "{c:?} is not allowed; use letters A-Z a-z, digits, '_' and '-'"
        )));
    }
    Ok(())
}

/// One entry of [`KbManager::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSummary {
    /// Base name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Documents.
    pub documents: usize,
    /// Chunks.
    pub chunks: usize,
    /// Bytes on disk (database and write-ahead log).
    pub size_bytes: u64,
    /// Embedding model the base was built with (empty if unreadable).
    pub model_id: String,
    /// Vector dimension (0 if unreadable).
    pub dim: usize,
    /// Why the base could not be read, if it could not.
    pub problem: Option<String>,
}

/// The knowledge bases of a directory (by default `$TANDEM_HOME/kb`), one
/// `NAME.sqlite` file each, all used with one embedding model.
#[derive(Clone)]
pub struct KbManager {
    dir: PathBuf,
    embedder: Arc<dyn Embed>,
}

impl std::fmt::Debug for KbManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbManager")
            .field("dir", &self.dir)
            .field("model_id", &self.embedder.model_id())
            .finish()
    }
}

impl KbManager {
    /// Bases in `dir` (created on the first [`create`](Self::create)), embedded with
    /// `embedder`.
    pub fn new(dir: impl Into<PathBuf>, embedder: Arc<dyn Embed>) -> Self {
        Self {
            dir: dir.into(),
            embedder,
        }
    }

    /// The default directory, `$TANDEM_HOME/kb`.
    pub fn default_dir() -> PathBuf {
        tandem_home().join("kb")
    }

    /// The directory of the bases.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The embedding model of new bases.
    pub fn embedder(&self) -> &Arc<dyn Embed> {
        &self.embedder
    }

    /// File of the base `name` (after validating the name).
    pub fn path_of(&self, name: &str) -> Result<PathBuf, KbError> {
        validate_name(name)?;
        Ok(self.dir.join(format!("{name}.{EXTENSION}")))
    }

    /// Creates the base `name` with the default chunking.
    pub fn create(&self, name: &str) -> Result<KnowledgeBase, KbError> {
        self.create_with(name, ChunkOptions::default())
    }

    /// Creates the base `name`, chunking documents with `chunk`. Fails with
    /// [`KbError::AlreadyExists`] if it exists.
    pub fn create_with(&self, name: &str, chunk: ChunkOptions) -> Result<KnowledgeBase, KbError> {
        let path = self.path_of(name)?;
        if chunk.max_tokens == 0 || chunk.overlap_tokens >= chunk.max_tokens {
            return Err(KbError::InvalidOption(format!(
                "chunk max_tokens must be > 0 and > overlap_tokens (got {} and {})",
                chunk.max_tokens, chunk.overlap_tokens
            )));
        }
        if path.exists() {
            return Err(KbError::AlreadyExists {
                name: name.to_string(),
                path,
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| KbError::io(&self.dir, e))?;
        let store =
            SqliteStore::create(&path, self.embedder.model_id(), self.embedder.dim(), chunk)?;
        KnowledgeBase::new(name, Arc::new(store), Arc::clone(&self.embedder))
    }

    /// Opens the base `name`. Fails with [`KbError::NotFound`], [`KbError::NotABase`] or
    /// [`KbError::ModelMismatch`].
    pub fn open(&self, name: &str) -> Result<KnowledgeBase, KbError> {
        let path = self.path_of(name)?;
        if !path.is_file() {
            return Err(KbError::NotFound {
                name: name.to_string(),
                path,
            });
        }
        let store = SqliteStore::open(&path)?;
        KnowledgeBase::new(name, Arc::new(store), Arc::clone(&self.embedder))
            .map_err(|e| with_path(e, &path))
    }

    /// All bases of the directory, by name. A file that cannot be read is listed with its
    /// [`problem`](BaseSummary::problem).
    pub fn list(&self) -> Result<Vec<BaseSummary>, KbError> {
        Self::list_dir(&self.dir)
    }

    /// [`list`](Self::list) for the directory `dir`, without an embedder.
    pub fn list_dir(dir: &Path) -> Result<Vec<BaseSummary>, KbError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(KbError::io(dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| KbError::io(dir, e))?;
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".sqlite"))
            else {
                continue;
            };
            if validate_name(name).is_err() || !path.is_file() {
                continue;
            }
            let mut summary = BaseSummary {
                name: name.to_string(),
                path: path.clone(),
                documents: 0,
                chunks: 0,
                size_bytes: 0,
                model_id: String::new(),
                dim: 0,
                problem: None,
            };
            let read =
                SqliteStore::open(&path).and_then(|s| Ok((s.meta()?, s.stats()?, s.size_bytes())));
            match read {
                Ok((meta, stats, size)) => {
                    summary.documents = stats.documents;
                    summary.chunks = stats.chunks;
                    summary.size_bytes = size;
                    summary.model_id = meta.model_id;
                    summary.dim = meta.dim;
                }
                Err(e) => summary.problem = Some(e.to_string()),
            }
            out.push(summary);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes the base `name` (its file, write-ahead log and shared-memory file).
    pub fn remove(&self, name: &str) -> Result<(), KbError> {
        Self::remove_in(&self.dir, name)
    }

    /// [`remove`](Self::remove) for the directory `dir`, without an embedder.
    pub fn remove_in(dir: &Path, name: &str) -> Result<(), KbError> {
        validate_name(name)?;
        let path = dir.join(format!("{name}.{EXTENSION}"));
        if !path.is_file() {
            return Err(KbError::NotFound {
                name: name.to_string(),
                path,
            });
        }
        std::fs::remove_file(&path).map_err(|e| KbError::io(&path, e))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(KbError::io(PathBuf::from(side), e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Puts the base's file into a [`KbError::ModelMismatch`].
fn with_path(e: KbError, path: &Path) -> KbError {
    match e {
        KbError::ModelMismatch {
            base_model,
            base_dim,
            model,
            dim,
            ..
        } => KbError::ModelMismatch {
            path: path.to_path_buf(),
            base_model,
            base_dim,
            model,
            dim,
        },
        other => other,
    }
}

/// An open knowledge base: its store and the embedder its vectors come from.
///
/// `Send + Sync`: share it in an `Arc`; searches may run while an ingest is writing.
#[derive(Clone)]
pub struct KnowledgeBase {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn KbStore>,
    pub(crate) embedder: Arc<dyn Embed>,
    pub(crate) meta: BaseMeta,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("name", &self.name)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl KnowledgeBase {
    /// A base over any store. Fails with [`KbError::ModelMismatch`] when the store was
    /// built with another embedding model or dimension than `embedder`'s.
    pub fn new(
        name: &str,
        store: Arc<dyn KbStore>,
        embedder: Arc<dyn Embed>,
    ) -> Result<Self, KbError> {
        let meta = store.meta()?;
        if meta.model_id != embedder.model_id() || meta.dim != embedder.dim() {
            return Err(KbError::ModelMismatch {
                path: PathBuf::from(name),
                base_model: meta.model_id,
                base_dim: meta.dim,
                model: embedder.model_id().to_string(),
                dim: embedder.dim(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            store,
            embedder,
            meta,
        })
    }

    /// Opens a base file directly (outside any [`KbManager`] directory).
    pub fn open_file(path: &Path, embedder: Arc<dyn Embed>) -> Result<Self, KbError> {
        let store = SqliteStore::open(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::new(&name, Arc::new(store), embedder).map_err(|e| with_path(e, path))
    }

    /// The base's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the base records about itself.
    pub fn meta(&self) -> &BaseMeta {
        &self.meta
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn KbStore> {
        &self.store
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embed> {
        &self.embedder
    }

    /// Counts of documents, chunks, index rows and vectors.
    pub fn stats(&self) -> Result<StoreStats, KbError> {
        self.store.stats()
    }

    /// All documents, by path.
    pub fn documents(&self) -> Result<Vec<DocumentRecord>, KbError> {
        self.store.documents()
    }
}
