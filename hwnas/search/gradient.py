"""Gradient search with a differentiable latency loss (ProxylessNAS) on a trained supernet.

Resolution and width are fixed per run (one run per combination unless given).  Every elastic
block (stage s, slot j) gets architecture parameters alpha over its (kernel, expand) choices,
plus a *skip* choice where the stage may end before it (slot j is skippable iff j is one of the
space's depths).  A skipped slot ends its stage: the depth is the first skipped slot.

* **Weights** (the supernet's, fine-tuned on a copy): binarized path sampling, one sampled
  choice per block per step (memory O(1) in the number of choices), SGD on the training split.
* **alpha**, every ``alpha_every`` weight steps, on a held-out part of the training split
  (never on the validation split the accuracy estimators use): ProxylessNAS's two-path
  estimate.  Per block two choices are drawn from p = softmax(alpha / tau), one of them is active
  (binary gates); the gates' gradients give dL/dalpha over the two, with probabilities
  renormalized over the pair; after Adam (beta1 = 0) the pair is shifted so its total
  probability is unchanged (mit-han-lab/proxylessnas, MODE "two").
* **Latency**: ``E[lat] = stem + head + sum_s sum_j P(reach s,j) sum_c p_sjc LUT_sjc``, where
  ``P(reach s,j)`` is the product of (1 - p_skip) over the stage's earlier slots: exactly the
  expected LUT latency of the sampled architecture, differentiable in alpha, in ms (the
  profile's ``lut`` predictor: table sum x its fitted slope + intercept, x the canary).
  The alpha loss is ``CE + sum_profiles lambda (E[lat] - T) / T``.  In budget mode (default)
  the latency is aimed at the band ``[band_low x T, T]`` with two Lagrange multipliers per
  profile, ``lambda = lambda_hi - lambda_lo``, both starting at 0 and kept >= 0: after every
  alpha step, with ``m = max(E[lat], LAT(derived))``, ``lambda_hi += lambda_lr (m - T) / T``
  (grows only while over budget) and ``lambda_lo += lambda_lr (band_low T - m) / T`` (grows
  only while under the band: then the latency term pays for capacity).  The search runs on (at
  most ``steps`` more) until the derived architecture meets T on every profile.
* **Temperature**: p = softmax(alpha / tau), tau annealed geometrically from ``tau_start`` to
  ``tau_end`` over ``steps`` (as FBNet anneals its Gumbel-softmax temperature), so the
  distribution sharpens towards the end and E[lat] comes to describe the argmax-derived
  architecture (with tau = 1 and a few dozen alpha steps it stays broad: E[lat] was 12-26%
  above the derived architecture's LUT latency in a first benchmark).
* **Derive**: argmax per block (the same under any tau).
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..layers import plan
from ..space import N_STAGES, Arch, Block, SearchSpace
from .problem import InfeasibleError
from .strategies import Progress, SearchProblem, Searcher


@dataclass(frozen=True)
class GradientConfig:
    """ProxylessNAS settings (defaults sized for the CPU and small datasets)."""

    steps: int = 300  # weight steps per (resolution, width) run
    alpha_every: int = 5
    batch_size: int = 64
    weight_lr: float = 0.005
    alpha_lr: float = 0.05
    lat_weight: float = 0.0  # initial lambda_hi (the fixed weight when not budget_mode)
    lambda_lr: float = 1.0
    budget_mode: bool = True
    band_low: float = 0.9  # budget mode aims the latency at [band_low x T, T]
    tau_start: float = 1.0  # softmax temperature, annealed geometrically over `steps`
    tau_end: float = 0.25  # 0.1 froze alpha (saturated softmax) with the derived arch still over T
    alpha_fraction: float = 0.2  # share of the training split held out for alpha

    def __post_init__(self) -> None:
        if self.steps < 1 or self.alpha_every < 1 or self.batch_size < 2:
            raise InputError("gradient search needs steps >= 1, alpha_every >= 1 and batch_size >= 2")
        if not 0.0 < self.alpha_fraction < 1.0:
            raise InputError(f"alpha_fraction must be in (0, 1), got {self.alpha_fraction}")
        if not 0.0 <= self.band_low <= 1.0:
            raise InputError(f"band_low must be in [0, 1], got {self.band_low}")
        if self.tau_start <= 0 or self.tau_end <= 0:
            raise InputError("the softmax temperatures tau_start and tau_end must be > 0")

    def tau(self, step: int) -> float:
        """The temperature after ``step`` weight steps (tau_end from ``steps`` on)."""
        f = min(step / self.steps, 1.0)
        return float(self.tau_start * (self.tau_end / self.tau_start) ** f)


# --------------------------------------------------------------------------------------------
# choices and the latency table


class Choices:
    """The per-block choices of a space at one (resolution, width): (kernel, expand) pairs in
    the space's order, then *skip*; ``allowed[s, j, c]``."""

    def __init__(self, space: SearchSpace, resolution: int, width_mult: float, n_classes: int = 10) -> None:
        self.space = space
        self.resolution, self.width_mult = resolution, width_mult
        self.blocks = [Block(k, e) for k in space.kernels for e in space.expands]
        self.n = len(self.blocks) + 1
        self.skip = len(self.blocks)
        md = space.max_depth
        allowed = np.ones((N_STAGES, md, self.n), dtype=bool)
        for j in range(md):
            allowed[:, j, self.skip] = j in space.depths
        self.allowed = allowed
        # the layer of every (slot, choice): a slot's input never depends on earlier choices
        self.specs = []
        for b in self.blocks:
            p = plan(Arch(resolution, width_mult, tuple((b,) * md for _ in range(N_STAGES))), n_classes)
            self.specs.append(p.blocks)
        self.plan0 = p

    def arch(self, C: np.ndarray) -> Arch:
        """The architecture of choice indices ``C`` (N_STAGES, max depth): a stage ends at its
        first skipped slot."""
        stages = []
        for s in range(N_STAGES):
            blocks = []
            for c in C[s]:
                if c == self.skip:
                    break
                blocks.append(self.blocks[int(c)])
            stages.append(tuple(blocks))
        return Arch(self.resolution, self.width_mult, tuple(stages))

    def spec(self, s: int, j: int, c: int):
        return self.specs[c][s * self.space.max_depth + j]


