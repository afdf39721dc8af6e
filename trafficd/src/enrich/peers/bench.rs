//! Lookup cost with 10k labelled networks: what naming every remote of a large host costs.
//!
//! `cargo test --release -p trafficd --bins peers::bench -- --ignored --nocapture` prints the
//! figures; it is ignored by default because a debug build's timings mean nothing.

use std::{
    fmt::Write,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use super::{
    labels::Labels,
    reload::tests::{TempDir, STATUS_V2},
    PeerNames, PeerSettings,
};

const NETWORKS: u32 = 10_000;
const LOOKUPS: u32 = 1_000_000;

/// xorshift32: reproducible addresses without a random-number crate.
fn next(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

/// 10k networks of /16 to /30 at scattered addresses, as a labels file.
fn labels_file() -> String {
    let mut state = 0x9e37_79b9;
    let mut text = String::new();
    for i in 0..NETWORKS {
        let prefix = 16 + next(&mut state) % 15;
        let base = Ipv4Addr::from(next(&mut state) & (u32::MAX << (32 - prefix)));
        let _ = writeln!(text, "{base}/{prefix} net-{i}");
    }
    text
}

/// Addresses to look up: random ones, most outside every network, as remotes are.
fn addresses() -> Vec<IpAddr> {
    let mut state = 0x1234_5678;
    (0..LOOKUPS)
        .map(|_| IpAddr::V4(Ipv4Addr::from(next(&mut state))))
        .collect()
}

fn per_lookup(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(LOOKUPS)
}

#[test]
#[ignore = "a benchmark: run it in release with --ignored --nocapture"]
fn lookups_with_ten_thousand_labelled_networks() {
    let text = labels_file();
    let parsing = Instant::now();
    let labels = Labels::parse(&text).unwrap();
    let parse_time = parsing.elapsed();
    let addresses = addresses();

    let start = Instant::now();
    let named = addresses
        .iter()
        .filter(|ip| black_box(labels.lookup(**ip)).is_some())
        .count();
    let trie = per_lookup(start.elapsed());

    let dir = TempDir::new("bench");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let names = PeerNames::start(
        PeerSettings {
            labels: Some(dir.replace("labels", &text)),
            openvpn_status: vec![dir.replace("status", STATUS_V2)],
            reverse_dns: None,
            reload_every: Duration::ZERO,
        },
        runtime.handle(),
    )
    .unwrap();
    let start = Instant::now();
    for ip in &addresses {
        black_box(names.lookup(*ip));
    }
    let handle = per_lookup(start.elapsed());

    println!(
        "{NETWORKS} networks parsed in {parse_time:?}; {LOOKUPS} lookups, {named} named: \
         {trie:.0} ns each in the trie, {handle:.0} ns each through PeerNames \
         (snapshot, class, labels and one status file)"
    );
    assert!(named > 0 && named < addresses.len());
}
