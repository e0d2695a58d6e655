//! `netlens serve`: one long-running process owns the database, so recording and asking happen
//! at the same time. It captures snapshots on a thread of its own, runs scheduled work
//! (`--every detect=5m`), and answers clients over Arrow Flight SQL ([`flight`]) on a Unix
//! socket beside the database (mode 0600, peers checked to be this user or root). Every netlens
//! command finds that socket and goes through it ([`client`]); other Flight SQL clients (the
//! tests use Python's ADBC driver) can ask it too.
//!
//! Concurrency is DuckDB's own: every client session, the capture and each scheduled job get a
//! connection of their own to the one database instance (MVCC transactions), so a long query
//! never delays a snapshot. Results stream as the record batches DuckDB produces.
//!
//! May use the store, the request layer and every domain module through it; never `cli` or
//! `shell`.

pub mod access;
pub mod client;
pub mod flight;
pub mod http;
#[cfg(target_os = "linux")]
mod residency;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::capture::fixture::{FixtureSource, Recorder};
use crate::capture::packets::{self, PacketCaptureRequest};
use crate::capture::persist::Stored;
use crate::capture::run::{self, Observer, Pace, RunReport};
use crate::capture::system::{SocketBackend, SystemSource};
use crate::capture::Source;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::request::{self, CollectGaps, Request};
use crate::store::{Location, Store, REATTACH_ROWS};

/// What `netlens serve` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    pub location: Location,
    /// Capture this host (or replay a recording); `None` serves the file as it is.
    pub capture: Option<CaptureSchedule>,
    /// Live packets into flows (`--packets IFACE`), beside the snapshots.
    pub packets: Option<PacketCaptureRequest>,
    /// Scheduled work, each at its own interval.
    pub every: Vec<Job>,
    /// Offline geolocation databases for the scheduled `geo` job.
    pub mmdb: Vec<PathBuf>,
    /// DuckDB's memory limit for the whole instance (`512MB`), checked by the command line.
    pub memory_limit: Option<String>,
    /// Flight SQL on TCP too, for remote clients with the token.
    pub listen: Option<access::Listen>,
    /// The dashboard (HTTP), for browsers with the token.
    pub http: Option<access::Listen>,
    /// What remote clients may do.
    pub remote: access::RemoteAccess,
    /// What the scheduled `retain` job keeps.
    pub retain: Option<crate::retention::RetainRequest>,
}

impl ServeOptions {
    /// True when anything listens beyond the Unix socket.
    pub fn listens_on_tcp(&self) -> bool {
        self.listen.is_some() || self.http.is_some()
    }
}

/// The server's capture: snapshots at an interval, for as long as the server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSchedule {
    pub interval: Duration,
    /// How long snapshots wait to be stored together (`--commit-every`).
    pub commit_every: Duration,
    pub sockets: Option<SocketBackend>,
    pub replay: Option<PathBuf>,
    pub record: Option<PathBuf>,
    /// How much of each process's command line is stored.
    pub cmdline: crate::capture::cmdline::CmdlinePolicy,
}

/// Work the server runs by itself at an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Every detector over the newest day of data.
    Detect,
    /// Geolocate the remote addresses not yet in `geo`.
    Geo,
    /// Refit every stored model on the newest data.
    Retrain,
    /// Compute the findings (logged; `netlens insights` shows them).
    Insights,
    /// Roll up and delete old raw rows (`--retain`).
    Retain,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Detect,
        JobKind::Geo,
        JobKind::Retrain,
        JobKind::Insights,
        JobKind::Retain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Detect => "detect",
            JobKind::Geo => "geo",
            JobKind::Retrain => "retrain",
            JobKind::Insights => "insights",
            JobKind::Retain => "retain",
        }
    }
}

/// A job and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub kind: JobKind,
    pub every: Duration,
}

/// The Unix socket of the server holding `db`: the database's path with `.sock` appended.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".sock");
    PathBuf::from(p)
}

/// The database file's path and the socket of the server that would hold it; `None` for an
/// in-memory database, which no server can hold. The path is the file's own, symbolic links
/// resolved (the directory's, for a file not made yet): a client naming the file through a link
/// finds the server that opened it by its real name, and the other way round.
pub fn endpoint(location: &Location) -> Result<Option<(PathBuf, PathBuf)>> {
    let Location::File(path) = location else {
        return Ok(None);
    };
    let mut absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    // A link to a file not made yet: the file the server makes is its target's (at most 40
    // links followed, as the kernel does).
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&absolute) else {
            break;
        };
        absolute = absolute.parent().map_or(target.clone(), |dir| dir.join(&target));
    }
    let database = std::fs::canonicalize(&absolute).unwrap_or_else(|_| {
        match (absolute.parent().map(std::fs::canonicalize), absolute.file_name()) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => absolute.clone(),
        }
    });
    let socket = socket_path(&database);
    Ok(Some((database, socket)))
}

/// What `netlens status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub pid: u32,
    pub version: String,
    pub database: String,
    pub socket: String,
    /// The TCP address of Flight SQL for remote clients (`--listen`), as a URL.
    #[serde(default)]
    pub listen: Option<String>,
    /// The dashboard's address (`--http`).
    #[serde(default)]
    pub http: Option<String>,
    /// DuckDB's file functions are confined to these directories (any TCP listener on).
    #[serde(default)]
    pub files_confined_to: Option<Vec<String>>,
    pub started_at: String,
    pub uptime_s: f64,
    /// Bytes of the database file and its WAL.
    pub database_bytes: u64,
    pub capture: Option<CaptureStatus>,
    /// The live packet capture (`--packets IFACE`).
    #[serde(default)]
    pub packets: Option<PacketCaptureStatus>,
    pub schedule: Vec<JobStatus>,
    pub clients: ClientStatus,
    /// The newest error of the capture or a scheduled job, with its time.
    pub last_error: Option<String>,
}

