//! Analysis stages: a stage reads a feature source (any table, view or query), fits a model or
//! applies a stored one, and writes its result table keyed by `run_id`, a `model_runs` row with
//! parameters, row counts, timings and metrics, and (when fitting) a versioned row in `models`.
//! Each run is one transaction: a failing run stores nothing.
//!
//! The pieces: [`features`] (sources, feature choice, encoding, the Arrow read), the stages
//! ([`kmeans`], [`anomaly`] around [`iforest`], [`pca`], [`dbscan`]), [`evaluation`] against a
//! label column, [`explain`] (permutation importance and per-row reasons of a stored model),
//! [`calibration`] (a stored anomaly model's threshold set on a window declared clean), and
//! this module's registry, model registry and run orchestration. [`train`], [`score`],
//! [`retrain`] and [`explain::explain`] are the library entry points (the commands and `watch`
//! call them).
//! May touch: the store (reads any relation; writes only the analysis tables of
//! `sql/003_analysis.sql`, `sql/012_ensemble.sql`, `sql/018_explain.sql`, `scored_row_keys` of
//! `sql/029_feedback_rows.sql` and its own run-private scratch tables).

pub mod anomaly;
pub mod autoencoder;
pub mod calibration;
pub mod dbscan;
pub mod ensemble;
pub mod evaluation;
pub mod explain;
pub mod features;
pub mod iforest;
pub mod kmeans;
pub mod lof;
pub mod marks;
pub mod ocsvm;
pub mod pca;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use duckdb::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, UInt64Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::store::{quote_ident, quote_literal, Store};
use duckdb::arrow::array::new_null_array;
use features::{Encoding, Limits, Loaded, Selection, Source, INPUT_ROW};

/// Default seed when `--seed` is not given: runs repeat exactly unless asked otherwise.
pub const DEFAULT_SEED: u64 = 42;

/// One analysis stage. Adding a stage is implementing this and listing it in [`stages`].
pub trait Stage: Sync {
    /// Name used by `train STAGE` and stored in `models.stage`.
    fn name(&self) -> &'static str;
    /// One line for `stages`.
    fn about(&self) -> &'static str;
    /// The per-row result table it writes (`run_id, row_id, id` + its columns).
    fn table(&self) -> &'static str;
    /// Other tables a training run writes.
    fn extra_tables(&self) -> &'static [&'static str] {
        &[]
    }
    /// Source read when `train` has no `--on`.
    fn default_source(&self) -> &'static str {
        "flow_features"
    }
    /// Its `--set` parameters with defaults, for `stages`.
    fn params_help(&self) -> &'static str;
    /// Checks `--set key=value` pairs and returns every parameter in effect, defaults filled in.
    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value>;
    /// Fits a model on scaled, encoded rows.
    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted>;
    /// Applies a stored model (its JSON) to scaled, encoded rows.
    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied>;
    /// Writes the training run's extra tables (profiles, curves, importance).
    fn write_extras(&self, _extras: &Extras) -> Result<()> {
        Ok(())
    }
}

/// A fitted model.
pub struct Fitted {
    /// Serialized model, stored in `models.model`.
    pub model: Value,
    /// Metrics for `model_runs.metrics`.
    pub metrics: Map<String, Value>,
    /// The result on the training rows when fitting produced it anyway (saves applying again),
    /// with the milliseconds it took.
    pub training_output: Option<(Applied, f64)>,
}

/// Per-row values of one result column.
#[derive(Debug, Clone)]
pub enum Values {
    Int(Vec<i32>),
    Float(Vec<f64>),
    OptFloat(Vec<Option<f64>>),
    Bool(Vec<bool>),
    OptBool(Vec<Option<bool>>),
    Text(Vec<String>),
}

impl Values {
    fn sql_type(&self) -> &'static str {
        match self {
            Values::Int(_) => "INTEGER",
            Values::Float(_) | Values::OptFloat(_) => "DOUBLE",
            Values::Bool(_) | Values::OptBool(_) => "BOOLEAN",
            Values::Text(_) => "VARCHAR",
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::OptFloat(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::OptBool(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    fn arrow(&self) -> (DataType, ArrayRef) {
        match self {
            Values::Int(v) => (DataType::Int32, Arc::new(Int32Array::from(v.clone()))),
            Values::Float(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
            Values::OptFloat(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
            Values::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
            Values::OptBool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
            Values::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
        }
    }
}

/// One result column.
#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub name: &'static str,
    pub values: Values,
}

/// What anomaly-type stages say about each row, for evaluation against labels.
#[derive(Debug, Clone)]
pub struct AnomalyOutput {
    pub flagged: Vec<bool>,
    /// Continuous score, higher = more anomalous (for ROC-AUC); None when the stage has none.
    pub score: Option<Vec<f64>>,
}

/// A model applied to rows.
#[derive(Debug, Clone)]
pub struct Applied {
    pub columns: Vec<OutputColumn>,
    pub metrics: Map<String, Value>,
    pub anomaly: Option<AnomalyOutput>,
}

/// What a stage's [`Stage::write_extras`] gets.
pub struct Extras<'a> {
    pub conn: &'a Connection,
    pub run_id: i64,
    pub x: ArrayView2<'a, f64>,
    pub encoding: &'a Encoding,
    pub fitted: &'a Fitted,
    pub applied: &'a Applied,
}

static KMEANS: kmeans::KMeansStage = kmeans::KMeansStage;
static IFOREST: anomaly::IForestStage = anomaly::IForestStage;
static PCA: pca::PcaStage = pca::PcaStage;
static DBSCAN: dbscan::DbscanStage = dbscan::DbscanStage;
static OCSVM: ocsvm::OcsvmStage = ocsvm::OcsvmStage;
static LOF: lof::LofStage = lof::LofStage;
static AUTOENCODER: autoencoder::AutoencoderStage = autoencoder::AutoencoderStage;
static ENSEMBLE: ensemble::EnsembleStage = ensemble::EnsembleStage;

/// Every stage, in the order `stages` lists them.
pub fn stages() -> Vec<&'static dyn Stage> {
    vec![&KMEANS, &IFOREST, &PCA, &DBSCAN, &OCSVM, &LOF, &AUTOENCODER, &ENSEMBLE]
}

/// The stage of that name.
pub fn stage(name: &str) -> Result<&'static dyn Stage> {
    stages()
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::UnknownStage {
            name: name.to_string(),
            known: stages().iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        })
}

