//! The answer to GET /top: `{"by", "window_seconds", "items": [...]}`, each item one
//! group's identity (which depends on `by`) followed by its bytes and rates.

use serde::{Deserialize, Serialize};

use super::{By, FlowPath, InterfaceItem, Owner};
use crate::{
    attribution::Unattributed,
    enrich::peers::{AddressClass, Peer, PeerSource},
};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(try_from = "TopWire")]
pub struct TopResponse {
    pub by: By,
    pub window_seconds: u64,
    pub items: Items,
}

/// The ranked items, busiest first; the variant is the response's `by`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Items {
    Process(Vec<Item<ProcessItem>>),
    Cgroup(Vec<Item<CgroupItem>>),
    Flow(Vec<Item<FlowItem>>),
    Remote(Vec<Item<RemoteItem>>),
    Container(Vec<Item<ContainerItem>>),
    Interface(Vec<Item<InterfaceItem>>),
}

impl Items {
    pub fn len(&self) -> usize {
        match self {
            Items::Process(items) => items.len(),
            Items::Cgroup(items) => items.len(),
            Items::Flow(items) => items.len(),
            Items::Remote(items) => items.len(),
            Items::Container(items) => items.len(),
            Items::Interface(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One group: who it is, then what it moved. Both flatten into one JSON object.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Item<I> {
    #[serde(flatten)]
    pub identity: I,
    #[serde(flatten)]
    pub rates: Rates,
}

/// Bytes and rates of one group; shared by every kind of item. The window's figures, then
/// the lifetime's (since the daemon started).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub tx_bytes_per_second: f64,
    pub rx_bytes_per_second: f64,
    pub lifetime_tx_bytes: u64,
    pub lifetime_rx_bytes: u64,
    pub lifetime_tx_packets: u64,
    pub lifetime_rx_packets: u64,
}

/// A process, or (pid 0, with a reason) bytes no process owns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProcessItem {
    /// The pid on the host.
    pub pid: u32,
    /// The pid inside the process's own pid namespace (a container's processes have two);
    /// null when /proc could not tell.
    pub pid_in_namespace: Option<u32>,
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub user: String,
    pub uid: Option<u32>,
    pub cgroup: String,
    pub owner: Owner,
    pub reason: Option<Unattributed>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CgroupItem {
    pub cgroup: String,
    pub cgroup_id: u64,
    pub owner: Owner,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FlowItem {
    pub protocol: String,
    /// ip:port, IPv6 in brackets; empty when the address is unknown.
    pub local: String,
    pub remote: String,
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    pub owner: Owner,
    /// Stable while the flow lives: what GET /explain?flow= takes.
    #[serde(default)]
    pub id: String,
    /// Who the remote address is, as far as the daemon can name it now.
    #[serde(default)]
    pub peer: Option<PeerItem>,
    #[serde(flatten)]
    pub path: FlowPath,
}

/// A remote address and its name: `{"ip", "name", "source", "class"}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerItem {
    pub ip: std::net::IpAddr,
    pub name: Option<String>,
    pub source: Option<PeerSource>,
    pub class: AddressClass,
}

impl From<&Peer> for PeerItem {
    fn from(peer: &Peer) -> PeerItem {
        PeerItem {
            ip: peer.ip,
            name: peer.name.as_deref().map(str::to_string),
            source: peer.source,
            class: peer.class,
        }
    }
}

/// A remote peer: the remotes sharing a name are one item (`remote` is then the name), an
/// unnamed remote is one item per address.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    pub remote: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub source: Option<PeerSource>,
    /// The class of the busiest address.
    #[serde(default)]
    pub class: Option<AddressClass>,
    /// The addresses summed into this item, busiest first.
    #[serde(default)]
    pub ips: Vec<std::net::IpAddr>,
}

/// One owner's bytes: a container, pod, unit or the host, the sum of its cgroups. Cgroups of
/// a layout trafficd does not know are each their own item, kind `unknown`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ContainerItem {
    #[serde(flatten)]
    pub owner: Owner,
    /// The owner's busiest cgroup in the window (its only one, for most).
    pub cgroup: String,
    /// How many cgroups the owner's bytes came from.
    pub cgroups: u32,
}

/// The response as it reads off the wire: `items` can only be typed once `by` is known.
#[derive(Deserialize)]
struct TopWire {
    by: By,
    window_seconds: u64,
    items: serde_json::Value,
}

impl TryFrom<TopWire> for TopResponse {
    type Error = serde_json::Error;

