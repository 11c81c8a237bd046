#![allow(clippy::unwrap_used)]

use std::time::Instant;

use serde_json::json;
use tandem_ledger::{
    Feedback, Latency, Ledger, LedgerError, LedgerRecord, ModelStats, PiiStats, RequestVector,
    RouteStats, Stats, StatsFilter,
};

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn temp_ledger() -> (tempfile::TempDir, std::path::PathBuf, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    (dir, path, ledger)
}

/// A record with every field set, Unicode included.
fn full_record() -> LedgerRecord {
    LedgerRecord {
        id: "chatcmpl-全部-1".into(),
        ts_ms: 1_700_000_000_123,
        tenant: Some("租户-α".into()),
        key_id: Some("k_3f9a".into()),
        endpoint: "chat".into(),
        requested_model: "auto".into(),
        route: "code-review".into(),
        reasons: strs(&[
            "匹配关键词“代码”",
            "prompt > 2k tokens",
            "emoji 🚀 and \"quotes\"",
        ]),
        category: Some("编程".into()),
        action: "cascade".into(),
        models_called: strs(&["qwen-0.5b", "gpt"]),
        answered_by: Some("gpt".into()),
        local: false,
        escalated: true,
        confidence: Some(0.1 + 0.2),
        prompt_tokens: u32::MAX,
        completion_tokens: 77,
        remote_prompt_tokens: 1234,
        remote_completion_tokens: 56,
        cost_usd: 0.000_123_456_789,
        baseline_cost_usd: 1e-9,
        ttft_ms: Some(12.345_678_9),
        total_ms: 987.654_321,
        overhead_ms: 0.1,
        pii_kinds: strs(&["email", "phone"]),
        pii_action: Some("mask".into()),
        left_machine: true,
        sent_out: Some(json!({
            "model": "gpt",
            "messages": [{"role": "user", "content": "我的邮箱是 [EMAIL_1]，电话 [PHONE_1] 😀"}],
            "temperature": 0.7,
            "top_p": 0.123_456_789_012_345_67,
            "max_tokens": 18_446_744_073_709_551_615u64,
            "n": -3,
            "stop": null,
            "nested": {"a": [1.5e300, 2.2250738585072014e-308, true]}
        })),
        status: 200,
        error: None,
        rag_kb: Some("員工手冊".into()),
        rag_mode: Some("compress".into()),
        llm_tokens: 321,
        rag_tokens_saved: -12,
        dialect: Some("anthropic".into()),
        tool_calls: strs(&["查詢保單", "get_weather"]),
        constrained: true,
        answer_script: Some("zh-TW".into()),
        script_converted: true,
    }
}

#[test]
fn round_trip_all_fields() {
    let (_dir, _path, ledger) = temp_ledger();
    let full = full_record();
    let minimal = LedgerRecord {
        id: "minimal".into(),
        ts_ms: 1_700_000_000_000,
        ..Default::default()
    };
    let errored = LedgerRecord {
        id: "err-1".into(),
        ts_ms: 1_700_000_000_500,
        endpoint: "completions".into(),
        action: "direct".into(),
        status: 502,
        error: Some("upstream: 连接超时".into()),
        sent_out: Some(serde_json::Value::Null),
        confidence: Some(f64::INFINITY),
        ..Default::default()
    };
    for r in [&minimal, &full, &errored] {
        ledger.record(r.clone());
    }
    ledger.flush().unwrap();
    assert_eq!(ledger.written(), 3);
    assert_eq!(ledger.dropped(), 0);
    assert_eq!(ledger.write_errors(), 0);

    assert_eq!(ledger.get(&full.id).unwrap().as_ref(), Some(&full));
    assert_eq!(ledger.get("minimal").unwrap().as_ref(), Some(&minimal));
    assert_eq!(ledger.get("err-1").unwrap().as_ref(), Some(&errored));
    assert_eq!(ledger.get("nope").unwrap(), None);

    // Most recent (by ts_ms) first.
    let recent = ledger.recent(10).unwrap();
    assert_eq!(recent, vec![errored.clone(), full.clone(), minimal.clone()]);
    assert_eq!(ledger.recent(2).unwrap(), vec![errored, full]);
    assert!(ledger.recent(0).unwrap().is_empty());
}

