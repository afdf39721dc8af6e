//! How many wire bytes a known payload may show up as, and why.
//!
//! trafficd counts wire bytes: the length of each IP packet including the IP
//! and TCP/UDP headers, as the socket's packets cross the cgroup_skb hooks.
//! So for a payload the test knows, `reported >= payload` always holds, and the
//! excess is headers:
//!
//! * TCP: IP header (IPv4 20, IPv6 40) + TCP header 20 + 12 bytes of timestamp
//!   option (on by default in Linux) = 52 (IPv4) or 72 (IPv6) bytes per
//!   segment. A data segment carries at most MSS = MTU - that header. On
//!   loopback (MTU 65536) that is < 0.1% of the payload; on a veth with MTU
//!   1500 it is 52/1448 = 3.6% (IPv4) or 72/1428 = 5.0% (IPv6). GSO/GRO can only
//!   lower the count (one header for a super-packet), never raise it. A write
//!   boundary can produce one short segment per write (the generators write 64
//!   KiB chunks: +1.5 headers per 64 KiB at worst): 1% of the payload covers it.
//!   Control segments (SYN, the final ACK of the handshake, FIN, ACKs of the
//!   peer's FIN) add a few more: [`FIXED_SLACK`].
//! * UDP: IP header + UDP header 8 = exactly 28 (IPv4) or 48 (IPv6) bytes per
//!   datagram, nothing else (no handshake, no acknowledgements).

/// SYN/SYN-ACK/ACK/FIN and ACK-of-FIN segments: fewer than 10 per connection,
/// each at most 72 + 40 bytes of header and options; 2 KiB covers them twice.
pub const FIXED_SLACK: u64 = 2048;

/// MTU of `lo`.
pub const LOOPBACK_MTU: u64 = 65536;
/// MTU of the veth pairs the tests create.
pub const VETH_MTU: u64 = 1500;

/// IP + TCP header with the timestamp option: 52 (IPv4) or 72 (IPv6).
pub fn tcp_header(v6: bool) -> u64 {
    (if v6 { 40 } else { 20 }) + 20 + 12
}

/// IP + UDP header: 28 (IPv4) or 48 (IPv6).
pub fn udp_header(v6: bool) -> u64 {
    (if v6 { 40 } else { 20 }) + 8
}

/// How many full-sized data segments `payload` needs at this MTU.
pub fn tcp_segments(payload: u64, mtu: u64, v6: bool) -> u64 {
    let mss = mtu - tcp_header(v6);
    payload.div_ceil(mss)
}

/// Asserts `payload <= reported <= payload * 1.01 + per_packet_overhead *
/// packets + FIXED_SLACK` (see the module documentation for each term).
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
        "{what}: reported {reported} wire bytes < {payload} payload bytes (headers can only add)"
    );
    assert!(
        reported <= upper,
        "{what}: reported {reported} wire bytes > bound {upper} for {payload} payload bytes \
         (1% + {packets} packets x {per_packet_overhead} header bytes + {FIXED_SLACK} slack)"
    );
}

/// The upper bound [`assert_wire_bytes`] uses.
pub fn upper_bound(payload: u64, per_packet_overhead: u64, packets: u64) -> u64 {
    payload + payload / 100 + per_packet_overhead * packets + FIXED_SLACK
}

/// The data direction of a TCP transfer of `payload` bytes at `mtu`: the
/// sender's tx and the receiver's rx.
pub fn assert_tcp_data(what: &str, payload: u64, reported: u64, mtu: u64, v6: bool) {
    assert_wire_bytes(
        what,
        payload,
        reported,
        tcp_header(v6),
        tcp_segments(payload, mtu, v6),
    );
}

/// The acknowledgement direction of a TCP transfer of `payload` bytes: the
/// receiver's tx and the sender's rx. Pure ACKs (and window updates) carry no
/// payload, so it is non-zero (the handshake alone has some) and small: at most
/// one ACK per data segment plus one window update per segment the application
/// reads, each a header plus up to 12 bytes of SACK option, plus 1% and slack.
pub fn assert_tcp_acks(what: &str, payload: u64, reported: u64, mtu: u64, v6: bool) {
    let segs = tcp_segments(payload, mtu, v6);
    let upper = payload / 100 + 2 * segs * (tcp_header(v6) + 12) + FIXED_SLACK;
    assert!(
        reported > 0,
        "{what}: 0 bytes in the ACK direction (the handshake alone sends some)"
    );
    assert!(
        reported <= upper,
        "{what}: {reported} bytes in the ACK direction of a {payload}-byte transfer, more than the bound {upper}"
    );
}

/// A UDP transfer: exactly payload + 28/48 bytes per datagram.
pub fn assert_udp_exact(what: &str, payload: u64, datagrams: u64, reported: u64, v6: bool) {
    let expect = payload + datagrams * udp_header(v6);
    assert_eq!(
        reported,
        expect,
        "{what}: {payload} payload bytes in {datagrams} datagrams are exactly {expect} wire bytes \
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
                                                                    // IPv4 over veth: 1 MiB + 1% + 725 x 52 + 2048.
        assert_eq!(
            upper_bound(1 << 20, 52, 725),
            1_048_576 + 10_485 + 37_700 + 2048
        );
        assert_tcp_data("exact payload passes", 1000, 1000, VETH_MTU, false);
        assert_udp_exact("udp", 10_000, 10, 10_280, false);
        assert_udp_exact("udp6", 10_000, 10, 10_480, true);
    }

    #[test]
    #[should_panic(expected = "headers can only add")]
    fn below_payload_fails() {
        assert_tcp_data("x", 1000, 999, VETH_MTU, false);
    }
}
