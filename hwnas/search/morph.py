"""Hill climbing with network morphisms (``--strategy morph``; Elsken et al. 2017, NASH).

Start from the space's smallest architecture trained briefly on the proxy data; each round list
the incumbent's one-step morphs (:func:`hwnas.morph.children`), keep those whose children fit
every profile's budget and the static limits (predicted by the search's latency predictors, as
the other strategies do), draw up to ``children_per_round`` of them, build each child with the
incumbent's weights carried over function-preservingly, fine-tune it briefly and read its
validation accuracy.  The best child replaces the incumbent when it is at least as accurate;
otherwise (or when no child fits) the climb stops.

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
from ..morph import apply_morph, children
from ..accuracy.supernet.training import TrainConfig
from ..morph.train import ProxyTask
from ..space import Arch, SearchSpace
from .problem import InfeasibleError
from .strategies import Progress, SearchProblem, Searcher


@dataclass(frozen=True)
class MorphStep:
    """One trained architecture of the climb (round 0: the start)."""

    round: int
    morph: str
    arch: str
    accuracy_pct: float
    latency_ms: tuple[float, ...]
    accepted: bool


class MorphSearcher(Searcher):
    name = "morph"
    unused_options = ("population", "generations", "n_samples")

    def __init__(self, data: str = "builtin:digits", rounds: int = 4, children_per_round: int = 4,
                 init_steps: int = 300, finetune_steps: int = 100, noise_std: float = 0.0,
                 train: TrainConfig | None = None, threads: int = 1, seed: int = 0) -> None:
        super().__init__(seed)
        if min(rounds, children_per_round, init_steps, finetune_steps, threads) < 1:
            raise InputError("morph search needs rounds, children per round, initial and fine-tune steps, threads >= 1")
        self.data = data
        self.rounds = rounds
        self.children_per_round = children_per_round
        self.init_steps = init_steps
        self.finetune_steps = finetune_steps
        self.noise_std = noise_std
        self.threads = threads
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
            morphs = children(arch, self.rng, space)
            if not morphs:
                break
            kids = [m.child(arch, space) for m in morphs]
            lat, ok = fits(kids)
            legal = np.flatnonzero(ok)
            if legal.size == 0:
                break
            pick = self.rng.choice(legal, size=min(self.children_per_round, legal.size), replace=False)
            best = None
            for i in sorted(int(j) for j in pick):
                child, new = apply_morph(model, morphs[i], space, self.noise_std)
                task.train(new, self.finetune_steps, self._seed())
                a = task.accuracy_pct(new, self.seed)
                done += self.finetune_steps
                if progress:
                    progress(done, total)
                self.steps.append(MorphStep(r, str(morphs[i]), str(child), a, tuple(float(v) for v in lat[i]), False))
                if best is None or a > best[0]:
                    best = (a, child, new, len(self.steps) - 1)
            if best is None or best[0] < acc:
                break
            acc, arch, model, at = best
            s = self.steps[at]
            self.steps[at] = MorphStep(s.round, s.morph, s.arch, s.accuracy_pct, s.latency_ms, True)
        self.best = arch
        self.model = model
        problem.evaluate(space.archs_to_genomes([arch]))
