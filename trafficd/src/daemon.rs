//! `trafficd run`: start the kernel side, the drain thread and the HTTP server; stop all three
//! on SIGINT/SIGTERM, detaching the programs.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant},
};

use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::{
    cli::RunArgs,
    drain::{DrainConfig, Drainer, InterfaceConfig, InterfacePhase},
    error::{Error, Result},
    http,
    kernel::{Kernel, MapSizes},
    stats::Store,
};

pub fn run(args: RunArgs) -> Result<()> {
    keep_large_buffers_returnable();
    let sizes = MapSizes {
        sockets: args.maps.socket_map_size,
        flows: args.maps.flow_map_size,
        cgroups: args.maps.cgroup_map_size,
        owners: args.maps.owner_map_size,
        processes: args.maps.process_map_size,
        socket_processes: args.maps.socket_process_map_size,
        closed: args.maps.closed_map_size,
        forwarded: args.interfaces.forwarded_flows,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Bind before loading anything so a busy port fails fast and leaves nothing attached.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .map_err(|source| Error::Listen {
            addr: args.listen,
            source,
        })?;

    let mut kernel = Kernel::start(
        &sizes,
        args.kernel_log,
        (!args.tcp_per_packet).then_some(args.tcp_sweep_interval),
    )?;
    let maps = kernel.take_maps()?;
    let store = Arc::new(RwLock::new(Store::new(Instant::now())));
    let config = DrainConfig {
        idle_expiry_drains: drains_in(args.idle_expiry, args.interval),
        retention: args.retention,
    };
    let logger = kernel.take_logger();
    let mut drainer = Drainer::new(maps, logger, kernel.cgroup_root.clone(), config);
    let interfaces = InterfaceConfig {
        names: args.interfaces.interfaces.clone(),
        capacities: args.interfaces.interface_capacity.clone(),
        conntrack_cache: args.interfaces.conntrack_cache as usize,
        idle_drains: drains_in(args.idle_expiry, args.interval),
    };
    match InterfacePhase::new(interfaces, kernel.take_forwarding()) {
        Ok(phase) => drainer.count_interfaces(phase),
        Err(err) => warn!("{err}; interfaces are not counted"),
    }
    let stop_drain = Arc::new(StopSignal::new()?);
    let stopped = stop_drain.clone();
    let drain_store = store.clone();
    let interval = args.interval;
    let drain_thread = thread::Builder::new().name("drain".into()).spawn(move || {
        let mut due = Instant::now() + interval;
        while drainer.wait_for_drain(due, stopped.as_fd()) {
            drainer.drain(&drain_store);
            due = Instant::now() + interval;
        }
    })?;

    info!(listen = %args.listen, interval = ?args.interval, "serving /top, /metrics and /healthz");
    let served = runtime.block_on(async {
        axum::serve(listener, http::router(store))
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    stop_drain.raise();
    if drain_thread.join().is_err() {
        warn!("the drain thread panicked");
    }
    drop(kernel);
    info!("programs detached, exiting");
    served.map_err(Error::Io)
}

/// Tells the drain thread to stop: an eventfd it sleeps on beside the kernel's burst reports.
struct StopSignal(OwnedFd);

impl StopSignal {
    fn new() -> Result<StopSignal> {
        // SAFETY: creates a new descriptor, owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(StopSignal(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn raise(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn drains_in(span: Duration, interval: Duration) -> u32 {
    (span.as_millis() / interval.as_millis().max(1)).clamp(2, u128::from(u32::MAX)) as u32
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop trafficd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

/// Pins glibc's mmap threshold. By default it rises to the size of the largest buffer freed (up
/// to 32 MiB), after which the drain's megabyte buffers come from the heap, where freed space
/// between live allocations is never given back: at 100k flows that was 38 MB of the daemon's
/// 126 MB of heap. A fixed threshold keeps every large buffer in its own mapping.
fn keep_large_buffers_returnable() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
