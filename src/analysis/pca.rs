//! The `pca` stage: a low-dimensional embedding of the feature space (prototype 000's 3D view,
//! prototype 004's 2D view). Writes `embedding` (pc1..pc3).
//!
//! Exact PCA: the eigenvectors of the scaled features' covariance matrix (linfa-linalg's
//! symmetric eigensolver), largest eigenvalues first, each component's sign fixed so that its
//! largest coefficient is positive (the same rows give the same coordinates on every run).
//! linfa-reduction's `Pca` was used first and dropped: its randomized LOBPCG solver panicked
//! ("NaN values in array") on 100 000 x 10 clustered rows, and its explained variance divides by
//! (components - 1) instead of (n - 1). The covariance is d x d (d = encoded features), so this
//! costs one n x d x d product. Explained variance: eigenvalue_i (= sigma_i^2 / (n - 1)); ratio:
//! over the total variance of the scaled features, as scikit-learn reports it.

use std::collections::BTreeMap;

use linfa_linalg::eigh::Eigh;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{from_json, known_keys, param, to_json, Applied, Fitted, OutputColumn, Stage, Values};
use crate::error::{Error, Result};

const NAME: &str = "pca";

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaParams {
    /// Components kept, 1..=3 (capped at the feature count).
    pub components: usize,
}

/// The stored model: projection = (x - mean) . components^T. Every double is stored as its
/// bits (`anomaly::exact`), so a stored model projects the same rows to the same coordinates
/// to the last bit; models stored with decimal numbers still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaModel {
    #[serde(with = "crate::analysis::anomaly::exact::array1")]
    pub mean: Array1<f64>,
    /// One row per component.
    #[serde(with = "crate::analysis::anomaly::exact::matrix")]
    pub components: Array2<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub explained_variance: Vec<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub explained_variance_ratio: Vec<f64>,
}

/// The stage.
pub struct PcaStage;

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "pca",
        reason: reason.into(),
    }
}

