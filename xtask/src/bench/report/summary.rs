//! The figures of one scenario under one condition: medians and spreads over its runs, ratios
//! to the baseline's medians, and each program's floor from the empty programs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::accuracy::{self, ratio, wire_ip_bytes, wire_packets, Accuracy};
use super::statistics::{spread, Spread};
use crate::bench::conditions::Condition;
use crate::bench::empty_bpf;
use crate::bench::scenarios::{Kind, Link, Scenario};
use crate::bench::{CaptureFigures, MonitorFigures, ProgDelta, RunRecord, TrafficdFigures};

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

/// Per program (by name): its average run time in each run (run_time_ns / run_cnt), its own
/// time per run sampled by perf where the run was sampled, and its runs per second of the
/// run's window, over the runs where it ran.
fn program_summaries(runs: &[(&RunRecord, &[ProgDelta], f64)]) -> BTreeMap<String, ProgramSummary> {
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

fn summarize(scenario: &Scenario, condition: Condition, records: &[&RunRecord]) -> Summary {
    let ok = ok_runs(records);
    let link = scenario.link;
    let mut s = Summary {
        scenario: scenario.name.clone(),
        condition: condition.name().to_string(),
        runs_ok: ok.len(),
        errors: records.iter().filter_map(|r| r.error.clone()).collect(),
        rate_unit: scenario.rate_unit().to_string(),
        rate: spread(ok.iter().filter_map(|r| Some(r.outcome.as_ref()?.rate))),
        wire_packets_per_second: spread(
            ok.iter()
                .filter_map(|r| Some(wire_packets(r, link)? / r.wire_seconds)),
        ),
        loadavg: spread(records.iter().map(|r| r.loadavg)),
        runs_with_foreign_programs: records.iter().filter(|r| r.foreign_programs > 0).count(),
        ..Summary::default()
    };
    add_monitor_figures(&mut s, &ok, link);
    add_program_figures(&mut s, &ok, link);
    let trafficd: Vec<(&RunRecord, &TrafficdFigures)> = ok
        .iter()
        .filter_map(|r| Some((*r, r.trafficd.as_ref()?)))
        .collect();
    if !trafficd.is_empty() {
        add_trafficd_figures(&mut s, &trafficd);
        if matches!(scenario.kind, Kind::Churn) {
            s.churn_processes_seen_ratio = spread(accuracy::processes_seen(&trafficd));
        }
        s.accuracy
            .extend(accuracy::of_trafficd(scenario, &trafficd));
    }
    let captures: Vec<(&RunRecord, &CaptureFigures)> = ok
        .iter()
        .filter_map(|r| Some((*r, r.capture.as_ref()?)))
        .collect();
    if !captures.is_empty() {
        s.accuracy
            .extend(accuracy::of_capture_tool(scenario, condition, &captures));
    }
    s
}

/// The monitoring process: its CPU (over the window, per GB and per million packets that
/// crossed the interface), its memory, how long it took to start and to stop.
fn add_monitor_figures(s: &mut Summary, ok: &[&RunRecord], link: Link) {
    let monitors: Vec<(&RunRecord, &MonitorFigures)> = ok
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
}

/// Per-program statistics (trafficd's programs, or the empty programs of empty-bpf) and the
/// kernel time of all of them together: per run, per packet, as a share of a core and of the
/// traffic's own CPU time.
fn add_program_figures(s: &mut Summary, ok: &[&RunRecord], link: Link) {
    let window = |r: &RunRecord| r.monitor.as_ref().map_or(f64::NAN, |m| m.window_seconds);
    let with_programs: Vec<(&RunRecord, &[ProgDelta], f64)> = ok
        .iter()
        .filter_map(|r| match (&r.trafficd, &r.empty_bpf) {
            (Some(t), _) => Some((*r, t.programs.as_slice(), window(r))),
            (None, Some(e)) => Some((*r, e.programs.as_slice(), e.window_seconds)),
            (None, None) => None,
        })
        .collect();
    s.programs = program_summaries(&with_programs);
    let kernel_ns =
        |programs: &[ProgDelta]| -> f64 { programs.iter().map(|p| p.run_time_ns as f64).sum() };
    let counted: Vec<&(&RunRecord, &[ProgDelta], f64)> = with_programs
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
    s.empty_not_attached = sorted_unique(
        ok.iter()
            .filter_map(|r| r.empty_bpf.as_ref())
            .flat_map(|e| e.not_attached.iter().cloned()),
    );
}

/// What trafficd itself showed: its drains, its API's answer times, its maps, lost events.
fn add_trafficd_figures(s: &mut Summary, trafficd: &[(&RunRecord, &TrafficdFigures)]) {
    let each = || trafficd.iter().map(|(_, t)| *t);
    let ms = |us: &u64| *us as f64 / 1e3;
    s.drain_ms = spread(each().flat_map(|t| t.drain_us.iter().map(ms)));
    s.longest_drain_ms = spread(each().filter_map(|t| t.drain_us.iter().max().map(ms)));
    let ended = || each().filter(|t| t.ending_done);
    s.ending_longest_drain_ms =
        spread(ended().filter_map(|t| t.ending_drain_us.iter().max().map(ms)));
    s.ending_drains = spread(ended().map(|t| t.ending_drain_us.len() as f64));
    s.metrics_get_ms =
        spread(each().filter_map(|t| spread(t.metrics_get_ms.iter().copied()).map(|s| s.median)));
    s.slowest_healthz_ms = spread(each().map(|t| t.slowest_healthz_ms));
    s.metrics_kib = spread(each().map(|t| t.metrics_bytes as f64 / 1024.0));
    s.top_flow_get_ms = spread(each().map(|t| t.top_flow_get_ms));
    s.flow_map_entries = spread(each().filter_map(|t| t.map_entries.get("FLOWS").copied()));
    s.map_memory_mib =
        spread(each().map(|t| {
            t.maps.iter().map(|m| m.memlock_bytes as f64).sum::<f64>() / (1024.0 * 1024.0)
        }));
    s.reported_map_memory_mib = spread(
        each()
            .filter(|t| t.reported_map_bytes > 0.0)
            .map(|t| t.reported_map_bytes / (1024.0 * 1024.0)),
    );
    s.lost_events = spread(each().map(|t| t.lost_events));
    s.lost_reasons = sorted_unique(each().flat_map(|t| t.lost_by_reason.keys().cloned()));
}

fn sorted_unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items.dedup();
    items
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
