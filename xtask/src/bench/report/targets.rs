//! The targets, each next to what was measured, with pass or miss.

use serde::{Deserialize, Serialize};

use super::accuracy::{Accuracy, REF_DROPS, REF_RANGE, REF_SENT};
use super::format::{fmt_sig, fmt_spread};
use super::statistics::Spread;
use super::summary::{Floor, Summary};
use crate::bench::conditions::Condition;
use crate::bench::scenarios::{Kind, Scenario, STEADY_AFTER_SECONDS};

/// Programs that run per packet or per send/receive call: the ones the 100 ns target is for.
pub(super) const HOT_PROGRAMS: [&str; 5] = [
    "trafficd_egress",
    "trafficd_ingress",
    "trafficd_sock_send",
    "trafficd_sock_recv",
    "trafficd_tcp_consume",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Miss,
    Partial,
    NotMeasured,
}

impl Status {
    pub(super) fn label(self) -> &'static str {
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

/// A reference's name in the targets table (the accuracy table spells it out).
fn short_reference(reference: &str) -> &str {
    match reference {
        REF_RANGE => "iperf3's received..sent range + headers",
        REF_SENT => "sent payload + headers",
        REF_DROPS => "received payload + headers + receive-buffer drops",
        other => other,
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
    let mut out = rate_targets(scenarios, summaries);
    out.extend(cpu_vs_nethogs(scenarios, summaries));
    let flows = FlowScale::find(scenarios, summaries);
    out.push(flows_cpu_target(&flows));
    out.extend(program_targets(summaries));
    out.push(drain_target(&flows));
    out.push(rss_target(&flows));
    out.push(map_memory_target(&flows));
    out.extend(accuracy_targets(scenarios, summaries));
    out
}

/// Throughput and packet rate with trafficd (default configuration).
fn rate_targets(scenarios: &[Scenario], summaries: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
    let td = Condition::Trafficd;
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
    out
}

/// Userspace CPU against nethogs at the same load (per GB that crossed the link).
fn cpu_vs_nethogs(scenarios: &[Scenario], summaries: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
    let td = Condition::Trafficd;
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
    out
}

/// The flow scale scenario the "100k flows" targets are judged in.
struct FlowScale<'a> {
    at_100k: String,
    flows: Option<&'a Summary>,
    /// The two-ended scenario, quoted beside the one-way one.
    two_ended: Option<(String, &'a Summary)>,
}

impl<'a> FlowScale<'a> {
    /// "100k flows": the one-way scenario, where trafficd holds 100k flows; without it, the
    /// two-ended one (200k). The two-ended figures are quoted beside the one-way ones.
    fn find(scenarios: &[Scenario], summaries: &'a [Summary]) -> FlowScale<'a> {
        let td = Condition::Trafficd;
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
        let two_ended =
            two_ended.and_then(|name| Some((name.clone(), find(summaries, &name, td)?)));
        FlowScale {
            at_100k,
            flows,
            two_ended,
        }
    }

    /// "; <scenario> (both ends on this host, 2 x 100k flows): <figure>", when measured.
    fn beside(&self, figure: &dyn Fn(&Summary) -> Option<String>) -> String {
        self.two_ended
            .as_ref()
            .and_then(|(name, s)| {
                Some(format!(
                    "; {name} (both ends here: 200k flows): {}",
                    figure(s)?
                ))
            })
            .unwrap_or_default()
    }
}

fn flows_cpu_target(scale: &FlowScale) -> Target {
    let (at_100k, flows) = (&scale.at_100k, scale.flows);
    let beside = |figure: &dyn Fn(&Summary) -> Option<String>| scale.beside(figure);
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
    match judged {
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
        None => not_measured(what, at_100k, goal),
    }
}

/// Kernel programs: the worst scenario's median for each program.
fn program_targets(summaries: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
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
    out
}

fn drain_target(scale: &FlowScale) -> Target {
    let (at_100k, flows) = (&scale.at_100k, scale.flows);
    let beside = |figure: &dyn Fn(&Summary) -> Option<String>| scale.beside(figure);
    let what = "drain of 100k flows";
    let goal = "<= 50 ms";
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
        None => not_measured(what, at_100k, goal),
    }
}

fn rss_target(scale: &FlowScale) -> Target {
    let (at_100k, flows) = (&scale.at_100k, scale.flows);
    let beside = |figure: &dyn Fn(&Summary) -> Option<String>| scale.beside(figure);
    let what = "trafficd peak RSS at 100k flows";
    let goal = "<= 64 MiB";
    match flows.and_then(|s| s.peak_rss_mib) {
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
        None => not_measured(what, at_100k, goal),
    }
}

fn map_memory_target(scale: &FlowScale) -> Target {
    let (at_100k, flows) = (&scale.at_100k, scale.flows);
    let what = "kernel map memory bounded by config and reported";
    let goal = "bounded, reported";
    match flows.and_then(|s| Some((s.map_memory_mib?, s.flow_map_entries))) {
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
        None => not_measured(what, at_100k, goal),
    }
}

/// Accuracy: trafficd vs what the generator knows, both directions, TCP and UDP.
fn accuracy_targets(scenarios: &[Scenario], summaries: &[Summary]) -> Vec<Target> {
    let mut out = Vec::new();
    let td = Condition::Trafficd;
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
