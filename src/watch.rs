//! `netlens watch`: prototype 000's whole workflow in one command. Capture a baseline window,
//! train segments and the Isolation Forest on the flows active in it (the `policy` stage's
//! baseline), then keep capturing: every window's active flows are judged (verdicts) and a
//! terminal dashboard is redrawn (active flows, anomalies and their share, new flows, high-risk
//! flows, the riskiest flows with process and reason), until Ctrl-C or `--windows N`.
//!
//! Everything the dashboard shows is a query over the store, so it is all there afterwards
//! (`latest_verdicts`, `model_runs`). Off a terminal, one line per window replaces the redraw.
//! This module drives capture and analysis through their public functions and hands what to
//! show to the [`WatchDisplay`] the command layer provides; it never prints.

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};

use crate::analysis::policy::{self, Baseline, PolicyRequest, PolicySource};
use crate::capture::fixture::FixtureSource;
use crate::capture::persist::Stored;
use crate::capture::run::{self, Observer, Pace, RunReport};
use crate::capture::system::{SocketBackend, SystemSource};
use crate::capture::Source;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::report::insights::{verdict_counts, VerdictCounts};
use crate::store::Store;

/// Rows of the riskiest-flows table.
const TOP_FLOWS: usize = 10;

/// A `watch` run: the baseline, the window, the models' settings and where snapshots come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchRequest {
    pub baseline: Duration,
    /// Time between snapshots, and the width of each judged window.
    pub interval: Duration,
    /// Number of segments, or `None` for the elbow method's choice.
    pub segments: Option<usize>,
    /// Expected share of anomalies in the baseline, above 0 and at most 0.5.
    pub contamination: f64,
    pub seed: u64,
    /// Prefix of the stored models' names.
    pub model: String,
    /// Stop after judging this many windows.
    pub windows: Option<u64>,
    /// Replay a recording instead of reading this host.
    pub replay: Option<std::path::PathBuf>,
    pub sockets: Option<SocketBackend>,
}

/// Where `watch` shows itself. The command layer provides it (the shell: the dashboard on
/// standard output, status lines on stderr); this module never prints.
pub trait WatchDisplay {
    /// Whether each judged window redraws the whole dashboard (a terminal) or adds one line.
    fn redraws(&self) -> bool;
    /// A status line: the baseline starts or is trained, a capture gap, the end.
    fn status(&mut self, line: &str);
    /// One judged window: the dashboard's screen, or its line (ending in a newline).
    fn window(&mut self, text: &str) -> Result<()>;
}

/// What a `watch` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSummary {
    /// Windows judged (and shown).
    pub windows: u64,
}

