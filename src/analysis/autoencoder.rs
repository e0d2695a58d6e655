//! The `autoencoder` stage: a small dense autoencoder (prototype 002's 64-32-16-8 encoder and its
//! mirror) on ndarray, trained to reproduce its training rows; a row's score is its mean squared
//! reconstruction error (higher = less like the training rows). Writes `anomaly_scores`.
//!
//! Why no deep-learning framework: the network has about 20 000 weights; a framework (burn,
//! candle, tch) would add a large dependency tree for what is eight matrix products and their
//! transposes per batch. The training follows scikit-learn's `MLPRegressor`, the anchor:
//! - ReLU hidden layers, identity output, Glorot-uniform initial weights and biases (bound
//!   sqrt(6 / (fan_in + fan_out)));
//! - loss: half the mean squared error, gradient (output - input) / batch rows, L2 penalty
//!   `alpha` (1e-4) on the weights;
//! - Adam (learning rate 1e-3, betas 0.9 / 0.999, epsilon 1e-8) on shuffled mini-batches of 200;
//! - early stopping: a seeded `validation` share (0.1) of the rows is held out; training stops
//!   when the validation R^2 (scikit-learn's score for a regressor) has not improved by `tol`
//!   (1e-4) for `patience` (10) epochs, or after `epochs`; the weights of the best validation epoch
//!   are kept. `epochs` defaults to 20, not scikit-learn's 200: on NSL-KDD scikit-learn's own run
//!   stops after about a dozen epochs, and training on to convergence fits the normal rows more
//!   tightly without ranking anomalies better (bench/RESULTS.md), at several times the cost.
//!
//! Arithmetic is in f32 (matrixmultiply's sgemm, twice as fast as f64; reconstruction errors need
//! no more precision), with results too small for a normal f32 flushed to zero
//! ([`FlushSubnormals`], x86-64's FTZ): a subnormal operand sends the processor's multiply-add
//! down a microcode slow path, and some seeds' networks made them after a few
//! epochs, after which nearly all their time went to sgemm's slow path (bench/RESULTS.md, stop
//! 36). A value that small changes no reconstruction error anyone reads. Elsewhere than on x86-64
//! subnormals are computed as usual.
//!
//! A batch's gradient is computed in fixed parts of its rows on as many threads as are free and
//! added in part order; the parts depend on the batch alone, so a seed repeats a model bit for bit
//! on any number of cores. Scoring is parallel over row chunks. A source larger than `sample` rows
//! (default 100 000) trains on a seeded subsample of that size (model_runs states it).
//!
//! May touch: nothing but its arguments (pure computation around the analysis framework), and the
//! flush-to-zero bit of the threads it computes on, which it sets only around its own arithmetic
//! and puts back.

use std::collections::BTreeMap;

use ndarray::{s, Array1, Array2, ArrayView2, Axis, Zip};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::anomaly::{applied, check_finite, check_width, contamination_param, fit_on_subsample, Standardizer};
use super::{count_param, from_json, known_keys, param, to_json, Applied, Fitted, Stage};
use crate::error::{Error, Result};

const NAME: &str = "autoencoder";

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPSILON: f32 = 1e-8;

/// A batch's gradient is computed in at most this many parts ([`batch_parts`]): the default
/// batch of 200 in two of 100 (smaller parts spend more of their time packing the weights for
/// the matrix products than multiplying).
const MAX_BATCH_PARTS: usize = 2;
/// Rows of a part at least.
const MIN_PART_ROWS: usize = 64;

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderParams {
    /// Encoder widths; the decoder mirrors them (64,32,16,8 gives 64-32-16-8-16-32-64).
    pub hidden: Vec<usize>,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub alpha: f64,
    /// Held-out share for early stopping.
    pub validation: f64,
    pub patience: usize,
    pub tol: f64,
    /// Rows trained on at most.
    pub sample: usize,
    pub contamination: f64,
}

/// One dense layer: `weights` is inputs x outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    pub weights: Array2<f32>,
    pub bias: Array1<f32>,
}

