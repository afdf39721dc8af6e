//! Counting established TCP connections from the kernel's counters of each connection: turned
//! on at start once the pieces are in place; then a new report epoch at every drain and a sweep
//! every `--tcp-sweep-interval`.
//!
//! The order matters at start: the state hook is attached first (a connection established
//! from then on is registered as it is), then the flag tells the packet hooks to leave counted
//! connections alone, then the first sweep registers those established before. A connection
//! open when trafficd starts is counted from that first sweep on, a few milliseconds after the
//! flag; until the flag, its packets were counted one by one.

use std::{
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::Path,
    time::{Duration, Instant},
};

use tracing::warn;
use trafficd_common::bpf_attr::{IterCreateAttr, LinkCreateAttr};

use super::{batch::bpf, control::Control, namespaces::Namespaces};

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// Counting TCP connections from their counters, turned on: the sweep's iterator link and the
/// namespaces to run it in. The flag and the drain epoch live in the control words.
///
/// The sweep walks the whole TCP hash table once per network namespace (a TCP iterator filters
/// by namespace as it goes), nearly all of it empty buckets: milliseconds per namespace, too
/// much to spend at every drain on a host with many namespaces.
/// Busy connections report themselves at their first send or receive call after each drain, so
/// after the first the sweep runs every `--tcp-sweep-interval`, for the quiet ones.
pub struct TcpSockets {
    sweep_every: Duration,
    swept: Instant,
    link: OwnedFd,
    namespaces: Namespaces,
    /// Read buffer: the program writes nothing, so one read reaches the end of the walk.
    buffer: Vec<u8>,
    failed: bool,
}

/// Links the loaded sweep program as an iterator. aya 0.14 can create an iterator from a link
/// only once (it consumes the link); the sweep makes one per namespace each time.
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
    pub fn start(
        link: OwnedFd,
        sweep_every: Duration,
        control: &mut Control,
    ) -> io::Result<TcpSockets> {
        // Without it, connections in other namespaces would show only as they close.
        if !super::compat::can_enter_namespaces() {
            return Err(io::Error::other(
                "entering other network namespaces needs CAP_SYS_ADMIN",
            ));
        }
        let mut sockets = TcpSockets {
            sweep_every,
            swept: Instant::now(),
            link,
            namespaces: Namespaces::new()?,
            buffer: vec![0; 4096],
            failed: false,
        };
        control
            .set_tcp_from_sockets(true)
            .map_err(io::Error::other)?;
        if let Err(err) = walk(&sockets.link, &mut sockets.buffer) {
            // Back to counting every TCP packet; what moved meanwhile was counted from the
            // connections' counters only if they got registered, so this is said loudly.
            let _ = control.set_tcp_from_sockets(false);
            return Err(err);
        }
        sockets.sweep();
        tracing::info!("established TCP connections are counted from their sockets' counters");
        Ok(sockets)
    }

    /// Called at every drain, before the flows are read: a new drain epoch, so that each busy
    /// connection reports again at its next call, and the sweep when it is due.
    pub fn drain(&mut self, control: &mut Control) {
        if let Err(err) = control.bump_drain_epoch() {
            warn!("cannot start a new TCP report epoch ({err}): busy connections report late");
        }
        if self.swept.elapsed() >= self.sweep_every {
            self.sweep();
        }
    }

    /// Reports what every established TCP connection moved since its last report, in every
    /// network namespace, into the flow counters the drain reads next.
    fn sweep(&mut self) {
        self.swept = Instant::now();
        let Self {
            link,
            namespaces,
            buffer,
            failed,
            ..
        } = self;
        // A container with no TCP socket (most idle ones) costs two small reads instead of a
        // walk of the whole table: from outside when a process names the namespace, else
        // inside it.
        namespaces.for_each(has_no_tcp_socket_seen_from_outside, || {
            if !has_tcp_sockets(Path::new("/proc/thread-self/net")) {
                return;
            }
            if let Err(err) = walk(link, buffer) {
                if !*failed {
                    warn!(
                        "the TCP connection sweep failed ({err}): connections nobody sends or \
                         receives on are counted only as they close"
                    );
                    *failed = true;
                }
            }
        });
    }

    /// Network namespaces the last sweep ran in, trafficd's own included.
    pub fn swept_namespaces(&self) -> usize {
        self.namespaces.entered()
    }
}

/// Whether the network namespace that `net` (a /proc `net` directory) shows has any TCP
/// socket in use (IPv4 or IPv6), by its sockstat counters; true when they cannot be read, so
/// the walk is never skipped for lack of an answer.
fn has_tcp_sockets(net: &Path) -> bool {
    ["sockstat", "sockstat6"].iter().any(|file| {
        std::fs::read_to_string(net.join(file)).map_or(true, |text| tcp_in_use(&text) != Some(0))
    })
}

/// For a namespace reached through a process (`/proc/<pid>/ns/net`): true when that process's
/// /proc `net` shows no TCP socket and the process is still in namespace `inode` after the
/// read (its pid was not reused meanwhile).
fn has_no_tcp_socket_seen_from_outside(path: &Path, inode: u64) -> bool {
    let Some(process) = path.parent().and_then(Path::parent) else {
        return false;
    };
    if !path.starts_with("/proc") || has_tcp_sockets(&process.join("net")) {
        return false;
    }
    std::fs::metadata(path).is_ok_and(|m| m.ino() == inode)
}

/// The `inuse` count of the `TCP:` or `TCP6:` line of a sockstat file.
fn tcp_in_use(sockstat: &str) -> Option<u64> {
    sockstat.lines().find_map(|line| {
        let rest = line
            .strip_prefix("TCP: ")
            .or_else(|| line.strip_prefix("TCP6: "))?;
        let mut words = rest.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inuse" {
                return words.next()?.parse().ok();
            }
        }
        None
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testnet::require_root;

    /// A process alone in a new network namespace: no TCP socket there, seen without entering;
    /// the same path once it names another namespace is not ruled out.
    #[test]
    fn a_namespace_without_tcp_sockets_is_skipped_from_outside() {
        require_root!();
        let mut child = std::process::Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .expect("unshare (util-linux)");
        let path = std::path::PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let mut inode = own;
        for _ in 0..100 {
            inode = std::fs::metadata(&path).map_or(own, |m| m.ino());
            if inode != own {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_ne!(inode, own, "the child never entered its own namespace");
        assert!(has_no_tcp_socket_seen_from_outside(&path, inode));
        assert!(!has_no_tcp_socket_seen_from_outside(&path, inode + 1));
        assert!(!has_no_tcp_socket_seen_from_outside(
            Path::new("/run/netns/nothing"),
            inode
        ));
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn reads_tcp_sockets_in_use_from_sockstat() {
        let v4 = "sockets: used 7\nTCP: inuse 3 orphan 0 tw 1 alloc 12 mem 2\nUDP: inuse 1 mem 0\n";
        let v6 = "TCP6: inuse 0\nUDP6: inuse 2\nUDPLITE6: inuse 0\n";
        assert_eq!(tcp_in_use(v4), Some(3));
        assert_eq!(tcp_in_use(v6), Some(0));
        assert_eq!(tcp_in_use("UDP: inuse 1 mem 0\n"), None);
        // This thread's namespace holds the test binary's sockets, or none: either is read.
        assert!(
            tcp_in_use(&std::fs::read_to_string("/proc/thread-self/net/sockstat").unwrap())
                .is_some()
        );
    }
}
