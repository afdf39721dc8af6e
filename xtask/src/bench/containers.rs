//! `cargo xtask bench containers`: what naming containers costs trafficd. The same daemon is
//! measured with no containers, with many running (idle), and while containers are started,
//! send a little and are removed as fast as the engine here sustains; then every churned
//! container must be named in /top?by=container. Real containers of the local busybox image,
//! on the real Docker engine (the running one, or a dockerd started and stopped here).
//!
//! Results go to target/bench/containers.json.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::daemon::{Daemon, Phase};
use super::proc::{sleep, wait_for, Proc};
use crate::{build_trafficd, is_root, target_dir};

const IMAGE: &str = "local/busybox:1";
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Every container this bench starts is named so: the cleanup removes them by that prefix.
const PREFIX: &str = "trafficd-bench-";
/// What each churned container sends to the host before it exits.
const CHURN_BYTES: usize = 64 * 1024;

/// `cargo xtask bench containers [options]`.
#[derive(Args, Debug)]
pub struct ContainerArgs {
    /// Containers kept running (idle) during the second phase.
    #[arg(long, default_value_t = 200)]
    running: usize,
    /// Seconds each phase is measured.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Containers started at once during the churn (each runs, sends, is removed).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct ContainerResult {
    pub running: usize,
    pub idle: Phase,
    pub with_running: Phase,
    pub churn: Phase,
    /// Containers started, sent and removed per second during the churn.
    pub churn_rate_per_second: f64,
    pub churned: usize,
    /// Churned containers that /top?by=container named afterwards.
    pub churned_named: usize,
}

pub fn run(args: ContainerArgs) -> Result<()> {
    if !is_root() {
        bail!("the container bench needs root (BPF, and the Docker engine)");
    }
    let trafficd = build_trafficd()?;
    let out = target_dir().join("bench");
    fs::create_dir_all(&out)?;
    let engine = Engine::ensure(&out)?;
    let _image = Image::ensure()?;
    let _cleanup = Cleanup;
    let result = measure(&trafficd, &out, &args, &engine)?;
    let json = out.join("containers.json");
    fs::write(&json, serde_json::to_string_pretty(&result)?)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    println!("bench: wrote {}", json.display());
    Ok(())
}

fn measure(
    trafficd: &Path,
    out: &Path,
    args: &ContainerArgs,
    engine: &Engine,
) -> Result<ContainerResult> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut daemon = Daemon::start(trafficd, out, "containers", &[])?;
    let idle = daemon.phase(seconds, || Ok(()))?;

    start_running(args.running, args.parallel)?;
    // The engine's own work of starting them is not trafficd's: let it settle first.
    sleep(Duration::from_secs(5))?;
    let with_running = daemon.phase(seconds, || Ok(()))?;

    let gateway = engine.gateway()?;
    let churn = Churn::new(&gateway)?;
    let churn_phase = daemon.phase(seconds, || churn.run(seconds, args.parallel))?;
    let started = churn.started.load(Ordering::Relaxed);
    let rate = started as f64 / args.seconds;
    // The last ones' bytes are drained within an interval; names are checked after that.
    sleep(Duration::from_secs(3))?;
    let named = daemon.named_churned()?;
    Ok(ContainerResult {
        running: args.running,
        idle,
        with_running,
        churn: churn_phase,
        churn_rate_per_second: (rate * 10.0).round() / 10.0,
        churned: started,
        churned_named: named,
    })
}

/// A trafficd for the bench, on a free loopback port.
impl Daemon {
    /// How many churned containers /top?by=container names.
    pub(super) fn named_churned(&mut self) -> Result<usize> {
        let (body, _) = self.api.get(
            "/top?by=container&window=60s&limit=1000",
            Duration::from_secs(10),
        )?;
        let top: serde_json::Value = serde_json::from_str(&body)?;
        let items = top["items"].as_array().context("/top without items")?;
        Ok(items
            .iter()
            .filter_map(|i| i["container"]["name"].as_str())
            .filter(|name| name.starts_with(&format!("{PREFIX}churn-")))
            .count())
    }
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run docker (apt-get install docker.io, or cargo xtask setup)")?;
    if !out.status.success() {
        bail!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `count` idle containers, started `parallel` at a time.
fn start_running(count: usize, parallel: usize) -> Result<()> {
    let next = AtomicUsize::new(0);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        let name = format!("{PREFIX}run-{i}");
                        docker(&["run", "-d", "--name", &name, IMAGE, "sleep", "3600"])?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a starter panicked"))?
        })
    })
}

