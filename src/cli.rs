//! Every command's grammar, defined once with clap. The same definitions parse the command
//! line (`netlens capture --count 3`) and the shell's dot commands (`.capture --count 3`), and
//! generate both `--help` and `.help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::capture::system::SocketBackend;
pub use crate::detect::{DetectSource, DetectorName};
pub use crate::geo::GeoProvider;
pub use crate::output::OutputMode;
pub use crate::store::export::ExportFormat;

use crate::analysis::{ScoreRequest, TrainRequest};
use crate::capture::demo::DemoRequest;
use crate::capture::packets::{PacketCaptureRequest, DEFAULT_SNAPLEN};
use crate::chart::ChartKind;
use crate::detect::{DetectRequest, Param, Values};
use crate::error::Error;
use crate::geo::GeoRequest;
use crate::ingest::csv::CsvImport;
use crate::ingest::{ImportRequest, PcapImport, ZeekImport};
use crate::request::{CaptureRequest, Request};
use crate::serve::{CaptureSchedule, Job, JobKind, ServeOptions};
use crate::store::export::{ExportRequest, ExportSource};
use crate::watch::WatchRequest;

/// Implements clap's `ValueEnum` for a domain enum, so the domain type stays free of clap: each
/// variant's name on the command line, its aliases and its help.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal $([$($alias:literal),*])? : $help:literal),* $(,)? }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),*]
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(match self {
                    $($ty::$variant => clap::builder::PossibleValue::new($name)$($(.alias($alias))*)?.help($help)),*
                })
            }
        }
    };
}

value_enum!(OutputMode {
    Table => "table": "Boxed table fitted to the terminal width",
    Csv => "csv": "Comma-separated values (RFC 4180 quoting)",
    Json => "json": "One JSON array of objects per statement",
    Jsonl => "jsonl": "One JSON object per line",
    Markdown => "markdown": "GitHub-flavoured Markdown table",
    Line => "line": "One `column = value` line per field, rows separated by a blank line",
    List => "list": "Values separated by `|`",
});

value_enum!(ChartKind {
    Bar => "bar": "label, value: one bar per row",
    Line => "line": "x, y[, series]: points joined in x order",
    Hist => "hist": "the first numeric column, counted into bins",
    Scatter => "scatter": "x, y[, series]: points",
});

value_enum!(SocketBackend {
    Sockdiag => "sockdiag": "Linux sock_diag with kernel TCP counters (default on Linux)",
    Netstat2 => "netstat2": "netstat2: portable, no kernel counters, no UDP peers (default elsewhere)",
});

value_enum!(ExportFormat {
    Parquet => "parquet": "Apache Parquet",
    Csv => "csv": "Comma-separated values",
    Json => "json": "Newline-delimited JSON, one object per row",
    Zeek => "zeek": "Zeek TSV conn.log (from flows, or any source with its columns)",
});

/// The detectors' names come from the one registry, `detect::DETECTORS`, then `all`.
impl ValueEnum for DetectorName {
    fn value_variants<'a>() -> &'a [Self] {
        static NAMES: std::sync::OnceLock<Vec<DetectorName>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            crate::detect::DETECTORS
                .iter()
                .map(|d| DetectorName::One(*d))
                .chain([DetectorName::All])
                .collect()
        })
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            DetectorName::One(d) => clap::builder::PossibleValue::new(d.name())
                .aliases(d.aliases().iter().copied())
                .help(d.about()),
            DetectorName::All => clap::builder::PossibleValue::new("all").help("Every detector, one run each"),
        })
    }
}

value_enum!(DetectSource {
    Auto => "auto": "Whichever has rows (live history first when both do)",
    Flows => "flows": "Imported flows (pcap, Zeek)",
    Connections => "connections": "Live capture history (the connections view)",
});

value_enum!(GeoProvider {
    Off => "off": "Ask no one: local ranges and --mmdb files only",
    IpApi => "ip-api": "ip-api.com's batch endpoint (free tier: plain http, 15 requests of 100 addresses a minute)",
});

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// netlens records this host's sockets, processes and interfaces into DuckDB and lets you
/// query the history with SQL.
///
/// With no command: an interactive shell on a terminal, or the SQL read from standard input.
#[derive(Debug, Parser)]
#[command(name = "netlens", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Database file (`:memory:` for a throw-away one) [default: $XDG_DATA_HOME/netlens/netlens.duckdb]
    #[arg(long, env = "NETLENS_DB", value_name = "PATH", global = true)]
    pub db: Option<String>,

    /// Open the database read-only (never writes or upgrades it; other files you ATTACH in the
    /// shell, and DuckDB's in-memory catalog, stay writable)
    #[arg(long, global = true)]
    pub read_only: bool,

    /// Ask the netlens server listening at this URL (`grpc://HOST:PORT` or `grpc+tls://HOST:PORT`,
    /// as `netlens status` shows it on its host) instead of a database file; needs its token
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,

    /// File holding the server's token, for --server (a copy of DATABASE.token from the server's
    /// host) [default: the token in NETLENS_TOKEN]
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// PEM certificate to trust for a grpc+tls:// server (its issuer's, or its own if
    /// self-signed)
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Run SQL (or a dot command) and exit; repeatable, run in order
    #[arg(short = 'c', long = "query", value_name = "SQL")]
    pub queries: Vec<String>,

    /// Run the SQL in a file and exit; repeatable
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format of results [default: table on a terminal, csv otherwise]
    #[arg(long, value_enum)]
    pub format: Option<OutputMode>,

    /// Stop at the first failing statement
    #[arg(long)]
    pub bail: bool,

    /// Leave out column headers
    #[arg(long)]
    pub no_headers: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Top-level commands.
// One value per process (and per shell line), parsed and converted at once: its size costs
// nothing, and boxing the domain commands would only add a layer to every match on them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the interactive SQL shell
    Shell,
    /// Hold the database in one long-running process that captures, runs scheduled work and
    /// answers every netlens command and Arrow Flight SQL client at the same time
    Serve(Box<ServeArgs>),
    /// Show the server holding the database: pid, uptime, capture, schedule, clients, last error
    Status,
    #[command(flatten)]
    Domain(DomainCommand),
}

/// Commands that exist both on the command line and as shell dot commands.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Record snapshots of sockets, processes and interfaces into the database
    Capture(CaptureArgs),
    /// Write a table or query result to Parquet, CSV, JSON or a Zeek conn.log
    Export(ExportArgs),
    /// Import offline traffic (pcap/pcapng captures, Zeek conn.log) or a CSV dataset
    Import(ImportArgs),
    /// Geolocate remote addresses (country, city, ASN) into the geo table: offline from .mmdb
    /// files, online only with --provider ip-api
    Geo(GeoArgs),
    /// Fill a database with a synthetic day of host activity and a labelled dataset (marked as demo)
    Demo(DemoArgs),
    /// Fit an analysis stage (kmeans, iforest, pca, dbscan) on a feature source and store the model
    Train(TrainArgs),
    /// Apply a stored model to a table, view or query, without refitting
    Score(ScoreArgs),
    /// Set an anomaly model's threshold on a window you declare clean (at most --alarm-rate of
    /// its rows above it); later scores and policy verdicts of that model version use it
    Calibrate(CalibrateArgs),
    /// Refit stored models on the newest data with their stored parameters
    Retrain(RetrainArgs),
    /// Why a model flags what it flags: permutation importance of each feature, and the features
    /// that pushed the highest-scoring rows out
    Explain(ExplainArgs),
    /// List the stored models (newest version of each, or all with --all)
    Models(ModelsArgs),
    /// List the analysis stages, their tables and parameters
    Stages,
    /// Find port scans, beacons, bursts and long connections in live history or imported flows
    Detect(DetectArgs),
    /// Learn a baseline, then judge every new window of live flows on a terminal dashboard
    Watch(WatchArgs),
    /// Key findings and recommended actions from the latest runs
    Insights(InsightsArgs),
    /// Write the dashboard's views as one file: self-contained HTML (opens with no network),
    /// Markdown or JSON
    Report(ReportArgs),
    /// Mark a flagged row as a true or false positive, with a note (see .schema feedback)
    Feedback(FeedbackArgs),
    /// Roll complete hours of raw rows up into the *_rollups tables, then delete raw rows and
    /// rollups older than their windows (what serve --retain runs every minute)
    Retain(RetainArgs),
}

