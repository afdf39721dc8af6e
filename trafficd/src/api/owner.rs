//! Who owns an item's bytes: a container (and the pod it belongs to), a pod, a systemd unit,
//! or the host. The same object rides on every process, cgroup and flow item, and
//! `/top?by=container` groups by it.

use serde::{Deserialize, Serialize};

use crate::enrich::containers as enrich;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    Container,
    /// A Kubernetes pod's own cgroup, above its containers.
    Pod,
    /// A systemd unit or slice.
    Unit,
    /// Outside any container or unit.
    Host,
    /// A cgroup layout trafficd does not know: the item's cgroup path says where it is.
    #[default]
    Unknown,
}

/// Fields that do not apply are null.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Owner {
    pub kind: OwnerKind,
    /// What a person calls it: the container's name (its short id until the engine named
    /// it), the pod's name, the unit, "host"; null for an unknown layout.
    pub name: Option<String>,
    pub container: Option<Container>,
    pub pod: Option<Pod>,
    /// The systemd unit, e.g. `nginx.service`.
    pub unit: Option<String>,
}

/// A container as its runtime names it. Name and image are null until an engine answered
/// (or with `--no-containers`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The full id, as in the cgroup path.
    pub id: String,
    /// The first 12 hex digits, as `docker ps` shows them.
    pub short_id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// docker, podman, containerd or cri-o; null where the cgroup path does not say and no
    /// engine named it.
    pub runtime: Option<String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

/// The Kubernetes pod a container belongs to. Name and namespace come from the API server
/// (in a cluster) or kubelet's container labels; the UID from the cgroup path.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

impl From<&enrich::Owner> for Owner {
    fn from(owner: &enrich::Owner) -> Owner {
        let text = |s: &Option<std::sync::Arc<str>>| s.as_deref().map(str::to_string);
        let container = owner.container_id.as_ref().map(|id| Container {
            id: id.to_string(),
            short_id: text(&owner.container_short_id).unwrap_or_default(),
            name: text(&owner.container_name),
            image: text(&owner.image),
            runtime: owner.runtime.map(|r| r.as_str().to_string()),
            compose_project: text(&owner.compose_project),
            compose_service: text(&owner.compose_service),
        });
        let pod = owner.pod_uid.as_ref().map(|uid| Pod {
            uid: uid.to_string(),
            name: text(&owner.pod_name),
            namespace: text(&owner.namespace),
        });
        Owner {
            kind: match owner.kind {
                enrich::OwnerKind::Container => OwnerKind::Container,
                enrich::OwnerKind::Pod => OwnerKind::Pod,
                enrich::OwnerKind::Unit => OwnerKind::Unit,
                enrich::OwnerKind::Host => OwnerKind::Host,
                enrich::OwnerKind::Unknown => OwnerKind::Unknown,
            },
            name: owner.display_name().map(str::to_string),
            container,
            pod,
            unit: text(&owner.unit),
        }
    }
}

impl Owner {
    /// The one cell a table shows: the owner's name, else the cgroup path it was found at.
    pub fn label<'a>(&'a self, cgroup: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(cgroup)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::enrich::containers::{ContainerDirectory, PodMeta, Writer};

    const UID: &str = "0b4d2c6e-8f1a-4b3c-9d7e-5a6f1e2d3c4b";
    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    /// A kubepods cgroup path names the pod by UID only; the API server's pod joins by it and
    /// the answer carries the pod's name and namespace beside the container.
    #[test]
    fn a_kubepods_container_carries_its_pod() {
        let writer = Writer::default();
        writer.upsert_pod(PodMeta {
            uid: UID.into(),
            name: "openvpn-7d9f".into(),
            namespace: "edge".into(),
            labels: Arc::default(),
        });
        let mut directory = ContainerDirectory::new(&writer, vec![]);
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let owner = Owner::from(&*directory.owner(&path));
        assert_eq!(owner.kind, OwnerKind::Container);
        let pod = owner.pod.expect("a pod");
        assert_eq!(
            (
                pod.uid.as_str(),
                pod.name.as_deref(),
                pod.namespace.as_deref()
            ),
            (UID, Some("openvpn-7d9f"), Some("edge"))
        );
        let container = owner.container.expect("a container");
        assert_eq!(container.id, ID);
        assert_eq!(container.short_id, &ID[..12]);
        assert_eq!(container.runtime.as_deref(), Some("containerd"));
        // No engine named it: the short id stands in for its name.
        assert_eq!(owner.name.as_deref(), Some(&ID[..12]));
    }
}
