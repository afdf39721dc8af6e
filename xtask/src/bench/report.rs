//! From run records to figures: medians and spreads per scenario and condition, ratios to the
//! baseline, the targets with pass/miss, and target/bench/results.{md,json}.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use super::empty_bpf;
use super::memory;
use super::scenarios::{Kind, Link, Scenario, ETH_HEADER, STEADY_AFTER_SECONDS};
use super::RunRecord;

/// Programs that run per packet or per send/receive call: the ones the 100 ns target is for.
const HOT_PROGRAMS: [&str; 5] = [
    "trafficd_egress",
    "trafficd_ingress",
    "trafficd_sock_send",
    "trafficd_sock_recv",
    "trafficd_tcp_consume",
];

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

/// Per program (by name): its average run time in each run (run_time_ns / run_cnt), its own
/// time per run sampled by perf where the run was sampled, and its runs per second of the
/// run's window, over the runs where it ran.
fn program_summaries(
    runs: &[(&RunRecord, &[super::ProgDelta], f64)],
) -> BTreeMap<String, ProgramSummary> {
    let mut names: Vec<&str> = runs
        .iter()
        .flat_map(|(_, programs, _)| programs.iter().map(|p| p.name.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let per_run: Vec<(f64, f64, Option<f64>)> = runs
                .iter()
                .flat_map(|(record, programs, secs)| {
                    programs
                        .iter()
                        .filter(|p| p.name == name && p.run_cnt > 0)
                        .map(move |p| {
                            let cnt = p.run_cnt as f64;
                            let sampled = record.sampled.as_ref().map(|samples| {
                                samples.program_ns.get(name).copied().unwrap_or(0) as f64 / cnt
                            });
                            (p.run_time_ns as f64 / cnt, cnt / secs, sampled)
                        })
                })
                .collect();
            let summary = ProgramSummary {
                avg_ns: spread(per_run.iter().map(|p| p.0)),
                runs_per_second: spread(per_run.iter().map(|p| p.1)),
                sampled_ns: spread(per_run.iter().filter_map(|p| p.2)),
            };
            (name.to_string(), summary)
        })
        .collect()
}

/// Median and range of one figure over the runs of a group.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// Reported bytes relative to a reference, over the runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accuracy {
    /// `client tx`, `server rx`, ...
    pub what: String,
    /// What the ratio is taken against.
    pub reference: String,
    pub ratio: Spread,
    /// The run farthest from 1.
    pub worst: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProgramSummary {
    pub avg_ns: Option<Spread>,
    pub runs_per_second: Option<Spread>,
    /// The program's own time per run: ns of perf's samples taken in it or in what it called,
    /// over its runs (TCP and UDP scenarios, when perf is installed).
    #[serde(default)]
    pub sampled_ns: Option<Spread>,
}

/// A trafficd program next to the empty program on the same hook, measured in the same
/// scenario under empty-bpf (conditions alternating run by run).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Floor {
    /// The empty program (see xtask/src/bench/empty_bpf.rs) and its hook.
    pub empty_program: String,
    pub hook: String,
    pub empty_avg_ns: Option<Spread>,
    pub empty_runs_per_second: Option<Spread>,
    /// Median ns per run of the trafficd program minus the empty program's median.
    pub above_floor_ns: Option<f64>,
    /// The empty program's own time per run, sampled (see [`ProgramSummary::sampled_ns`]).
    #[serde(default)]
    pub empty_sampled_ns: Option<Spread>,
}

/// The figures of one scenario under one condition.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub condition: String,
    pub runs_ok: usize,
    pub errors: Vec<String>,
    pub rate_unit: String,
    pub rate: Option<Spread>,
    pub rate_vs_baseline: Option<Spread>,
    pub goodput_vs_baseline: Option<Spread>,
    pub wire_packets_per_second: Option<Spread>,
    pub wire_pps_vs_baseline: Option<Spread>,
    pub cpu_percent_of_core: Option<Spread>,
    /// Flow scale: once every flow exists (see `Scenario::steady_after`).
    #[serde(default)]
    pub steady_cpu_percent: Option<Spread>,
    pub cpu_seconds_per_gb: Option<Spread>,
    pub cpu_seconds_per_mpkt: Option<Spread>,
    pub peak_rss_mib: Option<Spread>,
    /// Of the peak RSS, BPF maps mapped into the monitor (trafficd's flow counters).
    #[serde(default)]
    pub mapped_bpf_maps_mib: Option<Spread>,
    pub startup_seconds: Option<Spread>,
    pub stop_seconds: Option<Spread>,
    /// trafficd's programs (BPF statistics on), or under empty-bpf the empty programs.
    pub programs: BTreeMap<String, ProgramSummary>,
    /// trafficd+bpf-stats: each program's floor, from empty-bpf in the same scenario.
    #[serde(default)]
    pub floors: BTreeMap<String, Floor>,
    /// empty-bpf: programs that could not be loaded or attached, and why.
    #[serde(default)]
    pub empty_not_attached: Vec<String>,
    pub kernel_ms_per_run: Option<Spread>,
    pub kernel_ns_per_wire_packet: Option<Spread>,
    pub kernel_percent_of_core: Option<Spread>,
    /// The programs' run time as a share of the CPU time of the traffic's processes (iperf3's
    /// two ends, in whose time the programs run), percent: what they take from a CPU-bound
    /// transfer, measured without the run-to-run noise of its throughput.
    #[serde(default)]
    pub kernel_percent_of_generator_cpu: Option<Spread>,
    /// trafficd+perf: the share of the traffic's CPU samples taken in trafficd's programs (or
    /// what they called), percent, BPF statistics off.
    #[serde(default)]
    pub sampled_programs_percent: Option<Spread>,
    pub drain_ms: Option<Spread>,
    pub longest_drain_ms: Option<Spread>,
    /// Flow scale, after the generator ended: the longest drain while its flows left FLOWS, and
    /// how many drains that took (runs that did not get there within a minute are left out).
    pub ending_longest_drain_ms: Option<Spread>,
    pub ending_drains: Option<Spread>,
    pub metrics_get_ms: Option<Spread>,
    pub slowest_healthz_ms: Option<Spread>,
    pub metrics_kib: Option<Spread>,
    pub top_flow_get_ms: Option<Spread>,
    pub flow_map_entries: Option<Spread>,
    pub map_memory_mib: Option<Spread>,
    /// What trafficd itself reports in /metrics (trafficd_map_memory_bytes).
    #[serde(default)]
    pub reported_map_memory_mib: Option<Spread>,
    pub lost_events: Option<Spread>,
    /// Reasons of lost events seen in any run.
    pub lost_reasons: Vec<String>,
    pub accuracy: Vec<Accuracy>,
    pub churn_processes_seen_ratio: Option<Spread>,
    pub loadavg: Option<Spread>,
    /// Runs that started while others' BPF programs were attached to the cgroup2 root.
    pub runs_with_foreign_programs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Miss,
    Partial,
    NotMeasured,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Miss => "**miss**",
            Status::Partial => "partial",
            Status::NotMeasured => "not measured",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub target: String,
    pub scenario: String,
    pub measured: String,
    pub goal: String,
    pub status: Status,
}

const REF_RANGE: &str = "iperf3's range: received .. sent + retransmissions (payload + headers)";
const REF_SENT: &str = "sent payload + headers";
const REF_RECEIVED: &str = "received payload + headers";
const REF_DROPS: &str = "received payload + headers, + datagrams dropped at a full receive buffer";
const REF_WIRE: &str =
    "client veth's packets out (IP bytes; TCP: one header per 1448-byte segment)";
const REF_RAW_SENT: &str = "sent payload only (raw)";
const REF_RAW_RECEIVED: &str = "received payload only (raw)";
const REF_CHURN_OUT: &str = "client veth's IP bytes out";
const REF_CHURN_IN: &str = "client veth's IP bytes in";
const REF_CHURN_BOTH: &str = "client veth's IP bytes out + in";
const REF_PROCESSES: &str = "processes forked";

