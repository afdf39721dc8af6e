//! `cargo xtask bench forwarding`: what counting forwarded traffic costs a host that routes it.
//! Namespaces A and C reach each other only through the host (two veth pairs, forwarding on
//! for those two interfaces); iperf3 runs A -> C, TCP bulk and 64-byte UDP, with no monitor,
//! with empty programs on every hook trafficd uses, and with trafficd (whose tc programs
//! attach to the host's two veths), in rounds of one run each, first routed and then with the
//! host MASQUERADEing A's subnet; each run is compared with its round's unmonitored run.
//! After the rounds of each variant, one more transfer per condition with
//! kernel.bpf_stats_enabled=1 times every program a datagram or megabyte crosses: trafficd's
//! own work is its programs' time above the empty programs' on the same hooks, which a VM's
//! throughput, spreading by a fifth from run to run, cannot show.
//!
//! iperf3's two ends are sockets of this host, whose hooks a router forwarding other machines'
//! traffic does not run; so the host is also made a router proper: a routing loop between the
//! host and C (see [`RoutingLoop`]) forwards each datagram sent into it 32 times, rated by the
//! host's own count of forwarded datagrams, in rounds under the same three conditions.
//! Then 100k UDP flows go
//! through the NAT (one datagram to each of 100k addresses routed to C, which drops them), so
//! the host holds 100k conntrack entries: trafficd's CPU once they exist, its memory, and the
//! answer time of /top?by=flow.
//!
//! iperf3's two ends are sockets of this host (in A and C), so the socket hooks run for every
//! packet too, as they would not on a router whose ends are other machines: the empty
//! condition has empty programs on those hooks as well as on the tc ones, so that trafficd's
//! own work shows as the difference.
//!
//! Results go to target/bench/forwarding.json.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use trafficd_tests::{Forwarder, Link, NetNs};

use super::daemon::{Daemon, Phase};
use super::empty_bpf::{EmptyPrograms, EmptyTc};
use super::measure;
use super::monitor::BpfStatsSysctl;
use super::netns::ONE_WAY_NETWORK;
use super::proc::sleep;
use super::report::{median_interval, spread, verdict};
use crate::{build_trafficd, is_root, run_checked, target_dir};

mod condition;
mod path_switch;

pub use condition::Condition;
use path_switch::{Protocols, Switched};

const IPERF_PORT: &str = "5399";

/// `cargo xtask bench forwarding [options]`.
#[derive(Args, Debug)]
pub struct ForwardingArgs {
    /// Rounds of each variant: a run of every condition per round, their order turning
    /// round by round.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of each iperf3 transfer.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// UDP flows sent through the NAT.
    #[arg(long, default_value_t = 100_000)]
    flows: u64,
    /// Seconds of each transfer whose path switches among an unmonitored, an empty-programs
    /// and a trafficd-counted pair of veths every 200 ms (0: skip it).
    #[arg(long, default_value_t = 60)]
    switched_seconds: u32,
    /// Only the switched-path transfers: no rounds, routing loop or NAT scale.
    #[arg(long)]
    switched_only: bool,
    /// Run the switched-path transfers first with no program on any path, to show the
    /// method's own bias (the shares should be 1).
    #[arg(long)]
    switched_control: bool,
    /// Which transfers the switched paths carry: a long run can spend its time on one.
    #[arg(long, value_enum, default_value_t = Protocols::Both)]
    switched_protocols: Protocols,
    /// Measure nothing: print the report of a run saved before (its forwarding.json), with
    /// this build's statistics.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
}

/// One transfer pair (TCP then UDP) under one condition.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transfer {
    pub masquerade: bool,
    /// The round it ran in; the round's unmonitored run is what its rates are compared with.
    pub round: usize,
    pub condition: Condition,
    pub tcp_bits_per_second: f64,
    pub udp_packets_per_second: f64,
    /// trafficd's CPU over both transfers, in percent of one core.
    pub trafficd_cpu_percent: Option<f64>,
}

/// trafficd with the NAT's conntrack table full of flows.
#[derive(Debug, Serialize, Deserialize)]
pub struct NatScale {
    pub flows: u64,
    pub conntrack_entries: u64,
    /// While the flows are sent, and for as long again once they exist.
    pub sending: Phase,
    pub steady: Phase,
    pub peak_rss_kib: u64,
    pub top_flow_milliseconds: f64,
    pub top_flow_items: usize,
}

