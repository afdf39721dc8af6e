//! What one run records: the generator's outcome, the interface counters, the monitor's cost,
//! trafficd's own view, a capture tool's lines and the empty programs' statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::api::TopProcess;
use super::conditions::Condition;
use super::measure::{IfCounters, MapInfo, ProgStats};
use super::monitor::{self, CaptureBytes};
use super::scenarios::{Kind, Outcome, Scenario};
use super::{empty_bpf, gen, sampling};

/// Everything measured in one run of one scenario under one condition.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub scenario: String,
    pub condition: Option<Condition>,
    pub round: usize,
    pub started_unix: f64,
    /// 1-minute load average when the run started: other work on the machine.
    pub loadavg: f64,
    /// BPF programs of others attached to the cgroup2 root when the run started: every
    /// packet of the run also paid for them.
    pub foreign_programs: usize,
    pub error: Option<String>,
    /// The error of a first attempt of this run, which was then repeated.
    pub retried_after: Option<String>,
    pub outcome: Option<Outcome>,
    /// Interface counters over the traffic (lo, or the client's veth end).
    pub wire: Option<IfCounters>,
    pub wire_seconds: f64,
    pub monitor: Option<MonitorFigures>,
    pub trafficd: Option<TrafficdFigures>,
    pub capture: Option<CaptureFigures>,
    /// trafficd+perf, and trafficd+bpf-stats and empty-bpf in TCP and UDP scenarios: the
    /// samples taken while the traffic ran.
    #[serde(default)]
    pub sampled: Option<sampling::Samples>,
    /// empty-bpf: the empty programs' statistics.
    #[serde(default)]
    pub empty_bpf: Option<empty_bpf::EmptyFigures>,
}

/// The monitoring process itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MonitorFigures {
    pub pid: u32,
    pub startup_seconds: f64,
    /// User + system CPU seconds from just before the traffic to after the drains that
    /// followed it.
    pub cpu_seconds: f64,
    pub window_seconds: f64,
    /// Flow scale: CPU % of a core from the scenario's `steady_after` to the end of the
    /// traffic.
    #[serde(default)]
    pub steady_cpu_percent: Option<f64>,
    /// VmHWM at the end of the run.
    pub peak_rss_kib: u64,
    /// Flow scale: VmHWM once the flows of the ended generator left the flow map.
    #[serde(default)]
    pub peak_rss_ending_kib: Option<u64>,
    /// Of the RSS, BPF maps mapped into the process, at the end of the run.
    #[serde(default)]
    pub mapped_bpf_maps_kib: u64,
    /// From SIGTERM to exit.
    pub stop_seconds: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProgDelta {
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// What trafficd reported and how its drain and API behaved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrafficdFigures {
    pub programs: Vec<ProgDelta>,
    /// `last_drain_microseconds` of every drain during the window.
    pub drain_us: Vec<u64>,
    pub longest_drain_us: u64,
    /// Flow scale: `last_drain_microseconds` of every drain after the figures were read, while
    /// trafficd unindexed the flows of the ended generator (see `ending_drains`), and whether
    /// they were all gone within a minute.
    #[serde(default)]
    pub ending_drain_us: Vec<u64>,
    #[serde(default)]
    pub ending_done: bool,
    /// The slowest GET /healthz during the run (polled every 250 ms).
    pub slowest_healthz_ms: f64,
    /// Time of a whole GET /metrics (three in a row after the run).
    pub metrics_get_ms: Vec<f64>,
    pub metrics_bytes: usize,
    pub top_flow_get_ms: f64,
    pub client: Option<TopProcess>,
    pub server: Option<TopProcess>,
    /// Churn: bytes of every process with the churn client's comm, and how many there were.
    pub comm_tx_bytes: f64,
    pub comm_rx_bytes: f64,
    pub comm_processes: u64,
    pub map_entries: BTreeMap<String, f64>,
    /// The sum of trafficd_map_memory_bytes in /metrics.
    #[serde(default)]
    pub reported_map_bytes: f64,
    pub maps: Vec<MapInfo>,
    pub lost_events: f64,
    /// Lost events by reason (only reasons with some).
    pub lost_by_reason: BTreeMap<String, f64>,
}

/// What a packet-capture tool reported for the generator's processes (None: not listed).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaptureFigures {
    /// Process lines in the tool's last refresh.
    pub lines: usize,
    /// The sum of all its lines: every byte it saw, attributed or not.
    pub total: CaptureBytes,
    pub client: Option<CaptureBytes>,
    pub server: Option<CaptureBytes>,
}

/// Finds the generator's processes in a capture tool's lines. nethogs names processes by
/// pid; bandwhich only by name, so there the client is the line of the generator's name that
/// sent the most, and the server cannot be told apart. Churn clients are many processes:
/// their lines are summed.
pub fn capture_figures(
    lines: &[monitor::CaptureLine],
    scenario: &Scenario,
    outcome: &Outcome,
) -> CaptureFigures {
    let by_pid = |pid: u32| {
        lines
            .iter()
            .find(|l| l.pid == Some(pid) && pid != 0)
            .map(|l| l.bytes)
    };
    fn named<'a>(
        lines: &'a [monitor::CaptureLine],
        name: &'a str,
    ) -> impl Iterator<Item = &'a monitor::CaptureLine> {
        lines.iter().filter(move |l| l.name.contains(name))
    }
    let mut figures = CaptureFigures {
        lines: lines.len(),
        ..CaptureFigures::default()
    };
    for line in lines {
        figures.total.sent += line.bytes.sent;
        figures.total.received += line.bytes.received;
    }
    let nethogs = lines.iter().any(|l| l.pid.is_some());
    match scenario.kind {
        Kind::Churn => {
            // nethogs shows the program path (the xtask binary), bandwhich the comm.
            let name = if nethogs {
                "xtask"
            } else {
                gen::CHURN_CLIENT_COMM
            };
            let mut sum = CaptureBytes::default();
            for line in named(lines, name) {
                sum.sent += line.bytes.sent;
                sum.received += line.bytes.received;
            }
            figures.client = Some(sum);
        }
        _ if nethogs => {
            figures.client = by_pid(outcome.client_pid);
            figures.server = by_pid(outcome.server_pid);
        }
        _ => {
            figures.client = named(lines, "iperf3")
                .map(|l| l.bytes)
                .max_by(|a, b| a.sent.total_cmp(&b.sent));
        }
    }
    figures
}

pub fn delta(after: &ProgStats, before: Option<&ProgStats>) -> ProgDelta {
    ProgDelta {
        name: after.name.clone(),
        run_cnt: after.run_cnt - before.map_or(0, |b| b.run_cnt.min(after.run_cnt)),
        run_time_ns: after.run_time_ns - before.map_or(0, |b| b.run_time_ns.min(after.run_time_ns)),
    }
}
