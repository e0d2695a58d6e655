//! The `dbscan` stage: density clusters by DBSCAN (prototype 001). Writes `clusters` (cluster -1 =
//! noise).
//!
//! DBSCAN is implemented here rather than with linfa-clustering's `Dbscan`, which runs one
//! sorted, collected k-d tree range query per point on one core; here the core test and the linking
//! of core points run in parallel on a k-d tree whose queries stop early, skip what is already
//! joined and collect nothing. Semantics are linfa's and scikit-learn's (unit tests compare with
//! linfa): a point is core when at least min_points points (itself included) lie within eps; core
//! points within eps of each other share a cluster, numbered in the order of each cluster's first
//! core row; a border point (not core, within eps of a core point) joins the lowest-numbered
//! cluster that reaches it, as the first cluster to expand over it takes it.
//!
//! Settings made deliberately: eps (linfa's `tolerance`, default 1e-4, meaningless on scaled
//! data) is given or chosen at the knee of the sorted k-distance curve (distance of each point to
//! its min_points-th nearest neighbour, itself included, as scikit-learn counts min_samples),
//! computed on at most `knee_sample` points. The work still grows faster than the row count (a
//! core point's neighbourhood is visited until it is joined), so a source larger than `sample` rows
//! is clustered on a seeded random sample of that size (model_runs states it), and the other rows
//! join the cluster of their nearest clustered sample point within eps, else are noise (in
//! parallel). Scoring new data does the same against the stored clustered points.

use std::collections::BTreeMap;

use linfa_nn::distance::L2Dist;
use linfa_nn::{CommonNearestNeighbour, NearestNeighbour};
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{count_param, from_json, known_keys, to_json, AnomalyOutput, Applied, Fitted, OutputColumn, Stage, Values};
use crate::error::{Error, Result};

const NAME: &str = "dbscan";

/// Parameters in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbscanParams {
    /// Neighbourhood radius in scaled feature space; None = from the k-distance knee.
    pub eps: Option<f64>,
    pub min_points: usize,
    /// Rows DBSCAN itself clusters at most.
    pub sample: usize,
    /// Points whose k-distance decides eps.
    pub knee_sample: usize,
}

/// The stored model: the sample's core points and their clusters (models trained before
/// issue 21 also hold border points).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbscanModel {
    #[serde(with = "crate::analysis::anomaly::exact::scalar")]
    pub eps: f64,
    pub min_points: usize,
    #[serde(with = "crate::analysis::anomaly::exact::matrix")]
    pub points: Array2<f64>,
    pub labels: Vec<i32>,
}

/// The stage.
pub struct DbscanStage;

fn invalid(reason: impl Into<String>) -> Error {
    Error::ModelInput {
        model: "dbscan",
        reason: reason.into(),
    }
}

/// What the fit and scoring look at between points to end soon after Ctrl-C (tests give their own).
type Stop<'a> = &'a (dyn Fn() -> bool + Sync);

/// [`Error::Interrupted`] once `stop` says so.
fn check(stop: Stop) -> Result<()> {
    if stop() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Cluster of each row of `x`: that of the nearest stored (core) point within eps, else -1.
fn nearest_cluster(model: &DbscanModel, x: ArrayView2<f64>, stop: Stop) -> Result<Vec<i32>> {
    if model.points.nrows() == 0 {
        return Ok(vec![-1; x.nrows()]);
    }
    let index = CommonNearestNeighbour::KdTree
        .from_batch(&model.points, L2Dist)
        .map_err(|e| invalid(format!("cannot index the stored points: {e}")))?;
    let x = x.as_standard_layout();
    x.axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| {
            check(stop)?;
            let found = index
                .k_nearest(row, 1)
                .map_err(|e| invalid(format!("nearest-point query failed: {e}")))?;
            Ok(match found.first() {
                Some((point, i)) => {
                    let d: f64 = point
                        .iter()
                        .zip(row.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt();
                    if d <= model.eps {
                        model.labels[*i]
                    } else {
                        -1
                    }
                }
                None => -1,
            })
        })
        .collect()
}

fn output(clusters: Vec<i32>, in_sample: Vec<bool>) -> Applied {
    let noise: Vec<bool> = clusters.iter().map(|c| *c < 0).collect();
    let n_noise = noise.iter().filter(|n| **n).count();
    let n_clusters = clusters.iter().copied().max().map_or(0, |m| (m + 1).max(0));
    let mut metrics = Map::new();
    metrics.insert("clusters".into(), json!(n_clusters));
    metrics.insert("noise".into(), json!(n_noise));
    metrics.insert(
        "noise_share".into(),
        json!(if clusters.is_empty() {
            0.0
        } else {
            n_noise as f64 / clusters.len() as f64
        }),
    );
    Applied {
        columns: vec![
            OutputColumn {
                name: "cluster",
                values: Values::Int(clusters),
            },
            OutputColumn {
                name: "is_noise",
                values: Values::Bool(noise.clone()),
            },
            OutputColumn {
                name: "in_sample",
                values: Values::Bool(in_sample),
            },
        ],
        metrics,
        anomaly: Some(AnomalyOutput {
            flagged: noise,
            score: None,
        }),
    }
}

/// Disjoint sets of point indices; the root of a set is its smallest member.
struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            // Path halving keeps later finds short without recursion.
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of `a` and `b`; false when they were already one.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[high] = low;
        true
    }
}

