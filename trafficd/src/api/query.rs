//! The parameters of GET /top: parsed from the query's pairs by the server, written into
//! a query string by `trafficd top`. A parameter given twice is an error rather than one
//! of its values silently winning.

use std::str::FromStr;

use clap::ValueEnum;

use super::{choices::names, ApiError, By, Sort, Window};

pub const MAX_LIMIT: usize = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopQuery {
    pub limit: Limit,
    pub by: By,
    pub window: Window,
    pub sort: Sort,
}

/// Items in the answer, 1 to MAX_LIMIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(usize);

impl Limit {
    /// `n` when it is from 1 to MAX_LIMIT.
    pub fn new(n: usize) -> Option<Limit> {
        (1..=MAX_LIMIT).contains(&n).then_some(Limit(n))
    }

    pub fn get(self) -> usize {
        self.0
    }
}

impl FromStr for Limit {
    type Err = ApiError;

    fn from_str(value: &str) -> Result<Limit, ApiError> {
        value
            .parse()
            .ok()
            .and_then(Limit::new)
            .ok_or_else(|| ApiError::Limit {
                value: value.to_string(),
            })
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(10)
    }
}

/// The parameters /top reads; any other name is ignored.
const NAMES: [&str; 4] = ["limit", "by", "window", "sort"];

impl TopQuery {
    /// Parses the query's (name, value) pairs, percent-decoded, in the order given.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<TopQuery, ApiError> {
        let mut values: [Option<&str>; NAMES.len()] = [None; NAMES.len()];
        for (slot, name) in values.iter_mut().zip(NAMES) {
            let mut given = pairs.iter().filter(|(n, _)| n == name);
            *slot = given.next().map(|(_, v)| v.as_str());
            let count = 1 + given.count();
            if count > 1 {
                return Err(ApiError::Duplicate { name, count });
            }
        }
        let [limit, by, window, sort] = values;
        let mut query = TopQuery::default();
        if let Some(limit) = limit {
            query.limit = limit.parse()?;
        }
        if let Some(by) = by {
            query.by = choice("by", by)?;
        }
        if let Some(window) = window {
            query.window = choice("window", window)?;
        }
        if let Some(sort) = sort {
            query.sort = choice("sort", sort)?;
        }
        Ok(query)
    }

    /// The query string that asks for this (without the `?`).
    pub fn to_query_string(self) -> String {
        format!(
            "limit={}&by={}&window={}&sort={}",
            self.limit.get(),
            self.by,
            self.window,
            self.sort
        )
    }
}

fn choice<T: ValueEnum>(name: &'static str, value: &str) -> Result<T, ApiError> {
    T::from_str(value, false).map_err(|_| ApiError::Choice {
        name,
        value: value.to_string(),
        allowed: names::<T>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn parse_one(name: &str, value: &str) -> Result<TopQuery, ApiError> {
        TopQuery::from_pairs(&pairs(&[(name, value)]))
    }

    #[test]
    fn defaults() {
        let query = TopQuery::from_pairs(&[]).unwrap();
        assert_eq!(query, TopQuery::default());
        assert_eq!(
            query.to_query_string(),
            "limit=10&by=process&window=10s&sort=total"
        );
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
            ("by", "Process"),
            ("window", "7m"),
            ("sort", "bar"),
        ] {
            let err = parse_one(name, value).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("expected"), "{err}");
        }
        assert_eq!(
            parse_one("by", "foo").unwrap_err().to_string(),
            "invalid by \"foo\": expected one of process, cgroup, flow, remote, container, interface"
        );
        assert_eq!(
            parse_one("limit", "0").unwrap_err().to_string(),
            "invalid limit \"0\": expected a whole number from 1 to 1000"
        );
    }

    #[test]
    fn good_values() {
        let q = TopQuery::from_pairs(&pairs(&[
            ("limit", "1000"),
            ("by", "flow"),
            ("window", "60s"),
            ("sort", "rx"),
            ("unknown", "ignored"),
            ("unknown", "twice"),
        ]))
        .unwrap();
        assert_eq!(q.limit.get(), 1000);
        assert_eq!(q.by, By::Flow);
        assert_eq!(q.window, Window::W60s);
        assert_eq!(q.sort, Sort::Rx);
        assert_eq!(parse_one("window", "1m").unwrap().window, Window::W60s);
    }

    #[test]
    fn a_parameter_given_twice_is_refused_by_name() {
        let err =
            TopQuery::from_pairs(&pairs(&[("by", "flow"), ("limit", "5"), ("by", "process")]));
        assert_eq!(
            err,
            Err(ApiError::Duplicate {
                name: "by",
                count: 2
            })
        );
        // Even when the values agree: which one counts would still be a guess.
        let err = TopQuery::from_pairs(&pairs(&[("sort", "tx"), ("sort", "tx"), ("sort", "tx")]));
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("sort is given 3 times"));
    }

    #[test]
    fn a_query_string_reads_back_as_itself() {
        let query = TopQuery {
            limit: Limit::new(7).unwrap(),
            by: By::Remote,
            window: Window::W1s,
            sort: Sort::Tx,
        };
        let pairs: Vec<(String, String)> = query
            .to_query_string()
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(TopQuery::from_pairs(&pairs).unwrap(), query);
    }
}
