//! `cargo xtask bench`: what trafficd costs and how exact it is, next to no monitoring and
//! next to nethogs (and bandwhich when it builds here).
//!
//! For every scenario the conditions alternate run by run (A B C A B C ...), so that drift of
//! the machine (other load, thermal state) spreads over all of them. Every monitor is started
//! fresh for its run and stopped after it. Results go to target/bench/results.md and
//! target/bench/results.json; a finished bench also copies the tables into the marked section
//! of docs/performance.md.
//!
//! Module map: [`plan`] (what to run, from the command line), [`one_run`] (one run of one
//! scenario under one condition) and [`record`] (what it records), [`scenarios`] (the traffic
//! and what the generator knows it moved), [`gen`] (the generators iperf3 does not cover),
//! [`conditions`] (the monitors), [`empty_bpf`] (empty programs on trafficd's hooks: the floor
//! of the BPF statistics), [`measure`] (/proc, BPF statistics, interface counters, OpenMetrics
//! text), [`api`] (trafficd's HTTP API on one kept-alive connection), [`drains`] (trafficd's
//! drains through /healthz), [`netns`] (the namespaces), [`proc`] (child processes and Ctrl-C),
//! [`sampling`] (the programs' share of the traffic's CPU by perf, statistics off), [`memory`]
//! (the machine's memory latency), [`report`] (figures, targets, markdown and JSON);
//! [`metrics_encode`] (`bench metrics-encode`: one /metrics scrape at scale, apart from the
//! runs), [`containers`] (`bench containers`: trafficd beside many and churning containers) and
//! [`peer_names`] (`bench peer-names`: the drain and /top?by=remote with 10k labelled networks)
//! and [`forwarding`] (`bench forwarding`: forwarded and NAT'd throughput, 100k NAT'd flows).

mod api;
mod conditions;
mod containers;
mod daemon;
mod drains;
mod empty_bpf;
mod forwarding;
mod gen;
mod measure;
mod memory;
mod metrics_encode;
mod monitor;
mod netns;
mod one_run;
mod peer_names;
mod plan;
mod proc;
mod record;
mod report;
mod sampling;
mod scenarios;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::{build_trafficd, is_root, setup, target_dir};
use conditions::Condition;
use monitor::{BpfStatsSysctl, Tools};
use plan::Plan;
pub use record::{CaptureFigures, MonitorFigures, ProgDelta, RunRecord, TrafficdFigures};
use scenarios::Env;

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
    /// trafficd's CPU and drain with many running containers and with containers churning.
    Containers(containers::ContainerArgs),
    /// trafficd's drain and /top?by=remote at 100k flows, without and with 10k labelled networks.
    PeerNames(peer_names::PeerNamesArgs),
    /// Throughput of forwarded and NAT'd traffic with and without trafficd, and 100k NAT'd flows.
    Forwarding(forwarding::ForwardingArgs),
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.gen {
        Some(BenchSub::Gen(cmd)) => return gen::run(cmd),
        Some(BenchSub::MetricsEncode) => return metrics_encode::run(),
        Some(BenchSub::Containers(args)) => return containers::run(args),
        Some(BenchSub::PeerNames(args)) => return peer_names::run(args),
        Some(BenchSub::Forwarding(args)) => return forwarding::run(args),
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
    let (tools, conditions) = find_tools(&args, trafficd, &plan, &mut notes)?;
    let cgroup_root = measure::cgroup2_root().context("no cgroup2 mount")?;
    let foreign_before = foreign_programs_before(&cgroup_root, &mut notes);
    let work_root = bench_dir.join("work");
    let _ = fs::remove_dir_all(&work_root);
    fs::create_dir_all(&work_root)?;
    let memory_reads = memory::read_latencies();
    println!(
        "bench: one read from memory, by working set: {}",
        memory::describe(&memory_reads)
    );
    let stats = BpfStatsSysctl::new()?;
    let settings = Settings {
        plan: &plan,
        conditions: &conditions,
        sysctl_before: stats.original().to_string(),
        built_from,
        memory_reads,
        began,
    };
    let net = create_veth_pair()?;
    let bench = Bench {
        tools: &tools,
        stats: &stats,
        net: &net,
        xtask,
        work_root,
        cgroup_root: cgroup_root.clone(),
        bench_dir: bench_dir.clone(),
    };
    let (records, outcome) = run_all(&bench, &settings, &notes)?;
    notes.extend(notes_after(&cgroup_root, &foreign_before, &conditions));
    drop(net);
    drop(stats);
    let meta = settings.meta(&notes, outcome.is_ok());
    let (md, json) = report::write(&bench_dir, &meta, &plan.scenarios, &records)?;
    println!(
        "bench: wrote {} and {} in {:.0} s",
        md.display(),
        json.display(),
        began.elapsed().as_secs_f64()
    );
    println!("bench: {}", report::publish_tables(&md, &meta));
    outcome
}

/// The namespaces and veth pair the veth scenarios run between, announced so that a person
/// watching knows what the bench created.
fn create_veth_pair() -> Result<netns::VethPair> {
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
    Ok(net)
}

