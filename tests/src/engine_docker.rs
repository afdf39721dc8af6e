//! A Docker Engine of the test's own: `dockerd` with its own socket, data and exec
//! directories, no bridge and no iptables rules, so it neither meets another test's engine
//! nor changes the host's network. Containers run with `--network=host`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dockerd may take to answer /_ping (about 0.3 s here, more under load).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running dockerd; dropping it stops it and removes its directories.
pub struct Dockerd {
    child: Option<Child>,
    dir: PathBuf,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let dir = crate::scratch_path("dockerd");
        std::fs::create_dir_all(&dir).expect("create dockerd dir");
        let log = std::fs::File::create(dir.join("log")).expect("create dockerd log");
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let mut d = Dockerd {
            child: Some(child),
            dir,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("dockerd exited with {status}:\n{}", self.log_text());
            }
            let ping = self.docker().arg("version").output();
            if matches!(ping, Ok(o) if o.status.success()) {
                return;
            }
            assert!(
                start.elapsed() < READY_WITHIN,
                "dockerd did not answer within {READY_WITHIN:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `DOCKER_HOST` for this engine.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// A `docker` command talking to this engine.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", self.host());
        c
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- dockerd log (last 20 lines) ----");
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{l}");
            }
        }
        // dockerd leaves the nsfs mount of its default network namespace behind.
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &std::path::Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p) else {
            continue;
        };
        // SAFETY: umount2 with a valid NUL-terminated path; failure is ignored.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A container started with `docker run -d`; dropping it removes it (`docker rm -f`).
pub struct Container<'a> {
    engine: &'a Dockerd,
    pub id: String,
}

impl<'a> Container<'a> {
    /// `docker run -d <args>`; panics with docker's output when it fails.
    pub fn run(engine: &'a Dockerd, args: &[String]) -> Container<'a> {
        let out = engine
            .docker()
            .args(["run", "-d"])
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker run {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container {
            engine,
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }

    /// `docker logs`: the container's stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.engine
            .docker()
            .args(["logs", &self.id])
            .output()
            .map(|o| crate::tools::text(&o))
            .unwrap_or_default()
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- container logs ----\n{}", self.logs());
        }
        let _ = self
            .engine
            .docker()
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
