"""The peer pipeline: what a data team would write without segtune.

It does the steps of ``segtune run`` on a configuration written by
``segtune generate`` (or any configuration using the same keys), with the
same settings, in pyarrow + pandas + scikit-learn + numpy + scipy:

1. **ingest**: ``pyarrow.parquet.read_table`` of the partners, assignments and
   outcomes, only the columns needed (features, the revenue column, columns
   the rules read), into pandas; assignments and outcomes aligned to the
   partner rows.
2. **rules**: each ``[[rules]]`` condition through ``DataFrame.eval``
   (``&&``/``||``/``!`` spelt ``and``/``or``/``not``), first match wins.
3. **features**: per numeric feature its transform (``log1p`` of x clipped at
   0, winsorising, rank), median imputation (pandas), ``StandardScaler`` (or
   ``RobustScaler``), the configured weights, one-hot
   columns for ``[features.one-hot]``; fitted on the clustered partners only.
4. **segment**: the k sweep (``k-min..=k-max``): per k ``KMeans(lloyd,
   k-means++, n_init=restarts, max_iter, tol)``; ``silhouette_score`` on a
   seeded sample of ``silhouette-sample`` rows (the same rows for every k);
   ``calinski_harabasz_score`` and ``davies_bouldin_score`` on all rows; the
   smallest segment's share; stability = mean ``adjusted_rand_score`` between
   the full fit's labels and a one-start k-means++ refit on each of
   ``bootstrap`` seeded resamples (with replacement) of ``bootstrap-size``
   rows. The same rule picks k: best silhouette among the k whose smallest
   share and stability pass the gates, ties to the smaller k. Then segments
   are numbered largest first, each partner gets its distance, second-nearest
   segment and margin, ids (rule segments first, by rule order) and names
   (the same naming rules on the centroids, else "Segment <id>: high x, low
   y").
5. **profiles**: per segment size, shares, mean and median of each feature
   (pandas ``groupby``).
6. **evaluate**: per outcome, stratum (``assignments.segment_id`` when it is
   set, else this run's segment: ``post_hoc``) and scheme against the
   stratum's holdout: Lin's regression ``y ~ 1 + T + Xc + T*Xc`` (Xc the
   pre-period covariate centred and scaled on the cell; missing covariates at
   0 with a centred missing indicator and its interaction when each arm has at
   least two), by ``np.linalg.lstsq``, with an explicit HC2 sandwich; the
   difference in means (HC2 = Welch) without a covariate; normal intervals,
   MDE, money; Benjamini-Hochberg q-values per outcome
   (``scipy.stats.false_discovery_control``); fewer than ``min-n-per-arm``
   partners in an arm gives ``insufficient_n``.
7. **tune**: per segment and scheme a normal posterior of net value per
   treated partner (the scheme's pooled DerSimonian-Laird distribution across
   segments, its variance divided by ``forgetting``, updated with the cell's
   evidence), the probability of being best from ``draws`` seeded joint draws,
   projected onto the floor/cap bounds (bisection).
8. **draw**: per segment, members in partner-id order, a seeded shuffle, the
   first ``round(holdout-share x n)`` held out, the rest dealt to the schemes
   by largest remainder.
9. **write**: ``segments.parquet``, ``segment_profiles.parquet``,
   ``lift.parquet``, ``weights.parquet`` + ``weights.json``,
   ``assignments_next.parquet`` (pyarrow).

Each stage is timed with ``time.perf_counter``; the script prints one JSON
line on stdout: ``{"stages": {...}, "total": s, "k": k, "partners": n, ...}``
with the stage names of segtune's manifest (``timings.seconds``).

Known differences from segtune (none changes the amount of work):

- Random streams differ (NumPy's PCG64 and scikit-learn's ``random_state``
  against segtune's ChaCha8), so k-means starts, the silhouette sample, the
  bootstrap resamples and the draw differ: the scores, and so the chosen k,
  can differ, and post-hoc lift strata (this run's segments) then differ too.
  ``--strata-from RUN_DIR`` takes the strata from a segtune run's
  ``segments.parquet`` instead, so that the lift cells can be compared one to
  one (a check, not a benchmark setting).
- Rule conditions use pandas' ``eval``: a comparison with a missing value is
  False, except ``!=``, which is True (segtune: a missing value never
  matches). The generated rules use ``<``, ``>`` and ``==`` only.
- ``rank`` is the percentile rank among the fitted rows (segtune: the position
  on a 1001-point quantile grid).
- No previous run (continuity of ids, migration, the randomisation check, a
  previous posterior, max step): the generated program is a first run.
- segtune also validates every input (unique ids, types, nulls) and writes
  power, randomisation, migration, posterior, model and report files, and
  hashes its inputs (stages ``power``, ``hash inputs``, ``report``); the peer
  does none of that.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    pairwise_distances,
    silhouette_score,
)
from sklearn.utils import check_random_state
from sklearn.preprocessing import RobustScaler, StandardScaler
from threadpoolctl import threadpool_limits

HOLDOUT = "holdout"
#: Naming rules used when the configuration has no ``[[names]]`` (segtune's defaults).
DEFAULT_NAMES: list[tuple[str, str]] = [
    ("Top performers", "revenue_12m > 0.8"),
    ("Growth partners", "revenue_growth > 0.6"),
    ("Low engagement", "portal_logins_90d < -0.4"),
    ("Steady contributors", "tenure_months > 0.2 && revenue_12m > -0.2"),
]
#: Leverages at or above this count as 1 (the design is degenerate).
MAX_LEVERAGE = 1.0 - 1e-10
#: Evidence this many standard deviations from the prior marks a change.
CHANGE_Z = 2.0
#: How much a detected change widens the prior.
CHANGE_INFLATION = 10.0
Z_975 = float(stats.norm.ppf(0.975))
Z_80 = float(stats.norm.ppf(0.8))


# --------------------------------------------------------------------------- settings


@dataclass
class Outcome:
    """One ``[[outcome]]``."""

    name: str
    covariate: str | None
    value_per_unit: float


@dataclass
class Rule:
    """One ``[[rules]]`` (or a naming rule: ``segment_name`` is then the name)."""

    name: str
    segment_name: str
    condition: str


@dataclass
class Settings:
    """The resolved configuration, with segtune's documented defaults."""

    base: Path
    period: str
    target_period: str
    seed: int
    margin_rate: float
    partners: Path
    assignments: Path | None
    outcomes: Path | None
    numeric: list[str] | None
    categorical: list[str]
    revenue: str
    scaling: str
    missing_indicators: bool
    transforms: dict[str, Any]
    weights: dict[str, float]
    one_hot: dict[str, float]
    k_min: int
    k_max: int
    k_fixed: int | None
    fallback_k: int | None
    min_share: float
    min_stability: float
    silhouette_sample: int
    bootstrap: int
    bootstrap_size: int
    restarts: int
    max_iterations: int
    tolerance: float
    min_n_per_arm: int
    fdr: float
    tune_outcome: str | None
    schemes: list[str] | None
    floor: float
    holdout_share: float
    forgetting: float
    draws: int
    caps: dict[str, float]
    pinned: dict[str, float]
    off: list[str]
    initial_weights: dict[str, float]
    outcomes_list: list[Outcome] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    names: list[tuple[Rule, bool]] = field(default_factory=list)


