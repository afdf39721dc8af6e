//! Loading, attaching and detaching the kernel programs, and handing their maps to the drain.
//!
//! The object is embedded in the binary at build time. Dropping [`Kernel`] detaches everything.

mod batch;
mod btf;
mod bursts;
mod compat;
mod control;
mod flow_slots;
mod forward_slots;
mod forwarding;
mod maps;
mod namespaces;
mod recent_use;
mod slots;
mod tc;
mod tcp_sockets;

use std::{
    fs::File,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::{
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, Iter,
        ProgramError, ProgramFd, SchedClassifier,
    },
    Ebpf, EbpfLoader,
};
use tracing::{info, warn};
use trafficd_common::{maps as names, FLOW_CACHE_ENTRIES, RECENT_USES};

pub use bursts::Woken;
use compat::cpu_number_limit;
pub use compat::{cgroup2_root, check_privileges};
pub use flow_slots::MovedFlows;
pub use forwarding::Forwarding;
pub use maps::{KernelMaps, MapEntries, MapFill, MapMemory};
pub use tc::{ForwardMoves, KindKey, TcLosses};

use crate::error::{Error, Result};

/// Cgroup programs are attached as BPF links (kernel >= 5.7), which the kernel always runs beside
/// other programs on the same cgroup, so other tools' programs on the root keep working. The
/// kernel rejects the ALLOW_MULTI flag on link creation, hence "Single" here, which passes none.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trafficd"));

/// Entries of each kernel map; memory is bounded by these.
#[derive(Clone, Debug)]
pub struct MapSizes {
    pub sockets: u32,
    pub flows: u32,
    pub cgroups: u32,
    pub owners: u32,
    pub processes: u32,
    pub socket_processes: u32,
    pub closed: u32,
    /// Forwarded flows the tc programs track at once.
    pub forwarded: u32,
    /// Interfaces the tc programs count on at once.
    pub interfaces: u32,
}

/// Forwards the kernel programs' aya-log records; flushed by the drain.
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// A program trafficd attaches, and whether this kernel let it: optional hooks may be
/// refused, and /metrics says which.
#[derive(Clone, Debug)]
pub struct Hook {
    pub program: &'static str,
    pub hook: &'static str,
    pub attached: bool,
}

/// The loaded and attached programs. Dropping it detaches them.
pub struct Kernel {
    pub hooks: Vec<Hook>,
    /// Shared with the drain's [`Forwarding`], which attaches to interfaces as they appear.
    ebpf: Arc<Mutex<Ebpf>>,
    forwarding: Option<tc::TcCounters>,
    logger: Option<KernelLogger>,
    hand_back: Option<ProgramFd>,
    /// The TCP sweep's iterator link and period, when TCP connections can be counted from
    /// their sockets.
    tcp_sweep: Option<(OwnedFd, Duration)>,
    sizes: MapSizes,
    pub cgroup_root: PathBuf,
}

