//! NAT: the original and reply tuples of a connection as conntrack knows them, so a flow seen
//! translated on the uplink (host:40142 -> server:3129) shows where it really came from
//! (a container's 172.17.0.2:53312).
//!
//! One ctnetlink GET (IPCTNL_MSG_CT_GET) per tuple not yet known, never a dump of the whole
//! table: a NAT host can hold a hundred thousand entries. Answers, found or not, are cached
//! for a while in a bounded cache. The netlink socket is opened inside the network namespace
//! asked for (a container's, to follow a second NAT hop), and keeps answering for it.

use std::{
    collections::HashMap,
    fs::File,
    io::ErrorKind,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_netfilter::{
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple},
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NetlinkAddr};

use crate::error::{Error, Result};

/// One direction of a connection: protocol number and both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub protocol: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl FlowTuple {
    /// The same connection seen from the other side.
    pub fn inverted(&self) -> FlowTuple {
        FlowTuple {
            protocol: self.protocol,
            src: self.dst,
            dst: self.src,
        }
    }
}

/// A connection as conntrack tracks it. Without NAT the reply is the original inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatEntry {
    pub original: FlowTuple,
    pub reply: FlowTuple,
}

impl NatEntry {
    pub fn is_translated(&self) -> bool {
        self.reply != self.original.inverted()
    }
}

struct Cached {
    entry: Option<NatEntry>,
    at: Instant,
}

/// Per-tuple conntrack lookups in one network namespace, cached.
pub struct Conntrack {
    socket: Socket,
    namespace: String,
    cache: HashMap<FlowTuple, Cached>,
    capacity: usize,
    ttl: Duration,
    sequence: u32,
}

impl Conntrack {
    /// Opens ctnetlink in the network namespace at `namespace` (a `/proc/<pid>/ns/net` or
    /// `/run/netns/<name>` path), or in the daemon's own with `None`. At most `capacity`
    /// answers are kept, each for `ttl`.
    pub fn open(namespace: Option<&Path>, capacity: usize, ttl: Duration) -> Result<Conntrack> {
        let name = namespace.map_or("the host's network namespace".to_string(), |p| {
            format!("network namespace {}", p.display())
        });
        let socket = match namespace {
            None => socket(),
            Some(path) => socket_in(path),
        }
        .map_err(|err| classify(&name, err))?;
        Ok(Conntrack {
            socket,
            namespace: name,
            cache: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
            sequence: 0,
        })
    }

    /// The connection a packet with tuple `seen` belongs to, in either direction: the tuple
    /// as-is (a packet of the original direction, or one not translated) or inverted (a
    /// packet whose reply tuple conntrack holds, e.g. after source NAT on the way out).
    /// `Ok(None)` when conntrack tracks no such connection, or its protocol has no ports.
    pub fn lookup(&mut self, seen: &FlowTuple) -> Result<Option<NatEntry>> {
        if let Some(cached) = self.cache.get(seen) {
            if cached.at.elapsed() < self.ttl {
                return Ok(cached.entry);
            }
        }
        let mut entry = self.get(seen)?;
        if entry.is_none() {
            entry = self.get(&seen.inverted())?;
        }
        self.remember(*seen, entry);
        Ok(entry)
    }

    fn remember(&mut self, tuple: FlowTuple, entry: Option<NatEntry>) {
        if self.cache.len() >= self.capacity {
            let ttl = self.ttl;
            self.cache.retain(|_, c| c.at.elapsed() < ttl);
        }
        if self.cache.len() >= self.capacity {
            // Still full of live answers: start over rather than grow; a miss costs one GET.
            self.cache.clear();
        }
        self.cache.insert(
            tuple,
            Cached {
                entry,
                at: Instant::now(),
            },
        );
    }

