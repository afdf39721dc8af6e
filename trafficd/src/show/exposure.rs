//! `trafficd exposure`: GET /exposure, one listener and its external peers per block.

use std::fmt::Write as _;

use clap::Args;

use super::{bytes, fetch, peer};
use crate::api::ExposureResponse;

#[derive(Args, Debug, Clone)]
pub struct ExposureArgs {
    /// Base URL of the daemon.
    #[arg(long, default_value = "http://127.0.0.1:9464", env = "TRAFFICD_URL")]
    pub url: String,
}

impl ExposureArgs {
    pub fn fetch(&self) -> Result<String, String> {
        let response: ExposureResponse = fetch(&self.url, "/exposure")?;
        Ok(render(&response))
    }
}

pub fn render(response: &ExposureResponse) -> String {
    let mut out = String::new();
    match response.age_seconds {
        None => out.push_str("listeners not listed yet; ask again in a few seconds\n"),
        Some(age) => {
            let _ = writeln!(
                out,
                "{} listeners receive from external peers (listed {age}s ago)",
                response.listeners.len()
            );
        }
    }
    for l in &response.listeners {
        let flag = if l.internal_port {
            "  INTERNAL PORT"
        } else {
            ""
        };
        let owner = match (&l.comm, l.pid) {
            (Some(comm), Some(pid)) => format!("{comm} pid {pid}"),
            _ => "owner unknown".to_string(),
        };
        let container = l
            .container
            .as_deref()
            .map(|c| format!(" in {c}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} {owner}{container}: rx {}{flag}",
            l.protocol,
            l.listen,
            bytes(l.rx_bytes)
        );
        for p in &l.peers {
            let _ = writeln!(out, "  {}: rx {}", peer(&p.peer), bytes(p.rx_bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_internal_port_is_flagged_with_its_strangers() {
        let body = json!({"age_seconds": 3, "listeners": [{
            "protocol": "tcp", "listen": "0.0.0.0:3129", "pid": 42, "comm": "haproxy",
            "container": null, "internal_port": true, "rx_bytes": 2048,
            "peers": [{"ip": "203.0.113.5", "name": null, "source": null,
                       "class": "documentation", "rx_bytes": 2048,
                       "first_seen": 1, "last_seen": 2}]}]});
        let text = render(&serde_json::from_value(body).unwrap());
        assert_eq!(
            text,
            "1 listeners receive from external peers (listed 3s ago)\n\
             tcp 0.0.0.0:3129 haproxy pid 42: rx 2.0 KiB  INTERNAL PORT\n  \
             203.0.113.5 (documentation): rx 2.0 KiB\n"
        );
        let empty = json!({"age_seconds": null, "listeners": []});
        let text = render(&serde_json::from_value(empty).unwrap());
        assert!(text.starts_with("listeners not listed yet"), "{text}");
    }
}
