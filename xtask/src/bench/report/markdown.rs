//! target/bench/results.md: what ran, the targets, and one table per concern.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::accuracy::*;
use super::format::{fmt_rate, fmt_ratio, fmt_sig, fmt_spread_sig};
use super::statistics::spread;
use super::summary::Summary;
use super::targets::Target;
use super::Meta;
use crate::bench::conditions::Condition;
use crate::bench::empty_bpf;
use crate::bench::memory;
use crate::bench::scenarios::{Scenario, STEADY_AFTER_SECONDS};

pub(super) fn markdown(
    meta: &Meta,
    scenarios: &[Scenario],
    summaries: &[Summary],
    targets: &[Target],
) -> String {
    let mut md = String::new();
    header(&mut md, meta);
    what_runs(&mut md, meta);
    targets_table(&mut md, targets);
    throughput_table(&mut md, scenarios, summaries);
    programs_table(&mut md, summaries);
    empty_programs_table(&mut md, summaries);
    flow_scale_table(&mut md, summaries);
    accuracy_table(&mut md, summaries);
    start_stop_table(&mut md, summaries);
    failed_runs(&mut md, summaries);
    md
}

/// The date, the machine, the commit and the bench's settings; notes.
fn header(md: &mut String, meta: &Meta) {
    let _ = writeln!(md, "# trafficd benchmark\n");
    let _ = writeln!(
        md,
        "{}: {} x {}, {:.0} GiB, Linux {}; trafficd {}{}. `cargo xtask {}`: {} runs per scenario and condition, conditions alternating run by run, {} s of traffic per run; the bench took {:.1} min{}.\n",
        meta.date_utc,
        meta.cpus,
        if meta.cpu_model.is_empty() { "CPU" } else { &meta.cpu_model },
        meta.memory_gib,
        meta.kernel,
        meta.git_commit,
        if meta.git_dirty { " (with uncommitted changes)" } else { "" },
        meta.command,
        meta.runs,
        meta.seconds,
        meta.elapsed_seconds / 60.0,
        if meta.finished { "" } else { " (NOT FINISHED: partial results)" },
    );
    if !meta.memory_reads.is_empty() {
        let _ = writeln!(
            md,
            "One read from memory on this machine, by working set (a chase of dependent loads through cache lines in random order, before the first run): {}. A packet pays the larger figures for state its CPU's caches no longer hold.\n",
            memory::describe(&meta.memory_reads)
        );
    }
    if !meta.notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for note in &meta.notes {
            let _ = writeln!(md, "- {note}");
        }
        let _ = writeln!(md);
    }
}

