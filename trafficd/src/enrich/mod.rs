//! Enrichment: who the bytes the kernel counted belong to, in words a person recognises.
//!
//! The kernel records numbers: a tgid, a cgroup id, a socket cookie. A source is one module here
//! that turns one kind of number into a description from outside the kernel maps (/proc, the
//! cgroup2 tree, sock_diag; next a container engine, interfaces, conntrack, peer names). A
//! source caches what it learnt, bounds how often it looks again, and never fails the drain:
//! what it cannot find it names as unknown.
//!
//! The drain asks through [`Sources`] only, once per process, cgroup or ownerless socket that
//! moved bytes in the interval, and hands the answers to the store with the deltas. Adding a
//! source is adding its file here and consulting it in `Sources`: the drain does not change.

mod address_owners;
mod cgroups;
// The per-tuple lookups are tested on their own; the drain reaches them through `nat`.
#[allow(dead_code)]
pub mod conntrack;
#[allow(dead_code, unused_imports)]
pub mod containers;
pub mod interfaces;
pub mod nat;
pub mod processes;
mod socket_owners;

use std::{path::PathBuf, sync::Arc};

use crate::stats::TalkerInfo;

use self::{
    cgroups::Cgroups,
    processes::{KernelView, ProcessKey, Processes},
    socket_owners::SocketOwners,
};

/// Every source the drain consults, and the one place it asks them.
pub struct Sources {
    processes: Processes,
    cgroups: Cgroups,
    socket_owners: SocketOwners,
}

impl Sources {
    /// `cgroup_root`: the cgroup2 mount, whose tree names cgroup ids.
    pub fn new(cgroup_root: PathBuf) -> Sources {
        Sources {
            processes: Processes::default(),
            cgroups: Cgroups::new(cgroup_root),
            socket_owners: SocketOwners::default(),
        }
    }

    /// How cgroup `id` is shown beside its bytes, for the cgroup itself and for the processes
    /// and flows in it. Every name of a cgroup comes from here, so that a richer owner (the
    /// container a cgroup belongs to) is a change in this folder only.
    pub fn cgroup_owner(&mut self, id: u64) -> Arc<str> {
        self.cgroups.path(id)
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
        let described = TalkerInfo {
            pid: tgid,
            comm: Arc::from(info.comm),
            cmdline: info.cmdline,
            exe: info.exe,
            user: info.user,
            uid: info.uid,
            cgroup: self.cgroup_owner(info.cgroup_id),
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
