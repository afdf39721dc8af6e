//! Field offsets the kernel programs need, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so instead of compiling an offset in we look it up here
//! and hand it to the programs as a read-only global at load time.

use std::path::Path;

use btf_rs::{Btf, Type};

use crate::error::{Error, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The field offsets, each with the name of the program global that takes it.
pub struct Offsets(pub Vec<(&'static str, u32)>);

/// Where each global's field is: (global, struct, path of members from it).
const FIELDS: &[(&str, &str, &[&str])] = &[
    ("SK_FAMILY_OFFSET", "sock", &["__sk_common", "skc_family"]),
    ("SK_COOKIE_OFFSET", "sock", &["__sk_common", "skc_cookie"]),
    ("SK_STATE_OFFSET", "sock", &["__sk_common", "skc_state"]),
    ("SK_PROTOCOL_OFFSET", "sock", &["sk_protocol"]),
    ("SK_DADDR_OFFSET", "sock", &["__sk_common", "skc_daddr"]),
    (
        "SK_RCV_SADDR_OFFSET",
        "sock",
        &["__sk_common", "skc_rcv_saddr"],
    ),
    ("SK_DPORT_OFFSET", "sock", &["__sk_common", "skc_dport"]),
    ("SK_NUM_OFFSET", "sock", &["__sk_common", "skc_num"]),
    (
        "SK_V6_DADDR_OFFSET",
        "sock",
        &["__sk_common", "skc_v6_daddr"],
    ),
    (
        "SK_V6_RCV_SADDR_OFFSET",
        "sock",
        &["__sk_common", "skc_v6_rcv_saddr"],
    ),
    ("SK_CGROUP_OFFSET", "sock", &["sk_cgrp_data", "cgroup"]),
    ("CGROUP_KN_OFFSET", "cgroup", &["kn"]),
    ("KERNFS_ID_OFFSET", "kernfs_node", &["id"]),
    ("TCP_BYTES_SENT_OFFSET", "tcp_sock", &["bytes_sent"]),
    ("TCP_BYTES_RECEIVED_OFFSET", "tcp_sock", &["bytes_received"]),
    ("TCP_SEGS_OUT_OFFSET", "tcp_sock", &["segs_out"]),
    ("TCP_SEGS_IN_OFFSET", "tcp_sock", &["segs_in"]),
    ("TCP_HEADER_LEN_OFFSET", "tcp_sock", &["tcp_header_len"]),
];

/// The offsets in this kernel's structs, from its BTF (parsed once: 5+ MB).
pub fn offsets() -> Result<Offsets> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Error::NoBtf);
    }
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|err| Error::Btf(err.to_string()))?;
    FIELDS
        .iter()
        .map(|(global, name, path)| Ok((*global, path_offset(&btf, name, path)?)))
        .collect::<Result<_>>()
        .map(Offsets)
}

#[cfg(test)]
impl Offsets {
    pub fn get(&self, global: &str) -> Option<u32> {
        self.0.iter().find(|(g, _)| *g == global).map(|(_, o)| *o)
    }
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

    #[test]
    fn finds_the_socket_fields_in_this_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let offsets = offsets().unwrap();
        let at = |global| offsets.get(global).unwrap();
        // Stable since Linux 2.6 at the start of `sock_common`: the two IPv4 addresses, a
        // 4-byte hash, the two ports, the family, the state.
        assert_eq!(at("SK_DADDR_OFFSET"), 0);
        assert_eq!(at("SK_RCV_SADDR_OFFSET"), 4);
        assert_eq!(at("SK_DPORT_OFFSET"), 12);
        assert_eq!(at("SK_NUM_OFFSET"), 14);
        assert_eq!(at("SK_FAMILY_OFFSET"), 16);
        assert_eq!(at("SK_STATE_OFFSET"), 18);
        // These move between versions. That the programs read the right fields there is
        // checked by every test that finds a flow's process (owners are keyed by the cookie
        // read here) and by the TCP tests (flows counted from sockets are keyed by the
        // addresses, ports and cgroup read here, and must meet their packets' flows).
        assert_eq!(at("SK_COOKIE_OFFSET") % 8, 0);
        assert!((24..256).contains(&at("SK_COOKIE_OFFSET")));
        assert!(at("SK_V6_RCV_SADDR_OFFSET") == at("SK_V6_DADDR_OFFSET") + 16);
        for global in ["TCP_BYTES_SENT_OFFSET", "TCP_BYTES_RECEIVED_OFFSET"] {
            assert_eq!(at(global) % 8, 0, "{global}");
            assert!(at(global) < 4096, "{global}");
        }
    }
}
