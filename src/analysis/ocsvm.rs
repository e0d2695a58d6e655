//! The `ocsvm` stage: a one-class support vector machine with an RBF kernel (Schölkopf et al.,
//! "Estimating the support of a high-dimensional distribution", 2001), as libsvm solves it and
//! scikit-learn's `OneClassSVM` wraps it. Writes `anomaly_scores` (score = rho - sum_i alpha_i
//! K(x_i, x), higher = more anomalous; is_anomaly at the training rows' contamination quantile).
//!
//! Why it is written here: linfa-svm was not adopted. It would be a new dependency tree for one
//! model, its Gaussian kernel is parameterised by a width eps rather than scikit-learn's gamma
//! (with no gamma = 'scale' rule), and it has no seeded subsample; checking its one-class results
//! against scikit-learn was not done. The solver here is libsvm's own algorithm (about 150 lines),
//! so the dual problem, the working-set rule and rho are those of the anchor scikit-learn uses:
//! - dual: minimise 1/2 a'Qa subject to 0 <= a_i <= 1 and sum a_i = nu l, Q_ij = K(x_i, x_j);
//!   start as libsvm: the first floor(nu l) alphas at 1, the next one at the remainder;
//! - SMO with the second-order working-set selection of Fan, Chen and Lin (2005), stopping when
//!   the maximal violation is below `tol` (1e-3, libsvm's and scikit-learn's default);
//! - rho is the mean gradient over free alphas (else the middle of the bounds);
//! - gamma = 'scale' is 1 / (features x variance of every cell of the fitted matrix).
//!
//! The whole kernel matrix of the fitted rows is kept (f32, as libsvm's cache), so fitting is on a
//! seeded subsample of at most `sample` rows (default 5 000: 100 MB of kernel); model_runs states
//! the rows used. Only support vectors (alpha > 0) are stored; scoring is parallel over rows.
//!
//! May touch: nothing but its arguments (pure computation around the analysis framework).

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::anomaly::{applied, check_finite, check_width, contamination_param, fit_on_subsample, Standardizer};
use super::{count_param, from_json, known_keys, param, to_json, Applied, Fitted, Stage};
use crate::error::{Error, Result};

const NAME: &str = "ocsvm";

/// Stop when the maximal KKT violation is below this (libsvm's `eps`).
const TOLERANCE: f64 = 1e-3;
/// libsvm's TAU: stands in for a non-positive curvature.
const TAU: f64 = 1e-12;

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcsvmParams {
    /// Upper bound on the share of training errors and lower bound on the share of support vectors.
    pub nu: f64,
    /// RBF width; None: 'scale', 1 / (features x variance of the fitted matrix).
    pub gamma: Option<f64>,
    /// Rows fitted on at most (a seeded subsample of a larger source).
    pub sample: usize,
    /// SMO iterations at most.
    pub max_iter: usize,
    pub contamination: f64,
}

/// A fitted one-class SVM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneClassSvm {
    /// Support vectors, one per row.
    #[serde(with = "crate::analysis::anomaly::exact::matrix")]
    pub support: Array2<f64>,
    /// Their dual coefficients (alpha > 0).
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub alpha: Vec<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub gamma: f64,
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub rho: f64,
}

/// The stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OcsvmModel {
    /// Column statistics of the training rows (see [`Standardizer`]).
    pub standardizer: Standardizer,
    pub svm: OneClassSvm,
    /// Scores above it are anomalies.
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub threshold: f64,
    pub contamination: f64,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "one-class svm",
        reason: reason.into(),
    }
}

/// gamma = 'scale': 1 / (columns x variance of all cells), 1.0 when every cell is equal.
pub fn scale_gamma(x: ArrayView2<f64>) -> f64 {
    let n = x.len() as f64;
    if n == 0.0 {
        return 1.0;
    }
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    if var > 0.0 {
        1.0 / (x.ncols() as f64 * var)
    } else {
        1.0
    }
}

