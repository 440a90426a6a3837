"""Statistics of a proxy (MACs, params, a predictor's output) against measured latency.

* Pearson, Spearman and Kendall correlation;
* the share of **misranked pairs**: pairs the proxy orders one way and latency the other
  (pairs tied in either are left out);
* the **spread among near-equals**: for every pair whose proxy values are within ±5% of each
  other (larger / smaller <= 1.05), how much their latencies differ (slower / faster - 1);
* the **worst counterexamples**: A has a lower proxy than B, yet A is slower; largest
  latency ratio first, each model used in at most one pair so the list shows different cases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

from ..errors import HwnasError

#: "near-equal" proxy values: larger / smaller within 1 + this
NEAR_EQUAL_TOL = 0.05


def misranked_pairs(proxy: Sequence[float], latency: Sequence[float]) -> tuple[int, int]:
    """(pairs ordered one way by the proxy and the other by latency, pairs tied in neither)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    if len(x) != len(y):
        raise ValueError("proxy and latency differ in length")
    i, j = np.triu_indices(len(x), 1)
    dx = np.sign(x[i] - x[j])
    dy = np.sign(y[i] - y[j])
    comparable = (dx != 0) & (dy != 0)
    return int((comparable & (dx != dy)).sum()), int(comparable.sum())


def near_equal_spread(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float],
                      tol: float = NEAR_EQUAL_TOL) -> dict:
    """Latency spread among pairs whose proxy values are within ``tol`` of each other.

    A pair (i, j) is near-equal when max(proxy) / min(proxy) <= 1 + tol; its spread is
    slower / faster - 1.  Returns the number of such pairs, the median, 90th percentile and
    largest spread (fractions), and the pair with the largest one.
    """
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    i, j = np.triu_indices(len(x), 1)
    lo, hi = np.minimum(x[i], x[j]), np.maximum(x[i], x[j])
    near = (lo > 0) & (hi <= lo * (1 + tol))
    out: dict = {"tolerance": tol, "pairs": int(near.sum())}
    if not near.any():
        return out | {"median": None, "p90": None, "max": None, "worst": None}
    ii, jj = i[near], j[near]
    spread = np.maximum(y[ii], y[jj]) / np.minimum(y[ii], y[jj]) - 1.0
    w = int(np.argmax(spread))
    fast, slow = (ii[w], jj[w]) if y[ii[w]] <= y[jj[w]] else (jj[w], ii[w])
    out |= {"median": float(np.median(spread)), "p90": float(np.quantile(spread, 0.9)), "max": float(spread[w]),
            "worst": {"fast": str(names[fast]), "fast_proxy": float(x[fast]), "fast_latency_ms": float(y[fast]),
                      "slow": str(names[slow]), "slow_proxy": float(x[slow]), "slow_latency_ms": float(y[slow])}}
    return out


def _wrong_way(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b) where a has the lower proxy yet the higher latency."""
    return np.nonzero((x[:, None] < x[None, :]) & (y[:, None] > y[None, :]))


def _pair(names: Sequence[str], x: np.ndarray, y: np.ndarray, ia: int, ib: int) -> dict:
    return {"a": str(names[ia]), "a_proxy": float(x[ia]), "a_latency_ms": float(y[ia]),
            "b": str(names[ib]), "b_proxy": float(x[ib]), "b_latency_ms": float(y[ib]),
            "latency_ratio": float(y[ia] / y[ib]), "proxy_ratio": float(x[ia] / x[ib])}


def _counterexamples(names: Sequence[str], x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
                     k: int) -> list[dict]:
    if len(a) == 0:
        return []
    order = np.argsort(-(y[a] / y[b]), kind="stable")
    used: set[int] = set()
    out = []
    for o in order:
        ia, ib = int(a[o]), int(b[o])
        if ia in used or ib in used:
            continue
        used |= {ia, ib}
        out.append(_pair(names, x, y, ia, ib))
        if len(out) >= k:
            break
    return out


def _largest_gap(names: Sequence[str], x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict | None:
    if len(a) == 0:
        return None
    o = int(np.argmin(x[a] / x[b]))
    return _pair(names, x, y, int(a[o]), int(b[o]))


def counterexamples(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float], k: int = 5) -> list[dict]:
    """Pairs where A has a lower proxy than B yet is slower, largest latency ratio A/B first.

    Each model appears in at most one pair, so the list shows ``k`` different cases rather
    than one slow model against its k neighbours.
    """
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    return _counterexamples(names, x, y, *_wrong_way(x, y), k)


def largest_gap(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float]) -> dict | None:
    """The pair where A is slower than B despite the largest proxy gap (smallest proxy_A / proxy_B)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    return _largest_gap(names, x, y, *_wrong_way(x, y))


def proxy_stats(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float], k: int = 5) -> dict:
    """Every statistic of a proxy against measured latency (see the module docstring)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    if len(x) < 3:
        raise HwnasError(f"need at least 3 models for correlation statistics, got {len(x)}")
    mis, comp = misranked_pairs(x, y)
    a, b = _wrong_way(x, y)
    return {
        "n": int(len(x)),
        "pearson": float(sps.pearsonr(x, y).statistic),
        "spearman": float(sps.spearmanr(x, y).statistic),
        "kendall": float(sps.kendalltau(x, y).statistic),
        "misranked_pairs": mis,
        "comparable_pairs": comp,
        "misranked_share": mis / comp if comp else float("nan"),
        "near_equal": near_equal_spread(names, x, y),
        "counterexamples": _counterexamples(names, x, y, a, b, k),
        "largest_gap": _largest_gap(names, x, y, a, b),
    }
