//! The capture loop: take a snapshot, store it, wait for the next tick, until the count or
//! duration is reached, the source runs dry, or Ctrl-C. Every snapshot that finished storing
//! stays stored; an interrupted wait ends the loop cleanly.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::fixture::Recorder;
use super::Source;
use crate::capture::persist::{HostState, Stored};
use crate::error::Result;
use crate::interrupt;
use crate::store::Store;

/// When to take snapshots and when to stop.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Wait between snapshots (live); replays run as fast as they can.
    pub wait: bool,
}

/// What a capture run stored.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub snapshots: u64,
    pub first_snapshot_id: Option<i64>,
    pub last_snapshot_id: Option<i64>,
    pub socket_rows: u64,
    pub opened: u64,
    pub closed: u64,
    pub interrupted: bool,
    pub elapsed: Duration,
    /// Milliseconds spent reading the OS, over all snapshots (live sources only).
    pub collect_ms: f64,
    /// Milliseconds spent storing, over all snapshots.
    pub store_ms: f64,
    /// Each kind of unavailable data, once.
    pub gaps: Vec<String>,
}

/// Callbacks for the terminal: a stored snapshot, and a gap seen for the first time.
pub trait Observer {
    fn stored(&mut self, stored: &Stored, report: &RunReport);
    fn gap(&mut self, gap: &str);
}

/// Runs the loop. `clock` gives the time of each snapshot.
pub fn run(
    store: &Store,
    source: &mut dyn Source,
    pace: Pace,
    mut recorder: Option<&mut Recorder>,
    clock: &dyn Fn() -> DateTime<Utc>,
    observer: &mut dyn Observer,
) -> Result<RunReport> {
    let started = Instant::now();
    keep_large_blocks_off_the_heap();
    let mut report = RunReport::default();
    let mut hosts: HashMap<String, HostState> = HashMap::new();
    let mut gap_kinds: HashSet<String> = HashSet::new();
    let mut tick = 0u32;
    let mut settings = store.capture_settings()?;
    loop {
        if interrupt::requested() {
            report.interrupted = true;
            break;
        }
        let Some(snapshot) = source.snapshot(clock())? else {
            break;
        };
        let state = match hosts.entry(snapshot.host.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let state = store.host_state(&snapshot.host)?;
                // Loading it read, and DuckDB cached, the blocks of the latest snapshot (16 MiB at
                // 50 000 sockets).
                settings.release_cache();
                v.insert(state)
            }
        };
        settings.before_snapshot();
        let stored = store.append_snapshot(&snapshot, source.name(), state)?;
        if let Some(rec) = recorder.as_deref_mut() {
            rec.record(&snapshot)?;
        }
        let upkeep = Instant::now();
        settings.after_snapshot(&stored)?;
        // Attaching the file again and emptying the cache are part of storing.
        report.store_ms += upkeep.elapsed().as_secs_f64() * 1000.0;
        for gap in &snapshot.gaps {
            // Gap texts carry counts that change; report each kind (text before ':') once.
            let kind = gap.split(':').next().unwrap_or(gap).to_string();
            if gap_kinds.insert(kind) {
                observer.gap(gap);
                report.gaps.push(gap.clone());
            }
        }
        report.snapshots += 1;
        report.first_snapshot_id.get_or_insert(stored.snapshot_id);
        report.last_snapshot_id = Some(stored.snapshot_id);
        report.socket_rows += stored.sockets as u64;
        report.opened += stored.opened as u64;
        report.closed += stored.closed as u64;
        report.collect_ms += snapshot.collect_ms.unwrap_or(0.0);
        report.store_ms += stored.store_ms;
        report.elapsed = started.elapsed();
        observer.stored(&stored, &report);

        if pace.count.is_some_and(|c| report.snapshots >= c) {
            break;
        }
        if !pace.wait {
            continue;
        }
        // Ticks stay on a fixed grid from the start; a slow snapshot skips ticks, never drifts.
        let now = started.elapsed();
        tick += 1;
        let mut next = pace.interval * tick;
        while next <= now {
            tick += 1;
            next = pace.interval * tick;
        }
        if pace.duration.is_some_and(|d| next > d) {
            break;
        }
        if interrupt::sleep_until(started + next) {
            report.interrupted = true;
            break;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Makes glibc's malloc serve every block of 128 KiB or more with its own mapping, returned to
/// the OS when freed. By default the threshold rises to the largest block freed so far, and a
/// snapshot frees blocks of several MiB (its socket vector, the tracker's map, DuckDB's buffers),
/// so after the first snapshot such blocks came from the heap and their pages stayed resident
/// from one snapshot to the next: the peak at 50 000 sockets was 10 MiB higher. Mapping and
/// unmapping costs about 4% more time per snapshot. The setting stays for the rest of the
/// process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_blocks_off_the_heap() {
    // Once per process: `watch` runs a capture per snapshot.
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    ONCE.call_once(|| unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_blocks_off_the_heap() {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Proto, Snapshot, SocketRecord};
    use crate::store::Location;

    struct Scripted(Vec<Snapshot>);

    impl Source for Scripted {
        fn name(&self) -> &'static str {
            "fixture"
        }
        fn snapshot(&mut self, _now: DateTime<Utc>) -> Result<Option<Snapshot>> {
            Ok((!self.0.is_empty()).then(|| self.0.remove(0)))
        }
    }

    #[derive(Default)]
    struct Seen {
        stored: usize,
        gaps: Vec<String>,
    }

    impl Observer for Seen {
        fn stored(&mut self, _: &Stored, _: &RunReport) {
            self.stored += 1;
        }
        fn gap(&mut self, gap: &str) {
            self.gaps.push(gap.to_string());
        }
    }

    fn snapshot(i: i64, gap: &str) -> Snapshot {
        Snapshot {
            ts: DateTime::from_timestamp(1_800_000_000 + i, 0).unwrap(),
            host: "h".into(),
            collect_ms: None,
            sockets: vec![SocketRecord {
                proto: Proto::Udp,
                local_addr: "0.0.0.0".parse().unwrap(),
                local_port: 53,
                remote_addr: None,
                remote_port: None,
                state: "UNCONN".into(),
                pids: vec![],
                uid: None,
                inode: None,
                recv_queue: None,
                send_queue: None,
                tcp: None,
            }],
            processes: vec![],
            interfaces: vec![],
            gaps: vec![gap.to_string()],
        }
    }

    #[test]
    fn stops_at_count_and_reports_each_gap_kind_once() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut source = Scripted(
            (0..5)
                .map(|i| snapshot(i, &format!("pid: {i} sockets unowned")))
                .collect(),
        );
        let pace = Pace {
            interval: Duration::from_secs(1),
            duration: None,
            count: Some(3),
            wait: false,
        };
        let mut seen = Seen::default();
        let report = run(&store, &mut source, pace, None, &Utc::now, &mut seen).unwrap();
        assert_eq!(
            (report.snapshots, report.first_snapshot_id, report.last_snapshot_id),
            (3, Some(1), Some(3))
        );
        assert_eq!(report.opened, 1);
        assert_eq!(seen.stored, 3);
        assert_eq!(seen.gaps, vec!["pid: 0 sockets unowned"]);
    }

    #[test]
    fn stops_when_the_source_runs_dry() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut source = Scripted(vec![snapshot(0, "x"), snapshot(1, "x")]);
        let pace = Pace {
            interval: Duration::from_secs(1),
            duration: None,
            count: None,
            wait: false,
        };
        let report = run(&store, &mut source, pace, None, &Utc::now, &mut Seen::default()).unwrap();
        assert_eq!(report.snapshots, 2);
    }
}
