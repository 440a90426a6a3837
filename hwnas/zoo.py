"""A zoo of CNN families outside our MobileNetV3 search space, as ONNX graphs.

Latency predictors are fitted on architectures of :mod:`hwnas.space`; the models here test
whether they generalize to model families they never saw.  Ten families, each a builder
function with a few knobs (width multiplier, depth / blocks per stage, resolution); the first
seven are built in :mod:`hwnas.zoo_cnn`, the last three (added 2026-12-01) in
:mod:`hwnas.zoo_cnn_extra`:

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
``inception``  GoogLeNet modules (1x1 | 1x1-3x3 | 1x1-5x5, 3x3 or 3x3-3x3 | max pool-1x1,
               ``Concat``), with folded batch norms (torchvision) or without (paper, ``LRN``)
``resnext``    ResNeXt bottlenecks with a grouped 3x3 (32x4d, 8x16d, 64x2d), and RegNetY-like
               stages (fixed group width + squeeze-excitation, 3x3 s2 stem)
``repvgg``     RepVGG deploy form: plain 3x3 conv + ``Relu`` stacks (A0 / A1 / B0 layouts)
=============  ==========================================================================

Every model ends with ``GlobalAveragePool`` + ``Flatten`` + ``Gemm`` to ``n_classes`` (VGG:
two ``Gemm`` with a ``Relu`` between; SqueezeNet with ``classifier="conv"``: torchvision's 1x1
conv to the classes, ``Relu``, pooling, ``Flatten``) and is built like :mod:`hwnas.builders.onnx_graph`
builds the search space (it reuses that module's graph context): opset 17, IR version 8, one
input ``input`` ``[batch, 3, r, r]``, one output ``output`` ``[batch, n_classes]``, static
shapes, seeded random float32 weights with variance-preserving (He-style) scales, node names
after the layer (``layer2.0.conv1``, ``features.3.expand3x3``, ...).  A batch norm right after
a conv is folded into that conv (as ``torch.onnx.export`` does in eval mode); DenseNet's
pre-activation batch norms, which cannot be folded, are real ``BatchNormalization`` nodes.

:func:`zoo_models` lists the models to measure: ``per_family`` variants per family from about
20 MMACs to about 1.5 GMACs, resolutions among 112-224, plus models of torchvision's size
(ResNet-18 / 34 / 50 and GoogLeNet at 224 px, 1.5-4.1 GMACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import onnx

from .zoo_cnn import (
    _VGG_CONFIGS,
    build_densenet,
    build_efficientnet,
    build_mobilenetv2,
    build_resnet,
    build_shufflenet,
    build_squeezenet,
    build_vgg,
)
from .zoo_cnn_extra import REPVGG_PRESETS, build_inception, build_repvgg, build_resnext
from .zoo_context import _ch, _meta, _ZooContext  # noqa: F401  (imported from here by older code)

__all__ = [
    "ZooModel",
    "candidates",
    "spread",
    "build_densenet",
    "build_efficientnet",
    "build_inception",
    "build_mobilenetv2",
    "build_repvgg",
    "build_resnext",
    "build_resnet",
    "build_shufflenet",
    "build_squeezenet",
    "build_vgg",
    "families",
    "zoo_models",
]


# -- the zoo ---------------------------------------------------------------------------------------
_BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet": build_resnet,
    "vgg": build_vgg,
    "mobilenetv2": build_mobilenetv2,
    "shufflenet": build_shufflenet,
    "squeezenet": build_squeezenet,
    "efficientnet": build_efficientnet,
    "densenet": build_densenet,
    "inception": build_inception,
    "resnext": build_resnext,
    "repvgg": build_repvgg,
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


def _squeeze(version: str, width: float, r: int, conv_head: bool = False) -> ZooModel:
    if conv_head:  # torchvision's classifier (1x1 conv to the classes); a config key only then
        return ZooModel(
            "squeezenet", f"squeezenet{version}_{_w(width)}_convhead_r{r}", r,
            f"SqueezeNet {version}, width x{width:g}, torchvision's conv classifier, {r}px",
            (("version", version), ("width", width), ("classifier", "conv")),
        )  # fmt: skip
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


_INCEPTION_KINDS = {  # name part -> (bn, branch3, description)
    "googlenet": (True, "3x3", "GoogLeNet (torchvision layout: folded BN, 3x3 third branch)"),
    "v1": (False, "5x5", "Inception-v1 (paper: no BN, LRN, 5x5 third branch)"),
    "bn": (True, "3x3x2", "BN-Inception-like (folded BN, 3x3-3x3 third branch)"),
}


def _inception(kind: str, width: float, r: int) -> ZooModel:
    bn, branch3, what = _INCEPTION_KINDS[kind]
    return ZooModel(
        "inception", f"inception_{kind}_{_w(width)}_r{r}", r, f"{what}, width x{width:g}, {r}px",
        (("width", width), ("bn", bn), ("branch3", branch3)),
    )  # fmt: skip


def _resnext(blocks: tuple[int, ...], cardinality: int, group_width: int, width: float, r: int) -> ZooModel:
    """ResNeXt-(2 + 3 * sum(blocks)) ``cardinality`` x ``group_width``d: the bottleneck width
    ``cardinality * group_width * 2**s * width`` in stage ``s``, split into ``cardinality`` groups."""
    mids = tuple(_ch(cardinality * group_width * 2**s * width) for s in range(4))
    widths = tuple(_ch(256 * 2**s * width) for s in range(4))
    depth = 2 + 3 * sum(blocks)
    return ZooModel(
        "resnext", f"resnext{depth}_{cardinality}x{group_width}d_{_w(width)}_r{r}", r,
        f"ResNeXt-{depth} {cardinality}x{group_width}d (blocks {list(blocks)}), width x{width:g}, {r}px",
        (("depths", blocks), ("widths", widths), ("mids", mids), ("group_widths", tuple(m // cardinality for m in mids))),
    )  # fmt: skip


# RegNetY sizes of the RegNet paper: name -> (depths, widths, group width); their SE ratio is 0.25.
# (RegNetX, without SE, is a sealed family: hwnas.zoo_sealed; these layouts differ from its.)
_REGNETY = {
    "400mf": ((1, 3, 6, 6), (48, 104, 208, 440), 8),
    "600mf": ((1, 3, 7, 4), (48, 112, 256, 608), 16),
    "800mf": ((1, 3, 8, 2), (64, 128, 320, 768), 16),
}


def _regnety(size: str, r: int) -> ZooModel:
    depths, widths, gw = _REGNETY[size]
    return ZooModel(
        "resnext", f"resnext_regnety{size}_r{r}", r, f"RegNetY-{size.upper()}-like (grouped 3x3 + SE), {r}px",
        (("depths", depths), ("widths", widths), ("mids", widths), ("group_widths", (gw,) * 4), ("se_ratio", 0.25),
         ("stem", "regnet")),
    )  # fmt: skip


def _repvgg(preset: str, width: float, r: int) -> ZooModel:
    depths, a, b = REPVGG_PRESETS[preset]
    return ZooModel(
        "repvgg", f"repvgg_{preset}_{_w(width)}_r{r}", r,
        f"RepVGG-{preset.upper()} (deploy form), width x{width:g}, {r}px",
        (("depths", depths), ("a", a), ("b", b), ("width", width)),
    )  # fmt: skip


# Candidates per family, ordered from the fewest to the most MACs (tested).  Appending a model to an
# existing family changes which ones ``spread`` picks, never the name or graph of one already here
# (profiles store zoo models by name and rebuild them).
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
        _resnet((2, 2, 2, 2), 1.0, 224),  # torchvision's ResNet-18 / 34 / 50 size (2026-12-01)
        _resnet((3, 4, 6, 3), 1.0, 224),
        _resnet((3, 4, 6, 3), 1.0, 224, bottleneck=True),
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
        _squeeze("1.1", 1.0, 224, conv_head=True),  # torchvision's SqueezeNet 1.1 / 1.0 (2026-12-01)
        _squeeze("1.0", 1.0, 160),
        _squeeze("1.1", 1.5, 224),
        _squeeze("1.0", 1.0, 224),
        _squeeze("1.0", 1.0, 224, conv_head=True),
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
    "inception": (
        _inception("googlenet", 0.25, 128),
        _inception("v1", 0.25, 160),
        _inception("bn", 0.25, 224),
        _inception("googlenet", 0.5, 160),
        _inception("v1", 0.5, 192),
        _inception("bn", 0.75, 160),
        _inception("googlenet", 0.75, 192),
        _inception("v1", 1.0, 160),
        _inception("bn", 1.0, 192),
        _inception("googlenet", 1.0, 224),  # torchvision's GoogLeNet size
    ),
    "resnext": (
        _resnext((2, 2, 2, 2), 8, 16, 0.25, 128),
        _regnety("400mf", 160),
        _resnext((2, 2, 2, 2), 32, 4, 0.5, 128),
        _regnety("600mf", 192),
        _resnext((3, 4, 6, 3), 32, 4, 0.5, 160),
        _resnext((2, 2, 2, 2), 64, 2, 1.0, 128),
        _regnety("800mf", 224),
        _resnext((3, 4, 6, 3), 8, 16, 0.5, 224),
        _resnext((3, 4, 6, 3), 32, 4, 1.0, 160),
    ),
    "repvgg": (
        _repvgg("a0", 0.25, 128),
        _repvgg("a0", 0.5, 128),
        _repvgg("a1", 0.5, 160),
        _repvgg("b0", 0.5, 192),
        _repvgg("a0", 1.0, 160),
        _repvgg("a1", 0.75, 192),
        _repvgg("a0", 1.0, 224),
        _repvgg("b0", 0.75, 224),
        _repvgg("a1", 1.0, 224),
    ),
}


def families() -> list[str]:
    """Names of the zoo's model families."""
    return list(_BUILDERS)


def zoo_models(per_family: int = 6) -> list[ZooModel]:
    """``per_family`` models per family (at most 8, the fewest candidates of a family), family
    by family, each family's ordered from the fewest to the most MACs; evenly spread over that
    family's candidates, always including the smallest and (for ``per_family > 1``) the
    largest.  Deterministic."""
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
