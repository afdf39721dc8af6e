//! The kernel parser on packets the other tests cannot make: IPv6 extension headers, IPv4
//! options, first and later fragments, ICMP, a cut-short header, and beside them plain TCP and
//! UDP over both families, which take the parser's in-place path. Each crafted packet is run through the
//! daemon's own loaded trafficd_egress program with BPF_PROG_TEST_RUN (`bpftool prog run`), then
//! /top?by=flow must show the 5-tuple the parser read and exactly `REPEAT` packets of its length.

use std::{net::SocketAddr, process::Command};

use trafficd_tests::{require_root, wait_for, Daemon};

const REPEAT: u64 = 7;

/// IPv4 header (20 bytes + `options`), checksum left 0: the cgroup hook does not check it.
fn ipv4(protocol: u8, payload_len: usize, fragment_offset: u16, options: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = (header_len + payload_len) as u16;
    let mut p = vec![0x40 | (header_len / 4) as u8, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 1]);
    p.extend(fragment_offset.to_be_bytes());
    p.extend([64, protocol, 0, 0]);
    p.extend([192, 0, 2, 1, 198, 51, 100, 7]);
    p.extend(options);
    p
}

fn ipv6(next: u8, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload_len as u16).to_be_bytes());
    p.extend([next, 64]);
    p.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend(
        "2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p
}

fn tcp(src: u16, dst: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(src.to_be_bytes());
    t.extend(dst.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn udp(src: u16, dst: u16, len: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(src.to_be_bytes());
    u.extend(dst.to_be_bytes());
    u.extend(((8 + len) as u16).to_be_bytes());
    u.extend([0, 0]);
    u
}

/// The id of trafficd_egress loaded by the daemon with pid `pid` (bpftool lists the pids that
/// hold a program; without that, the newest trafficd_egress).
fn egress_program(pid: u32) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool (cargo xtask setup installs it)");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool -j output");
    let ours: Vec<&serde_json::Value> = progs
        .as_array()
        .expect("array")
        .iter()
        .filter(|p| p["name"] == "trafficd_egress")
        .collect();
    let held_by_us = ours.iter().find(|p| {
        p["pids"].as_array().is_some_and(|pids| {
            pids.iter()
                .any(|x| x["pid"].as_u64() == Some(u64::from(pid)))
        })
    });
    held_by_us
        .or_else(|| ours.iter().max_by_key(|p| p["id"].as_u64()))
        .and_then(|p| p["id"].as_u64())
        .expect("the daemon's trafficd_egress is loaded")
}

/// Runs `packet` (an IP packet) through the program `REPEAT` times.
fn run(program: u64, packet: &[u8], name: &str) {
    // BPF_PROG_TEST_RUN for cgroup_skb takes an Ethernet frame and pulls the header. It refuses
    // an IPv6 ethertype on a packet shorter than an IPv6 header, so a cut packet goes without.
    let mut frame = vec![0u8; 12];
    frame.extend(match packet[0] >> 4 {
        6 if packet.len() >= 40 => [0x86, 0xdd],
        4 if packet.len() >= 20 => [0x08, 0x00],
        _ => [0, 0],
    });
    frame.extend(packet);
    let file = std::env::temp_dir().join(format!("trafficd-pkt-{}-{name}", std::process::id()));
    std::fs::write(&file, &frame).unwrap();
    let status = Command::new("bpftool")
        .args(["prog", "run", "id", &program.to_string(), "data_in"])
        .arg(&file)
        .args(["repeat", &REPEAT.to_string()])
        .output()
        .unwrap();
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::remove_file(&file).unwrap();
    assert!(
        status.status.success(),
        "bpftool prog run of {name} ({hex}): {status:?}"
    );
}

