//! The flow map has a fixed number of slots, and the slots of closed sockets go back to new
//! flows once their last bytes were read: a small flow map carries many more connections than
//! it has slots, each one counted to the byte in its own flow, without losing flow detail.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{bpf, require_root, trafficgen, wait_for, Daemon, Side, Transfer};

const SLOTS: u32 = 64;
/// Each connection makes about three flows (the client, the accepted socket, the listener's
/// handshake), and every request the test makes to the daemon three more: far more flows go
/// through than there are slots.
const CONNECTIONS: usize = 40;
const PAYLOAD: u64 = 256 << 10;

#[test]
fn slots_of_closed_sockets_are_reused() {
    require_root!();
    let d = Daemon::builder()
        .interval("100ms")
        .arg("--flow-map-size")
        .arg(SLOTS.to_string())
        .start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for i in 0..CONNECTIONS {
        let t = Transfer::tcp(lo, PAYLOAD)
            .server(Side::named("tg-slot-sink"))
            .client(Side::named("tg-slot-send"))
            .run(&tg);
        let (local, peer) = (t.sender.local(), t.sender.peer());
        let flows = d.wait_flow("tcp", local, peer, |tx, _| tx >= PAYLOAD);
        let tx: u64 = flows.iter().map(|f| f.tx()).sum();
        let packets: u64 = flows.iter().map(|f| f.tx_packets()).sum();
        wire::assert_tcp_data(
            &format!("connection {i} ({local} -> {peer}) in its flow"),
            wire::Sent::from_report(PAYLOAD, &t.sender),
            tx,
            packets,
            LOOPBACK_MTU,
            false,
        );
    }

    let m = d.metrics();
    let entries = m
        .value("trafficd_map_entries", &[("map", "FLOWS")])
        .expect("trafficd_map_entries{map=\"FLOWS\"}");
    assert!(
        entries <= f64::from(SLOTS),
        "{entries} flows counting in {SLOTS} slots"
    );
    assert_eq!(
        m.value(
            "trafficd_kernel_lost_events_total",
            &[("reason", "flow_map_full")]
        ),
        Some(0.0),
        "{CONNECTIONS} connections through {SLOTS} slots: no flow should have found them all taken"
    );
    // The slots went back through the hand-back program, hundreds per syscall, not through the
    // one-syscall-per-slot fallback, which says why it was taken.
    let log = d.log_text();
    assert!(
        !log.contains("hand-back program") && !log.contains("trafficd_hand_back"),
        "freed slots did not all go back through the hand-back program:\n{log}"
    );
}

/// A UDP sender on loopback and a wildcard receiver, and peer addresses 127.<subnet>.x.y on the
/// receiver's port: every datagram to a new peer makes two flows, the sender's and the
/// receiver's.
struct LoopbackPeers {
    _receiver: UdpSocket,
    sender: UdpSocket,
    port: u16,
    subnet: u8,
}

impl LoopbackPeers {
    /// Payload of every datagram.
    const DATAGRAM: usize = 16;
    /// Datagrams to each marked peer, whose flow is checked; every other peer gets one.
    const MARKED_DATAGRAMS: u64 = 10;

    fn new(subnet: u8) -> LoopbackPeers {
        let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
        LoopbackPeers {
            port: receiver.local_addr().unwrap().port(),
            _receiver: receiver,
            sender: UdpSocket::bind("127.0.0.1:0").unwrap(),
            subnet,
        }
    }

    fn peer(&self, i: u32) -> SocketAddr {
        let [_, _, hi, lo] = i.to_be_bytes();
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(127, self.subnet, hi, lo),
            self.port,
        ))
    }

    /// One datagram to each of `peers`, and [`Self::MARKED_DATAGRAMS`] to those in `marked`.
    fn send(&self, peers: impl IntoIterator<Item = u32>, marked: &[u32]) {
        for i in peers {
            let repeat = if marked.contains(&i) {
                Self::MARKED_DATAGRAMS
            } else {
                1
            };
            for _ in 0..repeat {
                self.sender
                    .send_to(&[b'p'; Self::DATAGRAM], self.peer(i))
                    .unwrap();
            }
        }
    }

    /// Waits for the sender's flow to each of `marked` in /top and checks it to the byte.
    fn check_marked(&self, d: &Daemon, marked: &[u32]) {
        let local = self.sender.local_addr().unwrap();
        let expected = Self::MARKED_DATAGRAMS * (Self::DATAGRAM as u64 + wire::udp_header(false));
        for &i in marked {
            let flows = d.wait_flow("udp", local, self.peer(i), |tx, _| tx >= expected);
            let tx: u64 = flows.iter().map(|f| f.tx()).sum();
            let packets: u64 = flows.iter().map(|f| f.tx_packets()).sum();
            assert_eq!(
                (tx, packets),
                (expected, Self::MARKED_DATAGRAMS),
                "flow {local} -> {}",
                self.peer(i)
            );
        }
    }
}

