//! The forwarded flows' counters, read through shared memory as the local flows' are (see
//! `flow_slots`): the tc programs count each (interface, direction, tuple) in a slot of
//! FORWARDED_COUNTERS found through the FORWARDED index, and a drain reads the slots in use with
//! plain loads, each counter swapped to 0. A hash map read in batches instead locks each of its
//! buckets and copies it out, every drain, however few flows moved.
//!
//! A slot's life: never used or free -> claimed by a program for a new flow -> idle for the
//! daemon's idle drains, unindexed (new packets of the flow claim a new slot) -> read for
//! [`RETIRED_DRAINS`] more drains, then zeroed and handed back to FREE_FORWARDED_SLOTS, when no
//! program can still hold its number.

use std::io;

use aya::{
    maps::{Array, HashMap, IterableMap, MapData, Queue},
    programs::ProgramFd,
};
use trafficd_common::{
    forwarding::{ForwardKey, ForwardSlot, WireCount},
    hand_back::FORWARDED_SLOTS,
};

use super::{
    batch,
    flow_slots::{HAND_BACKS_PER_DRAIN, RETIRES_PER_DRAIN},
    slots::{FreeQueue, SharedArray},
};

/// Drains between unindexing a slot and reusing it.
const RETIRED_DRAINS: u32 = 2;
/// Slots mapped at start (88 KiB); the mapping grows with the slots used.
const FIRST_MAPPED_SLOTS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Counting; `idle` drains in a row without a packet.
    Live {
        idle: u32,
    },
    /// Unindexed at drain `at`; still read until it is handed back.
    Retired {
        at: u32,
    },
}

/// What one [`ForwardSlots::take`] found. Kept by the caller from one drain to the next.
#[derive(Debug, Default)]
pub struct ForwardMoves {
    /// Slots that hold a new flow since the last take.
    pub claimed: Vec<u32>,
    /// Every slot whose flow moved, with what it moved.
    pub moved: Vec<(u32, WireCount)>,
    /// Slots handed back for reuse: their flows are gone.
    pub freed: Vec<u32>,
}

impl ForwardMoves {
    fn clear(&mut self) {
        self.claimed.clear();
        self.moved.clear();
        self.freed.clear();
    }
}

pub struct ForwardSlots {
    index: HashMap<MapData, ForwardKey, u32>,
    free: FreeQueue,
    fresh: Array<MapData, u64>,
    counters: SharedArray<ForwardSlot>,
    states: Vec<State>,
    drains: u32,
}

impl ForwardSlots {
    pub fn new(
        index: HashMap<MapData, ForwardKey, u32>,
        free: Queue<MapData, u32>,
        hand_back: Option<ProgramFd>,
        fresh: Array<MapData, u64>,
        counters: MapData,
        capacity: u32,
    ) -> io::Result<ForwardSlots> {
        Ok(ForwardSlots {
            index,
            free: FreeQueue::new(free, hand_back, FORWARDED_SLOTS, "forwarded-flow slots"),
            fresh,
            counters: SharedArray::new(
                counters,
                FIRST_MAPPED_SLOTS,
                capacity,
                "forwarded-flow counters",
            )?,
            states: vec![State::Free; capacity as usize],
            drains: 0,
        })
    }

    /// The key of the flow in `slot`: valid from the take that reported it claimed until the
    /// take that reports it freed.
    pub fn key(&self, slot: u32) -> ForwardKey {
        self.counters.mapping().slot(slot as usize).key()
    }

    /// Reads every slot in use into `moves` (emptied first): new flows, what each flow moved
    /// since the last take, and the slots handed back. Then unindexes the flows idle for
    /// `idle_drains` drains.
    pub fn take(&mut self, moves: &mut ForwardMoves, idle_drains: u32) {
        self.drains = self.drains.wrapping_add(1);
        moves.clear();
        let used = self.counters.cover_handed_out(&self.fresh);
        let counters = self.counters.mapping().clone();
        let mut reusable = Vec::new();
        let mut idle = Vec::new();
        for (slot, state) in self.states[..used].iter_mut().enumerate() {
            let counts = counters.slot(slot);
            if *state == State::Free {
                if !counts.claimed() {
                    continue;
                }
                *state = State::Live { idle: 0 };
                moves.claimed.push(slot as u32);
            }
            let count = counts.take();
            // Any counter: a packet added between two of the swaps leaves its bytes in this
            // take and its packet in the next.
            let moving = count != WireCount::default();
            if moving {
                moves.moved.push((slot as u32, count));
            }
            match state {
                State::Live { idle: drains } if !moving => {
                    *drains = drains.saturating_add(1);
                    if *drains >= idle_drains && idle.len() < RETIRES_PER_DRAIN {
                        idle.push(slot as u32);
                    }
                }
                State::Live { idle: drains } => *drains = 0,
                State::Retired { at }
                    if self.drains.wrapping_sub(*at) >= RETIRED_DRAINS
                        && !moving
                        && reusable.len() < HAND_BACKS_PER_DRAIN =>
                {
                    reusable.push(slot as u32)
                }
                _ => {}
            }
        }
        for &slot in &reusable {
            counters.slot(slot as usize).clear();
        }
        let pushed = self.free.push_all(&reusable);
        for &slot in &reusable[..pushed] {
            self.states[slot as usize] = State::Free;
        }
        moves.freed.extend_from_slice(&reusable[..pushed]);
        self.retire(&idle);
    }

    /// Unindexes `slots`: the next packets of their flows claim new slots, and these are read
    /// until they are handed back, so nothing is lost.
    fn retire(&mut self, slots: &[u32]) {
        if slots.is_empty() {
            return;
        }
        let mapping = self.counters.mapping();
        let keys: Vec<ForwardKey> = slots
            .iter()
            .map(|&slot| mapping.slot(slot as usize).key())
            .collect();
        if batch::delete_present(IterableMap::map(&self.index).fd(), &keys).is_err() {
            // No batch deletes on this kernel: one by one.
            for key in &keys {
                let _ = self.index.remove(key);
            }
        }
        for &slot in slots {
            self.states[slot as usize] = State::Retired { at: self.drains };
        }
    }
}
