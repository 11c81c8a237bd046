//! Cost of converting a streamed answer, per token (run: `cargo bench -p tandem-zh`; see
//! docs/benchmarks.md). An answer is cut into pieces of one or two characters (about one
//! token of Chinese each) and pushed through a [`Converter`]; the baseline, measured in the
//! same run, is copying the same pieces into a `String` (what relaying costs without
//! conversion). Three answers: Simplified Chinese (converted), Traditional Chinese (checked,
//! kept) and English (passed through).
#![allow(clippy::unwrap_used)]

use std::time::Instant;
use tandem_zh::{Converter, Format};

const SIMPLIFIED: &str = "保险理赔的流程如下：首先，被保险人需要在事故发生后三十天内通知保险公司，并提交理赔申请书、医疗诊断证明和费用收据。其次，保险公司会审核这些文件，必要时会派调查员了解情况。如果资料齐全，一般在十个工作日内完成审核并支付赔款。请注意，逾期申请可能影响您的权益。如有疑问，请联系客服或登录我们的网站查询进度。";
const TRADITIONAL: &str = "保險理賠的流程如下：首先，被保險人需要在事故發生後三十天內通知保險公司，並提交理賠申請書、醫療診斷證明和費用收據。其次，保險公司會審核這些文件，必要時會派調查員了解情況。如果資料齊全，一般在十個工作日內完成審核並支付賠款。請注意，逾期申請可能影響您的權益。如有疑問，請聯絡客服或登入我們的網站查詢進度。";
const ENGLISH: &str = "The claims process is as follows. First, the insured must notify the insurer within thirty days of the incident and submit the claim form, the medical certificate and the receipts. Second, the insurer reviews the documents and may send an adjuster. If everything is complete, the review usually ends within ten working days and the claim is paid.";

fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = if i % 3 == 0 { 2 } else { 1 };
        out.push(chars[i..(i + n).min(chars.len())].iter().collect());
        i += n;
    }
    out
}

/// Nanoseconds per piece, best of `rounds`.
fn time(pieces: &[String], rounds: usize, mut f: impl FnMut(&[String]) -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut sink = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..20 {
            sink += f(pieces);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (20 * pieces.len()) as f64);
    }
    std::hint::black_box(sink);
    best
}

fn main() {
    let _ = Converter::new(Format::Prose).unwrap(); // load the dictionaries once
    println!(
        "{:<12} {:>8} {:>14} {:>14} {:>8}",
        "answer", "pieces", "copy ns/tok", "convert ns/tok", "ratio"
    );
    for (name, text) in [
        ("simplified", SIMPLIFIED),
        ("traditional", TRADITIONAL),
        ("english", ENGLISH),
    ] {
        let p = pieces(text);
        let copy = time(&p, 30, |p| {
            let mut out = String::new();
            for s in p {
                out.push_str(std::hint::black_box(s));
            }
            out.len()
        });
        let conv = time(&p, 30, |p| {
            let mut c = Converter::new(Format::Prose).unwrap();
            let mut n = 0;
            for s in p {
                n += c.push(s).len();
            }
            n + c.finish().len()
        });
        println!(
            "{name:<12} {:>8} {copy:>14.1} {conv:>14.1} {:>7.1}x",
            p.len(),
            conv / copy
        );
    }
}