def next_period(period: str) -> str | None:
    """The period after ``YYYY-Qn`` or ``YYYY-MM``; None for other labels."""
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", period):
        year, quarter = int(m[1]), int(m[2])
        return f"{year + quarter // 4}-Q{quarter % 4 + 1}"
    if m := re.fullmatch(r"(\d{4})-(\d{2})", period):
        year, month = int(m[1]), int(m[2])
        return f"{year + month // 12}-{month % 12 + 1:02d}"
    return None


def load_settings(config: Path) -> Settings:
    """Reads the segtune TOML file and applies segtune's defaults."""
    raw = tomllib.loads(config.read_text())
    base = config.parent
    inputs = raw.get("inputs", {})
    features = raw.get("features", {})
    segments = raw.get("segments", {})
    evaluation = raw.get("evaluation", {})
    tuning = raw.get("tuning", {})
    margin_rate = float(raw.get("margin-rate", 0.30))
    period = raw["period"]

    def path(key: str) -> Path | None:
        return base / inputs[key] if key in inputs else None

    outcomes = [
        Outcome(o["name"], o.get("covariate"), float(o.get("value-per-unit", margin_rate)))
        for o in raw.get("outcome", [])
    ]
    rules = [Rule(r["name"], r.get("segment-name", r["name"]), r["condition"]) for r in raw.get("rules", [])]
    if "names" in raw:
        names = [(Rule(n["name"], n["name"], n["when"]), True) for n in raw["names"]]
    else:
        names = [(Rule(name, name, when), False) for name, when in DEFAULT_NAMES]
    partners = path("partners")
    if partners is None:
        raise SystemExit("inputs.partners is required")
    return Settings(
        base=base,
        period=period,
        target_period=raw.get("target-period") or next_period(period) or "",
        seed=int(raw.get("seed", 0)),
        margin_rate=margin_rate,
        partners=partners,
        assignments=path("assignments"),
        outcomes=path("outcomes"),
        numeric=features.get("numeric"),
        categorical=features.get("categorical", []),
        revenue=features.get("revenue", "revenue_12m"),
        scaling=features.get("scaling", "standard"),
        missing_indicators=bool(features.get("missing-indicators", False)),
        transforms=features.get("transforms", {}),
        weights=features.get("weights", {}),
        one_hot=features.get("one-hot", {}),
        k_min=int(segments.get("k-min", 3)),
        k_max=int(segments.get("k-max", 6)),
        k_fixed=segments.get("k"),
        fallback_k=segments.get("fallback-k"),
        min_share=float(segments.get("min-share", 0.02)),
        min_stability=float(segments.get("min-stability", 0.8)),
        silhouette_sample=int(segments.get("silhouette-sample", 10_000)),
        bootstrap=int(segments.get("bootstrap", 20)),
        bootstrap_size=int(segments.get("bootstrap-size", 20_000)),
        restarts=int(segments.get("restarts", 3)),
        max_iterations=int(segments.get("max-iterations", 300)),
        tolerance=float(segments.get("tolerance", 1e-4)),
        min_n_per_arm=int(evaluation.get("min-n-per-arm", 30)),
        fdr=float(evaluation.get("fdr", 0.10)),
        tune_outcome=evaluation.get("tune-outcome") or (outcomes[0].name if outcomes else None),
        schemes=tuning.get("schemes"),
        floor=float(tuning.get("floor", 0.05)),
        holdout_share=float(tuning.get("holdout-share", 0.10)),
        forgetting=float(tuning.get("forgetting", 0.5)),
        draws=int(tuning.get("draws", 4000)),
        caps=tuning.get("caps", {}),
        pinned=tuning.get("pinned", {}),
        off=tuning.get("off", []),
        initial_weights=tuning.get("initial-weights", {}),
        outcomes_list=outcomes,
        rules=rules,
        names=names,
    )


# --------------------------------------------------------------------------- conditions

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def condition_columns(condition: str) -> set[str]:
    """Identifiers a rule condition reads (string literals excluded)."""
    return set(_IDENTIFIER.findall(re.sub(r'"[^"]*"', "", condition)))