/// A trained autoencoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Autoencoder {
    pub layers: Vec<Layer>,
}

/// The stored model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoencoderModel {
    /// Column statistics of the training rows (see [`Standardizer`]).
    pub standardizer: Standardizer,
    pub network: Autoencoder,
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub threshold: f64,
    pub contamination: f64,
}

/// What training did.
#[derive(Debug, Clone)]
pub struct Training {
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// Validation R^2 (mean over columns) of the kept weights.
    pub best_validation_r2: f64,
    pub rows_trained: usize,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "autoencoder",
        reason: reason.into(),
    }
}

impl Autoencoder {
    /// Layer widths from input to output.
    fn widths(n_features: usize, hidden: &[usize]) -> Vec<usize> {
        let mut widths = vec![n_features];
        widths.extend(hidden);
        widths.extend(hidden.iter().rev().skip(1));
        widths.push(n_features);
        widths
    }

    fn init(widths: &[usize], rng: &mut Xoshiro256PlusPlus) -> Autoencoder {
        let layers = widths
            .windows(2)
            .map(|w| {
                let bound = (6.0 / (w[0] + w[1]) as f64).sqrt() as f32;
                Layer {
                    weights: Array2::from_shape_simple_fn((w[0], w[1]), || rng.gen_range(-bound..bound)),
                    bias: Array1::from_shape_simple_fn(w[1], || rng.gen_range(-bound..bound)),
                }
            })
            .collect();
        Autoencoder { layers }
    }

    /// Activations of every layer for `input` (the first is the input itself).
    fn forward(&self, input: Array2<f32>) -> Vec<Array2<f32>> {
        let last = self.layers.len() - 1;
        let mut activations = Vec::with_capacity(self.layers.len() + 1);
        activations.push(input);
        for (l, layer) in self.layers.iter().enumerate() {
            let mut z = activations[l].dot(&layer.weights);
            // The bias and ReLU in one pass over contiguous rows (vectorised); the same
            // arithmetic, value for value, as adding the bias and then clamping.
            match (z.as_slice_mut(), layer.bias.as_slice()) {
                (Some(cells), Some(bias)) if !bias.is_empty() => {
                    for row in cells.chunks_exact_mut(bias.len()) {
                        if l < last {
                            for (v, b) in row.iter_mut().zip(bias) {
                                *v = (*v + b).max(0.0);
                            }
                        } else {
                            for (v, b) in row.iter_mut().zip(bias) {
                                *v += b;
                            }
                        }
                    }
                }
                _ => {
                    z += &layer.bias;
                    if l < last {
                        z.mapv_inplace(|v| v.max(0.0));
                    }
                }
            }
            activations.push(z);
        }
        activations
    }

    /// Mean squared reconstruction error of each row.
    fn errors(&self, x: ArrayView2<f32>) -> Vec<f64> {
        let _flushing = FlushSubnormals::here();
        let activations = self.forward(x.to_owned());
        let output = &activations[activations.len() - 1];
        Zip::from(x.rows())
            .and(output.rows())
            .map_collect(|a, b| {
                a.iter().zip(b).map(|(u, v)| ((u - v) as f64).powi(2)).sum::<f64>() / a.len().max(1) as f64
            })
            .to_vec()
    }

    /// Coefficient of determination of the reconstruction, averaged over columns as scikit-learn's
    /// `r2_score` (a constant column counts 1 when reproduced exactly, else 0).
    fn r_squared(&self, x: ArrayView2<f32>, variance: &[f64]) -> f64 {
        let _flushing = FlushSubnormals::here();
        let activations = self.forward(x.to_owned());
        let output = &activations[activations.len() - 1];
        let mut residual = vec![0.0f64; x.ncols()];
        for (a, b) in x.rows().into_iter().zip(output.rows()) {
            for ((r, u), v) in residual.iter_mut().zip(a).zip(b) {
                *r += ((u - v) as f64).powi(2);
            }
        }
        let n = x.nrows() as f64;
        let per_column = residual.iter().zip(variance).map(|(r, v)| {
            let r = r / n;
            if *v > 0.0 {
                1.0 - r / v
            } else if r == 0.0 {
                1.0
            } else {
                0.0
            }
        });
        per_column.sum::<f64>() / x.ncols().max(1) as f64
    }

