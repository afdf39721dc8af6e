//! What the bench reads: a process's CPU time and peak RSS from /proc, the run-time statistics
//! of its BPF programs and the memory of its maps (from /proc/<pid>/fdinfo, so only the
//! programs and maps of the daemon the bench started count), interface counters, and
//! OpenMetrics text.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trafficd_tests::bpf::{fdinfo_fields, object_fdinfos};

/// Clock ticks per second of utime/stime in /proc/<pid>/stat.
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        // The value Linux has used on every architecture for decades.
        _ => 100.0,
    }
}

/// A number the kernel shows in one file under /sys/class/net/`interface`/, e.g. `ifindex`
/// or `statistics/tx_packets`.
pub fn interface_number<T: std::str::FromStr>(interface: &str, file: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let path = format!("/sys/class/net/{interface}/{file}");
    fs::read_to_string(&path)
        .with_context(|| format!("read {path}"))?
        .trim()
        .parse()
        .with_context(|| format!("{path} is not a number"))
}

/// User + system CPU seconds of a process, all of its threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // comm may hold spaces and parentheses: the fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks_per_second())
}

/// CPU seconds every CPU of the host has spent busy (anything but idle and iowait), from the
/// first line of /proc/stat.
pub fn host_busy_seconds() -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq, then steal (time the hypervisor gave to
    // others, not this host's work) and guest time (inside user already).
    let busy: f64 = ticks.iter().take(7).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    Ok(busy / ticks_per_second())
}

/// One counter of /proc/net/snmp text: `field` of the `protocol:` table (a line of names, then
/// a line of values).
pub fn snmp_counter(snmp: &str, protocol: &str, field: &str) -> Option<u64> {
    let prefix = format!("{protocol}:");
    let mut lines = snmp.lines().filter(|line| line.starts_with(&prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == field)
        .and_then(|(_, value)| value.parse().ok())
}

/// A `Vm*:` line of /proc/<pid>/status, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Resident memory of the BPF maps `pid` has mapped into its address space (trafficd maps its
/// flow counters): memory the kernel holds for the maps either way, which VmRSS counts too.
pub fn mapped_bpf_maps_kib(pid: u32) -> Option<u64> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        // A mapping's header is "start-end perms offset dev inode [path]"; its fields follow.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map {
            if let Some(kib) = line.strip_prefix("Rss:") {
                total += kib.split_whitespace().next()?.parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}

/// Run-time statistics of one BPF program (zero while kernel.bpf_stats_enabled is 0).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProgStats {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// One BPF map held by a process: its bounds and the memory the kernel charges for it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MapInfo {
    pub id: u32,
    pub name: String,
    pub max_entries: u64,
    pub key_size: u64,
    pub value_size: u64,
    pub memlock_bytes: u64,
}

/// Names of BPF objects by id, from `bpftool <prog|map> show --json` (fdinfo has no names).
pub fn bpf_names(object: &str) -> BTreeMap<u32, String> {
    let Ok(out) = Command::new("bpftool")
        .args([object, "show", "--json"])
        .output()
    else {
        return BTreeMap::new();
    };
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter()
        .filter_map(|item| {
            let id = item.get("id")?.as_u64()? as u32;
            let name = item.get("name")?.as_str()?.to_string();
            Some((id, name))
        })
        .collect()
}

/// The BPF programs `pid` holds, with their run-time statistics, named from `names`.
pub fn prog_stats(pid: u32, names: &BTreeMap<u32, String>) -> Vec<ProgStats> {
    let mut progs: Vec<ProgStats> = object_fdinfos(pid, "bpf-prog")
        .iter()
        .filter_map(|text| {
            let fields = fdinfo_fields(text);
            let id: u32 = fields.get("prog_id")?.parse().ok()?;
            Some(ProgStats {
                id,
                name: names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("prog{id}")),
                run_time_ns: fields.get("run_time_ns")?.parse().ok()?,
                run_cnt: fields.get("run_cnt")?.parse().ok()?,
            })
        })
        .collect();
    progs.sort_by_key(|p| p.id);
    progs.dedup_by_key(|p| p.id);
    progs
}

