//! The client against CRI-O's inspect API as it answers (`testdata/crio-container.json` has
//! the fields and shape of CRI-O's container info), served over HTTP on a unix socket: CRI-O
//! does not run on the test machines.

use std::{net::Shutdown, path::PathBuf};

use axum::{extract::Path as UrlPath, http::StatusCode, routing::get, Router};

use super::*;

const ANSWER: &str = include_str!("testdata/crio-container.json");
const ID: &str = "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e";

/// Serves `/info` and `/containers/<ID>`; every other id is unknown (404).
async fn recorded_crio() -> (PathBuf, tokio::task::JoinHandle<()>) {
    let socket = std::env::temp_dir().join(format!("trafficd-crio-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the socket");
    let app = Router::new()
        .route(
            "/info",
            get(|| async { r#"{"storage_driver":"overlay","cgroup_driver":"systemd"}"# }),
        )
        .route(
            "/containers/{id}",
            get(|UrlPath(id): UrlPath<String>| async move {
                if id == ID {
                    (StatusCode::OK, ANSWER)
                } else {
                    (StatusCode::NOT_FOUND, "can't find the container with id")
                }
            }),
        );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (socket, server)
}

#[tokio::test]
async fn inspect_names_the_container_and_its_pod() {
    let (socket, server) = recorded_crio().await;
    let client = CrioClient::connect(&socket, Runtime::CriO)
        .await
        .expect("connect");
    let meta = client.inspect(ID).await.expect("an answer").expect("known");
    assert_eq!(meta.id.as_ref(), ID);
    assert_eq!(meta.name.as_deref(), Some("web"));
    assert_eq!(
        meta.image.as_deref(),
        Some("registry.example.com/shop/web:2.14.1")
    );
    assert_eq!(meta.runtime, Some(Runtime::CriO));
    assert_eq!(meta.pod_name.as_deref(), Some("shop-7d9f8c6b5-x2x4q"));
    assert_eq!(meta.pod_namespace.as_deref(), Some("prod"));
    assert_eq!(
        meta.pod_uid.as_deref(),
        Some("0b4d6c1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e")
    );
    let unknown = ID.replace('3', "4");
    assert_eq!(client.inspect(&unknown).await, Ok(None));
    assert!(client.list().await.expect("no list").is_empty());
    server.abort();
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test]
async fn a_socket_that_is_not_cri_o_fails_at_connect() {
    let missing = std::env::temp_dir().join("trafficd-no-crio.sock");
    let err = CrioClient::connect(&missing, Runtime::CriO)
        .await
        .err()
        .expect("no socket");
    assert!(err.contains("not found"), "{err}");
    // Something listens, and closes every connection at once.
    let socket = std::env::temp_dir().join(format!("trafficd-mute-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let closer = std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    });
    assert!(CrioClient::connect(&socket, Runtime::CriO).await.is_err());
    let _ = closer.join();
    let _ = std::fs::remove_file(&socket);
}
