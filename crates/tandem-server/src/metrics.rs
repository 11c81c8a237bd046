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