/// Containers that start, send [`CHURN_BYTES`] to a sink on the host and are removed.
struct Churn {
    sink: SocketAddr,
    started: Arc<AtomicUsize>,
    _listener: thread::JoinHandle<()>,
}

impl Churn {
    fn new(gateway: &str) -> Result<Churn> {
        let listener = TcpListener::bind(format!("{gateway}:0"))?;
        let sink = listener.local_addr()?;
        // Each connection is read up to what the container sends, then closed: busybox's nc
        // exits when the peer closes, not at the end of its input.
        let reader = thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut left = CHURN_BYTES;
                    let mut buf = [0u8; 16384];
                    let mut stream = stream;
                    while left > 0 {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => left = left.saturating_sub(n),
                        }
                    }
                });
            }
        });
        Ok(Churn {
            sink,
            started: Arc::new(AtomicUsize::new(0)),
            _listener: reader,
        })
    }

    /// Churns for `length`, `parallel` containers at a time.
    fn run(&self, length: Duration, parallel: usize) -> Result<()> {
        let until = Instant::now() + length;
        let script = format!(
            "dd if=/dev/zero bs=1024 count={} 2>/dev/null | nc {} {}",
            CHURN_BYTES / 1024,
            self.sink.ip(),
            self.sink.port()
        );
        thread::scope(|scope| {
            let workers: Vec<_> = (0..parallel.max(1))
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        while Instant::now() < until {
                            let i = self.started.fetch_add(1, Ordering::Relaxed);
                            let name = format!("{PREFIX}churn-{i}");
                            docker(&["run", "--rm", "--name", &name, IMAGE, "sh", "-c", &script])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a churner panicked"))?
            })
        })
    }
}

/// The Docker engine: the running one, or one started here and stopped on drop.
struct Engine {
    started: Option<Proc>,
}

impl Engine {
    fn ensure(out: &Path) -> Result<Engine> {
        if docker(&["version", "--format", "{{.Server.Version}}"]).is_ok() {
            return Ok(Engine { started: None });
        }
        let mut cmd = Command::new("/usr/sbin/dockerd");
        let log = out.join("containers-dockerd.log");
        let proc = Proc::spawn("dockerd", &mut cmd, &log, &log)?;
        wait_for("dockerd to answer", Duration::from_secs(30), || {
            Path::new(DOCKER_SOCKET)
                .exists()
                .then(|| docker(&["version"]).ok())
                .flatten()
        })?;
        Ok(Engine {
            started: Some(proc),
        })
    }

    /// The host's address on the default bridge.
    fn gateway(&self) -> Result<String> {
        docker(&[
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
        ])
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(proc) = &mut self.started {
            proc.stop(Duration::from_secs(20));
        }
    }
}

/// The busybox image, imported from busybox-static when missing and removed again on drop.
struct Image {
    imported: bool,
}

impl Image {
    fn ensure() -> Result<Image> {
        if docker(&["image", "inspect", IMAGE]).is_ok() {
            return Ok(Image { imported: false });
        }
        let root = target_dir().join("bench").join("busybox-rootfs");
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("bin"))?;
        fs::create_dir_all(root.join("tmp"))?;
        let busybox = PathBuf::from("/bin/busybox");
        fs::copy(&busybox, root.join("bin/busybox"))
            .context("copy busybox (apt-get install busybox-static)")?;
        let list = Command::new(&busybox).arg("--list").output()?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
            }
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()?;
        let imported = Command::new("docker")
            .args(["import", "-", IMAGE])
            .stdin(tar.stdout.context("tar's output")?)
            .stdout(Stdio::null())
            .status()?;
        let _ = fs::remove_dir_all(&root);
        if !imported.success() {
            bail!("docker import of {IMAGE} failed");
        }
        Ok(Image { imported: true })
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.imported {
            let _ = docker(&["rmi", "-f", IMAGE]);
        }
    }
}

/// Removes every container the bench started, also after an error.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("name={PREFIX}");
        let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) else {
            return;
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        for batch in ids.chunks(50) {
            let mut args = vec!["rm", "-f"];
            args.extend(batch);
            let _ = docker(&args);
        }
    }
}