#[test]
fn recent_breaks_ties_by_insertion_and_duplicates_are_kept() {
    let (_dir, _path, ledger) = temp_ledger();
    for (i, id) in ["a", "b", "a"].iter().enumerate() {
        ledger.record(LedgerRecord {
            id: id.to_string(),
            ts_ms: 5,
            route: format!("r{i}"),
            ..Default::default()
        });
    }
    ledger.flush().unwrap();
    assert_eq!(ledger.written(), 3);
    let routes: Vec<_> = ledger
        .recent(10)
        .unwrap()
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert_eq!(routes, ["r2", "r1", "r0"]);
    // An audit log does not overwrite: both "a" are kept, `get` returns the latest.
    assert_eq!(ledger.get("a").unwrap().unwrap().route, "r2");
    assert_eq!(ledger.stats(&StatsFilter::default()).unwrap().requests, 3);
}

#[test]
fn nan_is_stored_as_zero_or_none() {
    let ledger = Ledger::open_in_memory().unwrap();
    ledger.record(LedgerRecord {
        id: "nan".into(),
        cost_usd: f64::NAN,
        total_ms: f64::NAN,
        confidence: Some(f64::NAN),
        ttft_ms: Some(f64::NAN),
        ..Default::default()
    });
    ledger.flush().unwrap();
    assert_eq!(ledger.write_errors(), 0);
    let r = ledger.get("nan").unwrap().unwrap();
    assert_eq!(r.cost_usd, 0.0);
    assert_eq!(r.total_ms, 0.0);
    assert_eq!(r.confidence, None);
    assert_eq!(r.ttft_ms, None);
}

/// Six records over three routes and three answering models; dyadic costs so that sums are
/// exact.
fn stats_fixture() -> Vec<LedgerRecord> {
    let base = LedgerRecord {
        endpoint: "chat".into(),
        requested_model: "auto".into(),
        status: 200,
        ..Default::default()
    };
    vec![
        LedgerRecord {
            id: "r1".into(),
            ts_ms: 1000,
            tenant: Some("a".into()),
            route: "short".into(),
            action: "model".into(),
            models_called: strs(&["qwen-0.5b"]),
            answered_by: Some("qwen-0.5b".into()),
            local: true,
            prompt_tokens: 100,
            completion_tokens: 50,
            cost_usd: 0.0,
            baseline_cost_usd: 0.25,
            total_ms: 100.0,
            overhead_ms: 2.0,
            ..base.clone()
        },
        LedgerRecord {
            id: "r2".into(),
            ts_ms: 2000,
            tenant: Some("a".into()),
            route: "short".into(),
            action: "cascade".into(),
            models_called: strs(&["qwen-0.5b", "gpt"]),
            answered_by: Some("gpt".into()),
            escalated: true,
            confidence: Some(0.25),
            prompt_tokens: 300,
            completion_tokens: 80,
            remote_prompt_tokens: 200,
            remote_completion_tokens: 60,
            cost_usd: 0.125,
            baseline_cost_usd: 0.25,
            total_ms: 400.0,
            overhead_ms: 4.0,
            pii_kinds: strs(&["email", "phone", "email"]),
            pii_action: Some("mask".into()),
            left_machine: true,
            sent_out: Some(json!({"messages": [{"role": "user", "content": "[EMAIL_1]"}]})),
            ..base.clone()
        },
        LedgerRecord {
            id: "r3".into(),
            ts_ms: 3000,
            tenant: Some("b".into()),
            route: "code".into(),
            action: "direct".into(),
            models_called: strs(&["claude"]),
            answered_by: Some("claude".into()),
            prompt_tokens: 500,
            completion_tokens: 200,
            remote_prompt_tokens: 500,
            remote_completion_tokens: 200,
            cost_usd: 0.5,
            baseline_cost_usd: 0.5,
            total_ms: 800.0,
            overhead_ms: 1.0,
            pii_kinds: strs(&["email"]),
            pii_action: Some("mask".into()),
            left_machine: true,
            ..base.clone()
        },
        LedgerRecord {
            id: "r4".into(),
            ts_ms: 4000,
            tenant: Some("b".into()),
            route: "code".into(),
            action: "cascade".into(),
            models_called: strs(&["qwen-0.5b"]),
            answered_by: Some("qwen-0.5b".into()),
            local: true,
            confidence: Some(0.875),
            prompt_tokens: 200,
            completion_tokens: 100,
            cost_usd: 0.0,
            baseline_cost_usd: 0.375,
            total_ms: 200.0,
            overhead_ms: 3.0,
            pii_kinds: strs(&["ssn"]),
            pii_action: Some("force_local".into()),
            ..base.clone()
        },
        // An upstream error: data left, nothing answered.
        LedgerRecord {
            id: "r5".into(),
            ts_ms: 5000,
            tenant: Some("a".into()),
            route: "short".into(),
            action: "direct".into(),
            models_called: strs(&["gpt"]),
            prompt_tokens: 40,
            remote_prompt_tokens: 40,
            total_ms: 5000.0,
            overhead_ms: 1.0,
            left_machine: true,
            status: 502,
            error: Some("upstream timeout".into()),
            ..base.clone()
        },
        // A policy reject (also an error).
        LedgerRecord {
            id: "r6".into(),
            ts_ms: 6000,
            tenant: Some("b".into()),
            route: "pii-block".into(),
            action: "reject".into(),
            total_ms: 1.0,
            overhead_ms: 1.0,
            pii_kinds: strs(&["ssn"]),
            pii_action: Some("block".into()),
            status: 403,
            error: Some("blocked: ssn".into()),
            ..base
        },
    ]
}

