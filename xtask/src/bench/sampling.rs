//! trafficd's programs' share of the traffic's CPU time, sampled by `perf record` while
//! trafficd runs as it does by default, with BPF statistics off.
//!
//! BPF statistics time every program run with two clock reads and count it; here that costs
//! about 100 ns a run, as much as the programs' own work, so a share computed from them
//! (run_time_ns over the generator's CPU time) charges the programs for the measurement.
//! Sampling charges them only for the samples that land in them or in what they call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::proc::{wait_for, Proc};
use super::scenarios::read_tail;

/// Samples a second on each CPU: a few thousand samples in a 3-s run on 2 CPUs, at a cost of a
/// fraction of a percent of the CPU.
const FREQUENCY: &str = "999";

/// `perf record` on every CPU, with kernel call chains (the JIT keeps frame pointers, so a sample
/// taken in a helper shows the program that called it).
pub struct Profiler {
    perf: PathBuf,
    proc: Proc,
    data: PathBuf,
}

impl Profiler {
    /// Starts sampling; returns once perf has opened its events.
    pub fn start(perf: &Path, work: &Path) -> Result<Profiler> {
        let data = work.join("perf.data");
        let mut cmd = Command::new(perf);
        cmd.args([
            "record",
            "--all-cpus",
            "--call-graph",
            "fp",
            "--freq",
            FREQUENCY,
        ])
        .arg("--output")
        .arg(&data);
        let stderr = work.join("perf.err");
        let mut proc = Proc::spawn("perf record", &mut cmd, &work.join("perf.out"), &stderr)?;
        // perf writes the file's header once its events are open; it exits at once when it
        // cannot open them (a kernel without perf events, perf_event_paranoid for non-root).
        let started = wait_for("perf record to start", Duration::from_secs(10), || {
            if proc.try_status().is_some() {
                return Some(false);
            }
            data.metadata().ok().filter(|m| m.len() > 0).map(|_| true)
        })?;
        if !started {
            bail!("perf record exited at start: {}", read_tail(&stderr));
        }
        Ok(Profiler {
            perf: perf.to_path_buf(),
            proc,
            data,
        })
    }

    /// Stops sampling and counts the samples of `generator` (a comm) and the softirq threads.
    pub fn stop(mut self, generator: &str) -> Result<Samples> {
        // perf record writes its buffers out on SIGTERM.
        self.proc.stop(Duration::from_secs(20));
        let out = Command::new(&self.perf)
            .arg("script")
            .arg("--input")
            .arg(&self.data)
            .args(["--fields", "comm,ip,sym"])
            .output()
            .context("run perf script")?;
        if !out.status.success() {
            bail!(
                "perf script failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let samples = Samples::parse(&String::from_utf8_lossy(&out.stdout), generator);
        // Megabytes a run; the figures are what is kept.
        let _ = std::fs::remove_file(&self.data);
        if samples.traffic == 0 {
            bail!("perf recorded no sample of {generator}");
        }
        Ok(samples)
    }
}

/// What the samples of one run show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Samples of the traffic: in the generator's processes, or in a softirq thread.
    pub traffic: u64,
    /// Of those, the ones taken in a trafficd program or in what it called, by program (the
    /// outermost one when programs nest).
    pub in_programs: BTreeMap<String, u64>,
}

impl Samples {
    /// Reads `perf script --fields comm,ip,sym` output: one block per sample, the comm on the
    /// first line, then one frame a line, innermost first.
    pub fn parse(script: &str, generator: &str) -> Samples {
        let mut samples = Samples::default();
        for block in script.split("\n\n") {
            let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
            let Some(comm) = lines.next().map(str::trim) else {
                continue;
            };
            if comm != generator && !comm.starts_with("ksoftirqd/") {
                continue;
            }
            samples.traffic += 1;
            let program = lines
                .filter_map(|frame| frame.split_whitespace().nth(1))
                .filter_map(trafficd_program)
                .last();
            if let Some(program) = program {
                *samples.in_programs.entry(program.to_string()).or_default() += 1;
            }
        }
        samples
    }

    /// Percent of the traffic's samples taken in trafficd's programs.
    pub fn programs_percent(&self) -> Option<f64> {
        let inside: u64 = self.in_programs.values().sum();
        (self.traffic > 0).then(|| 100.0 * inside as f64 / self.traffic as f64)
    }
}

/// "trafficd_egress" from a JIT symbol such as "bpf_prog_4f0f4767d7e34534_trafficd_egress".
fn trafficd_program(symbol: &str) -> Option<&str> {
    let rest = symbol.strip_prefix("bpf_prog_")?;
    let at = rest.find("_trafficd_")?;
    Some(&rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
iperf3 
\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress
\tffffffff8157db6c __cgroup_bpf_run_filter_skb
\tffffffff8157db6d ip_finish_output

iperf3 
\tffffffff8157db6c __sock_gen_cookie
\tffffffff8157db6e bpf_get_socket_cookie
\tffffffffc0025bd6 bpf_prog_49470259cc11a649_trafficd_ingress
\tffffffff8157db6c __cgroup_bpf_run_filter_skb

iperf3 
\tffffffff8157db6c rep_movs_alternative

ksoftirqd/1 
\tffffffffc0025bd6 bpf_prog_49470259cc11a649_trafficd_ingress

perf 
\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress

trafficd 
\tffffffff8157db6c do_syscall_64
";

    #[test]
    fn counts_the_traffics_samples_and_those_in_programs() {
        let samples = Samples::parse(SCRIPT, "iperf3");
        assert_eq!(samples.traffic, 4, "three iperf3 samples and one softirq");
        assert_eq!(
            samples.in_programs,
            BTreeMap::from([
                ("trafficd_egress".to_string(), 1),
                // A helper's sample goes to the program that called it.
                ("trafficd_ingress".to_string(), 2),
            ])
        );
        assert_eq!(samples.programs_percent(), Some(75.0));
    }

    #[test]
    fn no_sample_of_the_generator_is_no_share() {
        let script = "perf \n\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress\n";
        assert_eq!(Samples::parse(script, "iperf3").programs_percent(), None);
    }
}
