"""Builders of the CNN tuning families added on 2026-12-01 (:mod:`hwnas.zoo` lists their models).

=============  ==========================================================================
``inception``  GoogLeNet / Inception-v1 modules: four branches (1x1 | 1x1 -> 3x3 | 1x1 -> 5x5,
               3x3 or 3x3 -> 3x3 | 3x3 s1 max pool -> 1x1) joined by ``Concat``; 7x7 s2 stem,
               ceil-mode max pools between stages.  ``bn``: torchvision's layout (batch norm
               folded into every conv); without: the paper's (biased convs, ``LRN`` after the
               first pool and the third conv)
``resnext``    ResNeXt bottlenecks 1x1 -> grouped 3x3 -> 1x1 with a fixed cardinality (group
               width doubling per stage: 32x4d, 8x16d, 64x2d...) after a ResNet stem, and
               RegNetY-like stages (fixed group width, squeeze-excitation with a ReLU and a
               sigmoid gate after the grouped conv, 3x3 s2 stem)
``repvgg``     RepVGG in its deploy (re-parameterized) form: plain stacks of 3x3 conv (with
               bias) + ReLU, the first conv of each stage stride 2; depths and widths of
               RepVGG-A0 / A1 / B0
=============  ==========================================================================

Built like :mod:`hwnas.zoo_cnn` (conventions in :mod:`hwnas.zoo`'s docstring).
"""

from __future__ import annotations

from typing import Sequence

import onnx

from .builders.onnx_graph import _RESIDUAL_BRANCH_GAIN, _SE_GAIN
from .layers import DEFAULT_CLASSES
from .zoo_context import _ch, _meta, _ZooContext

__all__ = ["GOOGLENET_MODULES", "REPVGG_PRESETS", "build_inception", "build_repvgg", "build_resnext"]


# -- Inception -------------------------------------------------------------------------------------
#: GoogLeNet's inception modules: (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj); "M" is a
#: 3x3 s2 ceil-mode max pool (torchvision: 2x2 before the last stage)
GOOGLENET_MODULES: tuple[tuple[str, int, int, int, int, int, int] | str, ...] = (
    ("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64), "M",
    ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64), ("4e", 256, 160, 320, 32, 128, 128), "M",
    ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128),
)  # fmt: skip

_BRANCH3 = ("5x5", "3x3", "3x3x2")


