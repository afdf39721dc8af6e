//! The two network namespaces and the veth pair between them that the veth scenarios use.
//!
//! Names carry the bench's pid (`tdb-<pid>-a`, `tdb-<pid>-b`), addresses are
//! 10.201.<x>.1 and 10.201.<x>.2 on a /24 that exists only between the two namespaces: no
//! route leads out of them, so their traffic cannot leave the machine. Dropping [`VethPair`]
//! deletes both namespaces (which destroys the veth ends in them); namespaces left by a bench
//! that was killed with SIGKILL are deleted by the next bench (their pid no longer runs).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Result;
use trafficd_tests::ip::{self, Namespace};

pub use trafficd_tests::ip::ip;

const PREFIX: &str = "tdb-";

/// A namespace of the pair: `lo` up and no IPv6, whose router solicitations and MLD reports
/// would add packets that no benchmark process sent.
fn add_namespace(name: String) -> Result<Namespace> {
    let ns = Namespace::add(name)?;
    for key in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        ns.exec(&["sysctl", "-qw", key])?;
    }
    Ok(ns)
}

/// Addresses namespace A sends one-way traffic to (a million of them).
pub const ONE_WAY_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 224, 0, 0), 12);

/// Namespace A (client side) and B (server side), joined by a veth pair, MTU 1500.
pub struct VethPair {
    // Field order is drop order: B, then A.
    b: Namespace,
    a: Namespace,
    pub if_a: String,
    pub if_b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

impl VethPair {
    pub fn create() -> Result<VethPair> {
        remove_stale();
        let pid = std::process::id();
        let x = (pid % 250 + 1) as u8;
        let b = add_namespace(format!("{PREFIX}{pid}-b"))?;
        let a = add_namespace(format!("{PREFIX}{pid}-a"))?;
        let pair = VethPair {
            if_a: format!("tdb{pid}a"),
            if_b: format!("tdb{pid}b"),
            addr_a: Ipv4Addr::new(10, 201, x, 1),
            addr_b: Ipv4Addr::new(10, 201, x, 2),
            a,
            b,
        };
        let (a, b) = (pair.ns_a(), pair.ns_b());
        ip(&[
            "-n", a, "link", "add", &pair.if_a, "type", "veth", "peer", "name", &pair.if_b,
            "netns", b,
        ])?;
        for (ns, ifname, addr) in [(a, &pair.if_a, pair.addr_a), (b, &pair.if_b, pair.addr_b)] {
            let addr = format!("{addr}/24");
            ip(&["-n", ns, "addr", "add", &addr, "dev", ifname])?;
            ip(&["-n", ns, "link", "set", ifname, "mtu", "1500", "up"])?;
        }
        // Permanent neighbours: no ARP packet ever crosses the pair, so its interface
        // counters hold the benchmark's IP packets and nothing else.
        let mac_a = ip::mac(Some(a), &pair.if_a)?;
        let mac_b = ip::mac(Some(b), &pair.if_b)?;
        ip::permanent_neighbour(Some(a), &pair.if_a, &pair.addr_b.to_string(), &mac_b)?;
        ip::permanent_neighbour(Some(b), &pair.if_b, &pair.addr_a.to_string(), &mac_a)?;
        // One-way traffic: A routes ONE_WAY_NETWORK to B, which neither owns nor forwards it,
        // so B drops it on arrival, without an ICMP answer (forwarding off: no "unreachable"
        // is sent). Namespaces inherit the host's IPv4 settings, Docker's forwarding included.
        let (network, prefix) = ONE_WAY_NETWORK;
        ip(&[
            "-n",
            a,
            "route",
            "add",
            &format!("{network}/{prefix}"),
            "via",
            &pair.addr_b.to_string(),
            "dev",
            &pair.if_a,
        ])?;
        pair.b
            .exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=0"])?;
        Ok(pair)
    }

    pub fn ns_a(&self) -> &str {
        self.a.name()
    }

    pub fn ns_b(&self) -> &str {
        self.b.name()
    }
}

/// Deletes `tdb-<pid>-*` namespaces whose bench process no longer runs.
fn remove_stale() {
    let Ok(listing) = ip(&["netns", "list"]) else {
        return;
    };
    for line in listing.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            println!("bench: deleting namespace {name} left by an earlier bench (pid {pid})");
            if let Err(err) = ip(&["netns", "del", name]) {
                eprintln!("warning: {err:#}");
            }
        }
    }
}
