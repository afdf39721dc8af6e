//! The transfers most tests make, and the assertions every test makes on them.

use std::net::SocketAddr;

use crate::{wire, Cgroup, Daemon, GenReport, Item, NetNs, TrafficGen};

/// Where and as what one end of a transfer runs.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// comm (at most 15 bytes), unique within the test.
    pub name: &'a str,
    pub ns: Option<&'a NetNs>,
    pub cgroup: Option<&'a Cgroup>,
}

impl<'a> Side<'a> {
    pub fn named(name: &'a str) -> Self {
        Side {
            name,
            ns: None,
            cgroup: None,
        }
    }

    pub fn netns(mut self, ns: &'a NetNs) -> Self {
        self.ns = Some(ns);
        self
    }

    pub fn cgroup(mut self, cg: &'a Cgroup) -> Self {
        self.cgroup = Some(cg);
        self
    }

    fn cmd<'t>(&self, tg: &'t TrafficGen, args: &[String]) -> crate::GenCommand<'t>
    where
        'a: 't,
    {
        let mut a = args.to_vec();
        a.extend(["--name".to_string(), self.name.to_string()]);
        let mut c = tg.cmd(&a);
        if let Some(ns) = self.ns {
            c = c.netns(ns);
        }
        if let Some(cg) = self.cgroup {
            c = c.cgroup(cg);
        }
        c
    }

    /// The cgroup path trafficd should report for a process of this side.
    pub fn cgroup_path(&self) -> String {
        self.cgroup
            .map(|c| c.path().to_string())
            .unwrap_or_else(Cgroup::current_path)
    }
}

/// A finished transfer of a known payload from one trafficgen process to another.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub protocol: &'static str,
    pub v6: bool,
    pub payload: u64,
    pub sender: GenReport,
    pub receiver: GenReport,
    /// comm and cgroup path each side should be reported with.
    pub sender_expect: (String, String),
    pub receiver_expect: (String, String),
}

/// Which end of a TCP transfer writes the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// tcp-send -> tcp-sink: the client connects and writes.
    Client,
    /// tcp-serve -> tcp-recv: the server accepts and writes, the client receives.
    Server,
}

/// A transfer of a known payload between two trafficgen processes, described by name:
///
/// ```ignore
/// let t = Transfer::tcp(listen, 1 << 20)
///     .server(Side::named("tg-sink"))
///     .client(Side::named("tg-send").cgroup(&cg))
///     .sent_by(Sender::Server)
///     .run(&tg);
/// ```
///
/// The server listens on `listen` (port 0 is fine) and the client connects. UDP is always
/// sent by the client, to a sink on the server side.
#[must_use = "a transfer happens on .run()"]
pub struct TransferBuilder<'a> {
    protocol: &'static str,
    listen: SocketAddr,
    payload: u64,
    sent_by: Sender,
    server: Option<Side<'a>>,
    client: Option<Side<'a>>,
}

impl Transfer {
    /// A TCP transfer of `payload` bytes, by default written by the client.
    pub fn tcp<'a>(listen: SocketAddr, payload: u64) -> TransferBuilder<'a> {
        TransferBuilder::new("tcp", listen, payload)
    }

    /// A UDP transfer of `payload` bytes in 1000-byte datagrams from the client to a sink on
    /// the server side. The sink must get every datagram (it has an 8 MiB buffer and the
    /// sender paces itself), or the test fails in `run`.
    pub fn udp<'a>(listen: SocketAddr, payload: u64) -> TransferBuilder<'a> {
        TransferBuilder::new("udp", listen, payload)
    }
}

impl<'a> TransferBuilder<'a> {
    fn new(protocol: &'static str, listen: SocketAddr, payload: u64) -> Self {
        TransferBuilder {
            protocol,
            listen,
            payload,
            sent_by: Sender::Client,
            server: None,
            client: None,
        }
    }

    /// The listening end (the sink of a UDP transfer).
    pub fn server(mut self, side: Side<'a>) -> Self {
        self.server = Some(side);
        self
    }

    /// The connecting end (the sender of a UDP transfer).
    pub fn client(mut self, side: Side<'a>) -> Self {
        self.client = Some(side);
        self
    }

    /// Which end writes the payload (TCP only; the client unless said otherwise).
    pub fn sent_by(mut self, sender: Sender) -> Self {
        assert!(
            self.protocol == "tcp" || sender == Sender::Client,
            "a UDP transfer is sent by the client"
        );
        self.sent_by = sender;
        self
    }

    /// Runs both processes to the end and checks that each moved the whole payload.
    pub fn run(self, tg: &TrafficGen) -> Transfer {
        let server = self
            .server
            .expect("a transfer needs .server(Side::named(..))");
        let client = self
            .client
            .expect("a transfer needs .client(Side::named(..))");
        match self.protocol {
            "tcp" => tcp_transfer(tg, self.listen, self.payload, self.sent_by, server, client),
            _ => udp_transfer(tg, self.listen, self.payload, server, client),
        }
    }
}

