//! The forwarded-traffic counters (`programs/tc_forward.rs`): attaching them to interfaces,
//! letting go of interfaces that vanish, and reading what they counted.
//!
//! TCX links (Linux >= 6.6) run beside other tc programs without a qdisc and vanish with their
//! interface; older kernels get a clsact qdisc and a classifier on it. Either way the links are
//! owned here: dropping [`TcCounters`] detaches every one. Attach, detach and drop in the
//! network namespace of the interfaces: a clsact filter is removed over netlink by ifindex,
//! which the kernel resolves in the caller's namespace.

use std::collections::{HashMap as StdHashMap, HashSet};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
        LinkOrder, ProgramFd, SchedClassifier, TcAttachType,
    },
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use trafficd_common::forwarding::{
    self as forwarding, kind, maps as names, ForwardKey, InterfaceCounts, WireCount, FLOWS_FULL,
    IFINDEX_SLOTS,
};

pub use super::forward_slots::ForwardMoves;
use super::{forward_slots::ForwardSlots, program_mut, summarize};
use crate::error::{Error, Result};

const INGRESS: &str = "trafficd_tc_ingress";
const EGRESS: &str = "trafficd_tc_egress";

/// What the tc programs could not record: (events, bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcLosses {
    /// No forwarded-flow slot was left: flows without per-flow detail (their bytes still count per
    /// interface as forwarded).
    pub flows_full: (u64, u64),
}

/// One interface, one direction, one [`kind`] of packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindKey {
    pub ifindex: u32,
    pub direction: u8,
    pub kind: u8,
}

/// How classifiers are attached: TCX links (Linux >= 6.6), else on a clsact qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    Clsact,
}

impl AttachMode {
    fn of_this_kernel() -> AttachMode {
        match KernelVersion::current() {
            Ok(v) if v >= KernelVersion::new(6, 6, 0) => AttachMode::Tcx,
            _ => AttachMode::Clsact,
        }
    }
}

struct Attached {
    name: String,
    /// Its slot in TC_INTERFACES.
    slot: u32,
    /// Whether INTERFACE_SLOTS holds its slot (else MORE_INTERFACE_SLOTS does).
    in_place: bool,
    /// Ingress and egress; dropping them detaches.
    _links: [SchedClassifierLink; 2],
}

/// The loaded tc programs, their maps, and the interfaces they are attached to.
pub struct TcCounters {
    interfaces: Interfaces,
    forwarded: ForwardSlots,
    losses: PerCpuArray<MapData, u64>,
    attached: StdHashMap<u32, Attached>,
    mode: AttachMode,
}

/// The maps that say which interfaces are counted and hold their counts (see
/// `trafficd_common::forwarding::maps`).
struct Interfaces {
    counts: PerCpuArray<MapData, InterfaceCounts>,
    /// `ifindex % IFINDEX_SLOTS` -> slot.
    places: Array<MapData, u32>,
    /// ifindex -> slot, where another interface holds the place.
    more: HashMap<MapData, u32, u32>,
}

/// Where an interface's slot is found: its index's remainder.
fn place_of(ifindex: u32) -> u32 {
    ifindex & (IFINDEX_SLOTS - 1)
}

impl TcCounters {
    /// Loads both programs and takes their maps out of `ebpf`, which was loaded with room for
    /// `flows` forwarded flows (see [`with_forwarded_flows`]). `hand_back`: the program that
    /// hands freed slots back in batches, when it loaded. Call once.
    pub fn load(ebpf: &mut Ebpf, flows: u32, hand_back: Option<ProgramFd>) -> Result<TcCounters> {
        for program in [INGRESS, EGRESS] {
            let fail = |action, source| Error::Program {
                action,
                program,
                hook: "tc (sched_cls)",
                consequence: "forwarded traffic is not counted",
                reason: summarize(&source),
            };
            let prog: &mut SchedClassifier =
                program_mut(ebpf, program).map_err(|e| fail("find", e))?;
            prog.load().map_err(|e| fail("load", e))?;
        }
        let counters = match ebpf.take_map(names::FORWARDED_COUNTERS) {
            Some(aya::maps::Map::Array(data)) => data,
            Some(_) => {
                return Err(Error::Map {
                    name: names::FORWARDED_COUNTERS,
                    source: aya::maps::MapError::InvalidMapType { map_type: 0 },
                })
            }
            None => return Err(Error::MissingMap(names::FORWARDED_COUNTERS)),
        };
        let forwarded = ForwardSlots::new(
            take(ebpf, names::FORWARDED)?,
            take(ebpf, names::FREE_FORWARDED_SLOTS)?,
            hand_back,
            take(ebpf, names::FRESH_FORWARDED_SLOTS)?,
            counters,
            flows,
        )
        .map_err(Error::MapCounters)?;
        let interfaces = Interfaces {
            counts: take(ebpf, names::TC_INTERFACES)?,
            places: take(ebpf, names::INTERFACE_SLOTS)?,
            more: take(ebpf, names::MORE_INTERFACE_SLOTS)?,
        };
        Ok(TcCounters {
            interfaces,
            forwarded,
            losses: take(ebpf, names::TC_LOSSES)?,
            attached: StdHashMap::new(),
            mode: AttachMode::of_this_kernel(),
        })
    }

