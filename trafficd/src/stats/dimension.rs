//! Lifetime totals and sliding windows for one way of grouping traffic (per process, per
//! cgroup, per flow, per remote address).
//!
//! Each drain appends one tick holding only the groups that moved bytes, so memory follows
//! activity rather than the number of groups ever seen. A window is the sum of the ticks that
//! end inside it. Older ticks are merged into buckets (see `history`): a group
//! busy for a whole minute then takes 10 tick entries and at most 6 bucket entries instead of 60,
//! each packed in a few bytes (see `packed`), and the 60 s window is measured at 10 s
//! granularity: it covers between 50 and 60 s, and says so.

use std::{
    borrow::Borrow,
    hash::{BuildHasher, Hash},
    time::{Duration, Instant},
};

use hashbrown::{hash_table::Entry as TableEntry, HashTable};
use rustc_hash::FxBuildHasher;

use trafficd_common::Traffic;

use super::{
    history::{History, SlotSums, BUCKET, LONGEST_WINDOW},
    packed::PackedDeltas,
};

/// A hint for [`Dimension::record_hinted`] that names no slot.
pub const NO_HINT: u32 = u32::MAX;

/// How far a slot hint is trusted.
#[derive(Clone, Copy)]
enum Hints {
    /// Any taken slot is believed: the key is not even asked for.
    Believed,
    /// Believed only when the slot holds the delta's key, so hints outlive freed slots.
    Checked,
}

/// Shortest retention: no tick or bucket may refer to a freed slot.
const MIN_RETENTION: Duration = LONGEST_WINDOW.saturating_add(BUCKET);

#[derive(Clone, Debug)]
pub struct Entry<M> {
    pub lifetime: Traffic,
    pub last_active: Instant,
    pub meta: M,
}

/// A group [`Dimension::expire`] forgot, and the slot it had.
pub struct Expired<K, M> {
    pub id: u32,
    pub key: K,
    pub entry: Entry<M>,
}

struct Slot<K, M> {
    key: K,
    entry: Entry<M>,
}

/// A group in the id table: its slot, and its key's hash. With the hash at hand, growing the
/// table and passing other groups on a probe read no key: each read was a cache miss into the
/// slots, and growing the table while 100k flows appeared was a quarter of that drain.
#[derive(Clone, Copy)]
struct Id {
    slot: u32,
    hash: u32,
}

pub struct Dimension<K, M> {
    /// Slot of each group, found by the key the slot holds: the table stores slot numbers and
    /// hashes, not a second copy of every key (56 bytes for a flow).
    ids: HashTable<Id>,
    slots: Vec<Option<Slot<K, M>>>,
    /// Slots of expired groups, for reuse. A slot is freed only when no tick refers to it.
    free: Vec<u32>,
    /// Each drain's deltas by slot, for the windows.
    history: History,
}

impl<K, M> Default for Dimension<K, M> {
    fn default() -> Self {
        Dimension {
            ids: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            history: History::default(),
        }
    }
}

/// Traffic of one group in a window, and the length of time the window really covers (shorter
/// than asked right after start).
pub struct Windowed<'a, K, M> {
    pub key: &'a K,
    pub window: Traffic,
    pub lifetime: Traffic,
    pub meta: &'a M,
}

impl<K: Hash + Eq + Clone, M: Clone + PartialEq> Dimension<K, M> {
    /// Adds one drain's deltas, which cover the `length` before `at`.
    pub fn record(&mut self, at: Instant, length: Duration, deltas: Vec<(K, Traffic, M)>) {
        let mut tick = self.history.new_tick(deltas.len());
        for (key, delta, meta) in deltas {
            let id = self.slot_of(NO_HINT, Hints::Believed, || key, &meta, at);
            self.add(id, delta, meta, at, &mut tick);
        }
        self.history.push(at, length, tick);
    }

