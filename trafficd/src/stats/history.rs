//! A dimension's history: each drain's deltas by slot, from which windows are summed.
//!
//! Each drain appends one tick holding only the groups that moved bytes. Ticks older than
//! [`FINE_SPAN`] are merged into buckets of [`BUCKET`], so the longest window is summed from a
//! few buckets rather than one tick per drain.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use trafficd_common::Traffic;

use super::packed::PackedDeltas;

/// Longest window served; older ticks are dropped.
pub(super) const LONGEST_WINDOW: Duration = Duration::from_secs(60);
/// Ticks this recent are kept one per drain: the 1 s and 10 s windows are exact.
const FINE_SPAN: Duration = Duration::from_secs(10);
/// Length of the buckets older ticks are merged into.
pub(super) const BUCKET: Duration = Duration::from_secs(10);
/// One drain's deltas, by slot: a slot number is 4 bytes where a flow key is 56, and a tick
/// holds one entry per group that moved in that drain, for a minute.
pub(super) struct Tick {
    at: Instant,
    length: Duration,
    deltas: PackedDeltas,
}

/// Ticks merged: the deltas of up to [`BUCKET`] of drains ending at `at`.
pub(super) struct Bucket {
    at: Instant,
    length: Duration,
    pub(super) deltas: PackedDeltas,
}

/// Traffic summed by slot number in a dense array, with the slots touched: adding a drain's
/// 200k deltas is 200k additions, no hashing. Taking the sums leaves it empty, its memory kept.
#[derive(Default)]
pub(super) struct SlotSums {
    sums: Vec<Traffic>,
    touched: Vec<u32>,
}

impl SlotSums {
    pub fn add(&mut self, id: u32, delta: &Traffic) {
        let i = id as usize;
        if i >= self.sums.len() {
            self.sums.resize(i + 1, Traffic::default());
        }
        if self.sums[i].is_zero() {
            self.touched.push(id);
        }
        self.sums[i] = self.sums[i].add(delta);
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Traffic)> {
        self.touched
            .iter()
            .map(|&id| (id, &self.sums[id as usize]))
            .filter(|(_, sum)| !sum.is_zero())
    }

    /// The non-zero sums, each slot once, packed; `self` is left empty.
    fn take_packed(&mut self) -> PackedDeltas {
        let mut packed = PackedDeltas::with_capacity(self.touched.len());
        for (id, sum) in self.drain() {
            packed.push(id, &sum);
        }
        packed.shrink_to_fit();
        packed
    }

    pub fn drain(&mut self) -> impl Iterator<Item = (u32, Traffic)> + '_ {
        let sums = &mut self.sums;
        self.touched
            .drain(..)
            .map(|id| (id, std::mem::take(&mut sums[id as usize])))
            .filter(|(_, sum)| !sum.is_zero())
    }
}

/// The bucket being filled.
#[derive(Default)]
pub(super) struct OpenBucket {
    at: Option<Instant>,
    length: Duration,
    pub(super) sums: SlotSums,
}

impl OpenBucket {
    fn merge(&mut self, tick: &Tick) {
        self.at = Some(tick.at);
        self.length += tick.length;
        for (id, delta) in tick.deltas.iter() {
            self.sums.add(id, &delta);
        }
    }

    /// The merged deltas as a closed bucket; `self` is empty again, its memory kept.
    fn close(&mut self) -> Option<Bucket> {
        Some(Bucket {
            at: self.at.take()?,
            length: std::mem::take(&mut self.length),
            deltas: self.sums.take_packed(),
        })
    }
}

fn start_of(at: Instant, length: Duration) -> Instant {
    at.checked_sub(length).unwrap_or(at)
}

/// The ticks of the last [`FINE_SPAN`], then the buckets older ticks were merged into.
#[derive(Default)]
pub(super) struct History {
    pub(super) ticks: VecDeque<Tick>,
    /// Older than the ticks: the bucket being filled, then the closed ones, oldest first.
    pub(super) open: OpenBucket,
    pub(super) buckets: VecDeque<Bucket>,
    /// The memory of the last tick merged, for the next.
    spare: PackedDeltas,
}

impl History {
    /// An empty tick for about `entries` entries, in the memory of the last tick merged into a
    /// bucket when there is one: a tick of 100k flows is a megabyte, and fresh pages each drain
    /// cost more than filling them.
    pub fn new_tick(&mut self, entries: usize) -> PackedDeltas {
        let mut tick = std::mem::take(&mut self.spare);
        tick.clear();
        tick.reserve(entries);
        tick
    }

    /// Appends one drain's deltas, which cover the `length` before `at`.
    pub fn push(&mut self, at: Instant, length: Duration, deltas: PackedDeltas) {
        self.ticks.push_back(Tick { at, length, deltas });
        self.age(at);
    }

    /// Merges ticks older than [`FINE_SPAN`] into buckets, and drops buckets that started
    /// before the longest window.
    fn age(&mut self, now: Instant) {
        while self
            .ticks
            .front()
            .is_some_and(|t| now.duration_since(t.at) >= FINE_SPAN)
        {
            let Some(tick) = self.ticks.pop_front() else {
                break;
            };
            if self.open.length + tick.length > BUCKET {
                if let Some(closed) = self.open.close() {
                    self.buckets.push_back(closed);
                }
            }
            self.open.merge(&tick);
            self.spare = tick.deltas;
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| now.duration_since(start_of(b.at, b.length)) > LONGEST_WINDOW)
        {
            self.buckets.pop_front();
        }
    }

    /// Adds to `sums` every slot's deltas in the last `window` before `now`, and returns the
    /// time the window really covers.
    pub fn sum_window(&self, now: Instant, window: Duration, sums: &mut SlotSums) -> Duration {
        let mut covered = Duration::ZERO;
        // A tick belongs to the window when it ended within it: a 1 s window right after a
        // drain, or half a second later, is the last complete second.
        for tick in self.ticks.iter().rev() {
            if now.duration_since(tick.at) >= window {
                break;
            }
            covered += tick.length;
            for (id, delta) in tick.deltas.iter() {
                sums.add(id, &delta);
            }
        }
        // A bucket belongs to the window when it started within it: the window then covers
        // less than asked, never more, and `covered` says how much.
        let within = |at: Instant, length| now.duration_since(start_of(at, length)) <= window;
        // The open bucket is the newest: when it is outside the window, so are the closed ones.
        if self.open.at.is_some_and(|at| within(at, self.open.length)) {
            covered += self.open.length;
            for (id, delta) in self.open.sums.iter() {
                sums.add(id, delta);
            }
            for bucket in self.buckets.iter().rev() {
                if !within(bucket.at, bucket.length) {
                    break;
                }
                covered += bucket.length;
                for (id, delta) in bucket.deltas.iter() {
                    sums.add(id, &delta);
                }
            }
        }
        covered
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
    fn slot_sums_add_by_slot_and_empty_when_taken() {
        let mut sums = SlotSums::default();
        sums.add(3, &tx(5));
        sums.add(0, &tx(1));
        sums.add(3, &tx(7));
        assert_eq!(
            sums.drain().collect::<Vec<_>>(),
            vec![(3, tx(12)), (0, tx(1))]
        );
        assert_eq!(sums.iter().count(), 0);
        sums.add(3, &tx(2));
        assert_eq!(sums.drain().collect::<Vec<_>>(), vec![(3, tx(2))]);
    }
}
