//! Isolation Forest (Liu, Ting and Zhou, "Isolation Forest", ICDM 2008), written in this crate.
//!
//! Why it is written here: linfa has no Isolation Forest, and the `extended-isolation-forest` crate
//! fixes the feature count at compile time (a const generic) and cannot be seeded, so it can neither
//! take a feature matrix whose width is known only at run time nor repeat a run exactly.
//!
//! What it may touch: nothing but its arguments, and the process's Ctrl-C flag
//! (`crate::interrupt`), which [`IsolationForest::fit`] and [`IsolationForest::score`] look at
//! between the nodes of a tree and the trees of a chunk of rows (`fit_until` and `score_until`
//! take any stop condition instead). It is pure computation (a matrix in, a model or scores out);
//! reading features, encoding, scaling and storing results belong to the analysis framework
//! around it.
//!
//! The algorithm follows the paper and scikit-learn's `IsolationForest`, whose ROC-AUC it matches
//! on NSL-KDD (see docs/analysis_bench.md):
//! - each tree is grown on psi = min(sample_size, n) rows drawn without replacement;
//! - a node splits on a feature drawn uniformly among the features that are not constant within
//!   that node (as scikit-learn's random splitter, which skips constant features: with one-hot
//!   columns most features are constant in most nodes, and drawing among all of them would waste
//!   the height limit on non-splits), at a value drawn uniformly in [min, max) of that feature;
//! - a node becomes a leaf at the height limit (default ceil(log2 psi)), with at most one row, or
//!   when every feature is constant in it;
//! - the path length of a row in a tree is the depth of its leaf plus c(leaf size), the average
//!   path length of an unsuccessful binary-search-tree search, c(n) = 2 H(n-1) - 2 (n-1) / n with
//!   H(i) = ln(i) + Euler's constant, c(1) = 0, c(2) = 1;
//! - the score is s(x) = 2^(-E[h(x)] / c(psi)) in (0, 1]: near 1 for rows isolated quickly
//!   (anomalies), about 0.5 or below for ordinary rows.
//!
//! Trees are flat arenas (children of a node are adjacent, after it) so scoring is a tight loop;
//! fitting builds trees in parallel and scoring runs over row chunks in parallel (rayon). Each tree
//! draws from its own random stream seeded from the forest's seed, so results do not depend on the
//! number of threads.

use ndarray::{Array1, ArrayView2};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Euler-Mascheroni constant, for the harmonic number approximation in [`average_path_length`].
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;

/// Rows scored together by one rayon task: small enough for the rows and one tree to stay in cache
/// while every tree is walked for each of them, large enough to keep scheduling cheap.
const SCORE_CHUNK_ROWS: usize = 512;

/// How a forest is grown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    /// Number of trees (the paper's t; 100 is where path lengths have converged).
    pub n_trees: usize,
    /// Rows drawn without replacement for each tree (the paper's psi; capped at the row count).
    pub sample_size: usize,
    /// Height limit of each tree; `None` means ceil(log2 psi), the average tree height.
    pub max_height: Option<usize>,
    /// Seed of the random draws: the same seed on the same data gives the same forest.
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            n_trees: 100,
            sample_size: 256,
            max_height: None,
            seed: 0,
        }
    }
}

/// A fitted Isolation Forest: score new rows with [`IsolationForest::score`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationForest {
    /// Columns of the matrix it was fitted on; scoring needs the same.
    n_features: usize,
    /// Rows each tree was grown on (psi after capping at the row count): sets the normalisation c(psi).
    sample_size: usize,
    trees: Vec<Tree>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "TreeColumns", try_from = "TreeColumns")]
struct Tree {
    /// The root is node 0; an internal node's children are `left` and `left + 1`, both after it.
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Feature the node splits on, or [`LEAF`].
    feature: u32,
    /// Index of the left child (rows with a value <= the threshold); the right child follows it.
    left: u32,
    /// Split threshold, or for a leaf its whole path length contribution: depth + c(leaf size).
    value: f64,
}

/// A tree as stored: one array per node field (a third of the size of one object per node in
/// JSON), values as their IEEE-754 bits so that any serde format round-trips them exactly
/// (decimal text need not).
#[derive(Serialize, Deserialize)]
struct TreeColumns {
    feature: Vec<u32>,
    left: Vec<u32>,
    value_bits: Vec<u64>,
}