/// Options of `report`.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The file to write (the format follows its extension: .html, .md, .json)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Start of the range, UTC [default: the first snapshot]
    #[arg(long, value_parser = parse_timestamp)]
    pub since: Option<chrono::NaiveDateTime>,

    /// End of the range, UTC [default: the newest snapshot]
    #[arg(long, value_parser = parse_timestamp)]
    pub until: Option<chrono::NaiveDateTime>,
}

/// Options of `feedback`.
#[derive(Debug, Args, Clone)]
pub struct FeedbackArgs {
    /// Table of the flagged row: anomaly_scores, ensemble_scores, verdicts, port_scans, beacons,
    /// bursts, long_connections
    pub subject: String,

    /// The row's key (feedback.row_key says what it is for each table)
    pub row_key: String,

    /// The flag was right
    #[arg(long, conflicts_with = "false_positive", required_unless_present = "false_positive")]
    pub true_positive: bool,

    /// The flag was wrong
    #[arg(long)]
    pub false_positive: bool,

    /// Run of the row [default: the mark holds for the row in every run]
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<i64>,

    /// Why
    #[arg(long)]
    pub note: Option<String>,
}

/// Options of `retain`.
#[derive(Debug, Args, Clone)]
pub struct RetainArgs {
    /// Delete raw rows (snapshots, sockets, processes, interfaces, transitions, closed
    /// lifetimes) older than this, once rolled up; without it raw rows are kept
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub raw: Option<Duration>,

    /// Delete rollups older than this; without it rollups are kept
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub rollups: Option<Duration>,

    /// Width of a rollup bucket (whole minutes, at most a day)
    #[arg(long, value_parser = parse_duration, default_value = "1h", value_name = "DURATION")]
    pub bucket: Duration,
}

impl RetainArgs {
    pub fn into_request(self) -> crate::retention::RetainRequest {
        crate::retention::RetainRequest {
            raw: self.raw,
            rollups: self.rollups,
            bucket: self.bucket,
            batch: crate::retention::RetainRequest::DEFAULT_BATCH,
        }
    }
}

/// The import request of `import` options, when they convert (for the read-ahead).
pub fn import_request(args: &ImportArgs) -> Option<ImportRequest> {
    match DomainCommand::Import(args.clone()).into_request() {
        Ok((Request::Import(request), _)) => Some(request),
        _ => None,
    }
}

/// Options of `serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Serve the file as it is, without capturing this host
    #[arg(long, conflicts_with_all = ["interval", "commit_every", "sockets", "replay", "record"])]
    pub no_capture: bool,

    /// Time between snapshots (at least 10ms)
    #[arg(long, value_parser = parse_interval, default_value = "1s")]
    pub interval: Duration,

    /// Socket table reader [default: sockdiag on Linux, netstat2 elsewhere]
    #[arg(long, value_enum)]
    pub sockets: Option<SocketBackend>,

    /// Also capture packets on this interface (lo, eth0, any, ...) into flows, as `import pcap`
    /// builds them, beside the snapshots (or alone with --no-capture), for as long as the server
    /// runs. Needs root or CAP_NET_RAW
    #[arg(long, value_name = "IFACE")]
    pub packets: Option<String>,

    /// With --packets: capture only what this BPF expression (tcpdump's syntax) matches
    #[arg(long, value_name = "EXPR", requires = "packets")]
    pub filter: Option<String>,

    /// With --packets: keep at most this many bytes of each frame [default: 262144]
    #[arg(long, value_name = "BYTES", requires = "packets")]
    pub snaplen: Option<u32>,

    /// With --packets: also write every captured packet to this pcap file
    #[arg(long, value_name = "FILE", requires = "packets")]
    pub write_pcap: Option<PathBuf>,

    /// With --packets: also write one row per packet into the packets table
    #[arg(long, requires = "packets")]
    pub packet_rows: bool,

    /// Store snapshots together once the oldest has waited this long (e.g. 5s, 1m; 0 stores
    /// each as it is taken). A process killed outright (SIGKILL, power loss) loses what waits;
    /// Ctrl-C and SIGTERM store it
    #[arg(long, value_parser = parse_commit_every, default_value = "5s", value_name = "DURATION")]
    pub commit_every: Duration,

    /// Capture from snapshots recorded with capture --record instead of this host
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Also append every snapshot to FILE as JSON lines
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// How much of each process's command line to store: `name` keeps the program only
    /// (arguments can hold secrets, of any user's processes), `full` everything, `none` nothing
    #[arg(long, value_name = "full|name|none", default_value = "name")]
    pub cmdline: crate::capture::cmdline::CmdlinePolicy,

    /// Scheduled work, repeatable: detect, geo, retrain, insights or retain (with --retain; every
    /// minute unless given), each with its interval, e.g. --every detect=5m --every retrain=1d
    #[arg(long, value_name = "JOB=DURATION", value_parser = parse_job)]
    pub every: Vec<Job>,

    /// Offline geolocation databases for the scheduled geo job (repeatable)
    #[arg(long, value_name = "PATH")]
    pub mmdb: Vec<PathBuf>,

    /// Also serve Flight SQL on TCP, to clients with the server's token (kept in DB.token);
    /// loopback only unless --allow-remote
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,

    /// Serve the dashboard on this address (prints its URL with the token); loopback only
    /// unless --allow-remote
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<std::net::SocketAddr>,

    /// Let --listen and --http use a non-loopback address (needs --tls-cert and --tls-key)
    #[arg(long)]
    pub allow_remote: bool,

    /// TLS certificate chain (PEM) of the TCP listener and the dashboard
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the TCP listener and the dashboard
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Let the token also write: update statements and commands that name no files
    #[arg(long)]
    pub remote_writes: bool,

    /// With a TCP listener, DuckDB's file functions (read_csv, COPY ... TO, ATTACH) of every
    /// client work only in these directories (repeatable); without it, nowhere
    #[arg(long, value_name = "DIR")]
    pub files: Vec<PathBuf>,

    /// DuckDB's memory limit for the whole server (its cache of the file lives within it),
    /// e.g. 512MB or 2GiB [default: DuckDB's, 80% of RAM]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_limit)]
    pub memory_limit: Option<String>,

    /// Keep raw rows this long: every minute, roll complete hours up and delete older raw rows
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub retain: Option<Duration>,

    /// Keep rollups this long (with --retain)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "retain")]
    pub retain_rollups: Option<Duration>,

    /// Width of a rollup bucket (with --retain)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "retain", default_value = "1h")]
    pub rollup_bucket: Duration,
}

