//! Ingestion: walking folders, extracting, chunking, embedding and storing documents.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::KbError;
use crate::manager::KnowledgeBase;
use crate::store::{NewChunk, NewDocument, PutOutcome};

/// File extensions handed to the extractor (lower case). Files with other extensions are
/// reported as skipped.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "md", "markdown", "txt", "text", "html", "htm", "pdf", "docx",
];

/// Options of [`KnowledgeBase::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOptions {
    /// Remove documents under the given folders (or given files) that no longer exist.
    pub prune: bool,
    /// Files larger than this many bytes are skipped (default 50 MB).
    pub max_file_bytes: u64,
    /// Chunks embedded per call to the embedder (default 32).
    pub batch_size: usize,
    /// Tags given to every document ingested (searchable with
    /// [`SearchFilter::tags`](crate::SearchFilter::tags)).
    pub tags: Vec<String>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            prune: false,
            max_file_bytes: 50 * 1024 * 1024,
            batch_size: 32,
            tags: Vec::new(),
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// New document with this many chunks.
    Added {
        /// Chunks stored.
        chunks: usize,
    },
    /// Changed document; its old chunks were replaced by these.
    Updated {
        /// Chunks stored.
        chunks: usize,
    },
    /// Same content as stored.
    Unchanged,
    /// Not ingested, on purpose (unsupported, too large, empty).
    Skipped(String),
    /// Could not be ingested (unreadable, malformed, parser panic, embedding error).
    Failed(String),
}

/// Progress of an ingest, reported as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestEvent {
    /// The paths were walked; this many files will be looked at.
    Scanned {
        /// Files found.
        files: usize,
    },
    /// One file was handled.
    File {
        /// The file.
        path: PathBuf,
        /// Its position, from 1.
        index: usize,
        /// Number of files.
        total: usize,
        /// What happened.
        status: FileStatus,
    },
    /// A document whose file is gone was removed (with `prune`).
    Removed {
        /// Absolute path of the vanished file.
        path: String,
    },
}

/// Outcome of [`KnowledgeBase::ingest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Files found under the given paths (hidden files excluded).
    pub files_seen: usize,
    /// New documents.
    pub added: usize,
    /// Changed documents re-ingested.
    pub updated: usize,
    /// Documents whose content had not changed.
    pub unchanged: usize,
    /// Documents removed because their file is gone (`prune`).
    pub removed: usize,
    /// Files that could not be ingested, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Files left out on purpose, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Chunks written.
    pub chunks_added: usize,
    /// Chunks deleted (replaced or pruned documents).
    pub chunks_removed: usize,
    /// Tokens of the chunk texts (as counted for chunking).
    pub tokens: usize,
    /// Time spent reading, extracting and chunking.
    pub extract_time: Duration,
    /// Time spent embedding.
    pub embed_time: Duration,
    /// Time spent writing to the store.
    pub store_time: Duration,
}

