//! trafficgen: the traffic the integration tests measure.
//!
//! Each subcommand runs as its own process (so the daemon sees a distinct pid and
//! comm), does one bounded thing, prints exactly one JSON line on stdout saying
//! what it did (pid, comm, bytes sent and received, socket addresses) and exits 0.
//! Errors go to stderr with exit code 1.
//!
//! `--name NAME` (any subcommand) sets the process comm with prctl(PR_SET_NAME)
//! before any socket exists, so every byte is sent under that comm.
//! `--ready-file PATH` (listeners and `hold`) is written once the socket is
//! bound/connected; it contains the bound local address, so tests can listen on
//! port 0 and read back the port without a race.
//!
//! Every wait is bounded (`--timeout-ms`, default 30 s).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Parser)]
#[command(about = "Generates known traffic for trafficd's integration tests")]
struct Cli {
    /// Process name (comm, at most 15 bytes) to set with prctl(PR_SET_NAME).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Bound on every blocking wait, in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Write the local socket address to this file once bound/connected.
    #[arg(long, global = true)]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept one TCP connection and read it to EOF.
    TcpSink {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Connect, write N bytes, shut down the write side, wait for the peer's EOF.
    TcpSend(SendArgs),
    /// Accept one TCP connection and WRITE N bytes to it (the client receives).
    TcpServe {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 65536)]
        chunk: usize,
    },
    /// Connect and read to EOF (the receiving client of tcp-serve).
    TcpRecv {
        #[arg(long)]
        to: SocketAddr,
    },
    /// Receive UDP datagrams until N bytes arrived or the timeout passed.
    UdpSink {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        expect: u64,
    },
    /// Send N bytes as datagrams of a fixed size on a connected UDP socket.
    UdpSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 1000)]
        datagram: usize,
        /// Sleep 1 ms after every this many datagrams so the receiver keeps up (0: never).
        #[arg(long, default_value_t = 32)]
        pace_every: u64,
    },
    /// One TCP socket shared by a parent and a forked child: the child writes B
    /// bytes and exits, then the parent writes A bytes.
    ForkSend {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        parent_bytes: u64,
        #[arg(long)]
        child_bytes: u64,
        /// comm of the child (set right after fork, before it writes).
        #[arg(long)]
        child_name: Option<String>,
    },
    /// Connect first (write --ready-file), wait until --wait-file exists, then send N bytes.
    Hold {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long)]
        wait_file: PathBuf,
    },
    /// Listen (write --ready-file), accept one connection, then do NOT read until
    /// --wait-file exists; then read to EOF. Bytes arrive on a socket whose owner
    /// never sent or received in process context while they arrived.
    HoldRecv {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        wait_file: PathBuf,
    },
}

