//! iter/tcp: run by the daemon at start and every `--tcp-sweep-interval`, once per network
//! namespace (the iterator walks the TCP sockets of the namespace it was created in).
//!
//! Reports what each registered connection moved since its last report, and registers the
//! connections in a counted state that are not registered yet: those established before the
//! state hook was attached, whose packets the packet hooks leave alone now too.

use core::ffi::c_void;

use aya_ebpf::EbpfContext;

use crate::tcp_socket;

/// The iterator's context, `struct bpf_iter__tcp`: the walk's metadata, then the socket (NULL
/// on the last call, which ends the walk).
#[repr(C)]
struct TcpIter {
    meta: *const c_void,
    sk_common: *const c_void,
}

/// For the loss log.
struct IterContext(*mut c_void);

impl EbpfContext for IterContext {
    fn as_ptr(&self) -> *mut c_void {
        self.0
    }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn trafficd_tcp_sweep(ctx: *mut c_void) -> i32 {
    // SAFETY: the iterator's context, whose layout is `TcpIter`; the verifier types the socket
    // pointer from BTF.
    let sk = unsafe { (*(ctx as *const TcpIter)).sk_common };
    if sk.is_null() || !tcp_socket::is_on() {
        return 0;
    }
    // Listeners, request and TIME_WAIT sockets are not TCP full sockets in a counted state.
    let Some(tcp) = tcp_socket::tcp_sock(sk) else {
        return 0;
    };
    let counted = match crate::sock::Sock(tcp.0).state() {
        Some(state) => tcp_socket::is_counted(u32::from(state)),
        None => false,
    };
    if !counted {
        return 0;
    }
    let ctx = IterContext(ctx);
    match tcp_socket::registration(tcp.0, false) {
        Some(socket) => tcp_socket::report(&ctx, tcp, socket),
        None => tcp_socket::register(&ctx, tcp),
    }
    0
}
