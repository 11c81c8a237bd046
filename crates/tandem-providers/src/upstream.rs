//! [`Upstream`]: one remote model behind a pooled HTTP client, retries and a breaker.

use crate::anthropic::{self, ANTHROPIC_VERSION};
use crate::breaker::{Breaker, BreakerState, Permit};
use crate::config::{ProviderKind, Secret, UpstreamConfig, is_sensitive_header};
use crate::error::ProviderError;
use crate::openai;
use crate::stream::{Fault, StreamSettings, StreamState, Translator};
use crate::util::{describe_error_body, retry_after};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tandem_types::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use tokio::time::Instant;

/// A non-streaming answer.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// The answer in OpenAI's shape; `model` is the model the upstream reports.
    pub completion: ChatCompletion,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
    /// The exact JSON body sent upstream (on the last attempt).
    pub sent: serde_json::Value,
}

/// A streaming answer. The stream yields OpenAI chunks (Anthropic events are translated),
/// including the final usage chunk (`choices: []`) when the upstream sends one; it ends after
/// the upstream's terminator, or right after yielding one `Err` when the stream breaks.
pub struct UpstreamStream {
    /// The chunks.
    pub stream: BoxStream<'static, Result<ChatCompletionChunk, ProviderError>>,
    /// Attempts made before the first chunk arrived.
    pub attempts: u32,
    /// The exact JSON body sent upstream (on the last attempt).
    pub sent: serde_json::Value,
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("attempts", &self.attempts)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

/// One remote model. `Send + Sync`; share it in an `Arc`. It holds one connection-pooling
/// HTTP client (rustls) and the circuit breaker; see the crate docs for the retry, timeout
/// and breaker semantics.
pub struct Upstream {
    cfg: UpstreamConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    secrets: Vec<String>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("cfg", &self.cfg)
            .field("url", &self.url.as_str())
            .field("breaker", &self.breaker_state())
            .finish_non_exhaustive()
    }
}

