//! The two network namespaces and the veth pair between them that the veth scenarios use.
//!
//! Names carry the bench's pid (`tdb-<pid>-a`, `tdb-<pid>-b`), addresses are
//! 10.201.<x>.1 and 10.201.<x>.2 on a /24 that exists only between the two namespaces: no
//! route leads out of them, so their traffic cannot leave the machine. Dropping [`VethPair`]
//! deletes both namespaces (which destroys the veth ends in them); namespaces left by a bench
//! that was killed with SIGKILL are deleted by the next bench (their pid no longer runs).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

const PREFIX: &str = "tdb-";

/// Runs `ip <args>`; an error carries its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("could not run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One network namespace, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn add(name: String) -> Result<NetNs> {
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        // No IPv6 on the pair: router solicitations and MLD reports would add packets
        // that no benchmark process sent.
        for key in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            ns.exec(&["sysctl", "-qw", key])?;
        }
        Ok(ns)
    }

    fn exec(&self, argv: &[&str]) -> Result<String> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        ip(&args)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

/// Addresses namespace A sends one-way traffic to (a million of them).
pub const ONE_WAY_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 224, 0, 0), 12);

/// Namespace A (client side) and B (server side), joined by a veth pair, MTU 1500.
pub struct VethPair {
    // Field order is drop order: B, then A.
    b: NetNs,
    a: NetNs,
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
        let b = NetNs::add(format!("{PREFIX}{pid}-b"))?;
        let a = NetNs::add(format!("{PREFIX}{pid}-a"))?;
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
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ])?;
            ip(&["-n", ns, "link", "set", ifname, "mtu", "1500", "up"])?;
        }
        // Permanent neighbours: no ARP packet ever crosses the pair, so its interface
        // counters hold the benchmark's IP packets and nothing else.
        let mac_a = mac(a, &pair.if_a)?;
        let mac_b = mac(b, &pair.if_b)?;
        for (ns, ifname, peer, peer_mac) in [
            (a, &pair.if_a, pair.addr_b, &mac_b),
            (b, &pair.if_b, pair.addr_a, &mac_a),
        ] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &peer.to_string(),
                "lladdr",
                peer_mac,
                "dev",
                ifname,
                "nud",
                "permanent",
            ])?;
        }
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
        &self.a.name
    }

    pub fn ns_b(&self) -> &str {
        &self.b.name
    }
}

/// The MAC address of `ifname` in namespace `ns`.
fn mac(ns: &str, ifname: &str) -> Result<String> {
    let out = ip(&["-n", ns, "-o", "link", "show", "dev", ifname])?;
    let mut words = out.split_whitespace();
    words
        .find(|word| *word == "link/ether")
        .and_then(|_| words.next())
        .map(str::to_string)
        .with_context(|| format!("no MAC address for {ifname} in {out:?}"))
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
