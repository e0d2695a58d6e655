//! Beacon scoring in the manner of RITA: a pair's connection start times and bytes sent become
//! four sub-scores in 0..1 (gap regularity, bytes regularity, the shape of the connections per
//! bin of the window, persistence over the window) and their weighted mean. The bins score is
//! RITA's histogram score, the better of evenness and a two-mode fit, so a beacon that sleeps in
//! some hours still scores as one; persistence counts only for a pair active in enough bins. The
//! score alone rewards any pair that is busy all day (bins and persistence are high for random
//! traffic too), so [`judge`] gates it as RITA's thresholds do: a beacon needs regular gaps, a
//! minimum active span, enough active bins and a period the time resolution can see; a pair with
//! regular gaps that fails another gate is a candidate, with the reason. Pure maths: the caller
//! passes the window and the time resolution, so results do not depend on when they are computed.

use super::stats::{bowley_skew, mad, median, quantile_sorted, sorted, symmetry_score};

/// Gap quartiles closer than this (or the time resolution, if coarser) count as equal in the
/// skew: RITA's timestamps are whole seconds.
pub const GAP_TOLERANCE_S: f64 = 1.0;

/// Gaps shorter than this are "zero gaps" and dropped before scoring, as RITA drops repeated
/// whole-second timestamps: two sessions opened together are one callback, not a 0 s period.
pub const ZERO_GAP_S: f64 = 1.0;

/// Non-zero gaps a pair needs to be scored (RITA: 3).
pub const MIN_GAPS: usize = 3;

/// Bytes quartiles closer than this count as equal in the size skew (RITA's floor of 10 on the
/// quartile spread): a few bytes of spread say nothing about the shape.
pub const BYTES_SPREAD_FLOOR: f64 = 10.0;

/// A confirmed beacon's period must be at least this many time resolutions. Random timing seen
/// by 30 s snapshots with a median gap of 60 s has gaps of 30, 60 and 90 s: symmetric quartiles
/// and a MAD of one resolution, as regular as a beacon (the demo's resolver, once the two-mode
/// fit lifted its histogram score). From three resolutions on, its quantised gaps are skewed and
/// spread beyond what [`QUANTISATION_SHARE`] forgives.
pub const MIN_PERIOD_RESOLUTIONS: f64 = 3.0;

/// Share of the time resolution by which the gaps' MAD is forgiven. Quantising both ends of a
/// gap errs by the difference of two offsets uniform over a resolution, whose median absolute
/// value is about 0.29 of it; half a resolution covers that, where a whole one forgave random
/// timing.
pub const QUANTISATION_SHARE: f64 = 0.5;

/// Share of the window's bins a pair must be active in before persistence counts, and before it
/// can be a beacon: RITA's 6 hours of its 24 hourly bins (`DurMinHours`). A pair seen in a couple
/// of bins at the window's two ends would otherwise get full coverage.
pub const MIN_ACTIVE_BIN_SHARE: f64 = 6.0 / 24.0;

/// Share of the window's bins a pair must be active in before its histogram is read as two
/// modes (RITA's `HistBimodalMinHours`, 11 of 24): with one or two bars, any histogram is
/// "two-mode".
pub const BIMODAL_MIN_BIN_SHARE: f64 = 11.0 / 24.0;

/// Bars whose heights differ by less than this share of the tallest bar are one mode (RITA's
/// `HistModeSensitivity`): a callback's hourly counts jitter by a connection or two.
pub const MODE_SENSITIVITY: f64 = 0.05;

/// Active bars the two-mode fit may leave out as outliers (RITA's `HistBimodalOutlierRemoval`):
/// the hour a callback starts or stops is partly filled.
pub const BIMODAL_OUTLIER_BARS: usize = 1;

/// Active bins needed out of `bins`, for a share of them (at least 1).
pub fn bins_needed(share: f64, bins: usize) -> usize {
    ((share * bins as f64).ceil() as usize).max(1)
}

/// Weights of the four sub-scores, in the order gaps, bytes, bins, persistence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights(pub [f64; 4]);

