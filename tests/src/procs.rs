//! Spawning `trafficgen` processes, optionally inside a network namespace and a
//! cgroup, and collecting their one-line JSON reports.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Cgroup, NetNs, RemoveOnDrop};

/// How long a trafficgen process may run before the test calls it hung.
const GEN_TIMEOUT: Duration = Duration::from_secs(60);

/// `trafficgen!()` in a test: the trafficgen binary Cargo built for this test
/// crate (`env!("CARGO_BIN_EXE_trafficgen")` is only defined for tests, so it is
/// expanded in the test, not in this library).
#[macro_export]
macro_rules! trafficgen {
    () => {
        $crate::TrafficGen::new(env!("CARGO_BIN_EXE_trafficgen"))
    };
}

/// The trafficgen binary.
#[derive(Debug, Clone)]
pub struct TrafficGen {
    bin: PathBuf,
}

impl TrafficGen {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self { bin: bin.into() }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.bin
    }

    /// A trafficgen invocation: `args` are the subcommand and its options.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> GenCommand<'_> {
        GenCommand {
            tg: self,
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            netns: None,
            cgroup: None,
        }
    }
}

/// A trafficgen invocation being prepared.
pub struct GenCommand<'a> {
    tg: &'a TrafficGen,
    args: Vec<String>,
    netns: Option<String>,
    cgroup: Option<&'a Cgroup>,
}

impl<'a> GenCommand<'a> {
    /// Run inside this network namespace (`ip netns exec`, which execs in place:
    /// the pid the test sees is trafficgen's own).
    pub fn netns(mut self, ns: &NetNs) -> Self {
        self.netns = Some(ns.name().to_string());
        self
    }

    /// Start inside this cgroup: the child moves itself there between fork and
    /// exec, so not one of its packets is sent from the test's cgroup.
    pub fn cgroup(mut self, cg: &'a Cgroup) -> Self {
        self.cgroup = Some(cg);
        self
    }

    fn describe(&self) -> String {
        let mut s = format!("trafficgen {}", self.args.join(" "));
        if let Some(ns) = &self.netns {
            s = format!("{s} (netns {ns})");
        }
        if let Some(cg) = self.cgroup {
            s = format!("{s} (cgroup {})", cg.path());
        }
        s
    }

    fn spawn_with(self, extra: &[String]) -> Gen {
        let what = self.describe();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.tg.bin);
                c
            }
            None => Command::new(&self.tg.bin),
        };
        cmd.args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Held open across spawn; O_CLOEXEC closes it in the child at exec.
        let procs = self.cgroup.map(|cg| cg.open_procs());
        if let Some(f) = &procs {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            // SAFETY: only write(2) between fork and exec, on an fd the parent keeps open.
            unsafe {
                cmd.pre_exec(move || {
                    // "0" moves the writing process itself.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        drop(procs);
        Gen {
            child: Some(child),
            what,
            started: Instant::now(),
            ready_file: None,
        }
    }

    /// Start it and return at once.
    pub fn spawn(self) -> Gen {
        self.spawn_with(&[])
    }

    /// Start it with `--ready-file` and wait until it has bound/connected its
    /// socket; returns the address it wrote there (the listening address for
    /// listeners, the local address for connecting subcommands).
    pub fn spawn_ready(self) -> (Gen, SocketAddr) {
        let file = crate::scratch_path("ready");
        let mut g = self.spawn_with(&["--ready-file".into(), file.display().to_string()]);
        g.ready_file = Some(RemoveOnDrop(file.clone()));
        let start = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                let addr = s
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{}: ready file {s:?}: {e}", g.what));
                return (g, addr);
            }
            if let Some(status) = g.child.as_mut().unwrap().try_wait().expect("try_wait") {
                let (_, err) = g.take_output();
                panic!("{} exited with {status} before it was ready: {err}", g.what);
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("{} was not ready within 10 s", g.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Run it to completion and return its report.
    pub fn run(self) -> GenReport {
        self.spawn().finish()
    }
}

/// A running trafficgen process. Dropping it kills and reaps it.
pub struct Gen {
    child: Option<Child>,
    what: String,
    started: Instant,
    ready_file: Option<RemoveOnDrop>,
}

impl Gen {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn take_output(&mut self) -> (String, String) {
        let c = self.child.as_mut().unwrap();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = c.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (out, err)
    }

    /// Wait (bounded) for it to exit 0 and parse its JSON report. The process is
    /// reaped, so its /proc entry is gone when this returns.
    pub fn finish(mut self) -> GenReport {
        let pid = self.pid();
        let status = loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                break s;
            }
            if self.started.elapsed() > GEN_TIMEOUT {
                let c = self.child.as_mut().unwrap();
                let _ = c.kill();
                let _ = c.wait();
                let (_, err) = self.take_output();
                panic!(
                    "{} did not finish within {GEN_TIMEOUT:?}; killed. stderr: {err}",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        let (out, err) = self.take_output();
        self.child = None;
        assert!(
            status.success(),
            "{} failed with {status}: {err}{out}",
            self.what
        );
        let line = out.lines().last().unwrap_or_default();
        let json: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{}: report is not JSON ({e}): {out:?} stderr: {err}",
                self.what
            )
        });
        let report = GenReport { json, elapsed };
        assert_eq!(
            report.pid(),
            pid,
            "{}: the pid trafficgen reports is not the pid the test spawned (did `ip netns exec` fork?)",
            self.what
        );
        report
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a trafficgen process did, from its JSON line.
#[derive(Debug, Clone)]
pub struct GenReport {
    pub json: Value,
    /// From spawn until the test saw it exit.
    pub elapsed: Duration,
}

impl GenReport {
    pub fn u64(&self, key: &str) -> u64 {
        self.json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("trafficgen report has no number {key:?}: {}", self.json))
    }

    pub fn str(&self, key: &str) -> &str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("trafficgen report has no string {key:?}: {}", self.json))
    }

    pub fn pid(&self) -> u32 {
        self.u64("pid") as u32
    }

    pub fn comm(&self) -> &str {
        self.str("comm")
    }

    pub fn bytes_sent(&self) -> u64 {
        self.u64("bytes_sent")
    }

    pub fn bytes_received(&self) -> u64 {
        self.u64("bytes_received")
    }

    /// The process's local socket address.
    pub fn local(&self) -> SocketAddr {
        self.str("local").parse().expect("local address")
    }

    /// The peer's socket address.
    pub fn peer(&self) -> SocketAddr {
        self.str("peer").parse().expect("peer address")
    }
}
