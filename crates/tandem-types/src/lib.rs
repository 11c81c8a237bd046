//! Wire types shared by every Tandem crate.
//!
//! * [`error::ApiError`] — the one error type that crosses the HTTP boundary, rendered in
//!   OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.
//! * [`openai`] — request and response bodies of the OpenAI-compatible API, with the
//!   validation rules clients depend on (unknown parameters are named in a 400, ranges are
//!   checked, `stop` may be a string or a list, …).
//! * [`tools`] — function tools, tool choice, tool calls and structured-output formats.
//!
//! This crate does no I/O and has no heavy dependencies, so every other crate can use it.

pub mod error;
pub mod openai;
pub mod tools;

pub use error::{ApiError, ErrorBody, ErrorKind};