impl From<Tree> for TreeColumns {
    fn from(tree: Tree) -> Self {
        TreeColumns {
            feature: tree.nodes.iter().map(|n| n.feature).collect(),
            left: tree.nodes.iter().map(|n| n.left).collect(),
            value_bits: tree.nodes.iter().map(|n| n.value.to_bits()).collect(),
        }
    }
}

impl TryFrom<TreeColumns> for Tree {
    type Error = String;

    fn try_from(columns: TreeColumns) -> std::result::Result<Self, String> {
        let n = columns.feature.len();
        if columns.left.len() != n || columns.value_bits.len() != n {
            return Err(format!(
                "a stored tree has {n} features, {} children and {} values",
                columns.left.len(),
                columns.value_bits.len()
            ));
        }
        let nodes = (columns.feature.into_iter().zip(columns.left).zip(columns.value_bits))
            .map(|((feature, left), bits)| Node {
                feature,
                left,
                value: f64::from_bits(bits),
            })
            .collect();
        Ok(Tree { nodes })
    }
}

impl IsolationForest {
    /// Grows a forest on the rows of `x` (one row per observation, one column per feature);
    /// [`Error::Interrupted`] soon after Ctrl-C.
    pub fn fit(x: ArrayView2<f64>, params: &IsolationForestParams) -> Result<Self> {
        let stop = crate::interrupt::carry();
        Self::fit_until(x, params, &|| stop.requested())
    }

    /// [`IsolationForest::fit`] that ends with [`Error::Interrupted`] once `stop` says so: it is
    /// asked before each node is split, so the wait is one node's split (at most one pass over
    /// the tree's sample per feature), whatever the size of the forest.
    pub fn fit_until(
        x: ArrayView2<f64>,
        params: &IsolationForestParams,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Self> {
        let (n_rows, n_features) = x.dim();
        if n_rows == 0 {
            return Err(invalid("cannot fit on zero rows: the source has no data to learn from"));
        }
        if n_features == 0 {
            return Err(invalid(
                "cannot fit on zero feature columns: select at least one numeric or categorical feature",
            ));
        }
        if n_features >= LEAF as usize {
            return Err(invalid(format!(
                "{n_features} feature columns are more than a tree can index"
            )));
        }
        if params.n_trees == 0 {
            return Err(invalid("the number of trees must be at least 1"));
        }
        if params.sample_size < 2 {
            return Err(invalid(format!(
                "the sample size must be at least 2 rows per tree (got {})",
                params.sample_size
            )));
        }
        check_finite(x)?;

        let sample_size = params.sample_size.min(n_rows);
        let max_height = params
            .max_height
            .unwrap_or_else(|| (sample_size.max(2) as f64).log2().ceil() as usize);
        // Per-tree seeds come from one stream so each tree is reproducible on its own, whatever
        // the order rayon builds them in.
        let mut seeds = Xoshiro256PlusPlus::seed_from_u64(params.seed);
        let tree_seeds: Vec<u64> = (0..params.n_trees).map(|_| seeds.gen()).collect();
        let trees = tree_seeds
            .into_par_iter()
            .map(|seed| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                let rows = index::sample(&mut rng, n_rows, sample_size);
                let mut sample = Vec::with_capacity(sample_size * n_features);
                for row in rows.iter() {
                    sample.extend(x.row(row).iter().copied());
                }
                Tree::grow(&sample, n_features, max_height, &mut rng, stop).ok_or(Error::Interrupted)
            })
            .collect::<Result<_>>()?;
        Ok(IsolationForest {
            n_features,
            sample_size,
            trees,
        })
    }

    /// Anomaly score of each row of `x`, in (0, 1]: higher is more anomalous, about 0.5 and below
    /// is ordinary. [`Error::Interrupted`] soon after Ctrl-C.
    pub fn score(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let stop = crate::interrupt::carry();
        self.score_until(x, &|| stop.requested())
    }

