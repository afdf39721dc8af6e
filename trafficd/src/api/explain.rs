//! The answer to GET /explain: one flow as a chain from the wire to the process, with what
//! the daemon knows about each link now.
//!
//! A forwarded flow (one the tc programs counted on an interface) carries `interface` and
//! `nat`; a local socket's flow has them null (the socket hooks do not see the interface,
//! nor the NAT after them) and carries `process` instead.

use serde::{Deserialize, Serialize};

use super::{NatHop, Owner, PeerItem, Rates};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Explanation {
    pub flow: ExplainedFlow,
    /// The interface the flow crosses and its utilization; null for a local socket's flow.
    pub interface: Option<ExplainedInterface>,
    /// NAT hops with both tuples and where each was seen, the host's first; null for a local
    /// socket's flow, empty for a forwarded flow nothing translated.
    pub nat: Option<Vec<ExplainedHop>>,
    /// The container, pod or unit behind the flow: the socket's for a local flow, the one
    /// whose namespace an end of a forwarded flow lives in.
    pub owner: Owner,
    /// Who owns the socket; null for a forwarded flow or when no process could be named.
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
    /// `inbound` when the local address is one the owning process listens on, `outbound` for
    /// another local socket's flow, `forwarded` for one no local socket sent or receives
    /// (then `local` is its source and `remote` its destination, as on the wire).
    pub direction: String,
    /// The socket's cgroup; for a forwarded flow the container's, empty when none.
    pub cgroup: String,
    /// The network namespace an end of a forwarded flow lives in, when not the daemon's.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The interface a forwarded flow was counted on, and how busy it is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExplainedInterface {
    pub name: String,
    pub ifindex: u32,
    /// `ingress` or `egress` on it.
    pub direction: String,
    /// Bytes per second, from `--interface-capacity` or the driver; null when unknown.
    pub capacity_bytes_per_sec: Option<u64>,
    /// The busier direction's rate over the capacity, as /top?by=interface computes it.
    pub utilization: Option<f64>,
    /// The window the utilization is over.
    pub window_seconds: u64,
}

/// One NAT translation, and who its original source is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExplainedHop {
    #[serde(flatten)]
    pub hop: NatHop,
    /// The original tuple's source, named: behind the last hop, the real sender.
    pub source: PeerItem,
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