/// What the traffic cost under one condition, measured with kernel.bpf_stats_enabled=1 (which
/// adds two clock reads to every program run, the empty programs' too).
#[derive(Debug, Serialize, Deserialize)]
pub struct Cost {
    pub masquerade: bool,
    pub condition: Condition,
    /// Per 64-byte datagram received.
    pub udp: UnitCost,
    /// Per megabyte received over TCP.
    pub tcp: UnitCost,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UnitCost {
    /// Datagrams or megabytes received.
    pub units: f64,
    /// Busy CPU time of the whole host per unit (the path's kernel work, iperf3's two ends and
    /// the programs), ns.
    pub host_cpu_ns: f64,
    /// Run time of all the condition's programs together per unit, ns.
    pub programs_ns: f64,
    pub programs: Vec<ProgramCost>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs_per_unit: f64,
    pub ns_per_run: f64,
}

/// One run of the routing loop under one condition.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoopRun {
    pub round: usize,
    pub condition: Condition,
    /// Datagrams the host forwarded per second (its `ForwDatagrams`).
    pub forwarded_per_second: f64,
}

/// The routing loop's program time per forwarded datagram, with kernel.bpf_stats_enabled=1.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoopCost {
    pub condition: Condition,
    pub forwarded: f64,
    pub programs_ns: f64,
    pub programs: Vec<ProgramCost>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ForwardingResult {
    pub transfers: Vec<Transfer>,
    pub costs: Vec<Cost>,
    pub routing_loop: Vec<LoopRun>,
    pub routing_loop_costs: Vec<LoopCost>,
    pub nat_scale: Option<NatScale>,
    /// The paired comparison, paths switched every 200 ms (see `path_switch`); absent from
    /// results saved before it existed.
    #[serde(default)]
    pub switched: Vec<Switched>,
}

/// The two namespaces, their links to the host and the forwarding between them; dropped in
/// reverse order, namespaces last (which destroys the veths).
struct Topology {
    /// Held for its drop: the FORWARD rules go before the namespaces.
    _forwarder: Forwarder,
    to_a: Link,
    to_c: Link,
    a: NetNs,
    c: NetNs,
}

impl Topology {
    fn create() -> Topology {
        let a = NetNs::new("fwa");
        let c = NetNs::new("fwc");
        let to_a = Link::root_to(&a);
        let to_c = Link::root_to(&c);
        let forwarder = Forwarder::between(&a, &to_a, &c, &to_c);
        Topology {
            _forwarder: forwarder,
            to_a,
            to_c,
            a,
            c,
        }
    }

    /// The host's ends of the two veths, where tc programs count forwarded packets.
    fn host_ifindexes(&self) -> Result<Vec<u32>> {
        [self.to_a.if_a(), self.to_c.if_a()]
            .into_iter()
            .map(|name| measure::interface_number(name, "ifindex"))
            .collect()
    }

    fn subnet_a(&self) -> String {
        let ip = self.to_a.b_v4().to_string();
        let (net, _) = ip.rsplit_once('.').unwrap_or((&ip, ""));
        format!("{net}.0/24")
    }
}

/// A MASQUERADE rule for A's subnet leaving towards C, removed on drop.
struct Masquerade(Vec<String>);

impl Masquerade {
    fn add(topology: &Topology) -> Result<Masquerade> {
        let rule: Vec<String> = [
            "POSTROUTING",
            "-s",
            &topology.subnet_a(),
            "-o",
            topology.to_c.if_a(),
            "-j",
            "MASQUERADE",
        ]
        .map(String::from)
        .to_vec();
        iptables("-A", &rule)?;
        Ok(Masquerade(rule))
    }
}

impl Drop for Masquerade {
    fn drop(&mut self) {
        let _ = iptables("-D", &self.0);
    }
}

fn iptables(action: &str, rule: &[String]) -> Result<()> {
    let status = Command::new("iptables")
        .args(["-t", "nat", action])
        .args(rule)
        .status()
        .context("could not run iptables")?;
    if !status.success() {
        bail!("iptables -t nat {action} {rule:?} failed ({status})");
    }
    Ok(())
}

pub fn run(args: ForwardingArgs) -> Result<()> {
    if let Some(saved) = &args.report {
        let text = fs::read_to_string(saved).with_context(|| {
            format!(
                "read {}: give a forwarding.json a run wrote",
                saved.display()
            )
        })?;
        let result: ForwardingResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a forwarding bench's result", saved.display()))?;
        print!("{}", table(&result));
        return Ok(());
    }
    if !is_root() {
        bail!("the forwarding bench needs root (BPF, namespaces, iptables); retry with sudo");
    }
    let trafficd = build_trafficd()?;
    let xtask = std::env::current_exe()?;
    let out = target_dir().join("bench");
    fs::create_dir_all(&out)?;
    let mut switched = Vec::new();
    if args.switched_seconds > 0 {
        if args.switched_control {
            switched = path_switch::run(
                &trafficd,
                &out,
                args.switched_seconds,
                true,
                args.switched_protocols,
            )?;
        }
        switched.extend(path_switch::run(
            &trafficd,
            &out,
            args.switched_seconds,
            false,
            args.switched_protocols,
        )?);
    }
    let result = if args.switched_only {
        ForwardingResult {
            switched,
            ..ForwardingResult::default()
        }
    } else {
        let mut result = rounds(&trafficd, &xtask, &out, &args)?;
        result.switched = switched;
        result
    };
    let json = out.join("forwarding.json");
    fs::write(&json, serde_json::to_string_pretty(&result)?)?;
    print!("{}", table(&result));
    println!("bench: wrote {}", json.display());
    Ok(())
}

