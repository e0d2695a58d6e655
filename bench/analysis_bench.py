#!/usr/bin/env python3
"""Analysis stages against scikit-learn, side by side in one run (issue 3's benchmark).

Everything on the netlens side goes through the real binary and a scratch DuckDB file:
  auc      NSL-KDD (../shared/data/nsl-kdd): train on KDDTrain+ (all rows; and the normal rows
           only), score KDDTest+, positive = label != normal, the 41 features with
           protocol_type/service/flag one-hot and standard scaling from the training rows.
           netlens: `train iforest --on kdd_train --exclude label,difficulty --seed S`, then
           `score MODEL --on kdd_test --label label --into scored`; ROC-AUC from the scored rows
           (and checked against the `evaluation` table). scikit-learn:
           IsolationForest(n_estimators=100, max_samples=256), the same preprocessing in pandas.
           Mean over the seeds (default 5) of each.
  iforest  fit + score time of the Isolation Forest on NSL-KDD (fit on KDDTrain+, score
           KDDTest+) and on 1 000 000 x 10 synthetic rows (fit, then score the same rows):
           netlens's model_runs.fit_ms + score_ms (the computation) and the whole commands' wall
           time, against scikit-learn's fit + score_samples with n_jobs=2. Target: <= 0.5x.
  ensemble NSL-KDD, seed 0 (seeds 0..N-1 with --ensemble-seeds N): `train ensemble` (iforest, ocsvm, lof, autoencoder with their
           defaults) on the normal training rows and, unsupervised, on all training rows, then
           `score MODEL --on kdd_test --label label --into T`; ROC-AUC of each member's column and of
           the ensemble's score. scikit-learn: IsolationForest(100, 256), OneClassSVM(nu=0.05,
           gamma='scale') on a 5 000-row subsample, LocalOutlierFactor(n_neighbors=20,
           novelty=True) on a 20 000-row subsample, MLPRegressor(64-32-16-8-16-32-64,
           early_stopping=True) reconstructing its input (score = squared error), and the mean of
           the four's percentile ranks on the test rows. Time: the two netlens commands' wall time
           against the four scikit-learn fits + scores.
  lof      NSL-KDD, one seed: `train lof` (k=20, 20 000-row reference subsample, novelty) on the
           normal training rows, then `score MODEL --on kdd_test`; against scikit-learn's
           LocalOutlierFactor(n_neighbors=20, novelty=True) fit on a 20 000-row subsample and
           score_samples on the test rows (its neighbour search runs on every core). netlens also
           scores every training row (67 343) to place its threshold, which scikit-learn does not:
           both the computation (fit_ms + score_ms of the two runs) and the commands' wall time
           are reported. ROC-AUC of both on the test rows. Target: no slower.
  kmeans   K-Means k=8 on 100 000 x 10 rows (8 Gaussian blobs): `train kmeans --set k=8`
           (k-means++, 1 run, tol as scikit-learn) against KMeans(n_clusters=8, n_init=1) fit +
           predict on the standard-scaled rows. Target: no slower.
  dbscan   DBSCAN on the same rows, eps=0.5, min_points=5, all rows clustered (sample=100000)
           against DBSCAN(eps=0.5, min_samples=5, n_jobs=2). Target: no slower.

Timings are the median of --repeat runs (default 1). The machine's other load shows in them: run
on an idle machine. Installs scikit-learn, pandas and pyarrow with pip when they are missing.

Usage: bench/analysis_bench.py [--only auc,iforest,ensemble,lof,kmeans,dbscan] [--seeds 5] [--ensemble-seeds 1] [--rows 1000000]
                               [--repeat 1] [--data DIR] [--keep DIR]
       NETLENS=path/to/netlens bench/analysis_bench.py ...   (that binary, no cargo build)
"""
import argparse, csv, io, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data", "nsl-kdd")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/netlens-target"))
# NETLENS=/path/to/netlens benchmarks that binary as it is (no cargo build).
NETLENS = os.environ.get("NETLENS") or os.path.join(TARGET, "release", "netlens")


