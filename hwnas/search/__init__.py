"""Latency-constrained architecture search.

    from hwnas.search import SearchConfig, run_search
    result = run_search(SearchConfig(budgets_ms=(8.0,)))
    result.best[0]           # a Candidate: arch, predicted_latency_ms, accuracy_estimate, macs, params

One run may serve several devices (profiles), one budget each: the population is scored on
every profile's predictor and the best architecture within each budget is returned
(Once-for-All's "search once, deploy to many").  ``verify`` re-measures the winners on the
device with the measurement engine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..space import Arch
from .problem import MB, Constraints, Evaluator, InfeasibleError
from .gradient import GradientConfig, GradientSearcher
from .morph import MorphSearcher
from .rl import RLSearcher
from .strategies import STRATEGIES as _BASE_STRATEGIES
from .strategies import EvolutionSearcher, GridSearcher, NSGA2Searcher, RandomSearcher, SearchProblem

STRATEGIES = {**_BASE_STRATEGIES, "rl": RLSearcher, "gradient": GradientSearcher, "morph": MorphSearcher}

VERIFY_TOLERANCE = 0.05


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run depends on.  ``profiles``: profile directories (``None``: the
    bundled reference profile); ``budgets_ms``: one per profile."""

    budgets_ms: tuple[float, ...]
    profiles: tuple[str, ...] = ()
    strategy: str = "evolution"
    accuracy: str = "predictor"
    accuracy_dir: str | None = None
    latency_predictor: str | None = None
    max_params: int | None = None
    max_model_mb: float | None = None
    max_peak_mem_mb: float | None = None
    population: int = 100
    generations: int = 500
    n_samples: int | None = None  # random search: evaluations (default population x generations)
    seed: int = 0
    verify: int = 0
    rl_reward: str = "soft"  # rl: MnasNet's soft or hard latency term
    rl_controller: str = "categorical"  # rl: one softmax per decision, or an LSTM
    resolution: int | None = None  # gradient: fixed resolution (None: a run per resolution x width)
    width_mult: float | None = None  # gradient: fixed width multiplier
    gradient_steps: int = 300  # gradient: weight steps per run
    morph_rounds: int = 8  # morph: hill-climbing rounds
    morph_children: int = 4  # morph: children fine-tuned per round
    morph_rule: str = "nash"  # morph: nash (the best child always becomes the parent) | improve (only when as accurate)
    morphs_per_child: int = 8  # morph: a child is 1..this many morphisms of its parent (the count drawn per child)
    morph_steps: int = 100  # morph: fine-tune steps per child (the start trains 3x as many)
    morph_data: str = "builtin:digits"  # morph: the proxy dataset

    def __post_init__(self) -> None:
        # a bad budget or limit (NaN, inf, <= 0) fails here, before anything is loaded; --max-params
        # may come as a float (5e6, and NaN must not reach int()): whole parameters once checked
        self.constraints()
        if self.max_params is not None:
            object.__setattr__(self, "max_params", int(self.max_params))

    def constraints(self) -> Constraints:
        return Constraints(tuple(float(b) for b in self.budgets_ms), self.max_params, self.max_model_mb,
                           self.max_peak_mem_mb)


@dataclass
class Candidate:
    arch: str
    profile: str
    budget_ms: float
    predicted_latency_ms: float
    accuracy_estimate: float
    macs: int
    params: int
    model_mb: float
    peak_mem_mb: float
    predicted_latency_ms_all: list = field(default_factory=list)
    measured_latency_ms: float | None = None
    measured_latency_abs_ms: float | None = None
    within_budget_measured: bool | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.measured_latency_ms is None:
            for k in ("measured_latency_ms", "measured_latency_abs_ms", "within_budget_measured"):
                d.pop(k)
        return d


@dataclass
class SearchResult:
    config: SearchConfig
    best: list[Candidate]  # one per profile, in the order of config.profiles
    top: list[list[Candidate]]  # per profile, best first (length >= verify)
    notes: list[str]
    n_queries: int
    seconds: float
    evaluated: "object"  # problem.Evaluation of every candidate, in the order first evaluated
    cost_table: "object"
    min_latency_ms: list[float]
    max_latency_ms: list[float]
    accuracy_meaning: str
    accuracy_unit: str = ""

    def history(self):
        """Every evaluated candidate as a DataFrame (built on demand: it is large)."""
        import pandas as pd

        res = self.evaluated
        feas = res.feasible(self.config.constraints().budgets_ms)
        costs = self.cost_table.costs(res.genomes)
        df = pd.DataFrame({"arch": [str(a) for a in res.archs], "accuracy_estimate": res.accuracy,
                           "macs": costs["macs"], "params": costs["params"], "peak_mem_mb": costs["peak_bytes"] / MB,
                           "static_ok": res.static_ok})
        for j in range(res.latency_ms.shape[1]):
            df[f"predicted_latency_ms_{j}"] = res.latency_ms[:, j]
            df[f"feasible_{j}"] = feas[:, j]
        df["predicted_latency_ms"] = df["predicted_latency_ms_0"]
        return df