/// The rounds of whole transfers under each condition in turn, their costs with statistics
/// on, the routing loop and the NAT scale.
fn rounds(
    trafficd: &Path,
    xtask: &Path,
    out: &Path,
    args: &ForwardingArgs,
) -> Result<ForwardingResult> {
    let topology = Topology::create();
    let mut transfers = Vec::new();
    let mut costs = Vec::new();
    for masquerade in [false, true] {
        let _nat = masquerade.then(|| Masquerade::add(&topology)).transpose()?;
        for round in 0..args.runs {
            for condition in Condition::order_in(round) {
                let run = Run {
                    masquerade,
                    round,
                    condition,
                };
                let transfer = transfer(trafficd, out, &topology, run, args)?;
                println!("bench: forwarding {transfer:?}");
                transfers.push(transfer);
            }
        }
        // Apart from the rounds: the statistics' clock reads would weigh on their rates.
        let stats = BpfStatsSysctl::new()?;
        stats.set(true)?;
        for condition in [Condition::None, Condition::Empty, Condition::Trafficd] {
            let cost = cost(trafficd, out, &topology, masquerade, condition, args)?;
            println!(
                "bench: forwarding cost {} {}: udp {:.0} ns/datagram host, {:.0} programs; \
                 tcp {:.0} ns/MB host, {:.0} programs",
                if masquerade { "masquerade" } else { "routed" },
                condition.as_str(),
                cost.udp.host_cpu_ns,
                cost.udp.programs_ns,
                cost.tcp.host_cpu_ns,
                cost.tcp.programs_ns
            );
            costs.push(cost);
        }
    }
    let (routing_loop, routing_loop_costs) = routing_loop(trafficd, xtask, out, &topology, args)?;
    let _nat = Masquerade::add(&topology)?;
    let nat_scale = nat_scale(trafficd, xtask, out, &topology, args)?;
    Ok(ForwardingResult {
        transfers,
        costs,
        routing_loop,
        routing_loop_costs,
        nat_scale: Some(nat_scale),
        switched: Vec::new(),
    })
}

/// Which transfer is run: the variant, the round and the condition.
#[derive(Clone, Copy)]
struct Run {
    masquerade: bool,
    round: usize,
    condition: Condition,
}

/// What watches the transfers of one condition, for as long as it is held.
struct Watch {
    /// Held for its drop: detaches the empty programs.
    empty: Option<(EmptyTc, EmptyPrograms)>,
    daemon: Option<Daemon>,
}

impl Watch {
    fn start(
        trafficd: &Path,
        out: &Path,
        topology: &Topology,
        condition: Condition,
    ) -> Result<Watch> {
        let empty = (condition == Condition::Empty)
            .then(|| -> Result<_> {
                let root = measure::cgroup2_root().context("no cgroup2 mount")?;
                let tc = EmptyTc::attach(&topology.host_ifindexes()?)?;
                Ok((tc, EmptyPrograms::attach(&root)?))
            })
            .transpose()?;
        let daemon = (condition == Condition::Trafficd)
            .then(|| Daemon::start(trafficd, out, "forwarding", &[]))
            .transpose()?;
        if daemon.is_some() {
            // The tc programs attach to the interfaces the first drains find.
            sleep(Duration::from_secs(2))?;
        }
        Ok(Watch { empty, daemon })
    }

    /// Run time and runs of each program watching, by name (a program attached to several
    /// interfaces as several programs is summed), while kernel.bpf_stats_enabled is 1.
    fn program_runs(&self) -> BTreeMap<String, (u64, u64)> {
        let (pid, prefix) = match &self.daemon {
            Some(daemon) => (daemon.pid(), "trafficd_"),
            None if self.empty.is_some() => (std::process::id(), "empty_"),
            None => return BTreeMap::new(),
        };
        let mut runs = BTreeMap::new();
        for prog in measure::prog_stats(pid, &measure::bpf_names("prog")) {
            if prog.name.starts_with(prefix) {
                let entry: &mut (u64, u64) = runs.entry(prog.name).or_default();
                entry.0 += prog.run_time_ns;
                entry.1 += prog.run_cnt;
            }
        }
        runs
    }
}

