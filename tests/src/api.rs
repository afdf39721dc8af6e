//! Typed access to GET /top answers, checking the contract's shape on the way.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

/// Numeric fields every /top item has, whatever `by` is.
pub const COMMON_FIELDS: [&str; 10] = [
    "tx_bytes",
    "rx_bytes",
    "tx_bytes_per_second",
    "rx_bytes_per_second",
    "lifetime_tx_bytes",
    "lifetime_rx_bytes",
    "tx_packets",
    "rx_packets",
    "lifetime_tx_packets",
    "lifetime_rx_packets",
];

/// A parsed GET /top answer.
#[derive(Debug, Clone)]
pub struct Top {
    pub json: Value,
    items: Vec<Item>,
}

impl Top {
    /// Checks `{"by", "window_seconds", "items": [...]}` and every item's common
    /// and per-`by` fields; panics with the JSON when something is off.
    pub fn from_json(json: Value) -> Top {
        let by = json["by"]
            .as_str()
            .unwrap_or_else(|| panic!("/top: no string \"by\": {json}"))
            .to_string();
        assert!(
            json["window_seconds"].is_number(),
            "/top: no number \"window_seconds\": {json}"
        );
        let arr = json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("/top: no array \"items\": {json}"));
        let items: Vec<Item> = arr.iter().cloned().map(Item).collect();
        for it in &items {
            it.check(&by);
        }
        Top { json, items }
    }

    pub fn by(&self) -> &str {
        self.json["by"].as_str().unwrap()
    }

    pub fn window_seconds(&self) -> f64 {
        self.json["window_seconds"].as_f64().unwrap()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The by=process item of `pid`. Panics if there is more than one (the
    /// contract is one item per process).
    pub fn process(&self, pid: u32) -> Option<&Item> {
        let found: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| i.0["pid"].as_u64() == Some(pid as u64))
            .collect();
        assert!(
            found.len() <= 1,
            "/top by=process has {} items for pid {pid}: {found:#?}",
            found.len()
        );
        found.into_iter().next()
    }

    /// The by=cgroup item of a cgroup path ("/trafficd-test-...").
    pub fn cgroup(&self, path: &str) -> Option<&Item> {
        let found: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| i.0["cgroup"].as_str() == Some(path))
            .collect();
        assert!(
            found.len() <= 1,
            "/top by=cgroup has {} items for {path}: {found:#?}",
            found.len()
        );
        found.into_iter().next()
    }

    /// The by=flow items of a protocol and local/remote socket addresses
    /// (compared as addresses, so IPv6 spelling does not matter).
    pub fn flows(&self, protocol: &str, local: SocketAddr, remote: SocketAddr) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| {
                i.0["protocol"].as_str() == Some(protocol)
                    && i.0["local"]
                        .as_str()
                        .and_then(|s| s.parse::<SocketAddr>().ok())
                        == Some(local)
                    && i.0["remote"]
                        .as_str()
                        .and_then(|s| s.parse::<SocketAddr>().ok())
                        == Some(remote)
            })
            .collect()
    }

    /// The by=remote item of a remote address.
    pub fn remote(&self, ip: IpAddr) -> Option<&Item> {
        self.items.iter().find(|i| {
            i.0["remote"]
                .as_str()
                .and_then(|s| s.parse::<IpAddr>().ok())
                == Some(ip)
        })
    }
}

/// One /top item.
#[derive(Debug, Clone)]
pub struct Item(pub Value);

