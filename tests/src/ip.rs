//! `ip(8)` and named network namespaces: the pieces the integration tests ([`crate::NetNs`],
//! [`crate::Link`]) and the bench's veth pair (xtask) both build on.
//!
//! Errors are `io::Error`s that carry `ip`'s own stderr, so the tests can panic with them and
//! the bench can wrap them in its context.

use std::io;
use std::process::Command;

/// Runs `ip <args>` and returns its stdout; an error names the command and carries its stderr.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("could not run ip {args:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n <ns>] <args>`: in namespace `ns`, or in the root namespace.
pub fn ip_in(ns: Option<&str>, args: &[&str]) -> io::Result<String> {
    match ns {
        None => ip(args),
        Some(ns) => {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            ip(&all)
        }
    }
}

/// A named network namespace (`ip netns add`) with `lo` up, deleted on drop. Deleting it also
/// destroys the veth ends inside it, and with them their peers.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub fn add(name: String) -> io::Result<Namespace> {
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        ip_in(Some(&self.name), args)
    }

    /// `ip netns exec <name> <argv>`: a program run inside the namespace.
    pub fn exec(&self, argv: &[&str]) -> io::Result<String> {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(argv);
        ip(&args)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Processes still inside were started by the caller and are ended by its own guards.
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {err}",
                self.name
            );
        }
    }
}

/// The MAC address of `ifname` in namespace `ns` (or the root namespace).
pub fn mac(ns: Option<&str>, ifname: &str) -> io::Result<String> {
    let out = ip_in(ns, &["-o", "link", "show", "dev", ifname])?;
    let mut words = out.split_whitespace();
    words
        .find(|word| *word == "link/ether")
        .and_then(|_| words.next())
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("no MAC address for {ifname} in {out:?}")))
}

/// A permanent neighbour entry for `addr` on `ifname`: no ARP or NDP ever crosses the link, so
/// the first packets do not wait behind address resolution and the link carries nothing the
/// caller did not send.
pub fn permanent_neighbour(
    ns: Option<&str>,
    ifname: &str,
    addr: &str,
    lladdr: &str,
) -> io::Result<()> {
    let args = [
        "neigh",
        "replace",
        addr,
        "lladdr",
        lladdr,
        "dev",
        ifname,
        "nud",
        "permanent",
    ];
    ip_in(ns, &args).map(drop)
}