/// A reference's name in the targets table (the accuracy table spells it out).
fn short_reference(reference: &str) -> &str {
    match reference {
        REF_RANGE => "iperf3's received..sent range + headers",
        REF_SENT => "sent payload + headers",
        REF_DROPS => "received payload + headers + receive-buffer drops",
        other => other,
    }
}

/// 1 when `value` lies in [low, high], else its ratio to the bound it passed.
fn range_ratio(value: f64, low: u64, high: u64) -> f64 {
    let (low, high) = (low as f64, high.max(low) as f64);
    if value < low {
        ratio(value, low)
    } else if value > high {
        ratio(value, high)
    } else {
        1.0
    }
}

/// IP bytes that left through the client's veth end (Ethernet headers taken off).
fn ip_bytes_out(record: &RunRecord) -> Option<f64> {
    let w = record.wire?;
    Some(w.tx_bytes.saturating_sub(w.tx_packets * ETH_HEADER) as f64)
}

fn ip_bytes_in(record: &RunRecord) -> Option<f64> {
    let w = record.wire?;
    Some(w.rx_bytes.saturating_sub(w.rx_packets * ETH_HEADER) as f64)
}

/// The client's packets out of its veth end as trafficd counts them. veth counts a GSO
/// packet once with one set of headers; trafficd counts one per segment (1448 bytes of
/// payload at MTU 1500), so for TCP the headers are recounted per segment.
fn wire_reference(record: &RunRecord, tcp: bool) -> Option<f64> {
    let ip = ip_bytes_out(record)?;
    if !tcp {
        return Some(ip);
    }
    let packets = record.wire?.tx_packets as f64;
    let header = super::scenarios::TCP_HEADERS as f64;
    let payload = (ip - packets * header).max(0.0);
    let segments = packets.max((payload / (1500.0 - header)).ceil());
    Some(payload + segments * header)
}

fn wire_packets(record: &RunRecord, link: Link) -> Option<f64> {
    let wire = record.wire?;
    Some(match link {
        // lo counts each packet once as tx and once as rx.
        Link::Loopback => wire.tx_packets as f64,
        Link::Veth => (wire.tx_packets + wire.rx_packets) as f64,
    })
}

fn wire_ip_bytes(record: &RunRecord, link: Link) -> Option<f64> {
    let wire = record.wire?;
    let (packets, bytes) = match link {
        Link::Loopback => (wire.tx_packets, wire.tx_bytes),
        Link::Veth => (
            wire.tx_packets + wire.rx_packets,
            wire.tx_bytes + wire.rx_bytes,
        ),
    };
    Some(bytes.saturating_sub(packets * ETH_HEADER) as f64)
}

fn ratio(value: f64, reference: f64) -> f64 {
    if reference > 0.0 {
        value / reference
    } else {
        f64::NAN
    }
}

fn accuracy(what: &str, reference: &str, ratios: Vec<f64>) -> Option<Accuracy> {
    let worst = ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .max_by(|a, b| (a - 1.0).abs().total_cmp(&(b - 1.0).abs()))?;
    Some(Accuracy {
        what: what.to_string(),
        reference: reference.to_string(),
        ratio: spread(ratios)?,
        worst,
    })
}