fn transfer(
    trafficd: &Path,
    out: &Path,
    topology: &Topology,
    run: Run,
    args: &ForwardingArgs,
) -> Result<Transfer> {
    let condition = run.condition;
    let watch = Watch::start(trafficd, out, topology, condition)?;
    let daemon = watch.daemon.as_ref();
    let cpu_before = daemon.map(|d| measure::cpu_seconds(d.pid())).transpose()?;
    let started = std::time::Instant::now();
    let tcp = iperf3(topology, args.seconds, false)?.rate;
    let udp = iperf3(topology, args.seconds, true)?.rate;
    let trafficd_cpu_percent = match (daemon, cpu_before) {
        (Some(d), Some(before)) => {
            let used = measure::cpu_seconds(d.pid())? - before;
            Some((used / started.elapsed().as_secs_f64() * 1000.0).round() / 10.0)
        }
        _ => None,
    };
    Ok(Transfer {
        masquerade: run.masquerade,
        round: run.round,
        condition,
        tcp_bits_per_second: tcp,
        udp_packets_per_second: udp,
        trafficd_cpu_percent,
    })
}

/// One UDP and one TCP transfer under `condition`, timed by the host's busy CPU time and by
/// the programs' own run-time statistics.
fn cost(
    trafficd: &Path,
    out: &Path,
    topology: &Topology,
    masquerade: bool,
    condition: Condition,
    args: &ForwardingArgs,
) -> Result<Cost> {
    let watch = Watch::start(trafficd, out, topology, condition)?;
    let measured = |udp: bool| -> Result<UnitCost> {
        let runs_before = watch.program_runs();
        let busy_before = measure::host_busy_seconds()?;
        let received = iperf3(topology, args.seconds, udp)?;
        let busy = measure::host_busy_seconds()? - busy_before;
        let runs_after = watch.program_runs();
        let units = received.amount.max(1.0);
        let programs = program_costs(&runs_before, &runs_after, units);
        Ok(UnitCost {
            units: received.amount,
            host_cpu_ns: busy * 1e9 / units,
            programs_ns: total_ns(&programs),
            programs,
        })
    };
    let udp = measured(true)?;
    let tcp = measured(false)?;
    Ok(Cost {
        masquerade,
        condition,
        udp,
        tcp,
    })
}

/// Each program's runs per unit and time per run between two readings of
/// [`Watch::program_runs`].
fn program_costs(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    units: f64,
) -> Vec<ProgramCost> {
    after
        .iter()
        .filter_map(|(name, &(ns, runs))| {
            let (ns_before, runs_before) = before.get(name).copied().unwrap_or_default();
            let runs = runs.checked_sub(runs_before).filter(|r| *r > 0)?;
            Some(ProgramCost {
                name: name.clone(),
                runs_per_unit: runs as f64 / units,
                ns_per_run: ns.saturating_sub(ns_before) as f64 / runs as f64,
            })
        })
        .collect()
}

/// All the programs' time per unit.
fn total_ns(programs: &[ProgramCost]) -> f64 {
    programs
        .iter()
        .map(|p| p.runs_per_unit * p.ns_per_run)
        .sum()
}

/// The programs as `name runs-per-unit x ns-per-run`, for the report.
fn program_list(programs: &[ProgramCost]) -> String {
    let each: Vec<String> = programs
        .iter()
        .map(|p| format!("{} {:.2}x{:.0} ns", p.name, p.runs_per_unit, p.ns_per_run))
        .collect();
    each.join(", ")
}

/// Where the routing loop's datagrams go: routed by the host to C and by C back to the host.
const LOOP_DESTINATION: &str = "10.250.0.1";
const LOOP_NETWORK: &str = "10.250.0.0/24";

/// A routing loop through the host, so that the host forwards as a router does, with no socket
/// of its own at either end of what it forwards: a datagram from A to [`LOOP_DESTINATION`] is
/// routed by the host to C and by C back to the host, until its TTL runs out (64 hops: 32 of
/// them the host's, every one through tc ingress and egress of the host's veth to C). The one
/// send in A that starts it, and its socket hooks, are shared by those 32 forwards. Undone on
/// drop.
struct RoutingLoop<'a> {
    topology: &'a Topology,
    _host_route: HostRoute,
    rule: Vec<String>,
}

