//! Namespaces A and C routed through a router namespace B that the test creates; the tc
//! programs on B's two interfaces. IPv6 is off and every neighbour entry is permanent, so the
//! links carry only what the test sends, and the counts can be exact.

use std::{collections::BTreeMap, net::UdpSocket, time::Duration};

use aya::{Ebpf, EbpfLoader};
use trafficd_common::{
    forwarding::{kind, DEFAULT_FLOWS, DEFAULT_INTERFACES, EGRESS, INGRESS},
    AF_INET, AF_INET6,
};

use super::*;
use crate::{
    enrich::interfaces::{InterfaceSample, Interfaces},
    testnet::{require_root, unique, Netns, Routed},
};

const DATAGRAMS: u64 = 200;
const PAYLOAD: usize = 1000;
/// Ethernet 14 + IPv4 20 + UDP 8 + payload: what each datagram is on a veth.
const FRAME: u64 = 14 + 20 + 8 + PAYLOAD as u64;

fn load_object(flows: u32) -> Ebpf {
    load_object_for(flows, DEFAULT_INTERFACES)
}

fn load_object_for(flows: u32, interfaces: u32) -> Ebpf {
    let object = super::super::btf::offsets()
        .and_then(|offsets| offsets.patch(super::super::OBJECT))
        .expect("the embedded object");
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let mut loader = EbpfLoader::new();
    with_forwarded_flows(&mut loader, flows);
    with_interfaces(&mut loader, interfaces);
    loader
        .btf(Some(&btf))
        .load(object.bytes())
        .expect("load the object")
}

/// The object with room for the default number of forwarded flows, and its tc programs.
fn load_counters() -> (Ebpf, TcCounters) {
    let mut ebpf = load_object(DEFAULT_FLOWS);
    let tc = TcCounters::load(&mut ebpf, DEFAULT_FLOWS, None).unwrap();
    (ebpf, tc)
}

/// Sends `count` datagrams from `sender` to the receiver at 10.1.2.2:5000 in C, each received
/// before the next is sent (a burst would overflow the receiver's buffer).
fn udp_to_c(sender: &UdpSocket, receiver: &UdpSocket, count: u64) {
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..count {
        sender.send_to(&[1u8; PAYLOAD], "10.1.2.2:5000").unwrap();
        let (n, _) = receiver
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {count}: {e}"));
        assert_eq!(n, PAYLOAD);
    }
}

fn kind_bytes(tc: &TcCounters, ifindex: u32, direction: u8, of: u8) -> u64 {
    tc.kinds()
        .iter()
        .filter(|(k, _)| k.ifindex == ifindex && k.direction == direction && k.kind == of)
        .map(|(_, c)| c.bytes)
        .sum()
}

fn sample(samples: &[InterfaceSample], ifindex: u32) -> InterfaceSample {
    samples
        .iter()
        .find(|s| s.ifindex == ifindex)
        .cloned()
        .expect("the interface in B's dump")
}

#[test]
fn forwarded_udp_is_counted_per_flow_and_local_sockets_are_not() {
    require_root!();
    forwarded_udp(AttachMode::of_this_kernel());
}

/// The same through a clsact qdisc, as on kernels before TCX.
#[test]
fn forwarded_udp_is_counted_on_clsact_too() {
    require_root!();
    forwarded_udp(AttachMode::Clsact);
}

