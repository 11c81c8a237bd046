//! The learned router: k nearest neighbours over query embeddings, labelled with whether
//! the SLM's answer was good enough.
//!
//! # Prediction
//! Vectors are L2-normalised at training, so cosine similarity is a dot product. For a
//! query, the `k` most similar stored vectors (ties: lower index first) vote with weight
//! `max(similarity, 0)`, and the global mean label `m` votes with weight `prior_weight`
//! (default 1, i.e. one pseudo-neighbour of similarity 1):
//!
//! `p = (Σ wᵢ·yᵢ + prior_weight·m) / (Σ wᵢ + prior_weight)`
//!
//! The prior keeps small `k` from giving hard 0/1 answers and pulls far-away queries
//! (small similarities) toward the base rate. A router score for
//! [`crate::metrics::curve`] ("higher = more in need of the LLM") is `1 − p`.
//!
//! # File format (version 1)
//! One header line of JSON terminated by `\n`:
//! `{"format":"tandem-knn-router","version":1,"embedding_model":"…","k":10,"dim":384,"n":2000,"prior_weight":1.0}`
//! then a binary payload of exactly `(n·dim + n)·4` bytes: the `n` normalised vectors
//! (row-major `n × dim` little-endian f32) followed by the `n` labels (little-endian f32).
//! Loading rejects a foreign file (no such header), another version, a payload of the
//! wrong size, non-finite or non-normalised vectors and labels outside 0..=1.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EvalError;

/// The `format` field of the header line.
pub const FILE_FORMAT: &str = "tandem-knn-router";
/// The file version this build writes and reads.
pub const FILE_VERSION: u32 = 1;
/// The default weight of the global-mean prior.
pub const DEFAULT_PRIOR_WEIGHT: f32 = 1.0;
/// Longest header line accepted when loading.
const MAX_HEADER: usize = 64 * 1024;

/// A kNN router over normalised embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedRouter {
    embedding_model: String,
    k: usize,
    dim: usize,
    prior_weight: f32,
    /// `n × dim`, row-major, each row of unit length.
    vectors: Vec<f32>,
    /// 1.0 = the SLM's answer was good enough.
    labels: Vec<f32>,
    mean_label: f32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    embedding_model: String,
    k: usize,
    dim: usize,
    n: usize,
    prior_weight: f32,
}

fn mean(labels: &[f32]) -> f32 {
    (labels.iter().map(|&y| y as f64).sum::<f64>() / labels.len().max(1) as f64) as f32
}

