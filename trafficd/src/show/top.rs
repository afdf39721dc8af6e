//! `trafficd top`: the daemon's /top as a table in the terminal.

use std::fmt::Write as _;

use clap::Args;

use crate::api::{
    By, ContainerItem, FlowItem, Item, Items, Limit, Rates, RemoteItem, Sort, TopQuery,
    TopResponse, Window,
};

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// Rows to show (1 to 1000).
    #[arg(long, short = 'n', default_value = "10")]
    pub limit: Limit,
    /// What to rank.
    #[arg(long, value_enum, default_value_t = By::Process)]
    pub by: By,
    /// Window the rates are computed over.
    #[arg(long, value_enum, default_value_t = Window::W10s)]
    pub window: Window,
    /// Rank by transmitted, received or both.
    #[arg(long, value_enum, default_value_t = Sort::Total)]
    pub sort: Sort,
    /// Base URL of the daemon.
    #[arg(long, default_value = "http://127.0.0.1:9464", env = "TRAFFICD_URL")]
    pub url: String,
    /// Refresh every N seconds until interrupted.
    #[arg(long, short = 'w', value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
}

impl TopArgs {
    /// The /top parameters these flags ask for.
    pub fn query(&self) -> TopQuery {
        TopQuery {
            limit: self.limit,
            by: self.by,
            window: self.window,
            sort: self.sort,
        }
    }
}

/// Fetches /top once and renders it.
pub fn fetch_and_render(args: &TopArgs) -> Result<String, String> {
    let path = format!("/top?{}", args.query().to_query_string());
    let body: TopResponse = super::fetch(&args.url, &path)?;
    Ok(render(&body))
}

pub fn render(top: &TopResponse) -> String {
    let (headers, mut rows): (&[&str], _) = match &top.items {
        Items::Process(items) => (
            &["PID", "COMM", "USER", "OWNER"],
            rows(items, |i| {
                vec![
                    pids(i.pid, i.pid_in_namespace),
                    i.comm.clone(),
                    i.user.clone(),
                    i.owner.label(&i.cgroup).to_string(),
                ]
            }),
        ),
        Items::Cgroup(items) => (
            &["OWNER", "CGROUP"],
            rows(items, |i| {
                vec![i.owner.label(&i.cgroup).to_string(), i.cgroup.clone()]
            }),
        ),
        Items::Flow(items) => (
            &[
                "ID", "PROTO", "LOCAL", "REMOTE", "VIA", "ORIGIN", "PID", "COMM", "OWNER",
            ],
            rows(items, flow_cells),
        ),
        Items::Remote(items) => (&["REMOTE", "CLASS", "ADDRESSES"], rows(items, remote_cells)),
        Items::Container(items) => (
            &["OWNER", "KIND", "IMAGE", "RUNTIME", "POD", "CGROUP"],
            rows(items, owner_cells),
        ),
        Items::Interface(items) => (
            &["INTERFACE", "UP", "CAPACITY/s", "UTIL", "FORWARDED"],
            rows(items, interface_cells),
        ),
    };
    let mut header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    header.extend(["TX/s", "RX/s", "TX total", "RX total"].map(String::from));
    rows.insert(0, header);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "top {} by {} over {}s (TX/s and RX/s: IP bytes, headers included)",
        top.items.len(),
        top.by,
        top.window_seconds
    );
    out.push_str(&layout(&rows, headers.len()));
    if top.items.is_empty() {
        out.push_str("(no traffic in this window)\n");
    }
    out
}

