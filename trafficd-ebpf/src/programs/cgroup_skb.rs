//! cgroup_skb ingress and egress on the cgroup2 root: every packet of every local socket.
//!
//! Per packet: the socket cookie, the cgroup of the socket and the packet's 5-tuple, then one
//! per-CPU hash update: the flow (socket + 5-tuple + cgroup). Socket and cgroup totals are sums
//! of flows, done by the daemon. Only when FLOWS is full do the bytes go to the SOCKETS and
//! CGROUPS overflow roll-ups instead, so those totals stay exact without costing every packet
//! three hash updates.

use core::mem::MaybeUninit;

use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use trafficd_common::{FlowKey, Loss, Traffic};

use crate::{
    counters::{add, count_loss, entry, zeroed},
    maps::{CGROUPS, FLOWS, SOCKETS},
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
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    let mut place = MaybeUninit::<FlowKey>::uninit();
    let key = zeroed(&mut place);
    key.cookie = cookie;
    key.cgroup_id = cgroup_id;
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

    if let Some(traffic) = entry(&FLOWS, key) {
        add_traffic(traffic, direction, bytes, packets);
        return;
    }
    count_loss(ctx, Loss::FlowMapFull, bytes);
    match entry(&SOCKETS, &cookie) {
        Some(traffic) => add_traffic(traffic, direction, bytes, packets),
        None => count_loss(ctx, Loss::SocketMapFull, bytes),
    }
    match entry(&CGROUPS, &cgroup_id) {
        Some(traffic) => add_traffic(traffic, direction, bytes, packets),
        None => count_loss(ctx, Loss::CgroupMapFull, bytes),
    }
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
