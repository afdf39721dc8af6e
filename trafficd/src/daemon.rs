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
    cli::{ContainerArgs, RunArgs},
    drain::{DrainConfig, Drainer, InterfaceConfig, InterfacePhase},
    enrich::containers::{self, ContainerDirectory, Runtime},
    enrich::peers::PeerNames,
    error::{Error, Result},
    exposure, http,
    kernel::{Kernel, MapSizes},
    stats::Store,
};

pub fn run(args: RunArgs) -> Result<()> {
    keep_large_buffers_returnable();
    let sizes = map_sizes(&args);
    // A bad web config file stops the start before anything is loaded or bound.
    let web = match &args.web.web_config_file {
        Some(path) => http::WebConfig::load(path)?,
        None => http::WebConfig::default(),
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
    let (metrics, bpf_stats) = metrics_config(&args, &kernel)?;
    let store = Arc::new(RwLock::new(Store::new(Instant::now())));
    let config = DrainConfig {
        idle_expiry_drains: drains_in(args.idle_expiry, args.interval),
        retention: args.retention,
    };
    let logger = kernel.take_logger();
    let owners = start_containers(runtime.handle(), &args.containers);
    let mut drainer = Drainer::new(maps, logger, kernel.cgroup_root.clone(), owners, config);
    count_interfaces(&mut drainer, &mut kernel, &args);
    let stop_drain = Arc::new(StopSignal::new()?);
    let stopped = stop_drain.clone();
    let drain_store = store.clone();
    let interval = args.interval;
    let drain_thread = thread::Builder::new().name("drain".into()).spawn(move || {
        let mut due = Instant::now() + interval;
        while drainer.wait_for_drain(due, stopped.as_fd()) {
            drainer.drain(&drain_store);
            drain_store
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .health
                .drain_ended(Instant::now());
            due = Instant::now() + interval;
        }
    })?;

    info!(
        listen = %args.listen,
        interval = ?args.interval,
        tls = web.tls.is_some(),
        basic_auth = !web.users.is_empty(),
        "serving /top, /explain, /exposure, /metrics and /healthz"
    );
    let report = exposure::Report::default();
    exposure::spawn(store.clone(), args.exposure.policy(), report.clone())?;
    let sources = http::Sources {
        peers: PeerNames::start(args.peers.settings(), runtime.handle())?,
        exposure: report,
    };
    let router = http::router(store, &metrics, &web, sources);
    let served = runtime.block_on(http::serve(listener, router, &web, shutdown_signal()));
    stop_drain.raise();
    if drain_thread.join().is_err() {
        warn!("the drain thread panicked");
    }
    drop(bpf_stats);
    drop(kernel);
    info!("programs detached, exiting");
    served.map_err(Error::Io)
}

/// The kernel maps' sizes, from the `--*-map-size` flags.
fn map_sizes(args: &RunArgs) -> MapSizes {
    MapSizes {
        sockets: args.maps.socket_map_size,
        flows: args.maps.flow_map_size,
        cgroups: args.maps.cgroup_map_size,
        owners: args.maps.owner_map_size,
        processes: args.maps.process_map_size,
        socket_processes: args.maps.socket_process_map_size,
        closed: args.maps.closed_map_size,
        forwarded: args.interfaces.forwarded_flows,
        interfaces: args.interfaces.max_interfaces,
    }
}

/// Adds the interfaces' phase to the drain; without the forwarding programs the rest still
/// counts, so a failure here is a warning.
fn count_interfaces(drainer: &mut Drainer, kernel: &mut Kernel, args: &RunArgs) {
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
}

/// What /metrics exports, and with --bpf-stats the descriptor that keeps the kernel's
/// run-time statistics on: they stay on until it is closed, so it is held while running.
fn metrics_config(
    args: &RunArgs,
    kernel: &Kernel,
) -> Result<(http::MetricsConfig, Option<OwnedFd>)> {
    let bpf_stats = args
        .web
        .bpf_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .map_err(|e| Error::BpfStats(e.to_string()))?;
    let config = http::MetricsConfig {
        per_pid: args.web.metrics_per_pid,
        max_series: args.web.metrics_max_series as usize,
        retention: args.retention,
        programs: http::Programs {
            hooks: kernel.hooks.clone(),
            stats: bpf_stats.as_ref().map(|_| kernel.program_ids()),
        },
    };
    Ok((config, bpf_stats))
}

/// Starts the container engines' and the Kubernetes API's watchers on `runtime`; the drain
/// reads what they learn through the returned directory, never waiting on them.
fn start_containers(runtime: &tokio::runtime::Handle, args: &ContainerArgs) -> ContainerDirectory {
    let sources = if args.no_containers {
        containers::Sources::none()
    } else {
        let detected = containers::Sources::detect()
            .with_socket(Runtime::Podman, args.podman_socket.clone())
            .with_socket(Runtime::Containerd, args.containerd_socket.clone())
            .with_socket(Runtime::CriO, args.crio_socket.clone());
        match &args.docker_socket {
            Some(socket) => detected.with_socket(Runtime::Docker, socket.clone()),
            None => detected,
        }
    };
    containers::start(runtime, sources)
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
/// between live allocations is never given back, a large share of the heap at many flows. A fixed
/// threshold keeps every large buffer in its own mapping.
fn keep_large_buffers_returnable() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