    /// [`IsolationForest::score`] that ends with [`Error::Interrupted`] once `stop` says so (asked
    /// before each tree walks a chunk of rows).
    pub fn score_until(&self, x: ArrayView2<f64>, stop: &(dyn Fn() -> bool + Sync)) -> Result<Array1<f64>> {
        self.check_structure()?;
        let (n_rows, n_features) = x.dim();
        if n_features != self.n_features {
            return Err(invalid(format!(
                "the model was fitted on {} feature columns but the data to score has {n_features}\n  hint: score data with the same columns as the training source",
                self.n_features
            )));
        }
        check_finite(x)?;
        let x = x.as_standard_layout();
        let data = x
            .as_slice()
            .ok_or_else(|| invalid("the matrix to score could not be laid out row by row"))?;
        let normaliser = self.trees.len() as f64 * average_path_length(self.sample_size);
        let walks: Vec<WalkTree> = self.trees.iter().map(WalkTree::new).collect();
        let mut scores = vec![0.0; n_rows];
        scores
            .par_chunks_mut(SCORE_CHUNK_ROWS)
            .zip(data.par_chunks(SCORE_CHUNK_ROWS * n_features))
            .try_for_each(|(chunk_scores, chunk_rows)| {
                // Tree by tree over the chunk: one tree's nodes stay in cache for all its rows.
                for tree in &walks {
                    if stop() {
                        return Err(Error::Interrupted);
                    }
                    tree.add_path_lengths(chunk_rows, n_features, chunk_scores);
                }
                for total in chunk_scores.iter_mut() {
                    // A forest grown on one row cannot tell anything apart (c(1) = 0): every row
                    // gets the neutral 0.5, as in scikit-learn.
                    *total = if normaliser > 0.0 {
                        (-*total / normaliser).exp2()
                    } else {
                        0.5
                    };
                }
                Ok(())
            })?;
        Ok(Array1::from(scores))
    }

    /// Number of feature columns the forest was fitted on (and scores).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Rejects a forest whose trees could send a walk out of bounds or in a circle: a model read
    /// back from the store is data, and scoring must not panic on a damaged one.
    fn check_structure(&self) -> Result<()> {
        let damaged = |why: &str| invalid(format!("the stored forest is damaged ({why}); train the model again"));
        if self.n_features == 0 || self.trees.is_empty() || self.sample_size == 0 {
            return Err(damaged("it has no features, trees or sample"));
        }
        for tree in &self.trees {
            if tree.nodes.is_empty() {
                return Err(damaged("a tree has no nodes"));
            }
            for (at, node) in tree.nodes.iter().enumerate() {
                if node.feature == LEAF {
                    if !(node.value.is_finite() && node.value >= 0.0) {
                        return Err(damaged("a leaf has an invalid path length"));
                    }
                } else if node.feature as usize >= self.n_features
                    || (node.left as usize) <= at
                    || node.left as usize + 1 >= tree.nodes.len()
                    || node.value.is_nan()
                {
                    return Err(damaged("a split points outside its tree"));
                }
            }
        }
        Ok(())
    }
}

