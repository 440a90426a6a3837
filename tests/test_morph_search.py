"""--strategy morph: hill climbing with network morphisms on a toy latency model.  With a tiny
slice of the digits (a few training steps, the improve rule): every trained child fits the budget,
the climb follows accepted children, the same seed gives the same climb, an unreachable budget is a
one-line error.  With a scripted accuracy read-out (no training, real morphs; the NASH rule): the
round's best child becomes the parent even when less accurate, multi-morph children fit the budget
and compute the start model's function, the climb stops only when nothing fits, same seed same
climb; bad options are one-line errors."""

import sys
import zlib

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
                      train=TrainConfig(batch_size=16, calib_batches=1, calib_batch_size=32), rule="improve",
                      morphs_per_child=1)
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
    d = make_searcher(SearchConfig(budgets_ms=(5.0,), strategy="morph"))
    assert (d.rule, d.rounds, d.morphs_per_child) == ("nash", 8, 8)  # the defaults the benchmark ran
    s = make_searcher(SearchConfig(budgets_ms=(5.0,), strategy="morph", morph_rule="improve", morphs_per_child=1))
    assert (s.rule, s.morphs_per_child) == ("improve", 1)


@pytest.mark.parametrize("options, message", [
    ({"rule": "greedy"}, "unknown morph rule 'greedy'; choose from nash, improve"),
    ({"morphs_per_child": 0}, "morphs per child"),
])
def test_morph_searcher_refuses_bad_options_in_one_line(options, message):
    with pytest.raises(InputError, match=message) as e:
        MorphSearcher(**options)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match=message):  # through the search's config, as the CLI passes it
        make_searcher(SearchConfig(budgets_ms=(5.0,), strategy="morph",
                                   **{{"rule": "morph_rule"}.get(k, k): v for k, v in options.items()}))


def test_cli_refuses_an_unknown_morph_rule_in_one_line(capsys, monkeypatch):
    from hwnas.cli import main

    monkeypatch.setattr(sys, "argv", ["hwnas", "search", "--budget-ms", "5", "--strategy", "morph",
                                      "--morph-rule", "greedy", "--no-calibrate"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "unknown morph rule 'greedy'" in err


class _ScriptedTask:
    """Stands in for ProxyTask: real models (every morph is applied to real weights), no training,
    accuracy read from ``score(arch)``; records how far each model's eval output on a fixed input
    strays from the start model's (function-preserving morphs without training: not at all)."""

    def __init__(self, space: SearchSpace, score) -> None:
        self.space = space
        self.score = score
        self.x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
        self.ref: torch.Tensor | None = None
        self.max_dev = 0.0
        self.trained = 0

    def scratch(self, arch: Arch, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            from hwnas.builders.torch_model import build_torch
            return build_torch(arch, 10)

    def train(self, model, steps: int, seed: int) -> None:
        self.trained += steps

    def accuracy_pct(self, model, seed: int = 0) -> float:
        with torch.no_grad():
            y = model.eval()(self.x)
        if self.ref is None:
            self.ref = y
        self.max_dev = max(self.max_dev, float((y - self.ref).abs().max()))
        return self.score(model.arch)


def _crc_score(arch: Arch) -> float:
    """A fixed pseudo-random accuracy in [90, 95) per architecture."""
    return 90.0 + (zlib.crc32(str(arch).encode()) % 500) / 100.0


def _scripted(budget_ms: float, score=_crc_score, seed: int = 0, **kw):
    opts = {"rounds": 3, "children_per_round": 3, "init_steps": 1, "finetune_steps": 1, "morphs_per_child": 4} | kw
    s = MorphSearcher(seed=seed, **opts)
    s.task = _ScriptedTask(SPACE, score)
    ev = _ToyEvaluator(SPACE)
    s.run(SearchProblem(ev, (budget_ms,)))
    return s, ev


def _toy_ms(arch: Arch) -> float:
    return arch.width_mult * sum(b.kernel * b.expand for st in arch.stages for b in st) / 10.0


def test_nash_moves_to_the_best_child_even_when_less_accurate():
    start = str(SPACE.smallest())
    score = lambda a: 99.0 if str(a) == start else _crc_score(a)  # every child below the start's 99%
    s, ev = _scripted(14.0, score)
    assert s.steps[0].accuracy_pct == 99.0 and {st.round for st in s.steps} == {0, 1, 2, 3}  # all rounds run
    for r in (1, 2, 3):
        kids = [st for st in s.steps if st.round == r]
        top = max(kids, key=lambda st: st.accuracy_pct)
        assert [st for st in kids if st.accepted] == [top] and top.accuracy_pct < 99.0
        parent = [st for st in s.steps if st.accepted and st.round == r - 1][0]
        assert all(st.arch != parent.arch for st in kids)  # each child grew from that parent
    assert str(s.best) == [st for st in s.steps if st.accepted][-1].arch and ev.recorded == [s.best]
    # the improve rule on the same scripted accuracies stops after the first round at the start
    old, ev_old = _scripted(14.0, score, rule="improve")
    assert {st.round for st in old.steps} == {0, 1} and old.best == SPACE.smallest() == ev_old.recorded[0]
    assert not any(st.accepted for st in old.steps[1:])


def test_nash_children_are_several_morphs_that_fit_and_preserve_function():
    s, _ = _scripted(14.0)
    kids = s.steps[1:]
    n_morphs = [len(st.morph.split(" + ")) for st in kids]
    assert max(n_morphs) > 1 and max(n_morphs) <= 4 and len(kids) == 9
    for st in kids:
        a = Arch.parse(st.arch)
        assert _toy_ms(a) <= 14.0 and st.latency_ms[0] == pytest.approx(_toy_ms(a))
    assert s.task.max_dev < 1e-4  # untrained: every child computes the start model's function
    # one-morph children (the first version's draw) take a single step each
    one, _ = _scripted(14.0, morphs_per_child=1)
    assert all(" + " not in st.morph for st in one.steps[1:])


def test_nash_stops_early_only_when_no_child_fits():
    # 9.5 ms: from the smallest (9.0 ms) only one expand 3 -> 4 (+0.3 ms) fits; after it nothing does
    s, _ = _scripted(9.5, rounds=5)
    assert {st.round for st in s.steps} == {0, 1}
    assert all(st.morph.startswith("expand") and " + " not in st.morph for st in s.steps[1:])
    assert _toy_ms(s.best) == pytest.approx(9.3)


def test_nash_climb_is_seeded():
    a, _ = _scripted(14.0, seed=3, rounds=2, children_per_round=2)
    b, _ = _scripted(14.0, seed=3, rounds=2, children_per_round=2)
    c, _ = _scripted(14.0, seed=4, rounds=2, children_per_round=2)
    assert a.steps == b.steps and a.best == b.best
    assert [st.arch for st in c.steps] != [st.arch for st in a.steps]
