//! Reading the 5-tuple of an IP packet as the cgroup_skb hooks see it (data starts at the IP
//! header). Every read is a fixed-size `bpf_skb_load_bytes`, so short or non-linear packets fail
//! cleanly, and no buffer has to be zeroed first (a memset loop per packet is not free).
//!
//! The tuple is written straight into the flow key, which the caller zeroed: passing a large
//! `Option<Tuple>` around made LLVM spill registers the verifier considers uninitialized.

use core::{
    hint::black_box,
    mem::{size_of, MaybeUninit},
};

use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::SkBuffContext};
use trafficd_common::{FlowKey, AF_INET, AF_INET6};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPPROTO_UDPLITE: u8 = 136;
const IPPROTO_SCTP: u8 = 132;

// IPv6 extension headers we step over. Others end the walk: the protocol is then counted by
// its number, without ports.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers walked at most. Linux itself sends at most a few; a packet with more is
/// counted with the last header type reached as its protocol.
const MAX_IPV6_EXT_HEADERS: usize = 6;

/// `N` packet bytes at `offset`. aya's `load` does the same, but LLVM zero-filled its buffer
/// with an out-of-line memset loop first; with the buffer handed straight to the helper, it
/// does not.
#[inline(always)]
fn load<const N: usize>(ctx: &SkBuffContext, offset: usize) -> Option<[u8; N]> {
    let mut buf = MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: the helper writes exactly N bytes into `buf` or fails.
    let ret = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            offset as u32,
            buf.as_mut_ptr().cast(),
            size_of::<[u8; N]>() as u32,
        )
    };
    // SAFETY: written by the helper when it returns 0.
    (ret == 0).then(|| unsafe { buf.assume_init() })
}

/// Fills the family, protocol, addresses and ports of `key` from the packet, local side first
/// (`egress`: the source is local). Returns the IP plus transport header length, what every
/// segment of a GSO packet carries again on the wire (0 when the transport is unknown), or
/// `None` when the headers are not IPv4/IPv6 or are cut short.
#[inline(always)]
pub fn parse_into(ctx: &SkBuffContext, key: &mut FlowKey, egress: bool) -> Option<u16> {
    if let Some(header_len) = parse_in_place(ctx, key, egress) {
        return Some(header_len);
    }
    parse_loaded(ctx, key, egress)
}

/// Any IPv4 or IPv6 packet, its headers copied out with `bpf_skb_load_bytes`. Out of line, as
/// the rare path: the common one stays short.
#[inline(never)]
fn parse_loaded(ctx: &SkBuffContext, key: &mut FlowKey, egress: bool) -> Option<u16> {
    let [first] = load::<1>(ctx, 0)?;
    match first >> 4 {
        4 => parse_v4(ctx, key, egress),
        6 => parse_v6(ctx, key, egress),
        _ => None,
    }
}

/// The common case without a helper call: IPv4 without options or IPv6 without extension
/// headers, carrying TCP or UDP, whose headers lie in the packet's linear part (where the
/// kernel builds them). The headers are read in place through the verifier-checked packet
/// pointers; three `bpf_skb_load_bytes` calls cost more than the rest of the parse. `None`
/// leaves `key` untouched for the general parser below.
#[inline(always)]
fn parse_in_place(ctx: &SkBuffContext, key: &mut FlowKey, egress: bool) -> Option<u16> {
    let skb = ctx.skb.skb;
    // SAFETY: context fields a cgroup_skb program may read; the verifier makes them the packet's
    // start and end, and checks every read below against them. Both are 32-bit fields: left
    // visible, LLVM would compare them with 32-bit jumps, which the verifier does not take as
    // bounds checks; `black_box` hides that their high halves are zero.
    let (start, end) = unsafe {
        (
            black_box((*skb).data as usize),
            black_box((*skb).data_end as usize),
        )
    };
    if start + 1 > end {
        return None;
    }
    // SAFETY: in bounds, checked above.
    let version = unsafe { *(start as *const u8) } >> 4;
    let ip = start as *const u8;
    match version {
        4 => {
            if start + 20 > end {
                return None;
            }
            // SAFETY: the 20 bytes were checked above.
            let (first, fragment, protocol) =
                unsafe { (*ip, [*ip.add(6) & 0x3f, *ip.add(7)], *ip.add(9)) };
            // Options, or any fragment (first ones included, which the general parser counts
            // with ports): the general parser.
            if first != 0x45 || fragment != [0, 0] {
                return None;
            }
            read_in_place::<4, 20>(start, end, key, egress, AF_INET, protocol)
        }
        6 => {
            if start + 40 > end {
                return None;
            }
            // SAFETY: the 40 bytes were checked above.
            let protocol = unsafe { *ip.add(6) };
            read_in_place::<16, 40>(start, end, key, egress, AF_INET6, protocol)
        }
        _ => None,
    }
}

