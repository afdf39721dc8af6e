//! The answer to GET /healthz.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Always "ok": a daemon that answers is draining.
    pub status: String,
    pub drains: u64,
    pub uptime_seconds: u64,
    pub last_drain_microseconds: u64,
    pub longest_drain_microseconds: u64,
}
