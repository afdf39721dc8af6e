//! Network namespaces and veth pairs that a test creates and deletes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs `ip <args>`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `ip <args>`, ignoring failure (for cleanup).
fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ip_stdout(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The MAC address of an interface (in a namespace, or the root namespace).
fn mac(ns: Option<&NetNs>, ifname: &str) -> String {
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns.name()]);
    }
    args.extend(["-o", "link", "show", "dev", ifname]);
    let out = ip_stdout(&args);
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC address for {ifname} in {out:?}"))
        .to_string()
}

/// A named network namespace (`ip netns add`), with `lo` up, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// `tdt-<pid>-<n>-<tag>`: unique per test process and call.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("tdt-{}-{}-{tag}", std::process::id(), next());
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> <args>`; panics when it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the veth ends inside it, and with
        // them their peers. Processes still inside were started by the test and
        // are killed by their own guards.
        if !ip_quiet(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
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
        // A /24 in 10.200.0.0/16 that nothing in the root namespace uses yet
        // (a root-side address would otherwise clash with another test's route).
        let x = (0..250u32)
            .map(|i| ((pid + n * 37 + i) % 250 + 1) as u8)
            .find(|x| {
                ip_stdout(&["-o", "addr", "show", "to", &format!("10.200.{x}.0/24")])
                    .trim()
                    .is_empty()
            })
            .expect("a free 10.200.x.0/24");
        ip(&[
            "link", "add", &if_a, "mtu", "1500", "type", "veth", "peer", "name", &if_b, "mtu",
            "1500",
        ]);
        let link = Link {
            x,
            if_a,
            if_b,
            ns_a: a.map(|a| a.name().to_string()),
        };
        if let Some(a) = a {
            ip(&["link", "set", &link.if_a, "netns", a.name()]);
        }
        ip(&["link", "set", &link.if_b, "netns", b.name()]);
        let v4 = |h: u8| format!("10.200.{x}.{h}/24");
        let v6 = |h: u8| format!("fd00:200:{x:x}::{h}/64");
        let side = |ns: Option<&NetNs>, args: &[&str]| match ns {
            Some(ns) => ns.ip(args),
            None => ip(args),
        };
        for (ns, ifname, h) in [(a, &link.if_a, 1u8), (Some(b), &link.if_b, 2u8)] {
            side(ns, &["addr", "add", &v4(h), "dev", ifname]);
            side(ns, &["-6", "addr", "add", &v6(h), "dev", ifname, "nodad"]);
            side(ns, &["link", "set", ifname, "up"]);
        }
        // Permanent neighbour entries on both sides: no ARP/NDP, so the first
        // datagrams are not queued (or dropped) behind address resolution and no
        // extra packets appear on the link.
        let mac_a = mac(a, &link.if_a);
        let mac_b = mac(Some(b), &link.if_b);
        for (ns, ifname, peer, peer_mac) in [
            (a, &link.if_a, 2u8, &mac_b),
            (Some(b), &link.if_b, 1u8, &mac_a),
        ] {
            let v4 = format!("10.200.{x}.{peer}");
            let v6 = format!("fd00:200:{x:x}::{peer}");
            for addr in [&v4, &v6] {
                side(
                    ns,
                    &[
                        "neigh",
                        "replace",
                        addr,
                        "lladdr",
                        peer_mac,
                        "dev",
                        ifname,
                        "nud",
                        "permanent",
                    ],
                );
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
        match &self.ns_a {
            None => {
                ip_quiet(&["link", "del", &self.if_a]);
            }
            Some(ns) => {
                ip_quiet(&["-n", ns, "link", "del", &self.if_a]);
            }
        }
    }
}
