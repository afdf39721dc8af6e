//! containerd's own gRPC API over its unix socket: the containers of every namespace (ctr,
//! nerdctl, and the Kubernetes CRI plugin's `k8s.io`), their create and delete events, and a
//! lookup by id. containerd has no container names: nerdctl's and the CRI plugin's labels give
//! one where they are set, the id otherwise.

use std::{path::Path, sync::Arc, time::Duration};

use containerd_client::{
    services::v1::{
        containers_client::ContainersClient, events_client::EventsClient,
        namespaces_client::NamespacesClient, version_client::VersionClient, Container,
        GetContainerRequest, ListContainersRequest, ListNamespacesRequest, SubscribeRequest,
    },
    tonic::{transport::Channel, Code, Request},
    types::Envelope,
};
use futures_util::StreamExt;
use prost::Message;

use super::{
    cgroup_path::is_container_id,
    runtime_client::{ContainerEvent, Events, RuntimeClient},
    ContainerMeta, Runtime,
};

/// A request that takes longer than this is treated as an engine that went away.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Docker's own namespaces in a containerd it shares: those containers are Docker's, named by
/// the Docker engine.
const DOCKER_NAMESPACES: [&str; 2] = ["moby", "plugins.moby"];
/// Labels that name a container, most specific first: the CRI plugin's (Kubernetes), then
/// nerdctl's.
const NAME_LABELS: [&str; 2] = ["io.kubernetes.container.name", "nerdctl/name"];

pub struct ContainerdClient {
    channel: Channel,
}

impl ContainerdClient {
    async fn namespaces(&self) -> Result<Vec<String>, String> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let listed = client
            .list(timed(ListNamespacesRequest::default(), None))
            .await
            .map_err(|s| s.message().to_string())?;
        Ok(listed
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .filter(|n| !DOCKER_NAMESPACES.contains(&n.as_str()))
            .collect())
    }
}

impl RuntimeClient for ContainerdClient {
    /// Connects and asks for the version: a socket that is not containerd's fails here, once.
    async fn connect(socket: &Path, _runtime: Runtime) -> Result<ContainerdClient, String> {
        if !socket.exists() {
            return Err(format!("Socket not found: {}", socket.display()));
        }
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        VersionClient::new(channel.clone())
            .version(timed((), None))
            .await
            .map_err(|s| s.message().to_string())?;
        Ok(ContainerdClient { channel })
    }

    async fn list(&self) -> Result<Vec<ContainerMeta>, String> {
        let mut all = Vec::new();
        let mut client = ContainersClient::new(self.channel.clone());
        for namespace in self.namespaces().await? {
            let listed = client
                .list(timed(ListContainersRequest::default(), Some(&namespace)))
                .await
                .map_err(|s| s.message().to_string())?;
            all.extend(listed.into_inner().containers.into_iter().filter_map(meta));
        }
        Ok(all)
    }

    /// Asks each namespace in turn: an id is unique on the host in practice, and namespaces are
    /// few.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, String> {
        let mut client = ContainersClient::new(self.channel.clone());
        for namespace in self.namespaces().await? {
            let request = GetContainerRequest { id: id.to_string() };
            match client.get(timed(request, Some(&namespace))).await {
                Ok(found) => return Ok(found.into_inner().container.and_then(meta)),
                Err(status) if status.code() == Code::NotFound => continue,
                Err(status) => return Err(status.message().to_string()),
            }
        }
        Ok(None)
    }

    /// containerd's events start at the subscription; a create carries no labels, so the task
    /// asks for the container.
    async fn events(&self, _since: i64) -> Result<Events, String> {
        let mut client = EventsClient::new(self.channel.clone());
        let request = SubscribeRequest {
            filters: vec![r#"topic~="^/containers/""#.to_string()],
        };
        let stream = client
            .subscribe(request)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok(stream
            .map(|envelope| {
                envelope
                    .map(|e| from_envelope(&e))
                    .map_err(|s| s.message().to_string())
            })
            .boxed())
    }
}

/// A request with a deadline and, for namespaced services, the namespace it is about.
fn timed<T>(message: T, namespace: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(REQUEST_TIMEOUT);
    if let Some(value) = namespace.and_then(|n| n.parse().ok()) {
        request.metadata_mut().insert("containerd-namespace", value);
    }
    request
}