/// A memory size as DuckDB reads it: a number and a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB).
pub fn parse_memory_limit(text: &str) -> Result<String, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let units = ["KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"];
    match (
        number.parse::<f64>(),
        units.iter().find(|u| u.eq_ignore_ascii_case(unit.trim())),
    ) {
        (Ok(n), Some(u)) if n > 0.0 && n.is_finite() => Ok(format!("{number}{u}")),
        _ => Err(format!("'{text}': expected a size such as 512MB or 2GiB")),
    }
}

/// `JOB=DURATION`, a scheduled job of `serve`.
pub fn parse_job(text: &str) -> Result<Job, String> {
    let (name, every) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': expected JOB=DURATION, e.g. detect=5m"))?;
    let kind = JobKind::ALL
        .into_iter()
        .find(|k| k.name() == name.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown job '{name}'; the jobs are {}", names.join(", "))
        })?;
    let every = parse_duration(every)?;
    if every < Duration::from_secs(1) {
        return Err(format!("'{text}': a job runs at most once a second"));
    }
    Ok(Job { kind, every })
}

impl ServeArgs {
    /// The server these options describe, for the database at `location`.
    pub fn into_options(mut self, location: crate::store::Location) -> std::result::Result<ServeOptions, Error> {
        let mut seen = std::collections::HashSet::new();
        for job in &self.every {
            if !seen.insert(job.kind) {
                return Err(Error::Usage(format!(
                    "--every {} is given twice; give each job one interval",
                    job.kind.name()
                )));
            }
        }
        let retain = self.retain.map(|raw| crate::retention::RetainRequest {
            raw: Some(raw),
            rollups: self.retain_rollups,
            bucket: self.rollup_bucket,
            batch: crate::retention::RetainRequest::DEFAULT_BATCH,
        });
        if let Some(retain) = &retain {
            // The same check as `netlens retain`, whose option is --bucket; here it is --rollup-bucket.
            retain.check().map_err(|e| match e {
                Error::Usage(message) => Error::Usage(message.replacen("--bucket ", "--rollup-bucket ", 1)),
                other => other,
            })?;
        }
        match (retain.is_some(), self.every.iter().any(|j| j.kind == JobKind::Retain)) {
            (true, false) => self.every.push(Job {
                kind: JobKind::Retain,
                every: Duration::from_secs(60),
            }),
            (false, true) => {
                return Err(Error::Usage(
                    "--every retain needs --retain DURATION: how long raw rows are kept".to_string(),
                ))
            }
            _ => {}
        }
        if self.every.iter().any(|j| j.kind == JobKind::Geo) && self.mmdb.is_empty() {
            return Err(Error::Usage(
                "--every geo needs at least one --mmdb file: the server never sends addresses to an online provider by itself"
                    .to_string(),
            ));
        }
        let remote = crate::serve::access::RemoteAccess {
            allow_remote: self.allow_remote,
            writes: self.remote_writes,
            files: self.files,
        };
        let tls = self
            .tls_cert
            .zip(self.tls_key)
            .map(|(cert, key)| crate::serve::access::TlsFiles { cert, key });
        let listen = self
            .listen
            .map(|addr| crate::serve::access::Listen { addr, tls: tls.clone() });
        let http = self
            .http
            .map(|addr| crate::serve::access::Listen { addr, tls: tls.clone() });
        if let Some(http) = &http {
            http.check("--http", &remote)?;
        }
        match &listen {
            Some(listen) => listen.check("--listen", &remote)?,
            None if http.is_some() => {}
            None if tls.is_some() || remote.allow_remote || remote.writes || !remote.files.is_empty() => {
                return Err(Error::Usage(
                    "--tls-cert, --tls-key, --allow-remote, --remote-writes and --files are options of a TCP listener\n  \
                     hint: add --listen 127.0.0.1:PORT or --http 127.0.0.1:PORT"
                        .to_string(),
                ))
            }
            None => {}
        }
        Ok(ServeOptions {
            location,
            memory_limit: self.memory_limit,
            listen,
            http,
            remote,
            retain,
            capture: (!self.no_capture).then_some(CaptureSchedule {
                interval: self.interval,
                commit_every: self.commit_every,
                sockets: self.sockets,
                replay: self.replay,
                record: self.record,
                cmdline: self.cmdline,
            }),
            packets: self.packets.map(|interface| PacketCaptureRequest {
                interface,
                filter: self.filter,
                snaplen: self.snaplen.unwrap_or(DEFAULT_SNAPLEN),
                write_pcap: self.write_pcap,
                packet_rows: self.packet_rows,
                duration: None,
            }),
            every: self.every,
            mmdb: self.mmdb,
        })
    }
}

/// Options of `train`.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// Stage to fit: kmeans, iforest, pca, dbscan or policy
    pub stage: String,

    /// Feature source: a table or view name, or a query ("SELECT ...") [default: flow_features]
    #[arg(long, value_name = "SOURCE")]
    pub on: Option<String>,

    /// Use exactly these columns as features (numbers, text, booleans)
    #[arg(long, value_delimiter = ',', value_name = "COLS", conflicts_with = "exclude")]
    pub features: Vec<String>,

    /// Use every numeric and categorical column except these
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub exclude: Vec<String>,

    /// Ground-truth column: never a feature, used for evaluation (anomalous unless normal/benign/0/false)
    #[arg(long, value_name = "COL")]
    pub label: Option<String>,

    /// Column copied into the result rows as id [default: id, flow_id, uid or connection_id when present]
    #[arg(long, value_name = "COL")]
    pub id: Option<String>,

    /// Model name (a new version each time) [default: the stage name]
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// Random seed: the same seed on the same data gives the same model
    #[arg(long, default_value_t = crate::analysis::DEFAULT_SEED)]
    pub seed: u64,

    /// Stage parameter, repeatable: e.g. k=auto, k=4, contamination=0.05, eps=0.5 (see `stages`)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Options of `score`.
#[derive(Debug, Args, Clone)]
pub struct ScoreArgs {
    /// Stored model: NAME (newest version) or NAME@VERSION
    pub model: String,

    /// Rows to score: a table or view name, or a query ("SELECT ...")
    #[arg(long, value_name = "SOURCE")]
    pub on: String,

    /// Also create this table: the source's rows with the model's columns appended
    #[arg(long, value_name = "TABLE")]
    pub into: Option<String>,

    /// Ground-truth column for evaluation [default: the model's training label, when present]
    #[arg(long, value_name = "COL")]
    pub label: Option<String>,

    /// Column copied into the result rows as id [default: id, flow_id, uid or connection_id when present]
    #[arg(long, value_name = "COL")]
    pub id: Option<String>,
}

/// Options of `calibrate`.
#[derive(Debug, Args, Clone)]
pub struct CalibrateArgs {
    /// Stored anomaly model (iforest, ocsvm, lof, autoencoder): NAME or NAME@VERSION
    pub model: String,

    /// Rows holding the clean window: a table or view name, or a query; rows the model was not
    /// fitted on, or the threshold comes out too low
    #[arg(long, value_name = "SOURCE")]
    pub on: String,

    /// Start of the clean window (UTC, e.g. "2026-03-01 12:00") [default: the first row]
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,

    /// End of the clean window, exclusive [default: after the last row]
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,

    /// Column placing each row in time
    #[arg(long, value_name = "COL", default_value = "window_start")]
    pub time_column: String,

    /// Share of the clean rows that may stay above the threshold (0: none)
    #[arg(long, value_name = "SHARE", default_value_t = crate::analysis::calibration::DEFAULT_ALARM_RATE)]
    pub alarm_rate: f64,
}

