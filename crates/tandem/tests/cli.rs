//! The `tandem` binary as a user runs it: real models from `$TANDEM_HOME`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn tandem(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("TANDEM_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ls_and_catalog_show_the_test_models() {
    let (ok, out, err) = tandem(&["ls"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("smollm2-135m"))
        .unwrap_or_else(|| panic!("{out}"));
    for col in ["chat", "llama", "Q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"] {
        assert!(line.contains(col), "{line}");
    }
    let (ok, out, _) = tandem(&["catalog"]);
    assert!(ok);
    for name in [
        "smollm2-135m",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
        "minilm-l6",
    ] {
        assert!(out.contains(name), "{out}");
    }
}

#[test]
fn one_shot_run_is_deterministic_with_greedy_decoding() {
    let args = [
        "run",
        "smollm2-135m",
        "Name a colour.",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--threads",
        "2",
    ];
    let (ok, a, err) = tandem(&args);
    assert!(ok, "{err}");
    assert!(!a.trim().is_empty());
    let (_, b, _) = tandem(&args);
    assert_eq!(a, b);
}

#[test]
fn bad_input_gives_readable_errors() {
    let (ok, _, err) = tandem(&["pull", "no-such-model"]);
    assert!(!ok);
    assert!(
        err.contains("no-such-model") && err.contains("smollm2-135m"),
        "{err}"
    );
    let (ok, _, err) = tandem(&["run", "minilm-l6", "hi"]);
    assert!(!ok);
    assert!(err.contains("embedding model"), "{err}");
    let (ok, _, err) = tandem(&["run", "/nonexistent/model.gguf", "hi"]);
    assert!(!ok);
    assert!(err.starts_with("error:"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "server:\n  port: [1, 2]\n").unwrap();
    let (ok, _, err) = tandem(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");
    let (ok, _, err) = tandem(&["serve", "--model", "smollm2-135m", "--port", "notaport"]);
    assert!(!ok);
    assert!(err.contains("notaport"), "{err}");
    let (ok, _, err) = tandem(&[
        "serve",
        "--model",
        "smollm2-135m",
        "--drain-timeout",
        "soon",
    ]);
    assert!(!ok);
    assert!(
        err.contains("soon") && err.contains("--drain-timeout"),
        "{err}"
    );
}