fn assert_flow(d: &Daemon, protocol: &str, local: &str, remote: &str, packet_len: usize) {
    let local: SocketAddr = local.parse().unwrap();
    let remote: SocketAddr = remote.parse().unwrap();
    let bytes = REPEAT * packet_len as u64;
    let flows = d.wait_flow(protocol, local, remote, |tx, _| tx >= bytes);
    let tx: u64 = flows.iter().map(|f| f.tx()).sum();
    let packets: u64 = flows.iter().map(|f| f.tx_packets()).sum();
    assert_eq!(
        tx, bytes,
        "{protocol} {local} -> {remote}: {REPEAT} x {packet_len} bytes"
    );
    assert_eq!(packets, REPEAT, "{protocol} {local} -> {remote}");
}

#[test]
fn the_kernel_parser_reads_crafted_packets() {
    require_root!();
    let d = Daemon::start();
    let program = egress_program(d.pid().expect("daemon pid"));

    // (name, packet, the 5-tuple the parser must read from it)
    let cases: [(&str, Vec<u8>, &str, &str, &str); 7] = [
        // IPv6, hop-by-hop options (8 bytes) and a first fragment (8 bytes) before TCP.
        (
            "v6-ext",
            {
                let hop_by_hop = [44, 0, 1, 4, 0, 0, 0, 0];
                let fragment = [6, 0, 0, 1, 0, 0, 0, 9]; // offset 0, more fragments
                let segment = [tcp(4242, 80), vec![b'x'; 100]].concat();
                let v6 = ipv6(0, hop_by_hop.len() + fragment.len() + segment.len());
                [v6, hop_by_hop.to_vec(), fragment.to_vec(), segment].concat()
            },
            "tcp",
            "[2001:db8::1]:4242",
            "[2001:db8::2]:80",
        ),
        // IPv4 with 4 bytes of options (IHL 6) before UDP.
        (
            "v4-options",
            [
                ipv4(17, 8 + 50, 0, &[1, 1, 1, 0]),
                udp(5353, 53, 50),
                vec![0; 50],
            ]
            .concat(),
            "udp",
            "192.0.2.1:5353",
            "198.51.100.7:53",
        ),
        // Plain headers, read in place: IPv4 + TCP and IPv6 + UDP.
        (
            "v4-tcp",
            [ipv4(6, 20 + 100, 0, &[]), tcp(40000, 443), vec![b'y'; 100]].concat(),
            "tcp",
            "192.0.2.1:40000",
            "198.51.100.7:443",
        ),
        (
            "v6-udp",
            [ipv6(17, 8 + 30), udp(6000, 7000, 30), vec![b'z'; 30]].concat(),
            "udp",
            "[2001:db8::1]:6000",
            "[2001:db8::2]:7000",
        ),
        // A first IPv4 fragment (more fragments, offset 0): the general parser, ports read.
        (
            "v4-first-fragment",
            [
                ipv4(17, 8 + 40, 0x2000, &[]),
                udp(5000, 5001, 40),
                vec![0xcd; 40],
            ]
            .concat(),
            "udp",
            "192.0.2.1:5000",
            "198.51.100.7:5001",
        ),
        // A later IPv4 fragment: no transport header, so no ports.
        (
            "v4-later-fragment",
            [ipv4(17, 64, 185, &[]), vec![0xab; 64]].concat(),
            "udp",
            "192.0.2.1:0",
            "198.51.100.7:0",
        ),
        // ICMP: counted by protocol, without ports.
        (
            "icmp",
            [
                ipv4(1, 16, 0, &[]),
                vec![8, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat(),
            "icmp",
            "192.0.2.1:0",
            "198.51.100.7:0",
        ),
    ];
    for (name, packet, protocol, local, remote) in &cases {
        run(program, packet, name);
        assert_flow(&d, protocol, local, remote, packet.len());
    }

    // An IPv6 packet cut inside its header: counted, and as unparsed.
    let cut = ipv6(6, 0)[..30].to_vec();
    run(program, &cut, "cut");
    wait_for("unparsed_packet losses", || {
        let m = d.metrics();
        match m.value(
            "trafficd_kernel_lost_events_total",
            &[("reason", "unparsed_packet")],
        ) {
            Some(v) if v >= REPEAT as f64 => Ok(v),
            other => Err(format!("{other:?}")),
        }
    });
}