/// `train STAGE ...` (and what `retrain` repeats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub stage: String,
    /// `--on`: table, view or query; None reads the stage's default source.
    pub source: Option<String>,
    pub selection: Selection,
    /// `--model`: None names the model after the stage.
    pub model: Option<String>,
    pub seed: u64,
    /// `--set key=value` pairs (stage parameters, and `max_categories`).
    pub set: BTreeMap<String, String>,
}

/// `score MODEL --on SOURCE ...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// `NAME` (newest version) or `NAME@VERSION`.
    pub model: String,
    pub source: String,
    /// Create this table: the source's rows with the model's columns appended.
    pub into: Option<String>,
    /// Label column for evaluation; None uses the model's training label when the source has it.
    pub label: Option<String>,
    pub id: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: i64,
    pub kind: &'static str,
    pub stage: String,
    pub model: String,
    pub version: i32,
    pub rows_in: u64,
    pub rows_out: u64,
    pub metrics: Map<String, Value>,
    pub into: Option<String>,
    /// Columns the automatic feature choice left out, and why.
    pub skipped: Vec<String>,
    pub evaluated: bool,
    /// The evaluation (if any) was on the rows the model was fitted on: an optimistic figure.
    pub in_sample: bool,
    /// Lines for the person: what a retrain took from the analysts' marks.
    pub notes: Vec<String>,
}

/// A stored model.
#[derive(Debug, Clone)]
pub struct StoredModel {
    pub name: String,
    pub version: i32,
    pub stage: String,
    pub params: Value,
    pub request: TrainRequest,
    pub encoding: Encoding,
    pub model: Value,
    pub label_column: Option<String>,
}

/// Stages that take `log1p=true` by default: those where it was measured to raise NSL-KDD
/// ROC-AUC (iforest, the k-means distance score, ocsvm, lof and autoencoder; bench/RESULTS.md).
/// pca and dbscan have no anomaly score to measure it by and keep plain z-scores; the ensemble
/// keeps them until measured as a whole.
pub const LOG1P_BY_DEFAULT: &[&str] = &["iforest", "kmeans", "ocsvm", "lof", "autoencoder"];

fn framework_limits(stage: &str, set: &mut BTreeMap<String, String>) -> Result<Limits> {
    let mut limits = Limits {
        log1p: LOG1P_BY_DEFAULT.contains(&stage),
        ..Limits::default()
    };
    if let Some(v) = set.remove("max_categories") {
        limits.max_categories = v
            .parse()
            .map_err(|_| Error::Usage(format!("max_categories={v}: expected a whole number of categories")))?;
    }
    if let Some(v) = set.remove("log1p") {
        limits.log1p = v
            .parse()
            .map_err(|_| Error::Usage(format!("log1p={v}: expected true or false")))?;
    }
    Ok(limits)
}

/// Parses `key=value` pairs of `--set`.
pub fn parse_set(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--set {pair}: expected key=value, e.g. --set k=4")))?;
        out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(out)
}

/// Fits `request.stage` on its source and stores the model (a new version of its name), the
/// results on the training rows, the stage's extra tables and a model_runs row.
pub fn train(store: &Store, request: &TrainRequest, now: DateTime<Utc>) -> Result<RunSummary> {
    run_train(store, request, now, "train")
}

/// How a retrain uses analysts' marks (`--set feedback=false`, `--set feedback_weight=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FeedbackUse {
    on: bool,
    weight: usize,
}

fn feedback_use(set: &mut BTreeMap<String, String>) -> Result<FeedbackUse> {
    let mut out = FeedbackUse {
        on: true,
        weight: marks::DEFAULT_WEIGHT,
    };
    if let Some(v) = set.remove("feedback") {
        out.on = v
            .parse()
            .map_err(|_| Error::Usage(format!("feedback={v}: expected true or false")))?;
    }
    if let Some(v) = set.remove("feedback_weight") {
        out.weight = v
            .parse()
            .ok()
            .filter(|w| (1..=marks::MAX_WEIGHT).contains(w))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "feedback_weight={v}: expected a whole number from 1 to {}",
                    marks::MAX_WEIGHT
                ))
            })?;
    }
    Ok(out)
}

