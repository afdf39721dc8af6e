//! `trafficd top`, `trafficd explain` and `trafficd exposure`: one of the daemon's answers, read
//! for a person as a table or a short indented text. Each subcommand is one file: its flags,
//! its request, its text.

mod explain;
mod exposure;
pub mod top;

use std::{process::ExitCode, time::Duration};

use serde::de::DeserializeOwned;

pub use explain::ExplainArgs;
pub use exposure::ExposureArgs;
pub use top::TopArgs;

use crate::api::ErrorBody;
use top::bytes;

/// Prints the text or the error of a subcommand named `name`.
pub fn print(text: Result<String, String>, name: &str) -> ExitCode {
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("trafficd {name}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// GETs `path_and_query` from the daemon at `base` and reads the answer as `T`; an error
/// answer becomes its message.
fn fetch<T: DeserializeOwned>(base: &str, path_and_query: &str) -> Result<T, String> {
    let url = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let response = match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, response)) => {
            let message = match response.into_json::<ErrorBody>() {
                Ok(body) => body.error,
                Err(_) => "no error message".to_string(),
            };
            return Err(format!("{url} answered {code}: {message}"));
        }
        Err(err) => {
            return Err(format!(
                "cannot reach trafficd at {base}: {err}; is `trafficd run` running? (--url sets the address)"
            ))
        }
    };
    response
        .into_json()
        .map_err(|e| format!("{url} did not answer as expected: {e}"))
}

/// A peer as a person reads it: `name (ip, class, source)` or `ip (class)`.
fn peer(peer: &crate::api::PeerItem) -> String {
    let class = serde_json::to_value(peer.class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match (&peer.name, peer.source) {
        (Some(name), Some(source)) => {
            let source = serde_json::to_value(source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{name} ({}, {class}, from {source})", peer.ip)
        }
        _ => format!("{} ({class})", peer.ip),
    }
}
