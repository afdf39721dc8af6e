//! Counting established TCP connections from the kernel's counters of each connection: turned
//! on at start once the pieces are in place, then swept at every drain.
//!
//! The order matters at start: the state hook is attached first (a connection established
//! from then on is registered as it is), then the flag tells the packet hooks to leave counted
//! connections alone, then the first sweep registers those established before. A connection
//! open when trafficd starts is counted from that first sweep on, a few milliseconds after the
//! flag; until the flag, its packets were counted one by one.

use std::{
    fs::File,
    io::{self, Read},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use aya::maps::{Array, MapData};
use tracing::warn;

use super::{batch::bpf, namespaces::Namespaces};

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_attr`, link-create variant (no target, no iterator parameters).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    iter_info: u64,
    iter_info_len: u32,
    _pad: u32,
}

/// `union bpf_attr`, iterator-create variant.
#[repr(C)]
#[derive(Default)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// The sweep, ready to run: the iterator's link and the namespaces to run it in.
pub struct TcpSockets {
    link: OwnedFd,
    namespaces: Namespaces,
    /// Read buffer: the program writes nothing, so one read reaches the end of the walk.
    buffer: Vec<u8>,
    failed: bool,
}

/// Links the loaded sweep program as an iterator. aya 0.14 can create an iterator from a link
/// only once (it consumes the link); the sweep makes one per drain and namespace.
pub fn link(program: impl AsFd) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_fd().as_raw_fd() as u32,
        attach_type: BPF_TRACE_ITER,
        ..LinkCreateAttr::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: a new file descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl TcpSockets {
    /// Sets the flag and runs the first sweep. On error nothing was turned on.
    pub fn start(link: OwnedFd, flag: &mut Array<MapData, u64>) -> io::Result<TcpSockets> {
        // Without it, connections in other namespaces would show only as they close.
        if !super::compat::can_enter_namespaces() {
            return Err(io::Error::other(
                "entering other network namespaces needs CAP_SYS_ADMIN",
            ));
        }
        let mut sockets = TcpSockets {
            link,
            namespaces: Namespaces::new()?,
            buffer: vec![0; 4096],
            failed: false,
        };
        flag.set(0, 1, 0).map_err(io::Error::other)?;
        if let Err(err) = sockets.walk() {
            // Back to counting every TCP packet; what moved meanwhile was counted from the
            // connections' counters only if they got registered, so this is said loudly.
            let _ = flag.set(0, 0, 0);
            return Err(err);
        }
        sockets.sweep();
        tracing::info!("established TCP connections are counted from their sockets' counters");
        Ok(sockets)
    }

    /// Reports what every established TCP connection moved since the last sweep, in every
    /// network namespace, into the flow counters the drain reads next.
    pub fn sweep(&mut self) {
        let Self {
            link,
            namespaces,
            buffer,
            failed,
        } = self;
        namespaces.for_each(|| {
            if let Err(err) = walk(link, buffer) {
                if !*failed {
                    warn!("the TCP connection sweep failed ({err}): established connections' bytes are counted as they close");
                    *failed = true;
                }
            }
        });
    }

    fn walk(&mut self) -> io::Result<()> {
        walk(&self.link, &mut self.buffer)
    }
}

/// Runs the iterator once over the calling thread's network namespace.
fn walk(link: &OwnedFd, buffer: &mut [u8]) -> io::Result<()> {
    let mut attr = IterCreateAttr {
        link_fd: link.as_raw_fd() as u32,
        flags: 0,
    };
    let fd = bpf(BPF_ITER_CREATE, &mut attr)?;
    // SAFETY: a new file descriptor the kernel just returned, owned by nobody else.
    let mut iterator = unsafe { File::from_raw_fd(fd as i32) };
    // Bounded: the program writes nothing, so the first read returns 0 at the walk's end.
    for _ in 0..1024 {
        if iterator.read(buffer)? == 0 {
            return Ok(());
        }
    }
    Err(io::Error::other("the iterator did not end"))
}
