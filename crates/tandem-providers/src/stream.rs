//! Reading an SSE response body into chat chunks, with timeouts and error termination.

use crate::anthropic;
use crate::error::ProviderError;
use crate::openai;
use crate::sse::{SseDecoder, SseEvent};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::VecDeque;
use std::time::Duration;
use tandem_types::openai::ChatCompletionChunk;
use tokio::time::Instant;

/// What a translator found wrong with an event (or a response body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Not the protocol we expect.
    Protocol(String),
    /// The upstream reported an error, with the HTTP status its type corresponds to.
    Upstream { status: u16, message: String },
}

/// HTTP status matching an OpenAI or Anthropic error `type` (500 when unknown).
pub(crate) fn status_for_error_type(ty: Option<&str>) -> u16 {
    match ty.unwrap_or("") {
        "invalid_request_error" | "BadRequestError" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" | "NotFoundError" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => 429,
        "overloaded_error" => 529,
        "timeout_error" => 504,
        _ => 500,
    }
}

/// Protocol-specific event → chunk translation.
pub(crate) enum Translator {
    OpenAi(openai::StreamTranslator),
    Anthropic(anthropic::StreamTranslator),
}

impl Translator {
    fn on_event(
        &mut self,
        ev: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<bool, Fault> {
        match self {
            Translator::OpenAi(t) => t.on_event(ev, out),
            Translator::Anthropic(t) => t.on_event(ev, out),
        }
    }

    fn terminator(&self) -> &'static str {
        match self {
            Translator::OpenAi(_) => "data: [DONE]",
            Translator::Anthropic(_) => "message_stop",
        }
    }
}

/// How to phrase errors and what deadlines to apply.
pub(crate) struct StreamSettings {
    pub(crate) upstream: String,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// Strings to scrub from messages (API key and secret-looking headers).
    pub(crate) secrets: Vec<String>,
}

/// An SSE body being turned into chunks.
///
/// Errors are phrased according to whether a chunk has already been produced: before that,
/// a broken connection is a (retryable) [`ProviderError::Connect`] and an upstream error
/// event a [`ProviderError::Status`]; after it, both are [`ProviderError::Interrupted`].
/// After an error or the terminator nothing more is read.
pub(crate) struct StreamState {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: SseDecoder,
    translator: Translator,
    queue: VecDeque<Result<ChatCompletionChunk, ProviderError>>,
    finished: bool,
    committed: bool,
    settings: StreamSettings,
}

impl StreamState {
    pub(crate) fn new(
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        translator: Translator,
        settings: StreamSettings,
    ) -> Self {
        StreamState {
            body,
            decoder: SseDecoder::new(),
            translator,
            queue: VecDeque::new(),
            finished: false,
            committed: false,
            settings,
        }
    }

    fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        for k in &self.settings.secrets {
            out = crate::util::scrub(&out, Some(k));
        }
        out
    }

    fn fail(&mut self, e: ProviderError) {
        let upstream = self.settings.upstream.clone();
        let e = match e {
            ProviderError::Interrupted { message, .. } if !self.committed => {
                ProviderError::Connect {
                    upstream,
                    message: format!("stream broke before the first chunk: {message}"),
                }
            }
            ProviderError::Status {
                status, message, ..
            } if self.committed => ProviderError::Interrupted {
                upstream,
                message: format!("upstream sent an error event (status {status}): {message}"),
            },
            other => other,
        };
        let e = match e {
            ProviderError::Connect { upstream, message } => ProviderError::Connect {
                message: self.scrub(&message),
                upstream,
            },
            ProviderError::Status {
                upstream,
                status,
                message,
                retry_after,
            } => ProviderError::Status {
                message: self.scrub(&message),
                upstream,
                status,
                retry_after,
            },
            ProviderError::Protocol { upstream, message } => ProviderError::Protocol {
                message: self.scrub(&message),
                upstream,
            },
            ProviderError::Interrupted { upstream, message } => ProviderError::Interrupted {
                message: self.scrub(&message),
                upstream,
            },
            other => other,
        };
        self.queue.push_back(Err(e));
        self.finished = true;
    }

    fn fault(&mut self, f: Fault) {
        let upstream = self.settings.upstream.clone();
        self.fail(match f {
            Fault::Protocol(message) => ProviderError::Protocol { upstream, message },
            Fault::Upstream { status, message } => ProviderError::Status {
                upstream,
                status,
                message,
                retry_after: None,
            },
        });
    }

    fn handle(&mut self, ev: &SseEvent) {
        let mut out = Vec::new();
        let res = self.translator.on_event(ev, &mut out);
        if !out.is_empty() {
            self.committed = true;
        }
        self.queue.extend(out.into_iter().map(Ok));
        match res {
            Ok(true) => self.finished = true,
            Ok(false) => {}
            Err(f) => self.fault(f),
        }
    }

    /// The next chunk or error; `None` after the terminator or an error. With a `deadline`
    /// (before the first chunk) reading stops there with a `"first byte"` timeout; without
    /// one each read may wait at most the idle timeout.
    pub(crate) async fn next_item(
        &mut self,
        deadline: Option<Instant>,
    ) -> Option<Result<ChatCompletionChunk, ProviderError>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            let (limit, phase, after) = match deadline {
                Some(d) => (d, "first byte", self.settings.request_timeout),
                None => (
                    Instant::now() + self.settings.idle_timeout,
                    "idle",
                    self.settings.idle_timeout,
                ),
            };
            match tokio::time::timeout_at(limit, self.body.next()).await {
                Err(_) => {
                    let upstream = self.settings.upstream.clone();
                    self.fail(ProviderError::Timeout {
                        upstream,
                        after,
                        phase,
                    });
                }
                Ok(Some(Ok(bytes))) => {
                    let mut events = Vec::new();
                    let res = self.decoder.push_into(&bytes, &mut events);
                    for ev in &events {
                        self.handle(ev);
                        if self.finished {
                            break;
                        }
                    }
                    if let Err(e) = res
                        && !self.finished
                    {
                        self.fault(Fault::Protocol(e.to_string()));
                    }
                }
                Ok(Some(Err(e))) => {
                    let upstream = self.settings.upstream.clone();
                    self.fail(ProviderError::Interrupted {
                        upstream,
                        message: crate::upstream::error_chain(&e.without_url()),
                    });
                }
                Ok(None) => {
                    match self.decoder.finish() {
                        Ok(Some(ev)) => self.handle(&ev),
                        Ok(None) => {}
                        Err(e) => self.fault(Fault::Protocol(e.to_string())),
                    }
                    if !self.finished {
                        let upstream = self.settings.upstream.clone();
                        let message =
                            format!("the stream ended without {}", self.translator.terminator());
                        self.fail(ProviderError::Interrupted { upstream, message });
                    }
                }
            }
        }
    }
}