@dataclass
class LatencyTable:
    """Per-slot LUT latency (ms) of every choice at one (resolution, width), as the profile's
    ``lut`` predictor prices it: ``ms = canary x (a x table sum + b)``, linear in the entries."""

    fixed_ms: float  # stem + first block + head + the predictor's intercept
    block_ms: np.ndarray  # (N_STAGES, max depth, n choices); 0 for skip

    @classmethod
    def from_lut(cls, lut, choices: Choices) -> "LatencyTable":
        sp = choices.space
        if sp.to_dict() != lut.space_.to_dict():
            raise InputError("the profile's lookup table was made for another search space")
        ri = sp.resolutions.index(choices.resolution)
        wi = [abs(w - choices.width_mult) < 1e-9 for w in sp.width_mults].index(True)
        a, b = lut.coef_
        c = lut.canary_reference_ms_
        md = sp.max_depth
        block = np.zeros((N_STAGES, md, choices.n))
        for s in range(N_STAGES):
            for j in range(md):
                for ci, blk in enumerate(choices.blocks):
                    block[s, j, ci] = lut.stage_[ri, wi, s, min(j, 1), sp.kernels.index(blk.kernel),
                                                 sp.expands.index(blk.expand)]
        return cls(float(c * (a * lut.fixed_[ri, wi] + b)), c * a * block)

    def expected_ms(self, probs: torch.Tensor) -> torch.Tensor:
        """E[latency] (ms) under independent per-slot choice probabilities ``probs``
        (N_STAGES, max depth, n choices; skip last): exact and differentiable."""
        L = torch.as_tensor(self.block_ms, dtype=probs.dtype)
        keep = 1.0 - probs[..., -1]
        reach = torch.cumprod(torch.cat([torch.ones_like(keep[:, :1]), keep[:, :-1]], dim=1), dim=1)
        return self.fixed_ms + (reach * (probs * L).sum(-1)).sum()

    def choice_ms(self, C: np.ndarray, skip: int) -> float:
        """LUT latency (ms) of the architecture of choice indices ``C``."""
        total = self.fixed_ms
        for s in range(C.shape[0]):
            for j, c in enumerate(C[s]):
                if c == skip:
                    break
                total += self.block_ms[s, j, c]
        return float(total)

    def min_ms(self, choices: Choices) -> float:
        """The fastest architecture's latency at this (resolution, width)."""
        C = np.zeros((N_STAGES, choices.space.max_depth), dtype=np.int64)
        d = min(choices.space.depths)
        for s in range(N_STAGES):
            C[s] = self.block_ms[s, :, :-1].argmin(-1)
            C[s, d:] = choices.skip
        return self.choice_ms(C, choices.skip)


