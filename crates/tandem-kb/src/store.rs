//! Storage of a knowledge base: the [`KbStore`] trait and its SQLite implementation.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tandem_docs::ChunkOptions;

use crate::error::KbError;
use crate::index::{self, TextIndex};
use crate::text::{self, Script};

/// Version of the SQLite schema written by this build.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a Tandem knowledge base ("TDKB").
const APPLICATION_ID: i32 = 0x5444_4b42;

/// Column weights of `bm25()`: the as-is text column, then the CJK-bigram column.
const BM25_WEIGHTS: (f64, f64) = (1.0, 1.0);

/// What a base records about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseMeta {
    /// Schema version of the file.
    pub schema_version: i64,
    /// Embedding model the vectors were made with.
    pub model_id: String,
    /// Dimension of the vectors.
    pub dim: usize,
    /// How documents are chunked.
    pub chunk: ChunkOptions,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
}

/// Counts over a base, for listings and consistency checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Documents.
    pub documents: usize,
    /// Chunks.
    pub chunks: usize,
    /// Rows of the full-text index (equals `chunks` in a consistent base).
    pub fts_rows: usize,
    /// Stored vectors (equals `chunks` in a consistent base).
    pub vectors: usize,
}

/// A document to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    /// Absolute path of the source file: the document's key.
    pub path: String,
    /// Path shown to users (relative to the ingested folder when possible).
    pub display_path: String,
    /// Hex SHA-256 of the file's bytes.
    pub content_hash: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// Modification time of the file, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// Format name (`markdown`, `text`, `html`, …).
    pub format: String,
    /// Encoding the text was decoded from.
    pub encoding: String,
    /// Document title.
    pub title: Option<String>,
    /// User tags.
    pub tags: Vec<String>,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// Row id.
    pub id: i64,
    /// Absolute path of the source file.
    pub path: String,
    /// Path shown to users.
    pub display_path: String,
    /// Hex SHA-256 of the file's bytes.
    pub content_hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// Format name.
    pub format: String,
    /// Source encoding.
    pub encoding: String,
    /// Title.
    pub title: Option<String>,
    /// User tags.
    pub tags: Vec<String>,
    /// When it was (last) ingested, seconds since the Unix epoch.
    pub ingested_at: i64,
    /// Number of chunks.
    pub chunks: usize,
}

/// A chunk to store, with its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// Position in the document, from 0.
    pub index: usize,
    /// Text of the chunk.
    pub text: String,
    /// Headings above the chunk, outermost first.
    pub heading_path: Vec<String>,
    /// 1-based page (PDF).
    pub page: Option<u32>,
    /// Byte range in the extracted document text.
    pub byte_range: Range<usize>,
    /// Character range in the extracted document text.
    pub char_range: Range<usize>,
    /// Hex SHA-256 of the text.
    pub hash: String,
    /// Token count.
    pub tokens: usize,
    /// Text indexed for BM25 besides `text` (e.g. title and headings); may be empty.
    pub context: String,
    /// Embedding (the base's dimension, L2-normalised).
    pub embedding: Vec<f32>,
}

/// A stored chunk with its document's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// Row id.
    pub id: i64,
    /// Document row id.
    pub doc_id: i64,
    /// Position in the document.
    pub index: usize,
    /// Text.
    pub text: String,
    /// Headings above it.
    pub heading_path: Vec<String>,
    /// Page (PDF).
    pub page: Option<u32>,
    /// Byte range in the extracted text.
    pub byte_range: Range<usize>,
    /// Character range in the extracted text.
    pub char_range: Range<usize>,
    /// Tokens.
    pub tokens: usize,
    /// Absolute source path.
    pub path: String,
    /// Display path.
    pub display_path: String,
    /// Document title.
    pub title: Option<String>,
}

/// Restricts a search to some documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Only documents whose display path or absolute path starts with this.
    pub path_prefix: Option<String>,
    /// Only documents carrying all these tags.
    pub tags: Vec<String>,
}

