//! Traffic this host forwards: namespaces A and C routed to each other through the root
//! namespace, where the daemon counts on the host's two interfaces. A known UDP transfer
//! from A to C is a forwarded flow on both, with no socket owner, and each interface's split
//! puts its bytes under forwarded. Then the incident: a Docker container's download,
//! MASQUERADEd by the host, once and then twice.

use std::net::SocketAddr;

use serde_json::Value;
use trafficd_tests::docker::Dockerd;
use trafficd_tests::{
    assert_conserved, interface_item, require_program, require_root, settled_interface, trafficgen,
    wait_counted, wait_for, Daemon, Forwarder, Link, NetNs, Side, Top, Transfer,
};

/// 500 datagrams of 1000 bytes.
const PAYLOAD: u64 = 500_000;
const DATAGRAMS: u64 = PAYLOAD / 1000;
/// Ethernet 14 + IPv4 20 + UDP 8 + payload: each datagram on a veth.
const FRAME: u64 = 14 + 20 + 8 + 1000;

/// The transfer's frames, and 1% above for anything else the flow's tuple carried (none is
/// expected: the sink sends nothing back).
fn bounds() -> (u64, u64) {
    let exact = DATAGRAMS * FRAME;
    (exact, exact + exact / 100)
}

/// The forwarded flow item of `from` -> `to` on `interface`, once its `lifetime` bytes (the
/// field's name) reached `at_least`.
fn forwarded_flow(
    d: &Daemon,
    interface: &str,
    direction: &str,
    from: SocketAddr,
    to: SocketAddr,
    lifetime: &str,
    at_least: u64,
) -> Value {
    wait_for(
        &format!("{from} -> {to} on {interface} {direction}"),
        || {
            let top: Top = d.top("by=flow&limit=1000&window=60s");
            let found = top.items().iter().find(|i| {
                i.0["interface"] == interface
                    && i.0["direction"] == direction
                    && i.str("local") == from.to_string()
                    && i.str("remote") == to.to_string()
            });
            match found {
                Some(item) if item.u64(lifetime) >= at_least => Ok(item.0.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
}

#[test]
fn routed_udp_is_forwarded_on_both_host_interfaces() {
    require_root!();
    require_program!("iptables", "iptables");
    let a = NetNs::new("fa");
    let c = NetNs::new("fc");
    let to_a = Link::root_to(&a);
    let to_c = Link::root_to(&c);
    let _forwarder = Forwarder::between(&a, &to_a, &c, &to_c);
    let d = Daemon::builder()
        .arg(format!("--interfaces={},{}", to_a.if_a(), to_c.if_a()))
        .start();
    wait_counted(&d, to_a.if_a());
    wait_counted(&d, to_c.if_a());

    let tg = trafficgen!();
    let t = Transfer::udp(SocketAddr::new(to_c.b_v4(), 0), PAYLOAD)
        .server(Side::named("tg-fw-sink").netns(&c))
        .client(Side::named("tg-fw-send").netns(&a))
        .run(&tg);
    let (from, to) = (t.sender.local(), t.sender.peer());
    let (exact, most) = bounds();

    let arrived = forwarded_flow(
        &d,
        to_a.if_a(),
        "ingress",
        from,
        to,
        "lifetime_rx_bytes",
        exact,
    );
    let left = forwarded_flow(
        &d,
        to_c.if_a(),
        "egress",
        from,
        to,
        "lifetime_tx_bytes",
        exact,
    );
    for (item, bytes) in [
        (&arrived, "lifetime_rx_bytes"),
        (&left, "lifetime_tx_bytes"),
    ] {
        let counted = item[bytes].as_u64().unwrap_or_default();
        assert!(
            (exact..=most).contains(&counted),
            "{counted} not in {exact}..={most}: {item}"
        );
        assert_eq!(item["local_socket"], false, "{item}");
        assert_eq!(item["pid"], 0, "no process owns a forwarded flow: {item}");
        assert_eq!(item["comm"], "", "{item}");
        assert!(
            item["nat"].as_array().is_some_and(Vec::is_empty),
            "not translated: {item}"
        );
    }

    // The host's interfaces: the transfer is forwarded, not local, and nothing is lost.
    for (interface, direction) in [(to_a.if_a(), "receive"), (to_c.if_a(), "transmit")] {
        let item = wait_for(&format!("{interface} split"), || {
            let item = interface_item(&d, interface).ok_or("gone")?;
            let forwarded = item["lifetime_split"][direction]["forwarded"].as_u64();
            match forwarded {
                Some(n) if n >= exact => Ok(item),
                _ => Err(format!("{item}")),
            }
        });
        let forwarded = item["lifetime_split"][direction]["forwarded"]
            .as_u64()
            .unwrap_or_default();
        let local = item["lifetime_split"][direction]["local"]
            .as_u64()
            .unwrap_or_default();
        assert!(forwarded <= most, "{item}");
        assert!(
            local * 100 <= exact,
            "the host's sockets are not credited: {item}"
        );
        assert_conserved(&settled_interface(&d, interface));
    }
    // No host process: the only sockets with the transfer's tuple are its two ends', in
    // their own namespaces. (Other tests' processes may be busy meanwhile: only this tuple
    // is looked at.)
    let top: Top = d.top("by=flow&limit=1000&window=60s");
    let ends = [from.to_string(), to.to_string()];
    for item in top.items() {
        let on_tuple = ends.contains(&item.str("local").to_string())
            && ends.contains(&item.str("remote").to_string());
        if on_tuple && item.0["local_socket"] == true {
            let pid = item.pid();
            assert!(
                [t.sender.pid(), t.receiver.pid()].contains(&pid),
                "a host process credited with the forwarded flow: {:?}",
                item.0
            );
        }
    }
}

/// What the container downloads: enough to stand out from anything else on the host.
const DOWNLOAD: u64 = 8 << 20;
const SERVER_PORT: u16 = 3129;

/// The incident's server: busybox httpd on port 3129 in its own namespace behind a veth from
/// the host, serving one file of [`DOWNLOAD`] bytes. Stopped and removed on drop.
struct Server {
    ns: NetNs,
    link: Link,
    httpd: std::process::Child,
    dir: std::path::PathBuf,
}

impl Server {
    fn start() -> Server {
        let ns = NetNs::new("srv");
        let link = Link::root_to(&ns);
        // The host forwards into it (dockerd turned forwarding on; this interface is new).
        let key = format!("/proc/sys/net/ipv4/conf/{}/forwarding", link.if_a());
        std::fs::write(&key, "1").unwrap_or_else(|e| panic!("{key}: {e}"));
        let dir = trafficd_tests::scratch_path("www");
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        std::fs::write(dir.join("blob"), vec![7u8; DOWNLOAD as usize]).expect("write the blob");
        let listen = format!("{}:{SERVER_PORT}", link.b_v4());
        let httpd = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "busybox",
                "httpd",
                "-f",
                "-p",
                &listen,
                "-h",
            ])
            .arg(&dir)
            .spawn()
            .expect("start busybox httpd");
        let server = Server {
            ns,
            link,
            httpd,
            dir,
        };
        let addr = server.addr();
        wait_for("the server listens", || {
            std::net::TcpStream::connect(addr).map(drop)
        });
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.link.b_v4(), SERVER_PORT)
    }

    fn url(&self) -> String {
        format!("http://{}/blob", self.addr())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.httpd.kill();
        let _ = self.httpd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.ns;
    }
}

/// The heaviest item of /top?by=flow once the download's item on the server's veth (ingress,
/// from the server) holds the whole download, its NAT hops and its container's name:
/// (heaviest, the veth's item).
fn download_flow(d: &Daemon, server: &Server, hops: usize) -> (Value, Value) {
    let server_end = server.addr().to_string();
    wait_for("the download's flow on the server's veth", || {
        let top: Top = d.top("by=flow&limit=50&window=60s");
        let items = top.items();
        let on_veth = items.iter().find(|i| {
            i.0["interface"] == server.link.if_a()
                && i.0["direction"] == "ingress"
                && i.str("local") == server_end
        });
        match on_veth {
            // The engine names the container a moment after its cgroup appears (the daemon
            // may have started before the engine).
            Some(item)
                if item.u64("lifetime_rx_bytes") >= DOWNLOAD
                    && item.0["nat"].as_array().is_some_and(|n| n.len() >= hops)
                    && item.0["owner"]["container"]["name"].is_string() =>
            {
                Ok((items[0].0.clone(), item.0.clone()))
            }
            other => Err(format!("{other:?}")),
        }
    })
}

fn total(item: &Value) -> u64 {
    item["tx_bytes"].as_u64().unwrap_or_default() + item["rx_bytes"].as_u64().unwrap_or_default()
}

/// The container's `docker run` options and command: download once, then stay, so that its
/// network namespace is there to be asked about.
fn openvpn(dockerd: &Dockerd, command: &str) -> trafficd_tests::docker::Container {
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", "openvpn"])
        .output();
    dockerd.run("openvpn", &["sh", "-c", command])
}

/// The incident's first three steps: the uplink is busy; its heaviest flow is a connection
/// no local process owns; it is the `openvpn` container's, MASQUERADEd by the host.
///
/// On this one machine the server and the container's client are local sockets too, each a
/// flow item beside the forwarded ones on the server's veth, docker0 and the container's
/// veth: the heaviest item is one of them, and the one on the server's veth is within the
/// header difference of it.
#[test]
fn the_heaviest_flow_is_a_masqueraded_container_download() {
    require_root!();
    require_program!("busybox", "busybox-static");
    let server = Server::start();
    let d = Daemon::start();
    wait_counted(&d, server.link.if_a());
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let container = openvpn(
        &dockerd,
        &format!("wget -q -O /dev/null {} && sleep 120", server.url()),
    );
    let address = container.inspect("{{.NetworkSettings.IPAddress}}");
    assert!(address.starts_with("172.17."), "{address}");

    let (heaviest, flow) = download_flow(&d, &server, 1);
    let server_end = server.addr().to_string();
    let ends = |i: &Value| [i["local"].clone(), i["remote"].clone()];
    assert!(
        ends(&heaviest).iter().any(|e| *e == server_end.as_str()),
        "the heaviest flow is not the download: {heaviest}"
    );
    // The socket hooks count each segment's headers (IPv4 20 + TCP 32 with timestamps), the
    // veth each (GSO) buffer's: the veth's item is lighter by at most that, and 1%.
    let segment_headers = (DOWNLOAD / 1448 + 1) * 52;
    assert!(
        total(&heaviest) <= total(&flow) + segment_headers + DOWNLOAD / 100,
        "{flow} vs {heaviest}"
    );
    assert_eq!(flow["local_socket"], false, "{flow}");
    assert_eq!(flow["pid"], 0, "{flow}");

    // The tuple as translated on the host's veth, and the original one from the container.
    let hop = &flow["nat"][0];
    assert_eq!(hop["seen_in"], "host", "{flow}");
    let original_src = hop["original"]["src"].as_str().unwrap_or_default();
    assert!(original_src.starts_with(&format!("{address}:")), "{flow}");
    assert_eq!(hop["original"]["dst"], server_end.as_str(), "{flow}");
    assert_eq!(hop["reply"]["src"], server_end.as_str(), "{flow}");
    assert_eq!(hop["reply"]["dst"], flow["remote"], "{flow}");
    let translated = flow["remote"].as_str().unwrap_or_default();
    assert!(
        translated.starts_with(&format!("{}:", server.link.a_v4())),
        "{flow}"
    );
    // The container: the cgroup of its namespace's processes, and its owner by that cgroup.
    assert_eq!(
        flow["container"],
        container.cgroup_path().as_str(),
        "{flow}"
    );
    assert_eq!(flow["owner"]["kind"], "container", "{flow}");
    assert_eq!(flow["owner"]["container"]["name"], "openvpn", "{flow}");
    assert_eq!(flow["owner"]["container"]["id"], container.id(), "{flow}");

    // The veth's own counters: the download, split into parts that add up within 1%. The
    // device's counters and the split are read a moment apart: both are waited for.
    wait_for("the server's veth", || {
        let item = interface_item(&d, server.link.if_a()).ok_or("not listed")?;
        let forwarded = item["lifetime_split"]["receive"]["forwarded"].as_u64();
        let received = item["lifetime_rx_bytes"].as_u64();
        match (forwarded, received) {
            (Some(f), Some(r)) if f >= DOWNLOAD && r >= DOWNLOAD => Ok(()),
            _ => Err(format!("{item}")),
        }
    });
    assert_conserved(&settled_interface(&d, server.link.if_a()));
}

/// Inside the container's namespace, a third namespace behind a veth and a MASQUERADE rule,
/// as a VPN server translates its clients: the flow's hops go from the host's translation to
/// the container's, which names the inner address.
#[test]
fn a_second_nat_inside_the_container_is_followed() {
    require_root!();
    require_program!("busybox", "busybox-static");
    require_program!("nsenter", "util-linux");
    let server = Server::start();
    let d = Daemon::start();
    wait_counted(&d, server.link.if_a());
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let container = openvpn(&dockerd, "sleep 120");
    let pid = container.pid().to_string();
    let inner = NetNs::new("vpn");
    let (outer_if, inner_if) = (
        format!("tv{}o", std::process::id()),
        format!("tv{}i", std::process::id()),
    );
    let run = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .expect(program);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "ip",
        &[
            "link",
            "add",
            &outer_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
            "netns",
            inner.name(),
        ],
    );
    run("ip", &["link", "set", &outer_if, "netns", &pid]);
    let in_container = |args: &[&str]| {
        let mut all = vec!["-t", pid.as_str(), "-n"];
        all.extend(args);
        run("nsenter", &all);
    };
    in_container(&["ip", "addr", "add", "10.9.0.1/24", "dev", &outer_if]);
    in_container(&["ip", "link", "set", &outer_if, "up"]);
    in_container(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    in_container(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        "10.9.0.0/24",
        "-j",
        "MASQUERADE",
    ]);
    inner.ip(&["addr", "add", "10.9.0.2/24", "dev", &inner_if]);
    inner.ip(&["link", "set", &inner_if, "up"]);
    inner.ip(&["route", "add", "default", "via", "10.9.0.1"]);

    run(
        "ip",
        &[
            "netns",
            "exec",
            inner.name(),
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &server.url(),
        ],
    );
    let (_, flow) = download_flow(&d, &server, 2);
    let hops = flow["nat"].as_array().cloned().unwrap_or_default();
    assert_eq!(hops[0]["seen_in"], "host", "{flow}");
    let address = container.inspect("{{.NetworkSettings.IPAddress}}");
    assert!(
        hops[0]["original"]["src"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{address}:")),
        "{flow}"
    );
    // The container's translation: the reply goes to the container's address, the original
    // comes from the inner namespace.
    assert_eq!(
        hops[1]["reply"]["dst"], hops[0]["original"]["src"],
        "{flow}"
    );
    assert!(
        hops[1]["original"]["src"]
            .as_str()
            .unwrap_or_default()
            .starts_with("10.9.0.2:"),
        "{flow}"
    );
    assert_eq!(
        hops[1]["seen_in"],
        container.cgroup_path().as_str(),
        "{flow}"
    );
    assert_eq!(
        flow["container"],
        container.cgroup_path().as_str(),
        "{flow}"
    );
    assert_eq!(flow["owner"]["container"]["name"], "openvpn", "{flow}");
}
