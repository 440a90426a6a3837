"""What a search optimizes: constraints, and the evaluator that scores architectures.

The evaluator asks each profile's latency predictor (vectorized fast path on encoded
architectures) and one accuracy estimator, caches every result, counts predictor queries and
keeps the full history for ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cost import arch_cost, cost_table, peak_activation_bytes
from ..errors import InputError
from ..predictors.base import check_finite_latency
from ..space import Arch, SearchSpace
from ..validate import positive_number

MB = 2**20


class InfeasibleError(InputError):
    """No architecture of the space can meet the constraints."""


@dataclass(frozen=True)
class Constraints:
    """Hard limits.  ``budgets_ms``: one latency budget per profile, in ms on its device."""

    budgets_ms: tuple[float, ...]
    max_params: int | None = None
    max_model_mb: float | None = None
    max_peak_mem_mb: float | None = None

    def __post_init__(self) -> None:
        if not self.budgets_ms:
            raise InputError("give a latency budget (--budget-ms)")
        for b in self.budgets_ms:
            positive_number(b, "latency budget", "ms")
        for name in ("max_params", "max_model_mb", "max_peak_mem_mb"):
            v = getattr(self, name)
            if v is not None:
                positive_number(v, f"--{name.replace('_', '-')}")

    @property
    def needs_static(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_model_mb, self.max_peak_mem_mb))


@dataclass
class Evaluation:
    """Scores of a batch of architectures, as canonical index genomes (row i = ``genomes[i]``)."""

    space: SearchSpace
    genomes: np.ndarray  # (n, L) canonical genomes
    latency_ms: np.ndarray  # (n, n_profiles)
    accuracy: np.ndarray  # (n,)
    static_ok: np.ndarray  # (n,) bool: params / size / memory limits hold

    @property
    def archs(self) -> list[Arch]:
        return self.space.genomes_to_archs(self.genomes)

    def feasible(self, budgets_ms: Sequence[float]) -> np.ndarray:
        """(n, n_profiles) bool: within each profile's budget and the static limits."""
        return (self.latency_ms <= np.asarray(budgets_ms)[None, :]) & self.static_ok[:, None]


