//! The floor under the BPF statistics: empty programs of the kinds trafficd attaches, on the
//! same hooks, for the `empty-bpf` condition (and, in `bench forwarding`, empty tc programs on
//! the interfaces trafficd's tc programs count on: [`EmptyTc`]).
//!
//! With kernel.bpf_stats_enabled=1 the kernel times every program run with two clock reads, and
//! reaching a program has a cost of its own (the cgroup program array, the tracepoint's call).
//! An empty program measured the same way shows what any program on that hook costs on this
//! machine; what trafficd's programs cost above it is their own work.
//!
//! The programs are two instructions (`r0 = 1; exit` for cgroup_skb, which lets every packet
//! through; `r0 = 0; exit` for tp_btf, whose return value is ignored), loaded with raw bpf(2)
//! calls. Every program and link is a file descriptor of this process and nothing is pinned:
//! dropping [`EmptyPrograms`] (at the end of the run, on an error, on a panic's unwinding, or
//! the process ending) closes them, and the kernel detaches and frees them.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use btf_rs::{Btf, Type};
use serde::{Deserialize, Serialize};
use trafficd_common::bpf_attr::{LinkCreateAttr, ProgLoadAttr, RawTracepointOpenAttr};

use super::measure::{self, ProgStats};

// From include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: u32 = 5;
const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
const BPF_LINK_CREATE: u32 = 28;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_CGROUP_INET_INGRESS: u32 = 0;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_TRACE_RAW_TP: u32 = 23;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// TCX_NEXT: the packet goes on to the next program on the hook, or on its way.
const TCX_NEXT: i32 = -1;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kind of hook an empty program sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// cgroup_skb on the cgroup2 root, attached with BPF_LINK_CREATE.
    CgroupSkb { attach_type: u32 },
    /// tp_btf on a tracepoint (BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP), attached with
    /// BPF_RAW_TRACEPOINT_OPEN.
    TpBtf { tracepoint: &'static str },
}

/// One empty program: its name in the kernel (at most 15 characters), its hook, and the
/// trafficd program on the same hook, whose floor it is.
#[derive(Clone, Copy, Debug)]
pub struct EmptyHook {
    pub name: &'static str,
    pub kind: HookKind,
    /// How the report names the hook.
    pub hook: &'static str,
    pub trafficd_program: &'static str,
    /// Without it the condition fails; the others are recorded as not attached.
    pub required: bool,
}

pub const HOOKS: [EmptyHook; 5] = [
    EmptyHook {
        name: "empty_egress",
        kind: HookKind::CgroupSkb {
            attach_type: BPF_CGROUP_INET_EGRESS,
        },
        hook: "cgroup_skb egress",
        trafficd_program: "trafficd_egress",
        required: true,
    },
    EmptyHook {
        name: "empty_ingress",
        kind: HookKind::CgroupSkb {
            attach_type: BPF_CGROUP_INET_INGRESS,
        },
        hook: "cgroup_skb ingress",
        trafficd_program: "trafficd_ingress",
        required: true,
    },
    EmptyHook {
        name: "empty_sock_send",
        kind: HookKind::TpBtf {
            tracepoint: "sock_send_length",
        },
        hook: "tp_btf sock_send_length",
        trafficd_program: "trafficd_sock_send",
        required: false,
    },
    EmptyHook {
        name: "empty_sock_recv",
        kind: HookKind::TpBtf {
            tracepoint: "sock_recv_length",
        },
        hook: "tp_btf sock_recv_length",
        trafficd_program: "trafficd_sock_recv",
        required: false,
    },
    EmptyHook {
        name: "empty_tcp_rcv",
        kind: HookKind::TpBtf {
            tracepoint: "tcp_rcv_space_adjust",
        },
        hook: "tp_btf tcp_rcv_space_adjust",
        trafficd_program: "trafficd_tcp_consume",
        required: false,
    },
];

/// The empty program on the hook of trafficd's program `trafficd_program`.
pub fn floor_of(trafficd_program: &str) -> Option<&'static EmptyHook> {
    HOOKS
        .iter()
        .find(|h| h.trafficd_program == trafficd_program)
}

pub fn hook_of(empty_program: &str) -> Option<&'static EmptyHook> {
    HOOKS.iter().find(|h| h.name == empty_program)
}

/// What the empty programs recorded in one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EmptyFigures {
    pub programs: Vec<super::ProgDelta>,
    /// From just before the traffic until 50 ms after it.
    pub window_seconds: f64,
    /// Programs that could not be loaded or attached, and why.
    #[serde(default)]
    pub not_attached: Vec<String>,
}

