//! Evaluation reports: JSON (serde), a Markdown table and a self-contained SVG chart.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibration, Target, calibrate};
use crate::metrics::{ApgrInterval, Curve, ModelSummary, Point, RouterKind, apgr, cpt};

/// The quality target of the "best point" column: keep ≥ 95% of the LLM-only quality.
pub const KEEP_QUALITY: f64 = 0.95;

/// A threshold calibrated on a dev split and its operating point on the report's split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedResult {
    /// The threshold and the dev point it was chosen at.
    pub calibration: Calibration,
    /// The same threshold on this report's split.
    pub test: Point,
}

/// One router's results on the report's split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterResult {
    /// Display name.
    pub name: String,
    /// Route or cascade.
    pub kind: RouterKind,
    /// Its cost–quality curve.
    pub curve: Curve,
    /// APGR (`None` when PGR is undefined).
    pub apgr: Option<f64>,
    /// CPT(50%) as an LLM share (0..=1).
    pub cpt50: Option<f64>,
    /// CPT(80%) as an LLM share (0..=1).
    pub cpt80: Option<f64>,
    /// A dev-calibrated threshold applied here, if any.
    pub calibrated: Option<CalibratedResult>,
    /// How sure the APGR is (a bootstrap over the items), when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apgr_interval: Option<ApgrInterval>,
}

impl RouterResult {
    /// A result with APGR and CPT(50%/80%) computed from `curve`, without calibration.
    pub fn new(name: &str, kind: RouterKind, curve: Curve) -> RouterResult {
        RouterResult {
            name: name.to_string(),
            kind,
            apgr: apgr(&curve),
            cpt50: cpt(&curve, 0.5),
            cpt80: cpt(&curve, 0.8),
            curve,
            calibrated: None,
            apgr_interval: None,
        }
    }
}

/// A full evaluation report of several routers on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Dataset name.
    pub dataset: String,
    /// Split name (e.g. `test`).
    pub split: String,
    /// The small model.
    pub slm: String,
    /// The large model.
    pub llm: String,
    /// Number of samples.
    pub n: usize,
    /// Everything on the SLM.
    pub slm_only: ModelSummary,
    /// Everything on the LLM.
    pub llm_only: ModelSummary,
    /// The routers.
    pub routers: Vec<RouterResult>,
    /// Random routing (see [`crate::metrics::random_curve`]).
    pub random: Curve,
}

impl Report {
    /// The point of `curve` keeping ≥ 95% of the LLM-only quality with the fewest LLM calls.
    pub fn keep_quality_point(&self, curve: &Curve) -> Option<Calibration> {
        calibrate(
            curve,
            self.llm_only.quality,
            self.slm_only.quality,
            Target::QualityFraction(KEEP_QUALITY),
        )
    }
}

/// Escapes text for SVG/XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn num(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}"))
}

