//! What the daemon knows about links: each interface's own counters, the split of its bytes
//! by kind (what local sockets moved, what was forwarded, what is left unattributed and why),
//! and the forwarded flows with their NAT hops. Written by the drain's interface phase.
//!
//! Every part is a [`Dimension`], so windows, rates and retention work as for processes: an
//! interface that vanished leaves after the retention, like an exited process.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use trafficd_common::{forwarding::ForwardKey, AF_INET};

use super::Dimension;
use crate::{
    enrich::{conntrack::FlowTuple, containers::Owner, nat::NatHop},
    kernel::TcLosses,
};

/// An interface as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: Arc<str>,
    pub up: bool,
    /// Bytes per second, from `--interface-capacity` or the driver.
    pub capacity: Option<u64>,
    /// Whether the tc programs count on it, so that its bytes have a split.
    pub counted: bool,
}

/// One part of an interface's bytes: transmit counts egress, receive counts ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartKey {
    pub ifindex: u32,
    /// A [`trafficd_common::forwarding::kind`].
    pub kind: u8,
}

/// A forwarded flow's description: where it was counted and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardInfo {
    pub interface: Arc<str>,
    /// The other interface of the hop (in or out), when known.
    pub other_interface: Option<Arc<str>>,
    pub nat: Vec<NatHop>,
    /// The cgroup of a process in the namespace one end of the flow lives in (a container's).
    pub container: Option<Arc<str>>,
    /// That namespace, as named by the NAT source.
    pub namespace: Option<Arc<str>>,
    /// Who owns `container`, as the container engines name it.
    pub owner: Option<Arc<Owner>>,
}

#[derive(Default)]
pub struct InterfaceStore {
    /// The kernel's counters of each interface, by ifindex.
    pub interfaces: Dimension<u32, InterfaceInfo>,
    /// The counted parts of each interface's bytes.
    pub parts: Dimension<PartKey, ()>,
    /// Forwarded flows: transmit on egress, receive on ingress.
    pub forwarded: Dimension<ForwardKey, Arc<ForwardInfo>>,
    /// What the tc programs could not record since start.
    pub losses: TcLosses,
    /// Whether the tc programs are counting (false: counters only, no split).
    pub counting: bool,
}

impl InterfaceStore {
    pub fn expire(&mut self, now: std::time::Instant, retention: std::time::Duration) {
        self.interfaces.expire(now, retention);
        self.parts.expire(now, retention);
        self.forwarded.expire(now, retention);
    }
}

/// The flow's tuple as the packets carried it.
pub fn tuple_of(key: &ForwardKey) -> FlowTuple {
    FlowTuple {
        protocol: key.protocol,
        src: SocketAddr::new(address(key.family, &key.src_addr), key.src_port),
        dst: SocketAddr::new(address(key.family, &key.dst_addr), key.dst_port),
    }
}

pub fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use trafficd_common::Traffic;

    use super::*;

    /// Every interface is recorded at every drain, idle or not: the window never holds more
    /// than the lifetime, and both hold what moved.
    #[test]
    fn idle_drains_keep_window_and_lifetime_alike() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut links = InterfaceStore::default();
        let info = InterfaceInfo::default();
        let rx = |bytes| Traffic {
            rx_bytes: bytes,
            ..Traffic::default()
        };
        for (i, bytes) in [0, 100, 0, 0, 200, 0, 30].into_iter().enumerate() {
            let deltas = vec![(7, rx(bytes), info.clone()), (9, rx(1), info.clone())];
            links
                .interfaces
                .record(start + second * (i as u32 + 1), second, deltas);
        }
        let now = start + second * 7;
        let mut seen = Vec::new();
        links
            .interfaces
            .window_each(now, Duration::from_secs(60), |w| {
                seen.push((*w.key, w.window.rx_bytes, w.lifetime.rx_bytes))
            });
        seen.sort();
        assert_eq!(seen, [(7, 330, 330), (9, 7, 7)]);
    }
}
