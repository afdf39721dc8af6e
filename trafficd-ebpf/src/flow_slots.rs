//! The flows' counters: finding a flow's slot in FLOW_COUNTERS (claiming a free one for a new
//! flow) and adding to it, or, when no slot is free, to the per-socket and per-cgroup overflow
//! roll-ups, so that those totals stay exact when FLOWS is full.

use aya_ebpf::EbpfContext;
use trafficd_common::{FlowKey, Loss, Traffic, BURST_FLOWS};

use crate::{
    counters::{add, count_loss, entry, fetch_add},
    maps::{
        CGROUPS, FLOWS, FLOW_BURSTS, FLOW_CLAIMS, FLOW_COUNTERS, FREE_FLOW_SLOTS, FRESH_FLOW_SLOTS,
        SOCKETS,
    },
    slots::Slots,
};

/// The slot of flow `key`, claiming a free one for a new flow; `None` when none is free (or
/// FLOWS is full).
#[inline(always)]
pub fn slot_of(key: &FlowKey) -> Option<u32> {
    let slots = Slots {
        index: &FLOWS,
        counters: &FLOW_COUNTERS,
        free: &FREE_FLOW_SLOTS,
        fresh: &FRESH_FLOW_SLOTS,
    };
    slots.slot_of(key, count_claim)
}

/// The counters of slot `slot`.
#[inline(always)]
pub fn traffic(slot: u32) -> Option<*mut Traffic> {
    let counters = FLOW_COUNTERS.get_ptr_mut(slot)?;
    // SAFETY: a live array element; only the field's address is taken.
    Some(unsafe { &raw mut (*counters).traffic })
}

/// Adds `moved` to flow `key`, or to its socket's and cgroup's overflow roll-ups when the flow
/// has no slot. `bytes` is what a loss is counted with.
#[inline(always)]
pub fn add_to_flow<C: EbpfContext>(ctx: &C, key: &FlowKey, moved: &Traffic) {
    if let Some(counters) = slot_of(key).and_then(traffic) {
        add_traffic(counters, moved);
        return;
    }
    roll_up(ctx, key, moved);
}

/// Adds `moved` to the overflow roll-ups of the socket and cgroup of `key`: its flow found no
/// slot.
#[inline(always)]
pub fn roll_up<C: EbpfContext>(ctx: &C, key: &FlowKey, moved: &Traffic) {
    let bytes = moved.tx_bytes.wrapping_add(moved.rx_bytes);
    count_loss(ctx, Loss::FlowMapFull, bytes);
    match entry(&SOCKETS, &key.cookie) {
        Some(traffic) => add_traffic(traffic, moved),
        None => count_loss(ctx, Loss::SocketMapFull, bytes),
    }
    match entry(&CGROUPS, &key.cgroup_id) {
        Some(traffic) => add_traffic(traffic, moved),
        None => count_loss(ctx, Loss::CgroupMapFull, bytes),
    }
}

/// Adds the sides of `moved` that moved to `traffic`.
#[inline(always)]
pub fn add_traffic(traffic: *mut Traffic, moved: &Traffic) {
    // SAFETY: `traffic` is a live map value; only its fields' addresses are taken.
    unsafe {
        if moved.tx_packets != 0 || moved.tx_bytes != 0 {
            add(&raw mut (*traffic).tx_bytes, moved.tx_bytes);
            add(&raw mut (*traffic).tx_packets, moved.tx_packets);
        }
        if moved.rx_packets != 0 || moved.rx_bytes != 0 {
            add(&raw mut (*traffic).rx_bytes, moved.rx_bytes);
            add(&raw mut (*traffic).rx_packets, moved.rx_packets);
        }
    }
}

/// Counts a new flow in FLOW_CLAIMS, and wakes the drain every [`BURST_FLOWS`] of them.
#[inline(always)]
fn count_claim() {
    if let Some(claims) = FLOW_CLAIMS.get_ptr_mut(0) {
        let claimed = fetch_add(claims, 1) + 1;
        if claimed.is_multiple_of(BURST_FLOWS) {
            // Not lost if the ring is full: the daemon is awake then, and counts FLOW_CLAIMS.
            let _ = FLOW_BURSTS.output::<u64>(claimed, 0);
        }
    }
}
