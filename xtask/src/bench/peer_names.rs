//! `cargo xtask bench peer-names`: what naming remote peers costs trafficd. The same 100k
//! one-way flows (from the bench's namespace A to 100k addresses that B drops) are counted by
//! a daemon without names and by one given a labels file of 10k networks covering those
//! addresses, alternating run by run. Names are looked up when /top asks, never by the drain,
//! so the drain must not slow down, and /top?by=remote over the 100k remotes must answer in
//! under 100 ms.
//!
//! Results go to target/bench/peer-names.json.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;

use super::daemon::{Daemon, Phase};
use super::netns::{VethPair, ONE_WAY_NETWORK};
use crate::{build_trafficd, is_root, target_dir};

/// The answer time asked of /top?by=remote.
const TOP_TARGET: Duration = Duration::from_millis(100);

/// `cargo xtask bench peer-names [options]`.
#[derive(Args, Debug)]
pub struct PeerNamesArgs {
    /// Distinct one-way flows (each to its own remote address).
    #[arg(long, default_value_t = 100_000)]
    flows: u64,
    /// Networks in the labels file.
    #[arg(long, default_value_t = 10_000)]
    labels: u32,
    /// Runs of each condition, alternating.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Seconds of traffic per run.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
}

/// One run of one condition.
#[derive(Debug, Serialize)]
pub struct Run {
    pub labels: bool,
    pub phase: Phase,
    /// Remote items /top?by=remote&window=60s&limit=1000 answered with.
    pub remote_items: usize,
    /// Its answer time, median of five, in milliseconds.
    pub top_remote_milliseconds: f64,
    /// The same request's largest answer time.
    pub top_remote_max_milliseconds: f64,
}

pub fn run(args: PeerNamesArgs) -> Result<()> {
    if !is_root() {
        bail!("the peer-names bench needs root (BPF and network namespaces); retry with sudo");
    }
    let trafficd = build_trafficd()?;
    let xtask = std::env::current_exe()?;
    let out = target_dir().join("bench");
    fs::create_dir_all(&out)?;
    let labels = out.join("peer-names.labels");
    fs::write(&labels, labels_file(args.labels, args.flows))?;
    let net = VethPair::create()?;
    let mut runs = Vec::new();
    for round in 0..args.runs {
        for with_labels in [false, true] {
            let run = one_run(&trafficd, &xtask, &net, &out, &labels, with_labels, &args)?;
            println!(
                "bench: peer-names round {} labels={with_labels}: drain mean {:.0} us (max {}), \
                 CPU {}%, /top?by=remote {:.1} ms over {} items",
                round + 1,
                run.phase.drain_mean_microseconds,
                run.phase.drain_max_microseconds,
                run.phase.cpu_percent,
                run.top_remote_milliseconds,
                run.remote_items
            );
            runs.push(run);
        }
    }
    drop(net);
    let json = out.join("peer-names.json");
    fs::write(&json, serde_json::to_string_pretty(&runs)?)?;
    print!("{}", table(&runs));
    println!("bench: wrote {}", json.display());
    Ok(())
}

fn one_run(
    trafficd: &Path,
    xtask: &Path,
    net: &VethPair,
    out: &Path,
    labels: &Path,
    with_labels: bool,
    args: &PeerNamesArgs,
) -> Result<Run> {
    let labels_flag = labels.to_string_lossy().to_string();
    let extra: Vec<&str> = if with_labels {
        vec!["--labels", &labels_flag]
    } else {
        Vec::new()
    };
    let mut daemon = Daemon::start(trafficd, out, "peer-names", &extra)?;
    let seconds = Duration::from_secs_f64(args.seconds);
    let phase = daemon.phase(seconds, || {
        super::gen::one_way_flows(xtask, net.ns_a(), args.flows, args.seconds)
    })?;
    let mut times = Vec::new();
    let mut remote_items = 0;
    for _ in 0..5 {
        let (body, took) = daemon.api.get(
            "/top?by=remote&window=60s&limit=1000",
            Duration::from_secs(10),
        )?;
        let top: serde_json::Value = serde_json::from_str(&body)?;
        remote_items = top["items"].as_array().map_or(0, Vec::len);
        times.push(took.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Run {
        labels: with_labels,
        phase,
        remote_items,
        top_remote_milliseconds: times[times.len() / 2],
        top_remote_max_milliseconds: times[times.len() - 1],
    })
}

/// `count` networks over the generator's destinations (ONE_WAY_NETWORK + i for i below
/// `flows`): one in ten a /24 that covers 256 of them, the rest single addresses (/32), some
/// inside those /24s, so the longest-prefix match has overlaps to resolve.
fn labels_file(count: u32, flows: u64) -> String {
    let first = u32::from(ONE_WAY_NETWORK.0);
    let span = u32::try_from(flows.max(1)).unwrap_or(u32::MAX);
    let mut text = String::from("# cargo xtask bench peer-names\n");
    for i in 0..count {
        let address = Ipv4Addr::from(first + (i.wrapping_mul(7919) % span));
        let _ = if i % 10 == 0 {
            let network = Ipv4Addr::from(u32::from(address) & !0xff);
            writeln!(text, "{network}/24 net-{i}")
        } else {
            writeln!(text, "{address}/32 host-{i}")
        };
    }
    text
}

fn table(runs: &[Run]) -> String {
    let mut text = String::from(
        "| labels | drain mean (us) | drain max (us) | trafficd CPU | /top?by=remote median (ms) | max (ms) | items |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for run in runs {
        let _ = writeln!(
            text,
            "| {} | {:.0} | {} | {}% | {:.1} | {:.1} | {} |",
            if run.labels { "10k networks" } else { "none" },
            run.phase.drain_mean_microseconds,
            run.phase.drain_max_microseconds,
            run.phase.cpu_percent,
            run.top_remote_milliseconds,
            run.top_remote_max_milliseconds,
            run.remote_items
        );
    }
    let _ = writeln!(
        text,
        "target: drain within noise of no labels; /top?by=remote < {} ms",
        TOP_TARGET.as_millis()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_the_destinations_with_overlapping_prefixes() {
        let text = labels_file(100, 1000);
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines.iter().filter(|l| l.contains("/24 ")).count(), 10);
        let first = u32::from(ONE_WAY_NETWORK.0);
        for line in &lines {
            let network = line.split('/').next().unwrap();
            let address = u32::from(network.parse::<Ipv4Addr>().unwrap());
            assert!((first..first + 1000).contains(&address), "{line}");
        }
    }
}