impl Item {
    fn check(&self, by: &str) {
        let v = &self.0;
        for f in COMMON_FIELDS {
            assert!(
                v[f].is_number(),
                "/top by={by}: item without number {f:?}: {v}"
            );
        }
        for f in [
            "tx_bytes",
            "rx_bytes",
            "lifetime_tx_bytes",
            "lifetime_rx_bytes",
            "tx_packets",
            "rx_packets",
        ] {
            assert!(
                v[f].is_u64(),
                "/top by={by}: {f:?} is not a non-negative integer: {v}"
            );
        }
        assert!(
            self.tx() >= self.u64("tx_bytes"),
            "/top: lifetime_tx_bytes < tx_bytes in the window: {v}"
        );
        assert!(
            self.rx() >= self.u64("rx_bytes"),
            "/top: lifetime_rx_bytes < rx_bytes in the window: {v}"
        );
        let strings: &[&str] = match by {
            "process" => &["comm", "cmdline", "user", "cgroup"],
            "cgroup" => &["cgroup"],
            "flow" => &["protocol", "local", "remote", "comm", "cgroup"],
            "remote" => &["remote"],
            "interface" => &["interface"],
            other => panic!("/top: unexpected by {other:?}"),
        };
        for f in strings {
            assert!(
                v[*f].is_string(),
                "/top by={by}: item without string {f:?}: {v}"
            );
        }
        match by {
            "process" => {
                assert!(v["pid"].is_u64(), "/top by=process: pid not a number: {v}");
                // Unattributed buckets (pid 0, with a reason) have no owner, so uid may be null.
                let unattributed = v["pid"].as_u64() == Some(0);
                assert!(
                    v["uid"].is_u64() || (unattributed && v["uid"].is_null()),
                    "/top by=process: uid not a number: {v}"
                );
                assert!(
                    !unattributed || v["reason"].is_string(),
                    "/top by=process: an unattributed bucket (pid 0) without a reason: {v}"
                );
                assert!(
                    v["reason"].is_null() || v["reason"].is_string(),
                    "/top by=process: bad reason: {v}"
                );
            }
            "cgroup" => assert!(
                v["cgroup_id"].is_u64(),
                "/top by=cgroup: no number cgroup_id: {v}"
            ),
            "flow" => assert!(v["pid"].is_u64(), "/top by=flow: no number pid: {v}"),
            _ => {}
        }
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.0[key]
            .as_u64()
            .unwrap_or_else(|| panic!("/top item has no integer {key:?}: {}", self.0))
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.0[key]
            .as_f64()
            .unwrap_or_else(|| panic!("/top item has no number {key:?}: {}", self.0))
    }

    pub fn str(&self, key: &str) -> &str {
        self.0[key]
            .as_str()
            .unwrap_or_else(|| panic!("/top item has no string {key:?}: {}", self.0))
    }

    /// Lifetime transmitted bytes (since the daemon started).
    pub fn tx(&self) -> u64 {
        self.u64("lifetime_tx_bytes")
    }

    /// Lifetime received bytes.
    pub fn rx(&self) -> u64 {
        self.u64("lifetime_rx_bytes")
    }

    pub fn tx_packets(&self) -> u64 {
        self.u64("lifetime_tx_packets")
    }

    pub fn rx_packets(&self) -> u64 {
        self.u64("lifetime_rx_packets")
    }

    pub fn pid(&self) -> u32 {
        self.u64("pid") as u32
    }

    pub fn comm(&self) -> &str {
        self.str("comm")
    }

    pub fn cgroup(&self) -> &str {
        self.str("cgroup")
    }
}

/// The query the `wait_*` helpers poll: a 60 s window (so recent traffic ranks
/// high) and the largest limit; the assertions use the lifetime_* totals, so
/// timing does not matter.
fn query(by: &str) -> String {
    format!("by={by}&window=60s&limit=1000")
}

fn summary(top: &Top) -> String {
    let mut s = format!("{} items", top.items().len());
    for i in top.items().iter().take(8) {
        let v = &i.0;
        s.push_str(&format!(
            "\n  pid={} comm={} cgroup={} local={} remote={} lifetime tx={} rx={}",
            v["pid"],
            v["comm"],
            v["cgroup"],
            v["local"],
            v["remote"],
            v["lifetime_tx_bytes"],
            v["lifetime_rx_bytes"]
        ));
    }
    s
}