/// Runs the watch loop until Ctrl-C, `--windows`, or a finite source runs dry.
pub fn run(store: &Store, args: &WatchRequest, display: &mut dyn WatchDisplay) -> Result<WatchSummary> {
    interrupt::clear();
    check(store, args)?;
    let live = args.replay.is_none();
    let source: Box<dyn Source> = match &args.replay {
        Some(path) => Box::new(FixtureSource::open(path)?),
        None => Box::new(SystemSource::new(
            args.sockets.unwrap_or_else(SocketBackend::platform_default),
        )?),
    };
    // Like capture's default: no process argument (where secrets are passed) is stored.
    let mut source: Box<dyn Source> = Box::new(crate::capture::cmdline::Trimmed::new(
        source,
        crate::capture::cmdline::CmdlinePolicy::default(),
    ));
    let width = TimeDelta::from_std(args.interval).map_err(|e| Error::Usage(format!("--interval: {e}")))?;
    let width_sql = format!("INTERVAL {} MILLISECOND", width.num_milliseconds());
    let features = PolicySource::open(store, &format!("SELECT * FROM active_flow_features_by({width_sql})"))?;
    let request = PolicyRequest {
        source: features.text.clone(),
        split: None,
        segments: args.segments,
        contamination: args.contamination,
        seed: args.seed,
        model: args.model.clone(),
        exclude: Vec::new(),
        clean_from: None,
        alarm_rate: crate::analysis::calibration::DEFAULT_ALARM_RATE,
    };
    let mut screen = Screen { display };

    // Phase 1: the baseline window, and the models trained on it.
    let Some((first_id, last_id)) = capture_baseline(store, source.as_mut(), args, &mut screen)? else {
        return Ok(WatchSummary { windows: 0 });
    };
    // The baseline is the windows this run captured, not whatever history the database holds.
    let baseline_from = window_of(store, first_id, &width_sql)?;
    let first_live = window_of(store, last_id, &width_sql)? + width;
    let baseline = policy::train_baseline(
        store,
        &features,
        features.rows_between(baseline_from, first_live),
        &request,
        Utc::now(),
    )?;
    screen.display.status(&format!(
        "watch: baseline of {} flow-windows, {} segments, anomaly threshold {:.3}; judging every {:?}",
        baseline.rows,
        baseline.k.map_or("?".to_string(), |k| k.to_string()),
        baseline.threshold,
        args.interval
    ));

    // Phase 2: each window judged and shown.
    let judging = Judging {
        store,
        args,
        live,
        width_sql: &width_sql,
        features: &features,
        request: &request,
        baseline: &baseline,
        first_live,
    };
    let windows = judging.judge_windows(source.as_mut(), &mut screen)?;
    screen.display.status(&format!(
        "watch: judged {windows} windows; everything shown is stored (SELECT * FROM latest_verdicts; .insights)"
    ));
    Ok(WatchSummary { windows })
}

fn check(store: &Store, args: &WatchRequest) -> Result<()> {
    if store.is_read_only() {
        return Err(Error::Usage(
            "watch captures and stores verdicts; it cannot run on a --read-only database\n  hint: drop --read-only"
                .to_string(),
        ));
    }
    if args.interval < Duration::from_secs(1) {
        return Err(Error::Usage(format!(
            "watch --interval {:?} is shorter than a window can be (1s)",
            args.interval
        )));
    }
    Ok(())
}

/// Captures the baseline window; the first and last snapshot it stored, or `None` when Ctrl-C
/// stopped it (its snapshots are stored, nothing is trained).
fn capture_baseline(
    store: &Store,
    source: &mut dyn Source,
    args: &WatchRequest,
    screen: &mut Screen<'_>,
) -> Result<Option<(i64, i64)>> {
    let live = args.replay.is_none();
    let baseline_snapshots = (args.baseline.as_secs_f64() / args.interval.as_secs_f64())
        .round()
        .max(2.0) as u64;
    screen.display.status(&format!(
        "watch: capturing a {:?} baseline ({baseline_snapshots} snapshots every {:?}){}",
        args.baseline,
        args.interval,
        if live { "; Ctrl-C stops" } else { "" }
    ));
    let (first_id, last_id) = if live {
        let pace = Pace {
            interval: args.interval,
            duration: None,
            count: Some(baseline_snapshots),
            wait: true,
            commit_every: crate::capture::run::DEFAULT_COMMIT_EVERY,
        };
        let report = run::run(store, source, pace, None, &Utc::now, screen)?;
        if report.interrupted {
            screen
                .display
                .status("stopped during the baseline; its snapshots are stored, nothing was trained");
            return Ok(None);
        }
        (report.first_snapshot_id, report.last_snapshot_id)
    } else {
        replay_baseline(store, source, args.baseline, screen)?
    };
    match (first_id, last_id) {
        (Some(first), Some(last)) => Ok(Some((first, last))),
        _ => Err(Error::Usage("the baseline took no snapshot".to_string())),
    }
}

/// What judging the windows after the baseline needs.
struct Judging<'a> {
    store: &'a Store,
    args: &'a WatchRequest,
    live: bool,
    width_sql: &'a str,
    features: &'a PolicySource,
    request: &'a PolicyRequest,
    baseline: &'a Baseline,
    /// Start of the first window after the baseline.
    first_live: NaiveDateTime,
}

