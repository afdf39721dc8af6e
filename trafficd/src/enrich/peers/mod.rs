//! Peer names: who a remote address is, in the words the operator already uses.
//!
//! A flow's remote is an address; this folder turns it into a name from the sources a user
//! already keeps: a labels file (`--labels`), OpenVPN status files (`--openvpn-status`) and,
//! when asked, reverse DNS (`--reverse-dns`). Each source is one file here; every address also
//! gets its [`AddressClass`].
//!
//! [`PeerNames`] is what the drain and the HTTP side hold. A lookup reads an immutable snapshot
//! of the files (swapped whole by the reload thread, never locked) and the DNS cache; nothing
//! here reads a file or waits for the network on the caller's thread.

pub mod address_class;
mod args;
pub mod labels;
pub mod openvpn;
mod reload;
pub mod reverse_dns;

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use serde::Serialize;

pub use address_class::{is_external, AddressClass};
pub use args::PeerArgs;
use labels::Labels;
use openvpn::{VpnClient, VpnClients};
use reload::Reloader;
use reverse_dns::{DnsConfig, ReverseDns};

use crate::error::Result;

/// Where a peer's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSource {
    Labels,
    Openvpn,
    Dns,
}

/// A remote address as shown beside its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub ip: IpAddr,
    pub name: Option<Arc<str>>,
    pub source: Option<PeerSource>,
    pub class: AddressClass,
    /// The VPN client behind the address when a status file routes it, named or not by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openvpn: Option<Arc<VpnClient>>,
}

/// The files' names at one moment.
#[derive(Default)]
pub struct Snapshot {
    labels: Option<Arc<Labels>>,
    /// One per `--openvpn-status`, in the order given: the first file routing an address wins.
    openvpn: Vec<Arc<VpnClients>>,
}

/// The name sources to use.
#[derive(Clone, Debug, Default)]
pub struct PeerSettings {
    pub labels: Option<PathBuf>,
    pub openvpn_status: Vec<PathBuf>,
    /// `None` without `--reverse-dns`.
    pub reverse_dns: Option<DnsConfig>,
    /// How often the files are checked for changes.
    pub reload_every: Duration,
}

/// Names remote addresses. Cheap to clone; the reload thread ends with the last clone.
#[derive(Clone)]
pub struct PeerNames {
    files: Arc<ArcSwap<Snapshot>>,
    dns: Option<ReverseDns>,
}

impl PeerNames {
    /// Reads the files once (a bad one is logged and starts empty), starts the thread that
    /// reloads them and, with reverse DNS, the lookup task on `runtime`.
    pub fn start(settings: PeerSettings, runtime: &tokio::runtime::Handle) -> Result<PeerNames> {
        let dns = match settings.reverse_dns {
            Some(config) => Some(ReverseDns::start(config, runtime)?),
            None => None,
        };
        let mut reloader = Reloader::new(settings.labels, settings.openvpn_status);
        reloader.poll();
        let files = Arc::new(ArcSwap::from_pointee(reloader.snapshot()));
        if settings.reload_every > Duration::ZERO {
            reloader.spawn(settings.reload_every, Arc::downgrade(&files))?;
        }
        Ok(PeerNames { files, dns })
    }

    /// Address classes only, no names: for a daemon started without any name source.
    pub fn classes_only() -> PeerNames {
        PeerNames {
            files: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            dns: None,
        }
    }

    /// Everything known about `ip` now. Precedence: the labels file (the operator's own
    /// words), then OpenVPN (who holds the address now), then DNS.
    pub fn lookup(&self, ip: IpAddr) -> Peer {
        let ip = ip.to_canonical();
        let class = AddressClass::of(ip);
        let files = self.files.load();
        let openvpn = files.openvpn.iter().find_map(|c| c.lookup(ip)).cloned();
        let labelled = files.labels.as_ref().and_then(|l| l.lookup(ip)).cloned();
        let (name, source) = if let Some(name) = labelled {
            (Some(name), Some(PeerSource::Labels))
        } else if let Some(client) = &openvpn {
            (Some(client.common_name.clone()), Some(PeerSource::Openvpn))
        } else if let Some(name) = self.dns_name(ip, class) {
            (Some(name), Some(PeerSource::Dns))
        } else {
            (None, None)
        };
        Peer {
            ip,
            name,
            source,
            class,
            openvpn,
        }
    }

    /// Loopback, unspecified and multicast addresses have no useful PTR name: not asked.
    fn dns_name(&self, ip: IpAddr, class: AddressClass) -> Option<Arc<str>> {
        match class {
            AddressClass::Loopback | AddressClass::Unspecified | AddressClass::Multicast => None,
            _ => self.dns.as_ref()?.name(ip),
        }
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
