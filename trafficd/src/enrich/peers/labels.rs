//! The labels file (`--labels FILE`): names the operator gives to addresses and networks.
//!
//! One entry a line, `CIDR-or-address name`, e.g. `10.8.1.0/24 squid-proxies`; `#` starts a
//! comment, blank lines are skipped, the name is the rest of the line. The most specific
//! network wins, so a host can be named inside a named subnet. Lookups go through a prefix
//! trie: their cost grows with the address length, not with the number of labels.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;

/// Why one line of a labels file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// From 1, as an editor shows it.
    pub line: usize,
    pub reason: String,
}

/// Every label of one version of the file.
#[derive(Default)]
pub struct Labels {
    networks: JointPrefixMap<IpNet, Arc<str>>,
}

impl Labels {
    /// Parses a whole file: all of it or nothing, so a file being edited never leaves half
    /// its labels in use. A network listed twice keeps its last name.
    pub fn parse(text: &str) -> Result<Labels, LineError> {
        let mut networks = JointPrefixMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fail = |reason: String| LineError {
                line: index + 1,
                reason,
            };
            let (network, name) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| fail(format!("`{line}` has an address but no name")))?;
            let network = parse_network(network).map_err(fail)?;
            networks.insert(network, Arc::from(name.trim()));
        }
        Ok(Labels { networks })
    }

    /// The name of the most specific network holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<str>> {
        let ip = ip.to_canonical();
        let host = IpNet::from(ip);
        self.networks.get_lpm(&host).map(|(_, name)| name)
    }

    pub fn len(&self) -> usize {
        self.networks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.networks.len() == 0
    }
}

/// `10.8.1.0/24`, `10.8.1.3` or `2001:db8::/32`. Host bits set below the prefix
/// (`10.8.1.3/24`) are refused: they are a typo more often than not, and silently widening
/// them would name addresses the operator did not mean.
fn parse_network(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let network: IpNet = text
        .parse()
        .map_err(|_| format!("`{text}` is neither an address nor a CIDR such as 10.8.1.0/24"))?;
    if network.trunc() != network {
        return Err(format!(
            "`{text}` has host bits set below its prefix; did you mean {}?",
            network.trunc()
        ));
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(labels: &Labels, ip: &str) -> Option<String> {
        labels.lookup(ip.parse().unwrap()).map(|n| n.to_string())
    }

    #[test]
    fn the_most_specific_network_names_the_address() {
        let labels = Labels::parse(
            "# proxies and friends\n\
             \n\
             10.8.0.0/16   office vpn\n\
             10.8.1.0/24 squid-proxies # the cache tier\n\
             10.8.1.3 squid-3\n\
             2001:db8::/32 example-v6\n",
        )
        .unwrap();
        assert_eq!(labels.len(), 4);
        assert_eq!(name(&labels, "10.8.1.3").as_deref(), Some("squid-3"));
        assert_eq!(name(&labels, "10.8.1.4").as_deref(), Some("squid-proxies"));
        assert_eq!(name(&labels, "10.8.200.1").as_deref(), Some("office vpn"));
        assert_eq!(name(&labels, "::ffff:10.8.1.3").as_deref(), Some("squid-3"));
        assert_eq!(name(&labels, "2001:db8::7").as_deref(), Some("example-v6"));
        assert_eq!(name(&labels, "10.9.0.1"), None);
        assert_eq!(name(&labels, "2001:db9::1"), None);
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_and_reason() {
        let bad = Labels::parse("10.0.0.0/8 lan\n\n10.300.0.0/16 typo\n")
            .err()
            .unwrap();
        assert_eq!(bad.line, 3);
        assert!(bad.reason.contains("10.300.0.0/16"), "{}", bad.reason);

        let no_name = Labels::parse("# x\n192.0.2.1\n").err().unwrap();
        assert_eq!(no_name.line, 2);
        assert!(no_name.reason.contains("no name"), "{}", no_name.reason);

        let host_bits = Labels::parse("10.8.1.3/24 proxies\n").err().unwrap();
        assert!(
            host_bits.reason.contains("10.8.1.0/24"),
            "{}",
            host_bits.reason
        );
    }

    #[test]
    fn ten_thousand_networks_load_and_answer() {
        let text: String = (0..10_000u32)
            .map(|i| format!("10.{}.{}.0/24 net-{i}\n", i / 256, i % 256))
            .collect();
        let labels = Labels::parse(&text).unwrap();
        assert_eq!(labels.len(), 10_000);
        assert_eq!(name(&labels, "10.39.15.77").as_deref(), Some("net-9999"));
        assert_eq!(name(&labels, "10.0.0.1").as_deref(), Some("net-0"));
        assert_eq!(name(&labels, "10.40.0.1"), None);
    }
}