fn from_envelope(envelope: &Envelope) -> Option<ContainerEvent> {
    if DOCKER_NAMESPACES.contains(&envelope.namespace.as_str()) {
        return None;
    }
    let event = envelope.event.as_ref()?;
    let id = match envelope.topic.as_str() {
        "/containers/create" => {
            containerd_client::events::ContainerCreate::decode(event.value.as_slice())
                .ok()?
                .id
        }
        "/containers/update" => {
            containerd_client::events::ContainerUpdate::decode(event.value.as_slice())
                .ok()?
                .id
        }
        "/containers/delete" => {
            let id = containerd_client::events::ContainerDelete::decode(event.value.as_slice())
                .ok()?
                .id;
            return is_container_id(&id).then(|| ContainerEvent::Removed(Arc::from(id)));
        }
        _ => return None,
    };
    is_container_id(&id).then(|| ContainerEvent::Created(Arc::from(id)))
}

fn meta(container: Container) -> Option<ContainerMeta> {
    if !is_container_id(&container.id) {
        return None;
    }
    let name = NAME_LABELS
        .iter()
        .find_map(|label| container.labels.get(*label))
        .filter(|n| !n.is_empty())
        .map(|n| Arc::from(n.as_str()));
    let meta = ContainerMeta {
        id: Arc::from(container.id.as_str()),
        name,
        image: (!container.image.is_empty()).then(|| Arc::from(container.image.as_str())),
        runtime: Some(Runtime::Containerd),
        ..ContainerMeta::default()
    };
    Some(
        meta.with_labels(
            container
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::events::{ContainerCreate, ContainerDelete};
    use prost_types::Any;

    const ID: &str = "4f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    fn envelope(namespace: &str, topic: &str, value: Vec<u8>) -> Envelope {
        Envelope {
            namespace: namespace.into(),
            topic: topic.into(),
            event: Some(Any {
                type_url: String::new(),
                value,
            }),
            ..Envelope::default()
        }
    }

    #[test]
    fn create_and_delete_events_name_the_id() {
        let create = ContainerCreate {
            id: ID.into(),
            ..Default::default()
        };
        let e = envelope("k8s.io", "/containers/create", create.encode_to_vec());
        assert_eq!(
            from_envelope(&e),
            Some(ContainerEvent::Created(Arc::from(ID)))
        );
        let delete = ContainerDelete { id: ID.into() };
        let e = envelope("default", "/containers/delete", delete.encode_to_vec());
        assert_eq!(
            from_envelope(&e),
            Some(ContainerEvent::Removed(Arc::from(ID)))
        );
        // Docker's own containers are the Docker engine's to name.
        let e = envelope("moby", "/containers/create", create.encode_to_vec());
        assert_eq!(from_envelope(&e), None);
        // Task events, and ids that no cgroup path would carry, change nothing.
        let e = envelope("default", "/tasks/start", create.encode_to_vec());
        assert_eq!(from_envelope(&e), None);
        let short = ContainerCreate {
            id: "web".into(),
            ..Default::default()
        };
        let e = envelope("default", "/containers/create", short.encode_to_vec());
        assert_eq!(from_envelope(&e), None);
    }

    #[test]
    fn cri_labels_name_the_container_and_its_pod() {
        let container = Container {
            id: ID.into(),
            image: "registry.k8s.io/pause:3.9".into(),
            labels: [
                ("io.kubernetes.container.name", "web"),
                ("io.kubernetes.pod.name", "shop-7d9f"),
                ("io.kubernetes.pod.namespace", "prod"),
                ("io.kubernetes.pod.uid", "0b4d"),
                ("nerdctl/name", "ignored"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Container::default()
        };
        let meta = meta(container).expect("a 64-hex id");
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.image.as_deref(), Some("registry.k8s.io/pause:3.9"));
        assert_eq!(meta.runtime, Some(Runtime::Containerd));
        assert_eq!(meta.pod_name.as_deref(), Some("shop-7d9f"));
        assert_eq!(meta.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(meta.pod_uid.as_deref(), Some("0b4d"));
    }
}
