//! trafficd's programs' share of the traffic's CPU time, sampled by `perf record` while
//! trafficd runs as it does by default, with BPF statistics off.
//!
//! BPF statistics time every program run with two clock reads and count it; here that costs
//! about 100 ns a run, as much as the programs' own work, so a share computed from them
//! (run_time_ns over the generator's CPU time) charges the programs for the measurement.
//! Sampling charges them only for the samples that land in them or in what they call.
//!
//! Under the conditions with statistics on, the same sampling gives each program's own time
//! per run: the time of the samples taken in it (or in what it called), over the runs the
//! statistics counted. The statistics' clock reads, and the kernel's code that reaches the
//! program, lie outside it: an empty program measures only what entering it costs (10-30 ns
//! here, fetching its code).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::proc::{wait_for, Proc};
use super::scenarios::read_tail;

/// Samples a second on each CPU: about 30,000 samples in a 3-s run on 2 CPUs, so that each
/// program gets a few hundred, at a cost of about a percent of the CPU.
pub const FREQUENCY: &str = "4999";

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
            // A timer's samples, whatever the CPU offers: each sample's period is then
            // nanoseconds of CPU time.
            "--event",
            "cpu-clock",
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
            .args(["--fields", "comm,period,ip,sym"])
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
    /// Nanoseconds of CPU time sampled in each BPF program (trafficd's or the bench's empty
    /// ones) or in what it called, by any process: the programs' own time.
    #[serde(default)]
    pub program_ns: BTreeMap<String, u64>,
}

impl Samples {
    /// Reads `perf script --fields comm,period,ip,sym` output: one block per sample, the comm
    /// and the sample's period (ns of a cpu-clock event) on the first line, then one frame a
    /// line, innermost first.
    pub fn parse(script: &str, generator: &str) -> Samples {
        let mut samples = Samples::default();
        for block in script.split("\n\n") {
            let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
            let Some((comm, period)) = lines.next().and_then(comm_and_period) else {
                continue;
            };
            let symbols: Vec<&str> = lines
                .filter_map(|frame| frame.split_whitespace().nth(1))
                .collect();
            // The innermost program: a subprogram's sample goes to the program that called it,
            // and a program run by a softirq that interrupted another keeps its own sample.
            let own = symbols
                .iter()
                .filter_map(|s| program_of(s))
                .find(|name| is_main_program(name));
            if let Some(program) = own {
                *samples.program_ns.entry(program.to_string()).or_default() += period;
            }
            if comm != generator && !comm.starts_with("ksoftirqd/") {
                continue;
            }
            samples.traffic += 1;
            let program = symbols
                .iter()
                .filter_map(|s| trafficd_program(s))
                .next_back();
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

/// The comm and the period of a sample's first line, "iperf3  250000" (a comm may hold spaces).
fn comm_and_period(line: &str) -> Option<(&str, u64)> {
    let line = line.trim();
    let (comm, period) = line.rsplit_once(char::is_whitespace)?;
    Some((comm.trim(), period.parse().ok()?))
}

/// "trafficd_egress" from a JIT symbol such as "bpf_prog_4f0f4767d7e34534_trafficd_egress": the
/// program's name after the prefix and its 16-digit tag.
fn program_of(symbol: &str) -> Option<&str> {
    let rest = symbol.strip_prefix("bpf_prog_")?;
    let (tag, name) = rest.split_at_checked(17)?;
    (tag.ends_with('_') && !name.is_empty()).then_some(name)
}

/// Whether `name` is one of trafficd's programs or the bench's empty ones, not a subprogram of
/// theirs (a BPF-to-BPF function, whose symbol carries its own name).
fn is_main_program(name: &str) -> bool {
    name.starts_with("trafficd_") || name.starts_with("empty_")
}

/// The name of a trafficd program from its JIT symbol.
fn trafficd_program(symbol: &str) -> Option<&str> {
    program_of(symbol).filter(|name| name.starts_with("trafficd_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
iperf3  200000
\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress
\tffffffff8157db6c __cgroup_bpf_run_filter_skb
\tffffffff8157db6d ip_finish_output

iperf3  200100
\tffffffff8157db6c __sock_gen_cookie
\tffffffff8157db6e bpf_get_socket_cookie
\tffffffffc0025bd6 bpf_prog_49470259cc11a649_trafficd_ingress
\tffffffff8157db6c __cgroup_bpf_run_filter_skb

iperf3  199900
\tffffffff8157db6c rep_movs_alternative

ksoftirqd/1  200000
\tffffffffc0025bd6 bpf_prog_49470259cc11a649_trafficd_ingress

perf  200000
\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress

trafficd  200000
\tffffffff8157db6c do_syscall_64

Web Content  200000
\tffffffffc0025bd6 bpf_prog_1f0f4767d7e34534_empty_sock_send

iperf3  1000
\tffffffffc0025bd6 bpf_prog_2f0f4767d7e34534_write_owner
\tffffffffc0025bd6 bpf_prog_4b371990fc96db39_trafficd_sock_send

iperf3  500
\tffffffffc0025bd6 bpf_prog_49470259cc11a649_trafficd_ingress
\tffffffff8136963d handle_softirqs
\tffffffff8136989e __irq_exit_rcu
\tffffffffc0025bd6 bpf_prog_4b371990fc96db39_trafficd_sock_send
";

    #[test]
    fn counts_the_traffics_samples_and_those_in_programs() {
        let samples = Samples::parse(SCRIPT, "iperf3");
        assert_eq!(samples.traffic, 6, "five iperf3 samples and one softirq");
        assert_eq!(
            samples.in_programs,
            BTreeMap::from([
                ("trafficd_egress".to_string(), 1),
                // A helper's sample goes to the program that called it.
                ("trafficd_ingress".to_string(), 2),
                // Nested programs count once, as the outermost.
                ("trafficd_sock_send".to_string(), 2),
            ])
        );
        assert_eq!(samples.programs_percent(), Some(100.0 * 5.0 / 6.0));
        assert_eq!(
            samples.program_ns,
            BTreeMap::from([
                // Every process's samples: perf's own included.
                ("trafficd_egress".to_string(), 400_000),
                // A program run by a softirq inside another keeps its sample.
                ("trafficd_ingress".to_string(), 400_600),
                ("empty_sock_send".to_string(), 200_000),
                // A subprogram's sample goes to its program.
                ("trafficd_sock_send".to_string(), 1_000),
            ])
        );
    }

    #[test]
    fn a_symbol_names_its_program_after_the_tag() {
        assert_eq!(
            program_of("bpf_prog_4f0f4767d7e34534_trafficd_sock_send"),
            Some("trafficd_sock_send")
        );
        assert_eq!(program_of("bpf_prog_4f0f4767d7e34534_"), None);
        assert_eq!(program_of("bpf_prog_short"), None);
        assert_eq!(program_of("bpf_trampoline_6442"), None);
        assert_eq!(
            trafficd_program("bpf_prog_1f0f4767d7e34534_empty_egress"),
            None
        );
    }

    #[test]
    fn no_sample_of_the_generator_is_no_share() {
        let script = "perf  1000\n\tffffffffc0025bd6 bpf_prog_4f0f4767d7e34534_trafficd_egress\n";
        assert_eq!(Samples::parse(script, "iperf3").programs_percent(), None);
    }
}