impl LearnedRouter {
    /// Builds a router from `(embedding, label)` pairs. Embeddings must share one non-zero
    /// dimension and be finite and non-zero (they are normalised here); labels must lie in
    /// 0..=1; `k` must be at least 1 (it is capped at the number of examples when
    /// predicting).
    pub fn train(
        examples: &[(Vec<f32>, f32)],
        embedding_model: &str,
        k: usize,
    ) -> Result<LearnedRouter, EvalError> {
        let first = examples
            .first()
            .ok_or(EvalError::Empty("training examples"))?;
        if k == 0 {
            return Err(EvalError::invalid("k", "must be at least 1"));
        }
        let dim = first.0.len();
        if dim == 0 {
            return Err(EvalError::invalid("embedding 0", "has dimension 0"));
        }
        let mut vectors = Vec::with_capacity(examples.len() * dim);
        let mut labels = Vec::with_capacity(examples.len());
        for (i, (v, y)) in examples.iter().enumerate() {
            if v.len() != dim {
                return Err(EvalError::invalid(
                    format!("embedding {i}"),
                    format!("has dimension {}, expected {dim}", v.len()),
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(EvalError::invalid(
                    format!("embedding {i}"),
                    "is not finite",
                ));
            }
            let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(EvalError::invalid(format!("embedding {i}"), "is all zeros"));
            }
            if !(y.is_finite() && (0.0..=1.0).contains(y)) {
                return Err(EvalError::invalid(
                    format!("label {i}"),
                    format!("{y} is not in 0..=1"),
                ));
            }
            vectors.extend(v.iter().map(|&x| (x as f64 / norm) as f32));
            labels.push(*y);
        }
        Ok(LearnedRouter {
            embedding_model: embedding_model.to_string(),
            k,
            dim,
            prior_weight: DEFAULT_PRIOR_WEIGHT,
            mean_label: mean(&labels),
            vectors,
            labels,
        })
    }

    /// Sets the weight of the global-mean prior (finite, ≥ 0; 0 disables smoothing).
    pub fn with_prior_weight(mut self, weight: f32) -> Result<LearnedRouter, EvalError> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(EvalError::invalid("prior_weight", format!("{weight}")));
        }
        self.prior_weight = weight;
        Ok(self)
    }

    /// The embedding model the vectors come from.
    pub fn embedding_model(&self) -> &str {
        &self.embedding_model
    }
    /// Neighbours per prediction.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of stored examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether no example is stored (never true for a trained or loaded router).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The labels, in training order.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }
    /// The global mean label (the prior).
    pub fn mean_label(&self) -> f32 {
        self.mean_label
    }
    /// The prior's weight.
    pub fn prior_weight(&self) -> f32 {
        self.prior_weight
    }

    /// Errors unless the router was built with `embedding_model` at dimension `dim`.
    pub fn check_compatible(&self, embedding_model: &str, dim: usize) -> Result<(), EvalError> {
        if self.embedding_model != embedding_model || self.dim != dim {
            return Err(EvalError::Mismatch(format!(
                "router built for {} (dim {}), used with {embedding_model} (dim {dim})",
                self.embedding_model, self.dim
            )));
        }
        Ok(())
    }

    /// The probability that the SLM's answer is good enough for `query` (see the module
    /// docs). A query of the wrong dimension, non-finite or all zeros gets the prior (the
    /// global mean label); use [`LearnedRouter::predict`] to get an error instead.
    pub fn slm_win_probability(&self, query: &[f32]) -> f32 {
        self.predict(query).unwrap_or(self.mean_label)
    }

    /// [`LearnedRouter::slm_win_probability`], with an error for a query of the wrong
    /// dimension, non-finite or all zeros.
    pub fn predict(&self, query: &[f32]) -> Result<f32, EvalError> {
        if query.len() != self.dim {
            return Err(EvalError::LengthMismatch {
                what: "query embedding",
                expected: self.dim,
                got: query.len(),
            });
        }
        let norm = dot(query, query).sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(EvalError::invalid(
                "query embedding",
                "is all zeros or not finite",
            ));
        }
        let q: Vec<f32> = query.iter().map(|x| x / norm).collect();
        Ok(self.vote(&q, None, self.mean_label))
    }

    /// The kNN vote for a normalised query, optionally leaving out one stored example.
    fn vote(&self, q: &[f32], skip: Option<usize>, prior: f32) -> f32 {
        let k = self.k.min(self.len());
        // The k best (similarity, index), sorted by decreasing similarity.
        let mut sims = vec![0f32; self.len()];
        similarities(q, &self.vectors, self.dim, &mut sims);
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, &sim) in sims.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            if top.len() == k && top.last().is_none_or(|&(worst, _)| sim <= worst) {
                continue;
            }
            let pos = top.partition_point(|&(s, _)| s >= sim);
            top.insert(pos, (sim, i));
            top.truncate(k);
        }
        let (mut num, mut den) = (
            self.prior_weight as f64 * prior as f64,
            self.prior_weight as f64,
        );
        for &(sim, i) in &top {
            let w = sim.max(0.0) as f64;
            num += w * self.labels[i] as f64;
            den += w;
        }
        if den > 0.0 { (num / den) as f32 } else { prior }
    }

    /// Leave-one-out predictions: for every stored example, the vote of the others (with
    /// the others' mean label as prior). Empty when fewer than two examples are stored.
    pub fn leave_one_out_predictions(&self) -> Vec<f32> {
        let n = self.len();
        if n < 2 {
            return Vec::new();
        }
        let total: f64 = self.labels.iter().map(|&y| y as f64).sum();
        (0..n)
            .map(|i| {
                let prior = ((total - self.labels[i] as f64) / (n - 1) as f64) as f32;
                let row = &self.vectors[i * self.dim..(i + 1) * self.dim];
                self.vote(row, Some(i), prior)
            })
            .collect()
    }

    /// Leave-one-out accuracy of `p ≥ 0.5` against `label ≥ 0.5`; `None` with fewer than
    /// two examples.
    pub fn leave_one_out_accuracy(&self) -> Option<f64> {
        let preds = self.leave_one_out_predictions();
        if preds.is_empty() {
            return None;
        }
        let right = preds
            .iter()
            .zip(&self.labels)
            .filter(|&(&p, &y)| (p >= 0.5) == (y >= 0.5))
            .count();
        Some(right as f64 / preds.len() as f64)
    }

    /// Writes the router file (see the module docs) atomically: a sibling temporary file
    /// renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        let io = |source: std::io::Error| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let header = Header {
            format: FILE_FORMAT.into(),
            version: FILE_VERSION,
            embedding_model: self.embedding_model.clone(),
            k: self.k,
            dim: self.dim,
            n: self.len(),
            prior_weight: self.prior_weight,
        };
        let mut bytes = serde_json::to_vec(&header).map_err(|e| EvalError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        bytes.reserve((self.vectors.len() + self.labels.len()) * 4);
        for x in self.vectors.iter().chain(&self.labels) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp: PathBuf = path.with_file_name(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Reads a router file written by [`LearnedRouter::save`].
    pub fn load(path: &Path) -> Result<LearnedRouter, EvalError> {
        let bytes = fs::read(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// [`LearnedRouter::load`], then [`LearnedRouter::check_compatible`].
    pub fn load_expecting(
        path: &Path,
        embedding_model: &str,
        dim: usize,
    ) -> Result<LearnedRouter, EvalError> {
        let r = Self::load(path)?;
        r.check_compatible(embedding_model, dim)?;
        Ok(r)
    }

    /// Parses router file bytes; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<LearnedRouter, EvalError> {
        let path = path.to_path_buf();
        let foreign = |reason: &str| EvalError::ForeignFile {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let corrupt = |reason: String| EvalError::Corrupt {
            path: path.clone(),
            reason,
        };
        let nl = bytes
            .iter()
            .take(MAX_HEADER)
            .position(|&b| b == b'\n')
            .ok_or_else(|| foreign("no header line"))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes[..nl]).map_err(|_| foreign("header is not JSON"))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FILE_FORMAT) {
            return Err(foreign("header has no `format: tandem-knn-router`"));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == FILE_VERSION as u64 => {}
            Some(v) => {
                return Err(EvalError::UnsupportedVersion {
                    path,
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    supported: FILE_VERSION,
                });
            }
            None => return Err(corrupt("header has no numeric `version`".into())),
        }
        let h: Header =
            serde_json::from_value(value).map_err(|e| corrupt(format!("header: {e}")))?;
        if h.dim == 0 || h.n == 0 || h.k == 0 {
            return Err(corrupt(format!(
                "header has dim {}, n {}, k {}: all must be at least 1",
                h.dim, h.n, h.k
            )));
        }
        if !(h.prior_weight.is_finite() && h.prior_weight >= 0.0) {
            return Err(corrupt(format!("prior_weight {}", h.prior_weight)));
        }
        let floats =
            h.n.checked_mul(h.dim)
                .and_then(|v| v.checked_add(h.n))
                .filter(|v| v.checked_mul(4).is_some())
                .ok_or_else(|| corrupt(format!("n {} × dim {} overflows", h.n, h.dim)))?;
        let payload = &bytes[nl + 1..];
        if payload.len() != floats * 4 {
            return Err(EvalError::PayloadSize {
                path,
                expected: floats * 4,
                found: payload.len(),
            });
        }
        let mut all: Vec<f32> = payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let labels = all.split_off(h.n * h.dim);
        let vectors = all;
        for (i, row) in vectors.chunks_exact(h.dim).enumerate() {
            let norm = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
                return Err(corrupt(format!("vector {i} has norm {norm}, expected 1")));
            }
        }
        if let Some(i) = labels
            .iter()
            .position(|y| !(y.is_finite() && (0.0..=1.0).contains(y)))
        {
            return Err(corrupt(format!("label {i} is {}", labels[i])));
        }
        Ok(LearnedRouter {
            embedding_model: h.embedding_model,
            k: h.k,
            dim: h.dim,
            prior_weight: h.prior_weight,
            mean_label: mean(&labels),
            vectors,
            labels,
        })
    }
}

