//! `cargo xtask bench`: what trafficd costs and how exact it is, next to no monitoring and
//! next to nethogs (and bandwhich when it builds here).
//!
//! For every scenario the conditions alternate run by run (A B C A B C ...), so that drift of
//! the machine (other load, thermal state) spreads over all of them. Every monitor is started
//! fresh for its run and stopped after it. Results go to target/bench/results.md and
//! target/bench/results.json.
//!
//! Module map: [`scenarios`] (the traffic and what the generator knows it moved), [`gen`] (the
//! generators iperf3 does not cover), [`conditions`] (the monitors), [`empty_bpf`] (empty
//! programs on trafficd's hooks: the floor of the BPF statistics), [`measure`] (/proc, BPF
//! statistics, interface counters, OpenMetrics text), [`api`] (trafficd's HTTP API on one
//! kept-alive connection), [`netns`] (the namespaces), [`proc`] (child processes and Ctrl-C),
//! [`sampling`] (the programs' share of the traffic's CPU by perf, statistics off), [`report`]
//! (figures, targets, markdown and JSON).

mod api;
mod conditions;
mod empty_bpf;
mod gen;
mod measure;
mod memory;
mod metrics_encode;
mod netns;
mod proc;
mod report;
mod sampling;
mod scenarios;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::{build_trafficd, is_root, setup, target_dir};
use api::{Api, TopProcess};
use conditions::{BpfStatsSysctl, CaptureBytes, Condition, Monitor, Tools};
use measure::{IfCounters, MapInfo, ProgStats};
use scenarios::{Env, Kind, Outcome, Scenario};

/// `cargo xtask bench [options]`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    gen: Option<BenchSub>,
    /// Runs of every scenario under every condition (conditions alternate run by run).
    #[arg(long)]
    runs: Option<usize>,
    /// Smoke run: 2 runs, 2 s of traffic, flow scale only at 10k.
    #[arg(long)]
    quick: bool,
    /// Seconds of traffic per run (default 3; 2 with --quick; iperf3 rounds up to whole seconds).
    #[arg(long)]
    seconds: Option<f64>,
    /// Only scenarios whose name contains one of these (comma-separated), e.g. `tcp,flows-10k`.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only these conditions (comma-separated; default: all): baseline, trafficd,
    /// trafficd+bpf-stats, trafficd+perf, empty-bpf, empty-bpf-no-stats, nethogs, bandwhich.
    /// The baseline is always run: every ratio needs it. trafficd+perf runs trafficd as by
    /// default under `perf record -a` (TCP and UDP scenarios only): the programs' share of
    /// the traffic's CPU time without the statistics' own cost. empty-bpf runs no monitor: it
    /// attaches empty programs (`r0 = 1; exit` cgroup_skb on ingress and egress of the cgroup2
    /// root, `r0 = 0; exit` tp_btf on sock_send_length, sock_recv_length and
    /// tcp_rcv_space_adjust) with BPF statistics on, for the run only: the floor under
    /// trafficd's per-program run times.
    /// empty-bpf-no-stats attaches them with statistics off, as trafficd runs: the floor under
    /// its throughput ratios.
    #[arg(long, value_delimiter = ',')]
    conditions: Vec<String>,
    /// Largest flow-scale scenario (10000, 100000 or 1000000).
    #[arg(long, default_value_t = 1_000_000)]
    max_flows: u64,
    /// Do not try `cargo install bandwhich` when it is missing.
    #[arg(long)]
    no_bandwhich: bool,
    /// Time allowed for `cargo install bandwhich`, in seconds.
    #[arg(long, default_value_t = 300)]
    bandwhich_install_seconds: u64,
    /// Measure nothing: recompute the figures of target/bench/results.json and rewrite
    /// results.md and results.json.
    #[arg(long)]
    report_only: bool,
}

#[derive(Subcommand, Debug)]
enum BenchSub {
    /// Traffic generators the bench runs as processes of their own.
    #[command(subcommand, hide = true)]
    Gen(gen::GenCmd),
    /// CPU time of one /metrics scrape with 10k processes and 100k flows known.
    MetricsEncode,
}

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
fn capture_figures(
    lines: &[conditions::CaptureLine],
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
        lines: &'a [conditions::CaptureLine],
        name: &'a str,
    ) -> impl Iterator<Item = &'a conditions::CaptureLine> {
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

