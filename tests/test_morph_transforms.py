"""Function-preserving transforms: each morph kind leaves the eval-mode outputs unchanged (float64,
random inputs, randomized batch-norm statistics) on random architectures of the space; steps that
would leave the space fail with a one-line error naming the problem; noise is small and seeded."""

import numpy as np
import pytest
import torch

from hwnas.builders.torch_model import build_torch
from hwnas.errors import HwnasError
from hwnas.morph import (MORPH_KINDS, Morph, MorphError, add_noise, apply_morph, children, deepen, grow_kernel,
                         widen_expand, widen_width)
from hwnas.space import DEFAULT_SPACE, Arch, Block

SPACE = DEFAULT_SPACE
RES = min(SPACE.resolutions)
N_CLASSES = 10
TOL = 1e-5
N_FAST = 3  # architectures per kind in the quick test; the slow one runs 50


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomize(model: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """Batch-norm weight, bias, running mean and variance, and every bias, drawn at random
    (a fresh model's identity statistics would hide a transform that forgets them)."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=gen, dtype=torch.float64) * 0.5)
                mod.running_mean.copy_(torch.randn(n, generator=gen, dtype=torch.float64) * 0.5)
                mod.running_var.copy_(torch.rand(n, generator=gen, dtype=torch.float64) + 0.5)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen, dtype=torch.float64) * 0.5)
    return model


def make_model(arch: Arch, gen: torch.Generator) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        m = build_torch(arch, N_CLASSES)
    return randomize(m.double(), gen).eval()


def sample(rng: np.random.Generator, kind: str) -> Arch:
    a = SPACE.sample(rng)
    width = min(SPACE.width_mults) if kind == "width" else a.width_mult
    return Arch(RES, width, a.stages)


def check_kind(kind: str, n_archs: int, seed: int) -> float:
    """Morphs of ``kind`` on ``n_archs`` distinct random architectures (a child is the next
    parent while it can still grow that way: one model build per check); the largest |dy|."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, RES, RES, generator=gen, dtype=torch.float64)
    seen, worst = set(), 0.0
    parent, model, y = None, None, None
    while len(seen) < n_archs:
        options = [] if parent is None else [m for m in children(parent, rng, SPACE) if m.kind == kind]
        if not options:
            parent = sample(rng, kind)
            if parent in seen:
                parent = None
                continue
            model = make_model(parent, gen)
            with torch.no_grad():
                y = model(x)
            continue
        seen.add(parent)
        morph = options[int(rng.integers(len(options)))]
        child, new = apply_morph(model, morph, SPACE)
        assert child == morph.child(parent, SPACE) and new.arch == child and child != parent
        assert not new.training and next(new.parameters()).dtype == torch.float64
        with torch.no_grad():
            y2 = new(x)
        assert y2.shape == y.shape and float(y.std()) > 1e-3  # a real signal, not all zeros
        worst = max(worst, float((y2 - y).abs().max()))
        parent, model, y = child, new, y2
    return worst


@pytest.mark.parametrize("kind", MORPH_KINDS)
def test_morph_is_function_preserving(kind):
    worst = check_kind(kind, N_FAST, seed=MORPH_KINDS.index(kind))
    assert worst < TOL, f"{kind}: max |dy| = {worst:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", MORPH_KINDS)
def test_morph_is_function_preserving_on_50_architectures(kind):
    worst = check_kind(kind, 50, seed=100 + MORPH_KINDS.index(kind))
    print(f"{kind}: 50 architectures, max |dy| = {worst:.3g}")
    assert worst < TOL, f"{kind}: max |dy| = {worst:.3g}"


