//! What the two kinds of counter slots share (local flows in FLOW_COUNTERS, forwarded flows in
//! FORWARDED_COUNTERS): the array mapped into this process, a prefix at a time, and the queue
//! of free slots that freed slots go back to.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use aya::{
    maps::{Array, MapData, Queue},
    programs::ProgramFd,
};
use trafficd_common::{
    forwarding::{ForwardKey, ForwardSlot, WireCount},
    FlowKey, FlowSlot, Traffic,
};

use super::batch;

/// A `BPF_F_MMAPABLE` array mapped into this process, as much of it as its used slots need.
/// The kernel maps every page of a mapping at once: mapping the whole array would make it all
/// resident in the daemon however few flows there are. So only the slots handed out so far
/// are mapped, and the mapping grows with them.
pub struct SharedArray<T> {
    mapping: Arc<Mapping<T>>,
    /// The map behind the mapping: mapped again as the flows outgrow it, and kept open so
    /// that bpftool and fdinfo see it as ours (a mapping alone keeps it alive unseen).
    map: MapData,
    capacity: usize,
    /// Slots mapped at least, and the least a mapping grows by.
    step: usize,
    what: &'static str,
}

impl<T> SharedArray<T> {
    /// Maps the first `step` of the array's `capacity` slots. `what` names them in warnings.
    pub fn new(
        map: MapData,
        step: usize,
        capacity: u32,
        what: &'static str,
    ) -> io::Result<SharedArray<T>> {
        let capacity = capacity as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        Ok(SharedArray {
            mapping: Arc::new(Mapping::new(fd, step, capacity)?),
            map,
            capacity,
            step,
            what,
        })
    }

    pub fn mapping(&self) -> &Arc<Mapping<T>> {
        &self.mapping
    }

    /// Maps the slots handed out so far, as `fresh` counts them, and returns how many of them
    /// are mapped. Slots past the count were never handed out; one handed out after this read
    /// is read at the next call. The count may run a few past the array's end (see the eBPF
    /// crate's `slots`): capped.
    pub fn cover_handed_out(&mut self, fresh: &Array<MapData, u64>) -> usize {
        let used = fresh
            .get(&0, 0)
            .map_or(self.capacity, |n| n.min(self.capacity as u64) as usize);
        self.cover(used)
    }

    /// Maps at least the first `used` slots, and returns how many of them are mapped. Should
    /// growing fail, the slots past the mapping wait in the kernel, counting, for a later call.
    fn cover(&mut self, used: usize) -> usize {
        let mapped = self.mapping.len;
        if used <= mapped {
            return used;
        }
        // A little room for the next drain's new flows, so that flows appearing slowly do not
        // remap at every drain; a little only, since it is resident: growing by a quarter of
        // the mapping left 100k flows with 123k slots mapped or 103k, as the drains fell.
        let wanted = used + (used / 16).max(self.step);
        let fd = self.map.fd().as_fd().as_raw_fd();
        match Mapping::new(fd, wanted, self.capacity) {
            Ok(bigger) => {
                self.mapping = Arc::new(bigger);
                used.min(self.mapping.len)
            }
            Err(err) => {
                tracing::warn!(
                    "cannot map {wanted} {} ({err}); the flows past the first {mapped} are read once it works",
                    self.what
                );
                mapped
            }
        }
    }
}

/// The first slots of a `BPF_F_MMAPABLE` array, mapped into this process.
pub struct Mapping<T> {
    base: NonNull<T>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics or happens
// while the kernel does not write the slot. Only the drain thread rewrites a slot, and only one
// that no program can reach.
unsafe impl<T> Send for Mapping<T> {}
// SAFETY: as for `Send`.
unsafe impl<T> Sync for Mapping<T> {}

impl<T> Mapping<T> {
    /// The first `len` (rounded up to whole pages) of the `capacity` slots of the array.
    fn new(fd: i32, len: usize, capacity: usize) -> io::Result<Mapping<T>> {
        let page = page_size();
        let slot = size_of::<T>();
        let whole = (capacity * slot).div_ceil(page).max(1) * page;
        let bytes = ((len.max(1) * slot).div_ceil(page) * page).min(whole);
        let len = (bytes / slot).min(capacity);
        // SAFETY: a shared mapping of the start of a BPF_F_MMAPABLE array of `capacity` slots,
        // no longer than the array's memory, which the kernel rounds up to whole pages too.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { base, len, bytes })
    }

    /// Slot `slot`, which must be mapped.
    pub fn slot(&self, slot: usize) -> SlotRef<'_, T> {
        assert!(slot < self.len, "slot {slot} out of {}", self.len);
        SlotRef {
            // SAFETY: in bounds of the mapping, as asserted above.
            slot: unsafe { self.base.add(slot) },
            _mapping: self,
        }
    }
}

impl<T> Drop for Mapping<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; nothing borrowed from it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// A counter slot as the kernel programs lay it out: counts, a `claimed` word, a key.
///
/// # Safety
/// `Counts` is `repr(C)` and nothing but u64 counters; the accessors return fields of `slot`.
pub unsafe trait Slot {
    type Key: Copy;
    type Counts: Copy + Default;
    fn counts(slot: *mut Self) -> *mut Self::Counts;
    fn claimed(slot: *mut Self) -> *mut u64;
    fn key(slot: *mut Self) -> *mut Self::Key;
}

