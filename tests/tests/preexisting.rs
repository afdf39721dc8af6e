//! Sockets the kernel programs never saw being opened: bytes on them are
//! still attributed to the process that owns them.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, scratch_path, trafficgen, Daemon, RemoveOnDrop};

const PAYLOAD: u64 = 2 << 20;

/// The connection exists before the daemon starts (connect, handshake and all);
/// the process sends only after the daemon is up.
#[test]
fn socket_opened_before_the_daemon_started() {
    require_root!();
    let tg = trafficgen!();
    let go = RemoveOnDrop(scratch_path("go"));
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (sink, addr) = tg
        .cmd(&[
            "tcp-sink",
            "--listen",
            &lo.to_string(),
            "--name",
            "tg-pre-sink",
        ])
        .spawn_ready();
    let (hold, _) = tg
        .cmd(&[
            "hold",
            "--to",
            &addr.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
            "--wait-file",
            &go.0.display().to_string(),
            "--name",
            "tg-pre-hold",
        ])
        .spawn_ready();
    let d = Daemon::start();
    std::fs::write(&go.0, b"go").unwrap();
    let hold = hold.finish();
    let sink = sink.finish();
    assert_eq!(sink.bytes_received(), PAYLOAD);

    let h = d.wait_process(hold.pid(), |i| i.tx() >= PAYLOAD);
    assert_eq!(h.comm(), "tg-pre-hold", "{:#}", h.0);
    assert!(h.0["reason"].is_null(), "{:#}", h.0);
    wire::assert_tcp_data(
        "pre-existing sender lifetime_tx_bytes",
        wire::Sent::from_report(PAYLOAD, &hold),
        h.tx(),
        h.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
    let s = d.wait_process(sink.pid(), |i| i.rx() >= PAYLOAD);
    assert_eq!(s.comm(), "tg-pre-sink", "{:#}", s.0);
    wire::assert_tcp_data(
        "pre-existing receiver lifetime_rx_bytes",
        wire::Sent::from_report(PAYLOAD, &hold),
        s.rx(),
        s.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
}

/// The receiver listens before the daemon starts, accepts a connection made
/// after, and does not read (no recv in process context) while the bytes
/// arrive: the kernel programs never see its pid for that socket, so the daemon
/// has to find the owner itself (sock_diag: cookie -> inode; /proc/<pid>/fd:
/// inode -> pid). The bytes must be attributed to it before it reads a byte.
#[test]
fn owner_the_kernel_never_saw_is_resolved() {
    require_root!();
    // Fits in the receiver's initial receive window on loopback, so the sender
    // completes without the receiver reading.
    const SMALL: u64 = 32 * 1024;
    let tg = trafficgen!();
    let go = RemoveOnDrop(scratch_path("go"));
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (recv, addr) = tg
        .cmd(&[
            "hold-recv",
            "--listen",
            &lo.to_string(),
            "--wait-file",
            &go.0.display().to_string(),
            "--name",
            "tg-pre-idle",
        ])
        .spawn_ready();
    // The receiver makes no call while the bytes arrive, so its connection is read by the
    // sweep (every 30 s by default), not by its own calls: sweep at every drain here, so that
    // its bytes come in the drain that also sees its listener's handshake bytes, whose owner
    // lookup in /proc finds both (the lookup runs at most every 5 s).
    let d = Daemon::builder()
        .arg("--tcp-sweep-interval")
        .arg("100ms")
        .start();
    let send = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &SMALL.to_string(),
            "--no-wait",
            "--name",
            "tg-pre-send",
        ])
        .run();
    assert_eq!(send.bytes_sent(), SMALL);

    let r = d.wait_process(recv.pid(), |i| i.rx() >= SMALL);
    assert_eq!(r.comm(), "tg-pre-idle", "{:#}", r.0);
    wire::assert_tcp_data(
        "idle receiver lifetime_rx_bytes",
        // The sender exited before everything was acknowledged: its TCP_INFO
        // segment count may be short, its retransmissions so far are not.
        wire::Sent {
            segments: None,
            ..wire::Sent::from_report(SMALL, &send)
        },
        r.rx(),
        r.rx_packets(),
        LOOPBACK_MTU,
        false,
    );
    // Only now may it read.
    std::fs::write(&go.0, b"go").unwrap();
    let recv = recv.finish();
    assert_eq!(recv.bytes_received(), SMALL);
}
