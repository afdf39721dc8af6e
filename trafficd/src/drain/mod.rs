//! The drain: every interval, read the kernel maps, turn counters into deltas, attribute them
//! to processes, record them in the store, and delete entries of closed sockets once their last
//! bytes were read.

use std::{
    os::fd::BorrowedFd,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

// Fx hashing: the drain hashes every flow and socket every interval; SipHash's DoS resistance
// buys nothing for keys that come from the kernel.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use trafficd_common::{
    FlowKey, Loss, Payload, SocketOwner, SocketProcessKey, Traffic, BURST_FLOWS,
};

use crate::{
    attribution::{main_claimant, split, Claimant},
    enrich::{
        processes::{KernelView, ProcessKey},
        Sources,
    },
    kernel::{KernelLogger, KernelMaps, MapEntries, MovedFlows, Woken},
    stats::{CgroupInfo, FlowInfo, Forgotten, Store, Talker, TalkerInfo, NO_HINT},
    tracker::Tracker,
};

#[derive(Clone, Debug)]
pub struct DrainConfig {
    /// Entries idle this many drains are deleted from the kernel maps even if no close was
    /// seen (sockets of hosts without the sock_release hook, flows of long-idle sockets).
    pub idle_expiry_drains: u32,
    /// Groups idle this long leave the API and /metrics.
    pub retention: Duration,
}

/// How often the kernel's per-process records are checked for processes that exited.
const PROCESS_GC_EVERY: Duration = Duration::from_secs(30);
/// Drains that read the overflow roll-ups after the kernel last reported a full flow map: the
/// loss is counted just before the bytes are added, so the bytes may land after the drain
/// that saw the count.
const OVERFLOW_READS: u32 = 3;
/// An overflow roll-up's entries: socket cookie or cgroup id, and its running total.
type Overflow = Vec<(u64, Traffic)>;

/// How often idle entries are looked for. Idle expiry and retention are minutes: scanning every
/// flow for them at every drain is work for nothing.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

pub struct Drainer {
    maps: KernelMaps,
    config: DrainConfig,
    sockets: Tracker<u64, Traffic>,
    /// The flows that moved in a drain, and their store slots: buffers kept between drains.
    moved: MovedFlows,
    hints: Vec<u32>,
    /// Kernel flow slot -> the flow's slot in the store's flow dimension, as last seen.
    flow_hints: Vec<u32>,
    /// The descriptions of the flows of the sockets active at the last drain.
    flow_infos: HashMap<(u64, u64), Arc<FlowInfo>>,
    cgroups: Tracker<u64, Traffic>,
    /// Flow-map-full events seen, and drains left that read the overflow roll-ups for them.
    flow_map_full: u64,
    overflow_reads: u32,
    payloads: Tracker<SocketProcessKey, Payload>,
    /// Pairs part of whose payload waited on a CPU at the last read: see `forget_payloads`.
    waiting_payloads: HashSet<SocketProcessKey>,
    /// Sockets seen released at the previous drain: deleted at this one if idle since.
    closing: HashSet<u64>,
    sources: Sources,
    last_drain: Instant,
    /// FLOW_CLAIMS when the last drain began: new flows since then wait to be read.
    claims_read: u64,
    last_process_gc: Instant,
    last_housekeeping: Instant,
    exited_at_last_gc: HashSet<u32>,
    kernel_logger: Option<KernelLogger>,
}

/// One drain's per-socket view: who used each active socket.
struct SocketUse {
    payloads: HashMap<u64, Vec<(u32, Payload)>>,
    owners: HashMap<u64, SocketOwner>,
    found: HashMap<u64, u32>,
}

impl SocketUse {
    fn owner(&self, cookie: u64) -> Option<u32> {
        self.owners
            .get(&cookie)
            .map(|o| o.tgid)
            .or_else(|| self.found.get(&cookie).copied())
    }