fn run_train(store: &Store, request: &TrainRequest, now: DateTime<Utc>, kind: &'static str) -> Result<RunSummary> {
    let stage = stage(&request.stage)?;
    let mut set = request.set.clone();
    let limits = framework_limits(stage.name(), &mut set)?;
    let feedback = feedback_use(&mut set)?;
    let params = stage.resolve(&set)?;
    let name = request.model.clone().unwrap_or_else(|| stage.name().to_string());
    if name.is_empty() || name.contains('@') {
        return Err(Error::Usage(format!(
            "model name '{name}' cannot be empty or contain '@' (NAME@VERSION picks a version)"
        )));
    }
    let source = Source::parse(request.source.as_deref().unwrap_or(stage.default_source()));
    run_in_transaction(store, |conn| {
        let run_id = next_run_id(conn)?;
        let input_table = format!("__netlens_input_{run_id}");
        let started = Instant::now();
        let keys = marks::SUBJECTS.contains(&stage.table());
        let loaded = features::load_training(store, &source, &request.selection, limits, &input_table, keys)?;
        let load_ms = ms(started);
        if loaded.label_column.is_some() {
            check_label(&source, &loaded)?;
        }
        // A retrain fits on its rows as the analysts' marks leave them (module marks).
        let started = Instant::now();
        let marked = match kind == "retrain" && feedback.on {
            true => Some(marks::fitting_rows(
                store,
                &source,
                &loaded,
                feedback.weight,
                &format!("__netlens_marks_{run_id}"),
            )?),
            false => None,
        };
        let marks_ms = ms(started);
        let changed = marked.as_ref().filter(|m| m.used.used > 0);
        let fit_x = changed.map_or(loaded.x.view(), |m| m.x.view());
        let started = Instant::now();
        let mut fitted = stage.fit(fit_x, &params, request.seed)?;
        let mut fit_ms = ms(started);
        if changed.is_some() {
            // Scored while fitting, those were the fitting rows, not the source's.
            fitted.training_output = None;
        }
        let (applied, score_ms) = match fitted.training_output.take() {
            Some((applied, score_ms)) => {
                // The stage scored its training rows while fitting: count that as scoring.
                fit_ms = (fit_ms - score_ms).max(0.0);
                (applied, score_ms)
            }
            None => {
                let started = Instant::now();
                let applied = stage.apply(&fitted.model, loaded.x.view())?;
                (applied, ms(started))
            }
        };
        let started = Instant::now();
        let version = next_version(conn, &name)?;
        let request_json = serde_json::to_string(request).map_err(json_err)?;
        let features = loaded.encoding.feature_names();
        conn.execute(
            &format!(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, {}, ?, ?, ?)",
                sql_list(&features)
            ),
            duckdb::params![
                name,
                version,
                stage.name(),
                run_id,
                params.to_string(),
                request_json,
                serde_json::to_string(&loaded.encoding).map_err(json_err)?,
                fitted.model.to_string(),
                now.naive_utc()
            ],
        )
        .map_err(Error::sql)?;
        let rows_out = write_rows(conn, run_id, Some(stage.table()), &loaded, &applied, None)?;
        stage.write_extras(&Extras {
            conn,
            run_id,
            x: loaded.x.view(),
            encoding: &loaded.encoding,
            fitted: &fitted,
            applied: &applied,
        })?;
        // A training run evaluates the rows it was fitted on.
        let evaluated = write_evaluation(conn, run_id, &name, version, &loaded, &applied, true)?;
        record_outputs(conn, run_id, stage.table(), stage.extra_tables(), evaluated)?;
        let mut metrics = fitted.metrics.clone();
        metrics.extend(applied.metrics.clone());
        // What a later score run compares its rows with to know whether it re-reads these.
        features::RowFingerprint::of(conn, &loaded, &loaded.encoding)?.to_metrics(&mut metrics);
        if !loaded.skipped.is_empty() {
            metrics.insert("skipped_columns".into(), json!(loaded.skipped));
        }
        let mut notes = Vec::new();
        if let Some(m) = &marked {
            let u = &m.used;
            metrics.insert("feedback_rows".into(), json!(u.used));
            metrics.insert(
                "feedback".into(),
                json!({
                    "false_positives_added": u.false_positives,
                    "weight": u.weight,
                    "true_positives_excluded": u.true_positives_excluded,
                    "true_positives_not_in_source": u.true_positives_elsewhere,
                    "unmatched": u.unmatched,
                    "unmatched_reasons": u.reasons,
                    "fit_rows": fit_x.nrows(),
                    "ms": marks_ms,
                }),
            );
            notes.push(format!(
                "feedback: {} marked row(s) used: {} false positive(s) added x{}, {} true positive(s) left out of the fitting rows ({} rows fitted)",
                u.used,
                u.false_positives,
                u.weight,
                u.true_positives_excluded,
                fit_x.nrows()
            ));
            notes.extend(u.reasons.iter().map(|r| format!("feedback not used: {r}")));
        }
        // A retrain's new version starts from its contamination threshold: an earlier version's
        // calibration is not carried over (its clean window may now be in the training rows, and
        // only the analyst knows whether it is still clean), so the run says what to run.
        if kind == "retrain" && stage.table() == "anomaly_scores" {
            if let Some(earlier) = calibration::earlier(conn, &name, version)? {
                metrics.insert(
                    "calibration".into(),
                    json!({
                        "needed": true,
                        "earlier_run": earlier.run_id,
                        "earlier_version": earlier.version,
                        "command": earlier.command,
                    }),
                );
                notes.push(format!(
                    "not calibrated: {name}@{} was calibrated (run {}), but version {version} flags by its contamination until you run: {}",
                    earlier.version, earlier.run_id, earlier.command
                ));
            }
        }
        let run = RunRow {
            run_id,
            kind,
            stage: stage.name(),
            model: &name,
            version,
            params: &params,
            input: &source.describe(),
            loaded: &loaded,
            rows_out,
            load_ms,
            fit_ms: Some(fit_ms),
            score_ms,
            write_ms: ms(started),
            metrics: &metrics,
            into: None,
            now,
        };
        run.insert(conn)?;
        loaded.input.drop(conn)?;
        Ok(RunSummary {
            run_id,
            kind,
            stage: stage.name().to_string(),
            model: name.clone(),
            version,
            rows_in: loaded.x.nrows() as u64,
            rows_out,
            metrics,
            into: None,
            skipped: loaded.skipped.clone(),
            evaluated,
            in_sample: evaluated,
            notes,
        })
    })
}

/// Applies a stored model to a source: writes the stage's result rows, optionally a table of the
/// source's rows with the model's columns (`into`), an evaluation when a label column is there,
/// and a model_runs row. The model is not refitted.
pub fn score(store: &Store, request: &ScoreRequest, now: DateTime<Utc>) -> Result<RunSummary> {
    let stored = load_model(store, &request.model)?;
    let stage = stage(&stored.stage)?;
    let source = Source::parse(&request.source);
    if let Some(into) = &request.into {
        if store.relation_exists(into)? {
            return Err(Error::Usage(format!(
                "a table or view named '{into}' already exists; score --into creates a new table and replaces nothing\n  hint: pick another name, or DROP TABLE {into} first"
            )));
        }
    }
    let selection = Selection {
        features: Vec::new(),
        exclude: Vec::new(),
        id: request.id.clone(),
        label: request.label.clone().or_else(|| stored.label_column.clone()),
    };
    run_in_transaction(store, |conn| {
        let run_id = next_run_id(conn)?;
        let input_table = format!("__netlens_input_{run_id}");
        let started = Instant::now();
        let keys = marks::SUBJECTS.contains(&stage.table());
        let loaded = features::load_for_model(store, &source, &stored.encoding, &selection, &input_table, keys)?;
        let load_ms = ms(started);
        if request.label.is_some() && loaded.label_column.is_none() {
            return Err(Error::FeatureSource {
                input: features::short(&source.describe()),
                reason: format!(
                    "has no column '{}' for --label",
                    request.label.clone().unwrap_or_default()
                ),
            });
        }
        if loaded.label_column.is_some() {
            check_label(&source, &loaded)?;
        }
        let started = Instant::now();
        let applied = stage.apply(&stored.model, loaded.x.view())?;
        let applied = calibration::flag_by_latest(conn, &stored, stage, applied)?;
        let score_ms = ms(started);
        let started = Instant::now();
        let rows_out = write_rows(
            conn,
            run_id,
            Some(stage.table()),
            &loaded,
            &applied,
            request.into.as_deref(),
        )?;
        let in_sample = if loaded.label_column.is_some() {
            rereads_training_rows(conn, &stored, stage, &source, &loaded)?
        } else {
            false
        };
        let evaluated = write_evaluation(conn, run_id, &stored.name, stored.version, &loaded, &applied, in_sample)?;
        record_outputs(conn, run_id, stage.table(), &[], evaluated)?;
        let params = stored.params.clone();
        let run = RunRow {
            run_id,
            kind: "score",
            stage: stage.name(),
            model: &stored.name,
            version: stored.version,
            params: &params,
            input: &source.describe(),
            loaded: &loaded,
            rows_out,
            load_ms,
            fit_ms: None,
            score_ms,
            write_ms: ms(started),
            metrics: &applied.metrics,
            into: request.into.as_deref(),
            now,
        };
        run.insert(conn)?;
        loaded.input.drop(conn)?;
        Ok(RunSummary {
            run_id,
            kind: "score",
            stage: stage.name().to_string(),
            model: stored.name.clone(),
            version: stored.version,
            rows_in: loaded.x.nrows() as u64,
            rows_out,
            metrics: applied.metrics.clone(),
            into: request.into.clone(),
            skipped: Vec::new(),
            evaluated,
            in_sample: evaluated && in_sample,
            notes: Vec::new(),
        })
    })
}

