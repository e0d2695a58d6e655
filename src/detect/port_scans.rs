//! Port and address scans as Zeek's scan policy counts them: within a sliding window (5 minutes),
//! one source failing to reach at least N distinct ports of one host (port scan) or one port on
//! at least M distinct hosts (address scan). Only failed or unanswered attempts count: a browser
//! reaching 30 CDN hosts on 443 or a resolver asking 40 servers on udp/53 succeeds, and is not a
//! scan. Successful attempts in the window are kept as context (attempts). SQL groups the
//! attempts per scanner and target; this module finds each group's densest window and scores it.

use std::collections::HashMap;

/// One connection attempt of a group: when, what it touched (a port or a host), and whether it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub ts_us: i64,
    pub touched: String,
    pub failed: bool,
}

/// The densest window of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanWindow {
    pub start_us: i64,
    pub end_us: i64,
    pub distinct: usize,
    pub attempts: usize,
    pub failed: usize,
    /// The first touched values in the window, in order of first touch.
    pub first_touched: Vec<String>,
}

impl ScanWindow {
    pub fn failed_share(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.failed as f64 / self.attempts as f64
        }
    }
}

/// The window of at most `window_us` with the most distinct values touched by failed attempts
/// (the earliest of equal ones), when it reaches `threshold`. `attempts` must be sorted by time.
pub fn densest_window(attempts: &[Attempt], window_us: i64, threshold: usize) -> Option<ScanWindow> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut best: Option<(usize, usize, usize)> = None; // (distinct, lo, hi inclusive)
    let mut lo = 0;
    for hi in 0..attempts.len() {
        if attempts[hi].failed {
            *counts.entry(attempts[hi].touched.as_str()).or_default() += 1;
        }
        while attempts[hi].ts_us - attempts[lo].ts_us > window_us {
            let key = attempts[lo].touched.as_str();
            if attempts[lo].failed {
                if let Some(n) = counts.get_mut(key) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(key);
                    }
                }
            }
            lo += 1;
        }
        if best.is_none_or(|(d, _, _)| counts.len() > d) {
            best = Some((counts.len(), lo, hi));
        }
    }
    let (distinct, lo, hi) = best?;
    if distinct < threshold {
        return None;
    }
    let inside = &attempts[lo..=hi];
    let mut first_touched: Vec<String> = Vec::new();
    for a in inside.iter().filter(|a| a.failed) {
        if first_touched.len() < 20 && !first_touched.contains(&a.touched) {
            first_touched.push(a.touched.clone());
        }
    }
    Some(ScanWindow {
        start_us: inside[0].ts_us,
        end_us: inside[inside.len() - 1].ts_us,
        distinct,
        attempts: inside.len(),
        failed: inside.iter().filter(|a| a.failed).count(),
        first_touched,
    })
}

/// 0..1: 0.6 x min(1, distinct / (4 x threshold)) + 0.4 x failed share. Breadth dominates; a
/// mostly failing sweep (SYN scan of closed ports) scores higher than one that connects.
pub fn scan_score(distinct: usize, threshold: usize, failed_share: f64) -> f64 {
    let breadth = (distinct as f64 / (4.0 * threshold.max(1) as f64)).min(1.0);
    (0.6 * breadth + 0.4 * failed_share.clamp(0.0, 1.0)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn a(ts_s: i64, touched: u32, failed: bool) -> Attempt {
        Attempt {
            ts_us: ts_s * S,
            touched: touched.to_string(),
            failed,
        }
    }

    #[test]
    fn finds_the_densest_window() {
        // 10 ports early, then 20 ports within 4 minutes an hour later
        let mut v: Vec<Attempt> = (0..10u32).map(|p| a(i64::from(p), p, false)).collect();
        v.extend((0..20).map(|p| a(3600 + p as i64 * 12, 100 + p, true)));
        let w = densest_window(&v, 300 * S, 15).unwrap();
        assert_eq!(w.distinct, 20);
        assert_eq!(w.attempts, 20);
        assert_eq!(w.failed_share(), 1.0);
        assert_eq!(w.start_us, 3600 * S);
        assert_eq!(w.end_us, (3600 + 19 * 12) * S);
        assert_eq!(w.first_touched.len(), 20);
    }

    #[test]
    fn spread_out_ports_are_not_a_scan() {
        // 30 ports, one every 30 s: at most 11 in any 5 minutes
        let v: Vec<Attempt> = (0..30).map(|p| a(p as i64 * 30, p, true)).collect();
        assert!(densest_window(&v, 300 * S, 15).is_none());
        assert_eq!(densest_window(&v, 300 * S, 11).unwrap().distinct, 11);
    }

    #[test]
    fn repeats_count_once() {
        let v: Vec<Attempt> = (0..100).map(|i| a(i, (i % 5) as u32, true)).collect();
        assert!(densest_window(&v, 300 * S, 15).is_none());
        assert!(densest_window(&[], 300 * S, 1).is_none());
    }

    /// Issue 21: every connection counted, so a browser reaching 30 CDN hosts on 443 within
    /// two minutes was an address scan.
    #[test]
    fn successful_connections_are_context_not_a_scan() {
        let browsing: Vec<Attempt> = (0..30).map(|h| a(h as i64 * 4, h, false)).collect();
        assert!(densest_window(&browsing, 300 * S, 25).is_none());
        // 20 failed probes among 30 successes: counted on the failures, the successes as context
        let mut mixed = browsing.clone();
        mixed.extend((0..20).map(|h| a(200 + h as i64, 100 + h, true)));
        mixed.sort_by_key(|x| x.ts_us);
        let w = densest_window(&mixed, 300 * S, 15).unwrap();
        assert_eq!((w.distinct, w.failed), (20, 20));
        assert_eq!(w.attempts, 50);
        assert!(w.first_touched.iter().all(|t| t.parse::<u32>().unwrap() >= 100));
    }

    #[test]
    fn score_grows_with_breadth_and_failures() {
        assert!((scan_score(15, 15, 0.0) - 0.15).abs() < 1e-12);
        assert_eq!(scan_score(1000, 15, 1.0), 1.0);
        assert!(scan_score(60, 15, 0.0) < scan_score(60, 15, 0.5));
    }
}
