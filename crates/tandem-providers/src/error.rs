//! Errors of upstream calls and their mapping to client-facing [`ApiError`]s.

use std::time::Duration;
use tandem_types::{ApiError, ErrorKind};

/// Why a call to an upstream failed. Every message names the upstream (Tandem's name for it,
/// [`crate::UpstreamConfig::name`]) and never contains its API key (upstream messages are
/// scrubbed of it before they are stored here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The upstream could not be reached (DNS, refused, reset, TLS), or the connection broke
    /// before a response (or, when streaming, before the first chunk) was complete.
    #[error("upstream '{upstream}': connection failed: {message}")]
    Connect {
        /// Upstream name.
        upstream: String,
        /// What went wrong.
        message: String,
    },
    /// A deadline passed. `phase` is `"connect"`, `"first byte"` (streaming, before the first
    /// chunk), `"response"` (non-streaming, whole response) or `"idle"` (streaming, gap
    /// between chunks).
    #[error("upstream '{upstream}': timed out after {after:?} ({phase})")]
    Timeout {
        /// Upstream name.
        upstream: String,
        /// The limit that was exceeded.
        after: Duration,
        /// Which deadline.
        phase: &'static str,
    },
    /// The upstream answered with an HTTP error status (or, when streaming, sent an error
    /// event before the first chunk; its status is then derived from the error type).
    #[error("upstream '{upstream}' returned HTTP {status}: {message}")]
    Status {
        /// Upstream name.
        upstream: String,
        /// HTTP status.
        status: u16,
        /// The upstream's error message when it sent an OpenAI or Anthropic error body,
        /// otherwise the start of the body or the status text.
        message: String,
        /// `Retry-After` / `retry-after-ms` when the upstream sent one.
        retry_after: Option<Duration>,
    },
    /// The upstream answered with something that is not the expected protocol: malformed
    /// JSON or SSE, missing fields, invalid UTF-8.
    #[error("upstream '{upstream}': protocol error: {message}")]
    Protocol {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        message: String,
    },
    /// The circuit breaker is open: the call was refused without touching the network.
    #[error("upstream '{upstream}' is unavailable (circuit open, retry in {retry_in:?})")]
    CircuitOpen {
        /// Upstream name.
        upstream: String,
        /// Time until a probe request will be let through (zero while a probe is in flight).
        retry_in: Duration,
    },
    /// A stream broke after its first chunk: connection closed or reset, the stream ended
    /// without its terminator, or the upstream sent an error event.
    #[error("upstream '{upstream}': stream interrupted: {message}")]
    Interrupted {
        /// Upstream name.
        upstream: String,
        /// What happened.
        message: String,
    },
    /// The request cannot be expressed in this upstream's protocol (e.g. `n > 1` or
    /// `logprobs` for Anthropic). Nothing was sent.
    #[error("upstream '{upstream}' does not support '{param}': {message}")]
    Unsupported {
        /// Upstream name.
        upstream: String,
        /// The request parameter at fault.
        param: &'static str,
        /// Explanation.
        message: String,
    },
    /// The upstream configuration is invalid (bad URL or header). Returned by
    /// [`crate::Upstream::new`].
    #[error("upstream '{upstream}': invalid configuration: {message}")]
    Config {
        /// Upstream name.
        upstream: String,
        /// What is wrong.
        message: String,
    },
}

/// Statuses worth retrying: request timeout, conflict, rate limit, and every 5xx
/// (including Anthropic's 529 "overloaded").
pub(crate) fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || (500..=599).contains(&status)
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
fn retry_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