impl<'a> RoutingLoop<'a> {
    fn create(topology: &'a Topology) -> Result<RoutingLoop<'a>> {
        let to_c = topology.to_c.if_a();
        let host_route = HostRoute::add(LOOP_NETWORK, &topology.to_c.b_v4().to_string())?;
        let rule: Vec<String> = ["FORWARD", "-i", to_c, "-o", to_c, "-j", "ACCEPT"]
            .map(String::from)
            .to_vec();
        run_checked(Command::new("iptables").arg("-I").args(&rule))?;
        let looped = RoutingLoop {
            topology,
            _host_route: host_route,
            rule,
        };
        let c = looped.topology.c.name();
        run_checked(Command::new("ip").args(["netns", "exec", c]).args([
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        // A sends into the loop by the host; C sends everything of it back to the host.
        let topology = looped.topology;
        for (ns, host) in [(&topology.a, &topology.to_a), (&topology.c, &topology.to_c)] {
            ns.ip(&[
                "route",
                "add",
                LOOP_NETWORK,
                "via",
                &host.a_v4().to_string(),
            ]);
        }
        Ok(looped)
    }
}

impl Drop for RoutingLoop<'_> {
    fn drop(&mut self) {
        let c = self.topology.c.name();
        let _ = Command::new("ip")
            .args(["netns", "exec", c, "sysctl", "-qw", "net.ipv4.ip_forward=0"])
            .status();
        for ns in [c, self.topology.a.name()] {
            let _ = Command::new("ip")
                .args(["-n", ns, "route", "del", LOOP_NETWORK])
                .status();
        }
        let _ = Command::new("iptables").arg("-D").args(&self.rule).status();
    }
}

/// The host's forwarded datagrams so far (`Ip: ForwDatagrams` of /proc/net/snmp).
fn forwarded_datagrams() -> Result<u64> {
    let snmp = fs::read_to_string("/proc/net/snmp").context("read /proc/net/snmp")?;
    measure::snmp_counter(&snmp, "Ip", "ForwDatagrams")
        .context("/proc/net/snmp has no Ip: ForwDatagrams")
}

/// The routing loop driven by one small-datagram sender in A as fast as it goes, the conditions
/// in rounds as the transfers are; then one run per condition with the programs timed.
fn routing_loop(
    trafficd: &Path,
    xtask: &Path,
    out: &Path,
    topology: &Topology,
    args: &ForwardingArgs,
) -> Result<(Vec<LoopRun>, Vec<LoopCost>)> {
    let _looped = RoutingLoop::create(topology)?;
    let mut runs = Vec::new();
    for round in 0..args.runs {
        for condition in Condition::order_in(round) {
            let watch = Watch::start(trafficd, out, topology, condition)?;
            let window = drive_loop(xtask, topology, &watch, args.seconds)?;
            drop(watch);
            let run = LoopRun {
                round,
                condition,
                forwarded_per_second: window.forwarded / window.seconds,
            };
            println!("bench: forwarding {run:?}");
            runs.push(run);
        }
    }
    let stats = BpfStatsSysctl::new()?;
    stats.set(true)?;
    let mut costs = Vec::new();
    for condition in [Condition::Empty, Condition::Trafficd] {
        let watch = Watch::start(trafficd, out, topology, condition)?;
        let window = drive_loop(xtask, topology, &watch, args.seconds)?;
        let programs = program_costs(
            &window.runs_before,
            &window.runs_after,
            window.forwarded.max(1.0),
        );
        costs.push(LoopCost {
            condition,
            forwarded: window.forwarded,
            programs_ns: total_ns(&programs),
            programs,
        });
    }
    Ok((runs, costs))
}

/// What the host forwarded in a measured window of the loop, and the programs' runs at its
/// two edges.
struct LoopWindow {
    forwarded: f64,
    seconds: f64,
    runs_before: BTreeMap<String, (u64, u64)>,
    runs_after: BTreeMap<String, (u64, u64)>,
}

/// Sends into the loop from A for `seconds` and a half on either side, and measures the middle
/// `seconds`.
fn drive_loop(
    xtask: &Path,
    topology: &Topology,
    watch: &Watch,
    seconds: u32,
) -> Result<LoopWindow> {
    let mut sender = Command::new("ip")
        .args(["netns", "exec", topology.a.name()])
        // On CPU 0 as iperf3's client is: the loop runs in the softirq of the sending CPU.
        .args(["taskset", "-c", "0"])
        .arg(xtask)
        .args(["bench", "gen", "flows", "--count", "1", "--rate", "0"])
        .args(["--seconds", &(f64::from(seconds) + 1.0).to_string()])
        .args(["--one-way-to", LOOP_DESTINATION])
        .stdout(Stdio::null())
        .spawn()
        .context("could not start the loop's sender in A")?;
    let measured = (|| -> Result<LoopWindow> {
        sleep(Duration::from_millis(500))?;
        let runs_before = watch.program_runs();
        let (first, started) = (forwarded_datagrams()?, std::time::Instant::now());
        sleep(Duration::from_secs(seconds.into()))?;
        let forwarded = forwarded_datagrams()? - first;
        let seconds = started.elapsed().as_secs_f64();
        Ok(LoopWindow {
            forwarded: forwarded as f64,
            seconds,
            runs_before,
            runs_after: watch.program_runs(),
        })
    })();
    let status = sender.wait().context("the loop's sender")?;
    if !status.success() {
        bail!("the loop's sender failed ({status})");
    }
    measured
}

/// What one iperf3 transfer delivered.
struct Received {
    /// TCP bits per second, or 64-byte UDP datagrams per second.
    rate: f64,
    /// Megabytes, or datagrams.
    amount: f64,
}

/// One iperf3 transfer A -> C, as received by C.
fn iperf3(topology: &Topology, seconds: u32, udp: bool) -> Result<Received> {
    // Sender and receiver on CPUs of their own where there are two: runs that differ only
    // in where the scheduler put them would otherwise differ by more than the monitor costs.
    let pinned = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let affinity = |cpu: &'static str| if pinned { vec!["-A", cpu] } else { Vec::new() };
    let mut server = Command::new("ip")
        .args(["netns", "exec", topology.c.name()])
        .args(["iperf3", "-s", "-1", "-p", IPERF_PORT])
        .args(affinity("1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start iperf3 in C")?;
    sleep(Duration::from_millis(300))?;
    let server_ip = topology.to_c.b_v4().to_string();
    let mut client = Command::new("ip");
    client
        .args(["netns", "exec", topology.a.name()])
        .args(["iperf3", "-c", &server_ip, "-p", IPERF_PORT, "--json"])
        .args(["-t", &seconds.to_string()])
        .args(affinity("0"));
    if udp {
        client.args(["-u", "-l", "64", "-b", "0"]);
    }
    let output = client.output().context("could not run iperf3 in A")?;
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("iperf3 said: {}", String::from_utf8_lossy(&output.stderr)))?;
    let end = &report["end"];
    if udp {
        let sum = &end["sum"];
        let received =
            sum["packets"].as_f64().unwrap_or(0.0) - sum["lost_packets"].as_f64().unwrap_or(0.0);
        Ok(Received {
            rate: received / sum["seconds"].as_f64().filter(|s| *s > 0.0).unwrap_or(1.0),
            amount: received,
        })
    } else {
        let sum = &end["sum_received"];
        Ok(Received {
            rate: sum["bits_per_second"]
                .as_f64()
                .context("iperf3's report has no received rate")?,
            amount: sum["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        })
    }
}

fn nat_scale(
    trafficd: &Path,
    xtask: &Path,
    out: &Path,
    topology: &Topology,
    args: &ForwardingArgs,
) -> Result<NatScale> {
    // The generator's destinations are routed A -> host -> C, which owns none and drops them.
    let (network, prefix) = ONE_WAY_NETWORK;
    let destinations = format!("{network}/{prefix}");
    topology.a.ip(&[
        "route",
        "add",
        &destinations,
        "via",
        &topology.to_a.a_v4().to_string(),
    ]);
    let _route = HostRoute::add(&destinations, &topology.to_c.b_v4().to_string())?;
    let mut daemon = Daemon::start(trafficd, out, "forwarding", &[])?;
    sleep(Duration::from_secs(2))?;
    let seconds = Duration::from_secs(10);
    // Every flow is sent again each second for the whole measurement, so all of them stay
    // alive in conntrack and in trafficd while the steady phase and /top are measured.
    let sending_for = 2.0 * seconds.as_secs_f64() + 10.0;
    let measured = std::thread::scope(|scope| -> Result<_> {
        let generator = scope
            .spawn(|| super::gen::one_way_flows(xtask, topology.a.name(), args.flows, sending_for));
        let sending = daemon.phase(seconds, || Ok(()))?;
        let steady = daemon.phase(seconds, || Ok(()))?;
        let conntrack_entries = conntrack_count();
        let top = time_top_flows(&mut daemon)?;
        generator
            .join()
            .map_err(|_| anyhow::anyhow!("the flow generator's thread panicked"))??;
        Ok((sending, steady, conntrack_entries, top))
    })?;
    let (sending, steady, conntrack_entries, (top_flow_milliseconds, top_flow_items)) = measured;
    let peak_rss_kib = measure::status_kib(daemon.pid(), "VmHWM").unwrap_or(0);
    Ok(NatScale {
        flows: args.flows,
        conntrack_entries,
        sending,
        steady,
        peak_rss_kib,
        top_flow_milliseconds,
        top_flow_items,
    })
}

/// The median answer time of /top?by=flow&limit=100 over five asks, and how many items it
/// answered with (a figure is only worth something if the answer was a real one).
fn time_top_flows(daemon: &mut Daemon) -> Result<(f64, usize)> {
    let mut times = Vec::new();
    let mut items = 0;
    for _ in 0..5 {
        let (body, took) = daemon
            .api
            .get("/top?by=flow&limit=100", Duration::from_secs(10))?;
        let top: serde_json::Value = serde_json::from_str(&body)?;
        items = top["items"].as_array().map_or(0, Vec::len);
        times.push(took.as_secs_f64() * 1000.0);
    }
    if items == 0 {
        bail!("/top?by=flow answered without items while the flows were being sent");
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], items))
}

/// A host route to the generator's destinations, deleted on drop.
struct HostRoute(String);

impl HostRoute {
    fn add(destinations: &str, via: &str) -> Result<HostRoute> {
        trafficd_tests::ip::ip(&["route", "add", destinations, "via", via])?;
        Ok(HostRoute(destinations.to_string()))
    }
}

impl Drop for HostRoute {
    fn drop(&mut self) {
        let _ = trafficd_tests::ip::ip(&["route", "del", &self.0]);
    }
}

/// Entries in the host's conntrack table.
fn conntrack_count() -> u64 {
    fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Each condition's rate as a share of the unmonitored rate of the same round and variant:
/// median [95% interval of the median] (min-max) over the rounds, and trafficd's verdict per
/// target. Pairing by round keeps the machine's slow drift (other guests, frequency) out of
/// the ratio; the median keeps one disturbed run from moving it; the interval says whether
/// the rounds tell the median from the target at all.
fn ratios(transfers: &[Transfer]) -> String {
    let mut text = String::from(
        "\n| variant | condition | TCP of none | 64 B UDP of none |\n| --- | --- | --- | --- |\n",
    );
    let mut verdicts = String::new();
    for masquerade in [false, true] {
        let variant = if masquerade { "masquerade" } else { "routed" };
        let shares = |condition: Condition, rate: fn(&Transfer) -> f64| -> Vec<f64> {
            let of_variant = |c: Condition| {
                transfers
                    .iter()
                    .filter(move |t| t.masquerade == masquerade && t.condition == c)
            };
            of_variant(condition)
                .filter_map(|t| {
                    let none = of_variant(Condition::None).find(|n| n.round == t.round)?;
                    Some(rate(t) / rate(none))
                })
                .collect()
        };
        let tcp = |t: &Transfer| t.tcp_bits_per_second;
        let udp = |t: &Transfer| t.udp_packets_per_second;
        for condition in [Condition::Empty, Condition::Trafficd] {
            let (tcp, udp) = (shares(condition, tcp), shares(condition, udp));
            let _ = writeln!(
                text,
                "| {variant} | {} | {} | {} |",
                condition.as_str(),
                share_cell(&tcp),
                share_cell(&udp),
            );
            if condition == Condition::Trafficd {
                for (what, shares, target) in [("TCP", &tcp, 0.97), ("64 B UDP", &udp, 0.90)] {
                    let _ = writeln!(
                        verdicts,
                        "{variant}, {what}: {}",
                        verdict(shares, target, "rounds")
                    );
                }
            }
        }
    }
    text.push_str(
        "(each round's rate over the same round's unmonitored rate: median [95% interval of the \
         median] (min-max) over the rounds; targets for trafficd: TCP >= 0.97, 64 B UDP >= 0.90)\n",
    );
    text.push_str(&verdicts);
    text
}

/// Shares of the rounds' unmonitored rates as `median [interval] (min-max)`; the interval is
/// left out when there are too few rounds for one.
fn share_cell(shares: &[f64]) -> String {
    let Some(s) = spread(shares.iter().copied()) else {
        return "-".to_string();
    };
    let interval = median_interval(shares.iter().copied()).map_or(String::new(), |(low, high)| {
        format!(" [{low:.2}-{high:.2}]")
    });
    format!("{:.2}{interval} ({:.2}-{:.2})", s.median, s.min, s.max)
}

/// The host's CPU time and the programs' run time per datagram and per megabyte, and
/// trafficd's own work: its programs' time above the empty programs' on the same hooks, as a
/// share of what the unmonitored host spent on the same traffic.
fn costs_table(costs: &[Cost]) -> String {
    let mut text = String::from(
        "\nWith kernel.bpf_stats_enabled=1, one transfer each:\n\n\
         | variant | condition | host CPU ns per datagram | programs ns per datagram | \
         host CPU us per MB | programs us per MB |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for c in costs {
        let _ = writeln!(
            text,
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |",
            if c.masquerade { "masquerade" } else { "routed" },
            c.condition.as_str(),
            c.udp.host_cpu_ns,
            c.udp.programs_ns,
            c.tcp.host_cpu_ns / 1e3,
            c.tcp.programs_ns / 1e3,
        );
    }
    for masquerade in [false, true] {
        let of = |condition: Condition| {
            costs
                .iter()
                .find(|c| c.masquerade == masquerade && c.condition == condition)
        };
        let (Some(none), Some(empty), Some(trafficd)) = (
            of(Condition::None),
            of(Condition::Empty),
            of(Condition::Trafficd),
        ) else {
            continue;
        };
        let own = |pick: fn(&Cost) -> &UnitCost| {
            let above = pick(trafficd).programs_ns - pick(empty).programs_ns;
            (above, above / pick(none).host_cpu_ns)
        };
        let (udp_ns, udp_share) = own(|c| &c.udp);
        let (tcp_ns, tcp_share) = own(|c| &c.tcp);
        let _ = writeln!(
            text,
            "{}: trafficd's own work, its programs' time above the empty programs', is {:.0} ns \
             per datagram ({:.1}% of the unmonitored host's CPU time per datagram) and {:.1} us \
             per MB of TCP ({:.1}%)",
            if masquerade { "masquerade" } else { "routed" },
            udp_ns,
            udp_share * 100.0,
            tcp_ns / 1e3,
            tcp_share * 100.0,
        );
        for (condition, cost) in [("trafficd", trafficd), ("empty programs", empty)] {
            let programs = program_list(&cost.udp.programs);
            let _ = writeln!(text, "  {condition}, per datagram: {programs}");
        }
    }
    text
}

/// The routing loop's forwarding rate under each condition as a share of its round's
/// unmonitored rate, and the programs' time per forwarded datagram.
fn loop_table(runs: &[LoopRun], costs: &[LoopCost]) -> String {
    let mut text = String::from(
        "\nRouting loop (the host forwards with no socket of its own at either end; small \
         datagrams):\n\n| condition | forwarded kpps, each round | of none |\n| --- | --- | --- |\n",
    );
    let of = |condition: Condition| runs.iter().filter(move |r| r.condition == condition);
    let mut loop_verdict = String::new();
    for condition in [Condition::None, Condition::Empty, Condition::Trafficd] {
        let rates: Vec<String> = of(condition)
            .map(|r| format!("{:.0}", r.forwarded_per_second / 1e3))
            .collect();
        let shares: Vec<f64> = of(condition)
            .filter_map(|r| {
                let none = of(Condition::None).find(|n| n.round == r.round)?;
                Some(r.forwarded_per_second / none.forwarded_per_second)
            })
            .collect();
        let share = share_cell(&shares);
        let _ = writeln!(
            text,
            "| {} | {} | {share} |",
            condition.as_str(),
            rates.join(", ")
        );
        if condition == Condition::Trafficd {
            loop_verdict = verdict(&shares, 0.90, "rounds");
        }
    }
    let _ = writeln!(text, "trafficd, as a router: {loop_verdict}");
    for cost in costs {
        let _ = writeln!(
            text,
            "{}, with statistics on: {:.0} ns of programs per forwarded datagram ({})",
            cost.condition.as_str(),
            cost.programs_ns,
            program_list(&cost.programs)
        );
    }
    text
}

fn table(result: &ForwardingResult) -> String {
    let mut text = String::new();
    if !result.transfers.is_empty() {
        text.push_str(&rounds_table(result));
    }
    if let Some(n) = &result.nat_scale {
        let _ = writeln!(
            text,
            "\n{} flows through the NAT ({} conntrack entries): trafficd CPU {}% while sent, {}% \
             once they exist; peak RSS {:.1} MiB; /top?by=flow {:.1} ms ({} items) (targets: < 3% \
             of a core, < 100 ms)",
            n.flows,
            n.conntrack_entries,
            n.sending.cpu_percent,
            n.steady.cpu_percent,
            n.peak_rss_kib as f64 / 1024.0,
            n.top_flow_milliseconds,
            n.top_flow_items
        );
    }
    if !result.switched.is_empty() {
        text.push_str(
            "\nSwitched paths (one transfer, its path through the host switched every 200 ms among \
             an unmonitored, an empty-programs and a trafficd-counted pair of veths; each period \
             over the unmonitored rate at its moment: median [95% interval of the median]):\n",
        );
        for switched in &result.switched {
            let _ = writeln!(text, "{}", path_switch::summary(switched));
        }
    }
    text
}

/// The rounds' transfers, their ratios and costs, and the routing loop.
fn rounds_table(result: &ForwardingResult) -> String {
    let mut text = String::from("| variant | round | condition | TCP Gbit/s | 64 B UDP kpps | trafficd CPU |\n| --- | --- | --- | --- | --- | --- |\n");
    for t in &result.transfers {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.2} | {:.0} | {} |",
            if t.masquerade { "masquerade" } else { "routed" },
            t.round + 1,
            t.condition.as_str(),
            t.tcp_bits_per_second / 1e9,
            t.udp_packets_per_second / 1e3,
            t.trafficd_cpu_percent
                .map_or("-".to_string(), |c| format!("{c}%"))
        );
    }
    text.push_str(&ratios(&result.transfers));
    text.push_str(&costs_table(&result.costs));
    text.push_str(&loop_table(
        &result.routing_loop,
        &result.routing_loop_costs,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::{verdict, Condition};

    #[test]
    fn a_target_is_met_only_when_the_whole_interval_clears_it() {
        let rounds =
            |centre: f64| -> Vec<f64> { (0..10).map(|i| centre + 0.01 * f64::from(i)).collect() };
        // Ten rounds: the interval runs from the 2nd to the 9th smallest.
        assert!(verdict(&rounds(0.90), 0.90, "rounds").ends_with(": met"));
        assert!(verdict(&rounds(0.80), 0.90, "rounds").ends_with(": missed"));
        assert!(verdict(&rounds(0.85), 0.90, "rounds").contains("not resolved"));
        assert!(verdict(&rounds(0.95)[..5], 0.90, "rounds").contains("too few rounds (5)"));
    }

    #[test]
    fn every_condition_runs_first_once_in_three_rounds() {
        let firsts: Vec<Condition> = (0..3).map(|round| Condition::order_in(round)[0]).collect();
        assert_eq!(
            firsts,
            [Condition::None, Condition::Empty, Condition::Trafficd]
        );
        assert_eq!(Condition::order_in(3), Condition::order_in(0));
    }
}
