//! Starts the monitor a condition names for one run and stops it after: each is started fresh
//! for every run, so every run pays the same start-up and no state carries over.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::api::Api;
use super::conditions::Condition;
use super::proc::{self, wait_for, Proc};
use super::scenarios::{Env, Scenario};

/// kernel.bpf_stats_enabled: set per run, restored to its value before the bench on drop.
pub struct BpfStatsSysctl {
    original: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsSysctl {
    pub fn new() -> Result<BpfStatsSysctl> {
        let original = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("read {BPF_STATS}"))?
            .trim()
            .to_string();
        Ok(BpfStatsSysctl { original })
    }

    pub fn set(&self, on: bool) -> Result<()> {
        fs::write(BPF_STATS, if on { "1" } else { "0" })
            .with_context(|| format!("write {BPF_STATS}"))
    }

    pub fn original(&self) -> &str {
        &self.original
    }
}

impl Drop for BpfStatsSysctl {
    fn drop(&mut self) {
        if let Err(err) = fs::write(BPF_STATS, &self.original) {
            eprintln!(
                "warning: could not restore {BPF_STATS} to {}: {err}",
                self.original
            );
        }
    }
}

/// The binaries the monitors run.
pub struct Tools {
    pub trafficd: PathBuf,
    /// For trafficd+perf.
    pub perf: Option<PathBuf>,
    pub nethogs: Option<PathBuf>,
    pub bandwhich: Option<PathBuf>,
}

/// A running monitor.
pub struct Monitor {
    pub condition: Condition,
    pub proc: Proc,
    /// trafficd's API.
    pub api: Option<SocketAddr>,
    /// stdout of the capture tools, parsed after the run.
    pub output: PathBuf,
    /// From start to ready.
    pub startup: Duration,
}

impl Monitor {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Fails when the monitor died during the run.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.proc.try_status() {
            bail!(
                "{} exited during the run ({status}): {}",
                self.condition.name(),
                super::scenarios::read_tail(&self.output.with_extension("err"))
            );
        }
        Ok(())
    }
}

/// Starts the monitor of `condition` (None for the baseline and empty-bpf, whose programs
/// the run attaches itself) and waits until it is ready:
/// trafficd has answered /healthz and finished its first drain (so its start-up work is
/// not counted as the run's); a capture tool has been up for a second.
pub fn start(
    condition: Condition,
    scenario: &Scenario,
    env: &Env,
    tools: &Tools,
    stats: &BpfStatsSysctl,
) -> Result<Option<Monitor>> {
    stats.set(condition.bpf_stats())?;
    let files = Files {
        output: env.work.join(format!("{}.out", condition.name())),
        stderr: env.work.join(format!("{}.err", condition.name())),
    };
    let monitor = match condition {
        Condition::Baseline | Condition::EmptyBpf | Condition::EmptyBpfNoStats => return Ok(None),
        Condition::Trafficd | Condition::TrafficdBpfStats | Condition::TrafficdSampled => {
            start_trafficd(condition, scenario, tools, files)?
        }
        Condition::Nethogs | Condition::Bandwhich => {
            start_capture_tool(condition, scenario, env, tools, files)?
        }
    };
    Ok(Some(monitor))
}

/// Where a monitor's stdout and stderr go.
struct Files {
    output: PathBuf,
    stderr: PathBuf,
}

/// trafficd with its API on a free loopback port, once it finished its first drain.
fn start_trafficd(
    condition: Condition,
    scenario: &Scenario,
    tools: &Tools,
    Files { output, stderr }: Files,
) -> Result<Monitor> {
    let started = Instant::now();
    let port = free_loopback_port()?;
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&tools.trafficd);
    cmd.args(["run", "--listen", &api.to_string(), "--interval", "1s"])
        .args(["--log-level", "warn"]);
    if let Some(size) = scenario.flow_map_size() {
        cmd.args(["--flow-map-size", &size.to_string()]);
    }
    let mut proc = Proc::spawn(condition.name(), &mut cmd, &output, &stderr)?;
    let mut client = Api::new(api);
    let ready = wait_for("trafficd's first drain", Duration::from_secs(30), || {
        if proc.try_status().is_some() {
            return Some(false);
        }
        client
            .healthz()
            .ok()
            .filter(|h| h.drains >= 1)
            .map(|_| true)
    })?;
    if !ready {
        bail!(
            "trafficd exited at start: {}",
            super::scenarios::read_tail(&stderr)
        );
    }
    Ok(Monitor {
        condition,
        proc,
        api: Some(api),
        output,
        startup: started.elapsed(),
    })
}