impl ProviderError {
    /// Whether the failure is transient: connection failures, timeouts, and HTTP 408, 409,
    /// 429 and 5xx. Protocol errors, non-retryable 4xx, an open circuit, a broken stream and
    /// configuration problems are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } | ProviderError::Timeout { .. } => true,
            ProviderError::Status { status, .. } => status_is_retryable(*status),
            ProviderError::Protocol { .. }
            | ProviderError::CircuitOpen { .. }
            | ProviderError::Interrupted { .. }
            | ProviderError::Unsupported { .. }
            | ProviderError::Config { .. } => false,
        }
    }

    /// Tandem's name of the upstream that failed.
    pub fn upstream(&self) -> &str {
        match self {
            ProviderError::Connect { upstream, .. }
            | ProviderError::Timeout { upstream, .. }
            | ProviderError::Status { upstream, .. }
            | ProviderError::Protocol { upstream, .. }
            | ProviderError::CircuitOpen { upstream, .. }
            | ProviderError::Interrupted { upstream, .. }
            | ProviderError::Unsupported { upstream, .. }
            | ProviderError::Config { upstream, .. } => upstream,
        }
    }

    /// Whether this failure says something about the upstream's health (counted by the
    /// circuit breaker). Non-retryable 4xx are the request's fault (or a configuration
    /// problem) and prove the upstream is up; unsupported requests never reached it.
    pub(crate) fn counts_against_upstream(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => status_is_retryable(*status),
            ProviderError::Unsupported { .. }
            | ProviderError::Config { .. }
            | ProviderError::CircuitOpen { .. } => false,
            ProviderError::Connect { .. }
            | ProviderError::Timeout { .. }
            | ProviderError::Protocol { .. }
            | ProviderError::Interrupted { .. } => true,
        }
    }

    /// The error to show the API client, in OpenAI's shape:
    ///
    /// | upstream failure | status | `code` |
    /// |---|---|---|
    /// | 4xx other than 401/403/408/409/429 | same status, upstream's message | `upstream_rejected` |
    /// | 401 / 403 (Tandem's key for the upstream was refused) | 502 | `upstream_auth_failed` |
    /// | 429 | 429 with `Retry-After` | `upstream_rate_limited` |
    /// | 408 / 409 / 5xx | 502 (`Retry-After` passed on when sent) | `upstream_error` |
    /// | connection failure | 502 | `upstream_unavailable` |
    /// | malformed response | 502 | `upstream_protocol_error` |
    /// | stream broke mid-way | 502 | `upstream_interrupted` |
    /// | timeout | 504 | `upstream_timeout` |
    /// | circuit open | 503 with `Retry-After` | `upstream_circuit_open` |
    /// | unsupported parameter | 400 naming the parameter | `unsupported_parameter` |
    /// | invalid configuration | 500 | `upstream_misconfigured` |
    ///
    /// Upstream 401/403 are not passed through: the client's own credentials are fine, and
    /// an SDK would otherwise report a bad API key to the user.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            ProviderError::Status {
                upstream,
                status,
                message,
                retry_after,
            } => {
                let mut e = match *status {
                    429 => ApiError::new(
                        ErrorKind::RateLimited,
                        format!("Upstream '{upstream}' is rate limiting requests: {message}"),
                    )
                    .with_code("upstream_rate_limited"),
                    401 | 403 => ApiError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "Upstream '{upstream}' refused Tandem's credentials (HTTP {status}): \
                             {message}"
                        ),
                    )
                    .with_code("upstream_auth_failed"),
                    s if (400..500).contains(&s) && !status_is_retryable(s) => {
                        let kind = match s {
                            400 => ErrorKind::InvalidRequest,
                            404 => ErrorKind::NotFound,
                            413 => ErrorKind::PayloadTooLarge,
                            415 => ErrorKind::UnsupportedMediaType,
                            _ => ErrorKind::Custom(s),
                        };
                        let msg = if message.trim().is_empty() {
                            format!("Upstream '{upstream}' rejected the request (HTTP {s}).")
                        } else {
                            message.clone()
                        };
                        ApiError::new(kind, msg).with_code("upstream_rejected")
                    }
                    s => ApiError::new(
                        ErrorKind::BadGateway,
                        format!("Upstream '{upstream}' failed (HTTP {s}): {message}"),
                    )
                    .with_code("upstream_error"),
                };
                if let Some(ra) = retry_after {
                    e.retry_after = Some(retry_secs(*ra));
                } else if *status == 429 {
                    e.retry_after = Some(1);
                }
                e
            }
            ProviderError::Connect { upstream, message } => ApiError::new(
                ErrorKind::BadGateway,
                format!("Upstream '{upstream}' is unreachable: {message}"),
            )
            .with_code("upstream_unavailable"),
            ProviderError::Protocol { upstream, message } => ApiError::new(
                ErrorKind::BadGateway,
                format!("Upstream '{upstream}' sent an invalid response: {message}"),
            )
            .with_code("upstream_protocol_error"),
            ProviderError::Interrupted { upstream, message } => ApiError::new(
                ErrorKind::BadGateway,
                format!("The stream from upstream '{upstream}' was interrupted: {message}"),
            )
            .with_code("upstream_interrupted"),
            ProviderError::Timeout {
                upstream,
                after,
                phase,
            } => ApiError::new(
                ErrorKind::Timeout,
                format!("Upstream '{upstream}' timed out after {after:?} ({phase})."),
            )
            .with_code("upstream_timeout"),
            ProviderError::CircuitOpen { upstream, retry_in } => ApiError::unavailable(
                format!(
                    "Upstream '{upstream}' is temporarily unavailable after repeated failures."
                ),
                retry_secs(*retry_in),
            )
            .with_code("upstream_circuit_open"),
            ProviderError::Unsupported {
                upstream,
                param,
                message,
            } => ApiError::invalid(
                *param,
                format!("Upstream '{upstream}' does not support '{param}': {message}"),
            )
            .with_code("unsupported_parameter"),
            ProviderError::Config { upstream, message } => {
                ApiError::internal(format!("Upstream '{upstream}' is misconfigured: {message}"))
                    .with_code("upstream_misconfigured")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(s: u16, ra: Option<u64>) -> ProviderError {
        ProviderError::Status {
            upstream: "gpt".into(),
            status: s,
            message: "boom".into(),
            retry_after: ra.map(Duration::from_millis),
        }
    }

    #[test]
    fn retryable() {
        for s in [408, 409, 429, 500, 502, 503, 529] {
            assert!(status(s, None).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!status(s, None).is_retryable(), "{s}");
        }
        let t = ProviderError::Timeout {
            upstream: "gpt".into(),
            after: Duration::from_secs(1),
            phase: "response",
        };
        assert!(t.is_retryable());
        assert_eq!(t.upstream(), "gpt");
    }

    #[test]
    fn api_mapping() {
        let e = status(400, None).to_api_error();
        assert_eq!((e.status(), e.message.as_str()), (400, "boom"));
        assert_eq!(status(404, None).to_api_error().status(), 404);
        assert_eq!(status(422, None).to_api_error().status(), 422);
        assert_eq!(status(401, None).to_api_error().status(), 502);
        let e = status(429, Some(1500)).to_api_error();
        assert_eq!((e.status(), e.retry_after), (429, Some(2)));
        assert_eq!(status(429, None).to_api_error().retry_after, Some(1));
        let e = status(503, None).to_api_error();
        assert_eq!(e.status(), 502);
        assert!(e.message.contains("gpt"));
        let e = ProviderError::CircuitOpen {
            upstream: "gpt".into(),
            retry_in: Duration::ZERO,
        }
        .to_api_error();
        assert_eq!((e.status(), e.retry_after), (503, Some(1)));
        let e = ProviderError::Timeout {
            upstream: "gpt".into(),
            after: Duration::from_secs(1),
            phase: "idle",
        }
        .to_api_error();
        assert_eq!(e.status(), 504);
        let e = ProviderError::Connect {
            upstream: "gpt".into(),
            message: "refused".into(),
        }
        .to_api_error();
        assert_eq!(e.status(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_unavailable"));
    }
}
