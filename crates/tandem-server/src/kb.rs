//! Knowledge bases over HTTP (`/v1/kb/...`) and as the [`Retriever`] of RAG answers.
//! The work is `tandem-kb`'s; this module maps requests and errors and keeps bases open.

use crate::rag::Retriever;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tandem_kb::{
    FileStatus, Hit, IngestOptions, IngestSummary, KbError, KbManager, KnowledgeBase, SearchFilter,
    SearchMode, SearchOptions,
};
use tandem_rag::Passage;
use tandem_types::{ApiError, ErrorKind};

/// Loads an embedding model by the id a base recorded (e.g. `minilm-l6`).
pub type EmbedLoader = dyn Fn(&str) -> Result<Arc<dyn tandem_kb::Embed>, String> + Send + Sync;

/// The knowledge bases of one directory, opened on first use and kept open. New bases use
/// the manager's embedding model; an existing base is searched with the model it was built
/// with (loaded on first use through the loader).
pub struct KbService {
    manager: KbManager,
    loader: Option<Box<EmbedLoader>>,
    embedders: Mutex<HashMap<String, Arc<dyn tandem_kb::Embed>>>,
    open: Mutex<HashMap<String, Arc<KnowledgeBase>>>,
    /// One ingest at a time per server (ingest is CPU-bound and writes).
    ingest_lock: Mutex<()>,
}

/// A `tandem-kb` error as an API error.
pub fn kb_error(e: KbError) -> ApiError {
    match &e {
        KbError::NotFound { name, .. } => ApiError::new(
            ErrorKind::NotFound,
            format!("Knowledge base `{name}` does not exist."),
        )
        .with_code("kb_not_found"),
        KbError::InvalidName { .. } | KbError::EmptyQuery | KbError::InvalidOption(_) => {
            ApiError::new(ErrorKind::InvalidRequest, e.to_string())
        }
        KbError::AlreadyExists { name, .. } => ApiError::new(
            ErrorKind::Custom(409),
            format!("Knowledge base `{name}` already exists."),
        )
        .with_code("kb_exists"),
        KbError::ModelMismatch { .. }
        | KbError::NotABase { .. }
        | KbError::SchemaVersion { .. } => {
            ApiError::new(ErrorKind::Custom(409), e.to_string()).with_code("kb_unusable")
        }
        _ => ApiError::internal(e.to_string()),
    }
}

impl KbService {
    /// Bases in `manager`'s directory.
    pub fn new(manager: KbManager) -> Self {
        KbService {
            manager,
            loader: None,
            embedders: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            ingest_lock: Mutex::new(()),
        }
    }

    /// Loads the embedding models of bases built with another model than the manager's.
    pub fn with_loader(mut self, loader: Box<EmbedLoader>) -> Self {
        self.loader = Some(loader);
        self
    }