/// USD with about three significant digits ("$0.000123", "$0.0123", "$1.23").
pub fn fmt_usd(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("${v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(2, 12) as usize;
    format!("${v:.decimals$}")
}

/// The report as Markdown: the two baselines, then one row per router (APGR, CPT(50%),
/// CPT(80%), and the point keeping ≥ 95% of LLM-only quality with the fewest LLM calls),
/// then, if any router has one, the dev-calibrated thresholds applied to this split.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Routing on {} ({}): {} → {}, n = {}\n",
        md(&r.dataset),
        md(&r.split),
        md(&r.slm),
        md(&r.llm),
        r.n
    );
    s.push_str("| baseline | quality | cost/request | latency/request |\n|---|---:|---:|---:|\n");
    for (name, m) in [("SLM only", &r.slm_only), ("LLM only", &r.llm_only)] {
        let _ = writeln!(
            s,
            "| {name} | {:.3} | {} | {:.0} ms |",
            m.quality,
            fmt_usd(m.cost_per_request),
            m.latency_ms_per_request
        );
    }
    let _ = writeln!(
        s,
        "\n| router | kind | APGR (95% CI) | APGR > random | CPT(50%) | CPT(80%) | ≥{:.0}% LLM quality: LLM share | quality | cost/request |\n|---|---|---:|---:|---:|---:|---:|---:|---:|",
        100.0 * KEEP_QUALITY
    );
    let random = RouterResult::new("random", RouterKind::Route, r.random.clone());
    for router in std::iter::once(&random).chain(&r.routers) {
        let best = r.keep_quality_point(&router.curve);
        let kind = match router.kind {
            RouterKind::Route => "route",
            RouterKind::Cascade => "cascade",
        };
        let (interval, beats) = match &router.apgr_interval {
            Some(iv) => (
                match (iv.lo, iv.hi) {
                    (Some(lo), Some(hi)) => format!(" ({lo:.2}–{hi:.2})"),
                    _ => " (undefined)".into(),
                },
                format!("{:.0}% of {}", 100.0 * iv.beats_random, iv.resamples),
            ),
            None => (String::new(), "—".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {kind} | {}{interval} | {beats} | {} | {} | {} | {} | {} |",
            md(&router.name),
            num(router.apgr),
            pct(router.cpt50),
            pct(router.cpt80),
            pct(best.as_ref().map(|b| b.dev.llm_share)),
            num(best.as_ref().map(|b| b.dev.quality)),
            best.as_ref()
                .map_or("—".into(), |b| fmt_usd(b.dev.cost_per_request)),
        );
    }
    if r.routers.iter().any(|x| x.calibrated.is_some()) {
        s.push_str(
            "\nThresholds calibrated on the dev split, applied to this split:\n\n\
             | router | target | threshold | dev LLM share | LLM share | quality | PGR | cost/request |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for router in &r.routers {
            let Some(c) = &router.calibrated else {
                continue;
            };
            let target = match c.calibration.target {
                Target::QualityFraction(f) => format!("≥{:.0}% LLM quality", 100.0 * f),
                Target::Pgr(x) => format!("PGR ≥{:.0}%", 100.0 * x),
                Target::MaxLlmShare(b) => format!("≤{:.0}% LLM calls", 100.0 * b),
            };
            let _ = writeln!(
                s,
                "| {} | {target} | {:.4} | {} | {} | {:.3} | {} | {} |",
                md(&router.name),
                c.calibration.threshold,
                pct(Some(c.calibration.dev.llm_share)),
                pct(Some(c.test.llm_share)),
                c.test.quality,
                pct(c.test.pgr),
                fmt_usd(c.test.cost_per_request),
            );
        }
    }
    s
}

const COLORS: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4",
];

/// Rounds up to 1, 2, 2.5 or 5 times a power of ten.
fn nice(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// One chart panel: its frame in pixels and its data ranges.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x_max: f64,
    y_lo: f64,
    y_hi: f64,
    /// Intervals between horizontal grid lines.
    y_ticks: usize,
}

/// A quality axis `(lo, hi, intervals)` covering `[min, max]` with a little padding, in
/// steps of 0.02, 0.05, 0.1, 0.2, 0.25, 0.5 or 1 (the smallest giving at most 8
/// intervals), clamped to [0, 1] when the data lies there.
fn quality_axis(min: f64, max: f64) -> (f64, f64, usize) {
    let pad = 0.01;
    for step in [0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0] {
        let mut lo = ((min - pad) / step).floor();
        let mut hi = ((max + pad) / step).ceil();
        if min >= 0.0 {
            lo = lo.max(0.0);
        }
        if max <= 1.0 {
            hi = hi.min((1.0 / step).round());
        }
        if hi <= lo {
            hi = lo + 1.0;
        }
        let n = (hi - lo) as usize;
        if n <= 8 {
            return (lo * step, hi * step, n);
        }
    }
    let (lo, hi) = (min.floor(), max.ceil().max(min.floor() + 1.0));
    (lo, hi, 5)
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        self.left + self.width * x / self.x_max
    }
    fn py(&self, y: f64) -> f64 {
        self.top + self.height * (1.0 - (y - self.y_lo) / (self.y_hi - self.y_lo))
    }
    fn coords(&self, pts: &[(f64, f64)]) -> String {
        pts.iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Grid, axes, tick labels and axis titles.
    fn frame(&self, s: &mut String, x_label: &str, x_tick: impl Fn(f64) -> String) {
        let (right, bottom) = (self.left + self.width, self.top + self.height);
        for i in 0..=self.y_ticks {
            let y = self.y_lo + (self.y_hi - self.y_lo) * i as f64 / self.y_ticks as f64;
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{1:.1}\" x2=\"{right:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4:.2}</text>",
                self.left,
                self.py(y),
                self.left - 8.0,
                self.py(y) + 4.0,
                y
            );
        }
        for i in 0..=5 {
            let x = self.x_max * i as f64 / 5.0;
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{bottom:.1}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                self.px(x),
                self.top,
                bottom + 18.0,
                esc(&x_tick(x))
            );
        }
        let mid_y = (self.top + bottom) / 2.0;
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{bottom:.1}\" x2=\"{right:.1}\" y2=\"{bottom:.1}\" stroke=\"black\"/><line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{bottom:.1}\" stroke=\"black\"/>\n\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>\n\
             <text x=\"{5:.1}\" y=\"{mid_y:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {5:.1} {mid_y:.1})\">quality</text>",
            self.left,
            self.top,
            self.left + self.width / 2.0,
            bottom + 38.0,
            esc(x_label),
            self.left - 48.0,
        );
    }

    /// A labelled baseline point.
    fn endpoint(&self, s: &mut String, x: f64, y: f64, label: &str, anchor_end: bool) {
        let (cx, cy) = (self.px(x), self.py(y));
        let (tx, anchor) = if anchor_end {
            (cx - 9.0, "end")
        } else {
            (cx + 9.0, "start")
        };
        let _ = writeln!(
            s,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"black\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            cy - 8.0,
            esc(label)
        );
    }
}

