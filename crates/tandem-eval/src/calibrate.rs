//! Picking a router threshold on a dev split and applying it to a test split.

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::metrics::{Curve, Point, RouterKind, Sample, evaluate};

/// Slack for comparing qualities computed by different summation orders.
const EPS: f64 = 1e-9;

/// What the calibrated router must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    /// Keep at least this fraction of the LLM-only quality (`quality ≥ f · q_llm`) with the
    /// smallest LLM share.
    QualityFraction(f64),
    /// Recover at least this share of the gap (`quality ≥ q_slm + x · (q_llm − q_slm)`)
    /// with the smallest LLM share.
    Pgr(f64),
    /// The best quality with at most this LLM share (a budget).
    MaxLlmShare(f64),
}

/// A threshold chosen on a dev curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The target it was chosen for.
    pub target: Target,
    /// The quality the target required (`None` for [`Target::MaxLlmShare`]).
    pub required_quality: Option<f64>,
    /// `score >= threshold` → LLM (`+inf`: never).
    #[serde(with = "crate::metrics::threshold_serde")]
    pub threshold: f64,
    /// The chosen point on the dev curve.
    pub dev: Point,
}

/// Chooses the dev-curve point meeting `target`.
///
/// For the quality targets: among points with `quality ≥ required` (1e-9 slack), the one
/// with the smallest LLM share, ties broken by higher quality then lower cost. For
/// [`Target::MaxLlmShare`]: among points with `llm_share ≤ budget`, the best quality, ties
/// broken by smaller share then lower cost. `None` when no point qualifies (or the curve is
/// empty, or the target value is not finite).
pub fn calibrate(
    dev_curve: &Curve,
    llm_only_quality: f64,
    slm_only_quality: f64,
    target: Target,
) -> Option<Calibration> {
    let (required, budget) = match target {
        Target::QualityFraction(f) => (Some(f * llm_only_quality), None),
        Target::Pgr(x) => (
            Some(slm_only_quality + x * (llm_only_quality - slm_only_quality)),
            None,
        ),
        Target::MaxLlmShare(s) => (None, Some(s)),
    };
    if !required.or(budget).is_some_and(f64::is_finite) {
        return None;
    }
    let pts = dev_curve.points.iter();
    let best = if let Some(req) = required {
        pts.filter(|p| p.quality >= req - EPS).min_by(|a, b| {
            a.llm_share
                .total_cmp(&b.llm_share)
                .then(b.quality.total_cmp(&a.quality))
                .then(a.cost_per_request.total_cmp(&b.cost_per_request))
        })
    } else {
        let budget = budget.unwrap_or(0.0);
        pts.filter(|p| p.llm_share <= budget + EPS).min_by(|a, b| {
            b.quality
                .total_cmp(&a.quality)
                .then(a.llm_share.total_cmp(&b.llm_share))
                .then(a.cost_per_request.total_cmp(&b.cost_per_request))
        })
    }?;
    Some(Calibration {
        target,
        required_quality: required,
        threshold: best.threshold,
        dev: best.clone(),
    })
}