def build_inception(
    width: float = 1.0,
    bn: bool = True,
    branch3: str = "3x3",
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """GoogLeNet with every channel count scaled by ``width``.  ``branch3`` is the third branch
    after its 1x1 reduction: ``5x5`` (the paper), ``3x3`` (torchvision's GoogLeNet) or ``3x3x2``
    (two 3x3, as BN-Inception factorizes the 5x5).  ``bn`` folds a batch norm into each conv
    (torchvision); without, the stem has the paper's two ``LRN`` nodes."""
    if branch3 not in _BRANCH3:
        raise ValueError(f"unknown branch3 {branch3!r}; expected one of {_BRANCH3}")
    ctx = _ZooContext("zoo_inception", seed)
    c1, c2, c3 = _ch(64 * width), _ch(64 * width), _ch(192 * width)
    x = ctx.conv("conv1", "input", 3, c1, 7, 2, act="relu")
    x = ctx.pool("MaxPool", "maxpool1", x, 3, 2, ceil=True)
    if not bn:
        x = ctx.node("LRN", [x], "lrn1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = ctx.conv("conv2", x, c1, c2, 1, act="relu")
    x = ctx.conv("conv3", x, c2, c3, 3, act="relu")
    if not bn:
        x = ctx.node("LRN", [x], "lrn2", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = ctx.pool("MaxPool", "maxpool2", x, 3, 2, ceil=True)
    c, n_pool = c3, 2
    for item in GOOGLENET_MODULES:
        if isinstance(item, str):
            n_pool += 1
            last = n_pool == 4
            x = ctx.pool("MaxPool", f"maxpool{n_pool}", x, 2 if last else 3, 2, ceil=True)
            continue
        name, o1, r3, o3, r5, o5, op = item
        o1, r3, o3, r5, o5, op = (_ch(v * width) for v in (o1, r3, o3, r5, o5, op))
        scope = f"inception{name}"
        b1 = ctx.conv(f"{scope}.branch1", x, c, o1, 1, act="relu")
        b2 = ctx.conv(f"{scope}.branch2.0", x, c, r3, 1, act="relu")
        b2 = ctx.conv(f"{scope}.branch2.1", b2, r3, o3, 3, act="relu")
        b3 = ctx.conv(f"{scope}.branch3.0", x, c, r5, 1, act="relu")
        if branch3 == "5x5":
            b3 = ctx.conv(f"{scope}.branch3.1", b3, r5, o5, 5, act="relu")
        else:
            b3 = ctx.conv(f"{scope}.branch3.1", b3, r5, o5, 3, act="relu")
            if branch3 == "3x3x2":
                b3 = ctx.conv(f"{scope}.branch3.2", b3, o5, o5, 3, act="relu")
        b4 = ctx.pool("MaxPool", f"{scope}.branch4.0", x, 3, 1, 1, ceil=True)
        b4 = ctx.conv(f"{scope}.branch4.1", b4, c, op, 1, act="relu")
        x = ctx.node("Concat", [b1, b2, b3, b4], f"{scope}.concat", axis=1)
        c = o1 + o3 + o5 + op
    ctx.classifier(x, c, n_classes)
    return ctx.done(batch, resolution, n_classes, _meta("inception", width=width, bn=bn, branch3=branch3,
                                                        resolution=resolution))


# -- ResNeXt / RegNetY -----------------------------------------------------------------------------
def build_resnext(
    depths: Sequence[int] = (3, 4, 6, 3),
    widths: Sequence[int] = (256, 512, 1024, 2048),
    mids: Sequence[int] = (128, 256, 512, 1024),
    group_widths: Sequence[int] = (4, 8, 16, 32),
    se_ratio: float = 0.0,
    stem: str = "resnet",
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """Stages of ``depths[s]`` bottlenecks 1x1 (``mids[s]``) -> 3x3 with ``mids[s] //
    group_widths[s]`` groups -> 1x1 (``widths[s]``), ReLU after the residual ``Add`` (1x1
    projection where the shape changes).  ``se_ratio > 0`` adds squeeze-excitation after the
    grouped conv (``se_ratio`` x the block's input channels, ReLU, sigmoid gate).  ``stem``:
    ``resnet`` (7x7 s2 conv to 64 + 3x3 s2 max pool, first stage stride 1) or ``regnet`` (3x3
    s2 conv to 32, every stage stride 2).  The defaults are ResNeXt-50 32x4d."""
    if stem not in ("resnet", "regnet"):
        raise ValueError(f"unknown stem {stem!r}; expected 'resnet' or 'regnet'")
    ctx = _ZooContext("zoo_resnext", seed)
    if stem == "resnet":
        c = 64
        x = ctx.conv("stem.conv", "input", 3, c, 7, 2, act="relu")
        x = ctx.pool("MaxPool", "stem.pool", x, 3, 2, 1)
    else:
        c = 32
        x = ctx.conv("stem.conv", "input", 3, c, 3, 2, act="relu")
    for s, (d, out, mid, gw) in enumerate(zip(depths, widths, mids, group_widths), start=1):
        if mid % gw:
            raise ValueError(f"stage {s}: bottleneck width {mid} is not a multiple of the group width {gw}")
        for b in range(1, d + 1):
            scope = f"s{s}.b{b}"
            stride = 2 if b == 1 and (s > 1 or stem == "regnet") else 1
            y = ctx.conv(f"{scope}.a", x, c, mid, 1, act="relu")
            y = ctx.conv(f"{scope}.b", y, mid, mid, 3, stride, groups=mid // gw, act="relu")
            gain = _RESIDUAL_BRANCH_GAIN
            if se_ratio > 0:
                red = max(1, round(se_ratio * c))
                g = ctx.node("GlobalAveragePool", [y], f"{scope}.se.pool")
                g = ctx.conv_bias(f"{scope}.se.reduce", g, mid, red, act="relu")
                g = ctx.node("Relu", [g], f"{scope}.se.act")
                g = ctx.conv_bias(f"{scope}.se.expand", g, red, mid)
                g = ctx.node("Sigmoid", [g], f"{scope}.se.gate")
                y = ctx.node("Mul", [y, g], f"{scope}.se.mul")
                gain *= _SE_GAIN
            y = ctx.conv(f"{scope}.c", y, mid, out, 1, gain=gain)
            if stride != 1 or c != out:
                x = ctx.conv(f"{scope}.proj", x, c, out, 1, stride)
            x = ctx.node("Relu", [ctx.node("Add", [x, y], f"{scope}.add")], f"{scope}.relu")
            c = out
    ctx.classifier(x, c, n_classes)
    meta = _meta("resnext", depths=tuple(depths), widths=tuple(widths), mids=tuple(mids),
                 group_widths=tuple(group_widths), se_ratio=se_ratio, stem=stem, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)


# -- RepVGG ----------------------------------------------------------------------------------------
#: name -> (convs per stage after the stem conv, width multipliers a (stages 1-3) and b (stage 4))
REPVGG_PRESETS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "a0": ((2, 4, 14, 1), 0.75, 2.5),
    "a1": ((2, 4, 14, 1), 1.0, 2.5),
    "b0": ((4, 6, 16, 1), 1.0, 2.5),
}


def build_repvgg(
    depths: Sequence[int] = (2, 4, 14, 1),
    a: float = 0.75,
    b: float = 2.5,
    width: float = 1.0,
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """RepVGG (deploy form): a 3x3 s2 conv to min(64, 64a), then ``depths[s]`` 3x3 convs + ReLU
    of 64a, 128a, 256a, 512b channels (the first of each stage stride 2), all channels times
    ``width``; each conv carries the bias its re-parameterized branches sum to."""
    ctx = _ZooContext("zoo_repvgg", seed)
    c = _ch(min(64, 64 * a) * width)
    x = ctx.conv("stage0", "input", 3, c, 3, 2, act="relu")
    outs = (64 * a, 128 * a, 256 * a, 512 * b)
    for s, (n, base) in enumerate(zip(depths, outs), start=1):
        out = _ch(base * width)
        for i in range(n):
            x = ctx.conv(f"stage{s}.{i}", x, c, out, 3, 2 if i == 0 else 1, act="relu")
            c = out
    ctx.classifier(x, c, n_classes, "linear")
    meta = _meta("repvgg", depths=tuple(depths), a=a, b=b, width=width, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)
