//! The client against recorded API server responses (a pod list and a watch stream, in
//! `testdata/`) served over HTTP on loopback: no cluster can run on the test machines.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    thread::JoinHandle,
};

use super::*;
use crate::enrich::containers::ContainerDirectory;

const LIST: &str = include_str!("testdata/pods-list.json");
const WATCH: &str = include_str!("testdata/pods-watch.jsonl");
const VPN_UID: &str = "7c1e2f4a-9b3d-4e8f-a1c2-3d4e5f6a7b8c";
const EXPORTER_UID: &str = "e2d4c6b8-0a1f-4e3d-9c5b-7a9f1e3d5c7b";
const HAPROXY_UID: &str = "3a5c7e9b-1d2f-4a6b-8c0d-e1f2a3b4c5d6";
const CONTAINER: &str = "4b6f0e8a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f";

/// Serves, in order: the list, the watch (then closes it, as the server does at its timeout),
/// and 410 Gone for the resumed watch. Returns the request lines and Authorization headers.
fn recorded_api_server() -> (String, JoinHandle<Vec<(String, String)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = std::thread::spawn(move || {
        let responses = [
            ("200 OK", LIST),
            ("200 OK", WATCH),
            (
                "410 Gone",
                r#"{"kind":"Status","code":410,"reason":"Expired"}"#,
            ),
        ];
        let mut seen = Vec::new();
        for (status, body) in responses {
            let (stream, _) = listener.accept().expect("accept");
            seen.push(answer(stream, status, body));
        }
        seen
    });
    (base, server)
}

fn answer(mut stream: TcpStream, status: &str, body: &str) -> (String, String) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let mut authorization = String::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        if header.trim().is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("Authorization: ") {
            authorization = value.trim().to_string();
        }
    }
    // No Content-Length: the body ends when the connection closes, as a watch does.
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body.as_bytes()).expect("write body");
    (request_line.trim().to_string(), authorization)
}

fn cluster(base_url: String, token_path: PathBuf) -> InCluster {
    InCluster {
        base_url,
        token_path,
        ca_path: None,
        node_name: "worker-3".into(),
    }
}

#[test]
fn list_then_watch_names_the_pods_of_this_node() {
    let token = scratch("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.recorded\n").expect("write token");
    let (base, server) = recorded_api_server();
    let writer = Writer::default();
    let mut listed = 0;

    sync(&cluster(base, token.clone()), &writer, &mut || listed += 1).expect("sync");
    let requests = server.join().expect("server thread");
    std::fs::remove_file(&token).ok();

    assert_eq!(listed, 1);
    let selector = "/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-3";
    assert_eq!(requests[0].0, format!("GET {selector} HTTP/1.1"));
    assert!(requests[1].0.contains("watch=1"), "{:?}", requests[1]);
    assert!(
        requests[1].0.contains("resourceVersion=48213377"),
        "{:?}",
        requests[1]
    );
    // Resumed from the bookmark's version, the last line of the watch.
    assert!(
        requests[2].0.contains("resourceVersion=48213511"),
        "{:?}",
        requests[2]
    );
    for (_, authorization) in &requests {
        assert_eq!(authorization, "Bearer eyJhbGciOiJSUzI1NiJ9.recorded");
    }

    let mut directory = ContainerDirectory::new(&writer, vec![]);
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CONTAINER}.scope",
        VPN_UID.replace('-', "_")
    );
    let vpn = directory.owner(&path);
    assert_eq!(vpn.pod_name.as_deref(), Some("openvpn-5c7d8b9f6-x2kqp"));
    assert_eq!(vpn.namespace.as_deref(), Some("vpn"));
    assert_eq!(vpn.pod_uid.as_deref(), Some(VPN_UID));
    let labels = vpn.pod_labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/name"], "openvpn");

    // Added then modified during the watch: the labels of the last version.
    let haproxy = directory.owner(&format!("/kubepods/pod{HAPROXY_UID}/{CONTAINER}"));
    assert_eq!(haproxy.pod_name.as_deref(), Some("haproxy-64b8f7d9c-qr7mz"));
    assert_eq!(haproxy.namespace.as_deref(), Some("edge"));
    assert_eq!(
        haproxy.pod_labels.as_ref().map(|l| l["tier"].as_str()),
        Some("public")
    );

    // Deleted during the watch: only the UID from the path is left.
    let exporter = directory.owner(&format!("/kubepods/besteffort/pod{EXPORTER_UID}"));
    assert_eq!(exporter.pod_name, None);
    assert_eq!(exporter.display_name(), Some(EXPORTER_UID));
}

#[test]
fn unreachable_api_server_is_an_error_that_names_it() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let writer = Writer::default();
    let err = sync(
        &cluster(base.clone(), "/nonexistent".into()),
        &writer,
        &mut || {},
    )
    .expect_err("nothing listens");
    let message = err.to_string();
    assert!(message.contains("cannot list pods"), "{message}");
    assert!(message.contains(&base), "{message}");
}

#[test]
fn no_cluster_no_client() {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        assert!(InCluster::from_environment().is_none());
    }
}

/// A scratch path unique to this process and call.
fn scratch(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("trafficd-k8s-{}-{n}-{tag}", std::process::id()))
}
