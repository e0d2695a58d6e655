//! The analyst's side: a [`Session`] runs SQL and dot commands against the store and prints
//! results. The interactive shell (`repl`), one-shot `--query`/`-f` runs, piped stdin and
//! `.read` all go through the same [`Session::feed_line`], so a script behaves the same
//! everywhere. Domain commands (`capture`, `export`) are dispatched here for both the command
//! line and the shell, from the one clap grammar in `cli`.

pub mod repl;
pub use netlens_parsers::split;

pub mod remote;

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use duckdb::arrow::datatypes::SchemaRef;

use crate::capture::persist::Stored;
use crate::capture::run::{Observer, Pace, RunReport};
use crate::cli::{DomainCommand, DotCommand, DotLine, OutputMode, Presentation};
use crate::error::{Error, Result};
use crate::ingest::ReadAhead;
use crate::interrupt;
use crate::output::{render, RenderOptions};
use crate::request::{self, Item, Reply, Request};
use crate::store::{quote_literal, Store, IN_THIS_DATABASE};
use split::{is_blank, split};

pub use crate::serve::client::Batches;

/// Rows a chart is drawn from at most.
const CHART_ROWS: usize = 10_000;

/// Splits `.chart`'s arguments into the kind and options (words up to the SQL) and the SQL as
/// written: the SQL starts at the first word after the kind that is not an option or its value.
fn chart_words(args: &str) -> (Vec<&str>, &str) {
    let mut words = Vec::new();
    let mut rest = args.trim_start();
    let mut expect_value = false;
    while let Some(word) = rest.split_whitespace().next() {
        let is_option = word.starts_with("--");
        if !words.is_empty() && !is_option && !expect_value {
            break;
        }
        expect_value = is_option && !word.contains('=') && word != "--help";
        words.push(word);
        rest = rest[word.len()..].trim_start();
    }
    (words, rest)
}

