"""Decoding: an :class:`~hwnas.space.Arch` into concrete layers (channels, strides, shapes).

Both builders (torch and ONNX), the analytic cost model and the block lookup table read this
one plan, so they cannot disagree about what a block is.  Layout follows Once-for-All's
MobileNetV3 (FIELD-NOTES §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .space import Arch

BASE_STEM = 16
BASE_STAGE_WIDTHS = (24, 40, 80, 112, 160)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
BASE_FINAL_EXPAND = 960
BASE_LAST = 1280
DEFAULT_CLASSES = 1000


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


@dataclass(frozen=True)
class BlockSpec:
    """A fully specified MBConv block with its input shape (batch excluded).

    ``expand == 1`` means no expansion conv (the fixed first block).  The fields are exactly
    what determines the block's latency, so a ``BlockSpec`` is the lookup-table key.
    """

    in_res: int
    in_ch: int
    out_ch: int
    kernel: int
    expand: int
    stride: int
    act: str
    se: bool

    @property
    def mid_ch(self) -> int:
        return self.in_ch if self.expand == 1 else make_divisible(round(self.in_ch * self.expand), 8)

    @property
    def se_ch(self) -> int:
        return make_divisible(self.mid_ch // 4, 8)

    @property
    def out_res(self) -> int:
        return (self.in_res + self.stride - 1) // self.stride

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch

    @property
    def key(self) -> str:
        """Stable text key, e.g. ``mb_r56_i24_o40_k5_e4_s2_relu_se``."""
        return (
            f"mb_r{self.in_res}_i{self.in_ch}_o{self.out_ch}_k{self.kernel}_e{self.expand}_s{self.stride}"
            f"_{self.act}{'_se' if self.se else ''}"
        )


@dataclass(frozen=True)
class StemSpec:
    """3x3 stride-2 conv + BN + h-swish."""

    in_res: int
    out_ch: int

    @property
    def out_res(self) -> int:
        return (self.in_res + 1) // 2

    @property
    def key(self) -> str:
        return f"stem_r{self.in_res}_o{self.out_ch}"


@dataclass(frozen=True)
class HeadSpec:
    """1x1 conv -> final_expand + BN + h-swish, global pool, 1x1 conv -> last + h-swish, linear."""

    in_res: int
    in_ch: int
    final_expand: int
    last_ch: int
    n_classes: int

    @property
    def key(self) -> str:
        return f"head_r{self.in_res}_i{self.in_ch}_f{self.final_expand}_l{self.last_ch}_c{self.n_classes}"


@dataclass(frozen=True)
class NetworkPlan:
    resolution: int
    stem: StemSpec
    first_block: BlockSpec
    blocks: tuple[BlockSpec, ...]
    stage_of_block: tuple[int, ...]
    head: HeadSpec

    def all_blocks(self) -> tuple[BlockSpec, ...]:
        return (self.first_block,) + self.blocks


def widths(width_mult: float) -> tuple[int, tuple[int, ...], int, int]:
    """(stem, stage widths, final expand, last channels) for a width multiplier."""
    stem = make_divisible(BASE_STEM * width_mult)
    stages = tuple(make_divisible(w * width_mult) for w in BASE_STAGE_WIDTHS)
    return stem, stages, make_divisible(BASE_FINAL_EXPAND * width_mult), make_divisible(BASE_LAST * width_mult)


def plan(arch: Arch, n_classes: int = DEFAULT_CLASSES) -> NetworkPlan:
    """Decode ``arch`` into its layers."""
    stem_ch, stage_ws, final_expand, last_ch = widths(arch.width_mult)
    stem = StemSpec(arch.resolution, stem_ch)
    res = stem.out_res
    first = BlockSpec(res, stem_ch, stem_ch, 3, 1, 1, "relu", False)
    ch = stem_ch
    blocks: list[BlockSpec] = []
    stage_of: list[int] = []
    for si, stage in enumerate(arch.stages):
        for bi, b in enumerate(stage):
            stride = STAGE_STRIDES[si] if bi == 0 else 1
            spec = BlockSpec(res, ch, stage_ws[si], b.kernel, b.expand, stride, STAGE_ACTS[si], STAGE_SE[si])
            blocks.append(spec)
            stage_of.append(si)
            res, ch = spec.out_res, spec.out_ch
    head = HeadSpec(res, ch, final_expand, last_ch, n_classes)
    return NetworkPlan(arch.resolution, stem, first, tuple(blocks), tuple(stage_of), head)


def table_slots(space):
    """Every table slot of a space, with the layer that fills it.

    Yields ``(index, spec)``: ``index`` is ``(ri, wi, stage, 0 first | 1 later, ki, ei)`` for
    elastic blocks, and ``(ri, wi)`` for the fixed parts (stem, first block, head, one each).
    Lookup tables and cost tables are dense arrays over these indices, so a batch of
    architectures is scored by array indexing alone.
    """
    from .space import N_STAGES, Arch, Block

    for ri, res in enumerate(space.resolutions):
        for wi, w in enumerate(space.width_mults):
            for ki, k in enumerate(space.kernels):
                for ei, e in enumerate(space.expands):
                    b = Block(k, e)
                    p = plan(Arch(res, w, tuple((b, b) for _ in range(N_STAGES))))
                    for idx, spec in enumerate(p.blocks):
                        yield (ri, wi, idx // 2, idx % 2, ki, ei), spec
                    if ki == 0 and ei == 0:
                        for spec in (p.stem, p.first_block, p.head):
                            yield (ri, wi), spec
