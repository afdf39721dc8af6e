//! A started container's cgroup, captured at its engine's `start` event: the drain learns a
//! cgroup's path by walking the cgroup2 tree when the cgroup's id first moves bytes, and a
//! container that starts, sends and is removed within a second may be gone by then. Its id
//! (the cgroup directory's inode) and path are taken from its first process while it runs.

use std::{os::unix::fs::MetadataExt, path::Path};

/// (cgroup id, path relative to the cgroup2 mount at `root`) of process `pid`'s cgroup2
/// cgroup; `None` when the process is already gone.
pub fn cgroup_of(root: &Path, pid: u32) -> Option<(u64, String)> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    // Hierarchy 0 is the unified (cgroup2) one, also on a hybrid host.
    let path = process
        .cgroups()
        .ok()?
        .into_iter()
        .find(|c| c.hierarchy == 0)?
        .pathname;
    let id = std::fs::metadata(root.join(path.trim_start_matches('/')))
        .ok()?
        .ino();
    Some((id, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cgroup_under_the_mount() {
        // The cgroup2 mount as /proc/self/mountinfo names it (hybrid hosts mount it aside).
        let Some(root) = procfs::process::Process::myself()
            .and_then(|me| me.mountinfo())
            .ok()
            .and_then(|mounts| {
                mounts
                    .into_iter()
                    .find(|m| m.fs_type == "cgroup2")
                    .map(|m| m.mount_point)
            })
        else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let (id, path) = cgroup_of(&root, std::process::id()).expect("our own cgroup");
        assert!(path.starts_with('/'), "{path}");
        let dir = root.join(path.trim_start_matches('/'));
        assert_eq!(std::fs::metadata(dir).map(|m| m.ino()).ok(), Some(id));
        assert_eq!(cgroup_of(&root, u32::MAX), None);
    }
}
