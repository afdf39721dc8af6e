//! The answer to GET /top: the groups that moved the most bytes in a window.

use std::{
    cmp::Reverse,
    time::{Duration, Instant},
};

use trafficd_common::Traffic;

use super::{by_owner, links};
use crate::{
    api::{
        By, CgroupItem, FlowItem, FlowPath, Item, Items, Owner, PeerItem, ProcessItem, Rates, Sort,
        TopQuery, TopResponse,
    },
    enrich::peers::PeerNames,
    stats::{local_addr, remote_addr, Dimension, Store, Windowed},
};

/// Names are looked up here, for the items shown, rather than by the drain for every flow.
pub fn top(store: &Store, query: &TopQuery, now: Instant, peers: &PeerNames) -> TopResponse {
    let items = match query.by {
        By::Process => Items::Process(ranked(&store.processes, query, now, |_, meta| {
            ProcessItem {
                pid: meta.pid,
                pid_in_namespace: meta.pid_in_namespace,
                comm: meta.comm.to_string(),
                cmdline: meta.cmdline.to_string(),
                exe: meta.exe.to_string(),
                user: meta.user.to_string(),
                uid: meta.uid,
                cgroup: meta.cgroup.to_string(),
                owner: Owner::from(&*meta.owner),
                reason: meta.reason,
            }
        })),
        By::Cgroup => Items::Cgroup(ranked(&store.cgroups, query, now, |id, meta| CgroupItem {
            cgroup: meta.path.to_string(),
            cgroup_id: *id,
            owner: Owner::from(&*meta.owner),
        })),
        By::Flow => Items::Flow(links::merge(
            ranked(&store.flows, query, now, |key, meta| FlowItem {
                protocol: protocol_name(key.protocol, key.family),
                local: endpoint(local_addr(key), key.local_port),
                remote: endpoint(remote_addr(key), key.remote_port),
                pid: meta.pid,
                comm: meta.comm.to_string(),
                cgroup: meta.cgroup.to_string(),
                owner: Owner::from(&*meta.owner),
                id: super::explain::flow_id(key),
                peer: remote_addr(key).map(|ip| PeerItem::from(&peers.lookup(ip))),
                path: FlowPath::of_local_socket(),
            }),
            links::forwarded_flows(store, query, now, peers),
            query,
        )),
        By::Remote => Items::Remote(super::remotes::remotes(store, query, now, peers)),
        By::Container => Items::Container(by_owner::top(store, query, now)),
        By::Interface => Items::Interface(links::interfaces(store, query, now)),
    };
    TopResponse {
        by: query.by,
        window_seconds: query.window.duration().as_secs(),
        items,
    }
}

pub(super) fn ranked<K, M, I, F>(
    dimension: &Dimension<K, M>,
    query: &TopQuery,
    now: Instant,
    identity: F,
) -> Vec<Item<I>>
where
    K: std::hash::Hash + Eq + Clone,
    M: Default + Clone + PartialEq,
    F: Fn(&K, &M) -> I,
{
    let window = query.window.duration();
    let mut best = Best::new(query);
    let covered = dimension.window_each(now, window, |item| best.push(item));
    render(best.finish(), covered, window, identity)
}

/// The best `limit` of a stream of groups, holding at most twice that many (and a few
/// hundred) at a time: the top 10 of 100k flows must not need a list of 100k.
pub(super) struct Best<'a, K, M> {
    items: Vec<Windowed<'a, K, M>>,
    limit: usize,
    sort: Sort,
}

impl<'a, K, M> Best<'a, K, M> {
    pub(super) fn new(query: &TopQuery) -> Self {
        Best {
            items: Vec::new(),
            limit: query.limit.get(),
            sort: query.sort,
        }
    }

    pub(super) fn push(&mut self, item: Windowed<'a, K, M>) {
        self.items.push(item);
        if self.items.len() >= (2 * self.limit).max(512) {
            self.keep_best();
        }
    }

    /// The best, busiest first.
    pub(super) fn finish(mut self) -> Vec<Windowed<'a, K, M>> {
        self.keep_best();
        let sort = self.sort;
        self.items.sort_by_key(|w| rank_of(sort, w));
        self.items
    }

    /// Drops all but the best `limit`, picked in linear time.
    fn keep_best(&mut self) {
        if self.items.len() > self.limit {
            let sort = self.sort;
            self.items
                .select_nth_unstable_by_key(self.limit - 1, |w| rank_of(sort, w));
            self.items.truncate(self.limit);
        }
    }
}

