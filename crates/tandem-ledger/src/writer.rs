//! The background writer thread.

use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, Statement, TransactionBehavior, params};

use crate::{
    Counters, Feedback, FeedbackAck, LedgerRecord, MAX_BATCH, MAX_PENDING, Msg, RequestVector,
};

/// One write of a batch.
enum Write {
    Record(Box<LedgerRecord>),
    Vector(Box<RequestVector>),
    Feedback(Feedback, FeedbackAck),
}

/// The record columns, in [`LedgerRecord`] field order (shared with the queries).
pub(crate) const COLUMNS: &str = "id, ts_ms, tenant, key_id, endpoint, requested_model, route, \
    reasons, category, action, models_called, answered_by, local, escalated, confidence, \
    prompt_tokens, completion_tokens, remote_prompt_tokens, remote_completion_tokens, cost_usd, \
    baseline_cost_usd, ttft_ms, total_ms, overhead_ms, pii_kinds, pii_action, left_machine, \
    sent_out, status, error, rag_kb, rag_mode, llm_tokens, rag_tokens_saved, dialect, tool_calls, \
    constrained, answer_script, script_converted";

const INSERT: &str = "INSERT INTO requests (id, ts_ms, tenant, key_id, endpoint, \
    requested_model, route, reasons, category, action, models_called, answered_by, local, \
    escalated, confidence, prompt_tokens, completion_tokens, remote_prompt_tokens, \
    remote_completion_tokens, cost_usd, baseline_cost_usd, ttft_ms, total_ms, overhead_ms, \
    pii_kinds, pii_action, left_machine, sent_out, status, error, rag_kb, rag_mode, llm_tokens, \
    rag_tokens_saved, dialect, tool_calls, constrained, answer_script, script_converted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
    ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, \
    ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39)";

/// Runs until `Shutdown` arrives or every sender is gone.
///
/// When a batch cannot be written for a reason that passes (a full disk), its records are
/// kept (`pending`) and everything that arrives meanwhile queues behind them without being
/// tried; a retry happens every [`RETRY_EVERY`], on a flush, on a change of the size cap and
/// at shutdown, in transactions of at most [`MAX_BATCH`] writes.
pub(crate) fn run(mut conn: Connection, rx: Receiver<Msg>, counters: &Counters) {
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<Sender<()>> = Vec::new();
    let mut pending: Vec<Write> = Vec::new();
    let mut last_failure: Option<std::time::Instant> = None;
    loop {
        let first = if pending.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(RETRY_EVERY) {
                Ok(m) => Some(m),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        };
        let (mut shutdown, mut nudged) = (false, false);
        let mut next = first;
        // Take whatever is queued (up to a batch unless records are waiting anyway); stop at a
        // flush so that it is answered soon.
        while let Some(msg) = next {
            match msg {
                Msg::Record(r) => batch.push(Write::Record(r)),
                Msg::Vector(v) => batch.push(Write::Vector(v)),
                Msg::Feedback(f, ack) => batch.push(Write::Feedback(f, ack)),
                Msg::SetMaxBytes(max) => {
                    set_max_bytes(&conn, max);
                    nudged = true;
                }
                Msg::Flush(ack) => {
                    acks.push(ack);
                    nudged = true;
                    break;
                }
                Msg::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if pending.is_empty() && batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let due = pending.is_empty()
            || nudged
            || shutdown
            || last_failure.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
        let mut all = std::mem::take(&mut pending);
        all.append(&mut batch);
        // Writes that were tried and failed (their ratings are answered), from `failed_from`.
        let (mut failed_from, mut tried_to) = (all.len(), all.len());
        if due {
            let mut at = 0;
            for chunk in all.chunks(MAX_BATCH) {
                if !write_batch(&mut conn, chunk, counters) {
                    (failed_from, tried_to) = (at, at + chunk.len());
                    break;
                }
                at += chunk.len();
            }
            if failed_from == all.len() {
                last_failure = None;
            } else {
                last_failure = Some(std::time::Instant::now());
            }
        } else {
            failed_from = 0;
            tried_to = 0;
        }
        for (i, w) in all.into_iter().enumerate().skip(failed_from) {
            match w {
                // A rating's caller waits for its answer: it is not kept.
                Write::Feedback(_, ack) => {
                    if i >= tried_to {
                        let _ =
                            ack.send(Err("the ledger cannot be written now (disk full?)".into()));
                    }
                }
                w => pending.push(w),
            }
        }
        let over = pending.len().saturating_sub(MAX_PENDING);
        if over > 0 {
            pending.drain(..over);
            counters.dropped.fetch_add(over as u64, Ordering::Relaxed);
            tracing::error!(
                dropped = over,
                "ledger: too many records waiting for room, dropping the oldest"
            );
        }
        counters
            .pending
            .store(pending.len() as u64, Ordering::Relaxed);
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if shutdown {
            break;
        }
    }
    if !pending.is_empty() {
        tracing::error!(
            records = pending.len(),
            "ledger: closing with records that could not be written"
        );
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "ledger: closing the database failed");
    }
}

/// How often records kept by a full disk are retried.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// `PRAGMA max_page_count` from a size in bytes (None: SQLite's maximum).
fn set_max_bytes(conn: &Connection, max: Option<u64>) {
    let page: u64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap_or(4096);
    let pages = max.map_or(4_294_967_294, |m| (m / page.max(1)).max(1));
    if let Err(e) = conn.pragma_update(None, "max_page_count", pages) {
        tracing::warn!(error = %e, "ledger: cannot set the size cap");
    }
}

/// Errors that pass: a full disk, a transient I/O failure, a lock held too long.
fn is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked)
    )
}