    /// Trains on the rows of `x` (already sub-sampled).
    pub fn train(x: ArrayView2<f64>, p: &AutoencoderParams, seed: u64) -> Result<(Autoencoder, Training)> {
        let (n, d) = x.dim();
        if d == 0 || n < 2 {
            return Err(invalid(format!(
                "cannot train on {n} rows of {d} feature columns: at least 2 rows and 1 column"
            )));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let held = ((n as f64 * p.validation).round() as usize).clamp(1, n - 1);
        let (validation_rows, training_rows) = order.split_at(held);
        let x32 = {
            let _flushing = FlushSubnormals::here();
            x.mapv(|v| v as f32)
        };
        let validation = x32.select(Axis(0), validation_rows);
        let mut training_rows = training_rows.to_vec();
        let training = x32.select(Axis(0), &training_rows);
        training_rows = (0..training.nrows()).collect();

        let widths = Self::widths(d, &p.hidden);
        let mut net = Self::init(&widths, &mut rng);
        let mut adam = Adam::new(&net);
        let mut best = (net.clone(), f64::NEG_INFINITY, 0usize);
        let validation_variance = column_variance(validation.view());
        let mut since_best = 0;
        let mut epochs_run = 0;
        let batch = p.batch.min(training.nrows()).max(1);
        for epoch in 1..=p.epochs {
            epochs_run = epoch;
            training_rows.shuffle(&mut rng);
            for chunk in training_rows.chunks(batch) {
                if crate::interrupt::requested() {
                    return Err(crate::error::Error::Interrupted);
                }
                let input = training.select(Axis(0), chunk);
                let grads = net.gradients(input.view(), p.alpha as f32);
                adam.step(&mut net, &grads, p.learning_rate as f32);
            }
            let r2 = net.r_squared(validation.view(), &validation_variance);
            if !r2.is_finite() {
                return Err(invalid(format!(
                    "training diverged at epoch {epoch} (validation R^2 {r2})\n  hint: lower --set learning_rate"
                )));
            }
            // scikit-learn's rule: no epoch counts as progress unless it beats the best by tol.
            if r2 > best.1 + p.tol {
                since_best = 0;
            } else {
                since_best += 1;
            }
            if r2 > best.1 {
                best = (net.clone(), r2, epoch);
            }
            if since_best >= p.patience {
                break;
            }
        }
        Ok((
            best.0,
            Training {
                epochs_run,
                best_epoch: best.2,
                best_validation_r2: best.1,
                rows_trained: n,
            },
        ))
    }

    /// Weight and bias gradients for one batch: the batch's rows are cut into [`batch_parts`]
    /// fixed parts, each part's share of the gradient is computed on its own (in parallel, so
    /// a core the ensemble's other members leave idle trains too), and the shares are added in
    /// part order. The cut depends on the batch alone, never on the threads, so a seed still
    /// repeats a model bit for bit.
    fn gradients(&self, input: ArrayView2<f32>, alpha: f32) -> Vec<(Array2<f32>, Array1<f32>)> {
        let rows = input.nrows();
        let parts = batch_parts(rows);
        let step = rows.div_ceil(parts);
        let shares: Vec<Vec<(Array2<f32>, Array1<f32>)>> = (0..parts)
            .into_par_iter()
            .map(|p| self.gradient_share(input.slice(s![p * step..((p + 1) * step).min(rows), ..]), rows as f32))
            .collect();
        let _flushing = FlushSubnormals::here();
        let mut shares = shares.into_iter();
        let mut grads = shares.next().expect("a batch has at least one part");
        for share in shares {
            for ((w, b), (sw, sb)) in grads.iter_mut().zip(share) {
                *w += &sw;
                *b += &sb;
            }
        }
        let scale = alpha / rows as f32;
        for ((w, _), layer) in grads.iter_mut().zip(&self.layers) {
            w.scaled_add(scale, &layer.weights);
        }
        grads
    }

    /// The rows' part of the batch gradient of the loss (without the L2 term): back-propagation
    /// of (output - input) / `batch_rows`.
    fn gradient_share(&self, input: ArrayView2<f32>, batch_rows: f32) -> Vec<(Array2<f32>, Array1<f32>)> {
        let _flushing = FlushSubnormals::here();
        let activations = self.forward(input.to_owned());
        let last = self.layers.len();
        let mut delta = &activations[last] - &activations[0];
        delta /= batch_rows;
        let mut grads = Vec::with_capacity(last);
        for l in (0..last).rev() {
            let layer = &self.layers[l];
            let w = activations[l].t().dot(&delta);
            let b = delta.sum_axis(Axis(0));
            if l > 0 {
                let mut back = delta.dot(&layer.weights.t());
                // ReLU's derivative: no gradient where the unit was off (a select, vectorised).
                match (back.as_slice_mut(), activations[l].as_slice()) {
                    (Some(g), Some(a)) => {
                        for (g, &a) in g.iter_mut().zip(a) {
                            *g = if a > 0.0 { *g } else { 0.0 };
                        }
                    }
                    _ => Zip::from(&mut back).and(&activations[l]).for_each(|g, &a| {
                        if a <= 0.0 {
                            *g = 0.0;
                        }
                    }),
                }
                delta = back;
            }
            grads.push((w, b));
        }
        grads.reverse();
        grads
    }

    /// Scores rows (mean squared reconstruction error), in parallel chunks.
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Vec<f64>> {
        let Some(first) = self.layers.first() else {
            return Err(invalid("the stored network has no layers; train the model again"));
        };
        let chained = self
            .layers
            .windows(2)
            .all(|w| w[0].weights.ncols() == w[1].weights.nrows())
            && self.layers.iter().all(|l| l.bias.len() == l.weights.ncols());
        let d = first.weights.nrows();
        if !chained || self.layers.last().map(|l| l.weights.ncols()) != Some(d) {
            return Err(invalid(
                "the stored network's layers do not fit together; train the model again",
            ));
        }
        check_width("autoencoder", d, x)?;
        check_finite("autoencoder", x)?;
        Ok(x.axis_chunks_iter(Axis(0), 1024)
            .into_par_iter()
            .flat_map_iter(|chunk| {
                let _flushing = FlushSubnormals::here();
                self.errors(chunk.mapv(|v| v as f32).view())
            })
            .collect())
    }
}

/// Results too small for a normal number flushed to zero (MXCSR's FTZ) on the current thread
/// while this lives; the thread's earlier setting comes back on drop. Every piece of the
/// network's f32 arithmetic (the conversion of its input, the forward and backward passes, the
/// sum of a batch's parts, Adam's step, the validation score) runs under one, on whichever thread
/// it runs, so no subnormal is ever made and a seed still gives the same bits everywhere.
///
/// Rule: a guard is never held across a rayon call. A thread waiting in rayon runs other queued
/// jobs (another ensemble member's, say), which would then compute with this setting. Only FTZ is
/// set, not DAZ (subnormal operands read as zero): Rust documents changing DAZ as undefined
/// behaviour, and with FTZ in force while the network computes no subnormal reaches it anyway.
/// Not `Send`: it must be dropped on the thread whose setting it changed.
struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    fn here() -> FlushSubnormals {
        /// MXCSR's flush-to-zero bit.
        const FLUSH_TO_ZERO: u32 = 1 << 15;
        let saved = read_mxcsr();
        write_mxcsr(saved | FLUSH_TO_ZERO);
        FlushSubnormals {
            saved,
            _this_thread: std::marker::PhantomData,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn here() -> FlushSubnormals {
        FlushSubnormals {
            _this_thread: std::marker::PhantomData,
        }
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: stmxcsr stores the 32-bit control register at the address given, a local u32.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags)) };
    value
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads the control register from a local u32. The values written are the
    // thread's own earlier value, or it with the flush-to-zero bit set: no reserved bit is ever
    // set (that would fault), and neither the rounding mode, the exception masks nor DAZ change
    // (which Rust documents as undefined behaviour). Flush-to-zero changes only results that
    // would be subnormal, in the code the guard covers ([`FlushSubnormals`]).
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags)) };
}

