//! A bench's worth of made-up runs through every figure, target and table.

use std::fs;

use super::markdown::markdown;
use super::targets::{Status, HOT_PROGRAMS};
use super::*;
use crate::bench::api;
use crate::bench::empty_bpf;
use crate::bench::measure::{IfCounters, MapInfo};
use crate::bench::monitor::CaptureBytes;
use crate::bench::scenarios::{self, Outcome};
use crate::bench::{CaptureFigures, MonitorFigures, ProgDelta, TrafficdFigures};

/// Runs of every scenario under each of its conditions, with figures that vary by round,
/// so that every table and target has something to show.
fn records(scenarios: &[Scenario]) -> Vec<RunRecord> {
    let mut out = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        for condition in scenario.conditions(&Condition::ALL) {
            for round in 0..3 {
                out.push(record(i, scenario, condition, round));
            }
        }
    }
    out
}

fn record(i: usize, scenario: &Scenario, condition: Condition, round: usize) -> RunRecord {
    let k = (i * 7 + round * 3 + condition as usize) as f64;
    let bytes = 1_000_000_000 + 1_000 * k as u64;
    let empty = empty_bpf::HOOKS
        .iter()
        .map(|h| ProgDelta {
            name: h.name.to_string(),
            run_cnt: 1_000_000,
            run_time_ns: 30_000_000 + 500_000 * k as u64,
        })
        .collect();
    RunRecord {
        scenario: scenario.name.clone(),
        condition: Some(condition),
        round,
        loadavg: 0.5 + k / 10.0,
        outcome: Some(Outcome {
            rate: 1e9 * (1.0 - k / 100.0),
            goodput_bps: 8e9,
            sent_payload: bytes,
            received_payload: bytes - 10,
            processes: 100,
            client_pid: 10,
            server_pid: 11,
            expected_client_tx: bytes + 1000,
            expected_server_rx: bytes + 900,
            range_low: bytes,
            range_high: bytes + 2000,
            generator_cpu_seconds: Some(2.0),
            received_units: 1000,
            rcvbuf_drops: round as u64,
            ..Outcome::default()
        }),
        wire: Some(IfCounters {
            tx_packets: 700_000,
            tx_bytes: bytes + 50_000_000,
            rx_packets: 300_000,
            rx_bytes: 20_000_000,
        }),
        wire_seconds: 3.0,
        monitor: (condition != Condition::Baseline).then(|| MonitorFigures {
            cpu_seconds: 0.05 + k / 1000.0,
            window_seconds: 3.5,
            steady_cpu_percent: Some(1.0 + k / 10.0),
            peak_rss_kib: 30_000 + 100 * k as u64,
            mapped_bpf_maps_kib: 8_000,
            startup_seconds: 0.2,
            stop_seconds: Some(0.01),
            ..MonitorFigures::default()
        }),
        trafficd: condition
            .is_trafficd()
            .then(|| trafficd_figures(k, bytes, condition.bpf_stats())),
        capture: condition.is_capture_tool().then_some(CaptureFigures {
            lines: 2,
            total: CaptureBytes {
                sent: 9e8,
                received: 2e7,
            },
            client: Some(CaptureBytes {
                sent: 9e8,
                received: 0.0,
            }),
            server: Some(CaptureBytes {
                sent: 0.0,
                received: 9e8,
            }),
        }),
        empty_bpf: condition.is_empty_bpf().then(|| empty_bpf::EmptyFigures {
            programs: empty,
            window_seconds: 3.1,
            not_attached: vec!["empty_tcp_rcv (x): missing".into()],
        }),
        error: (round == 2 && i == 0).then(|| "boom".to_string()),
        ..RunRecord::default()
    }
}

/// trafficd's view of a run: what it attributed to the generator, its drains and maps.
fn trafficd_figures(k: f64, bytes: u64, bpf_stats: bool) -> TrafficdFigures {
    let programs: Vec<ProgDelta> = HOT_PROGRAMS
        .iter()
        .map(|name| ProgDelta {
            name: name.to_string(),
            run_cnt: 1_000_000,
            run_time_ns: 60_000_000 + 1_000_000 * k as u64,
        })
        .collect();
    TrafficdFigures {
        programs: if bpf_stats { programs } else { Vec::new() },
        drain_us: vec![1_000, 2_000 + 10 * k as u64],
        ending_drain_us: vec![3_000],
        ending_done: true,
        slowest_healthz_ms: 2.0,
        metrics_get_ms: vec![0.4, 0.5],
        metrics_bytes: 40_000,
        top_flow_get_ms: 0.3,
        client: Some(api::TopProcess {
            pid: 10,
            lifetime_tx_bytes: bytes + 1000 + k as u64,
            ..Default::default()
        }),
        server: Some(api::TopProcess {
            pid: 11,
            lifetime_rx_bytes: bytes + 900,
            ..Default::default()
        }),
        comm_tx_bytes: 1e6,
        comm_rx_bytes: 1e6,
        comm_processes: 99,
        map_entries: [("FLOWS".to_string(), 200_000.0)].into(),
        reported_map_bytes: 50.0 * 1024.0 * 1024.0,
        maps: vec![MapInfo {
            memlock_bytes: 50 << 20,
            ..MapInfo::default()
        }],
        lost_events: k,
        lost_by_reason: [("ring_full".to_string(), k)].into(),
        ..TrafficdFigures::default()
    }
}

/// Every section is written, and the figures are those of the runs: a ratio to the baseline's
/// median, a target's verdict, an accuracy ratio.
#[test]
fn made_up_runs_give_every_table_their_figures() {
    let scenarios = scenarios::all(3.0, false, 100_000);
    let records = records(&scenarios);
    let summaries = summaries(&scenarios, &records);
    let targets = targets(&scenarios, &summaries);
    let meta = Meta {
        date_utc: "2026-01-01 00:00 UTC".into(),
        ..Meta::default()
    };
    let md = markdown(&meta, &scenarios, &summaries, &targets);
    if let Some(path) = std::env::var_os("REPORT_DUMP") {
        // For comparing the tables before and after a change to the report.
        fs::write(path, &md).unwrap();
    }
    for section in [
        "## What runs",
        "## Targets",
        "## Throughput and cost",
        "## trafficd's kernel programs",
        "## Empty programs: the floor",
        "## Flow scale",
        "## Accuracy",
        "## Monitors starting and stopping",
        "## Failed runs",
    ] {
        assert!(md.contains(section), "no {section:?} in the tables");
    }
    assert!(md.contains(
        "| TCP bulk throughput with trafficd | tcp-1-stream-lo | 0.990 (0.975–1.005) x;"
    ));
    let status = |what: &str| targets.iter().find(|t| t.target == what).unwrap().status;
    assert_eq!(status("drain of 100k flows"), Status::Pass);
    assert_eq!(status("trafficd CPU per GB vs nethogs"), Status::Miss);
    let tcp = summaries
        .iter()
        .find(|s| s.scenario == "tcp-1-stream-lo" && s.condition == "trafficd")
        .unwrap();
    // Two of the three runs are ok (the third failed), so the median lies between them.
    assert_eq!(tcp.runs_ok, 2);
    assert_eq!(tcp.errors, ["boom"]);
    let range = tcp
        .accuracy
        .iter()
        .find(|a| a.what == "client tx" && a.reference == accuracy::REF_RANGE)
        .unwrap();
    assert_eq!(range.ratio.median, 1.0);
}