def masked_probs(alpha: torch.Tensor, allowed: np.ndarray, tau: float = 1.0) -> torch.Tensor:
    """softmax(alpha / tau) over each block's allowed choices."""
    return torch.softmax(alpha.masked_fill(~torch.as_tensor(allowed), -float("inf")) / tau, dim=-1)


# --------------------------------------------------------------------------------------------
# the supernet with per-block gates


def _bn(x: torch.Tensor, bn, c: int) -> torch.Tensor:
    """Batch-norm with batch statistics on the first ``c`` channels (the supernet in training)."""
    return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)


class SupernetPaths(torch.nn.Module):
    """What gradient search needs of a network: a sampled architecture's forward pass, and the
    forward pass with two gated candidate paths per block (here: a :class:`Supernet`'s)."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward_arch(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.net(x, arch)

    def forward_gated(self, x: torch.Tensor, choices: Choices, pairs: np.ndarray, active: np.ndarray,
                      gates: dict) -> torch.Tensor:
        return gated_forward(self.net, x, choices, pairs, active, gates)


def gate(active: int, dtype=torch.float32) -> torch.Tensor:
    """Binary gates of a block's two candidate paths (a leaf whose gradient ProxylessNAS reads)."""
    g = torch.zeros(2, dtype=dtype)
    g[int(active)] = 1.0
    return g.requires_grad_(True)


def gated_forward(net, x: torch.Tensor, choices: Choices, pairs: np.ndarray, active: np.ndarray,
                  gates: dict) -> torch.Tensor:
    """The supernet on ``x`` with two candidate paths per block (``pairs[s, j]``, the
    ``active[s, j]``-th of them switched on): each block's output is ``g0 o0 + g1 o1`` with
    binary gates stored in ``gates[(s, j)]``.  An active skip ends its stage."""
    p = choices.plan0
    mode = net.kernel_mode
    c = p.stem.out_ch
    y = F.hardswish(_bn(F.conv2d(x, net.stem.conv.weight[:c], None, 2, 1), net.stem.bn, c))
    y = net.first(y, p.first_block, mode, True)
    for s in range(N_STAGES):
        for j in range(choices.space.max_depth):
            g = gates[(s, j)] = gate(active[s, j], y.dtype)
            outs = [y if ci == choices.skip else net.stages[s][j](y, choices.spec(s, j, int(ci)), mode, True)
                    for ci in pairs[s, j]]
            y = g[0] * outs[0] + g[1] * outs[1]
            if pairs[s, j, active[s, j]] == choices.skip:
                break
    h = p.head
    y = F.hardswish(_bn(F.conv2d(y, net.head.expand.conv.weight[:h.final_expand, :h.in_ch]), net.head.expand.bn,
                        h.final_expand))
    y = y.mean((2, 3), keepdim=True)
    y = F.hardswish(F.conv2d(y, net.head.feature.weight[:h.last_ch, :h.final_expand], net.head.feature.bias[:h.last_ch]))
    return F.linear(y.flatten(1), net.head.classifier.weight[:, :h.last_ch], net.head.classifier.bias)


# --------------------------------------------------------------------------------------------
# one run


