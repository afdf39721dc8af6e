//! Forwarded flows, as the drain reads them: what the tc programs counted per (interface,
//! direction, tuple) since the last drain, each flow known by its slot in the kernel's counter
//! array, and each new flow's NAT hops looked up, a bounded number per drain; a flow whose
//! chain stopped at an address no namespace was known to hold is asked about again a few times.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap, FxHashSet};

use trafficd_common::{
    forwarding::{ForwardKey, WireCount, EGRESS, INGRESS},
    Traffic,
};

use crate::{
    enrich::{conntrack::FlowTuple, containers::Owner, nat::Nat},
    kernel::{ForwardMoves, Forwarding},
    stats::{tuple_of, ForwardInfo, NO_HINT},
};

/// New flows whose NAT hops are looked up per drain, at most: each costs one or two
/// conntrack requests per hop, and a burst of new flows must not stretch the drain.
const LOOKUPS_PER_DRAIN: usize = 64;
/// Flows waiting for a lookup, at most; beyond this a new flow shows no hops.
const PENDING_AT_MOST: usize = 16_384;
/// An unsettled flow (see [`FlowOrigin::settled`](crate::enrich::nat::FlowOrigin)) is looked
/// up again this long after, this many times: a container's namespace gets its address a
/// moment after its first packets may be seen, and namespaces are rescanned every few seconds
/// (later on a loaded host).
const RETRY_AFTER: Duration = Duration::from_secs(2);
const RETRIES: u8 = 15;

struct FlowState {
    key: ForwardKey,
    info: Arc<ForwardInfo>,
    /// Lookups of its NAT hops so far.
    lookups: u8,
    /// Its place in the deltas of the drain that last saw it move.
    delta: u32,
    /// Its slot in the store, as last recorded: a hint the store checks.
    stored: u32,
}

pub struct ForwardedFlows {
    /// Every flow the kernel holds a counter slot for, by that slot. A flow let go while idle
    /// that moves again takes a new slot while the old one is still read for a while: `index`
    /// finds a key's newest slot.
    states: Vec<Option<FlowState>>,
    /// Fx: the keys are the kernel's.
    index: FxHashMap<ForwardKey, u32>,
    /// What the last take found, in the same buffers at every drain.
    moves: ForwardMoves,
    /// The slots of the flows of the last deltas, in their order, and their store hints.
    moved: Vec<u32>,
    hints: Vec<u32>,
    /// Flows looked up in the last drain that did not move in it.
    relooked: Vec<ForwardKey>,
    pending: VecDeque<ForwardKey>,
    /// Unsettled flows and when to look them up again, in that order (a constant delay).
    retries: VecDeque<(Instant, ForwardKey)>,
    nat: Nat,
    idle_drains: u32,
}

impl ForwardedFlows {
    pub fn new(conntrack_cache: usize, idle_drains: u32) -> ForwardedFlows {
        ForwardedFlows {
            states: Vec::new(),
            index: FxHashMap::default(),
            moves: ForwardMoves::default(),
            moved: Vec::new(),
            hints: Vec::new(),
            relooked: Vec::new(),
            pending: VecDeque::new(),
            retries: VecDeque::new(),
            nat: Nat::new(conntrack_cache),
            idle_drains: idle_drains.max(2),
        }
    }

    fn state(&self, key: &ForwardKey) -> Option<&FlowState> {
        let slot = *self.index.get(key)?;
        self.states.get(slot as usize)?.as_ref()
    }

    /// A new flow in `slot`. One that held another slot before (let go while idle, then moving
    /// again) keeps what was found about it; any other waits for its NAT lookup.
    fn adopt(&mut self, slot: u32, key: ForwardKey, names: &HashMap<u32, Arc<str>>) {
        let state = match self.state(&key) {
            Some(before) => FlowState {
                key,
                info: before.info.clone(),
                lookups: before.lookups,
                delta: 0,
                stored: before.stored,
            },
            None => {
                if self.pending.len() < PENDING_AT_MOST {
                    self.pending.push_back(key);
                }
                FlowState {
                    key,
                    info: Arc::new(describe(&key, names)),
                    lookups: 0,
                    delta: 0,
                    stored: NO_HINT,
                }
            }
        };
        let slot = slot as usize;
        if self.states.len() <= slot {
            self.states.resize_with(slot + 1, || None);
        }
        self.states[slot] = Some(state);
        self.index.insert(key, slot as u32);
    }

    /// The flow in `slot` is gone: the kernel handed the slot back.
    fn forget(&mut self, slot: u32) {
        let Some(state) = self.states.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        if self.index.get(&state.key) == Some(&slot) {
            self.index.remove(&state.key);
        }
    }

