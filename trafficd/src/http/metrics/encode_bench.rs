//! The cost of one scrape at scale: 10k processes (each its own comm, the worst case for the
//! series bound) and 100k flows known. Run by `cargo xtask bench metrics-encode`, which reads
//! the line this prints; ignored in the normal test run.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use trafficd_common::{FlowKey, Traffic};

use super::{encode, registry, MetricsConfig, Programs};
use crate::{
    enrich::processes::ProcessKey,
    stats::{CgroupInfo, FlowInfo, Store, Talker, TalkerInfo},
};

const PROCESSES: u32 = 10_000;
const FLOWS: u32 = 100_000;
const CGROUPS: u64 = 200;
const SCRAPES: usize = 21;

fn traffic(n: u64) -> Traffic {
    Traffic {
        tx_bytes: 1_000 + n,
        tx_packets: 1 + n % 7,
        rx_bytes: 500 + n,
        rx_packets: 1 + n % 5,
    }
}

/// Every process moves a little: the worst case, where every scrape has a delta to place
/// for each of them.
fn processes_move(store: &mut Store, now: Instant) {
    let processes = (0..PROCESSES)
        .map(|pid| {
            let info = TalkerInfo {
                pid,
                comm: Arc::from(format!("worker-{pid}")),
                cgroup: Arc::from(format!("/bench/{}", u64::from(pid) % CGROUPS)),
                ..TalkerInfo::default()
            };
            let key = Talker::Process(ProcessKey { pid, start_time: 0 });
            (key, traffic(u64::from(pid)), info)
        })
        .collect();
    store
        .processes
        .record(now, Duration::from_secs(1), processes);
}

fn store(now: Instant) -> Store {
    let mut store = Store::new(now);
    let tick = Duration::from_secs(1);
    processes_move(&mut store, now);
    let cgroups = (0..CGROUPS)
        .map(|id| {
            let path = Arc::from(format!("/bench/{id}"));
            (
                id,
                traffic(id),
                CgroupInfo {
                    path,
                    ..CgroupInfo::default()
                },
            )
        })
        .collect();
    store.cgroups.record(now, tick, cgroups);
    let flows = (0..FLOWS)
        .map(|n| {
            let key = FlowKey {
                cookie: u64::from(n),
                cgroup_id: u64::from(n) % CGROUPS,
                local_addr: [0; 16],
                remote_addr: [0; 16],
                local_port: (n % 60_000) as u16,
                remote_port: 443,
                family: 2,
                protocol: 6,
                _pad: [0; 2],
            };
            let info = Arc::new(FlowInfo {
                pid: n % PROCESSES,
                comm: Arc::from("worker"),
                cgroup: Arc::from("/bench"),
                ..FlowInfo::default()
            });
            (key, traffic(u64::from(n)), info)
        })
        .collect();
    store.flows.record(now, tick, flows);
    store
}

#[test]
#[ignore = "a benchmark: run by `cargo xtask bench metrics-encode`"]
fn metrics_encode_at_scale() {
    let now = Instant::now();
    let store = Arc::new(RwLock::new(store(now)));
    let config = MetricsConfig {
        per_pid: false,
        max_series: 500,
        retention: Duration::from_secs(600),
        programs: Programs::default(),
    };
    let registry = registry(store.clone(), &config);
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for scrape in 0..SCRAPES {
        let at = now + Duration::from_secs(scrape as u64 + 1);
        processes_move(&mut store.write().expect("store"), at);
        let started = Instant::now();
        let text = encode(&registry).expect("encode");
        times.push(started.elapsed());
        bytes = text.len();
    }
    // The first scrape places every process; the rest are the steady state.
    let first = times.remove(0);
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "metrics-encode: processes={PROCESSES} flows={FLOWS} bytes={bytes} first_ms={:.3} \
         median_ms={:.3} max_ms={:.3}",
        first.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}