fn tcp_transfer(
    tg: &TrafficGen,
    listen: SocketAddr,
    payload: u64,
    sent_by: Sender,
    server: Side,
    client: Side,
) -> Transfer {
    let n = payload.to_string();
    let l = listen.to_string();
    let (srv_args, cli_args): (Vec<String>, Vec<String>) = match sent_by {
        Sender::Client => (
            vec!["tcp-sink".into(), "--listen".into(), l],
            vec!["tcp-send".into(), "--bytes".into(), n],
        ),
        Sender::Server => (
            vec![
                "tcp-serve".into(),
                "--listen".into(),
                l,
                "--bytes".into(),
                n,
            ],
            vec!["tcp-recv".into()],
        ),
    };
    let (srv, addr) = server.cmd(tg, &srv_args).spawn_ready();
    let mut cli_args = cli_args;
    cli_args.extend(["--to".into(), addr.to_string()]);
    let cli = client.cmd(tg, &cli_args).run();
    let srv = srv.finish();
    let (sender, receiver, s_side, r_side) = match sent_by {
        Sender::Client => (cli, srv, client, server),
        Sender::Server => (srv, cli, server, client),
    };
    assert_eq!(
        sender.bytes_sent(),
        payload,
        "sender report: {:?}",
        sender.json
    );
    assert_eq!(
        receiver.bytes_received(),
        payload,
        "receiver report: {:?}",
        receiver.json
    );
    finish(
        "tcp",
        listen.is_ipv6(),
        payload,
        sender,
        receiver,
        s_side,
        r_side,
    )
}

fn udp_transfer(
    tg: &TrafficGen,
    listen: SocketAddr,
    payload: u64,
    sink: Side,
    sender: Side,
) -> Transfer {
    let n = payload.to_string();
    let (rx, addr) = sink
        .cmd(
            tg,
            &[
                "udp-sink".into(),
                "--listen".into(),
                listen.to_string(),
                "--expect".into(),
                n.clone(),
                "--timeout-ms".into(),
                "10000".into(),
            ],
        )
        .spawn_ready();
    let tx = sender
        .cmd(
            tg,
            &[
                "udp-send".into(),
                "--to".into(),
                addr.to_string(),
                "--bytes".into(),
                n,
                "--datagram".into(),
                "1000".into(),
            ],
        )
        .run();
    let rx = rx.finish();
    assert_eq!(tx.bytes_sent(), payload, "sender report: {:?}", tx.json);
    assert_eq!(
        rx.bytes_received(),
        payload,
        "the UDP sink did not get every datagram (sender: {:?}, sink: {:?})",
        tx.json,
        rx.json
    );
    finish("udp", listen.is_ipv6(), payload, tx, rx, sender, sink)
}

fn finish(
    protocol: &'static str,
    v6: bool,
    payload: u64,
    sender: GenReport,
    receiver: GenReport,
    s: Side,
    r: Side,
) -> Transfer {
    assert_eq!(
        sender.comm(),
        s.name,
        "prctl(PR_SET_NAME) did not take: {:?}",
        sender.json
    );
    assert_eq!(
        receiver.comm(),
        r.name,
        "prctl(PR_SET_NAME) did not take: {:?}",
        receiver.json
    );
    Transfer {
        protocol,
        v6,
        payload,
        sender_expect: (s.name.to_string(), s.cgroup_path()),
        receiver_expect: (r.name.to_string(), r.cgroup_path()),
        sender,
        receiver,
    }
}

/// Asserts a process item's identity: pid, comm, uid/user, cgroup, no reason.
pub fn assert_identity(what: &str, item: &Item, pid: u32, comm: &str, cgroup: &str) {
    let v = &item.0;
    assert_eq!(item.pid(), pid, "{what}: pid: {v:#}");
    assert_eq!(item.comm(), comm, "{what}: comm: {v:#}");
    assert_eq!(item.cgroup(), cgroup, "{what}: cgroup: {v:#}");
    // trafficgen runs with the test's uid.
    let uid = u64::from(nix::unistd::geteuid().as_raw());
    assert_eq!(item.u64("uid"), uid, "{what}: uid: {v:#}");
    if uid == 0 {
        assert_eq!(item.str("user"), "root", "{what}: user: {v:#}");
    }
    assert!(
        v["reason"].is_null(),
        "{what}: an attributed process has no reason: {v:#}"
    );
    let cmdline = item.str("cmdline");
    // Empty is allowed once the process has exited; otherwise it is trafficgen's.
    assert!(
        cmdline.is_empty() || cmdline.contains("trafficgen") || cmdline.contains(comm),
        "{what}: cmdline {cmdline:?} is not trafficgen's: {v:#}"
    );
}

