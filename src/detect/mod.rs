//! Behaviour detectors: port scans, beacons, bursts and long connections.
//!
//! Every detector reads the `connection_events` view (sql/004_detect.sql), which gives live
//! history and imported flows one shape, so each works on either source alike. SQL does the
//! filtering and grouping; the scoring maths lives in pure functions in the submodules, with the
//! window and time resolution passed in. Each run writes its own rows, keyed by a new `run_id`
//! recorded in `detector_runs`, in one transaction: a failing run stores nothing. This module
//! only reads the store's tables and writes the detector tables; printing is the shell's job.
//!
//! A detector is a [`Detector`] listed in [`DETECTORS`], the one registry: its name (the table
//! it writes), its options with their ranges, how it finds rows and which of them to show. The
//! command line's choices, the request's JSON form and the checks of every client's thresholds
//! all come from that list.

pub mod beacons;
pub mod bursts;
pub mod events;
pub mod long_connections;
pub mod port_scans;
pub mod stats;
pub mod suppress;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use duckdb::Connection;

use crate::error::{Error, Result};
use crate::store::Store;
use events::{fmt_us, timestamp, Scope};

/// One detector. Adding a detector is implementing this and listing it in [`DETECTORS`]; its
/// own options are fields of [`DetectRequest`], each declared once in [`Detector::params`] with
/// its flag, help, default and range (the command line's `detect` builds its flags from them).
pub trait Detector: Sync {
    /// Its name in `detect NAME`: the table it writes and its name in `detector_runs`.
    fn name(&self) -> &'static str;
    /// Other spellings `detect` accepts.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// One line for `detect --help`.
    fn about(&self) -> &'static str;
    /// The table a run writes (its rows keyed by `run_id`); the detector's name.
    fn table(&self) -> &'static str {
        self.name()
    }
    /// Its options with their ranges, checked for every client and stored in
    /// `detector_runs.params` under their keys.
    fn params(&self) -> &'static [Param];
    /// Finds its rows in `scope` and inserts them under `run_id`, inside the run's transaction.
    fn find(&self, conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found>;
    /// The columns and order of the rows `detect` shows after a run, most notable first.
    fn top_rows(&self) -> TopRows;
}

impl std::fmt::Debug for dyn Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every detector, in the order `detect all` runs them and `detect --help` lists them.
pub static DETECTORS: [&dyn Detector; 4] = [&PortScans, &Beacons, &Bursts, &LongConnections];

