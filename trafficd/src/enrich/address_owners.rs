//! Which network namespace on this host holds an address: the container a NAT'd flow came
//! from (its original source 172.17.0.2 is an address of the container's namespace), and
//! where to ask conntrack about the next NAT hop.
//!
//! Namespaces are found as `kernel::namespaces` finds them (/proc/<pid>/ns/net and the bind
//! mounts under /run/netns); each is entered by a short-lived thread that lists its addresses.
//! The list is rebuilt only when an address is not in it, at most every few seconds, so a
//! busy NAT costs no scan per flow.

use std::{
    collections::HashMap,
    fs::{self, File},
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use nix::sched::{setns, CloneFlags};

/// Namespaces with an unknown address are looked for again after this long.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// A network namespace other than the daemon's, as a flow item names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceOwner {
    /// A path that reaches it: /proc/<pid>/ns/net or /run/netns/<name>.
    pub path: PathBuf,
    /// `netns <name>` for `ip netns` namespaces, else the cgroup of a process in it (a
    /// container's, e.g. `/docker/<id>`), else `netns:[<inode>]`.
    pub name: Arc<str>,
    /// The cgroup of a process in it, when one was found: how a container is recognised.
    pub cgroup: Option<Arc<str>>,
}

#[derive(Default)]
pub struct AddressOwners {
    by_address: HashMap<IpAddr, Arc<NamespaceOwner>>,
    scanned: Option<Instant>,
}

impl AddressOwners {
    /// The namespace, other than the daemon's own, that has `address` on one of its
    /// interfaces.
    pub fn owner(&mut self, address: IpAddr) -> Option<Arc<NamespaceOwner>> {
        if let Some(owner) = self.by_address.get(&address) {
            return Some(owner.clone());
        }
        if self.scanned.is_none_or(|at| at.elapsed() >= RESCAN_EVERY) {
            self.rescan();
        }
        self.by_address.get(&address).cloned()
    }

    fn rescan(&mut self) {
        self.scanned = Some(Instant::now());
        self.by_address.clear();
        let Ok(own) = fs::metadata("/proc/self/ns/net").map(|m| m.ino()) else {
            return;
        };
        let mut seen = vec![own];
        for (path, owner) in candidates() {
            let Ok(inode) = fs::metadata(&path).map(|m| m.ino()) else {
                continue;
            };
            if seen.contains(&inode) {
                continue;
            }
            seen.push(inode);
            let Ok(addresses) = addresses_in(&path) else {
                continue;
            };
            let name = owner
                .name
                .clone()
                .or_else(|| owner.cgroup.clone())
                .unwrap_or_else(|| Arc::from(format!("netns:[{inode}]")));
            let owner = Arc::new(NamespaceOwner {
                path,
                name,
                cgroup: owner.cgroup,
            });
            for address in addresses.into_iter().filter(|a| !a.is_loopback()) {
                self.by_address.insert(address, owner.clone());
            }
        }
    }
}

#[derive(Default)]
struct Found {
    name: Option<Arc<str>>,
    cgroup: Option<Arc<str>>,
}

/// `ip netns` namespaces first (their names are what a user typed), then processes'.
fn candidates() -> Vec<(PathBuf, Found)> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = format!("netns {}", entry.file_name().to_string_lossy());
            let found_here = Found {
                name: Some(Arc::from(name)),
                cgroup: None,
            };
            found.push((entry.path(), found_here));
        }
    }
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.filter_map(|e| e.ok()) {
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_pid {
                let cgroup = cgroup_of(&entry.path()).map(Arc::from);
                found.push((entry.path().join("ns/net"), Found { name: None, cgroup }));
            }
        }
    }
    found
}

/// The process's cgroup2 path (the `0::` line), or its first controller's path on a host
/// whose processes sit in v1 hierarchies.
fn cgroup_of(process: &std::path::Path) -> Option<String> {
    let text = fs::read_to_string(process.join("cgroup")).ok()?;
    let path_of = |line: &str| line.splitn(3, ':').nth(2).map(str::to_string);
    text.lines()
        .find(|l| l.starts_with("0::"))
        .and_then(path_of)
        .filter(|p| p != "/")
        .or_else(|| text.lines().next().and_then(path_of))
}

/// The addresses of every interface in the namespace at `path`, listed by a thread that
/// entered it (a thread's namespace is its own; the daemon's other threads stay put).
fn addresses_in(path: &std::path::Path) -> std::io::Result<Vec<IpAddr>> {
    let file = File::open(path)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET)?;
                let addresses = nix::ifaddrs::getifaddrs()?
                    .filter_map(|ifaddr| ifaddr.address)
                    .filter_map(|address| {
                        if let Some(v4) = address.as_sockaddr_in() {
                            Some(IpAddr::V4(v4.ip()))
                        } else {
                            address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                        }
                    })
                    .collect();
                Ok(addresses)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}
