use std::net::UdpSocket;

use super::*;
use crate::testnet::{free_subnet, require_root, run, Netns, Veth};

#[test]
fn capacities_parse_to_bytes_per_second() {
    let ok = |input: &str| parse_capacity(input).expect(input);
    assert_eq!(ok("eth0=10Gbit"), ("eth0".into(), 1_250_000_000));
    assert_eq!(ok("veth0=100Mbit"), ("veth0".into(), 12_500_000));
    assert_eq!(ok("wg0=2.5gbit"), ("wg0".into(), 312_500_000));
    assert_eq!(ok("ppp0=64Kbit"), ("ppp0".into(), 8_000));
    assert_eq!(ok("x=8bit"), ("x".into(), 1));
    assert_eq!(ok("uplink0=1Tbit"), ("uplink0".into(), 125_000_000_000));
}

#[test]
fn bad_capacities_say_what_is_wrong() {
    let reason = |input: &str| match parse_capacity(input) {
        Err(Error::InterfaceCapacity { reason, .. }) => reason,
        other => panic!("{input}: {other:?}"),
    };
    assert_eq!(reason("eth0"), "no `=`");
    assert_eq!(reason("=1Gbit"), "the interface name is empty");
    assert_eq!(
        reason("averyveryverylongname=1Gbit"),
        "interface names are at most 15 characters"
    );
    assert!(reason("eth0=10").contains("needs a unit"));
    assert!(reason("eth0=10Gbps").contains("needs a unit"));
    assert!(reason("eth0=tenGbit").contains("not a number"));
    assert!(reason("eth0=1.Gbit").contains("not a number"));
    assert_eq!(reason("eth0=0Mbit"), "the rate must be above zero");
    assert!(reason("eth0=4bit").contains("at least 8bit"));
    assert_eq!(reason("eth0=99999999999Tbit"), "the rate is too large");
    let line = parse_capacity("eth0=fast").unwrap_err().to_string();
    assert!(
        !line.contains('\n') && line.contains("eth0=10Gbit"),
        "{line}"
    );
}

