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

use super::container_series::{
    container_series, ContainerLabels, DEFAULT_LIMIT as CONTAINER_SERIES,
};
use crate::stats::{Health, Store};

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
        containers(&mut encoder, &store)?;
        kernel(&mut encoder, &store.health)?;
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

/// Bytes per container, by name, image, runtime and pod; bounded as `container_series` says.
fn containers(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let series = container_series(store, CONTAINER_SERIES);
    let labels = |l: &ContainerLabels| -> Labels {
        ["container", "image", "runtime", "pod", "namespace"]
            .into_iter()
            .zip(l.iter().cloned())
            .collect()
    };
    counters(
        encoder,
        "trafficd_container_transmit_bytes",
        "IP bytes (headers included) sent by the sockets of a container's processes",
        series.iter().map(|(l, tx, _)| (labels(l), *tx)),
    )?;
    counters(
        encoder,
        "trafficd_container_receive_bytes",
        "IP bytes (headers included) received by the sockets of a container's processes",
        series.iter().map(|(l, _, rx)| (labels(l), *rx)),
    )
}

/// What the kernel programs saw in all, and what they could not record.
fn kernel(encoder: &mut DescriptorEncoder, health: &Health) -> Result<(), std::fmt::Error> {
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
        health
            .losses
            .iter()
            .map(|(loss, events, _)| (vec![("reason", loss.name().to_string())], *events)),
    )?;
    counters(
        encoder,
        "trafficd_kernel_lost_bytes",
        "Bytes of the events in trafficd_kernel_lost_events, by reason",
        health
            .losses
            .iter()
            .map(|(loss, _, bytes)| (vec![("reason", loss.name().to_string())], *bytes)),
    )?;
    Ok(())
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
