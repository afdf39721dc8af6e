//! Typed handles on the kernel maps, and the few operations the drain needs.
//!
//! Per-CPU values are summed here; callers only ever see totals.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, HashMap, IterableMap, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::ProgramFd,
    Ebpf, Pod,
};
use trafficd_common::{
    maps as names, Loss, Payload, RecentUse, SocketOwner, SocketProcessKey, Traffic,
};

use super::{
    batch,
    bursts::{Bursts, Woken},
    control::Control,
    flow_slots::{FlowSlots, MovedFlows},
    recent_use::{self, PayloadRead},
    tcp_sockets::TcpSockets,
    MapSizes,
};
use crate::error::{Error, Result};

pub struct KernelMaps {
    sockets: PerCpuHashMap<MapData, u64, Traffic>,
    flows: FlowSlots,
    flow_claims: Array<MapData, u64>,
    bursts: Bursts,
    cgroups: PerCpuHashMap<MapData, u64, Traffic>,
    owners: HashMap<MapData, u64, SocketOwner>,
    processes: HashMap<MapData, u32, SocketOwner>,
    socket_processes: PerCpuHashMap<MapData, SocketProcessKey, Payload>,
    recent_use: Array<MapData, RecentUse>,
    closed: HashMap<MapData, u64, u64>,
    losses: PerCpuArray<MapData, u64>,
    /// The sweep of established TCP connections, when they are counted from their counters.
    tcp_sockets: Option<TcpSockets>,
    /// The daemon's words of the programs' control array.
    control: Control,
    sizes: MapSizes,
    memory: Vec<MapMemory>,
}

/// Kernel memory one map holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MapMemory {
    pub map: &'static str,
    pub bytes: u64,
}

/// How full one map is, for the self-metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

/// Something that can be summed across CPUs.
pub trait Summable: Pod + Default {
    fn plus(&self, other: &Self) -> Self;
}

impl Summable for Traffic {
    fn plus(&self, other: &Self) -> Self {
        self.add(other)
    }
}

impl Summable for Payload {
    fn plus(&self, other: &Self) -> Self {
        self.add(other)
    }
}

fn sum<V: Summable>(values: &PerCpuValues<V>) -> V {
    values.iter().fold(V::default(), |acc, v| acc.plus(v))
}

/// Takes the maps out of the loaded object, noting the kernel memory each one holds.
struct Taker<'a> {
    ebpf: &'a mut Ebpf,
    memory: Vec<MapMemory>,
}

impl Taker<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map> {
        let map = self.ebpf.take_map(name).ok_or(Error::MissingMap(name))?;
        if let Some(bytes) = map_data(&map).and_then(memlock) {
            self.memory.push(MapMemory { map: name, bytes });
        }
        Ok(map)
    }

    fn take<T>(&mut self, name: &'static str) -> Result<T>
    where
        T: TryFrom<Map, Error = aya::maps::MapError>,
    {
        T::try_from(self.map(name)?).map_err(|source| Error::Map { name, source })
    }

    fn take_data(&mut self, name: &'static str) -> Result<MapData> {
        match self.map(name)? {
            Map::Array(data) => Ok(data),
            _ => Err(Error::Map {
                name,
                source: aya::maps::MapError::InvalidMapType { map_type: 0 },
            }),
        }
    }
}

fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::PerCpuArray(data)
        | Map::PerCpuHashMap(data)
        | Map::Queue(data) => Some(data),
        _ => None,
    }
}

/// The memory the kernel charges for a map (its preallocated entries included), from the
/// `memlock` line of its fdinfo.
fn memlock(map: &MapData) -> Option<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|bytes| bytes.trim().parse().ok())
}

impl KernelMaps {
    pub(super) fn take(
        ebpf: &mut Ebpf,
        sizes: MapSizes,
        hand_back: Option<ProgramFd>,
        tcp_sweep: Option<(OwnedFd, Duration)>,
    ) -> Result<KernelMaps> {
        let mut taker = Taker {
            ebpf,
            memory: Vec::new(),
        };
        let flows = FlowSlots::new(
            taker.take(names::FLOWS)?,
            taker.take(names::FREE_FLOW_SLOTS)?,
            hand_back,
            taker.take(names::FRESH_FLOW_SLOTS)?,
            taker.take_data(names::FLOW_COUNTERS)?,
            sizes.flows,
        )
        .map_err(Error::MapCounters)?;
        let mut control = Control::new(taker.take(names::CONTROL)?);
        let tcp_sockets = tcp_sweep.and_then(|(link, every)| {
            TcpSockets::start(link, every, &mut control)
                .map_err(|err| {
                    tracing::warn!(
                        "cannot sweep TCP connections ({err}): every TCP packet is counted one \
                         by one, which costs a bulk transfer more CPU"
                    )
                })
                .ok()
        });
        Ok(KernelMaps {
            flow_claims: taker.take(names::FLOW_CLAIMS)?,
            bursts: Bursts::new(taker.take(names::FLOW_BURSTS)?),
            sockets: taker.take(names::SOCKETS)?,
            flows,
            cgroups: taker.take(names::CGROUPS)?,
            owners: taker.take(names::OWNERS)?,
            processes: taker.take(names::PROCESSES)?,
            socket_processes: taker.take(names::SOCKET_PROCESSES)?,
            recent_use: taker.take(names::RECENT_USE)?,
            closed: taker.take(names::CLOSED)?,
            losses: taker.take(names::LOSSES)?,
            tcp_sockets,
            control,
            sizes,
            memory: taker.memory,
        })
    }

