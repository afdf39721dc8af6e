//! Types shared by the kernel programs (`trafficd-ebpf`) and the daemon (`trafficd`).
//!
//! Every type here is `#[repr(C)]`, has no implicit padding and is used as a BPF map key or
//! value, so both sides agree on its layout byte for byte; [`bpf_attr`] holds the bpf(2)
//! attributes userspace builds itself.
#![no_std]

pub mod bpf_attr;

/// Length of a task's `comm`, including the trailing NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `AF_INET` and `AF_INET6` as the kernel spells them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// New flows that make a burst worth draining before the interval ends. A drain takes every
/// new flow into the daemon's store, holding the store's lock while it does: a burst of a
/// hundred thousand flows taken in one drain would hold it for long; in bites of this size each
/// drain stays short, and the flows show sooner.
pub const BURST_FLOWS: u64 = 16_384;

/// Names of the maps, shared so that the daemon and the kernel programs cannot drift apart.
pub mod maps {
    /// Index of the flows: (socket, 5-tuple, cgroup) -> slot in FLOW_COUNTERS.
    pub const FLOWS: &str = "FLOWS";
    /// Wire bytes per flow, one [`FlowSlot`](super::FlowSlot) each, in an array the daemon
    /// maps into its memory: it reads every flow with plain loads instead of a syscall per
    /// entry. Socket and cgroup totals are sums of these.
    pub const FLOW_COUNTERS: &str = "FLOW_COUNTERS";
    /// Slots of FLOW_COUNTERS given back by the daemon once a flow's last bytes were read, for
    /// new flows to reuse.
    pub const FREE_FLOW_SLOTS: &str = "FREE_FLOW_SLOTS";
    /// One counter: how many slots of FLOW_COUNTERS were ever handed out. New flows take the
    /// next never-used slot while there is one, so the used slots are a prefix of the array:
    /// the daemon reads only that prefix, and nothing has to fill FREE_FLOW_SLOTS at start.
    pub const FRESH_FLOW_SLOTS: &str = "FRESH_FLOW_SLOTS";
    /// The programs' few control words, [`control::WORDS`](super::control::WORDS) u64s in one
    /// cache line: see [`control`](super::control).
    pub const CONTROL: &str = "CONTROL";
    /// One counter: flows that ever claimed a slot, fresh or reused.
    pub const FLOW_CLAIMS: &str = "FLOW_CLAIMS";
    /// Ring buffer: the programs write FLOW_CLAIMS to it every
    /// [`BURST_FLOWS`](super::BURST_FLOWS) new flows. The drain thread sleeps on it between
    /// drains and drains early when that many new flows wait, so that no single drain takes a
    /// burst of them all at once; while there is no burst, it costs nothing.
    pub const FLOW_BURSTS: &str = "FLOW_BURSTS";
    /// Overflow roll-up: wire bytes per socket cookie of packets whose flow did not fit in FLOWS,
    /// so that per-socket (and so per-process) totals stay exact when FLOWS is full.
    pub const SOCKETS: &str = "SOCKETS";
    /// Overflow roll-up: wire bytes per cgroup id of packets whose flow did not fit in FLOWS.
    pub const CGROUPS: &str = "CGROUPS";
    /// Last process seen sending or receiving on a socket.
    pub const OWNERS: &str = "OWNERS";
    /// Identity (comm, uid, cgroup) of every process that became a socket's owner, by tgid:
    /// names processes that exited before the daemon could look at /proc.
    pub const PROCESSES: &str = "PROCESSES";
    /// Payload bytes per (socket, process): splits a shared socket between its users.
    pub const SOCKET_PROCESSES: &str = "SOCKET_PROCESSES";
    /// [`RECENT_USES`](super::RECENT_USES) [`RecentUse`](super::RecentUse) entries per CPU,
    /// CPU by CPU: the (socket, process) pairs each CPU last saw send or receive, each in the
    /// entry its hash picks, and the payload they moved since, not yet in SOCKET_PROCESSES.
    pub const RECENT_USE: &str = "RECENT_USE";
    /// [`FLOW_CACHE_ENTRIES`](super::FLOW_CACHE_ENTRIES) per CPU, CPU by CPU: the slots of the
    /// flows each CPU counted recently. Kernel-only.
    pub const FLOW_CACHE: &str = "FLOW_CACHE";
    /// Sockets released by their owner, with the time of release.
    pub const CLOSED: &str = "CLOSED";
    /// Per-CPU counters of everything the kernel side had to drop.
    pub const LOSSES: &str = "LOSSES";
    /// Socket storage of the TCP connections counted from their counters: each one's flow and
    /// its counters as last reported. Kernel-only.
    pub const TCP_SOCKETS: &str = "TCP_SOCKETS";
}

