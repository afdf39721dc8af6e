//! `cargo xtask`: the project's developer and CI commands.
//!
//! Each subcommand lives in its own module with a `run` entry point; a new one
//! (e.g. `bench`) is a module plus a variant of [`Cmd`]. The helpers below are
//! shared by the modules.

mod bench;
mod image;
mod run;
mod setup;
mod test;

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use trafficd_tests::is_root;

/// Developer and CI commands for trafficd.
#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain pieces and Debian packages the project needs (idempotent).
    Setup,
    /// Set up, build the daemon and run it as root: `cargo xtask run -- <trafficd run args>`.
    Run {
        /// Arguments passed on to `trafficd run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up, then check formatting, build the daemon and run the whole test suite.
    Test,
    /// Benchmark trafficd against no monitoring and nethogs; writes target/bench/results.{md,json}
    /// and the results section of docs/performance.md.
    Bench(bench::BenchArgs),
    /// Build the container image trafficd:dev (and :<version>) offline with docker.
    Image(image::ImageArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Run { args } => run::run(&args),
        Cmd::Test => test::run(),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Image(args) => image::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` keeps the whole context chain on one line.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask/ sits directly under it.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
}

/// Where `cargo install` puts binaries: $CARGO_HOME/bin, by default ~/.cargo/bin.
fn cargo_bin_dir() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|dir| dir.join("bin"))
}

/// PATH plus the cargo bin directory when it is missing: rustc runs bpf-linker by name,
/// and a freshly installed one must be found even if the caller's PATH lacks ~/.cargo/bin.
fn search_path() -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
    match cargo_bin_dir() {
        Some(bin) if !dirs.contains(&bin) => dirs.push(bin),
        _ => return current,
    }
    env::join_paths(dirs).unwrap_or(current)
}

/// A command run from the repo root, with `program` looked up in [`search_path`].
fn tool(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", search_path()).current_dir(repo_root());
    cmd
}

/// `cargo`, preferring the one that started `cargo xtask` (CARGO) so nested builds
/// use the same toolchain.
fn cargo() -> Command {
    tool(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a person would type it (program by file name only).
fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with inherited stdio; an error names the command and how it ended.
fn run_checked(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("running: {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Builds the daemon in release mode (its build script also builds and embeds the eBPF
/// object) and returns the absolute path of the binary.
fn build_trafficd() -> Result<PathBuf> {
    run_checked(cargo().args(["build", "--release", "-p", "trafficd"]))?;
    Ok(target_dir().join("release").join("trafficd"))
}

/// Cargo's target directory: CARGO_TARGET_DIR when set (relative to the repo root, as
/// cargo reads it), else target/ in the repo root.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}