impl Judging<'_> {
    /// Each window is judged once its snapshots are in, i.e. when a snapshot of a later window
    /// arrives (or the recording ends), and shown; returns how many were judged.
    fn judge_windows(&self, source: &mut dyn Source, screen: &mut Screen<'_>) -> Result<u64> {
        let (store, args) = (self.store, self.args);
        let mut windows = 0u64;
        // Set by the first snapshot after the baseline: a recording's next snapshot may lie
        // windows later, and the windows in between hold nothing to judge.
        let mut window_start: Option<NaiveDateTime> = None;
        loop {
            if interrupt::requested() {
                break;
            }
            let pace = Pace {
                interval: args.interval,
                duration: None,
                count: Some(1),
                wait: false,
                commit_every: Duration::ZERO,
            };
            let tick = Instant::now();
            let report = run::run(store, source, pace, None, &Utc::now, screen)?;
            let (rows_sql, next_start) = match report.last_snapshot_id {
                Some(id) => {
                    let current = window_of(store, id, self.width_sql)?;
                    let start = *window_start.get_or_insert(current.max(self.first_live));
                    if current <= start {
                        // Still inside the window being filled.
                        if self.live && interrupt::sleep_until(tick + args.interval) {
                            break;
                        }
                        continue;
                    }
                    (self.features.rows_between(start, current), Some(current))
                }
                // The recording ended: judge what its last window holds, then stop.
                None => match window_start {
                    Some(start) => (self.features.rows_from(start), None),
                    None => break,
                },
            };
            let judged_window = window_start.unwrap_or(self.first_live);
            windows += u64::from(self.judge_and_show(&rows_sql, judged_window, screen)?);
            let Some(next_start) = next_start else {
                screen.display.status("watch: the recording ended");
                break;
            };
            window_start = Some(next_start);
            if args.windows.is_some_and(|n| windows >= n) {
                break;
            }
            if self.live && interrupt::sleep_until(tick + args.interval) {
                break;
            }
        }
        Ok(windows)
    }

    /// Judges one window's rows and shows the dashboard; false when it held no active flow.
    fn judge_and_show(&self, rows_sql: &str, window: NaiveDateTime, screen: &mut Screen<'_>) -> Result<bool> {
        let redraws = screen.display.redraws();
        match policy::judge(self.store, self.baseline, rows_sql, self.request, Utc::now())? {
            Some(judged) => {
                let view = Dashboard::read(self.store, judged.run_id)?;
                let text = if redraws {
                    view.screen(self.baseline, window, self.args)
                } else {
                    view.line(window)
                };
                screen.display.window(&text)?;
                Ok(true)
            }
            None if !redraws => {
                screen.display.window(&format!("{window} no active flows\n"))?;
                Ok(false)
            }
            None => Ok(false),
        }
    }
}

/// A recording's baseline is measured in recorded time, not in snapshots: snapshots are stored
/// until one is `baseline` after the first (recordings need not match `--interval`).
fn replay_baseline(
    store: &Store,
    source: &mut dyn Source,
    baseline: Duration,
    screen: &mut Screen<'_>,
) -> Result<(Option<i64>, Option<i64>)> {
    let one = Pace {
        interval: Duration::from_secs(1),
        duration: None,
        count: Some(1),
        wait: false,
        commit_every: Duration::ZERO,
    };
    let baseline = TimeDelta::from_std(baseline).map_err(|e| Error::Usage(format!("--baseline: {e}")))?;
    let (mut first, mut last, mut first_ts) = (None, None, None);
    loop {
        let report = run::run(store, source, one, None, &Utc::now, screen)?;
        let Some(id) = report.last_snapshot_id else { break };
        let ts: NaiveDateTime = store
            .conn()
            .query_row("SELECT ts FROM snapshots WHERE snapshot_id = ?", [id], |r| r.get(0))
            .map_err(Error::sql)?;
        first.get_or_insert(id);
        last = Some(id);
        let start = *first_ts.get_or_insert(ts);
        if ts - start >= baseline || interrupt::requested() {
            break;
        }
    }
    Ok((first, last))
}