    /// Attaches the way `mode` says from now on, instead of the way this kernel prefers.
    #[cfg(test)]
    pub fn set_mode(&mut self, mode: AttachMode) {
        self.mode = mode;
    }

    /// Counts on `name` (in the calling thread's network namespace) from now on, in both
    /// directions. `link_header_len`: bytes before the IP header (14 on Ethernet, 0 on IP-only
    /// links). Attaching an interface already counted does nothing.
    pub fn attach(&mut self, ebpf: &mut Ebpf, name: &str, link_header_len: u32) -> Result<()> {
        let fail = |reason: String| Error::TcAttach {
            interface: name.to_string(),
            reason,
        };
        let ifindex = ifindex_of(name).map_err(|e| fail(e.to_string()))?;
        if self.attached.contains_key(&ifindex) {
            return Ok(());
        }
        let Some(slot) = self.free_slot() else {
            return Err(Error::TooManyInterfaces {
                interface: name.to_string(),
                counted: self.attached.len(),
            });
        };
        let in_place = !self
            .attached
            .iter()
            .any(|(other, a)| a.in_place && place_of(*other) == place_of(ifindex));
        // The interface is configured before the programs see it, so no packet is counted
        // with a wrong header length. Every CPU's value holds the length.
        let configured = InterfaceCounts {
            link_header_len,
            ifindex,
            ..InterfaceCounts::default()
        };
        let links = self
            .interfaces
            .configure(slot, configured)
            .and_then(|()| self.interfaces.point(ifindex, slot, in_place))
            .map_err(|e| format!("cannot configure it: {e}"))
            .and_then(|()| attach_both(ebpf, name, self.mode));
        let links = match links {
            Ok(links) => links,
            Err(reason) => {
                self.interfaces.release(ifindex, slot, in_place);
                return Err(fail(reason));
            }
        };
        self.attached.insert(
            ifindex,
            Attached {
                name: name.to_string(),
                slot,
                in_place,
                _links: links,
            },
        );
        Ok(())
    }

    /// Stops counting on interface `ifindex` (it vanished, or is no longer wanted) and forgets
    /// its per-kind counts, so that its slot can go to an interface that comes later (a host's
    /// containers come and go).
    pub fn detach(&mut self, ifindex: u32) {
        // Dropping the links detaches them; a vanished interface took its links along.
        // An interface kept in MORE_INTERFACE_SLOTS for want of this one's place stays there:
        // it is found either way, and the next interface with that place takes it.
        if let Some(gone) = self.attached.remove(&ifindex) {
            self.interfaces.release(ifindex, gone.slot, gone.in_place);
        }
    }

    /// The lowest slot of TC_INTERFACES no attached interface holds.
    fn free_slot(&self) -> Option<u32> {
        let held: HashSet<u32> = self.attached.values().map(|a| a.slot).collect();
        (0..self.interfaces.counts.len()).find(|slot| !held.contains(slot))
    }

    /// The interfaces counted on: (ifindex, name).
    pub fn attached(&self) -> impl Iterator<Item = (u32, &str)> {
        self.attached.iter().map(|(i, a)| (*i, a.name.as_str()))
    }

    /// What the forwarded flows moved since the last call, into `moves` (emptied first); flows
    /// idle for `idle_drains` calls are let go (see `forward_slots`).
    pub fn take(&mut self, moves: &mut ForwardMoves, idle_drains: u32) {
        self.forwarded.take(moves, idle_drains);
    }

    /// The flow in `slot`, from the take that reported it claimed to the one that freed it.
    pub fn key(&self, slot: u32) -> ForwardKey {
        self.forwarded.key(slot)
    }

