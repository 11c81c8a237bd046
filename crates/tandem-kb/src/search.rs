//! Retrieval: BM25, vector and hybrid (reciprocal rank fusion) search, with optional MMR.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::KbError;
use crate::manager::KnowledgeBase;
use crate::store::{SearchFilter, dot};
use crate::text::{self, Script};

/// The `k` constant of reciprocal rank fusion: a chunk at rank `r` (from 1) of a list
/// scores `1 / (RRF_K + r)`.
pub const RRF_K: f64 = 60.0;

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// BM25 and vector candidates fused by reciprocal rank fusion.
    #[default]
    Hybrid,
    /// Full-text (BM25) only.
    Bm25,
    /// Vector similarity only.
    Vector,
}

/// Options of [`KnowledgeBase::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Hits to return.
    pub k: usize,
    /// Retrievers to use.
    pub mode: SearchMode,
    /// Restriction to some documents.
    pub filter: SearchFilter,
    /// Maximal marginal relevance re-ranking with this λ (1 = relevance only, 0 = diversity
    /// only), over the candidates' vectors. `None`: no re-ranking.
    pub mmr: Option<f32>,
    /// Candidates taken from each retriever (at least `k` are taken).
    pub candidates: usize,
    /// Hybrid mode: places of the top `k` (at most `k − 1`) kept for the best fused chunks
    /// written in the other script than the query (CJK or not), in a base holding both.
    /// BM25 ranks same-language chunks first, so without this a question whose answer is
    /// only in the other language's documents rarely reaches the top `k` even when the
    /// multilingual embedding finds it. 0 turns it off.
    pub cross_script: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 5,
            mode: SearchMode::Hybrid,
            filter: SearchFilter::default(),
            mmr: None,
            candidates: 50,
            cross_script: 1,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Chunk id.
    pub chunk_id: i64,
    /// Document id.
    pub doc_id: i64,
    /// Fused score, higher is better: the RRF score (hybrid), the BM25 score (BM25 mode) or
    /// the cosine similarity (vector mode).
    pub score: f64,
    /// Rank in the BM25 candidates, from 1.
    pub bm25_rank: Option<usize>,
    /// Rank in the vector candidates, from 1.
    pub vector_rank: Option<usize>,
    /// Chunk text.
    pub text: String,
    /// Display path of the source document (relative to the ingested folder).
    pub path: String,
    /// Absolute path of the source file.
    pub abs_path: String,
    /// Document title.
    pub title: Option<String>,
    /// Headings above the chunk.
    pub heading_path: Vec<String>,
    /// Page (PDF).
    pub page: Option<u32>,
    /// Character range of the chunk in the extracted document text.
    pub char_range: Range<usize>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    score: f64,
    bm25_rank: Option<usize>,
    vector_rank: Option<usize>,
}

impl KnowledgeBase {
    /// Searches the base for `query`. Fails with [`KbError::EmptyQuery`] when the query
    /// has no letter or digit; any other text (quotes, `*`, `AND`, parentheses, CJK
    /// punctuation) is searched as plain words.
    pub fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<Hit>, KbError> {
        if !text::has_content(query) {
            return Err(KbError::EmptyQuery);
        }
        let embedding = if opts.mode == SearchMode::Bm25 {
            None
        } else {
            Some(self.embedder.embed_query(query).map_err(KbError::Embed)?)
        };
        self.search_inner(query, embedding.as_deref(), opts)
    }

    /// [`search`](Self::search) with the query's embedding already computed (by
    /// [`Embed::embed_query`](crate::Embed::embed_query) of this base's model).
    pub fn search_with_embedding(
        &self,
        query: &str,
        embedding: &[f32],
        opts: &SearchOptions,
    ) -> Result<Vec<Hit>, KbError> {
        if !text::has_content(query) {
            return Err(KbError::EmptyQuery);
        }
        self.search_inner(query, Some(embedding), opts)
    }

