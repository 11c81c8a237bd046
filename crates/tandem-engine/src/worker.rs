//! The engine thread: continuous batching over one llama.cpp context.

use crate::constrain::Constraint;
use crate::detok::TextAssembler;
use crate::sampler::Sampler;
use crate::{DoneInfo, FinishReason, GenEvent, TokenLogprobs};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tandem_types::openai::SamplingParams;
use tokio::sync::mpsc::UnboundedSender;

pub(crate) struct WorkerConfig {
    pub ctx_size: u32,
    pub parallel: u32,
    pub batch_size: u32,
    pub ubatch_size: u32,
    pub threads: usize,
    pub threads_batch: usize,
    pub prompt_cache: bool,
}

pub(crate) struct Job {
    pub seed: u64,
    pub prompt: Vec<i32>,
    pub sampling: SamplingParams,
    pub budget: u32,
    pub logprobs: Option<u32>,
    pub constraint: Option<Constraint>,
    pub tx: UnboundedSender<GenEvent>,
    pub enqueued: Instant,
}

struct Active {
    job: Job,
    /// Tokens of this sequence currently in the KV cache.
    in_kv: Vec<i32>,
    /// Next prompt index to feed.
    prompt_pos: usize,
    cached_tokens: u32,
    sampler: Sampler,
    text: TextAssembler,
    generated: u32,
    /// Sampled token waiting to be fed.
    next: Option<i32>,
    /// Index in the current batch whose logits belong to this sequence.
    logits_at: Option<i32>,
    /// Prompt tokens put in the current batch.
    fed: usize,
    admitted: Instant,
    first_token: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// Tokens left in the cache by the last request (idle slot).
    cached: Vec<i32>,
    active: Option<Active>,
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

pub(crate) fn run(
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    cfg: WorkerConfig,
    rx: crossbeam_channel::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.ctx_size))
        .with_n_batch(cfg.batch_size)
        .with_n_ubatch(cfg.ubatch_size)
        .with_n_seq_max(cfg.parallel)
        // One KV stream per sequence: attention of a sequence never spans other sequences'
        // cells, so results do not depend on what else is in the batch.
        .with_kv_unified(false)
        .with_n_threads(cfg.threads as i32)
        .with_n_threads_batch(cfg.threads_batch as i32)
        .with_no_perf(true);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create context: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut w = Worker {
        model: &model,
        batch: LlamaBatch::new(cfg.batch_size as usize, 1),
        slots: (0..cfg.parallel as i32)
            .map(|seq| Slot {
                seq,
                cached: Vec::new(),
                active: None,
            })
            .collect(),
        waiting: VecDeque::new(),
        cfg,
        queued,
        running,
        piece: Vec::with_capacity(32),
    };
    w.run_loop(&mut ctx, &rx);
}

struct Worker<'m> {
    model: &'m LlamaModel,
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    cfg: WorkerConfig,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    piece: Vec<u8>,
}