/// A flow's ends, then for a forwarded one the interface it crossed (`VIA`) and where it came
/// from before any translation (`ORIGIN`: the innermost NAT hop's original source, e.g. the
/// container's address behind the host's MASQUERADE); a local socket's shows its process.
fn flow_cells(item: &FlowItem) -> Vec<String> {
    let path = &item.path;
    let via = match (&path.interface, path.direction.as_deref()) {
        (Some(interface), Some("ingress")) => format!("{interface} in"),
        (Some(interface), Some("egress")) => format!("{interface} out"),
        (Some(interface), _) => interface.clone(),
        (None, _) => "-".to_string(),
    };
    let origin = path
        .nat
        .last()
        .map_or("-".to_string(), |hop| hop.original.src.clone());
    let (pid, comm) = if item.pid == 0 && item.comm.is_empty() {
        ("-".to_string(), "-".to_string())
    } else {
        (item.pid.to_string(), item.comm.clone())
    };
    vec![
        item.id.clone(),
        item.protocol.clone(),
        item.local.clone(),
        item.remote.clone(),
        via,
        origin,
        pid,
        comm,
        item.owner.label(&item.cgroup).to_string(),
    ]
}

/// An interface's name, state, capacity, utilization, and the forwarded share of its window.
fn interface_cells(item: &crate::api::InterfaceItem) -> Vec<String> {
    let forwarded = item.split.map_or("-".to_string(), |s| {
        bytes(s.transmit.forwarded + s.receive.forwarded)
    });
    vec![
        item.interface.clone(),
        if item.up { "up" } else { "down" }.to_string(),
        item.capacity_bytes_per_sec.map_or("-".to_string(), bytes),
        item.utilization
            .map_or("-".to_string(), |u| format!("{:.1}%", u * 100.0)),
        forwarded,
    ]
}

/// One row per item: the cells that name it (pid, comm, ...), then its rates and totals.
fn rows<I>(items: &[Item<I>], identity: impl Fn(&I) -> Vec<String>) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|item| {
            let mut row = identity(&item.identity);
            row.extend(numbers(&item.rates));
            row
        })
        .collect()
}

/// The pid on the host, and in its own pid namespace where that differs (a container's).
fn pids(pid: u32, in_namespace: Option<u32>) -> String {
    match in_namespace {
        Some(inner) if inner != pid => format!("{pid}({inner})"),
        _ => pid.to_string(),
    }
}

/// A remote by name where it has one, with its class and addresses (the busiest, and how
/// many more).
fn remote_cells(item: &RemoteItem) -> Vec<String> {
    let class = item
        .class
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "-".to_string());
    let addresses = match item.ips.as_slice() {
        [] => "-".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    vec![item.remote.clone(), class, addresses]
}

/// An owner by name (a container's short id until its engine named it); "-" where a column
/// does not apply, the cgroup path for a layout trafficd does not know.
fn owner_cells(item: &ContainerItem) -> Vec<String> {
    let or_dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_string();
    let owner = &item.owner;
    let container = owner.container.as_ref();
    let pod = owner.pod.as_ref().map(|p| match (&p.namespace, &p.name) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        _ => p.uid.clone(),
    });
    let kind = serde_json::to_value(owner.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from));
    vec![
        owner.label(&item.cgroup).to_string(),
        or_dash(kind.as_deref()),
        or_dash(container.and_then(|c| c.image.as_deref())),
        or_dash(container.and_then(|c| c.runtime.as_deref())),
        or_dash(pod.as_deref()),
        item.cgroup.clone(),
    ]
}

fn numbers(rates: &Rates) -> [String; 4] {
    [
        rate(rates.tx_bytes_per_second),
        rate(rates.rx_bytes_per_second),
        bytes(rates.lifetime_tx_bytes),
        bytes(rates.lifetime_rx_bytes),
    ]
}

