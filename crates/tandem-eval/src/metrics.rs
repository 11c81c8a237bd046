//! RouteLLM-style cost–quality metrics (Ong et al. 2024, "RouteLLM: Learning to Route LLMs
//! with Preference Data").
//!
//! With `q_weak` the mean quality of the SLM alone and `q_strong` that of the LLM alone,
//! a router reaching quality `q` has PGR = (q − q_weak) / (q_strong − q_weak). The curve of
//! PGR against the share of calls to the LLM gives APGR (area under it over [0, 1]; 0.5 for
//! random routing) and CPT(x%) (the smallest LLM share reaching PGR x%).
//!
//! When `q_strong == q_weak` (within 1e-12) PGR is undefined: every point's `pgr` is `None`
//! and so are APGR and CPT; no NaN is ever produced.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EvalError;

/// One evaluated item: both models' quality, cost and latency on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Item id.
    pub id: String,
    /// The SLM answer's quality, 0..=1 (1 = correct).
    pub slm_quality: f64,
    /// The LLM answer's quality, 0..=1.
    pub llm_quality: f64,
    /// Cost of the SLM call in USD.
    pub slm_cost: f64,
    /// Cost of the LLM call in USD.
    pub llm_cost: f64,
    /// SLM latency in ms.
    pub slm_latency_ms: f64,
    /// LLM latency in ms.
    pub llm_latency_ms: f64,
    /// A score the SLM gave itself (e.g. a cascade confidence); not used by these metrics.
    #[serde(default)]
    pub slm_score: f64,
}

/// How escalated requests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// The router picks one model before any call: an escalated request costs the LLM only.
    Route,
    /// The SLM always answers first; an escalated request costs SLM + LLM (cost and latency).
    Cascade,
}

/// One operating point of a router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Requests with `score >= threshold` go to the LLM. `+inf` (serialised as the string
    /// `"inf"`) sends nothing. On a random-routing curve: `1 − llm_share`, the threshold of
    /// uniform random scores.
    #[serde(with = "threshold_serde")]
    pub threshold: f64,
    /// Share of requests answered by the LLM, 0..=1.
    pub llm_share: f64,
    /// Mean quality of the chosen answers.
    pub quality: f64,
    /// Mean cost per request, USD.
    pub cost_per_request: f64,
    /// Mean latency per request, ms.
    pub latency_ms_per_request: f64,
    /// Performance gap recovered; `None` when `q_strong == q_weak`.
    pub pgr: Option<f64>,
}

/// A router's operating points, ordered by increasing LLM share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Curve {
    /// The points.
    pub points: Vec<Point>,
}

/// Mean quality, cost and latency of one model answering everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Mean quality (accuracy for 0/1 qualities).
    pub quality: f64,
    /// Mean cost per request, USD.
    pub cost_per_request: f64,
    /// Mean latency per request, ms.
    pub latency_ms_per_request: f64,
}

/// SLM-only and LLM-only baselines of a sample set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Everything on the SLM.
    pub slm_only: ModelSummary,
    /// Everything on the LLM.
    pub llm_only: ModelSummary,
}

/// Serde for thresholds: finite values as numbers, `±inf` as the strings `"inf"`/`"-inf"`
/// (JSON has no infinity).
pub(crate) mod threshold_serde {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(v),
            Repr::Text(t) if t == "inf" => Ok(f64::INFINITY),
            Repr::Text(t) if t == "-inf" => Ok(f64::NEG_INFINITY),
            Repr::Text(t) => Err(serde::de::Error::custom(format!("bad threshold `{t}`"))),
        }
    }
}

fn check_unit(what: &str, i: usize, v: f64) -> Result<(), EvalError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(EvalError::invalid(
            format!("sample {i} {what}"),
            format!("{v} is not in 0..=1"),
        ))
    }
}

fn check_nonneg(what: &str, i: usize, v: f64) -> Result<(), EvalError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(EvalError::invalid(
            format!("sample {i} {what}"),
            format!("{v} is not a finite non-negative number"),
        ))
    }
}

