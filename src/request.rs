//! The request layer: every domain command as a plain, serializable request, and [`execute`],
//! the one function that runs a request against a store and returns a [`Reply`].
//!
//! The command line and the shell convert their clap arguments into a [`Request`] (`cli`), so no
//! clap type reaches a domain module; a server (`serve`) receives the same requests as JSON from
//! its clients and returns the same replies. A reply is data, not output: lines for stderr and
//! the queries whose rows to show, in order. The one place that prints is the shell's session,
//! which runs those queries wherever the database is (in this process, or on the server).
//!
//! May use every domain module (capture, ingest, analysis, detect, geo, report) and the store;
//! never `cli`, `shell` or `serve`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{self, ScoreRequest, TrainRequest};
use crate::capture::demo::DemoRequest;
use crate::capture::fixture::{FixtureSource, Recorder};
use crate::capture::packets::{self, PacketCaptureRequest};
use crate::capture::persist::Stored;
use crate::capture::run::{self, Observer, Pace, RunReport};
use crate::capture::system::{SocketBackend, SystemSource};
use crate::capture::Source;
use crate::detect::DetectRequest;
use crate::error::{Error, Result};
use crate::geo::{self, GeoRequest};
use crate::ingest::{self, ImportRequest, ReadAhead};
use crate::interrupt;
use crate::report;
use crate::store::export::ExportRequest;
use crate::store::Store;
use crate::watch::WatchRequest;

/// `capture`: snapshots of this host (or of a recording) at an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub interval: std::time::Duration,
    /// Store snapshots together once the oldest has waited this long (zero: each as taken).
    #[serde(default = "default_commit_every")]
    pub commit_every: std::time::Duration,
    pub duration: Option<std::time::Duration>,
    pub count: Option<u64>,
    /// Replay snapshots recorded with `record` instead of reading this host.
    pub replay: Option<std::path::PathBuf>,
    /// Also append every snapshot to this file as JSON lines.
    pub record: Option<std::path::PathBuf>,
    pub sockets: Option<SocketBackend>,
    /// How much of each process's command line is stored (default: the program only).
    #[serde(default)]
    pub cmdline: crate::capture::cmdline::CmdlinePolicy,
    /// Capture packets on an interface into flows instead of taking snapshots.
    #[serde(default)]
    pub packets: Option<PacketCaptureRequest>,
    /// End with what the detectors would flag in the captured snapshots (found without storing
    /// a run). The command line asks for it unless `--quiet`, whose summary nobody reads.
    #[serde(default)]
    pub flag_findings: bool,
}

fn default_commit_every() -> std::time::Duration {
    crate::capture::run::DEFAULT_COMMIT_EVERY
}

/// One domain command. The JSON form (`{"command": "detect", ...}`) is what a server's clients
/// send in the `netlens.request` Flight action (docs/serve.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Capture(CaptureRequest),
    Export(ExportRequest),
    Import(ImportRequest),
    Geo(GeoCommand),
    Demo(DemoRequest),
    Train(TrainRequest),
    Score(ScoreRequest),
    Calibrate(crate::analysis::calibration::CalibrateRequest),
    Retrain { target: Option<String> },
    Explain(crate::analysis::explain::ExplainRequest),
    Models { all: bool },
    Stages,
    Detect(DetectRequest),
    Watch(WatchRequest),
    Insights,
    Retain(crate::retention::RetainRequest),
    Feedback(crate::feedback::FeedbackRequest),
    Report(crate::report::html::ReportRequest),
}

/// `geo` (fill the table for every pending address) or `geo lookup` (these addresses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoCommand {
    #[serde(flatten)]
    pub sources: GeoRequest,
    /// Addresses to look up afresh; `None` fills the table for every pending address.
    pub lookup: Option<Vec<String>>,
}

