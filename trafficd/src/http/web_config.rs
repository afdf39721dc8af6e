//! `--web.config.file`: TLS and basic auth, in the format Prometheus exporters share
//! (node_exporter, the exporter toolkit), so one file serves every exporter of a host.
//!
//! Only what trafficd implements is accepted: a key it would ignore (client certificates,
//! cipher suites) is refused at start rather than silently not enforced.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use rustls::ServerConfig;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFiles>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// What the web config file asks for, checked and loaded; the default is plain HTTP for all.
#[derive(Default)]
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and checks `path`: the certificate and key load, every hash is bcrypt.
    pub fn load(path: &Path) -> Result<WebConfig> {
        let bad = |problem: String| Error::WebConfig {
            path: path.to_path_buf(),
            problem: problem.replace('\n', "; "),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        // An empty file (or one holding only comments) asks for nothing, as in the toolkit.
        let file: File = if text
            .trim()
            .lines()
            .all(|l| l.trim().starts_with('#') || l.trim().is_empty())
        {
            File::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?
        };
        for (user, hash) in &file.basic_auth_users {
            bcrypt::HashParts::from_str(hash).map_err(|e| {
                bad(format!(
                    "basic_auth_users.{user} is not a bcrypt hash ({e}); make one with \
                     `htpasswd -nBC 10 {user}`"
                ))
            })?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|files| tls_config(&base.join(files.cert_file), &base.join(files.key_file)))
            .transpose()
            .map_err(bad)?;
        Ok(WebConfig {
            tls,
            users: file.basic_auth_users,
        })
    }
}

/// A rustls server config from PEM files (relative paths are relative to the web config
/// file, as in the toolkit).
fn tls_config(cert: &Path, key: &Path) -> std::result::Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {} holds no PEM certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", key.display()))?;
    // ring is the provider already built for the Kubernetes client; rustls deprecates it only
    // for lacking post-quantum key exchange, which Prometheus does not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig> {
        let dir = std::env::temp_dir().join(format!("trafficd-webconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}.yml",
            text.len() * 31 + text.as_bytes()[0] as usize
        ));
        std::fs::write(&path, text).unwrap();
        let loaded = WebConfig::load(&path);
        let _ = std::fs::remove_file(&path);
        loaded
    }

    #[test]
    fn basic_auth_users_load() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let config = load(&format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.users.get("alice"), Some(&hash));
        assert!(load("# nothing\n").unwrap().users.is_empty());
    }

    #[test]
    fn bad_files_name_the_problem() {
        for (text, says) in [
            (
                "basic_auth_users:\n  alice: plain\n",
                "basic_auth_users.alice is not a bcrypt hash",
            ),
            (
                "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
                "cert_file /nonexistent.crt",
            ),
            (
                "tls_server_config:\n  cert_file: a.crt\n",
                "missing field `key_file`",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "unknown field `client_ca_file`",
            ),
            ("basic_auth_users: [1\n", "web config"),
        ] {
            let err = load(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains(says) || (says == "web config" && err.contains("web config")),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