    fn try_from(wire: TopWire) -> Result<Self, Self::Error> {
        let items = match wire.by {
            By::Process => Items::Process(serde_json::from_value(wire.items)?),
            By::Cgroup => Items::Cgroup(serde_json::from_value(wire.items)?),
            By::Flow => Items::Flow(serde_json::from_value(wire.items)?),
            By::Remote => Items::Remote(serde_json::from_value(wire.items)?),
            By::Container => Items::Container(serde_json::from_value(wire.items)?),
            By::Interface => Items::Interface(serde_json::from_value(wire.items)?),
        };
        Ok(TopResponse {
            by: wire.by,
            window_seconds: wire.window_seconds,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rates_json() -> serde_json::Value {
        json!({
            "tx_bytes": 1, "rx_bytes": 2, "tx_packets": 3, "rx_packets": 4,
            "tx_bytes_per_second": 0.1, "rx_bytes_per_second": 0.2,
            "lifetime_tx_bytes": 5, "lifetime_rx_bytes": 6,
            "lifetime_tx_packets": 7, "lifetime_rx_packets": 8,
        })
    }

    fn with_rates(identity: serde_json::Value) -> serde_json::Value {
        let mut item = rates_json();
        if let (Some(item), Some(identity)) = (item.as_object_mut(), identity.as_object()) {
            item.extend(identity.clone());
        }
        item
    }

    /// Today's JSON for each `by` reads into the types and writes back unchanged.
    #[test]
    fn every_kind_round_trips_with_todays_field_names() {
        let unknown = json!({"kind": "unknown", "name": null, "container": null, "pod": null,
                             "unit": null});
        let host = json!({"kind": "host", "name": "host", "container": null, "pod": null,
                          "unit": null});
        let container = json!({
            "kind": "container", "name": "openvpn",
            "container": {"id": "ab12", "short_id": "ab12", "name": "openvpn",
                          "image": "local/vpn:1", "runtime": "docker",
                          "compose_project": null, "compose_service": null},
            "pod": {"uid": "0b4d", "name": "vpn-1", "namespace": "edge"},
            "unit": null});
        let mut by_container = container.clone();
        if let Some(fields) = by_container.as_object_mut() {
            fields.insert("cgroup".into(), json!("/docker/ab12"));
            fields.insert("cgroups".into(), json!(1));
        }
        let identities = [
            (
                "process",
                json!({"pid": 0, "pid_in_namespace": null, "comm": "", "cmdline": "", "exe": "",
                       "user": "", "uid": null, "cgroup": "", "owner": host,
                       "reason": "owner-unknown"}),
            ),
            (
                "cgroup",
                json!({"cgroup": "/docker/abc", "cgroup_id": 42, "owner": container}),
            ),
            (
                "flow",
                json!({"protocol": "tcp", "local": "127.0.0.1:1", "remote": "[::1]:2",
                       "pid": 9, "comm": "curl", "cgroup": "/", "owner": host, "interface": null,
                       "direction": null, "nat": [], "container": null, "namespace": null,
                       "local_socket": true, "id": "00ab",
                       "peer": {"ip": "::1", "name": null, "source": null, "class": "loopback"}}),
            ),
            (
                "flow",
                json!({"protocol": "tcp", "local": "10.8.1.1:40142", "remote": "10.8.1.3:3129",
                       "pid": 0, "comm": "", "cgroup": "", "owner": unknown, "interface": "veth0",
                       "direction": "egress",
                       "nat": [{"original": {"protocol": "tcp", "src": "172.17.0.2:53312",
                                             "dst": "10.8.1.3:3129"},
                                "reply": {"protocol": "tcp", "src": "10.8.1.3:3129",
                                          "dst": "10.8.1.1:40142"},
                                "seen_in": "host"}],
                       "container": "/docker/ab12", "namespace": "/docker/ab12",
                       "local_socket": false, "id": "00cd", "peer": null}),
            ),
            (
                "interface",
                json!({"interface": "eth0", "ifindex": 2, "up": true,
                       "capacity_bytes_per_sec": 1250000000u64, "utilization": 0.5,
                       "split": {"transmit": {"local": 1, "forwarded": 2,
                                              "unattributed": {"dropped": 0, "non_ip": 3,
                                                               "not_seen": 4}},
                                 "receive": {"local": 1, "forwarded": 2,
                                             "unattributed": {"dropped": 5, "non_ip": 3,
                                                              "not_seen": 0}}},
                       "lifetime_split": null}),
            ),
            (
                "remote",
                json!({"remote": "tke-xxx", "name": "tke-xxx", "source": "openvpn",
                       "class": "private", "ips": ["172.16.248.22"]}),
            ),
            ("container", by_container),
        ];
        for (by, identity) in identities {
            let wire = json!({"by": by, "window_seconds": 60, "items": [with_rates(identity)]});
            let typed: TopResponse = serde_json::from_value(wire.clone()).unwrap();
            assert_eq!(typed.by.to_string(), by);
            assert_eq!(typed.items.len(), 1);
            assert_eq!(serde_json::to_value(&typed).unwrap(), wire, "by={by}");
        }
    }

    #[test]
    fn items_of_another_kind_are_refused() {
        let wire = json!({"by": "process", "window_seconds": 10,
                          "items": [with_rates(json!({"remote": "10.0.0.1"}))]});
        assert!(serde_json::from_value::<TopResponse>(wire).is_err());
    }
}
