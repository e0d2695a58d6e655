//! `explain`: why a stored anomaly model flags what it flags (prototype 002's explanations).
//!
//! An explain run applies a stored model again, without refitting, to the rows of a run (`explain
//! RUN_ID`: that run's input) or of a source (`explain MODEL [--on SOURCE]`), and stores:
//! - Permutation importance of each source column (a category's one-hot columns move together):
//!   on a seeded sample of the rows, the column is shuffled among them `repeats` times and the
//!   model scores them again. With a label column (both classes in the sample) importance is the
//!   drop in ROC-AUC; without, the mean absolute change of a row's score. Shuffling, not
//!   dropping, keeps the model as it is (Breiman 2001; scikit-learn's permutation_importance).
//! - Per row, for the `top` highest-scoring rows: each column set alone to its training median
//!   (a category: the most frequent training category) and the row scored again; the columns
//!   whose replacement lowers the score most are what pushed the row out. The training rows are
//!   the model's own training source, read again (the model stores no rows).
//!
//! Models score rows independently (every anomaly stage and the ensemble), so shuffled and
//! replaced rows are scored in batches. A run is one transaction, and Ctrl-C between two
//! batches cancels it (nothing stored).
//!
//! May touch: the store (reads models, model_runs and any source; writes explain_runs,
//! permutation_importance, row_explanations and its run-private input tables).

use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::Connection;
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::features::{self, ColumnEncoding, Encoding, Selection, Source};
use super::{evaluation, load_model, ms, next_run_id, run_in_transaction, stage, Stage, StoredModel};
use crate::error::{Error, Result};
use crate::store::Store;

/// Features stored per explained row.
pub const FEATURES_PER_ROW: usize = 5;

/// `explain TARGET ...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// A run id (model_runs.run_id), or a model: `NAME` (newest version) or `NAME@VERSION`.
    pub target: String,
    /// Rows to explain; None: the run's input, or the model's training source.
    pub source: Option<String>,
    /// Label column; None: the run's (or the model's training) label, when the rows have it.
    pub label: Option<String>,
    /// Column copied into row_explanations.id; None: the run's id column, or the default choice.
    pub id: Option<String>,
    /// Rows sampled for permutation importance.
    pub sample: usize,
    /// Permutations of each column.
    pub repeats: usize,
    /// Highest-scoring rows explained one by one.
    pub top: usize,
    pub seed: u64,
}

impl ExplainRequest {
    pub const DEFAULT_SAMPLE: usize = 2000;
    pub const DEFAULT_REPEATS: usize = 3;
    pub const DEFAULT_TOP: usize = 20;
    /// Upper bounds, so a typo cannot ask for memory without end.
    pub const MAX_SAMPLE: usize = 10_000_000;
    pub const MAX_REPEATS: usize = 1000;
    pub const MAX_TOP: usize = 100_000;
}

/// What an explain run did.
#[derive(Debug, Clone)]
pub struct ExplainSummary {
    pub run_id: i64,
    pub explained_run: Option<i64>,
    pub model: String,
    pub version: i32,
    pub measure: &'static str,
    pub baseline: Option<f64>,
    pub rows_in: u64,
    pub sampled: u64,
    pub explained_rows: usize,
    /// Things the analyst should know (a changed input).
    pub notes: Vec<String>,
}

/// One source column's place in the encoded matrix.
struct Group {
    name: String,
    start: usize,
    width: usize,
    /// Categories (one per matrix column) for a categorical column; empty for a number.
    categories: Vec<String>,
    /// (mean, std, log1p) for a number.
    scale: (f64, f64, bool),
}

fn groups(encoding: &Encoding) -> Vec<Group> {
    let mut out = Vec::new();
    let mut start = 0;
    for c in &encoding.columns {
        match c {
            ColumnEncoding::Numeric {
                name,
                mean,
                std,
                log1p,
                missing_flag,
            } => {
                // A number's missing flag (0/1, after it) moves with it: shuffled together, and
                // 0 (a value was there) in the reference row.
                let width = 1 + usize::from(*missing_flag);
                out.push(Group {
                    name: name.clone(),
                    start,
                    width,
                    categories: Vec::new(),
                    scale: (*mean, if *std > 0.0 { *std } else { 1.0 }, *log1p),
                });
                start += width;
            }
            ColumnEncoding::Categorical { name, categories } => {
                out.push(Group {
                    name: name.clone(),
                    start,
                    width: categories.len(),
                    categories: categories.clone(),
                    scale: (0.0, 1.0, false),
                });
                start += categories.len();
            }
        }
    }
    out
}

