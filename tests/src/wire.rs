//! How many bytes a known payload may show up as, and why.
//!
//! trafficd counts the IP packet length, IP and TCP/UDP headers included, of
//! each packet of a socket as it crosses the cgroup_skb hooks, and counts
//! packets. So for a payload the test knows, `reported >= payload` always
//! holds, and the excess is headers:
//!
//! * TCP: IP header (IPv4 20, IPv6 40) + TCP header 20 + 12 bytes of timestamp
//!   option (on by default in Linux) = 52 (IPv4) or 72 (IPv6) bytes per data
//!   segment. With GSO the egress hook sees one super-packet (up to 64 KiB)
//!   with a single set of headers; the daemon adds one set per extra segment
//!   and reports the segments as packets, so headers are counted once per
//!   packet the daemon reports, never more. How many segments TCP
//!   uses is not fixed: at full windows it is payload / MSS (MSS = MTU - 52/72:
//!   65484 on loopback, 1448 on a 1500-MTU veth), but a slow receiver (a loaded
//!   CI machine) makes the window, and with it the segments, smaller; we have
//!   seen 1.2% of header bytes on loopback that way. Sender-side silly window
//!   avoidance (RFC 1122) keeps bulk segments at >= 536 bytes, which bounds the
//!   packet count. Control segments (SYN with its 20 bytes of options, the
//!   handshake's last ACK, FIN, ACKs of the peer's FIN) add a few: [`FIXED_SLACK`].
//! * TCP retransmissions: a loaded machine drops packets even on loopback (a
//!   full backlog or receive buffer), TCP sends them again and they cross the
//!   hooks again; they are real bytes on the wire (seen: 47 KiB in a 3 MiB
//!   transfer while the CPUs were busy). trafficgen reports the socket's own
//!   TCP_INFO (tcpi_bytes_retrans, tcpi_segs_out) and the bound adds them: see [`Sent`].
//! * TCP, acknowledgement direction (the receiver's tx, the sender's rx): no
//!   payload at all, only headers, each IP + 20..60 bytes of TCP header and
//!   options, never coalesced: `packets * (IP + 20) <= bytes <= packets * (IP + 60)`.
//! * UDP: IP header + UDP header 8 = exactly 28 (IPv4) or 48 (IPv6) bytes per
//!   datagram, nothing else (no handshake, no acknowledgements).

/// SYN/ACK/FIN segments of one connection in the data direction: fewer than 10,
/// each at most 40 + 60 bytes of header and options; 2 KiB covers them twice.
pub const FIXED_SLACK: u64 = 2048;

/// Handshake, FIN and window-update packets beyond the data segments.
pub const CONTROL_PACKETS: u64 = 64;

/// Smallest average size of a bulk TCP segment (RFC 1122 default MSS; silly
/// window avoidance keeps the sender from going below it).
pub const MIN_BULK_SEGMENT: u64 = 536;

/// MTU of `lo`.
pub const LOOPBACK_MTU: u64 = 65536;
/// MTU of the veth pairs the tests create.
pub const VETH_MTU: u64 = 1500;

fn ip_header(v6: bool) -> u64 {
    if v6 {
        40
    } else {
        20
    }
}

/// IP + TCP header with the timestamp option: 52 (IPv4) or 72 (IPv6).
pub fn tcp_header(v6: bool) -> u64 {
    ip_header(v6) + 20 + 12
}

/// IP + UDP header: 28 (IPv4) or 48 (IPv6).
pub fn udp_header(v6: bool) -> u64 {
    ip_header(v6) + 8
}

/// How many full-sized data segments `payload` needs at this MTU.
pub fn tcp_segments(payload: u64, mtu: u64, v6: bool) -> u64 {
    let mss = mtu - tcp_header(v6);
    payload.div_ceil(mss)
}

/// The most packets a bulk transfer of `payload` bytes can take (see [`MIN_BULK_SEGMENT`]).
pub fn max_tcp_packets(payload: u64) -> u64 {
    payload.div_ceil(MIN_BULK_SEGMENT) + CONTROL_PACKETS
}

/// Asserts `payload <= reported <= payload + per_packet_overhead * packets +
/// FIXED_SLACK`: headers only add, at most one set per packet.
pub fn assert_wire_bytes(
    what: &str,
    payload: u64,
    reported: u64,
    per_packet_overhead: u64,
    packets: u64,
) {
    let upper = upper_bound(payload, per_packet_overhead, packets);
    assert!(
        reported >= payload,
        "{what}: reported {reported} bytes < {payload} payload bytes (headers can only add)"
    );
    assert!(
        reported <= upper,
        "{what}: reported {reported} bytes > bound {upper} for {payload} payload bytes \
         ({packets} packets x {per_packet_overhead} header bytes + {FIXED_SLACK} slack)"
    );
}