/// Every scenario and condition in a sentence or two.
fn what_runs(md: &mut String, meta: &Meta) {
    let _ = writeln!(md, "## What runs\n");
    let _ = writeln!(
        md,
        "- tcp-N-stream-lo / -veth: `iperf3 -c <server> -t {secs} -P N` against `iperf3 -s -1`; veth: client in namespace A, server in namespace B, MTU 1500 (lo: 65536).\n\
         - udp-64B-lo / -veth: `iperf3 -u -l 64 -b 0 -t {secs}`; the rate is what the server received.\n\
         - churn-veth: `xtask bench gen churn-client --parallel 16` forks one process per connection (connect, send 64 B, read the 64-byte answer to EOF, close, exit) against `churn-server` in namespace B, for {secs} s.\n\
         - flows-N: `xtask bench gen flows --count N --rate N`: one UDP socket sends a 16-byte datagram to each of N addresses 127.1.0.0 + i (every flow once per second when the machine keeps up, at least one full round), received by one wildcard socket of the same process, so both ends of every flow are on this host (2N flows for trafficd); 10k and 100k flows for 12 s, so that the CPU once every flow exists is measured over the last 6.\n\
         - flows-100k-one-way: the same generator with `--one-way-to 10.224.0.0`, in namespace A: 100k addresses routed to namespace B, which neither owns nor forwards them and drops them on arrival, unanswered. trafficd holds 100k flows, as on a host whose peers are elsewhere; the targets' \"100k flows\" are judged here, the two-ended flows-100k quoted beside.\n\
         - Conditions: baseline (nothing); trafficd (`trafficd run --interval 1s`, defaults; flow scale adds --flow-map-size 2N + 65536), started before each run and stopped after it, /healthz polled 4 times a second on one kept-alive connection; trafficd+bpf-stats (the same with sysctl kernel.bpf_stats_enabled=1; in TCP and UDP also sampled as below, for the programs' own time per run); trafficd+perf (TCP and UDP only: trafficd as by default while `perf record -a -e cpu-clock --call-graph fp -F 4999` samples every CPU; the share of iperf3's and the softirq threads' samples taken in trafficd's programs or in what they called, without the statistics' own clock reads); \
         empty-bpf (no monitor: empty programs on trafficd's hooks, attached for the run through BPF links beside any others, with kernel.bpf_stats_enabled=1: `r0 = 1; exit` as cgroup_skb on ingress and egress of the cgroup2 root, `r0 = 0; exit` as tp_btf on sock_send_length, sock_recv_length and tcp_rcv_space_adjust; what any program on those hooks costs here, statistics included: the floor under trafficd's per-program figures); empty-bpf-no-stats (the same programs with the statistics off, as trafficd runs: the floor under its throughput ratios); nethogs (`nethogs -a -t -v 2 -C -d 1 <interface>`); bandwhich (`bandwhich --raw -n -t -p -i <interface>`). For veth the capture tools run in namespace A on its veth end, where /proc/net shows the client's sockets.\n",
        secs = meta.seconds
    );
}

/// The targets with pass or miss.
fn targets_table(md: &mut String, targets: &[Target]) {
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | scenario | measured: median (min–max) | goal | result |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for t in targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            t.target,
            t.scenario,
            t.measured,
            t.goal,
            t.status.label()
        );
    }
}

/// Throughput next to the baseline, and what the monitor and the programs cost.
fn throughput_table(md: &mut String, scenarios: &[Scenario], summaries: &[Summary]) {
    let kind_of = |name: &str| scenarios.iter().find(|s| s.name == name).map(|s| s.kind);
    let _ = writeln!(md, "\n## Throughput and cost\n");
    let _ = writeln!(
        md,
        "Ratios are each run's figure over the baseline's median: median (min–max) over the runs. \
         Rate: TCP payload throughput, UDP datagrams received, churn connections completed, flows datagrams sent. \
         CPU: user + system time of the monitoring process from just before the traffic until the drains after it (trafficd) \
         or 1.5 s after it (capture tools); per GB and per million packets of what crossed the interface (IP bytes; lo, or both \
         directions of the client's veth end; a GSO packet counts once). Kernel: the sum of run_time_ns of trafficd's programs \
         (BPF statistics on), or under empty-bpf of the empty programs; as a share of iperf3's CPU: that sum over the CPU time \
         iperf3's two ends report for the test (the programs run in their time), what they take from a CPU-bound transfer, \
         steadier here than the throughput ratios. Peak RSS: VmHWM.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | condition | runs | rate | rate vs baseline | wire pkt/s vs baseline | monitor CPU % of a core | CPU s per GB | CPU s per M packets | peak RSS MiB | kernel ns per packet | kernel % of a core | kernel % of iperf3's CPU | load avg | runs beside others' BPF programs |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in summaries {
        let rate = match (kind_of(&s.scenario), s.rate) {
            (Some(kind), Some(r)) => fmt_rate(kind, r.median),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.scenario,
            s.condition,
            s.runs_ok,
            if s.errors.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", s.errors.len())
            },
            rate,
            fmt_ratio(s.rate_vs_baseline),
            fmt_ratio(s.wire_pps_vs_baseline),
            fmt_spread_sig(s.cpu_percent_of_core),
            fmt_spread_sig(s.cpu_seconds_per_gb),
            fmt_spread_sig(s.cpu_seconds_per_mpkt),
            fmt_spread_sig(s.peak_rss_mib),
            fmt_spread_sig(s.kernel_ns_per_wire_packet),
            fmt_spread_sig(s.kernel_percent_of_core),
            fmt_spread_sig(s.kernel_percent_of_generator_cpu),
            s.loadavg
                .map_or("-".to_string(), |l| format!("{:.1}", l.median)),
            s.runs_with_foreign_programs,
        );
    }
}

