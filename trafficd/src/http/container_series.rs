//! The per-container series of /metrics: lifetime bytes of the cgroups each container owns,
//! labelled by what a dashboard filters on, the busiest few hundred kept and the rest summed
//! into one `other` series so that a host churning containers cannot grow the scrape.

use std::collections::HashMap;

use crate::{enrich::containers::OwnerKind, stats::Store};

/// Containers with a series of their own; the metrics' configuration may override it.
pub const DEFAULT_LIMIT: usize = 500;

/// One series' labels, in this order: container, image, runtime, pod, namespace ("" where
/// they do not apply).
pub type ContainerLabels = [String; 5];

/// (labels, transmitted, received) per container, busiest first, at most `limit` of them and
/// an `other` series for the rest. Containers that share every label (a name reused after a
/// removal) share a series.
pub fn container_series(store: &Store, limit: usize) -> Vec<(ContainerLabels, u64, u64)> {
    let mut sums: HashMap<ContainerLabels, (u64, u64)> = HashMap::new();
    for (_, entry) in store.cgroups.entries() {
        let owner = &entry.meta.owner;
        if owner.kind != OwnerKind::Container {
            continue;
        }
        let text = |s: Option<&str>| s.unwrap_or_default().to_string();
        let labels = [
            text(owner.display_name()),
            text(owner.image.as_deref()),
            text(owner.runtime.map(|r| r.as_str())),
            text(owner.pod_name.as_deref()),
            text(owner.namespace.as_deref()),
        ];
        let sum = sums.entry(labels).or_default();
        sum.0 += entry.lifetime.tx_bytes;
        sum.1 += entry.lifetime.rx_bytes;
    }
    let mut series: Vec<(ContainerLabels, u64, u64)> =
        sums.into_iter().map(|(l, (tx, rx))| (l, tx, rx)).collect();
    // Busiest first; ties by labels so the cut is the same at every scrape.
    series.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then_with(|| a.0.cmp(&b.0)));
    if series.len() > limit {
        let rest = series.split_off(limit);
        let (tx, rx) = rest.iter().fold((0, 0), |(tx, rx), s| (tx + s.1, rx + s.2));
        let other = [
            "other".to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        series.push((other, tx, rx));
    }
    series
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use trafficd_common::Traffic;

    use super::*;
    use crate::{
        enrich::containers::{ContainerDirectory, ContainerMeta, Runtime, Writer},
        stats::CgroupInfo,
    };

    #[test]
    fn busiest_containers_get_series_the_rest_is_other() {
        let writer = Writer::default();
        let id = |i: u64| format!("{i:064x}");
        for i in 0..4 {
            writer.upsert_container(ContainerMeta {
                id: id(i).into(),
                name: Some(format!("c{i}").into()),
                image: Some("local/busybox:1".into()),
                runtime: Some(Runtime::Docker),
                ..ContainerMeta::default()
            });
        }
        let mut directory = ContainerDirectory::new(&writer, vec![]);
        let now = Instant::now();
        let mut store = Store::new(now);
        let mut deltas: Vec<(u64, Traffic, CgroupInfo)> = (0..4)
            .map(|i| {
                let path = format!("/docker/{}", id(i));
                let info = CgroupInfo {
                    owner: directory.owner(&path),
                    path: path.into(),
                };
                let traffic = Traffic {
                    tx_bytes: 100 * (i + 1),
                    rx_bytes: 1,
                    ..Traffic::default()
                };
                (i, traffic, info)
            })
            .collect();
        let host = CgroupInfo {
            path: "/".into(),
            owner: directory.owner("/"),
        };
        deltas.push((
            9,
            Traffic {
                tx_bytes: 10_000,
                ..Traffic::default()
            },
            host,
        ));
        store.cgroups.record(now, Duration::from_secs(1), deltas);

        let series = container_series(&store, 2);
        let names: Vec<(&str, u64, u64)> = series
            .iter()
            .map(|(labels, tx, rx)| (labels[0].as_str(), *tx, *rx))
            .collect();
        assert_eq!(names, [("c3", 400, 1), ("c2", 300, 1), ("other", 300, 2)]);
        assert_eq!(series[0].0[1..3], ["local/busybox:1", "docker"]);
        assert_eq!(series[2].0[1..], ["", "", "", ""]);
    }
}
