//! tp_btf `sock:inet_sock_set_state`: a TCP connection becomes established, or closes.
//!
//! At ESTABLISHED the connection is registered with its counters as they are then: its
//! handshake was counted per packet, everything after is counted from its counters. At CLOSE
//! what it moved since the last sweep is reported, so that the last bytes of a connection are
//! not left for a sweep that will no longer find it, and the socket is marked closed.

use core::ffi::c_void;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use super::sock_release::mark_closed;
use crate::{
    sock::Sock,
    tcp_socket::{self, TCP_CLOSE, TCP_ESTABLISHED},
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn trafficd_tcp_state(ctx: BtfTracePointContext) -> i32 {
    let sk: *const c_void = ctx.arg(0);
    let new_state: i64 = ctx.arg(2);
    // The tracepoint's states are ints.
    let new_state = new_state as i32;
    let interesting = new_state == i32::from(TCP_ESTABLISHED) || new_state == i32::from(TCP_CLOSE);
    if sk.is_null() || !interesting || !tcp_socket::is_on() {
        return 0;
    }
    let Some(tcp) = tcp_socket::tcp_sock(sk) else {
        return 0;
    };
    if new_state == i32::from(TCP_ESTABLISHED) {
        tcp_socket::register(&ctx, tcp);
        return 0;
    }
    if let Some(socket) = tcp_socket::registration(tcp.0, false) {
        tcp_socket::report(&ctx, tcp, socket);
    }
    // sock_release left connections that were still up to this (see there).
    mark_closed(&ctx, Sock(sk).cookie());
    0
}
