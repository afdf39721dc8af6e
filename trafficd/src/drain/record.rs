//! Recording: one drain's attributed deltas written to the store under one lock, with the
//! daemon's health, and each flow's store slot remembered for the next drain.

use std::{
    sync::RwLock,
    time::{Duration, Instant},
};

use rustc_hash::FxHashSet as HashSet;

use super::{attribute::Attributed, counters::Counts, retire::Retired, Drainer};
use crate::{
    kernel::MovedFlows,
    stats::{Forgotten, Store, NO_HINT},
};

/// Where each kernel flow slot's flow was in the store, as last seen: a drain of 100k flows
/// then finds them without hashing a key.
#[derive(Default)]
pub(super) struct FlowHints {
    /// Per flow of a drain, its hint: a buffer kept between drains.
    hints: Vec<u32>,
    /// Kernel flow slot -> the flow's slot in the store's flow dimension.
    by_slot: Vec<u32>,
}

impl Drainer {
    /// Writes the drain's deltas and health to the store, expiring idle groups when
    /// `retired.housekeeping`. Returns what the store expired.
    pub(super) fn record(
        &mut self,
        store: &RwLock<Store>,
        started: Instant,
        length: Duration,
        counts: &Counts,
        attributed: Attributed,
        retired: &Retired,
    ) -> Forgotten {
        let moved = &counts.moved;
        let mut hints = self.hints.take_for(moved);
        let renamed = self.sources.renamed_owners();
        let mut store = store.write().unwrap_or_else(|e| e.into_inner());
        super::rename::rename(&mut store, &renamed);
        store.processes.record(started, length, attributed.talkers);
        store.cgroups.record(started, length, attributed.cgroups);
        let flow_infos = &attributed.flow_infos;
        let flow_records = moved
            .traffic
            .iter()
            .zip(&moved.sockets)
            .map(|(delta, &socket)| (*delta, &flow_infos[socket as usize]));
        store
            .flows
            .record_hinted(started, length, flow_records, &mut hints, |i| moved.key(i));
        let expired = if retired.housekeeping {
            store.expire(started, self.config.retention)
        } else {
            Forgotten::default()
        };
        self.record_health(&mut store, started, counts, retired);
        drop(store);
        self.hints.keep(moved, hints, &expired.flow_slots);
        expired
    }

    fn record_health(
        &self,
        store: &mut Store,
        started: Instant,
        counts: &Counts,
        retired: &Retired,
    ) {
        let health = &mut store.health;
        health.drains += 1;
        health.losses = self.maps.losses();
        health.map_fill = self.maps.fill(&counts.entries);
        if health.map_memory.is_empty() {
            health.map_memory = self.maps.memory().to_vec();
        }
        health.kernel_totals = health.kernel_totals.add(&counts.counted);
        health.sockets_forgotten += retired.sockets;
        health.tcp_swept_namespaces = self.maps.tcp_swept_namespaces();
        health.last_drain = started.elapsed();
        health.longest_drain = health.longest_drain.max(health.last_drain);
    }
}

impl FlowHints {
    /// The hints for the flows of `moved`, in their order.
    fn take_for(&mut self, moved: &MovedFlows) -> Vec<u32> {
        // A slot that holds a new flow says nothing about where the flow is in the store.
        for &slot in &moved.claimed {
            *hint_at(&mut self.by_slot, slot) = NO_HINT;
        }
        let mut hints = std::mem::take(&mut self.hints);
        hints.clear();
        hints.extend(
            moved
                .slots
                .iter()
                .map(|&s| self.by_slot.get(s as usize).copied().unwrap_or(NO_HINT)),
        );
        hints
    }

    /// Remembers the store slots the flows of `moved` were recorded in, and drops the hints
    /// that name the slots just `freed`: a later flow may get the slot.
    fn keep(&mut self, moved: &MovedFlows, hints: Vec<u32>, freed: &[u32]) {
        for (&slot, &hint) in moved.slots.iter().zip(&hints) {
            *hint_at(&mut self.by_slot, slot) = hint;
        }
        self.hints = hints;
        if freed.is_empty() {
            return;
        }
        let freed: HashSet<u32> = freed.iter().copied().collect();
        for hint in &mut self.by_slot {
            if freed.contains(hint) {
                *hint = NO_HINT;
            }
        }
    }
}

/// The hint kept for kernel flow slot `slot`, growing `hints` to hold it.
fn hint_at(hints: &mut Vec<u32>, slot: u32) -> &mut u32 {
    let slot = slot as usize;
    if slot >= hints.len() {
        hints.resize(slot + 1, NO_HINT);
    }
    &mut hints[slot]
}