fn summarize(scenario: &Scenario, condition: Condition, records: &[&RunRecord]) -> Summary {
    let ok = ok_runs(records);
    let link = scenario.link;
    let outcome = |r: &RunRecord| r.outcome.clone().unwrap_or_default();
    let mut s = Summary {
        scenario: scenario.name.clone(),
        condition: condition.name().to_string(),
        runs_ok: ok.len(),
        errors: records.iter().filter_map(|r| r.error.clone()).collect(),
        rate_unit: scenario.rate_unit().to_string(),
        rate: spread(ok.iter().map(|r| outcome(r).rate)),
        wire_packets_per_second: spread(
            ok.iter()
                .filter_map(|r| Some(wire_packets(r, link)? / r.wire_seconds)),
        ),
        loadavg: spread(records.iter().map(|r| r.loadavg)),
        runs_with_foreign_programs: records.iter().filter(|r| r.foreign_programs > 0).count(),
        ..Summary::default()
    };
    let monitors: Vec<(&RunRecord, &super::MonitorFigures)> = ok
        .iter()
        .filter_map(|r| Some((*r, r.monitor.as_ref()?)))
        .collect();
    s.cpu_percent_of_core = spread(
        monitors
            .iter()
            .map(|(_, m)| 100.0 * ratio(m.cpu_seconds, m.window_seconds)),
    );
    s.steady_cpu_percent = spread(monitors.iter().filter_map(|(_, m)| m.steady_cpu_percent));
    s.cpu_seconds_per_gb = spread(
        monitors
            .iter()
            .filter_map(|(r, m)| Some(ratio(m.cpu_seconds, wire_ip_bytes(r, link)? / 1e9))),
    );
    s.cpu_seconds_per_mpkt = spread(
        monitors
            .iter()
            .filter_map(|(r, m)| Some(ratio(m.cpu_seconds, wire_packets(r, link)? / 1e6))),
    );
    s.peak_rss_mib = spread(monitors.iter().map(|(_, m)| m.peak_rss_kib as f64 / 1024.0));
    s.mapped_bpf_maps_mib = spread(
        monitors
            .iter()
            .map(|(_, m)| m.mapped_bpf_maps_kib as f64 / 1024.0),
    );
    s.startup_seconds = spread(monitors.iter().map(|(_, m)| m.startup_seconds));
    s.stop_seconds = spread(monitors.iter().filter_map(|(_, m)| m.stop_seconds));

    let trafficd: Vec<(&RunRecord, &super::TrafficdFigures)> = ok
        .iter()
        .filter_map(|r| Some((*r, r.trafficd.as_ref()?)))
        .collect();
    // Per-program statistics: trafficd's programs, or the empty programs of empty-bpf.
    let window = |r: &RunRecord| r.monitor.as_ref().map_or(f64::NAN, |m| m.window_seconds);
    let with_programs: Vec<(&RunRecord, &[super::ProgDelta], f64)> = ok
        .iter()
        .filter_map(|r| match (&r.trafficd, &r.empty_bpf) {
            (Some(t), _) => Some((*r, t.programs.as_slice(), window(r))),
            (None, Some(e)) => Some((*r, e.programs.as_slice(), e.window_seconds)),
            (None, None) => None,
        })
        .collect();
    s.programs = program_summaries(&with_programs);
    let kernel_ns = |programs: &[super::ProgDelta]| -> f64 {
        programs.iter().map(|p| p.run_time_ns as f64).sum()
    };
    let counted: Vec<&(&RunRecord, &[super::ProgDelta], f64)> = with_programs
        .iter()
        .filter(|(_, programs, _)| programs.iter().any(|p| p.run_cnt > 0))
        .collect();
    s.kernel_ms_per_run = spread(counted.iter().map(|(_, p, _)| kernel_ns(p) / 1e6));
    s.kernel_ns_per_wire_packet = spread(
        counted
            .iter()
            .filter_map(|(r, p, _)| Some(ratio(kernel_ns(p), wire_packets(r, link)?))),
    );
    s.kernel_percent_of_core = spread(
        counted
            .iter()
            .map(|(_, p, secs)| 100.0 * kernel_ns(p) / (secs * 1e9)),
    );
    s.kernel_percent_of_generator_cpu = spread(counted.iter().filter_map(|(r, p, _)| {
        let cpu = r.outcome.as_ref()?.generator_cpu_seconds?;
        (cpu > 0.0).then(|| 100.0 * kernel_ns(p) / (cpu * 1e9))
    }));
    s.sampled_programs_percent = spread(
        ok.iter()
            .filter_map(|r| r.sampled.as_ref()?.programs_percent()),
    );
    let mut not_attached: Vec<String> = ok
        .iter()
        .filter_map(|r| r.empty_bpf.as_ref())
        .flat_map(|e| e.not_attached.iter().cloned())
        .collect();
    not_attached.sort();
    not_attached.dedup();
    s.empty_not_attached = not_attached;

    if !trafficd.is_empty() {
        s.drain_ms = spread(
            trafficd
                .iter()
                .flat_map(|(_, t)| t.drain_us.iter().map(|us| *us as f64 / 1e3)),
        );
        s.longest_drain_ms = spread(
            trafficd
                .iter()
                .filter_map(|(_, t)| t.drain_us.iter().max().map(|us| *us as f64 / 1e3)),
        );
        let ended = || trafficd.iter().filter(|(_, t)| t.ending_done);
        s.ending_longest_drain_ms = spread(
            ended().filter_map(|(_, t)| t.ending_drain_us.iter().max().map(|us| *us as f64 / 1e3)),
        );
        s.ending_drains = spread(ended().map(|(_, t)| t.ending_drain_us.len() as f64));
        s.metrics_get_ms = spread(
            trafficd
                .iter()
                .filter_map(|(_, t)| spread(t.metrics_get_ms.iter().copied()).map(|s| s.median)),
        );
        s.slowest_healthz_ms = spread(trafficd.iter().map(|(_, t)| t.slowest_healthz_ms));
        s.metrics_kib = spread(
            trafficd
                .iter()
                .map(|(_, t)| t.metrics_bytes as f64 / 1024.0),
        );
        s.top_flow_get_ms = spread(trafficd.iter().map(|(_, t)| t.top_flow_get_ms));
        s.flow_map_entries = spread(
            trafficd
                .iter()
                .filter_map(|(_, t)| t.map_entries.get("FLOWS").copied()),
        );
        s.map_memory_mib = spread(trafficd.iter().map(|(_, t)| {
            t.maps.iter().map(|m| m.memlock_bytes as f64).sum::<f64>() / (1024.0 * 1024.0)
        }));
        s.reported_map_memory_mib = spread(
            trafficd
                .iter()
                .filter(|(_, t)| t.reported_map_bytes > 0.0)
                .map(|(_, t)| t.reported_map_bytes / (1024.0 * 1024.0)),
        );
        s.lost_events = spread(trafficd.iter().map(|(_, t)| t.lost_events));
        let mut reasons: Vec<String> = trafficd
            .iter()
            .flat_map(|(_, t)| t.lost_by_reason.keys().cloned())
            .collect();
        reasons.sort();
        reasons.dedup();
        s.lost_reasons = reasons;

        // Accuracy of what trafficd attributes to the generator's processes.
        let pick = |f: &dyn Fn(&RunRecord, &super::TrafficdFigures) -> Option<f64>| -> Vec<f64> {
            trafficd.iter().filter_map(|(r, t)| f(r, t)).collect()
        };
        let client_tx = |t: &super::TrafficdFigures| {
            t.client
                .as_ref()
                .map_or(0.0, |p| p.lifetime_tx_bytes as f64)
        };
        let server_rx = |t: &super::TrafficdFigures| {
            t.server
                .as_ref()
                .map_or(0.0, |p| p.lifetime_rx_bytes as f64)
        };
        // The generator's own figures (plus headers), for every kind but churn.
        let against_generator = || {
            let sent = pick(&|r, t| {
                Some(ratio(
                    client_tx(t),
                    r.outcome.as_ref()?.expected_client_tx as f64,
                ))
            });
            let received = pick(&|r, t| {
                Some(ratio(
                    server_rx(t),
                    r.outcome.as_ref()?.expected_server_rx as f64,
                ))
            });
            accuracy("client tx", REF_SENT, sent)
                .into_iter()
                .chain(accuracy("server rx", REF_RECEIVED, received))
        };
        match scenario.kind {
            Kind::Churn => {
                s.accuracy.extend(accuracy(
                    "churn clients tx",
                    REF_CHURN_OUT,
                    pick(&|r, t| Some(ratio(t.comm_tx_bytes, ip_bytes_out(r)?))),
                ));
                s.accuracy.extend(accuracy(
                    "churn clients rx",
                    REF_CHURN_IN,
                    pick(&|r, t| Some(ratio(t.comm_rx_bytes, ip_bytes_in(r)?))),
                ));
                let seen = pick(&|r, t| {
                    Some(ratio(
                        t.comm_processes as f64,
                        r.outcome.as_ref()?.processes as f64,
                    ))
                });
                s.churn_processes_seen_ratio = spread(seen.iter().copied());
                s.accuracy.extend(accuracy(
                    "churn client processes listed",
                    REF_PROCESSES,
                    seen,
                ));
            }
            Kind::Tcp { .. } => {
                for (what, value) in [
                    (
                        "client tx",
                        &client_tx as &dyn Fn(&super::TrafficdFigures) -> f64,
                    ),
                    ("server rx", &server_rx),
                ] {
                    s.accuracy.extend(accuracy(
                        what,
                        REF_RANGE,
                        pick(&|r, t| {
                            let o = r.outcome.as_ref()?;
                            Some(range_ratio(value(t), o.range_low, o.range_high))
                        }),
                    ));
                }
                s.accuracy.extend(against_generator());
            }
            Kind::Udp64 | Kind::Flows { .. } => {
                s.accuracy.extend(against_generator());
                s.accuracy.extend(accuracy(
                    "server rx",
                    REF_DROPS,
                    pick(&|r, t| {
                        let o = r.outcome.as_ref()?;
                        let per = ratio(o.expected_server_rx as f64, o.received_units as f64);
                        let per = if per.is_finite() { per } else { 0.0 };
                        Some(ratio(
                            server_rx(t),
                            o.expected_server_rx as f64 + per * o.rcvbuf_drops as f64,
                        ))
                    }),
                ));
            }
        }
        if link == Link::Veth && !matches!(scenario.kind, Kind::Churn) {
            let tcp = matches!(scenario.kind, Kind::Tcp { .. });
            for (what, value) in [
                (
                    "client tx",
                    &client_tx as &dyn Fn(&super::TrafficdFigures) -> f64,
                ),
                ("server rx", &server_rx),
            ] {
                s.accuracy.extend(accuracy(
                    what,
                    REF_WIRE,
                    pick(&|r, t| Some(ratio(value(t), wire_reference(r, tcp)?))),
                ));
            }
        }
        if !matches!(scenario.kind, Kind::Churn) {
            s.accuracy.extend(accuracy(
                "client tx",
                REF_RAW_SENT,
                pick(&|r, t| Some(ratio(client_tx(t), r.outcome.as_ref()?.sent_payload as f64))),
            ));
            s.accuracy.extend(accuracy(
                "server rx",
                REF_RAW_RECEIVED,
                pick(&|r, t| {
                    Some(ratio(
                        server_rx(t),
                        r.outcome.as_ref()?.received_payload as f64,
                    ))
                }),
            ));
        }
        if !scenario.received() {
            // Nothing received the traffic: there is no receiving side to compare.
            s.accuracy.retain(|a| a.what != "server rx");
        }
    }

    // Accuracy of the capture tools (a process they did not list counts as 0 bytes).
    let captures: Vec<(&RunRecord, &super::CaptureFigures)> = ok
        .iter()
        .filter_map(|r| Some((*r, r.capture.as_ref()?)))
        .collect();
    if !captures.is_empty() {
        let sent = |c: &super::CaptureFigures| c.client.map_or(0.0, |b| b.sent);
        let received = |c: &super::CaptureFigures| c.server.map_or(0.0, |b| b.received);
        let of = |f: &dyn Fn(&RunRecord, &super::CaptureFigures) -> Option<f64>| -> Vec<f64> {
            captures.iter().filter_map(|(r, c)| f(r, c)).collect()
        };
        match scenario.kind {
            Kind::Churn => {
                s.accuracy.extend(accuracy(
                    "churn clients tx",
                    REF_CHURN_OUT,
                    of(&|r, c| Some(ratio(sent(c), ip_bytes_out(r)?))),
                ));
                s.accuracy.extend(accuracy(
                    "every line, attributed or not, sent + received",
                    REF_CHURN_BOTH,
                    of(&|r, c| {
                        Some(ratio(
                            c.total.sent + c.total.received,
                            ip_bytes_out(r)? + ip_bytes_in(r)?,
                        ))
                    }),
                ));
            }
            _ => {
                s.accuracy.extend(accuracy(
                    "client tx",
                    REF_SENT,
                    of(&|r, c| {
                        Some(ratio(
                            sent(c),
                            r.outcome.as_ref()?.expected_client_tx as f64,
                        ))
                    }),
                ));
                // The server of a veth scenario lives in the other namespace: nethogs and
                // bandwhich watch the client's; bandwhich cannot tell the two iperf3 apart.
                if link == Link::Loopback && condition == Condition::Nethogs {
                    s.accuracy.extend(accuracy(
                        "server rx",
                        REF_RECEIVED,
                        of(&|r, c| {
                            Some(ratio(
                                received(c),
                                r.outcome.as_ref()?.expected_server_rx as f64,
                            ))
                        }),
                    ));
                }
                if link == Link::Veth {
                    let tcp = matches!(scenario.kind, Kind::Tcp { .. });
                    s.accuracy.extend(accuracy(
                        "client tx",
                        REF_WIRE,
                        of(&|r, c| Some(ratio(sent(c), wire_reference(r, tcp)?))),
                    ));
                }
            }
        }
    }
    s
}

