//! `cargo xtask setup`: installs what the project needs on a fresh Debian 12 machine.
//!
//! Every step checks before it acts, so a run on a ready machine only spends a few
//! cheap queries. Mounts (bpffs, tracefs) are left to the daemon, which mounts what it needs.

use std::collections::HashSet;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::{cargo, is_root, run_checked, tool};

/// The toolchain that builds trafficd-ebpf (`-Z build-std=core` needs rust-src).
const NIGHTLY: &str = "nightly";

const DEBIAN_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22, the LLVM of the nightly rustc.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // Tests and benchmarks.
    "iproute2",
    "iperf3",
    "bpftool",
    "conntrack",
    "tcpdump",
    "nethogs",
    // The bench's trafficd+perf condition.
    "linux-perf",
    "docker.io",
    "busybox-static",
    "prometheus",
    // The container tests' second and third engines.
    "podman",
    "containerd",
    // containerd's gRPC API types are generated from its .proto files when trafficd builds.
    "protobuf-compiler",
    // deploy/ tests: systemd-analyze verify of the unit.
    "systemd",
    // NAT rules in the forwarded-traffic tests, which call it directly (docker.io pulls it in too).
    "iptables",
];

/// deploy/ tests: offline checks of the Kubernetes manifests and the YAML files.
const PIP_PACKAGES: &[&str] = &["kubernetes-validate", "yamllint"];

/// bpf-linker must use the same LLVM as rustc; its default (LLVM 23) does not match.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_FEATURE: &str = "llvm-22";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    rust_src()?;
    // Before bpf-linker, which builds against llvm-22-dev.
    debian_packages()?;
    pip_packages()?;
    bpf_linker()
}

fn pip_packages() -> Result<()> {
    // `pip show` exits non-zero when any of the named packages is missing.
    let shown = tool("python3")
        .args(["-m", "pip", "show", "--quiet"])
        .args(PIP_PACKAGES)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("could not run python3 -m pip (install python3-pip)")?;
    if shown.success() {
        println!("ok: {} PyPI packages", PIP_PACKAGES.len());
        return Ok(());
    }
    println!("installing: {}", PIP_PACKAGES.join(" "));
    let install = || {
        let mut cmd = tool("python3");
        cmd.args(["-m", "pip", "install", "--quiet"])
            .args(PIP_PACKAGES);
        cmd
    };
    // Debian's own python refuses to install into the system (PEP 668) unless told to.
    run_checked(&mut install()).or_else(|err| {
        println!("retrying with --break-system-packages after: {err:#}");
        run_checked(install().arg("--break-system-packages"))
    })
}

fn rust_src() -> Result<()> {
    let listed = tool("rustup")
        .args(["component", "list", "--toolchain", NIGHTLY, "--installed"])
        .output()
        .context("could not run rustup (is it installed and on PATH?)")?;
    // A failed listing (e.g. no nightly toolchain) falls through to `component add`,
    // whose own error then says what is wrong.
    let installed = listed.status.success()
        && String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|line| line.trim() == "rust-src");
    if installed {
        println!("ok: rust-src for {NIGHTLY}");
        return Ok(());
    }
    println!("installing: rust-src for {NIGHTLY}");
    run_checked(tool("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn debian_packages() -> Result<()> {
    let missing = missing_packages(DEBIAN_PACKAGES)?;
    if missing.is_empty() {
        println!("ok: {} Debian packages", DEBIAN_PACKAGES.len());
        return Ok(());
    }
    let names = missing.join(" ");
    if !is_root() {
        bail!("missing Debian packages: {names}; run `cargo xtask setup` as root to install them");
    }
    println!("installing: {names}");
    apt_get(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install)
}

/// The packages of `wanted` that dpkg does not report as installed, from one dpkg-query
/// call for all of them (one per package would cost most of the no-op run's time).
fn missing_packages<'a>(wanted: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits 1 when it knows nothing of some package but still lists the
    // others, so its exit status says nothing useful here and is not checked.
    let out = tool("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(wanted)
        .stderr(Stdio::null())
        .output()
        .context("could not run dpkg-query (is this Debian?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Status is "<want> <flag> <state>", e.g. "install ok installed".
    let installed: HashSet<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.split_whitespace().last() == Some("installed"))
        .map(|(name, _)| name)
        .collect();
    Ok(wanted
        .iter()
        .copied()
        .filter(|name| !installed.contains(name))
        .collect())
}

fn apt_get(args: &[&str]) -> Result<()> {
    run_checked(
        tool("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args),
    )
}

fn bpf_linker() -> Result<()> {
    match bpf_linker_version() {
        Some(version) if version.contains(BPF_LINKER_VERSION) => {
            println!("ok: {version}");
            return Ok(());
        }
        Some(version) => println!("replacing: {version} (need {BPF_LINKER_VERSION})"),
        None => {}
    }
    println!("installing: bpf-linker {BPF_LINKER_VERSION} for {LLVM_FEATURE} (about 3 minutes on 2 cores)");
    // --locked reproduces the release's tested dependency set; if that set no longer
    // builds here, newer semver-compatible dependencies are the fallback.
    install_bpf_linker(true).or_else(|err| {
        println!("retrying without --locked after: {err:#}");
        install_bpf_linker(false)
    })
}

/// `bpf-linker --version`, found in PATH or the cargo bin directory; None if it does not run.
fn bpf_linker_version() -> Option<String> {
    let out = tool("bpf-linker").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn install_bpf_linker(locked: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(locked.then_some("--locked"))
        .args(["--no-default-features", "--features", LLVM_FEATURE])
        // llvm-sys finds LLVM through LLVM_SYS_<version>_PREFIX; bpf-linker's own build
        // script needs LLVM_PREFIX, without it the link fails with "unable to find library -lLLVM".
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX);
    run_checked(&mut cmd)
}