impl Kernel {
    /// Checks the host, loads the object with the configured map sizes and attaches every program.
    /// `tcp_sweep`: count established TCP connections from the kernel's counters of each
    /// connection where this kernel allows, instead of packet by packet, sweeping the quiet
    /// ones this often.
    pub fn start(
        sizes: &MapSizes,
        kernel_log: bool,
        tcp_sweep: Option<Duration>,
    ) -> Result<Kernel> {
        check_privileges()?;
        compat::warn_about_optional_capabilities();
        let offsets = btf::offsets()?;
        let cgroup_root = cgroup2_root()?;
        let cgroup = File::open(&cgroup_root).map_err(|source| Error::OpenCgroup {
            path: cgroup_root.clone(),
            source,
        })?;

        // The kernel's BTF, parsed once: the loader and every tp_btf program need it, and each
        // parse of its megabytes is a noticeable cost at start.
        let btf = aya::Btf::from_sys_fs().map_err(|_| Error::NoBtf)?;
        let mut ebpf = load(sizes, kernel_log, &btf, &offsets)?;

        let logger = if kernel_log {
            aya_log::EbpfLogger::init(&mut ebpf)
                .map_err(|err| warn!("kernel logs unavailable: {err}"))
                .ok()
        } else {
            None
        };

        attach_cgroup_skb(
            &mut ebpf,
            &cgroup,
            "trafficd_egress",
            CgroupSkbAttachType::Egress,
        )?;
        attach_cgroup_skb(
            &mut ebpf,
            &cgroup,
            "trafficd_ingress",
            CgroupSkbAttachType::Ingress,
        )?;
        attach_sock_length(&mut ebpf, &btf, "trafficd_sock_send", "sock_send_length")?;
        attach_sock_length(&mut ebpf, &btf, "trafficd_sock_recv", "sock_recv_length")?;
        let mut hooks = vec![
            hook("trafficd_egress", "cgroup_skb/egress", true),
            hook("trafficd_ingress", "cgroup_skb/ingress", true),
            hook("trafficd_sock_send", "tp_btf/sock_send_length", true),
            hook("trafficd_sock_recv", "tp_btf/sock_recv_length", true),
        ];
        let (hand_back, tcp_sweep) =
            attach_optional(&mut ebpf, &btf, &cgroup, tcp_sweep, &mut hooks);
        // Optional: without them, interfaces show their counters but no split, and forwarded
        // traffic has no flows.
        let tc_hand_back = hand_back.as_ref().and_then(|p| p.try_clone().ok());
        let forwarding = tc::TcCounters::load(&mut ebpf, sizes.forwarded, tc_hand_back)
            .map_err(|err| warn!("{err}"))
            .ok();
        for program in ["trafficd_tc_ingress", "trafficd_tc_egress"] {
            hooks.push(hook(program, "tc (TCX or clsact)", forwarding.is_some()));
        }
        info!(cgroup2 = %cgroup_root.display(), "kernel programs attached");
        Ok(Kernel {
            hooks,
            ebpf: Arc::new(Mutex::new(ebpf)),
            forwarding,
            logger,
            hand_back,
            tcp_sweep,
            sizes: sizes.clone(),
            cgroup_root,
        })
    }

    /// (name, kernel id) of every loaded program, for their run-time statistics.
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        let ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        ebpf.programs()
            .filter_map(|(name, program)| Some((name.to_string(), program.info().ok()?.id())))
            .collect()
    }

    /// Takes the kernel log forwarder, if --kernel-log asked for one.
    pub fn take_logger(&mut self) -> Option<KernelLogger> {
        self.logger.take()
    }

    /// The forwarded-traffic counters, for the drain to attach and read; `None` when the tc
    /// programs did not load (said at start). Call once.
    pub fn take_forwarding(&mut self) -> Option<Forwarding> {
        let counters = self.forwarding.take()?;
        Some(Forwarding::new(self.ebpf.clone(), counters))
    }

    /// Takes the maps out of the object for the drain. Call once.
    pub fn take_maps(&mut self) -> Result<KernelMaps> {
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        KernelMaps::take(
            &mut ebpf,
            self.sizes.clone(),
            self.hand_back.take(),
            self.tcp_sweep.take(),
        )
    }
}

/// Loads the object with the configured map sizes, patched for this kernel.
fn load(
    sizes: &MapSizes,
    kernel_log: bool,
    btf: &aya::Btf,
    offsets: &btf::Offsets,
) -> Result<Ebpf> {
    // aya-log's level global: 0 turns every kernel log statement into one untaken branch.
    let log_level: u8 = if kernel_log { 0xff } else { 0 };
    let cpus = cpu_number_limit()?;
    let object = offsets.patch(OBJECT)?;
    let mut loader = EbpfLoader::new();
    tc::with_forwarded_flows(&mut loader, sizes.forwarded);
    tc::with_interfaces(&mut loader, sizes.interfaces);
    let ebpf = loader
        .btf(Some(btf))
        .override_global(aya_log::LEVEL, &log_level, false)
        .map_max_entries(names::SOCKETS, sizes.sockets)
        .map_max_entries(names::FLOWS, sizes.flows)
        .map_max_entries(names::FLOW_COUNTERS, sizes.flows)
        .map_max_entries(names::FREE_FLOW_SLOTS, sizes.flows)
        .map_max_entries(names::CGROUPS, sizes.cgroups)
        .map_max_entries(names::OWNERS, sizes.owners)
        .map_max_entries(names::PROCESSES, sizes.processes)
        .map_max_entries(names::SOCKET_PROCESSES, sizes.socket_processes)
        .map_max_entries(names::CLOSED, sizes.closed)
        .map_max_entries(names::RECENT_USE, cpus * RECENT_USES)
        .map_max_entries(names::FLOW_CACHE, cpus * FLOW_CACHE_ENTRIES)
        .load(object.bytes())?;
    Ok(ebpf)
}

