"""Builders of the sealed families added on 2026-12-01 (registered in :mod:`hwnas.zoo_sealed`).

=================  ======================================================================
``xception``       Xception: entry flow (3x3 s2 conv, 3x3 conv, three residual blocks of
                   separable convs with a 3x3 s2 ``MaxPool`` in the branch and a 1x1 s2
                   conv shortcut), middle flow (identity residual blocks of three
                   ReLU-separable conv), exit flow (one more downsampling block, two
                   separable convs with ReLU after); a separable conv is a depthwise 3x3
                   ``Conv`` without bias or batch norm followed by a 1x1 conv (BN folded)
``squeezenext``    SqueezeNext: 7x7 s2 stem + 3x3 s2 max pool; blocks 1x1 (out/2, stride)
                   -> 1x1 (out/4) -> 3x1 (out/2) -> 1x3 (out/2) -> 1x1 (out), ReLU after
                   each but the last, residual ``Add`` (1x1 projection when the shape
                   changes) + ReLU; 1x1 conv to 128 x width before pooling
=================  ======================================================================

Built like the zoo (:mod:`hwnas.zoo_context`): opset 17, seeded random weights with
variance-preserving scales, batch norms folded into their convs.
"""

from __future__ import annotations

import math
from typing import Sequence

import onnx

from .builders.onnx_graph import _RESIDUAL_BRANCH_GAIN
from .layers import DEFAULT_CLASSES
from .zoo_context import _ch, _meta, _ZooContext

__all__ = ["build_squeezenext", "build_xception"]

_RELU_GAIN = math.sqrt(2.0)  # a linear conv whose output goes through a ReLU next


