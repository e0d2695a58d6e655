//! Robust statistics the detectors share: quantiles, median, median absolute deviation and
//! Bowley's quartile skew. Pure functions over slices, so the scoring maths is tested directly.

/// Quantile `p` (0..1) of sorted values by linear interpolation between closest ranks (R type 7,
/// as numpy and DuckDB's quantile_cont). `None` for an empty slice.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = pos.floor() as usize;
    let upper = pos.ceil() as usize;
    let frac = pos - lower as f64;
    Some(sorted[lower] + (sorted[upper] - sorted[lower]) * frac)
}

/// Sorted copy (NaN-free input assumed; NaNs sort last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> Option<f64> {
    quantile_sorted(&sorted(values), 0.5)
}

/// Median absolute deviation from the median (unscaled).
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    median(&deviations)
}

/// Median of a multiset given as (value, how many times) pairs; lets a long series that is
/// mostly zeros be summarised without materialising the zeros.
pub fn weighted_median(pairs: &[(f64, u64)]) -> Option<f64> {
    let mut items: Vec<(f64, u64)> = pairs.iter().copied().filter(|(_, n)| *n > 0).collect();
    let total: u64 = items.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The value at 0-based rank k.
    let at = |k: u64| -> f64 {
        let mut seen = 0;
        for (v, n) in &items {
            seen += n;
            if k < seen {
                return *v;
            }
        }
        items[items.len() - 1].0
    };
    if total % 2 == 1 {
        Some(at(total / 2))
    } else {
        Some((at(total / 2 - 1) + at(total / 2)) / 2.0)
    }
}

/// Bowley's quartile skew (Q1 + Q3 - 2 Q2) / (Q3 - Q1) of sorted values, taken as 0 where it is
/// unreliable: fewer than 3 values, Q3 = Q1, or the median on a quartile (RITA's rule).
/// Quartiles closer than `tolerance` count as equal: RITA works on whole seconds and bytes, so
/// a millisecond of jitter on a 10 s beacon must not swing the skew from 0 to -1.
pub fn bowley_skew(sorted: &[f64], tolerance: f64) -> f64 {
    if sorted.len() < 3 {
        return 0.0;
    }
    let (Some(q1), Some(q2), Some(q3)) = (
        quantile_sorted(sorted, 0.25),
        quantile_sorted(sorted, 0.5),
        quantile_sorted(sorted, 0.75),
    ) else {
        return 0.0;
    };
    let spread = q3 - q1;
    let tiny = tolerance.max(1e-12 * q3.abs().max(1.0));
    if spread <= tiny || (q2 - q1).abs() <= tiny || (q3 - q2).abs() <= tiny {
        return 0.0;
    }
    ((q1 + q3 - 2.0 * q2) / spread).clamp(-1.0, 1.0)
}

/// `1 - |x|` clamped to 0..1: how a symmetric (x = 0) distribution scores 1.
pub fn symmetry_score(skew: f64) -> f64 {
    (1.0 - skew.abs()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), Some(2.5));
        assert_eq!(quantile_sorted(&v, 0.25), Some(1.75));
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn mad_of_known_series() {
        // median 3, deviations 2 1 0 1 6 -> median 1
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 9.0]), Some(1.0));
        assert_eq!(mad(&[60.0; 5]), Some(0.0));
    }

    #[test]
    fn weighted_median_matches_expanded() {
        assert_eq!(weighted_median(&[(0.0, 7), (5.0, 2), (9.0, 1)]), Some(0.0));
        assert_eq!(weighted_median(&[(0.0, 2), (5.0, 2)]), Some(2.5));
        assert_eq!(weighted_median(&[(3.0, 0)]), None);
        let expanded = [0.0, 0.0, 0.0, 4.0, 4.0, 8.0];
        assert_eq!(weighted_median(&[(4.0, 2), (0.0, 3), (8.0, 1)]), median(&expanded));
    }

    #[test]
    fn bowley_sign_and_guards() {
        assert_eq!(bowley_skew(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.0), 0.0);
        assert!(bowley_skew(&[1.0, 1.5, 2.0, 10.0, 20.0], 0.0) > 0.0, "right tail");
        assert!(bowley_skew(&[1.0, 10.0, 18.0, 19.0, 20.0], 0.0) < 0.0, "left tail");
        assert_eq!(bowley_skew(&[60.0; 10], 0.0), 0.0, "Q1 = Q3");
        assert_eq!(
            bowley_skew(&[1.0, 5.0, 5.0, 5.0, 9.0], 0.0),
            0.0,
            "median on a quartile"
        );
        let jittered = [0.01, 4.2, 10.0, 10.002, 10.009, 10.01, 74.2];
        assert!(bowley_skew(&jittered, 0.0) < -0.9, "Q2 and Q3 a few ms apart");
        assert_eq!(bowley_skew(&jittered, 1.0), 0.0, "equal within a second");
        assert_eq!(symmetry_score(-0.25), 0.75);
    }
}
