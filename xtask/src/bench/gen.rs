//! Traffic generators that iperf3 does not cover, run as `xtask bench gen <kind>` (a re-exec of
//! the xtask binary, so each one is a process of its own that trafficd attributes by pid and
//! comm). Each does one bounded thing and prints one JSON line saying what it did.
//!
//! - `churn-server` / `churn-client`: thousands of short TCP connections per second, each from
//!   a short-lived process (the client forks one child per connection);
//! - `flows`: one UDP socket sending one small datagram to each of N distinct loopback
//!   destinations (127.x.y.z), cycling, so that N distinct flows are alive at once.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn,
};
use nix::sys::time::TimeVal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::json;

/// Comm of the churn client's processes (the parent and every child).
pub const CHURN_CLIENT_COMM: &str = "bench-churn-c";
pub const CHURN_SERVER_COMM: &str = "bench-churn-s";
pub const FLOWS_COMM: &str = "bench-flows";
/// Payload of one flow-scale datagram.
pub const FLOW_PAYLOAD: usize = 16;

#[derive(Subcommand, Clone, Debug)]
pub enum GenCmd {
    /// Accept connections; read a request, answer, close (the server closes first).
    ChurnServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Exit after this many seconds even if never stopped.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
        /// Written with the bound address once listening.
        #[arg(long)]
        ready_file: PathBuf,
    },
    /// Fork one short-lived child per connection, at most `parallel` at a time.
    ChurnClient {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long, default_value_t = 16)]
        parallel: usize,
        #[arg(long, default_value_t = 100_000)]
        max_conns: u64,
        #[arg(long)]
        seconds: f64,
    },
    /// Send one datagram to each of `count` loopback destinations, round after round, and
    /// receive them; or, with --one-way-to, to addresses from that one on, unreceived.
    Flows {
        #[arg(long)]
        count: u64,
        /// Keep cycling for this long (at least one full round is always sent).
        #[arg(long)]
        seconds: f64,
        /// Datagrams per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Stop after this many seconds even if the first round is not complete.
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
        /// Send to this address + i (port 9) and receive nothing: the network must route them
        /// to a host that drops them.
        #[arg(long)]
        one_way_to: Option<Ipv4Addr>,
    },
}