impl ServerStatus {
    /// The status as aligned `key: value` lines, for people.
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            ("server", format!("pid {}, netlens {}", self.pid, self.version)),
            (
                "database",
                format!("{} ({})", self.database, human_bytes(self.database_bytes)),
            ),
            ("socket", self.socket.clone()),
        ];
        if let Some(listen) = &self.listen {
            lines.push(("listen", format!("{listen} (bearer token)")));
        }
        if let Some(http) = &self.http {
            lines.push(("dashboard", format!("{http} (token in the database's .token file)")));
        }
        if let Some(dirs) = &self.files_confined_to {
            lines.push((
                "files",
                if dirs.is_empty() {
                    "DuckDB file functions off (TCP listener on; --files DIR allows one)".to_string()
                } else {
                    format!("DuckDB file functions only in {}", dirs.join(", "))
                },
            ));
        }
        lines.extend([(
            "up since",
            format!("{} ({})", self.started_at, human_duration(self.uptime_s)),
        )]);
        match &self.capture {
            Some(c) => lines.push((
                "capture",
                format!(
                    "{} every {} ({}), {}: {} snapshots, {} socket rows stored{}{}",
                    c.source,
                    human_duration(c.interval_s),
                    if c.commit_every_s > 0.0 {
                        format!("stored together within {}", human_duration(c.commit_every_s))
                    } else {
                        "each stored as taken".to_string()
                    },
                    if c.running { "running" } else { "stopped" },
                    c.snapshots,
                    c.socket_rows,
                    c.last_snapshot_at
                        .as_ref()
                        .map(|t| format!(", last at {t} (id {})", c.last_snapshot_id.unwrap_or_default()))
                        .unwrap_or_default(),
                    if c.late_snapshots > 0 {
                        format!(", {} late", c.late_snapshots)
                    } else {
                        String::new()
                    }
                ),
            )),
            None => lines.push(("capture", "off (--no-capture)".to_string())),
        }
        if let Some(p) = &self.packets {
            let counter = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
            lines.push((
                "packets",
                format!(
                    "{}{}, {}: {} packets, {} flows stored, {} open; kernel: {} received, {} dropped{}",
                    p.interface,
                    p.filter.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
                    match &p.stop_reason {
                        None => "running".to_string(),
                        Some(reason) => format!("stopped ({reason})"),
                    },
                    p.packets,
                    p.flows,
                    p.active_flows,
                    counter(p.kernel_received),
                    counter(p.kernel_dropped),
                    p.import_id.map(|id| format!("; import id {id}")).unwrap_or_default()
                ),
            ));
        }
        if self.schedule.is_empty() {
            lines.push(("schedule", "nothing scheduled (--every JOB=DURATION)".to_string()));
        }
        for job in &self.schedule {
            lines.push((
                "schedule",
                format!(
                    "{} every {}: {} runs{}{}",
                    job.job,
                    human_duration(job.every_s),
                    job.runs,
                    job.last_run_at
                        .as_ref()
                        .map(|t| format!(", last at {t}: {}", job.last_result.as_deref().unwrap_or("")))
                        .unwrap_or_default(),
                    job.next_run_in_s
                        .map(|s| format!(", next in {}", human_duration(s)))
                        .unwrap_or_default()
                ),
            ));
        }
        lines.push((
            "clients",
            format!(
                "{} sessions open, {} queries running; {} queries and {} commands served",
                self.clients.sessions,
                self.clients.queries_running,
                self.clients.queries_served,
                self.clients.requests_served
            ),
        ));
        lines.push((
            "last error",
            self.last_error.clone().unwrap_or_else(|| "none".to_string()),
        ));
        lines.into_iter().map(|(k, v)| format!("{k:<11} {v}\n")).collect()
    }
}

fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}

fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// The capture's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureStatus {
    pub interval_s: f64,
    /// `--commit-every`: how long a snapshot may wait to be stored with the next ones; 0 stores
    /// each as it is taken.
    #[serde(default)]
    pub commit_every_s: f64,
    pub source: String,
    /// Snapshots this server stored.
    pub snapshots: u64,
    pub socket_rows: u64,
    pub last_snapshot_id: Option<i64>,
    /// When the newest snapshot was stored.
    pub last_snapshot_at: Option<String>,
    /// Snapshots that started later than one interval after the one before.
    pub late_snapshots: u64,
    pub running: bool,
}

/// The server's live packet capture: its interface and the counters its `packet_captures` and
/// `imports` rows get when it ends, as of about a second ago.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PacketCaptureStatus {
    pub interface: String,
    pub filter: Option<String>,
    /// Its `imports.import_id`, once it started.
    pub import_id: Option<i64>,
    pub packets: u64,
    pub flows: u64,
    pub active_flows: u64,
    pub kernel_received: Option<u64>,
    pub kernel_dropped: Option<u64>,
    /// Why it stopped; `None` while it runs.
    pub stop_reason: Option<String>,
}

/// One scheduled job's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: String,
    pub every_s: f64,
    pub runs: u64,
    pub last_run_at: Option<String>,
    pub last_result: Option<String>,
    pub next_run_in_s: Option<f64>,
}

/// Client counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientStatus {
    /// Sessions (netlens shells and one-shot runs) open now.
    pub sessions: usize,
    /// Queries streaming now.
    pub queries_running: u64,
    pub queries_served: u64,
    pub requests_served: u64,
}

/// Everything the server's threads share.
pub struct Shared {
    /// The first connection; every other one is cloned from it.
    root: Mutex<Store>,
    pub(crate) started: Instant,
    database: PathBuf,
    status: Mutex<ServerStatus>,
    /// Held while a command or scheduled job runs: their run, import and model ids are the next
    /// after the largest stored, so two at once could take the same. Queries never wait for it.
    pub(crate) commands: Mutex<()>,
    /// Held shared by every client statement, command, dashboard query, scheduled job and the
    /// live packet capture while it uses the database ([`Shared::using_database`]); the capture
    /// (or, without one, the upkeep thread) takes it alone, only when nobody holds it, for the
    /// moment it empties DuckDB's cache or attaches the file again ([`release_cache`]).
    in_use: std::sync::RwLock<()>,
    /// `--memory-limit`, which the cache's release puts back; `None`: DuckDB's default.
    memory_limit: Option<String>,
    /// The limit as DuckDB showed it once the server had set it: when it shows otherwise,
    /// someone changed it, and the cache's release leaves it alone.
    memory_limit_shown: std::sync::OnceLock<String>,
    /// The cache's release lowered the limit and could not put it back yet.
    limit_lowered: std::sync::atomic::AtomicBool,
    /// Whether the live packet capture (`--packets`) stores a row per packet as well as its
    /// flows: what it stored counts towards attaching the file again.
    packet_rows: bool,
    /// The live packet capture's rows already counted in `rows_since_attach`.
    packet_rows_counted: AtomicU64,
    /// Rows the capture stored since the file was last attached ([`Shared::release_cache`]).
    rows_since_attach: std::sync::atomic::AtomicUsize,
    /// True while the file is detached because attaching it again failed: the live packet
    /// capture waits before it writes.
    database_detached: std::sync::atomic::AtomicBool,
    /// True while the snapshot capture runs: it does the upkeep between its snapshots, and the
    /// upkeep thread (`--packets`) only once it has ended.
    capturing_snapshots: std::sync::atomic::AtomicBool,
    /// The connections of the Flight SQL sessions, which may hold a transaction open between
    /// their statements ([`Shared::no_session_in_transaction`]). Apart from the Flight service's
    /// map of sessions, which is held while a session's connection is made (and so the root):
    /// the release, which holds the root, looks here without that lock-order inversion.
    session_stores: Mutex<Vec<std::sync::Weak<Mutex<Store>>>>,
    pub(crate) queries_running: AtomicU64,
    pub(crate) queries_served: AtomicU64,
    pub(crate) requests_served: AtomicU64,
    /// Flight SQL sessions open.
    pub(crate) sessions: std::sync::atomic::AtomicUsize,
    /// The last error logged, when, and how often it came again since without being logged.
    repeated_error: Mutex<Option<(String, Instant, u64)>>,
    /// What happened (snapshots stored, jobs run), for the dashboard's live pages.
    pub(crate) events: tokio::sync::broadcast::Sender<ServerEvent>,
    /// The live packet capture's counters (`--packets`).
    packet_counters: Arc<packets::LiveCounters>,
}

/// Something a live page refreshes on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerEvent {
    /// `snapshot` or `job`.
    pub kind: &'static str,
    pub data: serde_json::Value,
}

impl Shared {
    /// A new connection to the database, for a client session or a job.
    pub fn connect(&self) -> Result<Store> {
        let mut root = self.root.lock().map_err(|_| poisoned())?;
        root.connect()
    }