pub fn run(args: BenchArgs) -> Result<()> {
    match args.gen {
        Some(BenchSub::Gen(cmd)) => return gen::run(cmd),
        Some(BenchSub::MetricsEncode) => return metrics_encode::run(),
        None => {}
    }
    if args.report_only {
        let (md, json) = report::rewrite(&target_dir().join("bench"))?;
        println!("bench: rewrote {} and {}", md.display(), json.display());
        return Ok(());
    }
    if !is_root() {
        bail!("bench: must run as root (it loads BPF programs and creates network namespaces); retry with sudo");
    }
    let began = Instant::now();
    proc::install_signal_handlers();
    setup::run()?;
    let bench_dir = target_dir().join("bench");
    let bin_dir = bench_dir.join("bin");
    fs::create_dir_all(&bin_dir)?;
    // The source the binary is built from: the tree may change while the bench runs.
    let built_from = report::Meta::collect();
    // Copies: a rebuild by someone else during the bench must not change what is measured.
    let trafficd = copy_binary(&build_trafficd()?, &bin_dir.join("trafficd"))?;
    let xtask = copy_binary(&std::env::current_exe()?, &bin_dir.join("xtask"))?;

    let plan = Plan::new(&args)?;
    let mut notes = plan.notes.clone();
    let nethogs = which("nethogs");
    let mut conditions = plan.conditions.clone();
    if nethogs.is_none() {
        notes.push("nethogs: not installed (`cargo xtask setup` installs it); skipped".into());
        conditions.retain(|c| *c != Condition::Nethogs);
    }
    let bandwhich = if conditions.contains(&Condition::Bandwhich) {
        match conditions::find_or_install_bandwhich(
            !args.no_bandwhich,
            Duration::from_secs(args.bandwhich_install_seconds),
        ) {
            Ok(bin) => Some(bin),
            Err(why) => {
                notes.push(format!("bandwhich: skipped: {why}"));
                conditions.retain(|c| *c != Condition::Bandwhich);
                None
            }
        }
    } else {
        None
    };
    let perf = which("perf");
    if perf.is_none() && conditions.contains(&Condition::TrafficdSampled) {
        notes.push(
            "trafficd+perf: perf is not installed (`cargo xtask setup` installs linux-perf); \
             skipped"
                .into(),
        );
        conditions.retain(|c| *c != Condition::TrafficdSampled);
    }
    proc::check_interrupted()?;
    for tool in ["iperf3", "bpftool", "ip"] {
        if which(tool).is_none() {
            bail!("bench: `{tool}` is missing; `cargo xtask setup` installs it");
        }
    }
    let tools = Tools {
        trafficd,
        perf,
        nethogs,
        bandwhich,
    };
    let cgroup_root = measure::cgroup2_root().context("no cgroup2 mount")?;
    let foreign_before = measure::cgroup_root_programs(&cgroup_root);
    if !foreign_before.is_empty() {
        let names: Vec<&str> = foreign_before.iter().map(|(_, n)| n.as_str()).collect();
        let note = format!(
            "other BPF programs were attached to the cgroup2 root when the bench started (every condition, the baseline included, pays for them): {}",
            names.join(", ")
        );
        println!("bench: warning: {note}");
        notes.push(note);
    }

    let work_root = bench_dir.join("work");
    let _ = fs::remove_dir_all(&work_root);
    fs::create_dir_all(&work_root)?;
    let memory_reads = memory::read_latencies();
    println!(
        "bench: one read from memory, by working set: {}",
        memory::describe(&memory_reads)
    );
    let stats = BpfStatsSysctl::new()?;
    let sysctl_before = stats.original().to_string();
    let net = netns::VethPair::create()?;
    println!(
        "bench: namespaces {} and {} joined by {} ({}) <-> {} ({})",
        net.ns_a(),
        net.ns_b(),
        net.if_a,
        net.addr_a,
        net.if_b,
        net.addr_b
    );
    let mut records: Vec<RunRecord> = Vec::new();
    let total_runs: usize = plan
        .scenarios
        .iter()
        .map(|s| s.conditions(&conditions).len() * s.runs(plan.runs))
        .sum();
    println!(
        "bench: {} scenarios, conditions {}, {} runs each: {total_runs} runs",
        plan.scenarios.len(),
        conditions
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(" "),
        plan.runs
    );
    let meta = |notes: &[String], finished: bool| report::Meta {
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        runs: plan.runs,
        quick: plan.quick,
        seconds: plan.seconds,
        conditions: conditions.iter().map(|c| c.name().to_string()).collect(),
        notes: notes.to_vec(),
        bpf_stats_sysctl_before: sysctl_before.clone(),
        elapsed_seconds: began.elapsed().as_secs_f64(),
        finished,
        git_commit: built_from.git_commit.clone(),
        git_dirty: built_from.git_dirty,
        memory_reads: memory_reads.clone(),
        ..report::Meta::collect()
    };
    let mut done = 0;
    let mut outcome: Result<()> = Ok(());
    'scenarios: for scenario in &plan.scenarios {
        let conds = scenario.conditions(&conditions);
        for round in 0..scenario.runs(plan.runs) {
            for &condition in &conds {
                if proc::interrupted() {
                    outcome = Err(anyhow::anyhow!("interrupted"));
                    break 'scenarios;
                }
                done += 1;
                let work =
                    work_root.join(format!("{}-{}-{round}", scenario.name, condition.name()));
                fs::create_dir_all(&work)?;
                let env = Env {
                    net: &net,
                    xtask: xtask.clone(),
                    work,
                    cgroup_root: cgroup_root.clone(),
                };
                let mut record = run_one(scenario, condition, round, &env, &tools, &stats);
                if proc::interrupted() {
                    outcome = Err(anyhow::anyhow!("interrupted"));
                    break 'scenarios;
                }
                if let Some(error) = record.error.clone() {
                    // Once more, at once (the alternation is kept): a run can fail for reasons
                    // outside the bench, such as another process on the machine.
                    println!(
                        "[{done}/{total_runs}] {}; retrying",
                        report::one_line(&record)
                    );
                    record = run_one(scenario, condition, round, &env, &tools, &stats);
                    record.retried_after = Some(error);
                }
                println!("[{done}/{total_runs}] {}", report::one_line(&record));
                records.push(record);
            }
        }
        // Partial results after every scenario: an interrupted bench still leaves figures.
        report::write(&bench_dir, &meta(&notes, false), &plan.scenarios, &records)?;
    }
    let foreign_after = measure::cgroup_root_programs(&cgroup_root);
    let appeared: Vec<&str> = foreign_after
        .iter()
        .filter(|(id, _)| !foreign_before.iter().any(|(b, _)| b == id))
        .map(|(_, name)| name.as_str())
        .collect();
    if !appeared.is_empty() {
        notes.push(format!(
            "other BPF programs were attached to the cgroup2 root when the bench ended: {}",
            appeared.join(", ")
        ));
    }
    if conditions.iter().any(|c| c.is_empty_bpf()) {
        if let Some(left) = empty_programs_left() {
            let note = format!("empty programs still loaded after the bench: {left}");
            println!("bench: warning: {note}");
            notes.push(note);
        }
    }
    drop(net);
    drop(stats);
    let (md, json) = report::write(
        &bench_dir,
        &meta(&notes, outcome.is_ok()),
        &plan.scenarios,
        &records,
    )?;
    println!(
        "bench: wrote {} and {} in {:.0} s",
        md.display(),
        json.display(),
        began.elapsed().as_secs_f64()
    );
    outcome
}

