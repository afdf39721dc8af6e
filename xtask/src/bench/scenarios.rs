//! The traffic of each scenario: what runs, where, and what the generator knows it moved.
//!
//! A scenario is run in two steps so that the bench can sample the monitor right before the
//! traffic starts: [`prepare`] starts the servers and waits until they listen, then
//! [`Prepared::run`] runs the client to completion and reads back what it did.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::conditions::Condition;
use super::gen::{CHURN_CLIENT_COMM, FLOW_PAYLOAD};
use super::netns::{VethPair, ONE_WAY_NETWORK};
use super::proc::{wait_for, Proc};

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

/// A scenario whose servers are up, ready for its client.
pub struct Prepared {
    scenario: Scenario,
    servers: Vec<Proc>,
    client: Command,
    client_files: (PathBuf, PathBuf),
    /// The receiver's namespace, for its UDP counters (None: the bench's own).
    receiver_ns: Option<String>,
}

/// Starts the scenario's servers and waits until they listen.
pub fn prepare(scenario: &Scenario, env: &Env) -> Result<Prepared> {
    let secs = format!("{}", scenario.seconds);
    // iperf3 takes whole seconds.
    let iperf_secs = format!("{}", scenario.seconds.ceil().max(1.0) as u64);
    let host = env.server_addr(scenario.link);
    let receiver_ns = match scenario.link {
        Link::Loopback => None,
        Link::Veth => Some(env.net.ns_b().to_string()),
    };
    let mut servers = Vec::new();
    let client_argv: Vec<String> = match scenario.kind {
        Kind::Tcp { .. } | Kind::Udp64 => {
            let port = free_port(scenario.link)?;
            let argv = strings(&["iperf3", "-s", "-1", "-B", &host, "-p", &port.to_string()]);
            let (out, err) = env.files("iperf3-server");
            let mut server = Proc::spawn(
                "iperf3 server",
                &mut env.command(scenario.link, true, &argv),
                &out,
                &err,
            )?;
            wait_listening(&mut server, port, &err)?;
            servers.push(server);
            let mut client = strings(&[
                "iperf3",
                "-c",
                &host,
                "-p",
                &port.to_string(),
                "-t",
                &iperf_secs,
                "--json",
            ]);
            match scenario.kind {
                Kind::Tcp { streams } => client.extend(strings(&["-P", &streams.to_string()])),
                _ => client.extend(strings(&["-u", "-l", "64", "-b", "0"])),
            }
            client
        }
        Kind::Churn => {
            let port = free_port(scenario.link)?;
            let ready = env.work.join("churn-server.ready");
            let _ = fs::remove_file(&ready);
            let xtask = env.xtask.to_string_lossy().to_string();
            let argv = strings(&[
                &xtask,
                "bench",
                "gen",
                "churn-server",
                "--listen",
                &format!("{host}:{port}"),
                "--payload",
                &CHURN_PAYLOAD.to_string(),
                "--max-seconds",
                &format!("{}", scenario.seconds.ceil() as u64 + 60),
                "--ready-file",
                &ready.to_string_lossy(),
            ]);
            let (out, err) = env.files("churn-server");
            let mut server = Proc::spawn(
                "churn server",
                &mut env.command(scenario.link, true, &argv),
                &out,
                &err,
            )?;
            wait_for("the churn server", Duration::from_secs(10), || {
                if server.try_status().is_some() {
                    return Some(());
                }
                ready.exists().then_some(())
            })?;
            if server.try_status().is_some() {
                bail!("churn server exited: {}", read_tail(&err));
            }
            servers.push(server);
            strings(&[
                &xtask,
                "bench",
                "gen",
                "churn-client",
                "--to",
                &format!("{host}:{port}"),
                "--payload",
                &CHURN_PAYLOAD.to_string(),
                "--parallel",
                "16",
                "--max-conns",
                "200000",
                "--seconds",
                &secs,
            ])
        }
        Kind::Flows { count, one_way } => {
            let xtask = env.xtask.to_string_lossy().to_string();
            let mut argv = strings(&[
                &xtask,
                "bench",
                "gen",
                "flows",
                "--count",
                &count.to_string(),
                "--seconds",
                &secs,
                // Every flow once per second when the machine keeps up: N flows alive in
                // each one-second drain interval (1M is sent as fast as it goes).
                "--rate",
                &count.to_string(),
                "--max-seconds",
                &FLOWS_MAX_SECONDS.to_string(),
            ]);
            if one_way {
                argv.extend(strings(&["--one-way-to", &ONE_WAY_NETWORK.0.to_string()]));
            }
            argv
        }
    };
    let client = env.command(scenario.link, false, &client_argv);
    Ok(Prepared {
        scenario: scenario.clone(),
        servers,
        client,
        client_files: env.files("client"),
        receiver_ns,
    })
}

