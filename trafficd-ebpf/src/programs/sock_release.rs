//! cgroup `sock_release` on the cgroup2 root: tells the daemon a socket was closed, so it can
//! delete the socket's entries once their last bytes were read.
//!
//! A TCP socket whose connection is still up when its process lets go of it (data still
//! queued, FIN not yet acknowledged) lives on in the kernel and keeps sending. While TCP is
//! counted from the connections' counters, the state hook marks such a socket when its
//! connection closes instead, so that the daemon keeps its owner until its last byte.

use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_ns},
    macros::cgroup_sock,
    programs::SockContext,
};
use trafficd_common::Loss;

use crate::{counters::count_loss, maps::CLOSED, packet::IPPROTO_TCP, tcp_socket};

/// Let the release go on.
const ALLOW: i32 = 1;

#[cgroup_sock(sock_release)]
pub fn trafficd_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: the program's own context, a full socket.
    let (protocol, state) = unsafe { ((*ctx.sock).protocol, (*ctx.sock).state) };
    if protocol == u32::from(IPPROTO_TCP) && tcp_socket::is_counted(state) && tcp_socket::is_on() {
        return ALLOW;
    }
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    mark_closed(&ctx, cookie);
    ALLOW
}

/// Records that socket `cookie` is gone, with the time.
#[inline(always)]
pub fn mark_closed<C: aya_ebpf::EbpfContext>(ctx: &C, cookie: u64) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if CLOSED.insert(cookie, now, 0).is_err() {
        count_loss(ctx, Loss::ClosedMapFull, 0);
    }
}