/// Checks that samples are non-empty with qualities in 0..=1 and finite non-negative
/// costs and latencies.
pub fn validate_samples(samples: &[Sample]) -> Result<(), EvalError> {
    if samples.is_empty() {
        return Err(EvalError::Empty("samples"));
    }
    for (i, s) in samples.iter().enumerate() {
        check_unit("slm_quality", i, s.slm_quality)?;
        check_unit("llm_quality", i, s.llm_quality)?;
        check_nonneg("slm_cost", i, s.slm_cost)?;
        check_nonneg("llm_cost", i, s.llm_cost)?;
        check_nonneg("slm_latency_ms", i, s.slm_latency_ms)?;
        check_nonneg("llm_latency_ms", i, s.llm_latency_ms)?;
    }
    Ok(())
}

fn validate_scores(samples: &[Sample], scores: &[f64]) -> Result<(), EvalError> {
    validate_samples(samples)?;
    if scores.len() != samples.len() {
        return Err(EvalError::LengthMismatch {
            what: "scores",
            expected: samples.len(),
            got: scores.len(),
        });
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(EvalError::invalid(
            format!("score {i}"),
            format!("{} is not finite", scores[i]),
        ));
    }
    Ok(())
}

/// SLM-only and LLM-only means.
pub fn summary(samples: &[Sample]) -> Result<Summary, EvalError> {
    validate_samples(samples)?;
    let n = samples.len() as f64;
    let mean = |f: fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>() / n;
    Ok(Summary {
        n: samples.len(),
        slm_only: ModelSummary {
            quality: mean(|s| s.slm_quality),
            cost_per_request: mean(|s| s.slm_cost),
            latency_ms_per_request: mean(|s| s.slm_latency_ms),
        },
        llm_only: ModelSummary {
            quality: mean(|s| s.llm_quality),
            cost_per_request: mean(|s| s.llm_cost),
            latency_ms_per_request: mean(|s| s.llm_latency_ms),
        },
    })
}

/// PGR of quality `q` between `q_weak` and `q_strong`; `None` when they are equal.
pub fn pgr(q: f64, q_weak: f64, q_strong: f64) -> Option<f64> {
    let gap = q_strong - q_weak;
    (gap.abs() > 1e-12).then(|| (q - q_weak) / gap)
}

/// Running sums of the chosen answers.
#[derive(Default)]
struct Totals {
    quality: f64,
    cost: f64,
    latency: f64,
    escalated: usize,
}

impl Totals {
    fn all_slm(samples: &[Sample]) -> Self {
        let mut t = Totals::default();
        for s in samples {
            t.quality += s.slm_quality;
            t.cost += s.slm_cost;
            t.latency += s.slm_latency_ms;
        }
        t
    }

    /// Moves one sample from the SLM to the LLM.
    fn escalate(&mut self, s: &Sample, kind: RouterKind) {
        self.quality += s.llm_quality - s.slm_quality;
        match kind {
            RouterKind::Route => {
                self.cost += s.llm_cost - s.slm_cost;
                self.latency += s.llm_latency_ms - s.slm_latency_ms;
            }
            RouterKind::Cascade => {
                self.cost += s.llm_cost;
                self.latency += s.llm_latency_ms;
            }
        }
        self.escalated += 1;
    }

    fn point(&self, threshold: f64, n: usize, q_weak: f64, q_strong: f64) -> Point {
        let nf = n as f64;
        let quality = self.quality / nf;
        Point {
            threshold,
            llm_share: self.escalated as f64 / nf,
            quality,
            cost_per_request: self.cost / nf,
            latency_ms_per_request: self.latency / nf,
            pgr: pgr(quality, q_weak, q_strong),
        }
    }
}

/// The curve of a router given as one score per sample (higher = more in need of the LLM).
///
/// Sweeps every distinct score as a threshold (`score >= threshold` → LLM), from the
/// all-SLM endpoint (threshold `+inf`) to the all-LLM one (threshold = the lowest score):
/// `1 + distinct scores` points, LLM share increasing. Samples with equal scores always move
/// together, so the curve does not depend on sample order.
pub fn curve(samples: &[Sample], scores: &[f64], kind: RouterKind) -> Result<Curve, EvalError> {
    validate_scores(samples, scores)?;
    let sum = summary(samples)?;
    let (q_weak, q_strong) = (sum.slm_only.quality, sum.llm_only.quality);
    let n = samples.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut totals = Totals::all_slm(samples);
    let mut points = vec![totals.point(f64::INFINITY, n, q_weak, q_strong)];
    let mut i = 0;
    while i < n {
        let threshold = scores[order[i]];
        while i < n && scores[order[i]] == threshold {
            totals.escalate(&samples[order[i]], kind);
            i += 1;
        }
        points.push(totals.point(threshold, n, q_weak, q_strong));
    }
    Ok(Curve { points })
}

