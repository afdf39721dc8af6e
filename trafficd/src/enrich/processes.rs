//! Who a pid is: comm, cmdline, exe, user and start time, from /proc, cached.
//!
//! A process is identified by (pid, start time) so that a reused pid never inherits another
//! process's totals. A process that exited before we looked keeps the identity the kernel
//! recorded when it used its socket (comm, uid, cgroup), with an unknown start time.

use std::collections::HashMap;

use trafficd_common::SocketOwner;

/// Identity of a process across pid reuse. `start_time` is in clock ticks after boot (field 22
/// of /proc/<pid>/stat), 0 when the process was gone before we could read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub uid: Option<u32>,
    pub user: String,
    /// The pid inside the process's own pid namespace (the last of NSpid in
    /// /proc/<pid>/status): a container's processes have two, the host's one.
    pub pid_in_namespace: Option<u32>,
    /// Cgroup id the kernel saw the process in (0 if unknown).
    pub cgroup_id: u64,
    pub alive: bool,
}

/// What the kernel knows about a process, when /proc no longer does.
pub struct KernelView {
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
}

impl From<&SocketOwner> for KernelView {
    fn from(owner: &SocketOwner) -> Self {
        KernelView {
            comm: comm_to_string(&owner.comm),
            uid: owner.uid,
            cgroup_id: owner.cgroup_id,
        }
    }
}

pub fn comm_to_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[derive(Default)]
pub struct Processes {
    current: HashMap<u32, ProcessKey>,
    info: HashMap<ProcessKey, ProcessInfo>,
    users: HashMap<u32, String>,
}

impl Processes {
    /// The identity of `pid` now. Reads /proc/<pid>/stat (one small read) to notice pid reuse;
    /// the rest of /proc is read once per process.
    pub fn identify(
        &mut self,
        pid: u32,
        kernel: impl FnOnce() -> Option<KernelView>,
    ) -> ProcessKey {
        let live = procfs::process::Process::new(pid as i32)
            .ok()
            .and_then(|p| p.stat().ok().map(|stat| (p, stat)));
        match live {
            Some((process, stat)) => {
                let key = ProcessKey {
                    pid,
                    start_time: stat.starttime,
                };
                if !self.info.contains_key(&key) {
                    let info = self.read_proc(&process, stat.comm, kernel);
                    self.info.insert(key, info);
                }
                self.current.insert(pid, key);
                key
            }
            None => {
                // Gone: keep the identity we had, else what the kernel recorded.
                if let Some(key) = self.current.get(&pid).copied() {
                    if let Some(info) = self.info.get_mut(&key) {
                        info.alive = false;
                    }
                    return key;
                }
                let key = ProcessKey { pid, start_time: 0 };
                let info = match kernel() {
                    Some(view) => ProcessInfo {
                        comm: view.comm,
                        user: self.user_name(view.uid),
                        uid: Some(view.uid),
                        cgroup_id: view.cgroup_id,
                        ..ProcessInfo::default()
                    },
                    None => ProcessInfo::default(),
                };
                self.info.entry(key).or_insert(info);
                self.current.insert(pid, key);
                key
            }
        }
    }

    pub fn info(&self, key: &ProcessKey) -> Option<&ProcessInfo> {
        self.info.get(key)
    }

    /// Drops processes the caller no longer reports on.
    pub fn retain(&mut self, mut keep: impl FnMut(&ProcessKey) -> bool) {
        self.info.retain(|key, _| keep(key));
        self.current.retain(|_, key| keep(key));
    }

    fn read_proc(
        &mut self,
        process: &procfs::process::Process,
        comm: String,
        kernel: impl FnOnce() -> Option<KernelView>,
    ) -> ProcessInfo {
        let cmdline = process
            .cmdline()
            .map(|args| args.join(" "))
            .unwrap_or_default();
        let exe = process
            .exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let uid = process.uid().ok();
        let pid_in_namespace = process
            .status()
            .ok()
            .and_then(|status| status.nspid)
            .and_then(|nspid| nspid.last().copied())
            .and_then(|pid| u32::try_from(pid).ok());
        let cgroup_id = kernel().map(|view| view.cgroup_id).unwrap_or(0);
        ProcessInfo {
            comm,
            cmdline,
            exe,
            user: uid.map(|uid| self.user_name(uid)).unwrap_or_default(),
            uid,
            pid_in_namespace,
            cgroup_id,
            alive: true,
        }
    }

    fn user_name(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| u.name().to_string_lossy().into_owned())
                    .unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        assert_eq!(comm_to_string(&comm), "curl");
        assert_eq!(comm_to_string(b"sixteen-bytes-xx"), "sixteen-bytes-xx");
    }

    #[test]
    fn identifies_this_process_with_its_start_time() {
        let mut processes = Processes::default();
        let pid = std::process::id();
        let key = processes.identify(pid, || None);
        assert_eq!(key.pid, pid);
        assert_ne!(key.start_time, 0);
        let info = processes.info(&key).unwrap();
        assert!(info.alive);
        assert!(!info.cmdline.is_empty());
        // The test runs in one pid namespace or more; its innermost pid is known either way.
        assert!(info.pid_in_namespace.is_some());
    }

    #[test]
    fn exited_process_takes_the_kernel_view() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut processes = Processes::default();
        let key = processes.identify(pid, || {
            Some(KernelView {
                comm: "gone".into(),
                uid: 0,
                cgroup_id: 7,
            })
        });
        assert_eq!(key.start_time, 0);
        let info = processes.info(&key).unwrap();
        assert_eq!(info.comm, "gone");
        assert_eq!(info.cgroup_id, 7);
        assert!(!info.alive);
    }
}
