//! Map commands over many entries per syscall.
//!
//! aya 0.14 reads maps one key at a time (get_next_key + lookup: two syscalls per entry), which
//! is far too slow for a drain of many flows. A batch lookup returns thousands of
//! entries per syscall. Kernels without it (< 5.6) fall back to the per-key iterator. A queue
//! map has no batch command at all: slots go into a free queue through a program run with
//! `BPF_PROG_TEST_RUN`, hundreds per syscall.

use std::{
    io,
    mem::{size_of, MaybeUninit},
    os::fd::{AsFd, AsRawFd},
};

use aya::Pod;
use trafficd_common::{
    bpf_attr::{BatchAttr, TestRunAttr},
    hand_back::{HEADER, SLOTS},
};

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Entries asked for per syscall.
const BATCH: usize = 4096;

/// One `bpf(2)` command on `attr`; its non-negative result (a new fd for some commands).
pub(super) fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid attribute for `cmd`; the buffers it points to are owned by the
    // caller and outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Pushes `slots` into the free queue `queue` names ([`hand_back`](trafficd_common::hand_back)'s
/// FLOW_SLOTS or FORWARDED_SLOTS) through the hand-back program, in order, and returns how
/// many went in: fewer than all only if the queue was full.
pub fn hand_back(program: impl AsFd, queue: u8, slots: &[u32]) -> io::Result<usize> {
    let mut packet = Vec::with_capacity(HEADER + SLOTS * size_of::<u32>());
    let mut pushed = 0;
    for chunk in slots.chunks(SLOTS) {
        packet.clear();
        packet.resize(HEADER, 0);
        packet[0] = queue;
        packet.extend(chunk.iter().flat_map(|slot| slot.to_ne_bytes()));
        let mut attr = TestRunAttr {
            prog_fd: program.as_fd().as_raw_fd() as u32,
            data_size_in: packet.len() as u32,
            data_in: packet.as_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        let went_in = (attr.retval as usize).min(chunk.len());
        pushed += went_in;
        if went_in < chunk.len() {
            break;
        }
    }
    Ok(pushed)
}

/// Every (key, per-CPU values folded with `fold`) of the map, or `Err` when the kernel has no
/// batch lookup for it. Folding here keeps one value per entry in memory, not one per CPU.
pub fn read_per_cpu<K: Pod, V: Pod + Default>(
    map: impl AsFd,
    cpus: usize,
    fold: impl Fn(&V, &V) -> V,
) -> io::Result<Vec<(K, V)>> {
    // Per-CPU values are laid out one after another, each rounded up to 8 bytes.
    let value_stride = size_of::<V>().div_ceil(8) * 8;
    let mut out = Vec::new();
    for_each_entry(map, value_stride * cpus, |key, values| {
        let total = (0..cpus).fold(V::default(), |acc, cpu| {
            // SAFETY: in bounds of the entry's values; V is Pod, any bytes are valid.
            let value = unsafe {
                std::ptr::read_unaligned(values[cpu * value_stride..].as_ptr() as *const V)
            };
            fold(&acc, &value)
        });
        out.push((key, total));
    })?;
    Ok(out)
}

/// Every key of a plain (not per-CPU) hash map whose values are `value_size` bytes (a plain
/// map packs them at their size), or `Err` when the kernel has no batch lookup for it.
pub fn read_keys<K: Pod>(map: impl AsFd, value_size: usize) -> io::Result<Vec<K>> {
    let mut keys = Vec::new();
    for_each_entry(map, value_size, |key, _| keys.push(key))?;
    Ok(keys)
}

/// Every value of a plain (not per-CPU) array, in index order, or `Err` when the kernel has no
/// batch lookup for it.
pub fn read_values<V: Pod>(map: impl AsFd) -> io::Result<Vec<V>> {
    let mut values = Vec::new();
    for_each_entry::<u32>(map, size_of::<V>(), |_, value| {
        // SAFETY: `value` holds one V (a plain array packs its values at their size); V is Pod.
        values.push(unsafe { std::ptr::read_unaligned(value.as_ptr() as *const V) });
    })?;
    Ok(values)
}

/// Calls `each` with every key of the map and its `value_bytes` bytes of value, a batch of
/// lookups per syscall.
fn for_each_entry<K: Pod>(
    map: impl AsFd,
    value_bytes: usize,
    mut each: impl FnMut(K, &[u8]),
) -> io::Result<()> {
    let mut capacity = BATCH;
    // The hash map's batch token is a bucket index (u32); 8 bytes leave room.
    let mut token = [0u64; 1];
    let mut first = true;
    // One pair of buffers for every batch of the call: fresh ones for each batch were page
    // faults on every batch of a large map.
    let mut keys: Vec<MaybeUninit<K>> = Vec::new();
    // Not zeroed: the kernel writes the values it returns, and only those are read.
    let mut values: Vec<u8> = Vec::new();
    loop {
        keys.clear();
        values.clear();
        keys.reserve(capacity);
        values.reserve(capacity * value_bytes);
        let mut next = [0u64; 1];
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: capacity as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // The buffers hold `count` keys and values.
        let err = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr).err();
        match err.as_ref().and_then(io::Error::raw_os_error) {
            // A bucket holds more entries than asked for: ask for more.
            Some(libc::ENOSPC) if attr.count == 0 => {
                capacity *= 2;
                continue;
            }
            None | Some(libc::ENOENT) => {}
            _ => return Err(err.expect("set when ret < 0")),
        }
        let filled = attr.count as usize;
        // SAFETY: the kernel wrote `filled` keys and their values.
        unsafe {
            keys.set_len(filled);
            values.set_len(filled * value_bytes);
        }
        for (key, value) in keys.iter().zip(values.chunks_exact(value_bytes.max(1))) {
            // SAFETY: initialized by the kernel above; K is Pod.
            each(unsafe { key.assume_init_read() }, value);
        }
        if err.is_some() {
            // ENOENT: that was the last batch.
            return Ok(());
        }
        token = next;
        first = false;
    }
}

/// Deletes those of `keys` that are in the map. A missing key stops a batch where it is; the
/// kernel says how many went before it, and the rest goes on after it: one syscall per batch
/// and per missing key, instead of one per key.
pub fn delete_present<K: Pod>(map: impl AsFd, keys: &[K]) -> io::Result<()> {
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_DELETE_BATCH, &mut attr) {
            Ok(_) => rest = &rest[chunk.len()..],
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                let skip = (attr.count as usize + 1).min(rest.len());
                rest = &rest[skip..];
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Writes zero to every CPU's value of `keys` (which must exist). The per-CPU hash maps are
/// preallocated, and the kernel hands a deleted element to the next insert without clearing
/// the other CPUs' values: zeroing before deleting keeps a new flow from inheriting an old
/// one's counts.
pub fn zero_per_cpu<K: Pod>(
    map: impl AsFd,
    keys: &[K],
    value_size: usize,
    cpus: usize,
) -> io::Result<()> {
    let stride = value_size.div_ceil(8) * 8;
    for chunk in keys.chunks(BATCH) {
        let zeros = vec![0u8; chunk.len() * stride * cpus];
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            values: zeros.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: map.as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        bpf(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}