impl crate::Daemon {
    /// Polls /top until `select` finds an item for which `ready` holds (at most
    /// 15 s), then waits until its lifetime counters stop changing for two
    /// drain intervals (so the last FIN/ACKs are in), and returns it.
    pub fn wait_item(
        &self,
        what: &str,
        by: &str,
        select: impl Fn(&Top) -> Option<Item>,
        ready: impl Fn(&Item) -> bool,
    ) -> Item {
        let q = query(by);
        let first = crate::wait_for(what, || {
            let top = self.top(&q);
            match select(&top) {
                Some(i) if ready(&i) => Ok(i),
                Some(i) => Err(format!("found, not there yet: {:#}", i.0)),
                None => Err(format!("not in /top?{q}: {}", summary(&top))),
            }
        });
        let key = |i: &Item| (i.tx(), i.rx(), i.tx_packets(), i.rx_packets());
        let pause = (self.interval() * 2 + std::time::Duration::from_millis(200))
            .max(std::time::Duration::from_millis(700));
        let mut last = first;
        for _ in 0..10 {
            std::thread::sleep(pause);
            let now = select(&self.top(&q))
                .unwrap_or_else(|| panic!("{what}: disappeared from /top?{q}"));
            if key(&now) == key(&last) {
                return now;
            }
            last = now;
        }
        last
    }

    /// The by=process item of `pid` once `ready` holds for it (see [`Self::wait_item`]).
    pub fn wait_process(&self, pid: u32, ready: impl Fn(&Item) -> bool) -> Item {
        self.wait_item(
            &format!("pid {pid} in /top by=process"),
            "process",
            |t| t.process(pid).cloned(),
            ready,
        )
    }

    /// The by=cgroup item of a cgroup path once `ready` holds for it.
    pub fn wait_cgroup(&self, path: &str, ready: impl Fn(&Item) -> bool) -> Item {
        self.wait_item(
            &format!("cgroup {path} in /top by=cgroup"),
            "cgroup",
            |t| t.cgroup(path).cloned(),
            ready,
        )
    }

    /// The by=flow items of one connection, summed into their lifetime totals
    /// (tx, rx) once `ready` holds for the sum. (A 5-tuple normally has one
    /// item; if the daemon splits a shared socket by process there can be more.)
    pub fn wait_flow(
        &self,
        protocol: &str,
        local: SocketAddr,
        remote: SocketAddr,
        ready: impl Fn(u64, u64) -> bool,
    ) -> Vec<Item> {
        let what = format!("{protocol} flow {local} -> {remote} in /top by=flow");
        let q = query("flow");
        crate::wait_for(&what, || {
            let top = self.top(&q);
            let f: Vec<Item> = top
                .flows(protocol, local, remote)
                .into_iter()
                .cloned()
                .collect();
            let (tx, rx) = f.iter().fold((0, 0), |(t, r), i| (t + i.tx(), r + i.rx()));
            if !f.is_empty() && ready(tx, rx) {
                Ok(f)
            } else if f.is_empty() {
                Err(format!("not in /top?{q}: {}", summary(&top)))
            } else {
                Err(format!("found, not there yet: tx={tx} rx={rx}: {f:#?}"))
            }
        })
    }

    /// The by=remote item of `ip` once `ready` holds for it.
    pub fn wait_remote(&self, ip: IpAddr, ready: impl Fn(&Item) -> bool) -> Item {
        let q = query("remote");
        crate::wait_for(&format!("remote {ip} in /top by=remote"), || {
            let top = self.top(&q);
            match top.remote(ip) {
                Some(i) if ready(i) => Ok(i.clone()),
                Some(i) => Err(format!("found, not there yet: {:#}", i.0)),
                None => Err(format!("not in /top?{q}: {}", summary(&top))),
            }
        })
    }
}
