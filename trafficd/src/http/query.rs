//! Parameters of GET /top, validated into types, with errors that name the parameter and the
//! allowed values.

use std::{collections::HashMap, time::Duration};

pub const MAX_LIMIT: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Process,
    Cgroup,
    Flow,
    Remote,
}

impl By {
    pub fn name(self) -> &'static str {
        match self {
            By::Process => "process",
            By::Cgroup => "cgroup",
            By::Flow => "flow",
            By::Remote => "remote",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Total,
    Tx,
    Rx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopQuery {
    pub limit: usize,
    pub by: By,
    pub window: Duration,
    pub sort: Sort,
}

impl Default for TopQuery {
    fn default() -> Self {
        TopQuery {
            limit: 10,
            by: By::Process,
            window: Duration::from_secs(10),
            sort: Sort::Total,
        }
    }
}

/// Parses the query parameters of /top. Unknown parameters are ignored.
pub fn parse(params: &HashMap<String, String>) -> Result<TopQuery, String> {
    let mut query = TopQuery::default();
    if let Some(limit) = params.get("limit") {
        query.limit = match limit.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(format!(
                    "invalid limit {limit:?}: expected a whole number from 1 to {MAX_LIMIT}"
                ))
            }
        };
    }
    if let Some(by) = params.get("by") {
        query.by = match by.as_str() {
            "process" => By::Process,
            "cgroup" => By::Cgroup,
            "flow" => By::Flow,
            "remote" => By::Remote,
            _ => {
                return Err(format!(
                    "invalid by {by:?}: expected one of process, cgroup, flow, remote"
                ))
            }
        };
    }
    if let Some(window) = params.get("window") {
        query.window = match window.as_str() {
            "1s" => Duration::from_secs(1),
            "10s" => Duration::from_secs(10),
            "60s" | "1m" => Duration::from_secs(60),
            _ => {
                return Err(format!(
                    "invalid window {window:?}: expected one of 1s, 10s, 60s"
                ))
            }
        };
    }
    if let Some(sort) = params.get("sort") {
        query.sort = match sort.as_str() {
            "total" => Sort::Total,
            "tx" => Sort::Tx,
            "rx" => Sort::Rx,
            _ => {
                return Err(format!(
                    "invalid sort {sort:?}: expected one of total, tx, rx"
                ))
            }
        };
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(name: &str, value: &str) -> Result<TopQuery, String> {
        parse(&HashMap::from([(name.to_string(), value.to_string())]))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse(&HashMap::new()).unwrap(), TopQuery::default());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (name, value) in [
            ("limit", "0"),
            ("limit", "-1"),
            ("limit", "100000"),
            ("limit", "abc"),
            ("limit", ""),
            ("by", "foo"),
            ("window", "7m"),
            ("sort", "bar"),
        ] {
            let err = parse_one(name, value).unwrap_err();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn good_values() {
        let q = parse(&HashMap::from([
            ("limit".to_string(), "1000".to_string()),
            ("by".to_string(), "flow".to_string()),
            ("window".to_string(), "60s".to_string()),
            ("sort".to_string(), "rx".to_string()),
            ("unknown".to_string(), "ignored".to_string()),
        ]))
        .unwrap();
        assert_eq!(q.limit, 1000);
        assert_eq!(q.by, By::Flow);
        assert_eq!(q.window, Duration::from_secs(60));
        assert_eq!(q.sort, Sort::Rx);
    }
}
