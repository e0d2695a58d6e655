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
    /// Scores strictly above it are anomalies (stored exactly: a row whose score equals it must
    /// not vote otherwise in a later score run).
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub threshold: f64,
    pub contamination: f64,
}

/// The stage.
pub struct IForestStage;

/// The result of an anomaly stage whose scores rise with anomaly: `score`, and `is_anomaly`
/// strictly above `threshold` (the columns of `anomaly_scores`, which every such stage writes),
/// as scikit-learn's `predict` (outlier when `score_samples < offset_`): with `>=`, rows tied at
/// the threshold pushed the flagged share above the contamination.
pub(crate) fn applied(scores: Vec<f64>, threshold: f64) -> Applied {
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

/// The `contamination` parameter of an anomaly stage: the expected share of anomalies in the
/// training rows, which puts the `is_anomaly` threshold at that quantile of their scores.
pub(crate) fn contamination_param(stage: &'static str, set: &BTreeMap<String, String>) -> Result<f64> {
    let contamination: f64 = param(stage, set, "contamination", 0.05, "a share between 0 and 0.5")?;
    if !(contamination > 0.0 && contamination <= 0.5) {
        return Err(Error::StageParams {
            stage,
            reason: format!(
                "contamination={contamination}: expected the expected share of anomalies, above 0 and at most 0.5"
            ),
        });
    }
    Ok(contamination)
}

/// What [`fit_on_subsample`] returns: the parts of an ocsvm, lof or autoencoder model and the
/// result on the training rows.
pub(crate) struct SubsampleFit<D> {
    pub standardizer: Standardizer,
    pub detector: D,
    pub threshold: f64,
    pub metrics: Map<String, Value>,
    /// The training rows scored, with the milliseconds it took ([`Fitted::training_output`]).
    pub training_output: (Applied, f64),
}

/// The fit the ocsvm, lof and autoencoder stages share: standardise with the training rows'
/// statistics, fit the detector (`fit`, which returns it and its metrics) on a seeded subsample
/// of at most `sample` rows, score every training row (`score`) and put the threshold at the
/// training scores' (1 - contamination) quantile. `model` names the detector in messages.
pub(crate) fn fit_on_subsample<D>(
    stage: &'static str,
    model: &'static str,
    x: ArrayView2<f64>,
    (sample, seed, contamination): (usize, u64, f64),
    fit: impl FnOnce(ArrayView2<f64>) -> Result<(D, Map<String, Value>)>,
    score: impl Fn(&D, ArrayView2<f64>, &[usize]) -> Result<Vec<f64>>,
) -> Result<SubsampleFit<D>> {
    check_finite(model, x)?;
    let standardizer = Standardizer::fit(x);
    let standardized = standardizer.apply(stage, x)?;
    let drawn = subsample_rows(standardized.nrows(), sample, seed);
    let rows = standardized.select(ndarray::Axis(0), &drawn);
    let (detector, mut metrics) = fit(rows.view())?;
    let started = Instant::now();
    let scores = score(&detector, standardized.view(), &drawn)?;
    let threshold = contamination_threshold(&scores, contamination);
    let out = applied(scores, threshold);
    let score_ms = started.elapsed().as_secs_f64() * 1000.0;
    metrics.insert("contamination".into(), json!(contamination));
    Ok(SubsampleFit {
        standardizer,
        detector,
        threshold,
        metrics,
        training_output: (out, score_ms),
    })
}

/// At most `max` rows of `x`, drawn without replacement with `seed` and kept in source order; all
/// rows (a copy) when there are no more than `max`. Row `i` is drawn when its seeded key (a hash
/// of seed and `i`) is among the `max` smallest, so rows appended to a source (a retrain's
/// false positives, module marks) leave the draw of the others alone but for the ones they
/// displace: a retrain differs from the fit before it by what was added, not by a new draw.
#[cfg(test)]
pub(crate) fn subsample(x: ArrayView2<f64>, max: usize, seed: u64) -> ndarray::Array2<f64> {
    x.select(ndarray::Axis(0), &subsample_rows(x.nrows(), max, seed))
}

/// The positions [`subsample`] draws from `n` rows, ascending (every row when `n <= max`).
pub(crate) fn subsample_rows(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut keyed: Vec<(u64, usize)> = (0..n).map(|i| (row_key(seed, i as u64), i)).collect();
    keyed.select_nth_unstable(max - 1);
    let mut rows: Vec<usize> = keyed[..max].iter().map(|&(_, i)| i).collect();
    rows.sort_unstable();
    rows
}

/// SplitMix64 of seed and row number: a seeded, well-mixed key per row.
fn row_key(seed: u64, row: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(row.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rejects NaN and infinite cells, naming the first: the distance and gradient arithmetic of the
/// anomaly stages would carry them silently into every score.
pub(crate) fn check_finite(model: &'static str, x: ArrayView2<f64>) -> Result<()> {
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((row, column), v)) => Err(Error::ModelInput {
            model,
            reason: format!(
                "row {row}, feature column {column} is {v}: the model needs finite numbers\n  hint: filter or fill NULL, NaN and infinite values in the source"
            ),
        }),
    }
}

/// Checks the width of a matrix to score against the model's.
pub(crate) fn check_width(model: &'static str, expected: usize, x: ArrayView2<f64>) -> Result<()> {
    if x.ncols() != expected {
        return Err(Error::ModelInput {
            model,
            reason: format!(
                "the model was fitted on {expected} feature columns but the data to score has {}\n  hint: score data with the same columns as the training source",
                x.ncols()
            ),
        });
    }
    Ok(())
}

/// Per-column standardisation of the encoded matrix, fitted on the training rows, for the
/// distance- and reconstruction-based stages (ocsvm, lof, autoencoder). The framework scales
/// numeric columns but leaves one-hot columns at 0/1, which for these models weighs a category
/// far below a number; standardising every encoded column (numeric ones are unchanged by it)
/// makes each count equally, as the scikit-learn anchor's preprocessing does. A constant column
/// keeps divisor 1, so a new row that differs there still differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Standardizer {
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub mean: Vec<f64>,
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub std: Vec<f64>,
}

