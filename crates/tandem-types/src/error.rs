//! The error every API surface returns, mapped to an HTTP status and OpenAI's error shape.

use serde::{Deserialize, Serialize};

/// Category of an [`ApiError`]; decides the HTTP status and the `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a parameter is out of range.
    InvalidRequest,
    /// 401: missing or wrong API key.
    Authentication,
    /// 403: the routing policy refuses the request.
    Forbidden,
    /// 404: unknown model or route.
    NotFound,
    /// 413: body larger than the server accepts.
    PayloadTooLarge,
    /// 415/400: the body is not JSON.
    UnsupportedMediaType,
    /// 429: too many requests queued.
    RateLimited,
    /// 500: a bug or an engine failure.
    Internal,
    /// 502: an upstream answered with garbage.
    BadGateway,
    /// 503: the server is shutting down or the engine is unavailable.
    Unavailable,
    /// 504: an upstream did not answer in time.
    Timeout,
    /// Any other status a policy chose (e.g. a `reject` rule's status).
    Custom(u16),
}

impl ErrorKind {
    /// HTTP status code for this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Custom(s) => s,
        }
    }

    /// The `type` string OpenAI clients see.
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::Custom(s) if s >= 500 => "server_error",
            ErrorKind::Custom(_) => "invalid_request_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal | ErrorKind::BadGateway => "server_error",
            ErrorKind::Unavailable => "service_unavailable_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }
}

/// An error to be returned to an API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Category (status code and `type`).
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// The request parameter at fault, if any (`"messages"`, `"temperature"`, …).
    pub param: Option<String>,
    /// A machine-readable code (`"model_not_found"`, `"context_length_exceeded"`, …).
    pub code: Option<String>,
    /// Seconds the client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 naming the parameter at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// 400 without a specific parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    /// 404 for a model that is not loaded.
    pub fn model_not_found(model: &str, available: &[String]) -> Self {
        let list = if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        };
        ApiError::new(
            ErrorKind::NotFound,
            format!(
                "The model `{model}` does not exist or is not loaded. Available models: {list}."
            ),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 400 for a prompt that does not fit the context window.
    pub fn context_length_exceeded(prompt_tokens: usize, limit: usize) -> Self {
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!(
                "This model's maximum context length is {limit} tokens, but the prompt has \
                 {prompt_tokens} tokens. Shorten the messages."
            ),
        )
        .with_param("messages")
        .with_code("context_length_exceeded")
    }

    /// 429 with a `Retry-After`.
    pub fn overloaded(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(ErrorKind::RateLimited, message).with_code("server_overloaded");
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 503 with a `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(ErrorKind::Unavailable, message);
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Internal, message)
    }

    /// Set the `param` field.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Set the `code` field.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// HTTP status code.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body in OpenAI's shape.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                r#type: self.kind.type_str().to_string(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        }
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// The inner object of [`ErrorBody`]; all four fields are always present (null when unset).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error category, e.g. `invalid_request_error`.
    pub r#type: String,
    /// Parameter at fault.
    pub param: Option<String>,
    /// Machine-readable code.
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_all_four_fields_even_when_null() {
        let e = ApiError::bad_request("nope");
        let v = serde_json::to_value(e.body()).expect("serialize");
        let obj = v["error"].as_object().expect("object");
        for k in ["message", "type", "param", "code"] {
            assert!(obj.contains_key(k), "missing {k}");
        }
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn statuses_map() {
        assert_eq!(ApiError::model_not_found("x", &[]).status(), 404);
        assert_eq!(ApiError::overloaded("busy", 1).status(), 429);
        assert_eq!(ApiError::overloaded("busy", 1).retry_after, Some(1));
        assert_eq!(ApiError::context_length_exceeded(10, 5).status(), 400);
        assert_eq!(ApiError::unavailable("x", 2).status(), 503);
    }
}
