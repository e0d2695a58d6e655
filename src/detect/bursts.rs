//! Bursts: an entity's (process, host, pair) connections or bytes per bin against its own
//! baseline, median + k x max(scaled MAD, floor) with every empty bin counted. The MAD is scaled
//! by 1.4826 (a standard deviation for normal data), and the floor is in the metric's own unit
//! (connections or bytes per bin): a mostly idle entity has a median and MAD of 0, and without a
//! floor of its own size any 1 MB download would be a burst. When the window holds enough days,
//! each bin is judged against the same hour of day on the other days, so a working-hours peak
//! is not a burst every morning. A level the entity reaches again and again in separate episodes
//! (an hourly backup, a browser's busiest minutes) is its routine, not a burst: a burst must be
//! rare in its own series. Series are kept sparse (only non-empty bins), so a long window
//! of mostly idle entities stays small.

use std::collections::BTreeMap;

use super::stats::weighted_median;

/// Scales a MAD to a standard deviation for normally distributed data (1 / Φ⁻¹(3/4)).
pub const MAD_SCALE: f64 = 1.4826;

/// Days the window must span before bins are judged against their hour of day: with fewer, an
/// hour's baseline would rest on one or two values.
pub const MIN_DAYS_FOR_HOUR_OF_DAY: usize = 3;

/// Non-empty bins a mostly idle entity needs before its baseline is taken over its active bins
/// only (see [`find`]); with fewer, the whole window (mostly zeros) is the baseline.
pub const MIN_ACTIVE_BINS: usize = 10;

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

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

    /// The baseline each bin is judged against: the whole window, or when it spans at least
    /// [`MIN_DAYS_FOR_HOUR_OF_DAY`] days and the bins are at most an hour wide, the bins of the
    /// same UTC hour of day.
    pub fn profile(&self) -> Profile {
        let days = (self.count as i64 * self.width_us) / DAY_US;
        if days >= MIN_DAYS_FOR_HOUR_OF_DAY as i64 && self.width_us <= HOUR_US {
            let group: Vec<usize> = (0..self.count)
                .map(|i| (self.start_of(i).rem_euclid(DAY_US) / HOUR_US) as usize)
                .collect();
            let mut sizes = vec![0u64; 24];
            for &g in &group {
                sizes[g] += 1;
            }
            Profile { group, sizes }
        } else {
            Profile {
                group: vec![0; self.count],
                sizes: vec![self.count as u64],
            }
        }
    }
}

/// Which bins share a baseline: `group[bin]` indexes `sizes` (bins per group).
#[derive(Debug, Clone)]
pub struct Profile {
    pub group: Vec<usize>,
    pub sizes: Vec<u64>,
}

impl Profile {
    pub fn by_hour_of_day(&self) -> bool {
        self.sizes.len() == 24
    }
}

/// How a series is judged.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// k in median + k x max(scaled MAD, floor).
    pub k: f64,
    /// Least spread, in the metric's unit per bin.
    pub floor: f64,
    /// Least value of a burst bin, in the metric's unit.
    pub min_peak: f64,
    /// Other episodes reaching [`ROUTINE_SHARE`] of a burst's peak that make it routine (0: off).
    pub routine: usize,
}

/// Share of a burst's peak another episode must reach to count as the same level: within a
/// factor of two is "as much again".
pub const ROUTINE_SHARE: f64 = 0.5;

/// One entity's sparse series: bin index -> value.
#[derive(Debug, Default, Clone)]
pub struct Series {
    pub connections: BTreeMap<usize, f64>,
    pub bytes: BTreeMap<usize, f64>,
}