/// Parts a batch of `rows` is cut into for [`Autoencoder::gradients`]: at most
/// [`MAX_BATCH_PARTS`], each of at least [`MIN_PART_ROWS`] rows (a smaller part makes matrix
/// products too small to be worth a thread).
fn batch_parts(rows: usize) -> usize {
    (rows / MIN_PART_ROWS).clamp(1, MAX_BATCH_PARTS)
}

/// Population variance of each column.
fn column_variance(x: ArrayView2<f32>) -> Vec<f64> {
    let n = x.nrows().max(1) as f64;
    x.columns()
        .into_iter()
        .map(|c| {
            let mean = c.iter().map(|v| *v as f64).sum::<f64>() / n;
            c.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n
        })
        .collect()
}

/// First and second moments of one layer's weights and biases.
type LayerMoments = (Array2<f32>, Array2<f32>, Array1<f32>, Array1<f32>);

/// Adam's moment estimates.
struct Adam {
    step: i32,
    moments: Vec<LayerMoments>,
}

impl Adam {
    fn new(net: &Autoencoder) -> Adam {
        Adam {
            step: 0,
            moments: net
                .layers
                .iter()
                .map(|l| {
                    (
                        Array2::zeros(l.weights.raw_dim()),
                        Array2::zeros(l.weights.raw_dim()),
                        Array1::zeros(l.bias.len()),
                        Array1::zeros(l.bias.len()),
                    )
                })
                .collect(),
        }
    }

