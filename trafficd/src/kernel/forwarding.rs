//! The forwarded-traffic counters as the drain holds them: the tc programs' maps, and the
//! loaded object they attach from, shared with [`Kernel`](super::Kernel) so that the drain
//! can attach to an interface that appears while the daemon runs (a new container's veth).
//!
//! The object is detached when its last holder drops it: the drain thread ends before the
//! daemon exits, so the links go with it.

use std::sync::{Arc, Mutex};

use aya::Ebpf;
use trafficd_common::forwarding::{ForwardKey, WireCount};

use super::tc::{ForwardMoves, KindKey, TcCounters, TcLosses};
use crate::error::Result;

pub struct Forwarding {
    ebpf: Arc<Mutex<Ebpf>>,
    counters: TcCounters,
}

impl Forwarding {
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>, counters: TcCounters) -> Forwarding {
        Forwarding { ebpf, counters }
    }

    /// Counts on interface `name` of the daemon's network namespace from now on.
    pub fn attach(&mut self, name: &str, link_header_len: u32) -> Result<()> {
        // A panic elsewhere while holding the lock leaves the object usable: attaching only
        // borrows a program.
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        self.counters.attach(&mut ebpf, name, link_header_len)
    }

    /// Stops counting on `ifindex` and forgets its per-kind counts.
    pub fn detach(&mut self, ifindex: u32) {
        self.counters.detach(ifindex);
    }

    /// The interfaces counted on: (ifindex, name).
    pub fn attached(&self) -> Vec<(u32, String)> {
        self.counters
            .attached()
            .map(|(i, n)| (i, n.to_string()))
            .collect()
    }

    /// What the forwarded flows moved since the last call, into `moves` (emptied first); flows
    /// idle for `idle_drains` calls are let go.
    pub fn take(&mut self, moves: &mut ForwardMoves, idle_drains: u32) {
        self.counters.take(moves, idle_drains)
    }

    /// The flow in `slot`, from the take that reported it claimed to the one that freed it.
    pub fn key(&self, slot: u32) -> ForwardKey {
        self.counters.key(slot)
    }

    pub fn kinds(&self) -> Vec<(KindKey, WireCount)> {
        self.counters.kinds()
    }

    pub fn losses(&self) -> TcLosses {
        self.counters.losses()
    }
}