def test_transforms_grow_the_layers_they_name_and_leave_the_parent_alone():
    gen = torch.Generator().manual_seed(7)
    a = SPACE.parse(f"r{RES}_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3")
    m = make_model(a, gen)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng_state = torch.get_rng_state()
    c, n = widen_expand(m, 1, 0, 6, seed=3, space=SPACE)
    assert str(c).split("_")[3] == "k3e6-k3e3"
    i = 1 + 2  # blocks.0 is the fixed first block; stage 2's first block follows stage 1's two
    assert n.blocks[i].expand.conv.weight.shape[0] == 2 * m.blocks[i].expand.conv.weight.shape[0]
    assert n.blocks[i].se.reduce.weight.shape[1] == n.blocks[i].expand.conv.weight.shape[0]
    c, n = grow_kernel(m, 4, 1, 7, space=SPACE)
    w = n.blocks[-1].dw.conv.weight.detach()
    assert w.shape[-1] == 7 and n.blocks[-1].dw.conv.padding == (3, 3)
    assert torch.equal(w[..., 2:5, 2:5], m.blocks[-1].dw.conv.weight) and float(w[..., 0, :].abs().sum()) == 0
    c, n = deepen(m, 2, space=SPACE)
    assert c.depths == (2, 2, 3, 2, 2) and len(n.blocks) == len(m.blocks) + 1
    bn = n.blocks[1 + 6].project.bn
    assert float(bn.weight.detach().abs().sum() + bn.bias.detach().abs().sum()) == 0
    c, n = widen_width(m, 1.2, space=SPACE)
    assert c.width_mult == 1.2 and n.stem.conv.weight.shape[0] > m.stem.conv.weight.shape[0]
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is not used
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_same_seed_same_mapping_other_seed_other_mapping():
    gen = torch.Generator().manual_seed(1)
    m = make_model(SPACE.smallest(), gen)
    a = widen_width(m, 1.2, seed=5, space=SPACE).model.state_dict()
    b = widen_width(m, 1.2, seed=5, space=SPACE).model.state_dict()
    c = widen_width(m, 1.2, seed=6, space=SPACE).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("call, message", [
    (lambda m: widen_expand(m, 0, 0, 8, space=SPACE), "expand ratio 8 is not a choice"),
    (lambda m: widen_expand(m, 0, 1, 4, space=SPACE), "must increase the expand ratio"),
    (lambda m: widen_expand(m, 0, 4, 6, space=SPACE), "block 5 of stage 1 does not exist"),
    (lambda m: grow_kernel(m, 1, 0, 9, space=SPACE), "kernel 9 is not a choice"),
    (lambda m: grow_kernel(m, 1, 0, 4, space=SPACE), "kernel 4 is not a choice"),
    (lambda m: grow_kernel(m, 1, 1, 5, space=SPACE), "must increase the kernel"),
    (lambda m: deepen(m, 0, space=SPACE), "depth 5 is outside the space's depths"),
    (lambda m: deepen(m, 1, index=0, space=SPACE), "cannot insert a block at position 1"),
    (lambda m: deepen(m, 1, block=Block(9, 3), space=SPACE), "kernel 9 is not a choice"),
    (lambda m: deepen(m, 7, space=SPACE), "stage 8 does not exist"),
    (lambda m: widen_width(m, 1.5, space=SPACE), "width multiplier 1.5 is not a choice"),
    (lambda m: widen_width(m, 1.0, space=SPACE), "must increase the width multiplier"),
    (lambda m: apply_morph(m, Morph("shrink"), SPACE), "unknown morph kind 'shrink'"),
    (lambda m: add_noise(m, -1.0, 0), "noise_std must be >= 0"),
])
def test_a_morph_that_would_leave_the_space_is_refused(call, message):
    m = build_torch(SPACE.parse(f"r{RES}_w1.0_k3e6-k3e6-k3e6-k3e6_k5e3-k7e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3"), N_CLASSES)
    with pytest.raises(MorphError, match=message) as e:
        call(m)
    assert isinstance(e.value, ValueError) and isinstance(e.value, HwnasError) and "\n" not in str(e.value)


def test_a_model_outside_the_space_is_refused():
    narrow = type(SPACE)(resolutions=(RES,), width_mults=(1.0,), kernels=(3,), expands=(3, 4))
    m = build_torch(SPACE.parse(f"r{RES}_w1.0_k5e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3"), N_CLASSES)
    with pytest.raises(MorphError, match="outside the space.*kernel 5"):
        widen_expand(m, 1, 0, 4, space=narrow)


def test_children_are_every_legal_one_step_morph():
    a = SPACE.smallest()
    kids = children(a, np.random.default_rng(0), SPACE)
    # 10 blocks x (expand, kernel) + 5 deepened stages + one wider network
    assert len(kids) == 26 and {m.kind for m in kids} == set(MORPH_KINDS)
    assert all(SPACE.contains(m.child(a, SPACE)) for m in kids)
    assert [m.seed for m in kids] == [m.seed for m in children(a, np.random.default_rng(0), SPACE)]
    assert children(SPACE.largest(), np.random.default_rng(0), SPACE) == []


def test_noise_is_small_seeded_and_off_by_default():
    gen = torch.Generator().manual_seed(3)
    a = SPACE.parse(f"r{RES}_w1.0_k3e3-k5e4_k3e3-k3e3_k7e3-k3e3_k3e6-k3e3_k3e3-k3e4")
    m = make_model(a, gen)
    x = torch.randn(2, 3, RES, RES, generator=gen, dtype=torch.float64)
    morph = Morph("expand", 0, 1, expand=6, seed=11)
    with torch.no_grad():
        y = m(x)
        exact = apply_morph(m, morph, SPACE).model(x)
        noisy = [apply_morph(m, morph, SPACE, noise_std=0.01).model(x) for _ in range(2)]
        other = apply_morph(m, Morph("expand", 0, 1, expand=6, seed=12), SPACE, noise_std=0.01).model(x)
    assert float((exact - y).abs().max()) < TOL
    change = float((noisy[0] - y).abs().max()) / float(y.abs().max())
    assert 1e-6 < change < 0.2, change
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], other)