/// The detector called `name` (or one of its aliases); an unknown name is an error that lists
/// the known ones.
pub fn detector(name: &str) -> Result<&'static dyn Detector> {
    DETECTORS
        .iter()
        .copied()
        .find(|d| d.name().eq_ignore_ascii_case(name) || d.aliases().iter().any(|a| a.eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            Error::Usage(format!(
                "unknown detector '{name}'\n  hint: the detectors are {}, or all",
                DETECTORS.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// One option of a detector, declared once: the command line's flag, help and default, its key
/// in `detector_runs.params`, its range, and the field of [`DetectRequest`] that holds it. The
/// command line builds `detect`'s flags from these ([`DetectRequest::defaults`] applies the same
/// defaults), and `detect` checks every client's values against the ranges.
pub struct Param {
    pub flag: &'static str,
    pub key: &'static str,
    /// One line for `detect --help`, starting with the detector ("Beacons: ...").
    pub help: &'static str,
    /// The placeholder in `detect --help` (`N`, `SCORE`, `DURATION`, ...).
    pub value_name: &'static str,
    pub values: Values,
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.flag)
    }
}

/// An option's type, range and default, with where the request holds its value (`of` reads
/// it, `set` writes it).
#[derive(Clone, Copy)]
pub enum Values {
    /// Whole numbers from `min` to `max`.
    Count {
        min: u64,
        max: u64,
        default: u64,
        of: fn(&DetectRequest) -> u64,
        set: fn(&mut DetectRequest, u64),
    },
    /// A number in `range`.
    Number {
        range: NumberRange,
        default: f64,
        of: fn(&DetectRequest) -> f64,
        set: fn(&mut DetectRequest, f64),
    },
    /// Any duration (stored in seconds).
    Duration {
        default: Duration,
        of: fn(&DetectRequest) -> Duration,
        set: fn(&mut DetectRequest, Duration),
    },
    /// One non-negative weight for each of `names`, with a positive sum.
    Weights {
        names: &'static [&'static str],
        default: &'static [f64],
        of: fn(&DetectRequest) -> &[f64],
        set: fn(&mut DetectRequest, Vec<f64>),
    },
}

/// A `u32` field's value from a count checked against a `max` of at most `u32::MAX` (the command
/// line checks the range before setting; a request's JSON holds the field's own type).
fn count_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The numbers a [`Values::Number`] option may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberRange {
    /// From 0 to 1.
    Share,
    /// Finite, 0 or more.
    NonNegative,
    /// Finite, above 0.
    Positive,
}

impl Param {
    /// Refuses a value outside the option's range, naming the flag and the value.
    fn check(&self, args: &DetectRequest) -> Result<()> {
        let flag = self.flag;
        let refused = |message: String| Err(Error::Usage(format!("{flag} {message}")));
        match self.values {
            Values::Count { min, max, of, .. } => {
                let n = of(args);
                if n < min || n > max {
                    if max == u64::from(u32::MAX) || max == u64::MAX {
                        refused(format!("must be {min} or more, got {n}"))
                    } else {
                        refused(format!("must be from {min} to {max}, got {n}"))
                    }
                } else {
                    Ok(())
                }
            }
            Values::Number { range, of, .. } => {
                let x = of(args);
                match range {
                    NumberRange::Share if !(0.0..=1.0).contains(&x) => {
                        refused(format!("must be between 0 and 1, got {x}"))
                    }
                    NumberRange::NonNegative if !(x.is_finite() && x >= 0.0) => {
                        refused(format!("must be 0 or more, got {x}"))
                    }
                    NumberRange::Positive if !(x.is_finite() && x > 0.0) => {
                        refused(format!("must be more than 0, got {x}"))
                    }
                    _ => Ok(()),
                }
            }
            Values::Duration { .. } => Ok(()),
            Values::Weights { names, of, .. } => {
                let w = of(args);
                if w.len() != names.len()
                    || w.iter().any(|x| !x.is_finite() || *x < 0.0)
                    || w.iter().sum::<f64>() <= 0.0
                {
                    refused(format!(
                        "needs {} non-negative numbers ({}) with a positive sum, got {w:?}",
                        number_word(names.len()),
                        names.join(",")
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Sets the option in `request` to its default.
    fn set_default(&self, request: &mut DetectRequest) {
        match self.values {
            Values::Count { default, set, .. } => set(request, default),
            Values::Number { default, set, .. } => set(request, default),
            Values::Duration { default, set, .. } => set(request, default),
            Values::Weights { default, set, .. } => set(request, default.to_vec()),
        }
    }

    /// The value as stored in `detector_runs.params` (durations in seconds).
    fn json(&self, args: &DetectRequest) -> serde_json::Value {
        match self.values {
            Values::Count { of, .. } => serde_json::json!(of(args)),
            Values::Number { of, .. } => serde_json::json!(of(args)),
            Values::Duration { of, .. } => serde_json::json!(of(args).as_secs_f64()),
            Values::Weights { of, .. } => serde_json::json!(of(args)),
        }
    }
}

fn number_word(n: usize) -> String {
    match n {
        2 => "two".to_string(),
        3 => "three".to_string(),
        4 => "four".to_string(),
        5 => "five".to_string(),
        _ => n.to_string(),
    }
}

/// The rows a run's summary shows: columns (expressions) and order.
pub struct TopRows {
    pub columns: &'static str,
    pub order: &'static str,
}

/// A detector name as given: one detector, or all. Its text form (command line, JSON) is the
/// detector's name or `all`.
#[derive(Clone, Copy)]
pub enum DetectorName {
    One(&'static dyn Detector),
    All,
}

impl DetectorName {
    /// `all`, or a detector's name or alias; an unknown name is an error listing the known ones.
    pub fn parse(name: &str) -> Result<Self> {
        if name.eq_ignore_ascii_case("all") {
            return Ok(DetectorName::All);
        }
        detector(name).map(DetectorName::One)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            DetectorName::One(d) => d.name(),
            DetectorName::All => "all",
        }
    }

    /// The detectors it stands for, in run order.
    pub fn detectors(&self) -> Vec<&'static dyn Detector> {
        match self {
            DetectorName::One(d) => vec![*d],
            DetectorName::All => DETECTORS.to_vec(),
        }
    }
}

impl PartialEq for DetectorName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for DetectorName {}

impl std::fmt::Debug for DetectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DetectorName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DetectorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        DetectorName::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// What a detector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectSource {
    /// Whichever has rows (live history first when both do).
    Auto,
    /// Imported flows (pcap, Zeek).
    Flows,
    /// Live capture history (the connections view).
    Connections,
}

/// A detector run's parameters: what to read, the window, and each detector's thresholds. The
/// command line fills it from `detect`'s options; a server receives it as JSON, where a missing
/// field takes the command line's default (a missing `detector` is `all`). Each threshold is
/// declared once, as a [`Param`] of its detector, with its default.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DetectRequest {
    pub detector: DetectorName,
    pub on: DetectSource,
    /// Analyse only the last `window` of the data, ending at `until`.
    pub window: Option<std::time::Duration>,
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
    /// Rows of each result to show after the run.
    pub top: usize,
    pub scan_window: std::time::Duration,
    pub scan_ports: u32,
    pub scan_hosts: u32,
    pub beacon_min_connections: u32,
    pub beacon_bins: u32,
    pub beacon_threshold: f64,
    pub beacon_weights: Vec<f64>,
    /// Gap sub-score a beacon needs at least (random timing scores about 0.5).
    pub beacon_min_gap_score: f64,
    /// First to last connection a beacon must span at least.
    pub beacon_min_span: std::time::Duration,
    pub burst_bin: std::time::Duration,
    pub burst_k: f64,
    pub burst_min_connections: u64,
    pub burst_min_bytes: u64,
    /// Least spread of a connections series, connections per bin (the MAD's floor).
    pub burst_floor_connections: f64,
    /// Least spread of a bytes series, bytes per bin.
    pub burst_floor_bytes: f64,
    /// Other episodes at half a burst's peak that make its level the entity's routine (0: off).
    pub burst_routine: u64,
    pub long_min: std::time::Duration,
}

impl DetectRequest {
    /// Rows of each result `detect` shows when not told.
    pub const DEFAULT_TOP: usize = 20;

    /// A run of `detector` over the last `window` of the data with every threshold at its
    /// default (its [`Param`]'s, which the command line's flags show and apply too).
    pub fn defaults(detector: DetectorName, window: Option<std::time::Duration>) -> Self {
        let mut request = DetectRequest {
            detector,
            on: DetectSource::Auto,
            window,
            since: None,
            until: None,
            top: Self::DEFAULT_TOP,
            scan_window: Duration::ZERO,
            scan_ports: 0,
            scan_hosts: 0,
            beacon_min_connections: 0,
            beacon_bins: 0,
            beacon_threshold: 0.0,
            beacon_weights: Vec::new(),
            beacon_min_gap_score: 0.0,
            beacon_min_span: Duration::ZERO,
            burst_bin: Duration::ZERO,
            burst_k: 0.0,
            burst_min_connections: 0,
            burst_min_bytes: 0,
            burst_floor_connections: 0.0,
            burst_floor_bytes: 0.0,
            burst_routine: 0,
            long_min: Duration::ZERO,
        };
        for param in DETECTORS.iter().flat_map(|d| d.params()) {
            param.set_default(&mut request);
        }
        request
    }
}

/// Every detector over all the data, each threshold at its default.
impl Default for DetectRequest {
    fn default() -> Self {
        DetectRequest::defaults(DetectorName::All, None)
    }
}

/// What one detector run did, for the summary line and the rows to print.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub detector: &'static dyn Detector,
    pub run_id: i64,
    pub rows: i64,
    pub events: i64,
    /// One line for stderr.
    pub message: String,
}

/// Runs the detector(s) `args` names. `now` stamps the runs (started_at); the analysed window
/// comes from the data and the options, never from the clock.
pub fn run(store: &Store, args: &DetectRequest, now: DateTime<Utc>) -> Result<Vec<RunSummary>> {
    validate(args)?;
    if store.is_read_only() {
        return Err(Error::Usage(
            "detect stores its results in the database, which was opened with --read-only; open it without --read-only"
                .to_string(),
        ));
    }
    let scope = events::resolve(store.conn(), args)?;
    // One transaction for all the detectors asked: `detect all` stores every run or none, so a
    // detector that fails (a window of too many bins, Ctrl-C) leaves no earlier run of the
    // command behind as the newest, unreported.
    store.in_transaction(|conn| {
        args.detector
            .detectors()
            .into_iter()
            .map(|detector| run_one(conn, detector, &scope, args, now))
            .collect()
    })
}

/// What one detector would flag, found without storing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged {
    /// The detector's name (its table).
    pub detector: &'static str,
    /// Rows it would store (for beacons, every pair it scored).
    pub rows: i64,
    /// Its summary line's finding (the count and the top row).
    pub headline: String,
}

/// Runs the detectors `args` names as [`run`] does, inside one transaction that is rolled
/// back: what they would flag, with nothing stored (the `latest_*` views unchanged; the run ids
/// drawn from the sequence are used up, as a rolled-back sequence value is: later runs skip them). For a glance at a window, such as the end of a capture.
pub fn flag(store: &Store, args: &DetectRequest) -> Result<Vec<Flagged>> {
    validate(args)?;
    let conn = store.conn();
    let scope = events::resolve(conn, args)?;
    crate::store::begin_own_transaction(conn)?;
    let result = (|| -> Result<Vec<Flagged>> {
        let mut flagged = Vec::new();
        for detector in args.detector.detectors() {
            let run_id = crate::store::runs::next_run_id(conn)?;
            let found = detector.find(conn, run_id, &scope, args)?;
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            flagged.push(Flagged {
                detector: detector.table(),
                rows: found.rows,
                headline: found.headline.replace(" (stored as an empty run)", ""),
            });
        }
        Ok(flagged)
    })();
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// Checks every detector's options, whichever run (a bad threshold is refused even when its
/// detector is not asked for).
fn validate(args: &DetectRequest) -> Result<()> {
    DETECTORS
        .iter()
        .flat_map(|d| d.params())
        .try_for_each(|p| p.check(args))
}

/// What a detector found, before the run is recorded.
pub struct Found {
    /// Connections it read.
    pub events: i64,
    /// Rows it inserted.
    pub rows: i64,
    /// The summary line's finding.
    pub headline: String,
    /// Caveats, one per line of the summary and in detector_runs.notes.
    pub notes: Vec<String>,
}

/// One detector's run inside the caller's transaction ([`run`]): its rows and its
/// `detector_runs` line, or an error after which the caller rolls back.
fn run_one(
    conn: &Connection,
    detector: &'static dyn Detector,
    scope: &Scope,
    args: &DetectRequest,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let run_id = crate::store::runs::next_run_id(conn)?;
    let found = detector.find(conn, run_id, scope, args)?;
    let mut notes = found.notes.clone();
    if let Some(why) = &scope.chosen_because {
        notes.insert(0, format!("source {} ({why})", scope.source.as_str()));
    }
    conn.execute(
        "INSERT INTO detector_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        duckdb::params![
            run_id,
            detector.table(),
            scope.source.as_str(),
            now.naive_utc(),
            started.elapsed().as_secs_f64(),
            timestamp(scope.start_us),
            timestamp(scope.end_us),
            found.events,
            found.rows,
            scope.resolution_s,
            params_json(detector, args).to_string(),
            (!notes.is_empty()).then(|| notes.join("; ")),
        ],
    )
    .map_err(Error::sql)?;
    // Ctrl-C during the Rust side of a detector (no statement to interrupt) still stores nothing.
    if crate::interrupt::requested() {
        return Err(Error::Interrupted);
    }
    let source = match &scope.chosen_because {
        Some(why) => format!("{} ({why})", scope.source.as_str()),
        None => scope.source.as_str().to_string(),
    };
    let mut message = format!(
        "{}: run {run_id} on {source}, {} .. {} UTC, {} connections: {}",
        detector.table(),
        fmt_us(scope.start_us),
        fmt_us(scope.end_us),
        found.events,
        found.headline
    );
    for note in &found.notes {
        message.push_str(&format!("\n  note: {note}"));
    }
    Ok(RunSummary {
        detector,
        run_id,
        rows: found.rows,
        events: found.events,
        message,
    })
}

/// The run's window and the detector's options as JSON for detector_runs.params.
fn params_json(detector: &dyn Detector, a: &DetectRequest) -> serde_json::Value {
    let mut params = serde_json::Map::new();
    for p in detector.params() {
        params.insert(p.key.to_string(), p.json(a));
    }
    params.insert("window_s".into(), serde_json::json!(a.window.map(|w| w.as_secs_f64())));
    params.insert("since".into(), serde_json::json!(a.since.map(|t| t.to_string())));
    params.insert("until".into(), serde_json::json!(a.until.map(|t| t.to_string())));
    serde_json::Value::Object(params)
}

/// `source = ? AND start in window` over connection_events, with its three parameters.
const STARTS_IN_WINDOW: &str = "source = ? AND epoch_us(start_ts) BETWEEN ? AND ?";

fn count_starts(conn: &Connection, scope: &Scope, extra: &str) -> Result<i64> {
    conn.query_row(
        &format!("SELECT count(*) FROM connection_events WHERE {STARTS_IN_WINDOW} {extra}"),
        duckdb::params![scope.source.as_str(), scope.start_us, scope.end_us],
        |r| r.get(0),
    )
    .map_err(Error::sql)
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// --- port scans --------------------------------------------------------------------------

/// One source touching many ports of a host, or one port on many hosts (Zeek's scan policy).
pub struct PortScans;

impl Detector for PortScans {
    fn name(&self) -> &'static str {
        "port_scans"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["port-scans"]
    }
    fn about(&self) -> &'static str {
        "One source touching many ports of a host, or one port on many hosts"
    }
    fn params(&self) -> &'static [Param] {
        static PARAMS: [Param; 3] = [
            Param {
                flag: "--scan-window",
                key: "scan_window_s",
                help: "Port scans: the sliding window the ports or hosts must fall in (Zeek: 5m)",
                value_name: "DURATION",
                values: Values::Duration {
                    default: Duration::from_secs(300),
                    of: |a| a.scan_window,
                    set: |a, v| a.scan_window = v,
                },
            },
            Param {
                flag: "--scan-ports",
                key: "scan_ports",
                help: "Port scans: distinct ports of one host that make a port scan (Zeek: 15)",
                value_name: "N",
                values: Values::Count {
                    min: 2,
                    max: u32::MAX as u64,
                    default: 15,
                    of: |a| u64::from(a.scan_ports),
                    set: |a, n| a.scan_ports = count_u32(n),
                },
            },
            Param {
                flag: "--scan-hosts",
                key: "scan_hosts",
                help: "Port scans: distinct hosts on one port that make an address scan (Zeek: 25)",
                value_name: "N",
                values: Values::Count {
                    min: 2,
                    max: u32::MAX as u64,
                    default: 25,
                    of: |a| u64::from(a.scan_hosts),
                    set: |a, n| a.scan_hosts = count_u32(n),
                },
            },
        ];
        &PARAMS
    }
    fn find(&self, conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
        detect_port_scans(conn, run_id, scope, args)
    }
    fn top_rows(&self) -> TopRows {
        TopRows {
            columns: "kind, scanner, coalesce(target, '*') AS target, target_port, proto, distinct_ports, distinct_hosts, \
                      attempts, round(failed_share, 3) AS failed_share, window_start, window_end, round(score, 3) AS score",
            order: "score DESC, distinct_ports + distinct_hosts DESC",
        }
    }
}