impl Prepared {
    /// Runs the client to completion (bounded) and returns what was moved.
    pub fn run(mut self) -> Result<Outcome> {
        let drops_before = udp_rcvbuf_errors(self.receiver_ns.as_deref());
        let (out, err) = self.client_files.clone();
        let mut client = Proc::spawn("traffic client", &mut self.client, &out, &err)?;
        let client_pid = client.pid();
        let limit = match self.scenario.kind {
            Kind::Flows { .. } => Duration::from_secs(FLOWS_MAX_SECONDS + 30),
            _ => Duration::from_secs_f64(self.scenario.seconds * 4.0 + 60.0),
        };
        let status = client.wait(limit)?;
        if !status.success() {
            bail!("traffic client failed ({status}): {}", read_tail(&err));
        }
        // The iperf3 server (-1) exits after its one test; the churn server is stopped.
        let server_pid = self.servers.first().map(Proc::pid).unwrap_or(0);
        for server in &mut self.servers {
            if matches!(self.scenario.kind, Kind::Churn) {
                server.stop(Duration::from_secs(3));
            } else {
                server.wait(Duration::from_secs(10))?;
            }
        }
        let rcvbuf_drops =
            udp_rcvbuf_errors(self.receiver_ns.as_deref()).saturating_sub(drops_before);
        let text = fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
        let mut outcome = match self.scenario.kind {
            Kind::Tcp { .. } => self.tcp_outcome(&text)?,
            Kind::Udp64 => udp_outcome(&text)?,
            Kind::Churn => churn_outcome(&text)?,
            Kind::Flows { .. } => flows_outcome(&text)?,
        };
        outcome.rcvbuf_drops = rcvbuf_drops;
        if outcome.client_pid == 0 && !matches!(self.scenario.kind, Kind::Churn) {
            outcome.client_pid = client_pid;
        }
        if outcome.server_pid == 0 && !matches!(self.scenario.kind, Kind::Churn) {
            outcome.server_pid = server_pid;
        }
        Ok(outcome)
    }

    fn tcp_outcome(&self, text: &str) -> Result<Outcome> {
        let json: Value = serde_json::from_str(text).context("parse iperf3 --json")?;
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            bail!("iperf3: {error}");
        }
        let end = &json["end"];
        let sent = end["sum_sent"]["bytes"].as_u64().context("no sum_sent")?;
        let received = end["sum_received"]["bytes"]
            .as_u64()
            .context("no sum_received")?;
        let seconds = end["sum_received"]["seconds"].as_f64().unwrap_or(0.0);
        let bps = end["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        // Every full segment carries MTU - headers of payload; the few short ones at the end
        // of each write add a header each, well under 0.1%.
        let segment = self.scenario.mtu() - TCP_HEADERS;
        let headers = |payload: u64| payload.div_ceil(segment) * TCP_HEADERS;
        let retransmits = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
        Ok(Outcome {
            seconds,
            generator_cpu_seconds: iperf3_cpu_seconds(end),
            rate: bps,
            goodput_bps: bps,
            sent_payload: sent,
            received_payload: received,
            expected_client_tx: sent + headers(sent),
            expected_server_rx: received + headers(received),
            retransmits,
            // iperf3 ends a test without letting its data drain: what the client wrote but
            // never sent, and what the server received but never read, are in neither
            // figure. What crossed the hooks lies between the two, plus retransmissions.
            range_low: received + headers(received),
            range_high: sent + headers(sent) + retransmits * self.scenario.mtu(),
            ..Outcome::default()
        })
    }
}

/// CPU seconds of both iperf3 ends over the test, from the utilization each reports (percent
/// of one core over the client's test time).
fn iperf3_cpu_seconds(end: &Value) -> Option<f64> {
    let cpu = &end["cpu_utilization_percent"];
    let percent = cpu["host_total"].as_f64()? + cpu["remote_total"].as_f64()?;
    let seconds = end["sum_sent"]["seconds"].as_f64()?;
    Some(percent / 100.0 * seconds)
}

