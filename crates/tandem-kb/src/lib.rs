//! Knowledge bases for Tandem: ingest documents, store them, retrieve passages for RAG.
//!
//! * [`KbManager`] keeps named bases in a directory (`$TANDEM_HOME/kb/NAME.sqlite`).
//! * [`KnowledgeBase::ingest`] walks files and folders, extracts and chunks them with
//!   [`tandem_docs`], embeds the chunks with an [`Embed`] model and stores each document
//!   atomically; unchanged files are skipped by content hash.
//! * [`KnowledgeBase::search`] retrieves chunks by BM25, by vector similarity, or by both
//!   fused with reciprocal rank fusion, keeping a place in the top `k` for the best chunk
//!   in the other script than the query (CJK or not, for bilingual bases), optionally
//!   diversified with MMR.
//! * Storage is behind the [`KbStore`] trait; [`SqliteStore`] keeps a base in one SQLite
//!   file (WAL): an FTS5 index with an as-is column and a CJK-bigram column (so Chinese
//!   is searchable by BM25), and f32 vectors. Searches run on in-memory structures built
//!   from the file: an inverted BM25 index over the bigram column's terms, kept in step
//!   with the store's writes, and int8 copies of the vectors whose best candidates are
//!   re-ranked with the f32 vectors.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use tandem_kb::{IngestOptions, KbManager, LocalEmbedder, SearchOptions};
//!
//! let home = tandem_kb::tandem_home();
//! let embedder = Arc::new(LocalEmbedder::load(&home.join("models/minilm-l6"))?);
//! let kbs = KbManager::new(KbManager::default_dir(), embedder);
//! let kb = kbs.create("handbook")?;
//! let summary = kb.ingest(&["docs/".into()], &IngestOptions::default(), &|_| {})?;
//! println!("{} documents added", summary.added);
//! for hit in kb.search("annual leave days", &SearchOptions::default())? {
//!     println!("{:.3} {} {:?}", hit.score, hit.path, hit.heading_path);
//! }
//! # Ok(())
//! # }
//! ```

mod embed;
mod error;
mod index;
mod ingest;
mod manager;
mod search;
mod store;
mod text;

pub use embed::{Embed, LocalEmbedder};
pub use error::{BoxError, KbError};
pub use ingest::{FileStatus, IngestEvent, IngestOptions, IngestSummary, SUPPORTED_EXTENSIONS};
pub use manager::{
    BaseSummary, KbManager, KnowledgeBase, MAX_NAME_LEN, tandem_home, validate_name,
};
pub use search::{Hit, RRF_K, SearchMode, SearchOptions};
pub use store::{
    BaseMeta, ChunkRecord, DocumentRecord, KbStore, NewChunk, NewDocument, PutOutcome,
    SCHEMA_VERSION, SearchFilter, SqliteStore, StoreStats,
};
pub use tandem_docs::ChunkOptions;
pub use text::{Script, script_of};
