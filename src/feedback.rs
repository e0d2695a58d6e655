//! Analysts' feedback: a mark on one row a stage or detector flagged, true or false positive,
//! with a note (`netlens feedback`, the dashboard's buttons). Marks are appended, never edited;
//! `latest_feedback` shows the newest mark of each row, for people and for stages that learn
//! from it.
//!
//! May use the store.

use chrono::{DateTime, Utc};
use duckdb::params;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Store;

/// The tables whose rows can be marked.
pub const SUBJECTS: &[&str] = &[
    "anomaly_scores",
    "ensemble_scores",
    "verdicts",
    "port_scans",
    "beacons",
    "bursts",
    "long_connections",
];
/// Longest note kept.
pub const MAX_NOTE: usize = 2000;

/// Whether the flag was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    TruePositive,
    FalsePositive,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::TruePositive => "true_positive",
            Label::FalsePositive => "false_positive",
        }
    }
}

/// One mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRequest {
    pub subject: String,
    pub run_id: Option<i64>,
    pub row_key: String,
    pub label: Label,
    pub note: Option<String>,
    pub analyst: Option<String>,
}

/// Stores the mark and returns its id. Refuses a table that cannot be marked, an empty key and
/// an over-long note, saying which.
pub fn record(store: &Store, mark: &FeedbackRequest, now: DateTime<Utc>) -> Result<i64> {
    if !SUBJECTS.contains(&mark.subject.as_str()) {
        return Err(Error::Usage(format!(
            "feedback on '{}': only rows of {} can be marked",
            mark.subject,
            SUBJECTS.join(", ")
        )));
    }
    if mark.row_key.trim().is_empty() || mark.row_key.len() > 1000 {
        return Err(Error::Usage(
            "feedback needs the row's key (1 to 1000 characters; see feedback.row_key in .schema feedback)".to_string(),
        ));
    }
    check_detector_key(&mark.subject, mark.row_key.trim())?;
    check_long_connection_event(store, mark)?;
    if mark.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(Error::Usage(format!(
            "a feedback note is at most {MAX_NOTE} characters"
        )));
    }
    store.in_transaction(|conn| {
        let id: i64 = conn
            .query_row("SELECT coalesce(max(feedback_id), 0) + 1 FROM feedback", [], |r| {
                r.get(0)
            })
            .map_err(Error::sql)?;
        conn.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                id,
                now.naive_utc(),
                mark.subject,
                mark.run_id,
                mark.row_key.trim(),
                mark.label.as_str(),
                mark.note.as_deref().map(str::trim).filter(|n| !n.is_empty()),
                mark.analyst
            ],
        )
        .map_err(Error::sql)?;
        Ok(id)
    })
}

/// A long connection marked by its event id must be a stored row (of the mark's run, when it
/// names one): its row gives the key the mark suppresses or lifts, and a mark on no row would
/// do nothing without a word.
fn check_long_connection_event(store: &Store, mark: &FeedbackRequest) -> Result<()> {
    let key = mark.row_key.trim();
    if mark.subject != "long_connections" || key.contains('|') {
        return Ok(());
    }
    let rows: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM long_connections WHERE event_id = ? AND (CAST(? AS BIGINT) IS NULL OR run_id = ?)",
            params![key, mark.run_id, mark.run_id],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    if rows > 0 {
        return Ok(());
    }
    let run = mark.run_id.map(|r| format!(" in run {r}")).unwrap_or_default();
    Err(Error::Usage(format!(
        "feedback on long_connections: no stored row has event_id '{key}'{run}; mark a row a \
         `detect long_connections` run stored (its event_id, with --run), or give the service as src|dst|dst_port|proto"
    )))
}

/// A detector row's key must have its table's fields: a mark whose key can match no row would
/// suppress nothing (`detector_suppressions`) without a word.
fn check_detector_key(subject: &str, key: &str) -> Result<()> {
    let fields = key.split('|').count();
    let (wanted, form) = match subject {
        "port_scans" => (
            fields == 5,
            "scanner|kind|target|target_port|proto (an empty field for NULL)",
        ),
        "beacons" => (
            fields == 4,
            "src|dst|dst_port|proto (an empty port for --beacon-by host)",
        ),
        "bursts" => (
            fields >= 4,
            "entity_kind|entity|metric|start_ts (any start: the mark covers every start)",
        ),
        "long_connections" => (fields == 1 || fields == 4, "an event_id, or src|dst|dst_port|proto"),
        _ => return Ok(()),
    };
    if wanted {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "feedback on {subject}: the key '{key}' has {fields} field(s); a {subject} key is {form}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn mark(label: Label, note: Option<&str>) -> FeedbackRequest {
        FeedbackRequest {
            subject: "beacons".into(),
            run_id: Some(3),
            row_key: "10.0.0.5|203.0.113.9|443|tcp".into(),
            label,
            note: note.map(str::to_string),
            analyst: Some("alice".into()),
        }
    }

    #[test]
    fn the_newest_mark_of_a_row_counts() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let now = Utc::now();
        assert_eq!(record(&store, &mark(Label::TruePositive, Some("C2?")), now).unwrap(), 1);
        assert_eq!(
            record(&store, &mark(Label::FalsePositive, Some("backup agent")), now).unwrap(),
            2
        );
        let (label, note): (String, String) = store
            .conn()
            .query_row("SELECT label, note FROM latest_feedback", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((label.as_str(), note.as_str()), ("false_positive", "backup agent"));
        let all: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM feedback", [], |r| r.get(0))
            .unwrap();
        assert_eq!(all, 2, "marks are appended, never replaced");
    }

    #[test]
    fn bad_marks_are_refused_and_say_why() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut m = mark(Label::TruePositive, None);
        m.subject = "schema_migrations".into();
        assert!(record(&store, &m, Utc::now())
            .unwrap_err()
            .to_string()
            .contains("only rows of"));
        let mut m = mark(Label::TruePositive, None);
        m.row_key = " ".into();
        assert!(record(&store, &m, Utc::now()).is_err());
        let mut m = mark(Label::FalsePositive, None);
        m.row_key = "10.0.0.5|203.0.113.9|443".into();
        let err = record(&store, &m, Utc::now()).unwrap_err().to_string();
        assert!(
            err.contains("has 3 field(s); a beacons key is src|dst|dst_port|proto"),
            "{err}"
        );
        m.subject = "bursts".into();
        m.row_key = "process|rsync|bytes|*".into();
        assert!(record(&store, &m, Utc::now()).is_ok());
        let long = "x".repeat(MAX_NOTE + 1);
        assert!(record(&store, &mark(Label::TruePositive, Some(&long)), Utc::now()).is_err());
        // A long connection by an event id no run stored would suppress (or lift) nothing.
        m.subject = "long_connections".into();
        m.row_key = "42".into();
        let err = record(&store, &m, Utc::now()).unwrap_err().to_string();
        assert!(err.contains("no stored row has event_id '42' in run 3"), "{err}");
        m.row_key = "10.0.0.5|203.0.113.9|443|tcp".into();
        assert!(
            record(&store, &m, Utc::now()).is_ok(),
            "the service needs no stored row"
        );
    }
}
