//! The drain: every interval, read the kernel maps, turn counters into deltas, attribute them
//! to processes, record them in the store, and delete entries of closed sockets once their last
//! bytes were read.
//!
//! [`Drainer::drain`] runs the phases in order, one module each: `counters` (read the maps,
//! take deltas), owner resolution (`attribution::owners`), `attribute` (split and describe),
//! `retire` (delete what the kernel no longer needs) and `record` (write the store, with the
//! names engines gave since, `rename`).

mod attribute;
mod counters;
mod forwarded;
mod interfaces;
mod record;
mod rename;
mod retire;

use std::{
    os::fd::BorrowedFd,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

// Fx hashing: the drain hashes every flow and socket every interval; SipHash's DoS resistance
// buys nothing for keys that come from the kernel.
use rustc_hash::FxHashMap as HashMap;
use trafficd_common::BURST_FLOWS;

pub use self::interfaces::{InterfaceConfig, InterfacePhase};
use self::{attribute::Attributed, counters::Counters, record::FlowHints, retire::Retirement};
use crate::{
    enrich::{containers::ContainerDirectory, Sources},
    kernel::{KernelLogger, KernelMaps, Woken},
    stats::{FlowInfo, Store},
};

#[derive(Clone, Debug)]
pub struct DrainConfig {
    /// Entries idle this many drains are deleted from the kernel maps even if no close was
    /// seen (sockets of hosts without the sock_release hook, flows of long-idle sockets).
    pub idle_expiry_drains: u32,
    /// Groups idle this long leave the API and /metrics.
    pub retention: Duration,
}

pub struct Drainer {
    maps: KernelMaps,
    config: DrainConfig,
    counters: Counters,
    sources: Sources,
    /// The descriptions of the flows of the sockets active at the last drain.
    flow_infos: HashMap<(u64, u64), Arc<FlowInfo>>,
    hints: FlowHints,
    retirement: Retirement,
    last_drain: Instant,
    kernel_logger: Option<KernelLogger>,
    /// Links and forwarded traffic, when the daemon counts them.
    interfaces: Option<InterfacePhase>,
}

impl Drainer {
    pub fn new(
        maps: KernelMaps,
        kernel_logger: Option<KernelLogger>,
        cgroup_root: PathBuf,
        containers: ContainerDirectory,
        config: DrainConfig,
    ) -> Drainer {
        let now = Instant::now();
        Drainer {
            maps,
            config,
            counters: Counters::default(),
            sources: Sources::new(cgroup_root, containers),
            flow_infos: HashMap::default(),
            hints: FlowHints::default(),
            retirement: Retirement::new(now),
            last_drain: now,
            kernel_logger,
            interfaces: None,
        }
    }

    /// Counts interfaces and forwarded traffic at every drain from now on.
    pub fn count_interfaces(&mut self, phase: InterfacePhase) {
        self.interfaces = Some(phase);
    }

    /// Sleeps until the next drain is due: at `due`, or sooner when a burst of new flows
    /// waits. `false` once `stop` was raised.
    pub fn wait_for_drain(&mut self, due: Instant, stop: BorrowedFd<'_>) -> bool {
        loop {
            match self.maps.wait_for_burst(due, stop) {
                Woken::Stop => return false,
                Woken::Burst if self.burst_waiting() => return true,
                Woken::Deadline if Instant::now() >= due => return true,
                Woken::Burst | Woken::Deadline => {}
            }
        }
    }

    /// Whether [`BURST_FLOWS`] new flows wait to be read: worth a drain before the interval
    /// ends. Such a drain counts as a drain for idle expiry: during a burst, idle flows are
    /// retired sooner (they take a new slot if they wake), never lost.
    fn burst_waiting(&self) -> bool {
        self.maps
            .flow_claims()
            .wrapping_sub(self.counters.claims_read)
            >= BURST_FLOWS
    }

    /// One drain, phase by phase.
    pub fn drain(&mut self, store: &RwLock<Store>) {
        if let Some(logger) = &mut self.kernel_logger {
            logger.flush();
        }
        let started = Instant::now();
        // A syscall each: only when the debug line below is written.
        let cpu_started = tracing::enabled!(tracing::Level::DEBUG).then(thread_cpu_time);
        let length = started.duration_since(self.last_drain);
        self.last_drain = started;

        let reading = self.read_maps();
        let read = started.elapsed();
        let mut counts = self.deltas(reading);
        let observed = started.elapsed();

        let usage = self.resolve_owners(&mut counts);
        let used = started.elapsed();

        let (talkers, identities) = self.attribute(&counts.socket_deltas, &usage);
        let attributed = started.elapsed();
        let flow_infos = self.describe_flows(&counts.moved.by_socket, &usage, &identities);
        let flowed = started.elapsed();
        let cgroups = self.describe_cgroups(std::mem::take(&mut counts.cgroup_deltas));

        let retired = self.retire(&counts, started);
        let forgot = started.elapsed();

        let attributed_deltas = Attributed {
            talkers,
            cgroups,
            flow_infos,
        };
        let expired = self.record(store, started, length, &counts, attributed_deltas, &retired);
        self.counters.moved = counts.moved;
        if let Some(interfaces) = &mut self.interfaces {
            let sources = &mut self.sources;
            interfaces.drain(store, started, length, &mut |path| {
                sources.owner_of_cgroup_path(path)
            });
        }
        // CPU time beside the wall time: on a busy host the drain thread waits for a CPU, and
        // only the CPU time says what the drain itself cost.
        if let Some(cpu_started) = cpu_started {
            let cpu = thread_cpu_time().saturating_sub(cpu_started);
            tracing::debug!(?read, ?observed, ?used, ?attributed, ?flowed, ?forgot, total = ?started.elapsed(), ?cpu, "drain");
        }
        self.forget_expired(expired);
    }
}

/// CPU time this thread has used (zero if the clock cannot be read).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current thread's CPU clock into `now`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
