//! Turning monotonic kernel counters into per-interval deltas.
//!
//! The kernel only ever adds; the daemon remembers what it last read per key ("already read"
//! state) and reports the difference. Only the daemon deletes map entries, and it forgets a key
//! here when it does; a key missing from one read (a lookup that raced) keeps its state, so its
//! bytes are never counted twice.

use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;

use trafficd_common::{Payload, Traffic};

pub trait Counter: Copy + Default + PartialEq {
    fn since(&self, earlier: &Self) -> Self;
    fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl Counter for Traffic {
    fn since(&self, earlier: &Self) -> Self {
        Traffic::since(self, earlier)
    }
}

impl Counter for Payload {
    fn since(&self, earlier: &Self) -> Self {
        Payload::since(self, earlier)
    }
}

struct Seen<V> {
    value: V,
    /// Consecutive drains without a change.
    idle: u32,
}

pub struct Tracker<K, V> {
    seen: HashMap<K, Seen<V>>,
}

impl<K, V> Default for Tracker<K, V> {
    fn default() -> Self {
        Tracker {
            seen: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq + Copy, V: Counter> Tracker<K, V> {
    /// Takes a full read of a map and returns the keys that moved, with how much.
    pub fn observe(&mut self, current: Vec<(K, V)>) -> Vec<(K, V)> {
        for seen in self.seen.values_mut() {
            seen.idle += 1;
        }
        let mut deltas = Vec::new();
        for (key, value) in current {
            let seen = self.seen.entry(key).or_insert(Seen {
                value: V::default(),
                idle: 0,
            });
            let delta = value.since(&seen.value);
            if delta.is_zero() {
                continue;
            }
            seen.value = value;
            seen.idle = 0;
            deltas.push((key, delta));
        }
        deltas
    }

    /// Drains in a row `key` did not move; `None` if it is not in the map.
    pub fn idle(&self, key: &K) -> Option<u32> {
        self.seen.get(key).map(|s| s.idle)
    }

    pub fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// Keys idle for at least `drains`.
    pub fn idle_for(&self, drains: u32) -> Vec<K> {
        self.seen
            .iter()
            .filter(|(_, s)| s.idle >= drains)
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.seen.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(bytes: u64) -> Traffic {
        Traffic {
            tx_bytes: bytes,
            ..Traffic::default()
        }
    }

    #[test]
    fn reports_each_byte_once() {
        let mut t = Tracker::default();
        assert_eq!(t.observe(vec![(1u64, tx(100))]), vec![(1, tx(100))]);
        assert_eq!(t.observe(vec![(1u64, tx(150))]), vec![(1, tx(50))]);
        assert_eq!(t.observe(vec![(1u64, tx(150))]), vec![]);
        assert_eq!(t.idle(&1), Some(1));
    }

    #[test]
    fn a_forgotten_key_starts_from_zero() {
        let mut t = Tracker::default();
        t.observe(vec![(1u64, tx(100))]);
        t.forget(&1);
        assert_eq!(t.idle(&1), None);
        assert_eq!(t.observe(vec![(1u64, tx(7))]), vec![(1, tx(7))]);
    }

    #[test]
    fn a_key_missing_from_one_read_is_not_counted_twice() {
        let mut t = Tracker::default();
        t.observe(vec![(1u64, tx(100))]);
        t.observe(vec![]);
        assert_eq!(t.observe(vec![(1u64, tx(120))]), vec![(1, tx(20))]);
    }
}
