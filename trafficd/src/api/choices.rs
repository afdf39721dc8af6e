//! The choices of GET /top and `trafficd top`: what to rank, over which window, by which
//! direction. clap and serde read the same names, so a flag value and a query value are
//! always spelled alike; `Display` prints that name.

use std::{fmt, time::Duration};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// What /top ranks.
#[derive(ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Processes, and bytes no process owns with the reason why.
    #[default]
    Process,
    /// cgroups, by path.
    Cgroup,
    /// Flows: protocol, local and remote address, process.
    Flow,
    /// Remote addresses, summed over their flows.
    Remote,
    /// Owners: containers, pods, systemd units, the host (a cgroup of an unknown layout alone).
    Container,
    /// Interfaces: their own counters, capacity, and the split of their bytes by kind.
    Interface,
}

/// The window rates and window bytes are computed over.
#[derive(ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Window {
    #[value(name = "1s")]
    #[serde(rename = "1s")]
    W1s,
    #[default]
    #[value(name = "10s")]
    #[serde(rename = "10s")]
    W10s,
    // "1m" was accepted by the server before the CLI existed; it stays an unlisted alias.
    #[value(name = "60s", alias = "1m")]
    #[serde(rename = "60s", alias = "1m")]
    W60s,
}

impl Window {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Window::W1s => 1,
            Window::W10s => 10,
            Window::W60s => 60,
        })
    }
}

/// Which bytes rank the items.
#[derive(ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    #[default]
    Total,
    Tx,
    Rx,
}

/// The value's name as clap (and, checked by a test, serde) spells it.
fn write_name(value: &impl ValueEnum, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value.to_possible_value() {
        Some(possible) => f.write_str(possible.get_name()),
        None => Ok(()),
    }
}

/// The names a user may give, for error messages: "process, cgroup, flow, remote".
pub fn names<T: ValueEnum>() -> String {
    T::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's name, serde's name and Display agree for every value, both ways.
    fn agree<T>()
    where
        T: ValueEnum
            + Serialize
            + for<'de> Deserialize<'de>
            + fmt::Display
            + PartialEq
            + fmt::Debug,
    {
        for v in T::value_variants() {
            let quoted = format!("\"{v}\"");
            assert_eq!(serde_json::to_string(v).unwrap(), quoted);
            assert_eq!(&serde_json::from_str::<T>(&quoted).unwrap(), v);
            assert_eq!(&T::from_str(&v.to_string(), false).unwrap(), v);
        }
    }

    #[test]
    fn clap_serde_and_display_spell_alike() {
        agree::<By>();
        agree::<Window>();
        agree::<Sort>();
    }

    #[test]
    fn wire_names_are_todays() {
        assert_eq!(
            names::<By>(),
            "process, cgroup, flow, remote, container, interface"
        );
        assert_eq!(names::<Window>(), "1s, 10s, 60s");
        assert_eq!(names::<Sort>(), "total, tx, rx");
        assert_eq!(Window::from_str("1m", false).unwrap(), Window::W60s);
        assert_eq!(Window::W60s.duration(), Duration::from_secs(60));
    }
}