    /// [`record`](Self::record) for many groups seen before. `hints` has an entry per delta:
    /// `hints[i]` is the slot group `i` was given last time ([`NO_HINT`] when unknown), updated
    /// in place, and `key_of(i)` its
    /// key, asked for only when the hint names no slot: at 100k flows hashing and comparing
    /// keys was a third of the drain, and reading them a cache miss each. Hints are believed:
    /// the caller must drop a hint when its group may have changed, and when
    /// [`expire`](Self::expire) frees its slot. The groups' descriptions may be borrowed: 100k
    /// flows share a few sockets' descriptions, and a clone each would be 100k reference
    /// counts touched for nothing.
    pub fn record_hinted(
        &mut self,
        at: Instant,
        length: Duration,
        deltas: impl IntoIterator<Item = (Traffic, impl Borrow<M>)>,
        hints: &mut [u32],
        key_of: impl Fn(usize) -> K,
    ) {
        // Room for every group without a hint at once: when 100k flows appear in one drain,
        // growing the table step by step rehashed it several times, each a cache miss per key.
        self.reserve(hints.iter().filter(|&&hint| hint == NO_HINT).count());
        let key_of = &key_of;
        // One hint per delta is the contract: deltas past the last hint were never recorded,
        // and are not looked up by key here.
        let deltas = deltas
            .into_iter()
            .take(hints.len())
            .enumerate()
            .map(|(i, (delta, meta))| (move || key_of(i), delta, meta));
        let room = hints.len();
        self.record_with_hints(at, length, room, deltas, hints, Hints::Believed);
    }

    /// [`record`](Self::record) with a hint per delta, as in
    /// [`record_hinted`](Self::record_hinted), but checked: a hint is believed only when its
    /// slot holds the delta's key, so the caller need not drop hints when
    /// [`expire`](Self::expire) frees slots. The check reads the slot the add then writes;
    /// the hash and the id table's probe, a cache miss each at 100k groups, are saved.
    /// `deltas` is emptied, its room kept for the caller's next drain.
    pub fn record_checked(
        &mut self,
        at: Instant,
        length: Duration,
        deltas: &mut Vec<(K, Traffic, M)>,
        hints: &mut [u32],
    ) {
        let room = deltas.len();
        let deltas = deltas
            .drain(..)
            .map(|(key, delta, meta)| (move || key, delta, meta));
        self.record_with_hints(at, length, room, deltas, hints, Hints::Checked);
    }

    /// The loop of [`record_hinted`](Self::record_hinted) and
    /// [`record_checked`](Self::record_checked): delta `i` starts from `hints[i]`, or from no
    /// hint when `hints` is shorter, and leaves its slot there. `room` is the tick's expected
    /// number of entries.
    fn record_with_hints<F: FnOnce() -> K, B: Borrow<M>>(
        &mut self,
        at: Instant,
        length: Duration,
        room: usize,
        deltas: impl Iterator<Item = (F, Traffic, B)>,
        hints: &mut [u32],
        trust: Hints,
    ) {
        let mut tick = self.history.new_tick(room);
        for (i, (key, delta, meta)) in deltas.enumerate() {
            let hint = hints.get(i).copied().unwrap_or(NO_HINT);
            let id = self.slot_of(hint, trust, key, meta.borrow(), at);
            if let Some(kept) = hints.get_mut(i) {
                *kept = id;
            }
            self.add(id, delta, meta, at, &mut tick);
        }
        self.history.push(at, length, tick);
    }

    /// Gives the group in slot `hint` the description `meta`, if that slot holds `key`: what
    /// was learnt about a group after its last bytes were recorded.
    pub fn describe_checked(&mut self, hint: u32, key: &K, meta: &M) {
        if let Some(Some(slot)) = self.slots.get_mut(hint as usize) {
            if slot.key == *key && slot.entry.meta != *meta {
                slot.entry.meta = meta.clone();
            }
        }
    }

    /// [`describe_checked`](Self::describe_checked) for a group known by its key alone; a
    /// group the dimension does not hold is left alone.
    pub fn describe(&mut self, key: &K, meta: &M) {
        let hash = hash_of(key);
        let slots = &self.slots;
        let found = self
            .ids
            .find(widen(hash), |id| {
                id.hash == hash && key_of(slots, id.slot) == key
            })
            .map(|id| id.slot);
        if let Some(slot) = found {
            self.describe_checked(slot, key, meta);
        }
    }