/// What to run, from the command line.
struct Plan {
    runs: usize,
    quick: bool,
    seconds: f64,
    scenarios: Vec<Scenario>,
    conditions: Vec<Condition>,
    notes: Vec<String>,
}

impl Plan {
    fn new(args: &BenchArgs) -> Result<Plan> {
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

/// One run; never fails: an error is recorded and the bench goes on with the next run.
fn run_one(
    scenario: &Scenario,
    condition: Condition,
    round: usize,
    env: &Env,
    tools: &Tools,
    stats: &BpfStatsSysctl,
) -> RunRecord {
    let mut record = RunRecord {
        scenario: scenario.name.clone(),
        condition: Some(condition),
        round,
        started_unix: scenarios::now_unix(),
        loadavg: loadavg(),
        foreign_programs: measure::cgroup_root_programs(&env.cgroup_root).len(),
        ..RunRecord::default()
    };
    if let Err(err) = measure_run(scenario, condition, env, tools, stats, &mut record) {
        record.error = Some(format!("{err:#}"));
    }
    // Every run leaves the statistics off; the next trafficd+bpf-stats or empty-bpf run turns
    // them on.
    let _ = stats.set(false);
    record
}

fn measure_run(
    scenario: &Scenario,
    condition: Condition,
    env: &Env,
    tools: &Tools,
    stats: &BpfStatsSysctl,
    record: &mut RunRecord,
) -> Result<()> {
    let mut monitor = conditions::start(condition, scenario, env, tools, stats)?;
    // Attached for this run only: dropped (detached and released) when this function returns,
    // whichever way it does.
    let empty = condition
        .is_empty_bpf()
        .then(|| empty_bpf::EmptyPrograms::attach(&env.cgroup_root))
        .transpose()?;
    let prepared = scenarios::prepare(scenario, env)?;
    let (ns, ifname) = env.interface(scenario);
    let prog_names = if condition.is_trafficd() {
        measure::bpf_names("prog")
    } else {
        BTreeMap::new()
    };

    // Begin: the monitor's CPU time, its programs' statistics, the interface counters.
    let pid = monitor.as_ref().map(Monitor::pid);
    let window = Instant::now();
    let cpu_before = pid.map(measure::cpu_seconds).transpose()?;
    let progs_before = pid
        .map(|pid| measure::prog_stats(pid, &prog_names))
        .unwrap_or_default();
    let empty_before = empty
        .as_ref()
        .map(empty_bpf::EmptyPrograms::stats)
        .unwrap_or_default();
    let wire_before = measure::if_counters(ns.as_deref(), &ifname)?;
    let wire_started = Instant::now();
    let sampler = monitor
        .as_ref()
        .and_then(|m| m.api)
        .map(DrainSampler::start);

    // Flow scale: the CPU once every flow exists, sampled while the traffic runs.
    let steady_start = match (pid, scenario.steady_after) {
        (Some(pid), Some(after)) => Some(thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(after));
            (Instant::now(), measure::cpu_seconds(pid).ok())
        })),
        _ => None,
    };
    // Under the statistics, samples give the programs' own time per run as well (TCP and UDP,
    // where trafficd+perf runs too; when perf is there).
    let profiled = condition.sampled()
        || (condition.bpf_stats()
            && matches!(scenario.kind, Kind::Tcp { .. } | Kind::Udp64)
            && tools.perf.is_some());
    let profiler = profiled
        .then(|| {
            let perf = tools.perf.as_deref().context("perf is not installed")?;
            sampling::Profiler::start(perf, &env.work)
        })
        .transpose()?;
    let outcome = prepared.run()?;
    if let Some(profiler) = profiler {
        record.sampled = Some(profiler.stop(scenarios::GENERATOR_COMM)?);
    }
    let steady_cpu_percent = steady_start.and_then(|started| {
        let (at, before) = started.join().ok()?;
        let after = measure::cpu_seconds(pid?).ok()?;
        let seconds = at.elapsed().as_secs_f64();
        let before = before?;
        (seconds > 1.0).then(|| 100.0 * (after - before) / seconds)
    });

    thread::sleep(Duration::from_millis(50));
    let wire_after = measure::if_counters(ns.as_deref(), &ifname)?;
    record.wire_seconds = wire_started.elapsed().as_secs_f64();
    record.wire = Some(wire_after.since(&wire_before));
    // Without statistics the kernel keeps no run times: nothing to record.
    if let Some(empty) = empty.as_ref().filter(|_| condition.bpf_stats()) {
        let after = empty.stats();
        record.empty_bpf = Some(empty_bpf::EmptyFigures {
            programs: after
                .iter()
                .map(|a| delta(a, empty_before.iter().find(|b| b.id == a.id)))
                .collect(),
            window_seconds: window.elapsed().as_secs_f64(),
            not_attached: empty.not_attached.clone(),
        });
    }
    drop(empty);

    // The tail: trafficd counts what it drains, so wait for two drains that began after the
    // traffic ended; a capture tool gets one refresh and a half.
    if let Some(monitor) = monitor.as_mut() {
        monitor.check_alive()?;
        match monitor.api {
            Some(api) => {
                let mut api = Api::new(api);
                let now = api.healthz()?.drains;
                // A drain of a million flows takes seconds.
                let limit = match scenario.kind {
                    Kind::Flows { .. } => Duration::from_secs(120),
                    _ => Duration::from_secs(10),
                };
                proc::wait_for("two drains after the traffic", limit, || {
                    api.healthz().ok().filter(|h| h.drains >= now + 2)
                })?;
            }
            None => proc::sleep(Duration::from_millis(1500))?,
        }
    }
    let cpu_after = pid.map(measure::cpu_seconds).transpose()?;
    let progs_after = pid
        .map(|pid| measure::prog_stats(pid, &prog_names))
        .unwrap_or_default();
    let window_seconds = window.elapsed().as_secs_f64();
    let sampled = sampler.map(DrainSampler::stop).unwrap_or_default();

    if let Some(mut monitor) = monitor {
        monitor.check_alive()?;
        let pid = monitor.pid();
        if let Some(api) = monitor.api {
            let mut figures = trafficd_figures(api, pid, scenario, &outcome)?;
            figures.drain_us = sampled.drains_us;
            figures.slowest_healthz_ms = sampled.slowest_healthz_ms;
            figures.programs = progs_after
                .iter()
                .map(|after| {
                    let before = progs_before.iter().find(|b| b.id == after.id);
                    delta(after, before)
                })
                .collect();
            record.trafficd = Some(figures);
        }
        let peak_rss_kib = measure::status_kib(pid, "VmHWM").unwrap_or(0);
        let mapped_bpf_maps_kib = measure::mapped_bpf_maps_kib(pid).unwrap_or(0);
        let mut peak_rss_ending_kib = None;
        if let (Some(api), Some(figures)) = (monitor.api, record.trafficd.as_mut()) {
            if matches!(scenario.kind, Kind::Flows { count, .. } if count < scenarios::HUGE_FLOWS) {
                let held = figures.map_entries.get("FLOWS").copied().unwrap_or(0.0);
                (figures.ending_drain_us, figures.ending_done) = ending_drains(api, held)?;
                peak_rss_ending_kib = measure::status_kib(pid, "VmHWM");
            }
        }
        let stop = monitor.proc.stop(Duration::from_secs(10));
        if monitor.condition.is_capture_tool() {
            let lines = conditions::capture_lines(monitor.condition, &monitor.output);
            record.capture = Some(capture_figures(&lines, scenario, &outcome));
        }
        record.monitor = Some(MonitorFigures {
            pid,
            startup_seconds: monitor.startup.as_secs_f64(),
            cpu_seconds: cpu_after.unwrap_or(0.0) - cpu_before.unwrap_or(0.0),
            window_seconds,
            peak_rss_kib,
            peak_rss_ending_kib,
            steady_cpu_percent,
            mapped_bpf_maps_kib,
            stop_seconds: stop.map(|d| d.as_secs_f64()),
        });
    }
    record.outcome = Some(outcome);
    Ok(())
}

