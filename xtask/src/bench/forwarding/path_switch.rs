//! `bench forwarding`'s paired measurement: one transfer from A to C whose path through the
//! host switches every fifth of a second among three pairs of veths, one with no program on
//! them, one with empty tc programs, one counted by trafficd (`--interfaces` names only its
//! two). Each period's rate is read from the host's counter of the veth that period's path
//! leaves by, once the switch has settled, and compared with the unmonitored path's rate at
//! the same moment (between the unmonitored periods before and after it).
//!
//! Why: the round-based comparison runs each condition for seconds at a time, and this kind
//! of VM changes speed by tens of percent from one run to the next, so even dozens of rounds
//! leave a target within their interval. Here the same two sockets, processes, CPUs and
//! conntrack entry carry all three conditions, a fifth of a second apart, and the drift
//! cancels in each pair.
//!
//! What it measures is what counting forwarded traffic costs the forwarding: trafficd runs
//! (socket hooks included) for all three paths alike, so the socket hooks of iperf3's two
//! ends, which a router's forwarded traffic never meets, weigh on every path the same. Paths
//! are told apart by routes alone: one ACCEPT rule by address and, in the translated variant,
//! one SNAT rule cover all three, so no path has a rule the others lack.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use trafficd_tests::{Link, NetNs};

use super::condition::Condition;
use crate::bench::daemon::Daemon;
use crate::bench::empty_bpf::EmptyTc;
use crate::bench::measure;
use crate::bench::proc::sleep;
use crate::bench::report::{median_interval, spread, verdict};

/// A's and C's own addresses (on their loopbacks), reached over whichever path is current,
/// and the address the host translates A's to in the SNAT variant.
const A_END: &str = "10.199.0.1";
const C_END: &str = "10.199.0.2";
const TRANSLATED: &str = "10.199.0.3";
const ENDS: &str = "10.199.0.0/30";
const IPERF_PORT: &str = "5398";
/// How long each path carries the transfer, and the part of it left out of the rate while
/// the switch settles (routes replaced in three namespaces, queues drained).
const PERIOD: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_millis(50);
/// The paths in the order they take turns: every period follows a real switch (a switch
/// reorders a few packets, which TCP pays for), and each path follows each other one once per
/// cycle, so none gains from always coming after the same one.
const TURNS: [usize; 6] = [0, 1, 2, 0, 2, 1];
/// Which condition watches which path in the first part; they move one path on in each next.
const CONDITIONS: [Condition; 3] = [Condition::None, Condition::Empty, Condition::Trafficd];

/// One variant and protocol: the rates of every period, and each monitored condition's
/// shares of the unmonitored rate.
#[derive(Debug, Serialize, Deserialize)]
pub struct Switched {
    /// No program on any path: the method's own bias, which should be none.
    pub control: bool,
    pub translated: bool,
    pub tcp: bool,
    pub seconds: u32,
    /// Datagrams (UDP) or bytes (TCP) per second, period by period: (path's condition, rate).
    pub periods: Vec<(Condition, f64)>,
    pub empty_shares: Vec<f64>,
    pub trafficd_shares: Vec<f64>,
    /// trafficd's forwarded bytes on its path's way out, read after the transfer: proof that
    /// its programs counted the periods they were meant to (none in the control).
    pub trafficd_forwarded_bytes: Option<u64>,
}

/// A and C, three veth pairs from the host to each, and what makes the host forward
/// between them; torn down on drop, namespaces last.
struct Paths {
    rules: Vec<Vec<String>>,
    to_a: Vec<Link>,
    to_c: Vec<Link>,
    a: NetNs,
    c: NetNs,
}

impl Paths {
    fn create() -> Result<Paths> {
        let a = NetNs::new("swa");
        let c = NetNs::new("swc");
        let to_a: Vec<Link> = (0..3).map(|_| Link::root_to(&a)).collect();
        let to_c: Vec<Link> = (0..3).map(|_| Link::root_to(&c)).collect();
        let mut paths = Paths {
            rules: Vec::new(),
            to_a,
            to_c,
            a,
            c,
        };
        paths
            .a
            .ip(&["addr", "add", &format!("{A_END}/32"), "dev", "lo"]);
        paths
            .c
            .ip(&["addr", "add", &format!("{C_END}/32"), "dev", "lo"]);
        for link in paths.to_a.iter().chain(&paths.to_c) {
            // A packet may arrive by a path other than the current route back while a switch
            // settles: reverse-path filtering would drop it, and a drop is not a cost.
            for (key, value) in [("forwarding", "1"), ("rp_filter", "0")] {
                let path = format!("/proc/sys/net/ipv4/conf/{}/{key}", link.if_a());
                fs::write(&path, value).with_context(|| format!("write {path}"))?;
            }
        }
        paths.iptables(&["-I", "FORWARD", "-s", ENDS, "-j", "ACCEPT"])?;
        paths.switch(0)?;
        Ok(paths)
    }