impl Default for Weights {
    /// RITA's defaults: every sub-score counts a quarter.
    fn default() -> Self {
        Weights([0.25; 4])
    }
}

/// How a pair is scored.
#[derive(Debug, Clone, Copy)]
pub struct BeaconParams {
    /// Analysed window, microseconds since the epoch.
    pub window_start_us: i64,
    pub window_end_us: i64,
    /// How precisely start times are known, seconds (deviations below it are not held against the gaps).
    pub resolution_s: f64,
    /// Bins the window is cut into.
    pub bins: usize,
    pub weights: Weights,
}

/// A pair's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct BeaconScore {
    pub median_interval_s: f64,
    pub jitter_s: f64,
    pub jitter_ratio: Option<f64>,
    pub gap_skew_score: f64,
    pub gap_mad_score: f64,
    pub gap_score: f64,
    pub bytes: Option<BytesScore>,
    /// RITA's histogram score: the better of `evenness` and `bimodal_fit`.
    pub bins_score: f64,
    /// 1 - coefficient of variation of connections per bin, clamped.
    pub evenness: f64,
    /// Share of active bins whose heights fall in the two commonest modes (0 below the
    /// [`BIMODAL_MIN_BIN_SHARE`] of active bins).
    pub bimodal_fit: f64,
    /// Non-empty bins of the window.
    pub active_bins: usize,
    /// Bins the window was cut into.
    pub bins: usize,
    pub persistence_score: f64,
    pub score: f64,
}

/// The bytes sub-scores, when every connection's bytes are known.
#[derive(Debug, Clone, PartialEq)]
pub struct BytesScore {
    pub skew_score: f64,
    pub mad_score: f64,
    pub small_score: f64,
    pub score: f64,
    pub median: f64,
}

/// Scores one pair. `starts_us` are its connection start times (any order); gaps under
/// [`ZERO_GAP_S`] are dropped and at least [`MIN_GAPS`] must remain (`None` otherwise);
/// `bytes_sent` are the known bytes sent per connection (at least 3), `None` when too few are known.
pub fn score(starts_us: &[i64], bytes_sent: Option<&[f64]>, p: &BeaconParams) -> Option<BeaconScore> {
    let mut starts = starts_us.to_vec();
    starts.sort_unstable();
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .filter(|g| *g >= ZERO_GAP_S)
        .collect();
    if gaps.len() < MIN_GAPS {
        return None;
    }
    let gaps_sorted = sorted(&gaps);
    let median_interval = quantile_sorted(&gaps_sorted, 0.5)?;
    let jitter = mad(&gaps)?;

    let gap_skew_score = symmetry_score(bowley_skew(&gaps_sorted, p.resolution_s.max(GAP_TOLERANCE_S)));
    let gap_mad_score = if median_interval > 0.0 {
        (1.0 - (jitter - QUANTISATION_SHARE * p.resolution_s).max(0.0) / median_interval).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let gap_score = (gap_skew_score + gap_mad_score) / 2.0;

    let bytes = bytes_sent.filter(|b| b.len() >= 3).and_then(bytes_score);
    let hist = histogram(&starts, p);
    let evenness = evenness(&hist);
    let bimodal_fit = bimodal_fit(&hist);
    let bins_score = evenness.max(bimodal_fit);
    let active_bins = hist.iter().filter(|&&c| c > 0).count();
    let window_s = (p.window_end_us - p.window_start_us) as f64 / 1e6;
    let span_s = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
    let coverage = if window_s > 0.0 {
        (span_s / window_s).min(1.0)
    } else {
        1.0
    };
    let consistency = (longest_run(&hist) as f64 / (hist.len() as f64 / 2.0)).min(1.0);
    let persistence_score = if active_bins >= bins_needed(MIN_ACTIVE_BIN_SHARE, hist.len()) {
        coverage.max(consistency).clamp(0.0, 1.0)
    } else {
        0.0
    };

    let [wg, wb, wn, wp] = p.weights.0;
    let mut parts = vec![(gap_score, wg), (bins_score, wn), (persistence_score, wp)];
    if let Some(b) = &bytes {
        parts.push((b.score, wb));
    }
    let weight: f64 = parts.iter().map(|(_, w)| w).sum();
    let score = if weight > 0.0 {
        parts.iter().map(|(s, w)| s * w).sum::<f64>() / weight
    } else {
        0.0
    };
    Some(BeaconScore {
        median_interval_s: median_interval,
        jitter_s: jitter,
        jitter_ratio: (median_interval > 0.0).then(|| jitter / median_interval),
        gap_skew_score,
        gap_mad_score,
        gap_score,
        bytes,
        bins_score,
        evenness,
        bimodal_fit,
        active_bins,
        bins: hist.len(),
        persistence_score,
        score: score.clamp(0.0, 1.0),
    })
}

/// The gates a scored pair must pass to be a beacon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gates {
    /// Score from which a pair can be a beacon.
    pub threshold: f64,
    /// Gap sub-score a beacon needs at least: random (Poisson) timing scores about 0.5, a
    /// period with 10 % jitter above 0.9.
    pub min_gap_score: f64,
    /// First to last connection, seconds, a beacon must span at least.
    pub min_span_s: f64,
    /// How precisely start times are known, seconds.
    pub resolution_s: f64,
}

