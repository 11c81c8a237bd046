//! Reads: records and aggregates.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};

use crate::writer::COLUMNS;
use crate::{
    Latency, LedgerError, LedgerRecord, ModelStats, PiiStats, RagStats, RouteStats, Stats,
    StatsFilter, TrainingExample, TrainingSet,
};

/// SQL for [`LedgerRecord::is_error`].
const IS_ERROR: &str = "(status >= 400 OR error IS NOT NULL)";
/// SQL for [`LedgerRecord::is_answered`].
const IS_ANSWERED: &str =
    "(status < 400 AND error IS NULL AND action <> 'reject' AND answered_by IS NOT NULL)";

pub(crate) fn recent(conn: &Connection, limit: usize) -> Result<Vec<LedgerRecord>, LedgerError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM requests ORDER BY ts_ms DESC, seq DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM requests WHERE id = ?1 ORDER BY seq DESC LIMIT 1"
    ))?;
    Ok(stmt.query_row([id], from_row).optional()?)
}

pub(crate) fn training_examples(
    conn: &mut Connection,
    model: &str,
    answered_by: &str,
) -> Result<TrainingSet, LedgerError> {
    let tx = conn.transaction()?;
    let mut set = TrainingSet::default();
    {
        // Per rated id: the mean rating, who answered (the latest record of the id), and the
        // stored vector of this model.
        let mut stmt = tx.prepare(
            "SELECT f.id, AVG(f.score), COUNT(*),
                    (SELECT r.answered_by FROM requests r WHERE r.id = f.id
                      ORDER BY r.seq DESC LIMIT 1),
                    EXISTS (SELECT 1 FROM requests r WHERE r.id = f.id),
                    (SELECT v.vector FROM request_vectors v WHERE v.id = f.id AND v.model = ?1)
             FROM feedback f GROUP BY f.id ORDER BY MIN(f.seq)",
        )?;
        let mut rows = stmt.query([model])?;
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let known: bool = row.get(4)?;
            let by: Option<String> = row.get(3)?;
            let blob: Option<Vec<u8>> = row.get(5)?;
            if !known {
                set.unknown_ids += 1;
            } else if by.as_deref() != Some(answered_by) {
                set.other_model += 1;
            } else if let Some(blob) = blob.filter(|b| !b.is_empty() && b.len() % 4 == 0) {
                set.examples.push(TrainingExample {
                    id,
                    vector: blob
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    score: row.get(1)?,
                    ratings: row.get::<_, i64>(2)?.max(0) as u64,
                });
            } else {
                set.without_vector += 1;
            }
        }
    }
    tx.commit()?;
    Ok(set)
}