/// Whether a score run's rows are exactly the rows `stored` was fitted on (then its evaluation is
/// in-sample). Models whose training run stored a [`features::RowFingerprint`] compare it with
/// this read's: a live view that gained rows since is no longer the training rows, and another
/// source name over the same rows is. Older models fall back to comparing source names.
fn rereads_training_rows(
    conn: &Connection,
    stored: &StoredModel,
    stage: &dyn Stage,
    source: &Source,
    loaded: &Loaded,
) -> Result<bool> {
    let training_metrics: Option<String> = conn
        .query_row(
            "SELECT r.metrics FROM models m JOIN model_runs r USING (run_id) WHERE m.name = ? AND m.version = ?",
            duckdb::params![stored.name, stored.version],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(Error::sql)?;
    let fitted_on = training_metrics
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .and_then(|m| features::RowFingerprint::from_metrics(&m));
    Ok(match fitted_on {
        Some(fitted_on) => features::RowFingerprint::of(conn, loaded, &stored.encoding)? == fitted_on,
        None => Source::parse(stored.request.source.as_deref().unwrap_or(stage.default_source())) == *source,
    })
}

/// Applies a stored model to `source` and creates table `into` with the source's rows and the
/// model's columns, as `score --into` does, but as part of the caller's transaction and
/// without a run of its own (no model_runs row, no rows in the stage's table). For stages that
/// compose models, such as `policy`.
fn apply_into(store: &Store, model: &StoredModel, source: &str, id: &str, into: &str) -> Result<u64> {
    let stage = stage(&model.stage)?;
    let conn = store.conn();
    let scratch_id = next_run_id(conn)?;
    let input_table = format!("__netlens_input_{scratch_id}");
    let selection = Selection {
        features: Vec::new(),
        exclude: Vec::new(),
        id: Some(id.to_string()),
        label: None,
    };
    let loaded = features::load_for_model(
        store,
        &Source::Query(source.to_string()),
        &model.encoding,
        &selection,
        &input_table,
        false,
    )?;
    let applied = stage.apply(&model.model, loaded.x.view())?;
    let applied = calibration::flag_by_latest(conn, model, stage, applied)?;
    let rows = write_rows(conn, scratch_id, None, &loaded, &applied, Some(into))?;
    loaded.input.drop(conn)?;
    Ok(rows)
}

/// Refits stored models on the newest data with their stored request: one model name, every
/// model of one stage, or (None) every model name. Each refit is a new version, in its own run.
pub fn retrain(store: &Store, target: Option<&str>, now: DateTime<Utc>) -> Result<Vec<RunSummary>> {
    let names: Vec<(String, String)> =
        query_strings2(store.conn(), "SELECT name, stage FROM latest_models ORDER BY name")?;
    let chosen: Vec<String> = match target {
        None => names.iter().map(|(n, _)| n.clone()).collect(),
        Some(t) => {
            let (name, _) = split_version(t);
            if names.iter().any(|(n, _)| n == name) {
                vec![name.to_string()]
            } else if stage(t).is_ok() {
                names
                    .iter()
                    .filter(|(_, s)| s.eq_ignore_ascii_case(t))
                    .map(|(n, _)| n.clone())
                    .collect()
            } else {
                return Err(Error::UnknownModel { name: t.to_string() });
            }
        }
    };
    if chosen.is_empty() {
        return Err(match target {
            Some(t) => Error::UnknownModel { name: t.to_string() },
            None => Error::Usage(
                "retrain refits the stored models, and none is stored yet\n  hint: fit one first with \
                 `netlens train STAGE` (`netlens stages` lists the stages)"
                    .to_string(),
            ),
        });
    }
    let mut out = Vec::new();
    for name in chosen {
        let stored = load_model(store, &name)?;
        let mut request = stored.request.clone();
        request.model = Some(stored.name.clone());
        // A model keeps the encoding it was fitted with: one stored before its stage took log1p
        // by default (its request has no log1p key) is refitted as it was, not on a new scale.
        request
            .set
            .entry("log1p".to_string())
            .or_insert_with(|| stored.encoding.log_columns().contains(&true).to_string());
        out.push(run_train(store, &request, now, "retrain")?);
    }
    Ok(out)
}

fn split_version(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    }
}

/// Reads `NAME` (newest version) or `NAME@VERSION` from `models`.
pub fn load_model(store: &Store, spec: &str) -> Result<StoredModel> {
    let (name, version) = split_version(spec.trim());
    let version: Option<i32> = match version {
        Some(v) => Some(v.parse().map_err(|_| Error::UnknownModel { name: spec.to_string() })?),
        None => None,
    };
    let row = store.conn().query_row(
        "SELECT name, version, stage, params, request, encoding, model FROM models \
         WHERE name = ? AND (? IS NULL OR version = ?) ORDER BY version DESC LIMIT 1",
        duckdb::params![name, version, version],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        },
    );
    let (name, version, stage, params, request, encoding, model) = match row {
        Ok(row) => row,
        Err(duckdb::Error::QueryReturnedNoRows) => return Err(Error::UnknownModel { name: spec.to_string() }),
        Err(e) => return Err(Error::sql(e)),
    };
    let damaged = |what: &str, e: serde_json::Error| Error::ModelInput {
        model: "stored model",
        reason: format!("{name}@{version}: its {what} cannot be read ({e}); retrain it"),
    };
    let request: TrainRequest = serde_json::from_str(&request).map_err(|e| damaged("request", e))?;
    Ok(StoredModel {
        label_column: request.selection.label.clone(),
        name: name.clone(),
        version,
        stage,
        params: serde_json::from_str(&params).map_err(|e| damaged("params", e))?,
        encoding: serde_json::from_str(&encoding).map_err(|e| damaged("encoding", e))?,
        model: serde_json::from_str(&model).map_err(|e| damaged("model", e))?,
        request,
    })
}

