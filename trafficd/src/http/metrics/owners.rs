//! Per-process and per-cgroup byte counters, each family bounded by [`Bounded`].
//!
//! A process is named by a label set, its identity: comm by default (a host that forks
//! thousands of workers of one program exports one series), comm and pid with
//! `--metrics-per-pid`. Another label is one more line in [`process_identity`].

use std::{sync::Arc, time::Instant};

use prometheus_client::encoding::DescriptorEncoder;

use super::{
    bounded::{Bounded, Bytes, Identity, Sighting},
    counters, Labels, MetricsConfig,
};
use crate::stats::{Store, Talker, TalkerInfo};

/// The label value of the series that holds every owner without a series of its own.
const OTHER: &str = "[other]";

pub struct Owners {
    per_pid: bool,
    processes: Bounded<Talker>,
    cgroups: Bounded<u64>,
}

fn process_identity(info: &TalkerInfo, per_pid: bool) -> Identity {
    // A process may name itself like the `other` series; its own series must differ.
    let comm = if &*info.comm == OTHER {
        Arc::from(format!("{OTHER}?"))
    } else {
        info.comm.clone()
    };
    let mut identity: Identity = vec![("comm", comm)];
    if per_pid {
        identity.push(("pid", Arc::from(info.pid.to_string())));
    }
    identity
}

impl Owners {
    pub fn new(config: &MetricsConfig) -> Owners {
        Owners {
            per_pid: config.per_pid,
            processes: Bounded::new(config.max_series, config.retention),
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