/// Start of the window holding snapshot `id`, computed by DuckDB's own `time_bucket` so it
/// matches the windows of `active_flow_features_by` (whose origin is not the Unix epoch).
fn window_of(store: &Store, id: i64, width_sql: &str) -> Result<NaiveDateTime> {
    store
        .conn()
        .query_row(
            &format!("SELECT time_bucket({width_sql}, ts) FROM snapshots WHERE snapshot_id = ?"),
            [id],
            |r| r.get(0),
        )
        .map_err(Error::sql)
}

/// The capture loop's observer during `watch`: gaps become status lines.
struct Screen<'a> {
    display: &'a mut dyn WatchDisplay,
}

impl Observer for Screen<'_> {
    fn stored(&mut self, _stored: &Stored, _report: &RunReport) {}
    fn gap(&mut self, gap: &str) {
        self.display.status(&format!("note: {gap}"));
    }
}

/// What one window's redraw shows, read back from the store.
struct Dashboard {
    counts: VerdictCounts,
    top: Vec<(i64, String, String, String, String)>,
}

impl Dashboard {
    fn read(store: &Store, run_id: i64) -> Result<Self> {
        let conn = store.conn();
        let counts = verdict_counts(store, run_id)?;
        let mut stmt = conn
            .prepare(
                "SELECT risk, verdict, src_ip || ' -> ' || dst_ip, coalesce(processes, ''), reason
                 FROM verdicts WHERE run_id = ? ORDER BY risk DESC, score DESC, flow_id LIMIT ?",
            )
            .map_err(Error::sql)?;
        let top = stmt
            .query_map(duckdb::params![run_id, TOP_FLOWS as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(Error::sql)?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::sql)?;
        Ok(Dashboard { counts, top })
    }

    fn share(&self) -> f64 {
        if self.counts.flows == 0 {
            0.0
        } else {
            100.0 * self.counts.anomalies as f64 / self.counts.flows as f64
        }
    }

    /// The whole screen (clearing the terminal first).
    fn screen(&self, baseline: &Baseline, window: NaiveDateTime, args: &WatchRequest) -> String {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["risk", "verdict", "flow", "process", "reason"]);
        for (risk, verdict, flow, process, reason) in &self.top {
            table.add_row(vec![
                Cell::new(risk),
                Cell::new(verdict),
                Cell::new(flow),
                Cell::new(process),
                Cell::new(reason),
            ]);
        }
        format!(
            "\x1b[2J\x1b[H netlens watch  window {window} UTC (every {:?})  Ctrl-C stops\n \
             baseline: {} flow-windows, {} segments, threshold {:.3}, contamination {}\n\n \
             Active flows {:>5}   Anomalies {:>4} ({:.1}%)   New flows {:>4}   Segment drift {:>4}   High risk {:>4}\n\n\
             {table}\n",
            args.interval,
            baseline.rows,
            baseline.k.map_or("?".to_string(), |k| k.to_string()),
            baseline.threshold,
            args.contamination,
            self.counts.flows,
            self.counts.anomalies,
            self.share(),
            self.counts.new_flows,
            self.counts.drift,
            self.counts.high_risk,
        )
    }

    /// One line for the window, off a terminal.
    fn line(&self, window: NaiveDateTime) -> String {
        let top = self
            .top
            .first()
            .map(|(risk, verdict, flow, process, _)| format!(" top: {flow} ({verdict}, risk {risk}, {process})"))
            .unwrap_or_default();
        format!(
            "{window} active={} anomalies={} ({:.1}%) new={} drift={} high_risk={}{top}\n",
            self.counts.flows,
            self.counts.anomalies,
            self.share(),
            self.counts.new_flows,
            self.counts.drift,
            self.counts.high_risk
        )
    }
}