/// A self-contained SVG: quality (y) against the share of LLM calls (x, 0–100%) on the
/// left and against cost per request on the right. One coloured polyline per router and
/// panel, random routing dashed, SLM-only and LLM-only points labelled, and a legend.
pub fn svg_chart(r: &Report) -> String {
    let (w, panel_w, panel_h) = (1100.0f64, 440.0f64, 340.0f64);
    let (top, left1, left2) = (60.0, 80.0, 620.0);
    let legend_rows = (r.routers.len() + 1).div_ceil(4);
    let h = top + panel_h + 70.0 + 22.0 * legend_rows as f64;

    // Data ranges over everything drawn.
    let all_points = r
        .routers
        .iter()
        .flat_map(|x| &x.curve.points)
        .chain(&r.random.points);
    let mut q: Vec<f64> = all_points
        .clone()
        .map(|p| p.quality)
        .chain([r.slm_only.quality, r.llm_only.quality])
        .filter(|v| v.is_finite())
        .collect();
    q.sort_by(f64::total_cmp);
    let (q_min, q_max) = (
        q.first().copied().unwrap_or(0.0),
        q.last().copied().unwrap_or(1.0),
    );
    let (y_lo, y_hi, y_ticks) = quality_axis(q_min, q_max);
    let cost_max = all_points
        .map(|p| p.cost_per_request)
        .chain([r.slm_only.cost_per_request, r.llm_only.cost_per_request])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let share = Panel {
        left: left1,
        top,
        width: panel_w,
        height: panel_h,
        x_max: 1.0,
        y_lo,
        y_hi,
        y_ticks,
    };
    let cost = Panel {
        left: left2,
        x_max: nice(cost_max * 1.05),
        ..share
    };

    let title = format!(
        "Routing on {} ({}): {} → {}, n = {}",
        r.dataset, r.split, r.slm, r.llm, r.n
    );
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        esc(&title)
    );
    share.frame(&mut s, "share of requests sent to the LLM", |x| {
        format!("{:.0}%", 100.0 * x)
    });
    cost.frame(&mut s, "cost per request (USD)", fmt_usd);

    let by_share = |c: &Curve| -> Vec<(f64, f64)> {
        c.points.iter().map(|p| (p.llm_share, p.quality)).collect()
    };
    let by_cost = |c: &Curve| -> Vec<(f64, f64)> {
        c.points
            .iter()
            .map(|p| (p.cost_per_request, p.quality))
            .collect()
    };
    for (panel, pts) in [(&share, by_share(&r.random)), (&cost, by_cost(&r.random))] {
        let _ = writeln!(
            s,
            "<path d=\"M {}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>",
            panel.coords(&pts).replacen(' ', " L ", usize::MAX)
        );
    }
    for (i, router) in r.routers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (panel, pts) in [
            (&share, by_share(&router.curve)),
            (&cost, by_cost(&router.curve)),
        ] {
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                panel.coords(&pts)
            );
        }
    }
    for (panel, slm_x, llm_x) in [
        (&share, 0.0, 1.0),
        (
            &cost,
            r.slm_only.cost_per_request,
            r.llm_only.cost_per_request,
        ),
    ] {
        panel.endpoint(
            &mut s,
            slm_x,
            r.slm_only.quality,
            &format!("SLM only: {}", r.slm),
            false,
        );
        panel.endpoint(
            &mut s,
            llm_x,
            r.llm_only.quality,
            &format!("LLM only: {}", r.llm),
            true,
        );
    }

    // Legend: random first, then the routers, four per row.
    let legend_top = top + panel_h + 62.0;
    let entries = std::iter::once(("random".to_string(), "#888", true)).chain(
        r.routers.iter().enumerate().map(|(i, x)| {
            let apgr = x.apgr.map_or(String::new(), |a| format!(" (APGR {a:.3})"));
            (format!("{}{apgr}", x.name), COLORS[i % COLORS.len()], false)
        }),
    );
    for (i, (label, color, dashed)) in entries.enumerate() {
        let x = left1 + 250.0 * (i % 4) as f64;
        let y = legend_top + 22.0 * (i / 4) as f64;
        let dash = if dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 24.0,
            x + 30.0,
            y + 4.0,
            esc(&label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::calibrate::apply;
    use crate::metrics::{Sample, curve, random_curve, summary};

    fn samples() -> Vec<Sample> {
        [(1.0, 1.0), (0.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| Sample {
                id: format!("q{i}"),
                slm_quality: a,
                llm_quality: b,
                slm_cost: 0.0,
                llm_cost: 0.002,
                slm_latency_ms: 50.0,
                llm_latency_ms: 800.0,
                slm_score: 0.0,
            })
            .collect()
    }

    fn report() -> Report {
        let s = samples();
        let sum = summary(&s).unwrap();
        let good = [0.1, 0.9, 0.8, 0.0];
        let mut knn = RouterResult::new(
            "kNN <e5> & \"co\"",
            RouterKind::Route,
            curve(&s, &good, RouterKind::Route).unwrap(),
        );
        let cal = calibrate(
            &knn.curve,
            sum.llm_only.quality,
            sum.slm_only.quality,
            Target::QualityFraction(0.95),
        )
        .unwrap();
        knn.calibrated = Some(CalibratedResult {
            test: apply(cal.threshold, &s, &good, RouterKind::Route).unwrap(),
            calibration: cal,
        });
        knn.apgr_interval = Some(ApgrInterval {
            lo: Some(0.61),
            hi: Some(2.5),
            beats_random: 0.875,
            resamples: 1000,
            undefined: 40,
        });
        let cascade = RouterResult::new(
            "cascade|logprob",
            RouterKind::Cascade,
            curve(&s, &[0.5, 0.2, 0.9, 0.1], RouterKind::Cascade).unwrap(),
        );
        Report {
            dataset: "mmlu".into(),
            split: "test".into(),
            slm: "qwen2.5-0.5b".into(),
            llm: "gpt-4o".into(),
            n: s.len(),
            slm_only: sum.slm_only,
            llm_only: sum.llm_only,
            routers: vec![knn, cascade],
            random: random_curve(&s).unwrap(),
        }
    }

    #[test]
    fn router_result_metrics() {
        let r = report();
        let knn = &r.routers[0];
        // q_weak 0.5, q_strong 0.75; scores escalate q1, q2, q0, q3:
        // qualities 0.5, 0.75, 1.0, 1.0, 0.75 → PGR 0, 1, 2, 2, 1.
        let pgr: Vec<f64> = knn.curve.points.iter().map(|p| p.pgr.unwrap()).collect();
        assert_eq!(pgr, vec![0.0, 1.0, 2.0, 2.0, 1.0]);
        assert!((knn.apgr.unwrap() - (0.125 + 0.375 + 0.5 + 0.375)).abs() < 1e-12);
        assert!((knn.cpt50.unwrap() - 0.125).abs() < 1e-12);
        assert!((knn.cpt80.unwrap() - 0.2).abs() < 1e-12);
        let c = knn.calibrated.as_ref().unwrap();
        assert!((c.calibration.dev.llm_share - 0.25).abs() < 1e-12);
        assert!((c.test.quality - 0.75).abs() < 1e-12);
    }

    #[test]
    fn markdown_table() {
        let md = markdown(&report());
        assert!(md.starts_with("## Routing on mmlu (test): qwen2.5-0.5b → gpt-4o, n = 4\n"));
        assert!(md.contains("| SLM only | 0.500 | $0 | 50 ms |"), "{md}");
        assert!(
            md.contains("| LLM only | 0.750 | $0.00200 | 800 ms |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| random | route | 0.500 | — | 50.0% | 80.0% | 90.0% | 0.725 | $0.00180 |"
            ),
            "{md}"
        );
        // Best point keeping ≥ 95% of 0.75 = 0.7125: share 25%, quality 0.75, 0.0005 $/req.
        assert!(
            md.contains(
                "| kNN <e5> & \"co\" | route | 1.375 (0.61–2.50) | 88% of 1000 | 12.5% | 20.0% | 25.0% | 0.750 | $0.000500 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| cascade\\|logprob | cascade | 1.125 | — |"),
            "{md}"
        );
        assert!(
            md.contains("| ≥95% LLM quality | 0.9000 | 25.0% | 25.0% | 0.750 | 100.0% |"),
            "{md}"
        );
    }

    #[test]
    fn svg_well_formed_ish() {
        let r = report();
        let svg = svg_chart(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // One polyline per router in each of the two panels; random dashed in both.
        assert_eq!(svg.matches("<polyline").count(), 2 * r.routers.len());
        assert_eq!(svg.matches("<path").count(), 2);
        assert_eq!(svg.matches("stroke-dasharray").count(), 3); // two curves + legend
        assert!(svg.contains("kNN &lt;e5&gt; &amp; &quot;co&quot; (APGR 1.375)"));
        assert!(!svg.contains("<e5>"));
        assert!(svg.contains("SLM only: qwen2.5-0.5b") && svg.contains("LLM only: gpt-4o"));
        assert!(svg.contains("#1b9e77") && svg.contains("#d95f02"));
        assert!(svg.contains(">100%<"));
        // Every opened element is closed or self-closed.
        let opened = svg.matches('<').count();
        let closed = svg.matches("/>").count() + svg.matches("</").count() * 2;
        assert_eq!(opened, closed, "{svg}");
        // No NaN coordinates.
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn report_json_roundtrip() {
        let r = report();
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        // serde_json parses floats to within one ulp (no `float_roundtrip` feature), so
        // compare the JSON trees with a tolerance.
        fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            use serde_json::Value::*;
            match (a, b) {
                (Number(x), Number(y)) => {
                    let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0)
                }
                (Array(x), Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
                }
                (Object(x), Object(y)) => {
                    x.len() == y.len()
                        && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
                }
                _ => a == b,
            }
        }
        let (a, b) = (
            serde_json::to_value(&r).unwrap(),
            serde_json::to_value(&back).unwrap(),
        );
        assert!(same(&a, &b));
        assert_eq!(back.routers[0].name, "kNN <e5> & \"co\"");
        assert_eq!(back.routers[0].curve.points[0].threshold, f64::INFINITY);
        assert_eq!(back.routers[1].kind, RouterKind::Cascade);
        // The tolerance is not vacuous.
        let mut changed = back.clone();
        changed.routers[0].curve.points[1].quality += 1e-6;
        assert!(!same(&a, &serde_json::to_value(&changed).unwrap()));
    }

    #[test]
    fn helpers() {
        assert_eq!(fmt_usd(0.000123), "$0.000123");
        assert_eq!(fmt_usd(0.0123), "$0.0123");
        assert_eq!(fmt_usd(1.234), "$1.23");
        assert_eq!(fmt_usd(0.0), "$0");
        assert_eq!(nice(0.0021), 0.0025);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(0.0), 1.0);
        // 0.5..0.8 padded → 0.45..0.85 in steps of 0.05 (8 intervals).
        let (lo, hi, n) = quality_axis(0.5, 0.8);
        assert!((lo - 0.45).abs() < 1e-12 && (hi - 0.85).abs() < 1e-12 && n == 8);
        // 0..1 → steps of 0.2, clamped to [0, 1].
        let (lo, hi, n) = quality_axis(0.0, 1.0);
        assert!(lo == 0.0 && (hi - 1.0).abs() < 1e-12 && n == 5);
        // A flat range still has height.
        let (lo, hi, n) = quality_axis(0.7, 0.7);
        assert!(lo < 0.7 && hi > 0.7 && n >= 1);
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