#[derive(Args)]
struct SendArgs {
    #[arg(long)]
    to: SocketAddr,
    #[arg(long)]
    bytes: u64,
    #[arg(long, default_value_t = 65536)]
    chunk: usize,
    /// Sleep this long before exiting.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Exit right after shutdown(SHUT_WR) instead of waiting for the peer's EOF
    /// (the kernel still delivers what is queued).
    #[arg(long)]
    no_wait: bool,
    /// Write at most this many bytes per second on average (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Set the send buffer to this many bytes (SO_SNDBUFFORCE), so that much can wait in the
    /// kernel after the process is gone.
    #[arg(long)]
    sndbuf: Option<libc::c_int>,
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let t0 = Instant::now();
    let cli = Cli::parse();
    if let Some(name) = &cli.name {
        if let Err(e) = set_comm(name) {
            eprintln!("trafficgen: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&cli) {
        Ok(mut report) => {
            report.insert("pid".into(), json!(std::process::id()));
            report.insert("comm".into(), json!(comm()));
            // From the start of main to the report: how long the process lived, near enough.
            report.insert(
                "elapsed_ms".into(),
                json!(t0.elapsed().as_secs_f64() * 1000.0),
            );
            println!("{}", Value::Object(report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trafficgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Res<Map<String, Value>> {
    let timeout = Duration::from_millis(cli.timeout_ms);
    let ready = |addr: SocketAddr| write_ready(cli.ready_file.as_deref(), addr);
    let mut r = Map::new();
    match &cli.cmd {
        Cmd::TcpSink { listen } => {
            r.insert("op".into(), json!("tcp-sink"));
            let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            ready(l.local_addr().map_err(|e| e.to_string())?)?;
            let mut s = accept(&l, timeout)?;
            addrs(&mut r, &s);
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_received".into(), json!(got));
            r.insert("bytes_sent".into(), json!(0));
        }
        Cmd::TcpSend(a) => {
            r.insert("op".into(), json!("tcp-send"));
            let mut s = connect(a.to, timeout)?;
            if let Some(bytes) = a.sndbuf {
                set_sndbuf(&s, bytes);
            }
            addrs(&mut r, &s);
            ready(s.local_addr().map_err(|e| e.to_string())?)?;
            write_paced(&mut s, a.bytes, a.chunk, a.rate)?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let got = if a.no_wait {
                0
            } else {
                read_to_eof(&mut s, timeout)?
            };
            // With --no-wait this is taken before the peer acknowledged everything.
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_sent".into(), json!(a.bytes));
            r.insert("bytes_received".into(), json!(got));
            std::thread::sleep(Duration::from_millis(a.hold_ms));
        }
        Cmd::TcpServe {
            listen,
            bytes,
            chunk,
        } => {
            r.insert("op".into(), json!("tcp-serve"));
            let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            ready(l.local_addr().map_err(|e| e.to_string())?)?;
            let mut s = accept(&l, timeout)?;
            addrs(&mut r, &s);
            write_n(&mut s, *bytes, *chunk)?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_sent".into(), json!(bytes));
            r.insert("bytes_received".into(), json!(got));
        }
        Cmd::TcpRecv { to } => {
            r.insert("op".into(), json!("tcp-recv"));
            let mut s = connect(*to, timeout)?;
            addrs(&mut r, &s);
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_sent".into(), json!(0));
            r.insert("bytes_received".into(), json!(got));
        }
        Cmd::UdpSink { listen, expect } => {
            r.insert("op".into(), json!("udp-sink"));
            let s = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            // A large receive buffer so a burst is not dropped before we read it
            // (SO_RCVBUFFORCE ignores rmem_max; we are root in the tests).
            set_rcvbuf(&s, 8 << 20);
            let local = s.local_addr().map_err(|e| e.to_string())?;
            r.insert("local".into(), json!(local.to_string()));
            ready(local)?;
            let deadline = Instant::now() + timeout;
            let mut buf = vec![0u8; 65536];
            let (mut got, mut dgrams) = (0u64, 0u64);
            let mut peer = None;
            while got < *expect {
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
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
            r.insert("peer".into(), json!(peer.map(|p| p.to_string())));
            r.insert("bytes_received".into(), json!(got));
            r.insert("datagrams_received".into(), json!(dgrams));
            r.insert("bytes_sent".into(), json!(0));
        }
        Cmd::UdpSend {
            to,
            bytes,
            datagram,
            pace_every,
        } => {
            r.insert("op".into(), json!("udp-send"));
            let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            let s = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
            s.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
            r.insert(
                "local".into(),
                json!(s.local_addr().map_err(|e| e.to_string())?.to_string()),
            );
            r.insert("peer".into(), json!(to.to_string()));
            let buf = vec![0x5au8; (*datagram).max(1)];
            let (mut sent, mut dgrams) = (0u64, 0u64);
            while sent < *bytes {
                let n = ((*bytes - sent) as usize).min(buf.len());
                match s.send(&buf[..n]) {
                    Ok(w) => {
                        sent += w as u64;
                        dgrams += 1;
                    }
                    // A full socket buffer (ENOBUFS) is a retry, not data: nothing left the host.
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENOBUFS)
                            || e.kind() == ErrorKind::WouldBlock =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("send: {e}")),
                }
                if *pace_every > 0 && dgrams % pace_every == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            r.insert("bytes_sent".into(), json!(sent));
            r.insert("datagrams_sent".into(), json!(dgrams));
            r.insert("bytes_received".into(), json!(0));
        }
        Cmd::ForkSend {
            to,
            parent_bytes,
            child_bytes,
            child_name,
        } => {
            r.insert("op".into(), json!("fork-send"));
            let mut s = connect(*to, timeout)?;
            addrs(&mut r, &s);
            // trafficgen is single-threaded, so fork() is safe here.
            let child = unsafe { libc::fork() };
            if child < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            if child == 0 {
                let code = match (|| -> Res<()> {
                    if let Some(n) = child_name {
                        set_comm(n)?;
                    }
                    write_n(&mut s, *child_bytes, 65536)
                })() {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("trafficgen fork child: {e}");
                        1
                    }
                };
                // _exit: do not run the parent's atexit handlers or flush its stdio twice.
                unsafe { libc::_exit(code) };
            }
            let mut status = 0;
            let w = unsafe { libc::waitpid(child, &mut status, 0) };
            if w != child {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err(format!("forked child failed: wait status {status:#x}"));
            }
            write_n(&mut s, *parent_bytes, 65536)?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("child_pid".into(), json!(child));
            r.insert("parent_bytes".into(), json!(parent_bytes));
            r.insert("child_bytes".into(), json!(child_bytes));
            r.insert("bytes_sent".into(), json!(parent_bytes + child_bytes));
            r.insert("bytes_received".into(), json!(got));
        }
        Cmd::Hold {
            to,
            bytes,
            wait_file,
        } => {
            r.insert("op".into(), json!("hold"));
            let mut s = connect(*to, timeout)?;
            addrs(&mut r, &s);
            ready(s.local_addr().map_err(|e| e.to_string())?)?;
            wait_for_file(wait_file, timeout)?;
            write_n(&mut s, *bytes, 65536)?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_sent".into(), json!(bytes));
            r.insert("bytes_received".into(), json!(got));
        }
        Cmd::HoldRecv { listen, wait_file } => {
            r.insert("op".into(), json!("hold-recv"));
            let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
            ready(l.local_addr().map_err(|e| e.to_string())?)?;
            let mut s = accept(&l, timeout)?;
            addrs(&mut r, &s);
            wait_for_file(wait_file, timeout)?;
            let got = read_to_eof(&mut s, timeout)?;
            r.insert("tcp_info".into(), tcp_info(&s));
            r.insert("bytes_sent".into(), json!(0));
            r.insert("bytes_received".into(), json!(got));
        }
    }
    Ok(r)
}

fn set_comm(name: &str) -> Res<()> {
    let mut buf = [0u8; 16];
    let b = name.as_bytes();
    if b.len() > 15 || b.contains(&0) {
        return Err(format!(
            "--name {name:?}: a comm is at most 15 bytes without NUL"
        ));
    }
    buf[..b.len()].copy_from_slice(b);
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_NAME): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

fn write_ready(path: Option<&Path>, addr: SocketAddr) -> Res<()> {
    if let Some(p) = path {
        // Write then rename, so a reader never sees a half-written file.
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, p).map_err(|e| format!("rename {}: {e}", p.display()))?;
    }
    Ok(())
}

fn addrs(r: &mut Map<String, Value>, s: &TcpStream) {
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
fn connect(to: SocketAddr, timeout: Duration) -> Res<TcpStream> {
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

fn accept(l: &TcpListener, timeout: Duration) -> Res<TcpStream> {
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
fn write_paced(s: &mut TcpStream, n: u64, chunk: usize, rate: u64) -> Res<()> {
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

fn write_n(s: &mut TcpStream, n: u64, chunk: usize) -> Res<()> {
    let buf = vec![0xa5u8; chunk.max(1)];
    let mut left = n;
    while left > 0 {
        let k = (left as usize).min(buf.len());
        s.write_all(&buf[..k]).map_err(|e| format!("write: {e}"))?;
        left -= k as u64;
    }
    Ok(())
}

fn read_to_eof(s: &mut TcpStream, timeout: Duration) -> Res<u64> {
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

fn wait_for_file(p: &Path, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear within {timeout:?}", p.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The kernel's own account of a TCP socket (getsockopt TCP_INFO): segments
/// in and out (retransmissions included) and retransmitted payload bytes, so
/// tests can tell headers and retransmissions apart from accounting errors.
fn tcp_info(s: &TcpStream) -> Value {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Value::Null;
    }
    json!({
        "segs_out": info.tcpi_segs_out,
        "segs_in": info.tcpi_segs_in,
        "data_segs_out": info.tcpi_data_segs_out,
        "data_segs_in": info.tcpi_data_segs_in,
        "total_retrans": info.tcpi_total_retrans,
        "bytes_sent": info.tcpi_bytes_sent,
        "bytes_retrans": info.tcpi_bytes_retrans,
        "bytes_acked": info.tcpi_bytes_acked,
        "bytes_received": info.tcpi_bytes_received,
        "snd_mss": info.tcpi_snd_mss,
    })
}

fn set_sndbuf(s: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let p = &bytes as *const libc::c_int as *const libc::c_void;
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            p,
            len,
        );
    }
}

fn set_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let p = &bytes as *const libc::c_int as *const libc::c_void;
    unsafe {
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
        }
    }
}
