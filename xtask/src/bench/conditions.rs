//! The conditions a scenario runs under: nothing, trafficd (with and without BPF statistics,
//! and sampled by perf: see [`super::sampling`]), empty BPF programs on trafficd's hooks (with
//! statistics: the floor of the per-program figures; without: the floor of the throughput
//! ratios, see [`super::empty_bpf`]), and the packet-capture tools nethogs and bandwhich.
//! [`super::monitor`] starts and stops each.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    Baseline,
    Trafficd,
    TrafficdBpfStats,
    TrafficdSampled,
    EmptyBpf,
    EmptyBpfNoStats,
    Nethogs,
    Bandwhich,
}

impl Condition {
    pub const ALL: [Condition; 8] = [
        Condition::Baseline,
        Condition::Trafficd,
        Condition::TrafficdBpfStats,
        Condition::TrafficdSampled,
        Condition::EmptyBpf,
        Condition::EmptyBpfNoStats,
        Condition::Nethogs,
        Condition::Bandwhich,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Baseline => "baseline",
            Condition::Trafficd => "trafficd",
            Condition::TrafficdBpfStats => "trafficd+bpf-stats",
            Condition::TrafficdSampled => "trafficd+perf",
            Condition::EmptyBpf => "empty-bpf",
            Condition::EmptyBpfNoStats => "empty-bpf-no-stats",
            Condition::Nethogs => "nethogs",
            Condition::Bandwhich => "bandwhich",
        }
    }

    pub fn parse(text: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.name() == text)
    }

    pub fn is_trafficd(self) -> bool {
        matches!(
            self,
            Condition::Trafficd | Condition::TrafficdBpfStats | Condition::TrafficdSampled
        )
    }

    /// Runs with `perf record` on every CPU while the traffic flows.
    pub fn sampled(self) -> bool {
        self == Condition::TrafficdSampled
    }

    /// Attaches the empty programs for the run.
    pub fn is_empty_bpf(self) -> bool {
        matches!(self, Condition::EmptyBpf | Condition::EmptyBpfNoStats)
    }

    /// Runs with kernel.bpf_stats_enabled=1.
    pub fn bpf_stats(self) -> bool {
        matches!(self, Condition::TrafficdBpfStats | Condition::EmptyBpf)
    }

    /// Every condition's name, for messages.
    pub fn all_names() -> String {
        Condition::ALL.map(Condition::name).join(", ")
    }

    pub fn is_capture_tool(self) -> bool {
        matches!(self, Condition::Nethogs | Condition::Bandwhich)
    }
}
