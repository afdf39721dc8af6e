//! The `trafficd run` flags of the name sources, flattened into its arguments.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use super::{reverse_dns::DnsConfig, PeerSettings};

/// How often the name files are checked for changes: quick enough that a relabel shows
/// within a drain or two, rare enough that a stat per file costs nothing.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

#[derive(Args, Debug, Clone, Default)]
pub struct PeerArgs {
    /// Names for remote peers: one `CIDR-or-address name` a line (e.g. `10.8.1.0/24
    /// squid-proxies`), `#` for comments, the most specific network wins. Reloaded when it
    /// changes; a version that does not parse is logged and the previous labels stay.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// An OpenVPN server's status file (status-version 1, 2 or 3): names each VPN client's
    /// virtual address by its common name. Repeat for several servers; reloaded when it
    /// changes.
    #[arg(long = "openvpn-status", value_name = "FILE")]
    pub openvpn_status: Vec<PathBuf>,

    /// Name remote peers by reverse DNS (PTR) where no labels or status file names them.
    /// Lookups run in the background with a timeout and a bounded cache; a peer shows
    /// unnamed until its answer arrives.
    #[arg(long)]
    pub reverse_dns: bool,

    /// The name server --reverse-dns asks, e.g. 10.0.0.2:53 (default: /etc/resolv.conf).
    #[arg(long, value_name = "ADDR", requires = "reverse_dns")]
    pub dns_server: Option<SocketAddr>,
}

impl PeerArgs {
    pub fn settings(&self) -> PeerSettings {
        PeerSettings {
            labels: self.labels.clone(),
            openvpn_status: self.openvpn_status.clone(),
            reverse_dns: self.reverse_dns.then(|| DnsConfig {
                server: self.dns_server,
                ..DnsConfig::default()
            }),
            reload_every: RELOAD_EVERY,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        peers: PeerArgs,
    }

    #[test]
    fn flags_become_settings() {
        let flags = Flags::try_parse_from([
            "run",
            "--labels",
            "/etc/trafficd/labels",
            "--openvpn-status",
            "/run/openvpn/a.status",
            "--openvpn-status",
            "/run/openvpn/b.status",
            "--reverse-dns",
            "--dns-server",
            "127.0.0.53:53",
        ])
        .unwrap();
        let settings = flags.peers.settings();
        assert_eq!(settings.labels, Some(PathBuf::from("/etc/trafficd/labels")));
        assert_eq!(settings.openvpn_status.len(), 2);
        let dns = settings.reverse_dns.expect("--reverse-dns");
        assert_eq!(dns.server, Some("127.0.0.53:53".parse().unwrap()));
    }

    #[test]
    fn a_dns_server_needs_reverse_dns() {
        assert!(Flags::try_parse_from(["run", "--dns-server", "127.0.0.53:53"]).is_err());
        let none = Flags::try_parse_from(["run"]).unwrap().peers.settings();
        assert!(none.reverse_dns.is_none() && none.labels.is_none());
    }
}
