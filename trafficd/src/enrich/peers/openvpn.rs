//! OpenVPN status files (`--openvpn-status FILE`): which client holds a virtual address.
//!
//! OpenVPN rewrites its status file every `status` interval in one of three layouts
//! (`status-version`): 1, a human-readable list with a CLIENT LIST and a ROUTING TABLE section;
//! 2, comma-separated rows each tagged CLIENT_LIST or ROUTING_TABLE, with a HEADER row naming
//! the columns; 3, the same tab-separated. All three end with an END line, which is how a file
//! still being written is told from a finished one. Columns are found by their header names,
//! because OpenVPN versions add columns (Virtual IPv6 Address, Client ID, Cipher) over time.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;
use serde::Serialize;

/// One connected client, as the server last wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VpnClient {
    pub common_name: Arc<str>,
    /// Where the client connects from, as written (`198.51.100.7:51234`).
    pub real_address: Arc<str>,
    /// As written (`Thu Jun 18 04:23:03 2015`); empty when only a route names the client.
    pub connected_since: Arc<str>,
    /// Seconds since the epoch, in status versions 2 and 3.
    pub connected_since_unix: Option<u64>,
    /// From the server's point of view: what the client sent it.
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// Every client of one status file, by the virtual addresses and iroutes routed to it.
#[derive(Default)]
pub struct VpnClients {
    routes: JointPrefixMap<IpNet, Arc<VpnClient>>,
}

/// One section of the file: its column names and rows, both as text.
#[derive(Default)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Row values in the order of `names`; a missing column or value reads as empty.
    fn rows<'a>(&'a self, names: &[&str]) -> Vec<Vec<&'a str>> {
        let positions: Vec<Option<usize>> = names.iter().map(|n| self.column(n)).collect();
        self.rows
            .iter()
            .map(|row| {
                positions
                    .iter()
                    .map(|p| p.and_then(|p| row.get(p)).map_or("", |v| v.as_str()))
                    .collect()
            })
            .collect()
    }
}

const CLIENT_COLUMNS: [&str; 8] = [
    "Common Name",
    "Real Address",
    "Bytes Received",
    "Bytes Sent",
    "Connected Since",
    "Connected Since (time_t)",
    "Virtual Address",
    "Virtual IPv6 Address",
];
const ROUTE_COLUMNS: [&str; 3] = ["Virtual Address", "Common Name", "Real Address"];

impl VpnClients {
    /// Parses a whole status file of any version. A file without its END line is refused:
    /// it is being rewritten, and its first half would drop the clients of the second.
    pub fn parse(text: &str) -> Result<VpnClients, String> {
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.last().map(|l| l.trim()) != Some("END") {
            return Err("no END line: the file is empty or still being written".into());
        }
        let first = lines.first().copied().unwrap_or_default();
        let (clients, routes) = if first.starts_with("OpenVPN CLIENT LIST") {
            version_1_tables(&lines)?
        } else if first.contains('\t') {
            tagged_tables(&lines, '\t')?
        } else if first.contains(',') {
            tagged_tables(&lines, ',')?
        } else {
            return Err(format!(
                "`{first}` starts no OpenVPN status layout (status-version 1, 2 or 3)"
            ));
        };
        build(&clients, &routes)
    }

    /// The client the most specific route for `ip` leads to.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<VpnClient>> {
        let host = IpNet::from(ip.to_canonical());
        self.routes.get_lpm(&host).map(|(_, client)| client)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.len() == 0
    }
}

/// status-version 1: sections introduced by a title line, each with a header line.
fn version_1_tables(lines: &[&str]) -> Result<(Table, Table), String> {
    let mut clients = Table::default();
    let mut routes = Table::default();
    let mut current: Option<&mut Table> = None;
    for line in lines {
        let fields = || line.split(',').map(str::to_owned).collect::<Vec<_>>();
        match line.trim() {
            "OpenVPN CLIENT LIST" => current = Some(&mut clients),
            "ROUTING TABLE" => current = Some(&mut routes),
            "GLOBAL STATS" | "END" => current = None,
            _ if line.starts_with("Updated,") => {}
            _ => {
                if let Some(table) = current.as_deref_mut() {
                    if table.columns.is_empty() {
                        table.columns = fields();
                    } else {
                        table.rows.push(fields());
                    }
                }
            }
        }
    }
    if clients.columns.is_empty() || routes.columns.is_empty() {
        return Err("status-version 1 without its CLIENT LIST and ROUTING TABLE headers".into());
    }
    Ok((clients, routes))
}