/// Runs `flows` one-way flows from network namespace `ns` to ONE_WAY_NETWORK + i (routed
/// to a host that drops them), round after round for `seconds`, bounded by
/// FLOWS_MAX_SECONDS; for the bench's side subcommands, which run the generator by itself.
pub fn one_way_flows(xtask: &std::path::Path, ns: &str, flows: u64, seconds: f64) -> Result<()> {
    use super::netns::ONE_WAY_NETWORK;
    use super::scenarios::FLOWS_MAX_SECONDS;
    let started = Instant::now();
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(xtask)
        .args(["bench", "gen", "flows", "--count", &flows.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--rate", &flows.to_string()])
        .args(["--max-seconds", &FLOWS_MAX_SECONDS.to_string()])
        .args(["--one-way-to", &ONE_WAY_NETWORK.0.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("could not run the flow generator")?;
    if !status.success() {
        bail!(
            "the flow generator failed ({status}) after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub fn run(cmd: GenCmd) -> Result<()> {
    match cmd {
        GenCmd::ChurnServer {
            listen,
            payload,
            max_seconds,
            ready_file,
        } => churn_server(listen, payload, max_seconds, &ready_file),
        GenCmd::ChurnClient {
            to,
            payload,
            parallel,
            max_conns,
            seconds,
        } => churn_client(to, payload, parallel.max(1), max_conns, seconds),
        GenCmd::Flows {
            count,
            seconds,
            rate,
            max_seconds,
            one_way_to,
        } => flows(count, seconds, rate, max_seconds, one_way_to),
    }
}

/// prctl(PR_SET_NAME): the comm trafficd reports for this process (longer names are cut).
fn set_comm(name: &str) {
    if let Ok(name) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// An IPv4 TCP listener with a deep backlog (std's is 128, too short for bursts of connects).
fn deep_listener(addr: SocketAddrV4) -> Result<TcpListener> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).with_context(|| format!("bind {addr}"))?;
    let backlog = Backlog::new(4096).context("backlog")?;
    listen(&fd, backlog).context("listen")?;
    Ok(TcpListener::from(fd))
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn v4(addr: SocketAddr) -> Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(addr) => Ok(addr),
        SocketAddr::V6(_) => bail!("the generators use IPv4 only"),
    }
}

fn churn_server(
    listen: SocketAddr,
    payload: usize,
    max_seconds: u64,
    ready_file: &PathBuf,
) -> Result<()> {
    set_comm(CHURN_SERVER_COMM);
    let listener = deep_listener(v4(listen)?)?;
    // accept(2) honours SO_RCVTIMEO: the accept loops wake up to check the deadline.
    let timeout = TimeVal::new(0, 200_000);
    setsockopt(&listener, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
    std::fs::write(ready_file, listener.local_addr()?.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(max_seconds);
    let served = Arc::new(AtomicU64::new(0));
    let listener = Arc::new(listener);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (listener, served) = (listener.clone(), served.clone());
            thread::spawn(move || {
                let answer = vec![b'r'; payload];
                let mut request = vec![0u8; payload];
                while Instant::now() < deadline {
                    let Ok((mut conn, _)) = listener.accept() else {
                        continue;
                    };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                    if conn.read_exact(&mut request).is_ok() && conn.write_all(&answer).is_ok() {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    println!("{}", json!({ "served": served.load(Ordering::Relaxed) }));
    Ok(())
}

/// One connection in a forked child: connect, send the request, read the answer to EOF.
/// Exit code 0 when the whole answer arrived.
fn churn_child(to: SocketAddr, payload: usize) -> i32 {
    let attempt = || -> std::io::Result<usize> {
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.set_write_timeout(Some(Duration::from_secs(2)))?;
        conn.write_all(&vec![b'q'; payload])?;
        let mut answer = Vec::with_capacity(payload);
        conn.read_to_end(&mut answer)?;
        Ok(answer.len())
    };
    match attempt() {
        Ok(n) if n == payload => 0,
        _ => 1,
    }
}

/// Children of the churn client that are still running, and how the finished ones ended.
#[derive(Default)]
struct Children {
    running: HashSet<Pid>,
    ok: u64,
    failed: u64,
}

impl Children {
    /// Reaps one finished child; with `block`, waits for one. False when none was reaped.
    fn reap(&mut self, block: bool) -> bool {
        let flags = (!block).then_some(WaitPidFlag::WNOHANG);
        let (pid, ok) = match waitpid(None, flags) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code == 0),
            Ok(WaitStatus::Signaled(pid, ..)) => (pid, false),
            // Nothing finished yet (WNOHANG), no children left, or a stop we did not ask for.
            _ => return false,
        };
        self.running.remove(&pid);
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        true
    }
}

fn churn_client(
    to: SocketAddr,
    payload: usize,
    parallel: usize,
    max_conns: u64,
    seconds: f64,
) -> Result<()> {
    set_comm(CHURN_CLIENT_COMM);
    let started = Instant::now();
    let spawn_until = started + Duration::from_secs_f64(seconds);
    // Children end on their own within ~6 s (their socket timeouts); this bounds the reaping.
    let hard_deadline = spawn_until + Duration::from_secs(15);
    let mut children = Children::default();
    let mut forked = 0u64;
    while Instant::now() < spawn_until && forked < max_conns {
        while children.running.len() >= parallel {
            children.reap(true);
        }
        // SAFETY: this process is single-threaded, so the child may run arbitrary code; it
        // leaves through _exit and never returns into the parent's loop.
        match unsafe { fork() }.context("fork")? {
            ForkResult::Child => {
                let code = churn_child(to, payload);
                // SAFETY: ends the child at once (nix does not wrap _exit), without running
                // the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                forked += 1;
                children.running.insert(child);
            }
        }
        while children.reap(false) {}
    }
    let elapsed = started.elapsed().as_secs_f64();
    while !children.running.is_empty() {
        if Instant::now() >= hard_deadline {
            for pid in &children.running {
                // A child of ours that has not been reaped: the pid is still its.
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
        if !children.reap(false) {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let p = payload as u64;
    println!(
        "{}",
        json!({
            "pid": std::process::id(),
            "processes": forked,
            "connections_ok": children.ok,
            "connections_failed": children.failed,
            "seconds": elapsed,
            "payload_sent": children.ok * p,
            "payload_received": children.ok * p,
        })
    );
    Ok(())
}

/// The i-th flow destination: `first` + i.
fn flow_destination(first: Ipv4Addr, i: u64, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::from(first) + i as u32), port)
}

/// Loopback flows start here (127.0.0.0/8 is all local on Linux).
const LOOPBACK_FLOWS: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 0);
/// The discard port, for one-way flows.
const DISCARD_PORT: u16 = 9;

fn flows(
    count: u64,
    seconds: f64,
    rate: u64,
    max_seconds: u64,
    one_way_to: Option<Ipv4Addr>,
) -> Result<()> {
    if count == 0 || count > 8_000_000 {
        bail!("--count must be 1..=8000000");
    }
    if one_way_to.is_some_and(|first| u64::from(u32::from(first)) + count > 1 << 32) {
        bail!("--one-way-to: {count} addresses from there run past 255.255.255.255");
    }
    set_comm(FLOWS_COMM);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (first, port, reader) = match one_way_to {
        Some(first) => (first, DISCARD_PORT, None),
        None => {
            let (port, reader) = receive_flows(stop.clone(), received.clone())?;
            (LOOPBACK_FLOWS, port, Some(reader))
        }
    };

    let sender = match one_way_to {
        Some(_) => UdpSocket::bind("0.0.0.0:0")?,
        None => UdpSocket::bind("127.0.0.1:0")?,
    };
    // Best effort: without the larger buffers the generator is only slower.
    let _ = setsockopt(&sender, sockopt::SndBufForce, &(8 << 20));
    let destinations: Vec<libc::sockaddr_in> = (0..count)
        .map(|i| sockaddr_in(flow_destination(first, i, port)))
        .collect();
    let run_for = Duration::from_secs_f64(seconds);
    let (sent, elapsed) = send_flows(&sender, &destinations, rate, run_for, max_seconds)?;
    // Let the reader take what is queued, then stop it.
    if let Some(reader) = reader {
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let _ = reader.join();
    }
    println!(
        "{}",
        json!({
            "pid": std::process::id(),
            "count": count,
            "sent": sent,
            "received": received.load(Ordering::Relaxed),
            "rounds": sent as f64 / count as f64,
            "complete": sent >= count,
            "seconds": elapsed,
            "payload": FLOW_PAYLOAD,
        })
    );
    Ok(())
}

/// Sends one datagram to each destination in turn, `rate` a second (0: as fast as it goes),
/// in batches of sendmmsg, until every flow got one and `run_for` passed, or `max_seconds`.
/// Returns the datagrams sent and the seconds it took.
fn send_flows(
    sender: &UdpSocket,
    destinations: &[libc::sockaddr_in],
    rate: u64,
    run_for: Duration,
    max_seconds: u64,
) -> Result<(u64, f64)> {
    let count = destinations.len() as u64;
    let payload = [b'f'; FLOW_PAYLOAD];
    const BATCH: usize = 512;
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let started = Instant::now();
    let hard_deadline = started + run_for.max(Duration::from_secs(max_seconds));
    let (mut sent, mut next) = (0u64, 0usize);
    // SAFETY: mmsghdr is plain data; zeroed is a valid "no name, no control" header.
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    loop {
        let now = Instant::now();
        if (now - started >= run_for && sent >= count) || now >= hard_deadline {
            break;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = now - started;
            if due > elapsed {
                thread::sleep((due - elapsed).min(Duration::from_millis(10)));
                continue;
            }
        }
        let n = BATCH.min(destinations.len() - next);
        for (header, destination) in headers[..n].iter_mut().zip(&destinations[next..next + n]) {
            header.msg_hdr.msg_name = destination as *const _ as *mut libc::c_void;
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            header.msg_hdr.msg_iov = &mut iov;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_len = 0;
        }
        // SAFETY: the n headers point at live sockaddrs, one live iovec and payload buffer.
        let done = unsafe {
            libc::sendmmsg(
                sender.as_raw_fd(),
                headers.as_mut_ptr(),
                n as libc::c_uint,
                0,
            )
        };
        if done < 0 {
            let err = std::io::Error::last_os_error();
            if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
                || err.raw_os_error() == Some(libc::ENOBUFS)
            {
                thread::yield_now();
                continue;
            }
            return Err(err).context("sendmmsg");
        }
        sent += done as u64;
        next = (next + done as usize) % destinations.len();
    }
    Ok((sent, started.elapsed().as_secs_f64()))
}

/// Receives datagrams for every 127.x.y.z on one wildcard socket (kernel-chosen port), counting
/// them until `stop`. Returns the port and the reading thread.
fn receive_flows(
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> Result<(u16, thread::JoinHandle<()>)> {
    let receiver = UdpSocket::bind("0.0.0.0:0")?;
    let port = receiver.local_addr()?.port();
    // SO_RCVBUFFORCE: root may exceed the sysctl limit; best effort, like the sender's.
    let _ = setsockopt(&receiver, sockopt::RcvBufForce, &(32 << 20));
    receiver.set_read_timeout(Some(Duration::from_millis(100)))?;
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            match receiver.recv(&mut buf) {
                Ok(_) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    });
    Ok((port, reader))
}
