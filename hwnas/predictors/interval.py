"""Prediction intervals: split-conformal bounds from held-out residuals, in canary units.

A predictor's residual on an architecture (or ONNX model) it never saw is the log-ratio
``r = log(measured / predicted)``.  From ``n`` such residuals the interval at coverage ``1 - a``
takes the empirical quantiles of ``r`` at ``a/2`` and ``1 - a/2``, widened to the conformal
finite-sample ranks (``ceil((n + 1)(1 - a/2))``-th order statistic), so a new item drawn like
the held-out ones falls inside with probability at least ``1 - a``::

    latency_ms_lo = predicted * exp(log_lo),   latency_ms_hi = predicted * exp(log_hi)

The residuals come from items held out of the fit that produced them: the in-space test half
(``hwnas train``), whole zoo families (ONNX models), leave-one-out (few-shot transfer).  The
saved predictor is refitted on everything, so on new items of the same kind its bounds are, if
anything, conservative.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_COVERAGE = 0.9
#: fewest residuals an interval is computed from
MIN_RESIDUALS = 5


@dataclass(frozen=True)
class PredictionInterval:
    """Multiplicative bounds around a prediction, ``coverage`` the nominal share inside."""

    coverage: float
    log_lo: float
    log_hi: float
    n_residuals: int
    source: str  # what the residuals were held out from

    def __post_init__(self) -> None:
        if not (0.0 < self.coverage < 1.0):
            raise ValueError(f"interval coverage {self.coverage!r} is not in (0, 1)")
        if not (math.isfinite(self.log_lo) and math.isfinite(self.log_hi)) or self.log_lo > self.log_hi:
            raise ValueError(f"interval bounds ({self.log_lo!r}, {self.log_hi!r}) are not finite and ordered")
        if abs(self.log_lo) > 5 or abs(self.log_hi) > 5:  # a factor of e^5 = 148 either way is no interval
            raise ValueError(f"interval bounds ({self.log_lo:.3g}, {self.log_hi:.3g}) are implausibly wide")
        if self.n_residuals < 1:
            raise ValueError("an interval needs at least one residual")

    @classmethod
    def from_residuals(cls, predicted, measured, coverage: float = DEFAULT_COVERAGE,
                       source: str = "held out") -> "PredictionInterval":
        p = np.asarray(predicted, dtype=float)
        m = np.asarray(measured, dtype=float)
        ok = np.isfinite(p) & np.isfinite(m) & (p > 0) & (m > 0)
        return cls.from_log_residuals(np.log(m[ok] / p[ok]), coverage, source)

    @classmethod
    def from_log_residuals(cls, residuals, coverage: float = DEFAULT_COVERAGE,
                           source: str = "held out") -> "PredictionInterval":
        r = np.sort(np.asarray(residuals, dtype=float))
        n = len(r)
        if n < MIN_RESIDUALS:
            raise ValueError(f"an interval needs at least {MIN_RESIDUALS} held-out residuals, got {n}")
        tail = (1.0 - coverage) / 2.0
        # conformal ranks (1-based): the k-th smallest / largest with k = ceil((n + 1)(1 - tail))
        k = min(n, math.ceil((n + 1) * (1.0 - tail)))
        return cls(float(coverage), float(r[n - k]), float(r[k - 1]), n, source)

    def in_quadrature_with(self, other: "PredictionInterval", source: str) -> "PredictionInterval":
        """This interval widened by ``other``'s reach beyond 0, side by side in quadrature (two
        independent sources of error); a side that does not reach past 0 moves by the increment
        only, so its sign is kept."""
        a_lo, a_hi = max(-self.log_lo, 0.0), max(self.log_hi, 0.0)
        b_lo, b_hi = max(-other.log_lo, 0.0), max(other.log_hi, 0.0)
        return PredictionInterval(self.coverage, self.log_lo - (math.hypot(a_lo, b_lo) - a_lo),
                                  self.log_hi + (math.hypot(a_hi, b_hi) - a_hi), self.n_residuals, source)

    def bounds(self, predicted_ms):
        """(lo, hi) for predictions (scalar or array, any unit)."""
        p = np.asarray(predicted_ms, dtype=float)
        return p * math.exp(self.log_lo), p * math.exp(self.log_hi)

    def contains(self, predicted, measured) -> np.ndarray:
        lo, hi = self.bounds(predicted)
        m = np.asarray(measured, dtype=float)
        return (m >= lo) & (m <= hi)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PredictionInterval":
        try:
            return cls(float(d["coverage"]), float(d["log_lo"]), float(d["log_hi"]), int(d["n_residuals"]),
                       str(d.get("source", "held out")))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed prediction interval ({e})") from None