impl Request {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Capture(_) => "capture",
            Request::Export(_) => "export",
            Request::Import(_) => "import",
            Request::Geo(_) => "geo",
            Request::Demo(_) => "demo",
            Request::Train(_) => "train",
            Request::Score(_) => "score",
            Request::Calibrate(_) => "calibrate",
            Request::Retrain { .. } => "retrain",
            Request::Explain(_) => "explain",
            Request::Models { .. } => "models",
            Request::Stages => "stages",
            Request::Detect(_) => "detect",
            Request::Watch(_) => "watch",
            Request::Insights => "insights",
            Request::Retain(_) => "retain",
            Request::Feedback(_) => "feedback",
            Request::Report(_) => "report",
        }
    }

    /// Every file the request names, to read or write.
    fn paths_mut(&mut self) -> Vec<&mut std::path::PathBuf> {
        match self {
            Request::Capture(c) => c
                .replay
                .iter_mut()
                .chain(c.record.iter_mut())
                .chain(c.packets.iter_mut().flat_map(|p| p.write_pcap.iter_mut()))
                .collect(),
            Request::Export(e) => vec![&mut e.out],
            Request::Import(ImportRequest::Pcap(p)) => p.files.iter_mut().collect(),
            Request::Import(ImportRequest::Zeek(z)) => z.files.iter_mut().collect(),
            Request::Import(ImportRequest::Csv(c)) => {
                std::iter::once(&mut c.file).chain(c.columns_file.iter_mut()).collect()
            }
            Request::Geo(g) => g.sources.mmdb.iter_mut().collect(),
            Request::Watch(w) => w.replay.iter_mut().collect(),
            Request::Report(r) => vec![&mut r.out],
            _ => Vec::new(),
        }
    }

    /// The same request with every file it names made absolute against `cwd`: a server reads
    /// and writes them, and does not share the client's working directory.
    pub fn with_absolute_paths(mut self, cwd: &std::path::Path) -> Self {
        for path in self.paths_mut() {
            if path.is_relative() {
                *path = cwd.join(&*path);
            }
        }
        self
    }

    /// True when the request reads or writes files (on the host that runs it).
    pub fn names_files(&self) -> bool {
        !self.clone().paths_mut().is_empty()
    }

    /// True when the request writes nothing to the database (it stores no run).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Models { .. } | Request::Stages | Request::Export(_) | Request::Insights | Request::Report(_)
        )
    }
}

/// What a command did, as data: shown in order by whoever asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub items: Vec<Item>,
    /// The command failed after some of its work was stored (a geolocation provider failing
    /// after the mmdb answers were written): shown after the items, and the command fails.
    pub failure: Option<String>,
}

/// One thing to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// A summary line for stderr; left out with `--quiet`.
    Summary(String),
    /// A warning or note for stderr; always shown.
    Warning(String),
    /// Rows to show: the result of `sql`, run after the command.
    Rows {
        sql: String,
        /// A heading shown above the rows in display modes (table, line, markdown).
        title: Option<String>,
        /// Part of the summary: left out with `--quiet`.
        summary: bool,
        /// Shown in display modes only (data modes get the summary lines).
        display_only: bool,
    },
}

impl Reply {
    fn summary(&mut self, line: impl Into<String>) {
        self.items.push(Item::Summary(line.into()));
    }

    fn warning(&mut self, line: impl Into<String>) {
        self.items.push(Item::Warning(line.into()));
    }

    fn rows(&mut self, sql: String) {
        self.items.push(Item::Rows {
            sql,
            title: None,
            summary: false,
            display_only: false,
        });
    }

    fn summary_rows(&mut self, sql: String, title: Option<String>, display_only: bool) {
        self.items.push(Item::Rows {
            sql,
            title,
            summary: true,
            display_only,
        });
    }
}

/// How a request's progress is shown while it runs: bars on this terminal, or nothing (a
/// server's client gets the reply at the end).
pub struct Context<'a> {
    /// Progress of capture and demo runs (snapshot counts, gaps).
    pub observer: &'a mut dyn Observer,
    /// Progress of imports.
    pub import_progress: ingest::Progress,
    /// Where `watch` shows its dashboard: a terminal's, or none (a server's clients cannot
    /// watch).
    pub watch: Option<&'a mut dyn crate::watch::WatchDisplay>,
    /// The first capture of an import, already being read.
    pub ahead: Option<ReadAhead>,
    /// The clock that stamps runs.
    pub clock: &'a dyn Fn() -> DateTime<Utc>,
    /// Notes to show while a command runs, not after it (`note: ...`: geo's wait for the
    /// provider's rate limit, an .mmdb of an unknown kind). The shell writes them on stderr; a
    /// server adds them to the reply's warnings.
    pub notice: &'a mut dyn FnMut(&str),
}

