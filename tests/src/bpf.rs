//! The daemon's kernel maps as bpftool shows them, for tests that check what the kernel
//! programs recorded before the daemon reads it.

use std::{collections::BTreeMap, fs, os::fd::AsRawFd, process::Command};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::Value;

/// The id of the map called `name` among those process `pid` holds (from its fdinfo).
pub fn map_of(pid: u32, name: &str) -> u64 {
    object_fdinfos(pid, "bpf-map")
        .iter()
        .filter_map(|info| fdinfo_fields(info).get("map_id")?.parse::<u64>().ok())
        .find(|&id| {
            bpftool(&["map", "show", "id", &id.to_string()]).is_some_and(|m| m["name"] == name)
        })
        .unwrap_or_else(|| panic!("the daemon (pid {pid}) holds no map {name}"))
}

/// The fdinfo text of every BPF object fd of `pid` whose link target contains `kind`
/// (`bpf-prog`, `bpf-map`, `bpf-link`): the objects that process holds, with their ids and,
/// for programs, their run-time statistics.
pub fn object_fdinfos(pid: u32, kind: &str) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy().contains(kind))
        })
        .filter_map(|fd| {
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            fs::read_to_string(info).ok()
        })
        .collect()
}

/// The `key: value` lines of an fdinfo text.
pub fn fdinfo_fields(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

/// The value under `key` in map `map`, if any.
pub fn lookup(map: u64, key: &[u8]) -> Option<Vec<u8>> {
    let mut args: Vec<String> = ["map", "lookup", "id", &map.to_string(), "key", "hex"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(key.iter().map(|b| format!("{b:02x}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bytes(&bpftool(&args)?["value"])
}

/// Every (key, value) of map `map`.
pub fn dump(map: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let entries = bpftool(&["map", "dump", "id", &map.to_string()]).expect("bpftool map dump");
    entries
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|e| Some((bytes(&e["key"])?, bytes(&e["value"])?)))
        .collect()
}

/// SO_COOKIE of `socket`: the key the kernel programs know it by (nix has no option for it).
pub fn cookie_of(socket: &impl AsRawFd) -> u64 {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    cookie
}

/// Pins the calling thread to `cpu`, so that the kernel programs its sends trigger run there.
pub fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap_or_else(|e| panic!("CPU {cpu}: {e}"));
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set).unwrap_or_else(|e| panic!("sched_setaffinity: {e}"));
}

fn bpftool(args: &[&str]) -> Option<Value> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool (cargo xtask setup installs it)");
    out.status.success().then_some(())?;
    serde_json::from_slice(&out.stdout).ok()
}

/// bpftool's ["0x2a", ...] as bytes.
fn bytes(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
        .collect()
}
