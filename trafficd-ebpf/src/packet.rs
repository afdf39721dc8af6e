//! Reading the 5-tuple of an IP packet as the cgroup_skb hooks see it (data starts at the IP
//! header). Every read is a fixed-size `bpf_skb_load_bytes`, so short or non-linear packets fail
//! cleanly, and no buffer has to be zeroed first (a memset loop per packet is not free).

use aya_ebpf::programs::SkBuffContext;
use trafficd_common::{AF_INET, AF_INET6};

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

/// Source and destination of a packet, in packet order.
pub struct Tuple {
    pub family: u8,
    pub protocol: u8,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
}

/// Reads the tuple; `None` when the headers are not IPv4/IPv6 or are cut short.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Tuple> {
    let first: u8 = ctx.load(0).ok()?;
    match first >> 4 {
        4 => parse_v4(ctx),
        6 => parse_v6(ctx),
        _ => None,
    }
}

#[inline(always)]
fn parse_v4(ctx: &SkBuffContext) -> Option<Tuple> {
    let header: [u8; 20] = ctx.load(0).ok()?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let protocol = header[9];
    let fragment_offset = u16::from_be_bytes([header[6] & 0x1f, header[7]]);
    let mut tuple = Tuple {
        family: AF_INET,
        protocol,
        src_addr: [0; 16],
        dst_addr: [0; 16],
        src_port: 0,
        dst_port: 0,
    };
    tuple.src_addr[..4].copy_from_slice(&header[12..16]);
    tuple.dst_addr[..4].copy_from_slice(&header[16..20]);
    // Later fragments carry no transport header.
    if fragment_offset == 0 && header_len >= 20 {
        read_ports(ctx, header_len, &mut tuple);
    }
    Some(tuple)
}

#[inline(always)]
fn parse_v6(ctx: &SkBuffContext) -> Option<Tuple> {
    let header: [u8; 40] = ctx.load(0).ok()?;
    let mut tuple = Tuple {
        family: AF_INET6,
        protocol: header[6],
        src_addr: [0; 16],
        dst_addr: [0; 16],
        src_port: 0,
        dst_port: 0,
    };
    tuple.src_addr.copy_from_slice(&header[8..24]);
    tuple.dst_addr.copy_from_slice(&header[24..40]);

    let mut offset = 40usize;
    let mut later_fragment = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let ext: [u8; 4] = match tuple.protocol {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_FRAGMENT | IPV6_AUTH => {
                ctx.load(offset).ok()?
            }
            _ => break,
        };
        let next = ext[0];
        offset += match tuple.protocol {
            IPV6_FRAGMENT => {
                later_fragment = u16::from_be_bytes([ext[2], ext[3] & 0xf8]) != 0;
                8
            }
            IPV6_AUTH => (usize::from(ext[1]) + 2) * 4,
            _ => (usize::from(ext[1]) + 1) * 8,
        };
        tuple.protocol = next;
    }
    if !later_fragment {
        read_ports(ctx, offset, &mut tuple);
    }
    Some(tuple)
}

#[inline(always)]
fn read_ports(ctx: &SkBuffContext, offset: usize, tuple: &mut Tuple) {
    if !matches!(
        tuple.protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP
    ) {
        return;
    }
    // Bounded so the verifier can check the load; IPv4 options end at 60, IPv6 walks above stay
    // far below 512.
    if offset > 512 {
        return;
    }
    if let Ok(ports) = ctx.load::<[u8; 4]>(offset) {
        tuple.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        tuple.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    }
}