/// `out[i] = q · row i` of the row-major `vectors` (rows `dim` long): AVX2+FMA when the CPU
/// has them, else the portable [`dot`].
fn similarities(q: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { avx2::similarities(q, vectors, dim, out) };
        return;
    }
    for (row, o) in vectors.chunks_exact(dim).zip(out) {
        *o = dot(q, row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::similarities`] with 256-bit FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn similarities(q: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
        for (row, o) in vectors.chunks_exact(dim).zip(out) {
            *o = dot(q, row);
        }
    }

    /// Dot product with four 8-lane accumulators (32 floats per step), then 8-lane steps,
    /// then a scalar tail.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 8j + 8 <= i + 32 <= n`: in bounds of both slices.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(ap.add(i + 8 * j)),
                        _mm256_loadu_ps(bp.add(i + 8 * j)),
                    )
                };
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`.
            let (x, y) = unsafe { (_mm256_loadu_ps(ap.add(i)), _mm256_loadu_ps(bp.add(i))) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f32>() + tail
    }

    #[cfg(test)]
    pub(super) fn dot_for_test(a: &[f32], b: &[f32]) -> Option<f32> {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features.
            Some(unsafe { dot(a, b) })
        } else {
            None
        }
    }
}

/// Dot product with 16 independent accumulators, so the compiler vectorises it without
/// reassociating floating point.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const W: usize = 16;
    let mut acc = [0f32; W];
    let (ca, cb) = (a.chunks_exact(W), b.chunks_exact(W));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..W {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ex(v: &[f32], y: f32) -> (Vec<f32>, f32) {
        (v.to_vec(), y)
    }

    /// e1 twice (SLM good), e2 twice and e3 once (SLM not good): mean label 0.4.
    fn clusters() -> Vec<(Vec<f32>, f32)> {
        vec![
            ex(&[1.0, 0.0, 0.0], 1.0),
            ex(&[2.0, 0.0, 0.0], 1.0), // normalised to e1
            ex(&[0.0, 1.0, 0.0], 0.0),
            ex(&[0.0, 3.0, 0.0], 0.0),
            ex(&[0.0, 0.0, 1.0], 0.0),
        ]
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn hand_computed_predictions() {
        let r = LearnedRouter::train(&clusters(), "mini", 2).unwrap();
        assert_eq!((r.len(), r.dim(), r.k()), (5, 3, 2));
        assert!(close(r.mean_label(), 0.4));
        // Query e1: neighbours e1, e1 (w 1, y 1) → (2 + 0.4) / (2 + 1) = 0.8.
        assert!(close(r.slm_win_probability(&[5.0, 0.0, 0.0]), 0.8));
        // Query e2: (0 + 0.4) / 3.
        assert!(close(r.slm_win_probability(&[0.0, 1.0, 0.0]), 0.4 / 3.0));
        // Without the prior, the neighbours alone decide.
        let hard = r.clone().with_prior_weight(0.0).unwrap();
        assert!(close(hard.slm_win_probability(&[1.0, 0.0, 0.0]), 1.0));
        // k = 4, query (1,1,0)/√2: four neighbours at 1/√2, two with label 1.
        let r4 = LearnedRouter::train(&clusters(), "mini", 4).unwrap();
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let want = (2.0 * s + 0.4) / (4.0 * s + 1.0);
        assert!(close(r4.slm_win_probability(&[1.0, 1.0, 0.0]), want));
        // Query (1, −0.5, 0): top 4 = e1, e1 (sim 2/√5), e3 (0), one e2 (−1/√5, weight 0).
        let s1 = 2.0 / 5f32.sqrt();
        let want = (2.0 * s1 + 0.4) / (2.0 * s1 + 1.0);
        assert!(close(r4.slm_win_probability(&[1.0, -0.5, 0.0]), want));
        // A query unlike everything (negative similarities weigh 0) gets the prior.
        assert!(close(r4.slm_win_probability(&[-1.0, -1.0, -1.0]), 0.4));
        // k larger than n is capped.
        let r9 = LearnedRouter::train(&clusters(), "mini", 9).unwrap();
        let want = (2.0 + 0.4) / (2.0 + 1.0); // e1 query: only e1s have weight
        assert!(close(r9.slm_win_probability(&[1.0, 0.0, 0.0]), want));
    }

    #[test]
    fn bad_queries() {
        let r = LearnedRouter::train(&clusters(), "mini", 2).unwrap();
        assert!(matches!(
            r.predict(&[1.0, 0.0]),
            Err(EvalError::LengthMismatch {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert!(r.predict(&[0.0, 0.0, 0.0]).is_err());
        assert!(r.predict(&[f32::NAN, 0.0, 0.0]).is_err());
        assert!(close(r.slm_win_probability(&[1.0]), 0.4));
    }

    #[test]
    fn training_validation() {
        assert!(matches!(
            LearnedRouter::train(&[], "m", 3),
            Err(EvalError::Empty(_))
        ));
        assert!(LearnedRouter::train(&clusters(), "m", 0).is_err());
        let mut bad = clusters();
        bad[3].0.push(1.0);
        let e = LearnedRouter::train(&bad, "m", 3).unwrap_err();
        assert!(e.to_string().contains("embedding 3"), "{e}");
        let mut bad = clusters();
        bad[1].1 = 1.5;
        assert!(LearnedRouter::train(&bad, "m", 3).is_err());
        let mut bad = clusters();
        bad[2].0 = vec![0.0; 3];
        assert!(LearnedRouter::train(&bad, "m", 3).is_err());
        let mut bad = clusters();
        bad[0].0[1] = f32::INFINITY;
        assert!(LearnedRouter::train(&bad, "m", 3).is_err());
        assert!(LearnedRouter::train(&[(vec![], 1.0)], "m", 3).is_err());
        let r = LearnedRouter::train(&clusters(), "m", 3).unwrap();
        assert!(r.with_prior_weight(-1.0).is_err());
    }

    #[test]
    fn leave_one_out() {
        let r = LearnedRouter::train(&clusters(), "m", 1)
            .unwrap()
            .with_prior_weight(0.5)
            .unwrap();
        let p = r.leave_one_out_predictions();
        // Example 0 (e1, y 1): its twin votes 1, prior (1+0+0+0)/4 = 0.25 →
        // (1 + 0.5·0.25)/(1 + 0.5) = 0.75.
        assert!(close(p[0], 0.75));
        // Example 4 (e3, y 0): every other vector is orthogonal (weight 0) → prior 2/4.
        assert!(close(p[4], 0.5));
        // Predictions ≥ 0.5 count as "SLM good": 0 ✓, 1 ✓, 2 ✓, 3 ✓, 4 ✗ (0.5 vs 0).
        assert_eq!(r.leave_one_out_accuracy(), Some(0.8));
        let one = LearnedRouter::train(&clusters()[..1], "m", 1).unwrap();
        assert_eq!(one.leave_one_out_accuracy(), None);
    }

    #[test]
    fn save_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.knn");
        let r = LearnedRouter::train(&clusters(), "multilingual-e5-small", 2)
            .unwrap()
            .with_prior_weight(0.25)
            .unwrap();
        r.save(&path).unwrap();
        let back = LearnedRouter::load(&path).unwrap();
        assert_eq!(back, r);
        let q = [0.3, 0.9, 0.1];
        assert_eq!(back.slm_win_probability(&q), r.slm_win_probability(&q));
        let bytes = fs::read(&path).unwrap();
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(bytes.len() - nl - 1, (5 * 3 + 5) * 4);
        assert!(bytes.starts_with(b"{\"format\":\"tandem-knn-router\",\"version\":1,"));
        assert!(LearnedRouter::load_expecting(&path, "multilingual-e5-small", 3).is_ok());
        assert!(matches!(
            LearnedRouter::load_expecting(&path, "multilingual-e5-small", 384),
            Err(EvalError::Mismatch(_))
        ));
        assert!(matches!(
            LearnedRouter::load_expecting(&path, "all-MiniLM-L6-v2", 3),
            Err(EvalError::Mismatch(_))
        ));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupted_files_are_errors() {
        let r = LearnedRouter::train(&clusters(), "m", 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.knn");
        r.save(&path).unwrap();
        let good = fs::read(&path).unwrap();
        let nl = good.iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&good[..nl]).unwrap().to_string();
        let p = Path::new("r.knn");
        let with_header = |h: &str| {
            let mut b = h.as_bytes().to_vec();
            b.extend_from_slice(&good[nl..]);
            b
        };

        // Missing file.
        assert!(matches!(
            LearnedRouter::load(&dir.path().join("nope")),
            Err(EvalError::Io { .. })
        ));
        // Foreign files.
        for bytes in [
            b"\x89PNG\r\n\x1a\n....".to_vec(),
            b"no newline at all".to_vec(),
            b"{\"format\":\"other\",\"version\":1}\n".to_vec(),
            Vec::new(),
        ] {
            assert!(
                matches!(
                    LearnedRouter::from_bytes(&bytes, p),
                    Err(EvalError::ForeignFile { .. })
                ),
                "{bytes:?}"
            );
        }
        // Another version.
        let v2 = with_header(&header.replace("\"version\":1", "\"version\":2"));
        let e = LearnedRouter::from_bytes(&v2, p).unwrap_err();
        assert!(matches!(
            e,
            EvalError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ));
        assert!(e.to_string().contains("version 2"), "{e}");
        // Truncated and overlong payloads.
        let e = LearnedRouter::from_bytes(&good[..good.len() - 3], p).unwrap_err();
        assert!(
            matches!(
                e,
                EvalError::PayloadSize {
                    expected: 80,
                    found: 77,
                    ..
                }
            ),
            "{e}"
        );
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            LearnedRouter::from_bytes(&long, p),
            Err(EvalError::PayloadSize { found: 81, .. })
        ));
        // Header dims that do not match the payload.
        let wrong_dim = with_header(&header.replace("\"dim\":3", "\"dim\":4"));
        assert!(matches!(
            LearnedRouter::from_bytes(&wrong_dim, p),
            Err(EvalError::PayloadSize {
                expected: 100,
                found: 80,
                ..
            })
        ));
        let zero_dim = with_header(&header.replace("\"dim\":3", "\"dim\":0"));
        assert!(matches!(
            LearnedRouter::from_bytes(&zero_dim, p),
            Err(EvalError::Corrupt { .. })
        ));
        let huge = with_header(&header.replace("\"n\":5", &format!("\"n\":{}", usize::MAX / 2)));
        assert!(matches!(
            LearnedRouter::from_bytes(&huge, p),
            Err(EvalError::Corrupt { .. })
        ));
        let no_model = with_header(&header.replace("\"embedding_model\":\"m\",", ""));
        assert!(matches!(
            LearnedRouter::from_bytes(&no_model, p),
            Err(EvalError::Corrupt { .. })
        ));
        // A flipped payload byte: vector no longer of unit length, or a label out of range.
        let mut flipped = good.clone();
        flipped[nl + 1 + 3] ^= 0x40;
        assert!(matches!(
            LearnedRouter::from_bytes(&flipped, p),
            Err(EvalError::Corrupt { .. })
        ));
        let mut bad_label = good.clone();
        let last = bad_label.len() - 4;
        bad_label[last..].copy_from_slice(&2.0f32.to_le_bytes());
        let e = LearnedRouter::from_bytes(&bad_label, p).unwrap_err();
        assert!(e.to_string().contains("label 4"), "{e}");
        // The untouched bytes still load.
        assert_eq!(LearnedRouter::from_bytes(&good, p).unwrap(), r);
    }

    #[test]
    fn dot_matches_naive_on_odd_lengths() {
        for n in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 41, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n = {n}");
            #[cfg(target_arch = "x86_64")]
            if let Some(d) = avx2::dot_for_test(&a, &b) {
                assert!((d as f64 - naive).abs() < 1e-4, "avx2, n = {n}");
            }
        }
    }
}
