//! Traffic the host forwards: namespaces routed to each other through the root namespace,
//! whose interfaces the daemon counts on, and the /top?by=interface item of an interface.

use serde_json::Value;

use crate::{wait_for, Daemon, Link, NetNs};

/// Host-side forwarding between two links to the root namespace: each namespace routes the
/// other's subnet through the host, forwarding is on for the two host interfaces only, and
/// FORWARD accepts them in both directions (dockerd sets its policy to DROP). The rules go on
/// drop; the sysctls go with the interfaces.
pub struct Forwarder {
    rules: Vec<Vec<String>>,
}

impl Forwarder {
    /// `a` reaches `c`'s side of `to_c` through the host, and back.
    pub fn between(a: &NetNs, to_a: &Link, c: &NetNs, to_c: &Link) -> Forwarder {
        let subnet = |link: &Link| {
            let ip = link.b_v4().to_string();
            let (net, _) = ip.rsplit_once('.').expect("an IPv4 address");
            format!("{net}.0/24")
        };
        a.ip(&[
            "route",
            "add",
            &subnet(to_c),
            "via",
            &to_a.a_v4().to_string(),
        ]);
        c.ip(&[
            "route",
            "add",
            &subnet(to_a),
            "via",
            &to_c.a_v4().to_string(),
        ]);
        for link in [to_a, to_c] {
            let key = format!("net.ipv4.conf.{}.forwarding", link.if_a());
            sysctl(&key, "1");
        }
        let mut forwarder = Forwarder { rules: Vec::new() };
        forwarder.accept(to_a.if_a(), to_c.if_a());
        forwarder.accept(to_c.if_a(), to_a.if_a());
        forwarder
    }

    /// FORWARD accepts what comes in by `from` and leaves by `to`, until drop.
    pub fn accept(&mut self, from: &str, to: &str) {
        let rule: Vec<String> = ["FORWARD", "-i", from, "-o", to, "-j", "ACCEPT"]
            .map(String::from)
            .to_vec();
        iptables("-I", &rule);
        self.rules.push(rule);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for rule in &self.rules {
            let mut args = vec!["-D".to_string()];
            args.extend(rule.iter().cloned());
            let _ = std::process::Command::new("iptables").args(&args).status();
        }
    }
}

fn iptables(action: &str, rule: &[String]) {
    let status = std::process::Command::new("iptables")
        .arg(action)
        .args(rule)
        .status()
        .expect("run iptables");
    assert!(status.success(), "iptables {action} {rule:?} failed");
}

fn sysctl(key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// The /top?by=interface item of `name`, if the daemon lists it.
pub fn interface_item(d: &Daemon, name: &str) -> Option<Value> {
    let (status, body) = d.get_json("/top?by=interface&limit=1000&window=60s");
    assert_eq!(status, 200, "{body}");
    let named: Vec<&Value> = body["items"]
        .as_array()?
        .iter()
        .filter(|i| i["interface"] == name)
        .collect();
    assert!(named.len() <= 1, "{name} listed twice: {named:?}");
    named.first().map(|i| (*i).clone())
}

/// Sum of an interface's counted parts in one direction of its lifetime split, and its
/// not_seen.
pub fn counted_and_not_seen(item: &Value, direction: &str) -> (u64, u64) {
    let parts = &item["lifetime_split"][direction];
    let u = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a number in {item}"))
    };
    let counted = u(&parts["local"])
        + u(&parts["forwarded"])
        + u(&parts["unattributed"]["dropped"])
        + u(&parts["unattributed"]["non_ip"]);
    (counted, u(&parts["unattributed"]["not_seen"]))
}

/// The parts of each direction add up to the interface's own counter within 1%.
pub fn assert_conserved(item: &Value) {
    for (direction, counter) in [
        ("transmit", "lifetime_tx_bytes"),
        ("receive", "lifetime_rx_bytes"),
    ] {
        let device = item[counter].as_u64().expect("a counter");
        let window = counter.trim_start_matches("lifetime_");
        assert!(
            item[window].as_u64() <= Some(device),
            "window above lifetime: {item}"
        );
        let (counted, not_seen) = counted_and_not_seen(item, direction);
        assert_eq!(counted + not_seen, device.max(counted), "{item}");
        assert!(
            not_seen * 100 <= device.max(1) && counted <= device + device / 100,
            "{direction}: {counted} counted of the device's {device} ({not_seen} not seen): {item}"
        );
    }
}

/// Waits until the daemon counts on `interface` (its item has a split).
pub fn wait_counted(d: &Daemon, interface: &str) -> Value {
    wait_for(&format!("{interface} counted"), || {
        match interface_item(d, interface) {
            Some(item) if item["split"].is_object() => Ok(item),
            other => Err(format!("{other:?}")),
        }
    })
}

/// The item of `name` once the traffic has settled: the drain reads the device's counters and
/// the tc programs' kinds a few microseconds apart, so a packet between the two reads shows in
/// one before the other until the next drain. Three intervals later both have it.
pub fn settled_interface(d: &Daemon, name: &str) -> Value {
    std::thread::sleep(d.interval() * 3);
    interface_item(d, name).unwrap_or_else(|| panic!("{name} not listed"))
}
