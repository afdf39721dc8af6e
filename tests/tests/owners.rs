//! Socket owners as the kernel records them: the last process to send or receive on a socket.
//! Each CPU remembers the owner it last confirmed so that the owner's next call skips the
//! lookup; a socket handed to a process on another CPU and back must still end with its last
//! user. Read straight from the daemon's OWNERS map (`bpftool map lookup`), right after each
//! send: the tracepoint records the owner inside the call.

use std::{fs, net::UdpSocket, os::fd::AsRawFd, process::Command};

use trafficd_tests::{require_root, Daemon};

#[test]
fn the_owner_is_the_last_process_to_use_the_socket() {
    require_root!();
    let d = Daemon::start();
    let owners = map_of(d.pid().expect("daemon pid"), "OWNERS");
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cookie = cookie_of(&socket);
    let me = std::process::id();
    let cpus = online_cpus();

    pin_to(0);
    socket.send_to(b"parent", to).unwrap();
    assert_eq!(owner(owners, cookie), Some(me), "after the parent's send");

    // The child sends from the other CPU when there is one: the parent's CPU still remembers
    // the parent as the owner it confirmed.
    let child = fork_and_send(&socket, to, cpus.saturating_sub(1));
    assert_eq!(owner(owners, cookie), Some(child), "after the child's send");

    socket.send_to(b"parent again", to).unwrap();
    assert_eq!(
        owner(owners, cookie),
        Some(me),
        "after the parent's second send on CPU 0 ({cpus} CPUs online)"
    );
}

/// Forks a child that pins itself to `cpu`, sends one datagram on `socket` and exits; returns
/// its pid once it has exited.
fn fork_and_send(socket: &UdpSocket, to: std::net::SocketAddr, cpu: usize) -> u32 {
    let std::net::SocketAddr::V4(to) = to else {
        panic!("IPv4 sink expected")
    };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let payload = b"child";
    // SAFETY: the child only makes system calls (sched_setaffinity, sendto, _exit), which are
    // safe after fork in a multi-threaded process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: see above; every pointer is to memory the child inherited.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
            let sent = libc::sendto(
                socket.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&raw const address).cast(),
                std::mem::size_of_val(&address) as libc::socklen_t,
            );
            libc::_exit(if sent == payload.len() as isize { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child's send failed (status {status:#x})"
    );
    pid as u32
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; sched_setaffinity(0) is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// SO_COOKIE of `socket`: the key the kernel programs use for it.
fn cookie_of(socket: &UdpSocket) -> u64 {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    cookie
}

/// The id of the map called `name` among those process `pid` holds (from its fdinfo).
fn map_of(pid: u32, name: &str) -> u64 {
    let ids: Vec<u64> = fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("the daemon's fdinfo")
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("map_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect();
    ids.into_iter()
        .find(|id| {
            let out = Command::new("bpftool")
                .args(["-j", "map", "show", "id", &id.to_string()])
                .output()
                .expect("bpftool (cargo xtask setup installs it)");
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|map| map["name"] == name)
        })
        .unwrap_or_else(|| panic!("the daemon (pid {pid}) holds no map {name}"))
}

/// The tgid OWNERS records for `cookie`, if any.
fn owner(map: u64, cookie: u64) -> Option<u32> {
    let mut args: Vec<String> = ["-j", "map", "lookup", "id", &map.to_string(), "key", "hex"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(cookie.to_le_bytes().iter().map(|b| format!("{b:02x}")));
    let out = Command::new("bpftool").args(&args).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let bytes: Vec<u8> = entry["value"]
        .as_array()?
        .iter()
        .filter_map(|b| u8::from_str_radix(b.as_str()?.trim_start_matches("0x"), 16).ok())
        .collect();
    // SocketOwner starts with the tgid.
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}