macro_rules! slot {
    ($slot:ty, $key:ty, $counts:ident: $counts_ty:ty) => {
        // SAFETY: Traffic and WireCount are repr(C) structs of u64 counters.
        unsafe impl Slot for $slot {
            type Key = $key;
            type Counts = $counts_ty;
            fn counts(slot: *mut Self) -> *mut Self::Counts {
                // SAFETY: only the field's address is taken.
                unsafe { &raw mut (*slot).$counts }
            }
            fn claimed(slot: *mut Self) -> *mut u64 {
                // SAFETY: as above.
                unsafe { &raw mut (*slot).claimed }
            }
            fn key(slot: *mut Self) -> *mut Self::Key {
                // SAFETY: as above.
                unsafe { &raw mut (*slot).key }
            }
        }
    };
}

slot!(FlowSlot, FlowKey, traffic: Traffic);
slot!(ForwardSlot, ForwardKey, count: WireCount);

/// One slot of a mapping. The kernel writes the key once before setting `claimed`, and adds
/// to the counts atomically; the daemon reads `claimed` with acquire ordering before the key
/// and rewrites a slot only once it is unindexed and no program can hold its number.
pub struct SlotRef<'a, T> {
    slot: NonNull<T>,
    _mapping: &'a Mapping<T>,
}

impl<T: Slot> SlotRef<'_, T> {
    fn counter(&self, field: *mut u64) -> &AtomicU64 {
        // SAFETY: `field` is an aligned u64 of the slot, inside the live mapping; the kernel
        // only touches it with atomic instructions.
        unsafe { AtomicU64::from_ptr(field) }
    }

    pub fn claimed(&self) -> bool {
        self.counter(T::claimed(self.slot.as_ptr()))
            .load(Ordering::Acquire)
            != 0
    }

    pub fn key(&self) -> T::Key {
        // SAFETY: written once before `claimed`, which the caller saw set, and not written again
        // while the slot is claimed.
        unsafe { std::ptr::read(T::key(self.slot.as_ptr())) }
    }

    /// The slot, for reading a part of its key (see [`key`](Self::key)).
    pub fn as_ptr(&self) -> *mut T {
        self.slot.as_ptr()
    }

    /// The counts, each swapped to 0: read once, counted once.
    pub fn take(&self) -> T::Counts {
        let words = T::counts(self.slot.as_ptr()).cast::<u64>();
        let mut counts = T::Counts::default();
        let out = (&raw mut counts).cast::<u64>();
        for i in 0..size_of::<T::Counts>() / 8 {
            // SAFETY: Counts is all u64 (see `Slot`), so word `i` is in bounds of both.
            let counter = self.counter(unsafe { words.add(i) });
            // Most flows are idle most drains: a load keeps their cache lines shared.
            let value = match counter.load(Ordering::Relaxed) {
                0 => 0,
                _ => counter.swap(0, Ordering::Relaxed),
            };
            // SAFETY: as above.
            unsafe { out.add(i).write(value) };
        }
        counts
    }

    /// Zeroes the slot for its next flow. Only for a slot no program can reach.
    pub fn clear(&self) {
        let slot = self.slot.as_ptr();
        // SAFETY: no program holds the slot (the caller's promise). `claimed` goes last.
        unsafe {
            std::ptr::write_bytes(T::key(slot), 0, 1);
            T::counts(slot).write(T::Counts::default());
        }
        self.counter(T::claimed(slot)).store(0, Ordering::Release);
    }
}

/// A queue of free slots, filled through the hand-back program where it loaded (hundreds of
/// slots per syscall), one syscall per slot otherwise.
pub struct FreeQueue {
    queue: Queue<MapData, u32>,
    program: Option<ProgramFd>,
    /// The queue, as the hand-back program's header names it.
    which: u8,
    what: &'static str,
}

impl FreeQueue {
    pub fn new(
        queue: Queue<MapData, u32>,
        program: Option<ProgramFd>,
        which: u8,
        what: &'static str,
    ) -> FreeQueue {
        FreeQueue {
            queue,
            program,
            which,
            what,
        }
    }

    /// Pushes `slots` in order, and returns how many went in: fewer than all only if a push
    /// failed, and the rest are to be tried again later, never lost nor given twice.
    pub fn push_all(&mut self, slots: &[u32]) -> usize {
        let batched = match &self.program {
            Some(program) => match batch::hand_back(program, self.which, slots) {
                Ok(pushed) if pushed == slots.len() => pushed,
                Ok(pushed) => {
                    tracing::warn!(
                        "the hand-back program took {pushed} of {} freed {}; the rest are pushed one syscall each",
                        slots.len(),
                        self.what
                    );
                    pushed
                }
                Err(err) => {
                    tracing::warn!(
                        "cannot run the hand-back program ({err}); freed {} go back one syscall each",
                        self.what
                    );
                    self.program = None;
                    0
                }
            },
            None => 0,
        };
        let mut pushed = batched;
        // The queue holds every slot, so there is room.
        for &slot in &slots[batched..] {
            if self.queue.push(slot, 0).is_err() {
                break;
            }
            pushed += 1;
        }
        pushed
    }
}
