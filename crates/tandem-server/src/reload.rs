//! Hot reload: watch the configuration file (polling its modification time, size and a hash
//! of its contents, which works on every filesystem, including bind mounts where inotify does
//! not, and sees a rewrite within the modification time's resolution) and reload on SIGHUP. A configuration that fails validation is refused, logged, and the old one keeps
//! serving.

use crate::state::AppState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What identifies a version of the file: its modification time, size and contents (a
/// configuration is small; hashing it each poll costs microseconds).
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::hash::{Hash, Hasher};
    let m = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some((m.modified().ok()?, m.len(), h.finish()))
}

/// Reload `path` into `state` now. Returns the new generation or why it was refused.
pub fn reload_file(state: &AppState, path: &Path) -> Result<u64, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    state.reload_text(&text)
}

/// Reload off the async threads: building a runtime may embed new classifier examples.
async fn apply(state: &Arc<AppState>, path: &Path, why: &'static str) {
    let (st, p) = (state.clone(), path.to_path_buf());
    let result = match tokio::task::spawn_blocking(move || reload_file(&st, &p)).await {
        Ok(r) => r,
        Err(e) => Err(format!("reload task failed: {e}")),
    };
    match result {
        Ok(g) => {
            tracing::info!(path = %path.display(), generation = g, trigger = why, "configuration reloaded")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), trigger = why, "configuration refused, the previous one keeps serving: {e}")
        }
    }
}

/// Watch `path` (every `interval`) and SIGHUP; reload on change. Runs until the runtime stops.
pub fn spawn_watcher(state: Arc<AppState>, path: PathBuf, interval: Duration) {
    let mut last = stamp(&path);
    let st = state.clone();
    let p = path.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&p);
            if now.is_some() && now != last {
                last = now;
                // Let a writer that truncates then writes finish.
                tokio::time::sleep(Duration::from_millis(50)).await;
                last = stamp(&p).or(last);
                apply(&st, &p, "file changed").await;
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP reload unavailable");
                return;
            }
        };
        while hup.recv().await.is_some() {
            apply(&state, &path, "SIGHUP").await;
        }
    });
}
