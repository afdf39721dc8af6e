//! The Docker Engine API over its unix socket, with bollard: list, inspect, events. Podman's
//! Docker-compatible socket (`podman system service`) answers the same calls, so one client
//! serves both; `engine.rs` keeps it connected.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use bollard::{
    errors::Error as BollardError,
    models::{ContainerInspectResponse, ContainerSummary, EventMessage, EventMessageTypeEnum},
    query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder},
    Docker, API_DEFAULT_VERSION,
};
use futures_util::StreamExt;

use super::{
    cgroup_path::is_container_id,
    runtime_client::{ContainerEvent, Events, RuntimeClient},
    ContainerMeta, Runtime,
};

/// A request that takes longer than this is treated as an engine that went away.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct EngineClient {
    docker: Docker,
    runtime: Runtime,
}

impl RuntimeClient for EngineClient {
    /// Connects and settles the API version with the engine: bollard speaks a newer version
    /// than many engines in service (Debian 12's Docker answers at most 1.41), and an engine
    /// refuses a client version above its own.
    async fn connect(socket: &Path, runtime: Runtime) -> Result<EngineClient, String> {
        let path = socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT.as_secs(), API_DEFAULT_VERSION)
                .map_err(|e| e.to_string())?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        Ok(EngineClient { docker, runtime })
    }

    async fn list(&self) -> Result<Vec<ContainerMeta>, String> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| e.to_string())?;
        Ok(listed
            .into_iter()
            .filter_map(|c| from_summary(c, self.runtime))
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, String> {
        match self.docker.inspect_container(id, None).await {
            Ok(found) => Ok(from_inspect(found, self.runtime)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Docker's and Podman's event streams replay from `since`. The stream ends when the
    /// engine goes away.
    async fn events(&self, since: i64) -> Result<Events, String> {
        let filters = HashMap::from([("type", vec!["container"])]);
        let options = EventsOptionsBuilder::new()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        let runtime = self.runtime;
        Ok(self
            .docker
            .events(Some(options))
            .map(move |event| {
                event
                    .map(|e| from_event(e, runtime))
                    .map_err(|e| e.to_string())
            })
            .boxed())
    }
}

fn from_summary(c: ContainerSummary, runtime: Runtime) -> Option<ContainerMeta> {
    let id = c.id.filter(|id| is_container_id(id))?;
    // Names are listed with a leading '/', as in the engine's link namespace.
    let name = c
        .names
        .and_then(|names| names.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string());
    let meta = meta(id, name, c.image, runtime);
    let labels = c.labels.unwrap_or_default();
    Some(meta.with_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

fn from_inspect(c: ContainerInspectResponse, runtime: Runtime) -> Option<ContainerMeta> {
    let id = c.id.filter(|id| is_container_id(id))?;
    let name = c.name.map(|n| n.trim_start_matches('/').to_string());
    let config = c.config.unwrap_or_default();
    let meta = meta(id, name, config.image, runtime);
    let labels = config.labels.unwrap_or_default();
    Some(meta.with_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

/// Container events carry the name, the image and every label in the actor's attributes, so a
/// container is named from its `create` event alone, even if it is gone before an inspect.
fn from_event(e: EventMessage, runtime: Runtime) -> Option<ContainerEvent> {
    if e.typ.is_some_and(|t| t != EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = e.actor?;
    let id = actor.id.filter(|id| is_container_id(id))?;
    // Docker says `destroy`; Podman's compatible API says `remove` for the same step.
    match e.action.as_deref()? {
        "create" | "start" | "rename" => {
            let attributes = actor.attributes.unwrap_or_default();
            let name = attributes.get("name").cloned();
            let image = attributes.get("image").cloned();
            let meta = meta(id, name, image, runtime)
                .with_labels(attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Some(ContainerEvent::Appeared(meta))
        }
        "destroy" | "remove" => Some(ContainerEvent::Removed(Arc::from(id))),
        _ => None,
    }
}

fn meta(
    id: String,
    name: Option<String>,
    image: Option<String>,
    runtime: Runtime,
) -> ContainerMeta {
    ContainerMeta {
        id: Arc::from(id),
        name: name.filter(|n| !n.is_empty()).map(Arc::from),
        image: image.filter(|i| !i.is_empty()).map(Arc::from),
        runtime: Some(runtime),
        ..ContainerMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    const ID: &str = "9c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    fn event(action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(ID.into()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn create_event_names_the_container() {
        let e = event(
            "create",
            &[
                ("name", "shop-web-1"),
                ("image", "local/busybox:1"),
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", "web"),
            ],
        );
        let Some(ContainerEvent::Appeared(meta)) = from_event(e, Runtime::Docker) else {
            panic!("a create event names a container");
        };
        assert_eq!(meta.id.as_ref(), ID);
        assert_eq!(meta.name.as_deref(), Some("shop-web-1"));
        assert_eq!(meta.image.as_deref(), Some("local/busybox:1"));
        assert_eq!(meta.compose_project.as_deref(), Some("shop"));
        assert_eq!(meta.compose_service.as_deref(), Some("web"));
        assert_eq!(meta.runtime, Some(Runtime::Docker));
    }

    #[test]
    fn removal_and_other_events() {
        let removed = Some(ContainerEvent::Removed(Arc::from(ID)));
        assert_eq!(from_event(event("destroy", &[]), Runtime::Docker), removed);
        assert_eq!(from_event(event("remove", &[]), Runtime::Podman), removed);
        assert_eq!(
            from_event(event("exec_start: sh", &[]), Runtime::Docker),
            None
        );
        let mut network = event("create", &[]);
        network.typ = Some(EventMessageTypeEnum::NETWORK);
        assert_eq!(from_event(network, Runtime::Docker), None);
    }

    #[test]
    fn kubelet_labels_name_the_pod() {
        let summary = ContainerSummary {
            id: Some(ID.into()),
            names: Some(vec!["/k8s_web_shop-7d9f_prod_0b4d_0".into()]),
            image: Some("nginx:1.25".into()),
            labels: Some(HashMap::from([
                ("io.kubernetes.pod.name".into(), "shop-7d9f".into()),
                ("io.kubernetes.pod.namespace".into(), "prod".into()),
                ("io.kubernetes.pod.uid".into(), "0b4d".into()),
            ])),
            ..Default::default()
        };
        let meta = from_summary(summary, Runtime::Docker).expect("a listed container");
        assert_eq!(meta.name.as_deref(), Some("k8s_web_shop-7d9f_prod_0b4d_0"));
        assert_eq!(meta.pod_name.as_deref(), Some("shop-7d9f"));
        assert_eq!(meta.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(meta.pod_uid.as_deref(), Some("0b4d"));
    }
}
