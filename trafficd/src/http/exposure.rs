//! GET /exposure: the latest exposure pass, with the peers named now.

use std::time::Instant;

use crate::{
    api::{ExposedListener, ExposedPeer, ExposureResponse, PeerItem},
    enrich::peers::PeerNames,
    exposure::{Exposure, Protocol, Report},
};

pub fn exposure(report: &Report, peers: &PeerNames) -> ExposureResponse {
    let latest = report.read();
    ExposureResponse {
        age_seconds: latest
            .at
            .map(|at| Instant::now().saturating_duration_since(at).as_secs()),
        listeners: latest.exposures.iter().map(|e| item(e, peers)).collect(),
    }
}

fn item(exposure: &Exposure, peers: &PeerNames) -> ExposedListener {
    let listener = &exposure.listener;
    ExposedListener {
        protocol: match listener.protocol {
            Protocol::Tcp => "tcp".into(),
            Protocol::Udp => "udp".into(),
        },
        listen: listener.addr.to_string(),
        pid: listener.pid,
        comm: listener.comm.as_deref().map(str::to_string),
        container: listener.container.as_deref().map(str::to_string),
        internal_port: exposure.internal_port,
        rx_bytes: exposure.bytes,
        peers: exposure
            .peers
            .iter()
            .map(|p| ExposedPeer {
                peer: PeerItem::from(&peers.lookup(p.ip)),
                rx_bytes: p.bytes,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
            })
            .collect(),
    }
}
