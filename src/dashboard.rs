//! The dashboard's views: which panels each view shows, the SQL behind each panel (with
//! `:since` and `:until` for the time range) and the chart kind that draws it, as
//! `assets/dashboard/views.json` describes them; and the page's files, built into the binary.
//! The live dashboard (`serve --http`) and the static report (`netlens report`) both draw from
//! here, so the two always show the same views.
//!
//! May use nothing but the error type: the callers run the SQL.

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The page and its files, built into the binary.
pub const INDEX: &str = include_str!("../assets/dashboard/index.html");
pub const VIEWS: &str = include_str!("../assets/dashboard/views.json");
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/app.css"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/echarts.min.js"),
    ),
];

/// One panel of a view, as `views.json` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PanelSpec {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub sql: String,
}

/// One view of the dashboard.
#[derive(Debug, Clone, Deserialize)]
pub struct ViewSpec {
    pub id: String,
    pub title: String,
    pub panels: Vec<PanelSpec>,
}

/// The views built into this binary, and `views.json` itself (what the page reads, with the
/// keys only the page uses), parsed once.
pub fn views() -> Result<(Vec<ViewSpec>, serde_json::Value)> {
    let bad = |e: serde_json::Error| Error::Sql {
        message: format!("assets/dashboard/views.json is not a list of views: {e}"),
    };
    let json: serde_json::Value = serde_json::from_str(VIEWS).map_err(bad)?;
    let specs = serde_json::from_value(json.clone()).map_err(bad)?;
    Ok((specs, json))
}

/// Rows a panel shows at most (the server's and the report's).
pub const PANEL_ROWS: usize = 5000;

/// A panel's SQL for a time range, reading raw rows only: `:since` and `:until` become
/// timestamp literals (formatted here from parsed times, never from the request's text),
/// `:rolled_from` and `:rolled_to` both the start of the range, and `:row_limit` one more than
/// [`PANEL_ROWS`] (a table ordered and cut by it is the top rows, not a sort of every row, and
/// the one more says there were more). An export of the panel's rows sets `:row_limit` to NULL:
/// every row.
pub fn panel_sql(sql: &str, since: NaiveDateTime, until: NaiveDateTime) -> String {
    panel_sql_rolled(sql, since, until, None)
}

/// A panel's SQL for a time range whose buckets in `rolled` (`[from, to)`) are read from the
/// hourly rollups (the `*_rolled` macros of migration 26); `None` reads raw rows only.
pub fn panel_sql_rolled(sql: &str, since: NaiveDateTime, until: NaiveDateTime, rolled: Option<&Rolled>) -> String {
    let literal = |t: NaiveDateTime| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
    let (from, to) = rolled.map_or((since, since), |r| (r.from, r.to));
    // `:rolled_*` first: `:since`'s replacement must not see them.
    sql.replace(":row_limit", &(PANEL_ROWS + 1).to_string())
        .replace(":rolled_from", &literal(from))
        .replace(":rolled_to", &literal(to))
        .replace(":since", &literal(since))
        .replace(":until", &literal(until))
}

/// Ranges longer than this read the hourly rollups where the panel can (below it a panel's raw
/// rows are few enough to read: a day is the longest preset that reads them).
pub const ROLLUPS_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Whether a panel can be drawn from rollups (its SQL reads a `*_rolled` macro).
pub fn reads_rollups(sql: &str) -> bool {
    sql.contains(":rolled_from")
}

/// The part of a range a panel reads from the rollups: the rolled-up buckets wholly inside it,
/// from the first of them to the end of the last one that every host has rolled up.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rolled {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    /// Rolled-up buckets (of every host) in `[from, to)`.
    pub buckets: i64,
    /// The width of those buckets in seconds (the smallest, when they differ).
    pub bucket_s: i64,
}

/// The query that finds [`Rolled`] for a range (`$1` since, `$2` until): one row of `from, to,
/// buckets, bucket_s`, with `to <= from` when no part of the range can be read from rollups.
/// A host's buckets are contiguous from its first snapshot (retention rolls every complete
/// hour in order), so its raw rows not yet rolled up all lie after its last bucket; `to` is the
/// earliest such end over the hosts with rows in the range, and a host with none rolled up
/// there makes it `since` (raw rows only).
pub const ROLLED_SQL: &str = "WITH inside AS ( \
       SELECT host, bucket_start, bucket_start + to_seconds(bucket_s) AS bucket_end, bucket_s FROM rollup_buckets \
       WHERE bucket_start >= $1 AND bucket_start + to_seconds(bucket_s) <= $2), \
     hosts AS (SELECT host FROM inside UNION SELECT host FROM snapshots WHERE ts BETWEEN $1 AND $2), \
     ends AS (SELECT h.host, coalesce(max(i.bucket_end), $1) AS rolled_end \
              FROM hosts h LEFT JOIN inside i USING (host) GROUP BY h.host), \
     upto AS (SELECT min(rolled_end) AS rolled_to FROM ends) \
     SELECT min(i.bucket_start), any_value(u.rolled_to), count(i.bucket_start), min(i.bucket_s) \
     FROM upto u LEFT JOIN inside i ON i.bucket_end <= u.rolled_to";

