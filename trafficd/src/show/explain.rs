//! `trafficd explain ID`: GET /explain as a chain from the wire to the process.

use std::fmt::Write as _;

use clap::Args;

use super::{bytes, fetch, peer};
use crate::api::{ExplainedInterface, Explanation};

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The flow's id, from `trafficd top --by flow` or /top?by=flow.
    pub id: String,
    /// Base URL of the daemon.
    #[arg(long, default_value = "http://127.0.0.1:9464", env = "TRAFFICD_URL")]
    pub url: String,
}

impl ExplainArgs {
    pub fn fetch(&self) -> Result<String, String> {
        let id: String = self
            .id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let explanation: Explanation = fetch(&self.url, &format!("/explain?flow={id}"))?;
        Ok(render(&explanation))
    }
}

/// The flow as a chain, from the wire inwards: interface, NAT hops, owner, process, peer,
/// bytes per window, and the peers that fed a forwarder.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let flow = &e.flow;
    let _ = writeln!(
        out,
        "flow {} {} {} -> {} ({})",
        flow.id, flow.protocol, flow.local, flow.remote, flow.direction
    );
    if let Some(interface) = &e.interface {
        let _ = writeln!(out, "  wire      {}", wire(interface));
    }
    for hop in e.nat.iter().flatten() {
        let (original, reply) = (&hop.hop.original, &hop.hop.reply);
        // A hop seen in the flow's container is named as the container is.
        let seen_in = match &e.owner.name {
            Some(name) if hop.hop.seen_in == flow.cgroup => name,
            _ => &hop.hop.seen_in,
        };
        let _ = writeln!(
            out,
            "  nat       {} -> {} became {} -> {} (in {seen_in})",
            original.src, original.dst, reply.dst, reply.src
        );
        let _ = writeln!(out, "    from    {}", peer(&hop.source));
    }
    owner_and_process(&mut out, e);
    let _ = writeln!(out, "  peer      {}", peer(&e.peer));
    traffic(&mut out, e);
    out
}

fn wire(interface: &ExplainedInterface) -> String {
    let load = match (interface.utilization, interface.capacity_bytes_per_sec) {
        (Some(used), Some(capacity)) => format!(
            "{:.1}% of {}/s over {}s",
            used * 100.0,
            bytes(capacity),
            interface.window_seconds
        ),
        _ => "capacity unknown".to_string(),
    };
    format!("{} {}, {load}", interface.name, interface.direction)
}