fn fixture_ledger() -> (tempfile::TempDir, Ledger) {
    let (dir, _path, ledger) = temp_ledger();
    for r in stats_fixture() {
        ledger.record(r);
    }
    ledger.flush().unwrap();
    assert_eq!(ledger.written(), 6);
    (dir, ledger)
}

#[test]
fn stats_hand_computed() {
    let (_dir, ledger) = fixture_ledger();
    let s = ledger.stats(&StatsFilter::default()).unwrap();
    let expected = Stats {
        requests: 6,
        errors: 2,
        local_requests: 2,
        local_share: 0.5, // r1, r4 of the answered r1..r4
        escalations: 1,
        left_machine: 3,
        prompt_tokens: 1140,
        completion_tokens: 430,
        remote_tokens: 1000,
        cost_usd: 0.625,
        baseline_cost_usd: 1.375,
        savings_usd: 0.75,
        savings_pct: 0.75 / 1.375 * 100.0,
        by_route: vec![
            RouteStats {
                route: "short".into(),
                requests: 3,
                local_requests: 1,
                escalations: 1,
                cost_usd: 0.125,
                baseline_cost_usd: 0.5,
            },
            RouteStats {
                route: "code".into(),
                requests: 2,
                local_requests: 1,
                escalations: 0,
                cost_usd: 0.5,
                baseline_cost_usd: 0.875,
            },
            RouteStats {
                route: "pii-block".into(),
                requests: 1,
                local_requests: 0,
                escalations: 0,
                cost_usd: 0.0,
                baseline_cost_usd: 0.0,
            },
        ],
        by_model: vec![
            ModelStats {
                model: "qwen-0.5b".into(),
                requests: 2,
                prompt_tokens: 300,
                completion_tokens: 150,
                cost_usd: 0.0,
                local: true,
            },
            ModelStats {
                model: "claude".into(),
                requests: 1,
                prompt_tokens: 500,
                completion_tokens: 200,
                cost_usd: 0.5,
                local: false,
            },
            ModelStats {
                model: "gpt".into(),
                requests: 1,
                prompt_tokens: 300,
                completion_tokens: 80,
                cost_usd: 0.125,
                local: false,
            },
        ],
        pii: vec![
            PiiStats {
                action: "mask".into(),
                kind: "email".into(),
                requests: 2,
            },
            PiiStats {
                action: "block".into(),
                kind: "ssn".into(),
                requests: 1,
            },
            PiiStats {
                action: "force_local".into(),
                kind: "ssn".into(),
                requests: 1,
            },
            PiiStats {
                action: "mask".into(),
                kind: "phone".into(),
                requests: 1,
            },
        ],
        // Answered r1..r4: total_ms 100, 200, 400, 800; overhead 2, 4, 1, 3.
        latency_ms: Latency {
            p50: 200.0,
            p95: 800.0,
            p99: 800.0,
            mean_overhead_ms: 2.5,
        },
        rag: Vec::new(),
    };
    assert_eq!(s, expected);
    // Serializes (the server returns it as JSON).
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["by_route"][0]["route"], "short");
    assert_eq!(v["latency_ms"]["p50"], 200.0);
}

