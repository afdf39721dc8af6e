//! Established TCP connections counted from the kernel's counters of each connection (the
//! default): the sweep at every drain, in every network namespace, shows a connection's rate
//! while it runs; bytes a connection moves after its process is gone are counted and named;
//! `--tcp-per-packet` counts the same totals packet by packet.

use std::{
    net::SocketAddr,
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{
    require_root, scratch_path, trafficgen, Daemon, NetNs, RemoveOnDrop, Side, Transfer,
};

const MB: u64 = 1_000_000;

/// A 10-second transfer at 1 MB/s between two processes inside a namespace the test made: the
/// sender's rate over the last second, read while it runs, is the rate it sends at. Only the
/// sweep sees the bytes of an established connection before it closes, and it sees them in a
/// namespace other than trafficd's only by entering it.
#[test]
fn a_long_transfer_in_a_namespace_shows_its_rate_while_it_runs() {
    require_root!();
    const RATE: u64 = MB;
    let ns = NetNs::new("rate");
    let d = Daemon::start();
    assert!(
        d.log_text()
            .contains("established TCP connections are counted from their sockets' counters"),
        "TCP should be counted from the connections' counters here: {}",
        d.log_text()
    );
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (sink, addr) = tg
        .cmd(&["tcp-sink", "--listen", &lo.to_string()])
        .netns(&ns)
        .spawn_ready();
    let started = Instant::now();
    let send = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &(10 * RATE).to_string(),
            "--rate",
            &RATE.to_string(),
            "--chunk",
            "16384",
            "--name",
            "tg-rate-send",
        ])
        .netns(&ns)
        .spawn();
    let pid = send.pid();

    // Four samples of the last second's rate, from 3 s to 7 s into the transfer.
    let mut rates = Vec::new();
    for at in [3, 4, 5, 6, 7] {
        sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        let top = d.top("by=process&window=1s&limit=1000");
        let rate = top
            .process(pid)
            .map(|i| i.f64("tx_bytes_per_second"))
            .unwrap_or(0.0);
        rates.push(rate);
    }
    assert!(
        Path::new(&format!("/proc/{pid}")).exists() && started.elapsed() < Duration::from_secs(9),
        "the sender should still be sending when the rates were read ({:?} in)",
        started.elapsed()
    );
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    // Payload plus headers (16 KiB writes on loopback: under 1%); the pacing and the drain's
    // one-second steps make single samples swing, the median much less.
    assert!(
        (0.75 * RATE as f64..1.3 * RATE as f64).contains(&median),
        "median tx rate {median:.0} B/s while sending {RATE} B/s; samples {rates:?}"
    );
    let m = d.metrics();
    assert_eq!(
        m.value("trafficd_tcp_counted_from_connections", &[]),
        Some(1.0)
    );
    // trafficd's own and the test's, at least.
    let swept = m.value("trafficd_tcp_swept_namespaces", &[]).unwrap_or(0.0);
    assert!(swept >= 2.0, "{swept} namespaces swept");
    let send = send.finish();
    sink.finish();
    let s = d.wait_process(send.pid(), |i| i.tx() >= 10 * RATE);
    assert_eq!(s.comm(), "tg-rate-send", "{:#}", s.0);
    wire::assert_tcp_data(
        "paced sender lifetime_tx_bytes",
        wire::Sent::from_report(10 * RATE, &send),
        s.tx(),
        s.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
}