/// Options of `retrain`.
#[derive(Debug, Args, Clone)]
pub struct RetrainArgs {
    /// A model name, or a stage (every model of it) [default: every model]
    pub target: Option<String>,
}

/// Options of `explain`.
#[derive(Debug, Args, Clone)]
pub struct ExplainArgs {
    /// A run (model_runs.run_id: its model on its input), or a model: NAME or NAME@VERSION
    pub target: String,

    /// Rows to explain: a table or view name, or a query [default: the run's input, or the
    /// model's training source]
    #[arg(long, value_name = "SOURCE")]
    pub on: Option<String>,

    /// Ground-truth column: importance is the drop in ROC-AUC [default: the run's or the model's
    /// label, when the rows have it; without one, the mean shift of the score]
    #[arg(long, value_name = "COL")]
    pub label: Option<String>,

    /// Column copied into row_explanations.id [default: the run's id column, or id, flow_id, uid
    /// or connection_id when present]
    #[arg(long, value_name = "COL")]
    pub id: Option<String>,

    /// Rows (a seeded sample) whose features are shuffled for permutation importance
    #[arg(long, default_value_t = crate::analysis::explain::ExplainRequest::DEFAULT_SAMPLE)]
    pub sample: usize,

    /// Shuffles of each feature (importance is their mean)
    #[arg(long, default_value_t = crate::analysis::explain::ExplainRequest::DEFAULT_REPEATS)]
    pub repeats: usize,

    /// Highest-scoring rows explained one by one (row_explanations)
    #[arg(long, default_value_t = crate::analysis::explain::ExplainRequest::DEFAULT_TOP)]
    pub top: usize,

    /// Random seed of the sample and the shuffles
    #[arg(long, default_value_t = crate::analysis::DEFAULT_SEED)]
    pub seed: u64,
}

/// Options of `models`.
#[derive(Debug, Args, Clone)]
pub struct ModelsArgs {
    /// Every version, not only the newest of each name
    #[arg(long)]
    pub all: bool,
}

/// Options of `capture`.
#[derive(Debug, Args, Clone)]
pub struct CaptureArgs {
    /// Time between snapshots (e.g. 500ms, 1s, 5m; at least 10ms)
    #[arg(long, value_parser = parse_interval, default_value = "1s")]
    pub interval: Duration,

    /// Stop after this long (e.g. 60s, 10m, 1h)
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many snapshots
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Store snapshots together once the oldest has waited this long (e.g. 5s, 1m; 0 stores
    /// each as it is taken). A process killed outright (SIGKILL, power loss) loses what waits;
    /// Ctrl-C and SIGTERM store it
    #[arg(long, value_parser = parse_commit_every, default_value = "5s", value_name = "DURATION")]
    pub commit_every: Duration,

    /// Replay snapshots recorded with --record instead of reading this host
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Also append every snapshot to FILE as JSON lines (for --replay)
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// How much of each process's command line to store: `name` keeps the program only
    /// (arguments can hold secrets, of any user's processes), `full` everything, `none` nothing
    #[arg(long, value_name = "full|name|none", default_value = "name")]
    pub cmdline: crate::capture::cmdline::CmdlinePolicy,

    /// Socket table reader [default: sockdiag on Linux, netstat2 elsewhere]
    #[arg(long, value_enum)]
    pub sockets: Option<SocketBackend>,

    /// Capture packets on this interface (lo, eth0, any, ...) into flows, as `import pcap` builds
    /// them, instead of taking socket snapshots; runs until Ctrl-C or --duration. Needs root or
    /// CAP_NET_RAW
    #[arg(long, value_name = "IFACE", conflicts_with_all = ["interval", "commit_every", "count", "replay", "record", "sockets"])]
    pub packets: Option<String>,

    /// With --packets: capture only what this BPF expression (tcpdump's syntax) matches
    #[arg(long, value_name = "EXPR", requires = "packets")]
    pub filter: Option<String>,

    /// With --packets: keep at most this many bytes of each frame [default: 262144]
    #[arg(long, value_name = "BYTES", requires = "packets")]
    pub snaplen: Option<u32>,

    /// With --packets: also write every captured packet to this pcap file
    #[arg(long, value_name = "FILE", requires = "packets")]
    pub write_pcap: Option<PathBuf>,

    /// With --packets: also write one row per packet into the packets table
    #[arg(long, requires = "packets")]
    pub packet_rows: bool,

    /// Do not print the summary at the end
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `export`.
#[derive(Debug, Args, Clone)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["table", "query"]))]
pub struct ExportArgs {
    /// Table or view to export
    #[arg(long)]
    pub table: Option<String>,

    /// Query whose result to export
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,

    /// Output file, or directory with --partition-by
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,

    /// File format [default: from the extension of --out, else parquet]
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,

    /// Write a Hive-partitioned Parquet tree by these columns (host and date are derived when
    /// the source lacks them), e.g. host,date
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub partition_by: Vec<String>,

    /// Replace an existing file (or, with --partition-by, the whole directory)
    #[arg(long)]
    pub overwrite: bool,
}

/// Options of `import`.
#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportCommand,
}

/// What `import` reads.
#[derive(Debug, Subcommand, Clone)]
pub enum ImportCommand {
    /// Build flows (Zeek conn.log fields) from pcap/pcapng capture files
    Pcap(PcapImportArgs),
    /// Read Zeek conn.log files (TSV or JSON) into flows
    Zeek(ZeekImportArgs),
    /// Load a CSV dataset (labelled or not) into a table of its own
    Csv(CsvImportArgs),
}

/// Options of `import pcap`.
#[derive(Debug, Args, Clone)]
pub struct PcapImportArgs {
    /// Capture files (pcap or pcapng; Ethernet, Linux cooked, raw IP or loopback link types)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Table receiving the flows (created with the columns of flows when missing)
    #[arg(long, default_value = "flows", value_name = "NAME")]
    pub table: String,

    /// Also write one row per packet into the packets table
    #[arg(long)]
    pub packets: bool,

    /// End flows idle this long, for every protocol [default: tcp 5m, udp 1m, icmp 1m, as Zeek]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,

    /// Idle timeout of TCP flows (overrides --idle-timeout)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub tcp_timeout: Option<Duration>,

    /// Idle timeout of UDP flows (overrides --idle-timeout)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub udp_timeout: Option<Duration>,

    /// Idle timeout of ICMP flows (overrides --idle-timeout)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub icmp_timeout: Option<Duration>,

    /// Check checksums as Zeek does without -C: a TCP segment or UDP datagram with a bad one
    /// counts nowhere but its flow's history (C/c), a bad ICMP message nowhere, and a bad IPv4
    /// header drops its packet. Off by default: a capture taken on a sending host holds its
    /// packets before the network card filled in their checksums
    #[arg(long)]
    pub verify_checksums: bool,

    /// No progress bar and no summary line (warnings are still printed)
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `import zeek`.
#[derive(Debug, Args, Clone)]
pub struct ZeekImportArgs {
    /// Zeek conn.log files, TSV or JSON
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// No progress bar and no summary line (warnings are still printed)
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `geo`. The source options are global, so they may also follow `geo lookup`.
#[derive(Debug, Args, Clone)]
pub struct GeoArgs {
    #[command(subcommand)]
    pub what: Option<GeoCommand>,

    /// Offline database (MaxMind GeoIP2/GeoLite2 or DB-IP .mmdb: country, city or ASN);
    /// repeatable, answers merged field by field in the order given
    #[arg(long, value_name = "PATH", global = true)]
    pub mmdb: Vec<PathBuf>,