/// Medians of the baseline that the other conditions are compared with.
#[derive(Clone, Copy, Debug, Default)]
struct BaselineMedians {
    rate: Option<f64>,
    goodput: Option<f64>,
    wire_pps: Option<f64>,
}

fn ok_runs<'a>(records: &[&'a RunRecord]) -> Vec<&'a RunRecord> {
    records
        .iter()
        .copied()
        .filter(|r| r.error.is_none() && r.outcome.is_some())
        .collect()
}

fn baseline_medians(records: &[&RunRecord], link: Link) -> BaselineMedians {
    let ok = ok_runs(records);
    let median = |values: Vec<f64>| spread(values).map(|s| s.median);
    BaselineMedians {
        rate: median(
            ok.iter()
                .filter_map(|r| Some(r.outcome.as_ref()?.rate))
                .collect(),
        ),
        goodput: median(
            ok.iter()
                .filter_map(|r| Some(r.outcome.as_ref()?.goodput_bps))
                .collect(),
        ),
        wire_pps: median(
            ok.iter()
                .filter_map(|r| Some(wire_packets(r, link)? / r.wire_seconds))
                .collect(),
        ),
    }
}

/// Adds each run's ratio to the baseline's median of the same scenario.
fn add_baseline_ratios(
    summary: &mut Summary,
    records: &[&RunRecord],
    base: BaselineMedians,
    link: Link,
) {
    let ok = ok_runs(records);
    let of = |f: &dyn Fn(&RunRecord) -> Option<f64>, base: Option<f64>| {
        let base = base?;
        spread(ok.iter().filter_map(|r| Some(ratio(f(r)?, base))))
    };
    summary.rate_vs_baseline = of(&|r| Some(r.outcome.as_ref()?.rate), base.rate);
    summary.goodput_vs_baseline = of(&|r| Some(r.outcome.as_ref()?.goodput_bps), base.goodput);
    summary.wire_pps_vs_baseline = of(
        &|r| Some(wire_packets(r, link)? / r.wire_seconds),
        base.wire_pps,
    );
}

/// Summaries of every scenario and condition in the records, in plan order.
pub fn summaries(scenarios: &[Scenario], records: &[RunRecord]) -> Vec<Summary> {
    let mut out = Vec::new();
    for scenario in scenarios {
        let mut conditions: Vec<Condition> = records
            .iter()
            .filter(|r| r.scenario == scenario.name)
            .filter_map(|r| r.condition)
            .collect();
        conditions.sort();
        conditions.dedup();
        let group = |c: Condition| -> Vec<&RunRecord> {
            records
                .iter()
                .filter(|r| r.scenario == scenario.name && r.condition == Some(c))
                .collect()
        };
        let base = baseline_medians(&group(Condition::Baseline), scenario.link);
        let mut of_scenario: Vec<Summary> = conditions
            .into_iter()
            .map(|condition| {
                let records = group(condition);
                let mut summary = summarize(scenario, condition, &records);
                add_baseline_ratios(&mut summary, &records, base, scenario.link);
                summary
            })
            .collect();
        add_floors(&mut of_scenario);
        out.extend(of_scenario);
    }
    out
}

/// Gives every program of the scenario's trafficd+bpf-stats summary the figures of the empty
/// program on its hook from the scenario's empty-bpf summary.
fn add_floors(of_scenario: &mut [Summary]) {
    let Some(empty) = of_scenario
        .iter()
        .find(|s| s.condition == Condition::EmptyBpf.name())
        .map(|s| s.programs.clone())
    else {
        return;
    };
    for s in of_scenario
        .iter_mut()
        .filter(|s| s.condition == Condition::TrafficdBpfStats.name())
    {
        let floors: BTreeMap<String, Floor> = s
            .programs
            .iter()
            .filter_map(|(name, program)| {
                let hook = empty_bpf::floor_of(name)?;
                let floor = empty.get(hook.name)?;
                let above = match (program.avg_ns, floor.avg_ns) {
                    (Some(p), Some(f)) => Some(p.median - f.median),
                    _ => None,
                };
                let floor = Floor {
                    empty_program: hook.name.to_string(),
                    hook: hook.hook.to_string(),
                    empty_avg_ns: floor.avg_ns,
                    empty_runs_per_second: floor.runs_per_second,
                    above_floor_ns: above,
                    empty_sampled_ns: floor.sampled_ns,
                };
                Some((name.clone(), floor))
            })
            .collect();
        s.floors = floors;
    }
}

fn find<'a>(summaries: &'a [Summary], scenario: &str, condition: Condition) -> Option<&'a Summary> {
    summaries
        .iter()
        .find(|s| s.scenario == scenario && s.condition == condition.name())
}

/// "; trafficd's programs: X% of iperf3's CPU (empty programs Y%); Z% sampled" when measured:
/// the share of the transfer's CPU time the programs took, steadier than the throughput ratios
/// here. By BPF statistics (which cost about as much as the programs) and, as trafficd runs by
/// default, by perf's samples.
fn programs_share(summaries: &[Summary], scenario: &str) -> String {
    let share = |condition| {
        find(summaries, scenario, condition).and_then(|s| s.kernel_percent_of_generator_cpu)
    };
    let by_statistics = share(Condition::TrafficdBpfStats).map(|td| {
        let floor = share(Condition::EmptyBpf)
            .map(|empty| format!(" (empty programs {} %)", fmt_spread(&empty, 2)))
            .unwrap_or_default();
        format!(
            "; trafficd's programs took {} % of the CPU time of iperf3's two ends by BPF statistics{floor}",
            fmt_spread(&td, 2)
        )
    });
    let sampled = find(summaries, scenario, Condition::TrafficdSampled)
        .and_then(|s| s.sampled_programs_percent)
        .map(|p| {
            format!(
                "; {} % of iperf3's CPU samples by perf, statistics off (trafficd+perf)",
                fmt_spread(&p, 2)
            )
        });
    by_statistics.unwrap_or_default() + &sampled.unwrap_or_default()
}

fn not_measured(target: &str, scenario: &str, goal: &str) -> Target {
    Target {
        target: target.to_string(),
        scenario: scenario.to_string(),
        measured: "-".to_string(),
        goal: goal.to_string(),
        status: Status::NotMeasured,
    }
}