impl Group {
    /// The value of this column in an encoded row, as the model read it.
    fn value(&self, row: &[f64]) -> Option<String> {
        if self.categories.is_empty() {
            let (mean, std, log1p) = self.scale;
            let v = row[self.start] * std + mean;
            let v = if log1p { v.exp_m1() } else { v };
            Some(format_number(v))
        } else {
            (0..self.width)
                .find(|j| row[self.start + j] > 0.5)
                .map(|j| self.categories[j].clone())
        }
    }
}

/// Numbers as an analyst reads them: whole numbers without decimals, others to 6 significant digits.
fn format_number(v: f64) -> String {
    let rounded = v.round();
    if (v - rounded).abs() < 1e-9 * v.abs().max(1.0) && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{:.6}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Per encoded column, the reference value: a number's median over the reference rows that had
/// it (an imputed value is the training mean, not a value of the training rows); a
/// category column's one-hot pattern of its most frequent category (all zeros when no category
/// of the training is seen).
fn reference_row(x: ArrayView2<f64>, groups: &[Group]) -> Vec<f64> {
    let mut reference = vec![0.0; x.ncols()];
    for g in groups {
        if g.categories.is_empty() {
            let mut values: Vec<f64> = if g.width == 2 {
                // After a number comes its missing flag: 1 where the value was imputed.
                x.rows()
                    .into_iter()
                    .filter(|row| row[g.start + 1] < 0.5)
                    .map(|row| row[g.start])
                    .collect()
            } else {
                x.column(g.start).iter().copied().collect()
            };
            reference[g.start] = median(&mut values);
        } else {
            let counts: Vec<f64> = (0..g.width).map(|j| x.column(g.start + j).sum()).collect();
            if let Some((best, count)) = counts
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            {
                if *count > 0.0 {
                    reference[g.start + best] = 1.0;
                }
            }
        }
    }
    reference
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Scores rows with a stored model; refuses a stage that gives no continuous score.
fn scores(stage: &dyn Stage, model: &StoredModel, x: ArrayView2<f64>) -> Result<Vec<f64>> {
    let applied = stage.apply(&model.model, x)?;
    applied.anomaly.and_then(|a| a.score).ok_or_else(|| {
        Error::Usage(format!(
            "model {}@{} (stage {}) gives no anomaly score to explain\n  hint: explain takes iforest, ocsvm, lof, autoencoder, ensemble or kmeans models",
            model.name, model.version, model.stage
        ))
    })
}

fn interrupted() -> Result<()> {
    if crate::interrupt::requested() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Mean and standard deviation (population).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// What the explained run says about its rows.
struct RunTarget {
    run_id: i64,
    model: String,
    version: i32,
    input: String,
    id_column: Option<String>,
    label_column: Option<String>,
    rows_in: i64,
}

fn read_run(conn: &Connection, run_id: i64) -> Result<RunTarget> {
    let row = conn.query_row(
        "SELECT model, version, input, id_column, label_column, rows_in FROM model_runs WHERE run_id = ?",
        [run_id],
        |r| {
            Ok(RunTarget {
                run_id,
                model: r.get(0)?,
                version: r.get(1)?,
                input: r.get(2)?,
                id_column: r.get(3)?,
                label_column: r.get(4)?,
                rows_in: r.get(5)?,
            })
        },
    );
    match row {
        Ok(run) => Ok(run),
        Err(duckdb::Error::QueryReturnedNoRows) => Err(Error::Usage(format!(
            "explain {run_id}: there is no model run {run_id}\n  hint: `netlens models` lists the models, and SELECT run_id, kind, model FROM model_runs the runs; explain also takes a model name"
        ))),
        Err(e) => Err(Error::sql(e)),
    }
}

fn check(request: &ExplainRequest) -> Result<()> {
    for (what, value, min, max) in [
        ("--sample", request.sample, 2, ExplainRequest::MAX_SAMPLE),
        ("--repeats", request.repeats, 1, ExplainRequest::MAX_REPEATS),
        ("--top", request.top, 0, ExplainRequest::MAX_TOP),
    ] {
        if value < min || value > max {
            return Err(Error::Usage(format!("{what} {value}: expected {min} to {max}")));
        }
    }
    Ok(())
}

/// Runs `explain` and stores its tables (one transaction).
pub fn explain(store: &Store, request: &ExplainRequest, now: DateTime<Utc>) -> Result<ExplainSummary> {
    check(request)?;
    let run = match request.target.trim().parse::<i64>() {
        Ok(run_id) => Some(read_run(store.conn(), run_id)?),
        Err(_) => None,
    };
    let model = match &run {
        Some(run) => load_model(store, &format!("{}@{}", run.model, run.version)).map_err(|e| match e {
            Error::UnknownModel { .. } => Error::Usage(format!(
                "explain {}: the run's model {}@{} is no longer stored",
                run.run_id, run.model, run.version
            )),
            e => e,
        })?,
        None => load_model(store, &request.target)?,
    };
    let stage = stage(&model.stage)?;
    let training_source = model
        .request
        .source
        .clone()
        .unwrap_or_else(|| stage.default_source().to_string());
    let input = request
        .source
        .clone()
        .or_else(|| run.as_ref().map(|r| r.input.clone()))
        .unwrap_or_else(|| training_source.clone());
    let label = request
        .label
        .clone()
        .or_else(|| run.as_ref().and_then(|r| r.label_column.clone()))
        .or_else(|| model.label_column.clone());
    let id = request
        .id
        .clone()
        .or_else(|| run.as_ref().and_then(|r| r.id_column.clone()));
    let source = Source::parse(&input);
    run_in_transaction(store, |conn| {
        let run_id = next_run_id(conn)?;
        let started = Instant::now();
        let input_table = format!("__netlens_input_{run_id}");
        let selection = Selection {
            features: Vec::new(),
            exclude: Vec::new(),
            id: id.clone(),
            label: label.clone(),
        };
        let loaded = features::load_for_model(store, &source, &model.encoding, &selection, &input_table, false)?;
        if request.label.is_some() && loaded.label_column.is_none() {
            return Err(Error::FeatureSource {
                input: features::short(&input),
                reason: format!(
                    "has no column '{}' for --label",
                    request.label.clone().unwrap_or_default()
                ),
            });
        }
        let groups = groups(&model.encoding);
        let reference = if Source::parse(&training_source) == source {
            reference_row(loaded.x.view(), &groups)
        } else {
            let reference_table = format!("__netlens_reference_{run_id}");
            let reference_rows = features::load_for_model(
                store,
                &Source::parse(&training_source),
                &model.encoding,
                &Selection::default(),
                &reference_table,
                false,
            )
            .map_err(|e| {
                Error::Usage(format!(
                    "explain needs the training medians of model {}@{}, from its training source, which cannot be read now: {e}",
                    model.name, model.version
                ))
            })?;
            reference_rows.input.drop(conn)?;
            reference_row(reference_rows.x.view(), &groups)
        };
        let load_ms = ms(started);
        let mut notes = Vec::new();
        if let Some(run) = &run {
            if request.source.is_none() && run.rows_in != loaded.x.nrows() as i64 {
                notes.push(format!(
                    "note: run {} read {} rows of its input, which has {} now; row_id is the position in the input as explain read it",
                    run.run_id,
                    run.rows_in,
                    loaded.x.nrows()
                ));
            }
        }
        let started = Instant::now();
        let n = loaded.x.nrows();
        if n < 2 {
            return Err(Error::FeatureSource {
                input: features::short(&input),
                reason: format!("has {n} rows; explain needs at least 2 to shuffle"),
            });
        }
        let base = scores(stage, &model, loaded.x.view())?;
        interrupted()?;

        // Permutation importance on a seeded sample.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(request.seed);
        let mut rows: Vec<usize> = (0..n).collect();
        if n > request.sample {
            rows.shuffle(&mut rng);
            rows.truncate(request.sample);
            rows.sort_unstable();
        }
        let sample = loaded.x.select(Axis(0), &rows);
        let sample_base: Vec<f64> = rows.iter().map(|&i| base[i]).collect();
        let sample_labels: Vec<Option<bool>> = if loaded.labels.is_empty() {
            Vec::new()
        } else {
            rows.iter().map(|&i| loaded.labels[i]).collect()
        };
        let baseline_auc = if sample_labels.is_empty() {
            None
        } else {
            evaluation::roc_auc(&sample_labels, &sample_base)
        };
        let (measure, baseline) = match baseline_auc {
            Some(auc) => ("roc_auc_drop", Some(auc)),
            None => ("mean_abs_score_shift", Some(mean_std(&sample_base).0)),
        };
        let mut importance: Vec<(String, f64, f64)> = Vec::new();
        for g in &groups {
            let mut values = Vec::with_capacity(request.repeats);
            for _ in 0..request.repeats {
                let mut order: Vec<usize> = (0..rows.len()).collect();
                order.shuffle(&mut rng);
                let mut shuffled = sample.clone();
                for (to, &from) in order.iter().enumerate() {
                    for j in g.start..g.start + g.width {
                        shuffled[[to, j]] = sample[[from, j]];
                    }
                }
                let permuted = scores(stage, &model, shuffled.view())?;
                interrupted()?;
                values.push(match baseline_auc {
                    Some(auc) => auc - evaluation::roc_auc(&sample_labels, &permuted).unwrap_or(auc),
                    None => {
                        permuted
                            .iter()
                            .zip(&sample_base)
                            .map(|(p, b)| (p - b).abs())
                            .sum::<f64>()
                            / rows.len() as f64
                    }
                });
            }
            let (mean, std) = mean_std(&values);
            importance.push((g.name.clone(), mean, std));
        }
        importance.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        // Per row: each column alone set to the training reference, for the top rows.
        let mut ranked: Vec<usize> = (0..n).filter(|&i| base[i].is_finite()).collect();
        ranked.sort_by(|&a, &b| base[b].total_cmp(&base[a]).then(a.cmp(&b)));
        ranked.truncate(request.top);
        let flagged = stage
            .apply(&model.model, loaded.x.select(Axis(0), &ranked).view())?
            .anomaly
            .map(|a| a.flagged)
            .unwrap_or_else(|| vec![false; ranked.len()]);
        let mut variants = Array2::<f64>::zeros((ranked.len() * groups.len(), loaded.x.ncols()));
        for (r, &i) in ranked.iter().enumerate() {
            for (k, g) in groups.iter().enumerate() {
                let mut row = variants.row_mut(r * groups.len() + k);
                row.assign(&loaded.x.row(i));
                for j in g.start..g.start + g.width {
                    row[j] = reference[j];
                }
            }
        }
        let replaced = if ranked.is_empty() {
            Vec::new()
        } else {
            scores(stage, &model, variants.view())?
        };
        interrupted()?;
        let explain_ms = ms(started);

        conn.execute(
            "INSERT INTO explain_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                run_id,
                run.as_ref().map(|r| r.run_id),
                model.name,
                model.version,
                model.stage,
                input,
                training_source,
                baseline_auc.and(loaded.label_column.clone()),
                n as i64,
                rows.len() as i64,
                request.repeats as i32,
                request.seed,
                measure,
                baseline,
                ranked.len() as i32,
                load_ms,
                explain_ms,
                now.naive_utc()
            ],
        )
        .map_err(Error::sql)?;
        {
            let mut insert = conn
                .prepare("INSERT INTO permutation_importance VALUES (?, ?, ?, ?, ?)")
                .map_err(Error::sql)?;
            for (rank, (feature, mean, std)) in importance.iter().enumerate() {
                insert
                    .execute(duckdb::params![run_id, feature, rank as i32 + 1, mean, std])
                    .map_err(Error::sql)?;
            }
        }
        let ids = row_ids(conn, &loaded, &ranked)?;
        {
            let mut insert = conn
                .prepare("INSERT INTO row_explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .map_err(Error::sql)?;
            let reference_text: Vec<Option<String>> = groups.iter().map(|g| g.value(&reference)).collect();
            for (r, &i) in ranked.iter().enumerate() {
                let row = loaded.x.row(i).to_vec();
                let mut drops: Vec<(usize, f64, f64)> = (0..groups.len())
                    .map(|k| {
                        let with = replaced[r * groups.len() + k];
                        (k, with, base[i] - with)
                    })
                    .collect();
                drops.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
                for (feature_rank, (k, with, drop)) in drops.into_iter().take(FEATURES_PER_ROW).enumerate() {
                    insert
                        .execute(duckdb::params![
                            run_id,
                            i as i64,
                            ids[r],
                            r as i32 + 1,
                            base[i],
                            flagged[r],
                            groups[k].name,
                            feature_rank as i32 + 1,
                            groups[k].value(&row),
                            reference_text[k],
                            with,
                            drop
                        ])
                        .map_err(Error::sql)?;
                }
            }
        }
        loaded.input.drop(conn)?;
        Ok(ExplainSummary {
            run_id,
            explained_run: run.as_ref().map(|r| r.run_id),
            model: model.name.clone(),
            version: model.version,
            measure,
            baseline,
            rows_in: n as u64,
            sampled: rows.len() as u64,
            explained_rows: ranked.len(),
            notes,
        })
    })
}

/// The id column's text of the chosen rows (None without an id column).
fn row_ids(conn: &Connection, loaded: &features::Loaded, rows: &[usize]) -> Result<Vec<Option<String>>> {
    let Some(id) = &loaded.id_column else {
        return Ok(vec![None; rows.len()]);
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let list = rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {row}, CAST({} AS VARCHAR) FROM {} WHERE {row} IN ({list})",
            crate::store::quote_ident(id),
            loaded.input.relation(),
            row = features::INPUT_ROW
        ))
        .map_err(Error::sql)?;
    let found: std::collections::HashMap<i64, Option<String>> = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)))
        .map_err(Error::sql)?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::sql)?;
    Ok(rows
        .iter()
        .map(|r| found.get(&(*r as i64)).cloned().flatten())
        .collect())
}

