//! Harness for trafficd's integration tests.
//!
//! Every test in `tests/*.rs` follows the same shape: [`require_root!`], start
//! its own [`Daemon`] (the real binary with its real kernel programs), generate
//! known traffic from `trafficgen` processes ([`trafficgen!`]), poll the HTTP API
//! until the numbers arrive ([`wait_for`]) and assert real numbers: the pid and
//! comm of the generating process and bytes within a bound justified in [`wire`].
//!
//! All resources are RAII guards that clean up on drop, also when a test panics:
//! the daemon gets SIGTERM, child processes are killed and reaped, network
//! namespaces and veths are deleted, cgroups are emptied and removed.

mod api;
pub mod bpf;
mod cgroup;
pub mod containerd;
mod daemon;
pub mod docker;
pub mod engine_docker;
mod http;
pub mod ip;
pub mod metrics;
mod netns;
pub mod podman;
mod procs;
pub mod prometheus;
mod root;
mod routed;
mod scenario;
pub mod tools;
mod wait;
pub mod wire;

pub use api::{Item, Top};
pub use cgroup::{cgroup2_mount, Cgroup};
pub use daemon::{Daemon, DaemonBuilder};
pub use http::{get, get_json, Response};
pub use netns::{Link, NetNs};
pub use procs::{Gen, GenCommand, GenReport, TrafficGen};
#[doc(hidden)]
pub use root::__skip_or_fail_without_root;
pub use root::is_root;
pub use routed::{assert_conserved, interface_item, settled_interface, wait_counted, Forwarder};
pub use scenario::{assert_transfer, Sender, Side, Transfer, TransferBuilder};
pub use wait::{wait_for, wait_some, DEFAULT_POLL, DEFAULT_TIMEOUT};

/// A path for a scratch file unique to this process and call, under the system
/// temp dir. Nothing is created.
pub fn scratch_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("trafficd-test-{}-{n}-{tag}", std::process::id()))
}

/// Removes a file, or a directory and all in it, on drop (ignoring errors).
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
