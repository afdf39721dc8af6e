//! The link side of GET /top: one item per interface for `by=interface`, and what every flow
//! item says about the path it took (`by=flow`): the interface, the direction, NAT hops.

use serde::{Deserialize, Serialize};

/// One interface: its own counters (the item's bytes and rates), what it can carry, and how
/// its bytes split by kind in the window and since the daemon started.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InterfaceItem {
    pub interface: String,
    pub ifindex: u32,
    pub up: bool,
    /// From `--interface-capacity` or the driver's speed; null for virtual links without one.
    pub capacity_bytes_per_sec: Option<u64>,
    /// The busier direction's rate over the capacity, 0 to 1 (or above when the capacity is
    /// set too low); null without a capacity.
    pub utilization: Option<f64>,
    /// The window's bytes by kind; null where the tc programs do not count on it.
    pub split: Option<Split>,
    /// The same since the daemon started counting on the interface.
    pub lifetime_split: Option<Split>,
}

/// An interface's bytes by kind, per direction (transmit is egress, receive is ingress).
/// In each direction the parts add up to the interface's own counter.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    pub transmit: Parts,
    pub receive: Parts,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    /// Local sockets' bytes: the socket hooks attribute them to processes.
    pub local: u64,
    /// Routed, bridged or NAT'd through this host: no local socket.
    pub forwarded: u64,
    pub unattributed: UnattributedParts,
}

/// Bytes no process and no forwarded flow owns, by reason.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnattributedParts {
    /// Received, and dropped by the kernel (no route, or addressed to another host).
    pub dropped: u64,
    /// Not IP (ARP, LLDP, ...).
    pub non_ip: u64,
    /// Counted by the device and by no tc program: before trafficd attached within a drain,
    /// or what a full map could not record.
    pub not_seen: u64,
}

/// The path of a flow: where it was seen, and what NAT did to it. Flattened into each flow
/// item.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowPath {
    /// The interface a forwarded flow was counted on; null for local sockets' flows.
    #[serde(default)]
    pub interface: Option<String>,
    /// `ingress` or `egress` on that interface; null for local sockets' flows.
    #[serde(default)]
    pub direction: Option<String>,
    /// Each translation the flow went through, the host's first.
    #[serde(default)]
    pub nat: Vec<NatHop>,
    /// The cgroup of the container (or process) whose network namespace one end of a
    /// forwarded flow lives in, e.g. `/docker/<id>`.
    #[serde(default)]
    pub container: Option<String>,
    /// That network namespace: `netns <name>`, a cgroup, or `netns:[<inode>]`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Whether a local socket sent or receives the flow (false: forwarded).
    #[serde(default = "yes")]
    pub local_socket: bool,
}

impl FlowPath {
    /// A local socket's flow: the socket hooks counted it, on no particular interface.
    pub fn of_local_socket() -> FlowPath {
        FlowPath {
            local_socket: true,
            ..FlowPath::default()
        }
    }
}

fn yes() -> bool {
    true
}

/// One NAT translation as conntrack holds it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NatHop {
    pub original: Tuple,
    pub reply: Tuple,
    /// `host`, or the namespace the translation was found in.
    pub seen_in: String,
}

/// One direction of a connection: `src` and `dst` as ip:port, IPv6 in brackets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    pub protocol: String,
    pub src: String,
    pub dst: String,
}
