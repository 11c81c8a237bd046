//! Sentence embeddings for Tandem, computed on the CPU by a hand-written BERT forward pass
//! over weights loaded with [candle] (weights are packed once at load time, so short
//! inputs cost little more than streaming the weights once).
//!
//! The crate runs BERT-style [sentence-transformers] models — primarily
//! `all-MiniLM-L6-v2` (384 dimensions) — from a local directory holding:
//!
//! * `config.json` — the Hugging Face BERT configuration,
//! * `tokenizer.json` — the Hugging Face tokenizer,
//! * `model.safetensors` — the weights (memory-mapped; names with or without a
//!   `bert.` / `model.` prefix are accepted),
//! * `1_Pooling/config.json` — optional sentence-transformers pooling configuration
//!   (mean pooling is assumed when it is absent; CLS pooling is also supported).
//!
//! Embeddings are the pooled last hidden states, L2-normalised, so the dot product of two
//! vectors is their cosine similarity.
//!
//! [`Embedder::load`] keeps the model's f32 weights (exact results).
//! [`Embedder::load_with`] can store the dense layers' weights as f16 or int8
//! ([`WeightPrecision`]): int8 (per-channel weight scales, per-token dynamic int8
//! activations) streams a quarter of the bytes and is several times faster on short inputs;
//! its embeddings stay within ~0.015 cosine of f32 (mean ~0.997 on the test corpus).
//!
//! Inputs are batched internally: they are grouped by token length and their tokens stacked
//! for the dense layers, while attention runs per input (there is no padding), so a batched
//! result equals (to float rounding) the result of embedding each input alone, and results
//! always come back in input order.
//! Inputs longer than the model's maximum sequence length are rejected with
//! [`EmbedError::InputTooLong`]; nothing is ever truncated silently.
//!
//! [`Embedder`] is `Send + Sync`: load it once, share it in an `Arc`, and call it from
//! blocking threads (e.g. `tokio::task::spawn_blocking`), since embedding is CPU-bound.
//!
//! ```no_run
//! # fn main() -> Result<(), tandem_embed::EmbedError> {
//! let embedder = tandem_embed::Embedder::load(std::path::Path::new("/models/minilm-l6"))?;
//! let out = embedder.embed(&["a cat", "a kitten"])?;
//! let cosine: f32 = out.vectors[0].iter().zip(&out.vectors[1]).map(|(a, b)| a * b).sum();
//! println!("cos = {cosine}, {} prompt tokens", out.prompt_tokens);
//! # Ok(())
//! # }
//! ```
//!
//! [candle]: https://github.com/huggingface/candle
//! [sentence-transformers]: https://www.sbert.net/

mod embedder;
mod error;
mod forward;
mod quant;

pub use embedder::{EmbedOutput, Embedder, LoadOptions};
pub use error::{BoxError, EmbedError};
pub use quant::WeightPrecision;