/// The operating point of a fixed threshold: `score >= threshold` → LLM.
pub fn evaluate(
    samples: &[Sample],
    scores: &[f64],
    threshold: f64,
    kind: RouterKind,
) -> Result<Point, EvalError> {
    validate_scores(samples, scores)?;
    if threshold.is_nan() {
        return Err(EvalError::invalid("threshold", "NaN"));
    }
    let sum = summary(samples)?;
    let mut totals = Totals::all_slm(samples);
    for (s, &score) in samples.iter().zip(scores) {
        if score >= threshold {
            totals.escalate(s, kind);
        }
    }
    Ok(totals.point(
        threshold,
        samples.len(),
        sum.slm_only.quality,
        sum.llm_only.quality,
    ))
}

/// The expected curve of random routing (route kind) at LLM shares 0, 0.1, …, 1: quality,
/// cost and latency linear between SLM-only and LLM-only, so PGR = share.
pub fn random_curve(samples: &[Sample]) -> Result<Curve, EvalError> {
    random_curve_for(samples, RouterKind::Route)
}

/// [`random_curve`] for either kind: for a cascade the SLM's cost and latency are paid on
/// every request.
pub fn random_curve_for(samples: &[Sample], kind: RouterKind) -> Result<Curve, EvalError> {
    let sum = summary(samples)?;
    let (slm, llm) = (&sum.slm_only, &sum.llm_only);
    let points = (0..=10)
        .map(|i| {
            let share = i as f64 / 10.0;
            let lerp = |a: f64, b: f64| a + share * (b - a);
            let quality = lerp(slm.quality, llm.quality);
            let (cost, latency) = match kind {
                RouterKind::Route => (
                    lerp(slm.cost_per_request, llm.cost_per_request),
                    lerp(slm.latency_ms_per_request, llm.latency_ms_per_request),
                ),
                RouterKind::Cascade => (
                    slm.cost_per_request + share * llm.cost_per_request,
                    slm.latency_ms_per_request + share * llm.latency_ms_per_request,
                ),
            };
            Point {
                threshold: 1.0 - share,
                llm_share: share,
                quality,
                cost_per_request: cost,
                latency_ms_per_request: latency,
                pgr: pgr(quality, slm.quality, llm.quality),
            }
        })
        .collect();
    Ok(Curve { points })
}

