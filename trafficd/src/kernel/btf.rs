//! Field offsets the kernel programs need, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so instead of compiling an offset in we look it up here
//! and hand it to the programs as a read-only global at load time.

use std::path::Path;

use btf_rs::{Btf, Type};

use crate::error::{Error, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Offsets of the `struct sock` fields the programs read directly.
pub struct SockOffsets {
    /// `sk_family` (`__sk_common.skc_family`).
    pub family: u32,
    /// `sk_cookie` (`__sk_common.skc_cookie`).
    pub cookie: u32,
}

/// The offsets in this kernel's `struct sock`, from its BTF (parsed once: 5+ MB).
pub fn sock_offsets() -> Result<SockOffsets> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Error::NoBtf);
    }
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|err| Error::Btf(err.to_string()))?;
    let common = member_offset(&btf, "sock", "__sk_common")?;
    Ok(SockOffsets {
        family: common + member_offset(&btf, "sock_common", "skc_family")?,
        cookie: common + member_offset(&btf, "sock_common", "skc_cookie")?,
    })
}

/// Byte offset of `member` in the struct named `name`.
fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|err| Error::Btf(format!("struct {name}: {err}")))?;
    for ty in types {
        let Type::Struct(st) = ty else { continue };
        for m in &st.members {
            if btf.resolve_name(m).ok().as_deref() == Some(member) {
                return Ok(m.bit_offset() / 8);
            }
        }
    }
    Err(Error::Btf(format!("struct {name} has no member {member}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sock_fields_in_this_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let offsets = sock_offsets().unwrap();
        // Stable since Linux 2.6: two 4-byte addresses, a 4-byte hash, two 2-byte ports.
        assert_eq!(offsets.family, 16);
        // Moves between versions, but always an aligned 8 bytes inside `sock_common`, past the
        // family. That the programs read the right cookie there is checked by every test that
        // finds a flow's process: flows are keyed by the cookie the packet hooks get from the
        // kernel, owners by the one read here.
        assert_eq!(offsets.cookie % 8, 0);
        assert!((24..256).contains(&offsets.cookie), "{}", offsets.cookie);
    }
}
