//! `netlens watch`: prototype 000's whole workflow in one command. Capture a baseline window,
//! train segments and the Isolation Forest on the flows active in it (the `policy` stage's
//! baseline), then keep capturing: every window's active flows are judged (verdicts) and a
//! terminal dashboard is redrawn (active flows, anomalies and their share, new flows, high-risk
//! flows, the riskiest flows with process and reason), until Ctrl-C or `--windows N`.
//!
//! Everything the dashboard shows is a query over the store, so it is all there afterwards
//! (`latest_verdicts`, `model_runs`). Off a terminal, one line per window replaces the redraw.
//! This module drives capture and analysis through their public functions and only prints.

use std::io::{IsTerminal, Write};
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

/// Runs the watch loop until Ctrl-C, `--windows`, or a finite source runs dry.
pub fn run(store: &Store, args: &WatchRequest) -> Result<()> {
    interrupt::clear();
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
    };
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();

    // Phase 1: the baseline window.
    let baseline_snapshots = (args.baseline.as_secs_f64() / args.interval.as_secs_f64())
        .round()
        .max(2.0) as u64;
    eprintln!(
        "watch: capturing a {:?} baseline ({baseline_snapshots} snapshots every {:?}){}",
        args.baseline,
        args.interval,
        if live { "; Ctrl-C stops" } else { "" }
    );
    let mut quiet = Quiet;
    let (first_id, last_id) = if live {
        let pace = Pace {
            interval: args.interval,
            duration: None,
            count: Some(baseline_snapshots),
            wait: true,
        };
        let report = run::run(store, source.as_mut(), pace, None, &Utc::now, &mut quiet)?;
        if report.interrupted {
            eprintln!("stopped during the baseline; its snapshots are stored, nothing was trained");
            return Ok(());
        }
        (report.first_snapshot_id, report.last_snapshot_id)
    } else {
        replay_baseline(store, source.as_mut(), args.baseline, &mut quiet)?
    };
    let (Some(first_id), Some(last_id)) = (first_id, last_id) else {
        return Err(Error::Usage("the baseline took no snapshot".to_string()));
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
    eprintln!(
        "watch: baseline of {} flow-windows, {} segments, anomaly threshold {:.3}; judging every {:?}",
        baseline.rows,
        baseline.k.map_or("?".to_string(), |k| k.to_string()),
        baseline.threshold,
        args.interval
    );

    // Phase 2: each window is judged once its snapshots are in, i.e. when a snapshot of a later
    // window arrives (or the recording ends).
    let mut windows = 0u64;
    // Set by the first snapshot after the baseline: a recording's next snapshot may lie windows
    // later, and the windows in between hold nothing to judge.
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
        };
        let tick = Instant::now();
        let report = run::run(store, source.as_mut(), pace, None, &Utc::now, &mut quiet)?;
        let (rows_sql, next_start) = match report.last_snapshot_id {
            Some(id) => {
                let current = window_of(store, id, &width_sql)?;
                let start = *window_start.get_or_insert(current.max(first_live));
                if current <= start {
                    // Still inside the window being filled.
                    if live && interrupt::sleep_until(tick + args.interval) {
                        break;
                    }
                    continue;
                }
                (features.rows_between(start, current), Some(current))
            }
            // The recording ended: judge what its last window holds, then stop.
            None => match window_start {
                Some(start) => (features.rows_from(start), None),
                None => break,
            },
        };
        let judged_window = window_start.unwrap_or(first_live);
        match policy::judge(store, &baseline, &rows_sql, &request, Utc::now())? {
            Some(judged) => {
                windows += 1;
                let view = Dashboard::read(store, judged.run_id)?;
                if terminal {
                    view.redraw(&mut out, &baseline, judged_window, args)?;
                } else {
                    view.line(&mut out, judged_window)?;
                }
            }
            None if !terminal => writeln!(out, "{judged_window} no active flows").map_err(io_error)?,
            None => {}
        }
        let Some(next_start) = next_start else {
            eprintln!("watch: the recording ended");
            break;
        };
        window_start = Some(next_start);
        if args.windows.is_some_and(|n| windows >= n) {
            break;
        }
        if live && interrupt::sleep_until(tick + args.interval) {
            break;
        }
    }
    eprintln!("watch: judged {windows} windows; everything shown is stored (SELECT * FROM latest_verdicts; .insights)");
    Ok(())
}

/// A recording's baseline is measured in recorded time, not in snapshots: snapshots are stored
/// until one is `baseline` after the first (recordings need not match `--interval`).
fn replay_baseline(
    store: &Store,
    source: &mut dyn Source,
    baseline: Duration,
    quiet: &mut Quiet,
) -> Result<(Option<i64>, Option<i64>)> {
    let one = Pace {
        interval: Duration::from_secs(1),
        duration: None,
        count: Some(1),
        wait: false,
    };
    let baseline = TimeDelta::from_std(baseline).map_err(|e| Error::Usage(format!("--baseline: {e}")))?;
    let (mut first, mut last, mut first_ts) = (None, None, None);
    loop {
        let report = run::run(store, source, one, None, &Utc::now, quiet)?;
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

struct Quiet;

impl Observer for Quiet {
    fn stored(&mut self, _stored: &Stored, _report: &RunReport) {}
    fn gap(&mut self, gap: &str) {
        eprintln!("note: {gap}");
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Io {
        path: "standard output".into(),
        source: e,
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

    fn redraw(
        &self,
        out: &mut impl Write,
        baseline: &Baseline,
        window: NaiveDateTime,
        args: &WatchRequest,
    ) -> Result<()> {
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
        let text = format!(
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
        );
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(io_error)
    }

    fn line(&self, out: &mut impl Write, window: NaiveDateTime) -> Result<()> {
        let top = self
            .top
            .first()
            .map(|(risk, verdict, flow, process, _)| format!(" top: {flow} ({verdict}, risk {risk}, {process})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{window} active={} anomalies={} ({:.1}%) new={} drift={} high_risk={}{top}",
            self.counts.flows,
            self.counts.anomalies,
            self.share(),
            self.counts.new_flows,
            self.counts.drift,
            self.counts.high_risk
        )
        .map_err(io_error)
    }
}
