"""Hill climbing with network morphisms (``--strategy morph``; Elsken et al. 2017, NASH).

Start from the space's smallest architecture trained briefly on the proxy data; each round draw up to
``children_per_round`` children of the incumbent and keep their predicted latency inside every
profile's budget and the static limits (the search's latency predictors, as the other strategies
use).  A child is a sequence of 1 to ``morphs_per_child`` one-step morphs
(:func:`hwnas.morph.children`; the count drawn uniformly per child): its first morph is drawn
without replacement among the incumbent's one-step morphs that fit, so the round's children
differ, and each further morph at random among the fitting one-step morphs of the child so far.
Each morph carries the weights over function-preservingly (:func:`hwnas.morph.apply_morph`);
the child is then fine-tuned briefly and its validation accuracy read.

Two acceptance rules (``rule``):

``nash`` (the default; Elsken et al.'s NASH)
    the round's most accurate child always becomes the incumbent, even when it is less accurate
    than the incumbent was: on a saturated proxy (digits: ~97% for every architecture) those
    differences are noise, and refusing them stops the climb next to its start.  The climb runs
    all ``rounds`` and stops early only when no child fits the budget.
    The paper's Algorithm 1 also keeps the parent, trained further, among a round's candidates
    and applies a fixed number of morphs per child; here the parent is not a candidate (so the
    climb moves every round) and the count is drawn per child (small and large steps both tried).
``improve``
    the best child replaces the incumbent only when it is at least as accurate; otherwise the
    climb stops.  With ``morphs_per_child=1`` this is the rule (and, seed for seed, the climb)
    of the first version.

The search returns the final incumbent under either rule (NASH's Algorithm 1 returns its last
best child too), not the most accurate architecture seen: under ``improve`` the two coincide;
under ``nash`` on a saturated proxy the highest accuracy seen is the luckiest draw of the seed
noise, whatever its size, while the final incumbent has grown towards the budget
(what the search is given) and carries the most training.  Every trained child is in
:attr:`MorphSearcher.steps`, for anyone who wants another pick.

Only the final incumbent is scored through the search's evaluator, so the search's result is the
climb's pick; its ``accuracy_estimate`` is the search's accuracy estimator's, while the accuracy
the climb measured is in :attr:`MorphSearcher.steps`.  Seeded: the children drawn, their channel
mappings and every training run come from the searcher's own generator; the same seed gives the
same climb (torch runs on ``threads`` threads during the climb, then the caller's count is restored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..morph import Morph, apply_morph, children
from ..accuracy.supernet.training import TrainConfig
from ..morph.train import ProxyTask
from ..space import Arch, SearchSpace
from .problem import InfeasibleError
from .strategies import Progress, SearchProblem, Searcher


#: the acceptance rules, the default first
RULES = ("nash", "improve")


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`RULES`; a one-line InputError otherwise."""
    if rule not in RULES:
        raise InputError(f"unknown morph rule {rule!r}; choose from {', '.join(RULES)}")
    return rule


@dataclass(frozen=True)
class MorphStep:
    """One trained architecture of the climb (round 0: the start).  ``morph``: the child's morphs
    from the incumbent, joined by `` + ``; ``accepted``: it became the incumbent."""

    round: int
    morph: str
    arch: str
    accuracy_pct: float
    latency_ms: tuple[float, ...]
    accepted: bool


