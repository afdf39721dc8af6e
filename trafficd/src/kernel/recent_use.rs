//! The payload that waits in each CPU's RECENT_USE entry, added to SOCKET_PROCESSES.
//!
//! The send and receive programs add a call's payload to the entry of their CPU that a hash of
//! the (socket, process) picks while the pair keeps it, and move it into SOCKET_PROCESSES when
//! another pair takes the entry.
//! What waits there is read here, after SOCKET_PROCESSES: an amount moved in between is then
//! missed by both reads and read at the next drain, never counted twice.

use aya::maps::{Array, IterableMap, MapData};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use trafficd_common::{Payload, RecentUse, SocketProcessKey};

use super::batch;

/// Payload per (socket, process): SOCKET_PROCESSES plus what waits on the CPUs.
pub struct PayloadRead {
    pub totals: Vec<(SocketProcessKey, Payload)>,
    /// Entries in SOCKET_PROCESSES.
    pub entries: usize,
    /// The (socket, process) pairs part of whose payload waited on a CPU. Their entries in
    /// SOCKET_PROCESSES must stay while it waits: deleted, the payload would come back as new
    /// when it is moved there.
    pub waiting: HashSet<SocketProcessKey>,
}

/// Reads every entry of every CPU twice: an entry is believed when both reads saw the same even
/// `seq` (no switch began or ended in between, so its socket, process and payload belong
/// together). An entry switching meanwhile is read at the next drain.
pub fn read_waiting(recent: &Array<MapData, RecentUse>) -> Vec<(SocketProcessKey, Payload)> {
    let first = read_all(recent);
    let second = read_all(recent);
    waiting(&first, &second)
}

/// Every entry: one batch lookup, or one lookup per entry where the kernel has no batch.
fn read_all(recent: &Array<MapData, RecentUse>) -> Vec<RecentUse> {
    batch::read_values(IterableMap::map(recent).fd()).unwrap_or_else(|_| {
        (0..recent.len())
            .map(|index| recent.get(&index, 0).unwrap_or_default())
            .collect()
    })
}

fn waiting(first: &[RecentUse], second: &[RecentUse]) -> Vec<(SocketProcessKey, Payload)> {
    first
        .iter()
        .zip(second)
        .filter(|(a, b)| a.seq == b.seq && a.seq % 2 == 0 && b.is_waiting())
        .map(|(_, b)| {
            let key = SocketProcessKey {
                cookie: b.cookie,
                tgid: b.tgid,
                _pad: 0,
            };
            (key, b.payload)
        })
        .collect()
}

/// `totals` read from SOCKET_PROCESSES with `waiting` added, pair by pair.
pub fn merge(
    mut totals: Vec<(SocketProcessKey, Payload)>,
    waiting: Vec<(SocketProcessKey, Payload)>,
) -> PayloadRead {
    let entries = totals.len();
    if waiting.is_empty() {
        return PayloadRead {
            totals,
            entries,
            waiting: HashSet::default(),
        };
    }
    // A pair may wait on several CPUs.
    let mut left: HashMap<SocketProcessKey, Payload> = HashMap::default();
    for (key, payload) in waiting {
        let sum = left.entry(key).or_default();
        *sum = sum.add(&payload);
    }
    let keys: HashSet<SocketProcessKey> = left.keys().copied().collect();
    for (key, total) in &mut totals {
        if let Some(payload) = left.remove(key) {
            *total = total.add(&payload);
        }
    }
    totals.extend(left);
    PayloadRead {
        totals,
        entries,
        waiting: keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cookie: u64, tgid: u32) -> SocketProcessKey {
        SocketProcessKey {
            cookie,
            tgid,
            _pad: 0,
        }
    }

    fn sent(bytes: u64) -> Payload {
        Payload {
            sent_bytes: bytes,
            sent_calls: 1,
            ..Payload::default()
        }
    }

    fn entry(seq: u32, cookie: u64, tgid: u32, payload: Payload) -> RecentUse {
        RecentUse {
            seq,
            cookie,
            tgid,
            seal: 0,
            checked_in: 0,
            payload,
        }
    }

    #[test]
    fn only_entries_steady_across_both_reads_are_believed() {
        let first = [
            entry(2, 7, 100, sent(10)),
            entry(3, 8, 200, Payload::default()),
            entry(4, 9, 300, sent(30)),
            entry(6, 0, 0, Payload::default()),
        ];
        let second = [
            // The same tenure, with more sent since the first read: the second read counts.
            entry(2, 7, 100, sent(15)),
            // A switch was under way at the first read.
            entry(4, 8, 200, sent(20)),
            // Another switch happened in between.
            entry(6, 10, 400, sent(40)),
            // Nothing waiting.
            entry(6, 0, 0, Payload::default()),
        ];
        assert_eq!(waiting(&first, &second), vec![(key(7, 100), sent(15))]);
    }

    #[test]
    fn waiting_payload_is_added_to_its_pair_once() {
        let totals = vec![(key(7, 100), sent(1000)), (key(8, 200), sent(5))];
        let read = merge(
            totals,
            vec![
                (key(7, 100), sent(10)),
                (key(7, 100), sent(20)),
                (key(9, 300), sent(3)),
            ],
        );
        assert_eq!(read.entries, 2);
        let mut totals = read.totals;
        totals.sort_by_key(|(k, _)| k.cookie);
        let mut both = sent(1030);
        both.sent_calls = 3;
        assert_eq!(
            totals,
            vec![
                (key(7, 100), both),
                (key(8, 200), sent(5)),
                (key(9, 300), sent(3)),
            ]
        );
        assert_eq!(read.waiting, HashSet::from_iter([key(7, 100), key(9, 300)]));
    }
}