    /// The store's slots of the flows of the last [`deltas`](Self::deltas), in their order,
    /// for the first `len` deltas ([`NO_HINT`] past them: flows added after, such as arrivals).
    pub fn take_hints(&mut self, len: usize) -> Vec<u32> {
        let mut hints = std::mem::take(&mut self.hints);
        hints.resize(len, NO_HINT);
        hints
    }

    /// Keeps the slots the store gave the last deltas' flows (see [`take_hints`](Self::take_hints)).
    pub fn keep_hints(&mut self, hints: Vec<u32>) {
        for (&slot, &hint) in self.moved.iter().zip(&hints) {
            if let Some(Some(state)) = self.states.get_mut(slot as usize) {
                state.stored = hint;
            }
        }
        self.hints = hints;
    }

    /// What each flow moved since the last drain, into `deltas` (cleared first; the caller
    /// keeps it from one drain to the next, as it holds every moving flow). `names`: interface
    /// names by ifindex; `counts_segments(ifindex, direction)`: whether the device counts GSO
    /// segments.
    pub fn deltas(
        &mut self,
        forwarding: &mut Forwarding,
        names: &HashMap<u32, Arc<str>>,
        counts_segments: impl Fn(u32, u8) -> bool,
        owner_of: &mut dyn FnMut(&str) -> Arc<Owner>,
        deltas: &mut Vec<FlowDelta>,
    ) {
        deltas.clear();
        let mut moves = std::mem::take(&mut self.moves);
        forwarding.take(&mut moves, self.idle_drains);
        for &slot in &moves.freed {
            self.forget(slot);
        }
        for &slot in &moves.claimed {
            self.adopt(slot, forwarding.key(slot), names);
        }
        self.moved.clear();
        self.hints.clear();
        for &(slot, count) in &moves.moved {
            let Some(Some(state)) = self.states.get_mut(slot as usize) else {
                continue;
            };
            let key = state.key;
            let (bytes, packets) = measured(&count, counts_segments(key.ifindex, key.direction));
            // One whose container was known by id alone shows its name once the engine gave it.
            name_late(state, owner_of);
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
            state.delta = deltas.len() as u32;
            self.moved.push(slot);
            self.hints.push(state.stored);
            deltas.push((key, traffic, state.info.clone()));
        }
        self.moves = moves;
        // A flow looked up this drain shows its hops now; one that did not move this drain
        // (its place in the deltas is stale: checked by key) is described again in the store.
        self.relooked.clear();
        for key in self.look_up_new(owner_of) {
            let Some(state) = self.state(&key) else {
                continue;
            };
            match deltas.get_mut(state.delta as usize) {
                Some(delta) if delta.0 == key => delta.2 = state.info.clone(),
                _ => self.relooked.push(key),
            }
        }
    }

    /// The flows looked up in the last [`deltas`](Self::deltas) that did not move in it: their
    /// store slot hint, key and new description. A download that ended before its hops were
    /// all known (a container's namespace found a moment late) shows them all the same.
    pub fn relooked(&self) -> impl Iterator<Item = (u32, &ForwardKey, &Arc<ForwardInfo>)> {
        self.relooked
            .iter()
            .filter_map(|key| self.state(key))
            .map(|state| (state.stored, &state.key, &state.info))
    }

    /// The NAT hops of the oldest new flows, then of unsettled flows due again, a bounded
    /// number in all; returns the flows looked up.
    fn look_up_new(&mut self, owner_of: &mut dyn FnMut(&str) -> Arc<Owner>) -> Vec<ForwardKey> {
        let now = Instant::now();
        let mut done = Vec::new();
        while done.len() < LOOKUPS_PER_DRAIN {
            let key = match self.pending.pop_front() {
                Some(key) => key,
                None => match self.retries.front() {
                    Some((due, _)) if *due <= now => self.retries.pop_front().expect("front").1,
                    _ => break,
                },
            };
            if self.look_up(key, now, owner_of) {
                done.push(key);
            }
        }
        if !done.is_empty() && self.pending.is_empty() {
            self.nat.forget_vanished();
        }
        done
    }

