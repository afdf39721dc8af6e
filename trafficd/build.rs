//! Builds the kernel programs (trafficd-ebpf) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, and leaves the object in OUT_DIR for `include_bytes_aligned!`. So
//! `cargo build -p trafficd` always embeds programs that match the daemon's map layouts.
//! `cargo xtask setup` installs what this needs (nightly rust-src, bpf-linker for LLVM 22).
//!
//! trafficd-ebpf lives outside the workspace (it targets BPF, not the host), so it is built from
//! its own directory with its own lockfile; that is why this is not aya-build, which builds
//! from inside the workspace.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("../trafficd-ebpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join("ebpf-target");

    for path in ["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(path).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../trafficd-common/src").display()
    );

    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf_dir)
        // BTF for the maps and programs, so the loader and bpftool can show their types; the
        // v3 instruction set for the fetching atomic add (Linux >= 5.12, well below the
        // 6.x the sock_send_length tracepoint needs).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\u{1f}-Clink-arg=--btf\u{1f}-Ctarget-cpu=v3",
        );
    // The outer build's settings are for the host; none of them may leak into the BPF build.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        cargo.env_remove(key);
    }
    let status = cargo.status().unwrap_or_else(|err| {
        panic!("cannot run `rustup run nightly cargo`: {err}; run `cargo xtask setup` first")
    });
    if !status.success() {
        panic!(
            "building the kernel programs (trafficd-ebpf) failed; if bpf-linker or the nightly \
             rust-src are missing, run `cargo xtask setup`"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/trafficd");
    std::fs::copy(&object, out_dir.join("trafficd"))
        .unwrap_or_else(|err| panic!("cannot copy {}: {err}", object.display()));
}
