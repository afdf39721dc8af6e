//! The daemon's words of the programs' CONTROL array (see [`trafficd_common::control`]): the
//! epochs it bumps and the TCP flag it sets. The programs' own word, OWNER_CHANGES, is never
//! written here; each write below replaces its one word only.

use aya::maps::{Array, MapData, MapError};
use trafficd_common::control;

/// The CONTROL array and the values of the epochs the daemon last wrote: it is their only
/// writer, so it counts them here instead of reading them back.
pub struct Control {
    words: Array<MapData, u64>,
    drain_epoch: u64,
    flow_index_epoch: u64,
}

impl Control {
    /// Takes over the array as the daemon created it: every word 0.
    pub fn new(words: Array<MapData, u64>) -> Control {
        Control {
            words,
            drain_epoch: 0,
            flow_index_epoch: 0,
        }
    }

    /// A new drain: each busy TCP connection reports again at its next send or receive call.
    pub fn bump_drain_epoch(&mut self) -> Result<(), MapError> {
        self.drain_epoch = self.drain_epoch.wrapping_add(1);
        self.words.set(control::DRAIN_EPOCH, self.drain_epoch, 0)
    }

    /// Flows left FLOWS: each CPU's cached flow slots are looked up again.
    pub fn bump_flow_index_epoch(&mut self) -> Result<(), MapError> {
        self.flow_index_epoch = self.flow_index_epoch.wrapping_add(1);
        self.words
            .set(control::FLOW_INDEX_EPOCH, self.flow_index_epoch, 0)
    }

    /// Whether the packet hooks leave established TCP connections to their counters.
    pub fn set_tcp_from_sockets(&mut self, on: bool) -> Result<(), MapError> {
        self.words.set(control::TCP_FROM_SOCKETS, u64::from(on), 0)
    }
}
