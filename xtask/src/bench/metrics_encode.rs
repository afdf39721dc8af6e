//! `cargo xtask bench metrics-encode`: the CPU time of one /metrics scrape with 10k processes
//! (each its own comm, all moving: the worst case for the series bound) and 100k flows known.
//!
//! The store is built in memory by a benchmark test inside the daemon's crate (no BPF, no
//! root), since the encoder reads the daemon's private store; this runs it in release and
//! checks the median against the target.

use std::fs;

use anyhow::{bail, Context, Result};

use crate::{cargo, target_dir};

/// The target for one encoding at this scale.
const TARGET_MS: f64 = 20.0;

pub fn run() -> Result<()> {
    let out = cargo()
        .args(["test", "--release", "-p", "trafficd", "--bins", "--"])
        .args([
            "--ignored",
            "--exact",
            "http::metrics::encode_bench::metrics_encode_at_scale",
        ])
        .arg("--nocapture")
        .output()
        .context("could not start cargo test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "metrics-encode benchmark failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("metrics-encode:"))
        .context("the benchmark printed no `metrics-encode:` line")?;
    let median = field(line, "median_ms")?;
    let verdict = if median < TARGET_MS {
        "meets"
    } else {
        "MISSES"
    };
    let report = format!("{line}\nmedian {median:.3} ms {verdict} the target of {TARGET_MS} ms\n");
    print!("{report}");
    let dir = target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("metrics-encode.txt"), &report)?;
    Ok(())
}

/// The number after `name=` in the benchmark's line.
fn field(line: &str, name: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .context(format!("no {name}= in {line:?}"))?
        .parse()
        .with_context(|| format!("{name} in {line:?}"))
}
