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

mod io;
mod sys;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// A forwarder, as a proxy is: listen (write --ready-file), accept one connection,
    /// connect to --to and copy what arrives there until EOF; then keep listening until
    /// --wait-file exists, so the process is still a listener when it is looked at.
    TcpForward {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        wait_file: PathBuf,
    },
}

#[derive(Args)]
pub struct SendArgs {
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
    sndbuf: Option<usize>,
}

/// Errors are one line for stderr.
type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let t0 = Instant::now();
    let cli = Cli::parse();
    if let Some(name) = &cli.name {
        if let Err(e) = sys::set_comm(name) {
            eprintln!("trafficgen: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&cli) {
        Ok(mut report) => {
            report.insert("pid".into(), json!(std::process::id()));
            report.insert("comm".into(), json!(sys::comm()));
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

/// What every subcommand needs besides its own arguments.
pub struct Ctx {
    /// Bound on every blocking wait.
    pub timeout: Duration,
    ready_file: Option<PathBuf>,
}

impl Ctx {
    /// Writes the ready file, if any, with the bound or connected address.
    pub fn ready(&self, addr: SocketAddr) -> Res<()> {
        io::write_ready(self.ready_file.as_deref(), addr)
    }
}

fn run(cli: &Cli) -> Res<Map<String, Value>> {
    let ctx = Ctx {
        timeout: Duration::from_millis(cli.timeout_ms),
        ready_file: cli.ready_file.clone(),
    };
    let mut r = Map::new();
    match &cli.cmd {
        Cmd::TcpSink { listen } => tcp::sink(&ctx, *listen, &mut r)?,
        Cmd::TcpSend(args) => tcp::send(&ctx, args, &mut r)?,
        Cmd::TcpServe {
            listen,
            bytes,
            chunk,
        } => tcp::serve(&ctx, *listen, *bytes, *chunk, &mut r)?,
        Cmd::TcpRecv { to } => tcp::recv(&ctx, *to, &mut r)?,
        Cmd::UdpSink { listen, expect } => udp::sink(&ctx, *listen, *expect, &mut r)?,
        Cmd::UdpSend {
            to,
            bytes,
            datagram,
            pace_every,
        } => udp::send(*to, *bytes, *datagram, *pace_every, &mut r)?,
        Cmd::ForkSend {
            to,
            parent_bytes,
            child_bytes,
            child_name,
        } => {
            let bytes = (*parent_bytes, *child_bytes);
            tcp::fork_send(&ctx, *to, bytes, child_name.as_deref(), &mut r)?
        }
        Cmd::Hold {
            to,
            bytes,
            wait_file,
        } => tcp::hold(&ctx, *to, *bytes, wait_file, &mut r)?,
        Cmd::HoldRecv { listen, wait_file } => tcp::hold_recv(&ctx, *listen, wait_file, &mut r)?,
        Cmd::TcpForward {
            listen,
            to,
            wait_file,
        } => tcp::forward(&ctx, (*listen, *to), wait_file, &mut r)?,
    }
    Ok(r)
}
