//! From run records to figures: medians and spreads per scenario and condition, ratios to the
//! baseline, the targets with pass/miss, and target/bench/results.{md,json}.
//!
//! [`summary`] turns the runs of one scenario and condition into a [`Summary`], [`accuracy`]
//! compares the bytes each tool reported with what the generator and the interfaces know,
//! [`targets`] holds the figures against the goals, [`markdown`] writes the tables and
//! [`publish`] copies them into docs/performance.md.

mod accuracy;
mod format;
mod markdown;
mod publish;
mod statistics;
mod summary;
mod targets;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use super::memory;
use super::scenarios::Scenario;
use super::RunRecord;
use format::fmt_sig;
pub use publish::publish;
pub use statistics::{median_interval, spread, verdict};
pub use summary::{summaries, Summary};
pub use targets::{targets, Target};

/// The machine and the bench's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub date_utc: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub git_commit: String,
    pub git_dirty: bool,
    pub command: String,
    pub runs: usize,
    pub quick: bool,
    pub seconds: f64,
    pub conditions: Vec<String>,
    pub notes: Vec<String>,
    pub bpf_stats_sysctl_before: String,
    pub elapsed_seconds: f64,
    pub finished: bool,
    /// The time of one read from memory by working set, measured before the first run.
    #[serde(default)]
    pub memory_reads: Vec<memory::ReadLatency>,
}

impl Meta {
    /// The machine's description; the caller fills in the bench's settings.
    pub fn collect() -> Meta {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let output = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .current_dir(crate::repo_root())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Meta {
            date_utc: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
                .unwrap_or_default(),
            memory_gib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| kib / (1024.0 * 1024.0))
                .unwrap_or(0.0),
            git_commit: output("git", &["rev-parse", "--short", "HEAD"]),
            git_dirty: !output(
                "git",
                &[
                    "status",
                    "--porcelain",
                    "--",
                    "trafficd",
                    "trafficd-ebpf",
                    "trafficd-common",
                ],
            )
            .is_empty(),
            ..Meta::default()
        }
    }
}

/// One line per run for the progress output.
pub fn one_line(r: &RunRecord) -> String {
    let condition = r.condition.map_or("?", Condition::name);
    let mut line = format!("{} {condition} #{}:", r.scenario, r.round);
    if let Some(error) = &r.error {
        let _ = write!(line, " ERROR {error}");
        return line;
    }
    if let Some(o) = &r.outcome {
        let _ = write!(line, " rate {}", fmt_sig(o.rate));
    }
    if let Some(m) = &r.monitor {
        let _ = write!(
            line,
            ", cpu {:.3} s in {:.1} s, rss {:.1} MiB",
            m.cpu_seconds,
            m.window_seconds,
            m.peak_rss_kib as f64 / 1024.0
        );
        if let Some(ending) = m.peak_rss_ending_kib {
            let _ = write!(
                line,
                " ({:.1} once the flows ended)",
                ending as f64 / 1024.0
            );
        }
    }
    if let Some(t) = &r.trafficd {
        if let Some(max) = t.drain_us.iter().max() {
            let _ = write!(line, ", longest drain {:.1} ms", *max as f64 / 1e3);
        }
        let kernel: u64 = t.programs.iter().map(|p| p.run_time_ns).sum();
        if kernel > 0 {
            let _ = write!(line, ", kernel {:.1} ms", kernel as f64 / 1e6);
        }
    }
    if let Some(e) = &r.empty_bpf {
        for p in e.programs.iter().filter(|p| p.run_cnt > 0) {
            let _ = write!(
                line,
                ", {} {:.0} ns x {}",
                p.name,
                p.run_time_ns as f64 / p.run_cnt as f64,
                p.run_cnt
            );
        }
        if !e.not_attached.is_empty() {
            let _ = write!(line, ", {} not attached", e.not_attached.len());
        }
    }
    let _ = write!(line, ", load {:.1}", r.loadavg);
    line
}

#[derive(Serialize)]
struct Json<'a> {
    meta: &'a Meta,
    scenarios: &'a [Scenario],
    targets: &'a [Target],
    summaries: &'a [Summary],
    runs: &'a [RunRecord],
}

/// Writes results.md and results.json under `dir`; returns their paths.
pub fn write(
    dir: &Path,
    meta: &Meta,
    scenarios: &[Scenario],
    records: &[RunRecord],
) -> Result<(PathBuf, PathBuf)> {
    let summaries = summaries(scenarios, records);
    let targets = targets(scenarios, &summaries);
    let json_path = dir.join("results.json");
    let json = serde_json::to_string_pretty(&Json {
        meta,
        scenarios,
        targets: &targets,
        summaries: &summaries,
        runs: records,
    })?;
    fs::write(&json_path, json).with_context(|| format!("write {}", json_path.display()))?;
    let md_path = dir.join("results.md");
    let md = markdown::markdown(meta, scenarios, &summaries, &targets);
    fs::write(&md_path, md).with_context(|| format!("write {}", md_path.display()))?;
    Ok((md_path, json_path))
}

/// Recomputes the figures and rewrites results.md and results.json from the runs kept in
/// `dir`/results.json (no measurement).
pub fn rewrite(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    #[derive(Deserialize)]
    struct Stored {
        meta: Meta,
        scenarios: Vec<Scenario>,
        runs: Vec<RunRecord>,
    }
    let path = dir.join("results.json");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let stored: Stored =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let (md, json) = write(dir, &stored.meta, &stored.scenarios, &stored.runs)?;
    println!("bench: {}", publish_tables(&md, &stored.meta));
    Ok((md, json))
}

/// Copies the tables of results.md at `md` into docs/performance.md (see [`publish`]) when the
/// bench finished and was not a smoke run; returns the one line that says what happened.
pub fn publish_tables(md: &Path, meta: &Meta) -> String {
    let doc = crate::repo_root().join("docs").join("performance.md");
    if meta.quick {
        return format!(
            "--quick: {} left as it is (a smoke run's figures are not published)",
            doc.display()
        );
    }
    if !meta.finished {
        return format!("the bench did not finish: {} left as it is", doc.display());
    }
    match fs::read_to_string(md) {
        Ok(tables) => publish(&doc, meta, &tables),
        Err(err) => format!(
            "{} not read ({err}): {} left as it is",
            md.display(),
            doc.display()
        ),
    }
}
