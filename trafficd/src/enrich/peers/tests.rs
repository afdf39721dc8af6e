//! The names a lookup gives, from real files and a real (loopback) DNS server.

use std::{fs, thread, time::Instant};

use super::{
    reload::tests::{TempDir, STATUS_V2},
    *,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn labels_win_over_openvpn_and_openvpn_over_dns() {
    let dir = TempDir::new("precedence");
    let labels = dir.replace("labels", "172.16.248.0/24 vpn-pool\n10.8.1.3 squid-3\n");
    let status = dir.replace("status", STATUS_V2);
    let runtime = runtime();
    let dns = reverse_dns::DnsConfig {
        server: Some(reverse_dns::tests::answering_server("host.example.net")),
        ..Default::default()
    };
    let names = PeerNames::start(
        PeerSettings {
            labels: Some(labels),
            openvpn_status: vec![status],
            reverse_dns: Some(dns),
            reload_every: Duration::ZERO,
        },
        runtime.handle(),
    )
    .unwrap();

    let vpn = names.lookup(ip("172.16.248.22"));
    assert_eq!(vpn.name.as_deref(), Some("vpn-pool"));
    assert_eq!(vpn.source, Some(PeerSource::Labels));
    assert_eq!(vpn.class, AddressClass::Private);
    let client = vpn
        .openvpn
        .expect("the VPN client is known beside the label");
    assert_eq!(&*client.common_name, "tke-xxx");

    let json = serde_json::to_value(names.lookup(ip("10.8.1.3"))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"ip": "10.8.1.3", "name": "squid-3", "source": "labels", "class": "private"})
    );

    assert_eq!(
        names.lookup(ip("203.0.113.5")).name,
        None,
        "DNS answers later"
    );
    let start = Instant::now();
    let dns_named = loop {
        let peer = names.lookup(ip("203.0.113.5"));
        if peer.name.is_some() || start.elapsed() > Duration::from_secs(3) {
            break peer;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(dns_named.name.as_deref(), Some("host.example.net"));
    assert_eq!(dns_named.source, Some(PeerSource::Dns));
    assert_eq!(dns_named.class, AddressClass::Documentation);
}

#[test]
fn openvpn_names_an_unlabelled_client_and_a_changed_file_relabels_it() {
    let dir = TempDir::new("relabel");
    let status = dir.replace("status", STATUS_V2);
    let runtime = runtime();
    let names = PeerNames::start(
        PeerSettings {
            openvpn_status: vec![status],
            reload_every: Duration::from_millis(20),
            ..Default::default()
        },
        runtime.handle(),
    )
    .unwrap();
    let peer = names.lookup(ip("::ffff:172.16.248.22"));
    assert_eq!(peer.ip, ip("172.16.248.22"));
    assert_eq!(peer.name.as_deref(), Some("tke-xxx"));
    assert_eq!(peer.source, Some(PeerSource::Openvpn));

    dir.replace("status", &STATUS_V2.replace("tke-xxx", "tke-zzz"));
    let start = Instant::now();
    while names.lookup(ip("172.16.248.22")).name.as_deref() != Some("tke-zzz") {
        assert!(start.elapsed() < Duration::from_secs(3), "never relabelled");
        thread::sleep(Duration::from_millis(10));
    }
    fs::remove_file(dir.0.join("status")).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        names.lookup(ip("172.16.248.22")).name.as_deref(),
        Some("tke-zzz")
    );
}

#[test]
fn without_sources_a_lookup_gives_the_class() {
    let names = PeerNames::classes_only();
    let peer = names.lookup(ip("100.64.3.4"));
    assert_eq!(peer.name, None);
    assert_eq!(peer.class, AddressClass::Cgnat);
}
