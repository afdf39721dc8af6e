//! Interface counters: every interface's own transmit and receive totals, as the kernel keeps
//! them, and its capacity, so that "the uplink is above 90%" has an answer that does not depend
//! on any trafficd hook having seen the packets.
//!
//! The counters are the figures `ip -s link` prints (IFLA_STATS64). Each poll asks for them
//! alone (an RTM_GETSTATS dump of the 64-bit link counters) and takes names and states from a
//! table of links, filled by a full link dump (RTM_GETLINK) and kept current by the link
//! events the caller hands in: a full dump carries every link's configuration too (IPv6
//! settings, bridge port attributes), dozens of times the bytes, which on a host with hundreds
//! of container veths was most of a drain. Capacity comes from `--interface-capacity` or else the
//! driver's speed in sysfs. [`LinkEvents`] follows interfaces that appear and vanish (a
//! container's veth) without polling.

use std::{
    collections::{BTreeMap, HashMap},
    io::ErrorKind,
    path::Path,
    time::{Duration, Instant},
};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{LinkAttribute, LinkLayerType, LinkMessage, State, Stats64},
    stats::{StatsAttribute, StatsFilterMask, StatsMessage},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::{Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ less the NUL).
const MAX_NAME_LEN: usize = 15;
/// The link table is read whole again this often even when events say nothing changed: a
/// safety net for a notification lost without an error.
const FULL_DUMP_EVERY: Duration = Duration::from_secs(30);

/// What a poll of the counters alone needs to know of a link besides its counters.
#[derive(Clone, Debug)]
struct LinkInfo {
    name: String,
    up: bool,
    admin_up: bool,
    link_header_len: Option<u32>,
}

impl LinkInfo {
    fn of(sample: &InterfaceSample) -> LinkInfo {
        LinkInfo {
            name: sample.name.clone(),
            up: sample.up,
            admin_up: sample.admin_up,
            link_header_len: sample.link_header_len,
        }
    }

    fn sample(&self, ifindex: u32, stats: &Stats64) -> InterfaceSample {
        InterfaceSample {
            name: self.name.clone(),
            ifindex,
            up: self.up,
            admin_up: self.admin_up,
            tx_bytes: stats.tx_bytes,
            rx_bytes: stats.rx_bytes,
            tx_packets: stats.tx_packets,
            rx_packets: stats.rx_packets,
            capacity_bytes_per_sec: None,
            link_header_len: self.link_header_len,
        }
    }
}

/// One interface at one poll: the kernel's counters since the interface was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSample {
    pub name: String,
    pub ifindex: u32,
    /// RFC 2863 operational state: true when the kernel says it is up (or, for drivers that do
    /// not report one, such as `lo`, unknown but administratively up).
    pub up: bool,
    /// Set up by an administrator (IFF_UP), whether or not it has a carrier: a bridge with no
    /// port yet (docker0 before its first container) is administratively up, operationally
    /// down, and about to carry traffic.
    pub admin_up: bool,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// From `--interface-capacity`, else from the driver's link speed; `None` for virtual links
    /// without either.
    pub capacity_bytes_per_sec: Option<u64>,
    /// Bytes of link-layer header before the IP header, for the tc programs: 14 on Ethernet,
    /// 0 on IP-only links (WireGuard, tun); `None` for link types they do not parse.
    pub link_header_len: Option<u32>,
}

/// Reads every interface's counters in the daemon's network namespace.
pub struct Interfaces {
    socket: Socket,
    /// `--interface-capacity`, bytes per second by interface name.
    capacities: HashMap<String, u64>,
    /// Driver speeds read from sysfs, by ifindex and name: read once, not at every poll of
    /// a host with many container veths. A link event says when to read one again.
    speeds: HashMap<(u32, String), Option<u64>>,
    sequence: u32,
    /// Every link's name and state by ifindex, as of the last full dump and the events since.
    links: BTreeMap<u32, LinkInfo>,
    /// When the link table was last read whole; `None`: read it at the next poll.
    full_dump_at: Option<Instant>,
}