impl Series {
    /// Counts a connection in its start bin (unless `count_start` is false: when it opened is not
    /// known) and spreads its bytes evenly over the bins its duration overlaps (so one long
    /// transfer does not look like a spike where it started).
    pub fn add(&mut self, bins: &Bins, start_us: i64, end_us: i64, bytes: Option<f64>, count_start: bool) {
        if count_start {
            *self.connections.entry(bins.index(start_us)).or_default() += 1.0;
        }
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

/// Bursts of one series: bins above median + k x max(1.4826 x MAD, floor) of their group's
/// baseline and at least `min_peak`, merged when consecutive. The baseline counts the empty
/// bins, except for an entity idle in most of the group's bins but active in at least
/// [`MIN_ACTIVE_BINS`]: its median and MAD over all bins are 0, which makes every time it wakes
/// a burst (a resolver's hourly lookups, a browser's page loads), so it is judged against its
/// active bins, "how much it does when it does something".
pub fn find(values: &BTreeMap<usize, f64>, profile: &Profile, rule: &Rule) -> Vec<Burst> {
    let groups = profile.sizes.len();
    let mut members: Vec<Vec<f64>> = vec![Vec::new(); groups];
    for (&bin, &v) in values {
        if let Some(&g) = profile.group.get(bin) {
            members[g].push(v);
        }
    }
    // (baseline, spread, threshold) per group
    let limits: Vec<Option<(f64, f64, f64)>> = members
        .iter()
        .zip(&profile.sizes)
        .map(|(vals, &size)| {
            let idle = 2 * vals.len() < size as usize;
            let zeros = if idle && vals.len() >= MIN_ACTIVE_BINS {
                0
            } else {
                size.saturating_sub(vals.len() as u64)
            };
            let mut pairs: Vec<(f64, u64)> = vals.iter().map(|v| (*v, 1)).collect();
            pairs.push((0.0, zeros));
            let baseline = weighted_median(&pairs)?;
            let mut deviations: Vec<(f64, u64)> = vals.iter().map(|v| ((v - baseline).abs(), 1)).collect();
            deviations.push((baseline, zeros));
            let spread = (MAD_SCALE * weighted_median(&deviations).unwrap_or(0.0)).max(rule.floor);
            Some((baseline, spread, baseline + rule.k * spread))
        })
        .collect();

    let mut bursts: Vec<Burst> = Vec::new();
    for (&bin, &value) in values {
        let Some(Some((baseline, spread, threshold))) = profile.group.get(bin).map(|&g| limits[g]) else {
            continue;
        };
        if value <= threshold || value < rule.min_peak {
            continue;
        }
        match bursts.last_mut() {
            Some(b) if b.last_bin + 1 == bin => {
                b.last_bin = bin;
                if value > b.peak {
                    b.peak = value;
                    b.baseline = baseline;
                    b.mad = spread;
                    b.threshold = threshold;
                }
                b.total += value;
            }
            _ => bursts.push(Burst {
                first_bin: bin,
                last_bin: bin,
                peak: value,
                total: value,
                baseline,
                mad: spread,
                threshold,
                factor: 0.0,
                mads_above: 0.0,
            }),
        }
    }
    if rule.routine > 0 {
        bursts.retain(|b| other_episodes(values, b, ROUTINE_SHARE * b.peak, rule.routine) < rule.routine);
    }
    for b in &mut bursts {
        b.factor = b.peak / b.baseline.max(1.0);
        b.mads_above = (b.peak - b.baseline) / b.mad.max(f64::MIN_POSITIVE);
    }
    bursts
}

/// Separate episodes (runs of consecutive bins at or above `level`) outside `burst`'s bins,
/// counted up to `enough`. The MAD sees only the middle of a series, so a level reached in every
/// hour's backup minute sits above median + k x spread although it is the entity's routine; a
/// run that lasts is one episode, so a long transfer is not its own routine.
fn other_episodes(values: &BTreeMap<usize, f64>, burst: &Burst, level: f64, enough: usize) -> usize {
    let mut episodes = 0;
    let mut run: Option<(usize, usize)> = None;
    let own = |(first, last): (usize, usize)| first <= burst.last_bin && last >= burst.first_bin;
    for (&bin, _) in values.iter().filter(|(_, v)| **v >= level) {
        run = match run {
            Some((first, last)) if last + 1 == bin => Some((first, bin)),
            Some(done) => {
                episodes += usize::from(!own(done));
                if episodes >= enough {
                    return episodes;
                }
                Some((bin, bin))
            }
            None => Some((bin, bin)),
        };
    }
    episodes + run.map_or(0, |r| usize::from(!own(r)))
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
        s.add(&bins, 0, 4 * M, Some(400.0), true);
        assert_eq!(s.connections.get(&0), Some(&1.0));
        assert_eq!(s.bytes.values().copied().collect::<Vec<_>>(), vec![100.0; 4]);
        s.add(&bins, M / 2, M / 2, Some(7.0), true);
        assert_eq!(s.bytes.get(&0), Some(&107.0));
        s.add(&bins, M, M, None, true);
        assert_eq!(s.connections.get(&1), Some(&1.0));
        // Open before it was first seen: its bytes count, its start does not.
        s.add(&bins, 2 * M, 3 * M, Some(10.0), false);
        assert_eq!(s.connections.get(&2), None);
        assert_eq!(s.bytes.get(&2), Some(&110.0));
    }

    #[test]
    fn a_spike_over_a_steady_baseline_is_one_burst() {
        let mut v: BTreeMap<usize, f64> = (0..60).map(|i| (i, 3.0 + (i % 3) as f64)).collect();
        v.insert(30, 80.0);
        v.insert(31, 120.0);
        let found = find(&v, &whole(60), &rule(10.0));
        assert_eq!(found.len(), 1, "{found:?}");
        let b = &found[0];
        assert_eq!((b.first_bin, b.last_bin, b.peak, b.total), (30, 31, 120.0, 200.0));
        assert_eq!(b.baseline, 4.0);
        assert_eq!(b.threshold, 4.0 + 5.0 * MAD_SCALE);
        assert_eq!(b.factor, 30.0);
    }

    fn whole(n: usize) -> Profile {
        Profile {
            group: vec![0; n],
            sizes: vec![n as u64],
        }
    }

    fn rule(min_peak: f64) -> Rule {
        Rule {
            k: 5.0,
            floor: 1.0,
            min_peak,
            routine: 3,
        }
    }

    #[test]
    fn sparse_series_uses_empty_bins_in_the_baseline() {
        // active in 3 of 100 bins: median and MAD are 0, so the floor and the minimum peak decide
        let v: BTreeMap<usize, f64> = [(5, 2.0), (50, 30.0), (90, 1.0)].into_iter().collect();
        let found = find(&v, &whole(100), &rule(10.0));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].first_bin, found[0].baseline, found[0].mad), (50, 0.0, 1.0));
        assert!(find(&v, &whole(100), &rule(31.0)).is_empty());
    }

    /// Issue 21: one floor of 1 for counts and bytes alike made any 1 MB download of a mostly
    /// idle entity a burst (threshold 5 bytes); the bytes floor is in bytes.
    #[test]
    fn one_download_of_an_idle_entity_is_not_a_bytes_burst() {
        let v: BTreeMap<usize, f64> = [(100, 1_200_000.0), (700, 800_000.0)].into_iter().collect();
        let bytes = Rule {
            k: 5.0,
            floor: 1_000_000.0,
            min_peak: 1_000_000.0,
            routine: 3,
        };
        assert!(find(&v, &whole(1440), &bytes).is_empty());
        let big: BTreeMap<usize, f64> = [(100, 60_000_000.0)].into_iter().collect();
        assert_eq!(find(&big, &whole(1440), &bytes).len(), 1);
    }

    /// Issue 21 benchmark: a resolver asking 40 servers within a few minutes every hour was a
    /// connections burst 24 times a day against a baseline of 0.
    #[test]
    fn a_mostly_idle_entity_is_judged_against_its_active_bins() {
        let mut v: BTreeMap<usize, f64> = BTreeMap::new();
        for hour in 0..24 {
            for (j, n) in [10.0, 14.0, 12.0, 4.0].iter().enumerate() {
                v.insert(hour * 60 + 7 + j, *n);
            }
        }
        assert!(find(&v, &whole(1440), &rule(10.0)).is_empty());
        v.insert(700, 80.0);
        let found = find(&v, &whole(1440), &rule(10.0));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].first_bin, found[0].baseline), (700, 12.0));
        // a single burst of an otherwise silent entity still stands out against the zeros
        let once: BTreeMap<usize, f64> = [(300, 50.0)].into_iter().collect();
        assert_eq!(find(&once, &whole(1440), &rule(10.0)).len(), 1);
    }

    #[test]
    fn the_mad_is_scaled() {
        // values 10..=20 evenly: median 15, MAD 3 -> spread 4.4478; 35.0 is above 15 + 4 x 4.4478
        let mut v: BTreeMap<usize, f64> = (0..110).map(|i| (i, 10.0 + (i % 11) as f64)).collect();
        v.insert(110, 30.0);
        let r = Rule {
            k: 4.0,
            floor: 1.0,
            min_peak: 0.0,
            // values up to 20 recur every 11 bins: routine at half of 35, which is not the point here
            routine: 0,
        };
        assert!(
            find(&v, &whole(111), &r).is_empty(),
            "unscaled, 30 > 15 + 4 x 3 was a burst"
        );
        v.insert(110, 35.0);
        let found = find(&v, &whole(111), &r);
        assert_eq!(found.len(), 1);
        assert!((found[0].mad - 3.0 * MAD_SCALE).abs() < 1e-9);
    }

    #[test]
    fn busy_hours_are_judged_against_the_same_hour_on_other_days() {
        // a week of minute bins: 50 connections a minute from 09:00 to 10:00 every day, 2 otherwise
        let bins = Bins::new(0, 7 * 86_400 * 1_000_000 - 1, M);
        let profile = bins.profile();
        assert!(profile.by_hour_of_day());
        let v: BTreeMap<usize, f64> = (0..bins.count)
            .map(|i| {
                let hour = (i / 60) % 24;
                (
                    i,
                    if hour == 9 {
                        50.0 + (i % 3) as f64
                    } else {
                        2.0 + (i % 2) as f64
                    },
                )
            })
            .collect();
        // the recurrence rule would also call a daily peak routine: off, to see the profile alone
        let r = Rule {
            routine: 0,
            ..rule(10.0)
        };
        assert!(
            find(&v, &profile, &r).is_empty(),
            "the daily peak is usual for its hour"
        );
        assert!(
            !find(&v, &whole(bins.count), &r).is_empty(),
            "against the whole week it bursts"
        );
        assert!(
            find(&v, &whole(bins.count), &rule(10.0)).is_empty(),
            "seven days running: routine"
        );
        // a short window keeps one baseline
        assert!(!Bins::new(0, 86_400 * 1_000_000, M).profile().by_hour_of_day());
    }

    #[test]
    fn steady_noise_has_no_burst() {
        let v: BTreeMap<usize, f64> = (0..120).map(|i| (i, 10.0 + ((i * 7) % 5) as f64)).collect();
        assert!(find(&v, &whole(120), &rule(10.0)).is_empty());
    }

    /// A day of minute bins of the demo host's bytes: about 0.5 MB a minute of browsing by day,
    /// little at night, and the hourly backup's 6-8 MB minute.
    fn day_with_an_hourly_backup() -> BTreeMap<usize, f64> {
        let mut seed = 17u64;
        let mut v = BTreeMap::new();
        for i in 0..1440usize {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let day = (8 * 60..20 * 60).contains(&i);
            v.insert(i, if day { 150_000.0 + 900_000.0 * u } else { 20_000.0 * u });
        }
        for hour in 0..24 {
            *v.entry(hour * 60 + 31).or_default() += 6_000_000.0 + 100_000.0 * hour as f64;
        }
        v
    }

    fn bytes_rule(routine: usize) -> Rule {
        Rule {
            k: 5.0,
            floor: 1_000_000.0,
            min_peak: 1_000_000.0,
            routine,
        }
    }

    /// Issue 21: the demo day's ordinary bursts were its hourly backup minutes (6-8 MB against a
    /// median of 0.57 MB): above median + 5 x spread, since the MAD never sees the top 2 % of a
    /// series, yet the same every hour. Reached in 23 other episodes, that level is routine.
    #[test]
    fn an_hourly_job_is_routine_not_a_burst() {
        let v = day_with_an_hourly_backup();
        assert_eq!(find(&v, &whole(1440), &bytes_rule(0)).len(), 24, "without the rule");
        assert!(find(&v, &whole(1440), &bytes_rule(3)).is_empty());
    }

    /// The planted behaviours stay bursts beside the routine: a 5-minute backup burst of 120 MB
    /// a minute, and a 40-minute upload of 50 MB a minute (one long episode, not its own routine).
    #[test]
    fn rare_bursts_stand_out_beside_the_routine() {
        let mut v = day_with_an_hourly_backup();
        for i in 600..605 {
            v.insert(i, 120_000_000.0);
        }
        for i in 1200..1240 {
            v.insert(i, 50_000_000.0 + 1_000.0 * i as f64);
        }
        let found = find(&v, &whole(1440), &bytes_rule(3));
        let runs: Vec<(usize, usize)> = found.iter().map(|b| (b.first_bin, b.last_bin)).collect();
        assert_eq!(runs, vec![(600, 604), (1200, 1239)], "{found:?}");
        // three more uploads of that size: four alike are a routine
        for start in [100, 300, 900] {
            for i in start..start + 10 {
                v.insert(i, 50_000_000.0);
            }
        }
        let found = find(&v, &whole(1440), &bytes_rule(3));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].first_bin, 600);
    }
}
