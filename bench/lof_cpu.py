#!/usr/bin/env python3
"""CPU seconds (time.process_time, every thread) of scikit-learn's LocalOutlierFactor(n_neighbors=20,
novelty=True) on NSL-KDD as bench/analysis_bench.py --only lof fits it: fit on a 20 000-row
subsample of the normal training rows, score_samples of the test rows, then of the training rows
too (the work netlens's `train lof` does to place its threshold)."""
import os, sys, time
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analysis_bench as ab
from sklearn.neighbors import LocalOutlierFactor

cols, train, test = ab.kdd_frames(ab.DATA)
a, b = ab.kdd_matrices(cols, train[train.label == "normal"], test)
rng = np.random.default_rng(0)
c0, w0 = time.process_time(), time.perf_counter()
lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(a[rng.choice(len(a), 20000, replace=False)])
lof.score_samples(b)
c1, w1 = time.process_time(), time.perf_counter()
lof.score_samples(a)
c2, w2 = time.process_time(), time.perf_counter()
print(f"scikit-learn fit + score test rows: cpu {c1 - c0:.2f}s wall {w1 - w0:.2f}s; "
      f"scoring the {len(a)} training rows too: cpu {c2 - c0:.2f}s wall {w2 - w0:.2f}s")