/// Busiest first: by the window's bytes, then the lifetime's.
fn rank_of<K, M>(sort: Sort, item: &Windowed<'_, K, M>) -> Reverse<(u64, u64)> {
    Reverse((weight(sort, &item.window), weight(sort, &item.lifetime)))
}

pub(super) fn weight(sort: Sort, t: &Traffic) -> u64 {
    match sort {
        Sort::Total => t.tx_bytes + t.rx_bytes,
        Sort::Tx => t.tx_bytes,
        Sort::Rx => t.rx_bytes,
    }
}

/// The ranked groups as items: identity, bytes and rates.
pub(super) fn render<K, M, I, F>(
    items: Vec<Windowed<'_, K, M>>,
    covered: Duration,
    window: Duration,
    identity: F,
) -> Vec<Item<I>>
where
    F: Fn(&K, &M) -> I,
{
    let seconds = seconds(covered, window);
    items
        .into_iter()
        .map(|w| Item {
            identity: identity(w.key, w.meta),
            rates: rates(&w.window, &w.lifetime, seconds),
        })
        .collect()
}

/// Rates are over the time the window really covers: right after start that is less than asked.
pub(super) fn seconds(covered: Duration, window: Duration) -> f64 {
    if covered.is_zero() {
        window
    } else {
        covered.min(window).max(Duration::from_millis(1))
    }
    .as_secs_f64()
}

