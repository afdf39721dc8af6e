use super::*;

fn listener(protocol: Protocol, addr: &str, comm: &str) -> Listener {
    Listener {
        protocol,
        addr: addr.parse().unwrap(),
        pid: Some(100),
        comm: Some(Arc::from(comm)),
        container: None,
    }
}

fn flow(local: &str, remote: &str, bytes: u64, first_seen: u64, last_seen: u64) -> InboundFlow {
    InboundFlow {
        protocol: Protocol::Tcp,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        bytes,
        first_seen,
        last_seen,
    }
}

fn policy() -> ExposurePolicy {
    ExposurePolicy {
        trusted: vec!["192.0.2.0/24".parse().unwrap()],
        internal_ports: BTreeSet::from([3129, 5432]),
    }
}

#[test]
fn lists_the_internal_port_strangers_reach_first_with_its_peers() {
    let listeners = [
        listener(Protocol::Tcp, "0.0.0.0:3129", "haproxy"),
        listener(Protocol::Tcp, "[::]:22", "sshd"),
        listener(Protocol::Tcp, "127.0.0.1:5432", "postgres"),
        listener(Protocol::Udp, "0.0.0.0:3129", "not-haproxy"),
    ];
    let flows = [
        flow("172.16.248.22:3129", "203.0.113.5", 4000, 100, 160),
        flow("172.16.248.22:3129", "203.0.113.5", 1000, 90, 120),
        flow("172.16.248.22:3129", "198.51.100.9", 500, 130, 131),
        flow("172.16.248.22:3129", "10.8.1.3", 9_000_000, 100, 200),
        flow("[::ffff:10.0.0.1]:22", "::ffff:203.0.113.77", 9000, 10, 20),
        flow("[2001:db8::1]:22", "2001:db8:ffff::2", 7000, 10, 20),
        flow("10.0.0.1:5432", "203.0.113.5", 300, 10, 20),
        flow("10.0.0.1:22", "192.0.2.50", 123_456, 10, 20),
    ];
    let found = exposures(&listeners, &flows, &policy());
    assert_eq!(found.len(), 2, "{found:#?}");

    let haproxy = &found[0];
    assert_eq!(haproxy.listener.comm.as_deref(), Some("haproxy"));
    assert!(haproxy.internal_port);
    assert_eq!(haproxy.bytes, 5500, "private 10.8.1.3 is not external");
    assert_eq!(
        haproxy.peers,
        vec![
            ExternalPeer {
                ip: "203.0.113.5".parse().unwrap(),
                class: AddressClass::Documentation,
                bytes: 5000,
                first_seen: 90,
                last_seen: 160,
            },
            ExternalPeer {
                ip: "198.51.100.9".parse().unwrap(),
                class: AddressClass::Documentation,
                bytes: 500,
                first_seen: 130,
                last_seen: 131,
            },
        ]
    );

    let ssh = &found[1];
    assert_eq!(ssh.listener.comm.as_deref(), Some("sshd"));
    assert!(!ssh.internal_port);
    assert_eq!(
        ssh.bytes, 16_000,
        "IPv4 via the dual-stack socket, trusted 192.0.2.50 left out"
    );
    assert_eq!(ssh.peers[0].ip, "203.0.113.77".parse::<IpAddr>().unwrap());
}

#[test]
fn an_exact_address_wins_over_a_wildcard_and_ipv4_wildcard_over_ipv6() {
    let listeners = [
        listener(Protocol::Tcp, "[::]:8080", "dual"),
        listener(Protocol::Tcp, "0.0.0.0:8080", "any-v4"),
        listener(Protocol::Tcp, "10.0.0.1:8080", "exact"),
    ];
    let receiver = |local: &str| {
        let flows = [flow(local, "203.0.113.5", 1, 1, 1)];
        exposures(&listeners, &flows, &ExposurePolicy::default())[0]
            .listener
            .comm
            .clone()
    };
    assert_eq!(receiver("10.0.0.1:8080").as_deref(), Some("exact"));
    assert_eq!(receiver("10.0.0.2:8080").as_deref(), Some("any-v4"));
    assert_eq!(receiver("[2001:db8::1]:8080").as_deref(), Some("dual"));
}

#[test]
fn internal_peers_expose_nothing() {
    let listeners = [listener(Protocol::Tcp, "0.0.0.0:3129", "haproxy")];
    let flows = [
        flow("10.0.0.1:3129", "10.8.1.3", 10, 1, 2),
        flow("10.0.0.1:3129", "100.64.0.7", 10, 1, 2),
        flow("10.0.0.1:3129", "169.254.0.7", 10, 1, 2),
        flow("10.0.0.1:3129", "192.0.2.1", 10, 1, 2),
    ];
    assert!(exposures(&listeners, &flows, &policy()).is_empty());
}