/// Attaches the programs each of which only one feature needs: a program that fails to load
/// or attach costs its feature, with a warning that says what is lost. Returns the hand-back
/// program and the TCP sweep's link with its period, when they loaded.
fn attach_optional(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    cgroup: &File,
    tcp_sweep: Option<Duration>,
    hooks: &mut Vec<Hook>,
) -> (Option<ProgramFd>, Option<(OwnedFd, Duration)>) {
    // Optional: without it, sockets a process only reads with splice(2) have no owner
    // until the /proc fallback finds one.
    let consume = attach_tp_btf(
        ebpf,
        btf,
        "trafficd_tcp_consume",
        "tcp_rcv_space_adjust",
        "sockets read only through splice(2) are attributed by the slower /proc scan",
    );
    if let Err(err) = &consume {
        warn!("{err}");
    }
    // Optional: without it, closed sockets are cleaned up by idle expiry only.
    let release = attach_sock_release(ebpf, cgroup);
    if let Err(err) = &release {
        warn!("{err}");
    }
    // Optional: without it, freed flow slots go back to the kernel one syscall each.
    let hand_back = load_hand_back(ebpf).map_err(|err| warn!("{err}")).ok();
    // Optional: without it, every TCP packet is counted by the packet hooks.
    let tcp_sweep = tcp_sweep.and_then(|every| {
        attach_tcp_counting(ebpf, btf)
            .map_err(|err| warn!("{err}"))
            .ok()
            .map(|link| (link, every))
    });
    let counting = tcp_sweep.is_some();
    hooks.extend([
        hook(
            "trafficd_tcp_consume",
            "tp_btf/tcp_rcv_space_adjust",
            consume.is_ok(),
        ),
        hook(
            "trafficd_sock_release",
            "cgroup/sock_release",
            release.is_ok(),
        ),
        hook("trafficd_tcp_state", "tp_btf/inet_sock_set_state", counting),
        hook("trafficd_tcp_sweep", "iter/tcp", counting),
    ]);
    (hand_back, tcp_sweep)
}

fn hook(program: &'static str, hook: &'static str, attached: bool) -> Hook {
    Hook {
        program,
        hook,
        attached,
    }
}

fn attach_cgroup_skb(
    ebpf: &mut Ebpf,
    cgroup: &File,
    program: &'static str,
    direction: CgroupSkbAttachType,
) -> Result<()> {
    let hook = match direction {
        CgroupSkbAttachType::Egress => "cgroup_skb/egress on the cgroup2 root",
        CgroupSkbAttachType::Ingress => "cgroup_skb/ingress on the cgroup2 root",
    };
    let fail = |action, source| Error::Program {
        action,
        program,
        hook,
        consequence: "no packet is counted at all",
        reason: summarize(&source),
    };
    let prog: &mut CgroupSkb = program_mut(ebpf, program).map_err(|e| fail("find", e))?;
    prog.load().map_err(|e| fail("load", e))?;
    prog.attach(cgroup, direction, LINK_MODE)
        .map_err(|e| fail("attach", e))?;
    Ok(())
}

fn attach_sock_length(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    program: &'static str,
    tracepoint: &'static str,
) -> Result<()> {
    attach_tp_btf(
        ebpf,
        btf,
        program,
        tracepoint,
        "bytes cannot be attributed to processes",
    )
}

