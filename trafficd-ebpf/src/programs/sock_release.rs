//! cgroup `sock_release` on the cgroup2 root: tells the daemon a socket was closed, so it can
//! delete the socket's entries once their last bytes were read.

use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_ns},
    macros::cgroup_sock,
    programs::SockContext,
};
use trafficd_common::Loss;

use crate::{counters::count_loss, maps::CLOSED};

/// Let the release go on.
const ALLOW: i32 = 1;

#[cgroup_sock(sock_release)]
pub fn trafficd_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: helpers on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let now = unsafe { bpf_ktime_get_ns() };
    if CLOSED.insert(&cookie, &now, 0).is_err() {
        count_loss(&ctx, Loss::ClosedMapFull, 0);
    }
    ALLOW
}
