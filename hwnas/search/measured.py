"""Measurement in the loop: the search's winner is an architecture *measured* within the budget.

A prediction is a point inside an interval (:mod:`hwnas.predictors.interval`).  After the search
has scored its candidates, they are walked in the order of the search's objective (accuracy,
then predicted latency) and the ones that can still fit -- the lower end of their interval at
or below the budget -- are measured on this machine in small batches, each canary-bracketed.
A measurement replaces the prediction: the first candidate measured within the budget (with a
safety ``margin`` for the measurement's own noise) wins, and no more accurate candidate is
left unmeasured.  Every measurement also moves a shared correction of the predictor's bias on
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
    measured: list = field(default_factory=list)  # [{arch, predicted_ms, measured_ms, within}]

    def to_dict(self) -> dict:
        return asdict(self)


def walk(order: Sequence[int], predicted_ms: np.ndarray, log_lo: float, budget_ms: float,
         measure: Callable[[list[int]], list[float]], *, batch: int = DEFAULT_BATCH, margin: float = DEFAULT_MARGIN,
         max_measurements: int = DEFAULT_MAX_MEASUREMENTS) -> tuple[int | None, dict[int, float], float]:
    """The loop's logic, free of any device: (winner row or None, {row: measured ms}, bias).

    ``order``: candidate rows, best first by the search's objective; ``predicted_ms`` per row;
    ``measure(rows)``: measured ms of those rows, in order."""
    if batch < 1 or max_measurements < 1:
        raise ValueError("batch and max_measurements must be >= 1")
    limit = budget_ms * (1.0 - margin)
    measured: dict[int, float] = {}
    log_bias = 0.0
    pos = 0
    order = list(order)
    while len(measured) < max_measurements:
        # the next candidates, in order, whose corrected interval still reaches below the budget
        todo: list[int] = []
        while pos < len(order) and len(todo) < min(batch, max_measurements - len(measured)):
            i = order[pos]
            pos += 1
            if predicted_ms[i] * math.exp(log_bias + log_lo) <= budget_ms:
                todo.append(i)
        if not todo:
            return None, measured, math.exp(log_bias)
        for i, ms in zip(todo, measure(todo)):
            measured[i] = float(ms)
        for i in todo:  # in order: the first within the limit is the most accurate measured fit
            if measured[i] <= limit:
                return i, measured, math.exp(log_bias)
        r = np.log([measured[i] / predicted_ms[i] for i in measured])
        log_bias = float(r.sum() / (len(r) + PRIOR_WEIGHT))
    return None, measured, math.exp(log_bias)


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
        log_lo = iv.log_lo if iv is not None else -FALLBACK_LOG_HALF_WIDTH
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

            win, measured, bias = walk(rows, pred, log_lo, budget, measure, batch=batch, margin=margin,
                                       max_measurements=max_measurements)
        log = [{"arch": str(archs[i]), "predicted_ms": float(pred[i]), "measured_ms": ms,
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