/// The `WHERE` condition for `f` and its named parameters.
fn filter_sql(f: &StatsFilter) -> (String, Vec<(&'static str, Value)>) {
    let mut conds = vec!["1".to_string()];
    let mut vals = Vec::new();
    if let Some(since) = f.since_ms {
        conds.push("ts_ms >= :since".into());
        vals.push((":since", Value::Integer(since)));
    }
    if let Some(tenant) = &f.tenant {
        conds.push("tenant = :tenant".into());
        vals.push((":tenant", Value::Text(tenant.clone())));
    }
    (conds.join(" AND "), vals)
}

pub(crate) fn stats(conn: &mut Connection, f: &StatsFilter) -> Result<Stats, LedgerError> {
    // One read transaction: every query below sees the same snapshot.
    let tx = conn.transaction()?;
    let (filter, vals) = filter_sql(f);
    let params: Vec<(&str, &dyn ToSql)> = vals.iter().map(|(n, v)| (*n, v as &dyn ToSql)).collect();
    let params = params.as_slice();
    let local_answered = format!("COALESCE(SUM({IS_ANSWERED} AND local <> 0), 0)");

    let mut s = tx.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM({IS_ERROR}), 0), COALESCE(SUM({IS_ANSWERED}), 0),
                {local_answered}, COALESCE(SUM(escalated <> 0), 0),
                COALESCE(SUM(left_machine <> 0), 0), COALESCE(SUM(prompt_tokens), 0),
                COALESCE(SUM(completion_tokens), 0),
                COALESCE(SUM(remote_prompt_tokens + remote_completion_tokens), 0),
                TOTAL(cost_usd), TOTAL(baseline_cost_usd)
             FROM requests WHERE {filter}"
        ),
        params,
        |row| {
            let answered: u64 = row.get(2)?;
            let local_requests: u64 = row.get(3)?;
            Ok(Stats {
                requests: row.get(0)?,
                errors: row.get(1)?,
                local_requests,
                local_share: ratio(local_requests as f64, answered as f64),
                escalations: row.get(4)?,
                left_machine: row.get(5)?,
                prompt_tokens: row.get(6)?,
                completion_tokens: row.get(7)?,
                remote_tokens: row.get(8)?,
                cost_usd: row.get(9)?,
                baseline_cost_usd: row.get(10)?,
                ..Stats::default()
            })
        },
    )?;
    s.savings_usd = s.baseline_cost_usd - s.cost_usd;
    s.savings_pct = if s.baseline_cost_usd > 0.0 {
        s.savings_usd / s.baseline_cost_usd * 100.0
    } else {
        0.0
    };

    s.by_route = tx
        .prepare(&format!(
            "SELECT route, COUNT(*), {local_answered}, COALESCE(SUM(escalated <> 0), 0),
                TOTAL(cost_usd), TOTAL(baseline_cost_usd)
             FROM requests WHERE {filter}
             GROUP BY route ORDER BY COUNT(*) DESC, route"
        ))?
        .query_map(params, |row| {
            Ok(RouteStats {
                route: row.get(0)?,
                requests: row.get(1)?,
                local_requests: row.get(2)?,
                escalations: row.get(3)?,
                cost_usd: row.get(4)?,
                baseline_cost_usd: row.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;

    s.by_model = tx
        .prepare(&format!(
            "SELECT answered_by, COUNT(*), COALESCE(SUM(prompt_tokens), 0),
                COALESCE(SUM(completion_tokens), 0), TOTAL(cost_usd), MAX(local <> 0)
             FROM requests WHERE {filter} AND answered_by IS NOT NULL
             GROUP BY answered_by ORDER BY COUNT(*) DESC, answered_by"
        ))?
        .query_map(params, |row| {
            Ok(ModelStats {
                model: row.get(0)?,
                requests: row.get(1)?,
                prompt_tokens: row.get(2)?,
                completion_tokens: row.get(3)?,
                cost_usd: row.get(4)?,
                local: row.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;

    let mut pii: BTreeMap<(String, String), u64> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT pii_action, pii_kinds FROM requests WHERE {filter} AND pii_kinds <> '[]'"
        ))?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            let action: Option<String> = row.get(0)?;
            let action = action.unwrap_or_else(|| "none".into());
            let kinds: BTreeSet<String> = json_col(row, 1)?;
            for kind in kinds {
                *pii.entry((action.clone(), kind)).or_default() += 1;
            }
        }
    }
    s.pii = pii
        .into_iter()
        .map(|((action, kind), requests)| PiiStats {
            action,
            kind,
            requests,
        })
        .collect();
    // Stable: ties keep the (action, kind) order of the map.
    s.pii.sort_by_key(|p| std::cmp::Reverse(p.requests));

    s.rag = tx
        .prepare(&format!(
            "SELECT rag_mode, COUNT(*), COALESCE(SUM(escalated <> 0), 0),
                COALESCE(SUM(llm_tokens), 0), COALESCE(SUM(rag_tokens_saved), 0)
             FROM requests WHERE {filter} AND rag_mode IS NOT NULL
             GROUP BY rag_mode ORDER BY rag_mode"
        ))?
        .query_map(params, |row| {
            Ok(RagStats {
                mode: row.get(0)?,
                requests: row.get(1)?,
                escalations: row.get(2)?,
                llm_tokens: row.get(3)?,
                tokens_saved: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;

    let mut totals = Vec::new();
    let mut overhead = 0.0;
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT total_ms, overhead_ms FROM requests WHERE {filter} AND {IS_ANSWERED}"
        ))?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            totals.push(row.get::<_, f64>(0)?);
            overhead += row.get::<_, f64>(1)?;
        }
    }
    totals.sort_by(f64::total_cmp);
    s.latency_ms = Latency {
        p50: nearest_rank(&totals, 50),
        p95: nearest_rank(&totals, 95),
        p99: nearest_rank(&totals, 99),
        mean_overhead_ms: ratio(overhead, totals.len() as f64),
    };

    tx.commit()?;
    Ok(s)
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Nearest-rank percentile of ascending `sorted`: the value at rank ⌈p/100 · n⌉ (1-based);
/// 0 for no values.
pub(crate) fn nearest_rank(sorted: &[f64], p: usize) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse_json(idx, &text)
}

fn parse_json<T: serde::de::DeserializeOwned>(idx: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// A record from a row of `SELECT {COLUMNS}`.
fn from_row(row: &Row<'_>) -> rusqlite::Result<LedgerRecord> {
    let sent_out: Option<String> = row.get(27)?;
    Ok(LedgerRecord {
        id: row.get(0)?,
        ts_ms: row.get(1)?,
        tenant: row.get(2)?,
        key_id: row.get(3)?,
        endpoint: row.get(4)?,
        requested_model: row.get(5)?,
        route: row.get(6)?,
        reasons: json_col(row, 7)?,
        category: row.get(8)?,
        action: row.get(9)?,
        models_called: json_col(row, 10)?,
        answered_by: row.get(11)?,
        local: row.get(12)?,
        escalated: row.get(13)?,
        confidence: row.get(14)?,
        prompt_tokens: row.get(15)?,
        completion_tokens: row.get(16)?,
        remote_prompt_tokens: row.get(17)?,
        remote_completion_tokens: row.get(18)?,
        cost_usd: row.get(19)?,
        baseline_cost_usd: row.get(20)?,
        ttft_ms: row.get(21)?,
        total_ms: row.get(22)?,
        overhead_ms: row.get(23)?,
        pii_kinds: json_col(row, 24)?,
        pii_action: row.get(25)?,
        left_machine: row.get(26)?,
        sent_out: sent_out.map(|t| parse_json(27, &t)).transpose()?,
        status: row.get(28)?,
        error: row.get(29)?,
        rag_kb: row.get(30)?,
        rag_mode: row.get(31)?,
        llm_tokens: row.get(32)?,
        rag_tokens_saved: row.get(33)?,
        dialect: row.get(34)?,
        tool_calls: json_col(row, 35)?,
        constrained: row.get(36)?,
        answer_script: row.get(37)?,
        script_converted: row.get(38)?,
    })
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), 0.0);
        assert_eq!(nearest_rank(&[7.0], 99), 7.0);
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), 5.0);
        assert_eq!(nearest_rank(&v, 95), 10.0);
        assert_eq!(nearest_rank(&v, 0), 1.0);
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50), 100.0);
        assert_eq!(nearest_rank(&v, 95), 190.0);
        assert_eq!(nearest_rank(&v, 99), 198.0);
    }
}
