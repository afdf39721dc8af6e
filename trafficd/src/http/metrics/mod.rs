//! GET /metrics: OpenMetrics text, encoded at scrape time from the store.
//!
//! Per-owner families (process, cgroup) go through [`bounded::Bounded`]: at most
//! `--metrics-max-series` series each, whatever the number of processes behind them; the
//! daemon's own metrics are in `health`.

mod bounded;
mod classic;
#[cfg(test)]
mod encode_bench;
mod exposure;
mod health;
mod interfaces;
mod owners;
mod programs;
mod remotes;

pub use exposure::ExposureCollector;
pub use programs::Programs;
pub use remotes::RemoteCollector;

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::stats::Store;

/// How per-owner series are named and bounded.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Add `pid` to the per-process identity.
    pub per_pid: bool,
    /// Series per family at most, `other` included.
    pub max_series: usize,
    /// A series whose owners have been idle this long ends.
    pub retention: Duration,
    pub programs: Programs,
}

struct StoreCollector {
    store: Arc<RwLock<Store>>,
    programs: Programs,
    owners: Mutex<owners::Owners>,
    /// How long the previous scrape took to encode, reported by the next.
    last_scrape: Mutex<Duration>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

pub fn registry(store: Arc<RwLock<Store>>, config: &MetricsConfig) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector {
        store,
        programs: config.programs.clone(),
        owners: Mutex::new(owners::Owners::new(config)),
        last_scrape: Mutex::new(Duration::ZERO),
    }));
    registry
}

/// The exposition as OpenMetrics text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The exposition in the classic Prometheus text format.
pub fn encode_classic(registry: &Registry) -> Result<String, std::fmt::Error> {
    encode(registry).map(|text| classic::from_openmetrics(&text))
}

type Labels = Vec<(&'static str, String)>;

fn counters<V: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let started = Instant::now();
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        {
            let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            owners.update(&store, started);
            owners.encode(&mut encoder)?;
        }
        health::unattributed(&mut encoder, &store)?;
        interfaces::encode(&mut encoder, &store)?;
        health::kernel(&mut encoder, &store)?;
        health::maps(&mut encoder, &store.health)?;
        health::drains(&mut encoder, &store.health, started)?;
        drop(store);
        programs::encode(&mut encoder, &self.programs)?;
        let mut last_scrape = self.last_scrape.lock().unwrap_or_else(|e| e.into_inner());
        health::daemon(&mut encoder, *last_scrape)?;
        *last_scrape = started.elapsed();
        Ok(())
    }
}
