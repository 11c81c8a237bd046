//! RouteLLM's own scoring protocol (Ong et al. 2024, `routellm/evals`), so that our numbers
//! compare with the paper's: thresholds at the deciles of the router's scores (11 edges,
//! linearly interpolated percentiles), a prompt goes to the strong model when its score is
//! ≥ the threshold, quality = mean outcome of the chosen model, AUC of quality over the
//! strong share by trapezoids, APGR = (AUC − weak) / (strong − weak).
//!
//! One addition: when even the top decile sends some prompts to the strong model (tied
//! scores), the all-weak point (share 0) is added, so the area always spans [0, 1].
//!
//! This differs from [`crate::metrics::apgr`] (every distinct score a threshold, exact
//! area from share 0): on a few thousand prompts the two agree to about 0.01.

use serde::Serialize;

use crate::error::EvalError;
use crate::metrics::{self, Curve, RouterKind, Sample};

/// The scores of one router on one set of prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Prompts scored.
    pub n: usize,
    /// Quality of the weak model alone.
    pub weak: f64,
    /// Quality of the strong model alone.
    pub strong: f64,
    /// APGR by the decile protocol; `None` when both models score alike.
    pub apgr: Option<f64>,
    /// Smallest strong share recovering 50% of the gap (interpolated).
    pub cpt50: Option<f64>,
    /// … and 80%.
    pub cpt80: Option<f64>,
    /// Smallest strong share at which quality reaches 95% of the strong model's
    /// (interpolated between decile points); `None` if never reached.
    pub strong_share_for_95: Option<f64>,
}

/// The linearly interpolated `q`-quantile (0..=1) of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let k = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (k.floor() as usize, k.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo as f64)
}

/// The 11 operating points at the deciles of `scores`, by increasing strong share.
pub fn decile_curve(samples: &[Sample], scores: &[f64]) -> Result<Curve, EvalError> {
    // The all-weak point first: it also validates the samples and the scores' length.
    let all_weak = metrics::evaluate(samples, scores, f64::INFINITY, RouterKind::Route)?;
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut points = Vec::with_capacity(12);
    for d in 0..=10 {
        let t = quantile(&sorted, f64::from(d) / 10.0);
        points.push(metrics::evaluate(samples, scores, t, RouterKind::Route)?);
    }
    // The top decile sends the prompts scoring the maximum: one prompt when scores are
    // distinct, many when they tie (an oracle's −1/0/1). The all-weak endpoint keeps the
    // area over the whole [0, 1] of strong shares either way.
    if points.iter().all(|p| p.llm_share > 0.0) {
        points.push(all_weak);
    }
    points.sort_by(|a, b| a.llm_share.total_cmp(&b.llm_share));
    Ok(Curve { points })
}

/// Scores a router (`scores`: higher = more in need of the strong model) on `samples`.
pub fn score(samples: &[Sample], scores: &[f64]) -> Result<Score, EvalError> {
    let curve = decile_curve(samples, scores)?;
    let s = metrics::summary(samples)?;
    let (weak, strong) = (s.slm_only.quality, s.llm_only.quality);
    let target = 0.95 * strong;
    let pts = &curve.points;
    let strong_share_for_95 = if pts[0].quality >= target {
        Some(pts[0].llm_share)
    } else {
        pts.windows(2).find_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            (a.quality < target && b.quality >= target).then(|| {
                a.llm_share
                    + (target - a.quality) * (b.llm_share - a.llm_share) / (b.quality - a.quality)
            })
        })
    };
    Ok(Score {
        n: samples.len(),
        weak,
        strong,
        // The curve spans shares 0 and 1, so this is the trapezoid area of PGR, i.e.
        // (AUC of quality − weak) / (strong − weak).
        apgr: metrics::apgr(&curve),
        cpt50: metrics::cpt(&curve, 0.5),
        cpt80: metrics::cpt(&curve, 0.8),
        strong_share_for_95,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(weak: f64, strong: f64) -> Sample {
        Sample {
            id: String::new(),
            slm_quality: weak,
            llm_quality: strong,
            slm_cost: 0.0,
            llm_cost: 0.0,
            slm_latency_ms: 0.0,
            llm_latency_ms: 0.0,
            slm_score: 0.0,
        }
    }

    /// 10 prompts: the strong model wins on 4, the weak on none.
    fn set() -> Vec<Sample> {
        (0..10)
            .map(|i| sample(0.0, if i < 4 { 1.0 } else { 0.0 }))
            .collect()
    }

    #[test]
    fn an_oracle_beats_random_and_a_reversed_router_loses() {
        let s = set();
        let oracle: Vec<f64> = (0..10).map(|i| -(i as f64)).collect();
        let reversed: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let good = score(&s, &oracle).expect("scored");
        let bad = score(&s, &reversed).expect("scored");
        assert_eq!((good.weak, good.strong, good.n), (0.0, 0.4, 10));
        let (g, b) = (good.apgr.expect("defined"), bad.apgr.expect("defined"));
        assert!(g > 0.75 && b < 0.25, "oracle {g}, reversed {b}");
        // The oracle reaches 95% of the strong quality (0.38) just below 40% strong calls.
        let share = good.strong_share_for_95.expect("reached");
        assert!((0.3..=0.4).contains(&share), "{share}");
        assert!(bad.strong_share_for_95.expect("reached") > 0.9);
        assert!(good.cpt50.expect("reached") < bad.cpt50.expect("reached"));
    }

    #[test]
    fn tied_scores_keep_the_all_weak_endpoint() {
        let s = set();
        // An oracle with ties: the four strong wins score 1, the rest 0.
        let tied: Vec<f64> = (0..10).map(|i| if i < 4 { 1.0 } else { 0.0 }).collect();
        let c = decile_curve(&s, &tied).expect("curve");
        assert_eq!(c.points[0].llm_share, 0.0);
        let apgr = score(&s, &tied).expect("scored").apgr.expect("defined");
        assert!(apgr > 0.75, "{apgr}");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.5) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn mismatched_scores_are_an_error() {
        assert!(decile_curve(&set(), &[0.5]).is_err());
        assert!(decile_curve(&[], &[]).is_err());
    }

    #[test]
    fn equal_models_have_no_apgr() {
        let s = vec![sample(1.0, 1.0), sample(0.0, 0.0)];
        assert_eq!(score(&s, &[0.1, 0.9]).expect("scored").apgr, None);
    }
}
