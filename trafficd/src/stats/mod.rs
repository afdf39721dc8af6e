//! What the daemon knows: traffic per process, cgroup, flow and remote address, with lifetime
//! totals and sliding windows, plus the daemon's own health. Written by the drain, read by the
//! HTTP API and the metrics encoder.

mod dimension;
mod history;
mod interfaces;
mod packed;
mod remotes;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::metrics::histogram::Histogram;

pub use dimension::{Dimension, Expired, Windowed, NO_HINT};
pub use interfaces::{address, tuple_of, ForwardInfo, InterfaceInfo, InterfaceStore, PartKey};
pub use remotes::{local_addr, remote_addr, Remotes};
use trafficd_common::{FlowKey, Loss, Traffic};

use crate::{
    attribution::Unattributed,
    enrich::{containers::Owner, processes::ProcessKey},
    kernel::{MapFill, MapMemory},
};

/// Whom bytes are attributed to in the per-process view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Talker {
    Process(ProcessKey),
    Unattributed(Unattributed),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TalkerInfo {
    pub pid: u32,
    /// The pid inside its own pid namespace, where /proc told it.
    pub pid_in_namespace: Option<u32>,
    pub comm: Arc<str>,
    pub cmdline: String,
    pub exe: String,
    pub user: String,
    pub uid: Option<u32>,
    pub cgroup: Arc<str>,
    pub owner: Arc<Owner>,
    pub reason: Option<Unattributed>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupInfo {
    pub path: Arc<str>,
    pub owner: Arc<Owner>,
}

/// Flows are many: their names are shared with the process and cgroup they belong to, and each
/// flow holds its description through one pointer shared by the flows of its socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowInfo {
    pub pid: u32,
    pub comm: Arc<str>,
    pub cgroup: Arc<str>,
    pub owner: Arc<Owner>,
}

/// The daemon's view of itself, for /metrics and /healthz.
#[derive(Clone, Debug)]
pub struct Health {
    pub started: Instant,
    pub drains: u64,
    pub last_drain: Duration,
    pub longest_drain: Duration,
    /// (kind, events, bytes) the kernel side could not record.
    pub losses: Vec<(Loss, u64, u64)>,
    pub map_fill: Vec<MapFill>,
    pub map_memory: Vec<MapMemory>,
    /// Everything the cgroup hooks saw since load.
    pub kernel_totals: Traffic,
    /// Map entries deleted after their sockets closed.
    pub sockets_forgotten: u64,
    /// Network namespaces the last TCP sweep ran in, or `None` when every TCP packet is
    /// counted by the packet hooks.
    pub tcp_swept_namespaces: Option<usize>,
    /// How long each drain took, for /metrics.
    pub drain_seconds: Histogram,
    /// Drains already in `drain_seconds`.
    pub drains_timed: u64,
    /// When the last drain ended.
    pub last_drain_end: Option<Instant>,
}

impl Health {
    /// Drain-time buckets: a drain is normally a few milliseconds; seconds mean trouble.
    const DRAIN_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

    /// Called after each drain attempt: records the drain that just ended, once.
    pub fn drain_ended(&mut self, now: Instant) {
        if self.drains != self.drains_timed {
            self.drains_timed = self.drains;
            self.drain_seconds.observe(self.last_drain.as_secs_f64());
            self.last_drain_end = Some(now);
        }
    }
}

/// What [`Store::expire`] dropped that the drain keeps references to.
#[derive(Default)]
pub struct Forgotten {
    pub processes: Vec<Talker>,
    /// Slots of the flow dimension now free: hints naming them are stale.
    pub flow_slots: Vec<u32>,
}

pub struct Store {
    pub processes: Dimension<Talker, TalkerInfo>,
    pub cgroups: Dimension<u64, CgroupInfo>,
    pub flows: Dimension<FlowKey, Arc<FlowInfo>>,
    /// What expired flows moved, by remote; a remote's traffic is summed from its flows.
    pub remotes: Remotes,
    /// Links: counters, their split by kind, forwarded flows.
    pub interfaces: InterfaceStore,
    pub health: Health,
}

impl Store {
    pub fn new(now: Instant) -> Store {
        Store {
            processes: Dimension::default(),
            cgroups: Dimension::default(),
            flows: Dimension::default(),
            remotes: Remotes::default(),
            interfaces: InterfaceStore::default(),
            health: Health {
                started: now,
                drains: 0,
                last_drain: Duration::ZERO,
                longest_drain: Duration::ZERO,
                losses: Vec::new(),
                map_fill: Vec::new(),
                map_memory: Vec::new(),
                kernel_totals: Traffic::default(),
                sockets_forgotten: 0,
                tcp_swept_namespaces: None,
                drain_seconds: Histogram::new(Health::DRAIN_BUCKETS),
                drains_timed: 0,
                last_drain_end: None,
            },
        }
    }

    /// Drops groups idle for longer than `retention`.
    pub fn expire(&mut self, now: Instant, retention: Duration) -> Forgotten {
        self.cgroups.expire(now, retention);
        self.interfaces.expire(now, retention);
        let flows = self.flows.expire(now, retention);
        self.remotes.retire(&flows, &self.flows);
        let processes = self.processes.expire(now, retention);
        Forgotten {
            processes: processes.into_iter().map(|p| p.key).collect(),
            flow_slots: flows.into_iter().map(|f| f.id).collect(),
        }
    }
}
