//! Splitting a socket's wire bytes between the processes that used it.
//!
//! The cgroup hooks count wire bytes per socket but cannot tell which process a packet belongs
//! to (a TCP segment may carry bytes from two writers, ACKs are sent from softirq). The sock
//! tracepoints count payload per (socket, process) in process context. Each interval, a socket's
//! transmitted wire bytes are split in proportion to the payload each process sent, its received
//! wire bytes in proportion to what each process received. A socket used by one process gives
//! it all of its bytes; with no payload in the interval (retransmits, pure ACKs, FIN) the bytes
//! go to the socket's owner, found by [`owners`].

pub mod owners;

use serde::{Deserialize, Serialize};
use trafficd_common::{Payload, Traffic};

/// Why bytes have no process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unattributed {
    /// Packets without a socket, or on a kernel control socket (TCP resets, ICMP errors).
    NoSocket,
    /// A socket no process was seen using and none in /proc holds (kernel sockets, sockets
    /// closed before the daemon looked).
    OwnerUnknown,
}

impl Unattributed {
    pub fn label(self) -> &'static str {
        match self {
            Unattributed::NoSocket => "no-socket",
            Unattributed::OwnerUnknown => "owner-unknown",
        }
    }
}

/// Who gets a share of a socket's bytes: a process by tgid, or a reason why nobody does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Claimant {
    Process(u32),
    Unattributed(Unattributed),
}

/// Splits `wire` between the processes in `payloads` (tgid, payload moved in this interval).
/// `owner` takes what no payload explains. Returns one entry per claimant; shares add up to
/// `wire` exactly.
pub fn split(
    cookie: u64,
    wire: &Traffic,
    payloads: &[(u32, Payload)],
    owner: Option<u32>,
) -> Vec<(Claimant, Traffic)> {
    let fallback = match (cookie, owner) {
        (0, _) => Claimant::Unattributed(Unattributed::NoSocket),
        (_, Some(tgid)) => Claimant::Process(tgid),
        (_, None) => Claimant::Unattributed(Unattributed::OwnerUnknown),
    };
    let sent: Vec<u64> = payloads.iter().map(|(_, p)| p.sent_bytes).collect();
    let received: Vec<u64> = payloads.iter().map(|(_, p)| p.received_bytes).collect();
    // Transmitted bytes follow senders; a receive-only socket's ACKs follow its receivers.
    let transmitted = Direction {
        weights: first_nonzero(&sent, &received),
        bytes: wire.tx_bytes,
        packets: wire.tx_packets,
        traffic: |tx_bytes, tx_packets| Traffic {
            tx_bytes,
            tx_packets,
            ..Traffic::default()
        },
    };
    let incoming = Direction {
        weights: first_nonzero(&received, &sent),
        bytes: wire.rx_bytes,
        packets: wire.rx_packets,
        traffic: |rx_bytes, rx_packets| Traffic {
            rx_bytes,
            rx_packets,
            ..Traffic::default()
        },
    };
    let mut out: Vec<(Claimant, Traffic)> = Vec::with_capacity(payloads.len() + 1);
    for direction in [transmitted, incoming] {
        for (claimant, part) in direction.shares(payloads, fallback) {
            give(&mut out, claimant, part);
        }
    }
    out
}

/// One direction of a socket's wire bytes, and the payload weights that split it.
struct Direction<'a> {
    /// Per process of the payloads, its weight; `None` when no process moved payload.
    weights: Option<&'a [u64]>,
    bytes: u64,
    packets: u64,
    /// The traffic of this direction for (bytes, packets).
    traffic: fn(u64, u64) -> Traffic,
}

impl Direction<'_> {
    /// Each process's share, in the order of `payloads`, or everything to `fallback`.
    fn shares(&self, payloads: &[(u32, Payload)], fallback: Claimant) -> Vec<(Claimant, Traffic)> {
        let Some(weights) = self.weights else {
            return vec![(fallback, (self.traffic)(self.bytes, self.packets))];
        };
        let bytes = shares(self.bytes, weights);
        let packets = shares(self.packets, weights);
        payloads
            .iter()
            .enumerate()
            .map(|(i, (tgid, _))| {
                (
                    Claimant::Process(*tgid),
                    (self.traffic)(bytes[i], packets[i]),
                )
            })
            .collect()
    }
}

/// Adds `part` to `claimant`'s entry of `out`, keeping the order claimants first appear in.
fn give(out: &mut Vec<(Claimant, Traffic)>, claimant: Claimant, part: Traffic) {
    if part.is_zero() {
        return;
    }
    match out.iter_mut().find(|(c, _)| *c == claimant) {
        Some((_, t)) => *t = t.add(&part),
        None => out.push((claimant, part)),
    }
}

