//! A family's series, at most `max` of them, whatever the number of owners behind them.
//!
//! Owners (a process, a cgroup) are many and short-lived; series must be few and stable. Each
//! scrape adds what every owner moved since the last scrape to the series its identity (a
//! label set) names. An identity seen for the first time gets its own series while there is
//! room, the largest first; the rest of the traffic goes to one `other` series, so the
//! family's sum is still every byte. A series keeps its identity until every owner behind it
//! has been idle past the retention, and its counters only ever grow while it lives: an owner
//! the store forgets leaves its bytes in the series.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Arc,
    time::{Duration, Instant},
};

/// Label values naming a series, in the family's label order.
pub type Identity = Vec<(&'static str, Arc<str>)>;

/// Transmitted and received bytes of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub tx: u64,
    pub rx: u64,
}

impl Bytes {
    fn add(&mut self, other: Bytes) {
        self.tx = self.tx.wrapping_add(other.tx);
        self.rx = self.rx.wrapping_add(other.rx);
    }

    fn total(self) -> u64 {
        self.tx.saturating_add(self.rx)
    }
}

/// What the store says about one owner at a scrape.
pub struct Sighting<O> {
    pub owner: O,
    pub identity: Identity,
    /// The owner's lifetime counters.
    pub lifetime: Bytes,
    pub last_active: Instant,
}

struct Series {
    bytes: Bytes,
    last_active: Instant,
}

/// The lifetime counters last read for an owner, and the scrape that read them.
struct Seen {
    lifetime: Bytes,
    scrape: u64,
}

pub struct Bounded<O> {
    max: usize,
    retention: Duration,
    series: HashMap<Identity, Series>,
    other: Bytes,
    owners: HashMap<O, Seen>,
    scrapes: u64,
}

impl<O: Hash + Eq> Bounded<O> {
    /// At most `max` series in all, `other` included (so at least 1).
    pub fn new(max: usize, retention: Duration) -> Bounded<O> {
        Bounded {
            max: max.max(1),
            retention,
            series: HashMap::new(),
            other: Bytes::default(),
            owners: HashMap::new(),
            scrapes: 0,
        }
    }

    /// Adds what each owner moved since the last scrape; owners absent from `sightings` are
    /// forgotten (their bytes stay in their series).
    pub fn update(&mut self, now: Instant, sightings: impl IntoIterator<Item = Sighting<O>>) {
        self.scrapes += 1;
        let mut newcomers: HashMap<Identity, Series> = HashMap::new();
        for sighting in sightings {
            let delta = self.delta(sighting.owner, sighting.lifetime);
            let target = match self.series.get_mut(&sighting.identity) {
                Some(series) => series,
                // An owner without a series that moved nothing has nothing to place.
                None if delta == Bytes::default() => continue,
                None => newcomers
                    .entry(sighting.identity)
                    .or_insert_with(|| Series {
                        bytes: Bytes::default(),
                        last_active: sighting.last_active,
                    }),
            };
            target.bytes.add(delta);
            target.last_active = target.last_active.max(sighting.last_active);
        }
        let scrape = self.scrapes;
        self.owners.retain(|_, seen| seen.scrape == scrape);
        self.end_idle(now);
        self.admit(newcomers);
    }

    /// Bytes moved by `owner` since it was last seen. Counters lower than last time mean the
    /// store forgot the owner and met it again: all of it is new.
    fn delta(&mut self, owner: O, lifetime: Bytes) -> Bytes {
        let scrape = self.scrapes;
        let seen = self.owners.entry(owner).or_insert(Seen {
            lifetime: Bytes::default(),
            scrape,
        });
        let since = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
        let delta = Bytes {
            tx: since(lifetime.tx, seen.lifetime.tx),
            rx: since(lifetime.rx, seen.lifetime.rx),
        };
        *seen = Seen { lifetime, scrape };
        delta
    }

    fn end_idle(&mut self, now: Instant) {
        let retention = self.retention;
        self.series
            .retain(|_, s| now.saturating_duration_since(s.last_active) <= retention);
    }

    /// Gives new identities their own series while there is room, the largest first; the
    /// rest goes to `other`.
    fn admit(&mut self, newcomers: HashMap<Identity, Series>) {
        let mut newcomers: Vec<_> = newcomers.into_iter().collect();
        newcomers.sort_by_key(|(_, series)| std::cmp::Reverse(series.bytes.total()));
        for (identity, series) in newcomers {
            // One place is kept for `other`.
            if self.series.len() + 1 < self.max {
                self.series.insert(identity, series);
            } else {
                self.other.add(series.bytes);
            }
        }
    }

    /// The named series, in no particular order.
    pub fn named(&self) -> impl Iterator<Item = (&Identity, Bytes)> {
        self.series.iter().map(|(id, s)| (id, s.bytes))
    }