fn delta(after: &ProgStats, before: Option<&ProgStats>) -> ProgDelta {
    ProgDelta {
        name: after.name.clone(),
        run_cnt: after.run_cnt - before.map_or(0, |b| b.run_cnt.min(after.run_cnt)),
        run_time_ns: after.run_time_ns - before.map_or(0, |b| b.run_time_ns.min(after.run_time_ns)),
    }
}

/// Reads trafficd's view after the run: the generator's processes, /metrics (timed), map fill
/// and the kernel memory of its maps.
fn trafficd_figures(
    api: std::net::SocketAddr,
    pid: u32,
    scenario: &Scenario,
    outcome: &Outcome,
) -> Result<TrafficdFigures> {
    let mut figures = TrafficdFigures::default();
    let mut api = Api::new(api);
    let processes = api.top_processes()?;
    let find = |pid: u32| processes.iter().find(|p| p.pid == pid && pid != 0).cloned();
    figures.client = find(outcome.client_pid);
    figures.server = find(outcome.server_pid);
    let mut text = String::new();
    for _ in 0..3 {
        let (body, took) = api.get("/metrics", Duration::from_secs(30))?;
        figures.metrics_get_ms.push(took.as_secs_f64() * 1e3);
        text = body;
    }
    figures.metrics_bytes = text.len();
    let samples = measure::parse_metrics(&text);
    if matches!(scenario.kind, Kind::Churn) {
        let comm = scenarios::churn_comm();
        let tx = "trafficd_process_transmit_bytes_total";
        let rx = "trafficd_process_receive_bytes_total";
        figures.comm_tx_bytes = measure::metric_sum(&samples, tx, &[("comm", comm)]);
        figures.comm_rx_bytes = measure::metric_sum(&samples, rx, &[("comm", comm)]);
        figures.comm_processes = samples
            .iter()
            .filter(|s| s.name == tx && s.labels.get("comm").map(String::as_str) == Some(comm))
            .count() as u64;
    }
    figures.reported_map_bytes = measure::metric_sum(&samples, "trafficd_map_memory_bytes", &[]);
    for sample in samples.iter().filter(|s| s.name == "trafficd_map_entries") {
        if let Some(map) = sample.labels.get("map") {
            figures.map_entries.insert(map.clone(), sample.value);
        }
    }
    for sample in samples
        .iter()
        .filter(|s| s.name == "trafficd_kernel_lost_events_total" && s.value > 0.0)
    {
        let reason = sample.labels.get("reason").cloned().unwrap_or_default();
        *figures.lost_by_reason.entry(reason).or_default() += sample.value;
        figures.lost_events += sample.value;
    }
    let (_, took) = api.get("/top?by=flow&limit=10&window=10s", Duration::from_secs(30))?;
    figures.top_flow_get_ms = took.as_secs_f64() * 1e3;
    figures.longest_drain_us = api.healthz()?.longest_drain_microseconds;
    figures.maps = measure::map_infos(pid, &measure::bpf_names("map"));
    Ok(figures)
}