/// Writes `batch` in one transaction. Failures are logged and counted, never fatal; each
/// rating's sender learns whether it was committed. False when nothing was written for a
/// reason that passes (a full disk): the caller keeps the batch for a retry.
fn write_batch(conn: &mut Connection, batch: &[Write], counters: &Counters) -> bool {
    if batch.is_empty() {
        return true;
    }
    // Outcome of each rating's row, answered only once the transaction's fate is known.
    let mut rated: Vec<(&FeedbackAck, Result<(), String>)> = Vec::new();
    let result = (|| -> rusqlite::Result<(u64, u64)> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut ok, mut failed) = (0u64, 0u64);
        {
            for w in batch {
                // A failing row (say a constraint) is undone alone; the others still commit.
                let (id, result) = match w {
                    Write::Record(r) => (&r.id, insert(&mut *tx.prepare_cached(INSERT)?, r)),
                    Write::Vector(v) => (&v.id, insert_vector(&tx, v)),
                    Write::Feedback(f, _) => (&f.id, insert_feedback(&tx, f)),
                };
                if let Write::Feedback(_, ack) = w {
                    rated.push((ack, result.as_ref().map(|_| ()).map_err(|e| e.to_string())));
                }
                match result {
                    Ok(()) => ok += u64::from(matches!(w, Write::Record(_))),
                    // Some errors roll the whole transaction back; a full disk or an I/O error
                    // gives the batch up too (it is kept and retried as a whole).
                    Err(e) if tx.is_autocommit() || is_transient(&e) => return Err(e),
                    Err(e) => {
                        failed += 1;
                        tracing::error!(id = %id, error = %e, "ledger: cannot write record");
                    }
                }
            }
        }
        tx.commit()?;
        Ok((ok, failed))
    })();
    match result {
        Ok((ok, failed)) => {
            counters.written.fetch_add(ok, Ordering::Relaxed);
            counters.write_errors.fetch_add(failed, Ordering::Relaxed);
            for (ack, outcome) in rated {
                let _ = ack.send(outcome);
            }
            true
        }
        Err(e) if is_transient(&e) => {
            for w in batch {
                if let Write::Feedback(_, ack) = w {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
            tracing::error!(records = batch.len(), error = %e, "ledger: cannot write now, keeping the records for a retry");
            false
        }
        Err(e) => {
            // Nothing of the batch was committed, whatever each row's insert said.
            for w in batch {
                if let Write::Feedback(_, ack) = w {
                    let _ = ack.send(Err(e.to_string()));
                }
            }
            counters
                .write_errors
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::error!(
                records = batch.len(),
                error = %e,
                "ledger: cannot write a batch of records"
            );
            true
        }
    }
}

fn insert_vector(conn: &Connection, v: &RequestVector) -> rusqlite::Result<()> {
    let bytes: Vec<u8> = v.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO request_vectors (id, model, vector) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![v.id, v.model, bytes])?;
    Ok(())
}

fn insert_feedback(conn: &Connection, f: &Feedback) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO feedback (id, ts_ms, score) VALUES (?1, ?2, ?3)")?
        .execute(params![f.id, f.ts_ms, f.score])?;
    Ok(())
}

fn insert(stmt: &mut Statement<'_>, r: &LedgerRecord) -> rusqlite::Result<()> {
    let sent_out = r.sent_out.as_ref().map(to_json).transpose()?;
    stmt.execute(params![
        r.id,
        r.ts_ms,
        r.tenant,
        r.key_id,
        r.endpoint,
        r.requested_model,
        r.route,
        to_json(&r.reasons)?,
        r.category,
        r.action,
        to_json(&r.models_called)?,
        r.answered_by,
        r.local,
        r.escalated,
        r.confidence.filter(|c| !c.is_nan()),
        r.prompt_tokens,
        r.completion_tokens,
        r.remote_prompt_tokens,
        r.remote_completion_tokens,
        not_nan(r.cost_usd),
        not_nan(r.baseline_cost_usd),
        r.ttft_ms.filter(|t| !t.is_nan()),
        not_nan(r.total_ms),
        not_nan(r.overhead_ms),
        to_json(&r.pii_kinds)?,
        r.pii_action,
        r.left_machine,
        sent_out,
        r.status,
        r.error,
        r.rag_kb,
        r.rag_mode,
        r.llm_tokens,
        r.rag_tokens_saved,
        r.dialect,
        to_json(&r.tool_calls)?,
        r.constrained,
        r.answer_script,
        r.script_converted,
    ])?;
    Ok(())
}

/// SQLite turns NaN into NULL, which a NOT NULL column refuses: store 0 instead.
fn not_nan(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x }
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}
