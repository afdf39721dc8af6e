//! Established TCP connections counted from the kernel's own counters of each connection
//! (`tcp_sock`: payload bytes and segments each way), instead of packet by packet.
//!
//! Per packet, a TCP flow cost the cgroup_skb programs most of their time in the atomic adds
//! on its counters: a connection's data is counted on the sender's CPU and its ACKs on the
//! receiver's, so the counters' cache line moves between CPUs at every packet. The kernel
//! already counts each connection on the connection's own lines. So, once the daemon has
//! turned it on (the TCP_FROM_SOCKETS control word):
//! - the cgroup_skb programs leave a TCP packet alone when its socket is in a state this
//!   module counts (`counts`);
//! - `tcp_state` registers a connection as it becomes established, with its counters as they
//!   are then (what came before was counted per packet), and reports its last bytes when it
//!   closes;
//! - the send and receive programs report what a registered connection moved since its last
//!   report at its first call after each drain (`report_if_due`);
//! - `tcp_sweep`, run by the daemon at start and then every `--tcp-sweep-interval` (30 s) in
//!   every network namespace, reports what every registered connection moved since (those
//!   nobody calls on: a sender blocked in one long write, a socket closed with data still
//!   queued), and registers the connections that were established before trafficd started.
//!
//! Reporting adds to the connection's flow slot, the same one its packets would have used, so
//! nothing downstream can tell the difference but the timing: a busy connection's bytes show up
//! one drain later than per packet.
//!
//! Wire bytes are payload plus one IP and TCP header per segment (the header length of the
//! connection's segments, options included, as the packet hooks count them). Retransmitted
//! payload is counted on the sending side (`bytes_sent` includes it); on the receiving side a
//! duplicate segment is counted by its header only (`bytes_received` counts new data).

