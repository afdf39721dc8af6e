//! Adding to counters in per-CPU map values.
//!
//! The adds are atomic even though the slots are per CPU: a softirq can interrupt a program
//! running in process context on the same CPU and touch the same slot (a TCP ACK sent from
//! softirq while the socket's owner is in sendmsg). An uncontended atomic add on a local cache
//! line is a few nanoseconds.

use core::{
    intrinsics::{atomic_xadd, atomic_xchg, AtomicOrdering},
    mem::{align_of, size_of, MaybeUninit},
};

use aya_ebpf::{
    maps::{PerCpuArray, PerCpuHashMap},
    EbpfContext,
};
use aya_log_ebpf::warn;
use trafficd_common::Loss;

use crate::maps::LOSSES;

pub const BPF_NOEXIST: u64 = 1;
pub const EEXIST: i32 = 17;

#[inline(always)]
pub fn add(counter: *mut u64, value: u64) {
    // `AtomicU64::fetch_add` is not offered for the BPF target; the intrinsic lowers to the BPF
    // atomic add instruction.
    // SAFETY: `counter` points into a map value the kernel keeps alive for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, value) };
}

/// Adds `value` and returns the counter's value before: BPF's fetching atomic add, which needs
/// the v3 instruction set (Linux >= 5.12; the build targets it).
#[inline(always)]
pub fn fetch_add(counter: *mut u64, value: u64) -> u64 {
    // Sequentially consistent on purpose: LLVM 22's BPF backend lowers a relaxed add whose
    // result is used to the non-fetching instruction and reads the addend back as the "result".
    // SAFETY: as for `add`.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(counter, value) }
}

/// [`fetch_add`] on a 32-bit counter.
#[inline(always)]
pub fn fetch_add_u32(counter: *mut u32, value: u32) -> u32 {
    // SAFETY: as for `add`.
    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(counter, value) }
}

/// Sets the counter to 0 and returns what it held, in one atomic exchange: an add that
/// interrupts it lands either before (and is taken) or after (and stays).
#[inline(always)]
pub fn take(counter: *mut u64) -> u64 {
    // SAFETY: as for `add`.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(counter, 0) }
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
/// Out of line: the log's code alone is hundreds of instructions, which inlined at every place
/// that counts a loss made the programs several times longer than their common path, and the
/// instruction cache lines fetched on every run more.
#[inline(never)]
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

/// Zeroes `place` with 8-byte volatile stores and returns it initialized. Plain
/// zero-initialization of a struct with byte arrays makes LLVM call an out-of-line memset, a
/// byte loop of hundreds of instructions per packet; volatile stores are not merged into one.
/// It works in place: a zeroed value returned by value was copied with a memset again.
#[inline(always)]
pub fn zeroed<T>(place: &mut MaybeUninit<T>) -> &mut T {
    const {
        assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() >= 8);
    }
    let words = place.as_mut_ptr() as *mut u64;
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: in bounds of `place`, aligned to 8 (checked above).
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte was written; all-zero is a valid value of the plain-data map types.
    unsafe { place.assume_init_mut() }
}

/// Returns this CPU's value for `key`, creating it zeroed when absent.
///
/// `None` means the map is full (or out of memory): the caller counts the loss.
#[inline(always)]
pub fn entry<K, V>(map: &PerCpuHashMap<K, V>, key: &K) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    let mut zero = MaybeUninit::<V>::uninit();
    match map.insert(key, &*zeroed(&mut zero), BPF_NOEXIST) {
        // Another CPU created it between our lookup and insert: use that one.
        Ok(()) => map.get_ptr_mut(key),
        Err(err) if err == -EEXIST => map.get_ptr_mut(key),
        Err(_) => None,
    }
}
