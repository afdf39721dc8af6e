use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
};

use super::*;
use crate::testnet::{require_root, Routed};

fn tuple(protocol: u8, src: &str, dst: &str) -> FlowTuple {
    FlowTuple {
        protocol,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    }
}

#[test]
fn conntrack_missing_from_the_kernel_is_one_clear_error() {
    for errno in [libc::EPROTONOSUPPORT, libc::EOPNOTSUPP] {
        let err = classify("ns", std::io::Error::from_raw_os_error(errno));
        assert!(matches!(err, Error::ConntrackUnavailable { .. }), "{err:?}");
        let line = err.to_string();
        assert!(line.contains("modprobe nf_conntrack_netlink") && !line.contains('\n'));
    }
    let err = classify(
        "network namespace /x",
        std::io::Error::from_raw_os_error(libc::EPERM),
    );
    assert!(err.to_string().contains("/x"), "{err}");
}

#[test]
fn translation_is_told_by_comparing_the_tuples() {
    let original = tuple(17, "10.1.1.1:4000", "10.1.2.2:5000");
    let plain = NatEntry {
        original,
        reply: original.inverted(),
    };
    assert!(!plain.is_translated());
    let masqueraded = NatEntry {
        original,
        reply: tuple(17, "10.1.2.2:5000", "10.1.2.1:4000"),
    };
    assert!(masqueraded.is_translated());
}

/// B masquerades A's traffic to C. C sees B's address; conntrack in B, asked with what C saw
/// (as it crosses B's outer interface), gives A's address back.
fn masqueraded(net: &Routed) {
    net.b.exec(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &net.bc.a,
            "-j",
            "MASQUERADE",
        ],
    );
}

fn namespace_of(net: &Routed) -> PathBuf {
    PathBuf::from(format!("/run/netns/{}", net.b.name))
}

#[test]
fn masqueraded_udp_gives_back_its_original_tuple() {
    require_root!();
    let net = Routed::new();
    masqueraded(&net);
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let sender = net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    sender.send_to(b"hello", "10.1.2.2:5000").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (_, seen_from) = receiver.recv_from(&mut [0u8; 16]).unwrap();
    assert_eq!(
        seen_from.ip(),
        "10.1.2.1".parse::<IpAddr>().unwrap(),
        "masqueraded"
    );

    let mut conntrack = Conntrack::open(Some(&namespace_of(&net)), 16, Duration::from_secs(5))
        .expect("ctnetlink in B");
    let on_the_wire = FlowTuple {
        protocol: 17,
        src: seen_from,
        dst: "10.1.2.2:5000".parse().unwrap(),
    };
    let entry = conntrack
        .lookup(&on_the_wire)
        .unwrap()
        .expect("the connection");
    assert_eq!(
        entry.original,
        FlowTuple {
            protocol: 17,
            src: sender.local_addr().unwrap(),
            dst: "10.1.2.2:5000".parse().unwrap(),
        }
    );
    assert_eq!(entry.reply, on_the_wire.inverted());
    assert!(entry.is_translated());
    // Asked with the original tuple, the same connection.
    assert_eq!(conntrack.lookup(&entry.original).unwrap(), Some(entry));

    // Not tracked in B, nor in the host's namespace, which never saw it.
    let unknown = tuple(17, "10.1.1.1:1", "10.1.2.2:2");
    assert_eq!(conntrack.lookup(&unknown).unwrap(), None);
    let mut host = Conntrack::open(None, 16, Duration::from_secs(5)).unwrap();
    assert_eq!(host.lookup(&on_the_wire).unwrap(), None);
}

#[test]
fn masqueraded_tcp_gives_back_its_original_tuple() {
    require_root!();
    let net = Routed::new();
    masqueraded(&net);
    let listener = net.c.enter(|| TcpListener::bind("10.1.2.2:5001").unwrap());
    let client = net.a.enter(|| TcpStream::connect("10.1.2.2:5001").unwrap());
    let (_, seen_from) = listener.accept().unwrap();
    let mut conntrack =
        Conntrack::open(Some(&namespace_of(&net)), 16, Duration::from_secs(5)).unwrap();
    let entry = conntrack
        .lookup(&FlowTuple {
            protocol: 6,
            src: seen_from,
            dst: "10.1.2.2:5001".parse().unwrap(),
        })
        .unwrap()
        .expect("the connection");
    assert_eq!(entry.original.src, client.local_addr().unwrap());
    assert_eq!(entry.reply.dst, seen_from);
}

#[test]
fn a_namespace_that_is_gone_is_named_in_the_error() {
    require_root!();
    let missing = PathBuf::from("/run/netns/trafficd-no-such-namespace");
    match Conntrack::open(Some(&missing), 16, Duration::from_secs(5)) {
        Err(Error::Conntrack { namespace, .. }) => {
            assert!(namespace.contains("trafficd-no-such-namespace"))
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn the_cache_stays_bounded() {
    require_root!();
    let mut conntrack = Conntrack::open(None, 4, Duration::from_secs(60)).unwrap();
    for port in 1..=10 {
        let unknown = tuple(6, &format!("127.0.0.1:{port}"), "127.0.0.1:9");
        assert_eq!(conntrack.lookup(&unknown).unwrap(), None);
        assert!(conntrack.cache.len() <= 4);
    }
}
