//! Interfaces as the daemon counts them: each one's own counters, capacity, and the split of
//! its bytes into what local sockets moved, what was forwarded and what is unattributed,
//! which add up to the counters. And what the daemon does with interfaces that do not exist
//! or vanish while counted.

use std::net::SocketAddr;

use trafficd_tests::{
    assert_conserved, interface_item, require_program, require_root, settled_interface, trafficgen,
    wait_counted, wait_for, Daemon, Forwarder, Link, NetNs, Side, Transfer,
};

const TCP_PAYLOAD: u64 = 2 << 20;
const UDP_PAYLOAD: u64 = 500_000;

/// Local TCP and UDP sockets on one host interface, forwarded UDP and TCP through two others:
/// every interface's parts add up to its own counters within 1%, the local bytes are local
/// and the forwarded ones forwarded, and /metrics says the same.
#[test]
fn every_interface_adds_up_over_a_mixed_workload() {
    require_root!();
    require_program!("iptables", "iptables");
    let (a, c, l) = (NetNs::new("ma"), NetNs::new("mc"), NetNs::new("ml"));
    let (to_a, to_c, to_l) = (Link::root_to(&a), Link::root_to(&c), Link::root_to(&l));
    let _forwarder = Forwarder::between(&a, &to_a, &c, &to_c);
    let names = [to_a.if_a(), to_c.if_a(), to_l.if_a()];
    let d = Daemon::builder()
        .arg(format!("--interfaces={}", names.join(",")))
        .arg(format!("--interface-capacity={}=1Gbit", to_l.if_a()))
        .start();
    for name in names {
        wait_counted(&d, name);
    }

    let tg = trafficgen!();
    // Local: the host sends over TCP to l, l sends UDP to the host.
    Transfer::tcp(SocketAddr::new(to_l.b_v4(), 0), TCP_PAYLOAD)
        .server(Side::named("tg-mx-sink").netns(&l))
        .client(Side::named("tg-mx-send"))
        .run(&tg);
    Transfer::udp(SocketAddr::new(to_l.a_v4(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-mx-usink"))
        .client(Side::named("tg-mx-usend").netns(&l))
        .run(&tg);
    // Forwarded: A to C, UDP and TCP.
    Transfer::udp(SocketAddr::new(to_c.b_v4(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-mx-fsink").netns(&c))
        .client(Side::named("tg-mx-fsend").netns(&a))
        .run(&tg);
    Transfer::tcp(SocketAddr::new(to_c.b_v4(), 0), TCP_PAYLOAD)
        .server(Side::named("tg-mx-ftsink").netns(&c))
        .client(Side::named("tg-mx-ftsend").netns(&a))
        .run(&tg);

    let part = |item: &serde_json::Value, direction: &str, kind: &str| {
        item["lifetime_split"][direction][kind]
            .as_u64()
            .unwrap_or_default()
    };
    let local = wait_for("the local transfers on l's veth", || {
        let item = interface_item(&d, to_l.if_a()).ok_or("not listed")?;
        let done = part(&item, "transmit", "local") >= TCP_PAYLOAD
            && part(&item, "receive", "local") >= UDP_PAYLOAD;
        if done {
            Ok(item)
        } else {
            Err(item.to_string())
        }
    });
    assert_eq!(local["capacity_bytes_per_sec"], 125_000_000, "{local}");
    assert_eq!(part(&local, "transmit", "forwarded"), 0, "{local}");
    let forwarded = 2 * UDP_PAYLOAD.min(TCP_PAYLOAD);
    for (name, direction) in [(to_a.if_a(), "receive"), (to_c.if_a(), "transmit")] {
        wait_for(&format!("forwarded bytes on {name}"), || {
            let item = interface_item(&d, name).ok_or("not listed")?;
            let done = part(&item, direction, "forwarded") >= UDP_PAYLOAD + TCP_PAYLOAD;
            if done {
                Ok(())
            } else {
                Err(item.to_string())
            }
        });
        let item = interface_item(&d, name).expect("listed");
        assert!(part(&item, direction, "local") * 100 < forwarded, "{item}");
    }
    for name in names {
        let item = settled_interface(&d, name);
        assert_conserved(&item);
        let metrics = d.metrics();
        let labels = [("interface", name)];
        let counter = metrics
            .value("trafficd_interface_transmit_bytes_total", &labels)
            .unwrap_or_default() as u64;
        let attributed: f64 = metrics
            .find("trafficd_interface_attributed_bytes_total", &labels)
            .iter()
            .filter(|s| s.label("direction") == Some("transmit"))
            .map(|s| s.value)
            .sum();
        assert_eq!(
            attributed as u64, counter,
            "{name}: the kinds add up to the counter"
        );
        assert!(counter >= item["lifetime_tx_bytes"].as_u64().unwrap_or_default());
    }
    let metrics = d.metrics();
    let capacity = metrics.value(
        "trafficd_interface_capacity_bytes",
        &[("interface", to_l.if_a())],
    );
    assert_eq!(capacity, Some(125_000_000.0));
}

/// An --interfaces name that does not exist and an interface deleted while counted: one log
/// line each, and the daemon keeps counting the rest.
#[test]
fn missing_and_vanishing_interfaces_leave_the_rest_counted() {
    require_root!();
    let (x, y) = (NetNs::new("bx"), NetNs::new("by"));
    let to_x = Link::root_to(&x);
    let to_y = Link::root_to(&y);
    let vanishing = to_y.if_a().to_string();
    let mut d = Daemon::builder()
        .arg(format!(
            "--interfaces=nosuch0,{},{}",
            to_x.if_a(),
            vanishing
        ))
        .start();
    wait_counted(&d, to_x.if_a());
    wait_counted(&d, &vanishing);
    let said = |d: &Daemon, what: &str| d.log_text().lines().filter(|l| l.contains(what)).count();
    let missing = "interface nosuch0 given to --interfaces does not exist";
    wait_for("the missing interface said", || match said(&d, missing) {
        1 => Ok(()),
        n => Err(n),
    });

    drop(to_y);
    let gone = format!("interface {vanishing} (ifindex");
    wait_for("the vanished interface said", || match said(&d, &gone) {
        0 => Err(d.log_text()),
        _ => Ok(()),
    });

    let tg = trafficgen!();
    Transfer::udp(SocketAddr::new(to_x.b_v4(), 0), UDP_PAYLOAD)
        .server(Side::named("tg-bx-sink").netns(&x))
        .client(Side::named("tg-bx-send"))
        .run(&tg);
    wait_for("x's veth still counted", || {
        let item = interface_item(&d, to_x.if_a()).ok_or("not listed")?;
        match item["lifetime_split"]["transmit"]["local"].as_u64() {
            Some(n) if n >= UDP_PAYLOAD => Ok(()),
            _ => Err(item.to_string()),
        }
    });
    assert!(d.is_running(), "{}", d.log_text());
    assert_eq!(said(&d, missing), 1, "said once: {}", d.log_text());
    assert_eq!(said(&d, &gone), 1, "said once: {}", d.log_text());
}
