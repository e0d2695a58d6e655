//! What `retrain` learns from analysts' marks (`latest_feedback`, written by [`crate::feedback`]):
//! a row marked false positive is normal traffic the model flagged, so it joins the rows the
//! model is fitted on, `weight` times; a row marked true positive is an attack, so it never
//! trains the normal model (it is left out of the fitting rows when it is one of them). The
//! threshold is then re-chosen by the stage's fit on those rows, as on any fit.
//!
//! A mark names a row of `anomaly_scores` (`row_key` = its `row_id`) in one
//! run; the row is found again in that run's input (`model_runs.input`) by the run's id column
//! when it had one, else by its position, and encoded with the model being fitted. Marks whose
//! input cannot be read with the model's features any more are counted and said, never guessed.
//!
//! May use the store: reads `latest_feedback`, `model_runs`, the marked result tables and the
//! marked runs' inputs; writes only its run-private scratch tables (dropped again).

use std::collections::{BTreeMap, HashMap};

use duckdb::Connection;
use ndarray::{Array2, ArrayView2, Axis};

use super::features::{self, Encoding, Loaded, Selection, Source, INPUT_ROW};
use crate::error::{Error, Result};
use crate::store::{quote_ident, Store};

/// Result tables whose marked rows retraining uses (the anomaly stages' rows; `feedback` takes
/// no marks on `ensemble_scores` rows yet).
pub const SUBJECTS: &[&str] = &["anomaly_scores"];
/// Copies of each false positive among the fitting rows when `--set feedback_weight` is not given.
pub const DEFAULT_WEIGHT: usize = 10;
/// Largest `feedback_weight`.
pub const MAX_WEIGHT: usize = 1000;

/// How a mark finds its row in the marked run's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum RowKey {
    /// The run's id column, as text.
    Id(String),
    /// Position in the input as read (no id column).
    Position(usize),
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
            let Some(&row) = positions.get(key) else {
                missing += 1;
                continue;
            };
            match (false_positive, same_rows) {
                (true, _) => {
                    used.false_positives += 1;
                    let copies = if same_rows { weight.saturating_sub(1) } else { weight };
                    for _ in 0..copies {
                        added.push(rows.x.row(row).to_vec());
                    }
                }
                (false, true) => {
                    used.true_positives_excluded += usize::from(!exclude[row]);
                    exclude[row] = true;
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
        "SELECT f.label = 'false_positive', r.input, r.id_column, s.row_id, s.id \
         FROM latest_feedback f \
         JOIN model_runs r ON r.run_id = f.run_id \
         JOIN ({subjects}) s ON s.subject = f.subject AND s.run_id = f.run_id \
              AND CAST(s.row_id AS VARCHAR) = trim(f.row_key) \
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
            ))
        })
        .map_err(Error::sql)?;
    let mut groups: BTreeMap<(String, Option<String>), InputMarks> = BTreeMap::new();
    let mut found = 0usize;
    for row in rows {
        let (false_positive, input, id_column, row_id, id) = row.map_err(Error::sql)?;
        found += 1;
        let key = match (&id_column, id) {
            (Some(_), Some(id)) => RowKey::Id(id),
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
    features::load_for_model(store, &source, encoding, &selection, table).map_err(|e| {
        let _ = drop_scratch(store.conn(), table);
        e.to_string()
    })
}

/// Where each marked row is among `rows` (x row = INPUT_ROW).
fn positions(conn: &Connection, rows: &Loaded, marks: &InputMarks) -> Result<HashMap<RowKey, usize>> {
    let n = rows.x.nrows();
    let mut out = HashMap::new();
    let wanted_ids: HashMap<&str, &RowKey> = marks
        .rows
        .keys()
        .filter_map(|k| match k {
            RowKey::Id(id) => Some((id.as_str(), k)),
            RowKey::Position(_) => None,
        })
        .collect();
    for key in marks.rows.keys() {
        if let RowKey::Position(p) = key {
            if *p < n {
                out.insert(key.clone(), *p);
            }
        }
    }
    if let (false, Some(id)) = (wanted_ids.is_empty(), &rows.id_column) {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {INPUT_ROW}, CAST({} AS VARCHAR) FROM {} ORDER BY {INPUT_ROW}",
                quote_ident(id),
                quote_ident(&rows.input_table)
            ))
            .map_err(Error::sql)?;
        let ids = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)))
            .map_err(Error::sql)?;
        for row in ids {
            let (position, id) = row.map_err(Error::sql)?;
            if let Some(key) = id.as_deref().and_then(|id| wanted_ids.get(id)) {
                // The first row with an id counts, as for any id column that repeats.
                out.entry((*key).clone()).or_insert(position as usize);
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
}