/// A file to ingest, with the root its display path is relative to.
struct Candidate {
    path: PathBuf,
    root: PathBuf,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// Walks `dir` recursively (not following symbolic links to folders), in name order.
fn walk(dir: &Path, root: &Path, out: &mut Vec<Candidate>, errors: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push((dir.to_path_buf(), format!("cannot read folder: {e}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if is_hidden(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, root, out, errors);
        } else if meta.is_file() || (meta.file_type().is_symlink() && path.is_file()) {
            out.push(Candidate {
                path,
                root: root.to_path_buf(),
            });
        }
    }
}

fn display_path(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The text embedded for a chunk: "title / heading path" on a first line, then the text.
fn chunk_context(title: Option<&str>, headings: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(t) = title.filter(|t| !t.is_empty()) {
        parts.push(t);
    }
    for h in headings {
        if parts.last() != Some(&h.as_str()) && !parts.contains(&h.as_str()) {
            parts.push(h);
        }
    }
    parts.join(" / ")
}

/// A file read, extracted and chunked, ready for embedding.
struct Prepared {
    doc: NewDocument,
    chunks: Vec<tandem_docs::Chunk>,
    context: Vec<String>,
}

enum Prepare {
    Ready(Box<Prepared>),
    Unchanged,
    Skipped(String),
    Failed(String),
}

impl KnowledgeBase {
    /// Ingests files and folders (recursively; hidden files and folders are ignored).
    ///
    /// Each document is written in its own transaction (document, chunks, full-text rows
    /// and vectors together), so an interrupted ingest leaves a consistent base and a
    /// re-run finishes the rest: unchanged files (same SHA-256) are not re-embedded. A file
    /// that cannot be read or extracted — even one whose parser panics — is reported in
    /// [`IngestSummary::failed`] and the others proceed. Errors of the store itself
    /// (disk full, database locked too long) abort the ingest.
    pub fn ingest(
        &self,
        paths: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Fn(&IngestEvent),
    ) -> Result<IngestSummary, KbError> {
        if opts.batch_size == 0 {
            return Err(KbError::InvalidOption(
                "batch_size must be at least 1".into(),
            ));
        }
        let mut summary = IngestSummary::default();
        let mut candidates = Vec::new();
        let mut roots = Vec::new();
        for given in paths {
            let abs = std::fs::canonicalize(given);
            match abs {
                Ok(abs) if abs.is_dir() => {
                    walk(&abs, &abs, &mut candidates, &mut summary.failed);
                    roots.push(abs);
                }
                Ok(abs) => {
                    let root = abs.parent().map(Path::to_path_buf).unwrap_or_default();
                    candidates.push(Candidate { path: abs, root });
                }
                Err(e) => {
                    if opts.prune {
                        // A given file that is gone: prune its document.
                        if let Some(abs) = absolute_lexical(given) {
                            let key = abs.to_string_lossy().into_owned();
                            if let Some(doc) = self.store.document(&key)? {
                                self.store.remove_document(&key)?;
                                summary.removed += 1;
                                summary.chunks_removed += doc.chunks;
                                progress(&IngestEvent::Removed { path: key });
                                continue;
                            }
                        }
                    }
                    summary
                        .failed
                        .push((given.clone(), format!("cannot access: {e}")));
                }
            }
        }
        summary.files_seen = candidates.len();
        progress(&IngestEvent::Scanned {
            files: candidates.len(),
        });
        let total = candidates.len();
        for (i, cand) in candidates.iter().enumerate() {
            let status = self.ingest_one(cand, opts, &mut summary)?;
            match &status {
                FileStatus::Added { chunks } => {
                    summary.added += 1;
                    summary.chunks_added += chunks;
                }
                FileStatus::Updated { chunks } => {
                    summary.updated += 1;
                    summary.chunks_added += chunks;
                }
                FileStatus::Unchanged => summary.unchanged += 1,
                FileStatus::Skipped(r) => summary.skipped.push((cand.path.clone(), r.clone())),
                FileStatus::Failed(r) => summary.failed.push((cand.path.clone(), r.clone())),
            }
            progress(&IngestEvent::File {
                path: cand.path.clone(),
                index: i + 1,
                total,
                status,
            });
        }
        if opts.prune && !roots.is_empty() {
            for doc in self.store.documents()? {
                let p = Path::new(&doc.path);
                if roots.iter().any(|r| p.starts_with(r)) && !p.exists() {
                    self.store.remove_document(&doc.path)?;
                    summary.removed += 1;
                    summary.chunks_removed += doc.chunks;
                    progress(&IngestEvent::Removed { path: doc.path });
                }
            }
        }
        Ok(summary)
    }

    fn prepare(&self, cand: &Candidate, opts: &IngestOptions) -> Result<Prepare, KbError> {
        let path = &cand.path;
        let ext = extension(path);
        if !SUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
            let what = if ext.is_empty() {
                "no file extension".to_string()
            } else {
                format!("unsupported file type .{ext}")
            };
            return Ok(Prepare::Skipped(what));
        }
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return Ok(Prepare::Failed(format!("cannot read: {e}"))),
        };
        if meta.len() > opts.max_file_bytes {
            return Ok(Prepare::Skipped(format!(
                "file is {} bytes, larger than the limit of {} bytes",
                meta.len(),
                opts.max_file_bytes
            )));
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return Ok(Prepare::Failed(format!("cannot read: {e}"))),
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        let key = path.to_string_lossy().into_owned();
        if let Some(existing) = self.store.document(&key)?
            && existing.content_hash == hash
        {
            return Ok(Prepare::Unchanged);
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let chunk_opts = self.meta.chunk;
        let embedder = &self.embedder;
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            tandem_docs::extract(&file_name, &bytes).map(|doc| {
                let count = |t: &str| embedder.count_tokens(t);
                let chunks = tandem_docs::chunk(&doc, &chunk_opts, &count);
                (doc, chunks)
            })
        }));
        let (doc, chunks) = match parsed {
            Ok(Ok(v)) => v,
            Ok(Err(tandem_docs::ExtractError::Unsupported(what))) => {
                return Ok(Prepare::Skipped(format!("unsupported: {what}")));
            }
            Ok(Err(tandem_docs::ExtractError::Empty)) => {
                return Ok(Prepare::Skipped("the file is empty".into()));
            }
            Ok(Err(e)) => return Ok(Prepare::Failed(e.to_string())),
            Err(payload) => {
                return Ok(Prepare::Failed(format!(
                    "the extractor crashed: {}",
                    panic_message(payload.as_ref())
                )));
            }
        };
        if chunks.is_empty() {
            return Ok(Prepare::Skipped("no text found in the file".into()));
        }
        let context = chunks
            .iter()
            .map(|c| chunk_context(doc.title.as_deref(), &c.heading_path))
            .collect();
        let format = serde_json::to_value(doc.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", doc.format).to_lowercase());
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        Ok(Prepare::Ready(Box::new(Prepared {
            doc: NewDocument {
                path: key,
                display_path: display_path(path, &cand.root),
                content_hash: hash,
                size: meta.len(),
                mtime,
                format,
                encoding: doc.encoding,
                title: doc.title,
                tags: opts.tags.clone(),
            },
            chunks,
            context,
        })))
    }

    fn ingest_one(
        &self,
        cand: &Candidate,
        opts: &IngestOptions,
        summary: &mut IngestSummary,
    ) -> Result<FileStatus, KbError> {
        let started = Instant::now();
        let prepared = self.prepare(cand, opts)?;
        summary.extract_time += started.elapsed();
        let p = match prepared {
            Prepare::Ready(p) => p,
            Prepare::Unchanged => return Ok(FileStatus::Unchanged),
            Prepare::Skipped(r) => return Ok(FileStatus::Skipped(r)),
            Prepare::Failed(r) => return Ok(FileStatus::Failed(r)),
        };
        let started = Instant::now();
        let texts: Vec<String> = p
            .chunks
            .iter()
            .zip(&p.context)
            .map(|(c, ctx)| {
                if ctx.is_empty() {
                    c.text.clone()
                } else {
                    format!("{ctx}\n{}", c.text)
                }
            })
            .collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(opts.batch_size) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            match self.embedder.embed_passages(&refs) {
                Ok(v) if v.len() == refs.len() => vectors.extend(v),
                Ok(v) => {
                    return Ok(FileStatus::Failed(format!(
                        "the embedder returned {} vectors for {} texts",
                        v.len(),
                        refs.len()
                    )));
                }
                Err(e) => return Ok(FileStatus::Failed(format!("embedding failed: {e}"))),
            }
        }
        summary.embed_time += started.elapsed();
        let started = Instant::now();
        let n = p.chunks.len();
        summary.tokens += p.chunks.iter().map(|c| c.tokens).sum::<usize>();
        let chunks: Vec<NewChunk> = p
            .chunks
            .into_iter()
            .zip(p.context)
            .zip(vectors)
            .map(|((c, context), embedding)| NewChunk {
                index: c.index,
                text: c.text,
                heading_path: c.heading_path,
                page: c.page,
                byte_range: c.byte_range,
                char_range: c.char_range,
                hash: c.hash,
                tokens: c.tokens,
                context,
                embedding,
            })
            .collect();
        let outcome = self.store.put_document(&p.doc, &chunks)?;
        summary.store_time += started.elapsed();
        Ok(match outcome {
            PutOutcome::Added { .. } => FileStatus::Added { chunks: n },
            PutOutcome::Replaced { removed_chunks, .. } => {
                summary.chunks_removed += removed_chunks;
                FileStatus::Updated { chunks: n }
            }
        })
    }
}

/// `path` made absolute without touching the file system (for files that are gone).
fn absolute_lexical(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    // Resolve the parent if it still exists, so the key matches a canonical path.
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Some(
            std::fs::canonicalize(parent)
                .unwrap_or_else(|_| parent.to_path_buf())
                .join(name),
        ),
        _ => Some(abs),
    }
}