    /// Kernel memory held by each map: fixed at load, since every map is preallocated.
    pub fn memory(&self) -> &[MapMemory] {
        &self.memory
    }

    /// The overflow roll-up: bytes of sockets whose flows did not fit in FLOWS.
    pub fn socket_overflow(&self) -> Vec<(u64, Traffic)> {
        read_per_cpu(&self.sockets)
    }

    /// When TCP is counted from the connections' counters: starts a new report epoch for the
    /// busy connections and sweeps the quiet ones when due. Call before `take_flows`.
    pub fn count_tcp_sockets(&mut self) {
        if let Some(sockets) = &mut self.tcp_sockets {
            sockets.drain(&mut self.control);
        }
    }

    /// Network namespaces the last TCP sweep ran in; `None` when TCP is counted per packet.
    pub fn tcp_swept_namespaces(&self) -> Option<usize> {
        self.tcp_sockets.as_ref().map(TcpSockets::swept_namespaces)
    }

    /// Every flow that moved since the last call, with what it moved (not a running total), and
    /// the kernel's slot number of each: stable while the flow lives, reused after.
    pub fn take_flows(&mut self, moved: &mut MovedFlows) {
        self.flows.take(moved)
    }

    /// Sleeps until `deadline`, a burst of new flows, or `stop` becomes readable.
    pub fn wait_for_burst(&mut self, deadline: Instant, stop: BorrowedFd<'_>) -> Woken {
        self.bursts.wait(deadline, stop)
    }

    /// New flows the programs ever indexed (0 if it cannot be read).
    pub fn flow_claims(&self) -> u64 {
        self.flow_claims.get(&0, 0).unwrap_or(0)
    }

    /// Flows counting now.
    pub fn live_flows(&self) -> usize {
        self.flows.live()
    }

    /// The overflow roll-up: bytes of cgroups whose flows did not fit in FLOWS.
    pub fn cgroup_overflow(&self) -> Vec<(u64, Traffic)> {
        read_per_cpu(&self.cgroups)
    }

    /// Payload per (socket, process), what waits on the CPUs included.
    pub fn socket_processes(&self) -> PayloadRead {
        // SOCKET_PROCESSES first: see `recent_use`.
        let totals = read_per_cpu(&self.socket_processes);
        recent_use::merge(totals, recent_use::read_waiting(&self.recent_use))
    }

    /// Cookies of sockets released since they were last forgotten.
    pub fn closed(&self) -> Vec<u64> {
        // A churning host closes thousands of sockets a second.
        keys(&self.closed)
    }

    pub fn owner(&self, cookie: u64) -> Option<SocketOwner> {
        self.owners.get(&cookie, 0).ok()
    }

    /// What the kernel recorded about process `tgid` when it last became a socket's owner.
    pub fn process(&self, tgid: u32) -> Option<SocketOwner> {
        self.processes.get(&tgid, 0).ok()
    }

    /// Tgids the kernel has recorded.
    pub fn recorded_processes(&self) -> Vec<u32> {
        // Under churn, tens of thousands between two collections.
        keys(&self.processes)
    }

    pub fn forget_processes(&mut self, tgids: &[u32]) {
        delete_present(&mut self.processes, tgids);
    }

    /// Removes the per-socket entries of closed sockets (owner, close mark), and the overflow
    /// bytes of those of them in `overflowed`. Call only after their last bytes were read
    /// (closed and idle for a whole interval). A few syscalls per drain, not a few per socket:
    /// under connection churn that was most of the daemon's time.
    pub fn forget_sockets(&mut self, cookies: &[u64], overflowed: &[u64]) {
        // Missing entries are fine: not every socket has one in every map.
        delete_present(&mut self.owners, cookies);
        delete_present(&mut self.closed, cookies);
        self.forget_socket_overflow(overflowed);
    }

    /// Removes sockets' overflow bytes only (read already, all present); owners stay.
    pub fn forget_socket_overflow(&mut self, cookies: &[u64]) {
        forget_per_cpu(&mut self.sockets, cookies);
    }

    /// Queues flows idle for `drains` drains for deletion; they get a new slot if they wake
    /// up once deleted.
    pub fn forget_idle_flows(&mut self, drains: u32) {
        self.flows.retire_idle(drains);
    }

