"""Function-preserving transforms (network morphisms) on the space's torch models.

Each transform takes a :class:`~hwnas.builders.torch_model.MobileNetV3` and returns a
:class:`Morphed` pair: the grown architecture and a new model whose eval-mode outputs equal the
old model's (up to float rounding).  Four kinds, each one step inside the space:

``expand``  widen one block's expand ratio (e.g. 3 -> 4 -> 6), Net2WiderNet with batch norm:
            expand-conv output channels are replicated with their batch-norm weight, bias,
            running mean and running variance; depthwise filters (and their batch norm) are
            copied without division; every weight that reads a replicated channel (squeeze-excite
            reduce and expand, project conv) is divided by the channel's replica count.  New
            channel ``j >= old`` copies a seeded random old channel.
``width``   widen the width multiplier (e.g. 1.0 -> 1.2): the space's width scales every layer
            (:func:`hwnas.layers.widths`), so the whole network widens at once, stem, every stage,
            head; the channels a residual sum ties together share one replica mapping.
``deepen``  insert a residual block (stride 1, same channels) after the first block of a stage;
            its project batch norm has weight = bias = 0, so it adds exactly zero.
``kernel``  grow one depthwise kernel (3 -> 5 -> 7) by zero-padding its filters.

Every transform refuses (:class:`MorphError`, a ``ValueError``) a step that would leave the
space or shrink a layer.  :func:`children` lists an architecture's legal one-step morphs.
Optional symmetry-breaking noise (seeded, off by default) is added after the exact transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..builders.torch_model import MobileNetV3, build_torch
from ..errors import InputError
from ..layers import BlockSpec, NetworkPlan
from ..space import DEFAULT_SPACE, Arch, Block, SearchSpace

MORPH_KINDS = ("expand", "width", "deepen", "kernel")
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class MorphError(InputError, ValueError):
    """A morph that would leave the space, shrink a layer, or address a block that does not exist."""


class Morphed(NamedTuple):
    arch: Arch
    model: MobileNetV3


@dataclass(frozen=True)
class Morph:
    """One transform step.  ``stage`` and ``index`` are 0-based; for ``deepen`` ``index`` is the
    insertion position in the stage (>= 1: the first block of a stage strides) and ``kernel`` /
    ``expand`` the new block's; ``seed`` draws the Net2Net channel mapping and the new block's
    initial weights (and the noise, when asked for)."""

    kind: str
    stage: int = 0
    index: int = 0
    kernel: int = 0
    expand: int = 0
    width_mult: float = 0.0
    seed: int = 0

    def __str__(self) -> str:
        where = f"s{self.stage + 1}b{self.index + 1}"
        if self.kind == "expand":
            return f"expand {where} -> e{self.expand}"
        if self.kind == "kernel":
            return f"kernel {where} -> k{self.kernel}"
        if self.kind == "deepen":
            return f"deepen {where} += k{self.kernel}e{self.expand}"
        return f"width -> w{self.width_mult:g}"

    def child(self, arch: Arch, space: SearchSpace = DEFAULT_SPACE) -> Arch:
        """The architecture this morph makes of ``arch``; MorphError if it would leave ``space``."""
        try:
            space.validate(arch)
        except ValueError as e:
            raise MorphError(f"cannot morph {arch}: it is outside the space: {e}") from None
        if self.kind not in MORPH_KINDS:
            raise MorphError(f"unknown morph kind {self.kind!r}; expected one of {', '.join(MORPH_KINDS)}")
        if self.kind == "width":
            if not any(abs(self.width_mult - w) < 1e-9 for w in space.width_mults):
                raise MorphError(f"width multiplier {self.width_mult:g} is not a choice of the space "
                                 f"{list(space.width_mults)}")
            if self.width_mult <= arch.width_mult + 1e-9:
                raise MorphError(f"widening must increase the width multiplier: {arch.width_mult:g} -> "
                                 f"{self.width_mult:g}")
            return Arch(arch.resolution, self.width_mult, arch.stages)
        if not 0 <= self.stage < len(arch.stages):
            raise MorphError(f"stage {self.stage + 1} does not exist (the space has {len(arch.stages)} stages)")
        stages = [list(s) for s in arch.stages]
        stage = stages[self.stage]
        if self.kind == "deepen":
            if len(stage) + 1 > space.max_depth or len(stage) + 1 not in space.depths:
                raise MorphError(f"cannot deepen stage {self.stage + 1}: depth {len(stage) + 1} is outside "
                                 f"the space's depths {list(space.depths)}")
            if not 1 <= self.index <= len(stage):
                raise MorphError(f"cannot insert a block at position {self.index + 1} of stage {self.stage + 1}: "
                                 f"positions 2..{len(stage) + 1} keep stride 1 and the stage's channels")
            _check_choice("kernel", self.kernel, space.kernels)
            _check_choice("expand ratio", self.expand, space.expands)
            stage.insert(self.index, Block(self.kernel, self.expand))
        else:
            if not 0 <= self.index < len(stage):
                raise MorphError(f"block {self.index + 1} of stage {self.stage + 1} does not exist "
                                 f"(the stage has {len(stage)})")
            b = stage[self.index]
            if self.kind == "expand":
                _check_choice("expand ratio", self.expand, space.expands)
                if self.expand <= b.expand:
                    raise MorphError(f"widening must increase the expand ratio: block {b} of stage "
                                     f"{self.stage + 1} -> e{self.expand}")
                stage[self.index] = Block(b.kernel, self.expand)
            else:
                _check_choice("kernel", self.kernel, space.kernels)
                if self.kernel <= b.kernel:
                    raise MorphError(f"growing must increase the kernel: block {b} of stage {self.stage + 1} "
                                     f"-> k{self.kernel}")
                stage[self.index] = Block(self.kernel, b.expand)
        return Arch(arch.resolution, arch.width_mult, tuple(tuple(s) for s in stages))


def _check_choice(what: str, value: int, choices: tuple[int, ...]) -> None:
    if value not in choices:
        raise MorphError(f"{what} {value} is not a choice of the space {list(choices)}")


# -- the one weight transfer all four kinds share ---------------------------------------------------

def _grow_map(old_n: int, new_n: int, rng: np.random.Generator) -> torch.Tensor:
    """Net2Net mapping of ``new_n`` channels onto ``old_n``: the first ``old_n`` are themselves,
    each further one a random old channel."""
    if new_n < old_n:
        raise MorphError(f"a layer would shrink from {old_n} to {new_n} channels: not function-preserving")
    extra = rng.integers(old_n, size=new_n - old_n)
    return torch.from_numpy(np.concatenate([np.arange(old_n), extra]).astype(np.int64))


class _Transfer:
    """Writes a new model's state from the old one's, channel maps in hand, and checks that every
    tensor of the new model was written."""

    def __init__(self, old: MobileNetV3, new: MobileNetV3) -> None:
        self.old = old.state_dict()
        self.new = new.state_dict()
        self.done: set[str] = set()

    def put(self, key: str, value: torch.Tensor) -> None:
        self.new[key].copy_(value)
        self.done.add(key)

    def weight(self, new_key: str, old_key: str, out_map: torch.Tensor | None, in_map: torch.Tensor | None,
               depthwise: bool = False) -> None:
        """A conv / linear weight ``[out, in, ...]``: rows replicated by ``out_map``; columns
        replicated by ``in_map`` and divided by their replica counts (depthwise: no columns to
        divide); a smaller kernel zero-padded to the new one."""
        w = self.old[old_key]
        if out_map is not None:
            w = w.index_select(0, out_map)
        if in_map is not None and not depthwise:
            counts = torch.bincount(in_map).to(w.dtype)[in_map]
            w = w.index_select(1, in_map) / counts.view(1, -1, *([1] * (w.dim() - 2)))
        target = self.new[new_key]
        if w.dim() == 4 and w.shape[-1] < target.shape[-1]:
            p = (target.shape[-1] - w.shape[-1]) // 2
            w = F.pad(w, (p, p, p, p))
        self.put(new_key, w)

    def vector(self, new_key: str, old_key: str, out_map: torch.Tensor | None) -> None:
        v = self.old[old_key]
        self.put(new_key, v if out_map is None or v.dim() == 0 else v.index_select(0, out_map))

    def conv_bn(self, new_prefix: str, old_prefix: str, out_map, in_map, depthwise: bool = False) -> None:
        self.weight(f"{new_prefix}.conv.weight", f"{old_prefix}.conv.weight", out_map, in_map, depthwise)
        for t in _BN_TENSORS:
            self.vector(f"{new_prefix}.bn.{t}", f"{old_prefix}.bn.{t}", out_map)


def _init_identity_block(model: MobileNetV3, index: int, generator: torch.Generator) -> set[str]:
    """Seeded fresh weights for an inserted block whose project batch norm (weight = bias = 0)
    makes it add zero; returns the state-dict keys it wrote."""
    block = model.blocks[index]
    written = set()
    for name, t in block.state_dict().items():
        key = f"blocks.{index}.{name}"
        if name.endswith("num_batches_tracked") or name.endswith("running_mean"):
            t.zero_()
        elif name.endswith("running_var"):
            t.fill_(1.0)
        elif ".bn." in f".{name}" and name.endswith("weight"):
            t.fill_(0.0 if name.startswith("project.") else 1.0)
        elif name.endswith("bias"):  # batch-norm shifts (the project one included) and SE biases
            t.zero_()
        else:  # conv weights: He init (fan out), as OFA initializes
            fan_out = t.shape[0] * t[0, 0].numel()
            t.copy_(torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) * (2.0 / fan_out) ** 0.5)
        written.add(key)
    return written


def _empty_like_arch(old: MobileNetV3, arch: Arch) -> MobileNetV3:
    """A model of ``arch`` on ``old``'s device and dtype, every tensor to be overwritten (its
    default init draws from torch's global RNG, whose state is restored afterwards)."""
    p = next(old.parameters())
    with torch.random.fork_rng(devices=[]):
        new = build_torch(arch, old.head.classifier.out_features)
    return new.to(device=p.device, dtype=p.dtype).train(old.training)


