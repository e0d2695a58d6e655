//! The `iforest` stage: the [`super::iforest`] algorithm around the framework. Fits a forest on
//! the scaled, encoded rows, sets the anomaly threshold at the training scores' (1 -
//! contamination) quantile, and writes `anomaly_scores` (score 0..1, higher = more anomalous,
//! and is_anomaly). Scoring adds only the matrix the framework already built (Arrow in) and one
//! appender pass out.

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::iforest::{contamination_threshold, IsolationForest, IsolationForestParams};
use super::{
    count_param, from_json, known_keys, param, to_json, AnomalyOutput, Applied, Fitted, OutputColumn, Stage, Values,
};
use crate::error::{Error, Result};

const NAME: &str = "iforest";

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IForestParams {
    pub trees: usize,
    pub sample_size: usize,
    /// None: ceil(log2 sample_size).
    pub max_height: Option<usize>,
    /// Expected share of anomalies in the training rows; sets the threshold.
    pub contamination: f64,
}

/// The stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IForestModel {
    pub forest: IsolationForest,
    /// Scores at or above it are anomalies.
    pub threshold: f64,
    pub contamination: f64,
}

/// The stage.
pub struct IForestStage;

/// Flags the rows scoring strictly above the threshold, as scikit-learn's `predict` (outlier
/// when `score_samples < offset_`): with `>=`, rows tied at the threshold pushed the flagged
/// share above the contamination.
fn applied(scores: Vec<f64>, threshold: f64) -> Applied {
    let flagged: Vec<bool> = scores.iter().map(|s| *s > threshold).collect();
    let anomalies = flagged.iter().filter(|f| **f).count();
    let mut metrics = Map::new();
    metrics.insert("anomalies".into(), json!(anomalies));
    metrics.insert(
        "anomaly_share".into(),
        json!(if scores.is_empty() {
            0.0
        } else {
            anomalies as f64 / scores.len() as f64
        }),
    );
    metrics.insert("threshold".into(), json!(threshold));
    Applied {
        columns: vec![
            OutputColumn {
                name: "score",
                values: Values::Float(scores.clone()),
            },
            OutputColumn {
                name: "is_anomaly",
                values: Values::Bool(flagged.clone()),
            },
        ],
        metrics,
        anomaly: Some(AnomalyOutput {
            flagged,
            score: Some(scores),
        }),
    }
}

impl Stage for IForestStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Isolation Forest anomaly scores (Liu, Ting and Zhou 2008), threshold from a contamination rate"
    }

    fn table(&self) -> &'static str {
        "anomaly_scores"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "trees=100, sample_size=256, max_height=ceil(log2 sample_size), contamination=0.05"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["trees", "sample_size", "max_height", "contamination"])?;
        let p = IForestParams {
            trees: count_param(NAME, set, "trees", 100, 10_000, "a whole number of trees")?,
            sample_size: count_param(NAME, set, "sample_size", 256, 10_000_000, "a whole number of rows")?,
            max_height: match set.get("max_height") {
                None => None,
                Some(_) => Some(count_param(NAME, set, "max_height", 8, 64, "a whole number")?),
            },
            contamination: param(NAME, set, "contamination", 0.05, "a share between 0 and 0.5")?,
        };
        if p.trees == 0 || p.sample_size < 2 {
            return Err(Error::StageParams {
                stage: NAME,
                reason: "trees must be at least 1 and sample_size at least 2".into(),
            });
        }
        if !(p.contamination > 0.0 && p.contamination <= 0.5) {
            return Err(Error::StageParams {
                stage: NAME,
                reason: format!(
                    "contamination={}: expected the expected share of anomalies, above 0 and at most 0.5",
                    p.contamination
                ),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: IForestParams = from_json(NAME, "parameters", params)?;
        let forest = IsolationForest::fit(
            x,
            &IsolationForestParams {
                n_trees: p.trees,
                sample_size: p.sample_size,
                max_height: p.max_height,
                seed,
            },
        )?;
        let started = Instant::now();
        let scores = forest.score(x)?.to_vec();
        let threshold = contamination_threshold(&scores, p.contamination);
        let out = applied(scores, threshold);
        let score_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut metrics = Map::new();
        metrics.insert("trees".into(), json!(p.trees));
        metrics.insert("sample_size".into(), json!(p.sample_size.min(x.nrows())));
        metrics.insert("contamination".into(), json!(p.contamination));
        let model = IForestModel {
            forest,
            threshold,
            contamination: p.contamination,
        };
        Ok(Fitted {
            model: to_json(NAME, &model)?,
            metrics,
            training_output: Some((out, score_ms)),
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: IForestModel = from_json(NAME, "model", model)?;
        let scores = model.forest.score(x)?.to_vec();
        Ok(applied(scores, model.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: flagged at score >= threshold, 11 of 101 rows were anomalies at a contamination
    /// of 0.1, and every row of a constant series was.
    #[test]
    fn rows_at_the_threshold_are_not_flagged() {
        let scores: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        let t = contamination_threshold(&scores, 0.1);
        assert_eq!(applied(scores, t).metrics["anomalies"], json!(10));
        let flat = vec![0.5; 20];
        let t = contamination_threshold(&flat, 0.1);
        assert_eq!(applied(flat, t).metrics["anomalies"], json!(0));
    }
}