    /// Online provider for public addresses the .mmdb files do not answer. Sends those
    /// addresses to a third party, so it is off unless chosen here or in NETLENS_GEO_PROVIDER
    #[arg(long, value_enum, env = "NETLENS_GEO_PROVIDER", default_value = "off", global = true)]
    pub provider: GeoProvider,

    /// Endpoint of the provider's batch API
    #[arg(
        long,
        env = "NETLENS_GEO_URL",
        default_value = "http://ip-api.com/batch",
        global = true
    )]
    pub url: String,

    /// Give up on a provider request after this long
    #[arg(long, value_parser = parse_duration, default_value = "10s", global = true)]
    pub timeout: Duration,

    /// Longest wait for the provider's rate limit to reset before giving up on the rest
    #[arg(long, value_parser = parse_duration, default_value = "60s", global = true)]
    pub max_wait: Duration,

    /// Look up again answers older than this (the geo table is the cache)
    #[arg(long, value_parser = parse_duration, default_value = "30d", global = true)]
    pub ttl: Duration,

    /// Look up every address again, whatever the cache holds
    #[arg(long, global = true)]
    pub refresh: bool,

    /// No summary line (warnings and errors are still printed)
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// Subcommands of `geo`; without one, `geo` fills the table for every pending remote address.
#[derive(Debug, Subcommand, Clone)]
pub enum GeoCommand {
    /// Look up the given addresses (always afresh), store and print the answers
    Lookup(GeoLookupArgs),
}

/// Arguments of `geo lookup`.
#[derive(Debug, Args, Clone)]
pub struct GeoLookupArgs {
    /// IPv4 or IPv6 addresses
    #[arg(required = true, value_name = "IP")]
    pub ips: Vec<String>,
}

/// Options of `import csv`.
#[derive(Debug, Args, Clone)]
#[command(group = clap::ArgGroup::new("names").args(["columns", "columns_file"]))]
#[command(group = clap::ArgGroup::new("existing").args(["append", "replace"]))]
pub struct CsvImportArgs {
    /// The CSV file (delimiter, quoting and column types are detected by DuckDB's CSV sniffer)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Table to create [default: the file name without extension, made a valid identifier]
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    /// Column names, in file order (comma-separated); must name every column
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub columns: Vec<String>,

    /// Read the column names from FILE: one name a line (the first comma-separated field of each
    /// line is taken), or a single comma-separated line
    #[arg(long, value_name = "FILE")]
    pub columns_file: Option<PathBuf>,

    /// The file has no header line: its first line is data [default: detected]
    #[arg(long)]
    pub no_header: bool,

    /// Add the rows to an existing table (matched by column name)
    #[arg(long)]
    pub append: bool,

    /// Drop and recreate an existing table
    #[arg(long)]
    pub replace: bool,

    /// No summary line
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `detect`.
#[derive(Debug, Args, Clone)]
#[command(group = clap::ArgGroup::new("start").args(["window", "since"]))]
pub struct DetectArgs {
    /// Detector to run (the table it writes), or all
    #[arg(value_enum)]
    pub detector: DetectorName,

    /// Data to analyse
    #[arg(long, value_enum, default_value = "auto")]
    pub on: DetectSource,

    /// Analyse only the last DURATION of the data, ending at --until (e.g. 1h, 1d) [default: all of it]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub window: Option<Duration>,

    /// Start of the analysed window, UTC (e.g. '2026-11-21 08:00:00')
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    pub since: Option<chrono::NaiveDateTime>,

    /// End of the analysed window, UTC [default: the newest data]
    #[arg(long, value_parser = parse_timestamp, value_name = "TIME")]
    pub until: Option<chrono::NaiveDateTime>,

    /// Rows of each result to print (0: none, only the summary line)
    #[arg(long, default_value_t = DetectRequest::DEFAULT_TOP, value_name = "N")]
    pub top: usize,

    /// Each detector's thresholds, flags built from the detector registry
    #[command(flatten)]
    pub thresholds: DetectorOptions,

    /// No summary line and no result rows
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Hours of host history to synthesize, ending now
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=168))]
    pub hours: u32,

    /// Time between synthetic snapshots
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub interval: Duration,

    /// Seed of the generator: the same seed and end time give the same database
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Rows of the labelled 10-feature dataset (demo_traffic)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(20..=10_000_000))]
    pub traffic_rows: u32,

    /// No progress bar and no summary
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `watch`.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Length of the baseline capture the models learn from
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub baseline: Duration,

    /// Time between snapshots, and the width of each judged window
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub interval: Duration,

    /// Number of segments (K-Means k), or auto for the elbow method
    #[arg(long, value_parser = parse_segments, default_value = "auto", value_name = "auto|K")]
    pub segments: Segments,

    /// Expected share of anomalies in the baseline (Isolation Forest threshold), above 0 and at most 0.5
    #[arg(long, default_value_t = 0.05, value_parser = parse_contamination)]
    pub contamination: f64,

    /// Seed of the models
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Prefix of the stored models' names (<NAME>_segments, <NAME>_iforest)
    #[arg(long, default_value = "watch", value_name = "NAME")]
    pub model: String,

    /// Stop after judging this many windows [default: until Ctrl-C]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: Option<u64>,

    /// Replay snapshots recorded with capture --record instead of reading this host
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Socket table reader [default: sockdiag on Linux, netstat2 elsewhere]
    #[arg(long, value_enum)]
    pub sockets: Option<SocketBackend>,
}

/// A share above 0 and at most 0.5, checked before any capture starts.
pub fn parse_contamination(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|c| *c > 0.0 && *c <= 0.5)
        .ok_or_else(|| format!("'{text}': expected the share of anomalies, above 0 and at most 0.5"))
}

/// A number of segments, or `None` for the elbow method's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments(pub Option<usize>);

/// `auto` or a positive number of segments.
pub fn parse_segments(text: &str) -> Result<Segments, String> {
    match text.trim() {
        "auto" => Ok(Segments(None)),
        t => t
            .parse::<usize>()
            .ok()
            .filter(|k| *k >= 1)
            .map(|k| Segments(Some(k)))
            .ok_or_else(|| format!("'{text}': expected auto or a number of segments (at least 1)")),
    }
}

/// Options of `insights`.
#[derive(Debug, Args, Clone)]
pub struct InsightsArgs {
    /// Output format of the findings [default: the session's]
    #[arg(long, value_enum)]
    pub format: Option<OutputMode>,
}

/// One shell dot command, parsed from the words after the dot.
#[derive(Debug, Parser)]
#[command(multicall = true, disable_help_subcommand = true)]
pub struct DotLine {
    #[command(subcommand)]
    pub command: DotCommand,
}

