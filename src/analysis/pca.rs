//! The `pca` stage: a low-dimensional embedding of the feature space with linfa-reduction's PCA
//! (prototype 000's 3D view, prototype 004's 2D view). Writes `embedding` (pc1..pc3).
//!
//! Explained variance is computed here rather than taken from linfa: linfa 0.8 divides the
//! squared singular values by (components - 1) and normalises the ratio over the kept components
//! only. Here variance_i = sigma_i^2 / (n - 1) and ratio_i = variance_i / total variance of the
//! scaled features, as scikit-learn reports them.

use std::collections::BTreeMap;

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_reduction::Pca;
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

/// The stored model: projection = (x - mean) . components^T.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaModel {
    pub mean: Array1<f64>,
    /// One row per component.
    pub components: Array2<f64>,
    pub explained_variance: Vec<f64>,
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
        "PCA embedding (linfa-reduction) to up to 3 components, explained variance stored"
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
                reason: format!("components={}: the embedding table holds 1 to 3 components", p.components),
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
        let dataset = DatasetBase::from(x.to_owned());
        let fitted = Pca::params(components)
            .fit(&dataset)
            .map_err(|e| invalid(format!("fitting {components} components failed: {e}")))?;
        let sigma = fitted.singular_values();
        let explained: Vec<f64> = sigma.iter().map(|s| s * s / (rows as f64 - 1.0)).collect();
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(width));
        let total: f64 = x
            .rows()
            .into_iter()
            .map(|r| r.iter().zip(mean.iter()).map(|(v, m)| (v - m) * (v - m)).sum::<f64>())
            .sum::<f64>()
            / (rows as f64 - 1.0);
        let ratio: Vec<f64> = explained
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        let mut metrics = Map::new();
        metrics.insert("components".into(), json!(components));
        metrics.insert("explained_variance".into(), json!(explained));
        metrics.insert("explained_variance_ratio".into(), json!(ratio));
        metrics.insert("explained_variance_ratio_total".into(), json!(ratio.iter().sum::<f64>()));
        let model = PcaModel {
            mean: fitted.mean().clone(),
            components: fitted.components().clone(),
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
        let Values::Float(pc1) = &applied.columns[0].values else { panic!() };
        assert_eq!(pc1.len(), 50);
        // Projection is a straight line: |pc1| grows with distance from the middle.
        assert!(pc1[0].abs() > pc1[25].abs());
    }
}
