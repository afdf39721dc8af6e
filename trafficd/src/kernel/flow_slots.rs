//! The flow counters, read through shared memory.
//!
//! The kernel programs count each flow in a slot of FLOW_COUNTERS, an array the daemon maps
//! into its own memory: a drain reads its flows with plain loads, where a syscall-based read of
//! a hash map costs a syscall per entry. Each counter is taken
//! with an atomic swap to 0, so the kernel's atomic adds are never lost and no per-flow "already
//! read" state is kept here.
//!
//! A slot's life: never used (at or past FRESH_FLOW_SLOTS' count) or free (in FREE_FLOW_SLOTS)
//! -> claimed by a program for a new flow (indexed in FLOWS, `claimed` set) -> retired by the
//! daemon (index deleted, so new packets of the flow claim a new slot; bytes still in flight
//! are read at the next drains) -> zeroed and handed back to FREE_FLOW_SLOTS two drains later,
//! when no program can still hold its number. Programs use up never-used slots first, so the
//! slots ever used are a prefix of the array, and the daemon maps and reads only that prefix:
//! memory the flows never needed is neither read nor resident in the daemon.

use std::{collections::VecDeque, io, sync::Arc};

use aya::{
    maps::{Array, HashMap, IterableMap, MapData, Queue},
    programs::ProgramFd,
};
use rustc_hash::FxHashMap;
use trafficd_common::{hand_back::FLOW_SLOTS, FlowKey, FlowSlot, Traffic};

use super::{
    batch,
    control::Control,
    slots::{FreeQueue, Mapping, SharedArray, SlotRef},
};

/// Drains between retiring a slot and reusing it.
const RETIRED_DRAINS: u32 = 2;
/// Slots handed back per drain at most: a socket with 100k flows closing would otherwise stall
/// one drain. The rest wait for the next drains. Through the hand-back program a slot costs
/// about 0.1 us; one syscall each, when the program is not loaded, about 4 us.
pub(super) const HAND_BACKS_PER_DRAIN: usize = 16_384;
/// Flows unindexed per drain at most: the kernel deletes an index entry in about 0.7 us here,
/// and a process with 200k flows exiting stalled one drain for 150 ms. The rest stay indexed,
/// counting as before, until the next drains.
pub(super) const RETIRES_PER_DRAIN: usize = 16_384;
/// Slots mapped at start (96 KiB): a quiet host's flows. The mapping grows with the slots used.
const FIRST_MAPPED_SLOTS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Counting; `idle` drains in a row without a byte.
    Live {
        idle: u32,
    },
    /// Counting, and queued to be unindexed.
    Retiring,
    /// Unindexed at drain `at`; still read until it is handed back.
    Retired {
        at: u32,
    },
}

/// The flows that moved in one drain: what each moved, the slot it was read from and its
/// socket, the sums by socket, and the slots that hold a new flow since the last drain. Keys
/// are read from the shared memory when asked, not copied: at 100k flows a copy was 11 MB, and
/// a drain needs the keys of new flows only. Kept from drain to drain: fresh pages every
/// interval cost the drain more than filling them.
#[derive(Default)]
pub struct MovedFlows {
    pub traffic: Vec<Traffic>,
    pub slots: Vec<u32>,
    /// Per flow, its place in `by_socket`.
    pub sockets: Vec<u32>,
    /// What the flows of each (socket cookie, cgroup id) moved, summed while their counters
    /// were at hand.
    pub by_socket: Vec<((u64, u64), Traffic)>,
    pub claimed: Vec<u32>,
    socket_index: FxHashMap<(u64, u64), u32>,
    counters: Option<Arc<Mapping<FlowSlot>>>,
}

impl MovedFlows {
    fn clear(&mut self) {
        self.traffic.clear();
        self.slots.clear();
        self.sockets.clear();
        self.by_socket.clear();
        self.claimed.clear();
        self.socket_index.clear();
    }

