//! Bytes of real containers, named by their engines: /top?by=container, the processes inside
//! with both their pids, the container's eth0 counters (what `docker stats` shows as NET I/O),
//! /metrics, a container gone within a second, and an engine that stops and comes back.
//!
//! The busybox image has no traffic generator of its own (busybox-static's `nc` has no UDP),
//! so the tests mount the test's `trafficgen` and the host's libraries read-only into it.
//!
//! Wire bytes: trafficd counts IP packets, headers included. TCP data is payload + 52 bytes per
//! full segment (MSS 1448 on the 1500-MTU docker0 veths), so a payload N shows as
//! N * (1 + 52/1448) plus a handful of control segments; UDP is payload + 28 bytes per
//! datagram, exactly. The container's eth0 counts Ethernet frames: its bytes less 14 per
//! frame are the IP bytes that crossed it. The veth would count a GSO super-packet's headers
//! once where the wire carries one set per segment, so the tests cap it at one segment per
//! packet (`gso_max_segs 1`), as a physical link sees them.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use trafficd_tests::containerd::Containerd;
use trafficd_tests::docker::{Container, Dockerd, Engine};
use trafficd_tests::podman::Podman;
use trafficd_tests::{require_root, trafficgen, wait_for, Daemon};

/// TCP payload from container A to container B.
const TCP_PAYLOAD: u64 = 4 << 20;
/// UDP payload from container B to the host.
const UDP_PAYLOAD: u64 = 1 << 20;
/// IPv4 + TCP with timestamps, per data segment.
const TCP_HEADER: u64 = 52;
const MSS: u64 = 1448;
/// IPv4 + UDP, per datagram.
const UDP_HEADER: u64 = 28;
const ETHERNET_HEADER: u64 = 14;

fn name(tag: &str) -> String {
    format!("trafficd-test-{}-{tag}", std::process::id())
}

/// `docker run` options that let busybox run trafficgen: the binary and the host's libraries.
fn trafficgen_mounts() -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_trafficgen");
    [
        "-v".to_string(),
        format!("{bin}:/trafficgen:ro"),
        "-v".into(),
        "/lib:/lib:ro".into(),
        "-v".into(),
        "/lib64:/lib64:ro".into(),
    ]
    .into()
}

/// A busybox container that sleeps, ready to exec trafficgen, with GSO capped (see the top).
fn traffic_container(engine: Engine, name: &str) -> Container {
    let mounts = trafficgen_mounts();
    let options: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let c = Container::run(engine, name, &options, &["sleep", "600"]);
    let netns = format!("/proc/{}/ns/net", c.pid());
    let status = Command::new("nsenter")
        .args([
            &format!("--net={netns}"),
            "ip",
            "link",
            "set",
            "dev",
            "eth0",
        ])
        .args(["gso_max_segs", "1"])
        .status()
        .expect("run nsenter");
    assert!(status.success(), "cannot cap GSO on {name}'s eth0");
    c
}

/// Runs trafficgen inside `c` and returns its JSON report (pids in it are the container's).
fn exec_trafficgen(engine: &Engine, c: &Container, args: &[&str]) -> Value {
    let mut all = vec!["exec", c.id(), "/trafficgen"];
    all.extend(args);
    let out = engine.cli(&all);
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("trafficgen printed {out:?}: {e}"))
}

/// The container's address on its engine's network.
fn address(c: &Container) -> String {
    let ip = c.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    assert!(!ip.is_empty(), "{} has no address", c.name());
    ip
}

/// (tx, rx) IP bytes that crossed the container's eth0, read in its network namespace.
fn eth0_ip_bytes(engine: &Engine, c: &Container) -> (u64, u64) {
    let read = |counter: &str| -> u64 {
        let path = format!("/sys/class/net/eth0/statistics/{counter}");
        let text = engine.cli(&["exec", c.id(), "cat", &path]);
        text.parse()
            .unwrap_or_else(|_| panic!("{path} in {}: {text:?}", c.name()))
    };
    let tx = read("tx_bytes") - ETHERNET_HEADER * read("tx_packets");
    let rx = read("rx_bytes") - ETHERNET_HEADER * read("rx_packets");
    (tx, rx)
}

