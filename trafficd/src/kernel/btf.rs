//! Field offsets the kernel programs need, read from the running kernel's BTF, and written
//! into the programs' code before loading.
//!
//! Rust eBPF has no CO-RE relocations, so instead of compiling an offset in, each read in the
//! programs loads a placeholder constant ([`kernel_field`]); [`Offsets::patch`] replaces every
//! placeholder in the object by the offset looked up here.

use std::path::Path;

use btf_rs::{Btf, Type};
use trafficd_common::kernel_field::{self, *};
use zerocopy::IntoBytes;

use crate::error::{Error, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The field offsets, each with its placeholder.
pub struct Offsets(Vec<(u64, u32)>);

/// Where each placeholder's field is: (placeholder, struct, path of members from it).
const FIELDS: &[(u64, &str, &[&str])] = &[
    (SK_FAMILY, "sock", &["__sk_common", "skc_family"]),
    (SK_COOKIE, "sock", &["__sk_common", "skc_cookie"]),
    (SK_STATE, "sock", &["__sk_common", "skc_state"]),
    (SK_PROTOCOL, "sock", &["sk_protocol"]),
    (SK_DADDR, "sock", &["__sk_common", "skc_daddr"]),
    (SK_RCV_SADDR, "sock", &["__sk_common", "skc_rcv_saddr"]),
    (SK_DPORT, "sock", &["__sk_common", "skc_dport"]),
    (SK_NUM, "sock", &["__sk_common", "skc_num"]),
    (SK_V6_DADDR, "sock", &["__sk_common", "skc_v6_daddr"]),
    (
        SK_V6_RCV_SADDR,
        "sock",
        &["__sk_common", "skc_v6_rcv_saddr"],
    ),
    (SK_CGROUP, "sock", &["sk_cgrp_data", "cgroup"]),
    (CGROUP_KN, "cgroup", &["kn"]),
    (KERNFS_ID, "kernfs_node", &["id"]),
    (TCP_BYTES_SENT, "tcp_sock", &["bytes_sent"]),
    (TCP_BYTES_RECEIVED, "tcp_sock", &["bytes_received"]),
    (TCP_SEGS_OUT, "tcp_sock", &["segs_out"]),
    (TCP_SEGS_IN, "tcp_sock", &["segs_in"]),
    (TCP_HEADER_LEN, "tcp_sock", &["tcp_header_len"]),
];

/// `BPF_LD | BPF_IMM | BPF_DW`: the first half of a 64-bit immediate load.
const LD_IMM64: u8 = 0x18;
/// A BPF instruction's size.
const INSN: usize = 8;

impl Offsets {
    /// The offset of the field of `placeholder`.
    pub fn get(&self, placeholder: u64) -> Option<u32> {
        self.0
            .iter()
            .find(|(p, _)| *p == placeholder)
            .map(|(_, offset)| *offset)
    }

    /// `object` with every placeholder load in its code turned into a load of the field's
    /// offset. Instructions are 8-byte aligned in the object, as BPF sections are; a marker
    /// left anywhere afterwards (a placeholder not found where an instruction is, or one this
    /// daemon does not know) is an error rather than a program reading the wrong field.
    pub fn patch(&self, object: &[u8]) -> Result<PatchedObject> {
        let mut words = vec![0u64; object.len().div_ceil(INSN)];
        words.as_mut_bytes()[..object.len()].copy_from_slice(object);
        let patched = &mut words.as_mut_bytes()[..object.len()];
        let mut at = 0;
        while at + 2 * INSN <= patched.len() {
            if let Some(placeholder) = placeholder_load(&patched[at..at + 2 * INSN]) {
                let offset = self.get(placeholder).ok_or_else(|| unknown(placeholder))?;
                patched[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
                patched[at + 12..at + 16].copy_from_slice(&0u32.to_le_bytes());
                at += 2 * INSN;
            } else {
                at += INSN;
            }
        }
        let mark = kernel_field::MARK.to_le_bytes();
        if let Some(left) = patched.windows(4).position(|bytes| bytes == mark) {
            return Err(Error::BrokenObject(format!(
                "a field placeholder at byte {left} of their object is not an immediate load"
            )));
        }
        Ok(PatchedObject {
            words,
            len: object.len(),
        })
    }
}

/// The kernel programs' object with the field offsets written in. Kept in 8-byte words: the
/// ELF parser reads it in place and needs it aligned, which a byte vector is not promised to
/// be.
#[derive(Debug)]
pub struct PatchedObject {
    words: Vec<u64>,
    len: usize,
}

impl PatchedObject {
    pub fn bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }
}

/// The placeholder `insns` (two instructions) load, when they are a placeholder load.
fn placeholder_load(insns: &[u8]) -> Option<u64> {
    let word = |at: usize| u32::from_le_bytes(insns[at..at + 4].try_into().expect("4 bytes"));
    let plain_imm64 = insns[0] == LD_IMM64
        // No source register: a constant, not a map or function reference.
        && insns[1] >> 4 == 0
        && insns[2..4] == [0, 0]
        && insns[8..12] == [0; 4];
    let value = (u64::from(word(12)) << 32) | u64::from(word(4));
    (plain_imm64 && (value >> 32) as u32 == kernel_field::MARK).then_some(value)
}

fn unknown(placeholder: u64) -> Error {
    let number = kernel_field::number(placeholder).map_or(-1, i32::from);
    Error::BrokenObject(format!(
        "they read kernel field number {number} ({placeholder:#x}), which this daemon does not \
         look up"
    ))
}

/// The offsets in this kernel's structs, from its BTF (parsed once: 5+ MB).
pub fn offsets() -> Result<Offsets> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Error::NoBtf);
    }
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|err| Error::Btf(err.to_string()))?;
    FIELDS
        .iter()
        .map(|(placeholder, name, path)| Ok((*placeholder, path_offset(&btf, name, path)?)))
        .collect::<Result<_>>()
        .map(Offsets)
}