/// `(llm_share, pgr)` sorted by share, keeping the best PGR at each share (the upper
/// envelope of points sharing a share); `None` if any PGR is undefined or the curve is
/// empty.
fn pgr_envelope(curve: &Curve) -> Option<Vec<(f64, f64)>> {
    let mut pts: Vec<(f64, f64)> = curve
        .points
        .iter()
        .map(|p| Some((p.llm_share, p.pgr?)))
        .collect::<Option<_>>()?;
    if pts.is_empty() {
        return None;
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    pts.dedup_by(|later, earlier| later.0 == earlier.0); // keeps the first = best PGR
    Some(pts)
}

/// APGR: the trapezoid integral of PGR over the LLM share on [0, 1].
///
/// Points are sorted by share and, where several share one LLM share, the best PGR is
/// kept (upper envelope per share); no convex hull is taken, so the value is what the
/// router's own thresholds achieve. This is the exact area of the piecewise-linear curve
/// (the paper approximates it on a 10-interval grid). The curve must span shares 0 and 1
/// (as [`curve`] and [`random_curve`] do), otherwise `None`; `None` also when PGR is
/// undefined. Random routing gives 0.5.
pub fn apgr(curve: &Curve) -> Option<f64> {
    let pts = pgr_envelope(curve)?;
    let (first, last) = (pts.first()?, pts.last()?);
    if first.0 > 1e-12 || last.0 < 1.0 - 1e-12 {
        return None;
    }
    Some(
        pts.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum(),
    )
}

/// CPT: the smallest LLM share at which PGR reaches `target_pgr` (0.5 for CPT(50%)),
/// linearly interpolated between consecutive points of the (share-sorted, per-share best)
/// curve. `None` if the curve never reaches the target or PGR is undefined.
pub fn cpt(curve: &Curve, target_pgr: f64) -> Option<f64> {
    let pts = pgr_envelope(curve)?;
    let first = pts.first()?;
    if first.1 >= target_pgr {
        return Some(first.0);
    }
    pts.windows(2).find_map(|w| {
        let ((s0, p0), (s1, p1)) = (w[0], w[1]);
        (p0 < target_pgr && p1 >= target_pgr)
            .then(|| s0 + (target_pgr - p0) * (s1 - s0) / (p1 - p0))
    })
}

/// How sure an APGR is: a percentile bootstrap over the items (resampled with replacement,
/// the router's curve and APGR recomputed on each resample, SLM-only and LLM-only quality
/// included). On a few dozen items, or where the two models score almost alike, PGR divides
/// by a small gap and APGR swings widely; this says how widely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApgrInterval {
    /// 2.5th percentile of APGR over the resamples where it is defined (APGR is finite
    /// whenever defined).
    pub lo: Option<f64>,
    /// 97.5th percentile.
    pub hi: Option<f64>,
    /// Share of all resamples where APGR exceeds random routing's 0.5 (a resample where it
    /// is undefined counts as not exceeding it).
    pub beats_random: f64,
    /// Number of resamples.
    pub resamples: usize,
    /// Resamples where APGR was undefined (SLM-only and LLM-only quality equal).
    pub undefined: usize,
}