/// Points in a leaf of the k-d tree at most; small leaves prune well in 10 or so dimensions.
const LEAF_SIZE: usize = 16;

/// Shortcuts that take a whole box as within eps require it to be so by this relative margin, so
/// points on the boundary are decided by their own distance, as linfa-nn decides them.
const BOX_MARGIN: f64 = 1.0 - 1e-9;

/// A static k-d tree for radius queries that report the points in range without collecting or
/// sorting them (linfa-nn's `within_range` keeps a heap of the results and sorts them, which
/// dominates when a dense neighbourhood holds thousands of points). Points are addressed by their
/// position in tree order, so each node holds a contiguous range of positions.
struct RangeTree {
    dim: usize,
    /// The points in tree order, row after row.
    coords: Vec<f64>,
    /// Row of the input at each position.
    ids: Vec<usize>,
    nodes: Vec<TreeNode>,
    /// Bounding box of each node: `dim` lows then `dim` highs.
    bounds: Vec<f64>,
}

struct TreeNode {
    /// Positions `start..end`.
    start: usize,
    end: usize,
    /// Children (left, right), None for a leaf.
    children: Option<(usize, usize)>,
}

/// What a radius query found.
#[derive(Clone, Copy)]
enum Hit {
    /// The point at this position.
    Point(usize),
    /// Every point of this node (its box lies within the radius).
    Node(usize),
}

impl RangeTree {
    fn new(points: ArrayView2<f64>) -> Self {
        let mut tree = RangeTree {
            dim: points.ncols(),
            coords: Vec::new(),
            ids: (0..points.nrows()).collect(),
            nodes: Vec::new(),
            bounds: Vec::new(),
        };
        if points.nrows() > 0 {
            tree.build(points, 0, points.nrows());
        }
        tree.coords = tree.ids.iter().flat_map(|&i| points.row(i).to_vec()).collect();
        tree
    }

    /// Adds the node holding `ids[start..end]` (and its subtree); returns its number.
    fn build(&mut self, points: ArrayView2<f64>, start: usize, end: usize) -> usize {
        let dim = self.dim;
        let mut low = vec![f64::INFINITY; dim];
        let mut high = vec![f64::NEG_INFINITY; dim];
        for &i in &self.ids[start..end] {
            for (d, &v) in points.row(i).iter().enumerate() {
                low[d] = low[d].min(v);
                high[d] = high[d].max(v);
            }
        }
        let (split, spread) =
            (0..dim)
                .map(|d| (d, high[d] - low[d]))
                .fold((0, 0.0), |best, cur| if cur.1 > best.1 { cur } else { best });
        let node = self.nodes.len();
        self.nodes.push(TreeNode {
            start,
            end,
            children: None,
        });
        self.bounds.extend_from_slice(&low);
        self.bounds.extend_from_slice(&high);
        // Identical points cannot be split: they stay in one (possibly large) leaf.
        if end - start > LEAF_SIZE && spread > 0.0 {
            let mid = start + (end - start) / 2;
            self.ids[start..end]
                .select_nth_unstable_by(mid - start, |&a, &b| points[[a, split]].total_cmp(&points[[b, split]]));
            let left = self.build(points, start, mid);
            let right = self.build(points, mid, end);
            self.nodes[node].children = Some((left, right));
        }
        node
    }

    fn point(&self, position: usize) -> &[f64] {
        &self.coords[position * self.dim..(position + 1) * self.dim]
    }

