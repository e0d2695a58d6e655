//! What `retrain` learns from analysts' marks (`latest_feedback`, written by [`crate::feedback`]):
//! a row marked false positive is normal traffic the model flagged, so it joins the rows the
//! model is fitted on, `weight` times; a row marked true positive is an attack, so it never
//! trains the normal model (it is left out of the fitting rows when it is one of them). The
//! threshold is then re-chosen by the stage's fit on those rows, as on any fit.
//!
//! A mark names a row of `anomaly_scores` or `ensemble_scores` (`row_key` = its `row_id`) in one
//! run; the row is found again in that run's input (`model_runs.input`) by a stable key, never by
//! its position alone: the run's id column when it had one, else the key of the row's values
//! that the run stored in `scored_row_keys` (a hash of all the source's columns). So a mark stays
//! on its row when rows were added, removed or reordered since the run, and a row whose values
//! changed is no longer found (counted and said). Equal rows share a key: a mark on one is a mark
//! on each (the model cannot tell them apart either). Runs from before migration 29 stored no
//! keys; their marks fall back to the position. The row is encoded with the model being fitted.
//! Marks whose input cannot be read with the model's features any more are counted and said,
//! never guessed.
//!
//! May use the store: reads `latest_feedback`, `model_runs`, `scored_row_keys`, the marked
//! result tables and the marked runs' inputs; writes only its run-private scratch tables
//! (dropped again).

use std::collections::{BTreeMap, HashMap};

use duckdb::Connection;
use ndarray::{Array2, ArrayView2, Axis};

use super::features::{self, Encoding, Loaded, Selection, Source, INPUT_ROW};
use crate::error::{Error, Result};
use crate::store::{quote_ident, Store};

/// Result tables whose marked rows retraining uses (the anomaly stages' and the ensemble's rows).
pub const SUBJECTS: &[&str] = &["anomaly_scores", "ensemble_scores"];
/// Copies of each false positive among the fitting rows when `--set feedback_weight` is not given.
pub const DEFAULT_WEIGHT: usize = 10;
/// Largest `feedback_weight`.
pub const MAX_WEIGHT: usize = 1000;

/// How a mark finds its row in the marked run's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum RowKey {
    /// The run's id column, as text.
    Id(String),
    /// The key of the row's values ([`row_key_sql`], stored in `scored_row_keys`).
    Values(u64),
    /// Position in the input as read (a run without an id column from before migration 29).
    Position(usize),
}

/// SQL for the key of a row's values: DuckDB's `hash()` of every column of the source, in its
/// order (`prefix` qualifies the columns, e.g. `"i."`).
pub fn row_key_sql(prefix: &str, columns: &[String]) -> String {
    let columns: Vec<String> = columns.iter().map(|c| format!("{prefix}{}", quote_ident(c))).collect();
    format!("hash({})", columns.join(", "))
}

/// The marks of one input read by marked runs with one id column.
#[derive(Debug, Default)]
struct InputMarks {
    /// Row -> false positive (true) or true positive (false); the newest mark wins.
    rows: BTreeMap<RowKey, bool>,
}

/// What retraining used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkUse {
    /// Marked rows used: false positives added plus true positives left out.
    pub used: usize,
    /// Distinct rows marked false positive that were found and added.
    pub false_positives: usize,
    /// Rows marked true positive left out of the fitting rows.
    pub true_positives_excluded: usize,
    /// Rows marked true positive that are not among the fitting rows (nothing to leave out).
    pub true_positives_elsewhere: usize,
    /// Marks on result rows that could not be found again, with why.
    pub unmatched: usize,
    pub reasons: Vec<String>,
    /// Copies of each false positive among the fitting rows.
    pub weight: usize,
}

/// The rows a retrain fits on after the marks, and what the marks did.
pub struct FitRows {
    pub x: Array2<f64>,
    pub used: MarkUse,
}

