//! Configuration of one remote upstream.

use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Which wire protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum ProviderKind {
    /// OpenAI's Chat Completions API, or any server compatible with it (vLLM, llama.cpp,
    /// Ollama, LM Studio, OpenRouter, …). Spelled `"openai"` in configuration.
    #[serde(rename = "openai", alias = "open_ai", alias = "openai_compatible")]
    OpenAi,
    /// Anthropic's Messages API. Spelled `"anthropic"` in configuration.
    #[serde(rename = "anthropic")]
    Anthropic,
}

impl ProviderKind {
    /// The configuration spelling: `"openai"` or `"anthropic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string (an API key). `Debug` and `Display` print `***`; only
/// [`Secret::expose`] gives the value, so it never ends up in logs or error messages by
/// accident. It deserializes from a plain string and deliberately does not serialize.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Use it only to build the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything needed to talk to one remote model. Build it with [`UpstreamConfig::new`]
/// (which fills in the defaults documented on each field) and adjust fields as needed.
/// `Debug` masks the API key and the values of secret-looking headers (`authorization`,
/// names containing `key`, `token` or `secret`, cookies).
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Tandem's name for this model, e.g. `"gpt"`; every error message names it.
    pub name: String,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL. OpenAI-compatible: requests go to `{base_url}/chat/completions`, so the base
    /// normally ends in `/v1` (`https://api.openai.com/v1`). Anthropic: requests go to
    /// `{base_url}/messages` when the base already ends in `/v1`, otherwise to
    /// `{base_url}/v1/messages` (`https://api.anthropic.com` → `…/v1/messages`). A trailing
    /// `/` is ignored.
    pub base_url: String,
    /// API key: `Authorization: Bearer …` (OpenAI) or `x-api-key` (Anthropic).
    pub api_key: Option<Secret>,
    /// The upstream's model id, sent in the request body.
    pub model: String,
    /// Extra request headers, sent with every request; they override the built-in ones of
    /// the same name (e.g. `anthropic-version`).
    pub headers: Vec<(String, String)>,
    /// TCP + TLS connection timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Non-streaming: deadline for the whole response (headers and body). Streaming:
    /// deadline for the first chunk (default 60 s). Applies per attempt.
    pub request_timeout: Duration,
    /// Streaming: longest silence allowed between two reads once the stream has started
    /// (default 30 s).
    pub idle_timeout: Duration,
    /// Retries after the first attempt for retryable failures (default 2: up to 3 attempts).
    pub max_retries: u32,
    /// First backoff delay (default 200 ms); doubled per retry, with jitter.
    pub backoff_initial: Duration,
    /// Cap on a backoff delay (default 5 s).
    pub backoff_max: Duration,
    /// Longest `Retry-After` the client waits for before retrying (default 30 s); when the
    /// upstream asks for longer, the error is returned at once (with its `retry_after`).
    pub max_retry_after: Duration,
    /// Consecutive failed requests that open the circuit (default 5; 0 disables the breaker).
    pub breaker_failures: u32,
    /// How long the circuit stays open before one probe request is let through (default 30 s).
    pub breaker_cooldown: Duration,
    /// Anthropic only: `max_tokens` when the request has none (default 1024).
    pub anthropic_max_tokens: u32,
}

impl UpstreamConfig {
    /// A configuration with the default timeouts, retries and breaker settings and no API key.
    pub fn new(
        name: impl Into<String>,
        kind: ProviderKind,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        UpstreamConfig {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_retries: 2,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            anthropic_max_tokens: 1024,
        }
    }

    /// Set the API key (builder style).
    pub fn with_api_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The URL requests are posted to (see [`UpstreamConfig::base_url`] for the rule).
    pub fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.kind {
            ProviderKind::OpenAi => format!("{base}/chat/completions"),
            ProviderKind::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
        }
    }
}

/// Header names whose values are secrets (masked in `Debug`, scrubbed from messages).
pub(crate) fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || n.contains("key")
        || n.contains("token")
        || n.contains("secret")
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if is_sensitive_header(n) {
                    "***"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("headers", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("max_retry_after", &self.max_retry_after)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("anthropic_max_tokens", &self.anthropic_max_tokens)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let o = UpstreamConfig::new("g", ProviderKind::OpenAi, "http://h:1/v1/", "m");
        assert_eq!(o.endpoint(), "http://h:1/v1/chat/completions");
        let a = UpstreamConfig::new(
            "c",
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
            "m",
        );
        assert_eq!(a.endpoint(), "https://api.anthropic.com/v1/messages");
        let a = UpstreamConfig::new("c", ProviderKind::Anthropic, "http://h/v1/", "m");
        assert_eq!(a.endpoint(), "http://h/v1/messages");
    }

    #[test]
    fn secret_is_hidden() {
        let mut cfg = UpstreamConfig::new("g", ProviderKind::OpenAi, "http://h/v1", "m")
            .with_api_key("sk-very-secret");
        cfg.headers = vec![
            ("X-Org-Token".into(), "tok-hidden".into()),
            ("X-Title".into(), "tandem".into()),
        ];
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(!dbg.contains("tok-hidden"), "{dbg}");
        assert!(dbg.contains("tandem"), "{dbg}");
        assert!(dbg.contains("***"));
        assert_eq!(format!("{}", Secret::new("x")), "***");
        assert_eq!(
            cfg.api_key.as_ref().map(Secret::expose),
            Some("sk-very-secret")
        );
    }

    #[test]
    fn kind_serde() {
        let k: ProviderKind = serde_json::from_str("\"openai\"").unwrap();
        assert_eq!(k, ProviderKind::OpenAi);
        let k: ProviderKind = serde_json::from_str("\"anthropic\"").unwrap();
        assert_eq!(k, ProviderKind::Anthropic);
        assert_eq!(
            serde_json::to_string(&ProviderKind::OpenAi).unwrap(),
            "\"openai\""
        );
        let s: Secret = serde_json::from_str("\"k\"").unwrap();
        assert_eq!(s.expose(), "k");
    }
}