/// One loaded program and its attachment.
struct Loaded {
    hook: &'static EmptyHook,
    id: u32,
    // The link is declared before the program, so it is dropped first: detach, then release.
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// The empty programs of one run, loaded and attached; dropping it detaches and releases
/// every one of them.
pub struct EmptyPrograms {
    loaded: Vec<Loaded>,
    pub not_attached: Vec<String>,
}

impl EmptyPrograms {
    /// Loads every program of [`HOOKS`] and attaches it; the cgroup_skb ones to `cgroup_root`.
    pub fn attach(cgroup_root: &str) -> Result<EmptyPrograms> {
        let cgroup = File::open(cgroup_root).with_context(|| format!("open {cgroup_root}"))?;
        let mut programs = EmptyPrograms {
            loaded: Vec::new(),
            not_attached: Vec::new(),
        };
        for hook in &HOOKS {
            match load_and_attach(hook, &cgroup) {
                Ok(loaded) => programs.loaded.push(loaded),
                // `programs` drops here too: what was attached so far is released.
                Err(err) if hook.required => {
                    return Err(err.context(format!("empty program on {}", hook.hook)))
                }
                Err(err) => programs
                    .not_attached
                    .push(format!("{} ({}): {err:#}", hook.name, hook.hook)),
            }
        }
        Ok(programs)
    }

    /// Run-time statistics of the attached programs, read from this process's fdinfo like
    /// those of trafficd's programs.
    pub fn stats(&self) -> Vec<ProgStats> {
        let names: BTreeMap<u32, String> = self
            .loaded
            .iter()
            .map(|l| (l.id, l.hook.name.to_string()))
            .collect();
        measure::prog_stats(std::process::id(), &names)
            .into_iter()
            .filter(|p| names.contains_key(&p.id))
            .collect()
    }
}

/// Empty tc programs (`r0 = TCX_NEXT; exit`) attached with TCX at ingress and egress of some
/// interfaces: what any program on those hooks costs a forwarded packet, beside which
/// trafficd's tc programs' own work shows. Dropping it detaches and releases them.
pub struct EmptyTc {
    // Each link before its program: detach, then release.
    _attached: Vec<(OwnedFd, OwnedFd)>,
}

impl EmptyTc {
    pub fn attach(ifindexes: &[u32]) -> Result<EmptyTc> {
        let mut attached = Vec::new();
        for &ifindex in ifindexes {
            for (attach_type, name) in [
                (BPF_TCX_INGRESS, "empty_tc_in"),
                (BPF_TCX_EGRESS, "empty_tc_out"),
            ] {
                let prog = load(
                    name,
                    BPF_PROG_TYPE_SCHED_CLS,
                    attach_type,
                    0,
                    &empty_program(TCX_NEXT),
                )?;
                // The target of a TCX link is the interface's index, in the target_fd slot.
                let mut attr = LinkCreateAttr {
                    prog_fd: prog.as_raw_fd() as u32,
                    target_fd: ifindex,
                    attach_type,
                    ..LinkCreateAttr::default()
                };
                let link = bpf(BPF_LINK_CREATE, &mut attr)
                    .with_context(|| format!("BPF_LINK_CREATE tcx on ifindex {ifindex}"))?;
                attached.push((link, prog));
            }
        }
        Ok(EmptyTc {
            _attached: attached,
        })
    }
}

fn load_and_attach(hook: &'static EmptyHook, cgroup: &File) -> Result<Loaded> {
    let (prog, link) = match hook.kind {
        HookKind::CgroupSkb { attach_type } => {
            let prog = load(
                hook.name,
                BPF_PROG_TYPE_CGROUP_SKB,
                attach_type,
                0,
                &empty_program(1),
            )?;
            let mut attr = LinkCreateAttr {
                prog_fd: prog.as_raw_fd() as u32,
                target_fd: cgroup.as_raw_fd() as u32,
                attach_type,
                ..LinkCreateAttr::default()
            };
            let link = bpf(BPF_LINK_CREATE, &mut attr).context("BPF_LINK_CREATE")?;
            (prog, link)
        }
        HookKind::TpBtf { tracepoint } => {
            let btf_id = trace_btf_id(tracepoint)?;
            let prog = load(
                hook.name,
                BPF_PROG_TYPE_TRACING,
                BPF_TRACE_RAW_TP,
                btf_id,
                &empty_program(0),
            )?;
            // name 0: the tracepoint is the one of the program's attach_btf_id.
            let mut attr = RawTracepointOpenAttr {
                name: 0,
                prog_fd: prog.as_raw_fd() as u32,
                _pad: 0,
            };
            let link =
                bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).context("BPF_RAW_TRACEPOINT_OPEN")?;
            (prog, link)
        }
    };
    let id = prog_id(&prog).context("no prog_id in fdinfo")?;
    Ok(Loaded {
        hook,
        id,
        _link: link,
        _prog: prog,
    })
}

