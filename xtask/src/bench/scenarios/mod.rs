//! The traffic of each scenario: what runs, where, and what the generator knows it moved.
//!
//! A scenario is run in two steps so that the bench can sample the monitor right before the
//! traffic starts: [`prepare`] starts the servers and waits until they listen, then
//! [`Prepared::run`] runs the client to completion and reads back what it did.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod outcome;
mod prepare;

pub use prepare::{prepare, Prepared};

use super::conditions::Condition;
use super::netns::VethPair;

/// IPv4 + UDP headers.
pub const UDP_HEADERS: u64 = 20 + 8;
/// IPv4 + TCP headers with the timestamp option, which Linux uses by default.
pub const TCP_HEADERS: u64 = 20 + 20 + 12;
/// Ethernet header that veth and lo count in their byte counters.
pub const ETH_HEADER: u64 = 14;
/// The comm of the TCP and UDP scenarios' traffic: both ends are iperf3.
pub const GENERATOR_COMM: &str = "iperf3";
/// From this many flows on, a scenario is run fewer times and without BPF statistics.
pub const HUGE_FLOWS: u64 = 1_000_000;
pub const HUGE_FLOWS_RUNS: usize = 2;
/// Bound on one flow-scale run's traffic: a million flows take minutes on a small machine.
pub const FLOWS_MAX_SECONDS: u64 = 240;
/// Flow scale: seconds of traffic before the steady-state CPU measurement starts.
pub const STEADY_AFTER_SECONDS: f64 = 6.0;
/// Flows of the one-way flow-scale scenario.
pub const ONE_WAY_FLOWS: u64 = 100_000;
/// Payload of one churn request and of its answer.
pub const CHURN_PAYLOAD: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    Loopback,
    Veth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Kind {
    /// iperf3 TCP, `streams` parallel streams.
    Tcp { streams: u32 },
    /// iperf3 UDP, 64-byte payloads, unlimited rate.
    Udp64,
    /// Short TCP connections, one short-lived process each.
    Churn,
    /// `count` distinct UDP flows: on loopback, received by the same process (both ends of
    /// every flow are on this host, so trafficd holds 2 x `count`); or `one_way`, from
    /// namespace A to addresses routed into namespace B, which drops them unreceived (trafficd
    /// holds `count`, as for a host talking to remote peers).
    Flows {
        count: u64,
        #[serde(default)]
        one_way: bool,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    pub link: Link,
    /// Seconds of traffic per run.
    pub seconds: f64,
    /// Flow scale: the monitor's CPU is also measured from this many seconds into the
    /// traffic to its end, once every flow exists: what it costs to keep watching N flows,
    /// apart from what it costs to see them all appear at once.
    #[serde(default)]
    pub steady_after: Option<f64>,
}

impl Scenario {
    /// The conditions this scenario runs under. The packet-capture tools are not run at flow
    /// scale: the point there is how trafficd's drain, memory and encoder grow with flows.
    ///
    /// A million flows take minutes per run on a small machine: that scenario runs trafficd
    /// in its default configuration only (no BPF-statistics twin, and so no empty-bpf floor
    /// either), see [`Scenario::runs`].
    pub fn conditions(&self, all: &[Condition]) -> Vec<Condition> {
        all.iter()
            .copied()
            .filter(|c| match self.kind {
                Kind::Flows { count, .. } => {
                    !c.is_capture_tool() && !c.sampled() && (count < HUGE_FLOWS || !c.bpf_stats())
                }
                // The share is of iperf3's CPU time, which only these scenarios run.
                Kind::Churn => !c.sampled(),
                Kind::Tcp { .. } | Kind::Udp64 => true,
            })
            .collect()
    }

    /// Runs of this scenario under each condition: `runs`, except at a million flows.
    pub fn runs(&self, runs: usize) -> usize {
        match self.kind {
            Kind::Flows { count, .. } if count >= HUGE_FLOWS => runs.min(HUGE_FLOWS_RUNS),
            _ => runs,
        }
    }

    /// --flow-map-size for trafficd: room for every flow the scenario makes on this host (both
    /// ends of each unless one-way), plus the host's own.
    pub fn flow_map_size(&self) -> Option<u64> {
        match self.kind {
            Kind::Flows { count, .. } => Some(self.local_ends() * count + 65_536),
            _ => None,
        }
    }

    /// Ends of each of the scenario's flows on this host: 1 when nothing receives them.
    pub fn local_ends(&self) -> u64 {
        match self.kind {
            Kind::Flows { one_way: true, .. } => 1,
            _ => 2,
        }
    }

    /// Whether anything receives the traffic (so that there is a receiving side to check).
    pub fn received(&self) -> bool {
        self.local_ends() == 2
    }

    /// What the scenario's main rate counts.
    pub fn rate_unit(&self) -> &'static str {
        match self.kind {
            Kind::Tcp { .. } => "payload bit/s",
            Kind::Udp64 => "datagrams/s received",
            Kind::Churn => "connections/s",
            Kind::Flows { .. } => "datagrams/s sent",
        }
    }

    /// MTU of the link (TCP segment size estimate: MTU minus headers).
    fn mtu(&self) -> u64 {
        match self.link {
            Link::Loopback => 65_536,
            Link::Veth => 1_500,
        }
    }
}

