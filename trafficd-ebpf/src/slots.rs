//! Counter slots: a hash index from a flow's key to its slot in an array the daemon maps into
//! its memory, a queue of free slots, and a count of the slots ever handed out. Shared by the
//! socket hooks' flows (FLOWS -> FLOW_COUNTERS) and the tc programs' forwarded flows
//! (FORWARDED -> FORWARDED_COUNTERS): the daemon reads either array with plain loads, where a
//! hash map is read a batch of buckets per syscall under each bucket's lock.

use aya_ebpf::maps::{Array, HashMap, Queue};
use trafficd_common::{forwarding::ForwardSlot, FlowSlot};

use crate::counters::{fetch_add, BPF_NOEXIST, EEXIST};

/// An array element that holds its flow's key and a `claimed` word set once the key is
/// written.
pub trait Slot {
    type Key;
    fn key(slot: *mut Self) -> *mut Self::Key;
    fn claimed(slot: *mut Self) -> *mut u64;
}

macro_rules! slot {
    ($slot:ty, $key:ty) => {
        impl Slot for $slot {
            type Key = $key;
            #[inline(always)]
            fn key(slot: *mut Self) -> *mut Self::Key {
                // SAFETY: only the field's address is taken.
                unsafe { &raw mut (*slot).key }
            }
            #[inline(always)]
            fn claimed(slot: *mut Self) -> *mut u64 {
                // SAFETY: as above.
                unsafe { &raw mut (*slot).claimed }
            }
        }
    };
}

slot!(FlowSlot, trafficd_common::FlowKey);
slot!(ForwardSlot, trafficd_common::forwarding::ForwardKey);

/// The four maps of one kind of slot.
pub struct Slots<K: 'static, S: 'static> {
    pub index: &'static HashMap<K, u32>,
    pub counters: &'static Array<S>,
    pub free: &'static Queue<u32>,
    /// Index 0: slots ever handed out. It may run a few past the array's end, one per CPU
    /// racing for the last fresh slot; the daemon caps it.
    pub fresh: &'static Array<u64>,
}

impl<K: Copy, S: Slot<Key = K>> Slots<K, S> {
    /// The slot of flow `key`, claiming a free one for a new flow (and calling `claimed` then);
    /// `None` when none is free or the index is full.
    #[inline(always)]
    pub fn slot_of(&self, key: &K, claimed: impl FnOnce()) -> Option<u32> {
        // SAFETY: the slot number is copied out at once.
        match unsafe { self.index.get(key) } {
            Some(slot) => Some(*slot),
            None => self.claim(key, claimed),
        }
    }

    /// Takes a free slot for `key` and indexes it. The index goes in before the key is written
    /// to the slot: if another CPU indexed the same flow first, the slot goes back untouched.
    #[inline(always)]
    fn claim(&self, key: &K, claimed: impl FnOnce()) -> Option<u32> {
        let slot = match self.fresh_slot() {
            Some(slot) => slot,
            None => self.free.pop().ok()??,
        };
        if let Err(err) = self.index.insert(key, slot, BPF_NOEXIST) {
            // The queue holds every slot, so it has room for this one again.
            let _ = self.free.push(slot, 0);
            // SAFETY: as above.
            return (err == -EEXIST)
                .then(|| unsafe { self.index.get(key) }.copied())
                .flatten();
        }
        let counters = self.counters.get_ptr_mut(slot)?;
        // SAFETY: a live array element that no other program writes the key of: the slot was
        // free and is indexed under `key` by this program only.
        unsafe {
            *S::key(counters) = *key;
        }
        // A fetching atomic add is a full barrier under every BPF JIT (a plain atomic add is
        // not on arm64): the key's stores come before `claimed`, which the daemon reads first.
        fetch_add(S::claimed(counters), 1);
        claimed();
        Some(slot)
    }

    /// The next never-used slot, while there is one.
    #[inline(always)]
    fn fresh_slot(&self) -> Option<u32> {
        let next = self.fresh.get_ptr_mut(0)?;
        // SAFETY: a live array element; read first so that a full array does not keep counting.
        let seen = unsafe { core::ptr::read_volatile(next) };
        if seen >= u64::from(u32::MAX) || self.counters.get_ptr(seen as u32).is_none() {
            return None;
        }
        let slot = fetch_add(next, 1);
        // Another CPU may have taken the last one in between.
        self.counters
            .get_ptr(slot as u32)
            .filter(|_| slot < u64::from(u32::MAX))
            .map(|_| slot as u32)
    }
}
