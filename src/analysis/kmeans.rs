//! The `kmeans` stage: behavioural segments with linfa-clustering's K-Means (prototype 000's
//! segmentation, prototype 004's elbow method, profiles and feature importance). Writes
//! `segments`, and for training runs `segment_profiles`, `feature_importance` and, with k=auto,
//! the inertia curve in `kmeans_elbow`.
//!
//! Deliberate settings (linfa's defaults are 10 runs and a 1e-4 tolerance): one k-means++ run
//! (scikit-learn's `n_init="auto"` for k-means++), at most 300 iterations, and scikit-learn's
//! default convergence test `tol=1e-4`: the sum of the centroids' squared shifts at most 1e-4
//! times the mean variance of the columns. linfa bounds the Euclidean norm of that shift, so the
//! tolerance given to it is sqrt(1e-4 x mean column variance), measured on the rows fitted. A
//! fixed 1e-2 was that only for unit variance: one-hot columns (variance p(1 - p)) lower the
//! mean, and the fixed value stopped earlier than scikit-learn (issue 21). `--set tolerance=`
//! still sets linfa's bound directly.

use std::collections::{BTreeMap, HashSet};

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{count_param, from_json, known_keys, param, to_json, Applied, Extras, Fitted, OutputColumn, Stage, Values};
use crate::error::{Error, Result};

const NAME: &str = "kmeans";

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansParams {
    /// Number of segments; None = auto (elbow over k_min..=k_max).
    pub k: Option<usize>,
    pub k_min: usize,
    pub k_max: usize,
    pub n_runs: usize,
    /// linfa's bound on the centroids' shift; None = scikit-learn's `tol=1e-4` for the rows
    /// fitted ([`scikit_learn_tolerance`]).
    #[serde(default)]
    pub tolerance: Option<f64>,
    pub max_iterations: u64,
    /// Share of the training rows farthest from their centre that evaluation counts as flagged.
    #[serde(default = "default_contamination")]
    pub contamination: f64,
}

fn default_contamination() -> f64 {
    0.05
}

/// The stored model: centroids in scaled feature space, and the distance to its centre above
/// which a row counts as anomalous (the training distances' 1 - contamination quantile; None
/// for models trained before issue 21).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KMeansModel {
    pub centroids: Array2<f64>,
    #[serde(default)]
    pub distance_threshold: Option<f64>,
}

/// The stage.
pub struct KMeansStage;

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "kmeans",
        reason: reason.into(),
    }
}

/// Rows that differ from each other (counting stops past `limit`).
fn distinct_rows(x: ArrayView2<f64>, limit: usize) -> usize {
    let mut seen = HashSet::new();
    for row in x.rows() {
        seen.insert(row.iter().map(|v| v.to_bits()).collect::<Vec<u64>>());
        if seen.len() > limit {
            break;
        }
    }
    seen.len()
}

/// scikit-learn's default relative tolerance (`KMeans(tol=1e-4)`).
const SCIKIT_LEARN_TOL: f64 = 1e-4;

/// The bound on the Euclidean norm of the centroids' shift that is scikit-learn's convergence
/// test on `x`: sqrt(tol x mean column variance) (population variance, as numpy's `var`). Kept
/// above zero for constant columns, where any shift is 0 anyway.
fn scikit_learn_tolerance(x: ArrayView2<f64>) -> f64 {
    let mean_variance = x.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
    (SCIKIT_LEARN_TOL * mean_variance).sqrt().max(1e-12)
}

/// One K-Means fit: centroids and inertia (sum of squared distances).
fn fit_k(x: ArrayView2<f64>, k: usize, p: &KMeansParams, tolerance: f64, seed: u64) -> Result<(Array2<f64>, f64)> {
    // One k's fit runs inside linfa; the elbow's loop over k stops at Ctrl-C between them.
    if crate::interrupt::requested() {
        return Err(crate::error::Error::Interrupted);
    }
    let dataset = DatasetBase::from(x);
    let rng = Xoshiro256Plus::seed_from_u64(seed);
    let model = KMeans::params_with_rng(k, rng)
        .n_runs(p.n_runs)
        .tolerance(tolerance)
        .max_n_iterations(p.max_iterations)
        .fit(&dataset)
        .map_err(|e| invalid(format!("K-Means with k={k} failed: {e}")))?;
    let centroids = model.centroids().clone();
    let (_, distances) = assign(&centroids, x);
    let inertia = distances.iter().map(|d| d * d).sum();
    Ok((centroids, inertia))
}