/// The rate ratio of the empty programs in `scenario`: statistics off when that ran, else on.
fn empty_rate_floor(summaries: &[Summary], scenario: &str) -> Option<(Condition, Spread)> {
    [Condition::EmptyBpfNoStats, Condition::EmptyBpf]
        .into_iter()
        .find_map(|c| Some((c, find(summaries, scenario, c)?.rate_vs_baseline?)))
}

/// The targets, each next to what was measured.
pub fn targets(scenarios: &[Scenario], summaries: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
    let td = Condition::Trafficd;
    // Throughput and packet rate with trafficd (default configuration).
    for scenario in scenarios {
        let (what, goal, min) = match scenario.kind {
            Kind::Tcp { .. } => (
                "TCP bulk throughput with trafficd",
                ">= 0.98 x baseline",
                0.98,
            ),
            Kind::Udp64 => (
                "64-byte UDP packet rate with trafficd",
                ">= 0.95 x baseline",
                0.95,
            ),
            _ => continue,
        };
        out.push(
            match find(summaries, &scenario.name, td).and_then(|s| s.rate_vs_baseline) {
                Some(r) => Target {
                    target: what.to_string(),
                    scenario: scenario.name.clone(),
                    // What any program on the same hooks costs here: the part of the gap that is
                    // the hooks', not trafficd's. Without statistics, as trafficd runs, when
                    // measured.
                    measured: match empty_rate_floor(summaries, &scenario.name) {
                        Some((condition, empty)) => format!(
                            "{} x; empty programs on the same hooks ({}): {} x",
                            fmt_spread(&r, 3),
                            condition.name(),
                            fmt_spread(&empty, 3)
                        ),
                        None => format!("{} x", fmt_spread(&r, 3)),
                    } + &programs_share(summaries, &scenario.name),
                    goal: goal.to_string(),
                    status: if r.median >= min {
                        Status::Pass
                    } else {
                        Status::Miss
                    },
                },
                None => not_measured(what, &scenario.name, goal),
            },
        );
    }
    // Userspace CPU against nethogs at the same load (per GB that crossed the link).
    for scenario in scenarios
        .iter()
        .filter(|s| !matches!(s.kind, Kind::Flows { .. }))
    {
        let what = "trafficd CPU per GB vs nethogs";
        let goal = "<= 1/10";
        let td_cpu = find(summaries, &scenario.name, td).and_then(|s| s.cpu_seconds_per_gb);
        let nh_cpu =
            find(summaries, &scenario.name, Condition::Nethogs).and_then(|s| s.cpu_seconds_per_gb);
        out.push(match (td_cpu, nh_cpu) {
            (Some(t), Some(n)) if n.median > 0.0 => {
                let r = t.median / n.median;
                Target {
                    target: what.to_string(),
                    scenario: scenario.name.clone(),
                    measured: format!(
                        "{} vs {} CPU s/GB = 1/{:.0}",
                        fmt_sig(t.median),
                        fmt_sig(n.median),
                        1.0 / r
                    ),
                    goal: goal.to_string(),
                    status: if r <= 0.1 { Status::Pass } else { Status::Miss },
                }
            }
            _ => not_measured(what, &scenario.name, goal),
        });
    }
    // "100k flows": the one-way scenario, where trafficd holds 100k flows; without it, the
    // two-ended one (200k). The two-ended figures are quoted beside the one-way ones.
    let flows_100k = |one_way| {
        scenarios
            .iter()
            .find(|s| {
                s.kind
                    == Kind::Flows {
                        count: 100_000,
                        one_way,
                    }
            })
            .map(|s| s.name.clone())
    };
    let two_ended = flows_100k(false).filter(|_| flows_100k(true).is_some());
    let at_100k = flows_100k(true)
        .or_else(|| flows_100k(false))
        .unwrap_or_else(|| "flows-100k".to_string());
    let flows = find(summaries, &at_100k, td);
    let two_ended = two_ended.and_then(|name| Some((name.clone(), find(summaries, &name, td)?)));
    // "; <scenario> (both ends on this host, 2 x 100k flows): <figure>", when measured.
    let beside = |figure: &dyn Fn(&Summary) -> Option<String>| -> String {
        two_ended
            .as_ref()
            .and_then(|(name, s)| {
                Some(format!(
                    "; {name} (both ends here: 200k flows): {}",
                    figure(s)?
                ))
            })
            .unwrap_or_default()
    };
    let what = "trafficd userspace CPU at 100k flows";
    let goal = "< 2% of one core";
    // Keeping watch over 100k flows is the target; the whole run also pays for 200k flows
    // appearing within a second, shown beside it.
    let whole = flows.and_then(|s| s.cpu_percent_of_core);
    let judged = match (flows.and_then(|s| s.steady_cpu_percent), whole) {
        (Some(steady), whole) => Some((
            steady,
            format!(
                "{} % once every flow exists (from {} s into the traffic); {} % over the whole run, flows appearing included",
                fmt_spread(&steady, 2),
                fmt_sig(STEADY_AFTER_SECONDS),
                whole.map_or("-".to_string(), |w| fmt_spread(&w, 2))
            ),
        )),
        // Results of a bench without the steady measurement.
        (None, Some(whole)) => Some((whole, format!("{} %", fmt_spread(&whole, 2)))),
        (None, None) => None,
    };
    out.push(match judged {
        Some((c, measured)) => Target {
            target: what.to_string(),
            scenario: at_100k.clone(),
            measured: format!(
                "{measured}{}",
                beside(&|s| Some(format!("{} %", fmt_spread(&s.steady_cpu_percent?, 2))))
            ),
            goal: goal.to_string(),
            status: if c.median < 2.0 {
                Status::Pass
            } else {
                Status::Miss
            },
        },
        None => not_measured(what, &at_100k, goal),
    });
    // Kernel programs: the worst scenario's median for each program.
    for program in HOT_PROGRAMS {
        let what = format!("{program} average run time");
        let goal = "<= 100 ns (aim 50 ns)";
        let worst = summaries
            .iter()
            .filter(|s| s.condition == Condition::TrafficdBpfStats.name())
            .filter_map(|s| Some((s, s.programs.get(program)?.avg_ns?)))
            .max_by(|a, b| a.1.median.total_cmp(&b.1.median));
        // The program's own time, sampled (TCP and UDP scenarios only): its worst scenario.
        let own = summaries
            .iter()
            .filter(|s| s.condition == Condition::TrafficdBpfStats.name())
            .filter_map(|s| Some((s, s.programs.get(program)?.sampled_ns?)))
            .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
            .map_or(String::new(), |(s, ns)| {
                format!(
                    "; own time sampled by perf, worst TCP/UDP scenario ({}): {} ns",
                    s.scenario,
                    fmt_spread(&ns, 0)
                )
            });
        out.push(match worst {
            Some((s, ns)) => Target {
                target: what,
                scenario: format!("worst: {}", s.scenario),
                measured: match s.floors.get(program) {
                    Some(Floor {
                        hook,
                        empty_avg_ns: Some(floor),
                        above_floor_ns: Some(above),
                        ..
                    }) => format!(
                        "{} ns; an empty {hook} program in the same scenario (empty-bpf): {} ns, so {above:.0} ns above the floor",
                        fmt_spread(&ns, 0),
                        fmt_spread(floor, 0)
                    ),
                    _ => format!("{} ns (floor not measured: no empty-bpf runs)", fmt_spread(&ns, 0)),
                } + &own,
                goal: goal.to_string(),
                status: if ns.median <= 100.0 {
                    Status::Pass
                } else {
                    Status::Miss
                },
            },
            None => not_measured(&what, "all", goal),
        });
    }
    let what = "drain of 100k flows";
    let goal = "<= 50 ms";
    out.push(
        match flows.and_then(|s| Some((s.drain_ms?, s.longest_drain_ms?))) {
            Some((d, longest)) => Target {
                target: what.to_string(),
                scenario: at_100k.clone(),
                measured: format!(
                    "median {} ms, longest {} ms (as they appear), longest {} ms as they end{}",
                    fmt_sig(d.median),
                    fmt_sig(longest.max),
                    ending_longest(flows),
                    beside(&|s| Some(format!(
                        "median {} ms, longest {} ms, {} ms as they end",
                        fmt_sig(s.drain_ms?.median),
                        fmt_sig(s.longest_drain_ms?.max),
                        ending_longest(Some(s))
                    )))
                ),
                goal: goal.to_string(),
                status: if longest.max <= 50.0
                    && flows
                        .and_then(|s| s.ending_longest_drain_ms)
                        .is_some_and(|e| e.max <= 50.0)
                {
                    Status::Pass
                } else if d.median <= 50.0 {
                    Status::Partial
                } else {
                    Status::Miss
                },
            },
            None => not_measured(what, &at_100k, goal),
        },
    );
    let what = "trafficd peak RSS at 100k flows";
    let goal = "<= 64 MiB";
    out.push(match flows.and_then(|s| s.peak_rss_mib) {
        Some(r) => Target {
            target: what.to_string(),
            scenario: at_100k.clone(),
            measured: match flows.and_then(|s| s.mapped_bpf_maps_mib) {
                Some(m) => format!(
                    "{} MiB, of which the mapped flow counters {} MiB{}",
                    fmt_spread(&r, 1),
                    fmt_spread(&m, 1),
                    beside(&|s| Some(format!("{} MiB", fmt_spread(&s.peak_rss_mib?, 1))))
                ),
                None => format!("{} MiB", fmt_spread(&r, 1)),
            },
            goal: goal.to_string(),
            status: if r.max <= 64.0 {
                Status::Pass
            } else {
                Status::Miss
            },
        },
        None => not_measured(what, &at_100k, goal),
    });
    let what = "kernel map memory bounded by config and reported";
    let goal = "bounded, reported";
    out.push(match flows.and_then(|s| Some((s.map_memory_mib?, s.flow_map_entries))) {
        Some((m, entries)) => {
            let reported = flows.and_then(|s| s.reported_map_memory_mib);
            // trafficd reports its own maps; fdinfo also counts the small ones aya adds
            // (.rodata, .bss, logs).
            let agrees = reported.is_some_and(|r| (r.median - m.median).abs() <= 0.02 * m.median);
            Target {
                target: what.to_string(),
                scenario: at_100k.clone(),
                measured: format!(
                    "{} MiB (fdinfo memlock) with {} flow entries; every map is bounded by a --*-map-size flag; /metrics trafficd_map_memory_bytes: {}",
                    fmt_sig(m.median),
                    entries.map_or("?".to_string(), |e| fmt_sig(e.median)),
                    reported.map_or("absent".to_string(), |r| format!("{} MiB", fmt_sig(r.median)))
                ),
                goal: goal.to_string(),
                status: if agrees { Status::Pass } else { Status::Partial },
            }
        }
        None => not_measured(what, &at_100k, goal),
    });
    // Accuracy: trafficd vs what the generator knows, both directions, TCP and UDP.
    for scenario in scenarios {
        if matches!(scenario.kind, Kind::Churn) {
            continue;
        }
        // Both trafficd conditions run the same daemon: the worst run of either counts.
        let summaries_td: Vec<&Summary> = [td, Condition::TrafficdBpfStats]
            .into_iter()
            .filter_map(|c| find(summaries, &scenario.name, c))
            .collect();
        // TCP: iperf3 stops without letting data drain, so its own two figures bracket the
        // truth; UDP: datagrams dropped at the receiver's full buffer crossed the hook.
        let references = match scenario.kind {
            Kind::Tcp { .. } => [("client tx", REF_RANGE), ("server rx", REF_RANGE)],
            _ => [("client tx", REF_SENT), ("server rx", REF_DROPS)],
        };
        let sides = if scenario.received() { 2 } else { 1 };
        for (what, reference) in references.into_iter().take(sides) {
            let target = format!("accuracy, {what} (trafficd, both conditions)");
            let found: Vec<(&str, &Accuracy)> = summaries_td
                .iter()
                .flat_map(|s| {
                    s.accuracy
                        .iter()
                        .filter(|a| a.what == what && a.reference == reference)
                        .map(|a| (s.condition.as_str(), a))
                })
                .collect();
            let Some((_, worst)) = found
                .iter()
                .max_by(|a, b| (a.1.worst - 1.0).abs().total_cmp(&(b.1.worst - 1.0).abs()))
            else {
                out.push(not_measured(&target, &scenario.name, "within 1%"));
                continue;
            };
            let medians: Vec<String> = found
                .iter()
                .map(|(condition, a)| format!("{condition} {}", fmt_spread(&a.ratio, 4)))
                .collect();
            out.push(Target {
                target,
                scenario: scenario.name.clone(),
                measured: format!(
                    "{}; worst run {:.4} (of {})",
                    medians.join(", "),
                    worst.worst,
                    short_reference(reference)
                ),
                goal: "within 1%".to_string(),
                status: if (worst.worst - 1.0).abs() <= 0.01 {
                    Status::Pass
                } else {
                    Status::Miss
                },
            });
        }
    }
    out
}