/// The drains while the flows of a generator that ended leave FLOWS (a process with 100k flows
/// exiting): each one's duration, polled every 250 ms until the `held` flows are gone (FLOWS
/// holds a hundredth of them, or stopped losing them by the hundredth after it started: other
/// flows of the host stay), or for a minute; and whether it got there.
fn ending_drains(api: std::net::SocketAddr, held: f64) -> Result<(Vec<u64>, bool)> {
    let mut drains_us = Vec::new();
    let mut before: Option<f64> = None;
    let mut leaving = false;
    let mut api = Api::new(api);
    let mut last = api.healthz()?.drains;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        proc::sleep(Duration::from_millis(250))?;
        let health = api.healthz()?;
        if health.drains == last {
            continue;
        }
        last = health.drains;
        drains_us.push(health.last_drain_microseconds);
        let (text, _) = api.get("/metrics", Duration::from_secs(30))?;
        let samples = measure::parse_metrics(&text);
        let entries = measure::metric_sum(&samples, "trafficd_map_entries", &[("map", "FLOWS")]);
        let step = held / 100.0;
        let left = before.is_some_and(|b| b - entries >= step);
        if entries <= step || (leaving && !left) {
            return Ok((drains_us, true));
        }
        leaving |= left;
        before = Some(entries);
    }
    Ok((drains_us, false))
}