def setup():
    try:
        import sklearn, pandas, pyarrow  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "scikit-learn", "pandas", "pyarrow"], check=True)
    if not os.environ.get("NETLENS"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=TARGET))


class Netlens:
    """The real binary on one scratch database."""

    def __init__(self, db):
        self.db = db

    def run(self, *args):
        """Runs `netlens --db DB ARGS`; returns (stdout, wall seconds). Fails loudly."""
        started = time.perf_counter()
        done = subprocess.run([NETLENS, "--db", self.db, *args], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"netlens {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout, wall

    def sql(self, query):
        """Rows of a query as dicts (CSV output, all values text)."""
        out, _ = self.run("--format", "csv", "-c", query)
        return list(csv.DictReader(io.StringIO(out)))

    def last_run(self):
        return self.sql("SELECT * FROM model_runs ORDER BY run_id DESC LIMIT 1")[0]


def ms(row, column):
    value = row.get(column)
    return float(value) if value not in (None, "") else 0.0


def auc_of(labels, scores):
    from sklearn.metrics import roc_auc_score
    return roc_auc_score(labels, scores)


# ---------------------------------------------------------------- NSL-KDD

def kdd_frames(data):
    import pandas as pd
    columns = [line.strip() for line in open(os.path.join(data, "columns.txt")) if line.strip()]
    train = pd.read_csv(os.path.join(data, "KDDTrain+.txt"), header=None, names=columns)
    test = pd.read_csv(os.path.join(data, "KDDTest+.txt"), header=None, names=columns)
    return columns, train, test


def kdd_matrices(columns, train, test):
    """The protocol's preprocessing in pandas: one-hot with the training categories, standard
    scaling (population std) with the training statistics, constant columns left at 0."""
    import pandas as pd
    features = [c for c in columns if c not in ("label", "difficulty")]
    categorical = ["protocol_type", "service", "flag"]
    a = pd.get_dummies(train[features], columns=categorical, dtype=float).astype(float)
    b = pd.get_dummies(test[features], columns=categorical, dtype=float).astype(float)
    b = b.reindex(columns=a.columns, fill_value=0.0)
    mean, std = a.mean(), a.std(ddof=0).replace(0, 1.0)
    return ((a - mean) / std).to_numpy(), ((b - mean) / std).to_numpy()


def load_kdd(nl, data, columns):
    names = ", ".join(f"'{c}'" for c in columns)
    for table, file in (("kdd_train", "KDDTrain+.txt"), ("kdd_test", "KDDTest+.txt")):
        path = os.path.abspath(os.path.join(data, file)).replace("'", "''")
        nl.run("-c", f"CREATE TABLE {table} AS SELECT * FROM read_csv('{path}', header = false, "
                     f"names = [{names}], sample_size = -1)")
    nl.run("-c", "CREATE TABLE kdd_train_normal AS SELECT * FROM kdd_train WHERE label = 'normal'")


def bench_auc(nl, data, seeds, results, timings):
    from sklearn.ensemble import IsolationForest
    columns, train, test = kdd_frames(data)
    load_kdd(nl, data, columns)
    positive = (test["label"] != "normal").astype(int).to_numpy()
    for protocol, table, rows in (("all rows", "kdd_train", train),
                                  ("normal rows", "kdd_train_normal", train[train["label"] == "normal"])):
        a, b = kdd_matrices(columns, rows, test)
        ours, theirs = [], []
        for seed in seeds:
            model = f"kdd_{table}_{seed}"
            into = f"scored_{table}_{seed}"
            _, train_wall = nl.run("train", "iforest", "--on", table, "--exclude", "label,difficulty",
                                   "--seed", str(seed), "--model", model)
            fit = nl.last_run()
            _, score_wall = nl.run("score", model, "--on", "kdd_test", "--label", "label", "--into", into)
            scored = nl.last_run()
            rows_scored = nl.sql(f"SELECT label, score FROM {into}")
            auc = auc_of([r["label"] != "normal" for r in rows_scored], [float(r["score"]) for r in rows_scored])
            stored = nl.sql(f"SELECT roc_auc FROM evaluation WHERE run_id = {scored['run_id']}")
            if stored and stored[0]["roc_auc"] and abs(float(stored[0]["roc_auc"]) - auc) > 1e-6:
                print(f"warning: evaluation.roc_auc {stored[0]['roc_auc']} differs from the scored rows' {auc}",
                      file=sys.stderr)
            ours.append(auc)

            started = time.perf_counter()
            forest = IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=2).fit(a)
            fitted = time.perf_counter()
            sk_scores = -forest.score_samples(b)
            sk_seconds = (fitted - started, time.perf_counter() - fitted)
            theirs.append(auc_of(positive, sk_scores))
            print(f"  {protocol}, seed {seed}: netlens {ours[-1]:.4f}  scikit-learn {theirs[-1]:.4f}", file=sys.stderr)
            if protocol == "all rows":
                timings.append({
                    "netlens_fit": ms(fit, "fit_ms") / 1000, "netlens_score": ms(scored, "score_ms") / 1000,
                    "netlens_wall": train_wall + score_wall, "sk_fit": sk_seconds[0], "sk_score": sk_seconds[1],
                })
        results.append((f"NSL-KDD ROC-AUC, train on {protocol} (mean of {len(seeds)} seeds)",
                        statistics.mean(ours), statistics.mean(theirs), "auc"))


