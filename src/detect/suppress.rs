//! Analysts' suppressions: a false_positive mark (`netlens feedback`, the dashboard) on a
//! detector row says "known and benign", and later runs store rows with the same suppression key
//! as suppressed (`suppressed`, `suppressed_by`, migration 32). Nothing is hidden: the row is
//! stored as the detector judged it, only not counted as an alarm. A newer true_positive mark on
//! the key lifts the suppression for later runs; rows already stored are never rewritten.
//!
//! Which mark holds for which key is SQL's job (the `detector_suppressions` view: it reads marks
//! in every form `feedback.row_key` takes); this module builds each row's key in the same form and
//! looks it up. The keys are run-independent on purpose, so that one mark covers every later run:
//! - port_scans: `scanner|kind|target|target_port|proto`, the row's own key (a vulnerability
//!   scanner marked benign against one host is not thereby allowed to scan another);
//! - beacons: `src|dst|dst_port|proto`, the row's own key;
//! - bursts: `entity_kind|entity|metric`, without `start_ts` (a routine job bursts at new times);
//! - long_connections: `src|dst|dst_port|proto`, the service (an `event_id` never recurs).
//!
//! A NULL column is an empty field, as the dashboard writes row keys. May read the store's
//! `detector_suppressions` view; writes nothing.

use std::collections::HashMap;

use duckdb::Connection;

use crate::error::{Error, Result};

/// The suppressed keys of one detector table, each with the mark that suppresses it.
#[derive(Debug, Default)]
pub struct Suppressions {
    by_key: HashMap<String, i64>,
    /// Rows looked up and found suppressed, for the summary.
    pub suppressed: i64,
}