/// The daemon maps the flow counters as the slots get used, starting with 1024: flows in
/// slots past each mapping, handed out between drains, are counted all the same.
#[test]
fn flows_past_the_first_mapped_slots_are_counted() {
    require_root!();
    let d = Daemon::builder().interval("200ms").start();
    let peers = LoopbackPeers::new(3);
    // Two batches, a drain apart: the first outgrows the first mapping, the second the mapping
    // grown for the first.
    let mut next = 0;
    for batch in [1500, 3000] {
        let batch_peers = next..next + batch;
        next += batch;
        // The last peers of a batch are the ones in the newest slots.
        let marked: Vec<u32> = (batch_peers.end - 20..batch_peers.end).collect();
        peers.send(batch_peers, &marked);
        peers.check_marked(&d, &marked);
    }
    let entries = d
        .metrics()
        .value("trafficd_map_entries", &[("map", "FLOWS")])
        .expect("trafficd_map_entries{map=\"FLOWS\"}");
    assert!(entries >= 2.0 * 4500.0, "{entries} flows in the flow map");
}

/// A burst of new flows is read before the drain interval ends: with a 60 s interval, the
/// flows of 12,000 datagrams to new peers (24,000 flows, both ends here) are in /top long
/// before the first scheduled drain (the wait gives up after 15 s), counted to the byte.
#[test]
fn a_burst_of_new_flows_is_drained_before_the_interval_ends() {
    require_root!();
    let d = Daemon::builder().interval("60s").start();
    let peers = LoopbackPeers::new(5);
    // The first peers are marked: an early drain comes once enough new flows wait, and flows
    // that appear after it wait for the next one.
    let marked: Vec<u32> = (0..20).collect();
    peers.send(0..12_000, &marked);
    peers.check_marked(&d, &marked);
}

/// A flow idle long enough to be retired, which then wakes up: its new packets must go to a new
/// slot through the index, not to the retired slot that the CPU's flow cache still names (the
/// daemon tells the programs about retirements), and the flow is counted in full.
#[test]
fn a_flow_retired_while_idle_gets_a_new_slot_when_it_wakes() {
    require_root!();
    const DATAGRAM: usize = 100;
    const BURST: u64 = 10;
    let d = Daemon::builder()
        .interval("100ms")
        .arg("--idle-expiry")
        .arg("1s")
        .start();
    let flows = bpf::map_of(d.pid().expect("daemon pid"), "FLOWS");
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (local, remote) = (socket.local_addr().unwrap(), sink.local_addr().unwrap());
    // Connected: the programs cache the slots of connected sockets' flows only.
    socket.connect(remote).unwrap();
    let cookie = bpf::cookie_of(&socket);
    // The flow's slot in FLOWS, found by the socket cookie that starts its key.
    let slot = || {
        bpf::dump(flows)
            .into_iter()
            .find(|(key, _)| key.starts_with(&cookie.to_le_bytes()))
            .map(|(_, value)| u32::from_le_bytes(value[..4].try_into().unwrap()))
    };
    let per_burst = BURST * (DATAGRAM as u64 + wire::udp_header(false));
    // Every send on one CPU: the one whose cache remembers the slot.
    bpf::pin_to(0);
    let burst = || {
        for _ in 0..BURST {
            socket.send(&[b'w'; DATAGRAM]).unwrap();
        }
    };

    burst();
    let first = slot().expect("the flow is indexed after its first burst");
    d.wait_flow("udp", local, remote, |tx, _| tx >= per_burst);
    // Housekeeping runs every 5 s and retires flows idle for the --idle-expiry.
    wait_for("the idle flow to leave the index", || {
        slot().map_or(Ok(()), |s| Err(format!("still indexed in slot {s}")))
    });

    burst();
    let second = slot().expect("the woken flow is indexed again");
    assert_ne!(first, second, "a retired slot is not handed back at once");
    let woken = d.wait_flow("udp", local, remote, |tx, _| tx >= 2 * per_burst);
    let tx: u64 = woken.iter().map(|f| f.tx()).sum();
    let packets: u64 = woken.iter().map(|f| f.tx_packets()).sum();
    assert_eq!(
        (tx, packets),
        (2 * per_burst, 2 * BURST),
        "{local} -> {remote}"
    );
}
