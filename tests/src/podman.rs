//! Rootful Podman for the container tests, set up as the test machines need it: the cgroupfs
//! manager (no systemd), and a containers.conf that clears the default ulimits (the VM refuses
//! raising RLIMIT_NOFILE, and runc fails with "error setting rlimit type 7" otherwise). The
//! Docker-compatible API service runs on a socket of its own and stops on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::docker::{stop_engine, wait_for_engine, Container, Engine, Image};
use crate::{scratch_path, RemoveOnDrop};

const CONTAINERS_CONF: &str = "[containers]\ndefault_ulimits = []\n";

/// `podman system service` on a scratch socket, with the configuration above.
pub struct Podman {
    engine: Engine,
    service: Child,
    socket: PathBuf,
    _conf: RemoveOnDrop,
    _log: RemoveOnDrop,
}

impl Podman {
    pub fn start() -> Podman {
        let conf = scratch_path("containers.conf");
        std::fs::write(&conf, CONTAINERS_CONF).expect("write containers.conf");
        let engine = Engine::Podman { conf: conf.clone() };
        let socket = scratch_path("podman.sock");
        let log = scratch_path("podman.log");
        let out = std::fs::File::create(&log).expect("create podman log");
        let err = out.try_clone().expect("clone podman log");
        let mut service = engine
            .command()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start podman (apt-get install podman, or cargo xtask setup)");
        wait_for_engine("podman system service", &socket, &mut service, &log);
        Podman {
            engine,
            service,
            socket,
            _conf: RemoveOnDrop(conf),
            _log: RemoveOnDrop(log),
        }
    }

    /// The Docker-compatible API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The busybox image, imported if missing; removed on drop if imported here.
    pub fn busybox(&self) -> Image {
        Image::ensure(self.engine.clone())
    }

    /// `podman run -d --name <name> <busybox> <command...>`.
    pub fn run(&self, name: &str, command: &[&str]) -> Container {
        Container::run(self.engine.clone(), name, &[], command)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        stop_engine(&mut self.service);
        let _ = std::fs::remove_file(&self.socket);
    }
}