/// A failed or unanswered attempt, as Zeek's scan policy counts them: connection_events.failed
/// (S0, REJ, RSTOS0, RSTRH, SH, SHR; live SYN_SENT or SYN_RECV, never established), plus a flow
/// the originator reset before any payload (RSTO with no bytes: a connect scan of an open port).
const SCAN_FAILED: &str = "(failed OR (state = 'RSTO' AND coalesce(bytes_out, 0) = 0 AND coalesce(bytes_in, 0) = 0))";

fn detect_port_scans(conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
    let filter = "AND proto IN ('tcp', 'udp') AND dst_p IS NOT NULL";
    let events = count_starts(conn, scope, filter)?;
    let window_us = i64::try_from(args.scan_window.as_micros()).unwrap_or(i64::MAX / 4);
    let mut rows: Vec<ScanRow> = Vec::new();
    // (kind, grouping column, touched column, threshold)
    let kinds = [
        (
            "port_scan",
            "dst_h",
            "dst_p::VARCHAR",
            "dst_p",
            args.scan_ports as usize,
        ),
        ("address_scan", "dst_p", "dst_h", "dst_h", args.scan_hosts as usize),
    ];
    for (kind, target_col, touched_expr, distinct_col, threshold) in kinds {
        let sql = format!(
            "WITH e AS (SELECT src_h, dst_h, dst_p, proto, start_ts, {SCAN_FAILED} AS failed FROM connection_events \
                        WHERE {STARTS_IN_WINDOW} {filter}), \
                  g AS (SELECT src_h, {target_col}, proto FROM e GROUP BY ALL \
                        HAVING count(DISTINCT {distinct_col}) FILTER (WHERE failed) >= ?) \
             SELECT e.src_h, e.{target_col}::VARCHAR, e.proto, epoch_us(e.start_ts), {touched_expr}, e.failed \
             FROM e JOIN g USING (src_h, {target_col}, proto) ORDER BY 1, 2, 3, 4"
        );
        let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
        let mut result = stmt
            .query(duckdb::params![
                scope.source.as_str(),
                scope.start_us,
                scope.end_us,
                threshold as i64
            ])
            .map_err(Error::sql)?;
        let mut group: Option<(String, String, String)> = None;
        let mut attempts: Vec<port_scans::Attempt> = Vec::new();
        let mut flush = |key: &Option<(String, String, String)>, attempts: &mut Vec<port_scans::Attempt>| {
            if let Some((scanner, target, proto)) = key {
                if let Some(w) = port_scans::densest_window(attempts, window_us, threshold) {
                    rows.push(ScanRow::new(kind, scanner, target, proto, &w, threshold));
                }
            }
            attempts.clear();
        };
        while let Some(r) = result.next().map_err(Error::sql)? {
            let key = (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2));
            let key = match key {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                _ => continue,
            };
            if group.as_ref() != Some(&key) {
                flush(&group, &mut attempts);
                group = Some(key);
            }
            attempts.push(port_scans::Attempt {
                ts_us: r.get(3).map_err(Error::sql)?,
                touched: r.get::<_, Option<String>>(4).map_err(Error::sql)?.unwrap_or_default(),
                failed: r.get(5).map_err(Error::sql)?,
            });
        }
        flush(&group, &mut attempts);
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut marks = suppress::Suppressions::load(conn, "port_scans")?;
    let mut insert = conn
        .prepare("INSERT INTO port_scans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .map_err(Error::sql)?;
    let mut alarms = Vec::new();
    for r in &rows {
        let key = suppress::scan_key(&r.scanner, r.kind, r.target.as_deref(), r.target_port, &r.proto);
        let suppressed_by = marks.check(&key);
        if suppressed_by.is_none() {
            alarms.push(r);
        }
        insert
            .execute(duckdb::params![
                run_id,
                r.kind,
                r.scanner,
                r.target,
                r.target_port,
                r.proto,
                r.distinct_ports as i64,
                r.distinct_hosts as i64,
                r.window.attempts as i64,
                r.window.failed as i64,
                r.window.failed_share(),
                timestamp(r.window.start_us),
                timestamp(r.window.end_us),
                r.window.first_touched.join(","),
                r.score,
                suppressed_by.is_some(),
                suppressed_by,
            ])
            .map_err(Error::sql)?;
    }
    let headline = match alarms.first() {
        None if rows.is_empty() => "no port or address scan above the thresholds (stored as an empty run)".to_string(),
        None => format!("no scan{}", marks.summary()),
        Some(top) => format!(
            "{} found{}; top: {} -> {} ({} ports, {} hosts, {:.0}% failed, score {:.2})",
            plural(alarms.len() as i64, "scan", "scans"),
            marks.summary(),
            top.scanner,
            top.target
                .clone()
                .unwrap_or_else(|| format!("port {}", top.target_port.unwrap_or_default())),
            top.distinct_ports,
            top.distinct_hosts,
            100.0 * top.window.failed_share(),
            top.score
        ),
    };
    Ok(Found {
        events,
        rows: rows.len() as i64,
        headline,
        notes: Vec::new(),
    })
}

struct ScanRow {
    kind: &'static str,
    scanner: String,
    target: Option<String>,
    target_port: Option<i32>,
    proto: String,
    distinct_ports: usize,
    distinct_hosts: usize,
    window: port_scans::ScanWindow,
    score: f64,
}

impl ScanRow {
    fn new(
        kind: &'static str,
        scanner: &str,
        target: &str,
        proto: &str,
        w: &port_scans::ScanWindow,
        threshold: usize,
    ) -> Self {
        let port_scan = kind == "port_scan";
        ScanRow {
            kind,
            scanner: scanner.to_string(),
            target: port_scan.then(|| target.to_string()),
            target_port: if port_scan { None } else { target.parse().ok() },
            proto: proto.to_string(),
            distinct_ports: if port_scan { w.distinct } else { 1 },
            distinct_hosts: if port_scan { 1 } else { w.distinct },
            score: port_scans::scan_score(w.distinct, threshold, w.failed_share()),
            window: w.clone(),
        }
    }
}

// --- beacons -----------------------------------------------------------------------------

/// Periodic connections between a pair, scored in the manner of RITA.
pub struct Beacons;

impl Detector for Beacons {
    fn name(&self) -> &'static str {
        "beacons"
    }
    fn about(&self) -> &'static str {
        "Periodic connections between a pair, scored in the manner of RITA"
    }
    fn params(&self) -> &'static [Param] {
        static PARAMS: [Param; 6] = [
            Param {
                flag: "--beacon-min-connections",
                key: "beacon_min_connections",
                help: "Beacons: connections a pair needs to be scored",
                value_name: "N",
                values: Values::Count {
                    min: 4,
                    max: u32::MAX as u64,
                    default: 4,
                    of: |a| u64::from(a.beacon_min_connections),
                    set: |a, n| a.beacon_min_connections = count_u32(n),
                },
            },
            Param {
                flag: "--beacon-bins",
                key: "beacon_bins",
                help: "Beacons: bins the window is cut into for the evenness and persistence sub-scores",
                value_name: "N",
                values: Values::Count {
                    min: 2,
                    max: 9_999,
                    default: 24,
                    of: |a| u64::from(a.beacon_bins),
                    set: |a, n| a.beacon_bins = count_u32(n),
                },
            },
            Param {
                flag: "--beacon-threshold",
                key: "beacon_threshold",
                help: "Beacons: score from which a candidate counts as a beacon (is_beacon)",
                value_name: "SCORE",
                values: Values::Number {
                    range: NumberRange::Share,
                    default: 0.8,
                    of: |a| a.beacon_threshold,
                    set: |a, x| a.beacon_threshold = x,
                },
            },
            Param {
                flag: "--beacon-weights",
                key: "beacon_weights",
                help: "Beacons: weights of the gap, bytes, bins and persistence sub-scores",
                value_name: "G,B,N,P",
                values: Values::Weights {
                    names: &["gaps", "bytes", "bins", "persistence"],
                    default: &[0.25; 4],
                    of: |a| &a.beacon_weights,
                    set: |a, w| a.beacon_weights = w,
                },
            },
            Param {
                flag: "--beacon-min-gap-score",
                key: "beacon_min_gap_score",
                help: "Beacons: gap sub-score a beacon needs at least; random (Poisson) timing scores about 0.5",
                value_name: "SCORE",
                values: Values::Number {
                    range: NumberRange::Share,
                    default: 0.8,
                    of: |a| a.beacon_min_gap_score,
                    set: |a, x| a.beacon_min_gap_score = x,
                },
            },
            Param {
                flag: "--beacon-min-span",
                key: "beacon_min_span_s",
                help: "Beacons: first to last connection a beacon must span; shorter regular pairs are candidates",
                value_name: "DURATION",
                values: Values::Duration {
                    default: Duration::from_secs(3600),
                    of: |a| a.beacon_min_span,
                    set: |a, v| a.beacon_min_span = v,
                },
            },
        ];
        &PARAMS
    }
    fn find(&self, conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
        detect_beacons(conn, run_id, scope, args)
    }
    fn top_rows(&self) -> TopRows {
        TopRows {
            columns: "src, dst, dst_port, proto, connections, round(median_interval_s, 2) AS interval_s, \
                      round(jitter_s, 2) AS jitter_s, round(gap_score, 3) AS gaps, round(bytes_score, 3) AS bytes, \
                      round(bins_score, 3) AS bins, round(persistence_score, 3) AS persistence, round(score, 3) AS score, status, reason",
            order: "CASE status WHEN 'beacon' THEN 0 WHEN 'candidate' THEN 1 ELSE 2 END, score DESC, connections DESC",
        }
    }
}

