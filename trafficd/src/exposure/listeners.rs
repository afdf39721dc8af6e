//! The host's listening sockets, from sock_diag: TCP sockets in LISTEN and UDP sockets bound
//! to a port without a peer, each with the process holding it.
//!
//! sock_diag answers for the namespace of the socket asking; a listener inside a container or
//! another namespace is found by asking from a thread that entered it. The owner comes from
//! /proc/<pid>/fd (socket inode to pid), the same walk the socket owners source does, once for
//! all listeners of a dump.

use std::{
    collections::HashMap, fs::File, net::SocketAddr, os::fd::AsRawFd, path::Path, sync::Arc,
};

use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{InetResponseHeader, StateFlags},
};

use super::{Listener, Protocol};
use crate::{
    enrich::sock_diag::dump,
    error::{Error, Result},
};

/// One listening socket before its owner is known.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bound {
    protocol: Protocol,
    addr: SocketAddr,
    inode: u64,
}

/// Every listening socket of network namespace `namespace` (a /proc/<pid>/ns/net or
/// /run/netns/<name> path; `None` for the daemon's own), with its owner where /proc tells (a
/// socket passed to a process that exited stays ownerless).
pub fn listeners(namespace: Option<&Path>) -> Result<Vec<Listener>> {
    let bound = match namespace {
        None => bound_sockets(),
        Some(path) => in_namespace(path, bound_sockets),
    }
    .map_err(|e| Error::ListenerDump {
        reason: e.to_string(),
    })?;
    let owners = owners(bound.iter().map(|b| b.inode).collect());
    Ok(bound
        .into_iter()
        .map(|b| {
            let owner = owners.get(&b.inode);
            Listener {
                protocol: b.protocol,
                addr: b.addr,
                pid: owner.map(|o| o.0),
                comm: owner.map(|o| o.1.clone()),
                container: None,
            }
        })
        .collect())
}

/// TCP sockets in LISTEN and UDP sockets bound without a peer, of the calling thread's
/// namespace.
fn bound_sockets() -> std::io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let tcp = dump(family, IPPROTO_TCP, StateFlags::LISTEN)?;
        bound.extend(tcp.iter().map(|h| to_bound(Protocol::Tcp, h)));
        // An unconnected UDP socket is in TCP_CLOSE; a connected one has a peer port.
        let udp = dump(family, IPPROTO_UDP, StateFlags::CLOSE)?;
        bound.extend(
            udp.iter()
                .filter(|h| h.socket_id.destination_port == 0 && h.socket_id.source_port != 0)
                .map(|h| to_bound(Protocol::Udp, h)),
        );
    }
    Ok(bound)
}

/// Runs `f` on a short-lived thread that entered network namespace `path`: sock_diag answers
/// for the namespace of the socket asking, and the daemon's own threads must stay where they
/// are.
fn in_namespace<T: Send>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let file = File::open(path)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns changes only this thread, which ends with the scope; `file`
                // is an open namespace descriptor.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

fn to_bound(protocol: Protocol, header: &InetResponseHeader) -> Bound {
    let id = &header.socket_id;
    Bound {
        protocol,
        addr: SocketAddr::new(id.source_address, id.source_port),
        inode: u64::from(header.inode),
    }
}

/// (pid, comm) of the processes holding the sockets `inodes`, from one walk of /proc.
fn owners(mut inodes: Vec<u64>) -> HashMap<u64, (u32, Arc<str>)> {
    inodes.retain(|i| *i != 0);
    let mut found = HashMap::new();
    let Ok(processes) = procfs::process::all_processes() else {
        return found;
    };
    for process in processes.flatten() {
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            let procfs::process::FDTarget::Socket(inode) = fd.target else {
                continue;
            };
            if inodes.contains(&inode) && !found.contains_key(&inode) {
                let comm = process.stat().map(|s| s.comm).unwrap_or_default();
                found.insert(inode, (process.pid as u32, Arc::from(comm)));
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, UdpSocket};

    use super::*;

    #[test]
    fn finds_our_own_tcp_and_udp_listeners_and_their_owner() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp6 = TcpListener::bind("[::1]:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(udp.local_addr().unwrap()).unwrap();

        let found = listeners(None).unwrap();
        let find = |protocol, addr: SocketAddr| {
            found
                .iter()
                .find(|l| l.protocol == protocol && l.addr == addr)
                .cloned()
        };
        let me = Some(std::process::id());
        let ours = find(Protocol::Tcp, tcp.local_addr().unwrap()).expect("the TCP listener");
        assert_eq!(ours.pid, me);
        let comm = procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .comm;
        assert_eq!(ours.comm.as_deref(), Some(comm.as_str()));
        let ours6 = find(Protocol::Tcp, tcp6.local_addr().unwrap()).expect("the IPv6 listener");
        assert_eq!(ours6.pid, me);
        let bound = find(Protocol::Udp, udp.local_addr().unwrap()).expect("the bound UDP socket");
        assert_eq!(bound.pid, me);
        assert_eq!(
            find(Protocol::Udp, connected.local_addr().unwrap()),
            None,
            "a connected UDP socket listens to nobody"
        );
    }

    #[test]
    fn finds_a_listener_inside_another_namespace_only_there() {
        crate::testnet::require_root!();
        let ns = crate::testnet::Netns::new();
        ns.ip(&["addr", "add", "192.0.2.77/32", "dev", "lo"]);
        let inside = ns.enter(|| TcpListener::bind("192.0.2.77:0").unwrap());
        let addr = inside.local_addr().unwrap();

        let path = std::path::PathBuf::from(format!("/run/netns/{}", ns.name));
        let there = listeners(Some(&path)).unwrap();
        let found = there
            .iter()
            .find(|l| l.protocol == Protocol::Tcp && l.addr == addr)
            .expect("the listener in its namespace");
        assert_eq!(found.pid, Some(std::process::id()));
        let here = listeners(None).unwrap();
        assert!(
            !here.iter().any(|l| l.addr == addr),
            "not in the host's namespace"
        );

        let missing = listeners(Some(Path::new("/run/netns/trafficd-no-such-namespace")));
        let err = missing.expect_err("a namespace that does not exist");
        assert!(err.to_string().contains("sock_diag"), "{err}");
    }
}
