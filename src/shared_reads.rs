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
//! version (else the panel reads the macro itself); a panel asked after a snapshot, an import or a
//! retention run builds the table again.
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
}

/// The calls read once per range.
pub const SHARED_CALLS: &[SharedCall] = &[SharedCall {
    call: "connection_events_overlapping(:since, :until)",
    columns: "source, host, start_ts, duration_s, proto, src_h, dst_h, dst_p, direction, bytes_out, bytes_in, \
              packets_out, packets_in, wire_bytes_out, wire_bytes_in, failed",
    // A live event is a lifetime that began by the range's end (one at most each), an imported
    // one a flow.
    rows_at_most: "SELECT (SELECT count(*) FROM connection_lifetimes WHERE first_seen <= :until) \
                   + (SELECT count(*) FROM flows WHERE ts <= :until)",
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
    /// The call's rows as of `version`, in `table`, taking about `bytes`.
    Table { version: String, table: String, bytes: u64 },
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
}

impl Prepared {
    /// The template to run in the transaction open on `conn`: the one reading the shared tables
    /// when that transaction sees the data they were built from, else the panel's own (the data
    /// changed since: its rows must be those of the data the rest of the query sees).
    pub fn sql(&self, conn: &duckdb::Connection) -> Result<&str> {
        match &self.shared {
            Some((sql, version)) if &current_version(conn)? == version => Ok(sql),
            _ => Ok(&self.template),
        }
    }

    /// Whether the panel reads a shared table (when its transaction sees the same data).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }
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
        };
        let calls: Vec<SharedCall> = SHARED_CALLS.iter().copied().filter(|c| sql.contains(c.call)).collect();
        if calls.is_empty() {
            return Ok(unshared);
        }
        let mut out = sql.to_string();
        let mut versions: Vec<String> = Vec::new();
        for call in calls {
            let slot = self.slot(call, since, until)?;
            let table = {
                // Panels of this range asked together wait here for the first one's read.
                let mut held = lock(&slot.held)?;
                // Read once the wait is over: a table built while this panel waited is current.
                let now = current_version(conn)?;
                match &*held {
                    Held::Table { version, table, .. } if *version == now => Some((table.clone(), now)),
                    Held::TooLarge => None,
                    _ => {
                        if let Held::Table { table, .. } = &*held {
                            drop_table(conn, table);
                        }
                        *held = Held::Nothing;
                        slot.bytes.store(0, Ordering::Relaxed);
                        let table = format!("{SCHEMA}.{TABLE_PREFIX}{}", NEXT_TABLE.fetch_add(1, Ordering::Relaxed));
                        // The version read in the build's own transaction: what the table holds.
                        match build(conn, &table, call, since, until, max_bytes)? {
                            (_, None) => {
                                *held = Held::TooLarge;
                                None
                            }
                            (version, Some(bytes)) => {
                                slot.bytes.store(bytes, Ordering::Relaxed);
                                *held = Held::Table {
                                    version: version.clone(),
                                    table: table.clone(),
                                    bytes,
                                };
                                Some((table, version))
                            }
                        }
                    }
                }
            };
            self.evict(conn, &slot, max_bytes)?;
            match table {
                Some((table, version)) => {
                    out = out.replace(call.call, &table);
                    versions.push(version);
                }
                None => return Ok(unshared),
            }
        }
        // Tables of two versions cannot both be what one transaction sees.
        match versions.first() {
            Some(version) if versions.iter().all(|v| v == version) => Ok(Prepared {
                template: sql.to_string(),
                shared: Some((out, version.clone())),
            }),
            _ => Ok(unshared),
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
                        if let Held::Table { table, bytes, .. } = held {
                            total = total.saturating_sub(bytes);
                            dropped.push(table);
                        }
                        slots.remove(i);
                    }
                    None => i += 1,
                }
            }
        }
        for table in dropped {
            drop_table(conn, &table);
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
                if let Held::Table { table, .. } = std::mem::replace(&mut *held, Held::Nothing) {
                    drop_table(conn, &table);
                }
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

/// Builds `table` from `call`'s columns over `[since, until]` in one transaction with the data
/// version it is built from, and returns that version and the table's [`table_bytes`], or None
/// (and no table) when the rows take more than `max_bytes`. The build itself is bounded: every
/// row counts at least 16 bytes a column, so it stops one row past the most rows that fit.
fn build(
    conn: &duckdb::Connection,
    table: &str,
    call: SharedCall,
    since: NaiveDateTime,
    until: NaiveDateTime,
    max_bytes: u64,
) -> Result<(String, Option<u64>)> {
    attach(conn)?;
    let most_rows = max_bytes / (16 * call.columns.split(',').count() as u64);
    crate::store::begin_own_transaction(conn)?;
    let built = (|| {
        let version = current_version(conn)?;
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
            "CREATE TABLE {table} AS SELECT {} FROM {}{cut}; COMMIT",
            call.columns,
            panel_sql(call.call, since, until),
        ))
        .map_err(Error::sql)?;
        Ok(version)
    })();
    if built.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let version = built?;
    let measured = conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
        .map_err(Error::sql)
        .and_then(|rows| match rows as u64 > most_rows {
            true => Ok(None),
            false => table_bytes(conn, table).map(|bytes| (bytes <= max_bytes).then_some(bytes)),
        });
    match measured {
        Ok(Some(bytes)) => Ok((version, Some(bytes))),
        Ok(None) => {
            drop_table(conn, table);
            Ok((version, None))
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

fn drop_table(conn: &duckdb::Connection, table: &str) {
    // A table not dropped only takes memory until the process ends: nothing reads it again.
    let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS {table}"));
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
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'dashboard_shared_reads'",
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

    /// A shared read is reused while the data stays as it was, built again when a snapshot is
    /// added (a live server's next refresh must not show the old rows), and only the newest
    /// [`SharedReads::KEEP`] are kept.
    #[test]
    fn a_shared_read_is_built_again_when_the_data_changes() {
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
            .execute_batch(
                "INSERT INTO connection_lifetimes SELECT * REPLACE (connection_id + 1000000000 AS connection_id) \
                 FROM connection_lifetimes WHERE closed_at IS NOT NULL AND direction = 'outbound' LIMIT 1; \
                 INSERT INTO snapshots SELECT * REPLACE (snapshot_id + 1 AS snapshot_id, ts + INTERVAL 1 SECOND AS ts) \
                 FROM snapshots ORDER BY snapshot_id DESC LIMIT 1",
            )
            .unwrap();
        let second = shared(&reads);
        assert_ne!(second, first, "the changed data was read from the old table");
        // The new snapshot holds no socket, so the open lifetimes' events change too: the
        // answer is the macro's now, not the old table's.
        assert_ne!(count(sql), before, "the change changed nothing to read");
        assert_eq!(count(&second), count(sql));
        assert_eq!(kept_tables(&store), 1, "the stale table is dropped");
        for hours in 1..=6 {
            let since = all.0 + chrono::Duration::hours(hours);
            reads.prepare(store.conn(), sql, since, all.1).unwrap();
        }
        assert_eq!(kept_tables(&store) as usize, SharedReads::KEEP);
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
        conn.execute_batch(
            "INSERT INTO snapshots SELECT * REPLACE (snapshot_id + 1 AS snapshot_id, ts + INTERVAL 1 SECOND AS ts) \
             FROM snapshots ORDER BY snapshot_id DESC LIMIT 1",
        )
        .unwrap();
        conn.execute_batch("BEGIN TRANSACTION READ ONLY").unwrap();
        let sql = prepared.sql(conn).unwrap().to_string();
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(sql, COUNT, "newer data than the table's: the macro");
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
        let per_row = 16 * call.columns.split(',').count() as u64;
        let table = format!("{SCHEMA}.cut_test");
        let (_, cut) = build(conn, &table, call, since, until, per_row * 10).unwrap();
        assert_eq!(cut, None);
        assert_eq!(kept_tables(&store), 0, "a table too large is dropped");
        let (_, whole) = build(conn, &table, call, since, until, SharedReads::MAX_BYTES).unwrap();
        assert!(whole.is_some());
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
        store
            .conn()
            .execute_batch(
                "INSERT INTO snapshots SELECT * REPLACE (snapshot_id + 1 AS snapshot_id, ts + INTERVAL 1 SECOND AS ts) \
                 FROM snapshots ORDER BY snapshot_id DESC LIMIT 1",
            )
            .unwrap();
        let after = warm.prepare(store.conn(), COUNT, since, until).unwrap();
        let sql = after.sql(store.conn()).unwrap().to_string();
        assert_ne!(
            table(&sql),
            warmed_table,
            "the warmed table was kept after the data changed"
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
