//! Accounting: the request's ledger record, filled in as calls happen and written once.

use super::*;

/// The request's ledger record, filled in as calls happen and written once.
#[derive(Clone)]
pub(crate) struct Acct {
    inner: Arc<Mutex<Option<LedgerRecord>>>,
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
            inner: Arc::new(Mutex::new(Some(rec))),
            state: state.clone(),
            rt: rt.clone(),
            start,
        }
    }

    pub(crate) fn with(&self, f: impl FnOnce(&mut LedgerRecord)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = g.as_mut() {
            f(r);
        }
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
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.take()
        };
        let Some(mut rec) = rec else { return };
        rec.status = status;
        rec.error = error;
        rec.total_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        if ttft_ms.is_some() {
            rec.ttft_ms = ttft_ms;
        }
        crate::metrics::routed(&rec);
        if let Some(l) = &self.state.ledger {
            l.record(rec);
        }
    }
}
