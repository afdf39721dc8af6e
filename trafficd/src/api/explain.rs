//! The answer to GET /explain: one flow as a chain from the wire to the process, with what
//! the daemon knows about each link now.
//!
//! `interface` and `nat` are their own sections, null until the daemon knows the interface a
//! flow crossed and the NAT hops it went through; a client reads the rest without them.

use serde::{Deserialize, Serialize};

use super::{PeerItem, Rates};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Explanation {
    pub flow: ExplainedFlow,
    /// The interface the flow crosses and its utilization; null where unknown.
    pub interface: Option<serde_json::Value>,
    /// NAT hops with both tuples and where each was seen; null where unknown.
    pub nat: Option<serde_json::Value>,
    /// Who owns the socket; null when no process could be named.
    pub process: Option<ExplainedProcess>,
    pub peer: PeerItem,
    /// Bytes and rates over each window, shortest first.
    pub windows: Vec<WindowRates>,
    /// When the flow is an outbound one of a process that also accepts connections: the
    /// peers that sent to that process in the longest window, most bytes first. The real
    /// origin behind a proxy or a VPN server is among them.
    pub inbound_peers: Vec<InboundPeer>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExplainedFlow {
    pub id: String,
    pub protocol: String,
    pub local: String,
    pub remote: String,
    /// `inbound` when the local address is one the owning process listens on, else `outbound`.
    pub direction: String,
    pub cgroup: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExplainedProcess {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub user: String,
    pub uid: Option<u32>,
    pub cgroup: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WindowRates {
    pub window_seconds: u64,
    #[serde(flatten)]
    pub rates: Rates,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InboundPeer {
    #[serde(flatten)]
    pub peer: PeerItem,
    /// The local address it sent to, ip:port.
    pub local: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}
