//! The maps shared with the daemon. Sizes here are placeholders: the daemon sets every
//! `max_entries` at load time from its configuration.
//!
//! Hash maps are preallocated: an insert from a program pops an element off a per-CPU free
//! list. `BPF_F_NO_PREALLOC` would make every new flow, socket and process allocate (and every
//! delete free after an RCU grace period), which is slow and fails under bursts of new flows.
//! The price of preallocation is that an element the daemon deletes can be reused while a
//! program still holds a pointer to it; the daemon only deletes entries idle for at least a
//! whole drain interval, so that needs a packet of an idle flow to arrive in the nanoseconds
//! between a program's lookup and its add.

use aya_ebpf::{
    btf_maps::SkStorage,
    helpers::generated::bpf_get_smp_processor_id,
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, Queue, RingBuf},
};
use trafficd_common::{
    control, defaults,
    forwarding::{self, ForwardKey, ForwardSlot, InterfaceCounts},
    FlowKey, FlowSlot, Payload, RecentUse, SocketOwner, SocketProcessKey, Traffic,
    FLOW_CACHE_ENTRIES, LOSS_SLOTS, RECENT_USES,
};

/// Map flags: none, i.e. preallocated (see above).
const PREALLOC: u32 = 0;
/// `BPF_F_MMAPABLE`: the daemon maps the array into its memory.
const MMAPABLE: u32 = 1 << 10;

#[map]
pub static SOCKETS: PerCpuHashMap<u64, Traffic> =
    PerCpuHashMap::with_max_entries(defaults::SOCKETS, PREALLOC);

/// Flow -> its slot in FLOW_COUNTERS. Looked up once per packet.
#[map]
pub static FLOWS: HashMap<FlowKey, u32> = HashMap::with_max_entries(defaults::FLOWS, PREALLOC);

/// The flows' counters. Not per CPU (an mmap-able array cannot be): the adds are atomic, and
/// a flow's packets mostly cross one CPU at a time.
#[map]
pub static FLOW_COUNTERS: Array<FlowSlot> = Array::with_max_entries(defaults::FLOWS, MMAPABLE);

#[map]
pub static FREE_FLOW_SLOTS: Queue<u32> = Queue::with_max_entries(defaults::FLOWS, 0);

/// Slots ever handed out (index 0). It may run a few past the array's end, one per CPU racing
/// for the last fresh slot; the daemon caps it.
#[map]
pub static FRESH_FLOW_SLOTS: Array<u64> = Array::with_max_entries(1, 0);

/// New flows indexed in FLOWS (index 0), ever.
#[map]
pub static FLOW_CLAIMS: Array<u64> = Array::with_max_entries(1, 0);

/// FLOW_CLAIMS every [`BURST_FLOWS`](trafficd_common::BURST_FLOWS) new flows: wakes the drain.
/// A page holds hundreds of records; the daemon reads them at every wake-up.
#[map]
pub static FLOW_BURSTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// The control words ([`control`]: owner changes, drain and flow index epochs, the TCP flag), in
/// one cache line.
#[map]
pub static CONTROL: Array<u64> = Array::with_max_entries(control::WORDS, MMAPABLE);

/// Control word `word` (one of [`control`]'s).
#[inline(always)]
pub fn control_word(word: u32) -> Option<*mut u64> {
    CONTROL.get_ptr_mut(word)
}

/// [`FLOW_CACHE_ENTRIES`] per CPU, CPU by CPU: slots of connected sockets' flows counted
/// recently, each in the entry its socket's cookie picks. Kernel-only.
#[map]
pub static FLOW_CACHE: Array<CachedSlot> = Array::with_max_entries(FLOW_CACHE_ENTRIES, MMAPABLE);

#[repr(C)]
pub struct CachedSlot {
    /// The FLOW_INDEX_EPOCH control word + 1 when written (0: never written, or being rewritten).
    pub valid_in: u64,
    /// The low half of the socket's cookie (see `flow_cache`).
    pub tag: u32,
    pub slot: u32,
}

#[map]
pub static CGROUPS: PerCpuHashMap<u64, Traffic> =
    PerCpuHashMap::with_max_entries(defaults::CGROUPS, PREALLOC);

#[map]
pub static OWNERS: HashMap<u64, SocketOwner> =
    HashMap::with_max_entries(defaults::OWNERS, PREALLOC);

#[map]
pub static PROCESSES: HashMap<u32, SocketOwner> =
    HashMap::with_max_entries(defaults::PROCESSES, PREALLOC);

/// [`RECENT_USES`] per CPU, CPU by CPU: sockets and processes each CPU saw lately, each
/// confirmed in OWNERS as of the OWNER_CHANGES control word then, and the payload they moved
/// since (see [`RecentUse`]).
#[map]
pub static RECENT_USE: Array<RecentUse> = Array::with_max_entries(RECENT_USES, MMAPABLE);

/// The entry of this CPU's `per_cpu` entries in `array` (which holds them CPU by CPU) that
/// `hash` picks. `per_cpu` is a power of two, so picking is a mask.
///
/// Why not a per-CPU array: its lookup reads the element's per-CPU address from the map's
/// table of them, a cache line of its own that a large send or receive has flushed by the time
/// the program runs; here the address is the array's plus an offset, and the CPU's number an
/// inlined read of a per-CPU variable the kernel keeps hot.
#[inline(always)]
pub fn this_cpu_entry<T>(array: &Array<T>, per_cpu: u32, hash: u32) -> Option<*mut T> {
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    array.get_ptr_mut(cpu.wrapping_mul(per_cpu).wrapping_add(hash & (per_cpu - 1)))
}