/// `models`: the query listing stored models.
pub fn models_sql(all_versions: bool) -> String {
    format!(
        "SELECT name, version, stage, created_at, run_id, len(features) AS features, params \
         FROM {} ORDER BY name, version",
        if all_versions { "models" } else { "latest_models" }
    )
}

/// `stages`: the query listing the stages.
pub fn stages_sql() -> String {
    let rows: Vec<String> = stages()
        .iter()
        .map(|s| {
            let mut tables = vec![s.table()];
            tables.extend_from_slice(s.extra_tables());
            format!(
                "({}, {}, {}, {}, {})",
                quote_literal(s.name()),
                quote_literal(s.about()),
                quote_literal(&tables.join(", ")),
                quote_literal(s.default_source()),
                quote_literal(s.params_help())
            )
        })
        .collect();
    let mut rows = rows;
    rows.push(format!(
        "('policy', {}, 'verdicts, policy_baseline', 'flow_features', {})",
        quote_literal(policy::ABOUT),
        quote_literal(policy::PARAMS_HELP)
    ));
    format!(
        "SELECT * FROM (VALUES {}) AS stages(stage, about, tables, default_source, params)",
        rows.join(", ")
    )
}

fn next_run_id(conn: &Connection) -> Result<i64> {
    crate::store::runs::next_run_id(conn)
}

/// Records the tables run `run_id` wrote, so their `latest_*` views show it: the stage's own
/// table always (no rows is a result too), the evaluation when there was one, and the other
/// tables a training run may write only when it wrote rows there (a k=3 run has no elbow).
fn record_outputs(conn: &Connection, run_id: i64, table: &str, extras: &[&str], evaluated: bool) -> Result<()> {
    crate::store::runs::record_output(conn, run_id, table)?;
    if evaluated {
        crate::store::runs::record_output(conn, run_id, "evaluation")?;
    }
    for extra in extras {
        let written: bool = conn
            .query_row(
                &format!("SELECT count(*) > 0 FROM {} WHERE run_id = ?", quote_ident(extra)),
                [run_id],
                |r| r.get(0),
            )
            .map_err(Error::sql)?;
        if written {
            crate::store::runs::record_output(conn, run_id, extra)?;
        }
    }
    Ok(())
}

fn next_version(conn: &Connection, name: &str) -> Result<i32> {
    conn.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = ?",
        [name],
        |r| r.get(0),
    )
    .map_err(Error::sql)
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn json_err(e: serde_json::Error) -> Error {
    Error::ModelInput {
        model: "model registry",
        reason: format!("cannot serialize: {e}"),
    }
}

fn sql_list(items: &[String]) -> String {
    format!(
        "[{}]::VARCHAR[]",
        items.iter().map(|s| quote_literal(s)).collect::<Vec<_>>().join(", ")
    )
}

fn drop_table(conn: &Connection, name: &str) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(name)))
        .map_err(Error::sql)
}

fn query_strings2(conn: &Connection, sql: &str) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(sql).map_err(Error::sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(Error::sql)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().map_err(Error::sql)
}

/// A label column must have both classes among its non-NULL rows.
fn check_label(source: &Source, loaded: &Loaded) -> Result<()> {
    let positives = loaded.labels.iter().filter(|l| **l == Some(true)).count();
    let negatives = loaded.labels.iter().filter(|l| **l == Some(false)).count();
    if positives == 0 || negatives == 0 {
        let column = loaded.label_column.clone().unwrap_or_default();
        return Err(Error::FeatureSource {
            input: features::short(&source.describe()),
            reason: format!(
                "label column '{column}' has one class only ({positives} anomalous, {negatives} normal rows); evaluation needs both\n  hint: drop --label, or score a source with both normal and anomalous rows (normal labels: {})",
                features::NORMAL_LABELS.join(", ")
            ),
        });
    }
    Ok(())
}