    /// Reports the points within squared distance `r2` of `query` (inclusive, as linfa-nn) at
    /// positions `from` or later (a `Node` hit may also hold earlier ones), until `visit`
    /// returns false.
    fn for_each_within(&self, query: &[f64], r2: f64, from: usize, mut visit: impl FnMut(Hit) -> bool) {
        if self.nodes.is_empty() {
            return;
        }
        let dim = self.dim;
        let mut stack = Vec::with_capacity(64);
        stack.push(0usize);
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n];
            if node.end <= from {
                continue;
            }
            let (low, high) = self.bounds[2 * dim * n..2 * dim * (n + 1)].split_at(dim);
            let (mut nearest, mut farthest) = (0.0, 0.0);
            for d in 0..dim {
                let (below, above) = (low[d] - query[d], query[d] - high[d]);
                let gap = below.max(above).max(0.0);
                nearest += gap * gap;
                let reach = below.abs().max(above.abs());
                farthest += reach * reach;
            }
            if nearest > r2 {
                continue;
            }
            if farthest <= r2 * BOX_MARGIN {
                if !visit(Hit::Node(n)) {
                    return;
                }
                continue;
            }
            if let Some((left, right)) = node.children {
                stack.push(right);
                stack.push(left);
                continue;
            }
            for at in node.start.max(from)..node.end {
                let mut d2 = 0.0;
                for (a, b) in self.point(at).iter().zip(query) {
                    d2 += (a - b) * (a - b);
                    if d2 > r2 {
                        break;
                    }
                }
                if d2 <= r2 && !visit(Hit::Point(at)) {
                    return;
                }
            }
        }
    }
}

/// `first_core` of a node without core points.
const NO_CORE: usize = usize::MAX;

/// Links core points to the core points within eps, for one sequence of queries.
struct Linker<'a> {
    tree: &'a RangeTree,
    r2: f64,
    is_core: &'a [bool],
    /// First core position of each node, or NO_CORE.
    first_core: &'a [usize],
    sets: DisjointSets,
    /// Nodes whose core points are known to be in one set. Sets only grow, so this stays true;
    /// a query skips such a node when that set is already its own, which is what makes dense
    /// regions cheap once their first queries have joined them.
    unified: Vec<bool>,
    /// The unions made: (position, position).
    links: Vec<(usize, usize)>,
}

impl Linker<'_> {
    /// Joins core point `p` with the core points within eps at later positions (a link is found
    /// from its earlier end).
    fn link(&mut self, p: usize) {
        let tree = self.tree;
        let dim = tree.dim;
        let query = tree.point(p);
        let mut stack = Vec::with_capacity(64);
        stack.push(0usize);
        while let Some(n) = stack.pop() {
            let node = &tree.nodes[n];
            let first = self.first_core[n];
            if node.end <= p + 1 || first == NO_CORE {
                continue;
            }
            if self.unified[n] && self.sets.find(first) == self.sets.find(p) {
                continue;
            }
            let (low, high) = tree.bounds[2 * dim * n..2 * dim * (n + 1)].split_at(dim);
            let mut nearest = 0.0;
            for d in 0..dim {
                let gap = (low[d] - query[d]).max(query[d] - high[d]).max(0.0);
                nearest += gap * gap;
            }
            if nearest > self.r2 {
                continue;
            }
            if let Some((left, right)) = node.children {
                if !self.unified[n] && self.joined(left) && self.joined(right) {
                    let (a, b) = (self.first_core[left], self.first_core[right]);
                    if a == NO_CORE || b == NO_CORE || self.sets.find(a) == self.sets.find(b) {
                        self.unified[n] = true;
                        if self.sets.find(first) == self.sets.find(p) {
                            continue;
                        }
                    }
                }
                stack.push(right);
                stack.push(left);
                continue;
            }
            for at in node.start.max(p + 1)..node.end {
                if !self.is_core[at] || self.sets.find(at) == self.sets.find(p) {
                    continue;
                }
                let mut d2 = 0.0;
                for (a, b) in tree.point(at).iter().zip(query) {
                    d2 += (a - b) * (a - b);
                    if d2 > self.r2 {
                        break;
                    }
                }
                if d2 <= self.r2 && self.sets.union(p, at) {
                    self.links.push((p, at));
                }
            }
            let root = self.sets.find(first);
            self.unified[n] = (first + 1..node.end).all(|at| !self.is_core[at] || self.sets.find(at) == root);
        }
    }

    /// Whether a node's core points are known to be in one set (true when it has none).
    fn joined(&self, node: usize) -> bool {
        self.first_core[node] == NO_CORE || self.unified[node]
    }
}

/// DBSCAN labels of the rows of `points` (-1 = noise), as linfa's and scikit-learn's DBSCAN
/// number them (see the module doc).
#[cfg(test)]
fn density_clusters(points: ArrayView2<f64>, eps: f64, min_points: usize) -> Vec<i32> {
    density_clusters_and_cores(points, eps, min_points, &|| false)
        .unwrap()
        .0
}

