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

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