/// `r0 = ret; exit`.
fn empty_program(ret: i32) -> [u64; 2] {
    // struct bpf_insn: code (8 bits), dst_reg (4) and src_reg (4), off (16), imm (32), as
    // one little- or big-endian 64-bit word: code in the first byte, imm in the last four.
    let insn = |code: u8, imm: i32| -> u64 {
        let mut bytes = [0u8; 8];
        bytes[0] = code;
        bytes[4..].copy_from_slice(&imm.to_ne_bytes());
        u64::from_ne_bytes(bytes)
    };
    // BPF_ALU64 | BPF_MOV | BPF_K (dst r0), then BPF_JMP | BPF_EXIT.
    [insn(0xb7, ret), insn(0x95, 0)]
}

/// The BTF id of `btf_trace_<tracepoint>` in vmlinux: what a tp_btf program attaches to.
fn trace_btf_id(tracepoint: &str) -> Result<u32> {
    // Parsed once per bench: every tracepoint any hook names, by name.
    static IDS: OnceLock<std::result::Result<BTreeMap<&'static str, u32>, String>> =
        OnceLock::new();
    let ids = IDS
        .get_or_init(|| {
            let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
            let mut ids = BTreeMap::new();
            for hook in &HOOKS {
                let HookKind::TpBtf { tracepoint } = hook.kind else {
                    continue;
                };
                let name = format!("btf_trace_{tracepoint}");
                let found = btf
                    .resolve_ids_by_name(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|id| matches!(btf.resolve_type_by_id(*id), Ok(Type::Typedef(_))));
                if let Some(id) = found {
                    ids.insert(tracepoint, id);
                }
            }
            Ok(ids)
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))?;
    ids.get(tracepoint).copied().with_context(|| {
        format!(
            "no typedef btf_trace_{tracepoint} in {VMLINUX_BTF}: this kernel lacks the tracepoint"
        )
    })
}

fn prog_id(prog: &OwnedFd) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", prog.as_raw_fd())).ok()?;
    trafficd_tests::bpf::fdinfo_fields(&text)
        .get("prog_id")?
        .parse()
        .ok()
}

/// bpf(2) for the commands that return a file descriptor.
fn bpf<T>(cmd: u32, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a repr(C) prefix of union bpf_attr that lives across the call, and its
    // size is passed along; the kernel only reads it (and the buffers it points to).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of these commands is a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn load(
    name: &str,
    prog_type: u32,
    expected_attach_type: u32,
    attach_btf_id: u32,
    insns: &[u64],
) -> Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL in a literal");
    let mut prog_name = [0u8; 16];
    let len = name.len().min(15);
    prog_name[..len].copy_from_slice(&name.as_bytes()[..len]);
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name,
        expected_attach_type,
        attach_btf_id,
        ..ProgLoadAttr::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr(&mut [])) {
        Ok(fd) => Ok(fd),
        Err(err) => {
            // Once more with the verifier's log, for the error message.
            let mut log = vec![0u8; 16 * 1024];
            let _ = bpf(BPF_PROG_LOAD, &mut attr(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            match last {
                Some(line) => bail!("BPF_PROG_LOAD of {name}: {err} (verifier: {line})"),
                None => bail!("BPF_PROG_LOAD of {name}: {err}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_program_is_mov_exit() {
        let [mov, exit] = empty_program(1);
        let mov = mov.to_ne_bytes();
        assert_eq!(
            (mov[0], mov[1], &mov[4..]),
            (0xb7, 0, &1i32.to_ne_bytes()[..])
        );
        assert_eq!(exit.to_ne_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_hot_hook_has_a_short_name() {
        for hook in &HOOKS {
            assert!(
                hook.name.len() <= 15,
                "{} is longer than BPF_OBJ_NAME_LEN - 1",
                hook.name
            );
            assert_eq!(
                floor_of(hook.trafficd_program).map(|h| h.name),
                Some(hook.name)
            );
        }
    }

    /// Loads (without attaching) one empty program of each kind; skipped without root.
    #[test]
    fn empty_programs_load() {
        if !crate::is_root() {
            eprintln!("skipped: not root");
            return;
        }
        load(
            "xtask_test_skb",
            BPF_PROG_TYPE_CGROUP_SKB,
            BPF_CGROUP_INET_EGRESS,
            0,
            &empty_program(1),
        )
        .unwrap();
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("tp_btf skipped: no {VMLINUX_BTF}");
            return;
        }
        // trafficd needs this tracepoint too: a kernel without it cannot run trafficd.
        let id = trace_btf_id("sock_send_length").unwrap();
        load(
            "xtask_test_tp",
            BPF_PROG_TYPE_TRACING,
            BPF_TRACE_RAW_TP,
            id,
            &empty_program(0),
        )
        .unwrap();
    }
}