fn attach_tp_btf(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    program: &'static str,
    tracepoint: &'static str,
    consequence: &'static str,
) -> Result<()> {
    let fail = |action, source| Error::Program {
        action,
        program,
        hook: tracepoint,
        consequence,
        reason: summarize(&source),
    };
    let prog: &mut BtfTracePoint = program_mut(ebpf, program).map_err(|e| fail("find", e))?;
    prog.load(tracepoint, btf).map_err(|e| fail("load", e))?;
    prog.attach().map_err(|e| fail("attach", e))?;
    Ok(())
}

fn attach_sock_release(ebpf: &mut Ebpf, cgroup: &File) -> Result<()> {
    let program = "trafficd_sock_release";
    let fail = |action, source| Error::Program {
        action,
        program,
        hook: "cgroup/sock_release on the cgroup2 root",
        consequence: "entries of closed sockets are removed only after --idle-expiry",
        reason: summarize(&source),
    };
    let prog: &mut CgroupSock = program_mut(ebpf, program).map_err(|e| fail("find", e))?;
    prog.load().map_err(|e| fail("load", e))?;
    prog.attach(cgroup, LINK_MODE)
        .map_err(|e| fail("attach", e))?;
    Ok(())
}

/// Attaches the state hook and links the sweep, which together count established TCP
/// connections from their counters; returns the sweep's link. The flag that hands TCP packets
/// over to them is set once the drain has the maps (`TcpSockets::start`).
fn attach_tcp_counting(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<OwnedFd> {
    let consequence =
        "every TCP packet is counted one by one, which costs a bulk transfer more CPU";
    attach_tp_btf(
        ebpf,
        btf,
        "trafficd_tcp_state",
        "inet_sock_set_state",
        consequence,
    )?;
    let program = "trafficd_tcp_sweep";
    let fail = |action, source| Error::Program {
        action,
        program,
        hook: "iter/tcp",
        consequence,
        reason: summarize(&source),
    };
    let prog: &mut Iter = program_mut(ebpf, program).map_err(|e| fail("find", e))?;
    prog.load("tcp", btf).map_err(|e| fail("load", e))?;
    let fd = prog.fd().map_err(|e| fail("find", e))?;
    tcp_sockets::link(fd).map_err(|e| fail("attach", ProgramError::IOError(e)))
}

/// Loads the program that hands freed flow slots back in batches. It is never attached: the
/// daemon runs it on a test packet that carries the slots.
fn load_hand_back(ebpf: &mut Ebpf) -> Result<ProgramFd> {
    let program = "trafficd_hand_back";
    let fail = |action, source| Error::Program {
        action,
        program,
        hook: "BPF_PROG_TEST_RUN (not attached)",
        consequence:
            "freed flow slots go back one syscall each, which slows the drains after many flows end",
        reason: summarize(&source),
    };
    let prog: &mut SchedClassifier = program_mut(ebpf, program).map_err(|e| fail("find", e))?;
    prog.load().map_err(|e| fail("load", e))?;
    let fd = prog.fd().map_err(|e| fail("find", e))?;
    fd.try_clone()
        .map_err(|e| fail("find", ProgramError::IOError(e)))
}

/// One line out of a program error: its first line, plus the verifier's last complaint when the
/// error carries a verifier log. The whole log is logged at debug level.
fn summarize(err: &ProgramError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    tracing::debug!("{text}");
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let first = first.split(". Verifier output").next().unwrap_or(first);
    let verdict = text.lines().rev().map(str::trim).find(|l| {
        !l.is_empty()
            && !l.starts_with("verification time")
            && !l.starts_with("processed")
            && !l.starts_with("stack depth")
    });
    match verdict {
        Some(verdict) if text.contains("Verifier output") => {
            format!("{first} (verifier: {verdict})")
        }
        _ => first.to_string(),
    }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProgramError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| ProgramError::UnexpectedProgramType)?;
    program.try_into()
}
