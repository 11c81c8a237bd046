//! Accounting: the request's ledger record, filled in as calls happen and written once.

use super::*;

/// The record and who still has a say in it.
struct Slot {
    rec: Option<LedgerRecord>,
    /// [`AcctHold`]s alive: the record is written when the last one goes and it is finished.
    holds: usize,
    finished: bool,
}

/// The request's ledger record, filled in as calls happen and written once.
#[derive(Clone)]
pub(crate) struct Acct {
    inner: Arc<Mutex<Slot>>,
    state: Arc<AppState>,
    rt: Arc<Runtime>,
    pub(super) start: Instant,
}

impl Acct {
    pub(super) fn new(
        state: &Arc<AppState>,
        rt: &Arc<Runtime>,
        rec: LedgerRecord,
        start: Instant,
    ) -> Acct {
        Acct {
            inner: Arc::new(Mutex::new(Slot {
                rec: Some(rec),
                holds: 0,
                finished: false,
            })),
            state: state.clone(),
            rt: rt.clone(),
            start,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn with(&self, f: impl FnOnce(&mut LedgerRecord)) {
        if let Some(r) = self.slot().rec.as_mut() {
            f(r);
        }
    }

    /// Keeps the record from being written until the hold is dropped, even after
    /// [`finish`](Acct::finish): for a stage after the answer's producer (the script
    /// conversion of a stream) that still has something to record.
    pub(crate) fn hold(&self) -> AcctHold {
        self.slot().holds += 1;
        AcctHold(self.clone())
    }

    /// One model call's tokens and cost.
    pub(super) fn call(&self, model: &str, prompt: u32, completion: u32) {
        let spec = self.rt.config.model(model);
        let local = spec.is_none_or(|m| m.is_local());
        let price = spec.map(|m| m.price).unwrap_or_default();
        let cfg = &self.rt.config;
        let llm = !local
            || cfg.llm_model.as_deref() == Some(model)
            || (cfg.rag.llm == model && cfg.rag.slm != model);
        self.with(|r| {
            r.prompt_tokens += prompt;
            r.completion_tokens += completion;
            if llm {
                r.llm_tokens += prompt + completion;
            }
            if !local {
                r.remote_prompt_tokens += prompt;
                r.remote_completion_tokens += completion;
            }
            r.cost_usd += price.cost(prompt, completion);
        });
    }

    pub(super) fn called(&self, model: &str) {
        let local = self.rt.config.model(model).is_none_or(|m| m.is_local());
        self.with(|r| {
            r.models_called.push(model.to_string());
            if !local {
                r.left_machine = true;
            }
        });
    }

    pub(crate) fn answered(&self, model: &str, prompt: u32, completion: u32) {
        let local = self.rt.config.model(model).is_none_or(|m| m.is_local());
        let baseline = self
            .rt
            .config
            .llm_model
            .as_deref()
            .and_then(|m| self.rt.config.model(m))
            .map(|m| m.price)
            .unwrap_or_default();
        self.with(|r| {
            r.answered_by = Some(model.to_string());
            r.local = local;
            r.baseline_cost_usd = baseline.cost(prompt, completion);
        });
    }

    /// What the answer was made of: the functions it called, and whether the request asked
    /// for grammar-constrained output (`grammar`; recorded only when a local model answered,
    /// since only the local engine enforces it).
    pub(crate) fn output(&self, tool_calls: Vec<String>, grammar: bool) {
        self.with(|r| {
            r.constrained = grammar && r.local;
            r.tool_calls = tool_calls;
        });
    }

    pub(super) fn finish(&self, status: u16, error: Option<String>, ttft_ms: Option<f64>) {
        let rec = {
            let mut g = self.slot();
            if g.finished {
                return;
            }
            let Some(rec) = g.rec.as_mut() else { return };
            rec.status = status;
            rec.error = error;
            rec.total_ms = self.start.elapsed().as_secs_f64() * 1000.0;
            if ttft_ms.is_some() {
                rec.ttft_ms = ttft_ms;
            }
            g.finished = true;
            if g.holds > 0 {
                return;
            }
            g.rec.take()
        };
        if let Some(rec) = rec {
            self.write(rec);
        }
    }

    fn write(&self, rec: LedgerRecord) {
        crate::metrics::routed(&rec);
        if let Some(l) = &self.state.ledger {
            l.record(rec);
        }
    }
}

/// See [`Acct::hold`].
pub(crate) struct AcctHold(Acct);

impl AcctHold {
    /// The record it holds.
    pub(crate) fn acct(&self) -> &Acct {
        &self.0
    }
}

impl Drop for AcctHold {
    fn drop(&mut self) {
        let rec = {
            let mut g = self.0.slot();
            g.holds -= 1;
            if g.holds == 0 && g.finished {
                g.rec.take()
            } else {
                None
            }
        };
        if let Some(rec) = rec {
            self.0.write(rec);
        }
    }
}
