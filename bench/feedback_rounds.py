#!/usr/bin/env python3
"""Precision@k rising with analysts' feedback (issue 19), on NSL-KDD (../shared/data/nsl-kdd) or
on the demo's labelled table (`netlens demo`'s demo_traffic).

Usage: bench/feedback_rounds.py NETLENS [--data kdd|demo] [--stage iforest] [--k 100] [--rounds 5]
                                [--weight N] [--train normal|all] [--seed 1] [--attack-share 0.05]
                                [--demo-rows 20000] [--no-control]

A simulated analyst: fit STAGE on KDDTrain+ (its normal rows, or with --train all every row,
unlabelled), score the test rows (KDDTest+'s normal rows and a seeded sample of its attacks, 5 %
of the rows by default: alerts are rare in real traffic, and on all of KDDTest+, 57 % attacks,
the top 100 is all attacks before any feedback); each round the analyst takes the k highest-scoring test rows not
labelled yet, marks each from the ground truth (`netlens feedback anomaly_scores ROW --run R
--true-positive|--false-positive`), and `netlens retrain` refits the model with the marks.
The test rows with an odd id are the analyst's queue; those with an even id are never
labelled, and each round reports on them: precision@k (share of attacks among their k highest
scores) and ROC-AUC; round 0 is the model before any feedback. The same rounds with `--set feedback=false` are the control: the same
retrains, the marks ignored.

--data demo: `netlens demo --traffic-rows N` (seed 42) makes demo_traffic (15 % anomalies of
eight types, label 0/1); rows whose hash(id) is even are the training rows (kdd_train: every one
with --train all, the normal ones by default), the others the test rows (their normal rows and a
seeded share of their anomalies, 5 % by default, as for NSL-KDD); features exclude label and
anomaly_type. The same analyst, marks, retrains and measure as above.
"""
import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "nsl-kdd"))


