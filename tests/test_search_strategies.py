"""REINFORCE (--strategy rl) and ProxylessNAS (--strategy gradient): toy problems with known
answers, the exact latency term, seeding, bad input.  Real torch; tiny spaces and data."""

import dataclasses
import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwnas.accuracy.data import ImageDataset, load_digits_dataset
from hwnas.accuracy.supernet import Batches, Supernet, TrainConfig, train_supernet
from hwnas.errors import InputError
from hwnas.paths import default_profile_dir
from hwnas.predictors import load_predictor
from hwnas.search import SearchConfig, run_search
from hwnas.search.gradient import (Choices, GradientConfig, LatencyTable, SupernetPaths, alpha_grad_two_path,
                                   masked_probs, run_gradient)
from hwnas.search.problem import Evaluation
from hwnas.search.rl import RLSearcher, active_decisions, mnas_reward
from hwnas.search.strategies import SearchProblem
from hwnas.space import N_STAGES, SearchSpace

PROFILE = str(default_profile_dir())
TOY = SearchSpace(resolutions=(128, 160), width_mults=(1.0,), depths=(1, 2), kernels=(3, 5), expands=(3, 4))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------
# REINFORCE


class _AdditiveEvaluator:
    """Reward = sum over the active decisions of a fixed value per (decision, choice)."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        card = space.genome_cardinalities
        self.values = np.random.default_rng(seed).uniform(1.0, 2.0, size=(len(card), card.max()))
        self.n_queries = 0
        self._seen: set = set()

    def evaluate_genomes(self, G):
        G = self.space.canonical(G)
        for row in G:
            if row.tobytes() not in self._seen:
                self._seen.add(row.tobytes())
                self.n_queries += 1
        v = self.values[np.arange(G.shape[1])[None, :], G] * active_decisions(self.space, G)
        return Evaluation(self.space, G, np.ones((len(G), 1)), v.sum(1), np.ones(len(G), bool))

    def best(self) -> np.ndarray:
        """All values are positive, so the deepest stages and the best choice everywhere win."""
        card = self.space.genome_cardinalities
        g = np.array([int(np.argmax(self.values[i, :c])) for i, c in enumerate(card)])
        g[2:2 + N_STAGES] = len(self.space.depths) - 1
        return self.space.canonical(g[None, :])[0]


def test_reinforce_converges_to_the_argmax_of_an_additive_reward():
    ev = _AdditiveEvaluator(TOY, seed=1)
    s = RLSearcher(n_samples=10**9, batch=50, lr=0.05, max_steps=250, seed=0)
    s.run(SearchProblem(ev, (2.0,)))
    assert np.array_equal(s.best_guess(TOY), ev.best())
    assert s.history[-1]["reward"] > s.history[0]["reward"]


def test_reinforce_log_prob_counts_active_decisions_only():
    G = np.zeros((2, len(TOY.genome_cardinalities)), dtype=np.int64)
    G[1, 2:2 + N_STAGES] = 1  # depth 2 everywhere
    act = active_decisions(TOY, G)
    md = TOY.max_depth
    assert act[0].sum() == 2 + N_STAGES + N_STAGES * 2  # one block slot (kernel, expand) per stage
    assert act[1].sum() == 2 + N_STAGES + N_STAGES * md * 2


def test_mnas_reward_soft_and_hard():
    acc = np.array([80.0, 80.0, 80.0])
    lat = np.array([[5.0], [10.0], [20.0]])
    soft = mnas_reward(acc, lat, (10.0,), "soft")
    assert soft[0] > soft[1] == 80.0 > soft[2]
    assert soft[2] == pytest.approx(80 * 2**-0.07)
    hard = mnas_reward(acc, lat, (10.0,), "hard")
    assert list(hard) == [80.0, 80.0, 40.0]
    with pytest.raises(InputError, match="unknown reward"):
        mnas_reward(acc, lat, (10.0,), "medium")


@pytest.mark.parametrize("controller, reward", [("categorical", "soft"), ("lstm", "hard")])
def test_rl_search_is_seeded_and_respects_the_budget(controller, reward):
    cfg = SearchConfig(budgets_ms=(6.0,), strategy="rl", accuracy="params", n_samples=300, seed=4,
                       rl_controller=controller, rl_reward=reward)
    r1, r2 = run_search(cfg), run_search(cfg)
    assert r1.best[0].arch == r2.best[0].arch and r1.n_queries == r2.n_queries >= 300
    assert r1.best[0].predicted_latency_ms <= 6.0
    h1, h2 = r1.history(), r2.history()
    assert list(h1["arch"]) == list(h2["arch"])
    r3 = run_search(SearchConfig(**{**cfg.__dict__, "seed": 5}))
    assert list(r3.history()["arch"]) != list(h1["arch"])
    assert torch.get_num_threads() == 1  # restored (this test runs with one thread)


# --------------------------------------------------------------------------------------------
# ProxylessNAS: the latency term


def _table(space, seed=0):
    ch = Choices(space, space.resolutions[0], space.width_mults[0])
    ms = np.random.default_rng(seed).uniform(0.1, 1.0, size=(N_STAGES, space.max_depth, ch.n))
    ms[..., ch.skip] = 0.0
    return ch, LatencyTable(1.5, ms)


def test_expected_latency_is_exact():
    space = SearchSpace(resolutions=(128,), width_mults=(1.0,), depths=(1, 2), kernels=(3, 5), expands=(3,))
    ch, t = _table(space)
    alpha = torch.randn(N_STAGES, space.max_depth, ch.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = masked_probs(alpha, ch.allowed).numpy()
    # enumerate every joint choice: slot 0 has 2 choices, slot 1 has 2 + skip
    per_stage = list(itertools.product(range(2), range(3)))
    brute = 0.0
    for combo in itertools.product(per_stage, repeat=N_STAGES):
        C = np.array(combo)
        prob = np.prod([p[s, j, C[s, j]] for s in range(N_STAGES) for j in range(2)])
        brute += prob * t.choice_ms(C, ch.skip)
    assert float(t.expected_ms(masked_probs(alpha, ch.allowed))) == pytest.approx(brute, rel=1e-12)


def test_expected_latency_gradient_matches_finite_differences():
    ch, t = _table(SearchSpace(resolutions=(128,), width_mults=(1.0,)), seed=3)
    alpha = torch.randn(N_STAGES, ch.space.max_depth, ch.n, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    grad = torch.autograd.grad(t.expected_ms(masked_probs(alpha, ch.allowed)), alpha)[0]
    eps = 1e-6
    rng = np.random.default_rng(0)
    allowed = np.argwhere(ch.allowed)
    for s, j, c in allowed[rng.choice(len(allowed), 25, replace=False)]:
        a = alpha.detach().clone()
        a[s, j, c] += eps
        up = float(t.expected_ms(masked_probs(a, ch.allowed)))
        a[s, j, c] -= 2 * eps
        down = float(t.expected_ms(masked_probs(a, ch.allowed)))
        assert float(grad[s, j, c]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)
    assert not grad[~torch.as_tensor(ch.allowed)].any()  # a forbidden skip gets no gradient


def test_latency_table_prices_an_architecture_as_the_lut_predictor():
    lut = load_predictor(PROFILE, "lut")
    space = lut.space_
    rng = np.random.default_rng(0)
    for r, w in [(space.resolutions[0], space.width_mults[0]), (space.resolutions[-1], space.width_mults[-1])]:
        ch = Choices(space, r, w)
        t = LatencyTable.from_lut(lut, ch)
        for _ in range(5):
            C = rng.integers(0, ch.n, size=(N_STAGES, space.max_depth))
            C[~ch.allowed[np.arange(N_STAGES)[:, None], np.arange(space.max_depth)[None, :], C]] = 0
            a = ch.arch(C)
            want = float(lut.predict_encoded(space.encode([a]))[0]) * lut.canary_reference_ms_
            assert t.choice_ms(C, ch.skip) == pytest.approx(want, rel=1e-9)
        fastest = t.min_ms(ch)
        assert fastest <= min(t.choice_ms(rng.integers(0, ch.n - 1, size=(N_STAGES, space.max_depth)), ch.skip)
                              for _ in range(20))


# --------------------------------------------------------------------------------------------
# ProxylessNAS: the search


class _ToyPaths(torch.nn.Module):
    """Logits = sum over blocks of the chosen path's output; path c pushes the right class by
    ``quality[c]`` (skip: 0), so the best path is known.  One dummy weight."""

    def __init__(self, choices: Choices, quality: np.ndarray) -> None:
        super().__init__()
        self.q = torch.as_tensor(quality, dtype=torch.float32)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.md = choices.space.max_depth

    def _out(self, n, c):
        o = torch.zeros(n, 2)
        o[:, 0] = self.q[c]
        return o

    def forward_arch(self, x, arch):
        out = torch.zeros(len(x), 2) + self.w
        for stage in arch.stages:
            for b in stage:
                out = out + self._out(len(x), self.index[(b.kernel, b.expand)])
        return out

    def forward_gated(self, x, choices, pairs, active, gates):
        out = torch.zeros(len(x), 2) + self.w
        for s in range(N_STAGES):
            for j in range(self.md):
                g = gates[(s, j)] = torch.zeros(2)
                g[int(active[s, j])] = 1.0
                g.requires_grad_(True)
                o = [self._out(len(x), int(c)) for c in pairs[s, j]]
                out = out + g[0] * o[0] + g[1] * o[1]
                if pairs[s, j, active[s, j]] == choices.skip:
                    break
        return out


class _Zeros:
    def tensor(self, idx):
        return torch.zeros(len(idx), 1)


def _toy_run(seed, cfg=None, budget_ms=100.0):
    ch = Choices(TOY, 128, 1.0)
    quality = np.linspace(0.0, -0.3, ch.n)  # choice 0 best ...
    quality[ch.skip] = 0.0
    model = _ToyPaths(ch, quality)
    model.index = {(b.kernel, b.expand): i for i, b in enumerate(ch.blocks)}
    ms = np.tile(np.linspace(0.2, 0.5, ch.n), (N_STAGES, TOY.max_depth, 1))  # ... and fastest
    ms[..., ch.skip] = 0.0
    t = LatencyTable(1.0, ms)
    cfg = cfg or GradientConfig(steps=200, alpha_every=1, batch_size=8, alpha_lr=0.1, budget_mode=False,
                                lat_weight=0.5)
    labels = np.zeros(400, dtype=np.int64)
    return ch, run_gradient(model, _Zeros(), np.arange(400), labels, ch, [t], [budget_ms], cfg, seed=seed)


def test_gradient_alpha_converges_to_the_faster_and_better_path():
    ch, run = _toy_run(0)
    best = ch.blocks[0]
    # slot 0 of every stage cannot skip: its most likely choice is the best block
    assert all(run.probs[s, 0].argmax() == 0 and run.probs[s, 0, 0] > 0.5 for s in range(N_STAGES))
    assert all(stage[0] == best for stage in run.arch.stages)
    assert run.alpha_steps == 200 and run.meets_budget


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_gradient_same_seed_same_result():
    _, a = _toy_run(7)
    _, b = _toy_run(7)
    _, c = _toy_run(8)
    assert np.array_equal(a.probs, b.probs) and a.arch == b.arch
    assert not np.array_equal(a.probs, c.probs)


def test_gradient_budget_mode_spends_the_budget_and_sharpens():
    """Budget mode, lambda starting at 0: on the toy the fastest path is also the best, so alone
    the CE ends far under T; the band's lower multiplier (lambda < 0: latency pays) brings the
    derived architecture up towards [0.9 T, T], and the annealed temperature makes E[lat]
    describe the derived architecture."""
    cfg = GradientConfig(steps=40, alpha_every=1, batch_size=8, alpha_lr=0.3, lambda_lr=10.0)
    _, run = _toy_run(0, cfg, budget_ms=4.0)
    _, no_band = _toy_run(0, dataclasses.replace(cfg, band_low=0.0), budget_ms=4.0)
    assert 0.8 * 4.0 <= run.lut_ms[0] <= 4.0 and no_band.lut_ms[0] < 0.7 * 4.0
    assert run.expected_ms[0] == pytest.approx(run.lut_ms[0], rel=0.03)
    assert min(h["lambda"][0] for h in run.history) < 0 and run.tau == pytest.approx(cfg.tau_end)
    taus = [h["tau"] for h in run.history]
    assert cfg.tau(0) == 1.0 and all(a > b for a, b in zip(taus, taus[1:]))


@pytest.mark.parametrize("tau", [1.0, 0.2])
def test_two_path_alpha_gradient_matches_autograd(tau):
    """The two-path estimate is the exact gradient of sum_m dL/dg_m p_m, p = softmax(alpha / tau)
    over the sampled pair."""
    alpha = torch.randn(N_STAGES, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(1)
    pairs = np.stack([rng.choice(5, 2, replace=False) for _ in range(N_STAGES * 2)]).reshape(N_STAGES, 2, 2)
    gg = {(s, j): torch.from_numpy(rng.normal(size=2)) for s in range(N_STAGES) for j in range(2)}
    got = alpha_grad_two_path(alpha, pairs, gg, tau)
    a = alpha.clone().requires_grad_(True)
    surrogate = sum((g * torch.softmax(a[s, j, list(pairs[s, j])] / tau, 0)).sum() for (s, j), g in gg.items())
    want = torch.autograd.grad(surrogate, a)[0]
    assert torch.allclose(got, want, atol=1e-12) and got.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_data():
    d = load_digits_dataset()
    idx = np.concatenate([np.flatnonzero(d.labels == c)[:8] for c in range(10)])
    x = torch.nn.functional.interpolate(torch.from_numpy(d.images[idx]).float(), size=(16, 16), mode="bilinear",
                                        align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(x.numpy(), d.labels[idx], d.classes, "tiny-digits")


def test_gradient_on_a_real_supernet_is_seeded_and_meets_the_budget(tiny_data):
    """A few ProxylessNAS steps on an (untrained) real supernet: the gated two-path forward runs,
    lambda pushes the derived architecture under a tight budget, same seed -> same result."""
    space = SearchSpace(resolutions=(128,), width_mults=(1.0,), depths=(1, 2), kernels=(3, 5), expands=(3, 4))
    ch = Choices(space, 128, 1.0)
    rng = np.random.default_rng(0)
    ms = rng.uniform(0.2, 0.4, size=(N_STAGES, space.max_depth, ch.n))
    ms[..., ch.skip] = 0.0
    t = LatencyTable(1.0, ms)
    budget = t.min_ms(ch) * 1.03
    cfg = GradientConfig(steps=6, alpha_every=2, batch_size=8, alpha_lr=0.3, lambda_lr=5.0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = Supernet(space, 10)
        b = Batches(tiny_data, np.arange(tiny_data.n), space)
        runs.append(run_gradient(SupernetPaths(net), b, np.arange(tiny_data.n), tiny_data.labels, ch, [t], [budget],
                                 cfg, seed=3))
    a, b = runs
    assert np.array_equal(a.probs, b.probs) and a.arch == b.arch and a.lambdas == b.lambdas
    assert a.meets_budget and a.lut_ms[0] <= budget


def test_gradient_strategy_bad_input(tmp_path, tiny_data):
    with pytest.raises(InputError, match="needs a trained supernet"):
        run_search(SearchConfig(budgets_ms=(6.0,), strategy="gradient", accuracy="params",
                                accuracy_dir=str(tmp_path / "none")))
    other = SearchSpace(resolutions=(128,), width_mults=(1.0,), depths=(1, 2), kernels=(3,), expands=(3,))
    np.savez(tmp_path / "tiny.npz", images=tiny_data.images.transpose(0, 2, 3, 1), labels=tiny_data.labels)
    train_supernet(str(tmp_path / "tiny.npz"), tmp_path / "sn",
                   TrainConfig(epochs=1, batch_size=16, n_random=0, calib_batches=1, calib_batch_size=16), space=other)
    with pytest.raises(InputError, match="another search space"):
        run_search(SearchConfig(budgets_ms=(6.0,), strategy="gradient", accuracy="params",
                                accuracy_dir=str(tmp_path / "sn")))
    with pytest.raises(InputError, match="--resolution 100"):
        run_search(SearchConfig(budgets_ms=(6.0,), strategy="gradient", accuracy="params",
                                accuracy_dir=str(tmp_path / "sn"), resolution=100))


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_cli_gradient_without_supernet_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hwnas.cli", "search", "--budget-ms", "6", "--strategy", "gradient",
                        "--accuracy-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "needs a trained supernet" in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1  # (above it: the progress bar)
