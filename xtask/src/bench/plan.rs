//! What to run, from the command line: runs, seconds, scenarios and conditions.

use std::fs;

use anyhow::{bail, Context, Result};

use super::conditions::Condition;
use super::scenarios::{self, Scenario};
use super::BenchArgs;

/// What to run, from the command line.
pub struct Plan {
    pub runs: usize,
    pub quick: bool,
    pub seconds: f64,
    pub scenarios: Vec<Scenario>,
    pub conditions: Vec<Condition>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn new(args: &BenchArgs) -> Result<Plan> {
        let runs = args.runs.unwrap_or(if args.quick { 2 } else { 5 });
        if !(1..=100).contains(&runs) {
            bail!("--runs must be 1..=100");
        }
        let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 3.0 });
        if !(0.5..=60.0).contains(&seconds) {
            bail!("--seconds must be 0.5..=60");
        }
        let mut notes = Vec::new();
        let mut max_flows = args.max_flows;
        // 1M flows: ~2M kernel flow entries and the daemon's tables, a few GiB in all.
        let available_kib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemAvailable:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        if max_flows >= 1_000_000 && available_kib < 6 << 20 {
            notes.push(format!(
                "flows-1M skipped: {} MiB available, the bench wants 6 GiB for it",
                available_kib >> 10
            ));
            max_flows = 100_000;
        }
        let mut scenarios = scenarios::all(seconds, args.quick, max_flows);
        if let Some(huge) = scenarios.iter().find(|s| s.runs(runs) < runs) {
            notes.push(format!(
                "{}: {} runs, baseline and trafficd only (a run takes 1-2 minutes here; the per-program kernel costs are measured up to 100k flows)",
                huge.name,
                huge.runs(runs)
            ));
        }
        if !args.scenarios.is_empty() {
            scenarios.retain(|s| args.scenarios.iter().any(|f| s.name.contains(f.as_str())));
            if scenarios.is_empty() {
                bail!("--scenarios {:?} matches no scenario", args.scenarios);
            }
        }
        let mut conditions = if args.conditions.is_empty() {
            Condition::ALL.to_vec()
        } else {
            let mut list = vec![Condition::Baseline];
            for name in &args.conditions {
                let condition = Condition::parse(name).with_context(|| {
                    format!(
                        "unknown condition {name:?}; known: {}",
                        Condition::all_names()
                    )
                })?;
                if !list.contains(&condition) {
                    list.push(condition);
                }
            }
            list
        };
        conditions.sort();
        Ok(Plan {
            runs,
            quick: args.quick,
            seconds,
            scenarios,
            conditions,
            notes,
        })
    }
}