impl Interfaces {
    /// Opens the rtnetlink socket. `capacities` override the driver's speed, by name.
    pub fn new(capacities: impl IntoIterator<Item = (String, u64)>) -> Result<Interfaces> {
        let fail = |reason: std::io::Error| Error::Rtnetlink {
            action: "open a socket".into(),
            reason: reason.to_string(),
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        Ok(Interfaces {
            socket,
            capacities: capacities.into_iter().collect(),
            speeds: HashMap::new(),
            sequence: 0,
            links: BTreeMap::new(),
            full_dump_at: None,
        })
    }

    /// Every interface's counters now, in ifindex order.
    pub fn poll(&mut self) -> Result<Vec<InterfaceSample>> {
        let due = self
            .full_dump_at
            .is_none_or(|at| at.elapsed() >= FULL_DUMP_EVERY);
        let counters_alone = if due { None } else { self.poll_counters()? };
        if counters_alone.is_none() {
            tracing::debug!(due, "reading the link table whole");
        }
        let mut samples = match counters_alone {
            Some(samples) => samples,
            None => self.poll_links()?,
        };
        // Rebuilt at every poll, so interfaces that are gone or were renamed are forgotten.
        let mut speeds = HashMap::with_capacity(samples.len());
        for sample in &mut samples {
            let key = (sample.ifindex, sample.name.clone());
            let speed = match self.speeds.remove(&key) {
                Some(speed) => speed,
                None => driver_speed(Path::new("/sys/class/net"), &sample.name),
            };
            speeds.insert(key, speed);
            sample.capacity_bytes_per_sec = self.capacities.get(&sample.name).copied().or(speed);
        }
        self.speeds = speeds;
        samples.sort_by_key(|s| s.ifindex);
        Ok(samples)
    }

    /// Takes a link's new name and state from its [`LinkEvent::New`], and reads its driver
    /// speed again at the next poll (the event is also how a renegotiated speed is announced).
    /// An event without them has the next poll read the link table whole.
    pub fn link_changed(&mut self, ifindex: u32, link: Option<&InterfaceSample>) {
        self.speeds.retain(|(i, _), _| *i != ifindex);
        match link {
            Some(link) => {
                self.links.insert(ifindex, LinkInfo::of(link));
            }
            None => {
                tracing::debug!(ifindex, "a link event without the link");
                self.full_dump_at = None
            }
        }
    }

    pub fn link_gone(&mut self, ifindex: u32) {
        self.links.remove(&ifindex);
    }

    /// Reads the link table whole at the next poll: link events were lost, or are not followed.
    pub fn reread_links(&mut self) {
        self.full_dump_at = None;
    }

    /// Every link with its name, state and counters, from a full link dump that also refills
    /// the link table.
    fn poll_links(&mut self) -> Result<Vec<InterfaceSample>> {
        self.sequence = self.sequence.wrapping_add(1);
        let links = dump_links(&mut self.socket, self.sequence)?;
        let samples: Vec<InterfaceSample> = links.iter().filter_map(sample).collect();
        self.links = samples
            .iter()
            .map(|s| (s.ifindex, LinkInfo::of(s)))
            .collect();
        self.full_dump_at = Some(Instant::now());
        Ok(samples)
    }

    /// The counters alone, joined to the link table; `None` when a link the table does not
    /// know has counters (created after the events were read): the caller reads it whole.
    fn poll_counters(&mut self) -> Result<Option<Vec<InterfaceSample>>> {
        self.sequence = self.sequence.wrapping_add(1);
        let counters = dump_counters(&mut self.socket, self.sequence)?;
        let mut samples = Vec::with_capacity(counters.len());
        for (ifindex, stats) in &counters {
            let Some(link) = self.links.get(ifindex) else {
                tracing::debug!(ifindex, "counters of a link the table does not know");
                return Ok(None);
            };
            samples.push(link.sample(*ifindex, stats));
        }
        Ok(Some(samples))
    }
}

/// One RTM_GETLINK dump: every link, with its configuration and counters.
fn dump_links(socket: &mut Socket, sequence: u32) -> Result<Vec<LinkMessage>> {
    let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
    dump(
        socket,
        sequence,
        request,
        "the links",
        |reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        },
    )
}

/// One RTM_GETSTATS dump of the 64-bit link counters alone, by ifindex.
fn dump_counters(socket: &mut Socket, sequence: u32) -> Result<Vec<(u32, Stats64)>> {
    let mut message = StatsMessage::default();
    message.header.filter_mask = StatsFilterMask::Link64;
    let request = RouteNetlinkMessage::GetStats(message);
    dump(
        socket,
        sequence,
        request,
        "the link counters",
        |reply| match reply {
            RouteNetlinkMessage::NewStats(stats) => {
                let ifindex = stats.header.ifindex;
                stats.attributes.into_iter().find_map(|a| match a {
                    StatsAttribute::Link64(counters) => Some((ifindex, counters)),
                    _ => None,
                })
            }
            _ => None,
        },
    )
}

