//! tc ingress and egress (TCX or clsact) on the interfaces the daemon picks: the packets that
//! no local socket sends or receives (routed, bridged, NAT'd through this host), per
//! interface, direction and 5-tuple; and every packet's bytes per interface by kind, so that
//! the parts add up to the interface's own counters. Local sockets' packets are left to the
//! cgroup_skb hooks, which attribute them to processes: here they only count as "local".
//!
//! How a packet is told forwarded, O(1) either way:
//! - Egress: it carries no socket. A local socket's packets keep theirs down to the device; a
//!   received packet loses any when IP takes it in (`ip_rcv` orphans every packet), so what
//!   leaves without one came in from elsewhere. This holds after routing and after NAT. The
//!   packet's `ingress_ifindex` names the interface it came in by.
//! - Ingress: no packet has a socket yet, so the kernel is asked where it would route it
//!   (`bpf_fib_lookup`, the lookup `ip_forward` makes): unicast to another host is forwarded
//!   (its output interface recorded); a local address, broadcast, multicast, or forwarding off
//!   on the interface is local; no route is dropped. DNAT runs after tc ingress, so a packet to
//!   a published port counts as local here; the egress of the interface it leaves by counts it
//!   as forwarded with this interface as its other end, which the daemon uses to reconcile.
//!
//! The ingress verdict is cached per CPU by flow for a short while (`ROUTE_CACHE`): the
//! lookup is most of what the ingress program costs, and a flow's packets get the same answer
//! until a route, an address or a forwarding setting changes, which the cache sees within
//! [`RECHECK_JIFFIES`]. The same entry remembers the flow's counter slot, as `EGRESS_SLOTS` does for
//! flows on their way out, so that a flow's next packets skip the FORWARDED lookup (a hash of
//! the 48-byte key and a compare). A remembered slot is believed only while it holds the
//! packet's key: the daemon zeroes a slot's key before it hands the slot to another flow, and
//! does so only once the slot has gone unread-to for two drains after its flow was let go.
//!
//! The per-interface counts are per CPU and added without atomics: a tc program runs in
//! softirq (ingress) or with bottom halves off (egress), so no other tc program can start on
//! the same CPU in the middle of an add, and nothing else writes these counts.
//!
//! A veth keeps a packet's socket when it crosses into another namespace (since Linux 4.19),
//! so a frame a bridge passes from one container to another leaves the host's bridge port
//! with the sending container's socket: local on that egress, since a socket of this host
//! owns it and the socket hooks count it. Routed container traffic loses its socket in the
//! host's `ip_rcv` and counts as forwarded on the way out.

use core::{
    hint::black_box,
    mem::{size_of, MaybeUninit},
    ptr::null_mut,
};

