//! The `ensemble` stage: several anomaly stages fitted on the same rows and combined (prototype
//! 002's voting detector). Writes `ensemble_scores`.
//!
//! - Members: `--set members=iforest,ocsvm,lof,autoencoder` (the default: all four); a member's own
//!   parameters as `--set MEMBER.KEY=VALUE` (e.g. `ocsvm.nu=0.1`). Every member is fitted with the
//!   run's seed, in parallel, and stored inside the ensemble's model, so scoring refits nothing.
//! - Votes: a member votes "anomaly" when its score is strictly above its own threshold (its
//!   `contamination` quantile of its training scores, as when it runs alone; `--set
//!   contamination=C` sets it for every member not given its own). `votes` counts them;
//!   `is_anomaly` is votes >= `min_votes` (default: a majority, more than half of the members);
//!   `confidence` is the share of members agreeing with that verdict.
//! - Ranking score: each member's score becomes its tail share among that member's training
//!   scores, t = 1 - percentile + 1/1001 (interpolated in a table of 1 001 quantiles, so t is in
//!   1/1001..1), and the ranking score is the weighted mean over members of -ln t: Fisher's way of
//!   combining p-values, a mean surprisal. Tail shares put the members' incomparable scales (a
//!   path-length score, a density ratio, a kernel margin, a squared error) on one footing; the
//!   logarithm keeps the members' agreement in the far tail apart, where a plain mean of
//!   percentiles saturates at 1 and the ranking loses most of what tells anomalies apart (on
//!   NSL-KDD it fell below its best member; see bench/RESULTS.md). exp(-score) is the weighted
//!   geometric mean of the members' tail shares. ROC-AUC and top-k rankings use the score.
//! - Weights, learnt from the training rows without labels: a member's weight is the agreement
//!   of its ranking with the other members', the correlation (Pearson's, of the training rows'
//!   percentiles, read from each member's quantile table: close to Spearman's rank correlation of
//!   the scores) between its percentiles and the mean
//!   of the others' percentiles, clamped at 0 and normalised to sum 1 (all equal when no member
//!   agrees with the others, and for a single member). A member that ranks the rows unlike the
//!   others (on NSL-KDD, LOF) counts less, in the spirit of the consensus ("pseudo ground
//!   truth") selection of Rayana and Akoglu's SELECT (2016); a member agreeing with the rest adds
//!   no more weight than its share. Stored in the model (`weight` of each member); models stored
//!   before the weights existed weigh their members equally.
//! - Severity, from votes and the ranking score: `critical` (every member votes and exp(-score)
//!   <= 0.01), `high` (is_anomaly and exp(-score) <= 0.05), `medium` (is_anomaly), `low` (some
//!   member votes, too few for is_anomaly), `none` (no member votes).
//!
//! May touch: nothing but its arguments (the members are other stages' pure computation).

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{count_param, from_json, stage, to_json, AnomalyOutput, Applied, Fitted, OutputColumn, Stage, Values};
use crate::error::{Error, Result};

const NAME: &str = "ensemble";

/// Stages that can be members, in the order of `ensemble_scores`' member columns.
pub const MEMBER_STAGES: [&str; 4] = ["iforest", "ocsvm", "lof", "autoencoder"];

/// Points of each member's table of training-score quantiles.
const QUANTILES: usize = 1001;

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleParams {
    /// Member stages, each at most once.
    pub members: Vec<String>,
    /// Each member's resolved parameters, in `members` order.
    pub member_params: Vec<Value>,
    pub min_votes: usize,
}

/// One fitted member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub stage: String,
    /// The member stage's own stored model (with its threshold).
    pub model: Value,
    /// Quantiles 0, 0.001, ..., 1 of its scores on the training rows (stored exactly).
    #[serde(with = "crate::analysis::anomaly::exact::vec")]
    pub quantiles: Vec<f64>,
    /// Its weight in the ranking score (module doc); None in models stored before weights: equal.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::analysis::anomaly::exact::option"
    )]
    pub weight: Option<f64>,
}

/// The stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleModel {
    pub members: Vec<Member>,
    pub min_votes: usize,
}