#[map]
pub static SOCKET_PROCESSES: PerCpuHashMap<SocketProcessKey, Payload> =
    PerCpuHashMap::with_max_entries(defaults::SOCKET_PROCESSES, PREALLOC);

#[map]
pub static CLOSED: HashMap<u64, u64> = HashMap::with_max_entries(defaults::CLOSED, PREALLOC);

#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_SLOTS, 0);

/// Per TCP connection counted from its counters: its flow and its counters as last reported.
/// Socket storage lives and dies with the socket; the kernel frees it on close.
#[btf_map]
pub static TCP_SOCKETS: SkStorage<TcpSocket> = SkStorage::new();

/// One registered TCP connection (kernel-only).
#[repr(C)]
pub struct TcpSocket {
    /// Non-zero once the rest is written.
    pub ready: u64,
    /// The DRAIN_EPOCH control word when a send or receive call last reported the connection.
    pub reported_in: u64,
    pub key: FlowKey,
    /// IP plus TCP header bytes each segment carries.
    pub header_len: u64,
    /// The connection's counters as last reported: `bytes_sent`, `bytes_received`, and the
    /// 32-bit `segs_out` and `segs_in`.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub segs_out: u64,
    pub segs_in: u64,
}

/// Interfaces the tc programs count on, one slot each: their ifindex, link-layer header length
/// and every packet's bytes by direction and kind, per CPU. Arrays, not a hash by ifindex: the
/// verifier turns an array lookup into a few instructions, where a per-CPU hash lookup is a
/// call that hashes the key and walks a bucket, on every packet of every counted interface.
#[map]
pub static TC_INTERFACES: PerCpuArray<InterfaceCounts> =
    PerCpuArray::with_max_entries(forwarding::DEFAULT_INTERFACES, 0);

/// `ifindex % IFINDEX_SLOTS` -> slot in TC_INTERFACES.
#[map]
pub static INTERFACE_SLOTS: Array<u32> = Array::with_max_entries(forwarding::IFINDEX_SLOTS, 0);

/// ifindex -> slot in TC_INTERFACES, for the rare interface whose place in INTERFACE_SLOTS
/// another holds (their indexes differ by a multiple of IFINDEX_SLOTS).
#[map]
pub static MORE_INTERFACE_SLOTS: HashMap<u32, u32> =
    HashMap::with_max_entries(forwarding::DEFAULT_INTERFACES, PREALLOC);

/// Forwarded flow (per interface and direction) -> its slot in FORWARDED_COUNTERS, as FLOWS
/// for local flows. Preallocated like FLOWS: when no element or slot is left a new flow's
/// bytes still count per interface. Small here: the daemon sizes the four forwarded maps at
/// load.
#[map]
pub static FORWARDED: HashMap<ForwardKey, u32> = HashMap::with_max_entries(1_024, PREALLOC);

/// The forwarded flows' counts, added atomically (see FLOW_COUNTERS).
#[map]
pub static FORWARDED_COUNTERS: Array<ForwardSlot> = Array::with_max_entries(1_024, MMAPABLE);

#[map]
pub static FREE_FORWARDED_SLOTS: Queue<u32> = Queue::with_max_entries(1_024, 0);

/// Slots of FORWARDED_COUNTERS ever handed out (index 0), as FRESH_FLOW_SLOTS.
#[map]
pub static FRESH_FORWARDED_SLOTS: Array<u64> = Array::with_max_entries(1, 0);

/// The routing verdicts of the flows that entered by a counted interface lately, and their
/// slots, per CPU (see `programs::tc_forward`).
#[map]
pub static ROUTE_CACHE: PerCpuArray<RouteVerdict> =
    PerCpuArray::with_max_entries(ROUTE_CACHE_ENTRIES, 0);

/// The slots of the forwarded flows that left by a counted interface lately, per CPU.
#[map]
pub static EGRESS_SLOTS: PerCpuArray<CachedForward> =
    PerCpuArray::with_max_entries(ROUTE_CACHE_ENTRIES, 0);

/// Entries of ROUTE_CACHE and EGRESS_SLOTS per CPU: a power of two, the caches are indexed by
/// a hash's top bits.
pub const ROUTE_CACHE_BITS: u32 = 8;
pub const ROUTE_CACHE_ENTRIES: u32 = 1 << ROUTE_CACHE_BITS;

/// A cached slot number that names no slot.
pub const NO_SLOT: u32 = u32::MAX;

/// One routing verdict: the flow's key as the ingress program builds it (`other_ifindex` is
/// the verdict's output interface), its kind, its slot in FORWARDED_COUNTERS once known, and
/// when the kernel was last asked, in jiffies.
#[repr(C)]
pub struct RouteVerdict {
    pub key: ForwardKey,
    pub kind: u32,
    pub slot: u32,
    pub checked_at: u64,
}

/// A forwarded flow's key and its slot in FORWARDED_COUNTERS.
#[repr(C)]
pub struct CachedForward {
    pub key: ForwardKey,
    pub slot: u32,
    pub _pad: u32,
}

#[map]
pub static TC_LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(forwarding::LOSS_SLOTS, 0);