fn forwarded_udp(mode: AttachMode) {
    let net = Routed::new();
    let (ebpf, mut tc, mut interfaces, b_in, b_out) = net.b.enter(|| {
        let (mut ebpf, mut tc) = load_counters();
        tc.set_mode(mode);
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        tc.attach(&mut ebpf, &net.bc.a, 14).unwrap();
        let interfaces = Interfaces::new([]).unwrap();
        let b_in = ifindex_of(&net.ab.b).unwrap();
        let b_out = ifindex_of(&net.bc.a).unwrap();
        (ebpf, tc, interfaces, b_in, b_out)
    });
    if mode == AttachMode::Clsact {
        let filters = net
            .b
            .exec("tc", &["filter", "show", "dev", &net.ab.b, "ingress"]);
        assert!(filters.contains("trafficd_tc_ingress"), "{filters}");
    }
    let before = interfaces.poll().unwrap();
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let sender = net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    udp_to_c(&sender, &receiver, DATAGRAMS);

    let flows = forwarded(&mut tc);
    let flow = |ifindex: u32, direction: u8| {
        flows
            .iter()
            .find(|(k, _)| k.ifindex == ifindex && k.direction == direction)
            .unwrap_or_else(|| panic!("no forwarded flow on {ifindex}/{direction}: {flows:?}"))
    };
    for (ifindex, direction, other) in [(b_in, INGRESS, b_out), (b_out, EGRESS, b_in)] {
        let (key, counts) = flow(ifindex, direction);
        assert_eq!(
            (key.family, key.protocol, key.other_ifindex),
            (AF_INET, 17, other)
        );
        assert_eq!(key.src_addr[..4], [10, 1, 1, 1]);
        assert_eq!(key.dst_addr[..4], [10, 1, 2, 2]);
        assert_eq!(key.dst_port, 5000);
        assert_eq!(key.src_port, sender.local_addr().unwrap().port());
        assert_eq!(
            (counts.packets, counts.bytes),
            (DATAGRAMS, DATAGRAMS * FRAME)
        );
        assert_eq!(
            counts.wire_bytes, counts.bytes,
            "UDP is never a GSO buffer here"
        );
    }
    assert_eq!(flows.len(), 2, "{flows:?}");

    // Every byte on B's interfaces is in one kind, and here all of them are forwarded.
    let after = interfaces.poll().unwrap();
    let rx = sample(&after, b_in).rx_bytes - sample(&before, b_in).rx_bytes;
    let tx = sample(&after, b_out).tx_bytes - sample(&before, b_out).tx_bytes;
    assert_eq!(rx, DATAGRAMS * FRAME);
    assert_eq!(tx, DATAGRAMS * FRAME);
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), rx);
    assert_eq!(kind_bytes(&tc, b_out, EGRESS, kind::FORWARDED), tx);
    for ifindex in [b_in, b_out] {
        for direction in [INGRESS, EGRESS] {
            assert_eq!(kind_bytes(&tc, ifindex, direction, kind::LOCAL), 0);
        }
    }

    // B's own socket: local on the way out, no forwarded flow.
    let local = net.b.enter(|| UdpSocket::bind("10.1.2.1:0").unwrap());
    udp_to_c(&local, &receiver, 50);
    assert_eq!(kind_bytes(&tc, b_out, EGRESS, kind::LOCAL), 50 * FRAME);
    assert_eq!(
        forwarded(&mut tc),
        vec![],
        "B's own datagrams move no forwarded flow"
    );
    assert_eq!(tc.losses(), TcLosses::default());

    // Detached: its counts are forgotten and nothing more is counted.
    // In B: a clsact filter is removed over netlink, by ifindex in the caller's namespace.
    net.b.enter(|| tc.detach(b_out));
    if mode == AttachMode::Clsact {
        let filters = net
            .b
            .exec("tc", &["filter", "show", "dev", &net.bc.a, "egress"]);
        assert!(!filters.contains("trafficd"), "{filters}");
    }
    assert!(tc.kinds().iter().all(|(k, _)| k.ifindex != b_out));
    udp_to_c(&local, &receiver, 10);
    assert!(tc.kinds().iter().all(|(k, _)| k.ifindex != b_out));
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), rx);
    assert_eq!(tc.attached().count(), 1);
    net.b.enter(|| drop((tc, ebpf)));
}

/// The ingress program caches a flow's routing verdict for a moment: once C's address becomes
/// B's own, the same flow's datagrams count as local on B's ingress within that moment, and
/// the forwarded flow stops growing.
#[test]
fn a_route_change_is_seen_by_a_cached_flow() {
    require_root!();
    let net = Routed::new();
    let (ebpf, mut tc, b_in) = net.b.enter(|| {
        let (mut ebpf, mut tc) = load_counters();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        (ebpf, tc, ifindex_of(&net.ab.b).unwrap())
    });
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let sender = net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    udp_to_c(&sender, &receiver, 50);
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), 50 * FRAME);

    // C's address on B's loopback: the kernel now delivers the flow to B.
    net.b
        .exec("ip", &["addr", "add", "10.1.2.2/32", "dev", "lo"]);
    let on_b = net.b.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    std::thread::sleep(Duration::from_millis(1_100));
    udp_to_c(&sender, &on_b, 20);
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), 50 * FRAME);
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::LOCAL), 20 * FRAME);
    net.b.enter(|| {
        tc.detach(b_in);
        drop((tc, ebpf));
    });
}

