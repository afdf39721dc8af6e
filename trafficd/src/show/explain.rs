//! `trafficd explain ID`: GET /explain as a chain from the wire to the process.

use std::fmt::Write as _;

use clap::Args;

use super::{bytes, fetch, peer};
use crate::api::Explanation;

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

pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let flow = &e.flow;
    let _ = writeln!(
        out,
        "flow {} {} {} -> {} ({})",
        flow.id, flow.protocol, flow.local, flow.remote, flow.direction
    );
    let _ = writeln!(out, "  peer      {}", peer(&e.peer));
    if let Some(interface) = &e.interface {
        let _ = writeln!(out, "  interface {interface}");
    }
    if let Some(nat) = &e.nat {
        let _ = writeln!(out, "  nat       {nat}");
    }
    match &e.process {
        Some(p) => {
            let _ = writeln!(out, "  process   {} pid {} user {}", p.comm, p.pid, p.user);
            let _ = writeln!(out, "    cmdline {}", p.cmdline);
            let _ = writeln!(out, "    cgroup  {}", p.cgroup);
        }
        None => {
            let _ = writeln!(out, "  process   unknown (cgroup {})", flow.cgroup);
        }
    }
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
    out
}