    /// Looks up one flow's hops; false when the flow is gone.
    fn look_up(
        &mut self,
        key: ForwardKey,
        now: Instant,
        owner_of: &mut dyn FnMut(&str) -> Arc<Owner>,
    ) -> bool {
        let nat = &mut self.nat;
        let Some(slot) = self.index.get(&key) else {
            return false;
        };
        let Some(Some(state)) = self.states.get_mut(*slot as usize) else {
            return false;
        };
        let origin = nat.origin(&tuple_of(&key));
        state.lookups = state.lookups.saturating_add(1);
        if !origin.settled && state.lookups <= RETRIES && self.retries.len() < PENDING_AT_MOST {
            self.retries.push_back((now + RETRY_AFTER, key));
        }
        let mut info = (*state.info).clone();
        info.nat = origin.hops;
        info.owner = origin.container.as_deref().map(&mut *owner_of);
        info.container = origin.container;
        info.namespace = origin.namespace;
        state.info = Arc::new(info);
        true
    }
}

/// Bytes and packets in the measure the device counts in (`segments`: each GSO segment with
/// its headers).
fn measured(count: &WireCount, segments: bool) -> (u64, u64) {
    if segments {
        (count.wire_bytes, count.segments)
    } else {
        (count.bytes, count.packets)
    }
}

