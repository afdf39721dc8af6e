//! trafficd_remote_{transmit,receive}_bytes_total: bytes per remote peer, by its name where
//! trafficd knows one (a label, a VPN client, reverse DNS), else by its address. Remotes are
//! as many as the hosts a machine talks to, so the family is bounded like the per-owner ones.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use super::{
    bounded::{Bounded, Bytes, Sighting},
    counters, Labels, MetricsConfig,
};
use crate::{enrich::peers::PeerNames, stats::Store};

const OTHER: &str = "[other]";

pub struct RemoteCollector {
    store: Arc<RwLock<Store>>,
    peers: PeerNames,
    series: Mutex<Bounded<IpAddr>>,
}

impl std::fmt::Debug for RemoteCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteCollector")
    }
}

impl RemoteCollector {
    pub fn new(store: Arc<RwLock<Store>>, peers: PeerNames, config: &MetricsConfig) -> Self {
        RemoteCollector {
            store,
            peers,
            series: Mutex::new(Bounded::new(config.max_series, config.retention)),
        }
    }
}

impl Collector for RemoteCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Summed under the store's lock, named after it: a name lookup never holds the drain.
        let remotes = {
            let store = self.store.read().unwrap_or_else(|e| e.into_inner());
            store.remotes.lifetimes(&store.flows)
        };
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.update(
            Instant::now(),
            remotes.into_iter().map(|(ip, lifetime, last_active)| {
                let peer = self.peers.lookup(ip);
                let name = peer.name.unwrap_or_else(|| Arc::from(ip.to_string()));
                Sighting {
                    owner: ip,
                    identity: vec![("remote", name)],
                    lifetime: Bytes {
                        tx: lifetime.tx_bytes,
                        rx: lifetime.rx_bytes,
                    },
                    last_active,
                }
            }),
        );
        let mut all: Vec<(Labels, Bytes)> = series
            .named()
            .map(|(identity, bytes)| {
                let labels = identity.iter().map(|(k, v)| (*k, v.to_string())).collect();
                (labels, bytes)
            })
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.push((vec![("remote", OTHER.to_string())], series.other()));
        counters(
            &mut encoder,
            "trafficd_remote_transmit_bytes",
            "IP bytes (headers included) this host's sockets sent to a remote peer, by its name where known",
            all.iter().map(|(l, b)| (l.clone(), b.tx)),
        )?;
        counters(
            &mut encoder,
            "trafficd_remote_receive_bytes",
            "IP bytes (headers included) this host's sockets received from a remote peer, by its name where known",
            all.iter().map(|(l, b)| (l.clone(), b.rx)),
        )
    }
}