class MorphSearcher(Searcher):
    name = "morph"
    unused_options = ("population", "generations", "n_samples")

    def __init__(self, data: str = "builtin:digits", rounds: int = 8, children_per_round: int = 4,
                 init_steps: int = 300, finetune_steps: int = 100, noise_std: float = 0.0,
                 train: TrainConfig | None = None, threads: int = 1, seed: int = 0, rule: str = "nash",
                 morphs_per_child: int = 8) -> None:
        super().__init__(seed)
        if min(rounds, children_per_round, init_steps, finetune_steps, threads, morphs_per_child) < 1:
            raise InputError("morph search needs rounds, children per round, morphs per child, initial and "
                             "fine-tune steps, threads >= 1")
        self.data = data
        self.rounds = rounds
        self.children_per_round = children_per_round
        self.init_steps = init_steps
        self.finetune_steps = finetune_steps
        self.noise_std = noise_std
        self.threads = threads
        self.rule = check_rule(rule)
        self.morphs_per_child = morphs_per_child
        self.train_config = train or TrainConfig()
        self.task: ProxyTask | None = None
        self.steps: list[MorphStep] = []
        self.best: Arch | None = None
        self.model = None  # the final incumbent's trained model

    def prepare(self, space: SearchSpace) -> None:
        """Load the proxy data (one-line errors)."""
        self.task = ProxyTask.load(self.data, space, self.train_config, split_seed=self.seed)

    def _seed(self) -> int:
        return int(self.rng.integers(2**31 - 1))

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # small models: on a busy CPU, more threads mostly contend
        try:
            self._run(problem, progress)
        finally:
            torch.set_num_threads(threads)

    def _fitting(self, arch: Arch, space: SearchSpace, fits) -> tuple[list[Morph], np.ndarray, np.ndarray]:
        """``arch``'s one-step morphs (seeds drawn from the searcher's generator), their children's
        predicted latencies and the indices of those that fit (empty when none does)."""
        morphs = children(arch, self.rng, space)
        if not morphs:
            return morphs, np.zeros((0, 0)), np.zeros(0, int)
        lat, ok = fits([m.child(arch, space) for m in morphs])
        return morphs, lat, np.flatnonzero(ok)

    def _extend(self, first: Morph, first_lat: np.ndarray, arch: Arch, space: SearchSpace,
                fits) -> tuple[list[Morph], np.ndarray]:
        """``first`` (whose child's predicted latencies are ``first_lat``) followed by up to
        ``morphs_per_child`` - 1 more one-step morphs (the count drawn uniformly), each drawn among
        those whose result fits; fewer when none fits.  Returns the morphs and the child's predicted
        latencies."""
        seq = [first]
        cur = first.child(arch, space)
        lat = first_lat[None, :]
        for _ in range(int(self.rng.integers(1, self.morphs_per_child + 1)) - 1):
            nxt, kid_lat, legal = self._fitting(cur, space, fits)
            if legal.size == 0:
                break
            i = int(self.rng.choice(legal))
            seq.append(nxt[i])
            cur, lat = nxt[i].child(cur, space), kid_lat[i:i + 1]
        return seq, lat[0]

    def _run(self, problem: SearchProblem, progress: Progress | None) -> None:
        space = problem.space
        if self.task is None or self.task.space != space:
            self.prepare(space)
        task = self.task
        budgets = np.asarray(problem.budgets_ms, dtype=float)

        def fits(archs: list[Arch]) -> tuple[np.ndarray, np.ndarray]:
            lat, ok = problem.evaluator.predict_genomes(space.archs_to_genomes(archs))
            return lat, ok & (lat <= budgets[None, :]).all(axis=1)

        arch = space.smallest()
        lat, ok = fits([arch])
        if not ok[0]:
            raise InfeasibleError(f"morph search starts from the smallest architecture {arch}, which does not meet "
                                  f"the budget and limits (predicted {', '.join(f'{v:.3f}' for v in lat[0])} ms)")
        total = self.init_steps + self.rounds * self.children_per_round * self.finetune_steps
        done = 0
        model = task.scratch(arch, self._seed())
        task.train(model, self.init_steps, self._seed())
        acc = task.accuracy_pct(model, self.seed)
        done += self.init_steps
        if progress:
            progress(done, total)
        self.steps = [MorphStep(0, "start", str(arch), acc, tuple(float(v) for v in lat[0]), True)]
        for r in range(1, self.rounds + 1):
            morphs, lat, legal = self._fitting(arch, space, fits)
            if legal.size == 0:
                break
            pick = self.rng.choice(legal, size=min(self.children_per_round, legal.size), replace=False)
            best = None
            for i in sorted(int(j) for j in pick):
                seq, child_lat = ([morphs[i]], lat[i]) if self.morphs_per_child == 1 else \
                    self._extend(morphs[i], lat[i], arch, space, fits)
                child, new = arch, model
                for m in seq:  # every step function-preserving: the child starts from the incumbent's function
                    child, new = apply_morph(new, m, space, self.noise_std)
                task.train(new, self.finetune_steps, self._seed())
                a = task.accuracy_pct(new, self.seed)
                done += self.finetune_steps
                if progress:
                    progress(done, total)
                self.steps.append(MorphStep(r, " + ".join(str(m) for m in seq), str(child), a,
                                            tuple(float(v) for v in child_lat), False))
                if best is None or a > best[0]:
                    best = (a, child, new, len(self.steps) - 1)
            if self.rule == "improve" and best[0] < acc:
                break
            acc, arch, model, at = best
            s = self.steps[at]
            self.steps[at] = MorphStep(s.round, s.morph, s.arch, s.accuracy_pct, s.latency_ms, True)
        self.best = arch
        self.model = model
        problem.evaluate(space.archs_to_genomes([arch]))