impl SearchFilter {
    /// Whether the filter lets every document through.
    pub fn is_empty(&self) -> bool {
        self.path_prefix.as_deref().is_none_or(str::is_empty) && self.tags.is_empty()
    }

    /// Whether `doc` passes the filter.
    pub fn accepts(&self, doc: &DocumentRecord) -> bool {
        let path_ok = match self.path_prefix.as_deref() {
            None | Some("") => true,
            Some(p) => doc.display_path.starts_with(p) || doc.path.starts_with(p),
        };
        path_ok && self.tags.iter().all(|t| doc.tags.contains(t))
    }
}

/// What [`KbStore::put_document`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new document.
    Added {
        /// Its row id.
        id: i64,
    },
    /// An existing document (same path) was replaced, chunks included.
    Replaced {
        /// Its row id.
        id: i64,
        /// Chunks it had before.
        removed_chunks: usize,
    },
}

/// Storage of one knowledge base. Every method is atomic: a document's row, chunks,
/// full-text rows and vectors change together or not at all.
///
/// [`SqliteStore`] is the default; the trait exists so that other backends (e.g.
/// PostgreSQL with pgvector) can follow.
pub trait KbStore: Send + Sync {
    /// The base's metadata.
    fn meta(&self) -> Result<BaseMeta, KbError>;
    /// Counts of documents, chunks, index rows and vectors.
    fn stats(&self) -> Result<StoreStats, KbError>;
    /// Bytes used on disk (0 if unknown).
    fn size_bytes(&self) -> u64;
    /// The document stored under `path` (absolute source path).
    fn document(&self, path: &str) -> Result<Option<DocumentRecord>, KbError>;
    /// All documents, ordered by path.
    fn documents(&self) -> Result<Vec<DocumentRecord>, KbError>;
    /// Stores a document with its chunks, replacing any document with the same path and
    /// all of its chunks, in one transaction.
    fn put_document(&self, doc: &NewDocument, chunks: &[NewChunk]) -> Result<PutOutcome, KbError>;
    /// Removes the document stored under `path` and its chunks; `false` if there was none.
    fn remove_document(&self, path: &str) -> Result<bool, KbError>;
    /// Best `n` chunks for the text `query` by BM25, best first, as (chunk id, score);
    /// higher scores are better. An empty list when the query has no indexable term.
    fn bm25_candidates(
        &self,
        query: &str,
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f64)>, KbError>;
    /// Nearest `n` chunks to `query` (an L2-normalised vector) by cosine similarity, best
    /// first, as (chunk id, similarity).
    fn vector_candidates(
        &self,
        query: &[f32],
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f32)>, KbError>;
    /// Vectors of the given chunks, in order (`None` for an unknown id).
    fn vectors(&self, ids: &[i64]) -> Result<Vec<Option<Vec<f32>>>, KbError>;
    /// The given chunks, in order (unknown ids are left out).
    fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>, KbError>;
    /// The script (CJK or other) of each given chunk's text, in order (`None` for an
    /// unknown id). The default reads the chunks and looks at their characters.
    fn scripts(&self, ids: &[i64]) -> Result<Vec<Option<Script>>, KbError> {
        let by_id: HashMap<i64, Script> = self
            .chunks(ids)?
            .into_iter()
            .map(|c| (c.id, text::script_of(&c.text)))
            .collect();
        Ok(ids.iter().map(|id| by_id.get(id).copied()).collect())
    }
}

/// All vectors of a base in one contiguous array, with int8 copies for a fast first pass.
struct VectorCache {
    generation: i64,
    ids: Vec<i64>,
    doc_ids: Vec<i64>,
    data: Vec<f32>,
    /// `data` quantised per vector: `data[row] ≈ scales[row] · q8[row]`.
    q8: Vec<i8>,
    scales: Vec<f32>,
    row_of: HashMap<i64, usize>,
}

/// How many int8 candidates per requested vector hit are re-ranked with the f32 vectors.
const RERANK_FACTOR: usize = 4;
/// Extra int8 candidates re-ranked on top of `RERANK_FACTOR · n`.
const RERANK_EXTRA: usize = 32;