impl Worker<'_> {
    fn any_active(&self) -> bool {
        self.slots.iter().any(|s| s.active.is_some())
    }

    fn run_loop(&mut self, ctx: &mut LlamaContext<'_>, rx: &crossbeam_channel::Receiver<Job>) {
        loop {
            if !self.any_active() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return, // every handle dropped: shut down
                }
            }
            while let Ok(job) = rx.try_recv() {
                self.waiting.push_back(job);
            }
            self.drop_cancelled(ctx);
            self.admit(ctx);
            if !self.any_active() {
                continue;
            }
            self.step(ctx);
        }
    }

    fn drop_cancelled(&mut self, ctx: &mut LlamaContext<'_>) {
        let before = self.waiting.len();
        self.waiting.retain(|j| !j.tx.is_closed());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.queued.fetch_sub(gone, Ordering::SeqCst);
        }
        for i in 0..self.slots.len() {
            let closed = self.slots[i]
                .active
                .as_ref()
                .is_some_and(|a| a.job.tx.is_closed());
            if closed {
                tracing::debug!(seq = self.slots[i].seq, "client went away; freeing slot");
                self.release(ctx, i);
            }
        }
    }

    fn admit(&mut self, ctx: &mut LlamaContext<'_>) {
        while let Some(job) = self.waiting.front() {
            // The free slot whose cached tokens share the longest prefix with the prompt.
            let Some(best) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .max_by_key(|(_, s)| common_prefix(&s.cached, &job.prompt))
                .map(|(i, _)| i)
            else {
                return;
            };
            let Some(mut job) = self.waiting.pop_front() else {
                return;
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let slot = &mut self.slots[best];
            let mut keep = if self.cfg.prompt_cache {
                common_prefix(&slot.cached, &job.prompt)
            } else {
                0
            };
            if keep >= job.prompt.len() {
                keep = job.prompt.len() - 1; // at least one token must be computed for logits
            }
            let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), Some(keep as u32), None);
            let mut in_kv = std::mem::take(&mut slot.cached);
            in_kv.truncate(keep);
            let sampler =
                Sampler::new(&job.sampling, job.seed).with_constraint(job.constraint.take());
            let text = TextAssembler::new(job.sampling.stop.clone());
            slot.active = Some(Active {
                in_kv,
                prompt_pos: keep,
                cached_tokens: keep as u32,
                sampler,
                text,
                generated: 0,
                next: None,
                logits_at: None,
                fed: 0,
                admitted: Instant::now(),
                first_token: None,
                job,
            });
            self.running.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn release(&mut self, ctx: &mut LlamaContext<'_>, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(a) = slot.active.take() {
            self.running.fetch_sub(1, Ordering::SeqCst);
            if self.cfg.prompt_cache {
                slot.cached = a.in_kv;
            } else {
                let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                slot.cached.clear();
            }
        }
    }

    fn step(&mut self, ctx: &mut LlamaContext<'_>) {
        self.batch.clear();
        let cap = self.cfg.batch_size as usize;
        let mut n = 0usize;
        // One token for every generating sequence first: they must never starve.
        for slot in &mut self.slots {
            let seq = slot.seq;
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            a.logits_at = None;
            a.fed = 0;
            if let Some(tok) = a.next
                && self
                    .batch
                    .add(LlamaToken(tok), a.in_kv.len() as i32, &[seq], true)
                    .is_ok()
            {
                a.logits_at = Some(n as i32);
                n += 1;
            }
        }
        // Then prompt chunks, oldest admission first.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .active
                    .as_ref()
                    .is_some_and(|a| a.next.is_none())
            })
            .collect();
        order.sort_by_key(|&i| self.slots[i].active.as_ref().map(|a| a.admitted));
        for i in order {
            if n >= cap {
                break;
            }
            let seq = self.slots[i].seq;
            let Some(a) = self.slots[i].active.as_mut() else {
                continue;
            };
            let remaining = a.job.prompt.len() - a.prompt_pos;
            let take = remaining.min(cap - n);
            for k in 0..take {
                let pos = a.prompt_pos + k;
                let last = pos + 1 == a.job.prompt.len();
                if self
                    .batch
                    .add(LlamaToken(a.job.prompt[pos]), pos as i32, &[seq], last)
                    .is_err()
                {
                    break;
                }
                if last {
                    a.logits_at = Some(n as i32);
                }
                a.fed += 1;
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        if let Err(e) = ctx.decode(&mut self.batch) {
            tracing::error!(error = %e, "llama_decode failed; failing the sequences of this batch");
            for i in 0..self.slots.len() {
                if let Some(a) = self.slots[i].active.as_ref() {
                    let _ = a
                        .job
                        .tx
                        .send(GenEvent::Error(format!("decode failed: {e}")));
                    let seq = self.slots[i].seq;
                    let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                    if let Some(a) = self.slots[i].active.as_mut() {
                        a.in_kv.clear();
                    }
                    self.release(ctx, i);
                    self.slots[i].cached.clear();
                }
            }
            return;
        }
        // Commit what entered the cache, then sample.
        for i in 0..self.slots.len() {
            let Some(a) = self.slots[i].active.as_mut() else {
                continue;
            };
            if let Some(tok) = a.next.take() {
                a.in_kv.push(tok);
            } else if a.fed > 0 {
                let (from, to) = (a.prompt_pos, a.prompt_pos + a.fed);
                a.in_kv.extend_from_slice(&a.job.prompt[from..to]);
                a.prompt_pos = to;
            }
            let Some(at) = a.logits_at else { continue };
            if self.sample_one(ctx, i, at) {
                self.release(ctx, i);
            }
        }
    }

    fn sample_one(&mut self, ctx: &LlamaContext<'_>, i: usize, at: i32) -> bool {
        let vocab = self.model.vocab();
        let Some(a) = self.slots[i].active.as_mut() else {
            return true;
        };
        let now = Instant::now();
        let logits = ctx.get_logits_ith(at);
        let s = a.sampler.sample(logits, a.job.logprobs);
        let grammar_error = match s.grammar_error {
            Some(e) => Some(e),
            None => a.sampler.accept(s.token).err(),
        };
        if let Some(e) = grammar_error {
            tracing::warn!(error = %e, "grammar failed; ending the sequence");
            let _ = a
                .job
                .tx
                .send(GenEvent::Error(format!("constrained decoding failed: {e}")));
            return true;
        }
        a.generated += 1;
        if a.first_token.is_none() {
            a.first_token = Some(now);
        }
        let tok = LlamaToken(s.token);
        let mut finish = None;
        if vocab.is_eog(tok) {
            finish = Some(FinishReason::Stop);
        } else {
            self.piece.clear();
            vocab.token_to_piece_into(tok, &mut self.piece, false, None);
            let pushed = a.text.push(&self.piece);
            let logprobs = s.logprob.map(|lp| TokenLogprobs {
                text: String::from_utf8_lossy(&self.piece).into_owned(),
                bytes: self.piece.clone(),
                logprob: lp,
                top: s
                    .top
                    .iter()
                    .map(|&(t, l)| {
                        let b = vocab.token_to_piece(LlamaToken(t), false, None);
                        (String::from_utf8_lossy(&b).into_owned(), b, l)
                    })
                    .collect(),
            });
            if a.job
                .tx
                .send(GenEvent::Token {
                    text: pushed.text,
                    token: Some(s.token),
                    logprobs,
                })
                .is_err()
            {
                return true; // client gone
            }
            if pushed.stopped {
                finish = Some(FinishReason::Stop);
            } else if a.generated >= a.job.budget {
                finish = Some(FinishReason::Length);
            } else {
                a.next = Some(s.token);
            }
        }
        let Some(reason) = finish else { return false };
        let tail = a.text.finish();
        if !tail.is_empty() {
            let _ = a.job.tx.send(GenEvent::Token {
                text: tail,
                token: None,
                logprobs: None,
            });
        }
        let end = Instant::now();
        let first = a.first_token.unwrap_or(end);
        let (constrained_steps, mask_nanos) =
            a.sampler.constraint().map_or((0, 0), Constraint::stats);
        let _ = a.job.tx.send(GenEvent::Done(DoneInfo {
            finish_reason: reason,
            prompt_tokens: a.job.prompt.len() as u32,
            cached_tokens: a.cached_tokens,
            completion_tokens: a.generated,
            queue_secs: secs(a.job.enqueued, a.admitted),
            prompt_secs: secs(a.admitted, first),
            gen_secs: secs(first, end),
            constrained_steps,
            mask_secs: mask_nanos as f64 / 1e9,
        }));
        true
    }
}