pub(super) fn rates(window: &Traffic, lifetime: &Traffic, seconds: f64) -> Rates {
    Rates {
        tx_bytes: window.tx_bytes,
        rx_bytes: window.rx_bytes,
        tx_packets: window.tx_packets,
        rx_packets: window.rx_packets,
        tx_bytes_per_second: round(window.tx_bytes as f64 / seconds),
        rx_bytes_per_second: round(window.rx_bytes as f64 / seconds),
        lifetime_tx_bytes: lifetime.tx_bytes,
        lifetime_rx_bytes: lifetime.rx_bytes,
        lifetime_tx_packets: lifetime.tx_packets,
        lifetime_rx_packets: lifetime.rx_packets,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub(super) fn protocol_name(protocol: u8, family: u8) -> String {
    match (protocol, family) {
        (_, 0) => "unknown".to_string(),
        (6, _) => "tcp".to_string(),
        (17, _) => "udp".to_string(),
        (1, _) => "icmp".to_string(),
        (58, _) => "icmpv6".to_string(),
        (132, _) => "sctp".to_string(),
        (136, _) => "udplite".to_string(),
        (n, _) => n.to_string(),
    }
}

pub(super) fn endpoint(ip: Option<std::net::IpAddr>, port: u16) -> String {
    match ip {
        Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Limit, Window};
    use crate::attribution::Unattributed;
    use crate::stats::{FlowInfo, Talker, TalkerInfo};
    use std::net::{IpAddr, Ipv6Addr};
    use std::sync::Arc;
    use trafficd_common::FlowKey;

    /// The answer as it goes on the wire.
    fn json(response: TopResponse) -> serde_json::Value {
        serde_json::to_value(response).unwrap()
    }

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(
            endpoint(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 443),
            "[::1]:443"
        );
        assert_eq!(
            endpoint(Some("10.0.0.1".parse().unwrap()), 80),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn the_best_of_a_long_stream_are_kept_and_no_more_than_a_few_hundred_held() {
        let keys: Vec<u32> = (0..5000).collect();
        let query = TopQuery {
            limit: Limit::new(10).unwrap(),
            sort: Sort::Tx,
            ..TopQuery::default()
        };
        let mut best = Best::new(&query);
        let mut held = 0;
        for key in &keys {
            // A permutation of 0..5000, so the busiest keys are spread through the stream.
            let bytes = u64::from(key * 2_999 % 5_000);
            best.push(Windowed {
                key,
                window: Traffic {
                    tx_bytes: bytes,
                    ..Traffic::default()
                },
                lifetime: Traffic::default(),
                meta: &(),
            });
            held = held.max(best.items.len());
        }
        assert!(held <= 512, "held {held} items for a top 10");
        let kept: Vec<u64> = best.finish().iter().map(|w| w.window.tx_bytes).collect();
        assert_eq!(kept, (4_990..5_000).rev().collect::<Vec<u64>>());
    }

    #[test]
    fn top_sorts_limits_and_computes_rates() {
        let now = Instant::now();
        let mut store = Store::new(now);
        let talker = |pid| {
            Talker::Unattributed(if pid == 1 {
                Unattributed::NoSocket
            } else {
                Unattributed::OwnerUnknown
            })
        };
        let info = |pid, comm: &str| TalkerInfo {
            pid,
            comm: comm.into(),
            ..TalkerInfo::default()
        };
        let tx = |b| Traffic {
            tx_bytes: b,
            ..Traffic::default()
        };
        store.processes.record(
            now,
            Duration::from_secs(10),
            vec![
                (talker(1), tx(1000), info(1, "small")),
                (talker(2), tx(5000), info(2, "big")),
            ],
        );
        let query = TopQuery {
            limit: Limit::new(1).unwrap(),
            ..TopQuery::default()
        };
        let response = json(top(&store, &query, now, &PeerNames::classes_only()));
        assert_eq!(response["items"].as_array().unwrap().len(), 1);
        assert_eq!(response["items"][0]["comm"], "big");
        assert_eq!(response["items"][0]["tx_bytes"], 5000);
        assert_eq!(response["items"][0]["tx_bytes_per_second"], 500.0);
        assert_eq!(response["window_seconds"], 10);
    }

    #[test]
    fn a_remote_is_the_sum_of_its_flows_expired_ones_included() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut store = Store::new(start);
        let flow = |remote: [u8; 4], port| FlowKey {
            cookie: 1,
            cgroup_id: 1,
            local_addr: [0; 16],
            remote_addr: {
                let mut a = [0; 16];
                a[..4].copy_from_slice(&remote);
                a
            },
            local_port: 5000,
            remote_port: port,
            family: trafficd_common::AF_INET,
            protocol: 6,
            _pad: [0; 2],
        };
        let tx = |b| Traffic {
            tx_bytes: b,
            ..Traffic::default()
        };
        let info = Arc::new(FlowInfo::default());
        let record = |store: &mut Store, at, moved: &[(FlowKey, u64)]| {
            let deltas = moved.iter().map(|(k, n)| (*k, tx(*n), info.clone()));
            store.flows.record(at, second, deltas.collect());
        };
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        // Three drains: two flows to a, one to b.
        for i in 1..=3u32 {
            let moved = [(flow(a, 1), 100), (flow(a, 2), 10), (flow(b, 1), 50)];
            record(&mut store, start + second * i, &moved);
        }
        let query = TopQuery {
            by: By::Remote,
            window: Window::W10s,
            ..TopQuery::default()
        };
        let item = |response: &serde_json::Value, ip: &str| {
            let found = response["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["remote"] == ip);
            found
                .cloned()
                .unwrap_or_else(|| panic!("{ip} missing: {:?}", response["items"]))
        };
        let response = json(top(
            &store,
            &query,
            start + second * 3,
            &PeerNames::classes_only(),
        ));
        assert_eq!(item(&response, "10.0.0.1")["tx_bytes"], 330);
        assert_eq!(item(&response, "10.0.0.1")["lifetime_tx_bytes"], 330);
        assert_eq!(item(&response, "10.0.0.2")["tx_bytes"], 150);
        assert_eq!(response["items"][0]["remote"], "10.0.0.1");
        // The 1 s window is the last drain's.
        let last_second = TopQuery {
            window: Window::W1s,
            ..query
        };
        let last = json(top(
            &store,
            &last_second,
            start + second * 3,
            &PeerNames::classes_only(),
        ));
        assert_eq!(last["items"][0]["tx_bytes"], 110);

        // Only a's second flow keeps moving: a minute and a half later the others expire.
        // a's lifetime still counts its expired flow; b, with no flow left, is gone.
        for i in 4..=100u32 {
            record(&mut store, start + second * i, &[(flow(a, 2), 1)]);
        }
        store.expire(start + second * 100, Duration::from_secs(80));
        assert_eq!(store.flows.entries().count(), 1);
        let response = json(top(
            &store,
            &query,
            start + second * 100,
            &PeerNames::classes_only(),
        ));
        assert_eq!(
            response["items"].as_array().unwrap().len(),
            1,
            "{:?}",
            response["items"]
        );
        assert_eq!(item(&response, "10.0.0.1")["tx_bytes"], 10);
        assert_eq!(item(&response, "10.0.0.1")["lifetime_tx_bytes"], 330 + 97);
    }
}