fn udp_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text).context("parse iperf3 --json")?;
    if let Some(error) = json.get("error").and_then(Value::as_str) {
        bail!("iperf3: {error}");
    }
    let end = &json["end"];
    let sent_packets = end["sum_sent"]["packets"].as_u64().context("no packets")?;
    let sent_bytes = end["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let lost = end["sum_received"]["lost_packets"].as_u64().unwrap_or(0);
    let received_packets = sent_packets.saturating_sub(lost);
    let received_bytes = end["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let seconds = end["sum_received"]["seconds"].as_f64().unwrap_or(0.0);
    let payload = sent_bytes.checked_div(sent_packets).unwrap_or(64);
    Ok(Outcome {
        seconds,
        generator_cpu_seconds: iperf3_cpu_seconds(end),
        rate: per_second(received_packets, seconds),
        goodput_bps: per_second(received_bytes * 8, seconds),
        sent_payload: sent_bytes,
        received_payload: received_bytes,
        sent_units: sent_packets,
        received_units: received_packets,
        expected_client_tx: sent_packets * (payload + UDP_HEADERS),
        expected_server_rx: received_packets * (payload + UDP_HEADERS),
        ..Outcome::default()
    })
}

fn churn_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text.trim()).context("parse churn client output")?;
    let number = |key: &str| json[key].as_u64().unwrap_or(0);
    let seconds = json["seconds"].as_f64().unwrap_or(0.0);
    let ok = number("connections_ok");
    Ok(Outcome {
        seconds,
        rate: per_second(ok, seconds),
        goodput_bps: per_second(number("payload_received") * 8, seconds),
        sent_payload: number("payload_sent"),
        received_payload: number("payload_received"),
        sent_units: number("processes"),
        received_units: ok,
        processes: number("processes"),
        failed: number("connections_failed"),
        // Found by comm, and compared with the client namespace's interface counters.
        client_pid: 0,
        server_pid: 0,
        ..Outcome::default()
    })
}

fn flows_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text.trim()).context("parse flows output")?;
    let number = |key: &str| json[key].as_u64().unwrap_or(0);
    let seconds = json["seconds"].as_f64().unwrap_or(0.0);
    let (sent, received) = (number("sent"), number("received"));
    let payload = FLOW_PAYLOAD as u64;
    let pid = number("pid") as u32;
    Ok(Outcome {
        seconds,
        rate: per_second(sent, seconds),
        goodput_bps: per_second(received * payload * 8, seconds),
        sent_payload: sent * payload,
        received_payload: received * payload,
        sent_units: sent,
        received_units: received,
        client_pid: pid,
        server_pid: pid,
        expected_client_tx: sent * (payload + UDP_HEADERS),
        expected_server_rx: received * (payload + UDP_HEADERS),
        ..Outcome::default()
    })
}

/// The comm whose processes carry a churn run's bytes.
pub fn churn_comm() -> &'static str {
    CHURN_CLIENT_COMM
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A TCP port nobody listens on: loopback asks the kernel; in the bench's own namespaces
/// every port is free.
fn free_port(link: Link) -> Result<u16> {
    match link {
        Link::Loopback => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(listener.local_addr()?.port())
        }
        Link::Veth => Ok(5201),
    }
}

/// Waits until `server` has a TCP socket listening on `port` (read from its own
/// /proc/<pid>/net/tcp, i.e. in its namespace).
fn wait_listening(server: &mut Proc, port: u16, stderr: &Path) -> Result<()> {
    let pid = server.pid();
    let wanted = format!(":{port:04X}");
    wait_for(
        "the iperf3 server to listen",
        Duration::from_secs(10),
        || {
            if server.try_status().is_some() {
                return Some(());
            }
            let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
            table
                .lines()
                .skip(1)
                .any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
                })
                .then_some(())
        },
    )?;
    if let Some(status) = server.try_status() {
        bail!("iperf3 server exited ({status}): {}", read_tail(stderr));
    }
    Ok(())
}

/// `Udp: ... RcvbufErrors` of a namespace (None: the bench's own), from /proc/net/snmp.
fn udp_rcvbuf_errors(ns: Option<&str>) -> u64 {
    let text = match ns {
        None => fs::read_to_string("/proc/net/snmp").unwrap_or_default(),
        Some(ns) => {
            super::netns::ip(&["netns", "exec", ns, "cat", "/proc/net/snmp"]).unwrap_or_default()
        }
    };
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let [names, values, ..] = lines.as_slice() else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
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