struct PairKey {
    src: String,
    dst: String,
    dst_port: Option<i32>,
    proto: String,
}

struct ScoredPair {
    pair: PairEvents,
    score: beacons::BeaconScore,
    first: i64,
    last: i64,
    status: beacons::Status,
    reason: Option<String>,
}

struct PairEvents {
    key: PairKey,
    starts: Vec<i64>,
    bytes: Vec<Option<f64>>,
    processes: Vec<String>,
}

fn detect_beacons(conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
    let events = count_starts(conn, scope, "")?;
    let min = i64::from(args.beacon_min_connections);
    let (below, single) = count_small_pairs(conn, scope, min)?;
    let pairs = read_pairs(conn, scope, min)?;
    let (scored, unscored) = score_pairs(pairs, scope, args);
    let mut marks = suppress::Suppressions::load(conn, "beacons")?;
    let stored = insert_beacons(conn, run_id, scope, &scored, &mut marks)?;
    let mut notes = Vec::new();
    if below > 0 {
        notes.push(format!(
            "{} with fewer than {min} connections not scored ({single} with a single connection)",
            plural(below, "pair", "pairs")
        ));
    }
    if unscored > 0 {
        notes.push(format!(
            "{} with fewer than {} gaps of a second or more not scored (connections within a second count as one)",
            plural(unscored, "pair", "pairs"),
            beacons::MIN_GAPS
        ));
    }
    if stored.missing_bytes > 0 {
        notes.push(format!(
            "{} without byte counts: scored without the bytes sub-score",
            plural(stored.missing_bytes, "candidate", "candidates")
        ));
    }
    if scope.resolution_s >= 1.0 {
        notes.push(format!(
            "live start times are known to the capture interval ({:.1} s); gaps shorter than a few intervals are unreliable",
            scope.resolution_s
        ));
    }
    let headline =
        match stored.top.map(|i| &scored[i]) {
            None if scored.is_empty() => format!("no pair with at least {min} connections (stored as an empty run)"),
            None => format!(
                "{} scored, 0 beacons, 0 candidates{}",
                plural(scored.len() as i64, "pair", "pairs"),
                marks.summary()
            ),
            Some(sp) => format!(
            "{} scored, {} beacons, {} candidates{}; top: {} -> {}:{} ({} connections every {:.1} s, score {:.2}, {}{})",
            plural(scored.len() as i64, "pair", "pairs"),
            stored.flagged,
            stored.candidates,
            marks.summary(),
            sp.pair.key.src,
            sp.pair.key.dst,
            sp.pair.key.dst_port.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            sp.pair.starts.len(),
            sp.score.median_interval_s,
            sp.score.score,
            sp.status.as_str(),
            sp.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ),
        };
    Ok(Found {
        events,
        rows: scored.len() as i64,
        headline,
        notes,
    })
}

