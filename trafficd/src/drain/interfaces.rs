//! The interface phase of the drain: follow interfaces as they appear and vanish, keep the
//! tc programs attached to the ones asked for, and turn the kernel's counters of each link
//! and the tc programs' split of them into deltas for the store. Forwarded flows are
//! `forwarded`'s.
//!
//! The work is bounded per drain: one link dump, one read of the per-interface kinds, one
//! read of the forwarded flows, and a bounded number of conntrack lookups.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};
use trafficd_common::{
    forwarding::{InterfaceKindKey, WireCount, EGRESS, INGRESS},
    Traffic,
};

use super::forwarded::ForwardedFlows;
use crate::{
    enrich::interfaces::{InterfaceSample, Interfaces, LinkEvent, LinkEvents},
    error::Result,
    kernel::Forwarding,
    stats::{InterfaceInfo, PartKey, Store},
};

/// What `trafficd run` asked of the interface phase.
#[derive(Clone, Debug)]
pub struct InterfaceConfig {
    /// `--interfaces`; empty: every interface that is up, except loopback.
    pub names: Vec<String>,
    /// `--interface-capacity`, bytes per second by name.
    pub capacities: Vec<(String, u64)>,
    /// `--conntrack-cache`.
    pub conntrack_cache: usize,
    /// Forwarded flows idle this many drains are deleted from the kernel map.
    pub idle_drains: u32,
}

/// Per interface and direction, what the device counted and what the tc programs counted in
/// both measures since attach: a segmenting NIC counts each GSO segment with its headers,
/// a veth counts the buffer. The closer measure is used for the split.
#[derive(Clone, Copy, Debug, Default)]
struct Measures {
    device: u64,
    buffers: u64,
    wire: u64,
}

impl Measures {
    fn counts_segments(&self) -> bool {
        self.wire.abs_diff(self.device) < self.buffers.abs_diff(self.device)
    }
}

pub struct InterfacePhase {
    interfaces: Interfaces,
    events: Option<LinkEvents>,
    forwarding: Option<Forwarding>,
    flows: ForwardedFlows,
    wanted: Vec<String>,
    last_counters: HashMap<u32, InterfaceSample>,
    last_kinds: HashMap<InterfaceKindKey, WireCount>,
    measures: HashMap<(u32, u8), Measures>,
    /// Interfaces whose attach failed, each said once.
    said_failed: HashSet<u32>,
    checked_names: bool,
}

impl InterfacePhase {
    /// `forwarding`: the tc programs, `None` when they did not load (the interfaces then show
    /// their counters without a split).
    pub fn new(config: InterfaceConfig, forwarding: Option<Forwarding>) -> Result<InterfacePhase> {
        let interfaces = Interfaces::new(config.capacities)?;
        let events = LinkEvents::subscribe()
            .map_err(|err| warn!("{err}; new interfaces are found at the next drain's link dump"))
            .ok();
        Ok(InterfacePhase {
            interfaces,
            events,
            forwarding,
            flows: ForwardedFlows::new(config.conntrack_cache, config.idle_drains),
            wanted: config.names,
            last_counters: HashMap::new(),
            last_kinds: HashMap::new(),
            measures: HashMap::new(),
            said_failed: HashSet::new(),
            checked_names: false,
        })
    }

    /// One drain: links, counters, the split, forwarded flows, into the store.
    pub fn drain(&mut self, store: &RwLock<Store>, at: Instant, length: Duration) {
        self.follow_link_events();
        let samples = match self.interfaces.poll() {
            Ok(samples) => samples,
            Err(err) => {
                warn!("{err}; interface counters are skipped this drain");
                return;
            }
        };
        self.check_names(&samples);
        self.keep_attached(&samples);
        let attached: HashSet<u32> = self.attached_ifindexes();
        let counters = self.counter_deltas(&samples, &attached);
        let parts = self.part_deltas();
        let names: HashMap<u32, Arc<str>> = samples
            .iter()
            .map(|s| (s.ifindex, Arc::from(s.name.as_str())))
            .collect();
        let measure = |ifindex, direction| {
            self.measures
                .get(&(ifindex, direction))
                .is_some_and(Measures::counts_segments)
        };
        let (flows, losses) = match &mut self.forwarding {
            Some(forwarding) => (
                self.flows.deltas(forwarding, &names, measure),
                forwarding.losses(),
            ),
            None => (Vec::new(), Default::default()),
        };
        let mut store = store.write().unwrap_or_else(|e| e.into_inner());
        let links = &mut store.interfaces;
        links.interfaces.record(at, length, counters);
        links.parts.record(at, length, parts);
        links.forwarded.record(at, length, flows);
        links.losses = losses;
        links.counting = self.forwarding.is_some();
    }

    fn follow_link_events(&mut self) {
        let Some(events) = &mut self.events else {
            return;
        };
        match events.pending() {
            Ok(events) => {
                for event in events {
                    match event {
                        LinkEvent::New { ifindex, .. } => self.interfaces.refresh(ifindex),
                        LinkEvent::Gone { ifindex, name } => {
                            if self.last_counters.contains_key(&ifindex) {
                                info!("interface {name} (ifindex {ifindex}) vanished: let go");
                            }
                        }
                    }
                }
            }
            // Notifications were dropped: the link dump below says what exists all the same.
            Err(err) => debug!("{err}"),
        }
    }

