//! The request ledger: one row per request that Tandem served, in a SQLite file.
//!
//! # What is stored
//!
//! Every request — answered locally, escalated to a remote LLM, rejected by policy or failed —
//! is recorded as a [`LedgerRecord`]: which rule routed it and why, which models were called and
//! which one answered, token counts (total and the part that went to remote models), actual cost
//! and the cost the reference LLM would have had, latency (total, time to first token, Tandem's
//! own overhead), which kinds of PII were detected and what was done about them, the HTTP status
//! and error, and whether any data left the machine.
//!
//! # Privacy
//!
//! The ledger never stores the prompt or the answer of a request that stayed local. The only
//! request content stored is [`LedgerRecord::sent_out`]: **exactly what left the machine**, i.e.
//! the body that was sent to a remote upstream, *already masked by the caller* (PII replaced
//! according to the PII policy). The ledger does not mask anything itself; it is an audit trail
//! of what was disclosed, so it stores what the caller hands it verbatim. `key_id` is a short
//! non-secret identifier (the caller hashes the API key); the key itself is never stored.
//! The ledger file is as sensitive as the data that was sent out — protect it accordingly.
//!
//! Opt-in (`server.ledger_vectors`): the classifier's embedding of each request's last user
//! message ([`RequestVector`], 384 floats for MiniLM), so that `tandem router train --ledger`
//! can learn from users' ratings ([`Feedback`]). An embedding is not the text, but similar
//! texts have similar embeddings and partial inversion is possible: treat them as derived
//! from the prompts.
//!
//! # Writing
//!
//! [`Ledger::record`] never blocks and never does I/O on the caller's thread: it pushes the record
//! onto a bounded channel (capacity [`QUEUE_CAPACITY`]). One background writer thread drains the
//! channel and inserts records in batches (up to [`MAX_BATCH`] records per transaction) with a
//! cached prepared statement. When the queue is full the record is dropped and counted
//! ([`Ledger::dropped`]) with a rate-limited warning. Write failures are logged with `tracing` and
//! counted ([`Ledger::write_errors`]); they never panic. When the disk is full (or the file
//! cannot be written for another passing reason) the batch is kept in memory, up to
//! [`MAX_PENDING`] records ([`Ledger::pending`]), and retried every half second and with every
//! new batch, so that nothing is lost once there is room again. [`Ledger::flush`] waits until everything
//! recorded before the call has been written. When the last [`Ledger`] handle is dropped the
//! writer drains the queue, commits and exits, and the drop joins it.
//!
//! # Reading
//!
//! Reads ([`Ledger::stats`], [`Ledger::recent`], [`Ledger::get`]) use a second connection
//! (`PRAGMA query_only`) guarded by a mutex. With a file the database is in WAL mode, so reads do
//! not block the writer and see a consistent snapshot; [`Ledger::stats`] runs all its queries in
//! one read transaction. Another process (e.g. the `tandem ledger` CLI) can open the same file
//! while the server is running.
//!
//! # Schema
//!
//! `request_vectors` (id, embedding model, little-endian f32 BLOB; one per id) and
//! `feedback` (id, time, score 0–1; every rating kept) hold the learning data (schema
//! version 3). The main table, `requests`: an integer `seq` primary key (insertion order), one column per scalar
//! field of [`LedgerRecord`], JSON text for the lists (`reasons`, `models_called`, `pii_kinds`)
//! and for `sent_out` (SQL `NULL` when nothing was sent). Booleans are `0`/`1`. Indexes on `id`,
//! `ts_ms`, `route` and `(tenant, ts_ms)`. `id` is deliberately not unique: a duplicate request id
//! is kept (an audit log does not overwrite); [`Ledger::get`] returns the latest one. The schema is
//! versioned with `PRAGMA user_version` and migrated forward on open; a file written by a newer
//! version is refused ([`LedgerError::SchemaTooNew`]). `PRAGMA application_id` marks the file as a
//! Tandem ledger so that another application's SQLite file is refused too.
//!
//! Non-finite floats: SQLite stores NaN as `NULL`, so a NaN in a required float field is stored
//! as `0.0` and a NaN `confidence`/`ttft_ms` as `None`. Infinities are stored as they are.

mod query;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use rusqlite::Connection;

/// Capacity of the queue between [`Ledger::record`] and the writer thread.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Most records written in one transaction.
pub const MAX_BATCH: usize = 512;

