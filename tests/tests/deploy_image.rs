//! The container image: built offline by `cargo xtask image` into a Docker Engine of the
//! test's own, run with the flags deploy/README.md documents (no --privileged), it counts a
//! known transfer on the host and a real Prometheus scrapes it.

use std::net::SocketAddr;
use std::process::Command;

use trafficd_tests::engine_docker::{Container, Dockerd};
use trafficd_tests::prometheus::Prometheus;
use trafficd_tests::tools::{deploy_file, free_port, run_ok, workspace_root};
use trafficd_tests::{
    get, require_program, require_root, trafficgen, wait_for, Daemon, Side, Transfer,
};

const PAYLOAD: u64 = 2 << 20;
const IMAGE: &str = "trafficd:dev";

/// `docker run` flags of deploy/README.md, before the image name.
fn documented_flags() -> Vec<String> {
    [
        "--pid=host",
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        "--cap-add=SYS_ADMIN",
        "--cap-add=NET_ADMIN",
        "--cap-add=SYS_PTRACE",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "-v",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn image_runs_with_documented_flags_counts_and_is_scraped() {
    require_root!();
    require_program!("dockerd", "Debian package docker.io");
    require_program!("docker", "Debian package docker.io");
    require_program!("prometheus", "Debian package prometheus");
    let readme = std::fs::read_to_string(deploy_file("README.md")).expect("read deploy/README.md");
    for flag in documented_flags() {
        assert!(
            readme.contains(&flag),
            "deploy/README.md does not document {flag}"
        );
    }

    let engine = Dockerd::start();
    build_image(&engine);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = documented_flags();
    args.extend([
        IMAGE.to_string(),
        "run".into(),
        "--listen".into(),
        listen.clone(),
        "--interval".into(),
        "250ms".into(),
    ]);
    let container = Container::run(&engine, &args);
    wait_for("the container's /healthz", || {
        match get(&format!("http://{listen}/healthz")) {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}; logs: {}", container.logs())),
        }
    });

    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Transfer::tcp(lo, PAYLOAD)
        .server(Side::named("tg-img-sink"))
        .client(Side::named("tg-img-send"))
        .run(&trafficgen!());

    let prom = Prometheus::start(
        std::slice::from_ref(&listen),
        &std::fs::read_to_string(deploy_file("prometheus/trafficd-rules.yml")).expect("rules"),
    );
    let sent = wait_for(
        "the sender's bytes in Prometheus, scraped from the container",
        || {
            // One series per comm (the default identity): the sender's name is its own.
            let expr = "trafficd_process_transmit_bytes_total{comm=\"tg-img-send\"}";
            match prom.scalar(expr) {
                Some(v) if v >= PAYLOAD as f64 => Ok(v),
                other => Err(format!("{expr}: {other:?}")),
            }
        },
    );
    assert!(
        sent <= (PAYLOAD + PAYLOAD / 20) as f64,
        "{sent} bytes counted for a {PAYLOAD}-byte payload"
    );
    assert_eq!(prom.scalar("up{job=\"trafficd\"}"), Some(1.0));
    assert_eq!(
        prom.scalar("trafficd_build_info"),
        Some(1.0),
        "build info through the container"
    );
}

/// `cargo xtask image --binary <the daemon the tests use>` against the test's engine, then
/// checks both tags and that the image holds nothing but the binary and its libraries.
fn build_image(engine: &Dockerd) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new(cargo)
            .current_dir(workspace_root())
            .env("DOCKER_HOST", engine.host())
            .args(["run", "-q", "-p", "xtask", "--", "image", "--binary"])
            .arg(Daemon::binary()),
    );
    let version = env!("CARGO_PKG_VERSION");
    for tag in [IMAGE.to_string(), format!("trafficd:{version}")] {
        run_ok(engine.docker().args(["image", "inspect", &tag]));
    }
    let created = run_ok(engine.docker().args(["create", IMAGE]));
    let id = created
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let exported = engine
        .docker()
        .args(["export", &id])
        .output()
        .expect("docker export");
    let _ = engine.docker().args(["rm", &id]).output();
    let files = tar_files(&exported.stdout);
    assert!(files.contains(&"usr/bin/trafficd".to_string()), "{files:?}");
    for f in &files {
        let allowed = f == "usr/bin/trafficd"
            || f.contains(".so")
            // docker export adds the files every container gets.
            || [".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"]
                .contains(&f.as_str())
            || f.starts_with("dev/")
            || f.starts_with("proc")
            || f.starts_with("sys");
        assert!(allowed, "unexpected file {f} in the image: {files:?}");
    }
}

/// Regular files and symlinks in a tar stream (names from the 512-byte ustar headers).
fn tar_files(tar: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let prefix = String::from_utf8_lossy(&h[345..500])
            .trim_end_matches('\0')
            .to_string();
        let size_field = String::from_utf8_lossy(&h[124..136]);
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .unwrap_or(0);
        let kind = h[156];
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if kind == b'0' || kind == 0 || kind == b'2' {
            out.push(full.trim_start_matches("./").to_string());
        }
        at += 512 + size.div_ceil(512) as usize * 512;
    }
    out
}
