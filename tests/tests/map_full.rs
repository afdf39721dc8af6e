//! A full flow map costs per-flow detail, nothing else: the bytes of flows that did not fit go
//! to the per-socket and per-cgroup overflow roll-ups, so per-process and per-cgroup totals
//! stay exact, and the loss is counted in trafficd_kernel_lost_events_total.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, trafficgen, wait_for, Cgroup, Daemon, Side, Transfer};

const PAYLOAD: u64 = 2 << 20;

/// A UDP socket of the test that sends a datagram every 50 ms until dropped: a flow that is
/// never idle, so once it holds the one flow slot it keeps it.
struct Pinger {
    local: SocketAddr,
    peer: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Pinger {
    fn start() -> Pinger {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = sink.local_addr().unwrap();
        socket.connect(peer).unwrap();
        let local = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            // Bounded: the test takes seconds.
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let _ = socket.send(b"p");
                thread::sleep(Duration::from_millis(50));
            }
            drop(sink);
        });
        Pinger {
            local,
            peer,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_full_flow_map_keeps_process_and_cgroup_totals_exact() {
    require_root!();
    let cg = Cgroup::new("full");
    // One flow entry, held by a flow that never idles (its datagrams' egress side: the send
    // claims the slot before the receive does), so that every later flow overflows.
    let d = Daemon::builder().arg("--flow-map-size").arg("1").start();
    let pinger = Pinger::start();
    d.wait_flow("udp", pinger.local, pinger.peer, |tx, _| tx > 0);
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-full-sink"))
        .client(Side::named("tg-full-send").cgroup(&cg))
        .run(&tg);
    let sent = wire::Sent::from_report(PAYLOAD, &t.sender);

    let sender = d.wait_process(t.sender.pid(), |i| i.tx() >= PAYLOAD);
    assert_eq!(sender.comm(), "tg-full-send", "{:#}", sender.0);
    wire::assert_tcp_data(
        "sender tx with a full flow map",
        sent,
        sender.tx(),
        sender.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let receiver = d.wait_process(t.receiver.pid(), |i| i.rx() >= PAYLOAD);
    wire::assert_tcp_data(
        "receiver rx with a full flow map",
        sent,
        receiver.rx(),
        receiver.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let cgroup = d.wait_cgroup(cg.path(), |i| i.tx() >= PAYLOAD);
    wire::assert_tcp_data(
        "cgroup tx with a full flow map",
        sent,
        cgroup.tx(),
        cgroup.tx_packets(),
        LOOPBACK_MTU,
        false,
    );

    // The transfer's flows are not in the flow view: that detail is what was lost...
    let flows = d.top("by=flow&limit=1000&window=60s");
    assert!(
        flows.items().iter().all(|i| i.pid() != t.sender.pid()),
        "the sender's flow should not fit in a one-entry flow map: {:#?}",
        flows.items().iter().map(|i| &i.0).collect::<Vec<_>>()
    );
    // ...and it is counted, with at least the transfer's bytes.
    let (events, bytes) = wait_for("flow_map_full losses in /metrics", || {
        let m = d.metrics();
        let labels = [("reason", "flow_map_full")];
        match (
            m.value("trafficd_kernel_lost_events_total", &labels),
            m.value("trafficd_kernel_lost_bytes_total", &labels),
        ) {
            (Some(e), Some(b)) if b >= PAYLOAD as f64 => Ok((e, b)),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(events >= 1.0, "{events} events for {bytes} bytes");
    // The slot holder kept it all along.
    d.wait_flow("udp", pinger.local, pinger.peer, |tx, _| tx > 0);
    // Nothing was lost for the roll-ups.
    let m = d.metrics();
    for reason in ["socket_map_full", "cgroup_map_full"] {
        assert_eq!(
            m.value("trafficd_kernel_lost_events_total", &[("reason", reason)]),
            Some(0.0),
            "{reason}"
        );
    }
}
