//! `cargo xtask test`: sets up, then checks formatting, builds the daemon and runs the
//! whole test suite, stopping at the first step that fails.

use anyhow::{Context, Result};

use crate::{build_trafficd, cargo, run_checked, setup};

pub fn run() -> Result<()> {
    setup::run().context("test: step `setup`")?;
    run_checked(cargo().args(["fmt", "--all", "--", "--check"])).context("test: step `fmt`")?;
    // The kernel crate is outside the workspace, so `--all` does not reach it.
    run_checked(cargo().args([
        "fmt",
        "--manifest-path",
        "trafficd-ebpf/Cargo.toml",
        "--",
        "--check",
    ]))
    .context("test: step `fmt` (trafficd-ebpf)")?;
    let bin = build_trafficd().context("test: step `build`")?;
    run_checked(
        cargo()
            .args(["test", "--workspace", "--release"])
            // The integration tests start this binary rather than building their own.
            .env("TRAFFICD_BIN", &bin)
            // They run the real daemon, which attaches to the whole machine: one at a time.
            .args(["--", "--test-threads=1"]),
    )
    .context("test: step `test`")?;
    println!("test: all steps passed");
    Ok(())
}
