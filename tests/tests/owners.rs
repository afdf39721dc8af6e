//! Socket owners as the kernel records them: the last process to send or receive on a socket.
//! Each CPU remembers the owner it last confirmed so that the owner's next call skips the
//! lookup; a socket handed to a process on another CPU and back must still end with its last
//! user. Read straight from the daemon's OWNERS map (`bpftool map lookup`), right after each
//! send: the tracepoint records the owner inside the call.

use std::{
    net::UdpSocket,
    os::{fd::AsRawFd, unix::net::UnixDatagram},
};

use trafficd_tests::bpf::{self, cookie_of, map_of, pin_to};
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

/// The send and receive tracepoints fire for every socket; only IP sockets are recorded. The
/// family is checked only when the CPU's entry does not hold the socket yet, so a Unix socket
/// that slipped into an entry would be recorded from then on: each of its sends must find
/// nothing recorded. An IP socket's send beside it is recorded, so the lookups do find owners.
#[test]
fn unix_sockets_are_not_recorded() {
    require_root!();
    let d = Daemon::start();
    let owners = map_of(d.pid().expect("daemon pid"), "OWNERS");
    let (unix, peer) = UnixDatagram::pair().unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    pin_to(0);
    for round in 0..3 {
        unix.send(b"local").unwrap();
        let mut buffer = [0u8; 16];
        peer.recv(&mut buffer).unwrap();
        assert_eq!(
            owner(owners, cookie_of(&unix)),
            None,
            "the sending Unix socket got an owner (send {round})"
        );
        assert_eq!(
            owner(owners, cookie_of(&peer)),
            None,
            "the receiving Unix socket got an owner (receive {round})"
        );
    }
    udp.send_to(b"ip", sink.local_addr().unwrap()).unwrap();
    assert_eq!(
        owner(owners, cookie_of(&udp)),
        Some(std::process::id()),
        "an IP socket's send beside them"
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

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The tgid OWNERS records for `cookie`, if any.
fn owner(map: u64, cookie: u64) -> Option<u32> {
    let value = bpf::lookup(map, &cookie.to_le_bytes())?;
    // SocketOwner starts with the tgid.
    Some(u32::from_le_bytes(value.get(..4)?.try_into().ok()?))
}
