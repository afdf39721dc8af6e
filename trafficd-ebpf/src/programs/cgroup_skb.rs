//! cgroup_skb ingress and egress on the cgroup2 root: every packet of every local socket.
//!
//! Per packet: the socket cookie, the cgroup of the socket and the packet's 5-tuple, then the
//! flow's slot (socket + 5-tuple + cgroup -> slot: from this CPU's cache of recent flows, else
//! one hash lookup) and atomic adds to the slot's counters. Socket and cgroup totals are sums
//! of flows, done by the daemon. Only when no flow slot is free do the bytes go to the SOCKETS
//! and CGROUPS overflow roll-ups instead, so those totals stay exact without costing every
//! packet three hash updates.
//!
//! Packets of established TCP connections are the exception once the daemon turned TCP
//! counting from sockets on: the kernel's own counters of the connection count them (see
//! `tcp_socket`), and here they cost the header read and a few compares.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use trafficd_common::{FlowKey, Loss, Traffic};

use crate::{
    counters::{count_loss, zeroed},
    flow_cache,
    flow_slots::{add_traffic, roll_up, slot_of, traffic},
    packet, tcp_socket,
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
    let mut place = MaybeUninit::<FlowKey>::uninit();
    let key = zeroed(&mut place);
    let parsed = packet::parse_into(ctx, key, direction == Direction::Egress);
    if tcp_socket::counts(skb, key) {
        return;
    }
    // SAFETY: helper on the program's own context. The cookie is 0 for a packet without a socket.
    key.cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };

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

    let moved = moved(direction, bytes, packets);
    match flow_counters(skb, key) {
        Some(counters) => add_traffic(counters, &moved),
        None => {
            // SAFETY: helper on the program's own context (0 without a socket).
            key.cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
            roll_up(ctx, key, &moved);
        }
    }
}

/// The counters of flow `key` (all of it but the cgroup, which is filled in here when needed),
/// claiming a free slot for a new flow. `None` when no slot is free (or FLOWS is full): the
/// caller rolls the bytes up per socket and cgroup instead.
#[inline(always)]
fn flow_counters(skb: *mut __sk_buff, key: &mut FlowKey) -> Option<*mut Traffic> {
    let cached = flow_cache::Entry::of(skb, key);
    let slot = match cached.slot(key) {
        Some(slot) => slot,
        None => {
            // SAFETY: helper on the program's own context (0 without a socket).
            key.cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
            let slot = slot_of(key)?;
            cached.remember(slot);
            slot
        }
    };
    traffic(slot)
}

/// What one packet moved, on its side.
#[inline(always)]
fn moved(direction: Direction, bytes: u64, packets: u64) -> Traffic {
    match direction {
        Direction::Egress => Traffic {
            tx_bytes: bytes,
            tx_packets: packets,
            ..Traffic::default()
        },
        Direction::Ingress => Traffic {
            rx_bytes: bytes,
            rx_packets: packets,
            ..Traffic::default()
        },
    }
}