/// Two counted interfaces whose indexes share a place in INTERFACE_SLOTS (they differ by
/// IFINDEX_SLOTS): each counts its own packets, the second through MORE_INTERFACE_SLOTS, also
/// after the one in the place goes and when it comes back.
#[test]
fn interfaces_whose_indexes_share_a_place_are_each_counted() {
    require_root!();
    let net = Routed::new();
    // D -- B, on an interface of B whose index is b_in's plus IFINDEX_SLOTS.
    let d = Netns::new();
    let b_in = net.b.enter(|| ifindex_of(&net.ab.b).unwrap());
    let twin_index = b_in + IFINDEX_SLOTS;
    let (twin, d_end) = (unique("tdt"), unique("tdd"));
    net.b.ip(&[
        "link",
        "add",
        &twin,
        "index",
        &twin_index.to_string(),
        "type",
        "veth",
        "peer",
        "name",
        &d_end,
        "netns",
        &d.name,
    ]);
    let ends = [(&net.b, &twin, "10.1.3.1/24"), (&d, &d_end, "10.1.3.2/24")];
    for (ns, dev, addr) in ends {
        ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    d.ip(&["route", "add", "default", "via", "10.1.3.1"]);
    d.permanent_neighbour(&d_end, "10.1.3.1", &net.b.mac(&twin));

    let (mut ebpf, mut tc) = net.b.enter(|| {
        let (mut ebpf, mut tc) = load_counters();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        tc.attach(&mut ebpf, &twin, 14).unwrap();
        (ebpf, tc)
    });
    assert_eq!(ifindex_of_in(&net.b, &twin), twin_index);
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let from_a = net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    let from_d = d.enter(|| UdpSocket::bind("10.1.3.2:0").unwrap());
    udp_to_c(&from_a, &receiver, DATAGRAMS);
    udp_to_c(&from_d, &receiver, 50);
    assert_eq!(
        kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED),
        DATAGRAMS * FRAME
    );
    assert_eq!(
        kind_bytes(&tc, twin_index, INGRESS, kind::FORWARDED),
        50 * FRAME
    );

    net.b.enter(|| tc.detach(b_in));
    udp_to_c(&from_d, &receiver, 30);
    udp_to_c(&from_a, &receiver, 10);
    assert_eq!(
        kind_bytes(&tc, twin_index, INGRESS, kind::FORWARDED),
        80 * FRAME
    );
    assert!(tc.kinds().iter().all(|(k, _)| k.ifindex != b_in));

    // And back: b_in takes the place again, its twin still found aside.
    net.b.enter(|| tc.attach(&mut ebpf, &net.ab.b, 14).unwrap());
    udp_to_c(&from_a, &receiver, 20);
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), 20 * FRAME);
    assert_eq!(
        kind_bytes(&tc, twin_index, INGRESS, kind::FORWARDED),
        80 * FRAME
    );
    assert_eq!(tc.losses(), TcLosses::default());
    net.b.enter(|| drop((tc, ebpf)));
}

/// With room for one interface a second is refused, naming the flag, until the first goes;
/// the second then counts from zero in the slot the first held.
#[test]
fn an_interface_beyond_max_interfaces_waits_for_a_free_slot() {
    require_root!();
    let net = Routed::new();
    let (mut ebpf, mut tc, refused) = net.b.enter(|| {
        let mut ebpf = load_object_for(DEFAULT_FLOWS, 1);
        let mut tc = TcCounters::load(&mut ebpf, DEFAULT_FLOWS, None).unwrap();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        let refused = tc.attach(&mut ebpf, &net.bc.a, 14).unwrap_err();
        (ebpf, tc, refused.to_string())
    });
    assert!(
        refused.contains(&net.bc.a) && refused.contains("raise --max-interfaces"),
        "{refused}"
    );
    let (b_in, b_out) = (
        ifindex_of_in(&net.b, &net.ab.b),
        ifindex_of_in(&net.b, &net.bc.a),
    );
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let sender = net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    udp_to_c(&sender, &receiver, DATAGRAMS);
    assert_eq!(
        kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED),
        DATAGRAMS * FRAME
    );

    net.b.enter(|| {
        tc.detach(b_in);
        tc.attach(&mut ebpf, &net.bc.a, 14).unwrap();
    });
    udp_to_c(&sender, &receiver, 20);
    let kinds: Vec<_> = tc.kinds();
    assert_eq!(kinds.len(), 1, "only b_out's egress moved: {kinds:?}");
    assert_eq!(kind_bytes(&tc, b_out, EGRESS, kind::FORWARDED), 20 * FRAME);
    net.b.enter(|| drop((tc, ebpf)));
}

