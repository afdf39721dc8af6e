//! What kind of address a remote peer has, and whether it is a stranger.
//!
//! "External" decides what /exposure reports: a listener receiving from an external peer is
//! reachable from outside the networks the operator runs. Documentation ranges (192.0.2.0/24,
//! 2001:db8::/32, ...) count as external on purpose, so tests can play the internet without
//! sending to a real public address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

/// The address ranges a peer can fall in, as shown beside its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// 0.0.0.0/8 and `::`: never a real peer, shown so that a socket not yet connected does
    /// not read as public.
    Unspecified,
    Loopback,
    /// RFC 1918.
    Private,
    /// RFC 6598 shared address space (100.64.0.0/10), used by carriers and by overlay
    /// networks such as Tailscale.
    Cgnat,
    LinkLocal,
    /// RFC 5737 and RFC 3849 / RFC 9637: reserved for examples, never routed.
    Documentation,
    Multicast,
    /// IPv6 unique local addresses (fc00::/7), IPv6's private range.
    UniqueLocal,
    Public,
}

const PRIVATE_V4: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
];
const CGNAT_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10);
const THIS_NETWORK_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8);
const DOCUMENTATION_V4: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
];
const DOCUMENTATION_V6: [Ipv6Net; 2] = [
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    Ipv6Net::new_assert(Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];
const LINK_LOCAL_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);
const UNIQUE_LOCAL_V6: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7);

impl AddressClass {
    /// The class of `ip`. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack
    /// socket reports for an IPv4 peer) is classed as the IPv4 address it carries.
    pub fn of(ip: IpAddr) -> AddressClass {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> AddressClass {
        if THIS_NETWORK_V4.contains(&ip) {
            AddressClass::Unspecified
        } else if ip.is_loopback() {
            AddressClass::Loopback
        } else if PRIVATE_V4.iter().any(|net| net.contains(&ip)) {
            AddressClass::Private
        } else if CGNAT_V4.contains(&ip) {
            AddressClass::Cgnat
        } else if ip.is_link_local() {
            AddressClass::LinkLocal
        } else if DOCUMENTATION_V4.iter().any(|net| net.contains(&ip)) {
            AddressClass::Documentation
        } else if ip.is_multicast() || ip.is_broadcast() {
            AddressClass::Multicast
        } else {
            AddressClass::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> AddressClass {
        if ip.is_unspecified() {
            AddressClass::Unspecified
        } else if ip.is_loopback() {
            AddressClass::Loopback
        } else if LINK_LOCAL_V6.contains(&ip) {
            AddressClass::LinkLocal
        } else if UNIQUE_LOCAL_V6.contains(&ip) {
            AddressClass::UniqueLocal
        } else if DOCUMENTATION_V6.iter().any(|net| net.contains(&ip)) {
            AddressClass::Documentation
        } else if ip.is_multicast() {
            AddressClass::Multicast
        } else {
            AddressClass::Public
        }
    }

    /// Whether an address of this class is, by its range alone, outside the operator's own
    /// networks. Multicast counts as external: a group address is not a host anybody runs.
    pub fn is_external(self) -> bool {
        match self {
            AddressClass::Unspecified
            | AddressClass::Loopback
            | AddressClass::Private
            | AddressClass::Cgnat
            | AddressClass::LinkLocal
            | AddressClass::UniqueLocal => false,
            AddressClass::Documentation | AddressClass::Multicast | AddressClass::Public => true,
        }
    }
}

/// Whether a peer at `ip` comes from outside: not in a private, loopback, link-local, CGNAT
/// or unique-local range, and not in any of the `trusted` networks (`--trusted-networks`, for
/// public ranges the operator owns).
pub fn is_external(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    AddressClass::of(ip).is_external() && !trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        AddressClass::of(ip.parse().unwrap())
    }

    #[test]
    fn classes_ipv4_ranges() {
        assert_eq!(class("127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("127.255.0.9"), AddressClass::Loopback);
        assert_eq!(class("10.8.1.3"), AddressClass::Private);
        assert_eq!(class("172.16.248.22"), AddressClass::Private);
        assert_eq!(class("172.31.255.255"), AddressClass::Private);
        assert_eq!(class("172.32.0.1"), AddressClass::Public);
        assert_eq!(class("192.168.1.1"), AddressClass::Private);
        assert_eq!(class("100.64.0.1"), AddressClass::Cgnat);
        assert_eq!(class("100.127.255.254"), AddressClass::Cgnat);
        assert_eq!(class("100.128.0.1"), AddressClass::Public);
        assert_eq!(class("169.254.169.254"), AddressClass::LinkLocal);
        assert_eq!(class("192.0.2.7"), AddressClass::Documentation);
        assert_eq!(class("198.51.100.7"), AddressClass::Documentation);
        assert_eq!(class("203.0.113.5"), AddressClass::Documentation);
        assert_eq!(class("224.0.0.251"), AddressClass::Multicast);
        assert_eq!(class("255.255.255.255"), AddressClass::Multicast);
        assert_eq!(class("0.0.0.0"), AddressClass::Unspecified);
        assert_eq!(class("8.8.8.8"), AddressClass::Public);
    }

    #[test]
    fn classes_ipv6_ranges() {
        assert_eq!(class("::1"), AddressClass::Loopback);
        assert_eq!(class("::"), AddressClass::Unspecified);
        assert_eq!(class("fe80::1"), AddressClass::LinkLocal);
        assert_eq!(class("fd12:3456::1"), AddressClass::UniqueLocal);
        assert_eq!(class("fc00::1"), AddressClass::UniqueLocal);
        assert_eq!(class("2001:db8::5"), AddressClass::Documentation);
        assert_eq!(class("3fff::1"), AddressClass::Documentation);
        assert_eq!(class("ff02::1"), AddressClass::Multicast);
        assert_eq!(class("2606:4700::1111"), AddressClass::Public);
    }

    #[test]
    fn classes_a_mapped_ipv4_address_as_ipv4() {
        assert_eq!(class("::ffff:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("::ffff:203.0.113.5"), AddressClass::Documentation);
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Loopback);
    }

    #[test]
    fn external_means_outside_internal_ranges_and_trusted_networks() {
        let trusted: Vec<IpNet> = vec!["198.51.100.0/25".parse().unwrap()];
        let external = |ip: &str| is_external(ip.parse().unwrap(), &trusted);
        assert!(external("203.0.113.5"), "documentation counts as external");
        assert!(external("2001:db8::1"));
        assert!(external("8.8.8.8"));
        assert!(external("198.51.100.200"), "outside the trusted /25");
        assert!(!external("198.51.100.7"), "inside the trusted /25");
        assert!(
            !external("::ffff:198.51.100.7"),
            "mapped, inside the trusted /25"
        );
        for internal in [
            "10.1.2.3",
            "172.16.248.22",
            "192.168.0.1",
            "100.100.100.100",
            "127.0.0.1",
            "169.254.1.1",
            "fe80::1",
            "fd00::1",
            "::1",
        ] {
            assert!(!external(internal), "{internal} is internal");
        }
    }
}
