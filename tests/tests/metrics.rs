//! GET /metrics: OpenMetrics text, parsed, with the per-process and per-cgroup
//! byte counters of known traffic, build info and the self-metrics for losses
//! and map fill.

use std::net::SocketAddr;

use trafficd_common::{FlowKey, FlowSlot, Payload, SocketProcessKey, Traffic};
use trafficd_tests::metrics::Exposition;
use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, trafficgen, wait_for, Cgroup, Daemon, Side, Transfer};

const PAYLOAD: u64 = 2 << 20;

/// A sample name, its labels, and the value /top has for the same counter.
type Check<'a> = (&'a str, Vec<(&'a str, &'a str)>, u64);

/// The value of the one sample `name{labels}`, once it is at least `min`.
fn wait_sample(d: &Daemon, name: &str, labels: &[(&str, &str)], min: f64) -> (f64, Exposition) {
    wait_for(&format!("{name}{labels:?} >= {min} in /metrics"), || {
        let m = d.metrics();
        match m.value(name, labels) {
            Some(v) if v >= min => Ok((v, m)),
            Some(v) => Err(format!("{v}")),
            None => Err(format!(
                "no sample; {} samples of {name}",
                m.samples(name).count()
            )),
        }
    })
}

fn declared_counter(m: &Exposition, family: &str) {
    // OpenMetrics declares the family without _total; the classic text format with it.
    let ty = m
        .types
        .get(family)
        .or_else(|| m.types.get(&format!("{family}_total")));
    assert_eq!(
        ty.map(String::as_str),
        Some("counter"),
        "# TYPE of {family}: {:?}",
        m.types
    );
}