/// An error and its sources, joined with `: ` (reqwest's own message is terse).
/// Per-request settings of an upstream call (see [`Upstream::call`]).
struct Call {
    headers: HeaderMap,
    json: bool,
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

impl Upstream {
    /// Validate the configuration and build the HTTP client.
    pub fn new(cfg: UpstreamConfig) -> Result<Upstream, ProviderError> {
        let config_err = |message: String| ProviderError::Config {
            upstream: cfg.name.clone(),
            message,
        };
        let url = reqwest::Url::parse(&cfg.endpoint())
            .map_err(|e| config_err(format!("invalid base_url {:?}: {e}", cfg.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_err(format!(
                "base_url must be http or https, not {:?}",
                url.scheme()
            )));
        }
        if cfg.model.trim().is_empty() {
            return Err(config_err("model must not be empty".into()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let key = cfg.api_key.as_ref().map(Secret::expose);
        let mut secrets: Vec<String> = Vec::new();
        if let Some(key) = key {
            let (name, value) = match cfg.kind {
                ProviderKind::OpenAi => (AUTHORIZATION, format!("Bearer {key}")),
                ProviderKind::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
            };
            let mut v = HeaderValue::from_str(&value)
                .map_err(|_| config_err("the API key contains invalid characters".into()))?;
            v.set_sensitive(true);
            headers.insert(name, v);
            secrets.push(key.to_string());
        }
        if cfg.kind == ProviderKind::Anthropic {
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_err(format!("invalid header name {name:?}")))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| config_err(format!("invalid value for header {name:?}")))?;
            if is_sensitive_header(name) {
                v.set_sensitive(true);
                secrets.push(value.clone());
                if let Some(token) = value.strip_prefix("Bearer ") {
                    secrets.push(token.to_string());
                }
            }
            headers.insert(n, v);
        }
        secrets.retain(|s| s.len() >= 4);
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                config_err(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let breaker = Arc::new(Breaker::new(
            &cfg.name,
            cfg.breaker_failures,
            cfg.breaker_cooldown,
        ));
        Ok(Upstream {
            cfg,
            client,
            url,
            headers,
            secrets,
            breaker,
        })
    }

    /// The configuration this upstream was built from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// The circuit breaker's state, for metrics and health checks.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state_at(Instant::now())
    }

    /// Non-streaming chat completion (`req.stream` is ignored). Retryable failures
    /// (connection errors, timeouts, 408, 409, 429, 5xx) are retried with backoff, honouring
    /// `Retry-After`; other errors are returned at once. See the crate docs.
    pub async fn chat(&self, req: &ChatRequest) -> Result<UpstreamReply, ProviderError> {
        let sent = self.build_body(req, false)?;
        let body = Bytes::from(serde_json::to_vec(&sent).map_err(|e| self.protocol(e))?);
        let call = self.call(req);
        let (completion, attempts, permit) = self
            .with_retries(|| self.attempt_chat(&body, &call))
            .await?;
        permit.success();
        Ok(UpstreamReply {
            completion,
            attempts,
            sent,
        })
    }

    /// Streaming chat completion (`req.stream` is ignored). Returns once the first chunk has
    /// arrived; failures before that are retried like [`Upstream::chat`]'s. Failures after it
    /// end the stream with one `Err` item. See the crate docs.
    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<UpstreamStream, ProviderError> {
        let sent = self.build_body(req, true)?;
        let body = Bytes::from(serde_json::to_vec(&sent).map_err(|e| self.protocol(e))?);
        let call = self.call(req);
        let ((first, state), attempts, permit) = self
            .with_retries(|| self.attempt_stream(&body, &call))
            .await?;
        // A probe is settled by the first chunk, so that the circuit closes without waiting
        // for a long stream to finish. Otherwise the request is counted once, when the
        // stream ends: a success, or a failure if it broke (dropping it early is neutral).
        let permit = if permit.is_probe() {
            permit.success();
            None
        } else {
            Some(permit)
        };
        let breaker = Arc::clone(&self.breaker);
        let rest = futures::stream::unfold(
            (state, permit, breaker),
            |(mut st, mut permit, breaker)| async move {
                let Some(item) = st.next_item(None).await else {
                    if let Some(p) = permit.take() {
                        p.success();
                    }
                    return None;
                };
                if let Err(e) = &item
                    && e.counts_against_upstream()
                {
                    match permit.take() {
                        Some(p) => p.failure(),
                        None => breaker.record_failure(),
                    }
                }
                Some((item, (st, permit, breaker)))
            },
        );
        let stream = futures::stream::iter(first.map(Ok)).chain(rest).boxed();
        Ok(UpstreamStream {
            stream,
            attempts,
            sent,
        })
    }

    fn build_body(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<serde_json::Value, ProviderError> {
        match self.cfg.kind {
            ProviderKind::OpenAi => Ok(openai::build_body(&self.cfg, req, stream)),
            ProviderKind::Anthropic => anthropic::build_body(&self.cfg, req, stream),
        }
    }

    fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        for k in &self.secrets {
            out = crate::util::scrub(&out, Some(k));
        }
        out
    }

    fn protocol(&self, e: impl std::fmt::Display) -> ProviderError {
        ProviderError::Protocol {
            upstream: self.cfg.name.clone(),
            message: self.scrub(&e.to_string()),
        }
    }

    fn fault(&self, f: Fault) -> ProviderError {
        match f {
            Fault::Protocol(m) => self.protocol(m),
            Fault::Upstream { status, message } => ProviderError::Status {
                upstream: self.cfg.name.clone(),
                status,
                message: self.scrub(&message),
                retry_after: None,
            },
        }
    }

    /// Map a transport error; `phase`/`after` describe the deadline a timeout refers to.
    fn transport(&self, e: reqwest::Error, phase: &'static str, after: Duration) -> ProviderError {
        let e = e.without_url();
        let upstream = self.cfg.name.clone();
        if e.is_timeout() && e.is_connect() {
            ProviderError::Timeout {
                upstream,
                after: self.cfg.connect_timeout,
                phase: "connect",
            }
        } else if e.is_timeout() {
            ProviderError::Timeout {
                upstream,
                after,
                phase,
            }
        } else {
            ProviderError::Connect {
                upstream,
                message: self.scrub(&error_chain(&e)),
            }
        }
    }

    fn status_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
        ProviderError::Status {
            upstream: self.cfg.name.clone(),
            status,
            message: self.scrub(&describe_error_body(body)),
            retry_after: retry_after(headers),
        }
    }

    /// What one request needs beyond its body: for an Anthropic upstream, the client's
    /// `anthropic-version` / `anthropic-beta` headers (forwarded unchanged; they replace the
    /// configured version) and whether a structured output comes back as a forced tool call.
    fn call(&self, req: &ChatRequest) -> Call {
        let mut headers = HeaderMap::new();
        if self.cfg.kind == ProviderKind::Anthropic {
            for (k, v) in &req.forward_headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    headers.append(n, v);
                }
            }
        }
        Call {
            headers,
            json: self.cfg.kind == ProviderKind::Anthropic && anthropic::json_tool(req),
        }
    }

    fn request(&self, body: &Bytes, accept: &'static str, call: &Call) -> reqwest::RequestBuilder {
        let mut headers = self.headers.clone();
        for name in call.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &call.headers {
            headers.append(name, value.clone());
        }
        self.client
            .post(self.url.clone())
            .headers(headers)
            .header(ACCEPT, accept)
            .body(body.clone())
    }

