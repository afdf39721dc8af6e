//! Per-process, per-container and per-cgroup byte counters, each family bounded by
//! [`Bounded`].
//!
//! A process is named by a label set, its identity: comm and container by default (a host that
//! forks thousands of workers of one program exports one series per container it runs in),
//! with pid too under `--metrics-per-pid`. Another label is one more line in
//! [`process_identity`]. A container is named by what a dashboard filters on: its name, image,
//! runtime, and pod and namespace where it belongs to one.

use std::{sync::Arc, time::Instant};

use prometheus_client::encoding::DescriptorEncoder;

use super::{
    bounded::{Bounded, Bytes, Identity, Sighting},
    counters, Labels, MetricsConfig,
};
use crate::{
    enrich::containers::{Owner, OwnerKind},
    stats::{Store, Talker, TalkerInfo},
};

/// The label value of the series that holds every owner without a series of its own.
const OTHER: &str = "[other]";

pub struct Owners {
    per_pid: bool,
    processes: Bounded<Talker>,
    containers: Bounded<u64>,
    cgroups: Bounded<u64>,
}

fn process_identity(info: &TalkerInfo, per_pid: bool) -> Identity {
    // A process may name itself like the `other` series; its own series must differ.
    let comm = if &*info.comm == OTHER {
        Arc::from(format!("{OTHER}?"))
    } else {
        info.comm.clone()
    };
    let mut identity: Identity = vec![("comm", comm), ("container", container_label(&info.owner))];
    if per_pid {
        identity.push(("pid", Arc::from(info.pid.to_string())));
    }
    identity
}

/// The container a series belongs to, "" for host processes and units.
fn container_label(owner: &Owner) -> Arc<str> {
    match owner.kind {
        OwnerKind::Container => Arc::from(owner.display_name().unwrap_or_default()),
        _ => Arc::from(""),
    }
}

/// A container's series labels; "" where a label does not apply (no pod, say).
fn container_identity(owner: &Owner) -> Identity {
    let text = |value: Option<&str>| Arc::from(value.unwrap_or_default());
    vec![
        ("container", container_label(owner)),
        ("image", text(owner.image.as_deref())),
        ("runtime", text(owner.runtime.map(|r| r.as_str()))),
        ("pod", text(owner.pod_name.as_deref())),
        ("namespace", text(owner.namespace.as_deref())),
    ]
}

impl Owners {
    pub fn new(config: &MetricsConfig) -> Owners {
        Owners {
            per_pid: config.per_pid,
            processes: Bounded::new(config.max_series, config.retention),
            containers: Bounded::new(config.max_series, config.retention),
            cgroups: Bounded::new(config.max_series, config.retention),
        }
    }

    /// Adds what every process and cgroup moved since the last scrape.
    pub fn update(&mut self, store: &Store, now: Instant) {
        let per_pid = self.per_pid;
        self.processes.update(
            now,
            store.processes.entries().map(|(key, entry)| Sighting {
                owner: *key,
                identity: process_identity(&entry.meta, per_pid),
                lifetime: Bytes {
                    tx: entry.lifetime.tx_bytes,
                    rx: entry.lifetime.rx_bytes,
                },
                last_active: entry.last_active,
            }),
        );
        // A container's bytes are its cgroups': the containers family sums them by identity.
        self.containers.update(
            now,
            store
                .cgroups
                .entries()
                .filter(|(_, entry)| entry.meta.owner.kind == OwnerKind::Container)
                .map(|(key, entry)| Sighting {
                    owner: *key,
                    identity: container_identity(&entry.meta.owner),
                    lifetime: Bytes {
                        tx: entry.lifetime.tx_bytes,
                        rx: entry.lifetime.rx_bytes,
                    },
                    last_active: entry.last_active,
                }),
        );
        self.cgroups.update(
            now,
            store.cgroups.entries().map(|(key, entry)| Sighting {
                owner: *key,
                identity: vec![("cgroup", entry.meta.path.clone())],
                lifetime: Bytes {
                    tx: entry.lifetime.tx_bytes,
                    rx: entry.lifetime.rx_bytes,
                },
                last_active: entry.last_active,
            }),
        );
    }

    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let processes = series(&self.processes, "comm");
        counters(
            encoder,
            "trafficd_process_transmit_bytes",
            "IP bytes (headers included) sent by the sockets of the processes of this identity",
            processes.iter().map(|(l, b)| (l.clone(), b.tx)),
        )?;
        counters(
            encoder,
            "trafficd_process_receive_bytes",
            "IP bytes (headers included) received by the sockets of the processes of this identity",
            processes.iter().map(|(l, b)| (l.clone(), b.rx)),
        )?;
        let containers = series(&self.containers, "container");
        counters(
            encoder,
            "trafficd_container_transmit_bytes",
            "IP bytes (headers included) sent by the sockets of a container's processes",
            containers.iter().map(|(l, b)| (l.clone(), b.tx)),
        )?;
        counters(
            encoder,
            "trafficd_container_receive_bytes",
            "IP bytes (headers included) received by the sockets of a container's processes",
            containers.iter().map(|(l, b)| (l.clone(), b.rx)),
        )?;
        let cgroups = series(&self.cgroups, "cgroup");
        counters(
            encoder,
            "trafficd_cgroup_transmit_bytes",
            "IP bytes sent by the sockets of a cgroup (path relative to the cgroup2 mount)",
            cgroups.iter().map(|(l, b)| (l.clone(), b.tx)),
        )?;
        counters(
            encoder,
            "trafficd_cgroup_receive_bytes",
            "IP bytes received by the sockets of a cgroup (path relative to the cgroup2 mount)",
            cgroups.iter().map(|(l, b)| (l.clone(), b.rx)),
        )
    }
}

/// Every series of a family as labels and bytes, `other` last (labelled by `first_label`
/// only, so it never collides with a real identity).
fn series<O: std::hash::Hash + Eq>(
    family: &Bounded<O>,
    first_label: &'static str,
) -> Vec<(Labels, Bytes)> {
    let mut all: Vec<(Labels, Bytes)> = family
        .named()
        .map(|(identity, bytes)| {
            let labels = identity
                .iter()
                .map(|(name, value)| (*name, value.to_string()))
                .collect();
            (labels, bytes)
        })
        .collect();
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    all.push((vec![(first_label, OTHER.to_string())], family.other()));
    all
}
