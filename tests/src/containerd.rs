//! A containerd of the test's own (its own root, state and socket; the CRI plugin off), the
//! busybox image imported into it from Docker's (`docker save`: no registry is reachable), and
//! containers run with `ctr`, removed on drop. containerd and the root it used are removed on
//! drop, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::docker::{stop_engine, BUSYBOX_IMAGE};
use crate::{scratch_path, RemoveOnDrop};

/// The namespace the test's containers live in, as nerdctl's `default` would be.
pub const NAMESPACE: &str = "trafficd-test";
const START: Duration = Duration::from_secs(30);
const CONFIG: &str = "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n";

pub struct Containerd {
    daemon: Child,
    socket: PathBuf,
    _root: RemoveOnDrop,
    _state: RemoveOnDrop,
    _config: RemoveOnDrop,
    _log: RemoveOnDrop,
}

impl Containerd {
    pub fn start() -> Containerd {
        let root = scratch_path("containerd-root");
        let state = scratch_path("containerd-state");
        let socket = scratch_path("containerd.sock");
        let config = scratch_path("containerd.toml");
        let log = scratch_path("containerd.log");
        std::fs::write(&config, CONFIG).expect("write containerd.toml");
        let out = std::fs::File::create(&log).expect("create the containerd log");
        let err = out.try_clone().expect("clone the containerd log");
        let mut daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(&state)
            .arg("--address")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start containerd (apt-get install containerd, or cargo xtask setup)");
        let started = Instant::now();
        let ctr = |args: &[&str]| ctr(&socket, args);
        while !ctr(&["version"]).status.success() {
            let exited = daemon.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > START {
                let _ = daemon.kill();
                let _ = daemon.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("containerd did not answer (exit {exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Containerd {
            daemon,
            socket,
            _root: RemoveOnDrop(root),
            _state: RemoveOnDrop(state),
            _config: RemoveOnDrop(config),
            _log: RemoveOnDrop(log),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ctr -n trafficd-test <args>`, which must succeed; its stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", NAMESPACE];
        all.extend(args);
        let out = ctr(&self.socket, &all);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Imports Docker's busybox image (the caller holds it) and returns its name here.
    pub fn import_busybox(&self) -> String {
        let archive = RemoveOnDrop(scratch_path("busybox.tar"));
        let saved = Command::new("docker")
            .args(["save", "-o"])
            .arg(&archive.0)
            .arg(BUSYBOX_IMAGE)
            .output()
            .expect("run docker save");
        assert!(
            saved.status.success(),
            "docker save: {}",
            String::from_utf8_lossy(&saved.stderr)
        );
        self.ctr(&["images", "import", &archive.0.display().to_string()]);
        let names = self.ctr(&["images", "ls", "-q"]);
        names
            .lines()
            .find(|n| n.ends_with(BUSYBOX_IMAGE))
            .unwrap_or_else(|| panic!("{BUSYBOX_IMAGE} not among the imported: {names}"))
            .to_string()
    }

    /// `ctr run` in the foreground: a container with a 64-hex id and nerdctl's name label, in
    /// the host's network namespace, with `mounts` bound read-only; returns it (kept until
    /// drop) and what the command printed.
    pub fn run(
        &self,
        image: &str,
        name: &str,
        mounts: &[&str],
        command: &[&str],
    ) -> (CtrContainer<'_>, String) {
        let id = format!("{:0>64x}", rand_id());
        let label = format!("nerdctl/name={name}");
        let mut args = vec!["run", "--net-host", "--label", &label];
        let binds: Vec<String> = mounts
            .iter()
            .map(|m| format!("type=bind,src={m},dst={m},options=rbind:ro"))
            .collect();
        for bind in &binds {
            args.extend(["--mount", bind]);
        }
        args.extend([image, &id]);
        args.extend(command);
        let container = CtrContainer {
            containerd: self,
            id: id.clone(),
        };
        let out = self.ctr(&args);
        (container, out)
    }
}

/// A process-unique, time-seeded id: ctr takes any string, cgroup paths and the daemon want
/// 64 hex digits.
fn rand_id() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    nanos ^ (u128::from(std::process::id()) << 64)
}

fn ctr(socket: &Path, args: &[&str]) -> Output {
    Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(args)
        .output()
        .expect("run ctr (apt-get install containerd, or cargo xtask setup)")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop_engine(&mut self.daemon);
        let _ = std::fs::remove_file(&self.socket);
        // Its shim API socket, beside the gRPC one.
        let _ = std::fs::remove_file(self.socket.with_extension("sock.ttrpc"));
    }
}

/// A container of the test's containerd, its task and its snapshot deleted on drop.
pub struct CtrContainer<'a> {
    containerd: &'a Containerd,
    id: String,
}

impl CtrContainer<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        let socket = &self.containerd.socket;
        let _ = ctr(
            socket,
            &["-n", NAMESPACE, "task", "kill", "-s", "KILL", &self.id],
        );
        let _ = ctr(socket, &["-n", NAMESPACE, "task", "delete", "-f", &self.id]);
        let _ = ctr(socket, &["-n", NAMESPACE, "containers", "delete", &self.id]);
    }
}