def _morph_weights(old: MobileNetV3, arch: Arch, block_source: list[int | None], rng: np.random.Generator,
                   init_seed: int) -> MobileNetV3:
    """The new model of ``arch``: block ``i`` takes the weights of old block ``block_source[i]``
    (None: a fresh zero-output block); every channel dimension that grew is Net2Net-widened, the
    dimensions a residual sum ties sharing one mapping."""
    new = _empty_like_arch(old, arch)
    op: NetworkPlan = old.plan
    nw: NetworkPlan = new.plan
    tr = _Transfer(old, new)
    with torch.no_grad():
        stem_map = _grow_map(op.stem.out_ch, nw.stem.out_ch, rng)
        tr.conv_bn("stem", "stem", stem_map, None)
        old_blocks, new_blocks = op.all_blocks(), nw.all_blocks()
        cur = stem_map  # mapping of the channels flowing between blocks
        stage_maps: dict[int, torch.Tensor] = {}
        fresh: list[int] = []
        for i, (spec, src) in enumerate(zip(new_blocks, block_source)):
            if src is None:
                fresh.append(i)
                continue
            ospec: BlockSpec = old_blocks[src]
            if i == 0:
                out_map = cur  # the first block maps the stem's channels onto themselves
            else:
                stage = nw.stage_of_block[i - 1]
                if stage not in stage_maps:
                    stage_maps[stage] = _grow_map(ospec.out_ch, spec.out_ch, rng)
                out_map = stage_maps[stage]
            in_map = cur
            if spec.expand == 1:
                mid_map = in_map
            else:
                mid_map = _grow_map(ospec.mid_ch, spec.mid_ch, rng)
                tr.conv_bn(f"blocks.{i}.expand", f"blocks.{src}.expand", mid_map, in_map)
            tr.conv_bn(f"blocks.{i}.dw", f"blocks.{src}.dw", mid_map, mid_map, depthwise=True)
            if spec.se:
                se_map = _grow_map(ospec.se_ch, spec.se_ch, rng)
                tr.weight(f"blocks.{i}.se.reduce.weight", f"blocks.{src}.se.reduce.weight", se_map, mid_map)
                tr.vector(f"blocks.{i}.se.reduce.bias", f"blocks.{src}.se.reduce.bias", se_map)
                tr.weight(f"blocks.{i}.se.expand.weight", f"blocks.{src}.se.expand.weight", mid_map, se_map)
                tr.vector(f"blocks.{i}.se.expand.bias", f"blocks.{src}.se.expand.bias", mid_map)
            tr.conv_bn(f"blocks.{i}.project", f"blocks.{src}.project", out_map, mid_map)
            cur = out_map
        final_map = _grow_map(op.head.final_expand, nw.head.final_expand, rng)
        last_map = _grow_map(op.head.last_ch, nw.head.last_ch, rng)
        tr.conv_bn("head.expand", "head.expand", final_map, cur)
        tr.weight("head.feature.weight", "head.feature.weight", last_map, final_map)
        tr.vector("head.feature.bias", "head.feature.bias", last_map)
        tr.weight("head.classifier.weight", "head.classifier.weight", None, last_map)
        tr.vector("head.classifier.bias", "head.classifier.bias", None)
        gen = torch.Generator().manual_seed(init_seed)
        for i in fresh:
            tr.done |= _init_identity_block(new, i, gen)
    missing = set(tr.new) - tr.done
    if missing:  # a layout this transfer does not know: never hand back uninitialized memory
        raise RuntimeError(f"morph left {len(missing)} tensors unwritten, e.g. {sorted(missing)[0]}")
    return new