    fn search_inner(
        &self,
        query: &str,
        embedding: Option<&[f32]>,
        opts: &SearchOptions,
    ) -> Result<Vec<Hit>, KbError> {
        if opts.k == 0 {
            return Ok(Vec::new());
        }
        if let Some(l) = opts.mmr
            && !(0.0..=1.0).contains(&l)
        {
            return Err(KbError::InvalidOption(format!(
                "MMR lambda must be within 0..=1, got {l}"
            )));
        }
        let n = opts.candidates.max(opts.k);
        let mut cands: HashMap<i64, Candidate> = HashMap::new();
        if opts.mode != SearchMode::Vector {
            for (rank, (id, score)) in self
                .store
                .bm25_candidates(query, n, &opts.filter)?
                .into_iter()
                .enumerate()
            {
                let c = cands.entry(id).or_default();
                c.bm25_rank = Some(rank + 1);
                c.score += match opts.mode {
                    SearchMode::Bm25 => score,
                    _ => 1.0 / (RRF_K + (rank + 1) as f64),
                };
            }
        }
        if opts.mode != SearchMode::Bm25 {
            let Some(q) = embedding else {
                return Err(KbError::InvalidOption(
                    "vector search needs the query embedding".into(),
                ));
            };
            for (rank, (id, sim)) in self
                .store
                .vector_candidates(q, n, &opts.filter)?
                .into_iter()
                .enumerate()
            {
                let c = cands.entry(id).or_default();
                c.vector_rank = Some(rank + 1);
                c.score += match opts.mode {
                    SearchMode::Vector => f64::from(sim),
                    _ => 1.0 / (RRF_K + (rank + 1) as f64),
                };
            }
        }
        let mut ranked: Vec<(i64, Candidate)> = cands.into_iter().collect();
        ranked.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
        let mut chosen: Vec<(i64, Candidate)> = match opts.mmr {
            Some(lambda) if ranked.len() > 1 => self.mmr(&ranked, opts.k, f64::from(lambda))?,
            _ => ranked.iter().take(opts.k).copied().collect(),
        };
        if opts.mode == SearchMode::Hybrid && opts.cross_script > 0 && opts.k > 1 {
            self.keep_cross_script(
                text::script_of(query),
                &ranked,
                &mut chosen,
                opts.k,
                opts.cross_script.min(opts.k - 1),
            )?;
        }
        let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
        let mut records: HashMap<i64, _> = self
            .store
            .chunks(&ids)?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        Ok(chosen
            .into_iter()
            .filter_map(|(id, c)| {
                let r = records.remove(&id)?;
                Some(Hit {
                    chunk_id: id,
                    doc_id: r.doc_id,
                    score: c.score,
                    bm25_rank: c.bm25_rank,
                    vector_rank: c.vector_rank,
                    text: r.text,
                    path: r.display_path,
                    abs_path: r.path,
                    title: r.title,
                    heading_path: r.heading_path,
                    page: r.page,
                    char_range: r.char_range,
                })
            })
            .collect())
    }

    /// Makes sure `chosen` (at most `k` chunks) holds at least `slots` chunks written in another script than
    /// `query`: the best-ranked such candidates of `ranked` replace the last chunks of
    /// `chosen` in the query's script. Nothing changes when the candidates hold no chunk
    /// in another script (a base in one language) or `chosen` already has enough.
    fn keep_cross_script(
        &self,
        query: Script,
        ranked: &[(i64, Candidate)],
        chosen: &mut Vec<(i64, Candidate)>,
        k: usize,
        slots: usize,
    ) -> Result<(), KbError> {
        let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
        let script: HashMap<i64, Script> = ids
            .iter()
            .zip(self.store.scripts(&ids)?)
            .filter_map(|(id, s)| Some((*id, s?)))
            .collect();
        let other = |id: &i64| script.get(id).is_some_and(|s| *s != query);
        let have = chosen.iter().filter(|(id, _)| other(id)).count();
        let extra: Vec<(i64, Candidate)> = ranked
            .iter()
            .filter(|(id, _)| other(id) && !chosen.iter().any(|(c, _)| c == id))
            .take(slots.saturating_sub(have))
            .copied()
            .collect();
        for e in extra {
            if chosen.len() < k {
                chosen.push(e);
            } else if let Some(pos) = chosen.iter().rposition(|(id, _)| !other(id)) {
                chosen.remove(pos);
                chosen.push(e);
            }
        }
        Ok(())
    }

    /// Maximal marginal relevance: repeatedly picks the candidate maximising
    /// `λ·relevance − (1−λ)·max cosine to those already picked`, relevance being the score
    /// scaled to 0..=1.
    fn mmr(
        &self,
        ranked: &[(i64, Candidate)],
        k: usize,
        lambda: f64,
    ) -> Result<Vec<(i64, Candidate)>, KbError> {
        let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
        let vectors = self.store.vectors(&ids)?;
        let (lo, hi) = ranked
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), (_, c)| {
                (lo.min(c.score), hi.max(c.score))
            });
        let span = (hi - lo).max(f64::EPSILON);
        let relevance: Vec<f64> = ranked.iter().map(|(_, c)| (c.score - lo) / span).collect();
        let mut picked: Vec<usize> = Vec::with_capacity(k);
        let mut max_sim = vec![0f64; ranked.len()];
        let mut taken = vec![false; ranked.len()];
        while picked.len() < k.min(ranked.len()) {
            let mut best: Option<(usize, f64)> = None;
            for i in 0..ranked.len() {
                if taken[i] {
                    continue;
                }
                let penalty = if picked.is_empty() { 0.0 } else { max_sim[i] };
                let value = lambda * relevance[i] - (1.0 - lambda) * penalty;
                if best.is_none_or(|(_, b)| value > b) {
                    best = Some((i, value));
                }
            }
            let Some((i, _)) = best else { break };
            taken[i] = true;
            picked.push(i);
            if let Some(vi) = &vectors[i] {
                for j in 0..ranked.len() {
                    if let (false, Some(vj)) = (taken[j], &vectors[j]) {
                        max_sim[j] = max_sim[j].max(f64::from(dot(vi, vj)));
                    }
                }
            }
        }
        Ok(picked.into_iter().map(|i| ranked[i]).collect())
    }
}
