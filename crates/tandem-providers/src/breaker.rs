//! A consecutive-failure circuit breaker.
//!
//! * **Closed**: requests go through. Each failed *request* (counted once, after its retries
//!   are exhausted) increments a counter; each successful one resets it. When the counter
//!   reaches the threshold the circuit opens.
//! * **Open**: requests fail fast without touching the network, until the cooldown passes.
//! * **Half-open**: exactly one probe request is let through; concurrent requests are
//!   refused. The probe's success closes the circuit; its failure re-opens it for another
//!   cooldown. A probe that is abandoned (its future dropped) frees the slot for the next
//!   request.
//!
//! A success reported by a request that started before the circuit opened also closes it:
//! the upstream demonstrably answers. A threshold of 0 disables the breaker.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Observable state, for metrics and health endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow normally.
    Closed,
    /// Requests are refused; a probe will be allowed in `retry_in`.
    Open {
        /// Time left in the cooldown.
        retry_in: Duration,
    },
    /// The cooldown is over: the next request (only one at a time) is a probe.
    HalfOpen,
}

impl BreakerState {
    /// `"closed"`, `"open"` or `"half_open"`, for metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker. Shared behind an [`Arc`] so permits and streams can report to it.
#[derive(Debug)]
pub(crate) struct Breaker {
    name: String,
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// Permission to send one request; report its outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropping it unreported is neutral (a probe slot is freed).
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Breaker {
    pub(crate) fn new(name: &str, threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            name: name.to_string(),
            threshold,
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// Current state as seen at `now`.
    pub(crate) fn state_at(&self, now: Instant) -> BreakerState {
        match *self.inner.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open {
                retry_in: until - now,
            },
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Ask to send a request at `now`; `Err(retry_in)` when refused.
    pub(crate) fn acquire_at(self: &Arc<Self>, now: Instant) -> Result<Permit, Duration> {
        let mut inner = self.inner.lock();
        let probe = match *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } if now < until => return Err(until - now),
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::HalfOpen { probing: true } => return Err(Duration::ZERO),
        };
        Ok(Permit {
            breaker: Arc::clone(self),
            probe,
            done: false,
        })
    }

    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        self.acquire_at(Instant::now())
    }

    fn on_success(&self) {
        *self.inner.lock() = Inner::Closed { failures: 0 };
    }

    fn on_failure(&self, probe: bool, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        match *inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                *inner = if failures >= self.threshold {
                    tracing::warn!(
                        upstream = %self.name,
                        failures,
                        cooldown = ?self.cooldown,
                        "circuit opened after consecutive upstream failures"
                    );
                    Inner::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    Inner::Closed { failures }
                };
            }
            Inner::HalfOpen { .. } if probe => {
                tracing::warn!(
                    upstream = %self.name,
                    cooldown = ?self.cooldown,
                    "circuit probe failed; re-opened"
                );
                *inner = Inner::Open {
                    until: now + self.cooldown,
                };
            }
            // Already open, or a straggler from before the circuit opened: the probe decides.
            Inner::Open { .. } | Inner::HalfOpen { .. } => {}
        }
    }

    /// A failure outside any permit (a stream that broke after it had started).
    pub(crate) fn record_failure(&self) {
        self.on_failure(false, Instant::now());
    }
}

impl Permit {
    /// Whether this is the half-open circuit's probe.
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded (or the upstream otherwise proved healthy).
    pub(crate) fn success(mut self) {
        self.done = true;
        self.breaker.on_success();
    }

    /// The request failed in a way that counts against the upstream.
    pub(crate) fn failure(mut self) {
        self.done = true;
        self.breaker.on_failure(self.probe, Instant::now());
    }

    #[cfg(test)]
    fn failure_at(mut self, now: Instant) {
        self.done = true;
        self.breaker.on_failure(self.probe, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut inner = self.breaker.inner.lock();
            if let Inner::HalfOpen { probing: true } = *inner {
                *inner = Inner::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Arc::new(Breaker::new("t", 2, Duration::from_secs(10)));
        let t0 = Instant::now();
        b.acquire_at(t0).unwrap().failure_at(t0);
        assert_eq!(b.state_at(t0), BreakerState::Closed);
        b.acquire_at(t0).unwrap().failure_at(t0);
        assert_eq!(
            b.state_at(t0 + Duration::from_secs(4)),
            BreakerState::Open {
                retry_in: Duration::from_secs(6)
            }
        );
        assert_eq!(
            b.acquire_at(t0 + Duration::from_secs(4)).unwrap_err(),
            Duration::from_secs(6)
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
        let probe = b.acquire_at(t1).unwrap();
        // Only one probe at a time.
        assert_eq!(b.acquire_at(t1).unwrap_err(), Duration::ZERO);
        probe.failure_at(t1);
        assert!(matches!(b.state_at(t1), BreakerState::Open { .. }));
        let t2 = t1 + Duration::from_secs(10);
        let probe = b.acquire_at(t2).unwrap();
        probe.success();
        assert_eq!(b.state_at(t2), BreakerState::Closed);
        assert!(b.acquire_at(t2).is_ok());
    }

    #[test]
    fn success_resets_the_count() {
        let b = Arc::new(Breaker::new("t", 2, Duration::from_secs(10)));
        let t0 = Instant::now();
        b.acquire_at(t0).unwrap().failure_at(t0);
        b.acquire_at(t0).unwrap().success();
        b.acquire_at(t0).unwrap().failure_at(t0);
        assert_eq!(b.state_at(t0), BreakerState::Closed);
    }

    #[test]
    fn abandoned_probe_frees_the_slot() {
        let b = Arc::new(Breaker::new("t", 1, Duration::from_secs(1)));
        let t0 = Instant::now();
        b.acquire_at(t0).unwrap().failure_at(t0);
        let t1 = t0 + Duration::from_secs(1);
        drop(b.acquire_at(t1).unwrap());
        assert!(b.acquire_at(t1).is_ok());
    }

    #[test]
    fn stragglers_do_not_reopen_half_open_circuit() {
        let b = Arc::new(Breaker::new("t", 1, Duration::from_secs(1)));
        let t0 = Instant::now();
        let straggler = b.acquire_at(t0).unwrap();
        b.acquire_at(t0).unwrap().failure_at(t0);
        let t1 = t0 + Duration::from_secs(1);
        let _probe = b.acquire_at(t1).unwrap();
        straggler.failure_at(t1);
        assert_eq!(b.state_at(t1), BreakerState::HalfOpen);
    }

    #[test]
    fn zero_threshold_disables() {
        let b = Arc::new(Breaker::new("t", 0, Duration::from_secs(1)));
        let t0 = Instant::now();
        for _ in 0..10 {
            b.acquire_at(t0).unwrap().failure_at(t0);
        }
        assert_eq!(b.state_at(t0), BreakerState::Closed);
    }
}
