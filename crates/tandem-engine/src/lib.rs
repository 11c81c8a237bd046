//! Local inference for GGUF chat models on llama.cpp (through `llama-cpp-2`).
//!
//! An [`Engine`] owns one model. Its llama.cpp context lives on a dedicated thread that runs
//! a continuous-batching loop: every decode step puts the next token of every running
//! sequence, plus chunks of newly admitted prompts, into one `llama_batch`, so concurrent
//! requests share the matrix multiplications and a new request joins without waiting for
//! others to finish. The [`Engine`] handle is cheap to clone and async-friendly: a request
//! returns a channel on which its tokens arrive one by one. Dropping that receiver (a client
//! that disconnected) frees the sequence's slot at the next step.
//!
//! The KV cache holds `ctx_size` tokens split into one stream per sequence
//! (`ctx_size / parallel` each), so a sequence's attention never spans other sequences'
//! cells and its result does not depend on what else is in the batch. Idle slots keep their
//! tokens so a follow-up request with the same prefix (a multi-turn chat) only processes the
//! new part.

pub mod constrain;
mod detok;
mod pyjson;
pub mod sampler;
pub mod template;
pub mod toolcall;
mod worker;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tandem_types::ApiError;
use tandem_types::openai::{ChatMessage, SamplingParams};
use tokio::sync::mpsc;

pub use constrain::{Constraint, GrammarSpec, Trigger};
pub use detok::TextAssembler;
pub use template::ChatTemplate;

/// How an engine is configured.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Path of the GGUF file.
    pub model_path: PathBuf,
    /// Id the model is served under.
    pub name: String,
    /// Threads for generation; `None` = the free cores (see [`free_cores`]).
    pub threads: Option<usize>,
    /// Threads for prompt processing; `None` = same as `threads`.
    pub threads_batch: Option<usize>,
    /// Total KV-cache size in tokens; each of the `parallel` sequences gets an equal share
    /// (rounded up to a multiple of 256).
    pub ctx_size: u32,
    /// Maximum sequences decoded together.
    pub parallel: u32,
    /// Maximum tokens per decode step (prompt chunks + one token per running sequence).
    pub batch_size: u32,
    /// Tokens llama.cpp computes at once inside a step (bounds the compute buffer).
    pub ubatch_size: u32,
    /// Requests allowed to wait for a slot before new ones get 429.
    pub max_queue: usize,
    /// Keep finished sequences' tokens in the cache for prefix reuse.
    pub prompt_cache: bool,
}

impl EngineConfig {
    /// Defaults for `model_path` served as `name`.
    pub fn new(model_path: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        EngineConfig {
            model_path: model_path.into(),
            name: name.into(),
            threads: None,
            threads_batch: None,
            ctx_size: 4096,
            parallel: 2,
            batch_size: 2048,
            ubatch_size: 512,
            max_queue: 64,
            prompt_cache: true,
        }
    }
}

/// Cores not busy right now: the CPU count minus the cores other processes keep busy, at
/// least 1. llama.cpp's threads spin, so oversubscribing a loaded machine collapses speed.
///
/// "Busy" is measured over [`BUSY_SAMPLE`] from `/proc/stat`, minus this process's own CPU
/// time: the 1-minute load average, used before, still counts a build that has just
/// finished, so `make run` (build, then serve) served on one thread of two. Where
/// `/proc` is missing, the load average, else all cores.
pub fn free_cores() -> usize {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let busy = busy_cores(BUSY_SAMPLE).or_else(load_average).unwrap_or(0.0);
    free_of(n, busy)
}

/// How long [`free_cores`] watches the machine.
const BUSY_SAMPLE: std::time::Duration = std::time::Duration::from_millis(200);

/// `n` cores minus `busy` (rounded), within 1..=n.
fn free_of(n: usize, busy: f64) -> usize {
    let busy = if busy.is_finite() { busy.max(0.0) } else { 0.0 };
    n.saturating_sub(busy.round() as usize).clamp(1, n.max(1))
}

fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse::<f64>().ok()
}

/// (busy, total) clock ticks of all CPUs and the number of CPUs, from `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64, usize)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_ticks(&s)
}

/// Parses `/proc/stat`: the `cpu` line's user, nice, system, idle, iowait, irq, softirq and
/// steal ticks (guest time is already in user), and the count of `cpuN` lines.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64, usize)> {
    let mut lines = stat.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    let cpus = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((total - idle, total, cpus.max(1)))
}

/// User + system clock ticks of this process (`/proc/self/stat` fields 14 and 15).
fn own_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_own_ticks(&s)
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses: fields are
/// counted after its last `)`).
fn parse_own_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Cores kept busy by other processes over `window`.
fn busy_cores(window: std::time::Duration) -> Option<f64> {
    let (b0, t0, cpus) = cpu_ticks()?;
    let o0 = own_ticks().unwrap_or(0);
    std::thread::sleep(window);
    let (b1, t1, _) = cpu_ticks()?;
    let o1 = own_ticks().unwrap_or(o0);
    let total = t1.checked_sub(t0)?;
    if total == 0 {
        return None;
    }
    let others = b1.saturating_sub(b0).saturating_sub(o1.saturating_sub(o0));
    Some(others as f64 / total as f64 * cpus as f64)
}

/// Facts about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Served id.
    pub name: String,
    /// GGUF path.
    pub path: PathBuf,
    /// `general.architecture`.
    pub arch: String,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// KV-cache size of this engine (tokens, all sequences).
    pub ctx_size: u32,
    /// Longest prompt + generation for one request (the per-sequence context).
    pub max_request_tokens: u32,
    /// Vocabulary size.
    pub n_vocab: i32,
    /// Parallel sequences.
    pub parallel: u32,
    /// Generation threads.
    pub threads: usize,
    /// Prompt-processing threads.
    pub threads_batch: usize,
    /// Model file size in bytes.
    pub size_bytes: u64,
    /// Parameter count.
    pub n_params: u64,
    /// Unix seconds when loaded.
    pub loaded_at: u64,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model or its context could not be loaded.
    #[error("failed to load model {path}: {reason}")]
    Load {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The prompt does not fit in the context window.
    #[error(
        "the prompt has {prompt} tokens but at most {limit} fit in this model's context (prompt plus at least one generated token)"
    )]
    ContextLength {
        /// Prompt tokens.
        prompt: usize,
        /// Context limit per request.
        limit: usize,
    },
    /// Too many requests are waiting.
    #[error("the engine for {model} has {queued} requests waiting; retry shortly")]
    Overloaded {
        /// Model id.
        model: String,
        /// Waiting requests.
        queued: usize,
    },
    /// The prompt contains a token id outside the vocabulary.
    #[error("token id {token} is outside the vocabulary (size {n_vocab})")]
    InvalidToken {
        /// Offending id.
        token: i32,
        /// Vocabulary size.
        n_vocab: i32,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The chat template failed to render.
    #[error("the model's chat template failed: {0}")]
    Template(String),
    /// A grammar (JSON schema, tool schema) cannot be compiled or enforced.
    #[error("{0}")]
    Grammar(String),
    /// The engine thread has stopped.
    #[error("the engine for {0} is not running")]
    Stopped(String),
    /// llama.cpp failed while decoding.
    #[error("decode failed: {0}")]
    Decode(String),
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::ContextLength { prompt, limit } => {
                ApiError::context_length_exceeded(*prompt, *limit)
            }
            EngineError::Overloaded { .. } => ApiError::overloaded(e.to_string(), 1),
            EngineError::InvalidToken { .. } => ApiError::invalid("prompt", e.to_string()),
            EngineError::EmptyPrompt => ApiError::invalid("prompt", e.to_string()),
            EngineError::Template(_) => ApiError::invalid("messages", e.to_string()),
            EngineError::Grammar(_) => ApiError::invalid("response_format", e.to_string()),
            EngineError::Stopped(_) => ApiError::unavailable(e.to_string(), 5),
            EngineError::Load { .. } | EngineError::Decode(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop sequence.
    Stop,
    /// Token budget or context exhausted.
    Length,
}

impl FinishReason {
    /// OpenAI's string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Log-probability data of one generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// Token text (lossy for partial UTF-8).
    pub text: String,
    /// Token bytes.
    pub bytes: Vec<u8>,
    /// Log-probability under the model's distribution.
    pub logprob: f32,
    /// Best alternatives: text, bytes, logprob.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Events of one generation, in order: any number of `Token`, then `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New text (may be empty while held back) and, for a sampled token, its id and logprobs.
    Token {
        /// Text delta safe to show.
        text: String,
        /// Sampled token id (None for a final flush of held text).
        token: Option<i32>,
        /// Log-probabilities when requested.
        logprobs: Option<TokenLogprobs>,
    },
    /// Generation finished.
    Done(DoneInfo),
    /// Generation failed.
    Error(String),
}

/// Summary of a finished generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoneInfo {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the cache (not recomputed).
    pub cached_tokens: u32,
    /// Generated tokens (including an end-of-generation token).
    pub completion_tokens: u32,
    /// Seconds spent waiting for a slot.
    pub queue_secs: f64,
    /// Seconds from admission to the first token.
    pub prompt_secs: f64,
    /// Seconds from the first token to the end.
    pub gen_secs: f64,
    /// Tokens sampled under an active grammar.
    pub constrained_steps: u64,
    /// Seconds spent computing grammar masks.
    pub mask_secs: f64,
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt tokens.
    pub prompt: Vec<i32>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Generation budget; `None` = until the sequence's context is full.
    pub max_tokens: Option<u32>,
    /// `Some(k)`: report the sampled token's logprob and `k` alternatives.
    pub logprobs: Option<u32>,
    /// Grammar the output must follow (from [`Engine::compile_grammar`]).
    pub constraint: Option<Constraint>,
}

