//! Who is on the other end: peer names from a labels file, OpenVPN status files and reverse
//! DNS; /exposure for a listener strangers send to; /explain of one flow, a proxy's followed
//! through to the peer feeding it.
//!
//! Peers live in namespaces the test creates. The "internet" peer has 203.0.113.5, a
//! documentation address, routed only between the test's own namespaces.

use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use trafficd_tests::{
    require_root, scratch_path, trafficgen, wait_for, Daemon, Gen, Item, Link, NetNs, RemoveOnDrop,
    TrafficGen,
};

const PAYLOAD: u64 = 200_000;
/// The stranger of the exposure and proxy tests.
const STRANGER: &str = "203.0.113.5";
/// The port the forwarder listens on, as HAProxy did in the incident; free in any namespace
/// the test made.
const PROXY_PORT: u16 = 3129;
/// Listeners are listed every 10 s, the first time 2 s after start.
const EXPOSURE_WITHIN: Duration = Duration::from_secs(30);

/// Headers on top of `PAYLOAD` sent in segments of at least 536 bytes, and the handshake.
fn at_most(payload: u64) -> u64 {
    payload + payload / 536 * 60 + 4096
}

/// A file the daemon reads, written whole by rename so it is never read half-written.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// `PAYLOAD` from the root namespace to a sink in `ns` at `link.b_v4()`.
fn send_to_namespace(tg: &TrafficGen, ns: &NetNs, link: &Link, name: &str) {
    let (sink, addr) = tg
        .cmd(&[
            "tcp-sink",
            "--listen",
            &SocketAddr::new(link.b_v4(), 0).to_string(),
        ])
        .netns(ns)
        .spawn_ready();
    let sender = tg
        .cmd(&[
            "--name",
            name,
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
        ])
        .run();
    assert_eq!(sender.bytes_sent(), PAYLOAD);
    sink.finish();
}

/// The by=remote item named `name`, once there.
fn wait_named_remote(d: &Daemon, name: &str) -> Item {
    wait_for(&format!("remote named {name} in /top?by=remote"), || {
        let top = d.top("by=remote&window=60s&limit=1000");
        let found = top.items().iter().find(|i| i.0["name"] == name).cloned();
        found.ok_or_else(|| top.json.clone())
    })
}

fn ips(item: &Item) -> Vec<IpAddr> {
    item.0["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips: {}", item.0))
        .iter()
        .map(|ip| ip.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_labels_file_names_a_peer_and_relabels_without_restart() {
    require_root!();
    let ns = NetNs::new("lab");
    let link = Link::root_to(&ns);
    let labels = scratch_path("labels");
    let _remove = RemoveOnDrop(labels.clone());
    replace(
        &labels,
        &format!("# test peers\n{} sink-host\n", link.b_v4()),
    );
    let d = Daemon::builder()
        .arg("--labels")
        .arg(labels.display().to_string())
        .start();
    let tg = trafficgen!();
    send_to_namespace(&tg, &ns, &link, "tg-lab-send");

    let item = wait_named_remote(&d, "sink-host");
    assert_eq!(item.str("remote"), "sink-host");
    assert_eq!(item.0["source"], "labels");
    assert_eq!(item.0["class"], "private");
    assert_eq!(ips(&item), vec![link.b_v4()]);
    assert!(
        (PAYLOAD..=at_most(PAYLOAD)).contains(&item.tx()),
        "{PAYLOAD} B sent: {}",
        item.0
    );

    // The flow names its peer too, beside the unchanged "ip:port" remote.
    let flows = d.top("by=flow&window=60s&limit=1000");
    let flow = flows
        .items()
        .iter()
        .find(|i| i.comm() == "tg-lab-send")
        .unwrap_or_else(|| panic!("no flow of tg-lab-send: {}", flows.json));
    let remote: SocketAddr = flow.str("remote").parse().unwrap();
    assert_eq!(remote.ip(), link.b_v4());
    assert_eq!(
        flow.0["peer"],
        serde_json::json!({"ip": link.b_v4().to_string(), "name": "sink-host",
                           "source": "labels", "class": "private"})
    );
    assert_eq!(flow.str("id").len(), 16, "{}", flow.0);
    // /metrics counts the peer under its name, every byte once.
    let named = wait_for("the named remote's series", || {
        let value = d.metrics().value(
            "trafficd_remote_transmit_bytes_total",
            &[("remote", "sink-host")],
        );
        value.filter(|v| *v >= PAYLOAD as f64).ok_or(value)
    });
    assert!(named <= at_most(PAYLOAD) as f64, "{named}");

    // A new version of the file relabels the peer; a broken one changes nothing.
    let IpAddr::V4(b) = link.b_v4() else {
        unreachable!()
    };
    let [n1, n2, n3, _] = b.octets();
    replace(&labels, &format!("{n1}.{n2}.{n3}.0/24 test-subnet\n"));
    // Both ends are in the subnet (the sink's remote is the root side): one item for both,
    // their bytes summed.
    let item = wait_named_remote(&d, "test-subnet");
    let mut both = ips(&item);
    both.sort();
    assert_eq!(both, vec![link.a_v4(), link.b_v4()], "{}", item.0);
    assert_eq!(item.str("remote"), "test-subnet");
    assert!(
        item.tx() >= PAYLOAD && item.rx() >= PAYLOAD,
        "both directions of the transfer: {}",
        item.0
    );
    replace(&labels, "10.0.0.0/33 broken\n");
    wait_for("the broken labels file in the log", || {
        let log = d.log_text();
        log.contains(&*labels.display().to_string())
            .then_some(())
            .ok_or(log)
    });
    std::thread::sleep(Duration::from_secs(3));
    wait_named_remote(&d, "test-subnet");
    let log = d.log_text();
    let reports = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&*labels.display().to_string()))
        .count();
    assert_eq!(reports, 1, "one line for the bad file:\n{log}");
}

