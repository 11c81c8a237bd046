//! Reduced-precision weights for the dense layers of the forward pass (opt-in, see
//! [`WeightPrecision`]).
//!
//! * **f16**: the f32 panel layout of [`crate::forward`] with each weight stored as an IEEE
//!   half; the AVX2 kernel widens them with F16C (`vcvtph2ps`) and multiplies in f32. Half
//!   the memory traffic, same arithmetic.
//! * **int8**: each output channel (weight row) is scaled to `[-63, 63]` (7 bits) and
//!   rounded; the input rows are quantised to `[-127, 127]` on the fly (one scale per row,
//!   "dynamic" quantisation), and the products are summed exactly in `i32`. With AVX2 the
//!   kernel uses `vpmaddubsw` (unsigned × signed bytes) with the activation as the unsigned
//!   operand, offset by 128 (`u = q + 128 ∈ [1, 255]`); `2 · 255 · 63 < 2¹⁵`, so the pairwise
//!   `i16` sums never saturate, `vpmaddwd` widens them to `i32`, and `128 · Σᵢ w` (one
//!   integer per output channel, computed when the weights are packed) is subtracted at the
//!   end. Weights get the 7 bits rather than activations: a weight row has no outliers worth
//!   the bit, a token's activations do. The integer sums are exact, so the AVX2 and the
//!   portable kernels agree bit for bit. (The earlier kernel kept 8-bit weights and moved the
//!   activation's sign onto the weight with `vpsignb`: two more instructions and one more
//!   broadcast per 64 multiply-adds, measured 1.2–1.3× slower per forward pass.)

use serde::Deserialize;

use crate::forward::NR;

/// Storage precision of the dense-layer weights (embeddings, layer norms, biases and all
/// activations stay f32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightPrecision {
    /// Exact: the model's weights as f32 (the reference results).
    #[default]
    F32,
    /// IEEE half precision: half the memory, embeddings within ~1e-3 cosine of f32.
    F16,
    /// 8-bit weights with one scale per output channel, and 8-bit activations with one
    /// scale per token: a quarter of the memory and the fastest on short inputs, at a small
    /// loss of accuracy (see the crate documentation).
    Int8,
}

impl WeightPrecision {
    /// The name used in configuration files: `f32`, `f16` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for WeightPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WeightPrecision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Self::F32),
            "f16" | "fp16" | "half" => Ok(Self::F16),
            "int8" | "i8" | "q8" => Ok(Self::Int8),
            other => Err(format!(
                "unknown weight precision `{other}` (expected f32, f16 or int8)"
            )),
        }
    }
}

/// Rows per register block of the int8 kernel (two accumulators per row).
pub(crate) const MR8: usize = 4;

/// Largest quantised activation magnitude (symmetric, so `q + 128` fits `u8`).
const QMAX: f32 = 127.0;

/// Largest quantised weight magnitude: 7 bits, so that `vpmaddubsw`'s pairwise sums of
/// `(q + 128) · w` stay within `i16` (see the module documentation).
const QMAX_W: f32 = 63.0;

/// The offset that makes a quantised activation unsigned.
const OFFSET: i32 = 128;

/// `x` rounded half away from zero and clamped to ±127. Not `f32::round`: on the baseline
/// x86-64 target that is a call to libm's `roundf` per value, which was 5–6% of an int8
/// forward pass; the float→int conversion (`cvttss2si`, vectorisable) truncates toward
/// zero, so adding ±0.5 first rounds half away from zero like `round`.
#[inline]
fn quantize(x: f32) -> i8 {
    let clamped = x.clamp(-QMAX, QMAX);
    (clamped + 0.5f32.copysign(clamped)) as i8
}

/// Reduced-precision packed weights of one linear layer (`n` outputs, `k` inputs).
pub(crate) enum Reduced {
    /// `packed[(p · k + i) · NR + j] = f16(W[p · NR + j][i])`, as bits; zero-padded.
    F16(Vec<u16>),
    /// `packed[((p · k4/4 + g) · NR + j) · 4 + t] = q(W[p · NR + j][4g + t])`, zero-padded
    /// (`k4` is `k` rounded up to a multiple of 4); `W ≈ q · scales[row]`, `|q| ≤ 63`;
    /// `offsets[row] = 128 · Σᵢ q[row][i]` (what the unsigned activations add).
    Int8 {
        packed: Vec<i8>,
        scales: Vec<f32>,
        offsets: Vec<i32>,
        k4: usize,
    },
}

