//! Wire types shared by every Tandem crate.
//!
//! * [`error::ApiError`] — the one error type that crosses the HTTP boundary, rendered in
//!   OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
//! * [`openai`] — request and response bodies of the OpenAI-compatible API, with the
//!   validation rules clients depend on (unknown parameters are named in a 400, ranges are
//!   checked, `stop` may be a string or a list, …).
//! * [`tools`] — function tools, tool choice, tool calls and structured-output formats.
//! * [`anthropic`] and [`responses`] — the Anthropic Messages and OpenAI Responses dialects:
//!   parsed into the same [`openai::ChatRequest`], answers and stream chunks rendered back.
//! * [`dialect::Dialect`] — which of the three a request came in.
//!
//! This crate does no I/O and has no heavy dependencies, so every other crate can use it.

pub mod anthropic;
pub mod dialect;
pub mod error;
pub mod openai;
pub mod responses;
pub mod tools;

pub use error::{ApiError, ErrorBody, ErrorKind};