/// Asks again for the owner of a flow's container while the engines have not named it: the
/// directory answers from its cache, so this costs a lookup per moving flow until then.
fn name_late(state: &mut FlowState, owner_of: &mut dyn FnMut(&str) -> Arc<Owner>) {
    let info = &state.info;
    let (Some(owner), Some(container)) = (&info.owner, &info.container) else {
        return;
    };
    if !owner.awaits_names() {
        return;
    }
    let now = owner_of(container);
    if now != *owner {
        let mut renamed = (**info).clone();
        renamed.owner = Some(now);
        state.info = Arc::new(renamed);
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

/// One drain's delta of one forwarded flow, with its description.
pub type FlowDelta = (ForwardKey, Traffic, Arc<ForwardInfo>);

/// Bytes that one interface's ingress counted as local, and that were forwarded after all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub bytes: u64,
    pub packets: u64,
}

/// The ingress side of translated flows. A reply to a MASQUERADEd connection (or a packet to
/// a published port) arrives addressed to the host itself: the tc program on the interface
/// it arrives by runs before conntrack translates it back, so the routing lookup says local
/// and counts it so. The packet then leaves by another interface without a socket, counted
/// as forwarded there with the interface it came in by. For each such flow this gives the
/// flow as the arrival interface saw it (the conntrack tuple that is not the one it left
/// with), and the bytes to move from local to forwarded there. A packet bridged out of two
/// interfaces (docker0 and a container's veth) is counted once.
/// `recorded` is scratch space, kept by the caller from one drain to the next: at 100k
/// translated flows, a set built afresh every drain was most of the drain's page faults.
pub fn arrivals(
    deltas: &[FlowDelta],
    counted_on: &HashSet<u32>,
    recorded: &mut FxHashSet<(u32, FlowTuple)>,
) -> (Vec<FlowDelta>, HashMap<u32, Moved>) {
    let translated_arrival = |(key, _, info): &&FlowDelta| arrived_as_local(key, info, counted_on);
    if !deltas.iter().any(|d| translated_arrival(&d)) {
        return (Vec::new(), HashMap::new());
    }
    // The ingress flows the tc programs recorded themselves (the routing lookup saw them
    // forwarded): nothing to add for those.
    recorded.clear();
    recorded.extend(
        deltas
            .iter()
            .filter(|(key, _, _)| key.direction != EGRESS)
            .map(|(key, _, _)| (key.ifindex, tuple_of(key))),
    );
    let mut arrived: FxHashMap<(u32, FlowTuple), FlowDelta> = FxHashMap::default();
    for (key, traffic, info) in deltas.iter().filter(translated_arrival) {
        let Some((arrival, arrived_as)) = arrival_of(key, info) else {
            continue;
        };
        if recorded.contains(&(arrival.ifindex, arrived_as)) {
            continue;
        }
        let traffic = Traffic {
            rx_bytes: traffic.tx_bytes,
            rx_packets: traffic.tx_packets,
            ..Traffic::default()
        };
        let busier = |old: &Traffic| old.rx_bytes < traffic.rx_bytes;
        match arrived.entry((arrival.ifindex, arrived_as)) {
            Entry::Occupied(mut e) if busier(&e.get().1) => {
                e.get_mut().1 = traffic;
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(e) => {
                e.insert((arrival, traffic, Arc::new(arrival_info(info))));
            }
        }
    }
    let mut moved: HashMap<u32, Moved> = HashMap::new();
    for ((ifindex, _), (_, traffic, _)) in &arrived {
        let m = moved.entry(*ifindex).or_default();
        m.bytes += traffic.rx_bytes;
        m.packets += traffic.rx_packets;
    }
    (arrived.into_values().collect(), moved)
}

/// Whether the flow leaving by `key` was translated and came in by a counted interface, whose
/// ingress counted it as local (see [`arrivals`]).
pub fn arrived_as_local(key: &ForwardKey, info: &ForwardInfo, counted_on: &HashSet<u32>) -> bool {
    key.direction == EGRESS && !info.nat.is_empty() && counted_on.contains(&key.other_ifindex)
}

/// The flow a translated flow leaving by `key` arrived as, on the interface it came in by, and
/// its tuple there: the conntrack tuple of its first hop that is not the one it left with.
/// `None` when the flow left as neither of them.
pub fn arrival_of(key: &ForwardKey, info: &ForwardInfo) -> Option<(ForwardKey, FlowTuple)> {
    let hop = info.nat.first()?;
    let left_as = tuple_of(key);
    let arrived_as = if left_as == hop.original.inverted() {
        hop.reply
    } else if left_as == hop.reply.inverted() {
        hop.original
    } else {
        return None;
    };
    let arrival = key_of(key.other_ifindex, key.ifindex, &arrived_as, key.family);
    Some((arrival, arrived_as))
}

/// The description of an arrival derived from the flow described by `left`: seen from the
/// arrival interface, the interfaces trade places.
pub fn arrival_info(left: &ForwardInfo) -> ForwardInfo {
    ForwardInfo {
        interface: left
            .other_interface
            .clone()
            .unwrap_or_else(|| left.interface.clone()),
        other_interface: Some(left.interface.clone()),
        ..left.clone()
    }
}

fn key_of(ifindex: u32, other_ifindex: u32, tuple: &FlowTuple, family: u8) -> ForwardKey {
    let bytes = |ip: std::net::IpAddr| {
        let mut out = [0u8; 16];
        match ip {
            std::net::IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            std::net::IpAddr::V6(v6) => out = v6.octets(),
        }
        out
    };
    ForwardKey {
        ifindex,
        other_ifindex,
        src_addr: bytes(tuple.src.ip()),
        dst_addr: bytes(tuple.dst.ip()),
        src_port: tuple.src.port(),
        dst_port: tuple.dst.port(),
        family,
        protocol: tuple.protocol,
        direction: INGRESS,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::nat::NatHop;
    use trafficd_common::AF_INET;

    const UPLINK: u32 = 2;
    const BRIDGE: u32 = 3;
    const PORT: u32 = 4;

    fn tuple(src: &str, dst: &str) -> FlowTuple {
        FlowTuple {
            protocol: 6,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    /// The container's download as it leaves by `ifindex` after coming in by the uplink.
    fn leaving(ifindex: u32, bytes: u64) -> FlowDelta {
        let left_as = tuple("10.8.1.3:3129", "172.17.0.2:53312");
        let info = ForwardInfo {
            interface: Arc::from(format!("if{ifindex}")),
            other_interface: Some(Arc::from("uplink")),
            nat: vec![NatHop {
                original: tuple("172.17.0.2:53312", "10.8.1.3:3129"),
                reply: tuple("10.8.1.3:3129", "10.0.7.248:40142"),
                seen_in: Arc::from("host"),
            }],
            ..ForwardInfo::default()
        };
        let mut key = key_of(ifindex, UPLINK, &left_as, AF_INET);
        key.direction = EGRESS;
        let traffic = Traffic {
            tx_bytes: bytes,
            tx_packets: bytes / 1000,
            ..Traffic::default()
        };
        (key, traffic, Arc::new(info))
    }

    /// A flow let go while idle that moves again takes a new slot, and keeps the hops found
    /// for it; the old slot, handed back later, takes nothing with it.
    #[test]
    fn a_flow_back_in_a_new_slot_keeps_what_was_found() {
        let mut flows = ForwardedFlows::new(16, 2);
        let names = HashMap::new();
        let a = key_of(UPLINK, 0, &tuple("192.0.2.1:1", "198.51.100.1:80"), AF_INET);
        let c = key_of(UPLINK, 0, &tuple("192.0.2.3:3", "198.51.100.1:80"), AF_INET);
        flows.adopt(0, a, &names);
        assert_eq!(
            flows.pending.len(),
            1,
            "a new flow waits for its NAT lookup"
        );
        let mut found = (*flows.state(&a).unwrap().info).clone();
        found.container = Some("/docker/openvpn".into());
        flows.states[0].as_mut().unwrap().info = Arc::new(found);

        flows.adopt(5, a, &names);
        assert_eq!(flows.pending.len(), 1, "nothing new to look up");
        assert_eq!(flows.index[&a], 5);
        let info = &flows.state(&a).unwrap().info;
        assert_eq!(info.container.as_deref(), Some("/docker/openvpn"));

        flows.forget(0);
        assert_eq!(
            flows.index[&a], 5,
            "the old slot's hand-back leaves the new one"
        );
        flows.adopt(0, c, &names);
        assert_eq!(flows.state(&c).map(|s| s.key), Some(c));
        flows.forget(5);
        assert!(flows.state(&a).is_none());
        assert_eq!(flows.states.len(), 6);
    }

    /// Documentation addresses: no namespace of this host holds them, so every lookup ends
    /// unsettled, and the flow is asked about again until the retries run out.
    #[test]
    fn an_unsettled_flow_is_looked_up_again_a_bounded_number_of_times() {
        let mut flows = ForwardedFlows::new(16, 2);
        let key = key_of(
            UPLINK,
            0,
            &tuple("192.0.2.1:5000", "198.51.100.1:80"),
            AF_INET,
        );
        let names = HashMap::new();
        flows.adopt(0, key, &names);
        flows.pending.clear();
        flows.pending.push_back(key);
        let mut owner_of = |path: &str| -> Arc<Owner> { panic!("no container, yet {path}") };
        flows.look_up_new(&mut owner_of);
        assert_eq!(
            (flows.state(&key).unwrap().lookups, flows.retries.len()),
            (1, 1)
        );
        // Not due yet.
        flows.look_up_new(&mut owner_of);
        assert_eq!(flows.state(&key).unwrap().lookups, 1);
        for _ in 0..2 * RETRIES {
            if let Some((due, _)) = flows.retries.front_mut() {
                *due = Instant::now();
            }
            flows.look_up_new(&mut owner_of);
        }
        assert_eq!(flows.state(&key).unwrap().lookups, RETRIES + 1);
        assert!(flows.retries.is_empty());
        // A flow deleted while waiting is not looked up, and leaves the queue.
        flows.retries.push_back((Instant::now(), key));
        flows.forget(0);
        flows.look_up_new(&mut owner_of);
        assert!(flows.retries.is_empty());
    }

    #[test]
    fn a_masqueraded_reply_is_given_to_the_uplink_once() {
        // Bridged: out of docker0 and out of the container's veth, a few bytes apart.
        let deltas = [leaving(BRIDGE, 8_000_000), leaving(PORT, 8_000_014)];
        let counted: HashSet<u32> = [UPLINK, BRIDGE, PORT].into();
        let (arrived, moved) = arrivals(&deltas, &counted, &mut FxHashSet::default());
        assert_eq!(arrived.len(), 1);
        let (key, traffic, info) = &arrived[0];
        assert_eq!((key.ifindex, key.direction), (UPLINK, INGRESS));
        assert_eq!(tuple_of(key), tuple("10.8.1.3:3129", "10.0.7.248:40142"));
        assert_eq!((traffic.rx_bytes, traffic.tx_bytes), (8_000_014, 0));
        assert_eq!(&*info.interface, "uplink");
        assert_eq!(info.nat.len(), 1);
        assert_eq!(
            moved[&UPLINK],
            Moved {
                bytes: 8_000_014,
                packets: 8_000
            }
        );
    }

    #[test]
    fn flows_the_arrival_interface_recorded_or_did_not_count_are_left_alone() {
        let deltas = [leaving(BRIDGE, 1000)];
        // The uplink is not counted: nothing to move there.
        let (arrived, moved) = arrivals(&deltas, &[BRIDGE].into(), &mut FxHashSet::default());
        assert!(arrived.is_empty() && moved.is_empty());
        // The uplink recorded the arrival itself (routed, not addressed to the host).
        let mut recorded = deltas[0].clone();
        recorded.0 = key_of(
            UPLINK,
            BRIDGE,
            &tuple("10.8.1.3:3129", "10.0.7.248:40142"),
            AF_INET,
        );
        let (arrived, _) = arrivals(
            &[deltas[0].clone(), recorded],
            &[UPLINK, BRIDGE].into(),
            &mut FxHashSet::default(),
        );
        assert!(arrived.is_empty());
        // Untranslated: no hop, no other tuple to arrive as.
        let mut plain = leaving(BRIDGE, 1000);
        Arc::make_mut(&mut plain.2).nat.clear();
        let (arrived, _) = arrivals(
            &[plain],
            &[UPLINK, BRIDGE].into(),
            &mut FxHashSet::default(),
        );
        assert!(arrived.is_empty());
    }
}