    fn embedder_for(&self, model_id: &str) -> Result<Arc<dyn tandem_kb::Embed>, ApiError> {
        let mut cache = self.embedders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(model_id) {
            return Ok(e.clone());
        }
        let loader = self.loader.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Custom(409),
                format!("This knowledge base was built with embedding model `{model_id}`, which this server does not load."),
            )
            .with_code("kb_unusable")
        })?;
        let e = loader(model_id).map_err(|e| {
            ApiError::new(
                ErrorKind::Custom(409),
                format!("This knowledge base needs embedding model `{model_id}`: {e}"),
            )
            .with_code("kb_unusable")
        })?;
        cache.insert(model_id.to_string(), e.clone());
        Ok(e)
    }

    /// The manager.
    pub fn manager(&self) -> &KbManager {
        &self.manager
    }

    fn manager_model(&self) -> String {
        self.manager.embedder().model_id().to_string()
    }

    fn base(&self, name: &str) -> Result<Arc<KnowledgeBase>, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = open.get(name) {
            return Ok(b.clone());
        }
        let path = self.manager.path_of(name).map_err(kb_error)?;
        let b = match tandem_kb::SqliteStore::read_meta(&path) {
            Ok(meta) if meta.model_id != self.manager_model() => {
                let e = self.embedder_for(&meta.model_id)?;
                KnowledgeBase::open_file(&path, e).map_err(kb_error)?
            }
            // The manager's model, or an error `open` reports clearly (missing, foreign).
            _ => self.manager.open(name).map_err(kb_error)?,
        };
        let b = Arc::new(b);
        open.insert(name.to_string(), b.clone());
        Ok(b)
    }

    fn forget(&self, name: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// `GET /v1/kb`.
    pub fn list(&self) -> Result<serde_json::Value, ApiError> {
        let bases = self.manager.list().map_err(kb_error)?;
        let data: Vec<serde_json::Value> = bases
            .iter()
            .map(|b| {
                serde_json::json!({
                    "object": "knowledge_base", "name": b.name, "documents": b.documents,
                    "chunks": b.chunks, "size_bytes": b.size_bytes, "embedding_model": b.model_id,
                    "dim": b.dim, "problem": b.problem,
                })
            })
            .collect();
        Ok(serde_json::json!({"object": "list", "data": data}))
    }

    /// `POST /v1/kb`.
    pub fn create(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        let b = self.manager.create(name).map_err(kb_error)?;
        let meta = b.meta().clone();
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(b));
        Ok(serde_json::json!({
            "object": "knowledge_base", "name": name, "documents": 0, "chunks": 0,
            "embedding_model": meta.model_id, "dim": meta.dim,
        }))
    }

    /// `DELETE /v1/kb/{name}`.
    pub fn remove(&self, name: &str) -> Result<serde_json::Value, ApiError> {
        self.forget(name);
        self.manager.remove(name).map_err(kb_error)?;
        Ok(serde_json::json!({"object": "knowledge_base", "name": name, "deleted": true}))
    }

    /// Ingests `paths` (on this machine) into `name`.
    pub fn ingest(
        &self,
        name: &str,
        paths: &[PathBuf],
        opts: &IngestOptions,
    ) -> Result<IngestSummary, ApiError> {
        let base = self.base(name)?;
        let _guard = self.ingest_lock.lock().unwrap_or_else(|e| e.into_inner());
        base.ingest(paths, opts, &|_| {}).map_err(kb_error)
    }

    /// Where uploaded files of base `name` are kept (so that re-uploading an unchanged file
    /// is recognised by its hash, and a changed one replaces its chunks).
    pub fn upload_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        let db = self.manager.path_of(name).map_err(kb_error)?;
        Ok(db.with_extension("files"))
    }

    /// Hybrid (or BM25/vector) search.
    pub fn search_hits(
        &self,
        name: &str,
        query: &str,
        opts: &SearchOptions,
    ) -> Result<Vec<Hit>, ApiError> {
        self.base(name)?.search(query, opts).map_err(kb_error)
    }
}

/// A hit as a RAG passage numbered `n`.
pub fn passage(n: usize, h: &Hit) -> Passage {
    Passage {
        n,
        source: h.path.clone(),
        title: h.title.clone(),
        heading: h.heading_path.clone(),
        page: h.page,
        text: h.text.clone(),
        score: h.score as f32,
    }
}

impl Retriever for KbService {
    fn search(&self, kb: &str, query: &str, k: usize) -> Result<Vec<Passage>, ApiError> {
        let opts = SearchOptions {
            k,
            ..SearchOptions::default()
        };
        match self.search_hits(kb, query, &opts) {
            Ok(hits) => Ok(hits
                .iter()
                .enumerate()
                .map(|(i, h)| passage(i + 1, h))
                .collect()),
            // A question without letters or digits retrieves nothing (the answer is "I don't
            // know"), rather than failing the request.
            Err(e)
                if e.kind == ErrorKind::InvalidRequest && e.message.contains("query is empty") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }
}

/// A hit as JSON.
pub fn hit_json(rank: usize, h: &Hit) -> serde_json::Value {
    serde_json::json!({
        "rank": rank, "score": h.score, "bm25_rank": h.bm25_rank, "vector_rank": h.vector_rank,
        "source": h.path, "title": h.title, "heading": h.heading_path, "page": h.page,
        "char_start": h.char_range.start, "char_end": h.char_range.end, "text": h.text,
        "chunk_id": h.chunk_id,
    })
}

/// An ingest summary as JSON.
pub fn summary_json(name: &str, s: &IngestSummary) -> serde_json::Value {
    let list = |v: &[(PathBuf, String)]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|(p, r)| serde_json::json!({"path": p.display().to_string(), "reason": r}))
            .collect()
    };
    serde_json::json!({
        "object": "kb.ingest", "kb": name, "files_seen": s.files_seen, "added": s.added,
        "updated": s.updated, "unchanged": s.unchanged, "removed": s.removed,
        "failed": list(&s.failed), "skipped": list(&s.skipped), "chunks_added": s.chunks_added,
        "chunks_removed": s.chunks_removed, "tokens": s.tokens,
        "seconds": {
            "extract": s.extract_time.as_secs_f64(), "embed": s.embed_time.as_secs_f64(),
            "store": s.store_time.as_secs_f64(),
        },
    })
}

