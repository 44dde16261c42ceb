"""statsmodels on the regressions segtune fitted (its --dump-design output).

Usage: lift_peer.py DESIGN.parquet LIFT.parquet

For every cell in DESIGN.parquet (outcome, segment_id, scheme_id, y and the
design's columns, null where the cell does not use one), fits OLS with HC2
errors in statsmodels and compares the `treated` coefficient and its
standard error with segtune's `lift` and `se` in LIFT.parquet. Also computes
Benjamini-Hochberg q-values per outcome with statsmodels' multipletests and
compares them with segtune's `q_value`, and, for cells with at least 1,000
partners per arm fitted with a covariate, the pooled within-arm R^2 of y on
the covariate columns (rho^2). Prints one JSON line.
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

DESIGN_COLUMNS = ["const", "treated", "x_c", "missing_c", "treated_x_c", "treated_missing_c"]


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def pooled_within_arm_r2(y, x, treated):
    """R^2 of y on x within each arm, pooled: 1 - SSR / SST over both arms."""
    ssr = sst = 0.0
    for arm in (treated == 1.0, treated == 0.0):
        ya, xa = y[arm], x[arm]
        ya = ya - ya.mean()
        xa = xa - xa.mean(axis=0)
        beta, *_ = np.linalg.lstsq(xa, ya, rcond=None)
        ssr += float(((ya - xa @ beta) ** 2).sum())
        sst += float((ya ** 2).sum())
    return 1.0 - ssr / sst


def main():
    design = pq.read_table(sys.argv[1]).to_pandas()
    lift = pq.read_table(sys.argv[2]).to_pandas()
    estimates = {
        (r.outcome, int(r.segment_id), r.scheme_id): r for r in lift.itertuples(index=False)
    }
    cells = []
    for (outcome, segment, scheme), cell in design.groupby(
        ["outcome", "segment_id", "scheme_id"], sort=True
    ):
        columns = [c for c in DESIGN_COLUMNS if cell[c].notna().all()]
        x = cell[columns].to_numpy(dtype=float)
        y = cell["y"].to_numpy(dtype=float)
        fit = sm.OLS(y, x).fit(cov_type="HC2")
        ours = estimates[(outcome, int(segment), scheme)]
        t = columns.index("treated")
        entry = {
            "outcome": outcome,
            "segment_id": int(segment),
            "scheme_id": scheme,
            "columns": columns,
            "coef": float(fit.params[t]),
            "se": float(fit.bse[t]),
            "coef_rel_err": relative(ours.lift, float(fit.params[t])),
            "se_rel_err": relative(ours.se, float(fit.bse[t])),
            "n_treated": int(ours.n_treated),
            "n_holdout": int(ours.n_holdout),
        }
        covariates = [c for c in ("x_c", "missing_c") if c in columns]
        if covariates and min(ours.n_treated, ours.n_holdout) >= 1000:
            r2 = pooled_within_arm_r2(y, cell[covariates].to_numpy(dtype=float), cell["treated"].to_numpy())
            entry["rho2"] = r2
            entry["se_ratio"] = float(ours.se / ours.se_unadjusted)
            entry["expected_ratio"] = float(np.sqrt(1.0 - r2))
        cells.append(entry)
    bh = []
    for outcome, rows in lift.groupby("outcome", sort=True):
        rows = rows[rows["p_value"].notna()]
        if len(rows) == 0:
            continue
        _, q, _, _ = multipletests(rows["p_value"].to_numpy(), method="fdr_bh")
        for ours, theirs in zip(rows["q_value"].to_numpy(), q):
            bh.append({"outcome": outcome, "ours": float(ours), "theirs": float(theirs)})
    print(json.dumps({"cells": cells, "bh": bh}))


if __name__ == "__main__":
    main()