/// trafficd's programs, each next to the empty program on its hook.
fn programs_table(md: &mut String, summaries: &[Summary]) {
    let _ = writeln!(md, "\n## trafficd's kernel programs (BPF statistics on)\n");
    let _ = writeln!(
        md,
        "Average run time per invocation (run_time_ns / run_cnt over the run) and invocations per second; median (min–max) over the runs. \
         Floor: the average run time of an empty program on the same hook, measured the same way in the same scenario under empty-bpf \
         (the conditions alternate run by run): the cost of reaching any program on that hook and of the statistics' own clock reads. \
         Above the floor: the program's median minus the floor's median, what the program's own instructions cost. \
         Own time, sampled (TCP and UDP, in the same runs): the CPU time of perf's samples (`perf record -a -e cpu-clock -F {FREQ}`, kernel call chains) \
         taken in the program or in a kernel function it called, over its runs; the clock reads and the code that reaches the program lie outside it, \
         so it measures the program alone; the empty program's, in brackets, is what entering any program costs (fetching its code).\n",
        FREQ = crate::bench::sampling::FREQUENCY,
    );
    let _ = writeln!(
        md,
        "| scenario | program | ns per run | floor: empty program on the same hook, ns per run | above the floor, ns | own time per run, sampled, ns (empty program) | runs per second | kernel ms per run (all programs) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in summaries
        .iter()
        .filter(|s| s.condition == Condition::TrafficdBpfStats.name())
    {
        for (name, p) in &s.programs {
            let floor = s.floors.get(name);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.scenario,
                name,
                fmt_spread_sig(p.avg_ns),
                floor.map_or("-".to_string(), |f| format!(
                    "{} ({})",
                    fmt_spread_sig(f.empty_avg_ns),
                    f.empty_program
                )),
                floor
                    .and_then(|f| f.above_floor_ns)
                    .map_or("-".to_string(), |ns| format!("{ns:.0}")),
                match (p.sampled_ns, floor.and_then(|f| f.empty_sampled_ns)) {
                    (None, _) => "-".to_string(),
                    (own, None) => fmt_spread_sig(own),
                    (own, empty) => format!("{} ({})", fmt_spread_sig(own), fmt_spread_sig(empty)),
                },
                fmt_spread_sig(p.runs_per_second),
                fmt_spread_sig(s.kernel_ms_per_run),
            );
        }
    }
}

/// The empty programs of empty-bpf, and those that could not be attached.
fn empty_programs_table(md: &mut String, summaries: &[Summary]) {
    let empties: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.condition == Condition::EmptyBpf.name())
        .collect();
    if !empties.is_empty() {
        let _ = writeln!(md, "\n## Empty programs: the floor (empty-bpf)\n");
        let _ = writeln!(
            md,
            "Empty programs on trafficd's hooks, no monitor running, BPF statistics on; measured like trafficd's programs \
             (run_time_ns / run_cnt over the run, from the fdinfo of their file descriptors). Runs per second: over the traffic \
             and 50 ms after it (trafficd's window also holds the two drains after the traffic).\n"
        );
        let _ = writeln!(
            md,
            "| scenario | empty program | hook | ns per run | own time per run, sampled, ns | runs per second | floor of |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        for s in &empties {
            for (name, p) in &s.programs {
                let hook = empty_bpf::hook_of(name);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    s.scenario,
                    name,
                    hook.map_or("?", |h| h.hook),
                    fmt_spread_sig(p.avg_ns),
                    fmt_spread_sig(p.sampled_ns),
                    fmt_spread_sig(p.runs_per_second),
                    hook.map_or("?", |h| h.trafficd_program),
                );
            }
        }
        let not_attached: Vec<&String> = empties
            .iter()
            .flat_map(|s| s.empty_not_attached.iter())
            .collect();
        if !not_attached.is_empty() {
            let _ = writeln!(md, "\nNot attached (no floor for these hooks):\n");
            let mut seen: Vec<&String> = Vec::new();
            for line in not_attached {
                if !seen.contains(&line) {
                    let _ = writeln!(md, "- {}", line.replace('|', "/"));
                    seen.push(line);
                }
            }
        }
    }
}

