//! A hand-written BERT encoder forward pass over plain `f32` buffers.
//!
//! candle's `Linear` multiplies by a transposed (strided) weight view, which makes its
//! matmul backend repack every weight matrix on every call: for the short inputs this crate
//! mostly sees, that repacking costs far more than the arithmetic. Here each linear layer's
//! weight is packed once, at load time, into column panels laid out for a small register-
//! blocked kernel, so a forward pass streams every weight exactly once.
//!
//! Sequences are not padded: the tokens of all sequences in a batch are stacked into one
//! matrix for the dense layers, and attention runs per sequence, so a batched result equals
//! the result of embedding each input alone.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use rayon::prelude::*;

use crate::quant::{Reduced, WeightPrecision};

/// Columns per packed weight panel (two AVX registers).
pub(crate) const NR: usize = 16;
/// Rows per register block in the matmul kernel.
const MR: usize = 6;
/// Rows per cache block when the input has many rows.
const MB: usize = 48;
/// Multiply-adds below which a matmul runs on the calling thread only.
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// The same for int8 weights (the classifier's short inputs): up to ~50 tokens they run on
/// the calling thread. On a quiet machine that cut the classifier's p99 from 13.9 to 10.9 ms
/// (measured with `RAYON_NUM_THREADS=1`): splitting a few-millisecond pass across threads
/// costs more in waiting for the slower thread than it saves.
const PARALLEL_MIN_WORK_INT8: usize = 1 << 25;

/// A linear layer `y = x · Wᵀ + b` with `W` packed into `NR`-column panels:
/// `packed[(p · k + i) · NR + j] = W[p · NR + j][i]`, zero-padded past `n`.
pub(crate) struct Linear {
    packed: Vec<f32>,
    /// Reduced-precision weights; when set, they are used and `packed` is empty.
    reduced: Option<Reduced>,
    bias: Vec<f32>,
    k: usize,
    n: usize,
}

impl Linear {
    /// Packs row-major `weights` (`n` rows of `k`: PyTorch's `[out, in]` layout).
    pub(crate) fn new(weights: &[f32], bias: Vec<f32>, n: usize, k: usize) -> Self {
        debug_assert_eq!(weights.len(), n * k);
        debug_assert_eq!(bias.len(), n);
        let panels = n.div_ceil(NR);
        let mut packed = vec![0.0f32; panels * k * NR];
        for p in 0..panels {
            for j in 0..NR.min(n - p * NR) {
                let row = &weights[(p * NR + j) * k..(p * NR + j + 1) * k];
                for (i, &w) in row.iter().enumerate() {
                    packed[(p * k + i) * NR + j] = w;
                }
            }
        }
        Self {
            packed,
            reduced: None,
            bias,
            k,
            n,
        }
    }

    #[cfg(test)]
    pub(crate) fn reduced(&self) -> Option<&Reduced> {
        self.reduced.as_ref()
    }

    /// Re-packs the weights in `precision` (f16 and int8 are computed from the f32 values).
    pub(crate) fn set_precision(&mut self, precision: WeightPrecision) {
        let current = self
            .reduced
            .as_ref()
            .map_or(WeightPrecision::F32, Reduced::precision);
        if current == precision || current != WeightPrecision::F32 {
            // Only the exact f32 weights are re-packed (reduced ones stay as they are).
            return;
        }
        let (k, n) = (self.k, self.n);
        let mut weights = vec![0.0f32; n * k];
        for (c, row) in weights.chunks_exact_mut(k).enumerate() {
            let (p, j) = (c / NR, c % NR);
            for (i, w) in row.iter_mut().enumerate() {
                *w = self.packed[(p * k + i) * NR + j];
            }
        }
        self.reduced = Reduced::pack(&weights, n, k, precision);
        if self.reduced.is_some() {
            self.packed = Vec::new();
        }
    }

