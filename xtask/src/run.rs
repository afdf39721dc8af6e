//! `cargo xtask run [-- <args>]`: sets up, builds and runs the daemon (`trafficd run <args>`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{build_trafficd, is_root, setup};

pub fn run(args: &[OsString]) -> Result<()> {
    // Checked first: the daemon cannot load eBPF programs without root, so building would be wasted.
    if !is_root() {
        bail!("run: trafficd must run as root; retry with sudo, e.g. `sudo -E env PATH=\"$PATH\" cargo xtask run`");
    }
    setup::run()?;
    let bin = build_trafficd()?;
    println!("running: {} run {}", bin.display(), shown(args));
    // exec replaces this process, so signals (Ctrl-C, a supervisor's SIGTERM) reach the
    // daemon itself and its exit status is ours. exec only returns on failure.
    let err = Command::new(&bin).arg("run").args(args).exec();
    Err(err).with_context(|| format!("could not start {}", bin.display()))
}

fn shown(args: &[OsString]) -> String {
    let args: Vec<_> = args.iter().map(|arg| arg.to_string_lossy()).collect();
    args.join(" ")
}
