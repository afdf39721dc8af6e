//! Interfaces: each one's own counters and capacity, and the split of its bytes by kind.
//! One series per interface name: bounded by the interfaces of the host, which come and go
//! with their containers and leave with the retention.

use std::{collections::BTreeMap, sync::Arc};

use prometheus_client::encoding::DescriptorEncoder;
use trafficd_common::{forwarding, Traffic};

use super::{counters, gauges, Labels};
use crate::stats::{InterfaceStore, Store};

/// Each interface's own counters and capacity, and the split of its bytes by kind: the
/// parts of one interface and direction add up to its counter.
pub fn encode(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let links = &store.interfaces;
    // By name: an interface recreated under a new index continues its series.
    let mut totals: BTreeMap<Arc<str>, Traffic> = BTreeMap::new();
    let mut capacities: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    let mut names: BTreeMap<u32, Arc<str>> = BTreeMap::new();
    for (ifindex, entry) in links.interfaces.entries() {
        let total = totals.entry(entry.meta.name.clone()).or_default();
        *total = total.add(&entry.lifetime);
        if let Some(capacity) = entry.meta.capacity {
            capacities.insert(entry.meta.name.clone(), capacity);
        }
        if entry.meta.counted {
            names.insert(*ifindex, entry.meta.name.clone());
        }
    }
    let by_name = |value: fn(&Traffic) -> u64| {
        totals
            .iter()
            .map(move |(name, t)| (vec![("interface", name.to_string())], value(t)))
    };
    let families: [Family; 4] = [
        (
            "trafficd_interface_transmit_bytes",
            "Bytes the interface sent, as its own counters say (since trafficd started)",
            |t| t.tx_bytes,
        ),
        (
            "trafficd_interface_receive_bytes",
            "Bytes the interface received, as its own counters say (since trafficd started)",
            |t| t.rx_bytes,
        ),
        (
            "trafficd_interface_transmit_packets",
            "Packets the interface sent, as its own counters say",
            |t| t.tx_packets,
        ),
        (
            "trafficd_interface_receive_packets",
            "Packets the interface received, as its own counters say",
            |t| t.rx_packets,
        ),
    ];
    for (name, help, value) in families {
        counters(encoder, name, help, by_name(value))?;
    }
    gauges(
        encoder,
        "trafficd_interface_capacity_bytes",
        "What the interface can carry per direction, bytes per second (--interface-capacity or the driver's speed)",
        capacities
            .iter()
            .map(|(name, c)| (vec![("interface", name.to_string())], *c as i64)),
    )?;
    counters(
        encoder,
        "trafficd_interface_attributed_bytes",
        "An interface's bytes by kind (local, forwarded, dropped, non_ip, not_seen) and direction; \
         per interface and direction the kinds add up to trafficd_interface_*_bytes_total",
        attributed(links, &names, &totals),
    )
}

/// A counter family of the interfaces' own counters: name, help, which counter.
type Family = (&'static str, &'static str, fn(&Traffic) -> u64);

/// The series of trafficd_interface_attributed_bytes: each counted interface's parts, and
/// what none of them holds as `not_seen`.
fn attributed(
    links: &InterfaceStore,
    names: &BTreeMap<u32, Arc<str>>,
    totals: &BTreeMap<Arc<str>, Traffic>,
) -> Vec<(Labels, u64)> {
    let mut parts: BTreeMap<(Arc<str>, &'static str, &'static str), u64> = BTreeMap::new();
    let mut seen: BTreeMap<(Arc<str>, &'static str), u64> = BTreeMap::new();
    for (key, entry) in links.parts.entries() {
        let (Some(name), Some((_, kind))) = (
            names.get(&key.ifindex),
            forwarding::kind::ALL.iter().find(|(k, _)| *k == key.kind),
        ) else {
            continue;
        };
        for (direction, bytes) in [
            ("transmit", entry.lifetime.tx_bytes),
            ("receive", entry.lifetime.rx_bytes),
        ] {
            *parts.entry((name.clone(), direction, kind)).or_default() += bytes;
            *seen.entry((name.clone(), direction)).or_default() += bytes;
        }
    }
    for name in names.values() {
        let Some(total) = totals.get(name) else {
            continue;
        };
        for (direction, device) in [("transmit", total.tx_bytes), ("receive", total.rx_bytes)] {
            let counted = seen.get(&(name.clone(), direction)).copied().unwrap_or(0);
            parts.insert(
                (name.clone(), direction, "not_seen"),
                device.saturating_sub(counted),
            );
        }
    }
    parts
        .into_iter()
        .map(|((name, direction, kind), bytes)| {
            let labels = vec![
                ("interface", name.to_string()),
                ("direction", direction.to_string()),
                ("kind", kind.to_string()),
            ];
            (labels, bytes)
        })
        .collect()
}