/// Records kept in memory while the database cannot be written (a full disk); more are
/// dropped and counted in [`Ledger::dropped`].
pub const MAX_PENDING: usize = 20_000;
/// At most one "queue full" warning per this interval.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, as recorded in the ledger.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LedgerRecord {
    /// Request id (e.g. `chatcmpl-…`).
    pub id: String,
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    pub tenant: Option<String>,
    /// A short non-secret id of the API key (the caller hashes the key).
    pub key_id: Option<String>,
    /// `"chat"`, `"completions"`, `"explain"`, ...
    pub endpoint: String,
    pub requested_model: String,
    /// Name of the routing rule that decided.
    pub route: String,
    pub reasons: Vec<String>,
    pub category: Option<String>,
    /// `"model"` | `"cascade"` | `"reject"` | `"direct"`.
    pub action: String,
    /// Models called, in call order, e.g. `["qwen-0.5b", "gpt"]`.
    pub models_called: Vec<String>,
    /// Model whose answer was returned.
    pub answered_by: Option<String>,
    /// Answered by a local model.
    pub local: bool,
    /// A cascade escalated to the LLM.
    pub escalated: bool,
    pub confidence: Option<f64>,
    /// Total over all calls.
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The part of `prompt_tokens` sent to remote models.
    pub remote_prompt_tokens: u32,
    /// The part of `completion_tokens` returned by remote models.
    pub remote_completion_tokens: u32,
    /// Actual cost (the caller computes it from prices).
    pub cost_usd: f64,
    /// What sending this request to the reference LLM would have cost (the caller computes it).
    pub baseline_cost_usd: f64,
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
    /// Tandem's own time (routing, PII, classification).
    pub overhead_ms: f64,
    pub pii_kinds: Vec<String>,
    /// `"mask"` | `"block"` | `"force_local"` | `"allow"`.
    pub pii_action: Option<String>,
    /// Any data was sent to a remote upstream.
    pub left_machine: bool,
    /// Exactly what was sent out (the masked body), when anything was.
    pub sent_out: Option<serde_json::Value>,
    pub status: u16,
    pub error: Option<String>,
    /// Knowledge base of a RAG answer.
    #[serde(default)]
    pub rag_kb: Option<String>,
    /// RAG mode: `local`, `escalate`, `compress`, `draft_verify`.
    #[serde(default)]
    pub rag_mode: Option<String>,
    /// Tokens (prompt + completion) spent on the large model, local or remote.
    #[serde(default)]
    pub llm_tokens: u32,
    /// RAG: estimated tokens saved against sending every retrieved chunk to the LLM.
    #[serde(default)]
    pub rag_tokens_saved: i64,
    /// The client's API: `openai`, `anthropic` or `responses` (`None` for records written
    /// before it was recorded, and for endpoints other than chat).
    #[serde(default)]
    pub dialect: Option<String>,
    /// Names of the functions the answer called, in order.
    #[serde(default)]
    pub tool_calls: Vec<String>,
    /// The answer was generated under a grammar (a JSON schema, JSON mode or a tool's
    /// parameters) on the local engine.
    #[serde(default)]
    pub constrained: bool,
    /// The script the answer was to be written in (`zh-TW`), when the policy set one.
    #[serde(default)]
    pub answer_script: Option<String>,
    /// Simplified Chinese in the answer was converted to that script.
    #[serde(default)]
    pub script_converted: bool,
}

impl LedgerRecord {
    /// An error: `status >= 400` or `error` set.
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }

    /// Answered: not an error, not a policy reject, and some model's answer was returned.
    /// This is the denominator of [`Stats::local_share`].
    pub fn is_answered(&self) -> bool {
        !self.is_error() && self.action != "reject" && self.answered_by.is_some()
    }
}

/// Which records [`Ledger::stats`] aggregates.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    /// Only records with `ts_ms >= since_ms`; `None` = all.
    pub since_ms: Option<i64>,
    /// Only this tenant; `None` = all tenants (including records without a tenant).
    pub tenant: Option<String>,
}

