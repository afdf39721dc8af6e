//! One tick's or bucket's deltas, packed. A window's history holds an entry per busy group per
//! tick: at many busy flows that is millions of entries, and unpacked (slot + four u64
//! counters) they were most of the daemon's memory. Packed as varints, the counters of a
//! flow moving a packet a second take a byte each, and the slot, stored as its distance from
//! the previous entry's (entries mostly come in slot order), a byte or two. A direction that
//! moved nothing is left out (two flag bits beside the slot step say which are there): a flow
//! that only sends or only receives in a tick, most UDP flows, takes 3 bytes.
//!
//! The varints are LEB128 (7 bits a byte, low bits first; the slot step zigzag-encoded), written
//! here rather than with a varint crate: a drain at 100k flows writes 1.5 million of them, and
//! pushing the byte straight into the buffer costs a fraction of encoding into a scratch
//! array and copying it over.

use trafficd_common::Traffic;

#[derive(Default)]
pub struct PackedDeltas {
    bytes: Vec<u8>,
    previous: u32,
    len: usize,
}

/// Room made per entry: a slot step and two counters under 128 take 3 bytes, four take 5, a
/// busy flow's byte counters a few more.
const BYTES_PER_ENTRY: usize = 5;
/// Flag bits below the slot step: which directions follow.
const HAS_TX: u64 = 0b10;
/// The longest entry: a slot step and four counters, 10 bytes each at most.
const MAX_ENTRY_BYTES: usize = 50;
const HAS_RX: u64 = 0b01;

impl PackedDeltas {
    /// Room for about `entries` entries of small counters.
    pub fn with_capacity(entries: usize) -> PackedDeltas {
        let mut packed = PackedDeltas::default();
        packed.reserve(entries);
        packed
    }

    pub fn reserve(&mut self, entries: usize) {
        self.bytes.reserve(entries * BYTES_PER_ENTRY);
    }

    /// Empty, its memory kept.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.previous = 0;
        self.len = 0;
    }

    pub fn push(&mut self, id: u32, delta: &Traffic) {
        let step = i64::from(id) - i64::from(self.previous);
        self.previous = id;
        let len = self.bytes.len();
        let spare = self.bytes.spare_capacity_mut();
        if spare.len() >= MAX_ENTRY_BYTES {
            // Written in place: a push per byte checked the capacity and moved the length for
            // each of 1.5 million bytes a drain.
            let mut written = 0;
            encode(step, delta, |byte| {
                spare[written].write(byte);
                written += 1;
            });
            // SAFETY: the `written` bytes after `len` were just initialised.
            unsafe { self.bytes.set_len(len + written) };
        } else {
            let bytes = &mut self.bytes;
            encode(step, delta, |byte| bytes.push(byte));
        }
        self.len += 1;
    }

    /// Gives back what the packing did not use: ticks are kept for a minute.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> Unpack<'_> {
        Unpack {
            bytes: &self.bytes,
            previous: 0,
        }
    }
}

pub struct Unpack<'a> {
    bytes: &'a [u8],
    previous: u32,
}

impl Unpack<'_> {
    fn take(&mut self) -> Option<u64> {
        // Most numbers are under 128: one byte.
        let (&first, rest) = self.bytes.split_first()?;
        if first < 0x80 {
            self.bytes = rest;
            return Some(u64::from(first));
        }
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
}

impl Iterator for Unpack<'_> {
    type Item = (u32, Traffic);

    fn next(&mut self) -> Option<(u32, Traffic)> {
        let head = self.take()?;
        let id = (i64::from(self.previous) + unzigzag(head >> 2)) as u32;
        self.previous = id;
        let mut delta = Traffic::default();
        if head & HAS_TX != 0 {
            delta.tx_bytes = self.take()?;
            delta.tx_packets = self.take()?;
        }
        if head & HAS_RX != 0 {
            delta.rx_bytes = self.take()?;
            delta.rx_packets = self.take()?;
        }
        Some((id, delta))
    }
}

/// An entry's bytes, one at a time: the slot step with the flags of the directions present,
/// then their counters.
fn encode(step: i64, delta: &Traffic, mut out: impl FnMut(u8)) {
    let mut put = |mut value: u64| {
        while value >= 0x80 {
            out(value as u8 | 0x80);
            value >>= 7;
        }
        out(value as u8);
    };
    let tx = delta.tx_bytes != 0 || delta.tx_packets != 0;
    let rx = delta.rx_bytes != 0 || delta.rx_packets != 0;
    let flags = if tx { HAS_TX } else { 0 } | if rx { HAS_RX } else { 0 };
    put(zigzag(step) << 2 | flags);
    if tx {
        put(delta.tx_bytes);
        put(delta.tx_packets);
    }
    if rx {
        put(delta.rx_bytes);
        put(delta.rx_packets);
    }
}

/// Small steps of either sign as small numbers: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_what_was_packed_in_any_slot_order() {
        let entries = [
            (5, Traffic::default()),
            (
                3,
                Traffic {
                    tx_bytes: u64::MAX,
                    tx_packets: 1,
                    rx_bytes: 1 << 40,
                    rx_packets: 127,
                },
            ),
            (u32::MAX, Traffic::default()),
            (
                7,
                Traffic {
                    rx_bytes: 5,
                    ..Traffic::default()
                },
            ),
            (
                8,
                Traffic {
                    tx_packets: 2,
                    ..Traffic::default()
                },
            ),
            (
                0,
                Traffic {
                    tx_bytes: 92,
                    tx_packets: 1,
                    rx_bytes: 0,
                    rx_packets: 0,
                },
            ),
        ];
        // Pushed without room (a byte at a time) and with room (written in place).
        for mut packed in [PackedDeltas::default(), PackedDeltas::with_capacity(100)] {
            for (id, delta) in &entries {
                packed.push(*id, delta);
            }
            assert_eq!(packed.len(), entries.len());
            assert_eq!(packed.iter().collect::<Vec<_>>(), entries);
        }
    }

    #[test]
    fn a_packet_a_second_one_way_in_slot_order_takes_three_bytes() {
        let mut packed = PackedDeltas::default();
        let delta = Traffic {
            tx_bytes: 92,
            tx_packets: 1,
            ..Traffic::default()
        };
        for id in 0..100_000 {
            packed.push(id, &delta);
        }
        assert_eq!(packed.bytes.len(), 100_000 * 3);
        let both_ways = Traffic {
            rx_bytes: 60,
            rx_packets: 1,
            ..delta
        };
        packed.push(100_000, &both_ways);
        assert_eq!(packed.bytes.len(), 100_000 * 3 + 5);
        assert_eq!(packed.iter().last(), Some((100_000, both_ways)));
    }
}