    /// Sends A <-> C over path `path`: A's route to C, the host's to each, C's to A (and to
    /// the translated address). A and C send from their own addresses: a UDP server answers
    /// from the address the route picks, which must be the one its client sent to.
    fn switch(&self, path: usize) -> Result<()> {
        let (to_a, to_c) = (&self.to_a[path], &self.to_c[path]);
        let via = |link: &Link, host_side: bool| {
            if host_side {
                link.a_v4().to_string()
            } else {
                link.b_v4().to_string()
            }
        };
        let a_to_c = format!("{C_END}/32");
        let host_to_a = format!("{A_END}/32");
        let (a_via, c_via) = (via(to_a, true), via(to_c, true));
        let (host_via_c, host_via_a) = (via(to_c, false), via(to_a, false));
        let routes: [(Option<&str>, Vec<&str>); 4] = [
            (
                Some(self.a.name()),
                vec![&a_to_c, "via", &a_via, "dev", to_a.if_b(), "src", A_END],
            ),
            (None, vec![&a_to_c, "via", &host_via_c, "dev", to_c.if_a()]),
            (
                None,
                vec![&host_to_a, "via", &host_via_a, "dev", to_a.if_a()],
            ),
            (
                Some(self.c.name()),
                vec![ENDS, "via", &c_via, "dev", to_c.if_b(), "src", C_END],
            ),
        ];
        for (ns, route) in routes {
            let mut args = vec!["route", "replace"];
            args.extend(route);
            trafficd_tests::ip::ip_in(ns, &args)?;
        }
        Ok(())
    }

    /// The host's ends of path `path`'s two veths.
    fn host_ends(&self, path: usize) -> [&str; 2] {
        [self.to_a[path].if_a(), self.to_c[path].if_a()]
    }

    fn iptables(&mut self, rule: &[&str]) -> Result<()> {
        let status = Command::new("iptables")
            .args(rule)
            .status()
            .context("could not run iptables")?;
        if !status.success() {
            bail!("iptables {rule:?} failed ({status})");
        }
        self.rules
            .push(rule.iter().map(|s| s.to_string()).collect());
        Ok(())
    }
}

impl Drop for Paths {
    fn drop(&mut self) {
        for rule in self.rules.iter().rev() {
            // The same rule with -D instead of -I or -A.
            let mut undo = rule.clone();
            if let Some(action) = undo.iter_mut().find(|a| *a == "-I" || *a == "-A") {
                *action = "-D".to_string();
            }
            let _ = Command::new("iptables").args(&undo).status();
        }
        for destination in [C_END, A_END] {
            let _ = trafficd_tests::ip::ip(&["route", "del", &format!("{destination}/32")]);
        }
    }
}

fn ifindex(name: &str) -> Result<u32> {
    measure::interface_number(name, "ifindex")
}

/// What left by `interface` so far: bytes for TCP, packets for UDP.
fn counter(interface: &str, tcp: bool) -> Result<u64> {
    let file = if tcp {
        "statistics/tx_bytes"
    } else {
        "statistics/tx_packets"
    };
    measure::interface_number(interface, file)
}

/// Which transfers the switched paths carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocols {
    Both,
    Udp,
    Tcp,
}

impl Protocols {
    /// The `tcp` flag of each transfer to run, UDP first.
    fn tcp_flags(self) -> &'static [bool] {
        match self {
            Protocols::Both => &[false, true],
            Protocols::Udp => &[false],
            Protocols::Tcp => &[true],
        }
    }
}