/// The /top?by=`by` items, over the longest window.
fn items(d: &Daemon, by: &str) -> Vec<Value> {
    let (status, json) = d.get_json(&format!("/top?by={by}&window=60s&limit=1000"));
    assert_eq!(status, 200, "{json}");
    json["items"].as_array().cloned().unwrap_or_default()
}

/// The by=container item of the container named `name`.
fn owner_item(d: &Daemon, name: &str) -> Option<Value> {
    items(d, "container")
        .into_iter()
        .find(|i| i["container"]["name"] == name)
}

fn lifetime(item: &Value) -> (u64, u64) {
    let n = |k: &str| item[k].as_u64().unwrap_or(0);
    (n("lifetime_tx_bytes"), n("lifetime_rx_bytes"))
}

/// Waits for `name`'s by=container item to satisfy `ready`, then until its counters stop
/// changing for a few drains (the last ACKs are in), and returns it.
fn settled_owner(d: &Daemon, name: &str, ready: impl Fn(u64, u64) -> bool) -> Value {
    let found = wait_for(
        &format!("container {name} in /top?by=container"),
        || match owner_item(d, name) {
            Some(i) if ready(lifetime(&i).0, lifetime(&i).1) => Ok(i),
            other => Err(other.map(|i| i.to_string()).unwrap_or_default()),
        },
    );
    let mut last = found;
    for _ in 0..20 {
        std::thread::sleep(d.interval() * 3);
        let now = owner_item(d, name).unwrap_or_else(|| panic!("{name} left /top"));
        if lifetime(&now) == lifetime(&last) {
            return now;
        }
        last = now;
    }
    last
}

fn within_one_percent(what: &str, reported: u64, expected: u64) {
    let diff = reported.abs_diff(expected);
    assert!(
        diff * 100 <= expected,
        "{what}: trafficd says {reported}, expected {expected} (off by {diff}, over 1%)"
    );
}

/// The by=process item of `comm` in `container`, checked to carry the container's name and
/// two pids: the host's, and `inner`, the one trafficgen saw in the container (when known).
fn process_in(d: &Daemon, container: &str, comm: &str, inner: Option<u64>) -> Value {
    let item = wait_for(&format!("{comm} of {container} in /top?by=process"), || {
        let all = items(d, "process");
        all.iter()
            .find(|i| i["comm"] == comm && i["owner"]["container"]["name"] == container)
            .cloned()
            .ok_or_else(|| format!("{all:#?}"))
    });
    let host = item["pid"].as_u64().unwrap_or(0);
    let in_container = item["pid_in_namespace"].as_u64();
    assert!(
        in_container.is_some_and(|pid| pid != host) && host != 0,
        "{comm}: no second pid: {item:#}"
    );
    if let Some(inner) = inner {
        assert_eq!(in_container, Some(inner), "{item:#}");
    }
    assert_eq!(item["owner"]["kind"], "container", "{item:#}");
    item
}

