//! GET /metrics: OpenMetrics text, parsed, with the per-process and per-cgroup
//! byte counters of known traffic, build info and the self-metrics for losses,
//! map fill and drains; and the whole live exposition passes `promtool check metrics`.

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

/// GET /metrics asking for OpenMetrics, as Prometheus does: (Content-Type, parsed).
fn get_openmetrics(d: &Daemon) -> (String, Exposition) {
    let resp = ureq::get(&d.url("/metrics"))
        .set(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .call()
        .expect("GET /metrics");
    let content_type = resp.header("content-type").unwrap_or_default().to_string();
    let body = resp.into_string().expect("body");
    let parsed = Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    (content_type, parsed)
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
    // Per-pid series, so each end of the transfer is its own series.
    let d = Daemon::builder().arg("--metrics-per-pid").start();
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

    // Asked for OpenMetrics (as Prometheus asks), the whole exposition is
    // well-formed OpenMetrics, ends with # EOF and declares the byte counters
    // as counters.
    let (content_type, om) = get_openmetrics(&d);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(om.eof, "no # EOF at the end of /metrics");
    for fam in [
        "trafficd_process_transmit_bytes",
        "trafficd_cgroup_receive_bytes",
    ] {
        declared_counter(&om, fam);
    }
    for fam in [
        "trafficd_process_transmit_bytes",
        "trafficd_process_receive_bytes",
        "trafficd_cgroup_transmit_bytes",
        "trafficd_cgroup_receive_bytes",
    ] {
        declared_counter(&m, fam);
    }
    // Every series but [other] (the identities beyond --metrics-max-series) has its pid.
    for s in m.samples("trafficd_process_transmit_bytes_total") {
        assert!(
            s.label("comm").is_some()
                && (s.label("pid").is_some() || s.label("comm") == Some("[other]")),
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

#[test]
fn default_series_are_per_comm_and_pass_promtool() {
    require_root!();
    let d = Daemon::start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-mp-sink"))
        .client(Side::named("tg-mp-send"))
        .run(&tg);
    let sp_item = d.wait_process(t.sender.pid(), |i| i.tx() >= PAYLOAD);
    // One series per comm by default: no pid label, the sender's bytes under its name.
    let (v, m) = wait_sample(
        &d,
        "trafficd_process_transmit_bytes_total",
        &[("comm", "tg-mp-send")],
        sp_item.tx() as f64,
    );
    assert_eq!(v, sp_item.tx() as f64);
    for s in m.samples("trafficd_process_transmit_bytes_total") {
        assert!(
            s.label("pid").is_none(),
            "pid without --metrics-per-pid: {s:?}"
        );
    }
    // Drain self-metrics: a histogram in seconds whose count follows the drains, and a lag
    // shorter than a few intervals while the daemon drains.
    let drains = m
        .value("trafficd_drains_total", &[])
        .expect("trafficd_drains_total");
    let timed = m
        .value("trafficd_drain_duration_seconds_count", &[])
        .expect("trafficd_drain_duration_seconds_count");
    assert!(
        timed >= 1.0 && timed <= drains,
        "{timed} timed of {drains} drains"
    );
    let lag = m.value("trafficd_drain_lag_seconds", &[]).expect("lag");
    assert!((0.0..5.0).contains(&lag), "drain lag {lag} s");
    declared_counter(&m, "trafficd_unattributed_bytes");
    declared_counter(&m, "trafficd_map_entries_dropped");

    // Asked for nothing in particular (curl, promtool), the classic text format, which
    // Prometheus' own linter passes.
    let r = d.get("/metrics");
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.content_type
    );
    let body = r.body;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bpf_stats_count_each_program_and_hooks_are_reported() {
    require_root!();
    let d = Daemon::builder().arg("--bpf-stats").start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-bs-sink"))
        .client(Side::named("tg-bs-send"))
        .run(&tg);
    d.wait_process(t.sender.pid(), |i| i.tx() >= PAYLOAD);
    let m = d.metrics();
    // The transfer alone is at least 32 packets each way through the packet hooks.
    for program in ["trafficd_egress", "trafficd_ingress"] {
        let runs = m
            .value("trafficd_bpf_program_runs_total", &[("program", program)])
            .unwrap_or_else(|| panic!("no run count for {program}"));
        let seconds = m
            .value(
                "trafficd_bpf_program_run_seconds_total",
                &[("program", program)],
            )
            .unwrap_or_else(|| panic!("no run time for {program}"));
        assert!(
            runs >= 32.0 && seconds > 0.0,
            "{program}: {runs} runs, {seconds} s"
        );
        let attached = m.find("trafficd_hook_attached", &[("program", program)]);
        assert_eq!(attached.len(), 1, "{program}: {attached:?}");
        assert_eq!(attached[0].value, 1.0, "{:?}", attached[0]);
    }
    // Without --bpf-stats there is no run-time family at all.
    let plain = Daemon::start().metrics();
    assert_eq!(plain.samples("trafficd_bpf_program_runs_total").count(), 0);
    assert!(plain.samples("trafficd_hook_attached").count() >= 4);
}
