//! One TCP socket shared by a parent and its forked child: each process is
//! credited with the bytes it wrote, not the socket's creator with all of them.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{bpf, require_root, trafficgen, Daemon, Gen, GenReport, TrafficGen};

const PARENT: u64 = 3 << 20;
const CHILD: u64 = 1 << 20;

#[test]
fn shared_socket_bytes_are_split_by_sender() {
    require_root!();
    let d = Daemon::start();
    let tg = trafficgen!();
    let (sink, addr) = start_sink(&tg);
    let f = fork_send(&tg, addr).run();
    assert_split(&d, sink, &f);
}

/// The parent's bytes are still waiting in its CPU's per-CPU payload entry when the daemon
/// reads: the kernel moves them to SOCKET_PROCESSES only when that CPU sees another socket or
/// process use a socket. The child and then the parent write on one CPU that nothing else of
/// the test uses (the daemon, the sink and this thread are on another), so after the parent
/// exits its payload stays there. Read without it, the socket's bytes would all go to the child.
#[test]
fn payload_still_waiting_on_its_cpu_is_counted() {
    require_root!();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs 2 CPUs (one for the writers alone), this machine has {cpus}");
        return;
    }
    // Children inherit the spawning thread's CPU mask.
    bpf::pin_to(0);
    let d = Daemon::start();
    let tg = trafficgen!();
    let (sink, addr) = start_sink(&tg);
    bpf::pin_to(1);
    let writers = fork_send(&tg, addr).spawn();
    bpf::pin_to(0);
    let f = writers.finish();
    assert_split(&d, sink, &f);
}

fn start_sink(tg: &TrafficGen) -> (Gen, SocketAddr) {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    tg.cmd(&[
        "tcp-sink",
        "--listen",
        &lo.to_string(),
        "--name",
        "tg-fk-sink",
    ])
    .spawn_ready()
}

/// The parent connects, forks; the child writes CHILD bytes and exits; then the parent writes
/// PARENT bytes on the same socket.
fn fork_send(tg: &TrafficGen, to: SocketAddr) -> trafficd_tests::GenCommand<'_> {
    tg.cmd(&[
        "fork-send",
        "--to",
        &to.to_string(),
        "--parent-bytes",
        &PARENT.to_string(),
        "--child-bytes",
        &CHILD.to_string(),
        "--name",
        "tg-fk-parent",
        "--child-name",
        "tg-fk-child",
    ])
}

/// Each writer is credited with what it wrote, and the sink with all of it.
fn assert_split(d: &Daemon, sink: Gen, f: &GenReport) {
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
    let all = wire::Sent::from_report(PARENT + CHILD, f);
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
