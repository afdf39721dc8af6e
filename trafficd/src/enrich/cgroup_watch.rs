//! New cgroups as they appear: an inotify watch on every directory of the cgroup2 tree (down to
//! the depth containers and pods nest at) records each new cgroup's id (its directory's inode)
//! and path at once. The drain learns paths by walking the tree when an id first moves bytes,
//! and a container that starts, sends and is removed within a second (its cgroup lives a few
//! hundred milliseconds) is gone by then; this record still names it.
//!
//! The watch runs on a thread of its own, blocked in read(2), never on the drain's path. It
//! needs no container engine: it is the same for every runtime and for units.

use std::{
    collections::{HashMap, VecDeque},
    ffi::OsStr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Deeper than any container's cgroup (kubepods.slice/<qos>.slice/<pod>.slice/<ctr>.scope/
/// container is 5 below the root).
const MAX_DEPTH: usize = 6;
/// Bounds the watches (each a little kernel memory): past it, new cgroups are found by the
/// drain's walk alone.
const MAX_WATCHES: usize = 16384;
/// Cgroups remembered; the oldest are forgotten first. Only cgroups the drain's walk missed
/// are ever asked for, so this is a short-term memory.
const MAX_REMEMBERED: usize = 65536;

/// Cgroup id -> path of cgroups seen appearing, shared with the drain's sources.
#[derive(Clone, Default)]
pub struct Appeared {
    seen: Arc<RwLock<Seen>>,
}

#[derive(Default)]
struct Seen {
    paths: HashMap<u64, Arc<str>>,
    order: VecDeque<u64>,
}

impl Appeared {
    /// The path of cgroup `id`, if it appeared while the watch ran.
    pub fn path(&self, id: u64) -> Option<Arc<str>> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.paths.get(&id).cloned()
    }

    fn insert(&self, id: u64, path: &str) {
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.paths.insert(id, Arc::from(path)).is_none() {
            seen.order.push_back(id);
        }
        while seen.order.len() > MAX_REMEMBERED {
            if let Some(old) = seen.order.pop_front() {
                seen.paths.remove(&old);
            }
        }
    }
}

/// Starts watching the cgroup2 tree at `root`. Without inotify (or a thread) the drain's walk
/// alone names cgroups: one log line says so.
pub fn start(root: PathBuf) -> Appeared {
    let appeared = Appeared::default();
    let watcher = match Watcher::new(root, appeared.clone()) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!("cannot watch the cgroup tree for new cgroups ({err}); a container gone within a second may show as cgroup-id:<n>");
            return appeared;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("cgroup-watch".into())
        .spawn(move || watcher.run());
    if let Err(err) = spawned {
        tracing::warn!("cannot start the cgroup watch thread: {err}");
    }
    appeared
}

struct Watcher {
    inotify: Inotify,
    root: PathBuf,
    /// Watch -> (path relative to the root, depth).
    watches: HashMap<WatchDescriptor, (String, usize)>,
    appeared: Appeared,
    said_full: bool,
}

impl Watcher {
    fn new(root: PathBuf, appeared: Appeared) -> nix::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
        let mut watcher = Watcher {
            inotify,
            root,
            watches: HashMap::new(),
            appeared,
            said_full: false,
        };
        watcher.watch("", 0);
        Ok(watcher)
    }

    fn run(mut self) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => {
                    tracing::warn!("the cgroup watch stopped: {err}");
                    return;
                }
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The directory was removed; the kernel dropped its watch.
                    self.watches.remove(&event.wd);
                    continue;
                }
                let (Some(name), Some((parent, depth))) =
                    (event.name.as_deref(), self.watches.get(&event.wd).cloned())
                else {
                    continue;
                };
                if event.mask.contains(AddWatchFlags::IN_ISDIR) {
                    self.appeared_at(&parent, depth, name);
                }
            }
        }
    }

    /// A directory `name` appeared in the watched `parent`: record it, watch it.
    fn appeared_at(&mut self, parent: &str, depth: usize, name: &OsStr) {
        let path = format!("{parent}/{}", name.to_string_lossy());
        self.record(&path);
        self.watch(&path, depth + 1);
    }

    fn record(&self, path: &str) {
        if let Ok(meta) = std::fs::metadata(self.absolute(path)) {
            self.appeared.insert(meta.ino(), path);
        }
    }

    /// Watches `path` (relative, "" for the root) and, below it, every directory already
    /// there: one created between its parent's event and this watch is found by the listing.
    fn watch(&mut self, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        if self.watches.len() >= MAX_WATCHES {
            if !self.said_full {
                tracing::warn!("watching {MAX_WATCHES} cgroups already; new ones are found by the drain's walk");
                self.said_full = true;
            }
            return;
        }
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR;
        let Ok(wd) = self.inotify.add_watch(&self.absolute(path), flags) else {
            return; // Gone already.
        };
        self.watches.insert(wd, (path.to_string(), depth));
        let Ok(entries) = std::fs::read_dir(self.absolute(path)) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let child = format!("{path}/{}", entry.file_name().to_string_lossy());
                if depth > 0 {
                    // A child of a new cgroup may be newer than the event that named its
                    // parent: record it too.
                    self.record(&child);
                }
                self.watch(&child, depth + 1);
            }
        }
    }

    fn absolute(&self, path: &str) -> PathBuf {
        self.root.join(Path::new(path.trim_start_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// inotify on an ordinary directory tree behaves as on the cgroup2 mount for mkdir.
    #[test]
    fn a_directory_created_and_removed_at_once_is_remembered() {
        let root = std::env::temp_dir().join(format!("trafficd-watch-{}", std::process::id()));
        std::fs::create_dir_all(root.join("docker")).unwrap();
        let appeared = start(root.clone());
        // The watch thread lists the tree before it reads events: give it a moment.
        std::thread::sleep(Duration::from_millis(100));
        let dir = root.join("docker/abc");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("container")).unwrap();
        // A cgroup lives a few hundred milliseconds at least (runtime setup and teardown).
        std::thread::sleep(Duration::from_millis(200));
        let ids = (
            std::fs::metadata(&dir).unwrap().ino(),
            std::fs::metadata(dir.join("container")).unwrap().ino(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let start = Instant::now();
        while appeared.path(ids.1).is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(appeared.path(ids.0).as_deref(), Some("/docker/abc"));
        assert_eq!(
            appeared.path(ids.1).as_deref(),
            Some("/docker/abc/container")
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