/// The part of `[since, until)` to read from the rollups, asked of `conn` only for a range
/// longer than [`ROLLUPS_AFTER`]; `None` when no part is.
pub fn rolled(conn: &duckdb::Connection, since: NaiveDateTime, until: NaiveDateTime) -> Result<Option<Rolled>> {
    if until - since <= ROLLUPS_AFTER {
        return Ok(None);
    }
    let row = conn
        .query_row(ROLLED_SQL, duckdb::params![since, until], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(Error::sql)?;
    Ok(rolled_from_row(since, until, row))
}

/// [`Rolled`] from [`ROLLED_SQL`]'s row, or `None` when the range is not longer than
/// [`ROLLUPS_AFTER`] or nothing in it is rolled up.
pub fn rolled_from_row(
    since: NaiveDateTime,
    until: NaiveDateTime,
    row: (Option<NaiveDateTime>, Option<NaiveDateTime>, i64, Option<i64>),
) -> Option<Rolled> {
    if until - since <= ROLLUPS_AFTER {
        return None;
    }
    rolled_part(row)
}

/// [`Rolled`] from [`ROLLED_SQL`]'s row, whatever the range's length.
fn rolled_part(row: (Option<NaiveDateTime>, Option<NaiveDateTime>, i64, Option<i64>)) -> Option<Rolled> {
    match row {
        (Some(from), Some(to), buckets, Some(bucket_s)) if to > from && buckets > 0 => Some(Rolled {
            from,
            to,
            buckets,
            bucket_s,
        }),
        _ => None,
    }
}

/// The range the page's "all" asks for (`ALL_SINCE`/`ALL_UNTIL` in `assets/dashboard/app.js`),
/// and the server's when a panel is asked without one: the same bounds, so that both read the
/// one shared read of the whole history ([`crate::shared_reads`]).
pub fn everything() -> (NaiveDateTime, NaiveDateTime) {
    let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a valid date");
    (
        day(1970, 1, 1).and_hms_opt(0, 0, 0).expect("a valid time"),
        day(9999, 12, 31).and_hms_opt(23, 59, 59).expect("a valid time"),
    )
}

/// A time from the page: `YYYY-MM-DDTHH:MM:SS[.f][Z]` or with a space, UTC.
pub fn parse_time(text: &str) -> std::result::Result<NaiveDateTime, String> {
    let t = text.trim().trim_end_matches('Z');
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(|| format!("'{text}' is not a time (expected 2026-12-05T10:00:00, UTC)"))
}

/// The last column of a panel that draws a sample of its rows (scatter plots): how many rows
/// there were before its `LIMIT` (`count(*) OVER () AS sampled_from`), so the page can say when
/// a plot is a sample.
pub const SAMPLED_FROM: &str = "sampled_from";

/// The column before [`SAMPLED_FROM`] of a panel computed from a sample rather than drawing
/// one (the correlation heatmap: its cells are few, the connections behind them many): how many
/// of the `sampled_from` it was computed from. Every row says the same.
pub const SAMPLE_SIZE: &str = "sample_size";

/// A panel's plot shows `shown` of its `of` rows (`what`: "points drawn"), or was computed from
/// `shown` of `of` connections (`what`: "connections").
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sampled {
    pub shown: i64,
    pub of: i64,
    pub what: &'static str,
}

/// Takes the [`SAMPLED_FROM`] column (and [`SAMPLE_SIZE`] before it, when there) off a panel's
/// result (the page draws the others): `Some` when the plot shows, or was computed from, fewer
/// rows than the panel had.
pub fn take_sampled(
    columns: &mut Vec<String>,
    types: &mut Vec<String>,
    rows: &mut [Vec<serde_json::Value>],
) -> Option<Sampled> {
    if columns.last().map(String::as_str) != Some(SAMPLED_FROM) {
        return None;
    }
    let computed = columns.len() >= 2 && columns[columns.len() - 2] == SAMPLE_SIZE;
    let taken = if computed { 2 } else { 1 };
    columns.truncate(columns.len() - taken);
    types.truncate(types.len().saturating_sub(taken));
    let last = |row: &[serde_json::Value], back: usize| row.len().checked_sub(back).and_then(|i| row[i].as_i64());
    let of = rows.first().and_then(|r| last(r, 1));
    let (shown, what) = if computed {
        (rows.first().and_then(|r| last(r, 2)), "connections")
    } else {
        (Some(rows.len() as i64), "points drawn")
    };
    for row in rows.iter_mut() {
        row.truncate(row.len().saturating_sub(taken));
    }
    match (shown, of) {
        (Some(shown), Some(of)) if of > shown => Some(Sampled { shown, of, what }),
        _ => None,
    }
}

/// The chart kinds the page draws.
pub const KINDS: &[&str] = &[
    "kpi",
    "bar",
    "hbar",
    "pie",
    "line",
    "area",
    "heatmap",
    "scatter",
    "scatter3d",
    "histogram",
    "table",
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn panel_times_are_literals_made_here() {
        let since = parse_time("2026-12-05T10:00:00Z").unwrap();
        let until = parse_time("2026-12-05 11:30:00.5").unwrap();
        assert_eq!(
            panel_sql(
                "SELECT * FROM snapshots WHERE ts >= :since AND ts < :until",
                since,
                until
            ),
            "SELECT * FROM snapshots WHERE ts >= TIMESTAMP '2026-12-05 10:00:00.000000' \
             AND ts < TIMESTAMP '2026-12-05 11:30:00.500000'"
        );
        assert!(parse_time("2026-12-05'; DROP TABLE x; --").is_err());
    }

    /// The connections table sorted every lifetime of the range to show the first 5000 (issue 18:
    /// over the whole history that sort was most of the view's second). It is cut in SQL now, at
    /// one row more than it shows (so the page still says it was cut), and an export, which sets
    /// `:row_limit` to NULL as the page does, has every row.
    #[test]
    fn a_table_panel_is_cut_in_sql_and_exported_whole() {
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let (since, until) = (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        );
        let (views, _) = views().unwrap();
        let table = views
            .iter()
            .find(|v| v.id == "connections")
            .and_then(|v| v.panels.iter().find(|p| p.id == "table"))
            .unwrap();
        assert!(table.sql.trim_end().ends_with("LIMIT :row_limit"), "{}", table.sql);
        let sql = "SELECT i FROM range(12000) t(i) ORDER BY i DESC LIMIT :row_limit";
        let run = |sql: &str| {
            let mut stmt = store.conn().prepare(sql).unwrap();
            let arrow = stmt.query_arrow([]).unwrap();
            let schema = arrow.get_schema();
            crate::output::JsonTable::collect(&schema, arrow.map(Ok), PANEL_ROWS).unwrap()
        };
        let shown = run(&panel_sql(sql, since, until));
        assert!(shown.truncated);
        assert_eq!(shown.rows.len(), PANEL_ROWS);
        assert_eq!(shown.rows[0][0], serde_json::json!(11999));
        let exported: i64 = store
            .conn()
            .query_row(
                &format!("SELECT count(*) FROM ({})", sql.replace(":row_limit", "NULL")),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(exported, 12000);
    }

    /// Stuck connections often share one `stuck_s` (every socket stuck since the range began), and
    /// the panel sorted by it alone: its rows came in a different order on every ask. Its order
    /// now names every column it shows, so equal rows are the only ties.
    #[test]
    fn the_stuck_panel_orders_by_every_column_it_shows() {
        let (views, _) = views().unwrap();
        let stuck = views
            .iter()
            .flat_map(|v| &v.panels)
            .find(|p| p.id == "stuck")
            .expect("the tcp view has a stuck panel");
        let sql = stuck.sql.replace('\n', " ");
        let shown = sql["SELECT ".len()..sql.find(" FROM").unwrap()].split(", ");
        let order = &sql[sql.find("ORDER BY ").unwrap() + "ORDER BY ".len()..];
        let ordered: Vec<&str> = order.split(", ").map(|c| c.trim_end_matches(" DESC")).collect();
        for column in shown {
            assert!(
                ordered.contains(&column.trim()),
                "{column} is not in the stuck panel's ORDER BY: {order}"
            );
        }
    }

    /// The time of `store`'s newest snapshot.
    pub(crate) fn newest(store: &crate::store::Store) -> NaiveDateTime {
        store
            .conn()
            .query_row("SELECT max(ts) FROM snapshots", [], |r| r.get(0))
            .unwrap()
    }

    /// `m` minutes.
    pub(crate) fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(m * 60_000)
    }

    /// An in-memory store with `hours` of demo history ending now, a snapshot every
    /// `interval_s` seconds, from `seed`.
    pub(crate) fn demo_store(hours: u32, interval_s: u64, seed: u64) -> crate::store::Store {
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let demo = crate::capture::demo::DemoRequest {
            hours,
            interval: Duration::from_secs(interval_s),
            seed,
            traffic_rows: 50,
        };
        let mut quiet = crate::request::CollectGaps::default();
        crate::capture::demo::run(&store, &demo, chrono::Utc::now(), &mut quiet).unwrap();
        store
    }

    /// Every panel of every view parses, names a kind the page draws, and runs on a demo
    /// database (an empty result is fine where the demo has no such data).
    #[test]
    fn every_panel_runs_on_a_demo_database() {
        let store = demo_store(2, 60, 3);
        let (views, _) = views().unwrap();
        assert!(views.len() >= 10, "{} views", views.len());
        let kinds = KINDS;
        let since = parse_time("2000-01-01T00:00:00").unwrap();
        let until = parse_time("2100-01-01T00:00:00").unwrap();
        let mut failures = Vec::new();
        for view in &views {
            for panel in &view.panels {
                assert!(
                    kinds.contains(&panel.kind.as_str()),
                    "{}/{}: kind {}",
                    view.id,
                    panel.id,
                    panel.kind
                );
                assert!(!panel.title.is_empty());
                let sql = panel_sql(&panel.sql, since, until);
                if let Err(e) = store.conn().prepare(&sql).and_then(|mut s| s.query([]).map(|_| ())) {
                    failures.push(format!("{}/{}: {e}", view.id, panel.id));
                }
            }
        }
        assert!(failures.is_empty(), "panels that fail:\n{}", failures.join("\n"));
        assert!(views.iter().all(|v| !v.title.is_empty()));
    }

    /// Each range macro of migration 25 and what it stands for: the whole-history view it
    /// replaces, filtered by the range as the panels filtered it before.
    const RANGE_MACROS: &[(&str, &str)] = &[
        (
            "connection_events_overlapping(:since, :until)",
            "(SELECT * FROM connection_events WHERE start_ts <= :until AND end_ts >= :since)",
        ),
        (
            "connections_overlapping(:since, :until)",
            "(SELECT * FROM connections WHERE first_seen <= :until AND last_seen >= :since)",
        ),
        (
            "flow_features_between(INTERVAL 5 MINUTE, :since, :until)",
            "(SELECT * FROM flow_features WHERE window_start BETWEEN :since AND :until)",
        ),
        (
            "traffic_rates_between(:since, :until)",
            "(SELECT * FROM traffic_rates WHERE minute BETWEEN :since AND :until)",
        ),
        (
            "connection_traffic_between(:since, :until)",
            "(SELECT * FROM connection_traffic WHERE ts BETWEEN :since AND :until)",
        ),
        (
            "tcp_connection_transitions_overlapping(:since, :until)",
            "(SELECT * FROM tcp_connection_transitions WHERE first_ts <= :until AND last_ts >= :since)",
        ),
        (
            "tcp_stuck_connections_overlapping(:since, :until)",
            "(SELECT * FROM tcp_stuck_connections WHERE since <= :until AND until >= :since)",
        ),
        // Migration 26.
        (
            "tcp_state_counts_between(:since, :until)",
            "(SELECT * FROM tcp_state_counts WHERE ts BETWEEN :since AND :until)",
        ),
        (
            "connections_between(:since, :until, NULL)",
            "(SELECT * FROM connections WHERE first_seen BETWEEN :since AND :until)",
        ),
        (
            "connection_events_between(:since, :until, NULL)",
            "(SELECT * FROM connection_events WHERE start_ts BETWEEN :since AND :until)",
        ),
        (
            "connections_geo_overlapping(:since, :until)",
            "(SELECT * FROM connections_geo WHERE first_seen <= :until AND last_seen >= :since)",
        ),
        // The `_rolled` macros with nothing rolled (`panel_sql` makes :rolled_from = :rolled_to
        // = :since): the raw rows the panels read before.
        (
            "connection_traffic_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT * FROM connection_traffic WHERE ts BETWEEN :since AND :until)",
        ),
        (
            "interface_traffic_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT ts, name, interval_s, rx_bytes_delta AS rx_bytes, tx_bytes_delta AS tx_bytes \
             FROM interfaces WHERE ts BETWEEN :since AND :until)",
        ),
        (
            "socket_directions_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT ts, direction, count(*) AS sockets, 1 AS snapshots FROM sockets \
             WHERE ts BETWEEN :since AND :until GROUP BY snapshot_id, ts, direction)",
        ),
        // Migration 33: a sample only over more connections than a demo has.
        (
            "flow_features_sampled(INTERVAL 5 MINUTE, :since, :until, 100000)",
            "(SELECT *, 1 AS one_in, sum(connection_count) OVER () AS connections_of \
             FROM flow_features WHERE window_start BETWEEN :since AND :until)",
        ),
        // Migration 34.
        (
            "tcp_connection_transitions_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT * FROM tcp_connection_transitions WHERE first_ts <= :until AND last_ts >= :since)",
        ),
        (
            "tcp_stuck_connections_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT * FROM tcp_stuck_connections WHERE since <= :until AND until >= :since)",
        ),
        // Migration 30.
        (
            "tcp_state_counts_rolled(:since, :rolled_from, :rolled_to, :until)",
            "(SELECT ts, host, state, sockets, 1 AS snapshots FROM tcp_state_counts \
             WHERE ts BETWEEN :since AND :until)",
        ),
    ];

    /// A result's rows as text, sorted (rows that tie in a panel's ORDER BY come in no fixed order).
    /// The SQL of panel `panel` of view `view` in `views.json`.
    fn panel_of<'a>(views: &'a [ViewSpec], view: &str, panel: &str) -> &'a str {
        &views
            .iter()
            .find(|v| v.id == view)
            .and_then(|v| v.panels.iter().find(|p| p.id == panel))
            .unwrap_or_else(|| panic!("no panel {view}/{panel}"))
            .sql
    }

    /// The times of the oldest and the newest snapshot.
    fn first_and_newest(store: &crate::store::Store) -> (NaiveDateTime, NaiveDateTime) {
        store
            .conn()
            .query_row("SELECT min(ts), max(ts) FROM snapshots", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }

    pub(crate) fn sorted_rows(store: &crate::store::Store, sql: &str) -> Vec<String> {
        let wrapped = format!("SELECT CAST(t AS VARCHAR) FROM ({sql}) t");
        let mut stmt = store.conn().prepare(&wrapped).unwrap_or_else(|e| panic!("{e}\n{sql}"));
        let mut rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        rows.sort();
        rows
    }

    /// `sql` with every call of `call` (not a call of a longer name ending in it) replaced.
    fn replace_call(sql: &str, call: &str, with: &str) -> String {
        let mut out = String::new();
        let mut rest = sql;
        while let Some(at) = rest.find(call) {
            let named = rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            out.push_str(&rest[..at]);
            out.push_str(if named { call } else { with });
            rest = &rest[at + call.len()..];
        }
        out + rest
    }

    /// Fails with the rows only one side has.
    pub(crate) fn assert_same(new: &[String], old: &[String], what: &str) {
        let only_new: Vec<_> = new.iter().filter(|r| !old.contains(r)).collect();
        let only_old: Vec<_> = old.iter().filter(|r| !new.contains(r)).collect();
        assert!(
            new.len() == old.len() && only_new.is_empty() && only_old.is_empty(),
            "{what}: {} rows against {} before\nonly now: {only_new:#?}\nonly before: {only_old:#?}",
            new.len(),
            old.len()
        );
    }

    /// The panels regrouped to be cheaper over weeks (counted or summed per group before
    /// their labels are made, the rates per minute first, the quantiles from one list, the
    /// correlation's events read twice rather than materialised) give exactly the rows their
    /// earlier text gave (`tests/fixtures/panels_before_regrouping.json`), over live history
    /// and imported flows with missing counters and protocols whose labels collide, over the
    /// whole history and over parts of it.
    #[test]
    fn regrouped_panels_give_what_their_earlier_text_gave() {
        let store = demo_store(3, 30, 33);
        // Flows over the same hours: TCP, UDP and ICMP, some without byte or packet counts, some
        // failed, some in the same minute and window as others.
        store
            .conn()
            .execute_batch(
                "INSERT INTO flows (import_id, ts, uid, orig_h, orig_p, resp_h, resp_p, proto, duration, \
                     orig_bytes, resp_bytes, conn_state, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, source_file) \
                 SELECT 1, (SELECT min(ts) FROM snapshots) + to_seconds(i * 37), 'C' || i, \
                        '10.0.0.' || (i % 3), 40000 + i, '192.0.2.' || (i % 5), [22, 53, 443, 8080][1 + i % 4], \
                        ['tcp', 'udp', 'icmp'][1 + i % 3], CASE WHEN i % 7 = 0 THEN NULL ELSE i * 0.25 END, \
                        CASE WHEN i % 5 = 0 THEN NULL ELSE i * 10 END, i * 3, ['SF', 'S0', 'REJ', 'OTH'][1 + i % 4], \
                        CASE WHEN i % 6 = 0 THEN NULL ELSE i % 9 + 1 END, CASE WHEN i % 4 = 0 THEN NULL ELSE i * 12 END, \
                        i % 11 + 1, i * 8, 'synthetic.pcap' \
                 FROM range(300) r(i)",
            )
            .unwrap();
        let before: std::collections::BTreeMap<String, String> =
            serde_json::from_str(include_str!("../tests/fixtures/panels_before_regrouping.json")).unwrap();
        let (views, _) = views().unwrap();
        let newest = newest(&store);
        let minutes = minutes;
        let ranges = [
            (newest - minutes(15), newest),
            (
                newest - minutes(100) + chrono::Duration::milliseconds(7_500),
                newest - minutes(40),
            ),
            (
                parse_time("1970-01-01T00:00:00").unwrap(),
                parse_time("9999-12-31T23:59:59").unwrap(),
            ),
        ];
        assert!(before.len() >= 7);
        for (name, old) in &before {
            let (view, panel) = name.split_once('/').unwrap();
            let now = &views
                .iter()
                .find(|v| v.id == view)
                .and_then(|v| v.panels.iter().find(|p| p.id == panel))
                .unwrap_or_else(|| panic!("{name} is gone"))
                .sql;
            assert_ne!(now, old, "{name} was not regrouped");
            for &(since, until) in &ranges {
                let was = sorted_rows(&store, &panel_sql(old, since, until));
                assert!(
                    !was.is_empty() || since > newest - minutes(20),
                    "{name}: no rows to compare"
                );
                assert_same(
                    &sorted_rows(&store, &panel_sql(now, since, until)),
                    &was,
                    &format!("{name} over {since} .. {until}"),
                );
            }
        }
    }

    /// Regression (review): with every `tcp_transitions` row removed (retention on a quiet host),
    /// `min(ts)` of the table is NULL and the stuck-connections macro found nothing where the
    /// view still showed the connection stuck in SYN_SENT.
    #[test]
    fn stuck_connections_are_found_when_no_transition_is_left() {
        use crate::capture::{Proto, Snapshot, SocketRecord};
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let mut state = store.host_state("h").unwrap();
        let syn = SocketRecord {
            proto: Proto::Tcp,
            local_addr: "10.0.0.2".parse().unwrap(),
            local_port: 40000,
            remote_addr: Some("10.0.0.9".parse().unwrap()),
            remote_port: Some(8443),
            state: "SYN_SENT".into(),
            pids: vec![300],
            uid: Some(0),
            inode: Some(77),
            recv_queue: Some(0),
            send_queue: Some(0),
            tcp: None,
        };
        for i in 0..3 {
            let snapshot = Snapshot {
                ts: chrono::DateTime::from_timestamp(1_800_000_000 + i * 10, 0).unwrap(),
                host: "h".into(),
                collect_ms: None,
                sockets: vec![syn.clone()],
                processes: vec![],
                interfaces: vec![],
                gaps: vec![],
            };
            store.append_snapshot(&snapshot, "fixture", &mut state).unwrap();
        }
        store.conn().execute_batch("DELETE FROM tcp_transitions").unwrap();
        let (since, until) = (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        );
        let (call, view) = RANGE_MACROS
            .iter()
            .copied()
            .find(|(call, _)| call.starts_with("tcp_stuck_connections_overlapping"))
            .unwrap();
        let new = sorted_rows(&store, &panel_sql(&format!("SELECT * FROM {call}"), since, until));
        let old = sorted_rows(&store, &panel_sql(&format!("SELECT * FROM {view}"), since, until));
        assert_eq!(old.len(), 1, "{old:?}");
        assert_same(&new, &old, "stuck connections with no transition left");
    }

    /// The range macros give the same rows as the whole-history views filtered afterwards, and
    /// so every panel that reads them the same numbers as before (issue 18: a panel reads only
    /// its range): over ranges at the newest end, in the middle, and the whole history.
    #[test]
    fn range_macros_give_what_the_views_give() {
        let store = demo_store(6, 30, 7);
        let newest = newest(&store);
        let minutes = minutes;
        let ranges = [
            (newest - minutes(15), newest),
            (newest - minutes(60), newest),
            (newest - minutes(24 * 60), newest),
            (
                newest - minutes(200) + chrono::Duration::milliseconds(7_500),
                newest - minutes(90),
            ),
            (
                parse_time("2000-01-01T00:00:00").unwrap(),
                parse_time("2100-01-01T00:00:00").unwrap(),
            ),
        ];
        // The macros themselves, row for row (every column).
        // Means and deviations are sums of floats, whose last bit depends on the order rows are
        // added in: those are compared to 9 decimals.
        let columns = |call: &str| {
            if call.starts_with("flow_features") {
                "* REPLACE (round(remote_port_mean, 9) AS remote_port_mean, \
                 round(remote_port_std, 9) AS remote_port_std, round(mean_duration_s, 9) AS mean_duration_s)"
            } else {
                "*"
            }
        };
        let mut nonempty = 0;
        for (call, view) in RANGE_MACROS {
            for &(since, until) in &ranges {
                let select = |from: &str| panel_sql(&format!("SELECT {} FROM {from}", columns(call)), since, until);
                let new = sorted_rows(&store, &select(call));
                let old = sorted_rows(&store, &select(view));
                assert_same(&new, &old, &format!("{call} over {since} .. {until}"));
                nonempty += usize::from(!new.is_empty());
            }
        }
        // Every macro but the stuck connections (rare in a demo) and geo (no lookups) has rows
        // in some range.
        assert!(nonempty >= 14 * 4, "{nonempty} non-empty (macro, range) pairs");
        // Every panel that reads a macro, against its text with the view in its place.
        let (views, _) = views().unwrap();
        let mut panels = Vec::new();
        for view in &views {
            for panel in &view.panels {
                let reference = RANGE_MACROS
                    .iter()
                    .fold(panel.sql.clone(), |sql, (call, view)| replace_call(&sql, call, view));
                if reference == panel.sql {
                    continue;
                }
                for &(since, until) in &ranges {
                    assert_same(
                        &sorted_rows(&store, &panel_sql(&panel.sql, since, until)),
                        &sorted_rows(&store, &panel_sql(&reference, since, until)),
                        &format!("{}/{} over {since} .. {until}", view.id, panel.id),
                    );
                }
                panels.push(format!("{}/{}", view.id, panel.id));
            }
        }
        for expected in [
            "overview/kpis",
            "tcp/paths",
            "tcp/stuck",
            "statistics/correlation",
            "statistics/rate_bytes",
            "tcp/states_over_time",
            "tcp/state_mean",
            "overview/sockets_over_time",
            "connections/opened",
            "connections/table",
            "connections/listeners",
            "geography/countries",
            "geography/addresses",
            "behaviour/beacon_gaps",
            "bandwidth/sent",
            "bandwidth/heatmap",
            "bandwidth/interfaces",
        ] {
            assert!(
                panels.iter().any(|p| p == expected),
                "{expected} reads no range macro: {panels:?}"
            );
        }
    }

    /// Over more connections than it may group, the correlation heatmap is computed from a fixed
    /// sample of the flow windows (issue 18: within a second over the whole history; say when
    /// sampled): every window kept is the unsampled row for that window, the same windows come
    /// every time, the counts behind it are right, and the panel says what it drew from.
    #[test]
    fn the_correlation_sample_keeps_whole_windows_and_says_so() {
        let store = demo_store(4, 30, 13);
        let (since, until) = (
            parse_time("2000-01-01T00:00:00").unwrap(),
            parse_time("2100-01-01T00:00:00").unwrap(),
        );
        let one = |sql: &str| -> i64 {
            store
                .conn()
                .query_row(&panel_sql(sql, since, until), [], |r| r.get(0))
                .unwrap()
        };
        let connections =
            one("SELECT sum(connection_count)::BIGINT FROM flow_features_between(INTERVAL 5 MINUTE, :since, :until)");
        let windows = one("SELECT count(*) FROM flow_features_between(INTERVAL 5 MINUTE, :since, :until)");
        assert!(windows > 30, "{windows} windows");
        let at_most = connections / 3;
        let sampled = format!("flow_features_sampled(INTERVAL 5 MINUTE, :since, :until, {at_most})");
        let rounded = "* EXCLUDE (one_in, connections_of) REPLACE (round(remote_port_mean, 9) AS remote_port_mean, \
                       round(remote_port_std, 9) AS remote_port_std, round(mean_duration_s, 9) AS mean_duration_s)";
        let kept = sorted_rows(
            &store,
            &panel_sql(&format!("SELECT {rounded} FROM {sampled}"), since, until),
        );
        let full = sorted_rows(
            &store,
            &panel_sql(
                &format!(
                    "SELECT {} FROM flow_features_between(INTERVAL 5 MINUTE, :since, :until)",
                    rounded.replace("EXCLUDE (one_in, connections_of) ", "")
                ),
                since,
                until,
            ),
        );
        assert!(
            !kept.is_empty() && kept.len() < full.len() / 2,
            "{} of {} windows",
            kept.len(),
            full.len()
        );
        for row in &kept {
            assert!(full.contains(row), "a sampled window differs from its full row: {row}");
        }
        assert_eq!(
            kept,
            sorted_rows(
                &store,
                &panel_sql(&format!("SELECT {rounded} FROM {sampled}"), since, until)
            ),
            "the same range gives the same sample"
        );
        assert_eq!(
            one(&format!("SELECT any_value(one_in) FROM {sampled}")),
            (connections + at_most - 1) / at_most
        );
        assert_eq!(
            one(&format!("SELECT any_value(connections_of) FROM {sampled}")),
            connections
        );
        // The panel says what it drew from when sampled, and nothing when not.
        let (views, _) = views().unwrap();
        let correlation = views
            .iter()
            .flat_map(|v| &v.panels)
            .find(|p| p.id == "correlation")
            .unwrap();
        assert!(correlation.sql.contains("100000)"));
        let run = |sql: &str| {
            let mut stmt = store.conn().prepare(&panel_sql(sql, since, until)).unwrap();
            let arrow = stmt.query_arrow([]).unwrap();
            let schema = arrow.get_schema();
            let mut t = crate::output::JsonTable::collect(&schema, arrow.map(Ok), 5000).unwrap();
            let sampled = take_sampled(&mut t.columns, &mut t.types, &mut t.rows);
            (t, sampled)
        };
        let (whole, none) = run(&correlation.sql);
        assert_eq!(none, None);
        assert_eq!(whole.columns, ["x", "y", "v"]);
        assert_eq!(whole.rows.len(), 49);
        let (part, said) = run(&correlation.sql.replace("100000)", &format!("{at_most})")));
        let said = said.expect("a sampled heatmap says so");
        assert_eq!((said.of, said.what), (connections, "connections"));
        assert!(said.shown > 0 && said.shown < connections, "{said:?}");
        // The panel samples in its own SQL (from the shared events): the same windows as
        // flow_features_sampled, so the same connections behind them.
        assert_eq!(
            said.shown,
            one(&format!("SELECT sum(connection_count)::BIGINT FROM {sampled}")),
            "the panel's sample is flow_features_sampled's"
        );
        assert_eq!(part.columns, ["x", "y", "v"]);
        assert!(part.rows.iter().all(|r| r.len() == 3));
    }

    /// Ranges of days read the hourly rollups (issue 18): what a panel sums from the rollups
    /// equals what it sums from the raw rows, per process, interface and hour, and the part of
    /// the range not rolled up (a partial first hour, the newest hour) is read raw.
    #[test]
    fn rolled_up_panels_give_the_raw_totals() {
        let store = demo_store(6, 30, 11);
        let keep_all = crate::retention::RetainRequest {
            raw: None,
            rollups: None,
            bucket: crate::retention::RetainRequest::DEFAULT_BUCKET,
            batch: crate::retention::RetainRequest::DEFAULT_BATCH,
        };
        crate::retention::retain(&store, &keep_all, chrono::Utc::now(), &|| false, &|| ()).unwrap();
        let (first, newest) = first_and_newest(&store);
        let rolled_of = |since: NaiveDateTime, until: NaiveDateTime| {
            let row = store
                .conn()
                .query_row(ROLLED_SQL, duckdb::params![since, until], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap();
            rolled_part(row)
        };
        let minutes = minutes;
        let ranges = [
            (
                parse_time("2000-01-01T00:00:00").unwrap(),
                parse_time("2100-01-01T00:00:00").unwrap(),
            ),
            (first + minutes(37), newest - minutes(20)),
        ];
        for (since, until) in ranges {
            let rolled = rolled_of(since, until).expect("complete hours are rolled up");
            assert!(rolled.buckets >= 3 && rolled.bucket_s == 3600, "{rolled:?}");
            assert!(
                rolled.from >= since && rolled.to <= until && rolled.to > rolled.from,
                "{rolled:?}"
            );
            let what = format!("{since} .. {until}, rolled {} .. {}", rolled.from, rolled.to);
            for sums in [
                "SELECT process, date_trunc('hour', ts), sum(bytes_sent), sum(bytes_received) \
                 FROM connection_traffic_rolled(:since, :rolled_from, :rolled_to, :until) GROUP BY ALL",
                "SELECT name, date_trunc('hour', ts), sum(rx_bytes), sum(tx_bytes) \
                 FROM interface_traffic_rolled(:since, :rolled_from, :rolled_to, :until) GROUP BY ALL",
                "SELECT date_trunc('hour', ts), sum(sockets) \
                 FROM socket_directions_rolled(:since, :rolled_from, :rolled_to, :until) GROUP BY ALL",
                "SELECT host, state, date_trunc('hour', ts), sum(sockets), sum(snapshots) \
                 FROM tcp_state_counts_rolled(:since, :rolled_from, :rolled_to, :until) GROUP BY ALL",
                "SELECT snapshot_count_rolled(:since, :rolled_from, :rolled_to, :until) AS snapshots, \
                        (SELECT count(*) FROM snapshots WHERE ts BETWEEN :since AND :until) AS raw \
                 FROM range(5)",
            ] {
                let raw = sorted_rows(&store, &panel_sql(sums, since, until));
                let from_rollups = sorted_rows(&store, &panel_sql_rolled(sums, since, until, Some(&rolled)));
                assert!(raw.len() >= 5, "{sums}: {raw:?}");
                assert_same(&from_rollups, &raw, &format!("{sums} over {what}"));
            }
            // The rollups really are read: the rolled part without them is empty.
            let traffic_in = |sql: &str| -> i64 { store.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
            let rolled_rows = traffic_in(&panel_sql_rolled(
                "SELECT count(*) FROM connection_traffic_rolled(:since, :rolled_from, :rolled_to, :until) \
                 WHERE snapshot_id IS NULL",
                since,
                until,
                Some(&rolled),
            ));
            assert!(rolled_rows > 0, "{what}: no rollup rows read");
            // TCP states: per hour the rolled rows are one per host and state, not one per snapshot.
            let state_rows = |r: Option<&Rolled>| {
                traffic_in(&panel_sql_rolled(
                    "SELECT count(*) FROM tcp_state_counts_rolled(:since, :rolled_from, :rolled_to, :until)",
                    since,
                    until,
                    r,
                ))
            };
            assert!(
                state_rows(Some(&rolled)) * 3 < state_rows(None),
                "{what}: TCP state rows not read from the rollups"
            );
            // Every panel that reads the rollups runs on them, and the bandwidth table's bytes
            // per process are the raw ones.
            let (views, _) = views().unwrap();
            for view in &views {
                for panel in view.panels.iter().filter(|p| reads_rollups(&p.sql)) {
                    let rows = sorted_rows(&store, &panel_sql_rolled(&panel.sql, since, until, Some(&rolled)));
                    assert!(!rows.is_empty(), "{}/{} over {what}: no rows", view.id, panel.id);
                }
            }
            let per_process = "SELECT process, bytes_sent, bytes_received FROM ({panel})";
            let panel = panel_of(&views, "bandwidth", "processes");
            let per_process = per_process.replace("{panel}", panel);
            assert_same(
                &sorted_rows(&store, &panel_sql_rolled(&per_process, since, until, Some(&rolled))),
                &sorted_rows(&store, &panel_sql(&per_process, since, until)),
                &format!("bandwidth/processes over {what}"),
            );
            // The mean sockets per state are the raw ones, to the panel's last digit.
            let state_mean = panel_of(&views, "tcp", "state_mean");
            let raw_state_mean = sorted_rows(&store, &panel_sql(state_mean, since, until));
            assert!(raw_state_mean.len() >= 2, "{raw_state_mean:?}");
            assert_same(
                &sorted_rows(&store, &panel_sql_rolled(state_mean, since, until, Some(&rolled))),
                &raw_state_mean,
                &format!("tcp/state_mean over {what}"),
            );
            // Stuck connections (the demo's stuck CLOSE_WAIT and its scan's SYN_SENT probes): the
            // raw rows, row for row, with their sightings read from the rollups.
            let stuck = "SELECT * FROM tcp_stuck_connections_rolled(:since, :rolled_from, :rolled_to, :until)";
            let raw_stuck = sorted_rows(&store, &panel_sql(stuck, since, until));
            assert!(!raw_stuck.is_empty(), "{what}: no stuck connection in the demo");
            assert_same(
                &sorted_rows(&store, &panel_sql_rolled(stuck, since, until, Some(&rolled))),
                &raw_stuck,
                &format!("tcp_stuck_connections_rolled over {what}"),
            );
            assert!(traffic_in("SELECT count(*) FROM tcp_stuck_rollups") > 0);
            // TCP paths: the raw rows, row for row, those of connections gone in rolled hours
            // read from the rollups.
            let paths = "SELECT * FROM tcp_connection_transitions_rolled(:since, :rolled_from, :rolled_to, :until)";
            let raw_paths = sorted_rows(&store, &panel_sql(paths, since, until));
            assert!(raw_paths.len() > 10, "{what}: {} paths", raw_paths.len());
            assert_same(
                &sorted_rows(&store, &panel_sql_rolled(paths, since, until, Some(&rolled))),
                &raw_paths,
                &format!("tcp_connection_transitions_rolled over {what}"),
            );
            let from_rollups = traffic_in(&panel_sql_rolled(
                "SELECT count(*) FROM tcp_path_rollups WHERE bucket_start < :rolled_to",
                since,
                until,
                Some(&rolled),
            ));
            assert!(
                from_rollups * 2 > raw_paths.len() as i64,
                "{what}: {from_rollups} paths rolled"
            );
        }
        // A day or less reads raw rows, as does a range with nothing rolled up.
        let day = (newest - chrono::Duration::hours(24), newest);
        let row = store
            .conn()
            .query_row(ROLLED_SQL, duckdb::params![day.0, day.1], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert!(rolled_part(row).is_some());
        assert_eq!(rolled_from_row(day.0, day.1, row), None);
        let later = (
            newest + chrono::Duration::hours(1),
            newest + chrono::Duration::hours(50),
        );
        assert_eq!(rolled_of(later.0, later.1), None);
    }

    /// Overview's figures over a range of days count the hours retention deleted: they read raw
    /// rows only, so over "All" they counted what retention had kept (connections, bytes,
    /// processes, listening ports and snapshots alike).
    #[test]
    fn overview_figures_count_what_retention_deleted() {
        use chrono::DurationRound;
        let store = demo_store(6, 30, 11);
        let (first, newest) = first_and_newest(&store);
        let (views, _) = views().unwrap();
        let kpis = panel_of(&views, "overview", "kpis");
        assert!(reads_rollups(kpis));
        let hour = chrono::Duration::hours(1);
        let first_hour = first.and_utc().duration_trunc(hour).unwrap().naive_utc();
        let ranges = [
            (
                parse_time("2000-01-01T00:00:00").unwrap(),
                parse_time("2100-01-01T00:00:00").unwrap(),
            ),
            // From an hour's start: no raw part before the rolled one.
            (first_hour + hour, newest - minutes(20)),
        ];
        let before: Vec<Vec<String>> = ranges
            .iter()
            .map(|&(since, until)| sorted_rows(&store, &panel_sql(kpis, since, until)))
            .collect();
        let count = |sql: &str| -> i64 { store.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
        let lifetimes = count("SELECT count(*) FROM connection_lifetimes");
        let keep_three_hours = crate::retention::RetainRequest {
            raw: Some(Duration::from_secs(3 * 3600)),
            rollups: None,
            bucket: crate::retention::RetainRequest::DEFAULT_BUCKET,
            batch: crate::retention::RetainRequest::DEFAULT_BATCH,
        };
        crate::retention::retain(&store, &keep_three_hours, newest.and_utc(), &|| false, &|| ()).unwrap();
        assert!(
            count("SELECT count(*) FROM connection_lifetimes") < lifetimes,
            "retention deleted no lifetime"
        );
        assert!(
            count("SELECT count(*) FROM connections_without_lifetime_rolled(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01') WHERE direction = 'internal'") > 0,
            "the demo has no internal connection among those retention deleted"
        );
        for ((since, until), before) in ranges.into_iter().zip(before) {
            let row = store
                .conn()
                .query_row(ROLLED_SQL, duckdb::params![since, until], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap();
            // rolled_part, not rolled_from_row: the second range is shorter than a day.
            let rolled = rolled_part(row).expect("a range with rolled hours");
            let what = format!("overview/kpis over {since} .. {until}");
            assert_same(
                &sorted_rows(&store, &panel_sql_rolled(kpis, since, until, Some(&rolled))),
                &before,
                &what,
            );
            // Raw rows alone no longer give them: the test reads what retention deleted.
            assert_ne!(sorted_rows(&store, &panel_sql(kpis, since, until)), before, "{what}");
        }
    }

    /// Connections between two local processes, seen from both ends, are counted as
    /// `connection_events` counts them whichever ends retention deleted: once when one end
    /// accepted on a port this host listens on (both ends gone, only the opener gone, only the
    /// accepting end gone), twice when neither end listens.
    #[test]
    fn internal_connections_without_lifetimes_are_counted_as_before() {
        use crate::capture::{Proto, Snapshot, SocketRecord};
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let socket = |local: u16, remote: Option<u16>, state: &'static str| SocketRecord {
            proto: Proto::Tcp,
            local_addr: loopback,
            local_port: local,
            remote_addr: remote.map(|_| loopback),
            remote_port: remote,
            state: state.into(),
            pids: vec![],
            uid: None,
            inode: Some(u64::from(local) * 100_000 + u64::from(remote.unwrap_or(0))),
            recv_queue: None,
            send_queue: None,
            tcp: None,
        };
        let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut state = store.host_state("h").unwrap();
        // Three hours a snapshot a minute; the connections of the first hour end in it.
        for minute in 0..180 {
            let early = minute < 50;
            let mut sockets = vec![socket(5432, None, "LISTEN")];
            // both ends gone: opener 40001, accepted on 5432
            if early {
                sockets.extend([
                    socket(40001, Some(5432), "ESTABLISHED"),
                    socket(5432, Some(40001), "ESTABLISHED"),
                ]);
            }
            // only the opener gone
            sockets.push(socket(5432, Some(40002), "ESTABLISHED"));
            if early {
                sockets.push(socket(40002, Some(5432), "ESTABLISHED"));
            }
            // only the accepting end gone
            sockets.push(socket(40003, Some(5432), "ESTABLISHED"));
            if early {
                sockets.push(socket(5432, Some(40003), "ESTABLISHED"));
            }
            // neither end listens: two connections to connection_events
            if early {
                sockets.extend([
                    socket(6000, Some(6001), "ESTABLISHED"),
                    socket(6001, Some(6000), "ESTABLISHED"),
                ]);
            }
            let snapshot = Snapshot {
                ts: start + chrono::Duration::minutes(minute),
                host: "h".into(),
                collect_ms: None,
                sockets,
                processes: vec![],
                interfaces: vec![],
                gaps: vec![],
            };
            store.append_snapshot(&snapshot, "fixture", &mut state).unwrap();
        }
        let count = |sql: &str| -> i64 { store.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
        let all = "TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01'";
        let events = format!("SELECT count(*) FROM connection_events_overlapping({all}) WHERE source = 'connections'");
        let before = count(&events);
        // 1 + 1 + 1 + 2, and the listener is not a connection.
        assert_eq!(before, 5);
        let keep_an_hour = crate::retention::RetainRequest {
            raw: Some(Duration::from_secs(3600)),
            rollups: None,
            bucket: crate::retention::RetainRequest::DEFAULT_BUCKET,
            batch: crate::retention::RetainRequest::DEFAULT_BATCH,
        };
        let newest = start + chrono::Duration::minutes(179);
        crate::retention::retain(&store, &keep_an_hour, newest, &|| false, &|| ()).unwrap();
        let gone = format!("SELECT count(*) FROM connections_without_lifetime_rolled({all})");
        assert!(count(&events) < before, "retention deleted no lifetime");
        assert_eq!(count(&events) + count(&gone), before);
        // Each case: which end the macro gives.
        let gone_ports = |local: u16| {
            count(&format!(
                "SELECT count(*) FROM connections_without_lifetime_rolled({all}) WHERE local_port = {local}"
            ))
        };
        assert_eq!(
            (
                gone_ports(40001),
                gone_ports(40002),
                gone_ports(6000) + gone_ports(6001),
                // The accepting ends: counted with their opener, or by connection_events.
                gone_ports(5432)
            ),
            (1, 0, 2, 0)
        );
        // With nothing rolled (every range of a day or less, which the live page asks for every
        // few seconds) it reads no table: its first version scanned every lifetime and rollup.
        let plan: String = store
            .conn()
            .query_row(
                "EXPLAIN SELECT count(*) FROM connections_without_lifetime_rolled(\
                 TIMESTAMP '2026-12-01 02:00:00', TIMESTAMP '2026-12-01 02:00:00')",
                [],
                |r| r.get(1),
            )
            .unwrap();
        assert!(!plan.contains("Table:") && !plan.contains("SCAN"), "{plan}");
    }

    /// A plot that shows a sample says so (issue 18: "say when a plot is sampled"): the
    /// `sampled_from` column is taken off and counts the rows before the LIMIT; every panel that
    /// draws at most a fixed number of points has it.
    #[test]
    fn a_sampled_plot_says_of_how_many() {
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        let table = |sql: &str| {
            let mut stmt = store.conn().prepare(sql).unwrap();
            let arrow = stmt.query_arrow([]).unwrap();
            let schema = arrow.get_schema();
            crate::output::JsonTable::collect(&schema, arrow.map(Ok), 5000).unwrap()
        };
        let sample = |n: i64| {
            format!(
                "SELECT range AS x, range * 2 AS y, count(*) OVER () AS sampled_from FROM range({n}) \
                 ORDER BY hash(range) LIMIT 4000"
            )
        };
        let mut t = table(&sample(6000));
        let sampled = take_sampled(&mut t.columns, &mut t.types, &mut t.rows);
        assert_eq!(
            sampled,
            Some(Sampled {
                shown: 4000,
                of: 6000,
                what: "points drawn"
            })
        );
        assert_eq!(t.columns, ["x", "y"]);
        assert!(t.rows.iter().all(|r| r.len() == 2) && t.types.len() == 2);
        let mut all = table(&sample(300));
        assert_eq!(take_sampled(&mut all.columns, &mut all.types, &mut all.rows), None);
        assert_eq!(
            all.columns,
            ["x", "y"],
            "the column goes even when nothing was left out"
        );
        let mut plain = table("SELECT 1 AS x, 2 AS y");
        assert_eq!(
            take_sampled(&mut plain.columns, &mut plain.types, &mut plain.rows),
            None
        );
        assert_eq!(plain.columns, ["x", "y"]);
        let (views, _) = views().unwrap();
        for view in &views {
            for panel in &view.panels {
                if panel.sql.contains("LIMIT 4000") || panel.sql.contains("LIMIT 3000") {
                    assert!(
                        panel.sql.contains("count(*) OVER () AS sampled_from\n"),
                        "{}/{} draws a sample without saying so",
                        view.id,
                        panel.id
                    );
                }
            }
        }
    }
}