/// The shell's dot commands.
#[derive(Debug, Subcommand)]
pub enum DotCommand {
    /// List commands, or show one command's full help
    Help { pattern: Option<String> },
    /// List tables and views (names matching a LIKE pattern)
    Tables { pattern: Option<String> },
    /// Show CREATE statements and column comments (of one table)
    Schema { table: Option<String> },
    /// Set the output format
    Mode {
        #[arg(value_enum)]
        mode: OutputMode,
    },
    /// Show or hide column headers
    Headers {
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Send output to FILE, or back to standard output without one
    Output { file: Option<PathBuf> },
    /// Send only the next statement's output to FILE
    Once { file: PathBuf },
    /// Print each statement's run time
    Timer {
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Show at most N rows in table and line modes (0: all)
    Maxrows { rows: usize },
    /// Run the SQL and dot commands in FILE
    Read { file: PathBuf },
    /// Stop a script at its first error
    Bail {
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Draw a query's result in the terminal: .chart bar|line|hist|scatter [--width N]
    /// [--height N] [--bins N] SQL (bar: label, value; line and scatter: x, y[, series]; hist:
    /// the first numeric column)
    Chart {
        #[arg(value_enum)]
        kind: ChartKind,
        /// Characters wide [default: the terminal's width, or 80]
        #[arg(long)]
        width: Option<usize>,
        /// Rows high (line and scatter)
        #[arg(long, default_value_t = 16)]
        height: usize,
        /// Bins (hist)
        #[arg(long, default_value_t = 20)]
        bins: usize,
        /// The query (the rest of the line, as written)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        sql: Vec<String>,
    },
    /// Leave the shell
    #[command(alias = "exit")]
    Quit,
    #[command(flatten)]
    Domain(DomainCommand),
}

/// Parses `500ms`, `2s`, `5m`, `1h`, `1d` or a bare number of seconds; must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; write e.g. 500ms, 2s, 5m, 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("unknown unit '{other}' in '{text}'; use ms, s, m, h or d")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("'{text}' must be longer than zero"));
    }
    if seconds > 366.0 * 86400.0 {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A capture's time between snapshots: a duration of at least 10 ms. Shorter ones round to
/// nothing (`0.0000000001` was zero, and the capture looped without ever waiting); collecting
/// a snapshot takes milliseconds anyway.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "'{text}': snapshots can be at most 100 a second; give an interval of 10ms or more"
        ));
    }
    Ok(d)
}

/// `--commit-every`: how long snapshots wait to be stored together; `0` stores each as it is
/// taken. At most 10 minutes: that is what a process killed outright loses.
pub fn parse_commit_every(text: &str) -> Result<Duration, String> {
    if text.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = parse_duration(text)?;
    if d > Duration::from_secs(600) {
        return Err(format!(
            "'{text}': snapshots would wait that long in memory, and be lost if the process is killed; \
             give at most 10m (0 stores each snapshot as it is taken)"
        ));
    }
    Ok(d)
}

/// Parses a UTC time: `2026-11-21 08:00:00`, with `T` instead of the space, fractional seconds,
/// or a bare date (midnight).
pub fn parse_timestamp(text: &str) -> Result<chrono::NaiveDateTime, String> {
    let t = text.trim().trim_end_matches(" UTC").trim_end_matches('Z');
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(ts) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Ok(ts);
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| format!("'{text}' is not a UTC time; write e.g. '2026-11-21 08:00:00' or 2026-11-21"))
}

/// How a command's reply is shown: the command-line options that only change printing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presentation {
    /// Leave out summary lines and summary rows (warnings are still shown).
    pub quiet: bool,
    /// Output format of the rows, in place of the session's.
    pub format: Option<OutputMode>,
}

impl DomainCommand {
    /// The plain request this command line stands for, and how to show its reply. Options are
    /// checked here, before anything runs.
    pub fn into_request(self) -> crate::error::Result<(Request, Presentation)> {
        let quiet = |quiet: bool| Presentation { quiet, format: None };
        Ok(match self {
            DomainCommand::Capture(a) => (
                Request::Capture(CaptureRequest {
                    interval: a.interval,
                    commit_every: a.commit_every,
                    duration: a.duration,
                    count: a.count,
                    replay: a.replay,
                    record: a.record,
                    sockets: a.sockets,
                    cmdline: a.cmdline,
                    packets: a.packets.map(|interface| PacketCaptureRequest {
                        interface,
                        filter: a.filter,
                        snaplen: a.snaplen.unwrap_or(DEFAULT_SNAPLEN),
                        write_pcap: a.write_pcap,
                        packet_rows: a.packet_rows,
                        duration: a.duration,
                    }),
                    flag_findings: !a.quiet,
                }),
                quiet(a.quiet),
            ),
            DomainCommand::Export(a) => {
                let source = match (a.table, a.query) {
                    (Some(t), None) => ExportSource::Table(t),
                    (None, Some(q)) => ExportSource::Query(q),
                    _ => {
                        return Err(Error::Usage(
                            "export needs exactly one of --table or --query".to_string(),
                        ))
                    }
                };
                let request = ExportRequest {
                    format: a.format.unwrap_or_else(|| ExportFormat::from_path(&a.out)),
                    source,
                    out: a.out,
                    partition_by: a.partition_by.into_iter().filter(|c| !c.trim().is_empty()).collect(),
                    overwrite: a.overwrite,
                };
                (Request::Export(request), quiet(false))
            }
            DomainCommand::Import(a) => match a.what {
                ImportCommand::Pcap(p) => (
                    Request::Import(ImportRequest::Pcap(PcapImport {
                        files: p.files,
                        table: p.table,
                        packets: p.packets,
                        idle_timeout: p.idle_timeout,
                        tcp_timeout: p.tcp_timeout,
                        udp_timeout: p.udp_timeout,
                        icmp_timeout: p.icmp_timeout,
                        verify_checksums: p.verify_checksums,
                    })),
                    quiet(p.quiet),
                ),
                ImportCommand::Zeek(z) => (
                    Request::Import(ImportRequest::Zeek(ZeekImport { files: z.files })),
                    quiet(z.quiet),
                ),
                ImportCommand::Csv(c) => (
                    Request::Import(ImportRequest::Csv(CsvImport {
                        file: c.file,
                        table: c.table,
                        columns: c.columns,
                        columns_file: c.columns_file,
                        no_header: c.no_header,
                        append: c.append,
                        replace: c.replace,
                    })),
                    quiet(c.quiet),
                ),
            },
            DomainCommand::Geo(g) => (
                Request::Geo(crate::request::GeoCommand {
                    sources: GeoRequest {
                        mmdb: g.mmdb,
                        provider: g.provider,
                        url: g.url,
                        timeout: g.timeout,
                        max_wait: g.max_wait,
                        ttl: g.ttl,
                        refresh: g.refresh,
                    },
                    lookup: g.what.map(|GeoCommand::Lookup(l)| l.ips),
                }),
                quiet(g.quiet),
            ),
            DomainCommand::Demo(d) => (
                Request::Demo(DemoRequest {
                    hours: d.hours,
                    interval: d.interval,
                    seed: d.seed,
                    traffic_rows: d.traffic_rows,
                }),
                quiet(d.quiet),
            ),
            DomainCommand::Train(t) => (
                Request::Train(TrainRequest {
                    stage: t.stage,
                    source: t.on,
                    selection: crate::analysis::features::Selection {
                        features: t.features.into_iter().filter(|c| !c.trim().is_empty()).collect(),
                        exclude: t.exclude.into_iter().filter(|c| !c.trim().is_empty()).collect(),
                        id: t.id,
                        label: t.label,
                    },
                    model: t.model,
                    seed: t.seed,
                    set: crate::analysis::parse_set(&t.set)?,
                }),
                quiet(false),
            ),
            DomainCommand::Score(s) => (
                Request::Score(ScoreRequest {
                    model: s.model,
                    source: s.on,
                    into: s.into,
                    label: s.label,
                    id: s.id,
                }),
                quiet(false),
            ),
            DomainCommand::Calibrate(c) => (
                Request::Calibrate(crate::analysis::calibration::CalibrateRequest {
                    model: c.model,
                    source: c.on,
                    time_column: c.time_column,
                    from: c.from,
                    to: c.to,
                    alarm_rate: c.alarm_rate,
                }),
                quiet(false),
            ),
            DomainCommand::Retrain(r) => (Request::Retrain { target: r.target }, quiet(false)),
            DomainCommand::Explain(e) => (
                Request::Explain(crate::analysis::explain::ExplainRequest {
                    target: e.target,
                    source: e.on,
                    label: e.label,
                    id: e.id,
                    sample: e.sample,
                    repeats: e.repeats,
                    top: e.top,
                    seed: e.seed,
                }),
                quiet(false),
            ),
            DomainCommand::Models(m) => (Request::Models { all: m.all }, quiet(false)),
            DomainCommand::Stages => (Request::Stages, quiet(false)),
            DomainCommand::Detect(d) => (Request::Detect(d.into_request()?), quiet(d.quiet)),
            DomainCommand::Watch(w) => (
                Request::Watch(WatchRequest {
                    baseline: w.baseline,
                    interval: w.interval,
                    segments: w.segments.0,
                    contamination: w.contamination,
                    seed: w.seed,
                    model: w.model,
                    windows: w.windows,
                    replay: w.replay,
                    sockets: w.sockets,
                }),
                quiet(false),
            ),
            DomainCommand::Retain(r) => (Request::Retain(r.into_request()), quiet(false)),
            DomainCommand::Report(r) => (
                Request::Report(crate::report::html::ReportRequest {
                    format: crate::report::html::ReportFormat::from_path(&r.out),
                    out: r.out,
                    since: r.since,
                    until: r.until,
                }),
                quiet(false),
            ),
            DomainCommand::Feedback(f) => (
                Request::Feedback(crate::feedback::FeedbackRequest {
                    subject: f.subject,
                    run_id: f.run,
                    row_key: f.row_key,
                    label: if f.true_positive {
                        crate::feedback::Label::TruePositive
                    } else {
                        crate::feedback::Label::FalsePositive
                    },
                    note: f.note,
                    analyst: std::env::var("USER").ok().filter(|u| !u.is_empty()),
                }),
                quiet(false),
            ),
            DomainCommand::Insights(i) => (
                Request::Insights,
                Presentation {
                    quiet: false,
                    format: i.format,
                },
            ),
        })
    }
}

