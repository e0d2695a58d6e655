//! One read per time range of what several dashboard panels read (issue 18: every view within a
//! second over the whole history).
//!
//! Overview, TCP and Statistics each have several panels that count or sum the same range macro
//! (`connection_events_overlapping` over the view's range: every lifetime of the range made into
//! an event), and the rate panels read `traffic_rates_between` twice each. Over a history of
//! weeks each such read is a pass over every lifetime, so a view paid for the same pass four or
//! more times. Here the first panel that asks builds the macro's rows for its range once, into a
//! table of DuckDB's in-memory catalog `memory` (no file backs it, and every connection of the
//! server's database instance sees it), and each panel reads that table in the macro's place.
//!
//! Exact by construction: the table holds the macro's rows for the same range, and the panel's
//! SQL is otherwise unchanged. Never stale: a table is kept with the data version it was built
//! from ([`VERSION_SQL`], read in the transaction that builds it), and a panel asked after a
//! snapshot, an import or a retention run (which change that version) builds it again. Only the
//! [`SharedReads::KEEP`] tables read most recently are kept, so the memory they take is bounded
//! by a few ranges' events.
//!
//! May use the database connection, `dashboard` (a range's literals) and `error`; it runs no
//! panel itself (the server and the report do).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::NaiveDateTime;

use crate::dashboard::panel_sql;
use crate::error::{Error, Result};

/// The macro calls, as the panels in `views.json` write them, that are read once per range.
pub const SHARED_CALLS: &[&str] = &[
    "connection_events_overlapping(:since, :until)",
    "traffic_rates_between(:since, :until)",
];

/// The schema, in the instance's in-memory catalog, that holds the shared reads.
pub const SCHEMA: &str = "memory.dashboard_shared_reads";
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

/// One shared read: the rows of `call` over `[since, until]` as of `version`, in `table`.
#[derive(Debug, Clone)]
struct Entry {
    call: &'static str,
    since: NaiveDateTime,
    until: NaiveDateTime,
    version: String,
    table: String,
}

#[derive(Debug, Default)]
struct Entries {
    /// Read least recently first.
    list: VecDeque<Entry>,
}

/// The shared reads of one server (or one report): which tables hold which call's rows.
#[derive(Debug, Default)]
pub struct SharedReads {
    entries: Mutex<Entries>,
}

impl SharedReads {
    /// Tables kept (those read most recently): the shared calls of two ranges (a page switching
    /// between two ranges, or between views over one range, builds nothing twice).
    pub const KEEP: usize = 4;

    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `sql` (a panel's template) reads a shared call.
    pub fn reads_shared(sql: &str) -> bool {
        SHARED_CALLS.iter().any(|call| sql.contains(call))
    }

    /// `sql` (a panel's template, `:since` and `:until` not yet replaced) with every shared call
    /// it reads replaced by the table that holds that call's rows over `[since, until]` for the
    /// data as it is now, built on `conn` first when no kept table does. `conn` must not be inside
    /// a transaction: a table built after a transaction began is not visible to it. On an error
    /// the caller reads the template as it is, which gives the same rows.
    pub fn prepare(
        &self,
        conn: &duckdb::Connection,
        sql: &str,
        since: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Result<String> {
        let calls: Vec<&'static str> = SHARED_CALLS.iter().copied().filter(|c| sql.contains(c)).collect();
        if calls.is_empty() {
            return Ok(sql.to_string());
        }
        // Panels of one range asked together wait here for the first one's read.
        let mut entries = self.entries.lock().map_err(|_| Error::Sql {
            message: "the dashboard's shared reads were left inconsistent by a failed request".into(),
        })?;
        let version: String = conn.query_row(VERSION_SQL, [], |r| r.get(0)).map_err(Error::sql)?;
        let mut out = sql.to_string();
        for call in calls {
            let kept = entries
                .list
                .iter()
                .position(|e| e.call == call && e.since == since && e.until == until);
            // Taken out: a current one goes back as the one read most recently, a stale one is
            // dropped.
            let kept = kept.and_then(|i| entries.list.remove(i));
            let table = match kept {
                Some(entry) if entry.version == version => {
                    let table = entry.table.clone();
                    entries.list.push_back(entry);
                    table
                }
                stale => {
                    if let Some(stale) = stale {
                        drop_table(conn, &stale.table);
                    }
                    let table = format!("{SCHEMA}.{TABLE_PREFIX}{}", NEXT_TABLE.fetch_add(1, Ordering::Relaxed));
                    let version = build(conn, &table, call, since, until)?;
                    entries.list.push_back(Entry {
                        call,
                        since,
                        until,
                        version,
                        table: table.clone(),
                    });
                    while entries.list.len() > Self::KEEP {
                        if let Some(old) = entries.list.pop_front() {
                            drop_table(conn, &old.table);
                        }
                    }
                    table
                }
            };
            out = out.replace(call, &table);
        }
        Ok(out)
    }

    /// Drops every table kept (the report does when it is done).
    pub fn clear(&self, conn: &duckdb::Connection) {
        if let Ok(mut entries) = self.entries.lock() {
            for e in entries.list.drain(..) {
                drop_table(conn, &e.table);
            }
        }
    }
}

/// Builds `table` from `call` over `[since, until]` in one transaction with the data version it
/// is built from, and returns that version.
fn build(
    conn: &duckdb::Connection,
    table: &str,
    call: &str,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<String> {
    conn.execute_batch(&format!("BEGIN TRANSACTION; CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .map_err(Error::sql)?;
    let built = (|| {
        let version: String = conn.query_row(VERSION_SQL, [], |r| r.get(0)).map_err(Error::sql)?;
        conn.execute_batch(&format!(
            "CREATE TABLE {table} AS SELECT * FROM {}; COMMIT",
            panel_sql(call, since, until)
        ))
        .map_err(Error::sql)?;
        Ok(version)
    })();
    if built.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    built
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
    use crate::store::{Location, Store};
    use std::time::Duration;

    fn demo(hours: u32, seed: u64) -> Store {
        let store = Store::open(&Location::Memory, false).unwrap();
        let demo = crate::capture::demo::DemoRequest {
            hours,
            interval: Duration::from_secs(30),
            seed,
            traffic_rows: 50,
        };
        let mut quiet = crate::request::CollectGaps::default();
        crate::capture::demo::run(&store, &demo, chrono::Utc::now(), &mut quiet).unwrap();
        store
    }

    fn kept_tables(store: &Store) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'memory' \
                 AND schema_name = 'dashboard_shared_reads'",
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
        let newest: NaiveDateTime = store
            .conn()
            .query_row("SELECT max(ts) FROM snapshots", [], |r| r.get(0))
            .unwrap();
        let minutes = |m: i64| chrono::Duration::milliseconds(m * 60_000);
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
                    let shared = reads.prepare(store.conn(), &panel.sql, since, until).unwrap();
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
        reads.clear(store.conn());
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
        let first = reads.prepare(store.conn(), sql, all.0, all.1).unwrap();
        assert_eq!(reads.prepare(store.conn(), sql, all.0, all.1).unwrap(), first);
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
        let second = reads.prepare(store.conn(), sql, all.0, all.1).unwrap();
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
}
