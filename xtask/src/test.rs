//! `cargo xtask test`: sets up, then checks formatting, runs clippy, builds the daemon and runs
//! the whole test suite, stopping at the first step that fails.

use anyhow::{Context, Result};

use crate::{build_trafficd, cargo, run_checked, setup, tool};

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
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("test: step `clippy`")?;
    clippy_ebpf().context("test: step `clippy` (trafficd-ebpf)")?;
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

/// Clippy on the kernel crate, with the nightly toolchain and the target and build-std settings
/// of its own .cargo/config.toml (hence run from its directory, through rustup like
/// trafficd/build.rs does).
fn clippy_ebpf() -> Result<()> {
    let mut clippy = tool("rustup");
    clippy
        .args(["run", "nightly", "cargo", "clippy", "--release", "--locked"])
        .arg("--target-dir")
        .arg(crate::target_dir().join("ebpf-clippy"))
        .args(["--", "-D", "warnings"])
        .current_dir(crate::repo_root().join("trafficd-ebpf"));
    // The outer cargo's settings are for the host; none of them may reach the kernel crate.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        clippy.env_remove(key);
    }
    run_checked(&mut clippy)
}