/// Writes the per-row results into `table` (and, with `into`, a new table of the source's rows
/// with the result columns appended). Returns the rows written.
fn write_rows(
    conn: &Connection,
    run_id: i64,
    table: Option<&str>,
    loaded: &Loaded,
    applied: &Applied,
    into: Option<&str>,
) -> Result<u64> {
    let n = loaded.x.nrows();
    if let Some(c) = applied.columns.iter().find(|c| c.values.len() != n) {
        return Err(Error::ModelInput {
            model: "stage",
            reason: format!("column {} has {} values for {n} rows", c.name, c.values.len()),
        });
    }
    if into.is_some() {
        if let Some(clash) = applied
            .columns
            .iter()
            .find(|c| loaded.source_columns.iter().any(|s| s.eq_ignore_ascii_case(c.name)))
        {
            return Err(Error::Usage(format!(
                "the source already has a column named '{}', which score --into would add\n  hint: rename it in a query, e.g. --on \"SELECT * RENAME ({} AS old_{}) FROM ...\"",
                clash.name, clash.name, clash.name
            )));
        }
    }
    let row_ids = || -> ArrayRef { Arc::new(Int64Array::from_iter_values(0..n as i64)) };
    let input = loaded.input.relation();
    if let Some(table) = table {
        // Straight into the stage's table: the ids were read with the features, so nothing is
        // joined back to the source.
        let mut given: Vec<(&str, ArrayRef)> = vec![
            ("run_id", Arc::new(Int64Array::from_value(run_id, n)) as ArrayRef),
            ("row_id", row_ids()),
        ];
        if let Some(ids) = &loaded.ids {
            given.push(("id", ids.clone()));
        }
        given.extend(applied.columns.iter().map(|c| (c.name, c.values.arrow().1)));
        append_columns(conn, table, n, given)?;
        // Without an id column a row's position is all its result row names: the key of its
        // values lets an analyst's mark find it again in a source that changed (module marks).
        if loaded.id_column.is_none() && marks::SUBJECTS.contains(&table) {
            match &loaded.row_keys {
                Some(keys) => append_columns(
                    conn,
                    "scored_row_keys",
                    n,
                    vec![
                        ("run_id", Arc::new(Int64Array::from_value(run_id, n)) as ArrayRef),
                        ("row_id", row_ids()),
                        ("row_key", Arc::new(UInt64Array::from(keys.clone())) as ArrayRef),
                    ],
                )?,
                None => conn
                    .execute_batch(&format!(
                        "INSERT INTO scored_row_keys SELECT {run_id}, {INPUT_ROW}, {} FROM {input}",
                        marks::row_key_sql("", &loaded.source_columns)
                    ))
                    .map_err(Error::sql)?,
            }
        }
    }
    if let Some(into) = into {
        let scratch = format!("__netlens_result_{run_id}");
        let mut ddl = vec!["row_id BIGINT".to_string()];
        ddl.extend(
            applied
                .columns
                .iter()
                .map(|c| format!("{} {}", quote_ident(c.name), c.values.sql_type())),
        );
        // TEMP: scratch that never reaches the database file.
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE {} ({})",
            quote_ident(&scratch),
            ddl.join(", ")
        ))
        .map_err(Error::sql)?;
        let mut fields = vec![Field::new("row_id", DataType::Int64, false)];
        let mut arrays: Vec<ArrayRef> = vec![row_ids()];
        for c in &applied.columns {
            let (ty, array) = c.values.arrow();
            fields.push(Field::new(c.name, ty, true));
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| Error::ModelInput {
            model: "stage",
            reason: format!("cannot assemble results: {e}"),
        })?;
        {
            let mut appender = conn.appender(&scratch).map_err(Error::sql)?;
            appender.append_record_batch(batch).map_err(Error::sql)?;
            appender.flush().map_err(Error::sql)?;
        }
        let r_names: Vec<String> = applied
            .columns
            .iter()
            .map(|c| format!("r.{}", quote_ident(c.name)))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE {} AS SELECT i.* EXCLUDE ({INPUT_ROW}), {} FROM {input} i JOIN {} r ON r.row_id = i.{INPUT_ROW} ORDER BY i.{INPUT_ROW}",
            quote_ident(into),
            r_names.join(", "),
            quote_ident(&scratch)
        ))
        .map_err(Error::sql)?;
        drop_table(conn, &scratch)?;
    }
    Ok(n as u64)
}

/// Appends `n` rows to `table` (of the `main` schema) through the appender: `given` columns by
/// name, every other column of the table NULL. A given column the table lacks is an error, as an
/// INSERT naming it would be. Unlike an INSERT, a column's DEFAULT is not applied (no stage
/// table has one), and only the column types the stage tables use (DOUBLE, BOOLEAN, INTEGER,
/// BIGINT, VARCHAR) can be left NULL.
fn append_columns(conn: &Connection, table: &str, n: usize, given: Vec<(&str, ArrayRef)>) -> Result<()> {
    let columns = query_strings2(
        conn,
        &format!(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() \
             AND schema_name = 'main' AND table_name = {} ORDER BY column_index",
            quote_literal(table)
        ),
    )?;
    let fail = |reason: String| Error::ModelInput {
        model: "stage",
        reason: format!("cannot write the results into {table}: {reason}"),
    };
    if let Some((name, _)) = given.iter().find(|(name, _)| !columns.iter().any(|(c, _)| c == name)) {
        return Err(fail(format!("it has no column '{name}'")));
    }
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (name, sql_type) in &columns {
        let array = match given.iter().find(|(g, _)| g == name) {
            Some((_, array)) => array.clone(),
            None => {
                let ty = match sql_type.as_str() {
                    "DOUBLE" => DataType::Float64,
                    "BOOLEAN" => DataType::Boolean,
                    "INTEGER" => DataType::Int32,
                    "BIGINT" => DataType::Int64,
                    "VARCHAR" => DataType::Utf8,
                    other => return Err(fail(format!("no value for its {other} column '{name}'"))),
                };
                new_null_array(&ty, n)
            }
        };
        fields.push(Field::new(name.as_str(), array.data_type().clone(), true));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| fail(e.to_string()))?;
    let mut appender = conn.appender(table).map_err(Error::sql)?;
    appender.append_record_batch(batch).map_err(Error::sql)?;
    appender.flush().map_err(Error::sql)
}

fn write_evaluation(
    conn: &Connection,
    run_id: i64,
    model: &str,
    version: i32,
    loaded: &Loaded,
    applied: &Applied,
    in_sample: bool,
) -> Result<bool> {
    let (Some(label), Some(anomaly)) = (&loaded.label_column, &applied.anomaly) else {
        return Ok(false);
    };
    let Some(e) = evaluation::evaluate(&loaded.labels, &anomaly.flagged, anomaly.score.as_deref()) else {
        return Ok(false);
    };
    conn.execute(
        "INSERT INTO evaluation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        duckdb::params![
            run_id,
            model,
            version,
            label,
            e.rows as i64,
            e.positives as i64,
            e.tp as i64,
            e.fp as i64,
            e.tn as i64,
            e.fn_ as i64,
            e.precision,
            e.recall,
            e.f1,
            e.accuracy,
            e.roc_auc,
            in_sample
        ],
    )
    .map_err(Error::sql)?;
    Ok(true)
}

struct RunRow<'a> {
    run_id: i64,
    kind: &'static str,
    stage: &'static str,
    model: &'a str,
    version: i32,
    params: &'a Value,
    input: &'a str,
    loaded: &'a Loaded,
    rows_out: u64,
    load_ms: f64,
    fit_ms: Option<f64>,
    score_ms: f64,
    write_ms: f64,
    metrics: &'a Map<String, Value>,
    into: Option<&'a str>,
    now: DateTime<Utc>,
}

