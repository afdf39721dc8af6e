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

use rustc_hash::FxHashSet;
use tracing::{debug, info, warn};
use trafficd_common::{
    forwarding::{kind, WireCount, EGRESS, INGRESS},
    Traffic,
};

use super::forwarded::{
    arrival_info, arrival_of, arrivals, arrived_as_local, FlowDelta, ForwardedFlows, Moved,
};
use crate::{
    enrich::{
        conntrack::FlowTuple,
        containers::Owner,
        interfaces::{InterfaceSample, Interfaces, LinkEvent, LinkEvents},
    },
    error::Result,
    kernel::{Forwarding, KindKey},
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
    /// Buffers kept from one drain to the next: at 100k forwarded flows, fresh ones were
    /// megabytes of page faults every drain.
    flow_deltas: Vec<FlowDelta>,
    recorded: FxHashSet<(u32, FlowTuple)>,
    wanted: Vec<String>,
    last_counters: HashMap<u32, InterfaceSample>,
    last_kinds: HashMap<KindKey, WireCount>,
    measures: HashMap<(u32, u8), Measures>,
    /// Interfaces whose attach failed, each said once.
    said_failed: HashSet<u32>,
    /// Attached at this drain: their split starts at the next one.
    just_attached: HashSet<u32>,
    /// Attached at the last drain: this drain's counters and kinds are their starting
    /// point, read a few microseconds apart, so that the parts and the device's counters
    /// begin together.
    starting: HashSet<u32>,
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
            flow_deltas: Vec::new(),
            recorded: FxHashSet::default(),
            wanted: config.names,
            last_counters: HashMap::new(),
            last_kinds: HashMap::new(),
            measures: HashMap::new(),
            said_failed: HashSet::new(),
            just_attached: HashSet::new(),
            starting: HashSet::new(),
            checked_names: false,
        })
    }

    /// One drain: links, counters, the split, forwarded flows, into the store.
    /// `owner_of`: who owns the cgroup at a path, for the container of a forwarded flow.
    pub fn drain(
        &mut self,
        store: &RwLock<Store>,
        at: Instant,
        length: Duration,
        owner_of: &mut dyn FnMut(&str) -> Arc<Owner>,
    ) {
        self.follow_link_events();
        let mut samples = match self.interfaces.poll() {
            Ok(samples) => samples,
            Err(err) => {
                warn!("{err}; interface counters are skipped this drain");
                return;
            }
        };
        self.check_names(&samples);
        if self.keep_attached(&samples) {
            // An attach takes a while, and the device's counters must be read right before
            // the tc programs' split below: a packet counted by one and not the other would
            // show as unattributed for a drain.
            match self.interfaces.poll() {
                Ok(again) => samples = again,
                Err(err) => debug!("{err}; the counters read before the attach are used"),
            }
        }
        let attached: HashSet<u32> = self.attached_ifindexes();
        let counters = self.counter_deltas(&samples, &attached);
        let mut parts = self.part_deltas();
        self.starting = std::mem::take(&mut self.just_attached);
        let names: HashMap<u32, Arc<str>> = samples
            .iter()
            .map(|s| (s.ifindex, Arc::from(s.name.as_str())))
            .collect();
        let measure = |ifindex, direction| {
            self.measures
                .get(&(ifindex, direction))
                .is_some_and(Measures::counts_segments)
        };
        let mut flows = std::mem::take(&mut self.flow_deltas);
        flows.clear();
        let losses = match &mut self.forwarding {
            Some(forwarding) => {
                self.flows
                    .deltas(forwarding, &names, measure, owner_of, &mut flows);
                forwarding.losses()
            }
            None => Default::default(),
        };
        let (arrived, moved) = arrivals(&flows, &attached, &mut self.recorded);
        flows.extend(arrived);
        move_to_forwarded(&mut parts, &moved);
        let mut store = store.write().unwrap_or_else(|e| e.into_inner());
        let links = &mut store.interfaces;
        links.interfaces.record(at, length, counters);
        links.parts.record(
            at,
            length,
            parts.into_iter().map(|(k, t)| (k, t, ())).collect(),
        );
        let mut hints = self.flows.take_hints(flows.len());
        links
            .forwarded
            .record_checked(at, length, &mut flows, &mut hints);
        self.flows.keep_hints(hints);
        // Hops found after a flow went quiet: for the flow, and for the arrival derived from
        // it (see `arrivals`), which only a moving flow would otherwise refresh.
        for (hint, key, info) in self.flows.relooked() {
            links.forwarded.describe_checked(hint, key, info);
            if !arrived_as_local(key, info, &attached) {
                continue;
            }
            if let Some((arrival, _)) = arrival_of(key, info) {
                links
                    .forwarded
                    .describe(&arrival, &Arc::new(arrival_info(info)));
            }
        }
        self.flow_deltas = flows;
        links.losses = losses;
        links.counting = self.forwarding.is_some();
    }

    fn follow_link_events(&mut self) {
        let Some(events) = &mut self.events else {
            self.interfaces.reread_links();
            return;
        };
        match events.pending() {
            Ok(events) => {
                for event in events {
                    match event {
                        LinkEvent::New { ifindex, link, .. } => {
                            self.interfaces.link_changed(ifindex, link.as_ref())
                        }
                        LinkEvent::Gone { ifindex, name } => {
                            self.interfaces.link_gone(ifindex);
                            // A bridge port's removal is announced twice: said once.
                            if self.last_counters.remove(&ifindex).is_some() {
                                info!("interface {name} (ifindex {ifindex}) vanished: let go");
                            }
                        }
                    }
                }
            }
            // Notifications were dropped: the poll below reads the link table whole.
            Err(err) => {
                debug!("{err}");
                self.interfaces.reread_links();
            }
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
            // Administratively up, not operationally: docker0 loses its carrier with its last
            // container and must stay counted for the next one's first packets.
            sample.admin_up && sample.name != "lo"
        } else {
            self.wanted.contains(&sample.name)
        }
    }

    /// Attaches to wanted interfaces not yet counted; lets go of vanished or unwanted ones.
    /// True when it attached or detached any.
    fn keep_attached(&mut self, samples: &[InterfaceSample]) -> bool {
        let wanted: Vec<&InterfaceSample> = samples.iter().filter(|s| self.is_wanted(s)).collect();
        let Some(forwarding) = &mut self.forwarding else {
            return false;
        };
        let mut changed = false;
        let attached = forwarding.attached();
        for (ifindex, name) in &attached {
            if !wanted
                .iter()
                .any(|s| s.ifindex == *ifindex && &s.name == name)
            {
                forwarding.detach(*ifindex);
                changed = true;
                // Its kinds counts are deleted with it: an interface attached again counts
                // from zero.
                self.measures.retain(|(i, _), _| i != ifindex);
                self.last_kinds.retain(|k, _| k.ifindex != *ifindex);
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
                    self.just_attached.insert(sample.ifindex);
                    changed = true;
                }
                Err(err) => {
                    if self.said_failed.insert(sample.ifindex) {
                        warn!("{err}");
                    }
                }
            }
        }
        changed
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
                _ if self.starting.contains(&sample.ifindex) => Traffic::default(),
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
                // Split from the drain after its starting point on.
                counted: attached.contains(&sample.ifindex)
                    && !self.starting.contains(&sample.ifindex)
                    && !self.just_attached.contains(&sample.ifindex),
            };
            deltas.push((sample.ifindex, delta, info));
            seen.insert(sample.ifindex, sample.clone());
        }
        self.last_counters = seen;
        deltas
    }

    /// What the tc programs counted per interface and kind since the last drain, in the
    /// measure that matches how the device counts.
    fn part_deltas(&mut self) -> HashMap<PartKey, Traffic> {
        let Some(forwarding) = &self.forwarding else {
            return HashMap::new();
        };
        let mut by_part: HashMap<PartKey, Traffic> = HashMap::new();
        for (key, count) in forwarding.kinds() {
            let last = self.last_kinds.insert(key, count).unwrap_or_default();
            // Counted between the attach and now, or between the starting point's two
            // reads: before the device's counters start, so not in the split either.
            if self.starting.contains(&key.ifindex) || self.just_attached.contains(&key.ifindex) {
                continue;
            }
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
        by_part
    }
}

/// Moves what arrived addressed to the host but was forwarded (see [`arrivals`]) from the
/// arrival interface's local part to its forwarded part, in the receive direction.
fn move_to_forwarded(parts: &mut HashMap<PartKey, Traffic>, moved: &HashMap<u32, Moved>) {
    for (&ifindex, m) in moved {
        let part = |kind| PartKey { ifindex, kind };
        let local = parts.entry(part(kind::LOCAL)).or_default();
        // Within one drain the two sides may be read a packet apart: never below zero.
        let bytes = m.bytes.min(local.rx_bytes);
        let packets = m.packets.min(local.rx_packets);
        local.rx_bytes -= bytes;
        local.rx_packets -= packets;
        let forwarded = parts.entry(part(kind::FORWARDED)).or_default();
        forwarded.rx_bytes += bytes;
        forwarded.rx_packets += packets;
    }
}
