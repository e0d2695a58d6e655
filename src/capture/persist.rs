//! Storing snapshots. Each is first planned against the host's open connections (ids,
//! lifetimes opened and closed, transitions, traffic; the in-memory tracker and interface
//! counters move on to it), then one or more planned snapshots are stored together: their rows
//! go in as Arrow record batches through DuckDB's appender, one append per table, and
//! `connection_lifetimes` / `tcp_transitions` are brought up to date, all in one transaction.
//! Lifetimes are written when they open and completed when they close; while open, their
//! latest values are the snapshot's own socket rows (the `connections` view joins them), so a
//! snapshot never rewrites the rows of connections that merely continue. A batch is stored
//! whole or not at all; after a failure the tracker is ahead of the file, and the capture loads
//! the host's state again before it goes on.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use duckdb::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use duckdb::arrow::datatypes::Int32Type;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;

use crate::store::Store;

/// Held while a snapshot is planned (its ids issued), and the next ids this process will issue in each
/// database (by location). Snapshot and connection ids are the next after the largest stored or
/// issued: two captures of one process (a server's own and a replay a client asked for) sharing
/// one database would otherwise give two snapshots, or two lifetimes, the same id. Keeping the
/// next snapshot id here also spares every snapshot a `max(snapshot_id)` query; it is read from
/// the file again after any failed snapshot, in case something else wrote one (and always for
/// in-memory databases, which share a location but not their rows).
static SNAPSHOT_WRITER: std::sync::Mutex<Option<HashMap<String, Issued>>> = std::sync::Mutex::new(None);

/// The next ids one database will get from this process.
#[derive(Debug, Clone, Copy)]
struct Issued {
    connection_id: i64,
    /// `None` until read from the file (always for in-memory databases).
    snapshot_id: Option<i64>,
    /// A store failed since: something else may have written a snapshot, so the file's
    /// largest id is read again (and never an id below `snapshot_id` issued).
    check_file: bool,
}
use crate::capture::direction::Listeners;
use crate::capture::tracker::{ByteCounters, ConnectionKey, OpenConnection, Plan, Tracker};
use crate::capture::{InterfaceRecord, Proto, Snapshot, TcpCounters};
use crate::error::{Error, Result};
use crate::netaddr;

/// Per-host state carried between snapshots of one capture run.
pub struct HostState {
    tracker: Tracker,
    previous_interfaces: HashMap<String, (DateTime<Utc>, InterfaceRecord)>,
}

/// What storing one snapshot did.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub snapshot_id: i64,
    /// The snapshot's time (a replay's is the recording's).
    pub taken_at: DateTime<Utc>,
    /// When this process planned it, right after taking it: snapshots are stored in batches,
    /// so the time of storing says nothing of their pace.
    pub planned_at: std::time::Instant,
    pub sockets: usize,
    pub processes: usize,
    pub opened: usize,
    pub closed: usize,
    pub transitions: usize,
    /// Milliseconds spent planning it, and its share of the transaction that stored it.
    pub store_ms: f64,
}

/// Snapshots planned and waiting to be stored together ([`Store::store_planned`]).
#[derive(Default)]
pub struct PlannedSnapshots {
    items: Vec<PlannedSnapshot>,
    /// Socket and process rows waiting.
    rows: usize,
    /// When the first of them was planned.
    first_at: Option<std::time::Instant>,
}

impl PlannedSnapshots {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Socket and process rows waiting.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// How long the oldest has waited.
    pub fn waited(&self) -> std::time::Duration {
        self.first_at.map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// One snapshot with its plan and id, and its interface rows (their deltas are to the host's
/// state when it was planned).
struct PlannedSnapshot {
    snapshot: Snapshot,
    source: &'static str,
    snapshot_id: i64,
    plan: Plan,
    interfaces: Option<RecordBatch>,
    planned_at: std::time::Instant,
    plan_ms: f64,
}

fn ts_micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn timestamps(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values))
}

fn i64s(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from_iter(values))
}

fn i32s(values: impl IntoIterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from_iter(values))
}

fn strings<S: AsRef<str>>(values: impl IntoIterator<Item = Option<S>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn u64_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn batch(columns: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch> {
    RecordBatch::try_from_iter(columns).map_err(|e| Error::StoreSnapshot {
        reason: format!("building a record batch: {e}"),
    })
}

/// DuckDB settings a capture run changes while it runs; the previous values come back when
/// the run ends (the shell may go on with other work).
///
/// - `threads = 1`: a snapshot is one transaction of appends, which one thread does; worker
///   threads add only their own buffers and allocator arenas.
/// - `write_buffer_row_group_count = 1`: each full row group of a large snapshot goes to the
///   file as soon as it is appended, rather than five of them waiting in memory (see
///   `store::ROW_GROUP_SIZE`).
/// - After each snapshot, and after loading where the run continues from, DuckDB's cache of
///   what it read and wrote is emptied ([`Self::release_cache`]);
///   the memory limit itself is never changed for longer than that.
pub struct CaptureSettings<'a> {
    store: &'a Store,
    saved: Vec<(&'static str, String)>,
    /// The memory limit is still lowered: its RESET failed, and is tried again before the next
    /// snapshot and at the end.
    limit_lowered: bool,
    /// Whether the memory limit was DuckDB's default when this run first asked.
    default_limit: Option<bool>,
}

/// A DuckDB setting's value as DuckDB shows it.
fn current_setting(conn: &duckdb::Connection, name: &str) -> duckdb::Result<String> {
    conn.query_row(&format!("SELECT current_setting('{name}')::VARCHAR"), [], |r| r.get(0))
}

impl CaptureSettings<'_> {
    fn set(&mut self, name: &'static str, value: &str) -> Result<()> {
        if !self.saved.iter().any(|(n, _)| *n == name) {
            let current = current_setting(self.store.conn(), name).map_err(store_err)?;
            self.saved.push((name, current));
        }
        self.store
            .conn()
            .execute_batch(&format!("SET {name} = '{value}'"))
            .map_err(store_err)
    }

    /// Before a snapshot is stored: puts the memory limit back if that failed last time.
    pub fn before_snapshot(&mut self) {
        if self.limit_lowered {
            self.limit_lowered = self.store.conn().execute_batch("RESET memory_limit").is_err();
        }
    }

    /// After snapshots are stored: attaches the file again once enough rows were written
    /// since it was attached ([`Store::stored_rows`]), and empties DuckDB's cache.
    pub fn after_store(&mut self, rows: usize) -> Result<()> {
        self.store.stored_rows(rows)?;
        self.release_cache();
        Ok(())
    }

    /// Empties DuckDB's cache of the blocks it read and wrote. DuckDB keeps every block it
    /// reads or writes cached up to its memory limit (80% of RAM by default), so a long capture
    /// grew by what it stored, about 2 MiB a snapshot at 50 000 sockets (212 MiB after 30
    /// snapshots, against 100 MiB with this). Lowering the limit evicts what is not in use, and
    /// restoring it leaves queries their full memory. Only for files: an in-memory database has
    /// nowhere to evict to.
    pub fn release_cache(&mut self) {
        if matches!(self.store.location(), crate::store::Location::Memory) || self.store.is_shared() {
            return;
        }
        let conn = &self.store.conn();
        // DuckDB shows the limit rounded ("18.8 GiB"), so a limit cannot be read and set back
        // exactly. The default comes back exactly with RESET; a limit someone set already
        // bounds the cache, and is left alone. What the default shows is asked of a throw-away
        // in-memory DuckDB once per store (watch runs one capture per window); whether the
        // limit is the default, once per run (the shell may change it between runs).
        let shown = |conn: &duckdb::Connection| current_setting(conn, "memory_limit").ok();
        if self.default_limit.is_none() {
            let default = self.store.default_memory_limit().get_or_init(|| {
                duckdb::Connection::open_in_memory()
                    .ok()
                    .and_then(|fresh| shown(&fresh))
            });
            self.default_limit = Some(default.is_some() && *default == shown(conn));
        }
        if self.default_limit == Some(true) {
            // Fails when less cannot be freed; the eviction it managed stands either way.
            let _ = conn.execute_batch("SET memory_limit = '1MB'");
            self.limit_lowered = conn.execute_batch("RESET memory_limit").is_err();
        }
    }
}

impl Drop for CaptureSettings<'_> {
    fn drop(&mut self) {
        if self.limit_lowered {
            let _ = self.store.conn().execute_batch("RESET memory_limit");
        }
        for (name, value) in self.saved.drain(..).rev() {
            let _ = self.store.conn().execute_batch(&format!("SET {name} = '{value}'"));
        }
    }
}

