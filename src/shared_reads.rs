//! One read per time range of what several dashboard panels read (issue 18: every view within a
//! second over the whole history).
//!
//! Overview, TCP and Statistics each have several panels that count or sum the same range macro
//! (`connection_events_overlapping` over the view's range: every lifetime of the range made into
//! an event). Over a history of weeks each such read is a pass over every lifetime, so a view
//! paid for the same pass four or more times. Here the first panel that asks builds the macro's
//! rows for its range once, into a table of an in-memory database attached to the instance
//! ([`DATABASE`], compressed: no file backs it, and every connection of the server's database
//! instance sees it), and each panel reads that table in the macro's place. Only the columns some
//! panel reads are kept ([`SharedCall`]): the table is built faster and takes less memory. A
//! server may build a range before any panel asks ([`SharedReads::warm`]).
//!
//! Exact by construction: the table holds the macro's rows for the same range, and the panel's
//! SQL is otherwise unchanged. Never stale: a table is kept with the data version it was built
//! from ([`VERSION_SQL`], read in the transaction that builds it), and [`Prepared::sql`], called
//! in the panel's own transaction, gives the table only when that transaction sees the same
//! version (else it reads the table grown, below, or the macro itself); a panel asked after an
//! import or a retention run builds the table again.
//!
//! Grown, not built again, while a capture only adds to the history ([`Growth`]): a lifetime
//! closed when the table was built never changes again (capture writes a lifetime's last values
//! when it closes it, and only retention deletes it), so after a snapshot the macro's rows are
//! the table's closed ones plus the macro's rows of the lifetimes that were open at the build or
//! began after it, which a panel reads in the call's place. That holds while the history only
//! grew (no flow imported, no lifetime of the build deleted), which a panel checks in its own
//! transaction; two kinds of the table's rows are read again from the macro: an internal
//! connection on a place that began or ceased to listen since (which side accepted it depends
//! on that), and the accepting side of an internal connection whose opener is a lifetime begun
//! since (the macro leaves it out). The table is built again when the check fails, or when the
//! lifetimes added since the build are many ([`Growth::too_grown`]). On a capturing server this
//! is what keeps a view over the whole history from a pass over every lifetime at each refresh.
//!
//! Bounded: at most [`SharedReads::KEEP`] tables, read most recently, of at most
//! [`SharedReads::MAX_BYTES`] together (as [`table_bytes`] counts them); a range whose table alone
//! is larger is not kept, and its panels read the macro each; a build that may exceed them is cut
//! ([`SharedCall::rows_at_most`]). Panels of one range wait for the first one's build (one pass
//! instead of several); panels of other ranges do not.
//!
//! May use the database connection, `dashboard` (a range's literals) and `error`; it runs no
//! panel itself (the server and the report do).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDateTime;

use crate::dashboard::panel_sql;
use crate::error::{Error, Result};

/// A macro call, as the panels in `views.json` write it, that is read once per range, and the
/// columns of its rows that the panels read (the rest are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCall {
    pub call: &'static str,
    pub columns: &'static str,
    /// At least as many rows as the call gives over `:since`..`:until`, counted without making
    /// them: a build whose range cannot exceed the rows allowed is not cut ([`build`]).
    pub rows_at_most: &'static str,
    /// The call's rows of only the lifetimes numbered above `:newest_id` or listed in
    /// `:open_ids` (a list), no flows: what grows a table of it ([`Growth`]).
    pub of_lifetimes: &'static str,
}

/// The columns a table of the live events keeps besides the panels' own, so that it can grow
/// ([`Growth`]): which lifetime a row is, whether it was open, and its source port (with the
/// host, protocol and addresses, the socket that would have opened it).
const GROWTH_COLUMNS: &str = "event_id, src_p, open";

/// The calls read once per range.
pub const SHARED_CALLS: &[SharedCall] = &[SharedCall {
    call: "connection_events_overlapping(:since, :until)",
    columns: "source, host, start_ts, duration_s, proto, src_h, dst_h, dst_p, direction, bytes_out, bytes_in, \
              packets_out, packets_in, wire_bytes_out, wire_bytes_in, failed",
    // A live event is a lifetime that began by the range's end (one at most each), an imported
    // one a flow.
    rows_at_most: "SELECT (SELECT count(*) FROM connection_lifetimes WHERE first_seen <= :until) \
                   + (SELECT count(*) FROM flows WHERE ts <= :until)",
    // connection_events_overlapping(since, until) is connection_events_between(NULL, until, since)
    // (migration 25), which is connection_events_of with no limit (migration 37).
    of_lifetimes: "connection_events_of(NULL, :until, :since, :newest_id, :open_ids)",
}];

/// The in-memory database, attached to the instance with DuckDB's compression, that holds the
/// shared reads ([`attach`]).
pub const DATABASE: &str = "dashboard_shared_reads";
/// The schema the shared reads' tables are in.
pub const SCHEMA: &str = "dashboard_shared_reads.main";
/// How the shared reads' tables are named (`shared_read_N`): what DuckDB's errors about one
/// of them say.
pub const TABLE_PREFIX: &str = "shared_read_";

/// What the shared calls' rows depend on, as one text: the newest snapshot and how many
/// snapshots, lifetimes and flows there are. Capture adds a snapshot (and closes lifetimes in
/// the same transaction), an import adds flows, retention deletes snapshots and lifetimes: each
/// changes it.
pub const VERSION_SQL: &str = "SELECT concat_ws(',', \
       (SELECT max(snapshot_id) FROM snapshots), (SELECT count(*) FROM snapshots), \
       (SELECT count(*) FROM connection_lifetimes), (SELECT count(*) FROM flows), \
       (SELECT max(import_id) FROM flows))";

/// The number of the next table built, for every [`SharedReads`] of the process: their tables
/// share one schema of one database instance (a server's, and a report a client runs in it), so
/// a number is never used twice, and a panel never reads a table another instance built.
static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

/// What one range's read of one call holds.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    /// Not built yet, or dropped.
    Nothing,
    /// The call's rows as of `version`, in `table`, taking about `bytes`, and how they may
    /// grow with the history.
    Table {
        version: String,
        table: String,
        bytes: u64,
        growth: Growth,
        /// What the table grew by for the newest data version a panel asked for.
        grown_at: Option<GrownAt>,
    },
    /// The rows were more than [`SharedReads::MAX_BYTES`]: the panels read the call each. Not
    /// tried again while the slot is kept; after its eviction a new try costs a build cut at
    /// that many bytes' worth of rows ([`build`]).
    TooLarge,
}

/// One call over one range. Its lock is held while the table is built, so that the other panels
/// of the range wait for it rather than build it too.
#[derive(Debug)]
struct Slot {
    call: SharedCall,
    since: NaiveDateTime,
    until: NaiveDateTime,
    held: Mutex<Held>,
    /// The bytes of the table in `held` (0 without one), readable while a panel holds the lock.
    bytes: AtomicU64,
}

/// The shared reads of one server (or one report): which tables hold which call's rows.
#[derive(Debug, Default)]
pub struct SharedReads {
    /// Read least recently first. Locked only to find, add or drop a slot, never over a query.
    slots: Mutex<VecDeque<Arc<Slot>>>,
}

/// A panel's SQL with the shared calls it reads replaced by their tables, and the data version
/// those tables hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    template: String,
    shared: Option<(String, String)>,
    /// The template reading the tables grown by what they grew by for one later data version
    /// ([`GrownAt`]), and that version.
    grown_at: Option<(String, String)>,
    /// The template reading the tables grown by the rows added since their build, worked out
    /// in the panel's own query, and what must still hold for that to be the call's rows.
    grown: Option<(String, Growth)>,
}

impl Prepared {
    /// The template to run in the transaction open on `conn`: the one reading the shared tables
    /// when that transaction sees the data they were built from, or the tables grown by what was
    /// added since when only that changed, else the panel's own (its rows must be those of the
    /// data the rest of the query sees).
    pub fn sql(&self, conn: &duckdb::Connection) -> Result<&str> {
        let now = current_version(conn)?;
        for (sql, version) in self.shared.iter().chain(&self.grown_at) {
            if &now == version {
                return Ok(sql);
            }
        }
        if let Some((sql, growth)) = &self.grown {
            if growth.holds(&History::read(conn, growth.newest_id)?) {
                return Ok(sql);
            }
        }
        Ok(&self.template)
    }