def _flat_index(arch: Arch, stage: int, index: int) -> int:
    """Index in ``model.blocks`` of block ``index`` of ``stage`` (``blocks.0`` is the fixed first block)."""
    return 1 + sum(arch.depths[:stage]) + index


def add_noise(model: MobileNetV3, noise_std: float, seed: int) -> MobileNetV3:
    """Symmetry-breaking noise, in place: each conv / linear weight gets Gaussian noise of
    ``noise_std`` times that weight's standard deviation (seeded; batch norm untouched, so an
    inserted block still adds zero)."""
    if noise_std < 0:
        raise MorphError(f"noise_std must be >= 0, got {noise_std}")
    if noise_std == 0:
        return model
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:  # conv and linear weights
                scale = float(p.std()) if p.numel() > 1 else 0.0
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * (noise_std * scale))
    return model


def apply_morph(model: MobileNetV3, morph: Morph, space: SearchSpace = DEFAULT_SPACE,
                noise_std: float = 0.0) -> Morphed:
    """Apply ``morph`` to ``model`` (left unchanged): the child architecture and its model with
    transferred weights, function-preserving before the optional noise (``noise_std`` relative to
    each weight's spread, seeded by ``morph.seed``)."""
    if not isinstance(model, MobileNetV3):
        raise MorphError(f"morphs apply to hwnas MobileNetV3 models, got {type(model).__name__}")
    arch = model.arch
    child = morph.child(arch, space)
    n_old = 1 + arch.n_blocks
    source: list[int | None] = list(range(n_old))
    if morph.kind == "deepen":
        source.insert(_flat_index(arch, morph.stage, morph.index), None)
    rng = np.random.default_rng(morph.seed)
    new = _morph_weights(model, child, source, rng, init_seed=morph.seed)
    add_noise(new, noise_std, morph.seed + 1)
    return Morphed(child, new)