    /// Held while a statement, command, dashboard query or job uses the database: the
    /// capture's release of DuckDB's cache waits for a moment when none does.
    pub(crate) fn using_database(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.in_use.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties DuckDB's cache of the file's blocks when no client statement, command, dashboard
    /// query or job uses the database (the capture calls it between snapshots, so it uses none
    /// either); `Ok(false)` when something did and nothing was done.
    ///
    /// DuckDB keeps every block it writes at a checkpoint and every block a query reads until its
    /// memory limit makes it evict them, so a capturing server grew with what it stored
    /// (bench/RESULTS.md). Lowering the limit evicts, and the limit is the whole instance's, so
    /// nothing may run meanwhile: a query allocating then would fail. The new limit is what
    /// DuckDB holds other than the file's blocks (the rows appended since the last checkpoint,
    /// the dashboard's shared reads, indexes) plus [`CACHE_KEPT`], so only file blocks, which
    /// DuckDB evicts first and reads back when needed, have to go. A limit someone changed since
    /// the server started (a local client's `SET memory_limit`) is left as it is, cache and all:
    /// DuckDB shows limits rounded, so it could not be put back exactly.
    ///
    /// Once the capture stored [`REATTACH_ROWS`] rows since the file was attached, and no
    /// session holds a transaction ([`Shared::no_session_in_transaction`]), the file is detached
    /// and attached again instead ([`Store::attach_again`]): DuckDB also keeps, outside its cache
    /// and its limit, its description of every row group written since the file was attached,
    /// and frees it only then.
    ///
    /// The writer never blocks on the lock (`try_write`): readers may hold it in any order with
    /// other locks.
    fn release_cache(&self) -> Result<bool> {
        let _alone = match self.in_use.try_write() {
            Ok(alone) => alone,
            // A reader that panicked held it; readers go on regardless, and so does this.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        let root = self.root.lock().map_err(|_| poisoned())?;
        let conn = root.conn();
        if self.limit_lowered.load(Ordering::Relaxed) {
            self.restore_limit(conn)?;
        }
        self.count_packet_rows();
        // Detaching drops every cached block of the file as well.
        if (self.rows_since_attach.load(Ordering::Relaxed) >= REATTACH_ROWS || root.is_detached())
            && self.attach_again(&root)?
        {
            return Ok(true);
        }
        let (all, blocks, shown): (i64, i64, String) = conn
            .query_row(
                "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT, \
                 coalesce(sum(memory_usage_bytes) FILTER (WHERE tag = 'BASE_TABLE'), 0)::BIGINT, \
                 current_setting('memory_limit') FROM duckdb_memory()",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(Error::sql)?;
        if blocks <= CACHE_KEPT || self.memory_limit_shown.get().is_some_and(|started| *started != shown) {
            return Ok(true);
        }
        let target_kib = (all - blocks + CACHE_KEPT) / 1024;
        self.limit_lowered.store(true, Ordering::Relaxed);
        // Fails when that much cannot be freed (the limit then stays as it was; the eviction it
        // managed stands either way).
        let lowered = conn.execute_batch(&format!("SET memory_limit = '{target_kib}KiB'"));
        self.restore_limit(conn)?;
        lowered.map_err(|e| Error::Sql {
            message: format!(
                "releasing DuckDB's cache: lowering its memory limit to {target_kib} KiB failed: {}",
                Error::sql(e)
            ),
        })?;
        Ok(true)
    }

    /// True when no Flight SQL session holds a transaction open, so the file may be detached
    /// and attached again ([`Store::attach_again`]). Only sessions keep a connection between
    /// statements; everything else uses the database within [`Shared::using_database`], which
    /// the caller holds alone. A session in use, or one whose state cannot be read
    /// ([`crate::store::in_open_transaction`]), counts as holding one.
    fn no_session_in_transaction(&self) -> bool {
        let Ok(mut stores) = self.session_stores.lock() else {
            return false;
        };
        stores.retain(|weak| weak.strong_count() > 0);
        stores.iter().filter_map(std::sync::Weak::upgrade).all(|store| {
            let Ok(store) = store.try_lock() else {
                return false;
            };
            matches!(crate::store::in_open_transaction(store.conn()), Ok(false))
        })
    }

    /// Counts the rows a snapshot stored, towards attaching the file again.
    fn stored_rows(&self, rows: usize) {
        self.rows_since_attach.fetch_add(rows, Ordering::Relaxed);
    }

    /// Counts the rows the live packet capture stored since the last count: its flows, and its
    /// packets when it stores their rows.
    fn count_packet_rows(&self) {
        let counters = &self.packet_counters;
        let mut rows = counters.flows.load(Ordering::Relaxed);
        if self.packet_rows {
            rows += counters.packets.load(Ordering::Relaxed);
        }
        let counted = self.packet_rows_counted.swap(rows, Ordering::Relaxed);
        self.stored_rows(usize::try_from(rows.saturating_sub(counted)).unwrap_or(usize::MAX));
    }

    /// Registers a Flight SQL session's connection ([`Shared::no_session_in_transaction`]).
    pub(crate) fn session_opened(&self, store: &Arc<Mutex<Store>>) {
        if let Ok(mut stores) = self.session_stores.lock() {
            stores.push(Arc::downgrade(store));
        }
    }

    /// With the shared lock held alone: detaches the file and attaches it again when no session
    /// holds a transaction (`Ok(false)` when one does), or only attaches it when an earlier
    /// attempt left it detached. Sessions are not asked then: their statements fail without the
    /// file, and a transaction begun meanwhile cannot refer to it.
    fn attach_again(&self, root: &Store) -> Result<bool> {
        let was_detached = root.is_detached();
        if !was_detached && !self.no_session_in_transaction() {
            return Ok(false);
        }
        let attached = root.attach_again();
        self.database_detached.store(root.is_detached(), Ordering::Relaxed);
        attached?;
        self.rows_since_attach.store(0, Ordering::Relaxed);
        if was_detached {
            log("the database is attached again");
        }
        Ok(true)
    }

    /// Puts `--memory-limit` (or DuckDB's default) back after [`Self::release_cache`] lowered it.
    /// While that fails the limit stays low, and it is tried again at every snapshot.
    fn restore_limit(&self, conn: &duckdb::Connection) -> Result<()> {
        let restore = match &self.memory_limit {
            Some(limit) => set_memory_limit(limit),
            None => "RESET memory_limit".to_string(),
        };
        conn.execute_batch(&restore).map_err(|e| Error::Sql {
            message: format!(
                "putting the memory limit back after releasing DuckDB's cache failed: {}\n  \
                 until it succeeds (tried at every snapshot) the server's queries have less memory",
                Error::sql(e)
            ),
        })?;
        self.limit_lowered.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Tries again to put the memory limit back, when the last release could not.
    fn restore_limit_if_lowered(&self) -> Result<()> {
        if !self.limit_lowered.load(Ordering::Relaxed) {
            return Ok(());
        }
        let root = self.root.lock().map_err(|_| poisoned())?;
        self.restore_limit(root.conn())
    }

    fn update(&self, change: impl FnOnce(&mut ServerStatus)) {
        if let Ok(mut status) = self.status.lock() {
            change(&mut status);
        }
    }

    /// Logs an error and keeps it as the status's last error. The same error again within a
    /// minute (a full disk fails every snapshot) is counted, not logged; the count goes out
    /// with the next line logged.
    fn error(&self, what: &str, e: &Error) {
        let line = format!("{what}: {e}");
        if let Ok(mut repeat) = self.repeated_error.lock() {
            match repeat.as_mut() {
                Some((last, since, count)) if *last == line && since.elapsed() < Duration::from_secs(60) => {
                    *count += 1;
                }
                _ => {
                    if let Some((last, _, count)) = repeat.take().filter(|(_, _, n)| *n > 0) {
                        log(&format!("{last} (repeated {count} more times)"));
                    }
                    log(&line);
                    *repeat = Some((line.clone(), Instant::now(), 0));
                }
            }
        }
        self.update(|s| s.last_error = Some(format!("{} {line}", now_text())));
    }

    /// True while the server's own capture runs.
    pub fn capturing(&self) -> bool {
        self.status
            .lock()
            .is_ok_and(|s| s.capture.as_ref().is_some_and(|c| c.running))
    }

    /// The status as of now.
    pub fn status(&self) -> ServerStatus {
        let sessions = self.sessions.load(Ordering::Relaxed);
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        status.uptime_s = self.started.elapsed().as_secs_f64();
        if let Some(p) = status.packets.as_mut() {
            let c = &self.packet_counters;
            let import_id = c.import_id.load(Ordering::Relaxed);
            p.import_id = (import_id != 0).then_some(import_id);
            p.packets = c.packets.load(Ordering::Relaxed);
            p.flows = c.flows.load(Ordering::Relaxed);
            p.active_flows = c.active_flows.load(Ordering::Relaxed);
            p.kernel_received = packets::LiveCounters::kernel(&c.kernel_received);
            p.kernel_dropped = packets::LiveCounters::kernel(&c.kernel_dropped);
        }
        status.database_bytes = file_size(&self.database) + file_size(&crate::store::wal_of(&self.database));
        status.clients = ClientStatus {
            sessions,
            queries_running: self.queries_running.load(Ordering::Relaxed),
            queries_served: self.queries_served.load(Ordering::Relaxed),
            requests_served: self.requests_served.load(Ordering::Relaxed),
        };
        status
    }
}

fn poisoned() -> Error {
    Error::Sql {
        message: "a server thread panicked while holding the database connection; restart netlens serve".to_string(),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One line of the server's log on stderr (journald adds its own time; a terminal reads it).
pub fn log(line: &str) {
    eprintln!("{} netlens serve: {line}", now_text());
}

/// Runs the server until SIGTERM or SIGINT: opens the database, claims the socket, starts the
/// capture and the scheduled jobs, and answers clients. Returns once everything has stopped and
/// the database is closed.
pub fn run(options: ServeOptions) -> Result<()> {
    let Some((database, socket)) = endpoint(&options.location)? else {
        return Err(Error::Usage(
            "netlens serve needs a database file: clients find the server through a socket beside it\n  hint: pass --db PATH"
                .to_string(),
        ));
    };
    // A live server answers on its socket: say so before DuckDB's lock message would.
    if client::Client::probe(&socket) {
        return Err(Error::Usage(format!(
            "a netlens server already serves {} (socket {})\n  hint: `netlens status --db {}` shows it; stop it first to start another",
            database.display(),
            socket.display(),
            database.display()
        )));
    }
    let store = Store::open(&Location::File(database.clone()), false)?;
    if let Some(limit) = &options.memory_limit {
        store
            .conn()
            .execute_batch(&set_memory_limit(limit))
            .map_err(|e| Error::Usage(format!("--memory-limit {limit}: {}", Error::sql(e))))?;
    }
    // Bound before anything is logged or the token written: a port in use fails here.
    let bound = flight::Bound {
        listen: options.listen.as_ref().map(|l| l.bind("--listen")).transpose()?,
        http: options.http.as_ref().map(|l| l.bind("--http")).transpose()?,
    };
    let token = if options.listens_on_tcp() {
        let mut spill = database.as_os_str().to_owned();
        spill.push(".tmp");
        access::confine_files(&store, &options.remote.files, Path::new(&spill))?;
        let path = access::token_path(&database);
        let (token, created) = access::load_or_create_token(&path)?;
        if created {
            log(&format!(
                "new access token for TCP clients (also in {}): {token}",
                path.display()
            ));
        } else {
            log(&format!("TCP clients use the access token in {}", path.display()));
        }
        Some(token)
    } else {
        None
    };
    // Holding the database's lock, this process is the only server of the file: a socket left
    // there belongs to one that was killed.
    if socket.exists() {
        log(&format!(
            "removing the stale socket {} of a server that is gone",
            socket.display()
        ));
        std::fs::remove_file(&socket).map_err(|e| Error::io(&socket, e))?;
    }
    interrupt::serving();
    let started_at = Utc::now();
    let shared = Arc::new(Shared {
        root: Mutex::new(store),
        started: Instant::now(),
        database: database.clone(),
        status: Mutex::new(ServerStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            database: database.display().to_string(),
            socket: socket.display().to_string(),
            files_confined_to: options
                .listens_on_tcp()
                .then(|| options.remote.files.iter().map(|d| d.display().to_string()).collect()),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            capture: options.capture.as_ref().map(|c| CaptureStatus {
                interval_s: c.interval.as_secs_f64(),
                commit_every_s: c.commit_every.as_secs_f64(),
                source: match &c.replay {
                    Some(p) => format!("replay {}", p.display()),
                    None => "this host".to_string(),
                },
                running: true,
                ..CaptureStatus::default()
            }),
            schedule: options
                .every
                .iter()
                .map(|j| JobStatus {
                    job: j.kind.name().to_string(),
                    every_s: j.every.as_secs_f64(),
                    ..JobStatus::default()
                })
                .collect(),
            packets: options.packets.as_ref().map(|p| PacketCaptureStatus {
                interface: p.interface.clone(),
                filter: p.filter.clone(),
                ..PacketCaptureStatus::default()
            }),
            ..ServerStatus::default()
        }),
        packet_counters: Arc::new(packets::LiveCounters::new()),
        commands: Mutex::new(()),
        in_use: std::sync::RwLock::new(()),
        memory_limit: options.memory_limit.clone(),
        memory_limit_shown: std::sync::OnceLock::new(),
        limit_lowered: std::sync::atomic::AtomicBool::new(false),
        packet_rows: options.packets.as_ref().is_some_and(|p| p.packet_rows),
        packet_rows_counted: AtomicU64::new(0),
        rows_since_attach: std::sync::atomic::AtomicUsize::new(0),
        database_detached: std::sync::atomic::AtomicBool::new(false),
        capturing_snapshots: std::sync::atomic::AtomicBool::new(options.capture.is_some()),
        session_stores: Mutex::new(Vec::new()),
        events: tokio::sync::broadcast::channel(64).0,
        sessions: std::sync::atomic::AtomicUsize::new(0),
        repeated_error: Mutex::new(None),
        queries_running: AtomicU64::new(0),
        queries_served: AtomicU64::new(0),
        requests_served: AtomicU64::new(0),
    });

    if let Ok(root) = shared.root.lock() {
        if let Ok(shown) = root
            .conn()
            .query_row("SELECT current_setting('memory_limit')", [], |r| r.get::<_, String>(0))
        {
            let _ = shared.memory_limit_shown.set(shown);
        }
    }

    let mut threads = Vec::new();
    if let Some(capture) = options.capture.clone() {
        let store = shared.connect()?;
        let shared = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    capture_loop(&shared, store, &capture);
                    // Its connection is closed: the upkeep thread may take over (`--packets`).
                    shared.capturing_snapshots.store(false, Ordering::Relaxed);
                })
                .map_err(|e| Error::io("capture thread", e))?,
        );
    }
    if options.packets.is_some() {
        let shared = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("upkeep".into())
                .spawn(move || upkeep_loop(&shared))
                .map_err(|e| Error::io("upkeep thread", e))?,
        );
    }
    if let Some(request) = options.packets.clone() {
        let store = shared.connect()?;
        let shared = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("packets".into())
                .spawn(move || packet_capture(&shared, &store, &request))
                .map_err(|e| Error::io("packet capture thread", e))?,
        );
    }
    if !options.every.is_empty() {
        let store = shared.connect()?;
        let shared = Arc::clone(&shared);
        let jobs = options.every.clone();
        let mmdb = options.mmdb.clone();
        let retain = options.retain.clone();
        threads.push(
            std::thread::Builder::new()
                .name("schedule".into())
                .spawn(move || schedule_loop(&shared, store, &jobs, &mmdb, retain.as_ref()))
                .map_err(|e| Error::io("schedule thread", e))?,
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("serve")
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    #[cfg(target_os = "linux")]
    runtime.spawn(release_start_up_pages());
    let served = runtime.block_on(flight::serve(Arc::clone(&shared), &socket, &options, token, bound));
    // However the listener ended, every loop stops now.
    interrupt::request_stop();
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(&socket);
    runtime.shutdown_timeout(Duration::from_secs(5));
    // Dropping the runtime cancelled the calls still running; their threads end within moments
    // of their statements' interrupts, and then nothing else holds the database.
    let mut shared = shared;
    let deadline = Instant::now() + Duration::from_secs(2);
    let owned = loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => break Some(owned),
            Err(still_held) if Instant::now() < deadline => {
                shared = still_held;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => break None,
        }
    };
    match owned {
        Some(shared) => {
            if let Ok(store) = shared.root.into_inner() {
                // A checkpoint leaves the file whole without its WAL.
                let _ = store.conn().execute_batch("CHECKPOINT");
            }
        }
        None => log("clients still held connections at exit; DuckDB replays the WAL at the next open"),
    }
    log("stopped");
    served
}

/// Observes the server's capture: counts for `status`, gaps in the log.
struct CaptureObserver<'a> {
    shared: &'a Shared,
    interval: Duration,
    /// When the previous snapshot stored was planned (right after it was taken).
    last: Option<Instant>,
    /// When DuckDB's cache was last looked at ([`Shared::release_cache`]).
    cache_checked: Instant,
}

