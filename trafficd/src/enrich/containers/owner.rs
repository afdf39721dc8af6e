//! Who owns a cgroup: the record the drain attaches to process, cgroup and flow items.

use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;

/// The container runtimes whose cgroup layouts and APIs trafficd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Runtime {
    #[serde(rename = "docker")]
    Docker,
    #[serde(rename = "podman")]
    Podman,
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
}

impl Runtime {
    /// The name used in the API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
        }
    }
}

/// What a runtime's API says about one container, captured when the container appears.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMeta {
    /// The full 64-hex id.
    pub id: Arc<str>,
    pub name: Option<Arc<str>>,
    pub image: Option<Arc<str>>,
    pub runtime: Option<Runtime>,
    pub compose_project: Option<Arc<str>>,
    pub compose_service: Option<Arc<str>>,
    /// From the `io.kubernetes.pod.*` labels that kubelet puts on a pod's containers.
    pub pod_name: Option<Arc<str>>,
    pub pod_namespace: Option<Arc<str>>,
    pub pod_uid: Option<Arc<str>>,
}

impl ContainerMeta {
    /// Fills the label-derived fields from a container's labels (or from an event's
    /// attributes, which carry the labels).
    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (key, value) in labels {
            let slot = match key {
                "com.docker.compose.project" => &mut self.compose_project,
                "com.docker.compose.service" => &mut self.compose_service,
                "io.kubernetes.pod.name" => &mut self.pod_name,
                "io.kubernetes.pod.namespace" => &mut self.pod_namespace,
                "io.kubernetes.pod.uid" => &mut self.pod_uid,
                _ => continue,
            };
            *slot = Some(Arc::from(value));
        }
        self
    }
}

/// What the Kubernetes API server says about one pod of this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    pub uid: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub labels: Arc<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    Container,
    /// A pod's own cgroup, above its containers.
    Pod,
    /// A systemd unit or slice.
    Unit,
    /// The cgroup2 root.
    Host,
    /// A layout trafficd does not know: show the cgroup path instead of a guess.
    Unknown,
}

/// The owner of one cgroup: what its path says, joined with what the runtimes and the
/// Kubernetes API say. Fields that do not apply are `None` (empty in metric labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub kind: OwnerKind,
    pub runtime: Option<Runtime>,
    pub container_id: Option<Arc<str>>,
    /// The first 12 hex digits, as `docker ps` shows them.
    pub container_short_id: Option<Arc<str>>,
    pub container_name: Option<Arc<str>>,
    pub image: Option<Arc<str>>,
    pub compose_project: Option<Arc<str>>,
    pub compose_service: Option<Arc<str>>,
    pub pod_uid: Option<Arc<str>>,
    pub pod_name: Option<Arc<str>>,
    pub namespace: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<Arc<BTreeMap<String, String>>>,
    pub unit: Option<Arc<str>>,
}

/// A cgroup no layout names: shown by its path.
impl Default for Owner {
    fn default() -> Owner {
        Owner::of_kind(OwnerKind::Unknown)
    }
}

impl Owner {
    pub fn of_kind(kind: OwnerKind) -> Owner {
        Owner {
            kind,
            runtime: None,
            container_id: None,
            container_short_id: None,
            container_name: None,
            image: None,
            compose_project: None,
            compose_service: None,
            pod_uid: None,
            pod_name: None,
            namespace: None,
            pod_labels: None,
            unit: None,
        }
    }

    /// Whether an engine or the API server may still name it: a container known by its id
    /// only, a pod by its UID only.
    pub fn awaits_names(&self) -> bool {
        (self.kind == OwnerKind::Container && self.container_name.is_none())
            || (self.pod_uid.is_some() && self.pod_name.is_none())
    }

    /// The key `/top?by=container` groups by: the container, pod or unit, "host"; `None` for
    /// an unknown layout, grouped by its cgroup path instead.
    pub fn group_key(&self) -> Option<&str> {
        match self.kind {
            OwnerKind::Container => self.container_id.as_deref(),
            OwnerKind::Pod => self.pod_uid.as_deref(),
            OwnerKind::Unit => self.unit.as_deref(),
            OwnerKind::Host => Some("host"),
            OwnerKind::Unknown => None,
        }
    }

    /// The one name a table row shows: the container's name, else its short id (its metadata is
    /// not known yet), else the pod, the unit, "host"; `None` for an unknown layout, where the
    /// caller shows the cgroup path.
    pub fn display_name(&self) -> Option<&str> {
        match self.kind {
            OwnerKind::Container => self
                .container_name
                .as_deref()
                .or(self.container_short_id.as_deref()),
            OwnerKind::Pod => self.pod_name.as_deref().or(self.pod_uid.as_deref()),
            OwnerKind::Unit => self.unit.as_deref(),
            OwnerKind::Host => Some("host"),
            OwnerKind::Unknown => None,
        }
    }
}
