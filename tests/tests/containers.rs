//! Containers of real engines, started by the harness: their cgroups are where trafficd's
//! cgroup-path table expects them, under the cgroup2 mount, so the daemon can name them.
//! (The bytes per container through the daemon are tested in containers_traffic.rs.)

use trafficd_tests::docker::Dockerd;
use trafficd_tests::podman::Podman;
use trafficd_tests::require_root;

fn name(tag: &str) -> String {
    format!("trafficd-test-{}-{tag}", std::process::id())
}

#[test]
fn docker_containers_have_cgroupfs_paths() {
    require_root!();
    let dockerd = Dockerd::ensure();
    let _image = dockerd.busybox();
    let a = dockerd.run(&name("a"), &["sleep", "60"]);
    let b = dockerd.run(&name("b"), &["sleep", "60"]);

    for c in [&a, &b] {
        assert_eq!(
            c.cgroup_path(),
            format!("/docker/{}", c.id()),
            "{}",
            c.name()
        );
        assert!(
            c.cgroup_dir().is_dir(),
            "{} missing",
            c.cgroup_dir().display()
        );
        assert_eq!(c.inspect("{{.Name}}"), format!("/{}", c.name()));
        assert_eq!(c.inspect("{{.Config.Image}}"), "local/busybox:1");
    }
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.cgroup_path(), b.cgroup_path());
}

#[test]
fn podman_container_has_a_libpod_parent_path() {
    require_root!();
    let podman = Podman::start();
    let _image = podman.busybox();
    let c = podman.run(&name("p"), &["sleep", "60"]);

    assert_eq!(c.cgroup_path(), format!("/libpod_parent/libpod-{}", c.id()));
    assert!(
        c.cgroup_dir().is_dir(),
        "{} missing",
        c.cgroup_dir().display()
    );
    assert_eq!(c.inspect("{{.Name}}"), c.name());
    assert!(trafficd_tests::docker::pings(podman.socket()));
}

/// The outage the daemon must survive: the engine this test started stops, then starts again
/// and runs a new container.
#[test]
fn dockerd_stops_and_starts_again() {
    require_root!();
    let mut dockerd = Dockerd::ensure();
    if !dockerd.started_here() {
        eprintln!("skipped: a dockerd this test did not start is running; it is left alone");
        return;
    }
    let _image = dockerd.busybox();
    dockerd.stop();
    assert!(!trafficd_tests::docker::pings(dockerd.socket()));
    dockerd.restart();
    let c = dockerd.run(&name("r"), &["sleep", "60"]);
    assert_eq!(c.cgroup_path(), format!("/docker/{}", c.id()));
}
