//! The capture loop: take a snapshot, plan it, store what was planned when it is due, wait for
//! the next tick, until the count or duration is reached, the source runs dry, or Ctrl-C.
//! Snapshots are stored together once the oldest waiting has waited `commit_every` (a
//! transaction, its appends and its WAL sync cost about the same for one snapshot as for ten;
//! they were most of an idle host's capture cost). Whatever is waiting is stored when the loop
//! ends, by Ctrl-C, the count, the duration or an error of the source; only a process killed
//! outright loses what waited.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::fixture::Recorder;
use super::Source;
use crate::capture::persist::{HostState, PlannedSnapshots, Stored};
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
    /// Store waiting snapshots once the oldest has waited this long (zero: each as it is
    /// taken). Batches are also stored once [`MAX_WAITING_ROWS`] rows or
    /// [`MAX_WAITING_SNAPSHOTS`] snapshots wait.
    pub commit_every: Duration,
}

/// How long snapshots of a live capture wait to be stored together, unless told otherwise
/// (`--commit-every`): what a process killed outright loses, and how far a server's clients
/// are behind the capture.
pub const DEFAULT_COMMIT_EVERY: Duration = Duration::from_secs(5);

/// Socket and process rows that make a batch due whatever its age: a large host's snapshot is
/// stored as it is taken, as before batching, so memory holds one snapshot's rows at a time.
pub const MAX_WAITING_ROWS: usize = 16_384;

/// Snapshots that make a batch due whatever its age (replays take hundreds a second).
pub const MAX_WAITING_SNAPSHOTS: usize = 256;

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
    recorder: Option<&mut Recorder>,
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
    let mut planned = PlannedSnapshots::default();
    let mut run = Run {
        store,
        recorder,
        observer,
        gap_kinds: &mut gap_kinds,
        started,
    };
    let ended = loop {
        if interrupt::requested() {
            report.interrupted = true;
            break Ok(());
        }
        let snapshot = match source.snapshot(clock()) {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let state = match hosts.entry(snapshot.host.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let state = match store.host_state(&snapshot.host) {
                    Ok(state) => state,
                    Err(e) => break Err(e),
                };
                // Loading it read, and DuckDB cached, the blocks of the latest snapshot (16 MiB at
                // 50 000 sockets).
                settings.release_cache();
                v.insert(state)
            }
        };
        settings.before_snapshot();
        if let Err(e) = store.plan_snapshot(snapshot, source.name(), state, &mut planned) {
            break Err(e);
        }
        // Live, the next chance to store is a tick away: store now when that would be late.
        let next_chance = if pace.wait { pace.interval } else { Duration::ZERO };
        let due = pace.commit_every.is_zero()
            || planned.waited() + next_chance > pace.commit_every
            || planned.rows() >= MAX_WAITING_ROWS
            || planned.len() >= MAX_WAITING_SNAPSHOTS;
        if due {
            if let Err(e) = run.store_waiting(&mut planned, &mut settings, &mut report) {
                break Err(e);
            }
        }

        if pace.count.is_some_and(|c| report.snapshots + planned.len() as u64 >= c) {
            break Ok(());
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
            break Ok(());
        }
        if interrupt::sleep_until(started + next) {
            report.interrupted = true;
            break Ok(());
        }
    };
    // Whatever waits is stored however the loop ended; the source's error, if any, after it.
    run.store_waiting(&mut planned, &mut settings, &mut report)?;
    ended?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What storing a batch reports to: the recording, the observer and the run's report.
struct Run<'a, 'r> {
    store: &'a Store,
    recorder: Option<&'r mut Recorder>,
    observer: &'r mut dyn Observer,
    gap_kinds: &'r mut HashSet<String>,
    started: Instant,
}