/// Builds the fitting rows of a retrain: `training`'s rows (read from `source`) without those
/// marked true positive, plus every row marked false positive `weight` times in all (a training
/// row marked false positive gets `weight - 1` more copies). `scratch` prefixes scratch tables.
pub fn fitting_rows(
    store: &Store,
    source: &Source,
    training: &Loaded,
    weight: usize,
    scratch: &str,
) -> Result<FitRows> {
    let conn = store.conn();
    let mut used = MarkUse {
        weight,
        ..MarkUse::default()
    };
    let (groups, lost) = read_marks(conn)?;
    if lost > 0 {
        used.unmatched += lost;
        used.reasons.push(format!(
            "{lost} mark(s) name no row of a stored run (no run, or a row_key that is not a row_id of it)"
        ));
    }
    let mut exclude = vec![false; training.x.nrows()];
    let mut added: Vec<Vec<f64>> = Vec::new();
    for (n, ((input, id_column), marks)) in groups.iter().enumerate() {
        let same_rows = *input == source.describe() && *id_column == training.id_column;
        let table = format!("{scratch}_{n}");
        let other;
        let rows: &Loaded = if same_rows {
            training
        } else {
            match read_input(store, input, id_column, &training.encoding, &table) {
                Ok(loaded) => {
                    other = loaded;
                    &other
                }
                Err(why) => {
                    used.unmatched += marks.rows.len();
                    used.reasons.push(format!(
                        "{} mark(s) on rows of '{}': {why}",
                        marks.rows.len(),
                        features::short(input)
                    ));
                    continue;
                }
            }
        };
        let positions = positions(conn, rows, marks)?;
        let mut missing = 0usize;
        for (key, false_positive) in &marks.rows {
            let Some(found) = positions.get(key).filter(|f| !f.is_empty()) else {
                missing += 1;
                continue;
            };
            match (false_positive, same_rows) {
                (true, _) => {
                    // Equal rows (one key) are one point to the model: added once.
                    used.false_positives += 1;
                    let copies = if same_rows { weight.saturating_sub(1) } else { weight };
                    for _ in 0..copies {
                        added.push(rows.x.row(found[0]).to_vec());
                    }
                }
                (false, true) => {
                    for &row in found {
                        used.true_positives_excluded += usize::from(!exclude[row]);
                        exclude[row] = true;
                    }
                }
                (false, false) => used.true_positives_elsewhere += 1,
            }
        }
        if !same_rows {
            drop_scratch(conn, &table)?;
        }
        if missing > 0 {
            used.unmatched += missing;
            used.reasons.push(format!(
                "{missing} marked row(s) are no longer in '{}'",
                features::short(input)
            ));
        }
    }
    used.used = used.false_positives + used.true_positives_excluded;
    let kept: Vec<usize> = (0..training.x.nrows()).filter(|&i| !exclude[i]).collect();
    if kept.is_empty() && added.is_empty() {
        return Err(Error::Usage(format!(
            "every row of '{}' is marked true positive: nothing normal is left to fit\n  hint: retrain on a source with normal rows",
            features::short(&source.describe())
        )));
    }
    let width = training.x.ncols();
    let mut x = training.x.select(Axis(0), &kept);
    for row in added {
        x.push_row(ArrayView2::from_shape((1, width), &row).map_err(shape_err)?.row(0))
            .map_err(shape_err)?;
    }
    Ok(FitRows { x, used })
}

