//! Ranking shared by every /top view and by /explain: the best `limit` groups of a window,
//! and how a group becomes an item (its rates, its protocol's and endpoints' names).

use std::{
    cmp::Reverse,
    hash::{Hash, Hasher},
    time::{Duration, Instant},
};

use trafficd_common::Traffic;

use crate::{
    api::{Item, Rates, Sort, TopQuery},
    stats::{Dimension, Windowed},
};

pub(super) fn ranked<K, M, I, F>(
    dimension: &Dimension<K, M>,
    query: &TopQuery,
    now: Instant,
    identity: F,
) -> Vec<Item<I>>
where
    K: std::hash::Hash + Eq + Clone,
    M: Default + Clone + PartialEq,
    F: Fn(&K, &M) -> I,
{
    let window = query.window.duration();
    let mut best = Best::new(query);
    let covered = dimension.window_each(now, window, |item| best.push(item));
    render(best.finish(), covered, window, identity)
}

/// The best `limit` of a stream of groups, holding at most twice that many (and a few
/// hundred) at a time: the top 10 of 100k flows must not need a list of 100k.
pub(super) struct Best<'a, K, M> {
    items: Vec<Windowed<'a, K, M>>,
    limit: usize,
    sort: Sort,
}

impl<'a, K, M> Best<'a, K, M> {
    pub(super) fn new(query: &TopQuery) -> Self {
        Best {
            items: Vec::new(),
            limit: query.limit.get(),
            sort: query.sort,
        }
    }

    pub(super) fn push(&mut self, item: Windowed<'a, K, M>) {
        self.items.push(item);
        if self.items.len() >= (2 * self.limit).max(512) {
            self.keep_best();
        }
    }

    /// The best, busiest first.
    pub(super) fn finish(mut self) -> Vec<Windowed<'a, K, M>> {
        self.keep_best();
        let sort = self.sort;
        self.items.sort_by_key(|w| rank_of(sort, w));
        self.items
    }

    /// Drops all but the best `limit`, picked in linear time.
    fn keep_best(&mut self) {
        if self.items.len() > self.limit {
            let sort = self.sort;
            self.items
                .select_nth_unstable_by_key(self.limit - 1, |w| rank_of(sort, w));
            self.items.truncate(self.limit);
        }
    }
}

/// Busiest first: by the window's bytes, then the lifetime's.
fn rank_of<K, M>(sort: Sort, item: &Windowed<'_, K, M>) -> Reverse<(u64, u64)> {
    Reverse((weight(sort, &item.window), weight(sort, &item.lifetime)))
}

pub(super) fn weight(sort: Sort, t: &Traffic) -> u64 {
    match sort {
        Sort::Total => t.tx_bytes + t.rx_bytes,
        Sort::Tx => t.tx_bytes,
        Sort::Rx => t.rx_bytes,
    }
}

/// The ranked groups as items: identity, bytes and rates.
pub(super) fn render<K, M, I, F>(
    items: Vec<Windowed<'_, K, M>>,
    covered: Duration,
    window: Duration,
    identity: F,
) -> Vec<Item<I>>
where
    F: Fn(&K, &M) -> I,
{
    let seconds = seconds(covered, window);
    items
        .into_iter()
        .map(|w| Item {
            identity: identity(w.key, w.meta),
            rates: rates(&w.window, &w.lifetime, seconds),
        })
        .collect()
}

/// Rates are over the time the window really covers: right after start that is less than asked.
pub(super) fn seconds(covered: Duration, window: Duration) -> f64 {
    if covered.is_zero() {
        window
    } else {
        covered.min(window).max(Duration::from_millis(1))
    }
    .as_secs_f64()
}

pub(super) fn rates(window: &Traffic, lifetime: &Traffic, seconds: f64) -> Rates {
    Rates {
        tx_bytes: window.tx_bytes,
        rx_bytes: window.rx_bytes,
        tx_packets: window.tx_packets,
        rx_packets: window.rx_packets,
        tx_bytes_per_second: round(window.tx_bytes as f64 / seconds),
        rx_bytes_per_second: round(window.rx_bytes as f64 / seconds),
        lifetime_tx_bytes: lifetime.tx_bytes,
        lifetime_rx_bytes: lifetime.rx_bytes,
        lifetime_tx_packets: lifetime.tx_packets,
        lifetime_rx_packets: lifetime.rx_packets,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub(super) fn protocol_name(protocol: u8, family: u8) -> String {
    match (protocol, family) {
        (_, 0) => "unknown".to_string(),
        (6, _) => "tcp".to_string(),
        (17, _) => "udp".to_string(),
        (1, _) => "icmp".to_string(),
        (58, _) => "icmpv6".to_string(),
        (132, _) => "sctp".to_string(),
        (136, _) => "udplite".to_string(),
        (n, _) => n.to_string(),
    }
}

pub(super) fn endpoint(ip: Option<std::net::IpAddr>, port: u16) -> String {
    match ip {
        Some(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        None => String::new(),
    }
}

/// A flow's id: a hash of its whole key (socket cookie, cgroup and tuple), so it stays the
/// same while the flow lives and two flows of one socket differ. Only this daemon reads it
/// back, so the hash need not be stable across builds.
pub(super) fn flow_id(key: &impl Hash) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Limit;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(
            endpoint(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 443),
            "[::1]:443"
        );
        assert_eq!(
            endpoint(Some("10.0.0.1".parse().unwrap()), 80),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn the_best_of_a_long_stream_are_kept_and_no_more_than_a_few_hundred_held() {
        let keys: Vec<u32> = (0..5000).collect();
        let query = TopQuery {
            limit: Limit::new(10).unwrap(),
            sort: Sort::Tx,
            ..TopQuery::default()
        };
        let mut best = Best::new(&query);
        let mut held = 0;
        for key in &keys {
            // A permutation of 0..5000, so the busiest keys are spread through the stream.
            let bytes = u64::from(key * 2_999 % 5_000);
            best.push(Windowed {
                key,
                window: Traffic {
                    tx_bytes: bytes,
                    ..Traffic::default()
                },
                lifetime: Traffic::default(),
                meta: &(),
            });
            held = held.max(best.items.len());
        }
        assert!(held <= 512, "held {held} items for a top 10");
        let kept: Vec<u64> = best.finish().iter().map(|w| w.window.tx_bytes).collect();
        assert_eq!(kept, (4_990..5_000).rev().collect::<Vec<u64>>());
    }
}