/// DBSCAN labels of the rows of `points` (-1 = noise, numbered as in the module doc), and
/// whether each row is a core point. `stop` is asked before each point's range query (the core
/// test, the linking, the border points), so [`Error::Interrupted`] comes one query after it.
fn density_clusters_and_cores(
    points: ArrayView2<f64>,
    eps: f64,
    min_points: usize,
    stop: Stop,
) -> Result<(Vec<i32>, Vec<bool>)> {
    let n = points.nrows();
    if n == 0 || points.ncols() == 0 || n < min_points {
        return Ok((vec![-1; n], vec![false; n]));
    }
    let tree = RangeTree::new(points);
    let r2 = eps * eps;

    // Core points (by position): min_points points, itself included, within eps; the count
    // stops there.
    let is_core: Vec<bool> = (0..n)
        .into_par_iter()
        .map(|at| {
            check(stop)?;
            let mut count = 0;
            tree.for_each_within(tree.point(at), r2, 0, |hit| {
                count += match hit {
                    Hit::Point(_) => 1,
                    Hit::Node(node) => tree.nodes[node].end - tree.nodes[node].start,
                };
                count < min_points
            });
            Ok(count >= min_points)
        })
        .collect::<Result<_>>()?;

    // Components of core points linked within eps. Each chunk of core points (neighbours in tree
    // order) is linked in parallel into its own sets, keeping only the links that join two sets (at
    // most n - 1, so memory stays bounded whatever the density); the links are then joined.
    let first_core: Vec<usize> = tree
        .nodes
        .iter()
        .map(|node| (node.start..node.end).find(|&at| is_core[at]).unwrap_or(NO_CORE))
        .collect();
    let cores: Vec<usize> = (0..n).filter(|&at| is_core[at]).collect();
    let chunk = cores.len().div_ceil(rayon::current_num_threads() * 4).max(1);
    let links: Vec<Vec<(usize, usize)>> = cores
        .par_chunks(chunk)
        .map(|chunk| {
            let mut linker = Linker {
                tree: &tree,
                r2,
                is_core: &is_core,
                first_core: &first_core,
                sets: DisjointSets::new(n),
                unified: vec![false; tree.nodes.len()],
                links: Vec::new(),
            };
            for &p in chunk {
                check(stop)?;
                linker.link(p);
            }
            Ok(linker.links)
        })
        .collect::<Result<_>>()?;
    let mut sets = DisjointSets::new(n);
    for (p, q) in links.into_iter().flatten() {
        sets.union(p, q);
    }

    // Clusters numbered in the order of their first core row, as linfa and scikit-learn do.
    let mut position_of_row = vec![0usize; n];
    for (at, &row) in tree.ids.iter().enumerate() {
        position_of_row[row] = at;
    }
    let mut labels = vec![-1i32; n];
    let mut cluster_of_root = vec![-1i32; n];
    let mut clusters = 0i32;
    for &at in &position_of_row {
        if is_core[at] {
            let root = sets.find(at);
            if cluster_of_root[root] < 0 {
                cluster_of_root[root] = clusters;
                clusters += 1;
            }
            labels[at] = cluster_of_root[root];
        }
    }

    // Border points: the lowest cluster among the core points within eps. A point that is not
    // core has fewer than min_points neighbours, so these queries are short.
    let border: Vec<(usize, i32)> = (0..n)
        .into_par_iter()
        .filter(|&at| !is_core[at])
        .map(|at| {
            check(stop)?;
            let mut cluster = -1;
            let mut consider = |q: usize| {
                if is_core[q] && (cluster < 0 || labels[q] < cluster) {
                    cluster = labels[q];
                }
            };
            tree.for_each_within(tree.point(at), r2, 0, |hit| {
                match hit {
                    Hit::Point(q) => consider(q),
                    Hit::Node(node) => (tree.nodes[node].start..tree.nodes[node].end).for_each(&mut consider),
                }
                true
            });
            Ok((at, cluster))
        })
        .collect::<Result<_>>()?;
    for (at, cluster) in border {
        labels[at] = cluster;
    }
    Ok((
        position_of_row.iter().map(|&at| labels[at]).collect(),
        position_of_row.iter().map(|&at| is_core[at]).collect(),
    ))
}

