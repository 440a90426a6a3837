"""REINFORCE search (NASNet / MnasNet): a policy samples architectures, the reward is MnasNet's.

The policy decides the genome's decisions in genome order (resolution, width, the five stage
depths, then every block slot's kernel and expand), so a stage's depth is decided before the
blocks it enables.  Two policies:

* ``categorical`` (default): one independent softmax per decision (the NAS-Bench-201 baseline);
* ``lstm``: an LSTM controller (NASNet / ENAS style) that reads the previous decision and
  emits the next one, so decisions can depend on each other.

Each policy step samples a batch of architectures (the search runs at predictor speed), scores
them through the search's :class:`~hwnas.search.problem.Evaluator` (cache, constraints, every
profile) and takes one Adam step on ``-(reward - baseline) * log p + entropy bonus``.  The
log-probability of an architecture sums over its *active* decisions only: a block slot beyond
its stage's depth is drawn but neither counted nor rewarded (for the LSTM it is fed as a blank).

Reward (MnasNet): ``ACC x prod_profiles (LAT / T)^w`` with ``w = -0.07`` on both sides of the
budget (``soft``) or ``w = 0`` within the budget and ``-1`` beyond it (``hard``).  Architectures
breaking a static limit (params, size, memory) get the batch's lowest reward.  The baseline is
an exponential moving average of the batch mean reward; advantages are divided by the batch's
reward spread, so the step size does not depend on the accuracy estimator's unit.

Seeded: the policy's initial weights and every sample come from generators owned by the
searcher (nothing global changes); the same seed gives the same search.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..space import N_STAGES, SearchSpace
from .strategies import Progress, SearchProblem, Searcher

REWARDS = ("soft", "hard")
CONTROLLERS = ("categorical", "lstm")
SOFT_W = -0.07


def mnas_reward(accuracy: np.ndarray, latency_ms: np.ndarray, budgets_ms, mode: str = "soft") -> np.ndarray:
    """MnasNet's reward ``ACC x prod_j (LAT_j / T_j)^w`` for ``latency_ms`` of shape (n, profiles)."""
    ratio = np.asarray(latency_ms, dtype=float) / np.asarray(budgets_ms, dtype=float)[None, :]
    if mode == "soft":
        w = np.full_like(ratio, SOFT_W)
    elif mode == "hard":
        w = np.where(ratio <= 1.0, 0.0, -1.0)
    else:
        raise InputError(f"unknown reward {mode!r}; choose from {', '.join(REWARDS)}")
    return np.asarray(accuracy, dtype=float) * np.prod(ratio**w, axis=1)


def active_decisions(space: SearchSpace, G: np.ndarray) -> np.ndarray:
    """(n, L) bool: which decisions of genomes ``G`` shape the architecture (resolution, width
    and depths always; a block slot only within its stage's depth)."""
    n = len(G)
    act = np.ones(G.shape, dtype=bool)
    act[:, 2 + N_STAGES:] = np.repeat(space._active_slots(G).reshape(n, -1), 2, axis=1)
    return act


class _Categorical(nn.Module):
    """One independent softmax per decision (logits start at zero: uniform)."""

    def __init__(self, card: np.ndarray) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(len(card), int(card.max()), dtype=torch.float64))
        mask = torch.arange(int(card.max()))[None, :] >= torch.as_tensor(card)[:, None]
        self.register_buffer("mask", mask)

    def sample(self, n: int, gen: torch.Generator, space: SearchSpace):
        logits = self.logits.masked_fill(self.mask, -np.inf)
        logp_all = torch.log_softmax(logits, dim=1)  # (L, C)
        probs = logp_all.exp().detach()
        G = torch.multinomial(probs, n, replacement=True, generator=gen).T  # (n, L)
        act = torch.as_tensor(active_decisions(space, G.numpy()))
        logp = logp_all.gather(1, G.T).T  # (n, L)
        ent = -(probs * logp_all.masked_fill(self.mask, 0.0)).sum(1)  # (L,)
        # entropy of the decisions that act (inactive ones are drawn but do not matter)
        entropy = (ent[None, :] * act).sum(1).mean()
        return G.numpy(), (logp * act).sum(1), entropy


