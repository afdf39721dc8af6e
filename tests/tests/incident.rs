//! The incident trafficd exists for (docs/USER-STORY), replayed for real on this machine.
//!
//! An "internet" peer at 203.0.113.5 sends to a process named `haproxy` on port 3129 of a
//! VPN client namespace (172.16.248.22), which forwards to 10.8.1.3:3129 in a "remote"
//! namespace. The client's traffic leaves through a Docker container named `openvpn` that
//! NATs it (MASQUERADE in the container's namespace), then through the host's own MASQUERADE
//! for the container. An OpenVPN status file names 172.16.248.22 `tke-xxx`.
//!
//! From one /top?by=flow and one /explain, the chain must be whole: the uplink tuple, the
//! container's original tuple, the container's name, the VPN client named `tke-xxx`. The
//! NAT hops and container names come from the interface/NAT and container sources; when one
//! is missing this test fails, saying which link of the chain it is, rather than passing
//! with half of it.

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use trafficd_tests::docker::Dockerd;
use trafficd_tests::{
    require_root, scratch_path, trafficgen, wait_counted, wait_for, Daemon, Link, NetNs,
    RemoveOnDrop,
};

const PAYLOAD: u64 = 1 << 20;
const VPN_CLIENT: &str = "172.16.248.22";
const VPN_SERVER_SIDE: &str = "172.16.248.21";
const STRANGER: &str = "203.0.113.5";
const UPSTREAM: &str = "10.8.1.3";
const PORT: u16 = 3129;

const STATUS_V1: &str = "\
OpenVPN CLIENT LIST
Updated,Sun Dec  6 20:40:01 2026
Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since
tke-xxx,198.51.100.7:51234,4413218,55421,Sun Dec  6 18:02:11 2026
ROUTING TABLE
Virtual Address,Common Name,Real Address,Last Ref
172.16.248.22,tke-xxx,198.51.100.7:51234,Sun Dec  6 20:39:58 2026
GLOBAL STATS
Max bcast/mcast queue length,1
END
";

const STATUS_V2: &str = "\
TITLE,OpenVPN 2.6.3 x86_64-pc-linux-gnu
TIME,2026-12-06 20:40:01,1796676001
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher
CLIENT_LIST,tke-xxx,198.51.100.7:51234,172.16.248.22,,4413218,55421,2026-12-06 18:02:11,1796666531,UNDEF,0,0,AES-256-GCM
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,172.16.248.22,tke-xxx,198.51.100.7:51234,2026-12-06 20:39:58,1796675998
GLOBAL_STATS,Max bcast/mcast queue length,1
END
";

/// Runs `nsenter -t <pid> -n <args>`: a command inside the container's network namespace
/// with the host's tools (busybox has no iptables).
fn in_container(pid: u32, args: &[&str]) {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter -t {pid} -n {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    trafficd_tests::ip::ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// A veth whose host-side end is deleted on drop (with its peer), in case the test fails
/// before both ends are in their namespaces.
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = trafficd_tests::ip::ip(&["link", "del", &self.0]);
    }
}

fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn explain(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.get_json(&format!("/explain?flow={id}"));
    assert_eq!(status, 200, "/explain?flow={id}: {body}");
    body
}