use aya_ebpf::{
    bindings::{
        __sk_buff, bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_BLACKHOLE,
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_UNREACHABLE, TC_ACT_UNSPEC,
    },
    helpers::generated::{bpf_fib_lookup, bpf_jiffies64, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use trafficd_common::{
    forwarding::{
        kind, ForwardKey, InterfaceCounts, WireCount, EGRESS, FLOWS_FULL, IFINDEX_SLOTS, INGRESS,
    },
    AF_INET, AF_INET6,
};

use crate::{
    counters::{add, add_to_slot, zeroed},
    maps::{
        EGRESS_SLOTS, FORWARDED, FORWARDED_COUNTERS, FREE_FORWARDED_SLOTS, FRESH_FORWARDED_SLOTS,
        INTERFACE_SLOTS, MORE_INTERFACE_SLOTS, NO_SLOT, ROUTE_CACHE, ROUTE_CACHE_BITS,
        TC_INTERFACES, TC_LOSSES,
    },
    packet::copy_word,
    slots::Slots,
};

/// `ETH_P_IP` and `ETH_P_IPV6` as `__sk_buff.protocol` holds them (network order).
const ETH_P_IP: u32 = 0x0800u16.to_be() as u32;
const ETH_P_IPV6: u32 = 0x86ddu16.to_be() as u32;
/// `PACKET_OTHERHOST`: a frame for another MAC address, which IP drops.
const PACKET_OTHERHOST: u32 = 3;
/// Longest link-layer header accepted from TC_INTERFACES; bounds the loads for the verifier.
const MAX_L2_LEN: u32 = 32;
/// The link-layer header of the interfaces the headers are read in place on.
const ETHERNET_HEADER_LEN: u32 = 14;
/// How long a cached routing verdict is believed: at most a second, as HZ is 100 or more.
/// Jiffies rather than nanoseconds because the verifier turns `bpf_jiffies64` into one load,
/// where a clock read is a helper call.
const RECHECK_JIFFIES: u64 = 100;

#[classifier]
pub fn trafficd_tc_ingress(ctx: TcContext) -> i32 {
    count(&ctx, INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn trafficd_tc_egress(ctx: TcContext) -> i32 {
    count(&ctx, EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext, direction: u8) {
    let skb = ctx.skb.skb;
    // SAFETY: fields a tc program may read from its own context.
    let (ifindex, protocol, segments) =
        unsafe { ((*skb).ifindex, (*skb).protocol, (*skb).gso_segs) };
    let Some(interface) = interface_of(ifindex) else {
        return;
    };
    // SAFETY: this CPU's value, alive for the program's run.
    let l2_len = unsafe { (*interface).link_header_len };
    let bytes = u64::from(ctx.len());
    let segments = u64::from(segments).max(1);
    if protocol != ETH_P_IP && protocol != ETH_P_IPV6 || l2_len > MAX_L2_LEN {
        let moved = wire(bytes, segments, 0);
        add_kind(interface, direction, kind::NON_IP, &moved);
        return;
    }

    // A local socket's packet on its way out needs no tuple: the socket hooks attribute it.
    // Only a GSO buffer's headers are needed, to count what its segments add on the wire.
    if direction == EGRESS && segments == 1 && has_socket(skb) {
        add_kind(interface, direction, kind::LOCAL, &wire(bytes, 1, 0));
        return;
    }
    let mut place = MaybeUninit::<ForwardKey>::uninit();
    let key = zeroed(&mut place);
    key.ifindex = ifindex;
    key.direction = direction;
    let headers = match l2_len {
        ETHERNET_HEADER_LEN => parse_in_place(ctx, key),
        _ => None,
    }
    .unwrap_or_else(|| parse(ctx, key, l2_len, protocol == ETH_P_IPV6));
    let moved = wire(bytes, segments, u64::from(l2_len) + u64::from(headers));
    let (verdict, memo) = if direction == EGRESS {
        let verdict = egress_verdict(skb, key);
        (verdict, egress_memo(verdict, key))
    } else {
        ingress_verdict(ctx, key)
    };
    add_kind(interface, direction, verdict, &moved);
    if verdict == kind::FORWARDED {
        add_flow(key, &moved, memo);
    }
}

/// This CPU's counts of the interface, found by its index's remainder, else (when another
/// interface holds that place) by the index itself.
#[inline(always)]
fn interface_of(ifindex: u32) -> Option<*mut InterfaceCounts> {
    let slot = INTERFACE_SLOTS.get(ifindex & (IFINDEX_SLOTS - 1))?;
    counts_in(*slot, ifindex).or_else(|| {
        // SAFETY: a plain u32 the daemon writes whole.
        let slot = unsafe { MORE_INTERFACE_SLOTS.get(ifindex) }?;
        counts_in(*slot, ifindex)
    })
}

/// Slot `slot` of TC_INTERFACES, if it holds interface `ifindex`.
#[inline(always)]
fn counts_in(slot: u32, ifindex: u32) -> Option<*mut InterfaceCounts> {
    let counts = TC_INTERFACES.get_ptr_mut(slot)?;
    // SAFETY: this CPU's value, alive for the program's run.
    (unsafe { (*counts).ifindex } == ifindex).then_some(counts)
}

/// Counts as a NIC does for a GSO buffer: every segment carries the headers again.
#[inline(always)]
fn wire(bytes: u64, segments: u64, header_len: u64) -> WireCount {
    WireCount {
        bytes,
        packets: 1,
        wire_bytes: bytes + (segments - 1) * header_len,
        segments,
    }
}

#[inline(always)]
fn egress_verdict(skb: *mut __sk_buff, key: &mut ForwardKey) -> u8 {
    if has_socket(skb) {
        return kind::LOCAL;
    }
    // SAFETY: a context field a tc program may read.
    key.other_ifindex = unsafe { (*skb).ingress_ifindex };
    kind::FORWARDED
}

#[inline(always)]
fn has_socket(skb: *mut __sk_buff) -> bool {
    // SAFETY: a context field a tc program may read; `sk` is only compared with null.
    !unsafe { (*skb).__bindgen_anon_2.sk }.is_null()
}

/// The verdict, and where this CPU remembers the flow's slot (null when nowhere).
#[inline(always)]
fn ingress_verdict(ctx: &TcContext, key: &mut ForwardKey) -> (u8, *mut u32) {
    let skb = ctx.skb.skb;
    // SAFETY: a context field a tc program may read.
    if unsafe { (*skb).pkt_type } == PACKET_OTHERHOST {
        return (kind::DROPPED, null_mut());
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_jiffies64() };
    let Some(cached) = ROUTE_CACHE.get_ptr_mut(cache_slot(key)) else {
        return (route(ctx, key), null_mut());
    };
    // SAFETY: this CPU's entry, alive for the program's run; only tc ingress runs touch it,
    // and none can start on this CPU before this one ends.
    unsafe {
        let memo = &raw mut (*cached).slot;
        if same_flow(&(*cached).key, key)
            && now.wrapping_sub((*cached).checked_at) < RECHECK_JIFFIES
        {
            key.other_ifindex = (*cached).key.other_ifindex;
            return ((*cached).kind as u8, memo);
        }
        let verdict = route(ctx, key);
        copy_key(&mut (*cached).key, key);
        (*cached).kind = u32::from(verdict);
        (*cached).slot = NO_SLOT;
        (*cached).checked_at = now;
        (verdict, memo)
    }
}

/// Where this CPU remembers the slot of a forwarded flow on its way out (null when nowhere);
/// the entry is the flow's from now on.
#[inline(always)]
fn egress_memo(verdict: u8, key: &ForwardKey) -> *mut u32 {
    if verdict != kind::FORWARDED {
        return null_mut();
    }
    let Some(cached) = EGRESS_SLOTS.get_ptr_mut(cache_slot(key)) else {
        return null_mut();
    };
    // SAFETY: this CPU's entry, alive for the program's run; only tc egress runs touch it, and
    // none can start on this CPU before this one ends.
    unsafe {
        if !same_key(&(*cached).key, key) {
            copy_key(&mut (*cached).key, key);
            (*cached).slot = NO_SLOT;
        }
        &raw mut (*cached).slot
    }
}

/// Where `key`'s flow has its place in ROUTE_CACHE: the key's words folded, then multiplied
/// by 2^64 / phi, whose top bits mix every bit of the product.
#[inline(always)]
fn cache_slot(key: &ForwardKey) -> u32 {
    let words = words_of(key);
    let mut folded = words[0] & 0xffff_ffff;
    for word in &words[1..] {
        folded ^= word;
    }
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ROUTE_CACHE_BITS)) as u32
}

/// The same flow on the same interface and direction: every field but `other_ifindex` (the
/// upper half of the first word), which is the cached verdict's own.
#[inline(always)]
fn same_flow(cached: &ForwardKey, key: &ForwardKey) -> bool {
    let (a, b) = (words_of(cached), words_of(key));
    let differ = a[1..]
        .iter()
        .zip(&b[1..])
        .fold((a[0] ^ b[0]) & 0xffff_ffff, |differ, (x, y)| {
            differ | (x ^ y)
        });
    differ == 0
}

/// Every field the same, word by word: a compare of the whole may become an out-of-line memcmp.
#[inline(always)]
fn same_key(a: &ForwardKey, b: &ForwardKey) -> bool {
    let (a, b) = (words_of(a), words_of(b));
    a.iter().zip(&b).fold(0, |differ, (x, y)| differ | (x ^ y)) == 0
}

/// Word by word: a plain struct copy may become an out-of-line memcpy (see `zeroed`).
#[inline(always)]
fn copy_key(to: &mut ForwardKey, from: &ForwardKey) {
    let words = words_of(from);
    let target = (to as *mut ForwardKey).cast::<u64>();
    for (i, word) in words.iter().enumerate() {
        // SAFETY: in bounds of `to`, which is aligned to 8.
        unsafe { target.add(i).write_volatile(*word) };
    }
}

const KEY_WORDS: usize = size_of::<ForwardKey>() / 8;

#[inline(always)]
fn words_of(key: &ForwardKey) -> [u64; KEY_WORDS] {
    // SAFETY: ForwardKey is plain data, aligned to 8, a whole number of words with no padding.
    unsafe { *(key as *const ForwardKey).cast::<[u64; KEY_WORDS]>() }
}

/// Asks the kernel where it would route the packet, as `ip_forward` would.
#[inline(always)]
fn route(ctx: &TcContext, key: &mut ForwardKey) -> u8 {
    let skb = ctx.skb.skb;
    let mut place = MaybeUninit::<FibParams>::uninit();
    let params = zeroed_fib(&mut place);
    params.family = key.family;
    params.l4_protocol = key.protocol;
    params.sport = key.src_port.to_be();
    params.dport = key.dst_port.to_be();
    params.ifindex = key.ifindex;
    // SAFETY: writing plain bytes into the address unions.
    unsafe {
        let (src, dst) = (
            &mut params.__bindgen_anon_3.ipv6_src,
            &mut params.__bindgen_anon_4.ipv6_dst,
        );
        for word in 0..4 {
            src[word] = u32::from_ne_bytes(word_of(&key.src_addr, word));
            dst[word] = u32::from_ne_bytes(word_of(&key.dst_addr, word));
        }
    }
    // SAFETY: the helper reads and writes `params`, a stack buffer of its exact size.
    let result = unsafe { bpf_fib_lookup(skb.cast(), params, size_of::<FibParams>() as i32, 0) };
    if result < 0 {
        // No answer (a header that could not be read): the socket hooks see it if it is local.
        return kind::LOCAL;
    }
    match result as u32 {
        BPF_FIB_LKUP_RET_NOT_FWDED | BPF_FIB_LKUP_RET_FWD_DISABLED => kind::LOCAL,
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            kind::DROPPED
        }
        // Routed to another host: success, no neighbour entry yet, or too large to pass
        // unfragmented (the kernel fragments or answers, and either way it is not local).
        _ => {
            key.other_ifindex = params.ifindex;
            kind::FORWARDED
        }
    }
}

#[inline(always)]
fn word_of(addr: &[u8; 16], word: usize) -> [u8; 4] {
    [
        addr[word * 4],
        addr[word * 4 + 1],
        addr[word * 4 + 2],
        addr[word * 4 + 3],
    ]
}

/// The fib parameters zeroed; their size (64 bytes) is a multiple of 8, as `zeroed` needs, but
/// their alignment is 4, so they are zeroed as bytes of an aligned buffer.
#[inline(always)]
fn zeroed_fib(place: &mut MaybeUninit<FibParams>) -> &mut FibParams {
    let words = place.as_mut_ptr() as *mut u32;
    for i in 0..size_of::<FibParams>() / 4 {
        // SAFETY: in bounds of `place`, which is aligned for u32.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte was written; all-zero is valid for these plain integers.
    unsafe { place.assume_init_mut() }
}

/// `N` packet bytes at `offset` from the start of the link-layer header.
#[inline(always)]
fn load<const N: usize>(ctx: &TcContext, offset: u32) -> Option<[u8; N]> {
    let mut buf = MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: the helper writes exactly N bytes into `buf` or fails.
    let ret = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
        )
    };
    // SAFETY: written by the helper when it returns 0.
    (ret == 0).then(|| unsafe { buf.assume_init() })
}

/// The common case without a helper call, as `packet::parse_into` reads it for the socket
/// hooks: an Ethernet frame carrying IPv4 without options or IPv6 without extension headers,
/// then TCP or UDP, whose headers lie in the packet's linear part. `None` leaves `key`
/// untouched for [`parse`].
#[inline(always)]
fn parse_in_place(ctx: &TcContext, key: &mut ForwardKey) -> Option<u32> {
    const L2: usize = ETHERNET_HEADER_LEN as usize;
    let skb = ctx.skb.skb;
    // SAFETY: context fields a tc program may read; the verifier makes them the frame's start
    // and end and checks every read below against them. `black_box`: see `packet.rs`.
    let (start, end) = unsafe {
        (
            black_box((*skb).data as usize),
            black_box((*skb).data_end as usize),
        )
    };
    if start + L2 + 20 > end {
        return None;
    }
    let ip = (start + L2) as *const u8;
    // SAFETY: in bounds, checked above.
    let first = unsafe { *ip };
    match first >> 4 {
        4 => {
            // SAFETY: the 20 bytes were checked above.
            let (fragment, protocol) = unsafe { ([*ip.add(6) & 0x3f, *ip.add(7)], *ip.add(9)) };
            if first != 0x45 || fragment != [0, 0] {
                return None;
            }
            read_in_place::<L2, 4, 20>(start, end, key, AF_INET, protocol)
        }
        6 => {
            if start + L2 + 40 > end {
                return None;
            }
            // SAFETY: the 40 bytes were checked above.
            let protocol = unsafe { *ip.add(6) };
            read_in_place::<L2, 16, 40>(start, end, key, AF_INET6, protocol)
        }
        _ => None,
    }
}

/// The ports, then the addresses, of an IP header of `IP_LEN` bytes at `L2` bytes into the
/// frame, ending in its `ADDR`-byte source and destination (checked in bounds by the caller).
/// Constant offsets: the verifier relates a read to a bounds check only at a fixed offset.
#[inline(always)]
fn read_in_place<const L2: usize, const ADDR: usize, const IP_LEN: usize>(
    start: usize,
    end: usize,
    key: &mut ForwardKey,
    family: u8,
    protocol: u8,
) -> Option<u32> {
    let transport = (start + L2 + IP_LEN) as *const u8;
    let transport_len = match protocol {
        6 => {
            if start + L2 + IP_LEN + 13 > end {
                return None;
            }
            // SAFETY: checked above.
            u32::from(unsafe { *transport.add(12) } >> 4) * 4
        }
        17 => {
            if start + L2 + IP_LEN + 4 > end {
                return None;
            }
            8
        }
        _ => return None,
    };
    let ip = (start + L2) as *const u8;
    // SAFETY: the IP header and the ports were checked in bounds above and by the caller.
    unsafe {
        for word in (0..ADDR).step_by(4) {
            copy_word(
                ip.add(IP_LEN - 2 * ADDR + word),
                key.src_addr.as_mut_ptr().add(word),
            );
            copy_word(
                ip.add(IP_LEN - ADDR + word),
                key.dst_addr.as_mut_ptr().add(word),
            );
        }
        key.src_port = u16::from_be_bytes([*transport, *transport.add(1)]);
        key.dst_port = u16::from_be_bytes([*transport.add(2), *transport.add(3)]);
    }
    key.family = family;
    key.protocol = protocol;
    Some(IP_LEN as u32 + transport_len)
}

/// Fills the family, protocol, addresses and ports; returns the IP plus transport header
/// length (0 when unreadable: the packet still counts, without its tuple). IPv6 extension
/// headers are not walked: such packets count with the extension as their protocol. Out of
/// line, as the rare path.
#[inline(never)]
fn parse(ctx: &TcContext, key: &mut ForwardKey, l2_len: u32, v6: bool) -> u32 {
    let (ip_len, protocol) = if v6 {
        let Some(header) = load::<40>(ctx, l2_len) else {
            return 0;
        };
        key.family = AF_INET6;
        key.src_addr.copy_from_slice(&header[8..24]);
        key.dst_addr.copy_from_slice(&header[24..40]);
        (40, header[6])
    } else {
        let Some(header) = load::<20>(ctx, l2_len) else {
            return 0;
        };
        key.family = AF_INET;
        key.src_addr[..4].copy_from_slice(&header[12..16]);
        key.dst_addr[..4].copy_from_slice(&header[16..20]);
        let later_fragment = u16::from_be_bytes([header[6] & 0x1f, header[7]]) != 0;
        key.protocol = header[9];
        if later_fragment {
            return 20;
        }
        (u32::from(header[0] & 0x0f) * 4, header[9])
    };
    key.protocol = protocol;
    let transport = l2_len + ip_len;
    let transport_len = match protocol {
        6 => match load::<13>(ctx, transport) {
            Some(tcp) => {
                key.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
                key.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
                u32::from(tcp[12] >> 4) * 4
            }
            None => 0,
        },
        // UDP, SCTP, UDP-Lite: ports first.
        17 | 132 | 136 => match load::<4>(ctx, transport) {
            Some(ports) => {
                key.src_port = u16::from_be_bytes([ports[0], ports[1]]);
                key.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
                8
            }
            None => 0,
        },
        _ => 0,
    };
    ip_len + transport_len
}

#[inline(always)]
fn add_counts(counts: *mut WireCount, moved: &WireCount) {
    // SAFETY: `counts` points into a map value the kernel keeps alive for this run.
    unsafe {
        add(&raw mut (*counts).bytes, moved.bytes);
        add(&raw mut (*counts).packets, moved.packets);
        add(&raw mut (*counts).wire_bytes, moved.wire_bytes);
        add(&raw mut (*counts).segments, moved.segments);
    }
}

/// Plain adds to this CPU's counts of the interface (see the module's comment).
#[inline(always)]
fn add_kind(interface: *mut InterfaceCounts, direction: u8, kind: u8, moved: &WireCount) {
    // SAFETY: this CPU's value of the interface, alive for the program's run.
    let counts = unsafe { &mut (*interface).kinds[InterfaceCounts::slot(direction, kind)] };
    counts.bytes = counts.bytes.wrapping_add(moved.bytes);
    counts.packets = counts.packets.wrapping_add(moved.packets);
    counts.wire_bytes = counts.wire_bytes.wrapping_add(moved.wire_bytes);
    counts.segments = counts.segments.wrapping_add(moved.segments);
}

/// Adds to the flow's counts, in the slot `memo` remembers when it still holds the flow, else
/// in the one the index gives (claiming one for a new flow), which `memo` then remembers; when
/// no slot is left the loss is counted (the bytes are in the interface's counts already).
#[inline(never)]
fn add_flow(key: &ForwardKey, moved: &WireCount, memo: *mut u32) {
    if !memo.is_null() {
        // SAFETY: a cache entry of this CPU, alive for the program's run.
        let remembered = unsafe { *memo };
        if let Some(slot) = FORWARDED_COUNTERS.get_ptr_mut(remembered) {
            // SAFETY: a live array element; its key is read, and its counts only added to.
            if same_key(unsafe { &(*slot).key }, key) {
                add_counts(unsafe { &raw mut (*slot).count }, moved);
                return;
            }
        }
    }
    let slots = Slots {
        index: &FORWARDED,
        counters: &FORWARDED_COUNTERS,
        free: &FREE_FORWARDED_SLOTS,
        fresh: &FRESH_FORWARDED_SLOTS,
    };
    let Some(slot) = slots.slot_of(key, || {}) else {
        lose(FLOWS_FULL, moved.bytes);
        return;
    };
    let Some(counts) = FORWARDED_COUNTERS.get_ptr_mut(slot) else {
        lose(FLOWS_FULL, moved.bytes);
        return;
    };
    if !memo.is_null() {
        // SAFETY: as above.
        unsafe { *memo = slot };
    }
    // SAFETY: a live array element; only the field's address is taken.
    add_counts(unsafe { &raw mut (*counts).count }, moved);
}

#[inline(never)]
fn lose(slot: u32, bytes: u64) {
    add_to_slot(&TC_LOSSES, slot, 1);
    add_to_slot(&TC_LOSSES, slot + 1, bytes);
}