fn ifindex_of_in(ns: &Netns, name: &str) -> u32 {
    ns.enter(|| ifindex_of(name).unwrap())
}

const TCP_PAYLOAD: u64 = 4 << 20;

/// A bulk TCP transfer A -> C: its GSO buffers cross B whole, so `bytes` is what the veths
/// count and `wire_bytes` what a NIC that segments them would.
#[test]
fn forwarded_tcp_matches_the_interface_counters() {
    require_root!();
    let net = Routed::new();
    let (ebpf, mut tc, mut interfaces, b_in, b_out) = net.b.enter(|| {
        let (mut ebpf, mut tc) = load_counters();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        tc.attach(&mut ebpf, &net.bc.a, 14).unwrap();
        let interfaces = Interfaces::new([]).unwrap();
        (
            ebpf,
            tc,
            interfaces,
            ifindex_of(&net.ab.b).unwrap(),
            ifindex_of(&net.bc.a).unwrap(),
        )
    });
    let before = interfaces.poll().unwrap();
    let listener = net
        .c
        .enter(|| std::net::TcpListener::bind("10.1.2.2:5001").unwrap());
    let client = net
        .a
        .enter(|| std::net::TcpStream::connect("10.1.2.2:5001").unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap()
    });
    let mut client = client;
    std::io::copy(
        &mut std::io::Read::take(std::io::repeat(7), TCP_PAYLOAD),
        &mut client,
    )
    .unwrap();
    drop(client);
    assert_eq!(server.join().unwrap(), TCP_PAYLOAD);
    // The last FIN-ACK may still be on its way back.
    std::thread::sleep(Duration::from_millis(200));

    let after = interfaces.poll().unwrap();
    let delta = |ifindex, rx: bool| {
        let (a, b) = (sample(&after, ifindex), sample(&before, ifindex));
        if rx {
            a.rx_bytes - b.rx_bytes
        } else {
            a.tx_bytes - b.tx_bytes
        }
    };
    // Both directions of the connection cross both interfaces, all of it forwarded.
    for (ifindex, direction, rx) in [
        (b_in, INGRESS, true),
        (b_in, EGRESS, false),
        (b_out, INGRESS, true),
        (b_out, EGRESS, false),
    ] {
        assert_eq!(
            kind_bytes(&tc, ifindex, direction, kind::FORWARDED),
            delta(ifindex, rx),
            "{ifindex}/{direction}"
        );
        assert_eq!(kind_bytes(&tc, ifindex, direction, kind::LOCAL), 0);
    }
    let data = forwarded(&mut tc)
        .into_iter()
        .find(|(k, _)| k.ifindex == b_out && k.direction == EGRESS && k.dst_port == 5001)
        .expect("the data direction on B's way out")
        .1;
    // Every segment of a GSO buffer carries Ethernet, IPv4 and TCP with timestamps again:
    // 14 + 20 + 32 bytes; the handshake and the FIN add a few small packets.
    assert_eq!(
        data.wire_bytes - data.bytes,
        (data.segments - data.packets) * 66
    );
    // A retransmitted segment crosses B again: real wire bytes, at most a full segment each.
    let retransmitted = net.a.enter(tcp_retransmitted_segments);
    let bound = TCP_PAYLOAD + retransmitted * 1448 + data.segments * 66 + 1024;
    assert!(data.bytes > TCP_PAYLOAD, "{data:?}");
    assert!(data.wire_bytes <= bound, "{data:?} above {bound}");
    net.b.enter(|| drop((tc, ebpf)));
}