class _LSTM(nn.Module):
    """An LSTM controller: one step per decision, fed the previous decision's embedding (a
    blank for an inactive one), one output head per decision."""

    def __init__(self, card: np.ndarray, hidden: int = 64) -> None:
        super().__init__()
        self.card = [int(c) for c in card]
        self.offsets = np.concatenate([[0], np.cumsum(self.card)])
        self.embed = nn.Embedding(int(self.offsets[-1]) + 1, hidden)  # + the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.head = nn.Linear(hidden, int(self.offsets[-1]))
        self.hidden = hidden

    def sample(self, n: int, gen: torch.Generator, space: SearchSpace):
        L, md = len(self.card), space.max_depth
        h = torch.zeros(n, self.hidden)
        c = torch.zeros(n, self.hidden)
        x = self.embed(torch.full((n,), int(self.offsets[-1]), dtype=torch.long))
        G = torch.zeros(n, L, dtype=torch.long)
        logps, ents, acts = [], [], []
        depth_choice = np.asarray(space.depths)
        for t in range(L):
            h, c = self.cell(x, (h, c))
            lo, hi = int(self.offsets[t]), int(self.offsets[t + 1])
            logp_all = torch.log_softmax(self.head(h)[:, lo:hi], dim=1)
            g = torch.multinomial(logp_all.exp().detach(), 1, generator=gen)[:, 0]
            G[:, t] = g
            if t < 2 + N_STAGES:
                act = torch.ones(n, dtype=torch.bool)
            else:
                s, j = divmod((t - 2 - N_STAGES) // 2, md)
                act = torch.as_tensor(depth_choice[G[:, 2 + s].numpy()] > j)
            logps.append(logp_all.gather(1, g[:, None])[:, 0] * act)
            ents.append(-(logp_all.exp() * logp_all).sum(1) * act)
            x = self.embed(g + lo) * act[:, None]
        return G.numpy(), torch.stack(logps, 1).sum(1), torch.stack(ents, 1).sum(1).mean()


class RLSearcher(Searcher):
    """REINFORCE with MnasNet's reward (see the module docstring).  Stops once the search has
    scored ``n_samples`` distinct architectures, or after ``max_steps`` policy steps."""

    name = "rl"

    def __init__(self, n_samples: int = 5000, batch: int = 50, reward: str = "soft", controller: str = "categorical",
                 lr: float | None = None, baseline_decay: float = 0.9, entropy: float = 1e-4, hidden: int = 64,
                 max_steps: int | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        if reward not in REWARDS:
            raise InputError(f"unknown reward {reward!r}; choose from {', '.join(REWARDS)}")
        if controller not in CONTROLLERS:
            raise InputError(f"unknown controller {controller!r}; choose from {', '.join(CONTROLLERS)}")
        if n_samples < 1 or batch < 2:
            raise InputError("n_samples must be >= 1 and the batch >= 2")
        if not 0.0 <= baseline_decay < 1.0:
            raise InputError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.n_samples = n_samples
        self.batch = batch
        self.reward = reward
        self.controller = controller
        # the categorical policy's logits need large steps to move within a few hundred steps
        self.lr = lr if lr is not None else (0.01 if controller == "categorical" else 5e-3)
        self.baseline_decay = baseline_decay
        self.entropy = entropy
        self.hidden = hidden
        self.max_steps = max_steps if max_steps is not None else max(10, 20 * n_samples // batch)
        self.policy: nn.Module | None = None
        self.history: list[dict] = []  # per policy step: mean reward, baseline, entropy

    def _make_policy(self, space: SearchSpace) -> nn.Module:
        card = space.genome_cardinalities
        if self.controller == "categorical":
            return _Categorical(card)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.seed)
            return _LSTM(card, self.hidden)

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the policy's ops are tiny: threads only contend (60x slower on a busy CPU)
        try:
            self._run(problem, progress)
        finally:
            torch.set_num_threads(threads)

    def _run(self, problem: SearchProblem, progress: Progress | None) -> None:
        space, ev = problem.space, problem.evaluator
        policy = self.policy = self._make_policy(space)
        opt = torch.optim.Adam(policy.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        budgets = np.asarray(problem.budgets_ms, dtype=float)
        baseline = None
        start = ev.n_queries
        for step in range(self.max_steps):
            G, logp, entropy = policy.sample(self.batch, gen, space)
            res = problem.evaluate(G)
            r = mnas_reward(res.accuracy, res.latency_ms, budgets, self.reward)
            if not res.static_ok.all():
                r = np.where(res.static_ok, r, r[res.static_ok].min() if res.static_ok.any() else r.min())
            mean = float(r.mean())
            baseline = mean if baseline is None else self.baseline_decay * baseline + (1 - self.baseline_decay) * mean
            adv = (r - baseline) / (float(r.std()) + 1e-12)
            loss = -(torch.as_tensor(adv) * logp).mean() - self.entropy * entropy
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history.append({"reward": mean, "baseline": baseline, "entropy": float(entropy.detach())})
            done = ev.n_queries - start
            if progress:
                progress(min(done, self.n_samples), self.n_samples)
            if done >= self.n_samples:
                break

    def best_guess(self, space: SearchSpace) -> np.ndarray:
        """The policy's most likely genome (categorical policy only)."""
        if not isinstance(self.policy, _Categorical):
            raise ValueError("best_guess needs a trained categorical policy")
        logits = self.policy.logits.detach().masked_fill(self.policy.mask, -np.inf)
        return space.canonical(logits.argmax(1).numpy()[None, :])[0]