def to_pandas_expr(condition: str) -> str:
    """segtune's rule syntax (``&& || !``) in pandas ``eval`` syntax."""
    expr = condition.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", expr)


def evaluate_condition(frame: pd.DataFrame, condition: str) -> np.ndarray:
    """A boolean mask: rows of ``frame`` matching the condition."""
    result = frame.eval(to_pandas_expr(condition))
    if np.isscalar(result):
        return np.full(len(frame), bool(result))
    return np.asarray(result, dtype=bool)


# --------------------------------------------------------------------------- stages


@dataclass
class Inputs:
    """The input tables, aligned to the partner rows."""

    partners: pd.DataFrame
    numeric: list[str]
    assignments: pd.DataFrame | None  # with column ``row`` (partner row)
    outcomes: pd.DataFrame | None  # one row per partner, partner order


def schema_of(path: Path) -> pa.Schema:
    """The schema of a Parquet file or of a folder of part files."""
    return pq.ParquetDataset(path).schema


def ingest(settings: Settings) -> Inputs:
    """Reads only the needed columns and aligns assignments and outcomes to partners."""
    numeric = settings.numeric
    if numeric is None:
        schema = schema_of(settings.partners)
        numeric = [
            f.name
            for f in schema
            if f.name != "partner_id" and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        ]
    known = set(numeric) | set(settings.categorical)
    ruled = set().union(*(condition_columns(r.condition) for r in settings.rules)) & known
    wanted = ["partner_id", *numeric]
    # Every configured categorical column is read, as segtune reads them.
    wanted += [
        c for c in [settings.revenue, *sorted(ruled), *settings.one_hot, *settings.categorical] if c not in wanted
    ]
    partners = pq.read_table(settings.partners, columns=wanted).to_pandas()
    numeric_set = set(numeric) | {settings.revenue}
    for column in numeric_set & set(partners.columns):
        partners[column] = partners[column].astype("float64")
    index = pd.Index(partners["partner_id"])

    assignments = None
    if settings.assignments is not None:
        columns = ["partner_id", "scheme_id", "cost"]
        if "segment_id" in schema_of(settings.assignments).names:
            columns.append("segment_id")
        assignments = pq.read_table(settings.assignments, columns=columns).to_pandas()
        assignments["row"] = index.get_indexer(assignments["partner_id"])
        assignments = assignments[assignments["row"] >= 0].reset_index(drop=True)

    outcomes = None
    if settings.outcomes is not None and settings.outcomes_list:
        columns = ["partner_id"]
        for o in settings.outcomes_list:
            columns += [c for c in (o.name, o.covariate) if c and c not in columns]
        table = pq.read_table(settings.outcomes, columns=columns).to_pandas()
        outcomes = table.set_index("partner_id").reindex(index).astype("float64").reset_index(drop=True)
    return Inputs(partners=partners, numeric=list(numeric), assignments=assignments, outcomes=outcomes)


def apply_rules(settings: Settings, partners: pd.DataFrame) -> np.ndarray:
    """The index of the first rule each partner matches, -1 for none."""
    rule_of = np.full(len(partners), -1, dtype=np.int64)
    for index, rule in enumerate(settings.rules):
        matches = evaluate_condition(partners, rule.condition) & (rule_of < 0)
        rule_of[matches] = index
    return rule_of


@dataclass
class Features:
    """The scaled matrix of the clustered partners."""

    names: list[str]
    matrix: np.ndarray


def build_features(settings: Settings, partners: pd.DataFrame, numeric: list[str], rows: np.ndarray) -> Features:
    """Transforms, imputes, scales and weights the features of ``rows``."""
    raw = partners[numeric].to_numpy(dtype=np.float64)[rows]
    names = list(numeric)
    for j, column in enumerate(numeric):
        transform = settings.transforms.get(column, "none")
        values = raw[:, j]
        if transform == "log1p":
            raw[:, j] = np.log1p(np.clip(values, 0.0, None))
        elif transform == "rank":
            ranked = pd.Series(values).rank(pct=True).to_numpy()
            raw[:, j] = ranked
        elif isinstance(transform, dict) and "winsorise" in transform:
            low, high = np.nanquantile(values, transform["winsorise"])
            raw[:, j] = np.clip(values, low, high)
    missing = np.isnan(raw)
    # Median imputation: pandas' median is several times faster than
    # SimpleImputer(strategy="median") at 1M rows, with the same result.
    frame = pd.DataFrame(raw, copy=False)
    imputed = frame.fillna(frame.median()).to_numpy()
    scaler = RobustScaler() if settings.scaling == "robust" else StandardScaler()
    matrix = scaler.fit_transform(imputed)
    weights = np.array([float(settings.weights.get(c, 1.0)) for c in numeric])
    if np.any(weights != 1.0):
        matrix *= weights
    blocks = [matrix]
    if settings.missing_indicators:
        with_missing = np.flatnonzero(missing.any(axis=0))
        blocks.append(missing[:, with_missing] * weights[with_missing])
        names += [f"{numeric[j]}_missing" for j in with_missing]
    for column, weight in settings.one_hot.items():
        dummies = pd.get_dummies(partners[column].iloc[rows], prefix=column, prefix_sep="=", dtype=np.float64)
        blocks.append(dummies.to_numpy() * float(weight))
        names += list(dummies.columns)
    if len(blocks) > 1:
        matrix = np.hstack(blocks)
    return Features(names=names, matrix=np.ascontiguousarray(matrix))


@dataclass
class KScore:
    """The scores of one k."""

    k: int
    inertia: float
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    smallest_share: float
    stability: float
    passed: bool = False