/// A sends TCP to B, B sends UDP to the host: both named with their image, their bytes as the
/// payload's wire bytes and as their eth0 counters say, their processes named with both pids.
#[test]
fn docker_containers_are_named_with_their_bytes() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let d = Daemon::start();
    let (a, b) = (
        traffic_container(Engine::Docker, &name("a")),
        traffic_container(Engine::Docker, &name("b")),
    );
    let gateway = Engine::Docker.cli(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let (sink, sink_addr) = trafficgen!()
        .cmd(&[
            "udp-sink",
            "--listen",
            &format!("{gateway}:0"),
            "--expect",
            &UDP_PAYLOAD.to_string(),
        ])
        .spawn_ready();

    let engine = Engine::Docker;
    let listen = ["exec", "-d", b.id(), "/trafficgen", "--name", "tg-sink"];
    let ready = [
        "--ready-file",
        "/tmp/ready",
        "tcp-sink",
        "--listen",
        "0.0.0.0:5000",
    ];
    engine.cli(&[&listen[..], &ready[..]].concat());
    wait_for("B's sink to listen", || {
        let mut test = engine.command();
        test.args(["exec", b.id(), "test", "-s", "/tmp/ready"]);
        match test.status() {
            Ok(status) if status.success() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // Paced over about two seconds so every process is alive at a drain and read in /proc.
    let to_b = format!("{}:5000", address(&b));
    let sent = exec_trafficgen(
        &engine,
        &a,
        &[
            "--name",
            "tg-send",
            "tcp-send",
            "--to",
            &to_b,
            "--bytes",
            &TCP_PAYLOAD.to_string(),
            "--rate",
            &(TCP_PAYLOAD / 2).to_string(),
            "--hold-ms",
            "1000",
        ],
    );
    let udp = exec_trafficgen(
        &engine,
        &b,
        &[
            "--name",
            "tg-udp",
            "udp-send",
            "--to",
            &sink_addr.to_string(),
            "--bytes",
            &UDP_PAYLOAD.to_string(),
            "--pace-every",
            "1",
        ],
    );
    let received = sink.finish();
    assert_eq!(received.bytes_received(), UDP_PAYLOAD);
    let datagrams = udp["datagrams_sent"].as_u64().expect("datagrams_sent");

    let segments = TCP_PAYLOAD.div_ceil(MSS);
    let tcp_wire = TCP_PAYLOAD + TCP_HEADER * segments;
    let udp_wire = UDP_PAYLOAD + UDP_HEADER * datagrams;
    let owner_a = settled_owner(&d, a.name(), |tx, _| tx >= TCP_PAYLOAD);
    let owner_b = settled_owner(&d, b.name(), |tx, rx| {
        rx >= TCP_PAYLOAD && tx >= UDP_PAYLOAD
    });
    for (owner, c) in [(&owner_a, &a), (&owner_b, &b)] {
        assert_eq!(owner["kind"], "container", "{owner:#}");
        assert_eq!(owner["container"]["id"], c.id(), "{owner:#}");
        assert_eq!(owner["container"]["short_id"], &c.id()[..12], "{owner:#}");
        assert_eq!(owner["container"]["image"], "local/busybox:1", "{owner:#}");
        assert_eq!(owner["container"]["runtime"], "docker", "{owner:#}");
        assert_eq!(owner["cgroup"], format!("/docker/{}", c.id()), "{owner:#}");
    }
    within_one_percent("A's TCP data (tx)", lifetime(&owner_a).0, tcp_wire);
    within_one_percent("B's TCP data (rx)", lifetime(&owner_b).1, tcp_wire);

    // The processes inside: their container's name, the host's pid and the container's.
    let sender = process_in(&d, a.name(), "tg-send", sent["pid"].as_u64());
    let udp_sender = process_in(&d, b.name(), "tg-udp", udp["pid"].as_u64());
    let sink_process = process_in(&d, b.name(), "tg-sink", None);
    within_one_percent("A's sender (tx)", lifetime(&sender).0, tcp_wire);
    within_one_percent("B's sink (rx)", lifetime(&sink_process).1, tcp_wire);
    assert_eq!(
        lifetime(&udp_sender).0,
        udp_wire,
        "UDP is exact: {udp_sender:#}"
    );

    // What crossed each container's eth0, as docker stats counts it. The interface also
    // carries frames no socket sent or received (ARP, neighbour discovery): a few hundred
    // bytes, so each direction is held to 1% of the container's whole traffic; the ACK-only
    // direction alone is too small for a percentage of its own.
    for (owner, c) in [(&owner_a, &a), (&owner_b, &b)] {
        let (tx, rx) = eth0_ip_bytes(&engine, c);
        let (ttx, trx) = lifetime(owner);
        let slack = (tx + rx) / 100;
        for (what, reported, counted) in [("tx", ttx, tx), ("rx", trx, rx)] {
            assert!(
                reported.abs_diff(counted) <= slack,
                "{} {what}: trafficd says {reported}, its eth0 {counted} (IP bytes), more than \
                 1% of its {} bytes apart",
                c.name(),
                tx + rx
            );
        }
    }

    // The same bytes in /metrics, labelled by name, image and runtime.
    let metrics = d.metrics();
    for (owner, c) in [(&owner_a, &a), (&owner_b, &b)] {
        let labels = [
            ("container", c.name()),
            ("image", "local/busybox:1"),
            ("runtime", "docker"),
            ("pod", ""),
            ("namespace", ""),
        ];
        let tx = metrics.value("trafficd_container_transmit_bytes_total", &labels);
        assert!(
            tx.is_some_and(|tx| tx as u64 >= lifetime(owner).0),
            "{}: {tx:?} in /metrics",
            c.name()
        );
    }
}

/// The host's address on the container's network: its default gateway.
fn gateway_of(engine: &Engine, c: &Container) -> String {
    let routes = engine.cli(&["exec", c.id(), "ip", "route"]);
    routes
        .lines()
        .find_map(|l| l.strip_prefix("default via "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no default route in {}: {routes}", c.name()))
        .to_string()
}

/// A UDP sink on the host at `ip`, expecting `bytes`.
fn udp_sink(ip: &str, bytes: u64) -> (trafficd_tests::Gen, std::net::SocketAddr) {
    trafficgen!()
        .cmd(&[
            "udp-sink",
            "--listen",
            &format!("{ip}:0"),
            "--expect",
            &bytes.to_string(),
        ])
        .spawn_ready()
}

/// Podman (cgroupfs manager) through its Docker-compatible socket: the container is named by
/// Podman, and its UDP bytes are exact.
#[test]
fn podman_container_is_named_with_its_bytes() {
    require_root!();
    let podman = Podman::start();
    let _image = podman.busybox();
    let d = Daemon::builder()
        .arg("--podman-socket")
        .arg(podman.socket().display().to_string())
        .start();
    let engine = podman.engine().clone();
    let c = traffic_container(engine.clone(), &name("p"));
    let (sink, sink_addr) = udp_sink(&gateway_of(&engine, &c), UDP_PAYLOAD);
    let udp = exec_trafficgen(
        &engine,
        &c,
        &[
            "--name",
            "tg-udp",
            "udp-send",
            "--to",
            &sink_addr.to_string(),
            "--bytes",
            &UDP_PAYLOAD.to_string(),
            "--pace-every",
            "1",
        ],
    );
    assert_eq!(sink.finish().bytes_received(), UDP_PAYLOAD);
    let datagrams = udp["datagrams_sent"].as_u64().expect("datagrams_sent");
    let udp_wire = UDP_PAYLOAD + UDP_HEADER * datagrams;

    let owner = settled_owner(&d, c.name(), |tx, _| tx >= udp_wire);
    assert_eq!(owner["container"]["id"], c.id(), "{owner:#}");
    assert_eq!(owner["container"]["runtime"], "podman", "{owner:#}");
    assert_eq!(
        owner["container"]["image"], "localhost/local/busybox:1",
        "{owner:#}"
    );
    assert!(
        owner["cgroup"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("/libpod_parent/libpod-{}", c.id()))),
        "{owner:#}"
    );
    // Its own datagrams and ARP: nothing else leaves it.
    within_one_percent("the Podman container's tx", lifetime(&owner).0, udp_wire);
    let process = process_in(&d, c.name(), "tg-udp", udp["pid"].as_u64());
    assert_eq!(lifetime(&process).0, udp_wire, "{process:#}");
}

/// containerd through its own gRPC API (as ctr and nerdctl use it): a container named by
/// nerdctl's label, with its image and runtime, its UDP bytes exact. It runs in the host's
/// network namespace and sends to loopback, so its bytes are its socket's.
#[test]
fn containerd_container_is_named_with_its_bytes() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _docker_image = dockerd.busybox();
    let containerd = Containerd::start();
    let image = containerd.import_busybox();
    let d = Daemon::builder()
        .arg("--containerd-socket")
        .arg(containerd.socket().display().to_string())
        .start();
    let (sink, sink_addr) = udp_sink("127.0.0.1", UDP_PAYLOAD);
    let trafficgen = env!("CARGO_BIN_EXE_trafficgen");
    let to = sink_addr.to_string();
    let bytes = UDP_PAYLOAD.to_string();
    let name = name("ctr");
    let (c, out) = containerd.run(
        &image,
        &name,
        &[trafficgen, "/lib", "/lib64"],
        &[
            trafficgen,
            "--name",
            "tg-udp",
            "udp-send",
            "--to",
            &to,
            "--bytes",
            &bytes,
            "--pace-every",
            "1",
        ],
    );
    assert_eq!(sink.finish().bytes_received(), UDP_PAYLOAD);
    let line = out.lines().last().unwrap_or_default();
    let udp: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("trafficgen printed {out:?}: {e}"));
    let datagrams = udp["datagrams_sent"].as_u64().expect("datagrams_sent");
    let udp_wire = UDP_PAYLOAD + UDP_HEADER * datagrams;

    let owner = settled_owner(&d, &name, |tx, _| tx >= udp_wire);
    assert_eq!(owner["container"]["id"], c.id(), "{owner:#}");
    assert_eq!(owner["container"]["runtime"], "containerd", "{owner:#}");
    assert_eq!(owner["container"]["image"], image.as_str(), "{owner:#}");
    assert!(
        owner["cgroup"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("/{}", c.id()))),
        "{owner:#}"
    );
    within_one_percent(
        "the containerd container's tx",
        lifetime(&owner).0,
        udp_wire,
    );
    let process = process_in(&d, &name, "tg-udp", udp["pid"].as_u64());
    assert_eq!(lifetime(&process).0, udp_wire, "{process:#}");
}

/// A container that starts, sends 1 MB and is removed within a second keeps its name: it was
/// captured when the container appeared, not looked up after it had gone.
#[test]
fn a_container_gone_within_a_second_is_named() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let d = Daemon::start();
    let gateway = Engine::Docker.cli(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let (sink, sink_addr) = trafficgen!()
        .cmd(&["tcp-sink", "--listen", &format!("{gateway}:0")])
        .spawn_ready();
    let short = name("short");
    let mounts = trafficgen_mounts();
    let mut args: Vec<&str> = vec!["run", "--rm", "--name", &short];
    args.extend(mounts.iter().map(String::as_str));
    let to = sink_addr.to_string();
    let bytes = (1u64 << 20).to_string();
    args.extend([
        "local/busybox:1",
        "/trafficgen",
        "tcp-send",
        "--to",
        &to,
        "--bytes",
        &bytes,
    ]);
    let started = Instant::now();
    Engine::Docker.cli(&args);
    let lived = started.elapsed();
    assert_eq!(sink.finish().bytes_received(), 1 << 20);
    eprintln!("the container lived {lived:?}, from run to removal");

    let owner = settled_owner(&d, &short, |tx, _| tx >= 1 << 20);
    assert_eq!(owner["container"]["image"], "local/busybox:1", "{owner:#}");
    assert_eq!(owner["container"]["runtime"], "docker", "{owner:#}");
}

/// dockerd stops while trafficd runs: trafficd keeps serving, with the names it had; dockerd
/// starts again: a container started then is named too.
#[test]
fn names_survive_an_engine_outage() {
    require_root!();
    let mut dockerd = Dockerd::ensure();
    if !dockerd.started_here() {
        eprintln!("skipped: a dockerd this test did not start is running; it is left alone");
        return;
    }
    let _image = dockerd.busybox();
    let d = Daemon::start();
    let send = |c: &Container| {
        let gateway = gateway_of(&Engine::Docker, c);
        let (sink, sink_addr) = udp_sink(&gateway, 100_000);
        exec_trafficgen(
            &Engine::Docker,
            c,
            &[
                "udp-send",
                "--to",
                &sink_addr.to_string(),
                "--bytes",
                "100000",
            ],
        );
        assert_eq!(sink.finish().bytes_received(), 100_000);
    };
    let before = traffic_container(Engine::Docker, &name("before"));
    send(&before);
    settled_owner(&d, before.name(), |tx, _| tx >= 100_000);

    dockerd.stop();
    assert!(!trafficd_tests::docker::pings(dockerd.socket()));
    std::thread::sleep(d.interval() * 4);
    let kept = owner_item(&d, before.name());
    assert!(
        kept.is_some(),
        "{} lost its name with dockerd down",
        before.name()
    );

    dockerd.restart();
    let after = traffic_container(Engine::Docker, &name("after"));
    send(&after);
    // The daemon reconnects with backoff (up to 30 s between tries).
    let named = wait_for_long(Duration::from_secs(45), || owner_item(&d, after.name()));
    assert_eq!(named["container"]["id"], after.id(), "{named:#}");
    // `before` died with its engine; its name is still known.
    assert!(owner_item(&d, before.name()).is_some());
}

/// Polls `f` every 250 ms for up to `limit`: longer than [`wait_for`]'s 15 s, for an engine
/// reconnecting with backoff.
fn wait_for_long(limit: Duration, mut f: impl FnMut() -> Option<Value>) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "not named within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Two containers with the same addresses: each has only its loopback (`--network none`), a
/// sink on 127.0.0.1:5000 and a sender to it. The kernel keys a flow by socket and cgroup as
/// well as by its addresses, so the two never merge: each container and each sink's flow
/// keeps its own payload.
#[test]
fn same_addresses_in_two_containers_never_merge() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let d = Daemon::start();
    let mounts = trafficgen_mounts();
    let mut options: Vec<&str> = mounts.iter().map(String::as_str).collect();
    options.extend(["--network", "none"]);
    let payloads = [(name("one"), 1u64 << 20), (name("two"), 3u64 << 20)];
    let containers: Vec<Container> = payloads
        .iter()
        .map(|(n, _)| Container::run(Engine::Docker, n, &options, &["sleep", "600"]))
        .collect();
    let engine = Engine::Docker;
    for (c, (_, bytes)) in containers.iter().zip(&payloads) {
        let sink = ["exec", "-d", c.id(), "/trafficgen", "--name", "tg-sink"];
        engine.cli(&[&sink[..], &["tcp-sink", "--listen", "127.0.0.1:5000"]].concat());
        wait_for("the sink to listen", || {
            let sent = engine
                .command()
                .args(["exec", c.id(), "/trafficgen", "tcp-send"])
                .args(["--to", "127.0.0.1:5000", "--bytes", &bytes.to_string()])
                .output()
                .map_err(|e| e.to_string())?;
            sent.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&sent.stderr).to_string())
        });
    }
    let sink_local: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("address");
    for (c, (_, bytes)) in containers.iter().zip(&payloads) {
        // Loopback's 64 KiB MTU: one header set per 65483 bytes, a few control segments.
        let owner = settled_owner(&d, c.name(), |_, rx| rx >= *bytes);
        // Both ends are inside: data and ACKs count once each way.
        let (tx, rx) = lifetime(&owner);
        // What the receiver got is exact; the sender's side also counts a segment it had to
        // send again (they crossed the wire twice), so it may sit above the payload, by far
        // less than the other container's bytes, which a merge would add.
        within_one_percent(&format!("{} rx", c.name()), rx, *bytes);
        assert!(
            (*bytes..=*bytes + *bytes / 20).contains(&tx),
            "{} tx: trafficd says {tx}, expected {bytes} to 5% above (retransmissions)",
            c.name()
        );
        let flows: Vec<Value> = items(&d, "flow")
            .into_iter()
            .filter(|f| f["local"].as_str().and_then(|l| l.parse().ok()) == Some(sink_local))
            .filter(|f| f["owner"]["container"]["id"] == c.id())
            .collect();
        // The handshake is counted on the listener's socket: a small second flow.
        let rx: u64 = flows.iter().map(|f| lifetime(f).1).sum();
        assert!(!flows.is_empty(), "{}: no sink flow", c.name());
        within_one_percent(&format!("{}'s sink flows (rx)", c.name()), rx, *bytes);
    }
}