/// The claimant that moved the most payload, for labelling a socket's flows.
pub fn main_claimant(cookie: u64, payloads: &[(u32, Payload)], owner: Option<u32>) -> Claimant {
    let busiest = payloads
        .iter()
        .max_by_key(|(_, p)| p.sent_bytes.saturating_add(p.received_bytes))
        .filter(|(_, p)| p.sent_bytes > 0 || p.received_bytes > 0)
        .map(|(tgid, _)| *tgid);
    match (cookie, busiest.or(owner)) {
        (0, _) => Claimant::Unattributed(Unattributed::NoSocket),
        (_, Some(tgid)) => Claimant::Process(tgid),
        (_, None) => Claimant::Unattributed(Unattributed::OwnerUnknown),
    }
}

fn first_nonzero<'a>(preferred: &'a [u64], other: &'a [u64]) -> Option<&'a [u64]> {
    [preferred, other]
        .into_iter()
        .find(|weights| weights.iter().any(|&w| w > 0))
}

/// `total` split in proportion to `weights` (not all zero), by largest remainder, so the parts
/// add up to `total` exactly.
fn shares(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut parts: Vec<u64> = weights
        .iter()
        .map(|&w| (u128::from(total) * u128::from(w) / sum) as u64)
        .collect();
    let mut left = total - parts.iter().sum::<u64>();
    // Hand the rounding remainder out to the heaviest weights first; at most len() - 1 bytes.
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weights[i]));
    for i in order {
        if left == 0 {
            break;
        }
        if weights[i] > 0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(bytes: u64) -> Payload {
        Payload {
            sent_bytes: bytes,
            sent_calls: 1,
            ..Payload::default()
        }
    }

    fn wire(tx: u64, rx: u64) -> Traffic {
        Traffic {
            tx_bytes: tx,
            tx_packets: 10,
            rx_bytes: rx,
            rx_packets: 5,
        }
    }

    fn total(parts: &[(Claimant, Traffic)]) -> Traffic {
        parts
            .iter()
            .fold(Traffic::default(), |acc, (_, t)| acc.add(t))
    }

    #[test]
    fn single_process_gets_everything() {
        let parts = split(7, &wire(1000, 200), &[(42, sent(900))], Some(42));
        assert_eq!(parts, vec![(Claimant::Process(42), wire(1000, 200))]);
    }

    #[test]
    fn shared_socket_is_split_by_payload() {
        let wire = Traffic {
            tx_bytes: 3000,
            tx_packets: 10,
            ..Traffic::default()
        };
        let parts = split(7, &wire, &[(1, sent(1000)), (2, sent(2000))], Some(2));
        assert_eq!(
            parts[0],
            (
                Claimant::Process(1),
                Traffic {
                    tx_bytes: 1000,
                    tx_packets: 3,
                    ..Traffic::default()
                }
            )
        );
        assert_eq!(parts[1].1.tx_bytes, 2000);
        assert_eq!(total(&parts).tx_packets, 10);
    }

    #[test]
    fn rounding_never_loses_a_byte() {
        let parts = split(
            7,
            &wire(10, 10),
            &[(1, sent(1)), (2, sent(1)), (3, sent(1))],
            None,
        );
        assert_eq!(total(&parts), wire(10, 10));
    }

    #[test]
    fn receive_only_socket_acks_follow_the_receiver() {
        let payload = Payload {
            received_bytes: 5000,
            received_calls: 2,
            ..Payload::default()
        };
        let parts = split(7, &wire(300, 5200), &[(9, payload)], None);
        assert_eq!(parts, vec![(Claimant::Process(9), wire(300, 5200))]);
    }

    #[test]
    fn no_payload_goes_to_owner_or_a_reason() {
        assert_eq!(
            split(7, &wire(60, 0), &[], Some(5))[0].0,
            Claimant::Process(5)
        );
        assert_eq!(
            split(7, &wire(60, 0), &[], None)[0].0,
            Claimant::Unattributed(Unattributed::OwnerUnknown)
        );
        assert_eq!(
            split(0, &wire(60, 0), &[], Some(5))[0].0,
            Claimant::Unattributed(Unattributed::NoSocket)
        );
    }

    #[test]
    fn shares_add_up() {
        for total in [0u64, 1, 7, 1_000_003] {
            let parts = shares(total, &[3, 0, 5, 11]);
            assert_eq!(parts.iter().sum::<u64>(), total);
            assert_eq!(parts[1], 0);
        }
    }
}
