//! Keeps one engine (Docker or Podman) connected: list at start, then follow its event stream
//! and answer the drain's lookups of unknown ids. An engine that is absent or goes away costs one
//! log line; the names it gave are kept and the task reconnects with backoff.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{
    directory::{Lookup, Writer},
    docker::{ContainerEvent, EngineClient},
    Runtime,
};
use crate::error::Error;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One engine's API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub runtime: Runtime,
    pub socket: PathBuf,
}

impl Engine {
    /// The sockets the engines listen on by default: Docker's (or `DOCKER_HOST` when it names a
    /// unix socket) and rootful Podman's API service.
    pub fn defaults() -> Vec<Engine> {
        let docker = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        vec![
            Engine {
                runtime: Runtime::Docker,
                socket: docker,
            },
            Engine {
                runtime: Runtime::Podman,
                socket: PathBuf::from("/run/podman/podman.sock"),
            },
        ]
    }
}

/// Why a session with the engine ended.
enum Ended {
    /// Never connected.
    Unreachable(Error),
    /// Connected, then lost.
    Lost(Error),
}

/// Runs until the runtime shuts down.
pub async fn run(engine: Engine, writer: Writer, mut lookups: mpsc::Receiver<Lookup>) {
    let mut retry = FIRST_RETRY;
    // Log a state only when it changes: a host without Podman says so once, not every 30 s.
    let mut said_unreachable = false;
    loop {
        match session(&engine, &writer, &mut lookups).await {
            Ended::Unreachable(err) => {
                if !said_unreachable {
                    tracing::info!("{err}");
                    said_unreachable = true;
                } else {
                    tracing::debug!("{err}");
                }
            }
            Ended::Lost(err) => {
                tracing::warn!("{err}; keeping the names it gave, reconnecting");
                said_unreachable = true;
                retry = FIRST_RETRY;
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn session(engine: &Engine, writer: &Writer, lookups: &mut mpsc::Receiver<Lookup>) -> Ended {
    let lost = |source| Ended::Lost(engine_error(engine, source));
    let client = match EngineClient::connect(&engine.socket, engine.runtime).await {
        Ok(client) => client,
        Err(err) => return Ended::Unreachable(err),
    };
    // Events from a second before the list on: a container created in between is named by its
    // event, one named twice costs nothing.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 - 1);
    let listed = match client.list().await {
        Ok(listed) => listed,
        Err(err) => return Ended::Unreachable(engine_error(engine, err)),
    };
    tracing::info!(
        "{} engine at {}: {} containers",
        engine.runtime.as_str(),
        engine.socket.display(),
        listed.len()
    );
    writer.listed(engine.runtime, listed);
    let events = client.events(since);
    tokio::pin!(events);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Some(ContainerEvent::Appeared(meta)))) => writer.upsert_container(meta),
                Some(Ok(Some(ContainerEvent::Removed(id)))) => writer.container_removed(&id),
                Some(Ok(None)) => {}
                Some(Err(err)) => return lost(err),
                None => return lost(bollard::errors::Error::IOError {
                    err: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "event stream ended"),
                }),
            },
            Some(id) = lookups.recv() => {
                if writer.knows_container(&id) {
                    continue;
                }
                match client.inspect(&id).await {
                    Ok(Some(meta)) => writer.upsert_container(meta),
                    Ok(None) => {}
                    Err(err) => return lost(err),
                }
            }
        }
    }
}

fn engine_error(engine: &Engine, source: bollard::errors::Error) -> Error {
    Error::Engine {
        runtime: engine.runtime.as_str(),
        socket: engine.socket.clone(),
        source,
    }
}

/// Against the real engines, when they run here: Docker on its default socket, Podman's
/// compatible service where `TRAFFICD_TEST_PODMAN_SOCKET` names its socket (its CLI then reads
/// `CONTAINERS_CONF` from the environment). Each needs the local busybox image that the
/// integration harness imports (`local/busybox:1`); without it the test says so and passes.
#[cfg(test)]
mod tests {
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
}