impl OneClassSvm {
    /// Solves the one-class dual on every row of `x`. Returns the machine and the iterations used.
    pub fn fit(x: ArrayView2<f64>, nu: f64, gamma: f64, max_iter: usize) -> Result<(Self, usize)> {
        let l = x.nrows();
        if l == 0 || x.ncols() == 0 {
            return Err(invalid("cannot fit on zero rows or zero feature columns"));
        }
        if !(nu > 0.0 && nu <= 1.0 && gamma > 0.0 && gamma.is_finite()) {
            return Err(invalid(format!("nu={nu} must be in (0, 1] and gamma={gamma} positive")));
        }
        let q = kernel_matrix(x, gamma);
        let qrow = |i: usize| &q[i * l..(i + 1) * l];
        // libsvm's start: the first floor(nu l) alphas at the bound, the next at the remainder.
        let mut alpha = vec![0.0f64; l];
        let total = nu * l as f64;
        let full = (total.floor() as usize).min(l);
        for a in alpha.iter_mut().take(full) {
            *a = 1.0;
        }
        if full < l {
            alpha[full] = total - full as f64;
        }
        let mut grad = vec![0.0f64; l];
        for (i, &a) in alpha.iter().enumerate() {
            if a > 0.0 {
                for (g, &k) in grad.iter_mut().zip(qrow(i)) {
                    *g += a * k as f64;
                }
            }
        }
        let mut iterations = 0;
        while iterations < max_iter {
            if crate::interrupt::requested() {
                return Err(crate::error::Error::Interrupted);
            }
            // i: the most violating alpha that can grow; j: the best partner that can shrink.
            let mut gmax = f64::NEG_INFINITY;
            let mut i = usize::MAX;
            for t in 0..l {
                if alpha[t] < 1.0 && -grad[t] >= gmax {
                    gmax = -grad[t];
                    i = t;
                }
            }
            if i == usize::MAX {
                break;
            }
            let qi = qrow(i);
            let mut gmax2 = f64::NEG_INFINITY;
            let mut j = usize::MAX;
            let mut best = f64::INFINITY;
            for t in 0..l {
                if alpha[t] > 0.0 {
                    gmax2 = gmax2.max(grad[t]);
                    let diff = gmax + grad[t];
                    if diff > 0.0 {
                        let curvature = 2.0 - 2.0 * qi[t] as f64;
                        let curvature = if curvature > 0.0 { curvature } else { TAU };
                        let gain = -(diff * diff) / curvature;
                        if gain <= best {
                            best = gain;
                            j = t;
                        }
                    }
                }
            }
            if gmax + gmax2 < TOLERANCE || j == usize::MAX {
                break;
            }
            iterations += 1;
            let qj = qrow(j);
            let curvature = (2.0 - 2.0 * qi[j] as f64).max(TAU);
            let (old_i, old_j) = (alpha[i], alpha[j]);
            let delta = (grad[i] - grad[j]) / curvature;
            let sum = old_i + old_j;
            let (mut ai, mut aj) = (old_i - delta, old_j + delta);
            if sum > 1.0 {
                if ai > 1.0 {
                    ai = 1.0;
                    aj = sum - 1.0;
                }
            } else if aj < 0.0 {
                aj = 0.0;
                ai = sum;
            }
            if sum > 1.0 {
                if aj > 1.0 {
                    aj = 1.0;
                    ai = sum - 1.0;
                }
            } else if ai < 0.0 {
                ai = 0.0;
                aj = sum;
            }
            alpha[i] = ai;
            alpha[j] = aj;
            let (di, dj) = (ai - old_i, aj - old_j);
            for ((g, &ki), &kj) in grad.iter_mut().zip(qi).zip(qj) {
                *g += ki as f64 * di + kj as f64 * dj;
            }
        }
        let rho = rho(&alpha, &grad);
        let support_rows: Vec<usize> = (0..l).filter(|&t| alpha[t] > 0.0).collect();
        Ok((
            OneClassSvm {
                support: x.select(Axis(0), &support_rows),
                alpha: support_rows.iter().map(|&t| alpha[t]).collect(),
                gamma,
                rho,
            },
            iterations,
        ))
    }

    /// rho - sum_i alpha_i K(sv_i, x) for each row: positive outside the learnt support (scikit-
    /// learn's -decision_function).
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        if self.support.nrows() != self.alpha.len() || self.gamma.is_nan() || self.gamma <= 0.0 {
            return Err(invalid("the stored machine is damaged; train the model again"));
        }
        check_width("one-class svm", self.support.ncols(), x)?;
        check_finite("one-class svm", x)?;
        let norms: Vec<f64> = self.support.rows().into_iter().map(|r| r.dot(&r)).collect();
        let x = x.as_standard_layout();
        let scores: Vec<f64> = x
            .axis_chunks_iter(Axis(0), 256)
            .into_par_iter()
            .flat_map_iter(|chunk| {
                let dots = chunk.dot(&self.support.t());
                let mut out = Vec::with_capacity(chunk.nrows());
                for (row, dot_row) in chunk.rows().into_iter().zip(dots.rows()) {
                    let own = row.dot(&row);
                    let mut sum = 0.0;
                    for ((&d, &n), &a) in dot_row.iter().zip(&norms).zip(&self.alpha) {
                        let sq = (own + n - 2.0 * d).max(0.0);
                        sum += a * (-self.gamma * sq).exp();
                    }
                    out.push(self.rho - sum);
                }
                out
            })
            .collect();
        Ok(Array1::from(scores))
    }
}

/// Q_ij = exp(-gamma |x_i - x_j|^2), row-major, in f32 (libsvm's Qfloat).
fn kernel_matrix(x: ArrayView2<f64>, gamma: f64) -> Vec<f32> {
    let l = x.nrows();
    let x = x.as_standard_layout();
    let norms: Vec<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut q = vec![0.0f32; l * l];
    q.par_chunks_mut(l * 64).enumerate().for_each(|(block, out)| {
        let start = block * 64;
        let rows = out.len() / l;
        let dots = x.slice(ndarray::s![start..start + rows, ..]).dot(&x.t());
        for (r, out_row) in out.chunks_mut(l).enumerate() {
            let ni = norms[start + r];
            for ((o, &d), &nj) in out_row.iter_mut().zip(dots.row(r)).zip(&norms) {
                *o = (-gamma * (ni + nj - 2.0 * d).max(0.0)).exp() as f32;
            }
        }
    });
    q
}