/// The newest mark of each marked result row, grouped by the run's input and id column, and the
/// count of marks that name no stored result row.
#[allow(clippy::type_complexity)]
fn read_marks(conn: &Connection) -> Result<(BTreeMap<(String, Option<String>), InputMarks>, usize)> {
    let subjects = SUBJECTS
        .iter()
        .map(|s| format!("SELECT '{s}' AS subject, run_id, row_id, id FROM {s}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let in_list = SUBJECTS.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT f.label = 'false_positive', r.input, r.id_column, s.row_id, s.id, k.row_key \
         FROM latest_feedback f \
         JOIN model_runs r ON r.run_id = f.run_id \
         JOIN ({subjects}) s ON s.subject = f.subject AND s.run_id = f.run_id \
              AND CAST(s.row_id AS VARCHAR) = trim(f.row_key) \
         LEFT JOIN scored_row_keys k ON k.run_id = s.run_id AND k.row_id = s.row_id \
         WHERE f.subject IN ({in_list}) ORDER BY f.feedback_id"
    );
    let mut stmt = conn.prepare(&sql).map_err(Error::sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<u64>>(5)?,
            ))
        })
        .map_err(Error::sql)?;
    let mut groups: BTreeMap<(String, Option<String>), InputMarks> = BTreeMap::new();
    let mut found = 0usize;
    for row in rows {
        let (false_positive, input, id_column, row_id, id, values) = row.map_err(Error::sql)?;
        found += 1;
        let key = match (&id_column, id, values) {
            (Some(_), Some(id), _) => RowKey::Id(id),
            (None, _, Some(values)) => RowKey::Values(values),
            _ => RowKey::Position(usize::try_from(row_id).unwrap_or(usize::MAX)),
        };
        // Ordered by feedback_id: a later mark of the same source row replaces an earlier one.
        groups
            .entry((input, id_column))
            .or_default()
            .rows
            .insert(key, false_positive);
    }
    let all: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM latest_feedback WHERE subject IN ({in_list})"),
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    Ok((groups, (all as usize).saturating_sub(found)))
}

/// Reads a marked run's input with the model's encoding; Err says why it cannot be used.
fn read_input(
    store: &Store,
    input: &str,
    id_column: &Option<String>,
    encoding: &Encoding,
    table: &str,
) -> std::result::Result<Loaded, String> {
    let source = Source::parse(input);
    // A failed statement would end the run's transaction: look before reading.
    match &source {
        Source::Relation(name) => {
            if !store.relation_exists(name).map_err(|e| e.to_string())? {
                return Err(format!("the table or view '{name}' is gone"));
            }
        }
        Source::Query(sql) => {
            crate::store::statements::one(sql, "the marked run's input").map_err(|e| e.to_string())?;
            store
                .conn()
                .prepare(&format!("SELECT * FROM (\n{sql}\n) AS q LIMIT 0"))
                .map_err(|e| format!("cannot be read any more ({e})"))?;
        }
    }
    let selection = Selection {
        features: Vec::new(),
        exclude: Vec::new(),
        id: id_column.clone(),
        label: None,
    };
    features::load_for_model(store, &source, encoding, &selection, table, false).map_err(|e| {
        let _ = drop_scratch(store.conn(), table);
        e.to_string()
    })
}