/// Both variants (routed, then with the host translating A's address) and both protocols,
/// `seconds` of switching each, in three parts: each condition watches each path for one of
/// them, so that a path's own speed (one veth pair carries TCP a few percent faster than
/// another) weighs on every condition alike. With `control`, no program watches any path:
/// the shares then show what the method itself makes of three unwatched paths. `protocols`
/// narrows a long run to the transfers whose target is still open.
pub fn run(
    trafficd: &Path,
    out: &Path,
    seconds: u32,
    control: bool,
    protocols: Protocols,
) -> Result<Vec<Switched>> {
    let mut paths = Paths::create()?;
    let mut results = Vec::new();
    for translated in [false, true] {
        if translated {
            paths.iptables(&[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                A_END,
                "-d",
                C_END,
                "-j",
                "SNAT",
                "--to-source",
                TRANSLATED,
            ])?;
        }
        for &tcp in protocols.tcp_flags() {
            let mut switched = Switched {
                control,
                translated,
                tcp,
                seconds,
                periods: Vec::new(),
                empty_shares: Vec::new(),
                trafficd_shares: Vec::new(),
                trafficd_forwarded_bytes: (!control).then_some(0),
            };
            for shift in 0..CONDITIONS.len() {
                let watching: [Condition; 3] =
                    std::array::from_fn(|path| CONDITIONS[(path + shift) % CONDITIONS.len()]);
                let part = (seconds / 3).max(1);
                let mut watch = (!control)
                    .then(|| Watch::start(trafficd, out, &paths, &watching))
                    .transpose()?;
                let before = watch.as_mut().map(Watch::forwarded_out).transpose()?;
                let periods = switched_transfer(&paths, tcp, part, &watching)?;
                if let (Some(watch), Some(before), Some(total)) = (
                    watch.as_mut(),
                    before,
                    switched.trafficd_forwarded_bytes.as_mut(),
                ) {
                    let counted = watch.forwarded_out()? - before;
                    if counted == 0 {
                        bail!("trafficd counted nothing forwarded on its path: the comparison is void");
                    }
                    *total += counted;
                }
                // Shares within the part: its periods are one transfer's.
                switched
                    .empty_shares
                    .extend(shares(&periods, Condition::Empty));
                switched
                    .trafficd_shares
                    .extend(shares(&periods, Condition::Trafficd));
                switched.periods.extend(periods);
            }
            println!("bench: forwarding, switched paths: {}", summary(&switched));
            results.push(switched);
        }
    }
    Ok(results)
}

/// The empty programs and trafficd on the paths `watching` gives them, for one part.
struct Watch {
    _empty: EmptyTc,
    daemon: Daemon,
    /// The host's end of trafficd's path towards C.
    counted_out: String,
}

impl Watch {
    fn start(
        trafficd: &Path,
        out: &Path,
        paths: &Paths,
        watching: &[Condition; 3],
    ) -> Result<Watch> {
        let path_of = |condition: Condition| {
            watching
                .iter()
                .position(|c| *c == condition)
                .context("every condition has a path")
        };
        let [a_end, c_end] = paths.host_ends(path_of(Condition::Empty)?);
        let empty = EmptyTc::attach(&[ifindex(a_end)?, ifindex(c_end)?])?;
        let counted = paths.host_ends(path_of(Condition::Trafficd)?);
        let daemon = Daemon::start(
            trafficd,
            out,
            "switched",
            &["--interfaces", &counted.join(",")],
        )?;
        // The tc programs attach to the interfaces the first drains find.
        sleep(Duration::from_secs(2))?;
        Ok(Watch {
            _empty: empty,
            daemon,
            counted_out: counted[1].to_string(),
        })
    }

    /// trafficd's lifetime forwarded bytes leaving by its path's end towards C.
    fn forwarded_out(&mut self) -> Result<u64> {
        forwarded_out(&mut self.daemon, &self.counted_out)
    }
}