impl Reduced {
    /// Packs row-major `weights` (`n` rows of `k`) in `precision` (`F16` or `Int8`; `None`
    /// for `F32`, which [`crate::forward`] packs itself).
    pub(crate) fn pack(
        weights: &[f32],
        n: usize,
        k: usize,
        precision: WeightPrecision,
    ) -> Option<Self> {
        debug_assert_eq!(weights.len(), n * k);
        let panels = n.div_ceil(NR);
        match precision {
            WeightPrecision::F32 => None,
            WeightPrecision::F16 => {
                let mut packed = vec![0u16; panels * k * NR];
                for (c, row) in weights.chunks_exact(k).enumerate() {
                    let (p, j) = (c / NR, c % NR);
                    for (i, &w) in row.iter().enumerate() {
                        packed[(p * k + i) * NR + j] = half::f16::from_f32(w).to_bits();
                    }
                }
                Some(Self::F16(packed))
            }
            WeightPrecision::Int8 => {
                let k4 = k.div_ceil(4) * 4;
                let mut packed = vec![0i8; panels * k4 * NR];
                let mut scales = vec![0.0f32; n];
                let mut offsets = vec![0i32; n];
                for (c, row) in weights.chunks_exact(k).enumerate() {
                    let (p, j) = (c / NR, c % NR);
                    let amax = abs_max(row);
                    let inv = if amax > 0.0 { QMAX_W / amax } else { 0.0 };
                    scales[c] = amax / QMAX_W;
                    let mut sum = 0i32;
                    for (i, &w) in row.iter().enumerate() {
                        let (g, t) = (i / 4, i % 4);
                        let q = (w * inv).round().clamp(-QMAX_W, QMAX_W) as i8;
                        packed[((p * (k4 / 4) + g) * NR + j) * 4 + t] = q;
                        sum += i32::from(q);
                    }
                    offsets[c] = OFFSET * sum;
                }
                Some(Self::Int8 {
                    packed,
                    scales,
                    offsets,
                    k4,
                })
            }
        }
    }

    /// The int8 weights, borrowed (`None` for f16).
    fn int8(&self) -> Option<I8Weights<'_>> {
        match self {
            Self::Int8 {
                packed,
                scales,
                offsets,
                k4,
            } => Some(I8Weights {
                packed,
                scales,
                offsets,
                k4: *k4,
            }),
            Self::F16(_) => None,
        }
    }

    pub(crate) fn precision(&self) -> WeightPrecision {
        match self {
            Self::F16(_) => WeightPrecision::F16,
            Self::Int8 { .. } => WeightPrecision::Int8,
        }
    }

    /// Computes the output columns of panels `p0..p1` (without bias) for every row of `x`
    /// (`m` rows of `k`) into `out`, rows `ld` apart, column `p0 · NR` first; `cols(p)` is
    /// the number of real columns of panel `p`. `mb` is the row cache-block size.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block(
        &self,
        x: &[f32],
        k: usize,
        n: usize,
        bias: &[f32],
        out: &mut [f32],
        ld: usize,
        p0: usize,
        p1: usize,
        mb: usize,
    ) {
        if let Some(w) = self.int8() {
            let q = QuantRows::new(x, k, w.k4);
            i8_block(&w, &q, n, bias, out, ld, p0, p1, mb, false);
        } else if let Self::F16(packed) = self {
            f16_block(packed, x, k, n, bias, out, ld, p0, p1, mb);
        }
    }

    /// The portable (non-SIMD) path of [`block`](Self::block), for tests.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_generic(
        &self,
        x: &[f32],
        k: usize,
        n: usize,
        bias: &[f32],
        out: &mut [f32],
        ld: usize,
        p0: usize,
        p1: usize,
    ) {
        if let Some(w) = self.int8() {
            let q = QuantRows::new(x, k, w.k4);
            i8_block(&w, &q, n, bias, out, ld, p0, p1, usize::MAX, true);
        } else if let Self::F16(packed) = self {
            f16_block_generic(packed, x, k, n, bias, out, ld, p0, p1);
        }
    }
}

/// The largest magnitude in `v` (eight independent lanes, so that it vectorises: a single
/// running `max` is a serial dependency chain).
fn abs_max(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x.abs());
        }
    }
    let m = tail.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    lanes.iter().fold(m, |a, &b| a.max(b))
}