/// The words of the CONTROL array, by index. They share one cache line (the array is mmap-able,
/// so its values start on a page): a program that reads several of them on every call or packet
/// fetches one line for all, where a map per word cost a miss per word once a large send had
/// flushed the CPU's caches. Each word is written by the programs or by the daemon, never both.
pub mod control {
    /// Writes to OWNERS ever made, counted by the programs after each: a CPU's memory of the
    /// owner it last confirmed holds while the count has not moved.
    pub const OWNER_CHANGES: u32 = 0;
    /// Bumped by the daemon at every drain: a TCP connection's send and receive calls report
    /// what it moved at most once per drain, at the first call after the bump.
    pub const DRAIN_EPOCH: u32 = 1;
    /// Bumped by the daemon after every retirement of flows from FLOWS: each CPU keeps the slots
    /// of the flows it counted recently, and believes them while it has not moved.
    pub const FLOW_INDEX_EPOCH: u32 = 2;
    /// Set to 1 by the daemon once established TCP connections are counted from the kernel's
    /// counters of each connection instead of packet by packet.
    pub const TCP_FROM_SOCKETS: u32 = 3;
    /// Words in the array.
    pub const WORDS: u32 = 4;
}

/// The batch the daemon hands to the `trafficd_hand_back` program through `BPF_PROG_TEST_RUN`:
/// a test packet of [`HEADER`](hand_back::HEADER) bytes (an Ethernet header, padded so that
/// the slots are aligned) followed by up to [`SLOTS`](hand_back::SLOTS) slot numbers, native
/// endian. One syscall hands back hundreds of slots, where a queue push from userspace is a
/// syscall per slot.
/// The header's first byte names the queue the slots go to.
pub mod hand_back {
    pub const HEADER: usize = 16;
    /// Queues, as the header's first byte names them.
    pub const FLOW_SLOTS: u8 = 0;
    pub const FORWARDED_SLOTS: u8 = 1;
    /// Fits the kernel's limit on a test packet (a page, less its headroom and tailroom).
    pub const SLOTS: usize = 768;
}

/// Offsets of the kernel struct fields the programs read, as placeholders in their code.
///
/// Rust eBPF has no CO-RE relocations, and a program may read a BTF-typed pointer only at an
/// offset the verifier knows. Each offset is a 64-bit immediate load (`ld_imm64`) of its
/// placeholder; before loading, the daemon finds every one in the object and writes in the
/// offset read from the running kernel's BTF. A read-only global would do the same through a
/// memory load, a cache line missed by programs that run after a large copy.
pub mod kernel_field {
    /// The high half of every placeholder: improbable in any other instruction.
    pub const MARK: u32 = 0x7f7a_fd0f;
    /// The low half, less the field's number.
    const LOW: u32 = 0x0ff5_e700;

    /// The placeholder of field number `number` (< 256).
    pub const fn placeholder(number: u8) -> u64 {
        ((MARK as u64) << 32) | (LOW | number as u32) as u64
    }

    /// The field number of `placeholder`, if it is one.
    pub const fn number(placeholder: u64) -> Option<u8> {
        if (placeholder >> 32) as u32 == MARK && (placeholder as u32) & !0xff == LOW {
            Some(placeholder as u8)
        } else {
            None
        }
    }

    /// `struct sock` (`__sk_common.skc_*` unless said otherwise).
    pub const SK_FAMILY: u64 = placeholder(0);
    pub const SK_COOKIE: u64 = placeholder(1);
    pub const SK_STATE: u64 = placeholder(2);
    /// `sk_protocol`, of `struct sock` itself.
    pub const SK_PROTOCOL: u64 = placeholder(3);
    /// `skc_daddr` and `skc_rcv_saddr`: the IPv4 addresses, remote and local.
    pub const SK_DADDR: u64 = placeholder(4);
    pub const SK_RCV_SADDR: u64 = placeholder(5);
    /// `skc_dport` (network order) and `skc_num` (the local port, host order).
    pub const SK_DPORT: u64 = placeholder(6);
    pub const SK_NUM: u64 = placeholder(7);
    pub const SK_V6_DADDR: u64 = placeholder(8);
    pub const SK_V6_RCV_SADDR: u64 = placeholder(9);
    /// `sk_cgrp_data.cgroup`, then `cgroup.kn`, then `kernfs_node.id`: the socket's cgroup id.
    pub const SK_CGROUP: u64 = placeholder(10);
    pub const CGROUP_KN: u64 = placeholder(11);
    pub const KERNFS_ID: u64 = placeholder(12);
    /// `struct tcp_sock`: the kernel's own per-connection counters.
    pub const TCP_BYTES_SENT: u64 = placeholder(13);
    pub const TCP_BYTES_RECEIVED: u64 = placeholder(14);
    pub const TCP_SEGS_OUT: u64 = placeholder(15);
    pub const TCP_SEGS_IN: u64 = placeholder(16);
    pub const TCP_HEADER_LEN: u64 = placeholder(17);
}

