//! Progress reporting for pulls.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Receives progress while a model is pulled.
///
/// A pull reports a sequence of stages (`stage`), and within a stage may run one byte-counted
/// task at a time: `start`, any number of `advance`, then `finish`.
pub trait PullProgress {
    /// A new step, e.g. `downloading package 3/6 (name==1.0)`, `assembling`, `verifying sha256`.
    fn stage(&self, msg: &str);
    /// A byte-counted task begins; `total_bytes` is 0 when the total is unknown.
    fn start(&self, label: &str, total_bytes: u64);
    /// `bytes` more bytes of the current task are done.
    fn advance(&self, bytes: u64);
    /// The current task is done.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn stage(&self, _msg: &str) {}
    fn start(&self, _label: &str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Terminal progress for the CLI: stage lines on stderr and an `indicatif` bar with bytes,
/// speed and ETA (a byte counter with speed when the total is unknown). Bars are hidden when
/// stderr is not a terminal; stage lines are always printed.
#[derive(Debug, Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    /// A reporter with no bar showing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_bar<T>(&self, f: impl FnOnce(&mut Option<ProgressBar>) -> T) -> T {
        let mut guard = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl PullProgress for BarProgress {
    fn stage(&self, msg: &str) {
        self.with_bar(|bar| match bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => eprintln!("{msg}"),
        });
    }

    fn start(&self, label: &str, total_bytes: u64) {
        let new = if total_bytes > 0 {
            ProgressBar::new(total_bytes).with_style(style(
                "{msg:<12} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} \
                 {binary_bytes_per_sec:>12}  ETA {eta}",
            ))
        } else {
            ProgressBar::new_spinner().with_style(style(
                "{msg:<12} {spinner} {binary_bytes:>10} {binary_bytes_per_sec:>12}  {elapsed}",
            ))
        };
        new.set_message(label.to_owned());
        new.enable_steady_tick(Duration::from_millis(120));
        self.with_bar(|bar| {
            if let Some(old) = bar.replace(new) {
                old.finish();
            }
        });
    }

    fn advance(&self, bytes: u64) {
        self.with_bar(|bar| {
            if let Some(b) = bar {
                b.inc(bytes);
            }
        });
    }

    fn finish(&self) {
        self.with_bar(|bar| {
            if let Some(b) = bar.take() {
                b.finish();
            }
        });
    }
}
