//! Pod UID -> name, namespace, labels from the Kubernetes API server, for the pods of this node:
//! list once, then watch from the list's resourceVersion; a watch that ends is resumed, one the
//! server no longer can resume (410 Gone) starts over with a list. Outside a cluster this is off.
//!
//! The client is blocking (ureq, which the CLI already uses) on its own thread: the watch is one
//! long-lived response read line by line, and nothing here is on the drain's path.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use rustls_pki_types::{pem::PemObject, CertificateDer};
use serde::Deserialize;

use super::{PodMeta, Writer};
use crate::error::Error;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The server ends each watch after this long; the client then resumes it.
const WATCH_SECONDS: u64 = 300;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// How to reach the API server from inside the cluster.
#[derive(Debug, Clone)]
pub struct InCluster {
    /// `https://host:port`, or `http://` in tests.
    pub base_url: String,
    /// Re-read at every request: the kubelet rotates projected tokens.
    pub token_path: PathBuf,
    /// `None` for plain HTTP.
    pub ca_path: Option<PathBuf>,
    /// Only this node's pods are listed and watched.
    pub node_name: String,
}

impl InCluster {
    /// The standard in-cluster setup: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's
    /// token and CA, and the node from `NODE_NAME` (the downward API) or the host name.
    /// `None` outside a cluster.
    pub fn from_environment() -> Option<InCluster> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let account = PathBuf::from(SERVICE_ACCOUNT);
        let token_path = account.join("token");
        if !token_path.exists() {
            return None;
        }
        let node_name = std::env::var("NODE_NAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())?
            .trim()
            .to_string();
        // An IPv6 service address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Some(InCluster {
            base_url: format!("https://{host}:{port}"),
            token_path,
            ca_path: Some(account.join("ca.crt")),
            node_name,
        })
    }

    fn pods_url(&self) -> String {
        format!(
            "{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            self.base_url, self.node_name
        )
    }

    fn error(&self, action: &'static str, reason: impl ToString) -> Error {
        Error::Kubernetes {
            action,
            url: self.base_url.clone(),
            reason: reason.to_string(),
        }
    }

    fn agent(&self) -> Result<ureq::Agent, Error> {
        let builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            // A watch is silent while nothing changes; the server ends it after WATCH_SECONDS.
            .timeout_read(Duration::from_secs(WATCH_SECONDS + 30));
        let Some(ca_path) = &self.ca_path else {
            return Ok(builder.build());
        };
        let tls = self.tls_config(ca_path)?;
        Ok(builder.tls_config(Arc::new(tls)).build())
    }

    /// TLS that trusts the cluster's CA only.
    fn tls_config(&self, ca_path: &PathBuf) -> Result<rustls::ClientConfig, Error> {
        let ca_error = |e: &dyn std::fmt::Display| {
            self.error("trust", format!("CA {}: {e}", ca_path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| ca_error(&e))? {
            let cert = cert.map_err(|e| ca_error(&e))?;
            roots.add(cert).map_err(|e| ca_error(&e))?;
        }
        // ring is the provider ureq 2 already builds; rustls deprecates it only for lacking
        // post-quantum key exchange, which an in-cluster API server does not require.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ca_error(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }

    fn get(&self, agent: &ureq::Agent, url: &str) -> Result<ureq::Response, Box<ureq::Error>> {
        let token = std::fs::read_to_string(&self.token_path).unwrap_or_default();
        let request = agent.get(url);
        let request = match token.trim() {
            "" => request,
            token => request.set("Authorization", &format!("Bearer {token}")),
        };
        request.call().map_err(Box::new)
    }
}

#[derive(Deserialize)]
struct PodList {
    metadata: ListMeta,
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Pod {
    metadata: ObjectMeta,
}

#[derive(Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

/// One line of a watch response.
#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

impl Pod {
    fn into_meta(self) -> PodMeta {
        let m = self.metadata;
        PodMeta {
            uid: m.uid.into(),
            name: m.name.into(),
            namespace: m.namespace.into(),
            labels: Arc::new(m.labels),
        }
    }
}

/// Runs for the life of the daemon: list, watch, resume, relist. An API server that cannot be
/// reached is said once, then retried quietly with backoff.
pub fn run(cluster: &InCluster, writer: &Writer) {
    let mut retry = FIRST_RETRY;
    let mut said = false;
    loop {
        match sync(cluster, writer, &mut || {
            retry = FIRST_RETRY;
            said = false;
        }) {
            Ok(()) => continue,
            Err(err) if !said => {
                tracing::warn!("{err}");
                said = true;
            }
            Err(err) => tracing::debug!("{err}"),
        }
        std::thread::sleep(retry);
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// One list, then watches resumed from the last resourceVersion until the server says the
/// version is gone (`Ok`: the caller lists again) or the server cannot be reached (`Err`).
/// `listed` is called after a successful list.
fn sync(cluster: &InCluster, writer: &Writer, listed: &mut dyn FnMut()) -> Result<(), Error> {
    let agent = cluster.agent()?;
    let mut version = list(cluster, &agent, writer)?;
    listed();
    loop {
        match watch(cluster, &agent, writer, &version)? {
            Some(next) => version = next,
            None => return Ok(()),
        }
    }
}

/// Lists this node's pods into the directory; returns the list's resourceVersion.
fn list(cluster: &InCluster, agent: &ureq::Agent, writer: &Writer) -> Result<String, Error> {
    let response = cluster
        .get(agent, &cluster.pods_url())
        .map_err(|e| cluster.error("list", e))?;
    let list: PodList = response.into_json().map_err(|e| cluster.error("list", e))?;
    let pods = list.items.into_iter().map(Pod::into_meta).collect();
    writer.replace_pods(pods);
    Ok(list.metadata.resource_version)
}

/// Follows one watch response to its end. `Some(version)` to resume from, `None` when the
/// version is too old (410 Gone) and a fresh list is needed.
fn watch(
    cluster: &InCluster,
    agent: &ureq::Agent,
    writer: &Writer,
    version: &str,
) -> Result<Option<String>, Error> {
    let url = format!(
        "{}&watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={version}",
        cluster.pods_url()
    );
    let response = match cluster.get(agent, &url) {
        Ok(response) => response,
        Err(err) if matches!(*err, ureq::Error::Status(410, _)) => return Ok(None),
        Err(err) => return Err(cluster.error("watch", err)),
    };
    let mut version = version.to_string();
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.map_err(|e| cluster.error("watch", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: WatchEvent =
            serde_json::from_str(&line).map_err(|e| cluster.error("watch", e))?;
        match apply(writer, event) {
            Applied::Version(v) if !v.is_empty() => version = v,
            Applied::Version(_) => {}
            Applied::Gone => return Ok(None),
        }
    }
    Ok(Some(version))
}

enum Applied {
    /// The resourceVersion the event carried.
    Version(String),
    /// The server can no longer resume from our version.
    Gone,
}

fn apply(writer: &Writer, event: WatchEvent) -> Applied {
    if event.kind == "ERROR" {
        // A Status object; 410 (Expired) is the one that asks for a relist, and any other
        // error is handled the same way: a fresh list is always correct.
        return Applied::Gone;
    }
    let Ok(pod) = serde_json::from_value::<Pod>(event.object) else {
        return Applied::Version(String::new());
    };
    let version = pod.metadata.resource_version.clone();
    match event.kind.as_str() {
        "ADDED" | "MODIFIED" => writer.upsert_pod(pod.into_meta()),
        "DELETED" => writer.remove_pod(&pod.metadata.uid),
        _ => {} // BOOKMARK: only the version.
    }
    Applied::Version(version)
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