/// Left-aligns identity columns, right-aligns numbers. The last identity column (cgroup,
/// cmd) is cut so a row fits in a normal terminal.
fn layout(rows: &[Vec<String>], identity_columns: usize) -> String {
    const MAX_TEXT: usize = 48;
    let cut = |s: &str| -> String {
        if s.chars().count() > MAX_TEXT {
            let tail: String = s
                .chars()
                .rev()
                .take(MAX_TEXT - 1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c < identity_columns {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn rate(bytes_per_second: f64) -> String {
    format!("{}/s", bytes(bytes_per_second as u64))
}

/// Binary units, one decimal: what `ls -lh` and nethogs users read at a glance.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn renders_owners_with_dashes_where_none_is_named() {
        let rates = json!({"tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
            "tx_bytes_per_second": 2048.0, "rx_bytes_per_second": 0.0,
            "lifetime_tx_bytes": 4096, "lifetime_rx_bytes": 0,
            "lifetime_tx_packets": 3, "lifetime_rx_packets": 0});
        let item = |owner: serde_json::Value| {
            let mut item = rates.clone();
            if let (Some(item), Some(owner)) = (item.as_object_mut(), owner.as_object()) {
                item.extend(owner.clone());
            }
            item
        };
        let body = json!({"by": "container", "window_seconds": 10, "items": [
            item(json!({"kind": "container", "name": "0123456789ab",
                        "container": {"id": "0123456789abcdef", "short_id": "0123456789ab",
                                      "name": null, "image": "local/busybox:1",
                                      "runtime": "docker", "compose_project": null,
                                      "compose_service": null},
                        "pod": null, "unit": null, "cgroup": "/docker/0123456789abcdef",
                        "cgroups": 1})),
            item(json!({"kind": "unknown", "name": null, "container": null, "pod": null,
                        "unit": null, "cgroup": "/trafficd-test", "cgroups": 1})),
        ]});
        let table = render(&serde_json::from_value(body).unwrap());
        let lines: Vec<&str> = table.lines().collect();
        let cells = |line: &str| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1])[..6],
            ["OWNER", "KIND", "IMAGE", "RUNTIME", "POD", "CGROUP"]
        );
        assert_eq!(
            cells(lines[2])[..6],
            [
                "0123456789ab",
                "container",
                "local/busybox:1",
                "docker",
                "-",
                "/docker/0123456789abcdef"
            ]
        );
        assert_eq!(
            cells(lines[3])[..6],
            ["/trafficd-test", "unknown", "-", "-", "-", "/trafficd-test"]
        );
        assert!(lines[3].contains("2.0 KiB/s"), "{table}");
    }

    #[test]
    fn renders_interfaces_with_utilization_and_forwarded_bytes() {
        let parts = |forwarded: u64| {
            json!({"local": 10, "forwarded": forwarded,
            "unattributed": {"dropped": 0, "non_ip": 0, "not_seen": 0}})
        };
        let body = json!({"by": "interface", "window_seconds": 10, "items": [
            {"interface": "eth0", "ifindex": 2, "up": true, "capacity_bytes_per_sec": 1250000000u64,
             "utilization": 0.925,
             "split": {"transmit": parts(1048576), "receive": parts(1048576)},
             "lifetime_split": null,
             "tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
             "tx_bytes_per_second": 0.0, "rx_bytes_per_second": 0.0,
             "lifetime_tx_bytes": 0, "lifetime_rx_bytes": 0,
             "lifetime_tx_packets": 0, "lifetime_rx_packets": 0},
            {"interface": "veth1", "ifindex": 9, "up": false, "capacity_bytes_per_sec": null,
             "utilization": null, "split": null, "lifetime_split": null,
             "tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
             "tx_bytes_per_second": 0.0, "rx_bytes_per_second": 0.0,
             "lifetime_tx_bytes": 0, "lifetime_rx_bytes": 0,
             "lifetime_tx_packets": 0, "lifetime_rx_packets": 0}
        ]});
        let table = render(&serde_json::from_value(body).unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("INTERFACE"), "{table}");
        assert!(
            lines[2].contains("eth0") && lines[2].contains("92.5%") && lines[2].contains("2.0 MiB"),
            "{table}"
        );
        assert!(
            lines[3].contains("veth1") && lines[3].contains("down"),
            "{table}"
        );
    }

    #[test]
    fn renders_a_forwarded_flow_with_its_interface_and_origin() {
        let rates = json!({"tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
            "tx_bytes_per_second": 0.0, "rx_bytes_per_second": 1048576.0,
            "lifetime_tx_bytes": 0, "lifetime_rx_bytes": 8388608,
            "lifetime_tx_packets": 0, "lifetime_rx_packets": 6000});
        let hop = |original: &str, translated: &str, seen_in: &str| {
            json!({"original": {"protocol": "tcp", "src": original, "dst": "10.8.1.3:3129"},
                   "reply": {"protocol": "tcp", "src": "10.8.1.3:3129", "dst": translated},
                   "seen_in": seen_in})
        };
        let flow = |path: serde_json::Value, pid: u32, comm: &str| {
            let mut item = rates.clone();
            let identity = json!({"protocol": "tcp", "local": "10.8.1.3:3129",
                "remote": "10.0.7.248:40142", "pid": pid, "comm": comm, "cgroup": "/docker/abc",
                "owner": {"kind": "container", "name": "openvpn", "container": null,
                          "pod": null, "unit": null},
                "id": "b714a3a0a1fb1341", "peer": null});
            for part in [identity, path] {
                if let (Some(item), Some(part)) = (item.as_object_mut(), part.as_object()) {
                    item.extend(part.clone());
                }
            }
            item
        };
        let forwarded = json!({"interface": "eth0", "direction": "ingress",
            "nat": [hop("172.17.0.2:53312", "10.0.7.248:40142", "host"),
                    hop("172.16.248.22:41000", "172.17.0.2:53312", "openvpn")],
            "container": "/docker/abc", "namespace": "/docker/abc", "local_socket": false});
        let local = json!({"interface": null, "direction": null, "nat": [],
            "container": null, "namespace": null, "local_socket": true});
        let body = json!({"by": "flow", "window_seconds": 10,
            "items": [flow(forwarded, 0, ""), flow(local, 4242, "haproxy")]});
        let table = render(&serde_json::from_value(body).unwrap());
        let cells = |line: &str| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            cells(lines[1])[..9],
            ["ID", "PROTO", "LOCAL", "REMOTE", "VIA", "ORIGIN", "PID", "COMM", "OWNER"]
        );
        // The innermost hop names the address the flow came from before both NATs.
        assert_eq!(
            cells(lines[2])[4..9],
            ["eth0 in", "172.16.248.22:41000", "-", "-", "openvpn"],
            "{table}"
        );
        assert_eq!(
            cells(lines[3])[4..9],
            ["-", "-", "4242", "haproxy", "openvpn"],
            "{table}"
        );
    }

    #[test]
    fn renders_a_process_table() {
        let body = json!({"by": "process", "window_seconds": 10, "items": [
            {"pid": 4242, "pid_in_namespace": 7, "comm": "iperf3", "user": "root",
             "cgroup": "/docker/abc", "cmdline": "iperf3 -c 10.0.0.2", "exe": "/usr/bin/iperf3",
             "uid": 0, "reason": null,
             "owner": {"kind": "container", "name": "bench", "container": null, "pod": null,
                       "unit": null},
             "tx_bytes": 10485760, "rx_bytes": 512, "tx_packets": 7000, "rx_packets": 4,
             "tx_bytes_per_second": 1048576.0, "rx_bytes_per_second": 0.0,
             "lifetime_tx_bytes": 10485760, "lifetime_rx_bytes": 512,
             "lifetime_tx_packets": 7000, "lifetime_rx_packets": 4}
        ]});
        let table = render(&serde_json::from_value(body).unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("PID"), "{table}");
        assert!(
            lines[2].contains("4242(7)") && lines[2].contains("iperf3"),
            "{table}"
        );
        assert!(lines[2].contains("bench"), "{table}");
        assert!(
            lines[2].contains("1.0 MiB/s") && lines[2].contains("10.0 MiB"),
            "{table}"
        );
    }
}
