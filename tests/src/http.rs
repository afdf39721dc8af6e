//! A blocking HTTP GET for the daemon's API (loopback only, no TLS, no proxy).

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

/// Status, Content-Type and body of a response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl Response {
    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response (HTTP {}) is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    // ureq 2 with default features off never takes a proxy from the environment:
    // the daemon is on 127.0.0.1.
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build()
    })
}

/// GET `url`. `Err` only for transport errors (connection refused, timeout...);
/// 4xx and 5xx are answers the tests look at.
pub fn get(url: &str) -> Result<Response, String> {
    let resp = match agent().get(url).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("GET {url}: {e}")),
    };
    let status = resp.status();
    let content_type = resp.header("content-type").map(str::to_string);
    let mut body = String::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_string(&mut body)
        .map_err(|e| format!("GET {url}: reading body: {e}"))?;
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// GET `url` and parse the body as JSON; panics on transport errors or non-JSON.
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = get(url).unwrap_or_else(|e| panic!("{e}"));
    let v = r.json();
    (r.status, v)
}
