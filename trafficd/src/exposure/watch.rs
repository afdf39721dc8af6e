//! The background pass behind GET /exposure: every few seconds, off the drain, list the
//! listeners of each network namespace whose sockets received from external peers and join
//! them with those flows.
//!
//! Only flows from external peers are looked at, so a host whose peers are all its own does no
//! sock_diag dump at all. A flow is matched against the listeners of the namespace its owning
//! process is in: the accepted socket of a listener belongs to the process that accepted it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tracing::warn;
use trafficd_common::FlowKey;

use super::{exposures, listeners::listeners, Exposure, ExposurePolicy, InboundFlow, Protocol};
use crate::{
    enrich::peers::is_external,
    error::Result,
    stats::{local_addr, remote_addr, Store},
};

/// How often listeners are listed: exposure is a standing condition, not a burst, and a dump
/// per namespace is not free on a host with many sockets.
const EVERY: Duration = Duration::from_secs(10);
/// The first pass comes sooner, so a daemon just started answers with something.
const FIRST_AFTER: Duration = Duration::from_secs(2);

/// A listener, told apart across namespaces.
pub type ListenerKey = (u64, Protocol, SocketAddr);

/// What external peers sent to one listener since the daemon started, for the metric: the
/// flows' counters go away with the flows, this only grows.
#[derive(Clone, Debug)]
pub struct ListenerTotal {
    pub comm: Arc<str>,
    pub container: Arc<str>,
    pub port: u16,
    pub rx_bytes: u64,
    pub last_active: Instant,
}

/// The latest pass's findings.
#[derive(Default)]
pub struct Latest {
    /// When the pass ended; `None` before the first.
    pub at: Option<Instant>,
    pub exposures: Vec<Exposure>,
    pub totals: HashMap<ListenerKey, ListenerTotal>,
}

/// The handle /exposure and /metrics read. Cheap to clone.
#[derive(Clone, Default)]
pub struct Report(Arc<RwLock<Latest>>);

impl Report {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Latest> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// One flow from an external peer, as last read.
struct Candidate {
    key: FlowKey,
    pid: u32,
    rx_bytes: u64,
    last_seen: u64,
}

/// What the pass remembers of a flow between passes.
struct Seen {
    rx_bytes: u64,
    first_seen: u64,
}

struct Watch {
    store: Arc<RwLock<Store>>,
    policy: ExposurePolicy,
    report: Report,
    seen: HashMap<FlowKey, Seen>,
    own_namespace: u64,
    warned: bool,
}

/// Starts the pass on its own thread, which runs as long as the daemon does.
pub fn spawn(store: Arc<RwLock<Store>>, policy: ExposurePolicy, report: Report) -> Result<()> {
    let own_namespace = namespace_inode(0).unwrap_or(0);
    let mut watch = Watch {
        store,
        policy,
        report,
        seen: HashMap::new(),
        own_namespace,
        warned: false,
    };
    thread::Builder::new()
        .name("exposure".into())
        .spawn(move || {
            thread::sleep(FIRST_AFTER);
            loop {
                watch.pass();
                thread::sleep(EVERY);
            }
        })?;
    Ok(())
}

impl Watch {
    fn pass(&mut self) {
        let candidates = self.external_flows();
        let mut by_namespace: HashMap<u64, Vec<Candidate>> = HashMap::new();
        for candidate in candidates {
            let namespace = namespace_inode(candidate.pid).unwrap_or(self.own_namespace);
            by_namespace.entry(namespace).or_default().push(candidate);
        }
        let mut found = Vec::new();
        let mut moved = Vec::new();
        for (namespace, flows) in &by_namespace {
            let path = (*namespace != self.own_namespace)
                .then(|| flows.first().map(|f| proc_namespace(f.pid)))
                .flatten();
            let listening = match listeners(path.as_deref()) {
                Ok(listening) => listening,
                Err(err) => {
                    if !std::mem::replace(&mut self.warned, true) {
                        warn!("/exposure is incomplete: {err}");
                    }
                    continue;
                }
            };
            let (lifetime, since_last) = self.inbound(flows);
            found.extend(exposures(&listening, &lifetime, &self.policy));
            let delta = exposures(&listening, &since_last, &self.policy);
            moved.extend(delta.into_iter().map(|e| (*namespace, e)));
        }
        let live: std::collections::HashSet<FlowKey> =
            by_namespace.values().flatten().map(|c| c.key).collect();
        self.seen.retain(|key, _| live.contains(key));
        super::sort(&mut found);
        self.publish(found, moved);
    }

    /// Flows that received from an external peer, with their owners and counters.
    fn external_flows(&self) -> Vec<Candidate> {
        let now = Instant::now();
        let epoch = epoch_seconds();
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        store
            .flows
            .entries()
            .filter(|(key, entry)| {
                entry.lifetime.rx_bytes > 0
                    && remote_addr(key).is_some_and(|ip| is_external(ip, &self.policy.trusted))
            })
            .map(|(key, entry)| Candidate {
                key: *key,
                pid: entry.meta.pid,
                rx_bytes: entry.lifetime.rx_bytes,
                last_seen: epoch
                    .saturating_sub(now.saturating_duration_since(entry.last_active).as_secs()),
            })
            .collect()
    }

