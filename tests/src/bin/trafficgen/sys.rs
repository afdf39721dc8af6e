//! The process's name and the socket options and figures trafficgen reads from the kernel.

use std::ffi::CString;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};
use serde_json::{json, Value};

use crate::Res;

/// Sets the process's comm (prctl(PR_SET_NAME)), which trafficd reports it by.
pub fn set_comm(name: &str) -> Res<()> {
    if name.len() > 15 {
        return Err(format!(
            "--name {name:?}: a comm is at most 15 bytes without NUL"
        ));
    }
    let name = CString::new(name)
        .map_err(|_| format!("--name {name:?}: a comm is at most 15 bytes without NUL"))?;
    nix::sys::prctl::set_name(&name).map_err(|e| format!("prctl(PR_SET_NAME): {e}"))
}

/// The process's comm as the kernel has it.
pub fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The kernel's own account of a TCP socket (getsockopt TCP_INFO, which nix does not cover):
/// segments in and out (retransmissions included) and retransmitted payload bytes, so tests
/// can tell headers and retransmissions apart from accounting errors.
pub fn tcp_info(s: &TcpStream) -> Value {
    // SAFETY: tcp_info is plain old data, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which lives across the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Value::Null;
    }
    json!({
        "segs_out": info.tcpi_segs_out,
        "segs_in": info.tcpi_segs_in,
        "data_segs_out": info.tcpi_data_segs_out,
        "data_segs_in": info.tcpi_data_segs_in,
        "total_retrans": info.tcpi_total_retrans,
        "bytes_sent": info.tcpi_bytes_sent,
        "bytes_retrans": info.tcpi_bytes_retrans,
        "bytes_acked": info.tcpi_bytes_acked,
        "bytes_received": info.tcpi_bytes_received,
        "snd_mss": info.tcpi_snd_mss,
    })
}

/// SO_SNDBUFFORCE (root ignores wmem_max): that much can wait in the kernel after the process
/// is gone. Best effort, like the receive buffer below.
pub fn set_sndbuf(s: &TcpStream, bytes: usize) {
    let _ = setsockopt(s, sockopt::SndBufForce, &bytes);
}

/// SO_RCVBUFFORCE, or SO_RCVBUF (capped by rmem_max) when that is refused.
pub fn set_rcvbuf(s: &UdpSocket, bytes: usize) {
    if setsockopt(s, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(s, sockopt::RcvBuf, &bytes);
    }
}
