//! A per-CPU cache in front of FLOWS: the slots of the flows a CPU counted recently, found by
//! their socket's cookie. A packet of a cached flow costs no hash map lookup, which hashes and
//! compares the 56-byte key through three kernel calls, a large part of what the cgroup_skb
//! programs cost.
//!
//! An entry is believed only while the FLOW_INDEX_EPOCH control word has not moved since it was
//! written (the daemon bumps it after every retirement of flows from FLOWS, so a retired flow's
//! slot is not fed past its retirement), and only for a packet whose key is the key its slot
//! holds: a torn entry, left by a program interrupted on this CPU while writing it, can only
//! miss.
//!
//! A socket's cgroup is fixed when the socket is created, so its cookie stands for it here: the
//! cache is checked by everything but the cgroup, which a hit does not need to ask.
//!
//! Only connected sockets use it: their packets are all one flow, so consecutive packets hit.
//! An unconnected socket can talk to a different peer with every datagram (a DNS server, a
//! UDP fan-out), and the cache would only add its misses to the lookup.

use core::{
    mem::offset_of,
    ptr::{null_mut, read_volatile, write_volatile},
};

use aya_ebpf::bindings::__sk_buff;
use trafficd_common::{control::FLOW_INDEX_EPOCH, FlowKey, FLOW_CACHE_ENTRIES};

use crate::maps::{control_word, this_cpu_entry, CachedSlot, FLOW_CACHE, FLOW_COUNTERS};

/// The cache entry for one flow key on this CPU.
///
/// Not an `Option`: its fields are kept across helper calls, and LLVM spills them whether or
/// not they were set, which the verifier refuses for a register never written.
pub struct Entry {
    /// Null when the flow does not use the cache.
    entry: *mut CachedSlot,
    tag: u32,
    /// The FLOW_INDEX_EPOCH control word + 1, read before FLOWS is: a slot looked up while the
    /// daemon retires its flow is remembered with the epoch before the retirement, and so never
    /// believed.
    valid_in: u64,
}

impl Entry {
    /// The entry for `key`, a packet's flow on the socket of `skb`, its cgroup not filled in yet;
    /// none when the socket is not connected (or there is none).
    #[inline(always)]
    pub fn of(skb: *mut __sk_buff, key: &FlowKey) -> Entry {
        // SAFETY: the program's context; `sk` is checked for null before its one read.
        let connected = unsafe {
            let sk = (*skb).__bindgen_anon_2.sk;
            !sk.is_null() && read_volatile(&raw const (*sk).dst_port) != 0
        };
        let tag = tag_of(key);
        let none = Entry {
            entry: null_mut(),
            tag,
            valid_in: 0,
        };
        if !connected {
            return none;
        }
        let (Some(epoch), Some(entry)) = (
            control_word(FLOW_INDEX_EPOCH),
            this_cpu_entry(&FLOW_CACHE, FLOW_CACHE_ENTRIES, tag),
        ) else {
            return none;
        };
        Entry {
            entry,
            tag,
            // SAFETY: a live array element, read once.
            valid_in: unsafe { read_volatile(epoch) }.wrapping_add(1),
        }
    }

    /// The slot of `key` (whose cgroup is not compared), when this entry holds it.
    #[inline(always)]
    pub fn slot(&self, key: &FlowKey) -> Option<u32> {
        let entry = self.entry;
        if entry.is_null() {
            return None;
        }
        // SAFETY: this CPU's live array element; fields are read one by one, so an entry torn
        // by an interrupted writer yields a slot that the key check below rejects.
        let slot = unsafe {
            if read_volatile(&raw const (*entry).valid_in) != self.valid_in
                || read_volatile(&raw const (*entry).tag) != self.tag
            {
                return None;
            }
            read_volatile(&raw const (*entry).slot)
        };
        let counters = FLOW_COUNTERS.get_ptr(slot)?;
        // SAFETY: a live array element. Its key is written once when the slot is claimed; until
        // then it differs from any key that reached the cache (it is zero or a former flow's).
        same_key(unsafe { &(*counters).key }, key).then_some(slot)
    }

    /// Remembers `slot` as the slot of this entry's flow.
    #[inline(always)]
    pub fn remember(&self, slot: u32) {
        let entry = self.entry;
        if entry.is_null() {
            return;
        }
        // SAFETY: this CPU's live array element. Invalid while it is rewritten.
        unsafe {
            write_volatile(&raw mut (*entry).valid_in, 0);
            write_volatile(&raw mut (*entry).tag, self.tag);
            write_volatile(&raw mut (*entry).slot, slot);
            write_volatile(&raw mut (*entry).valid_in, self.valid_in);
        }
    }
}

const KEY_WORDS: usize = size_of::<FlowKey>() / 8;
/// The key's word that holds the cgroup: left out of the check.
const CGROUP_WORD: usize = offset_of!(FlowKey, cgroup_id) / 8;

#[inline(always)]
fn words(key: &FlowKey) -> *const u64 {
    const {
        assert!(size_of::<FlowKey>().is_multiple_of(8) && align_of::<FlowKey>() >= 8);
        assert!(offset_of!(FlowKey, cgroup_id) % 8 == 0);
    }
    (key as *const FlowKey).cast()
}

/// The tag of a connected socket's flow: its cookie's low half. The cache holds connected
/// sockets only, one flow each, and cookies are handed out in sequence, so the socket alone
/// spreads them over the entries, and the tag is known before the packet is parsed.
#[inline(always)]
fn tag_of(key: &FlowKey) -> u32 {
    key.cookie as u32
}

/// Whether the keys are equal but for their cgroups.
#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (words(a), words(b));
    let mut differ = 0u64;
    for i in (0..KEY_WORDS).filter(|&i| i != CGROUP_WORD) {
        // SAFETY: within both keys (checked above).
        differ |= unsafe { *a.add(i) ^ *b.add(i) };
    }
    differ == 0
}
