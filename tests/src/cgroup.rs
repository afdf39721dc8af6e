//! A cgroup2 child cgroup that a test creates and removes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use procfs::process::{MountInfos, Process};

/// A child cgroup of the cgroup2 root, named `trafficd-test-<pid>-<n>-<tag>`.
/// On drop the processes still in it are moved back to the test's own cgroup
/// (killed if that fails) and the directory is removed.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    rel: String,
    home: PathBuf,
}

impl Cgroup {
    /// Where cgroup2 is mounted (see [`cgroup2_mount`]); panics when there is none.
    pub fn mount_point() -> PathBuf {
        cgroup2_mount().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates the cgroup. `tag` keeps test failures readable.
    pub fn new(tag: &str) -> Cgroup {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let mount = Self::mount_point();
        let name = format!(
            "trafficd-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = mount.join(&name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let home = mount.join(Self::current_path().trim_start_matches('/'));
        Cgroup {
            dir,
            rel: format!("/{name}"),
            home,
        }
    }

    /// The cgroup2 path of the test process itself ("0::/path" in
    /// /proc/self/cgroup; "/" on these machines), which its children inherit.
    pub fn current_path() -> String {
        std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_else(|| "/".into())
    }

    /// The path relative to the cgroup2 mount, as trafficd reports it: `/trafficd-test-...`.
    pub fn path(&self) -> &str {
        &self.rel
    }

    /// The directory under the cgroup2 mount.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup id (what bpf_skb_cgroup_id() returns): the inode number of its directory.
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.dir).expect("stat cgroup dir").ino()
    }

    /// Moves a process (all its threads) into this cgroup.
    pub fn add_pid(&self, pid: u32) {
        let p = self.dir.join("cgroup.procs");
        std::fs::write(&p, pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", p.display()));
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub(crate) fn open_procs(&self) -> File {
        let p = self.dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_CLOEXEC.bits())
            .open(&p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for pid in self.pids() {
                let moved = OpenOptions::new()
                    .write(true)
                    .open(self.home.join("cgroup.procs"))
                    .and_then(|mut f| f.write_all(pid.to_string().as_bytes()));
                if moved.is_err() {
                    // A pid in the cgroup this test created.
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!(
                        "warning: could not remove cgroup {}: {e}",
                        self.dir.display()
                    );
                    return;
                }
                // EBUSY while an exiting task is still being released.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Where cgroup2 is mounted, from /proc/self/mountinfo: hybrid hosts mount it at
/// /sys/fs/cgroup/unified, unified hosts at /sys/fs/cgroup.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let mounts = Process::myself()
        .and_then(|me| me.mountinfo())
        .map_err(|e| io::Error::other(format!("read /proc/self/mountinfo: {e}")))?;
    first_cgroup2(mounts)
        .ok_or_else(|| io::Error::other("no cgroup2 mount in /proc/self/mountinfo: mount one"))
}

fn first_cgroup2(mounts: MountInfos) -> Option<PathBuf> {
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| PathBuf::from(unescape_mountinfo(&m.mount_point.to_string_lossy())))
}

/// mountinfo escapes space, tab, newline and backslash as \ooo (octal); procfs hands the
/// mount point over as written, escapes included.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use procfs::FromBufRead;

    use super::*;

    fn mount_point_from(text: &str) -> Option<PathBuf> {
        first_cgroup2(MountInfos::from_buf_read(text.as_bytes()).unwrap())
    }

    #[test]
    fn finds_cgroup2_in_hybrid_mountinfo() {
        let info = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            mount_point_from(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            mount_point_from("1 0 0:1 / /mnt/a\\040b rw - cgroup2 none rw\n"),
            Some(PathBuf::from("/mnt/a b"))
        );
        assert_eq!(mount_point_from("1 0 0:1 / /x rw - cgroup none rw\n"), None);
    }
}
