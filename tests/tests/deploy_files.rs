//! deploy/: every file passes the checker of its kind — promtool for the rules, their unit
//! tests and the scrape config, kubernetes-validate for the manifests, systemd-analyze for
//! the unit, yamllint for all YAML — and promtool reads a live trafficd's /metrics.

use std::process::Command;

use trafficd_tests::tools::{deploy_file, output, run_ok, text, workspace_root};
use trafficd_tests::{require_program, require_root, Daemon};

/// The Kubernetes version the manifests are validated against (stated in deploy/README.md).
const KUBERNETES_VERSION: &str = "1.30.0";

#[test]
fn promtool_checks_rules_unit_tests_and_config() {
    require_program!("promtool", "Debian package prometheus");
    let dir = deploy_file("prometheus");
    let t = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "rules",
        "trafficd-rules.yml",
    ]));
    assert!(t.contains("SUCCESS"), "{t}");
    let t = run_ok(Command::new("promtool").current_dir(&dir).args([
        "test",
        "rules",
        "trafficd-rules.test.yml",
    ]));
    assert!(t.contains("SUCCESS"), "{t}");
    let t = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "config",
        "prometheus.yml",
    ]));
    assert!(t.contains("1 rule files found"), "{t}");
}

#[test]
fn yaml_files_pass_yamllint() {
    require_program!("yamllint", "PyPI package yamllint");
    run_ok(
        Command::new("yamllint")
            .current_dir(workspace_root())
            .args(["--strict", "-c", "deploy/.yamllint", "deploy"]),
    );
}

#[test]
fn kubernetes_manifests_validate_offline() {
    require_program!("kubernetes-validate", "PyPI package kubernetes-validate");
    let dir = deploy_file("kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read deploy/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the namespace, RBAC, DaemonSet and Service: {files:?}"
    );
    let t = run_ok(
        Command::new("kubernetes-validate")
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .args(&files),
    );
    for kind in [
        "daemonset/trafficd",
        "clusterrole/trafficd",
        "service/trafficd",
    ] {
        assert!(
            t.contains(&format!("passed for resource {kind}")),
            "{kind} not validated:\n{t}"
        );
    }
}

#[test]
fn daemonset_is_least_privilege() {
    let ds = std::fs::read_to_string(deploy_file("kubernetes/daemonset.yaml")).expect("read");
    for needed in [
        "hostPID: true",
        "privileged: false",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "path: /healthz",
        "operator: Exists",
        "path: /sys/fs/cgroup",
        "path: /sys/kernel/btf",
    ] {
        assert!(ds.contains(needed), "daemonset.yaml lacks {needed:?}");
    }
    let rbac = std::fs::read_to_string(deploy_file("kubernetes/rbac.yaml")).expect("read");
    assert!(
        rbac.contains("resources: [\"pods\"]")
            && rbac.contains("verbs: [\"get\", \"list\", \"watch\"]")
    );
    assert_eq!(
        rbac.matches("resources:").count(),
        1,
        "RBAC grants more than pods"
    );
}

#[test]
fn systemd_unit_verifies() {
    require_program!("systemd-analyze", "Debian package systemd");
    // verify checks that ExecStart exists: point it at the binary the tests use.
    let unit = std::fs::read_to_string(deploy_file("systemd/trafficd.service")).expect("read unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/trafficd run"));
    let bin = Daemon::binary();
    let dir = trafficd_tests::scratch_path("unit");
    std::fs::create_dir_all(&dir).expect("create dir");
    let _cleanup = RemoveDir(dir.clone());
    let path = dir.join("trafficd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/trafficd", &bin.display().to_string()),
    )
    .expect("write unit");
    let out = output(Command::new("systemd-analyze").arg("verify").arg(&path));
    let t = text(&out);
    assert!(
        out.status.success() && t.trim().is_empty(),
        "systemd-analyze verify:\n{t}"
    );
    // The exposure score of the hardening (2.9 of 10 today; --threshold counts tenths).
    let out = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=40"])
            .arg(&path),
    );
    assert!(
        out.status.success(),
        "systemd-analyze security exposure above 4.0:\n{}",
        text(&out)
    );
}

/// `promtool check metrics` on the daemon's own exposition. Exit code 1 is a parse error
/// (fails here); 3 is lint findings, printed, and failed by the test below.
#[test]
fn promtool_parses_live_metrics() {
    require_root!();
    require_program!("promtool", "Debian package prometheus");
    let (code, findings) = promtool_check_live_metrics();
    assert_ne!(code, Some(1), "promtool cannot parse /metrics:\n{findings}");
    if !findings.trim().is_empty() {
        eprintln!("promtool check metrics findings:\n{findings}");
    }
}

/// /metrics serves the classic text format to promtool (it asks for no OpenMetrics), with
/// every family in base units: no lint finding.
#[test]
fn promtool_finds_no_lint_in_live_metrics() {
    require_root!();
    require_program!("promtool", "Debian package prometheus");
    let (code, findings) = promtool_check_live_metrics();
    assert_eq!(code, Some(0), "promtool check metrics:\n{findings}");
}

fn promtool_check_live_metrics() -> (Option<i32>, String) {
    use std::io::Write;
    use std::process::Stdio;
    let d = Daemon::start();
    let body = d.get("/metrics").body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait promtool");
    (out.status.code(), text(&out))
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
