//! Opening connections and migrating the schema.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::{BUSY_TIMEOUT, LedgerError};

/// `PRAGMA application_id` of a Tandem ledger ("TDML").
pub(crate) const APPLICATION_ID: i64 = 0x5444_4d4c;

/// Forward migrations: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
/// Never edit a released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE requests (
        seq                      INTEGER PRIMARY KEY,
        id                       TEXT    NOT NULL,
        ts_ms                    INTEGER NOT NULL,
        tenant                   TEXT,
        key_id                   TEXT,
        endpoint                 TEXT    NOT NULL,
        requested_model          TEXT    NOT NULL,
        route                    TEXT    NOT NULL,
        reasons                  TEXT    NOT NULL DEFAULT '[]',
        category                 TEXT,
        action                   TEXT    NOT NULL,
        models_called            TEXT    NOT NULL DEFAULT '[]',
        answered_by              TEXT,
        local                    INTEGER NOT NULL,
        escalated                INTEGER NOT NULL,
        confidence               REAL,
        prompt_tokens            INTEGER NOT NULL,
        completion_tokens        INTEGER NOT NULL,
        remote_prompt_tokens     INTEGER NOT NULL,
        remote_completion_tokens INTEGER NOT NULL,
        cost_usd                 REAL    NOT NULL,
        baseline_cost_usd        REAL    NOT NULL,
        ttft_ms                  REAL,
        total_ms                 REAL    NOT NULL,
        overhead_ms              REAL    NOT NULL,
        pii_kinds                TEXT    NOT NULL DEFAULT '[]',
        pii_action               TEXT,
        left_machine             INTEGER NOT NULL,
        sent_out                 TEXT,
        status                   INTEGER NOT NULL,
        error                    TEXT
    );
    CREATE INDEX requests_id ON requests(id);
    CREATE INDEX requests_ts ON requests(ts_ms);
    CREATE INDEX requests_route ON requests(route);
    CREATE INDEX requests_tenant_ts ON requests(tenant, ts_ms);",
    // 2: knowledge-base answers (RAG): base, mode, LLM tokens, tokens saved.
    "ALTER TABLE requests ADD COLUMN rag_kb TEXT;
    ALTER TABLE requests ADD COLUMN rag_mode TEXT;
    ALTER TABLE requests ADD COLUMN llm_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN rag_tokens_saved INTEGER NOT NULL DEFAULT 0;",
    // 3: learning from the ledger: the classifier's embedding of a request (opt-in,
    // `server.ledger_vectors`) and users' ratings of answers.
    "CREATE TABLE request_vectors (
        id     TEXT PRIMARY KEY,
        model  TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE TABLE feedback (
        seq   INTEGER PRIMARY KEY,
        id    TEXT    NOT NULL,
        ts_ms INTEGER NOT NULL,
        score REAL    NOT NULL
    );
    CREATE INDEX feedback_id ON feedback(id);",
    // 4: agents: the client's dialect, the tool calls in the answer, schema-constrained output.
    "ALTER TABLE requests ADD COLUMN dialect TEXT;
    ALTER TABLE requests ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE requests ADD COLUMN constrained INTEGER NOT NULL DEFAULT 0;",
    // 5: the script of the answer (`zh-TW`) and whether Simplified text in it was converted.
    "ALTER TABLE requests ADD COLUMN answer_script TEXT;
    ALTER TABLE requests ADD COLUMN script_converted INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Opens a connection to `path` (`label` names it in errors). The writer connection (opened
/// first) sets WAL mode and migrates; the reader connection is `query_only` and checks that
/// the schema is one it understands.
pub(crate) fn open_connection(
    path: &Path,
    label: &Path,
    writer: bool,
) -> Result<Connection, LedgerError> {
    let mut conn = Connection::open(path).map_err(|e| classify(label, e))?;
    configure(&conn, writer).map_err(|e| classify(label, e))?;
    if writer {
        migrate(&mut conn, label)?;
    } else {
        check_version(&conn, label)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| classify(label, e))?;
    }
    Ok(conn)
}

fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Reading the journal mode reads the file header: a file that is not SQLite fails here.
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if writer && mode != "memory" {
        // WAL: readers (this process's reader connection, the CLI) never block the writer.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
        if mode != "wal" {
            tracing::warn!(mode, "ledger: WAL mode not available");
        }
    }
    // In WAL mode NORMAL is durable against application crashes, and much faster than FULL.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Applies the missing migrations in one immediate transaction, so that two processes opening
/// a new file at once do not both create the schema.
fn migrate(conn: &mut Connection, label: &Path) -> Result<(), LedgerError> {
    let err = |e| classify(label, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version = check_version(&tx, label)?;
    if version < latest_version() {
        if version == 0 {
            // A new file, or an existing SQLite file of nobody's (application_id 0, checked
            // above): claim it. If it already has a `requests` table, creating ours fails.
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(err)?;
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(err)?;
            tracing::info!(path = %label.display(), version = i + 1, "ledger: schema migrated");
        }
    }
    tx.commit().map_err(err)
}

/// Checks `application_id` and `user_version`; returns the version.
fn check_version(conn: &Connection, label: &Path) -> Result<i64, LedgerError> {
    let err = |e| classify(label, e);
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    // A fresh file has neither; a ledger has both. Anything else is someone else's database.
    if app != APPLICATION_ID && (app != 0 || version != 0) {
        return Err(LedgerError::ForeignDatabase {
            path: label.to_path_buf(),
            found: app,
        });
    }
    if version > latest_version() || version < 0 {
        return Err(LedgerError::SchemaTooNew {
            path: label.to_path_buf(),
            found: version,
            supported: latest_version(),
        });
    }
    Ok(version)
}

/// Maps SQLite errors while opening to the clearer variants.
fn classify(label: &Path, e: rusqlite::Error) -> LedgerError {
    let path: PathBuf = label.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => LedgerError::NotADatabase { path },
        _ => LedgerError::Open { path, source: e },
    }
}
