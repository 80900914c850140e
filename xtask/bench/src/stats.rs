//! Latency summaries: nearest-rank percentiles over a set of samples.

use serde::Serialize;

/// p50/p90/p99/max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of `sorted`, which must be in
/// ascending order: the smallest sample with at least p% of the samples at or
/// below it. `None` for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// Summarises `samples_ms` (any order; NaN samples are dropped).
pub fn summarize(samples_ms: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = samples_ms.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        count: sorted.len(),
        p50_ms: round3(percentile(&sorted, 50.0)?),
        p90_ms: round3(percentile(&sorted, 90.0)?),
        p99_ms: round3(percentile(&sorted, 99.0)?),
        max_ms: round3(*sorted.last()?),
    })
}

/// Rounds to three decimals, so the JSON stays readable.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.001), Some(1.0));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        // Ten samples: p90 is the 9th, p99 the 10th.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn summary_sorts_its_input_and_drops_nan() {
        let s = summarize(&[30.0, f64::NAN, 10.0, 20.0, 40.0]).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p90_ms, 40.0);
        assert_eq!(s.max_ms, 40.0);
    }
}
