//! The analyst's side: a [`Session`] runs SQL and dot commands against the store and prints
//! results. The interactive shell (`repl`), one-shot `--query`/`-f` runs, piped stdin and
//! `.read` all go through the same [`Session::feed_line`], so a script behaves the same
//! everywhere. Domain commands (`capture`, `export`) are dispatched here for both the command
//! line and the shell, from the one clap grammar in `cli`.

pub mod repl;
pub mod split;
pub mod watch;

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use clap::{CommandFactory, Parser};

use crate::analysis;
use crate::capture::fixture::{FixtureSource, Recorder};
use crate::capture::run::{self, Observer, Pace, RunReport};
use crate::capture::system::{SocketBackend, SystemSource};
use crate::capture::Source;
use crate::cli::{
    CaptureArgs, DemoArgs, DetectArgs, DomainCommand, DotCommand, DotLine, ExportArgs, GeoArgs, GeoCommand,
    InsightsArgs, OutputMode, RetrainArgs, ScoreArgs, TrainArgs,
};
use crate::error::{Error, Result};
use crate::geo;
use crate::interrupt;
use crate::output::{render, RenderOptions};
use crate::report;
use crate::store::export::{ExportFormat, ExportRequest, ExportSource};
use crate::store::snapshot::Stored;
use crate::store::{quote_literal, Store, IN_THIS_DATABASE};
use split::{is_blank, split};

/// Output settings a session carries (the dot commands change them).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub mode: OutputMode,
    pub headers: bool,
    pub timer: bool,
    pub maxrows: usize,
    pub bail: bool,
}

impl Settings {
    /// Table on a terminal, CSV otherwise, like other SQL shells.
    pub fn for_stdout() -> Self {
        Settings {
            mode: if std::io::stdout().is_terminal() {
                OutputMode::Table
            } else {
                OutputMode::Csv
            },
            headers: true,
            timer: false,
            maxrows: 1000,
            bail: false,
        }
    }
}

/// What to do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `.quit`, or the reader of our output went away.
    Quit,
    /// A script stopped early: `--bail`/`.bail on` after an error, or Ctrl-C.
    Stop,
}

