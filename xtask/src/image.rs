//! `cargo xtask image`: builds the trafficd container image offline.
//!
//! The release daemon is dynamically linked against glibc (a static musl build is not
//! possible while the daemon calls glibc's `mallopt`, which the libc crate offers only for
//! gnu targets), so the image is the binary plus exactly the shared libraries `ldd` names,
//! at the same paths, on `FROM scratch` (deploy/image/Dockerfile). No registry is needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{build_trafficd, repo_root, run_checked, target_dir, tool};

/// The image's repository name; tags are `dev` and the workspace version.
const REPOSITORY: &str = "trafficd";
/// Where the binary sits in the image (the Dockerfile's ENTRYPOINT).
const BINARY_IN_IMAGE: &str = "usr/bin/trafficd";

#[derive(Args)]
pub struct ImageArgs {
    /// Use this trafficd binary instead of building the release daemon.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The docker command (its DOCKER_HOST is taken from the environment).
    #[arg(long, default_value = "docker")]
    docker: String,
}

pub fn run(args: ImageArgs) -> Result<()> {
    let binary = match args.binary {
        Some(path) => path,
        None => build_trafficd()?,
    };
    let context = target_dir().join("image");
    stage_rootfs(&binary, &context.join("rootfs"))?;
    docker_build(&args.docker, &context)?;
    println!(
        "built {REPOSITORY}:dev and {REPOSITORY}:{}",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

/// A fresh `rootfs` holding the binary and its shared libraries at their own paths.
fn stage_rootfs(binary: &Path, rootfs: &Path) -> Result<()> {
    if rootfs.exists() {
        fs::remove_dir_all(rootfs)
            .with_context(|| format!("could not remove the old {}", rootfs.display()))?;
    }
    copy_into(binary, &rootfs.join(BINARY_IN_IMAGE))?;
    for lib in shared_libraries(binary)? {
        let relative = lib.strip_prefix("/").unwrap_or(&lib);
        copy_into(&lib, &rootfs.join(relative))?;
    }
    Ok(())
}

/// Copies the file `from` points at (symlinks followed) to `to`, creating its directory.
fn copy_into(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("could not copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The absolute paths `ldd` resolves for the binary (the vDSO has none and is skipped).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("could not run ldd (is libc-bin installed?)")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let libs = parse_ldd(&String::from_utf8_lossy(&out.stdout));
    if libs.is_empty() {
        bail!(
            "ldd lists no libraries for {}; expected a dynamically linked glibc binary",
            binary.display()
        );
    }
    Ok(libs)
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn docker_build(docker: &str, context: &Path) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let dockerfile = repo_root().join("deploy/image/Dockerfile");
    let mut cmd = tool(docker);
    // The classic builder: BuildKit would try to resolve the frontend image from a registry.
    cmd.env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .arg("--file")
        .arg(&dockerfile)
        .args(["--tag", &format!("{REPOSITORY}:dev")])
        .args(["--tag", &format!("{REPOSITORY}:{version}")])
        .args([
            "--label",
            &format!("org.opencontainers.image.version={version}"),
        ])
        .args(["--label", "org.opencontainers.image.title=trafficd"])
        .arg(context);
    run_checked(&mut cmd).context(
        "docker build failed; is dockerd running (start /usr/sbin/dockerd, or set DOCKER_HOST)?",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd5a3f1000)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0000000000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0000100000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0000200000)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
