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
