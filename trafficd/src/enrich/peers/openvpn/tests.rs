//! Samples of each status-version, laid out as OpenVPN 2.6 writes them.

use super::*;

const VERSION_1: &str = "\
OpenVPN CLIENT LIST
Updated,Sun Dec  6 20:40:01 2026
Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since
tke-xxx,198.51.100.7:51234,4413218,55421,Sun Dec  6 18:02:11 2026
laptop-ana,192.0.2.44:1194,9921,10233,Sun Dec  6 19:55:40 2026
ROUTING TABLE
Virtual Address,Common Name,Real Address,Last Ref
172.16.248.22,tke-xxx,198.51.100.7:51234,Sun Dec  6 20:39:58 2026
192.168.50.0/24,tke-xxx,198.51.100.7:51234,Sun Dec  6 20:39:12 2026
172.16.248.30,laptop-ana,192.0.2.44:1194,Sun Dec  6 20:38:01 2026
GLOBAL STATS
Max bcast/mcast queue length,1
END
";

const VERSION_2: &str = "\
TITLE,OpenVPN 2.6.3 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [MH/PKTINFO] [AEAD]
TIME,2026-12-06 20:40:01,1796676001
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher
CLIENT_LIST,tke-xxx,198.51.100.7:51234,172.16.248.22,fd00:8::1000,4413218,55421,2026-12-06 18:02:11,1796666531,UNDEF,0,0,AES-256-GCM
CLIENT_LIST,laptop-ana,192.0.2.44:1194,172.16.248.30,,9921,10233,2026-12-06 19:55:40,1796673340,ana,1,1,AES-256-GCM
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,172.16.248.22,tke-xxx,198.51.100.7:51234,2026-12-06 20:39:58,1796675998
ROUTING_TABLE,fd00:8::1000,tke-xxx,198.51.100.7:51234,2026-12-06 20:39:58,1796675998
ROUTING_TABLE,192.168.50.0/24,tke-xxx,198.51.100.7:51234,2026-12-06 20:39:12,1796675952
ROUTING_TABLE,172.16.248.30,laptop-ana,192.0.2.44:1194,2026-12-06 20:38:01,1796675881
GLOBAL_STATS,Max bcast/mcast queue length,1
GLOBAL_STATS,dco_enabled,0
END
";

/// status-version 3 is version 2 with tabs between the fields.
fn version_3() -> String {
    VERSION_2.replace(',', "\t")
}

fn client(clients: &VpnClients, ip: &str) -> Option<Arc<VpnClient>> {
    clients.lookup(ip.parse().unwrap()).cloned()
}

fn assert_incident_client(clients: &VpnClients) {
    let tke = client(clients, "172.16.248.22").expect("172.16.248.22 is routed to a client");
    assert_eq!(&*tke.common_name, "tke-xxx");
    assert_eq!(&*tke.real_address, "198.51.100.7:51234");
    assert_eq!(tke.bytes_received, 4_413_218);
    assert_eq!(tke.bytes_sent, 55_421);
    let behind = client(clients, "192.168.50.9").expect("the client's iroute");
    assert_eq!(&*behind.common_name, "tke-xxx");
    let ana = client(clients, "172.16.248.30").expect("the second client");
    assert_eq!(&*ana.common_name, "laptop-ana");
    assert_eq!(ana.bytes_received, 9921);
    assert_eq!(client(clients, "172.16.248.23"), None);
}

#[test]
fn reads_status_version_1() {
    let clients = VpnClients::parse(VERSION_1).unwrap();
    assert_incident_client(&clients);
    let tke = client(&clients, "172.16.248.22").unwrap();
    assert_eq!(&*tke.connected_since, "Sun Dec  6 18:02:11 2026");
    assert_eq!(tke.connected_since_unix, None);
}

#[test]
fn reads_status_version_2() {
    let clients = VpnClients::parse(VERSION_2).unwrap();
    assert_incident_client(&clients);
    let tke = client(&clients, "172.16.248.22").unwrap();
    assert_eq!(&*tke.connected_since, "2026-12-06 18:02:11");
    assert_eq!(tke.connected_since_unix, Some(1_796_666_531));
    let v6 = client(&clients, "fd00:8::1000").expect("the IPv6 virtual address");
    assert_eq!(&*v6.common_name, "tke-xxx");
}

#[test]
fn reads_status_version_3() {
    let clients = VpnClients::parse(&version_3()).unwrap();
    assert_incident_client(&clients);
    assert_eq!(
        client(&clients, "172.16.248.22")
            .unwrap()
            .connected_since_unix,
        Some(1_796_666_531)
    );
}

#[test]
fn reads_crlf_files_and_older_layouts_without_the_newer_columns() {
    let older = "\
TITLE,OpenVPN 2.3.10 x86_64-pc-linux-gnu
TIME,Sun Dec  6 20:40:01 2026,1796676001
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username
CLIENT_LIST,tke-xxx,198.51.100.7:51234,172.16.248.22,4413218,55421,Sun Dec  6 18:02:11 2026,1796666531,UNDEF
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,172.16.248.22,tke-xxx,198.51.100.7:51234,Sun Dec  6 20:39:58 2026,1796675998
GLOBAL_STATS,Max bcast/mcast queue length,0
END
"
    .replace('\n', "\r\n");
    let clients = VpnClients::parse(&older).unwrap();
    let tke = client(&clients, "172.16.248.22").unwrap();
    assert_eq!(tke.bytes_received, 4_413_218);
}

#[test]
fn skips_tap_routes_by_mac_address_and_learnt_route_marks() {
    let tap = VERSION_1.replace(
        "172.16.248.30,laptop-ana",
        "ae:1f:30:44:02:9b,laptop-ana,192.0.2.44:1194,Sun Dec  6 20:38:01 2026\n172.16.248.31C,laptop-ana",
    );
    let clients = VpnClients::parse(&tap).unwrap();
    assert_eq!(client(&clients, "172.16.248.30"), None);
    assert_eq!(
        client(&clients, "172.16.248.31").map(|c| c.common_name.clone()),
        Some(Arc::from("laptop-ana"))
    );
}

#[test]
fn refuses_half_written_empty_and_foreign_files() {
    for text in [VERSION_1, VERSION_2] {
        let half = &text[..text.len() / 2];
        let err = VpnClients::parse(half)
            .err()
            .expect("half a file is refused");
        assert!(err.contains("END"), "{err}");
    }
    assert!(VpnClients::parse("").is_err());
    let foreign = VpnClients::parse("hello world\nEND\n").err().unwrap();
    assert!(foreign.contains("status-version"), "{foreign}");
    let headless = VpnClients::parse("CLIENT_LIST,a,b\nEND\n").err().unwrap();
    assert!(headless.contains("HEADER"), "{headless}");
}
