//! The answer to GET /top: the groups that moved the most bytes in a window.

use std::time::Instant;

use super::{
    by_owner, links,
    rank::{endpoint, protocol_name, ranked},
};
use crate::{
    api::{
        By, CgroupItem, FlowItem, FlowPath, Items, Owner, PeerItem, ProcessItem, TopQuery,
        TopResponse,
    },
    enrich::peers::PeerNames,
    stats::{local_addr, remote_addr, Store},
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
                id: super::rank::flow_id(key),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Limit, Window};
    use crate::attribution::Unattributed;
    use crate::stats::{FlowInfo, Talker, TalkerInfo};
    use std::sync::Arc;
    use std::time::Duration;
    use trafficd_common::FlowKey;
    use trafficd_common::Traffic;

    /// The answer as it goes on the wire.
    fn json(response: TopResponse) -> serde_json::Value {
        serde_json::to_value(response).unwrap()
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
