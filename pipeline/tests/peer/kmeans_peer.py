"""scikit-learn's k-means on a matrix written by the Rust tests.

Usage: kmeans_peer.py MATRIX.parquet K N_INIT SEED [SEED ...] [--labels TRUTH.parquet]

MATRIX.parquet holds one Float64 column per feature (f0, f1, ...), already
scaled by segtune. Prints one JSON line: the inertia (a sum) per seed and,
with --labels (a Parquet file with a `label` column, one row per matrix row),
the adjusted Rand index of each seed's labels against them.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


def main():
    args = sys.argv[1:]
    truth = None
    if "--labels" in args:
        index = args.index("--labels")
        truth = pq.read_table(args[index + 1]).column("label").to_numpy()
        args = args[:index] + args[index + 2:]
    path, k, n_init, seeds = args[0], int(args[1]), int(args[2]), [int(s) for s in args[3:]]
    table = pq.read_table(path)
    x = np.column_stack([table.column(name).to_numpy() for name in table.column_names])
    result = {"inertia": [], "ari": []}
    for seed in seeds:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=seed, algorithm="lloyd", tol=1e-4, max_iter=300).fit(x)
        result["inertia"].append(float(model.inertia_))
        if truth is not None:
            result["ari"].append(float(adjusted_rand_score(truth, model.labels_)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
