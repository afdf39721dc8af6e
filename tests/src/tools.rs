//! External programs the deploy tests drive (promtool, prometheus, dockerd, setpriv,
//! systemd-analyze, kubernetes-validate, yamllint), and the repository's deploy/ files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The program's path when it is on PATH (or given as a path) and executable.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

#[doc(hidden)]
pub fn skip_or_fail_without_program(name: &str, package: &str) -> bool {
    if find_program(name).is_some() {
        return false;
    }
    let why = format!("needs `{name}` ({package}; `cargo xtask setup` installs it)");
    if std::env::var_os("TRAFFICD_TESTS_NO_SKIP").is_some() {
        panic!("{why}, and TRAFFICD_TESTS_NO_SKIP is set");
    }
    eprintln!("skipped: {why}");
    true
}

/// Returns from the test (which then passes) with "skipped: needs `name`" on stderr when
/// the program is missing; with `TRAFFICD_TESTS_NO_SKIP` set it fails instead.
#[macro_export]
macro_rules! require_program {
    ($name:expr, $package:expr) => {
        if $crate::tools::skip_or_fail_without_program($name, $package) {
            return;
        }
    };
}

/// The workspace root (tests/ sits directly under it).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// A file under deploy/.
pub fn deploy_file(relative: &str) -> PathBuf {
    workspace_root().join("deploy").join(relative)
}

/// Runs the command to completion; panics when it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// stdout and stderr of a finished command, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the command and panics with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    let t = text(&out);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{t}",
        out.status
    );
    t
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
