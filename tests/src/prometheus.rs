//! A real Prometheus (Debian's package), started per test on loopback with a scratch
//! storage directory, the project's rules and a one-second scrape of the test's targets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http;
use crate::tools::{deploy_file, free_port};

/// How long Prometheus may take to answer /-/ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running `prometheus`; dropping it kills it and removes its directory.
pub struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Prometheus {
    /// Scrapes `targets` (`host:port`) every second as job `trafficd` and evaluates
    /// `rules` (the text of a rule file) every second.
    pub fn start(targets: &[String], rules: &str) -> Prometheus {
        let dir = crate::scratch_path("prometheus");
        std::fs::create_dir_all(dir.join("data")).expect("create prometheus dir");
        std::fs::write(dir.join("rules.yml"), rules).expect("write rules");
        let quoted: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: trafficd\n    static_configs:\n      - targets: [{}]\n",
            quoted.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("log")).expect("create log");
        let child = Command::new("prometheus")
            .current_dir(&dir)
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=data")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus {
            child: Some(child),
            dir,
            port,
        };
        p.wait_ready();
        p
    }

    /// The project's rule file with the text `from` replaced by `to` inside the alert
    /// `alert` only (for test-low thresholds and short `for` durations).
    pub fn rules_with(alert: &str, replacements: &[(&str, &str)]) -> String {
        let rules = std::fs::read_to_string(deploy_file("prometheus/trafficd-rules.yml"))
            .expect("read deploy/prometheus/trafficd-rules.yml");
        let start = rules
            .find(&format!("- alert: {alert}\n"))
            .unwrap_or_else(|| panic!("no alert {alert} in the rules"));
        let end = rules[start + 1..]
            .find("- alert: ")
            .map_or(rules.len(), |i| start + 1 + i);
        let mut block = rules[start..end].to_string();
        for (from, to) in replacements {
            assert!(block.contains(from), "{alert} has no {from:?}");
            block = block.replacen(from, to, 1);
        }
        format!("{}{block}{}", &rules[..start], &rules[end..])
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("prometheus exited with {status}:\n{}", self.log_text());
            }
            if matches!(http::get(&self.url("/-/ready")), Ok(r) if r.status == 200) {
                return;
            }
            assert!(
                start.elapsed() < READY_WITHIN,
                "prometheus not ready within {READY_WITHIN:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// GET an API path; the JSON's `data`, or `Err` with the error Prometheus gave.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let r = http::get(&self.url(path_and_query))?;
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("{path_and_query}: not JSON ({e}): {}", r.body))?;
        if v["status"] != "success" {
            return Err(format!("{path_and_query}: HTTP {}: {v}", r.status));
        }
        Ok(v["data"].clone())
    }

    /// An instant query; the `result` array, or the error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of the single sample an instant query returns, if it returns exactly one.
    pub fn scalar(&self, expr: &str) -> Option<f64> {
        match self.query(expr).ok()?.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// GET /api/v1/alerts: every pending or firing alert.
    pub fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")
            .map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// GET /api/v1/rules: every rule of every group, with the group's name.
    pub fn rules(&self) -> Vec<(String, Value)> {
        let data = self.api("/api/v1/rules").unwrap_or(Value::Null);
        let mut out = Vec::new();
        for g in data["groups"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default().to_string();
            for r in g["rules"].as_array().into_iter().flatten() {
                out.push((name.clone(), r.clone()));
            }
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- prometheus log (last 30 lines) ----");
            for l in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