/// libsvm's calculate_rho for the one-class problem (every y = +1).
fn rho(alpha: &[f64], grad: &[f64]) -> f64 {
    let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free, mut sum) = (0usize, 0.0);
    for (&a, &g) in alpha.iter().zip(grad) {
        if a >= 1.0 {
            lower = lower.max(g);
        } else if a <= 0.0 {
            upper = upper.min(g);
        } else {
            free += 1;
            sum += g;
        }
    }
    if free > 0 {
        sum / free as f64
    } else {
        (upper + lower) / 2.0
    }
}

/// The stage.
pub struct OcsvmStage;

impl Stage for OcsvmStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "One-class SVM with an RBF kernel (libsvm's solver), fitted on a seeded subsample; anomaly scores"
    }

    fn table(&self) -> &'static str {
        "anomaly_scores"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "nu=0.05, gamma=scale, sample=5000, max_iter=1000000, contamination=0.05"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["nu", "gamma", "sample", "max_iter", "contamination"])?;
        let gamma = match set.get("gamma").map(String::as_str) {
            None | Some("scale") => None,
            Some(_) => Some(param(NAME, set, "gamma", 1.0, "a positive number or scale")?),
        };
        let p = OcsvmParams {
            nu: param(NAME, set, "nu", 0.05, "a share above 0 and at most 1")?,
            gamma,
            sample: count_param(NAME, set, "sample", 5_000, 20_000, "a whole number of rows")?,
            max_iter: count_param(NAME, set, "max_iter", 1_000_000, 100_000_000, "a whole number")?,
            contamination: contamination_param(NAME, set)?,
        };
        if !(p.nu > 0.0 && p.nu <= 1.0) {
            return Err(Error::StageParams {
                stage: NAME,
                reason: format!("nu={}: expected a share above 0 and at most 1", p.nu),
            });
        }
        if p.gamma.is_some_and(|g| !(g > 0.0 && g.is_finite())) || p.sample < 2 || p.max_iter == 0 {
            return Err(Error::StageParams {
                stage: NAME,
                reason: "gamma must be positive, sample at least 2 and max_iter at least 1".into(),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: OcsvmParams = from_json(NAME, "parameters", params)?;
        let fit = fit_on_subsample(
            NAME,
            "one-class svm",
            x,
            (p.sample, seed, p.contamination),
            |rows| {
                let gamma = p.gamma.unwrap_or_else(|| scale_gamma(rows));
                let (svm, iterations) = OneClassSvm::fit(rows, p.nu, gamma, p.max_iter)?;
                let mut metrics = Map::new();
                metrics.insert("sample_rows".into(), json!(rows.nrows()));
                metrics.insert("gamma".into(), json!(gamma));
                metrics.insert("support_vectors".into(), json!(svm.alpha.len()));
                metrics.insert("smo_iterations".into(), json!(iterations));
                metrics.insert("converged".into(), json!(iterations < p.max_iter));
                Ok((svm, metrics))
            },
            |svm, x, _| Ok(svm.score(x)?.to_vec()),
        )?;
        let model = OcsvmModel {
            standardizer: fit.standardizer,
            svm: fit.detector,
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
        let model: OcsvmModel = from_json(NAME, "model", model)?;
        let x = model.standardizer.apply(NAME, x)?;
        let scores = model.svm.score(x.view())?.to_vec();
        Ok(applied(scores, model.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn far_points_score_higher_and_nu_bounds_the_support() {
        let mut rows = Vec::new();
        for i in 0..200 {
            let t = i as f64 * 0.1;
            rows.extend([t.sin() * 0.5, t.cos() * 0.5]);
        }
        let x = Array2::from_shape_vec((200, 2), rows).unwrap();
        let (svm, _) = OneClassSvm::fit(x.view(), 0.1, 1.0, 100_000).unwrap();
        // nu is a lower bound on the share of support vectors.
        assert!(svm.alpha.len() >= 20, "{} support vectors", svm.alpha.len());
        let alpha_sum: f64 = svm.alpha.iter().sum();
        assert!((alpha_sum - 20.0).abs() < 1e-9, "{alpha_sum}");
        let s = svm.score(array![[0.0, 0.5], [3.0, 3.0]].view()).unwrap();
        assert!(s[1] > s[0] && s[1] > 0.0, "{s:?}");
        // At most about nu of the training rows lie outside (score > 0, beyond the solver's
        // tolerance: rows on the margin score 0 up to it).
        let outside = svm.score(x.view()).unwrap().iter().filter(|v| **v > TOLERANCE).count();
        assert!(outside <= 30, "{outside}");
    }

    #[test]
    fn scale_gamma_is_one_over_features_times_variance() {
        let x = array![[0.0, 2.0], [2.0, 0.0]];
        assert!((scale_gamma(x.view()) - 0.5).abs() < 1e-12);
        assert_eq!(scale_gamma(array![[1.0, 1.0]].view()), 1.0);
    }
}