/// The upper bound [`assert_wire_bytes`] uses.
pub fn upper_bound(payload: u64, per_packet_overhead: u64, packets: u64) -> u64 {
    payload + per_packet_overhead * packets + FIXED_SLACK
}

/// What the sending TCP socket put on the wire besides headers: the payload,
/// plus what it retransmitted, and how many segments it sent in all, from the
/// kernel's own count (TCP_INFO, reported by trafficgen).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub payload: u64,
    /// tcpi_bytes_retrans: payload bytes sent more than once.
    pub retrans_bytes: u64,
    /// tcpi_segs_out: every segment (data, control, retransmissions), when known.
    pub segments: Option<u64>,
    /// tcpi_total_retrans: segments sent more than once.
    pub retrans_segments: u64,
}

impl Sent {
    /// A payload with nothing known about retransmissions.
    pub fn payload(payload: u64) -> Sent {
        Sent {
            payload,
            ..Sent::default()
        }
    }

    /// `payload` as sent by the socket of this trafficgen report (its "tcp_info").
    pub fn from_report(payload: u64, report: &crate::GenReport) -> Sent {
        let ti = &report.json["tcp_info"];
        Sent {
            payload,
            retrans_bytes: ti["bytes_retrans"].as_u64().unwrap_or(0),
            segments: ti["segs_out"].as_u64(),
            retrans_segments: ti["total_retrans"].as_u64().unwrap_or(0),
        }
    }
}

/// The data direction of a TCP transfer at `mtu` (the sender's tx, the
/// receiver's rx), reported as `bytes` in `packets` packets:
/// `payload <= bytes <= payload + retransmitted + headers * max(packets,
/// segments) + FIXED_SLACK`, where segments is the kernel's count when known
/// and full-sized segments otherwise; `packets` is at most the kernel's segment
/// count (+8), or [`max_tcp_packets`] when that is not known.
pub fn assert_tcp_data(what: &str, sent: Sent, bytes: u64, packets: u64, mtu: u64, v6: bool) {
    let on_wire = sent.payload + sent.retrans_bytes;
    let most_packets = match sent.segments {
        Some(segs) => segs + 8,
        None => max_tcp_packets(on_wire),
    };
    assert!(
        packets <= most_packets,
        "{what}: {packets} packets for {on_wire} payload bytes, more than {most_packets} ({sent:?})"
    );
    let segments = sent
        .segments
        .unwrap_or_else(|| tcp_segments(on_wire, mtu, v6));
    let headers = packets.max(segments);
    assert!(
        bytes >= sent.payload,
        "{what}: reported {bytes} bytes < {} payload bytes (headers can only add)",
        sent.payload
    );
    let upper = upper_bound(on_wire, tcp_header(v6), headers);
    assert!(
        bytes <= upper,
        "{what}: reported {bytes} bytes > bound {upper}: {} payload + {} retransmitted + {headers} packets x {} \
         header bytes + {FIXED_SLACK} slack",
        sent.payload,
        sent.retrans_bytes,
        tcp_header(v6)
    );
}

/// TCP segments retransmitted in this network namespace so far (`RetransSegs` in
/// /proc/net/snmp). For a sender that exits before its data is acknowledged, whose own
/// TCP_INFO cannot include what the kernel sends again after it is gone: the difference over
/// the test, times the largest segment, bounds those bytes (other traffic's retransmissions
/// only make the bound looser).
pub fn retransmitted_segments() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().expect("Tcp: names"),
        tcp.next().expect("Tcp: values"),
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .expect("RetransSegs in /proc/net/snmp")
}

/// What a sender that exited before its data was acknowledged sent, from its `reported`
/// TCP_INFO and [`retransmitted_segments`] as it was before the transfer: the report's segment
/// count is short, and what the kernel sent again after the process was gone is not in it; the
/// host's retransmissions since, each a segment of at most `mtu`, bound that.
pub fn sent_by_exited(reported: Sent, retransmitted_before: u64, mtu: u64) -> Sent {
    let late = retransmitted_segments() - retransmitted_before;
    Sent {
        segments: None,
        retrans_bytes: reported.retrans_bytes.max(late * (mtu - tcp_header(false))),
        retrans_segments: reported.retrans_segments.max(late),
        ..reported
    }
}