def bench_ensemble(nl, data, seed, results, tag=""):
    import numpy as np
    from scipy.stats import rankdata
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.neural_network import MLPRegressor
    from sklearn.svm import OneClassSVM
    columns, train, test = kdd_frames(data)
    if nl.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'kdd_test'")[0]["n"] == "0":
        load_kdd(nl, data, columns)
    positive = (test["label"] != "normal").astype(int).to_numpy()
    members = ["iforest", "ocsvm", "lof", "autoencoder"]
    for protocol, table, rows in (("normal rows", "kdd_train_normal", train[train["label"] == "normal"]),
                                  ("all rows", "kdd_train", train)):
        model, into = f"ens_{table}_{seed}", f"ens_scored_{table}_{seed}"
        _, train_wall = nl.run("train", "ensemble", "--on", table, "--exclude", "label,difficulty",
                               "--seed", str(seed), "--model", model)
        fit = nl.last_run()
        _, score_wall = nl.run("score", model, "--on", "kdd_test", "--label", "label", "--into", into)
        scored = nl.sql(f"SELECT * FROM {into}")
        labels = [r["label"] != "normal" for r in scored]
        ours = {m: auc_of(labels, [float(r[f"{m}_score"]) for r in scored]) for m in members}
        ours["ensemble"] = auc_of(labels, [float(r["score"]) for r in scored])

        a, b = kdd_matrices(columns, rows, test)
        rng = np.random.default_rng(seed)
        theirs, sk_scores, sk_seconds = {}, {}, {}
        started = time.perf_counter()
        forest = IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=2).fit(a)
        sk_scores["iforest"] = -forest.score_samples(b)
        sk_seconds["iforest"] = time.perf_counter() - started
        started = time.perf_counter()
        svm = OneClassSVM(nu=0.05, gamma="scale").fit(a[rng.choice(len(a), min(5000, len(a)), replace=False)])
        sk_scores["ocsvm"] = -svm.score_samples(b)
        sk_seconds["ocsvm"] = time.perf_counter() - started
        started = time.perf_counter()
        lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(a[rng.choice(len(a), min(20000, len(a)), replace=False)])
        sk_scores["lof"] = -lof.score_samples(b)
        sk_seconds["lof"] = time.perf_counter() - started
        started = time.perf_counter()
        mlp = MLPRegressor(hidden_layer_sizes=(64, 32, 16, 8, 16, 32, 64), early_stopping=True, random_state=seed).fit(a, a)
        sk_scores["autoencoder"] = ((mlp.predict(b) - b) ** 2).mean(axis=1)
        sk_seconds["autoencoder"] = time.perf_counter() - started
        for m in members:
            theirs[m] = auc_of(positive, sk_scores[m])
        theirs["ensemble"] = auc_of(positive, np.mean([rankdata(sk_scores[m]) / len(b) for m in members], axis=0))
        for m in members + ["ensemble"]:
            results.append((f"NSL-KDD ROC-AUC, train on {protocol}{tag}: {m}", ours[m], theirs[m], "auc"))
        results.append((f"Ensemble NSL-KDD, train on {protocol}{tag}: train + score commands, wall (s)",
                        train_wall + score_wall, sum(sk_seconds.values()), "time"))
        member_ms = __import__("json").loads(fit["metrics"])
        print(f"  {protocol}{tag}: netlens train {train_wall:.2f}s (load {ms(fit, 'load_ms') / 1000:.2f}s, member fits "
              + ", ".join(f"{m} {member_ms[m]['fit_ms'] / 1000:.2f}s" for m in members)
              + f"), score {score_wall:.2f}s; scikit-learn "
              + ", ".join(f"{m} {sk_seconds[m]:.2f}s" for m in members)
              + f" (MLP epochs {mlp.n_iter_})", file=sys.stderr)


