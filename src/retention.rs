//! Retention: so a host's history can be kept for months in bounded space. Each complete time
//! bucket (an hour by default) of raw capture rows is rolled up, once, into the `*_rollups`
//! tables (per connection, process, interface, remote peer, TCP state, TCP path and stuck TCP socket); then raw rows older
//! than the raw window are deleted in batches of a few hundred snapshots, each its own short
//! transaction, so a snapshot being stored at the same time never waits long; rollups older
//! than their own window go last. DuckDB reuses the freed blocks at its next checkpoint, so a
//! database under a fixed window stops growing (bench/RESULTS.md, "Retention").
//!
//! What is never deleted: the newest snapshot of each host (capture compares the next one with
//! it), lifetimes still open (the `connections` view shows them), and raw rows of a bucket not
//! yet rolled up. Results of stages and detectors are kept: they are small, and runs refer to
//! them.
//!
//! May use the store; knows nothing of capture or the server.

use std::time::Duration;

use chrono::{DateTime, Utc};
use duckdb::params;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

/// What to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainRequest {
    /// Raw rows (snapshots, sockets, processes, interfaces, transitions, closed lifetimes)
    /// older than this are deleted once rolled up; `None` keeps them.
    pub raw: Option<Duration>,
    /// Rollups older than this are deleted; `None` keeps them.
    pub rollups: Option<Duration>,
    /// Width of a rollup bucket.
    pub bucket: Duration,
    /// Snapshots deleted per transaction.
    pub batch: usize,
}

impl RetainRequest {
    pub const DEFAULT_BUCKET: Duration = Duration::from_secs(3600);
    pub const DEFAULT_BATCH: usize = 300;

    /// Refuses windows that would delete what the rollups need or roll into nothing.
    pub fn check(&self) -> Result<()> {
        let bucket = self.bucket.as_secs();
        if bucket == 0 || bucket > 86_400 || !bucket.is_multiple_of(60) {
            return Err(Error::Usage(format!(
                "--bucket {:?}: a rollup bucket is whole minutes, at most a day",
                self.bucket
            )));
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err(Error::Usage(format!(
                "batch {}: delete between 1 and 100000 snapshots per transaction",
                self.batch
            )));
        }
        if let (Some(raw), Some(rollups)) = (self.raw, self.rollups) {
            if rollups < raw {
                return Err(Error::Usage(format!(
                    "rollups kept {rollups:?} but raw rows {raw:?}: rollups summarize raw rows, keep them at least as long"
                )));
            }
        }
        for window in [self.raw, self.rollups].into_iter().flatten() {
            if window < self.bucket {
                return Err(Error::Usage(format!(
                    "a retention window of {window:?} is shorter than one rollup bucket ({:?})",
                    self.bucket
                )));
            }
        }
        Ok(())
    }
}

/// The summary of a run that changed nothing (the server does not log it every minute).
pub const NOTHING_TO_DO: &str = "nothing to roll up or delete";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainSummary {
    pub buckets_rolled: u64,
    pub snapshots_deleted: u64,
    pub rows_deleted: u64,
    pub rollups_deleted: u64,
    /// The run stopped early (the server is stopping); the next run goes on.
    pub interrupted: bool,
}

impl RetainSummary {
    /// True when the run changed nothing.
    pub fn is_empty(&self) -> bool {
        self.buckets_rolled + self.snapshots_deleted + self.rows_deleted + self.rollups_deleted == 0
    }

    pub fn line(&self) -> String {
        if self.is_empty() && !self.interrupted {
            return NOTHING_TO_DO.to_string();
        }
        format!(
            "rolled up {} buckets; deleted {} snapshots ({} raw rows) and {} rollup rows{}",
            self.buckets_rolled,
            self.snapshots_deleted,
            self.rows_deleted,
            self.rollups_deleted,
            if self.interrupted { " (stopped early)" } else { "" }
        )
    }
}

