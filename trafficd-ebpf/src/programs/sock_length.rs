//! tp_btf `sock:sock_send_length` and `sock:sock_recv_length`: fired in the calling process
//! after every `sock_sendmsg`/`sock_recvmsg` with the bytes moved.
//!
//! They record who owns each socket (so a process that sends and exits at once is still named,
//! with its comm) and how much payload each process moved through it (so a socket shared
//! after fork is split between the processes by what each one sent and received). The payload
//! of a (socket, process) waits in the RECENT_USE entry of its CPU that a hash of the pair
//! picks, and goes to SOCKET_PROCESSES when another pair takes that entry: runs of calls on a
//! few sockets cost no map lookup.

use core::{
    ffi::c_void,
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::bpf_get_current_cgroup_id,
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use trafficd_common::{
    control::OWNER_CHANGES, Loss, Payload, RecentUse, SocketOwner, SocketProcessKey, COMM_LEN,
    RECENT_USES,
};

use crate::{
    counters::{add, count_loss, entry, fetch_add, fetch_add_u32, take},
    maps::{control_word, this_cpu_entry, OWNERS, PROCESSES, RECENT_USE, SOCKET_PROCESSES},
    sock::Sock,
    tcp_socket,
};

const MSG_PEEK: i32 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Send,
    Receive,
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn trafficd_sock_send(ctx: BtfTracePointContext) -> i32 {
    record(&ctx, Call::Send);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn trafficd_sock_recv(ctx: BtfTracePointContext) -> i32 {
    record(&ctx, Call::Receive);
    0
}

/// tp_btf `tcp:tcp_rcv_space_adjust`: fired in process context whenever a process consumes TCP
/// data, including through splice(2), which bypasses `sock_recvmsg` and so the tracepoint
/// above (proxies such as haproxy splice). Only the owner is recorded here; bytes of such a
/// socket then go to it whole.
#[btf_tracepoint(function = "tcp_rcv_space_adjust")]
pub fn trafficd_tcp_consume(ctx: BtfTracePointContext) -> i32 {
    let sk: *const c_void = ctx.arg(0);
    if !sk.is_null() {
        let cookie = Sock(sk).cookie();
        let pid_tgid = bpf_get_current_pid_tgid();
        // The tracepoint is TCP's own: every socket here is an IP one.
        use_socket(
            &ctx,
            cookie,
            (pid_tgid >> 32) as u32,
            pid_tgid as u32,
            || true,
        );
    }
    0
}

#[inline(always)]
fn record(ctx: &BtfTracePointContext, call: Call) {
    let sk: *const c_void = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let flags: i64 = ctx.arg(2);
    // The tracepoint's `ret` and `flags` are ints.
    let ret = ret as i32;
    let flags = flags as i32;
    if ret <= 0 || sk.is_null() {
        return;
    }
    // A peek is read again later; counting it would count the bytes twice.
    if call == Call::Receive && flags & MSG_PEEK != 0 {
        return;
    }
    let cookie = Sock(sk).cookie();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let bytes = ret as u64;

    let moved = match call {
        Call::Send => Payload {
            sent_bytes: bytes,
            sent_calls: 1,
            ..Payload::default()
        },
        Call::Receive => Payload {
            received_bytes: bytes,
            received_calls: 1,
            ..Payload::default()
        },
    };
    // The tracepoints fire for every socket; only IP ones are recorded. The family is checked
    // when the CPU's entry does not hold the socket already: a cookie is never reused, so one
    // that an entry holds is an IP socket's, and the common call skips a line of the socket.
    let is_ip = || Sock(sk).is_inet();
    match use_socket(ctx, cookie, tgid, pid_tgid as u32, is_ip) {
        Use::Skip => {}
        Use::Entry(recent) => {
            // SAFETY: this CPU's live array element; only its fields' addresses are taken.
            let (payload, checked_in) =
                unsafe { (&raw mut (*recent).payload, &raw mut (*recent).checked_in) };
            add_payload(payload, &moved);
            tcp_socket::report_if_due(ctx, sk, cookie, Some(checked_in));
        }
        Use::NoEntry => {
            add_to_socket_processes(ctx, cookie, tgid, &moved);
            tcp_socket::report_if_due(ctx, sk, cookie, None);
        }
    }
}

/// Adds `moved` to `total`, the sides it has only.
#[inline(always)]
fn add_payload(total: *mut Payload, moved: &Payload) {
    // SAFETY: `total` is a live map value; only its fields' addresses are taken.
    unsafe {
        if moved.sent_calls > 0 {
            add(&raw mut (*total).sent_bytes, moved.sent_bytes);
            add(&raw mut (*total).sent_calls, moved.sent_calls);
        }
        if moved.received_calls > 0 {
            add(&raw mut (*total).received_bytes, moved.received_bytes);
            add(&raw mut (*total).received_calls, moved.received_calls);
        }
    }
}

/// Adds `moved` to what `tgid` moved on socket `cookie` in SOCKET_PROCESSES.
#[inline(always)]
fn add_to_socket_processes(ctx: &BtfTracePointContext, cookie: u64, tgid: u32, moved: &Payload) {
    let key = SocketProcessKey {
        cookie,
        tgid,
        _pad: 0,
    };
    match entry(&SOCKET_PROCESSES, &key) {
        Some(total) => add_payload(total, moved),
        None => {
            let bytes = moved.sent_bytes.wrapping_add(moved.received_bytes);
            count_loss(ctx, Loss::SocketProcessMapFull, bytes);
        }
    }
}

/// Makes (socket `cookie`, process `tgid`) this CPU's recent use and returns the entry, its
/// payload now theirs. On the way, records the process as the socket's owner unless it already
/// is, and remembers the process itself by tgid. A socket the entry does not hold yet is
/// recorded only if `counted()`.
///
/// Most calls come from the CPU's recent use again, whose owner was confirmed then, along with
/// how many owner writes had been made: while none was made since, the call needs no OWNERS
/// lookup (a hash of the key and a compare) and its payload no SOCKET_PROCESSES one. Owners
/// are written once per socket and on hand-over after fork.
#[inline(always)]
fn use_socket(
    ctx: &BtfTracePointContext,
    cookie: u64,
    tgid: u32,
    tid: u32,
    counted: impl Fn() -> bool,
) -> Use {
    let (Some(changes), Some(recent)) = (
        control_word(OWNER_CHANGES),
        this_cpu_entry(&RECENT_USE, RECENT_USES, pair_hash(cookie, tgid)),
    ) else {
        // Both indices exist: not reached, but the owner is never left unrecorded.
        if !counted() {
            return Use::Skip;
        }
        if !is_owner(cookie, tgid) {
            write_owner(ctx, cookie, tgid, tid);
        }
        return Use::NoEntry;
    };
    // SAFETY: live array elements; `recent` is this CPU's. A program on this CPU may interrupt
    // another (the send and receive programs run in interrupts too), leaving a mix of two
    // entries: their seal matches neither, so the next call looks again. The payload of a call
    // that interrupts a switch can go to the pair switched to: a weight in splitting a shared
    // socket between processes, never bytes on the wire, and only in that window.
    unsafe {
        let seen = read_volatile(changes);
        let same = read_volatile(&raw const (*recent).cookie) == cookie
            && read_volatile(&raw const (*recent).tgid) == tgid;
        if same && read_volatile(&raw const (*recent).seal) == seal(cookie, tgid, seen) {
            return Use::Entry(recent);
        }
        if !same && !counted() {
            return Use::Skip;
        }
        let confirmed = if is_owner(cookie, tgid) {
            seen
        } else {
            write_owner(ctx, cookie, tgid, tid);
            fetch_add(changes, 1) + 1
        };
        if !same {
            switch_recent_use(ctx, recent, cookie, tgid);
        }
        write_volatile(&raw mut (*recent).seal, seal(cookie, tgid, confirmed));
    }
    Use::Entry(recent)
}

/// Where a call's payload goes.
enum Use {
    /// This CPU's entry, now the call's (socket, process)'s.
    Entry(*mut RecentUse),
    /// SOCKET_PROCESSES: the entry was not reached.
    NoEntry,
    /// Nowhere: not an IP socket.
    Skip,
}

/// Hands the payload waiting in `recent` to SOCKET_PROCESSES and makes the entry (`cookie`,
/// `tgid`)'s. `seq` is odd meanwhile, so that the daemon does not believe a half-written entry.
/// Out of line, as the rare path: the common one stays short.
#[inline(never)]
fn switch_recent_use(ctx: &BtfTracePointContext, recent: *mut RecentUse, cookie: u64, tgid: u32) {
    // SAFETY: this CPU's live array element; only its fields' addresses are taken.
    unsafe {
        fetch_add_u32(&raw mut (*recent).seq, 1);
        let last_cookie = read_volatile(&raw const (*recent).cookie);
        let last_tgid = read_volatile(&raw const (*recent).tgid);
        let payload = &raw mut (*recent).payload;
        let waiting = Payload {
            sent_bytes: take(&raw mut (*payload).sent_bytes),
            sent_calls: take(&raw mut (*payload).sent_calls),
            received_bytes: take(&raw mut (*payload).received_bytes),
            received_calls: take(&raw mut (*payload).received_calls),
        };
        if waiting != Payload::default() {
            add_to_socket_processes(ctx, last_cookie, last_tgid, &waiting);
        }
        write_volatile(&raw mut (*recent).cookie, cookie);
        write_volatile(&raw mut (*recent).tgid, tgid);
        fetch_add_u32(&raw mut (*recent).seq, 1);
    }
}

/// A hash of (socket `cookie`, process `tgid`): it picks the pair's RECENT_USE entry on each
/// CPU.
#[inline(always)]
fn pair_hash(cookie: u64, tgid: u32) -> u32 {
    let hash = (cookie ^ u64::from(tgid)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (hash >> 32) as u32
}

/// The OWNER_CHANGES control word as of an owner's confirmation, bound to the socket and process
/// confirmed.
#[inline(always)]
fn seal(cookie: u64, tgid: u32, changes: u64) -> u64 {
    changes ^ (cookie ^ (u64::from(tgid) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Whether OWNERS names `tgid` as the owner of socket `cookie`.
#[inline(always)]
fn is_owner(cookie: u64, tgid: u32) -> bool {
    // SAFETY: plain lookup; the value is only compared.
    matches!(unsafe { OWNERS.get(&cookie) }, Some(owner) if owner.tgid == tgid)
}

/// Makes the calling process the socket's owner in OWNERS, and records it in PROCESSES. Out of
/// line, as the rare path: the common one stays short.
#[inline(never)]
fn write_owner(ctx: &BtfTracePointContext, cookie: u64, tgid: u32, tid: u32) {
    let uid_gid = bpf_get_current_uid_gid();
    let owner = SocketOwner {
        tgid,
        tid,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if OWNERS.insert(&cookie, &owner, 0).is_err() {
        count_loss(ctx, Loss::OwnerMapFull, 0);
    }
    // Owners change rarely (once per socket, and on hand-over after fork), so recording the
    // process here keeps the per-call cost flat.
    if PROCESSES.insert(&tgid, &owner, 0).is_err() {
        count_loss(ctx, Loss::OwnerMapFull, 0);
    }
}
