//! A process that sends 1 MB and exits within 100 ms is still shown, with its
//! comm: the owner of a socket is recorded in the kernel when it sends, not
//! looked up in /proc afterwards (by then there is no /proc entry).

use std::net::SocketAddr;
use std::path::Path;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{require_root, trafficgen, Daemon};

const PAYLOAD: u64 = 1_000_000;

#[test]
fn one_megabyte_then_exit_is_attributed_with_its_comm() {
    require_root!();
    // A 2 s drain interval: the sender lives a few milliseconds, so the daemon
    // almost surely drains only after it is gone and reaped.
    let d = Daemon::builder().interval("2s").start();
    let tg = trafficgen!();
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let retransmitted_before = wire::retransmitted_segments();
    let (sink, addr) = tg
        .cmd(&[
            "tcp-sink",
            "--listen",
            &lo.to_string(),
            "--name",
            "tg-sl-sink",
        ])
        .spawn_ready();
    // --no-wait: write, shut down, exit at once; the kernel delivers the rest.
    let s = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            &PAYLOAD.to_string(),
            "--no-wait",
            "--name",
            "tg-shortlived",
        ])
        .run();
    let sink = sink.finish();
    assert_eq!(sink.bytes_received(), PAYLOAD);
    let lived = s.json["elapsed_ms"].as_f64().unwrap();
    assert!(
        lived < 100.0,
        "the sender lived {lived} ms, not < 100 ms: the test would not test what it says"
    );
    assert!(
        !Path::new(&format!("/proc/{}", s.pid())).exists(),
        "the sender was reaped: no /proc entry left"
    );

    let item = d.wait_process(s.pid(), |i| i.tx() >= PAYLOAD);
    assert_eq!(item.pid(), s.pid());
    assert_eq!(item.comm(), "tg-shortlived", "{:#}", item.0);
    assert!(item.0["reason"].is_null(), "{:#}", item.0);
    // It exited before everything was acknowledged: its TCP_INFO segment count
    // may be short, and what the kernel sent again after it exited is not in
    // it (seen: one 47 KiB loopback segment on a busy machine). The host's
    // retransmission counter bounds that.
    let sent = wire::sent_by_exited(
        wire::Sent::from_report(PAYLOAD, &s),
        retransmitted_before,
        LOOPBACK_MTU,
    );
    wire::assert_tcp_data(
        "short-lived sender lifetime_tx_bytes",
        sent,
        item.tx(),
        item.tx_packets(),
        LOOPBACK_MTU,
        false,
    );
}
