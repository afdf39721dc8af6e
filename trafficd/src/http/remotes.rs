//! /top?by=remote: remote addresses summed over their flows, and those sharing a name summed
//! into one item. Names are looked up once per remote in the window, at query time.

use std::{cmp::Reverse, collections::HashMap, net::IpAddr, sync::Arc, time::Instant};

use trafficd_common::Traffic;

use super::rank::{render, weight, Best};
use crate::{
    api::{Item, RemoteItem, Sort, TopQuery},
    enrich::peers::{AddressClass, PeerNames, PeerSource},
    stats::{Store, Windowed},
};

/// Remotes are sums over flows, expired flows included, rather than a dimension of their own.
/// Remotes sharing a name are one item; an unnamed remote is one item per address.
pub fn remotes(
    store: &Store,
    query: &TopQuery,
    now: Instant,
    peers: &PeerNames,
) -> Vec<Item<RemoteItem>> {
    let window = query.window.duration();
    let (remotes, covered) = store.remotes.window(&store.flows, now, window);
    let mut groups: Vec<RemoteGroup> = Vec::new();
    let mut named: HashMap<Arc<str>, usize> = HashMap::new();
    for remote in remotes {
        let peer = peers.lookup(remote.remote);
        let index = match &peer.name {
            Some(name) => *named.entry(name.clone()).or_insert_with(|| {
                groups.push(RemoteGroup::new(peer.name.clone(), peer.source, peer.class));
                groups.len() - 1
            }),
            None => {
                groups.push(RemoteGroup::new(None, None, peer.class));
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        group.window = group.window.add(&remote.window);
        group.lifetime = group.lifetime.add(&remote.lifetime);
        group.ips.push((remote.remote, remote.window));
    }
    let mut best = Best::new(query);
    for group in &groups {
        best.push(Windowed {
            key: group,
            window: group.window,
            lifetime: group.lifetime,
            meta: &(),
        });
    }
    render(best.finish(), covered, window, |group, _| {
        group.item(query.sort)
    })
}

/// Remotes summed into one /top item.
struct RemoteGroup {
    name: Option<Arc<str>>,
    source: Option<PeerSource>,
    class: AddressClass,
    ips: Vec<(IpAddr, Traffic)>,
    window: Traffic,
    lifetime: Traffic,
}

impl RemoteGroup {
    fn new(name: Option<Arc<str>>, source: Option<PeerSource>, class: AddressClass) -> Self {
        RemoteGroup {
            name,
            source,
            class,
            ips: Vec::new(),
            window: Traffic::default(),
            lifetime: Traffic::default(),
        }
    }

    /// The item: `remote` is the name, or the address of an unnamed remote.
    fn item(&self, sort: Sort) -> RemoteItem {
        let mut ips = self.ips.clone();
        ips.sort_by_key(|(ip, traffic)| (Reverse(weight(sort, traffic)), *ip));
        let remote = match &self.name {
            Some(name) => name.to_string(),
            None => ips
                .first()
                .map(|(ip, _)| ip.to_string())
                .unwrap_or_default(),
        };
        RemoteItem {
            remote,
            name: self.name.as_deref().map(str::to_string),
            source: self.source,
            class: Some(self.class),
            ips: ips.into_iter().map(|(ip, _)| ip).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use trafficd_common::FlowKey;

    use super::*;
    use crate::{api::By, http::top::top, stats::FlowInfo};

    fn json(response: crate::api::TopResponse) -> serde_json::Value {
        serde_json::to_value(response).unwrap()
    }

    #[test]
    fn remotes_sharing_a_name_are_one_item_and_flows_carry_their_peer() {
        let now = Instant::now();
        let mut store = Store::new(now);
        let flow = |remote: [u8; 4]| FlowKey {
            cookie: u64::from(remote[3]),
            cgroup_id: 1,
            local_addr: [0; 16],
            remote_addr: {
                let mut a = [0; 16];
                a[..4].copy_from_slice(&remote);
                a
            },
            local_port: 5000,
            remote_port: 443,
            family: trafficd_common::AF_INET,
            protocol: 6,
            _pad: [0; 2],
        };
        let tx = |b| Traffic {
            tx_bytes: b,
            ..Traffic::default()
        };
        let info = Arc::new(FlowInfo::default());
        let moved = [
            (flow([10, 8, 1, 3]), 100),
            (flow([10, 8, 1, 4]), 300),
            (flow([203, 0, 113, 5]), 50),
        ];
        let deltas = moved.iter().map(|(k, n)| (*k, tx(*n), info.clone()));
        store
            .flows
            .record(now, Duration::from_secs(1), deltas.collect());
        let peers = PeerNames::with_labels("10.8.1.0/24 squid-proxies\n");
        let ask = |by| {
            let query = TopQuery {
                by,
                ..TopQuery::default()
            };
            json(top(&store, &query, now, &peers))
        };
        let remotes = ask(By::Remote);
        assert_eq!(
            remotes["items"][0],
            serde_json::json!({
                "remote": "squid-proxies", "name": "squid-proxies", "source": "labels",
                "class": "private", "ips": ["10.8.1.4", "10.8.1.3"],
                "tx_bytes": 400, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0,
                "tx_bytes_per_second": 400.0, "rx_bytes_per_second": 0.0,
                "lifetime_tx_bytes": 400, "lifetime_rx_bytes": 0,
                "lifetime_tx_packets": 0, "lifetime_rx_packets": 0,
            })
        );
        let stranger = &remotes["items"][1];
        assert_eq!(stranger["remote"], "203.0.113.5");
        assert!(stranger["name"].is_null());
        assert_eq!(stranger["class"], "documentation");
        assert_eq!(remotes["items"].as_array().unwrap().len(), 2);

        let flows = ask(By::Flow);
        let first = &flows["items"][0];
        assert_eq!(first["remote"], "10.8.1.4:443");
        assert_eq!(
            first["peer"],
            serde_json::json!({"ip": "10.8.1.4", "name": "squid-proxies",
                               "source": "labels", "class": "private"})
        );
        assert_eq!(
            first["id"],
            crate::http::rank::flow_id(&flow([10, 8, 1, 4]))
        );
    }

    /// /top?by=remote over 100k remotes, with 10k labelled networks and without: the names
    /// are looked up here, at query time, so this is what they cost.
    /// `cargo test --release -p trafficd --bins remotes -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run it in release with --ignored --nocapture"]
    fn top_remotes_of_a_hundred_thousand_flows() {
        use crate::enrich::peers::bench::{labels_file, next};
        let now = Instant::now();
        let mut store = Store::new(now);
        let mut state = 0x5eed_1234;
        let info = Arc::new(FlowInfo::default());
        let deltas = (0..100_000u64)
            .map(|cookie| {
                let mut remote_addr = [0; 16];
                remote_addr[..4].copy_from_slice(&next(&mut state).to_be_bytes());
                let key = FlowKey {
                    cookie,
                    cgroup_id: 1,
                    local_addr: [0; 16],
                    remote_addr,
                    local_port: 5000,
                    remote_port: 443,
                    family: trafficd_common::AF_INET,
                    protocol: 6,
                    _pad: [0; 2],
                };
                let traffic = Traffic {
                    tx_bytes: cookie,
                    ..Traffic::default()
                };
                (key, traffic, info.clone())
            })
            .collect();
        store.flows.record(now, Duration::from_secs(1), deltas);
        let query = TopQuery {
            by: By::Remote,
            ..TopQuery::default()
        };
        for (what, peers) in [
            ("no labels", PeerNames::with_labels("")),
            (
                "10k labelled networks",
                PeerNames::with_labels(&labels_file()),
            ),
        ] {
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let started = Instant::now();
                let response = top(&store, &query, now, &peers);
                best = best.min(started.elapsed());
                assert_eq!(response.items.len(), 10);
            }
            println!("/top?by=remote, 100k remotes, {what}: {best:?} (best of 5)");
        }
    }
}