/// Receiver of a generation's events; dropping it cancels the generation.
pub type GenStream = mpsc::UnboundedReceiver<GenEvent>;

fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

struct Inner {
    tx: crossbeam_channel::Sender<worker::Job>,
    model: Arc<LlamaModel>,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    add_bos: bool,
    bos_text: String,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    max_queue: usize,
    next_id: std::sync::atomic::AtomicU64,
    grammar: std::sync::OnceLock<Result<constrain::GrammarCompiler, String>>,
}

/// Handle to a loaded model; clone freely.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.inner.info.name)
            .finish()
    }
}

impl Engine {
    /// Load the model and start its thread. Blocks until the model is ready (call it from a
    /// blocking context).
    pub fn load(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let load_err = |reason: String| EngineError::Load {
            path: cfg.model_path.clone(),
            reason,
        };
        if !cfg.model_path.is_file() {
            return Err(load_err("file not found".into()));
        }
        let backend = backend().map_err(load_err)?;
        let params = LlamaModelParams::default();
        let model = LlamaModel::load_from_file(backend, &cfg.model_path, &params)
            .map_err(|e| load_err(format!("{e} (is it a valid GGUF file?)")))?;
        let model = Arc::new(model);
        let threads = cfg.threads.unwrap_or_else(free_cores).max(1);
        let threads_batch = cfg.threads_batch.unwrap_or(threads).max(1);
        let n_ctx_train = model.n_ctx_train();
        let parallel = cfg.parallel.clamp(1, 64);
        // llama.cpp gives each sequence n_ctx / n_seq_max cells, padded to 256.
        let per_seq = (cfg.ctx_size / parallel).max(256).next_multiple_of(256);
        let ctx_size = per_seq * parallel;
        let max_request_tokens = per_seq.min(n_ctx_train.max(256));
        let vocab = model.vocab();
        let bos = vocab.bos();
        let bos_text = String::from_utf8_lossy(&vocab.token_to_piece(bos, true, None)).into_owned();
        let eos_text =
            String::from_utf8_lossy(&vocab.token_to_piece(vocab.eos(), true, None)).into_owned();
        let add_bos = vocab.should_add_bos();
        let template_src = model.meta_val_str("tokenizer.chat_template").ok();
        let template = match template_src {
            Some(src) => Some(
                ChatTemplate::new(&src, &bos_text, &eos_text)
                    .map_err(|e| load_err(format!("chat template does not compile: {e}")))?,
            ),
            None => {
                tracing::warn!(model = %cfg.name, "GGUF has no chat template; using ChatML");
                ChatTemplate::new(template::CHATML, &bos_text, &eos_text).ok()
            }
        };
        let info = ModelInfo {
            name: cfg.name.clone(),
            path: cfg.model_path.clone(),
            arch: model
                .meta_val_str("general.architecture")
                .unwrap_or_else(|_| "unknown".into()),
            n_ctx_train,
            ctx_size,
            max_request_tokens,
            n_vocab: model.n_vocab(),
            parallel,
            threads,
            threads_batch,
            size_bytes: model.size(),
            n_params: model.n_params(),
            loaded_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let wcfg = worker::WorkerConfig {
            ctx_size,
            parallel,
            batch_size: cfg.batch_size.max(parallel).max(32),
            ubatch_size: cfg.ubatch_size.clamp(32, cfg.batch_size.max(32)),
            threads,
            threads_batch,
            prompt_cache: cfg.prompt_cache,
        };
        let wmodel = model.clone();
        let (wq, wr) = (queued.clone(), running.clone());
        std::thread::Builder::new()
            .name(format!("engine-{}", cfg.name))
            .spawn(move || worker::run(backend, wmodel, wcfg, rx, wq, wr, ready_tx))
            .map_err(|e| load_err(format!("cannot start engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(load_err(reason)),
            Err(_) => return Err(load_err("engine thread exited during start-up".into())),
        }
        tracing::info!(model = %info.name, arch = %info.arch, ctx = ctx_size, parallel, threads, "model loaded");
        Ok(Engine {
            inner: Arc::new(Inner {
                tx,
                model,
                info,
                template,
                add_bos,
                bos_text,
                queued,
                running,
                max_queue: cfg.max_queue,
                next_id: std::sync::atomic::AtomicU64::new(1),
                grammar: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Sequences being processed.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Tokenize text; special tokens written in the text (`<|im_start|>`) are parsed.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Vec<i32> {
        let toks = self
            .inner
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, true);
        let mut out: Vec<i32> = Vec::with_capacity(toks.len() + 1);
        if add_bos && self.inner.add_bos {
            out.push(self.inner.model.vocab().bos().0);
        }
        out.extend(toks.iter().map(|t| t.0));
        out
    }

    /// Every end-of-generation token id (EOS, EOT, `<|im_end|>`, …).
    pub fn eog_tokens(&self) -> Vec<i32> {
        let vocab = self.inner.model.vocab();
        (0..self.inner.info.n_vocab)
            .filter(|&t| vocab.is_eog(llama_cpp_2::token::LlamaToken(t)))
            .collect()
    }

    /// Text of tokens (special tokens rendered).
    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let vocab = self.inner.model.vocab();
        let mut bytes = Vec::new();
        for &t in tokens {
            if (0..self.inner.info.n_vocab).contains(&t) {
                vocab.token_to_piece_into(
                    llama_cpp_2::token::LlamaToken(t),
                    &mut bytes,
                    true,
                    None,
                );
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Render a conversation with the model's chat template (generation prompt appended).
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let t = self
            .inner
            .template
            .as_ref()
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?;
        t.render(messages, true)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Render and tokenize a conversation.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<i32>, EngineError> {
        self.chat_prompt_with_tools(messages, &[])
    }

    /// Render (offering `tools`) and tokenize a conversation.
    pub fn chat_prompt_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[tandem_types::tools::Tool],
    ) -> Result<Vec<i32>, EngineError> {
        let t = self
            .inner
            .template
            .as_ref()
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?;
        let text = t
            .render_with_tools(messages, tools, true)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        let has_bos = !self.inner.bos_text.is_empty() && text.starts_with(&self.inner.bos_text);
        Ok(self.tokenize(&text, !has_bos))
    }

    /// Compile a grammar for this model's vocabulary (the token trie is built on first use,
    /// a few hundred milliseconds for a 150k vocabulary). `lazy_trigger`: leave generation
    /// free until this text has been generated. The error names what cannot be enforced.
    pub fn compile_grammar(
        &self,
        spec: &GrammarSpec,
        lazy_trigger: Option<&str>,
    ) -> Result<Constraint, EngineError> {
        self.compiler()?
            .compile(spec, lazy_trigger)
            .map_err(EngineError::Grammar)
    }

    /// Compile lazy grammars, each activated by its own trigger (the first seen wins).
    pub fn compile_lazy(
        &self,
        triggers: &[(Trigger, GrammarSpec)],
    ) -> Result<Constraint, EngineError> {
        self.compiler()?
            .compile_lazy(triggers)
            .map_err(EngineError::Grammar)
    }

    fn compiler(&self) -> Result<&constrain::GrammarCompiler, EngineError> {
        self.inner
            .grammar
            .get_or_init(|| {
                let env =
                    llama_cpp_2::sampling::LlamaSampler::llguidance_tok_env(&self.inner.model);
                constrain::GrammarCompiler::new(&env)
            })
            .as_ref()
            .map_err(|e| EngineError::Grammar(format!("cannot build the token trie: {e}")))
    }

    /// Start a generation. Errors immediately for prompts that cannot fit, bad token ids and
    /// a full queue; otherwise tokens arrive on the returned stream.
    pub fn generate(&self, req: GenerateRequest) -> Result<GenStream, EngineError> {
        let info = &self.inner.info;
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&bad) = req.prompt.iter().find(|t| !(0..info.n_vocab).contains(*t)) {
            return Err(EngineError::InvalidToken {
                token: bad,
                n_vocab: info.n_vocab,
            });
        }
        let limit = info.max_request_tokens as usize;
        if req.prompt.len() >= limit {
            return Err(EngineError::ContextLength {
                prompt: req.prompt.len(),
                limit: limit - 1,
            });
        }
        let queued = self.inner.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.inner.max_queue {
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Overloaded {
                model: info.name.clone(),
                queued,
            });
        }
        let room = (limit - req.prompt.len()) as u32;
        let budget = req.max_tokens.unwrap_or(room).min(room).max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let job = worker::Job {
            seed: id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64,
            prompt: req.prompt,
            sampling: req.sampling,
            budget,
            logprobs: req.logprobs,
            constraint: req.constraint,
            tx,
            enqueued: std::time::Instant::now(),
        };
        if self.inner.tx.send(job).is_err() {
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Stopped(info.name.clone()));
        }
        Ok(rx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_ticks() {
        let stat = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n\
                    cpu1 50 3 25 400 10 2 1 0 0 0\nintr 12345\nctxt 99\n";
        // busy = user 100 + nice 5 + system 50 + irq 3 + softirq 2 + steal 0 = 160;
        // total = that + idle 800 + iowait 20 = 980; guest (7) is inside user already.
        assert_eq!(parse_cpu_ticks(stat), Some((160, 980, 2)));
        assert_eq!(parse_cpu_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_cpu_ticks("intr 1\n"), None);
        assert_eq!(parse_cpu_ticks("cpu  a b c d e\n"), None);
        assert_eq!(parse_cpu_ticks(""), None);
        // The real file parses where there is one.
        if let Ok(real) = std::fs::read_to_string("/proc/stat") {
            let (busy, total, cpus) = parse_cpu_ticks(&real).unwrap();
            assert!(busy <= total && cpus >= 1);
        }
    }

    #[test]
    fn own_ticks_after_the_command_name() {
        // A command name with spaces and a parenthesis; utime 1234, stime 56.
        let stat = "4242 (tandem (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 56 0 0 20 0 3";
        assert_eq!(parse_own_ticks(stat), Some(1290));
        assert_eq!(parse_own_ticks("4242 (tandem) S 1 2"), None);
        assert_eq!(parse_own_ticks("no parenthesis"), None);
        if let Ok(real) = std::fs::read_to_string("/proc/self/stat") {
            assert!(parse_own_ticks(&real).is_some());
        }
    }

    #[test]
    fn free_cores_are_within_the_machine() {
        assert_eq!(free_of(2, 0.0), 2);
        assert_eq!(free_of(2, 0.4), 2);
        assert_eq!(free_of(2, 0.6), 1);
        assert_eq!(free_of(2, 5.0), 1);
        assert_eq!(free_of(8, 2.5), 5); // rounds half away from zero
        assert_eq!(free_of(4, f64::NAN), 4);
        assert_eq!(free_of(4, -1.0), 4);
        assert_eq!(free_of(0, 0.0), 1);
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!((1..=n).contains(&free_cores()));
    }
}

/// Per-step cost of the two ways to enforce a grammar, measured on one model's vocabulary
/// (see [`Engine::measure_grammar_steps`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrammarStepCosts {
    /// Steps measured.
    pub steps: usize,
    /// llguidance (what Tandem uses): mask the logits, then advance the parser; µs per step.
    pub llguidance_us: f64,
    /// llama.cpp's GBNF sampler: filter the full candidate array, then accept; µs per step.
    pub gbnf_us: f64,
}

impl Engine {
    /// Replays `tokens` (a valid output) under the JSON `schema` compiled by llguidance and
    /// under the equivalent GBNF `gbnf` grammar (root rule `root`) in llama.cpp's grammar
    /// sampler, over the full vocabulary with the same fixed logits, and times each step
    /// (the candidate array's construction is not counted for GBNF, the logits copy is not
    /// counted for llguidance). For the benchmark that chose llguidance
    /// (`cargo bench -p tandem-engine --bench grammar`).
    pub fn measure_grammar_steps(
        &self,
        gbnf: &str,
        schema: &serde_json::Value,
        tokens: &[i32],
    ) -> Result<GrammarStepCosts, EngineError> {
        use llama_cpp_2::token::LlamaToken;
        use llama_cpp_2::token::data::LlamaTokenData;
        use llama_cpp_2::token::data_array::LlamaTokenDataArray;
        let n_vocab = self.inner.info.n_vocab;
        let logits: Vec<f32> = (0..n_vocab)
            .map(|i| ((i as i64 * 7919) % 1000) as f32 / 100.0)
            .collect();
        let mut c = self.compile_grammar(&GrammarSpec::JsonSchema(schema.clone()), None)?;
        let mut buf = logits.clone();
        let mut llg = std::time::Duration::ZERO;
        for &t in tokens {
            buf.copy_from_slice(&logits);
            let start = std::time::Instant::now();
            c.apply(&mut buf).map_err(EngineError::Grammar)?;
            c.accept(t).map_err(EngineError::Grammar)?;
            llg += start.elapsed();
        }
        let mut s = llama_cpp_2::sampling::LlamaSampler::grammar(&self.inner.model, gbnf, "root")
            .map_err(|e| EngineError::Grammar(format!("GBNF: {e:?}")))?;
        let mut gbnf_time = std::time::Duration::ZERO;
        for &t in tokens {
            let mut arr = LlamaTokenDataArray::from_iter(
                (0..n_vocab).map(|i| LlamaTokenData::new(LlamaToken(i), logits[i as usize], 0.0)),
                false,
            );
            let start = std::time::Instant::now();
            s.apply(&mut arr);
            s.accept(LlamaToken(t));
            gbnf_time += start.elapsed();
        }
        let n = tokens.len().max(1) as f64;
        Ok(GrammarStepCosts {
            steps: tokens.len(),
            llguidance_us: llg.as_secs_f64() * 1e6 / n,
            gbnf_us: gbnf_time.as_secs_f64() * 1e6 / n,
        })
    }
}