const STATUS_V1: &str = "\
OpenVPN CLIENT LIST
Updated,Sun Dec  6 20:40:01 2026
Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since
NAME,198.51.100.7:51234,4413218,55421,Sun Dec  6 18:02:11 2026
ROUTING TABLE
Virtual Address,Common Name,Real Address,Last Ref
ADDRESS,NAME,198.51.100.7:51234,Sun Dec  6 20:39:58 2026
GLOBAL STATS
Max bcast/mcast queue length,1
END
";

const STATUS_V2: &str = "\
TITLE,OpenVPN 2.6.3 x86_64-pc-linux-gnu
TIME,2026-12-06 20:40:01,1796676001
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher
CLIENT_LIST,NAME,198.51.100.7:51234,ADDRESS,,4413218,55421,2026-12-06 18:02:11,1796666531,UNDEF,0,0,AES-256-GCM
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,ADDRESS,NAME,198.51.100.7:51234,2026-12-06 20:39:58,1796675998
GLOBAL_STATS,Max bcast/mcast queue length,1
END
";

#[test]
fn openvpn_status_files_of_each_version_name_a_peer() {
    require_root!();
    let ns = NetNs::new("vpn");
    let link = Link::root_to(&ns);
    let status = scratch_path("openvpn-status");
    let _remove = RemoveOnDrop(status.clone());
    let d = Daemon::builder()
        .arg("--openvpn-status")
        .arg(status.display().to_string())
        .start();
    let tg = trafficgen!();
    send_to_namespace(&tg, &ns, &link, "tg-vpn-send");
    let address = link.b_v4().to_string();
    let versions = [
        ("tke-v1", STATUS_V1.to_string()),
        ("tke-v2", STATUS_V2.to_string()),
        ("tke-v3", STATUS_V2.replace(',', "\t")),
    ];
    // The file appears after the daemon started: it is read once it is there.
    for (name, text) in versions {
        replace(
            &status,
            &text.replace("ADDRESS", &address).replace("NAME", name),
        );
        let item = wait_named_remote(&d, name);
        assert_eq!(item.0["source"], "openvpn", "{}", item.0);
        assert_eq!(ips(&item), vec![link.b_v4()]);
        assert!(item.tx() >= PAYLOAD, "{}", item.0);
    }
}

#[test]
fn a_silent_dns_server_does_not_stop_the_daemon() {
    require_root!();
    // Bound and never read: every query to it times out.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ns = NetNs::new("dns");
    let link = Link::root_to(&ns);
    let d = Daemon::builder()
        .arg("--reverse-dns")
        .arg("--dns-server")
        .arg(silent.local_addr().unwrap().to_string())
        .start();
    let tg = trafficgen!();
    for round in 0..3 {
        send_to_namespace(&tg, &ns, &link, &format!("tg-dns-{round}"));
        let asked = Instant::now();
        let item = d.wait_remote(link.b_v4(), |i| i.tx() >= PAYLOAD * (round + 1));
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "/top waited on DNS"
        );
        assert!(item.0["name"].is_null(), "{}", item.0);
        assert_eq!(item.0["class"], "private");
    }
    let (status, _) = d.get_json("/healthz");
    assert_eq!(status, 200);
    wait_for("the silent DNS server in the log", || {
        let log = d.log_text();
        let lines = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&silent.local_addr().unwrap().to_string()))
            .count();
        (lines == 1).then_some(()).ok_or(log)
    });
}

