//! Run ids: one sequence (`run_ids`) for every run table (model_runs, detector_runs, geo_runs,
//! retention_runs, explain_runs), so a run id names one run; and `run_outputs`, the record of which result
//! tables an analysis run wrote, which the `latest_*` views of analysis results read.
//!
//! Touches only the sequence, `run_outputs`, and reads the run tables' ids. Knows no source.

use duckdb::Connection;

use crate::error::{Error, Result};

/// The highest run id of any run table: ids from before one sequence was shared (schema 15)
/// were counted per table, and the sequence of an upgraded file starts at 1. (explain_runs came
/// after the sequence: its ids never need passing.)
const HIGHEST_RUN_ID: &str = "SELECT greatest(\
    (SELECT coalesce(max(run_id), 0) FROM model_runs), \
    (SELECT coalesce(max(run_id), 0) FROM detector_runs), \
    (SELECT coalesce(max(run_id), 0) FROM geo_runs), \
    (SELECT coalesce(max(run_id), 0) FROM retention_runs))";

/// A new run id, above every id any run table holds. The sequence is not transactional, so
/// concurrent runs on other connections never get the same id, and an id taken by a run that
/// rolls back is not reused.
pub fn next_run_id(conn: &Connection) -> Result<i64> {
    let (id, highest): (i64, i64) = conn
        .query_row(&format!("SELECT nextval('run_ids'), ({HIGHEST_RUN_ID})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(Error::sql)?;
    if id > highest {
        return Ok(id);
    }
    // Once per upgraded file: move the sequence past the ids counted before it was shared.
    conn.query_row(
        "SELECT max(nextval('run_ids')) FROM range(?)",
        [highest - id + 1],
        |r| r.get(0),
    )
    .map_err(Error::sql)
}

/// Records that run `run_id` wrote `table` (possibly no rows): the `latest_*` view of `table`
/// then shows this run. `table` is one of netlens's own result tables, never user input.
pub fn record_output(conn: &Connection, run_id: i64, table: &str) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO run_outputs SELECT ?, ?, count(*) FROM {} WHERE run_id = ?",
            crate::store::quote_ident(table)
        ),
        duckdb::params![run_id, table, run_id],
    )
    .map_err(Error::sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Location, Store};

    #[test]
    fn ids_are_shared_and_pass_every_older_id() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let conn = store.conn();
        let first = next_run_id(conn).unwrap();
        let second = next_run_id(conn).unwrap();
        assert_eq!(second, first + 1);
        // Ids counted per table before the sequence was shared: the next one passes them all.
        conn.execute_batch(
            "INSERT INTO retention_runs VALUES (40, now()::TIMESTAMP, now()::TIMESTAMP, NULL, NULL, 0, 0, 0, 0)",
        )
        .unwrap();
        assert_eq!(next_run_id(conn).unwrap(), 41);
        assert_eq!(next_run_id(conn).unwrap(), 42);
    }

    #[test]
    fn an_output_with_no_rows_is_recorded() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let conn = store.conn();
        record_output(conn, 7, "anomaly_scores").unwrap();
        record_output(conn, 7, "anomaly_scores").unwrap();
        let rows: (i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(rows) FROM run_outputs WHERE run_id = 7 AND table_name = 'anomaly_scores'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(rows, (1, 0));
    }
}