/// An observer that keeps capture gaps as warnings and shows nothing while it runs.
#[derive(Debug, Default)]
pub struct CollectGaps {
    pub gaps: Vec<String>,
}

impl Observer for CollectGaps {
    fn stored(&mut self, _stored: &Stored, _report: &RunReport) {}

    fn gap(&mut self, gap: &str) {
        self.gaps.push(format!("note: {gap}"));
    }
}

/// Runs one request against `store`.
pub fn execute(store: &Store, request: Request, ctx: &mut Context<'_>) -> Result<Reply> {
    let mut reply = Reply::default();
    // Ctrl-C cancels the SQL of the commands that store in one transaction or write a file in
    // place (a cancelled one stores and leaves nothing). Capture, watch, demo, a pcap import and
    // retain stop between their own steps instead, keeping what they finished.
    let cancellable = match &request {
        Request::Export(_)
        | Request::Train(_)
        | Request::Score(_)
        | Request::Calibrate(_)
        | Request::Retrain { .. }
        | Request::Explain(_)
        | Request::Detect(_)
        | Request::Insights
        | Request::Report(_) => true,
        Request::Import(i) => !matches!(i, ImportRequest::Pcap(_)),
        _ => false,
    };
    let _cancel_on_ctrl_c = cancellable.then(|| {
        interrupt::clear();
        interrupt::Running::new(store.conn().interrupt_handle())
    });
    match request {
        Request::Capture(c) => capture(store, c, ctx, &mut reply)?,
        Request::Export(e) => {
            let rows = store.export(&e)?;
            reply.summary(format!("exported {rows} rows to {}", e.out.display()));
        }
        Request::Import(i) => {
            let ahead = ctx.ahead.take();
            let result = ingest::run(store, i, &mut ctx.import_progress, ahead);
            for line in ctx.import_progress.take_lines() {
                if line.starts_with("warning: ") {
                    reply.warning(line);
                } else {
                    reply.summary(line);
                }
            }
            result?;
        }
        Request::Geo(g) => geo_command(store, g, (ctx.clock)(), &mut *ctx.notice, &mut reply)?,
        Request::Demo(d) => demo(store, d, ctx, &mut reply)?,
        Request::Train(t) if t.stage.eq_ignore_ascii_case("policy") => {
            train_policy(store, t, (ctx.clock)(), &mut reply)?
        }
        Request::Train(t) => {
            let summary = analysis::train(store, &t, (ctx.clock)())?;
            run_summary(&[summary], &mut reply);
        }
        Request::Score(s) => {
            let summary = analysis::score(store, &s, (ctx.clock)())?;
            run_summary(&[summary], &mut reply);
        }
        Request::Calibrate(c) => {
            let done = analysis::calibration::calibrate(store, &c, (ctx.clock)())?;
            reply.summary(format!(
                "calibrate model {}@{}: run {}, threshold {:.4} (the model's own {:.4}) on {} clean rows: {} of them above it (alarm rate {}), {} above the model's own",
                done.model,
                done.version,
                done.run_id,
                done.threshold,
                done.model_threshold,
                done.clean_rows,
                done.flagged_after,
                done.alarm_rate,
                done.flagged_before
            ));
        }
        Request::Retrain { target } => {
            let summaries = analysis::retrain(store, target.as_deref(), (ctx.clock)())?;
            run_summary(&summaries, &mut reply);
        }
        Request::Explain(e) => {
            let summary = analysis::explain::explain(store, &e, (ctx.clock)())?;
            for note in &summary.notes {
                reply.warning(note.clone());
            }
            reply.summary(format!(
                "explain model {}@{}{}: run {}, {} rows, importance ({}{}) on {} of them, reasons for the top {} rows",
                summary.model,
                summary.version,
                summary.explained_run.map(|r| format!(" (run {r})")).unwrap_or_default(),
                summary.run_id,
                summary.rows_in,
                summary.measure,
                summary
                    .baseline
                    .map(|b| format!(", baseline {b:.4}"))
                    .unwrap_or_default(),
                summary.sampled,
                summary.explained_rows
            ));
            reply.rows(analysis::explain::importance_sql(summary.run_id));
            if summary.explained_rows > 0 {
                reply.rows(analysis::explain::rows_sql(summary.run_id));
            }
        }
        Request::Models { all } => reply.rows(analysis::models_sql(all)),
        Request::Stages => reply.rows(analysis::stages_sql()),
        Request::Detect(d) => detect(store, &d, (ctx.clock)(), &mut reply)?,
        Request::Watch(w) => {
            let display = ctx.watch.as_deref_mut().ok_or_else(|| {
                Error::Usage(
                    "watch draws its dashboard on the terminal that runs it, and this one has none\n  \
                     hint: query latest_verdicts instead"
                        .to_string(),
                )
            })?;
            crate::watch::run(store, &w, display)?;
        }
        Request::Insights => {
            let findings = report::insights::insights(store)?;
            reply.rows(report::insights::findings_sql(&findings));
        }
        Request::Report(r) => {
            let (panels, failed) = report::html::write(store, &r, (ctx.clock)())?;
            reply.summary(format!("report: {panels} panels written to {}", r.out.display()));
            if failed > 0 {
                reply.warning(format!(
                    "{failed} panels failed; the report says which (each with its error)"
                ));
            }
        }
        Request::Feedback(mark) => {
            let id = crate::feedback::record(store, &mark, (ctx.clock)())?;
            reply.summary(format!(
                "feedback {id}: {} row {} of {} marked {}",
                mark.subject,
                mark.row_key,
                mark.run_id.map_or("every run".to_string(), |r| format!("run {r}")),
                mark.label.as_str()
            ));
        }
        Request::Retain(r) => {
            interrupt::clear();
            // A short breath between delete batches lets a server's snapshot commit between them.
            let pause = || {
                interrupt::sleep_until(std::time::Instant::now() + std::time::Duration::from_millis(20));
            };
            let summary = crate::retention::retain(store, &r, (ctx.clock)(), &interrupt::requested, &pause)?;
            reply.summary(summary.line());
            if summary.interrupted {
                return Err(Error::Interrupted);
            }
        }
    }
    Ok(reply)
}

