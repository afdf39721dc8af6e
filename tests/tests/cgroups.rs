//! Two senders in two cgroups the test creates, with different byte counts:
//! each process and each cgroup gets its own bytes, and nothing of the other's.

use std::net::SocketAddr;

use trafficd_tests::wire::{self, LOOPBACK_MTU};
use trafficd_tests::{assert_transfer, require_root, trafficgen, wait_for, Cgroup, Daemon, Side};

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
            trafficd_tests::Transfer::tcp(lo, A_BYTES)
                .server(Side::named("tg-cg-sink-a"))
                .client(Side::named("tg-cg-send-a").cgroup(&cg_a))
                .run(&tg)
        });
        let b = trafficd_tests::Transfer::tcp(lo, B_BYTES)
            .server(Side::named("tg-cg-sink-b"))
            .client(Side::named("tg-cg-send-b").cgroup(&cg_b))
            .run(&tg);
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
    // sender's data and its rx the ACKs it got. A's upper bound (1 MiB +
    // headers) is far below B's 3 MiB, so any of B's bytes in A would fail.
    for (cg, n, t) in [(&cg_a, A_BYTES, &ta), (&cg_b, B_BYTES, &tb)] {
        let item = d.wait_cgroup(cg.path(), |i| i.tx() >= n);
        assert_eq!(
            item.u64("cgroup_id"),
            cg.id(),
            "cgroup_id is the cgroup directory's inode: {:#}",
            item.0
        );
        wire::assert_tcp_data(
            &format!("cgroup {} lifetime_tx_bytes", cg.path()),
            wire::Sent::from_report(n, &t.sender),
            item.tx(),
            item.tx_packets(),
            LOOPBACK_MTU,
            false,
        );
        wire::assert_tcp_acks(
            &format!("cgroup {} lifetime_rx_bytes", cg.path()),
            n,
            item.rx(),
            item.rx_packets(),
            false,
        );
    }

    // The sinks are in the test's own cgroup, which received both payloads.
    // (Not settled: the test's own polling keeps adding to that cgroup.)
    let own = Cgroup::current_path();
    wait_for(
        "the test's own cgroup to have received both payloads",
        || {
            let top = d.top("by=cgroup&window=60s&limit=1000");
            match top.cgroup(&own) {
                Some(i) if i.rx() >= A_BYTES + B_BYTES => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );

    // A cgroup is the sum of its processes: here exactly its one sender.
    for (cg, p) in [(&cg_a, &pa), (&cg_b, &pb)] {
        let item = d.wait_cgroup(cg.path(), |i| i.tx() >= p.tx());
        assert_eq!(
            (item.tx(), item.rx()),
            (p.tx(), p.rx()),
            "cgroup {} vs its only process: {:#} vs {:#}",
            cg.path(),
            item.0,
            p.0
        );
    }
}
