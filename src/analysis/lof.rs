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
//! k-nearest neighbours: through a clustered index, exact. linfa-nn's ball tree was tried first
//! and had not finished scoring the 67 343 NSL-KDD training rows against 20 000 reference rows
//! (77 encoded columns) after 16 minutes, and a brute-force scan of every reference row (what
//! scikit-learn's 'auto' picks in more than 15 dimensions) spends most of its time on rows that
//! cannot be near. So the reference rows are grouped around about 4 sqrt(m) centres (a few
//! Lloyd steps from evenly spaced rows), each cluster with its radius. Query rows go in blocks of
//! rows near the same centre; a block visits clusters nearest first, and a row skips a cluster
//! when |q - centre| - radius exceeds an upper bound on its k-th nearest distance so far, so no
//! skipped row can be among its k nearest. Within a visited cluster the distances come from a
//! matrix product (|r|^2 - 2 q.r in f32, matrixmultiply), blocks in parallel. Every row whose
//! f32 distance, less a bound on its rounding, may still be among the k nearest is kept and
//! re-measured exactly in f64 at the end (a fixed number of f32 candidates is not enough: in a
//! tight cluster far from the origin the f32 rounding exceeds the gaps between neighbours). So
//! the neighbours are exactly those of a scan of every row in f64 (a test checks), and
//! duplicates are at distance exactly 0 as in scikit-learn. The reference rows with their k-distance and lrd are
//! the stored model, with the index's clusters (which rows, the centres): a stored model
//! rebuilds its index from them without clustering again. When `train` scores its own rows, a
//! reference row's neighbours are itself and the fit's neighbours of it, so only the other rows
//! are searched. Ctrl-C is checked
//! between chunks of the clustering and between query blocks (well under a second each), and the
//! run then stores nothing (issue 22).
//!
//! May touch: nothing but its arguments (pure computation around the analysis framework).

use std::collections::BTreeMap;
use std::sync::OnceLock;

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
    /// How the fit grouped the reference rows into the index's clusters, stored with the model
    /// so that a score rebuilds the index without clustering again. Models stored before it
    /// have none and cluster on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layout: Option<IndexLayout>,
    /// The neighbour index over `reference`, built on first use.
    #[serde(skip)]
    index: OnceLock<ClusterIndex>,
}

/// The clusters of a [`ClusterIndex`]: reference rows in grouped order, where each cluster
/// ends, and the centres. The radii, f32 rows and norms follow from these and the rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexLayout {
    original: Vec<usize>,
    ends: Vec<usize>,
    #[serde(with = "crate::analysis::anomaly::exact::matrix")]
    centres: Array2<f64>,
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

/// Query rows per block: they share their clusters' distance products.
const QUERY_BLOCK: usize = 64;
/// Room for candidates beyond k before rows that can no longer be among the k nearest are dropped.
const EXTRA_CANDIDATES: usize = 16;
/// Lloyd iterations that shape the clusters of the index (they only need to be compact, not
/// converged: the pruning is exact for any grouping).
const CLUSTER_ITERATIONS: usize = 4;
/// Clusters per square root of the reference rows (565 clusters of about 35 rows for 20 000):
/// smaller clusters prune more, more of them cost more bounds per query row.
const CLUSTERS_PER_ROOT: f64 = 4.0;
/// Query rows whose distances to the centres are held at once while finding their clusters.
const HOME_CHUNK: usize = 1024;

/// A row's k nearest reference rows: (reference row, exact distance), nearest first.
type Neighbours = Vec<(usize, f64)>;

/// One cluster of the index: rows `start..end` of the grouped reference rows, their centre and
/// the largest distance of a member from it.
#[derive(Debug, Clone)]
struct Cluster {
    start: usize,
    end: usize,
    radius: f64,
}