    /// The slot of a group: `hint` when it names a taken slot (one holding `key()`, when
    /// hints are [checked](Hints::Checked)), else the slot of `key()`, taken for it when new,
    /// described by `meta`. The slot stays the group's until [`expire`](Self::expire) frees it.
    fn slot_of(
        &mut self,
        hint: u32,
        trust: Hints,
        key: impl FnOnce() -> K,
        meta: &M,
        at: Instant,
    ) -> u32 {
        let key = match (self.slots.get(hint as usize), trust) {
            (Some(Some(_)), Hints::Believed) => return hint,
            (Some(Some(slot)), Hints::Checked) => {
                let key = key();
                if slot.key == key {
                    return hint;
                }
                key
            }
            _ => key(),
        };
        let hash = hash_of(&key);
        let Self {
            ids, slots, free, ..
        } = self;
        // One probe, found or not: a new group goes where the search ended. When 100k flows
        // appear at once, each probe is a cache miss.
        let place = match ids.entry(
            widen(hash),
            |id| id.hash == hash && key_of(slots, id.slot) == &key,
            |id| widen(id.hash),
        ) {
            TableEntry::Occupied(found) => return found.get().slot,
            TableEntry::Vacant(place) => place,
        };
        let slot = take_slot(slots, free, key, meta.clone(), at);
        place.insert(Id { slot, hash });
        slot
    }

    /// Room for `groups` new groups without growing.
    fn reserve(&mut self, groups: usize) {
        self.ids.reserve(groups, |id| widen(id.hash));
        reserve_slots(&mut self.slots, groups.saturating_sub(self.free.len()));
    }

    fn add(
        &mut self,
        id: u32,
        delta: Traffic,
        meta: impl Borrow<M>,
        at: Instant,
        tick: &mut PackedDeltas,
    ) {
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let entry = &mut slot.entry;
        entry.lifetime = entry.lifetime.add(&delta);
        entry.last_active = at;
        // The latest word on who a group is wins (a process's cmdline once /proc was read).
        if entry.meta != *meta.borrow() {
            entry.meta = meta.borrow().clone();
        }
        tick.push(id, &delta);
    }

    /// Every group's traffic in the last `window` before `now`, with the time really covered.
    #[cfg(test)]
    pub fn window(&self, now: Instant, window: Duration) -> (Vec<Windowed<'_, K, M>>, Duration) {
        let mut items = Vec::new();
        let covered = self.window_each(now, window, |item| items.push(item));
        (items, covered)
    }

    /// Hands every group's traffic in the last `window` before `now` to `each`, one group at a
    /// time, and returns the time the window really covers. No list of all groups is made: at
    /// 100k flows it was 8 MB for a query that wants the top 10.
    pub fn window_each<'a>(
        &'a self,
        now: Instant,
        window: Duration,
        mut each: impl FnMut(Windowed<'a, K, M>),
    ) -> Duration {
        let mut sums = SlotSums::default();
        let covered = self.history.sum_window(now, window, &mut sums);
        for (id, window) in sums.drain() {
            if let Some(slot) = self.slots.get(id as usize).and_then(Option::as_ref) {
                each(Windowed {
                    key: &slot.key,
                    window,
                    lifetime: slot.entry.lifetime,
                    meta: &slot.entry.meta,
                });
            }
        }
        covered
    }

