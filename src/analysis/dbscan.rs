//! The `dbscan` stage: density clusters with linfa-clustering's DBSCAN (prototype 001). Writes
//! `clusters` (cluster -1 = noise).
//!
//! Settings made deliberately: eps (linfa's `tolerance`, default 1e-4, meaningless on scaled
//! data) is given or chosen at the knee of the sorted k-distance curve (distance of each point to
//! its min_points-th nearest neighbour, itself included, as scikit-learn counts min_samples),
//! computed on at most `knee_sample` points. DBSCAN's neighbour queries go through linfa-nn's
//! k-d tree, but a dense region still costs quadratic work in its size, so a source larger than
//! `sample` rows is clustered on a seeded random sample of that size (model_runs states it), and
//! the other rows join the cluster of their nearest clustered sample point within eps, else are
//! noise. Scoring new data does the same against the stored clustered points.

use std::collections::BTreeMap;

use linfa::traits::Transformer;
use linfa::ParamGuard;
use linfa_clustering::Dbscan;
use linfa_nn::distance::L2Dist;
use linfa_nn::{CommonNearestNeighbour, NearestNeighbour};
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{from_json, known_keys, param, to_json, AnomalyOutput, Applied, Fitted, OutputColumn, Stage, Values};
use crate::error::{Error, Result};

const NAME: &str = "dbscan";

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbscanParams {
    /// Neighbourhood radius in scaled feature space; None = from the k-distance knee.
    pub eps: Option<f64>,
    pub min_points: usize,
    /// Rows DBSCAN itself clusters at most.
    pub sample: usize,
    /// Points whose k-distance decides eps.
    pub knee_sample: usize,
}

/// The stored model: the clustered sample points and their clusters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbscanModel {
    pub eps: f64,
    pub min_points: usize,
    pub points: Array2<f64>,
    pub labels: Vec<i32>,
}

/// The stage.
pub struct DbscanStage;

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "dbscan",
        reason: reason.into(),
    }
}

/// Cluster of each row of `x`: that of the nearest stored point within eps, else -1.
fn nearest_cluster(model: &DbscanModel, x: ArrayView2<f64>) -> Result<Vec<i32>> {
    if model.points.nrows() == 0 {
        return Ok(vec![-1; x.nrows()]);
    }
    let index = CommonNearestNeighbour::KdTree
        .from_batch(&model.points, L2Dist)
        .map_err(|e| invalid(format!("cannot index the stored points: {e}")))?;
    let x = x.as_standard_layout();
    x.axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| {
            let found = index
                .k_nearest(row, 1)
                .map_err(|e| invalid(format!("nearest-point query failed: {e}")))?;
            Ok(match found.first() {
                Some((point, i)) => {
                    let d: f64 = point
                        .iter()
                        .zip(row.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt();
                    if d <= model.eps {
                        model.labels[*i]
                    } else {
                        -1
                    }
                }
                None => -1,
            })
        })
        .collect()
}

fn output(clusters: Vec<i32>, in_sample: Vec<bool>) -> Applied {
    let noise: Vec<bool> = clusters.iter().map(|c| *c < 0).collect();
    let n_noise = noise.iter().filter(|n| **n).count();
    let n_clusters = clusters.iter().copied().max().map_or(0, |m| (m + 1).max(0));
    let mut metrics = Map::new();
    metrics.insert("clusters".into(), json!(n_clusters));
    metrics.insert("noise".into(), json!(n_noise));
    metrics.insert(
        "noise_share".into(),
        json!(if clusters.is_empty() {
            0.0
        } else {
            n_noise as f64 / clusters.len() as f64
        }),
    );
    Applied {
        columns: vec![
            OutputColumn {
                name: "cluster",
                values: Values::Int(clusters),
            },
            OutputColumn {
                name: "is_noise",
                values: Values::Bool(noise.clone()),
            },
            OutputColumn {
                name: "in_sample",
                values: Values::Bool(in_sample),
            },
        ],
        metrics,
        anomaly: Some(AnomalyOutput {
            flagged: noise,
            score: None,
        }),
    }
}