    /// One IPCTNL_MSG_CT_GET for `tuple`.
    fn get(&mut self, tuple: &FlowTuple) -> Result<Option<NatEntry>> {
        let Some(protocol) = protocol(tuple.protocol) else {
            return Ok(None);
        };
        let family = match tuple.src.ip() {
            IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
            IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = self.sequence;
        let attributes = vec![ConntrackAttribute::CtaTupleOrig(to_attributes(
            tuple, protocol,
        ))];
        let mut request = NetlinkMessage::new(
            header,
            NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                ConntrackMessage::Get(attributes),
            )
            .into(),
        );
        request.finalize();
        let mut buf = vec![0; request.buffer_len()];
        request.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|err| classify(&self.namespace, err))?;
        self.answer()
    }

    /// Reads the answer to the last request: the entry, or none when the kernel says ENOENT.
    fn answer(&mut self) -> Result<Option<NatEntry>> {
        let mut receive = vec![0u8; 1 << 16];
        loop {
            let size = self
                .socket
                .recv(&mut &mut receive[..], 0)
                .map_err(|err| classify(&self.namespace, err))?;
            let mut offset = 0;
            while offset < size {
                let message =
                    <NetlinkMessage<NetfilterMessage>>::deserialize(&receive[offset..size])
                        .map_err(|err| Error::Conntrack {
                            namespace: self.namespace.clone(),
                            reason: format!("unreadable answer: {err}"),
                        })?;
                let length = message.header.length as usize;
                if message.header.sequence_number == self.sequence {
                    match message.payload {
                        NetlinkPayload::InnerMessage(NetfilterMessage {
                            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                            ..
                        }) => return Ok(entry_of(&attrs)),
                        NetlinkPayload::Error(err) => {
                            let code = err.code.map_or(0, |c| -c.get());
                            if code == libc::ENOENT {
                                return Ok(None);
                            }
                            let err = std::io::Error::from_raw_os_error(code);
                            return Err(classify(&self.namespace, err));
                        }
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
}

fn socket() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    // A lookup must not hang the drain if the kernel never answers.
    set_receive_timeout(&socket, Duration::from_secs(1))?;
    Ok(socket)
}

/// A socket created by a thread that entered `namespace`: it belongs to that namespace for
/// its whole life, whatever thread uses it later.
fn socket_in(namespace: &Path) -> std::io::Result<Socket> {
    let file = File::open(namespace)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns affects only this short-lived thread; `file` is open.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                socket()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket descriptor and a timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const value).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// conntrack missing from the kernel (no NETLINK_NETFILTER, or no ctnetlink subsystem) is one
/// error; anything else is about this lookup or namespace.
fn classify(namespace: &str, err: std::io::Error) -> Error {
    match err.raw_os_error() {
        Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT) => {
            Error::ConntrackUnavailable {
                reason: err.to_string(),
            }
        }
        _ if err.kind() == ErrorKind::WouldBlock => Error::Conntrack {
            namespace: namespace.to_string(),
            reason: "no answer within a second".to_string(),
        },
        _ => Error::Conntrack {
            namespace: namespace.to_string(),
            reason: err.to_string(),
        },
    }
}

/// Protocols whose conntrack tuple is made of ports.
fn protocol(number: u8) -> Option<Protocol> {
    // TCP, UDP, DCCP, SCTP, UDP-Lite.
    matches!(number, 6 | 17 | 33 | 132 | 136).then(|| Protocol::from(number))
}

fn to_attributes(tuple: &FlowTuple, protocol: Protocol) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(tuple.src.ip()),
            IPTuple::DestinationAddress(tuple.dst.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(protocol),
            ProtoTuple::SourcePort(tuple.src.port()),
            ProtoTuple::DestinationPort(tuple.dst.port()),
        ]),
    ]
}

fn entry_of(attributes: &[ConntrackAttribute]) -> Option<NatEntry> {
    let mut original = None;
    let mut reply = None;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(t) => original = from_attributes(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = from_attributes(t),
            _ => {}
        }
    }
    Some(NatEntry {
        original: original?,
        reply: reply?,
    })
}

fn from_attributes(tuple: &[Tuple]) -> Option<FlowTuple> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, 0, 0);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(p) => protocol = Some(u8::from(*p)),
                        ProtoTuple::SourcePort(p) => sport = *p,
                        ProtoTuple::DestinationPort(p) => dport = *p,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(FlowTuple {
        protocol: protocol?,
        src: SocketAddr::new(src?, sport),
        dst: SocketAddr::new(dst?, dport),
    })
}

#[cfg(test)]
mod tests;
