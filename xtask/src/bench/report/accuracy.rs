//! How exact the bytes each tool reported are: ratios to what the generator knows it moved, to
//! the client veth's own counters, and to the payload alone.

use serde::{Deserialize, Serialize};

use super::statistics::{spread, Spread};
use crate::bench::conditions::Condition;
use crate::bench::scenarios::{Kind, Link, Outcome, Scenario, ETH_HEADER, TCP_HEADERS};
use crate::bench::{CaptureFigures, RunRecord, TrafficdFigures};

/// Reported bytes relative to a reference, over the runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Accuracy {
    /// `client tx`, `server rx`, ...
    pub what: String,
    /// What the ratio is taken against.
    pub reference: String,
    pub ratio: Spread,
    /// The run farthest from 1.
    pub worst: f64,
}

pub(super) const REF_RANGE: &str =
    "iperf3's range: received .. sent + retransmissions (payload + headers)";
pub(super) const REF_SENT: &str = "sent payload + headers";
pub(super) const REF_RECEIVED: &str = "received payload + headers";
pub(super) const REF_DROPS: &str =
    "received payload + headers, + datagrams dropped at a full receive buffer";
pub(super) const REF_WIRE: &str =
    "client veth's packets out (IP bytes; TCP: one header per 1448-byte segment)";
pub(super) const REF_RAW_SENT: &str = "sent payload only (raw)";
pub(super) const REF_RAW_RECEIVED: &str = "received payload only (raw)";
pub(super) const REF_CHURN_OUT: &str = "client veth's IP bytes out";
pub(super) const REF_CHURN_IN: &str = "client veth's IP bytes in";
pub(super) const REF_CHURN_BOTH: &str = "client veth's IP bytes out + in";
pub(super) const REF_PROCESSES: &str = "processes forked";

/// 1 when `value` lies in [low, high], else its ratio to the bound it passed.
fn range_ratio(value: f64, low: u64, high: u64) -> f64 {
    let (low, high) = (low as f64, high.max(low) as f64);
    if value < low {
        ratio(value, low)
    } else if value > high {
        ratio(value, high)
    } else {
        1.0
    }
}

/// IP bytes that left through the client's veth end (Ethernet headers taken off).
fn ip_bytes_out(record: &RunRecord) -> Option<f64> {
    let w = record.wire?;
    Some(w.tx_bytes.saturating_sub(w.tx_packets * ETH_HEADER) as f64)
}

fn ip_bytes_in(record: &RunRecord) -> Option<f64> {
    let w = record.wire?;
    Some(w.rx_bytes.saturating_sub(w.rx_packets * ETH_HEADER) as f64)
}

/// The client's packets out of its veth end as trafficd counts them. veth counts a GSO
/// packet once with one set of headers; trafficd counts one per segment (1448 bytes of
/// payload at MTU 1500), so for TCP the headers are recounted per segment.
fn wire_reference(record: &RunRecord, tcp: bool) -> Option<f64> {
    let ip = ip_bytes_out(record)?;
    if !tcp {
        return Some(ip);
    }
    let packets = record.wire?.tx_packets as f64;
    let header = TCP_HEADERS as f64;
    let payload = (ip - packets * header).max(0.0);
    let segments = packets.max((payload / (1500.0 - header)).ceil());
    Some(payload + segments * header)
}

pub(super) fn wire_packets(record: &RunRecord, link: Link) -> Option<f64> {
    let wire = record.wire?;
    Some(match link {
        // lo counts each packet once as tx and once as rx.
        Link::Loopback => wire.tx_packets as f64,
        Link::Veth => (wire.tx_packets + wire.rx_packets) as f64,
    })
}

pub(super) fn wire_ip_bytes(record: &RunRecord, link: Link) -> Option<f64> {
    let wire = record.wire?;
    let (packets, bytes) = match link {
        Link::Loopback => (wire.tx_packets, wire.tx_bytes),
        Link::Veth => (
            wire.tx_packets + wire.rx_packets,
            wire.tx_bytes + wire.rx_bytes,
        ),
    };
    Some(bytes.saturating_sub(packets * ETH_HEADER) as f64)
}

pub(super) fn ratio(value: f64, reference: f64) -> f64 {
    if reference > 0.0 {
        value / reference
    } else {
        f64::NAN
    }
}

