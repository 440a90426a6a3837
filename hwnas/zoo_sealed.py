"""Sealed CNN families: a test set the latency predictors were never tuned on.

The families of :mod:`hwnas.zoo` (seven, then ten from 2026-12-01) judged the kernel predictor
while its features and the profiler correction were chosen, so their held-out figure is also a tuning figure.  The families
here were written down (``benchmarks/sealed_families.txt``) before any of their latencies was
measured or predicted (``regnetx`` and ``convnext`` are opened since: :data:`OPENED_FAMILIES`; their
candidates stay here, their figures count with the tuning families); they are measured into a profile with the zoo (same part, same keys
``zoo:<name>``), and judged with every sealed model excluded from fitting, apart from the tuning
families (:func:`hwnas.predictors.evaluate.evaluate_families`).

=============  ==========================================================================
``regnetx``    RegNetX: 1x1 - grouped 3x3 (fixed group width) - 1x1 residual bottlenecks
               (bottleneck ratio 1), 1x1 s2 projection shortcuts, ReLU; stem 3x3 s2 conv
``ghostnet``   GhostNet: Ghost modules (1x1 primary conv to half the channels + depthwise 3x3
               "cheap" conv, ``Concat``), depthwise s2 between them, SE with hard sigmoid,
               depthwise + 1x1 shortcuts; head conv to 1280 after pooling
``convnext``   ConvNeXt (torchvision layout): 4x4 s4 patchify stem, blocks of depthwise 7x7 ->
               ``Transpose`` to channels-last -> ``LayerNormalization`` -> ``MatMul`` MLP (4x)
               with GELU (Erf form, as torch exports it at opset 17) -> ``Transpose`` back ->
               layer scale ``Mul`` -> ``Add``; LayerNorm + 2x2 s2 conv downsampling
``mnasnet``    MnasNet-B1 (torchvision layout): 3x3 s2 conv, separable conv (dw 3x3 + 1x1),
               inverted residuals with expand 3 / 6 and 3x3 / 5x5 depthwise, ReLU, conv 1280
``xception``   Xception (sealed 2026-12-01, :mod:`hwnas.zoo_sealed_extra`): entry / middle /
               exit flows of separable convs (bias-free depthwise 3x3 + 1x1), pre-activation
               ReLU, 3x3 s2 max pool in residual branches with 1x1 s2 conv shortcuts
``squeezenext`` SqueezeNext (sealed 2026-12-01, :mod:`hwnas.zoo_sealed_extra`): residual
               blocks 1x1 -> 1x1 -> 3x1 -> 1x3 -> 1x1 (rectangular kernels), 7x7 s2 stem
=============  ==========================================================================

Built like the zoo (opset 17, IR 8, input ``input`` ``[batch, 3, r, r]``, seeded random weights
with variance-preserving scales, batch norms folded into their convs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import onnx

from .builders.onnx_graph import _RESIDUAL_BRANCH_GAIN, _SE_GAIN
from .layers import DEFAULT_CLASSES
from .zoo import ZooModel, _w, candidates, spread
from .zoo_context import _ch, _meta, _ZooContext
from .zoo_sealed_extra import SQUEEZENEXT_DEPTHS, build_squeezenext, build_xception

__all__ = ["OPENED_FAMILIES", "SEALED_FAMILIES", "SealedModel", "build_convnext", "build_ghostnet", "build_mnasnet", "build_regnetx",
           "build_squeezenext", "build_xception", "model_by_name", "opened_models", "sealed_models"]

#: the sealed families, fixed before any of them was measured (``benchmarks/sealed_families.txt``);
#: xception and squeezenext added on 2026-12-01, before any of their models was measured or predicted
SEALED_FAMILIES = ("ghostnet", "mnasnet", "xception", "squeezenext")
#: families once sealed, opened since (their per-kernel errors were read to change the predictor):
#: tuning families now, measured and fitted on like those of :mod:`hwnas.zoo`.  ConvNeXt was opened
#: on 2026-12-01 to design the transformer-shaped kernel campaign (its channels-last MLP runs
#: token-shaped Gemm kernels).
OPENED_FAMILIES = ("convnext", "regnetx")

_GELU_GAIN2 = 2.35  # 1 / E[gelu(z)^2], z ~ N(0, 1)


class _SealedContext(_ZooContext):
    """The zoo's graph context plus channels-last LayerNorm, GELU and MatMul layers (ConvNeXt)."""

    def transpose(self, name: str, x: str, perm: Sequence[int]) -> str:
        return self.node("Transpose", [x], name, perm=list(perm))

    def layernorm(self, scope: str, x: str, ch: int) -> str:
        """``LayerNormalization`` over the last axis (``ch`` features), near-identity affine."""
        scale = self._init(f"{scope}.weight", 1.0 + self._uniform((ch,), 0.1))
        bias = self._init(f"{scope}.bias", self._uniform((ch,), 0.05))
        return self.node("LayerNormalization", [x, scale, bias], scope, axis=-1, epsilon=1e-6)

    def layernorm2d(self, scope: str, x: str, ch: int) -> str:
        """torchvision's ``LayerNorm2d``: channels-last, LayerNorm, channels-first again."""
        y = self.transpose(f"{scope}.to_nhwc", x, (0, 2, 3, 1))
        y = self.layernorm(scope, y, ch)
        return self.transpose(f"{scope}.to_nchw", y, (0, 3, 1, 2))

    def gelu(self, name: str, x: str) -> str:
        """GELU as ``torch.onnx.export`` writes it at opset 17: x * 0.5 * (1 + erf(x / sqrt 2))."""
        sqrt2 = self.const("gelu.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
        one = self.const("gelu.one", np.array(1.0, dtype=np.float32))
        half = self.const("gelu.half", np.array(0.5, dtype=np.float32))
        e = self.node("Erf", [self.node("Div", [x, sqrt2], f"{name}.div")], f"{name}.erf")
        y = self.node("Mul", [x, self.node("Add", [e, one], f"{name}.add")], f"{name}.mul")
        return self.node("Mul", [y, half], name)

    def matmul(self, scope: str, x: str, in_f: int, out_f: int, gain2: float = 1.0) -> str:
        """torch ``Linear`` on the last axis of a 4-D tensor: ``MatMul`` + ``Add``."""
        w = self._init(f"{scope}.weight", self._uniform((in_f, out_f), math.sqrt(3.0 * gain2 / in_f)))
        b = self._init(f"{scope}.bias", self._uniform((out_f,), 0.05))
        return self.node("Add", [self.node("MatMul", [x, w], f"{scope}.matmul"), b], scope)

    def conv_plain(self, scope: str, x: str, in_ch: int, out_ch: int, kernel: int, stride: int,
                   groups: int = 1, pad: int = 0) -> str:
        """A biased conv with explicit padding (patchify stems, ConvNeXt's 2x2 s2 downsampling)."""
        w = self._random_conv(out_ch, in_ch // groups, kernel, 1.0)
        return self.node("Conv", [x, self._init(f"{scope}.weight", w), self._init(f"{scope}.bias", self._uniform((out_ch,), 0.05))],
                         scope, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, group=groups)


# -- RegNetX ---------------------------------------------------------------------------------------
# name -> (depths, widths, group width), from the RegNet paper's RegNetX models
_REGNETX = {
    "200mf": ((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "400mf": ((1, 2, 7, 12), (32, 64, 160, 384), 16),
    "600mf": ((1, 3, 5, 7), (48, 96, 240, 528), 24),
    "800mf": ((1, 3, 7, 5), (64, 128, 288, 672), 16),
}


def build_regnetx(depths: Sequence[int] = (1, 1, 4, 7), widths: Sequence[int] = (24, 56, 152, 368),
                  group_width: int = 8, resolution: int = 224, batch: int = 1, n_classes: int = DEFAULT_CLASSES,
                  seed: int = 0) -> onnx.ModelProto:
    """RegNetX: ``depths[s]`` bottleneck blocks of ``widths[s]`` channels per stage (the first
    stride 2), 1x1 -> 3x3 with ``widths[s] // group_width`` groups -> 1x1, ReLU after the add."""
    ctx = _SealedContext("zoo_regnetx", seed)
    c = 32
    x = ctx.conv("stem", "input", 3, c, 3, 2, act="relu")
    for s, (d, w) in enumerate(zip(depths, widths), start=1):
        if w % group_width:
            raise ValueError(f"stage width {w} is not a multiple of the group width {group_width}")
        for b in range(d):
            scope, stride = f"s{s}.b{b + 1}", 2 if b == 0 else 1
            y = ctx.conv(f"{scope}.a", x, c, w, 1, act="relu")
            y = ctx.conv(f"{scope}.b", y, w, w, 3, stride, groups=w // group_width, act="relu")
            y = ctx.conv(f"{scope}.c", y, w, w, 1, gain=_RESIDUAL_BRANCH_GAIN)
            if stride != 1 or c != w:
                x = ctx.conv(f"{scope}.proj", x, c, w, 1, stride)
            x = ctx.node("Relu", [ctx.node("Add", [x, y], f"{scope}.add")], f"{scope}.relu")
            c = w
    ctx.classifier(x, c, n_classes)
    meta = _meta("regnetx", depths=tuple(depths), widths=tuple(widths), group_width=group_width, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)


# -- GhostNet --------------------------------------------------------------------------------------
# (kernel, expanded channels, out channels, SE, stride) per block, GhostNet 1.0x
_GHOSTNET = (
    (3, 16, 16, False, 1), (3, 48, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
    (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1),
    (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1), (5, 672, 160, True, 2),
    (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1), (5, 960, 160, True, 1),
)  # fmt: skip


def _ghost(ctx: _SealedContext, scope: str, x: str, in_ch: int, out_ch: int, relu: bool, gain: float = 1.0) -> str:
    """Ghost module: 1x1 primary conv to half of ``out_ch``, depthwise 3x3 on it, both concatenated."""
    half = out_ch // 2
    act = "relu" if relu else None
    p = ctx.conv(f"{scope}.primary", x, in_ch, half, 1, act=act, gain=gain)
    q = ctx.conv(f"{scope}.cheap", p, half, half, 3, groups=half, act=act)
    return ctx.node("Concat", [p, q], f"{scope}.concat", axis=1)


def build_ghostnet(width: float = 1.0, resolution: int = 224, batch: int = 1, n_classes: int = DEFAULT_CLASSES,
                   seed: int = 0) -> onnx.ModelProto:
    """GhostNet ``width``x: ghost bottlenecks (ghost module, depthwise s2 where the block strides,
    SE with hard sigmoid where the paper has one, linear ghost module, identity or depthwise +
    1x1 shortcut); 1x1 conv to 960 * ``width``, pooling, 1x1 conv to 1280 + ReLU, Gemm."""
    ctx = _SealedContext("zoo_ghostnet", seed)
    c = _ch(16 * width, 4)
    x = ctx.conv("conv_stem", "input", 3, c, 3, 2, act="relu")
    for i, (k, e, o, se, s) in enumerate(_GHOSTNET):
        scope, mid, out = f"blocks.{i}", _ch(e * width, 4), _ch(o * width, 4)
        y = _ghost(ctx, f"{scope}.ghost1", x, c, mid, relu=True)
        if s > 1:
            y = ctx.conv(f"{scope}.dw", y, mid, mid, k, s, groups=mid)
        gain = _RESIDUAL_BRANCH_GAIN
        if se:
            red = _ch(mid * 0.25, 4)
            g = ctx.node("GlobalAveragePool", [y], f"{scope}.se.pool")
            g = ctx.conv_bias(f"{scope}.se.reduce", g, mid, red, act="relu")
            g = ctx.node("Relu", [g], f"{scope}.se.act")
            g = ctx.conv_bias(f"{scope}.se.expand", g, red, mid)
            g = ctx.node("HardSigmoid", [g], f"{scope}.se.gate", alpha=1.0 / 6, beta=0.5)
            y = ctx.node("Mul", [y, g], f"{scope}.se.mul")
            gain *= _SE_GAIN
        y = _ghost(ctx, f"{scope}.ghost2", y, mid, out, relu=False, gain=gain)
        if s == 1 and c == out:
            sc = x
        else:
            sc = ctx.conv(f"{scope}.shortcut.dw", x, c, c, k, s, groups=c)
            sc = ctx.conv(f"{scope}.shortcut.pw", sc, c, out, 1)
        x = ctx.node("Add", [sc, y], f"{scope}.add")
        c = out
    last = _ch(960 * width, 4)
    x = ctx.conv("conv_last", x, c, last, 1, act="relu")
    g = ctx.node("GlobalAveragePool", [x], "avgpool")
    g = ctx.conv_bias("conv_head", g, last, 1280, act="relu")
    g = ctx.node("Relu", [g], "conv_head.act")
    g = ctx.node("Flatten", [g], "flatten", axis=1)
    ctx.linear("classifier", g, 1280, n_classes, "output")
    return ctx.done(batch, resolution, n_classes, _meta("ghostnet", width=width, resolution=resolution))


# -- ConvNeXt --------------------------------------------------------------------------------------
# name -> (depths, dims): the small ConvNeXt sizes (atto ... nano of later work; ConvNeXt-T is
# (3, 3, 9, 3), (96, 192, 384, 768), 4.5 GMACs, too slow for a profile's zoo part)
_CONVNEXT = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
}


def build_convnext(depths: Sequence[int] = (2, 2, 6, 2), dims: Sequence[int] = (40, 80, 160, 320),
                   resolution: int = 224, batch: int = 1, n_classes: int = DEFAULT_CLASSES,
                   seed: int = 0) -> onnx.ModelProto:
    """ConvNeXt as torchvision builds it: 4x4 s4 conv + LayerNorm2d; blocks dw 7x7 -> channels-last
    LayerNorm -> Linear 4x -> GELU -> Linear -> channels-first -> layer scale -> residual add;
    LayerNorm2d + 2x2 s2 conv between stages; pooling, LayerNorm, Gemm."""
    ctx = _SealedContext("zoo_convnext", seed)
    c = dims[0]
    x = ctx.conv_plain("features.0.0", "input", 3, c, 4, 4)
    x = ctx.layernorm2d("features.0.1", x, c)
    for s, (d, dim) in enumerate(zip(depths, dims)):
        if s > 0:
            x = ctx.layernorm2d(f"downsample{s}.norm", x, c)
            x = ctx.conv_plain(f"downsample{s}.conv", x, c, dim, 2, 2)
            c = dim
        for b in range(d):
            scope = f"stage{s + 1}.{b}"
            y = ctx.conv_plain(f"{scope}.dw", x, c, c, 7, 1, groups=c, pad=3)
            y = ctx.transpose(f"{scope}.to_nhwc", y, (0, 2, 3, 1))
            y = ctx.layernorm(f"{scope}.norm", y, c)
            y = ctx.matmul(f"{scope}.pw1", y, c, 4 * c, _GELU_GAIN2)
            y = ctx.gelu(f"{scope}.gelu", y)
            y = ctx.matmul(f"{scope}.pw2", y, 4 * c, c)
            y = ctx.transpose(f"{scope}.to_nchw", y, (0, 3, 1, 2))
            gamma = ctx.const(f"{scope}.layer_scale", np.full((c, 1, 1), _RESIDUAL_BRANCH_GAIN, dtype=np.float32))
            y = ctx.node("Mul", [y, gamma], f"{scope}.scale")
            x = ctx.node("Add", [x, y], f"{scope}.add")
    g = ctx.node("GlobalAveragePool", [x], "avgpool")
    g = ctx.node("Flatten", [g], "flatten", axis=1)
    g = ctx.layernorm("classifier.norm", g, c)
    ctx.linear("classifier.fc", g, c, n_classes, "output")
    return ctx.done(batch, resolution, n_classes, _meta("convnext", depths=tuple(depths), dims=tuple(dims),
                                                        resolution=resolution))


# -- MnasNet ---------------------------------------------------------------------------------------
# (expand, kernel, stride, channels, repeats) after the separable stem, MnasNet-B1 (torchvision)
_MNASNET = ((3, 3, 2, 24, 3), (3, 5, 2, 40, 3), (6, 5, 2, 80, 3), (6, 3, 1, 96, 2), (6, 5, 2, 192, 4),
            (6, 3, 1, 320, 1))


def build_mnasnet(width: float = 1.0, resolution: int = 224, batch: int = 1, n_classes: int = DEFAULT_CLASSES,
                  seed: int = 0) -> onnx.ModelProto:
    """MnasNet-B1 ``width``x: 3x3 s2 conv (32), separable conv (dw 3x3 + 1x1 to 16), inverted
    residuals (1x1 expand, ReLU, dw 3x3/5x5, ReLU, 1x1 project), 1x1 conv to 1280, Gemm."""
    ctx = _SealedContext("zoo_mnasnet", seed)
    c = _ch(32 * width)
    x = ctx.conv("layers.0", "input", 3, c, 3, 2, act="relu")
    x = ctx.conv("layers.3", x, c, c, 3, groups=c, act="relu")
    out = _ch(16 * width)
    x = ctx.conv("layers.6", x, c, out, 1)
    c, i = out, 8
    for e, k, s, base, n in _MNASNET:
        out = _ch(base * width)
        for b in range(n):
            scope, stride, mid = f"layers.{i}.{b}", s if b == 0 else 1, c * e
            y = ctx.conv(f"{scope}.expand", x, c, mid, 1, act="relu")
            y = ctx.conv(f"{scope}.dw", y, mid, mid, k, stride, groups=mid, act="relu")
            residual = stride == 1 and c == out
            y = ctx.conv(f"{scope}.project", y, mid, out, 1, gain=_RESIDUAL_BRANCH_GAIN if residual else 1.0)
            x = ctx.node("Add", [x, y], f"{scope}.add") if residual else y
            c = out
        i += 1
    x = ctx.conv("layers.14", x, c, 1280, 1, act="relu")
    ctx.classifier(x, 1280, n_classes, "classifier")
    return ctx.done(batch, resolution, n_classes, _meta("mnasnet", width=width, resolution=resolution))


# -- the sealed set --------------------------------------------------------------------------------
_BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "regnetx": build_regnetx,
    "ghostnet": build_ghostnet,
    "convnext": build_convnext,
    "mnasnet": build_mnasnet,
    "xception": build_xception,
    "squeezenext": build_squeezenext,
}


@dataclass(frozen=True)
class SealedModel(ZooModel):
    """A model of a sealed family (built by this module's builders; otherwise a :class:`ZooModel`)."""

    def _builder(self) -> Callable[..., onnx.ModelProto]:
        return _BUILDERS[self.family]


def _regnetx(size: str, r: int) -> SealedModel:
    depths, widths, gw = _REGNETX[size]
    return SealedModel("regnetx", f"regnetx_{size}_r{r}", r, f"RegNetX-{size.upper()}, {r}px",
                       (("depths", depths), ("widths", widths), ("group_width", gw)))


def _ghostnet(width: float, r: int) -> SealedModel:
    return SealedModel("ghostnet", f"ghostnet_{_w(width)}_r{r}", r, f"GhostNet {width:g}x, {r}px", (("width", width),))


def _convnext(size: str, r: int) -> SealedModel:
    depths, dims = _CONVNEXT[size]
    return SealedModel("convnext", f"convnext_{size}_r{r}", r, f"ConvNeXt-{size} (dims {list(dims)}), {r}px",
                       (("depths", depths), ("dims", dims)))


def _mnasnet(width: float, r: int) -> SealedModel:
    return SealedModel("mnasnet", f"mnasnet_{_w(width)}_r{r}", r, f"MnasNet-B1 {width:g}x, {r}px", (("width", width),))


def _xception(width: float, middle: int, r: int) -> SealedModel:
    return SealedModel("xception", f"xception_{_w(width)}_m{middle}_r{r}", r,
                       f"Xception {width:g}x, {middle} middle-flow blocks, {r}px", (("width", width), ("middle", middle)))


def _squeezenext(depth: str, width: float, r: int) -> SealedModel:
    return SealedModel("squeezenext", f"squeezenext{depth}_{_w(width)}_r{r}", r,
                       f"SqueezeNext-{depth} {width:g}x, {r}px", (("depths", SQUEEZENEXT_DEPTHS[depth]), ("width", width)))


# Candidates per family, ordered from the fewest to the most MACs (tested).
_VARIANTS: dict[str, tuple[SealedModel, ...]] = {
    "regnetx": (
        _regnetx("200mf", 128), _regnetx("200mf", 160), _regnetx("200mf", 224), _regnetx("400mf", 160),
        _regnetx("600mf", 160), _regnetx("400mf", 224), _regnetx("800mf", 160), _regnetx("800mf", 224),
    ),
    "ghostnet": (
        _ghostnet(0.5, 128), _ghostnet(0.5, 160), _ghostnet(0.5, 224), _ghostnet(1.0, 128),
        _ghostnet(1.0, 160), _ghostnet(1.0, 192), _ghostnet(1.3, 192), _ghostnet(1.3, 224),
    ),
    "convnext": (
        _convnext("atto", 112), _convnext("femto", 112), _convnext("atto", 160), _convnext("femto", 160),
        _convnext("pico", 128), _convnext("atto", 224), _convnext("pico", 160), _convnext("nano", 160),
    ),
    "mnasnet": (
        _mnasnet(0.5, 128), _mnasnet(0.5, 160), _mnasnet(0.5, 224), _mnasnet(0.75, 160),
        _mnasnet(1.0, 160), _mnasnet(0.75, 224), _mnasnet(1.0, 224), _mnasnet(1.3, 224),
    ),
    "xception": (
        _xception(0.25, 2, 128), _xception(0.25, 4, 160), _xception(0.25, 8, 192), _xception(0.5, 4, 128),
        _xception(0.5, 4, 160), _xception(0.5, 8, 160), _xception(0.5, 8, 224), _xception(0.75, 4, 192),
    ),
    "squeezenext": (
        _squeezenext("23", 1.0, 128), _squeezenext("23v5", 1.0, 160), _squeezenext("23", 1.5, 128),
        _squeezenext("23v5", 1.0, 224), _squeezenext("23v5", 1.5, 192), _squeezenext("23", 2.0, 160),
        _squeezenext("23", 1.5, 224), _squeezenext("23v5", 2.0, 224),
    ),
}  # fmt: skip


def sealed_models(per_family: int = 6) -> list[SealedModel]:
    """``per_family`` models per sealed family, picked as :func:`hwnas.zoo.zoo_models` picks."""
    return [m for fam in SEALED_FAMILIES for m in spread(_VARIANTS[fam], per_family)]


def opened_models(per_family: int = 6) -> list[SealedModel]:
    """``per_family`` models per opened family (:data:`OPENED_FAMILIES`, tuning families now)."""
    return [m for fam in OPENED_FAMILIES for m in spread(_VARIANTS[fam], per_family)]


def opened_candidates() -> list[SealedModel]:
    """Every candidate of the opened families (tuning families now)."""
    return [m for fam in OPENED_FAMILIES for m in _VARIANTS[fam]]


def model_by_name(name: str) -> ZooModel:
    """A tuning-family (CNN or transformer) or sealed-family candidate by its name (``KeyError``
    when none has it)."""
    from .zoo_transformers import transformer_candidates

    for m in (*candidates(), *transformer_candidates(), *(m for fam in _VARIANTS for m in _VARIANTS[fam])):
        if m.name == name:
            return m
    raise KeyError(f"no zoo or sealed model named {name!r}")
