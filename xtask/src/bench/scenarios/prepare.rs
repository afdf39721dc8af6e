//! Starting a scenario's servers, then running its client and reading back what it moved.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::outcome::{churn_outcome, flows_outcome, iperf3_cpu_seconds, udp_outcome};
use super::{
    read_tail, Env, Kind, Link, Outcome, Scenario, CHURN_PAYLOAD, FLOWS_MAX_SECONDS, TCP_HEADERS,
};
use crate::bench::netns::ONE_WAY_NETWORK;
use crate::bench::proc::{wait_for, Proc};

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
    let host = env.server_addr(scenario.link);
    let receiver_ns = match scenario.link {
        Link::Loopback => None,
        Link::Veth => Some(env.net.ns_b().to_string()),
    };
    let (servers, client_argv) = match scenario.kind {
        Kind::Tcp { .. } | Kind::Udp64 => {
            let (server, client) = iperf3(scenario, env, &host)?;
            (vec![server], client)
        }
        Kind::Churn => {
            let (server, client) = churn(scenario, env, &host)?;
            (vec![server], client)
        }
        Kind::Flows { count, one_way } => (Vec::new(), flows(scenario, env, count, one_way)),
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

/// An iperf3 server for one test (-1), listening; and its client's command line.
fn iperf3(scenario: &Scenario, env: &Env, host: &str) -> Result<(Proc, Vec<String>)> {
    // iperf3 takes whole seconds.
    let iperf_secs = format!("{}", scenario.seconds.ceil().max(1.0) as u64);
    let port = free_port(scenario.link)?;
    let argv = strings(&["iperf3", "-s", "-1", "-B", host, "-p", &port.to_string()]);
    let (out, err) = env.files("iperf3-server");
    let mut server = Proc::spawn(
        "iperf3 server",
        &mut env.command(scenario.link, true, &argv),
        &out,
        &err,
    )?;
    wait_listening(&mut server, port, &err)?;
    let mut client = strings(&[
        "iperf3",
        "-c",
        host,
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
    Ok((server, client))
}

/// The churn server, ready; and the churn client's command line.
fn churn(scenario: &Scenario, env: &Env, host: &str) -> Result<(Proc, Vec<String>)> {
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
    let client = strings(&[
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
        &format!("{}", scenario.seconds),
    ]);
    Ok((server, client))
}

/// The flow generator's command line: it is its own receiver, or sends one way.
fn flows(scenario: &Scenario, env: &Env, count: u64, one_way: bool) -> Vec<String> {
    let xtask = env.xtask.to_string_lossy().to_string();
    let mut argv = strings(&[
        &xtask,
        "bench",
        "gen",
        "flows",
        "--count",
        &count.to_string(),
        "--seconds",
        &format!("{}", scenario.seconds),
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
        Some(ns) => crate::bench::netns::ip(&["netns", "exec", ns, "cat", "/proc/net/snmp"])
            .unwrap_or_default(),
    };
    crate::bench::measure::snmp_counter(&text, "Udp", "RcvbufErrors").unwrap_or(0)
}
