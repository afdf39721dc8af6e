//! How figures are written in the tables and the progress lines.

use super::statistics::Spread;
use crate::bench::scenarios::Kind;

/// Three significant digits, without exponent for everyday magnitudes.
pub(super) fn fmt_sig(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

pub(super) fn fmt_spread(s: &Spread, decimals: usize) -> String {
    if s.n == 1 {
        return format!("{:.*}", decimals, s.median);
    }
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, s.median, decimals, s.min, decimals, s.max
    )
}

pub(super) fn fmt_spread_sig(s: Option<Spread>) -> String {
    match s {
        None => "-".to_string(),
        Some(s) if s.n == 1 => fmt_sig(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_sig(s.median),
            fmt_sig(s.min),
            fmt_sig(s.max)
        ),
    }
}

pub(super) fn fmt_ratio(s: Option<Spread>) -> String {
    s.map_or("-".to_string(), |s| fmt_spread(&s, 3))
}

/// A scenario's main rate in its natural unit.
pub(super) fn fmt_rate(kind: Kind, rate: f64) -> String {
    match kind {
        Kind::Tcp { .. } => format!("{:.2} Gbit/s", rate / 1e9),
        Kind::Udp64 => format!("{:.0} kdatagram/s", rate / 1e3),
        Kind::Churn => format!("{rate:.0} conn/s"),
        Kind::Flows { .. } => format!("{:.0} kdatagram/s", rate / 1e3),
    }
}