/// eps at the knee of the sorted k-distances of (up to `knee_sample`) points of `sample`.
fn knee_eps(sample: &Array2<f64>, min_points: usize, knee_sample: usize, seed: u64, stop: Stop) -> Result<f64> {
    let index = CommonNearestNeighbour::KdTree
        .from_batch(sample, L2Dist)
        .map_err(|e| invalid(format!("cannot index the rows: {e}")))?;
    let n = sample.nrows();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6b6e_6565);
    let probes: Vec<usize> = if n > knee_sample {
        let mut v = index::sample(&mut rng, n, knee_sample).into_vec();
        v.sort_unstable();
        v
    } else {
        (0..n).collect()
    };
    let mut distances: Vec<f64> = probes
        .par_iter()
        .map(|&i| {
            check(stop)?;
            let row = sample.row(i);
            let found = index
                .k_nearest(row, min_points)
                .map_err(|e| invalid(format!("k-distance query failed: {e}")))?;
            Ok(found
                .last()
                .map(|(p, _)| {
                    p.iter()
                        .zip(row.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt()
                })
                .unwrap_or(0.0))
        })
        .collect::<Result<Vec<f64>>>()?;
    distances.sort_by(f64::total_cmp);
    let xs: Vec<f64> = (0..distances.len()).map(|i| i as f64).collect();
    let at = super::knee(&xs, &distances).unwrap_or(distances.len().saturating_sub(1));
    let eps = distances[at];
    if eps > 0.0 {
        return Ok(eps);
    }
    // Many identical rows put the knee at 0: take the smallest positive k-distance instead.
    distances.into_iter().find(|d| *d > 0.0).ok_or_else(|| {
        invalid("every row is identical to its neighbours, so no radius separates anything; give eps=...")
    })
}

/// The stage's fit (see [`DbscanStage`]), ending with [`Error::Interrupted`] once `stop` says so.
fn fit_until(x: ArrayView2<f64>, params: &Value, seed: u64, stop: Stop) -> Result<Fitted> {
    let p: DbscanParams = from_json(NAME, "parameters", params)?;
    let rows = x.nrows();
    if rows < p.min_points {
        return Err(invalid(format!(
            "the source has {rows} rows, fewer than min_points={}\n  hint: lower min_points or train on more rows",
            p.min_points
        )));
    }
    if x.ncols() == 0 {
        return Err(invalid("no feature columns"));
    }
    let sampled: Vec<usize> = if rows > p.sample {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v = index::sample(&mut rng, rows, p.sample).into_vec();
        v.sort_unstable();
        v
    } else {
        (0..rows).collect()
    };
    let sample = x.select(Axis(0), &sampled);
    let eps = match p.eps {
        Some(eps) => eps,
        None => knee_eps(&sample, p.min_points, p.knee_sample, seed, stop)?,
    };
    let (sample_labels, sample_cores) = density_clusters_and_cores(sample.view(), eps, p.min_points, stop)?;
    // Only core points are stored: a border point never extends a cluster, so a new row
    // near a border point but beyond eps of every core point is noise.
    let clustered: Vec<usize> = (0..sampled.len())
        .filter(|&i| sample_labels[i] >= 0 && sample_cores[i])
        .collect();
    let model = DbscanModel {
        eps,
        min_points: p.min_points,
        points: sample.select(Axis(0), &clustered),
        labels: clustered.iter().map(|&i| sample_labels[i]).collect(),
    };
    // Training rows: DBSCAN's own label in the sample, nearest core point elsewhere.
    let started = std::time::Instant::now();
    let mut clusters = vec![-1i32; rows];
    let mut in_sample = vec![false; rows];
    for (i, &row) in sampled.iter().enumerate() {
        clusters[row] = sample_labels[i];
        in_sample[row] = true;
    }
    if sampled.len() < rows {
        let rest: Vec<usize> = (0..rows).filter(|r| !in_sample[*r]).collect();
        let assigned = nearest_cluster(&model, x.select(Axis(0), &rest).view(), stop)?;
        for (r, c) in rest.into_iter().zip(assigned) {
            clusters[r] = c;
        }
    }
    let out = output(clusters, in_sample);
    let score_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut metrics = Map::new();
    metrics.insert("eps".into(), json!(eps));
    metrics.insert("eps_auto".into(), json!(p.eps.is_none()));
    metrics.insert("min_points".into(), json!(p.min_points));
    metrics.insert("sample_size".into(), json!(sampled.len()));
    metrics.insert("sampled".into(), json!(sampled.len() < rows));
    metrics.insert("stored_points".into(), json!(model.points.nrows()));
    Ok(Fitted {
        model: to_json(NAME, &model)?,
        metrics,
        training_output: Some((out, score_ms)),
    })
}