/// Both ends of one TCP connection on this host: what the sender's egress
/// counted (`tx` bytes in `tx_packets`) against what the receiver's ingress
/// counted (`rx`, `rx_packets`). They are the same packets, except that
///
/// * the egress counts a GSO packet as its segments, headers included, and the
///   ingress may see those segments or a GRO-merged packet: the two agree up to
///   one header per packet;
/// * a packet dropped before the receiver's hook (and retransmitted) was
///   counted by the sender only: tx may exceed rx by the retransmissions;
/// * the handshake's first packets reach the listening socket, not the
///   receiver's: a few packets and [`FIXED_SLACK`] bytes either way.
pub fn assert_conserved(
    what: &str,
    sent: Sent,
    tx: u64,
    tx_packets: u64,
    rx: u64,
    rx_packets: u64,
    v6: bool,
) {
    let h = tcp_header(v6);
    let most = tx + tx_packets * h + FIXED_SLACK;
    let least = tx.saturating_sub(sent.retrans_bytes + sent.retrans_segments * h + FIXED_SLACK);
    assert!(
        (least..=most).contains(&rx),
        "{what}: the receiver counted {rx} bytes of the {tx} the sender counted, outside [{least}, {most}] ({sent:?})"
    );
    let (pl, ph) = (
        tx_packets.saturating_sub(sent.retrans_segments + 8),
        tx_packets + 8,
    );
    assert!(
        (pl..=ph).contains(&rx_packets),
        "{what}: the receiver counted {rx_packets} packets of the {tx_packets} the sender counted, outside [{pl}, {ph}]"
    );
}

/// The acknowledgement direction of a TCP transfer of `payload` bytes (the
/// receiver's tx, the sender's rx), reported as `bytes` in `packets` packets:
/// headers only, so `packets * (IP + 20) <= bytes <= packets * (IP + 60)`; at
/// least the handshake; at most two per data segment.
pub fn assert_tcp_acks(what: &str, payload: u64, bytes: u64, packets: u64, v6: bool) {
    assert!(
        packets > 0,
        "{what}: 0 packets in the ACK direction (the handshake alone sends some)"
    );
    let most = 2 * max_tcp_packets(payload);
    assert!(
        packets <= most,
        "{what}: {packets} packets in the ACK direction of a {payload}-byte transfer, more than {most}"
    );
    let (lo, hi) = (
        packets * (ip_header(v6) + 20),
        packets * (ip_header(v6) + 60),
    );
    assert!(
        (lo..=hi).contains(&bytes),
        "{what}: {bytes} bytes in {packets} payload-less packets, outside [{lo}, {hi}] (IP + 20..60 bytes of TCP header each)"
    );
}

/// A UDP transfer: exactly payload + 28/48 bytes per datagram.
pub fn assert_udp_exact(what: &str, payload: u64, datagrams: u64, reported: u64, v6: bool) {
    let expect = payload + datagrams * udp_header(v6);
    assert_eq!(
        reported,
        expect,
        "{what}: {payload} payload bytes in {datagrams} datagrams are exactly {expect} bytes \
         ({} bytes of IP+UDP header each)",
        udp_header(v6)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(tcp_segments(1 << 20, VETH_MTU, false), 725); // 1048576 / 1448
        assert_eq!(tcp_segments(1 << 20, VETH_MTU, true), 735); // / 1428
        assert_eq!(tcp_segments(1 << 20, LOOPBACK_MTU, false), 17); // / 65484
        assert_eq!(upper_bound(1 << 20, 52, 725), 1_048_576 + 37_700 + 2048);
        // Seen on loopback: 4 MiB in 86 packets, 2608 header bytes.
        assert_tcp_data(
            "loopback",
            Sent::payload(4 << 20),
            4_196_912,
            86,
            LOOPBACK_MTU,
            false,
        );
        // Seen on a veth with GSO: 2 MiB in 1467 packets, 3128 header bytes.
        assert_tcp_data(
            "veth",
            Sent::payload(2 << 20),
            2_100_280,
            1467,
            VETH_MTU,
            false,
        );
        // Seen on a loaded loopback: 3 MiB + 47 KiB retransmitted in 72 packets.
        let sent = Sent {
            payload: 3 << 20,
            retrans_bytes: 48_000,
            segments: Some(75),
            retrans_segments: 1,
        };
        assert_tcp_data("retransmissions", sent, 3_195_484, 72, LOOPBACK_MTU, false);
        // ACKs: 35 x 52, 40 x 72.
        assert_tcp_acks("acks", 4 << 20, 1820, 35, false);
        assert_tcp_acks("acks6", 4 << 20, 2880, 40, true);
        // Seen on loopback: the sink's ingress saw the segments of GSO packets.
        let s = Sent::payload(4 << 20);
        assert_conserved("lo", s, 4_197_120, 86, 4_198_672, 84, false);
        assert_udp_exact("udp", 10_000, 10, 10_280, false);
        assert_udp_exact("udp6", 10_000, 10, 10_480, true);
    }

    #[test]
    #[should_panic(expected = "headers can only add")]
    fn below_payload_fails() {
        assert_tcp_data("x", Sent::payload(1000), 999, 1, VETH_MTU, false);
    }

    #[test]
    #[should_panic(expected = "bound")]
    fn double_counting_fails() {
        assert_tcp_data("x", Sent::payload(1 << 20), 2 << 20, 800, VETH_MTU, false);
    }

    #[test]
    #[should_panic(expected = "payload-less")]
    fn acks_with_payload_fail() {
        assert_tcp_acks("x", 1 << 20, 10_000, 10, false);
    }
}