#[test]
fn stats_filter_since_and_tenant() {
    let (_dir, ledger) = fixture_ledger();
    let since = ledger
        .stats(&StatsFilter {
            since_ms: Some(3000),
            tenant: None,
        })
        .unwrap();
    // r3..r6
    assert_eq!(since.requests, 4);
    assert_eq!(since.errors, 2);
    assert_eq!(since.local_requests, 1);
    assert_eq!(since.local_share, 0.5);
    assert_eq!(since.cost_usd, 0.5);
    assert_eq!(since.baseline_cost_usd, 0.875);
    let routes: Vec<_> = since.by_route.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(routes, ["code", "pii-block", "short"]);

    let tenant_a = ledger
        .stats(&StatsFilter {
            since_ms: None,
            tenant: Some("a".into()),
        })
        .unwrap();
    // r1, r2, r5
    assert_eq!(tenant_a.requests, 3);
    assert_eq!(tenant_a.errors, 1);
    assert_eq!(tenant_a.escalations, 1);
    assert_eq!(tenant_a.left_machine, 2);
    assert_eq!(tenant_a.remote_tokens, 300);
    assert_eq!(tenant_a.cost_usd, 0.125);
    assert_eq!(tenant_a.savings_usd, 0.375);
    assert_eq!(tenant_a.savings_pct, 75.0);
    assert_eq!(tenant_a.by_route.len(), 1);
    assert_eq!(
        tenant_a.latency_ms,
        Latency {
            p50: 100.0,
            p95: 400.0,
            p99: 400.0,
            mean_overhead_ms: 3.0
        }
    );

    let both = ledger
        .stats(&StatsFilter {
            since_ms: Some(2000),
            tenant: Some("a".into()),
        })
        .unwrap();
    // r2, r5
    assert_eq!(both.requests, 2);
    assert_eq!(both.local_requests, 0);
    assert_eq!(both.local_share, 0.0);
    assert_eq!(
        both.pii,
        vec![
            PiiStats {
                action: "mask".into(),
                kind: "email".into(),
                requests: 1
            },
            PiiStats {
                action: "mask".into(),
                kind: "phone".into(),
                requests: 1
            },
        ]
    );

    let nobody = ledger
        .stats(&StatsFilter {
            since_ms: None,
            tenant: Some("nobody".into()),
        })
        .unwrap();
    assert_eq!(nobody, Stats::default());
    let future = ledger
        .stats(&StatsFilter {
            since_ms: Some(i64::MAX),
            tenant: None,
        })
        .unwrap();
    assert_eq!(future, Stats::default());
}

#[test]
fn stats_empty_and_zero_baseline_have_no_nan() {
    let ledger = Ledger::open_in_memory().unwrap();
    let s = ledger.stats(&StatsFilter::default()).unwrap();
    assert_eq!(s, Stats::default());

    // Cost without a baseline: negative savings, 0 % (not NaN or -inf).
    ledger.record(LedgerRecord {
        id: "x".into(),
        route: "r".into(),
        action: "direct".into(),
        cost_usd: 0.5,
        status: 200,
        ..Default::default()
    });
    ledger.flush().unwrap();
    let s = ledger.stats(&StatsFilter::default()).unwrap();
    assert_eq!(s.requests, 1);
    assert_eq!(s.savings_usd, -0.5);
    assert_eq!(s.savings_pct, 0.0);
    assert_eq!(s.local_share, 0.0);
    assert_eq!(s.latency_ms, Latency::default());
    assert!(s.by_model.is_empty());
}

#[test]
fn record_never_blocks_and_counts_drops() {
    let (_dir, _path, ledger) = temp_ledger();
    let n = 50_000u64;
    for i in 0..n {
        ledger.record(LedgerRecord {
            id: format!("req-{i}"),
            ts_ms: i as i64,
            route: "bulk".into(),
            reasons: strs(&["bulk test"]),
            ..Default::default()
        });
    }
    ledger.flush().unwrap();
    assert_eq!(ledger.write_errors(), 0);
    assert_eq!(ledger.written() + ledger.dropped(), n);
    let s = ledger.stats(&StatsFilter::default()).unwrap();
    assert_eq!(s.requests, ledger.written());
    println!(
        "50k records: written {}, dropped {}",
        ledger.written(),
        ledger.dropped()
    );
}