/// Default number of entries of each map; every one can be changed on the command line.
pub mod defaults {
    pub const SOCKETS: u32 = 16_384;
    pub const FLOWS: u32 = 131_072;
    pub const CGROUPS: u32 = 1_024;
    pub const OWNERS: u32 = 65_536;
    pub const PROCESSES: u32 = 32_768;
    pub const SOCKET_PROCESSES: u32 = 65_536;
    pub const CLOSED: u32 = 65_536;
}

/// Bytes and packets in both directions. Kernel programs add to them atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
}

impl Traffic {
    /// Sum of `self` and `other`, wrapping like the kernel's u64 counters do.
    pub fn add(&self, other: &Traffic) -> Traffic {
        Traffic {
            tx_bytes: self.tx_bytes.wrapping_add(other.tx_bytes),
            tx_packets: self.tx_packets.wrapping_add(other.tx_packets),
            rx_bytes: self.rx_bytes.wrapping_add(other.rx_bytes),
            rx_packets: self.rx_packets.wrapping_add(other.rx_packets),
        }
    }

    /// `self - earlier`, for monotonic counters read twice.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            tx_bytes: self.tx_bytes.wrapping_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(earlier.tx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.wrapping_sub(earlier.rx_packets),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Traffic::default()
    }
}

/// One flow: a socket and the 5-tuple of its packets, as seen from the local side.
///
/// Addresses are in network byte order (IPv4 in the first 4 bytes), ports in host order.
/// An unconnected UDP socket talking to several peers has one flow per peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub cookie: u64,
    pub cgroup_id: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
    pub _pad: [u8; 2],
}

/// The process last seen sending or receiving on a socket, recorded in process context.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// One slot of FLOW_COUNTERS: a flow and its bytes.
///
/// A program claims a free slot for a new flow: it indexes the slot in FLOWS, writes `key`, then
/// sets `claimed` with an atomic add, which orders the key before it. The daemon reads `claimed`
/// first and ignores the slot while it is 0. `traffic` counts since the daemon last took it:
/// the daemon swaps each counter to 0 atomically, so no add is lost and no state is kept per flow
/// in userspace. The counters come first so that the per-packet adds touch one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSlot {
    pub traffic: Traffic,
    /// Non-zero once `key` is valid.
    pub claimed: u64,
    pub key: FlowKey,
}

/// Key of the payload a process moved through a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketProcessKey {
    pub cookie: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// Payload bytes and calls of one process on one socket (`sock_sendmsg`/`sock_recvmsg` results).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub sent_bytes: u64,
    pub sent_calls: u64,
    pub received_bytes: u64,
    pub received_calls: u64,
}

impl Payload {
    pub fn since(&self, earlier: &Payload) -> Payload {
        Payload {
            sent_bytes: self.sent_bytes.wrapping_sub(earlier.sent_bytes),
            sent_calls: self.sent_calls.wrapping_sub(earlier.sent_calls),
            received_bytes: self.received_bytes.wrapping_sub(earlier.received_bytes),
            received_calls: self.received_calls.wrapping_sub(earlier.received_calls),
        }
    }

    pub fn add(&self, other: &Payload) -> Payload {
        Payload {
            sent_bytes: self.sent_bytes.wrapping_add(other.sent_bytes),
            sent_calls: self.sent_calls.wrapping_add(other.sent_calls),
            received_bytes: self.received_bytes.wrapping_add(other.received_bytes),
            received_calls: self.received_calls.wrapping_add(other.received_calls),
        }
    }
}

/// Entries of FLOW_CACHE per CPU: a few dozen flows busy at once on a CPU each keep their own.
pub const FLOW_CACHE_ENTRIES: u32 = 64;