    /// Rewrites groups' descriptions in place: a name learnt after a group's bytes were
    /// recorded reaches groups that have gone quiet too.
    pub fn update_meta(&mut self, mut f: impl FnMut(&mut M)) {
        for slot in self.slots.iter_mut().flatten() {
            f(&mut slot.entry.meta);
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&K, &Entry<M>)> {
        self.slots.iter().flatten().map(|s| (&s.key, &s.entry))
    }

    /// Forgets groups idle for longer than `retention` (at least the longest window and a
    /// bucket, so that no tick or bucket still refers to a freed slot). Their metrics series end.
    pub fn expire(&mut self, now: Instant, retention: Duration) -> Vec<Expired<K, M>> {
        let retention = retention.max(MIN_RETENTION);
        let mut gone = Vec::new();
        // One comparison per group: 200k subtractions of instants were a tenth of the CPU.
        let Some(cutoff) = now.checked_sub(retention) else {
            return gone;
        };
        for (id, place) in self.slots.iter_mut().enumerate() {
            let idle = place.as_ref().is_some_and(|s| s.entry.last_active < cutoff);
            if idle {
                if let Some(slot) = place.take() {
                    if let Ok(entry) = self
                        .ids
                        .find_entry(widen(hash_of(&slot.key)), |other| other.slot == id as u32)
                    {
                        entry.remove();
                    }
                    self.free.push(id as u32);
                    gone.push(Expired {
                        id: id as u32,
                        key: slot.key,
                        entry: slot.entry,
                    });
                }
            }
        }
        gone
    }
}

/// A slot for a new group, a freed one when there is one. The group starts with its
/// description: a default one replaced at once was an allocation, a comparison and a free per
/// new group (a third of the drain in which 100k flows appear).
fn take_slot<K, M>(
    slots: &mut Vec<Option<Slot<K, M>>>,
    free: &mut Vec<u32>,
    key: K,
    meta: M,
    at: Instant,
) -> u32 {
    let slot = Slot {
        key,
        entry: Entry {
            lifetime: Traffic::default(),
            last_active: at,
            meta,
        },
    };
    match free.pop() {
        Some(id) => {
            slots[id as usize] = Some(slot);
            id
        }
        None => {
            reserve_slots(slots, 1);
            slots.push(Some(slot));
            (slots.len() - 1) as u32
        }
    }
}

/// Room for `wanted` more slots.
fn reserve_slots<T>(slots: &mut Vec<T>, wanted: usize) {
    if slots.capacity() - slots.len() < wanted {
        // Grown by at least an eighth rather than doubled: at 200k flows a doubling leaves tens
        // of megabytes unused. Only the room about to be written is faulted in at once.
        slots.reserve_exact(wanted.max(slots.len() / 8).max(64));
        crate::fresh_memory::populate(slots, wanted);
    }
}

/// A key's hash, folded to the 32 bits the id table keeps.
fn hash_of<K: Hash>(key: &K) -> u32 {
    let hash = FxBuildHasher.hash_one(key);
    (hash ^ (hash >> 32)) as u32
}

/// The table's 64-bit hash of a kept 32-bit one. The table picks a bucket from the low bits
/// and a tag from the top 7: both come from the kept bits, independent while the table has
/// fewer than 2^25 buckets.
fn widen(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

/// The key in slot `id`, which the table only refers to while the slot is taken.
fn key_of<K, M>(slots: &[Option<Slot<K, M>>], id: u32) -> &K {
    match slots.get(id as usize) {
        Some(Some(slot)) => &slot.key,
        _ => unreachable!("the id table refers to free slot {id}"),
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

    /// The bytes `key` sent in its lifetime, if the dimension holds it.
    fn lifetime(d: &Dimension<&str, ()>, key: &str) -> Option<u64> {
        d.entries()
            .find(|(k, _)| **k == key)
            .map(|(_, e)| e.lifetime.tx_bytes)
    }

    fn window_of(d: &Dimension<&'static str, ()>, now: Instant, secs: u64) -> (u64, Duration) {
        let (items, covered) = d.window(now, Duration::from_secs(secs));
        (items.iter().map(|w| w.window.tx_bytes).sum(), covered)
    }

    /// Ticks of one second from `start + 1 s` to `start + n s`, group "a" moving `i` bytes in
    /// the i-th.
    fn one_tick_a_second(start: Instant, n: u64) -> Dimension<&'static str, ()> {
        let second = Duration::from_secs(1);
        let mut d = Dimension::default();
        for i in 1..=n {
            d.record(start + second * i as u32, second, vec![("a", tx(i), ())]);
        }
        d
    }

    #[test]
    fn windows_sum_the_ticks_inside_them() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let d = one_tick_a_second(start, 70);
        let now = start + second * 70;
        assert_eq!(window_of(&d, now, 1), (70, second));
        assert_eq!(window_of(&d, now, 10), ((61..=70u64).sum(), second * 10));
        assert_eq!(window_of(&d, now, 60), ((11..=70u64).sum(), second * 60));
        let lifetime = d.entries().next().unwrap().1.lifetime.tx_bytes;
        assert_eq!(lifetime, (1..=70u64).sum::<u64>());
    }

    #[test]
    fn a_window_between_drains_holds_the_last_complete_ticks() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let d = one_tick_a_second(start, 20);
        let between = start + second * 20 + Duration::from_millis(700);
        assert_eq!(window_of(&d, between, 1), (20, second));
        assert_eq!(
            window_of(&d, between, 10),
            ((11..=20u64).sum(), second * 10)
        );
    }