def bench_lof(nl, data, seed, repeat, results):
    import numpy as np
    from sklearn.neighbors import LocalOutlierFactor
    columns, train, test = kdd_frames(data)
    if nl.sql("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'kdd_test'")[0]["n"] == "0":
        load_kdd(nl, data, columns)
    positive = (test["label"] != "normal").astype(int).to_numpy()
    a, b = kdd_matrices(columns, train[train["label"] == "normal"], test)

    def ours(i):
        model, into = f"lof_kdd_{i}", f"lof_scored_{i}"
        _, train_wall = nl.run("train", "lof", "--on", "kdd_train_normal", "--exclude", "label,difficulty",
                               "--seed", str(seed), "--model", model)
        fit = nl.last_run()
        _, score_wall = nl.run("score", model, "--on", "kdd_test", "--label", "label", "--into", into)
        scored = nl.last_run()
        rows = nl.sql(f"SELECT label, score FROM {into}")
        auc = auc_of([r["label"] != "normal" for r in rows], [float(r["score"]) for r in rows])
        compute = (ms(fit, "fit_ms") + ms(fit, "score_ms") + ms(scored, "score_ms")) / 1000
        return train_wall + score_wall, compute, auc

    def theirs(i):
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(a[rng.choice(len(a), min(20000, len(a)), replace=False)])
        scores = -lof.score_samples(b)
        return time.perf_counter() - started, auc_of(positive, scores)

    runs = []
    for i in range(repeat):
        # Alternating, so a change in the machine's load falls on both.
        wall, compute, auc = ours(i)
        sk_seconds, sk_auc = theirs(i)
        print(f"  run {i}: netlens commands {wall:.2f}s (computation {compute:.2f}s, ROC-AUC {auc:.4f}); "
              f"scikit-learn fit + score {sk_seconds:.2f}s (ROC-AUC {sk_auc:.4f})", file=sys.stderr)
        runs.append((wall, compute, sk_seconds, auc, sk_auc))
    wall, compute, sk = (statistics.median(r[k] for r in runs) for k in range(3))
    results.append(("LOF NSL-KDD (k 20, 20 000 reference rows): fit + score computation (s)", compute, sk, "time"))
    results.append(("LOF NSL-KDD: train + score commands, wall (s)", wall, sk, "time"))
    results.append(("NSL-KDD ROC-AUC, train on normal rows: lof", runs[0][3], runs[0][4], "auc"))


# ---------------------------------------------------------------- timings

def write_parquet(frame, path):
    frame.to_parquet(path, index=False)


