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

**The search continues** with what the measurements taught: when they show the predictor off by
at least :data:`CONTINUE_LOG_BIAS` near the budget (the learned bias), the search runs again with
the bias folded into its latency constraint (budget / bias, another seed), so it can explore the
region that really fits on this machine, and the walk goes on over its candidates more accurate
than the first winner, predictions corrected by the bias, measurements already made reused.  The
more accurate measured winner of the two rounds wins.  (Searches over one profile; a search over
several profiles keeps one round.)
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
#: a second search round runs when the measurements put the predictor at least this far off (log units)
CONTINUE_LOG_BIAS = math.log(1.03)
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
    measured: list = field(default_factory=list)  # [{arch, rank (0: best by the objective), predicted_ms, measured_ms, within, round}]
    rounds: int = 1  # 2: the search ran again with the measured bias (see the module doc)
    continued_budget_ms: float | None = None  # the second round's constraint on predictions (budget / bias)

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
                    progress: Callable[[int, int], None] | None = None,
                    continue_search: bool = True) -> list[LoopReport]:
    """Run the loop for every profile of a :class:`~hwnas.search.SearchResult`; the winner replaces
    ``result.best[j]`` (and heads ``result.top[j]``) with its measured fields filled in.  Raises
    ``InfeasibleError`` when no candidate measures within a budget.  ``continue_search``: a second
    search round with the measured bias (module doc) for a one-profile search."""
    from ..builders.onnx_graph import build_onnx
    from ..measure import Measurer
    from ..predictors import load_predictor
    from ..profile import Profile

    if not (0.0 <= margin < 0.5):
        raise HwnasError(f"margin {margin!r} must be in [0, 0.5)")
    cfg = result.config
    reports = []
    for j, (cands, budget) in enumerate(zip(result.top, cfg.budgets_ms)):
        t0 = time.perf_counter()
        d = cands[0].profile
        prof = Profile.load(d, check_machine=False)
        iv = load_predictor(d, cfg.latency_predictor, target_kind="arch").interval("arch")
        interval = ((iv.log_lo, iv.log_hi, iv.coverage) if iv is not None
                    else (-FALLBACK_LOG_HALF_WIDTH, FALLBACK_LOG_HALF_WIDTH, 0.9))
        source = iv.source if iv is not None else "none saved: +-10% assumed"
        cache: dict[str, float] = {}  # arch -> measured ms, over both rounds
        n_done = 0

        with Measurer(prof.device, config) as m:
            def measure_archs(archs: list) -> list[float]:
                nonlocal n_done
                out = []
                for a in archs:
                    if str(a) not in cache:
                        meas = m.measure(build_onnx(a, batch=prof.device.batch_size), str(a))
                        cache[str(a)] = meas.relative_to_canary * prof.canary_reference_ms
                        n_done += 1
                        if progress:
                            progress(n_done, max_measurements)
                    out.append(cache[str(a)])
                return out

            first = _round(result, j, budget, interval, measure_archs, batch, margin, max_measurements, 1.0, None)
            win, log, bias, n_ok = first
            second = None
            if (continue_search and len(cfg.budgets_ms) == 1 and abs(math.log(bias)) >= CONTINUE_LOG_BIAS
                    and n_done < max_measurements):
                from dataclasses import replace

                from . import run_search

                cont = replace(cfg, budgets_ms=(budget / bias,), seed=cfg.seed + 1, verify=0)
                try:
                    res2 = run_search(cont)
                except HwnasError:
                    res2 = None  # nothing predicted within the corrected budget: the first round stands
                if res2 is not None:
                    floor = win[1] if win is not None else None
                    second = (res2, _round(res2, 0, budget, interval, measure_archs, batch, margin,
                                           max_measurements - n_done, bias, floor))
        src, col = result, j  # where the winner's row lives: this search (profile column j) ...
        if second is not None:
            res2, (win2, log2, _, n_ok2) = second
            seen = {x["arch"] for x in log}  # measured in round 1 (reused, not measured again)
            log = log + [dict(e, round=2) for e in log2 if e["arch"] not in seen]
            n_ok += n_ok2
            if win2 is not None and (win is None or win2[1] > win[1]):
                win, src, col = win2, res2, 0  # ... or the continued, one-profile search
        if win is None:
            raise InfeasibleError(
                f"no candidate measured within {budget:g} ms (margin {100 * margin:g}%) on {d} after "
                f"{len(cache)} measurements; raise the budget or --max-measurements")
        c = _candidate(src, win[0], col, d, budget, cache[str(src.evaluated.archs[win[0]])])
        result.best[j] = c
        result.top[j] = [c] + [x for x in cands if x.arch != c.arch]
        reports.append(LoopReport(str(d), budget, c.arch, c.measured_latency_ms, c.predicted_latency_ms, len(cache),
                                  n_ok, len(result.evaluated.genomes) + (len(second[0].evaluated.genomes) if second else 0),
                                  bias, time.perf_counter() - t0, source, log, rounds=2 if second else 1,
                                  continued_budget_ms=budget / bias if second else None))
    return reports


def _round(res, j: int, budget: float, interval, measure_archs, batch: int, margin: float, max_measurements: int,
           bias: float, floor_accuracy: float | None):
    """One walk over a search result's candidates for profile ``j``: ((row, accuracy) of the winner or
    None, log entries, learned bias, candidates whose interval crossed the budget).  Predictions are
    multiplied by ``bias`` (a second round's correction); only candidates more accurate than
    ``floor_accuracy`` are walked."""
    ev = res.evaluated
    archs = ev.archs
    pred = ev.latency_ms[:, j] * bias
    ok = ev.static_ok & (pred * math.exp(interval[0]) <= budget)
    if floor_accuracy is not None:
        ok &= ev.accuracy > floor_accuracy
    rows = np.flatnonzero(ok)
    rows = rows[np.lexsort((pred[rows], -ev.accuracy[rows]))]
    if rows.size == 0 or max_measurements < 1:
        return None, [], bias, 0

    def measure(todo: list[int]) -> list[float]:
        return measure_archs([archs[i] for i in todo])

    win, measured, learned = walk(rows, pred, interval, budget, measure, batch=batch, margin=margin,
                                  max_measurements=max_measurements)
    rank = {int(i): k for k, i in enumerate(rows)}
    log = [{"arch": str(archs[i]), "rank": rank[i], "predicted_ms": float(pred[i]), "measured_ms": ms,
            "within": bool(ms <= budget * (1 - margin)), "round": 1} for i, ms in measured.items()]
    return ((win, float(ev.accuracy[win])) if win is not None else None), log, learned * bias, int(ok.sum())


def _candidate(res, row: int, col: int, d, budget: float, measured_ms: float):
    """The measured winner as a search :class:`~hwnas.search.Candidate` (``col``: its profile's column)."""
    from . import Candidate

    a = res.evaluated.archs[row]
    st = res.cost_table.costs(res.evaluated.genomes[[row]])
    return Candidate(str(a), str(d), budget, float(res.evaluated.latency_ms[row, col]),
                     float(res.evaluated.accuracy[row]), int(st["macs"][0]), int(st["params"][0]),
                     4 * int(st["params"][0]) / MB, float(st["peak_bytes"][0]) / MB,
                     [float(x) for x in res.evaluated.latency_ms[row]], measured_latency_ms=measured_ms,
                     within_budget_measured=True)
