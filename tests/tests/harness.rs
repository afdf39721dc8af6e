//! The harness itself, without the daemon: namespaces, veths, cgroups and
//! trafficgen work and clean up after themselves. These run wherever the
//! suite runs as root, so a broken harness is not mistaken for a daemon bug.

use std::net::SocketAddr;
use std::path::Path;

use trafficd_tests::{require_root, trafficgen, Cgroup, Link, NetNs, Side, Transfer};

fn netns_list() -> String {
    String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn netns_link_carries_tcp_and_udp_and_is_removed() {
    require_root!();
    let tg = trafficgen!();
    let (name_a, name_b, if_root);
    {
        let a = NetNs::new("ha");
        let b = NetNs::new("hb");
        let ab = Link::between(&a, &b);
        let rb = Link::root_to(&b);
        name_a = a.name().to_string();
        name_b = b.name().to_string();
        if_root = rb.if_a().to_string();
        assert!(netns_list().contains(&name_a));
        assert!(Path::new("/sys/class/net").join(&if_root).exists());
        for v6 in [false, true] {
            let t = Transfer::tcp(SocketAddr::new(ab.b(v6), 0), 1 << 20)
                .server(Side::named("h-sink").netns(&b))
                .client(Side::named("h-send").netns(&a))
                .run(&tg);
            assert_eq!(t.sender.peer().ip(), ab.b(v6));
            assert_eq!(t.sender.local().ip(), ab.a(v6));
            let u = Transfer::udp(SocketAddr::new(rb.b(v6), 0), 100_000)
                .server(Side::named("h-usink").netns(&b))
                .client(Side::named("h-usend"))
                .run(&tg);
            assert_eq!(u.receiver.u64("datagrams_received"), 100);
            assert_eq!(u.sender.local().ip(), rb.a(v6));
        }
    }
    let list = netns_list();
    assert!(
        !list.contains(&name_a) && !list.contains(&name_b),
        "namespaces left behind: {list}"
    );
    assert!(
        !Path::new("/sys/class/net").join(&if_root).exists(),
        "veth {if_root} left behind"
    );
}

#[test]
fn netns_is_removed_when_the_test_panics() {
    require_root!();
    let name = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let ns = NetNs::new("hp");
        let _l = Link::root_to(&ns);
        *name.lock().unwrap() = ns.name().to_string();
        panic!("on purpose");
    });
    assert!(r.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    assert!(
        !netns_list().contains(&name),
        "namespace {name} left behind after a panic"
    );
}

#[test]
fn cgroup_takes_a_process_from_its_first_instruction_and_is_removed() {
    require_root!();
    let tg = trafficgen!();
    let dir;
    {
        let cg = Cgroup::new("h");
        dir = cg.dir().to_path_buf();
        assert!(dir.starts_with(Cgroup::mount_point()));
        assert!(cg.path().starts_with("/trafficd-test-"));
        assert!(cg.id() > 1);
        let t = Transfer::tcp("127.0.0.1:0".parse().unwrap(), 4096)
            .server(Side::named("h-csink"))
            .client(Side::named("h-csend").cgroup(&cg))
            .run(&tg);
        assert_eq!(t.sender_expect.1, cg.path());
        // A process that stays: it is in the cgroup, and Drop moves it out.
        let (hold, _) = tg
            .cmd(&[
                "hold-recv",
                "--listen",
                "127.0.0.1:0",
                "--wait-file",
                "/nonexistent",
                "--name",
                "h-stay",
            ])
            .cgroup(&cg)
            .spawn_ready();
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", hold.pid())).unwrap();
        assert!(
            own.lines().any(|l| l == format!("0::{}", cg.path())),
            "{own}"
        );
        assert_eq!(cg.pids(), vec![hold.pid()]);
        drop(cg);
        drop(hold);
    }
    assert!(!dir.exists(), "cgroup {} left behind", dir.display());
}

#[test]
fn trafficgen_fork_send_reports_both_processes() {
    require_root!();
    let tg = trafficgen!();
    let (sink, addr) = tg
        .cmd(&["tcp-sink", "--listen", "[::1]:0", "--name", "h-fsink"])
        .spawn_ready();
    let f = tg
        .cmd(&[
            "fork-send",
            "--to",
            &addr.to_string(),
            "--parent-bytes",
            "3000",
            "--child-bytes",
            "1000",
            "--name",
            "h-fpar",
            "--child-name",
            "h-fchild",
        ])
        .run();
    let sink = sink.finish();
    assert_eq!(sink.bytes_received(), 4000);
    assert_ne!(f.u64("child_pid"), f.pid() as u64);
    assert_eq!(f.comm(), "h-fpar");
}

#[test]
fn trafficgen_short_send_exits_fast() {
    require_root!();
    let tg = trafficgen!();
    let (sink, addr) = tg
        .cmd(&["tcp-sink", "--listen", "127.0.0.1:0", "--name", "h-ssink"])
        .spawn_ready();
    let s = tg
        .cmd(&[
            "tcp-send",
            "--to",
            &addr.to_string(),
            "--bytes",
            "1048576",
            "--no-wait",
            "--name",
            "h-short",
        ])
        .run();
    assert_eq!(sink.finish().bytes_received(), 1 << 20);
    let ms = s.json["elapsed_ms"].as_f64().unwrap();
    assert!(ms < 100.0, "took {ms} ms");
    assert!(
        !Path::new(&format!("/proc/{}", s.pid())).exists(),
        "not reaped"
    );
}
