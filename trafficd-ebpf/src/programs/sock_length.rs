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

#[btf_tracepoint(function = "sock_send_length")]
pub fn trafficd_sock_send(ctx: BtfTracePointContext) -> i32 {
    record::<SEND>(&ctx);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn trafficd_sock_recv(ctx: BtfTracePointContext) -> i32 {
    record::<RECEIVE>(&ctx);
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
        if confirmed_entry(cookie, (pid_tgid >> 32) as u32).is_none() {
            // The tracepoint is TCP's own: every socket here is an IP one.
            record_unconfirmed::<CONSUME>(&ctx, sk, cookie, pid_tgid, 0);
        }
    }
    0
}

/// What a call did, as the const parameter of the functions below (a subprogram has five
/// argument registers, all taken).
const SEND: u8 = 0;
const RECEIVE: u8 = 1;
/// Consumed TCP data: only the owner is recorded.
const CONSUME: u8 = 2;

/// The common case inline: the call's (socket, process) is this CPU's recent use, its owner
/// confirmed, so the call adds to the entry's payload and goes. The rest is a subprogram of its
/// own. Kept small because its stack is: a tracing program with a frame of 64 bytes or more
/// runs on a private per-CPU stack of its own, lines that a large send or receive has evicted
/// by the time the program runs, where a smaller frame stays on the kernel stack the caller
/// just used.
#[inline(always)]
fn record<const CALL: u8>(ctx: &BtfTracePointContext) {
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
    if CALL == RECEIVE && flags & MSG_PEEK != 0 {
        return;
    }
    let cookie = Sock(sk).cookie();
    let pid_tgid = bpf_get_current_pid_tgid();
    let bytes = ret as u64;
    let Some(recent) = confirmed_entry(cookie, (pid_tgid >> 32) as u32) else {
        record_unconfirmed::<CALL>(ctx, sk, cookie, pid_tgid, bytes);
        return;
    };
    // SAFETY: this CPU's live array element; only its fields' addresses are taken.
    let (payload, checked_in) =
        unsafe { (&raw mut (*recent).payload, &raw mut (*recent).checked_in) };
    add_payload::<CALL>(payload, bytes);
    tcp_socket::report_if_due(ctx, sk, cookie, Some(checked_in));
}

/// This CPU's entry for (socket `cookie`, process `tgid`), when it holds them with their owner
/// confirmed as of now: the OWNER_CHANGES control word has not moved since the entry was
/// sealed, so no owner was written since. Most calls come from the CPU's recent use again;
/// they need no OWNERS lookup (a hash of the key and a compare) and their payload no
/// SOCKET_PROCESSES one.
#[inline(always)]
fn confirmed_entry(cookie: u64, tgid: u32) -> Option<*mut RecentUse> {
    let changes = control_word(OWNER_CHANGES)?;
    let recent = this_cpu_entry(&RECENT_USE, RECENT_USES, pair_hash(cookie, tgid))?;
    // SAFETY: live array elements; `recent` is this CPU's. A program on this CPU may interrupt
    // another (the send and receive programs run in interrupts too), leaving a mix of two
    // entries: their seal matches neither, so the next call looks again.
    let confirmed = unsafe {
        read_volatile(&raw const (*recent).cookie) == cookie
            && read_volatile(&raw const (*recent).tgid) == tgid
            && read_volatile(&raw const (*recent).seal)
                == seal(cookie, tgid, read_volatile(changes))
    };
    confirmed.then_some(recent)
}

/// A call whose (socket, process) this CPU's entry does not hold confirmed: records the owner
/// unless OWNERS names it already, makes the pair the entry's, adds `bytes` (`CALL`'s) there,
/// and checks whether the socket's connection is due to report. A socket the entry did not
/// hold is recorded only if it is an IP one: the send and receive tracepoints fire for every
/// socket. A cookie is never reused, so one that an entry holds is an IP socket's, and the
/// common call skips that line of the socket.
///
/// Out of line, with the arguments packed into five registers, so that the common case keeps
/// a small frame (see [`record`]).
#[inline(never)]
fn record_unconfirmed<const CALL: u8>(
    ctx: &BtfTracePointContext,
    sk: *const c_void,
    cookie: u64,
    pid_tgid: u64,
    bytes: u64,
) {
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let is_ip = || CALL == CONSUME || Sock(sk).is_inet();
    let (Some(changes), Some(recent)) = (
        control_word(OWNER_CHANGES),
        this_cpu_entry(&RECENT_USE, RECENT_USES, pair_hash(cookie, tgid)),
    ) else {
        // Both indices exist: not reached, but the owner is never left unrecorded.
        if !is_ip() {
            return;
        }
        if !is_owner(cookie, tgid) {
            write_owner(ctx, cookie, tgid, tid);
        }
        if CALL != CONSUME {
            add_to_socket_processes(ctx, cookie, tgid, &moved::<CALL>(bytes));
            tcp_socket::report_if_due(ctx, sk, cookie, None);
        }
        return;
    };
    // SAFETY: live array elements; `recent` is this CPU's (see `confirmed_entry`). The payload
    // of a call that interrupts a switch can go to the pair switched to: a weight in splitting
    // a shared socket between processes, never bytes on the wire, and only in that window.
    unsafe {
        let seen = read_volatile(changes);
        let same = read_volatile(&raw const (*recent).cookie) == cookie
            && read_volatile(&raw const (*recent).tgid) == tgid;
        if !same && !is_ip() {
            return;
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
        if CALL != CONSUME {
            add_payload::<CALL>(&raw mut (*recent).payload, bytes);
            tcp_socket::report_if_due(ctx, sk, cookie, Some(&raw mut (*recent).checked_in));
        }
    }
}

/// What a `CALL` of `bytes` moved.
#[inline(always)]
fn moved<const CALL: u8>(bytes: u64) -> Payload {
    match CALL {
        SEND => Payload {
            sent_bytes: bytes,
            sent_calls: 1,
            ..Payload::default()
        },
        RECEIVE => Payload {
            received_bytes: bytes,
            received_calls: 1,
            ..Payload::default()
        },
        _ => Payload::default(),
    }
}

/// Adds a `CALL` of `bytes` to `total`.
#[inline(always)]
fn add_payload<const CALL: u8>(total: *mut Payload, bytes: u64) {
    add_moved(total, &moved::<CALL>(bytes));
}

/// Adds `moved` to `total`, the sides it has only.
#[inline(always)]
fn add_moved(total: *mut Payload, moved: &Payload) {
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
        Some(total) => add_moved(total, moved),
        None => {
            let bytes = moved.sent_bytes.wrapping_add(moved.received_bytes);
            count_loss(ctx, Loss::SocketProcessMapFull, bytes);
        }
    }
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
    matches!(unsafe { OWNERS.get(cookie) }, Some(owner) if owner.tgid == tgid)
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
    if OWNERS.insert(cookie, owner, 0).is_err() {
        count_loss(ctx, Loss::OwnerMapFull, 0);
    }
    // Owners change rarely (once per socket, and on hand-over after fork), so recording the
    // process here keeps the per-call cost flat.
    if PROCESSES.insert(tgid, owner, 0).is_err() {
        count_loss(ctx, Loss::OwnerMapFull, 0);
    }
}
