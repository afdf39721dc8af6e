//! GET /explain: one flow, from the wire to the process, with what the daemon knows now.
//!
//! Read from the store under its lock, then, off the lock, the listening sockets of the
//! owning process: a process that both listens and connects is a forwarder, and the peers
//! that sent to it are where its outbound bytes came from.

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Instant,
};

use trafficd_common::{FlowKey, Traffic};

use super::top::{endpoint, protocol_name, rates, seconds};
use crate::{
    api::{
        ApiError, ExplainedFlow, ExplainedProcess, Explanation, InboundPeer, PeerItem, Window,
        WindowRates,
    },
    enrich::peers::PeerNames,
    exposure::{listeners::listeners, Protocol},
    stats::{local_addr, remote_addr, Store, Talker},
};

/// A flow's id: a hash of its whole key (socket cookie, cgroup and tuple), so it stays the
/// same while the flow lives and two flows of one socket differ. Only this daemon reads it
/// back, so the hash need not be stable across builds.
pub fn flow_id(key: &impl Hash) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Which flow /explain is asked about.
#[derive(Debug, PartialEq)]
pub enum Target {
    Id(String),
    Tuple {
        protocol: u8,
        local: SocketAddr,
        remote: SocketAddr,
    },
}

impl Target {
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Target, ApiError> {
        let get = |name: &str| -> Result<Option<&str>, ApiError> {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            match values.len() {
                0 | 1 => Ok(values.first().copied()),
                count => Err(ApiError::ExplainParams(format!(
                    "{name} is given {count} times"
                ))),
            }
        };
        if let Some(id) = get("flow")? {
            return Ok(Target::Id(id.to_string()));
        }
        let (Some(local), Some(remote)) = (get("local")?, get("remote")?) else {
            return Err(ApiError::ExplainParams("no flow given".into()));
        };
        let address = |name: &str, value: &str| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| ApiError::ExplainParams(format!("{name} {value:?} is not an IP:PORT")))
        };
        let protocol = match get("protocol")?.unwrap_or("tcp") {
            "tcp" => 6,
            "udp" => 17,
            other => {
                return Err(ApiError::ExplainParams(format!(
                    "protocol {other:?} is neither tcp nor udp"
                )))
            }
        };
        Ok(Target::Tuple {
            protocol,
            local: address("local", local)?,
            remote: address("remote", remote)?,
        })
    }

    fn matches(&self, key: &FlowKey) -> bool {
        match self {
            Target::Id(id) => flow_id(key) == *id,
            Target::Tuple {
                protocol,
                local,
                remote,
            } => {
                key.protocol == *protocol
                    && local_addr(key).map(|ip| SocketAddr::new(ip, key.local_port)) == Some(*local)
                    && remote_addr(key).map(|ip| SocketAddr::new(ip, key.remote_port))
                        == Some(*remote)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Id(id) => id.clone(),
            Target::Tuple {
                protocol,
                local,
                remote,
            } => format!("{} {local} -> {remote}", protocol_name(*protocol, 2)),
        }
    }
}

/// What is read from the store under its lock.
struct Found {
    key: FlowKey,
    explanation: Explanation,
    /// The process's other flows with their traffic in the longest window.
    siblings: Vec<(FlowKey, Traffic)>,
}

/// The explanation of `target`, or 404 when no such flow is known.
pub async fn explain(
    store: &std::sync::RwLock<Store>,
    peers: &PeerNames,
    target: &Target,
) -> Result<Explanation, ApiError> {
    let found = {
        let store = store.read().unwrap_or_else(|e| e.into_inner());
        find(&store, peers, target, Instant::now())
    };
    let Some(mut found) = found else {
        return Err(ApiError::FlowGone {
            flow: target.describe(),
        });
    };
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
    Ok(found.explanation)
}

fn find(store: &Store, peers: &PeerNames, target: &Target, now: Instant) -> Option<Found> {
    // Of several matches (a socket shared after fork is split by process) the busiest.
    let (key, entry) = store
        .flows
        .entries()
        .filter(|(key, _)| target.matches(key))
        .max_by_key(|(_, entry)| entry.lifetime.tx_bytes + entry.lifetime.rx_bytes)?;
    let key = *key;
    let meta = entry.meta.clone();
    let mut windows = Vec::new();
    let mut siblings = HashMap::new();
    for window in [Window::W1s, Window::W10s, Window::W60s] {
        let length = window.duration();
        let mut traffic = Traffic::default();
        let covered = store.flows.window_each(now, length, |flow| {
            if *flow.key == key {
                traffic = flow.window;
            } else if window == Window::W60s && flow.meta.pid == meta.pid && meta.pid != 0 {
                siblings.insert(*flow.key, flow.window);
            }
        });
        windows.push(WindowRates {
            window_seconds: length.as_secs(),
            rates: rates(&traffic, &entry.lifetime, seconds(covered, length)),
        });
    }
    let remote = remote_addr(&key)?;
    let explanation = Explanation {
        flow: ExplainedFlow {
            id: flow_id(&key),
            protocol: protocol_name(key.protocol, key.family),
            local: endpoint(local_addr(&key), key.local_port),
            remote: endpoint(Some(remote), key.remote_port),
            direction: "outbound".into(),
            cgroup: meta.cgroup.to_string(),
        },
        interface: None,
        nat: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_flow_is_named_by_id_or_by_tuple() {
        let by_id = Target::from_pairs(&pairs(&[("flow", "00ab")])).unwrap();
        assert_eq!(by_id, Target::Id("00ab".into()));
        let by_tuple = Target::from_pairs(&pairs(&[
            ("local", "10.0.0.1:3129"),
            ("remote", "203.0.113.5:40000"),
            ("protocol", "tcp"),
        ]))
        .unwrap();
        assert_eq!(
            by_tuple,
            Target::Tuple {
                protocol: 6,
                local: "10.0.0.1:3129".parse().unwrap(),
                remote: "203.0.113.5:40000".parse().unwrap(),
            }
        );
        for bad in [
            &[][..],
            &[("local", "10.0.0.1:1")],
            &[("local", "10.0.0.1"), ("remote", "10.0.0.2:1")],
            &[
                ("local", "10.0.0.1:1"),
                ("remote", "10.0.0.2:1"),
                ("protocol", "icmp"),
            ],
            &[("flow", "a"), ("flow", "b")],
        ] {
            let err = Target::from_pairs(&pairs(bad)).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn ids_differ_by_tuple_and_stay_the_same() {
        let key = FlowKey {
            cookie: 7,
            cgroup_id: 1,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            local_port: 1,
            remote_port: 2,
            family: trafficd_common::AF_INET,
            protocol: 6,
            _pad: [0; 2],
        };
        let other = FlowKey {
            remote_port: 3,
            ..key
        };
        assert_eq!(flow_id(&key), flow_id(&key));
        assert_ne!(flow_id(&key), flow_id(&other));
        assert!(Target::Id(flow_id(&key)).matches(&key));
        assert!(!Target::Id(flow_id(&key)).matches(&other));
    }
}