    #[test]
    fn window_is_shorter_right_after_start() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut d = Dimension::default();
        d.record(start + second, second, vec![("a", tx(5), ())]);
        d.record(start + second * 2, second, vec![("b", tx(7), ())]);
        assert_eq!(window_of(&d, start + second * 2, 10), (12, second * 2));
    }

    #[test]
    fn idle_groups_expire() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let second = Duration::from_secs(1);
        let mut d = Dimension::default();
        d.record(at(0), second, vec![("a", tx(1), ())]);
        d.record(at(90), second, vec![("b", tx(1), ())]);
        // Retention is at least the longest window and a bucket: 20 s is taken as 70 s.
        assert!(d.expire(at(50), Duration::from_secs(20)).is_empty());
        let gone = d.expire(at(100), Duration::from_secs(80));
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].key, gone[0].entry.lifetime), ("a", tx(1)));
        assert_eq!(d.entries().count(), 1);
        // The freed slot is reused by the next new group, which starts from zero.
        d.record(at(101), second, vec![("c", tx(5), ())]);
        let (items, _) = d.window(at(101), second);
        assert_eq!(items.len(), 1);
        assert_eq!(*items[0].key, "c");
        assert_eq!(items[0].lifetime.tx_bytes, 5);
        assert_eq!(d.slots.len(), 2);
    }

    #[test]
    fn hints_name_slots_until_expiry_frees_them() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let second = Duration::from_secs(1);
        let mut d = Dimension::default();
        let keys = ["a", "b"];
        let mut hints = [NO_HINT, NO_HINT];
        let moved = |a, b| [(tx(a), ()), (tx(b), ())];
        d.record_hinted(at(1), second, moved(1, 2), &mut hints, |i| keys[i]);
        assert_eq!(hints, [0, 1]);
        // Right hints: the keys are not even asked for.
        let no_key = |i| -> &str { panic!("key {i} asked for despite its hint") };
        d.record_hinted(at(2), second, moved(10, 20), &mut hints, no_key);
        assert_eq!(hints, [0, 1]);
        // A hint naming no taken slot is no hint: the key is looked up.
        d.record_hinted(at(3), second, [(tx(100), ())], &mut [7], |_| "a");
        assert_eq!(lifetime(&d, "a"), Some(111));
        assert_eq!(lifetime(&d, "b"), Some(22));
        // b expires; expiry names its slot, which the next new group takes.
        d.record(at(80), second, vec![("a", tx(1), ())]);
        let gone = d.expire(at(80), Duration::from_secs(70));
        assert_eq!((gone.len(), gone[0].id, gone[0].key), (1, 1, "b"));
        let mut fresh = [NO_HINT];
        d.record_hinted(at(81), second, [(tx(5), ())], &mut fresh, |_| "c");
        assert_eq!(fresh, [1]);
        assert_eq!(lifetime(&d, "c"), Some(5));
        assert_eq!(d.slots.len(), 2);
    }

    /// A checked hint whose slot expiry freed and a new group took is not believed: the bytes
    /// go to the hinted group's own (new) slot, not to the one now in its old slot.
    #[test]
    fn checked_hints_survive_a_slot_taken_by_another_group() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let second = Duration::from_secs(1);
        let mut d = Dimension::default();
        let mut hints = vec![NO_HINT, NO_HINT];
        d.record_checked(
            at(1),
            second,
            &mut vec![("a", tx(1), ()), ("b", tx(2), ())],
            &mut hints,
        );
        assert_eq!(hints, [0, 1]);
        let mut b_hint = vec![hints[1]];
        d.record(at(80), second, vec![("a", tx(1), ())]);
        d.expire(at(80), Duration::from_secs(70));
        d.record(at(81), second, vec![("c", tx(5), ())]);
        d.record_checked(at(82), second, &mut vec![("b", tx(7), ())], &mut b_hint);
        assert_ne!(b_hint, [1], "slot 1 is c's now");
        assert_eq!((lifetime(&d, "b"), lifetime(&d, "c")), (Some(7), Some(5)));
        // A late description reaches the group only through a slot that holds its key.
        let mut d2: Dimension<&str, u8> = Dimension::default();
        let mut h = vec![NO_HINT];
        d2.record_checked(at(1), second, &mut vec![("a", tx(1), 0)], &mut h);
        d2.describe_checked(h[0], &"b", &7);
        d2.describe_checked(h[0], &"a", &9);
        let metas: Vec<u8> = d2.entries().map(|(_, e)| e.meta).collect();
        assert_eq!(metas, [9]);
        d2.describe(&"a", &4);
        d2.describe(&"z", &5);
        let metas: Vec<u8> = d2.entries().map(|(_, e)| e.meta).collect();
        assert_eq!(metas, [4]);
        // A short list of hints: the rest are looked up by key, none is dropped.
        d.record_checked(
            at(83),
            second,
            &mut vec![("a", tx(1), ()), ("c", tx(1), ())],
            &mut [],
        );
        assert_eq!((lifetime(&d, "a"), lifetime(&d, "c")), (Some(3), Some(6)));
    }

    /// A key whose hash is the same for every value: the table must tell groups apart by key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Colliding(u8);

    impl Hash for Colliding {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            0u8.hash(state);
        }
    }

    #[test]
    fn groups_whose_hashes_collide_stay_apart() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let second = Duration::from_secs(1);
        let mut d: Dimension<Colliding, ()> = Dimension::default();
        let moved = |keys: &[u8]| {
            keys.iter()
                .map(|&k| (Colliding(k), tx(k.into()), ()))
                .collect()
        };
        d.record(at(1), second, moved(&[1, 2, 3]));
        d.record(at(2), second, moved(&[2, 3]));
        d.record(at(80), second, moved(&[3]));
        let lifetimes = |d: &Dimension<Colliding, ()>| {
            let mut all: Vec<_> = d
                .entries()
                .map(|(k, e)| (k.0, e.lifetime.tx_bytes))
                .collect();
            all.sort();
            all
        };
        assert_eq!(lifetimes(&d), [(1, 1), (2, 4), (3, 9)]);
        // Expiring two of them leaves the third findable under the shared hash.
        assert_eq!(d.expire(at(80), Duration::from_secs(70)).len(), 2);
        d.record(at(81), second, moved(&[3, 1]));
        assert_eq!(lifetimes(&d), [(1, 1), (3, 12)]);
    }

    #[test]
    fn older_ticks_are_kept_in_ten_second_buckets() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let d = one_tick_a_second(start, 75);
        let now = start + second * 75;
        // The last 10 s stay exact...
        assert_eq!(window_of(&d, now, 10), ((66..=75u64).sum(), second * 10));
        // ...and the minute is whole buckets that started inside it: 55 s here, never more
        // than asked.
        assert_eq!(window_of(&d, now, 60), ((21..=75u64).sum(), second * 55));
        // A group busy all along holds 10 tick entries and 5 bucket entries, not 60.
        let history = &d.history;
        assert_eq!(history.ticks.len(), 10);
        assert_eq!(history.buckets.len() + 1, 5);
        assert!(history.buckets.iter().all(|b| b.deltas.len() == 1));
        assert_eq!(history.open.sums.iter().count(), 1);
    }
}
