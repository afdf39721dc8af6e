//! Two senders in two cgroups the test creates, with different byte counts:
//! each process and each cgroup gets its own bytes, and nothing of the other's.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{assert_transfer, require_root, trafficgen, Cgroup, Daemon, Side};

const A_BYTES: u64 = 1 << 20;
const B_BYTES: u64 = 3 << 20;

#[test]
fn two_cgroups_get_their_own_bytes() {
    require_root!();
    let cg_a = Cgroup::new("a");
    let cg_b = Cgroup::new("b");
    let d = Daemon::start();
    let tg = trafficgen!();

    // Both transfers at the same time, so a daemon that mixed them up would show it.
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = std::thread::scope(|s| {
        let a = s.spawn(|| {
            trafficd_tests::tcp_transfer(
                &tg,
                lo,
                A_BYTES,
                true,
                Side::named("tg-cg-sink-a"),
                Side::named("tg-cg-send-a").cgroup(&cg_a),
            )
        });
        let b = trafficd_tests::tcp_transfer(
            &tg,
            lo,
            B_BYTES,
            true,
            Side::named("tg-cg-sink-b"),
            Side::named("tg-cg-send-b").cgroup(&cg_b),
        );
        (a.join().unwrap(), b)
    });
    let (ta, tb) = a;

    // By process: each sender with its cgroup (assert_transfer checks the
    // cgroup path) and its own byte count; the sinks are in the test's cgroup.
    let (pa, _) = assert_transfer(&d, &ta, LOOPBACK_MTU);
    let (pb, _) = assert_transfer(&d, &tb, LOOPBACK_MTU);
    assert_eq!(pa.cgroup(), cg_a.path());
    assert_eq!(pb.cgroup(), cg_b.path());

    // By cgroup: only the sender is in each cgroup, so a cgroup's tx is its
    // sender's data and its rx the ACKs it got. A's upper bound (1 MiB + 1% +
    // headers) is far below B's 3 MiB, so any of B's bytes in A would fail.
    for (cg, n) in [(&cg_a, A_BYTES), (&cg_b, B_BYTES)] {
        let item = d.wait_cgroup(cg.path(), |i| i.tx() >= n);
        assert_eq!(
            item.u64("cgroup_id"),
            cg.id(),
            "cgroup_id is the cgroup directory's inode: {:#}",
            item.0
        );
        wire::assert_tcp_data(
            &format!("cgroup {} lifetime_tx_bytes", cg.path()),
            n,
            item.tx(),
            LOOPBACK_MTU,
            false,
        );
        wire::assert_tcp_acks(
            &format!("cgroup {} lifetime_rx_bytes", cg.path()),
            n,
            item.rx(),
            LOOPBACK_MTU,
            false,
        );
    }

    // The sinks are in the test's own cgroup, which received both payloads.
    let own = Cgroup::current_path();
    let item = d.wait_cgroup(&own, |i| i.rx() >= A_BYTES + B_BYTES);
    assert!(item.rx() >= A_BYTES + B_BYTES, "{:#}", item.0);
}
