//! The daemon's own metrics: what the kernel programs could not record, how full the maps
//! are, how the drains go, and what this build is.

use std::time::{Duration, Instant};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::MetricType,
};
use trafficd_common::{maps as names, Loss};

use super::{counters, gauges};
use crate::stats::{Health, Store, Talker};

/// Bytes no process can be named for, by why and direction.
pub fn unattributed(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let mut by_reason = std::collections::BTreeMap::new();
    for (key, entry) in store.processes.entries() {
        if let Talker::Unattributed(reason) = key {
            let sum = by_reason.entry(reason.label()).or_insert((0u64, 0u64));
            sum.0 += entry.lifetime.tx_bytes;
            sum.1 += entry.lifetime.rx_bytes;
        }
    }
    let labels = |reason: &str, direction: &str| {
        vec![
            ("reason", reason.to_string()),
            ("direction", direction.to_string()),
        ]
    };
    counters(
        encoder,
        "trafficd_unattributed_bytes",
        "IP bytes no process can be named for, by reason and direction (the process families \
         hold them too, under comm [reason])",
        by_reason.iter().flat_map(|(reason, (tx, rx))| {
            [
                (labels(reason, "transmit"), *tx),
                (labels(reason, "receive"), *rx),
            ]
        }),
    )
}

/// What the kernel programs saw in all, and what they could not record.
pub fn kernel(encoder: &mut DescriptorEncoder, store: &Store) -> Result<(), std::fmt::Error> {
    let health = &store.health;
    // The tc programs' losses beside the socket hooks', when they count.
    let tc = &store.interfaces.losses;
    let tc_losses = [("forwarded_flows_full", tc.flows_full)];
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
    counters(
        encoder,
        "trafficd_map_entries_dropped",
        "Entries a kernel map could not take, by map and reason (the same events as \
         trafficd_kernel_lost_events, by map)",
        health.losses.iter().filter_map(|(loss, events, _)| {
            let map = full_map(*loss)?;
            Some((
                vec![("map", map.to_string()), ("reason", "full".to_string())],
                *events,
            ))
        }),
    )
}

/// The map whose being full a loss reports.
fn full_map(loss: Loss) -> Option<&'static str> {
    match loss {
        Loss::FlowMapFull => Some(names::FLOWS),
        Loss::SocketMapFull => Some(names::SOCKETS),
        Loss::CgroupMapFull => Some(names::CGROUPS),
        Loss::OwnerMapFull => Some(names::OWNERS),
        Loss::SocketProcessMapFull => Some(names::SOCKET_PROCESSES),
        Loss::ClosedMapFull => Some(names::CLOSED),
        Loss::Unparsed | Loss::TcpSocketUnregistered => None,
    }
}

/// How full the kernel maps are and the memory they hold.
pub fn maps(encoder: &mut DescriptorEncoder, health: &Health) -> Result<(), std::fmt::Error> {
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
    )
}

/// The drains: how many, how long, how long ago, and what the TCP sweep covers.
pub fn drains(
    encoder: &mut DescriptorEncoder,
    health: &Health,
    now: Instant,
) -> Result<(), std::fmt::Error> {
    counters(
        encoder,
        "trafficd_drains",
        "Times the daemon has read the kernel maps",
        [(Vec::new(), health.drains)],
    )?;
    let metric = encoder.encode_descriptor(
        "trafficd_drain_duration_seconds",
        "How long each drain of the kernel maps took",
        None,
        MetricType::Histogram,
    )?;
    health.drain_seconds.encode(metric)?;
    let since = health.last_drain_end.unwrap_or(health.started);
    gauges(
        encoder,
        "trafficd_drain_lag_seconds",
        "Seconds since the last drain ended (since start before the first): above a few \
         --interval, the numbers are stale",
        [(
            Vec::new(),
            now.saturating_duration_since(since).as_secs_f64(),
        )],
    )?;
    gauges(
        encoder,
        "trafficd_drain_duration_max_seconds",
        "Longest drain of the kernel maps since the daemon started",
        [(Vec::new(), health.longest_drain.as_secs_f64())],
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
    )
}

/// The scrape itself and the build.
pub fn daemon(
    encoder: &mut DescriptorEncoder,
    last_scrape: Duration,
) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        "trafficd_metrics_scrape_duration_seconds",
        "How long the previous /metrics scrape took to encode",
        [(Vec::new(), last_scrape.as_secs_f64())],
    )?;
    gauges(
        encoder,
        "trafficd_build_info",
        "Version of the running trafficd",
        [(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
    )
}
