//! Remote addresses. A remote's traffic is the sum of its flows', worked out when asked: the
//! drain does no per-remote work (keeping each remote's own totals cost the drain a large share
//! of its time and memory at many remotes). What the flows that already expired had moved is kept here, so that a
//! remote's lifetime totals outlive its short connections.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use trafficd_common::{FlowKey, Traffic, AF_INET, AF_INET6};

use super::{Dimension, Expired, FlowInfo};

/// Lifetime totals of expired flows, by remote address; kept while the remote still has a
/// flow, dropped with its last one (whose last byte is then older than the retention).
#[derive(Default)]
pub struct Remotes {
    expired: HashMap<IpAddr, Traffic>,
}

/// One remote's traffic in a window, and over its lifetime.
pub struct RemoteTotals {
    pub remote: IpAddr,
    pub window: Traffic,
    pub lifetime: Traffic,
}

impl Remotes {
    /// Adds what flows that just expired moved to their remotes, then forgets the remotes no
    /// flow in `flows` leads to any more.
    pub fn retire(
        &mut self,
        expired: &[Expired<FlowKey, Arc<FlowInfo>>],
        flows: &Dimension<FlowKey, Arc<FlowInfo>>,
    ) {
        for flow in expired {
            if let Some(ip) = remote_addr(&flow.key) {
                let sum = self.expired.entry(ip).or_default();
                *sum = sum.add(&flow.entry.lifetime);
            }
        }
        // A remote loses its last flow only when a flow expires.
        if expired.is_empty() || self.expired.is_empty() {
            return;
        }
        let mut alive = HashSet::default();
        for (key, _) in flows.entries() {
            if let Some(ip) = remote_addr(key).filter(|ip| self.expired.contains_key(ip)) {
                alive.insert(ip);
            }
        }
        self.expired.retain(|ip, _| alive.contains(ip));
    }

    /// Every remote that moved bytes in the last `window` before `now`, with its lifetime
    /// totals (its flows', expired ones included), and the time the window really covers.
    pub fn window(
        &self,
        flows: &Dimension<FlowKey, Arc<FlowInfo>>,
        now: Instant,
        window: Duration,
    ) -> (Vec<RemoteTotals>, Duration) {
        let mut remotes: HashMap<IpAddr, RemoteTotals> = HashMap::default();
        let covered = flows.window_each(now, window, |flow| {
            let Some(ip) = remote_addr(flow.key) else {
                return;
            };
            let totals = remotes.entry(ip).or_insert_with(|| RemoteTotals {
                remote: ip,
                window: Traffic::default(),
                lifetime: self.expired.get(&ip).copied().unwrap_or_default(),
            });
            totals.window = totals.window.add(&flow.window);
        });
        // Lifetimes include the remote's flows that were idle in the window.
        for (key, entry) in flows.entries() {
            let Some(totals) = remote_addr(key).and_then(|ip| remotes.get_mut(&ip)) else {
                continue;
            };
            totals.lifetime = totals.lifetime.add(&entry.lifetime);
        }
        (remotes.into_values().collect(), covered)
    }
}

impl Remotes {
    /// Every remote the store still knows, with its lifetime totals (expired flows included)
    /// and when it last moved bytes: what /metrics counts per remote.
    pub fn lifetimes(
        &self,
        flows: &Dimension<FlowKey, Arc<FlowInfo>>,
    ) -> Vec<(IpAddr, Traffic, Instant)> {
        let mut remotes: HashMap<IpAddr, (Traffic, Instant)> = HashMap::default();
        for (key, entry) in flows.entries() {
            let Some(ip) = remote_addr(key) else {
                continue;
            };
            let (total, last) = remotes.entry(ip).or_insert_with(|| {
                let expired = self.expired.get(&ip).copied().unwrap_or_default();
                (expired, entry.last_active)
            });
            *total = total.add(&entry.lifetime);
            *last = (*last).max(entry.last_active);
        }
        remotes
            .into_iter()
            .map(|(ip, (total, last))| (ip, total, last))
            .collect()
    }
}

/// The local and remote addresses of a flow; `None` for packets that were not IP.
pub fn local_addr(key: &FlowKey) -> Option<IpAddr> {
    to_ip(key.family, &key.local_addr)
}

pub fn remote_addr(key: &FlowKey) -> Option<IpAddr> {
    to_ip(key.family, &key.remote_addr)
}

fn to_ip(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}
