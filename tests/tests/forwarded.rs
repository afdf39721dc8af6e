//! Traffic this host forwards: namespaces A and C routed to each other through the root
//! namespace, where the daemon counts on the host's two interfaces. A known UDP transfer
//! from A to C is a forwarded flow on both, with no socket owner, and each interface's split
//! puts its bytes under forwarded.

use std::net::SocketAddr;

use serde_json::Value;
use trafficd_tests::{
    interface_item, require_program, require_root, trafficgen, wait_for, Daemon, Forwarder, Link,
    NetNs, Side, Top, Transfer,
};

/// 500 datagrams of 1000 bytes.
const PAYLOAD: u64 = 500_000;
const DATAGRAMS: u64 = PAYLOAD / 1000;
/// Ethernet 14 + IPv4 20 + UDP 8 + payload: each datagram on a veth.
const FRAME: u64 = 14 + 20 + 8 + 1000;

/// The transfer's frames, and 1% above for anything else the flow's tuple carried (none is
/// expected: the sink sends nothing back).
fn bounds() -> (u64, u64) {
    let exact = DATAGRAMS * FRAME;
    (exact, exact + exact / 100)
}

/// Waits until the daemon counts on `interface` (its item has a split).
fn wait_counted(d: &Daemon, interface: &str) -> Value {
    wait_for(&format!("{interface} counted"), || {
        match interface_item(d, interface) {
            Some(item) if item["split"].is_object() => Ok(item),
            other => Err(format!("{other:?}")),
        }
    })
}

/// The forwarded flow item of `from` -> `to` on `interface`, once its `lifetime` bytes (the
/// field's name) reached `at_least`.
fn forwarded_flow(
    d: &Daemon,
    interface: &str,
    direction: &str,
    from: SocketAddr,
    to: SocketAddr,
    lifetime: &str,
    at_least: u64,
) -> Value {
    wait_for(
        &format!("{from} -> {to} on {interface} {direction}"),
        || {
            let top: Top = d.top("by=flow&limit=1000&window=60s");
            let found = top.items().iter().find(|i| {
                i.0["interface"] == interface
                    && i.0["direction"] == direction
                    && i.str("local") == from.to_string()
                    && i.str("remote") == to.to_string()
            });
            match found {
                Some(item) if item.u64(lifetime) >= at_least => Ok(item.0.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
}

/// Sum of an interface's counted parts in one direction of its lifetime split, and its
/// not_seen.
pub fn counted_and_not_seen(item: &Value, direction: &str) -> (u64, u64) {
    let parts = &item["lifetime_split"][direction];
    let u = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a number in {item}"))
    };
    let counted = u(&parts["local"])
        + u(&parts["forwarded"])
        + u(&parts["unattributed"]["dropped"])
        + u(&parts["unattributed"]["non_ip"]);
    (counted, u(&parts["unattributed"]["not_seen"]))
}

/// The parts of each direction add up to the interface's own counter within 1%.
pub fn assert_conserved(item: &Value) {
    for (direction, counter) in [
        ("transmit", "lifetime_tx_bytes"),
        ("receive", "lifetime_rx_bytes"),
    ] {
        let device = item[counter].as_u64().expect("a counter");
        let (counted, not_seen) = counted_and_not_seen(item, direction);
        assert_eq!(counted + not_seen, device.max(counted), "{item}");
        assert!(
            not_seen * 100 <= device.max(1) && counted <= device + device / 100,
            "{direction}: {counted} counted of the device's {device} ({not_seen} not seen): {item}"
        );
    }
}

#[test]
fn routed_udp_is_forwarded_on_both_host_interfaces() {
    require_root!();
    require_program!("iptables", "iptables");
    let a = NetNs::new("fa");
    let c = NetNs::new("fc");
    let to_a = Link::root_to(&a);
    let to_c = Link::root_to(&c);
    let _forwarder = Forwarder::between(&a, &to_a, &c, &to_c);
    let d = Daemon::builder()
        .arg(format!("--interfaces={},{}", to_a.if_a(), to_c.if_a()))
        .start();
    wait_counted(&d, to_a.if_a());
    wait_counted(&d, to_c.if_a());

    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(to_c.b_v4(), 0), PAYLOAD)
        .server(Side::named("tg-fw-sink").netns(&c))
        .client(Side::named("tg-fw-send").netns(&a))
        .run(&tg);
    let (from, to) = (t.sender.local(), t.sender.peer());
    let (exact, most) = bounds();

    let arrived = forwarded_flow(
        &d,
        to_a.if_a(),
        "ingress",
        from,
        to,
        "lifetime_rx_bytes",
        exact,
    );
    let left = forwarded_flow(
        &d,
        to_c.if_a(),
        "egress",
        from,
        to,
        "lifetime_tx_bytes",
        exact,
    );
    for (item, bytes) in [
        (&arrived, "lifetime_rx_bytes"),
        (&left, "lifetime_tx_bytes"),
    ] {
        let counted = item[bytes].as_u64().unwrap_or_default();
        assert!(
            (exact..=most).contains(&counted),
            "{counted} not in {exact}..={most}: {item}"
        );
        assert_eq!(item["local_socket"], false, "{item}");
        assert_eq!(item["pid"], 0, "no process owns a forwarded flow: {item}");
        assert_eq!(item["comm"], "", "{item}");
        assert!(
            item["nat"].as_array().is_some_and(Vec::is_empty),
            "not translated: {item}"
        );
    }

    // The host's interfaces: the transfer is forwarded, not local, and nothing is lost.
    for (interface, direction) in [(to_a.if_a(), "receive"), (to_c.if_a(), "transmit")] {
        let item = wait_for(&format!("{interface} split"), || {
            let item = interface_item(&d, interface).ok_or("gone")?;
            let forwarded = item["lifetime_split"][direction]["forwarded"].as_u64();
            match forwarded {
                Some(n) if n >= exact => Ok(item),
                _ => Err(format!("{item}")),
            }
        });
        let forwarded = item["lifetime_split"][direction]["forwarded"]
            .as_u64()
            .unwrap_or_default();
        let local = item["lifetime_split"][direction]["local"]
            .as_u64()
            .unwrap_or_default();
        assert!(forwarded <= most, "{item}");
        assert!(
            local * 100 <= exact,
            "the host's sockets are not credited: {item}"
        );
        assert_conserved(&item);
    }
    // No host process: the only sockets with the transfer's tuple are its two ends', in
    // their own namespaces. (Other tests' processes may be busy meanwhile: only this tuple
    // is looked at.)
    let top: Top = d.top("by=flow&limit=1000&window=60s");
    let ends = [from.to_string(), to.to_string()];
    for item in top.items() {
        let on_tuple = ends.contains(&item.str("local").to_string())
            && ends.contains(&item.str("remote").to_string());
        if on_tuple && item.0["local_socket"] == true {
            let pid = item.pid();
            assert!(
                [t.sender.pid(), t.receiver.pid()].contains(&pid),
                "a host process credited with the forwarded flow: {:?}",
                item.0
            );
        }
    }
}