/// Entries of RECENT_USE per CPU: a process taking turns on a few sockets (iperf3 with four
/// streams, a proxy's two ends) keeps each in its own entry.
pub const RECENT_USES: u32 = 8;

// The programs pick a CPU's entry with a mask.
const _: () = assert!(FLOW_CACHE_ENTRIES.is_power_of_two() && RECENT_USES.is_power_of_two());

/// A (socket, process) a CPU recently saw send or receive, and what it moved since.
///
/// A process mostly sends and receives on the same few sockets many times in a row. Its payload
/// is added here, with no map lookup, and moved into SOCKET_PROCESSES only when another
/// (socket, process) takes the entry: a hash lookup per call was the largest part of the send
/// and receive programs' time. The daemon adds what waits here to what it reads from
/// SOCKET_PROCESSES.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentUse {
    pub cookie: u64,
    pub tgid: u32,
    /// Odd while the program switches to another (socket, process): the daemon only believes
    /// an entry when two reads saw the same even value.
    pub seq: u32,
    /// Binds the entry to OWNERS as it was when the owner was last confirmed (kernel-only).
    pub seal: u64,
    /// The drain in which a call of this entry's socket last checked whether it is a TCP
    /// connection due to report, bound to the socket (kernel-only): later calls in the same
    /// drain skip the check.
    pub checked_in: u64,
    /// Moved by `tgid` on `cookie` on this CPU and not yet added to SOCKET_PROCESSES.
    pub payload: Payload,
}

// One cache line each: the entries of an mmap-able array start on a page.
const _: () = assert!(core::mem::size_of::<RecentUse>() == 64);

impl RecentUse {
    /// Whether the entry names a (socket, process) with payload waiting.
    pub fn is_waiting(&self) -> bool {
        self.cookie != 0 && self.payload != Payload::default()
    }
}

/// Index into the per-CPU `LOSSES` array: what the kernel side could not record.
///
/// Each kind has two slots, `2 * kind` for events and `2 * kind + 1` for bytes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// FLOWS was full: per-flow detail lost; the bytes went to the SOCKETS and CGROUPS
    /// overflow roll-ups, so socket, cgroup and process totals stay exact.
    FlowMapFull = 0,
    /// FLOWS and the SOCKETS overflow were full: bytes not attributable to a process.
    SocketMapFull = 1,
    /// FLOWS and the CGROUPS overflow were full: cgroup totals incomplete.
    CgroupMapFull = 2,
    /// OWNERS or PROCESSES was full: an owner not recorded in the kernel (userspace falls back
    /// to /proc).
    OwnerMapFull = 3,
    /// SOCKET_PROCESSES was full: a shared socket cannot be split between its processes.
    SocketProcessMapFull = 4,
    /// CLOSED was full: a closed socket is cleaned up later by idle expiry instead.
    ClosedMapFull = 5,
    /// A packet whose headers could not be read: counted with zeroed ports and addresses.
    Unparsed = 6,
    /// A TCP connection counted from its counters could not be registered (no kernel memory
    /// for its storage): what it moves is not counted until a later sweep registers it.
    TcpSocketUnregistered = 7,
}

impl Loss {
    pub const ALL: [Loss; 8] = [
        Loss::FlowMapFull,
        Loss::SocketMapFull,
        Loss::CgroupMapFull,
        Loss::OwnerMapFull,
        Loss::SocketProcessMapFull,
        Loss::ClosedMapFull,
        Loss::Unparsed,
        Loss::TcpSocketUnregistered,
    ];

    /// Slot of the event counter; the byte counter is the next slot.
    pub const fn slot(self) -> u32 {
        2 * self as u32
    }

    /// Label used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Loss::FlowMapFull => "flow_map_full",
            Loss::SocketMapFull => "socket_map_full",
            Loss::CgroupMapFull => "cgroup_map_full",
            Loss::OwnerMapFull => "owner_map_full",
            Loss::SocketProcessMapFull => "socket_process_map_full",
            Loss::ClosedMapFull => "closed_map_full",
            Loss::Unparsed => "unparsed_packet",
            Loss::TcpSocketUnregistered => "tcp_socket_unregistered",
        }
    }
}

/// Number of slots in the `LOSSES` array.
pub const LOSS_SLOTS: u32 = 2 * Loss::ALL.len() as u32;

