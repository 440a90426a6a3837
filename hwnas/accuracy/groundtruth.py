"""Stand-alone ground truth for accuracy estimators: which subnets to train alone, in what order,
and how well each estimator's ranking matches the mean stand-alone accuracy.

* :func:`quantile_picks`: ``n`` items spread over a value (MACs) by quantiles;
* :func:`spread_order`: an order of those picks whose every prefix spans the range (ends first,
  then midpoints), so that a run stopped after a few trainings has not trained only the smallest;
* :func:`train_seed_major`: the stand-alone trainings in seed-major order (seed 0 of every
  subnet, then seed 1 of every subnet, ...), saving after each and skipping those already done,
  so that an interrupted run still ranks every picked subnet and a rerun continues it;
* :func:`ground_truth_report`: the seed-to-seed spread of the ground truth (its own noise
  ceiling), and for every estimator Spearman / Kendall against the mean stand-alone accuracy
  with a bootstrap 95% interval over the subnets (the same resamples for every estimator, so
  that the gap between two estimators has a paired interval).

Rank correlations here equal ``scipy.stats.spearmanr`` (average ranks for ties) and
``scipy.stats.kendalltau`` (tau-b), computed row-wise so that 1000 resamples take milliseconds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .noise import spearman_brown

__all__ = ["quantile_picks", "spread_order", "train_seed_major", "rank_rows", "ground_truth_report"]


def quantile_picks(values, n: int) -> list[int]:
    """Indices of ``n`` items spread over ``values`` by quantiles (0, 1/(n-1), ..., 1; the median
    for ``n == 1``), in increasing order of value; a position picked twice counts once, so fewer
    than ``n`` come back when ``n`` is close to or above ``len(values)``."""
    values = np.asarray(values)
    if n <= 0 or len(values) == 0:
        return []
    order = np.argsort(values, kind="stable")
    qs = np.linspace(0, 1, n) if n > 1 else np.array([0.5])
    return list(dict.fromkeys(int(order[int(round(q * (len(order) - 1)))]) for q in qs))


def spread_order(n: int) -> list[int]:
    """``0 .. n-1`` reordered so that every prefix spans the range: both ends, then the midpoint of
    every gap, breadth first (``n = 5``: 0, 4, 2, 1, 3)."""
    if n <= 2:
        return list(range(max(0, n)))
    order, gaps = [0, n - 1], [(0, n - 1)]
    while gaps:
        nxt = []
        for lo, hi in gaps:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        gaps = nxt
    return order


def train_seed_major(rows: list[dict], seeds: int, train: Callable[[str, int], tuple[float, float]],
                     save: Callable[[], None] = lambda: None,
                     log: Callable[[str], None] | None = None) -> int:
    """Fill ``row["alone"]`` / ``row["seconds"]`` (index = seed) of every row (``{"arch": str,
    "alone": [...], "seconds": [...]}``) up to ``seeds`` seeds with ``train(arch, seed) ->
    (top-1 %, seconds)``: seed 0 for every row, then seed 1 for every row, ...; ``save()`` after
    each training.  Seeds a row already holds are skipped (a resumed run).  Returns how many
    trainings ran."""
    ran = 0
    for seed in range(seeds):
        for row in rows:
            row.setdefault("alone", [])
            row.setdefault("seconds", [])
            if len(row["alone"]) > seed:
                continue
            if len(row["alone"]) < seed:  # cannot happen in seed-major order; refuse to misalign seeds
                raise ValueError(f"{row['arch']}: holds {len(row['alone'])} seeds, next is seed {seed}")
            acc, secs = train(row["arch"], seed)
            row["alone"].append(float(acc))
            row["seconds"].append(float(secs))
            ran += 1
            if log is not None:
                log(f"  alone seed {seed}: {row['arch']}: {acc:.1f} % ({secs:.0f} s)")
            save()
    return ran


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)  # average ranks for ties, as spearmanr


def rank_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman and Kendall tau-b between ``a[i]`` and ``b[i]`` for every row ``i`` of two
    ``[m, n]`` arrays (NaN where a row is constant)."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), np.nan)
        sa = np.sign(a[:, :, None] - a[:, None, :])
        sb = np.sign(b[:, :, None] - b[:, None, :])
        dk = np.sqrt(np.abs(sa).sum((1, 2)) * np.abs(sb).sum((1, 2)))
        tau = np.where(dk > 0, (sa * sb).sum((1, 2)) / np.where(dk > 0, dk, 1), np.nan)
    return rho, tau


def _interval(x: np.ndarray) -> dict:
    ok = x[np.isfinite(x)]
    if len(ok) == 0:
        return {"ci95_low": float("nan"), "ci95_high": float("nan"), "n_boot": 0}
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return {"ci95_low": float(lo), "ci95_high": float(hi), "n_boot": int(len(ok))}


def ground_truth_report(rows: list[dict], estimators: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0,
                        gap: tuple[str, str] | None = None) -> dict:
    """Figures of the stand-alone ground truth in ``rows`` (as :func:`train_seed_major` fills
    them) against ``estimators`` (name -> one value per row, higher = more accurate).

    The truth of a row is the mean of its first ``k`` stand-alone accuracies, ``k`` the fewest
    seeds any row with at least one holds (so that every row averages the same seeds); rows with
    none are left out.  Intervals: percentile 95% over ``n_boot`` resamples of the rows with
    replacement (``default_rng([seed, 11])``; the same resamples for every estimator).  ``gap =
    (x, y)``: Spearman(x) - Spearman(y) against the truth with its paired interval."""
    have = [i for i, r in enumerate(rows) if r.get("alone")]
    out: dict = {"n_archs": len(have), "trainings_done": sum(len(r.get("alone", [])) for r in rows)}
    if len(have) < 3:
        out["note"] = f"{len(have)} subnets trained alone: too few to rank"
        return out
    k = min(len(rows[i]["alone"]) for i in have)
    alone = np.array([rows[i]["alone"][:k] for i in have])
    truth = alone.mean(1)
    out.update({"seeds_in_truth": k, "truth_pct": truth.tolist(),
                "truth_range_pp": float(np.ptp(truth))})
    two = [i for i in have if len(rows[i]["alone"]) >= 2]
    if len(two) >= 3:
        s0 = np.array([rows[i]["alone"][0] for i in two])
        s1 = np.array([rows[i]["alone"][1] for i in two])
        rho, tau = rank_rows(s0, s1)
        out["seed_to_seed"] = {"n_archs": len(two), "mean_abs_diff_pp": float(np.mean(np.abs(s0 - s1))),
                               "max_abs_diff_pp": float(np.max(np.abs(s0 - s1))),
                               "spearman": float(rho[0]), "kendall": float(tau[0]),
                               "reliability_of_2_seed_mean": spearman_brown(float(rho[0]))}
    rng = np.random.default_rng([seed, 11])
    idx = rng.integers(0, len(have), (n_boot, len(have)))
    boot: dict[str, np.ndarray] = {}
    vs: dict = {}
    for name, v in estimators.items():
        v = np.asarray(v, float)[have]
        rho, tau = rank_rows(v, truth)
        brho, btau = rank_rows(v[idx], truth[idx])
        boot[name] = brho
        vs[name] = {"spearman": float(rho[0]), "kendall": float(tau[0]),
                    "spearman_bootstrap": _interval(brho), "kendall_bootstrap": _interval(btau)}
    out["vs_truth"] = vs
    if gap is not None and all(g in vs for g in gap):
        x, y = gap
        d = vs[x]["spearman"] - vs[y]["spearman"]
        out["gap"] = {"what": f"Spearman vs stand-alone: {x} - {y}", "spearman_gap": d,
                      "paired_bootstrap": _interval(boot[x] - boot[y])}
    return out