#[test]
fn the_incident_is_answered_in_one_query() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let vpn = dockerd.run("openvpn", &["sleep", "600"]);
    let vpn_pid = vpn.pid();

    // The upstream the forwarder was meant to reach, behind the host's uplink.
    let remote = NetNs::new("remote");
    let uplink = Link::root_to(&remote);
    remote.ip(&[
        "addr",
        "add",
        &format!("{UPSTREAM}/32"),
        "dev",
        uplink.if_b(),
    ]);
    let via = uplink.b_v4().to_string();
    ip(&["route", "add", &format!("{UPSTREAM}/32"), "via", &via]);

    // The VPN client, behind the container, which NATs it.
    let client = NetNs::new("vpncl");
    let host_end = format!("tdv{}", std::process::id() % 100_000);
    let client_end = format!("{host_end}c");
    ip(&[
        "link",
        "add",
        &host_end,
        "type",
        "veth",
        "peer",
        "name",
        &client_end,
    ]);
    let _veth = Veth(host_end.clone());
    ip(&["link", "set", &client_end, "netns", client.name()]);
    ip(&["link", "set", &host_end, "netns", &vpn_pid.to_string()]);
    let server_side = format!("{VPN_SERVER_SIDE}/30");
    in_container(
        vpn_pid,
        &["ip", "addr", "add", &server_side, "dev", &host_end],
    );
    in_container(vpn_pid, &["ip", "link", "set", &host_end, "up"]);
    in_container(vpn_pid, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let masquerade = "-t nat -A POSTROUTING -s 172.16.248.0/24 -o eth0 -j MASQUERADE";
    let masquerade: Vec<&str> = masquerade.split(' ').collect();
    in_container(vpn_pid, &[&["iptables"][..], &masquerade].concat());
    let client_addr = format!("{VPN_CLIENT}/30");
    client.ip(&["addr", "add", &client_addr, "dev", &client_end]);
    client.ip(&["link", "set", &client_end, "up"]);
    client.ip(&["route", "add", "default", "via", VPN_SERVER_SIDE]);

    // The stranger, routed only to the client.
    let internet = NetNs::new("inet");
    let outside = Link::between(&internet, &client);
    internet.ip(&[
        "addr",
        "add",
        &format!("{STRANGER}/32"),
        "dev",
        outside.if_a(),
    ]);
    let to_client = format!("{}/32", outside.b_v4());
    internet.ip(&[
        "route",
        "add",
        &to_client,
        "dev",
        outside.if_a(),
        "src",
        STRANGER,
    ]);
    let back = outside.a_v4().to_string();
    client.ip(&["route", "add", &format!("{STRANGER}/32"), "via", &back]);

    let status = scratch_path("openvpn.status");
    let _status = RemoveOnDrop(status.clone());
    replace(&status, STATUS_V1);
    let d = Daemon::builder()
        .arg("--openvpn-status")
        .arg(status.display().to_string())
        .arg("--internal-ports")
        .arg(PORT.to_string())
        .start();
    // The uplink's forwarded flow is counted only once the tc programs are on it.
    wait_counted(&d, uplink.if_a());

    let tg = trafficgen!();
    let upstream = SocketAddr::new(UPSTREAM.parse().unwrap(), PORT);
    let (sink, _) = tg
        .cmd(&["tcp-sink", "--listen", &upstream.to_string()])
        .netns(&remote)
        .spawn_ready();
    let release = RemoveOnDrop(scratch_path("release"));
    let (haproxy, _) = tg
        .cmd(&[
            "--name",
            "haproxy",
            "tcp-forward",
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--to",
            &upstream.to_string(),
            "--wait-file",
            &release.0.display().to_string(),
        ])
        .netns(&client)
        .spawn_ready();
    let front = SocketAddr::new(outside.b_v4(), PORT);
    let sent = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &front.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
        ])
        .netns(&internet)
        .run();
    assert_eq!(sent.local().ip().to_string(), STRANGER);
    let received = sink.finish();
    assert_eq!(received.bytes_received(), PAYLOAD);
    // The upstream saw the host's uplink address: both NATs happened.
    assert_eq!(received.peer().ip(), uplink.a_v4(), "{:?}", received.json);
    let uplink_peer = received.peer();

    // Exposure: haproxy's internal port, reached by the stranger.
    let pid = u64::from(haproxy.pid());
    let started = Instant::now();
    let exposed = loop {
        let (_, body) = d.get_json("/exposure");
        let found = body["listeners"].as_array().and_then(|l| {
            l.iter()
                .find(|l| l["pid"] == pid && l["peers"][0]["rx_bytes"].as_u64() >= Some(PAYLOAD))
                .cloned()
        });
        if let Some(found) = found {
            break found;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(exposed["comm"], "haproxy");
    assert_eq!(exposed["internal_port"], true, "{exposed}");
    assert_eq!(exposed["peers"][0]["ip"], STRANGER);
    assert_eq!(exposed["peers"][0]["class"], "documentation");

    // haproxy's outbound flow leads back to the stranger.
    let top = d.top("by=flow&window=60s&limit=1000");
    let outbound = top
        .items()
        .iter()
        .filter(|i| i.pid() as u64 == pid && i.str("remote") == upstream.to_string())
        .max_by_key(|i| i.tx())
        .unwrap_or_else(|| panic!("haproxy's flow to {upstream}: {}", top.json))
        .clone();
    let e = explain(&d, outbound.str("id"));
    assert_eq!(e["inbound_peers"][0]["ip"], STRANGER, "{e}");

    // The flow on the uplink, as nethogs showed it: the upstream's end of the tuple, counted
    // on the uplink (the upstream's own socket is a flow item with the same ends).
    let bound = PAYLOAD + PAYLOAD / 10;
    let flow = wait_for("the uplink flow in /top?by=flow", || {
        let top = d.top("by=flow&window=60s&limit=1000");
        let uplink_flow = top
            .items()
            .iter()
            .filter(|i| i.0["interface"] == uplink.if_a())
            .filter(|i| {
                let ends = [i.str("local"), i.str("remote")].map(|s| s.parse::<SocketAddr>().ok());
                ends.contains(&Some(upstream)) && ends.contains(&Some(uplink_peer))
            })
            .max_by_key(|i| i.rx() + i.tx())
            .cloned();
        uplink_flow
            .filter(|i| i.rx() + i.tx() >= PAYLOAD)
            .ok_or(top.json)
    });
    let moved = flow.rx() + flow.tx();
    assert!((PAYLOAD..=bound).contains(&moved), "{}", flow.0);

    // Each status version names the VPN client, in turn, in the same chain.
    for version in [
        STATUS_V1.to_string(),
        STATUS_V2.to_string(),
        STATUS_V2.replace(',', "\t"),
    ] {
        replace(&status, &version);
        let e = explain(&d, flow.str("id"));
        let text = e.to_string();
        for (needle, what) in [
            (uplink_peer.ip().to_string(), "the uplink tuple"),
            (
                vpn.inspect("{{.NetworkSettings.IPAddress}}"),
                "the container's original tuple (conntrack NAT hop on the host)",
            ),
            (
                "openvpn".to_string(),
                "the container's name behind the NAT hop",
            ),
            (
                VPN_CLIENT.to_string(),
                "the VPN client's tuple (conntrack NAT hop in the container's namespace)",
            ),
            (
                "tke-xxx".to_string(),
                "the VPN client's name from the status file",
            ),
        ] {
            assert!(
                text.contains(&needle),
                "/explain of the uplink flow lacks {what} ({needle}): {e:#}"
            );
        }
        assert!(
            !e["nat"].is_null() && !e["interface"].is_null(),
            "/explain of the uplink flow has no NAT hops or interface: {e:#}"
        );
    }
    // The CLI prints the same chain, wire first.
    let out = Command::new(Daemon::binary())
        .args(["explain", flow.str("id"), "--url", &d.url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wire = format!("  wire      {} egress", uplink.if_a());
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with(&wire)),
        "{text}"
    );
    for needle in ["tke-xxx", "openvpn (container)"] {
        assert!(text.contains(needle), "{text}");
    }
    let _ = fs::write(&release.0, "");
}
