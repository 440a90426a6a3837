"""Measurement in the loop: the search's winner is an architecture *measured* within the budget.

A prediction is a point inside an interval (:mod:`hwnas.predictors.interval`).  After the search
has scored its candidates, they are walked in the order of the search's objective (accuracy,
then predicted latency) and the ones with a real chance to fit -- at least 20% under the
predictor's residual law, read from its interval -- are measured on this machine in small
batches, each canary-bracketed.  A measurement replaces the prediction: the most accurate
candidate measured within the budget (with a safety ``margin`` for the measurement's own noise)
wins, and no more accurate candidate with that chance is left unmeasured.  Every measurement also moves a shared correction of the predictor's bias on
the candidates near the budget (the mean log-ratio measured / predicted, shrunk towards zero),
so a predictor that is off here stops proposing candidates that cannot fit.

The walk stops at the winner; :class:`LoopReport` says how many device measurements that took,
against the number of candidates whose interval crossed the budget (what measuring every
plausible candidate would have cost).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from ..errors import HwnasError
from .problem import MB, InfeasibleError

#: a candidate wins when measured at or below budget x (1 - margin)
DEFAULT_MARGIN = 0.02
DEFAULT_BATCH = 4
DEFAULT_MAX_MEASUREMENTS = 40
#: the bias correction counts as this many zero residuals (shrinks one noisy measurement)
PRIOR_WEIGHT = 3.0
#: a candidate is measured when its chance to fit (under the interval and the bias) is at least this
MIN_FIT_PROBABILITY = 0.2
#: interval used when a profile saved none (trained before intervals existed): +-10%
FALLBACK_LOG_HALF_WIDTH = math.log(1.10)


@dataclass
class LoopReport:
    """What the loop did for one profile and budget."""

    profile: str
    budget_ms: float
    winner: str
    winner_measured_ms: float
    winner_predicted_ms: float
    n_measured: int
    n_plausible: int  # candidates whose interval reached below the budget: measuring all would cost this
    n_evaluated: int
    bias_correction: float  # final multiplicative correction of the predictor near the budget
    seconds: float
    interval_source: str
    measured: list = field(default_factory=list)  # [{arch, rank (0: best by the objective), predicted_ms, measured_ms, within}]

    def to_dict(self) -> dict:
        return asdict(self)


def fit_probability(predicted_ms: np.ndarray, limit_ms: float, log_mu: float, log_sigma: float) -> np.ndarray:
    """P(measured <= limit) per prediction, residuals log(measured / predicted) ~ N(mu, sigma)."""
    from scipy.special import ndtr

    return ndtr((np.log(limit_ms / np.asarray(predicted_ms, dtype=float)) - log_mu) / log_sigma)


def walk(order: Sequence[int], predicted_ms: np.ndarray, interval: tuple[float, float, float], budget_ms: float,
         measure: Callable[[list[int]], list[float]], *, batch: int = DEFAULT_BATCH, margin: float = DEFAULT_MARGIN,
         max_measurements: int = DEFAULT_MAX_MEASUREMENTS,
         min_probability: float = MIN_FIT_PROBABILITY) -> tuple[int | None, dict[int, float], float]:
    """The loop's logic, free of any device: (winner row or None, {row: measured ms}, bias).

    ``order``: candidate rows, best first by the search's objective; ``predicted_ms`` per row;
    ``interval``: (log_lo, log_hi, coverage) of the predictor's residuals, read as a normal law;
    ``measure(rows)``: measured ms of those rows, in order.  Each batch takes, in order, the
    unmeasured candidates more accurate than the current winner whose chance to fit is at least
    ``min_probability`` under the current bias; it ends when none is left."""
    if batch < 1 or max_measurements < 1:
        raise ValueError("batch and max_measurements must be >= 1")
    log_lo, log_hi, coverage = interval
    z = NormalDist().inv_cdf((1.0 + coverage) / 2.0)
    mu0, sigma = (log_lo + log_hi) / 2.0, max((log_hi - log_lo) / (2.0 * z), 1e-3)
    limit = budget_ms * (1.0 - margin)
    order = np.asarray(list(order), dtype=np.int64)
    pred = np.asarray(predicted_ms, dtype=float)[order]
    done = np.zeros(len(order), dtype=bool)
    measured: dict[int, float] = {}
    log_bias = 0.0
    best = len(order)  # position of the winner in ``order`` (len: none yet)
    while len(measured) < max_measurements:
        ok = ~done & (fit_probability(pred, limit, mu0 + log_bias, sigma) >= min_probability)
        ok[best:] = False
        pos = np.flatnonzero(ok)[: min(batch, max_measurements - len(measured))]
        if pos.size == 0:
            break
        rows = [int(order[k]) for k in pos]
        for k, i, ms in zip(pos, rows, measure(rows)):
            measured[i] = float(ms)
            done[k] = True
            if ms <= limit and k < best:
                best = int(k)
        r = np.log([measured[i] / predicted_ms[i] for i in measured])
        log_bias = float(r.sum() / (len(r) + PRIOR_WEIGHT))
    return (int(order[best]) if best < len(order) else None), measured, math.exp(log_bias)


def measure_in_loop(result, *, batch: int = DEFAULT_BATCH, margin: float = DEFAULT_MARGIN,
                    max_measurements: int = DEFAULT_MAX_MEASUREMENTS, config=None,
                    progress: Callable[[int, int], None] | None = None) -> list[LoopReport]:
    """Run the loop for every profile of a :class:`~hwnas.search.SearchResult`; the winner replaces
    ``result.best[j]`` (and heads ``result.top[j]``) with its measured fields filled in.  Raises
    ``InfeasibleError`` when no candidate measures within a budget."""
    from ..builders.onnx_graph import build_onnx
    from ..measure import Measurer
    from ..predictors import load_predictor
    from ..profile import Profile
    from . import Candidate

    if not (0.0 <= margin < 0.5):
        raise HwnasError(f"margin {margin!r} must be in [0, 0.5)")
    cfg = result.config
    res = result.evaluated
    archs = res.archs
    reports = []
    for j, (cands, budget) in enumerate(zip(result.top, cfg.budgets_ms)):
        t0 = time.perf_counter()
        d = cands[0].profile
        prof = Profile.load(d, check_machine=False)
        iv = load_predictor(d, cfg.latency_predictor, target_kind="arch").interval("arch")
        interval = ((iv.log_lo, iv.log_hi, iv.coverage) if iv is not None
                    else (-FALLBACK_LOG_HALF_WIDTH, FALLBACK_LOG_HALF_WIDTH, 0.9))
        log_lo = interval[0]
        source = iv.source if iv is not None else "none saved: +-10% assumed"
        pred = res.latency_ms[:, j]
        ok = res.static_ok & (pred * math.exp(log_lo) <= budget)
        rows = np.flatnonzero(ok)
        rows = rows[np.lexsort((pred[rows], -res.accuracy[rows]))]
        n_done = 0

        with Measurer(prof.device, config) as m:
            def measure(todo: list[int]) -> list[float]:
                nonlocal n_done
                out = []
                for i in todo:
                    meas = m.measure(build_onnx(archs[i], batch=prof.device.batch_size), str(archs[i]))
                    out.append(meas.relative_to_canary * prof.canary_reference_ms)
                    n_done += 1
                    if progress:
                        progress(n_done, max_measurements)
                return out

            win, measured, bias = walk(rows, pred, interval, budget, measure, batch=batch, margin=margin,
                                       max_measurements=max_measurements)
        rank = {int(i): k for k, i in enumerate(rows)}
        log = [{"arch": str(archs[i]), "rank": rank[i], "predicted_ms": float(pred[i]), "measured_ms": ms,
                "within": bool(ms <= budget * (1 - margin))} for i, ms in measured.items()]
        if win is None:
            raise InfeasibleError(
                f"no candidate measured within {budget:g} ms (margin {100 * margin:g}%) on {d} after "
                f"{len(measured)} measurements; raise the budget or --max-measurements")
        a = archs[win]
        st = result.cost_table.costs(res.genomes[[win]])
        c = Candidate(str(a), str(d), budget, float(pred[win]), float(res.accuracy[win]), int(st["macs"][0]),
                      int(st["params"][0]), 4 * int(st["params"][0]) / MB, float(st["peak_bytes"][0]) / MB,
                      [float(x) for x in res.latency_ms[win]], measured_latency_ms=measured[win],
                      within_budget_measured=True)
        result.best[j] = c
        result.top[j] = [c] + [x for x in cands if x.arch != c.arch]
        reports.append(LoopReport(str(d), budget, str(a), measured[win], float(pred[win]), len(measured), int(ok.sum()),
                                  len(res.genomes), bias, time.perf_counter() - t0, source, log))
    return reports
