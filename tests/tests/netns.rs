//! TCP and UDP, IPv4 and IPv6, over veth pairs (MTU 1500) between network
//! namespaces the test creates, and between one and the root namespace. The
//! kernel programs hang off the cgroup2 root, which every namespace's sockets
//! share, so these processes are counted like any other.

use std::net::SocketAddr;

use trafficd_tests::wire::VETH_MTU;
use trafficd_tests::{
    assert_transfer, require_root, trafficgen, Daemon, Link, NetNs, Sender, Side, Transfer,
};

/// 2 MiB: about 1450 segments at MSS 1448 (3.6% / 5% of headers if every
/// segment is counted with its own; fewer when GSO hands the hooks super-packets);
/// the bounds in `wire` account for both.
const TCP_PAYLOAD: u64 = 2 << 20;
const UDP_PAYLOAD: u64 = 500_000;

/// Server in namespace B, client in namespace A.
fn tcp_ns_to_ns(v6: bool, sender: Sender, server: &str, client: &str) {
    let a = NetNs::new("a");
    let b = NetNs::new("b");
    let link = Link::between(&a, &b);
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::tcp(SocketAddr::new(link.b(v6), 0), TCP_PAYLOAD)
        .server(Side::named(server).netns(&b))
        .client(Side::named(client).netns(&a))
        .sent_by(sender)
        .run(&tg);
    assert_eq!(
        t.sender.peer().ip(),
        if sender == Sender::Client {
            link.b(v6)
        } else {
            link.a(v6)
        },
        "{:?}",
        t.sender.json
    );
    assert_transfer(&d, &t, VETH_MTU);
}

#[test]
fn tcp_ipv4_between_namespaces_client_sends() {
    require_root!();
    tcp_ns_to_ns(false, Sender::Client, "tg-n4-sink", "tg-n4-send");
}

#[test]
fn tcp_ipv4_between_namespaces_client_receives() {
    require_root!();
    tcp_ns_to_ns(false, Sender::Server, "tg-n4-serve", "tg-n4-recv");
}

#[test]
fn tcp_ipv6_between_namespaces_client_sends() {
    require_root!();
    tcp_ns_to_ns(true, Sender::Client, "tg-n6-sink", "tg-n6-send");
}

#[test]
fn tcp_ipv6_between_namespaces_client_receives() {
    require_root!();
    tcp_ns_to_ns(true, Sender::Server, "tg-n6-serve", "tg-n6-recv");
}

/// Client in the root namespace, server in a namespace, the client receives.
#[test]
fn tcp_ipv4_root_to_namespace() {
    require_root!();
    let ns = NetNs::new("r");
    let link = Link::root_to(&ns);
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::tcp(SocketAddr::new(link.b_v4(), 0), TCP_PAYLOAD)
        .server(Side::named("tg-nr4-serve").netns(&ns))
        .client(Side::named("tg-nr4-recv"))
        .sent_by(Sender::Server)
        .run(&tg);
    assert_transfer(&d, &t, VETH_MTU);
}

/// Sender in the root namespace, sink in a namespace.
#[test]
fn udp_ipv4_root_to_namespace() {
    require_root!();
    let ns = NetNs::new("u4");
    let link = Link::root_to(&ns);
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(link.b_v4(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-nu4-sink").netns(&ns))
        .client(Side::named("tg-nu4-send"))
        .run(&tg);
    assert_transfer(&d, &t, VETH_MTU);
}

/// Sender in a namespace, sink in the root namespace.
#[test]
fn udp_ipv6_namespace_to_root() {
    require_root!();
    let ns = NetNs::new("u6");
    let link = Link::root_to(&ns);
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(link.a_v6(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-nu6-sink"))
        .client(Side::named("tg-nu6-send").netns(&ns))
        .run(&tg);
    assert_transfer(&d, &t, VETH_MTU);
}

/// Both ends in namespaces, IPv6 UDP.
#[test]
fn udp_ipv6_between_namespaces() {
    require_root!();
    let a = NetNs::new("ua");
    let b = NetNs::new("ub");
    let link = Link::between(&a, &b);
    let d = Daemon::start();
    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(link.b_v6(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-nu6b-sink").netns(&b))
        .client(Side::named("tg-nu6b-send").netns(&a))
        .run(&tg);
    assert_transfer(&d, &t, VETH_MTU);
}