    /// Says once which `--interfaces` names do not exist (yet): the others are counted.
    fn check_names(&mut self, samples: &[InterfaceSample]) {
        if std::mem::replace(&mut self.checked_names, true) {
            return;
        }
        for name in &self.wanted {
            if !samples.iter().any(|s| &s.name == name) {
                warn!(
                    "interface {name} given to --interfaces does not exist; counting the others, \
                     and {name} once it appears (check `ip link show`)"
                );
            }
        }
    }

    fn is_wanted(&self, sample: &InterfaceSample) -> bool {
        if self.wanted.is_empty() {
            sample.up && sample.name != "lo"
        } else {
            self.wanted.contains(&sample.name)
        }
    }

    /// Attaches to wanted interfaces not yet counted; lets go of vanished or unwanted ones.
    fn keep_attached(&mut self, samples: &[InterfaceSample]) {
        let wanted: Vec<&InterfaceSample> = samples.iter().filter(|s| self.is_wanted(s)).collect();
        let Some(forwarding) = &mut self.forwarding else {
            return;
        };
        let attached = forwarding.attached();
        for (ifindex, name) in &attached {
            if !wanted
                .iter()
                .any(|s| s.ifindex == *ifindex && &s.name == name)
            {
                forwarding.detach(*ifindex);
                // The kernel keeps its kinds counts: `last_kinds` stays, so an interface
                // attached again counts on from them.
                self.measures.retain(|(i, _), _| i != ifindex);
            }
        }
        for sample in wanted {
            if attached.iter().any(|(i, _)| *i == sample.ifindex) {
                continue;
            }
            let Some(header_len) = sample.link_header_len else {
                if self.said_failed.insert(sample.ifindex) {
                    warn!(
                        "interface {} has a link type the tc programs do not parse; its \
                         forwarded traffic is not counted",
                        sample.name
                    );
                }
                continue;
            };
            match forwarding.attach(&sample.name, header_len) {
                Ok(()) => {
                    debug!(interface = %sample.name, "counting forwarded traffic");
                    // The split starts now: the device's counters too.
                    self.last_counters.insert(sample.ifindex, sample.clone());
                }
                Err(err) => {
                    if self.said_failed.insert(sample.ifindex) {
                        warn!("{err}");
                    }
                }
            }
        }
    }

    fn attached_ifindexes(&self) -> HashSet<u32> {
        self.forwarding
            .as_ref()
            .map(|f| f.attached().into_iter().map(|(i, _)| i).collect())
            .unwrap_or_default()
    }

    /// Each interface's counters since the last poll. An interface seen for the first time
    /// (or just attached) starts from this poll.
    fn counter_deltas(
        &mut self,
        samples: &[InterfaceSample],
        attached: &HashSet<u32>,
    ) -> Vec<(u32, Traffic, InterfaceInfo)> {
        let mut deltas = Vec::with_capacity(samples.len());
        let mut seen = HashMap::with_capacity(samples.len());
        for sample in samples {
            let delta = match self.last_counters.get(&sample.ifindex) {
                // A recreated interface with the same index restarts its counters.
                Some(last) if last.name == sample.name => Traffic {
                    tx_bytes: sample.tx_bytes.saturating_sub(last.tx_bytes),
                    tx_packets: sample.tx_packets.saturating_sub(last.tx_packets),
                    rx_bytes: sample.rx_bytes.saturating_sub(last.rx_bytes),
                    rx_packets: sample.rx_packets.saturating_sub(last.rx_packets),
                },
                _ => Traffic::default(),
            };
            for (direction, bytes) in [(EGRESS, delta.tx_bytes), (INGRESS, delta.rx_bytes)] {
                self.measures
                    .entry((sample.ifindex, direction))
                    .or_default()
                    .device += bytes;
            }
            let info = InterfaceInfo {
                name: Arc::from(sample.name.as_str()),
                up: sample.up,
                capacity: sample.capacity_bytes_per_sec,
                counted: attached.contains(&sample.ifindex),
            };
            deltas.push((sample.ifindex, delta, info));
            seen.insert(sample.ifindex, sample.clone());
        }
        self.last_counters = seen;
        deltas
    }

    /// What the tc programs counted per interface and kind since the last drain, in the
    /// measure that matches how the device counts.
    fn part_deltas(&mut self) -> Vec<(PartKey, Traffic, ())> {
        let Some(forwarding) = &self.forwarding else {
            return Vec::new();
        };
        let mut by_part: HashMap<PartKey, Traffic> = HashMap::new();
        for (key, count) in forwarding.kinds() {
            let last = self.last_kinds.insert(key, count).unwrap_or_default();
            let delta = WireCount {
                bytes: count.bytes.wrapping_sub(last.bytes),
                packets: count.packets.wrapping_sub(last.packets),
                wire_bytes: count.wire_bytes.wrapping_sub(last.wire_bytes),
                segments: count.segments.wrapping_sub(last.segments),
            };
            let measures = self
                .measures
                .entry((key.ifindex, key.direction))
                .or_default();
            measures.buffers += delta.bytes;
            measures.wire += delta.wire_bytes;
            let (bytes, packets) = if measures.counts_segments() {
                (delta.wire_bytes, delta.segments)
            } else {
                (delta.bytes, delta.packets)
            };
            let part = by_part
                .entry(PartKey {
                    ifindex: key.ifindex,
                    kind: key.kind,
                })
                .or_default();
            if key.direction == EGRESS {
                part.tx_bytes += bytes;
                part.tx_packets += packets;
            } else {
                part.rx_bytes += bytes;
                part.rx_packets += packets;
            }
        }
        by_part.into_iter().map(|(k, t)| (k, t, ())).collect()
    }
}
