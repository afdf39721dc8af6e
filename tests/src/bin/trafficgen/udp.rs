//! The UDP subcommands: a sink that counts what arrives and a paced sender.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::sys::set_rcvbuf;
use crate::{Ctx, Res};

/// Receive datagrams until `expect` bytes arrived or the timeout passed.
pub fn sink(ctx: &Ctx, listen: SocketAddr, expect: u64, r: &mut Map<String, Value>) -> Res<()> {
    r.insert("op".into(), json!("udp-sink"));
    let s = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    // A large receive buffer so a burst is not dropped before we read it
    // (SO_RCVBUFFORCE ignores rmem_max; we are root in the tests).
    set_rcvbuf(&s, 8 << 20);
    let local = s.local_addr().map_err(|e| e.to_string())?;
    r.insert("local".into(), json!(local.to_string()));
    ctx.ready(local)?;
    let deadline = Instant::now() + ctx.timeout;
    let mut buf = vec![0u8; 65536];
    let (mut got, mut dgrams) = (0u64, 0u64);
    let mut peer = None;
    while got < expect {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                got += n as u64;
                dgrams += 1;
                peer = Some(from);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    r.insert("peer".into(), json!(peer.map(|p| p.to_string())));
    r.insert("bytes_received".into(), json!(got));
    r.insert("datagrams_received".into(), json!(dgrams));
    r.insert("bytes_sent".into(), json!(0));
    Ok(())
}

/// Send `bytes` as datagrams of `datagram` bytes on a connected socket, sleeping 1 ms after
/// every `pace_every` of them (0: never) so that the receiver keeps up.
pub fn send(
    to: SocketAddr,
    bytes: u64,
    datagram: usize,
    pace_every: u64,
    r: &mut Map<String, Value>,
) -> Res<()> {
    r.insert("op".into(), json!("udp-send"));
    let bind = match to {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    s.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?;
    r.insert("local".into(), json!(local.to_string()));
    r.insert("peer".into(), json!(to.to_string()));
    let buf = vec![0x5au8; datagram.max(1)];
    let (mut sent, mut dgrams) = (0u64, 0u64);
    while sent < bytes {
        let n = ((bytes - sent) as usize).min(buf.len());
        match s.send(&buf[..n]) {
            Ok(w) => {
                sent += w as u64;
                dgrams += 1;
            }
            // A full socket buffer (ENOBUFS) is a retry, not data: nothing left the host.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == ErrorKind::WouldBlock =>
            {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("send: {e}")),
        }
        if pace_every > 0 && dgrams % pace_every == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    r.insert("bytes_sent".into(), json!(sent));
    r.insert("datagrams_sent".into(), json!(dgrams));
    r.insert("bytes_received".into(), json!(0));
    Ok(())
}