/// The reference rows as a clustered index for exact k-nearest-neighbour queries. Built from
/// the reference rows when first needed and kept with the fitted model in memory (not stored).
#[derive(Debug, Clone)]
pub struct ClusterIndex {
    /// Reference rows grouped by cluster, in f32 as [-2 r, |r|^2]: the product with [q, 1] is
    /// |r|^2 - 2 q.r, the squared distance less |q|^2 (a constant per query row).
    grouped: Array2<f32>,
    /// Grouped row -> reference row.
    original: Vec<usize>,
    /// |r|^2 of each grouped row (f64).
    norms: Vec<f64>,
    clusters: Vec<Cluster>,
    centres: Array2<f64>,
    /// Bound on the rounding of a squared distance from the f32 product, relative to
    /// |q|^2 + |r|^2 (conversion to f32 plus a (d + 1)-term dot product, with a wide margin).
    rounding: f64,
}

/// Squared distances between every row of `a` and every row of `b` (f64, |a|^2 + |b|^2 - 2 a.b,
/// never negative).
fn squared_distances(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
    let a_norms: Vec<f64> = a.rows().into_iter().map(|r| r.dot(&r)).collect();
    let b_norms: Vec<f64> = b.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut out = a.dot(&b.t());
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (a_norms[i] + b_norms[j] - 2.0 * *v).max(0.0);
        }
    }
    out
}

/// Each row's nearest centre (the first of equals), in parallel chunks of rows (the distances of
/// one chunk at a time), stopping at Ctrl-C.
fn nearest_centres(x: ArrayView2<f64>, centres: ArrayView2<f64>) -> Result<Vec<usize>> {
    let stop = crate::interrupt::carry();
    let chunks: Vec<Vec<usize>> = x
        .axis_chunks_iter(Axis(0), HOME_CHUNK)
        .into_par_iter()
        .map(|rows| {
            if stop.requested() {
                return Err(Error::Interrupted);
            }
            let to_centres = squared_distances(rows, centres);
            Ok(to_centres.rows().into_iter().map(argmin).collect())
        })
        .collect::<Result<_>>()?;
    Ok(chunks.concat())
}

/// Index of the smallest value (the first of equals).
fn argmin(values: ArrayView1<f64>) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v < values[best] {
            best = i;
        }
    }
    best
}

impl ClusterIndex {
    /// What [`ClusterIndex::assemble`] needs to rebuild this index.
    fn layout(&self) -> IndexLayout {
        IndexLayout {
            original: self.original.clone(),
            ends: self.clusters.iter().map(|c| c.end).collect(),
            centres: self.centres.clone(),
        }
    }

