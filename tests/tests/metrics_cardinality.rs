//! Bounded cardinality: 3,000 short-lived processes, each with its own name, leave at most
//! --metrics-max-series series in the per-process families, and the family still adds up
//! to every byte they sent.

use std::net::UdpSocket;

use trafficd_tests::metrics::Exposition;
use trafficd_tests::{require_root, wait_for, Daemon};

const PROCESSES: usize = 3_000;
const MAX_SERIES: usize = 50;
const PAYLOAD: usize = 1_000;
/// IPv4 and UDP headers: each datagram is exactly this much more on the wire.
const HEADERS: u64 = 20 + 8;
const FAMILY: &str = "trafficd_process_transmit_bytes_total";

fn family_sum(m: &Exposition) -> f64 {
    m.samples(FAMILY).map(|s| s.value).sum()
}

fn seen_tx(m: &Exposition) -> f64 {
    m.value(
        "trafficd_kernel_seen_bytes_total",
        &[("direction", "transmit")],
    )
    .unwrap_or(0.0)
}

/// Forks one child per name; each names itself, sends one datagram from its own socket to
/// `to` and exits at once. The children only make system calls (no allocation, no locks),
/// which is what a child of a multi-threaded process may do.
fn send_from_short_lived_processes(to: &UdpSocket) {
    let addr = to.local_addr().unwrap();
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("IPv4 sink expected")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let payload = [0x5au8; PAYLOAD];
    let names: Vec<[u8; 16]> = (0..PROCESSES)
        .map(|i| {
            let mut name = [0u8; 16];
            let text = format!("mc-{i:04}");
            name[..text.len()].copy_from_slice(text.as_bytes());
            name
        })
        .collect();
    for name in &names {
        // SAFETY: the child makes only async-signal-safe system calls on memory prepared
        // before the fork, then _exit()s; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                let sent = libc::sendto(
                    fd,
                    payload.as_ptr().cast(),
                    payload.len(),
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                );
                libc::_exit(if sent == PAYLOAD as isize { 0 } else { 1 });
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child {:?} failed: status {status:#x}",
                String::from_utf8_lossy(name)
            );
        }
    }
}

#[test]
fn three_thousand_named_processes_leave_a_bounded_family_that_adds_up() {
    require_root!();
    let d = Daemon::builder()
        .arg("--metrics-max-series")
        .arg(MAX_SERIES.to_string())
        .start();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = |m: &Exposition| m.value(FAMILY, &[("comm", "[other]")]).unwrap_or(0.0);
    let before = d.metrics();
    send_from_short_lived_processes(&sink);
    let sent = PROCESSES as u64 * (PAYLOAD as u64 + HEADERS);

    // The children's bytes are in their own series or in [other] (which other processes of
    // the host may add to as well: it can only be more).
    let children = |m: &Exposition| -> f64 {
        let named: f64 = m
            .samples(FAMILY)
            .filter(|s| s.label("comm").is_some_and(|c| c.starts_with("mc-")))
            .map(|s| s.value)
            .sum();
        named + other(m) - other(&before)
    };
    let after = wait_for("the children's bytes in the process family", || {
        let m = d.metrics();
        let placed = children(&m);
        if placed >= sent as f64 {
            Ok(m)
        } else {
            Err(format!("{placed} of {sent} placed"))
        }
    });
    // One more scrape: the bound holds on every scrape, not only the first.
    let last = d.metrics();
    for m in [&before, &after, &last] {
        let series = m.samples(FAMILY).count();
        assert!(
            series <= MAX_SERIES,
            "{series} series of {FAMILY}, bound {MAX_SERIES}"
        );
    }
    let named: Vec<_> = after
        .samples(FAMILY)
        .filter(|s| s.label("comm").is_some_and(|c| c.starts_with("mc-")))
        .collect();
    // A child with a series of its own has exactly its datagram in it.
    for s in &named {
        assert_eq!(s.value, (PAYLOAD as u64 + HEADERS) as f64, "{s:?}");
    }
    // Most of them are folded: the bound was really in the way.
    assert!(
        named.len() < MAX_SERIES && named.len() < PROCESSES / 10,
        "{} children have a series of their own",
        named.len()
    );
    // The family is every byte the kernel programs saw sent, no more (other
    // processes of the host send too, so the comparison is with trafficd's own total).
    for m in [&after, &last] {
        let (family, seen) = (family_sum(m), seen_tx(m));
        assert_eq!(
            family, seen,
            "sum of {FAMILY} vs trafficd_kernel_seen_bytes_total{{direction=\"transmit\"}}"
        );
    }
    // Counters never went back between scrapes.
    for s in last.samples(FAMILY) {
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(earlier) = after.value(FAMILY, &labels) {
            assert!(s.value >= earlier, "{s:?} was {earlier}");
        }
    }
}
