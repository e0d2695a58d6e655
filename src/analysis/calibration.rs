//! Calibration on a clean window (issue 21). An anomaly model's threshold comes from its
//! contamination: it flags that share (5 % by default) of its own training rows by construction,
//! so about one ordinary row in twenty is "anomalous" on any day. `calibrate` applies a stored
//! anomaly model (a stage writing `anomaly_scores`: iforest, ocsvm, lof, autoencoder) to rows the
//! analyst declares clean, held back from its training, and sets its threshold so that at most
//! `alarm_rate` of them lie above it. The calibration is a run of its own (`model_runs` kind
//! `calibrate`, model and version of the model, the threshold, the window and what it changed in
//! its metrics); from then on every `score` of that model version and every policy verdict
//! judged with it flag by the calibrated threshold (the newest calibration of the version wins).
//! `train policy --set clean_from=TIME` calibrates its own Isolation Forest the same way on the
//! windows between `clean_from` and the split.
//!
//! May touch: the store (reads any relation; writes a `model_runs` row and its run-private
//! scratch table).

use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::features::{self, Selection, Source};
use super::policy::parse_timestamp;
use super::{anomaly, load_model, ms, next_run_id, run_in_transaction, stage, Applied, Stage, StoredModel};
use crate::error::{Error, Result};
use crate::store::{quote_ident, quote_literal, Store};

/// Share of the clean window's rows that may stay above the calibrated threshold, by default:
/// one row in a thousand (on the demo's 5-minute windows, a few alarms a day on a busy host).
pub const DEFAULT_ALARM_RATE: f64 = 0.001;

/// `calibrate MODEL --on SOURCE --from T --to T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrateRequest {
    /// `NAME` (newest version) or `NAME@VERSION`.
    pub model: String,
    /// Table, view or query holding the clean window.
    pub source: String,
    /// Column placing each row in time (`window_start` by default).
    pub time_column: String,
    /// The clean window is `[from, to)` of the time column; None: unbounded on that side (both
    /// None: every row of the source is declared clean).
    pub from: Option<String>,
    pub to: Option<String>,
    pub alarm_rate: f64,
}

/// What a calibration did.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub run_id: i64,
    pub model: String,
    pub version: i32,
    pub clean_rows: u64,
    pub alarm_rate: f64,
    /// The model's own threshold (from its contamination).
    pub model_threshold: f64,
    pub threshold: f64,
    /// Clean rows above the model's own threshold, and above the calibrated one.
    pub flagged_before: u64,
    pub flagged_after: u64,
}

/// `calibrate`: see the module doc.
pub fn calibrate(store: &Store, request: &CalibrateRequest, now: DateTime<Utc>) -> Result<Calibration> {
    if !(0.0..0.5).contains(&request.alarm_rate) {
        return Err(Error::Usage(format!(
            "--alarm-rate {}: expected a share of at least 0 and below 0.5 (e.g. 0.001)",
            request.alarm_rate
        )));
    }
    let from = request.from.as_deref().map(parse_timestamp).transpose()?;
    let to = request.to.as_deref().map(parse_timestamp).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(Error::Usage(format!(
                "--from {f} is not before --to {t}: the clean window is [from, to)"
            )));
        }
    }
    let stored = load_model(store, &request.model)?;
    let source = Source::parse(&request.source);
    let columns = store.query_columns(&source.select_sql())?;
    let time = columns
        .iter()
        .find(|c| c.eq_ignore_ascii_case(&request.time_column))
        .ok_or_else(|| Error::FeatureSource {
            input: features::short(&request.source),
            reason: format!(
                "has no column '{}' to place rows in time (--time-column names it)",
                request.time_column
            ),
        })?;
    let bound = |at: NaiveDateTime, op: &str| {
        format!(
            "CAST({} AS TIMESTAMP) {op} TIMESTAMP {}",
            quote_ident(time),
            quote_literal(&at.format("%Y-%m-%d %H:%M:%S%.f").to_string())
        )
    };
    let mut filters: Vec<String> = Vec::new();
    filters.extend(from.map(|f| bound(f, ">=")));
    filters.extend(to.map(|t| bound(t, "<")));
    let rows_sql = if filters.is_empty() {
        source.select_sql()
    } else {
        format!(
            "SELECT * FROM ({}) WHERE {}",
            source.select_sql(),
            filters.join(" AND ")
        )
    };
    let window = json!({
        "time_column": time,
        "from": from.map(|f| f.to_string()),
        "to": to.map(|t| t.to_string()),
    });
    calibrate_rows(
        store,
        &stored,
        &rows_sql,
        &request.source,
        window,
        request.alarm_rate,
        now,
    )
}

