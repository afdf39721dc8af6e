//! Attributing: each socket's bytes split between the processes that used it, and the
//! description each process, cgroup and flow is recorded with.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use trafficd_common::Traffic;

use super::{counters::Counts, Drainer};
use crate::{
    attribution::{
        main_claimant,
        owners::{SocketUse, Talkers},
        split, Claimant,
    },
    stats::{CgroupInfo, FlowInfo, Talker, TalkerInfo},
};

/// Per-talker deltas, and the description each goes into the store with.
pub(super) type TalkerRecords = Vec<(Talker, Traffic, TalkerInfo)>;

/// One drain's deltas, attributed and described, ready for the store.
pub(super) struct Attributed {
    pub talkers: TalkerRecords,
    pub cgroups: Vec<(u64, Traffic, CgroupInfo)>,
    /// Per (socket, cgroup) of the drain's flows, its description.
    pub flow_infos: Vec<Arc<FlowInfo>>,
}

impl Drainer {
    /// Who used each socket that moved bytes: see [`SocketUse`].
    pub(super) fn resolve_owners(&mut self, counts: &mut Counts) -> SocketUse {
        let payload_deltas = std::mem::take(&mut counts.payload_deltas);
        let maps = &self.maps;
        SocketUse::resolve(
            &counts.socket_deltas,
            &counts.moved,
            payload_deltas,
            |cookie| maps.owner(cookie),
            &mut self.sources,
        )
    }

    /// Per-talker deltas, and the talker each tgid became.
    pub(super) fn attribute(
        &mut self,
        socket_deltas: &[(u64, Traffic)],
        usage: &SocketUse,
    ) -> (TalkerRecords, Talkers) {
        let mut by_claimant: HashMap<Claimant, Traffic> = HashMap::default();
        for (cookie, wire) in socket_deltas {
            let parts = split(*cookie, wire, usage.payloads(*cookie), usage.owner(*cookie));
            for (claimant, part) in parts {
                let sum = by_claimant.entry(claimant).or_default();
                *sum = sum.add(&part);
            }
        }
        let mut talkers = Talkers::default();
        let mut records = Vec::with_capacity(by_claimant.len());
        let maps = &self.maps;
        for (claimant, traffic) in by_claimant {
            let (talker, info) = talkers.talker(claimant, usage, &mut self.sources, |tgid| {
                maps.process(tgid)
            });
            records.push((talker, traffic, info));
        }
        (records, talkers)
    }

    /// Who the flows belong to, for each (socket, cgroup) of `sockets`, in that order. Sockets
    /// are far fewer than flows (an unconnected UDP socket can have 100k peers): who a flow
    /// belongs to is worked out once per socket. A socket's description is the same allocation
    /// as at the last drain while it does not change, so that the store sees 100k flows
    /// unchanged by comparing pointers.
    pub(super) fn describe_flows(
        &mut self,
        sockets: &[((u64, u64), Traffic)],
        usage: &SocketUse,
        talkers: &Talkers,
    ) -> Vec<Arc<FlowInfo>> {
        let previous = std::mem::take(&mut self.flow_infos);
        let infos: Vec<Arc<FlowInfo>> = sockets
            .iter()
            .map(|&((cookie, cgroup), _)| {
                let info = self.describe_flow(cookie, cgroup, usage, talkers);
                match previous.get(&(cookie, cgroup)) {
                    Some(same) if **same == info => same.clone(),
                    _ => Arc::new(info),
                }
            })
            .collect();
        self.flow_infos = sockets
            .iter()
            .zip(&infos)
            .map(|((socket, _), info)| (*socket, info.clone()))
            .collect();
        infos
    }

    fn describe_flow(
        &mut self,
        cookie: u64,
        cgroup_id: u64,
        usage: &SocketUse,
        talkers: &Talkers,
    ) -> FlowInfo {
        let claimant = main_claimant(cookie, usage.payloads(cookie), usage.owner(cookie));
        let (pid, comm) = match claimant {
            Claimant::Process(tgid) => match talkers.comm(tgid) {
                Some(comm) => (tgid, comm.clone()),
                None => (tgid, Arc::from("")),
            },
            Claimant::Unattributed(reason) => (0, Arc::from(format!("[{}]", reason.label()))),
        };
        let cgroup = self.sources.cgroup_owner(cgroup_id);
        FlowInfo {
            pid,
            comm,
            cgroup: cgroup.path,
            owner: cgroup.owner,
        }
    }

    /// Per-cgroup deltas, each with its description.
    pub(super) fn describe_cgroups(
        &mut self,
        cgroup_deltas: Vec<(u64, Traffic)>,
    ) -> Vec<(u64, Traffic, CgroupInfo)> {
        cgroup_deltas
            .into_iter()
            .map(|(id, delta)| {
                let cgroup = self.sources.cgroup_owner(id);
                let info = CgroupInfo {
                    path: cgroup.path,
                    owner: cgroup.owner,
                };
                (id, delta, info)
            })
            .collect()
    }
}