    fn push(&mut self, slot: u32, socket: (u64, u64), traffic: Traffic) {
        // A socket's flows are often next to each other.
        let index = match self.by_socket.last() {
            Some((last, _)) if *last == socket => self.by_socket.len() - 1,
            _ => {
                let next = self.by_socket.len() as u32;
                let index = *self.socket_index.entry(socket).or_insert(next);
                if index == next {
                    self.by_socket.push((socket, Traffic::default()));
                }
                index as usize
            }
        };
        let sum = &mut self.by_socket[index].1;
        *sum = sum.add(&traffic);
        self.traffic.push(traffic);
        self.slots.push(slot);
        self.sockets.push(index as u32);
    }

    /// The key of the `i`th flow. A slot's key does not change until the daemon hands the slot
    /// back, which it never does for a slot that moved in this drain.
    pub fn key(&self, i: usize) -> FlowKey {
        match &self.counters {
            Some(counters) => counters.slot(self.slots[i] as usize).key(),
            None => unreachable!("flow {i} moved before any counters were read"),
        }
    }

    /// Each flow that moved, with what it moved.
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, &Traffic)> {
        self.traffic
            .iter()
            .enumerate()
            .map(|(i, traffic)| (self.key(i), traffic))
    }
}

pub struct FlowSlots {
    index: HashMap<MapData, FlowKey, u32>,
    free: FreeQueue,
    fresh: Array<MapData, u64>,
    counters: SharedArray<FlowSlot>,
    states: Vec<State>,
    /// Slots to unindex, oldest first: at most [`RETIRES_PER_DRAIN`] a drain.
    retiring: VecDeque<u32>,
    drains: u64,
    /// Live slots at the last drain.
    live: usize,
}

impl FlowSlots {
    /// Takes over the maps of the flow counters, before any slot was handed back.
    pub fn new(
        index: HashMap<MapData, FlowKey, u32>,
        free: Queue<MapData, u32>,
        hand_back: Option<ProgramFd>,
        fresh: Array<MapData, u64>,
        counters_map: MapData,
        capacity: u32,
    ) -> io::Result<FlowSlots> {
        let counters =
            SharedArray::new(counters_map, FIRST_MAPPED_SLOTS, capacity, "flow counters")?;
        Ok(FlowSlots {
            index,
            free: FreeQueue::new(free, hand_back, FLOW_SLOTS, "flow slots"),
            fresh,
            counters,
            states: vec![State::Free; capacity as usize],
            retiring: VecDeque::new(),
            drains: 0,
            live: 0,
        })
    }

    /// Every flow that moved since the last call, with what it moved, and the slot each one was
    /// read from, into `moved` (emptied first). Also hands back the slots retired long enough
    /// ago.
    pub fn take(&mut self, moved: &mut MovedFlows) {
        self.drains += 1;
        moved.clear();
        let mut reusable = Vec::new();
        let mut live = 0;
        let used = self.counters.cover_handed_out(&self.fresh);
        let counters = self.counters.mapping().clone();
        moved.counters = Some(counters.clone());
        // At most every slot in use moves: room for that, and no more (a doubling would leave
        // megabytes unused at 100k flows). Not populated: how many move is known only after
        // the loop, and at 2M flows of which a tenth moved, populating the room for all of
        // them made 61 MB more resident.
        moved.traffic.reserve_exact(used);
        moved.slots.reserve_exact(used);
        moved.sockets.reserve_exact(used);
        let drain = self.drain_number();
        for (slot, state) in self.states[..used].iter_mut().enumerate() {
            let counters = counters.slot(slot);
            if *state == State::Free {
                if !counters.claimed() {
                    continue;
                }
                *state = State::Live { idle: 0 };
                moved.claimed.push(slot as u32);
            }
            let traffic = counters.take();
            let moving = !traffic.is_zero();
            if moving {
                moved.push(slot as u32, counters.socket(), traffic);
            }
            if matches!(state, State::Live { .. } | State::Retiring) {
                live += 1;
            }
            match state {
                State::Live { idle } if traffic.is_zero() => *idle = idle.saturating_add(1),
                State::Live { idle } => *idle = 0,
                // A slot read in this drain keeps its key until the next: `moved` names it.
                State::Retired { at }
                    if drain.wrapping_sub(*at) >= RETIRED_DRAINS
                        && !moving
                        && reusable.len() < HAND_BACKS_PER_DRAIN =>
                {
                    reusable.push(slot as u32)
                }
                _ => {}
            }
        }
        self.hand_back(&reusable);
        self.live = live;
    }