/// The operating point of `threshold` on test samples and scores (see
/// [`crate::metrics::evaluate`]): LLM share, quality, cost, latency and PGR on the test
/// split.
pub fn apply(
    threshold: f64,
    samples: &[Sample],
    scores: &[f64],
    kind: RouterKind,
) -> Result<Point, EvalError> {
    evaluate(samples, scores, threshold, kind)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::{curve, summary};

    fn s(slm: f64, llm: f64) -> Sample {
        Sample {
            id: String::new(),
            slm_quality: slm,
            llm_quality: llm,
            slm_cost: 0.0,
            llm_cost: 0.01,
            slm_latency_ms: 10.0,
            llm_latency_ms: 100.0,
            slm_score: 0.0,
        }
    }

    /// Ten samples: the LLM is right on 9 (q_llm 0.9), the SLM on 5 (q_slm 0.5). Scores
    /// rank the SLM's failures where the LLM is right first, then the one both fail on.
    fn dev() -> (Vec<Sample>, Vec<f64>) {
        let samples = vec![
            s(0.0, 1.0), // 0.95
            s(0.0, 1.0), // 0.90
            s(0.0, 1.0), // 0.85
            s(0.0, 1.0), // 0.80
            s(0.0, 0.0), // 0.75: both wrong
            s(1.0, 1.0), // 0.30
            s(1.0, 1.0), // 0.20
            s(1.0, 1.0), // 0.10
            s(1.0, 1.0), // 0.05
            s(1.0, 1.0), // 0.01
        ];
        let scores = vec![0.95, 0.9, 0.85, 0.8, 0.75, 0.3, 0.2, 0.1, 0.05, 0.01];
        (samples, scores)
    }

    #[test]
    fn quality_fraction_picks_smallest_share() {
        let (samples, scores) = dev();
        let c = curve(&samples, &scores, RouterKind::Route).unwrap();
        let sum = summary(&samples).unwrap();
        assert!((sum.llm_only.quality - 0.9).abs() < 1e-12);
        // 95% of 0.9 = 0.855: qualities by share are 0.5, 0.6, 0.7, 0.8, 0.9 (share 0.4).
        let cal = calibrate(
            &c,
            sum.llm_only.quality,
            sum.slm_only.quality,
            Target::QualityFraction(0.95),
        )
        .unwrap();
        assert!((cal.dev.llm_share - 0.4).abs() < 1e-12);
        assert!((cal.dev.quality - 0.9).abs() < 1e-12);
        assert_eq!(cal.threshold, 0.8);
        assert!((cal.required_quality.unwrap() - 0.855).abs() < 1e-12);
        // 75% of 0.9 = 0.675 → share 0.2 (quality 0.7).
        let cal = calibrate(&c, 0.9, 0.5, Target::QualityFraction(0.75)).unwrap();
        assert_eq!(cal.threshold, 0.9);
        // Already met by the SLM alone → threshold +inf (never escalate).
        let cal = calibrate(&c, 0.9, 0.5, Target::QualityFraction(0.5)).unwrap();
        assert_eq!(cal.threshold, f64::INFINITY);
        assert_eq!(cal.dev.llm_share, 0.0);
        // Unreachable.
        assert!(calibrate(&c, 0.9, 0.5, Target::QualityFraction(1.1)).is_none());
        assert!(calibrate(&c, 0.9, 0.5, Target::QualityFraction(f64::NAN)).is_none());
        assert!(calibrate(&Curve::default(), 0.9, 0.5, Target::QualityFraction(0.9)).is_none());
    }

    #[test]
    fn pgr_and_budget_targets() {
        let (samples, scores) = dev();
        let c = curve(&samples, &scores, RouterKind::Route).unwrap();
        // PGR 50%: quality ≥ 0.7 → share 0.2.
        let cal = calibrate(&c, 0.9, 0.5, Target::Pgr(0.5)).unwrap();
        assert!((cal.dev.llm_share - 0.2).abs() < 1e-12);
        // Budget 35% of calls: best quality at share ≤ 0.35 is 0.8 at share 0.3.
        let cal = calibrate(&c, 0.9, 0.5, Target::MaxLlmShare(0.35)).unwrap();
        assert!((cal.dev.llm_share - 0.3).abs() < 1e-12);
        assert!((cal.dev.quality - 0.8).abs() < 1e-12);
        assert_eq!(cal.required_quality, None);
        // Budget 100%: quality 0.9 first reached at share 0.4 (ties → smaller share).
        let cal = calibrate(&c, 0.9, 0.5, Target::MaxLlmShare(1.0)).unwrap();
        assert!((cal.dev.llm_share - 0.4).abs() < 1e-12);
    }

    #[test]
    fn apply_on_test_split() {
        let (samples, scores) = dev();
        let c = curve(&samples, &scores, RouterKind::Cascade).unwrap();
        let cal = calibrate(&c, 0.9, 0.5, Target::QualityFraction(0.95)).unwrap();
        assert_eq!(cal.threshold, 0.8);
        // Test split: three samples above the threshold, one of them useless to escalate.
        let test = vec![s(0.0, 1.0), s(1.0, 1.0), s(0.0, 1.0), s(1.0, 0.0)];
        let test_scores = [0.99, 0.85, 0.5, 0.1];
        let p = apply(cal.threshold, &test, &test_scores, RouterKind::Cascade).unwrap();
        assert!((p.llm_share - 0.5).abs() < 1e-12);
        // Chosen: LLM 1, LLM 1, SLM 0, SLM 1 → 0.75; q_weak 0.5, q_strong 0.75 → PGR 1.
        assert!((p.quality - 0.75).abs() < 1e-12);
        assert!((p.pgr.unwrap() - 1.0).abs() < 1e-12);
        // Cascade cost: two escalations at 0.01 over four requests.
        assert!((p.cost_per_request - 0.005).abs() < 1e-12);
        assert!((p.latency_ms_per_request - (40.0 + 200.0) / 4.0).abs() < 1e-9);
        // Errors, not panics.
        assert!(apply(0.5, &test, &test_scores[..2], RouterKind::Route).is_err());
        assert!(apply(0.5, &[], &[], RouterKind::Route).is_err());
        // +inf: nothing escalated.
        let p = apply(f64::INFINITY, &test, &test_scores, RouterKind::Route).unwrap();
        assert_eq!(p.llm_share, 0.0);
    }

    #[test]
    fn target_json_shape() {
        let j = serde_json::to_string(&Target::QualityFraction(0.95)).unwrap();
        assert_eq!(j, r#"{"kind":"quality_fraction","value":0.95}"#);
        let back: Target = serde_json::from_str(&j).unwrap();
        assert_eq!(back, Target::QualityFraction(0.95));
    }
}