impl Tree {
    /// Grows one tree on `sample` (row-major, `n_features` columns); `None` when `stop` said so
    /// before a node was split.
    fn grow(
        sample: &[f64],
        n_features: usize,
        max_height: usize,
        rng: &mut Xoshiro256PlusPlus,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Option<Tree> {
        let n_rows = sample.len() / n_features;
        let value = |row: u32, feature: u32| sample[row as usize * n_features + feature as usize];
        let mut rows: Vec<u32> = (0..n_rows as u32).collect();
        // Feature draw order, reshuffled lazily per node (a partial Fisher-Yates): drawing until a
        // non-constant feature turns up is a uniform draw among the non-constant ones.
        let mut features: Vec<u32> = (0..n_features as u32).collect();
        let mut nodes = vec![Node {
            feature: LEAF,
            left: 0,
            value: 0.0,
        }];
        // (node index, rows range start, end, depth)
        let mut pending = vec![(0usize, 0usize, n_rows, 0usize)];
        while let Some((at, start, end, depth)) = pending.pop() {
            if stop() {
                return None;
            }
            let size = end - start;
            let split = if depth >= max_height || size <= 1 {
                None
            } else {
                draw_split(&rows[start..end], &mut features, &value, rng)
            };
            let Some((feature, threshold)) = split else {
                nodes[at].value = depth as f64 + average_path_length(size);
                continue;
            };
            // Rows with value <= threshold first; both sides are non-empty since min <= t < max.
            let node_rows = &mut rows[start..end];
            let mut boundary = 0;
            for i in 0..node_rows.len() {
                if value(node_rows[i], feature) <= threshold {
                    node_rows.swap(i, boundary);
                    boundary += 1;
                }
            }
            let left = nodes.len();
            nodes[at] = Node {
                feature,
                left: left as u32,
                value: threshold,
            };
            let leaf = Node {
                feature: LEAF,
                left: 0,
                value: 0.0,
            };
            nodes.push(leaf);
            nodes.push(leaf);
            pending.push((left, start, start + boundary, depth + 1));
            pending.push((left + 1, start + boundary, end, depth + 1));
        }
        Some(Tree { nodes })
    }

    /// Depth of the leaf `row` falls in plus c(that leaf's size): the plain walk, which
    /// [`WalkTree`] must agree with.
    #[cfg(test)]
    fn path_length(&self, row: &[f64]) -> f64 {
        let mut at = 0;
        loop {
            let node = &self.nodes[at];
            if node.feature == LEAF {
                return node.value;
            }
            at = node.left as usize + usize::from(row[node.feature as usize] > node.value);
        }
    }
}

/// A tree laid out for scoring: every leaf is a fixed point (it sends every row back to itself),
/// so a walk is exactly `height` steps with no test for having arrived, and several rows can walk
/// in lock step. The steps of different rows are independent, so the processor overlaps their
/// memory loads instead of waiting on one row's chain of dependent loads and branches.
struct WalkTree {
    /// Internal nodes as in [`Tree`]; a leaf at index i is (feature 0, left i, threshold +inf),
    /// which keeps every finite row at i.
    nodes: Vec<Node>,
    /// Path length contribution of each leaf (depth + c(size)) by node index; 0 for internal nodes.
    leaf_path: Vec<f64>,
    /// Depth of the deepest leaf: the number of steps that brings every row to its leaf.
    height: usize,
}

/// Rows walking one tree in lock step.
const WALK_LANES: usize = 8;

impl WalkTree {
    /// Needs a tree that passed [`IsolationForest::check_structure`] (children after parents).
    fn new(tree: &Tree) -> WalkTree {
        let mut nodes = tree.nodes.clone();
        let mut leaf_path = vec![0.0; nodes.len()];
        let mut depth = vec![0usize; nodes.len()];
        let mut height = 0;
        for at in 0..nodes.len() {
            let node = nodes[at];
            if node.feature == LEAF {
                leaf_path[at] = node.value;
                nodes[at] = Node {
                    feature: 0,
                    left: at as u32,
                    value: f64::INFINITY,
                };
                height = height.max(depth[at]);
            } else {
                depth[node.left as usize] = depth[at] + 1;
                depth[node.left as usize + 1] = depth[at] + 1;
            }
        }
        WalkTree {
            nodes,
            leaf_path,
            height,
        }
    }