    /// Every counted interface's packets by direction and kind, summed over CPUs; kinds it
    /// has seen no packet of are left out.
    pub fn kinds(&self) -> Vec<(KindKey, WireCount)> {
        // One lookup per counted interface: a batch over the whole array would copy every
        // CPU's copy of every slot, counted or not.
        let interfaces = self.attached.iter().filter_map(|(ifindex, a)| {
            let values = self.interfaces.counts.get(&a.slot, 0).ok()?;
            let sum = values
                .iter()
                .fold(InterfaceCounts::default(), |sum, v| sum.add(v));
            Some((*ifindex, sum))
        });
        let mut kinds = Vec::new();
        for (ifindex, counts) in interfaces {
            for direction in [forwarding::INGRESS, forwarding::EGRESS] {
                for (kind, _) in kind::ALL {
                    let count = counts.kinds[InterfaceCounts::slot(direction, kind)];
                    if count.packets > 0 {
                        let key = KindKey {
                            ifindex,
                            direction,
                            kind,
                        };
                        kinds.push((key, count));
                    }
                }
            }
        }
        kinds
    }

    pub fn losses(&self) -> TcLosses {
        let slot = |index: u32| {
            self.losses
                .get(&index, 0)
                .map(|values| values.iter().sum::<u64>())
                .unwrap_or(0)
        };
        TcLosses {
            flows_full: (slot(FLOWS_FULL), slot(FLOWS_FULL + 1)),
        }
    }
}

/// Sizes the forwarded-flow maps of an object about to load for `flows` flows at once.
pub fn with_forwarded_flows(loader: &mut EbpfLoader<'_>, flows: u32) {
    loader
        .map_max_entries(names::FORWARDED, flows)
        .map_max_entries(names::FORWARDED_COUNTERS, flows)
        .map_max_entries(names::FREE_FORWARDED_SLOTS, flows);
}

/// Sizes the interface maps of an object about to load for `interfaces` counted at once.
pub fn with_interfaces(loader: &mut EbpfLoader<'_>, interfaces: u32) {
    loader
        .map_max_entries(names::TC_INTERFACES, interfaces)
        .map_max_entries(names::MORE_INTERFACE_SLOTS, interfaces);
}

impl Interfaces {
    /// Writes every CPU's value of `slot`.
    fn configure(&mut self, slot: u32, value: InterfaceCounts) -> std::io::Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let values = PerCpuValues::try_from(vec![value; cpus])?;
        self.counts
            .set(slot, values, 0)
            .map_err(std::io::Error::other)
    }

    /// Makes `ifindex`'s packets find `slot`: in INTERFACE_SLOTS, or in MORE_INTERFACE_SLOTS
    /// when another interface holds its place there.
    fn point(&mut self, ifindex: u32, slot: u32, in_place: bool) -> std::io::Result<()> {
        let pointed = if in_place {
            self.places.set(place_of(ifindex), slot, 0)
        } else {
            self.more.insert(ifindex, slot, 0)
        };
        pointed.map_err(std::io::Error::other)
    }

    /// Forgets `ifindex` and clears its slot, so that a packet that still finds the slot (a
    /// program in flight as the links went) no longer matches its ifindex.
    fn release(&mut self, ifindex: u32, slot: u32, in_place: bool) {
        if !in_place {
            let _ = self.more.remove(&ifindex);
        }
        let _ = self.configure(slot, InterfaceCounts::default());
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(Error::MissingMap(name))?;
    T::try_from(map).map_err(|source| Error::Map { name, source })
}

/// Attaches ingress then egress; on failure nothing stays attached. A clsact qdisc this adds
/// stays when the classifiers go: other tools' filters may hang off it by then.
fn attach_both(
    ebpf: &mut Ebpf,
    name: &str,
    mode: AttachMode,
) -> std::result::Result<[SchedClassifierLink; 2], String> {
    let options = || match mode {
        AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
        AttachMode::Clsact => TcAttachOptions::Netlink(NlOptions::default()),
    };
    if mode == AttachMode::Clsact {
        if let Err(err) = tc::qdisc_add_clsact(name) {
            let exists = matches!(&err, tc::TcError::NetlinkError(e)
                if e.raw_os_error() == Some(libc::EEXIST));
            if !exists {
                return Err(format!("cannot add a clsact qdisc: {err}"));
            }
        }
    }
    let ingress = attach_one(ebpf, INGRESS, name, TcAttachType::Ingress, options())?;
    let egress = attach_one(ebpf, EGRESS, name, TcAttachType::Egress, options())?;
    Ok([ingress, egress])
}

fn attach_one(
    ebpf: &mut Ebpf,
    program: &str,
    name: &str,
    direction: TcAttachType,
    options: TcAttachOptions,
) -> std::result::Result<SchedClassifierLink, String> {
    let prog: &mut SchedClassifier = program_mut(ebpf, program).map_err(|e| summarize(&e))?;
    let id = prog
        .attach_with_options(name, direction, options)
        .map_err(|e| summarize(&e))?;
    prog.take_link(id).map_err(|e| summarize(&e))
}

fn ifindex_of(name: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index),
    }
}

#[cfg(test)]
mod tests;