/// The longest drain while a flow scale run's flows ended, over its runs ("-" when not measured).
fn ending_longest(summary: Option<&Summary>) -> String {
    summary
        .and_then(|s| s.ending_longest_drain_ms)
        .map_or("-".to_string(), |e| fmt_sig(e.max))
}

/// Three significant digits, without exponent for everyday magnitudes.
fn fmt_sig(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

fn fmt_spread(s: &Spread, decimals: usize) -> String {
    if s.n == 1 {
        return format!("{:.*}", decimals, s.median);
    }
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, s.median, decimals, s.min, decimals, s.max
    )
}

fn fmt_spread_sig(s: Option<Spread>) -> String {
    match s {
        None => "-".to_string(),
        Some(s) if s.n == 1 => fmt_sig(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_sig(s.median),
            fmt_sig(s.min),
            fmt_sig(s.max)
        ),
    }
}

fn fmt_ratio(s: Option<Spread>) -> String {
    s.map_or("-".to_string(), |s| fmt_spread(&s, 3))
}

/// A scenario's main rate in its natural unit.
fn fmt_rate(kind: Kind, rate: f64) -> String {
    match kind {
        Kind::Tcp { .. } => format!("{:.2} Gbit/s", rate / 1e9),
        Kind::Udp64 => format!("{:.0} kdatagram/s", rate / 1e3),
        Kind::Churn => format!("{rate:.0} conn/s"),
        Kind::Flows { .. } => format!("{:.0} kdatagram/s", rate / 1e3),
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
    let md = markdown(meta, scenarios, &summaries, &targets);
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
    write(dir, &stored.meta, &stored.scenarios, &stored.runs)
}

fn markdown(
    meta: &Meta,
    scenarios: &[Scenario],
    summaries: &[Summary],
    targets: &[Target],
) -> String {
    let mut md = String::new();
    let kind_of = |name: &str| scenarios.iter().find(|s| s.name == name).map(|s| s.kind);
    let _ = writeln!(md, "# trafficd benchmark\n");
    let _ = writeln!(
        md,
        "{}: {} x {}, {:.0} GiB, Linux {}; trafficd {}{}. `cargo xtask {}`: {} runs per scenario and condition, conditions alternating run by run, {} s of traffic per run; the bench took {:.1} min{}.\n",
        meta.date_utc,
        meta.cpus,
        if meta.cpu_model.is_empty() { "CPU" } else { &meta.cpu_model },
        meta.memory_gib,
        meta.kernel,
        meta.git_commit,
        if meta.git_dirty { " (with uncommitted changes)" } else { "" },
        meta.command,
        meta.runs,
        meta.seconds,
        meta.elapsed_seconds / 60.0,
        if meta.finished { "" } else { " (NOT FINISHED: partial results)" },
    );
    if !meta.memory_reads.is_empty() {
        let _ = writeln!(
            md,
            "One read from memory on this machine, by working set (a chase of dependent loads through cache lines in random order, before the first run): {}. A packet pays the larger figures for state its CPU's caches no longer hold.\n",
            memory::describe(&meta.memory_reads)
        );
    }
    if !meta.notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for note in &meta.notes {
            let _ = writeln!(md, "- {note}");
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## What runs\n");
    let _ = writeln!(
        md,
        "- tcp-N-stream-lo / -veth: `iperf3 -c <server> -t {secs} -P N` against `iperf3 -s -1`; veth: client in namespace A, server in namespace B, MTU 1500 (lo: 65536).\n\
         - udp-64B-lo / -veth: `iperf3 -u -l 64 -b 0 -t {secs}`; the rate is what the server received.\n\
         - churn-veth: `xtask bench gen churn-client --parallel 16` forks one process per connection (connect, send 64 B, read the 64-byte answer to EOF, close, exit) against `churn-server` in namespace B, for {secs} s.\n\
         - flows-N: `xtask bench gen flows --count N --rate N`: one UDP socket sends a 16-byte datagram to each of N addresses 127.1.0.0 + i (every flow once per second when the machine keeps up, at least one full round), received by one wildcard socket of the same process, so both ends of every flow are on this host (2N flows for trafficd); 10k and 100k flows for 12 s, so that the CPU once every flow exists is measured over the last 6.\n\
         - flows-100k-one-way: the same generator with `--one-way-to 10.224.0.0`, in namespace A: 100k addresses routed to namespace B, which neither owns nor forwards them and drops them on arrival, unanswered. trafficd holds 100k flows, as on a host whose peers are elsewhere; the targets' \"100k flows\" are judged here, the two-ended flows-100k quoted beside.\n\
         - Conditions: baseline (nothing); trafficd (`trafficd run --interval 1s`, defaults; flow scale adds --flow-map-size 2N + 65536), started before each run and stopped after it, /healthz polled 4 times a second on one kept-alive connection; trafficd+bpf-stats (the same with sysctl kernel.bpf_stats_enabled=1; in TCP and UDP also sampled as below, for the programs' own time per run); trafficd+perf (TCP and UDP only: trafficd as by default while `perf record -a -e cpu-clock --call-graph fp -F 4999` samples every CPU; the share of iperf3's and the softirq threads' samples taken in trafficd's programs or in what they called, without the statistics' own clock reads); \
         empty-bpf (no monitor: empty programs on trafficd's hooks, attached for the run through BPF links beside any others, with kernel.bpf_stats_enabled=1: `r0 = 1; exit` as cgroup_skb on ingress and egress of the cgroup2 root, `r0 = 0; exit` as tp_btf on sock_send_length, sock_recv_length and tcp_rcv_space_adjust; what any program on those hooks costs here, statistics included: the floor under trafficd's per-program figures); empty-bpf-no-stats (the same programs with the statistics off, as trafficd runs: the floor under its throughput ratios); nethogs (`nethogs -a -t -v 2 -C -d 1 <interface>`); bandwhich (`bandwhich --raw -n -t -p -i <interface>`). For veth the capture tools run in namespace A on its veth end, where /proc/net shows the client's sockets.\n",
        secs = meta.seconds
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | scenario | measured: median (min–max) | goal | result |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for t in targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            t.target,
            t.scenario,
            t.measured,
            t.goal,
            t.status.label()
        );
    }

    let _ = writeln!(md, "\n## Throughput and cost\n");
    let _ = writeln!(
        md,
        "Ratios are each run's figure over the baseline's median: median (min–max) over the runs. \
         Rate: TCP payload throughput, UDP datagrams received, churn connections completed, flows datagrams sent. \
         CPU: user + system time of the monitoring process from just before the traffic until the drains after it (trafficd) \
         or 1.5 s after it (capture tools); per GB and per million packets of what crossed the interface (IP bytes; lo, or both \
         directions of the client's veth end; a GSO packet counts once). Kernel: the sum of run_time_ns of trafficd's programs \
         (BPF statistics on), or under empty-bpf of the empty programs; as a share of iperf3's CPU: that sum over the CPU time \
         iperf3's two ends report for the test (the programs run in their time), what they take from a CPU-bound transfer, \
         steadier here than the throughput ratios. Peak RSS: VmHWM.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | condition | runs | rate | rate vs baseline | wire pkt/s vs baseline | monitor CPU % of a core | CPU s per GB | CPU s per M packets | peak RSS MiB | kernel ns per packet | kernel % of a core | kernel % of iperf3's CPU | load avg | runs beside others' BPF programs |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in summaries {
        let rate = match (kind_of(&s.scenario), s.rate) {
            (Some(kind), Some(r)) => fmt_rate(kind, r.median),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.scenario,
            s.condition,
            s.runs_ok,
            if s.errors.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", s.errors.len())
            },
            rate,
            fmt_ratio(s.rate_vs_baseline),
            fmt_ratio(s.wire_pps_vs_baseline),
            fmt_spread_sig(s.cpu_percent_of_core),
            fmt_spread_sig(s.cpu_seconds_per_gb),
            fmt_spread_sig(s.cpu_seconds_per_mpkt),
            fmt_spread_sig(s.peak_rss_mib),
            fmt_spread_sig(s.kernel_ns_per_wire_packet),
            fmt_spread_sig(s.kernel_percent_of_core),
            fmt_spread_sig(s.kernel_percent_of_generator_cpu),
            s.loadavg
                .map_or("-".to_string(), |l| format!("{:.1}", l.median)),
            s.runs_with_foreign_programs,
        );
    }

    let _ = writeln!(md, "\n## trafficd's kernel programs (BPF statistics on)\n");
    let _ = writeln!(
        md,
        "Average run time per invocation (run_time_ns / run_cnt over the run) and invocations per second; median (min–max) over the runs. \
         Floor: the average run time of an empty program on the same hook, measured the same way in the same scenario under empty-bpf \
         (the conditions alternate run by run): the cost of reaching any program on that hook and of the statistics' own clock reads. \
         Above the floor: the program's median minus the floor's median, what the program's own instructions cost. \
         Own time, sampled (TCP and UDP, in the same runs): the CPU time of perf's samples (`perf record -a -e cpu-clock -F {FREQ}`, kernel call chains) \
         taken in the program or in a kernel function it called, over its runs; the clock reads and the code that reaches the program lie outside it, \
         so it measures the program alone; the empty program's, in brackets, is what entering any program costs (fetching its code).\n",
        FREQ = super::sampling::FREQUENCY,
    );
    let _ = writeln!(
        md,
        "| scenario | program | ns per run | floor: empty program on the same hook, ns per run | above the floor, ns | own time per run, sampled, ns (empty program) | runs per second | kernel ms per run (all programs) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in summaries
        .iter()
        .filter(|s| s.condition == Condition::TrafficdBpfStats.name())
    {
        for (name, p) in &s.programs {
            let floor = s.floors.get(name);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.scenario,
                name,
                fmt_spread_sig(p.avg_ns),
                floor.map_or("-".to_string(), |f| format!(
                    "{} ({})",
                    fmt_spread_sig(f.empty_avg_ns),
                    f.empty_program
                )),
                floor
                    .and_then(|f| f.above_floor_ns)
                    .map_or("-".to_string(), |ns| format!("{ns:.0}")),
                match (p.sampled_ns, floor.and_then(|f| f.empty_sampled_ns)) {
                    (None, _) => "-".to_string(),
                    (own, None) => fmt_spread_sig(own),
                    (own, empty) => format!("{} ({})", fmt_spread_sig(own), fmt_spread_sig(empty)),
                },
                fmt_spread_sig(p.runs_per_second),
                fmt_spread_sig(s.kernel_ms_per_run),
            );
        }
    }

    let empties: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.condition == Condition::EmptyBpf.name())
        .collect();
    if !empties.is_empty() {
        let _ = writeln!(md, "\n## Empty programs: the floor (empty-bpf)\n");
        let _ = writeln!(
            md,
            "Empty programs on trafficd's hooks, no monitor running, BPF statistics on; measured like trafficd's programs \
             (run_time_ns / run_cnt over the run, from the fdinfo of their file descriptors). Runs per second: over the traffic \
             and 50 ms after it (trafficd's window also holds the two drains after the traffic).\n"
        );
        let _ = writeln!(
            md,
            "| scenario | empty program | hook | ns per run | own time per run, sampled, ns | runs per second | floor of |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        for s in &empties {
            for (name, p) in &s.programs {
                let hook = empty_bpf::hook_of(name);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    s.scenario,
                    name,
                    hook.map_or("?", |h| h.hook),
                    fmt_spread_sig(p.avg_ns),
                    fmt_spread_sig(p.sampled_ns),
                    fmt_spread_sig(p.runs_per_second),
                    hook.map_or("?", |h| h.trafficd_program),
                );
            }
        }
        let not_attached: Vec<&String> = empties
            .iter()
            .flat_map(|s| s.empty_not_attached.iter())
            .collect();
        if !not_attached.is_empty() {
            let _ = writeln!(md, "\nNot attached (no floor for these hooks):\n");
            let mut seen: Vec<&String> = Vec::new();
            for line in not_attached {
                if !seen.contains(&line) {
                    let _ = writeln!(md, "- {}", line.replace('|', "/"));
                    seen.push(line);
                }
            }
        }
    }

    let _ = writeln!(md, "\n## Flow scale\n");
    let _ = writeln!(
        md,
        "One UDP socket sends one 16-byte datagram to each of N loopback addresses (127.1.0.0 + i) and receives them on one wildcard socket: \
         2N flows in trafficd's flow map (both ends), run with --flow-map-size 2N + 65536; one-way: N flows, --flow-map-size N + 65536. Drain: `last_drain_microseconds` of every \
         drain during the run (/healthz polled every 250 ms). Flows ending: once the generator exited, the drains until \
         its flows left FLOWS (retired at most 16,384 a drain; FLOWS at a hundredth of them, or no longer losing them): the longest, and how many. \
         GET times are whole requests after the run. \
         CPU once every flow exists: from {} s into the traffic to its end (10k and 100k flows run {} s for it).\n",
        fmt_sig(STEADY_AFTER_SECONDS),
        fmt_sig(2.0 * STEADY_AFTER_SECONDS)
    );
    let _ = writeln!(
        md,
        "| scenario | condition | flow map entries | drain ms | longest drain ms | flows ending: longest drain ms | flows ending: drains | GET /metrics ms | /metrics KiB | GET /top?by=flow ms | slowest GET /healthz during the run, ms | peak RSS MiB | of which mapped flow counters MiB | CPU % of a core | CPU % once every flow exists | kernel map memory MiB | lost events |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in summaries
        .iter()
        .filter(|s| s.drain_ms.is_some() || s.metrics_get_ms.is_some())
    {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.scenario,
            s.condition,
            fmt_spread_sig(s.flow_map_entries),
            fmt_spread_sig(s.drain_ms),
            fmt_spread_sig(s.longest_drain_ms),
            fmt_spread_sig(s.ending_longest_drain_ms),
            fmt_spread_sig(s.ending_drains),
            fmt_spread_sig(s.metrics_get_ms),
            fmt_spread_sig(s.metrics_kib),
            fmt_spread_sig(s.top_flow_get_ms),
            fmt_spread_sig(s.slowest_healthz_ms),
            fmt_spread_sig(s.peak_rss_mib),
            fmt_spread_sig(s.mapped_bpf_maps_mib),
            fmt_spread_sig(s.cpu_percent_of_core),
            fmt_spread_sig(s.steady_cpu_percent),
            fmt_spread_sig(s.map_memory_mib),
            if s.lost_reasons.is_empty() {
                fmt_spread_sig(s.lost_events)
            } else {
                format!(
                    "{} ({})",
                    fmt_spread_sig(s.lost_events),
                    s.lost_reasons.join(", ")
                )
            },
        );
    }

    let _ = writeln!(md, "\n## Accuracy\n");
    let _ = writeln!(
        md,
        "Bytes each tool reports for the generator's processes (trafficd: lifetime bytes of the pid in /top; nethogs: its last \
         cumulative refresh for the pid; bandwhich: the largest line with the generator's name, it has no pids) over what the \
         generator knows it moved. trafficd counts IP bytes, so the reference adds the headers of the packets that carried \
         the payload (TCP: one 52-byte header per MTU-sized segment; UDP: 28 bytes per datagram); the raw ratio to the payload \
         is shown too. Churn: the sum over all churn client processes against the client namespace's veth counters, whose \
         only traffic is the churn. A process the tool did not list counts as 0.\n"
    );
    let _ = writeln!(
        md,
        "Each cell: median ratio over the runs [the run farthest from 1]. Columns: the generator's own figure (iperf3's sent \
         bytes for tx, received for rx; churn: processes forked) plus headers; for TCP the range between iperf3's received and \
         sent (+ retransmissions), since iperf3 ends a test without letting its data drain (1 = inside); for UDP the received \
         datagrams plus those the kernel dropped at the server's full receive buffer (they crossed the hook); the client veth's \
         own packet counters; the payload alone.\n"
    );
    let columns: [(&str, &[&str]); 4] = [
        (
            "generator + headers",
            &[REF_SENT, REF_RECEIVED, REF_PROCESSES],
        ),
        ("iperf3 range / + rcvbuf drops", &[REF_RANGE, REF_DROPS]),
        (
            "client veth counters",
            &[REF_WIRE, REF_CHURN_OUT, REF_CHURN_IN, REF_CHURN_BOTH],
        ),
        ("payload only (raw)", &[REF_RAW_SENT, REF_RAW_RECEIVED]),
    ];
    let _ = writeln!(
        md,
        "| scenario | tool | bytes | {} | {} | {} | {} |",
        columns[0].0, columns[1].0, columns[2].0, columns[3].0
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for s in summaries {
        let mut rows: Vec<&str> = Vec::new();
        for a in &s.accuracy {
            if !rows.contains(&a.what.as_str()) {
                rows.push(&a.what);
            }
        }
        for what in rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|(_, refs)| {
                    s.accuracy
                        .iter()
                        .filter(|a| a.what == what && refs.contains(&a.reference.as_str()))
                        .map(|a| format!("{:.4} [{:.4}]", a.ratio.median, a.worst))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_string()
                    } else {
                        cell
                    }
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {what} | {} |",
                s.scenario,
                s.condition,
                cells.join(" | ")
            );
        }
    }

    let _ = writeln!(md, "\n## Monitors starting and stopping\n");
    let _ = writeln!(md, "Start: until trafficd finished its first drain, or 1 s for the capture tools. Stop: SIGTERM to exit.\n");
    let _ = writeln!(md, "| condition | start s | stop s |");
    let _ = writeln!(md, "| --- | --- | --- |");
    let mut by_condition: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for s in summaries {
        let entry = by_condition.entry(&s.condition).or_default();
        entry.0.extend(s.startup_seconds.map(|x| x.median));
        entry.1.extend(s.stop_seconds.map(|x| x.max));
    }
    for (condition, (start, stop)) in by_condition {
        if start.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {condition} | {} | {} |",
            fmt_spread_sig(spread(start)),
            fmt_spread_sig(spread(stop))
        );
    }

    let errors: Vec<(&Summary, &String)> = summaries
        .iter()
        .flat_map(|s| s.errors.iter().map(move |e| (s, e)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "\n## Failed runs\n");
        for (s, e) in errors {
            let _ = writeln!(
                md,
                "- {} / {}: {}",
                s.scenario,
                s.condition,
                e.replace('|', "/")
            );
        }
    }
    md
}
