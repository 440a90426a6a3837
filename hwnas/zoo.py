"""A zoo of CNN families outside our MobileNetV3 search space, as ONNX graphs.

Latency predictors are fitted on architectures of :mod:`hwnas.space`; the models here test
whether they generalize to model families they never saw.  Seven families, each a builder
function with a few knobs (width multiplier, depth / blocks per stage, resolution):

=============  ==========================================================================
``resnet``     basic blocks (3x3-3x3) or bottlenecks (1x1-3x3-1x1), identity / 1x1 s2
               projection shortcuts, ``Add`` + ``Relu``; stem 7x7 s2 conv + 3x3 s2 max pool
``vgg``        stacks of 3x3 conv + ``Relu``, ``MaxPool`` between stages, two-``Gemm``
               classifier
``mobilenetv2`` inverted residuals, expand 6, ReLU6 (``Clip`` 0..6), no SE
``shufflenet`` ShuffleNetV2 units: ``Split``, 1x1 - dw3x3 - 1x1 branch, ``Concat``, channel
               shuffle (``Reshape`` - ``Transpose`` - ``Reshape``); stride-2 units with both
               branches
``squeezenet`` fire modules (squeeze 1x1, expand 1x1 and 3x3, ``Concat``), ``MaxPool``
``efficientnet`` MBConv with SE and swish (``x * Sigmoid(x)``), kernels 3/5, expand 1/6
``densenet``   dense blocks of BN-ReLU-conv1x1-BN-ReLU-conv3x3 layers, running ``Concat``,
               transitions (BN-ReLU-conv1x1 + 2x2 ``AveragePool``)
=============  ==========================================================================

Every model ends with ``GlobalAveragePool`` + ``Flatten`` + ``Gemm`` to ``n_classes`` (VGG:
two ``Gemm`` with a ``Relu`` between) and is built like :mod:`hwnas.builders.onnx_graph`
builds the search space (it reuses that module's graph context): opset 17, IR version 8, one
input ``input`` ``[batch, 3, r, r]``, one output ``output`` ``[batch, n_classes]``, static
shapes, seeded random float32 weights with variance-preserving (He-style) scales, node names
after the layer (``layer2.0.conv1``, ``features.3.expand3x3``, ...).  A batch norm right after
a conv is folded into that conv (as ``torch.onnx.export`` does in eval mode); DenseNet's
pre-activation batch norms, which cannot be folded, are real ``BatchNormalization`` nodes.

:func:`zoo_models` lists the models to measure: ``per_family`` variants per family from about
20 MMACs to about 1.5 GMACs, resolutions among 112-224.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from .builders.onnx_graph import _GAIN2, _RESIDUAL_BRANCH_GAIN, _SE_GAIN, _GraphContext
from .layers import DEFAULT_CLASSES, make_divisible

__all__ = [
    "ZooModel",
    "candidates",
    "spread",
    "build_densenet",
    "build_efficientnet",
    "build_mobilenetv2",
    "build_resnet",
    "build_shufflenet",
    "build_squeezenet",
    "build_vgg",
    "families",
    "zoo_models",
]

# 1 / E[act(z)^2] for z ~ N(0, 1): ReLU6 behaves as ReLU at unit scale; swish (SiLU) ~ 1 / 0.356.
_ZOO_GAIN2 = {**_GAIN2, "relu6": 2.0, "swish": 2.8}


class _ZooContext(_GraphContext):
    """The search-space graph context plus what the zoo families need: ReLU6, swish, pools,
    real batch norms, int64 constants and convs whose activation is any of those."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__(name, None, np.random.default_rng(seed))
        self._consts: set[str] = set()

    def const(self, name: str, arr: np.ndarray) -> str:
        """Initializer ``name`` holding ``arr`` with its own dtype (int64 shapes, split sizes...)."""
        if name not in self._consts:
            self.graph.initializer.add().CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self._consts.add(name)
        return name

    def act(self, kind: str | None, x: str, name: str) -> str:
        if kind == "relu6":
            lo = self.const("relu6.min", np.array(0.0, dtype=np.float32))
            hi = self.const("relu6.max", np.array(6.0, dtype=np.float32))
            return self.node("Clip", [x, lo, hi], name)
        if kind == "swish":
            s = self.node("Sigmoid", [x], f"{name}.sigmoid")
            return self.node("Mul", [x, s], name)
        return super().act(kind, x, name)

    def conv(
        self,
        scope: str,
        x: str,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = None,
        gain: float = 1.0,
    ) -> str:
        """Conv + folded BN (node ``scope``, pad ``kernel // 2``) and activation ``scope.act``."""
        g = gain * math.sqrt(_ZOO_GAIN2[act])
        y = self.conv_bn(scope, x, in_ch, out_ch, kernel, stride, groups, act=None, gain=g)
        return self.act(act, y, f"{scope}.act")

    def batchnorm(self, scope: str, x: str, ch: int) -> str:
        """A real (unfoldable) ``BatchNormalization`` with near-identity seeded statistics."""
        scale = self._init(f"{scope}.weight", 1.0 + self._uniform((ch,), 0.1))
        bias = self._init(f"{scope}.bias", self._uniform((ch,), 0.05))
        mean = self._init(f"{scope}.running_mean", self._uniform((ch,), 0.05))
        var = self._init(f"{scope}.running_var", 1.0 + self._uniform((ch,), 0.1))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], scope, epsilon=1e-5)

    def split(self, name: str, x: str, sizes: Sequence[int], axis: int = 1) -> list[str]:
        """``Split`` node ``name`` of ``x`` into parts of ``sizes``, outputs ``name.0``, ``name.1``..."""
        key = "split." + "_".join(map(str, sizes))
        sizes_t = self.const(key, np.array(sizes, dtype=np.int64))
        outs = [f"{name}.{i}" for i in range(len(sizes))]
        self._nodes.append(onnx.helper.make_node("Split", [x, sizes_t], outs, name=name, axis=axis))
        return outs

    def pool(self, op: str, scope: str, x: str, kernel: int, stride: int, pad: int = 0, ceil: bool = False) -> str:
        attrs: dict[str, Any] = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        if ceil:
            attrs["ceil_mode"] = 1
        return self.node(op, [x], scope, **attrs)

    def classifier(self, x: str, in_ch: int, n_classes: int, scope: str = "fc") -> str:
        """``GlobalAveragePool`` + ``Flatten`` + ``Gemm`` to ``output``."""
        y = self.node("GlobalAveragePool", [x], "avgpool")
        y = self.node("Flatten", [y], "flatten", axis=1)
        return self.linear(scope, y, in_ch, n_classes, "output")

    def done(self, batch: int, resolution: int, n_classes: int, meta: dict[str, Any]) -> onnx.ModelProto:
        model = self.finish([batch, 3, resolution, resolution], "output", [batch, n_classes])
        model.producer_name = "hwnas.zoo"
        p = model.metadata_props.add()
        p.key, p.value = "hwnas.zoo", json.dumps(meta, sort_keys=True)
        return model