/// Rolls up every complete bucket, then deletes what is older than the windows. `stop` is asked
/// between transactions; `pause` runs between delete batches (the server sleeps there, so a
/// long backlog never takes the database's writers for long at a time).
pub fn retain(
    store: &Store,
    request: &RetainRequest,
    now: DateTime<Utc>,
    stop: &dyn Fn() -> bool,
    pause: &dyn Fn(),
) -> Result<RetainSummary> {
    request.check()?;
    let started = now.naive_utc();
    let raw_cutoff = request.raw.map(|w| cutoff(now, w)).transpose()?;
    let rollup_cutoff = request.rollups.map(|w| cutoff(now, w)).transpose()?;
    let width = request.bucket.as_secs() as i64;
    let mut summary = RetainSummary::default();

    for bucket in due_buckets(store, width, raw_cutoff)? {
        if stop() {
            summary.interrupted = true;
            return Ok(summary);
        }
        store.in_transaction(|conn| roll_up(conn, &bucket, width))?;
        summary.buckets_rolled += 1;
    }

    if let Some(cutoff) = raw_cutoff {
        loop {
            if stop() {
                summary.interrupted = true;
                break;
            }
            let (snapshots, rows) =
                store.in_transaction(|conn| delete_raw_batch(conn, cutoff, width, request.batch))?;
            summary.snapshots_deleted += snapshots;
            summary.rows_deleted += rows;
            if snapshots == 0 {
                break;
            }
            pause();
        }
        if !summary.interrupted {
            summary.rows_deleted += store.in_transaction(|conn| {
                conn.execute(
                    "DELETE FROM connection_lifetimes WHERE closed_at IS NOT NULL AND closed_at < ?",
                    params![cutoff],
                )
                .map_err(Error::sql)
            })? as u64;
        }
    }
    if let (Some(cutoff), false) = (rollup_cutoff, summary.interrupted) {
        summary.rollups_deleted = store.in_transaction(|conn| {
            let mut deleted = 0;
            for table in [
                "connection_rollups",
                "process_rollups",
                "interface_rollups",
                "peer_rollups",
                "tcp_state_rollups",
                "tcp_state_buckets",
                "tcp_stuck_rollups",
                "tcp_path_rollups",
            ] {
                deleted += conn
                    .execute(&format!("DELETE FROM {table} WHERE bucket_start < ?"), params![cutoff])
                    .map_err(Error::sql)?;
            }
            // A bucket's listing goes with its rollups once its raw rows are gone too.
            deleted += conn
                .execute(
                    "DELETE FROM rollup_buckets r WHERE bucket_start < ? AND NOT EXISTS \
                     (SELECT 1 FROM snapshots s WHERE s.host = r.host AND s.ts >= r.bucket_start \
                      AND s.ts < r.bucket_start + to_seconds(r.bucket_s))",
                    params![cutoff],
                )
                .map_err(Error::sql)?;
            Ok(deleted as u64)
        })?;
    }
    if !summary.is_empty() {
        store.in_transaction(|conn| {
            conn.execute(
                "INSERT INTO retention_runs VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
                params![
                    crate::store::runs::next_run_id(conn)?,
                    started,
                    raw_cutoff,
                    rollup_cutoff,
                    summary.buckets_rolled as i64,
                    summary.snapshots_deleted as i64,
                    summary.rows_deleted as i64,
                    summary.rollups_deleted as i64
                ],
            )
            .map_err(Error::sql)
        })?;
        // Freed blocks are reused after a checkpoint; one that cannot run now (another writer is
        // busy) happens later by itself.
        let _ = store.conn().execute_batch("CHECKPOINT");
    }
    Ok(summary)
}

fn cutoff(now: DateTime<Utc>, window: Duration) -> Result<chrono::NaiveDateTime> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.naive_utc().checked_sub_signed(w))
        .ok_or_else(|| Error::Usage(format!("a retention window of {window:?} reaches before the calendar")))
}

/// A bucket of one host's snapshots that is ready to roll up.
#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    host: String,
    start: chrono::NaiveDateTime,
}

/// Buckets not rolled up yet that are complete: a later snapshot of the host exists, or the
/// bucket is older than the raw window (a host that stopped reporting).
fn due_buckets(store: &Store, width: i64, raw_cutoff: Option<chrono::NaiveDateTime>) -> Result<Vec<Bucket>> {
    let sql = format!(
        "WITH rolled AS (SELECT host, max(bucket_start) AS last FROM rollup_buckets GROUP BY host), \
              newest AS (SELECT host, max(ts) AS ts FROM snapshots GROUP BY host) \
         SELECT DISTINCT s.host, time_bucket(INTERVAL '{width} seconds', s.ts) AS start \
         FROM snapshots s JOIN newest n ON n.host = s.host LEFT JOIN rolled r ON r.host = s.host \
         WHERE (r.last IS NULL OR s.ts >= r.last + INTERVAL '{width} seconds') \
           AND (time_bucket(INTERVAL '{width} seconds', s.ts) + INTERVAL '{width} seconds' <= n.ts \
                OR time_bucket(INTERVAL '{width} seconds', s.ts) + INTERVAL '{width} seconds' <= ?::TIMESTAMP) \
         ORDER BY start, s.host"
    );
    let conn = store.conn();
    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
    let rows = stmt
        .query_map(params![raw_cutoff], |r| {
            Ok(Bucket {
                host: r.get(0)?,
                start: r.get(1)?,
            })
        })
        .map_err(Error::sql)?;
    rows.collect::<std::result::Result<_, _>>().map_err(Error::sql)
}