    /// Groups the reference rows around about 4 sqrt(m) centres: evenly spaced rows as the
    /// start, then a few Lloyd steps (deterministic; no seed needed).
    fn new(reference: &Array2<f64>) -> Result<Self> {
        let m = reference.nrows();
        let wanted = ((CLUSTERS_PER_ROOT * (m as f64).sqrt()) as usize).clamp(1, (m / 16).max(1));
        let starts: Vec<usize> = (0..wanted).map(|c| c * m / wanted).collect();
        let mut centres = reference.select(Axis(0), &starts);
        let mut home = vec![0usize; m];
        for iteration in 0..=CLUSTER_ITERATIONS {
            home = nearest_centres(reference.view(), centres.view())?;
            if iteration == CLUSTER_ITERATIONS {
                break;
            }
            let mut sums = Array2::<f64>::zeros(centres.raw_dim());
            let mut counts = vec![0usize; centres.nrows()];
            for (i, &c) in home.iter().enumerate() {
                counts[c] += 1;
                let mut sum = sums.row_mut(c);
                sum += &reference.row(i);
            }
            for (c, mut centre) in centres.rows_mut().into_iter().enumerate() {
                if counts[c] > 0 {
                    centre.assign(&sums.row(c).mapv(|v| v / counts[c] as f64));
                }
            }
        }
        // Members of each (non-empty) cluster.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); centres.nrows()];
        for (i, &c) in home.iter().enumerate() {
            members[c].push(i);
        }
        let mut original = Vec::with_capacity(m);
        let mut ends = Vec::new();
        let mut kept_centres = Vec::new();
        for (c, rows) in members.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            original.extend_from_slice(rows);
            ends.push(original.len());
            kept_centres.push(c);
        }
        let layout = IndexLayout {
            original,
            ends,
            centres: centres.select(Axis(0), &kept_centres),
        };
        Self::assemble(reference, &layout)
    }

    /// The index of `layout` over `reference`: each cluster's radius measured exactly, and the
    /// rows in f32 with their norms. Refuses a layout that does not fit the rows (a damaged model).
    fn assemble(reference: &Array2<f64>, layout: &IndexLayout) -> Result<Self> {
        let (m, d) = reference.dim();
        let damaged = || invalid("the stored neighbour index does not fit its reference rows; train the model again");
        let mut seen = vec![false; m];
        if layout.original.len() != m
            || layout.centres.dim() != (layout.ends.len(), d)
            || layout.ends.last() != Some(&m)
            || layout.ends.windows(2).any(|w| w[0] >= w[1])
            || layout.ends.first() == Some(&0)
            || layout
                .original
                .iter()
                .any(|&i| i >= m || std::mem::replace(&mut seen[i], true))
        {
            return Err(damaged());
        }
        let mut clusters = Vec::with_capacity(layout.ends.len());
        let mut start = 0;
        for (c, &end) in layout.ends.iter().enumerate() {
            let radius = layout.original[start..end]
                .iter()
                .map(|&i| distance(reference.row(i), layout.centres.row(c)))
                .fold(0.0, f64::max);
            clusters.push(Cluster { start, end, radius });
            start = end;
        }
        let original = layout.original.clone();
        let centres = layout.centres.clone();
        let mut grouped = Array2::<f32>::zeros((m, d + 1));
        let mut norms = Vec::with_capacity(m);
        for (g, &i) in original.iter().enumerate() {
            let row32 = reference.row(i).mapv(|v| v as f32);
            let norm: f64 = row32.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let mut out = grouped.row_mut(g);
            for (o, v) in out.iter_mut().zip(row32.iter()) {
                *o = -2.0 * v;
            }
            out[d] = norm as f32;
            norms.push(norm);
        }
        Ok(ClusterIndex {
            grouped,
            original,
            norms,
            clusters,
            centres,
            rounding: 4.0 * (d as f64 + 8.0) * f64::from(f32::EPSILON),
        })
    }

    /// For each row of `x`, its k nearest reference rows as (index, exact distance), nearest
    /// first (ties by index). With `exclude_self`, row i of `x` is reference row i and is left out.
    ///
    /// Query rows are taken in blocks of rows near the same centre. A block visits the clusters
    /// nearest first; a query row skips a cluster when the triangle inequality puts every member
    /// beyond its k-th candidate (|q - centre| - radius > that candidate's distance, with the f32
    /// rounding bound added), so a skipped row can never be among the k nearest and the result is
    /// what a scan of every reference row gives.
    fn k_nearest(
        &self,
        reference: &Array2<f64>,
        x: ArrayView2<f64>,
        k: usize,
        exclude_self: bool,
    ) -> Result<Vec<Vec<(usize, f64)>>> {
        let x = x.as_standard_layout();
        // Each query row's nearest centre, so that a block holds rows near one another.
        let homes = nearest_centres(x.view(), self.centres.view())?;
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        order.sort_by_key(|&i| homes[i]);
        let blocks: Vec<&[usize]> = order.chunks(QUERY_BLOCK).collect();
        let stop = crate::interrupt::carry();
        let found: Vec<Vec<(usize, Neighbours)>> = blocks
            .into_par_iter()
            .map(|block| {
                if stop.requested() {
                    return Err(Error::Interrupted);
                }
                Ok(self.block_nearest(reference, x.view(), block, k, exclude_self))
            })
            .collect::<Result<_>>()?;
        let mut out = vec![Vec::new(); x.nrows()];
        for (i, nearest) in found.into_iter().flatten() {
            out[i] = nearest;
        }
        Ok(out)
    }

    /// The k nearest reference rows of the query rows `block` (indices into `x`).
    fn block_nearest(
        &self,
        reference: &Array2<f64>,
        x: ArrayView2<f64>,
        block: &[usize],
        k: usize,
        exclude_self: bool,
    ) -> Vec<(usize, Vec<(usize, f64)>)> {
        let d = x.ncols();
        let mut queries = Array2::<f32>::ones((block.len(), d + 1));
        for (b, &i) in block.iter().enumerate() {
            for (o, v) in queries.row_mut(b).iter_mut().zip(x.row(i)) {
                *o = *v as f32;
            }
        }
        let query_norms: Vec<f64> = queries
            .rows()
            .into_iter()
            .map(|r| r.iter().take(d).map(|&v| f64::from(v) * f64::from(v)).sum())
            .collect();
        // Lower bound on the squared distance from each query row to each cluster's members.
        let to_centres = squared_distances(x.select(Axis(0), block).view(), self.centres.view());
        let lower: Vec<Vec<f64>> = to_centres
            .rows()
            .into_iter()
            .map(|row| {
                row.iter()
                    .zip(&self.clusters)
                    .map(|(sq, c)| {
                        let gap = sq.sqrt() * (1.0 - 1e-9) - c.radius;
                        if gap > 0.0 {
                            gap * gap
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let mut visit: Vec<(f64, usize)> = (0..self.clusters.len())
            .map(|c| (lower.iter().map(|l| l[c]).fold(f64::INFINITY, f64::min), c))
            .collect();
        visit.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut held: Vec<Candidates> = (0..block.len()).map(|_| Candidates::new(k)).collect();
        let mut active = Vec::with_capacity(block.len());
        for &(nearest_lower, c) in &visit {
            if nearest_lower > held.iter().map(|h| h.bound).fold(0.0, f64::max) * (1.0 + 1e-9) {
                break; // every later cluster is at least as far from every query row
            }
            active.clear();
            active.extend((0..block.len()).filter(|&b| lower[b][c] <= held[b].bound * (1.0 + 1e-9)));
            if active.is_empty() {
                continue;
            }
            let cluster = &self.clusters[c];
            let members = self.grouped.slice(ndarray::s![cluster.start..cluster.end, ..]);
            let products = if active.len() == block.len() {
                queries.dot(&members.t())
            } else {
                queries.select(Axis(0), &active).dot(&members.t())
            };
            for (&b, product) in active.iter().zip(products.rows()) {
                let own = if exclude_self { Some(block[b]) } else { None };
                let q = query_norms[b];
                let candidates = &mut held[b];
                let before = candidates.rows.len();
                for (offset, &partial) in product.iter().enumerate() {
                    let g = cluster.start + offset;
                    // The f32 value is within `slack` of the true squared distance.
                    let approximate = f64::from(partial) + q;
                    let slack = self.rounding * (q + self.norms[g]);
                    if approximate - slack > candidates.bound || own == Some(self.original[g]) {
                        continue;
                    }
                    candidates.rows.push((approximate - slack, approximate + slack, g));
                }
                if candidates.rows.len() > before {
                    candidates.tighten();
                }
            }
        }
        block
            .iter()
            .zip(held)
            .map(|(&i, candidates)| {
                let mut exact: Vec<(usize, f64)> = candidates
                    .rows
                    .iter()
                    .map(|&(_, _, g)| {
                        let j = self.original[g];
                        (j, distance(reference.row(j), x.row(i)))
                    })
                    .collect();
                exact.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                exact.truncate(k);
                (i, exact)
            })
            .collect()
    }
}

/// A query row's candidates for its k nearest: every reference row seen whose squared distance
/// may be at most the k-th smallest (bounds from the f32 products), re-measured exactly at the end.
struct Candidates {
    k: usize,
    /// (lower bound, upper bound of the squared distance, grouped row).
    rows: Vec<(f64, f64, usize)>,
    /// Upper bound on the k-th smallest squared distance (infinite until k rows are held): a row
    /// whose lower bound exceeds it cannot be among the k nearest.
    bound: f64,
    scratch: Vec<f64>,
}

impl Candidates {
    fn new(k: usize) -> Self {
        Candidates {
            k,
            rows: Vec::with_capacity(k + EXTRA_CANDIDATES),
            bound: f64::INFINITY,
            scratch: Vec::with_capacity(k + EXTRA_CANDIDATES),
        }
    }

    /// Lowers the bound to the k-th smallest upper bound held, and drops rows beyond it.
    fn tighten(&mut self) {
        if self.rows.len() < self.k {
            return;
        }
        self.scratch.clear();
        self.scratch.extend(self.rows.iter().map(|r| r.1));
        let (_, kth, _) = self.scratch.select_nth_unstable_by(self.k - 1, f64::total_cmp);
        self.bound = self.bound.min(*kth);
        let bound = self.bound;
        if self.rows.len() > 2 * self.k + EXTRA_CANDIDATES {
            self.rows.retain(|r| r.0 <= bound);
        }
    }
}

fn distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

impl LocalOutlierFactor {
    /// Fits on every row of `reference` (at least k + 1 rows).
    pub fn fit(reference: Array2<f64>, k: usize) -> Result<Self> {
        Ok(Self::fit_keeping_neighbours(reference, k)?.0)
    }

    /// [`LocalOutlierFactor::fit`], also returning each reference row's k nearest other
    /// reference rows, which [`LocalOutlierFactor::score_with_reference`] reuses.
    fn fit_keeping_neighbours(reference: Array2<f64>, k: usize) -> Result<(Self, Vec<Neighbours>)> {
        let n = reference.nrows();
        if k == 0 || n <= k {
            return Err(invalid(format!(
                "k={k} neighbours need at least {} reference rows (got {n})\n  hint: lower --set k",
                k + 1
            )));
        }
        check_finite("local outlier factor", reference.view())?;
        let index = ClusterIndex::new(&reference)?;
        let found = index.k_nearest(&reference, reference.view(), k, true)?;
        let k_distance: Vec<f64> = found.iter().map(|nb| nb.last().map_or(0.0, |(_, d)| *d)).collect();
        let lrd: Vec<f64> = found.iter().map(|nb| density(nb, &k_distance)).collect();
        let lof = LocalOutlierFactor {
            k,
            reference,
            k_distance,
            lrd,
            layout: Some(index.layout()),
            index: OnceLock::from(index),
        };
        Ok((lof, found))
    }

    /// LOF of each row of `x` against the reference rows.
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Vec<f64>> {
        let n = self.reference.nrows();
        if self.k == 0 || n <= self.k || self.k_distance.len() != n || self.lrd.len() != n {
            return Err(invalid("the stored model is damaged; train it again"));
        }
        check_width("local outlier factor", self.reference.ncols(), x)?;
        check_finite("local outlier factor", x)?;
        let found = self.index()?.k_nearest(&self.reference, x, self.k, false)?;
        Ok(found.iter().map(|nb| self.factor(nb)).collect())
    }

    /// [`LocalOutlierFactor::score`] of the rows of `x`, of which rows `drawn[i]` are reference
    /// row i (the fit's subsample) and `fit_neighbours` the fit's. A reference row's k nearest
    /// reference rows are itself (at distance 0) and the first k - 1 of its nearest others,
    /// ordered by distance and index as a search finds them: the same list, so the same score,
    /// without searching for it again.
    fn score_with_reference(
        &self,
        x: ArrayView2<f64>,
        drawn: &[usize],
        fit_neighbours: &[Neighbours],
    ) -> Result<Vec<f64>> {
        let n = self.reference.nrows();
        if drawn.len() != n || fit_neighbours.len() != n || drawn.iter().any(|&row| row >= x.nrows()) {
            return Err(invalid("the reference rows are not rows of the training rows"));
        }
        let mut reference_of = vec![None; x.nrows()];
        for (i, &row) in drawn.iter().enumerate() {
            reference_of[row] = Some(i);
        }
        let others: Vec<usize> = (0..x.nrows()).filter(|&row| reference_of[row].is_none()).collect();
        let mut searched = self.score(x.select(Axis(0), &others).view())?.into_iter();
        let mut scores = Vec::with_capacity(x.nrows());
        for own in reference_of {
            scores.push(match own {
                Some(i) => {
                    let mut nb: Neighbours = Vec::with_capacity(self.k);
                    nb.push((i, 0.0));
                    nb.extend(fit_neighbours[i].iter().take(self.k - 1).copied());
                    nb.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                    self.factor(&nb)
                }
                None => searched
                    .next()
                    .ok_or_else(|| invalid("fewer scores than rows searched"))?,
            });
        }
        Ok(scores)
    }

    /// The index, built on first use: from the stored layout when the model has one.
    fn index(&self) -> Result<&ClusterIndex> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let built = match &self.layout {
            Some(layout) => ClusterIndex::assemble(&self.reference, layout)?,
            None => ClusterIndex::new(&self.reference)?,
        };
        Ok(self.index.get_or_init(|| built))
    }

    /// LOF of a row from its k nearest reference rows.
    fn factor(&self, nb: &[(usize, f64)]) -> f64 {
        let own = density(nb, &self.k_distance);
        let mean_neighbour: f64 = nb.iter().map(|(i, _)| self.lrd[*i]).sum::<f64>() / nb.len() as f64;
        mean_neighbour / own
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
                Ok((
                    LocalOutlierFactor::fit_keeping_neighbours(reference.to_owned(), p.k)?,
                    metrics,
                ))
            },
            |(lof, neighbours), x, drawn| lof.score_with_reference(x, drawn, neighbours),
        )?;
        let model = LofModel {
            standardizer: fit.standardizer,
            lof: fit.detector.0,
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

    /// k nearest by a scan of every reference row in f64, ties by index.
    fn scanned(reference: &Array2<f64>, x: ArrayView2<f64>, k: usize, exclude_self: bool) -> Vec<Vec<(usize, f64)>> {
        x.rows()
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                let mut all: Vec<(usize, f64)> = (0..reference.nrows())
                    .filter(|&j| !(exclude_self && j == i))
                    .map(|j| (j, distance(reference.row(j), q)))
                    .collect();
                all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
                all
            })
            .collect()
    }

    #[test]
    fn the_index_finds_what_a_scan_of_every_row_finds() {
        // Clusters of different spread and scale, exact duplicates, and far outliers: the
        // pruning must never drop a true neighbour.
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let columns = 6;
        let mut flat = Vec::new();
        for i in 0..1500 {
            let centre = (i % 7) as f64 * 3.0;
            let spread = [0.01, 0.3, 1.0, 5.0][i % 4];
            for c in 0..columns {
                flat.push(if i % 50 == 0 {
                    0.5
                } else {
                    centre + c as f64 * 0.1 + (next() - 0.5) * spread
                });
            }
        }
        for c in 0..columns {
            flat.push(1e4 + c as f64); // one far outlier
        }
        let reference = Array2::from_shape_vec((1501, columns), flat).unwrap();
        let mut queries = reference
            .slice(ndarray::s![..300, ..])
            .mapv(|v| v + (next() - 0.5) * 0.2);
        queries.row_mut(0).fill(-50.0);
        let index = ClusterIndex::new(&reference).unwrap();
        assert!(index.clusters.len() > 20, "{} clusters", index.clusters.len());
        for k in [1, 5, 20] {
            for (x, exclude_self) in [(reference.view(), true), (queries.view(), false)] {
                let found = index.k_nearest(&reference, x, k, exclude_self).unwrap();
                let expected = scanned(&reference, x, k, exclude_self);
                let first_difference = (0..x.nrows()).find(|&i| found[i] != expected[i]);
                assert_eq!(
                    first_difference.map(|i| (i, &found[i], &expected[i])),
                    None,
                    "k={k}, exclude_self={exclude_self}"
                );
            }
        }
    }

    #[test]
    fn scores_match_scikit_learn() {
        // sklearn.neighbors.LocalOutlierFactor(n_neighbors=3, novelty=True) (1.9.1) fitted on
        // these eight rows; -score_samples of the four new rows.
        let reference = array![
            [0.0, 0.0],
            [0.0, 0.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 1.0],
            [2.0, 2.0],
            [3.0, 1.0],
            [10.0, 10.0]
        ];
        let lof = LocalOutlierFactor::fit(reference, 3).unwrap();
        let got = lof
            .score(array![[0.0, 0.0], [0.5, 0.5], [2.5, 1.5], [8.0, 8.0]].view())
            .unwrap();
        let expected = [
            0.9595598854836725,
            0.9595598854836725,
            1.2455345182541382,
            3.5043888795305294,
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-9 * e.abs().max(1.0), "{got:?} against {expected:?}");
        }
    }

    #[test]
    fn reference_rows_reuse_the_fit_neighbours_and_score_as_a_search_does() {
        // Duplicates (ties at distance 0 on both sides of a row's own index) and spread rows.
        let mut flat = Vec::new();
        for i in 0..400 {
            let v = if i % 9 == 0 {
                1.0
            } else {
                (i as f64 * 0.37).sin() * (1 + i % 5) as f64
            };
            flat.extend([v, (i as f64 * 0.11).cos(), if i % 13 == 0 { 0.0 } else { v * 0.5 }]);
        }
        let x = Array2::from_shape_vec((400, 3), flat).unwrap();
        let drawn = crate::analysis::anomaly::subsample_rows(400, 150, 3);
        for k in [1, 4, 20] {
            let (lof, neighbours) = LocalOutlierFactor::fit_keeping_neighbours(x.select(Axis(0), &drawn), k).unwrap();
            let reused = lof.score_with_reference(x.view(), &drawn, &neighbours).unwrap();
            let searched = lof.score(x.view()).unwrap();
            assert_eq!(reused, searched, "k={k}: bit for bit");
        }
    }

    #[test]
    fn a_stored_model_keeps_its_index_and_a_damaged_one_is_refused() {
        let x = Array2::from_shape_fn((300, 4), |(i, j)| ((i * 7 + j * 3) % 17) as f64 * 0.3 + (i % 4) as f64);
        let lof = LocalOutlierFactor::fit(x.clone(), 5).unwrap();
        let queries = x.mapv(|v| v + 0.05);
        let expected = lof.score(queries.view()).unwrap();
        let stored = serde_json::to_value(&lof).unwrap();
        assert!(stored.get("layout").is_some(), "the index layout is stored");
        let loaded: LocalOutlierFactor = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(loaded.score(queries.view()).unwrap(), expected);
        // A model stored before the layout clusters again, with the same scores.
        let mut older = stored.clone();
        older.as_object_mut().unwrap().remove("layout");
        let older: LocalOutlierFactor = serde_json::from_value(older).unwrap();
        assert_eq!(older.score(queries.view()).unwrap(), expected);
        // A layout that does not fit the rows is refused, never searched.
        let mut damaged = stored;
        damaged["layout"]["original"][0] = damaged["layout"]["original"][1].clone();
        let damaged: LocalOutlierFactor = serde_json::from_value(damaged).unwrap();
        let err = damaged.score(queries.view()).unwrap_err().to_string();
        assert!(err.contains("train the model again"), "{err}");
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