class Evaluator:
    """Scores architectures (index genomes) on every profile's latency predictor and one
    accuracy estimator; caches by canonical genome and records the order of first evaluation."""

    def __init__(self, space: SearchSpace, latency_predictors: Sequence, canary_ms: Sequence[float], accuracy,
                 constraints: Constraints) -> None:
        self.space = space
        self.latency_predictors = list(latency_predictors)
        self.canary_ms = list(canary_ms)
        self.accuracy = accuracy
        self.constraints = constraints
        self.cost = cost_table(space)
        self.n_queries = 0
        self._index: dict[bytes, int] = {}
        n_p, L = len(self.latency_predictors), len(space.genome_cardinalities)
        # growable stores (capacity doubles), rows in order of first evaluation
        self._G = np.zeros((1024, L), np.int64)
        self._lat = np.zeros((1024, n_p))
        self._acc = np.zeros(1024)
        self._ok = np.zeros(1024, bool)

    def _append(self, G, lat, acc, ok) -> None:
        n0, n = self.n_queries, len(G)
        while n0 + n > len(self._acc):
            cap = 2 * len(self._acc)
            self._G = np.resize(self._G, (cap, self._G.shape[1]))
            self._lat = np.resize(self._lat, (cap, self._lat.shape[1]))
            self._acc = np.resize(self._acc, cap)
            self._ok = np.resize(self._ok, cap)
        self._G[n0:n0 + n], self._lat[n0:n0 + n], self._acc[n0:n0 + n], self._ok[n0:n0 + n] = G, lat, acc, ok
        self.n_queries += n

    # -- scoring ----------------------------------------------------------------------------
    def _latency(self, X: np.ndarray, G: np.ndarray) -> np.ndarray:
        cols = []
        for pred, c in zip(self.latency_predictors, self.canary_ms):
            if hasattr(pred, "predict_encoded"):
                rel = check_finite_latency(pred, np.asarray(pred.predict_encoded(X), dtype=float),
                                           lambda i: str(self.space.genomes_to_archs(G[i:i + 1])[0]))
            else:
                rel = pred.predict_relative(self.space.genomes_to_archs(G))
            cols.append(np.asarray(rel, dtype=float) * c)
        return np.stack(cols, axis=1)

    def _accuracy(self, G: np.ndarray) -> np.ndarray:
        if hasattr(self.accuracy, "estimate_genomes"):
            return np.asarray(self.accuracy.estimate_genomes(G), dtype=float)
        return np.asarray(self.accuracy.estimate(self.space.genomes_to_archs(G)), dtype=float)

    def _static_ok(self, G: np.ndarray) -> np.ndarray:
        k = self.constraints
        if not k.needs_static:
            return np.ones(len(G), dtype=bool)
        c = self.cost.costs(G)
        ok = np.ones(len(G), dtype=bool)
        if k.max_params is not None:
            ok &= c["params"] <= k.max_params
        if k.max_model_mb is not None:
            ok &= 4 * c["params"] / MB <= k.max_model_mb
        if k.max_peak_mem_mb is not None:
            ok &= c["peak_bytes"] / MB <= k.max_peak_mem_mb
        return ok

    def static(self, a: Arch) -> dict:
        c = arch_cost(a)
        return {"macs": c.macs, "params": c.params, "model_mb": 4 * c.params / MB,
                "peak_mem_mb": peak_activation_bytes(a) / MB}

    def evaluate_genomes(self, G: np.ndarray) -> Evaluation:
        """Scores for genomes ``G`` (cached; each new architecture counts as one query)."""
        G = self.space.canonical(G)
        keys = [row.tobytes() for row in G]
        new_rows, new_keys = [], []
        seen_now: set[bytes] = set()
        for i, k in enumerate(keys):
            if k not in self._index and k not in seen_now:
                seen_now.add(k)
                new_rows.append(i)
                new_keys.append(k)
        if new_rows:
            Gn = G[new_rows]
            X = self.space.genomes_to_ordinal(Gn)
            for j, k in enumerate(new_keys):
                self._index[k] = self.n_queries + j
            self._append(Gn, self._latency(X, Gn), self._accuracy(Gn), self._static_ok(Gn))
        idx = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        return Evaluation(self.space, G, self._lat[idx], self._acc[idx], self._ok[idx])

    def predict_genomes(self, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latency ms ``(n, profiles)``, static limits hold ``(n,)``) of genomes ``G``, neither
        cached nor counted nor recorded: for a strategy that screens candidates by the budget
        before judging them itself (morph)."""
        G = self.space.canonical(G)
        return self._latency(self.space.genomes_to_ordinal(G), G), self._static_ok(G)

    def evaluate(self, archs: Sequence[Arch]) -> Evaluation:
        return self.evaluate_genomes(self.space.archs_to_genomes(list(archs)))

    def history(self) -> Evaluation:
        """Everything evaluated, in the order first seen."""
        n = self.n_queries
        return Evaluation(self.space, self._G[:n].copy(), self._lat[:n].copy(), self._acc[:n].copy(), self._ok[:n].copy())

    def latency_range(self, n_samples: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[Arch]]:
        """(min ms, max ms, argmin archs) per profile over the extremes and a random sample
        (not counted as search queries)."""
        probe = [self.space.smallest(), self.space.largest()]
        for r in self.space.resolutions:
            for w in self.space.width_mults:
                probe.append(Arch(r, w, self.space.smallest().stages))
        G = np.vstack([self.space.archs_to_genomes(probe),
                       self.space.random_genomes(np.random.default_rng(seed), n_samples)])
        G = self.space.canonical(G)
        lat = self._latency(self.space.genomes_to_ordinal(G), G)
        lo = lat.argmin(axis=0)
        return lat.min(axis=0), lat.max(axis=0), self.space.genomes_to_archs(G[lo])
