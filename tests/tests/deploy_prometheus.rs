//! A real Prometheus scrapes a running trafficd every second with the project's rules while
//! a process sends at a known paced rate: rate() of its transmit counter matches the pace,
//! the per-process alert (with a test-low threshold) fires, every rule evaluates with health
//! ok, and every PromQL expression of the Grafana dashboard evaluates.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use trafficd_tests::prometheus::Prometheus;
use trafficd_tests::tools::deploy_file;
use trafficd_tests::{require_program, require_root, trafficgen, Daemon};

/// The sender's pace, bytes per second of payload.
const RATE: u64 = 2 << 20;
/// How long it sends: long enough for a full rate window and the alert's `for`.
const SEND_SECONDS: u64 = 45;
/// The rate() window: long, so that a sender starved of CPU for a moment by other tests
/// on the machine has caught up with its pace (it writes ahead after a stall).
const WINDOW_SECONDS: u64 = 20;
/// The per-process threshold for this test: a quarter of the pace. rate() divides by its
/// whole range, so the alert's 1-minute rate of a series younger than a minute is that
/// fraction of the pace: it crosses a quarter 15 s after the sender starts.
const THRESHOLD: u64 = RATE / 4;
const SENDER: &str = "tg-dp-send";
/// trafficgen's bound on each wait (30 s by default), above the sending time.
const TIMEOUT_MS: &str = "55000";

#[test]
fn prometheus_scrapes_rates_alerts_and_dashboard() {
    require_root!();
    require_program!("prometheus", "Debian package prometheus");
    let d = Daemon::start();
    let rules = Prometheus::rules_with(
        "TrafficdProcessBandwidthHigh",
        &[
            ("> 12500000", &format!("> {THRESHOLD}")),
            ("for: 10m", "for: 5s"),
        ],
    );
    let prom = Prometheus::start(&[d.addr().to_string()], &rules);

    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (sink, addr) = tg
        .cmd(&[
            "tcp-sink",
            "--listen",
            &lo.to_string(),
            "--name",
            "tg-dp-sink",
            "--timeout-ms",
            TIMEOUT_MS,
        ])
        .spawn_ready();
    let started = Instant::now();
    let sender = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &(RATE * SEND_SECONDS).to_string(),
            "--rate",
            &RATE.to_string(),
            "--name",
            SENDER,
            "--timeout-ms",
            TIMEOUT_MS,
        ])
        .spawn();

    // A window that lies wholly inside the sending time.
    sleep_until(started + Duration::from_secs(WINDOW_SECONDS + 5));
    let series = format!("trafficd_process_transmit_bytes_total{{comm=\"{SENDER}\"}}");
    let expr = format!("sum(rate({series}[{WINDOW_SECONDS}s]))");
    let measured = prom
        .scalar(&expr)
        .unwrap_or_else(|| panic!("{expr}: {:?}", prom.query(&expr)));
    let ratio = measured / RATE as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{expr} = {measured:.0} B/s, paced at {RATE} B/s of payload (ratio {ratio:.3}); samples: {:?}",
        prom.query(&format!("{series}[{WINDOW_SECONDS}s]"))
    );

    let alert = wait_alert_firing(&prom, "TrafficdProcessBandwidthHigh", SENDER);
    assert_eq!(alert["labels"]["direction"], "transmit", "{alert}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");

    assert_every_rule_healthy(&prom);
    assert_dashboard_evaluates(&prom, &d);

    let report = sender.finish();
    assert_eq!(report.bytes_sent(), RATE * SEND_SECONDS);
    sink.finish();
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// The firing alert `name` whose `comm` label is `comm`; panics after 30 s.
fn wait_alert_firing(prom: &Prometheus, name: &str, comm: &str) -> Value {
    let start = Instant::now();
    loop {
        let alerts = prom.alerts();
        if let Some(a) = alerts.iter().find(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["comm"] == comm
                && a["state"] == "firing"
        }) {
            return a.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name} for {comm} not firing after 30 s; alerts: {alerts:#?}; rules: {:#?}; rate1m: {:?}",
            prom.rules()
                .iter()
                .filter(|(_, r)| r["name"] == name)
                .collect::<Vec<_>>(),
            prom.query("instance_comm:trafficd_process_transmit_bytes:rate1m")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every rule of every group has been evaluated and its health is "ok".
fn assert_every_rule_healthy(prom: &Prometheus) {
    let start = Instant::now();
    loop {
        let rules = prom.rules();
        let bad: Vec<_> = rules
            .iter()
            .filter(|(_, r)| r["health"] != "ok")
            .map(|(g, r)| format!("{g}/{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        let groups: BTreeSet<&str> = rules.iter().map(|(g, _)| g.as_str()).collect();
        if bad.is_empty() && rules.len() >= 20 {
            assert_eq!(
                groups,
                BTreeSet::from(["trafficd.alerts", "trafficd.rates"]),
                "rule groups"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rules not all healthy ({} rules): {bad:#?}",
            rules.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Each query of the dashboard, with its variables substituted, evaluates without error;
/// those whose trafficd metrics all exist in this daemon's /metrics also return data.
fn assert_dashboard_evaluates(prom: &Prometheus, d: &Daemon) {
    let exposed: BTreeSet<String> = d.metrics().samples.iter().map(|s| s.name.clone()).collect();
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "only {} queries in the dashboard",
        queries.len()
    );
    let mut with_data = 0;
    for (title, q) in &queries {
        let expr = substitute(q);
        let result = prom
            .query(&expr)
            .unwrap_or_else(|e| panic!("panel {title:?}: {expr}: {e}"));
        let metrics = metric_names(&expr);
        if title == "Top processes: transmit" {
            assert!(
                result.iter().any(|r| r["metric"]["comm"] == SENDER),
                "panel {title:?}: {SENDER} is not among the top senders: {result:?}"
            );
        }
        if metrics.iter().all(|m| exposed.contains(m)) {
            assert!(
                !result.is_empty(),
                "panel {title:?}: {expr} returned nothing although {metrics:?} are exposed"
            );
            with_data += 1;
        }
    }
    // The process panels and the health panels at least.
    assert!(
        with_data >= 10,
        "only {with_data} dashboard queries had data to return"
    );
}

/// (panel title, expression) of every target, and the queries behind the variables.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(deploy_file("grafana/trafficd.json")).expect("read dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("target has expr");
            out.push((
                p["title"].as_str().unwrap_or_default().to_string(),
                expr.to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("variables") {
        if v["type"] != "query" {
            continue;
        }
        // label_values(<selector>, <label>): the selector is the query.
        let q = v["query"]["query"].as_str().expect("variable query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(sel, _)| sel.to_string())
            .unwrap_or_else(|| panic!("variable {}: expected label_values(...): {q}", v["name"]));
        out.push((format!("variable {}", v["name"]), inner));
    }
    out
}

/// What Grafana would send with "All" selected and a 1 s scrape interval.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$instance", ".*")
        .replace("$interface", ".*")
}

/// The trafficd metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("trafficd_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}
