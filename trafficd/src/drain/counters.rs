//! Reading the counters: the kernel maps read once per drain, and their running totals turned
//! into what moved since the last drain, summed per socket and per cgroup.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use trafficd_common::{Loss, Payload, SocketProcessKey, Traffic};

use super::Drainer;
use crate::{
    kernel::{MapEntries, MovedFlows},
    tracker::Tracker,
};

/// Drains that read the overflow roll-ups after the kernel last reported a full flow map: the
/// loss is counted just before the bytes are added, so the bytes may land after the drain
/// that saw the count.
const OVERFLOW_READS: u32 = 3;
/// An overflow roll-up's entries: socket cookie or cgroup id, and its running total.
type Overflow = Vec<(u64, Traffic)>;

/// The running totals deltas are taken against, and what decides which maps are read.
#[derive(Default)]
pub(super) struct Counters {
    pub sockets: Tracker<u64, Traffic>,
    pub cgroups: Tracker<u64, Traffic>,
    pub payloads: Tracker<SocketProcessKey, Payload>,
    /// Pairs part of whose payload waited on a CPU at the last read: see `forget_payloads`.
    pub waiting_payloads: HashSet<SocketProcessKey>,
    /// Flow-map-full events seen, and drains left that read the overflow roll-ups for them.
    flow_map_full: u64,
    overflow_reads: u32,
    /// FLOW_CLAIMS when the last drain began: new flows since then wait to be read.
    pub claims_read: u64,
    /// The flows that moved in a drain, and their store slots: buffers kept between drains.
    pub moved: MovedFlows,
}

/// The maps as read at one drain, before deltas are taken.
pub(super) struct Reading {
    closed: HashSet<u64>,
    moved: MovedFlows,
    socket_overflow: Overflow,
    cgroup_overflow: Overflow,
    payloads: Vec<(SocketProcessKey, Payload)>,
    entries: MapEntries,
}

/// What moved in one interval.
pub(super) struct Counts {
    /// Sockets released, as marked before the counters were read.
    pub closed: HashSet<u64>,
    pub moved: MovedFlows,
    /// Per socket and per cgroup: their flows, plus what overflowed a full flow map.
    pub socket_deltas: Vec<(u64, Traffic)>,
    pub cgroup_deltas: Vec<(u64, Traffic)>,
    /// Payload per (socket, process), from the sock tracepoints.
    pub payload_deltas: Vec<(SocketProcessKey, Payload)>,
    /// Everything the cgroup hooks counted in the interval.
    pub counted: Traffic,
    /// How full each map was.
    pub entries: MapEntries,
}

impl Drainer {
    /// Reads every map the drain needs, in the order that loses no byte.
    pub(super) fn read_maps(&mut self) -> Reading {
        // Before the flows are read: a flow claimed after this is read now or at the next drain.
        self.counters.claims_read = self.maps.flow_claims();
        // Closed marks first: every byte a socket moved before its release is then already in
        // the counters read below.
        let closed: HashSet<u64> = self.maps.closed().into_iter().collect();
        let mut moved = std::mem::take(&mut self.counters.moved);
        self.maps.count_tcp_sockets();
        self.maps.take_flows(&mut moved);
        let (socket_overflow, cgroup_overflow) = self.read_overflow();
        let payloads = self.maps.socket_processes();
        let entries = MapEntries {
            sockets: socket_overflow.len(),
            flows: self.maps.live_flows(),
            cgroups: cgroup_overflow.len(),
            socket_processes: payloads.entries,
            closed: closed.len(),
        };
        self.counters.waiting_payloads = payloads.waiting;
        Reading {
            closed,
            moved,
            socket_overflow,
            cgroup_overflow,
            payloads: payloads.totals,
            entries,
        }
    }

    /// What moved since the last drain. The flows come summed by (socket, cgroup), a few
    /// entries however many flows.
    pub(super) fn deltas(&mut self, reading: Reading) -> Counts {
        let counters = &mut self.counters;
        let socket_overflow = counters.sockets.observe(reading.socket_overflow);
        let cgroup_overflow = counters.cgroups.observe(reading.cgroup_overflow);
        let payload_deltas = counters.payloads.observe(reading.payloads);
        let by_socket = &reading.moved.by_socket;
        let socket_deltas = roll_up(
            by_socket
                .iter()
                .map(|((cookie, _), t)| (*cookie, *t))
                .chain(socket_overflow),
        );
        let cgroup_deltas = roll_up(
            by_socket
                .iter()
                .map(|((_, cgroup), t)| (*cgroup, *t))
                .chain(cgroup_overflow),
        );
        let counted = socket_deltas
            .iter()
            .fold(Traffic::default(), |sum, (_, t)| sum.add(t));
        Counts {
            closed: reading.closed,
            moved: reading.moved,
            socket_deltas,
            cgroup_deltas,
            payload_deltas,
            counted,
            entries: reading.entries,
        }
    }

    /// The overflow roll-ups, read only while they can hold bytes: reading a hash map walks all
    /// of its buckets, which was most of an idle drain's cost, and the roll-ups are empty
    /// unless the flow map was ever full.
    fn read_overflow(&mut self) -> (Overflow, Overflow) {
        let counters = &mut self.counters;
        let full = self.maps.loss_events(Loss::FlowMapFull);
        if full != counters.flow_map_full {
            counters.flow_map_full = full;
            counters.overflow_reads = OVERFLOW_READS;
        }
        let holding = !counters.sockets.is_empty() || !counters.cgroups.is_empty();
        if counters.overflow_reads == 0 && !holding {
            return (Vec::new(), Vec::new());
        }
        counters.overflow_reads = counters.overflow_reads.saturating_sub(1);
        (self.maps.socket_overflow(), self.maps.cgroup_overflow())
    }
}

/// Sums traffic by key. Parts of one key mostly come one after the other (a socket's flows):
/// each run is summed before it is hashed.
fn roll_up<K: std::hash::Hash + Eq + Copy>(
    parts: impl Iterator<Item = (K, Traffic)>,
) -> Vec<(K, Traffic)> {
    let mut sums: HashMap<K, Traffic> = HashMap::default();
    let mut add = |key, traffic: Traffic| {
        let sum = sums.entry(key).or_default();
        *sum = sum.add(&traffic);
    };
    let mut run: Option<(K, Traffic)> = None;
    for (key, traffic) in parts {
        match &mut run {
            Some((k, sum)) if *k == key => *sum = sum.add(&traffic),
            _ => {
                if let Some((k, sum)) = run.replace((key, traffic)) {
                    add(k, sum);
                }
            }
        }
    }
    if let Some((k, sum)) = run {
        add(k, sum);
    }
    sums.into_iter().collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_sums_runs_and_scattered_parts_alike() {
        let tx = |bytes| Traffic {
            tx_bytes: bytes,
            tx_packets: 1,
            ..Traffic::default()
        };
        let parts = [(1, 10), (1, 20), (2, 5), (1, 1), (3, 7), (3, 7), (2, 100)];
        let mut sums = roll_up(parts.iter().map(|&(k, b)| (k, tx(b))));
        sums.sort_by_key(|(k, _)| *k);
        let expected = |bytes, packets| Traffic {
            tx_bytes: bytes,
            tx_packets: packets,
            ..Traffic::default()
        };
        assert_eq!(
            sums,
            vec![
                (1, expected(31, 3)),
                (2, expected(105, 2)),
                (3, expected(14, 2))
            ]
        );
        assert!(roll_up(std::iter::empty::<(u8, Traffic)>()).is_empty());
    }
}