fn capture(store: &Store, c: CaptureRequest, ctx: &mut Context<'_>, reply: &mut Reply) -> Result<()> {
    interrupt::clear();
    if let Some(p) = &c.packets {
        let report = packets::run(store, p)?;
        if report.stop_reason == "ctrl-c" {
            reply.warning("stopped by Ctrl-C; every flow is stored (the open ones as they were)");
        }
        for w in &report.import.warnings {
            reply.warning(format!("warning: {w}"));
        }
        if report.kernel_dropped.is_some_and(|d| d > 0) {
            reply.warning(format!(
                "warning: the kernel dropped {} packets the capture did not read in time; they are in no flow",
                report.kernel_dropped.unwrap_or(0)
            ));
        }
        reply.summary(packets::summary(&report, p));
        if report.failed {
            reply.failure = Some(format!("the packet capture stopped: {}", report.stop_reason));
        }
        return Ok(());
    }
    let source: Box<dyn Source> = match &c.replay {
        Some(path) => Box::new(FixtureSource::open(path)?),
        None => Box::new(SystemSource::new(
            c.sockets.unwrap_or_else(SocketBackend::platform_default),
        )?),
    };
    let mut source = crate::capture::cmdline::Trimmed::new(source, c.cmdline);
    let mut recorder = c.record.as_deref().map(Recorder::create).transpose()?;
    let pace = Pace {
        interval: c.interval,
        duration: c.duration,
        count: c.count,
        wait: c.replay.is_none(),
        commit_every: c.commit_every,
    };
    let report = run::run(store, &mut source, pace, recorder.as_mut(), ctx.clock, ctx.observer)?;
    if report.interrupted {
        reply.warning("stopped by Ctrl-C; every finished snapshot is stored");
    }
    capture_summary(store, &report, c.flag_findings, reply);
    Ok(())
}