impl Observer for CaptureObserver<'_> {
    fn stored(&mut self, stored: &Stored, _report: &RunReport) {
        // Snapshots are taken one interval apart (and stored in batches); one taken more than
        // two intervals after the previous one means a snapshot was skipped or delayed by more
        // than an interval.
        let late = self
            .last
            .is_some_and(|l| stored.planned_at.saturating_duration_since(l) > self.interval * 2);
        self.last = Some(stored.planned_at);
        // Before the event: the live pages' queries it sets off would otherwise find the
        // database in use, or have the blocks they read evicted.
        if let Err(e) = self.shared.restore_limit_if_lowered() {
            self.shared
                .error("putting DuckDB's memory limit back after a snapshot", &e);
        }
        self.shared.stored_rows(stored.sockets + stored.processes);
        if self.cache_checked.elapsed() >= CACHE_CHECK_EVERY {
            match self.shared.release_cache() {
                Ok(true) => self.cache_checked = Instant::now(),
                // Something used the database: tried again after the next snapshot.
                Ok(false) => {}
                Err(e) => {
                    self.cache_checked = Instant::now();
                    self.shared.error("releasing DuckDB's memory after a snapshot", &e);
                }
            }
        }
        // Nobody listening is the usual case; the event is then dropped.
        let _ = self.shared.events.send(ServerEvent {
            kind: "snapshot",
            // The dashboard's API gives times as UTC without a zone.
            data: serde_json::json!({
                "snapshot_id": stored.snapshot_id,
                "at": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
            }),
        });
        self.shared.update(|s| {
            if let Some(c) = s.capture.as_mut() {
                c.snapshots += 1;
                c.socket_rows += stored.sockets as u64;
                c.last_snapshot_id = Some(stored.snapshot_id);
                c.last_snapshot_at = Some(now_text());
                if late {
                    c.late_snapshots += 1;
                }
            }
        });
    }

    fn gap(&mut self, gap: &str) {
        log(&format!("capture: {gap}"));
    }
}