/// The ports, then the addresses, of an IP header of `IP_LEN` bytes ending in its source and
/// destination addresses of `ADDR` bytes each (checked in bounds by the caller). Offsets are
/// constants: the verifier relates a read to a bounds check only at a fixed offset.
#[inline(always)]
fn read_in_place<const ADDR: usize, const IP_LEN: usize>(
    start: usize,
    end: usize,
    key: &mut FlowKey,
    egress: bool,
    family: u8,
    protocol: u8,
) -> Option<u16> {
    let transport = (start + IP_LEN) as *const u8;
    let transport_header_len = match protocol {
        IPPROTO_TCP => {
            // Through the data offset, byte 12.
            if start + IP_LEN + 13 > end {
                return None;
            }
            // SAFETY: checked above.
            usize::from(unsafe { *transport.add(12) } >> 4) * 4
        }
        IPPROTO_UDP => {
            if start + IP_LEN + 4 > end {
                return None;
            }
            8
        }
        _ => return None,
    };
    let ip = start as *const u8;
    let (local, remote) = local_first(egress, IP_LEN - 2 * ADDR, IP_LEN - ADDR);
    // SAFETY: the IP header and the ports were checked in bounds above and by the caller.
    unsafe {
        for word in (0..ADDR).step_by(4) {
            copy_word(ip.add(local + word), key.local_addr.as_mut_ptr().add(word));
            copy_word(
                ip.add(remote + word),
                key.remote_addr.as_mut_ptr().add(word),
            );
        }
        (key.local_port, key.remote_port) = local_first(
            egress,
            u16::from_be_bytes([*transport, *transport.add(1)]),
            u16::from_be_bytes([*transport.add(2), *transport.add(3)]),
        );
    }
    key.family = family;
    key.protocol = protocol;
    Some((IP_LEN + transport_header_len) as u16)
}

/// Copies 4 bytes of the packet at `from`, which may be unaligned (an IP header after a 14-byte
/// Ethernet header is 2-byte aligned), to `to`, 4-byte aligned, in one load and one store: byte
/// by byte, an IPv6 packet's addresses were 64 loads and stores and an IPv4 one's 16. The
/// verifier allows unaligned packet reads on x86-64 and arm64 (any kernel with efficient
/// unaligned access); elsewhere it would refuse the program at load.
///
/// # Safety
/// `from` is in bounds of the packet for 4 bytes; `to` is valid and aligned for a `u32`.
#[inline(always)]
pub unsafe fn copy_word(from: *const u8, to: *mut u8) {
    // SAFETY: the caller's.
    unsafe { (to as *mut u32).write(core::ptr::read_unaligned(from as *const u32)) };
}

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext, key: &mut FlowKey, egress: bool) -> Option<u16> {
    let header = load::<20>(ctx, 0)?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let fragment_offset = u16::from_be_bytes([header[6] & 0x1f, header[7]]);
    key.family = AF_INET;
    key.protocol = header[9];
    let (local, remote) = local_first(egress, &header[12..16], &header[16..20]);
    key.local_addr[..4].copy_from_slice(local);
    key.remote_addr[..4].copy_from_slice(remote);
    // Later fragments carry no transport header.
    if fragment_offset != 0 || header_len < 20 {
        return Some(0);
    }
    Some(read_ports(ctx, header_len, key, egress))
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext, key: &mut FlowKey, egress: bool) -> Option<u16> {
    let header = load::<40>(ctx, 0)?;
    key.family = AF_INET6;
    let mut protocol = header[6];
    let (local, remote) = local_first(egress, &header[8..24], &header[24..40]);
    key.local_addr.copy_from_slice(local);
    key.remote_addr.copy_from_slice(remote);

    let mut offset = 40usize;
    let mut later_fragment = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let ext: [u8; 4] = match protocol {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT | IPV6_AUTH => {
                load::<4>(ctx, offset)?
            }
            _ => break,
        };
        offset += match protocol {
            IPV6_FRAGMENT => {
                later_fragment = u16::from_be_bytes([ext[2], ext[3] & 0xf8]) != 0;
                8
            }
            IPV6_AUTH => (usize::from(ext[1]) + 2) * 4,
            _ => (usize::from(ext[1]) + 1) * 8,
        };
        protocol = ext[0];
    }
    key.protocol = protocol;
    if later_fragment {
        return Some(0);
    }
    Some(read_ports(ctx, offset, key, egress))
}

/// A packet's (source, destination) as (local, remote): on egress the source is local.
#[inline(always)]
fn local_first<T>(egress: bool, source: T, destination: T) -> (T, T) {
    if egress {
        (source, destination)
    } else {
        (destination, source)
    }
}

/// Reads the ports at `offset`; returns the header length through the transport header.
#[inline(always)]
fn read_ports(ctx: &SkBuffContext, offset: usize, key: &mut FlowKey, egress: bool) -> u16 {
    // Bounded so the verifier can check the load; IPv4 options end at 60, the IPv6 walk above
    // stays far below 512.
    if offset > 512 {
        return 0;
    }
    let (src, dst, header_len) = match key.protocol {
        IPPROTO_TCP => {
            // Ports, sequence and ack numbers, then the data offset.
            let Some(tcp) = load::<13>(ctx, offset) else {
                return 0;
            };
            let data_offset = usize::from(tcp[12] >> 4) * 4;
            (
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
                offset + data_offset,
            )
        }
        // UDP and UDP-Lite headers are 8 bytes; SCTP's common header is 12, and SCTP is not
        // segmented by GSO here, so its header length only matters for the ports.
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => {
            let Some(ports) = load::<4>(ctx, offset) else {
                return 0;
            };
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
                offset + 8,
            )
        }
        _ => return 0,
    };
    (key.local_port, key.remote_port) = local_first(egress, src, dst);
    header_len as u16
}