/// A knowledge base in one SQLite file (WAL mode): documents, chunks, an FTS5 index with
/// an as-is column and a CJK-bigram column, and f32 vectors.
///
/// Searches use in-memory structures built lazily from the file: an inverted index over
/// the FTS5 table's CJK-bigram column (BM25 with the terms' posting lists in memory) and
/// a copy of the vectors with int8 versions (a quantised scan whose best candidates are
/// re-ranked with the f32 vectors). Writes through this store update the inverted index
/// in place; a change by another process (seen through the base's generation counter)
/// makes both be rebuilt at the next search. [`fts5_bm25_candidates`] and
/// [`exact_vector_candidates`] are the plain SQLite and exact-scan paths.
///
/// [`fts5_bm25_candidates`]: SqliteStore::fts5_bm25_candidates
/// [`exact_vector_candidates`]: SqliteStore::exact_vector_candidates
///
/// One connection writes and another reads, so searches proceed while a document is
/// being written (by this or another process).
pub struct SqliteStore {
    path: PathBuf,
    dim: usize,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    cache: Mutex<Option<Arc<VectorCache>>>,
    text_index: Mutex<Option<TextIndex>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    display_path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER,
    format TEXT NOT NULL,
    encoding TEXT NOT NULL,
    title TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    ingested_at INTEGER NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading_path TEXT NOT NULL DEFAULT '[]',
    page INTEGER,
    byte_start INTEGER NOT NULL,
    byte_end INTEGER NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    UNIQUE (doc_id, idx)
);
CREATE TABLE vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL
);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    body, cjk, tokenize = 'porter unicode61 remove_diacritics 2'
);
";

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

