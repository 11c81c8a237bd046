//! Prometheus metrics, with explicit histogram buckets.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Handle to the process-wide recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0,
];

impl Metrics {
    /// The recorder, installed on first use (one per process).
    pub fn global() -> Metrics {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| {
                let b = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            Matcher::Full("tandem_inter_token_latency_seconds".into()),
                            ITL_BUCKETS,
                        )
                    });
                match b.and_then(|b| b.install_recorder()) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics recorder not installed");
                        None
                    }
                }
            })
            .clone();
        Metrics { handle }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }
}

/// Record a finished request.
pub fn request(model: &str, endpoint: &'static str, status: u16, secs: f64) {
    metrics::counter!("tandem_requests_total", "model" => model.to_string(), "endpoint" => endpoint, "status" => status.to_string()).increment(1);
    metrics::histogram!("tandem_request_duration_seconds", "model" => model.to_string(), "endpoint" => endpoint).record(secs);
}

/// Record token counts of a generation.
pub fn tokens(model: &str, prompt: u32, generated: u32) {
    metrics::counter!("tandem_prompt_tokens_total", "model" => model.to_string())
        .increment(u64::from(prompt));
    metrics::counter!("tandem_generated_tokens_total", "model" => model.to_string())
        .increment(u64::from(generated));
}

/// Record time to first token and queue time.
pub fn first_token(model: &str, ttft: f64, queue: f64) {
    metrics::histogram!("tandem_time_to_first_token_seconds", "model" => model.to_string())
        .record(ttft);
    metrics::histogram!("tandem_queue_time_seconds", "model" => model.to_string()).record(queue);
}

/// Record the gap between two tokens.
pub fn inter_token(model: &str, secs: f64) {
    metrics::histogram!("tandem_inter_token_latency_seconds", "model" => model.to_string())
        .record(secs);
}

/// Refresh the gauges of one engine (called at scrape time).
pub fn engine_gauges(model: &str, waiting: usize, running: usize) {
    metrics::gauge!("tandem_queue_depth", "model" => model.to_string()).set(waiting as f64);
    metrics::gauge!("tandem_running_requests", "model" => model.to_string()).set(running as f64);
}

/// Record a routing decision and Tandem's own time before calling a model.
pub fn decision(route: &str, model: &str, action: &'static str, overhead_secs: f64) {
    metrics::counter!("tandem_route_decisions_total", "route" => route.to_string(), "model" => model.to_string(), "action" => action).increment(1);
    metrics::histogram!("tandem_routing_overhead_seconds", "route" => route.to_string())
        .record(overhead_secs);
}

/// Record a finished routed request: who answered, locally or not, and PII actions.
pub fn routed(r: &tandem_ledger::LedgerRecord) {
    let model = r.answered_by.clone().unwrap_or_else(|| "none".into());
    let class = format!("{}xx", r.status / 100);
    metrics::counter!("tandem_routed_requests_total", "route" => r.route.clone(), "model" => model, "action" => r.action.clone(), "local" => if r.local { "true" } else { "false" }, "status" => class).increment(1);
    if let Some(a) = &r.pii_action {
        for k in &r.pii_kinds {
            metrics::counter!("tandem_pii_actions_total", "action" => a.clone(), "kind" => k.clone())
                .increment(1);
        }
    }
    if r.left_machine {
        metrics::counter!("tandem_requests_left_machine_total", "route" => r.route.clone())
            .increment(1);
    }
}

/// Record a cascade outcome.
pub fn cascade(route: &str, escalated: bool) {
    metrics::counter!("tandem_cascade_total", "route" => route.to_string(), "outcome" => if escalated { "escalated" } else { "accepted" }).increment(1);
}

/// Record a fallback from one model to the next.
pub fn fallback(from: &str, to: &str) {
    metrics::counter!("tandem_fallbacks_total", "from" => from.to_string(), "to" => to.to_string())
        .increment(1);
}

/// Record an upstream failure by kind.
pub fn upstream_error(model: &str, e: &tandem_providers::ProviderError) {
    use tandem_providers::ProviderError as P;
    let kind = match e {
        P::Connect { .. } => "connect",
        P::Timeout { .. } => "timeout",
        P::Status { .. } => "status",
        P::Protocol { .. } => "protocol",
        P::CircuitOpen { .. } => "circuit_open",
        P::Interrupted { .. } => "interrupted",
        P::Unsupported { .. } => "unsupported",
        P::Config { .. } => "config",
    };
    metrics::counter!("tandem_upstream_errors_total", "model" => model.to_string(), "kind" => kind)
        .increment(1);
}

/// Record a configuration reload.
pub fn reload(ok: bool) {
    metrics::counter!("tandem_config_reloads_total", "result" => if ok { "ok" } else { "rejected" })
        .increment(1);
}