/// Input rows quantised to int8, one scale per row: `x[r][i] ≈ (u[r][i] − 128) · scale[r]`,
/// stored offset by 128 as `u8` (the unsigned operand of `vpmaddubsw`). Rows are `k4`
/// long; the padding is 128 (zero), which meets zero-padded weights anyway.
pub(crate) struct QuantRows {
    u: Vec<u8>,
    scale: Vec<f32>,
}

impl QuantRows {
    fn new(x: &[f32], k: usize, k4: usize) -> Self {
        let m = x.len() / k;
        let mut u = vec![OFFSET as u8; m * k4];
        let mut scale = vec![0.0f32; m];
        for (r, row) in x.chunks_exact(k).enumerate() {
            let amax = abs_max(row);
            let inv = if amax > 0.0 { QMAX / amax } else { 0.0 };
            scale[r] = amax / QMAX;
            quantize_row(row, inv, &mut u[r * k4..r * k4 + k]);
        }
        Self { u, scale }
    }
}

/// `out[i] = quantize(row[i] · inv) + 128`: AVX2 when the CPU has it (the scalar loop does
/// not vectorise: the saturating float→int cast and the byte packing), the same values
/// either way.
fn quantize_row(row: &[f32], inv: f32, out: &mut [u8]) {
    debug_assert_eq!(row.len(), out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked above).
        done = unsafe { avx2::quantize_row(row, inv, out) };
    }
    for (u, &v) in out[done..].iter_mut().zip(&row[done..]) {
        *u = (i32::from(quantize(v * inv)) + OFFSET) as u8;
    }
}

/// An int8 layer's packed weights, borrowed.
struct I8Weights<'a> {
    packed: &'a [i8],
    scales: &'a [f32],
    offsets: &'a [i32],
    k4: usize,
}

/// The int8 matmul over panels `p0..p1` (see [`Reduced::block`]).
#[allow(clippy::too_many_arguments)]
fn i8_block(
    w: &I8Weights<'_>,
    x: &QuantRows,
    n: usize,
    bias: &[f32],
    out: &mut [f32],
    ld: usize,
    p0: usize,
    p1: usize,
    mb: usize,
    force_generic: bool,
) {
    let m = x.scale.len();
    let (packed, scales, offsets, k4) = (w.packed, w.scales, w.offsets, w.k4);
    #[cfg(target_arch = "x86_64")]
    let avx2 = !force_generic && std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = {
        let _ = force_generic;
        false
    };
    let panel_len = k4 * NR;
    for r0 in (0..m).step_by(mb.max(1)) {
        let r1 = r0.saturating_add(mb).min(m);
        for p in p0..p1 {
            let panel = &packed[p * panel_len..(p + 1) * panel_len];
            let c0 = p * NR;
            let cols = NR.min(n - c0);
            // Split the block's rows evenly into chunks of at most `MR8`.
            let chunks = (r1 - r0).div_ceil(MR8);
            let mut r = r0;
            for c in 0..chunks {
                let rows = (r1 - r0) * (c + 1) / chunks - (r1 - r0) * c / chunks;
                let us = &x.u[r * k4..(r + rows) * k4];
                let acc = if avx2 {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 is available (checked above).
                    unsafe {
                        match rows {
                            4 => avx2::kernel_i8::<4>(us, panel, k4),
                            3 => avx2::kernel_i8::<3>(us, panel, k4),
                            2 => avx2::kernel_i8::<2>(us, panel, k4),
                            _ => avx2::kernel_i8::<1>(us, panel, k4),
                        }
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    unreachable!()
                } else {
                    kernel_i8_generic(us, panel, k4, rows)
                };
                for (i, acc) in acc.iter().take(rows).enumerate() {
                    let xs = x.scale[r + i];
                    let o0 = (r + i) * ld + c0 - p0 * NR;
                    let o = &mut out[o0..o0 + cols];
                    for ((((o, &a), &ws), &off), &b) in o
                        .iter_mut()
                        .zip(acc)
                        .zip(&scales[c0..c0 + cols])
                        .zip(&offsets[c0..c0 + cols])
                        .zip(&bias[c0..c0 + cols])
                    {
                        *o = (a - off) as f32 * (xs * ws) + b;
                    }
                }
                r += rows;
            }
        }
    }
}

fn kernel_i8_generic(u: &[u8], panel: &[i8], k4: usize, rows: usize) -> [[i32; NR]; MR8] {
    let mut acc = [[0i32; NR]; MR8];
    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
        let row = &u[r * k4..(r + 1) * k4];
        for (xg, wg) in row.chunks_exact(4).zip(panel.chunks_exact(4 * NR)) {
            for (a, w) in acc.iter_mut().zip(wg.chunks_exact(4)) {
                *a += xg
                    .iter()
                    .zip(w)
                    .map(|(&x, &w)| i32::from(x) * i32::from(w))
                    .sum::<i32>();
            }
        }
    }
    acc
}