    async fn attempt_chat(
        &self,
        body: &Bytes,
        call: &Call,
    ) -> Result<ChatCompletion, ProviderError> {
        let after = self.cfg.request_timeout;
        let work = async {
            let resp = self
                .request(body, "application/json", call)
                .send()
                .await
                .map_err(|e| self.transport(e, "response", after))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.transport(e, "response", after))?;
            if !(200..300).contains(&status) {
                return Err(self.status_error(status, &headers, &bytes));
            }
            match self.cfg.kind {
                ProviderKind::OpenAi => openai::parse_completion(&bytes, &self.cfg),
                ProviderKind::Anthropic => anthropic::parse_message(&bytes, &self.cfg, call.json),
            }
            .map_err(|f| self.fault(f))
        };
        match tokio::time::timeout(after, work).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Timeout {
                upstream: self.cfg.name.clone(),
                after,
                phase: "response",
            }),
        }
    }

    async fn attempt_stream(
        &self,
        body: &Bytes,
        call: &Call,
    ) -> Result<(Option<ChatCompletionChunk>, StreamState), ProviderError> {
        let after = self.cfg.request_timeout;
        let deadline = Instant::now() + after;
        let timeout = || ProviderError::Timeout {
            upstream: self.cfg.name.clone(),
            after,
            phase: "first byte",
        };
        let resp = tokio::time::timeout_at(
            deadline,
            self.request(body, "text/event-stream", call).send(),
        )
        .await
        .map_err(|_| timeout())?
        .map_err(|e| self.transport(e, "first byte", after))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !(200..300).contains(&status) || content_type.starts_with("application/json") {
            let headers = resp.headers().clone();
            let bytes = tokio::time::timeout_at(deadline, resp.bytes())
                .await
                .map_err(|_| timeout())?
                .map_err(|e| self.transport(e, "first byte", after))?;
            if !(200..300).contains(&status) {
                return Err(self.status_error(status, &headers, &bytes));
            }
            return Err(self.protocol(format!(
                "expected an event stream, got application/json: {}",
                describe_error_body(&bytes)
            )));
        }
        let translator = match self.cfg.kind {
            ProviderKind::OpenAi => Translator::OpenAi(openai::StreamTranslator::new(&self.cfg)),
            ProviderKind::Anthropic => {
                Translator::Anthropic(anthropic::StreamTranslator::new(&self.cfg, call.json))
            }
        };
        let settings = StreamSettings {
            upstream: self.cfg.name.clone(),
            request_timeout: after,
            idle_timeout: self.cfg.idle_timeout,
            secrets: self.secrets.clone(),
        };
        let mut state = StreamState::new(resp.bytes_stream().boxed(), translator, settings);
        match state.next_item(Some(deadline)).await {
            Some(Ok(chunk)) => Ok((Some(chunk), state)),
            Some(Err(e)) => Err(e),
            None => Ok((None, state)),
        }
    }

    /// Backoff before retry number `retry` (1-based), or `None` to give up because the
    /// upstream asked for a longer wait than [`UpstreamConfig::max_retry_after`].
    fn retry_delay(&self, retry: u32, e: &ProviderError) -> Option<Duration> {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let exp = self
            .cfg
            .backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.cfg.backoff_max)
            .min(self.cfg.backoff_max);
        let backoff = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match e {
            ProviderError::Status {
                retry_after: Some(ra),
                ..
            } => (*ra <= self.cfg.max_retry_after).then(|| backoff.max(*ra)),
            _ => Some(backoff),
        }
    }

    /// Run `attempt` under the breaker, retrying retryable failures. Returns the value, the
    /// number of attempts and the breaker permit, for the caller to settle; a final failure
    /// settles it here.
    async fn with_retries<T, F, Fut>(
        &self,
        mut attempt: F,
    ) -> Result<(T, u32, Permit), ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let permit: Permit =
            self.breaker
                .acquire()
                .map_err(|retry_in| ProviderError::CircuitOpen {
                    upstream: self.cfg.name.clone(),
                    retry_in,
                })?;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(v) => return Ok((v, attempts, permit)),
                Err(e) => {
                    let delay = if e.is_retryable() && attempts <= self.cfg.max_retries {
                        self.retry_delay(attempts, &e)
                    } else {
                        None
                    };
                    let Some(delay) = delay else {
                        tracing::warn!(
                            upstream = %self.cfg.name,
                            attempts,
                            error = %e,
                            "upstream request failed"
                        );
                        if e.counts_against_upstream() {
                            permit.failure();
                        } else {
                            permit.success();
                        }
                        return Err(e);
                    };
                    tracing::info!(
                        upstream = %self.cfg.name,
                        attempt = attempts,
                        error = %e,
                        ?delay,
                        "retrying upstream request"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
