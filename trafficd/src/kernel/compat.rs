//! What this host allows: privileges, BTF, cgroup2, and which programs load on this kernel.
//!
//! Each check fails with one line that names the problem and the fix. Programs are split into
//! required ones (no accounting without them) and optional ones, which degrade one feature
//! with a warning that says what is lost.

use std::{fs, path::PathBuf};

use procfs::process::{MountInfos, Process};

use crate::error::{Error, Result};

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_NET_ADMIN: u32 = 12;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails unless the process can load and attach the programs: either CAP_SYS_ADMIN, or
/// CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN (tracing programs and cgroup attachment), and in both
/// cases CAP_SYS_ADMIN is still needed by the cgroup attach on older kernels, so we ask for it
/// only when the fine-grained set is incomplete.
pub fn check_privileges() -> Result<()> {
    let effective = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON) && has(CAP_NET_ADMIN)) {
        return Ok(());
    }
    let missing: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(cap, _)| !has(*cap))
    .map(|(_, name)| name)
    .collect();
    Err(Error::MissingPrivileges {
        missing: missing.join(", "),
    })
}

/// Warns, once at start, about capabilities whose absence only narrows what is shown: the
/// counts stay exact, but a field would otherwise be empty without saying why.
pub fn warn_about_optional_capabilities() {
    let Some(effective) = effective_capabilities() else {
        return;
    };
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if !has(CAP_SYS_PTRACE) && !has(CAP_SYS_ADMIN) {
        tracing::warn!(
            "without CAP_SYS_PTRACE the executable path (`exe`) of other users' processes cannot \
             be read and is shown empty; grant cap_sys_ptrace to see it"
        );
    }
}

/// Whether this process may enter other network namespaces (setns needs CAP_SYS_ADMIN).
pub fn can_enter_namespaces() -> bool {
    effective_capabilities().is_some_and(|caps| caps & (1u64 << CAP_SYS_ADMIN) != 0)
}

/// The effective capability set of this process, from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = Process::myself().and_then(|me| me.status()).ok()?;
    Some(status.capeff)
}

/// One past the highest number of a CPU this host can ever bring online. The programs index
/// their per-CPU entries by CPU number, and the possible CPUs need not be numbered without gaps
/// (`0-3,8-11`), so their count would not do.
pub fn cpu_number_limit() -> Result<u32> {
    fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .as_deref()
        .and_then(past_highest_cpu)
        .ok_or(Error::PossibleCpus)
}

/// One past the highest CPU of a kernel CPU list (`0-1`, `0,2-5`).
fn past_highest_cpu(list: &str) -> Option<u32> {
    let last_range = list.trim().rsplit(',').next()?;
    let highest = last_range.rsplit('-').next()?.parse::<u32>().ok()?;
    highest.checked_add(1)
}

/// The mount point of the cgroup2 filesystem. Found through mountinfo because hosts differ:
/// /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
pub fn cgroup2_root() -> Result<PathBuf> {
    let mounts = Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(|err| Error::MountInfo(err.to_string()))?;
    find_cgroup2(&mounts).ok_or(Error::NoCgroup2)
}

fn find_cgroup2(mounts: &MountInfos) -> Option<PathBuf> {
    let cgroup2 = mounts.into_iter().find(|m| m.fs_type == "cgroup2")?;
    // procfs hands the mount point over as mountinfo writes it, escapes included.
    let written = cgroup2.mount_point.to_string_lossy();
    Some(PathBuf::from(unescape_octal(&written)))
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(Ok(value)) = field.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8)) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_numbers_run_to_the_highest_possible_one() {
        assert_eq!(past_highest_cpu("0-1\n"), Some(2));
        assert_eq!(past_highest_cpu("0"), Some(1));
        // Gaps: CPUs 4-7 can never exist, but 8-11 index past them.
        assert_eq!(past_highest_cpu("0-3,8-11\n"), Some(12));
        assert_eq!(past_highest_cpu("0,2"), Some(3));
        assert_eq!(past_highest_cpu(""), None);
        assert_eq!(past_highest_cpu("0-x"), None);
        assert_eq!(past_highest_cpu("4294967295"), None);
    }

    fn mounts(mountinfo: &str) -> MountInfos {
        procfs::FromBufRead::from_buf_read(mountinfo.as_bytes()).unwrap()
    }

    #[test]
    fn finds_cgroup2_in_hybrid_hierarchy() {
        let mountinfo = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            find_cgroup2(&mounts(mountinfo)),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn no_cgroup2_is_none() {
        let sysfs_only = mounts("25 30 0:22 / /sys rw - sysfs sysfs rw");
        assert_eq!(find_cgroup2(&sysfs_only), None);
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape_octal(r"/mnt/a\040b"), "/mnt/a b");
        let spaced = mounts(r"26 25 0:23 / /mnt/cgroup\040two rw - cgroup2 cgroup2 rw");
        assert_eq!(
            find_cgroup2(&spaced),
            Some(PathBuf::from("/mnt/cgroup two"))
        );
    }

    #[test]
    fn reads_this_process_capabilities() {
        // Whatever this process holds, /proc/self/status names a set.
        assert!(effective_capabilities().is_some());
    }
}
