//! The `lof` stage: Local Outlier Factor (Breunig, Kriegel, Ng and Sander, SIGMOD 2000) in novelty
//! mode, as scikit-learn's `LocalOutlierFactor(novelty=True)`: fitted on reference rows, it scores
//! any row against them without refitting. Writes `anomaly_scores` (score = the LOF, about 1 for a
//! row as dense as its neighbours, higher = more anomalous).
//!
//! The definitions follow scikit-learn exactly, including its guard for duplicates:
//! - reference rows: a seeded subsample of at most `sample` rows (default 20 000; model_runs says
//!   how many); k-distance(o) = distance from o to its k-th nearest other reference row;
//! - reach-dist(p, o) = max(k-distance(o), d(p, o)); lrd(p) = 1 / (mean over p's k nearest
//!   reference rows o of reach-dist(p, o) + 1e-10). The 1e-10 is scikit-learn's: with many
//!   identical rows the mean is 0 and the density would be infinite; it becomes 1e10 instead, so
//!   duplicates are dense, not undefined;
//! - LOF(p) = mean over those o of lrd(o) / lrd(p). A reference row's own neighbours exclude
//!   itself (scikit-learn's kneighbors() on the fitted data); a new row's are the k nearest
//!   reference rows.
//!
//! k-nearest neighbours: not through a spatial index. linfa-nn's ball tree was tried first and
//! had not finished scoring the 67 343 NSL-KDD training rows against 20 000 reference rows (77
//! encoded columns) after 16 minutes: in that many dimensions a tree prunes almost nothing. As
//! scikit-learn does in more than 15 dimensions (its 'auto' algorithm picks brute force), the
//! distances come from blocked matrix products (|q|^2 + |r|^2 - 2 q.r in f32, matrixmultiply),
//! parallel over blocks of query rows; the k + 8 nearest candidates are then re-measured exactly
//! in f64, so duplicates are at distance exactly 0 as in scikit-learn. The reference rows with
//! their k-distance and lrd are the stored model.
//!
//! May touch: nothing but its arguments (pure computation around the analysis framework).

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::anomaly::{applied, check_finite, check_width, contamination_param, fit_on_subsample, Standardizer};
use super::{count_param, from_json, known_keys, to_json, Applied, Fitted, Stage};
use crate::error::{Error, Result};

const NAME: &str = "lof";

/// scikit-learn's guard against a zero mean reachability distance (duplicate rows).
const DENSITY_GUARD: f64 = 1e-10;

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LofParams {
    /// Neighbours (scikit-learn's n_neighbors).
    pub k: usize,
    /// Reference rows at most (a seeded subsample of a larger source).
    pub sample: usize,
    pub contamination: f64,
}

/// A fitted LOF: reference rows with their k-distance and local reachability density.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalOutlierFactor {
    pub k: usize,
    #[serde(with = "crate::analysis::anomaly::exact::matrix")]
    pub reference: Array2<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub k_distance: Vec<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub lrd: Vec<f64>,
}

/// The stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LofModel {
    /// Column statistics of the training rows (see [`Standardizer`]).
    pub standardizer: Standardizer,
    pub lof: LocalOutlierFactor,
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub threshold: f64,
    pub contamination: f64,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "local outlier factor",
        reason: reason.into(),
    }
}

/// Query rows per block of the distance product: a block's distances to 20 000 reference rows
/// are 20 MB of f32.
const QUERY_BLOCK: usize = 256;
/// Candidates taken from the f32 distance product beyond k, whose exact distances then decide:
/// rounding in |q|^2 + |r|^2 - 2 q.r cannot reorder rows further apart than that.
const EXTRA_CANDIDATES: usize = 8;

/// The reference rows prepared for distance products.
struct Neighbourhood<'a> {
    reference: &'a Array2<f64>,
    reference32: Array2<f32>,
    norms: Vec<f32>,
}

impl<'a> Neighbourhood<'a> {
    fn new(reference: &'a Array2<f64>) -> Self {
        let reference32 = reference.mapv(|v| v as f32);
        let norms = reference32.rows().into_iter().map(|r| r.dot(&r)).collect();
        Neighbourhood {
            reference,
            reference32,
            norms,
        }
    }

    /// For each row of `x`, its k nearest reference rows as (index, exact distance), nearest
    /// first (ties by index). With `exclude_self`, row i of `x` is reference row i and is left out.
    fn k_nearest(&self, x: ArrayView2<f64>, k: usize, exclude_self: bool) -> Vec<Vec<(usize, f64)>> {
        let x = x.as_standard_layout();
        let m = self.reference.nrows();
        let wanted = (k + EXTRA_CANDIDATES).min(m);
        x.axis_chunks_iter(Axis(0), QUERY_BLOCK)
            .into_par_iter()
            .enumerate()
            .flat_map_iter(|(block, rows)| {
                let rows32 = rows.mapv(|v| v as f32);
                let dots = rows32.dot(&self.reference32.t());
                let mut out = Vec::with_capacity(rows.nrows());
                let mut candidates: Vec<(f32, usize)> = Vec::with_capacity(wanted + 1);
                for (r, row) in rows.rows().into_iter().enumerate() {
                    let own_index = block * QUERY_BLOCK + r;
                    let own = rows32.row(r).dot(&rows32.row(r));
                    candidates.clear();
                    let mut worst = f32::INFINITY;
                    for (j, (&d, &n)) in dots.row(r).iter().zip(&self.norms).enumerate() {
                        if exclude_self && j == own_index {
                            continue;
                        }
                        let sq = own + n - 2.0 * d;
                        if candidates.len() < wanted || sq < worst {
                            let at = candidates.partition_point(|c| c.0 <= sq);
                            candidates.insert(at, (sq, j));
                            candidates.truncate(wanted);
                            if candidates.len() == wanted {
                                worst = candidates[wanted - 1].0;
                            }
                        }
                    }
                    let mut exact: Vec<(usize, f64)> = candidates
                        .iter()
                        .map(|(_, j)| (*j, distance(self.reference.row(*j), row)))
                        .collect();
                    exact.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                    exact.truncate(k);
                    out.push(exact);
                }
                out
            })
            .collect()
    }
}