/// status-version 2 (`,`) and 3 (tab): every row tagged, HEADER rows name the columns.
fn tagged_tables(lines: &[&str], separator: char) -> Result<(Table, Table), String> {
    let mut clients = Table::default();
    let mut routes = Table::default();
    for line in lines {
        let fields: Vec<String> = line.split(separator).map(str::to_owned).collect();
        let (tag, rest) = fields.split_first().ok_or("empty row")?;
        match tag.as_str() {
            "HEADER" => {
                let (section, columns) = rest.split_first().ok_or("HEADER row without a name")?;
                match section.as_str() {
                    "CLIENT_LIST" => clients.columns = columns.to_vec(),
                    "ROUTING_TABLE" => routes.columns = columns.to_vec(),
                    _ => {}
                }
            }
            "CLIENT_LIST" => clients.rows.push(rest.to_vec()),
            "ROUTING_TABLE" => routes.rows.push(rest.to_vec()),
            _ => {}
        }
    }
    if clients.columns.is_empty() || routes.columns.is_empty() {
        return Err("no HEADER rows for CLIENT_LIST and ROUTING_TABLE".into());
    }
    Ok((clients, routes))
}

/// Joins the client list (counters, connection time) with the routing table (virtual
/// addresses and iroutes), matching rows by common name and real address.
fn build(clients: &Table, routes: &Table) -> Result<VpnClients, String> {
    for (table, name, columns) in [
        (clients, "CLIENT LIST", &CLIENT_COLUMNS[..2]),
        (routes, "ROUTING TABLE", &ROUTE_COLUMNS[..]),
    ] {
        if let Some(missing) = columns.iter().find(|c| table.column(c).is_none()) {
            return Err(format!("the {name} has no `{missing}` column"));
        }
    }
    let mut by_client: HashMap<(&str, &str), Arc<VpnClient>> = HashMap::new();
    let mut found = VpnClients::default();
    for row in clients.rows(&CLIENT_COLUMNS) {
        let client = Arc::new(VpnClient {
            common_name: Arc::from(row[0]),
            real_address: Arc::from(row[1]),
            bytes_received: row[2].parse().unwrap_or(0),
            bytes_sent: row[3].parse().unwrap_or(0),
            connected_since: Arc::from(row[4]),
            connected_since_unix: row[5].parse().ok(),
        });
        for virtual_address in [row[6], row[7]] {
            if let Some(network) = route_network(virtual_address) {
                found.routes.insert(network, client.clone());
            }
        }
        by_client.insert((row[0], row[1]), client);
    }
    for row in routes.rows(&ROUTE_COLUMNS) {
        let Some(network) = route_network(row[0]) else {
            continue;
        };
        let client = by_client
            .get(&(row[1], row[2]))
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(VpnClient {
                    common_name: Arc::from(row[1]),
                    real_address: Arc::from(row[2]),
                    connected_since: Arc::from(""),
                    connected_since_unix: None,
                    bytes_received: 0,
                    bytes_sent: 0,
                })
            });
        found.routes.insert(network, client);
    }
    Ok(found)
}

/// A routing table's virtual address: an address, a network (an iroute such as
/// `192.168.10.0/24`), or, on a tap server, a MAC address that no IP flow can match (skipped).
/// OpenVPN marks routes it learnt from the client's packets with a trailing `C`.
fn route_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let parse = |text: &str| {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(IpNet::from(ip.to_canonical()));
        }
        text.parse::<IpNet>().ok().map(|n| n.trunc())
    };
    parse(text).or_else(|| parse(text.strip_suffix('C')?))
}

#[cfg(test)]
mod tests;