/// Calibrates `stored` on the rows of `rows_sql` (declared clean), as one run. `input` is what
/// model_runs.input records; `window` goes into its metrics.
pub fn calibrate_rows(
    store: &Store,
    stored: &StoredModel,
    rows_sql: &str,
    input: &str,
    window: Value,
    alarm_rate: f64,
    now: DateTime<Utc>,
) -> Result<Calibration> {
    let stage = stage(&stored.stage)?;
    if stage.table() != "anomaly_scores" {
        return Err(Error::Usage(format!(
            "{}@{} is a {} model: calibrate sets an anomaly threshold, so it takes an iforest, ocsvm, lof or autoencoder model",
            stored.name, stored.version, stored.stage
        )));
    }
    run_in_transaction(store, |conn| {
        let run_id = next_run_id(conn)?;
        let input_table = format!("__netlens_input_{run_id}");
        let started = Instant::now();
        let loaded = features::load_for_model(
            store,
            &Source::Query(rows_sql.to_string()),
            &stored.encoding,
            &Selection::default(),
            &input_table,
            false,
        )?;
        let load_ms = ms(started);
        let rows = loaded.x.nrows();
        if rows == 0 {
            return Err(Error::FeatureSource {
                input: features::short(input),
                reason: "has no rows in the clean window: widen --from/--to, or check --time-column".to_string(),
            });
        }
        let started = Instant::now();
        let applied = stage.apply(&stored.model, loaded.x.view())?;
        let score_ms = ms(started);
        let (scores, model_threshold) = scores_and_threshold(stage, &applied)?;
        let threshold = threshold_for(&scores, alarm_rate);
        let above = |t: f64| scores.iter().filter(|s| **s > t).count() as u64;
        let calibration = Calibration {
            run_id,
            model: stored.name.clone(),
            version: stored.version,
            clean_rows: rows as u64,
            alarm_rate,
            model_threshold,
            threshold,
            flagged_before: above(model_threshold),
            flagged_after: above(threshold),
        };
        let mut metrics = Map::new();
        metrics.insert("threshold".into(), json!(threshold));
        // The exact double: serde_json's decimal text does not always read back the same one,
        // and one unit in the last place lower would flag the clean window's highest row.
        metrics.insert("threshold_bits".into(), json!(threshold.to_bits()));
        metrics.insert("model_threshold".into(), json!(model_threshold));
        metrics.insert("alarm_rate".into(), json!(alarm_rate));
        metrics.insert("clean_rows".into(), json!(rows));
        metrics.insert("flagged_at_model_threshold".into(), json!(calibration.flagged_before));
        metrics.insert("flagged_at_threshold".into(), json!(calibration.flagged_after));
        metrics.insert("window".into(), window);
        conn.execute(
            "INSERT INTO model_runs (run_id, kind, stage, model, version, params, input, id_column, label_column,
                 features, rows_in, rows_out, imputed, load_ms, fit_ms, score_ms, write_ms, metrics, into_table, started_at)
             VALUES (?, 'calibrate', ?, ?, ?, ?, ?, NULL, NULL, ?, ?, 0, ?, ?, NULL, ?, 0, ?, NULL, ?)",
            duckdb::params![
                run_id,
                stage.name(),
                stored.name,
                stored.version,
                json!({ "alarm_rate": alarm_rate }).to_string(),
                input,
                loaded.encoding.width() as i32,
                rows as i64,
                loaded.imputed as i64,
                load_ms,
                score_ms,
                Value::Object(metrics).to_string(),
                now.naive_utc()
            ],
        )
        .map_err(Error::sql)?;
        loaded.input.drop(conn)?;
        Ok(calibration)
    })
}

fn scores_and_threshold(stage: &dyn Stage, applied: &Applied) -> Result<(Vec<f64>, f64)> {
    let missing = || Error::ModelInput {
        model: "calibration",
        reason: format!("the {} stage gave no score and threshold to calibrate", stage.name()),
    };
    let scores = applied
        .anomaly
        .as_ref()
        .and_then(|a| a.score.clone())
        .ok_or_else(missing)?;
    let threshold = applied
        .metrics
        .get("threshold")
        .and_then(Value::as_f64)
        .ok_or_else(missing)?;
    Ok((scores, threshold))
}

/// The lowest threshold with at most `floor(alarm_rate * n)` of `scores` strictly above it: the
/// (k+1)-th highest score for k allowed rows (rows are flagged when score > threshold, so rows
/// tied with it are not). Scores that are not finite are ignored; none at all gives infinity
/// (nothing flagged).
pub fn threshold_for(scores: &[f64], alarm_rate: f64) -> f64 {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return f64::INFINITY;
    }
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = ((alarm_rate * sorted.len() as f64).floor() as usize).min(sorted.len() - 1);
    sorted[allowed]
}