#: random architectures probed for the latency range before a search (vectorized predictors)
PROBE_SAMPLES = 2000


def _profile_dirs(cfg: SearchConfig) -> list[Path]:
    from ..fleet.layout import fleet_profiles
    from ..paths import default_profile_dir

    dirs = [Path(p) for p in cfg.profiles] or [default_profile_dir()]
    dirs = [q for d in dirs for q in (fleet_profiles(d) or [d])]  # a fleet directory: each of its profiles
    for d in dirs:
        if not (d / "profile.sqlite").is_file():
            raise InputError(f"no device profile at {d}")
    return dirs


def make_searcher(cfg: SearchConfig):
    if cfg.strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {cfg.strategy!r}; choose from {', '.join(STRATEGIES)}")
    if cfg.population < 2 or cfg.generations < 1:
        raise InputError("population must be >= 2 and generations >= 1")
    if cfg.strategy == "evolution":
        return EvolutionSearcher(population=cfg.population, generations=cfg.generations,
                                 parents=max(1, cfg.population // 4), mutants=cfg.population // 2,
                                 crossovers=cfg.population // 2, seed=cfg.seed)
    if cfg.strategy == "random":
        return RandomSearcher(n_samples=cfg.n_samples or cfg.population * cfg.generations, seed=cfg.seed)
    if cfg.strategy == "grid":
        return GridSearcher(seed=cfg.seed)
    if cfg.strategy == "rl":
        return RLSearcher(n_samples=cfg.n_samples or cfg.population * cfg.generations, reward=cfg.rl_reward,
                          controller=cfg.rl_controller, seed=cfg.seed)
    if cfg.strategy == "gradient":
        return GradientSearcher(cfg.accuracy_dir, [str(d) for d in _profile_dirs(cfg)], cfg.resolution, cfg.width_mult,
                                GradientConfig(steps=cfg.gradient_steps), seed=cfg.seed)
    if cfg.strategy == "morph":
        return MorphSearcher(cfg.morph_data, rounds=cfg.morph_rounds, children_per_round=cfg.morph_children,
                             init_steps=3 * cfg.morph_steps, finetune_steps=cfg.morph_steps, seed=cfg.seed,
                             rule=cfg.morph_rule, morphs_per_child=cfg.morphs_per_child)
    return NSGA2Searcher(population=cfg.population, generations=cfg.generations, seed=cfg.seed)


def _check_static_limits(cfg: SearchConfig, ev: Evaluator) -> None:
    s = ev.static(ev.space.smallest())
    lim = [("max_params", "params", cfg.max_params, "{:.0f} params"),
           ("max_model_mb", "model_mb", cfg.max_model_mb, "{:.2f} MB"),
           ("max_peak_mem_mb", "peak_mem_mb", cfg.max_peak_mem_mb, "{:.2f} MB")]
    for opt, key, v, fmt in lim:
        if v is not None and v < s[key]:
            raise InfeasibleError(f"--{opt.replace('_', '-')} {v:g} is below the smallest architecture's "
                                  f"{fmt.format(s[key])}: no architecture can meet it")


def run_search(cfg: SearchConfig, progress: Callable[[int, int], None] | None = None, searcher=None) -> SearchResult:
    """Run one search; raises ``InputError`` / ``InfeasibleError`` with a one-line message.
    ``searcher``: a prebuilt strategy object (default: made from ``cfg``), e.g. to read its
    state afterwards."""
    from ..accuracy import make_estimator
    from ..predictors import load_predictor
    from ..profile import Profile, warn_if_other_machine

    t0 = time.perf_counter()
    dirs = _profile_dirs(cfg)
    if cfg.profiles and len(cfg.budgets_ms) == len(cfg.profiles) != len(dirs):  # a fleet's budget: for each of its profiles
        from ..fleet.layout import fleet_profiles

        per = [len(fleet_profiles(Path(p)) or [p]) for p in cfg.profiles]
        cfg = replace(cfg, budgets_ms=tuple(b for b, k in zip(cfg.budgets_ms, per) for _ in range(k)))
    for d in dirs:
        warn_if_other_machine(d)
    if len(cfg.budgets_ms) != len(dirs):
        raise InputError(f"give one --budget-ms per --profile: {len(cfg.budgets_ms)} budgets for {len(dirs)} profiles")
    constraints = cfg.constraints()
    searcher = searcher if searcher is not None else make_searcher(cfg)
    preds = [load_predictor(d, cfg.latency_predictor, target_kind="arch") for d in dirs]
    space = preds[0].space_
    for d, p in zip(dirs, preds):
        if p.space_.to_dict() != space.to_dict():
            raise InputError(f"profile {d} was made for another search space than {dirs[0]}")
    if hasattr(searcher, "prepare"):  # loads what the strategy needs (gradient: the supernet), one-line errors
        searcher.prepare(space)
    acc = make_estimator(cfg.accuracy, cfg.accuracy_dir, space)
    ev = Evaluator(space, preds, [p.canary_reference_ms_ for p in preds], acc, constraints)
    _check_static_limits(cfg, ev)
    notes = []
    n_probe = PROBE_SAMPLES
    slow = [p.label for p in preds if not p.prices_quickly]
    if slow:
        # the kernel predictor (an ORT graph optimization per architecture): a probe of 2,000 samples kept
        # the search silent for minutes before it started; a probe the size of one population instead
        n_probe = min(PROBE_SAMPLES, cfg.population)
        notes.append(f"predictor {slow[0]} prices one architecture at a time (tens of ms each): the latency range "
                     f"was probed on {n_probe} random architectures and the extremes, not {PROBE_SAMPLES}")
    lo, hi, argmin = ev.latency_range(n_samples=n_probe, seed=cfg.seed)
    for d, b, l, h, a in zip(dirs, constraints.budgets_ms, lo, hi, argmin):
        if b < l:
            raise InfeasibleError(f"budget {b:g} ms is below the smallest latency reachable on profile {d}: "
                                  f"{l:.3f} ms ({a})")
        if b >= h:
            notes.append(f"budget {b:g} ms on {d} does not bind: every architecture fits (largest predicted "
                         f"{h:.3f} ms); returning the best by accuracy")
    problem = SearchProblem(ev, constraints.budgets_ms, seeds=space.archs_to_genomes(list(dict.fromkeys(argmin))))
    searcher.run(problem, progress)
    res = ev.history()
    feas = res.feasible(constraints.budgets_ms)
    k = max(1, cfg.verify)
    best, top = [], []
    for j, d in enumerate(dirs):
        idx = np.flatnonzero(feas[:, j])
        if idx.size == 0:
            raise InfeasibleError(f"the search found no architecture within {constraints.budgets_ms[j]:g} ms on {d} "
                                  f"that meets every constraint")
        idx = idx[np.lexsort((res.latency_ms[idx, j], -res.accuracy[idx]))]
        cands = []
        for i, a in zip(idx[:k], space.genomes_to_archs(res.genomes[idx[:k]])):
            st = ev.static(a)
            cands.append(Candidate(str(a), str(d), constraints.budgets_ms[j], float(res.latency_ms[i, j]),
                                   float(res.accuracy[i]), st["macs"], st["params"], st["model_mb"], st["peak_mem_mb"],
                                   [float(x) for x in res.latency_ms[i]]))
        top.append(cands)
        best.append(cands[0])
    return SearchResult(cfg, best, top, notes, ev.n_queries, time.perf_counter() - t0, res, ev.cost,
                        [float(x) for x in lo], [float(x) for x in hi], getattr(acc, "meaning", cfg.accuracy),
                        getattr(acc, "unit", ""))


def verify(result: SearchResult, k: int, progress: Callable[[int, int], None] | None = None) -> None:
    """Re-measure the best ``k`` per profile on the device; fills the ``measured_*`` fields.

    The measured figure is canary-corrected: measured canary-relative latency x the profile's
    canary reference, comparable with the prediction whatever the machine's state today."""
    from ..builders.onnx_graph import build_onnx
    from ..measure import Measurer
    from ..profile import Profile

    total = sum(min(k, len(t)) for t in result.top)
    done = 0
    for cands in result.top:
        prof = Profile.load(cands[0].profile, check_machine=False)
        with Measurer(prof.device) as m:
            for c in cands[:k]:
                meas = m.measure(build_onnx(Arch.parse(c.arch), batch=prof.device.batch_size), c.arch)
                c.measured_latency_ms = meas.relative_to_canary * prof.canary_reference_ms
                c.measured_latency_abs_ms = meas.latency_ms
                c.within_budget_measured = bool(c.measured_latency_ms <= c.budget_ms * (1 + VERIFY_TOLERANCE))
                done += 1
                if progress:
                    progress(done, total)


__all__ = ["SearchConfig", "SearchResult", "Candidate", "run_search", "verify", "InfeasibleError", "Constraints",
           "STRATEGIES", "MB"]