/// The stage.
pub struct EnsembleStage;

fn params_error(reason: impl Into<String>) -> Error {
    Error::StageParams {
        stage: NAME,
        reason: reason.into(),
    }
}

fn damaged(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: NAME,
        reason: format!("{}; train the model again", reason.into()),
    }
}

/// Quantiles 0..=1 in `QUANTILES` steps of the finite scores (linear interpolation).
fn quantile_table(scores: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return vec![0.0; QUANTILES];
    }
    sorted.sort_by(f64::total_cmp);
    let last = (sorted.len() - 1) as f64;
    (0..QUANTILES)
        .map(|q| {
            let position = q as f64 / (QUANTILES - 1) as f64 * last;
            let (below, above) = (position.floor() as usize, position.ceil() as usize);
            sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
        })
        .collect()
}

/// Share of the training scores below `score`, interpolated in the quantile table: 0..1.
pub fn percentile(quantiles: &[f64], score: f64) -> f64 {
    let n = quantiles.len();
    if n < 2 || score.is_nan() {
        return 0.5;
    }
    let above = quantiles.partition_point(|q| *q <= score);
    if above == 0 {
        return 0.0;
    }
    if above == n {
        return 1.0;
    }
    let (lo, hi) = (quantiles[above - 1], quantiles[above]);
    ((above - 1) as f64 + (score - lo) / (hi - lo)) / (n - 1) as f64
}

/// A member's contribution to the ranking score: -ln of the tail share above `score`.
pub fn surprisal(quantiles: &[f64], score: f64) -> f64 {
    let floor = 1.0 / quantiles.len().max(1) as f64;
    -((1.0 - percentile(quantiles, score)) + floor).min(1.0).ln()
}