    /// Adds each row's path length to `totals` (rows: row-major, finite, `n_features` wide).
    fn add_path_lengths(&self, rows: &[f64], n_features: usize, totals: &mut [f64]) {
        let mut lanes = rows.chunks_exact(WALK_LANES * n_features);
        let mut lane_totals = totals.chunks_exact_mut(WALK_LANES);
        for (block, block_totals) in (&mut lanes).zip(&mut lane_totals) {
            let mut at = [0usize; WALK_LANES];
            for _ in 0..self.height {
                for (lane, position) in at.iter_mut().enumerate() {
                    let node = &self.nodes[*position];
                    let value = block[lane * n_features + node.feature as usize];
                    *position = node.left as usize + usize::from(value > node.value);
                }
            }
            for (total, position) in block_totals.iter_mut().zip(at) {
                *total += self.leaf_path[position];
            }
        }
        for (row, total) in lanes
            .remainder()
            .chunks_exact(n_features)
            .zip(lane_totals.into_remainder())
        {
            let mut position = 0;
            for _ in 0..self.height {
                let node = &self.nodes[position];
                position = node.left as usize + usize::from(row[node.feature as usize] > node.value);
            }
            *total += self.leaf_path[position];
        }
    }
}

/// Draws a (feature, threshold) split for the node holding `rows`, or `None` when every feature is
/// constant there.
fn draw_split(
    rows: &[u32],
    features: &mut [u32],
    value: &impl Fn(u32, u32) -> f64,
    rng: &mut Xoshiro256PlusPlus,
) -> Option<(u32, f64)> {
    for drawn in 0..features.len() {
        let pick = rng.gen_range(drawn..features.len());
        features.swap(drawn, pick);
        let feature = features[drawn];
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &row in rows {
            let v = value(row, feature);
            min = min.min(v);
            max = max.max(v);
        }
        if max > min {
            let u: f64 = rng.gen();
            let mut threshold = min + u * (max - min);
            if !threshold.is_finite() {
                // max - min overflowed (values near f64::MAX apart): interpolate without the difference.
                threshold = min * (1.0 - u) + max * u;
            }
            // Rounding can land on max, which would leave the right side empty.
            if !(threshold >= min && threshold < max) {
                threshold = min;
            }
            return Some((feature, threshold));
        }
    }
    None
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n nodes,
/// which is the expected depth still to go in a leaf holding n rows (the paper's equation 1).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// The score above which a row counts as an anomaly when a `contamination` share of
/// `scores` is expected to be anomalous: the (1 - contamination) quantile of the scores, linearly
/// interpolated (scikit-learn's `offset_`, with its sign turned to this module's scores).
/// Non-finite scores are ignored; a contamination of 0 or less (or NaN) gives +infinity (nothing
/// is an anomaly), 1 or more gives the lowest score (everything above it is).
pub fn contamination_threshold(scores: &[f64], contamination: f64) -> f64 {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() || contamination.is_nan() || contamination <= 0.0 {
        return f64::INFINITY;
    }
    sorted.sort_by(f64::total_cmp);
    let position = (1.0 - contamination.min(1.0)) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

fn check_finite(x: ArrayView2<f64>) -> Result<()> {
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((row, column), v)) => Err(invalid(format!(
            "row {row}, feature column {column} is {v}: Isolation Forest needs finite numbers\n  hint: filter or fill NULL, NaN and infinite values in the source"
        ))),
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "isolation forest",
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn params(seed: u64) -> IsolationForestParams {
        IsolationForestParams {
            seed,
            ..IsolationForestParams::default()
        }
    }

    /// A tight 2-D cluster of `n` points around the origin (deterministic, spread about +-0.5).
    fn cluster(n: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, 2), |_| rng.gen::<f64>() - 0.5)
    }