/// Polls /top until both processes of the transfer have their bytes, then
/// asserts pid, comm, user, cgroup and wire bytes on by=process (both
/// directions of both processes) and on by=flow (the sender's connection).
/// Returns the (sender, receiver) items.
pub fn assert_transfer(d: &Daemon, t: &Transfer, mtu: u64) -> (Item, Item) {
    let n = t.payload;
    let (sp, rp) = (t.sender.pid(), t.receiver.pid());
    let s = d.wait_process(sp, |i| i.tx() >= n);
    let r = d.wait_process(rp, |i| i.rx() >= n);
    let what = |who: &str| {
        format!(
            "{} over {} {who}",
            t.protocol,
            if t.v6 { "IPv6" } else { "IPv4" }
        )
    };
    assert_identity(
        &what("sender"),
        &s,
        sp,
        &t.sender_expect.0,
        &t.sender_expect.1,
    );
    assert_identity(
        &what("receiver"),
        &r,
        rp,
        &t.receiver_expect.0,
        &t.receiver_expect.1,
    );
    match t.protocol {
        "tcp" => assert_tcp_processes(t, &s, &r, mtu, &what),
        "udp" => assert_udp_processes(t, &s, &r, &what),
        p => panic!("unknown protocol {p}"),
    }
    // The sender's side of the connection, by flow.
    let (local, remote) = (t.sender.local(), t.sender.peer());
    let flows = d.wait_flow(t.protocol, local, remote, |tx, _| tx >= n);
    let tx: u64 = flows.iter().map(Item::tx).sum();
    let tx_packets: u64 = flows.iter().map(Item::tx_packets).sum();
    match t.protocol {
        "tcp" => wire::assert_tcp_data(
            &what("sender flow lifetime_tx_bytes"),
            wire::Sent::from_report(n, &t.sender),
            tx,
            tx_packets,
            mtu,
            t.v6,
        ),
        _ => wire::assert_udp_exact(
            &what("sender flow lifetime_tx_bytes"),
            n,
            t.sender.u64("datagrams_sent"),
            tx,
            t.v6,
        ),
    }
    assert!(
        flows
            .iter()
            .any(|f| f.pid() == sp && f.comm() == t.sender_expect.0),
        "{}: no item of the flow {local} -> {remote} names pid {sp} comm {}: {flows:#?}",
        what("sender flow"),
        t.sender_expect.0
    );
    (s, r)
}

/// TCP, by process: the data one way and the ACKs the other, both ends on this host.
fn assert_tcp_processes(t: &Transfer, s: &Item, r: &Item, mtu: u64, what: &dyn Fn(&str) -> String) {
    let n = t.payload;
    let v6 = t.v6;
    let (stx, rrx) = (
        what("sender lifetime_tx_bytes"),
        what("receiver lifetime_rx_bytes"),
    );
    // Retransmissions are real bytes on the wire: the sender's TCP_INFO says how many.
    let sent = wire::Sent::from_report(n, &t.sender);
    wire::assert_tcp_data(&stx, sent, s.tx(), s.tx_packets(), mtu, v6);
    wire::assert_tcp_data(&rrx, sent, r.rx(), r.rx_packets(), mtu, v6);
    let (rtx, srx) = (
        what("receiver lifetime_tx_bytes (ACKs)"),
        what("sender lifetime_rx_bytes (ACKs)"),
    );
    wire::assert_tcp_acks(&rtx, n, r.tx(), r.tx_packets(), v6);
    wire::assert_tcp_acks(&srx, n, s.rx(), s.rx_packets(), v6);
    // Sender and receiver are on this host: the same packets, both ways.
    let (st, rt) = (s.tx(), s.tx_packets());
    wire::assert_conserved(&what("data"), sent, st, rt, r.rx(), r.rx_packets(), v6);
    // GSO may hand the hook 64 KiB super-packets: at least payload / 64 KiB of them.
    assert!(s.tx_packets() >= n / 65536, "{stx}: {:#}", s.0);
    assert!(r.rx_packets() >= n / 65536, "{rrx}: {:#}", r.0);
}

/// UDP, by process: every datagram one packet, nothing back.
fn assert_udp_processes(t: &Transfer, s: &Item, r: &Item, what: &dyn Fn(&str) -> String) {
    let n = t.payload;
    let dgrams = t.sender.u64("datagrams_sent");
    wire::assert_udp_exact(&what("sender lifetime_tx_bytes"), n, dgrams, s.tx(), t.v6);
    wire::assert_udp_exact(&what("receiver lifetime_rx_bytes"), n, dgrams, r.rx(), t.v6);
    assert_eq!(
        s.tx_packets(),
        dgrams,
        "{}: one packet per datagram: {:#}",
        what("sender"),
        s.0
    );
    assert_eq!(
        r.rx_packets(),
        dgrams,
        "{}: one packet per datagram: {:#}",
        what("receiver"),
        r.0
    );
    // Nothing flows back on UDP.
    assert_eq!(s.rx(), 0, "{}: {:#}", what("sender lifetime_rx_bytes"), s.0);
    assert_eq!(
        r.tx(),
        0,
        "{}: {:#}",
        what("receiver lifetime_tx_bytes"),
        r.0
    );
}
