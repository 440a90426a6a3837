"""Search and compare on the vit space.

Search: regularized evolution (tournament of 10, mutation + crossover, oldest dies) or random
sampling under a latency budget, with a trained vit latency predictor of a vit profile.  There
is an accuracy signal only with a trained super-transformer (``accuracy=``: inherited-weight
top-1 on the proxy task, :mod:`hwnas.spaces.vit_supernet_train`; evaluated only for candidates
predicted within the budget).  Without one the objective is a documented placeholder, the
parameter count (larger transformers of this family rank higher on ImageNet in AutoFormer / HAT,
but that is a prior, not a measurement).  The output says which.

Compare: MACs (and params) vs measured latency on the profile's architectures -- Pearson,
Spearman, Kendall, misranked pairs, the worst counterexamples -- next to the vit predictors'
held-out figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from ..errors import InputError
from .vit import VitArch, VitSpace, vit_cost
from .vit_predictors import VitPredictor

ACCURACY_MEANING = ("placeholder: parameter count (M) -- no accuracy estimator exists for the vit space yet; "
                    "this ranks larger models higher and is NOT an accuracy signal")
VIT_STRATEGIES = ("evolution", "random")


@dataclass(frozen=True)
class VitCandidate:
    arch: str
    predicted_latency_ms: float
    budget_ms: float
    accuracy_estimate: float  # the objective: inherited-weight top-1 %, or the placeholder (params, M)
    macs: int
    params: int


@dataclass(frozen=True)
class VitSearchResult:
    strategy: str
    budget_ms: float
    top: list[VitCandidate]
    n_queries: int
    seconds: float
    accuracy_meaning: str = ACCURACY_MEANING

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "budget_ms": self.budget_ms, "n_queries": self.n_queries,
                "seconds": self.seconds, "accuracy_meaning": self.accuracy_meaning,
                "top": [asdict(c) for c in self.top]}


def _objective(archs: list[VitArch]) -> np.ndarray:
    return np.array([vit_cost(a).params / 1e6 for a in archs])


class _Scorer:
    """Predicted ms and objective per architecture, cached; counts queries.  The objective is
    computed only for architectures predicted within the budget (others rank by speed)."""

    def __init__(self, pred: VitPredictor, budget_ms: float,
                 objective: Callable[[Sequence[VitArch]], np.ndarray] = _objective) -> None:
        self.pred, self.budget_ms, self.objective = pred, budget_ms, objective
        self.cache: dict[VitArch, tuple[float, float]] = {}

    def score(self, archs: list[VitArch]) -> list[tuple[float, float]]:
        new = [a for a in dict.fromkeys(archs) if a not in self.cache]
        if new:
            ms = [float(m) for m in self.pred.predict(new)]
            feasible = [a for a, m in zip(new, ms) if m <= self.budget_ms]
            obj = dict(zip(feasible, self.objective(feasible))) if feasible else {}
            for a, m in zip(new, ms):
                self.cache[a] = (m, float(obj.get(a, float("nan"))))
        return [self.cache[a] for a in archs]

    def fitness(self, a: VitArch) -> float:
        ms, obj = self.score([a])[0]
        return obj if ms <= self.budget_ms else -ms  # infeasible: the faster the better


def search_vit(pred: VitPredictor, budget_ms: float, strategy: str = "evolution", population: int = 50,
               generations: int = 200, n_samples: int | None = None, seed: int = 0, top_k: int = 5,
               accuracy: Callable[[Sequence[VitArch]], np.ndarray] | None = None,
               accuracy_meaning: str | None = None) -> VitSearchResult:
    """The best ``top_k`` architectures predicted within ``budget_ms`` by ``accuracy`` (higher is
    better; e.g. :meth:`VitSupernetEstimator.estimate`), or by the params placeholder when None."""
    if strategy not in VIT_STRATEGIES:
        raise InputError(f"--space vit supports --strategy {' | '.join(VIT_STRATEGIES)}, not {strategy!r}")
    if not budget_ms > 0:
        raise InputError(f"--budget-ms must be positive, got {budget_ms}")
    space = VitSpace.from_dict(pred.space_.to_dict(), seed=seed)
    rng = space.rng
    sc = _Scorer(pred, budget_ms, _objective if accuracy is None else accuracy)
    t0 = time.perf_counter()
    if strategy == "random":
        n = n_samples or population * max(1, generations // 10)
        sc.score([space.sample(rng) for _ in range(n)])
    else:
        pop = [space.sample(rng) for _ in range(population)]
        sc.score(pop)
        for _ in range(generations):
            idx = rng.choice(len(pop), size=min(10, len(pop)), replace=False)
            ranked = sorted((pop[i] for i in idx), key=sc.fitness, reverse=True)
            child = space.mutate(space.crossover(ranked[0], ranked[1], rng) if rng.random() < 0.5 else ranked[0], rng)
            sc.score([child])
            pop = pop[1:] + [child]
    feasible = [(a, ms, obj) for a, (ms, obj) in sc.cache.items() if ms <= budget_ms]
    if not feasible:
        fastest = min(ms for ms, _ in sc.cache.values())
        raise InputError(f"no architecture of the vit space is predicted within {budget_ms:g} ms "
                         f"(the fastest seen: {fastest:.2f} ms); raise --budget-ms")
    feasible.sort(key=lambda t: (-t[2], t[1]))
    top = []
    for a, ms, obj in feasible[:top_k]:
        c = vit_cost(a)
        top.append(VitCandidate(str(a), ms, budget_ms, obj, c.macs, c.params))
    return VitSearchResult(strategy, budget_ms, top, len(sc.cache), round(time.perf_counter() - t0, 3),
                           ACCURACY_MEANING if accuracy is None else (accuracy_meaning or "accuracy estimate"))


def compare_vit(profile, heldout: dict | None = None) -> dict:
    """MACs / params vs measured latency over the profile's measured architectures (ms, drift-corrected)."""
    from ..compare.stats import counterexamples, misranked_pairs
    from .vit_predictors import evaluate_vit, vit_data, vit_space_of

    vit_space_of(profile)
    data = vit_data(profile)
    if len(data.archs) < 3:
        raise InputError(f"profile {profile.dir} holds {len(data.archs)} measured vit architectures; compare needs 3")
    ms = data.relative * profile.canary_reference_ms
    names = [str(a) for a in data.archs]
    out = {"profile": str(profile.dir), "device": profile.meta.get("device", {}).get("name"), "space_name": "vit",
           "n": len(ms), "latency_ms_range": [float(ms.min()), float(ms.max())]}
    for proxy, vals in (("macs", [vit_cost(a).macs for a in data.archs]),
                        ("params", [vit_cost(a).params for a in data.archs])):
        x = np.asarray(vals, float)
        wrong, total = misranked_pairs(x, ms)
        out[proxy] = {"pearson": float(stats.pearsonr(x, ms).statistic),
                      "spearman": float(stats.spearmanr(x, ms).statistic),
                      "kendall": float(stats.kendalltau(x, ms).statistic),
                      "misranked_share": wrong / total if total else 0.0,
                      "counterexamples": counterexamples(names, x, ms, k=3)}
    out["heldout"] = heldout if heldout is not None else evaluate_vit(profile)
    return out


__all__ = ["search_vit", "compare_vit", "VitSearchResult", "VitCandidate", "ACCURACY_MEANING", "VIT_STRATEGIES"]