def run(nl, db, *args):
    out = subprocess.run([nl, "--db", db, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"netlens {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def sql(nl, db, text):
    rows = list(csv.reader(io.StringIO(run(nl, db, "--format", "csv", "-c", text))))
    return rows[1:]


def rounds(nl, db, a, feedback):
    model = f"fb_{a.stage}_{'on' if feedback else 'off'}"
    source = "kdd_train_normal" if a.train == "normal" else "kdd_train"
    sets = ["--set", f"feedback={'true' if feedback else 'false'}"]
    if a.weight:
        sets += ["--set", f"feedback_weight={a.weight}"]
    run(nl, db, "train", a.stage, "--on", source, "--exclude", a.exclude, "--id", "id",
        "--seed", str(a.seed), "--model", model, *sets)
    labelled = set()
    out = []
    for r in range(a.rounds + 1):
        run(nl, db, "score", model, "--on", "kdd_test", "--label", "label", "--id", "id")
        run_id = sql(nl, db, f"SELECT max(run_id) FROM model_runs WHERE model = '{model}' AND kind = 'score'")[0][0]
        scored = sql(nl, db, f"""SELECT a.row_id, a.id, {a.attack} AS attack, a.score
            FROM anomaly_scores a JOIN kdd_test t ON CAST(t.id AS VARCHAR) = a.id
            WHERE a.run_id = {run_id} ORDER BY a.score DESC, a.row_id""")
        # Odd ids are the analyst's queue, even ids are never labelled: the measure.
        held_out = [s for s in scored if int(s[1]) % 2 == 0]
        top = held_out[: a.k]
        precision = sum(s[2] == "true" for s in top) / len(top)
        out.append((r, precision, auc(held_out), len(labelled)))
        if r == a.rounds:
            break
        queue = [s for s in scored if int(s[1]) % 2 == 1 and s[1] not in labelled]
        for row_id, rid, attack, _ in queue[: a.k]:
            mark = "--true-positive" if attack == "true" else "--false-positive"
            run(nl, db, "feedback", "anomaly_scores", row_id, "--run", run_id, mark)
            labelled.add(rid)
        run(nl, db, "retrain", model)
    return out


def auc(rows):
    """ROC-AUC by the rank formula, ties counted half."""
    ordered = sorted(rows, key=lambda s: float(s[3]))
    ranks, i = [0.0] * len(ordered), 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][3] == ordered[i][3]:
            j += 1
        for m in range(i, j + 1):
            ranks[m] = (i + j) / 2 + 1
        i = j + 1
    pos = [rk for rk, s in zip(ranks, ordered) if s[2] == "true"]
    p, n = len(pos), len(ordered) - len(pos)
    return (sum(pos) - p * (p + 1) / 2) / (p * n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("netlens")
    ap.add_argument("--stage", default="iforest")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--weight", type=int, default=0)
    ap.add_argument("--train", choices=["normal", "all"], default="normal")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--attack-share", type=float, default=0.05)
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--data", choices=["kdd", "demo"], default="kdd")
    ap.add_argument("--demo-rows", type=int, default=20000)
    a = ap.parse_args()
    db = os.path.join(tempfile.mkdtemp(), "kdd.duckdb")
    if a.data == "demo":
        demo_tables(a, db)
    else:
        kdd_tables(a, db)
    started = time.time()
    with_marks = rounds(a.netlens, db, a, True)
    control = with_marks if a.no_control else rounds(a.netlens, db, a, False)
    share = sql(a.netlens, db, f"SELECT count(*), avg(({a.attack})::INT) FROM kdd_test t")[0]
    print(f"data={a.data} stage={a.stage} train={a.train} k={a.k} weight={a.weight or 'default'} seed={a.seed} "
          f"test rows {share[0]}, attack share {float(share[1]):.3f} ({time.time() - started:.0f} s)")
    print("round  labelled  held-out precision@k (feedback)  (ignored)  ROC-AUC (feedback)  (ignored)")
    for (r, p, auc_on, n), (_, p_off, auc_off, _) in zip(with_marks, control):
        print(f"{r:5}  {n:8}  {p:22.2f}  {p_off:9.2f}  {auc_on:18.4f}  {auc_off:9.4f}")


def test_sample(a, table, attack):
    """The test rows: all normal ones and a seeded share of the attacks (hash of the id)."""
    return f"""SELECT * FROM {table} t WHERE NOT ({attack})
                 OR hash(id + {a.seed}) % 1000000 < {a.attack_share / (1 - a.attack_share)} * 1000000
                    * (SELECT count(*) FILTER (WHERE NOT ({attack})) / count(*) FILTER (WHERE {attack}) FROM {table} t)"""


def demo_tables(a, db):
    """demo_traffic split by hash(id) into training and test rows (module doc)."""
    a.exclude, a.attack = "label,anomaly_type", "t.label <> 0"
    run(a.netlens, db, "demo", "--quiet", "--hours", "1", "--traffic-rows", str(a.demo_rows))
    run(a.netlens, db, "-c", "CREATE TABLE kdd_train AS SELECT * FROM demo_traffic WHERE hash(id) % 2 = 0",
        "-c", "CREATE TABLE kdd_test_all AS SELECT * FROM demo_traffic WHERE hash(id) % 2 = 1",
        "-c", f"CREATE TABLE kdd_test AS {test_sample(a, 'kdd_test_all', a.attack)}",
        "-c", "CREATE TABLE kdd_train_normal AS SELECT * FROM kdd_train WHERE label = 0")


def kdd_tables(a, db):
    a.exclude, a.attack = "label,difficulty", "t.label <> 'normal'"
    cols = ", ".join(f"'{c.strip()}'" for c in open(os.path.join(DATA, "columns.txt")) if c.strip())
    read = lambda f: f"SELECT row_number() OVER () AS id, * FROM read_csv('{DATA}/{f}', header = false, names = [{cols}], sample_size = -1)"
    # Attacks are rare among real alerts' rows: the test rows are KDDTest+'s normal rows and a
    # seeded share of its attack rows (hash of the row number), so the top k is not all attacks.
    run(a.netlens, db, "-c", f"CREATE TABLE kdd_train AS {read('KDDTrain+.txt')}",
        "-c", f"CREATE TABLE kdd_test_all AS {read('KDDTest+.txt')}",
        "-c", f"CREATE TABLE kdd_test AS {test_sample(a, 'kdd_test_all', a.attack)}",
        "-c", "CREATE TABLE kdd_train_normal AS SELECT * FROM kdd_train WHERE label = 'normal'")


if __name__ == "__main__":
    main()