/// The sender queues 2 MiB in a large send buffer and exits while the receiver does not read:
/// most of it leaves the socket after the process is gone (and after its socket was released
/// and sat idle for two drains). Every byte is counted, on both sides, and the sender's bytes
/// go to the sender.
#[test]
fn bytes_sent_after_the_sender_exited_are_counted() {
    require_root!();
    const PAYLOAD: u64 = 2 << 20;
    let tg = trafficgen!();
    let go = RemoveOnDrop(scratch_path("go"));
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let d = Daemon::start();
    let retransmitted_before = wire::retransmitted_segments();
    let (recv, addr) = tg
        .cmd(&[
            "hold-recv",
            "--listen",
            &lo.to_string(),
            "--wait-file",
            &go.0.display().to_string(),
            "--name",
            "tg-orph-recv",
        ])
        .spawn_ready();
    let send = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
            "--sndbuf",
            &(8 << 20).to_string(),
            "--no-wait",
            "--name",
            "tg-orph-send",
        ])
        .run();
    assert_eq!(send.bytes_sent(), PAYLOAD);
    sleep(d.interval() * 2 + Duration::from_millis(500));
    std::fs::write(&go.0, b"go").unwrap();
    let recv = recv.finish();
    assert_eq!(recv.bytes_received(), PAYLOAD);

    // The sender's TCP_INFO was taken before most of it left: its segment count is short, and
    // what the kernel sent again after (the receiver's full buffer drops segments) is not in it.
    // The host's retransmission counter bounds that.
    let sent = wire::sent_by_exited(
        wire::Sent::from_report(PAYLOAD, &send),
        retransmitted_before,
        LOOPBACK_MTU,
    );
    let s = d.wait_process(send.pid(), |i| i.tx() >= PAYLOAD);
    assert_eq!(s.comm(), "tg-orph-send", "{:#}", s.0);
    wire::assert_tcp_data(
        "exited sender lifetime_tx_bytes",
        sent,
        s.tx(),
        s.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let r = d.wait_process(recv.pid(), |i| i.rx() >= PAYLOAD);
    wire::assert_tcp_data(
        "receiver lifetime_rx_bytes",
        sent,
        r.rx(),
        r.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
}

/// An IPv6 socket talking to an IPv4 peer (a listener on [::] accepting from 127.0.0.1) sends
/// and receives IPv4 packets: its connection, counted from its counters, lands in the IPv4 flow
/// its packets would be counted in, not in one keyed by ::ffff:127.0.0.1.
#[test]
fn a_dual_stack_socket_is_counted_as_one_ipv4_flow() {
    require_root!();
    const PAYLOAD: u64 = 2 << 20;
    let d = Daemon::start();
    let tg = trafficgen!();
    let (sink, addr) = tg
        .cmd(&["tcp-sink", "--listen", "[::]:0", "--name", "tg-ds-sink"])
        .spawn_ready();
    let to = SocketAddr::new("127.0.0.1".parse().unwrap(), addr.port());
    let send = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &to.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
            "--name",
            "tg-ds-send",
        ])
        .run();
    assert_eq!(sink.finish().bytes_received(), PAYLOAD);
    // The handshake's packets reached the listener: its flow has the same addresses.
    let flows = d.wait_flow("tcp", to, send.local(), |_, rx| rx >= PAYLOAD);
    for flow in &flows {
        assert_eq!(flow.comm(), "tg-ds-sink", "{:#}", flow.0);
    }
    wire::assert_tcp_data(
        "dual-stack receiver's IPv4 flows",
        wire::Sent::from_report(PAYLOAD, &send),
        flows.iter().map(|f| f.rx()).sum(),
        flows.iter().map(|f| f.rx_packets()).sum(),
        LOOPBACK_MTU,
        false,
    );
}

/// With --tcp-per-packet every TCP packet is counted by the packet hooks again: same totals.
#[test]
fn tcp_per_packet_counts_the_same_bytes() {
    require_root!();
    const PAYLOAD: u64 = 2 << 20;
    let d = Daemon::builder().arg("--tcp-per-packet").start();
    assert!(
        !d.log_text().contains("counted from their sockets"),
        "{}",
        d.log_text()
    );
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-pp-sink"))
        .client(Side::named("tg-pp-send"))
        .run(&tg);
    let sent = wire::Sent::from_report(PAYLOAD, &t.sender);
    let s = d.wait_process(t.sender.pid(), |i| i.tx() >= PAYLOAD);
    wire::assert_tcp_data(
        "per-packet sender",
        sent,
        s.tx(),
        s.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let r = d.wait_process(t.receiver.pid(), |i| i.rx() >= PAYLOAD);
    wire::assert_tcp_data(
        "per-packet receiver",
        sent,
        r.rx(),
        r.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
    // Read after drains that found the transfer: the mode is known by then.
    assert_eq!(
        d.metrics()
            .value("trafficd_tcp_counted_from_connections", &[]),
        Some(0.0)
    );
}
