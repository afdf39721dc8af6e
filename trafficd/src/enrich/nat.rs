//! Where a forwarded flow really came from: its NAT hops, hop by hop, as conntrack knows them.
//!
//! The flow's tuple is first looked up in the daemon's own namespace (the host's MASQUERADE
//! of a container's traffic). When that translated it, the original source is an address of
//! some namespace on this host (the container); that namespace's conntrack is asked next
//! about the original tuple, which follows a second NAT inside the container (a VPN server
//! translating its clients), and so on for a few hops. Each answer is cached by
//! [`Conntrack`]; the caller bounds how many flows are looked up per drain.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tracing::warn;

use super::{
    address_owners::{AddressOwners, NamespaceOwner},
    conntrack::{Conntrack, FlowTuple, NatEntry},
};
use crate::error::Error;

/// Hops followed at most: the host, a container, a namespace inside the container.
const MAX_HOPS: usize = 3;
/// How long a conntrack answer is believed.
const ANSWER_TTL: Duration = Duration::from_secs(60);

/// One translation: the tuples conntrack holds, and the namespace it was found in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatHop {
    pub original: FlowTuple,
    pub reply: FlowTuple,
    /// `host`, or the namespace as [`NamespaceOwner`](super::address_owners::NamespaceOwner)
    /// names it.
    pub seen_in: Arc<str>,
}

/// A forwarded flow's NAT hops (none when it was not translated) and the container (cgroup
/// of a process in the namespace) that one of its ends belongs to, where there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowOrigin {
    pub hops: Vec<NatHop>,
    pub container: Option<Arc<str>>,
    /// The namespace the flow's inner end lives in, when it is not the daemon's.
    pub namespace: Option<Arc<str>>,
    /// False when the chain stopped at an address no namespace of this host was known to
    /// hold: a container that is still getting its address, or traffic passing through.
    /// Asking again later may find more.
    pub settled: bool,
}

pub struct Nat {
    host: Option<Conntrack>,
    namespaces: HashMap<PathBuf, Conntrack>,
    owners: AddressOwners,
    capacity: usize,
    /// Said once: conntrack is not in the kernel.
    said_unavailable: bool,
    /// Namespaces whose lookups failed, each said once.
    said_failed: HashSet<PathBuf>,
}

impl Nat {
    /// `capacity`: conntrack answers remembered per namespace.
    pub fn new(capacity: usize) -> Nat {
        Nat {
            host: None,
            namespaces: HashMap::new(),
            owners: AddressOwners::default(),
            capacity,
            said_unavailable: false,
            said_failed: HashSet::new(),
        }
    }

    /// The hops of the flow with tuple `seen` on one of the host's interfaces.
    pub fn origin(&mut self, seen: &FlowTuple) -> FlowOrigin {
        let mut origin = FlowOrigin {
            settled: true,
            ..FlowOrigin::default()
        };
        let Some(first) = self.host_lookup(seen) else {
            self.name_inner_end(seen, &mut origin);
            return origin;
        };
        let mut current = first.original;
        origin.hops.push(hop(first, Arc::from("host")));
        while origin.hops.len() < MAX_HOPS {
            let Some(owner) = self.owner_of(&current, &mut origin) else {
                break;
            };
            if origin.namespace.is_none() {
                origin.container = owner.cgroup.clone();
                origin.namespace = Some(owner.name.clone());
            }
            let Some(entry) = self.namespace_lookup(&owner.path, &current) else {
                break;
            };
            current = entry.original;
            origin.hops.push(hop(entry, owner.name.clone()));
        }
        if origin.namespace.is_none() {
            self.name_inner_end(seen, &mut origin);
        }
        origin
    }

    /// An untranslated forwarded flow still has an end in some namespace of this host (a
    /// routed container or test namespace), or none (traffic passing through).
    fn name_inner_end(&mut self, seen: &FlowTuple, origin: &mut FlowOrigin) {
        let tuple = origin.hops.last().map_or(*seen, |h| h.original);
        if let Some(owner) = self.owner_of(&tuple, origin) {
            origin.container = owner.cgroup.clone();
            origin.namespace = Some(owner.name.clone());
        }
    }

    /// The namespace of a tuple's source, else of its destination. A source no namespace is
    /// known to hold leaves the origin unsettled even when the destination's is found: a
    /// container a moment old may not have been scanned with its address yet, and the flow's
    /// origin is its source.
    fn owner_of(
        &mut self,
        tuple: &FlowTuple,
        origin: &mut FlowOrigin,
    ) -> Option<Arc<NamespaceOwner>> {
        let source = self.owners.owner(tuple.src.ip());
        if source.is_none() {
            origin.settled = false;
        }
        source.or_else(|| self.owners.owner(tuple.dst.ip()))
    }

    fn host_lookup(&mut self, seen: &FlowTuple) -> Option<NatEntry> {
        if self.host.is_none() && !self.said_unavailable {
            match Conntrack::open(None, self.capacity, ANSWER_TTL) {
                Ok(conntrack) => self.host = Some(conntrack),
                Err(err) => self.say_unavailable(&err),
            }
        }
        let answer = self.host.as_mut()?.lookup(seen);
        match answer {
            Ok(entry) => entry.filter(NatEntry::is_translated),
            Err(err) => {
                self.say_unavailable(&err);
                None
            }
        }
    }

    fn namespace_lookup(&mut self, path: &Path, tuple: &FlowTuple) -> Option<NatEntry> {
        if !self.namespaces.contains_key(path) {
            match Conntrack::open(Some(path), self.capacity, ANSWER_TTL) {
                Ok(conntrack) => {
                    self.namespaces.insert(path.to_path_buf(), conntrack);
                }
                Err(err) => {
                    self.say_failed(path, &err);
                    return None;
                }
            }
        }
        let answer = self.namespaces.get_mut(path)?.lookup(tuple);
        match answer {
            Ok(entry) => entry.filter(NatEntry::is_translated),
            Err(err) => {
                // The namespace may have gone: open it afresh next time.
                self.namespaces.remove(path);
                self.say_failed(path, &err);
                None
            }
        }
    }

    fn say_unavailable(&mut self, err: &Error) {
        if !self.said_unavailable {
            warn!("{err}; forwarded flows are shown without their NAT hops");
            self.said_unavailable = true;
        }
    }

    fn say_failed(&mut self, path: &Path, err: &Error) {
        if self.said_failed.insert(path.to_path_buf()) {
            warn!(
                "{err}; flows through {} show the hops found before it",
                path.display()
            );
        }
        if self.said_failed.len() > self.capacity {
            self.said_failed.clear();
        }
    }

    /// Lets go of the conntrack sockets of namespaces that no longer exist.
    pub fn forget_vanished(&mut self) {
        self.namespaces.retain(|path, _| path.exists());
    }
}

fn hop(entry: NatEntry, seen_in: Arc<str>) -> NatHop {
    NatHop {
        original: entry.original,
        reply: entry.reply,
        seen_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace that vanished before (or during) a lookup: no hop, and said once.
    #[test]
    fn a_vanished_namespace_ends_the_hops_quietly() {
        let mut nat = Nat::new(16);
        let gone = Path::new("/proc/4194305/ns/net");
        let tuple = FlowTuple {
            protocol: 17,
            src: "172.17.0.2:5000".parse().unwrap(),
            dst: "10.8.1.3:3129".parse().unwrap(),
        };
        assert_eq!(nat.namespace_lookup(gone, &tuple), None);
        assert_eq!(nat.namespace_lookup(gone, &tuple), None);
        assert_eq!(nat.said_failed.len(), 1);
        assert!(nat.namespaces.is_empty());
    }
}
