"""Analytic cost of an architecture: multiply-accumulates (``macs``) and parameters (``params``).

MACs count convolutions and linear layers (the convention of
``torch.utils.flop_counter.FlopCounterMode``, which reports 2 FLOPs per MAC); batch-norm,
activations and pooling are not counted.  Params count every trainable tensor of the torch
model (batch-norm scale and shift included, running statistics excluded).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .layers import BlockSpec, HeadSpec, StemSpec, plan, table_slots
from .space import Arch


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)


def block_cost(b: BlockSpec) -> Cost:
    macs = params = 0
    mid = b.mid_ch
    if b.expand != 1:
        macs += b.in_res * b.in_res * b.in_ch * mid
        params += b.in_ch * mid + 2 * mid
    macs += b.out_res * b.out_res * mid * b.kernel * b.kernel
    params += mid * b.kernel * b.kernel + 2 * mid
    if b.se:
        macs += 2 * mid * b.se_ch
        params += 2 * mid * b.se_ch + b.se_ch + mid
    macs += b.out_res * b.out_res * mid * b.out_ch
    params += mid * b.out_ch + 2 * b.out_ch
    return Cost(macs, params)


def stem_cost(s: StemSpec) -> Cost:
    return Cost(s.out_res * s.out_res * 3 * s.out_ch * 9, 3 * s.out_ch * 9 + 2 * s.out_ch)


def head_cost(h: HeadSpec) -> Cost:
    macs = h.in_res * h.in_res * h.in_ch * h.final_expand + h.final_expand * h.last_ch + h.last_ch * h.n_classes
    params = (
        h.in_ch * h.final_expand + 2 * h.final_expand
        + h.final_expand * h.last_ch + h.last_ch
        + h.last_ch * h.n_classes + h.n_classes
    )
    return Cost(macs, params)


def arch_cost(arch: Arch, n_classes: int = 1000) -> Cost:
    """MACs and params of ``arch`` for one image."""
    p = plan(arch, n_classes)
    total = stem_cost(p.stem) + head_cost(p.head)
    for b in p.all_blocks():
        total = total + block_cost(b)
    return total


def peak_activation_bytes(arch: Arch, batch: int = 1) -> int:
    """Peak fp32 activation memory of a sequential run: at each layer its input, its output and,
    inside a residual block, the block input kept for the skip connection (bytes)."""
    p = plan(arch)
    s = p.stem
    peak = 3 * s.in_res**2 + s.out_ch * s.out_res**2
    for b in p.all_blocks():
        keep = b.in_ch * b.in_res**2 if b.residual else 0
        mid_in = b.mid_ch * b.in_res**2
        mid_out = b.mid_ch * b.out_res**2
        layers = [mid_in + mid_out + keep, mid_out + b.out_ch * b.out_res**2 + keep]
        if b.expand != 1:  # the block input is this layer's own input: not counted twice
            layers.append(b.in_ch * b.in_res**2 + mid_in)
        peak = max(peak, *layers)
    h = p.head
    peak = max(peak, h.in_ch * h.in_res**2 + h.final_expand * h.in_res**2)
    return 4 * batch * peak


def _block_peak(b) -> int:
    keep = b.in_ch * b.in_res**2 if b.residual else 0
    mid_in, mid_out = b.mid_ch * b.in_res**2, b.mid_ch * b.out_res**2
    layers = [mid_in + mid_out + keep, mid_out + b.out_ch * b.out_res**2 + keep]
    if b.expand != 1:
        layers.append(b.in_ch * b.in_res**2 + mid_in)
    return max(layers)


def _part_peak(spec) -> int:
    if isinstance(spec, StemSpec):
        return 3 * spec.in_res**2 + spec.out_ch * spec.out_res**2
    if isinstance(spec, HeadSpec):
        return spec.in_ch * spec.in_res**2 + spec.final_expand * spec.in_res**2
    return _block_peak(spec)


class CostTable:
    """MACs, params and peak activation memory of many architectures at once (search's fast path).

    Every block's cost depends only on (resolution, width, stage, first-or-later, kernel,
    expand), so costs are table sums (a max for memory) over index genomes
    (:meth:`hwnas.space.SearchSpace.random_genomes`).
    """

    def __init__(self, space) -> None:
        from .space import N_STAGES

        self.space = space
        R, W, K, E = len(space.resolutions), len(space.width_mults), len(space.kernels), len(space.expands)
        shape = (R, W, N_STAGES, 2, K, E)
        self.stage = {k: np.zeros(shape) for k in ("macs", "params", "peak")}
        self.fixed = {k: np.zeros((R, W)) for k in ("macs", "params", "peak")}
        for at, spec in table_slots(space):
            if len(at) == 2:  # stem, first block, head: summed; their peak is the largest
                c = stem_cost(spec) if isinstance(spec, StemSpec) else head_cost(spec) if isinstance(spec, HeadSpec) \
                    else block_cost(spec)
                self.fixed["macs"][at] += c.macs
                self.fixed["params"][at] += c.params
                self.fixed["peak"][at] = max(self.fixed["peak"][at], _part_peak(spec))
            else:
                c = block_cost(spec)
                self.stage["macs"][at] = c.macs
                self.stage["params"][at] = c.params
                self.stage["peak"][at] = _block_peak(spec)

    def costs(self, G: np.ndarray) -> dict[str, np.ndarray]:
        """{"macs", "params", "peak_bytes"} per genome row (batch 1, fp32)."""
        from .space import N_STAGES

        sp = self.space
        G = np.asarray(G)
        n, md = len(G), sp.max_depth
        ri, wi = G[:, 0], G[:, 1]
        blocks = G[:, 2 + N_STAGES:].reshape(n, N_STAGES, md, 2)
        active = sp._active_slots(G)
        pos = np.minimum(np.arange(md), 1)[None, None, :]
        st = np.arange(N_STAGES)[None, :, None]
        idx = (ri[:, None, None], wi[:, None, None], st, pos, blocks[..., 0], blocks[..., 1])
        out = {}
        for k in ("macs", "params"):
            out[k] = (self.fixed[k][ri, wi] + (self.stage[k][idx] * active).sum(axis=(1, 2))).astype(np.int64)
        peak = np.maximum(self.fixed["peak"][ri, wi], (self.stage["peak"][idx] * active).max(axis=(1, 2)))
        out["peak_bytes"] = (4 * peak).astype(np.int64)
        return out


@functools.lru_cache(maxsize=8)
def cost_table(space) -> CostTable:
    """The (cached) :class:`CostTable` of a search space: built once per space per process."""
    return CostTable(space)