/// Drains, API times and memory with many flows.
fn flow_scale_table(md: &mut String, summaries: &[Summary]) {
    let _ = writeln!(md, "\n## Flow scale\n");
    let _ = writeln!(
        md,
        "One UDP socket sends one 16-byte datagram to each of N loopback addresses (127.1.0.0 + i) and receives them on one wildcard socket: \
         2N flows in trafficd's flow map (both ends), run with --flow-map-size 2N + 65536; one-way: N flows, --flow-map-size N + 65536. Drain: `last_drain_microseconds` of every \
         drain during the run (/healthz polled every 250 ms). Flows ending: once the generator exited, the drains until \
         its flows left FLOWS (retired at most 16,384 a drain; FLOWS at a hundredth of them, or no longer losing them): the longest, and how many. \
         GET times are whole requests after the run. \
         CPU once every flow exists: from {} s into the traffic to its end (10k and 100k flows run {} s for it).\n",
        fmt_sig(STEADY_AFTER_SECONDS),
        fmt_sig(2.0 * STEADY_AFTER_SECONDS)
    );
    let _ = writeln!(
        md,
        "| scenario | condition | flow map entries | drain ms | longest drain ms | flows ending: longest drain ms | flows ending: drains | GET /metrics ms | /metrics KiB | GET /top?by=flow ms | slowest GET /healthz during the run, ms | peak RSS MiB | of which mapped flow counters MiB | CPU % of a core | CPU % once every flow exists | kernel map memory MiB | lost events |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for s in summaries
        .iter()
        .filter(|s| s.drain_ms.is_some() || s.metrics_get_ms.is_some())
    {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.scenario,
            s.condition,
            fmt_spread_sig(s.flow_map_entries),
            fmt_spread_sig(s.drain_ms),
            fmt_spread_sig(s.longest_drain_ms),
            fmt_spread_sig(s.ending_longest_drain_ms),
            fmt_spread_sig(s.ending_drains),
            fmt_spread_sig(s.metrics_get_ms),
            fmt_spread_sig(s.metrics_kib),
            fmt_spread_sig(s.top_flow_get_ms),
            fmt_spread_sig(s.slowest_healthz_ms),
            fmt_spread_sig(s.peak_rss_mib),
            fmt_spread_sig(s.mapped_bpf_maps_mib),
            fmt_spread_sig(s.cpu_percent_of_core),
            fmt_spread_sig(s.steady_cpu_percent),
            fmt_spread_sig(s.map_memory_mib),
            if s.lost_reasons.is_empty() {
                fmt_spread_sig(s.lost_events)
            } else {
                format!(
                    "{} ({})",
                    fmt_spread_sig(s.lost_events),
                    s.lost_reasons.join(", ")
                )
            },
        );
    }
}