/// Aggregates over the records selected by a [`StatsFilter`].
///
/// Definitions (see [`LedgerRecord::is_error`] and [`LedgerRecord::is_answered`]):
/// - `requests`: all selected records; `errors`: those with `status >= 400` or an error.
/// - `local_requests`: answered records with `local`; `local_share` = `local_requests` /
///   answered records — errors, rejects and records without `answered_by` are excluded from the
///   denominator; `0.0` when nothing was answered.
/// - `escalations`, `left_machine`, tokens and costs: over all selected records (an error can
///   still have cost money or sent data out). `remote_tokens` = remote prompt + completion tokens.
/// - `savings_usd` = `baseline_cost_usd - cost_usd` (negative when Tandem cost more);
///   `savings_pct` = `savings_usd / baseline_cost_usd * 100`, `0.0` when the baseline is not
///   positive (never NaN).
/// - `by_route`: sorted by requests descending, then route name.
/// - `by_model`: keyed by `answered_by` (records without it are not counted); tokens and cost
///   are the request totals (all calls of the request), attributed to the answering model;
///   `local` is true if any of its records was answered locally. Sorted by requests descending,
///   then model name.
/// - `pii`: one entry per (`pii_action`, kind) pair, counting records whose `pii_kinds` contains
///   the kind (a kind listed twice in one record counts once); records without PII kinds are not
///   counted; a missing action is reported as `"none"`. Sorted by requests descending, then
///   action, then kind.
/// - `latency_ms`: over answered records only; nearest-rank percentiles of `total_ms` (the
///   smallest value such that at least p% of the values are <= it) and mean `overhead_ms`; all
///   `0.0` when nothing was answered.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub local_requests: u64,
    pub local_share: f64,
    pub escalations: u64,
    pub left_machine: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub remote_tokens: u64,
    pub cost_usd: f64,
    pub baseline_cost_usd: f64,
    pub savings_usd: f64,
    pub savings_pct: f64,
    pub by_route: Vec<RouteStats>,
    pub by_model: Vec<ModelStats>,
    pub pii: Vec<PiiStats>,
    pub latency_ms: Latency,
    /// Knowledge-base answers per mode.
    pub rag: Vec<RagStats>,
}

/// Per routing rule; see [`Stats`].
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub local_requests: u64,
    pub escalations: u64,
    pub cost_usd: f64,
    pub baseline_cost_usd: f64,
}

/// Per answering model; see [`Stats`].
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct ModelStats {
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub local: bool,
}

/// Knowledge-base (RAG) answers of one mode: how many, the LLM tokens they spent, and the
/// tokens they saved against sending every retrieved chunk to the LLM. Sorted by mode.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct RagStats {
    pub mode: String,
    pub requests: u64,
    pub escalations: u64,
    pub llm_tokens: u64,
    pub tokens_saved: i64,
}

/// Per PII action and kind; see [`Stats`].
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct PiiStats {
    pub action: String,
    pub kind: String,
    pub requests: u64,
}

/// Latency in milliseconds; see [`Stats`].
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean_overhead_ms: f64,
}

/// Ledger errors.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: not a SQLite database (or it is encrypted or corrupt)")]
    NotADatabase { path: PathBuf },
    #[error(
        "ledger {path}: SQLite database of another application (application_id {found:#x}), not a Tandem ledger"
    )]
    ForeignDatabase { path: PathBuf, found: i64 },
    #[error(
        "ledger {path}: schema version {found} is newer than this build supports ({supported}); use a newer tandem"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("ledger {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ledger {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger: cannot start the writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("ledger: the writer thread is not running")]
    WriterGone,
    #[error("ledger: a rating must be a number from 0 to 1, got {0}")]
    BadScore(f64),
    #[error("ledger: the rating was not stored: {0}")]
    NotStored(String),
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The classifier's embedding of one request's last user message (see
/// [`Ledger::record_vector`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestVector {
    /// The request id (as in [`LedgerRecord::id`]).
    pub id: String,
    /// The embedding model's name.
    pub model: String,
    pub vector: Vec<f32>,
}

/// A user's rating of one answer (see [`Ledger::add_feedback`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The request id (the `id` of the completion the user rated).
    pub id: String,
    pub ts_ms: i64,
    /// 1 = the answer was good, 0 = it was not (anything between for graded scores).
    pub score: f64,
}

/// One learning example from the ledger: a request the SLM answered, with its embedding and
/// the mean of its ratings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingExample {
    pub id: String,
    pub vector: Vec<f32>,
    /// Mean rating, 0–1.
    pub score: f64,
    /// How many ratings were averaged.
    pub ratings: u64,
}

/// What [`Ledger::training_examples`] found: the examples, and how many rated requests it
/// could not use and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingSet {
    pub examples: Vec<TrainingExample>,
    /// Rated ids with no request in the ledger.
    pub unknown_ids: u64,
    /// Rated requests answered by another model than the one asked for (a rating of the
    /// LLM's answer says nothing about the SLM's).
    pub other_model: u64,
    /// Rated requests without a stored embedding of this model (recorded before
    /// `server.ledger_vectors` was on, or with another embedding model).
    pub without_vector: u64,
}