impl Standardizer {
    pub fn fit(x: ArrayView2<f64>) -> Standardizer {
        let n = x.nrows().max(1) as f64;
        let mean: Vec<f64> = x.columns().into_iter().map(|c| c.sum() / n).collect();
        let std = x
            .columns()
            .into_iter()
            .zip(&mean)
            .map(|(c, m)| {
                let s = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
                if s > 0.0 && s.is_finite() {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Standardizer { mean, std }
    }

    /// `x` standardised; an error when its width is not the fitted one.
    pub fn apply(&self, model: &'static str, x: ArrayView2<f64>) -> Result<ndarray::Array2<f64>> {
        check_width(model, self.mean.len(), x)?;
        if self.std.len() != self.mean.len() || self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(Error::ModelInput {
                model,
                reason: "the stored column statistics are damaged; train the model again".into(),
            });
        }
        let mut out = x.to_owned();
        for mut row in out.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
        Ok(out)
    }
}

/// Serde helpers storing doubles as their IEEE-754 bits: serde_json's decimal text does not
/// always read back the same double (without its `float_roundtrip` feature some come back one
/// unit in the last place off; bench/RESULTS.md has how many), and a stored model must score a row exactly
/// as the run that fitted it (the ensemble's percentiles jump across flat stretches of a member's
/// score table, so one unit in the last place can reorder rows). Use with `#[serde(with = ...)]`.
///
/// Reading is lenient: a field that older models stored as a decimal number (a float in JSON)
/// still reads, as serde_json parses it; bits are a JSON integer, which serde_json never writes
/// for an `f64` (it writes `2.0`, not `2`), so the two forms cannot be confused.
pub(crate) mod exact {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// One double: its bits when written, bits or a decimal number when read.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Bits(pub f64);

    impl Serialize for Bits {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.0.to_bits().serialize(serializer)
        }
    }

    impl<'de> Deserialize<'de> for Bits {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bits, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = Bits;

                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a double's IEEE-754 bits (an unsigned integer) or a decimal number")
                }

                fn visit_u64<E: serde::de::Error>(self, bits: u64) -> Result<Bits, E> {
                    Ok(Bits(f64::from_bits(bits)))
                }

                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bits, E> {
                    u64::try_from(v)
                        .map(|bits| Bits(f64::from_bits(bits)))
                        .map_err(|_| E::custom(format!("{v} is not a double's bits")))
                }

                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Bits, E> {
                    Ok(Bits(v))
                }
            }
            deserializer.deserialize_any(Visitor)
        }
    }

    pub mod scalar {
        use super::*;

        pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
            Bits(*value).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
            Ok(Bits::deserialize(deserializer)?.0)
        }
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
            value.map(Bits).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
            Ok(Option::<Bits>::deserialize(deserializer)?.map(|b| b.0))
        }
    }

    pub mod vec {
        use super::*;

        pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
            values
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u64>>()
                .serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
            Ok(Vec::<Bits>::deserialize(deserializer)?
                .into_iter()
                .map(|b| b.0)
                .collect())
        }
    }

    pub mod array1 {
        use super::*;
        use ndarray::Array1;

        /// What a vector field held as an `Array1` holds: bits, or (models stored before the
        /// field was exact) ndarray's own form with decimal numbers.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bits(Vec<u64>),
            Decimal(Array1<f64>),
        }

        pub fn serialize<S: Serializer>(v: &Array1<f64>, serializer: S) -> Result<S::Ok, S::Error> {
            v.iter()
                .map(|x| x.to_bits())
                .collect::<Vec<u64>>()
                .serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Array1<f64>, D::Error> {
            match Either::deserialize(deserializer)? {
                Either::Bits(bits) => Ok(bits.into_iter().map(f64::from_bits).collect()),
                Either::Decimal(v) => Ok(v),
            }
        }
    }

    pub mod matrix {
        use super::*;
        use ndarray::Array2;

        #[derive(Serialize, Deserialize)]
        struct Stored {
            rows: usize,
            cols: usize,
            bits: Vec<u64>,
        }

        /// What a matrix field holds: bits, or (models stored before the field was exact)
        /// ndarray's own form with decimal numbers.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bits(Stored),
            Decimal(Array2<f64>),
        }

        pub fn serialize<S: Serializer>(m: &Array2<f64>, serializer: S) -> Result<S::Ok, S::Error> {
            Stored {
                rows: m.nrows(),
                cols: m.ncols(),
                bits: m.iter().map(|v| v.to_bits()).collect(),
            }
            .serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Array2<f64>, D::Error> {
            match Either::deserialize(deserializer)? {
                Either::Bits(s) => {
                    Array2::from_shape_vec((s.rows, s.cols), s.bits.into_iter().map(f64::from_bits).collect())
                        .map_err(serde::de::Error::custom)
                }
                Either::Decimal(m) => Ok(m),
            }
        }
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

#[cfg(test)]
mod exact_tests {
    use super::exact;
    use ndarray::Array2;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        #[serde(with = "exact::scalar")]
        threshold: f64,
        #[serde(default, with = "exact::option")]
        limit: Option<f64>,
        #[serde(with = "exact::matrix")]
        points: Array2<f64>,
    }

    /// Doubles that serde_json's decimal text reads back one unit in the last place off come back
    /// exactly; models stored before a field was exact (decimal numbers, ndarray's matrix form)
    /// still read.
    #[test]
    fn exact_fields_round_trip_and_read_older_decimal_models() {
        let x: f64 = 0.929_561_252_213_731_3;
        assert_ne!(
            serde_json::from_str::<f64>(&serde_json::to_string(&x).unwrap())
                .unwrap()
                .to_bits(),
            x.to_bits()
        );
        let stored = Stored {
            threshold: x,
            limit: Some(x),
            points: Array2::from_elem((2, 3), x),
        };
        let text = serde_json::to_string(&stored).unwrap();
        let back: Stored = serde_json::from_str(&text).unwrap();
        assert_eq!(back.threshold.to_bits(), x.to_bits());
        assert_eq!(back.limit.map(f64::to_bits), Some(x.to_bits()));
        assert!(back.points.iter().all(|v| v.to_bits() == x.to_bits()));
        let via_value: Stored = serde_json::from_value(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(via_value, stored);
        let old: Stored =
            serde_json::from_str(r#"{"threshold":0.25,"points":{"v":1,"dim":[1,2],"data":[1.5,-2.0]}}"#).unwrap();
        assert_eq!(
            old,
            Stored {
                threshold: 0.25,
                limit: None,
                points: ndarray::array![[1.5, -2.0]],
            }
        );
        assert!(serde_json::from_str::<Stored>(r#"{"threshold":-3,"points":{"rows":0,"cols":0,"bits":[]}}"#).is_err());
    }
}

#[cfg(test)]
mod subsample_tests {
    use super::*;

    /// A retrain's appended rows (module marks) change the draw by the rows they displace only.
    #[test]
    fn appended_rows_leave_the_draw_of_the_others_alone() {
        let x = ndarray::Array2::from_shape_fn((1000, 1), |(i, _)| i as f64);
        let mut more = x.clone();
        for i in 0..20 {
            more.push_row(ndarray::ArrayView1::from(&[1000.0 + i as f64])).unwrap();
        }
        let before: Vec<f64> = subsample(x.view(), 100, 7).column(0).to_vec();
        let after: Vec<f64> = subsample(more.view(), 100, 7).column(0).to_vec();
        assert_eq!((before.len(), after.len()), (100, 100));
        let old_after: Vec<&f64> = after.iter().filter(|v| **v < 1000.0).collect();
        assert!(old_after.iter().all(|v| before.contains(v)), "only displacements");
        assert_eq!(old_after.len() + (after.len() - old_after.len()), 100);
        assert!(old_after.len() >= 90, "{} of 100 kept", old_after.len());
        assert_ne!(before, subsample(x.view(), 100, 8).column(0).to_vec(), "seeded");
    }
}