/// TCP segments retransmitted in the calling thread's network namespace (`RetransSegs`).
fn tcp_retransmitted_segments() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap()
}

/// Turns IPv6 on along A - B - C: fd00:1:1::/64 between A and B, fd00:1:2::/64 between B and
/// C, B forwarding. The links then also carry IPv6's own chatter (MLD, router solicitations),
/// which B does not forward; the flow's own counts stay exact.
fn with_ipv6(net: &Routed) {
    let ends = [
        (&net.a, &net.ab.a, "fd00:1:1::1/64"),
        (&net.b, &net.ab.b, "fd00:1:1::2/64"),
        (&net.b, &net.bc.a, "fd00:1:2::1/64"),
        (&net.c, &net.bc.b, "fd00:1:2::2/64"),
    ];
    for (ns, dev, addr) in ends {
        ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6=0"));
        ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
    }
    net.a
        .ip(&["-6", "route", "add", "default", "via", "fd00:1:1::2"]);
    net.c
        .ip(&["-6", "route", "add", "default", "via", "fd00:1:2::1"]);
    net.b.sysctl("net.ipv6.conf.all.forwarding=1");
    let neighbours = [
        (&net.a, &net.ab.a, "fd00:1:1::2", net.b.mac(&net.ab.b)),
        (&net.b, &net.ab.b, "fd00:1:1::1", net.a.mac(&net.ab.a)),
        (&net.b, &net.bc.a, "fd00:1:2::2", net.c.mac(&net.bc.b)),
        (&net.c, &net.bc.b, "fd00:1:2::1", net.b.mac(&net.bc.a)),
    ];
    for (ns, dev, addr, mac) in neighbours {
        ns.permanent_neighbour(dev, addr, &mac);
    }
}

#[test]
fn forwarded_udp_over_ipv6_is_counted_per_flow() {
    require_root!();
    let net = Routed::new();
    with_ipv6(&net);
    let (ebpf, mut tc, b_in, b_out) = net.b.enter(|| {
        let (mut ebpf, mut tc) = load_counters();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        tc.attach(&mut ebpf, &net.bc.a, 14).unwrap();
        (
            ebpf,
            tc,
            ifindex_of(&net.ab.b).unwrap(),
            ifindex_of(&net.bc.a).unwrap(),
        )
    });
    let receiver = net
        .c
        .enter(|| UdpSocket::bind("[fd00:1:2::2]:5000").unwrap());
    let sender = net.a.enter(|| UdpSocket::bind("[fd00:1:1::1]:0").unwrap());
    receiver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..DATAGRAMS {
        sender
            .send_to(&[1u8; PAYLOAD], "[fd00:1:2::2]:5000")
            .unwrap();
        receiver.recv_from(&mut [0u8; 2048]).unwrap();
    }
    // Ethernet 14 + IPv6 40 + UDP 8 + payload.
    let frame = 14 + 40 + 8 + PAYLOAD as u64;
    let flows = forwarded(&mut tc);
    for (ifindex, direction, other) in [(b_in, INGRESS, b_out), (b_out, EGRESS, b_in)] {
        let (key, counts) = flows
            .iter()
            .find(|(k, _)| k.ifindex == ifindex && k.direction == direction && k.family == AF_INET6)
            .unwrap_or_else(|| panic!("no IPv6 flow on {ifindex}/{direction}: {flows:?}"));
        assert_eq!(
            (key.protocol, key.other_ifindex, key.dst_port),
            (17, other, 5000)
        );
        assert_eq!(
            key.src_addr,
            "fd00:1:1::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(
            key.dst_addr,
            "fd00:1:2::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(
            (counts.packets, counts.bytes),
            (DATAGRAMS, DATAGRAMS * frame)
        );
    }
    net.b.enter(|| drop((tc, ebpf)));
}

/// What each forwarded flow moved since the last call.
fn forwarded(tc: &mut TcCounters) -> Vec<(ForwardKey, WireCount)> {
    let mut moves = ForwardMoves::default();
    tc.take(&mut moves, u32::MAX);
    moves
        .moved
        .iter()
        .map(|&(slot, count)| (tc.key(slot), count))
        .collect()
}