/// The f16 matmul over panels `p0..p1` (see [`Reduced::block`]).
#[allow(clippy::too_many_arguments)]
fn f16_block(
    packed: &[u16],
    x: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
    out: &mut [f32],
    ld: usize,
    p0: usize,
    p1: usize,
    mb: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { avx2::f16_block(packed, x, k, n, bias, out, ld, p0, p1, mb) };
        return;
    }
    let _ = mb;
    f16_block_generic(packed, x, k, n, bias, out, ld, p0, p1);
}

#[allow(clippy::too_many_arguments)]
fn f16_block_generic(
    packed: &[u16],
    x: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
    out: &mut [f32],
    ld: usize,
    p0: usize,
    p1: usize,
) {
    let m = x.len() / k;
    for p in p0..p1 {
        let panel = &packed[p * k * NR..(p + 1) * k * NR];
        let c0 = p * NR;
        let cols = NR.min(n - c0);
        for r in 0..m {
            let mut acc = [0.0f32; NR];
            for (&a, b) in x[r * k..(r + 1) * k].iter().zip(panel.chunks_exact(NR)) {
                for (acc, &b) in acc.iter_mut().zip(b) {
                    *acc += a * half::f16::from_bits(b).to_f32();
                }
            }
            let o0 = r * ld + c0 - p0 * NR;
            let o = &mut out[o0..o0 + cols];
            for ((o, &a), &b) in o.iter_mut().zip(&acc).zip(&bias[c0..c0 + cols]) {
                *o = a + b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{MR8, NR, OFFSET, QMAX};

    /// `R` quantised rows (offset to `u8`, each `k4` long) times one int8 panel (`k4 / 4`
    /// groups of `NR` columns × 4 inputs); the sums still include the offset.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn kernel_i8<const R: usize>(
        u: &[u8],
        panel: &[i8],
        k4: usize,
    ) -> [[i32; NR]; MR8] {
        debug_assert!(u.len() >= R * k4 && panel.len() >= k4 * NR);
        let mut lo = [_mm256_setzero_si256(); R];
        let mut hi = [_mm256_setzero_si256(); R];
        let ones = _mm256_set1_epi16(1);
        let (up, bp) = (u.as_ptr(), panel.as_ptr());
        for g in 0..k4 / 4 {
            // SAFETY: `4g + 3 < k4`, so the panel's group `g` (64 bytes) and the four
            // inputs `4g..4g + 4` of each of the `R` rows are in bounds (checked above).
            unsafe {
                // Fetch the next panel while this one is multiplied (never faults).
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((k4 + 4 * g) * NR).cast());
                let w0 = _mm256_loadu_si256(bp.add(g * 4 * NR).cast());
                let w1 = _mm256_loadu_si256(bp.add(g * 4 * NR + 32).cast());
                for r in 0..R {
                    let a =
                        _mm256_set1_epi32(up.add(r * k4 + 4 * g).cast::<i32>().read_unaligned());
                    // (q + 128) · w pairs: |sum| ≤ 2 · 255 · 63 < 2¹⁵, no saturation.
                    let p0 = _mm256_maddubs_epi16(a, w0);
                    let p1 = _mm256_maddubs_epi16(a, w1);
                    lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(p0, ones));
                    hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(p1, ones));
                }
            }
        }
        let mut out = [[0i32; NR]; MR8];
        for r in 0..R {
            // SAFETY: each output row holds `NR` = 16 i32.
            unsafe {
                _mm256_storeu_si256(out[r].as_mut_ptr().cast(), lo[r]);
                _mm256_storeu_si256(out[r].as_mut_ptr().add(8).cast(), hi[r]);
            }
        }
        out
    }

    /// [`super::quantize_row`] over the first `8 ⌊n / 8⌋` values; returns how many it did.
    /// The same operations as [`super::quantize`] (clamp, add ±0.5, truncate), so the same
    /// results; NaN becomes 0 as there.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_row(row: &[f32], inv: f32, out: &mut [u8]) -> usize {
        let n = row.len().min(out.len()) / 8 * 8;
        let vinv = _mm256_set1_ps(inv);
        let (lo, hi) = (_mm256_set1_ps(-QMAX), _mm256_set1_ps(QMAX));
        let (half, sign) = (_mm256_set1_ps(0.5), _mm256_set1_ps(-0.0));
        let off = _mm256_set1_epi32(OFFSET);
        for i in (0..n).step_by(8) {
            // SAFETY: `i + 8 ≤ n ≤ row.len(), out.len()`.
            unsafe {
                let x = _mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(i)), vinv);
                let x = _mm256_and_ps(x, _mm256_cmp_ps::<_CMP_ORD_Q>(x, x));
                let x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
                let x = _mm256_add_ps(x, _mm256_or_ps(_mm256_and_ps(x, sign), half));
                let q = _mm256_add_epi32(_mm256_cvttps_epi32(x), off);
                // 8 × i32 in [1, 255] → bytes: each 128-bit lane packs its own four.
                let w = _mm256_packus_epi16(_mm256_packus_epi32(q, q), q);
                let l0 = _mm_cvtsi128_si32(_mm256_castsi256_si128(w)) as u32;
                let l1 = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(w)) as u32;
                let dst = out.as_mut_ptr().add(i).cast::<u32>();
                dst.write_unaligned(l0);
                dst.add(1).write_unaligned(l1);
            }
        }
        n
    }

    /// `R` f32 rows of `x` (each `k` long) times one f16 `k × NR` panel.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn kernel_f16<const R: usize>(x: &[f32], panel: &[u16], k: usize) -> [[f32; NR]; 6] {
        debug_assert!(x.len() >= R * k && panel.len() >= k * NR);
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let xp = x.as_ptr();
        let bp = panel.as_ptr();
        for i in 0..k {
            // SAFETY: `i < k`, so the panel row `i` and `x[r · k + i]` for `r < R` are in
            // bounds (checked above).
            unsafe {
                if i % 2 == 0 {
                    // One 64-byte line holds two panel rows.
                    _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((k + i) * NR).cast());
                }
                let b0 = _mm256_cvtph_ps(_mm_loadu_si128(bp.add(i * NR).cast()));
                let b1 = _mm256_cvtph_ps(_mm_loadu_si128(bp.add(i * NR + 8).cast()));
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

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn f16_block(
        packed: &[u16],
        x: &[f32],
        k: usize,
        n: usize,
        bias: &[f32],
        out: &mut [f32],
        ld: usize,
        p0: usize,
        p1: usize,
        mb: usize,
    ) {
        const MR: usize = 6;
        let m = x.len() / k;
        for r0 in (0..m).step_by(mb.max(1)) {
            let r1 = (r0 + mb).min(m);
            for p in p0..p1 {
                let panel = &packed[p * k * NR..(p + 1) * k * NR];
                let c0 = p * NR;
                let cols = NR.min(n - c0);
                let bias = &bias[c0..c0 + cols];
                let chunks = (r1 - r0).div_ceil(MR);
                let mut r = r0;
                for c in 0..chunks {
                    let rows = (r1 - r0) * (c + 1) / chunks - (r1 - r0) * c / chunks;
                    let xs = &x[r * k..(r + rows) * k];
                    // SAFETY: AVX2, FMA and F16C are enabled for this function.
                    let acc = unsafe {
                        match rows {
                            6 => kernel_f16::<6>(xs, panel, k),
                            5 => kernel_f16::<5>(xs, panel, k),
                            4 => kernel_f16::<4>(xs, panel, k),
                            3 => kernel_f16::<3>(xs, panel, k),
                            2 => kernel_f16::<2>(xs, panel, k),
                            _ => kernel_f16::<1>(xs, panel, k),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Linear;

    fn case(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0 + (i % 3) as f32 * 0.01)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0 + (i % 7) as f32 * 0.003)
            .collect();
        (w, b, x)
    }

    fn naive(w: &[f32], b: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = b[c] as f64
                    + (0..k)
                        .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                        .sum::<f64>();
            }
        }
        out
    }

    #[test]
    fn quantize_rounds_half_away_from_zero_and_clamps() {
        for i in -600..=600 {
            let x = i as f32 * 0.25;
            let want = x.round().clamp(-QMAX, QMAX) as i8;
            assert_eq!(quantize(x), want, "{x}");
        }
        for (x, want) in [
            (0.49, 0),
            (0.5, 1),
            (-0.5, -1),
            (-0.49, 0),
            (126.6, 127),
            (1e9, 127),
            (-1e9, -127),
            (f32::NAN, 0),
        ] {
            assert_eq!(quantize(x), want, "{x}");
        }
    }

    #[test]
    fn quantize_row_matches_the_scalar_rounding() {
        let row: Vec<f32> = (0..203)
            .map(|i| match i % 11 {
                0 => f32::NAN,
                1 => 1e30,
                2 => -1e30,
                3 => 0.5 / 0.37,
                _ => (i as f32 - 100.0) * 0.37 + 0.125 * (i % 3) as f32,
            })
            .collect();
        let inv = 0.37;
        let mut got = vec![0u8; row.len()];
        quantize_row(&row, inv, &mut got);
        for (i, (&g, &v)) in got.iter().zip(&row).enumerate() {
            let want = (i32::from(quantize(v * inv)) + OFFSET) as u8;
            assert_eq!(g, want, "{i}: {v}");
        }
    }

    #[test]
    fn precision_names_round_trip() {
        for p in [
            WeightPrecision::F32,
            WeightPrecision::F16,
            WeightPrecision::Int8,
        ] {
            assert_eq!(p.as_str().parse::<WeightPrecision>(), Ok(p));
        }
        assert!("int4".parse::<WeightPrecision>().is_err());
        assert_eq!(WeightPrecision::default(), WeightPrecision::F32);
    }

    #[test]
    fn reduced_matmuls_match_naive_and_portable_path() {
        // Serial, panel-split and row-split paths; partial panels, row blocks, and input
        // sizes that are not a multiple of 4 (int8 pads them).
        for (m, k, n) in [
            (61, 37, 50),
            (20, 700, 100),
            (203, 300, 50),
            (1, 384, 384),
            (7, 6, 17),
        ] {
            let (w, b, x) = case(m, k, n);
            let want = naive(&w, &b, &x, m, k, n);
            let xmax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs())) as f64;
            let wmax = w.iter().fold(0.0f32, |a, &v| a.max(v.abs())) as f64;
            for precision in [WeightPrecision::F16, WeightPrecision::Int8] {
                let mut lin = Linear::new(&w, b.clone(), n, k);
                lin.set_precision(precision);
                let mut got = vec![0.0; m * n];
                lin.forward(&x, &mut got);
                let reduced = lin.reduced().expect("reduced weights");
                let mut generic = vec![0.0; m * n];
                reduced.block_generic(&x, k, n, &b, &mut generic, n, 0, n.div_ceil(NR));
                // Rounding error bound: each product is off by at most the two relative
                // quantisation steps (2⁻¹¹ for f16; half a step of 1/127 for int8
                // activations plus half a step of 1/63 for the 7-bit weights).
                let step = match precision {
                    WeightPrecision::Int8 => 0.5 / 127.0 + 0.5 / 63.0,
                    _ => 1.0 / 1024.0,
                };
                let tol = (k as f64) * xmax * wmax * step + 1e-4;
                for (i, &want) in want.iter().enumerate() {
                    let (r, c) = (i / n, i % n);
                    assert!(
                        (got[i] as f64 - want).abs() < tol,
                        "{precision} {m}x{k}x{n} ({r}, {c}): {} vs {want}",
                        got[i]
                    );
                    if precision == WeightPrecision::Int8 {
                        // Exact integer sums: the SIMD and portable paths agree exactly.
                        assert_eq!(got[i], generic[i], "{m}x{k}x{n} ({r}, {c})");
                    } else {
                        assert!((generic[i] as f64 - want).abs() < tol);
                    }
                }
            }
        }
    }

    #[test]
    fn int8_handles_zero_rows_and_extreme_values() {
        let (m, k, n) = (3, 40, 20);
        let mut w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 2.0).collect();
        w[..k].fill(0.0); // an all-zero output channel
        w[k] = 1e6; // an outlier weight
        let mut x: Vec<f32> = (0..m * k).map(|i| (i % 9) as f32 - 4.0).collect();
        x[..k].fill(0.0); // an all-zero input row
        x[k] = -3e20; // an outlier input
        let b = vec![0.5f32; n];
        let mut lin = Linear::new(&w, b, n, k);
        lin.set_precision(WeightPrecision::Int8);
        let mut out = vec![0.0; m * n];
        lin.forward(&x, &mut out);
        assert!(
            out[..n].iter().all(|&v| v == 0.5),
            "zero row: {:?}",
            &out[..n]
        );
        assert!(out.iter().all(|v| !v.is_nan()));
        assert_eq!(out[n], 0.5, "zero channel");
    }
}