/// Pairs with fewer than `min` connections (not scored), and those with a single one.
fn count_small_pairs(conn: &Connection, scope: &Scope, min: i64) -> Result<(i64, i64)> {
    conn.query_row(
        &format!(
            "SELECT count(*) FILTER (WHERE n < ?), count(*) FILTER (WHERE n = 1) FROM \
             (SELECT count(*) AS n FROM connection_events WHERE {STARTS_IN_WINDOW} GROUP BY src_h, dst_h, dst_p, proto)"
        ),
        duckdb::params![min, scope.source.as_str(), scope.start_us, scope.end_us],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(Error::sql)
}

/// Every pair with at least `min` connections: its start times, bytes sent and processes.
fn read_pairs(conn: &Connection, scope: &Scope, min: i64) -> Result<Vec<PairEvents>> {
    let sql = format!(
        "WITH e AS (SELECT src_h, dst_h, dst_p, proto, start_ts, bytes_out, process_name FROM connection_events \
                    WHERE {STARTS_IN_WINDOW}), \
              g AS (SELECT src_h, dst_h, dst_p, proto FROM e GROUP BY ALL HAVING count(*) >= ?) \
         SELECT e.src_h, e.dst_h, e.dst_p, e.proto, epoch_us(e.start_ts), e.bytes_out::DOUBLE, e.process_name \
         FROM e JOIN g ON e.src_h = g.src_h AND e.dst_h = g.dst_h AND e.dst_p IS NOT DISTINCT FROM g.dst_p AND e.proto = g.proto \
         ORDER BY 1, 2, 3, 4, 5"
    );
    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
    let mut result = stmt
        .query(duckdb::params![
            scope.source.as_str(),
            scope.start_us,
            scope.end_us,
            min
        ])
        .map_err(Error::sql)?;
    let mut pairs: Vec<PairEvents> = Vec::new();
    while let Some(r) = result.next().map_err(Error::sql)? {
        let key = PairKey {
            src: r.get(0).map_err(Error::sql)?,
            dst: r.get(1).map_err(Error::sql)?,
            dst_port: r.get(2).map_err(Error::sql)?,
            proto: r.get(3).map_err(Error::sql)?,
        };
        let same = pairs.last().is_some_and(|p| {
            p.key.src == key.src && p.key.dst == key.dst && p.key.dst_port == key.dst_port && p.key.proto == key.proto
        });
        if !same {
            pairs.push(PairEvents {
                key,
                starts: Vec::new(),
                bytes: Vec::new(),
                processes: Vec::new(),
            });
        }
        if let Some(p) = pairs.last_mut() {
            p.starts.push(r.get(4).map_err(Error::sql)?);
            p.bytes.push(r.get(5).map_err(Error::sql)?);
            if let Some(name) = r.get::<_, Option<String>>(6).map_err(Error::sql)? {
                if !p.processes.contains(&name) {
                    p.processes.push(name);
                }
            }
        }
    }
    Ok(pairs)
}

/// Scores and judges every pair, beacons first, then candidates, each by score; also the
/// number of pairs too irregular in count to score.
fn score_pairs(pairs: Vec<PairEvents>, scope: &Scope, args: &DetectRequest) -> (Vec<ScoredPair>, i64) {
    let w = &args.beacon_weights;
    let params = beacons::BeaconParams {
        window_start_us: scope.start_us,
        window_end_us: scope.end_us,
        resolution_s: scope.resolution_s,
        bins: args.beacon_bins as usize,
        weights: beacons::Weights([w[0], w[1], w[2], w[3]]),
    };
    let gates = beacons::Gates {
        threshold: args.beacon_threshold,
        min_gap_score: args.beacon_min_gap_score,
        min_span_s: args.beacon_min_span.as_secs_f64(),
        resolution_s: scope.resolution_s,
    };
    let mut unscored = 0;
    let mut scored: Vec<ScoredPair> = pairs
        .into_iter()
        .filter_map(|p| {
            // Live sockets sometimes lack counters (a short-lived or TIME_WAIT-only sighting):
            // score the bytes that are known, when they are most of them.
            let known: Vec<f64> = p.bytes.iter().flatten().copied().collect();
            let bytes = (known.len() >= 3 && 2 * known.len() >= p.bytes.len()).then_some(known);
            let Some(s) = beacons::score(&p.starts, bytes.as_deref(), &params) else {
                unscored += 1;
                return None;
            };
            let (first, last) = (
                p.starts.iter().copied().min().unwrap_or_default(),
                p.starts.iter().copied().max().unwrap_or_default(),
            );
            let (status, reason) = beacons::judge(&s, (last - first) as f64 / 1e6, &gates);
            Some(ScoredPair {
                pair: p,
                score: s,
                first,
                last,
                status,
                reason,
            })
        })
        .collect();
    scored.sort_by(|a, b| {
        a.status
            .rank()
            .cmp(&b.status.rank())
            .then_with(|| b.score.score.total_cmp(&a.score.score))
    });
    (scored, unscored)
}

/// What [`insert_beacons`] stored, for the summary: beacons and candidates not suppressed by an
/// analyst's mark, and the first such pair.
struct StoredBeacons {
    flagged: i64,
    candidates: i64,
    missing_bytes: i64,
    top: Option<usize>,
}

fn insert_beacons(
    conn: &Connection,
    run_id: i64,
    scope: &Scope,
    scored: &[ScoredPair],
    marks: &mut suppress::Suppressions,
) -> Result<StoredBeacons> {
    let mut insert = conn
        .prepare(
            "INSERT INTO beacons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(Error::sql)?;
    let (mut flagged, mut candidates) = (0, 0);
    let mut missing_bytes = 0;
    let mut top = None;
    for (i, sp) in scored.iter().enumerate() {
        let (p, s) = (&sp.pair, &sp.score);
        let is_beacon = sp.status == beacons::Status::Beacon;
        let suppressed_by = marks.check_row(
            &suppress::pair_key(&p.key.src, &p.key.dst, p.key.dst_port, &p.key.proto),
            sp.status != beacons::Status::Irregular,
        );
        if suppressed_by.is_none() {
            flagged += i64::from(is_beacon);
            candidates += i64::from(sp.status == beacons::Status::Candidate);
            top = top.or(Some(i));
        }
        missing_bytes += i64::from(s.bytes.is_none());
        let b = s.bytes.as_ref();
        insert
            .execute(duckdb::params![
                run_id,
                p.key.src,
                p.key.dst,
                p.key.dst_port,
                p.key.proto,
                p.starts.len() as i64,
                timestamp(sp.first),
                timestamp(sp.last),
                s.median_interval_s,
                s.jitter_s,
                s.jitter_ratio,
                s.gap_skew_score,
                s.gap_mad_score,
                s.gap_score,
                b.map(|b| b.skew_score),
                b.map(|b| b.mad_score),
                b.map(|b| b.small_score),
                b.map(|b| b.score),
                b.map(|b| b.median),
                s.bins_score,
                s.persistence_score,
                s.score,
                is_beacon,
                scope.resolution_s,
                (!p.processes.is_empty()).then(|| p.processes.join(",")),
                sp.status.as_str(),
                sp.reason,
                suppressed_by.is_some(),
                suppressed_by,
            ])
            .map_err(Error::sql)?;
    }
    Ok(StoredBeacons {
        flagged,
        candidates,
        missing_bytes,
        top,
    })
}

// --- bursts ------------------------------------------------------------------------------

/// Bins where a process's, host's or pair's connections or bytes exceed its own baseline.
pub struct Bursts;

impl Detector for Bursts {
    fn name(&self) -> &'static str {
        "bursts"
    }
    fn about(&self) -> &'static str {
        "Bins where a process's, host's or pair's connections or bytes exceed its own baseline"
    }
    fn params(&self) -> &'static [Param] {
        static PARAMS: [Param; 7] = [
            Param {
                flag: "--burst-bin",
                key: "burst_bin_s",
                help: "Bursts: bin width",
                value_name: "DURATION",
                values: Values::Duration {
                    default: Duration::from_secs(60),
                    of: |a| a.burst_bin,
                    set: |a, v| a.burst_bin = v,
                },
            },
            Param {
                flag: "--burst-k",
                key: "burst_k",
                help: "Bursts: k in the threshold median + k x max(1.4826 x MAD, floor)",
                value_name: "K",
                values: Values::Number {
                    range: NumberRange::NonNegative,
                    default: 5.0,
                    of: |a| a.burst_k,
                    set: |a, x| a.burst_k = x,
                },
            },
            Param {
                flag: "--burst-min-connections",
                key: "burst_min_connections",
                help: "Bursts: connections a bin needs at least to be part of a connection burst",
                value_name: "N",
                values: Values::Count {
                    min: 0,
                    max: u64::MAX,
                    default: 10,
                    of: |a| a.burst_min_connections,
                    set: |a, n| a.burst_min_connections = n,
                },
            },
            Param {
                flag: "--burst-min-bytes",
                key: "burst_min_bytes",
                help: "Bursts: bytes a bin needs at least to be part of a bytes burst",
                value_name: "BYTES",
                values: Values::Count {
                    min: 0,
                    max: u64::MAX,
                    default: 1_000_000,
                    of: |a| a.burst_min_bytes,
                    set: |a, n| a.burst_min_bytes = n,
                },
            },
            Param {
                flag: "--burst-floor-connections",
                key: "burst_floor_connections",
                help: "Bursts: least spread of a connections series, connections per bin (floor of 1.4826 x MAD)",
                value_name: "N",
                values: Values::Number {
                    range: NumberRange::Positive,
                    default: 1.0,
                    of: |a| a.burst_floor_connections,
                    set: |a, x| a.burst_floor_connections = x,
                },
            },
            Param {
                flag: "--burst-floor-bytes",
                key: "burst_floor_bytes",
                help: "Bursts: least spread of a bytes series, bytes per bin (floor of 1.4826 x MAD)",
                value_name: "BYTES",
                values: Values::Number {
                    range: NumberRange::Positive,
                    default: 1_000_000.0,
                    of: |a| a.burst_floor_bytes,
                    set: |a, x| a.burst_floor_bytes = x,
                },
            },
            Param {
                flag: "--burst-routine",
                key: "burst_routine",
                help: "Bursts: a level the entity reaches in this many other separate episodes (at half the peak or more) is its routine, not a burst; 0 turns the rule off",
                value_name: "N",
                values: Values::Count {
                    min: 0,
                    max: u64::MAX,
                    default: 3,
                    of: |a| a.burst_routine,
                    set: |a, n| a.burst_routine = n,
                },
            },
        ];
        &PARAMS
    }
    fn find(&self, conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
        detect_bursts(conn, run_id, scope, args)
    }
    fn top_rows(&self) -> TopRows {
        TopRows {
            columns: "entity_kind, entity, metric, start_ts, end_ts, round(peak, 1) AS peak, round(baseline, 1) AS baseline, \
                      round(threshold, 1) AS threshold, round(factor, 1) AS factor",
            order: "mads_above DESC, entity",
        }
    }
}

