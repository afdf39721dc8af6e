//! The real trafficd, started per test.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::http::{self, Response};

/// How long the daemon may take to load and attach its programs and answer /healthz.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Options for [`Daemon`]; defaults are `--interval 250ms` and a free port on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    interval: String,
    args: Vec<String>,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self {
            interval: "250ms".into(),
            args: Vec::new(),
        }
    }
}

impl DaemonBuilder {
    /// The drain interval, as humantime (`250ms`, `2s`).
    pub fn interval(mut self, interval: &str) -> Self {
        self.interval = interval.into();
        self
    }

    /// An extra argument to `trafficd run`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the daemon and waits until GET /healthz answers 200.
    pub fn start(self) -> Daemon {
        let bin = Daemon::binary();
        // The free port is found by binding port 0 and releasing it, so another
        // process could take it before the daemon binds: retry on "in use".
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Daemon::try_start(&bin, &self) {
                Ok(d) => return d,
                Err((log, in_use)) if in_use && attempt < 3 => eprintln!("retrying: {log}"),
                Err((log, _)) => panic!("{log}"),
            }
        }
    }
}

/// A running `trafficd run` child process. Dropping it sends SIGTERM and waits.
pub struct Daemon {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
    interval: Duration,
}

impl Daemon {
    /// `trafficd run --listen 127.0.0.1:<free port> --interval 250ms`, healthy.
    pub fn start() -> Daemon {
        DaemonBuilder::default().start()
    }

    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// The daemon binary: `$TRAFFICD_BIN`, else `<target>/release/trafficd`, else
    /// `<target>/debug/trafficd`, where `<target>` is `$CARGO_TARGET_DIR` or the
    /// workspace's `target/`. Panics when none exists.
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("TRAFFICD_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "TRAFFICD_BIN={} does not exist", p.display());
            return p;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| {
                if t.is_relative() {
                    workspace.join(t)
                } else {
                    t
                }
            })
            .unwrap_or_else(|| workspace.join("target"));
        let candidates = [
            target.join("release/trafficd"),
            target.join("debug/trafficd"),
        ];
        for c in &candidates {
            if c.is_file() {
                return c.clone();
            }
        }
        panic!(
            "no trafficd binary: looked at $TRAFFICD_BIN, {} and {}. Build it and run the tests with \
             `cargo xtask test` (or `cargo build --release -p trafficd` first)",
            candidates[0].display(),
            candidates[1].display()
        );
    }

    fn try_start(bin: &Path, opts: &DaemonBuilder) -> Result<Daemon, (String, bool)> {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = crate::scratch_path("trafficd.log");
        let out = std::fs::File::create(&log).expect("create daemon log file");
        let err = out.try_clone().expect("dup daemon log file");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--interval")
            .arg(&opts.interval)
            .args(&opts.args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let cmdline = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let interval = parse_interval(&opts.interval);
        let mut d = Daemon {
            child: Some(child),
            addr,
            log,
            interval,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = d
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .expect("try_wait daemon")
            {
                d.child = None;
                let text = d.log_text();
                let in_use = text.contains("in use") || text.contains("AddrInUse");
                return Err((
                    format!(
                        "trafficd exited with {status} before /healthz answered.\ncommand: {cmdline}\noutput:\n{text}"
                    ),
                    in_use,
                ));
            }
            let last = match http::get(&d.url("/healthz")) {
                Ok(r) if r.status == 200 => return Ok(d),
                Ok(r) => format!("HTTP {}: {}", r.status, r.body),
                Err(e) => e,
            };
            if start.elapsed() > HEALTHY_WITHIN {
                let text = d.log_text();
                // Drop sends SIGTERM.
                return Err((
                    format!(
                        "trafficd did not answer GET /healthz with 200 within {HEALTHY_WITHIN:?} (last: {last}).\n\
                         command: {cmdline}\noutput:\n{text}"
                    ),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The drain interval it was started with.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:<port>` + `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// GET a path; panics on transport errors (with the daemon's output).
    pub fn get(&self, path_and_query: &str) -> Response {
        http::get(&self.url(path_and_query))
            .unwrap_or_else(|e| panic!("{e}\ntrafficd output:\n{}", self.log_text()))
    }

    /// GET a path and parse JSON.
    pub fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let r = self.get(path_and_query);
        (r.status, r.json())
    }

    /// GET /top?<query>, asserting 200 and the response's shape.
    pub fn top(&self, query: &str) -> crate::Top {
        let (status, v) = self.get_json(&format!("/top?{query}"));
        assert_eq!(status, 200, "GET /top?{query}: {v}");
        crate::Top::from_json(v)
    }

    /// GET /metrics, asserting 200, parsed.
    pub fn metrics(&self) -> crate::metrics::Exposition {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
        crate::metrics::Exposition::parse(&r.body)
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\n{}", r.body))
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().expect("try_wait daemon").is_none(),
        }
    }

    /// SIGTERM, then wait (bounded); returns the exit status. Panics if it does not exit in time.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already exited");
        match terminate(&mut child) {
            Ok(status) => status,
            Err(e) => panic!("{e}\ntrafficd output:\n{}", self.log_text()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            // The test failed: show what the daemon had, before stopping it.
            for q in [
                "by=process&window=60s&limit=15",
                "by=flow&window=60s&limit=15",
            ] {
                match http::get(&self.url(&format!("/top?{q}"))) {
                    Ok(r) => {
                        eprintln!("---- GET /top?{q} (HTTP {}) ----", r.status);
                        match serde_json::from_str::<serde_json::Value>(&r.body) {
                            Ok(v) => {
                                for item in v["items"].as_array().into_iter().flatten() {
                                    eprintln!("{item}");
                                }
                            }
                            Err(_) => eprintln!("{}", r.body),
                        }
                    }
                    Err(e) => eprintln!("---- GET /top?{q} failed: {e}"),
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            if let Err(e) = terminate(&mut child) {
                eprintln!("{e}");
            }
        }
        if std::thread::panicking() {
            // The test failed: show the end of the daemon's output next to the failure.
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "---- trafficd output (last {} of {} lines) ----",
                tail.len(),
                lines.len()
            );
            for l in tail {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// SIGTERM and wait up to STOP_WITHIN; SIGKILL after that.
fn terminate(child: &mut Child) -> Result<ExitStatus, String> {
    if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
        return Ok(s);
    }
    // Our own child, not reaped yet: the pid is still its.
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < STOP_WITHIN {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "trafficd did not exit within {STOP_WITHIN:?} of SIGTERM; killed it"
    ))
}

/// "250ms", "2s", "1m" (the forms the tests use); 1 s when it is something else.
fn parse_interval(s: &str) -> Duration {
    let num = |t: &str| t.trim().parse::<u64>().ok();
    if let Some(ms) = s.strip_suffix("ms").and_then(num) {
        Duration::from_millis(ms)
    } else if let Some(sec) = s.strip_suffix('s').and_then(num) {
        Duration::from_secs(sec)
    } else if let Some(min) = s.strip_suffix('m').and_then(num) {
        Duration::from_secs(60 * min)
    } else {
        Duration::from_secs(1)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
