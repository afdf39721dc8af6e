//! Network namespaces and veth pairs that a test creates and deletes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::ip;

static N: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs `ip [-n <ns>] <args>`; panics with its stderr when it fails.
fn ip(ns: Option<&NetNs>, args: &[&str]) -> String {
    ip::ip_in(ns.map(NetNs::name), args).unwrap_or_else(|e| panic!("{e}"))
}

/// A named network namespace (`ip netns add`), with `lo` up, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    ns: ip::Namespace,
}

impl NetNs {
    /// `tdt-<pid>-<n>-<tag>`: unique per test process and call.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("tdt-{}-{}-{tag}", std::process::id(), next());
        let ns = ip::Namespace::add(name).unwrap_or_else(|e| panic!("{e}"));
        NetNs { ns }
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// `ip -n <name> <args>`; panics when it fails.
    pub fn ip(&self, args: &[&str]) {
        ip(Some(self), args);
    }
}

/// A veth pair between side A (a namespace, or the root namespace) and side B
/// (a namespace), both up, with A = 10.200.x.1/24 + fd00:200:x::1/64 and
/// B = 10.200.x.2/24 + fd00:200:x::2/64 (IPv6 `nodad`, usable at once).
/// MTU 1500. Removed on drop.
#[derive(Debug)]
pub struct Link {
    x: u8,
    if_a: String,
    if_b: String,
    ns_a: Option<String>,
}

impl Link {
    /// Between the root namespace (A) and `b`.
    pub fn root_to(b: &NetNs) -> Link {
        Self::create(None, b)
    }

    /// Between two namespaces.
    pub fn between(a: &NetNs, b: &NetNs) -> Link {
        Self::create(Some(a), b)
    }

    fn create(a: Option<&NetNs>, b: &NetNs) -> Link {
        let n = next();
        let pid = std::process::id();
        let if_a = format!("td{pid}{n}a");
        let if_b = format!("td{pid}{n}b");
        assert!(if_a.len() <= 15, "interface name {if_a} too long");
        let x = free_subnet(pid + n * 37);
        ip(
            None,
            &[
                "link", "add", &if_a, "mtu", "1500", "type", "veth", "peer", "name", &if_b, "mtu",
                "1500",
            ],
        );
        let link = Link {
            x,
            if_a,
            if_b,
            ns_a: a.map(|a| a.name().to_string()),
        };
        if let Some(a) = a {
            ip(None, &["link", "set", &link.if_a, "netns", a.name()]);
        }
        ip(None, &["link", "set", &link.if_b, "netns", b.name()]);
        let ends = [(a, &link.if_a, 1u8), (Some(b), &link.if_b, 2u8)];
        for (ns, ifname, h) in ends {
            ip(
                ns,
                &["addr", "add", &format!("10.200.{x}.{h}/24"), "dev", ifname],
            );
            let v6 = format!("fd00:200:{x:x}::{h}/64");
            ip(ns, &["-6", "addr", "add", &v6, "dev", ifname, "nodad"]);
            ip(ns, &["link", "set", ifname, "up"]);
        }
        // Permanent neighbour entries on both sides: no ARP/NDP, so the first
        // datagrams are not queued (or dropped) behind address resolution and no
        // extra packets appear on the link.
        let macs = ends.map(|(ns, ifname, _)| {
            ip::mac(ns.map(NetNs::name), ifname).unwrap_or_else(|e| panic!("{e}"))
        });
        for ((ns, ifname, h), peer_mac) in ends.into_iter().zip(macs.iter().rev()) {
            let peer = 3 - h;
            for addr in [
                format!("10.200.{x}.{peer}"),
                format!("fd00:200:{x:x}::{peer}"),
            ] {
                ip::permanent_neighbour(ns.map(NetNs::name), ifname, &addr, peer_mac)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        link
    }

    pub fn a_v4(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 200, self.x, 1))
    }

    pub fn b_v4(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 200, self.x, 2))
    }

    pub fn a_v6(&self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, self.x as u16, 0, 0, 0, 0, 1))
    }

    pub fn b_v6(&self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, self.x as u16, 0, 0, 0, 0, 2))
    }

    /// Side A's address of the family of `v6`.
    pub fn a(&self, v6: bool) -> IpAddr {
        if v6 {
            self.a_v6()
        } else {
            self.a_v4()
        }
    }

    /// Side B's address of the family of `v6`.
    pub fn b(&self, v6: bool) -> IpAddr {
        if v6 {
            self.b_v6()
        } else {
            self.b_v4()
        }
    }

    pub fn if_a(&self) -> &str {
        &self.if_a
    }

    pub fn if_b(&self) -> &str {
        &self.if_b
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end deletes the pair. If the namespace holding it is gone
        // already, so is the pair: nothing to do.
        let _ = ip::ip_in(self.ns_a.as_deref(), &["link", "del", &self.if_a]);
    }
}

/// A /24 in 10.200.0.0/16 that nothing in the root namespace uses yet (a root-side address
/// would otherwise clash with another test's route), searched from `seed`.
fn free_subnet(seed: u32) -> u8 {
    (0..250u32)
        .map(|i| ((seed + i) % 250 + 1) as u8)
        .find(|x| {
            ip::ip(&["-o", "addr", "show", "to", &format!("10.200.{x}.0/24")])
                .is_ok_and(|out| out.trim().is_empty())
        })
        .expect("a free 10.200.x.0/24")
}