@dataclass
class Segmentation:
    """Every partner's segment and the segments' table."""

    segment_id: np.ndarray  # per partner row
    segment_name: np.ndarray
    source: np.ndarray
    distance: np.ndarray  # NaN for rule segments
    second_segment_id: np.ndarray  # 0 = none (masked on write)
    margin: np.ndarray
    segments: pd.DataFrame  # segment_id, segment_name, source, size (in order)
    k: int
    scores: list[KScore]


def sweep(settings: Settings, x: np.ndarray) -> tuple[list[KScore], list[KMeans]]:
    """Fits and scores every candidate k."""
    n = x.shape[0]
    ks = [settings.k_fixed] if settings.k_fixed else list(range(settings.k_min, settings.k_max + 1))
    # The silhouette sample's distances once for every k (the rows
    # silhouette_score(sample_size=..., random_state=seed) would draw), in
    # blocks of 128 MB of working memory (review: computing them per k cost
    # about 3 s, scikit-learn's 1 GB default working memory most of the peak).
    if n > settings.silhouette_sample:
        sample_rows = check_random_state(settings.seed).permutation(n)[: settings.silhouette_sample]
    else:
        sample_rows = np.arange(n)
    with sklearn.config_context(working_memory=128):
        sample_distances = pairwise_distances(x[sample_rows])
    size = min(settings.bootstrap_size, n)
    scores: list[KScore] = []
    fits: list[KMeans] = []
    for k in ks:
        rng = np.random.default_rng([settings.seed, k])
        fit = KMeans(
            n_clusters=k,
            init="k-means++",
            n_init=settings.restarts,
            max_iter=settings.max_iterations,
            tol=settings.tolerance,
            algorithm="lloyd",
            random_state=int(rng.integers(2**31 - 1)),
        ).fit(x)
        labels = fit.labels_
        stabilities = []
        for _ in range(settings.bootstrap):
            rows = rng.integers(0, n, size=size)
            refit = KMeans(
                n_clusters=k,
                init="k-means++",
                n_init=1,
                max_iter=settings.max_iterations,
                tol=settings.tolerance,
                algorithm="lloyd",
                random_state=int(rng.integers(2**31 - 1)),
            ).fit(x[rows])
            stabilities.append(adjusted_rand_score(labels[rows], refit.labels_))
        sizes = np.bincount(labels, minlength=k)
        scores.append(
            KScore(
                k=k,
                inertia=float(fit.inertia_),
                # The same seed gives the same sample rows for every k.
                silhouette=float(silhouette_score(sample_distances, labels[sample_rows], metric="precomputed")),
                calinski_harabasz=float(calinski_harabasz_score(x, labels)),
                davies_bouldin=float(davies_bouldin_score(x, labels)),
                smallest_share=float(sizes.min() / n),
                stability=float(np.mean(stabilities)) if stabilities else math.nan,
            )
        )
        fits.append(fit)
    for score in scores:
        score.passed = score.smallest_share >= settings.min_share and not (score.stability < settings.min_stability)
    return scores, fits


def choose(settings: Settings, scores: list[KScore]) -> int:
    """Index of the chosen k: best silhouette among the k passing the gates, ties to the smaller k."""
    if settings.k_fixed:
        return 0
    passing = [i for i, s in enumerate(scores) if s.passed]
    if passing:
        return max(passing, key=lambda i: (scores[i].silhouette, -scores[i].k))
    if settings.fallback_k is not None:
        return [s.k for s in scores].index(settings.fallback_k)
    table = "\n".join(str(s) for s in scores)
    raise SystemExit(f"no k passes the quality gates:\n{table}")


def name_segments(
    settings: Settings, centroids: np.ndarray, sizes: np.ndarray, features: list[str], ids: list[int]
) -> list[str]:
    """Naming rules on the centroids (largest matching unnamed segment first), else a profile name."""
    profiles = pd.DataFrame(centroids, columns=features)
    names: list[str | None] = [None] * len(ids)
    for rule, configured in settings.names:
        if not configured and not condition_columns(rule.condition) <= set(features):
            continue
        matches = evaluate_condition(profiles, rule.condition)
        candidates = [i for i in range(len(ids)) if matches[i] and names[i] is None]
        if candidates:
            names[max(candidates, key=lambda i: (sizes[i], -i))] = rule.name
    out = []
    for i, name in enumerate(names):
        if name is None:
            centroid = centroids[i]
            top = [j for j in np.argsort(-np.abs(centroid), kind="stable")[:2] if abs(centroid[j]) >= 0.25]
            if top:
                words = ", ".join(
                    f"{'high' if centroid[j] > 0 else 'low'} {features[j].replace('_', ' ')}" for j in top
                )
                name = f"Segment {ids[i]}: {words}"
            else:
                name = f"Segment {ids[i]}: average profile"
        out.append(name)
    return out


