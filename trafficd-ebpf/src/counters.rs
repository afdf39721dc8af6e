//! Adding to counters in per-CPU map values.
//!
//! The adds are atomic even though the slots are per CPU: a softirq can interrupt a program
//! running in process context on the same CPU and touch the same slot (a TCP ACK sent from
//! softirq while the socket's owner is in sendmsg). An uncontended atomic add on a local cache
//! line is a few nanoseconds.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    maps::{PerCpuArray, PerCpuHashMap},
    EbpfContext,
};
use aya_log_ebpf::warn;
use trafficd_common::Loss;

use crate::maps::LOSSES;

const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

#[inline(always)]
pub fn add(counter: *mut u64, value: u64) {
    // `AtomicU64::fetch_add` is not offered for the BPF target; the intrinsic lowers to the BPF
    // atomic add instruction.
    // SAFETY: `counter` points into a map value the kernel keeps alive for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, value) };
}

/// Adds to slot `index` of a per-CPU array of counters.
#[inline(always)]
pub fn add_to_slot(array: &PerCpuArray<u64>, index: u32, value: u64) {
    if let Some(slot) = array.get_ptr_mut(index) {
        add(slot, value);
    }
}

/// Counts one event of `loss` carrying `bytes`, and logs it when the daemon runs with
/// --kernel-log (aya-log's level global is switched off otherwise, so the log costs one load).
#[inline(always)]
pub fn count_loss<C: EbpfContext>(ctx: &C, loss: Loss, bytes: u64) {
    add_to_slot(&LOSSES, loss.slot(), 1);
    add_to_slot(&LOSSES, loss.slot() + 1, bytes);
    warn!(
        ctx,
        "trafficd: {} ({} bytes not recorded)",
        loss.name(),
        bytes
    );
}

/// Returns this CPU's value for `key`, creating it zeroed when absent.
///
/// `None` means the map is full (or out of memory): the caller counts the loss.
#[inline(always)]
pub fn entry<K, V: Default>(map: &PerCpuHashMap<K, V>, key: &K) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    match map.insert(key, &V::default(), BPF_NOEXIST) {
        // Another CPU created it between our lookup and insert: use that one.
        Ok(()) => map.get_ptr_mut(key),
        Err(err) if err == -EEXIST => map.get_ptr_mut(key),
        Err(_) => None,
    }
}