class _SeparableContext(_ZooContext):
    """The zoo's graph context plus bias-free depthwise convs, separable convs and convs with
    rectangular kernels (3x1, 1x3)."""

    def conv_rect(self, scope: str, x: str, in_ch: int, out_ch: int, kh: int, kw: int, stride: int = 1,
                  act: str | None = None, gain: float = 1.0) -> str:
        """A ``kh`` x ``kw`` conv + folded BN (pads ``kh // 2``, ``kw // 2``) and activation."""
        g2 = gain * gain * (2.0 if act == "relu" else 1.0)
        w = self._uniform((out_ch, in_ch, kh, kw), math.sqrt(3.0 * g2 / (in_ch * kh * kw)))
        b = self._uniform((out_ch,), 0.05)
        y = self.node("Conv", [x, self._init(f"{scope}.weight", w), self._init(f"{scope}.bias", b)], scope,
                      kernel_shape=[kh, kw], strides=[stride, stride], pads=[kh // 2, kw // 2, kh // 2, kw // 2])
        return self.act(act, y, f"{scope}.act")

    def separable(self, scope: str, x: str, in_ch: int, out_ch: int, gain: float = 1.0) -> str:
        """Depthwise 3x3 (no bias, no BN: ``scope.dw``) -> 1x1 + folded BN (``scope.pw``)."""
        w = self._random_conv(in_ch, 1, 3, 1.0)
        y = self.node("Conv", [x, self._init(f"{scope}.dw.weight", w)], f"{scope}.dw",
                      kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], group=in_ch)
        return self.conv(f"{scope}.pw", y, in_ch, out_ch, 1, gain=gain)


# -- Xception --------------------------------------------------------------------------------------
def _xception_down(ctx: _SeparableContext, scope: str, x: str, in_ch: int, mid: int, out: int, relu_first: bool) -> str:
    """A downsampling block: [ReLU] sep(in -> mid), ReLU, sep(mid -> out), 3x3 s2 max pool; 1x1 s2
    conv shortcut; ``Add``."""
    y = ctx.node("Relu", [x], f"{scope}.relu1") if relu_first else x
    y = ctx.separable(f"{scope}.sep1", y, in_ch, mid, gain=_RELU_GAIN)
    y = ctx.node("Relu", [y], f"{scope}.relu2")
    y = ctx.separable(f"{scope}.sep2", y, mid, out, gain=_RESIDUAL_BRANCH_GAIN)
    y = ctx.pool("MaxPool", f"{scope}.pool", y, 3, 2, 1)
    sc = ctx.conv(f"{scope}.skip", x, in_ch, out, 1, 2)
    return ctx.node("Add", [sc, y], f"{scope}.add")


def build_xception(width: float = 1.0, middle: int = 8, resolution: int = 224, batch: int = 1,
                   n_classes: int = DEFAULT_CLASSES, seed: int = 0) -> onnx.ModelProto:
    """Xception with channels scaled by ``width`` (32, 64 | 128, 256, 728 | 728 x ``middle`` |
    1024, 1536, 2048 at 1.0) and ``middle`` middle-flow blocks (8 in the paper)."""
    ctx = _SeparableContext("zoo_xception", seed)
    c1, c2 = _ch(32 * width), _ch(64 * width)
    e1, e2, e3 = _ch(128 * width), _ch(256 * width), _ch(728 * width)
    x1, x2, x3 = _ch(1024 * width), _ch(1536 * width), _ch(2048 * width)
    x = ctx.conv("entry.conv1", "input", 3, c1, 3, 2, act="relu")
    x = ctx.conv("entry.conv2", x, c1, c2, 3, act="relu")
    c = c2
    for i, out in enumerate((e1, e2, e3), start=1):
        x = _xception_down(ctx, f"entry.block{i}", x, c, out, out, relu_first=i > 1)
        c = out
    for i in range(1, middle + 1):
        y = x
        for j in range(1, 4):
            y = ctx.node("Relu", [y], f"middle.block{i}.relu{j}")
            y = ctx.separable(f"middle.block{i}.sep{j}", y, c, c,
                              gain=_RESIDUAL_BRANCH_GAIN if j == 3 else _RELU_GAIN)
        x = ctx.node("Add", [x, y], f"middle.block{i}.add")
    x = _xception_down(ctx, "exit.block1", x, c, c, x1, relu_first=True)
    x = ctx.separable("exit.sep3", x, x1, x2, gain=_RELU_GAIN)
    x = ctx.node("Relu", [x], "exit.relu3")
    x = ctx.separable("exit.sep4", x, x2, x3, gain=_RELU_GAIN)
    x = ctx.node("Relu", [x], "exit.relu4")
    ctx.classifier(x, x3, n_classes)
    return ctx.done(batch, resolution, n_classes, _meta("xception", width=width, middle=middle, resolution=resolution))


# -- SqueezeNext -----------------------------------------------------------------------------------
#: name -> blocks per stage (1.0-SqNxt-23 and the paper's 23v5 re-distribution)
SQUEEZENEXT_DEPTHS = {"23": (6, 6, 8, 1), "23v5": (2, 4, 14, 1)}


def build_squeezenext(depths: Sequence[int] = (6, 6, 8, 1), width: float = 1.0, resolution: int = 224,
                      batch: int = 1, n_classes: int = DEFAULT_CLASSES, seed: int = 0) -> onnx.ModelProto:
    """SqueezeNext ``width``x with ``depths[s]`` blocks of 32, 64, 128, 256 x ``width`` channels
    per stage (the first block of stages 2-4 stride 2)."""
    ctx = _SeparableContext("zoo_squeezenext", seed)
    c = _ch(64 * width)
    x = ctx.conv("stem", "input", 3, c, 7, 2, act="relu")
    x = ctx.pool("MaxPool", "stem.pool", x, 3, 2, 1)
    for s, n in enumerate(depths, start=1):
        out = _ch(32 * 2 ** (s - 1) * width)
        half, quarter = _ch(out / 2), _ch(out / 4)
        for b in range(1, n + 1):
            scope, stride = f"stage{s}.block{b}", 2 if s > 1 and b == 1 else 1
            y = ctx.conv(f"{scope}.reduce1", x, c, half, 1, stride, act="relu")
            y = ctx.conv(f"{scope}.reduce2", y, half, quarter, 1, act="relu")
            y = ctx.conv_rect(f"{scope}.conv3x1", y, quarter, half, 3, 1, act="relu")
            y = ctx.conv_rect(f"{scope}.conv1x3", y, half, half, 1, 3, act="relu")
            y = ctx.conv(f"{scope}.expand", y, half, out, 1, gain=_RESIDUAL_BRANCH_GAIN)
            sc = x if stride == 1 and c == out else ctx.conv(f"{scope}.shortcut", x, c, out, 1, stride)
            x = ctx.node("Relu", [ctx.node("Add", [sc, y], f"{scope}.add")], f"{scope}.relu")
            c = out
    last = _ch(128 * width)
    x = ctx.conv("head", x, c, last, 1, act="relu")
    ctx.classifier(x, last, n_classes)
    meta = _meta("squeezenext", depths=tuple(depths), width=width, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)
