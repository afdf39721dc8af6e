//! A local socket's flow: the process that owns it and, when that process also listens (a
//! proxy, a VPN server), the peers that sent to it: where its outbound bytes came from.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
    time::Instant,
};

use trafficd_common::{FlowKey, Traffic};

use super::{windows, Target};
use crate::{
    api::{ExplainedFlow, ExplainedProcess, Explanation, InboundPeer, Owner, PeerItem, Window},
    enrich::peers::PeerNames,
    exposure::{listeners::listeners, Protocol},
    http::rank::{endpoint, flow_id, protocol_name},
    stats::{local_addr, remote_addr, Store, Talker},
};

/// What is read from the store under its lock.
pub(super) struct Found {
    key: FlowKey,
    explanation: Explanation,
    /// The process's other flows with their traffic in the longest window.
    siblings: Vec<(FlowKey, Traffic)>,
}

/// Completes `found` with what the owning process listens on, read off the store's lock.
pub(super) async fn with_listeners(mut found: Found, peers: &PeerNames) -> Explanation {
    let pid = found.explanation.process.as_ref().map_or(0, |p| p.pid);
    let listening = tokio::task::spawn_blocking(move || listening_ports(pid))
        .await
        .unwrap_or_default();
    let protocol = protocol_of(found.key.protocol);
    let inbound = |key: &FlowKey| {
        protocol_of(key.protocol).is_some_and(|p| listening.contains(&(p, key.local_port)))
    };
    if inbound(&found.key) {
        found.explanation.flow.direction = "inbound".into();
    } else if protocol.is_some() && !listening.is_empty() {
        found.explanation.inbound_peers = inbound_peers(&found.siblings, peers, inbound);
    }
    found.explanation
}

pub(super) fn find(
    store: &Store,
    peers: &PeerNames,
    target: &Target,
    now: Instant,
) -> Option<Found> {
    // Of several matches (a socket shared after fork is split by process) the busiest.
    let (key, entry) = store
        .flows
        .entries()
        .filter(|(key, _)| target.matches(key))
        .max_by_key(|(_, entry)| entry.lifetime.tx_bytes + entry.lifetime.rx_bytes)?;
    let key = *key;
    let meta = entry.meta.clone();
    let mut siblings = HashMap::new();
    let all = [Window::W1s, Window::W10s, Window::W60s];
    let windows = windows(
        &store.flows,
        &key,
        &entry.lifetime,
        &all,
        now,
        |window, flow| {
            if window == Window::W60s && flow.meta.pid == meta.pid && meta.pid != 0 {
                siblings.insert(*flow.key, flow.window);
            }
        },
    );
    let remote = remote_addr(&key)?;
    let explanation = Explanation {
        flow: ExplainedFlow {
            id: flow_id(&key),
            protocol: protocol_name(key.protocol, key.family),
            local: endpoint(local_addr(&key), key.local_port),
            remote: endpoint(Some(remote), key.remote_port),
            direction: "outbound".into(),
            cgroup: meta.cgroup.to_string(),
            namespace: None,
        },
        interface: None,
        nat: None,
        owner: Owner::from(&*meta.owner),
        process: process(store, meta.pid),
        peer: PeerItem::from(&peers.lookup(remote)),
        windows,
        inbound_peers: Vec::new(),
    };
    Some(Found {
        key,
        explanation,
        siblings: siblings.into_iter().collect(),
    })
}

/// The process `pid` as the store last described it; `None` for bytes no process owns.
fn process(store: &Store, pid: u32) -> Option<ExplainedProcess> {
    if pid == 0 {
        return None;
    }
    let (_, entry) = store
        .processes
        .entries()
        .filter(|(talker, _)| matches!(talker, Talker::Process(key) if key.pid == pid))
        .max_by_key(|(_, entry)| entry.last_active)?;
    let info = &entry.meta;
    Some(ExplainedProcess {
        pid,
        comm: info.comm.to_string(),
        cmdline: info.cmdline.clone(),
        exe: info.exe.clone(),
        user: info.user.clone(),
        uid: info.uid,
        cgroup: info.cgroup.to_string(),
    })
}

/// The peers that sent to the process's listening ports, most bytes first, one per address.
fn inbound_peers(
    siblings: &[(FlowKey, Traffic)],
    peers: &PeerNames,
    inbound: impl Fn(&FlowKey) -> bool,
) -> Vec<InboundPeer> {
    let mut by_ip: HashMap<IpAddr, InboundPeer> = HashMap::new();
    for (key, traffic) in siblings.iter().filter(|(key, _)| inbound(key)) {
        let Some(ip) = remote_addr(key) else { continue };
        let entry = by_ip.entry(ip).or_insert_with(|| InboundPeer {
            peer: PeerItem::from(&peers.lookup(ip)),
            local: endpoint(local_addr(key), key.local_port),
            rx_bytes: 0,
            tx_bytes: 0,
        });
        entry.rx_bytes += traffic.rx_bytes;
        entry.tx_bytes += traffic.tx_bytes;
    }
    let mut found: Vec<InboundPeer> = by_ip.into_values().collect();
    found.sort_by_key(|p| (std::cmp::Reverse(p.rx_bytes + p.tx_bytes), p.peer.ip));
    found
}

/// The (protocol, port) pairs process `pid` listens on, in its own network namespace.
fn listening_ports(pid: u32) -> HashSet<(Protocol, u16)> {
    if pid == 0 {
        return HashSet::new();
    }
    let namespace = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let Ok(found) = listeners(Some(&namespace)) else {
        return HashSet::new();
    };
    found
        .into_iter()
        .filter(|l| l.pid == Some(pid))
        .map(|l| (l.protocol, l.addr.port()))
        .collect()
}

fn protocol_of(protocol: u8) -> Option<Protocol> {
    match protocol {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        _ => None,
    }
}