/// Sends one dump request and collects what `pick` takes from every part of its reply.
fn dump<T>(
    socket: &mut Socket,
    sequence: u32,
    request: RouteNetlinkMessage,
    what: &'static str,
    mut pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>> {
    let fail = |action: &str, reason: String| Error::Rtnetlink {
        action: format!("{action} {what}"),
        reason,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut request = NetlinkMessage::new(header, request.into());
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| fail("request", e.to_string()))?;

    let mut picked = Vec::new();
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(|e| fail("read", e.to_string()))?;
        let mut offset = 0;
        while offset < size {
            let message =
                <NetlinkMessage<RouteNetlinkMessage>>::deserialize(&receive[offset..size])
                    .map_err(|e| fail("parse", e.to_string()))?;
            let length = message.header.length as usize;
            // Replies to an earlier, abandoned request (an error midway) are not ours.
            if message.header.sequence_number == sequence {
                match message.payload {
                    NetlinkPayload::InnerMessage(reply) => picked.extend(pick(reply)),
                    NetlinkPayload::Done(_) => return Ok(picked),
                    NetlinkPayload::Error(err) => return Err(fail("dump", format!("{err:?}"))),
                    _ => {}
                }
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// The counters of one link message; `None` when it lacks a name or 64-bit stats.
fn sample(link: &LinkMessage) -> Option<InterfaceSample> {
    let mut name = None;
    let mut stats = None;
    let mut state = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Stats64(s) => stats = Some(s),
            LinkAttribute::OperState(s) => state = Some(*s),
            _ => {}
        }
    }
    let stats = stats?;
    let admin_up = link
        .header
        .flags
        .contains(netlink_packet_route::link::LinkFlags::Up);
    Some(InterfaceSample {
        name: name?,
        ifindex: link.header.index,
        up: match state {
            Some(State::Up) => true,
            Some(State::Unknown) | None => admin_up,
            Some(_) => false,
        },
        admin_up,
        tx_bytes: stats.tx_bytes,
        rx_bytes: stats.rx_bytes,
        tx_packets: stats.tx_packets,
        rx_packets: stats.rx_packets,
        capacity_bytes_per_sec: None,
        link_header_len: link_header_len(link.header.link_layer_type),
    })
}

fn link_header_len(link_type: LinkLayerType) -> Option<u32> {
    match link_type {
        LinkLayerType::Ether | LinkLayerType::Loopback => Some(14),
        LinkLayerType::None | LinkLayerType::Rawip => Some(0),
        _ => None,
    }
}

/// The driver's link speed in bytes per second, from `<class_net>/<name>/speed` (Mbit/s).
/// Virtual links have none: the read fails (EINVAL) or says -1.
fn driver_speed(class_net: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(class_net.join(name).join("speed")).ok()?;
    let mbits: i64 = text.trim().parse().ok()?;
    (mbits > 0).then(|| mbits as u64 * 1_000_000 / 8)
}

/// Parses one `--interface-capacity NAME=RATE`: RATE in bits per second with an optional
/// decimal prefix (`bit`, `Kbit`, `Mbit`, `Gbit`, `Tbit`, as tc(8) spells them, any case; a
/// fraction such as `2.5Gbit` is fine). Returns the name and the rate in bytes per second.
pub fn parse_capacity(input: &str) -> Result<(String, u64)> {
    let bad = |reason| Error::InterfaceCapacity {
        input: input.to_string(),
        reason,
    };
    let (name, rate) = input.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("the interface name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("interface names are at most 15 characters"));
    }
    if name.contains(['/', ' ', '\t']) {
        return Err(bad("interface names contain no `/` or spaces"));
    }
    let bits = parse_bits(rate.trim()).map_err(bad)?;
    let bytes = bits / 8;
    if bytes == 0 {
        return Err(bad("the rate must be at least 8bit (one byte per second)"));
    }
    Ok((name.to_string(), bytes))
}

/// `10Gbit` -> 10_000_000_000. Decimal prefixes, as link speeds are quoted.
fn parse_bits(rate: &str) -> std::result::Result<u64, &'static str> {
    let lower = rate.to_ascii_lowercase();
    let number = lower
        .strip_suffix("bit")
        .ok_or("the rate needs a unit: bit, Kbit, Mbit, Gbit or Tbit")?;
    let (number, scale) = match number.chars().last() {
        Some('k') => (&number[..number.len() - 1], 1_000u64),
        Some('m') => (&number[..number.len() - 1], 1_000_000),
        Some('g') => (&number[..number.len() - 1], 1_000_000_000),
        Some('t') => (&number[..number.len() - 1], 1_000_000_000_000),
        _ => (number, 1),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return Err("the rate is not a number followed by a unit");
    }
    let too_large = "the rate is too large";
    let whole: u64 = whole.parse().map_err(|_| too_large)?;
    let mut bits = whole.checked_mul(scale).ok_or(too_large)?;
    // The fraction digit by digit, so 2.5Gbit is exact; digits below one bit are dropped.
    let mut unit = scale;
    for digit in fraction.unwrap_or_default().bytes() {
        unit /= 10;
        bits = bits
            .checked_add(u64::from(digit - b'0') * unit)
            .ok_or(too_large)?;
    }
    if bits == 0 {
        return Err("the rate must be above zero");
    }
    Ok(bits)
}

/// An interface that appeared, changed or vanished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: created, or its state changed (e.g. set up).
    New {
        ifindex: u32,
        name: String,
        up: bool,
        /// The link as the notification describes it, counters included (`None` when the
        /// notification lacks them).
        link: Option<InterfaceSample>,
    },
    /// RTM_DELLINK: deleted, or moved to another network namespace.
    Gone { ifindex: u32, name: String },
}

