//! Containers, pods and systemd units: who owns a cgroup.
//!
//! The cgroup path names the owner's kind and id (`cgroup_path`). What the runtimes and the
//! Kubernetes API say about those ids goes into one shared map (`directory`); the drain only
//! reads it through a [`ContainerDirectory`], and never waits on a runtime.

mod cgroup_path;
mod directory;
mod owner;

pub use directory::{ContainerDirectory, Writer};
pub use owner::{ContainerMeta, Owner, OwnerKind, PodMeta, Runtime};
