//! Owners of sockets the kernel programs never saw used: sockets opened before the daemon
//! started that only receive, or whose last send was before we attached.
//!
//! sock_diag gives cookie -> (inode, uid); /proc/<pid>/fd gives inode -> pid. Both are costly on
//! a busy host, so a lookup runs only for cookies that carry bytes and have no owner, and at
//! most once per `RESCAN_EVERY`.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::StateFlags,
};
use tracing::debug;

const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// A socket's owner as found in /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundOwner {
    pub pid: u32,
    pub uid: u32,
}

#[derive(Default)]
pub struct SocketOwners {
    found: HashMap<u64, FoundOwner>,
    scanned_at: Option<Instant>,
}

impl SocketOwners {
    /// The owner of `cookie` if a scan found it. Runs a scan first when `wanted` has cookies we
    /// have not resolved and the last scan is old enough.
    pub fn lookup(&mut self, wanted: &[u64]) -> &HashMap<u64, FoundOwner> {
        let missing: HashSet<u64> = wanted
            .iter()
            .copied()
            .filter(|c| *c != 0 && !self.found.contains_key(c))
            .collect();
        let due = self
            .scanned_at
            .is_none_or(|at| at.elapsed() >= RESCAN_EVERY);
        if !missing.is_empty() && due {
            self.scanned_at = Some(Instant::now());
            match scan(&missing) {
                Ok(found) => {
                    debug!(
                        wanted = missing.len(),
                        found = found.len(),
                        "resolved socket owners from /proc"
                    );
                    self.found.extend(found);
                }
                Err(err) => debug!("sock_diag scan failed: {err}"),
            }
        }
        &self.found
    }

    pub fn forget(&mut self, cookie: u64) {
        self.found.remove(&cookie);
    }
}

fn scan(cookies: &HashSet<u64>) -> std::io::Result<HashMap<u64, FoundOwner>> {
    let mut by_inode: HashMap<u64, (u64, u32)> = HashMap::new();
    for family in [AF_INET, AF_INET6] {
        for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
            for (cookie, inode, uid) in dump(family, protocol)? {
                if cookies.contains(&cookie) && inode != 0 {
                    by_inode.insert(inode, (cookie, uid));
                }
            }
        }
    }
    let mut found = HashMap::new();
    if by_inode.is_empty() {
        return Ok(found);
    }
    let Ok(processes) = procfs::process::all_processes() else {
        return Ok(found);
    };
    for process in processes.flatten() {
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Socket(inode) = fd.target {
                if let Some((cookie, uid)) = by_inode.remove(&inode) {
                    found.insert(
                        cookie,
                        FoundOwner {
                            pid: process.pid as u32,
                            uid,
                        },
                    );
                }
            }
        }
        if by_inode.is_empty() {
            break;
        }
    }
    Ok(found)
}

/// All sockets of one family and protocol: (cookie, inode, uid).
fn dump(family: u8, protocol: u8) -> std::io::Result<Vec<(u64, u64, u32)>> {
    let headers = super::sock_diag::dump(family, protocol, StateFlags::all())?;
    Ok(headers
        .iter()
        .map(|h| {
            (
                u64::from_ne_bytes(h.socket_id.cookie),
                u64::from(h.inode),
                h.uid,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn finds_the_owner_of_a_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ours = dump(AF_INET, IPPROTO_TCP)
            .unwrap()
            .into_iter()
            .find(|(_, inode, _)| {
                procfs::process::Process::myself()
                    .unwrap()
                    .fd()
                    .unwrap()
                    .flatten()
                    .any(|fd| fd.target == procfs::process::FDTarget::Socket(*inode))
            });
        let (cookie, _, _) = ours.expect("our listening socket in the sock_diag dump");
        let found = scan(&HashSet::from([cookie])).unwrap();
        assert_eq!(found[&cookie].pid, std::process::id(), "port {port}");
    }
}
