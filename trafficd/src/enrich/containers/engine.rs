//! Keeps one engine (Docker, Podman, containerd or CRI-O) connected: follow its events, list
//! its containers, and answer the drain's lookups of unknown ids. An engine that is absent or
//! goes away costs one log line; the names it gave are kept and the task reconnects with
//! backoff. Each runtime's API is a [`RuntimeClient`] in a file of its own.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{
    containerd::ContainerdClient,
    crio::CrioClient,
    directory::{Lookup, Writer},
    docker::EngineClient,
    runtime_client::{ContainerEvent, RuntimeClient},
    Runtime,
};
use crate::error::Error;

const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often a waiting task looks whether its engine's socket appeared (a stat).
const SOCKET_CHECK: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One engine's API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub runtime: Runtime,
    pub socket: PathBuf,
}

impl Engine {
    /// The sockets the engines listen on by default: Docker's (or `DOCKER_HOST` when it names a
    /// unix socket), rootful Podman's API service, containerd's and CRI-O's.
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
            Engine {
                runtime: Runtime::Containerd,
                socket: PathBuf::from("/run/containerd/containerd.sock"),
            },
            Engine {
                runtime: Runtime::CriO,
                socket: PathBuf::from("/var/run/crio/crio.sock"),
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
pub async fn run(engine: Engine, writer: Writer, lookups: mpsc::Receiver<Lookup>) {
    match engine.runtime {
        Runtime::Docker | Runtime::Podman => keep::<EngineClient>(engine, writer, lookups).await,
        Runtime::Containerd => keep::<ContainerdClient>(engine, writer, lookups).await,
        Runtime::CriO => keep::<CrioClient>(engine, writer, lookups).await,
    }
}

/// Sessions with one engine, one after the other, with backoff between them.
async fn keep<C: RuntimeClient>(
    engine: Engine,
    writer: Writer,
    mut lookups: mpsc::Receiver<Lookup>,
) {
    let mut retry = FIRST_RETRY;
    // Log a state only when it changes: a host without Podman says so once, not every 30 s.
    let mut said_unreachable = false;
    loop {
        match session::<C>(&engine, &writer, &mut lookups).await {
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
        until_retry(&engine.socket, retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Waits `retry`, or less when the socket is created or replaced meanwhile: an engine that
/// starts after trafficd is connected to within a moment, not at the end of the backoff.
async fn until_retry(socket: &Path, retry: Duration) {
    let identity = |socket: &Path| std::fs::metadata(socket).ok().map(|m| (m.dev(), m.ino()));
    let before = identity(socket);
    let deadline = tokio::time::Instant::now() + retry;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(SOCKET_CHECK.min(retry)).await;
        let now = identity(socket);
        if now.is_some() && now != before {
            return;
        }
    }
}

async fn session<C: RuntimeClient>(
    engine: &Engine,
    writer: &Writer,
    lookups: &mut mpsc::Receiver<Lookup>,
) -> Ended {
    let failed = |reason| engine_error(engine, reason);
    let client = match C::connect(&engine.socket, engine.runtime).await {
        Ok(client) => client,
        Err(err) => return Ended::Unreachable(failed(err)),
    };
    // Events from a second before the list on: a container created in between is named by its
    // event, one named twice costs nothing.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 - 1);
    let mut events = match client.events(since).await {
        Ok(events) => events,
        Err(err) => return Ended::Unreachable(failed(err)),
    };
    let listed = match client.list().await {
        Ok(listed) => listed,
        Err(err) => return Ended::Unreachable(failed(err)),
    };
    tracing::info!(
        "{} engine at {}: {} containers",
        engine.runtime.as_str(),
        engine.socket.display(),
        listed.len()
    );
    writer.listed(engine.runtime, listed);
    loop {
        let id = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Some(ContainerEvent::Appeared(meta)))) => {
                    writer.upsert_container(meta);
                    continue;
                }
                Some(Ok(Some(ContainerEvent::Created(id)))) => id,
                Some(Ok(Some(ContainerEvent::Removed(id)))) => {
                    writer.container_removed(&id);
                    continue;
                }
                Some(Ok(None)) => continue,
                Some(Err(err)) => return Ended::Lost(failed(err)),
                None => return Ended::Lost(failed("event stream ended".into())),
            },
            Some(id) = lookups.recv() => {
                if writer.knows_container(&id) {
                    continue;
                }
                id
            }
        };
        match client.inspect(&id).await {
            Ok(Some(meta)) => writer.upsert_container(meta),
            Ok(None) => {}
            Err(err) => return Ended::Lost(failed(err)),
        }
    }
}

fn engine_error(engine: &Engine, reason: String) -> Error {
    Error::Engine {
        runtime: engine.runtime.as_str(),
        socket: engine.socket.clone(),
        reason,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
