//! The engine task against a scripted engine on a unix socket (an engine that goes away and
//! comes back), and against the real engines when they run here: Docker on its default socket,
//! Podman's
//! compatible service where `TRAFFICD_TEST_PODMAN_SOCKET` names its socket (its CLI then reads
//! `CONTAINERS_CONF` from the environment). Each needs the local busybox image that the
//! integration harness imports (`local/busybox:1`); without it the test says so and passes.

use std::{path::Path, process::Command, time::Instant};

use super::*;
use crate::enrich::containers::ContainerDirectory;

const IMAGE: &str = "local/busybox:1";

struct Cli(&'static str);

impl Cli {
    fn run(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new(self.0);
        if self.0 == "podman" {
            cmd.arg("--cgroup-manager=cgroupfs");
        }
        let out = cmd.args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Removes the container on drop, also when an assertion fails.
struct Removed<'a>(&'a Cli, String);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", &self.1]);
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container listed at start is named; one that is created, runs, exits and is removed
/// before anyone asks for it is named from its events; inspect answers for a known id and
/// says `None` for an unknown one.
async fn names_containers(runtime: Runtime, socket: &Path, cli: Cli) {
    if !socket.exists() || cli.run(&["image", "inspect", IMAGE]).is_none() {
        eprintln!(
            "skipped: no {runtime:?} engine at {} with {IMAGE}",
            socket.display()
        );
        return;
    }
    let name = format!("trafficd-unit-{}-{}", std::process::id(), runtime.as_str());
    // Created before the task starts: it must come from the list.
    let listed = cli.run(&["create", "--name", &format!("{name}-l"), IMAGE, "true"]);
    let listed = Removed(&cli, listed.expect("create"));
    let writer = Writer::default();
    let (lookups, receiver) = mpsc::channel(8);
    let engine = Engine {
        runtime,
        socket: socket.to_path_buf(),
    };
    let task = tokio::spawn(run(engine, writer.clone(), receiver));
    let mut directory = ContainerDirectory::new(&writer, vec![(runtime, lookups)]);
    let path = |id: &str| match runtime {
        Runtime::Podman => format!("/libpod_parent/libpod-{id}"),
        _ => format!("/docker/{id}"),
    };
    until("the listed container", || writer.knows_container(&listed.1)).await;
    let owner = directory.owner(&path(&listed.1));
    assert_eq!(owner.container_name.as_deref(), Some(&*format!("{name}-l")));
    // Podman names a local image with its `localhost/` registry.
    let image = owner.image.as_deref().unwrap_or_default();
    assert!(image.ends_with(IMAGE), "image {image:?}");

    let client = EngineClient::connect(socket, runtime)
        .await
        .expect("connect");
    let inspected = client.inspect(&listed.1).await.expect("inspect");
    assert_eq!(
        inspected.and_then(|m| m.name).as_deref(),
        Some(&*format!("{name}-l"))
    );
    let unknown = "0".repeat(64);
    assert_eq!(client.inspect(&unknown).await.expect("inspect"), None);

    let short = cli.run(&["create", "--name", &format!("{name}-s"), IMAGE, "true"]);
    let short = Removed(&cli, short.expect("create"));
    cli.run(&["start", "-a", &short.1]).expect("start");
    cli.run(&["rm", &short.1]).expect("rm");
    until("the short-lived container", || {
        directory.owner(&path(&short.1)).container_name.is_some()
    })
    .await;
    assert_eq!(
        directory.owner(&path(&short.1)).container_name.as_deref(),
        Some(&*format!("{name}-s"))
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_names_containers() {
    names_containers(
        Runtime::Docker,
        Path::new("/var/run/docker.sock"),
        Cli("docker"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_engine_names_containers() {
    let Some(socket) = std::env::var_os("TRAFFICD_TEST_PODMAN_SOCKET") else {
        eprintln!("skipped: TRAFFICD_TEST_PODMAN_SOCKET is not set");
        return;
    };
    names_containers(Runtime::Podman, Path::new(&socket), Cli("podman")).await;
}

#[tokio::test]
async fn absent_engine_is_one_error_naming_the_socket() {
    let socket = Path::new("/nonexistent/docker.sock");
    let Err(err) = EngineClient::connect(socket, Runtime::Docker).await else {
        panic!("connected to a socket that does not exist");
    };
    assert!(
        err.to_string().contains("/nonexistent/docker.sock"),
        "{err}"
    );
}

/// What the scripted engine answers in one session (one connection per request, as bollard's
/// client keeps no idle connections).
struct Script {
    listed: &'static [(&'static str, &'static str)],
    /// Sent on the event stream, which then closes: the engine went away.
    created: Option<(&'static str, &'static str)>,
}

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// Serves `/version`, `/containers/json` and `/events` from `scripts`, one script per session
/// (a session starts with `/version`); the last session's event stream stays open.
async fn scripted_engine(listener: tokio::net::UnixListener, scripts: Vec<Script>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut session = 0;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.contains("/version") {
            session += 1;
        }
        let script = &scripts[(session.max(1) - 1).min(scripts.len() - 1)];
        let body = if head.contains("/version") {
            r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#.to_string()
        } else if head.contains("/containers/json") {
            let listed: Vec<String> = script
                .listed
                .iter()
                .map(|(id, name)| {
                    format!(r#"{{"Id":"{id}","Names":["/{name}"],"Image":"local/busybox:1"}}"#)
                })
                .collect();
            format!("[{}]", listed.join(","))
        } else if head.contains("/events") {
            let last = session >= scripts.len();
            let event = script.created.map(|(id, name)| {
                format!(r#"{{"Type":"container","Action":"create","Actor":{{"ID":"{id}","Attributes":{{"name":"{name}","image":"local/busybox:1"}}}}}}"#)
            });
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            if let Some(event) = event {
                let _ = stream.write_all(format!("{event}\n").as_bytes()).await;
            }
            if last {
                // Held open until the test ends.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    drop(stream);
                });
            }
            continue;
        } else {
            String::from("{}")
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }
}

fn name_of(directory: &mut ContainerDirectory, id: &str) -> Option<String> {
    let owner = directory.owner(&format!("/docker/{id}"));
    owner.container_name.as_deref().map(str::to_string)
}

/// The engine names A (listed) and B (created), goes away, and comes back with only C: A and
/// B keep their names, C is named, all without a call from the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_that_goes_away_and_comes_back() {
    let socket = std::env::temp_dir().join(format!("trafficd-engine-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind scripted engine");
    let scripts = vec![
        Script {
            listed: &[(A, "alpha")],
            created: Some((B, "bravo")),
        },
        Script {
            listed: &[(C, "charlie")],
            created: None,
        },
    ];
    let server = tokio::spawn(scripted_engine(listener, scripts));
    let writer = Writer::default();
    let (_lookups, receiver) = mpsc::channel(8);
    let engine = Engine {
        runtime: Runtime::Docker,
        socket: socket.clone(),
    };
    let task = tokio::spawn(run(engine, writer.clone(), receiver));
    let mut directory = ContainerDirectory::new(&writer, vec![]);

    until("the restarted engine's container", || {
        writer.knows_container(C)
    })
    .await;
    assert_eq!(name_of(&mut directory, A).as_deref(), Some("alpha"));
    assert_eq!(name_of(&mut directory, B).as_deref(), Some("bravo"));
    assert_eq!(name_of(&mut directory, C).as_deref(), Some("charlie"));
    task.abort();
    server.abort();
    let _ = std::fs::remove_file(&socket);
}