    #[test]
    fn average_path_length_known_values() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // 2 (ln 2 + gamma) - 4/3
        assert!((average_path_length(3) - 1.207_392_357_589_29).abs() < 1e-12);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
        assert!((average_path_length(256) - 10.2448).abs() < 1e-4);
    }

    #[test]
    fn outlier_scores_high_and_cluster_points_low() {
        let mut data = cluster(500, 1);
        data.row_mut(0).assign(&array![8.0, -9.0]);
        let forest = IsolationForest::fit(data.view(), &params(7)).unwrap();
        let scores = forest.score(data.view()).unwrap();
        assert!(scores[0] > 0.7, "outlier scored {}", scores[0]);
        let mean_rest = scores.iter().skip(1).sum::<f64>() / 499.0;
        assert!(mean_rest < 0.5, "cluster mean {mean_rest}");
        let centre = forest.score(array![[0.0, 0.0]].view()).unwrap();
        assert!(centre[0] < 0.5, "centre scored {}", centre[0]);
        assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0));
    }

    #[test]
    fn same_seed_same_scores_other_seed_other_scores() {
        let data = cluster(1000, 2);
        let probe = cluster(50, 3);
        let a = IsolationForest::fit(data.view(), &params(11))
            .unwrap()
            .score(probe.view())
            .unwrap();
        let b = IsolationForest::fit(data.view(), &params(11))
            .unwrap()
            .score(probe.view())
            .unwrap();
        let c = IsolationForest::fit(data.view(), &params(12))
            .unwrap()
            .score(probe.view())
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn scores_lie_in_unit_interval_also_far_outside_training_range() {
        let data = cluster(300, 4);
        let forest = IsolationForest::fit(data.view(), &params(0)).unwrap();
        let probe = array![[1e300, -1e300], [0.0, 0.0], [-5.0, 5.0], [f64::MAX, f64::MIN]];
        let scores = forest.score(probe.view()).unwrap();
        assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0), "{scores}");
    }

    #[test]
    fn constant_input_scores_one_half() {
        let data = Array2::from_elem((100, 3), 4.2);
        let forest = IsolationForest::fit(data.view(), &params(0)).unwrap();
        let scores = forest.score(array![[4.2, 4.2, 4.2], [0.0, 9.0, -1.0]].view()).unwrap();
        // Every tree is a single leaf of psi rows: E[h] = c(psi), so s = 2^-1.
        assert!(scores.iter().all(|s| (*s - 0.5).abs() < 1e-12), "{scores}");
    }

    #[test]
    fn constant_columns_are_never_split_on() {
        let mut data = cluster(400, 5);
        data = ndarray::concatenate![ndarray::Axis(1), Array2::zeros((400, 3)), data, Array2::ones((400, 2))];
        let forest = IsolationForest::fit(data.view(), &params(3)).unwrap();
        for tree in &forest.trees {
            for node in &tree.nodes {
                assert!(node.feature == LEAF || node.feature == 3 || node.feature == 4);
            }
        }
    }

    #[test]
    fn a_single_row_fits_and_scores_neutral() {
        let data = array![[1.0, 2.0]];
        let forest = IsolationForest::fit(data.view(), &params(0)).unwrap();
        let scores = forest.score(array![[1.0, 2.0], [100.0, -3.0]].view()).unwrap();
        assert_eq!(scores.to_vec(), vec![0.5, 0.5]);
    }

    #[test]
    fn fewer_rows_than_sample_size_uses_all_rows() {
        let data = cluster(20, 6);
        let forest = IsolationForest::fit(data.view(), &params(0)).unwrap();
        assert_eq!(forest.sample_size, 20);
        // Height limit ceil(log2 20) = 5: at most 2^6 - 1 nodes.
        assert!(forest.trees.iter().all(|t| t.nodes.len() <= 63));
    }

    #[test]
    fn serde_round_trip_scores_identically() {
        let data = cluster(700, 8);
        let forest = IsolationForest::fit(data.view(), &params(21)).unwrap();
        let text = serde_json::to_string(&forest).unwrap();
        let back: IsolationForest = serde_json::from_str(&text).unwrap();
        let probe = cluster(100, 9);
        assert_eq!(forest.score(probe.view()).unwrap(), back.score(probe.view()).unwrap());
        assert_eq!(back.n_features(), 2);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let p = params(0);
        assert!(IsolationForest::fit(Array2::<f64>::zeros((0, 3)).view(), &p).is_err());
        assert!(IsolationForest::fit(Array2::<f64>::zeros((5, 0)).view(), &p).is_err());
        assert!(IsolationForest::fit(array![[1.0], [f64::NAN]].view(), &p).is_err());
        assert!(IsolationForest::fit(array![[1.0], [f64::INFINITY]].view(), &p).is_err());
        let no_trees = IsolationForestParams {
            n_trees: 0,
            ..p.clone()
        };
        assert!(IsolationForest::fit(array![[1.0], [2.0]].view(), &no_trees).is_err());
        let tiny = IsolationForestParams {
            sample_size: 1,
            ..p.clone()
        };
        assert!(IsolationForest::fit(array![[1.0], [2.0]].view(), &tiny).is_err());

        let forest = IsolationForest::fit(cluster(50, 1).view(), &p).unwrap();
        let wrong_width = forest.score(Array2::<f64>::zeros((3, 3)).view()).unwrap_err();
        assert!(wrong_width.to_string().contains("2 feature columns"), "{wrong_width}");
        assert!(forest.score(array![[0.0, f64::NAN]].view()).is_err());
        assert_eq!(forest.score(Array2::<f64>::zeros((0, 2)).view()).unwrap().len(), 0);
    }

    #[test]
    fn a_damaged_stored_forest_is_refused() {
        let forest = IsolationForest::fit(cluster(50, 1).view(), &params(0)).unwrap();
        let mut damaged = forest.clone();
        damaged.trees[0].nodes[0].left = 0;
        assert!(damaged.score(cluster(3, 2).view()).is_err());
        let mut damaged = forest;
        damaged.trees[1].nodes[0].feature = 9;
        assert!(damaged.score(cluster(3, 2).view()).is_err());
        let ragged = r#"{"n_features":2,"sample_size":4,"trees":[{"feature":[0],"left":[],"value_bits":[0]}]}"#;
        assert!(serde_json::from_str::<IsolationForest>(ragged).is_err());
    }

    #[test]
    fn lock_step_walk_agrees_with_the_plain_walk() {
        let data = cluster(2000, 12);
        let forest = IsolationForest::fit(data.view(), &params(4)).unwrap();
        // 37 rows: four full blocks of lanes and a remainder walked alone.
        let probe = cluster(37, 13) * 3.0;
        let rows = probe.as_slice().unwrap();
        for tree in &forest.trees {
            let mut totals = vec![0.0; 37];
            WalkTree::new(tree).add_path_lengths(rows, 2, &mut totals);
            for (row, total) in probe.rows().into_iter().zip(&totals) {
                assert_eq!(tree.path_length(row.as_slice().unwrap()), *total);
            }
        }
    }

    /// Issue 22: Ctrl-C inside one forest. `stop` is asked before every node and every tree's
    /// walk of a chunk, so a fit or a scoring that would take minutes ends at the next check.
    #[test]
    fn a_stop_ends_a_fit_and_a_scoring_within_a_node() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let data = cluster(20_000, 3);
        // 10 000 trees grown to single rows: minutes without the checks.
        let huge = IsolationForestParams {
            n_trees: 10_000,
            sample_size: 20_000,
            max_height: Some(64),
            seed: 1,
        };
        for after in [0usize, 1, 500, 50_000] {
            let asked = AtomicUsize::new(0);
            let stop = || asked.fetch_add(1, Ordering::SeqCst) >= after;
            let started = std::time::Instant::now();
            let err = IsolationForest::fit_until(data.view(), &huge, &stop).unwrap_err();
            assert!(matches!(err, Error::Interrupted), "{err}");
            // After the stop each tree under way asks once more, and each tree not yet started
            // asks once: no tree grows past its root.
            assert!(asked.load(Ordering::SeqCst) <= after + huge.n_trees + 1);
            assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
        }
        let forest = IsolationForest::fit_until(data.view(), &params(2), &|| false).unwrap();
        let asked = AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, Ordering::SeqCst) >= 3;
        assert!(matches!(
            forest.score_until(data.view(), &stop),
            Err(Error::Interrupted)
        ));
        assert_eq!(
            forest.score_until(data.view(), &|| false).unwrap(),
            forest.score(data.view()).unwrap()
        );
    }

    #[test]
    fn column_major_input_scores_as_row_major() {
        let data = cluster(300, 10);
        let forest = IsolationForest::fit(data.view(), &params(2)).unwrap();
        let probe = cluster(40, 11);
        let transposed = probe.t().to_owned();
        assert_eq!(
            forest.score(probe.view()).unwrap(),
            forest.score(transposed.t()).unwrap()
        );
    }

    #[test]
    fn contamination_threshold_is_the_upper_quantile() {
        let scores: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        assert!((contamination_threshold(&scores, 0.1) - 0.9).abs() < 1e-12);
        assert!((contamination_threshold(&scores, 0.05) - 0.95).abs() < 1e-12);
        // Interpolated between 0.3 and 0.4 for quantile 0.75 of 5 values.
        assert!((contamination_threshold(&[0.1, 0.2, 0.3, 0.4, 0.5], 0.25) - 0.4).abs() < 1e-12);
        assert!((contamination_threshold(&[0.1, 0.2, 0.3, 0.4], 0.5) - 0.25).abs() < 1e-12);
        assert_eq!(contamination_threshold(&scores, 0.0), f64::INFINITY);
        assert_eq!(contamination_threshold(&scores, 1.0), 0.0);
        assert_eq!(contamination_threshold(&[], 0.1), f64::INFINITY);
        assert!((contamination_threshold(&[0.3, f64::NAN, 0.6], 0.5) - 0.45).abs() < 1e-12);
        let flagged = scores
            .iter()
            .filter(|s| **s > contamination_threshold(&scores, 0.1))
            .count();
        assert_eq!(flagged, 10);
    }
}
