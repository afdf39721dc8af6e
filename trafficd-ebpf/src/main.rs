//! trafficd's kernel programs.
//!
//! One file per hook under `programs/`. All of them aggregate into the maps in `maps.rs`; nothing
//! is sent to userspace per packet. The daemon decides which of them load on which kernel.
#![no_std]
#![no_main]
// The atomic add intrinsic: core's atomic types have no read-modify-write ops on BPF.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Inline assembly on BPF: the kernel field offsets are immediate loads the daemon patches.
#![feature(asm_experimental_arch)]

mod counters;
mod flow_cache;
mod flow_slots;
mod maps;
mod packet;
mod programs;
mod slots;
mod sock;
mod tcp_socket;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