/// What the /healthz poller saw during a run.
#[derive(Default)]
struct Sampled {
    /// `last_drain_microseconds` of every drain.
    drains_us: Vec<u64>,
    /// The slowest GET /healthz: the API waits for a drain in progress.
    slowest_healthz_ms: f64,
}

/// Polls /healthz every 250 ms during a run: the duration of every drain, and how long the
/// API took to answer.
struct DrainSampler {
    stop: Arc<AtomicBool>,
    sampled: Arc<Mutex<Sampled>>,
    thread: thread::JoinHandle<()>,
}

impl DrainSampler {
    fn start(api: std::net::SocketAddr) -> DrainSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let sampled = Arc::new(Mutex::new(Sampled::default()));
        let thread = {
            let (stop, sampled) = (stop.clone(), sampled.clone());
            thread::spawn(move || {
                let mut api = Api::new(api);
                let mut last_drains = api.healthz().map(|h| h.drains).unwrap_or(0);
                // Bounded: the run itself is bounded, and so is this loop (one hour at most).
                let deadline = Instant::now() + Duration::from_secs(3600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(250));
                    let Ok((health, took)) = api.healthz_timed() else {
                        continue;
                    };
                    let Ok(mut sampled) = sampled.lock() else {
                        break;
                    };
                    let took_ms = took.as_secs_f64() * 1e3;
                    sampled.slowest_healthz_ms = sampled.slowest_healthz_ms.max(took_ms);
                    if health.drains > last_drains {
                        last_drains = health.drains;
                        sampled.drains_us.push(health.last_drain_microseconds);
                    }
                }
            })
        };
        DrainSampler {
            stop,
            sampled,
            thread,
        }
    }

    fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let mut sampled = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *sampled)
    }
}

/// Empty programs of the bench still loaded (by anyone), after up to 2 s for the kernel to
/// free the last run's (tracepoint links are released after an RCU grace period).
fn empty_programs_left() -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<String> = measure::bpf_names("prog")
            .into_iter()
            .filter(|(_, name)| empty_bpf::hook_of(name).is_some())
            .map(|(id, name)| format!("{name} (id {id})"))
            .collect();
        if left.is_empty() {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(left.join(", "));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn copy_binary(from: &Path, to: &Path) -> Result<PathBuf> {
    // Remove first: the old copy may be running (a bench of someone else), and writing into
    // a running executable fails with ETXTBSY.
    let _ = fs::remove_file(to);
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(to.to_path_buf())
}