/// What a scored pair is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Passes every gate.
    Beacon,
    /// Regular gaps, but another gate fails (too short, period under the resolution, score
    /// below the threshold): worth a look, not confirmed.
    Candidate,
    /// The gaps are not regular enough: busy, not periodic.
    Irregular,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Beacon => "beacon",
            Status::Candidate => "candidate",
            Status::Irregular => "irregular",
        }
    }

    /// Order of the result rows: beacons, then candidates, then the rest.
    pub fn rank(self) -> u8 {
        match self {
            Status::Beacon => 0,
            Status::Candidate => 1,
            Status::Irregular => 2,
        }
    }
}

/// A pair's status and, unless it is a beacon, every gate it failed (`; `-separated), with the
/// option that sets the gate. `span_s` is first to last connection start.
pub fn judge(s: &BeaconScore, span_s: f64, g: &Gates) -> (Status, Option<String>) {
    if s.gap_score < g.min_gap_score {
        return (
            Status::Irregular,
            Some(format!(
                "irregular gaps: gap score {:.2} below {} (--beacon-min-gap-score)",
                s.gap_score, g.min_gap_score
            )),
        );
    }
    let mut why = Vec::new();
    if span_s < g.min_span_s {
        why.push(format!(
            "too short: connections span {} of the {} a beacon needs (--beacon-min-span)",
            human_seconds(span_s),
            human_seconds(g.min_span_s)
        ));
    }
    let needed = bins_needed(MIN_ACTIVE_BIN_SHARE, s.bins);
    if s.active_bins < needed {
        why.push(format!(
            "active in {} of the window's {} bins, a beacon needs {needed} (a quarter of --beacon-bins)",
            s.active_bins, s.bins
        ));
    }
    if g.resolution_s >= 1.0 && s.median_interval_s < MIN_PERIOD_RESOLUTIONS * g.resolution_s {
        why.push(format!(
            "period {:.1} s under {MIN_PERIOD_RESOLUTIONS} x the {:.1} s time resolution: the gaps cannot be told from quantised random timing",
            s.median_interval_s, g.resolution_s
        ));
    }
    if s.score < g.threshold {
        why.push(format!(
            "score {:.2} below {} (--beacon-threshold)",
            s.score, g.threshold
        ));
    }
    if why.is_empty() {
        (Status::Beacon, None)
    } else {
        (Status::Candidate, Some(why.join("; ")))
    }
}