def _ch(v: float, divisor: int = 8) -> int:
    return make_divisible(v, divisor)


def _meta(family: str, **kw: Any) -> dict[str, Any]:
    return {"family": family, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}


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
) -> onnx.ModelProto:
    """SqueezeNet ``version`` 1.0 (7x7 s2 stem, 96 ch) or 1.1 (3x3 s2 stem, 64 ch) with fire
    modules (squeeze 1x1 -> expand 1x1 + expand 3x3 -> Concat) of ``width``-scaled channels;
    the final conv to the classes is replaced by pooling + Gemm."""
    if version not in _SQUEEZE_LAYOUTS:
        raise ValueError(f"unknown squeezenet version {version!r}; expected '1.0' or '1.1'")
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
    ctx.classifier(x, c, n_classes, "classifier")
    meta = _meta("squeezenet", version=version, width=width, resolution=resolution)
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


# -- the zoo ---------------------------------------------------------------------------------------
_BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet": build_resnet,
    "vgg": build_vgg,
    "mobilenetv2": build_mobilenetv2,
    "shufflenet": build_shufflenet,
    "squeezenet": build_squeezenet,
    "efficientnet": build_efficientnet,
    "densenet": build_densenet,
}


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: ``family``, unique ``name`` (e.g. ``resnet18_w0.5_r160``), input
    ``resolution``, a short ``description`` and the builder keyword arguments ``config``."""

    family: str
    name: str
    resolution: int
    description: str
    config: tuple[tuple[str, Any], ...] = ()

    def build(self, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
        """The ONNX model (seeded random weights): ``input`` ``[batch, 3, r, r]`` -> ``output``."""
        model = self._builder()(**dict(self.config), resolution=self.resolution, batch=batch, seed=seed)
        model.graph.name = f"zoo_{self.name}"
        return model

    def _builder(self) -> Callable[..., onnx.ModelProto]:
        return _BUILDERS[self.family]


def _w(width: float, prefix: str = "w") -> str:
    """``w0.5``, ``w1.0``, ``w1.4`` (multipliers always show a decimal point)."""
    return f"{prefix}{width:g}" if width != int(width) else f"{prefix}{width:.1f}"


def _resnet(blocks: tuple[int, ...], width: float, r: int, bottleneck: bool = False) -> ZooModel:
    depth = 2 + (3 if bottleneck else 2) * sum(blocks)
    kind = "bottleneck" if bottleneck else "basic"
    return ZooModel(
        "resnet", f"resnet{depth}_{_w(width)}_r{r}", r,
        f"ResNet-{depth} ({kind} blocks {list(blocks)}), width x{width:g}, {r}px",
        (("blocks", blocks), ("width", width), ("bottleneck", bottleneck)),
    )  # fmt: skip


def _vgg(depth: int, width: float, r: int) -> ZooModel:
    return ZooModel(
        "vgg", f"vgg{depth}_{_w(width)}_r{r}", r, f"VGG-{depth}, width x{width:g}, {r}px",
        (("convs", _VGG_CONFIGS[depth]), ("width", width)),
    )  # fmt: skip


def _mbv2(width: float, r: int, depth: float = 1.0) -> ZooModel:
    d = f"_{_w(depth, 'd')}" if depth != 1.0 else ""
    return ZooModel(
        "mobilenetv2", f"mobilenetv2_{_w(width)}{d}_r{r}", r,
        f"MobileNetV2, width x{width:g}, depth x{depth:g}, {r}px", (("width", width), ("depth", depth)),
    )  # fmt: skip


def _shuffle(width: float, r: int, repeats: tuple[int, ...] = (4, 8, 4)) -> ZooModel:
    d = "" if repeats == (4, 8, 4) else "_d" + "-".join(map(str, repeats))
    return ZooModel(
        "shufflenet", f"shufflenetv2_{_w(width)}{d}_r{r}", r,
        f"ShuffleNetV2 {width:g}x, units {list(repeats)}, {r}px", (("width", width), ("repeats", repeats)),
    )  # fmt: skip


def _squeeze(version: str, width: float, r: int) -> ZooModel:
    return ZooModel(
        "squeezenet", f"squeezenet{version}_{_w(width)}_r{r}", r,
        f"SqueezeNet {version}, width x{width:g}, {r}px", (("version", version), ("width", width)),
    )  # fmt: skip


def _effnet(width: float, depth: float, r: int) -> ZooModel:
    return ZooModel(
        "efficientnet", f"efficientnet_{_w(width)}_{_w(depth, 'd')}_r{r}", r,
        f"EfficientNet (B0 layout), width x{width:g}, depth x{depth:g}, {r}px",
        (("width", width), ("depth", depth)),
    )  # fmt: skip


def _densenet(growth: int, layers: tuple[int, ...], r: int) -> ZooModel:
    depth = 2 * sum(layers) + len(layers) + 1  # convs + transitions + stem + classifier
    return ZooModel(
        "densenet", f"densenet{depth}_k{growth}_r{r}", r,
        f"DenseNet-BC-{depth}, growth {growth}, layers {list(layers)}, {r}px",
        (("growth", growth), ("layers", layers)),
    )  # fmt: skip


# Candidates per family, ordered from the fewest to the most MACs.
_VARIANTS: dict[str, tuple[ZooModel, ...]] = {
    "resnet": (
        _resnet((1, 1, 1, 1), 0.25, 112),
        _resnet((1, 1, 1, 1), 0.5, 128),
        _resnet((2, 2, 2, 2), 0.5, 160),
        _resnet((3, 4, 6, 3), 0.5, 160),
        _resnet((2, 2, 2, 2), 0.5, 224, bottleneck=True),
        _resnet((2, 2, 2, 2), 1.0, 160),
        _resnet((3, 4, 6, 3), 0.5, 224, bottleneck=True),
        _resnet((3, 4, 6, 3), 0.75, 192),
    ),
    "vgg": (
        _vgg(11, 0.125, 112),
        _vgg(11, 0.25, 112),
        _vgg(13, 0.25, 128),
        _vgg(11, 0.25, 192),
        _vgg(16, 0.25, 160),
        _vgg(11, 0.5, 128),
        _vgg(13, 0.5, 128),
        _vgg(16, 0.5, 128),
    ),
    "mobilenetv2": (
        _mbv2(0.35, 128),
        _mbv2(0.5, 160),
        _mbv2(0.75, 160),
        _mbv2(1.0, 160),
        _mbv2(1.0, 224),
        _mbv2(1.4, 192),
        _mbv2(1.4, 224),
        _mbv2(1.4, 224, 1.5),
    ),
    "shufflenet": (
        _shuffle(0.5, 160),
        _shuffle(0.5, 224),
        _shuffle(1.0, 160),
        _shuffle(1.0, 224),
        _shuffle(1.5, 192),
        _shuffle(1.5, 224),
        _shuffle(2.0, 192),
        _shuffle(2.0, 224),
    ),
    "squeezenet": (
        _squeeze("1.1", 0.5, 112),
        _squeeze("1.1", 0.5, 160),
        _squeeze("1.1", 1.0, 160),
        _squeeze("1.0", 0.5, 224),
        _squeeze("1.1", 1.0, 224),
        _squeeze("1.0", 1.0, 160),
        _squeeze("1.1", 1.5, 224),
        _squeeze("1.0", 1.0, 224),
    ),
    "efficientnet": (
        _effnet(0.5, 0.5, 128),
        _effnet(0.5, 1.0, 160),
        _effnet(0.75, 1.0, 160),
        _effnet(1.0, 1.0, 160),
        _effnet(1.0, 1.0, 192),
        _effnet(1.0, 1.0, 224),
        _effnet(1.1, 1.2, 224),
        _effnet(1.2, 1.4, 224),
    ),
    "densenet": (
        _densenet(12, (3, 4, 6, 4), 112),
        _densenet(12, (3, 6, 12, 8), 128),
        _densenet(16, (4, 8, 12, 8), 160),
        _densenet(12, (6, 12, 24, 16), 160),
        _densenet(16, (6, 12, 24, 16), 192),
        _densenet(24, (4, 8, 12, 8), 192),
        _densenet(16, (6, 12, 24, 16), 224),
        _densenet(20, (6, 12, 24, 16), 224),
    ),
}


def families() -> list[str]:
    """Names of the zoo's model families."""
    return list(_BUILDERS)


def zoo_models(per_family: int = 6) -> list[ZooModel]:
    """``per_family`` models per family (at most 8), family by family, each family's ordered
    from the fewest to the most MACs; evenly spread over that family's candidates, always
    including the smallest and (for ``per_family > 1``) the largest.  Deterministic."""
    out: list[ZooModel] = []
    for fam in families():
        out.extend(spread(_VARIANTS[fam], per_family))
    return out


def spread(cands: Sequence[ZooModel], per_family: int) -> list[ZooModel]:
    """``per_family`` of a family's ``cands`` (ordered by MACs), evenly spread, the smallest and
    (for ``per_family > 1``) the largest included."""
    if not 1 <= per_family <= len(cands):
        raise ValueError(f"per_family must be between 1 and {len(cands)}, got {per_family}")
    if per_family == 1:
        return [cands[0]]
    return [cands[round(i * (len(cands) - 1) / (per_family - 1))] for i in range(per_family)]


def candidates() -> list[ZooModel]:
    """Every candidate model of every family (what any ``per_family`` can pick)."""
    return [m for fam in families() for m in _VARIANTS[fam]]