impl Run<'_, '_> {
    /// Stores what was planned, then records and reports each snapshot stored.
    fn store_waiting(
        &mut self,
        planned: &mut PlannedSnapshots,
        settings: &mut crate::capture::persist::CaptureSettings<'_>,
        report: &mut RunReport,
    ) -> Result<()> {
        if planned.is_empty() {
            return Ok(());
        }
        let stored = self.store.store_planned(planned)?;
        // The batch is committed: it is counted before anything that follows can fail, so an
        // error in the upkeep or the recording never hides stored snapshots from the report.
        for (stored, snapshot) in &stored {
            for gap in &snapshot.gaps {
                // Gap texts carry counts that change; report each kind (text before ':') once.
                let kind = gap.split(':').next().unwrap_or(gap).to_string();
                if self.gap_kinds.insert(kind) {
                    self.observer.gap(gap);
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
            report.elapsed = self.started.elapsed();
            self.observer.stored(stored, report);
        }
        let upkeep = Instant::now();
        let upkept = settings.after_store(stored.iter().map(|(s, _)| s.sockets + s.processes).sum());
        // Attaching the file again and emptying the cache are part of storing.
        report.store_ms += upkeep.elapsed().as_secs_f64() * 1000.0;
        upkept?;
        if let Some(rec) = self.recorder.as_deref_mut() {
            for (_, snapshot) in &stored {
                rec.record(snapshot)?;
            }
        }
        Ok(())
    }
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
            commit_every: Duration::ZERO,
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
    #[cfg(target_os = "linux")]
    fn a_recording_that_fails_after_the_commit_hides_no_stored_snapshot() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut source = Scripted((0..3).map(|i| snapshot(i, "x")).collect());
        let pace = Pace {
            interval: Duration::from_secs(1),
            duration: None,
            count: None,
            wait: false,
            commit_every: Duration::from_secs(600),
        };
        // /dev/full takes the open and refuses the first write: the recording fails once the
        // batch of three is committed.
        let mut recorder = Recorder::create(std::path::Path::new("/dev/full")).unwrap();
        let mut seen = Seen::default();
        let error = run(&store, &mut source, pace, Some(&mut recorder), &Utc::now, &mut seen).unwrap_err();
        assert!(error.to_string().contains("/dev/full"), "{error}");
        let stored: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
            .unwrap();
        assert_eq!((stored, seen.stored), (3, 3));
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
            commit_every: Duration::ZERO,
        };
        let report = run(&store, &mut source, pace, None, &Utc::now, &mut Seen::default()).unwrap();
        assert_eq!(report.snapshots, 2);
    }

    /// Replays ahead of an error: the source fails after its snapshots.
    struct FailsAtEnd(Vec<Snapshot>);

    impl Source for FailsAtEnd {
        fn name(&self) -> &'static str {
            "fixture"
        }
        fn snapshot(&mut self, _now: DateTime<Utc>) -> Result<Option<Snapshot>> {
            if self.0.is_empty() {
                return Err(crate::error::Error::Usage("the recording ends mid-line".into()));
            }
            Ok(Some(self.0.remove(0)))
        }
    }

    #[test]
    fn snapshots_wait_to_be_stored_together_and_what_waits_is_stored_at_the_end() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let pace = Pace {
            interval: Duration::from_secs(1),
            duration: None,
            count: None,
            wait: false,
            commit_every: Duration::MAX,
        };
        // The source fails after three snapshots that waited: they are stored, then the error
        // is returned.
        let mut source = FailsAtEnd((0..3).map(|i| snapshot(i, "x")).collect());
        let mut seen = Seen::default();
        let err = run(&store, &mut source, pace, None, &Utc::now, &mut seen).unwrap_err();
        assert!(err.to_string().contains("mid-line"), "{err}");
        assert_eq!(seen.stored, 3);
        let count: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 3);

        // Many small snapshots make a batch due by their number, whatever its age: the first
        // store comes when exactly that many were taken.
        let taken = std::rc::Rc::new(std::cell::Cell::new(0usize));
        struct Counted(Scripted, std::rc::Rc<std::cell::Cell<usize>>);
        impl Source for Counted {
            fn name(&self) -> &'static str {
                "fixture"
            }
            fn snapshot(&mut self, now: DateTime<Utc>) -> Result<Option<Snapshot>> {
                self.1.set(self.1.get() + 1);
                self.0.snapshot(now)
            }
        }
        struct FirstStore(std::rc::Rc<std::cell::Cell<usize>>, Option<(usize, u64)>);
        impl Observer for FirstStore {
            fn stored(&mut self, _: &Stored, report: &RunReport) {
                self.1.get_or_insert((self.0.get(), report.snapshots));
            }
            fn gap(&mut self, _: &str) {}
        }
        let snapshots = (0..(MAX_WAITING_SNAPSHOTS as i64 + 10))
            .map(|i| snapshot(100 + i, "x"))
            .collect();
        let mut source = Counted(Scripted(snapshots), taken.clone());
        let mut first = FirstStore(taken, None);
        let report = run(&store, &mut source, pace, None, &Utc::now, &mut first).unwrap();
        assert_eq!(report.snapshots, MAX_WAITING_SNAPSHOTS as u64 + 10);
        assert_eq!(first.1, Some((MAX_WAITING_SNAPSHOTS, 1)));
    }
}