/// Each tool's bytes over each reference.
fn accuracy_table(md: &mut String, summaries: &[Summary]) {
    let _ = writeln!(md, "\n## Accuracy\n");
    let _ = writeln!(
        md,
        "Bytes each tool reports for the generator's processes (trafficd: lifetime bytes of the pid in /top; nethogs: its last \
         cumulative refresh for the pid; bandwhich: the largest line with the generator's name, it has no pids) over what the \
         generator knows it moved. trafficd counts IP bytes, so the reference adds the headers of the packets that carried \
         the payload (TCP: one 52-byte header per MTU-sized segment; UDP: 28 bytes per datagram); the raw ratio to the payload \
         is shown too. Churn: the sum over all churn client processes against the client namespace's veth counters, whose \
         only traffic is the churn. A process the tool did not list counts as 0.\n"
    );
    let _ = writeln!(
        md,
        "Each cell: median ratio over the runs [the run farthest from 1]. Columns: the generator's own figure (iperf3's sent \
         bytes for tx, received for rx; churn: processes forked) plus headers; for TCP the range between iperf3's received and \
         sent (+ retransmissions), since iperf3 ends a test without letting its data drain (1 = inside); for UDP the received \
         datagrams plus those the kernel dropped at the server's full receive buffer (they crossed the hook); the client veth's \
         own packet counters; the payload alone.\n"
    );
    let columns: [(&str, &[&str]); 4] = [
        (
            "generator + headers",
            &[REF_SENT, REF_RECEIVED, REF_PROCESSES],
        ),
        ("iperf3 range / + rcvbuf drops", &[REF_RANGE, REF_DROPS]),
        (
            "client veth counters",
            &[REF_WIRE, REF_CHURN_OUT, REF_CHURN_IN, REF_CHURN_BOTH],
        ),
        ("payload only (raw)", &[REF_RAW_SENT, REF_RAW_RECEIVED]),
    ];
    let _ = writeln!(
        md,
        "| scenario | tool | bytes | {} | {} | {} | {} |",
        columns[0].0, columns[1].0, columns[2].0, columns[3].0
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for s in summaries {
        let mut rows: Vec<&str> = Vec::new();
        for a in &s.accuracy {
            if !rows.contains(&a.what.as_str()) {
                rows.push(&a.what);
            }
        }
        for what in rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|(_, refs)| {
                    s.accuracy
                        .iter()
                        .filter(|a| a.what == what && refs.contains(&a.reference.as_str()))
                        .map(|a| format!("{:.4} [{:.4}]", a.ratio.median, a.worst))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_string()
                    } else {
                        cell
                    }
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {what} | {} |",
                s.scenario,
                s.condition,
                cells.join(" | ")
            );
        }
    }
}

/// How long each monitor took to start and to stop.
fn start_stop_table(md: &mut String, summaries: &[Summary]) {
    let _ = writeln!(md, "\n## Monitors starting and stopping\n");
    let _ = writeln!(md, "Start: until trafficd finished its first drain, or 1 s for the capture tools. Stop: SIGTERM to exit.\n");
    let _ = writeln!(md, "| condition | start s | stop s |");
    let _ = writeln!(md, "| --- | --- | --- |");
    let mut by_condition: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for s in summaries {
        let entry = by_condition.entry(&s.condition).or_default();
        entry.0.extend(s.startup_seconds.map(|x| x.median));
        entry.1.extend(s.stop_seconds.map(|x| x.max));
    }
    for (condition, (start, stop)) in by_condition {
        if start.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {condition} | {} | {} |",
            fmt_spread_sig(spread(start)),
            fmt_spread_sig(spread(stop))
        );
    }
}

/// The errors of the runs that failed.
fn failed_runs(md: &mut String, summaries: &[Summary]) {
    let errors: Vec<(&Summary, &String)> = summaries
        .iter()
        .flat_map(|s| s.errors.iter().map(move |e| (s, e)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "\n## Failed runs\n");
        for (s, e) in errors {
            let _ = writeln!(
                md,
                "- {} / {}: {}",
                s.scenario,
                s.condition,
                e.replace('|', "/")
            );
        }
    }
}
