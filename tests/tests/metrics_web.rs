//! `--web.config.file`: /metrics over TLS with basic auth (a scrape without credentials is
//! refused, with them it works), and a bad file stops the start with one clear line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use trafficd_tests::{require_root, scratch_path, Daemon};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-me";
/// bcrypt (cost 10) of PASSWORD.
const HASH: &str = "$2b$10$kcPcI3Z.xZdKUWfze3Muqe8oX9WTvCRDVspyCEMHESNJIfrAeEJcm";

/// A directory of scratch files, removed at the end even on failure.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = scratch_path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `trafficd run` this test started itself (the shared harness speaks plain HTTP);
/// SIGTERMed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1, made by the openssl CLI.
fn self_signed(dir: &Scratch) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// (HTTP status, body) of a GET with curl; status 0 when no HTTP answer came.
fn curl(url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn run_with(config: &Path, port: u16) -> Command {
    let mut cmd = Command::new(Daemon::binary());
    cmd.args(["run", "--interval", "250ms", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--web.config.file")
        .arg(config);
    cmd
}

#[test]
fn tls_and_basic_auth_refuse_a_scrape_without_credentials() {
    require_root!();
    let dir = Scratch::new("web-tls");
    let (cert, key) = self_signed(&dir);
    let config = dir.file(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: '{HASH}'\n",
            cert.display(),
            key.display()
        ),
    );
    let port = free_port();
    let log = dir.0.join("trafficd.log");
    let child = run_with(&config, port)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.0.join("err.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let _running = Running(child);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let cacert = ["--cacert", cert.to_str().unwrap()];
    let credentials = format!("{USER}:{PASSWORD}");
    let with_auth = [&cacert[..], &["-u", &credentials]].concat();

    // Up once it answers over TLS at all.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, _) = loop {
        let answer = curl(&url, &cacert);
        if answer.0 != 0 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 401, "without credentials");
    let wrong_credentials = format!("{USER}:wrong");
    let wrong = [&cacert[..], &["-u", &wrong_credentials]].concat();
    assert_eq!(curl(&url, &wrong).0, 401, "with a wrong password");
    // As Prometheus asks: OpenMetrics, whole.
    let as_prometheus = [
        &with_auth[..],
        &["-H", "Accept: application/openmetrics-text; version=1.0.0"],
    ]
    .concat();
    let (status, body) = curl(&url, &as_prometheus);
    assert_eq!(status, 200, "with credentials: {body}");
    assert!(body.contains("trafficd_build_info"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // /top and /healthz are behind the same door.
    let top = format!("https://127.0.0.1:{port}/top");
    assert_eq!(curl(&top, &cacert).0, 401);
    assert_eq!(curl(&top, &with_auth).0, 200);
    // Plain HTTP on the TLS port gets no page.
    let plain = curl(&format!("http://127.0.0.1:{port}/metrics"), &[]);
    assert_ne!(plain.0, 200, "plain HTTP answered: {plain:?}");
}

/// One line on stderr naming the file and the problem, and a failure exit status.
fn refused(out: &Output, file: &Path, problem: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of error: {stderr}");
    assert!(
        lines[0].contains(&file.display().to_string()) && lines[0].contains(problem),
        "the line names {} and {problem:?}: {}",
        file.display(),
        lines[0]
    );
}

#[test]
fn a_bad_web_config_file_is_one_clear_error_at_start() {
    // Refused before anything is loaded: no root needed.
    let dir = Scratch::new("web-bad");
    let port = free_port();
    for (name, text, problem) in [
        ("plain.yml", "basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
        (
            "nocert.yml",
            "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n",
            "/nonexistent/cert.pem",
        ),
        ("typo.yml", "tls_server_confg:\n  cert_file: a\n", "unknown field"),
    ] {
        let file = dir.file(name, text);
        let out = run_with(&file, port).output().unwrap();
        refused(&out, &file, problem);
    }
    let missing = dir.0.join("absent.yml");
    let out = run_with(&missing, port).output().unwrap();
    refused(&out, &missing, "cannot read it");
}
