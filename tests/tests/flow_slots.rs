//! The flow map has a fixed number of slots, and the slots of closed sockets go back to new
//! flows once their last bytes were read: a small flow map carries many more connections than
//! it has slots, each one counted to the byte in its own flow, without losing flow detail.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, tcp_transfer, trafficgen, Daemon, Side};

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
        let t = tcp_transfer(
            &tg,
            lo,
            PAYLOAD,
            true,
            Side::named("tg-slot-sink"),
            Side::named("tg-slot-send"),
        );
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
}
