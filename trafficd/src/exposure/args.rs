//! The `trafficd run` flags of the exposure report, flattened into its arguments.

use std::collections::BTreeSet;

use clap::Args;
use ipnet::IpNet;

use super::ExposurePolicy;

#[derive(Args, Debug, Clone, Default)]
pub struct ExposureArgs {
    /// Public networks that are your own (comma-separated CIDRs, e.g. 198.51.100.0/24): their
    /// peers are not external. Private, loopback, link-local, CGNAT and unique-local ranges
    /// never are.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub trusted_networks: Vec<IpNet>,

    /// Ports meant to be reached from inside only (comma-separated, e.g. 3129,5432): a
    /// listener on one that receives from an external peer is flagged.
    #[arg(long, value_name = "PORT", value_delimiter = ',')]
    pub internal_ports: Vec<u16>,
}

impl ExposureArgs {
    pub fn policy(&self) -> ExposurePolicy {
        ExposurePolicy {
            trusted: self.trusted_networks.iter().map(IpNet::trunc).collect(),
            internal_ports: self.internal_ports.iter().copied().collect::<BTreeSet<_>>(),
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
        exposure: ExposureArgs,
    }

    #[test]
    fn flags_become_a_policy() {
        let flags = Flags::try_parse_from([
            "run",
            "--trusted-networks",
            "198.51.100.0/24,2001:db8::/32",
            "--internal-ports",
            "3129,5432",
        ])
        .unwrap();
        let policy = flags.exposure.policy();
        assert_eq!(policy.trusted.len(), 2);
        assert_eq!(policy.internal_ports, BTreeSet::from([3129, 5432]));
        assert!(Flags::try_parse_from(["run", "--trusted-networks", "10.0.0.0/33"]).is_err());
        assert!(Flags::try_parse_from(["run", "--internal-ports", "70000"]).is_err());
    }
}