/// Where each marked row is among `rows` (x row = INPUT_ROW): one row for an id (the first with
/// it, as for any id column that repeats) or a position, every equal row for a key of values.
fn positions(conn: &Connection, rows: &Loaded, marks: &InputMarks) -> Result<HashMap<RowKey, Vec<usize>>> {
    let n = rows.x.nrows();
    let mut out: HashMap<RowKey, Vec<usize>> = HashMap::new();
    let mut wanted_ids: HashMap<String, &RowKey> = HashMap::new();
    let mut wanted_values: HashMap<u64, &RowKey> = HashMap::new();
    for key in marks.rows.keys() {
        match key {
            RowKey::Id(id) => {
                wanted_ids.insert(id.clone(), key);
            }
            RowKey::Values(v) => {
                wanted_values.insert(*v, key);
            }
            RowKey::Position(p) => {
                if *p < n {
                    out.insert(key.clone(), vec![*p]);
                }
            }
        }
    }
    let input = rows.input.relation();
    if let (false, Some(id)) = (wanted_ids.is_empty(), &rows.id_column) {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {INPUT_ROW}, CAST({} AS VARCHAR) FROM {input} ORDER BY {INPUT_ROW}",
                quote_ident(id),
            ))
            .map_err(Error::sql)?;
        let ids = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)))
            .map_err(Error::sql)?;
        for row in ids {
            let (position, id) = row.map_err(Error::sql)?;
            if let Some(key) = id.as_deref().and_then(|id| wanted_ids.get(id)) {
                out.entry((*key).clone()).or_insert_with(|| vec![position as usize]);
            }
        }
    }
    if !wanted_values.is_empty() {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {INPUT_ROW}, {} FROM {input} ORDER BY {INPUT_ROW}",
                row_key_sql("", &rows.source_columns)
            ))
            .map_err(Error::sql)?;
        let keys = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?)))
            .map_err(Error::sql)?;
        for row in keys {
            let (position, values) = row.map_err(Error::sql)?;
            if let Some(key) = wanted_values.get(&values) {
                out.entry((*key).clone()).or_default().push(position as usize);
            }
        }
    }
    Ok(out)
}

fn drop_scratch(conn: &Connection, table: &str) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))
        .map_err(Error::sql)
}