/// Subscription to the kernel's link notifications (the RTMGRP_LINK group).
pub struct LinkEvents {
    socket: Socket,
    receive: Vec<u8>,
}

impl LinkEvents {
    pub fn subscribe() -> Result<LinkEvents> {
        let fail = |reason: std::io::Error| Error::Rtnetlink {
            action: "subscribe to link events".into(),
            reason: reason.to_string(),
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket
            .bind(&SocketAddr::new(0, libc::RTMGRP_LINK as u32))
            .map_err(fail)?;
        socket.set_non_blocking(true).map_err(fail)?;
        Ok(LinkEvents {
            socket,
            receive: vec![0; 1 << 16],
        })
    }

    /// The events since the last call, oldest first; never blocks. When the kernel dropped
    /// notifications because they were not read fast enough (ENOBUFS), the caller should
    /// compare a fresh [`Interfaces::poll`] with what it knows: that is reported as an error.
    pub fn pending(&mut self) -> Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        loop {
            let size = match self.socket.recv(&mut &mut self.receive[..], 0) {
                Ok(size) => size,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(events),
                Err(err) => {
                    return Err(Error::Rtnetlink {
                        action: "read link events".into(),
                        reason: err.to_string(),
                    })
                }
            };
            parse_events(&self.receive[..size], &mut events);
        }
    }
}

/// The socket, for a caller that waits on it with poll(2) or tokio's `AsyncFd`.
impl std::os::fd::AsFd for LinkEvents {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn parse_events(mut buf: &[u8], events: &mut Vec<LinkEvent>) {
    while !buf.is_empty() {
        let Ok(message) = <NetlinkMessage<RouteNetlinkMessage>>::deserialize(buf) else {
            return;
        };
        let length = message.header.length as usize;
        let name_of = |link: &LinkMessage| {
            link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        };
        match message.payload {
            // The link's own notifications are AF_UNSPEC. Those of one protocol on it (IPv6
            // autoconfiguration on a new container's veth, a bridge port's state) change
            // neither its name nor its state.
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link))
                if link.header.interface_family != AddressFamily::Unspec => {}
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                if let Some(name) = name_of(&link) {
                    let sampled = sample(&link);
                    events.push(LinkEvent::New {
                        ifindex: link.header.index,
                        name,
                        up: sampled.as_ref().is_some_and(|s| s.up),
                        link: sampled,
                    });
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                events.push(LinkEvent::Gone {
                    ifindex: link.header.index,
                    name: name_of(&link).unwrap_or_default(),
                });
            }
            _ => {}
        }
        if length == 0 || length > buf.len() {
            return;
        }
        buf = &buf[length..];
    }
}

#[cfg(test)]
mod tests;