/// eps at the knee of the sorted k-distances of (up to `knee_sample`) points of `sample`.
fn knee_eps(sample: &Array2<f64>, min_points: usize, knee_sample: usize, seed: u64) -> Result<f64> {
    let index = CommonNearestNeighbour::KdTree
        .from_batch(sample, L2Dist)
        .map_err(|e| invalid(format!("cannot index the rows: {e}")))?;
    let n = sample.nrows();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6b6e_6565);
    let probes: Vec<usize> = if n > knee_sample {
        let mut v = index::sample(&mut rng, n, knee_sample).into_vec();
        v.sort_unstable();
        v
    } else {
        (0..n).collect()
    };
    let mut distances: Vec<f64> = probes
        .par_iter()
        .map(|&i| {
            let row = sample.row(i);
            let found = index
                .k_nearest(row, min_points)
                .map_err(|e| invalid(format!("k-distance query failed: {e}")))?;
            Ok(found
                .last()
                .map(|(p, _)| {
                    p.iter()
                        .zip(row.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt()
                })
                .unwrap_or(0.0))
        })
        .collect::<Result<Vec<f64>>>()?;
    distances.sort_by(f64::total_cmp);
    let xs: Vec<f64> = (0..distances.len()).map(|i| i as f64).collect();
    let at = super::knee(&xs, &distances).unwrap_or(distances.len().saturating_sub(1));
    let eps = distances[at];
    if eps > 0.0 {
        return Ok(eps);
    }
    // Many identical rows put the knee at 0: take the smallest positive k-distance instead.
    distances.into_iter().find(|d| *d > 0.0).ok_or_else(|| {
        invalid("every row is identical to its neighbours, so no radius separates anything; give eps=...")
    })
}