/// Rolls one bucket up into the rollup tables (and `tcp_state_buckets`, the snapshots whose TCP
/// states were counted) and lists it in `rollup_buckets`.
fn roll_up(conn: &duckdb::Connection, bucket: &Bucket, width: i64) -> Result<()> {
    let end = bucket.start + chrono::Duration::seconds(width);
    let (host, start) = (&bucket.host, bucket.start);
    // The bucket's snapshots of this host; `ts` also prunes row groups by their zone maps.
    let of_bucket = "ts >= $2 AND ts < $3 AND snapshot_id IN \
                     (SELECT snapshot_id FROM snapshots WHERE host = $1 AND ts >= $2 AND ts < $3)";
    let run = |sql: String| conn.execute(&sql, params![host, start, end, width]).map_err(Error::sql);
    run(format!(
        "INSERT INTO connection_rollups \
         WITH agg AS ( \
           SELECT connection_id, arg_max(proto, ts) AS proto, arg_max(local_addr, ts) AS local_addr, \
                  arg_max(local_port, ts) AS local_port, arg_max(remote_addr, ts) AS remote_addr, \
                  arg_max(remote_port, ts) AS remote_port, arg_max(direction, ts) AS direction, \
                  arg_max(remote_scope, ts) AS remote_scope, arg_max(pid, ts) AS pid, \
                  arg_max(process_name, ts) AS process_name, count(*) AS snapshots, min(ts) AS first_seen, \
                  max(ts) AS last_seen, arg_max(state, ts) AS last_state, \
                  arg_max(bytes_sent, ts) AS sent_end, arg_max(bytes_received, ts) AS received_end, \
                  arg_max(total_retrans, ts) AS total_retrans, avg(rtt_us) AS rtt_us_avg \
           FROM sockets WHERE {of_bucket} GROUP BY connection_id), \
         moved AS ( \
           SELECT connection_id, sum(bytes_sent) AS sent, sum(bytes_received) AS received \
           FROM socket_traffic WHERE {of_bucket} GROUP BY connection_id) \
         SELECT $1, $2, $4, a.connection_id, a.proto, a.local_addr, a.local_port, a.remote_addr, a.remote_port, \
                a.direction, a.remote_scope, a.pid, a.process_name, a.snapshots, a.first_seen, a.last_seen, \
                a.last_state, CASE WHEN a.sent_end IS NOT NULL THEN coalesce(m.sent, 0) END, \
                CASE WHEN a.received_end IS NOT NULL THEN coalesce(m.received, 0) END, a.sent_end, a.received_end, \
                a.total_retrans, a.rtt_us_avg \
         FROM agg a LEFT JOIN moved m USING (connection_id)"
    ))?;
    run(format!(
        "INSERT INTO process_rollups \
         WITH owned AS (SELECT pid, count(*) AS n FROM sockets WHERE {of_bucket} AND pid IS NOT NULL GROUP BY pid) \
         SELECT $1, $2, $4, p.pid, p.name, arg_max(p.exe, p.ts), arg_max(p.user_name, p.ts), count(*), \
                avg(p.cpu_percent), max(p.cpu_percent), avg(p.memory_rss_bytes), max(p.memory_rss_bytes), \
                arg_max(p.disk_read_bytes, p.ts) - arg_min(p.disk_read_bytes, p.ts), \
                arg_max(p.disk_written_bytes, p.ts) - arg_min(p.disk_written_bytes, p.ts), \
                coalesce(any_value(o.n), 0) / count(*) \
         FROM (SELECT * FROM processes WHERE {of_bucket}) p LEFT JOIN owned o ON o.pid = p.pid \
         GROUP BY p.pid, p.name"
    ))?;
    run(format!(
        "INSERT INTO interface_rollups \
         SELECT $1, $2, $4, name, count(*), sum(rx_bytes_delta), sum(tx_bytes_delta), sum(rx_packets_delta), \
                sum(tx_packets_delta), sum(rx_errors_delta), sum(tx_errors_delta) \
         FROM interfaces WHERE {of_bucket} GROUP BY name"
    ))?;
    run(format!(
        "INSERT INTO tcp_state_rollups \
         SELECT $1, $2, $4, state, count(*), count(DISTINCT snapshot_id) \
         FROM sockets WHERE {of_bucket} AND proto = 'tcp' GROUP BY state"
    ))?;
    // A connection's path is whole once it is gone: written with the bucket it went in.
    run(format!(
        "INSERT INTO tcp_path_rollups \
         SELECT $1, $2, $4, connection_id, count(*) FILTER (WHERE from_state IS NOT NULL AND to_state IS NOT NULL), \
                string_agg(coalesce(to_state, 'gone'), ' > ' ORDER BY snapshot_id), arg_min(to_state, snapshot_id), \
                arg_max(coalesce(to_state, from_state), snapshot_id), min(ts), max(ts) \
         FROM tcp_transitions \
         WHERE ts < $3 AND connection_id IN (SELECT connection_id FROM tcp_transitions WHERE to_state IS NULL AND {of_bucket}) \
         GROUP BY connection_id"
    ))?;
    run(format!(
        "INSERT INTO tcp_stuck_rollups \
         SELECT $1, $2, $4, connection_id, state, count(*), min(ts), max(ts), arg_min(process_name, ts), \
                arg_min(pid, ts), arg_min(remote_addr, ts), arg_min(remote_port, ts) \
         FROM sockets WHERE {of_bucket} AND proto = 'tcp' AND state IN ('SYN_SENT', 'CLOSE_WAIT') \
         GROUP BY connection_id, state"
    ))?;
    run("INSERT INTO tcp_state_buckets \
         SELECT $1, $2, $4, count(*) FROM snapshots WHERE host = $1 AND ts >= $2 AND ts < $3"
        .to_string())?;
    run("INSERT INTO peer_rollups \
         SELECT $1, $2, $4, remote_addr, any_value(remote_scope), count(*), count(DISTINCT remote_port), \
                string_agg(DISTINCT process_name, ',' ORDER BY process_name), sum(bytes_sent), sum(bytes_received) \
         FROM connection_rollups WHERE host = $1 AND bucket_start = $2 AND remote_addr IS NOT NULL \
           AND $3 IS NOT NULL \
         GROUP BY remote_addr"
        .to_string())?;
    run("INSERT INTO rollup_buckets \
         SELECT $1, $2, $4, count(*), min(ts), max(ts), now()::TIMESTAMP FROM snapshots \
         WHERE host = $1 AND ts >= $2 AND ts < $3"
        .to_string())?;
    Ok(())
}