impl Stage for DbscanStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "DBSCAN density clusters (parallel queries on a k-d tree), eps given or from the k-distance knee, noise labelled -1"
    }

    fn table(&self) -> &'static str {
        "clusters"
    }

    fn extra_tables(&self) -> &'static [&'static str] {
        &["evaluation"]
    }

    fn params_help(&self) -> &'static str {
        "eps=auto|X (auto), min_points=5, sample=50000, knee_sample=5000"
    }

    fn resolve(&self, set: &BTreeMap<String, String>) -> Result<Value> {
        known_keys(NAME, set, &["eps", "min_points", "sample", "knee_sample"])?;
        let eps = match set.get("eps").map(String::as_str) {
            None | Some("auto") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|e| *e > 0.0 && e.is_finite())
                    .ok_or_else(|| Error::StageParams {
                        stage: NAME,
                        reason: format!("eps={v}: expected auto or a positive distance"),
                    })?,
            ),
        };
        let p = DbscanParams {
            eps,
            min_points: count_param(NAME, set, "min_points", 5, 100_000, "a whole number")?,
            sample: count_param(NAME, set, "sample", 50_000, 10_000_000, "a whole number of rows")?,
            knee_sample: count_param(NAME, set, "knee_sample", 5_000, 10_000_000, "a whole number of rows")?,
        };
        if p.min_points < 2 || p.sample < 2 || p.knee_sample < 3 {
            return Err(Error::StageParams {
                stage: NAME,
                reason: "min_points and sample must be at least 2, knee_sample at least 3".into(),
            });
        }
        to_json(NAME, &p)
    }

    fn fit(&self, x: ArrayView2<f64>, params: &Value, seed: u64) -> Result<Fitted> {
        let stop = crate::interrupt::carry();
        fit_until(x, params, seed, &|| stop.requested())
    }

    fn apply(&self, model: &Value, x: ArrayView2<f64>) -> Result<Applied> {
        let model: DbscanModel = from_json(NAME, "model", model)?;
        if model.points.nrows() > 0 && model.points.ncols() != x.ncols() {
            return Err(invalid(format!(
                "the model's points have {} features but the data has {}",
                model.points.ncols(),
                x.ncols()
            )));
        }
        if model.labels.len() != model.points.nrows() {
            return Err(invalid(
                "the stored model is damaged (labels and points differ); retrain it",
            ));
        }
        let stop = crate::interrupt::carry();
        let clusters = nearest_cluster(&model, x, &|| stop.requested())?;
        Ok(output(clusters, vec![false; x.nrows()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: new rows joined the nearest clustered point within eps, border points
    /// included, so a border point extended its cluster by another eps.
    #[test]
    fn new_rows_join_core_points_only() {
        // core points 0.0..0.3 (min_points 4, eps 0.35); 0.6 is a border point of their cluster
        let x = ndarray::array![[0.0], [0.1], [0.2], [0.3], [0.6], [5.0]];
        let params = json!({"eps": 0.35, "min_points": 4, "sample": 100, "knee_sample": 100});
        let fitted = DbscanStage.fit(x.view(), &params, 1).unwrap();
        let model: DbscanModel = serde_json::from_value(fitted.model.clone()).unwrap();
        assert_eq!(model.points.nrows(), 4, "the border point and the noise are not stored");
        let Some((training, _)) = &fitted.training_output else {
            panic!("no training output")
        };
        let Values::Int(labels) = &training.columns[0].values else {
            panic!("clusters are integers")
        };
        assert_eq!(
            labels,
            &vec![0, 0, 0, 0, 0, -1],
            "DBSCAN's own labels keep the border point"
        );
        let new = ndarray::array![[0.9], [0.5], [0.62]];
        let applied = DbscanStage.apply(&fitted.model, new.view()).unwrap();
        let Values::Int(clusters) = &applied.columns[0].values else {
            panic!("clusters are integers")
        };
        // 0.9 is within eps of the border point 0.6 only: noise. 0.5 and 0.62 reach core 0.3.
        assert_eq!(clusters, &vec![-1, 0, 0]);
    }
    use linfa::traits::Transformer;
    use linfa::ParamGuard;
    use linfa_clustering::Dbscan;
    use rand::Rng;

    /// `blobs` Gaussian-ish groups of `per_blob` points with `spread`, plus `noise` uniform points
    /// over the whole box, in `dim` dimensions.
    fn blobs_and_noise(seed: u64, dim: usize, blobs: usize, per_blob: usize, spread: f64, noise: usize) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut values = Vec::new();
        for _ in 0..blobs {
            let centre: Vec<f64> = (0..dim).map(|_| rng.gen_range(-10.0..10.0)).collect();
            for _ in 0..per_blob {
                for c in &centre {
                    let bell: f64 = (0..3).map(|_| rng.gen_range(-1.0..1.0)).sum();
                    values.push(c + spread * bell);
                }
            }
        }
        for _ in 0..noise * dim {
            values.push(rng.gen_range(-12.0..12.0));
        }
        // Exact duplicates count as neighbours too.
        let rows = values.len() / dim;
        values.extend_from_within(0..dim * 3);
        Array2::from_shape_vec((rows + 3, dim), values).unwrap()
    }

    fn linfa_labels(x: &Array2<f64>, eps: f64, min_points: usize) -> Vec<i32> {
        Dbscan::params(min_points)
            .tolerance(eps)
            .check()
            .unwrap()
            .transform(x)
            .iter()
            .map(|l| l.map_or(-1, |c| c as i32))
            .collect()
    }

    /// Rows within eps of each row, itself included, by brute force.
    fn neighbour_counts(x: &Array2<f64>, eps: f64) -> Vec<usize> {
        x.rows()
            .into_iter()
            .map(|a| {
                x.rows()
                    .into_iter()
                    .filter(|b| a.iter().zip(b.iter()).map(|(u, v)| (u - v) * (u - v)).sum::<f64>() <= eps * eps)
                    .count()
            })
            .collect()
    }

    /// Same partition into noise and clusters, up to the clusters' numbers.
    fn assert_same_partition(ours: &[i32], oracle: &[i32]) {
        assert_eq!(ours.len(), oracle.len());
        let mut ours_to_oracle = BTreeMap::new();
        let mut oracle_to_ours = BTreeMap::new();
        for (row, (&a, &b)) in ours.iter().zip(oracle).enumerate() {
            assert_eq!(a < 0, b < 0, "row {row}: noise in one and not the other ({a} vs {b})");
            if a >= 0 {
                assert_eq!(
                    *ours_to_oracle.entry(a).or_insert(b),
                    b,
                    "row {row}: cluster {a} maps to two"
                );
                assert_eq!(
                    *oracle_to_ours.entry(b).or_insert(a),
                    a,
                    "row {row}: cluster {b} maps to two"
                );
            }
        }
    }

    /// Issue 22: Ctrl-C inside one DBSCAN fit. Every phase (the k-distance knee, the core test,
    /// the linking, the border points, the rows outside the sample) asks `stop` before each
    /// point's query, so a fit ends one query after it, wherever it is.
    #[test]
    fn a_stop_ends_a_fit_in_every_phase() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let x = blobs_and_noise(3, 3, 4, 500, 0.3, 300);
        let rows = x.nrows();
        let params = DbscanStage
            .resolve(&BTreeMap::from([("sample".to_string(), "1200".to_string())]))
            .unwrap();
        // How many times an uninterrupted fit asks: then a stop at each of several points along
        // the way, the last in the assignment of the rows outside the sample.
        let total = AtomicUsize::new(0);
        let count = || {
            total.fetch_add(1, Ordering::SeqCst);
            false
        };
        fit_until(x.view(), &params, 1, &count).unwrap();
        let total = total.into_inner();
        assert!(total >= rows, "asked only {total} times for {rows} rows");
        for after in [0, total / 5, total / 2, total - 3] {
            let asked = AtomicUsize::new(0);
            let stop = || asked.fetch_add(1, Ordering::SeqCst) >= after;
            let result = fit_until(x.view(), &params, 1, &stop);
            assert!(matches!(result, Err(Error::Interrupted)), "stop at {after} of {total}");
        }
    }

    #[test]
    fn same_clusters_as_linfa_dbscan() {
        let cases = [
            (1, 2, 4, 150, 0.6, 60, 0.5, 5),
            (2, 2, 6, 80, 1.0, 120, 0.7, 4),
            (3, 5, 5, 200, 0.5, 100, 1.0, 5),
            (4, 10, 8, 250, 0.4, 50, 1.2, 6),
            (5, 3, 3, 300, 1.0, 200, 0.7, 10),
        ];
        for (seed, dim, blobs, per_blob, spread, noise, eps, min_points) in cases {
            let x = blobs_and_noise(seed, dim, blobs, per_blob, spread, noise);
            let ours = density_clusters(x.view(), eps, min_points);
            let oracle = linfa_labels(&x, eps, min_points);
            assert_same_partition(&ours, &oracle);
            // The case exercises noise, several clusters and border points (clustered, not core).
            let counts = neighbour_counts(&x, eps);
            let borders = (0..x.nrows())
                .filter(|&i| ours[i] >= 0 && counts[i] < min_points)
                .count();
            assert!(ours.contains(&-1), "seed {seed}: no noise");
            assert!(ours.iter().max().unwrap() >= &1, "seed {seed}: fewer than two clusters");
            assert!(borders > 0, "seed {seed}: no border points");
        }
    }

    #[test]
    fn a_border_point_between_two_clusters_takes_the_first() {
        // Two tight groups, and one point within eps of an edge point of each but with only
        // three points (itself included) within eps, so it is a border point of both.
        let mut rows = Vec::new();
        for i in 0..6 {
            rows.extend([i as f64 * 0.1, 0.0]);
        }
        for i in 0..6 {
            rows.extend([1.5 + i as f64 * 0.1, 0.0]);
        }
        rows.extend([1.0, 0.0]);
        let x = Array2::from_shape_vec((13, 2), rows).unwrap();
        let ours = density_clusters(x.view(), 0.55, 4);
        let oracle = linfa_labels(&x, 0.55, 4);
        assert_eq!(ours, oracle);
        assert_eq!(&ours[..12], &[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(ours[12], 0, "the border point joins the first cluster that reaches it");
        // Listed the other way round, the other cluster comes first and takes it.
        let reversed = x.slice(ndarray::s![..;-1, ..]).to_owned();
        let ours = density_clusters(reversed.view(), 0.55, 4);
        assert_eq!(ours, linfa_labels(&reversed, 0.55, 4));
        assert_eq!(ours[0], 0);
        assert_eq!(ours[1], 0, "the first core group now is the one at 1.5..2.0");
    }

    #[test]
    fn range_tree_finds_what_brute_force_finds() {
        let x = blobs_and_noise(7, 4, 3, 300, 0.5, 100);
        let tree = RangeTree::new(x.view());
        let counts = neighbour_counts(&x, 0.9);
        for (row, expected) in counts.iter().enumerate() {
            let at = tree.ids.iter().position(|&r| r == row).unwrap();
            let mut found = Vec::new();
            tree.for_each_within(tree.point(at), 0.81, 0, |hit| {
                match hit {
                    Hit::Point(q) => found.push(q),
                    Hit::Node(node) => found.extend(tree.nodes[node].start..tree.nodes[node].end),
                }
                true
            });
            found.sort_unstable();
            found.dedup();
            assert_eq!(found.len(), *expected, "row {row}");
        }
    }

    #[test]
    fn identical_and_too_few_points() {
        // All identical: one leaf that cannot be split, every point core.
        let same = Array2::from_elem((40, 3), 1.5);
        assert_eq!(density_clusters(same.view(), 0.1, 5), vec![0; 40]);
        let few = Array2::from_elem((3, 2), 0.0);
        assert_eq!(density_clusters(few.view(), 1.0, 5), vec![-1; 3]);
    }

    #[test]
    fn two_dense_groups_and_an_outlier() {
        let mut rows = Vec::new();
        for i in 0..40 {
            let t = i as f64 * 0.01;
            rows.extend([t, t]);
            rows.extend([5.0 + t, 5.0 - t]);
        }
        rows.extend([50.0, -50.0]);
        let x = Array2::from_shape_vec((81, 2), rows).unwrap();
        let mut set = BTreeMap::new();
        set.insert("eps".to_string(), "0.5".to_string());
        let params = DbscanStage.resolve(&set).unwrap();
        let fitted = DbscanStage.fit(x.view(), &params, 1).unwrap();
        let (applied, _) = fitted.training_output.as_ref().unwrap();
        let Values::Int(c) = &applied.columns[0].values else {
            panic!()
        };
        assert_eq!(c[80], -1, "the outlier is noise");
        assert_ne!(c[0], c[1], "two clusters");
        assert!(c[..80].iter().all(|v| *v >= 0));
        // Scoring with the stored model gives the same clusters for the same rows.
        let again = DbscanStage.apply(&fitted.model, x.view()).unwrap();
        let Values::Int(d) = &again.columns[0].values else {
            panic!()
        };
        assert_eq!(c, d);
        // eps from the knee also separates them.
        let params = DbscanStage.resolve(&BTreeMap::new()).unwrap();
        let fitted = DbscanStage.fit(x.view(), &params, 1).unwrap();
        let (applied, _) = fitted.training_output.as_ref().unwrap();
        let Values::Int(c) = &applied.columns[0].values else {
            panic!()
        };
        assert_eq!(c[80], -1);
    }
}