/// A redirected output (`.output FILE` or `.once FILE`).
struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FileSink {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(FileSink {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// One store, its output settings and the error count.
pub struct Session {
    store: Store,
    pub settings: Settings,
    output: Option<FileSink>,
    once: Option<FileSink>,
    interactive: bool,
    failures: u64,
    read_depth: usize,
}

const MAX_READ_DEPTH: usize = 16;

impl Session {
    /// A session over an open store. `interactive` sessions keep going after Ctrl-C.
    pub fn new(store: Store, settings: Settings, interactive: bool) -> Self {
        Session {
            store,
            settings,
            output: None,
            once: None,
            interactive,
            failures: 0,
            read_depth: 0,
        }
    }

    /// The store, for completion and tests.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Statements and commands that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Runs a whole script: SQL statements and dot commands, then any unterminated last
    /// statement.
    pub fn run_script(&mut self, text: &str) -> Flow {
        let mut pending = String::new();
        for line in text.lines() {
            let flow = self.feed_line(&mut pending, line);
            if flow != Flow::Continue {
                return flow;
            }
        }
        self.finish(&mut pending)
    }

    /// Runs what is left in `pending` even without a closing `;`.
    pub fn finish(&mut self, pending: &mut String) -> Flow {
        let rest = std::mem::take(pending);
        if is_blank(&rest) {
            return Flow::Continue;
        }
        self.statement(rest.trim())
    }

    /// Takes one input line. A line starting with `.` outside a statement is a dot command;
    /// other lines accumulate in `pending` until a `;` completes statements.
    pub fn feed_line(&mut self, pending: &mut String, line: &str) -> Flow {
        if is_blank(pending) && line.trim_start().starts_with('.') {
            pending.clear();
            return self.dot(line.trim_start());
        }
        pending.push_str(line);
        pending.push('\n');
        let parts = split(pending);
        *pending = parts.rest;
        for stmt in parts.statements {
            let flow = self.statement(&stmt);
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    fn statement(&mut self, sql: &str) -> Flow {
        let result = self.execute_sql(sql);
        self.settle(result)
    }

    /// Prints an error and decides whether to go on.
    fn settle(&mut self, result: Result<()>) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(e) if e.is_broken_pipe() => Flow::Quit,
            Err(Error::Interrupted) => {
                self.failures += 1;
                eprintln!("Interrupted");
                if self.interactive && self.read_depth == 0 {
                    Flow::Continue
                } else {
                    Flow::Stop
                }
            }
            Err(e) => {
                self.failures += 1;
                eprintln!("Error: {e}");
                if self.store.is_detached() {
                    // Nothing more can be read or stored: going on would only fail, or write
                    // into DuckDB's throw-away in-memory catalog.
                    return Flow::Quit;
                }
                if self.settings.bail {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
        }
    }

    fn render_options(&self) -> RenderOptions {
        let to_terminal = self.output.is_none() && self.once.is_none() && std::io::stdout().is_terminal();
        RenderOptions {
            mode: self.settings.mode,
            headers: self.settings.headers,
            maxrows: self.settings.maxrows,
            width: if to_terminal {
                comfy_table::Table::new().width()
            } else {
                None
            },
        }
    }

    /// Runs one SQL statement and prints its result.
    pub fn execute_sql(&mut self, sql: &str) -> Result<()> {
        interrupt::clear();
        let started = Instant::now();
        let opts = self.render_options();
        let conn = self.store.conn();
        let mut stmt = conn.prepare(sql).map_err(Error::sql)?;
        let _running = interrupt::Running::new(conn.interrupt_handle());
        let stream = stmt.stream_arrow([]).map_err(Error::sql)?;
        let schema = stream.get_schema();
        if is_row_count_only(sql, &schema) {
            for batch in stream {
                batch.map_err(Error::sql)?;
            }
            self.report_time(started);
            return Ok(());
        }
        let once = self.once.take();
        let result = match (once, self.output.as_mut()) {
            (Some(mut sink), _) => {
                let r = render(&schema, stream.map(|b| b.map_err(Error::sql)), opts, &mut sink.out);
                r.and_then(|rows| sink.finish().map(|_| rows))
            }
            (None, Some(sink)) => render(&schema, stream.map(|b| b.map_err(Error::sql)), opts, &mut sink.out),
            (None, None) => {
                let mut stdout = std::io::stdout().lock();
                render(&schema, stream.map(|b| b.map_err(Error::sql)), opts, &mut stdout)
                    .and_then(|rows| stdout.flush().map(|_| rows).map_err(Error::Output))
            }
        };
        result?;
        self.report_time(started);
        Ok(())
    }

    fn report_time(&self, started: Instant) {
        if self.settings.timer {
            eprintln!("Run Time: {:.3} s", started.elapsed().as_secs_f64());
        }
    }

    /// Writes plain text where results go.
    fn print(&mut self, text: &str) -> Result<()> {
        let write = |out: &mut dyn Write| out.write_all(text.as_bytes()).and_then(|_| out.flush());
        match self.output.as_mut() {
            Some(sink) => write(&mut sink.out).map_err(|e| Error::io(&sink.path, e)),
            None => write(&mut std::io::stdout().lock()).map_err(Error::Output),
        }
    }

    /// Runs a dot command line (with its leading dot).
    pub fn dot(&mut self, line: &str) -> Flow {
        let words = match shlex::split(line.trim_start_matches('.')) {
            Some(words) if !words.is_empty() => words,
            _ => return self.settle(Err(Error::Usage(format!("cannot parse '{line}' (unbalanced quotes?)")))),
        };
        let parsed = match DotLine::try_parse_from(&words) {
            Ok(parsed) => parsed,
            Err(e) => {
                use clap::error::ErrorKind;
                let text = e.render().to_string();
                return match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                        let r = self.print(&text);
                        self.settle(r)
                    }
                    _ => self.settle(Err(Error::Usage(
                        text.trim_end().trim_start_matches("error: ").to_string(),
                    ))),
                };
            }
        };
        let result = match parsed.command {
            DotCommand::Quit => return Flow::Quit,
            DotCommand::Read { file } => return self.read(&file),
            other => self.dot_command(other),
        };
        self.settle(result)
    }

    fn dot_command(&mut self, command: DotCommand) -> Result<()> {
        match command {
            DotCommand::Help { pattern } => self.help(pattern.as_deref()),
            DotCommand::Tables { pattern } => {
                let filter = pattern
                    .map(|p| format!("WHERE name LIKE {}", quote_literal(&p)))
                    .unwrap_or_default();
                self.execute_sql(&format!(
                    "SELECT name, kind, rows, comment FROM (\
                     SELECT table_name AS name, 'table' AS kind, estimated_size AS rows, comment FROM duckdb_tables() \
                     WHERE NOT internal AND {IN_THIS_DATABASE} \
                     UNION ALL SELECT view_name, 'view', NULL, comment FROM duckdb_views() \
                     WHERE NOT internal AND {IN_THIS_DATABASE}) {filter} ORDER BY name"
                ))
            }
            DotCommand::Schema { table } => self.schema(table.as_deref()),
            DotCommand::Mode { mode } => {
                self.settings.mode = mode;
                Ok(())
            }
            DotCommand::Headers { state } => {
                self.settings.headers = state.is_on();
                Ok(())
            }
            DotCommand::Timer { state } => {
                self.settings.timer = state.is_on();
                Ok(())
            }
            DotCommand::Bail { state } => {
                self.settings.bail = state.is_on();
                Ok(())
            }
            DotCommand::Maxrows { rows } => {
                self.settings.maxrows = rows;
                Ok(())
            }
            DotCommand::Output { file } => {
                if let Some(old) = self.output.take() {
                    old.finish()?;
                }
                if let Some(file) = file {
                    self.output = Some(FileSink::create(&file)?);
                }
                Ok(())
            }
            DotCommand::Once { file } => {
                self.once = Some(FileSink::create(&file)?);
                Ok(())
            }
            DotCommand::Domain(domain) => self.run_domain(domain),
            DotCommand::Quit | DotCommand::Read { .. } => Ok(()),
        }
    }

    /// Runs the SQL and dot commands of a file (`.read`, `-f`).
    pub fn read(&mut self, file: &Path) -> Flow {
        if self.read_depth >= MAX_READ_DEPTH {
            return self.settle(Err(Error::Usage(format!(
                ".read nested more than {MAX_READ_DEPTH} deep at {}: is a file reading itself?",
                file.display()
            ))));
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => return self.settle(Err(Error::io(file, e))),
        };
        self.read_depth += 1;
        let flow = self.run_script(&text);
        self.read_depth -= 1;
        match flow {
            Flow::Stop if self.read_depth == 0 && self.interactive => Flow::Continue,
            other => other,
        }
    }

    fn help(&mut self, pattern: Option<&str>) -> Result<()> {
        let mut command = DotLine::command();
        if let Some(sub) = pattern.and_then(|p| command.find_subcommand_mut(p.trim_start_matches('.'))) {
            let name = sub.get_name().to_string();
            let help = sub.clone().bin_name(format!(".{name}")).render_long_help().to_string();
            return self.print(&help);
        }
        let mut text = String::new();
        for sub in command.get_subcommands() {
            let name = sub.get_name();
            if pattern.is_some_and(|p| !name.contains(p.trim_start_matches('.'))) {
                continue;
            }
            let args: Vec<String> = sub
                .get_arguments()
                .filter(|a| a.is_positional())
                .map(|a| {
                    let value = a.get_id().to_string().to_uppercase();
                    if a.is_required_set() {
                        value
                    } else {
                        format!("[{value}]")
                    }
                })
                .collect();
            let usage = if sub.get_arguments().any(|a| !a.is_positional() && a.get_id() != "help") {
                format!(
                    ".{name} [OPTIONS]{}",
                    args.iter().map(|a| format!(" {a}")).collect::<String>()
                )
            } else {
                format!(".{name}{}", args.iter().map(|a| format!(" {a}")).collect::<String>())
            };
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            text.push_str(&format!("{usage:<36} {about}\n"));
        }
        if text.is_empty() {
            text = format!("no command matches '{}'\n", pattern.unwrap_or_default());
        } else {
            text.push_str("\nSQL statements end with ';'. `.help NAME` shows a command's options.\n");
        }
        self.print(&text)
    }

    fn schema(&mut self, table: Option<&str>) -> Result<()> {
        let conn = self.store.conn();
        let query = format!(
            "SELECT sql FROM (SELECT table_name AS name, sql FROM duckdb_tables() WHERE NOT internal AND {IN_THIS_DATABASE} \
             UNION ALL SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND {IN_THIS_DATABASE}) \
             WHERE (? IS NULL OR lower(name) = lower(?)) ORDER BY name"
        );
        let statements: Vec<String> = conn
            .prepare(&query)
            .and_then(|mut s| s.query_map([table, table], |r| r.get(0))?.collect())
            .map_err(Error::sql)?;
        let Some(name) = table else {
            return self.print(&statements.iter().map(|s| format!("{s}\n")).collect::<String>());
        };
        if statements.is_empty() {
            return Err(Error::UnknownTable { name: name.to_string() });
        }
        self.print(&format!("{}\n", statements.join("\n")))?;
        self.execute_sql(&format!(
            "SELECT column_name AS column, data_type AS type, is_nullable AS nullable, comment \
             FROM duckdb_columns() WHERE NOT internal AND {IN_THIS_DATABASE} AND lower(table_name) = lower({}) \
             ORDER BY column_index",
            quote_literal(name)
        ))
    }

    /// Runs `capture`, `export`, `import` or `detect`, from the command line or the shell.
    pub fn run_domain(&mut self, command: DomainCommand) -> Result<()> {
        self.run_domain_ahead(command, None)
    }

    /// [`Session::run_domain`] with the first capture of an import already being read.
    pub fn run_domain_ahead(&mut self, command: DomainCommand, ahead: Option<crate::ingest::ReadAhead>) -> Result<()> {
        match command {
            DomainCommand::Capture(args) => self.capture(args),
            DomainCommand::Export(args) => self.export(args),
            DomainCommand::Import(args) => crate::ingest::run(&self.store, args, ahead),
            DomainCommand::Geo(args) => self.geo(args),
            DomainCommand::Demo(args) => self.demo(args),
            DomainCommand::Train(args) => self.train(args),
            DomainCommand::Score(args) => self.score(args),
            DomainCommand::Retrain(args) => self.retrain(args),
            DomainCommand::Models(args) => self.execute_sql(&analysis::models_sql(args.all)),
            DomainCommand::Stages => self.execute_sql(&analysis::stages_sql()),
            DomainCommand::Watch(args) => watch::run(&self.store, &args),
            DomainCommand::Insights(args) => self.insights(args),
            DomainCommand::Detect(args) => self.detect(args),
        }
    }

    /// `geo` fills the geo table and prints a summary; `geo lookup` also prints the answers as
    /// rows. A provider that failed for some addresses is reported after what was stored.
    fn geo(&mut self, args: GeoArgs) -> Result<()> {
        let run = match &args.what {
            Some(GeoCommand::Lookup(lookup)) => {
                let run = geo::lookup(&self.store, &args, &lookup.ips, Utc::now())?;
                if !run.stored.is_empty() {
                    self.execute_sql(&geo::answers_query(&run.stored))?;
                }
                run
            }
            None => geo::fill(&self.store, &args, Utc::now())?,
        };
        if !run.skipped.is_empty() {
            let shown: Vec<&str> = run.skipped.iter().take(5).map(String::as_str).collect();
            eprintln!(
                "note: {} values in the address columns are not IP addresses and were skipped: {}{}",
                run.skipped.len(),
                shown.join(", "),
                if run.skipped.len() > shown.len() { ", ..." } else { "" }
            );
        }
        if !args.quiet {
            eprintln!("{}", geo::summary(&run));
        }
        match run.provider_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn insights(&mut self, args: InsightsArgs) -> Result<()> {
        let findings = report::insights::insights(&self.store)?;
        let sql = report::insights::findings_sql(&findings);
        match args.format {
            Some(mode) => {
                let saved = self.settings.mode;
                self.settings.mode = mode;
                let result = self.execute_sql(&sql);
                self.settings.mode = saved;
                result
            }
            None => self.execute_sql(&sql),
        }
    }

    fn train_policy(&mut self, args: TrainArgs) -> Result<()> {
        if !args.features.is_empty() || args.label.is_some() || args.id.is_some() {
            return Err(Error::Usage(
                "policy chooses its features and keys itself; use --exclude to leave columns out".to_string(),
            ));
        }
        let set = analysis::parse_set(&args.set)?;
        let request = analysis::policy::PolicyRequest::from_set(args.on, args.model, args.seed, args.exclude, &set)?;
        let summary = self.with_spinner("training the baseline and judging", || {
            analysis::policy::run(&self.store, &request, Utc::now())
        })?;
        eprintln!(
            "policy: baseline of {} rows before {} (segments run {}, iforest run {}); judged {} rows: {}; {} high risk (run {})",
            summary.baseline_rows,
            summary.split,
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
        );
        self.execute_sql(&format!(
            "SELECT verdict, risk, src_ip, dst_ip, processes, reason FROM verdicts WHERE run_id = {} \
             ORDER BY risk DESC, score DESC, flow_id LIMIT 20",
            summary.run_id
        ))
    }

    fn train(&mut self, args: TrainArgs) -> Result<()> {
        if args.stage.eq_ignore_ascii_case("policy") {
            return self.train_policy(args);
        }
        let request = analysis::TrainRequest {
            stage: args.stage,
            source: args.on,
            selection: analysis::features::Selection {
                features: args.features.into_iter().filter(|c| !c.trim().is_empty()).collect(),
                exclude: args.exclude.into_iter().filter(|c| !c.trim().is_empty()).collect(),
                id: args.id,
                label: args.label,
            },
            model: args.model,
            seed: args.seed,
            set: analysis::parse_set(&args.set)?,
        };
        let summary = self.with_spinner("training", || analysis::train(&self.store, &request, Utc::now()))?;
        self.run_summary(&[summary])
    }

    fn score(&mut self, args: ScoreArgs) -> Result<()> {
        let request = analysis::ScoreRequest {
            model: args.model,
            source: args.on,
            into: args.into,
            label: args.label,
            id: args.id,
        };
        let summary = self.with_spinner("scoring", || analysis::score(&self.store, &request, Utc::now()))?;
        self.run_summary(&[summary])
    }

    fn retrain(&mut self, args: RetrainArgs) -> Result<()> {
        let summaries = self.with_spinner("retraining", || {
            analysis::retrain(&self.store, args.target.as_deref(), Utc::now())
        })?;
        self.run_summary(&summaries)
    }

    /// Runs long analysis work with a spinner on a terminal (stderr), quietly otherwise.
    fn with_spinner<T>(&self, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(what.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let result = work();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    }

    /// Messages on stderr, and the runs' model_runs rows (and evaluations) as a result.
    fn run_summary(&mut self, runs: &[analysis::RunSummary]) -> Result<()> {
        for run in runs {
            eprintln!(
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
            );
            if !run.skipped.is_empty() {
                eprintln!("  not used as features: {}", run.skipped.join(", "));
            }
        }
        let ids = runs.iter().map(|r| r.run_id.to_string()).collect::<Vec<_>>().join(", ");
        if ids.is_empty() {
            return Ok(());
        }
        self.execute_sql(&format!(
            "SELECT run_id, kind, stage, model, version, rows_in, features, imputed, \
             round(load_ms, 1) AS load_ms, round(fit_ms, 1) AS fit_ms, round(score_ms, 1) AS score_ms, metrics \
             FROM model_runs WHERE run_id IN ({ids}) ORDER BY run_id"
        ))?;
        if runs.iter().any(|r| r.evaluated) {
            self.execute_sql(&format!(
                "SELECT run_id, model, label_column, rows, positives, tp, fp, tn, fn, round(precision, 4) AS precision, \
                 round(recall, 4) AS recall, round(f1, 4) AS f1, round(accuracy, 4) AS accuracy, round(roc_auc, 4) AS roc_auc \
                 FROM evaluation WHERE run_id IN ({ids}) ORDER BY run_id"
            ))?;
        }
        Ok(())
    }

    /// Runs detectors, then prints each run's summary line (stderr) and top rows (results).
    fn detect(&mut self, args: DetectArgs) -> Result<()> {
        interrupt::clear();
        let summaries = crate::detect::run(&self.store, &args, Utc::now())?;
        let titled = summaries.len() > 1;
        for summary in summaries {
            if args.quiet {
                continue;
            }
            eprintln!("{}", summary.message);
            if args.top == 0 || summary.rows == 0 {
                continue;
            }
            if titled
                && matches!(
                    self.settings.mode,
                    OutputMode::Table | OutputMode::Line | OutputMode::Markdown
                )
            {
                let heading = if self.settings.mode == OutputMode::Markdown {
                    format!("\n### {}\n\n", summary.detector)
                } else {
                    format!("\n{}\n", summary.detector)
                };
                self.print(&heading)?;
            }
            self.execute_sql(&crate::detect::top_rows_sql(summary.detector, summary.run_id, args.top))?;
        }
        Ok(())
    }

    fn export(&mut self, args: ExportArgs) -> Result<()> {
        let source = match (args.table, args.query) {
            (Some(t), None) => ExportSource::Table(t),
            (None, Some(q)) => ExportSource::Query(q),
            _ => {
                return Err(Error::Usage(
                    "export needs exactly one of --table or --query".to_string(),
                ))
            }
        };
        let request = ExportRequest {
            format: args.format.unwrap_or_else(|| ExportFormat::from_path(&args.out)),
            source,
            out: args.out,
            partition_by: args.partition_by.into_iter().filter(|c| !c.trim().is_empty()).collect(),
            overwrite: args.overwrite,
        };
        let rows = self.store.export(&request)?;
        eprintln!("exported {rows} rows to {}", request.out.display());
        Ok(())
    }

    fn capture(&mut self, args: CaptureArgs) -> Result<()> {
        interrupt::clear();
        let mut source: Box<dyn Source> = match &args.replay {
            Some(path) => Box::new(FixtureSource::open(path)?),
            None => Box::new(SystemSource::new(
                args.sockets.unwrap_or_else(SocketBackend::platform_default),
            )?),
        };
        let mut recorder = args.record.as_deref().map(Recorder::create).transpose()?;
        let pace = Pace {
            interval: args.interval,
            duration: args.duration,
            count: args.count,
            wait: args.replay.is_none(),
        };
        let mut observer = Progress::new(pace);
        let report = run::run(
            &self.store,
            source.as_mut(),
            pace,
            recorder.as_mut(),
            &Utc::now,
            &mut observer,
        );
        observer.finish();
        let report = report?;
        if report.interrupted {
            eprintln!("stopped by Ctrl-C; every finished snapshot is stored");
        }
        if args.quiet {
            return Ok(());
        }
        self.capture_summary(&report)
    }

    fn demo(&mut self, args: DemoArgs) -> Result<()> {
        interrupt::clear();
        let pace = Pace {
            interval: args.interval,
            duration: Some(Duration::from_secs(u64::from(args.hours) * 3600)),
            count: None,
            wait: false,
        };
        let mut observer = Progress::new(pace);
        let end = Utc::now()
            .duration_trunc(chrono::TimeDelta::minutes(1))
            .unwrap_or_else(|_| Utc::now());
        let report = crate::ingest::demo::run(&self.store, &args, end, &mut observer);
        observer.finish();
        let report = report?;
        if !args.quiet {
            eprintln!(
                "demo: {} synthetic snapshots of host {} ({} socket rows, {} lifetimes) ending {}, and demo_traffic \
                 ({} rows, {} anomalies); every row is marked synthetic (snapshots.source = 'demo', datasets.kind = 'demo')",
                report.capture.snapshots,
                crate::ingest::demo::DEMO_HOST,
                report.capture.socket_rows,
                report.capture.opened,
                end.format("%Y-%m-%d %H:%M UTC"),
                report.traffic_rows,
                report.traffic_anomalies
            );
        }
        Ok(())
    }

    fn capture_summary(&mut self, report: &RunReport) -> Result<()> {
        let (Some(first), Some(last)) = (report.first_snapshot_id, report.last_snapshot_id) else {
            eprintln!("no snapshot was taken");
            return Ok(());
        };
        let n = report.snapshots as f64;
        eprintln!(
            "stored {} snapshots (ids {first}..{last}) in {:.1} s: {} socket rows, {} lifetimes opened, {} closed; \
             per snapshot: collect {:.1} ms, store {:.1} ms",
            report.snapshots,
            report.elapsed.as_secs_f64(),
            report.socket_rows,
            report.opened,
            report.closed,
            report.collect_ms / n,
            report.store_ms / n
        );
        // Titled result sets read well in display modes only; data modes get the counts above.
        if !matches!(
            self.settings.mode,
            OutputMode::Table | OutputMode::Line | OutputMode::Markdown
        ) {
            return Ok(());
        }
        for (title, sql) in report::capture_summary(first, last) {
            let heading = if self.settings.mode == OutputMode::Markdown {
                format!("\n### {title}\n\n")
            } else {
                format!("\n{title}\n")
            };
            self.print(&heading)?;
            self.execute_sql(&sql)?;
        }
        Ok(())
    }
}

/// DuckDB answers INSERT, UPDATE, DELETE, CREATE ... AS, COPY with a one-column `Count`
/// result; like other SQL shells, print nothing for those (RETURNING results are kept).
fn is_row_count_only(sql: &str, schema: &duckdb::arrow::datatypes::SchemaRef) -> bool {
    let fields = schema.fields();
    if fields.len() != 1 || fields[0].name() != "Count" {
        return false;
    }
    let keyword = split::first_keyword(sql);
    matches!(
        keyword.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "CREATE" | "COPY" | "MERGE"
    )
}

/// Capture progress on a terminal (stderr); silent otherwise. Gaps go to stderr always.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(pace: Pace) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let by_count = pace.count;
        let by_time = pace
            .duration
            .map(|d| (d.as_secs_f64() / pace.interval.as_secs_f64()).floor() as u64 + 1);
        let total = match (by_count, by_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let bar = match total {
            Some(n) if pace.wait || by_count.is_some() => indicatif::ProgressBar::new(n),
            _ => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template("{spinner} capture [{elapsed_precise}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar) }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn stored(&mut self, stored: &Stored, report: &RunReport) {
        if let Some(bar) = &self.bar {
            bar.set_position(report.snapshots);
            bar.set_message(format!(
                "snapshot {}: {} sockets, {} opened, {} closed",
                stored.snapshot_id, stored.sockets, stored.opened, stored.closed
            ));
        }
    }

    fn gap(&mut self, gap: &str) {
        let line = format!("note: {gap}");
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
