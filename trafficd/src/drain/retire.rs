//! Retiring: deleting the kernel entries of closed and idle sockets once their last bytes were
//! read, the records of exited processes, and what the drain keeps about groups the store
//! expired.

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet as HashSet;
use trafficd_common::SocketProcessKey;

use super::{counters::Counts, Drainer};
use crate::{
    enrich::processes::ProcessKey,
    stats::{Forgotten, Talker},
};

/// How often the kernel's per-process records are checked for processes that exited.
const PROCESS_GC_EVERY: Duration = Duration::from_secs(30);
/// How often idle entries are looked for. Idle expiry and retention are minutes: scanning every
/// flow for them at every drain is work for nothing.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

/// What retiring remembers from drain to drain.
pub(super) struct Retirement {
    /// Sockets seen released at the previous drain: deleted at this one if idle since.
    closing: HashSet<u64>,
    last_process_gc: Instant,
    last_housekeeping: Instant,
    exited_at_last_gc: HashSet<u32>,
}

impl Retirement {
    pub fn new(now: Instant) -> Retirement {
        Retirement {
            closing: HashSet::default(),
            last_process_gc: now,
            last_housekeeping: now,
            exited_at_last_gc: HashSet::default(),
        }
    }
}

/// What one drain's retiring did.
pub(super) struct Retired {
    /// Sockets whose entries were deleted after they closed.
    pub sockets: u64,
    /// Whether idle entries were looked for: the store's idle groups are expired then too.
    pub housekeeping: bool,
}

impl Drainer {
    /// Deletes what the kernel no longer needs to count, now that `counts` were read.
    pub(super) fn retire(&mut self, counts: &Counts, started: Instant) -> Retired {
        let active: HashSet<u64> = counts.socket_deltas.iter().map(|(c, _)| *c).collect();
        let sockets = self.forget_closed(&counts.closed, &active);
        let housekeeping = self.retirement.last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY;
        if housekeeping {
            self.retirement.last_housekeeping = started;
            self.forget_idle();
        }
        self.maps.delete_forgotten_flows();
        self.collect_exited_processes();
        Retired {
            sockets,
            housekeeping,
        }
    }

    /// Forgets the processes of talkers the store expired.
    pub(super) fn forget_expired(&mut self, expired: Forgotten) {
        if expired.processes.is_empty() {
            return;
        }
        let gone: HashSet<ProcessKey> = expired
            .processes
            .into_iter()
            .filter_map(|t| match t {
                Talker::Process(key) => Some(key),
                Talker::Unattributed(_) => None,
            })
            .collect();
        self.sources.forget_processes(|key| gone.contains(key));
    }

    /// Deletes the entries of sockets released before the previous drain that stayed idle
    /// since (no byte in `active`), so that their last bytes (FIN, final ACKs) were read first.
    /// Returns how many.
    fn forget_closed(&mut self, closed: &HashSet<u64>, active: &HashSet<u64>) -> u64 {
        let closing = &self.retirement.closing;
        let ready: HashSet<u64> = closed
            .iter()
            .copied()
            .filter(|c| closing.contains(c) && !active.contains(c))
            .collect();
        self.retirement.closing = closed - &ready;
        self.forget_sockets(&ready);
        ready.len() as u64
    }

    /// Deletes entries idle for `idle_expiry_drains`, closed or not: their counts were read, and
    /// a socket that wakes up again simply gets a fresh entry.
    fn forget_idle(&mut self) {
        let expiry = self.config.idle_expiry_drains;
        let idle_sockets = self.counters.sockets.idle_for(expiry);
        self.maps.forget_socket_overflow(&idle_sockets);
        for cookie in &idle_sockets {
            self.counters.sockets.forget(cookie);
        }
        self.maps.forget_idle_flows(expiry);
        let idle_payloads = self.counters.payloads.idle_for(expiry);
        self.forget_payloads(idle_payloads);
        for id in self.counters.cgroups.idle_for(expiry) {
            self.maps.forget_cgroup(id);
            self.counters.cgroups.forget(&id);
        }
    }

    /// Deletes the socket entries of the closed sockets `cookies`, and their flow and payload
    /// entries that did not move in this drain (all of them, unless a packet raced the close).
    fn forget_sockets(&mut self, cookies: &HashSet<u64>) {
        if cookies.is_empty() {
            return;
        }
        let closed: Vec<u64> = cookies.iter().copied().collect();
        // Only sockets the overflow roll-up ever had bytes for have an entry there.
        let overflowed: Vec<u64> = closed
            .iter()
            .copied()
            .filter(|c| self.counters.sockets.idle(c).is_some())
            .collect();
        self.maps.forget_sockets(&closed, &overflowed);
        for cookie in &closed {
            self.counters.sockets.forget(cookie);
            self.sources.forget_socket(*cookie);
        }
        self.maps
            .forget_flows_of(&|cookie| cookies.contains(&cookie));
        let payloads = &self.counters.payloads;
        let idle_payloads: Vec<SocketProcessKey> = payloads
            .keys()
            .filter(|k| cookies.contains(&k.cookie))
            .filter(|k| payloads.idle(k).is_some_and(|i| i >= 1))
            .copied()
            .collect();
        self.forget_payloads(idle_payloads);
    }

    /// Deletes the payload entries of `keys`, but for those part of whose payload waited on a
    /// CPU at this drain's read: deleted, that payload would be counted again as new when the
    /// kernel moves it into SOCKET_PROCESSES.
    fn forget_payloads(&mut self, mut keys: Vec<SocketProcessKey>) {
        keys.retain(|k| !self.counters.waiting_payloads.contains(k));
        self.maps.forget_socket_processes(&keys);
        for key in &keys {
            self.counters.payloads.forget(key);
        }
    }

    /// Removes the kernel's records of processes that exited at least one GC round ago: every
    /// drain in between had the chance to read them.
    fn collect_exited_processes(&mut self) {
        if self.retirement.last_process_gc.elapsed() < PROCESS_GC_EVERY {
            return;
        }
        self.retirement.last_process_gc = Instant::now();
        // One listing of /proc, not a lookup per recorded process.
        let Some(running) = running_processes() else {
            return;
        };
        let exited: HashSet<u32> = self
            .maps
            .recorded_processes()
            .into_iter()
            .filter(|tgid| !running.contains(tgid))
            .collect();
        let gone: Vec<u32> = exited
            .intersection(&self.retirement.exited_at_last_gc)
            .copied()
            .collect();
        self.maps.forget_processes(&gone);
        self.retirement.exited_at_last_gc = exited;
    }
}

/// Tgids of the processes in /proc; `None` when it cannot be listed (then nothing is taken
/// for exited).
fn running_processes() -> Option<HashSet<u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}