/// Deletes the raw rows of the oldest `batch` snapshots older than `cutoff` whose buckets are
/// rolled up, never a host's newest. Returns the snapshots and rows deleted.
fn delete_raw_batch(
    conn: &duckdb::Connection,
    cutoff: chrono::NaiveDateTime,
    width: i64,
    batch: usize,
) -> Result<(u64, u64)> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT s.snapshot_id FROM snapshots s \
             JOIN rollup_buckets r ON r.host = s.host AND r.bucket_start = time_bucket(INTERVAL '{width} seconds', s.ts) \
             WHERE s.ts < ? AND s.snapshot_id < (SELECT max(snapshot_id) FROM snapshots n WHERE n.host = s.host) \
             ORDER BY s.snapshot_id LIMIT {batch}"
        ))
        .map_err(Error::sql)?;
    let ids: Vec<i64> = stmt
        .query_map(params![cutoff], |r| r.get(0))
        .map_err(Error::sql)?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::sql)?;
    if ids.is_empty() {
        return Ok((0, 0));
    }
    // Integers only: the list is built from ids the database gave.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let (low, high) = (ids[0], ids[ids.len() - 1]);
    let mut rows = 0;
    for table in [
        "sockets",
        "socket_traffic",
        "processes",
        "interfaces",
        "tcp_transitions",
        "snapshots",
    ] {
        // A TCP connection's transitions are its state path: they go only once the path is in
        // the path rollups (the connection is gone, in a rolled bucket). A connection open
        // across the cutoff keeps its first sighting and every change, a few rows each, so its
        // path is whole when it ends and is rolled up, instead of starting mid-way or reading
        // "gone" alone.
        let kept = if table == "tcp_transitions" {
            " AND connection_id IN (SELECT connection_id FROM tcp_path_rollups)"
        } else {
            ""
        };
        rows += conn
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE snapshot_id BETWEEN {low} AND {high} AND snapshot_id IN ({list}){kept}"
                ),
                [],
            )
            .map_err(Error::sql)?;
    }
    Ok((ids.len() as u64, rows as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn request(raw: Option<u64>, rollups: Option<u64>) -> RetainRequest {
        RetainRequest {
            raw: raw.map(Duration::from_secs),
            rollups: rollups.map(Duration::from_secs),
            bucket: Duration::from_secs(60),
            batch: 7,
        }
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Every row of `table` as text, in order.
    fn table_rows(store: &Store, table: &str) -> Vec<String> {
        let mut stmt = store
            .conn()
            .prepare(&format!("SELECT CAST(t AS VARCHAR) FROM {table} t ORDER BY ALL"))
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap()
    }

    /// A demo of `hours` at `interval`; returns the store and its newest snapshot time.
    fn demo(hours: u32, interval: u64) -> (Store, chrono::NaiveDateTime) {
        let store = Store::open(&Location::Memory, false).unwrap();
        let request = crate::capture::demo::DemoRequest {
            hours,
            interval: Duration::from_secs(interval),
            seed: 7,
            traffic_rows: 10,
        };
        let end = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut quiet = crate::request::CollectGaps::default();
        crate::capture::demo::run(&store, &request, end, &mut quiet).unwrap();
        let newest = store
            .conn()
            .query_row("SELECT max(ts) FROM snapshots", [], |r| r.get(0))
            .unwrap();
        (store, newest)
    }

    /// Rollups of complete buckets sum exactly the raw rows they replace; raw rows older than
    /// the window go, the newest snapshot and open lifetimes stay, and a second run does nothing.
    #[test]
    fn rollups_keep_the_totals_and_raw_rows_go() {
        let (store, newest) = demo(3, 60);
        let complete = "ts < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots)";
        let tx_raw = count(
            &store,
            &format!("SELECT sum(tx_bytes_delta) FROM interfaces WHERE {complete}"),
        );
        let socket_rows = count(&store, &format!("SELECT count(*) FROM sockets WHERE {complete}"));
        let open = count(
            &store,
            "SELECT count(*) FROM connection_lifetimes WHERE closed_at IS NULL",
        );
        let mut req = request(Some(3600), Some(4 * 3600));
        req.bucket = Duration::from_secs(3600);

        let summary = retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        assert!(summary.buckets_rolled >= 2, "{summary:?}");
        assert!(summary.snapshots_deleted > 0, "{summary:?}");
        assert_eq!(count(&store, "SELECT sum(tx_bytes) FROM interface_rollups"), tx_raw);
        assert_eq!(
            count(&store, "SELECT sum(snapshots) FROM connection_rollups"),
            socket_rows
        );
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(*) FROM snapshots WHERE ts < TIMESTAMP '{newest}' - INTERVAL 1 HOUR")
            ),
            0,
            "raw rows older than the window are gone"
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM sockets WHERE snapshot_id NOT IN (SELECT snapshot_id FROM snapshots)"
            ),
            0,
            "no orphaned sockets"
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM connection_lifetimes WHERE closed_at IS NULL"
            ),
            open
        );
        assert!(count(&store, "SELECT count(*) FROM peer_rollups") > 0);
        assert!(
            count(
                &store,
                "SELECT count(*) FROM process_rollups WHERE cpu_percent_avg IS NOT NULL"
            ) > 0
        );
        assert_eq!(
            count(&store, "SELECT count(*) FROM connection_rollups WHERE bytes_sent < 0"),
            0
        );
        assert_eq!(count(&store, "SELECT count(*) FROM retention_runs"), 1);

        let again = retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        assert_eq!(again, RetainSummary::default(), "a second run finds nothing to do");

        // Rollups older than their own window go too.
        req.rollups = Some(Duration::from_secs(2 * 3600));
        let shorter = retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        assert!(shorter.rollups_deleted > 0, "{shorter:?}");
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(*) FROM connection_rollups WHERE bucket_start < TIMESTAMP '{newest}' - INTERVAL 2 HOUR")
            ),
            0
        );
    }

    /// Bucket by bucket, interface traffic and snapshot counts equal the raw rows'.
    #[test]
    fn each_bucket_sums_exactly_its_raw_rows() {
        let (store, newest) = demo(1, 30);
        retain(&store, &request(None, None), newest.and_utc(), &|| false, &|| ()).unwrap();
        let differing = count(
            &store,
            "SELECT count(*) FROM ( \
               SELECT time_bucket(INTERVAL 60 SECOND, ts) AS b, name, sum(tx_bytes_delta) AS tx, count(*) AS n \
               FROM interfaces WHERE ts < (SELECT time_bucket(INTERVAL 60 SECOND, max(ts)) FROM snapshots) \
               GROUP BY ALL) raw FULL JOIN interface_rollups r ON raw.b = r.bucket_start AND raw.name = r.name \
             WHERE r.tx_bytes IS DISTINCT FROM raw.tx OR r.snapshots IS DISTINCT FROM raw.n",
        );
        assert_eq!(differing, 0);
        assert!(count(&store, "SELECT count(*) FROM interface_rollups") > 0);
        // A connection's bytes in a bucket are what socket_traffic counted there, also for a
        // connection that opened within the bucket.
        let differing = count(
            &store,
            "SELECT count(*) FROM ( \
               SELECT time_bucket(INTERVAL 60 SECOND, ts) AS b, connection_id, sum(bytes_sent) AS sent, \
                      sum(bytes_received) AS received \
               FROM socket_traffic WHERE ts < (SELECT time_bucket(INTERVAL 60 SECOND, max(ts)) FROM snapshots) \
               GROUP BY ALL) t JOIN connection_rollups r ON t.b = r.bucket_start AND t.connection_id = r.connection_id \
             WHERE r.bytes_sent IS DISTINCT FROM t.sent OR r.bytes_received IS DISTINCT FROM t.received",
        );
        assert_eq!(differing, 0);
        assert!(count(&store, "SELECT count(*) FROM connection_rollups WHERE bytes_sent > 0") > 0);
    }

    /// Bucket by bucket, the stuck-socket rollups count the raw sightings in SYN_SENT and
    /// CLOSE_WAIT; and migration 34's fill of buckets rolled up before it gives the same rows as
    /// `retain`.
    #[test]
    fn tcp_stuck_rollups_count_the_raw_sightings_and_the_migration_fills_the_same() {
        let (store, newest) = demo(2, 30);
        let mut req = request(None, None);
        req.bucket = Duration::from_secs(3600);
        retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        let differing = count(
            &store,
            "SELECT count(*) FROM ( \
               SELECT n.host, time_bucket(INTERVAL 1 HOUR, s.ts) AS b, s.connection_id, s.state, count(*) AS n, \
                      min(s.ts) AS first_ts, max(s.ts) AS last_ts \
               FROM sockets s JOIN snapshots n USING (snapshot_id) \
               WHERE s.proto = 'tcp' AND s.state IN ('SYN_SENT', 'CLOSE_WAIT') \
                 AND s.ts < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots) \
               GROUP BY ALL) raw FULL JOIN tcp_stuck_rollups r \
               ON raw.host = r.host AND raw.b = r.bucket_start AND raw.connection_id = r.connection_id \
              AND raw.state = r.state \
             WHERE r.sightings IS DISTINCT FROM raw.n OR r.first_ts IS DISTINCT FROM raw.first_ts \
                OR r.last_ts IS DISTINCT FROM raw.last_ts",
        );
        assert_eq!(differing, 0);
        assert!(
            count(
                &store,
                "SELECT count(*) FROM tcp_stuck_rollups WHERE state = 'SYN_SENT'"
            ) > 0
        );
        assert!(
            count(
                &store,
                "SELECT count(*) FROM tcp_stuck_rollups WHERE state = 'CLOSE_WAIT'"
            ) > 0
        );
        let migration = include_str!("../sql/034_tcp_path_stuck_rollups.sql");
        let fill = migration
            .split_once("INSERT INTO tcp_stuck_rollups")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(fill, _)| format!("INSERT INTO tcp_stuck_rollups {fill}"))
            .unwrap();
        let rows = |store: &Store| table_rows(store, "tcp_stuck_rollups");
        let by_retain = rows(&store);
        store.conn().execute_batch("DELETE FROM tcp_stuck_rollups").unwrap();
        store.conn().execute_batch(&fill).unwrap();
        assert_eq!(rows(&store), by_retain);
    }

    /// Stuck connections of rolled-up hours are still shown once retention has deleted their
    /// raw rows and their closed lifetimes (the rolled macro once kept only the connections
    /// whose lifetime was still stored).
    #[test]
    fn stuck_rollups_are_shown_after_their_lifetimes_are_deleted() {
        let (store, newest) = demo(2, 30);
        let mut req = request(None, None);
        req.bucket = Duration::from_secs(3600);
        retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        let rolled = "(SELECT * FROM tcp_stuck_connections_rolled( \
                        (SELECT min(ts) FROM snapshots), (SELECT time_bucket(INTERVAL 1 HOUR, min(ts)) FROM snapshots), \
                        (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots), (SELECT max(ts) FROM snapshots)))";
        let rows = |store: &Store| table_rows(store, rolled);
        let before = rows(&store);
        assert!(!before.is_empty());
        let shown_and_deleted = count(
            &store,
            &format!(
                "SELECT count(*) FROM {rolled} r WHERE connection_id IN (SELECT connection_id FROM connection_lifetimes \
                   WHERE closed_at < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots))"
            ),
        );
        assert!(
            shown_and_deleted > 0,
            "no stuck connection shown closed in a rolled-up hour"
        );
        store
            .conn()
            .execute_batch(
                "DELETE FROM connection_lifetimes WHERE closed_at < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots)",
            )
            .unwrap();
        assert_eq!(rows(&store), before);
    }

    /// A TCP connection open across the raw window's cutoff keeps its whole state path: raw
    /// retention used to delete its first sighting and early changes, so its path started
    /// mid-way (or read "gone" alone once it ended), in the raw views and in the rollup written
    /// when it went.
    #[test]
    fn a_connection_open_across_the_cutoff_keeps_its_whole_path() {
        let (store, newest) = demo(3, 60);
        let cutoff = format!("TIMESTAMP '{newest}' - INTERVAL 1 HOUR");
        let across = format!(
            "(SELECT connection_id FROM tcp_transitions GROUP BY connection_id \
              HAVING min(ts) < {cutoff} - INTERVAL 1 HOUR AND count(*) FILTER (WHERE to_state IS NULL) = 0)"
        );
        let paths = format!(
            "SELECT connection_id, path, transitions, first_state, first_ts FROM tcp_connection_transitions \
             WHERE connection_id IN {across} ORDER BY connection_id"
        );
        let before = table_rows(&store, &format!("({paths})"));
        assert!(!before.is_empty(), "no connection open across the cutoff");
        let mut req = request(Some(3600), Some(4 * 3600));
        req.bucket = Duration::from_secs(3600);
        let summary = retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        assert!(summary.snapshots_deleted > 0, "{summary:?}");
        assert_eq!(table_rows(&store, &format!("({paths})")), before);
        // Connections gone in a rolled bucket lose their old transitions as before: their paths
        // are in the rollups.
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT count(*) FROM tcp_transitions WHERE ts < {cutoff} - INTERVAL 1 HOUR \
                     AND connection_id IN (SELECT connection_id FROM tcp_path_rollups)"
                )
            ),
            0
        );
    }

    /// Every TCP connection gone in a rolled-up bucket has its `tcp_connection_transitions` row
    /// in the path rollups, once; and migration 34's fill gives the same rows as `retain`.
    #[test]
    fn tcp_path_rollups_hold_the_raw_paths_and_the_migration_fills_the_same() {
        let (store, newest) = demo(2, 30);
        let mut req = request(None, None);
        req.bucket = Duration::from_secs(3600);
        retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        let gone_before = "(SELECT connection_id FROM tcp_transitions WHERE to_state IS NULL \
                            AND ts < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots))";
        let differing = count(
            &store,
            &format!(
                "SELECT count(*) FROM (SELECT * FROM tcp_connection_transitions WHERE connection_id IN {gone_before}) raw \
                 FULL JOIN tcp_path_rollups r USING (connection_id) \
                 WHERE r.path IS DISTINCT FROM raw.path OR r.transitions IS DISTINCT FROM raw.transitions \
                    OR r.first_state IS DISTINCT FROM raw.first_state OR r.last_state IS DISTINCT FROM raw.last_state \
                    OR r.first_ts IS DISTINCT FROM raw.first_ts OR r.last_ts IS DISTINCT FROM raw.last_ts"
            ),
        );
        assert_eq!(differing, 0);
        assert!(count(&store, "SELECT count(*) FROM tcp_path_rollups WHERE transitions > 0") > 10);
        assert_eq!(
            count(&store, "SELECT count(*) FROM tcp_path_rollups"),
            count(&store, "SELECT count(DISTINCT connection_id) FROM tcp_path_rollups")
        );
        let migration = include_str!("../sql/034_tcp_path_stuck_rollups.sql");
        let fill = migration
            .split_once("INSERT INTO tcp_path_rollups")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(fill, _)| format!("INSERT INTO tcp_path_rollups {fill}"))
            .unwrap();
        let by_retain = table_rows(&store, "tcp_path_rollups");
        store.conn().execute_batch("DELETE FROM tcp_path_rollups").unwrap();
        store.conn().execute_batch(&fill).unwrap();
        assert_eq!(table_rows(&store, "tcp_path_rollups"), by_retain);
    }

    /// Bucket by bucket and state, the TCP state rollups equal `tcp_state_counts` summed; and
    /// migration 30's fill of buckets rolled up before it gives the same rows as `retain`.
    #[test]
    fn tcp_state_rollups_sum_the_raw_counts_and_the_migration_fills_the_same() {
        let (store, newest) = demo(2, 30);
        let mut req = request(None, None);
        req.bucket = Duration::from_secs(3600);
        retain(&store, &req, newest.and_utc(), &|| false, &|| ()).unwrap();
        let differing = count(
            &store,
            "SELECT count(*) FROM ( \
               SELECT host, time_bucket(INTERVAL 1 HOUR, ts) AS b, state, sum(sockets) AS n, count(*) AS snaps \
               FROM tcp_state_counts WHERE ts < (SELECT time_bucket(INTERVAL 1 HOUR, max(ts)) FROM snapshots) \
               GROUP BY ALL) raw FULL JOIN tcp_state_rollups r \
               ON raw.host = r.host AND raw.b = r.bucket_start AND raw.state IS NOT DISTINCT FROM r.state \
             WHERE r.sockets IS DISTINCT FROM raw.n OR r.snapshots IS DISTINCT FROM raw.snaps",
        );
        assert_eq!(differing, 0);
        assert!(count(&store, "SELECT count(DISTINCT bucket_start) FROM tcp_state_rollups") >= 2);
        let migration = include_str!("../sql/030_tcp_state_rollups.sql");
        let fill = migration
            .split_once("INSERT INTO tcp_state_rollups")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(fill, _)| format!("INSERT INTO tcp_state_rollups {fill}"))
            .unwrap();
        let rows = |store: &Store| table_rows(store, "tcp_state_rollups");
        let by_retain = rows(&store);
        store.conn().execute_batch("DELETE FROM tcp_state_rollups").unwrap();
        store.conn().execute_batch(&fill).unwrap();
        assert_eq!(rows(&store), by_retain);

        // With every raw row kept, the counted snapshots are the bucket's, and the migration's
        // fill gives what `retain` gave.
        let listed = |store: &Store| {
            count(
                store,
                "SELECT count(*) FROM rollup_buckets b JOIN tcp_state_buckets t USING (host, bucket_start) \
                 WHERE t.snapshots = b.snapshots",
            )
        };
        let buckets = count(&store, "SELECT count(*) FROM rollup_buckets");
        assert_eq!(listed(&store), buckets);
        let bucket_fill = migration
            .split_once("INSERT INTO tcp_state_buckets")
            .and_then(|(_, rest)| rest.split_once(';'))
            .map(|(fill, _)| format!("INSERT INTO tcp_state_buckets {fill}"))
            .unwrap();
        store.conn().execute_batch("DELETE FROM tcp_state_buckets").unwrap();
        store.conn().execute_batch(&bucket_fill).unwrap();
        assert_eq!(listed(&store), buckets);

        // A bucket whose raw rows were deleted before migration 30 has no state counts; the mean
        // per snapshot once divided by its snapshots all the same (rollup_buckets), too low.
        let oldest = "(SELECT min(bucket_start) FROM rollup_buckets)";
        store
            .conn()
            .execute_batch(&format!(
                "DELETE FROM sockets WHERE ts < {oldest} + INTERVAL 1 HOUR; \
                 DELETE FROM snapshots WHERE ts < {oldest} + INTERVAL 1 HOUR; \
                 DELETE FROM tcp_state_rollups; DELETE FROM tcp_state_buckets; {fill}; {bucket_fill}"
            ))
            .unwrap();
        assert_eq!(listed(&store), buckets - 1);
        let whole = "TIMESTAMP '2000-01-01', (SELECT min(bucket_start) FROM rollup_buckets), \
                     (SELECT max(bucket_start) + INTERVAL 1 HOUR FROM rollup_buckets), TIMESTAMP '2100-01-01'";
        assert_eq!(
            count(
                &store,
                &format!("SELECT CAST(snapshot_count_rolled({whole}) AS BIGINT)")
            ),
            count(&store, "SELECT count(*) FROM snapshots"),
            "the denominator counts the snapshots the state counts saw"
        );
    }

    #[test]
    fn windows_are_checked() {
        assert!(
            request(Some(3600), Some(60)).check().is_err(),
            "rollups shorter than raw"
        );
        assert!(request(Some(30), None).check().is_err(), "raw window under one bucket");
        let mut r = request(None, None);
        r.batch = 0;
        assert!(r.check().is_err());
        r = request(None, None);
        r.bucket = Duration::from_secs(90);
        assert!(r.check().is_err(), "buckets are whole minutes");
        assert!(request(Some(3600), Some(86_400)).check().is_ok());
    }

    /// A server stopping mid-run stops between transactions; the next run goes on.
    #[test]
    fn a_stopped_run_resumes() {
        let (store, newest) = demo(1, 30);
        let calls = std::cell::Cell::new(0);
        let stop_soon = || {
            calls.set(calls.get() + 1);
            calls.get() > 3
        };
        let first = retain(&store, &request(Some(600), None), newest.and_utc(), &stop_soon, &|| ()).unwrap();
        assert!(first.interrupted);
        let rest = retain(&store, &request(Some(600), None), newest.and_utc(), &|| false, &|| ()).unwrap();
        assert!(!rest.interrupted);
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(*) FROM snapshots WHERE ts < TIMESTAMP '{newest}' - INTERVAL 600 SECOND")
            ),
            0
        );
    }
}