/// trafficd's lifetime forwarded bytes leaving by `interface`, from /top?by=interface.
fn forwarded_out(daemon: &mut Daemon, interface: &str) -> Result<u64> {
    let (body, _) = daemon
        .api
        .get("/top?by=interface&limit=1000", Duration::from_secs(10))?;
    let top: serde_json::Value = serde_json::from_str(&body)?;
    let item = top["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["interface"] == interface))
        .with_context(|| format!("trafficd does not list {interface}"))?;
    Ok(item["lifetime_split"]["transmit"]["forwarded"]
        .as_u64()
        .unwrap_or(0))
}

/// One iperf3 transfer A -> C (sender on CPU 0, receiver on CPU 1, as in the rounds), its path
/// switched period by period; each period's rate on the host's way out to C.
fn switched_transfer(
    paths: &Paths,
    tcp: bool,
    seconds: u32,
    watching: &[Condition; 3],
) -> Result<Vec<(Condition, f64)>> {
    let server = Iperf3::spawn(
        Command::new("ip")
            .args(["netns", "exec", paths.c.name()])
            .args(["iperf3", "-s", "-1", "-p", IPERF_PORT, "-A", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "iperf3 in C",
    )?;
    sleep(Duration::from_millis(300))?;
    let mut client = Command::new("ip");
    client
        .args(["netns", "exec", paths.a.name()])
        .args([
            "iperf3", "-c", C_END, "-B", A_END, "-p", IPERF_PORT, "-A", "0",
        ])
        // A second at either end where no period is measured: the start and the end.
        .args(["-t", &(seconds + 2).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !tcp {
        client.args(["-u", "-l", "64", "-b", "0"]);
    }
    let client = Iperf3::spawn(&mut client, "iperf3 in A")?;
    sleep(Duration::from_secs(1))?;
    let mut periods = Vec::new();
    let started = Instant::now();
    for turn in TURNS.iter().cycle() {
        if started.elapsed() >= Duration::from_secs(u64::from(seconds)) {
            break;
        }
        paths.switch(*turn)?;
        let leaving_by = paths.host_ends(*turn)[1];
        sleep(SETTLE)?;
        let (from, at) = (counter(leaving_by, tcp)?, Instant::now());
        sleep(PERIOD - SETTLE)?;
        let moved = counter(leaving_by, tcp)? - from;
        periods.push((watching[*turn], moved as f64 / at.elapsed().as_secs_f64()));
    }
    let output = client.finish()?;
    drop(server);
    if !output.status.success() {
        bail!(
            "iperf3 in A failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(periods)
}

/// An iperf3 process, killed on drop unless it was waited for.
struct Iperf3(Option<Child>);

impl Iperf3 {
    fn spawn(command: &mut Command, what: &str) -> Result<Iperf3> {
        Ok(Iperf3(Some(
            command
                .spawn()
                .with_context(|| format!("could not start {what}"))?,
        )))
    }

    fn finish(mut self) -> Result<std::process::Output> {
        let child = self.0.take().context("iperf3 was waited for already")?;
        Ok(child.wait_with_output()?)
    }
}

impl Drop for Iperf3 {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each `condition` period's rate over the unmonitored rate at the same moment: the mean of
/// the nearest unmonitored periods before and after it, weighted by nearness.
fn shares(periods: &[(Condition, f64)], condition: Condition) -> Vec<f64> {
    let unmonitored: Vec<(usize, f64)> = periods
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c == Condition::None)
        .map(|(i, (_, rate))| (i, *rate))
        .collect();
    periods
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c == condition)
        .filter_map(|(i, (_, rate))| {
            let after = unmonitored.iter().position(|(j, _)| *j > i)?;
            let (before, after) = (unmonitored.get(after.checked_sub(1)?)?, unmonitored[after]);
            let weight = (i - before.0) as f64 / (after.0 - before.0) as f64;
            let then = before.1 + (after.1 - before.1) * weight;
            (then > 0.0).then(|| rate / then)
        })
        .collect()
}

/// `median [interval] (n periods)` of each monitored condition's shares, and trafficd's
/// verdict against its target (in the control, the second and third paths' shares).
pub fn summary(s: &Switched) -> String {
    let variant = if s.translated { "SNAT" } else { "routed" };
    let (what, target) = if s.tcp {
        ("TCP", 0.97)
    } else {
        ("64 B UDP", 0.90)
    };
    let cell = |shares: &[f64]| {
        let median = spread(shares.iter().copied()).map_or(f64::NAN, |s| s.median);
        match median_interval(shares.iter().copied()) {
            Some((low, high)) => {
                format!(
                    "{median:.3} [{low:.3}-{high:.3}] over {} periods",
                    shares.len()
                )
            }
            None => format!("{median:.3} over {} periods", shares.len()),
        }
    };
    if s.control {
        return format!(
            "control (no program on any path), {variant}, {what}: second path {}, third path {}",
            cell(&s.empty_shares),
            cell(&s.trafficd_shares),
        );
    }
    format!(
        "{variant}, {what}: empty programs {}, trafficd {}; {}",
        cell(&s.empty_shares),
        cell(&s.trafficd_shares),
        verdict(&s.trafficd_shares, target, "periods")
    )
}

#[cfg(test)]
mod tests {
    use super::{shares, Condition};

    #[test]
    fn a_period_is_compared_with_the_unmonitored_rate_at_its_moment() {
        use Condition::{Empty, None, Trafficd};
        // The machine speeds up steadily: 100, 110, 120, ... per period.
        let periods = [
            (None, 100.0),
            (Empty, 110.0 * 0.95),
            (Trafficd, 120.0 * 0.9),
            (Trafficd, 130.0 * 0.9),
            (Empty, 140.0 * 0.95),
            (None, 150.0),
            (None, 160.0),
            (Empty, 170.0 * 0.95),
        ];
        let round =
            |v: Vec<f64>| -> Vec<f64> { v.iter().map(|x| (x * 1e9).round() / 1e9).collect() };
        assert_eq!(round(shares(&periods, Trafficd)), [0.9, 0.9]);
        // The last period has no unmonitored one after it: left out.
        assert_eq!(round(shares(&periods, Empty)), [0.95, 0.95]);
    }
}
