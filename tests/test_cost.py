"""Analytic MACs and params (hwnas.cost) agree with the torch model exactly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwnas.builders.torch_model import build_torch, build_torch_block, build_torch_head, build_torch_stem
from hwnas.cost import arch_cost, block_cost, head_cost, stem_cost
from hwnas.layers import plan
from hwnas.space import DEFAULT_SPACE, Arch


def _flops(module: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Total FLOPs (2 per multiply-accumulate) of one eval-mode forward pass."""
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(shape))
    return int(counter.get_total_flops())


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_SAMPLES = DEFAULT_SPACE.sample_many(40, seed=123)
ARCHS = {
    "smallest": DEFAULT_SPACE.smallest(),
    "largest": DEFAULT_SPACE.largest(),
    "sample_w1.2": next(a for a in _SAMPLES if a.width_mult == 1.2),
    "sample_w1.0": next(a for a in _SAMPLES if a.width_mult == 1.0),
    "mixed": Arch.parse("r192_w1.2_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k7e3-k3e3_k3e3-k5e6"),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_arch_cost_matches_torch(name: str) -> None:
    arch = ARCHS[name]
    model = build_torch(arch)
    cost = arch_cost(arch)
    assert _n_params(model) == cost.params
    assert _flops(model, (1, 3, arch.resolution, arch.resolution)) == 2 * cost.macs


def test_n_classes() -> None:
    arch = ARCHS["sample_w1.2"]
    model = build_torch(arch, n_classes=10)
    cost = arch_cost(arch, n_classes=10)
    assert _n_params(model) == cost.params
    assert _flops(model, (1, 3, arch.resolution, arch.resolution)) == 2 * cost.macs


def test_part_costs_match_torch() -> None:
    p = plan(ARCHS["largest"])
    s = p.stem
    assert _n_params(build_torch_stem(s)) == stem_cost(s).params
    assert _flops(build_torch_stem(s), (1, 3, s.in_res, s.in_res)) == 2 * stem_cost(s).macs
    for b in p.all_blocks():
        m = build_torch_block(b)
        assert _n_params(m) == block_cost(b).params, b.key
        assert _flops(m, (1, b.in_ch, b.in_res, b.in_res)) == 2 * block_cost(b).macs, b.key
    h = p.head
    assert _n_params(build_torch_head(h)) == head_cost(h).params
    assert _flops(build_torch_head(h), (1, h.in_ch, h.in_res, h.in_res)) == 2 * head_cost(h).macs


def test_known_values() -> None:
    """Pinned totals, so a change in layout or cost model is noticed."""
    small, large = arch_cost(DEFAULT_SPACE.smallest()), arch_cost(DEFAULT_SPACE.largest())
    assert (small.macs, small.params) == (41_476_224, 3_412_072)
    assert (large.macs, large.params) == (843_101_040, 10_703_168)