impl Stage for PcaStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "PCA embedding (exact, covariance eigenvectors) to up to 3 components, explained variance stored"
    }

    fn table(&self) -> &'static str {
        "embedding"
    }

    fn params_help(&self) -> &'static str {
        "components=3 (1..3)"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["components"])?;
        let p = PcaParams {
            components: param(NAME, set, "components", 3, "1, 2 or 3")?,
        };
        if !(1..=3).contains(&p.components) {
            return Err(Error::StageParams {
                stage: NAME,
                reason: format!(
                    "components={}: the embedding table holds 1 to 3 components",
                    p.components
                ),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, _seed: u64) -> Result<Fitted> {
        let p: PcaParams = from_json(NAME, "parameters", params)?;
        let (rows, width) = x.dim();
        if rows < 2 {
            return Err(invalid(format!("needs at least 2 rows, the source has {rows}")));
        }
        let components = p.components.min(width);
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(width));
        let centered = &x - &mean;
        let covariance = centered.t().dot(&centered) / (rows as f64 - 1.0);
        if covariance.iter().any(|v| !v.is_finite()) {
            return Err(invalid("the feature covariance is not finite (values too large?)"));
        }
        let (values, vectors) = covariance
            .eigh()
            .map_err(|e| invalid(format!("eigendecomposition of the covariance failed: {e}")))?;
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
        let mut basis = Array2::<f64>::zeros((components, width));
        for (c, &i) in order.iter().take(components).enumerate() {
            let v = vectors.column(i);
            let largest = v
                .iter()
                .copied()
                .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            let sign = if largest < 0.0 { -1.0 } else { 1.0 };
            basis.row_mut(c).assign(&v.mapv(|x| x * sign));
        }
        let explained: Vec<f64> = order.iter().take(components).map(|&i| values[i].max(0.0)).collect();
        let total: f64 = (0..width).map(|j| covariance[[j, j]]).sum();
        let ratio: Vec<f64> = explained
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        let mut metrics = Map::new();
        metrics.insert("components".into(), json!(components));
        metrics.insert("explained_variance".into(), json!(explained));
        metrics.insert("explained_variance_ratio".into(), json!(ratio));
        metrics.insert(
            "explained_variance_ratio_total".into(),
            json!(ratio.iter().sum::<f64>()),
        );
        let model = PcaModel {
            mean,
            components: basis,
            explained_variance: explained,
            explained_variance_ratio: ratio,
        };
        Ok(Fitted {
            model: to_json(NAME, &model)?,
            metrics,
            training_output: None,
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: PcaModel = from_json(NAME, "model", model)?;
        if model.components.ncols() != x.ncols() || model.mean.len() != x.ncols() || model.components.nrows() == 0 {
            return Err(invalid(format!(
                "the model projects {} features but the data has {}",
                model.components.ncols(),
                x.ncols()
            )));
        }
        let projected = (&x - &model.mean).dot(&model.components.t());
        let column = |c: usize| -> Vec<Option<f64>> {
            if c < projected.ncols() {
                projected.column(c).iter().map(|v| Some(*v)).collect()
            } else {
                vec![None; projected.nrows()]
            }
        };
        Ok(Applied {
            columns: vec![
                OutputColumn {
                    name: "pc1",
                    values: Values::Float(projected.column(0).to_vec()),
                },
                OutputColumn {
                    name: "pc2",
                    values: Values::OptFloat(column(1)),
                },
                OutputColumn {
                    name: "pc3",
                    values: Values::OptFloat(column(2)),
                },
            ],
            metrics: Map::new(),
            anomaly: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_component() {
        // Points on y = 2x with a little noise in z: the first component carries almost all.
        let rows: Vec<f64> = (0..50)
            .flat_map(|i| {
                let t = i as f64 / 10.0;
                [t, 2.0 * t, 0.01 * (i as f64 * 1.7).sin()]
            })
            .collect();
        let x = Array2::from_shape_vec((50, 3), rows).unwrap();
        let params = PcaStage.resolve(&BTreeMap::new()).unwrap();
        let fitted = PcaStage.fit(x.view(), &params, 0).unwrap();
        let ratio = fitted.metrics["explained_variance_ratio"].as_array().unwrap();
        assert!(ratio[0].as_f64().unwrap() > 0.999, "{ratio:?}");
        let applied = PcaStage.apply(&fitted.model, x.view()).unwrap();
        let Values::Float(pc1) = &applied.columns[0].values else {
            panic!()
        };
        assert_eq!(pc1.len(), 50);
        // Projection is a straight line: |pc1| grows with distance from the middle.
        assert!(pc1[0].abs() > pc1[25].abs());
    }

    #[test]
    fn clustered_rows_that_broke_lobpcg_fit() {
        // Eight blobs in ten dimensions (the shape on which linfa-reduction's solver panicked).
        let rows: Vec<f64> = (0..4000u64)
            .flat_map(|i| {
                (0..10u64).map(move |j| (i % 8) as f64 * 3.0 + ((i * 10 + j) * 2654435761 % 1000) as f64 / 1000.0)
            })
            .collect();
        let x = Array2::from_shape_vec((4000, 10), rows).unwrap();
        let params = PcaStage.resolve(&BTreeMap::new()).unwrap();
        let fitted = PcaStage.fit(x.view(), &params, 0).unwrap();
        let total = fitted.metrics["explained_variance_ratio_total"].as_f64().unwrap();
        assert!(total > 0.9 && total <= 1.0 + 1e-9, "{total}");
        let again = PcaStage.fit(x.view(), &params, 0).unwrap();
        assert_eq!(fitted.model, again.model);
    }

    fn coordinates(applied: &Applied) -> Vec<u64> {
        applied
            .columns
            .iter()
            .flat_map(|c| match &c.values {
                Values::Float(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                Values::OptFloat(v) => v.iter().map(|x| x.map_or(u64::MAX, f64::to_bits)).collect(),
                _ => panic!("pca writes doubles"),
            })
            .collect()
    }

    /// A model read back from the text the database stores projects every row to the same
    /// coordinates, bit for bit, as the model the fit returned: decimal JSON text read about one
    /// double in ten back one unit in the last place off.
    #[test]
    fn a_stored_model_projects_the_same_coordinates_bit_for_bit() {
        let rows: Vec<f64> = (0..600u64)
            .flat_map(|i| (0..7u64).map(move |j| ((i * 7 + j) * 2654435761 % 10007) as f64 / 97.0 + (i % 5) as f64))
            .collect();
        let x = Array2::from_shape_vec((600, 7), rows).unwrap();
        let params = PcaStage.resolve(&BTreeMap::new()).unwrap();
        let fitted = PcaStage.fit(x.view(), &params, 0).unwrap();
        let stored: Value = serde_json::from_str(&fitted.model.to_string()).unwrap();
        let model: PcaModel = serde_json::from_value(fitted.model.clone()).unwrap();
        let read_back: PcaModel = serde_json::from_value(stored.clone()).unwrap();
        assert!(model
            .components
            .iter()
            .chain(model.mean.iter())
            .zip(read_back.components.iter().chain(read_back.mean.iter()))
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(
            coordinates(&PcaStage.apply(&fitted.model, x.view()).unwrap()),
            coordinates(&PcaStage.apply(&stored, x.view()).unwrap())
        );
    }

    /// Models stored before the fields were exact (decimal numbers, ndarray's own form) still
    /// read and project.
    #[test]
    fn models_stored_with_decimal_numbers_still_read() {
        let old = json!({
            "mean": {"v": 1, "dim": [2], "data": [1.0, 2.0]},
            "components": {"v": 1, "dim": [1, 2], "data": [0.6, 0.8]},
            "explained_variance": [2.5],
            "explained_variance_ratio": [0.9]
        });
        let x = ndarray::array![[2.0, 4.0], [1.0, 2.0]];
        let applied = PcaStage.apply(&old, x.view()).unwrap();
        let Values::Float(pc1) = &applied.columns[0].values else {
            panic!()
        };
        assert!((pc1[0] - 2.2).abs() < 1e-12 && pc1[1].abs() < 1e-12, "{pc1:?}");
    }
}