impl Stage for DbscanStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "DBSCAN density clusters (linfa-clustering), eps given or from the k-distance knee, noise labelled -1"
    }

    fn table(&self) -> &'static str {
        "clusters"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "eps=auto|X (auto), min_points=5, sample=50000, knee_sample=5000"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["eps", "min_points", "sample", "knee_sample"])?;
        let eps = match set.get("eps").map(String::as_str) {
            None | Some("auto") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|e| *e > 0.0 && e.is_finite())
                    .ok_or_else(|| Error::StageParams {
                        stage: NAME,
                        reason: format!("eps={v}: expected auto or a positive distance"),
                    })?,
            ),
        };
        let p = DbscanParams {
            eps,
            min_points: param(NAME, set, "min_points", 5, "a whole number")?,
            sample: param(NAME, set, "sample", 50_000, "a whole number of rows")?,
            knee_sample: param(NAME, set, "knee_sample", 5_000, "a whole number of rows")?,
        };
        if p.min_points < 2 || p.sample < 2 || p.knee_sample < 3 {
            return Err(Error::StageParams {
                stage: NAME,
                reason: "min_points and sample must be at least 2, knee_sample at least 3".into(),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: DbscanParams = from_json(NAME, "parameters", params)?;
        let rows = x.nrows();
        if rows < p.min_points {
            return Err(invalid(format!(
                "the source has {rows} rows, fewer than min_points={}\n  hint: lower min_points or train on more rows",
                p.min_points
            )));
        }
        if x.ncols() == 0 {
            return Err(invalid("no feature columns"));
        }
        let sampled: Vec<usize> = if rows > p.sample {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut v = index::sample(&mut rng, rows, p.sample).into_vec();
            v.sort_unstable();
            v
        } else {
            (0..rows).collect()
        };
        let sample = x.select(Axis(0), &sampled);
        let eps = match p.eps {
            Some(eps) => eps,
            None => knee_eps(&sample, p.min_points, p.knee_sample, seed)?,
        };
        let labels = Dbscan::params(p.min_points)
            .tolerance(eps)
            .check()
            .map_err(|e| invalid(format!("bad parameters: {e}")))?
            .transform(&sample);
        let sample_labels: Vec<i32> = labels.iter().map(|l| l.map_or(-1, |c| c as i32)).collect();
        let clustered: Vec<usize> = (0..sampled.len()).filter(|&i| sample_labels[i] >= 0).collect();
        let model = DbscanModel {
            eps,
            min_points: p.min_points,
            points: sample.select(Axis(0), &clustered),
            labels: clustered.iter().map(|&i| sample_labels[i]).collect(),
        };
        // Training rows: DBSCAN's own label in the sample, nearest clustered point elsewhere.
        let started = std::time::Instant::now();
        let mut clusters = vec![-1i32; rows];
        let mut in_sample = vec![false; rows];
        for (i, &row) in sampled.iter().enumerate() {
            clusters[row] = sample_labels[i];
            in_sample[row] = true;
        }
        if sampled.len() < rows {
            let rest: Vec<usize> = (0..rows).filter(|r| !in_sample[*r]).collect();
            let assigned = nearest_cluster(&model, x.select(Axis(0), &rest).view())?;
            for (r, c) in rest.into_iter().zip(assigned) {
                clusters[r] = c;
            }
        }
        let out = output(clusters, in_sample);
        let score_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut metrics = Map::new();
        metrics.insert("eps".into(), json!(eps));
        metrics.insert("eps_auto".into(), json!(p.eps.is_none()));
        metrics.insert("min_points".into(), json!(p.min_points));
        metrics.insert("sample_size".into(), json!(sampled.len()));
        metrics.insert("sampled".into(), json!(sampled.len() < rows));
        metrics.insert("stored_points".into(), json!(model.points.nrows()));
        Ok(Fitted {
            model: to_json(NAME, &model)?,
            metrics,
            training_output: Some((out, score_ms)),
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: DbscanModel = from_json(NAME, "model", model)?;
        if model.points.nrows() > 0 && model.points.ncols() != x.ncols() {
            return Err(invalid(format!(
                "the model's points have {} features but the data has {}",
                model.points.ncols(),
                x.ncols()
            )));
        }
        if model.labels.len() != model.points.nrows() {
            return Err(invalid(
                "the stored model is damaged (labels and points differ); retrain it",
            ));
        }
        let clusters = nearest_cluster(&model, x)?;
        Ok(output(clusters, vec![false; x.nrows()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_dense_groups_and_an_outlier() {
        let mut rows = Vec::new();
        for i in 0..40 {
            let t = i as f64 * 0.01;
            rows.extend([t, t]);
            rows.extend([5.0 + t, 5.0 - t]);
        }
        rows.extend([50.0, -50.0]);
        let x = Array2::from_shape_vec((81, 2), rows).unwrap();
        let mut set = BTreeMap::new();
        set.insert("eps".to_string(), "0.5".to_string());
        let params = DbscanStage.resolve(&set).unwrap();
        let fitted = DbscanStage.fit(x.view(), &params, 1).unwrap();
        let (applied, _) = fitted.training_output.as_ref().unwrap();
        let Values::Int(c) = &applied.columns[0].values else {
            panic!()
        };
        assert_eq!(c[80], -1, "the outlier is noise");
        assert_ne!(c[0], c[1], "two clusters");
        assert!(c[..80].iter().all(|v| *v >= 0));
        // Scoring with the stored model gives the same clusters for the same rows.
        let again = DbscanStage.apply(&fitted.model, x.view()).unwrap();
        let Values::Int(d) = &again.columns[0].values else {
            panic!()
        };
        assert_eq!(c, d);
        // eps from the knee also separates them.
        let params = DbscanStage.resolve(&BTreeMap::new()).unwrap();
        let fitted = DbscanStage.fit(x.view(), &params, 1).unwrap();
        let (applied, _) = fitted.training_output.as_ref().unwrap();
        let Values::Int(c) = &applied.columns[0].values else {
            panic!()
        };
        assert_eq!(c[80], -1);
    }
}
