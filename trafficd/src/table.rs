//! `trafficd top`: the daemon's /top as a table in the terminal.

use std::{fmt::Write as _, time::Duration};

use serde_json::Value;

use crate::cli::{By, SortBy, TopArgs, Window};

/// Fetches /top once and renders it.
pub fn fetch_and_render(args: &TopArgs) -> Result<String, String> {
    let url = format!(
        "{}/top?limit={}&by={}&window={}&sort={}",
        args.url.trim_end_matches('/'),
        args.limit,
        by_name(args.by),
        window_name(args.window),
        sort_name(args.sort),
    );
    let response = match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, response)) => {
            let body: Value = response.into_json().unwrap_or_default();
            let message = body["error"].as_str().unwrap_or("no error message").to_string();
            return Err(format!("{url} answered {code}: {message}"));
        }
        Err(err) => {
            return Err(format!(
                "cannot reach trafficd at {}: {err}; is `trafficd run` running? (--url sets the address)",
                args.url
            ))
        }
    };
    let body: Value = response
        .into_json()
        .map_err(|e| format!("{url} did not answer JSON: {e}"))?;
    Ok(render(args.by, &body))
}

/// The cells that name a row (pid, comm, ...), taken from one JSON item.
type Identity = fn(&Value) -> Vec<String>;

pub fn render(by: By, body: &Value) -> String {
    let empty = Vec::new();
    let items = body["items"].as_array().unwrap_or(&empty);
    let window = body["window_seconds"].as_u64().unwrap_or(0);
    let (headers, identity): (&[&str], Identity) = match by {
        By::Process => (&["PID", "COMM", "USER", "CGROUP"], |i| {
            vec![
                num(&i["pid"]),
                text(&i["comm"]),
                text(&i["user"]),
                text(&i["cgroup"]),
            ]
        }),
        By::Cgroup => (&["CGROUP"], |i| vec![text(&i["cgroup"])]),
        By::Flow => (&["PROTO", "LOCAL", "REMOTE", "PID", "COMM"], |i| {
            vec![
                text(&i["protocol"]),
                text(&i["local"]),
                text(&i["remote"]),
                num(&i["pid"]),
                text(&i["comm"]),
            ]
        }),
        By::Remote => (&["REMOTE"], |i| vec![text(&i["remote"])]),
    };
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len() + 1);
    let mut header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    header.extend(["TX/s", "RX/s", "TX total", "RX total"].map(String::from));
    rows.push(header);
    for item in items {
        let mut row = identity(item);
        row.push(rate(&item["tx_bytes_per_second"]));
        row.push(rate(&item["rx_bytes_per_second"]));
        row.push(bytes(item["lifetime_tx_bytes"].as_u64().unwrap_or(0)));
        row.push(bytes(item["lifetime_rx_bytes"].as_u64().unwrap_or(0)));
        rows.push(row);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "top {} by {} over {window}s (TX/s and RX/s: IP bytes, headers included)",
        items.len(),
        by_name(by)
    );
    out.push_str(&layout(&rows, headers.len()));
    if items.is_empty() {
        out.push_str("(no traffic in this window)\n");
    }
    out
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

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn num(v: &Value) -> String {
    v.as_u64().map(|n| n.to_string()).unwrap_or_default()
}

fn rate(v: &Value) -> String {
    format!("{}/s", bytes(v.as_f64().unwrap_or(0.0) as u64))
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

fn by_name(by: By) -> &'static str {
    match by {
        By::Process => "process",
        By::Cgroup => "cgroup",
        By::Flow => "flow",
        By::Remote => "remote",
    }
}

fn window_name(window: Window) -> &'static str {
    match window {
        Window::W1s => "1s",
        Window::W10s => "10s",
        Window::W60s => "60s",
    }
}

fn sort_name(sort: SortBy) -> &'static str {
    match sort {
        SortBy::Total => "total",
        SortBy::Tx => "tx",
        SortBy::Rx => "rx",
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
    fn renders_a_process_table() {
        let body = json!({"by": "process", "window_seconds": 10, "items": [
            {"pid": 4242, "comm": "iperf3", "user": "root", "cgroup": "/docker/abc",
             "tx_bytes_per_second": 1048576.0, "rx_bytes_per_second": 0.0,
             "lifetime_tx_bytes": 10485760, "lifetime_rx_bytes": 512}
        ]});
        let table = render(By::Process, &body);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("PID"), "{table}");
        assert!(
            lines[2].contains("4242") && lines[2].contains("iperf3"),
            "{table}"
        );
        assert!(
            lines[2].contains("1.0 MiB/s") && lines[2].contains("10.0 MiB"),
            "{table}"
        );
    }
}