def widen_expand(model: MobileNetV3, stage: int, index: int, expand: int, seed: int = 0,
                 space: SearchSpace = DEFAULT_SPACE, noise_std: float = 0.0) -> Morphed:
    """Widen block ``index`` of ``stage`` (0-based) to expand ratio ``expand``."""
    return apply_morph(model, Morph("expand", stage, index, expand=expand, seed=seed), space, noise_std)


def widen_width(model: MobileNetV3, width_mult: float, seed: int = 0, space: SearchSpace = DEFAULT_SPACE,
                noise_std: float = 0.0) -> Morphed:
    """Widen the whole network to width multiplier ``width_mult``."""
    return apply_morph(model, Morph("width", width_mult=width_mult, seed=seed), space, noise_std)


def deepen(model: MobileNetV3, stage: int, index: int | None = None, block: Block | None = None, seed: int = 0,
           space: SearchSpace = DEFAULT_SPACE, noise_std: float = 0.0) -> Morphed:
    """Insert a zero-output residual block into ``stage`` at position ``index`` (default: the end;
    >= 1) with kernel and expand of ``block`` (default: the space's smallest)."""
    if not 0 <= stage < len(model.arch.stages):
        raise MorphError(f"stage {stage + 1} does not exist (the space has {len(model.arch.stages)} stages)")
    index = len(model.arch.stages[stage]) if index is None else index
    block = block or Block(min(space.kernels), min(space.expands))
    return apply_morph(model, Morph("deepen", stage, index, kernel=block.kernel, expand=block.expand, seed=seed),
                       space, noise_std)


def grow_kernel(model: MobileNetV3, stage: int, index: int, kernel: int, space: SearchSpace = DEFAULT_SPACE,
                noise_std: float = 0.0, seed: int = 0) -> Morphed:
    """Grow the depthwise kernel of block ``index`` of ``stage`` (0-based) to ``kernel`` by zero-padding."""
    return apply_morph(model, Morph("kernel", stage, index, kernel=kernel, seed=seed), space, noise_std)


def children(arch: Arch, rng: np.random.Generator, space: SearchSpace = DEFAULT_SPACE) -> list[Morph]:
    """Every legal one-step morph of ``arch`` inside ``space``: each block's expand ratio and kernel
    to the next larger choice, each stage not at the space's largest depth deepened at its end by
    the smallest block, the width multiplier to the next larger choice.  Each morph carries a seed
    drawn from ``rng`` (its channel mapping and new weights)."""
    space.validate(arch)

    def bigger(value: float, choices) -> float | None:
        larger = [c for c in choices if c > value + 1e-9]
        return min(larger) if larger else None

    out: list[Morph] = []
    for s, stage in enumerate(arch.stages):
        for j, b in enumerate(stage):
            e = bigger(b.expand, space.expands)
            if e is not None:
                out.append(Morph("expand", s, j, expand=int(e)))
            k = bigger(b.kernel, space.kernels)
            if k is not None:
                out.append(Morph("kernel", s, j, kernel=int(k)))
        if len(stage) + 1 in space.depths:
            out.append(Morph("deepen", s, len(stage), kernel=min(space.kernels), expand=min(space.expands)))
    w = bigger(arch.width_mult, space.width_mults)
    if w is not None:
        out.append(Morph("width", width_mult=float(w)))
    seeds = rng.integers(2**31, size=len(out))
    return [Morph(m.kind, m.stage, m.index, m.kernel, m.expand, m.width_mult, int(sd)) for m, sd in zip(out, seeds)]
