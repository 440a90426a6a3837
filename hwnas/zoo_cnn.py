"""Builders of the seven CNN tuning families of the zoo (:mod:`hwnas.zoo` lists their models).

ResNet, VGG, MobileNetV2, ShuffleNetV2, SqueezeNet, EfficientNet, DenseNet-BC, each a function
returning an ONNX model; conventions in :mod:`hwnas.zoo`'s docstring.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import onnx

from .builders.onnx_graph import _RESIDUAL_BRANCH_GAIN, _SE_GAIN
from .layers import DEFAULT_CLASSES
from .zoo_context import _ch, _meta, _ZooContext

__all__ = [
    "build_densenet",
    "build_efficientnet",
    "build_mobilenetv2",
    "build_resnet",
    "build_shufflenet",
    "build_squeezenet",
    "build_vgg",
]


# -- ResNet ----------------------------------------------------------------------------------------
def build_resnet(
    blocks: Sequence[int] = (2, 2, 2, 2),
    width: float = 1.0,
    bottleneck: bool = False,
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """ResNet (v1.5: stride in the 3x3 conv): ``blocks`` per stage of basic blocks, or of
    bottlenecks (expansion 4) with ``bottleneck``; all channels scaled by ``width``."""
    ctx = _ZooContext("zoo_resnet", seed)
    expansion = 4 if bottleneck else 1
    c = _ch(64 * width)
    x = ctx.conv("conv1", "input", 3, c, 7, 2, act="relu")
    x = ctx.pool("MaxPool", "maxpool", x, 3, 2, 1)
    for s, n in enumerate(blocks):
        planes = _ch(64 * 2**s * width)
        out = planes * expansion
        for b in range(n):
            scope = f"layer{s + 1}.{b}"
            stride = 2 if s > 0 and b == 0 else 1
            if bottleneck:
                y = ctx.conv(f"{scope}.conv1", x, c, planes, 1, act="relu")
                y = ctx.conv(f"{scope}.conv2", y, planes, planes, 3, stride, act="relu")
                y = ctx.conv(f"{scope}.conv3", y, planes, out, 1, gain=_RESIDUAL_BRANCH_GAIN)
            else:
                y = ctx.conv(f"{scope}.conv1", x, c, planes, 3, stride, act="relu")
                y = ctx.conv(f"{scope}.conv2", y, planes, out, 3, gain=_RESIDUAL_BRANCH_GAIN)
            if stride != 1 or c != out:
                x = ctx.conv(f"{scope}.downsample", x, c, out, 1, stride)
            x = ctx.node("Relu", [ctx.node("Add", [x, y], f"{scope}.add")], f"{scope}.relu")
            c = out
    ctx.classifier(x, c, n_classes)
    meta = _meta("resnet", blocks=tuple(blocks), width=width, bottleneck=bottleneck, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)


# -- VGG -------------------------------------------------------------------------------------------
_VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def build_vgg(
    convs: Sequence[int] = (1, 1, 2, 2, 2),
    width: float = 0.25,
    resolution: int = 128,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """VGG: ``convs[s]`` 3x3 conv + ReLU at 64 * 2**s (max 512) * ``width`` channels in stage
    ``s``, a 2x2 s2 ``MaxPool`` after each stage; pooled features -> Gemm (4096 * ``width``)
    -> ReLU -> Gemm.  (``(1, 1, 2, 2, 2)`` is VGG-11, ``(2, 2, 3, 3, 3)`` VGG-16.)"""
    ctx = _ZooContext("zoo_vgg", seed)
    x, c = "input", 3
    i = 0
    for s, n in enumerate(convs):
        out = _ch(min(64 * 2**s, 512) * width)
        for _ in range(n):
            x = ctx.conv(f"features.{i}", x, c, out, 3, act="relu")
            c, i = out, i + 1
        x = ctx.pool("MaxPool", f"features.pool{s + 1}", x, 2, 2)
    hidden = _ch(4096 * width)
    y = ctx.node("GlobalAveragePool", [x], "avgpool")
    y = ctx.node("Flatten", [y], "flatten", axis=1)
    y = ctx.linear("classifier.0", y, c, hidden)
    y = ctx.node("Relu", [y], "classifier.1")
    ctx.linear("classifier.2", y, hidden, n_classes, "output")
    return ctx.done(batch, resolution, n_classes, _meta("vgg", convs=tuple(convs), width=width, resolution=resolution))


# -- MobileNetV2 -----------------------------------------------------------------------------------
# (expand, channels, repeats, stride) per stage.
_MBV2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip


def build_mobilenetv2(
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """MobileNetV2: inverted residuals (expand 6, dw 3x3, linear project) with ReLU6; channels
    scaled by ``width``, blocks per stage ``ceil(n * depth)``; last conv 1280 * max(1, width)."""
    ctx = _ZooContext("zoo_mobilenetv2", seed)
    c = _ch(32 * width)
    x = ctx.conv("features.0", "input", 3, c, 3, 2, act="relu6")
    i = 1
    for t, base, n, s in _MBV2_SETTINGS:
        out = _ch(base * width)
        for b in range(math.ceil(n * depth)):
            scope, stride, mid = f"features.{i}", s if b == 0 else 1, c * t
            y = x
            if t != 1:
                y = ctx.conv(f"{scope}.expand", y, c, mid, 1, act="relu6")
            y = ctx.conv(f"{scope}.dw", y, mid, mid, 3, stride, groups=mid, act="relu6")
            residual = stride == 1 and c == out
            y = ctx.conv(f"{scope}.project", y, mid, out, 1, gain=_RESIDUAL_BRANCH_GAIN if residual else 1.0)
            x = ctx.node("Add", [x, y], f"{scope}.add") if residual else y
            c, i = out, i + 1
    last = _ch(1280 * max(1.0, width))
    x = ctx.conv(f"features.{i}", x, c, last, 1, act="relu6")
    ctx.classifier(x, last, n_classes, "classifier")
    return ctx.done(batch, resolution, n_classes, _meta("mobilenetv2", width=width, depth=depth, resolution=resolution))


# -- ShuffleNetV2 ----------------------------------------------------------------------------------
# width -> (stage 2, 3, 4 channels, conv5 channels), as in the paper.
_SHUFFLE_WIDTHS = {
    0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048),
}  # fmt: skip


def build_shufflenet(
    width: float = 1.0,
    repeats: Sequence[int] = (4, 8, 4),
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """ShuffleNetV2 ``width``x (0.5 / 1.0 / 1.5 / 2.0 use the paper's channels, other widths
    scale the 1.0x ones) with ``repeats`` units per stage (the first one stride 2)."""
    if width in _SHUFFLE_WIDTHS:
        *stage_ch, last = _SHUFFLE_WIDTHS[width]
    else:
        stage_ch, last = [_ch(c * width, 4) for c in (116, 232, 464)], 1024
    ctx = _ZooContext("zoo_shufflenet", seed)
    c = 24
    x = ctx.conv("conv1", "input", 3, c, 3, 2, act="relu")
    x = ctx.pool("MaxPool", "maxpool", x, 3, 2, 1)
    res = (resolution + 1) // 2
    res = (res + 1) // 2
    for s, (out, n) in enumerate(zip(stage_ch, repeats)):
        half = out // 2
        for u in range(n):
            scope = f"stage{s + 2}.{u}"
            if u == 0:  # stride 2: both branches see the whole input
                res = (res + 1) // 2
                a = ctx.conv(f"{scope}.branch1.dw", x, c, c, 3, 2, groups=c)
                a = ctx.conv(f"{scope}.branch1.pw", a, c, half, 1, act="relu")
                b, b_in = x, c
                stride = 2
            else:
                a, b = ctx.split(f"{scope}.split", x, [half, half])
                b_in, stride = half, 1
            b = ctx.conv(f"{scope}.branch2.pw1", b, b_in, half, 1, act="relu")
            b = ctx.conv(f"{scope}.branch2.dw", b, half, half, 3, stride, groups=half)
            b = ctx.conv(f"{scope}.branch2.pw2", b, half, half, 1, act="relu")
            y = ctx.node("Concat", [a, b], f"{scope}.concat", axis=1)
            split_shape = ctx.const(f"shuffle{out}x{res}.split", np.array([batch, 2, half, res, res], dtype=np.int64))
            merge_shape = ctx.const(f"shuffle{out}x{res}.merge", np.array([batch, out, res, res], dtype=np.int64))
            y = ctx.node("Reshape", [y, split_shape], f"{scope}.shuffle.reshape1")
            y = ctx.node("Transpose", [y], f"{scope}.shuffle.transpose", perm=[0, 2, 1, 3, 4])
            x = ctx.node("Reshape", [y, merge_shape], f"{scope}.shuffle.reshape2")
            c = out
    x = ctx.conv("conv5", x, c, last, 1, act="relu")
    ctx.classifier(x, last, n_classes)
    meta = _meta("shufflenet", width=width, repeats=tuple(repeats), resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)


# -- SqueezeNet ------------------------------------------------------------------------------------
# (squeeze, expand) per fire module; "M" is a 3x3 s2 ceil-mode max pool.
_SQUEEZE_LAYOUTS: dict[str, tuple[Any, ...]] = {
    "1.0": ("M", (16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256), "M", (64, 256)),
    "1.1": ("M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)),
}


def build_squeezenet(
    version: str = "1.1",
    width: float = 1.0,
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
    classifier: str = "gemm",
) -> onnx.ModelProto:
    """SqueezeNet ``version`` 1.0 (7x7 s2 stem, 96 ch) or 1.1 (3x3 s2 stem, 64 ch) with fire
    modules (squeeze 1x1 -> expand 1x1 + expand 3x3 -> Concat) of ``width``-scaled channels.
    ``classifier``: ``gemm`` replaces the final conv to the classes by pooling + Gemm; ``conv``
    keeps torchvision's (1x1 conv to the classes + ReLU at full resolution, then pooling)."""
    if version not in _SQUEEZE_LAYOUTS:
        raise ValueError(f"unknown squeezenet version {version!r}; expected '1.0' or '1.1'")
    if classifier not in ("gemm", "conv"):
        raise ValueError(f"unknown squeezenet classifier {classifier!r}; expected 'gemm' or 'conv'")
    ctx = _ZooContext("zoo_squeezenet", seed)
    k, c = (7, _ch(96 * width)) if version == "1.0" else (3, _ch(64 * width))
    x = ctx.conv("features.0", "input", 3, c, k, 2, act="relu")
    for i, item in enumerate(_SQUEEZE_LAYOUTS[version], start=1):
        scope = f"features.{i}"
        if item == "M":
            x = ctx.pool("MaxPool", scope, x, 3, 2, ceil=True)
            continue
        sq, ex = _ch(item[0] * width), _ch(item[1] * width)
        s = ctx.conv(f"{scope}.squeeze", x, c, sq, 1, act="relu")
        e1 = ctx.conv(f"{scope}.expand1x1", s, sq, ex, 1, act="relu")
        e3 = ctx.conv(f"{scope}.expand3x3", s, sq, ex, 3, act="relu")
        x = ctx.node("Concat", [e1, e3], f"{scope}.concat", axis=1)
        c = 2 * ex
    if classifier == "conv":
        y = ctx.conv_bias("classifier.1", x, c, n_classes, act="relu")
        y = ctx.node("Relu", [y], "classifier.2")
        y = ctx.node("GlobalAveragePool", [y], "avgpool")
        ctx.node("Flatten", [y], "flatten", "output", axis=1)
        extra = {"classifier": classifier}  # absent for "gemm": those models' graphs predate the option
    else:
        ctx.classifier(x, c, n_classes, "classifier")
        extra = {}
    meta = _meta("squeezenet", version=version, width=width, resolution=resolution, **extra)
    return ctx.done(batch, resolution, n_classes, meta)