fn shape_err(e: ndarray::ShapeError) -> Error {
    Error::ModelInput {
        model: "feedback",
        reason: format!("cannot add a marked row: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{retrain, score, train, ScoreRequest, TrainRequest};
    use crate::feedback::{record, FeedbackRequest, Label};
    use crate::store::Location;
    use chrono::Utc;

    /// Normal traffic around (0, 0); the test rows add normal rows of a second, rarer kind
    /// around (4, 4) (the model's false positives) and attacks around (-4, 4).
    fn setup(store: &Store) {
        store
            .conn()
            .execute_batch(
                "CREATE TABLE train_rows AS SELECT i AS id, sin(i * 1.7) AS a, cos(i * 2.3) AS b, 'normal' AS label \
                 FROM range(400) t(i);
                 CREATE TABLE test_rows AS
                 SELECT 1000 + i AS id, sin(i * 1.3) AS a, cos(i * 3.1) AS b, 'normal' AS label FROM range(200) t(i)
                 UNION ALL SELECT 2000 + i, 4 + 0.3 * sin(i * 0.9), 4 + 0.3 * cos(i * 1.1), 'normal' FROM range(60) t(i)
                 UNION ALL SELECT 3000 + i, -4 + 0.3 * sin(i * 0.7), 4 + 0.3 * cos(i * 1.9), 'attack' FROM range(60) t(i);",
            )
            .unwrap();
    }

    fn request(feedback: bool) -> TrainRequest {
        let mut set = BTreeMap::new();
        set.insert("k".to_string(), "10".to_string());
        set.insert("feedback".to_string(), feedback.to_string());
        TrainRequest {
            stage: "lof".into(),
            source: Some("train_rows".into()),
            selection: Selection {
                features: vec!["a".into(), "b".into()],
                exclude: Vec::new(),
                id: Some("id".into()),
                label: None,
            },
            model: Some(format!("lof_{feedback}")),
            seed: 1,
            set,
        }
    }

    /// Scores the test rows; returns the run and (row_id, id, attack) by falling score.
    fn ranked(store: &Store, model: &str) -> (i64, Vec<(i64, i64, bool)>) {
        let run = score(
            store,
            &ScoreRequest {
                model: model.into(),
                source: "test_rows".into(),
                into: None,
                label: Some("label".into()),
                id: Some("id".into()),
            },
            Utc::now(),
        )
        .unwrap()
        .run_id;
        let mut stmt = store
            .conn()
            .prepare(
                "SELECT s.row_id, t.id, t.label <> 'normal' FROM anomaly_scores s \
                 JOIN test_rows t ON CAST(t.id AS VARCHAR) = s.id WHERE s.run_id = ? ORDER BY s.score DESC, s.row_id",
            )
            .unwrap();
        let rows = stmt
            .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (run, rows)
    }

    /// Precision at 40 among the rows with an even id (never marked).
    fn held_out_precision(rows: &[(i64, i64, bool)]) -> f64 {
        let top: Vec<_> = rows.iter().filter(|r| r.1 % 2 == 0).take(40).collect();
        top.iter().filter(|r| r.2).count() as f64 / top.len() as f64
    }

    /// The analyst marks the 40 highest-scoring rows with an odd id from the ground truth.
    fn mark_top(store: &Store, run: i64, rows: &[(i64, i64, bool)]) -> usize {
        let top: Vec<_> = rows.iter().filter(|r| r.1 % 2 == 1).take(40).collect();
        for (row_id, _, attack) in &top {
            let mark = FeedbackRequest {
                subject: "anomaly_scores".into(),
                run_id: Some(run),
                row_key: row_id.to_string(),
                label: if *attack {
                    Label::TruePositive
                } else {
                    Label::FalsePositive
                },
                note: None,
                analyst: None,
            };
            record(store, &mark, Utc::now()).unwrap();
        }
        top.iter().filter(|r| !r.2).count()
    }

    #[test]
    fn false_positives_marked_make_the_retrained_model_rank_attacks_first() {
        let store = Store::open(&Location::Memory, false).unwrap();
        setup(&store);
        for feedback in [true, false] {
            train(&store, &request(feedback), Utc::now()).unwrap();
        }
        let (run, before) = ranked(&store, "lof_true");
        let p_before = held_out_precision(&before);
        let false_positives = mark_top(&store, run, &before);
        assert!(
            false_positives > 0 && p_before < 0.9,
            "the setup has false positives: {p_before}"
        );
        let runs = retrain(&store, Some("lof_true"), Utc::now()).unwrap();
        assert!(
            runs[0].notes[0].contains(&format!("{false_positives} false positive(s) added x10")),
            "{:?}",
            runs[0].notes
        );
        let stored: String = store
            .conn()
            .query_row(
                "SELECT metrics FROM model_runs WHERE run_id = ?",
                [runs[0].run_id],
                |r| r.get(0),
            )
            .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            stored["feedback_rows"], false_positives,
            "true positives of another source leave nothing out"
        );
        let (_, after) = ranked(&store, "lof_true");
        let p_after = held_out_precision(&after);
        assert!(p_after >= p_before + 0.3, "precision@40 {p_before} -> {p_after}");
        // The same marks, ignored: the retrained model ranks as before.
        retrain(&store, Some("lof_false"), Utc::now()).unwrap();
        let (_, control) = ranked(&store, "lof_false");
        assert_eq!(held_out_precision(&control), p_before);
    }

    #[test]
    fn true_positives_among_the_training_rows_are_left_out_and_lost_inputs_are_said() {
        let store = Store::open(&Location::Memory, false).unwrap();
        setup(&store);
        store
            .conn()
            .execute_batch(
                "CREATE TABLE mixed AS SELECT * FROM train_rows UNION ALL SELECT * FROM test_rows WHERE id >= 3000",
            )
            .unwrap();
        let mut req = request(true);
        req.source = Some("mixed".into());
        let trained = train(&store, &req, Utc::now()).unwrap();
        let mut stmt = store
            .conn()
            .prepare("SELECT row_id FROM anomaly_scores WHERE run_id = ? AND CAST(id AS BIGINT) >= 3000")
            .unwrap();
        let attacks: Vec<i64> = stmt
            .query_map([trained.run_id], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(attacks.len(), 60);
        for row_id in &attacks {
            let mark = FeedbackRequest {
                subject: "anomaly_scores".into(),
                run_id: Some(trained.run_id),
                row_key: row_id.to_string(),
                label: Label::TruePositive,
                note: None,
                analyst: None,
            };
            record(&store, &mark, Utc::now()).unwrap();
        }
        // A false positive on rows of a table dropped since: counted and said, not guessed.
        let (run, _) = ranked(&store, "lof_true");
        let mark = FeedbackRequest {
            subject: "anomaly_scores".into(),
            run_id: Some(run),
            row_key: "0".into(),
            label: Label::FalsePositive,
            note: None,
            analyst: None,
        };
        record(&store, &mark, Utc::now()).unwrap();
        store.conn().execute_batch("DROP TABLE test_rows").unwrap();
        let runs = retrain(&store, Some("lof_true"), Utc::now()).unwrap();
        let metrics = &runs[0].metrics;
        assert_eq!(metrics["feedback_rows"], 60);
        assert_eq!(metrics["feedback"]["true_positives_excluded"], 60);
        assert_eq!(metrics["feedback"]["fit_rows"], 400);
        assert_eq!(metrics["feedback"]["unmatched"], 1);
        assert!(
            runs[0].notes.iter().any(|n| n.contains("'test_rows' is gone")),
            "{:?}",
            runs[0].notes
        );
        assert_eq!(runs[0].rows_in, 460, "left out of the fit, still scored");
    }

    /// The rows of `setup` again, without an id column: `tag` numbers them but is neither the id
    /// nor a feature, so runs on them have only positions and keys of values.
    fn setup_without_ids(store: &Store) {
        setup(store);
        store
            .conn()
            .execute_batch(
                "CREATE TABLE train_plain AS SELECT id AS tag, a, b, label FROM train_rows ORDER BY id;
                 CREATE TABLE test_plain AS SELECT id AS tag, a, b, label FROM test_rows ORDER BY id;",
            )
            .unwrap();
    }

    /// Scores `test_plain`; returns the run and (row_id, tag, attack) by falling score, each row
    /// found by its key of values.
    fn ranked_by_values(store: &Store, model: &str) -> (i64, Vec<(i64, i64, bool)>) {
        let run = score(
            store,
            &ScoreRequest {
                model: model.into(),
                source: "test_plain".into(),
                into: None,
                label: None,
                id: None,
            },
            Utc::now(),
        )
        .unwrap()
        .run_id;
        let key = row_key_sql("t.", &["tag".into(), "a".into(), "b".into(), "label".into()]);
        let mut stmt = store
            .conn()
            .prepare(&format!(
                "SELECT s.row_id, t.tag, t.label <> 'normal' FROM anomaly_scores s \
                 JOIN scored_row_keys k USING (run_id, row_id) \
                 JOIN test_plain t ON {key} = k.row_key WHERE s.run_id = ? ORDER BY s.score DESC, s.row_id"
            ))
            .unwrap();
        let rows: Vec<(i64, i64, bool)> = stmt
            .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let count: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM test_plain", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows.len() as i64, count, "every scored row has its key");
        (run, rows)
    }

    #[test]
    fn marks_stay_on_their_rows_when_the_source_changed_since() {
        let store = Store::open(&Location::Memory, false).unwrap();
        setup_without_ids(&store);
        let mut req = request(true);
        req.source = Some("train_plain".into());
        req.selection.id = None;
        req.model = Some("plain".into());
        let trained = train(&store, &req, Utc::now()).unwrap();
        let keys: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM scored_row_keys WHERE run_id = ?",
                [trained.run_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(keys, 400, "a run without an id column keys every row");
        let (run, before) = ranked_by_values(&store, "plain");
        let p_before = held_out_precision(&before);
        let false_positives = mark_top(&store, run, &before);
        assert!(false_positives > 0 && p_before < 0.9, "{p_before}");
        // The source changes after the marks: its rows come in the opposite order and ten
        // unmarked rows are gone, so no marked row is at its position any more.
        store
            .conn()
            .execute_batch(
                "CREATE OR REPLACE TABLE test_plain AS SELECT * FROM test_plain \
                 WHERE tag NOT IN (SELECT tag FROM test_plain ORDER BY tag LIMIT 10) ORDER BY tag DESC",
            )
            .unwrap();
        let runs = retrain(&store, Some("plain"), Utc::now()).unwrap();
        assert_eq!(runs[0].metrics["feedback"]["unmatched"], 0, "{:?}", runs[0].notes);
        assert_eq!(
            runs[0].metrics["feedback"]["false_positives_added"], false_positives,
            "{:?}",
            runs[0].notes
        );
        let (_, after) = ranked_by_values(&store, "plain");
        let p_after = held_out_precision(&after);
        assert!(
            p_after >= p_before + 0.3,
            "the marks found their rows again: precision@40 {p_before} -> {p_after}"
        );
        // A marked row whose values changed is not its row any more: counted and said.
        store
            .conn()
            .execute_batch("UPDATE test_plain SET a = a + 0.001")
            .unwrap();
        let runs = retrain(&store, Some("plain"), Utc::now()).unwrap();
        assert_eq!(runs[0].metrics["feedback"]["false_positives_added"], 0);
        assert!(
            runs[0].notes.iter().any(|n| n.contains("no longer in 'test_plain'")),
            "{:?}",
            runs[0].notes
        );
    }

    #[test]
    fn rows_of_an_ensemble_can_be_marked_and_its_retrain_uses_them() {
        let store = Store::open(&Location::Memory, false).unwrap();
        setup(&store);
        let mut set = BTreeMap::new();
        set.insert("members".to_string(), "lof,iforest".to_string());
        set.insert("lof.k".to_string(), "10".to_string());
        let req = TrainRequest {
            stage: "ensemble".into(),
            source: Some("train_rows".into()),
            selection: request(true).selection,
            model: Some("both".into()),
            seed: 1,
            set,
        };
        train(&store, &req, Utc::now()).unwrap();
        let run = score(
            &store,
            &ScoreRequest {
                model: "both".into(),
                source: "test_rows".into(),
                into: None,
                label: None,
                id: Some("id".into()),
            },
            Utc::now(),
        )
        .unwrap()
        .run_id;
        // The analyst marks the ensemble's 20 highest normal rows false positive, 5 attacks true.
        let marked: Vec<(i64, bool)> = store
            .conn()
            .prepare(
                "(SELECT e.row_id, false FROM ensemble_scores e JOIN test_rows t ON CAST(t.id AS VARCHAR) = e.id \
                  WHERE e.run_id = ? AND t.label = 'normal' ORDER BY e.score DESC, e.row_id LIMIT 20) \
                 UNION ALL (SELECT e.row_id, true FROM ensemble_scores e JOIN test_rows t ON CAST(t.id AS VARCHAR) = e.id \
                  WHERE e.run_id = ? AND t.label = 'attack' ORDER BY e.score DESC, e.row_id LIMIT 5)",
            )
            .unwrap()
            .query_map([run, run], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(marked.len(), 25);
        for (row_id, attack) in &marked {
            let mark = FeedbackRequest {
                subject: "ensemble_scores".into(),
                run_id: Some(run),
                row_key: row_id.to_string(),
                label: if *attack {
                    Label::TruePositive
                } else {
                    Label::FalsePositive
                },
                note: None,
                analyst: None,
            };
            record(&store, &mark, Utc::now()).unwrap();
        }
        let runs = retrain(&store, Some("both"), Utc::now()).unwrap();
        let feedback = &runs[0].metrics["feedback"];
        assert_eq!(feedback["false_positives_added"], 20, "{:?}", runs[0].notes);
        assert_eq!(feedback["true_positives_not_in_source"], 5);
        assert_eq!(feedback["unmatched"], 0);
        assert_eq!(feedback["fit_rows"], 400 + 20 * DEFAULT_WEIGHT);
    }
}