@dataclass
class GradientRun:
    """One (resolution, width) run: the derived architecture and how it got there."""

    resolution: int
    width_mult: float
    arch: Arch  # argmax per block at the end
    expected_ms: list  # E[lat] per profile under the final alpha (at the final temperature)
    lut_ms: list  # the derived architecture's LUT latency per profile
    meets_budget: bool  # lut_ms <= T on every profile
    fallback: Arch | None  # the latest derived architecture that met T (when the last one did not)
    lambdas: list  # lambda_hi - lambda_lo per profile at the end
    weight_steps: int
    alpha_steps: int
    seconds: float
    probs: np.ndarray  # at the final temperature
    tau: float = 1.0  # the final temperature
    history: list = field(default_factory=list)


def alpha_grad_two_path(alpha: torch.Tensor, pairs: np.ndarray, gate_grads: dict, tau: float = 1.0) -> torch.Tensor:
    """ProxylessNAS's estimate of dL/dalpha from the binary gates' gradients ``gate_grads[(s, j)]``,
    per block over its two sampled choices (probabilities p = softmax(alpha / tau) renormalized
    over the pair): ``dL/dalpha_i = sum_m dL/dg_m p_m (delta_im - p_i) / tau``."""
    grad = torch.zeros_like(alpha)
    for (s, j), gg in gate_grads.items():
        a, b = int(pairs[s, j, 0]), int(pairs[s, j, 1])
        pt = torch.softmax(alpha.detach()[s, j, [a, b]] / tau, 0)
        gg = gg.to(alpha.dtype)
        for i, ci in enumerate((a, b)):
            grad[s, j, ci] = sum(gg[m] * pt[m] * ((1.0 if i == m else 0.0) - pt[i]) for m in range(2)) / tau
    return grad