impl Store {
    /// Tunes DuckDB for a capture run until the returned guard is dropped.
    pub fn capture_settings(&self) -> Result<CaptureSettings<'_>> {
        let mut settings = CaptureSettings {
            store: self,
            saved: Vec::new(),
            limit_lowered: false,
            default_limit: None,
        };
        // DuckDB's settings belong to the whole database instance. A store shared with other
        // connections (a server's clients) keeps them as they are: one thread and a memory
        // limit lowered to 1 MB between snapshots would be every client query's too.
        if !self.is_shared() {
            settings.set("threads", "1")?;
            settings.set("write_buffer_row_group_count", "1")?;
        }
        Ok(settings)
    }

    /// Loads the state a capture run continues from: the host's open connections and the
    /// latest counters of its interfaces.
    pub fn host_state(&self, host: &str) -> Result<HostState> {
        let next_id: i64 = self
            .conn()
            .query_row(
                "SELECT coalesce(max(connection_id), 0) + 1 FROM connection_lifetimes",
                [],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT s.connection_id, s.proto, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.pid, \
                 s.inode, s.state, s.bytes_sent, s.bytes_received \
                 FROM sockets s JOIN connection_lifetimes l USING (connection_id) \
                 WHERE l.closed_at IS NULL AND l.host = $1 \
                 AND s.snapshot_id = (SELECT max(snapshot_id) FROM snapshots WHERE host = $1)",
            )
            .map_err(Error::sql)?;
        let rows = stmt
            .query_map([host], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i32>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i32>>(5)?,
                    r.get::<_, Option<i32>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, String>(8)?,
                    (r.get::<_, Option<i64>>(9)?, r.get::<_, Option<i64>>(10)?),
                ))
            })
            .map_err(Error::sql)?;
        let mut open = Vec::new();
        for row in rows {
            let (id, proto, local, lport, remote, rport, pid, inode, state, bytes) = row.map_err(Error::sql)?;
            let proto = if proto == "tcp" { Proto::Tcp } else { Proto::Udp };
            let (Ok(local_addr), remote_addr) = (local.parse(), remote.map(|r| r.parse())) else {
                continue;
            };
            let key = ConnectionKey {
                proto,
                local_addr,
                local_port: lport as u16,
                remote_addr: remote_addr.and_then(|r| r.ok()),
                remote_port: rport.map(|p| p as u16),
                pid: pid.map(|p| p as u32),
                inode: inode.map(|i| i as u64),
            };
            open.push((
                key,
                OpenConnection {
                    id,
                    proto,
                    state: crate::capture::state_name(state),
                    counters: match bytes {
                        (Some(sent), Some(received)) => Some(ByteCounters {
                            sent: u64::try_from(sent).unwrap_or(0),
                            received: u64::try_from(received).unwrap_or(0),
                        }),
                        _ => None,
                    },
                },
            ));
        }
        let has_history: bool = self
            .conn()
            .query_row("SELECT count(*) > 0 FROM snapshots WHERE host = ?", [host], |r| {
                r.get(0)
            })
            .map_err(Error::sql)?;

        let mut stmt = self
            .conn()
            .prepare(
                "SELECT i.ts, i.name, i.mac, i.addresses, i.rx_bytes, i.tx_bytes, i.rx_packets, i.tx_packets, \
                 i.rx_errors, i.tx_errors FROM interfaces i JOIN snapshots s USING (snapshot_id) WHERE s.host = ? \
                 QUALIFY row_number() OVER (PARTITION BY i.name ORDER BY i.snapshot_id DESC) = 1",
            )
            .map_err(Error::sql)?;
        let rows = stmt
            .query_map([host], |r| {
                let n = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0).max(0) as u64);
                Ok((
                    r.get::<_, DateTime<Utc>>(0)?,
                    InterfaceRecord {
                        name: r.get(1)?,
                        mac: r.get(2)?,
                        addresses: r.get(3)?,
                        rx_bytes: n(4)?,
                        tx_bytes: n(5)?,
                        rx_packets: n(6)?,
                        tx_packets: n(7)?,
                        rx_errors: n(8)?,
                        tx_errors: n(9)?,
                    },
                ))
            })
            .map_err(Error::sql)?;
        let mut previous_interfaces = HashMap::new();
        for row in rows {
            let (ts, rec) = row.map_err(Error::sql)?;
            previous_interfaces.insert(rec.name.clone(), (ts, rec));
        }
        Ok(HostState {
            tracker: Tracker::resume(open, next_id, has_history),
            previous_interfaces,
        })
    }

    /// Stores one snapshot whole, or nothing of it: [`Self::plan_snapshot`] and
    /// [`Self::store_planned`] of that snapshot alone.
    pub fn append_snapshot(&self, snapshot: &Snapshot, source: &'static str, state: &mut HostState) -> Result<Stored> {
        let mut planned = PlannedSnapshots::default();
        self.plan_snapshot(snapshot.clone(), source, state, &mut planned)?;
        let mut stored = self.store_planned(&mut planned)?;
        Ok(stored.remove(0).0)
    }

    /// Plans one snapshot against the host's open connections (ids, lifetimes opened and
    /// closed, transitions, traffic) and adds it to `planned`, to be stored with the others by
    /// [`Self::store_planned`]. The host's state moves on to this snapshot: after a failed
    /// store it no longer matches the file and must be loaded again ([`Self::host_state`]).
    pub fn plan_snapshot(
        &self,
        snapshot: Snapshot,
        source: &'static str,
        state: &mut HostState,
        planned: &mut PlannedSnapshots,
    ) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::Usage(format!(
                "{} is open read-only; capture needs to write\n  hint: drop --read-only",
                self.location().display()
            )));
        }
        let started = std::time::Instant::now();
        let mut issued = SNAPSHOT_WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let issued = issued.get_or_insert_with(HashMap::new);
        let database = self.location().display();
        // Another capture of this process may have opened lifetimes since this run's tracker
        // was loaded.
        let known = issued.get(&database).copied();
        if let Some(next) = known {
            state.tracker.reserve_ids_from(next.connection_id);
        }
        let from_memory = known.filter(|k| !k.check_file).and_then(|k| k.snapshot_id);
        let snapshot_id = match from_memory {
            Some(id) => id,
            None => {
                let in_file: i64 = self
                    .conn()
                    .query_row("SELECT coalesce(max(snapshot_id), 0) + 1 FROM snapshots", [], |r| {
                        r.get(0)
                    })
                    .map_err(store_err)?;
                // Ids issued to snapshots not stored yet (this run's, or another capture's of
                // this process) are not in the file: never issue one of them again.
                in_file.max(known.and_then(|k| k.snapshot_id).unwrap_or(0))
            }
        }
        .max(planned.items.last().map_or(0, |p| p.snapshot_id + 1));
        let plan = state.tracker.plan(&snapshot.sockets);
        let ts = ts_micros(snapshot.ts);
        let interfaces = (!snapshot.interfaces.is_empty())
            .then(|| interfaces_batch(&snapshot, snapshot_id, ts, state))
            .transpose()?;
        state.tracker.commit(&plan, &snapshot.sockets);
        for rec in &snapshot.interfaces {
            state
                .previous_interfaces
                .insert(rec.name.clone(), (snapshot.ts, rec.clone()));
        }
        issued.insert(
            database,
            Issued {
                connection_id: state.tracker.next_id(),
                // Two in-memory databases share a location but not their rows.
                snapshot_id: matches!(self.location(), crate::store::Location::File(_)).then_some(snapshot_id + 1),
                check_file: false,
            },
        );
        planned.rows += snapshot.sockets.len() + snapshot.processes.len();
        planned.first_at.get_or_insert(started);
        planned.items.push(PlannedSnapshot {
            snapshot,
            source,
            snapshot_id,
            plan,
            interfaces,
            planned_at: started,
            plan_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        Ok(())
    }

    /// Stores every planned snapshot in one transaction, whole or not at all, and empties
    /// `planned`. Each table takes one append for all of them: a snapshot's fixed cost (an
    /// append per table, a commit, its WAL sync) is paid once per batch. Returns each
    /// snapshot with what storing it did, in order.
    pub fn store_planned(&self, planned: &mut PlannedSnapshots) -> Result<Vec<(Stored, Snapshot)>> {
        let items = std::mem::take(&mut planned.items);
        *planned = PlannedSnapshots::default();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let written = self
            .conn()
            .execute_batch("BEGIN TRANSACTION")
            .map_err(store_err)
            .and_then(|()| self.write_planned(&items))
            // A failed COMMIT is a failed store like any other: rolled back, the ids read again.
            .and_then(|()| self.conn().execute_batch("COMMIT").map_err(store_err));
        if let Err(e) = written {
            let _ = self.conn().execute_batch("ROLLBACK");
            let mut issued = SNAPSHOT_WRITER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(entry) = issued
                .get_or_insert_with(HashMap::new)
                .get_mut(&self.location().display())
            {
                entry.check_file = true;
            }
            let reason = match e {
                Error::StoreSnapshot { reason } => reason,
                other => other.to_string(),
            };
            let (first, last) = (items[0].snapshot_id, items[items.len() - 1].snapshot_id);
            return Err(Error::StoreSnapshot {
                reason: if items.len() == 1 {
                    reason
                } else {
                    format!(
                        "{reason} (the {} snapshots {first}..{last} were not stored)",
                        items.len()
                    )
                },
            });
        }
        // The batch's time is shared out evenly; planning is each snapshot's own.
        let share = started.elapsed().as_secs_f64() * 1000.0 / items.len() as f64;
        Ok(items
            .into_iter()
            .map(|p| {
                let stored = Stored {
                    snapshot_id: p.snapshot_id,
                    taken_at: p.snapshot.ts,
                    planned_at: p.planned_at,
                    sockets: p.snapshot.sockets.len(),
                    processes: p.snapshot.processes.len(),
                    opened: p.plan.opened.len(),
                    closed: p.plan.closed.len(),
                    transitions: p.plan.transitions.len(),
                    store_ms: p.plan_ms + share,
                };
                (stored, p.snapshot)
            })
            .collect())
    }

    /// The appends and updates of [`Self::store_planned`], inside its transaction. Every
    /// table's rows go in before any lifetime is completed: completing a snapshot's lifetimes
    /// reads its socket rows and its previous snapshot's, which are then all there, and the
    /// lifetimes opened later in the batch have no rows in either, so the updates find what
    /// they would have found one snapshot at a time.
    fn write_planned(&self, items: &[PlannedSnapshot]) -> Result<()> {
        let names: Vec<HashMap<u32, &str>> = items.iter().map(|p| process_names(&p.snapshot)).collect();
        self.append_all(
            "snapshots",
            items.iter().map(|p| {
                let snap = &p.snapshot;
                let notes = (!snap.gaps.is_empty()).then(|| snap.gaps.join("; "));
                batch(vec![
                    ("snapshot_id", i64s([Some(p.snapshot_id)])),
                    ("ts", timestamps([Some(ts_micros(snap.ts))])),
                    ("host", strings([Some(snap.host.as_str())])),
                    ("source", strings([Some(p.source)])),
                    (
                        "collect_ms",
                        Arc::new(Float64Array::from(vec![snap.collect_ms])) as ArrayRef,
                    ),
                    ("socket_count", i32s([Some(snap.sockets.len() as i32)])),
                    ("process_count", i32s([Some(snap.processes.len() as i32)])),
                    ("interface_count", i32s([Some(snap.interfaces.len() as i32)])),
                    ("notes", strings([notes.as_deref()])),
                ])
            }),
        )?;
        // Socket rows and traffic rows name a socket's owner alike.
        self.append_sockets(items, &names)?;
        self.append_all(
            "processes",
            items
                .iter()
                .filter(|p| !p.snapshot.processes.is_empty())
                .map(|p| processes_batch(&p.snapshot, p.snapshot_id, ts_micros(p.snapshot.ts))),
        )?;
        self.append_all("interfaces", items.iter().filter_map(|p| p.interfaces.clone().map(Ok)))?;
        self.append_all(
            "connection_lifetimes",
            items
                .iter()
                .filter(|p| !p.plan.opened.is_empty())
                .map(|p| lifetimes_batch(&p.snapshot, p.snapshot_id, ts_micros(p.snapshot.ts), &p.plan)),
        )?;
        for p in items {
            if !p.plan.closed.is_empty() || !p.plan.orphaned.is_empty() {
                self.complete_lifetimes(p.snapshot_id, &p.snapshot.host, &p.plan)?;
            }
        }
        self.append_all(
            "socket_traffic",
            items
                .iter()
                .zip(&names)
                .filter(|(p, _)| !p.plan.traffic.is_empty())
                .map(|(p, names)| {
                    let (t, snap, ts) = (&p.plan.traffic, &p.snapshot, ts_micros(p.snapshot.ts));
                    let process = |x: &crate::capture::tracker::Traffic| {
                        snap.sockets[x.socket].pid().and_then(|pid| names.get(&pid).copied())
                    };
                    batch(vec![
                        ("snapshot_id", i64s(t.iter().map(|_| Some(p.snapshot_id)))),
                        ("ts", timestamps(t.iter().map(|_| Some(ts)))),
                        ("connection_id", i64s(t.iter().map(|x| Some(x.connection_id)))),
                        ("process_name", strings(t.iter().map(process))),
                        ("bytes_sent", i64s(t.iter().map(|x| Some(u64_to_i64(x.sent))))),
                        ("bytes_received", i64s(t.iter().map(|x| Some(u64_to_i64(x.received))))),
                    ])
                }),
        )?;
        self.append_all(
            "tcp_transitions",
            items.iter().filter(|p| !p.plan.transitions.is_empty()).map(|p| {
                let (t, ts) = (&p.plan.transitions, ts_micros(p.snapshot.ts));
                batch(vec![
                    ("connection_id", i64s(t.iter().map(|x| Some(x.connection_id)))),
                    ("snapshot_id", i64s(t.iter().map(|_| Some(p.snapshot_id)))),
                    ("ts", timestamps(t.iter().map(|_| Some(ts)))),
                    ("from_state", strings(t.iter().map(|x| x.from_state.as_deref()))),
                    ("to_state", strings(t.iter().map(|x| x.to_state.as_deref()))),
                ])
            }),
        )
    }

    /// Completes the lifetimes that closed with their last sighting (the host's previous
    /// snapshot), and keeps the last known counters of those continued by a TIME_WAIT remnant.
    fn complete_lifetimes(&self, snapshot_id: i64, host: &str, plan: &Plan) -> Result<()> {
        let previous: Option<i64> = self
            .conn()
            .query_row(
                "SELECT max(snapshot_id) FROM snapshots WHERE host = ? AND snapshot_id < ?",
                params![host, snapshot_id],
                |r| r.get(0),
            )
            .map_err(store_err)?;
        let Some(previous) = previous else { return Ok(()) };
        let counters = "bytes_sent = coalesce(s.bytes_sent, l.bytes_sent), bytes_acked = coalesce(s.bytes_acked, l.bytes_acked), \
             bytes_received = coalesce(s.bytes_received, l.bytes_received), segs_out = coalesce(s.segs_out, l.segs_out), \
             segs_in = coalesce(s.segs_in, l.segs_in), total_retrans = coalesce(s.total_retrans, l.total_retrans), \
             rtt_us = coalesce(s.rtt_us, l.rtt_us), process_name = coalesce(s.process_name, l.process_name)";
        if !plan.orphaned.is_empty() {
            let list = plan.orphaned.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            self.conn()
                .execute(
                    &format!(
                        "UPDATE connection_lifetimes AS l SET {counters} FROM sockets AS s \
                         WHERE s.snapshot_id = {previous} AND s.connection_id = l.connection_id \
                         AND l.connection_id IN ({list})"
                    ),
                    [],
                )
                .map_err(store_err)?;
        }
        if !plan.closed.is_empty() {
            // The closed lifetimes are exactly the previous snapshot's rows whose lifetime has no
            // row in this one: one anti-join, however many closed (tens of thousands when a
            // server stops), instead of a list of ids.
            let closed = self
                .conn()
                .execute(
                    &format!(
                        "UPDATE connection_lifetimes AS l SET \
                         closed_at = (SELECT ts FROM snapshots WHERE snapshot_id = {snapshot_id}), last_seen = s.ts, \
                         last_snapshot_id = s.snapshot_id, last_state = s.state, direction = s.direction, {counters} \
                         FROM sockets AS s WHERE s.snapshot_id = {previous} AND s.connection_id = l.connection_id \
                         AND l.closed_at IS NULL \
                         AND s.connection_id NOT IN (SELECT connection_id FROM sockets WHERE snapshot_id = {snapshot_id})"
                    ),
                    [],
                )
                .map_err(store_err)?;
            if closed != plan.closed.len() {
                return Err(Error::StoreSnapshot {
                    reason: format!(
                        "closing lifetimes: the store has {closed} to close where the tracker has {}; \
                         was the database changed by another writer during the capture?",
                        plan.closed.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Appends every batch to `table` through one appender, flushed once (each flush is a
    /// statement of its own: planned, executed and logged). Nothing when there are none.
    fn append_all(&self, table: &str, batches: impl Iterator<Item = Result<RecordBatch>>) -> Result<()> {
        let fail = |e: duckdb::Error| Error::StoreSnapshot {
            reason: format!("appending to {table}: {e}"),
        };
        let mut appender = None;
        for batch in batches {
            let batch = batch?;
            if appender.is_none() {
                appender = Some(self.conn().appender(table).map_err(fail)?);
            }
            if let Some(appender) = appender.as_mut() {
                appender.append_record_batch(batch).map_err(fail)?;
            }
        }
        match appender.as_mut() {
            Some(appender) => appender.flush().map_err(fail),
            None => Ok(()),
        }
    }

    /// Appends the snapshots' socket rows a slice at a time, flushing into the transaction
    /// whenever a slice's worth is waiting: the Arrow arrays and the appender's buffer then hold
    /// one slice, not a copy of every socket (tens of megabytes at tens of thousands of
    /// sockets), and a batch of small snapshots is still one flush.
    fn append_sockets(&self, items: &[PlannedSnapshot], names: &[HashMap<u32, &str>]) -> Result<()> {
        const SLICE: usize = 8192;
        let fail = |e: duckdb::Error| Error::StoreSnapshot {
            reason: format!("appending to sockets: {e}"),
        };
        if items.iter().all(|p| p.snapshot.sockets.is_empty()) {
            return Ok(());
        }
        let mut appender = self.conn().appender("sockets").map_err(fail)?;
        let mut waiting = 0;
        for (p, names) in items.iter().zip(names) {
            let snap = &p.snapshot;
            let listeners = Listeners::of(&snap.sockets);
            for start in (0..snap.sockets.len()).step_by(SLICE) {
                let end = (start + SLICE).min(snap.sockets.len());
                let rows = SocketRows {
                    sockets: &snap.sockets[start..end],
                    connection_ids: &p.plan.connection_ids[start..end],
                    names,
                    listeners: &listeners,
                };
                appender
                    .append_record_batch(rows.batch(p.snapshot_id, ts_micros(snap.ts))?)
                    .map_err(fail)?;
                waiting += end - start;
                if waiting >= SLICE {
                    appender.flush().map_err(fail)?;
                    waiting = 0;
                }
            }
        }
        appender.flush().map_err(fail)
    }
}

/// A slice of a snapshot's sockets with what their rows need besides the sockets themselves.
struct SocketRows<'a> {
    sockets: &'a [crate::capture::SocketRecord],
    connection_ids: &'a [i64],
    names: &'a HashMap<u32, &'a str>,
    listeners: &'a Listeners,
}

impl SocketRows<'_> {
    fn batch(&self, snapshot_id: i64, ts: i64) -> Result<RecordBatch> {
        let s = self.sockets;
        let (names, listeners) = (self.names, self.listeners);
        let tcp =
            |f: fn(&TcpCounters) -> Option<i64>| -> ArrayRef { i64s(s.iter().map(|x| x.tcp.as_ref().and_then(f))) };
        let tcp32 =
            |f: fn(&TcpCounters) -> Option<i32>| -> ArrayRef { i32s(s.iter().map(|x| x.tcp.as_ref().and_then(f))) };
        batch(vec![
            ("snapshot_id", i64s(s.iter().map(|_| Some(snapshot_id)))),
            ("ts", timestamps(s.iter().map(|_| Some(ts)))),
            ("connection_id", i64s(self.connection_ids.iter().map(|&id| Some(id)))),
            ("proto", strings(s.iter().map(|x| Some(x.proto.as_str())))),
            ("family", strings(s.iter().map(|x| Some(x.family())))),
            ("local_addr", strings(s.iter().map(|x| Some(x.local_addr.to_string())))),
            ("local_port", i32s(s.iter().map(|x| Some(i32::from(x.local_port))))),
            (
                "remote_addr",
                strings(s.iter().map(|x| x.remote_addr.map(|a| a.to_string()))),
            ),
            ("remote_port", i32s(s.iter().map(|x| x.remote_port.map(i32::from)))),
            ("state", strings(s.iter().map(|x| Some(x.state.as_ref())))),
            (
                "direction",
                strings(s.iter().map(|x| Some(listeners.direction(x).as_str()))),
            ),
            (
                "remote_scope",
                strings(s.iter().map(|x| x.remote_addr.map(|a| netaddr::scope(a).as_str()))),
            ),
            ("pid", i32s(s.iter().map(|x| x.pid().map(|p| p as i32)))),
            (
                "pids",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(s.iter().map(|x| {
                    (!x.pids.is_empty()).then(|| x.pids.iter().map(|&p| Some(p as i32)).collect::<Vec<_>>())
                }))),
            ),
            (
                "process_name",
                strings(s.iter().map(|x| x.pid().and_then(|p| names.get(&p).copied()))),
            ),
            ("uid", i32s(s.iter().map(|x| x.uid.map(|u| u as i32)))),
            ("inode", i64s(s.iter().map(|x| x.inode.map(u64_to_i64)))),
            ("recv_queue", i64s(s.iter().map(|x| x.recv_queue.map(i64::from)))),
            ("send_queue", i64s(s.iter().map(|x| x.send_queue.map(i64::from)))),
            ("bytes_sent", tcp(|t| t.bytes_sent().map(u64_to_i64))),
            ("bytes_acked", tcp(|t| t.bytes_acked().map(u64_to_i64))),
            ("bytes_received", tcp(|t| t.bytes_received().map(u64_to_i64))),
            ("bytes_retrans", tcp(|t| t.bytes_retrans().map(u64_to_i64))),
            ("segs_out", tcp(|t| t.segs_out().map(u64_to_i64))),
            ("segs_in", tcp(|t| t.segs_in().map(u64_to_i64))),
            ("data_segs_out", tcp(|t| t.data_segs_out().map(u64_to_i64))),
            ("data_segs_in", tcp(|t| t.data_segs_in().map(u64_to_i64))),
            ("rtt_us", tcp32(|t| t.rtt_us().map(|v| v as i32))),
            ("rttvar_us", tcp32(|t| t.rttvar_us().map(|v| v as i32))),
            ("min_rtt_us", tcp32(|t| t.min_rtt_us().map(|v| v as i32))),
            ("retransmits", tcp32(|t| t.retransmits().map(|v| v as i32))),
            ("total_retrans", tcp(|t| t.total_retrans().map(i64::from))),
            ("lost", tcp32(|t| t.lost().map(|v| v as i32))),
            ("unacked", tcp32(|t| t.unacked().map(|v| v as i32))),
            ("snd_cwnd", tcp32(|t| t.snd_cwnd().map(|v| v as i32))),
            ("delivery_rate_bps", tcp(|t| t.delivery_rate_bps().map(u64_to_i64))),
            ("last_data_sent_ms", tcp(|t| t.last_data_sent_ms().map(i64::from))),
            ("last_data_recv_ms", tcp(|t| t.last_data_recv_ms().map(i64::from))),
        ])
    }
}

/// Each process's name by pid, as socket rows name their owners.
fn process_names(snap: &Snapshot) -> HashMap<u32, &str> {
    snap.processes.iter().map(|p| (p.pid, p.name.as_str())).collect()
}

fn store_err(e: duckdb::Error) -> Error {
    Error::StoreSnapshot { reason: e.to_string() }
}

fn processes_batch(snap: &Snapshot, snapshot_id: i64, ts: i64) -> Result<RecordBatch> {
    let p = &snap.processes;
    batch(vec![
        ("snapshot_id", i64s(p.iter().map(|_| Some(snapshot_id)))),
        ("ts", timestamps(p.iter().map(|_| Some(ts)))),
        ("pid", i32s(p.iter().map(|x| Some(x.pid as i32)))),
        ("ppid", i32s(p.iter().map(|x| x.ppid.map(|v| v as i32)))),
        ("name", strings(p.iter().map(|x| Some(x.name.as_str())))),
        ("exe", strings(p.iter().map(|x| x.exe.as_deref()))),
        ("cmdline", strings(p.iter().map(|x| x.cmdline.as_deref()))),
        ("user_name", strings(p.iter().map(|x| x.user_name.as_deref()))),
        ("uid", i32s(p.iter().map(|x| x.uid.map(|v| v as i32)))),
        ("status", strings(p.iter().map(|x| x.status.as_deref()))),
        (
            "cpu_percent",
            Arc::new(Float64Array::from_iter(p.iter().map(|x| x.cpu_percent))) as ArrayRef,
        ),
        (
            "memory_rss_bytes",
            i64s(p.iter().map(|x| x.memory_rss_bytes.map(u64_to_i64))),
        ),
        (
            "memory_virtual_bytes",
            i64s(p.iter().map(|x| x.memory_virtual_bytes.map(u64_to_i64))),
        ),
        ("start_time", timestamps(p.iter().map(|x| x.start_time.map(ts_micros)))),
        (
            "disk_read_bytes",
            i64s(p.iter().map(|x| x.disk_read_bytes.map(u64_to_i64))),
        ),
        (
            "disk_written_bytes",
            i64s(p.iter().map(|x| x.disk_written_bytes.map(u64_to_i64))),
        ),
    ])
}

/// Counter change since the previous row; `None` after a reset (the counter went backwards).
fn delta(now: u64, before: Option<u64>) -> Option<i64> {
    before.and_then(|b| now.checked_sub(b)).map(u64_to_i64)
}

fn interfaces_batch(snap: &Snapshot, snapshot_id: i64, ts: i64, state: &HostState) -> Result<RecordBatch> {
    let i = &snap.interfaces;
    let prev: Vec<Option<&(DateTime<Utc>, InterfaceRecord)>> =
        i.iter().map(|x| state.previous_interfaces.get(&x.name)).collect();
    let d = |f: fn(&InterfaceRecord) -> u64| -> ArrayRef {
        i64s(i.iter().zip(&prev).map(|(x, p)| delta(f(x), p.map(|(_, r)| f(r)))))
    };
    let total = |f: fn(&InterfaceRecord) -> u64| -> ArrayRef { i64s(i.iter().map(|x| Some(u64_to_i64(f(x))))) };
    batch(vec![
        ("snapshot_id", i64s(i.iter().map(|_| Some(snapshot_id)))),
        ("ts", timestamps(i.iter().map(|_| Some(ts)))),
        ("name", strings(i.iter().map(|x| Some(x.name.as_str())))),
        ("mac", strings(i.iter().map(|x| x.mac.as_deref()))),
        ("addresses", strings(i.iter().map(|x| x.addresses.as_deref()))),
        ("rx_bytes", total(|r| r.rx_bytes)),
        ("tx_bytes", total(|r| r.tx_bytes)),
        ("rx_packets", total(|r| r.rx_packets)),
        ("tx_packets", total(|r| r.tx_packets)),
        ("rx_errors", total(|r| r.rx_errors)),
        ("tx_errors", total(|r| r.tx_errors)),
        (
            "interval_s",
            Arc::new(Float64Array::from_iter(prev.iter().map(|p| {
                p.map(|(t, _)| (snap.ts - *t).num_microseconds().unwrap_or(0) as f64 / 1e6)
            }))) as ArrayRef,
        ),
        ("rx_bytes_delta", d(|r| r.rx_bytes)),
        ("tx_bytes_delta", d(|r| r.tx_bytes)),
        ("rx_packets_delta", d(|r| r.rx_packets)),
        ("tx_packets_delta", d(|r| r.tx_packets)),
        ("rx_errors_delta", d(|r| r.rx_errors)),
        ("tx_errors_delta", d(|r| r.tx_errors)),
    ])
}

fn lifetimes_batch(snap: &Snapshot, snapshot_id: i64, ts: i64, plan: &Plan) -> Result<RecordBatch> {
    let opened: Vec<(i64, &crate::capture::SocketRecord)> = plan
        .opened
        .iter()
        .map(|&i| (plan.connection_ids[i], &snap.sockets[i]))
        .collect();
    let o = &opened;
    let none_i64 = || i64s(o.iter().map(|_| None));
    let none_str = || strings(o.iter().map(|_| None::<&str>));
    batch(vec![
        ("connection_id", i64s(o.iter().map(|(id, _)| Some(*id)))),
        ("host", strings(o.iter().map(|_| Some(snap.host.as_str())))),
        ("proto", strings(o.iter().map(|(_, x)| Some(x.proto.as_str())))),
        ("family", strings(o.iter().map(|(_, x)| Some(x.family())))),
        (
            "local_addr",
            strings(o.iter().map(|(_, x)| Some(x.local_addr.to_string()))),
        ),
        ("local_port", i32s(o.iter().map(|(_, x)| Some(i32::from(x.local_port))))),
        (
            "remote_addr",
            strings(o.iter().map(|(_, x)| x.remote_addr.map(|a| a.to_string()))),
        ),
        ("remote_port", i32s(o.iter().map(|(_, x)| x.remote_port.map(i32::from)))),
        ("pid", i32s(o.iter().map(|(_, x)| x.pid().map(|p| p as i32)))),
        ("inode", i64s(o.iter().map(|(_, x)| x.inode.map(u64_to_i64)))),
        (
            "remote_scope",
            strings(o.iter().map(|(_, x)| x.remote_addr.map(|a| netaddr::scope(a).as_str()))),
        ),
        ("first_seen", timestamps(o.iter().map(|_| Some(ts)))),
        ("first_snapshot_id", i64s(o.iter().map(|_| Some(snapshot_id)))),
        ("first_state", strings(o.iter().map(|(_, x)| Some(x.state.as_ref())))),
        ("closed_at", timestamps(o.iter().map(|_| None))),
        ("last_seen", timestamps(o.iter().map(|_| None))),
        ("last_snapshot_id", none_i64()),
        ("last_state", none_str()),
        ("direction", none_str()),
        ("process_name", none_str()),
        ("bytes_sent", none_i64()),
        ("bytes_acked", none_i64()),
        ("bytes_received", none_i64()),
        ("segs_out", none_i64()),
        ("segs_in", none_i64()),
        ("total_retrans", none_i64()),
        ("rtt_us", i32s(o.iter().map(|_| None))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{ProcessRecord, SocketRecord, TcpCounterFields};
    use crate::store::Location;

    fn sock(lport: u16, state: &'static str, bytes: u64) -> SocketRecord {
        SocketRecord {
            proto: Proto::Tcp,
            local_addr: "10.0.0.2".parse().unwrap(),
            local_port: lport,
            remote_addr: Some("93.184.216.34".parse().unwrap()),
            remote_port: Some(443),
            state: state.into(),
            pids: vec![300],
            uid: Some(1000),
            inode: Some(u64::from(lport)),
            recv_queue: Some(0),
            send_queue: Some(0),
            tcp: Some(
                TcpCounterFields {
                    bytes_sent: Some(bytes),
                    bytes_received: Some(bytes * 2),
                    ..Default::default()
                }
                .into(),
            ),
        }
    }

    fn snap(secs: i64, sockets: Vec<SocketRecord>, rx: u64) -> Snapshot {
        Snapshot {
            ts: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            host: "h".into(),
            collect_ms: Some(1.0),
            sockets,
            processes: vec![ProcessRecord {
                pid: 300,
                ppid: Some(1),
                name: "curl".into(),
                exe: None,
                cmdline: Some("curl https://example.com".into()),
                user_name: None,
                uid: Some(1000),
                status: None,
                cpu_percent: None,
                memory_rss_bytes: Some(1),
                memory_virtual_bytes: Some(2),
                start_time: None,
                disk_read_bytes: None,
                disk_written_bytes: None,
            }],
            interfaces: vec![InterfaceRecord {
                name: "eth0".into(),
                mac: None,
                addresses: None,
                rx_bytes: rx,
                tx_bytes: 0,
                rx_packets: 0,
                tx_packets: 0,
                rx_errors: 0,
                tx_errors: 0,
            }],
            gaps: vec![],
        }
    }

    fn q(store: &Store, sql: &str) -> String {
        store.conn().query_row(sql, [], |r| r.get::<_, String>(0)).unwrap()
    }

    #[test]
    fn snapshots_build_connections_transitions_and_deltas() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        store
            .append_snapshot(
                &snap(0, vec![sock(5000, "SYN_SENT", 0), sock(5001, "ESTABLISHED", 10)], 100),
                "fixture",
                &mut state,
            )
            .unwrap();
        store
            .append_snapshot(
                &snap(5, vec![sock(5000, "ESTABLISHED", 700)], 150),
                "fixture",
                &mut state,
            )
            .unwrap();
        let third = store
            .append_snapshot(&snap(10, vec![], 90), "fixture", &mut state)
            .unwrap();
        assert_eq!((third.opened, third.closed), (0, 1));

        assert_eq!(
            q(&store, "SELECT string_agg(local_port || ':' || first_state || '>' || last_state || ':' || closed || ':' || duration_s || ':' || bytes_sent, ' ' ORDER BY local_port) FROM connections"),
            "5000:SYN_SENT>ESTABLISHED:true:5.0:700 5001:ESTABLISHED>ESTABLISHED:true:0.0:10"
        );
        assert_eq!(
            q(&store, "SELECT string_agg(c.local_port || ':' || coalesce(from_state, '-') || '>' || coalesce(to_state, '-'), ' ' ORDER BY t.snapshot_id, c.local_port) FROM tcp_transitions t JOIN connections c USING (connection_id)"),
            "5000:->SYN_SENT 5001:->ESTABLISHED 5000:SYN_SENT>ESTABLISHED 5001:ESTABLISHED>- 5000:ESTABLISHED>-"
        );
        assert_eq!(
            q(&store, "SELECT string_agg(coalesce(rx_bytes_delta::VARCHAR, 'NULL') || '/' || coalesce(interval_s::VARCHAR, 'NULL'), ' ' ORDER BY snapshot_id) FROM interfaces"),
            "NULL/NULL 50/5.0 NULL/5.0"
        );
        assert_eq!(
            q(&store, "SELECT string_agg(DISTINCT process_name) FROM sockets"),
            "curl"
        );
    }

    #[test]
    fn traffic_is_stored_as_it_moved_and_as_an_upgrade_computes_it() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let snapshots = [
            snap(
                0,
                vec![sock(5000, "ESTABLISHED", 100), sock(5001, "ESTABLISHED", 10)],
                0,
            ),
            snap(
                5,
                vec![sock(5000, "ESTABLISHED", 400), sock(5001, "ESTABLISHED", 10)],
                0,
            ),
            snap(
                10,
                vec![sock(5000, "ESTABLISHED", 450), sock(5002, "ESTABLISHED", 30)],
                0,
            ),
        ];
        let mut state = store.host_state("h").unwrap();
        for (n, s) in snapshots.iter().enumerate() {
            // A new run resumes from what is stored, as after a restart.
            if n == 2 {
                state = store.host_state("h").unwrap();
            }
            store.append_snapshot(s, "fixture", &mut state).unwrap();
        }
        let rows = "SELECT string_agg(snapshot_id || ':' || c.local_port || ':' || t.bytes_sent || '/' || t.bytes_received || ':' || t.process_name, ' ' ORDER BY snapshot_id, c.local_port) \
                    FROM {} t JOIN connections c USING (connection_id)";
        // The first snapshot's bytes predate the host's history; 5001 then moved nothing; 5002
        // opened within the last interval.
        let stored = q(&store, &rows.replace("{}", "socket_traffic"));
        assert_eq!(stored, "2:5000:300/600:curl 3:5000:50/100:curl 3:5002:30/60:curl");

        // Migration 20 fills socket_traffic for rows stored before it with the same rule.
        let migration = include_str!("../../sql/020_socket_traffic.sql");
        let backfill = migration
            .split_once("INSERT INTO socket_traffic\n")
            .and_then(|(_, rest)| rest.split_once(";\n"))
            .map(|(select, _)| select)
            .unwrap();
        store
            .conn()
            .execute_batch(&format!(
                "CREATE TEMP TABLE recomputed AS FROM socket_traffic LIMIT 0; INSERT INTO recomputed {backfill}"
            ))
            .unwrap();
        assert_eq!(q(&store, &rows.replace("{}", "recomputed")), stored);
    }

    #[test]
    fn thousands_closing_at_once_are_all_completed() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        let many: Vec<SocketRecord> = (0..5000u16)
            .map(|p| sock(10_000 + p, "ESTABLISHED", u64::from(p)))
            .collect();
        store.append_snapshot(&snap(0, many, 1), "fixture", &mut state).unwrap();
        let stored = store
            .append_snapshot(&snap(5, vec![], 2), "fixture", &mut state)
            .unwrap();
        assert_eq!(stored.closed, 5000);
        assert_eq!(
            q(&store, "SELECT count(*)::VARCHAR || ':' || sum(bytes_sent) || ':' || count(DISTINCT closed_at) FROM connections WHERE closed AND last_state = 'ESTABLISHED'"),
            format!("5000:{}:1", (0..5000u64).sum::<u64>())
        );
    }

    #[test]
    fn a_new_run_resumes_open_connections() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        store
            .append_snapshot(&snap(0, vec![sock(5000, "ESTABLISHED", 1)], 1), "fixture", &mut state)
            .unwrap();
        let mut resumed = store.host_state("h").unwrap();
        let stored = store
            .append_snapshot(
                &snap(60, vec![sock(5000, "ESTABLISHED", 2)], 2),
                "fixture",
                &mut resumed,
            )
            .unwrap();
        assert_eq!((stored.opened, stored.closed), (0, 0));
        assert_eq!(
            q(
                &store,
                "SELECT count(*)::VARCHAR || ':' || max(last_snapshot_id) || ':' || max(duration_s) FROM connections"
            ),
            "1:2:60.0"
        );
        assert_eq!(
            q(
                &store,
                "SELECT rx_bytes_delta::VARCHAR FROM interfaces WHERE snapshot_id = 2"
            ),
            "1"
        );
    }

    fn setting(store: &Store, name: &str) -> String {
        current_setting(store.conn(), name).unwrap()
    }

    fn cached_table_bytes(store: &Store) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory() WHERE tag = 'BASE_TABLE'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn capture_settings_evict_written_blocks_and_restore_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Location::File(dir.path().join("c.duckdb")), false).unwrap();
        let (threads, write_buffer, limit) = (
            setting(&store, "threads"),
            setting(&store, "write_buffer_row_group_count"),
            setting(&store, "memory_limit"),
        );
        {
            let mut settings = store.capture_settings().unwrap();
            assert_eq!(setting(&store, "threads"), "1");
            assert_eq!(setting(&store, "write_buffer_row_group_count"), "1");
            settings.before_snapshot();

            let mut state = store.host_state("h").unwrap();
            let sockets: Vec<SocketRecord> = (1..=20_000).map(|p| sock(p, "ESTABLISHED", 10)).collect();
            store
                .append_snapshot(&snap(0, sockets, 0), "fixture", &mut state)
                .unwrap();
            store.conn().execute_batch("CHECKPOINT").unwrap();
            // Reading the rows back caches their blocks, as a capture's own reads do.
            let _: i64 = store
                .conn()
                .query_row("SELECT sum(bytes_sent + local_port) FROM sockets", [], |r| r.get(0))
                .unwrap();
            let before = cached_table_bytes(&store);
            assert!(before > 0, "nothing cached to evict");
            settings.release_cache();
            let after = cached_table_bytes(&store);
            assert!(after < before, "cache not evicted: {before} -> {after} bytes");
            assert_eq!(setting(&store, "memory_limit"), limit);
        }
        assert_eq!(setting(&store, "threads"), threads);
        assert_eq!(setting(&store, "write_buffer_row_group_count"), write_buffer);
        assert_eq!(setting(&store, "memory_limit"), limit);
    }

    #[test]
    fn a_capture_attaches_again_and_keeps_small_tables_in_few_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.duckdb");
        let wal = dir.path().join("r.duckdb.wal");
        let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let store = Store::open(&Location::File(path), false).unwrap();
        let mut state = store.host_state("h").unwrap();
        for i in 0..40 {
            // One capture run per snapshot, as `watch` does: the count of rows since the file
            // was attached goes on from run to run.
            let mut settings = store.capture_settings().unwrap();
            let socket = sock(5000 + i as u16, "ESTABLISHED", 1);
            store
                .append_snapshot(&snap(i, vec![socket], 1), "fixture", &mut state)
                .unwrap();
            assert!(wal_bytes() > 0, "snapshot {i} is not in the WAL");
            // Count each as half the rows after which the file is attached again.
            settings.after_store(crate::store::REATTACH_ROWS / 2).unwrap();
            // Detaching checkpoints, and removes the WAL: every second snapshot.
            assert_eq!(wal_bytes() == 0, i % 2 == 1, "after snapshot {i}");
        }
        assert_eq!(q(&store, "SELECT current_database()"), crate::store::CATALOG);
        assert!(!store.is_detached());
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM snapshots"), "40");
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM sockets"), "40");
        // Every checkpoint used to leave each table a new row group while vacuuming was off
        // during captures: one 256 KiB block read per snapshot by every scan of `snapshots`.
        for table in ["snapshots", "processes", "interfaces", "sockets"] {
            let n: i64 = q(
                &store,
                &format!("SELECT count(DISTINCT row_group_id)::VARCHAR FROM pragma_storage_info('{table}')"),
            )
            .parse()
            .unwrap();
            assert!(n <= 2, "{table} is in {n} row groups after 20 checkpoints");
        }
    }

    #[test]
    fn a_memory_limit_someone_set_does_not_drift() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Location::File(dir.path().join("m.duckdb")), false).unwrap();
        // A first run with the default limit, then the shell sets one before the next run.
        store.capture_settings().unwrap().release_cache();
        store.conn().execute_batch("SET memory_limit = '3GB'").unwrap();
        let shown = setting(&store, "memory_limit");
        let mut settings = store.capture_settings().unwrap();
        for _ in 0..5 {
            settings.release_cache();
            assert_eq!(setting(&store, "memory_limit"), shown);
        }
    }

    #[test]
    fn a_failed_snapshot_stores_nothing() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        store
            .append_snapshot(&snap(0, vec![sock(5000, "ESTABLISHED", 1)], 1), "fixture", &mut state)
            .unwrap();
        // Break the last step of the transaction: tcp_transitions cannot take rows.
        store
            .conn()
            .execute_batch("ALTER TABLE tcp_transitions RENAME TO tcp_transitions_away")
            .unwrap();
        let err = store
            .append_snapshot(&snap(5, vec![sock(5001, "SYN_SENT", 0)], 2), "fixture", &mut state)
            .unwrap_err();
        assert!(matches!(err, Error::StoreSnapshot { .. }), "{err}");
        store
            .conn()
            .execute_batch("ALTER TABLE tcp_transitions_away RENAME TO tcp_transitions")
            .unwrap();
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM snapshots"), "1");
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM sockets"), "1");
        assert_eq!(
            q(
                &store,
                "SELECT count(*)::VARCHAR || ':' || bool_or(closed) FROM connections"
            ),
            "1:false"
        );
        // The tracker moved on when the snapshot was planned; loaded again from the file, as a
        // capture does after a failure, the retried snapshot is stored as if the failure never
        // happened.
        let mut state = store.host_state("h").unwrap();
        let retried = store
            .append_snapshot(&snap(5, vec![sock(5001, "SYN_SENT", 0)], 2), "fixture", &mut state)
            .unwrap();
        assert_eq!((retried.snapshot_id, retried.opened, retried.closed), (2, 1, 1));
    }

    #[test]
    fn snapshot_ids_come_from_memory_and_are_read_again_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Location::File(dir.path().join("ids.db")), false).unwrap();
        let mut state = store.host_state("h").unwrap();
        let first = store
            .append_snapshot(&snap(0, vec![sock(5000, "ESTABLISHED", 1)], 1), "fixture", &mut state)
            .unwrap();
        assert_eq!(first.snapshot_id, 1);
        // Another writer takes the id this process would issue next: that snapshot fails whole,
        // and the next one reads the largest id again instead of failing for ever.
        store
            .conn()
            .execute_batch(
                "INSERT INTO snapshots (snapshot_id, ts, host, source, socket_count, process_count, interface_count) \
                 VALUES (2, TIMESTAMP '2026-01-01 00:00:00', 'other', 'manual', 0, 0, 0)",
            )
            .unwrap();
        let clash = store.append_snapshot(&snap(1, vec![sock(5000, "ESTABLISHED", 2)], 2), "fixture", &mut state);
        assert!(matches!(clash, Err(Error::StoreSnapshot { .. })), "{clash:?}");
        let after = store
            .append_snapshot(&snap(2, vec![sock(5000, "ESTABLISHED", 3)], 3), "fixture", &mut state)
            .unwrap();
        assert_eq!(after.snapshot_id, 3);
        assert_eq!(
            q(
                &store,
                "SELECT string_agg(snapshot_id::VARCHAR, ',' ORDER BY snapshot_id) FROM snapshots"
            ),
            "1,2,3"
        );
    }

    /// Every row a history of snapshots leaves, table by table, in a fixed order.
    fn every_row(store: &Store) -> Vec<String> {
        [
            "snapshots",
            "sockets",
            "processes",
            "interfaces",
            "connection_lifetimes",
            "socket_traffic",
            "tcp_transitions",
        ]
        .iter()
        .map(|t| {
            q(
                store,
                &format!(
                    "SELECT '{t}: ' || coalesce(string_agg(x::VARCHAR, ' | ' ORDER BY x::VARCHAR), '') FROM {t} x"
                ),
            )
        })
        .collect()
    }

    /// Lifetimes that open and close inside one batch, a TIME_WAIT remnant, traffic and an
    /// interface counter: stored together they leave exactly the rows stored one by one.
    #[test]
    fn snapshots_stored_together_leave_the_rows_stored_one_by_one() {
        let mut orphan = sock(5003, "TIME_WAIT", 0);
        (orphan.pids, orphan.inode, orphan.tcp) = (vec![], None, None);
        let history = vec![
            snap(0, vec![sock(5000, "SYN_SENT", 0), sock(5001, "ESTABLISHED", 10)], 100),
            snap(
                1,
                vec![sock(5000, "ESTABLISHED", 700), sock(5003, "ESTABLISHED", 5)],
                150,
            ),
            snap(
                2,
                vec![
                    sock(5000, "ESTABLISHED", 900),
                    orphan.clone(),
                    sock(5004, "SYN_SENT", 0),
                ],
                90,
            ),
            snap(3, vec![orphan, sock(5001, "ESTABLISHED", 1)], 95),
            snap(4, vec![], 99),
            snap(5, vec![sock(5000, "ESTABLISHED", 3)], 99),
        ];
        // Files, not memory: in-memory stores of one process share the connection ids issued.
        let dir = tempfile::tempdir().unwrap();
        let one_by_one = Store::open(&Location::File(dir.path().join("one.db")), false).unwrap();
        let mut state = one_by_one.host_state("h").unwrap();
        for s in &history {
            one_by_one.append_snapshot(s, "fixture", &mut state).unwrap();
        }
        let together = Store::open(&Location::File(dir.path().join("together.db")), false).unwrap();
        let mut state = together.host_state("h").unwrap();
        let mut planned = PlannedSnapshots::default();
        // Two batches, the second resuming from what the first stored.
        for (n, s) in history.iter().enumerate() {
            if n == 4 {
                assert_eq!(together.store_planned(&mut planned).unwrap().len(), 4);
                assert!(planned.is_empty());
            }
            together
                .plan_snapshot(s.clone(), "fixture", &mut state, &mut planned)
                .unwrap();
        }
        let stored = together.store_planned(&mut planned).unwrap();
        assert_eq!(stored.iter().map(|(s, _)| s.snapshot_id).collect::<Vec<_>>(), [5, 6]);
        let (expected, got) = (every_row(&one_by_one), every_row(&together));
        assert!(
            expected.iter().all(|t| !t.ends_with(": ")),
            "every table has rows: {expected:?}"
        );
        for (e, g) in expected.iter().zip(&got) {
            assert_eq!(e, g);
        }
    }

    /// A batch that fails stores none of its snapshots, says which were lost, and the ids are
    /// issued again after the file's largest.
    #[test]
    fn a_failed_batch_stores_none_of_its_snapshots() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        let mut planned = PlannedSnapshots::default();
        for i in 0..3 {
            store
                .plan_snapshot(
                    snap(i, vec![sock(5000, "ESTABLISHED", 1 + i as u64)], 1),
                    "fixture",
                    &mut state,
                    &mut planned,
                )
                .unwrap();
        }
        assert_eq!((planned.len(), planned.rows()), (3, 6));
        store
            .conn()
            .execute_batch("ALTER TABLE tcp_transitions RENAME TO tcp_transitions_away")
            .unwrap();
        let err = store.store_planned(&mut planned).unwrap_err().to_string();
        assert!(err.contains("the 3 snapshots 1..3 were not stored"), "{err}");
        assert!(planned.is_empty());
        store
            .conn()
            .execute_batch("ALTER TABLE tcp_transitions_away RENAME TO tcp_transitions")
            .unwrap();
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM snapshots"), "0");
        assert_eq!(q(&store, "SELECT count(*)::VARCHAR FROM connection_lifetimes"), "0");
        let mut state = store.host_state("h").unwrap();
        let again = store
            .append_snapshot(&snap(9, vec![sock(5000, "ESTABLISHED", 9)], 1), "fixture", &mut state)
            .unwrap();
        assert_eq!((again.snapshot_id, again.opened), (1, 1));
    }
}