fn parse_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn to_i64(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_usize(v: i64) -> usize {
    usize::try_from(v).unwrap_or(0)
}

fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Dot product written for auto-vectorisation (8 independent accumulators).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

fn not_a_base(path: &Path, reason: impl Into<String>) -> KbError {
    KbError::NotABase {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Maps the "file is not a database" family of errors to [`KbError::NotABase`].
fn classify(path: &Path, e: rusqlite::Error) -> KbError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            not_a_base(path, "the file is not an SQLite database")
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            not_a_base(path, "the SQLite database is corrupt")
        }
        _ => KbError::Sqlite(e),
    }
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl SqliteStore {
    /// Creates a new base file at `path` for vectors of `model_id` / `dim`, chunked with
    /// `chunk`. Fails with [`KbError::AlreadyExists`]-like I/O error if the file exists.
    pub fn create(
        path: &Path,
        model_id: &str,
        dim: usize,
        chunk: ChunkOptions,
    ) -> Result<Self, KbError> {
        if dim == 0 {
            return Err(KbError::InvalidOption("embedding dimension is 0".into()));
        }
        if path.exists() {
            return Err(KbError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file already exists"),
            ));
        }
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        {
            let mut put = tx.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
            for (k, v) in [
                ("schema_version", SCHEMA_VERSION.to_string()),
                ("model_id", model_id.to_string()),
                ("dim", dim.to_string()),
                ("chunk_max_tokens", chunk.max_tokens.to_string()),
                ("chunk_overlap_tokens", chunk.overlap_tokens.to_string()),
                ("created", now_secs().to_string()),
                ("generation", "0".to_string()),
            ] {
                put.execute(params![k, v])?;
            }
        }
        tx.commit()?;
        drop(conn);
        Self::open(path)
    }

    /// Opens an existing base file. Fails with [`KbError::NotABase`] for a file that is
    /// not SQLite or not a Tandem base, and [`KbError::SchemaVersion`] for another schema.
    /// The embedding model is checked by the caller against [`KbStore::meta`].
    pub fn open(path: &Path) -> Result<Self, KbError> {
        if !path.is_file() {
            return Err(KbError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let writer = Connection::open_with_flags(path, flags)?;
        // Check what the file is before changing anything in it.
        let app_id: i32 = writer
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if app_id != APPLICATION_ID {
            return Err(not_a_base(
                path,
                format!("application id is {app_id:#x}, not Tandem's {APPLICATION_ID:#x}"),
            ));
        }
        let version: Option<String> = writer
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| classify(path, e))?;
        let found = version
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| not_a_base(path, "its metadata has no schema version"))?;
        if found != SCHEMA_VERSION {
            return Err(KbError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        let reader = Connection::open_with_flags(path, flags)?;
        configure(&reader)?;
        let store = Self {
            path: path.to_path_buf(),
            dim: 0,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            cache: Mutex::new(None),
            text_index: Mutex::new(None),
        };
        let dim = store.meta()?.dim;
        Ok(Self { dim, ..store })
    }

    /// The file of the base.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the metadata of the base file at `path` (e.g. its embedding model) without an
    /// embedder, with the same checks as [`open`](Self::open).
    pub fn read_meta(path: &Path) -> Result<BaseMeta, KbError> {
        Self::open(path)?.meta()
    }

    fn meta_from(conn: &Connection, path: &Path) -> Result<BaseMeta, KbError> {
        let mut stmt = conn.prepare("SELECT key, value FROM meta")?;
        let map: HashMap<String, String> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let get = |k: &str| {
            map.get(k)
                .ok_or_else(|| not_a_base(path, format!("its metadata lacks {k:?}")))
        };
        let num = |k: &str| -> Result<i64, KbError> {
            get(k)?
                .parse::<i64>()
                .map_err(|_| not_a_base(path, format!("its metadata {k:?} is not a number")))
        };
        Ok(BaseMeta {
            schema_version: num("schema_version")?,
            model_id: get("model_id")?.clone(),
            dim: to_usize(num("dim")?),
            chunk: ChunkOptions {
                max_tokens: to_usize(num("chunk_max_tokens")?),
                overlap_tokens: to_usize(num("chunk_overlap_tokens")?),
            },
            created: num("created")?,
        })
    }

    fn doc_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRecord> {
        Ok(DocumentRecord {
            id: r.get(0)?,
            path: r.get(1)?,
            display_path: r.get(2)?,
            content_hash: r.get(3)?,
            size: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            mtime: r.get(5)?,
            format: r.get(6)?,
            encoding: r.get(7)?,
            title: r.get(8)?,
            tags: parse_list(&r.get::<_, String>(9)?),
            ingested_at: r.get(10)?,
            chunks: to_usize(r.get(11)?),
        })
    }

    const DOC_COLUMNS: &'static str = "d.id, d.path, d.display_path, d.content_hash, d.size, \
        d.mtime, d.format, d.encoding, d.title, d.tags, d.ingested_at, \
        (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id)";

    /// Ids of the documents passing `filter`, as a JSON array for `json_each`.
    fn allowed_docs(conn: &Connection, filter: &SearchFilter) -> Result<Vec<i64>, KbError> {
        let mut stmt = conn.prepare(&format!("SELECT {} FROM documents d", Self::DOC_COLUMNS))?;
        let docs = stmt
            .query_map([], Self::doc_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(docs
            .iter()
            .filter(|d| filter.accepts(d))
            .map(|d| d.id)
            .collect())
    }

    /// The vector cache, reloaded if the base changed since it was built.
    fn vector_cache(&self) -> Result<Arc<VectorCache>, KbError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction()?;
        let generation: i64 = tx.query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'",
            [],
            |r| r.get(0),
        )?;
        let mut cache = lock(&self.cache);
        if let Some(c) = cache.as_ref()
            && c.generation == generation
        {
            return Ok(Arc::clone(c));
        }
        let mut stmt = tx.prepare(
            "SELECT v.chunk_id, c.doc_id, v.embedding FROM vectors v \
             JOIN chunks c ON c.id = v.chunk_id ORDER BY v.chunk_id",
        )?;
        let mut rows = stmt.query([])?;
        let (mut ids, mut doc_ids, mut data) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let blob = r
                .get_ref(2)?
                .as_blob()
                .map_err(|e| KbError::Corrupt(format!("vector of chunk {id}: {e}")))?;
            if blob.len() != self.dim * 4 {
                return Err(KbError::Corrupt(format!(
                    "vector of chunk {id} has {} bytes, expected {}",
                    blob.len(),
                    self.dim * 4
                )));
            }
            data.extend(
                blob.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            ids.push(id);
            doc_ids.push(r.get(1)?);
        }
        let row_of = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let mut q8 = Vec::with_capacity(data.len());
        let scales = data
            .chunks_exact(self.dim)
            .map(|v| index::quantize(v, &mut q8))
            .collect();
        let fresh = Arc::new(VectorCache {
            generation,
            ids,
            doc_ids,
            data,
            q8,
            scales,
            row_of,
        });
        *cache = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// The inverted index, rebuilt from the FTS5 table if it is missing, stale (the base
    /// changed outside this store) or mostly made of deleted rows; then `f` of it.
    fn with_text_index<T>(&self, f: impl FnOnce(&TextIndex) -> T) -> Result<T, KbError> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction()?;
        let generation = Self::generation(&tx)?;
        let mut guard = lock(&self.text_index);
        let fresh = guard
            .as_ref()
            .is_some_and(|ix| ix.generation == generation && !ix.needs_compaction());
        if !fresh {
            *guard = None;
            let mut ix = TextIndex::new(generation);
            let mut stmt = tx.prepare(
                "SELECT f.rowid, c.doc_id, f.cjk FROM chunks_fts f \
                 JOIN chunks c ON c.id = f.rowid ORDER BY f.rowid",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let cjk = r.get_ref(2)?.as_str().unwrap_or_default();
                ix.add(r.get(0)?, r.get(1)?, cjk);
            }
            *guard = Some(ix);
        }
        match guard.as_ref() {
            Some(ix) => Ok(f(ix)),
            None => Err(KbError::Corrupt("the text index was not built".into())),
        }
    }

    fn generation(conn: &Connection) -> Result<i64, KbError> {
        Ok(conn.query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Ids and CJK-column texts of the chunks of document `doc_id`.
    fn doc_index_rows(conn: &Connection, doc_id: i64) -> Result<Vec<(i64, String)>, KbError> {
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, cjk FROM chunks_fts \
             WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?1)",
        )?;
        Ok(stmt
            .query_map([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    /// Commits `tx` (which moved the base from generation `before` to `before + 1`) and
    /// applies the same change to the in-memory index if it reflected `before`; otherwise
    /// the index is left to be rebuilt at the next search.
    fn commit_indexed(
        &self,
        tx: rusqlite::Transaction<'_>,
        before: i64,
        removed: &[(i64, String)],
        added: &[(i64, i64, String)],
    ) -> Result<(), KbError> {
        // Held across the commit, so no search sees the new generation with the old index.
        let mut guard = lock(&self.text_index);
        tx.commit()?;
        match guard.as_mut() {
            Some(ix) if ix.generation == before => {
                for (id, cjk) in removed {
                    ix.remove(*id, cjk);
                }
                for (id, doc_id, cjk) in added {
                    ix.add(*id, *doc_id, cjk);
                }
                ix.generation = before + 1;
            }
            _ => *guard = None,
        }
        Ok(())
    }

    /// [`KbStore::bm25_candidates`] computed by SQLite's FTS5 (`bm25()` over both
    /// columns, English words stemmed by Porter in the as-is column) instead of the
    /// in-memory index: slower on large bases, kept as a reference.
    pub fn fts5_bm25_candidates(
        &self,
        query: &str,
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f64)>, KbError> {
        let Some(expr) = text::fts_match(query) else {
            return Ok(Vec::new());
        };
        let conn = lock(&self.reader);
        let (wb, wc) = BM25_WEIGHTS;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, f64)> {
            Ok((r.get(0)?, -r.get::<_, f64>(1)?))
        };
        let rows = if filter.is_empty() {
            let mut stmt = conn.prepare_cached(
                "SELECT rowid, bm25(chunks_fts, ?3, ?4) AS s FROM chunks_fts \
                 WHERE chunks_fts MATCH ?1 ORDER BY s LIMIT ?2",
            )?;
            stmt.query_map(params![expr, to_i64(n), wb, wc], map)?
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let allowed = serde_json::to_string(&Self::allowed_docs(&conn, filter)?)
                .unwrap_or_else(|_| "[]".into());
            let mut stmt = conn.prepare_cached(
                "SELECT f.rowid, bm25(chunks_fts, ?3, ?4) AS s FROM chunks_fts f \
                 JOIN chunks c ON c.id = f.rowid \
                 WHERE chunks_fts MATCH ?1 AND c.doc_id IN (SELECT value FROM json_each(?5)) \
                 ORDER BY s LIMIT ?2",
            )?;
            stmt.query_map(params![expr, to_i64(n), wb, wc, allowed], map)?
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(rows)
    }

    /// Documents allowed by `filter` (`None`: all).
    fn allowed_set(
        &self,
        filter: &SearchFilter,
    ) -> Result<Option<std::collections::HashSet<i64>>, KbError> {
        if filter.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            Self::allowed_docs(&lock(&self.reader), filter)?
                .into_iter()
                .collect(),
        ))
    }

    fn check_dim(&self, query: &[f32]) -> Result<(), KbError> {
        if query.len() != self.dim {
            return Err(KbError::Dimension {
                expected: self.dim,
                got: query.len(),
            });
        }
        Ok(())
    }

    /// [`KbStore::vector_candidates`] by an exact f32 scan of every vector, without the
    /// int8 first pass.
    pub fn exact_vector_candidates(
        &self,
        query: &[f32],
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f32)>, KbError> {
        self.check_dim(query)?;
        let cache = self.vector_cache()?;
        let allowed = self.allowed_set(filter)?;
        let mut scored: Vec<(f32, usize)> = Vec::with_capacity(cache.ids.len());
        for (row, v) in cache.data.chunks_exact(self.dim).enumerate() {
            if allowed
                .as_ref()
                .is_some_and(|a| !a.contains(&cache.doc_ids[row]))
            {
                continue;
            }
            scored.push((dot(query, v), row));
        }
        Ok(top_rows(scored, n)
            .into_iter()
            .map(|(s, row)| (cache.ids[row], s))
            .collect())
    }
}

/// The `n` best (score, row) pairs, best first (ties by row).
fn top_rows<S: Copy + PartialOrd>(mut scored: Vec<(S, usize)>, n: usize) -> Vec<(S, usize)> {
    let by_score = |a: &(S, usize), b: &(S, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    if n == 0 {
        return Vec::new();
    }
    if scored.len() > n {
        scored.select_nth_unstable_by(n - 1, by_score);
        scored.truncate(n);
    }
    scored.sort_unstable_by(by_score);
    scored
}

impl KbStore for SqliteStore {
    fn meta(&self) -> Result<BaseMeta, KbError> {
        Self::meta_from(&lock(&self.reader), &self.path)
    }

    fn stats(&self) -> Result<StoreStats, KbError> {
        let conn = lock(&self.reader);
        let count = |sql: &str| -> Result<usize, KbError> {
            Ok(to_usize(conn.query_row(sql, [], |r| r.get(0))?))
        };
        Ok(StoreStats {
            documents: count("SELECT count(*) FROM documents")?,
            chunks: count("SELECT count(*) FROM chunks")?,
            fts_rows: count("SELECT count(*) FROM chunks_fts")?,
            vectors: count("SELECT count(*) FROM vectors")?,
        })
    }

    fn size_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        [self.path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn document(&self, path: &str) -> Result<Option<DocumentRecord>, KbError> {
        let conn = lock(&self.reader);
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {} FROM documents d WHERE d.path = ?1",
                    Self::DOC_COLUMNS
                ),
                [path],
                Self::doc_from_row,
            )
            .optional()?)
    }

    fn documents(&self) -> Result<Vec<DocumentRecord>, KbError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM documents d ORDER BY d.path",
            Self::DOC_COLUMNS
        ))?;
        Ok(stmt
            .query_map([], Self::doc_from_row)?
            .collect::<Result<_, _>>()?)
    }

    fn put_document(&self, doc: &NewDocument, chunks: &[NewChunk]) -> Result<PutOutcome, KbError> {
        if let Some(c) = chunks.iter().find(|c| c.embedding.len() != self.dim) {
            return Err(KbError::Dimension {
                expected: self.dim,
                got: c.embedding.len(),
            });
        }
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM documents WHERE path = ?1",
                [&doc.path],
                |r| r.get(0),
            )
            .optional()?;
        let tags = json_list(&doc.tags);
        let size = i64::try_from(doc.size).unwrap_or(i64::MAX);
        let before = Self::generation(&tx)?;
        let mut removed_rows = Vec::new();
        let mut added_rows = Vec::with_capacity(chunks.len());
        let outcome = if let Some(id) = existing {
            removed_rows = Self::doc_index_rows(&tx, id)?;
            tx.execute(
                "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?1)",
                [id],
            )?;
            tx.execute(
                "DELETE FROM vectors WHERE chunk_id IN (SELECT id FROM chunks WHERE doc_id = ?1)",
                [id],
            )?;
            let removed = tx.execute("DELETE FROM chunks WHERE doc_id = ?1", [id])?;
            tx.execute(
                "UPDATE documents SET display_path = ?2, content_hash = ?3, size = ?4, \
                 mtime = ?5, format = ?6, encoding = ?7, title = ?8, tags = ?9, \
                 ingested_at = ?10 WHERE id = ?1",
                params![
                    id,
                    doc.display_path,
                    doc.content_hash,
                    size,
                    doc.mtime,
                    doc.format,
                    doc.encoding,
                    doc.title,
                    tags,
                    now_secs()
                ],
            )?;
            PutOutcome::Replaced {
                id,
                removed_chunks: removed,
            }
        } else {
            tx.execute(
                "INSERT INTO documents (path, display_path, content_hash, size, mtime, format, \
                 encoding, title, tags, ingested_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    doc.path,
                    doc.display_path,
                    doc.content_hash,
                    size,
                    doc.mtime,
                    doc.format,
                    doc.encoding,
                    doc.title,
                    tags,
                    now_secs()
                ],
            )?;
            PutOutcome::Added {
                id: tx.last_insert_rowid(),
            }
        };
        let doc_id = match outcome {
            PutOutcome::Added { id } | PutOutcome::Replaced { id, .. } => id,
        };
        {
            let mut ins_chunk = tx.prepare(
                "INSERT INTO chunks (doc_id, idx, text, heading_path, page, byte_start, \
                 byte_end, char_start, char_end, content_hash, tokens) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut ins_fts =
                tx.prepare("INSERT INTO chunks_fts (rowid, body, cjk) VALUES (?1, ?2, ?3)")?;
            let mut ins_vec =
                tx.prepare("INSERT INTO vectors (chunk_id, embedding) VALUES (?1, ?2)")?;
            for c in chunks {
                ins_chunk.execute(params![
                    doc_id,
                    to_i64(c.index),
                    c.text,
                    json_list(&c.heading_path),
                    c.page,
                    to_i64(c.byte_range.start),
                    to_i64(c.byte_range.end),
                    to_i64(c.char_range.start),
                    to_i64(c.char_range.end),
                    c.hash,
                    to_i64(c.tokens),
                ])?;
                let chunk_id = tx.last_insert_rowid();
                let body = if c.context.is_empty() {
                    c.text.clone()
                } else {
                    format!("{}\n{}", c.context, c.text)
                };
                let cjk = text::cjk_index_text(&body);
                ins_fts.execute(params![chunk_id, body, cjk])?;
                ins_vec.execute(params![chunk_id, vector_blob(&c.embedding)])?;
                added_rows.push((chunk_id, doc_id, cjk));
            }
        }
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'",
            [],
        )?;
        self.commit_indexed(tx, before, &removed_rows, &added_rows)?;
        Ok(outcome)
    }

    fn remove_document(&self, path: &str) -> Result<bool, KbError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(id) = tx
            .query_row("SELECT id FROM documents WHERE path = ?1", [path], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        else {
            return Ok(false);
        };
        let before = Self::generation(&tx)?;
        let removed_rows = Self::doc_index_rows(&tx, id)?;
        tx.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?1)",
            [id],
        )?;
        tx.execute(
            "DELETE FROM vectors WHERE chunk_id IN (SELECT id FROM chunks WHERE doc_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM chunks WHERE doc_id = ?1", [id])?;
        tx.execute("DELETE FROM documents WHERE id = ?1", [id])?;
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'",
            [],
        )?;
        self.commit_indexed(tx, before, &removed_rows, &[])?;
        Ok(true)
    }

    fn bm25_candidates(
        &self,
        query: &str,
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f64)>, KbError> {
        let terms = text::query_index_terms(query);
        if terms.is_empty() || n == 0 {
            return Ok(Vec::new());
        }
        let allowed = self.allowed_set(filter)?;
        self.with_text_index(|ix| ix.search(&terms, n, allowed.as_ref()))
    }

    fn vector_candidates(
        &self,
        query: &[f32],
        n: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<(i64, f32)>, KbError> {
        self.check_dim(query)?;
        let cache = self.vector_cache()?;
        let m = n.saturating_mul(RERANK_FACTOR).saturating_add(RERANK_EXTRA);
        if cache.ids.len() <= m {
            return self.exact_vector_candidates(query, n, filter);
        }
        let allowed = self.allowed_set(filter)?;
        let mut q8 = Vec::with_capacity(self.dim);
        index::quantize(query, &mut q8);
        let mut dots = Vec::with_capacity(cache.ids.len());
        index::scan_i8(&q8, &cache.q8, self.dim, &mut dots);
        // Approximate similarity up to the query's scale, which ranks alike.
        let approx: Vec<(f32, usize)> = dots
            .iter()
            .zip(&cache.scales)
            .enumerate()
            .filter(|(row, _)| {
                allowed
                    .as_ref()
                    .is_none_or(|a| a.contains(&cache.doc_ids[*row]))
            })
            .map(|(row, (&d, &scale))| (d as f32 * scale, row))
            .collect();
        let exact: Vec<(f32, usize)> = top_rows(approx, m)
            .into_iter()
            .map(|(_, row)| {
                let v = &cache.data[row * self.dim..(row + 1) * self.dim];
                (dot(query, v), row)
            })
            .collect();
        Ok(top_rows(exact, n)
            .into_iter()
            .map(|(s, row)| (cache.ids[row], s))
            .collect())
    }

    fn vectors(&self, ids: &[i64]) -> Result<Vec<Option<Vec<f32>>>, KbError> {
        let cache = self.vector_cache()?;
        Ok(ids
            .iter()
            .map(|id| {
                cache
                    .row_of
                    .get(id)
                    .map(|&row| cache.data[row * self.dim..(row + 1) * self.dim].to_vec())
            })
            .collect())
    }

    fn chunks(&self, ids: &[i64]) -> Result<Vec<ChunkRecord>, KbError> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.doc_id, c.idx, c.text, c.heading_path, c.page, c.byte_start, \
             c.byte_end, c.char_start, c.char_end, c.tokens, d.path, d.display_path, d.title \
             FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = stmt
                .query_row([id], |r| {
                    Ok(ChunkRecord {
                        id: r.get(0)?,
                        doc_id: r.get(1)?,
                        index: to_usize(r.get(2)?),
                        text: r.get(3)?,
                        heading_path: parse_list(&r.get::<_, String>(4)?),
                        page: r.get(5)?,
                        byte_range: to_usize(r.get(6)?)..to_usize(r.get(7)?),
                        char_range: to_usize(r.get(8)?)..to_usize(r.get(9)?),
                        tokens: to_usize(r.get(10)?),
                        path: r.get(11)?,
                        display_path: r.get(12)?,
                        title: r.get(13)?,
                    })
                })
                .optional()?;
            out.extend(rec);
        }
        Ok(out)
    }

    fn scripts(&self, ids: &[i64]) -> Result<Vec<Option<Script>>, KbError> {
        self.with_text_index(|ix| ix.scripts(ids))
    }
}