#[test]
fn reopen_persists_and_checks_schema() {
    let (_dir, path, ledger) = temp_ledger();
    let r = full_record();
    ledger.record(r.clone());
    // No flush: dropping the last handle drains the queue and joins the writer.
    let clone = ledger.clone();
    drop(ledger);
    clone.record(LedgerRecord {
        id: "second".into(),
        ..Default::default()
    });
    drop(clone);

    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.get(&r.id).unwrap(), Some(r));
    assert!(ledger.get("second").unwrap().is_some());
    assert_eq!(ledger.recent(10).unwrap().len(), 2);
    drop(ledger);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // A ledger from the future is refused.
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::SchemaTooNew {
                found: 99,
                supported: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    ledger.record(LedgerRecord::default());
    ledger.flush().unwrap();
    assert_eq!(ledger.written(), 1);
    assert!(path.exists());
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, garbage) in [
        ("short.db", b"hello, not sqlite".to_vec()),
        ("long.db", vec![0xa5u8; 8192]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &garbage).unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(
            matches!(err, LedgerError::NotADatabase { .. }),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("not a SQLite database"), "{msg}");
        assert!(msg.contains(name), "{msg}");
        // The file is left alone.
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 3;")
        .unwrap();
    drop(conn);
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, LedgerError::ForeignDatabase { .. }),
        "{err:?}"
    );
}

#[test]
fn concurrent_recording_and_reading() {
    let (_dir, _path, file_ledger) = temp_ledger();
    let mem_ledger = Ledger::open_in_memory().unwrap();
    for ledger in [file_ledger, mem_ledger] {
        let threads = 8;
        let per_thread = 1000; // 8000 in all: fits in the queue, so nothing may be dropped
        std::thread::scope(|scope| {
            for t in 0..threads {
                let ledger = ledger.clone();
                scope.spawn(move || {
                    for i in 0..per_thread {
                        ledger.record(LedgerRecord {
                            id: format!("t{t}-{i}"),
                            ts_ms: i,
                            tenant: Some(format!("tenant-{t}")),
                            route: format!("route-{}", t % 3),
                            ..Default::default()
                        });
                    }
                });
            }
            // Reads while the writer writes.
            let reader = ledger.clone();
            scope.spawn(move || {
                for _ in 0..20 {
                    let s = reader.stats(&StatsFilter::default()).unwrap();
                    assert!(s.requests <= 8000);
                    reader.recent(5).unwrap();
                }
            });
        });
        ledger.flush().unwrap();
        assert_eq!(ledger.dropped(), 0);
        assert_eq!(ledger.write_errors(), 0);
        assert_eq!(ledger.written(), 8000);
        let s = ledger.stats(&StatsFilter::default()).unwrap();
        assert_eq!(s.requests, 8000);
        let t3 = ledger
            .stats(&StatsFilter {
                since_ms: Some(900),
                tenant: Some("tenant-3".into()),
            })
            .unwrap();
        assert_eq!(t3.requests, 100);
        assert!(ledger.get("t7-999").unwrap().is_some());
    }
}

#[test]
fn in_memory_ledgers_are_separate() {
    let a = Ledger::open_in_memory().unwrap();
    let b = Ledger::open_in_memory().unwrap();
    a.record(LedgerRecord {
        id: "only-in-a".into(),
        ..Default::default()
    });
    a.flush().unwrap();
    assert!(a.get("only-in-a").unwrap().is_some());
    assert!(b.get("only-in-a").unwrap().is_none());
    b.flush().unwrap();
    assert_eq!(b.written(), 0);
}

#[test]
fn timing_record_and_flush() {
    let (_dir, _path, ledger) = temp_ledger();
    let records: Vec<_> = (0..10_000)
        .map(|i| LedgerRecord {
            id: format!("chatcmpl-{i}"),
            ts_ms: i,
            ..full_record()
        })
        .collect();
    let start = Instant::now();
    for r in records {
        ledger.record(r);
    }
    let recorded = start.elapsed();
    let start = Instant::now();
    ledger.flush().unwrap();
    let flushed = start.elapsed();
    println!(
        "record() x10k: {recorded:?} ({:.2} µs each); flush: {flushed:?}; written {}, dropped {}",
        recorded.as_secs_f64() * 1e6 / 10_000.0,
        ledger.written(),
        ledger.dropped()
    );
    let start = Instant::now();
    let s = ledger.stats(&StatsFilter::default()).unwrap();
    println!("stats over {} records: {:?}", s.requests, start.elapsed());
    assert_eq!(ledger.written() + ledger.dropped(), 10_000);
}