/// A flow idle long enough is let go; moving again it is counted all the same (in the slots
/// a CPU remembers for it while they still hold it, else in new ones), and once its slots have
/// been read for their last bytes they go to the next new flows, which count from zero. Four
/// slots, so the last two flows (four keys) can only have them by reusing the first's.
#[test]
fn idle_forwarded_flows_give_their_slots_to_new_ones() {
    require_root!();
    let net = Routed::new();
    let (ebpf, mut tc, b_in) = net.b.enter(|| {
        let mut ebpf = load_object(4);
        let program: &mut SchedClassifier = program_mut(&mut ebpf, "trafficd_hand_back").unwrap();
        program.load().unwrap();
        let hand_back = program.fd().unwrap().try_clone().unwrap();
        let mut tc = TcCounters::load(&mut ebpf, 4, Some(hand_back)).unwrap();
        tc.attach(&mut ebpf, &net.ab.b, 14).unwrap();
        tc.attach(&mut ebpf, &net.bc.a, 14).unwrap();
        (ebpf, tc, ifindex_of(&net.ab.b).unwrap())
    });
    let receiver = net.c.enter(|| UdpSocket::bind("10.1.2.2:5000").unwrap());
    let bind = || net.a.enter(|| UdpSocket::bind("10.1.1.1:0").unwrap());
    let (first, second, third) = (bind(), bind(), bind());
    let port = |socket: &UdpSocket| socket.local_addr().unwrap().port();
    let mut moves = ForwardMoves::default();
    // Each take is a drain; a flow one drain idle is let go. Returns the slots claimed, by
    // source port, and the packets and bytes moved per source port.
    let mut take = |tc: &mut TcCounters| {
        tc.take(&mut moves, 1);
        let mut claimed: Vec<(u32, u16)> = moves
            .claimed
            .iter()
            .map(|&slot| (slot, tc.key(slot).src_port))
            .collect();
        claimed.sort();
        let mut moved: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        for (slot, count) in &moves.moved {
            let sum = moved.entry(tc.key(*slot).src_port).or_default();
            *sum = (sum.0 + count.packets, sum.1 + count.bytes);
        }
        (claimed, moved, moves.freed.clone())
    };
    // Both directions of B's routing: in by one interface, out by the other.
    let both = |datagrams: u64| (2 * datagrams, 2 * datagrams * FRAME);

    udp_to_c(&first, &receiver, 10);
    let (claimed, moved, _) = take(&mut tc);
    assert_eq!(claimed, vec![(0, port(&first)), (1, port(&first))]);
    assert_eq!(moved, [(port(&first), both(10))].into());
    // Idle: let go.
    let (claimed, moved, _) = take(&mut tc);
    assert!(claimed.is_empty() && moved.is_empty());

    udp_to_c(&first, &receiver, 5);
    let (claimed, moved, freed) = take(&mut tc);
    assert!(
        claimed.iter().all(|&(_, p)| p == port(&first)),
        "{claimed:?}"
    );
    let used = 2 + claimed.len() as u32;
    assert_eq!(moved, [(port(&first), both(5))].into());
    assert!(freed.is_empty(), "read one more drain first");
    // Quiet again: every slot is let go, read two drains more, then handed back.
    let mut freed = Vec::new();
    for _ in 0..6 {
        let (claimed, moved, more) = take(&mut tc);
        assert!(claimed.is_empty() && moved.is_empty());
        freed.extend(more);
    }
    freed.sort();
    assert_eq!(freed, (0..used).collect::<Vec<_>>());

    udp_to_c(&second, &receiver, 7);
    udp_to_c(&third, &receiver, 3);
    let (claimed, moved, _) = take(&mut tc);
    let slots: Vec<u32> = claimed.iter().map(|&(slot, _)| slot).collect();
    assert_eq!(slots, vec![0, 1, 2, 3], "{claimed:?}");
    let expected = [(port(&second), both(7)), (port(&third), both(3))].into();
    assert_eq!(moved, expected);
    assert_eq!(tc.losses().flows_full, (0, 0));
    assert_eq!(kind_bytes(&tc, b_in, INGRESS, kind::FORWARDED), 25 * FRAME);
    net.b.enter(|| drop((tc, ebpf)));
}