/// nethogs or bandwhich on the scenario's interface, in the client's namespace for veth (its
/// sockets are the ones /proc/net shows there), given a second to start.
fn start_capture_tool(
    condition: Condition,
    scenario: &Scenario,
    env: &Env,
    tools: &Tools,
    Files { output, stderr }: Files,
) -> Result<Monitor> {
    let started = Instant::now();
    let (ns, ifname) = env.interface(scenario);
    let tool = if condition == Condition::Nethogs {
        &tools.nethogs
    } else {
        &tools.bandwhich
    };
    let tool = tool
        .as_ref()
        .with_context(|| format!("{} is not available", condition.name()))?;
    let mut argv = vec![tool.to_string_lossy().to_string()];
    if condition == Condition::Nethogs {
        // -t text mode, -v 2 cumulative bytes, -C TCP and UDP, -a allows lo.
        argv.extend(["-a", "-t", "-v", "2", "-C", "-d", "1"].map(String::from));
    } else {
        // --raw text, -t cumulative totals, -p the process table only.
        argv.extend(["--raw", "--no-resolve", "-t", "-p", "-i"].map(String::from));
    }
    argv.push(ifname);
    let mut cmd = match &ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).args(&argv);
            cmd
        }
        None => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    };
    let mut proc = Proc::spawn(condition.name(), &mut cmd, &output, &stderr)?;
    proc::sleep(Duration::from_secs(1))?;
    if let Some(status) = proc.try_status() {
        bail!(
            "{} exited at start ({status}): {}",
            condition.name(),
            super::scenarios::read_tail(&stderr)
        );
    }
    Ok(Monitor {
        condition,
        proc,
        api: None,
        output,
        startup: started.elapsed(),
    })
}

fn free_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Bytes a capture tool reports for one process or one group of processes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct CaptureBytes {
    pub sent: f64,
    pub received: f64,
}

/// One process line of a capture tool's last refresh: name, pid (nethogs only) and its
/// cumulative bytes.
#[derive(Clone, Debug)]
pub struct CaptureLine {
    pub name: String,
    pub pid: Option<u32>,
    pub bytes: CaptureBytes,
}

/// The process lines of the last complete `Refreshing:` block of a capture tool's output
/// (nethogs -t -v 2, or bandwhich --raw -t).
pub fn capture_lines(condition: Condition, output: &Path) -> Vec<CaptureLine> {
    let text = fs::read_to_string(output).unwrap_or_default();
    let blocks: Vec<&str> = text.split("Refreshing:").collect();
    // The very last block may be cut short by SIGTERM: take the one before when it exists.
    let block = match blocks.len() {
        0 | 1 => "",
        2 => blocks[1],
        n => blocks[n - 2],
    };
    block
        .lines()
        .filter_map(|line| match condition {
            Condition::Bandwhich => bandwhich_line(line),
            _ => nethogs_line(line),
        })
        .collect()
}

/// `name/pid/uid<TAB>sent<TAB>received` (name may contain '/').
fn nethogs_line(line: &str) -> Option<CaptureLine> {
    let mut fields = line.split('\t');
    let who = fields.next()?;
    let sent: f64 = fields.next()?.trim().parse().ok()?;
    let received: f64 = fields.next()?.trim().parse().ok()?;
    let mut parts = who.rsplitn(3, '/');
    let _uid = parts.next()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let name = parts.next()?.to_string();
    Some(CaptureLine {
        name,
        pid: Some(pid),
        bytes: CaptureBytes { sent, received },
    })
}

/// `process: <ts> "name" up/down Bps: U/D connections: C` (with -t, U and D are totals).
fn bandwhich_line(line: &str) -> Option<CaptureLine> {
    let rest = line.strip_prefix("process:")?;
    let name = rest.split('"').nth(1)?.to_string();
    let figures = rest.split("Bps:").nth(1)?.split_whitespace().next()?;
    let (up, down) = figures.split_once('/')?;
    Some(CaptureLine {
        name,
        pid: None,
        bytes: CaptureBytes {
            sent: up.parse().ok()?,
            received: down.parse().ok()?,
        },
    })
}

/// bandwhich: `cargo install bandwhich` if it is not there yet, bounded in time. Returns the
/// binary, or a note saying why it is skipped.
pub fn find_or_install_bandwhich(
    allow_install: bool,
    limit: Duration,
) -> std::result::Result<PathBuf, String> {
    let installed = crate::cargo_bin_dir().map(|dir| dir.join("bandwhich"));
    if let Some(bin) = installed.as_ref().filter(|bin| bin.exists()) {
        return Ok(bin.clone());
    }
    if !allow_install {
        return Err("bandwhich is not installed and --no-bandwhich was given".to_string());
    }
    println!("bench: trying `cargo install bandwhich` (at most {limit:?})");
    let log = crate::target_dir()
        .join("bench")
        .join("bandwhich-install.log");
    let (Ok(out), Ok(err)) = (
        fs::File::create(&log),
        fs::File::create(log.with_extension("err")),
    ) else {
        return Err("could not create the bandwhich install log".to_string());
    };
    let mut cmd = crate::cargo();
    cmd.args(["install", "bandwhich", "--locked"])
        .stdout(out)
        .stderr(err);
    let mut proc = match Proc::spawn_prepared("cargo install bandwhich", &mut cmd) {
        Ok(proc) => proc,
        Err(err) => return Err(format!("cargo install bandwhich could not start: {err:#}")),
    };
    match proc.wait(limit) {
        Ok(status) if status.success() => installed
            .filter(|bin| bin.exists())
            .ok_or_else(|| "cargo install bandwhich succeeded but left no binary".to_string()),
        Ok(status) => Err(format!(
            "`cargo install bandwhich` failed here ({status}): {}",
            super::scenarios::read_tail(&log.with_extension("err"))
        )),
        Err(err) => Err(format!("`cargo install bandwhich`: {err:#}")),
    }
}