    fn payloads(&self, cookie: u64) -> &[(u32, Payload)] {
        self.payloads.get(&cookie).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Drainer {
    pub fn new(
        maps: KernelMaps,
        kernel_logger: Option<KernelLogger>,
        cgroup_root: PathBuf,
        config: DrainConfig,
    ) -> Drainer {
        let now = Instant::now();
        Drainer {
            maps,
            config,
            sockets: Tracker::default(),
            moved: MovedFlows::default(),
            hints: Vec::new(),
            flow_hints: Vec::new(),
            flow_infos: HashMap::default(),
            cgroups: Tracker::default(),
            flow_map_full: 0,
            overflow_reads: 0,
            payloads: Tracker::default(),
            waiting_payloads: HashSet::default(),
            closing: HashSet::default(),
            sources: Sources::new(cgroup_root),
            last_drain: now,
            claims_read: 0,
            last_process_gc: now,
            last_housekeeping: now,
            exited_at_last_gc: HashSet::default(),
            kernel_logger,
        }
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
        self.maps.flow_claims().wrapping_sub(self.claims_read) >= BURST_FLOWS
    }

    pub fn drain(&mut self, store: &RwLock<Store>) {
        if let Some(logger) = &mut self.kernel_logger {
            logger.flush();
        }
        let started = Instant::now();
        // A syscall each: only when the debug line below is written.
        let cpu_started = tracing::enabled!(tracing::Level::DEBUG).then(thread_cpu_time);
        let length = started.duration_since(self.last_drain);
        self.last_drain = started;

        // Before the flows are read: a flow claimed after this is read now or at the next drain.
        self.claims_read = self.maps.flow_claims();
        // Closed marks first: every byte a socket moved before its release is then already in
        // the counters read below.
        let closed: HashSet<u64> = self.maps.closed().into_iter().collect();
        let mut moved = std::mem::take(&mut self.moved);
        self.maps.count_tcp_sockets();
        self.maps.take_flows(&mut moved);
        let (socket_overflow, cgroup_overflow) = self.read_overflow();
        let payloads = self.maps.socket_processes();
        let entries = MapEntries {
            sockets: socket_overflow.len(),
            flows: self.maps.live_flows(),
            cgroups: cgroup_overflow.len(),
            socket_processes: payloads.entries,
            closed: closed.len(),
        };
        let read = started.elapsed();
        let socket_overflow = self.sockets.observe(socket_overflow);
        let cgroup_overflow = self.cgroups.observe(cgroup_overflow);
        self.waiting_payloads = payloads.waiting;
        let payload_deltas = self.payloads.observe(payloads.totals);
        // Socket and cgroup totals: their flows, plus what overflowed a full flow map. The
        // flows come summed by (socket, cgroup), a few entries however many flows.
        let by_socket = &moved.by_socket;
        let socket_deltas = roll_up(
            by_socket
                .iter()
                .map(|((cookie, _), t)| (*cookie, *t))
                .chain(socket_overflow),
        );
        let cgroup_deltas = roll_up(
            by_socket
                .iter()
                .map(|((_, cgroup), t)| (*cgroup, *t))
                .chain(cgroup_overflow),
        );
        let counted = socket_deltas
            .iter()
            .fold(Traffic::default(), |sum, (_, t)| sum.add(t));

        let observed = started.elapsed();
        let usage = self.socket_use(&socket_deltas, &moved, payload_deltas);
        let used = started.elapsed();
        let talkers = self.attribute(&socket_deltas, &usage);
        let attributed = started.elapsed();
        let flow_infos = self.flow_infos(by_socket, &usage, &talkers.1);
        let flowed = started.elapsed();
        let cgroup_records: Vec<_> = cgroup_deltas
            .into_iter()
            .map(|(id, delta)| {
                (
                    id,
                    delta,
                    CgroupInfo {
                        path: self.sources.cgroup_owner(id),
                    },
                )
            })
            .collect();

        let active: HashSet<u64> = socket_deltas.iter().map(|(c, _)| *c).collect();
        let forgotten = self.forget_closed(&closed, &active);
        let housekeeping = self.last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY;
        if housekeeping {
            self.last_housekeeping = started;
            self.forget_idle();
        }
        self.maps.delete_forgotten_flows();
        self.collect_exited_processes();

        let forgot = started.elapsed();
        let mut store = store.write().unwrap_or_else(|e| e.into_inner());
        store.processes.record(started, length, talkers.0);
        store.cgroups.record(started, length, cgroup_records);
        // A slot that holds a new flow says nothing about where the flow is in the store.
        for &slot in &moved.claimed {
            *hint_at(&mut self.flow_hints, slot) = NO_HINT;
        }
        let mut hints = std::mem::take(&mut self.hints);
        hints.clear();
        hints.extend(
            moved
                .slots
                .iter()
                .map(|&s| self.flow_hints.get(s as usize).copied().unwrap_or(NO_HINT)),
        );
        let flow_records = moved
            .traffic
            .iter()
            .zip(&moved.sockets)
            .map(|(delta, &socket)| (*delta, &flow_infos[socket as usize]));
        store
            .flows
            .record_hinted(started, length, flow_records, &mut hints, |i| moved.key(i));
        let expired = if housekeeping {
            store.expire(started, self.config.retention)
        } else {
            Forgotten::default()
        };
        let health = &mut store.health;
        health.drains += 1;
        health.losses = self.maps.losses();
        health.map_fill = self.maps.fill(&entries);
        if health.map_memory.is_empty() {
            health.map_memory = self.maps.memory().to_vec();
        }
        health.kernel_totals = health.kernel_totals.add(&counted);
        health.sockets_forgotten += forgotten;
        health.tcp_swept_namespaces = self.maps.tcp_swept_namespaces();
        health.last_drain = started.elapsed();
        health.longest_drain = health.longest_drain.max(health.last_drain);
        drop(store);
        for (&slot, &hint) in moved.slots.iter().zip(&hints) {
            *hint_at(&mut self.flow_hints, slot) = hint;
        }
        self.drop_stale_hints(&expired.flow_slots);
        self.moved = moved;
        self.hints = hints;
        // CPU time beside the wall time: on a busy host the drain thread waits for a CPU, and
        // only the CPU time says what the drain itself cost.
        if let Some(cpu_started) = cpu_started {
            let cpu = thread_cpu_time().saturating_sub(cpu_started);
            tracing::debug!(?read, ?observed, ?used, ?attributed, ?flowed, ?forgot, total = ?started.elapsed(), ?cpu, "drain");
        }

        if !expired.processes.is_empty() {
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
    }

    /// Drops the hints that name store slots just freed: a later flow may get the slot.
    fn drop_stale_hints(&mut self, freed: &[u32]) {
        if freed.is_empty() {
            return;
        }
        let freed: HashSet<u32> = freed.iter().copied().collect();
        for hint in &mut self.flow_hints {
            if freed.contains(hint) {
                *hint = NO_HINT;
            }
        }
    }

    /// The overflow roll-ups, read only while they can hold bytes: reading a hash map walks all
    /// of its buckets, which was most of an idle drain's cost, and the roll-ups are empty
    /// unless the flow map was ever full.
    fn read_overflow(&mut self) -> (Overflow, Overflow) {
        let full = self.maps.loss_events(Loss::FlowMapFull);
        if full != self.flow_map_full {
            self.flow_map_full = full;
            self.overflow_reads = OVERFLOW_READS;
        }
        let holding = !self.sockets.is_empty() || !self.cgroups.is_empty();
        if self.overflow_reads == 0 && !holding {
            return (Vec::new(), Vec::new());
        }
        self.overflow_reads = self.overflow_reads.saturating_sub(1);
        (self.maps.socket_overflow(), self.maps.cgroup_overflow())
    }

    /// Who used each socket that moved bytes in this interval.
    fn socket_use(
        &mut self,
        socket_deltas: &[(u64, Traffic)],
        flows: &MovedFlows,
        payload_deltas: Vec<(SocketProcessKey, Payload)>,
    ) -> SocketUse {
        // Every socket in `flows` is in `socket_deltas` too (its roll-up).
        let mut payloads: HashMap<u64, Vec<(u32, Payload)>> = HashMap::default();
        for (key, payload) in payload_deltas {
            payloads
                .entry(key.cookie)
                .or_default()
                .push((key.tgid, payload));
        }
        let active: HashSet<u64> = socket_deltas
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| *c != 0)
            .collect();
        // The owner only takes what no payload explains: a socket whose processes moved payload
        // in this interval needs no lookup (a syscall each; thousands a second under churn).
        let owners: HashMap<u64, SocketOwner> = active
            .iter()
            .filter(|c| !moved_payload(payloads.get(c)))
            .filter_map(|&c| self.maps.owner(c).map(|o| (c, o)))
            .collect();
        // Sockets with bytes but no process seen using them. The handshake of an accepted TCP
        // connection is counted on the listener and on the request socket, which no process
        // reads or writes: they share their 5-tuple with the accepted socket, whose owner is
        // known. What that does not explain, /proc may.
        let mut unknown: Vec<u64> = active
            .iter()
            .copied()
            .filter(|c| !owners.contains_key(c) && !payloads.contains_key(c))
            .collect();
        let mut found = same_tuple_owners(&unknown, flows, &owners, &payloads);
        unknown.retain(|c| !found.contains_key(c));
        if !unknown.is_empty() {
            let all = self.sources.socket_owners(&unknown);
            found.extend(
                unknown
                    .iter()
                    .filter_map(|c| all.get(c).map(|o| (*c, o.pid))),
            );
        }
        SocketUse {
            payloads,
            owners,
            found,
        }
    }

    /// Per-process deltas, and the talker each tgid became.
    #[allow(clippy::type_complexity)]
    fn attribute(
        &mut self,
        socket_deltas: &[(u64, Traffic)],
        usage: &SocketUse,
    ) -> (
        Vec<(Talker, Traffic, TalkerInfo)>,
        HashMap<u32, (Talker, TalkerInfo)>,
    ) {
        let mut by_claimant: HashMap<Claimant, Traffic> = HashMap::default();
        for (cookie, wire) in socket_deltas {
            let parts = split(*cookie, wire, usage.payloads(*cookie), usage.owner(*cookie));
            for (claimant, part) in parts {
                let sum = by_claimant.entry(claimant).or_default();
                *sum = sum.add(&part);
            }
        }
        let mut identities: HashMap<u32, (Talker, TalkerInfo)> = HashMap::default();
        let mut records = Vec::with_capacity(by_claimant.len());
        for (claimant, traffic) in by_claimant {
            let (talker, info) = self.talker(claimant, usage, &mut identities);
            records.push((talker, traffic, info));
        }
        (records, identities)
    }

    fn talker(
        &mut self,
        claimant: Claimant,
        usage: &SocketUse,
        identities: &mut HashMap<u32, (Talker, TalkerInfo)>,
    ) -> (Talker, TalkerInfo) {
        let tgid = match claimant {
            Claimant::Unattributed(reason) => {
                let info = TalkerInfo {
                    comm: Arc::from(format!("[{}]", reason.label())),
                    reason: Some(reason),
                    ..TalkerInfo::default()
                };
                return (Talker::Unattributed(reason), info);
            }
            Claimant::Process(tgid) => tgid,
        };
        if let Some(known) = identities.get(&tgid) {
            return known.clone();
        }
        let maps = &self.maps;
        let (key, talker_info) = self.sources.process(tgid, || {
            maps.process(tgid)
                .or_else(|| usage.owners.values().find(|o| o.tgid == tgid).copied())
                .map(|owner| KernelView::from(&owner))
        });
        let identity = (Talker::Process(key), talker_info);
        identities.insert(tgid, identity.clone());
        identity
    }

    /// Who the flows belong to, for each (socket, cgroup) of `sockets`, in that order. Sockets
    /// are far fewer than flows (an unconnected UDP socket can have 100k peers): who a flow
    /// belongs to is worked out once per socket. A socket's description is the same allocation
    /// as at the last drain while it does not change, so that the store sees 100k flows
    /// unchanged by comparing pointers.
    fn flow_infos(
        &mut self,
        sockets: &[((u64, u64), Traffic)],
        usage: &SocketUse,
        identities: &HashMap<u32, (Talker, TalkerInfo)>,
    ) -> Vec<Arc<FlowInfo>> {
        let previous = std::mem::take(&mut self.flow_infos);
        let infos: Vec<Arc<FlowInfo>> = sockets
            .iter()
            .map(|&((cookie, cgroup), _)| {
                let info = self.flow_info(cookie, cgroup, usage, identities);
                match previous.get(&(cookie, cgroup)) {
                    Some(same) if **same == info => same.clone(),
                    _ => Arc::new(info),
                }
            })
            .collect();
        self.flow_infos = sockets
            .iter()
            .zip(&infos)
            .map(|((socket, _), info)| (*socket, info.clone()))
            .collect();
        infos
    }

    fn flow_info(
        &mut self,
        cookie: u64,
        cgroup_id: u64,
        usage: &SocketUse,
        identities: &HashMap<u32, (Talker, TalkerInfo)>,
    ) -> FlowInfo {
        let claimant = main_claimant(cookie, usage.payloads(cookie), usage.owner(cookie));
        let (pid, comm) = match claimant {
            Claimant::Process(tgid) => match identities.get(&tgid) {
                Some((_, info)) => (tgid, info.comm.clone()),
                None => (tgid, Arc::from("")),
            },
            Claimant::Unattributed(reason) => (0, Arc::from(format!("[{}]", reason.label()))),
        };
        let cgroup = self.sources.cgroup_owner(cgroup_id);
        FlowInfo { pid, comm, cgroup }
    }

    /// Deletes the entries of sockets released before the previous drain that stayed idle
    /// since (no byte in `active`), so that their last bytes (FIN, final ACKs) were read first.
    /// Returns how many.
    fn forget_closed(&mut self, closed: &HashSet<u64>, active: &HashSet<u64>) -> u64 {
        let ready: HashSet<u64> = closed
            .iter()
            .copied()
            .filter(|c| self.closing.contains(c) && !active.contains(c))
            .collect();
        self.closing = closed - &ready;
        self.forget_sockets(&ready);
        ready.len() as u64
    }

    /// Deletes entries idle for `idle_expiry_drains`, closed or not: their counts were read, and
    /// a socket that wakes up again simply gets a fresh entry.
    fn forget_idle(&mut self) {
        let expiry = self.config.idle_expiry_drains;
        let idle_sockets = self.sockets.idle_for(expiry);
        self.maps.forget_socket_overflow(&idle_sockets);
        for cookie in &idle_sockets {
            self.sockets.forget(cookie);
        }
        self.maps.forget_idle_flows(expiry);
        let idle_payloads = self.payloads.idle_for(expiry);
        self.forget_payloads(idle_payloads);
        for id in self.cgroups.idle_for(expiry) {
            self.maps.forget_cgroup(id);
            self.cgroups.forget(&id);
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
            .filter(|c| self.sockets.idle(c).is_some())
            .collect();
        self.maps.forget_sockets(&closed, &overflowed);
        for cookie in &closed {
            self.sockets.forget(cookie);
            self.sources.forget_socket(*cookie);
        }
        self.maps
            .forget_flows_of(&|cookie| cookies.contains(&cookie));
        let payloads: Vec<SocketProcessKey> = self
            .payloads
            .keys()
            .filter(|k| cookies.contains(&k.cookie))
            .filter(|k| self.payloads.idle(k).is_some_and(|i| i >= 1))
            .copied()
            .collect();
        self.forget_payloads(payloads);
    }

    /// Deletes the payload entries of `keys`, but for those part of whose payload waited on a
    /// CPU at this drain's read: deleted, that payload would be counted again as new when the
    /// kernel moves it into SOCKET_PROCESSES.
    fn forget_payloads(&mut self, mut keys: Vec<SocketProcessKey>) {
        keys.retain(|k| !self.waiting_payloads.contains(k));
        self.maps.forget_socket_processes(&keys);
        for key in &keys {
            self.payloads.forget(key);
        }
    }

    /// Removes the kernel's records of processes that exited at least one GC round ago: every
    /// drain in between had the chance to read them.
    fn collect_exited_processes(&mut self) {
        if self.last_process_gc.elapsed() < PROCESS_GC_EVERY {
            return;
        }
        self.last_process_gc = Instant::now();
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
            .intersection(&self.exited_at_last_gc)
            .copied()
            .collect();
        self.maps.forget_processes(&gone);
        self.exited_at_last_gc = exited;
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

fn moved_payload(payloads: Option<&Vec<(u32, Payload)>>) -> bool {
    payloads.is_some_and(|p| {
        p.iter()
            .any(|(_, p)| p.sent_bytes > 0 || p.received_bytes > 0)
    })
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

/// Owners of `unknown` sockets found through another socket with the same 5-tuple in this
/// drain's flows.
fn same_tuple_owners(
    unknown: &[u64],
    flows: &MovedFlows,
    owners: &HashMap<u64, SocketOwner>,
    payloads: &HashMap<u64, Vec<(u32, Payload)>>,
) -> HashMap<u64, u32> {
    if unknown.is_empty() {
        return HashMap::default();
    }
    type Tuple = (u8, u8, [u8; 16], u16, [u8; 16], u16);
    let tuple = |k: &FlowKey| -> Tuple {
        (
            k.family,
            k.protocol,
            k.local_addr,
            k.local_port,
            k.remote_addr,
            k.remote_port,
        )
    };
    let owner_of = |cookie: u64| {
        owners.get(&cookie).map(|o| o.tgid).or_else(|| {
            payloads
                .get(&cookie)
                .and_then(|p| p.first())
                .map(|(t, _)| *t)
        })
    };
    // The unknown sockets' tuples are few; every flow is checked against them, so that no
    // table of all flows is built (100k flows a drain).
    let unknown: HashSet<u64> = unknown.iter().copied().collect();
    let mut wanted: HashMap<Tuple, Vec<u64>> = HashMap::default();
    for (k, _) in flows.iter().filter(|(k, _)| unknown.contains(&k.cookie)) {
        wanted.entry(tuple(&k)).or_default().push(k.cookie);
    }
    let mut found = HashMap::default();
    for (k, _) in flows.iter() {
        let Some(cookies) = wanted.get(&tuple(&k)) else {
            continue;
        };
        if let Some(tgid) = owner_of(k.cookie) {
            for cookie in cookies {
                found.entry(*cookie).or_insert(tgid);
            }
        }
    }
    found
}

/// The hint kept for kernel flow slot `slot`, growing `hints` to hold it.
fn hint_at(hints: &mut Vec<u32>, slot: u32) -> &mut u32 {
    let slot = slot as usize;
    if slot >= hints.len() {
        hints.resize(slot + 1, NO_HINT);
    }
    &mut hints[slot]
}

/// Sums traffic by key. Parts of one key mostly come one after the other (a socket's flows):
/// each run is summed before it is hashed.
fn roll_up<K: std::hash::Hash + Eq + Copy>(
    parts: impl Iterator<Item = (K, Traffic)>,
) -> Vec<(K, Traffic)> {
    let mut sums: HashMap<K, Traffic> = HashMap::default();
    let mut add = |key, traffic: Traffic| {
        let sum = sums.entry(key).or_default();
        *sum = sum.add(&traffic);
    };
    let mut run: Option<(K, Traffic)> = None;
    for (key, traffic) in parts {
        match &mut run {
            Some((k, sum)) if *k == key => *sum = sum.add(&traffic),
            _ => {
                if let Some((k, sum)) = run.replace((key, traffic)) {
                    add(k, sum);
                }
            }
        }
    }
    if let Some((k, sum)) = run {
        add(k, sum);
    }
    sums.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_sums_runs_and_scattered_parts_alike() {
        let tx = |bytes| Traffic {
            tx_bytes: bytes,
            tx_packets: 1,
            ..Traffic::default()
        };
        let parts = [(1, 10), (1, 20), (2, 5), (1, 1), (3, 7), (3, 7), (2, 100)];
        let mut sums = roll_up(parts.iter().map(|&(k, b)| (k, tx(b))));
        sums.sort_by_key(|(k, _)| *k);
        let expected = |bytes, packets| Traffic {
            tx_bytes: bytes,
            tx_packets: packets,
            ..Traffic::default()
        };
        assert_eq!(
            sums,
            vec![
                (1, expected(31, 3)),
                (2, expected(105, 2)),
                (3, expected(14, 2))
            ]
        );
        assert!(roll_up(std::iter::empty::<(u8, Traffic)>()).is_empty());
    }
}
