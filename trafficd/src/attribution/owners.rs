//! Who used each socket that moved bytes in an interval, and which talker each process is.
//!
//! The payload the sock tracepoints counted per (socket, process) names the users of most
//! sockets. A socket with bytes but no payload falls back to its owner: the one the kernel
//! recorded, else the owner of another socket with the same 5-tuple, else the one /proc holds.

use std::sync::Arc;

// Fx hashing: these maps hold a drain's sockets and processes, keys that come from the kernel.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use trafficd_common::{FlowKey, Payload, SocketOwner, SocketProcessKey, Traffic};

use super::Claimant;
use crate::{
    enrich::{processes::KernelView, Sources},
    kernel::MovedFlows,
    stats::{Talker, TalkerInfo},
};

/// One drain's per-socket view: who used each active socket.
pub struct SocketUse {
    payloads: HashMap<u64, Vec<(u32, Payload)>>,
    /// The owners the kernel recorded, for the sockets no payload explains.
    owners: HashMap<u64, SocketOwner>,
    /// Owners found another way: a socket with the same 5-tuple, or /proc.
    found: HashMap<u64, u32>,
}

impl SocketUse {
    /// Who used each socket of `socket_deltas` (every socket of `flows` is among them).
    /// `kernel_owner` is the owner the kernel recorded for a socket.
    pub fn resolve(
        socket_deltas: &[(u64, Traffic)],
        flows: &MovedFlows,
        payload_deltas: Vec<(SocketProcessKey, Payload)>,
        kernel_owner: impl Fn(u64) -> Option<SocketOwner>,
        sources: &mut Sources,
    ) -> SocketUse {
        let mut payloads: HashMap<u64, Vec<(u32, Payload)>> = HashMap::default();
        for (key, payload) in payload_deltas {
            payloads
                .entry(key.cookie)
                .or_default()
                .push((key.tgid, payload));
        }
        let active: HashSet<u64> = socket_deltas
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| *c != 0)
            .collect();
        // The owner only takes what no payload explains: a socket whose processes moved payload
        // in this interval needs no lookup (a syscall each; thousands a second under churn).
        let owners: HashMap<u64, SocketOwner> = active
            .iter()
            .filter(|c| !moved_payload(payloads.get(c)))
            .filter_map(|&c| kernel_owner(c).map(|o| (c, o)))
            .collect();
        // Sockets with bytes but no process seen using them. The handshake of an accepted TCP
        // connection is counted on the listener and on the request socket, which no process
        // reads or writes: they share their 5-tuple with the accepted socket, whose owner is
        // known. What that does not explain, /proc may.
        let mut unknown: Vec<u64> = active
            .iter()
            .copied()
            .filter(|c| !owners.contains_key(c) && !payloads.contains_key(c))
            .collect();
        let mut found = same_tuple_owners(&unknown, flows, &owners, &payloads);
        unknown.retain(|c| !found.contains_key(c));
        if !unknown.is_empty() {
            found.extend(sources.socket_owners(&unknown));
        }
        SocketUse {
            payloads,
            owners,
            found,
        }
    }

    /// The process that takes a socket's bytes no payload explains.
    pub fn owner(&self, cookie: u64) -> Option<u32> {
        self.owners
            .get(&cookie)
            .map(|o| o.tgid)
            .or_else(|| self.found.get(&cookie).copied())
    }

    /// The payload each process moved on the socket in this interval.
    pub fn payloads(&self, cookie: u64) -> &[(u32, Payload)] {
        self.payloads.get(&cookie).map(Vec::as_slice).unwrap_or(&[])
    }

    /// What the kernel recorded about process `tgid` as a socket's owner in this drain.
    fn recorded(&self, tgid: u32) -> Option<SocketOwner> {
        self.owners.values().find(|o| o.tgid == tgid).copied()
    }
}

/// The talker each tgid became in one drain, each process described once.
#[derive(Default)]
pub struct Talkers(HashMap<u32, (Talker, TalkerInfo)>);

impl Talkers {
    /// The talker `claimant` is, and its description. `kernel_process` is the kernel's record
    /// of a process, asked for only when /proc no longer has it.
    pub fn talker(
        &mut self,
        claimant: Claimant,
        usage: &SocketUse,
        sources: &mut Sources,
        kernel_process: impl Fn(u32) -> Option<SocketOwner>,
    ) -> (Talker, TalkerInfo) {
        let tgid = match claimant {
            Claimant::Unattributed(reason) => {
                let info = TalkerInfo {
                    comm: Arc::from(format!("[{}]", reason.label())),
                    reason: Some(reason),
                    ..TalkerInfo::default()
                };
                return (Talker::Unattributed(reason), info);
            }
            Claimant::Process(tgid) => tgid,
        };
        if let Some(known) = self.0.get(&tgid) {
            return known.clone();
        }
        let (key, info) = sources.process(tgid, || {
            kernel_process(tgid)
                .or_else(|| usage.recorded(tgid))
                .map(|owner| KernelView::from(&owner))
        });
        let identity = (Talker::Process(key), info);
        self.0.insert(tgid, identity.clone());
        identity
    }

    /// The command name of process `tgid`, if it became a talker in this drain.
    pub fn comm(&self, tgid: u32) -> Option<&Arc<str>> {
        self.0.get(&tgid).map(|(_, info)| &info.comm)
    }
}

fn moved_payload(payloads: Option<&Vec<(u32, Payload)>>) -> bool {
    payloads.is_some_and(|p| {
        p.iter()
            .any(|(_, p)| p.sent_bytes > 0 || p.received_bytes > 0)
    })
}

/// Owners of `unknown` sockets found through another socket with the same 5-tuple in this
/// drain's flows.
fn same_tuple_owners(
    unknown: &[u64],
    flows: &MovedFlows,
    owners: &HashMap<u64, SocketOwner>,
    payloads: &HashMap<u64, Vec<(u32, Payload)>>,
) -> HashMap<u64, u32> {
    if unknown.is_empty() {
        return HashMap::default();
    }
    type Tuple = (u8, u8, [u8; 16], u16, [u8; 16], u16);
    let tuple = |k: &FlowKey| -> Tuple {
        (
            k.family,
            k.protocol,
            k.local_addr,
            k.local_port,
            k.remote_addr,
            k.remote_port,
        )
    };
    let owner_of = |cookie: u64| {
        owners.get(&cookie).map(|o| o.tgid).or_else(|| {
            payloads
                .get(&cookie)
                .and_then(|p| p.first())
                .map(|(t, _)| *t)
        })
    };
    // The unknown sockets' tuples are few; every flow is checked against them, so that no
    // table of all flows is built (100k flows a drain).
    let unknown: HashSet<u64> = unknown.iter().copied().collect();
    let mut wanted: HashMap<Tuple, Vec<u64>> = HashMap::default();
    for (k, _) in flows.iter().filter(|(k, _)| unknown.contains(&k.cookie)) {
        wanted.entry(tuple(&k)).or_default().push(k.cookie);
    }
    let mut found = HashMap::default();
    for (k, _) in flows.iter() {
        let Some(cookies) = wanted.get(&tuple(&k)) else {
            continue;
        };
        if let Some(tgid) = owner_of(k.cookie) {
            for cookie in cookies {
                found.entry(*cookie).or_insert(tgid);
            }
        }
    }
    found
}
