//! TCP and UDP over loopback, IPv4 and IPv6, both directions: each process is
//! reported with its pid, comm, user and cgroup and the bytes it sent and
//! received, by process and by flow.

use std::net::{IpAddr, SocketAddr};

use trafficd_tests::wire::LOOPBACK_MTU;
use trafficd_tests::{assert_transfer, require_root, trafficgen, Daemon, Sender, Side, Transfer};

/// 4 MiB: large enough that headers (< 0.1% on loopback) and the handshake
/// are dwarfed, small enough to take milliseconds.
const TCP_PAYLOAD: u64 = 4 << 20;
/// 1000 datagrams of 1000 bytes.
const UDP_PAYLOAD: u64 = 1_000_000;

fn lo(v6: bool) -> IpAddr {
    if v6 {
        "::1".parse().unwrap()
    } else {
        "127.0.0.1".parse().unwrap()
    }
}

fn tcp(v6: bool, sender: Sender, server: &str, client: &str) {
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::tcp(SocketAddr::new(lo(v6), 0), TCP_PAYLOAD)
        .server(Side::named(server))
        .client(Side::named(client))
        .sent_by(sender)
        .run(&tg);
    assert_transfer(&d, &t, LOOPBACK_MTU);
    // Every byte here went to and came from the loopback address.
    let r = d.wait_remote(lo(v6), |i| i.tx() >= TCP_PAYLOAD && i.rx() >= TCP_PAYLOAD);
    assert!(r.tx() >= TCP_PAYLOAD && r.rx() >= TCP_PAYLOAD, "{:#}", r.0);
}

fn udp(v6: bool, sink: &str, sender: &str) {
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(lo(v6), 0), UDP_PAYLOAD)
        .server(Side::named(sink))
        .client(Side::named(sender))
        .run(&tg);
    assert_transfer(&d, &t, LOOPBACK_MTU);
}

#[test]
fn tcp_ipv4_client_sends() {
    require_root!();
    tcp(false, Sender::Client, "tg-l4-sink", "tg-l4-send");
}

#[test]
fn tcp_ipv4_client_receives() {
    require_root!();
    tcp(false, Sender::Server, "tg-l4-serve", "tg-l4-recv");
}

#[test]
fn tcp_ipv6_client_sends() {
    require_root!();
    tcp(true, Sender::Client, "tg-l6-sink", "tg-l6-send");
}

#[test]
fn tcp_ipv6_client_receives() {
    require_root!();
    tcp(true, Sender::Server, "tg-l6-serve", "tg-l6-recv");
}

#[test]
fn udp_ipv4() {
    require_root!();
    udp(false, "tg-lu4-sink", "tg-lu4-send");
}

#[test]
fn udp_ipv6() {
    require_root!();
    udp(true, "tg-lu6-sink", "tg-lu6-send");
}
