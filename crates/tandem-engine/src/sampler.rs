//! Token sampling over raw logits: greedy, temperature, top-k, top-p, min-p, OpenAI
//! frequency/presence penalties, llama.cpp-style repeat penalty, logit bias, and
//! log-probabilities of the model's own distribution (before any sampling transform).

use crate::constrain::Constraint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use tandem_types::openai::SamplingParams;

/// Tokens considered by the repeat penalty.
const REPEAT_WINDOW: usize = 64;
/// Candidates kept (by logit) before sorting for top-p; the mass beyond is negligible.
const NUCLEUS_CANDIDATES: usize = 1024;

/// The outcome of one sampling step.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// Chosen token.
    pub token: i32,
    /// Its log-probability under the model's distribution (when asked for).
    pub logprob: Option<f32>,
    /// Most likely alternatives `(token, logprob)` (when asked for).
    pub top: Vec<(i32, f32)>,
    /// The grammar failed (no token allowed, parser error): generation must end.
    pub grammar_error: Option<String>,
}

/// Per-sequence sampler state.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    counts: HashMap<i32, u32>,
    recent: std::collections::VecDeque<i32>,
    work: Vec<f32>,
    idx: Vec<u32>,
    constraint: Option<Constraint>,
}

impl Sampler {
    /// A sampler for `params`; `fallback_seed` is used when the request gives none.
    pub fn new(params: &SamplingParams, fallback_seed: u64) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(params.seed.unwrap_or(fallback_seed)),
            params: params.clone(),
            counts: HashMap::new(),
            recent: std::collections::VecDeque::with_capacity(REPEAT_WINDOW),
            work: Vec::new(),
            idx: Vec::new(),
            constraint: None,
        }
    }

    /// Sample only tokens `constraint` allows.
    pub fn with_constraint(mut self, constraint: Option<Constraint>) -> Self {
        self.constraint = constraint;
        self
    }

    /// The grammar state, if any.
    pub fn constraint(&self) -> Option<&Constraint> {
        self.constraint.as_ref()
    }

    fn needs_transform(&self) -> bool {
        let p = &self.params;
        !p.logit_bias.is_empty()
            || (!self.counts.is_empty()
                && (p.frequency_penalty != 0.0
                    || p.presence_penalty != 0.0
                    || p.repeat_penalty != 1.0))
    }

    /// Record a generated token (for penalties and the grammar). Errors when the grammar
    /// rejects it.
    pub fn accept(&mut self, token: i32) -> Result<(), String> {
        self.count(token);
        match self.constraint.as_mut() {
            Some(c) => c.accept(token),
            None => Ok(()),
        }
    }

    fn count(&mut self, token: i32) {
        *self.counts.entry(token).or_insert(0) += 1;
        if self.recent.len() == REPEAT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Choose the next token from `logits`; `top_logprobs` = `Some(k)` also returns the
    /// chosen token's log-probability and the `k` best alternatives.
    pub fn sample(&mut self, logits: &[f32], top_logprobs: Option<u32>) -> Sampled {
        let mut grammar_error = None;
        let constrained = self.constraint.as_ref().is_some_and(Constraint::is_active);
        let token = if constrained || self.needs_transform() {
            let mut work = std::mem::take(&mut self.work);
            work.clear();
            work.extend_from_slice(logits);
            self.apply_penalties(&mut work);
            if let Some(c) = self.constraint.as_mut()
                && let Err(e) = c.apply(&mut work)
            {
                grammar_error = Some(e);
            }
            let t = self.choose(&work);
            self.work = work;
            t
        } else {
            self.choose(logits)
        };
        let (logprob, top) = match top_logprobs {
            None => (None, Vec::new()),
            Some(k) => {
                let lse = log_sum_exp(logits);
                let lp = logits
                    .get(token as usize)
                    .map_or(f32::NEG_INFINITY, |l| l - lse);
                let top = top_k_indices(logits, k as usize)
                    .into_iter()
                    .map(|i| (i as i32, logits[i] - lse))
                    .collect();
                (Some(lp), top)
            }
        };
        Sampled {
            token,
            logprob,
            top,
            grammar_error,
        }
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(tok, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(tok as usize) {
                *l += bias;
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            for (&tok, &c) in &self.counts {
                if let Some(l) = logits.get_mut(tok as usize) {
                    *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
            let mut seen = std::collections::HashSet::new();
            for &tok in &self.recent {
                if seen.insert(tok)
                    && let Some(l) = logits.get_mut(tok as usize)
                {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
    }

    fn choose(&mut self, logits: &[f32]) -> i32 {
        let p = &self.params;
        if p.temperature <= 0.0 || p.top_k == 1 || logits.len() < 2 {
            return argmax(logits) as i32;
        }
        let inv_t = 1.0 / p.temperature;
        let full = p.top_k == 0 && p.top_p >= 1.0 && p.min_p <= 0.0;
        if full {
            // Sample from the whole distribution in O(vocab), no sorting.
            let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = logits.iter().map(|l| ((l - m) * inv_t).exp()).sum();
            let mut r = self.rng.random::<f32>() * total;
            for (i, l) in logits.iter().enumerate() {
                r -= ((l - m) * inv_t).exp();
                if r <= 0.0 {
                    return i as i32;
                }
            }
            return argmax(logits) as i32;
        }
        let keep = if p.top_k > 0 {
            (p.top_k as usize).min(logits.len())
        } else {
            NUCLEUS_CANDIDATES.min(logits.len())
        };
        let mut idx = std::mem::take(&mut self.idx);
        idx.clear();
        idx.extend(0..logits.len() as u32);
        if keep < idx.len() {
            idx.select_nth_unstable_by(keep - 1, |a, b| {
                logits[*b as usize].total_cmp(&logits[*a as usize])
            });
            idx.truncate(keep);
        }
        idx.sort_unstable_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
        let m = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - m) * inv_t).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        let mut n = probs.len();
        if p.min_p > 0.0 {
            let floor = p.min_p * probs[0];
            n = probs.iter().take_while(|&&x| x >= floor).count().max(1);
        }
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut k = 0;
            while k < n {
                cum += probs[k];
                k += 1;
                if cum >= p.top_p {
                    break;
                }
            }
            n = k.max(1);
        }
        let total: f32 = probs[..n].iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        let mut chosen = idx[0];
        for k in 0..n {
            r -= probs[k];
            if r <= 0.0 {
                chosen = idx[k];
                break;
            }
        }
        self.idx = idx;
        chosen as i32
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in xs.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best
}

/// log(Σ exp(x)) computed stably.
pub fn log_sum_exp(xs: &[f32]) -> f32 {
    let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return m;
    }
    let s: f32 = xs.iter().map(|x| (x - m).exp()).sum();
    m + s.ln()
}

/// Indices of the `k` largest values, best first.
pub fn top_k_indices(xs: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(xs.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |a, b| xs[*b].total_cmp(&xs[*a]));
        idx.truncate(k);
    }
    idx.sort_unstable_by(|a, b| xs[*b].total_cmp(&xs[*a]));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn greedy_picks_argmax_and_reports_logprobs() {
        let mut s = Sampler::new(&params(|p| p.temperature = 0.0), 1);
        let logits = [0.0, 2.0, 1.0];
        let r = s.sample(&logits, Some(2));
        assert_eq!(r.token, 1);
        let lse = (1.0f32 + 2f32.exp() + 1f32.exp()).ln();
        assert!((r.logprob.unwrap_or(0.0) - (2.0 - lse)).abs() < 1e-5);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn seeded_sampling_is_deterministic() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37 % 101) as f32) / 20.0).collect();
        let p = params(|p| {
            p.temperature = 0.8;
            p.top_p = 0.9;
            p.seed = Some(42);
        });
        let mut a = Sampler::new(&p, 0);
        let mut b = Sampler::new(&p, 0);
        let xs: Vec<i32> = (0..20).map(|_| a.sample(&logits, None).token).collect();
        let ys: Vec<i32> = (0..20).map(|_| b.sample(&logits, None).token).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_restricts() {
        let logits = [1.0, 5.0, 4.9, -3.0];
        let mut s = Sampler::new(&params(|p| p.top_k = 1), 3);
        for _ in 0..10 {
            assert_eq!(s.sample(&logits, None).token, 1);
        }
        let mut s = Sampler::new(&params(|p| p.top_p = 0.5), 3);
        for _ in 0..50 {
            assert_eq!(
                s.sample(&logits, None).token,
                1,
                "only the top token fits in p=0.5"
            );
        }
        let mut s = Sampler::new(&params(|p| p.min_p = 0.5), 3);
        for _ in 0..50 {
            let t = s.sample(&logits, None).token;
            assert!(t == 1 || t == 2);
        }
    }

    #[test]
    fn penalties_and_bias_change_choice() {
        let logits = [1.0, 1.5];
        let mut s = Sampler::new(
            &params(|p| {
                p.temperature = 0.0;
                p.presence_penalty = 1.0;
            }),
            0,
        );
        assert_eq!(s.sample(&logits, None).token, 1);
        assert!(s.accept(1).is_ok());
        assert_eq!(
            s.sample(&logits, None).token,
            0,
            "presence penalty pushes token 1 below 0"
        );
        let mut s = Sampler::new(
            &params(|p| {
                p.temperature = 0.0;
                p.logit_bias = vec![(0, 10.0)];
            }),
            0,
        );
        assert_eq!(s.sample(&logits, None).token, 0);
        let mut s = Sampler::new(
            &params(|p| {
                p.temperature = 0.0;
                p.repeat_penalty = 2.0;
            }),
            0,
        );
        assert!(s.accept(1).is_ok());
        assert_eq!(s.sample(&logits, None).token, 0);
    }

    #[test]
    fn full_distribution_sampling_follows_probabilities() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut s = Sampler::new(&params(|p| p.seed = Some(7)), 0);
        let ones = (0..4000)
            .filter(|_| s.sample(&logits, None).token == 1)
            .count();
        assert!(
            (2800..3200).contains(&ones),
            "{ones} of 4000, expected ~3000"
        );
    }
}
