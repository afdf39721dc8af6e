//! Reading fields of the kernel's `struct sock` and `struct tcp_sock` from BTF-typed pointers.
//!
//! Rust eBPF has no CO-RE relocations: the daemon reads each field's offset from the running
//! kernel's BTF and sets the globals below at load time (the values here are Linux 6.x's, for
//! the verifier tests only). The loader freezes them, so the verifier knows their values: every
//! read is at a constant offset, which lets it go straight to the socket instead of through
//! `bpf_probe_read_kernel` (a third of a program's own time when measured).

use core::{ffi::c_void, ptr::read_volatile};

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;
use trafficd_common::{AF_INET, AF_INET6};

/// `struct sock` offsets (`__sk_common.skc_*` unless said otherwise).
#[unsafe(no_mangle)]
static SK_FAMILY_OFFSET: u32 = 16;
#[unsafe(no_mangle)]
static SK_COOKIE_OFFSET: u32 = 88;
#[unsafe(no_mangle)]
static SK_STATE_OFFSET: u32 = 18;
/// `sk_protocol` (a `u16` of `struct sock` itself).
#[unsafe(no_mangle)]
static SK_PROTOCOL_OFFSET: u32 = 514;
/// `skc_daddr` and `skc_rcv_saddr`: the IPv4 addresses, remote and local.
#[unsafe(no_mangle)]
static SK_DADDR_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static SK_RCV_SADDR_OFFSET: u32 = 4;
/// `skc_dport` (network order) and `skc_num` (the local port, host order).
#[unsafe(no_mangle)]
static SK_DPORT_OFFSET: u32 = 12;
#[unsafe(no_mangle)]
static SK_NUM_OFFSET: u32 = 14;
#[unsafe(no_mangle)]
static SK_V6_DADDR_OFFSET: u32 = 56;
#[unsafe(no_mangle)]
static SK_V6_RCV_SADDR_OFFSET: u32 = 72;
/// `sk_cgrp_data.cgroup`, then `cgroup.kn`, then `kernfs_node.id`: the socket's cgroup id.
#[unsafe(no_mangle)]
static SK_CGROUP_OFFSET: u32 = 640;
#[unsafe(no_mangle)]
static CGROUP_KN_OFFSET: u32 = 256;
#[unsafe(no_mangle)]
static KERNFS_ID_OFFSET: u32 = 80;

/// `struct tcp_sock` offsets: the kernel's own per-connection counters.
#[unsafe(no_mangle)]
static TCP_BYTES_SENT_OFFSET: u32 = 1432;
#[unsafe(no_mangle)]
static TCP_BYTES_RECEIVED_OFFSET: u32 = 1384;
#[unsafe(no_mangle)]
static TCP_SEGS_OUT_OFFSET: u32 = 1428;
#[unsafe(no_mangle)]
static TCP_SEGS_IN_OFFSET: u32 = 1380;
#[unsafe(no_mangle)]
static TCP_HEADER_LEN_OFFSET: u32 = 1372;

/// The field of BTF-typed object `object` at the offset the global `offset` holds; `None` when
/// the offset could not be inside a socket.
#[inline(always)]
fn field<T>(object: *const c_void, offset: &u32) -> Option<T> {
    // SAFETY: a read-only global, frozen at load time.
    let offset = unsafe { read_volatile(offset) };
    // Bounded so the read stays inside the object whatever the daemon set.
    if offset > 4096 {
        return None;
    }
    // SAFETY: `object` is a BTF-typed kernel pointer and `offset` one of its fields' (from the
    // kernel's BTF); the verifier checks the read against that BTF, and a read through a bad
    // pointer yields 0 rather than a fault.
    Some(unsafe { read_volatile((object as *const u8).add(offset as usize) as *const T) })
}

/// A BTF-typed `struct sock` (or `sock_common`) the kernel handed to a tracing program.
#[derive(Clone, Copy)]
pub struct Sock(pub *const c_void);

impl Sock {
    #[inline(always)]
    pub fn family(self) -> Option<u16> {
        field(self.0, &SK_FAMILY_OFFSET)
    }

    #[inline(always)]
    pub fn is_inet(self) -> bool {
        matches!(
            self.family(),
            Some(family) if family == u16::from(AF_INET) || family == u16::from(AF_INET6)
        )
    }

    #[inline(always)]
    pub fn protocol(self) -> Option<u16> {
        field(self.0, &SK_PROTOCOL_OFFSET)
    }

    #[inline(always)]
    pub fn state(self) -> Option<u8> {
        field(self.0, &SK_STATE_OFFSET)
    }