/// Counting on interfaces (the tc programs): forwarded flows, and every packet's bytes per
/// interface by kind, so that the parts add up to the interface's own counters.
pub mod forwarding {
    /// Map names.
    pub mod maps {
        /// Interfaces the tc programs count on: a slot -> [`InterfaceCounts`](super::InterfaceCounts),
        /// per CPU: the interface's ifindex and link-layer header length (written by the daemon
        /// before it attaches) and every packet's bytes by direction and [`kind`](super::kind).
        /// Packets on other interfaces are not counted.
        pub const TC_INTERFACES: &str = "TC_INTERFACES";
        /// An array: `ifindex % IFINDEX_SLOTS` -> the interface's slot in TC_INTERFACES, which
        /// holds its ifindex to tell it from another whose index has the same remainder.
        pub const INTERFACE_SLOTS: &str = "INTERFACE_SLOTS";
        /// A hash: ifindex -> slot in TC_INTERFACES, for an interface whose place in
        /// INTERFACE_SLOTS another counted interface holds.
        pub const MORE_INTERFACE_SLOTS: &str = "MORE_INTERFACE_SLOTS";
        /// [`ForwardKey`](super::ForwardKey) -> its slot in FORWARDED_COUNTERS: packets no
        /// local socket sent or receives, one flow per interface and direction.
        pub const FORWARDED: &str = "FORWARDED";
        /// The forwarded flows' counts, one [`ForwardSlot`](super::ForwardSlot) each, in an
        /// array the daemon maps into its memory and reads without a syscall, as FLOW_COUNTERS.
        pub const FORWARDED_COUNTERS: &str = "FORWARDED_COUNTERS";
        /// Slots of FORWARDED_COUNTERS given back by the daemon, for new flows to reuse.
        pub const FREE_FORWARDED_SLOTS: &str = "FREE_FORWARDED_SLOTS";
        /// One counter: slots of FORWARDED_COUNTERS ever handed out (see FRESH_FLOW_SLOTS).
        pub const FRESH_FORWARDED_SLOTS: &str = "FRESH_FORWARDED_SLOTS";
        /// Per CPU, [`LOSS_SLOTS`](super::LOSS_SLOTS) counters: what did not fit.
        pub const TC_LOSSES: &str = "TC_LOSSES";
    }

    /// Entries of FORWARDED the daemon asks for at load time unless told otherwise.
    pub const DEFAULT_FLOWS: u32 = 65_536;

    /// Interfaces counted on at once unless told otherwise: TC_INTERFACES holds every CPU's
    /// copy of each.
    pub const DEFAULT_INTERFACES: u32 = 512;

    /// Places in INTERFACE_SLOTS: a power of two, as the programs take an ifindex's remainder
    /// by masking.
    pub const IFINDEX_SLOTS: u32 = 1 << 16;
    const _: () = assert!(IFINDEX_SLOTS.is_power_of_two());

    pub const INGRESS: u8 = 0;
    pub const EGRESS: u8 = 1;

    /// What a packet on an interface was, by how the tc programs tell.
    pub mod kind {
        /// Sent by a local socket (egress), or routed to local delivery (ingress): the socket
        /// hooks own these bytes.
        pub const LOCAL: u8 = 0;
        /// No local socket: routed, bridged or NAT'd through this host.
        pub const FORWARDED: u8 = 1;
        /// Ingress the kernel will drop: no route (blackhole, unreachable, prohibit) or a frame
        /// addressed to another host.
        pub const DROPPED: u8 = 2;
        /// Not IPv4 or IPv6 (ARP, LLDP, ...).
        pub const NON_IP: u8 = 3;
        pub const ALL: [(u8, &str); 4] = [
            (LOCAL, "local"),
            (FORWARDED, "forwarded"),
            (DROPPED, "dropped"),
            (NON_IP, "non_ip"),
        ];
    }

    /// Packet kinds per direction in [`InterfaceCounts`].
    pub const KINDS: usize = kind::ALL.len();
    const _: () = assert!(
        KINDS.is_power_of_two(),
        "InterfaceCounts::slot masks by KINDS - 1"
    );

    /// TC_LOSSES slots: events then bytes of FORWARDED being full (the bytes still count in
    /// TC_INTERFACES as forwarded).
    pub const FLOWS_FULL: u32 = 0;
    pub const LOSS_SLOTS: u32 = 2;