/// The text of a [`FileStatus`] for progress output.
pub fn status_text(s: &FileStatus) -> String {
    match s {
        FileStatus::Added { chunks } => format!("added ({chunks} chunks)"),
        FileStatus::Updated { chunks } => format!("updated ({chunks} chunks)"),
        FileStatus::Unchanged => "unchanged".into(),
        FileStatus::Skipped(r) => format!("skipped: {r}"),
        FileStatus::Failed(r) => format!("FAILED: {r}"),
    }
}

/// `{"query", "k", "mode", "path_prefix", "tags", "mmr"}` of `POST /v1/kb/{name}/search`.
pub fn parse_search(body: &serde_json::Value) -> Result<(String, SearchOptions), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The body must be a JSON object."))?;
    for k in obj.keys() {
        if !["query", "k", "mode", "path_prefix", "tags", "mmr"].contains(&k.as_str()) {
            return Err(ApiError::invalid(k, format!("Unknown field `{k}`.")));
        }
    }
    let query = match obj.get("query") {
        Some(serde_json::Value::String(q)) if !q.trim().is_empty() => q.clone(),
        _ => {
            return Err(ApiError::invalid(
                "query",
                "`query` must be a non-empty string.",
            ));
        }
    };
    let mut opts = SearchOptions::default();
    if let Some(k) = obj.get("k") {
        opts.k = k
            .as_u64()
            .filter(|k| (1..=100).contains(k))
            .ok_or_else(|| ApiError::invalid("k", "`k` must be an integer from 1 to 100."))?
            as usize;
        opts.candidates = opts.candidates.max(opts.k * 4);
    }
    if let Some(m) = obj.get("mode") {
        opts.mode = match m.as_str() {
            Some("hybrid") => SearchMode::Hybrid,
            Some("bm25") => SearchMode::Bm25,
            Some("vector") => SearchMode::Vector,
            _ => {
                return Err(ApiError::invalid(
                    "mode",
                    "`mode` must be `hybrid`, `bm25` or `vector`.",
                ));
            }
        };
    }
    let mut filter = SearchFilter::default();
    if let Some(p) = obj.get("path_prefix") {
        filter.path_prefix = Some(
            p.as_str()
                .ok_or_else(|| ApiError::invalid("path_prefix", "`path_prefix` must be a string."))?
                .to_string(),
        );
    }
    if let Some(t) = obj.get("tags") {
        filter.tags = t
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .ok_or_else(|| ApiError::invalid("tags", "`tags` must be an array of strings."))?;
    }
    opts.filter = filter;
    if let Some(m) = obj.get("mmr") {
        opts.mmr = Some(
            m.as_f64()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| ApiError::invalid("mmr", "`mmr` must be a number from 0 to 1."))?
                as f32,
        );
    }
    Ok((query, opts))
}

/// Keeps only the last path component of an uploaded file's name; refuses names that are
/// empty, hidden or not plain.
pub fn upload_name(name: &str) -> Result<String, ApiError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() || base.starts_with('.') || base.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "files",
            format!("`{name}` is not a usable file name."),
        ));
    }
    Ok(base.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn search_bodies() {
        let (q, o) = parse_search(&serde_json::json!({"query": "年假", "k": 3, "mode": "bm25", "tags": ["hr"], "mmr": 0.5})).unwrap();
        assert_eq!(
            (q.as_str(), o.k, o.mode, o.mmr),
            ("年假", 3, SearchMode::Bm25, Some(0.5))
        );
        assert_eq!(o.filter.tags, vec!["hr".to_string()]);
        for bad in [
            serde_json::json!([]),
            serde_json::json!({"query": ""}),
            serde_json::json!({"query": 3}),
            serde_json::json!({"query": "x", "k": 0}),
            serde_json::json!({"query": "x", "k": "5"}),
            serde_json::json!({"query": "x", "mode": "fuzzy"}),
            serde_json::json!({"query": "x", "tags": [1]}),
            serde_json::json!({"query": "x", "mmr": 2}),
            serde_json::json!({"query": "x", "topk": 2}),
        ] {
            assert!(parse_search(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_names() {
        assert_eq!(upload_name("docs/手冊.md").unwrap(), "手冊.md");
        assert_eq!(upload_name("..\\x.pdf").unwrap(), "x.pdf");
        for bad in ["", "dir/", ".env", "a\nb"] {
            assert!(upload_name(bad).is_err(), "{bad:?}");
        }
    }
}