/// The BPF maps `pid` holds, named from `names`.
pub fn map_infos(pid: u32, names: &BTreeMap<u32, String>) -> Vec<MapInfo> {
    let mut maps: Vec<MapInfo> = object_fdinfos(pid, "bpf-map")
        .iter()
        .filter_map(|text| {
            let fields = fdinfo_fields(text);
            let id: u32 = fields.get("map_id")?.parse().ok()?;
            let number = |key: &str| fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
            Some(MapInfo {
                id,
                name: names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("map{id}")),
                max_entries: number("max_entries"),
                key_size: number("key_size"),
                value_size: number("value_size"),
                memlock_bytes: number("memlock"),
            })
        })
        .collect();
    maps.sort_by_key(|m| m.id);
    maps.dedup_by_key(|m| m.id);
    maps
}

/// Programs attached to the cgroup2 root by anyone: `bpftool cgroup show <root>`.
pub fn cgroup_root_programs(root: &str) -> Vec<(u32, String)> {
    let Ok(out) = Command::new("bpftool")
        .args(["cgroup", "show", root, "--json"])
        .output()
    else {
        return Vec::new();
    };
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter()
        .filter_map(|item| {
            let id = item.get("id")?.as_u64()? as u32;
            let name = item.get("name").and_then(Value::as_str).unwrap_or("?");
            let attach = item
                .get("attach_type")
                .and_then(Value::as_str)
                .unwrap_or("?");
            Some((id, format!("{name} ({attach}, id {id})")))
        })
        .collect()
}

/// The cgroup2 mount point (it is not always /sys/fs/cgroup).
pub fn cgroup2_root() -> Option<String> {
    let mount = trafficd_tests::cgroup2_mount().ok()?;
    Some(mount.to_string_lossy().into_owned())
}

/// Packet and byte counters of one interface (both directions).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct IfCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl IfCounters {
    pub fn since(&self, earlier: &IfCounters) -> IfCounters {
        IfCounters {
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
        }
    }
}

/// Counters of `ifname` in namespace `ns` (None: the bench's own namespace).
pub fn if_counters(ns: Option<&str>, ifname: &str) -> Result<IfCounters> {
    if ns.is_none() {
        let read = |name: &str| -> Result<u64> {
            let path = format!("/sys/class/net/{ifname}/statistics/{name}");
            let text = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
            Ok(text.trim().parse()?)
        };
        return Ok(IfCounters {
            tx_packets: read("tx_packets")?,
            tx_bytes: read("tx_bytes")?,
            rx_packets: read("rx_packets")?,
            rx_bytes: read("rx_bytes")?,
        });
    }
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-s", "-j", "link", "show", "dev", ifname]);
    let out = super::netns::ip(&args)?;
    let list: Vec<Value> = serde_json::from_str(&out).context("parse `ip -j -s link`")?;
    let stats = list
        .first()
        .and_then(|link| link.get("stats64"))
        .context("no stats64 in `ip -j -s link`")?;
    let number = |dir: &str, key: &str| stats[dir][key].as_u64().unwrap_or(0);
    Ok(IfCounters {
        tx_packets: number("tx", "packets"),
        tx_bytes: number("tx", "bytes"),
        rx_packets: number("rx", "packets"),
        rx_bytes: number("rx", "bytes"),
    })
}

/// One sample of an OpenMetrics text: name, labels, value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the sample lines of an OpenMetrics/Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() || chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key, value);
    }
}

/// The sum of every sample named `name` whose labels match all of `wanted`.
pub fn metric_sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            wanted
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openmetrics_samples() {
        let text = "# TYPE x counter\nx_total{comm=\"a \\\"b\\\"\",pid=\"7\"} 12\ny 3.5\n# EOF\n";
        let samples = parse_metrics(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["comm"], "a \"b\"");
        assert_eq!(samples[0].labels["pid"], "7");
        assert_eq!(metric_sum(&samples, "x_total", &[("pid", "7")]), 12.0);
        assert_eq!(samples[1].value, 3.5);
    }

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives ForwDatagrams\n\
                        Ip: 1 64 1234 567\n\
                        Udp: InDatagrams NoPorts InErrors RcvbufErrors\n\
                        Udp: 10 2 3 4\n";

    #[test]
    fn reads_a_counter_by_its_table_and_name() {
        assert_eq!(snmp_counter(SNMP, "Ip", "ForwDatagrams"), Some(567));
        assert_eq!(snmp_counter(SNMP, "Udp", "RcvbufErrors"), Some(4));
        assert_eq!(snmp_counter(SNMP, "Udp", "ForwDatagrams"), None);
        assert_eq!(snmp_counter(SNMP, "Tcp", "InSegs"), None);
    }
}
