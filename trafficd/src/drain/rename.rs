//! Renaming: owners an engine named after their bytes were recorded (a container met before
//! its create event was read, or while its engine was down) get their names in the store too,
//! so that a container that has gone quiet does not stay a bare id in /top and /metrics.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::{
    enrich::containers::Owner,
    stats::{FlowInfo, Store},
};

/// Gives every group in a cgroup of `renamed` its owner's new description.
pub(super) fn rename(store: &mut Store, renamed: &HashMap<Arc<str>, Arc<Owner>>) {
    if renamed.is_empty() {
        return;
    }
    store.cgroups.update_meta(|info| {
        if let Some(owner) = renamed.get(&info.path) {
            info.owner = owner.clone();
        }
    });
    store.processes.update_meta(|info| {
        if let Some(owner) = renamed.get(&info.cgroup) {
            info.owner = owner.clone();
        }
    });
    // A socket's flows share one description: they keep sharing its renamed copy.
    let mut copies: HashMap<*const FlowInfo, Arc<FlowInfo>> = HashMap::default();
    store.flows.update_meta(|info| {
        if let Some(owner) = renamed.get(&info.cgroup) {
            let copy = copies.entry(Arc::as_ptr(info)).or_insert_with(|| {
                Arc::new(FlowInfo {
                    owner: owner.clone(),
                    ..FlowInfo::clone(info)
                })
            });
            *info = copy.clone();
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use trafficd_common::{FlowKey, Traffic};

    use super::*;
    use crate::{
        attribution::Unattributed,
        enrich::containers::{ContainerDirectory, ContainerMeta, Runtime, Writer},
        stats::{CgroupInfo, Talker, TalkerInfo},
    };

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn a_quiet_container_named_late_takes_its_name_everywhere() {
        let writer = Writer::default();
        let mut directory = ContainerDirectory::new(&writer, vec![]);
        let path: Arc<str> = format!("/docker/{ID}").into();
        let unnamed = directory.owner(&path);
        assert!(unnamed.awaits_names());

        let now = Instant::now();
        let second = Duration::from_secs(1);
        let bytes = Traffic {
            tx_bytes: 1,
            ..Traffic::default()
        };
        let mut store = Store::new(now);
        let cgroup = CgroupInfo {
            path: path.clone(),
            owner: unnamed.clone(),
        };
        store.cgroups.record(now, second, vec![(1, bytes, cgroup)]);
        let talker = TalkerInfo {
            cgroup: path.clone(),
            owner: unnamed.clone(),
            ..TalkerInfo::default()
        };
        let process = Talker::Unattributed(Unattributed::OwnerUnknown);
        store
            .processes
            .record(now, second, vec![(process, bytes, talker)]);
        let flow = Arc::new(FlowInfo {
            cgroup: path.clone(),
            owner: unnamed,
            ..FlowInfo::default()
        });
        let key = |port| FlowKey {
            cookie: 1,
            cgroup_id: 1,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            local_port: port,
            remote_port: 80,
            family: trafficd_common::AF_INET,
            protocol: 6,
            _pad: [0; 2],
        };
        let flows = vec![(key(1), bytes, flow.clone()), (key(2), bytes, flow)];
        store.flows.record(now, second, flows);

        writer.upsert_container(ContainerMeta {
            id: ID.into(),
            name: Some("openvpn".into()),
            runtime: Some(Runtime::Docker),
            ..ContainerMeta::default()
        });
        let renamed = HashMap::from_iter([(path.clone(), directory.owner(&path))]);
        rename(&mut store, &renamed);

        let name = |owner: &Owner| owner.container_name.as_deref().map(str::to_string);
        let named = Some("openvpn".to_string());
        for (_, entry) in store.cgroups.entries() {
            assert_eq!(name(&entry.meta.owner), named);
        }
        for (_, entry) in store.processes.entries() {
            assert_eq!(name(&entry.meta.owner), named);
        }
        let infos: Vec<&Arc<FlowInfo>> = store.flows.entries().map(|(_, e)| &e.meta).collect();
        assert_eq!(infos.len(), 2);
        assert_eq!(name(&infos[0].owner), named);
        assert!(
            Arc::ptr_eq(infos[0], infos[1]),
            "a socket's flows still share"
        );
    }
}