    /// Flows counting at the last [`take`](Self::take).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Queues the flows idle for at least `drains` drains to be unindexed.
    pub fn retire_idle(&mut self, drains: u32) {
        let slots = self.idle_slots(drains, |_| true);
        self.queue_retirement(&slots);
    }

    /// Queues the flows of sockets `closed` that did not move at the last drain to be unindexed.
    pub fn retire_sockets(&mut self, closed: &impl Fn(u64) -> bool) {
        let slots = self.idle_slots(1, closed);
        self.queue_retirement(&slots);
    }

    /// Queues `slots` to be unindexed by [`retire_queued`](Self::retire_queued). A queued flow
    /// that moves again before its turn is unindexed all the same: its next packets take a new
    /// slot, and the old one is read until it is handed back, so nothing is lost.
    fn queue_retirement(&mut self, slots: &[u32]) {
        for &slot in slots {
            self.states[slot as usize] = State::Retiring;
        }
        self.retiring.extend(slots);
    }

    /// Unindexes the first [`RETIRES_PER_DRAIN`] queued slots, and tells the programs through
    /// `control`. Called once a drain.
    pub fn retire_queued(&mut self, control: &mut Control) {
        let count = self.retiring.len().min(RETIRES_PER_DRAIN);
        if count == 0 {
            return;
        }
        let slots: Vec<u32> = self.retiring.drain(..count).collect();
        self.retire(&slots, control);
    }

    /// Live slots idle for at least `drains` whose socket cookie is `wanted`. Runs at every
    /// drain that saw sockets close: the idle check goes first, the shared memory is only read
    /// for the slots that pass it.
    fn idle_slots(&self, drains: u32, wanted: impl Fn(u64) -> bool) -> Vec<u32> {
        self.states
            .iter()
            .enumerate()
            .filter(|(_, state)| matches!(state, State::Live { idle } if *idle >= drains))
            .filter(|(slot, _)| wanted(self.counters.mapping().slot(*slot).cookie()))
            .map(|(slot, _)| slot as u32)
            .collect()
    }

    fn retire(&mut self, slots: &[u32], control: &mut Control) {
        if slots.is_empty() {
            return;
        }
        let keys: Vec<FlowKey> = slots
            .iter()
            .map(|&s| self.counters.mapping().slot(s as usize).key())
            .collect();
        if batch::delete_present(IterableMap::map(&self.index).fd(), &keys).is_err() {
            // No batch deletes on this kernel: one by one.
            for key in &keys {
                let _ = self.index.remove(key);
            }
        }
        // Should the bump fail, a retired flow's packets keep landing in its old slot, which
        // is read like any other and not handed back while it moves: nothing is lost.
        if let Err(err) = control.bump_flow_index_epoch() {
            tracing::warn!("cannot tell the programs that flows were unindexed: {err}");
        }
        for &slot in slots {
            self.states[slot as usize] = State::Retired {
                at: self.drain_number(),
            };
        }
    }

    /// The drain count as kept in a slot's state: 8 bytes a slot instead of 16 (265k slots).
    /// Wraps after 136 years of 1 s drains; compared with a wrapping difference.
    fn drain_number(&self) -> u32 {
        self.drains as u32
    }

    /// Zeroes `slots` and puts them in the free queue for new flows. A slot that did not go in
    /// stays retired and is tried again at the next drain.
    fn hand_back(&mut self, slots: &[u32]) {
        for &slot in slots {
            self.counters.mapping().slot(slot as usize).clear();
        }
        let pushed = self.free.push_all(slots);
        for &slot in &slots[..pushed] {
            self.states[slot as usize] = State::Free;
        }
    }
}

impl SlotRef<'_, FlowSlot> {
    /// The flow's socket cookie, read alone (see [`key`](SlotRef::key)).
    fn cookie(&self) -> u64 {
        // SAFETY: as for `key`.
        unsafe { std::ptr::read(&raw const (*self.as_ptr()).key.cookie) }
    }

    /// The flow's socket cookie and cgroup id.
    fn socket(&self) -> (u64, u64) {
        // SAFETY: as for `key`.
        let cgroup = unsafe { std::ptr::read(&raw const (*self.as_ptr()).key.cgroup_id) };
        (self.cookie(), cgroup)
    }
}
