//! A small parser for the OpenMetrics / Prometheus text exposition format, so
//! tests assert on samples and labels instead of grepping substrings.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// `# TYPE family type` lines.
    pub types: BTreeMap<String, String>,
    /// Whether the text ended with `# EOF` (required by OpenMetrics).
    pub eof: bool,
}

impl Exposition {
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut e = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let err = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
            if e.eof {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(err("text after # EOF"));
            }
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                let mut parts = rest.trim_start().splitn(3, ' ');
                match parts.next() {
                    Some("EOF") => e.eof = true,
                    Some("TYPE") => {
                        let fam = parts.next().ok_or_else(|| err("TYPE without a name"))?;
                        let ty = parts.next().ok_or_else(|| err("TYPE without a type"))?;
                        e.types.insert(fam.to_string(), ty.trim().to_string());
                    }
                    _ => {} // HELP, UNIT, comments
                }
                continue;
            }
            e.samples.push(parse_sample(line).map_err(|m| err(&m))?);
        }
        Ok(e)
    }

    /// Samples with this name (e.g. `trafficd_process_transmit_bytes_total`).
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Samples with this name whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .collect()
    }

    /// The value of the one sample with this name and these labels; `None`
    /// when there is none, panics when there are several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let f = self.find(name, labels);
        assert!(
            f.len() <= 1,
            "{} samples of {name} with labels {labels:?}: {f:#?}",
            f.len()
        );
        f.first().map(|s| s.value)
    }

    /// Whether a metric family is exposed: declared by `# TYPE`, or at least one
    /// sample named `family` or `family_<suffix>`.
    pub fn has_family(&self, family: &str) -> bool {
        self.types.contains_key(family)
            || self.samples.iter().any(|s| {
                s.name == family
                    || (s.name.starts_with(family) && s.name[family.len()..].starts_with('_'))
            })
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            // Skip separators.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || *c == ' ' {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?}: value not quoted"));
            }
            let val = label_value(&mut chars, &key)?;
            if labels.insert(key.trim().to_string(), val).is_some() {
                return Err(format!("label {key:?} twice"));
            }
        }
        let end = end.ok_or("labels not closed with }")?;
        rest = &r[end..];
    }
    // Value, optional timestamp, optional " # exemplar".
    let rest = rest.split(" # ").next().unwrap_or_default();
    let mut fields = rest.split_whitespace();
    let v = fields.next().ok_or("no value")?;
    let value = match v {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A label's value after its opening quote, escapes undone, up to the closing quote.
fn label_value(
    chars: &mut impl Iterator<Item = (usize, char)>,
    key: &str,
) -> Result<String, String> {
    let mut val = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => val.push('\n'),
                Some('\\') => val.push('\\'),
                Some('"') => val.push('"'),
                Some(o) => return Err(format!("label {key:?}: bad escape \\{o}")),
                None => return Err("unterminated label value".into()),
            },
            '"' => return Ok(val),
            c => val.push(c),
        }
    }
    Err(format!("label {key:?}: unterminated value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openmetrics() {
        let text = r#"# HELP trafficd_process_transmit_bytes Bytes sent.
# TYPE trafficd_process_transmit_bytes counter
# UNIT trafficd_process_transmit_bytes bytes
trafficd_process_transmit_bytes_total{comm="tg, \"x\"",pid="42"} 1048576
trafficd_process_transmit_bytes_total{comm="a\\b\nc",pid="7"} 1.5e3 1700000000.000 # {trace_id="x"} 1
# TYPE trafficd_build info
trafficd_build_info{version="0.1.0"} 1
up 1
# EOF
"#;
        let e = Exposition::parse(text).unwrap();
        assert!(e.eof);
        assert_eq!(e.types["trafficd_process_transmit_bytes"], "counter");
        assert_eq!(
            e.value("trafficd_process_transmit_bytes_total", &[("pid", "42")]),
            Some(1048576.0)
        );
        assert_eq!(
            e.find(
                "trafficd_process_transmit_bytes_total",
                &[("comm", "tg, \"x\"")]
            )
            .len(),
            1
        );
        assert_eq!(
            e.value(
                "trafficd_process_transmit_bytes_total",
                &[("comm", "a\\b\nc")]
            ),
            Some(1500.0)
        );
        assert_eq!(
            e.value("trafficd_build_info", &[("version", "0.1.0")]),
            Some(1.0)
        );
        assert_eq!(e.value("up", &[]), Some(1.0));
        assert!(e.has_family("trafficd_build"));
        assert!(!e.has_family("trafficd_bui"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Exposition::parse("x{a=\"1} 2\n").is_err());
        assert!(Exposition::parse("x{a=1} 2\n").is_err());
        assert!(Exposition::parse("x abc\n").is_err());
        assert!(Exposition::parse("# EOF\nx 1\n").is_err());
    }
}
