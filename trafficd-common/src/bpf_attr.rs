//! The parts of `union bpf_attr` (include/uapi/linux/bpf.h) that userspace passes to bpf(2)
//! itself, for the commands aya 0.14 has no call for: batch map commands, test runs, iterator
//! links, and the bench's own empty programs. One definition, shared by the daemon and the
//! bench, so a layout fix lands in both.
//!
//! Each struct is a prefix of the union; the kernel reads the fields it knows for the command
//! and wants every byte past them zero, so padding is spelled out and `Default` zeroes it.

/// BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH.
#[repr(C)]
#[derive(Default)]
pub struct BatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Default)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    /// Zero: the kernel refuses (EINVAL) an attribute with any byte set past its last field,
    /// and left implicit these four bytes of padding would hold whatever the stack held.
    pub _pad: u32,
}

/// BPF_LINK_CREATE, with the target-specific tail (iterator info, cookies...) left zero.
#[repr(C)]
#[derive(Default)]
pub struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_fd: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub _target_specific: [u64; 4],
}

/// BPF_ITER_CREATE.
#[repr(C)]
#[derive(Default)]
pub struct IterCreateAttr {
    pub link_fd: u32,
    pub flags: u32,
}

/// BPF_PROG_LOAD, up to attach_btf_obj_fd.
#[repr(C)]
#[derive(Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_btf_obj_fd: u32,
    pub _pad: u32,
}

/// BPF_RAW_TRACEPOINT_OPEN.
#[repr(C)]
#[derive(Default)]
pub struct RawTracepointOpenAttr {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad: u32,
}

// Offsets from include/uapi/linux/bpf.h.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<BatchAttr>() == 56);
    assert!(size_of::<TestRunAttr>() == 80);
    assert!(offset_of!(TestRunAttr, batch_size) == 72);
    assert!(offset_of!(LinkCreateAttr, flags) == 12);
    assert!(size_of::<ProgLoadAttr>() == 120);
    assert!(offset_of!(ProgLoadAttr, prog_name) == 48);
    assert!(offset_of!(ProgLoadAttr, expected_attach_type) == 68);
    assert!(offset_of!(ProgLoadAttr, attach_btf_id) == 108);
    assert!(offset_of!(ProgLoadAttr, attach_btf_obj_fd) == 112);
    assert!(offset_of!(RawTracepointOpenAttr, prog_fd) == 8);
};