impl RunRow<'_> {
    fn insert(&self, conn: &Connection) -> Result<()> {
        conn.execute(
            "INSERT INTO model_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            duckdb::params![
                self.run_id,
                self.kind,
                self.stage,
                self.model,
                self.version,
                self.params.to_string(),
                self.input,
                self.loaded.id_column,
                self.loaded.label_column,
                self.loaded.encoding.width() as i32,
                self.loaded.x.nrows() as i64,
                self.rows_out as i64,
                self.loaded.imputed as i64,
                self.load_ms,
                self.fit_ms,
                self.score_ms,
                self.write_ms,
                Value::Object(self.metrics.clone()).to_string(),
                self.into,
                self.now.naive_utc()
            ],
        )
        .map_err(Error::sql)?;
        Ok(())
    }
}

/// Index of the knee of a curve: the point farthest from the straight line (chord) between its
/// first and last point, both axes scaled to 0..1 so neither unit dominates. None for fewer than
/// three points.
pub fn knee(xs: &[f64], ys: &[f64]) -> Option<usize> {
    if xs.len() < 3 || xs.len() != ys.len() {
        return None;
    }
    let (x0, x1) = (xs[0], xs[xs.len() - 1]);
    let (ymin, ymax) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
    let sx = if x1 != x0 { x1 - x0 } else { 1.0 };
    let sy = if ymax > ymin { ymax - ymin } else { 1.0 };
    let p: Vec<(f64, f64)> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| ((x - x0) / sx, (y - ymin) / sy))
        .collect();
    let (a, b) = (p[0], p[p.len() - 1]);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let norm = (dx * dx + dy * dy).sqrt();
    if norm == 0.0 {
        return None;
    }
    let mut best = (0usize, -1.0f64);
    for (i, q) in p.iter().enumerate() {
        let d = ((q.0 - a.0) * dy - (q.1 - a.1) * dx).abs() / norm;
        if d > best.1 {
            best = (i, d);
        }
    }
    Some(best.0)
}

/// Reads a typed parameter from `--set` pairs, with a default.
pub(crate) fn param<T: std::str::FromStr>(
    stage: &'static str,
    set: &BTreeMap<String, String>,
    key: &str,
    default: T,
    what: &str,
) -> Result<T> {
    match set.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Error::StageParams {
            stage,
            reason: format!("{key}={v}: expected {what}"),
        }),
    }
}

/// A whole-number stage parameter, at most `max`: a huge one (`k_min=18446744073709551615`)
/// overflowed arithmetic or asked for memory without end.
pub(crate) fn count_param(
    stage: &'static str,
    set: &BTreeMap<String, String>,
    key: &str,
    default: usize,
    max: usize,
    what: &str,
) -> Result<usize> {
    let value: usize = param(stage, set, key, default, what)?;
    if value > max {
        return Err(Error::StageParams {
            stage,
            reason: format!("{key}={value}: at most {max}"),
        });
    }
    Ok(value)
}

/// Refuses `--set` keys a stage does not know.
pub(crate) fn known_keys(stage: &'static str, set: &BTreeMap<String, String>, known: &[&str]) -> Result<()> {
    match set.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(Error::StageParams {
            stage,
            reason: format!(
                "unknown parameter '{k}'; {stage} takes {} (and max_categories, log1p, feedback, feedback_weight)",
                known.join(", ")
            ),
        }),
    }
}

/// Deserializes a stage's resolved parameters or stored model.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(stage: &'static str, what: &str, value: &Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| Error::ModelInput {
        model: stage,
        reason: format!("stored {what} cannot be read ({e}); retrain the model"),
    })
}

/// Serializes a stage's parameters or model.
pub(crate) fn to_json<T: Serialize>(stage: &'static str, value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::ModelInput {
        model: stage,
        reason: format!("cannot serialize: {e}"),
    })
}