def load_parquet(nl, table, path):
    nl.run("-c", f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")


def median_run(repeat, fn):
    runs = [fn(i) for i in range(repeat)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def bench_iforest_synthetic(nl, work, n_rows, repeat, results):
    import numpy as np, pandas as pd
    from sklearn.ensemble import IsolationForest
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n_rows, 10))
    x[: n_rows // 100] *= 4.0  # a few per cent spread wide: something to isolate
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(10)])
    path = os.path.join(work, "synthetic.parquet")
    write_parquet(frame, path)
    load_parquet(nl, "synthetic", path)

    def ours(i):
        _, wall = nl.run("train", "iforest", "--on", "synthetic", "--seed", str(i), "--model", f"syn_{i}")
        run = nl.last_run()
        return {"fit": ms(run, "fit_ms") / 1000, "score": ms(run, "score_ms") / 1000, "load": ms(run, "load_ms") / 1000,
                "write": ms(run, "write_ms") / 1000, "wall": wall}

    def theirs(i):
        started = time.perf_counter()
        forest = IsolationForest(n_estimators=100, max_samples=256, random_state=i, n_jobs=2).fit(x)
        fitted = time.perf_counter()
        forest.score_samples(x)
        return {"fit": fitted - started, "score": time.perf_counter() - fitted}

    a, b = median_run(repeat, ours), median_run(repeat, theirs)
    label = f"Isolation Forest {n_rows:,} x 10"
    results.append((f"{label}: fit + score (s)", a["fit"] + a["score"], b["fit"] + b["score"], "time"))
    results.append((f"{label}: fit (s)", a["fit"], b["fit"], "time"))
    results.append((f"{label}: score (s)", a["score"], b["score"], "time"))
    results.append((f"{label}: whole train command, wall (s)", a["wall"], b["fit"] + b["score"], "time"))
    print(f"  netlens train iforest on {n_rows:,} rows: load {a['load']:.2f}s fit {a['fit']:.2f}s "
          f"score {a['score']:.2f}s write {a['write']:.2f}s, wall {a['wall']:.2f}s", file=sys.stderr)


def blobs(work, nl):
    import pandas as pd
    from sklearn.datasets import make_blobs
    from sklearn.preprocessing import StandardScaler
    x, _ = make_blobs(n_samples=100_000, n_features=10, centers=8, random_state=0)
    path = os.path.join(work, "blobs.parquet")
    write_parquet(pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]), path)
    load_parquet(nl, "blobs", path)
    return StandardScaler().fit_transform(x)


def bench_kmeans(nl, scaled, repeat, results):
    from sklearn.cluster import KMeans

    def ours(i):
        _, wall = nl.run("train", "kmeans", "--on", "blobs", "--set", "k=8", "--seed", str(i), "--model", f"km_{i}")
        run = nl.last_run()
        return {"compute": (ms(run, "fit_ms") + ms(run, "score_ms")) / 1000, "wall": wall}

    def theirs(i):
        started = time.perf_counter()
        model = KMeans(n_clusters=8, n_init=1, random_state=i).fit(scaled)
        model.predict(scaled)
        return {"compute": time.perf_counter() - started}

    a, b = median_run(repeat, ours), median_run(repeat, theirs)
    results.append(("K-Means k=8, 100,000 x 10: fit + assign (s)", a["compute"], b["compute"], "time"))
    results.append(("K-Means k=8, 100,000 x 10: whole train command, wall (s)", a["wall"], b["compute"], "time"))


def bench_dbscan(nl, scaled, repeat, results):
    from sklearn.cluster import DBSCAN

    def ours(i):
        _, wall = nl.run("train", "dbscan", "--on", "blobs", "--set", "eps=0.5", "--set", "min_points=5",
                         "--set", "sample=100000", "--seed", str(i), "--model", f"db_{i}")
        run = nl.last_run()
        clusters = nl.sql(f"SELECT count(DISTINCT cluster) FILTER (WHERE cluster >= 0) AS clusters, "
                          f"avg(CASE WHEN is_noise THEN 1 ELSE 0 END) AS noise FROM clusters WHERE run_id = {run['run_id']}")[0]
        print(f"  netlens dbscan: {clusters['clusters']} clusters, noise share {float(clusters['noise']):.4f}",
              file=sys.stderr)
        return {"compute": (ms(run, "fit_ms") + ms(run, "score_ms")) / 1000, "wall": wall}

    def theirs(i):
        started = time.perf_counter()
        labels = DBSCAN(eps=0.5, min_samples=5, n_jobs=2).fit(scaled).labels_
        seconds = time.perf_counter() - started
        print(f"  scikit-learn dbscan: {len(set(labels) - {-1})} clusters, noise share {(labels == -1).mean():.4f}",
              file=sys.stderr)
        return {"compute": seconds}

    a, b = median_run(repeat, ours), median_run(repeat, theirs)
    results.append(("DBSCAN eps=0.5, 100,000 x 10: fit (s)", a["compute"], b["compute"], "time"))
    results.append(("DBSCAN eps=0.5, 100,000 x 10: whole train command, wall (s)", a["wall"], b["compute"], "time"))


