//! The daemon's error type. Every variant renders as one line that names the problem and the
//! fix, because that line is what an operator sees when `trafficd run` refuses to start.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "trafficd needs root or the capabilities {missing} to load its BPF programs; run it with sudo \
         or grant them (e.g. `setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin,cap_sys_ptrace+ep trafficd`)"
    )]
    MissingPrivileges { missing: String },

    #[error(
        "this kernel exposes no BTF at /sys/kernel/btf/vmlinux; trafficd needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux >= 5.8)"
    )]
    NoBtf,

    #[error("cannot read kernel BTF: {0}")]
    Btf(String),

    #[error(
        "the kernel programs built into this trafficd cannot be prepared for loading: {0}; \
         this build is broken, rebuild it from a clean tree (`cargo clean -p trafficd`)"
    )]
    BrokenObject(String),

    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified` or boot with systemd's unified hierarchy"
    )]
    NoCgroup2,

    #[error(
        "cannot read /proc/self/mountinfo ({0}); trafficd finds the cgroup2 mount there: \
         mount procfs at /proc"
    )]
    MountInfo(String),

    #[error(
        "cannot read the possible CPUs from /sys/devices/system/cpu/possible; trafficd sizes its \
         per-CPU entries by it: mount sysfs at /sys"
    )]
    PossibleCpus,

    #[error("cannot open the cgroup2 root {path}: {source}")]
    OpenCgroup {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the kernel refused to load the BPF object: {0}")]
    LoadObject(#[from] aya::EbpfError),

    #[error(
        "cannot {action} the BPF program {program} ({hook}): {reason}; without it {consequence}"
    )]
    Program {
        action: &'static str,
        program: &'static str,
        hook: &'static str,
        consequence: &'static str,
        /// The kernel's answer, cut to its first line and the verifier's verdict.
        reason: String,
    },

    #[error("BPF map {0} is missing from the object; the binary and its kernel programs disagree")]
    MissingMap(&'static str),

    #[error("cannot open BPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },

    #[error(
        "cannot map the flow counters into memory: {0}; trafficd needs BPF_F_MMAPABLE arrays \
         (Linux >= 5.5)"
    )]
    MapCounters(std::io::Error),

    #[error("cannot listen on {addr}: {source}; pick another address with --listen")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },

    #[error(
        "cannot talk to the {runtime} engine at {socket}: {reason}; its containers show by id \
         until it answers: start the engine, or check that this is its API socket"
    )]
    Engine {
        runtime: &'static str,
        socket: PathBuf,
        reason: String,
    },

    #[error(
        "cannot {action} pods from the Kubernetes API server at {url}: {reason}; pods show by UID \
         until it answers: check the API server and that the service account may list and watch pods"
    )]
    Kubernetes {
        action: &'static str,
        url: String,
        reason: String,
    },

    #[error(
        "bad web config file {path}: {problem}; fix the file (the exporter-toolkit format: \
         tls_server_config.cert_file/key_file, basic_auth_users with bcrypt hashes) or drop \
         --web.config.file"
    )]
    WebConfig { path: PathBuf, problem: String },

    #[error(
        "cannot turn on the kernel's BPF run-time statistics (BPF_ENABLE_STATS): {0}; it needs \
         CAP_SYS_ADMIN and Linux >= 5.8: grant it or run without --bpf-stats"
    )]
    BpfStats(String),

    #[error(
        "bad --interface-capacity `{input}`: {reason}; write NAME=RATE with RATE in bits per \
         second, e.g. eth0=10Gbit or veth0=100Mbit"
    )]
    InterfaceCapacity { input: String, reason: &'static str },

    #[error(
        "cannot {action} over rtnetlink: {reason}; trafficd reads interface counters from the \
         kernel's NETLINK_ROUTE socket, which needs Linux with netlink (any supported kernel)"
    )]
    Rtnetlink { action: String, reason: String },

    #[error(
        "conntrack is not available: {reason}; load it with `modprobe nf_conntrack_netlink` \
         (NAT'd flows are shown without their original tuples until then)"
    )]
    ConntrackUnavailable { reason: String },

    #[error(
        "cannot query conntrack in {namespace}: {reason}; the namespace may have vanished, or \
         trafficd lacks CAP_SYS_ADMIN and CAP_NET_ADMIN to enter it"
    )]
    Conntrack { namespace: String, reason: String },

    #[error(
        "cannot attach the forwarded-traffic counter to interface {interface}: {reason}; \
         forwarded traffic on it is not counted (check that it exists: `ip link show {interface}`)"
    )]
    TcAttach { interface: String, reason: String },

    #[error(
        "cannot count on interface {interface}: {counted} interfaces are counted already, the \
         most --max-interfaces allows; raise --max-interfaces to count on more"
    )]
    TooManyInterfaces { interface: String, counted: usize },

    #[error("{0}")]
    Io(#[from] std::io::Error),

    #[error(
        "line {line} of the labels file {path}: {reason}; fix that line (`CIDR-or-address name`, \
         `#` starts a comment): the labels read before stay in use until the file parses"
    )]
    LabelsLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error(
        "the OpenVPN status file {path} is not usable: {reason}; its clients keep the names \
         last read until OpenVPN writes it whole again (check `status` and `status-version` in \
         the server's configuration)"
    )]
    OpenvpnStatus { path: PathBuf, reason: String },

    #[error(
        "cannot read {path}: {source}; the names last read from it stay in use until it is \
         readable again: check the path and its permissions"
    )]
    PeerFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "reverse DNS for {ip} failed ({reason}); addresses show without DNS names until the name \
         server answers: check {server}, or run without --reverse-dns"
    )]
    ReverseDns {
        ip: std::net::IpAddr,
        server: String,
        reason: String,
    },

    #[error(
        "cannot set up reverse DNS: {reason}; give a name server with --dns-server or fix \
         /etc/resolv.conf, or run without --reverse-dns"
    )]
    ResolverConfig { reason: String },

    #[error(
        "cannot list listening sockets over sock_diag: {reason}; exposure stays unknown until \
         it works: load the kernel's socket diagnostics (`modprobe inet_diag tcp_diag udp_diag`)"
    )]
    ListenerDump { reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