/// `explain`'s result rows: the importance ranking, and each explained row's reasons.
pub fn importance_sql(run_id: i64) -> String {
    format!(
        "SELECT rank, feature, round(importance, 5) AS importance, round(importance_std, 5) AS importance_std \
         FROM permutation_importance WHERE run_id = {run_id} ORDER BY rank"
    )
}

/// One line per explained row: its score and the features that pushed it out, strongest first.
pub fn rows_sql(run_id: i64) -> String {
    format!(
        "SELECT row_rank, row_id, id, round(score, 4) AS score, is_anomaly, \
         string_agg(feature || '=' || coalesce(value, 'NULL') || ' (median ' || coalesce(reference, 'NULL') || ', -' || round(score_drop, 4) || ')', '; ' ORDER BY feature_rank) \
           FILTER (score_drop > 0) AS pushed_out_by \
         FROM row_explanations WHERE run_id = {run_id} GROUP BY ALL ORDER BY row_rank"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_analysts_write_them() {
        assert_eq!(format_number(5.0), "5");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1.0 / 3.0), "0.333333");
        assert_eq!(format_number(-2.0), "-2");
    }

    #[test]
    fn the_reference_is_the_median_and_the_most_frequent_category() {
        let encoding = Encoding {
            columns: vec![
                ColumnEncoding::Numeric {
                    name: "bytes".into(),
                    mean: 10.0,
                    std: 2.0,
                    log1p: false,
                    missing_flag: false,
                },
                ColumnEncoding::Categorical {
                    name: "proto".into(),
                    categories: vec!["tcp".into(), "udp".into()],
                },
            ],
        };
        let groups = groups(&encoding);
        let x = ndarray::array![[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [5.0, 1.0, 0.0], [-1.0, 0.0, 1.0]];
        let reference = reference_row(x.view(), &groups);
        assert_eq!(reference, vec![0.5, 0.0, 1.0]);
        assert_eq!(groups[0].value(&reference).as_deref(), Some("11"));
        assert_eq!(groups[1].value(&reference).as_deref(), Some("udp"));
        assert_eq!(groups[1].value(&[0.0, 0.0, 0.0]), None);
    }

    /// Imputed values (the training mean, 0 scaled) pulled the median towards the mean.
    #[test]
    fn the_median_leaves_imputed_rows_out() {
        let encoding = Encoding {
            columns: vec![ColumnEncoding::Numeric {
                name: "bytes".into(),
                mean: 10.0,
                std: 2.0,
                log1p: false,
                missing_flag: true,
            }],
        };
        let groups = groups(&encoding);
        let x = ndarray::array![[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]];
        let reference = reference_row(x.view(), &groups);
        assert_eq!(reference, vec![2.0, 0.0]);
        assert_eq!(groups[0].value(&reference).as_deref(), Some("14"));
    }
}
