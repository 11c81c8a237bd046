//! In-memory acceleration structures built from a base's SQLite tables: an inverted index
//! over the full-text index's CJK-bigram column (BM25), and int8 copies of the vectors.
//!
//! The SQLite file stays the source of truth: the inverted index is built from the terms
//! stored in `chunks_fts.cjk`, and the store keeps it in step with its own writes (and
//! rebuilds it when another process changed the base).

use std::collections::{HashMap, HashSet};

use crate::text::{self, Script};

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;

/// One row (chunk) of the inverted index.
#[derive(Debug, Clone)]
struct Row {
    chunk_id: i64,
    doc_id: i64,
    /// Terms in the row (its length for BM25).
    len: u32,
    script: Script,
    live: bool,
}

/// Posting lists of one term: rows in increasing order and the term's count in each.
#[derive(Debug, Default, Clone)]
struct Postings {
    rows: Vec<u32>,
    tfs: Vec<u8>,
    /// Live rows holding the term.
    df: u32,
}

/// An inverted index with BM25 scoring over the terms of the CJK-bigram column (CJK
/// bigrams and lower-cased words of other scripts, plural `-s` folded; see
/// [`text::index_terms`]).
#[derive(Debug, Default)]
pub(crate) struct TextIndex {
    /// Base generation the index reflects.
    pub generation: i64,
    rows: Vec<Row>,
    row_of: HashMap<i64, u32>,
    dict: HashMap<String, u32>,
    postings: Vec<Postings>,
    live: usize,
    dead: usize,
    total_len: u64,
}

impl TextIndex {
    /// An empty index for `generation`.
    pub fn new(generation: i64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    /// Live rows.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether deleted rows make up so much of the index that a rebuild is due.
    pub fn needs_compaction(&self) -> bool {
        self.dead > 1024 && self.dead > self.live
    }

    /// Adds a chunk whose CJK-column text is `cjk`. Chunk ids must increase from one call
    /// to the next (SQLite's `AUTOINCREMENT` ids do), so that posting lists stay sorted.
    pub fn add(&mut self, chunk_id: i64, doc_id: i64, cjk: &str) {
        if self.row_of.contains_key(&chunk_id) {
            return;
        }
        let Ok(row) = u32::try_from(self.rows.len()) else {
            return;
        };
        let mut ids: Vec<u32> = Vec::new();
        let (mut cjk_terms, mut words) = (0usize, 0usize);
        for term in text::index_terms(cjk) {
            if term.chars().next().is_some_and(text::is_cjk) {
                cjk_terms += 1;
            } else if term.chars().any(char::is_alphabetic) {
                words += 1;
            }
            let id = match self.dict.get(term.as_ref()) {
                Some(&id) => id,
                None => {
                    let Ok(id) = u32::try_from(self.postings.len()) else {
                        continue;
                    };
                    self.dict.insert(term.into_owned(), id);
                    self.postings.push(Postings::default());
                    id
                }
            };
            ids.push(id);
        }
        let len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        ids.sort_unstable();
        for run in ids.chunk_by(|a, b| a == b) {
            let p = &mut self.postings[run[0] as usize];
            p.rows.push(row);
            p.tfs.push(u8::try_from(run.len()).unwrap_or(u8::MAX));
            p.df += 1;
        }
        self.rows.push(Row {
            chunk_id,
            doc_id,
            len,
            script: if cjk_terms > words {
                Script::Cjk
            } else {
                Script::Other
            },
            live: true,
        });
        self.row_of.insert(chunk_id, row);
        self.live += 1;
        self.total_len += u64::from(len);
    }

    /// Removes a chunk whose CJK-column text was `cjk` (to find the terms whose document
    /// frequency drops). Unknown ids are ignored.
    pub fn remove(&mut self, chunk_id: i64, cjk: &str) {
        let Some(row) = self.row_of.remove(&chunk_id) else {
            return;
        };
        let r = &mut self.rows[row as usize];
        if !r.live {
            return;
        }
        r.live = false;
        self.live -= 1;
        self.dead += 1;
        self.total_len -= u64::from(r.len);
        let distinct: HashSet<_> = text::index_terms(cjk).collect();
        for term in distinct {
            if let Some(&id) = self.dict.get(term.as_ref()) {
                let p = &mut self.postings[id as usize];
                p.df = p.df.saturating_sub(1);
            }
        }
    }

    /// The script of each chunk (`None` for an unknown id).
    pub fn scripts(&self, ids: &[i64]) -> Vec<Option<Script>> {
        ids.iter()
            .map(|id| self.row_of.get(id).map(|&r| self.rows[r as usize].script))
            .collect()
    }

    /// Best `n` chunks for the query terms `terms` (already normalised by
    /// [`text::index_terms`], without duplicates) by BM25, best first, as (chunk id,
    /// score), among the chunks of the documents in `allowed` (all when `None`).
    ///
    /// `idf = ln(1 + (N − df + 0.5) / (df + 0.5))`, `k1 = 1.2`, `b = 0.75`. Scores are
    /// accumulated term by term into one array over the rows, so the cost is the length
    /// of the query terms' posting lists.
    pub fn search(
        &self,
        terms: &[String],
        n: usize,
        allowed: Option<&HashSet<i64>>,
    ) -> Vec<(i64, f64)> {
        if n == 0 || self.live == 0 {
            return Vec::new();
        }
        let live = self.live as f32;
        let avgdl = (self.total_len as f32 / live).max(1.0);
        let mut acc = vec![0f32; self.rows.len()];
        let mut touched: Vec<u32> = Vec::new();
        for term in terms {
            let Some(&id) = self.dict.get(term) else {
                continue;
            };
            let p = &self.postings[id as usize];
            if p.df == 0 {
                continue;
            }
            let df = p.df as f32;
            let idf = (1.0 + (live - df + 0.5) / (df + 0.5)).ln();
            for (&row, &tf) in p.rows.iter().zip(&p.tfs) {
                let r = &self.rows[row as usize];
                if !r.live {
                    continue;
                }
                let tf = f32::from(tf);
                let s = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * r.len as f32 / avgdl));
                let a = &mut acc[row as usize];
                if *a == 0.0 {
                    touched.push(row);
                }
                *a += s;
            }
        }
        let mut scored: Vec<(f32, u32)> = touched
            .into_iter()
            .filter(|&row| allowed.is_none_or(|a| a.contains(&self.rows[row as usize].doc_id)))
            .map(|row| (acc[row as usize], row))
            .collect();
        let by_score = |a: &(f32, u32), b: &(f32, u32)| {
            b.0.total_cmp(&a.0).then_with(|| {
                self.rows[a.1 as usize]
                    .chunk_id
                    .cmp(&self.rows[b.1 as usize].chunk_id)
            })
        };
        if scored.len() > n {
            scored.select_nth_unstable_by(n - 1, by_score);
            scored.truncate(n);
        }
        scored.sort_unstable_by(by_score);
        scored
            .into_iter()
            .map(|(s, row)| (self.rows[row as usize].chunk_id, f64::from(s)))
            .collect()
    }
}

