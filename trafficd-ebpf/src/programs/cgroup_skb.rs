//! cgroup_skb ingress and egress on the cgroup2 root: every packet of every local socket.
//!
//! Per packet: the socket cookie, the cgroup of the socket and the packet's 5-tuple, then the
//! flow's slot (socket + 5-tuple + cgroup -> slot: from this CPU's cache of recent flows, else
//! one hash lookup) and atomic adds to the slot's counters. Socket and cgroup totals are sums
//! of flows, done by the daemon. Only when no flow slot is free do the bytes go to the SOCKETS
//! and CGROUPS overflow roll-ups instead, so those totals stay exact without costing every
//! packet three hash updates.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use trafficd_common::{FlowKey, Loss, Traffic, BURST_FLOWS};

use crate::{
    counters::{add, count_loss, entry, fetch_add, zeroed, BPF_NOEXIST, EEXIST},
    flow_cache,
    maps::{
        CGROUPS, FLOWS, FLOW_BURSTS, FLOW_CLAIMS, FLOW_COUNTERS, FREE_FLOW_SLOTS, FRESH_FLOW_SLOTS,
        SOCKETS,
    },
    packet,
};

/// Let the packet through: accounting never changes what the host does.
const ALLOW: i32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Egress,
    Ingress,
}

#[cgroup_skb(egress)]
pub fn trafficd_egress(ctx: SkBuffContext) -> i32 {
    account(&ctx, Direction::Egress);
    ALLOW
}

#[cgroup_skb(ingress)]
pub fn trafficd_ingress(ctx: SkBuffContext) -> i32 {
    account(&ctx, Direction::Ingress);
    ALLOW
}

#[inline(always)]
fn account(ctx: &SkBuffContext, direction: Direction) {
    let skb = ctx.skb.skb;
    // SAFETY: helpers on the program's own context. The cookie is 0 for a packet without a socket.
    let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
    let mut place = MaybeUninit::<FlowKey>::uninit();
    let key = zeroed(&mut place);
    key.cookie = cookie;
    let parsed = packet::parse_into(ctx, key, direction == Direction::Egress);

    // SAFETY: `skb` is the program's context; gso_segs is readable by cgroup_skb programs.
    let packets = u64::from(unsafe { (*skb).gso_segs }).max(1);
    // The IP packet length, headers included. A GSO packet crosses the hook once, with one set
    // of headers, and leaves as `packets` segments that each carry them: count those too, so
    // both ends of a connection agree and the figure is what the link carries.
    let header_len = u64::from(parsed.unwrap_or(0));
    let bytes = u64::from(ctx.len()) + (packets - 1) * header_len;
    if parsed.is_none() {
        count_loss(ctx, Loss::Unparsed, bytes);
    }

    if let Some(traffic) = flow_counters(skb, key) {
        add_traffic(traffic, direction, bytes, packets);
        return;
    }
    count_loss(ctx, Loss::FlowMapFull, bytes);
    let cgroup_id = key.cgroup_id;
    match entry(&SOCKETS, &cookie) {
        Some(traffic) => add_traffic(traffic, direction, bytes, packets),
        None => count_loss(ctx, Loss::SocketMapFull, bytes),
    }
    match entry(&CGROUPS, &cgroup_id) {
        Some(traffic) => add_traffic(traffic, direction, bytes, packets),
        None => count_loss(ctx, Loss::CgroupMapFull, bytes),
    }
}

/// The counters of flow `key` (all of it but the cgroup, which is filled in here when needed),
/// claiming a free slot for a new flow. `None` when no slot is free (or FLOWS is full): the
/// caller rolls the bytes up per socket and cgroup instead.
#[inline(always)]
fn flow_counters(skb: *mut __sk_buff, key: &mut FlowKey) -> Option<*mut Traffic> {
    let cached = flow_cache::Entry::of(skb, key);
    let slot = match cached.as_ref().and_then(|entry| entry.slot(key)) {
        Some(slot) => slot,
        None => {
            // SAFETY: helper on the program's own context (0 without a socket).
            key.cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
            // SAFETY: the slot number is copied out at once.
            let slot = match unsafe { FLOWS.get(&*key) } {
                Some(slot) => *slot,
                None => claim_slot(key)?,
            };
            if let Some(entry) = &cached {
                entry.remember(slot);
            }
            slot
        }
    };
    let counters = FLOW_COUNTERS.get_ptr_mut(slot)?;
    // SAFETY: a live array element; only the field's address is taken.
    Some(unsafe { &raw mut (*counters).traffic })
}

/// Takes a free slot for `key` and indexes it. The index goes in before the key is written to
/// the slot: if another CPU indexed the same flow first, the slot goes back untouched.
#[inline(always)]
fn claim_slot(key: &FlowKey) -> Option<u32> {
    let slot = match fresh_slot() {
        Some(slot) => slot,
        None => FREE_FLOW_SLOTS.pop().ok()??,
    };
    match FLOWS.insert(key, &slot, BPF_NOEXIST) {
        Ok(()) => {}
        Err(err) => {
            // The queue holds every slot, so it has room for this one again.
            let _ = FREE_FLOW_SLOTS.push(slot, 0);
            // SAFETY: as above.
            return (err == -EEXIST)
                .then(|| unsafe { FLOWS.get(key) }.copied())
                .flatten();
        }
    }
    let counters = FLOW_COUNTERS.get_ptr_mut(slot)?;
    // SAFETY: a live array element that no other program writes the key of: the slot was
    // free and is indexed under `key` by this program only.
    unsafe {
        (*counters).key = *key;
        // A fetching atomic add is a full barrier under every BPF JIT (a plain atomic add is
        // not on arm64): the key's stores come before `claimed`, which the daemon reads first.
        fetch_add(&raw mut (*counters).claimed, 1);
    }
    if let Some(claims) = FLOW_CLAIMS.get_ptr_mut(0) {
        let claimed = fetch_add(claims, 1) + 1;
        if claimed % BURST_FLOWS == 0 {
            // Not lost if the ring is full: the daemon is awake then, and counts FLOW_CLAIMS.
            let _ = FLOW_BURSTS.output::<u64>(claimed, 0);
        }
    }
    Some(slot)
}

/// The next never-used slot, while there is one.
#[inline(always)]
fn fresh_slot() -> Option<u32> {
    let next = FRESH_FLOW_SLOTS.get_ptr_mut(0)?;
    // SAFETY: a live array element; read first so that a full array does not keep counting.
    let seen = unsafe { core::ptr::read_volatile(next) };
    if seen >= u64::from(u32::MAX) || FLOW_COUNTERS.get_ptr(seen as u32).is_none() {
        return None;
    }
    let slot = fetch_add(next, 1);
    // Another CPU may have taken the last one in between.
    FLOW_COUNTERS
        .get_ptr(slot as u32)
        .filter(|_| slot < u64::from(u32::MAX))
        .map(|_| slot as u32)
}

#[inline(always)]
fn add_traffic(traffic: *mut Traffic, direction: Direction, bytes: u64, packets: u64) {
    // SAFETY: `traffic` is a live map value; only its fields' addresses are taken.
    unsafe {
        match direction {
            Direction::Egress => {
                add(&raw mut (*traffic).tx_bytes, bytes);
                add(&raw mut (*traffic).tx_packets, packets);
            }
            Direction::Ingress => {
                add(&raw mut (*traffic).rx_bytes, bytes);
                add(&raw mut (*traffic).rx_packets, packets);
            }
        }
    }
}
