"""Analytic cost of an architecture: multiply-accumulates (``macs``) and parameters (``params``).

MACs count convolutions and linear layers (the convention of
``torch.utils.flop_counter.FlopCounterMode``, which reports 2 FLOPs per MAC); batch-norm,
activations and pooling are not counted.  Params count every trainable tensor of the torch
model (batch-norm scale and shift included, running statistics excluded).
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers import BlockSpec, HeadSpec, StemSpec, plan
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
