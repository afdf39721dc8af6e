//! The maps shared with the daemon. Sizes here are placeholders: the daemon sets every
//! `max_entries` at load time from its configuration.
//!
//! Maps the daemon deletes from are `BPF_F_NO_PREALLOC`, so that an element deleted while a
//! program holds a pointer to it is freed after an RCU grace period instead of being reused
//! under the program's feet.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};
use trafficd_common::{
    defaults, FlowKey, Payload, SocketOwner, SocketProcessKey, Traffic, LOSS_SLOTS,
};

const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static SOCKETS: PerCpuHashMap<u64, Traffic> =
    PerCpuHashMap::with_max_entries(defaults::SOCKETS, BPF_F_NO_PREALLOC);

#[map]
pub static FLOWS: PerCpuHashMap<FlowKey, Traffic> =
    PerCpuHashMap::with_max_entries(defaults::FLOWS, BPF_F_NO_PREALLOC);

#[map]
pub static CGROUPS: PerCpuHashMap<u64, Traffic> =
    PerCpuHashMap::with_max_entries(defaults::CGROUPS, BPF_F_NO_PREALLOC);

#[map]
pub static OWNERS: HashMap<u64, SocketOwner> =
    HashMap::with_max_entries(defaults::OWNERS, BPF_F_NO_PREALLOC);

#[map]
pub static PROCESSES: HashMap<u32, SocketOwner> =
    HashMap::with_max_entries(defaults::PROCESSES, BPF_F_NO_PREALLOC);

#[map]
pub static SOCKET_PROCESSES: PerCpuHashMap<SocketProcessKey, Payload> =
    PerCpuHashMap::with_max_entries(defaults::SOCKET_PROCESSES, BPF_F_NO_PREALLOC);

#[map]
pub static CLOSED: HashMap<u64, u64> =
    HashMap::with_max_entries(defaults::CLOSED, BPF_F_NO_PREALLOC);

#[map]
pub static LOSSES: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOSS_SLOTS, 0);