    fn step(&mut self, net: &mut Autoencoder, grads: &[(Array2<f32>, Array1<f32>)], learning_rate: f32) {
        let _flushing = FlushSubnormals::here();
        self.step += 1;
        let rate = learning_rate * (1.0 - BETA2.powi(self.step)).sqrt() / (1.0 - BETA1.powi(self.step));
        let update = |param: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *param -= rate * *m / (v.sqrt() + ADAM_EPSILON);
        };
        for ((layer, (gw, gb)), (mw, vw, mb, vb)) in net.layers.iter_mut().zip(grads).zip(&mut self.moments) {
            Zip::from(&mut layer.weights)
                .and(mw)
                .and(vw)
                .and(gw)
                .for_each(|p, m, v, &g| update(p, m, v, g));
            Zip::from(&mut layer.bias)
                .and(mb)
                .and(vb)
                .and(gb)
                .for_each(|p, m, v, &g| update(p, m, v, g));
        }
    }
}

/// The stage.
pub struct AutoencoderStage;

fn parse_hidden(text: &str) -> Result<Vec<usize>> {
    let widths: Vec<usize> = text
        .split(',')
        .map(|w| w.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::StageParams {
            stage: NAME,
            reason: format!("hidden={text}: expected layer widths separated by commas, e.g. 64,32,16,8"),
        })?;
    if widths.is_empty() || widths.len() > 8 || widths.iter().any(|w| *w == 0 || *w > 4096) {
        return Err(Error::StageParams {
            stage: NAME,
            reason: format!("hidden={text}: 1 to 8 layers of 1 to 4096 units"),
        });
    }
    Ok(widths)
}

