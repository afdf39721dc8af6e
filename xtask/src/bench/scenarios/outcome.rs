//! What each generator says it moved, read from its output.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{Outcome, UDP_HEADERS};
use crate::bench::gen::FLOW_PAYLOAD;

/// CPU seconds of both iperf3 ends over the test, from the utilization each reports (percent
/// of one core over the client's test time).
pub(super) fn iperf3_cpu_seconds(end: &Value) -> Option<f64> {
    let cpu = &end["cpu_utilization_percent"];
    let percent = cpu["host_total"].as_f64()? + cpu["remote_total"].as_f64()?;
    let seconds = end["sum_sent"]["seconds"].as_f64()?;
    Some(percent / 100.0 * seconds)
}

pub(super) fn udp_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text).context("parse iperf3 --json")?;
    if let Some(error) = json.get("error").and_then(Value::as_str) {
        bail!("iperf3: {error}");
    }
    let end = &json["end"];
    let sent_packets = end["sum_sent"]["packets"].as_u64().context("no packets")?;
    let sent_bytes = end["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let lost = end["sum_received"]["lost_packets"].as_u64().unwrap_or(0);
    let received_packets = sent_packets.saturating_sub(lost);
    let received_bytes = end["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let seconds = end["sum_received"]["seconds"].as_f64().unwrap_or(0.0);
    let payload = sent_bytes.checked_div(sent_packets).unwrap_or(64);
    Ok(Outcome {
        seconds,
        generator_cpu_seconds: iperf3_cpu_seconds(end),
        rate: per_second(received_packets, seconds),
        goodput_bps: per_second(received_bytes * 8, seconds),
        sent_payload: sent_bytes,
        received_payload: received_bytes,
        sent_units: sent_packets,
        received_units: received_packets,
        expected_client_tx: sent_packets * (payload + UDP_HEADERS),
        expected_server_rx: received_packets * (payload + UDP_HEADERS),
        ..Outcome::default()
    })
}

pub(super) fn churn_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text.trim()).context("parse churn client output")?;
    let number = |key: &str| json[key].as_u64().unwrap_or(0);
    let seconds = json["seconds"].as_f64().unwrap_or(0.0);
    let ok = number("connections_ok");
    Ok(Outcome {
        seconds,
        rate: per_second(ok, seconds),
        goodput_bps: per_second(number("payload_received") * 8, seconds),
        sent_payload: number("payload_sent"),
        received_payload: number("payload_received"),
        sent_units: number("processes"),
        received_units: ok,
        processes: number("processes"),
        failed: number("connections_failed"),
        // Found by comm, and compared with the client namespace's interface counters.
        client_pid: 0,
        server_pid: 0,
        ..Outcome::default()
    })
}

pub(super) fn flows_outcome(text: &str) -> Result<Outcome> {
    let json: Value = serde_json::from_str(text.trim()).context("parse flows output")?;
    let number = |key: &str| json[key].as_u64().unwrap_or(0);
    let seconds = json["seconds"].as_f64().unwrap_or(0.0);
    let (sent, received) = (number("sent"), number("received"));
    let payload = FLOW_PAYLOAD as u64;
    let pid = number("pid") as u32;
    Ok(Outcome {
        seconds,
        rate: per_second(sent, seconds),
        goodput_bps: per_second(received * payload * 8, seconds),
        sent_payload: sent * payload,
        received_payload: received * payload,
        sent_units: sent,
        received_units: received,
        client_pid: pid,
        server_pid: pid,
        expected_client_tx: sent * (payload + UDP_HEADERS),
        expected_server_rx: received * (payload + UDP_HEADERS),
        ..Outcome::default()
    })
}

/// The comm whose processes carry a churn run's bytes.
fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