use core::{
    ffi::c_void,
    intrinsics::{atomic_cxchg, AtomicOrdering},
    mem::MaybeUninit,
    ptr::{null_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{__sk_buff, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::{bpf_sk_storage_get, bpf_skc_to_tcp_sock},
    EbpfContext,
};
use trafficd_common::{
    control::{DRAIN_EPOCH, TCP_FROM_SOCKETS},
    FlowKey, Loss, Traffic, AF_INET, AF_INET6,
};

use crate::{
    counters::{count_loss, fetch_add, zeroed},
    flow_slots::add_to_flow,
    maps::{control_word, TcpSocket, TCP_SOCKETS},
    packet::IPPROTO_TCP,
    sock::{Sock, TcpSock},
};

/// TCP states whose packets are counted here: established, and closing down after it.
/// `TCP_ESTABLISHED` 1, `FIN_WAIT1` 4, `FIN_WAIT2` 5, `CLOSE_WAIT` 8, `LAST_ACK` 9, `CLOSING` 11.
const COUNTED_STATES: u32 = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9 | 1 << 11;
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE: u8 = 7;

/// Whether a socket in `state` is counted here.
#[inline(always)]
pub fn is_counted(state: u32) -> bool {
    state < 16 && COUNTED_STATES & (1 << state) != 0
}

/// Whether the daemon counts TCP connections from their counters now. Until it does, nothing
/// is registered or reported here, so no byte is counted both ways.
#[inline(always)]
pub fn is_on() -> bool {
    // SAFETY: a live array element.
    matches!(control_word(TCP_FROM_SOCKETS), Some(on) if unsafe { read_volatile(on) } != 0)
}

/// Whether the packet of `skb`, whose parsed tuple is `key`, is counted from its socket's
/// counters: a TCP packet of its own socket (the local port matches: a raw socket's packets
/// never do), in a counted state, while the daemon has it on. Reads only the socket fields the
/// context offers, without a helper call.
#[inline(always)]
pub fn counts(skb: *mut __sk_buff, key: &FlowKey) -> bool {
    if key.protocol != IPPROTO_TCP {
        return false;
    }
    if !is_on() {
        return false;
    }
    // SAFETY: the program's context; `sk` is checked for null before its fields are read.
    unsafe {
        let sk = (*skb).__bindgen_anon_2.sk;
        !sk.is_null()
            && is_counted(read_volatile(&raw const (*sk).state))
            && read_volatile(&raw const (*sk).src_port) == u32::from(key.local_port)
    }
}

/// The TCP socket behind `sk`, when it is one (a full socket of protocol TCP).
#[inline(always)]
pub fn tcp_sock(sk: *const c_void) -> Option<TcpSock> {
    // SAFETY: `sk` is a BTF-typed socket pointer; the helper returns NULL for anything else.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) };
    (!tcp.is_null()).then_some(TcpSock(tcp as *const c_void))
}

/// The registration of BTF-typed socket `sk`, if any (`create`: an empty one if none).
#[inline(always)]
pub fn registration(sk: *const c_void, create: bool) -> Option<*mut TcpSocket> {
    let flags = if create {
        u64::from(BPF_SK_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    let map = &raw const TCP_SOCKETS as *mut c_void;
    // SAFETY: `sk` is a BTF-typed socket; with a NULL value the storage is made zeroed.
    let storage = unsafe { bpf_sk_storage_get(map, sk as *mut c_void, null_mut(), flags) };
    (!storage.is_null()).then_some(storage as *mut TcpSocket)
}

/// Called on every send and receive call, in the calling process: reports what the call's
/// connection moved, if it is registered and was not reported since the daemon's last drain.
/// A busy connection is so reported about once per drain, by its own calls; the daemon's sweep,
/// which walks the whole TCP hash table once per network namespace, is left to find
/// connections nobody calls on.
///
/// `checked_in` is where the caller's CPU remembers the drain in which it last checked socket
/// `cookie` (its RECENT_USE entry): the calls after that in the same drain, of any protocol,
/// cost a compare instead of the socket's protocol (a cache line of the socket the call has
/// not touched), the flag and a socket-storage lookup. A connection registered after its check
/// (by the sweep) reports at the first call of the next drain instead.
#[inline(always)]
pub fn report_if_due<C: EbpfContext>(
    ctx: &C,
    sk: *const c_void,
    cookie: u64,
    checked_in: Option<*mut u64>,
) {
    let Some(epoch) = control_word(DRAIN_EPOCH) else {
        return;
    };
    // SAFETY: a live array element.
    let epoch = unsafe { read_volatile(epoch) };
    if let Some(checked_in) = checked_in {
        let mark = check_mark(epoch, cookie);
        // SAFETY: the caller's live map value, this CPU's.
        unsafe {
            if read_volatile(checked_in) == mark {
                return;
            }
            write_volatile(checked_in, mark);
        }
    }
    report_unless_reported_in(ctx, sk, epoch);
}

/// Reports the connection of `sk`, if it is one and registered, unless it was reported in
/// drain `epoch` already.
///
/// Out of line: the calls above mostly skip it, and keeping its code apart keeps theirs short
/// (fewer instruction cache lines to fetch on every call).
#[inline(never)]
fn report_unless_reported_in<C: EbpfContext>(ctx: &C, sk: *const c_void, epoch: u64) {
    if Sock(sk).protocol() != Some(u16::from(IPPROTO_TCP)) || !is_on() {
        return;
    }
    let Some(socket) = registration(sk, false) else {
        return;
    };
    // SAFETY: live map values, read and written field by field. Two calls racing here may
    // both report: the baselines' compare-and-swap gives each only what the other did not.
    unsafe {
        if read_volatile(&raw const (*socket).reported_in) == epoch {
            return;
        }
        write_volatile(&raw mut (*socket).reported_in, epoch);
    }
    if let Some(tcp) = tcp_sock(sk) {
        report(ctx, tcp, socket);
    }
}

/// Drain `epoch` bound to socket `cookie`: another socket taking the same entry does not
/// match it.
#[inline(always)]
fn check_mark(epoch: u64, cookie: u64) -> u64 {
    epoch.wrapping_add(1) ^ cookie.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Registers `tcp` with its flow and its counters as they are now: from here on, what it moves
/// is reported from them.
#[inline(always)]
pub fn register<C: EbpfContext>(ctx: &C, tcp: TcpSock) {
    let mut place = MaybeUninit::<FlowKey>::uninit();
    let key = zeroed(&mut place);
    let (Some(()), Some(counters), Some(tcp_header)) = (
        fill_flow_key(Sock(tcp.0), key),
        tcp.counters(),
        tcp.header_len(),
    ) else {
        return;
    };
    let Some(socket) = registration(tcp.0, true) else {
        count_loss(ctx, Loss::TcpSocketUnregistered, 0);
        return;
    };
    let ip_header: u64 = if key.family == AF_INET { 20 } else { 40 };
    // SAFETY: this socket's live storage; `ready` is 0 while the rest is written, so a report
    // on another CPU meanwhile does nothing.
    unsafe {
        write_volatile(&raw mut (*socket).ready, 0);
        (*socket).key = *key;
        (*socket).header_len = ip_header + u64::from(tcp_header);
        write_volatile(&raw mut (*socket).sent_bytes, counters.sent_bytes);
        write_volatile(&raw mut (*socket).received_bytes, counters.received_bytes);
        write_volatile(&raw mut (*socket).segs_out, u64::from(counters.segs_out));
        write_volatile(&raw mut (*socket).segs_in, u64::from(counters.segs_in));
        fetch_add(&raw mut (*socket).ready, 1);
    }
}

/// Adds what `tcp` moved since it was last reported to its flow.
#[inline(always)]
pub fn report<C: EbpfContext>(ctx: &C, tcp: TcpSock, socket: *mut TcpSocket) {
    // SAFETY: this socket's live storage, read field by field.
    if unsafe { read_volatile(&raw const (*socket).ready) } == 0 {
        return;
    }
    let Some(now) = tcp.counters() else {
        return;
    };
    // SAFETY: as above; each baseline moves forward by compare-and-swap, so two reports of the
    // same socket at once (the sweep and the close) each add only what it moved past the other.
    let (sent, received, segs_out, segs_in, header_len) = unsafe {
        (
            advance(&raw mut (*socket).sent_bytes, now.sent_bytes, u64::MAX),
            advance(
                &raw mut (*socket).received_bytes,
                now.received_bytes,
                u64::MAX,
            ),
            advance(
                &raw mut (*socket).segs_out,
                u64::from(now.segs_out),
                0xffff_ffff,
            ),
            advance(
                &raw mut (*socket).segs_in,
                u64::from(now.segs_in),
                0xffff_ffff,
            ),
            read_volatile(&raw const (*socket).header_len),
        )
    };
    let moved = Traffic {
        tx_bytes: sent + segs_out * header_len,
        tx_packets: segs_out,
        rx_bytes: received + segs_in * header_len,
        rx_packets: segs_in,
    };
    if !moved.is_zero() {
        // SAFETY: as above; the key is written once, before `ready`.
        add_to_flow(ctx, unsafe { &(*socket).key }, &moved);
    }
}

/// Moves `baseline` up to `now`, a counter that wraps at `mask`, and returns by how much; 0
/// when another report moved it there (or past) first.
#[inline(always)]
unsafe fn advance(baseline: *mut u64, now: u64, mask: u64) -> u64 {
    for _ in 0..4 {
        // SAFETY: the caller's live storage field.
        let old = unsafe { read_volatile(baseline) };
        let delta = now.wrapping_sub(old) & mask;
        // Behind `old`: another report already read a later value.
        if delta == 0 || delta > mask / 2 {
            return 0;
        }
        // SAFETY: as above.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                baseline, old, now,
            )
        };
        if swapped {
            return delta;
        }
    }
    0
}

/// Fills `key`, zeroed, with the flow key the packet hooks give the connection's packets: its
/// cookie, cgroup and 5-tuple, local side first; an IPv6 socket talking to an IPv4 peer has
/// IPv4 packets.
#[inline(always)]
fn fill_flow_key(sk: Sock, key: &mut FlowKey) -> Option<()> {
    key.cookie = sk.cookie();
    key.cgroup_id = sk.cgroup_id()?;
    key.protocol = IPPROTO_TCP;
    (key.local_port, key.remote_port) = sk.ports()?;
    let family = sk.family()?;
    if family == u16::from(AF_INET6) {
        let (local, remote) = sk.v6_addrs()?;
        if !is_v4_mapped(&remote) {
            key.family = AF_INET6;
            key.local_addr = local;
            key.remote_addr = remote;
            return Some(());
        }
    } else if family != u16::from(AF_INET) {
        return None;
    }
    let (local, remote) = sk.v4_addrs()?;
    key.family = AF_INET;
    key.local_addr[..4].copy_from_slice(&local);
    key.remote_addr[..4].copy_from_slice(&remote);
    Some(())
}

/// `::ffff:a.b.c.d`.
#[inline(always)]
fn is_v4_mapped(addr: &[u8; 16]) -> bool {
    addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff
}
