//! Bursts: an entity's (process, host, pair) connections or bytes per bin against its own
//! baseline over the window, median + k x MAD with every empty bin counted. Series are kept
//! sparse (only non-empty bins), so a long window of mostly idle entities stays small.

use std::collections::BTreeMap;

use super::stats::weighted_median;

/// Binning of the analysed window.
#[derive(Debug, Clone, Copy)]
pub struct Bins {
    pub start_us: i64,
    pub width_us: i64,
    pub count: usize,
}

impl Bins {
    /// Bins of `width_us` covering `start_us..=end_us`, aligned to whole multiples of the width
    /// since the epoch (minute bins start on the minute), so bursts read as clock times.
    pub fn new(start_us: i64, end_us: i64, width_us: i64) -> Self {
        let width_us = width_us.max(1);
        let start_us = start_us.div_euclid(width_us) * width_us;
        let span = (end_us - start_us).max(0);
        Bins {
            start_us,
            width_us,
            count: (span / width_us + 1) as usize,
        }
    }

    fn index(&self, t_us: i64) -> usize {
        (((t_us - self.start_us).max(0) / self.width_us) as usize).min(self.count - 1)
    }

    /// Start of bin `i`, microseconds since the epoch.
    pub fn start_of(&self, i: usize) -> i64 {
        self.start_us + i as i64 * self.width_us
    }
}

/// One entity's sparse series: bin index -> value.
#[derive(Debug, Default, Clone)]
pub struct Series {
    pub connections: BTreeMap<usize, f64>,
    pub bytes: BTreeMap<usize, f64>,
}

impl Series {
    /// Counts a connection in its start bin and spreads its bytes evenly over the bins its
    /// duration overlaps (so one long transfer does not look like a spike where it started).
    pub fn add(&mut self, bins: &Bins, start_us: i64, end_us: i64, bytes: Option<f64>) {
        *self.connections.entry(bins.index(start_us)).or_default() += 1.0;
        let Some(bytes) = bytes.filter(|b| *b > 0.0) else {
            return;
        };
        let end_us = end_us.max(start_us);
        let (first, last) = (bins.index(start_us), bins.index(end_us));
        if first == last || end_us == start_us {
            *self.bytes.entry(first).or_default() += bytes;
            return;
        }
        let duration = (end_us - start_us) as f64;
        for i in first..=last {
            let lo = bins.start_of(i).max(start_us);
            let hi = (bins.start_of(i) + bins.width_us).min(end_us);
            if hi > lo {
                *self.bytes.entry(i).or_default() += bytes * (hi - lo) as f64 / duration;
            }
        }
    }
}

/// A run of consecutive bins above the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub first_bin: usize,
    pub last_bin: usize,
    pub peak: f64,
    pub total: f64,
    pub baseline: f64,
    pub mad: f64,
    pub threshold: f64,
    pub factor: f64,
    pub mads_above: f64,
}

/// Bursts of one series over `n_bins` bins: bins above median + k x max(MAD, 1) and at least
/// `min_peak`, merged when consecutive.
pub fn find(values: &BTreeMap<usize, f64>, n_bins: usize, k: f64, min_peak: f64) -> Vec<Burst> {
    let zeros = n_bins.saturating_sub(values.len()) as u64;
    let mut pairs: Vec<(f64, u64)> = values.values().map(|v| (*v, 1)).collect();
    pairs.push((0.0, zeros));
    let Some(baseline) = weighted_median(&pairs) else {
        return Vec::new();
    };
    let mut deviations: Vec<(f64, u64)> = values.values().map(|v| ((v - baseline).abs(), 1)).collect();
    deviations.push((baseline, zeros));
    let mad = weighted_median(&deviations).unwrap_or(0.0).max(1.0);
    let threshold = baseline + k * mad;

    let mut bursts: Vec<Burst> = Vec::new();
    for (&bin, &value) in values {
        if value <= threshold || value < min_peak {
            continue;
        }
        match bursts.last_mut() {
            Some(b) if b.last_bin + 1 == bin => {
                b.last_bin = bin;
                b.peak = b.peak.max(value);
                b.total += value;
            }
            _ => bursts.push(Burst {
                first_bin: bin,
                last_bin: bin,
                peak: value,
                total: value,
                baseline,
                mad,
                threshold,
                factor: 0.0,
                mads_above: 0.0,
            }),
        }
    }
    for b in &mut bursts {
        b.factor = b.peak / baseline.max(1.0);
        b.mads_above = (b.peak - baseline) / mad;
    }
    bursts
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000_000;

    #[test]
    fn bins_cover_the_window() {
        let b = Bins::new(0, 10 * M, M);
        assert_eq!(b.count, 11);
        let aligned = Bins::new(M + 5, 3 * M, M);
        assert_eq!((aligned.start_us, aligned.count), (M, 3));
        assert_eq!(b.index(10 * M), 10);
        assert_eq!(b.index(-5), 0);
        assert_eq!(b.start_of(3), 3 * M);
    }

    #[test]
    fn bytes_spread_over_the_duration() {
        let bins = Bins::new(0, 10 * M, M);
        let mut s = Series::default();
        s.add(&bins, 0, 4 * M, Some(400.0));
        assert_eq!(s.connections.get(&0), Some(&1.0));
        assert_eq!(s.bytes.values().copied().collect::<Vec<_>>(), vec![100.0; 4]);
        s.add(&bins, M / 2, M / 2, Some(7.0));
        assert_eq!(s.bytes.get(&0), Some(&107.0));
        s.add(&bins, M, M, None);
        assert_eq!(s.connections.get(&1), Some(&1.0));
    }

    #[test]
    fn a_spike_over_a_steady_baseline_is_one_burst() {
        let mut v: BTreeMap<usize, f64> = (0..60).map(|i| (i, 3.0 + (i % 3) as f64)).collect();
        v.insert(30, 80.0);
        v.insert(31, 120.0);
        let found = find(&v, 60, 5.0, 10.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let b = &found[0];
        assert_eq!((b.first_bin, b.last_bin, b.peak, b.total), (30, 31, 120.0, 200.0));
        assert_eq!(b.baseline, 4.0);
        assert_eq!(b.threshold, 4.0 + 5.0 * 1.0);
        assert_eq!(b.factor, 30.0);
    }

    #[test]
    fn sparse_series_uses_empty_bins_in_the_baseline() {
        // active in 3 of 100 bins: median and MAD are 0, so only the minimum peak decides
        let v: BTreeMap<usize, f64> = [(5, 2.0), (50, 30.0), (90, 1.0)].into_iter().collect();
        let found = find(&v, 100, 5.0, 10.0);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].first_bin, found[0].baseline, found[0].mad), (50, 0.0, 1.0));
        assert!(find(&v, 100, 5.0, 31.0).is_empty());
    }

    #[test]
    fn steady_noise_has_no_burst() {
        let v: BTreeMap<usize, f64> = (0..120).map(|i| (i, 10.0 + ((i * 7) % 5) as f64)).collect();
        assert!(find(&v, 120, 5.0, 10.0).is_empty());
    }
}