    /// What owners without a series of their own moved.
    pub fn other(&self) -> Bytes {
        self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Duration = Duration::from_secs(600);

    fn id(comm: &str) -> Identity {
        vec![("comm", Arc::from(comm))]
    }

    fn seen(pid: u32, comm: &str, tx: u64, at: Instant) -> Sighting<u32> {
        Sighting {
            owner: pid,
            identity: id(comm),
            lifetime: Bytes { tx, rx: tx / 2 },
            last_active: at,
        }
    }

    fn value(b: &Bounded<u32>, comm: &str) -> Option<u64> {
        b.named().find(|(i, _)| **i == id(comm)).map(|(_, v)| v.tx)
    }

    fn sum(b: &Bounded<u32>) -> u64 {
        b.named().map(|(_, v)| v.tx).sum::<u64>() + b.other().tx
    }

    /// Every named series and `other`, as (comm, tx), sorted.
    fn snapshot(b: &Bounded<u32>) -> Vec<(String, u64)> {
        let mut all: Vec<_> = b
            .named()
            .map(|(i, v)| (i[0].1.to_string(), v.tx))
            .chain([("[other]".to_string(), b.other().tx)])
            .collect();
        all.sort();
        all
    }

    fn assert_no_counter_went_back(before: &[(String, u64)], after: &[(String, u64)]) {
        for (name, v) in before {
            if let Some((_, w)) = after.iter().find(|(n, _)| n == name) {
                assert!(w >= v, "{name} went from {v} to {w}");
            }
        }
    }

    #[test]
    fn owners_beyond_the_bound_fold_into_other_and_the_sum_holds() {
        let t = Instant::now();
        let mut b = Bounded::new(3, RETENTION);
        b.update(
            t,
            [
                seen(1, "a", 100, t),
                seen(2, "b", 300, t),
                seen(3, "c", 200, t),
                seen(4, "d", 50, t),
            ],
        );
        // Two named (the largest), one `other`.
        assert_eq!(value(&b, "b"), Some(300));
        assert_eq!(value(&b, "c"), Some(200));
        assert_eq!(value(&b, "a"), None);
        assert_eq!(b.other().tx, 150);
        assert_eq!(sum(&b), 650);
    }

    #[test]
    fn membership_is_sticky_and_counters_never_go_back() {
        let t = Instant::now();
        let mut b = Bounded::new(3, RETENTION);
        b.update(t, [seen(1, "a", 10, t), seen(2, "b", 20, t)]);
        let first = snapshot(&b);
        // A much larger newcomer does not displace the members: it goes to `other`.
        let t1 = t + Duration::from_secs(15);
        b.update(
            t1,
            [
                seen(1, "a", 11, t1),
                seen(2, "b", 20, t),
                seen(3, "big", 10_000, t1),
            ],
        );
        let second = snapshot(&b);
        assert_no_counter_went_back(&first, &second);
        assert_eq!(value(&b, "a"), Some(11));
        assert_eq!(value(&b, "b"), Some(20));
        assert_eq!(value(&b, "big"), None);
        assert_eq!(b.other().tx, 10_000);
        // The store forgets pid 1: its bytes stay in its series.
        let t2 = t1 + Duration::from_secs(15);
        b.update(t2, [seen(2, "b", 25, t2), seen(3, "big", 10_500, t2)]);
        assert_eq!(value(&b, "a"), Some(11));
        assert_eq!(b.other().tx, 10_500);
        assert_no_counter_went_back(&second, &snapshot(&b));
        assert_eq!(sum(&b), 11 + 25 + 10_500);
    }

    #[test]
    fn an_idle_series_ends_and_its_place_goes_to_a_newcomer() {
        let t = Instant::now();
        let mut b = Bounded::new(2, RETENTION);
        b.update(t, [seen(1, "a", 10, t)]);
        b.update(t, [seen(1, "a", 10, t), seen(2, "b", 40, t)]);
        assert_eq!(value(&b, "b"), None);
        assert_eq!(b.other().tx, 40);
        // "a" idle past the retention ends; "b" moves again and is promoted, counting from
        // its promotion (what it moved before stays in `other`).
        let later = t + RETENTION + Duration::from_secs(1);
        b.update(later, [seen(2, "b", 45, later)]);
        assert_eq!(value(&b, "a"), None);
        assert_eq!(value(&b, "b"), Some(5));
        assert_eq!(b.other().tx, 40);
        // A series whose owner was just active does not end.
        let later2 = later + RETENTION;
        b.update(later2, [seen(2, "b", 45, later)]);
        assert_eq!(value(&b, "b"), Some(5));
    }

    #[test]
    fn pid_reuse_and_many_pids_merge_under_one_comm() {
        let t = Instant::now();
        let mut b = Bounded::new(10, RETENTION);
        b.update(t, [seen(7, "worker", 100, t), seen(8, "worker", 50, t)]);
        assert_eq!(value(&b, "worker"), Some(150));
        // pid 7 exits and the store forgets it; a new "worker" reuses pid 7 and starts at 0.
        b.update(t, [seen(8, "worker", 60, t)]);
        b.update(t, [seen(7, "worker", 30, t), seen(8, "worker", 60, t)]);
        assert_eq!(value(&b, "worker"), Some(190));
        // Same pid seen again with lower counters without a gap: a new owner, not a reset.
        b.update(t, [seen(7, "worker", 5, t), seen(8, "worker", 60, t)]);
        assert_eq!(value(&b, "worker"), Some(195));
        assert_eq!(b.named().count(), 1);
    }

    #[test]
    fn a_scrape_sequence_keeps_every_byte_and_the_bound() {
        let t = Instant::now();
        let mut b = Bounded::new(5, RETENTION);
        let mut truth = 0u64;
        let mut previous = snapshot(&b);
        for round in 0..20u32 {
            let at = t + Duration::from_secs(u64::from(round) * 15);
            // 8 owners alive per round, each a new pid with one of 12 names.
            let sightings: Vec<_> = (0..8)
                .map(|k| {
                    let pid = round * 8 + k;
                    seen(pid, &format!("p{}", pid % 12), 100 + u64::from(pid), at)
                })
                .collect();
            truth += sightings.iter().map(|s| s.lifetime.tx).sum::<u64>();
            b.update(at, sightings);
            assert!(b.named().count() < 5, "round {round}");
            assert_eq!(sum(&b), truth, "round {round}");
            let now = snapshot(&b);
            assert_no_counter_went_back(&previous, &now);
            previous = now;
        }
    }
}
