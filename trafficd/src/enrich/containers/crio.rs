//! CRI-O's inspect API: plain HTTP on its unix socket (`GET /info`, `GET /containers/<id>`),
//! the same calls `crictl` and cAdvisor make. It has no list and no events: CRI-O's containers
//! are looked up as their cgroups (`crio-<id>.scope`) appear, which the cgroup watch does
//! at once, so a container is named while it runs.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use http_body_util::{BodyExt, Empty};
use hyper::{body::Bytes, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

use super::{
    cgroup_path::is_container_id,
    runtime_client::{Events, RuntimeClient},
    ContainerMeta, Runtime,
};

/// A request that takes longer than this is treated as an engine that went away.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// An answer larger than this is not CRI-O's.
const MAX_ANSWER: usize = 1 << 20;

pub struct CrioClient {
    socket: std::path::PathBuf,
}

/// The fields of CRI-O's container info that name a container.
#[derive(Deserialize)]
struct ContainerInfo {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: HashMap<String, String>,
}

impl CrioClient {
    /// One GET on a connection of its own: lookups are rare (one per new container).
    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = Request::get(path)
                .header("host", "crio")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

impl RuntimeClient for CrioClient {
    /// Asks for `/info`: a socket that is not CRI-O's fails here, once.
    async fn connect(socket: &Path, _runtime: Runtime) -> Result<CrioClient, String> {
        if !socket.exists() {
            return Err(format!("Socket not found: {}", socket.display()));
        }
        let client = CrioClient {
            socket: socket.to_path_buf(),
        };
        match client.get("/info").await? {
            (StatusCode::OK, _) => Ok(client),
            (status, _) => Err(format!("GET /info answered {status}")),
        }
    }

    async fn list(&self) -> Result<Vec<ContainerMeta>, String> {
        Ok(Vec::new())
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, String> {
        if !is_container_id(id) {
            return Ok(None);
        }
        match self.get(&format!("/containers/{id}")).await? {
            (StatusCode::OK, body) => {
                let info: ContainerInfo = serde_json::from_slice(&body)
                    .map_err(|e| format!("GET /containers/{id}: {e}"))?;
                Ok(Some(meta(id, info)))
            }
            // CRI-O answers an unknown id with 404 (recent) or 500 (older releases).
            (StatusCode::NOT_FOUND | StatusCode::INTERNAL_SERVER_ERROR, _) => Ok(None),
            (status, _) => Err(format!("GET /containers/{id} answered {status}")),
        }
    }

    async fn events(&self, _since: i64) -> Result<Events, String> {
        Ok(Box::pin(futures_util::stream::pending()))
    }
}

/// CRI-O's `name` is the kubelet's `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`: the
/// container's own name is the label, where the kubelet set it.
fn meta(id: &str, info: ContainerInfo) -> ContainerMeta {
    let name = info
        .labels
        .get("io.kubernetes.container.name")
        .filter(|n| !n.is_empty())
        .cloned()
        .or_else(|| Some(info.name).filter(|n| !n.is_empty()));
    let meta = ContainerMeta {
        id: Arc::from(id),
        name: name.map(Arc::from),
        image: Some(info.image).filter(|i| !i.is_empty()).map(Arc::from),
        runtime: Some(Runtime::CriO),
        ..ContainerMeta::default()
    };
    meta.with_labels(info.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[cfg(test)]
#[path = "crio_tests.rs"]
mod tests;