/// Byte offset of the member at `path` in the struct named `name`.
fn path_offset(btf: &Btf, name: &str, path: &[&str]) -> Result<u32> {
    let missing = || Error::Btf(format!("struct {name} has no member {}", path.join(".")));
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|err| Error::Btf(format!("struct {name}: {err}")))?;
    let mut ty = types
        .into_iter()
        .find(|ty| matches!(ty, Type::Struct(_)))
        .ok_or_else(missing)?;
    let mut offset = 0;
    for member in path {
        let (bits, member_ty) = member_in(btf, &ty, member).ok_or_else(missing)?;
        offset += bits / 8;
        ty = member_ty;
    }
    Ok(offset)
}

/// The bit offset and type of `member` in struct or union `ty`, looking through its anonymous
/// members (`skc_daddr` sits in an anonymous struct inside an anonymous union).
fn member_in(btf: &Btf, ty: &Type, member: &str) -> Option<(u32, Type)> {
    let members = match ty {
        Type::Struct(st) | Type::Union(st) => &st.members,
        _ => return None,
    };
    for m in members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let m_ty = resolve(btf, btf.resolve_chained_type(m).ok()?)?;
        if name == member {
            return Some((m.bit_offset(), m_ty));
        }
        if name.is_empty() {
            if let Some((inner, found)) = member_in(btf, &m_ty, member) {
                return Some((m.bit_offset() + inner, found));
            }
        }
    }
    None
}

/// `ty` with typedefs and qualifiers looked through.
fn resolve(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            Type::Const(t) => btf.resolve_chained_type(t).ok()?,
            Type::Volatile(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dst = value ll`, then `r0 = *(u64 *)(r1 + 0)`.
    fn code(value: u64) -> Vec<u8> {
        let mut insns = vec![LD_IMM64, 0x02, 0, 0];
        insns.extend_from_slice(&(value as u32).to_le_bytes());
        insns.extend_from_slice(&[0; 4]);
        insns.extend_from_slice(&((value >> 32) as u32).to_le_bytes());
        insns.extend_from_slice(&[0x79, 0x10, 0, 0, 0, 0, 0, 0]);
        insns
    }

    fn cookie_and_family() -> Offsets {
        Offsets(vec![(SK_COOKIE, 88), (SK_FAMILY, 16)])
    }

    #[test]
    fn placeholder_loads_become_offset_loads() {
        let mut object = vec![0xaa; 8];
        object.extend(code(SK_COOKIE));
        object.extend(code(0x1234_5678_9abc));
        object.extend(code(SK_FAMILY));
        let patched = cookie_and_family().patch(&object).unwrap();
        let patched = patched.bytes();
        let mut expected = vec![0xaa; 8];
        expected.extend(code(88));
        expected.extend(code(0x1234_5678_9abc));
        expected.extend(code(16));
        assert_eq!(patched, expected);
    }

    #[test]
    fn a_placeholder_the_daemon_cannot_place_is_an_error() {
        let unknown = cookie_and_family()
            .patch(&code(SK_STATE))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("field number 2"), "{unknown}");
        // Off the instruction grid: found as a stray marker, not patched.
        let mut stray = vec![0; 4];
        stray.extend(code(SK_COOKIE));
        let stray = cookie_and_family().patch(&stray).unwrap_err().to_string();
        assert!(stray.contains("not an immediate load"), "{stray}");
    }

    #[test]
    fn the_kernel_programs_hold_placeholders_this_daemon_knows() {
        let all = Offsets(FIELDS.iter().map(|(field, ..)| (*field, 8)).collect());
        let object = super::super::OBJECT;
        let loads = |object: &[u8]| {
            object
                .chunks_exact(INSN)
                .zip(object.chunks_exact(INSN).skip(1))
                .filter(|(first, second)| placeholder_load(&[*first, *second].concat()).is_some())
                .count()
        };
        assert!(loads(object) > 0, "no placeholder in the kernel programs");
        let patched = all.patch(object).unwrap();
        let patched = patched.bytes();
        assert_eq!(loads(patched), 0);
        assert_eq!(patched.len(), object.len());
    }

    #[test]
    fn finds_the_socket_fields_in_this_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let offsets = offsets().unwrap();
        let at = |field| offsets.get(field).unwrap();
        // Stable since Linux 2.6 at the start of `sock_common`: the two IPv4 addresses, a
        // 4-byte hash, the two ports, the family, the state.
        assert_eq!(at(SK_DADDR), 0);
        assert_eq!(at(SK_RCV_SADDR), 4);
        assert_eq!(at(SK_DPORT), 12);
        assert_eq!(at(SK_NUM), 14);
        assert_eq!(at(SK_FAMILY), 16);
        assert_eq!(at(SK_STATE), 18);
        // These move between versions. That the programs read the right fields there is
        // checked by every test that finds a flow's process (owners are keyed by the cookie
        // read here) and by the TCP tests (flows counted from sockets are keyed by the
        // addresses, ports and cgroup read here, and must meet their packets' flows).
        assert_eq!(at(SK_COOKIE) % 8, 0);
        assert!((24..256).contains(&at(SK_COOKIE)));
        assert!(at(SK_V6_RCV_SADDR) == at(SK_V6_DADDR) + 16);
        for field in [TCP_BYTES_SENT, TCP_BYTES_RECEIVED] {
            assert_eq!(at(field) % 8, 0, "{field:#x}");
            assert!(at(field) < 4096, "{field:#x}");
        }
    }
}