pub(super) fn accuracy(what: &str, reference: &str, ratios: Vec<f64>) -> Option<Accuracy> {
    let worst = ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .max_by(|a, b| (a - 1.0).abs().total_cmp(&(b - 1.0).abs()))?;
    Some(Accuracy {
        what: what.to_string(),
        reference: reference.to_string(),
        ratio: spread(ratios)?,
        worst,
    })
}

/// The bytes trafficd reported for the client's and the server's process (0 when not listed).
fn client_tx(t: &TrafficdFigures) -> f64 {
    t.client
        .as_ref()
        .map_or(0.0, |p| p.lifetime_tx_bytes as f64)
}

fn server_rx(t: &TrafficdFigures) -> f64 {
    t.server
        .as_ref()
        .map_or(0.0, |p| p.lifetime_rx_bytes as f64)
}

type TrafficdRuns<'a> = [(&'a RunRecord, &'a TrafficdFigures)];
type Side = fn(&TrafficdFigures) -> f64;

/// One ratio per run where `f` has one.
fn pick(runs: &TrafficdRuns, f: impl Fn(&RunRecord, &TrafficdFigures) -> Option<f64>) -> Vec<f64> {
    runs.iter().filter_map(|(r, t)| f(r, t)).collect()
}

/// Churn: the churn client processes trafficd listed over those the generator forked.
pub(super) fn processes_seen(runs: &TrafficdRuns) -> Vec<f64> {
    pick(runs, |r, t| {
        Some(ratio(
            t.comm_processes as f64,
            r.outcome.as_ref()?.processes as f64,
        ))
    })
}

/// How exact trafficd's bytes for the generator's processes are, against every reference the
/// scenario has.
pub(super) fn of_trafficd(scenario: &Scenario, runs: &TrafficdRuns) -> Vec<Accuracy> {
    let mut out = match scenario.kind {
        Kind::Churn => churn_of_trafficd(runs),
        Kind::Tcp { .. } => {
            let mut out = tcp_range_of_trafficd(runs);
            out.extend(against_generator(runs));
            out
        }
        Kind::Udp64 | Kind::Flows { .. } => {
            let mut out = against_generator(runs);
            out.extend(udp_drops_of_trafficd(runs));
            out
        }
    };
    if !matches!(scenario.kind, Kind::Churn) {
        if scenario.link == Link::Veth {
            let tcp = matches!(scenario.kind, Kind::Tcp { .. });
            for (what, value) in [("client tx", client_tx as Side), ("server rx", server_rx)] {
                let ratios = pick(runs, |r, t| Some(ratio(value(t), wire_reference(r, tcp)?)));
                out.extend(accuracy(what, REF_WIRE, ratios));
            }
        }
        out.extend(raw_payload_of_trafficd(runs));
    }
    if !scenario.received() {
        // Nothing received the traffic: there is no receiving side to compare.
        out.retain(|a| a.what != "server rx");
    }
    out
}

