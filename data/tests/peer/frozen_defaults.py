"""Frozen-defaults check of the generator (data/README.md).

On the partners of the four archetypes meant for clustering, scikit-learn
KMeans (k = 4) on the transformed features must reach an adjusted Rand index
between 0.70 and 0.95 against the true archetypes: overlapping, not hopeless.

Usage: frozen_defaults.py GENERATED_DIR PERIOD
Prints one JSON line with the ARI; exits 1 when it is out of range.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

# The default transform (data/README.md): log1p on skewed columns, median
# imputation, standardisation.
LOG1P = [
    "revenue_12m", "deal_registrations_12m", "certifications", "training_hours_12m",
    "portal_logins_90d", "tenure_months", "active_customers", "days_since_last_deal",
]
PLAIN = ["revenue_growth", "win_rate", "mdf_utilisation", "product_lines_sold"]
CLUSTERED = ["top_performer", "growth_partner", "steady_contributor", "low_engagement"]


def transformed(partners):
    columns = []
    for name in LOG1P + PLAIN:
        values = partners.column(name).to_numpy(zero_copy_only=False).astype(float)
        if name in LOG1P:
            values = np.log1p(np.clip(values, 0, None))
        median = np.nanmedian(values)
        values = np.where(np.isnan(values), median, values)
        sd = values.std()
        columns.append((values - values.mean()) / (sd if sd > 0 else 1.0))
    return np.column_stack(columns)


def main():
    root, period = sys.argv[1], sys.argv[2]
    partners = pq.read_table(f"{root}/periods/{period}/partners.parquet")
    truth = pq.read_table(f"{root}/truth/{period}/archetypes.parquet")
    by_id = dict(zip(truth.column("partner_id").to_pylist(), truth.column("archetype").to_pylist()))
    archetypes = np.array([by_id[i] for i in partners.column("partner_id").to_pylist()])
    keep = np.isin(archetypes, CLUSTERED)
    x = transformed(partners)[keep]
    labels = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x)
    ari = adjusted_rand_score(archetypes[keep], labels)
    result = {"ari": round(float(ari), 4), "n": int(keep.sum()), "low": 0.70, "high": 0.95}
    print(json.dumps(result))
    sys.exit(0 if 0.70 <= ari <= 0.95 else 1)


if __name__ == "__main__":
    main()