fn owner_and_process(out: &mut String, e: &Explanation) {
    let flow = &e.flow;
    if let Some(name) = &e.owner.name {
        let kind = serde_json::to_value(e.owner.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let text = if *name == kind {
            kind
        } else {
            format!("{name} ({kind})")
        };
        let _ = writeln!(out, "  owner     {text}");
    }
    if let Some(namespace) = &flow.namespace {
        let _ = writeln!(out, "  netns     {namespace}");
    }
    match &e.process {
        Some(p) => {
            let _ = writeln!(out, "  process   {} pid {} user {}", p.comm, p.pid, p.user);
            let _ = writeln!(out, "    cmdline {}", p.cmdline);
            let _ = writeln!(out, "    cgroup  {}", p.cgroup);
        }
        // A forwarded flow has no socket on this host: its owner above is the answer.
        None if e.interface.is_some() => {}
        None => {
            let _ = writeln!(out, "  process   unknown (cgroup {})", flow.cgroup);
        }
    }
}

fn traffic(out: &mut String, e: &Explanation) {
    for w in &e.windows {
        let _ = writeln!(
            out,
            "  {:>3}s     tx {}/s rx {}/s",
            w.window_seconds,
            bytes(w.rates.tx_bytes_per_second as u64),
            bytes(w.rates.rx_bytes_per_second as u64)
        );
    }
    if let Some(w) = e.windows.last() {
        let _ = writeln!(
            out,
            "  lifetime  tx {} rx {}",
            bytes(w.rates.lifetime_tx_bytes),
            bytes(w.rates.lifetime_rx_bytes)
        );
    }
    if !e.inbound_peers.is_empty() {
        let _ = writeln!(out, "  fed by (peers sending to this process):");
        for p in &e.inbound_peers {
            let _ = writeln!(
                out,
                "    {} to {}: rx {} tx {}",
                peer(&p.peer),
                p.local,
                bytes(p.rx_bytes),
                bytes(p.tx_bytes)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_forwarders_flow_reads_as_a_chain() {
        let rates = |tx: u64| {
            json!({"tx_bytes": tx, "rx_bytes": 0, "tx_packets": 1, "rx_packets": 0,
                   "tx_bytes_per_second": tx as f64, "rx_bytes_per_second": 0.0,
                   "lifetime_tx_bytes": 2_097_152, "lifetime_rx_bytes": 0,
                   "lifetime_tx_packets": 1, "lifetime_rx_packets": 0})
        };
        let mut windows = Vec::new();
        for (seconds, tx) in [(1, 1024), (10, 2048), (60, 4096)] {
            let mut w = rates(tx);
            w["window_seconds"] = json!(seconds);
            windows.push(w);
        }
        let body = json!({
            "flow": {"id": "00ab", "protocol": "tcp", "local": "10.0.7.248:40142",
                     "remote": "10.8.1.3:3129", "direction": "outbound", "cgroup": "/"},
            "interface": null, "nat": null,
            "owner": {"kind": "host", "name": "host", "container": null, "pod": null, "unit": null},
            "process": {"pid": 42, "comm": "haproxy", "cmdline": "haproxy -f /etc/h.cfg",
                        "exe": "/usr/sbin/haproxy", "user": "haproxy", "uid": 99, "cgroup": "/"},
            "peer": {"ip": "10.8.1.3", "name": "squid-proxies", "source": "labels",
                     "class": "private"},
            "windows": windows,
            "inbound_peers": [{"ip": "203.0.113.5", "name": null, "source": null,
                               "class": "documentation", "local": "172.16.248.22:3129",
                               "rx_bytes": 2_097_152, "tx_bytes": 1024}],
        });
        let text = render(&serde_json::from_value(body).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "flow 00ab tcp 10.0.7.248:40142 -> 10.8.1.3:3129 (outbound)"
        );
        assert_eq!(lines[1], "  owner     host");
        assert_eq!(lines[2], "  process   haproxy pid 42 user haproxy");
        assert_eq!(
            lines[5],
            "  peer      squid-proxies (10.8.1.3, private, from labels)"
        );
        assert!(text.contains("   60s     tx 4.0 KiB/s rx 0 B/s"), "{text}");
        assert!(text.contains("  lifetime  tx 2.0 MiB rx 0 B"), "{text}");
        assert_eq!(
            lines.last().copied(),
            Some("    203.0.113.5 (documentation) to 172.16.248.22:3129: rx 2.0 MiB tx 1.0 KiB")
        );
    }

    #[test]
    fn a_forwarded_flow_reads_from_the_wire_to_the_vpn_client() {
        let tuple = |src: &str, dst: &str| json!({"protocol": "tcp", "src": src, "dst": dst});
        let zero = json!({"tx_bytes": 0, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
                          "tx_bytes_per_second": 0.0, "rx_bytes_per_second": 0.0,
                          "lifetime_tx_bytes": 0, "lifetime_rx_bytes": 0,
                          "lifetime_tx_packets": 0, "lifetime_rx_packets": 0,
                          "window_seconds": 60});
        let body = json!({
            "flow": {"id": "00cd", "protocol": "tcp", "local": "10.0.7.248:40142",
                     "remote": "10.8.1.3:3129", "direction": "forwarded",
                     "cgroup": "/docker/3f4e", "namespace": "/docker/3f4e"},
            "interface": {"name": "eth0", "ifindex": 2, "direction": "egress",
                          "capacity_bytes_per_sec": 125_000_000u64, "utilization": 0.125,
                          "window_seconds": 10},
            "nat": [
                {"original": tuple("172.17.0.2:40000", "10.8.1.3:3129"),
                 "reply": tuple("10.8.1.3:3129", "10.0.7.248:40142"), "seen_in": "host",
                 "source": {"ip": "172.17.0.2", "name": null, "source": null,
                            "class": "private"}},
                {"original": tuple("172.16.248.22:51000", "10.8.1.3:3129"),
                 "reply": tuple("10.8.1.3:3129", "172.17.0.2:40000"),
                 "seen_in": "/docker/3f4e",
                 "source": {"ip": "172.16.248.22", "name": "tke-xxx", "source": "openvpn",
                            "class": "private"}},
            ],
            "owner": {"kind": "container", "name": "openvpn", "container": null, "pod": null,
                      "unit": null},
            "process": null,
            "peer": {"ip": "10.8.1.3", "name": null, "source": null, "class": "private"},
            "windows": [zero],
            "inbound_peers": [],
        });
        let text = render(&serde_json::from_value(body).unwrap());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..8],
            [
                "flow 00cd tcp 10.0.7.248:40142 -> 10.8.1.3:3129 (forwarded)",
                "  wire      eth0 egress, 12.5% of 119.2 MiB/s over 10s",
                "  nat       172.17.0.2:40000 -> 10.8.1.3:3129 became \
                 10.0.7.248:40142 -> 10.8.1.3:3129 (in host)",
                "    from    172.17.0.2 (private)",
                "  nat       172.16.248.22:51000 -> 10.8.1.3:3129 became \
                 172.17.0.2:40000 -> 10.8.1.3:3129 (in openvpn)",
                "    from    tke-xxx (172.16.248.22, private, from openvpn)",
                "  owner     openvpn (container)",
                "  netns     /docker/3f4e",
            ],
            "{text}"
        );
        assert_eq!(
            lines[8], "  peer      10.8.1.3 (private)",
            "no process line for a forwarded flow: {text}"
        );
    }
}
