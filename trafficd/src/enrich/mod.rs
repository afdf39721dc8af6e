//! Enrichment: who the bytes the kernel counted belong to, in words a person recognises.
//!
//! The kernel records numbers: a tgid, a cgroup id, a socket cookie. A source is one module here
//! that turns one kind of number into a description from outside the kernel maps (/proc, the
//! cgroup2 tree, sock_diag, the container engines; next interfaces, conntrack, peer names). A
//! source caches what it learnt, bounds how often it looks again, and never fails the drain:
//! what it cannot find it names as unknown.
//!
//! The drain asks through [`Sources`] only, once per process, cgroup or ownerless socket that
//! moved bytes in the interval, and hands the answers to the store with the deltas. Adding a
//! source is adding its file here and consulting it in `Sources`: the drain does not change.

mod address_owners;
mod cgroup_watch;
mod cgroups;
// The per-tuple lookups are tested on their own; the drain reaches them through `nat`.
#[allow(dead_code)]
pub mod conntrack;
pub mod containers;
pub mod interfaces;
pub mod nat;
// Read at query time by the HTTP side, never by the drain: a name per flow per drain would
// cost the drain more than the flow itself.
pub mod peers;
pub mod processes;
pub mod sock_diag;
mod socket_owners;

use std::{path::PathBuf, sync::Arc};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::stats::TalkerInfo;

use self::{
    cgroups::Cgroups,
    containers::{ContainerDirectory, Owner},
    processes::{KernelView, ProcessKey, Processes},
    socket_owners::SocketOwners,
};

/// Bounds the cgroups waiting for a name (ids of containers no engine knows, on a host without
/// engine access): past it, late names reach only the cgroups that move bytes again.
const MAX_UNNAMED: usize = 4096;

/// Every source the drain consults, and the one place it asks them.
pub struct Sources {
    processes: Processes,
    cgroups: Cgroups,
    socket_owners: SocketOwners,
    containers: ContainerDirectory,
    /// Cgroups whose owner was shown before it was named, and the directory's generation
    /// when they were last looked at.
    unnamed: HashSet<Arc<str>>,
    unnamed_generation: u64,
}

/// How a cgroup is shown beside its bytes: its path, and who owns it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupName {
    /// Relative to the cgroup2 mount; "cgroup-id:<id>" for a cgroup gone before it was seen.
    pub path: Arc<str>,
    pub owner: Arc<Owner>,
}

impl Sources {
    /// `cgroup_root`: the cgroup2 mount, whose tree names cgroup ids. `containers`: the
    /// owners the container engines and the Kubernetes API name, read without waiting.
    pub fn new(cgroup_root: PathBuf, containers: ContainerDirectory) -> Sources {
        Sources {
            processes: Processes::default(),
            cgroups: Cgroups::watched(cgroup_root),
            socket_owners: SocketOwners::default(),
            containers,
            unnamed: HashSet::default(),
            unnamed_generation: 0,
        }
    }

    /// How cgroup `id` is shown beside its bytes, for the cgroup itself and for the processes
    /// and flows in it: cgroup id -> path -> owner. Every name of a cgroup comes from here.
    pub fn cgroup_owner(&mut self, id: u64) -> CgroupName {
        let path = self.cgroups.path(id);
        let owner = if self.cgroups.is_known(&path) {
            self.containers.owner(&path)
        } else {
            // No path, no owner: a guess from a placeholder would name the host.
            Arc::default()
        };
        if owner.awaits_names() && self.unnamed.len() < MAX_UNNAMED {
            self.unnamed.insert(path.clone());
        }
        CgroupName { path, owner }
    }

    /// The owner of the cgroup at `path`, for bytes that reached no cgroup's socket (a
    /// forwarded flow of a container, named by the cgroup of a process in its namespace).
    pub fn owner_of_cgroup_path(&mut self, path: &str) -> Arc<Owner> {
        self.containers.owner(path)
    }

    /// Owners named since they were recorded by id alone (a container met before its engine's
    /// event was read, or while its engine was down): cgroup path -> its owner now. Looks
    /// only when the engines told something new.
    pub fn renamed_owners(&mut self) -> HashMap<Arc<str>, Arc<Owner>> {
        let generation = self.containers.generation();
        if self.unnamed.is_empty() || generation == self.unnamed_generation {
            return HashMap::default();
        }
        self.unnamed_generation = generation;
        let mut renamed = HashMap::default();
        self.unnamed.retain(|path| {
            let owner = self.containers.owner(path);
            if owner.awaits_names() {
                return true;
            }
            renamed.insert(path.clone(), owner);
            false
        });
        renamed
    }

    /// The identity of process `tgid` now, and its description. `kernel` is what the kernel
    /// recorded about it, asked for only when /proc cannot tell (the process exited).
    pub fn process(
        &mut self,
        tgid: u32,
        kernel: impl FnOnce() -> Option<KernelView>,
    ) -> (ProcessKey, TalkerInfo) {
        let key = self.processes.identify(tgid, kernel);
        let info = self.processes.info(&key).cloned().unwrap_or_default();
        let cgroup = self.cgroup_owner(info.cgroup_id);
        let described = TalkerInfo {
            pid: tgid,
            pid_in_namespace: info.pid_in_namespace,
            comm: Arc::from(info.comm),
            cmdline: info.cmdline,
            exe: info.exe,
            user: info.user,
            uid: info.uid,
            cgroup: cgroup.path,
            owner: cgroup.owner,
            reason: None,
        };
        (key, described)
    }

    /// Drops the processes the store no longer reports on.
    pub fn forget_processes(&mut self, gone: impl Fn(&ProcessKey) -> bool) {
        self.processes.retain(|key| !gone(key));
    }

    /// The owners /proc gives for sockets no process was seen using, as (cookie, pid): see
    /// [`SocketOwners`].
    pub fn socket_owners(&mut self, unknown: &[u64]) -> Vec<(u64, u32)> {
        let found = self.socket_owners.lookup(unknown);
        unknown
            .iter()
            .filter_map(|c| found.get(c).map(|o| (*c, o.pid)))
            .collect()
    }

    /// Forgets what was found about socket `cookie`, once it closed.
    pub fn forget_socket(&mut self, cookie: u64) {
        self.socket_owners.forget(cookie);
    }
}
