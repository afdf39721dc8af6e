//! One run of one scenario under one condition: start the monitor, take the figures before,
//! run the traffic, wait for the monitor to catch up, take the figures after.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::api::Api;
use super::conditions::Condition;
use super::drains::{ending_drains, DrainSampler, Sampled};
use super::measure::{self, ProgStats};
use super::monitor::{self, BpfStatsSysctl, Monitor, Tools};
use super::record::{capture_figures, delta, MonitorFigures, RunRecord, TrafficdFigures};
use super::scenarios::{self, Env, Kind, Outcome, Scenario};
use super::{empty_bpf, gen, proc, sampling};

/// One run; never fails: an error is recorded and the bench goes on with the next run.
pub fn run_one(
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
    let mut monitor = monitor::start(condition, scenario, env, tools, stats)?;
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
    let before = Snapshot::take(pid, &prog_names)?;
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
    let traffic = run_traffic(scenario, condition, env, tools, pid, prepared)?;
    record.sampled = traffic.sampled;

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
            window_seconds: before.at.elapsed().as_secs_f64(),
            not_attached: empty.not_attached.clone(),
        });
    }
    drop(empty);

    if let Some(monitor) = monitor.as_mut() {
        wait_for_tail(monitor, scenario)?;
    }
    let after = Snapshot::take(pid, &prog_names)?;
    // Before the sampler stops: its thread may be in the middle of a 250 ms sleep.
    let seconds = before.at.elapsed().as_secs_f64();
    let drains = sampler.map(DrainSampler::stop).unwrap_or_default();
    if let Some(monitor) = monitor {
        let window = Window {
            seconds,
            before,
            after,
            steady_cpu_percent: traffic.steady_cpu_percent,
        };
        record_monitor(monitor, scenario, &traffic.outcome, window, drains, record)?;
    }
    record.outcome = Some(traffic.outcome);
    Ok(())
}

/// The monitor's CPU time and its programs' statistics at one moment.
struct Snapshot {
    at: Instant,
    cpu_seconds: Option<f64>,
    programs: Vec<ProgStats>,
}

impl Snapshot {
    fn take(pid: Option<u32>, prog_names: &BTreeMap<u32, String>) -> Result<Snapshot> {
        let at = Instant::now();
        Ok(Snapshot {
            at,
            cpu_seconds: pid.map(measure::cpu_seconds).transpose()?,
            programs: pid
                .map(|pid| measure::prog_stats(pid, prog_names))
                .unwrap_or_default(),
        })
    }
}

/// The monitor's figures from just before the traffic until after the drains that followed it.
struct Window {
    before: Snapshot,
    after: Snapshot,
    seconds: f64,
    steady_cpu_percent: Option<f64>,
}

/// What the traffic itself gave: the generator's outcome, and what was sampled meanwhile.
struct Traffic {
    outcome: Outcome,
    sampled: Option<sampling::Samples>,
    /// Flow scale: the monitor's CPU once every flow exists.
    steady_cpu_percent: Option<f64>,
}

/// Runs the prepared traffic, under perf when the condition samples, and with the monitor's
/// CPU taken again once every flow exists (flow scale).
fn run_traffic(
    scenario: &Scenario,
    condition: Condition,
    env: &Env,
    tools: &Tools,
    pid: Option<u32>,
    prepared: scenarios::Prepared,
) -> Result<Traffic> {
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
    let sampled = profiler
        .map(|p| p.stop(scenarios::GENERATOR_COMM))
        .transpose()?;
    let steady_cpu_percent = steady_start.and_then(|started| {
        let (at, before) = started.join().ok()?;
        let after = measure::cpu_seconds(pid?).ok()?;
        let seconds = at.elapsed().as_secs_f64();
        let before = before?;
        (seconds > 1.0).then(|| 100.0 * (after - before) / seconds)
    });
    Ok(Traffic {
        outcome,
        sampled,
        steady_cpu_percent,
    })
}

/// The tail: trafficd counts what it drains, so wait for two drains that began after the
/// traffic ended; a capture tool gets one refresh and a half.
fn wait_for_tail(monitor: &mut Monitor, scenario: &Scenario) -> Result<()> {
    monitor.check_alive()?;
    let Some(api) = monitor.api else {
        return proc::sleep(Duration::from_millis(1500));
    };
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
    Ok(())
}

/// The monitor's own figures, trafficd's view or a capture tool's lines, then the monitor
/// stopped.
fn record_monitor(
    mut monitor: Monitor,
    scenario: &Scenario,
    outcome: &Outcome,
    window: Window,
    drains: Sampled,
    record: &mut RunRecord,
) -> Result<()> {
    monitor.check_alive()?;
    let pid = monitor.pid();
    if let Some(api) = monitor.api {
        let mut figures = trafficd_figures(api, pid, scenario, outcome)?;
        figures.drain_us = drains.drains_us;
        figures.slowest_healthz_ms = drains.slowest_healthz_ms;
        figures.programs = window
            .after
            .programs
            .iter()
            .map(|after| {
                let before = window.before.programs.iter().find(|b| b.id == after.id);
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
        let lines = monitor::capture_lines(monitor.condition, &monitor.output);
        record.capture = Some(capture_figures(&lines, scenario, outcome));
    }
    let cpu = |s: &Snapshot| s.cpu_seconds.unwrap_or(0.0);
    record.monitor = Some(MonitorFigures {
        pid,
        startup_seconds: monitor.startup.as_secs_f64(),
        cpu_seconds: cpu(&window.after) - cpu(&window.before),
        window_seconds: window.seconds,
        peak_rss_kib,
        peak_rss_ending_kib,
        steady_cpu_percent: window.steady_cpu_percent,
        mapped_bpf_maps_kib,
        stop_seconds: stop.map(|d| d.as_secs_f64()),
    });
    Ok(())
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
        let comm = gen::CHURN_CLIENT_COMM;
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

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
