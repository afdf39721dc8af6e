//! Fresh memory with fewer page faults.
//!
//! When many flows appear in one drain, the drain writes megabytes it never touched before,
//! most of them the store's entries for the new flows. Each first write of a 4 KiB page is a
//! page fault, and a fault is dear where every kernel entry is (a VM, speculation mitigations).
//! Two remedies, both cheap where they do not apply:
//! - Blocks of 2 MiB or more are advised onto transparent huge pages ([`HugeBlocks`], the
//!   global allocator): one fault then maps 2 MiB instead of 4 KiB. Kernels with THP set to
//!   `never` ignore the advice; with `always` it changes nothing.
//! - [`populate`] faults in the room about to be written with one madvise(MADV_POPULATE_WRITE)
//!   call instead of a fault per page. Only room the caller is about to write in full is
//!   populated: room reserved on an estimate (a tick's bytes, the flows that may move) would be
//!   made resident for nothing.

use std::alloc::{GlobalAlloc, Layout, System};

/// Below this, the page faults cost less than the system call is worth.
const SMALLEST: usize = 256 * 1024;
/// A transparent huge page on x86-64 (and arm64 with 4 KiB pages): blocks this large are asked
/// to sit on huge pages. Smaller ones would round up to a huge page of resident memory.
const HUGE_PAGE: usize = 2 << 20;

/// The system allocator, with blocks of a huge page or more advised onto transparent huge pages.
/// The daemon pins glibc's mmap threshold, so such a block is a mapping of its own, and the
/// advice is one madvise call per large allocation or growth: a few a drain at most.
pub struct HugeBlocks;

// SAFETY: every call is the system allocator's; the advice changes how pages are backed, never
// what they hold.
unsafe impl GlobalAlloc for HugeBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        let block = unsafe { System.alloc(layout) };
        advise_huge(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        let block = unsafe { System.alloc_zeroed(layout) };
        advise_huge(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        let block = unsafe { System.realloc(block, layout, new_size) };
        if new_size > layout.size() {
            advise_huge(block, new_size);
        }
        block
    }
}

/// Asks for huge pages under a block of at least [`HUGE_PAGE`] bytes. The whole pages around it
/// are advised, so that a block the system allocator mapped on its own stays one mapping (and
/// can grow in place); where the block shares pages with others, the advice only lets the
/// kernel back them with huge pages too.
fn advise_huge(block: *mut u8, size: usize) {
    if block.is_null() || size < HUGE_PAGE {
        return;
    }
    let page = page_size();
    let start = block as usize / page * page;
    let end = (block as usize + size).div_ceil(page) * page;
    // SAFETY: pages of this process's heap or of the block's own mapping; the advice keeps
    // their contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// Faults in the pages of the room for the next `elements` elements of `vec` (within its
/// capacity). A failure (a kernel before 5.14 has no MADV_POPULATE_WRITE) only leaves the
/// pages to be faulted in one by one, as without it.
pub fn populate<T>(vec: &mut Vec<T>, elements: usize) {
    let spare = vec.spare_capacity_mut();
    let room = elements.min(spare.len());
    let spare = &mut spare[..room];
    let bytes = std::mem::size_of_val(spare);
    if bytes < SMALLEST {
        return;
    }
    let page = page_size();
    let start = spare.as_mut_ptr() as usize;
    // Whole pages inside that room only: the pages around it hold other data, which
    // populating would not change, but they are faulted in already or belong to someone else.
    let first = start.div_ceil(page) * page;
    let end = (start + bytes) / page * page;
    if end <= first {
        return;
    }
    // SAFETY: the range is inside `vec`'s allocation, in its unused capacity, whose contents are
    // uninitialized to Rust; populating pages does not change what they hold.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            end - first,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags of the mapping that holds `address`, from /proc/self/smaps.
    fn mapping_flags(address: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ').filter(|(r, _)| r.contains('-')) {
                let (start, end) = range.split_once('-').unwrap();
                let parse = |hex| usize::from_str_radix(hex, 16).unwrap_or(0);
                inside = (parse(start)..parse(end)).contains(&address);
            } else if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
                return flags.split_whitespace().map(String::from).collect();
            }
        }
        panic!("no mapping holds {address:#x}");
    }

    #[test]
    fn large_blocks_are_advised_onto_huge_pages_and_keep_it_as_they_grow() {
        let huge = |flags: Vec<String>| flags.iter().any(|f| f == "hg");
        let mut block: Vec<u8> = Vec::with_capacity(4 << 20);
        assert!(huge(mapping_flags(block.as_ptr() as usize)));
        block.reserve_exact(12 << 20);
        let grown = block.as_ptr() as usize;
        assert!(huge(mapping_flags(grown)));
        assert!(huge(mapping_flags(grown + (12 << 20))));
    }

    #[test]
    fn populated_room_is_resident_before_it_is_written_and_no_more() {
        let resident = |v: &Vec<u64>| {
            let page = page_size();
            let start = v.as_ptr() as usize / page * page;
            let pages = (v.as_ptr() as usize + v.capacity() * 8 - start).div_ceil(page);
            let mut flags = vec![0u8; pages];
            // SAFETY: the range covers `v`'s allocation; mincore only reports on it.
            let rc = unsafe { libc::mincore(start as *mut _, pages * page, flags.as_mut_ptr()) };
            assert_eq!(rc, 0);
            flags.iter().filter(|f| **f & 1 == 1).count()
        };
        // Room for 1M elements populated out of 8M reserved: the 2048 pages of the first 8 MiB
        // (give or take the partial pages at its ends, and the rest of a huge page where the
        // room ends inside one), and none of the other 56 MiB.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 20);
        populate(&mut v, 1 << 20);
        let pages = (8 << 20) / page_size();
        let huge_page = HUGE_PAGE / page_size();
        assert!(
            (pages - 2..=pages + huge_page).contains(&resident(&v)),
            "{}",
            resident(&v)
        );
    }
}