/// One stage run in one transaction. A Ctrl-C while the run was in Rust (the fit: no statement
/// for DuckDB to interrupt) rolls it back too, as one during its SQL does.
fn run_in_transaction<T>(store: &Store, work: impl FnOnce(&duckdb::Connection) -> Result<T>) -> Result<T> {
    store.in_transaction(|conn| {
        let value = work(conn)?;
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        Ok(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of a relation, in its order, as text (`ORDER BY` of a base table's rowid).
    fn rows_of(store: &Store, sql: &str) -> Vec<String> {
        let mut stmt = store.conn().prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    fn score_run(store: &Store, model: &str, source: &str, into: &str) -> i64 {
        let request = ScoreRequest {
            model: model.into(),
            source: source.into(),
            into: Some(into.into()),
            label: None,
            id: None,
        };
        score(store, &request, Utc::now()).unwrap().run_id
    }

    /// Whether a run would read `name` in place (no copy), asked as a run asks, in a transaction.
    fn read_in_place(store: &Store, name: &str) -> bool {
        store
            .in_transaction(|_| {
                let (input, _) = features::open_input(store, &Source::parse(name), "__netlens_input_t")?;
                input.drop(store.conn())?;
                Ok(input.in_place())
            })
            .unwrap()
    }

    #[test]
    fn a_base_table_read_in_place_gives_what_its_copy_gives_row_for_row() {
        // Duplicate rows (four equal outliers, and 0 = 300 = 600 below), NULLs in a feature and in
        // the id, a category; a view over each table is always copied first (the path before
        // tables were read in place), and so is a table with deleted rows (gaps in its rowids).
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TABLE plain AS SELECT sin((i % 300) * 1.7) AS a, \
                   CASE WHEN i % 7 = 0 THEN NULL ELSE cos((i % 300) * 2.3) END AS b, \
                   CASE WHEN i % 3 = 0 THEN 'tcp' ELSE 'udp' END AS proto FROM range(900) t(i) ORDER BY i;
                 INSERT INTO plain SELECT 5.0, 5.0, 'tcp' FROM range(4);
                 CREATE TABLE with_ids AS SELECT CASE WHEN i = 5 THEN NULL ELSE 1000 + i END AS id, \
                   sin(i * 1.3) AS a, cos(i * 0.7) AS b FROM range(500) t(i) ORDER BY i;
                 CREATE TABLE with_gaps AS SELECT * FROM plain;
                 DELETE FROM with_gaps WHERE b IS NULL AND a > 0;
                 CREATE VIEW plain_view AS SELECT * FROM plain;
                 CREATE VIEW with_ids_view AS SELECT * FROM with_ids;
                 CREATE VIEW with_gaps_view AS SELECT * FROM with_gaps;",
            )
            .unwrap();
        let in_place = |name: &str| read_in_place(&store, name);
        assert!(in_place("plain") && in_place("with_ids"));
        assert!(!in_place("plain_view") && !in_place("with_gaps") && !in_place("SELECT * FROM plain"));

        for (table, stage) in [("plain", "iforest"), ("with_ids", "iforest"), ("with_gaps", "lof")] {
            let view = format!("{table}_view");
            let mut runs = Vec::new();
            for source in [table, view.as_str()] {
                let request = TrainRequest {
                    stage: stage.into(),
                    source: Some(source.into()),
                    selection: Selection::default(),
                    model: Some(format!("m_{source}")),
                    seed: 3,
                    set: BTreeMap::new(),
                };
                let trained = train(&store, &request, Utc::now()).unwrap();
                let model: String = store
                    .conn()
                    .query_row("SELECT model FROM models WHERE run_id = ?", [trained.run_id], |r| {
                        r.get(0)
                    })
                    .unwrap();
                let fingerprint = trained.metrics["training_fingerprint"].clone();
                let scored = score_run(&store, &format!("m_{table}"), source, &format!("into_{source}"));
                runs.push((trained.run_id, model, fingerprint, scored));
            }
            let (a, b) = (&runs[0], &runs[1]);
            assert_eq!(
                (&a.1, &a.2),
                (&b.1, &b.2),
                "{table}: the models fitted and their fingerprints"
            );
            for (ra, rb) in [(a.0, b.0), (a.3, b.3)] {
                let results = |run: i64| {
                    rows_of(
                        &store,
                        &format!(
                            "SELECT concat_ws(' ', row_id, coalesce(id, 'NULL'), score, is_anomaly) \
                             FROM anomaly_scores WHERE run_id = {run} ORDER BY row_id"
                        ),
                    )
                };
                let keys = |run: i64| {
                    rows_of(
                        &store,
                        &format!("SELECT concat_ws(' ', row_id, row_key) FROM scored_row_keys WHERE run_id = {run} ORDER BY row_id"),
                    )
                };
                let written = results(ra);
                assert!(written.len() >= 500, "{table}: {} rows", written.len());
                assert_eq!(written, results(rb), "{table}: runs {ra} and {rb}");
                assert_eq!(keys(ra), keys(rb), "{table}: runs {ra} and {rb}");
                assert_eq!(
                    keys(ra).is_empty(),
                    table == "with_ids",
                    "{table}: keys only without an id"
                );
            }
            let copied = |name: &str| {
                rows_of(
                    &store,
                    &format!("SELECT CAST(t AS VARCHAR) FROM into_{name} t ORDER BY rowid"),
                )
            };
            assert_eq!(copied(table), copied(&view), "{table}: score --into");
            // The source's rows in their order, each beside its score.
            let source_rows = rows_of(&store, &format!("SELECT CAST(t AS VARCHAR) FROM {view} t"));
            let into_rows = rows_of(
                &store,
                &format!("SELECT CAST(t AS VARCHAR) FROM (SELECT * EXCLUDE (score, is_anomaly) FROM into_{table} ORDER BY rowid) t"),
            );
            assert_eq!(source_rows, into_rows, "{table}");
        }
        let ids = rows_of(
            &store,
            "SELECT coalesce(id, 'NULL') FROM anomaly_scores WHERE run_id = (SELECT run_id FROM models WHERE name = 'm_with_ids') ORDER BY row_id",
        );
        assert_eq!(&ids[4..7], &["1004", "NULL", "1006"]);
    }

    /// A run whose source is the table it appends its results to reads only the rows stored
    /// before it (read in place, the rows it appends are not among them).
    #[test]
    fn a_run_reading_the_table_it_writes_reads_only_the_rows_before_it() {
        let store = crate::store::Store::open(&crate::store::Location::Memory, false).unwrap();
        store
            .conn()
            .execute_batch("CREATE TABLE t AS SELECT sin(i * 1.7) AS a, cos(i * 2.3) AS b FROM range(400) t(i)")
            .unwrap();
        let request = |source: &str, model: &str| TrainRequest {
            stage: "iforest".into(),
            source: Some(source.into()),
            selection: Selection::default(),
            model: Some(model.into()),
            seed: 5,
            set: BTreeMap::new(),
        };
        train(&store, &request("t", "first"), Utc::now()).unwrap();
        let rows = |sql: &str| -> i64 { store.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
        let before = rows("SELECT count(*) FROM anomaly_scores");
        assert_eq!(before, 400);
        assert!(
            read_in_place(&store, "anomaly_scores"),
            "anomaly_scores is a base table without gaps: read in place"
        );
        let trained = train(&store, &request("anomaly_scores", "on_scores"), Utc::now()).unwrap();
        let written = rows(&format!(
            "SELECT count(*) FROM anomaly_scores WHERE run_id = {}",
            trained.run_id
        ));
        assert_eq!(written, before, "the run scored the rows stored before it, no more");
        // Scoring the same table with that model: the rows stored before the score run, once each.
        let stored = rows("SELECT count(*) FROM anomaly_scores");
        let scored = score(
            &store,
            &ScoreRequest {
                model: "on_scores".into(),
                source: "anomaly_scores".into(),
                into: None,
                label: None,
                id: None,
            },
            Utc::now(),
        )
        .unwrap();
        let written = rows(&format!(
            "SELECT count(*) FROM anomaly_scores WHERE run_id = {}",
            scored.run_id
        ));
        assert_eq!(written, stored);
        assert_eq!(
            rows(&format!(
                "SELECT count(DISTINCT row_id) FROM anomaly_scores WHERE run_id = {}",
                scored.run_id
            )),
            stored
        );
    }

    #[test]
    fn knee_of_an_elbow_curve() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let ys = [100.0, 40.0, 12.0, 10.0, 9.0, 8.5];
        assert_eq!(knee(&xs, &ys), Some(2));
        assert_eq!(knee(&xs[..2], &ys[..2]), None);
    }

    #[test]
    fn set_pairs_parse_and_unknown_stages_are_named() {
        let set = parse_set(&["k=4".into(), "Contamination = 0.1".into()]).unwrap();
        assert_eq!(set.get("k").map(String::as_str), Some("4"));
        assert_eq!(set.get("contamination").map(String::as_str), Some("0.1"));
        assert!(parse_set(&["k".into()]).is_err());
        let err = stage("kmean").err().unwrap().to_string();
        assert!(
            err.contains("unknown stage 'kmean'") && err.contains("kmeans, iforest, pca, dbscan"),
            "{err}"
        );
    }
}