def run_gradient(model, batches, train_idx: np.ndarray, labels: np.ndarray, choices: Choices,
                 tables: Sequence[LatencyTable], budgets_ms: Sequence[float], cfg: GradientConfig, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 input_hw: tuple[int, int] | None = None) -> GradientRun:
    """ProxylessNAS at one (resolution, width).  ``model`` (a :class:`SupernetPaths`) is trained
    in place: pass a copy to keep the original.  ``batches.tensor(idx)`` gives normalized images;
    ``input_hw`` the subnet's input size (default: the dataset's)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    md = choices.space.max_depth
    allowed = choices.allowed
    alpha = torch.zeros((N_STAGES, md, choices.n), dtype=torch.float64, requires_grad=True)
    a_opt = torch.optim.Adam([alpha], lr=cfg.alpha_lr, betas=(0.0, 0.999))
    w_opt = torch.optim.SGD(model.parameters(), lr=cfg.weight_lr, momentum=0.9)
    perm = rng.permutation(train_idx)
    n_a = max(cfg.batch_size, int(round(cfg.alpha_fraction * len(perm))))
    if n_a >= len(perm):
        raise InputError(f"the dataset is too small for gradient search ({len(perm)} training images)")
    a_idx, w_idx = perm[:n_a], perm[n_a:]
    lam_hi = [float(cfg.lat_weight)] * len(tables)
    lam_lo = [0.0] * len(tables)
    budgets = [float(b) for b in budgets_ms]

    def batch(pool: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = pool[rng.choice(len(pool), size=min(cfg.batch_size, len(pool)), replace=False)]
        x = batches.tensor(idx)
        if input_hw is not None:
            x = batches.resize(x, input_hw)
        return x, torch.from_numpy(labels[idx])

    def derive() -> np.ndarray:
        return alpha.detach().masked_fill(~torch.as_tensor(allowed), -float("inf")).argmax(-1).numpy()

    history: list[dict] = []
    fallback: np.ndarray | None = None
    max_steps = 2 * cfg.steps if cfg.budget_mode else cfg.steps
    step = n_alpha = 0
    model.train()
    while step < max_steps:
        # -- weight step: one sampled path per block ------------------------------------------
        tau = cfg.tau(step)
        probs = masked_probs(alpha.detach(), allowed, tau)
        C = torch.multinomial(probs.reshape(-1, choices.n), 1, generator=gen).reshape(N_STAGES, md).numpy()
        x, y = batch(w_idx)
        w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(model.forward_arch(x, choices.arch(C)), y).backward()
        w_opt.step()
        step += 1
        if progress:
            progress(step, cfg.steps)
        if step % cfg.alpha_every:
            continue
        # -- alpha step: two paths per block, binary gates ----------------------------------------
        tau = cfg.tau(step)
        probs = masked_probs(alpha.detach(), allowed, tau)
        pairs = np.zeros((N_STAGES, md, 2), dtype=np.int64)
        for s, j in itertools.product(range(N_STAGES), range(md)):
            p = probs[s, j]
            if int((p > 0).sum()) >= 2:
                pairs[s, j] = torch.multinomial(p, 2, replacement=False, generator=gen).numpy()
            else:  # a single allowed choice: both paths are it
                pairs[s, j] = int(p.argmax())
        pt = torch.softmax(alpha.detach()[_pair_index(pairs)] / tau, -1)
        active = (torch.rand(N_STAGES, md, generator=gen, dtype=torch.float64) >= pt[..., 0]).long().numpy()
        x, y = batch(a_idx)
        gates: dict = {}
        loss = F.cross_entropy(model.forward_gated(x, choices, pairs, active, gates), y)
        grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
        gate_grads = {k: torch.zeros(2) if g is None else g for k, g in zip(gates, grads)}
        a_opt.zero_grad(set_to_none=True)
        ce_grad = alpha_grad_two_path(alpha, pairs, gate_grads, tau)
        exp = [t.expected_ms(masked_probs(alpha, allowed, tau)) for t in tables]
        lat_loss = sum((hi - lo) * (e - b) / b for hi, lo, e, b in zip(lam_hi, lam_lo, exp, budgets))
        alpha.grad = torch.nan_to_num(ce_grad + torch.autograd.grad(lat_loss, alpha)[0])
        idx = _pair_index(pairs)
        with torch.no_grad():
            old = tau * torch.logsumexp(alpha[idx] / tau, -1)
        a_opt.step()
        with torch.no_grad():  # keep each sampled pair's total probability (MODE "two")
            alpha[idx] -= (tau * torch.logsumexp(alpha[idx] / tau, -1) - old)[..., None]
        n_alpha += 1
        D = derive()
        d_ms = [t.choice_ms(D, choices.skip) for t in tables]
        ok = all(m <= b for m, b in zip(d_ms, budgets))
        if ok:
            fallback = D
        if cfg.budget_mode:  # dual ascent on the larger of E[lat] and the derived latency
            m = [max(float(e.detach()), d) for e, d in zip(exp, d_ms)]
            lam_hi = [max(0.0, hi + cfg.lambda_lr * (mm - b) / b) for hi, mm, b in zip(lam_hi, m, budgets)]
            lam_lo = [max(0.0, lo + cfg.lambda_lr * (cfg.band_low * b - mm) / b) for lo, mm, b in zip(lam_lo, m, budgets)]
        history.append({"step": step, "tau": tau, "ce": float(loss.detach()),
                        "expected_ms": [float(e.detach()) for e in exp], "derived_ms": d_ms,
                        "lambda": [hi - lo for hi, lo in zip(lam_hi, lam_lo)]})
        if step >= cfg.steps and (ok or not cfg.budget_mode):
            break
    D = derive()
    tau = cfg.tau(step)
    probs = masked_probs(alpha.detach(), allowed, tau)
    d_ms = [t.choice_ms(D, choices.skip) for t in tables]
    meets = all(m <= b for m, b in zip(d_ms, budgets))
    return GradientRun(choices.resolution, choices.width_mult, choices.arch(D),
                       [float(t.expected_ms(probs)) for t in tables], d_ms, meets,
                       None if meets or fallback is None else choices.arch(fallback),
                       [hi - lo for hi, lo in zip(lam_hi, lam_lo)], step, n_alpha,
                       time.perf_counter() - t0, probs.numpy(), tau, history)


def _pair_index(pairs: np.ndarray):
    n_s, md = pairs.shape[:2]
    return (torch.arange(n_s)[:, None, None], torch.arange(md)[None, :, None], torch.as_tensor(pairs))


# --------------------------------------------------------------------------------------------
# the strategy


class GradientSearcher(Searcher):
    """ProxylessNAS on the supernet in ``accuracy_dir``; the latency term from each profile's
    ``lut`` predictor.  Every run's derived architecture is scored through the search's
    evaluator (its latency predictor, accuracy estimator and constraints), so the result is
    read like any other strategy's."""

    name = "gradient"

    def __init__(self, accuracy_dir: str | Path | None, profiles: Sequence[str | Path], resolution: int | None = None,
                 width_mult: float | None = None, config: GradientConfig | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.accuracy_dir = accuracy_dir
        self.profiles = [Path(p) for p in profiles]
        self.resolution = resolution
        self.width_mult = width_mult
        self.config = config or GradientConfig()
        self.loaded = None
        self.luts: list = []
        self.runs: list[GradientRun] = []

    def prepare(self, space: SearchSpace) -> None:
        """Load the supernet (of ``space``) and the profiles' lookup tables; one-line errors."""
        from ..accuracy.estimators import default_accuracy_dir
        from ..accuracy.supernet import META, load_supernet
        from ..predictors import load_predictor

        d = Path(self.accuracy_dir) if self.accuracy_dir is not None else default_accuracy_dir()
        if not (d / META).is_file():
            raise InputError(f"--strategy gradient needs a trained supernet of the search space: no supernet in {d}; "
                             f"train one with `hwnas supernet train --data builtin:digits --out DIR` and pass "
                             f"--accuracy-dir DIR")
        if self.resolution is not None and self.resolution not in space.resolutions:
            raise InputError(f"--resolution {self.resolution} is not one of the space's {list(space.resolutions)}")
        if self.width_mult is not None and not any(abs(self.width_mult - w) < 1e-9 for w in space.width_mults):
            raise InputError(f"--width-mult {self.width_mult:g} is not one of the space's {list(space.width_mults)}")
        self.loaded = load_supernet(d, space)
        self.luts = [load_predictor(p, "lut") for p in self.profiles]

    def combinations(self, space: SearchSpace) -> list[tuple[int, float]]:
        rs = [self.resolution] if self.resolution is not None else list(space.resolutions)
        ws = [self.width_mult] if self.width_mult is not None else list(space.width_mults)
        return [(r, w) for r in rs for w in ws]

    def run(self, problem: SearchProblem, progress: Progress | None = None) -> None:
        from ..accuracy.data import input_size

        space = problem.space
        if self.loaded is None:
            self.prepare(space)
        ls = self.loaded
        budgets = problem.budgets_ms
        todo = []
        for r, w in self.combinations(space):
            ch = Choices(space, r, w, ls.net.n_classes)
            tables = [LatencyTable.from_lut(p, ch) for p in self.luts]
            if all(t.min_ms(ch) <= b for t, b in zip(tables, budgets)):
                todo.append((ch, tables))
        if not todo:
            raise InfeasibleError("no resolution and width of the space can meet the budget on the profiles' "
                                  "lookup tables")
        total = len(todo) * self.config.steps
        self.runs = []
        for i, (ch, tables) in enumerate(todo):
            model = SupernetPaths(copy.deepcopy(ls.net))
            hw = input_size(ch.resolution, ls.data.hw, max(ls.net.space.resolutions))
            seed = int(np.random.default_rng([self.seed, i]).integers(2**31 - 1))
            run = run_gradient(model, ls.batches, ls.train_idx, ls.data.labels, ch, tables, budgets, self.config,
                               seed=seed, input_hw=hw,
                               progress=(lambda d, t, i=i: progress(i * self.config.steps + min(d, t), total))
                               if progress else None)
            self.runs.append(run)
            archs = [run.arch] + ([run.fallback] if run.fallback is not None else [])
            problem.evaluate(space.archs_to_genomes(archs))
