//! Statistics over a group of values: the median and range, the median's 95% interval from
//! order statistics alone, and the verdict that interval gives against a target.

use serde::{Deserialize, Serialize};

/// Median and range of one figure over the runs of a group.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// A 95% confidence interval for the median of `values`, from their order statistics alone
/// (the sign test's interval): the k-th smallest and k-th largest, k the largest rank for which
/// fewer than k of n values fall below the true median with probability at most 2.5%. It
/// assumes only independent draws of one distribution, which suits rounds whose noise is
/// neither normal nor symmetric. `None` under 6 values, too few for any such interval.
pub fn median_interval(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // P(Binomial(n, 1/2) <= j), summed term by term. Each term is kept as a logarithm: 2^-n
    // itself is below the smallest f64 once n passes about a thousand, and a long paired run
    // has thousands of periods.
    let mut below = 0.0;
    let mut log_term = n as f64 * 0.5f64.ln();
    let mut k = 0;
    for j in 0..n {
        below += log_term.exp();
        if below > 0.025 {
            break;
        }
        k = j + 1;
        log_term += ((n - j) as f64 / (j + 1) as f64).ln();
    }
    (k >= 1).then(|| (v[k - 1], v[n - k]))
}

/// Whether shares (rounds or periods) put their median above the target, below it, or cannot tell: met
/// only when the whole 95% interval of the median is at or above the target.
pub fn verdict(shares: &[f64], target: f64, of: &str) -> String {
    let Some(s) = spread(shares.iter().copied()) else {
        return "no rounds".to_string();
    };
    let Some((low, high)) = median_interval(shares.iter().copied()) else {
        return format!(
            "median {:.2}, target {target:.2}: too few {of} ({}) to tell, 6 at least",
            s.median, s.n
        );
    };
    let outcome = if low >= target {
        "met"
    } else if high < target {
        "missed"
    } else {
        "not resolved: the interval holds the target"
    };
    format!(
        "median {:.2}, 95% interval {low:.2}-{high:.2} over {} {of}, target {target:.2}: {outcome}",
        s.median, s.n
    )
}

#[cfg(test)]
mod tests {
    use super::median_interval;

    #[test]
    fn the_median_interval_takes_the_ranks_the_binomial_allows() {
        let ranks = |n: usize| median_interval((1..=n).map(|i| i as f64));
        // Too few values for 95%: even min-max covers the median only 1 - 2/32 of the time.
        assert_eq!(ranks(5), None);
        assert_eq!(ranks(6), Some((1.0, 6.0)));
        // P(B(10, 1/2) <= 1) = 11/1024, P(<= 2) = 56/1024 > 2.5%.
        assert_eq!(ranks(10), Some((2.0, 9.0)));
        // P(B(26, 1/2) <= 7) = 1.4%, P(<= 8) = 3.8%.
        assert_eq!(ranks(26), Some((8.0, 19.0)));
    }

    #[test]
    fn the_median_interval_holds_for_thousands_of_values() {
        let ranks = |n: usize| median_interval((1..=n).map(|i| i as f64));
        // Ranks from exact binomial sums; 2^-n underflows an f64 past n = 1074.
        assert_eq!(ranks(345), Some((154.0, 192.0)));
        assert_eq!(ranks(1075), Some((505.0, 571.0)));
        assert_eq!(ranks(2614), Some((1257.0, 1358.0)));
    }

    #[test]
    fn the_median_interval_sorts_and_skips_what_is_not_a_number() {
        let values = [0.9, f64::NAN, 0.7, 1.1, 0.8, 1.0, 0.95];
        assert_eq!(median_interval(values), Some((0.7, 1.1)));
    }
}
