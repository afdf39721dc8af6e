//! GET /explain: one flow, from the wire to the process, with what the daemon knows now.
//!
//! A flow is a local socket's ([`local`]: its process, and the peers feeding a forwarder) or
//! one the host forwarded ([`forwarded`]: its interface, NAT hops and container). Both are
//! read from the store under its lock; a local flow's listening sockets are read after it.

mod forwarded;
mod local;

use std::{hash::Hash, net::SocketAddr, time::Instant};

use trafficd_common::{forwarding::ForwardKey, FlowKey, Traffic};

use super::rank::{flow_id, protocol_name, rates, seconds};
use crate::{
    api::{ApiError, Explanation, Window, WindowRates},
    enrich::peers::PeerNames,
    stats::{address, local_addr, remote_addr, Dimension, Store, Windowed},
};

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
        let end = |ip: Option<std::net::IpAddr>, port| ip.map(|ip| SocketAddr::new(ip, port));
        self.names(
            key,
            key.protocol,
            end(local_addr(key), key.local_port),
            end(remote_addr(key), key.remote_port),
        )
    }

    fn matches_forwarded(&self, key: &ForwardKey) -> bool {
        let end = |ip: &[u8; 16], port| Some(SocketAddr::new(address(key.family, ip), port));
        self.names(
            key,
            key.protocol,
            end(&key.src_addr, key.src_port),
            end(&key.dst_addr, key.dst_port),
        )
    }

    /// Whether this target names the flow of `key`, whose protocol and two ends are given:
    /// by its id, or by its tuple.
    fn names(
        &self,
        key: &impl Hash,
        protocol: u8,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> bool {
        match self {
            Target::Id(id) => flow_id(key) == *id,
            Target::Tuple {
                protocol: wanted,
                local: want_local,
                remote: want_remote,
            } => protocol == *wanted && local == Some(*want_local) && remote == Some(*want_remote),
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

/// The explanation of `target`, or 404 when no such flow is known.
pub async fn explain(
    store: &std::sync::RwLock<Store>,
    peers: &PeerNames,
    target: &Target,
) -> Result<Explanation, ApiError> {
    let (local, forwarded) = {
        let store = store.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match local::find(&store, peers, target, now) {
            Some(found) => (Some(found), None),
            None => (None, forwarded::find(&store, peers, target, now)),
        }
    };
    if let Some(found) = local {
        return Ok(local::with_listeners(found, peers).await);
    }
    forwarded.ok_or_else(|| ApiError::FlowGone {
        flow: target.describe(),
    })
}

/// The flow `key` of `dimension` over each of `windows`; `other` sees every other group of
/// each window.
fn windows<'a, K: Hash + Eq + Clone, M: Clone + PartialEq>(
    dimension: &'a Dimension<K, M>,
    key: &K,
    lifetime: &Traffic,
    windows: &[Window],
    now: Instant,
    mut other: impl FnMut(Window, Windowed<'a, K, M>),
) -> Vec<WindowRates> {
    let mut found = Vec::new();
    for &window in windows {
        let length = window.duration();
        let mut traffic = Traffic::default();
        let covered = dimension.window_each(now, length, |group| {
            if group.key == key {
                traffic = group.window;
            } else {
                other(window, group);
            }
        });
        found.push(WindowRates {
            window_seconds: length.as_secs(),
            rates: rates(&traffic, lifetime, seconds(covered, length)),
        });
    }
    found
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

    #[test]
    fn a_forwarded_flow_is_named_by_id_or_by_its_wire_tuple() {
        let mut src_addr = [0; 16];
        src_addr[..4].copy_from_slice(&[10, 0, 7, 248]);
        let mut dst_addr = [0; 16];
        dst_addr[..4].copy_from_slice(&[10, 8, 1, 3]);
        let key = ForwardKey {
            ifindex: 2,
            other_ifindex: 3,
            src_addr,
            dst_addr,
            src_port: 40142,
            dst_port: 3129,
            family: trafficd_common::AF_INET,
            protocol: 6,
            direction: trafficd_common::forwarding::EGRESS,
            _pad: 0,
        };
        assert!(Target::Id(flow_id(&key)).matches_forwarded(&key));
        let tuple = |local: &str, remote: &str| Target::Tuple {
            protocol: 6,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        };
        assert!(tuple("10.0.7.248:40142", "10.8.1.3:3129").matches_forwarded(&key));
        assert!(!tuple("10.8.1.3:3129", "10.0.7.248:40142").matches_forwarded(&key));
    }
}