/// Where a session's statements and commands run: the database file opened in this process, or
/// the `netlens serve` process that holds it ([`remote::RemoteDatabase`]). Both give the same
/// results, so the shell prints them the same way.
pub trait Database {
    /// Runs one SQL statement and hands its schema and batches to `consume`.
    fn query(&mut self, sql: &str, consume: &mut dyn FnMut(SchemaRef, Batches<'_>) -> Result<()>) -> Result<()>;

    /// Runs a domain command. `progress` shows bars on this terminal while it runs (local only).
    fn execute(&mut self, request: Request, progress: bool, ahead: Option<ReadAhead>) -> Result<Reply>;

    /// Where the database is, for the shell's banner.
    fn describe(&self) -> String;

    /// True when nothing more can be read or stored (the file could not be attached again).
    fn is_detached(&self) -> bool {
        false
    }
}

/// The database file, opened by this process.
pub struct LocalDatabase {
    store: Store,
}

impl LocalDatabase {
    pub fn new(store: Store) -> Self {
        LocalDatabase { store }
    }
}

impl Database for LocalDatabase {
    fn query(&mut self, sql: &str, consume: &mut dyn FnMut(SchemaRef, Batches<'_>) -> Result<()>) -> Result<()> {
        self.store.check_user_statement(sql)?;
        let conn = self.store.conn();
        let consumed = {
            let mut stmt = conn.prepare(sql).map_err(Error::sql)?;
            let _running = interrupt::Running::new(conn.interrupt_handle());
            let stream = stmt.stream_arrow([]).map_err(Error::sql)?;
            let schema = stream.get_schema();
            let mut batches = stream.map(|b| b.map_err(Error::sql));
            consume(schema, &mut batches)
        };
        // Also after a failure: the statement may have attached before it failed.
        self.store.check_still_read_only()?;
        consumed
    }

    fn execute(&mut self, request: Request, progress: bool, ahead: Option<ReadAhead>) -> Result<Reply> {
        let pace = match &request {
            Request::Capture(c) => Some(Pace {
                interval: c.interval,
                duration: c.duration,
                count: c.count,
                wait: c.replay.is_none(),
                commit_every: c.commit_every,
            }),
            Request::Demo(d) => Some(Pace {
                interval: d.interval,
                duration: Some(Duration::from_secs(u64::from(d.hours) * 3600)),
                count: None,
                wait: false,
                commit_every: Duration::MAX,
            }),
            _ => None,
        };
        let mut observer = Progress::new(pace.filter(|_| progress));
        let spinner = match &request {
            Request::Train(_) => Some("training"),
            Request::Score(_) => Some("scoring"),
            Request::Retrain { .. } => Some("retraining"),
            Request::Explain(_) => Some("explaining"),
            _ => None,
        }
        .filter(|_| progress && std::io::stderr().is_terminal())
        .map(|what| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let mut watch = TerminalWatch;
        let mut ctx = request::Context {
            observer: &mut observer,
            import_progress: crate::ingest::Progress::showing(Box::new(ImportBar::new(progress)), !progress),
            watch: Some(&mut watch),
            ahead,
            clock: &chrono::Utc::now,
            notice: &mut |note| eprintln!("{}", crate::output::visible(note)),
        };
        let result = request::execute(&self.store, request, &mut ctx);
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        observer.finish();
        result
    }

    fn describe(&self) -> String {
        self.store.location().display()
    }

    fn is_detached(&self) -> bool {
        self.store.is_detached()
    }
}

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
        let file = crate::files::open_for_writing(path, crate::files::Existing::Truncate)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// One database, its output settings and the error count.
pub struct Session {
    db: Box<dyn Database>,
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
    pub fn new(db: Box<dyn Database>, settings: Settings, interactive: bool) -> Self {
        Session {
            db,
            settings,
            output: None,
            once: None,
            interactive,
            failures: 0,
            read_depth: 0,
        }
    }

    /// Where the database is, for the shell's banner.
    pub fn describe(&self) -> String {
        self.db.describe()
    }

    /// The first column of a query's rows as text (completion); empty when it fails.
    pub fn strings(&mut self, sql: &str) -> Vec<String> {
        self.column_strings(sql).unwrap_or_default()
    }

    /// The first column of a query's rows as text (NULLs left out).
    fn column_strings(&mut self, sql: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.db.query(sql, &mut |_, batches| {
            for batch in batches {
                let batch = batch?;
                let column = duckdb::arrow::compute::cast(batch.column(0), &duckdb::arrow::datatypes::DataType::Utf8)
                    .map_err(|e| Error::Sql { message: e.to_string() })?;
                let texts = column.as_any().downcast_ref::<duckdb::arrow::array::StringArray>();
                out.extend(texts.into_iter().flatten().flatten().map(str::to_string));
            }
            Ok(())
        })?;
        Ok(out)
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
                eprintln!("Error: {}", crate::output::visible(&e.to_string()));
                if self.db.is_detached() {
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
        let mut once = self.once.take();
        let output = &mut self.output;
        self.db.query(sql, &mut |schema, stream| {
            if is_row_count_only(sql, &schema) {
                for batch in stream {
                    batch?;
                }
                return Ok(());
            }
            match (once.take(), output.as_mut()) {
                (Some(mut sink), _) => {
                    let r = render(&schema, stream, opts, &mut sink.out);
                    r.and_then(|rows| sink.finish().map(|_| rows))
                }
                (None, Some(sink)) => render(&schema, stream, opts, &mut sink.out),
                (None, None) => {
                    let mut stdout = std::io::stdout().lock();
                    render(&schema, stream, opts, &mut stdout)
                        .and_then(|rows| stdout.flush().map(|_| rows).map_err(Error::Output))
                }
            }
            .map(|_| ())
        })?;
        self.report_time(started);
        Ok(())
    }

    fn report_time(&self, started: Instant) {
        if self.settings.timer {
            eprintln!("Run Time: {:.3} s", started.elapsed().as_secs_f64());
        }
    }

    /// `.chart KIND [--width N] [--height N] [--bins N] SQL`: runs the query and draws its
    /// result (at most 10 000 rows) where results go.
    fn chart(&mut self, args: &str) -> Result<()> {
        let (options, sql) = chart_words(args);
        let mut words = vec!["chart".to_string()];
        words.extend(options.iter().map(|w| w.to_string()));
        words.push("--".to_string());
        words.push(sql.to_string());
        let parsed = DotLine::try_parse_from(&words).map_err(|e| {
            Error::Usage(
                e.render()
                    .to_string()
                    .trim_end()
                    .trim_start_matches("error: ")
                    .to_string(),
            )
        })?;
        let DotCommand::Chart {
            kind,
            width,
            height,
            bins,
            ..
        } = parsed.command
        else {
            return Err(Error::Usage(
                "usage: .chart bar|line|hist|scatter [OPTIONS] SQL".to_string(),
            ));
        };
        if sql.trim().is_empty() {
            return Err(Error::Usage(
                "usage: .chart bar|line|hist|scatter [OPTIONS] SQL".to_string(),
            ));
        }
        interrupt::clear();
        let to_terminal = self.output.is_none() && std::io::stdout().is_terminal();
        let opts = crate::chart::ChartOptions {
            width: width
                .or_else(|| {
                    to_terminal
                        .then(|| comfy_table::Table::new().width().map(usize::from))
                        .flatten()
                })
                .unwrap_or(80)
                .clamp(20, 400),
            height: height.clamp(2, 200),
            bins,
            colour: to_terminal && std::env::var_os("NO_COLOR").is_none(),
        };
        let mut table = None;
        self.db.query(sql.trim().trim_end_matches(';'), &mut |schema, stream| {
            table = Some(crate::output::JsonTable::collect(&schema, stream, CHART_ROWS)?);
            Ok(())
        })?;
        let text = crate::chart::draw(kind, &table.unwrap_or_default(), opts)?;
        self.print(&text)
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
        // `.chart` keeps its SQL as written (quotes and all), so it is split here, not by shlex.
        if let Some(rest) = line.trim_start().trim_start_matches('.').strip_prefix("chart") {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                let result = self.chart(rest);
                return self.settle(result);
            }
        }
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
            DotCommand::Chart { sql, .. } => self.chart(&sql.join(" ")),
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
        let filter = table
            .map(|t| format!("WHERE lower(name) = lower({})", quote_literal(t)))
            .unwrap_or_default();
        let statements = self.column_strings(&format!(
            "SELECT sql FROM (SELECT table_name AS name, sql FROM duckdb_tables() WHERE NOT internal AND {IN_THIS_DATABASE} \
             UNION ALL SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND {IN_THIS_DATABASE}) \
             {filter} ORDER BY name"
        ))?;
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

    /// Runs a domain command from the command line or the shell.
    pub fn run_domain(&mut self, command: DomainCommand) -> Result<()> {
        self.run_domain_ahead(command, None)
    }

    /// [`Session::run_domain`] with the first capture of an import already being read.
    pub fn run_domain_ahead(&mut self, command: DomainCommand, ahead: Option<ReadAhead>) -> Result<()> {
        let (request, presentation) = command.into_request()?;
        self.run_request(request, presentation, ahead)
    }

    /// Runs a request where the database is, then shows its reply here.
    pub fn run_request(
        &mut self,
        request: Request,
        presentation: Presentation,
        ahead: Option<ReadAhead>,
    ) -> Result<()> {
        let reply = self.db.execute(request, !presentation.quiet, ahead)?;
        let saved = self.settings.mode;
        if let Some(mode) = presentation.format {
            self.settings.mode = mode;
        }
        let shown = self.show_items(reply.items, presentation.quiet);
        self.settings.mode = saved;
        shown?;
        match reply.failure {
            Some(message) => Err(Error::Partial { message }),
            None => Ok(()),
        }
    }

    /// Summary lines and warnings on stderr, rows where results go, titled in display modes.
    fn show_items(&mut self, items: Vec<Item>, quiet: bool) -> Result<()> {
        let display = self.settings.mode.is_display();
        for item in items {
            match item {
                // Summaries and warnings can quote untrusted text (a Zeek field, a process
                // name, a provider's message): control characters are shown, not sent.
                Item::Summary(line) if !quiet => eprintln!("{}", crate::output::visible(&line)),
                Item::Summary(_) => {}
                Item::Warning(line) => eprintln!("{}", crate::output::visible(&line)),
                Item::Rows { summary: true, .. } if quiet => {}
                Item::Rows { display_only: true, .. } if !display => {}
                Item::Rows { sql, title, .. } => {
                    if let Some(title) = title.filter(|_| display) {
                        let heading = if self.settings.mode == OutputMode::Markdown {
                            format!("\n### {title}\n\n")
                        } else {
                            format!("\n{title}\n")
                        };
                        self.print(&heading)?;
                    }
                    self.execute_sql(&sql)?;
                }
            }
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

/// `watch` on this terminal: the dashboard on standard output (redrawn when that is a
/// terminal, a line per window otherwise), status lines on stderr.
struct TerminalWatch;

impl crate::watch::WatchDisplay for TerminalWatch {
    fn redraws(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    fn status(&mut self, line: &str) {
        eprintln!("{line}");
    }

    fn window(&mut self, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| Error::Io {
                path: "standard output".into(),
                source: e,
            })
    }
}

/// Import progress on a terminal (stderr): a bar per file, when asked for and stderr is a
/// terminal; warnings and summary lines on stderr always.
struct ImportBar {
    bar: Option<indicatif::ProgressBar>,
}

impl ImportBar {
    fn new(progress: bool) -> Self {
        ImportBar {
            bar: (progress && std::io::stderr().is_terminal()).then(indicatif::ProgressBar::hidden),
        }
    }
}

impl crate::ingest::ImportDisplay for ImportBar {
    fn start(&mut self, name: &str, total: u64) {
        if let Some(bar) = &mut self.bar {
            let b = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} import {msg} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style);
            b.set_message(name.to_string());
            *bar = b;
        }
    }

    fn position(&self, at: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(at);
        }
    }

    fn done(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&mut self, line: &str) {
        eprintln!("{}", crate::output::visible(line));
    }
}

/// Capture progress on a terminal (stderr); silent otherwise. Gaps go to stderr always.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar for a run at `pace` on a terminal; `None` (or no terminal) shows only gaps.
    fn new(pace: Option<Pace>) -> Self {
        let Some(pace) = pace.filter(|_| std::io::stderr().is_terminal()) else {
            return Progress { bar: None };
        };
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
        let line = format!("note: {}", crate::output::visible(gap));
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
