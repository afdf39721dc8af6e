//! The bench's client of trafficd's HTTP API: /healthz, /top and /metrics over one kept-alive
//! HTTP/1.1 connection.
//!
//! The connection is kept because the bench polls /healthz dozens of times a run (four times a
//! second, and often while it waits for the drains after the traffic), and a fresh connection
//! per poll costs trafficd an accept, a handshake and the loopback delivery of its answer, all
//! in its context: the bench would charge its own polling to trafficd's CPU per GB.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// trafficd's /healthz.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Health {
    pub drains: u64,
    pub last_drain_microseconds: u64,
    pub longest_drain_microseconds: u64,
}

/// One process of trafficd's /top?by=process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopProcess {
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
    pub lifetime_tx_bytes: u64,
    pub lifetime_rx_bytes: u64,
    #[serde(default)]
    pub lifetime_tx_packets: u64,
    #[serde(default)]
    pub lifetime_rx_packets: u64,
}

/// GET requests to one trafficd, on a connection kept between them.
pub struct Api {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr, conn: None }
    }

    /// GET `path`; returns the body and how long the exchange took (a connect included when
    /// one was needed). Bounded by `timeout` for every connect, read and write.
    pub fn get(&mut self, path: &str, timeout: Duration) -> Result<(String, Duration)> {
        // A kept connection the daemon has closed meanwhile fails on first use: one retry on
        // a fresh connection.
        if self.conn.is_some() {
            if let Ok(answer) = self.exchange(path, timeout) {
                return Ok(answer);
            }
        }
        self.exchange(path, timeout)
    }

    fn exchange(&mut self, path: &str, timeout: Duration) -> Result<(String, Duration)> {
        let started = Instant::now();
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, timeout)
                    .with_context(|| format!("connect to {}", self.addr))?;
                BufReader::new(stream)
            }
        };
        conn.get_ref().set_read_timeout(Some(timeout))?;
        conn.get_ref().set_write_timeout(Some(timeout))?;
        // The whole request in one write, and no Nagle: a request written in pieces waits for
        // the ACK of its first piece, which the daemon delays (delayed ACK), and every GET on
        // a kept connection then took the delayed-ACK timeout instead of the daemon's time.
        conn.get_ref().set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: identity\r\n\r\n",
            self.addr
        );
        conn.get_mut().write_all(request.as_bytes())?;
        let response = read_response(&mut conn).with_context(|| format!("read GET {path}"))?;
        let took = started.elapsed();
        if response.keep_alive {
            self.conn = Some(conn);
        }
        if response.status != 200 {
            bail!("GET {path}: HTTP {}", response.status);
        }
        Ok((String::from_utf8_lossy(&response.body).into_owned(), took))
    }

    /// GET /healthz. It shares a lock with the drain, so a long drain delays it: the timeout
    /// is generous, and the time it took is returned too.
    pub fn healthz_timed(&mut self) -> Result<(Health, Duration)> {
        let (body, took) = self.get("/healthz", Duration::from_secs(60))?;
        Ok((serde_json::from_str(&body).context("parse /healthz")?, took))
    }

    pub fn healthz(&mut self) -> Result<Health> {
        Ok(self.healthz_timed()?.0)
    }

    /// Every process trafficd lists (up to the API's limit of 1000), by lifetime totals.
    pub fn top_processes(&mut self) -> Result<Vec<TopProcess>> {
        #[derive(Deserialize)]
        struct Top {
            items: Vec<TopProcess>,
        }
        let path = "/top?by=process&limit=1000&window=60s";
        let (body, _) = self.get(path, Duration::from_secs(60))?;
        let top: Top = serde_json::from_str(&body).context("parse /top")?;
        Ok(top.items)
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
    /// Whether the connection can carry the next request.
    keep_alive: bool,
}

/// Reads one HTTP/1.1 response: its body delimited by Content-Length, chunked encoding, or
/// (then the connection is not kept) the end of the stream.
fn read_response(conn: &mut impl BufRead) -> Result<Response> {
    let status_line = read_line(conn)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked, mut keep_alive) = (None, false, true);
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = Some(value.parse().context("bad Content-Length")?),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => keep_alive &= !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(conn)?
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        conn.read_exact(&mut body)?;
        body
    } else {
        keep_alive = false;
        let mut body = Vec::new();
        conn.read_to_end(&mut body)?;
        body
    };
    Ok(Response {
        status,
        body,
        keep_alive,
    })
}

fn read_chunked(conn: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(conn)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).with_context(|| format!("bad chunk {line:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line that ends the response.
            while !read_line(conn)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        if !read_line(conn)?.is_empty() {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
    }
}

/// One CRLF-terminated line, without its terminator; the stream's end is an error.
fn read_line(conn: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        bail!("connection closed mid-response");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_responses_back_to_back_on_one_connection() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc\
                     HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
                     HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\nno";
        let mut conn = &wire[..];
        let first = read_response(&mut conn).unwrap();
        assert_eq!(
            (first.status, &first.body[..], first.keep_alive),
            (200, &b"abc"[..], true)
        );
        let second = read_response(&mut conn).unwrap();
        assert_eq!((second.status, &second.body[..]), (200, &b"abcde"[..]));
        let third = read_response(&mut conn).unwrap();
        assert_eq!(
            (third.status, &third.body[..], third.keep_alive),
            (400, &b"no"[..], false)
        );
        assert!(read_response(&mut conn).is_err());
    }

    /// A server that answers only once it has the whole request, as trafficd does: with the
    /// request written in pieces under Nagle, every GET on the kept connection waited for the
    /// peer's delayed ACK (about 40 ms on Linux).
    #[test]
    fn a_get_on_loopback_takes_well_under_the_delayed_ack_timeout() {
        use std::io::Read;
        use std::net::TcpListener;

        const GETS: usize = 20;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            for _ in 0..GETS {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed mid-request");
                    request.extend_from_slice(&buf[..n]);
                }
                let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                request.drain(..end);
                conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .unwrap();
            }
        });
        let mut api = Api::new(addr);
        let mut took: Vec<Duration> = (0..GETS)
            .map(|_| {
                let (body, took) = api.get("/healthz", Duration::from_secs(5)).unwrap();
                assert_eq!(body, "ok");
                took
            })
            .collect();
        server.join().unwrap();
        took.sort();
        let median = took[GETS / 2];
        assert!(
            median < Duration::from_millis(10),
            "median GET took {median:?}: the client waits for a delayed ACK"
        );
    }
}
