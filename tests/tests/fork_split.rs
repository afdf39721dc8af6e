//! One TCP socket shared by a parent and its forked child: each process is
//! credited with the bytes it wrote, not the socket's creator with all of them.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, trafficgen, Daemon};

const PARENT: u64 = 3 << 20;
const CHILD: u64 = 1 << 20;

#[test]
fn shared_socket_bytes_are_split_by_sender() {
    require_root!();
    let d = Daemon::start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (sink, addr) = tg
        .cmd(&[
            "tcp-sink",
            "--listen",
            &lo.to_string(),
            "--name",
            "tg-fk-sink",
        ])
        .spawn_ready();
    // The parent connects, forks; the child writes CHILD bytes and exits; then
    // the parent writes PARENT bytes on the same socket.
    let f = tg
        .cmd(&[
            "fork-send",
            "--to",
            &addr.to_string(),
            "--parent-bytes",
            &PARENT.to_string(),
            "--child-bytes",
            &CHILD.to_string(),
            "--name",
            "tg-fk-parent",
            "--child-name",
            "tg-fk-child",
        ])
        .run();
    let sink = sink.finish();
    assert_eq!(sink.bytes_received(), PARENT + CHILD);
    let child_pid = f.u64("child_pid") as u32;

    let parent = d.wait_process(f.pid(), |i| i.tx() >= PARENT);
    let child = d.wait_process(child_pid, |i| i.tx() >= CHILD);
    assert_eq!(parent.comm(), "tg-fk-parent", "{:#}", parent.0);
    assert_eq!(child.comm(), "tg-fk-child", "{:#}", child.0);
    // Each gets its own payload plus its share of headers (and of any
    // retransmission: the socket's TCP_INFO cannot say whose bytes those were);
    // the child's bound (1 MiB + headers) excludes any of the parent's 3 MiB
    // and vice versa.
    let all = wire::Sent::from_report(PARENT + CHILD, &f);
    let part = |payload| wire::Sent {
        payload,
        retrans_bytes: all.retrans_bytes,
        retrans_segments: all.retrans_segments,
        segments: None,
    };
    wire::assert_tcp_data(
        "parent lifetime_tx_bytes",
        part(PARENT),
        parent.tx(),
        parent.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    wire::assert_tcp_data(
        "child lifetime_tx_bytes",
        part(CHILD),
        child.tx(),
        child.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    // And together they are the connection.
    wire::assert_tcp_data(
        "parent + child lifetime_tx_bytes",
        all,
        parent.tx() + child.tx(),
        parent.tx_packets() + child.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let sink_item = d.wait_process(sink.pid(), |i| i.rx() >= PARENT + CHILD);
    wire::assert_tcp_data(
        "sink lifetime_rx_bytes",
        all,
        sink_item.rx(),
        sink_item.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
    // On loopback the packets the two senders send are the packets the sink
    // receives, so the split adds up: nothing lost or counted twice.
    wire::assert_conserved(
        "parent + child vs sink",
        all,
        parent.tx() + child.tx(),
        parent.tx_packets() + child.tx_packets(),
        sink_item.rx(),
        sink_item.rx_packets(),
        false,
    );
}
