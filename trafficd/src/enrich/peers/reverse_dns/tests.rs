//! Against real UDP sockets on loopback: one that never answers, one that answers PTR queries.

use std::{net::UdpSocket, thread};

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn config(server: SocketAddr) -> DnsConfig {
    DnsConfig {
        server: Some(server),
        timeout: Duration::from_millis(200),
        queue: 8,
        ..DnsConfig::default()
    }
}

/// Polls `check` every 20 ms for up to `limit`.
fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(found) = check() {
            return Some(found);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_silent_server_costs_one_log_line_and_never_blocks() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let runtime = runtime();
    let dns = ReverseDns::start(
        DnsConfig {
            concurrency: 1,
            ..config(silent.local_addr().unwrap())
        },
        runtime.handle(),
    )
    .unwrap();

    let asked = Instant::now();
    for i in 1..=20u8 {
        assert_eq!(dns.name(IpAddr::from([10, 0, 0, i])), None);
    }
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "asking must not wait for the server: {:?}",
        asked.elapsed()
    );
    // 8 queued, one in flight and one taken off the queue waiting for a slot: 10 dropped.
    assert!(
        dns.dropped() >= 10,
        "a queue of 8 drops the rest: {}",
        dns.dropped()
    );

    let logged = eventually(Duration::from_secs(5), || {
        (dns.failures_logged() > 0).then_some(())
    });
    assert!(logged.is_some(), "the silence is logged");
    // Every queued address times out, and the ones dropped are asked again: still one line.
    thread::sleep(Duration::from_millis(600));
    for i in 1..=20u8 {
        assert_eq!(dns.name(IpAddr::from([10, 0, 0, i])), None);
    }
    thread::sleep(Duration::from_millis(600));
    assert_eq!(dns.failures_logged(), 1);
}

/// Answers every query with one PTR record naming `name`, TTL 300 s.
pub fn answering_server(name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&ptr_answer(&buf[..len], name), from);
        }
    });
    address
}

/// The query's id and question, with one PTR answer (RFC 1035 section 4).
fn ptr_answer(query: &[u8], name: &str) -> Vec<u8> {
    let mut question_end = 12;
    while query[question_end] != 0 {
        question_end += 1 + query[question_end] as usize;
    }
    question_end += 1 + 4;
    let mut reply = query[..2].to_vec();
    reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..question_end]);
    let mut rdata = Vec::new();
    for label in name.split('.') {
        rdata.push(label.len() as u8);
        rdata.extend_from_slice(label.as_bytes());
    }
    rdata.push(0);
    // Name: a pointer to the question's; type PTR, class IN, TTL 300.
    reply.extend_from_slice(&[0xc0, 0x0c, 0, 12, 0, 1, 0, 0, 1, 0x2c]);
    reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    reply.extend_from_slice(&rdata);
    reply
}

#[test]
fn names_an_address_once_the_server_answered() {
    let server = answering_server("squid-3.example.net");
    let runtime = runtime();
    let dns = ReverseDns::start(config(server), runtime.handle()).unwrap();
    let ip: IpAddr = "10.8.1.3".parse().unwrap();

    assert_eq!(dns.name(ip), None, "the first ask only queues the address");
    let name = eventually(Duration::from_secs(3), || dns.name(ip));
    assert_eq!(name.as_deref(), Some("squid-3.example.net"));
    assert_eq!(dns.failures_logged(), 0);
}

#[test]
fn an_expired_name_stays_while_it_is_looked_up_again() {
    // A server that answers once, then falls silent.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let once = silent.try_clone().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        if let Ok((len, from)) = once.recv_from(&mut buf) {
            let _ = once.send_to(&ptr_answer(&buf[..len], "old.example.net"), from);
        }
    });
    let runtime = runtime();
    let ttl = Duration::from_millis(100);
    let dns = ReverseDns::start(
        DnsConfig {
            min_ttl: ttl,
            max_ttl: ttl,
            ..config(server)
        },
        runtime.handle(),
    )
    .unwrap();
    let ip: IpAddr = "10.8.1.3".parse().unwrap();
    dns.name(ip);
    let name = eventually(Duration::from_secs(3), || dns.name(ip));
    assert_eq!(name.as_deref(), Some("old.example.net"));

    // Past its TTL, through the refresh that times out and after it: never unnamed.
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        assert_eq!(dns.name(ip).as_deref(), Some("old.example.net"));
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dns.failures_logged(), 1);
}