/// The counts of a capture run, what it saw (display modes only), and what the detectors would
/// flag in it.
pub fn capture_summary(store: &Store, report: &RunReport, flag_findings: bool, reply: &mut Reply) {
    let (Some(first), Some(last)) = (report.first_snapshot_id, report.last_snapshot_id) else {
        reply.summary("no snapshot was taken");
        return;
    };
    let n = report.snapshots as f64;
    reply.summary(format!(
        "stored {} snapshots (ids {first}..{last}) in {:.1} s: {} socket rows, {} lifetimes opened, {} closed; \
         per snapshot: collect {:.1} ms, store {:.1} ms",
        report.snapshots,
        report.elapsed.as_secs_f64(),
        report.socket_rows,
        report.opened,
        report.closed,
        report.collect_ms / n,
        report.store_ms / n
    ));
    for (title, sql) in report::capture_summary(first, last) {
        reply.summary_rows(sql, Some(title.to_string()), true);
    }
    if flag_findings {
        detector_flags(store, first, last, reply);
    }
    reply.summary(
        "look further: `netlens detect all` flags scans, beacons, bursts and long connections; \
         `netlens serve --http 127.0.0.1:8787` draws it all in a browser",
    );
}

/// What every detector, at its default thresholds, would flag in the snapshots `first..=last`,
/// found without storing a run (so the dashboard's and `latest_*`'s runs stay the ones asked
/// for), and the command that stores it. A capture is stored whatever the detectors do: their
/// failure is a warning.
fn detector_flags(store: &Store, first: i64, last: i64, reply: &mut Reply) {
    use crate::detect::{DetectSource, DetectorName};
    let window = store.conn().query_row(
        "SELECT min(ts), max(ts) FROM snapshots WHERE snapshot_id BETWEEN ? AND ?",
        duckdb::params![first, last],
        |r| {
            Ok((
                r.get::<_, Option<NaiveDateTime>>(0)?,
                r.get::<_, Option<NaiveDateTime>>(1)?,
            ))
        },
    );
    let (since, until) = match window {
        Ok((Some(since), Some(until))) => (since, until),
        Ok(_) => return,
        Err(e) => {
            reply.warning(format!("the detectors did not look at this capture: {}", Error::sql(e)));
            return;
        }
    };
    let mut args = DetectRequest::defaults(DetectorName::All, None);
    args.on = DetectSource::Connections;
    args.since = Some(since);
    args.until = Some(until);
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    // A Ctrl-C that ended the capture is not one for the detectors.
    interrupt::clear();
    match crate::detect::flag(store, &args) {
        Ok(flagged) => {
            let total: i64 = flagged.iter().map(|f| f.rows).sum();
            reply.summary(format!(
                "detectors over this capture ({} .. {} UTC, default thresholds; nothing stored{}):",
                fmt(since),
                fmt(until),
                if total > 0 {
                    format!(
                        "; `netlens detect all --since '{}' --until '{}'` stores the rows",
                        fmt(since),
                        fmt(until)
                    )
                } else {
                    String::new()
                }
            ));
            for f in flagged {
                reply.summary(format!("  {}: {}", f.detector, f.headline));
            }
        }
        Err(Error::NoEvents { .. }) => {
            reply.summary("detectors over this capture: no connections in it to judge (only listening or idle sockets)")
        }
        Err(Error::Interrupted) => reply.warning("detectors over this capture: skipped (Ctrl-C)"),
        Err(e) => reply.warning(format!("detectors over this capture: not run: {e}")),
    }
}

fn demo(store: &Store, d: DemoRequest, ctx: &mut Context<'_>, reply: &mut Reply) -> Result<()> {
    use chrono::DurationRound;
    interrupt::clear();
    let now = (ctx.clock)();
    let end = now.duration_trunc(chrono::TimeDelta::minutes(1)).unwrap_or(now);
    let report = crate::capture::demo::run(store, &d, end, ctx.observer)?;
    reply.summary(format!(
        "demo: {} synthetic snapshots of host {} ({} socket rows, {} lifetimes) ending {}, and demo_traffic \
         ({} rows, {} anomalies); every row is marked synthetic (snapshots.source = 'demo', datasets.kind = 'demo')",
        report.capture.snapshots,
        crate::capture::demo::DEMO_HOST,
        report.capture.socket_rows,
        report.capture.opened,
        end.format("%Y-%m-%d %H:%M UTC"),
        report.traffic_rows,
        report.traffic_anomalies
    ));
    Ok(())
}