#[test]
fn metrics_count_known_traffic_and_expose_self_metrics() {
    require_root!();
    let cg = Cgroup::new("m");
    let d = Daemon::start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-m-sink"))
        .client(Side::named("tg-m-send").cgroup(&cg))
        .run(&tg);
    let (sp, rp) = (t.sender.pid().to_string(), t.receiver.pid().to_string());

    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    if let Some(ct) = &r.content_type {
        assert!(
            ct.starts_with("application/openmetrics-text") || ct.starts_with("text/plain"),
            "Content-Type {ct}"
        );
    }

    // Settled numbers from /top first (with packet counts, which /metrics
    // does not have), then /metrics must show the same counters.
    let sp_item = d.wait_process(t.sender.pid(), |i| i.tx() >= PAYLOAD);
    let rp_item = d.wait_process(t.receiver.pid(), |i| i.rx() >= PAYLOAD);
    let cg_item = d.wait_cgroup(cg.path(), |i| i.tx() >= PAYLOAD);
    let v6 = false;
    let sent = wire::Sent::from_report(PAYLOAD, &t.sender);
    wire::assert_tcp_data(
        "sender",
        sent,
        sp_item.tx(),
        sp_item.tx_packets(),
        LOOPBACK_MTU,
        v6,
    );
    wire::assert_tcp_data(
        "receiver",
        sent,
        rp_item.rx(),
        rp_item.rx_packets(),
        LOOPBACK_MTU,
        v6,
    );
    wire::assert_tcp_data(
        "cgroup",
        sent,
        cg_item.tx(),
        cg_item.tx_packets(),
        LOOPBACK_MTU,
        v6,
    );
    wire::assert_tcp_acks("cgroup rx", PAYLOAD, cg_item.rx(), cg_item.rx_packets(), v6);

    let checks: [Check; 4] = [
        (
            "trafficd_process_transmit_bytes_total",
            vec![("pid", &sp), ("comm", "tg-m-send")],
            sp_item.tx(),
        ),
        (
            "trafficd_process_receive_bytes_total",
            vec![("pid", &rp), ("comm", "tg-m-sink")],
            rp_item.rx(),
        ),
        (
            "trafficd_cgroup_transmit_bytes_total",
            vec![("cgroup", cg.path())],
            cg_item.tx(),
        ),
        (
            "trafficd_cgroup_receive_bytes_total",
            vec![("cgroup", cg.path())],
            cg_item.rx(),
        ),
    ];
    let mut m = Exposition::default();
    for (name, labels, expect) in &checks {
        let (v, e) = wait_sample(&d, name, labels, *expect as f64);
        assert_eq!(
            v, *expect as f64,
            "{name}{labels:?} in /metrics vs the same counter in /top"
        );
        m = e;
    }

    // The whole exposition is well-formed OpenMetrics, ends with # EOF and
    // declares the byte counters as counters.
    assert!(m.eof, "no # EOF at the end of /metrics");
    for fam in [
        "trafficd_process_transmit_bytes",
        "trafficd_process_receive_bytes",
        "trafficd_cgroup_transmit_bytes",
        "trafficd_cgroup_receive_bytes",
    ] {
        declared_counter(&m, fam);
    }
    for s in m.samples("trafficd_process_transmit_bytes_total") {
        assert!(
            s.label("comm").is_some() && s.label("pid").is_some(),
            "labels comm and pid: {s:?}"
        );
        assert!(s.value.is_finite() && s.value >= 0.0, "{s:?}");
    }

    // Build info: one sample, value 1, the workspace's version.
    let bi: Vec<_> = m.samples("trafficd_build_info").collect();
    assert_eq!(bi.len(), 1, "trafficd_build_info: {bi:?}");
    assert_eq!(bi[0].value, 1.0);
    assert_eq!(
        bi[0].label("version"),
        Some(env!("CARGO_PKG_VERSION")),
        "{:?}",
        bi[0]
    );

    // Self-metrics: kernel-side losses are declared (they may have no sample
    // while nothing was lost) and every sample has a reason; map fill has an
    // entries and a capacity sample per map, entries <= capacity.
    assert!(
        m.has_family("trafficd_kernel_lost_events"),
        "no trafficd_kernel_lost_events in /metrics: {:?}",
        m.types
    );
    for s in m.samples("trafficd_kernel_lost_events_total") {
        assert!(s.label("reason").is_some_and(|r| !r.is_empty()), "{s:?}");
        assert!(s.value.is_finite() && s.value >= 0.0, "{s:?}");
    }
    let entries: Vec<_> = m.samples("trafficd_map_entries").collect();
    assert!(!entries.is_empty(), "no trafficd_map_entries samples");
    for e in entries {
        let map = e
            .label("map")
            .unwrap_or_else(|| panic!("trafficd_map_entries without map label: {e:?}"));
        let cap = m
            .value("trafficd_map_capacity", &[("map", map)])
            .unwrap_or_else(|| panic!("no trafficd_map_capacity for map {map}"));
        assert!(
            cap > 0.0 && e.value >= 0.0 && e.value <= cap,
            "map {map}: {} entries, capacity {cap}",
            e.value
        );
        // Kernel memory per map: every map is preallocated, so it holds at least its
        // capacity in keys and values (one CPU's value, for the per-CPU maps).
        let bytes = m
            .value("trafficd_map_memory_bytes", &[("map", map)])
            .unwrap_or_else(|| panic!("no trafficd_map_memory_bytes for map {map}"));
        let entry = match map {
            "FLOWS" => size_of::<FlowKey>() + size_of::<u32>(),
            "SOCKETS" | "CGROUPS" => size_of::<u64>() + size_of::<Traffic>(),
            "SOCKET_PROCESSES" => size_of::<SocketProcessKey>() + size_of::<Payload>(),
            "CLOSED" => 2 * size_of::<u64>(),
            other => panic!("no memory bound for map {other}: add its key and value here"),
        };
        let least = cap * entry as f64;
        assert!(bytes >= least, "map {map}: {bytes} bytes for {cap} entries");
    }
    // The flow counters the daemon maps: one slot per flow of the flow map.
    let flows = m
        .value("trafficd_map_capacity", &[("map", "FLOWS")])
        .expect("FLOWS capacity");
    let counters = m
        .value("trafficd_map_memory_bytes", &[("map", "FLOW_COUNTERS")])
        .expect("no trafficd_map_memory_bytes for FLOW_COUNTERS");
    assert!(
        counters >= flows * size_of::<FlowSlot>() as f64,
        "FLOW_COUNTERS: {counters} bytes for {flows} slots"
    );
}
