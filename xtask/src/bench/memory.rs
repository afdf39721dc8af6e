//! How long this machine takes to read memory its caches do not hold: the cost a program pays
//! per packet for state it last touched long ago (a flow seen once a second among 100k, a
//! socket's entry after a large write has run the whole network stack). Measured once per
//! bench by a chase of dependent loads through lines in random order, so that neither the
//! prefetchers nor the out-of-order core can hide a load's latency.

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

const LINE: usize = 64;
/// Working sets: within L1, within L2, a few MiB, and the size of the flow maps at 100k flows.
const SIZES: [usize; 4] = [32 << 10, 512 << 10, 2 << 20, 64 << 20];
/// Loads timed per working set (after one untimed pass through it).
const LOADS: usize = 2_000_000;

/// The average time of one dependent read in a working set of `bytes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadLatency {
    pub bytes: usize,
    pub ns: f64,
}

/// Measures every working set in [`SIZES`].
pub fn read_latencies() -> Vec<ReadLatency> {
    SIZES
        .iter()
        .map(|&bytes| ReadLatency {
            bytes,
            ns: chase_ns(bytes),
        })
        .collect()
}

/// The figures in one line, for the report: "2.6 ns within 32 KiB, ...".
pub fn describe(latencies: &[ReadLatency]) -> String {
    latencies
        .iter()
        .map(|l| format!("{:.1} ns within {}", l.ns, size_name(l.bytes)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Nanoseconds per load of a chase through `bytes` of memory, one pointer per cache line.
///
/// The loop is written for `cargo xtask`'s unoptimized build too: raw pointer loads and a
/// plain counter, unrolled, so that what it times is the loads and not the loop.
fn chase_ns(bytes: usize) -> f64 {
    let memory = chain(bytes);
    let lines = bytes / LINE;
    let mut at = memory.as_ptr();
    // SAFETY: every address followed is the first word of a line of `memory`, alive and
    // unchanged until the chase is over.
    let mut follow = |rounds: usize| unsafe {
        let mut left = rounds;
        while left > 0 {
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            at = *at as *const usize;
            left -= 1;
        }
    };
    follow(lines / 8 + 1);
    let started = Instant::now();
    follow(LOADS / 8);
    let elapsed = started.elapsed();
    black_box(at);
    drop(memory);
    elapsed.as_nanos() as f64 / (LOADS / 8 * 8) as f64
}

/// `bytes` of memory whose lines each hold, in their first word, the address of the next
/// line's first word in a random cycle through all of them (see [`cycle`]).
fn chain(bytes: usize) -> Vec<usize> {
    let next = cycle(bytes / LINE, 0x9e37_79b9_7f4a_7c15);
    let words = LINE / size_of::<usize>();
    let mut memory = vec![0usize; next.len() * words];
    let base = memory.as_ptr() as usize;
    for (line, &to) in next.iter().enumerate() {
        memory[line * words] = base + to * LINE;
    }
    memory
}

/// Where each of `n` lines points: the lines in a random order (Fisher-Yates), each pointing to
/// the next and the last to the first, so that following `next` from any line visits every
/// line once before coming back.
fn cycle(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        // xorshift64: quality enough to defeat the prefetchers, and no dependency for it.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut next = vec![0; n];
    for (k, &line) in order.iter().enumerate() {
        next[line] = order[(k + 1) % n];
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_line_once_per_round() {
        for n in [2, 3, 64, 1000, 8192] {
            let next = cycle(n, 42);
            let mut seen = vec![false; n];
            let mut at = 0;
            for _ in 0..n {
                assert!(!seen[at], "line {at} visited twice in a round of {n}");
                seen[at] = true;
                at = next[at];
            }
            assert_eq!(at, 0, "the chase through {n} lines does not come back");
        }
    }

    #[test]
    fn the_chained_memory_leads_through_every_line_and_back() {
        let bytes = 64 << 10;
        let memory = chain(bytes);
        let base = memory.as_ptr() as usize;
        let mut seen = vec![false; bytes / LINE];
        let mut at = base;
        for _ in 0..seen.len() {
            let offset = at - base;
            assert_eq!(offset % LINE, 0, "address {at:#x} is not a line's start");
            let line = offset / LINE;
            assert!(!seen[line], "line {line} reached twice");
            seen[line] = true;
            at = memory[offset / size_of::<usize>()];
        }
        assert_eq!(at, base, "the chain does not come back to its start");
    }

    #[test]
    fn describe_names_sizes_in_kib_and_mib() {
        let latencies = [
            ReadLatency {
                bytes: 32 << 10,
                ns: 2.61,
            },
            ReadLatency {
                bytes: 64 << 20,
                ns: 201.0,
            },
        ];
        assert_eq!(
            describe(&latencies),
            "2.6 ns within 32 KiB, 201.0 ns within 64 MiB"
        );
    }
}