impl Suppressions {
    /// The suppressions in force for `table` (a detector's table) as the store has them now.
    pub fn load(conn: &Connection, table: &str) -> Result<Self> {
        let mut stmt = conn
            .prepare("SELECT suppress_key, feedback_id FROM detector_suppressions WHERE subject = ?")
            .map_err(Error::sql)?;
        let by_key = stmt
            .query_map([table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(Error::sql)?
            .collect::<std::result::Result<HashMap<_, _>, _>>()
            .map_err(Error::sql)?;
        Ok(Suppressions { by_key, suppressed: 0 })
    }

    /// The mark that suppresses a row with `key` (None: an alarm as the detector judged it),
    /// counting the suppressed rows.
    pub fn check(&mut self, key: &str) -> Option<i64> {
        self.check_row(key, true)
    }

    /// As [`Self::check`] for a table that also stores rows the detector did not flag (beacons'
    /// irregular pairs): the mark applies to every row of the key, but only a row that would
    /// have been an alarm (`alarm`) counts as suppressed in the summary.
    pub fn check_row(&mut self, key: &str, alarm: bool) -> Option<i64> {
        let by = self.by_key.get(key).copied();
        self.suppressed += i64::from(alarm && by.is_some());
        by
    }

    /// `", N suppressed by analysts' marks"` when rows were suppressed, else nothing: the end of
    /// a run's summary line.
    pub fn summary(&self) -> String {
        if self.suppressed == 0 {
            String::new()
        } else {
            format!(", {} suppressed by analysts' marks", self.suppressed)
        }
    }
}

/// Fields joined with `|`, a missing one as an empty field.
fn join(fields: &[Option<&str>]) -> String {
    fields.iter().map(|f| f.unwrap_or("")).collect::<Vec<_>>().join("|")
}

/// A port_scans row's key: `scanner|kind|target|target_port|proto`.
pub fn scan_key(scanner: &str, kind: &str, target: Option<&str>, target_port: Option<i32>, proto: &str) -> String {
    let port = target_port.map(|p| p.to_string());
    join(&[Some(scanner), Some(kind), target, port.as_deref(), Some(proto)])
}

/// A beacons or long_connections row's key: `src|dst|dst_port|proto`.
pub fn pair_key(src: &str, dst: &str, dst_port: Option<i32>, proto: &str) -> String {
    let port = dst_port.map(|p| p.to_string());
    join(&[Some(src), Some(dst), port.as_deref(), Some(proto)])
}

/// A bursts row's key: `entity_kind|entity|metric` (any start).
pub fn burst_key(entity_kind: &str, entity: &str, metric: &str) -> String {
    join(&[Some(entity_kind), Some(entity), Some(metric)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::{record, FeedbackRequest, Label};
    use crate::store::{Location, Store};

    fn mark(store: &Store, subject: &str, run_id: Option<i64>, row_key: &str, label: Label) -> i64 {
        let m = FeedbackRequest {
            subject: subject.into(),
            run_id,
            row_key: row_key.into(),
            label,
            note: Some("hourly backup".into()),
            analyst: Some("alice".into()),
        };
        record(store, &m, chrono::Utc::now()).unwrap()
    }

    fn suppressed_by(store: &Store, table: &str, key: &str) -> Option<i64> {
        Suppressions::load(store.conn(), table).unwrap().check(key)
    }

    #[test]
    fn keys_are_written_as_the_dashboard_writes_row_keys() {
        assert_eq!(
            pair_key("10.0.0.5", "10.0.0.9", Some(873), "tcp"),
            "10.0.0.5|10.0.0.9|873|tcp"
        );
        assert_eq!(pair_key("10.0.0.5", "10.0.0.9", None, "tcp"), "10.0.0.5|10.0.0.9||tcp");
        assert_eq!(
            scan_key("10.0.0.9", "address_scan", None, Some(22), "tcp"),
            "10.0.0.9|address_scan||22|tcp"
        );
        assert_eq!(
            scan_key("10.0.0.9", "port_scan", Some("10.0.0.1"), None, "tcp"),
            "10.0.0.9|port_scan|10.0.0.1||tcp"
        );
        assert_eq!(burst_key("process", "rsync", "bytes"), "process|rsync|bytes");
    }

    #[test]
    fn the_newest_mark_on_a_key_decides_and_a_true_positive_lifts_it() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let rsync = "10.1.0.5|10.1.0.2|873|tcp";
        assert_eq!(suppressed_by(&store, "beacons", rsync), None);
        // A mark on a row of one run holds for the key in every later run.
        let fp = mark(&store, "beacons", Some(7), rsync, Label::FalsePositive);
        assert_eq!(suppressed_by(&store, "beacons", rsync), Some(fp));
        assert_eq!(
            suppressed_by(&store, "beacons", "10.1.0.5|10.1.0.2|22|tcp"),
            None,
            "another port"
        );
        assert_eq!(suppressed_by(&store, "port_scans", rsync), None, "another detector");
        mark(&store, "beacons", None, rsync, Label::TruePositive);
        assert_eq!(
            suppressed_by(&store, "beacons", rsync),
            None,
            "a newer true_positive lifts it"
        );
        let again = mark(&store, "beacons", None, rsync, Label::FalsePositive);
        assert_eq!(suppressed_by(&store, "beacons", rsync), Some(again));
    }

    #[test]
    fn each_detector_reads_its_marks_by_its_key() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let scan = mark(
            &store,
            "port_scans",
            None,
            "10.0.0.9|address_scan||22|tcp",
            Label::FalsePositive,
        );
        // A burst's start does not matter: the entity's bursts of that metric at any time.
        let burst = mark(
            &store,
            "bursts",
            Some(3),
            "process|rsync|bytes|2026-12-06 03:00:00",
            Label::FalsePositive,
        );
        // A long connection's event id names the service through its stored row.
        store
            .conn()
            .execute_batch(
                "INSERT INTO long_connections (run_id, source, event_id, proto, src, src_port, dst, dst_port, \
                 start_ts, end_ts, duration_s, open, grade, score) VALUES \
                 (4, 'connections', '812', 'tcp', '10.1.0.5', 50000, '10.1.0.7', 5432, \
                  TIMESTAMP '2026-12-06 00:00:00', TIMESTAMP '2026-12-06 05:00:00', 18000, false, 'long', 0.2)",
            )
            .unwrap();
        let long = mark(&store, "long_connections", None, "812", Label::FalsePositive);
        let by_key = mark(
            &store,
            "long_connections",
            None,
            "10.1.0.5|10.1.0.8||udp",
            Label::FalsePositive,
        );
        let mut scans = Suppressions::load(store.conn(), "port_scans").unwrap();
        assert_eq!(
            scans.check(&scan_key("10.0.0.9", "address_scan", None, Some(22), "tcp")),
            Some(scan)
        );
        assert_eq!(
            scans.check(&scan_key("10.0.0.9", "address_scan", None, Some(23), "tcp")),
            None
        );
        assert_eq!(
            scans.check(&scan_key("10.0.0.8", "address_scan", None, Some(22), "tcp")),
            None
        );
        assert_eq!(scans.suppressed, 1);
        let mut bursts = Suppressions::load(store.conn(), "bursts").unwrap();
        assert_eq!(bursts.check(&burst_key("process", "rsync", "bytes")), Some(burst));
        assert_eq!(bursts.check(&burst_key("process", "rsync", "connections")), None);
        assert_eq!(bursts.check(&burst_key("host", "rsync", "bytes")), None);
        let mut longs = Suppressions::load(store.conn(), "long_connections").unwrap();
        assert_eq!(
            longs.check(&pair_key("10.1.0.5", "10.1.0.7", Some(5432), "tcp")),
            Some(long)
        );
        assert_eq!(
            longs.check(&pair_key("10.1.0.5", "10.1.0.8", None, "udp")),
            Some(by_key)
        );
        assert_eq!(longs.check(&pair_key("10.1.0.6", "10.1.0.7", Some(5432), "tcp")), None);
        assert_eq!(longs.summary(), ", 2 suppressed by analysts' marks");
        // A row the detector did not flag (a beacons pair judged irregular) carries the mark,
        // but the summary counts only alarms that were suppressed.
        let before = longs.suppressed;
        assert_eq!(
            longs.check_row(&pair_key("10.1.0.5", "10.1.0.7", Some(5432), "tcp"), false),
            Some(long)
        );
        assert_eq!(longs.suppressed, before);
    }
}
