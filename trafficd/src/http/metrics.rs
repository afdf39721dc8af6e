//! GET /metrics: OpenMetrics text, encoded at scrape time from the store.
//!
//! Series exist only for groups the store still holds, so cardinality is bounded by the
//! retention and the map sizes; a process idle for longer than the retention drops out.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use trafficd_common::{forwarding, Traffic};

use crate::stats::{Health, InterfaceStore, Store};

struct StoreCollector {
    store: Arc<RwLock<Store>>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

pub fn registry(store: Arc<RwLock<Store>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector { store }));
    registry
}

pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

type Labels = Vec<(&'static str, String)>;

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        processes(&mut encoder, &store)?;
        cgroups(&mut encoder, &store)?;
        interfaces(&mut encoder, &store)?;
        kernel(&mut encoder, &store)?;
        maps(&mut encoder, &store.health)?;
        daemon(&mut encoder, &store.health)
    }
}

/// Bytes per process, by (comm, pid).
fn processes(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    // Two processes can share (comm, pid) across pid reuse; one series holds their sum.
    let mut processes: BTreeMap<(Arc<str>, u32), (u64, u64)> = BTreeMap::new();
    for (_, entry) in store.processes.entries() {
        let sum = processes
            .entry((entry.meta.comm.clone(), entry.meta.pid))
            .or_default();
        sum.0 += entry.lifetime.tx_bytes;
        sum.1 += entry.lifetime.rx_bytes;
    }
    let process_labels =
        |(comm, pid): &(Arc<str>, u32)| vec![("comm", comm.to_string()), ("pid", pid.to_string())];
    counters(
        encoder,
        "trafficd_process_transmit_bytes",
        "IP bytes (headers included) sent by the sockets of a process",
        processes.iter().map(|(k, v)| (process_labels(k), v.0)),
    )?;
    counters(
        encoder,
        "trafficd_process_receive_bytes",
        "IP bytes (headers included) received by the sockets of a process",
        processes.iter().map(|(k, v)| (process_labels(k), v.1)),
    )?;
    Ok(())
}

/// Bytes per cgroup, by path.
fn cgroups(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let mut cgroups: BTreeMap<Arc<str>, (u64, u64)> = BTreeMap::new();
    for (_, entry) in store.cgroups.entries() {
        let sum = cgroups.entry(entry.meta.path.clone()).or_default();
        sum.0 += entry.lifetime.tx_bytes;
        sum.1 += entry.lifetime.rx_bytes;
    }
    counters(
        encoder,
        "trafficd_cgroup_transmit_bytes",
        "IP bytes sent by the sockets of a cgroup (path relative to the cgroup2 mount)",
        cgroups
            .iter()
            .map(|(k, v)| (vec![("cgroup", k.to_string())], v.0)),
    )?;
    counters(
        encoder,
        "trafficd_cgroup_receive_bytes",
        "IP bytes received by the sockets of a cgroup (path relative to the cgroup2 mount)",
        cgroups
            .iter()
            .map(|(k, v)| (vec![("cgroup", k.to_string())], v.1)),
    )?;
    Ok(())
}

/// What the kernel programs saw in all, and what they could not record.
fn kernel(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let health = &store.health;
    let tc = &store.interfaces.losses;
    let tc_losses = [
        ("forwarded_flows_full", tc.flows_full),
        ("interface_kinds_full", tc.kinds_full),
    ];
    let losses: Vec<(String, u64, u64)> = health
        .losses
        .iter()
        .map(|(loss, events, bytes)| (loss.name().to_string(), *events, *bytes))
        .chain(
            tc_losses
                .iter()
                .filter(|_| store.interfaces.counting)
                .map(|(name, (events, bytes))| (name.to_string(), *events, *bytes)),
        )
        .collect();
    counters(
        encoder,
        "trafficd_kernel_seen_bytes",
        "IP bytes of all local sockets: every process, cgroup and unattributed bucket adds up to this",
        [
            (vec![("direction", "transmit".to_string())], health.kernel_totals.tx_bytes),
            (vec![("direction", "receive".to_string())], health.kernel_totals.rx_bytes),
        ],
    )?;
    counters(
        encoder,
        "trafficd_kernel_lost_events",
        "Events the kernel programs could not record, by reason (a full map, an unparsable packet)",
        losses
            .iter()
            .map(|(reason, events, _)| (vec![("reason", reason.clone())], *events)),
    )?;
    counters(
        encoder,
        "trafficd_kernel_lost_bytes",
        "Bytes of the events in trafficd_kernel_lost_events, by reason",
        losses
            .iter()
            .map(|(reason, _, bytes)| (vec![("reason", reason.clone())], *bytes)),
    )?;
    Ok(())
}

/// Each interface's own counters and capacity, and the split of its bytes by kind: the
/// parts of one interface and direction add up to its counter.
fn interfaces(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
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

/// How full the kernel maps are and the memory they hold.
fn maps(encoder: &mut DescriptorEncoder, health: &Health) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        "trafficd_map_entries",
        "Entries in a kernel map at the last drain",
        health
            .map_fill
            .iter()
            .map(|f| (vec![("map", f.map.to_string())], f.entries as i64)),
    )?;
    gauges(
        encoder,
        "trafficd_map_capacity",
        "Maximum entries of a kernel map (set with the --*-map-size flags)",
        health
            .map_fill
            .iter()
            .map(|f| (vec![("map", f.map.to_string())], i64::from(f.capacity))),
    )?;
    gauges(
        encoder,
        "trafficd_map_memory_bytes",
        "Kernel memory a BPF map holds (fdinfo memlock; fixed at load, every map is preallocated)",
        health
            .map_memory
            .iter()
            .map(|m| (vec![("map", m.map.to_string())], m.bytes as i64)),
    )?;
    Ok(())
}

/// The daemon's own work: drains, sweeps, version.
fn daemon(encoder: &mut DescriptorEncoder, health: &Health) -> Result<(), std::fmt::Error> {
    counters(
        encoder,
        "trafficd_drains",
        "Times the daemon has read the kernel maps",
        [(Vec::new(), health.drains)],
    )?;
    gauges(
        encoder,
        "trafficd_drain_duration_microseconds",
        "How long the last drain of the kernel maps took",
        [(Vec::new(), health.last_drain.as_micros() as i64)],
    )?;
    gauges(
        encoder,
        "trafficd_drain_duration_max_microseconds",
        "Longest drain of the kernel maps since the daemon started",
        [(Vec::new(), health.longest_drain.as_micros() as i64)],
    )?;
    counters(
        encoder,
        "trafficd_sockets_forgotten",
        "Closed sockets whose map entries were deleted after their last bytes were read",
        [(Vec::new(), health.sockets_forgotten)],
    )?;
    gauges(
        encoder,
        "trafficd_tcp_counted_from_connections",
        "1 when established TCP connections are counted from the kernel's counters of each \
         connection; 0 when every TCP packet is counted by the packet hooks",
        [(Vec::new(), i64::from(health.tcp_swept_namespaces.is_some()))],
    )?;
    gauges(
        encoder,
        "trafficd_tcp_swept_namespaces",
        "Network namespaces whose TCP connections the last sweep read (at start, then every \
         --tcp-sweep-interval), trafficd's own included",
        [(Vec::new(), health.tcp_swept_namespaces.unwrap_or(0) as i64)],
    )?;
    gauges(
        encoder,
        "trafficd_build_info",
        "Version of the running trafficd",
        [(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
    )?;
    Ok(())
}