/// Bins a baseline needs at least: a median over fewer says little about "usual".
const MIN_BURST_BINS: usize = 10;

/// Bins a bursts run may use: a baseline over more would not fit in memory comfortably.
const MAX_BURST_BINS: usize = 500_000;

fn detect_bursts(conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
    let bin_us = i64::try_from(args.burst_bin.as_micros()).unwrap_or(i64::MAX / 4).max(1);
    let bins = bursts::Bins::new(scope.start_us, scope.end_us, bin_us);
    if bins.count > MAX_BURST_BINS {
        return Err(Error::Usage(format!(
            "the window holds {} bins of {:?}, more than {MAX_BURST_BINS}; use a larger --burst-bin or a shorter --window",
            bins.count, args.burst_bin
        )));
    }
    // A live connection is first seen at a snapshot, and it opened after the one before. When
    // there is none (the host's first snapshot: everything open when recording began) or that
    // one came after a pause (the capture was stopped: more than a bin and more than three of
    // the host's usual intervals earlier, so a capture slower than the bins is no pause), the
    // bin it opened in is not known: it counts no start, or every server start would be a burst
    // of connections. Its bytes still count, spread over its life as any connection's.
    let sql = format!(
        "WITH gaps AS (
             SELECT host, ts, epoch_us(ts - lag(ts) OVER (PARTITION BY host ORDER BY ts)) AS since_previous_us
             FROM (SELECT DISTINCT host, ts FROM snapshots)),
         usual AS (SELECT host, median(since_previous_us) AS interval_us FROM gaps GROUP BY host),
         sightings AS (
             SELECT g.host, g.ts,
                    g.since_previous_us IS NULL
                        OR g.since_previous_us > greatest(?, 3 * coalesce(u.interval_us, 0)) AS after_pause
             FROM gaps g JOIN usual u USING (host))
         SELECT e.src_h, e.dst_h, e.process_name, epoch_us(e.start_ts), epoch_us(e.end_ts),
                CASE WHEN e.bytes_out IS NULL AND e.bytes_in IS NULL THEN NULL
                     ELSE coalesce(e.bytes_out, 0) + coalesce(e.bytes_in, 0) END::DOUBLE,
                e.source = 'connections' AND coalesce(s.after_pause, false) AS start_unknown
         FROM (SELECT * FROM connection_events WHERE {STARTS_IN_WINDOW}) e
         LEFT JOIN sightings s ON s.host = e.host AND s.ts = e.start_ts"
    );
    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
    let mut result = stmt
        .query(duckdb::params![
            bin_us,
            scope.source.as_str(),
            scope.start_us,
            scope.end_us
        ])
        .map_err(Error::sql)?;
    let mut series: HashMap<(&'static str, String), bursts::Series> = HashMap::new();
    let mut events = 0;
    while let Some(r) = result.next().map_err(Error::sql)? {
        events += 1;
        let src: String = r.get(0).map_err(Error::sql)?;
        let dst: String = r.get(1).map_err(Error::sql)?;
        let process: Option<String> = r.get(2).map_err(Error::sql)?;
        let start: i64 = r.get(3).map_err(Error::sql)?;
        let end: i64 = r.get(4).map_err(Error::sql)?;
        let bytes: Option<f64> = r.get(5).map_err(Error::sql)?;
        let start_unknown: bool = r.get(6).map_err(Error::sql)?;
        let mut entities = vec![("host", src.clone()), ("pair", format!("{src} -> {dst}"))];
        if let Some(p) = process {
            entities.push(("process", p));
        }
        for key in entities {
            series
                .entry(key)
                .or_default()
                .add(&bins, start, end, bytes, !start_unknown);
        }
    }
    let mut found: Vec<(&'static str, String, &'static str, bursts::Burst)> = Vec::new();
    let enough_bins = bins.count >= MIN_BURST_BINS;
    let profile = bins.profile();
    let connections_rule = bursts::Rule {
        k: args.burst_k,
        floor: args.burst_floor_connections,
        min_peak: args.burst_min_connections as f64,
        routine: usize::try_from(args.burst_routine).unwrap_or(usize::MAX),
    };
    let bytes_rule = bursts::Rule {
        k: args.burst_k,
        floor: args.burst_floor_bytes,
        min_peak: args.burst_min_bytes as f64,
        routine: usize::try_from(args.burst_routine).unwrap_or(usize::MAX),
    };
    for ((kind, entity), s) in series.iter().filter(|_| enough_bins) {
        for b in bursts::find(&s.connections, &profile, &connections_rule) {
            found.push((kind, entity.clone(), "connections", b));
        }
        for b in bursts::find(&s.bytes, &profile, &bytes_rule) {
            found.push((kind, entity.clone(), "bytes", b));
        }
    }
    found.sort_by(|a, b| b.3.mads_above.total_cmp(&a.3.mads_above).then_with(|| a.1.cmp(&b.1)));
    let mut marks = suppress::Suppressions::load(conn, "bursts")?;
    let mut insert = conn
        .prepare("INSERT INTO bursts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .map_err(Error::sql)?;
    let mut alarms = Vec::new();
    for row in &found {
        let (kind, entity, metric, b) = row;
        let suppressed_by = marks.check(&suppress::burst_key(kind, entity, metric));
        if suppressed_by.is_none() {
            alarms.push(row);
        }
        insert
            .execute(duckdb::params![
                run_id,
                kind,
                entity,
                metric,
                bin_us as f64 / 1e6,
                timestamp(bins.start_of(b.first_bin)),
                timestamp(bins.start_of(b.last_bin + 1)),
                (b.last_bin - b.first_bin + 1) as i64,
                b.peak,
                b.total,
                b.baseline,
                b.mad,
                b.threshold,
                b.factor,
                b.mads_above,
                suppressed_by.is_some(),
                suppressed_by,
            ])
            .map_err(Error::sql)?;
    }
    let mut notes = Vec::new();
    if enough_bins && profile.by_hour_of_day() {
        notes.push(format!(
            "the window spans {} days or more: each bin is judged against the same UTC hour on the other days",
            bursts::MIN_DAYS_FOR_HOUR_OF_DAY
        ));
    }
    if !enough_bins {
        notes.push(format!(
            "the window holds only {} of {:?}, fewer than the {MIN_BURST_BINS} a baseline needs, so nothing was judged; \
             use a smaller --burst-bin",
            plural(bins.count as i64, "bin", "bins"),
            args.burst_bin
        ));
    }
    let headline = match alarms.first() {
        None if !enough_bins => "too few bins for a baseline (stored as an empty run)".to_string(),
        None if found.is_empty() => {
            "no burst above median + k x max(1.4826 x MAD, floor) (stored as an empty run)".to_string()
        }
        None => format!("no burst{}", marks.summary()),
        Some((kind, entity, metric, b)) => format!(
            "{} found{}; top: {kind} {entity}, {metric} peak {:.0} per bin against a baseline of {:.0}",
            plural(alarms.len() as i64, "burst", "bursts"),
            marks.summary(),
            b.peak,
            b.baseline
        ),
    };
    Ok(Found {
        events,
        rows: found.len() as i64,
        headline,
        notes,
    })
}

// --- long connections --------------------------------------------------------------------

/// Connections lasting longer than `--long-min`, graded.
pub struct LongConnections;

impl Detector for LongConnections {
    fn name(&self) -> &'static str {
        "long_connections"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["long-connections"]
    }
    fn about(&self) -> &'static str {
        "Connections lasting longer than --long-min, graded"
    }
    fn params(&self) -> &'static [Param] {
        static PARAMS: [Param; 1] = [Param {
            flag: "--long-min",
            key: "long_min_s",
            help: "Long connections: shortest duration reported (grades at 1x, 4x and 24x it)",
            value_name: "DURATION",
            values: Values::Duration {
                default: Duration::from_secs(3600),
                of: |a| a.long_min,
                set: |a, v| a.long_min = v,
            },
        }];
        &PARAMS
    }
    fn find(&self, conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
        detect_long_connections(conn, run_id, scope, args)
    }
    fn top_rows(&self) -> TopRows {
        TopRows {
            columns: "src, src_port, dst, dst_port, proto, process_name, start_ts, round(duration_s) AS duration_s, open, grade",
            order: "duration_s DESC",
        }
    }
}