fn distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

impl LocalOutlierFactor {
    /// Fits on every row of `reference` (at least k + 1 rows).
    pub fn fit(reference: Array2<f64>, k: usize) -> Result<Self> {
        let n = reference.nrows();
        if k == 0 || n <= k {
            return Err(invalid(format!(
                "k={k} neighbours need at least {} reference rows (got {n})\n  hint: lower --set k",
                k + 1
            )));
        }
        check_finite("local outlier factor", reference.view())?;
        let found = Neighbourhood::new(&reference).k_nearest(reference.view(), k, true);
        let k_distance: Vec<f64> = found.iter().map(|nb| nb.last().map_or(0.0, |(_, d)| *d)).collect();
        let lrd: Vec<f64> = found.iter().map(|nb| density(nb, &k_distance)).collect();
        Ok(LocalOutlierFactor {
            k,
            reference,
            k_distance,
            lrd,
        })
    }

    /// LOF of each row of `x` against the reference rows.
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Vec<f64>> {
        let n = self.reference.nrows();
        if self.k == 0 || n <= self.k || self.k_distance.len() != n || self.lrd.len() != n {
            return Err(invalid("the stored model is damaged; train it again"));
        }
        check_width("local outlier factor", self.reference.ncols(), x)?;
        check_finite("local outlier factor", x)?;
        let found = Neighbourhood::new(&self.reference).k_nearest(x, self.k, false);
        Ok(found
            .iter()
            .map(|nb| {
                let own = density(nb, &self.k_distance);
                let mean_neighbour: f64 = nb.iter().map(|(i, _)| self.lrd[*i]).sum::<f64>() / nb.len() as f64;
                mean_neighbour / own
            })
            .collect())
    }
}

/// Local reachability density from a row's neighbours (index, distance).
fn density(neighbours: &[(usize, f64)], k_distance: &[f64]) -> f64 {
    let reach: f64 = neighbours.iter().map(|(i, d)| d.max(k_distance[*i])).sum::<f64>() / neighbours.len() as f64;
    1.0 / (reach + DENSITY_GUARD)
}

/// The stage.
pub struct LofStage;

impl Stage for LofStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Local Outlier Factor in novelty mode (Breunig et al. 2000): density against k neighbours among reference rows"
    }

    fn table(&self) -> &'static str {
        "anomaly_scores"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "k=20, sample=20000, contamination=0.05"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["k", "sample", "contamination"])?;
        let p = LofParams {
            k: count_param(NAME, set, "k", 20, 1_000, "a whole number of neighbours")?,
            sample: count_param(NAME, set, "sample", 20_000, 1_000_000, "a whole number of rows")?,
            contamination: contamination_param(NAME, set)?,
        };
        if p.k == 0 || p.sample <= p.k {
            return Err(Error::StageParams {
                stage: NAME,
                reason: format!("k={} must be at least 1 and sample={} above k", p.k, p.sample),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: LofParams = from_json(NAME, "parameters", params)?;
        let fit = fit_on_subsample(
            NAME,
            "local outlier factor",
            x,
            (p.sample, seed, p.contamination),
            |reference| {
                let mut metrics = Map::new();
                metrics.insert("sample_rows".into(), json!(reference.nrows()));
                metrics.insert("k".into(), json!(p.k));
                Ok((LocalOutlierFactor::fit(reference.to_owned(), p.k)?, metrics))
            },
            |lof, x| lof.score(x),
        )?;
        let model = LofModel {
            standardizer: fit.standardizer,
            lof: fit.detector,
            threshold: fit.threshold,
            contamination: p.contamination,
        };
        Ok(Fitted {
            model: to_json(NAME, &model)?,
            metrics: fit.metrics,
            training_output: Some(fit.training_output),
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: LofModel = from_json(NAME, "model", model)?;
        let x = model.standardizer.apply(NAME, x)?;
        let scores = model.lof.score(x.view())?;
        Ok(applied(scores, model.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn isolated_rows_have_high_lof_and_duplicates_stay_finite() {
        // Many identical rows (scikit-learn's duplicate case) plus a loose cluster.
        let mut rows = vec![[0.0, 0.0]; 30];
        for i in 0..30 {
            rows.push([5.0 + (i % 6) as f64 * 0.1, 5.0 + (i / 6) as f64 * 0.1]);
        }
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let reference = Array2::from_shape_vec((60, 2), flat).unwrap();
        let lof = LocalOutlierFactor::fit(reference, 5).unwrap();
        assert!(lof.lrd.iter().all(|v| v.is_finite() && *v > 0.0));
        // A duplicate of the dense point has the same density as its neighbours: LOF 1.
        let s = lof.score(array![[0.0, 0.0], [5.2, 5.2], [20.0, 20.0]].view()).unwrap();
        assert!((s[0] - 1.0).abs() < 1e-6, "{s:?}");
        assert!(s[1] < 2.0, "{s:?}");
        assert!(s[2] > 10.0, "{s:?}");
    }

    #[test]
    fn too_few_reference_rows_is_an_error() {
        let err = LocalOutlierFactor::fit(array![[0.0], [1.0]], 5)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("k=5"), "{err}");
    }
}
