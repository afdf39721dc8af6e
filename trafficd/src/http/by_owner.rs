//! `/top?by=container`: the cgroups' bytes summed by who owns them (a container, pod, unit or
//! the host), ranked like every other kind of item. A container spans several cgroups when its
//! runtime nests one (Podman's `.../container`), a unit when it has sub-cgroups.

use std::{collections::HashMap, sync::Arc, time::Instant};

use trafficd_common::Traffic;

use super::rank::{render, Best};
use crate::{
    api::{ContainerItem, Item, Owner, TopQuery},
    enrich::containers::{Owner as CgroupOwner, OwnerKind},
    stats::{CgroupInfo, Store, Windowed},
};

/// An owner's cgroups, summed.
struct Group {
    owner: Arc<CgroupOwner>,
    window: Traffic,
    lifetime: Traffic,
    /// The path of its busiest cgroup in the window, with that cgroup's bytes.
    busiest: (u64, Arc<str>),
    cgroups: u32,
}

/// A container, pod or unit by its id or name; a cgroup of an unknown layout by its path.
type GroupKey = (OwnerKind, Arc<str>);

/// The owner a cgroup's bytes are summed under.
fn group_key(meta: &CgroupInfo) -> GroupKey {
    let owner = &meta.owner;
    let name = owner
        .group_key()
        .map_or_else(|| meta.path.clone(), Arc::from);
    (owner.kind, name)
}

pub fn top(store: &Store, query: &TopQuery, now: Instant) -> Vec<Item<ContainerItem>> {
    let window = query.window.duration();
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let covered = store.cgroups.window_each(now, window, |item| {
        let bytes = item.window.tx_bytes + item.window.rx_bytes;
        let group = groups.entry(group_key(item.meta)).or_insert_with(|| Group {
            owner: item.meta.owner.clone(),
            window: Traffic::default(),
            lifetime: Traffic::default(),
            busiest: (bytes, item.meta.path.clone()),
            cgroups: 0,
        });
        group.window = group.window.add(&item.window);
        group.cgroups += 1;
        if bytes > group.busiest.0 {
            group.busiest = (bytes, item.meta.path.clone());
        }
    });
    // An owner's lifetime is all of its cgroups', those idle in the window included (a
    // container whose first process sent its bytes and exited, say).
    for (_, entry) in store.cgroups.entries() {
        if let Some(group) = groups.get_mut(&group_key(&entry.meta)) {
            group.lifetime = group.lifetime.add(&entry.lifetime);
        }
    }
    let mut best = Best::new(query);
    for (key, group) in &groups {
        best.push(Windowed {
            key,
            window: group.window,
            lifetime: group.lifetime,
            meta: group,
        });
    }
    render(best.finish(), covered, window, |_, group| ContainerItem {
        owner: Owner::from(&*group.owner),
        cgroup: group.busiest.1.to_string(),
        cgroups: group.cgroups,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        api::{By, Items, TopResponse},
        enrich::containers::{ContainerDirectory, Writer},
        stats::CgroupInfo,
    };

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    fn containers(response: TopResponse) -> Vec<Item<ContainerItem>> {
        match response.items {
            Items::Container(items) => items,
            other => panic!("asked by container, got {other:?}"),
        }
    }

    #[test]
    fn an_owners_lifetime_counts_its_cgroups_idle_in_the_window() {
        let start = Instant::now();
        let mut store = Store::new(start);
        let mut directory = ContainerDirectory::new(&Writer::default(), vec![]);
        let path = format!("/docker/{ID}");
        let info = CgroupInfo {
            path: path.clone().into(),
            owner: directory.owner(&path),
        };
        let nested = CgroupInfo {
            path: format!("{path}/nested").into(),
            owner: directory.owner(&path),
        };
        let tx = |b| Traffic {
            tx_bytes: b,
            ..Traffic::default()
        };
        let tick = Duration::from_secs(1);
        store.cgroups.record(start, tick, vec![(1, tx(1000), info)]);
        // A minute later only the nested cgroup moves: the first is idle in a 10 s window.
        let later = start + Duration::from_secs(60);
        store.cgroups.record(later, tick, vec![(2, tx(7), nested)]);
        let query = TopQuery {
            by: By::Container,
            ..TopQuery::default()
        };
        let peers = crate::enrich::peers::PeerNames::classes_only();
        let items = containers(crate::http::top::top(&store, &query, later, &peers));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].rates.tx_bytes, 7);
        assert_eq!(items[0].rates.lifetime_tx_bytes, 1007);
    }

    #[test]
    fn cgroups_sum_by_owner_and_unknown_layouts_stay_apart() {
        let now = Instant::now();
        let mut store = Store::new(now);
        let mut directory = ContainerDirectory::new(&Writer::default(), vec![]);
        let mut cgroup = |path: &str| CgroupInfo {
            path: path.into(),
            owner: directory.owner(path),
        };
        let tx = |b| Traffic {
            tx_bytes: b,
            ..Traffic::default()
        };
        let podman = format!("/libpod_parent/libpod-{ID}");
        store.cgroups.record(
            now,
            Duration::from_secs(10),
            vec![
                (1, tx(100), cgroup(&podman)),
                (2, tx(300), cgroup(&format!("{podman}/container"))),
                (3, tx(50), cgroup("/system.slice/nginx.service")),
                (4, tx(20), cgroup("/")),
                (5, tx(10), cgroup("/trafficd-test-a")),
                (6, tx(5), cgroup("/trafficd-test-b")),
            ],
        );
        let query = TopQuery {
            by: By::Container,
            ..TopQuery::default()
        };
        let peers = crate::enrich::peers::PeerNames::classes_only();
        let items = containers(crate::http::top::top(&store, &query, now, &peers));
        let named: Vec<(Option<&str>, &str, u64, u32)> = items
            .iter()
            .map(|i| {
                let name = i.identity.owner.name.as_deref();
                (
                    name,
                    i.identity.cgroup.as_str(),
                    i.rates.tx_bytes,
                    i.identity.cgroups,
                )
            })
            .collect();
        let container_cgroup = format!("{podman}/container");
        assert_eq!(
            named,
            [
                (Some(&ID[..12]), container_cgroup.as_str(), 400, 2),
                (Some("nginx.service"), "/system.slice/nginx.service", 50, 1),
                (Some("host"), "/", 20, 1),
                (None, "/trafficd-test-a", 10, 1),
                (None, "/trafficd-test-b", 5, 1),
            ]
        );
        let container = items[0].identity.owner.container.as_ref();
        assert_eq!(container.map(|c| c.id.as_str()), Some(ID));
        assert_eq!(container.and_then(|c| c.runtime.as_deref()), Some("podman"));
    }
}