/// The scenarios of a full run; `quick` keeps each kind but shortens it and only goes to 10k
/// flows. `max_flows` drops larger flow counts (the 1M one needs a few GiB of memory).
pub fn all(seconds: f64, quick: bool, max_flows: u64) -> Vec<Scenario> {
    let mut list = Vec::new();
    for link in [Link::Loopback, Link::Veth] {
        let tag = match link {
            Link::Loopback => "lo",
            Link::Veth => "veth",
        };
        for streams in [1, 4] {
            list.push(Scenario {
                name: format!("tcp-{streams}-stream-{tag}"),
                kind: Kind::Tcp { streams },
                link,
                seconds,
                steady_after: None,
            });
        }
        list.push(Scenario {
            name: format!("udp-64B-{tag}"),
            kind: Kind::Udp64,
            link,
            seconds,
            steady_after: None,
        });
    }
    list.push(Scenario {
        name: "churn-veth".to_string(),
        kind: Kind::Churn,
        link: Link::Veth,
        seconds,
        steady_after: None,
    });
    let counts: &[u64] = if quick {
        &[10_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    // One-way 100k flows: the targets' "100k flows", as trafficd meets them on a host whose
    // peers are elsewhere; the two-ended loopback runs show how it grows.
    let mut flows: Vec<(u64, bool)> = counts.iter().map(|&count| (count, false)).collect();
    if !quick {
        flows.push((ONE_WAY_FLOWS, true));
        flows.sort();
    }
    for (count, one_way) in flows.into_iter().filter(|&(count, _)| count <= max_flows) {
        // A million flows are sent as fast as they go, minutes per round: no steady state.
        let steady = !quick && count < HUGE_FLOWS;
        list.push(Scenario {
            name: match one_way {
                false => format!("flows-{}", short_count(count)),
                true => format!("flows-{}-one-way", short_count(count)),
            },
            kind: Kind::Flows { count, one_way },
            link: match one_way {
                false => Link::Loopback,
                true => Link::Veth,
            },
            // Long enough that every flow was sent in at least one full drain interval, and
            // for a steady state after the flows appeared.
            seconds: match (quick, steady) {
                (true, _) => seconds.max(2.0),
                (false, true) => seconds.max(STEADY_AFTER_SECONDS * 2.0),
                (false, false) => seconds.max(4.0),
            },
            steady_after: steady.then_some(STEADY_AFTER_SECONDS),
        });
    }
    list
}

pub fn short_count(count: u64) -> String {
    match count {
        c if c >= 1_000_000 && c % 1_000_000 == 0 => format!("{}M", c / 1_000_000),
        c if c >= 1_000 && c % 1_000 == 0 => format!("{}k", c / 1_000),
        c => c.to_string(),
    }
}

/// What a run of a scenario moved, as the generator knows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Seconds the generator ran.
    pub seconds: f64,
    /// The scenario's main rate (see [`Scenario::rate_unit`]).
    pub rate: f64,
    /// Payload bits per second that arrived.
    pub goodput_bps: f64,
    pub sent_payload: u64,
    pub received_payload: u64,
    /// Datagrams (UDP, flows) or connections (churn) sent and received.
    pub sent_units: u64,
    pub received_units: u64,
    /// Processes the generator forked (churn).
    pub processes: u64,
    pub failed: u64,
    /// The process that sent and the one that received (the same one for flows; 0 for
    /// churn, whose bytes are found by comm).
    pub client_pid: u32,
    pub server_pid: u32,
    /// IP bytes the client's sockets must have sent and the server's received: payload plus
    /// the headers of the packets that carried it.
    pub expected_client_tx: u64,
    pub expected_server_rx: u64,
    /// TCP: segments iperf3 says were retransmitted.
    pub retransmits: u64,
    /// TCP: the IP bytes any one direction of the data can have crossed the hooks, from
    /// iperf3's received (low) to its sent plus retransmissions (high), headers included.
    pub range_low: u64,
    pub range_high: u64,
    /// iperf3: CPU seconds its two ends used during the test (its own getrusage figures),
    /// kernel time spent on their behalf included: trafficd's programs run in it.
    #[serde(default)]
    pub generator_cpu_seconds: Option<f64>,
    /// UDP datagrams dropped at a full receive buffer during the run (kernel counter of the
    /// receiver's namespace): they crossed the hooks but never reached the application.
    pub rcvbuf_drops: u64,
}

/// Where the bench keeps its files and finds its tools.
pub struct Env<'a> {
    pub net: &'a VethPair,
    /// A copy of the xtask binary, re-executed as the generators.
    pub xtask: PathBuf,
    /// Directory for the output of the processes of the current run.
    pub work: PathBuf,
    /// The cgroup2 mount, whose attached programs the bench watches.
    pub cgroup_root: String,
}

impl Env<'_> {
    /// Interface whose counters measure the scenario's traffic: lo, or the client's veth end.
    pub fn interface(&self, scenario: &Scenario) -> (Option<String>, String) {
        match scenario.link {
            Link::Loopback => (None, "lo".to_string()),
            Link::Veth => (Some(self.net.ns_a().to_string()), self.net.if_a.clone()),
        }
    }

    /// A command run in the client (`a`) or server (`b`) namespace of a veth scenario.
    fn command(&self, link: Link, server: bool, argv: &[String]) -> Command {
        match link {
            Link::Loopback => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
            Link::Veth => {
                // `ip netns exec` execs the program: the pid we hold is the program's.
                let ns = if server {
                    self.net.ns_b()
                } else {
                    self.net.ns_a()
                };
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).args(argv);
                cmd
            }
        }
    }

    fn server_addr(&self, link: Link) -> String {
        match link {
            Link::Loopback => "127.0.0.1".to_string(),
            Link::Veth => self.net.addr_b.to_string(),
        }
    }

    fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.work.join(format!("{name}.out")),
            self.work.join(format!("{name}.err")),
        )
    }
}

/// The last lines of a file, for error messages.
pub fn read_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// When the run started, for ordering; kept with the record.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