    /// The socket's cookie, as `bpf_get_socket_cookie` gives it. The kernel makes a socket's
    /// cookie on first demand and keeps it in the socket (`skc_cookie`, written once from 0):
    /// once made, it is read straight from there, which saves a helper call (each call and
    /// return is dear under the SRSO mitigation). The helper makes it when it is not there yet.
    #[inline(always)]
    pub fn cookie(self) -> u64 {
        match field::<u64>(self.0, &SK_COOKIE_OFFSET) {
            Some(cookie) if cookie != 0 => cookie,
            // SAFETY: `self.0` is a BTF-typed socket.
            _ => unsafe { bpf_get_socket_cookie(self.0 as *mut c_void) },
        }
    }

    /// (local, remote) port, both in host order.
    #[inline(always)]
    pub fn ports(self) -> Option<(u16, u16)> {
        let remote: u16 = field(self.0, &SK_DPORT_OFFSET)?;
        Some((field(self.0, &SK_NUM_OFFSET)?, u16::from_be(remote)))
    }

    /// (local, remote) IPv4 address, network order.
    #[inline(always)]
    pub fn v4_addrs(self) -> Option<([u8; 4], [u8; 4])> {
        Some((
            field(self.0, &SK_RCV_SADDR_OFFSET)?,
            field(self.0, &SK_DADDR_OFFSET)?,
        ))
    }

    /// (local, remote) IPv6 address, network order.
    #[inline(always)]
    pub fn v6_addrs(self) -> Option<([u8; 16], [u8; 16])> {
        Some((
            read_v6(self.0, &SK_V6_RCV_SADDR_OFFSET)?,
            read_v6(self.0, &SK_V6_DADDR_OFFSET)?,
        ))
    }

    /// The id of the socket's cgroup, as `bpf_skb_cgroup_id` gives it for its packets.
    #[inline(always)]
    pub fn cgroup_id(self) -> Option<u64> {
        let cgroup: *const c_void = field(self.0, &SK_CGROUP_OFFSET)?;
        if cgroup.is_null() {
            return None;
        }
        let node: *const c_void = field(cgroup, &CGROUP_KN_OFFSET)?;
        if node.is_null() {
            return None;
        }
        field(node, &KERNFS_ID_OFFSET)
    }
}

/// An in6_addr in two 8-byte reads (the verifier takes a read of up to 8 bytes inside it).
#[inline(always)]
fn read_v6(sk: *const c_void, offset: &u32) -> Option<[u8; 16]> {
    // SAFETY: as for `field`.
    let at = unsafe { read_volatile(offset) };
    if at > 4096 {
        return None;
    }
    let base = (sk as *const u8).wrapping_add(at as usize);
    // SAFETY: as for `field`: both halves lie inside the in6_addr at `at`.
    let (high, low) = unsafe {
        (
            read_volatile(base as *const [u8; 8]),
            read_volatile(base.add(8) as *const [u8; 8]),
        )
    };
    let mut addr = [0u8; 16];
    addr[..8].copy_from_slice(&high);
    addr[8..].copy_from_slice(&low);
    Some(addr)
}

/// The kernel's counters of one TCP connection, as read from its `struct tcp_sock`.
#[derive(Clone, Copy, Default)]
pub struct TcpCounters {
    /// Payload sent, retransmissions included (`bytes_sent`).
    pub sent_bytes: u64,
    /// Payload received in order (`bytes_received`).
    pub received_bytes: u64,
    /// Segments sent and received, pure ACKs and retransmissions included (`segs_out`,
    /// `segs_in`: 32 bits, wrapping).
    pub segs_out: u32,
    pub segs_in: u32,
}

/// A BTF-typed `struct tcp_sock`.
#[derive(Clone, Copy)]
pub struct TcpSock(pub *const c_void);

impl TcpSock {
    #[inline(always)]
    pub fn counters(self) -> Option<TcpCounters> {
        Some(TcpCounters {
            sent_bytes: field(self.0, &TCP_BYTES_SENT_OFFSET)?,
            received_bytes: field(self.0, &TCP_BYTES_RECEIVED_OFFSET)?,
            segs_out: field(self.0, &TCP_SEGS_OUT_OFFSET)?,
            segs_in: field(self.0, &TCP_SEGS_IN_OFFSET)?,
        })
    }

    /// The TCP header length of the connection's segments, options included.
    #[inline(always)]
    pub fn header_len(self) -> Option<u16> {
        field(self.0, &TCP_HEADER_LEN_OFFSET)
    }
}
