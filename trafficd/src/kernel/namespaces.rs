//! The network namespaces of this host, and running something inside each.
//!
//! A TCP socket iterator walks only the network namespace it was created in, as
//! /proc/net/tcp does, so the sweep of TCP connections is run once per namespace, from inside
//! it. Namespaces are found from the processes in them (/proc/<pid>/ns/net) and from the
//! bind mounts `ip netns` keeps under /run/netns; no reference to one is kept between sweeps,
//! so trafficd never keeps a namespace alive after its last user left.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracing::{error, warn};

/// How often the namespaces are looked for. A namespace made since is swept from the next
/// look on; its connections are counted all the same (registered as they become established,
/// reported as they close), only later.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

pub struct Namespaces {
    /// The daemon's own namespace, to come back to.
    own: File,
    own_inode: u64,
    /// Other namespaces by inode, each with a path that reached it at the last look.
    others: BTreeMap<u64, PathBuf>,
    scanned: Option<Instant>,
    warned: bool,
    /// Namespaces the last `for_each` ran in.
    entered: usize,
}

impl Namespaces {
    pub fn new() -> io::Result<Namespaces> {
        let own = File::open("/proc/thread-self/ns/net")?;
        let own_inode = own.metadata()?.ino();
        Ok(Namespaces {
            own,
            own_inode,
            others: BTreeMap::new(),
            scanned: None,
            warned: false,
            entered: 0,
        })
    }

    /// Runs `f` in the daemon's own namespace, then in each other one this thread can enter
    /// and `skip(path, inode)` does not rule out from outside (entering one costs a setns
    /// there and back).
    pub fn for_each(&mut self, skip: impl Fn(&Path, u64) -> bool, mut f: impl FnMut()) {
        f();
        self.entered = 1;
        if self.scanned.is_none_or(|at| at.elapsed() >= RESCAN_EVERY) {
            self.rescan();
        }
        let mut gone = Vec::new();
        for (&inode, path) in &self.others {
            if skip(path, inode) {
                continue;
            }
            match enter(path, inode) {
                Ok(true) => {}
                Ok(false) => {
                    gone.push(inode);
                    continue;
                }
                Err(err) => {
                    if !self.warned {
                        warn!(
                            "cannot enter network namespace {} ({err}): TCP connections there \
                             that nobody sends or receives on are counted only as they close; \
                             run trafficd with CAP_SYS_ADMIN",
                            path.display()
                        );
                        self.warned = true;
                    }
                    continue;
                }
            }
            f();
            self.entered += 1;
            if let Err(err) = setns(&self.own) {
                // Not seen: the same privileges entered the other one.
                error!("cannot return to trafficd's own network namespace: {err}");
                return;
            }
        }
        for inode in gone {
            self.others.remove(&inode);
        }
    }

    /// Namespaces the last `for_each` ran in, the daemon's own included.
    pub fn entered(&self) -> usize {
        self.entered
    }

    fn rescan(&mut self) {
        self.scanned = Some(Instant::now());
        self.others.clear();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(entries) = fs::read_dir("/proc") {
            candidates.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_str().is_some_and(is_pid))
                    .map(|e| e.path().join("ns/net")),
            );
        }
        if let Ok(entries) = fs::read_dir("/run/netns") {
            candidates.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
        for path in candidates {
            let Some(inode) = namespace_inode(&path) else {
                continue;
            };
            if inode != self.own_inode {
                self.others.entry(inode).or_insert(path);
            }
        }
    }
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// The inode of the namespace at `path`: a /proc link reads "net:[<inode>]", a bind mount is
/// the namespace file itself.
fn namespace_inode(path: &PathBuf) -> Option<u64> {
    match fs::read_link(path) {
        Ok(link) => inode_in_link(link.to_str()?),
        Err(_) => fs::metadata(path).ok().map(|m| m.ino()),
    }
}

fn inode_in_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Enters the namespace at `path` if it is still namespace `inode` (a pid may have been reused);
/// `Ok(false)` when it is gone.
fn enter(path: &PathBuf, inode: u64) -> io::Result<bool> {
    let Ok(file) = File::open(path) else {
        return Ok(false);
    };
    if file.metadata()?.ino() != inode {
        return Ok(false);
    }
    setns(&file)?;
    Ok(true)
}

fn setns(namespace: &File) -> io::Result<()> {
    // SAFETY: a namespace file descriptor; the call changes only this thread's namespace.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_inode_of_a_namespace_link() {
        assert_eq!(inode_in_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(inode_in_link("mnt:[4026531840]"), None);
        assert_eq!(inode_in_link("net:[]"), None);
    }

    #[test]
    fn finds_this_threads_own_namespace() {
        let own = Namespaces::new().expect("/proc/thread-self/ns/net");
        let link = PathBuf::from("/proc/thread-self/ns/net");
        assert_eq!(namespace_inode(&link), Some(own.own_inode));
        assert!(is_pid("1") && !is_pid("self") && !is_pid(""));
    }
}
