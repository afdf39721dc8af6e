//! GET /top for links: `by=interface`, and the forwarded flows that `by=flow` ranks beside
//! local sockets' flows.

use std::{collections::HashMap, net::SocketAddr, time::Instant};

use trafficd_common::{
    forwarding::{kind, EGRESS},
    Traffic,
};

use super::rank::{endpoint, protocol_name, ranked, render, Best};
use crate::{
    api::{
        FlowItem, FlowPath, InterfaceItem, Item, NatHop, Owner, Parts, PeerItem, Rates, Sort,
        Split, TopQuery, Tuple, UnattributedParts,
    },
    enrich::{conntrack::FlowTuple, nat, peers::PeerNames},
    stats::{address, PartKey, Store, Windowed},
};

/// Every interface's own counters, busiest first, each with its split by kind.
pub fn interfaces(store: &Store, query: &TopQuery, now: Instant) -> Vec<Item<InterfaceItem>> {
    let links = &store.interfaces;
    let mut parts: HashMap<PartKey, (Traffic, Traffic)> = HashMap::new();
    links
        .parts
        .window_each(now, query.window.duration(), |part| {
            parts.insert(*part.key, (part.window, part.lifetime));
        });
    // Every interface, idle ones too: an idle uplink is an answer as well.
    let window = query.window.duration();
    let mut moved: HashMap<u32, Traffic> = HashMap::new();
    let covered = links.interfaces.window_each(now, window, |w| {
        moved.insert(*w.key, w.window);
    });
    let mut best = Best::new(query);
    for (ifindex, entry) in links.interfaces.entries() {
        best.push(Windowed {
            key: ifindex,
            window: moved.get(ifindex).copied().unwrap_or_default(),
            lifetime: entry.lifetime,
            meta: &entry.meta,
        });
    }
    let mut items = render(best.finish(), covered, window, |ifindex, meta| {
        InterfaceItem {
            interface: meta.name.to_string(),
            ifindex: *ifindex,
            up: meta.up,
            capacity_bytes_per_sec: meta.capacity,
            utilization: None,
            // Filled in below, where the item's own bytes are known.
            split: meta.counted.then(Split::default),
            lifetime_split: meta.counted.then(Split::default),
        }
    });
    for item in &mut items {
        let rates = &item.rates;
        let identity = &mut item.identity;
        identity.utilization = utilization(identity.capacity_bytes_per_sec, rates);
        if identity.split.is_none() {
            continue;
        }
        let of = |which: fn(&(Traffic, Traffic)) -> Traffic| {
            let mut counted = [Traffic::default(); 4];
            for (kind, _) in kind::ALL {
                let key = PartKey {
                    ifindex: identity.ifindex,
                    kind,
                };
                counted[kind as usize] = parts.get(&key).map(which).unwrap_or_default();
            }
            counted
        };
        let window = (rates.tx_bytes, rates.rx_bytes);
        let lifetime = (rates.lifetime_tx_bytes, rates.lifetime_rx_bytes);
        identity.split = Some(split(&of(|p| p.0), window));
        identity.lifetime_split = Some(split(&of(|p| p.1), lifetime));
    }
    items
}

/// The busier direction's rate over `capacity`, to three decimals; none without a capacity.
pub(super) fn utilization(capacity: Option<u64>, rates: &Rates) -> Option<f64> {
    capacity.map(|capacity| {
        let busier = rates.tx_bytes_per_second.max(rates.rx_bytes_per_second);
        (busier / capacity.max(1) as f64 * 1000.0).round() / 1000.0
    })
}

/// The parts of `device` (transmit, receive bytes) by kind; what no part holds is not seen.
fn split(counted: &[Traffic; 4], device: (u64, u64)) -> Split {
    let parts = |bytes: fn(&Traffic) -> u64, device: u64| {
        let [local, forwarded, dropped, non_ip] = counted.map(|t| bytes(&t));
        let seen = local + forwarded + dropped + non_ip;
        Parts {
            local,
            forwarded,
            unattributed: UnattributedParts {
                dropped,
                non_ip,
                not_seen: device.saturating_sub(seen),
            },
        }
    };
    debug_assert_eq!(kind::LOCAL, 0);
    Split {
        transmit: parts(|t| t.tx_bytes, device.0),
        receive: parts(|t| t.rx_bytes, device.1),
    }
}

/// The busiest forwarded flows, as flow items.
pub fn forwarded_flows(
    store: &Store,
    query: &TopQuery,
    now: Instant,
    peers: &PeerNames,
) -> Vec<Item<FlowItem>> {
    ranked(&store.interfaces.forwarded, query, now, |key, meta| {
        FlowItem {
            protocol: protocol_name(key.protocol, key.family),
            local: endpoint(Some(address(key.family, &key.src_addr)), key.src_port),
            remote: endpoint(Some(address(key.family, &key.dst_addr)), key.dst_port),
            pid: 0,
            comm: String::new(),
            cgroup: String::new(),
            // The owner of the container one end lives in; unknown for flows passing through.
            owner: meta.owner.as_deref().map(Owner::from).unwrap_or_default(),
            id: super::rank::flow_id(key),
            peer: Some(PeerItem::from(
                &peers.lookup(address(key.family, &key.dst_addr)),
            )),
            path: FlowPath {
                interface: Some(meta.interface.to_string()),
                direction: Some(
                    if key.direction == EGRESS {
                        "egress"
                    } else {
                        "ingress"
                    }
                    .into(),
                ),
                nat: meta.nat.iter().map(hop).collect(),
                container: meta.container.as_deref().map(str::to_string),
                namespace: meta.namespace.as_deref().map(str::to_string),
                local_socket: false,
            },
        }
    })
}

/// Local sockets' and forwarded flows together, the best `limit` of both, busiest first.
pub fn merge(
    mut flows: Vec<Item<FlowItem>>,
    forwarded: Vec<Item<FlowItem>>,
    query: &TopQuery,
) -> Vec<Item<FlowItem>> {
    flows.extend(forwarded);
    let sort = query.sort;
    let weight = move |tx: u64, rx: u64| match sort {
        Sort::Total => tx + rx,
        Sort::Tx => tx,
        Sort::Rx => rx,
    };
    flows.sort_by_key(|item| {
        let r = &item.rates;
        std::cmp::Reverse((
            weight(r.tx_bytes, r.rx_bytes),
            weight(r.lifetime_tx_bytes, r.lifetime_rx_bytes),
        ))
    });
    flows.truncate(query.limit.get());
    flows
}

pub(super) fn hop(hop: &nat::NatHop) -> NatHop {
    NatHop {
        original: tuple(&hop.original),
        reply: tuple(&hop.reply),
        seen_in: hop.seen_in.to_string(),
    }
}

fn tuple(tuple: &FlowTuple) -> Tuple {
    let family = match tuple.src {
        SocketAddr::V4(_) => trafficd_common::AF_INET,
        SocketAddr::V6(_) => trafficd_common::AF_INET6,
    };
    Tuple {
        protocol: protocol_name(tuple.protocol, family),
        src: tuple.src.to_string(),
        dst: tuple.dst.to_string(),
    }
}