    /// Whether the panel reads a shared table (when its transaction sees the same data, or data
    /// that only grew since).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
}

/// What a table of the live events was built from, to tell whether the history since only
/// grew, so that the table plus the rows of the lifetimes open at its build or begun after it
/// are the call's rows (module doc).
#[derive(Debug, Clone, PartialEq)]
struct Growth {
    /// The flows at the build (their count and newest import): an import changes it.
    flows: String,
    /// The newest lifetime at the build: lifetimes are numbered in the order they open, so a
    /// larger number is a lifetime begun since.
    newest_id: i64,
    /// The lifetimes numbered up to `newest_id` at the build: retention deleting one changes it.
    lifetimes: i64,
    /// The lifetimes open at the build (also in [`open_table`]).
    open_ids: Vec<i64>,
    /// The table's rows.
    rows: i64,
}

/// What a table grew by for one data version ([`Growth::grow`]): the call's rows of the
/// lifetimes open at the build, begun since, or read again, in `delta`; the event ids of the
/// table's rows that those replace or the macro leaves out now, in `excluded`.
#[derive(Debug, Clone, PartialEq)]
struct GrownAt {
    version: String,
    delta: String,
    /// None when no row of the table is left out (mostly): the panels then read no ids at all.
    excluded: Option<String>,
}

/// What [`Growth`] compares, read in one transaction: the history as it is now.
#[derive(Debug, Clone, PartialEq)]
struct History {
    flows: String,
    newest_id: i64,
    /// The lifetimes numbered up to the `newest_id` asked for.
    lifetimes: i64,
}

impl History {
    const SQL: &'static str =
        "SELECT concat_ws(',', (SELECT count(*) FROM flows), (SELECT max(import_id) FROM flows)), \
         (SELECT coalesce(max(connection_id), 0) FROM connection_lifetimes), \
         (SELECT count(*) FROM connection_lifetimes WHERE connection_id <= ?)";

    /// The history as `conn` sees it, with the lifetimes counted up to `up_to`.
    fn read(conn: &duckdb::Connection, up_to: i64) -> Result<Self> {
        conn.query_row(Self::SQL, [up_to], |r| {
            Ok(History {
                flows: r.get(0)?,
                newest_id: r.get(1)?,
                lifetimes: r.get(2)?,
            })
        })
        .map_err(Error::sql)
    }
}

impl Growth {
    /// Whether the table plus the rows added since is the call's rows in `now`.
    fn holds(&self, now: &History) -> bool {
        now.flows == self.flows && now.lifetimes == self.lifetimes && now.newest_id >= self.newest_id
    }

    /// Whether so many lifetimes were added since the build that reading them is better done
    /// by building the table again: each panel reads the added rows again, where a build is one
    /// pass for all.
    fn too_grown(&self, now: &History) -> bool {
        now.newest_id - self.newest_id > (self.rows / 8).max(10_000)
    }

    /// The table's internal lifetimes on a place that listens now and did not at the build (as
    /// [`listening_table`] holds them), or the other way round: which side accepted them may
    /// have changed, so their rows are read again.
    fn reread_sql(&self, table: &str) -> String {
        let listening = listening_table(table);
        format!(
            "SELECT l.connection_id FROM connection_lifetimes l \
             JOIN ((SELECT * FROM listening_places() EXCEPT SELECT * FROM {listening}) \
                   UNION ALL (SELECT * FROM {listening} EXCEPT SELECT * FROM listening_places())) k \
               ON l.host = k.host AND l.proto = k.proto AND l.local_port = k.local_port \
             WHERE l.direction = 'internal' AND l.connection_id <= {}",
            self.newest_id
        )
    }

    /// `call` over the rows in `table` grown by what was added since, worked out in the panel's
    /// own query (when its data is not the version [`Self::grow`] made): the table's rows of
    /// lifetimes closed at the build, and the call's rows of the lifetimes open at the build
    /// (listed in [`open_table`]) or begun since. Two kinds of the table's rows are read again
    /// from the call instead: an internal connection whose place began or ceased to listen
    /// ([`Self::reread_sql`]), and the accepting side of an internal connection whose opener is
    /// a lifetime begun since (the macro leaves it out). `:since` and `:until` as in the call.
    fn grown(&self, call: SharedCall, table: &str) -> String {
        let newest = self.newest_id;
        let open = open_table(table);
        let reread = self.reread_sql(table);
        format!(
            "(SELECT {columns} FROM {table} WHERE NOT open \
                 AND event_id NOT IN (SELECT connection_id::VARCHAR FROM ({reread})) \
                 AND event_id NOT IN ( \
                     SELECT b.event_id FROM {table} b \
                     JOIN connection_lifetimes o \
                       ON o.connection_id > {newest} AND o.host = b.host AND o.proto = b.proto \
                      AND o.local_addr = b.src_h AND o.local_port = b.src_p \
                      AND o.remote_addr = b.dst_h AND o.remote_port = b.dst_p \
                     JOIN connection_lifetimes l ON l.connection_id = TRY_CAST(b.event_id AS BIGINT) \
                     WHERE b.source = 'connections' AND b.direction = 'internal' AND NOT b.open \
                       AND l.remote_addr = b.src_h AND l.remote_port = b.src_p \
                       AND NOT (l.local_addr = l.remote_addr AND l.local_port = l.remote_port)) \
             UNION ALL \
             SELECT {columns} FROM {of_lifetimes})",
            columns = call.columns,
            of_lifetimes = call.of_lifetimes.replace(":newest_id", &newest.to_string()).replace(
                ":open_ids",
                &format!("(SELECT list(connection_id) FROM (SELECT connection_id FROM {open} UNION ALL {reread}))"),
            ),
        )
    }

