"""Search strategies: small objects, each owning its seeded RNG, behind one interface.

``run(problem, progress)`` explores the space through ``problem`` (which evaluates, caches and
records everything); the result is read from the problem's history afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..space import Block
from .problem import Evaluation, Evaluator, InfeasibleError

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class SearchProblem:
    evaluator: Evaluator
    budgets_ms: tuple[float, ...]
    #: genomes known to be fast (the fastest architectures found while probing the latency
    #: range): a tight budget that random samples never meet still gets a population from them
    seeds: np.ndarray | None = None

    @property
    def space(self):
        return self.evaluator.space

    def evaluate(self, G: np.ndarray) -> Evaluation:
        return self.evaluator.evaluate_genomes(G)

    def feasible_any(self, ev: Evaluation) -> np.ndarray:
        return ev.feasible(self.budgets_ms).any(axis=1)


class Searcher:
    name = "base"
    #: search settings (``SearchConfig`` fields) this strategy does not read: the CLI refuses them
    unused_options: tuple[str, ...] = ()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:  # pragma: no cover
        raise NotImplementedError


def _select(ev: Evaluation, feas: np.ndarray, k: int) -> np.ndarray:
    """Row indices of up to ``k`` best by accuracy, shared fairly among profiles (columns)."""
    n_prof = feas.shape[1]
    per = max(1, k // n_prof)
    chosen: list[int] = []
    for j in range(n_prof):
        idx = np.flatnonzero(feas[:, j])
        idx = idx[np.argsort(-ev.accuracy[idx], kind="stable")]
        for i in idx[:per]:
            if int(i) not in chosen:
                chosen.append(int(i))
    return np.asarray(chosen[:k], dtype=np.int64)


class EvolutionSearcher(Searcher):
    """Once-for-All's constrained evolution, vectorized over index genomes: parents by
    accuracy among feasible members; mutants (each gene re-drawn with ``mutate_prob``) and
    uniform crossovers, re-drawn in batches at most ``max_tries`` rounds until feasible and new
    to the population.  The population never holds duplicates, so it cannot collapse onto one
    architecture, and an infeasible corner cannot hang it."""

    name = "evolution"

    def __init__(self, population: int = 100, generations: int = 500, parents: int = 25, mutants: int = 50,
                 crossovers: int = 50, mutate_prob: float = 0.1, max_tries: int = 20, seed: int = 0) -> None:
        super().__init__(seed)
        if min(population, generations, parents) < 1 or mutants < 0 or crossovers < 0:
            raise ValueError("population, generations and parents must be >= 1")
        self.population = population
        self.generations = generations
        self.parents = min(parents, population)
        self.mutants = mutants
        self.crossovers = crossovers
        self.mutate_prob = mutate_prob
        self.max_tries = max_tries

    def _fill(self, problem: SearchProblem, make, n: int, seen: set[bytes]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        rate = 0.5  # share of drawn genomes kept (new and feasible), re-estimated after each draw
        for _ in range(self.max_tries):
            need = n - len(out)
            if need <= 0:
                break
            # over-draw by the expected rejection: fewer, larger batches (each model call has a fixed cost)
            m = min(int(need / rate) + 4, 20 * n + 4)
            ev = problem.evaluate(make(m))
            ok = problem.feasible_any(ev)
            kept = 0
            for g, f in zip(ev.genomes, ok):
                k = g.tobytes()
                if f and k not in seen:
                    seen.add(k)
                    out.append(g)
                    kept += 1
                    if len(out) == n:
                        break
            rate = max(kept / m, 0.05)
        return out

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        space, rng = problem.space, self.rng
        card = space.genome_cardinalities
        seen: set[bytes] = set()
        pop = self._fill(problem, lambda m: space.random_genomes(rng, m), self.population, seen)
        if len(pop) < self.population and problem.seeds is not None and len(problem.seeds):
            seeds = problem.seeds

            def near_seeds(m: int) -> np.ndarray:
                base = seeds[rng.integers(len(seeds), size=m)]
                hit = rng.random(base.shape) < 0.2
                return np.where(hit, rng.integers(card, size=base.shape), base)

            pop += self._fill(problem, lambda m: seeds, len(seeds), seen)
            pop += self._fill(problem, near_seeds, self.population - len(pop), seen)
        if not pop:
            raise InfeasibleError("no architecture satisfies all constraints together "
                                  f"({self.max_tries * self.population} sampled)")
        P = np.asarray(pop)
        for g in range(self.generations):
            ev = problem.evaluate(P)
            sel = _select(ev, ev.feasible(problem.budgets_ms), self.parents)
            parents = ev.genomes[sel] if len(sel) else ev.genomes[: self.parents]
            seen = {row.tobytes() for row in parents}

            def mutate(m: int) -> np.ndarray:
                base = parents[rng.integers(len(parents), size=m)]
                hit = rng.random(base.shape) < self.mutate_prob
                return np.where(hit, rng.integers(card, size=base.shape), base)

            def cross(m: int) -> np.ndarray:
                a = parents[rng.integers(len(parents), size=m)]
                b = parents[rng.integers(len(parents), size=m)]
                return np.where(rng.random(a.shape) < 0.5, a, b)

            kids = self._fill(problem, mutate, self.mutants, seen) + self._fill(problem, cross, self.crossovers, seen)
            P = np.vstack([parents] + ([np.asarray(kids)] if kids else []))
            if progress:
                progress(g + 1, self.generations)


class RandomSearcher(Searcher):
    """Uniform samples; the best feasible one wins."""

    name = "random"

    def __init__(self, n_samples: int = 5000, seed: int = 0) -> None:
        super().__init__(seed)
        self.n_samples = n_samples

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        done = 0
        while done < self.n_samples:
            n = min(5000, self.n_samples - done)
            problem.evaluate(problem.space.random_genomes(self.rng, n))
            done += n
            if progress:
                progress(done, self.n_samples)


class GridSearcher(Searcher):
    """The classic exercise: a grid over resolution x width multiplier x per-stage depth, with
    every block set to one of ``blocks``; the best estimated accuracy within the budget (and
    the parameter limit) wins.  Deterministic: the seed is not used."""

    name = "grid"
    unused_options = ("population", "generations", "seed")

    def __init__(self, blocks: tuple[str, ...] = ("k3e3", "k5e4", "k7e6"), seed: int = 0) -> None:
        super().__init__(seed)
        self.blocks = blocks

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        grids = []
        for b in self.blocks:
            k, e = b[1:].split("e")
            grids.append(Block(int(k), int(e)))
        total = len(grids)
        for i, blk in enumerate(grids):
            problem.evaluate(problem.space.archs_to_genomes(list(problem.space.enumerate_grid(block=blk))))
            if progress:
                progress(i + 1, total)


class NSGA2Searcher(Searcher):
    """NSGA-II (pymoo) on (accuracy, latency on the first profile): the Pareto front in one run.
    Other profiles' budgets and the static limits are constraints."""

    name = "nsga2"

    def __init__(self, population: int = 100, generations: int = 100, seed: int = 0) -> None:
        super().__init__(seed)
        self.population = population
        self.generations = generations

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.operators.sampling.rnd import IntegerRandomSampling
        from pymoo.optimize import minimize

        xu = problem.space.genome_cardinalities - 1
        budgets = np.asarray(problem.budgets_ms)
        done = [0]
        searcher = self

        class _P(Problem):
            def __init__(self):
                super().__init__(n_var=len(xu), n_obj=2, n_ieq_constr=len(budgets) + 1, xl=0, xu=xu, vtype=int)

            def _evaluate(self, X, out, *args, **kwargs):
                ev = problem.evaluate(np.asarray(np.round(X), dtype=np.int64))
                out["F"] = np.stack([-ev.accuracy, ev.latency_ms[:, 0]], axis=1)
                g = ev.latency_ms - budgets[None, :]
                out["G"] = np.hstack([g, np.where(ev.static_ok, -1.0, 1.0)[:, None]])
                done[0] += 1
                if progress:
                    progress(min(done[0], searcher.generations), searcher.generations)

        algo = NSGA2(pop_size=self.population, sampling=IntegerRandomSampling(),
                     crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                     mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
        minimize(_P(), algo, ("n_gen", self.generations), seed=int(self.rng.integers(2**31 - 1)), verbose=False)


STRATEGIES = {"evolution": EvolutionSearcher, "random": RandomSearcher, "grid": GridSearcher, "nsga2": NSGA2Searcher}