impl DetectArgs {
    /// The detector run these options ask for (`detect` checks the thresholds' ranges, for
    /// requests from every client alike).
    pub fn into_request(&self) -> crate::error::Result<DetectRequest> {
        Ok(DetectRequest {
            detector: self.detector,
            on: self.on,
            window: self.window,
            since: self.since,
            until: self.until,
            top: self.top,
            ..(*self.thresholds.request).clone()
        })
    }
}

/// The detectors' thresholds as `detect` got them: one flag for each [`Param`] of the detector
/// registry, which declares the flag, its help, default and range; the flags are built here
/// from it, so a detector's option exists in one place.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// A request with every threshold set by its `Param` to the value given or its default;
    /// its other fields are `DetectArgs`' to fill (boxed: every command enum holds one).
    request: Box<DetectRequest>,
}

/// Every detector's options, in registry order.
fn registry_params() -> impl Iterator<Item = &'static Param> {
    crate::detect::DETECTORS.iter().flat_map(|d| d.params())
}

/// A duration as `parse_duration` reads it back, in the largest whole unit.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// An option's default as `detect --help` shows it and clap parses it back.
fn default_text(values: Values) -> String {
    match values {
        Values::Count { default, .. } => default.to_string(),
        Values::Number { default, .. } => default.to_string(),
        Values::Duration { default, .. } => duration_text(default),
        Values::Weights { default, .. } => default.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
    }
}

/// The flag of one registry option (`default` is [`default_text`] of it: clap keeps defaults
/// as `&'static str`, so the texts are made once per process).
fn threshold_arg(param: &'static Param, default: &'static str) -> clap::Arg {
    let long = param.flag.trim_start_matches("--");
    let arg = clap::Arg::new(long)
        .long(long)
        .help(param.help)
        .value_name(param.value_name)
        .default_value(default);
    match param.values {
        Values::Count { min, max, .. } => arg.value_parser(clap::value_parser!(u64).range(min..=max)),
        // Ranges of numbers are checked by `detect` for every client, with the flag named.
        Values::Number { .. } => arg.value_parser(clap::value_parser!(f64)),
        Values::Duration { .. } => arg.value_parser(parse_duration),
        Values::Weights { .. } => arg
            .value_parser(clap::value_parser!(f64))
            .value_delimiter(',')
            .action(clap::ArgAction::Append),
    }
}