/// SplitMix64: a small deterministic generator, so that a report is reproducible.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The percentile bootstrap of the APGR of the router giving `scores` (see
/// [`ApgrInterval`]), over `resamples` resamples drawn from `seed`.
pub fn apgr_interval(
    samples: &[Sample],
    scores: &[f64],
    kind: RouterKind,
    resamples: usize,
    seed: u64,
) -> Result<ApgrInterval, EvalError> {
    validate_scores(samples, scores)?;
    validate_samples(samples)?;
    if resamples == 0 {
        return Err(EvalError::invalid("resamples", "must be at least 1"));
    }
    let n = samples.len();
    let mut state = seed;
    let mut values = Vec::with_capacity(resamples);
    let (mut picked, mut picked_scores) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..resamples {
        picked.clear();
        picked_scores.clear();
        for _ in 0..n {
            // n is far below 2^32: the modulo bias is negligible.
            let i = (splitmix64(&mut state) % n as u64) as usize;
            picked.push(samples[i].clone());
            picked_scores.push(scores[i]);
        }
        if let Some(a) = apgr(&curve(&picked, &picked_scores, kind)?) {
            values.push(a);
        }
    }
    let undefined = resamples - values.len();
    let beats_random = values.iter().filter(|&&a| a > 0.5).count() as f64 / resamples as f64;
    values.sort_by(f64::total_cmp);
    let at = |q: f64| -> Option<f64> {
        let last = values.len().checked_sub(1)?;
        let pos = q * last as f64;
        let (i, frac) = (pos.floor() as usize, pos - pos.floor());
        let next = values[(i + 1).min(last)];
        Some(values[i] + frac * (next - values[i]))
    };
    Ok(ApgrInterval {
        lo: at(0.025),
        hi: at(0.975),
        beats_random,
        resamples,
        undefined,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, slm_q: f64, llm_q: f64) -> Sample {
        Sample {
            id: id.into(),
            slm_quality: slm_q,
            llm_quality: llm_q,
            slm_cost: 0.0,
            llm_cost: 1.0,
            slm_latency_ms: 100.0,
            llm_latency_ms: 1000.0,
            slm_score: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Four samples: SLM right on 0 and 1, LLM right on 0, 1, 2, 3 → q_weak 0.5,
    /// q_strong 1.0.
    fn four() -> Vec<Sample> {
        vec![
            sample("a", 1.0, 1.0),
            sample("b", 1.0, 1.0),
            sample("c", 0.0, 1.0),
            sample("d", 0.0, 1.0),
        ]
    }

    #[test]
    fn summary_means() {
        let s = summary(&four()).unwrap();
        assert_eq!(s.n, 4);
        assert!(close(s.slm_only.quality, 0.5) && close(s.llm_only.quality, 1.0));
        assert!(close(s.slm_only.cost_per_request, 0.0) && close(s.llm_only.cost_per_request, 1.0));
        assert!(close(s.llm_only.latency_ms_per_request, 1000.0));
    }

    #[test]
    fn perfect_router_curve_apgr_and_cpt() {
        // Scores put the two SLM failures first.
        let c = curve(&four(), &[0.1, 0.2, 0.9, 0.8], RouterKind::Route).unwrap();
        let shares: Vec<f64> = c.points.iter().map(|p| p.llm_share).collect();
        assert_eq!(shares, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let q: Vec<f64> = c.points.iter().map(|p| p.quality).collect();
        assert_eq!(q, vec![0.5, 0.75, 1.0, 1.0, 1.0]);
        let pgr: Vec<f64> = c.points.iter().map(|p| p.pgr.unwrap()).collect();
        assert_eq!(pgr, vec![0.0, 0.5, 1.0, 1.0, 1.0]);
        assert_eq!(c.points[0].threshold, f64::INFINITY);
        assert_eq!(c.points[1].threshold, 0.9);
        assert_eq!(c.points[4].threshold, 0.1);
        assert!(close(c.points[2].cost_per_request, 0.5));
        assert!(close(c.points[2].latency_ms_per_request, 550.0));
        // Area: 0.25·0.25 + 0.25·0.75 + 0.5·1 = 0.75.
        assert!(close(apgr(&c).unwrap(), 0.75));
        assert!(close(cpt(&c, 0.5).unwrap(), 0.25));
        assert!(close(cpt(&c, 0.8).unwrap(), 0.25 + 0.3 * 0.25 / 0.5)); // 0.4, interpolated
        assert!(close(cpt(&c, 1.0).unwrap(), 0.5));
        assert_eq!(cpt(&c, 0.0), Some(0.0));
        assert_eq!(cpt(&c, 1.01), None);
    }

    #[test]
    fn worst_router_and_cascade_costs() {
        let c = curve(&four(), &[0.9, 0.8, 0.1, 0.2], RouterKind::Cascade).unwrap();
        let pgr: Vec<f64> = c.points.iter().map(|p| p.pgr.unwrap()).collect();
        assert_eq!(pgr, vec![0.0, 0.0, 0.0, 0.5, 1.0]);
        // Area: 0.25·0.25 + 0.25·0.75 = 0.25.
        assert!(close(apgr(&c).unwrap(), 0.25));
        // CPT(80%): between (0.75, 0.5) and (1.0, 1.0) → 0.75 + 0.3/0.5·0.25 = 0.9.
        assert!(close(cpt(&c, 0.8).unwrap(), 0.9));
        // Cascade: an escalated request pays both models.
        let all = c.points.last().unwrap();
        assert!(close(all.cost_per_request, 1.0));
        assert!(close(all.latency_ms_per_request, 1100.0));
        let half = &c.points[2];
        assert!(close(half.cost_per_request, 0.5));
        assert!(close(half.latency_ms_per_request, 100.0 + 500.0));
    }

    #[test]
    fn ties_move_together_and_order_does_not_matter() {
        let s = four();
        let c = curve(&s, &[0.5, 0.5, 0.5, 0.1], RouterKind::Route).unwrap();
        let shares: Vec<f64> = c.points.iter().map(|p| p.llm_share).collect();
        assert_eq!(shares, vec![0.0, 0.75, 1.0]);
        // Escalating a, b, c: quality (1 + 1 + 1 + 0)/4.
        assert!(close(c.points[1].quality, 0.75));
        let mut rev = s.clone();
        rev.reverse();
        let c2 = curve(&rev, &[0.1, 0.5, 0.5, 0.5], RouterKind::Route).unwrap();
        assert_eq!(c, c2);
        // All scores equal: only the two endpoints.
        let c3 = curve(&s, &[0.3; 4], RouterKind::Route).unwrap();
        assert_eq!(c3.points.len(), 2);
        assert!(close(apgr(&c3).unwrap(), 0.5));
    }

    #[test]
    fn random_curve_is_linear_with_apgr_half() {
        let r = random_curve(&four()).unwrap();
        assert_eq!(r.points.len(), 11);
        assert!(close(r.points[3].llm_share, 0.3));
        assert!(close(r.points[3].quality, 0.5 + 0.3 * 0.5));
        assert!(close(r.points[3].cost_per_request, 0.3));
        assert!(close(r.points[3].pgr.unwrap(), 0.3));
        assert!(close(r.points[3].threshold, 0.7));
        assert!(close(apgr(&r).unwrap(), 0.5));
        assert!(close(cpt(&r, 0.5).unwrap(), 0.5));
        assert!(close(cpt(&r, 0.85).unwrap(), 0.85));
        let rc = random_curve_for(&four(), RouterKind::Cascade).unwrap();
        assert!(close(rc.points[10].cost_per_request, 1.0));
        assert!(close(rc.points[10].latency_ms_per_request, 1100.0));
    }

    #[test]
    fn envelope_unsorted_points_and_non_monotone_pgr() {
        let p = |share: f64, pgr: f64| Point {
            threshold: 0.0,
            llm_share: share,
            quality: 0.0,
            cost_per_request: 0.0,
            latency_ms_per_request: 0.0,
            pgr: Some(pgr),
        };
        // Unsorted, a duplicate share (best kept), and a dip after overshooting.
        let c = Curve {
            points: vec![
                p(1.0, 1.0),
                p(0.5, 0.2),
                p(0.0, 0.0),
                p(0.5, 1.2),
                p(0.75, 0.9),
            ],
        };
        // Envelope: (0,0) (0.5,1.2) (0.75,0.9) (1,1).
        let area = 0.5 * 1.2 / 2.0 + 0.25 * (1.2 + 0.9) / 2.0 + 0.25 * (0.9 + 1.0) / 2.0;
        assert!(close(apgr(&c).unwrap(), area));
        // First crossing of 0.6: on (0,0)→(0.5,1.2) at 0.25.
        assert!(close(cpt(&c, 0.6).unwrap(), 0.25));
        // A curve not spanning [0, 1] has no APGR.
        let partial = Curve {
            points: vec![p(0.0, 0.0), p(0.5, 0.5)],
        };
        assert_eq!(apgr(&partial), None);
        assert_eq!(apgr(&Curve::default()), None);
        assert_eq!(cpt(&Curve::default(), 0.5), None);
    }

    #[test]
    fn degenerate_gap_gives_no_pgr() {
        let s = vec![sample("a", 1.0, 1.0), sample("b", 0.0, 0.0)];
        let c = curve(&s, &[0.2, 0.1], RouterKind::Route).unwrap();
        assert!(c.points.iter().all(|p| p.pgr.is_none()));
        assert_eq!(apgr(&c), None);
        assert_eq!(cpt(&c, 0.5), None);
        assert_eq!(apgr(&random_curve(&s).unwrap()), None);
        assert_eq!(pgr(0.3, 0.5, 0.5), None);
        assert_eq!(pgr(0.75, 0.5, 1.0), Some(0.5));
    }

    /// Two items, a (both right) and c (only the LLM right), and a perfect router. A
    /// resample of two draws {a,a} (¼: no gap, APGR undefined), {c,c} (¼: both items move
    /// together, APGR 0.5) or a and c (½: APGR 0.75, as in the perfect-router test).
    #[test]
    fn apgr_interval_by_hand() {
        let s = vec![sample("a", 1.0, 1.0), sample("c", 0.0, 1.0)];
        let iv = apgr_interval(&s, &[0.1, 0.9], RouterKind::Route, 4000, 7).unwrap();
        assert_eq!(iv.resamples, 4000);
        let undefined = iv.undefined as f64 / 4000.0;
        assert!((0.22..0.28).contains(&undefined), "{iv:?}");
        assert!((0.47..0.53).contains(&iv.beats_random), "{iv:?}");
        assert_eq!((iv.lo, iv.hi), (Some(0.5), Some(0.75)));
        // Reproducible from the seed.
        assert_eq!(
            apgr_interval(&s, &[0.1, 0.9], RouterKind::Route, 4000, 7).unwrap(),
            iv
        );
        // No gap anywhere: every resample is undefined, and nothing beats random.
        let flat = vec![sample("a", 1.0, 1.0), sample("b", 0.0, 0.0)];
        let iv = apgr_interval(&flat, &[0.1, 0.9], RouterKind::Route, 50, 1).unwrap();
        assert_eq!(
            (iv.lo, iv.hi, iv.undefined, iv.beats_random),
            (None, None, 50, 0.0)
        );
        let json = serde_json::to_string(&iv).unwrap();
        assert!(json.contains("\"lo\":null"), "{json}");
        // Bad input.
        assert!(apgr_interval(&s, &[0.1], RouterKind::Route, 10, 1).is_err());
        assert!(apgr_interval(&s, &[0.1, 0.9], RouterKind::Route, 0, 1).is_err());
        assert!(apgr_interval(&[], &[], RouterKind::Route, 10, 1).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            curve(&[], &[], RouterKind::Route),
            Err(EvalError::Empty(_))
        ));
        assert!(matches!(summary(&[]), Err(EvalError::Empty(_))));
        assert!(matches!(random_curve(&[]), Err(EvalError::Empty(_))));
        assert!(matches!(
            curve(&four(), &[0.1], RouterKind::Route),
            Err(EvalError::LengthMismatch {
                expected: 4,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            curve(&four(), &[0.1, f64::NAN, 0.2, 0.3], RouterKind::Route),
            Err(EvalError::Invalid { .. })
        ));
        let mut bad = four();
        bad[2].llm_quality = 1.5;
        let e = curve(&bad, &[0.0; 4], RouterKind::Route).unwrap_err();
        assert!(e.to_string().contains("sample 2 llm_quality"), "{e}");
        bad[2].llm_quality = 1.0;
        bad[1].llm_cost = -1.0;
        assert!(summary(&bad).is_err());
        assert!(evaluate(&four(), &[0.0; 4], f64::NAN, RouterKind::Route).is_err());
    }

    #[test]
    fn evaluate_matches_curve_points() {
        let scores = [0.1, 0.2, 0.9, 0.8];
        let c = curve(&four(), &scores, RouterKind::Cascade).unwrap();
        for p in &c.points {
            let q = evaluate(&four(), &scores, p.threshold, RouterKind::Cascade).unwrap();
            assert!(close(q.llm_share, p.llm_share));
            assert!(close(q.quality, p.quality));
            assert!(close(q.cost_per_request, p.cost_per_request));
            assert!(close(q.pgr.unwrap(), p.pgr.unwrap()));
        }
    }

    #[test]
    fn point_json_roundtrip_with_infinite_threshold() {
        let c = curve(&four(), &[0.1, 0.2, 0.9, 0.8], RouterKind::Route).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"threshold\":\"inf\""), "{json}");
        let back: Curve = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let s: Sample = serde_json::from_str(
            r#"{"id":"x","slm_quality":1,"llm_quality":0,"slm_cost":0,"llm_cost":0.01,"slm_latency_ms":5,"llm_latency_ms":50}"#,
        )
        .unwrap();
        assert_eq!(s.slm_score, 0.0);
        assert_eq!(
            serde_json::to_string(&RouterKind::Cascade).unwrap(),
            "\"cascade\""
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn curve_invariants(
                rows in prop::collection::vec((0u8..=1, 0u8..=1, 0u8..5), 1..40)
            ) {
                let samples: Vec<Sample> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &(a, b, _))| sample(&i.to_string(), a as f64, b as f64))
                    .collect();
                let scores: Vec<f64> = rows.iter().map(|&(_, _, s)| s as f64).collect();
                let c = curve(&samples, &scores, RouterKind::Route).unwrap();
                let first = &c.points[0];
                let last = c.points.last().unwrap();
                let sum = summary(&samples).unwrap();
                prop_assert_eq!(first.llm_share, 0.0);
                prop_assert!((last.llm_share - 1.0).abs() < 1e-12);
                prop_assert!((first.quality - sum.slm_only.quality).abs() < 1e-9);
                prop_assert!((last.quality - sum.llm_only.quality).abs() < 1e-9);
                for w in c.points.windows(2) {
                    prop_assert!(w[1].llm_share > w[0].llm_share);
                    prop_assert!(w[1].cost_per_request >= w[0].cost_per_request - 1e-12);
                }
                if let Some(a) = apgr(&c) {
                    prop_assert!(a.is_finite());
                }
            }
        }
    }
}