# -- EfficientNet ----------------------------------------------------------------------------------
# (expand, kernel, stride, channels, repeats) of EfficientNet-B0.
_EFFNET_B0 = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
)  # fmt: skip


def build_efficientnet(
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
) -> onnx.ModelProto:
    """EfficientNet (B0 layout): MBConv blocks with SE (ratio 0.25 of the block input, sigmoid
    gate) and swish; channels scaled by ``width``, blocks per stage ``ceil(n * depth)``."""
    ctx = _ZooContext("zoo_efficientnet", seed)
    c = _ch(32 * width)
    x = ctx.conv("stem", "input", 3, c, 3, 2, act="swish")
    i = 0
    for e, k, s, base, n in _EFFNET_B0:
        out = _ch(base * width)
        for b in range(math.ceil(n * depth)):
            scope, stride, mid = f"blocks.{i}", s if b == 0 else 1, c * e
            y = x
            if e != 1:
                y = ctx.conv(f"{scope}.expand", y, c, mid, 1, act="swish")
            y = ctx.conv(f"{scope}.dw", y, mid, mid, k, stride, groups=mid, act="swish")
            se = max(1, int(c * 0.25))
            g = ctx.node("GlobalAveragePool", [y], f"{scope}.se.pool")
            g = ctx.conv_bias(f"{scope}.se.reduce", g, mid, se, act="hswish")  # swish-like gain
            g = ctx.act("swish", g, f"{scope}.se.act")
            g = ctx.conv_bias(f"{scope}.se.expand", g, se, mid)
            g = ctx.node("Sigmoid", [g], f"{scope}.se.gate")
            y = ctx.node("Mul", [y, g], f"{scope}.se.mul")
            residual = stride == 1 and c == out
            gain = _SE_GAIN * (_RESIDUAL_BRANCH_GAIN if residual else 1.0)
            y = ctx.conv(f"{scope}.project", y, mid, out, 1, gain=gain)
            x = ctx.node("Add", [x, y], f"{scope}.add") if residual else y
            c, i = out, i + 1
    last = _ch(1280 * width)
    x = ctx.conv("head", x, c, last, 1, act="swish")
    ctx.classifier(x, last, n_classes, "classifier")
    meta = _meta("efficientnet", width=width, depth=depth, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)


