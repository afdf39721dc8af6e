//! Real files in a temporary directory, changed the ways editors and OpenVPN change them.

use std::{net::IpAddr, sync::atomic::AtomicU32, sync::atomic::Ordering};

use super::*;

/// A directory removed when dropped, also when the test panics.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("trafficd-peers-{}-{n}-{tag}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` the way editors and OpenVPN do: a new file renamed over it.
    pub fn replace(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let staging = self.0.join(format!(".{name}.new"));
        fs::write(&staging, text).unwrap();
        fs::rename(&staging, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub const STATUS_V2: &str = "\
TITLE,OpenVPN 2.6.3 x86_64-pc-linux-gnu
TIME,2026-12-06 20:40:01,1796676001
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,Connected Since,Connected Since (time_t),Username,Client ID,Peer ID
CLIENT_LIST,tke-xxx,198.51.100.7:51234,172.16.248.22,,4413218,55421,2026-12-06 18:02:11,1796666531,UNDEF,0,0
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,172.16.248.22,tke-xxx,198.51.100.7:51234,2026-12-06 20:39:58,1796675998
GLOBAL_STATS,Max bcast/mcast queue length,0
END
";

fn label(snapshot: &Snapshot, ip: &str) -> Option<String> {
    let ip: IpAddr = ip.parse().unwrap();
    snapshot.labels.as_ref()?.lookup(ip).map(|n| n.to_string())
}

fn vpn_name(snapshot: &Snapshot, ip: &str) -> Option<String> {
    let ip: IpAddr = ip.parse().unwrap();
    snapshot
        .openvpn
        .iter()
        .find_map(|c| c.lookup(ip))
        .map(|c| c.common_name.to_string())
}

#[test]
fn a_bad_labels_file_keeps_the_previous_labels_and_is_logged_once() {
    let dir = TempDir::new("labels");
    let path = dir.replace("labels", "10.8.1.0/24 squid-proxies\n");
    let mut reloader = Reloader::new(Some(path.clone()), vec![]);
    assert!(reloader.poll());
    assert_eq!(
        label(&reloader.snapshot(), "10.8.1.3").as_deref(),
        Some("squid-proxies")
    );
    assert!(!reloader.poll(), "an unchanged file is not read again");

    dir.replace("labels", "10.8.1.0/24 squid-proxies\n10.8.1.0/33 broken\n");
    assert!(!reloader.poll());
    assert_eq!(
        label(&reloader.snapshot(), "10.8.1.3").as_deref(),
        Some("squid-proxies")
    );
    assert!(!reloader.poll());
    assert_eq!(reloader.reports(), 1, "logged once, not at every poll");

    dir.replace("labels", "10.8.1.0/24 proxies-renamed\n");
    assert!(reloader.poll());
    assert_eq!(
        label(&reloader.snapshot(), "10.8.1.3").as_deref(),
        Some("proxies-renamed")
    );
}

#[test]
fn a_rewrite_in_place_is_seen() {
    let dir = TempDir::new("inplace");
    let path = dir.0.join("labels");
    fs::write(&path, "10.0.0.0/8 lan\n").unwrap();
    let mut reloader = Reloader::new(Some(path.clone()), vec![]);
    reloader.poll();
    // Same inode, different length: seen even within one mtime tick.
    fs::write(&path, "10.0.0.0/8 the-lan\n").unwrap();
    assert!(reloader.poll());
    assert_eq!(
        label(&reloader.snapshot(), "10.1.1.1").as_deref(),
        Some("the-lan")
    );
}

#[test]
fn a_vanished_or_half_written_status_file_keeps_its_clients() {
    let dir = TempDir::new("openvpn");
    let path = dir.replace("status", STATUS_V2);
    let mut reloader = Reloader::new(None, vec![path.clone()]);
    assert!(reloader.poll());
    assert_eq!(
        vpn_name(&reloader.snapshot(), "172.16.248.22").as_deref(),
        Some("tke-xxx")
    );

    fs::remove_file(&path).unwrap();
    assert!(!reloader.poll());
    assert!(!reloader.poll());
    assert_eq!(
        vpn_name(&reloader.snapshot(), "172.16.248.22").as_deref(),
        Some("tke-xxx")
    );
    assert_eq!(reloader.reports(), 1);

    dir.replace("status", &STATUS_V2[..STATUS_V2.len() / 2]);
    assert!(!reloader.poll());
    assert_eq!(
        vpn_name(&reloader.snapshot(), "172.16.248.22").as_deref(),
        Some("tke-xxx")
    );
    assert_eq!(
        reloader.reports(),
        2,
        "the half-written file is a new problem"
    );

    dir.replace("status", &STATUS_V2.replace("tke-xxx", "tke-yyy"));
    assert!(reloader.poll());
    assert_eq!(
        vpn_name(&reloader.snapshot(), "172.16.248.22").as_deref(),
        Some("tke-yyy")
    );
}

#[test]
fn a_file_missing_at_start_is_read_when_it_appears() {
    let dir = TempDir::new("late");
    let path = dir.0.join("labels");
    let mut reloader = Reloader::new(Some(path), vec![]);
    assert!(!reloader.poll());
    assert_eq!(label(&reloader.snapshot(), "10.1.1.1"), None);
    dir.replace("labels", "10.0.0.0/8 lan\n");
    assert!(reloader.poll());
    assert_eq!(
        label(&reloader.snapshot(), "10.1.1.1").as_deref(),
        Some("lan")
    );
}