    /// The flows as the exposure logic takes them: once with their lifetime bytes (for the
    /// report), once with what they received since the last pass (for the metric).
    fn inbound(&mut self, flows: &[Candidate]) -> (Vec<InboundFlow>, Vec<InboundFlow>) {
        let mut lifetime = Vec::new();
        let mut since_last = Vec::new();
        for flow in flows {
            let protocol = match flow.key.protocol {
                6 => Protocol::Tcp,
                17 => Protocol::Udp,
                _ => continue,
            };
            let (Some(local), Some(remote)) = (local_addr(&flow.key), remote_addr(&flow.key))
            else {
                continue;
            };
            let seen = self.seen.entry(flow.key).or_insert(Seen {
                rx_bytes: 0,
                first_seen: flow.last_seen,
            });
            let delta = flow.rx_bytes.saturating_sub(seen.rx_bytes);
            seen.rx_bytes = flow.rx_bytes;
            let inbound = InboundFlow {
                protocol,
                local: SocketAddr::new(local, flow.key.local_port),
                remote,
                bytes: flow.rx_bytes,
                first_seen: seen.first_seen,
                last_seen: flow.last_seen,
            };
            since_last.push(InboundFlow {
                bytes: delta,
                ..inbound.clone()
            });
            lifetime.push(inbound);
        }
        (lifetime, since_last)
    }

    fn publish(&self, found: Vec<Exposure>, moved: Vec<(u64, Exposure)>) {
        let now = Instant::now();
        let mut latest = self.report.0.write().unwrap_or_else(|e| e.into_inner());
        for (namespace, exposure) in moved {
            let listener = &exposure.listener;
            let key = (namespace, listener.protocol, listener.addr);
            let total = latest.totals.entry(key).or_insert_with(|| ListenerTotal {
                comm: listener.comm.clone().unwrap_or_else(|| Arc::from("")),
                container: listener.container.clone().unwrap_or_else(|| Arc::from("")),
                port: listener.addr.port(),
                rx_bytes: 0,
                last_active: now,
            });
            total.rx_bytes += exposure.bytes;
            if exposure.bytes > 0 {
                total.last_active = now;
            }
        }
        latest.exposures = found;
        latest.at = Some(now);
    }
}

/// The inode of the network namespace of `pid` (0: the daemon's own).
fn namespace_inode(pid: u32) -> Option<u64> {
    let path = if pid == 0 {
        PathBuf::from("/proc/self/ns/net")
    } else {
        proc_namespace(pid)
    };
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn proc_namespace(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(remote: [u8; 4], local_port: u16) -> FlowKey {
        let mut remote_addr = [0; 16];
        remote_addr[..4].copy_from_slice(&remote);
        let mut local_addr = [0; 16];
        local_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        FlowKey {
            cookie: 1,
            cgroup_id: 1,
            local_addr,
            remote_addr,
            local_port,
            remote_port: 40_000,
            family: trafficd_common::AF_INET,
            protocol: 6,
            _pad: [0; 2],
        }
    }

    fn watch() -> Watch {
        Watch {
            store: Arc::new(RwLock::new(Store::new(Instant::now()))),
            policy: ExposurePolicy::default(),
            report: Report::default(),
            seen: HashMap::new(),
            own_namespace: 0,
            warned: false,
        }
    }

    /// The report gets lifetime bytes; the metric only what arrived since the last pass, so
    /// its counter grows by each byte once.
    #[test]
    fn each_pass_counts_what_arrived_since_the_last() {
        let mut watch = watch();
        let key = flow([203, 0, 113, 5], 3129);
        let seen = |rx_bytes, last_seen| Candidate {
            key,
            pid: 7,
            rx_bytes,
            last_seen,
        };
        let (lifetime, since) = watch.inbound(&[seen(1000, 100)]);
        assert_eq!((lifetime[0].bytes, since[0].bytes), (1000, 1000));
        assert_eq!(lifetime[0].local, "10.0.0.1:3129".parse().unwrap());
        let (lifetime, since) = watch.inbound(&[seen(1500, 110)]);
        assert_eq!((lifetime[0].bytes, since[0].bytes), (1500, 500));
        assert_eq!((lifetime[0].first_seen, lifetime[0].last_seen), (100, 110));
        let (_, since) = watch.inbound(&[seen(1500, 110)]);
        assert_eq!(since[0].bytes, 0);
    }

    #[test]
    fn listener_totals_only_grow() {
        let watch = watch();
        let listener = super::super::Listener {
            protocol: Protocol::Tcp,
            addr: "0.0.0.0:3129".parse().unwrap(),
            pid: Some(7),
            comm: Some(Arc::from("haproxy")),
            container: None,
        };
        let exposure = |bytes| Exposure {
            listener: listener.clone(),
            internal_port: true,
            bytes,
            peers: Vec::new(),
        };
        watch.publish(vec![exposure(1000)], vec![(9, exposure(1000))]);
        watch.publish(vec![exposure(1500)], vec![(9, exposure(500))]);
        let latest = watch.report.read();
        let total = &latest.totals[&(9, Protocol::Tcp, listener.addr)];
        assert_eq!(
            (total.rx_bytes, &*total.comm, total.port),
            (1500, "haproxy", 3129)
        );
        assert_eq!(latest.exposures[0].bytes, 1500);
        assert!(latest.at.is_some());
    }
}