fn detect_long_connections(conn: &Connection, run_id: i64, scope: &Scope, args: &DetectRequest) -> Result<Found> {
    let threshold_s = args.long_min.as_secs_f64();
    let overlap = "source = ? AND epoch_us(start_ts) <= ? AND epoch_us(end_ts) >= ?";
    let params = duckdb::params![scope.source.as_str(), scope.end_us, scope.start_us];
    let events: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM connection_events WHERE {overlap}"),
            params,
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT source, event_id, proto, src_h, src_p, dst_h, dst_p, process_name, pid, start_ts, end_ts, \
                    duration_s, open, bytes_out, bytes_in \
             FROM connection_events WHERE {overlap} AND duration_s >= ? ORDER BY duration_s DESC, start_ts"
        ))
        .map_err(Error::sql)?;
    let mut marks = suppress::Suppressions::load(conn, "long_connections")?;
    let mut insert = conn
        .prepare("INSERT INTO long_connections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .map_err(Error::sql)?;
    let mut result = stmt
        .query(duckdb::params![
            scope.source.as_str(),
            scope.end_us,
            scope.start_us,
            threshold_s
        ])
        .map_err(Error::sql)?;
    let (mut rows, mut alarms) = (0, 0);
    let mut top: Option<String> = None;
    let mut open = 0;
    while let Some(r) = result.next().map_err(Error::sql)? {
        let duration: f64 = r.get(11).map_err(Error::sql)?;
        let Some((grade, score)) = long_connections::grade(duration, threshold_s) else {
            continue;
        };
        let is_open: bool = r.get(12).map_err(Error::sql)?;
        let proto: String = r.get(2).map_err(Error::sql)?;
        let src: String = r.get(3).map_err(Error::sql)?;
        let dst: String = r.get(5).map_err(Error::sql)?;
        let dst_port: Option<i32> = r.get(6).map_err(Error::sql)?;
        let suppressed_by = marks.check(&suppress::pair_key(&src, &dst, dst_port, &proto));
        rows += 1;
        if suppressed_by.is_none() {
            alarms += 1;
            open += i64::from(is_open);
        }
        if top.is_none() && suppressed_by.is_none() {
            top = Some(format!(
                "{src} -> {dst}:{} for {:.1} h ({grade})",
                dst_port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                duration / 3600.0
            ));
        }
        let start: chrono::NaiveDateTime = r.get(9).map_err(Error::sql)?;
        let end: chrono::NaiveDateTime = r.get(10).map_err(Error::sql)?;
        insert
            .execute(duckdb::params![
                run_id,
                r.get::<_, String>(0).map_err(Error::sql)?,
                r.get::<_, String>(1).map_err(Error::sql)?,
                proto,
                src,
                r.get::<_, Option<i32>>(4).map_err(Error::sql)?,
                dst,
                dst_port,
                r.get::<_, Option<String>>(7).map_err(Error::sql)?,
                r.get::<_, Option<i32>>(8).map_err(Error::sql)?,
                start,
                end,
                duration,
                is_open,
                r.get::<_, Option<i64>>(13).map_err(Error::sql)?,
                r.get::<_, Option<i64>>(14).map_err(Error::sql)?,
                grade,
                score,
                suppressed_by.is_some(),
                suppressed_by,
            ])
            .map_err(Error::sql)?;
    }
    let headline = match top {
        None if rows == 0 => format!(
            "no connection lasted {} or longer (stored as an empty run)",
            humantime(threshold_s)
        ),
        None => format!("no long connection{}", marks.summary()),
        Some(top) => format!(
            "{} of {} or longer ({open} still open{}); longest: {top}",
            plural(alarms, "connection", "connections"),
            humantime(threshold_s),
            marks.summary()
        ),
    };
    Ok(Found {
        events,
        rows,
        headline,
        notes: Vec::new(),
    })
}