#[test]
fn version_1_ledgers_are_migrated_and_keep_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // The schema as version 1 wrote it, with one record.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA application_id = 1413762380;
            CREATE TABLE requests (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
              tenant TEXT, key_id TEXT, endpoint TEXT NOT NULL, requested_model TEXT NOT NULL,
              route TEXT NOT NULL, reasons TEXT NOT NULL DEFAULT '[]', category TEXT,
              action TEXT NOT NULL, models_called TEXT NOT NULL DEFAULT '[]', answered_by TEXT,
              local INTEGER NOT NULL, escalated INTEGER NOT NULL, confidence REAL,
              prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
              remote_prompt_tokens INTEGER NOT NULL, remote_completion_tokens INTEGER NOT NULL,
              cost_usd REAL NOT NULL, baseline_cost_usd REAL NOT NULL, ttft_ms REAL,
              total_ms REAL NOT NULL, overhead_ms REAL NOT NULL,
              pii_kinds TEXT NOT NULL DEFAULT '[]', pii_action TEXT, left_machine INTEGER NOT NULL,
              sent_out TEXT, status INTEGER NOT NULL, error TEXT);
            INSERT INTO requests (id, ts_ms, endpoint, requested_model, route, action, local,
              escalated, prompt_tokens, completion_tokens, remote_prompt_tokens,
              remote_completion_tokens, cost_usd, baseline_cost_usd, total_ms, overhead_ms,
              left_machine, status)
              VALUES ('old-1', 5, 'chat', 'auto', 'code', 'model', 1, 0, 3, 4, 0, 0, 0, 0, 9, 1, 0, 200);
            PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    let old = ledger.get("old-1").unwrap().unwrap();
    assert_eq!((old.route.as_str(), old.prompt_tokens), ("code", 3));
    assert_eq!(
        (old.rag_kb, old.llm_tokens, old.rag_tokens_saved),
        (None, 0, 0)
    );
    assert_eq!(
        (old.dialect, old.tool_calls.len(), old.constrained),
        (None, 0, false)
    );
    assert_eq!((old.answer_script, old.script_converted), (None, false));
    let r = full_record();
    ledger.record(r.clone());
    ledger.flush().unwrap();
    assert_eq!(ledger.get(&r.id).unwrap(), Some(r));
    let stats = ledger.stats(&Default::default()).unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.rag.len(), 1);
    let rag = &stats.rag[0];
    assert_eq!(
        (
            rag.mode.as_str(),
            rag.requests,
            rag.escalations,
            rag.llm_tokens,
            rag.tokens_saved
        ),
        ("compress", 1, 1, 321, -12)
    );
}

#[test]
fn ratings_and_vectors_make_training_examples() {
    let (_dir, path, ledger) = temp_ledger();
    let answered = |id: &str, by: &str| LedgerRecord {
        id: id.into(),
        answered_by: Some(by.into()),
        local: by == "slm",
        status: 200,
        ..Default::default()
    };
    let vector = |id: &str, model: &str, x: f32| RequestVector {
        id: id.into(),
        model: model.into(),
        vector: vec![x, -x, 0.25],
    };
    let rate = |id: &str, score: f64| Feedback {
        id: id.into(),
        ts_ms: 1,
        score,
    };
    for (id, by) in [
        ("a", "slm"),
        ("b", "slm"),
        ("c", "llm"),
        ("d", "slm"),
        ("e", "slm"),
        ("f", "slm"),
    ] {
        ledger.record(answered(id, by));
    }
    ledger.record_vector(vector("a", "minilm", 1.0));
    ledger.record_vector(vector("b", "minilm", 0.5));
    ledger.record_vector(vector("c", "minilm", 2.0));
    ledger.record_vector(vector("e", "e5", 3.0)); // another embedding model
    // A second vector for an id replaces the first.
    ledger.record_vector(vector("f", "minilm", 9.0));
    ledger.record_vector(vector("f", "minilm", 4.0));
    ledger.flush().unwrap();
    ledger.add_feedback(rate("a", 1.0)).unwrap();
    ledger.add_feedback(rate("a", 0.0)).unwrap();
    ledger.add_feedback(rate("b", 0.0)).unwrap();
    ledger.add_feedback(rate("c", 1.0)).unwrap(); // the LLM's answer
    ledger.add_feedback(rate("d", 1.0)).unwrap(); // no vector
    ledger.add_feedback(rate("e", 1.0)).unwrap(); // e5 vector only
    ledger.add_feedback(rate("f", 1.0)).unwrap();
    ledger.add_feedback(rate("nobody", 1.0)).unwrap();
    for bad in [-0.1, 1.5, f64::NAN] {
        let err = ledger.add_feedback(rate("a", bad)).unwrap_err();
        assert!(matches!(err, LedgerError::BadScore(_)), "{err:?}");
        assert!(err.to_string().contains("from 0 to 1"), "{err}");
    }
    let set = ledger.training_examples("minilm", "slm").unwrap();
    let got: Vec<(&str, Vec<f32>, f64, u64)> = set
        .examples
        .iter()
        .map(|e| (e.id.as_str(), e.vector.clone(), e.score, e.ratings))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", vec![1.0, -1.0, 0.25], 0.5, 2),
            ("b", vec![0.5, -0.5, 0.25], 0.0, 1),
            ("f", vec![4.0, -4.0, 0.25], 1.0, 1),
        ]
    );
    assert_eq!(
        (set.unknown_ids, set.other_model, set.without_vector),
        (1, 1, 2)
    );
    // The LLM's rated answer is an example when the LLM is asked for; nothing for a model
    // that answered nothing.
    let llm = ledger.training_examples("minilm", "llm").unwrap();
    assert_eq!(llm.examples.len(), 1);
    assert_eq!(llm.examples[0].id, "c");
    assert!(
        ledger
            .training_examples("minilm", "x")
            .unwrap()
            .examples
            .is_empty()
    );
    // Persisted: another handle on the file sees the same.
    drop(ledger);
    let again = Ledger::open(&path).unwrap();
    assert_eq!(again.training_examples("minilm", "slm").unwrap(), set);
}

