//! The blocking socket and file steps every subcommand is made of, each bounded in time.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::Res;

pub fn write_ready(path: Option<&Path>, addr: SocketAddr) -> Res<()> {
    if let Some(p) = path {
        // Write then rename, so a reader never sees a half-written file.
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, p).map_err(|e| format!("rename {}: {e}", p.display()))?;
    }
    Ok(())
}

pub fn addrs(r: &mut Map<String, Value>, s: &TcpStream) {
    r.insert(
        "local".into(),
        json!(s.local_addr().ok().map(|a| a.to_string())),
    );
    r.insert(
        "peer".into(),
        json!(s.peer_addr().ok().map(|a| a.to_string())),
    );
}

/// Connect, retrying while the listener is not there yet (bounded).
pub fn connect(to: SocketAddr, timeout: Duration) -> Res<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("connect {to}: {e}")),
        }
    }
}

pub fn accept(l: &TcpListener, timeout: Duration) -> Res<TcpStream> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err("accept: timed out".into()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// `write_n`, sleeping after each chunk so that `rate` bytes per second are not exceeded.
pub fn write_paced(s: &mut TcpStream, n: u64, chunk: usize, rate: u64) -> Res<()> {
    if rate == 0 {
        return write_n(s, n, chunk);
    }
    let start = Instant::now();
    let mut written = 0u64;
    while written < n {
        let k = (n - written).min(chunk.max(1) as u64);
        write_n(s, k, chunk)?;
        written += k;
        let due = Duration::from_secs_f64(written as f64 / rate as f64);
        std::thread::sleep(due.saturating_sub(start.elapsed()));
    }
    Ok(())
}

pub fn write_n(s: &mut TcpStream, n: u64, chunk: usize) -> Res<()> {
    let buf = vec![0xa5u8; chunk.max(1)];
    let mut left = n;
    while left > 0 {
        let k = (left as usize).min(buf.len());
        s.write_all(&buf[..k]).map_err(|e| format!("write: {e}"))?;
        left -= k as u64;
    }
    Ok(())
}

pub fn read_to_eof(s: &mut TcpStream, timeout: Duration) -> Res<u64> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    let mut got = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "read: no EOF within {timeout:?} ({got} bytes read)"
            ));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "read: no EOF within {timeout:?} ({got} bytes read)"
                ))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

pub fn wait_for_file(p: &Path, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear within {timeout:?}", p.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