# -- DenseNet --------------------------------------------------------------------------------------
def build_densenet(
    growth: int = 12,
    layers: Sequence[int] = (6, 12, 24, 16),
    resolution: int = 224,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    seed: int = 0,
    bn_size: int = 4,
) -> onnx.ModelProto:
    """DenseNet-BC: stem 7x7 s2 conv (2 * ``growth`` ch) + 3x3 s2 max pool; dense blocks of
    ``layers[i]`` layers BN-ReLU-conv1x1 (``bn_size * growth``)-BN-ReLU-conv3x3 (``growth``),
    each concatenated onto the block's features; transitions BN-ReLU-conv1x1 (half the
    channels) + 2x2 average pool; final BN-ReLU."""
    ctx = _ZooContext("zoo_densenet", seed)
    c = 2 * growth
    x = ctx.conv("features.conv0", "input", 3, c, 7, 2, act="relu")
    x = ctx.pool("MaxPool", "features.pool0", x, 3, 2, 1)
    for bi, n in enumerate(layers, start=1):
        for li in range(1, n + 1):
            scope = f"features.denseblock{bi}.denselayer{li}"
            y = ctx.batchnorm(f"{scope}.norm1", x, c)
            y = ctx.node("Relu", [y], f"{scope}.relu1")
            y = ctx.conv(f"{scope}.conv1", y, c, bn_size * growth, 1, act="relu")  # norm2 + relu2 folded in
            y = ctx.conv(f"{scope}.conv2", y, bn_size * growth, growth, 3)
            x = ctx.node("Concat", [x, y], f"{scope}.concat", axis=1)
            c += growth
        if bi < len(layers):
            scope = f"features.transition{bi}"
            y = ctx.node("Relu", [ctx.batchnorm(f"{scope}.norm", x, c)], f"{scope}.relu")
            y = ctx.conv(f"{scope}.conv", y, c, c // 2, 1)
            x = ctx.pool("AveragePool", f"{scope}.pool", y, 2, 2)
            c //= 2
    x = ctx.node("Relu", [ctx.batchnorm("features.norm5", x, c)], "features.relu5")
    ctx.classifier(x, c, n_classes, "classifier")
    meta = _meta("densenet", growth=growth, layers=tuple(layers), bn_size=bn_size, resolution=resolution)
    return ctx.done(batch, resolution, n_classes, meta)
