"""--strategy morph: hill climbing with network morphisms on a toy latency model and a tiny slice
of the digits (a few training steps): every trained child fits the budget, the climb follows
accepted children, the same seed gives the same climb, an unreachable budget is a one-line error."""

import numpy as np
import pytest
import torch

from hwnas.accuracy.data import ImageDataset, load_digits_dataset
from hwnas.errors import InputError
from hwnas.accuracy.supernet.training import TrainConfig
from hwnas.morph.train import ProxyTask
from hwnas.search import STRATEGIES, SearchConfig
from hwnas.search import make_searcher
from hwnas.search.morph import MorphSearcher
from hwnas.search.problem import Evaluation, InfeasibleError
from hwnas.search.strategies import SearchProblem
from hwnas.space import N_STAGES, Arch, SearchSpace

SPACE = SearchSpace(resolutions=(128,), width_mults=(1.0, 1.2), depths=(2, 3), kernels=(3, 5), expands=(3, 4))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_digits():
    d = load_digits_dataset()
    return ImageDataset(d.images[:200], d.labels[:200], d.classes, "digits[:200]")


class _ToyEvaluator:
    """Latency = width x sum over blocks of kernel x expand / 10 ms (smallest: 9 ms); accuracy 0."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.recorded: list[Arch] = []

    def predict_genomes(self, G):
        X = self.space.genomes_to_ordinal(self.space.canonical(G))
        blocks = X[:, 2 + N_STAGES:].reshape(len(X), -1, 2).prod(-1).sum(1)
        return (X[:, 1] * blocks / 10.0)[:, None].astype(float), np.ones(len(X), bool)

    def evaluate_genomes(self, G):
        G = self.space.canonical(G)
        self.recorded += self.space.genomes_to_archs(G)
        lat, ok = self.predict_genomes(G)
        return Evaluation(self.space, G, lat, np.zeros(len(G)), ok)


def _climb(data, seed: int, budget_ms: float):
    s = MorphSearcher(rounds=2, children_per_round=2, init_steps=4, finetune_steps=2, seed=seed,
                      train=TrainConfig(batch_size=16, calib_batches=1, calib_batch_size=32))
    s.task = ProxyTask(data, SPACE, s.train_config, split_seed=seed)
    ev = _ToyEvaluator(SPACE)
    s.run(SearchProblem(ev, (budget_ms,)))
    return s, ev


@pytest.mark.slow  # two climbs with real training: ~25 s here
def test_morph_climb_stays_in_budget_and_is_seeded(tiny_digits):
    # 9.5 ms: from the smallest (9.0 ms) only expand 3 -> 4 (+0.3 ms) fits; a kernel 3 -> 5 (+0.6),
    # a deeper stage (+0.9) or the wider network (10.8) would not
    s, ev = _climb(tiny_digits, 0, 9.5)
    assert s.steps[0].morph == "start" and s.steps[0].arch == str(SPACE.smallest())
    assert len(s.steps) >= 3 and all(st.morph.startswith("expand") for st in s.steps[1:])
    assert all(st.latency_ms[0] <= 9.5 and 0.0 <= st.accuracy_pct <= 100.0 for st in s.steps)
    accepted = [st for st in s.steps if st.accepted]
    assert accepted[-1].arch == str(s.best) and ev.recorded == [s.best]  # only the climb's pick is scored
    assert all(b.accuracy_pct >= a.accuracy_pct for a, b in zip(accepted, accepted[1:]))
    again, _ = _climb(tiny_digits, 0, 9.5)
    assert again.steps == s.steps


def test_morph_search_refuses_a_budget_below_its_start(tiny_digits):
    with pytest.raises(InfeasibleError, match="starts from the smallest architecture"):
        _climb(tiny_digits, 0, 8.0)


def test_morph_strategy_is_registered_and_checks_its_settings():
    assert STRATEGIES["morph"] is MorphSearcher and "population" in MorphSearcher.unused_options
    s = make_searcher(SearchConfig(budgets_ms=(5.0,), strategy="morph", morph_rounds=3, morph_children=2,
                                   morph_steps=7))
    assert (s.rounds, s.children_per_round, s.finetune_steps, s.init_steps) == (3, 2, 7, 21)
    with pytest.raises(InputError, match="rounds, children per round"):
        MorphSearcher(rounds=0)
