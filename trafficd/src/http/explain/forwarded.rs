//! A forwarded flow: the interface it was counted on and how busy that is, each NAT hop with
//! who its original source is, and the container one of its ends lives in.

use std::time::Instant;

use trafficd_common::forwarding::{ForwardKey, EGRESS};

use super::{windows, Target};
use crate::{
    api::{ExplainedFlow, ExplainedHop, ExplainedInterface, Explanation, Owner, PeerItem, Window},
    enrich::peers::PeerNames,
    http::{
        links,
        rank::{endpoint, flow_id, protocol_name},
    },
    stats::{address, ForwardInfo, Store},
};

/// The window an interface's utilization is given over.
const UTILIZATION_WINDOW: Window = Window::W10s;

pub(super) fn find(
    store: &Store,
    peers: &PeerNames,
    target: &Target,
    now: Instant,
) -> Option<Explanation> {
    let forwarded = &store.interfaces.forwarded;
    // One flow is counted on each interface it crosses: the busiest is the one asked about.
    let (key, entry) = forwarded
        .entries()
        .filter(|(key, _)| target.matches_forwarded(key))
        .max_by_key(|(_, entry)| entry.lifetime.tx_bytes + entry.lifetime.rx_bytes)?;
    let all = [Window::W1s, Window::W10s, Window::W60s];
    let windows = windows(forwarded, key, &entry.lifetime, &all, now, |_, _| {});
    let meta = &entry.meta;
    let source = address(key.family, &key.src_addr);
    let destination = address(key.family, &key.dst_addr);
    Some(Explanation {
        flow: ExplainedFlow {
            id: flow_id(key),
            protocol: protocol_name(key.protocol, key.family),
            local: endpoint(Some(source), key.src_port),
            remote: endpoint(Some(destination), key.dst_port),
            direction: "forwarded".into(),
            cgroup: meta.container.as_deref().unwrap_or_default().to_string(),
            namespace: meta.namespace.as_deref().map(str::to_string),
        },
        interface: Some(interface(store, key, meta, now)),
        nat: Some(hops(meta, peers)),
        owner: meta.owner.as_deref().map(Owner::from).unwrap_or_default(),
        process: None,
        peer: PeerItem::from(&peers.lookup(destination)),
        windows,
        inbound_peers: Vec::new(),
    })
}

/// The interface `key` was counted on, with its utilization as /top?by=interface gives it.
fn interface(
    store: &Store,
    key: &ForwardKey,
    meta: &ForwardInfo,
    now: Instant,
) -> ExplainedInterface {
    let interfaces = &store.interfaces.interfaces;
    let known = interfaces
        .entries()
        .find(|(ifindex, _)| **ifindex == key.ifindex);
    let capacity = known.and_then(|(_, entry)| entry.meta.capacity);
    let utilization = known.and_then(|(ifindex, entry)| {
        let window = [UTILIZATION_WINDOW];
        let rates = windows(
            interfaces,
            ifindex,
            &entry.lifetime,
            &window,
            now,
            |_, _| {},
        );
        links::utilization(capacity, &rates.first()?.rates)
    });
    ExplainedInterface {
        name: known.map_or_else(
            || meta.interface.to_string(),
            |(_, e)| e.meta.name.to_string(),
        ),
        ifindex: key.ifindex,
        direction: if key.direction == EGRESS {
            "egress"
        } else {
            "ingress"
        }
        .into(),
        capacity_bytes_per_sec: capacity,
        utilization,
        window_seconds: UTILIZATION_WINDOW.duration().as_secs(),
    }
}

fn hops(meta: &ForwardInfo, peers: &PeerNames) -> Vec<ExplainedHop> {
    meta.nat
        .iter()
        .map(|hop| ExplainedHop {
            hop: links::hop(hop),
            source: PeerItem::from(&peers.lookup(hop.original.src.ip())),
        })
        .collect()
}