    /// Builds what `table` grew by for the data `conn` sees now ([`GrownAt`]), in one
    /// transaction: the same rows as [`Self::grown`], worked out once for every panel of that
    /// data, with the few lifetimes involved looked up by their numbers rather than joined with
    /// every lifetime. None when the history did not only grow since the build.
    fn grow(
        &self,
        conn: &duckdb::Connection,
        table: &str,
        call: SharedCall,
        since: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Result<Option<GrownAt>> {
        conn.execute_batch("BEGIN TRANSACTION").map_err(Error::sql)?;
        let grown = (|| {
            let version = current_version(conn)?;
            if !self.holds(&History::read(conn, self.newest_id)?) {
                return Ok(None);
            }
            let reread: Vec<i64> = column(conn, &self.reread_sql(table))?;
            let mut excluded: Vec<String> = reread.iter().map(i64::to_string).collect();
            // The internal connections begun since, as SQL rows of their numbers.
            let openers: Vec<String> = column(
                conn,
                &format!(
                    "SELECT printf('(%s, %s, %s, %d, %s, %d)', {}, {}, {}, local_port, {}, remote_port) \
                     FROM connection_lifetimes \
                     WHERE connection_id > {} AND direction = 'internal' AND remote_addr IS NOT NULL",
                    QUOTED.replace("{}", "host"),
                    QUOTED.replace("{}", "proto"),
                    QUOTED.replace("{}", "local_addr"),
                    QUOTED.replace("{}", "remote_addr"),
                    self.newest_id
                ),
            )?;
            if !openers.is_empty() {
                // The table's internal rows with an opener's numbers: the accepting side of the
                // connection it opened (its source is the opener's local end), or an earlier
                // connection with the same numbers. Only the first kind is left out: its source
                // is its own lifetime's remote end (and it is no connection to itself).
                excluded.extend(column::<String>(
                    conn,
                    &format!(
                        "WITH candidates AS ( \
                             SELECT b.event_id, b.src_h, b.src_p FROM {table} b \
                             JOIN (VALUES {}) o(host, proto, local_addr, local_port, remote_addr, remote_port) \
                               ON o.host = b.host AND o.proto = b.proto AND o.local_addr = b.src_h \
                              AND o.local_port = b.src_p AND o.remote_addr = b.dst_h AND o.remote_port = b.dst_p \
                             WHERE b.source = 'connections' AND b.direction = 'internal' AND NOT b.open) \
                         SELECT c.event_id FROM candidates c \
                         JOIN connection_lifetimes l ON l.connection_id = TRY_CAST(c.event_id AS BIGINT) \
                         WHERE l.connection_id IN (SELECT TRY_CAST(event_id AS BIGINT) FROM candidates) \
                           AND l.remote_addr = c.src_h AND l.remote_port = c.src_p \
                           AND NOT (l.local_addr = l.remote_addr AND l.local_port = l.remote_port)",
                        openers.join(", ")
                    ),
                )?);
            }
            let n = NEXT_TABLE.fetch_add(1, Ordering::Relaxed);
            let (delta, excluded_table) = (format!("{table}_delta_{n}"), format!("{table}_excluded_{n}"));
            let ids: Vec<String> = self.open_ids.iter().chain(&reread).map(i64::to_string).collect();
            let of_lifetimes = panel_sql(
                &call
                    .of_lifetimes
                    .replace(":newest_id", &self.newest_id.to_string())
                    .replace(":open_ids", &format!("[{}]::BIGINT[]", ids.join(", "))),
                since,
                until,
            );
            let excluded_rows = match excluded.is_empty() {
                true => String::new(),
                false => format!(
                    "CREATE TABLE {excluded_table} (event_id VARCHAR); INSERT INTO {excluded_table} VALUES {};",
                    excluded
                        .iter()
                        .map(|e| format!("({})", quote(e)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            conn.execute_batch(&format!(
                "CREATE TABLE {delta} AS SELECT {} FROM {of_lifetimes}; {excluded_rows} COMMIT",
                call.columns
            ))
            .map_err(Error::sql)?;
            Ok(Some(GrownAt {
                version,
                delta,
                excluded: (!excluded.is_empty()).then_some(excluded_table),
            }))
        })();
        if !matches!(grown, Ok(Some(_))) {
            let _ = conn.execute_batch("ROLLBACK");
        }
        grown
    }
}

/// A text column `{}` as an SQL literal, in SQL (NULL as NULL).
const QUOTED: &str = "coalesce('''' || replace({}, '''', '''''') || '''', 'NULL')";

impl GrownAt {
    /// `call` over the rows in `table` grown by this ([`Growth::grow`]).
    fn sql(&self, call: SharedCall, table: &str) -> String {
        let excluded = match &self.excluded {
            Some(excluded) => format!(" AND event_id NOT IN (SELECT event_id FROM {excluded})"),
            None => String::new(),
        };
        format!(
            "(SELECT {columns} FROM {table} WHERE NOT open{excluded} UNION ALL SELECT {columns} FROM {delta})",
            columns = call.columns,
            delta = self.delta,
        )
    }

    fn drop(&self, conn: &duckdb::Connection) {
        let mut sql = format!("DROP TABLE IF EXISTS {};", self.delta);
        if let Some(excluded) = &self.excluded {
            sql += &format!(" DROP TABLE IF EXISTS {excluded};");
        }
        let _ = conn.execute_batch(&sql);
    }
}

/// `text` as an SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The first column of every row `sql` gives.
fn column<T: duckdb::types::FromSql>(conn: &duckdb::Connection, sql: &str) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(sql).map_err(Error::sql)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(Error::sql)?;
    rows.collect::<std::result::Result<_, _>>().map_err(Error::sql)
}

/// The table listing the lifetimes open when `table` was built.
fn open_table(table: &str) -> String {
    format!("{table}_open")
}

/// The table listing the places that listened when `table` was built (`listening_places`).
fn listening_table(table: &str) -> String {
    format!("{table}_listening")
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Sql {
        message: "the dashboard's shared reads were left inconsistent by a failed request".into(),
    })
}

fn current_version(conn: &duckdb::Connection) -> Result<String> {
    conn.query_row(VERSION_SQL, [], |r| r.get(0)).map_err(Error::sql)
}

impl SharedReads {
    /// Tables kept (those read most recently): the shared calls of a few ranges (a page switching
    /// between ranges, or between views over one range, builds nothing twice).
    pub const KEEP: usize = 4;
    /// The memory the kept tables may take together, as [`table_bytes`] counts it. The whole
    /// history of a host with a million lifetimes is a few hundred MB.
    pub const MAX_BYTES: u64 = 1 << 30;

    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `sql` (a panel's template) reads a shared call.
    pub fn reads_shared(sql: &str) -> bool {
        SHARED_CALLS.iter().any(|c| sql.contains(c.call))
    }

    /// `sql` (a panel's template, `:since` and `:until` not yet replaced) with every shared call
    /// it reads replaced by the table that holds that call's rows over `[since, until]` for the
    /// data as it is now, built on `conn` first when no kept table does. `conn` must not be inside
    /// a transaction: a table built after a transaction began is not visible to it. Run the
    /// result's [`Prepared::sql`] in the panel's transaction. On an error the caller reads the
    /// template as it is, which gives the same rows.
    pub fn prepare(
        &self,
        conn: &duckdb::Connection,
        sql: &str,
        since: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Result<Prepared> {
        self.prepare_bounded(conn, sql, since, until, Self::MAX_BYTES)
    }

    fn prepare_bounded(
        &self,
        conn: &duckdb::Connection,
        sql: &str,
        since: NaiveDateTime,
        until: NaiveDateTime,
        max_bytes: u64,
    ) -> Result<Prepared> {
        let unshared = Prepared {
            template: sql.to_string(),
            shared: None,
            grown_at: None,
            grown: None,
        };
        let calls: Vec<SharedCall> = SHARED_CALLS.iter().copied().filter(|c| sql.contains(c.call)).collect();
        if calls.is_empty() {
            return Ok(unshared);
        }
        let mut out = sql.to_string();
        let mut grown_at = Some(sql.to_string());
        let mut grown = Some(sql.to_string());
        let mut versions: Vec<String> = Vec::new();
        let mut grown_versions: Vec<String> = Vec::new();
        let mut growths: Vec<Growth> = Vec::new();
        for call in calls {
            let slot = self.slot(call, since, until)?;
            let table = {
                // Panels of this range asked together wait here for the first one's read.
                let mut held = lock(&slot.held)?;
                // Read once the wait is over: a table built while this panel waited is current.
                let now = current_version(conn)?;
                let kept = match &*held {
                    Held::Table { version, .. } if *version == now => true,
                    Held::Table { growth, .. } => {
                        let history = History::read(conn, growth.newest_id)?;
                        growth.holds(&history) && !growth.too_grown(&history)
                    }
                    _ => false,
                };
                // A table kept for data that only grew: what it grew by, once for every panel
                // of the data as it is now.
                if let Held::Table {
                    version,
                    table,
                    growth,
                    grown_at,
                    ..
                } = &mut *held
                {
                    if kept && *version != now && grown_at.as_ref().is_none_or(|g| g.version != now) {
                        if let Some(new) = growth.grow(conn, table, call, since, until)? {
                            if let Some(old) = grown_at.replace(new) {
                                old.drop(conn);
                            }
                        }
                    }
                }
                match &*held {
                    Held::Table {
                        version,
                        table,
                        growth,
                        grown_at,
                        ..
                    } if kept => Some((table.clone(), version.clone(), growth.clone(), grown_at.clone())),
                    Held::TooLarge => None,
                    _ => {
                        drop_held(conn, std::mem::replace(&mut *held, Held::Nothing));
                        slot.bytes.store(0, Ordering::Relaxed);
                        let table = format!("{SCHEMA}.{TABLE_PREFIX}{}", NEXT_TABLE.fetch_add(1, Ordering::Relaxed));
                        // The version read in the build's own transaction: what the table holds.
                        match build(conn, &table, call, since, until, max_bytes)? {
                            Built::TooLarge => {
                                *held = Held::TooLarge;
                                None
                            }
                            Built::Table { version, bytes, growth } => {
                                slot.bytes.store(bytes, Ordering::Relaxed);
                                *held = Held::Table {
                                    version: version.clone(),
                                    table: table.clone(),
                                    bytes,
                                    growth: growth.clone(),
                                    grown_at: None,
                                };
                                Some((table, version, growth, None))
                            }
                        }
                    }
                }
            };
            self.evict(conn, &slot, max_bytes)?;
            match table {
                Some((table, version, growth, at)) => {
                    out = out.replace(call.call, &table);
                    grown = grown.map(|g| g.replace(call.call, &growth.grown(call, &table)));
                    grown_at = match &at {
                        Some(at) => grown_at.map(|g| g.replace(call.call, &at.sql(call, &table))),
                        None => None,
                    };
                    grown_versions.extend(at.map(|at| at.version));
                    versions.push(version);
                    growths.push(growth);
                }
                None => return Ok(unshared),
            }
        }
        // Tables of two versions cannot both be what one transaction sees.
        let same = |versions: &[String]| versions.first().filter(|v| versions.iter().all(|w| w == *v)).cloned();
        match same(&versions) {
            Some(version) => Ok(Prepared {
                template: sql.to_string(),
                shared: Some((out, version)),
                grown_at: grown_at.zip(same(&grown_versions)),
                // One growth check for every table: only one call is shared so far.
                grown: match growths.as_slice() {
                    [growth] => grown.map(|g| (g, growth.clone())),
                    _ => None,
                },
            }),
            None => Ok(unshared),
        }
    }

    /// The slot of `call` over `[since, until]`, made the one read most recently (added if new).
    fn slot(&self, call: SharedCall, since: NaiveDateTime, until: NaiveDateTime) -> Result<Arc<Slot>> {
        let mut slots = lock(&self.slots)?;
        let found = slots
            .iter()
            .position(|s| s.call == call && s.since == since && s.until == until)
            .and_then(|i| slots.remove(i));
        let slot = found.unwrap_or_else(|| {
            Arc::new(Slot {
                call,
                since,
                until,
                held: Mutex::new(Held::Nothing),
                bytes: AtomicU64::new(0),
            })
        });
        slots.push_back(Arc::clone(&slot));
        Ok(slot)
    }

    /// Drops the tables read least recently until at most [`Self::KEEP`] slots of at most
    /// `max_bytes` together are left. `keep` (just read) stays, and so does a slot whose table
    /// another panel is building (its lock is held: it is being read now).
    fn evict(&self, conn: &duckdb::Connection, keep: &Arc<Slot>, max_bytes: u64) -> Result<()> {
        let mut dropped = Vec::new();
        {
            let mut slots = lock(&self.slots)?;
            // A slot dropped from the list while a panel waited on it is added again by that
            // panel's build: its table must be counted and dropped in its turn.
            if !slots.iter().any(|s| Arc::ptr_eq(s, keep)) {
                slots.push_back(Arc::clone(keep));
            }
            // Counted whether or not a panel holds the slot's lock now.
            let mut total: u64 = slots.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
            let mut i = 0;
            while i < slots.len() && (slots.len() > Self::KEEP || total > max_bytes) {
                if Arc::ptr_eq(&slots[i], keep) {
                    i += 1;
                    continue;
                }
                let taken = match slots[i].held.try_lock() {
                    Ok(mut held) => Some(std::mem::replace(&mut *held, Held::Nothing)),
                    Err(_) => None,
                };
                match taken {
                    Some(held) => {
                        slots[i].bytes.store(0, Ordering::Relaxed);
                        if let Held::Table { bytes, .. } = &held {
                            total = total.saturating_sub(*bytes);
                        }
                        dropped.push(held);
                        slots.remove(i);
                    }
                    None => i += 1,
                }
            }
        }
        for held in dropped {
            drop_held(conn, held);
        }
        Ok(())
    }

    /// Builds the table of every shared call over `[since, until]` for the data as it is now,
    /// unless one is kept (a server warms the whole history when it starts). What a panel later
    /// reads from it is what [`Self::prepare`] would have built for that panel: the same call,
    /// range and data version.
    pub fn warm(&self, conn: &duckdb::Connection, since: NaiveDateTime, until: NaiveDateTime) -> Result<()> {
        for call in SHARED_CALLS {
            self.prepare(conn, call.call, since, until)?;
        }
        Ok(())
    }

    /// Drops every table kept (the report does when it is done).
    pub fn clear(&self, conn: &duckdb::Connection) {
        let slots: Vec<Arc<Slot>> = match self.slots.lock() {
            Ok(mut slots) => slots.drain(..).collect(),
            Err(_) => return,
        };
        for slot in slots {
            if let Ok(mut held) = slot.held.lock() {
                slot.bytes.store(0, Ordering::Relaxed);
                drop_held(conn, std::mem::replace(&mut *held, Held::Nothing));
            }
        }
    }

    /// The memory the kept tables take, as [`table_bytes`] counted it when each was built.
    pub fn kept_bytes(&self) -> u64 {
        self.slots
            .lock()
            .map_or(0, |slots| slots.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum())
    }
}

/// What [`build`] made.
#[derive(Debug, Clone, PartialEq)]
enum Built {
    /// The table, the data version it holds, its [`table_bytes`], and how it may grow.
    Table {
        version: String,
        bytes: u64,
        growth: Growth,
    },
    /// The rows take more than the bytes allowed: no table is left.
    TooLarge,
}

/// The number of columns a table of `call` keeps: the panels' and [`GROWTH_COLUMNS`].
fn kept_columns(call: SharedCall) -> u64 {
    (call.columns.split(',').count() + GROWTH_COLUMNS.split(',').count()) as u64
}

/// Builds `table` from `call`'s columns over `[since, until]` in one transaction with the data
/// version it is built from, with the lifetimes open then in [`open_table`], or nothing when the
/// rows take more than `max_bytes`. The build itself is bounded: every row counts at least 16
/// bytes a column, so it stops one row past the most rows that fit.
fn build(
    conn: &duckdb::Connection,
    table: &str,
    call: SharedCall,
    since: NaiveDateTime,
    until: NaiveDateTime,
    max_bytes: u64,
) -> Result<Built> {
    attach(conn)?;
    let most_rows = max_bytes / (16 * kept_columns(call));
    conn.execute_batch("BEGIN TRANSACTION").map_err(Error::sql)?;
    let built = (|| {
        let version = current_version(conn)?;
        let history = History::read(conn, i64::MAX)?;
        let open_ids: Vec<i64> = column(
            conn,
            "SELECT connection_id FROM connection_lifetimes WHERE closed_at IS NULL ORDER BY connection_id",
        )?;
        // The cut (a LIMIT) only when the range may hold more rows than fit: DuckDB keeps the
        // rows' order for a LIMIT, which costs the build a good part of its time.
        let at_most: i64 = conn
            .query_row(&panel_sql(call.rows_at_most, since, until), [], |r| r.get(0))
            .map_err(Error::sql)?;
        let cut = match u64::try_from(at_most) {
            Ok(rows) if rows <= most_rows => String::new(),
            _ => format!(" LIMIT {}", most_rows.saturating_add(1)),
        };
        conn.execute_batch(&format!(
            "CREATE TABLE {table} AS SELECT {}, {GROWTH_COLUMNS} FROM {}{cut}; \
             CREATE TABLE {} AS SELECT connection_id FROM connection_lifetimes WHERE closed_at IS NULL; \
             CREATE TABLE {} AS SELECT * FROM listening_places(); COMMIT",
            call.columns,
            panel_sql(call.call, since, until),
            open_table(table),
            listening_table(table),
        ))
        .map_err(Error::sql)?;
        Ok((version, history, open_ids))
    })();
    if built.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let (version, history, open_ids) = built?;
    let measured = conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
        .map_err(Error::sql)
        .and_then(|rows| match rows as u64 > most_rows {
            true => Ok(None),
            false => table_bytes(conn, table).map(|bytes| (bytes <= max_bytes).then_some((bytes, rows))),
        });
    match measured {
        Ok(Some((bytes, rows))) => Ok(Built::Table {
            version,
            bytes,
            growth: Growth {
                flows: history.flows,
                newest_id: history.newest_id,
                lifetimes: history.lifetimes,
                open_ids,
                rows,
            },
        }),
        Ok(None) => {
            drop_table(conn, table);
            Ok(Built::TooLarge)
        }
        Err(e) => {
            drop_table(conn, table);
            Err(e)
        }
    }
}

/// Attaches [`DATABASE`] to `conn`'s instance unless it is there: an in-memory database (no file
/// behind it) that every connection of the instance sees, compressed as a file is (DuckDB leaves
/// its own in-memory catalog uncompressed). Writing a range's events compressed costs less than
/// writing them plain, most of all their short, repeated texts (source, protocol, direction),
/// and the panels scan fewer bytes. Outside any transaction: two ranges built at once would both
/// attach it, and a statement that lost that race finds it there on a retry.
pub fn attach(conn: &duckdb::Connection) -> Result<()> {
    let sql = format!("ATTACH IF NOT EXISTS ':memory:' AS {DATABASE} (COMPRESS)");
    if conn.execute_batch(&sql).is_err() {
        conn.execute_batch(&sql).map_err(Error::sql)?;
    }
    Ok(())
}

/// The memory a table's rows take in DuckDB, at most: 16 bytes a value (a string's header, and
/// at most that for any other type the shared calls give), plus, for a text column with a string
/// longer than the 12 bytes DuckDB keeps in its header, the bytes of its strings. The strings'
/// lengths come from the column's statistics (DuckDB's `stats()`, kept as rows are written: no
/// pass over the rows); a column whose statistics say neither is counted string by string.
pub fn table_bytes(conn: &duckdb::Connection, table: &str) -> Result<u64> {
    // The columns from the table's own schema (a lookup in `duckdb_columns()` lists every column
    // of every catalog, which costs more than this whole count on a small table).
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
        .map_err(Error::sql)?;
    let schema = stmt.query_arrow([]).map_err(Error::sql)?.get_schema();
    let texts: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| {
            matches!(
                f.data_type(),
                duckdb::arrow::datatypes::DataType::Utf8 | duckdb::arrow::datatypes::DataType::LargeUtf8
            )
        })
        .map(|f| f.name().clone())
        .collect();
    let rows: i64 = conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .map_err(Error::sql)?;
    let mut heap: u64 = 0;
    if rows > 0 && !texts.is_empty() {
        let stats: Vec<String> = texts.iter().map(|c| format!("stats(\"{c}\")::VARCHAR")).collect();
        let stats: Vec<Option<String>> = conn
            .query_row(&format!("SELECT {} FROM {table} LIMIT 1", stats.join(", ")), [], |r| {
                (0..texts.len()).map(|i| r.get(i)).collect()
            })
            .map_err(Error::sql)?;
        for (column, stats) in texts.iter().zip(stats) {
            let lengths = stats.as_deref().and_then(|s| {
                Some((
                    stat_field(s, "max_string_length")?,
                    stat_field(s, "total_string_length")?,
                ))
            });
            heap += match lengths {
                Some((longest, _)) if longest <= 12 => 0,
                Some((_, total)) => total,
                None => conn
                    .query_row(
                        &format!(
                            "SELECT coalesce(sum(strlen(\"{column}\")) FILTER (WHERE strlen(\"{column}\") > 12), 0)::BIGINT \
                             FROM {table}"
                        ),
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(Error::sql)
                    .map(|b| u64::try_from(b).unwrap_or(0))?,
            };
        }
    }
    let values = u64::try_from(rows).unwrap_or(0) * 16 * schema.fields().len() as u64;
    Ok(values.saturating_add(heap))
}

/// The number after `'name': ` in the text of DuckDB's `stats()` of a column.
fn stat_field(stats: &str, name: &str) -> Option<u64> {
    let rest = &stats[stats.find(&format!("'{name}': "))? + name.len() + 4..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]
        .parse()
        .ok()
}

/// Drops the tables `held` names: the table, the lists beside it, what it grew by.
fn drop_held(conn: &duckdb::Connection, held: Held) {
    if let Held::Table { table, grown_at, .. } = held {
        drop_table(conn, &table);
        if let Some(grown_at) = grown_at {
            grown_at.drop(conn);
        }
    }
}

fn drop_table(conn: &duckdb::Connection, table: &str) {
    // A table not dropped only takes memory until the process ends: nothing reads it again.
    let _ = conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
        open_table(table),
        listening_table(table)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::parse_time;
    use crate::dashboard::tests::{assert_same, sorted_rows};
    use crate::store::Store;
    use std::time::Duration;

    fn demo(hours: u32, seed: u64) -> Store {
        crate::dashboard::tests::demo_store(hours, 30, seed)
    }

    fn kept_tables(store: &Store) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT count(*) FROM duckdb_tables() \
                 WHERE database_name = 'dashboard_shared_reads' \
                   AND regexp_matches(table_name, '^shared_read_[0-9]+$')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Every panel that reads a shared call gives, from the shared table, exactly the rows it
    /// gives from the macro (issue 18: one read per range, the same answer), over ranges at the
    /// newest end, in the middle and the whole history; and the call really is replaced.
    #[test]
    fn panels_on_shared_reads_give_the_raw_rows() {
        let store = demo(6, 5);
        let newest = crate::dashboard::tests::newest(&store);
        let minutes = crate::dashboard::tests::minutes;
        let ranges = [
            (newest - minutes(15), newest),
            (newest - minutes(60), newest),
            (
                newest - minutes(200) + chrono::Duration::milliseconds(7_500),
                newest - minutes(90),
            ),
            (
                parse_time("2000-01-01T00:00:00").unwrap(),
                parse_time("2100-01-01T00:00:00").unwrap(),
            ),
        ];
        let reads = SharedReads::new();
        let (views, _) = crate::dashboard::views().unwrap();
        let mut panels = Vec::new();
        for view in &views {
            for panel in view.panels.iter().filter(|p| SharedReads::reads_shared(&p.sql)) {
                for &(since, until) in &ranges {
                    let prepared = reads.prepare(store.conn(), &panel.sql, since, until).unwrap();
                    let shared = prepared.sql(store.conn()).unwrap().to_string();
                    assert!(
                        !SharedReads::reads_shared(&shared) && shared.contains(SCHEMA),
                        "{}/{}: {shared}",
                        view.id,
                        panel.id
                    );
                    let raw = sorted_rows(&store, &panel_sql(&panel.sql, since, until));
                    assert_same(
                        &sorted_rows(&store, &panel_sql(&shared, since, until)),
                        &raw,
                        &format!("{}/{} over {since} .. {until}", view.id, panel.id),
                    );
                }
                panels.push(format!("{}/{}", view.id, panel.id));
            }
        }
        for expected in [
            "overview/kpis",
            "overview/protocols",
            "overview/directions",
            "overview/top_ports",
            "tcp/durations",
            "statistics/protocols",
            "statistics/durations",
            "statistics/rate_bytes",
        ] {
            assert!(
                panels.iter().any(|p| p == expected),
                "{expected} reads no shared call: {panels:?}"
            );
        }
        assert!(kept_tables(&store) as usize <= SharedReads::KEEP);
        assert!(reads.kept_bytes() > 0);
        reads.clear(store.conn());
        assert_eq!(reads.kept_bytes(), 0);
        assert_eq!(kept_tables(&store), 0);
    }

    /// A shared read is reused while the data stays as it was, read grown when a snapshot and a
    /// lifetime are added (a live server's next refresh must not show the old rows alone), and
    /// only the newest [`SharedReads::KEEP`] are kept.
    #[test]
    fn a_shared_read_is_read_again_when_the_data_changes() {
        let store = demo(2, 9);
        let reads = SharedReads::new();
        let all = (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        );
        let sql = "SELECT count(*) FROM connection_events_overlapping(:since, :until)";
        let shared = |reads: &SharedReads| -> String {
            let prepared = reads.prepare(store.conn(), sql, all.0, all.1).unwrap();
            assert!(prepared.is_shared());
            prepared.sql(store.conn()).unwrap().to_string()
        };
        let first = shared(&reads);
        assert_eq!(shared(&reads), first);
        let count = |sql: &str| -> i64 {
            store
                .conn()
                .query_row(&panel_sql(sql, all.0, all.1), [], |r| r.get(0))
                .unwrap()
        };
        let before = count(&first);
        // One more lifetime and snapshot, as a capture stores them.
        store
            .conn()
            .execute_batch(&format!(
                "INSERT INTO connection_lifetimes SELECT * REPLACE \
                     ((SELECT max(connection_id) + 1 FROM connection_lifetimes) AS connection_id) \
                 FROM connection_lifetimes WHERE closed_at IS NOT NULL AND direction = 'outbound' LIMIT 1; \
                 {NEXT_SNAPSHOT}"
            ))
            .unwrap();
        let second = shared(&reads);
        assert_ne!(second, first, "the changed data was read from the old table");
        assert!(second.contains("_delta_"), "not read grown: {second}");
        // The open lifetimes' events end a second later, and one more lifetime: the answer is
        // the macro's now, not the old table's.
        assert_ne!(count(sql), before, "the change changed nothing to read");
        assert_eq!(count(&second), count(sql));
        assert_eq!(kept_tables(&store), 1, "a table of its own for the grown read");
        for hours in 1..=6 {
            let since = all.0 + chrono::Duration::hours(hours);
            reads.prepare(store.conn(), sql, since, all.1).unwrap();
        }
        assert_eq!(kept_tables(&store) as usize, SharedReads::KEEP);
    }

    /// The name of the shared table a panel's SQL reads.
    fn table_of(sql: &str) -> String {
        let at = sql.find(SCHEMA).expect("a shared table");
        sql[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect()
    }

    /// Every panel reading a shared call, over each of `ranges`, gives the macro's rows from
    /// `reads` (prepared now, and as prepared before); returns the tables read.
    fn assert_panels_match(
        store: &Store,
        reads: &SharedReads,
        ranges: &[(NaiveDateTime, NaiveDateTime)],
        before: &[Prepared],
        what: &str,
    ) -> Vec<String> {
        let (views, _) = crate::dashboard::views().unwrap();
        let mut sqls = Vec::new();
        for view in &views {
            for panel in view.panels.iter().filter(|p| SharedReads::reads_shared(&p.sql)) {
                for &(since, until) in ranges {
                    let prepared = reads.prepare(store.conn(), &panel.sql, since, until).unwrap();
                    sqls.push((
                        format!("{}/{} {what}", view.id, panel.id),
                        since,
                        until,
                        panel.sql.clone(),
                        prepared,
                    ));
                }
            }
        }
        let mut tables = Vec::new();
        for (name, since, until, template, prepared) in &sqls {
            let sql = prepared.sql(store.conn()).unwrap();
            tables.push(table_of(sql));
            let raw = sorted_rows(store, &panel_sql(template, *since, *until));
            assert_same(&sorted_rows(store, &panel_sql(sql, *since, *until)), &raw, name);
        }
        for (i, prepared) in before.iter().enumerate() {
            let (name, since, until, template, _) = &sqls[i];
            let sql = prepared.sql(store.conn()).unwrap();
            let raw = sorted_rows(store, &panel_sql(template, *since, *until));
            assert_same(
                &sorted_rows(store, &panel_sql(sql, *since, *until)),
                &raw,
                &format!("{name} (prepared before)"),
            );
        }
        tables
    }

    /// The prepared panels of [`assert_panels_match`], in its order.
    fn prepare_panels(store: &Store, reads: &SharedReads, ranges: &[(NaiveDateTime, NaiveDateTime)]) -> Vec<Prepared> {
        let (views, _) = crate::dashboard::views().unwrap();
        let mut out = Vec::new();
        for view in &views {
            for panel in view.panels.iter().filter(|p| SharedReads::reads_shared(&p.sql)) {
                for &(since, until) in ranges {
                    out.push(reads.prepare(store.conn(), &panel.sql, since, until).unwrap());
                }
            }
        }
        out
    }

    /// While a capture only adds to the history (a snapshot, lifetimes closing, lifetimes
    /// begun, among them one that opened an internal connection of the table from the other
    /// end, one reusing the four numbers of another, and a new place that listens, which turns
    /// an internal connection of the table into an accepted one), the table is not built again
    /// and every panel reading it grown gives the macro's rows; a deleted lifetime makes the
    /// panels read the macro until the table is built again.
    #[test]
    fn a_shared_read_grows_with_the_capture() {
        let store = demo(3, 31);
        let conn = store.conn();
        let (host, proto, port): (String, String, i64) = conn
            .query_row(
                "SELECT host, proto, local_port FROM listening_places() WHERE proto = 'tcp' ORDER BY ALL LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        // A copy of a closed TCP lifetime of the host, as a new lifetime with these numbers.
        let lifetime = |local: i64, remote: i64, closed: bool| {
            format!(
                "INSERT INTO connection_lifetimes SELECT * REPLACE ( \
                     (SELECT max(connection_id) + 1 FROM connection_lifetimes) AS connection_id, \
                     '127.0.0.1' AS local_addr, {local} AS local_port, '127.0.0.1' AS remote_addr, {remote} AS remote_port, \
                     'internal' AS direction, {closed} AS closed_at) \
                 FROM connection_lifetimes WHERE host = '{host}' AND proto = '{proto}' AND closed_at IS NOT NULL \
                   AND direction <> 'listen' ORDER BY connection_id LIMIT 1",
                closed = if closed { "closed_at" } else { "NULL" },
            )
        };
        // Before the build: an accepted internal connection whose opener is not a lifetime, and
        // an opened one (its local port does not listen).
        conn.execute_batch(&lifetime(port, 61111, true)).unwrap();
        let accepted: i64 = conn
            .query_row("SELECT max(connection_id) FROM connection_lifetimes", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&lifetime(62222, port, true)).unwrap();
        let opened = accepted + 1;

        let reads = SharedReads::new();
        // The whole history, and an hour that ends past the snapshots added below.
        let newest = crate::dashboard::tests::newest(&store);
        let minutes = crate::dashboard::tests::minutes;
        let ranges = [everything(), (newest - minutes(60), newest + minutes(1))];
        let built = assert_panels_match(&store, &reads, &ranges, &[], "at the build");
        let before = prepare_panels(&store, &reads, &ranges);
        let has_event = |id: i64| -> bool {
            conn.query_row(
                &format!(
                    "SELECT count(*) > 0 FROM connection_events_overlapping(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01') \
                     WHERE source = 'connections' AND event_id = '{id}'"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(has_event(accepted) && has_event(opened));

        // A capture's snapshot: some open lifetimes close, new ones begin (open and closed), the
        // accepted connection's opener among them, and a new connection from the opened one's
        // port to the same place.
        conn.execute_batch(&format!(
            "{NEXT_SNAPSHOT}; \
             CREATE TEMP TABLE closing AS SELECT connection_id FROM connection_lifetimes \
             WHERE closed_at IS NULL AND remote_addr IS NOT NULL ORDER BY connection_id LIMIT 3; \
             UPDATE connection_lifetimes SET closed_at = (SELECT max(ts) FROM snapshots) \
             WHERE connection_id IN (SELECT connection_id FROM closing); \
             DELETE FROM sockets WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots) \
               AND connection_id IN (SELECT connection_id FROM closing); \
             {}; {}; {}; {}",
            lifetime(61111, port, false),
            lifetime(62222, port, true),
            lifetime(63333, 80, false),
            lifetime(64444, 443, true),
        ))
        .unwrap();
        assert!(
            !has_event(accepted),
            "the macro leaves out an accepting side whose opener is a lifetime"
        );
        assert!(has_event(opened), "a connection reusing another's numbers leaves it in");
        let grown = assert_panels_match(&store, &reads, &ranges, &before, "after a snapshot");
        assert_eq!(grown, built, "a table was built again for a history that only grew");
        let grown_sql = reads
            .prepare(conn, COUNT, everything().0, everything().1)
            .unwrap()
            .sql(conn)
            .unwrap()
            .to_string();
        assert!(
            grown_sql.contains("_delta_"),
            "not read grown as made once: {grown_sql}"
        );
        let inline = before[0].sql(conn).unwrap();
        assert!(
            inline.contains("_open"),
            "not read grown in the panel's query: {inline}"
        );

        // A new place that listens, on the port the opened connection came from: that one is
        // now an accepted connection (its sides swap), read again from the macro; still grown.
        conn.execute_batch(&format!(
            "INSERT INTO connection_lifetimes SELECT * REPLACE ( \
                 (SELECT max(connection_id) + 1 FROM connection_lifetimes) AS connection_id, 62222 AS local_port) \
             FROM connection_lifetimes WHERE host = '{host}' AND proto = '{proto}' AND local_port = {port} \
             ORDER BY connection_id LIMIT 1; \
             UPDATE connection_lifetimes SET closed_at = (SELECT max(ts) FROM snapshots), direction = 'listen', \
                 remote_addr = NULL, remote_port = NULL \
             WHERE connection_id = (SELECT max(connection_id) FROM connection_lifetimes)"
        ))
        .unwrap();
        let listened: bool = conn
            .query_row(
                &format!("SELECT count(*) > 0 FROM listening_places() WHERE local_port = 62222 AND host = '{host}'"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(listened, "the place does not listen");
        let source_port: i64 = conn
            .query_row(
                &format!(
                    "SELECT src_p FROM connection_events_overlapping(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01') \
                     WHERE source = 'connections' AND event_id = '{opened}'"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(source_port, port, "the opened connection is not an accepted one now");
        let turned = assert_panels_match(&store, &reads, &ranges, &before, "after a new place that listens");
        assert_eq!(turned, built, "a table was built again for a new place that listens");

        // A lifetime of the build deleted (as retention does): the prepared panels read the
        // macro, and the next prepare builds the table again.
        conn.execute_batch(&format!(
            "DELETE FROM connection_lifetimes WHERE connection_id = {opened}"
        ))
        .unwrap();
        for prepared in &before {
            assert_eq!(
                prepared.sql(conn).unwrap(),
                prepared.template,
                "read grown past a deletion"
            );
        }
        let rebuilt = assert_panels_match(&store, &reads, &ranges, &[], "after a deletion");
        assert!(
            rebuilt.iter().all(|t| !built.contains(t)),
            "the table was not built again"
        );
        reads.clear(conn);
    }

    /// A table is built again rather than read grown once the lifetimes begun since its build
    /// are more than an eighth of its rows (and at least 10 000): each panel reads those again.
    #[test]
    fn a_table_grown_too_much_is_built_again() {
        let growth = Growth {
            flows: "0,".into(),
            newest_id: 1_000,
            lifetimes: 1_000,
            open_ids: vec![3, 5],
            rows: 200_000,
        };
        let now = |newest_id: i64| History {
            flows: "0,".into(),
            newest_id,
            lifetimes: 1_000,
        };
        assert!(growth.holds(&now(1_000)) && !growth.too_grown(&now(1_000)));
        assert!(!growth.too_grown(&now(26_000)));
        assert!(growth.too_grown(&now(26_001)));
        let small = Growth {
            rows: 10,
            ..growth.clone()
        };
        assert!(!small.too_grown(&now(11_000)));
        assert!(small.too_grown(&now(11_001)));
        assert!(
            !growth.holds(&History {
                flows: "1,7".into(),
                ..now(1_000)
            }),
            "an import"
        );
        assert!(
            !growth.holds(&History {
                lifetimes: 999,
                ..now(1_000)
            }),
            "a deletion"
        );
    }

    /// The server builds a shared read on one panel's connection and reads it on another's, in
    /// a READ ONLY transaction begun after it was built.
    #[test]
    fn a_shared_read_is_seen_by_other_connections() {
        let mut store = demo(1, 4);
        let (a, b) = (store.connect().unwrap(), store.connect().unwrap());
        let reads = SharedReads::new();
        let all = (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        );
        let sql = "SELECT count(*) FROM connection_events_overlapping(:since, :until)";
        let shared = reads.prepare(a.conn(), sql, all.0, all.1).unwrap();
        let shared = shared.sql(a.conn()).unwrap().to_string();
        let count = |s: &Store, sql: &str| -> i64 {
            s.conn()
                .query_row(&panel_sql(sql, all.0, all.1), [], |r| r.get(0))
                .unwrap()
        };
        b.conn().execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        let n = count(&b, &shared);
        b.conn().execute_batch("ROLLBACK").unwrap();
        assert!(n > 0);
        assert_eq!(n, count(&b, sql));
    }

    fn everything() -> (NaiveDateTime, NaiveDateTime) {
        (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        )
    }

    const COUNT: &str = "SELECT count(*) FROM connection_events_overlapping(:since, :until)";

    /// One more snapshot, a second after the newest, holding the newest one's sockets again
    /// (as a capture stores the next snapshot of a host where nothing changed).
    const NEXT_SNAPSHOT: &str =
        "INSERT INTO snapshots SELECT * REPLACE (snapshot_id + 1 AS snapshot_id, ts + INTERVAL 1 SECOND AS ts) \
         FROM snapshots ORDER BY snapshot_id DESC LIMIT 1; \
         INSERT INTO sockets SELECT * REPLACE (snapshot_id + 1 AS snapshot_id, ts + INTERVAL 1 SECOND AS ts) \
         FROM sockets WHERE snapshot_id = (SELECT max(snapshot_id) - 1 FROM snapshots)";

    /// A regression: the version was read outside the panel's transaction, so a panel whose
    /// transaction began after a snapshot was stored read the table of the data before it while
    /// the rest of its query read the data after. The table is only read by a transaction that
    /// sees the data it holds.
    #[test]
    fn a_transaction_that_sees_newer_data_reads_the_macro() {
        let store = demo(1, 21);
        let reads = SharedReads::new();
        let (since, until) = everything();
        let prepared = reads.prepare(store.conn(), COUNT, since, until).unwrap();
        assert!(prepared.is_shared());
        let conn = store.conn();
        conn.execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        assert!(prepared.sql(conn).unwrap().contains(SCHEMA), "same data: the table");
        conn.execute_batch("ROLLBACK").unwrap();
        conn.execute_batch(NEXT_SNAPSHOT).unwrap();
        conn.execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        let sql = prepared.sql(conn).unwrap().to_string();
        conn.execute_batch("ROLLBACK").unwrap();
        assert!(
            sql.contains("_open"),
            "newer data that only grew the history: the table grown, {sql}"
        );
        // A lifetime of the table deleted (as retention does): the table is no longer a part
        // of the answer, and the transaction that sees it reads the macro.
        conn.execute_batch(
            "DELETE FROM connection_lifetimes WHERE connection_id = \
             (SELECT min(connection_id) FROM connection_lifetimes WHERE closed_at IS NOT NULL)",
        )
        .unwrap();
        conn.execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        let sql = prepared.sql(conn).unwrap().to_string();
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(sql, COUNT, "a history that did not only grow: the macro");
    }

    /// A regression: the kept tables were bounded by their number only. A table larger than the
    /// memory allowed is not kept (its panels read the macro, and it is not built again while the
    /// range's slot is kept), and older tables are dropped until the kept ones fit.
    #[test]
    fn kept_tables_are_bounded_by_their_memory() {
        let store = demo(2, 22);
        let (since, until) = everything();
        let reads = SharedReads::new();
        let whole = reads.prepare(store.conn(), COUNT, since, until).unwrap();
        assert!(whole.is_shared());
        let one = reads.kept_bytes();
        assert!(one > 0);
        reads.clear(store.conn());

        // Smaller than one table: nothing kept, the panel reads the macro, and asking again
        // builds nothing (no table appears, and the answer is the same).
        let small = SharedReads::new();
        let next = NEXT_TABLE.load(Ordering::Relaxed);
        let p = small
            .prepare_bounded(store.conn(), COUNT, since, until, one - 1)
            .unwrap();
        assert!(!p.is_shared());
        assert_eq!(p.sql(store.conn()).unwrap(), COUNT);
        assert_eq!(kept_tables(&store), 0);
        let built = NEXT_TABLE.load(Ordering::Relaxed);
        assert!(built > next);
        let again = small
            .prepare_bounded(store.conn(), COUNT, since, until, one - 1)
            .unwrap();
        assert!(!again.is_shared());
        assert_eq!(
            NEXT_TABLE.load(Ordering::Relaxed),
            built,
            "a range too large was built again"
        );

        // Room for about one and a half: the older of two is dropped.
        let some = SharedReads::new();
        let later = since + chrono::Duration::hours(1);
        let newest = crate::dashboard::tests::newest(&store);
        assert!(some
            .prepare_bounded(store.conn(), COUNT, since, until, one * 3 / 2)
            .unwrap()
            .is_shared());
        let second = some
            .prepare_bounded(store.conn(), COUNT, later, newest, one * 3 / 2)
            .unwrap();
        assert!(second.is_shared());
        assert_eq!(kept_tables(&store), 1);
        assert!(some.kept_bytes() <= one * 3 / 2);
        assert!(
            second.sql(store.conn()).unwrap().contains(SCHEMA),
            "the newest is the one kept"
        );
        some.clear(store.conn());
    }

    /// A range too large for the bytes allowed leaves no table and reads as too large (its build
    /// is cut one row past the rows that can fit); with room for every row, all are kept.
    #[test]
    fn a_build_is_cut_at_the_rows_that_fit() {
        let store = demo(1, 25);
        let conn = store.conn();
        let (since, until) = everything();
        let call = SHARED_CALLS[0];
        let rows: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", panel_sql(call.call, since, until)),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(rows > 10, "the demo has events: {rows}");
        let per_row = 16 * kept_columns(call);
        let table = format!("{SCHEMA}.cut_test");
        let cut = build(conn, &table, call, since, until, per_row * 10).unwrap();
        assert_eq!(cut, Built::TooLarge);
        assert_eq!(kept_tables(&store), 0, "a table too large is dropped");
        let whole = build(conn, &table, call, since, until, SharedReads::MAX_BYTES).unwrap();
        assert!(matches!(whole, Built::Table { .. }));
        let kept: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, rows);
        drop_table(conn, &table);
    }

    /// A warm-up builds the range's tables before any panel asks: the panels then build nothing,
    /// read the table the warm-up built, and give the macro's rows (as a cold build's do); after
    /// the data changes, the warmed table is not read.
    #[test]
    fn a_warmed_read_gives_what_a_cold_build_gives() {
        let store = demo(2, 26);
        let (since, until) = crate::dashboard::everything();
        let warm = SharedReads::new();
        warm.warm(store.conn(), since, until).unwrap();
        assert_eq!(kept_tables(&store), 1);
        let table = |sql: &str| -> String {
            let at = sql.find(SCHEMA).expect("a shared table");
            sql[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect()
        };
        let warmed_table = table(
            warm.prepare(store.conn(), COUNT, since, until)
                .unwrap()
                .sql(store.conn())
                .unwrap(),
        );
        let (views, _) = crate::dashboard::views().unwrap();
        let mut read = 0;
        for view in &views {
            for panel in view.panels.iter().filter(|p| SharedReads::reads_shared(&p.sql)) {
                let warmed = warm.prepare(store.conn(), &panel.sql, since, until).unwrap();
                let sql = warmed.sql(store.conn()).unwrap().to_string();
                assert_eq!(table(&sql), warmed_table, "{}/{} built its own", view.id, panel.id);
                let cold = SharedReads::new();
                let cold_sql = cold
                    .prepare(store.conn(), &panel.sql, since, until)
                    .unwrap()
                    .sql(store.conn())
                    .unwrap()
                    .to_string();
                let name = format!("{}/{}", view.id, panel.id);
                let rows = sorted_rows(&store, &panel_sql(&sql, since, until));
                assert_same(&rows, &sorted_rows(&store, &panel_sql(&cold_sql, since, until)), &name);
                assert_same(&rows, &sorted_rows(&store, &panel_sql(&panel.sql, since, until)), &name);
                cold.clear(store.conn());
                read += 1;
            }
        }
        assert!(read >= 8, "{read} panels read the shared events");
        assert_eq!(kept_tables(&store), 1, "a warmed panel built a table of its own");
        store.conn().execute_batch(NEXT_SNAPSHOT).unwrap();
        let after = warm.prepare(store.conn(), COUNT, since, until).unwrap();
        let sql = after.sql(store.conn()).unwrap().to_string();
        assert!(
            sql.contains("_delta_"),
            "the warmed table was read as it was after the data changed: {sql}"
        );
        assert_eq!(
            store
                .conn()
                .query_row(&panel_sql(&sql, since, until), [], |r| r.get::<_, i64>(0))
                .unwrap(),
            store
                .conn()
                .query_row(&panel_sql(COUNT, since, until), [], |r| r.get::<_, i64>(0))
                .unwrap(),
            "the warmed table was read after the data changed"
        );
        warm.clear(store.conn());
    }

    /// What [`table_bytes`] counts: 16 bytes a value, and the strings' bytes of a text column
    /// with a string over 12 bytes.
    #[test]
    fn table_bytes_counts_values_and_long_strings() {
        let store = demo(1, 23);
        let conn = store.conn();
        conn.execute_batch(&format!(
            "ATTACH IF NOT EXISTS ':memory:' AS {DATABASE} (COMPRESS); CREATE TABLE {SCHEMA}.bytes_test AS \
             SELECT * FROM (VALUES ('short', 1), (repeat('x', 20), 2), (NULL, 3)) t(s, n)"
        ))
        .unwrap();
        // Three rows of two values; the text column has a string over 12 bytes, so all its
        // strings' bytes count (5 + 20).
        assert_eq!(
            table_bytes(conn, &format!("{SCHEMA}.bytes_test")).unwrap(),
            3 * 2 * 16 + 25
        );
        // Strings of 12 bytes at most live in their headers: nothing more.
        conn.execute_batch(&format!(
            "CREATE TABLE {SCHEMA}.short_test AS SELECT * FROM (VALUES ('short', 1), (repeat('x', 12), 2)) t(s, n)"
        ))
        .unwrap();
        assert_eq!(table_bytes(conn, &format!("{SCHEMA}.short_test")).unwrap(), 2 * 2 * 16);
        drop_table(conn, &format!("{SCHEMA}.short_test"));
        assert_eq!(
            stat_field(
                "{'max_string_length': 20, 'total_string_length': 25}",
                "total_string_length"
            ),
            Some(25)
        );
        assert_eq!(stat_field("{'max': x}", "total_string_length"), None);
        drop_table(conn, &format!("{SCHEMA}.bytes_test"));
    }

    /// A regression: one lock was held over every build, so a panel of one range waited for
    /// another range's pass over the history. Panels of the range being built wait for it
    /// (one pass, not several); a panel of another range does not.
    #[test]
    fn a_build_holds_up_only_its_own_range() {
        let mut store = demo(1, 24);
        let (a, b) = (store.connect().unwrap(), store.connect().unwrap());
        let reads = SharedReads::new();
        let (since, until) = everything();
        let other = since + chrono::Duration::hours(1);
        // A build of [since, until] under way: its slot's lock is held.
        let slot = reads.slot(SHARED_CALLS[0], since, until).unwrap();
        let building = slot.held.lock().unwrap();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (reads, tx2) = (&reads, tx.clone());
            scope.spawn(move || {
                let p = reads.prepare(a.conn(), COUNT, other, until).unwrap();
                tx.send(("other", p.is_shared())).unwrap();
            });
            let got = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("another range waited for the build");
            assert_eq!(got, ("other", true));
            scope.spawn(move || {
                let p = reads.prepare(b.conn(), COUNT, since, until).unwrap();
                tx2.send(("same", p.is_shared())).unwrap();
            });
            assert!(
                rx.recv_timeout(Duration::from_millis(500)).is_err(),
                "the same range did not wait for the build under way"
            );
            drop(building);
            assert_eq!(rx.recv_timeout(Duration::from_secs(120)).unwrap(), ("same", true));
        });
    }
}
