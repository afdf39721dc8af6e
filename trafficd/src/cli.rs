//! Command-line interface.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use trafficd_common::{defaults, forwarding};

#[derive(Parser, Debug)]
#[command(
    name = "trafficd",
    version,
    about = "Per-process bandwidth accounting with eBPF: who is using the link, right now",
    long_about = "trafficd counts every IP byte of every local socket in the kernel (cgroup_skb \
hooks on the cgroup2 root) and attributes it to the process, cgroup and flow it belongs to (sock \
tracepoints). `trafficd run` loads the programs and serves the numbers over HTTP; `trafficd top` \
shows them in the terminal.",
    after_help = "Examples:\n  sudo trafficd run\n  curl 'http://127.0.0.1:9464/top?limit=10'\n  trafficd top --by flow --window 60s"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size of the `run` flags costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the kernel programs and serve /top, /metrics and /healthz (needs root or CAP_BPF,
    /// CAP_PERFMON and CAP_NET_ADMIN).
    Run(Box<RunArgs>),
    /// Print the top talkers of a running daemon as a table.
    Top(crate::show::TopArgs),
    /// Explain one flow of a running daemon: process, peer, bytes, and for a forwarder the
    /// peers sending to it.
    Explain(crate::show::ExplainArgs),
    /// List the listening sockets of a running daemon's host that external peers send to.
    Exposure(crate::show::ExposureArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the HTTP API and /metrics. Keep it on loopback unless a firewall guards it:
    /// the API names every process on the host.
    #[arg(long, default_value = "127.0.0.1:9464", env = "TRAFFICD_LISTEN")]
    pub listen: SocketAddr,

    /// How often the kernel maps are read; windows and rates are as fine as this. A burst of
    /// new flows is read sooner, 16,384 at a time, so that no single drain takes all of it.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,

    /// How long a process, cgroup, flow or remote stays in /top and /metrics after its last byte
    /// (at least 70 s: the longest window and one 10 s bucket).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub retention: Duration,

    /// Kernel entries of sockets idle this long are deleted (after their bytes were read) even
    /// if no close was seen. They come back on the next byte.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_expiry: Duration,

    #[command(flatten)]
    pub maps: MapSizeArgs,

    #[command(flatten)]
    pub interfaces: InterfaceArgs,

    #[command(flatten)]
    pub containers: ContainerArgs,

    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `trafficd=debug`. RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Forward the kernel programs' own log lines (aya-log) to the daemon's log.
    #[arg(long)]
    pub kernel_log: bool,

    /// Count every TCP packet in the packet hooks. By default an established TCP connection
    /// is counted from the kernel's own counters of the connection, which takes about half as
    /// much CPU from a bulk transfer; the totals are the same but for a retransmitted segment
    /// received twice, counted by its header only.
    #[arg(long)]
    pub tcp_per_packet: bool,

    /// How often connections nobody sends or receives on (a reader that stopped reading, a
    /// socket closed with data still queued) are read. Busy connections are read at every
    /// drain by their own calls; this sweep walks the kernel's whole TCP table once per
    /// network namespace, a few milliseconds each on a large host.
    #[arg(long, default_value = "30s", value_parser = parse_sweep_interval)]
    pub tcp_sweep_interval: Duration,

    #[command(flatten)]
    pub web: WebArgs,

    #[command(flatten)]
    pub peers: crate::enrich::peers::PeerArgs,

    #[command(flatten)]
    pub exposure: crate::exposure::ExposureArgs,
}

/// What /metrics exports and how the HTTP server is protected.
#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Name per-process series by comm and pid instead of comm alone. Every pid is then its
    /// own series (still at most --metrics-max-series): for hosts with few, long-lived
    /// processes.
    #[arg(long)]
    pub metrics_per_pid: bool,

    /// Series per family at most (per process, per cgroup), an `[other]` series included: a
    /// series, once exported, keeps its place until its processes have been idle past
    /// --retention; newcomers beyond the bound are summed into `[other]`, so the family's sum
    /// is still every byte.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub metrics_max_series: u32,

    /// Export how often each kernel program ran and the CPU time it took
    /// (trafficd_bpf_program_*). Turns on the kernel's BPF run-time statistics
    /// (kernel.bpf_stats_enabled) while trafficd runs, which adds a little to every run of
    /// every BPF program on the host.
    #[arg(long)]
    pub bpf_stats: bool,

    /// Serve over TLS and/or require basic auth, as the Prometheus exporters' web config file
    /// says (tls_server_config.cert_file/key_file, basic_auth_users with bcrypt hashes).
    /// Without it, plain HTTP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

/// Entries of each kernel map; the maps are preallocated, so kernel memory is bounded by (and
/// spent up front on) these. When a map is full the loss is counted in
/// trafficd_kernel_lost_events_total.
#[derive(Args, Debug, Clone)]
pub struct MapSizeArgs {
    /// Sockets whose packets overflowed a full flow map, kept as per-socket totals so process
    /// attribution stays exact.
    #[arg(long, default_value_t = defaults::SOCKETS, value_parser = map_size)]
    pub socket_map_size: u32,
    /// Flows (socket + 5-tuple + cgroup) tracked at once: every packet is counted in its flow,
    /// and socket, process and cgroup totals are sums of flows. Beyond this, packets go to the
    /// socket and cgroup overflow maps and only per-flow detail is lost.
    #[arg(long, default_value_t = defaults::FLOWS, value_parser = map_size)]
    pub flow_map_size: u32,
    /// Cgroups whose packets overflowed a full flow map (per-cgroup overflow totals).
    #[arg(long, default_value_t = defaults::CGROUPS, value_parser = map_size)]
    pub cgroup_map_size: u32,
    /// Socket owners remembered (last process that used each socket).
    #[arg(long, default_value_t = defaults::OWNERS, value_parser = map_size)]
    pub owner_map_size: u32,
    /// Processes remembered by the kernel (comm, uid, cgroup of processes that may exit).
    #[arg(long, default_value_t = defaults::PROCESSES, value_parser = map_size)]
    pub process_map_size: u32,
    /// (socket, process) pairs: splits sockets shared after fork between their users.
    #[arg(long, default_value_t = defaults::SOCKET_PROCESSES, value_parser = map_size)]
    pub socket_process_map_size: u32,
    /// Closed sockets waiting for their last read.
    #[arg(long, default_value_t = defaults::CLOSED, value_parser = map_size)]
    pub closed_map_size: u32,
}

/// Interfaces, forwarded traffic and NAT: which links are counted, what they can carry, and
/// how much of it is remembered.
#[derive(Args, Debug, Clone)]
pub struct InterfaceArgs {
    /// Interfaces to count forwarded traffic on, comma-separated or repeated. By default
    /// every interface that is up except loopback, including ones that appear later (a new
    /// container's veth).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// Capacity of a link the driver gives no speed for (veth, bridge, tunnel), in bits per
    /// second as tc(8) spells it: `eth0=10Gbit`. Repeatable; overrides the driver's speed.
    #[arg(long, value_name = "NAME=RATE", value_parser = parse_capacity)]
    pub interface_capacity: Vec<(String, u64)>,
    /// Forwarded flows (interface, direction, 5-tuple) tracked at once in the kernel. Beyond
    /// this, forwarded bytes still count per interface, without per-flow detail.
    #[arg(long, default_value_t = forwarding::DEFAULT_FLOWS, value_parser = map_size)]
    pub forwarded_flows: u32,
    /// Interfaces counted on at once. The kernel keeps every CPU's counts of each (about
    /// 270 bytes per CPU); an interface beyond this is not counted, and the log says so.
    #[arg(long, default_value_t = forwarding::DEFAULT_INTERFACES, value_parser = interface_count)]
    pub max_interfaces: u32,
    /// conntrack answers (NAT tuples, per namespace) remembered, so a busy NAT costs one
    /// lookup per new flow and never a dump of its table.
    #[arg(long, default_value_t = 65_536, value_parser = map_size)]
    pub conntrack_cache: u32,
}

fn parse_capacity(s: &str) -> Result<(String, u64), String> {
    crate::enrich::interfaces::parse_capacity(s).map_err(|e| e.to_string())
}

/// Where the container engines listen. An engine that is absent costs one log line; one that
/// comes later is found by a retry with backoff.
#[derive(Args, Debug, Clone)]
pub struct ContainerArgs {
    /// Docker's API socket, for container names and images [default: DOCKER_HOST's unix
    /// socket, else /var/run/docker.sock].
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    /// Podman's Docker-compatible API socket (`podman system service`).
    #[arg(long, value_name = "PATH", default_value = "/run/podman/podman.sock")]
    pub podman_socket: PathBuf,
    /// containerd's gRPC socket (ctr, nerdctl, Kubernetes' CRI plugin); Docker's own
    /// containers in it are left to the Docker engine.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// CRI-O's socket, asked for the containers whose cgroups appear (it has no event stream).
    #[arg(long, value_name = "PATH", default_value = "/var/run/crio/crio.sock")]
    pub crio_socket: PathBuf,
    /// Name no containers from engines or the Kubernetes API: owners come from cgroup paths
    /// alone (a container shows its short id).
    #[arg(long)]
    pub no_containers: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 5m)"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err("must be between 100ms and 60s".to_string());
    }
    Ok(d)
}

