//! Forwarded flows, as the drain reads them: deltas of what the tc programs counted per
//! (interface, direction, tuple), idle flows deleted so the map keeps room, and each new
//! flow's NAT hops looked up once, a bounded number per drain.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use trafficd_common::{
    forwarding::{ForwardKey, WireCount, EGRESS},
    Traffic,
};

use crate::{
    enrich::nat::Nat,
    kernel::Forwarding,
    stats::{tuple_of, ForwardInfo},
};

/// New flows whose NAT hops are looked up per drain, at most: each costs one or two
/// conntrack requests per hop, and a burst of new flows must not stretch the drain.
const LOOKUPS_PER_DRAIN: usize = 64;
/// Flows waiting for a lookup, at most; beyond this a new flow shows no hops.
const PENDING_AT_MOST: usize = 16_384;

struct FlowState {
    last: WireCount,
    idle: u32,
    info: Arc<ForwardInfo>,
}

pub struct ForwardedFlows {
    flows: HashMap<ForwardKey, FlowState>,
    pending: VecDeque<ForwardKey>,
    nat: Nat,
    idle_drains: u32,
}

impl ForwardedFlows {
    pub fn new(conntrack_cache: usize, idle_drains: u32) -> ForwardedFlows {
        ForwardedFlows {
            flows: HashMap::new(),
            pending: VecDeque::new(),
            nat: Nat::new(conntrack_cache),
            idle_drains: idle_drains.max(2),
        }
    }

    /// What each flow moved since the last drain. `names`: interface names by ifindex;
    /// `counts_segments(ifindex, direction)`: whether the device counts GSO segments.
    pub fn deltas(
        &mut self,
        forwarding: &mut Forwarding,
        names: &HashMap<u32, Arc<str>>,
        counts_segments: impl Fn(u32, u8) -> bool,
    ) -> Vec<(ForwardKey, Traffic, Arc<ForwardInfo>)> {
        let mut deltas = Vec::new();
        let mut idle = Vec::new();
        for (key, count) in forwarding.forwarded() {
            let state = self.flows.entry(key).or_insert_with(|| {
                if self.pending.len() < PENDING_AT_MOST {
                    self.pending.push_back(key);
                }
                FlowState {
                    last: WireCount::default(),
                    idle: 0,
                    info: Arc::new(describe(&key, names)),
                }
            });
            let (bytes, packets) = if counts_segments(key.ifindex, key.direction) {
                (
                    count.wire_bytes.wrapping_sub(state.last.wire_bytes),
                    count.segments.wrapping_sub(state.last.segments),
                )
            } else {
                (
                    count.bytes.wrapping_sub(state.last.bytes),
                    count.packets.wrapping_sub(state.last.packets),
                )
            };
            state.last = count;
            if packets == 0 {
                state.idle += 1;
                if state.idle >= self.idle_drains {
                    idle.push(key);
                }
                continue;
            }
            state.idle = 0;
            let traffic = if key.direction == EGRESS {
                Traffic {
                    tx_bytes: bytes,
                    tx_packets: packets,
                    ..Traffic::default()
                }
            } else {
                Traffic {
                    rx_bytes: bytes,
                    rx_packets: packets,
                    ..Traffic::default()
                }
            };
            deltas.push((key, traffic, state.info.clone()));
        }
        forwarding.forget(&idle);
        for key in &idle {
            self.flows.remove(key);
        }
        self.look_up_new();
        // A flow looked up this drain shows its hops now.
        for (key, _, info) in &mut deltas {
            if let Some(state) = self.flows.get(key) {
                *info = state.info.clone();
            }
        }
        deltas
    }

    /// The NAT hops of the oldest new flows, a bounded number.
    fn look_up_new(&mut self) {
        let mut done = 0;
        while done < LOOKUPS_PER_DRAIN {
            let Some(key) = self.pending.pop_front() else {
                break;
            };
            let Some(state) = self.flows.get_mut(&key) else {
                continue;
            };
            let origin = self.nat.origin(&tuple_of(&key));
            let mut info = (*state.info).clone();
            info.nat = origin.hops;
            info.container = origin.container;
            info.namespace = origin.namespace;
            state.info = Arc::new(info);
            done += 1;
        }
        if done > 0 && self.pending.is_empty() {
            self.nat.forget_vanished();
        }
    }
}

fn describe(key: &ForwardKey, names: &HashMap<u32, Arc<str>>) -> ForwardInfo {
    ForwardInfo {
        interface: names
            .get(&key.ifindex)
            .cloned()
            .unwrap_or_else(|| Arc::from(format!("if{}", key.ifindex))),
        other_interface: (key.other_ifindex != 0)
            .then(|| names.get(&key.other_ifindex).cloned())
            .flatten(),
        ..ForwardInfo::default()
    }
}