/// The tools the conditions need; a condition whose tool is missing is dropped with a note,
/// a missing tool every run needs is an error.
fn find_tools(
    args: &BenchArgs,
    trafficd: PathBuf,
    plan: &Plan,
    notes: &mut Vec<String>,
) -> Result<(Tools, Vec<Condition>)> {
    let mut conditions = plan.conditions.clone();
    let nethogs = which("nethogs");
    if nethogs.is_none() {
        notes.push("nethogs: not installed (`cargo xtask setup` installs it); skipped".into());
        conditions.retain(|c| *c != Condition::Nethogs);
    }
    let mut bandwhich = None;
    if conditions.contains(&Condition::Bandwhich) {
        match monitor::find_or_install_bandwhich(
            !args.no_bandwhich,
            Duration::from_secs(args.bandwhich_install_seconds),
        ) {
            Ok(bin) => bandwhich = Some(bin),
            Err(why) => {
                notes.push(format!("bandwhich: skipped: {why}"));
                conditions.retain(|c| *c != Condition::Bandwhich);
            }
        }
    }
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
    Ok((tools, conditions))
}

/// The bench's settings, for the report; the machine's description is taken anew each time.
struct Settings<'a> {
    plan: &'a Plan,
    conditions: &'a [Condition],
    sysctl_before: String,
    built_from: report::Meta,
    memory_reads: Vec<memory::ReadLatency>,
    began: Instant,
}

impl Settings<'_> {
    fn meta(&self, notes: &[String], finished: bool) -> report::Meta {
        report::Meta {
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            runs: self.plan.runs,
            quick: self.plan.quick,
            seconds: self.plan.seconds,
            conditions: self
                .conditions
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            notes: notes.to_vec(),
            bpf_stats_sysctl_before: self.sysctl_before.clone(),
            elapsed_seconds: self.began.elapsed().as_secs_f64(),
            finished,
            git_commit: self.built_from.git_commit.clone(),
            git_dirty: self.built_from.git_dirty,
            memory_reads: self.memory_reads.clone(),
            ..report::Meta::collect()
        }
    }
}

/// What every run shares: the tools, the statistics switch, the namespaces and the places.
struct Bench<'a> {
    tools: &'a Tools,
    stats: &'a BpfStatsSysctl,
    net: &'a netns::VethPair,
    xtask: PathBuf,
    work_root: PathBuf,
    cgroup_root: String,
    bench_dir: PathBuf,
}

/// Every run of the plan, conditions alternating; partial results are written after every
/// scenario. Returns the records and whether the bench got to the end (Ctrl-C stops it).
fn run_all(
    bench: &Bench,
    settings: &Settings,
    notes: &[String],
) -> Result<(Vec<RunRecord>, Result<()>)> {
    let plan = settings.plan;
    let total_runs: usize = plan
        .scenarios
        .iter()
        .map(|s| s.conditions(settings.conditions).len() * s.runs(plan.runs))
        .sum();
    println!(
        "bench: {} scenarios, conditions {}, {} runs each: {total_runs} runs",
        plan.scenarios.len(),
        settings
            .conditions
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(" "),
        plan.runs
    );
    let mut records: Vec<RunRecord> = Vec::new();
    for scenario in &plan.scenarios {
        for round in 0..scenario.runs(plan.runs) {
            for condition in scenario.conditions(settings.conditions) {
                let progress = format!("[{}/{total_runs}]", records.len() + 1);
                let Some(record) = run_with_retry(bench, scenario, condition, round, &progress)?
                else {
                    return Ok((records, Err(anyhow::anyhow!("interrupted"))));
                };
                println!("{progress} {}", report::one_line(&record));
                records.push(record);
            }
        }
        // Partial results after every scenario: an interrupted bench still leaves figures.
        let meta = settings.meta(notes, false);
        report::write(&bench.bench_dir, &meta, &plan.scenarios, &records)?;
    }
    Ok((records, Ok(())))
}

/// One run, repeated once at once when it fails (the alternation is kept): a run can fail for
/// reasons outside the bench, such as another process on the machine. None when interrupted.
fn run_with_retry(
    bench: &Bench,
    scenario: &scenarios::Scenario,
    condition: Condition,
    round: usize,
    progress: &str,
) -> Result<Option<RunRecord>> {
    if proc::interrupted() {
        return Ok(None);
    }
    let work = bench
        .work_root
        .join(format!("{}-{}-{round}", scenario.name, condition.name()));
    fs::create_dir_all(&work)?;
    let env = Env {
        net: bench.net,
        xtask: bench.xtask.clone(),
        work,
        cgroup_root: bench.cgroup_root.clone(),
    };
    let run = || one_run::run_one(scenario, condition, round, &env, bench.tools, bench.stats);
    let mut record = run();
    if proc::interrupted() {
        return Ok(None);
    }
    if let Some(error) = record.error.clone() {
        println!("{progress} {}; retrying", report::one_line(&record));
        record = run();
        record.retried_after = Some(error);
    }
    Ok(Some(record))
}

/// BPF programs of others attached to the cgroup2 root as the bench starts, with a note: every
/// condition, the baseline included, pays for them.
fn foreign_programs_before(cgroup_root: &str, notes: &mut Vec<String>) -> Vec<(u32, String)> {
    let foreign = measure::cgroup_root_programs(cgroup_root);
    if !foreign.is_empty() {
        let names: Vec<&str> = foreign.iter().map(|(_, n)| n.as_str()).collect();
        let note = format!(
            "other BPF programs were attached to the cgroup2 root when the bench started (every condition, the baseline included, pays for them): {}",
            names.join(", ")
        );
        println!("bench: warning: {note}");
        notes.push(note);
    }
    foreign
}

/// Notes on what changed on the machine during the bench: BPF programs of others attached to
/// the cgroup2 root, empty programs of the bench left loaded.
fn notes_after(
    cgroup_root: &str,
    foreign_before: &[(u32, String)],
    conditions: &[Condition],
) -> Vec<String> {
    let mut notes = Vec::new();
    let after = measure::cgroup_root_programs(cgroup_root);
    let appeared: Vec<&str> = after
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
    notes
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