fn parse_sweep_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("must be between 100ms and 1h".to_string());
    }
    Ok(d)
}

fn map_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=(1 << 24)).contains(&n) => Ok(n),
        _ => Err("must be a whole number from 1 to 16777216".to_string()),
    }
}

fn interface_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=forwarding::IFINDEX_SLOTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {}",
            forwarding::IFINDEX_SLOTS
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::By;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["trafficd", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.tcp_sweep_interval, Duration::from_secs(30));
        assert!(!args.tcp_per_packet);
        assert_eq!(args.web.metrics_max_series, 500);
        assert!(!args.web.metrics_per_pid);
        assert!(args.web.web_config_file.is_none());
        assert!(args.interfaces.interfaces.is_empty());
        assert_eq!(args.interfaces.forwarded_flows, 65_536);
        assert_eq!(args.interfaces.max_interfaces, 512);
    }

    #[test]
    fn interface_flags_are_read() {
        let cli = Cli::try_parse_from([
            "trafficd",
            "run",
            "--interfaces",
            "eth0,veth1",
            "--interfaces",
            "wg0",
            "--interface-capacity",
            "eth0=10Gbit",
            "--forwarded-flows",
            "1024",
            "--max-interfaces",
            "64",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.interfaces.interfaces, ["eth0", "veth1", "wg0"]);
        assert_eq!(
            args.interfaces.interface_capacity,
            [("eth0".to_string(), 1_250_000_000)]
        );
        assert_eq!(args.interfaces.forwarded_flows, 1024);
        assert_eq!(args.interfaces.max_interfaces, 64);
    }

    #[test]
    fn bad_flags_are_rejected() {
        for args in [
            &["trafficd", "run", "--interval", "1ms"][..],
            &["trafficd", "run", "--interval", "soon"],
            &["trafficd", "run", "--listen", "nowhere"],
            &["trafficd", "run", "--flow-map-size", "0"],
            &["trafficd", "run", "--tcp-sweep-interval", "10ms"],
            &["trafficd", "run", "--tcp-sweep-interval", "2h"],
            &["trafficd", "run", "--interface-capacity", "eth0"],
            &["trafficd", "run", "--forwarded-flows", "0"],
            &["trafficd", "run", "--max-interfaces", "0"],
            &["trafficd", "run", "--max-interfaces", "70000"],
            &["trafficd", "run", "--metrics-max-series", "1"],
            &["trafficd", "top", "--limit", "0"],
            &["trafficd", "top", "--limit", "1001"],
            &["trafficd", "top", "--by", "foo"],
            &["trafficd", "top", "--window", "7m"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn top_flags_become_the_query() {
        let cli = Cli::try_parse_from([
            "trafficd", "top", "-n", "3", "--by", "flow", "--window", "1m", "--sort", "rx",
        ])
        .unwrap();
        let Command::Top(args) = cli.command else {
            panic!()
        };
        assert_eq!(
            args.query().to_query_string(),
            "limit=3&by=flow&window=60s&sort=rx"
        );
        let cli = Cli::try_parse_from(["trafficd", "top", "--by", "container"]).unwrap();
        let Command::Top(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.query().by, By::Container);
    }
}