/// `geo` fills the geo table; `geo lookup` also shows the answers as rows. A provider that
/// failed for some addresses is reported after what was stored.
fn geo_command(
    store: &Store,
    g: GeoCommand,
    now: DateTime<Utc>,
    notice: &mut dyn FnMut(&str),
    reply: &mut Reply,
) -> Result<()> {
    let run = match &g.lookup {
        Some(ips) => {
            let run = geo::lookup(store, &g.sources, ips, now, notice)?;
            if !run.stored.is_empty() {
                reply.rows(geo::answers_query(&run.stored));
            }
            run
        }
        None => geo::fill(store, &g.sources, now, notice)?,
    };
    if !run.skipped.is_empty() {
        let shown: Vec<&str> = run.skipped.iter().take(5).map(String::as_str).collect();
        reply.warning(format!(
            "note: {} values in the address columns are not IP addresses and were skipped: {}{}",
            run.skipped.len(),
            shown.join(", "),
            if run.skipped.len() > shown.len() { ", ..." } else { "" }
        ));
    }
    reply.summary(geo::summary(&run));
    reply.failure = run.provider_error.map(|e| e.to_string());
    Ok(())
}

fn train_policy(store: &Store, t: TrainRequest, now: DateTime<Utc>, reply: &mut Reply) -> Result<()> {
    if !t.selection.features.is_empty() || t.selection.label.is_some() || t.selection.id.is_some() {
        return Err(Error::Usage(
            "policy chooses its features and keys itself; use --exclude to leave columns out".to_string(),
        ));
    }
    let request = analysis::policy::PolicyRequest::from_set(t.source, t.model, t.seed, t.selection.exclude, &t.set)?;
    let summary = analysis::policy::run(store, &request, now)?;
    reply.summary(format!(
        "policy: baseline of {} rows before {} (segments run {}, iforest run {}); judged {} rows: {}; {} high risk (run {})",
        summary.baseline_rows,
        request.clean_from.unwrap_or(summary.split),
        summary.segments.run_id,
        summary.iforest.run_id,
        summary.judged_rows,
        summary
            .verdicts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        summary.high_risk,
        summary.run_id
    ));
    if let Some(c) = &summary.calibration {
        reply.summary(format!(
            "  anomaly threshold calibrated on the clean window from {} to {} (run {}): {:.4} instead of {:.4}; {} of its {} rows above it, {} above the uncalibrated one",
            request.clean_from.map(|t| t.to_string()).unwrap_or_default(),
            summary.split,
            c.run_id,
            c.threshold,
            c.model_threshold,
            c.flagged_after,
            c.clean_rows,
            c.flagged_before
        ));
    }
    reply.rows(format!(
        "SELECT verdict, risk, src_ip, dst_ip, processes, reason FROM verdicts WHERE run_id = {} \
         ORDER BY risk DESC, score DESC, flow_id LIMIT 20",
        summary.run_id
    ));
    Ok(())
}

/// Summary lines, and the runs' model_runs rows (and evaluations) as a result.
fn run_summary(runs: &[analysis::RunSummary], reply: &mut Reply) {
    for run in runs {
        reply.summary(format!(
            "{} {} model {}@{}: run {}, {} rows{}",
            run.kind,
            run.stage,
            run.model,
            run.version,
            run.run_id,
            run.rows_in,
            run.into
                .as_deref()
                .map(|t| format!(", written with the source's columns to {t}"))
                .unwrap_or_default()
        ));
        if !run.skipped.is_empty() {
            reply.summary(format!("  not used as features: {}", run.skipped.join(", ")));
        }
        for note in &run.notes {
            reply.summary(format!("  {note}"));
        }
        if run.in_sample {
            reply.summary(
                "  evaluated in-sample: on the rows the model was fitted on, so the figures are optimistic; \
                 score the model on held-out rows for an honest estimate"
                    .to_string(),
            );
        }
    }
    let ids = runs.iter().map(|r| r.run_id.to_string()).collect::<Vec<_>>().join(", ");
    if ids.is_empty() {
        return;
    }
    reply.rows(format!(
        "SELECT run_id, kind, stage, model, version, rows_in, features, imputed, \
         round(load_ms, 1) AS load_ms, round(fit_ms, 1) AS fit_ms, round(score_ms, 1) AS score_ms, metrics \
         FROM model_runs WHERE run_id IN ({ids}) ORDER BY run_id"
    ));
    if runs.iter().any(|r| r.evaluated) {
        reply.rows(format!(
            "SELECT run_id, model, label_column, rows, positives, tp, fp, tn, fn, round(precision, 4) AS precision, \
             round(recall, 4) AS recall, round(f1, 4) AS f1, round(accuracy, 4) AS accuracy, round(roc_auc, 4) AS roc_auc, in_sample \
             FROM evaluation WHERE run_id IN ({ids}) ORDER BY run_id"
        ));
    }
}