/// Per-vector symmetric int8 quantisation: `v ≈ scale · q`, `scale = max|v| / 127`.
pub(crate) fn quantize(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    out.extend(v.iter().map(|x| {
        // The quotient is within -127..=127 by construction of `scale`.
        #[allow(clippy::cast_possible_truncation)]
        let q = (x / scale).round().clamp(-127.0, 127.0) as i8;
        q
    }));
    scale
}

/// Integer dot product of two int8 vectors of equal length.
#[cfg(test)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the feature the function is compiled for.
        return unsafe { avx2::dot_i8(a, b) };
    }
    dot_i8_generic(a, b)
}

#[inline(always)]
fn dot_i8_generic(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// Scores every int8 row of `data` (rows of `dim`) against `q`: `out[row] = dot`.
pub(crate) fn scan_i8(q: &[i8], data: &[i8], dim: usize, out: &mut Vec<i32>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the feature the function is compiled for.
        unsafe { avx2::scan(q, data, dim, out) };
        return;
    }
    out.extend(data.chunks_exact(dim).map(|v| dot_i8_generic(q, v)));
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_hadd_epi32, _mm_loadu_si128,
        _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepi8_epi16, _mm256_extracti128_si256,
        _mm256_madd_epi16, _mm256_setzero_si256,
    };

    /// Dot product with AVX2: 16 int8 pairs widened to int16 and multiplied-added into
    /// int32 lanes per step.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let mut acc: __m256i = _mm256_setzero_si256();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: `i + 16 <= n` keeps both 16-byte loads within the slices.
            let (x, y) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(i).cast()),
                    _mm_loadu_si128(b.as_ptr().add(i).cast()),
                )
            };
            let p = _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepi8_epi16(y));
            acc = _mm256_add_epi32(acc, p);
            i += 16;
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_hadd_epi32(s, s);
        let s = _mm_hadd_epi32(s, s);
        let mut sum = _mm_cvtsi128_si32(s);
        for j in i..n {
            sum += i32::from(a[j]) * i32::from(b[j]);
        }
        sum
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scan(q: &[i8], data: &[i8], dim: usize, out: &mut Vec<i32>) {
        // SAFETY: AVX2 is enabled for this function.
        out.extend(data.chunks_exact(dim).map(|v| unsafe { dot_i8(q, v) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_dot_matches_scalar() {
        let a: Vec<i8> = (0..389).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let b: Vec<i8> = (0..389).map(|i| ((i * 91) % 255 - 127) as i8).collect();
        let want: i32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| i32::from(*x) * i32::from(*y))
            .sum();
        assert_eq!(dot_i8(&a, &b), want);
        assert_eq!(dot_i8_generic(&a, &b), want);
        let mut out = Vec::new();
        scan_i8(
            &a[..384],
            &[a[..384].to_vec(), b[..384].to_vec()].concat(),
            384,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], dot_i8_generic(&a[..384], &b[..384]));
    }

    #[test]
    fn bm25_index_add_remove_and_rank() {
        let mut ix = TextIndex::new(0);
        ix.add(1, 10, "annual leave days leave");
        ix.add(2, 10, "sick leave certificate");
        ix.add(3, 11, "特休 休假 14 天");
        let q = |ix: &TextIndex, t: &[&str]| {
            let terms: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            ix.search(&terms, 10, None)
        };
        let hits = q(&ix, &["leave", "annual"]);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2]);
        assert!(hits[0].1 > hits[1].1);
        assert_eq!(q(&ix, &["特休"])[0].0, 3);
        assert_eq!(
            ix.scripts(&[1, 3, 9]),
            [Some(Script::Other), Some(Script::Cjk), None]
        );
        // Plurals fold: "certificates" finds "certificate".
        let terms: Vec<String> = text::index_terms("certificates")
            .map(|t| t.into_owned())
            .collect();
        assert_eq!(ix.search(&terms, 5, None)[0].0, 2);
        // A filter keeps only allowed documents.
        let allowed: HashSet<i64> = [11].into_iter().collect();
        assert!(
            ix.search(&["leave".to_string()], 5, Some(&allowed))
                .is_empty()
        );
        ix.remove(1, "annual leave days leave");
        assert_eq!(ix.len(), 2);
        assert!(q(&ix, &["annual"]).is_empty());
        assert_eq!(
            q(&ix, &["leave"]).iter().map(|h| h.0).collect::<Vec<_>>(),
            [2]
        );
    }
}
