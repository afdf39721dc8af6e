//! The kernel programs: which hooks are attached, and with `--bpf-stats` how often each
//! program ran and for how long (the kernel's own run-time statistics).

use std::collections::HashMap;

use prometheus_client::encoding::DescriptorEncoder;
use tracing::debug;

use super::{counters, gauges};
use crate::kernel::Hook;

/// What the kernel side is, fixed at start.
#[derive(Clone, Debug, Default)]
pub struct Programs {
    pub hooks: Vec<Hook>,
    /// (name, kernel id) of each program, when run-time statistics are on.
    pub stats: Option<Vec<(String, u32)>>,
}

pub fn encode(encoder: &mut DescriptorEncoder, programs: &Programs) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        "trafficd_hook_attached",
        "1 when the kernel program is attached to its hook, 0 when this kernel refused an \
         optional one (the daemon's log says what is missing without it)",
        programs.hooks.iter().map(|h| {
            (
                vec![
                    ("program", h.program.to_string()),
                    ("hook", h.hook.to_string()),
                ],
                i64::from(h.attached),
            )
        }),
    )?;
    let Some(ours) = &programs.stats else {
        return Ok(());
    };
    // The kernel hands out a program's statistics by id; only ours are read.
    let names: HashMap<u32, &str> = ours.iter().map(|(n, id)| (*id, n.as_str())).collect();
    let mut runs = Vec::new();
    for info in aya::programs::loaded_programs() {
        match info {
            Ok(info) => {
                if let Some(name) = names.get(&info.id()) {
                    runs.push((name.to_string(), info.run_count(), info.run_time()));
                }
            }
            Err(err) => debug!("reading a program's statistics: {err}"),
        }
    }
    runs.sort();
    counters(
        encoder,
        "trafficd_bpf_program_runs",
        "Times each kernel program ran since --bpf-stats turned the statistics on",
        runs.iter()
            .map(|(name, count, _)| (vec![("program", name.clone())], *count)),
    )?;
    counters(
        encoder,
        "trafficd_bpf_program_run_seconds",
        "CPU time each kernel program took since --bpf-stats turned the statistics on",
        runs.iter()
            .map(|(name, _, time)| (vec![("program", name.clone())], time.as_secs_f64())),
    )
}