impl clap::Args for DetectorOptions {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        static DEFAULTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let defaults = DEFAULTS.get_or_init(|| registry_params().map(|p| default_text(p.values)).collect());
        cmd.args(registry_params().zip(defaults).map(|(p, d)| threshold_arg(p, d)))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for DetectorOptions {
    fn from_arg_matches(matches: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        let missing = |param: &Param| {
            clap::Error::raw(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!("{} has no value", param.flag),
            )
        };
        let mut request = DetectRequest::default();
        for param in registry_params() {
            let id = param.flag.trim_start_matches("--");
            match param.values {
                Values::Count { set, .. } => {
                    set(&mut request, *matches.get_one::<u64>(id).ok_or_else(|| missing(param))?)
                }
                Values::Number { set, .. } => {
                    set(&mut request, *matches.get_one::<f64>(id).ok_or_else(|| missing(param))?)
                }
                Values::Duration { set, .. } => set(
                    &mut request,
                    *matches.get_one::<Duration>(id).ok_or_else(|| missing(param))?,
                ),
                Values::Weights { set, .. } => set(
                    &mut request,
                    matches
                        .get_many::<f64>(id)
                        .ok_or_else(|| missing(param))?
                        .copied()
                        .collect(),
                ),
            }
        }
        Ok(DetectorOptions {
            request: Box::new(request),
        })
    }
    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn serve_names_its_own_option_for_a_bad_rollup_bucket() {
        let cli = Cli::try_parse_from(["netlens", "serve", "--retain", "2h", "--rollup-bucket", "10s"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("not serve");
        };
        let e = args
            .into_options(crate::store::Location::File("/nonexistent/x.db".into()))
            .expect_err("10 s is not whole minutes")
            .to_string();
        assert!(e.contains("--rollup-bucket 10s"), "{e}");
        assert!(!e.contains("--bucket"), "{e}");
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2026-11-21 08:00:01.5").unwrap();
        assert_eq!(t.to_string(), "2026-11-21 08:00:01.500");
        assert_eq!(
            parse_timestamp("2026-11-21T08:00:00Z").unwrap().to_string(),
            "2026-11-21 08:00:00"
        );
        assert_eq!(
            parse_timestamp("2026-11-21").unwrap().to_string(),
            "2026-11-21 00:00:00"
        );
        assert!(parse_timestamp("yesterday").unwrap_err().contains("not a UTC time"));
    }

    #[test]
    fn detect_names_are_table_names() {
        let cli = Cli::try_parse_from(["netlens", "detect", "port_scans", "--on", "flows", "--window", "1h"]).unwrap();
        let Some(Command::Domain(DomainCommand::Detect(a))) = cli.command else {
            panic!()
        };
        assert_eq!((a.detector.as_str(), a.on), ("port_scans", DetectSource::Flows));
        assert_eq!(a.into_request().unwrap().beacon_weights, vec![0.25; 4]);
        assert!(DotLine::try_parse_from(["detect", "long_connections", "--long-min", "2h"]).is_ok());
        assert!(DotLine::try_parse_from(["detect", "beacons", "--beacon-min-connections", "3"]).is_err());
        assert!(DotLine::try_parse_from(["detect", "all", "--window", "1h", "--since", "2026-01-01"]).is_err());
    }

    /// Every option the detector registry describes is a flag of `detect` with the registry's
    /// default, and the command line refuses a count outside the registry's range as `detect`
    /// does for other clients.
    #[test]
    fn detect_flags_follow_the_detector_registry() {
        let command = Cli::command();
        let detect = command.find_subcommand("detect").unwrap();
        let names: Vec<String> = DetectorName::value_variants()
            .iter()
            .map(|n| n.as_str().to_string())
            .collect();
        assert_eq!(names, ["port_scans", "beacons", "bursts", "long_connections", "all"]);
        for d in crate::detect::DETECTORS {
            for p in d.params() {
                let long = p.flag.trim_start_matches("--");
                assert!(
                    detect.get_arguments().any(|a| a.get_long() == Some(long)),
                    "{}: {} is not a flag of detect",
                    d.name(),
                    p.flag
                );
                if let Values::Count { min, max, .. } = p.values {
                    let parses = |n: u64| DotLine::try_parse_from(["detect", d.name(), p.flag, &n.to_string()]).is_ok();
                    assert!(parses(min) && parses(max), "{} {min} {max}", p.flag);
                    if min > 0 {
                        assert!(!parses(min - 1), "{} {}", p.flag, min - 1);
                    }
                    if max < u64::MAX {
                        assert!(!parses(max + 1), "{} {}", p.flag, max + 1);
                    }
                }
            }
        }
    }

    /// Each flag of `detect` sets its own field of the request and no other: a value unlike its
    /// default, given alone, changes exactly one field of the request's JSON, and every
    /// threshold field is some flag's.
    #[test]
    fn each_threshold_flag_sets_one_field_of_the_request() {
        let plain = DetectRequest::defaults(DetectorName::All, None);
        let fields = |r: &DetectRequest| match serde_json::to_value(r).unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("{other}"),
        };
        let defaults = fields(&plain);
        let mut covered = std::collections::BTreeSet::new();
        for p in registry_params() {
            let value = match p.values {
                Values::Count { min, default, .. } => (default.max(min) + 1).to_string(),
                Values::Number { default, .. } => (default / 2.0 + 0.125).to_string(),
                Values::Duration { default, .. } => duration_text(default * 2),
                Values::Weights { .. } => "0.1,0.2,0.3,0.4".to_string(),
            };
            let cli = Cli::try_parse_from(["netlens", "detect", "all", p.flag, &value]).unwrap();
            let Some(Command::Domain(DomainCommand::Detect(args))) = cli.command else {
                panic!()
            };
            let request = args.into_request().unwrap();
            let changed: Vec<String> = fields(&request)
                .into_iter()
                .filter(|(k, v)| defaults.get(k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            assert_eq!(changed.len(), 1, "{} {value} changed {changed:?}", p.flag);
            assert!(
                covered.insert(changed[0].clone()),
                "{} sets {} again",
                p.flag,
                changed[0]
            );
        }
        let not_thresholds = ["detector", "on", "window", "since", "until", "top"];
        let uncovered: Vec<&String> = defaults
            .keys()
            .filter(|k| !covered.contains(*k) && !not_thresholds.contains(&k.as_str()))
            .collect();
        assert!(uncovered.is_empty(), "fields no flag sets: {uncovered:?}");
    }

    /// A request's JSON without some threshold (from an older client) takes the registry's
    /// default; one without a detector runs all of them.
    #[test]
    fn a_request_missing_fields_takes_the_defaults() {
        let request: DetectRequest = serde_json::from_str(r#"{"detector": "beacons", "beacon_bins": 48}"#).unwrap();
        let mut expected = DetectRequest::defaults(DetectorName::parse("beacons").unwrap(), None);
        expected.beacon_bins = 48;
        assert_eq!(request, expected);
        let all: DetectRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(all, DetectRequest::defaults(DetectorName::All, None));
    }

    #[test]
    fn durations_print_as_they_parse() {
        for secs in [1, 59, 60, 300, 3600, 5400, 86_400, 90_061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&duration_text(d)).unwrap(), d, "{secs}");
        }
        assert_eq!(duration_text(Duration::from_secs(300)), "5m");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").unwrap_err().contains("longer than zero"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").unwrap_err().contains("unknown unit"));
    }

    /// The server's scheduled jobs use the domain's defaults: they must be the command line's.
    #[test]
    fn scheduled_jobs_use_the_command_line_defaults() {
        let cli = Cli::try_parse_from(["netlens", "detect", "all", "--window", "1d"]).unwrap();
        let Some(Command::Domain(command)) = cli.command else {
            panic!()
        };
        let (request, _) = command.into_request().unwrap();
        assert_eq!(
            request,
            Request::Detect(DetectRequest::defaults(
                DetectorName::All,
                Some(Duration::from_secs(86_400))
            ))
        );
        let cli = Cli::try_parse_from(["netlens", "geo", "--mmdb", "a.mmdb"]).unwrap();
        let Some(Command::Domain(command)) = cli.command else {
            panic!()
        };
        let (Request::Geo(geo), _) = command.into_request().unwrap() else {
            panic!()
        };
        assert_eq!(geo.sources, GeoRequest::offline(vec![PathBuf::from("a.mmdb")]));
    }

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
        DotLine::command().debug_assert();
    }

    #[test]
    fn the_same_grammar_parses_command_line_and_dot_commands() {
        let cli = Cli::try_parse_from(["netlens", "capture", "--count", "3", "--interval", "2s"]).unwrap();
        let Some(Command::Domain(DomainCommand::Capture(a))) = cli.command else {
            panic!()
        };
        let dot = DotLine::try_parse_from(["capture", "--count", "3", "--interval", "2s"]).unwrap();
        let DotCommand::Domain(DomainCommand::Capture(b)) = dot.command else {
            panic!()
        };
        assert_eq!((a.count, a.interval), (b.count, b.interval));
        assert!(
            DotLine::try_parse_from(["export", "--out", "x.parquet"]).is_err(),
            "needs --table or --query"
        );
    }

    #[test]
    fn geo_options_go_before_or_after_lookup() {
        for words in [
            &["geo", "--mmdb", "a.mmdb", "lookup", "1.2.3.4", "::1"][..],
            &["geo", "lookup", "--mmdb", "a.mmdb", "1.2.3.4", "::1"][..],
        ] {
            let dot = DotLine::try_parse_from(words).unwrap();
            let DotCommand::Domain(DomainCommand::Geo(g)) = dot.command else {
                panic!()
            };
            assert_eq!(g.mmdb, vec![PathBuf::from("a.mmdb")]);
            let Some(GeoCommand::Lookup(l)) = g.what else { panic!() };
            assert_eq!(l.ips, ["1.2.3.4", "::1"]);
        }
        let cli = Cli::try_parse_from(["netlens", "geo"]).unwrap();
        let Some(Command::Domain(DomainCommand::Geo(g))) = cli.command else {
            panic!()
        };
        assert!(g.what.is_none());
        assert_eq!(g.ttl, Duration::from_secs(30 * 86400));
        assert!(
            DotLine::try_parse_from(["geo", "lookup"]).is_err(),
            "lookup needs an address"
        );
    }
}
