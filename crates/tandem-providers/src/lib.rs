//! Remote LLM upstreams: OpenAI-compatible servers and Anthropic's Messages API, behind one
//! interface that speaks Tandem's OpenAI types ([`tandem_types::openai`]).
//!
//! An [`Upstream`] is built from an [`UpstreamConfig`] and shared (it is `Send + Sync`; put
//! it in an `Arc`). [`Upstream::chat`] returns a [`ChatCompletion`](tandem_types::openai::ChatCompletion),
//! [`Upstream::chat_stream`] a stream of
//! [`ChatCompletionChunk`](tandem_types::openai::ChatCompletionChunk)s; Anthropic answers are
//! translated into the OpenAI shapes (see [`anthropic`] for the mapping). Both report the
//! exact JSON body sent and the number of attempts.
//!
//! # Endpoints
//! OpenAI-compatible: `POST {base_url}/chat/completions` (the base normally ends in `/v1`),
//! `Authorization: Bearer <key>`. Anthropic: `POST {base_url}/messages` when the base ends
//! in `/v1`, else `POST {base_url}/v1/messages`; `x-api-key`, `anthropic-version:
//! 2023-06-01`. Configured extra headers are added to (and override) these.
//!
//! # Timeouts
//! * `connect_timeout`: TCP + TLS setup → [`ProviderError::Timeout`] phase `"connect"`.
//! * `request_timeout`, per attempt: non-streaming, the whole response (phase
//!   `"response"`); streaming, until the first chunk (phase `"first byte"`).
//! * `idle_timeout`, streaming only, once the first chunk has arrived: the longest wait for
//!   the next bytes (any bytes, SSE comments and `ping` events included) → phase `"idle"`,
//!   yielded as the stream's last item.
//!
//! # Retries
//! Connection failures, timeouts and HTTP 408, 409, 429 and 5xx (Anthropic's 529 included)
//! are retried up to `max_retries` times (so `max_retries + 1` attempts). The delay before
//! retry *k* is `backoff_initial × 2^(k-1)`, capped at `backoff_max`, multiplied by a random
//! factor in [0.5, 1] (jitter). When the upstream sends `retry-after-ms` or `Retry-After`
//! (seconds or HTTP date) the wait is at least that long; if it asks for more than
//! `max_retry_after` (default 30 s) the error is returned at once, carrying `retry_after`.
//! Other 4xx, protocol errors and unsupported requests are never retried. A streaming
//! request is retried only until its first chunk; [`Upstream::chat_stream`] returns once that
//! chunk has arrived, so nothing has been shown to the caller when a retry happens.
//!
//! # Stream termination
//! After the first chunk, every failure ends the stream with exactly one `Err` item:
//! a reset connection or a stream that ends without its terminator (`data: [DONE]` /
//! `message_stop`) → [`ProviderError::Interrupted`]; an upstream error event (`data:
//! {"error": …}` or Anthropic `event: error`) → `Interrupted` naming the upstream's message;
//! malformed SSE, invalid UTF-8 or non-JSON data → [`ProviderError::Protocol`]; silence →
//! `Timeout` (`"idle"`). The stream never hangs longer than `idle_timeout`. Dropping it
//! closes the connection. Before the first chunk the same conditions are attempt failures
//! (a broken connection is a retryable [`ProviderError::Connect`], an error event a
//! [`ProviderError::Status`] with the status matching the error type).
//!
//! # Circuit breaker
//! Per upstream, counting consecutive failed **requests** (each request once, after its
//! retries are exhausted). After `breaker_failures` of them the circuit opens: calls fail
//! fast with [`ProviderError::CircuitOpen`] without touching the network. After
//! `breaker_cooldown` it is half-open: one probe request is let through (concurrent calls
//! still fail fast); its success closes the circuit, its failure re-opens it for another
//! cooldown. A non-retryable 4xx is not a failure: it proves the upstream is up (it counts
//! as a success). A streaming request that fails before its first chunk is a failure; once
//! started it is counted when the stream ends: a success, or a failure if it broke (a stream
//! dropped early by the caller counts as neither). A half-open probe that streams is settled
//! by its first chunk, so recovery does not wait for a long answer. `breaker_failures = 0`
//! disables the breaker.
//! [`Upstream::breaker_state`] exposes the state for metrics.
//!
//! # Secrets
//! The API key is a [`Secret`] (`Debug`/`Display` print `***`). Error messages never contain
//! it: reqwest errors are stripped of URLs, and upstream messages are scrubbed of the key and
//! of secret-looking configured header values.

pub mod anthropic;
mod breaker;
mod config;
mod error;
mod openai;
pub mod sse;
mod stream;
mod upstream;
mod util;

pub use breaker::BreakerState;
pub use config::{ProviderKind, Secret, UpstreamConfig};
pub use error::ProviderError;
pub use upstream::{Upstream, UpstreamReply, UpstreamStream};
