//! Reading fields of the kernel's `struct sock` and `struct tcp_sock` from BTF-typed pointers.
//!
//! Rust eBPF has no CO-RE relocations: each field's offset is a placeholder constant in the
//! code ([`kernel_field`]), which the daemon replaces by the offset it reads from the running
//! kernel's BTF before loading. The verifier sees a constant: every read is at an offset it
//! knows, which lets it go straight to the socket instead of through a `bpf_probe_read_kernel`
//! helper call per field, and no read of the offset itself comes first.

use core::{arch::asm, ffi::c_void, ptr::read_volatile};

use aya_ebpf::helpers::generated::bpf_get_socket_cookie;
use trafficd_common::{kernel_field, AF_INET, AF_INET6};

/// The offset of kernel field `FIELD` (a [`kernel_field`] placeholder, which the daemon
/// replaces in the code by the offset in the running kernel before loading).
#[inline(always)]
fn offset<const FIELD: u64>() -> u64 {
    let offset: u64;
    // SAFETY: loads a constant into a register, nothing else. Opaque to LLVM, which could
    // otherwise fold the placeholder into arithmetic the daemon would not find.
    unsafe {
        asm!("{0} = {1} ll", out(reg) offset, const FIELD, options(pure, nomem, nostack));
    }
    offset
}

/// The field `FIELD` of BTF-typed object `object`; `None` when its offset could not be inside
/// a socket.
#[inline(always)]
fn field<T, const FIELD: u64>(object: *const c_void) -> Option<T> {
    read_at(object, offset::<FIELD>())
}

/// The `T` at byte `offset` of BTF-typed object `object`, a field's offset from the kernel's
/// BTF (or a part of one); `None` when it could not be inside a socket.
#[inline(always)]
fn read_at<T>(object: *const c_void, offset: u64) -> Option<T> {
    // Bounded so the read stays inside the object whatever the offset. The verifier sees the
    // constant and never follows the branch, but the JIT still emits the compare.
    if offset > 4096 {
        return None;
    }
    // SAFETY: `object` is a BTF-typed kernel pointer and `offset` inside one of its fields
    // (from the kernel's BTF); the verifier checks the read against that BTF, and a read
    // through a bad pointer yields 0 rather than a fault.
    Some(unsafe { read_volatile((object as *const u8).add(offset as usize) as *const T) })
}

/// A BTF-typed `struct sock` (or `sock_common`) the kernel handed to a tracing program.
#[derive(Clone, Copy)]
pub struct Sock(pub *const c_void);

impl Sock {
    #[inline(always)]
    pub fn family(self) -> Option<u16> {
        field::<_, { kernel_field::SK_FAMILY }>(self.0)
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
        field::<_, { kernel_field::SK_PROTOCOL }>(self.0)
    }

    #[inline(always)]
    pub fn state(self) -> Option<u8> {
        field::<_, { kernel_field::SK_STATE }>(self.0)
    }

    /// The socket's cookie, as `bpf_get_socket_cookie` gives it. The kernel makes a socket's
    /// cookie on first demand and keeps it in the socket (`skc_cookie`, written once from 0):
    /// once made, it is read straight from there, which saves a helper call (each call and
    /// return is dear under the SRSO mitigation). The helper makes it when it is not there yet.
    #[inline(always)]
    pub fn cookie(self) -> u64 {
        match field::<u64, { kernel_field::SK_COOKIE }>(self.0) {
            Some(cookie) if cookie != 0 => cookie,
            // SAFETY: `self.0` is a BTF-typed socket.
            _ => unsafe { bpf_get_socket_cookie(self.0 as *mut c_void) },
        }
    }

    /// (local, remote) port, both in host order.
    #[inline(always)]
    pub fn ports(self) -> Option<(u16, u16)> {
        let remote: u16 = field::<_, { kernel_field::SK_DPORT }>(self.0)?;
        Some((
            field::<_, { kernel_field::SK_NUM }>(self.0)?,
            u16::from_be(remote),
        ))
    }

    /// (local, remote) IPv4 address, network order.
    #[inline(always)]
    pub fn v4_addrs(self) -> Option<([u8; 4], [u8; 4])> {
        Some((
            field::<_, { kernel_field::SK_RCV_SADDR }>(self.0)?,
            field::<_, { kernel_field::SK_DADDR }>(self.0)?,
        ))
    }

    /// (local, remote) IPv6 address, network order.
    #[inline(always)]
    pub fn v6_addrs(self) -> Option<([u8; 16], [u8; 16])> {
        Some((
            read_v6::<{ kernel_field::SK_V6_RCV_SADDR }>(self.0)?,
            read_v6::<{ kernel_field::SK_V6_DADDR }>(self.0)?,
        ))
    }

    /// The id of the socket's cgroup, as `bpf_skb_cgroup_id` gives it for its packets.
    #[inline(always)]
    pub fn cgroup_id(self) -> Option<u64> {
        let cgroup: *const c_void = field::<_, { kernel_field::SK_CGROUP }>(self.0)?;
        if cgroup.is_null() {
            return None;
        }
        let node: *const c_void = field::<_, { kernel_field::CGROUP_KN }>(cgroup)?;
        if node.is_null() {
            return None;
        }
        field::<_, { kernel_field::KERNFS_ID }>(node)
    }
}

/// An in6_addr in two 8-byte reads (the verifier takes a read of up to 8 bytes inside it).
#[inline(always)]
fn read_v6<const FIELD: u64>(sk: *const c_void) -> Option<[u8; 16]> {
    let at = offset::<FIELD>();
    let high: [u8; 8] = read_at(sk, at)?;
    let low: [u8; 8] = read_at(sk, at + 8)?;
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
            sent_bytes: field::<_, { kernel_field::TCP_BYTES_SENT }>(self.0)?,
            received_bytes: field::<_, { kernel_field::TCP_BYTES_RECEIVED }>(self.0)?,
            segs_out: field::<_, { kernel_field::TCP_SEGS_OUT }>(self.0)?,
            segs_in: field::<_, { kernel_field::TCP_SEGS_IN }>(self.0)?,
        })
    }

    /// The TCP header length of the connection's segments, options included.
    #[inline(always)]
    pub fn header_len(self) -> Option<u16> {
        field::<_, { kernel_field::TCP_HEADER_LEN }>(self.0)
    }
}