impl Stage for AutoencoderStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "Dense autoencoder (64-32-16-8 and mirror, Adam, early stopping); score = reconstruction error"
    }

    fn table(&self) -> &'static str {
        "anomaly_scores"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "hidden=64,32,16,8, epochs=20, batch=200, learning_rate=0.001, alpha=0.0001, validation=0.1, patience=10, tol=0.0001, sample=100000, contamination=0.05"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(
            NAME,
            set,
            &[
                "hidden",
                "epochs",
                "batch",
                "learning_rate",
                "alpha",
                "validation",
                "patience",
                "tol",
                "sample",
                "contamination",
            ],
        )?;
        let p = AutoencoderParams {
            hidden: parse_hidden(set.get("hidden").map_or("64,32,16,8", String::as_str))?,
            epochs: count_param(NAME, set, "epochs", 20, 10_000, "a whole number of epochs")?,
            batch: count_param(NAME, set, "batch", 200, 100_000, "a whole number of rows")?,
            learning_rate: param(NAME, set, "learning_rate", 0.001, "a positive number")?,
            alpha: param(NAME, set, "alpha", 0.0001, "a number at least 0")?,
            validation: param(NAME, set, "validation", 0.1, "a share between 0 and 0.5")?,
            patience: count_param(NAME, set, "patience", 10, 10_000, "a whole number of epochs")?,
            tol: param(NAME, set, "tol", 0.0001, "a number at least 0")?,
            sample: count_param(NAME, set, "sample", 100_000, 10_000_000, "a whole number of rows")?,
            contamination: contamination_param(NAME, set)?,
        };
        let bad = p.epochs == 0
            || p.batch == 0
            || p.patience == 0
            || p.sample < 2
            || !(p.learning_rate > 0.0 && p.learning_rate < 1.0)
            || !(p.alpha >= 0.0 && p.alpha.is_finite())
            || !(p.validation > 0.0 && p.validation <= 0.5)
            || !(p.tol >= 0.0 && p.tol.is_finite());
        if bad {
            return Err(Error::StageParams {
                stage: NAME,
                reason: "epochs, batch, patience at least 1, sample at least 2, learning_rate in (0, 1), alpha and tol at least 0, validation in (0, 0.5]".into(),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let p: AutoencoderParams = from_json(NAME, "parameters", params)?;
        let fit = fit_on_subsample(
            NAME,
            "autoencoder",
            x,
            (p.sample, seed, p.contamination),
            |rows| {
                let (network, training) = Autoencoder::train(rows, &p, seed)?;
                let mut metrics = Map::new();
                metrics.insert("sample_rows".into(), json!(training.rows_trained));
                metrics.insert("epochs_run".into(), json!(training.epochs_run));
                metrics.insert("best_epoch".into(), json!(training.best_epoch));
                metrics.insert("validation_r2".into(), json!(training.best_validation_r2));
                Ok((network, metrics))
            },
            |network, x, _| network.score(x),
        )?;
        let model = AutoencoderModel {
            standardizer: fit.standardizer,
            network: fit.detector,
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
        let model: AutoencoderModel = from_json(NAME, "model", model)?;
        let x = model.standardizer.apply(NAME, x)?;
        let scores = model.network.score(x.view())?;
        Ok(applied(scores, model.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AutoencoderParams {
        let value = AutoencoderStage
            .resolve(&BTreeMap::from([
                ("hidden".to_string(), "4,2".to_string()),
                ("epochs".to_string(), "300".to_string()),
                ("patience".to_string(), "300".to_string()),
                ("batch".to_string(), "32".to_string()),
                ("learning_rate".to_string(), "0.01".to_string()),
            ]))
            .unwrap();
        serde_json::from_value(value).unwrap()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn subnormal_results_are_flushed_while_the_guard_lives_and_made_again_after() {
        let product = |a: f32, b: f32| std::hint::black_box(a) * std::hint::black_box(b);
        // A result below the smallest normal f32: subnormal, or zero under the guard.
        let tiny = || product(f32::MIN_POSITIVE, 1.0 / 3.0);
        assert!(
            tiny() != 0.0 && !tiny().is_normal(),
            "subnormals are made outside the guard"
        );
        {
            let _outer = FlushSubnormals::here();
            assert_eq!(tiny(), 0.0);
            assert_eq!(
                product(f32::MIN_POSITIVE, 2.0),
                2.0 * f32::MIN_POSITIVE,
                "normal results are untouched"
            );
            {
                let _inner = FlushSubnormals::here();
                assert_eq!(tiny(), 0.0);
            }
            assert_eq!(tiny(), 0.0, "an inner guard leaves the outer one's setting");
        }
        assert!(tiny() != 0.0, "the thread's own setting comes back");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn no_other_job_computes_with_the_flush_while_a_network_trains() {
        // A rayon thread that waits for a stolen part of its own work runs other queued jobs
        // meanwhile. Were a guard held across the batch gradient's parallel parts, jobs of
        // whatever else the pool runs (another ensemble member) would compute with the flush set
        // on that thread. Here the other side queues many small jobs while a network trains on a
        // pool of three threads, and each job looks at its thread's setting.
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        // Three threads: one trains, one queues the other jobs, one is free to take a part of a
        // batch, so that the training thread waits for it with the other jobs in reach.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        // Parts of a batch long enough (a few hundred microseconds) for the other thread to take
        // one while this one still works on its own, and then to have queued jobs of its own.
        let x = Array2::from_shape_fn((20_000, 6), |(i, j)| ((i * 7 + j * 13) % 17) as f64 / 17.0);
        let mut p = params();
        p.hidden = vec![64, 32, 16, 8];
        p.epochs = 3;
        p.batch = 1000;
        let (flushed, jobs) = (AtomicUsize::new(0), AtomicUsize::new(0));
        // Whether a job lands on the training thread depends on timing: it is tried ten times.
        // With a guard held across the parallel parts this failed in three runs of four; without
        // one no job can see the flush.
        for _ in 0..10 {
            let (other_started, training_done) = (AtomicBool::new(false), AtomicBool::new(false));
            pool.install(|| {
                rayon::join(
                    || {
                        // Training starts once the other side runs on the pool's other thread (it
                        // is taken there within microseconds; the wait is bounded all the same).
                        let since = std::time::Instant::now();
                        while !other_started.load(Ordering::SeqCst) && since.elapsed().as_secs() < 10 {
                            std::hint::spin_loop();
                        }
                        Autoencoder::train(x.view(), &p, 7).unwrap();
                        training_done.store(true, Ordering::SeqCst);
                    },
                    || {
                        other_started.store(true, Ordering::SeqCst);
                        while !training_done.load(Ordering::SeqCst) {
                            rayon::scope(|s| {
                                for _ in 0..16 {
                                    s.spawn(|_| {
                                        jobs.fetch_add(1, Ordering::SeqCst);
                                        if read_mxcsr() & (1 << 15) != 0 {
                                            flushed.fetch_add(1, Ordering::SeqCst);
                                        }
                                        // Long enough that jobs stay queued behind it.
                                        let since = std::time::Instant::now();
                                        while since.elapsed().as_micros() < 50 {
                                            std::hint::spin_loop();
                                        }
                                    });
                                }
                            });
                        }
                    },
                )
            });
        }
        assert!(jobs.load(Ordering::SeqCst) > 0);
        assert_eq!(
            flushed.load(Ordering::SeqCst),
            0,
            "of {} jobs",
            jobs.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn off_manifold_rows_reconstruct_worse_and_seeds_repeat() {
        // Rows on a segment in 4 dimensions (t in 0..1): a 2-unit bottleneck can learn them.
        let x = Array2::from_shape_fn((400, 4), |(i, j)| (i as f64 / 400.0) * [1.0, -0.5, 0.25, 2.0][j]);
        let p = params();
        let (a, _) = Autoencoder::train(x.view(), &p, 7).unwrap();
        let (b, _) = Autoencoder::train(x.view(), &p, 7).unwrap();
        let probe = ndarray::array![[0.5, -0.25, 0.125, 1.0], [1.0, 1.0, -1.0, -1.0]];
        let sa = a.score(probe.view()).unwrap();
        assert_eq!(sa, b.score(probe.view()).unwrap());
        assert!(sa[1] > 5.0 * sa[0], "{sa:?}");
    }

    /// Half the summed squared error over rows plus the L2 term: what `gradients` differentiates.
    fn loss(net: &Autoencoder, x: &Array2<f32>, alpha: f32) -> f64 {
        let n = x.nrows() as f64;
        let out = net.forward(x.clone()).pop().unwrap();
        let squared: f64 = (&out - x).iter().map(|v| (*v as f64).powi(2)).sum();
        let weights: f64 = net
            .layers
            .iter()
            .flat_map(|l| l.weights.iter())
            .map(|w| (*w as f64).powi(2))
            .sum();
        squared / 2.0 / n + alpha as f64 * weights / 2.0 / n
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let net = Autoencoder::init(&Autoencoder::widths(3, &[4, 2]), &mut rng);
        let x = Array2::from_shape_fn((5, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
        let alpha = 0.1;
        let grads = net.gradients(x.view(), alpha);
        for (l, (gw, gb)) in grads.iter().enumerate() {
            for (at, analytic) in [
                ((0, 0), gw[[0, 0]]),
                ((gw.nrows() - 1, gw.ncols() - 1), gw[[gw.nrows() - 1, gw.ncols() - 1]]),
            ] {
                let h = 1e-2f32;
                let mut up = net.clone();
                up.layers[l].weights[at] += h;
                let mut down = net.clone();
                down.layers[l].weights[at] -= h;
                let numeric = (loss(&up, &x, alpha) - loss(&down, &x, alpha)) / (2.0 * h as f64);
                assert!(
                    (numeric - analytic as f64).abs() < 2e-3 + 0.05 * numeric.abs(),
                    "layer {l} weight {at:?}: {numeric} vs {analytic}"
                );
            }
            let h = 1e-2f32;
            let mut up = net.clone();
            up.layers[l].bias[0] += h;
            let mut down = net.clone();
            down.layers[l].bias[0] -= h;
            let numeric = (loss(&up, &x, alpha) - loss(&down, &x, alpha)) / (2.0 * h as f64);
            assert!(
                (numeric - gb[0] as f64).abs() < 2e-3 + 0.05 * numeric.abs(),
                "layer {l} bias: {numeric} vs {}",
                gb[0]
            );
        }
    }

    #[test]
    fn a_batch_cut_into_parts_gives_the_whole_batch_gradient() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let net = Autoencoder::init(&Autoencoder::widths(6, &[5, 3]), &mut rng);
        let x = Array2::from_shape_fn((203, 6), |(i, j)| ((i * 6 + j) as f32 * 0.21).cos());
        assert_eq!(batch_parts(203), 2);
        let alpha = 0.01;
        let parted = net.gradients(x.view(), alpha);
        let mut whole = net.gradient_share(x.view(), 203.0);
        for ((w, _), layer) in whole.iter_mut().zip(&net.layers) {
            w.scaled_add(alpha / 203.0, &layer.weights);
        }
        for ((pw, pb), (ww, wb)) in parted.iter().zip(&whole) {
            assert!(pw.iter().zip(ww).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
            assert!(pb.iter().zip(wb).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
        }
        // The cut depends on the rows alone: the same batch gives the same bits every time.
        let again = net.gradients(x.view(), alpha);
        assert!(parted.iter().zip(&again).all(|(a, b)| a == b));
        assert_eq!(
            (batch_parts(1), batch_parts(127), batch_parts(128), batch_parts(10_000)),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn hidden_widths_are_checked() {
        assert_eq!(parse_hidden("64, 32,16,8").unwrap(), vec![64, 32, 16, 8]);
        assert!(parse_hidden("64,,8").is_err());
        assert!(parse_hidden("0").is_err());
        assert_eq!(Autoencoder::widths(10, &[4, 2]), vec![10, 4, 2, 4, 10]);
    }
}
