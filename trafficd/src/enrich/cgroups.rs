//! Cgroup id -> cgroup path. A cgroup2 id is the inode number of its directory, so walking the
//! cgroup2 mount once gives the whole table. An id never seen before is taken from the cgroups
//! seen appearing (`cgroup_watch`), else triggers a re-walk at once (a container that just
//! started, and may be gone in a second); an id a walk could not find (the cgroup is already
//! gone) is retried at most once per `REWALK_EVERY`.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::cgroup_watch::{self, Appeared};
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

const REWALK_EVERY: Duration = Duration::from_secs(10);
/// Bounds the cost of a burst of new cgroups to one walk per this interval.
const MIN_REWALK_GAP: Duration = Duration::from_millis(100);
/// Deeper than any real hierarchy; stops a loop on a pathological mount.
const MAX_DEPTH: usize = 32;

pub struct Cgroups {
    root: PathBuf,
    /// Cgroups seen appearing, for those gone before a walk; `None`: not watched.
    appeared: Option<Appeared>,
    paths: HashMap<u64, Arc<str>>,
    /// Ids a walk did not find.
    missing: HashSet<u64>,
    walked_at: Option<Instant>,
}

impl Cgroups {
    pub fn new(root: PathBuf) -> Cgroups {
        Cgroups {
            root,
            appeared: None,
            paths: HashMap::default(),
            missing: HashSet::default(),
            walked_at: None,
        }
    }

    /// As [`Cgroups::new`], and watches the tree for new cgroups.
    pub fn watched(root: PathBuf) -> Cgroups {
        Cgroups {
            appeared: Some(cgroup_watch::start(root.clone())),
            ..Cgroups::new(root)
        }
    }

    /// Path of cgroup `id` relative to the cgroup2 mount ("/" for the root, "/docker/<id>"...).
    /// Ids of cgroups removed before we walked them render as "cgroup-id:<id>".
    pub fn path(&mut self, id: u64) -> Arc<str> {
        if id == 0 {
            return Arc::from("");
        }
        if let Some(path) = self.paths.get(&id) {
            return path.clone();
        }
        // A cgroup seen appearing needs no walk: with many containers starting, a walk of
        // the whole tree per new id was most of the drain.
        if let Some(path) = self.appeared.as_ref().and_then(|a| a.path(id)) {
            self.paths.insert(id, path.clone());
            return path;
        }
        if self.may_rewalk(id) {
            self.walk();
            if let Some(path) = self.paths.get(&id) {
                return path.clone();
            }
        }
        self.missing.insert(id);
        Arc::from(format!("cgroup-id:{id}"))
    }

    /// Whether `path` (from [`Cgroups::path`]) names a cgroup rather than standing in for one.
    pub fn is_known(&self, path: &str) -> bool {
        path.starts_with('/')
    }

    fn may_rewalk(&self, id: u64) -> bool {
        let gap = if self.missing.contains(&id) {
            REWALK_EVERY
        } else {
            MIN_REWALK_GAP
        };
        self.walked_at.is_none_or(|at| at.elapsed() >= gap)
    }

    fn walk(&mut self) {
        self.walked_at = Some(Instant::now());
        let mut found = HashMap::default();
        visit(&self.root, &self.root, 0, &mut found);
        // Keep names of cgroups that have gone: their counters may still be reported.
        self.missing.retain(|id| !found.contains_key(id));
        self.paths.extend(found);
    }
}

fn visit(root: &Path, dir: &Path, depth: usize, found: &mut HashMap<u64, Arc<str>>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    found.insert(meta.ino(), Arc::from(format!("/{}", relative.display())));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            visit(root, &entry.path(), depth + 1, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_directories_by_inode() {
        let dir = std::env::temp_dir().join(format!("trafficd-cgroups-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docker/abc")).unwrap();
        let ino = std::fs::metadata(dir.join("docker/abc")).unwrap().ino();
        let root_ino = std::fs::metadata(&dir).unwrap().ino();
        let mut cgroups = Cgroups::new(dir.clone());
        assert_eq!(&*cgroups.path(ino), "/docker/abc");
        assert_eq!(&*cgroups.path(root_ino), "/");
        assert_eq!(&*cgroups.path(u64::MAX), format!("cgroup-id:{}", u64::MAX));
        // A cgroup created after the first walk is found as soon as its id shows up.
        std::fs::create_dir_all(dir.join("docker/def")).unwrap();
        let new = std::fs::metadata(dir.join("docker/def")).unwrap().ino();
        std::thread::sleep(MIN_REWALK_GAP);
        assert_eq!(&*cgroups.path(new), "/docker/def");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