# ---------------------------------------------------------------- report

def report(results):
    width = max(len(name) for name, *_ in results)
    print(f"{'benchmark':<{width}}  {'netlens':>9}  {'sklearn':>9}  {'ratio':>6}")
    for name, ours, theirs, kind in results:
        if kind == "auc":
            print(f"{name:<{width}}  {ours:>9.4f}  {theirs:>9.4f}  {ours - theirs:>+6.4f} (difference)")
        else:
            ratio = ours / theirs if theirs > 0 else float("inf")
            print(f"{name:<{width}}  {ours:>9.3f}  {theirs:>9.3f}  {ratio:>6.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="auc,iforest,ensemble,lof,kmeans,dbscan")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for the AUC protocol")
    parser.add_argument("--ensemble-seeds", type=int, default=1,
                        help="seeds 0..N-1 for the ensemble, each side by side with scikit-learn's on the same seed")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic Isolation Forest set")
    parser.add_argument("--repeat", type=int, default=1, help="runs per timing (median)")
    parser.add_argument("--data", default=DATA, help="NSL-KDD folder (KDDTrain+.txt, KDDTest+.txt, columns.txt)")
    parser.add_argument("--keep", help="keep the scratch database in this folder")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if ({"auc", "ensemble", "lof"} & parts) and not os.path.exists(os.path.join(args.data, "KDDTrain+.txt")):
        sys.exit(f"NSL-KDD not found in {args.data}: pass --data DIR, or --only iforest,kmeans,dbscan")

    setup()
    work = args.keep or tempfile.mkdtemp(prefix="netlens-analysis-bench-")
    os.makedirs(work, exist_ok=True)
    nl = Netlens(os.path.join(work, "bench.duckdb"))
    results, kdd_timings = [], []
    try:
        if "auc" in parts or "iforest" in parts:
            print("NSL-KDD: netlens and scikit-learn Isolation Forests ...", file=sys.stderr)
            bench_auc(nl, args.data, list(range(args.seeds if "auc" in parts else 1)), results, kdd_timings)
        if "iforest" in parts:
            t = {key: statistics.median(run[key] for run in kdd_timings) for key in kdd_timings[0]}
            results.append(("Isolation Forest NSL-KDD (fit 125,973, score 22,544): fit + score (s)",
                            t["netlens_fit"] + t["netlens_score"], t["sk_fit"] + t["sk_score"], "time"))
            results.append(("Isolation Forest NSL-KDD: train + score commands, wall (s)",
                            t["netlens_wall"], t["sk_fit"] + t["sk_score"], "time"))
            print(f"Isolation Forest on {args.rows:,} x 10 synthetic rows ...", file=sys.stderr)
            bench_iforest_synthetic(nl, work, args.rows, args.repeat, results)
        if "ensemble" in parts:
            print("NSL-KDD: netlens ensemble and scikit-learn's four models ...", file=sys.stderr)
            for seed in range(args.ensemble_seeds):
                bench_ensemble(nl, args.data, seed, results, f", seed {seed}" if args.ensemble_seeds > 1 else "")
        if "lof" in parts:
            print("NSL-KDD: netlens and scikit-learn LOF ...", file=sys.stderr)
            bench_lof(nl, args.data, 0, args.repeat, results)
        if "kmeans" in parts or "dbscan" in parts:
            scaled = blobs(work, nl)
            if "kmeans" in parts:
                print("K-Means ...", file=sys.stderr)
                bench_kmeans(nl, scaled, args.repeat, results)
            if "dbscan" in parts:
                print("DBSCAN ...", file=sys.stderr)
                bench_dbscan(nl, scaled, args.repeat, results)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if "auc" not in parts:
        results = [r for r in results if r[3] != "auc" or ": " in r[0]]
    report(results)


if __name__ == "__main__":
    main()