/// Churn: all churn clients' bytes against the client veth's counters, and the processes.
fn churn_of_trafficd(runs: &TrafficdRuns) -> Vec<Accuracy> {
    let tx = pick(runs, |r, t| Some(ratio(t.comm_tx_bytes, ip_bytes_out(r)?)));
    let rx = pick(runs, |r, t| Some(ratio(t.comm_rx_bytes, ip_bytes_in(r)?)));
    [
        accuracy("churn clients tx", REF_CHURN_OUT, tx),
        accuracy("churn clients rx", REF_CHURN_IN, rx),
        accuracy(
            "churn client processes listed",
            REF_PROCESSES,
            processes_seen(runs),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// TCP: within iperf3's received .. sent + retransmissions range (1 = inside).
fn tcp_range_of_trafficd(runs: &TrafficdRuns) -> Vec<Accuracy> {
    [("client tx", client_tx as Side), ("server rx", server_rx)]
        .into_iter()
        .filter_map(|(what, value)| {
            let ratios = pick(runs, |r, t| {
                let o = r.outcome.as_ref()?;
                Some(range_ratio(value(t), o.range_low, o.range_high))
            });
            accuracy(what, REF_RANGE, ratios)
        })
        .collect()
}

/// The generator's own figures plus headers, for every kind but churn.
fn against_generator(runs: &TrafficdRuns) -> Vec<Accuracy> {
    both_sides(
        runs,
        (REF_SENT, |o| o.expected_client_tx),
        (REF_RECEIVED, |o| o.expected_server_rx),
    )
}

/// UDP: the received datagrams plus those dropped at the server's full receive buffer, which
/// crossed the hook.
fn udp_drops_of_trafficd(runs: &TrafficdRuns) -> Option<Accuracy> {
    let ratios = pick(runs, |r, t| {
        let o = r.outcome.as_ref()?;
        let per = ratio(o.expected_server_rx as f64, o.received_units as f64);
        let per = if per.is_finite() { per } else { 0.0 };
        Some(ratio(
            server_rx(t),
            o.expected_server_rx as f64 + per * o.rcvbuf_drops as f64,
        ))
    });
    accuracy("server rx", REF_DROPS, ratios)
}

/// The payload alone, without headers.
fn raw_payload_of_trafficd(runs: &TrafficdRuns) -> Vec<Accuracy> {
    both_sides(
        runs,
        (REF_RAW_SENT, |o| o.sent_payload),
        (REF_RAW_RECEIVED, |o| o.received_payload),
    )
}

/// The client's bytes and the server's, each against a figure of the generator's outcome.
fn both_sides(
    runs: &TrafficdRuns,
    (sent_ref, sent): (&str, fn(&Outcome) -> u64),
    (received_ref, received): (&str, fn(&Outcome) -> u64),
) -> Vec<Accuracy> {
    let of = |side: Side, figure: fn(&Outcome) -> u64| {
        pick(runs, |r, t| {
            Some(ratio(side(t), figure(r.outcome.as_ref()?) as f64))
        })
    };
    accuracy("client tx", sent_ref, of(client_tx, sent))
        .into_iter()
        .chain(accuracy("server rx", received_ref, of(server_rx, received)))
        .collect()
}

/// How exact a capture tool's bytes are (a process it did not list counts as 0 bytes).
pub(super) fn of_capture_tool(
    scenario: &Scenario,
    condition: Condition,
    captures: &[(&RunRecord, &CaptureFigures)],
) -> Vec<Accuracy> {
    let sent = |c: &CaptureFigures| c.client.map_or(0.0, |b| b.sent);
    let received = |c: &CaptureFigures| c.server.map_or(0.0, |b| b.received);
    let of = |f: &dyn Fn(&RunRecord, &CaptureFigures) -> Option<f64>| -> Vec<f64> {
        captures.iter().filter_map(|(r, c)| f(r, c)).collect()
    };
    let mut out = Vec::new();
    if matches!(scenario.kind, Kind::Churn) {
        out.extend(accuracy(
            "churn clients tx",
            REF_CHURN_OUT,
            of(&|r, c| Some(ratio(sent(c), ip_bytes_out(r)?))),
        ));
        out.extend(accuracy(
            "every line, attributed or not, sent + received",
            REF_CHURN_BOTH,
            of(&|r, c| {
                let both = c.total.sent + c.total.received;
                Some(ratio(both, ip_bytes_out(r)? + ip_bytes_in(r)?))
            }),
        ));
        return out;
    }
    out.extend(accuracy(
        "client tx",
        REF_SENT,
        of(&|r, c| {
            Some(ratio(
                sent(c),
                r.outcome.as_ref()?.expected_client_tx as f64,
            ))
        }),
    ));
    // The server of a veth scenario lives in the other namespace: nethogs and bandwhich watch
    // the client's; bandwhich cannot tell the two iperf3 apart.
    if scenario.link == Link::Loopback && condition == Condition::Nethogs {
        out.extend(accuracy(
            "server rx",
            REF_RECEIVED,
            of(&|r, c| {
                Some(ratio(
                    received(c),
                    r.outcome.as_ref()?.expected_server_rx as f64,
                ))
            }),
        ));
    }
    if scenario.link == Link::Veth {
        let tcp = matches!(scenario.kind, Kind::Tcp { .. });
        out.extend(accuracy(
            "client tx",
            REF_WIRE,
            of(&|r, c| Some(ratio(sent(c), wire_reference(r, tcp)?))),
        ));
    }
    out
}