/// The incident's forwarder: a process named `haproxy` in its own namespace, listening on
/// `PROXY_PORT`, fed by a stranger at 203.0.113.5 and forwarding to an upstream sink.
struct Proxy {
    _namespaces: [NetNs; 3],
    _links: [Link; 2],
    haproxy: Gen,
    upstream: SocketAddr,
    /// The forwarder holds its listener until this file exists.
    release: RemoveOnDrop,
}

impl Proxy {
    fn start(tg: &TrafficGen) -> Proxy {
        let internet = NetNs::new("inet");
        let server = NetNs::new("srv");
        let behind = NetNs::new("up");
        let outside = Link::between(&internet, &server);
        let inside = Link::between(&server, &behind);
        // The stranger's address, on its side of the link only; the server routes it back
        // over that link and nowhere else.
        internet.ip(&[
            "addr",
            "add",
            &format!("{STRANGER}/32"),
            "dev",
            outside.if_a(),
        ]);
        let to_server = format!("{}/32", outside.b_v4());
        let src = ["dev", outside.if_a(), "src", STRANGER];
        internet.ip(&[&["route", "add", &to_server][..], &src].concat());
        let via = outside.a_v4().to_string();
        server.ip(&["route", "add", &format!("{STRANGER}/32"), "via", &via]);

        let (sink, upstream) = tg
            .cmd(&[
                "tcp-sink",
                "--listen",
                &SocketAddr::new(inside.b_v4(), 0).to_string(),
            ])
            .netns(&behind)
            .spawn_ready();
        let release = RemoveOnDrop(scratch_path("release"));
        let listen = SocketAddr::new("0.0.0.0".parse().unwrap(), PROXY_PORT);
        let (haproxy, _) = tg
            .cmd(&[
                "--name",
                "haproxy",
                "tcp-forward",
                "--listen",
                &listen.to_string(),
                "--to",
                &upstream.to_string(),
                "--wait-file",
                &release.0.display().to_string(),
            ])
            .netns(&server)
            .spawn_ready();
        let front = SocketAddr::new(outside.b_v4(), PROXY_PORT);
        let client = tg
            .cmd(&[
                "--name",
                "tg-stranger",
                "tcp-send",
                "--to",
                &front.to_string(),
                "--bytes",
                &PAYLOAD.to_string(),
            ])
            .netns(&internet)
            .run();
        assert_eq!(client.local().ip().to_string(), STRANGER);
        assert_eq!(sink.finish().bytes_received(), PAYLOAD);
        Proxy {
            _namespaces: [internet, server, behind],
            _links: [outside, inside],
            haproxy,
            upstream,
            release,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = fs::write(&self.release.0, "");
    }
}

#[test]
fn exposure_lists_a_listener_a_stranger_sends_to() {
    require_root!();
    let d = Daemon::builder()
        .arg("--internal-ports")
        .arg(format!("{PROXY_PORT},5432"))
        .start();
    let tg = trafficgen!();
    let proxy = Proxy::start(&tg);
    let pid = u64::from(proxy.haproxy.pid());
    let started = Instant::now();
    let listener = loop {
        let (status, body) = d.get_json("/exposure");
        assert_eq!(status, 200, "{body}");
        let found = body["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["pid"] == pid && l["peers"][0]["rx_bytes"].as_u64() >= Some(PAYLOAD))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            started.elapsed() < EXPOSURE_WITHIN,
            "haproxy (pid {pid}) not in /exposure: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(listener["comm"], "haproxy", "{listener}");
    assert_eq!(listener["protocol"], "tcp");
    assert_eq!(listener["listen"], format!("0.0.0.0:{PROXY_PORT}"));
    assert_eq!(listener["internal_port"], true, "{listener}");
    let peers = listener["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{listener}");
    assert_eq!(peers[0]["ip"], STRANGER);
    assert_eq!(peers[0]["class"], "documentation");
    let rx = peers[0]["rx_bytes"].as_u64().unwrap();
    assert!((PAYLOAD..=at_most(PAYLOAD)).contains(&rx), "{listener}");
    assert!(peers[0]["first_seen"].as_u64() <= peers[0]["last_seen"].as_u64());

    let out = std::process::Command::new(Daemon::binary())
        .args(["exposure", "--url", &d.url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!("tcp 0.0.0.0:{PROXY_PORT} haproxy pid {pid}");
    assert!(
        text.contains(&line) && text.contains("INTERNAL PORT"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{STRANGER} (documentation)")),
        "{text}"
    );

    let metric = wait_for("the exposed listener's metric", || {
        let value = d.metrics().value(
            "trafficd_exposed_listener_receive_bytes_total",
            &[("comm", "haproxy"), ("port", &PROXY_PORT.to_string())],
        );
        value.filter(|v| *v >= PAYLOAD as f64).ok_or(value)
    });
    assert!(metric <= at_most(PAYLOAD) as f64, "{metric}");
}

fn explain(d: &Daemon, query: &str) -> Value {
    let (status, body) = d.get_json(&format!("/explain?{query}"));
    assert_eq!(status, 200, "/explain?{query}: {body}");
    body
}

#[test]
fn explain_follows_a_proxy_to_the_peer_feeding_it() {
    require_root!();
    let d = Daemon::start();
    let tg = trafficgen!();
    let proxy = Proxy::start(&tg);
    let pid = proxy.haproxy.pid();
    let upstream_ip = proxy.upstream.ip().to_string();
    // The busiest flow of haproxy's with `remote_ip` (the handshake is counted on the
    // listening socket, a flow of its own with the same addresses).
    let of_proxy = |top: &trafficd_tests::Top, remote_ip: &str| {
        top.items()
            .iter()
            .filter(|i| {
                i.pid() == pid
                    && i.str("remote")
                        .parse::<SocketAddr>()
                        .unwrap()
                        .ip()
                        .to_string()
                        == remote_ip
            })
            .max_by_key(|i| i.tx() + i.rx())
            .cloned()
    };
    let (inbound, outbound) = wait_for("haproxy's flows in /top?by=flow", || {
        let top = d.top("by=flow&window=60s&limit=1000");
        match (of_proxy(&top, STRANGER), of_proxy(&top, &upstream_ip)) {
            (Some(i), Some(o)) if i.rx() >= PAYLOAD && o.tx() >= PAYLOAD => Ok((i, o)),
            _ => Err(top.json),
        }
    });

    // The stranger's flow: the process that accepted it, and the peer.
    let e = explain(&d, &format!("flow={}", inbound.str("id")));
    assert_eq!(e["flow"]["direction"], "inbound", "{e}");
    assert_eq!(e["process"]["comm"], "haproxy", "{e}");
    assert_eq!(e["process"]["pid"], pid);
    assert!(e["process"]["cmdline"]
        .as_str()
        .unwrap()
        .contains("tcp-forward"));
    assert_eq!(e["peer"]["ip"], STRANGER);
    assert_eq!(e["peer"]["class"], "documentation");
    assert!(e["interface"].is_null() && e["nat"].is_null(), "{e}");
    let windows = e["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3);
    let lifetime_rx = windows[2]["lifetime_rx_bytes"].as_u64().unwrap();
    assert!((PAYLOAD..=at_most(PAYLOAD)).contains(&lifetime_rx), "{e}");

    // Its outbound flow leads back to the stranger.
    let e = explain(&d, &format!("flow={}", outbound.str("id")));
    assert_eq!(e["flow"]["direction"], "outbound", "{e}");
    let fed_by = e["inbound_peers"].as_array().unwrap();
    assert_eq!(fed_by.len(), 1, "{e}");
    assert_eq!(fed_by[0]["ip"], STRANGER);
    assert_eq!(
        fed_by[0]["local"].as_str().unwrap().rsplit(':').next(),
        Some("3129")
    );
    assert!(fed_by[0]["rx_bytes"].as_u64().unwrap() >= PAYLOAD, "{e}");

    // The same flow by its addresses.
    let by_tuple = explain(
        &d,
        &format!(
            "local={}&remote={}&protocol=tcp",
            outbound.str("local"),
            outbound.str("remote")
        ),
    );
    assert_eq!(by_tuple["flow"]["id"], outbound.str("id"));

    // The CLI prints the chain.
    let out = std::process::Command::new(Daemon::binary())
        .args(["explain", outbound.str("id"), "--url", &d.url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("haproxy") && text.contains(STRANGER),
        "{text}"
    );

    // A flow that is not there.
    let (status, body) = d.get_json("/explain?flow=0000000000000000");
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("/top?by=flow"),
        "{body}"
    );
}
