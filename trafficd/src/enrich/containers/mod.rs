//! Containers, pods and systemd units: who owns a cgroup.
//!
//! The cgroup path names the owner's kind and id (`cgroup_path`); the runtimes' APIs name the
//! containers (`engine` keeps each runtime connected through its client: `docker` for Docker
//! and Podman, `containerd`, `crio`); the
//! Kubernetes API server names the pods (`kubernetes`). They all write one shared map
//! (`directory`); the drain only reads it through a [`ContainerDirectory`], and never waits on
//! a runtime.

mod cgroup_path;
mod containerd;
mod crio;
mod directory;
mod docker;
mod engine;
mod kubernetes;
mod owner;
mod runtime_client;

use std::path::PathBuf;

pub use directory::{ContainerDirectory, Writer};
pub use engine::Engine;
pub use kubernetes::InCluster;
pub use owner::{ContainerMeta, Owner, OwnerKind, PodMeta, Runtime};

/// Lookups of unknown ids waiting for one engine; more are dropped (the engine is slow, and its
/// event stream names the container anyway).
const LOOKUP_QUEUE: usize = 256;

/// Where the enrichment tasks look.
#[derive(Debug, Clone)]
pub struct Sources {
    pub engines: Vec<Engine>,
    /// `None` outside a cluster.
    pub kubernetes: Option<InCluster>,
}

impl Sources {
    /// The engines' default sockets, and the in-cluster API server when this runs in a pod.
    pub fn detect() -> Sources {
        Sources {
            engines: Engine::defaults(),
            kubernetes: InCluster::from_environment(),
        }
    }

    /// None at all: owners come from cgroup paths alone.
    pub fn none() -> Sources {
        Sources {
            engines: Vec::new(),
            kubernetes: None,
        }
    }

    /// Uses `socket` for the engine of `runtime` instead of its default.
    pub fn with_socket(mut self, runtime: Runtime, socket: PathBuf) -> Sources {
        for engine in &mut self.engines {
            if engine.runtime == runtime {
                engine.socket = socket.clone();
            }
        }
        self
    }
}

/// Starts the enrichment tasks on `runtime` and returns the drain's read handle.
pub fn start(runtime: &tokio::runtime::Handle, sources: Sources) -> ContainerDirectory {
    let writer = Writer::default();
    let mut lookups = Vec::new();
    for engine in sources.engines {
        let (sender, receiver) = tokio::sync::mpsc::channel(LOOKUP_QUEUE);
        lookups.push((engine.runtime, sender));
        runtime.spawn(engine::run(engine, writer.clone(), receiver));
    }
    if let Some(cluster) = sources.kubernetes {
        let writer = writer.clone();
        // The Kubernetes client is blocking (ureq): its own thread, never a runtime worker.
        let spawned = std::thread::Builder::new()
            .name("kubernetes".into())
            .spawn(move || kubernetes::run(&cluster, &writer));
        if let Err(err) = spawned {
            tracing::warn!("cannot start the Kubernetes pod watcher: {err}; pods show by UID");
        }
    }
    ContainerDirectory::new(&writer, lookups)
}