/// The newest calibration of a model version: (calibration run, threshold).
pub fn latest(conn: &Connection, model: &str, version: i32) -> Result<Option<(i64, f64)>> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT run_id, metrics FROM model_runs WHERE kind = 'calibrate' AND model = ? AND version = ? \
             ORDER BY run_id DESC LIMIT 1",
            duckdb::params![model, version],
            |r| Ok(Some((r.get(0)?, r.get(1)?))),
        )
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(Error::sql)?;
    let Some((run_id, metrics)) = row else {
        return Ok(None);
    };
    let threshold = serde_json::from_str::<Value>(&metrics)
        .ok()
        .and_then(|m| m.get("threshold_bits").and_then(Value::as_u64))
        .map(f64::from_bits)
        .ok_or_else(|| Error::ModelInput {
            model: "calibration",
            reason: format!("calibration run {run_id} of {model}@{version} has no readable threshold; calibrate again"),
        })?;
    Ok(Some((run_id, threshold)))
}

/// The newest calibration of any version of `model` before `version`: what a retrain's new
/// version (which starts uncalibrated) reports, with the command that calibrates it the same way.
pub(crate) fn earlier(conn: &Connection, model: &str, version: i32) -> Result<Option<EarlierCalibration>> {
    let row: Option<(i64, i32, String, String)> = conn
        .query_row(
            "SELECT run_id, version, input, metrics FROM model_runs \
             WHERE kind = 'calibrate' AND model = ? AND version < ? ORDER BY run_id DESC LIMIT 1",
            duckdb::params![model, version],
            |r| Ok(Some((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))),
        )
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(Error::sql)?;
    let Some((run_id, earlier_version, input, metrics)) = row else {
        return Ok(None);
    };
    let metrics: Value = serde_json::from_str(&metrics).unwrap_or(Value::Null);
    let window = &metrics["window"];
    let mut command = format!("netlens calibrate {model} --on {}", shell_word(&input));
    for (key, flag) in [("time_column", "--time-column"), ("from", "--from"), ("to", "--to")] {
        if let Some(value) = window.get(key).and_then(Value::as_str) {
            command.push_str(&format!(" {flag} {}", shell_word(value)));
        }
    }
    if let Some(rate) = metrics.get("alarm_rate").and_then(Value::as_f64) {
        command.push_str(&format!(" --alarm-rate {rate}"));
    }
    Ok(Some(EarlierCalibration {
        run_id,
        version: earlier_version,
        command,
    }))
}

/// An earlier version's calibration (see [`earlier`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierCalibration {
    pub run_id: i64,
    pub version: i32,
    /// The `netlens calibrate` command that repeats it for the newest version.
    pub command: String,
}

/// `text` quoted for a POSIX shell when it is not a plain word.
fn shell_word(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/@".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `applied` flagged by the model version's newest calibrated threshold, when it has one (its
/// metrics then name the calibration run and the model's own threshold); unchanged otherwise.
pub(crate) fn flag_by_latest(
    conn: &Connection,
    stored: &StoredModel,
    stage: &dyn Stage,
    applied: Applied,
) -> Result<Applied> {
    if stage.table() != "anomaly_scores" {
        return Ok(applied);
    }
    let Some((run_id, threshold)) = latest(conn, &stored.name, stored.version)? else {
        return Ok(applied);
    };
    let (scores, model_threshold) = scores_and_threshold(stage, &applied)?;
    let mut out = anomaly::applied(scores, threshold);
    let mut metrics = applied.metrics;
    metrics.extend(out.metrics);
    metrics.insert("calibration_run".into(), json!(run_id));
    metrics.insert("model_threshold".into(), json!(model_threshold));
    out.metrics = metrics;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_leaves_at_most_the_alarm_rate_above_it() {
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        // Rate 0: the highest clean score; nothing clean is above it.
        assert_eq!(threshold_for(&scores, 0.0), 0.999);
        // 1 %: ten rows above.
        let t = threshold_for(&scores, 0.01);
        assert_eq!(scores.iter().filter(|s| **s > t).count(), 10);
        // Ties at the threshold are not flagged: never more than allowed.
        let tied = vec![0.5; 100];
        assert_eq!(tied.iter().filter(|s| **s > threshold_for(&tied, 0.2)).count(), 0);
        assert_eq!(threshold_for(&[f64::NAN], 0.1), f64::INFINITY);
        // A rate over every row still leaves the lowest row as the threshold.
        assert_eq!(threshold_for(&[1.0, 2.0], 0.49), 2.0);
    }
}