/// A rating is only acknowledged once committed: when its row cannot be written, the caller
/// gets the error (not a silent count in `write_errors`), and later ratings still work.
#[test]
fn a_rating_that_cannot_be_written_is_an_error() {
    let (_dir, path, ledger) = temp_ledger();
    let rate = |score: f64| Feedback {
        id: "a".into(),
        ts_ms: 1,
        score,
    };
    ledger.record(LedgerRecord {
        id: "a".into(),
        status: 200,
        ..Default::default()
    });
    ledger.add_feedback(rate(1.0)).unwrap();
    // Another process breaks the table under the writer.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("ALTER TABLE feedback RENAME TO feedback_moved")
        .unwrap();
    let err = ledger.add_feedback(rate(0.0)).unwrap_err();
    assert!(matches!(err, LedgerError::NotStored(_)), "{err:?}");
    assert!(err.to_string().contains("no such table"), "{err}");
    other
        .execute_batch("ALTER TABLE feedback_moved RENAME TO feedback")
        .unwrap();
    ledger.add_feedback(rate(0.0)).unwrap();
    ledger.flush().unwrap();
    // The first and the last rating were kept, the failed one was not.
    let n: i64 = other
        .query_row("SELECT count(*) FROM feedback WHERE id = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 2);
}

/// A full disk (the database capped at its size: SQLite fails as on a full disk): records
/// are kept and retried, none is lost, and they are written once there is room again.
#[test]
fn a_full_disk_keeps_records_until_there_is_room() {
    let (_dir, path, ledger) = temp_ledger();
    let rec = |i: usize| LedgerRecord {
        id: format!("full-{i}"),
        reasons: vec!["x".repeat(200)],
        ..LedgerRecord::default()
    };
    for i in 0..10 {
        ledger.record(rec(i));
    }
    ledger.flush().unwrap();
    assert_eq!(ledger.written(), 10);
    // No room to grow.
    ledger.set_max_bytes(Some(0)).unwrap();
    for i in 10..2010 {
        ledger.record(rec(i));
    }
    ledger.flush().unwrap();
    assert!(ledger.written() < 2010, "the cap did not bite");
    assert!(ledger.pending() > 0);
    assert_eq!(ledger.dropped(), 0);
    let before = ledger.recent(5000).unwrap().len();
    assert!(before < 2010);
    // Room again: the next batch (here the flush) writes what was kept.
    ledger.set_max_bytes(None).unwrap();
    ledger.flush().unwrap();
    assert_eq!(ledger.pending(), 0);
    assert_eq!(ledger.written(), 2010);
    let all = ledger.recent(5000).unwrap();
    assert_eq!(all.len(), 2010);
    let ids: std::collections::BTreeSet<String> = all.into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 2010, "a record was written twice");
    drop(path);
}
