//! The answer to GET /exposure: listening sockets that external peers send to.

use serde::{Deserialize, Serialize};

use super::PeerItem;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExposureResponse {
    /// Seconds since the listeners were last listed; null before the first pass.
    pub age_seconds: Option<u64>,
    /// Listeners on `--internal-ports` first, then by bytes.
    pub listeners: Vec<ExposedListener>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExposedListener {
    pub protocol: String,
    /// ip:port it listens on, `0.0.0.0:port` for every address.
    pub listen: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub container: Option<String>,
    /// The port is in `--internal-ports`: strangers reach a port meant to stay inside.
    pub internal_port: bool,
    /// Received from external peers, all together.
    pub rx_bytes: u64,
    pub peers: Vec<ExposedPeer>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExposedPeer {
    #[serde(flatten)]
    pub peer: PeerItem,
    pub rx_bytes: u64,
    /// Seconds since the epoch.
    pub first_seen: u64,
    pub last_seen: u64,
}