/// Nearest centroid and Euclidean distance of each row (rayon-parallel).
fn assign(centroids: &Array2<f64>, x: ArrayView2<f64>) -> (Vec<i32>, Vec<f64>) {
    let rows: Vec<(i32, f64)> = x
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| {
            let mut best = (0i32, f64::INFINITY);
            for (c, centroid) in centroids.rows().into_iter().enumerate() {
                let d: f64 = row.iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.1 {
                    best = (c as i32, d);
                }
            }
            (best.0, best.1.sqrt())
        })
        .collect();
    rows.into_iter().unzip()
}

impl Stage for KMeansStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "K-Means behavioural segments (linfa-clustering), k given or by the elbow method; profiles and feature importance"
    }

    fn table(&self) -> &'static str {
        "segments"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["segment_profiles", "feature_importance", "kmeans_elbow"]
    }

    fn params_help(&self) -> &'static str {
        "k=auto|N (auto), k_min=2, k_max=10, n_runs=1, tolerance=scikit-learn's tol=1e-4 for the rows, max_iterations=300, contamination=0.05 (distance score)"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(
            NAME,
            set,
            &[
                "k",
                "k_min",
                "k_max",
                "n_runs",
                "tolerance",
                "max_iterations",
                "contamination",
            ],
        )?;
        let k = match set.get("k").map(String::as_str) {
            None | Some("auto") => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|k| *k >= 1)
                    .ok_or_else(|| Error::StageParams {
                        stage: NAME,
                        reason: format!("k={v}: expected auto or a whole number of segments, at least 1"),
                    })?,
            ),
        };
        let p = KMeansParams {
            k,
            k_min: count_param(NAME, set, "k_min", 2, 1_000, "a whole number")?,
            k_max: count_param(NAME, set, "k_max", 10, 1_000, "a whole number")?,
            n_runs: count_param(NAME, set, "n_runs", 1, 1_000, "a whole number of runs")?,
            tolerance: match set.contains_key("tolerance") {
                true => Some(param(NAME, set, "tolerance", 1e-2, "a positive number")?),
                false => None,
            },
            max_iterations: count_param(NAME, set, "max_iterations", 300, 1_000_000, "a whole number")? as u64,
            contamination: param(NAME, set, "contamination", 0.05, "a share above 0 and at most 0.5")?,
        };
        if !(p.contamination > 0.0 && p.contamination <= 0.5) {
            return Err(Error::StageParams {
                stage: NAME,
                reason: format!(
                    "contamination={}: expected a share above 0 and at most 0.5",
                    p.contamination
                ),
            });
        }
        let bad = |reason: String| Err(Error::StageParams { stage: NAME, reason });
        if p.k_min < 1 || p.k_max < p.k_min + 2 {
            return bad(format!(
                "k_min={} k_max={}: the elbow needs k_min >= 1 and at least three k values",
                p.k_min, p.k_max
            ));
        }
        if p.n_runs == 0 || p.max_iterations == 0 || p.tolerance.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            return bad("n_runs and max_iterations must be at least 1 and tolerance positive".into());
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: KMeansParams = from_json(NAME, "parameters", params)?;
        let rows = x.nrows();
        let tolerance = p.tolerance.unwrap_or_else(|| scikit_learn_tolerance(x));
        let mut metrics = Map::new();
        let (k, centroids, inertia) = match p.k {
            Some(k) => {
                if k > rows {
                    return Err(invalid(format!(
                        "k={k} is more than the {rows} rows of the source\n  hint: pick k <= {rows}, or k=auto"
                    )));
                }
                let distinct = distinct_rows(x, k);
                if distinct < k {
                    return Err(invalid(format!(
                        "k={k} but the source has only {distinct} distinct rows (after encoding)\n  hint: pick k <= {distinct}"
                    )));
                }
                let (c, inertia) = fit_k(x, k, &p, tolerance, seed)?;
                (k, c, inertia)
            }
            None => {
                let distinct = distinct_rows(x, p.k_max);
                let k_max = p.k_max.min(distinct);
                if k_max < p.k_min + 2 {
                    return Err(invalid(format!(
                        "too few rows for k=auto: the elbow tries k = {}..{} but the source has {rows} rows ({distinct} distinct)\n  hint: give k=N, or train on more rows",
                        p.k_min, p.k_max
                    )));
                }
                let mut curve = Vec::new();
                for k in p.k_min..=k_max {
                    let (c, inertia) = fit_k(x, k, &p, tolerance, seed)?;
                    curve.push((k, c, inertia));
                }
                let xs: Vec<f64> = curve.iter().map(|(k, _, _)| *k as f64).collect();
                let ys: Vec<f64> = curve.iter().map(|(_, _, i)| *i).collect();
                let at = super::knee(&xs, &ys).unwrap_or(0);
                metrics.insert(
                    "elbow".into(),
                    json!(curve.iter().map(|(k, _, i)| json!([k, i])).collect::<Vec<_>>()),
                );
                let (k, c, inertia) = curve.swap_remove(at);
                (k, c, inertia)
            }
        };
        metrics.insert("k".into(), json!(k));
        metrics.insert("k_auto".into(), json!(p.k.is_none()));
        metrics.insert("inertia".into(), json!(inertia));
        metrics.insert("n_runs".into(), json!(p.n_runs));
        metrics.insert("tolerance".into(), json!(tolerance));
        // Distance to the nearest centre as an anomaly score (a strong detector on NSL-KDD when
        // fit on normal rows): the threshold flags the contamination share of training rows.
        let (_, distances) = assign(&centroids, x);
        let distance_threshold = super::iforest::contamination_threshold(&distances, p.contamination);
        metrics.insert("distance_threshold".into(), json!(distance_threshold));
        Ok(Fitted {
            model: to_json(
                NAME,
                &KMeansModel {
                    centroids,
                    distance_threshold: Some(distance_threshold),
                },
            )?,
            metrics,
            training_output: None,
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: KMeansModel = from_json(NAME, "model", model)?;
        if model.centroids.ncols() != x.ncols() || model.centroids.nrows() == 0 {
            return Err(invalid(format!(
                "the model has {} centroids of {} features but the data has {} features",
                model.centroids.nrows(),
                model.centroids.ncols(),
                x.ncols()
            )));
        }
        let (segments, distances) = assign(&model.centroids, x);
        let anomaly = model.distance_threshold.map(|t| super::AnomalyOutput {
            flagged: distances.iter().map(|d| *d > t).collect(),
            score: Some(distances.clone()),
        });
        let mut metrics = Map::new();
        metrics.insert(
            "inertia_rows".into(),
            json!(distances.iter().map(|d| d * d).sum::<f64>()),
        );
        Ok(Applied {
            columns: vec![
                OutputColumn {
                    name: "segment",
                    values: Values::Int(segments),
                },
                OutputColumn {
                    name: "distance",
                    values: Values::Float(distances),
                },
            ],
            metrics,
            anomaly,
        })
    }

    fn write_extras(&self, e: &Extras) -> Result<()> {
        let Some(Values::Int(segments)) = e.applied.columns.first().map(|c| &c.values) else {
            return Ok(());
        };
        let names = e.encoding.feature_names();
        let unscale = e.encoding.unscale();
        let logs = e.encoding.log_columns();
        // Back to source units: undo the scaling, then log1p where the encoding applied it.
        let source = |j: usize, scaled: f64| {
            let (m, sd) = unscale[j];
            let v = m + scaled * sd;
            if logs.get(j).copied().unwrap_or(false) {
                v.exp_m1()
            } else {
                v
            }
        };
        let k = segments.iter().copied().max().map_or(0, |m| m as usize + 1);
        let (rows, width) = e.x.dim();
        let mut sums = Array2::<f64>::zeros((k, width));
        let mut sizes = vec![0usize; k];
        for (row, &s) in e.x.rows().into_iter().zip(segments) {
            let mut acc = sums.row_mut(s as usize);
            acc += &row;
            sizes[s as usize] += 1;
        }
        let overall = e.x.mean_axis(Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(width));
        // Importance: share of each feature's variance explained by the segments (eta squared).
        let mut between = vec![0.0; width];
        let mut total = vec![0.0; width];
        for row in e.x.rows() {
            for ((t, v), o) in total.iter_mut().zip(row.iter()).zip(overall.iter()) {
                *t += (v - o).powi(2);
            }
        }
        let sql_err = crate::error::Error::sql;
        let mut profile = e
            .conn
            .prepare("INSERT INTO segment_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .map_err(sql_err)?;
        for (s, &size) in sizes.iter().enumerate() {
            if size == 0 {
                continue;
            }
            let mean_scaled: Vec<f64> = sums.row(s).iter().map(|v| v / size as f64).collect();
            let mut entries: Vec<(usize, f64)> = (0..width)
                .map(|j| {
                    between[j] += size as f64 * (mean_scaled[j] - overall[j]).powi(2);
                    let std_scaled = (total[j] / rows as f64).sqrt();
                    let z = if std_scaled > 0.0 {
                        (mean_scaled[j] - overall[j]) / std_scaled
                    } else {
                        0.0
                    };
                    (j, z)
                })
                .collect();
            entries.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
            for (rank, (j, z)) in entries.into_iter().enumerate() {
                profile
                    .execute(duckdb::params![
                        e.run_id,
                        s as i32,
                        size as i64,
                        size as f64 / rows as f64,
                        names[j],
                        source(j, mean_scaled[j]),
                        source(j, overall[j]),
                        z,
                        rank as i32 + 1
                    ])
                    .map_err(sql_err)?;
            }
        }
        let mut importance: Vec<(usize, f64)> = (0..width)
            .map(|j| (j, if total[j] > 0.0 { between[j] / total[j] } else { 0.0 }))
            .collect();
        importance.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut insert = e
            .conn
            .prepare("INSERT INTO feature_importance VALUES (?, ?, ?, ?, ?)")
            .map_err(sql_err)?;
        for (rank, (j, value)) in importance.into_iter().enumerate() {
            insert
                .execute(duckdb::params![e.run_id, NAME, names[j], value, rank as i32 + 1])
                .map_err(sql_err)?;
        }
        if let Some(Value::Array(curve)) = e.fitted.metrics.get("elbow") {
            let chosen = e.fitted.metrics.get("k").and_then(Value::as_i64).unwrap_or(-1);
            let mut insert = e
                .conn
                .prepare("INSERT INTO kmeans_elbow VALUES (?, ?, ?, ?)")
                .map_err(sql_err)?;
            for point in curve {
                let k = point.get(0).and_then(Value::as_i64).unwrap_or(0);
                let inertia = point.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
                insert
                    .execute(duckdb::params![e.run_id, k as i32, inertia, k == chosen])
                    .map_err(sql_err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Array2<f64> {
        let mut rows = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (10.0, 10.0), (-10.0, 10.0)] {
            for i in 0..30 {
                let t = i as f64;
                rows.extend([cx + (t * 0.37).sin(), cy + (t * 0.91).cos()]);
            }
        }
        Array2::from_shape_vec((90, 2), rows).unwrap()
    }

    #[test]
    fn elbow_finds_three_blobs_and_is_deterministic() {
        let x = blobs();
        let params = KMeansStage.resolve(&BTreeMap::new()).unwrap();
        let a = KMeansStage.fit(x.view(), &params, 7).unwrap();
        assert_eq!(a.metrics["k"], json!(3));
        let b = KMeansStage.fit(x.view(), &params, 7).unwrap();
        assert_eq!(a.model, b.model);
        let applied = KMeansStage.apply(&a.model, x.view()).unwrap();
        let Values::Int(segments) = &applied.columns[0].values else {
            panic!()
        };
        for blob in segments.chunks(30) {
            assert!(blob.iter().all(|s| *s == blob[0]), "one blob, one segment");
        }
    }

    #[test]
    fn the_tolerance_is_scikit_learns_for_the_columns_fitted() {
        // Issue 21: a fixed 0.01 is scikit-learn's tol=1e-4 only at unit variance. Standard-scaled
        // numbers have it; two one-hot columns beside them (variance 0.25 and 0.1875) lower the
        // mean variance, so scikit-learn's test is tighter than 0.01.
        let x = blobs();
        let scaled = Array2::from_shape_fn((90, 2), |(i, j)| {
            let c = x.column(j);
            (x[[i, j]] - c.mean().unwrap()) / c.std(0.0)
        });
        let with_categories = Array2::from_shape_fn((90, 4), |(i, j)| match j {
            0 | 1 => scaled[[i, j]],
            2 => f64::from(i % 2 == 0),
            _ => f64::from(i % 4 == 0),
        });
        let mean_variance = with_categories.var_axis(Axis(0), 0.0).mean().unwrap();
        let mut set = BTreeMap::new();
        set.insert("k".to_string(), "3".to_string());
        let params = KMeansStage.resolve(&set).unwrap();
        let fitted = KMeansStage.fit(with_categories.view(), &params, 7).unwrap();
        let used = fitted.metrics["tolerance"].as_f64().unwrap();
        assert!((used - (1e-4 * mean_variance).sqrt()).abs() < 1e-15, "{used}");
        assert!(used < 0.008, "{used}");
        let fitted = KMeansStage.fit(scaled.view(), &params, 7).unwrap();
        assert!((fitted.metrics["tolerance"].as_f64().unwrap() - 0.01).abs() < 1e-12);
        // Given, it is used as it is.
        set.insert("tolerance".to_string(), "0.5".to_string());
        let params = KMeansStage.resolve(&set).unwrap();
        let fitted = KMeansStage.fit(with_categories.view(), &params, 7).unwrap();
        assert_eq!(fitted.metrics["tolerance"], json!(0.5));
    }

    #[test]
    fn k_larger_than_rows_is_refused() {
        let x = blobs();
        let mut set = BTreeMap::new();
        set.insert("k".to_string(), "100".to_string());
        let params = KMeansStage.resolve(&set).unwrap();
        let err = KMeansStage.fit(x.view(), &params, 1).err().unwrap().to_string();
        assert!(err.contains("k=100 is more than the 90 rows"), "{err}");
        set.insert("k".to_string(), "zero".to_string());
        assert!(KMeansStage.resolve(&set).is_err());
    }
}