def segment(settings: Settings, features: Features, rule_of: np.ndarray) -> Segmentation:
    """The k sweep, the choice of k, and every partner's segment, ids and names."""
    x = features.matrix
    scores, fits = sweep(settings, x)
    chosen = choose(settings, scores)
    fit = fits[chosen]
    # Largest segment first; every partner to its nearest centroid, with the runner-up.
    order = np.argsort(-np.bincount(fit.labels_, minlength=fit.n_clusters), kind="stable")
    centroids = fit.cluster_centers_[order]
    distances = fit.transform(x)[:, order]
    nearest = np.argpartition(distances, 1, axis=1)[:, :2]
    first = np.take_along_axis(distances, nearest, axis=1)
    swap = first[:, 1] < first[:, 0]
    nearest[swap] = nearest[swap][:, ::-1]
    first[swap] = first[swap][:, ::-1]
    labels = nearest[:, 0]
    sizes = np.bincount(labels, minlength=len(order))

    n = len(rule_of)
    rule_ids = list(range(1, len(settings.rules) + 1))
    kmeans_ids = list(range(len(rule_ids) + 1, len(rule_ids) + 1 + len(order)))
    kmeans_names = name_segments(settings, centroids, sizes, features.names, kmeans_ids)
    rule_counts = np.bincount(rule_of[rule_of >= 0], minlength=len(settings.rules))
    rows_segments = [
        (rule_ids[i], r.segment_name, f"rule:{r.name}", int(rule_counts[i]))
        for i, r in enumerate(settings.rules)
        if rule_counts[i] > 0
    ]
    rows_segments += [(kmeans_ids[j], kmeans_names[j], "kmeans", int(sizes[j])) for j in range(len(order))]
    table = pd.DataFrame(rows_segments, columns=["segment_id", "segment_name", "source", "size"])

    segment_id = np.zeros(n, dtype=np.int64)
    clustered = rule_of < 0
    ruled = ~clustered
    segment_id[ruled] = np.asarray(rule_ids)[rule_of[ruled]]
    segment_id[clustered] = np.asarray(kmeans_ids)[labels]
    by_id = table.set_index("segment_id")
    distance = np.full(n, np.nan)
    distance[clustered] = first[:, 0]
    margin = np.full(n, np.nan)
    margin[clustered] = first[:, 1] - first[:, 0]
    second = np.zeros(n, dtype=np.int64)
    second[clustered] = np.asarray(kmeans_ids)[nearest[:, 1]]
    return Segmentation(
        segment_id=segment_id,
        segment_name=by_id["segment_name"].reindex(segment_id).to_numpy(),
        source=by_id["source"].reindex(segment_id).to_numpy(),
        distance=distance,
        second_segment_id=second,
        margin=margin,
        segments=table,
        k=scores[chosen].k,
        scores=scores,
    )


def profiles(settings: Settings, inputs: Inputs, seg: Segmentation) -> pd.DataFrame:
    """Per segment: size, shares, mean and median of each feature in original units."""
    frame = inputs.partners[inputs.numeric].copy()
    frame["segment_id"] = seg.segment_id
    grouped = frame.groupby("segment_id", sort=False)
    means = grouped[inputs.numeric].mean().add_prefix("mean_")
    medians = grouped[inputs.numeric].median().add_prefix("median_")
    revenue = inputs.partners[settings.revenue].groupby(seg.segment_id).sum()
    total_revenue = inputs.partners[settings.revenue].sum()
    out = seg.segments.rename(columns={"size": "n_partners"}).set_index("segment_id")
    out["share_partners"] = out["n_partners"] / len(frame)
    out["share_revenue"] = revenue.reindex(out.index) / total_revenue if total_revenue != 0 else np.nan
    interleaved = [c for f in inputs.numeric for c in (f"mean_{f}", f"median_{f}")]
    out = out.join(means).join(medians)
    return out[["segment_name", "source", "n_partners", "share_partners", "share_revenue", *interleaved]].reset_index()


def ols_hc2(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """OLS by ``lstsq`` with HC2 errors; None when singular or a leverage is 1."""
    try:
        bread = np.linalg.inv(x.T @ x)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(bread)):
        return None
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    residuals = y - x @ beta
    leverage = np.einsum("ij,jk,ik->i", x, bread, x)
    if np.any(np.isnan(leverage)) or np.any(leverage >= MAX_LEVERAGE):
        return None
    meat = (x * (residuals**2 / (1.0 - leverage))[:, None]).T @ x
    covariance = bread @ meat @ bread
    return beta, np.sqrt(np.clip(np.diag(covariance), 0.0, None)), residuals


def lin_design(yt: np.ndarray, xt: np.ndarray | None, yh: np.ndarray, xh: np.ndarray | None, limit: int) -> tuple[np.ndarray, int]:
    """Design of a cell: 0 no covariate, 1 centred covariate, 2 plus missing indicator (at most ``limit``)."""
    nt, nh = len(yt), len(yh)
    treated = np.concatenate([np.ones(nt), np.zeros(nh)])
    columns = [np.ones(nt + nh), treated]
    use = 0
    if limit > 0 and xt is not None and xh is not None:
        ot, oh = xt[~np.isnan(xt)], xh[~np.isnan(xh)]
        if len(ot) >= 2 and len(oh) >= 2 and np.ptp(ot) > 0 and np.ptp(oh) > 0:
            observed = np.concatenate([ot, oh])
            x = np.concatenate([xt, xh])
            missing = np.isnan(x)
            centred = np.where(missing, 0.0, (x - observed.mean()) / observed.std())
            use = 1
            if limit == 2 and (nt - len(ot)) >= 2 and (nh - len(oh)) >= 2:
                indicator = missing - missing.mean()
                columns += [centred, indicator, treated * centred, treated * indicator]
                use = 2
            else:
                columns += [centred, treated * centred]
    return np.column_stack(columns), use


def lift_cell(yt: np.ndarray, xt: np.ndarray | None, yh: np.ndarray, xh: np.ndarray | None) -> dict[str, Any] | None:
    """Lin's estimate with HC2 errors (the richest design that fits)."""
    if len(yt) < 2 or len(yh) < 2:
        return None
    y = np.concatenate([yt, yh])
    for limit in (2, 1, 0):
        design, use = lin_design(yt, xt, yh, xh, limit)
        if use != limit and limit != 0:
            continue
        fit = ols_hc2(design, y)
        if fit is not None:
            break
    else:
        return None
    beta, se, _ = fit
    lift, error = (0.0, 0.0) if np.all(y == y[0]) else (float(beta[1]), float(se[1]))
    return {"lift": lift, "se": error, "covariate": ("none", "centred", "centred_with_indicator")[use], "mean_holdout": float(yh.mean())}


