//! Not attached anywhere: the daemon runs it with `BPF_PROG_TEST_RUN` to push a batch of freed
//! slots into FREE_FLOW_SLOTS or FREE_FORWARDED_SLOTS (the header's first byte says which) in
//! one syscall. A queue map has no batch update, and pushing
//! from userspace costs a syscall per slot, which adds up when thousands are freed at once.

use aya_ebpf::{macros::classifier, programs::TcContext};
use trafficd_common::hand_back::{FORWARDED_SLOTS, HEADER, SLOTS};

use crate::maps::{FREE_FLOW_SLOTS, FREE_FORWARDED_SLOTS};

/// Pushes the slot numbers after the header of the test packet, in order, and returns how many
/// went in: the daemon keeps the rest for its next try.
#[classifier]
pub fn trafficd_hand_back(ctx: TcContext) -> i32 {
    let data = ctx.data();
    let end = ctx.data_end();
    if data + HEADER > end {
        return 0;
    }
    // SAFETY: inside the packet, checked against its end just above.
    let queue = match unsafe { *(data as *const u8) } {
        FORWARDED_SLOTS => &FREE_FORWARDED_SLOTS,
        _ => &FREE_FLOW_SLOTS,
    };
    let mut pushed = 0;
    for i in 0..SLOTS {
        let at = data + HEADER + i * size_of::<u32>();
        if at + size_of::<u32>() > end {
            break;
        }
        // SAFETY: inside the packet, checked against its end just above.
        let slot = unsafe { (at as *const u32).read_unaligned() };
        if queue.push(slot, 0).is_err() {
            break;
        }
        pushed += 1;
    }
    pushed
}
