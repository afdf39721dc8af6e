//! trafficd's drains as the bench sees them through /healthz: during a run, and while the flows
//! of a generator that ended leave the flow map.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::api::Api;
use super::{measure, proc};

/// The drains while the flows of a generator that ended leave FLOWS (a process with 100k flows
/// exiting): each one's duration, polled every 250 ms until the `held` flows are gone (FLOWS
/// holds a hundredth of them, or stopped losing them by the hundredth after it started: other
/// flows of the host stay), or for a minute; and whether it got there.
pub fn ending_drains(api: std::net::SocketAddr, held: f64) -> Result<(Vec<u64>, bool)> {
    let mut drains_us = Vec::new();
    let mut before: Option<f64> = None;
    let mut leaving = false;
    let mut api = Api::new(api);
    let mut last = api.healthz()?.drains;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        proc::sleep(Duration::from_millis(250))?;
        let health = api.healthz()?;
        if health.drains == last {
            continue;
        }
        last = health.drains;
        drains_us.push(health.last_drain_microseconds);
        let (text, _) = api.get("/metrics", Duration::from_secs(30))?;
        let samples = measure::parse_metrics(&text);
        let entries = measure::metric_sum(&samples, "trafficd_map_entries", &[("map", "FLOWS")]);
        let step = held / 100.0;
        let left = before.is_some_and(|b| b - entries >= step);
        if entries <= step || (leaving && !left) {
            return Ok((drains_us, true));
        }
        leaving |= left;
        before = Some(entries);
    }
    Ok((drains_us, false))
}

/// What the /healthz poller saw during a run.
#[derive(Default)]
pub struct Sampled {
    /// `last_drain_microseconds` of every drain.
    pub drains_us: Vec<u64>,
    /// The slowest GET /healthz: the API waits for a drain in progress.
    pub slowest_healthz_ms: f64,
}

/// Polls /healthz every 250 ms during a run: the duration of every drain, and how long the
/// API took to answer.
pub struct DrainSampler {
    stop: Arc<AtomicBool>,
    sampled: Arc<Mutex<Sampled>>,
    thread: thread::JoinHandle<()>,
}

impl DrainSampler {
    pub fn start(api: std::net::SocketAddr) -> DrainSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let sampled = Arc::new(Mutex::new(Sampled::default()));
        let thread = {
            let (stop, sampled) = (stop.clone(), sampled.clone());
            thread::spawn(move || {
                let mut api = Api::new(api);
                let mut last_drains = api.healthz().map(|h| h.drains).unwrap_or(0);
                // Bounded: the run itself is bounded, and so is this loop (one hour at most).
                let deadline = Instant::now() + Duration::from_secs(3600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(250));
                    let Ok((health, took)) = api.healthz_timed() else {
                        continue;
                    };
                    let Ok(mut sampled) = sampled.lock() else {
                        break;
                    };
                    let took_ms = took.as_secs_f64() * 1e3;
                    sampled.slowest_healthz_ms = sampled.slowest_healthz_ms.max(took_ms);
                    if health.drains > last_drains {
                        last_drains = health.drains;
                        sampled.drains_us.push(health.last_drain_microseconds);
                    }
                }
            })
        };
        DrainSampler {
            stop,
            sampled,
            thread,
        }
    }

    pub fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let mut sampled = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *sampled)
    }
}