/// When the server's start is over: by then it has opened the database (its migrations
/// checked), started its loops and taken its first snapshots. What it runs from then on comes
/// back as it runs.
#[cfg(target_os = "linux")]
const RELEASE_AFTER: Duration = Duration::from_secs(5);

/// The statement that sets `--memory-limit` (already checked as a size by the command line).
fn set_memory_limit(limit: &str) -> String {
    format!("SET memory_limit = '{}'", limit.replace('\'', ""))
}

/// Bytes of the file's blocks DuckDB may keep cached after [`Shared::release_cache`]: the
/// blocks read most recently serve the next queries of the newest rows.
const CACHE_KEPT: i64 = 8 << 20;

/// How often the capture looks at DuckDB's cache: looking costs a query, and a capture adds
/// little to the cache in this time (bench/RESULTS.md).
const CACHE_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Gives the kernel back the executable's pages the server touched while it started (see
/// [`residency`]), once, and logs what became of them.
#[cfg(target_os = "linux")]
async fn release_start_up_pages() {
    tokio::time::sleep(RELEASE_AFTER).await;
    let outcome = tokio::task::spawn_blocking(|| {
        let before = residency::resident_file_bytes();
        residency::release_executable_pages().map(|asked| (asked, before, residency::resident_file_bytes()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match outcome {
        Ok((asked, before, after)) => {
            let fell = match (before, after) {
                (Some(before), Some(after)) => {
                    format!(
                        "; resident file pages {} -> {}",
                        human_bytes(before),
                        human_bytes(after)
                    )
                }
                _ => String::new(),
            };
            log(&format!(
                "start-up over: asked the kernel to reclaim the executable's read-only pages ({} of mappings){fell}, the code in use comes back as it runs",
                human_bytes(asked as u64)
            ))
        }
        Err(why) => log(&format!("start-up over: the executable's pages stay resident: {why}")),
    }
}

/// Captures until the server stops. A failed store is logged (the snapshots of its batch are
/// lost) and the capture starts again one interval later, from what the file holds; nothing
/// stored before it is lost.
fn capture_loop(shared: &Shared, store: Store, capture: &CaptureSchedule) {
    log(&format!(
        "capturing every {:?}{}",
        capture.interval,
        capture
            .replay
            .as_ref()
            .map(|p| format!(" from the recording {}", p.display()))
            .unwrap_or_default()
    ));
    let mut recorder = match capture.record.as_deref().map(Recorder::create).transpose() {
        Ok(r) => r,
        Err(e) => {
            shared.error("capture not started", &e);
            return;
        }
    };
    while !interrupt::requested() {
        let source: Result<Box<dyn Source>> = match &capture.replay {
            Some(path) => FixtureSource::open(path).map(|s| Box::new(s) as Box<dyn Source>),
            None => SystemSource::new(capture.sockets.unwrap_or_else(SocketBackend::platform_default))
                .map(|s| Box::new(s) as Box<dyn Source>),
        }
        .map(|s| Box::new(crate::capture::cmdline::Trimmed::new(s, capture.cmdline)) as Box<dyn Source>);
        let result = source.and_then(|mut source| {
            let pace = Pace {
                interval: capture.interval,
                duration: None,
                count: None,
                wait: true,
                commit_every: capture.commit_every,
            };
            let mut observer = CaptureObserver {
                shared,
                interval: capture.interval,
                last: None,
                cache_checked: Instant::now(),
            };
            run::run(
                &store,
                source.as_mut(),
                pace,
                recorder.as_mut(),
                &Utc::now,
                &mut observer,
            )
        });
        match result {
            Ok(report) if report.interrupted => break,
            // A replay ran out of snapshots: the capture is done, the server goes on serving.
            Ok(report) => {
                log(&format!("capture finished: {} snapshots stored", report.snapshots));
                break;
            }
            Err(e) => {
                shared.error("capture", &e);
                // A file an earlier attempt left detached fails every snapshot: the release
                // attaches it (tried again after the next failure when something held it).
                if shared.database_detached.load(Ordering::Relaxed) {
                    if let Err(e) = shared.release_cache() {
                        shared.error("attaching the database again", &e);
                    }
                }
                if interrupt::sleep_until(Instant::now() + capture.interval) {
                    break;
                }
            }
        }
    }
    shared.update(|s| {
        if let Some(c) = s.capture.as_mut() {
            c.running = false;
        }
    });
}

/// Captures packets into flows until the server stops (the stop request ends the capture like
/// Ctrl-C). A capture that fails (the interface went away) is logged and not restarted: its
/// flows so far are stored, and `packet_captures.stop_reason` says why it ended.
fn packet_capture(shared: &Shared, store: &Store, request: &PacketCaptureRequest) {
    log(&format!(
        "capturing packets on {}{}",
        request.interface,
        request.filter.as_ref().map(|f| format!(" ({f})")).unwrap_or_default()
    ));
    let stop_reason = match packets::run_counted(
        store,
        request,
        Arc::clone(&shared.packet_counters),
        Some(packets::ServerHold {
            in_use: &shared.in_use,
            detached: &shared.database_detached,
        }),
    ) {
        Ok(report) if report.failed => {
            shared.error(
                "packet capture",
                &Error::Usage(format!("it stopped: {}", report.stop_reason)),
            );
            log(&packets::summary(&report, request));
            report.stop_reason
        }
        Ok(report) => {
            log(&packets::summary(&report, request));
            report.stop_reason
        }
        Err(e) => {
            shared.error("packet capture", &e);
            e.to_string()
        }
    };
    shared.update(|s| {
        if let Some(p) = s.packets.as_mut() {
            p.stop_reason = Some(stop_reason);
        }
    });
}

/// The upkeep a capture does after its snapshots ([`Shared::release_cache`]), for a server that
/// captures packets without snapshots (or whose snapshot capture has ended): every
/// [`CACHE_CHECK_EVERY`], or a second later when something used the database, the memory limit
/// could not be put back, or the file could not be attached again. A server that only answers
/// queries keeps its cache: it grows with what was read and serves the next queries.
fn upkeep_loop(shared: &Shared) {
    let mut next = Instant::now() + CACHE_CHECK_EVERY;
    while !interrupt::sleep_until(next) {
        if shared.capturing_snapshots.load(Ordering::Relaxed) {
            next = Instant::now() + CACHE_CHECK_EVERY;
            continue;
        }
        let outcome = shared.release_cache();
        if let Err(e) = &outcome {
            shared.error("releasing DuckDB's cache", e);
        }
        let again_soon = matches!(outcome, Ok(false))
            || shared.limit_lowered.load(Ordering::Relaxed)
            || shared.database_detached.load(Ordering::Relaxed);
        next = Instant::now()
            + if again_soon {
                Duration::from_secs(1)
            } else {
                CACHE_CHECK_EVERY
            };
    }
}

/// Runs the scheduled jobs, each first one interval after the start, until the server stops.
fn schedule_loop(
    shared: &Shared,
    store: Store,
    jobs: &[Job],
    mmdb: &[PathBuf],
    retain: Option<&crate::retention::RetainRequest>,
) {
    let start = Instant::now();
    let mut next: BTreeMap<usize, Instant> = jobs.iter().enumerate().map(|(i, j)| (i, start + j.every)).collect();
    loop {
        let Some((&index, &due)) = next.iter().min_by_key(|(_, t)| **t) else {
            return;
        };
        shared.update(|s| {
            for (i, at) in &next {
                if let Some(js) = s.schedule.get_mut(*i) {
                    js.next_run_in_s = Some(at.saturating_duration_since(Instant::now()).as_secs_f64());
                }
            }
        });
        if interrupt::sleep_until(due) {
            return;
        }
        let job = jobs[index];
        let result = {
            let _one_at_a_time = shared.commands.lock().unwrap_or_else(|p| p.into_inner());
            let _using = shared.using_database();
            run_job(&store, job.kind, mmdb, retain)
        };
        let text = match &result {
            Ok(line) => line.clone(),
            Err(e) => format!("failed: {e}"),
        };
        match &result {
            Ok(line) if job.kind == JobKind::Retain && line == crate::retention::NOTHING_TO_DO => {}
            Ok(line) => log(&format!("{}: {line}", job.kind.name())),
            Err(e) => shared.error(job.kind.name(), e),
        }
        let _ = shared.events.send(ServerEvent {
            kind: "job",
            data: serde_json::json!({"job": job.kind.name(), "result": text}),
        });
        shared.update(|s| {
            if let Some(js) = s.schedule.get_mut(index) {
                js.runs += 1;
                js.last_run_at = Some(now_text());
                js.last_result = Some(text);
            }
        });
        // The next run is one interval after this one was due; a run longer than its interval
        // does not queue up missed runs.
        let mut at = due + job.every;
        while at <= Instant::now() {
            at += job.every;
        }
        next.insert(index, at);
    }
}

/// The request a scheduled job stands for, with every option at its command-line default.
pub fn job_request(kind: JobKind, mmdb: &[PathBuf], retain: Option<&crate::retention::RetainRequest>) -> Request {
    match kind {
        JobKind::Detect => Request::Detect(crate::detect::DetectRequest::defaults(
            crate::detect::DetectorName::All,
            Some(Duration::from_secs(86_400)),
        )),
        JobKind::Geo => Request::Geo(request::GeoCommand {
            sources: crate::geo::GeoRequest::offline(mmdb.to_vec()),
            lookup: None,
        }),
        JobKind::Retrain => Request::Retrain { target: None },
        JobKind::Insights => Request::Insights,
        JobKind::Retain => match retain {
            Some(r) => Request::Retain(r.clone()),
            // `serve` refuses --every retain without --retain; this keeps everything.
            None => Request::Retain(crate::retention::RetainRequest {
                raw: None,
                rollups: None,
                bucket: crate::retention::RetainRequest::DEFAULT_BUCKET,
                batch: crate::retention::RetainRequest::DEFAULT_BATCH,
            }),
        },
    }
}

/// Runs one job and says in a line what it did (its reply's summary lines).
fn run_job(
    store: &Store,
    kind: JobKind,
    mmdb: &[PathBuf],
    retain: Option<&crate::retention::RetainRequest>,
) -> Result<String> {
    let mut gaps = CollectGaps::default();
    let mut notes = Vec::new();
    let mut ctx = request::Context {
        observer: &mut gaps,
        import_progress: crate::ingest::Progress::collecting(false),
        watch: None,
        ahead: None,
        clock: &Utc::now,
        notice: &mut |note| notes.push(note.to_string()),
    };
    let mut reply = request::execute(store, job_request(kind, mmdb, retain), &mut ctx)?;
    reply.items.extend(notes.into_iter().map(request::Item::Warning));
    if let Some(failure) = reply.failure {
        return Err(Error::Partial { message: failure });
    }
    let mut lines: Vec<String> = reply
        .items
        .iter()
        .filter_map(|item| match item {
            request::Item::Summary(line) | request::Item::Warning(line) => Some(line.replace('\n', " ")),
            request::Item::Rows { .. } => None,
        })
        .collect();
    if kind == JobKind::Insights {
        let findings = crate::report::insights::insights(store)?;
        lines.push(format!("{} findings", findings.len()));
    }
    Ok(if lines.is_empty() {
        "done".to_string()
    } else {
        lines.join("; ")
    })
}

/// Makes the socket file private to this user (mode 0600) right after binding.
pub(crate) fn restrict_socket(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_to_a_file_not_made_yet_is_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.duckdb");
        std::os::unix::fs::symlink("target.duckdb", &link).unwrap();
        let (database, socket) = endpoint(&Location::File(link)).unwrap().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap().join("target.duckdb");
        assert_eq!(database, real);
        assert_eq!(socket, socket_path(&real));
    }

    #[test]
    fn the_socket_lives_beside_the_database() {
        assert_eq!(
            socket_path(Path::new("/var/lib/netlens/netlens.duckdb")),
            PathBuf::from("/var/lib/netlens/netlens.duckdb.sock")
        );
    }

    /// Regression: the server's capture and a replay a client asked for (another host) store
    /// into one database at the same time; each snapshot and lifetime gets an id of its own (the
    /// second capture failed with a duplicate key before snapshots were stored one at a time).
    #[test]
    fn two_captures_of_one_server_store_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let mut root = Store::open(&Location::File(dir.path().join("t.duckdb")), false).unwrap();
        let recording =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host_a.jsonl")).unwrap();
        let runs: Vec<_> = (0..2)
            .map(|i| {
                let store = root.connect().unwrap();
                let fixture = dir.path().join(format!("host{i}.jsonl"));
                let host = format!("\"host\": \"host-{i}\"");
                std::fs::write(&fixture, recording.replace("\"host\": \"fixture-host\"", &host)).unwrap();
                std::thread::spawn(move || {
                    let mut total = 0;
                    for _ in 0..5 {
                        let mut source = FixtureSource::open(&fixture).unwrap();
                        let pace = Pace {
                            interval: Duration::from_millis(1),
                            duration: None,
                            count: None,
                            wait: false,
                            commit_every: run::DEFAULT_COMMIT_EVERY,
                        };
                        let mut quiet = CollectGaps::default();
                        let report = run::run(&store, &mut source, pace, None, &Utc::now, &mut quiet).unwrap();
                        total += report.snapshots;
                    }
                    total
                })
            })
            .collect();
        let stored: u64 = runs.into_iter().map(|r| r.join().unwrap()).sum();
        let (rows, ids): (i64, i64) = root
            .conn()
            .query_row("SELECT count(*), count(DISTINCT snapshot_id) FROM snapshots", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, ids), (stored as i64, stored as i64));
        let dup: i64 = root
            .conn()
            .query_row(
                "SELECT count(*) FROM (SELECT connection_id FROM connection_lifetimes GROUP BY ALL HAVING count(*) > 1)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dup, 0);
    }

    /// A server's shared state over `store`, as `serve` makes it, without sockets or threads.
    pub(super) fn shared_over(store: Store, memory_limit: Option<&str>) -> Shared {
        Shared {
            root: Mutex::new(store),
            started: Instant::now(),
            database: PathBuf::new(),
            status: Mutex::new(ServerStatus::default()),
            commands: Mutex::new(()),
            in_use: std::sync::RwLock::new(()),
            memory_limit: memory_limit.map(str::to_string),
            memory_limit_shown: std::sync::OnceLock::new(),
            limit_lowered: std::sync::atomic::AtomicBool::new(false),
            packet_rows: false,
            packet_rows_counted: AtomicU64::new(0),
            rows_since_attach: std::sync::atomic::AtomicUsize::new(0),
            database_detached: std::sync::atomic::AtomicBool::new(false),
            capturing_snapshots: std::sync::atomic::AtomicBool::new(false),
            session_stores: Mutex::new(Vec::new()),
            queries_running: AtomicU64::new(0),
            queries_served: AtomicU64::new(0),
            requests_served: AtomicU64::new(0),
            sessions: std::sync::atomic::AtomicUsize::new(0),
            repeated_error: Mutex::new(None),
            events: tokio::sync::broadcast::channel(4).0,
            packet_counters: Arc::new(packets::LiveCounters::new()),
        }
    }

    /// Regression: with the file left detached by a failed attempt, every session's probe
    /// failed (its default catalog gone), which counted as a transaction, so one open shell kept
    /// the server without its file. Sessions are not asked then; the packet capture's writes
    /// wait meanwhile.
    #[test]
    fn a_detached_file_is_attached_again_whatever_the_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_over(Store::file_with_numbers(&dir.path().join("t.duckdb"), 10), None);
        let session = Arc::new(Mutex::new(shared.connect().unwrap()));
        shared.session_opened(&session);
        shared.root.lock().unwrap().detach_as_if_attaching_failed();
        shared.database_detached.store(true, Ordering::Relaxed);
        let count = |store: &Store| {
            store
                .conn()
                .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
        };
        assert!(count(&session.lock().unwrap()).is_err(), "the file is detached");

        let hold = packets::ServerHold {
            in_use: &shared.in_use,
            detached: &shared.database_detached,
        };
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let _held = hold.before_writing();
                count(&session.lock().unwrap())
            });
            std::thread::sleep(Duration::from_millis(500));
            assert!(!writer.is_finished(), "a write went ahead while the file was detached");
            // The writer holds the lock for a moment every 200 ms: the attempt may find it held.
            for _ in 0..100 {
                shared.release_cache().unwrap();
                if !shared.database_detached.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let attached = !shared.database_detached.load(Ordering::Relaxed);
            // Lets the writer go either way, so that a failure fails instead of hanging.
            shared.database_detached.store(false, Ordering::Relaxed);
            let read = writer.join().unwrap();
            assert!(attached, "the file is still detached");
            assert_eq!(read.unwrap(), 10, "the session reads the file again");
        });
        assert!(!shared.root.lock().unwrap().is_detached());
    }

    /// The live packet capture's flows, and its packets when it stores their rows, count
    /// towards attaching the file again, each once.
    #[test]
    fn the_packet_captures_rows_count_towards_attaching_the_file_again() {
        for packet_rows in [false, true] {
            let mut shared = shared_over(Store::open(&Location::Memory, false).unwrap(), None);
            shared.packet_rows = packet_rows;
            let counters = Arc::clone(&shared.packet_counters);
            let waiting = |shared: &Shared| shared.rows_since_attach.load(Ordering::Relaxed);
            counters.flows.store(100, Ordering::Relaxed);
            counters.packets.store(1000, Ordering::Relaxed);
            shared.count_packet_rows();
            assert_eq!(waiting(&shared), if packet_rows { 1100 } else { 100 });
            shared.stored_rows(7);
            counters.flows.store(150, Ordering::Relaxed);
            counters.packets.store(1500, Ordering::Relaxed);
            shared.count_packet_rows();
            shared.count_packet_rows();
            assert_eq!(waiting(&shared), if packet_rows { 1657 } else { 157 });
        }
    }

    /// Regression: a capturing server kept DuckDB's description of every row group it wrote
    /// (about 50 KiB each) for as long as it ran. The file is attached again once enough rows
    /// were stored, only when no session holds a transaction: one committed afterwards through
    /// the detached file would be lost. Sessions, their prepared statements included, go on by
    /// the file's name.
    #[test]
    fn the_file_is_attached_again_only_when_no_session_holds_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.duckdb");
        let shared = shared_over(Store::file_with_numbers(&path, 1000), None);
        let session = Arc::new(Mutex::new(shared.connect().unwrap()));
        shared.session_opened(&session);
        let count = |store: &Store| -> i64 {
            let mut statement = store.conn().prepare_cached("SELECT count(*) FROM t").unwrap();
            statement.query_row([], |r| r.get(0)).unwrap()
        };
        let waiting = |shared: &Shared| shared.rows_since_attach.load(Ordering::Relaxed);
        assert_eq!(count(&session.lock().unwrap()), 1000);
        // The session's own state: a temporary table (settings are locked for every client).
        let own_state = |store: &Store| -> i64 {
            store
                .conn()
                .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
                .unwrap()
        };
        session
            .lock()
            .unwrap()
            .conn()
            .execute_batch("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
            .unwrap();
        let state_before = own_state(&session.lock().unwrap());

        session
            .lock()
            .unwrap()
            .conn()
            .execute_batch("BEGIN; INSERT INTO t VALUES (-1)")
            .unwrap();
        shared.stored_rows(REATTACH_ROWS);
        assert!(shared.release_cache().unwrap());
        assert_eq!(waiting(&shared), REATTACH_ROWS, "attached again under a transaction");
        session.lock().unwrap().conn().execute_batch("COMMIT").unwrap();

        // A session busy with a statement counts as holding one too.
        let busy = session.lock().unwrap();
        assert!(shared.release_cache().unwrap());
        assert_eq!(
            waiting(&shared),
            REATTACH_ROWS,
            "attached again under a running statement"
        );
        drop(busy);

        assert!(shared.release_cache().unwrap());
        assert_eq!(waiting(&shared), 0, "not attached again");
        assert!(!shared.root.lock().unwrap().is_detached());
        assert_eq!(count(&shared.root.lock().unwrap()), 1001);
        let session_store = session.lock().unwrap();
        assert_eq!(count(&session_store), 1001, "the session's prepared statement");
        assert_eq!(own_state(&session_store), state_before, "the session's temporary table");
        session_store.conn().execute_batch("INSERT INTO t VALUES (-2)").unwrap();
        drop(session_store);
        drop(session);
        drop(shared);
        let reopened = Store::open(&Location::File(path), false).unwrap();
        assert_eq!(count(&reopened), 1002, "every committed row is in the file");
    }

    /// Regression: a capturing server kept every block it wrote or read cached up to DuckDB's
    /// limit (80 % of RAM by default).
    #[test]
    fn the_files_cached_blocks_are_released_only_when_nothing_uses_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let cached = |shared: &Shared| -> i64 {
            let root = shared.root.lock().unwrap();
            root.conn()
                .query_row(
                    "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'BASE_TABLE'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let setting = |shared: &Shared| -> String {
            let root = shared.root.lock().unwrap();
            root.conn()
                .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
                .unwrap()
        };
        let shown = |limit: Option<&str>| -> String {
            let fresh = duckdb::Connection::open_in_memory().unwrap();
            if let Some(limit) = limit {
                fresh.execute_batch(&format!("SET memory_limit = '{limit}'")).unwrap();
            }
            fresh
                .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
                .unwrap()
        };
        for (i, limit) in [None, Some("3GB")].into_iter().enumerate() {
            let store = Store::open(&Location::File(dir.path().join(format!("t{i}.duckdb"))), false).unwrap();
            if let Some(limit) = limit {
                store
                    .conn()
                    .execute_batch(&format!("SET memory_limit = '{limit}'"))
                    .unwrap();
            }
            // Written at the checkpoint, then read whole: its blocks stay cached.
            let sum = "SELECT sum(length(s)) FROM big";
            let total: i64 = store
                .conn()
                .query_row(
                    &format!(
                        "CREATE TABLE big AS SELECT i, md5(i::VARCHAR) AS s FROM range(2000000) t(i); CHECKPOINT; {sum}"
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let shared = shared_over(store, limit);
            let before = cached(&shared);
            assert!(before > 3 * CACHE_KEPT, "{before} bytes cached");
            {
                let _query = shared.using_database();
                assert!(
                    !shared.release_cache().unwrap(),
                    "released while a query used the database"
                );
                assert_eq!(cached(&shared), before);
            }
            assert!(shared.release_cache().unwrap());
            let after = cached(&shared);
            assert!(after <= CACHE_KEPT + (1 << 20), "{before} -> {after} bytes cached");
            assert_eq!(setting(&shared), shown(limit), "the limit is put back");
            let root = shared.root.lock().unwrap();
            let again: i64 = root.conn().query_row(sum, [], |r| r.get(0)).unwrap();
            assert_eq!(again, total);
            drop(root);
            // A limit someone set since the server started is theirs: nothing is released.
            shared
                .memory_limit_shown
                .set("a limit set at start".to_string())
                .unwrap();
            let _ = shared
                .root
                .lock()
                .unwrap()
                .conn()
                .query_row(sum, [], |r| r.get::<_, i64>(0));
            let read_again = cached(&shared);
            assert!(read_again > CACHE_KEPT, "{read_again} bytes cached");
            assert!(shared.release_cache().unwrap());
            assert_eq!(cached(&shared), read_again);
            assert_eq!(setting(&shared), shown(limit));
        }
    }

    #[test]
    fn jobs_are_the_commands_run_by_hand() {
        let Request::Detect(d) = job_request(JobKind::Detect, &[], None) else {
            panic!("detect job is not a detect request")
        };
        assert_eq!(d.detector, crate::detect::DetectorName::All);
        assert_eq!(d.window, Some(Duration::from_secs(86_400)));
        assert_eq!(
            job_request(JobKind::Retrain, &[], None),
            Request::Retrain { target: None }
        );
        let Request::Geo(g) = job_request(JobKind::Geo, &[PathBuf::from("a.mmdb")], None) else {
            panic!("geo job is not a geo request")
        };
        assert_eq!(
            g.sources.provider,
            crate::geo::GeoProvider::Off,
            "a job never sends addresses out"
        );
        assert_eq!(g.sources.mmdb, vec![PathBuf::from("a.mmdb")]);
    }
}