    fn load(vb: &VarBuilder, n: usize, k: usize) -> candle_core::Result<Self> {
        let weights = vb.get((n, k), "weight")?;
        let bias = vb.get(n, "bias")?;
        Ok(Self::new(&flat(&weights)?, flat(&bias)?, n, k))
    }

    /// Stacks several layers with the same input size into one (outputs concatenated).
    pub(crate) fn concat(parts: &[(Vec<f32>, Vec<f32>)], k: usize) -> Self {
        let weights: Vec<f32> = parts.iter().flat_map(|(w, _)| w.iter().copied()).collect();
        let bias: Vec<f32> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let n = bias.len();
        Self::new(&weights, bias, n, k)
    }

    /// `out = x · Wᵀ + b` for `x` of `m = x.len() / k` rows; `out` holds `m · n` values.
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        debug_assert_eq!(out.len(), m * n);
        let panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads();
        let min_work = match self.reduced.as_ref().map(Reduced::precision) {
            Some(WeightPrecision::Int8) => PARALLEL_MIN_WORK_INT8,
            _ => PARALLEL_MIN_WORK,
        };
        if threads <= 1 || m * n * k < min_work {
            self.block(x, out, n, 0, panels);
        } else if m <= MB * threads {
            // Few rows: split the weight panels between threads, so that each weight is
            // read by one thread only. Each task fills its own column strip.
            let tasks = threads.min(panels);
            let strips: Vec<(usize, usize, Vec<f32>)> = (0..tasks)
                .into_par_iter()
                .map(|t| {
                    let (p0, p1) = (panels * t / tasks, panels * (t + 1) / tasks);
                    let width = (p1 * NR).min(n) - p0 * NR;
                    let mut strip = vec![0.0f32; m * width];
                    self.block(x, &mut strip, width, p0, p1);
                    (p0 * NR, width, strip)
                })
                .collect();
            for (c0, width, strip) in strips {
                for (row, src) in out.chunks_exact_mut(n).zip(strip.chunks_exact(width)) {
                    row[c0..c0 + width].copy_from_slice(src);
                }
            }
        } else {
            x.par_chunks(MB * k)
                .zip(out.par_chunks_mut(MB * n))
                .for_each(|(x, out)| self.block(x, out, n, 0, panels));
        }
    }

    /// Computes the output columns of panels `p0..p1` for every row of `x` into `out`
    /// (rows `ld` apart, column `p0 · NR` first), in row blocks of `MB` so that the rows
    /// stay in cache while the panels stream past.
    fn block(&self, x: &[f32], out: &mut [f32], ld: usize, p0: usize, p1: usize) {
        if let Some(reduced) = &self.reduced {
            reduced.block(x, self.k, self.n, &self.bias, out, ld, p0, p1, MB);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { self.block_avx2(x, out, ld, p0, p1) };
            return;
        }
        self.block_generic(x, out, ld, p0, p1);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2(&self, x: &[f32], out: &mut [f32], ld: usize, p0: usize, p1: usize) {
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        for r0 in (0..m).step_by(MB) {
            let r1 = (r0 + MB).min(m);
            for p in p0..p1 {
                let panel = &self.packed[p * k * NR..(p + 1) * k * NR];
                let c0 = p * NR;
                let cols = NR.min(n - c0);
                let bias = &self.bias[c0..c0 + cols];
                // Split the block's rows evenly into chunks of at most `MR`, so that no
                // chunk is left with too few accumulators to hide the FMA latency.
                let chunks = (r1 - r0).div_ceil(MR);
                let mut r = r0;
                for c in 0..chunks {
                    let rows = (r1 - r0) * (c + 1) / chunks - (r1 - r0) * c / chunks;
                    let xs = &x[r * k..(r + rows) * k];
                    // SAFETY: AVX2 and FMA are enabled for this function.
                    let acc = unsafe {
                        match rows {
                            6 => avx2::kernel::<6>(xs, panel, k),
                            5 => avx2::kernel::<5>(xs, panel, k),
                            4 => avx2::kernel::<4>(xs, panel, k),
                            3 => avx2::kernel::<3>(xs, panel, k),
                            2 => avx2::kernel::<2>(xs, panel, k),
                            _ => avx2::kernel::<1>(xs, panel, k),
                        }
                    };
                    for (i, acc) in acc.iter().take(rows).enumerate() {
                        let o0 = (r + i) * ld + c0 - p0 * NR;
                        let o = &mut out[o0..o0 + cols];
                        for ((o, &a), &b) in o.iter_mut().zip(acc).zip(bias) {
                            *o = a + b;
                        }
                    }
                    r += rows;
                }
            }
        }
    }

    fn block_generic(&self, x: &[f32], out: &mut [f32], ld: usize, p0: usize, p1: usize) {
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        for r0 in (0..m).step_by(MB) {
            let r1 = (r0 + MB).min(m);
            for p in p0..p1 {
                let panel = &self.packed[p * k * NR..(p + 1) * k * NR];
                let c0 = p * NR;
                let cols = NR.min(n - c0);
                for r in r0..r1 {
                    let mut acc = [0.0f32; NR];
                    for (&a, b) in x[r * k..(r + 1) * k].iter().zip(panel.chunks_exact(NR)) {
                        for (acc, &b) in acc.iter_mut().zip(b) {
                            *acc += a * b;
                        }
                    }
                    let o0 = r * ld + c0 - p0 * NR;
                    let o = &mut out[o0..o0 + cols];
                    for ((o, &a), &b) in o.iter_mut().zip(&acc).zip(&self.bias[c0..c0 + cols]) {
                        *o = a + b;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::NR;

    /// `R` rows of `x` (each `k` long) times one `k × NR` panel.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel<const R: usize>(
        x: &[f32],
        panel: &[f32],
        k: usize,
    ) -> [[f32; NR]; 6] {
        debug_assert!(x.len() >= R * k && panel.len() >= k * NR);
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let xp = x.as_ptr();
        let bp = panel.as_ptr();
        for i in 0..k {
            // SAFETY: `i < k`, so the panel row `i` and `x[r · k + i]` for `r < R` are in
            // bounds (checked above).
            unsafe {
                // Weights stream from memory: while this panel is (mostly) in cache, fetch
                // the next one, so that memory transfers overlap the arithmetic. Prefetching
                // never faults, even past the end of the weights.
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((k + i) * NR).cast());
                let b0 = _mm256_loadu_ps(bp.add(i * NR));
                let b1 = _mm256_loadu_ps(bp.add(i * NR + 8));
                for r in 0..R {
                    let a = _mm256_broadcast_ss(&*xp.add(r * k + i));
                    lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
                }
            }
        }
        let mut out = [[0.0f32; NR]; 6];
        for r in 0..R {
            // SAFETY: each output row holds `NR` = 16 floats.
            unsafe {
                _mm256_storeu_ps(out[r].as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(out[r].as_mut_ptr().add(8), hi[r]);
            }
        }
        out
    }
}

pub(crate) struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    pub(crate) fn new(weight: Vec<f32>, bias: Vec<f32>, eps: f32) -> Self {
        Self { weight, bias, eps }
    }

    fn load(vb: &VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: flat(&vb.get(size, "weight")?)?,
            bias: flat(&vb.get(size, "bias")?)?,
            eps: eps as f32,
        })
    }

    /// Normalises each row of `x` in place.
    fn forward(&self, x: &mut [f32]) {
        let h = self.weight.len();
        for row in x.chunks_exact_mut(h) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

/// One encoder layer.
pub(crate) struct Layer {
    /// Query, key and value projections stacked: `3 · hidden` outputs.
    pub(crate) qkv: Linear,
    pub(crate) attn_out: Linear,
    pub(crate) attn_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) out_norm: LayerNorm,
}

/// The word-embedding table: plain `f32` rows, or 4-bit `Q4_0` rows dequantised when a
/// token is looked up (a 250k-token vocabulary stays at 4.5 bits per weight).
pub(crate) enum WordTable {
    /// `vocab × hidden` values, row-major.
    F32(Vec<f32>),
    /// `vocab` rows of `hidden / 32` [`Q4_0`](crate::e5::Q4_BLOCK_BYTES) blocks each.
    Q4(Vec<u8>),
}

impl WordTable {
    /// Appends the embedding of token `id` (`hidden` values) to `out`; `false` when `id`
    /// is out of range.
    fn push_row(&self, id: usize, hidden: usize, out: &mut Vec<f32>) -> bool {
        match self {
            Self::F32(table) => match table.get(id * hidden..(id + 1) * hidden) {
                Some(row) => {
                    out.extend_from_slice(row);
                    true
                }
                None => false,
            },
            Self::Q4(blocks) => {
                let row_bytes = hidden / crate::e5::QK * crate::e5::Q4_BLOCK_BYTES;
                match blocks.get(id * row_bytes..(id + 1) * row_bytes) {
                    Some(row) => {
                        let start = out.len();
                        out.resize(start + hidden, 0.0);
                        crate::e5::dequantize_q4(row, &mut out[start..]);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

/// The BERT encoder with its embeddings, ready for [`Bert::forward`].
pub(crate) struct Bert {
    word: WordTable,
    position: Vec<f32>,
    /// Token type 0's embedding (all inputs are single segments).
    token_type: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    act: HiddenAct,
}

/// One tensor's values, row-major, as f32.
fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

impl Bert {
    /// Loads the weights below `vb` (which points at the model's `embeddings`/`encoder`).
    pub(crate) fn load(vb: &VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {heads}");
        }
        let inter = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let word = WordTable::F32(flat(
            &emb.get((config.vocab_size, h), "word_embeddings.weight")?,
        )?);
        let position = flat(&emb.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let token_type =
            flat(&emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?)?;
        let token_type = token_type
            .get(..h)
            .ok_or_else(|| candle_core::Error::Msg("type_vocab_size is 0".into()))?
            .to_vec();
        let embed_norm = LayerNorm::load(&emb.pp("LayerNorm"), h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{l}"));
            let att = vb.pp("attention");
            let qkv = ["query", "key", "value"]
                .into_iter()
                .map(|name| {
                    let vb = att.pp("self").pp(name);
                    Ok((
                        flat(&vb.get((h, h), "weight")?)?,
                        flat(&vb.get(h, "bias")?)?,
                    ))
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            layers.push(Layer {
                qkv: Linear::concat(&qkv, h),
                attn_out: Linear::load(&att.pp("output").pp("dense"), h, h)?,
                attn_norm: LayerNorm::load(&att.pp("output").pp("LayerNorm"), h, eps)?,
                intermediate: Linear::load(&vb.pp("intermediate").pp("dense"), inter, h)?,
                output: Linear::load(&vb.pp("output").pp("dense"), h, inter)?,
                out_norm: LayerNorm::load(&vb.pp("output").pp("LayerNorm"), h, eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type,
            embed_norm,
            layers,
            hidden: h,
            heads,
            intermediate: inter,
            act: config.hidden_act,
        })
    }

    /// Re-packs the dense layers' weights in `precision` (see [`WeightPrecision`]).
    pub(crate) fn set_precision(&mut self, precision: WeightPrecision) {
        for layer in &mut self.layers {
            for linear in [
                &mut layer.qkv,
                &mut layer.attn_out,
                &mut layer.intermediate,
                &mut layer.output,
            ] {
                linear.set_precision(precision);
            }
        }
    }

    /// Assembles an encoder from weights loaded elsewhere. `position` holds one row per
    /// position (row 0 for the first token), `token_type` the single segment's embedding.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        word: WordTable,
        position: Vec<f32>,
        token_type: Vec<f32>,
        embed_norm: LayerNorm,
        layers: Vec<Layer>,
        heads: usize,
        intermediate: usize,
        act: HiddenAct,
    ) -> Self {
        let hidden = token_type.len();
        debug_assert!(heads > 0 && hidden.is_multiple_of(heads));
        Self {
            word,
            position,
            token_type,
            embed_norm,
            layers,
            hidden,
            heads,
            intermediate,
            act,
        }
    }

    /// Last hidden states of `seqs` (valid, non-empty token sequences no longer than the
    /// position table), stacked: `Σ len × hidden` values, sequence after sequence.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let rows: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = Vec::with_capacity(rows * h);
        for seq in seqs {
            for (pos, &id) in seq.iter().enumerate() {
                let id = id as usize;
                let start = x.len();
                let (true, Some(position)) = (
                    self.word.push_row(id, h, &mut x),
                    self.position.get(pos * h..(pos + 1) * h),
                ) else {
                    candle_core::bail!("token id {id} at position {pos} is out of range");
                };
                for ((v, &t), &p) in x[start..].iter_mut().zip(&self.token_type).zip(position) {
                    // Same order as `word + type + position` for an f32 table.
                    *v = *v + t + p;
                }
            }
        }
        self.embed_norm.forward(&mut x);

        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut qkv = vec![0.0f32; rows * 3 * h];
        let mut ctx = vec![0.0f32; rows * h];
        let mut tmp = vec![0.0f32; rows * h];
        let mut inter = vec![0.0f32; rows * self.intermediate];
        for layer in &self.layers {
            layer.qkv.forward(&x, &mut qkv);
            self.attention(&qkv, &lens, &mut ctx);
            layer.attn_out.forward(&ctx, &mut tmp);
            add_assign(&mut tmp, &x);
            layer.attn_norm.forward(&mut tmp);
            std::mem::swap(&mut x, &mut tmp);
            layer.intermediate.forward(&x, &mut inter);
            activate(self.act, &mut inter);
            layer.output.forward(&inter, &mut tmp);
            add_assign(&mut tmp, &x);
            layer.out_norm.forward(&mut tmp);
            std::mem::swap(&mut x, &mut tmp);
        }
        Ok(x)
    }

    /// Multi-head self-attention of each sequence over itself (no masking needed: there
    /// is no padding). `qkv` rows are `[q | k | v]`; `ctx` receives the heads' outputs.
    fn attention(&self, qkv: &[f32], lens: &[usize], ctx: &mut [f32]) {
        let h = self.hidden;
        let mut parts = Vec::with_capacity(lens.len());
        let (mut qkv_rest, mut ctx_rest) = (qkv, ctx);
        for &len in lens {
            let (q, qr) = qkv_rest.split_at(len * 3 * h);
            let (c, cr) = ctx_rest.split_at_mut(len * h);
            parts.push((q, c));
            (qkv_rest, ctx_rest) = (qr, cr);
        }
        let work: usize = lens.iter().map(|&l| l * l).sum::<usize>() * h;
        if parts.len() > 1 && work >= PARALLEL_MIN_WORK / 4 {
            parts.into_par_iter().for_each(|(q, c)| self.attend(q, c));
        } else {
            for (q, c) in parts {
                self.attend(q, c);
            }
        }
    }

    fn attend(&self, qkv: &[f32], ctx: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { attend_avx2(self.hidden, self.heads, qkv, ctx) };
            return;
        }
        attend_impl(self.hidden, self.heads, qkv, ctx);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(hidden: usize, heads: usize, qkv: &[f32], ctx: &mut [f32]) {
    attend_impl(hidden, heads, qkv, ctx);
}

/// Attention of one sequence (`len = ctx.len() / hidden` tokens), all heads.
#[inline(always)]
fn attend_impl(hidden: usize, heads: usize, qkv: &[f32], ctx: &mut [f32]) {
    let len = ctx.len() / hidden;
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let stride = 3 * hidden;
    let mut scores = vec![0.0f32; len];
    for head in 0..heads {
        let (qo, ko, vo) = (head * d, hidden + head * d, 2 * hidden + head * d);
        for i in 0..len {
            let q = &qkv[i * stride + qo..i * stride + qo + d];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                let k = &qkv[j * stride + ko..j * stride + ko + d];
                *s = dot(q, k) * scale;
                max = max.max(*s);
            }
            let mut sum = 0.0f32;
            for s in scores.iter_mut() {
                *s = exp(*s - max);
                sum += *s;
            }
            let inv = 1.0 / sum;
            let out = &mut ctx[i * hidden + head * d..i * hidden + head * d + d];
            out.fill(0.0);
            for (j, &s) in scores.iter().enumerate() {
                let p = s * inv;
                let v = &qkv[j * stride + vo..j * stride + vo + d];
                for (o, &v) in out.iter_mut().zip(v) {
                    *o += p * v;
                }
            }
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so that the loop vectorises.
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` for `-87 ≤ x ≤ 0` (Cephes' `expf` polynomial; a few ulp; smaller `x` give
/// `e^-87`, negligible next to the softmax maximum's 1), branch-free so that loops
/// over it vectorise.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let y = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = y * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

fn activate(act: HiddenAct, x: &mut [f32]) {
    match act {
        HiddenAct::Gelu => {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { gelu_erf_avx2(x) };
                return;
            }
            gelu_erf_impl(x);
        }
        HiddenAct::GeluApproximate => {
            for v in x {
                let u = *v;
                *v = 0.5
                    * u
                    * (1.0
                        + ((2.0f32 / std::f32::consts::PI).sqrt() * (u + 0.044_715 * u * u * u))
                            .tanh());
            }
        }
        HiddenAct::Relu => {
            for v in x {
                *v = v.max(0.0);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2(x: &mut [f32]) {
    gelu_erf_impl(x);
}

#[inline(always)]
fn gelu_erf_impl(x: &mut [f32]) {
    for v in x {
        let u = *v;
        *v = 0.5 * u * (1.0 + erf(u * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// `erf(x)` in f32: Eigen's rational approximation (a few ulp), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_exp_are_accurate() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 500.0).collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).expect("tensor");
        let want: Vec<f32> = t.erf().and_then(|t| t.to_vec1()).expect("candle erf");
        for (&x, &w) in xs.iter().zip(&want) {
            assert!((erf(x) - w).abs() < 1e-6, "erf({x}) = {} vs {w}", erf(x));
        }
        for i in 0..=1740 {
            let x = -(i as f32) / 20.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want + 1e-38,
                "exp({x}) = {got} vs {want}"
            );
        }
    }

    #[test]
    fn packed_matmul_matches_naive() {
        // Serial, panel-split and row-split paths, with partial panels and row blocks.
        for (m, k, n) in [(61, 37, 50), (20, 700, 100), (203, 300, 50), (1, 384, 384)] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let lin = Linear::new(&w, b.clone(), n, k);
            let mut got = vec![0.0; m * n];
            lin.forward(&x, &mut got);
            let mut generic = vec![0.0; m * n];
            lin.block_generic(&x, &mut generic, n, 0, n.div_ceil(NR));
            for r in 0..m {
                for c in 0..n {
                    let want: f64 = b[c] as f64
                        + (0..k)
                            .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                            .sum::<f64>();
                    let tol = 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt();
                    assert!(
                        (got[r * n + c] as f64 - want).abs() < tol,
                        "{m}x{k}x{n} ({r}, {c})"
                    );
                    assert!(
                        (generic[r * n + c] as f64 - want).abs() < tol,
                        "{m}x{k}x{n} ({r}, {c})"
                    );
                }
            }
        }
    }
}
