//! Processes the bench starts, and Ctrl-C.
//!
//! Every child runs in a process group of its own, so that a Ctrl-C in the terminal reaches
//! only the bench: the bench then stops its children itself, in order, and its guards delete
//! what it created. A [`Proc`] kills its whole group when dropped, which also takes any
//! process the child forked (the churn generator's children).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP set a flag that every wait of the bench checks; the bench then
/// unwinds through its guards instead of dying with namespaces and processes left behind.
pub fn install_signal_handlers() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error when a signal asked the bench to stop.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps in short slices so that Ctrl-C is noticed within 50 ms.
pub fn sleep(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Polls `ready` every 20 ms until it returns Some, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        check_interrupted()?;
        if let Some(value) = ready() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A child process (and its process group) that is stopped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` in a new process group with stdin closed and stdout/stderr in the
    /// given files (the files are created; a large output never blocks the child).
    pub fn spawn(name: &str, cmd: &mut Command, stdout: &Path, stderr: &Path) -> Result<Proc> {
        let out = File::create(stdout).with_context(|| format!("create {}", stdout.display()))?;
        let err = File::create(stderr).with_context(|| format!("create {}", stderr.display()))?;
        Proc::spawn_prepared(name, cmd.stdout(out).stderr(err))
    }

    /// Starts `cmd` (whose stdout and stderr the caller set) in a new process group with
    /// stdin closed.
    pub fn spawn_prepared(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("could not start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaps it). When the exit is first seen,
    /// whatever the process left running in its group is killed, once: the group id is
    /// never signalled again, so a reused pid cannot be hit.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
            if self.status.is_some() {
                self.kill_group(Signal::SIGKILL);
            }
        }
        self.status
    }

    /// Waits for the process to exit on its own, for at most `limit`; on timeout it is
    /// stopped and an error returned.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if interrupted() {
                self.stop(Duration::from_secs(2));
                bail!("interrupted while waiting for {}", self.name);
            }
            if Instant::now() >= deadline {
                self.stop(Duration::from_secs(2));
                bail!("{} did not finish within {limit:?}; killed it", self.name);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`; reaps the process.
    /// Returns how long it took to exit after SIGTERM (None if it had already exited).
    pub fn stop(&mut self, grace: Duration) -> Option<Duration> {
        if self.try_status().is_some() {
            return None;
        }
        let started = Instant::now();
        self.kill_group(Signal::SIGTERM);
        while started.elapsed() < grace {
            if self.try_status().is_some() {
                return Some(started.elapsed());
            }
            thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "warning: {} (pid {}) ignored SIGTERM for {grace:?}; killing it",
            self.name,
            self.pid()
        );
        self.kill_group(Signal::SIGKILL);
        self.status = self.child.wait().ok();
        Some(started.elapsed())
    }

    fn kill_group(&self, signal: Signal) {
        // The child leads its own group (process_group(0)), so its pid is the group id.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), signal);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // trafficd finishes a drain before it exits: seconds at a million flows.
        self.stop(Duration::from_secs(10));
    }
}