#[test]
fn driver_speed_is_read_where_the_driver_reports_one() {
    let dir = std::env::temp_dir().join(format!("trafficd-speed-{}", std::process::id()));
    for (name, speed) in [("eth9", "10000\n"), ("veth9", "-1\n")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("speed"), speed).unwrap();
    }
    assert_eq!(driver_speed(&dir, "eth9"), Some(1_250_000_000));
    assert_eq!(driver_speed(&dir, "veth9"), None);
    assert_eq!(driver_speed(&dir, "absent0"), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sysfs(name: &str, counter: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{counter}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Datagrams and their size on the wire: Ethernet 14 + IPv4 20 + UDP 8 + payload.
const DATAGRAMS: u64 = 100;
const PAYLOAD: usize = 1000;
const FRAME: u64 = 14 + 20 + 8 + PAYLOAD as u64;

/// A veth from the root namespace into a test namespace; a known number of datagrams sent to a
/// neighbour whose MAC is not the peer's, so nothing answers and nothing else crosses the link.
#[test]
fn counters_match_the_kernel_and_the_traffic_sent() {
    require_root!();
    let ns = Netns::new();
    let veth = Veth::new(None, &ns);
    let x = free_subnet();
    let (local, remote) = (format!("10.203.{x}.1"), format!("10.203.{x}.2"));
    run(
        "ip",
        &["addr", "add", &format!("{local}/24"), "dev", &veth.a],
    );
    run(
        "ip",
        &["neigh", "replace", &remote, "lladdr", "02:00:00:00:00:01"]
            .iter()
            .copied()
            .chain(["dev", &veth.a, "nud", "permanent"])
            .collect::<Vec<_>>(),
    );
    ns.ip(&["link", "set", &veth.b, "up"]);
    run("ip", &["link", "set", &veth.a, "up"]);

    let mut interfaces = Interfaces::new([(veth.a.clone(), 12_500_000)]).unwrap();
    let find = |samples: Vec<InterfaceSample>| {
        samples
            .into_iter()
            .find(|s| s.name == veth.a)
            .expect("the veth in the dump")
    };
    // The kernel reports the operational state a moment after the link is set up; no link
    // events are followed here, so the table is read whole each time, as the daemon does
    // without them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut before = find(interfaces.poll().unwrap());
    while !before.up && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        interfaces.reread_links();
        before = find(interfaces.poll().unwrap());
    }
    assert!(before.up, "{before:?}");
    assert_eq!(before.capacity_bytes_per_sec, Some(12_500_000));
    assert_eq!(before.link_header_len, Some(14));
    assert_eq!(before.tx_bytes, sysfs(&veth.a, "tx_bytes"));

    let socket = UdpSocket::bind(format!("{local}:0")).unwrap();
    for _ in 0..DATAGRAMS {
        socket
            .send_to(&[7u8; PAYLOAD], format!("{remote}:9"))
            .unwrap();
    }
    // The counters alone this time (RTM_GETSTATS), joined to the link table.
    let after = find(interfaces.poll().unwrap());
    assert!(after.up && after.link_header_len == Some(14), "{after:?}");
    assert_eq!(after.tx_packets - before.tx_packets, DATAGRAMS);
    assert_eq!(after.tx_bytes - before.tx_bytes, DATAGRAMS * FRAME);
    assert_eq!(after.rx_packets, before.rx_packets, "nothing answers");
    for (ours, counter) in [
        (after.tx_bytes, "tx_bytes"),
        (after.tx_packets, "tx_packets"),
        (after.rx_bytes, "rx_bytes"),
        (after.rx_packets, "rx_packets"),
    ] {
        assert_eq!(ours, sysfs(&veth.a, counter), "{counter}");
    }
}

/// A link created after the table was read has counters the table cannot name: that poll
/// reads the table whole, and the link is in it.
#[test]
fn a_link_made_after_the_table_was_read_is_polled_all_the_same() {
    require_root!();
    let mut interfaces = Interfaces::new(Vec::new()).unwrap();
    let known = interfaces.poll().unwrap();
    let ns = Netns::new();
    let veth = Veth::new(None, &ns);
    assert!(!known.iter().any(|s| s.name == veth.a));
    let polled = interfaces.poll().unwrap();
    let new = polled
        .iter()
        .find(|s| s.name == veth.a)
        .expect("the new veth in the poll");
    assert_eq!(new.tx_bytes, sysfs(&veth.a, "tx_bytes"));
    // Gone, and its event not read yet: the counters say what exists.
    drop(veth);
    drop(ns);
    let polled = interfaces.poll().unwrap();
    assert!(
        polled.iter().all(|s| s.ifindex != new.ifindex),
        "{polled:?}"
    );
}

#[test]
fn link_events_report_interfaces_that_appear_and_vanish() {
    require_root!();
    let mut events = LinkEvents::subscribe().unwrap();
    let ns = Netns::new();
    let veth = Veth::new(None, &ns);
    ns.ip(&["link", "set", &veth.b, "up"]);
    run("ip", &["link", "set", &veth.a, "up"]);
    let ifindex: u32 = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", veth.a))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let name = veth.a.clone();
    drop(veth);

    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && !seen.contains(&LinkEvent::Gone {
            ifindex,
            name: name.clone(),
        })
    {
        seen.extend(events.pending().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ours: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e, LinkEvent::New { ifindex: i, .. } | LinkEvent::Gone { ifindex: i, .. } if *i == ifindex))
        .collect();
    assert!(
        matches!(ours.first(), Some(LinkEvent::New { name: n, .. }) if *n == name),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|e| matches!(e, LinkEvent::New { up: true, .. })),
        "{ours:?}"
    );
    // The notification describes the link as a dump would, for the link table.
    assert!(
        ours.iter().any(|e| matches!(e,
            LinkEvent::New { link: Some(l), .. } if l.name == name && l.link_header_len == Some(14))),
        "{ours:?}"
    );
    assert_eq!(
        ours.last(),
        Some(&&LinkEvent::Gone { ifindex, name }),
        "{ours:?}"
    );
}