    /// Queues the flows of closed sockets that did not move at the last drain for deletion.
    pub fn forget_flows_of(&mut self, closed: &impl Fn(u64) -> bool) {
        self.flows.retire_sockets(closed);
    }

    /// Deletes the next of the flows queued for deletion: a bounded number a drain, so that
    /// 200k flows ending at once do not stall one drain.
    pub fn delete_forgotten_flows(&mut self) {
        self.flows.retire_queued(&mut self.control);
    }

    /// Removes payload entries (read already, all present).
    pub fn forget_socket_processes(&mut self, keys: &[SocketProcessKey]) {
        forget_per_cpu(&mut self.socket_processes, keys);
    }

    pub fn forget_cgroup(&mut self, id: u64) {
        forget_per_cpu(&mut self.cgroups, &[id]);
    }

    /// Events of one kind of loss since load.
    pub fn loss_events(&self, loss: Loss) -> u64 {
        read_slot(&self.losses, loss.slot())
    }

    /// Lifetime (events, bytes) of every kind of loss.
    pub fn losses(&self) -> Vec<(Loss, u64, u64)> {
        Loss::ALL
            .iter()
            .map(|&loss| {
                let events = read_slot(&self.losses, loss.slot());
                let bytes = read_slot(&self.losses, loss.slot() + 1);
                (loss, events, bytes)
            })
            .collect()
    }

    pub fn fill(&self, entries: &MapEntries) -> Vec<MapFill> {
        let fill = |map, entries, capacity| MapFill {
            map,
            entries,
            capacity,
        };
        let sizes = &self.sizes;
        vec![
            fill(names::SOCKETS, entries.sockets, sizes.sockets),
            fill(names::FLOWS, entries.flows, sizes.flows),
            fill(names::CGROUPS, entries.cgroups, sizes.cgroups),
            fill(
                names::SOCKET_PROCESSES,
                entries.socket_processes,
                sizes.socket_processes,
            ),
            fill(names::CLOSED, entries.closed, sizes.closed),
        ]
    }
}

/// Entry counts seen by the last drain.
#[derive(Clone, Debug, Default)]
pub struct MapEntries {
    pub sockets: usize,
    pub flows: usize,
    pub cgroups: usize,
    pub socket_processes: usize,
    pub closed: usize,
}

fn read_per_cpu<K: Pod, V: Summable>(map: &PerCpuHashMap<MapData, K, V>) -> Vec<(K, V)> {
    let fd = IterableMap::map(map).fd();
    if let Ok(cpus) = aya::util::nr_cpus() {
        match batch::read_per_cpu::<K, V>(fd, cpus, V::plus) {
            Ok(entries) => return entries,
            Err(err) => tracing::debug!("batch lookup unavailable ({err}); reading key by key"),
        }
    }
    map.iter()
        .filter_map(|entry| entry.ok())
        .map(|(key, values)| (key, sum(&values)))
        .collect()
}

/// Deletes `keys` (all present, all read) from a preallocated per-CPU hash, zeroing every CPU's
/// value first: the kernel reuses a deleted element for the next insert without clearing the
/// other CPUs' values, so a new flow would otherwise start with an old flow's counts.
fn forget_per_cpu<K: Pod, V: Pod + Default>(map: &mut PerCpuHashMap<MapData, K, V>, keys: &[K]) {
    if keys.is_empty() {
        return;
    }
    let cpus = aya::util::nr_cpus().unwrap_or(1);
    let fd = IterableMap::map(map).fd();
    let zeroed = batch::zero_per_cpu(fd, keys, std::mem::size_of::<V>(), cpus).is_ok();
    if zeroed && batch::delete_present(fd, keys).is_ok() {
        return;
    }
    for key in keys {
        if !zeroed {
            if let Ok(zeros) = PerCpuValues::try_from(vec![V::default(); cpus]) {
                let _ = map.insert(key, zeros, 0);
            }
        }
        let _ = map.remove(key);
    }
}

/// Every key of a plain hash map: a batch of them per syscall where the kernel allows, two
/// syscalls per key otherwise.
fn keys<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> Vec<K> {
    match batch::read_keys(IterableMap::map(map).fd(), size_of::<V>()) {
        Ok(keys) => keys,
        Err(err) => {
            tracing::debug!("batch lookup unavailable ({err}); reading key by key");
            map.keys().filter_map(|k| k.ok()).collect()
        }
    }
}

/// Deletes those of `keys` that are in `map`, in batches where the kernel has them.
fn delete_present<K: Pod, V: Pod>(map: &mut HashMap<MapData, K, V>, keys: &[K]) {
    if keys.is_empty() {
        return;
    }
    if let Err(err) = batch::delete_present(IterableMap::map(map).fd(), keys) {
        tracing::debug!("batch delete unavailable ({err}); deleting key by key");
        for key in keys {
            let _ = map.remove(key);
        }
    }
}

fn read_slot(array: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    array
        .get(&index, 0)
        .map(|values| values.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
        .unwrap_or(0)
}