def evaluate(settings: Settings, inputs: Inputs, seg: Segmentation, strata_override: np.ndarray | None) -> pd.DataFrame:
    """Lift of every (outcome, stratum, scheme) cell against the stratum's holdout."""
    columns = ["outcome", "segment_id", "scheme_id", "n_treated", "n_holdout", "lift", "lift_rel", "se", "ci_low", "ci_high",
               "p_value", "q_value", "significant", "mde", "incremental_outcome", "cost", "net", "roi", "method",
               "n_treated_missing_outcome", "covariate"]
    a = inputs.assignments
    if a is None or inputs.outcomes is None:
        return pd.DataFrame(columns=columns)
    rows = a["row"].to_numpy()
    post_hoc = False
    if strata_override is not None:
        # Another run's segments: post-hoc strata all the same.
        strata = strata_override[rows].astype(np.float64)
        post_hoc = True
    elif "segment_id" in a and a["segment_id"].notna().any():
        strata = a["segment_id"].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        strata = seg.segment_id[rows].astype(np.float64)
        post_hoc = True
    keep = ~np.isnan(strata)
    cells = pd.DataFrame({"stratum": strata[keep].astype(np.int64), "scheme": a["scheme_id"].to_numpy()[keep]})
    groups = cells.groupby(["stratum", "scheme"], sort=True).indices
    kept_rows = rows[keep]
    cost = a["cost"].to_numpy()[keep]
    schemes = sorted(s for s in a["scheme_id"].unique() if s != HOLDOUT)
    all_strata = sorted(cells["stratum"].unique())
    empty = np.array([], dtype=np.int64)
    out = []
    for outcome in settings.outcomes_list:
        y_all = inputs.outcomes[outcome.name].to_numpy()[kept_rows]
        x_all = inputs.outcomes[outcome.covariate].to_numpy()[kept_rows] if outcome.covariate else None
        first = len(out)
        for stratum in all_strata:
            holdout = groups.get((stratum, HOLDOUT), empty)
            yh_all = y_all[holdout]
            hold_ok = ~np.isnan(yh_all)
            yh = yh_all[hold_ok]
            xh = x_all[holdout][hold_ok] if x_all is not None else None
            for scheme in schemes:
                treated = groups.get((stratum, scheme), empty)
                yt_all = y_all[treated]
                ok = ~np.isnan(yt_all)
                yt = yt_all[ok]
                xt = x_all[treated][ok] if x_all is not None else None
                row: dict[str, Any] = dict.fromkeys(columns)
                row.update(outcome=outcome.name, segment_id=stratum, scheme_id=scheme, n_treated=len(yt), n_holdout=len(yh),
                           cost=float(cost[treated].sum()), n_treated_missing_outcome=int((~ok).sum()), covariate="none")
                estimate = None
                if len(yh) == 0:
                    row["method"] = "no_holdout"
                elif len(yt) < settings.min_n_per_arm or len(yh) < settings.min_n_per_arm:
                    row["method"] = "insufficient_n"
                else:
                    estimate = lift_cell(yt, xt, yh, xh)
                    if estimate is None:
                        row["method"] = "insufficient_n"
                if estimate is not None:
                    lift, se = estimate["lift"], estimate["se"]
                    p = float(2 * stats.norm.sf(abs(lift / se))) if se > 0 else (1.0 if lift == 0 else 0.0)
                    incremental = lift * len(yt)
                    net = outcome.value_per_unit * incremental - row["cost"]
                    row.update(
                        lift=lift, se=se, ci_low=lift - Z_975 * se, ci_high=lift + Z_975 * se, p_value=p,
                        lift_rel=lift / estimate["mean_holdout"] if estimate["mean_holdout"] != 0 else None,
                        mde=(Z_975 + Z_80) * se, incremental_outcome=incremental, net=net,
                        roi=net / row["cost"] if row["cost"] != 0 else None, covariate=estimate["covariate"],
                        method="post_hoc" if post_hoc else ("diff_means" if estimate["covariate"] == "none" else "lin_hc2"),
                    )
                out.append(row)
        block = out[first:]
        estimated = [i for i, r in enumerate(block) if r["p_value"] is not None]
        if estimated:
            q = stats.false_discovery_control([block[i]["p_value"] for i in estimated], method="bh")
            for i, value in zip(estimated, q):
                block[i]["q_value"] = float(value)
                block[i]["significant"] = bool(value <= settings.fdr)
    return pd.DataFrame(out, columns=columns)


