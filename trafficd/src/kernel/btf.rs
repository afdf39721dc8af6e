//! Field offsets the kernel programs need, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so instead of compiling an offset in we look it up here
//! and hand it to the programs as a read-only global at load time.

use std::path::Path;

use btf_rs::{Btf, Type};

use crate::error::{Error, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `sk_family` (`__sk_common.skc_family`) in `struct sock`.
pub fn sk_family_offset() -> Result<u32> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Error::NoBtf);
    }
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|err| Error::Btf(err.to_string()))?;
    let common = member_offset(&btf, "sock", "__sk_common")?;
    let family = member_offset(&btf, "sock_common", "skc_family")?;
    Ok(common + family)
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
    fn finds_sk_family_in_this_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: no {VMLINUX_BTF} on this kernel");
            return;
        }
        // Stable since Linux 2.6: two 4-byte addresses, a 4-byte hash, two 2-byte ports.
        assert_eq!(sk_family_offset().unwrap(), 16);
    }
}
