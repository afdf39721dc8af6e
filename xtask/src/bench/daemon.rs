//! A trafficd under measurement by the bench's side subcommands (`bench containers`,
//! `bench peer-names`): started with the flags a phase needs, its CPU and drains read while
//! the phase's work runs, stopped on drop.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::api::Api;
use super::measure::cpu_seconds;
use super::proc::{wait_for, Proc};

/// trafficd's cost during one phase.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Phase {
    /// trafficd's CPU time over the phase, in percent of one core.
    pub cpu_percent: f64,
    /// The drain thread's own CPU time: on a loaded machine the drain's wall time below also
    /// counts waiting for a CPU.
    pub drain_cpu_percent: f64,
    /// The drain's duration, as /healthz reported it every 250 ms: mean and largest.
    pub drain_mean_microseconds: f64,
    pub drain_max_microseconds: u64,
}

pub struct Daemon {
    proc: Proc,
    pub api: Api,
}

impl Daemon {
    /// Starts `trafficd` with `extra` flags, its output in `out/<name>-trafficd.{out,err}`,
    /// and waits for its first drain.
    pub fn start(trafficd: &Path, out: &Path, name: &str, extra: &[&str]) -> Result<Daemon> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr: SocketAddr = listener.local_addr()?;
        drop(listener);
        let mut cmd = Command::new(trafficd);
        cmd.args(["run", "--listen", &addr.to_string(), "--interval", "1s"])
            .args(["--log-level", "warn"])
            .args(extra);
        let stdout = out.join(format!("{name}-trafficd.out"));
        let stderr = out.join(format!("{name}-trafficd.err"));
        let proc = Proc::spawn("trafficd", &mut cmd, &stdout, &stderr)?;
        let mut api = Api::new(addr);
        wait_for("trafficd's first drain", Duration::from_secs(30), || {
            api.healthz().ok().filter(|h| h.drains > 0)
        })?;
        Ok(Daemon { proc, api })
    }

    /// trafficd's CPU and drain durations while `work` runs (or, if it returns at once, for
    /// `length`).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn phase(
        &mut self,
        length: Duration,
        work: impl FnOnce() -> Result<()> + Send,
    ) -> Result<Phase> {
        let pid = self.proc.pid();
        let cpu_before = cpu_seconds(pid)?;
        let drain_before = thread_cpu_seconds(pid, "drain")?;
        let started = Instant::now();
        let done = AtomicBool::new(false);
        let mut drains = Vec::new();
        let worked = thread::scope(|scope| {
            let worker = scope.spawn(|| {
                let result = work();
                done.store(true, Ordering::Relaxed);
                result
            });
            while started.elapsed() < length || !done.load(Ordering::Relaxed) {
                if let Ok(health) = self.api.healthz() {
                    drains.push(health.last_drain_microseconds);
                }
                thread::sleep(Duration::from_millis(250));
            }
            worker.join()
        });
        worked.map_err(|_| anyhow::anyhow!("the phase's work panicked"))??;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid)? - cpu_before;
        let drain_cpu = thread_cpu_seconds(pid, "drain")? - drain_before;
        let mean = drains.iter().sum::<u64>() as f64 / drains.len().max(1) as f64;
        let percent = |seconds: f64| (seconds / elapsed * 1000.0).round() / 10.0;
        Ok(Phase {
            cpu_percent: percent(cpu),
            drain_cpu_percent: percent(drain_cpu),
            drain_mean_microseconds: mean.round(),
            drain_max_microseconds: drains.iter().copied().max().unwrap_or(0),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

/// User + system CPU seconds of `pid`'s thread named `name`.
fn thread_cpu_seconds(pid: u32, name: &str) -> Result<f64> {
    for task in fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = fs::read_to_string(task.path().join("stat"))?;
        // As in measure::cpu_seconds: utime and stime are the 12th and 13th fields after ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> Result<f64> {
            Ok(fields.get(i).context("short task stat")?.parse::<f64>()?)
        };
        // SAFETY: sysconf has no memory effects.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        return Ok((ticks(11)? + ticks(12)?) / per_second);
    }
    bail!("trafficd ({pid}) has no thread named {name}")
}