def pooled_prior(means: np.ndarray, ses: np.ndarray) -> tuple[float, float] | None:
    """A scheme's random-effects (DerSimonian-Laird) distribution across segments."""
    usable = (ses > 0) & np.isfinite(ses) & np.isfinite(means)
    m, s = means[usable], ses[usable]
    if len(m) < 2:
        return None
    w = 1.0 / s**2
    fixed = np.sum(w * m) / w.sum()
    q = np.sum(w * (m - fixed) ** 2)
    c = w.sum() - np.sum(w**2) / w.sum()
    tau2 = max((q - (len(m) - 1)) / c, 0.0) if c > 0 else 0.0
    random = 1.0 / (s**2 + tau2)
    typical = np.sort(s**2)[len(s) // 2]
    return float(np.sum(random * m) / random.sum()), float(max(tau2, typical) + 1.0 / random.sum())


def update(prior: tuple[float, float] | None, evidence: tuple[float, float] | None, forgetting: float) -> tuple[float, float] | None:
    """Normal posterior: the prior (variance / forgetting) updated with the evidence."""
    if prior is not None:
        prior = (prior[0], prior[1] / forgetting)
    if evidence is not None and not all(map(math.isfinite, evidence)):
        evidence = None
    if evidence is None:
        return prior
    mean, se = evidence
    if prior is None or se <= 0 or prior[1] <= 0:
        return mean, se * se
    p_mean, p_var = prior
    if abs(mean - p_mean) / math.sqrt(p_var + se * se) > CHANGE_Z:
        p_var *= CHANGE_INFLATION
    a, b = 1.0 / p_var, 1.0 / (se * se)
    return (a * p_mean + b * mean) / (a + b), 1.0 / (a + b)


def project(target: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Nearest point to ``target`` with weights summing to 1 within the bounds (bisection on the multiplier)."""
    if low.sum() > 1 + 1e-9 or high.sum() < 1 - 1e-9:
        raise SystemExit("tuning bounds cannot sum to 1")
    lo, hi = float(np.min(target - high)) - 1.0, float(np.max(target - low)) + 1.0
    for _ in range(200):
        nu = (lo + hi) / 2
        if np.clip(target - nu, low, high).sum() > 1:
            lo = nu
        else:
            hi = nu
    return np.clip(target - (lo + hi) / 2, low, high)


def tune(settings: Settings, lift: pd.DataFrame, seg: Segmentation, schemes: list[str]) -> pd.DataFrame:
    """Weights per segment and scheme: posterior, probability best, projection onto the bounds."""
    outcome = next((o for o in settings.outcomes_list if o.name == settings.tune_outcome), None)
    value = outcome.value_per_unit if outcome else 1.0
    cells = lift[(lift["outcome"] == settings.tune_outcome) & lift["lift"].notna()]
    net = value * cells["lift"] - cells["cost"] / (cells["n_treated"].clip(lower=1) + cells["n_treated_missing_outcome"])
    evidence = pd.DataFrame({"segment_id": cells["segment_id"], "scheme_id": cells["scheme_id"], "net": net, "se": value * cells["se"]})
    by_cell = {(int(r.segment_id), r.scheme_id): (float(r.net), float(r.se)) for r in evidence.itertuples()}
    pooled = {
        s: pooled_prior(group["net"].to_numpy(dtype=float), group["se"].to_numpy(dtype=float))
        for s, group in evidence.groupby("scheme_id")
    }
    initial = np.array([settings.initial_weights.get(s, 0.0) if settings.initial_weights else 1.0 for s in schemes])
    initial = initial / initial.sum()
    low = np.array([0.0 if s in settings.off else settings.pinned.get(s, settings.floor) for s in schemes])
    high = np.array([0.0 if s in settings.off else settings.pinned.get(s, max(settings.caps.get(s, 1.0), settings.floor)) for s in schemes])
    out = []
    for segment_id, name in seg.segments.sort_values("segment_id")[["segment_id", "segment_name"]].itertuples(index=False):
        posterior = [update(pooled.get(s), by_cell.get((segment_id, s)), settings.forgetting) for s in schemes]
        present = [i for i, b in enumerate(posterior) if b is not None]
        p_best = np.zeros(len(schemes))
        if present:
            rng = np.random.default_rng([settings.seed, int(segment_id)])
            mean = np.array([posterior[i][0] for i in present])
            sd = np.sqrt(np.clip([posterior[i][1] for i in present], 0, None))
            draws = mean + sd * rng.standard_normal((settings.draws, len(present)))
            p_best[present] = np.bincount(draws.argmax(axis=1), minlength=len(present)) / settings.draws
        held = np.array([b is None for b in posterior])
        free = p_best[~held].sum()
        target = np.where(held | (free <= 0), initial, (1 - initial[held].sum()) * p_best / max(free, 1e-300))
        low_s, high_s = low.copy(), high.copy()
        keep = held & ~np.isin(schemes, settings.off) & ~np.isin(schemes, list(settings.pinned))
        low_s[keep] = high_s[keep] = np.clip(initial[keep], low[keep], high[keep])
        weights = project(target, low_s, high_s)
        for i, scheme in enumerate(schemes):
            reason = (
                f"set to {weights[i]:.2f}: net {posterior[i][0]:.0f} per partner, best in segment with probability {p_best[i]:.2f}"
                if posterior[i] is not None
                else f"set to {weights[i]:.2f}: no evidence yet"
            )
            out.append((settings.target_period, int(segment_id), name, scheme, float(weights[i]), None, settings.holdout_share, reason))
    return pd.DataFrame(out, columns=["target_period", "segment_id", "segment_name", "scheme_id", "weight", "previous_weight", "holdout_share", "reason"])


def largest_remainder(n: int, weights: np.ndarray) -> np.ndarray:
    """Counts summing to ``n`` in proportion to ``weights`` (largest remainder)."""
    total = weights.sum()
    if len(weights) == 0 or total <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = weights / total * n
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def draw(settings: Settings, inputs: Inputs, seg: Segmentation, weights: pd.DataFrame) -> pd.DataFrame:
    """The next period's assignments: per segment a seeded shuffle, holdout first, then schemes by weight."""
    frame = pd.DataFrame({"partner_id": inputs.partners["partner_id"], "segment_id": seg.segment_id})
    frame = frame.sort_values(["segment_id", "partner_id"], kind="stable", ignore_index=True)
    scheme = np.empty(len(frame), dtype=object)
    streak = np.zeros(len(frame), dtype=np.uint32)
    for segment_id, members in frame.groupby("segment_id", sort=True).indices.items():
        w = weights[weights["segment_id"] == segment_id].sort_values("scheme_id")
        order = members[np.random.default_rng([settings.seed, int(segment_id), 7]).permutation(len(members))]
        held = min(int(math.floor(settings.holdout_share * len(members) + 0.5)), len(members))
        scheme[order[:held]] = HOLDOUT
        streak[order[:held]] = 1
        counts = largest_remainder(len(members) - held, w["weight"].to_numpy())
        scheme[order[held:]] = np.repeat(w["scheme_id"].to_numpy(), counts)
    frame["scheme_id"] = scheme
    frame["holdout_streak"] = streak
    return frame


def write(out: Path, inputs: Inputs, seg: Segmentation, profile: pd.DataFrame, lift: pd.DataFrame, weights: pd.DataFrame, nxt: pd.DataFrame) -> None:
    """Writes the run folder's Parquet and JSON files."""
    out.mkdir(parents=True, exist_ok=True)
    clustered = ~np.isnan(seg.distance)
    segments = pa.table({
        "partner_id": pa.array(inputs.partners["partner_id"], pa.string()),
        "segment_id": pa.array(seg.segment_id, pa.uint32()),
        "segment_name": pa.array(seg.segment_name, pa.string()),
        "source": pa.array(seg.source, pa.string()),
        "distance": pa.array(seg.distance, pa.float64(), mask=~clustered),
        "second_segment_id": pa.array(seg.second_segment_id, pa.uint32(), mask=~clustered),
        "margin": pa.array(seg.margin, pa.float64(), mask=~clustered),
        "previous_segment_id": pa.nulls(len(seg.segment_id), pa.uint32()),
    })
    pq.write_table(segments, out / "segments.parquet")
    profile = profile.astype({"segment_id": "uint32", "n_partners": "uint64"})
    pq.write_table(pa.Table.from_pandas(profile, preserve_index=False), out / "segment_profiles.parquet")
    lift = lift.astype({"segment_id": "uint32", "n_treated": "uint64", "n_holdout": "uint64", "n_treated_missing_outcome": "uint64"})
    pq.write_table(pa.Table.from_pandas(lift, preserve_index=False), out / "lift.parquet")
    pq.write_table(pa.Table.from_pandas(weights.astype({"segment_id": "uint32", "previous_weight": "float64"}), preserve_index=False), out / "weights.parquet")
    (out / "weights.json").write_text(weights.to_json(orient="records", indent=1))
    nxt = nxt.astype({"segment_id": "uint32"})
    pq.write_table(pa.Table.from_pandas(nxt, preserve_index=False), out / "assignments_next.parquet")


# --------------------------------------------------------------------------- runner


class Stages:
    """Times stages with ``time.perf_counter``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Times the body as stage ``name``."""
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started


def run(config: Path, out: Path, threads: int | None, strata_from: Path | None) -> dict[str, Any]:
    """Runs every stage; returns the timing and summary record."""
    started = time.perf_counter()
    stages = Stages()
    settings = load_settings(config)
    with stages.time("ingest"):
        inputs = ingest(settings)
    with stages.time("rules"):
        rule_of = apply_rules(settings, inputs.partners)
    with stages.time("features"):
        features = build_features(settings, inputs.partners, inputs.numeric, np.flatnonzero(rule_of < 0))
    with stages.time("segment"):
        seg = segment(settings, features, rule_of)
    with stages.time("profiles"):
        profile = profiles(settings, inputs, seg)
    strata_override = None
    if strata_from is not None:
        # A check, not a benchmark setting: segtune's segments as the strata.
        theirs = pq.read_table(strata_from / "segments.parquet", columns=["partner_id", "segment_id"]).to_pandas()
        strata_override = theirs.set_index("partner_id")["segment_id"].reindex(inputs.partners["partner_id"]).to_numpy(dtype=np.float64)
    with stages.time("evaluate"):
        lift = evaluate(settings, inputs, seg, strata_override)
    with stages.time("tune"):
        if settings.schemes is not None:
            schemes = list(settings.schemes)
        elif inputs.assignments is not None:
            schemes = sorted(s for s in inputs.assignments["scheme_id"].unique() if s != HOLDOUT)
        else:
            raise SystemExit("no schemes to weigh: set tuning.schemes")
        weights = tune(settings, lift, seg, schemes)
    with stages.time("draw"):
        nxt = draw(settings, inputs, seg, weights)
    with stages.time("write"):
        write(out, inputs, seg, profile, lift, weights, nxt)
    total = time.perf_counter() - started
    return {
        "stages": stages.seconds,
        "total": total,
        "k": seg.k,
        "partners": len(inputs.partners),
        "segments": len(seg.segments),
        "lift_rows": len(lift),
        "lift_estimated": int(lift["lift"].notna().sum()),
        "threads": threads,
        "k_scores": [s.__dict__ for s in seg.scores],
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``pipeline.py --config-dir DIR --out OUT [--threads T]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-dir", type=Path, required=True, help="folder holding segtune.toml (from `segtune generate`)")
    parser.add_argument("--config", type=Path, help="the configuration file (default: CONFIG_DIR/segtune.toml)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--threads", type=int, help="threads for BLAS/OpenMP (threadpoolctl) and pyarrow (default: all)")
    parser.add_argument("--strata-from", type=Path, help="check mode: lift strata from this segtune run folder's segments.parquet")
    args = parser.parse_args(argv)
    if args.threads:
        pa.set_cpu_count(args.threads)
    config = args.config or args.config_dir / "segtune.toml"
    with threadpool_limits(limits=args.threads):
        record = run(config, args.out, args.threads, args.strata_from)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