fn humantime(seconds: f64) -> String {
    if seconds >= 3600.0 && seconds % 3600.0 == 0.0 {
        format!("{} h", seconds / 3600.0)
    } else if seconds >= 60.0 && seconds % 60.0 == 0.0 {
        format!("{} min", seconds / 60.0)
    } else {
        format!("{seconds} s")
    }
}

/// The query printing a run's top rows, most notable first: rows an analyst's mark suppressed
/// last, each with the mark that suppressed it (`suppressed_by`, the last column).
pub fn top_rows_sql(detector: &dyn Detector, run_id: i64, top: usize) -> String {
    let TopRows { columns, order } = detector.top_rows();
    let table = detector.table();
    format!(
        "SELECT {columns}, suppressed_by FROM {table} WHERE run_id = {run_id} \
         ORDER BY coalesce(suppressed, false), {order} LIMIT {top}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// detector_runs.params holds what it held before the registry (keys and values).
    #[test]
    fn stored_params_are_unchanged() {
        let a = DetectRequest::defaults(DetectorName::All, Some(Duration::from_secs(3600)));
        let window = |mut own: serde_json::Value| {
            let m = own.as_object_mut().unwrap();
            m.insert("window_s".into(), serde_json::json!(3600.0));
            m.insert("since".into(), serde_json::Value::Null);
            m.insert("until".into(), serde_json::Value::Null);
            own
        };
        let expected = [
            serde_json::json!({"scan_window_s": 300.0, "scan_ports": 15, "scan_hosts": 25}),
            serde_json::json!({
                "beacon_min_connections": 4, "beacon_bins": 24, "beacon_threshold": 0.8,
                "beacon_weights": [0.25, 0.25, 0.25, 0.25], "beacon_min_gap_score": 0.8, "beacon_min_span_s": 3600.0,
            }),
            serde_json::json!({
                "burst_bin_s": 60.0, "burst_k": 5.0, "burst_min_connections": 10, "burst_min_bytes": 1_000_000,
                "burst_floor_connections": 1.0, "burst_floor_bytes": 1_000_000.0, "burst_routine": 3,
            }),
            serde_json::json!({"long_min_s": 3600.0}),
        ];
        for (d, own) in DETECTORS.iter().zip(expected) {
            assert_eq!(params_json(*d, &a), window(own), "{}", d.name());
        }
    }

    #[test]
    fn names_come_from_the_registry() {
        assert_eq!(detector("port-scans").unwrap().table(), "port_scans");
        assert_eq!(DetectorName::parse("ALL").unwrap(), DetectorName::All);
        let e = detector("long_connection").unwrap_err().to_string();
        assert!(
            e.contains("unknown detector 'long_connection'")
                && e.contains("port_scans, beacons, bursts, long_connections, or all"),
            "{e}"
        );
        let names: Vec<_> = DETECTORS.iter().map(|d| d.name()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
        // The JSON form: a detector's name, and an unknown one refused with the list.
        let json = serde_json::to_string(&DetectorName::parse("bursts").unwrap()).unwrap();
        assert_eq!(json, "\"bursts\"");
        assert_eq!(
            serde_json::from_str::<DetectorName>(&json).unwrap().detectors()[0].name(),
            "bursts"
        );
        let e = serde_json::from_str::<DetectorName>("\"scans\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown detector 'scans'") && e.contains("long_connections"),
            "{e}"
        );
        assert_eq!(DetectorName::All.detectors().len(), DETECTORS.len());
    }

    /// Ranges hold for every client: a request from a server's client is checked like the
    /// command line's flags.
    #[test]
    fn options_outside_their_ranges_are_refused() {
        let ok = DetectRequest::defaults(DetectorName::All, None);
        assert!(validate(&ok).is_ok());
        let refused = |change: &dyn Fn(&mut DetectRequest)| {
            let mut a = ok.clone();
            change(&mut a);
            validate(&a).unwrap_err().to_string()
        };
        assert!(refused(&|a| a.beacon_weights = vec![1.0, 1.0]).contains(
            "--beacon-weights needs four non-negative numbers (gaps,bytes,bins,persistence) with a positive sum, got [1.0, 1.0]"
        ));
        assert!(refused(&|a| a.beacon_weights = vec![0.0; 4]).contains("positive sum"));
        assert!(refused(&|a| a.beacon_threshold = 1.5).contains("--beacon-threshold must be between 0 and 1, got 1.5"));
        assert!(
            refused(&|a| a.beacon_min_gap_score = f64::NAN).contains("--beacon-min-gap-score must be between 0 and 1")
        );
        assert!(refused(&|a| a.burst_k = -1.0).contains("--burst-k must be 0 or more, got -1"));
        assert!(refused(&|a| a.burst_floor_bytes = 0.0).contains("--burst-floor-bytes must be more than 0, got 0"));
        assert!(refused(&|a| a.scan_ports = 1).contains("--scan-ports must be 2 or more, got 1"));
        assert!(
            refused(&|a| a.beacon_min_connections = 3).contains("--beacon-min-connections must be 4 or more, got 3")
        );
        assert!(refused(&|a| a.beacon_bins = 10_000).contains("--beacon-bins must be from 2 to 9999, got 10000"));
    }
}
