//! `tandem stats`: what the hybrid did and saved, from the ledger.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use tandem_ledger::{Ledger, Stats, StatsFilter};

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Ledger database (default: $TANDEM_HOME/ledger.sqlite).
    #[arg(long, env = "TANDEM_LEDGER")]
    ledger: Option<PathBuf>,
    /// Only the last period: e.g. 30m, 24h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parse `90s`, `30m`, `24h`, `7d` into milliseconds.
pub fn parse_period(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("`{s}`: expected a number followed by s, m, h or d"))?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" | "" => 86_400_000,
        other => bail!("`{s}`: unknown unit `{other}` (use s, m, h or d)"),
    };
    Ok(n * mult)
}

fn usd(x: f64) -> String {
    if x.abs() < 0.01 && x != 0.0 {
        format!("${x:.6}")
    } else {
        format!("${x:.4}")
    }
}

pub fn print(s: &Stats, baseline: Option<&str>) {
    println!(
        "requests {}  (errors {})  answered locally {} ({:.1}%)  escalations {}  left the machine {}",
        s.requests,
        s.errors,
        s.local_requests,
        s.local_share * 100.0,
        s.escalations,
        s.left_machine
    );
    println!(
        "cost {}  vs all-LLM baseline{} {}  saved {} ({:.1}%)",
        usd(s.cost_usd),
        baseline.map(|b| format!(" ({b})")).unwrap_or_default(),
        usd(s.baseline_cost_usd),
        usd(s.savings_usd),
        s.savings_pct
    );
    println!(
        "latency p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms  mean overhead {:.2} ms",
        s.latency_ms.p50, s.latency_ms.p95, s.latency_ms.p99, s.latency_ms.mean_overhead_ms
    );
    if !s.by_route.is_empty() {
        println!(
            "\n{:<24} {:>9} {:>9} {:>11} {:>12}",
            "ROUTE", "REQUESTS", "LOCAL", "ESCALATED", "COST"
        );
        for r in &s.by_route {
            println!(
                "{:<24} {:>9} {:>9} {:>11} {:>12}",
                r.route,
                r.requests,
                r.local_requests,
                r.escalations,
                usd(r.cost_usd)
            );
        }
    }
    if !s.by_model.is_empty() {
        println!(
            "\n{:<24} {:>9} {:>12} {:>12} {:>12}",
            "MODEL", "REQUESTS", "PROMPT TOK", "OUTPUT TOK", "COST"
        );
        for m in &s.by_model {
            println!(
                "{:<24} {:>9} {:>12} {:>12} {:>12}",
                m.model,
                m.requests,
                m.prompt_tokens,
                m.completion_tokens,
                usd(m.cost_usd)
            );
        }
    }
    if !s.pii.is_empty() {
        println!("\n{:<16} {:<20} {:>9}", "PII ACTION", "KIND", "REQUESTS");
        for p in &s.pii {
            println!("{:<16} {:<20} {:>9}", p.action, p.kind, p.requests);
        }
    }
}

pub fn run(args: StatsArgs) -> Result<()> {
    let path = args
        .ledger
        .clone()
        .unwrap_or_else(|| tandem_models::tandem_home().join("ledger.sqlite"));
    if !path.exists() {
        bail!(
            "no ledger at {} yet (it is created by `tandem serve`)",
            path.display()
        );
    }
    let ledger = Ledger::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let since_ms = match &args.since {
        Some(p) => Some(tandem_server::gateway::now_ms() - parse_period(p)?),
        None => None,
    };
    let stats = ledger.stats(&StatsFilter {
        since_ms,
        tenant: args.tenant.clone(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print(&stats, None);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse_period("90s").unwrap(), 90_000);
        assert_eq!(parse_period("30m").unwrap(), 1_800_000);
        assert_eq!(parse_period("24h").unwrap(), 86_400_000);
        assert_eq!(parse_period("7d").unwrap(), 604_800_000);
        assert!(parse_period("abc").is_err());
        assert!(parse_period("5y").is_err());
    }
}