fn human_seconds(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// RITA's data size score: symmetric, tightly clustered and small payloads score high.
pub fn bytes_score(bytes: &[f64]) -> Option<BytesScore> {
    let s = sorted(bytes);
    let median_bytes = median(bytes)?;
    let skew_score = symmetry_score(bowley_skew(&s, BYTES_SPREAD_FLOOR));
    let mad_score = if median_bytes >= 1.0 {
        (1.0 - mad(bytes)? / median_bytes).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let small_score = (1.0 - mode(&s) / 65535.0).clamp(0.0, 1.0);
    Some(BytesScore {
        skew_score,
        mad_score,
        small_score,
        score: (skew_score + mad_score + small_score) / 3.0,
        median: median_bytes,
    })
}

/// Most frequent value of sorted values (the smallest of equally frequent ones).
fn mode(sorted: &[f64]) -> f64 {
    let (mut best, mut best_n) = (sorted.first().copied().unwrap_or(0.0), 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        if j - i > best_n {
            best = sorted[i];
            best_n = j - i;
        }
        i = j;
    }
    best
}

/// Connections per bin of the window.
fn histogram(starts: &[i64], p: &BeaconParams) -> Vec<u64> {
    let n_bins = p.bins.max(1);
    let width = (p.window_end_us - p.window_start_us).max(0) as f64 / n_bins as f64;
    let mut counts = vec![0u64; n_bins];
    for &t in starts {
        let i = if width > 0.0 {
            (((t - p.window_start_us) as f64 / width).floor().max(0.0) as usize).min(n_bins - 1)
        } else {
            0
        };
        counts[i] += 1;
    }
    counts
}

/// Evenness over the window's bins: 1 - coefficient of variation of connections per bin, clamped.
fn evenness(counts: &[u64]) -> f64 {
    let n = counts.len().max(1) as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let variance = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n;
    let cv = if mean > 0.0 { variance.sqrt() / mean } else { 1.0 };
    (1.0 - cv).clamp(0.0, 1.0)
}

/// RITA's two-mode fit: the active bars' heights are grouped in steps of [`MODE_SENSITIVITY`] of
/// the tallest bar, and the score is the share of active bars in the two largest groups, after
/// leaving out [`BIMODAL_OUTLIER_BARS`]. A callback that sleeps in some hours (every other hour,
/// nights) has bars of one or two heights: evenness is low, the fit high. 0 when fewer than
/// [`BIMODAL_MIN_BIN_SHARE`] of the bins are active.
fn bimodal_fit(counts: &[u64]) -> f64 {
    let active: Vec<u64> = counts.iter().copied().filter(|&c| c > 0).collect();
    if active.len() < bins_needed(BIMODAL_MIN_BIN_SHARE, counts.len()) {
        return 0.0;
    }
    let tallest = active.iter().copied().max().unwrap_or(1);
    let step = ((tallest as f64 * MODE_SENSITIVITY).ceil() as u64).max(1);
    let mut groups: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for c in &active {
        *groups.entry(c / step).or_default() += 1;
    }
    let mut sizes: Vec<usize> = groups.into_values().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let top_two: usize = sizes.iter().take(2).sum();
    let bars = active.len().saturating_sub(BIMODAL_OUTLIER_BARS).max(1);
    (top_two as f64 / bars as f64).min(1.0)
}

/// Longest run of non-empty bins, wrapping around the window's end as RITA does.
fn longest_run(counts: &[u64]) -> usize {
    let n = counts.len();
    let (mut longest, mut run) = (0, 0);
    for i in 0..2 * n {
        if counts[i % n] > 0 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest.min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn params(start: i64, end: i64) -> BeaconParams {
        BeaconParams {
            window_start_us: start,
            window_end_us: end,
            resolution_s: 1e-6,
            bins: 24,
            weights: Weights::default(),
        }
    }

    /// Deterministic jitter in -1..1 (a fixed LCG, so the test never flakes).
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// A day of random (Poisson) connection starts, `mean_gap_s` apart on average, those `keep`
    /// accepts, with DNS-sized payloads (45 +- 10 bytes); the same `seed` always gives the same day.
    fn random_day(seed: u64, mean_gap_s: f64, keep: impl Fn(i64) -> bool) -> (Vec<i64>, Vec<f64>) {
        let mut seed = seed;
        let mut t = 0i64;
        let mut starts = Vec::new();
        while t < 86_400 * S {
            let u = (noise(&mut seed) + 1.0) / 2.0;
            t += (-(1.0 - u * 0.999_999).ln() * mean_gap_s * 1e6) as i64;
            if keep(t) {
                starts.push(t);
            }
        }
        let bytes = starts
            .iter()
            .map(|_| 45.0 + (10.0 * noise(&mut seed)).round())
            .collect();
        (starts, bytes)
    }

    #[test]
    fn perfectly_regular_gaps_score_exactly_one() {
        let starts: Vec<i64> = (0..120).map(|i| i * 60 * S).collect();
        let bytes = vec![512.0; 120];
        let s = score(&starts, Some(&bytes), &params(0, 119 * 60 * S)).unwrap();
        assert_eq!(s.gap_skew_score, 1.0);
        assert_eq!(s.gap_mad_score, 1.0);
        assert_eq!(s.gap_score, 1.0);
        assert_eq!(s.median_interval_s, 60.0);
        assert_eq!(s.jitter_s, 0.0);
        assert_eq!(s.persistence_score, 1.0);
        assert!(s.bins_score > 0.9, "{}", s.bins_score);
        assert!(s.score > 0.95, "{}", s.score);
    }

    #[test]
    fn ten_percent_jitter_still_scores_as_a_beacon() {
        let mut seed = 7;
        let mut t = 0i64;
        let starts: Vec<i64> = (0..120)
            .map(|_| {
                t += ((60.0 + 6.0 * noise(&mut seed)) * 1e6) as i64;
                t
            })
            .collect();
        let bytes: Vec<f64> = (0..120).map(|_| 300.0 + 10.0 * noise(&mut seed).round()).collect();
        let s = score(&starts, Some(&bytes), &params(starts[0], starts[119])).unwrap();
        assert!((s.median_interval_s - 60.0).abs() < 2.0, "{}", s.median_interval_s);
        assert!(s.jitter_s > 1.0 && s.jitter_s < 6.0, "{}", s.jitter_s);
        assert!(s.gap_score > 0.8, "{s:?}");
        assert!(s.score > 0.85, "{s:?}");
    }

    #[test]
    fn random_gaps_score_low() {
        let mut seed = 99;
        let mut t = 0i64;
        let starts: Vec<i64> = (0..60)
            .map(|_| {
                // exponential gaps, mean 60 s: a Poisson process, the opposite of a beacon
                let u = (noise(&mut seed) + 1.0) / 2.0;
                t += (-(1.0 - u * 0.999).ln() * 60.0 * 1e6) as i64;
                t
            })
            .collect();
        let bytes: Vec<f64> = (0..60).map(|_| 2000.0 + 1500.0 * noise(&mut seed)).collect();
        let s = score(&starts, Some(&bytes), &params(starts[0], starts[59])).unwrap();
        assert!(s.gap_mad_score < 0.6, "{s:?}");
        assert!(s.score < 0.8, "{s:?}");
    }

    #[test]
    fn unknown_bytes_are_left_out_and_weights_renormalised() {
        let starts: Vec<i64> = (0..10).map(|i| i * 10 * S).collect();
        let s = score(&starts, None, &params(0, 90 * S)).unwrap();
        assert!(s.bytes.is_none());
        let expected = (s.gap_score + s.bins_score + s.persistence_score) / 3.0;
        assert!((s.score - expected).abs() < 1e-12);
        let mut p = params(0, 90 * S);
        p.weights = Weights([1.0, 0.0, 0.0, 0.0]);
        assert_eq!(score(&starts, None, &p).unwrap().score, 1.0);
    }

    #[test]
    fn coarse_resolution_forgives_quantised_gaps() {
        // 10 s beacon seen by 5 s snapshots: gaps of 5, 10 and 15 s
        let starts: Vec<i64> = [0, 5, 20, 25, 40, 50, 55, 70, 75, 90].iter().map(|s| s * S).collect();
        let mut p = params(0, 90 * S);
        let exact = score(&starts, None, &p).unwrap();
        p.resolution_s = 5.0;
        let coarse = score(&starts, None, &p).unwrap();
        assert!((exact.gap_mad_score - 0.5).abs() < 1e-6, "{}", exact.gap_mad_score);
        // half a resolution of the 5 s MAD is forgiven
        assert!((coarse.gap_mad_score - 0.75).abs() < 1e-6, "{}", coarse.gap_mad_score);
    }

    #[test]
    fn millisecond_jitter_does_not_skew_the_gaps() {
        // the shared RAT capture's callbacks: two sessions at once, a pause, then every ~10 s
        let starts: Vec<i64> = [0.0, 0.012, 74.205, 84.21, 94.225, 104.238, 114.239, 118.446]
            .iter()
            .map(|s| (s * 1e6) as i64)
            .collect();
        let s = score(&starts, None, &params(0, 132 * S)).unwrap();
        assert_eq!(s.gap_skew_score, 1.0);
        assert!(s.gap_mad_score > 0.99, "{s:?}");
        assert!((s.median_interval_s - 10.0).abs() < 0.1);
    }

    #[test]
    fn too_few_connections_are_not_scored() {
        assert!(score(&[0, 60 * S], None, &params(0, 60 * S)).is_none());
    }

    #[test]
    fn bytes_subscores() {
        let b = bytes_score(&[100.0; 8]).unwrap();
        assert_eq!((b.skew_score, b.mad_score), (1.0, 1.0));
        assert!((b.small_score - (1.0 - 100.0 / 65535.0)).abs() < 1e-12);
        let big = bytes_score(&[70_000.0; 8]).unwrap();
        assert_eq!(big.small_score, 0.0);
        assert_eq!(bytes_score(&[0.0; 4]).unwrap().mad_score, 0.0);
        assert_eq!(mode(&[1.0, 2.0, 2.0, 3.0, 3.0]), 2.0);
    }

    fn gates() -> Gates {
        Gates {
            threshold: 0.8,
            min_gap_score: 0.8,
            min_span_s: 3600.0,
            resolution_s: 1e-6,
        }
    }

    fn day_params() -> BeaconParams {
        params(0, 86_400 * S)
    }

    /// Issue 21: a busy pair with random (Poisson) timing, 1 000 connections a day and
    /// DNS-sized payloads scored at or above 0.8 and was flagged; it must not be a beacon.
    #[test]
    fn busy_random_pair_is_not_a_beacon() {
        for seed0 in [1u64, 2, 3, 4, 5] {
            let (starts, bytes) = random_day(seed0, 86.4, |_| true);
            let s = score(&starts, Some(&bytes), &day_params()).unwrap();
            let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
            let (status, reason) = judge(&s, span, &gates());
            assert_eq!(status, Status::Irregular, "seed {seed0}: {s:?}");
            assert!(reason.unwrap().contains("irregular gaps"));
            assert!(s.gap_score < 0.65, "{s:?}");
        }
    }

    #[test]
    fn sixty_second_callback_with_ten_percent_jitter_over_a_day_is_a_beacon() {
        let mut seed = 11;
        let mut t = 0i64;
        let mut starts = Vec::new();
        while t < 86_400 * S {
            starts.push(t);
            t += ((60.0 + 6.0 * noise(&mut seed)) * 1e6) as i64;
        }
        let bytes: Vec<f64> = starts
            .iter()
            .map(|_| 310.0 + (10.0 * noise(&mut seed)).round())
            .collect();
        let s = score(&starts, Some(&bytes), &day_params()).unwrap();
        let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
        assert_eq!(judge(&s, span, &gates()), (Status::Beacon, None), "{s:?}");
    }

    #[test]
    fn short_regular_callbacks_are_a_candidate_with_the_reason() {
        // the shared RAT capture: 10 s callbacks over about two minutes
        let starts: Vec<i64> = [0.0, 0.012, 74.205, 84.21, 94.225, 104.238, 114.239, 118.446]
            .iter()
            .map(|s| (s * 1e6) as i64)
            .collect();
        let s = score(&starts, None, &params(0, 132 * S)).unwrap();
        let (status, reason) = judge(&s, 118.446, &gates());
        assert_eq!(status, Status::Candidate);
        let reason = reason.unwrap();
        assert!(
            reason.starts_with("too short: connections span 2.0 min of the 1.0 h"),
            "{reason}"
        );
    }

    #[test]
    fn a_period_under_three_resolutions_is_not_confirmed() {
        let starts: Vec<i64> = (0..200).map(|i| i * 30 * S).collect();
        let s = score(&starts, None, &params(0, 199 * 30 * S)).unwrap();
        let g = Gates {
            resolution_s: 30.0,
            ..gates()
        };
        let (status, reason) = judge(&s, 199.0 * 30.0, &g);
        assert_eq!(status, Status::Candidate);
        assert!(reason.unwrap().contains("time resolution"));
        let (ok, _) = judge(
            &s,
            199.0 * 30.0,
            &Gates {
                resolution_s: 10.0,
                ..g
            },
        );
        assert_eq!(ok, Status::Beacon);
    }

    #[test]
    fn zero_gaps_are_dropped() {
        // every callback opens two sessions at once: 0 s gaps must not halve the period
        let starts: Vec<i64> = (0..40).map(|i| (i / 2) * 60 * S + (i % 2) * 5_000).collect();
        let s = score(&starts, None, &params(0, 19 * 60 * S)).unwrap();
        assert_eq!(s.median_interval_s, 60.0 - 0.005);
        assert!(s.gap_score > 0.99, "{s:?}");
        // three connections at once and one more leave a single gap: not scored
        assert!(score(&[0, 1, 2, 60 * S], None, &params(0, 60 * S)).is_none());
    }

    #[test]
    fn size_skew_needs_a_spread_of_ten_bytes() {
        // quartiles 300, 301, 304: a 4-byte spread is noise, not a skew
        let b = bytes_score(&[300.0, 300.0, 301.0, 301.0, 304.0, 304.0, 304.0]).unwrap();
        assert_eq!(b.skew_score, 1.0);
    }

    /// 60 s callbacks with 10 % jitter, in the hours `active` says, over a day; bytes ~310.
    fn day_of_callbacks(seed0: u64, active: impl Fn(i64) -> bool) -> (Vec<i64>, Vec<f64>) {
        let mut seed = seed0;
        let mut t = 0i64;
        let mut starts = Vec::new();
        while t < 86_400 * S {
            if active(t / (3600 * S)) {
                starts.push(t);
            }
            t += ((60.0 + 6.0 * noise(&mut seed)) * 1e6) as i64;
        }
        let bytes = starts
            .iter()
            .map(|_| 310.0 + (10.0 * noise(&mut seed)).round())
            .collect();
        (starts, bytes)
    }

    /// Issue 21 (RITA's two-mode histogram fit): a callback that sleeps every other hour has
    /// bars of two heights (about 60 and 0), so its evenness is 0 and it scored about 0.72, a
    /// candidate; RITA's bimodal fit sees one mode among the active bars, and it is a beacon.
    #[test]
    fn a_callback_that_sleeps_every_other_hour_is_still_a_beacon() {
        let (starts, bytes) = day_of_callbacks(5, |h| h % 2 == 0);
        let s = score(&starts, Some(&bytes), &day_params()).unwrap();
        assert_eq!(s.active_bins, 12, "{s:?}");
        assert_eq!(s.evenness, 0.0, "{s:?}");
        assert_eq!(s.bimodal_fit, 1.0, "{s:?}");
        assert_eq!(s.bins_score, 1.0);
        let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
        assert_eq!(judge(&s, span, &gates()), (Status::Beacon, None), "{s:?}");
    }

    /// Working hours only (09-17 and a lunch break at 12): too few active bars for a two-mode
    /// reading, but still active in enough bins for persistence.
    #[test]
    fn the_two_mode_fit_needs_eleven_of_twenty_four_active_bins() {
        let (starts, bytes) = day_of_callbacks(6, |h| (9..17).contains(&h) && h != 12);
        let s = score(&starts, Some(&bytes), &day_params()).unwrap();
        assert_eq!(s.active_bins, 7);
        assert_eq!(s.bimodal_fit, 0.0);
        assert!(s.persistence_score > 0.0, "{s:?}");
        // two more hours of callbacks at another rate: bars of two heights, read as two modes
        let mut seed = 3;
        let (mut starts, mut bytes) = day_of_callbacks(6, |h| (9..20).contains(&h));
        for h in 20..22 {
            for k in 0..30 {
                starts.push((h * 3600 + k * 120) * S + (noise(&mut seed) * 1e6) as i64);
                bytes.push(310.0);
            }
        }
        let s = score(&starts, Some(&bytes), &day_params()).unwrap();
        assert_eq!(s.active_bins, 13);
        assert_eq!(s.bimodal_fit, 1.0, "{s:?}");
    }

    /// Issue 21 (RITA's minimum active hours): callbacks in the window's first and last two
    /// hours span the whole window, so coverage gave them full persistence; active in 4 of 24
    /// bins, they get none, and the reason says so.
    #[test]
    fn a_pair_active_in_few_bins_gets_no_persistence_and_the_reason() {
        let (starts, bytes) = day_of_callbacks(8, |h| !(2..22).contains(&h));
        let s = score(&starts, Some(&bytes), &day_params()).unwrap();
        assert_eq!(s.active_bins, 4);
        assert_eq!(s.persistence_score, 0.0, "{s:?}");
        let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
        let (status, reason) = judge(&s, span, &gates());
        assert_eq!(status, Status::Candidate);
        assert!(
            reason
                .unwrap()
                .starts_with("active in 4 of the window's 24 bins, a beacon needs 6"),
            "{s:?}"
        );
    }

    /// Random (Poisson) timing in every other hour: the two-mode fit is high, as for the
    /// sleeping callback above, but the gaps are irregular, so it is never a beacon.
    #[test]
    fn random_traffic_in_every_other_hour_is_not_a_beacon() {
        for seed0 in [21u64, 22, 23] {
            let (starts, bytes) = random_day(seed0, 43.2, |t| (t / (3600 * S)) % 2 == 0 && t < 86_400 * S);
            let s = score(&starts, Some(&bytes), &day_params()).unwrap();
            let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
            assert_eq!(judge(&s, span, &gates()).0, Status::Irregular, "seed {seed0}: {s:?}");
        }
    }

    /// Issue 21, found by the false-alarm benchmark: a resolver's lookups (random timing, busy
    /// by day, quiet at night) seen by 30 s snapshots. With a median gap of 60 s its gaps were
    /// 30, 60 and 90 s, the MAD of one resolution forgiven in full: gap score 1, and the two-mode
    /// fit made it a beacon. It must never be one.
    #[test]
    fn quantised_random_timing_is_not_a_beacon() {
        for (seed0, day_rate) in [(31u64, 0.45), (32, 0.3), (33, 0.2), (34, 0.45)] {
            let mut seed = seed0;
            let mut starts = Vec::new();
            for tick in 0..2880i64 {
                let hour = tick / 120;
                let rate = if (8..20).contains(&hour) { day_rate } else { 0.03 };
                if (noise(&mut seed) + 1.0) / 2.0 < rate {
                    starts.push(tick * 30 * S);
                }
            }
            let mut p = day_params();
            p.resolution_s = 30.0;
            let s = score(&starts, None, &p).unwrap();
            let span = (starts[starts.len() - 1] - starts[0]) as f64 / 1e6;
            let g = Gates {
                resolution_s: 30.0,
                ..gates()
            };
            let (status, reason) = judge(&s, span, &g);
            assert_ne!(status, Status::Beacon, "rate {day_rate}: {s:?}");
            if s.median_interval_s <= 60.0 {
                assert!(s.gap_mad_score < 1.0, "{s:?}");
                assert!(reason.unwrap().contains("time resolution"), "{s:?}");
            }
        }
    }
}