/// Where the writer says whether a rating was committed (the error's text if not).
type FeedbackAck = Sender<Result<(), String>>;

/// Messages to the writer thread.
enum Msg {
    Record(Box<LedgerRecord>),
    Vector(Box<RequestVector>),
    /// A rating, and where to say whether it was committed.
    Feedback(Feedback, FeedbackAck),
    /// Reply once everything queued before this message is written.
    Flush(Sender<()>),
    /// The last handle is gone: write what is queued and exit.
    Shutdown,
    /// Cap the database's size in bytes (None: no cap).
    SetMaxBytes(Option<u64>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    /// Records kept for a retry after a full disk or an I/O error.
    pending: AtomicU64,
}

struct Inner {
    tx: Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    counters: Arc<Counters>,
    /// Time base for the drop-warning rate limit.
    epoch: Instant,
    /// Milliseconds since `epoch` of the last drop warning; `u64::MAX` = never.
    last_drop_warn_ms: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone, so nobody else can send: everything recorded is queued before
        // `Shutdown`. If the writer is already gone the send fails, and the join below returns.
        let _ = self.tx.send(Msg::Shutdown);
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("ledger writer thread panicked");
        }
    }
}

/// The request ledger. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .field("write_errors", &self.write_errors())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creates) the SQLite file at `path` (and its parent directory), switches it to WAL
    /// mode, migrates the schema (`PRAGMA user_version`) and starts the background writer thread.
    ///
    /// Errors: [`LedgerError::NotADatabase`] for a file that is not SQLite,
    /// [`LedgerError::ForeignDatabase`] for another application's SQLite file,
    /// [`LedgerError::SchemaTooNew`] for a ledger written by a newer version.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| LedgerError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let label = path.to_path_buf();
        let writer = schema::open_connection(path, &label, true)?;
        let reader = schema::open_connection(path, &label, false)?;
        Self::start(writer, reader)
    }

    /// An in-memory ledger, for tests.
    ///
    /// It uses SQLite's `memdb` VFS with a unique name (`file:/tandem-ledger-<pid>-<n>?vfs=memdb`),
    /// which lets the writer and the reader connection share one in-memory database with normal
    /// locking (WAL is not available in memory; a rollback journal in memory is used instead, so a
    /// read may briefly wait for a commit). The database disappears with the last handle.
    pub fn open_in_memory() -> Result<Ledger, LedgerError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!("file:/tandem-ledger-{}-{n}?vfs=memdb", std::process::id());
        let label = PathBuf::from(":memory:");
        let writer = schema::open_connection(Path::new(&uri), &label, true)?;
        let reader = schema::open_connection(Path::new(&uri), &label, false)?;
        Self::start(writer, reader)
    }

    fn start(writer: Connection, reader: Connection) -> Result<Ledger, LedgerError> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let handle = std::thread::Builder::new()
            .name("tandem-ledger-writer".into())
            .spawn(move || writer::run(writer, rx, &thread_counters))
            .map_err(LedgerError::Spawn)?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                tx,
                writer: Mutex::new(Some(handle)),
                reader: Mutex::new(reader),
                counters,
                epoch: Instant::now(),
                last_drop_warn_ms: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// Queues `r` for writing. Never blocks and never does I/O: if the queue is full (or the
    /// writer is gone) the record is dropped and counted in [`Ledger::dropped`], with a warning at
    /// most every 10 s.
    pub fn record(&self, r: LedgerRecord) {
        match self.inner.tx.try_send(Msg::Record(Box::new(r))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.note_drop("queue full"),
            Err(TrySendError::Disconnected(_)) => self.note_drop("writer not running"),
        }
    }

    /// Queues the embedding of a request (like [`Ledger::record`]: never blocks, dropped and
    /// counted when the queue is full). A second vector for the same id replaces the first.
    pub fn record_vector(&self, v: RequestVector) {
        match self.inner.tx.try_send(Msg::Vector(Box::new(v))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.note_drop("queue full"),
            Err(TrySendError::Disconnected(_)) => self.note_drop("writer not running"),
        }
    }

    /// Stores a rating and waits until it is committed (it blocks: call it off async
    /// threads). Unlike [`Ledger::record`], a rating is never dropped silently: the user
    /// asked for it to be kept, so a failed write is an error.
    /// Errors: [`LedgerError::BadScore`] for a score outside 0–1 (or NaN),
    /// [`LedgerError::NotStored`] when the write failed (disk full, read-only file...),
    /// [`LedgerError::WriterGone`].
    pub fn add_feedback(&self, f: Feedback) -> Result<(), LedgerError> {
        if !(0.0..=1.0).contains(&f.score) {
            return Err(LedgerError::BadScore(f.score));
        }
        let (ack, done) = crossbeam_channel::bounded(1);
        self.inner
            .tx
            .send(Msg::Feedback(f, ack))
            .map_err(|_| LedgerError::WriterGone)?;
        done.recv()
            .map_err(|_| LedgerError::WriterGone)?
            .map_err(LedgerError::NotStored)
    }

    /// The requests answered by `answered_by` that users rated and whose embedding by
    /// `model` was stored: what `tandem router train --ledger` learns from. Call
    /// [`Ledger::flush`] first to include what is still queued.
    pub fn training_examples(
        &self,
        model: &str,
        answered_by: &str,
    ) -> Result<TrainingSet, LedgerError> {
        query::training_examples(&mut self.reader(), model, answered_by)
    }

    fn note_drop(&self, why: &'static str) {
        let inner = &self.inner;
        let total = inner.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = inner.last_drop_warn_ms.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= DROP_WARN_INTERVAL.as_millis() as u64;
        if due
            && inner
                .last_drop_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, "ledger: {why}, dropping records");
        }
    }

    /// Waits until every record queued before this call is written (or failed to be written,
    /// see [`Ledger::write_errors`], or is kept for a retry because the disk is full, see
    /// [`Ledger::pending`]). Blocks while the queue is full.
    /// Errors with [`LedgerError::WriterGone`] if the writer thread is not running.
    pub fn flush(&self) -> Result<(), LedgerError> {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        self.inner
            .tx
            .send(Msg::Flush(ack_tx))
            .map_err(|_| LedgerError::WriterGone)?;
        ack_rx.recv().map_err(|_| LedgerError::WriterGone)
    }

    /// Records dropped because the queue was full or the writer was gone.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records written (committed).
    pub fn written(&self) -> u64 {
        self.inner.counters.written.load(Ordering::Relaxed)
    }

    /// Records the writer failed to write (logged with `tracing`).
    pub fn write_errors(&self) -> u64 {
        self.inner.counters.write_errors.load(Ordering::Relaxed)
    }

    /// Records waiting for a retry because the disk was full (or the database could not be
    /// written for another passing reason); they are written when it can be again.
    pub fn pending(&self) -> u64 {
        self.inner.counters.pending.load(Ordering::Relaxed)
    }

    /// Caps the database at about `max` bytes (SQLite's `max_page_count`; never below its
    /// current size), or lifts the cap. Writes past the cap fail as on a full disk: the
    /// records are kept (up to [`MAX_PENDING`]) and retried.
    pub fn set_max_bytes(&self, max: Option<u64>) -> Result<(), LedgerError> {
        self.inner
            .tx
            .send(Msg::SetMaxBytes(max))
            .map_err(|_| LedgerError::WriterGone)
    }

    /// Aggregates over the records selected by `filter`; see [`Stats`] for the definitions.
    /// All queries run in one read transaction, so the numbers are consistent with each other.
    /// Call [`Ledger::flush`] first to include records still queued.
    pub fn stats(&self, filter: &StatsFilter) -> Result<Stats, LedgerError> {
        query::stats(&mut self.reader(), filter)
    }

    /// The `limit` most recent records, most recent first (by `ts_ms`, then insertion order).
    pub fn recent(&self, limit: usize) -> Result<Vec<LedgerRecord>, LedgerError> {
        query::recent(&self.reader(), limit)
    }

    /// The record with this request id (the latest one written, should the id be duplicated).
    pub fn get(&self, id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        query::get(&self.reader(), id)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection in a bad state (any open
        // transaction is rolled back when its guard unwinds), so poisoning is ignored.
        self.inner.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Ledger>();
    }

    #[test]
    fn error_and_answered_definitions() {
        let mut r = LedgerRecord {
            status: 200,
            answered_by: Some("m".into()),
            action: "model".into(),
            ..Default::default()
        };
        assert!(!r.is_error() && r.is_answered());
        r.action = "reject".into();
        assert!(!r.is_answered());
        r.action = "model".into();
        r.error = Some("boom".into());
        assert!(r.is_error() && !r.is_answered());
        r.error = None;
        r.status = 502;
        assert!(r.is_error());
    }
}
