//! GET /top parameters: good values answer 200 with the documented shape, bad
//! values 400 with a JSON {"error": "..."} naming the parameter and its allowed
//! values, a parameter given twice 400 naming it, junk never crashes the daemon,
//! and it keeps serving afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use trafficd_tests::{require_root, trafficgen, Daemon, Sender, Side, Top, Transfer};

/// A raw HTTP/1.1 request, so the client cannot tidy up malformed targets.
/// Returns the status code (None if the daemon closed without answering).
/// With `half_close` the write side is shut after the request (for requests
/// the server would otherwise wait on).
fn raw(addr: SocketAddr, request: &[u8], half_close: bool) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).ok()?;
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}

fn raw_get(addr: SocketAddr, target: &str) -> Option<u16> {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
        false,
    )
}

fn is_sorted_desc(
    items: &[trafficd_tests::Item],
    key: impl Fn(&trafficd_tests::Item) -> u64,
) -> bool {
    items.windows(2).all(|w| key(&w[0]) >= key(&w[1]))
}

#[test]
fn parameters_are_validated_and_the_daemon_keeps_serving() {
    require_root!();
    let mut d = Daemon::start();
    // Some traffic, so the lists are not empty and sorting means something.
    let tg = trafficgen!();
    Transfer::tcp("127.0.0.1:0".parse().unwrap(), 1 << 20)
        .server(Side::named("tg-hp-sink"))
        .client(Side::named("tg-hp-send"))
        .run(&tg);
    let t = Transfer::tcp("127.0.0.1:0".parse().unwrap(), 1 << 20)
        .server(Side::named("tg-hp-serve"))
        .client(Side::named("tg-hp-recv"))
        .sent_by(Sender::Server)
        .run(&tg);
    // Until the daemon has drained it, /top may not list it yet.
    d.wait_process(t.receiver.pid(), |i| i.rx() >= 1 << 20);

    let (status, health) = d.get_json("/healthz");
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );

    // Bad values: 400, JSON error naming the parameter and what is allowed.
    let bad: &[(&str, &str, &[&str])] = &[
        ("limit=0", "limit", &["1000"]),
        ("limit=-1", "limit", &["1000"]),
        ("limit=1001", "limit", &["1000"]),
        ("limit=100000", "limit", &["1000"]),
        ("limit=abc", "limit", &["1000"]),
        ("by=foo", "by", &["process", "cgroup", "flow", "remote"]),
        ("window=7m", "window", &["1s", "10s", "60s"]),
        ("sort=bar", "sort", &["total", "tx", "rx"]),
        ("by=process&window=60s&limit=0", "limit", &[]),
    ];
    for (q, param, allowed) in bad {
        let r = d.get(&format!("/top?{q}"));
        assert_eq!(r.status, 400, "GET /top?{q}: {}", r.body);
        if let Some(ct) = &r.content_type {
            assert!(
                ct.starts_with("application/json"),
                "GET /top?{q}: Content-Type {ct}"
            );
        }
        let v = r.json();
        let err = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("GET /top?{q}: no string \"error\": {v}"));
        assert!(
            err.contains(param),
            "GET /top?{q}: error {err:?} does not name {param:?}"
        );
        for a in *allowed {
            assert!(
                err.contains(a),
                "GET /top?{q}: error {err:?} does not list the allowed value {a:?}"
            );
        }
    }

    // A parameter given twice: 400 naming it, rather than one of the values silently
    // winning; even when both values agree, and whichever comes first.
    for (q, param) in [
        ("by=flow&by=process", "by"),
        ("limit=1&limit=abc", "limit"),
        ("window=1s&sort=tx&window=1s", "window"),
        ("sort=rx&limit=5&sort=tx", "sort"),
    ] {
        let r = d.get(&format!("/top?{q}"));
        assert_eq!(r.status, 400, "GET /top?{q}: {}", r.body);
        let v = r.json();
        let err = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("GET /top?{q}: no string \"error\": {v}"));
        assert!(
            err.contains(param) && err.contains("2 times"),
            "GET /top?{q}: error {err:?} does not say {param:?} is given twice"
        );
    }

    // Good values: 200 with the shape of the contract (Top::from_json checks
    // every item's fields for its `by`).
    let top = d.top("");
    assert_eq!(
        (top.by(), top.window_seconds()),
        ("process", 10.0),
        "defaults: {}",
        top.json
    );
    assert!(
        top.items().len() <= 10,
        "default limit 10: {} items",
        top.items().len()
    );
    for by in ["process", "cgroup", "flow", "remote"] {
        let t = d.top(&format!("by={by}&window=60s&limit=1000"));
        assert_eq!(t.by(), by);
        assert!(
            !t.items().is_empty(),
            "by={by}: no items after traffic: {}",
            t.json
        );
    }
    // by=container: the cgroups' bytes by owner (container, pod, unit, host; a cgroup of an
    // unknown layout by its path). Read as JSON: `Top` checks the kinds the harness knows.
    let (status, owners) = d.get_json("/top?by=container&window=60s&limit=1000");
    assert_eq!(
        (status, owners["by"].as_str()),
        (200, Some("container")),
        "{owners}"
    );
    let owners = owners["items"].as_array().expect("by=container: items");
    assert!(!owners.is_empty(), "by=container: no items after traffic");
    // Fetched after the owners, so every cgroup they name is still listed.
    let cgroups = d.top("by=cgroup&window=60s&limit=1000");
    for owner in owners {
        let kind = owner["kind"].as_str().unwrap_or_default();
        assert!(
            ["container", "pod", "unit", "host", "unknown"].contains(&kind),
            "by=container: no owner kind: {owner}"
        );
        assert_eq!(
            owner["name"].is_null(),
            kind == "unknown",
            "by=container: only an unknown layout is unnamed: {owner}"
        );
        for f in [
            "tx_bytes",
            "rx_bytes",
            "lifetime_tx_bytes",
            "lifetime_rx_bytes",
        ] {
            assert!(owner[f].is_u64(), "by=container: no integer {f:?}: {owner}");
        }
        let path = owner["cgroup"].as_str().expect("by=container: cgroup");
        assert!(
            cgroups.items().iter().any(|c| c.str("cgroup") == path),
            "by=container: {path:?} is not among the cgroups: {}",
            cgroups.json
        );
    }
    for (w, secs) in [("1s", 1.0), ("10s", 10.0), ("60s", 60.0)] {
        assert_eq!(
            d.top(&format!("window={w}")).window_seconds(),
            secs,
            "window={w}"
        );
    }
    for limit in [1usize, 2, 1000] {
        let t = d.top(&format!("limit={limit}&window=60s"));
        assert!(
            t.items().len() <= limit && !t.items().is_empty(),
            "limit={limit}: {} items",
            t.items().len()
        );
    }
    let t = d.top("window=60s&sort=tx&limit=1000");
    assert!(
        is_sorted_desc(t.items(), |i| i.u64("tx_bytes")),
        "sort=tx: {}",
        t.json
    );
    let t = d.top("window=60s&sort=rx&limit=1000");
    assert!(
        is_sorted_desc(t.items(), |i| i.u64("rx_bytes")),
        "sort=rx: {}",
        t.json
    );
    let t = d.top("window=60s&sort=total&limit=1000");
    assert!(
        is_sorted_desc(t.items(), |i| i.u64("tx_bytes") + i.u64("rx_bytes")),
        "sort=total: {}",
        t.json
    );
    // Unknown parameter names are ignored.
    let t: Top = d.top("frobnicate=1&limit=2&x=");
    assert!(t.items().len() <= 2);

    // Junk: any answer but a server error, and the daemon survives it.
    let long = "9".repeat(4000);
    let junk = [
        "/top?limit=".to_string(),
        "/top?limit=1e3".into(),
        "/top?limit=99999999999999999999999999".into(),
        "/top?limit=%ff%fe".into(),
        "/top?limit=%".into(),
        "/top?by=".into(),
        "/top?by=%00".into(),
        "/top?window=-1s".into(),
        "/top?window=99999999999999999999s".into(),
        "/top?sort=tx&sort=rx".into(),
        "/top?limit=1&limit=abc".into(),
        "/top?&&&=&=".into(),
        format!("/top?limit={long}"),
        "/top/../metrics".into(),
        "/nonexistent".into(),
    ];
    for target in &junk {
        if let Some(status) = raw_get(d.addr(), target) {
            assert!(status < 500, "GET {target}: HTTP {status}");
        }
        assert!(d.is_running(), "the daemon died on GET {target}");
    }
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET /top?limit=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
    ] {
        let _ = raw(d.addr(), req, true);
        assert!(
            d.is_running(),
            "the daemon died on {:?}",
            String::from_utf8_lossy(req)
        );
    }

    // Still serving, and still counting.
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(d.get("/metrics").status, 200);
    let send = Transfer::tcp("127.0.0.1:0".parse().unwrap(), 1 << 20)
        .server(Side::named("tg-hp-sink2"))
        .client(Side::named("tg-hp-after"))
        .run(&tg);
    let item = d.wait_process(send.sender.pid(), |i| i.tx() >= 1 << 20);
    assert_eq!(item.comm(), "tg-hp-after");

    // SIGTERM: it detaches and exits 0.
    let status = d.stop();
    assert!(
        status.success(),
        "trafficd exited with {status} after SIGTERM"
    );
}
