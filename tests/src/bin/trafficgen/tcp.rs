//! The TCP subcommands: each fills the report with what it did.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use serde_json::{json, Map, Value};

use crate::io::{accept, addrs, connect, read_to_eof, wait_for_file, write_n, write_paced};
use crate::sys::{set_comm, set_sndbuf, tcp_info};
use crate::{Ctx, Res, SendArgs};

type Report = Map<String, Value>;

/// Accept one connection and read it to EOF.
pub fn sink(ctx: &Ctx, listen: SocketAddr, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("tcp-sink"));
    let mut s = listen_and_accept(ctx, listen)?;
    addrs(r, &s);
    let got = read_to_eof(&mut s, ctx.timeout)?;
    finish(r, &s, 0, got);
    Ok(())
}

/// Connect, write, shut down the write side and (unless --no-wait) wait for the peer's EOF.
pub fn send(ctx: &Ctx, a: &SendArgs, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("tcp-send"));
    let mut s = connect(a.to, ctx.timeout)?;
    if let Some(bytes) = a.sndbuf {
        set_sndbuf(&s, bytes);
    }
    addrs(r, &s);
    ctx.ready(s.local_addr().map_err(|e| e.to_string())?)?;
    write_paced(&mut s, a.bytes, a.chunk, a.rate)?;
    shutdown(&s)?;
    let got = if a.no_wait {
        0
    } else {
        read_to_eof(&mut s, ctx.timeout)?
    };
    // With --no-wait this is taken before the peer acknowledged everything.
    finish(r, &s, a.bytes, got);
    std::thread::sleep(Duration::from_millis(a.hold_ms));
    Ok(())
}

/// Accept one connection, write `bytes` to it, then read to EOF.
pub fn serve(ctx: &Ctx, listen: SocketAddr, bytes: u64, chunk: usize, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("tcp-serve"));
    let mut s = listen_and_accept(ctx, listen)?;
    addrs(r, &s);
    write_n(&mut s, bytes, chunk)?;
    shutdown(&s)?;
    let got = read_to_eof(&mut s, ctx.timeout)?;
    finish(r, &s, bytes, got);
    Ok(())
}

/// Connect and read to EOF.
pub fn recv(ctx: &Ctx, to: SocketAddr, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("tcp-recv"));
    let mut s = connect(to, ctx.timeout)?;
    addrs(r, &s);
    let got = read_to_eof(&mut s, ctx.timeout)?;
    finish(r, &s, 0, got);
    Ok(())
}

/// One socket shared by a parent and a forked child: the child writes its bytes and exits,
/// then the parent writes its own.
pub fn fork_send(
    ctx: &Ctx,
    to: SocketAddr,
    (parent_bytes, child_bytes): (u64, u64),
    child_name: Option<&str>,
    r: &mut Report,
) -> Res<()> {
    r.insert("op".into(), json!("fork-send"));
    let mut s = connect(to, ctx.timeout)?;
    addrs(r, &s);
    // SAFETY: trafficgen is single-threaded, so the child inherits no lock another thread holds.
    let child = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => child_writes(&mut s, child_bytes, child_name),
        ForkResult::Parent { child } => child,
    };
    match waitpid(child, None).map_err(|e| format!("waitpid: {e}"))? {
        WaitStatus::Exited(_, 0) => {}
        other => return Err(format!("forked child failed: {other:?}")),
    }
    write_n(&mut s, parent_bytes, 65536)?;
    shutdown(&s)?;
    let got = read_to_eof(&mut s, ctx.timeout)?;
    r.insert("child_pid".into(), json!(child.as_raw()));
    r.insert("parent_bytes".into(), json!(parent_bytes));
    r.insert("child_bytes".into(), json!(child_bytes));
    finish(r, &s, parent_bytes + child_bytes, got);
    Ok(())
}

/// The forked child: its comm set before it writes, then its bytes, then gone.
fn child_writes(s: &mut TcpStream, bytes: u64, name: Option<&str>) -> ! {
    let written = name
        .map_or(Ok(()), set_comm)
        .and_then(|()| write_n(s, bytes, 65536));
    let code = match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("trafficgen fork child: {e}");
            1
        }
    };
    // SAFETY: _exit ends the process at once (nix does not wrap it): the parent's atexit
    // handlers do not run and its stdio is not flushed twice.
    unsafe { libc::_exit(code) }
}

/// Connect first (write the ready file), wait until `wait_file` exists, then send `bytes`.
pub fn hold(ctx: &Ctx, to: SocketAddr, bytes: u64, wait_file: &Path, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("hold"));
    let mut s = connect(to, ctx.timeout)?;
    addrs(r, &s);
    ctx.ready(s.local_addr().map_err(|e| e.to_string())?)?;
    wait_for_file(wait_file, ctx.timeout)?;
    write_n(&mut s, bytes, 65536)?;
    shutdown(&s)?;
    let got = read_to_eof(&mut s, ctx.timeout)?;
    finish(r, &s, bytes, got);
    Ok(())
}

/// Accept one connection and read nothing until `wait_file` exists; then read to EOF.
pub fn hold_recv(ctx: &Ctx, listen: SocketAddr, wait_file: &Path, r: &mut Report) -> Res<()> {
    r.insert("op".into(), json!("hold-recv"));
    let mut s = listen_and_accept(ctx, listen)?;
    addrs(r, &s);
    wait_for_file(wait_file, ctx.timeout)?;
    let got = read_to_eof(&mut s, ctx.timeout)?;
    finish(r, &s, 0, got);
    Ok(())
}

/// Accept one connection, copy it to a new connection to `to` until EOF, then hold the
/// listener until `wait_file` exists.
pub fn forward(
    ctx: &Ctx,
    (listen, to): (SocketAddr, SocketAddr),
    wait_file: &Path,
    r: &mut Report,
) -> Res<()> {
    r.insert("op".into(), json!("tcp-forward"));
    let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    ctx.ready(l.local_addr().map_err(|e| e.to_string())?)?;
    let mut inbound = accept(&l, ctx.timeout)?;
    inbound
        .set_read_timeout(Some(ctx.timeout))
        .map_err(|e| e.to_string())?;
    let mut upstream = connect(to, ctx.timeout)?;
    let copied = std::io::copy(&mut inbound, &mut upstream).map_err(|e| format!("copy: {e}"))?;
    shutdown(&upstream)?;
    shutdown(&inbound)?;
    read_to_eof(&mut upstream, ctx.timeout)?;
    r.insert(
        "upstream_local".into(),
        json!(upstream
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string()),
    );
    addrs(r, &inbound);
    finish(r, &inbound, copied, copied);
    wait_for_file(wait_file, ctx.timeout)?;
    Ok(())
}

/// Bind, write the ready file with the bound address (port 0 resolved), accept one connection.
fn listen_and_accept(ctx: &Ctx, listen: SocketAddr) -> Res<TcpStream> {
    let l = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    ctx.ready(l.local_addr().map_err(|e| e.to_string())?)?;
    accept(&l, ctx.timeout)
}

fn shutdown(s: &TcpStream) -> Res<()> {
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))
}

/// The socket's TCP_INFO and the bytes sent and received.
fn finish(r: &mut Report, s: &TcpStream, sent: u64, received: u64) {
    r.insert("tcp_info".into(), tcp_info(s));
    r.insert("bytes_sent".into(), json!(sent));
    r.insert("bytes_received".into(), json!(received));
}
