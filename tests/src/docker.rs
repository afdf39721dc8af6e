//! A real Docker engine for the container tests: the running one, or a `dockerd` the test
//! starts and stops; the local busybox image (no registry is reachable); containers removed on
//! drop, also when the test panics.
//!
//! The container guard and the busybox rootfs serve Podman too (`podman.rs`): both engines take
//! the same `run`/`rm`/`inspect` command lines.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{scratch_path, Cgroup};

/// The image every container test runs: busybox and its applets, imported locally.
pub const BUSYBOX_IMAGE: &str = "local/busybox:1";
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// A cold engine (first start: networks, iptables rules) is much slower than the usual 0.3 s.
const ENGINE_START: Duration = Duration::from_secs(30);
const ENGINE_STOP: Duration = Duration::from_secs(20);

/// Whether `socket` is an engine API that answers `GET /_ping` with `OK` (Docker and Podman's
/// compatible service both do).
pub fn pings(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("OK")
}

/// Waits until `socket` answers `/_ping`, or `child` exits, or the time is up.
pub(crate) fn wait_for_engine(what: &str, socket: &Path, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while !pings(socket) {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || start.elapsed() > ENGINE_START {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not answer on {} (exit {exited:?}); last log lines, newest first:\n{}",
                socket.display(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then SIGKILL when it does not stop in time.
pub(crate) fn stop_engine(child: &mut Child) {
    // SAFETY: kill() with a pid we spawned and have not reaped yet: it names our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < ENGINE_STOP {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The Docker engine for a test. If one already answers on its socket it is used and left
/// running; otherwise `/usr/sbin/dockerd` is started here and stopped on drop.
pub struct Dockerd {
    started: Option<Child>,
    log: PathBuf,
}

impl Dockerd {
    pub fn ensure() -> Dockerd {
        let log = scratch_path("dockerd.log");
        let started = (!pings(Path::new(DOCKER_SOCKET))).then(|| spawn_dockerd(&log));
        Dockerd { started, log }
    }

    pub fn socket(&self) -> &Path {
        Path::new(DOCKER_SOCKET)
    }

    /// Whether this guard started the engine (and will stop it).
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }

    /// Stops the engine now, as an outage would (only one this guard started).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.started.take() {
            stop_engine(&mut child);
        }
    }

    /// Starts the engine again after [`Dockerd::stop`]; it is then stopped on drop.
    pub fn restart(&mut self) {
        if self.started.is_none() && !pings(Path::new(DOCKER_SOCKET)) {
            self.started = Some(spawn_dockerd(&self.log));
        }
    }

    /// The busybox image, imported if missing; removed on drop if imported here.
    pub fn busybox(&self) -> Image {
        Image::ensure(Engine::Docker)
    }

    /// `docker run -d --name <name> <busybox> <command...>`.
    pub fn run(&self, name: &str, command: &[&str]) -> Container {
        Container::run(Engine::Docker, name, &[], command)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn spawn_dockerd(log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create dockerd log");
    let err = out.try_clone().expect("clone dockerd log");
    let mut child = Command::new("/usr/sbin/dockerd")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start /usr/sbin/dockerd (apt-get install docker.io, or cargo xtask setup)");
    wait_for_engine("dockerd", Path::new(DOCKER_SOCKET), &mut child, log);
    child
}

/// Which CLI drives a container. Podman needs its containers.conf and the cgroupfs manager on
/// every call (no systemd on the test machines).
#[derive(Debug, Clone)]
pub enum Engine {
    Docker,
    Podman { conf: PathBuf },
}

impl Engine {
    pub fn command(&self) -> Command {
        match self {
            Engine::Docker => Command::new("docker"),
            Engine::Podman { conf } => {
                let mut cmd = Command::new("podman");
                cmd.env("CONTAINERS_CONF", conf)
                    .arg("--cgroup-manager=cgroupfs");
                cmd
            }
        }
    }

    /// Runs the CLI and returns its trimmed stdout; panics with its stderr on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {self:?} {args:?}: {e}"));
        if !out.status.success() {
            panic!(
                "{self:?} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn quiet(&self, args: &[&str]) -> bool {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The local busybox image; removed on drop when this guard imported it.
pub struct Image {
    engine: Engine,
    imported: bool,
}

impl Image {
    pub fn ensure(engine: Engine) -> Image {
        if engine.quiet(&["image", "inspect", BUSYBOX_IMAGE]) {
            return Image {
                engine,
                imported: false,
            };
        }
        let rootfs = BusyboxRootfs::build();
        let mut tar = Command::new("tar")
            .args(["-C"])
            .arg(&rootfs.0)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run tar");
        // Its progress lines go to stderr: shown only when the import fails.
        let import = engine
            .command()
            .args(["import", "-", BUSYBOX_IMAGE])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("run import");
        let tar_status = tar.wait().expect("wait for tar");
        assert!(tar_status.success(), "tar of the busybox rootfs failed");
        assert!(
            import.status.success(),
            "{engine:?} import {BUSYBOX_IMAGE} failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
        Image {
            engine,
            imported: true,
        }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.imported {
            self.engine.quiet(&["rmi", "-f", BUSYBOX_IMAGE]);
        }
    }
}

/// A directory with busybox and a link per applet: the whole image.
struct BusyboxRootfs(PathBuf);

impl BusyboxRootfs {
    fn build() -> BusyboxRootfs {
        let root = scratch_path("busybox-rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir rootfs/tmp");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox (apt-get install busybox-static, or cargo xtask setup)");
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        BusyboxRootfs(root)
    }
}

impl Drop for BusyboxRootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running container, removed (`rm -f`) on drop.
pub struct Container {
    engine: Engine,
    id: String,
    name: String,
}

impl Container {
    /// `run -d --name <name> <options...> <busybox> <command...>`.
    pub fn run(engine: Engine, name: &str, options: &[&str], command: &[&str]) -> Container {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(options);
        args.push(BUSYBOX_IMAGE);
        args.extend(command);
        let id = engine.cli(&args);
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "run printed {id:?}, not a container id"
        );
        Container {
            engine,
            id,
            name: name.to_string(),
        }
    }

    /// The full 64-hex id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `inspect -f <template>`.
    pub fn inspect(&self, template: &str) -> String {
        self.engine.cli(&["inspect", "-f", template, &self.id])
    }

    /// The host pid of the container's first process.
    pub fn pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("{} has no pid: {pid:?}", self.name))
    }

    /// The cgroup2 path of the container's first process, relative to the cgroup2 mount, as
    /// trafficd reports it (`/docker/<id>`, `/libpod_parent/libpod-<id>`).
    pub fn cgroup_path(&self) -> String {
        let pid = self.pid();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
        cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or_else(|| panic!("no cgroup2 line for {pid}: {cgroup}"))
            .to_string()
    }

    /// The container's cgroup directory under the cgroup2 mount.
    pub fn cgroup_dir(&self) -> PathBuf {
        Cgroup::mount_point().join(self.cgroup_path().trim_start_matches('/'))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.engine.quiet(&["rm", "-f", &self.id]);
    }
}