    /// One forwarded flow as one interface saw it, addresses as on the wire (network order,
    /// IPv4 in the first 4 bytes), ports in host order. Aligned to 8 so the programs can
    /// zero it with word stores.
    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ForwardKey {
        /// The interface counted on.
        pub ifindex: u32,
        /// The other end of the hop: on egress the interface the packet came in by, on ingress
        /// the one the routing lookup sends it out of (0 when unknown).
        pub other_ifindex: u32,
        pub src_addr: [u8; 16],
        pub dst_addr: [u8; 16],
        pub src_port: u16,
        pub dst_port: u16,
        /// [`AF_INET`](super::AF_INET) or [`AF_INET6`](super::AF_INET6).
        pub family: u8,
        pub protocol: u8,
        /// [`INGRESS`] or [`EGRESS`].
        pub direction: u8,
        pub _pad: u8,
    }

    /// One forwarded flow's slot: its counts, added atomically by the tc programs and swapped to
    /// 0 by the daemon, and its key, written once before `claimed` is set.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ForwardSlot {
        pub count: WireCount,
        /// Non-zero once `key` is valid.
        pub claimed: u64,
        pub key: ForwardKey,
    }

    /// One counted interface on one CPU: its link-layer header length (14 on Ethernet, 0 on
    /// IP-only links such as WireGuard or tun) and ifindex, the same on every CPU, and what its
    /// packets were, by direction and kind.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct InterfaceCounts {
        pub link_header_len: u32,
        /// 0 in a slot no interface holds.
        pub ifindex: u32,
        /// Indexed by [`InterfaceCounts::slot`].
        pub kinds: [WireCount; 2 * KINDS],
    }

    impl InterfaceCounts {
        /// The place of (direction, kind) in `kinds`; masked so that it is in bounds by
        /// construction, which the verifier can see.
        #[inline(always)]
        pub fn slot(direction: u8, kind: u8) -> usize {
            (direction as usize & 1) * KINDS + (kind as usize & (KINDS - 1))
        }

        /// `self`'s counts plus `other`'s (two CPUs' values of one interface).
        pub fn add(&self, other: &InterfaceCounts) -> InterfaceCounts {
            let mut sum = *self;
            for (total, more) in sum.kinds.iter_mut().zip(&other.kinds) {
                *total = total.add(more);
            }
            sum
        }
    }

    /// Bytes and packets as the device's counters may count them: `bytes` and `packets` per
    /// buffer (what virtual links such as veth count), `wire_bytes` and `segments` as a NIC that
    /// segments a GSO buffer counts them, each segment with its own headers.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct WireCount {
        pub bytes: u64,
        pub packets: u64,
        pub wire_bytes: u64,
        pub segments: u64,
    }

    impl WireCount {
        pub fn add(&self, other: &WireCount) -> WireCount {
            WireCount {
                bytes: self.bytes.wrapping_add(other.bytes),
                packets: self.packets.wrapping_add(other.packets),
                wire_bytes: self.wire_bytes.wrapping_add(other.wire_bytes),
                segments: self.segments.wrapping_add(other.segments),
            }
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, have no padding and every bit pattern is valid.
    unsafe impl aya::Pod for super::Traffic {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowSlot {}
    unsafe impl aya::Pod for super::SocketOwner {}
    unsafe impl aya::Pod for super::SocketProcessKey {}
    unsafe impl aya::Pod for super::Payload {}
    unsafe impl aya::Pod for super::RecentUse {}
    unsafe impl aya::Pod for super::forwarding::ForwardKey {}
    unsafe impl aya::Pod for super::forwarding::InterfaceCounts {}
    unsafe impl aya::Pod for super::forwarding::ForwardSlot {}
    unsafe impl aya::Pod for super::forwarding::WireCount {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<Traffic>(), 32);
        assert_eq!(size_of::<FlowKey>(), 56);
        assert_eq!(size_of::<FlowSlot>(), 96);
        assert_eq!(size_of::<SocketOwner>(), 40);
        assert_eq!(size_of::<SocketProcessKey>(), 16);
        assert_eq!(size_of::<Payload>(), 32);
        assert_eq!(size_of::<forwarding::ForwardKey>(), 48);
        assert_eq!(size_of::<forwarding::InterfaceCounts>(), 8 + 8 * 32);
        assert_eq!(size_of::<forwarding::WireCount>(), 32);
        assert_eq!(size_of::<forwarding::ForwardSlot>(), 88);
    }

    #[test]
    fn since_wraps_like_u64_counters() {
        let earlier = Traffic {
            tx_bytes: u64::MAX,
            ..Traffic::default()
        };
        let now = Traffic {
            tx_bytes: 9,
            ..Traffic::default()
        };
        assert_eq!(now.since(&earlier).tx_bytes, 10);
    }
}