/// Each member's weight from its training scores (`scores[m][i]`: member m, training row i; the
/// module doc): the correlation of its percentiles with the mean of the other members'
/// percentiles, clamped at 0, normalised to sum 1; equal weights when none is positive.
fn agreement_weights(quantiles: &[&[f64]], scores: &[&[f64]]) -> Vec<f64> {
    let members = scores.len();
    let equal = vec![1.0 / members.max(1) as f64; members];
    let n = scores.first().map_or(0, |s| s.len());
    // A member without scores, or with another number of rows, is `combine`'s error to report.
    if members < 2 || n < 2 || scores.iter().any(|s| s.len() != n) {
        return equal;
    }
    let percentiles: Vec<Vec<f64>> = quantiles
        .iter()
        .zip(scores)
        .map(|(q, s)| s.iter().map(|v| percentile(q, *v)).collect())
        .collect();
    let sum: Vec<f64> = (0..n).map(|i| percentiles.iter().map(|p| p[i]).sum()).collect();
    let raw: Vec<f64> = percentiles
        .iter()
        .map(|own| {
            let others: Vec<f64> = own
                .iter()
                .zip(&sum)
                .map(|(p, total)| (total - p) / (members - 1) as f64)
                .collect();
            let r = correlation(own, &others);
            if r.is_finite() {
                r.max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = raw.iter().sum();
    if total > 0.0 {
        raw.iter().map(|w| w / total).collect()
    } else {
        equal
    }
}

/// Pearson's correlation of two equally long series (NaN when either is constant).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    ab / (aa * bb).sqrt()
}

/// Severity of a row from its votes and ranking score (see the module doc).
pub fn severity(votes: usize, members: usize, min_votes: usize, score: f64) -> &'static str {
    let flagged = votes >= min_votes;
    let tail = (-score).exp();
    if flagged && votes == members && tail <= 0.01 {
        "critical"
    } else if flagged && tail <= 0.05 {
        "high"
    } else if flagged {
        "medium"
    } else if votes > 0 {
        "low"
    } else {
        "none"
    }
}

/// Combines the members' outputs on the same rows.
fn combine(members: &[Member], outputs: &[AnomalyOutput], min_votes: usize) -> Result<Applied> {
    let n = outputs.first().map_or(0, |o| o.flagged.len());
    let mut member_scores: Vec<&[f64]> = Vec::new();
    for (member, output) in members.iter().zip(outputs) {
        let scores = output
            .score
            .as_deref()
            .ok_or_else(|| damaged(format!("member {} gave no scores", member.stage)))?;
        if scores.len() != n || output.flagged.len() != n {
            return Err(damaged(format!(
                "member {} scored a different number of rows",
                member.stage
            )));
        }
        member_scores.push(scores);
    }
    let count = members.len();
    let mut score = vec![0.0; n];
    let mut votes = vec![0i32; n];
    for ((member, output), scores) in members.iter().zip(outputs).zip(&member_scores) {
        for i in 0..n {
            let s = surprisal(&member.quantiles, scores[i]);
            // A model stored without weights scores as it always did: the plain mean.
            score[i] += match member.weight {
                Some(weight) => weight * s,
                None => s / count as f64,
            };
            votes[i] += i32::from(output.flagged[i]);
        }
    }
    let flagged: Vec<bool> = votes.iter().map(|v| *v as usize >= min_votes).collect();
    let confidence: Vec<f64> = votes
        .iter()
        .zip(&flagged)
        .map(|(v, f)| {
            let agreeing = if *f { *v as usize } else { count - *v as usize };
            agreeing as f64 / count as f64
        })
        .collect();
    let severities: Vec<String> = votes
        .iter()
        .zip(&score)
        .map(|(v, s)| severity(*v as usize, count, min_votes, *s).to_string())
        .collect();
    let anomalies = flagged.iter().filter(|f| **f).count();
    let mut metrics = Map::new();
    metrics.insert("anomalies".into(), json!(anomalies));
    metrics.insert(
        "anomaly_share".into(),
        json!(if n == 0 { 0.0 } else { anomalies as f64 / n as f64 }),
    );
    for level in ["critical", "high", "medium", "low"] {
        metrics.insert(
            format!("severity_{level}"),
            json!(severities.iter().filter(|s| *s == level).count()),
        );
    }
    let mut columns = vec![
        OutputColumn {
            name: "score",
            values: Values::Float(score.clone()),
        },
        OutputColumn {
            name: "is_anomaly",
            values: Values::Bool(flagged.clone()),
        },
        OutputColumn {
            name: "votes",
            values: Values::Int(votes),
        },
        OutputColumn {
            name: "confidence",
            values: Values::Float(confidence),
        },
        OutputColumn {
            name: "severity",
            values: Values::Text(severities),
        },
    ];
    for (stage_name, score_column, vote_column) in [
        ("iforest", "iforest_score", "iforest_vote"),
        ("ocsvm", "ocsvm_score", "ocsvm_vote"),
        ("lof", "lof_score", "lof_vote"),
        ("autoencoder", "autoencoder_score", "autoencoder_vote"),
    ] {
        let at = members.iter().position(|m| m.stage == stage_name);
        columns.push(OutputColumn {
            name: score_column,
            values: Values::OptFloat(match at {
                Some(at) => member_scores[at].iter().map(|s| Some(*s)).collect(),
                None => vec![None; n],
            }),
        });
        columns.push(OutputColumn {
            name: vote_column,
            values: Values::OptBool(match at {
                Some(at) => outputs[at].flagged.iter().map(|f| Some(*f)).collect(),
                None => vec![None; n],
            }),
        });
    }
    Ok(Applied {
        columns,
        metrics,
        anomaly: Some(AnomalyOutput {
            flagged,
            score: Some(score),
        }),
    })
}

fn member_output(stage_name: &str, applied: Applied) -> Result<AnomalyOutput> {
    applied
        .anomaly
        .ok_or_else(|| damaged(format!("member {stage_name} is not an anomaly stage")))
}

impl Stage for EnsembleStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Anomaly ensemble: member votes at their own thresholds, confidence, severity, ranking score from the members' training percentiles weighted by their agreement"
    }

    fn table(&self) -> &'static str {
        "ensemble_scores"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "members=iforest,ocsvm,lof,autoencoder, min_votes=majority, contamination=each member's (0.05), MEMBER.KEY=VALUE for a member's parameters"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        let members: Vec<String> = match set.get("members") {
            None => MEMBER_STAGES.iter().map(|s| s.to_string()).collect(),
            Some(list) => list.split(',').map(|m| m.trim().to_ascii_lowercase()).collect(),
        };
        if members.is_empty() || members.iter().any(|m| m.is_empty()) {
            return Err(params_error(format!(
                "members={}: expected stages separated by commas, from {}",
                set.get("members").cloned().unwrap_or_default(),
                MEMBER_STAGES.join(", ")
            )));
        }
        for (i, m) in members.iter().enumerate() {
            if !MEMBER_STAGES.contains(&m.as_str()) {
                return Err(params_error(format!(
                    "member '{m}' is not an anomaly stage; members come from {}",
                    MEMBER_STAGES.join(", ")
                )));
            }
            if members[..i].contains(m) {
                return Err(params_error(format!("member '{m}' is listed twice")));
            }
        }
        let mut member_sets: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in set {
            if key == "members" || key == "min_votes" || key == "contamination" {
                continue;
            }
            let Some((member, member_key)) = key.split_once('.') else {
                return Err(params_error(format!(
                    "unknown parameter '{key}'; ensemble takes members, min_votes, contamination (every member's) and MEMBER.KEY=VALUE (and max_categories)"
                )));
            };
            let Some(member) = members.iter().find(|m| m.as_str() == member) else {
                return Err(params_error(format!(
                    "'{key}' sets a parameter of '{member}', which is not among the members ({})",
                    members.join(", ")
                )));
            };
            member_sets
                .entry(member.as_str())
                .or_default()
                .insert(member_key.to_string(), value.clone());
        }
        if let Some(contamination) = set.get("contamination") {
            // Every member's, unless set for that member.
            for m in &members {
                member_sets
                    .entry(m.as_str())
                    .or_default()
                    .entry("contamination".to_string())
                    .or_insert_with(|| contamination.clone());
            }
        }
        let member_params = members
            .iter()
            .map(|m| stage(m)?.resolve(&member_sets.remove(m.as_str()).unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?;
        let majority = members.len() / 2 + 1;
        let min_votes = count_param(
            NAME,
            set,
            "min_votes",
            majority,
            members.len(),
            "a whole number of votes",
        )?;
        if min_votes == 0 {
            return Err(params_error("min_votes must be at least 1"));
        }
        to_json(
            NAME,
            &EnsembleParams {
                members,
                member_params,
                min_votes,
            },
        )
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: EnsembleParams = from_json(NAME, "parameters", params)?;
        if p.members.len() != p.member_params.len() {
            return Err(damaged("members and their parameters differ in number"));
        }
        // Each member on a thread of rayon's: a server's client cancelling reaches it too.
        let call = crate::interrupt::carry();
        let fitted: Vec<(Fitted, f64, f64)> = p
            .members
            .par_iter()
            .zip(&p.member_params)
            .map(|(name, member_params)| {
                let _call = call.enter();
                let member = stage(name)?;
                let started = Instant::now();
                let mut fitted = member.fit(x, member_params, seed)?;
                let total_ms = started.elapsed().as_secs_f64() * 1000.0;
                let score_ms = match &fitted.training_output {
                    Some((_, ms)) => *ms,
                    None => {
                        let started = Instant::now();
                        let applied = member.apply(&fitted.model, x)?;
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        fitted.training_output = Some((applied, ms));
                        ms
                    }
                };
                Ok((fitted, total_ms, score_ms))
            })
            .collect::<Result<_>>()?;
        let mut members = Vec::new();
        let mut outputs = Vec::new();
        let mut metrics = Map::new();
        let mut score_ms_total = 0.0;
        for (name, (mut member_fit, total_ms, score_ms)) in p.members.iter().zip(fitted) {
            let (applied, _) = member_fit
                .training_output
                .take()
                .ok_or_else(|| damaged(format!("member {name} gave no training output")))?;
            let output = member_output(name, applied)?;
            let quantiles = quantile_table(output.score.as_deref().unwrap_or_default());
            let mut member_metrics = member_fit.metrics.clone();
            member_metrics.insert("fit_ms".into(), json!((total_ms - score_ms).max(0.0)));
            metrics.insert(name.clone(), Value::Object(member_metrics));
            score_ms_total += score_ms;
            members.push(Member {
                stage: name.clone(),
                model: member_fit.model,
                quantiles,
                weight: None,
            });
            outputs.push(output);
        }
        let started = Instant::now();
        let weights = agreement_weights(
            &members.iter().map(|m| m.quantiles.as_slice()).collect::<Vec<_>>(),
            &outputs
                .iter()
                .map(|o| o.score.as_deref().unwrap_or_default())
                .collect::<Vec<_>>(),
        );
        for (member, weight) in members.iter_mut().zip(weights) {
            member.weight = Some(weight);
            if let Some(Value::Object(m)) = metrics.get_mut(&member.stage) {
                m.insert("weight".into(), json!(weight));
            }
        }
        let out = combine(&members, &outputs, p.min_votes)?;
        let score_ms = score_ms_total + started.elapsed().as_secs_f64() * 1000.0;
        metrics.insert("members".into(), json!(p.members));
        metrics.insert("min_votes".into(), json!(p.min_votes));
        let model = EnsembleModel {
            members,
            min_votes: p.min_votes,
        };
        Ok(Fitted {
            model: to_json(NAME, &model)?,
            metrics,
            training_output: Some((out, score_ms)),
        })
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: EnsembleModel = from_json(NAME, "model", model)?;
        if model.members.is_empty() || model.min_votes == 0 || model.min_votes > model.members.len() {
            return Err(damaged("the stored ensemble has no members or an impossible min_votes"));
        }
        if model
            .members
            .iter()
            .any(|m| !MEMBER_STAGES.contains(&m.stage.as_str()) || m.quantiles.len() < 2)
        {
            return Err(damaged(
                "a stored member is not an anomaly stage or has no score quantiles",
            ));
        }
        let call = crate::interrupt::carry();
        let outputs = model
            .members
            .par_iter()
            .map(|m| {
                let _call = call.enter();
                member_output(&m.stage, stage(&m.stage)?.apply(&m.model, x)?)
            })
            .collect::<Result<Vec<_>>>()?;
        combine(&model.members, &outputs, model.min_votes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_and_clamp() {
        let q = quantile_table(&(0..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(q.len(), QUANTILES);
        assert_eq!(percentile(&q, -5.0), 0.0);
        assert_eq!(percentile(&q, 500.0), 1.0);
        assert!((percentile(&q, 25.0) - 0.25).abs() < 1e-9);
        assert!((percentile(&q, 37.5) - 0.375).abs() < 1e-9);
        // A flat table (every training score equal) still orders below / at-or-above.
        let flat = quantile_table(&[2.0; 10]);
        assert_eq!(percentile(&flat, 1.0), 0.0);
        assert_eq!(percentile(&flat, 2.0), 1.0);
        // Surprisal: 0 at the bottom, ln(1001) beyond the top, increasing between.
        assert!(surprisal(&q, -5.0).abs() < 1e-3);
        assert!((surprisal(&q, 500.0) - (QUANTILES as f64).ln()).abs() < 1e-9);
        assert!(surprisal(&q, 90.0) > surprisal(&q, 50.0));
    }

    #[test]
    fn members_that_rank_like_the_others_weigh_more() {
        // Three members ranking 200 rows alike (with a little disorder each), a fourth at random.
        let mut state = 7u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let rows: Vec<f64> = (0..200).map(f64::from).collect();
        let scores: Vec<Vec<f64>> = vec![
            rows.iter().map(|r| r + 20.0 * noise()).collect(),
            rows.iter().map(|r| 2.0 * r + 40.0 * noise()).collect(),
            rows.iter().map(|r| (r / 10.0).exp() + noise()).collect(),
            rows.iter().map(|_| noise()).collect(),
        ];
        let tables: Vec<Vec<f64>> = scores.iter().map(|s| quantile_table(s)).collect();
        let weights = agreement_weights(
            &tables.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            &scores.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{weights:?}");
        assert!(weights[..3].iter().all(|w| *w > 0.3), "{weights:?}");
        assert!(weights[3] < 0.05, "{weights:?}");
        // One member, or none agreeing: equal weights.
        assert_eq!(agreement_weights(&[&tables[0]], &[&scores[0]]), vec![1.0]);
        let flat = vec![1.0; 200];
        let flat_table = quantile_table(&flat);
        assert_eq!(
            agreement_weights(&[&flat_table, &flat_table], &[&flat, &flat]),
            vec![0.5, 0.5]
        );
    }

    /// Regression (review): a model stored before the weights scores as it did, the plain mean
    /// `s / count` to the last bit (`(1 / 3) * s` differs from `s / 3` in the last place), and a
    /// member with another number of rows is `combine`'s error, not a panic in the weights.
    #[test]
    fn models_stored_without_weights_score_the_plain_mean_exactly() {
        let scores: Vec<Vec<f64>> = (1..=3)
            .map(|k| (0..50).map(|r| f64::from(r * k) + 0.1 * f64::from(k)).collect())
            .collect();
        let members: Vec<Member> = scores
            .iter()
            .enumerate()
            .map(|(k, s)| Member {
                stage: format!("m{k}"),
                model: Value::Null,
                quantiles: quantile_table(s),
                weight: None,
            })
            .collect();
        let outputs: Vec<AnomalyOutput> = scores
            .iter()
            .map(|s| AnomalyOutput {
                flagged: vec![false; s.len()],
                score: Some(s.clone()),
            })
            .collect();
        let applied = combine(&members, &outputs, 2).unwrap();
        let got = applied.anomaly.and_then(|a| a.score).unwrap();
        for (i, g) in got.iter().enumerate() {
            let mut want = 0.0;
            for (m, s) in members.iter().zip(&scores) {
                want += surprisal(&m.quantiles, s[i]) / 3.0;
            }
            assert_eq!(g.to_bits(), want.to_bits(), "row {i}");
        }
        let short = vec![1.0; 10];
        assert_eq!(
            agreement_weights(
                &members.iter().map(|m| m.quantiles.as_slice()).collect::<Vec<_>>(),
                &[scores[0].as_slice(), scores[1].as_slice(), short.as_slice()],
            ),
            vec![1.0 / 3.0; 3]
        );
        let mut bad = outputs.clone();
        bad[2].score = Some(short);
        assert!(combine(&members, &bad, 2).is_err());
    }

    #[test]
    fn severity_levels_follow_votes_and_score() {
        let score_of_tail = |tail: f64| -f64::ln(tail);
        assert_eq!(severity(4, 4, 3, score_of_tail(0.005)), "critical");
        assert_eq!(severity(4, 4, 3, score_of_tail(0.02)), "high");
        assert_eq!(severity(3, 4, 3, score_of_tail(0.5)), "medium");
        assert_eq!(severity(2, 4, 3, score_of_tail(0.001)), "low");
        assert_eq!(severity(0, 4, 3, score_of_tail(0.2)), "none");
    }

    #[test]
    fn members_and_their_parameters_are_checked() {
        let set = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let p: EnsembleParams =
            serde_json::from_value(EnsembleStage.resolve(&set(&[("members", "iforest,lof")])).unwrap()).unwrap();
        assert_eq!(p.members, vec!["iforest", "lof"]);
        assert_eq!(p.min_votes, 2);
        let p: EnsembleParams = serde_json::from_value(
            EnsembleStage
                .resolve(&set(&[("lof.k", "5"), ("min_votes", "1")]))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p.member_params[2]["k"], json!(5));
        assert_eq!(p.min_votes, 1);
        for bad in [
            set(&[("members", "iforest,kmeans")]),
            set(&[("members", "lof,lof")]),
            set(&[("members", "iforest"), ("lof.k", "5")]),
            set(&[("k", "5")]),
            set(&[("lof.nu", "0.1")]),
            set(&[("min_votes", "5")]),
        ] {
            assert!(EnsembleStage.resolve(&bad).is_err(), "{bad:?}");
        }
    }
}
