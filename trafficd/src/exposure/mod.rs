//! Exposure: which listening sockets strangers are talking to.
//!
//! The incident this answers ended at an internal HAProxy port reachable from the internet.
//! Given the host's listening sockets ([`listeners`]) and the inbound flows the daemon counted,
//! [`exposures`] lists every listener receiving from external peers (see
//! [`is_external`](crate::enrich::peers::is_external)), with those peers and their bytes, and
//! flags the ones on ports the operator declared internal (`--internal-ports`). Pure logic:
//! the caller gathers the sockets and flows, so this is tested with plain values.

mod args;
pub mod listeners;

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use serde::Serialize;

use crate::enrich::peers::{is_external, AddressClass};
pub use args::ExposureArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A socket accepting connections or datagrams, and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub protocol: Protocol,
    /// `0.0.0.0:port` or `[::]:port` for a socket on every address.
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub comm: Option<Arc<str>>,
    pub container: Option<Arc<str>>,
}

/// Bytes a remote address sent to a local address, as the daemon counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundFlow {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: IpAddr,
    pub bytes: u64,
    /// Seconds since the epoch.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// What counts as outside, and which ports are meant to stay inside.
#[derive(Clone, Debug, Default)]
pub struct ExposurePolicy {
    /// `--trusted-networks`: public ranges the operator runs.
    pub trusted: Vec<IpNet>,
    /// `--internal-ports`.
    pub internal_ports: BTreeSet<u16>,
}

/// One external peer of one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalPeer {
    pub ip: IpAddr,
    pub class: AddressClass,
    pub bytes: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// A listener that external peers send to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exposure {
    pub listener: Listener,
    /// The listener's port is in `--internal-ports`: strangers reach a port meant to be
    /// internal.
    pub internal_port: bool,
    /// Received from external peers, all together.
    pub bytes: u64,
    /// Most bytes first.
    pub peers: Vec<ExternalPeer>,
}

/// Every listener receiving from external peers: those on internal ports first, then by bytes.
pub fn exposures(
    listeners: &[Listener],
    flows: &[InboundFlow],
    policy: &ExposurePolicy,
) -> Vec<Exposure> {
    let mut by_port: HashMap<(Protocol, u16), Vec<usize>> = HashMap::new();
    for (index, listener) in listeners.iter().enumerate() {
        by_port
            .entry((listener.protocol, listener.addr.port()))
            .or_default()
            .push(index);
    }
    let mut peers: HashMap<usize, HashMap<IpAddr, ExternalPeer>> = HashMap::new();
    for flow in flows {
        let remote = flow.remote.to_canonical();
        if !is_external(remote, &policy.trusted) {
            continue;
        }
        let candidates = by_port
            .get(&(flow.protocol, flow.local.port()))
            .map_or(&[][..], Vec::as_slice);
        let Some(index) = receiving_listener(listeners, candidates, flow.local.ip()) else {
            continue;
        };
        let peer = peers
            .entry(index)
            .or_default()
            .entry(remote)
            .or_insert_with(|| ExternalPeer {
                ip: remote,
                class: AddressClass::of(remote),
                bytes: 0,
                first_seen: flow.first_seen,
                last_seen: flow.last_seen,
            });
        peer.bytes += flow.bytes;
        peer.first_seen = peer.first_seen.min(flow.first_seen);
        peer.last_seen = peer.last_seen.max(flow.last_seen);
    }
    let mut found: Vec<Exposure> = peers
        .into_iter()
        .map(|(index, peers)| {
            let listener = listeners[index].clone();
            let mut peers: Vec<ExternalPeer> = peers.into_values().collect();
            peers.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ip.cmp(&b.ip)));
            Exposure {
                internal_port: policy.internal_ports.contains(&listener.addr.port()),
                bytes: peers.iter().map(|p| p.bytes).sum(),
                listener,
                peers,
            }
        })
        .collect();
    found.sort_by(|a, b| {
        (b.internal_port, b.bytes)
            .cmp(&(a.internal_port, a.bytes))
            .then(a.listener.addr.cmp(&b.listener.addr))
    });
    found
}

/// The listener the kernel delivers to for local address `local`: one bound to that exact
/// address, else an IPv4 wildcard for an IPv4 address, else an IPv6 wildcard (a dual-stack
/// socket also receives IPv4).
fn receiving_listener(
    listeners: &[Listener],
    candidates: &[usize],
    local: IpAddr,
) -> Option<usize> {
    let local = local.to_canonical();
    let rank = |index: &usize| {
        let bound = listeners[*index].addr.ip().to_canonical();
        match bound {
            _ if bound == local => Some(0),
            IpAddr::V4(v4) if v4.is_unspecified() && local.is_ipv4() => Some(1),
            IpAddr::V6(v6) if v6.is_unspecified() => Some(2),
            _ => None,
        }
    };
    candidates
        .iter()
        .filter_map(|index| rank(index).map(|r| (r, *index)))
        .min()
        .map(|(_, index)| index)
}

#[cfg(test)]
mod tests;