/// Each detector run's summary line and top rows (titled when there are several).
fn detect(store: &Store, d: &DetectRequest, now: DateTime<Utc>, reply: &mut Reply) -> Result<()> {
    interrupt::clear();
    let summaries = crate::detect::run(store, d, now)?;
    let titled = summaries.len() > 1;
    for summary in summaries {
        reply.summary(summary.message.clone());
        if d.top == 0 || summary.rows == 0 {
            continue;
        }
        reply.summary_rows(
            crate::detect::top_rows_sql(summary.detector, summary.run_id, d.top),
            titled.then(|| summary.detector.table().to_string()),
            false,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON a third-party client sends is stable: tagged by command, fields by name.
    #[test]
    fn requests_travel_as_tagged_json() {
        let r = Request::Retrain {
            target: Some("kmeans".into()),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"command":"retrain","target":"kmeans"}"#);
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        let stages: Request = serde_json::from_str(r#"{"command":"stages"}"#).unwrap();
        assert_eq!(stages, Request::Stages);
        let err = serde_json::from_str::<Request>(r#"{"command":"format_disk"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    /// Every file a request names reaches the server as an absolute path; absolute ones stay.
    #[test]
    fn paths_are_made_absolute_for_the_server() {
        let cwd = std::path::Path::new("/home/analyst");
        let import = Request::Import(ImportRequest::Csv(ingest::csv::CsvImport {
            file: "data/kdd.csv".into(),
            table: None,
            columns: Vec::new(),
            columns_file: Some("/etc/netlens/names.txt".into()),
            no_header: false,
            append: false,
            replace: false,
        }))
        .with_absolute_paths(cwd);
        let Request::Import(ImportRequest::Csv(c)) = import else {
            panic!()
        };
        assert_eq!(c.file, std::path::PathBuf::from("/home/analyst/data/kdd.csv"));
        assert_eq!(c.columns_file, Some("/etc/netlens/names.txt".into()));
        let geo = Request::Geo(GeoCommand {
            sources: GeoRequest::offline(vec!["City.mmdb".into()]),
            lookup: None,
        })
        .with_absolute_paths(cwd);
        let Request::Geo(g) = geo else { panic!() };
        assert_eq!(
            g.sources.mmdb,
            vec![std::path::PathBuf::from("/home/analyst/City.mmdb")]
        );
    }

    /// Every request survives the trip to a server and back unchanged.
    #[test]
    fn every_kind_of_request_round_trips() {
        let detect = DetectRequest {
            until: chrono::NaiveDate::from_ymd_opt(2026, 11, 21).and_then(|d| d.and_hms_opt(8, 0, 0)),
            ..DetectRequest::defaults(
                crate::detect::DetectorName::All,
                Some(std::time::Duration::from_secs(3600)),
            )
        };
        let requests = vec![
            Request::Detect(detect),
            Request::Import(ImportRequest::Zeek(ingest::ZeekImport {
                files: vec!["/tmp/conn.log".into()],
            })),
            Request::Models { all: true },
            Request::Insights,
            Request::Retain(crate::retention::RetainRequest {
                raw: Some(std::time::Duration::from_secs(14 * 86_400)),
                rollups: None,
                bucket: crate::retention::RetainRequest::DEFAULT_BUCKET,
                batch: crate::retention::RetainRequest::DEFAULT_BATCH,
            }),
            Request::Geo(GeoCommand {
                sources: GeoRequest {
                    provider: geo::GeoProvider::IpApi,
                    ..GeoRequest::offline(vec!["a.mmdb".into()])
                },
                lookup: Some(vec!["192.0.2.1".into()]),
            }),
        ];
        for r in requests {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r, "{json}");
        }
    }
}
