//! Network namespaces and veth pairs for the daemon's own tests that need real links (interface
//! counters, tc programs, conntrack). Every one is deleted on drop, also when a test panics.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static N: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, at most 15 characters with `prefix` (<= 4).
pub fn unique(prefix: &str) -> String {
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// Runs a command; panics with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// First line of a test that needs root: returns (passing) with a reason otherwise.
macro_rules! require_root {
    () => {
        if !$crate::testnet::is_root() {
            eprintln!("skipped: needs root (creates namespaces and links)");
            return;
        }
    };
}
pub(crate) use require_root;

/// A named network namespace with `lo` up; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let ns = Netns {
            name: unique("tdu"),
        };
        run("ip", &["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `<program> <args>` inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    pub fn sysctl(&self, setting: &str) {
        self.exec("sysctl", &["-qw", setting]);
    }

    /// Runs `f` on a thread that entered the namespace, so sockets it opens live there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("the namespace file");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on this thread only, with a namespace descriptor we hold.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("the thread in the namespace")
        })
    }

    /// The MAC address of `dev` in the namespace.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "link/ether")
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("no MAC address for {dev} in {out:?}"))
            .to_string()
    }

    /// A permanent neighbour entry for `addr` (IPv4 or IPv6) at `mac` on `dev`: no ARP or
    /// neighbour discovery delays or adds to the test's packets.
    pub fn permanent_neighbour(&self, dev: &str, addr: &str, mac: &str) {
        let family = if addr.contains(':') { "-6" } else { "-4" };
        self.ip(&[
            family,
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair: end `a` in the root namespace (or `ns_a`), end `b` in `ns_b`. IPv6 is off on
/// both ends, so the links carry nothing the test did not send (no MLD or router
/// solicitations). Deleted on drop.
pub struct Veth {
    pub a: String,
    pub b: String,
    ns_a: Option<String>,
}

impl Veth {
    pub fn new(ns_a: Option<&Netns>, ns_b: &Netns) -> Veth {
        let a = unique("tda");
        let b = unique("tdb");
        run(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        );
        let veth = Veth {
            a,
            b,
            ns_a: ns_a.map(|ns| ns.name.clone()),
        };
        if let Some(ns) = ns_a {
            run("ip", &["link", "set", &veth.a, "netns", &ns.name]);
        }
        run("ip", &["link", "set", &veth.b, "netns", &ns_b.name]);
        let v6_off = |name: &str| format!("net.ipv6.conf.{name}.disable_ipv6=1");
        match ns_a {
            Some(ns) => ns.sysctl(&v6_off(&veth.a)),
            None => {
                run("sysctl", &["-qw", &v6_off(&veth.a)]);
            }
        }
        ns_b.sysctl(&v6_off(&veth.b));
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let mut args = vec![];
        if let Some(ns) = &self.ns_a {
            args.extend(["-n", ns.as_str()]);
        }
        args.extend(["link", "del", self.a.as_str()]);
        let _ = Command::new("ip").args(&args).output();
    }
}

/// A /24 in 10.203.0.0/16 that no interface of the root namespace uses yet; each call starts
/// its search elsewhere, so tests running at once pick different ones.
pub fn free_subnet() -> u8 {
    let start = std::process::id() + 61 * N.fetch_add(1, Ordering::Relaxed);
    (0..250u32)
        .map(|i| ((start + i) % 250 + 1) as u8)
        .find(|x| {
            run(
                "ip",
                &["-o", "addr", "show", "to", &format!("10.203.{x}.0/24")],
            )
            .trim()
            .is_empty()
        })
        .expect("a free 10.203.x.0/24")
}

/// A -- ab -- B -- bc -- C, A at 10.1.1.1, C at 10.1.2.2, B forwarding between them.
pub struct Routed {
    pub a: Netns,
    pub b: Netns,
    pub c: Netns,
    pub ab: Veth,
    pub bc: Veth,
}

impl Routed {
    pub fn new() -> Routed {
        let (a, b, c) = (Netns::new(), Netns::new(), Netns::new());
        let ab = Veth::new(Some(&a), &b);
        let bc = Veth::new(Some(&b), &c);
        let ends = [
            (&a, &ab.a, "10.1.1.1/24"),
            (&b, &ab.b, "10.1.1.2/24"),
            (&b, &bc.a, "10.1.2.1/24"),
            (&c, &bc.b, "10.1.2.2/24"),
        ];
        for (ns, dev, addr) in ends {
            ns.ip(&["addr", "add", addr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        a.ip(&["route", "add", "default", "via", "10.1.1.2"]);
        c.ip(&["route", "add", "default", "via", "10.1.2.1"]);
        b.sysctl("net.ipv4.ip_forward=1");
        let neighbours = [
            (&a, &ab.a, "10.1.1.2", b.mac(&ab.b)),
            (&b, &ab.b, "10.1.1.1", a.mac(&ab.a)),
            (&b, &bc.a, "10.1.2.2", c.mac(&bc.b)),
            (&c, &bc.b, "10.1.2.1", b.mac(&bc.a)),
        ];
        for (ns, dev, addr, mac) in neighbours {
            ns.permanent_neighbour(dev, addr, &mac);
        }
        Routed { a, b, c, ab, bc }
    }
}
