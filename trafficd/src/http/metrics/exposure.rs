//! trafficd_exposed_listener_receive_bytes_total: what external peers sent to each exposed
//! listener, one series per (comm, container, port), bounded like the per-owner families so
//! that a scan of many ports cannot grow it without end.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use super::{
    bounded::{Bounded, Bytes, Sighting},
    counters, Labels, MetricsConfig,
};
use crate::exposure::{ListenerKey, Report};

const OTHER: &str = "[other]";

pub struct ExposureCollector {
    report: Report,
    series: Mutex<Bounded<ListenerKey>>,
}

impl std::fmt::Debug for ExposureCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExposureCollector")
    }
}

impl ExposureCollector {
    pub fn new(report: Report, config: &MetricsConfig) -> ExposureCollector {
        ExposureCollector {
            report,
            series: Mutex::new(Bounded::new(config.max_series, config.retention)),
        }
    }
}

impl Collector for ExposureCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        {
            let latest = self.report.read();
            series.update(
                Instant::now(),
                latest.totals.iter().map(|(key, total)| Sighting {
                    owner: *key,
                    identity: vec![
                        ("comm", total.comm.clone()),
                        ("container", total.container.clone()),
                        ("port", Arc::from(total.port.to_string())),
                    ],
                    lifetime: Bytes {
                        tx: 0,
                        rx: total.rx_bytes,
                    },
                    last_active: total.last_active,
                }),
            );
        }
        let mut all: Vec<(Labels, u64)> = series
            .named()
            .map(|(identity, bytes)| {
                let labels = identity.iter().map(|(n, v)| (*n, v.to_string())).collect();
                (labels, bytes.rx)
            })
            .collect();
        all.sort_unstable();
        if series.other().rx > 0 {
            all.push((vec![("comm", OTHER.to_string())], series.other().rx));
        }
        counters(
            &mut encoder,
            "trafficd_exposed_listener_receive_bytes",
            "IP bytes external peers sent to a listening socket (see /exposure); a listener on \
             an --internal-ports port receiving here is reachable from outside",
            all,
        )
    }
}
