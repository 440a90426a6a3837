"""PyTorch modules for architectures of the space, laid out exactly as :func:`hwnas.layers.plan` decodes them.

Layout (MobileNetV3 / Once-for-All)::

    stem      Conv3x3 s2 (no bias) + BN + Hardswish
    blocks.i  [1x1 expand conv + BN + act] -> depthwise kxk conv s + BN + act
              -> [SE: avg pool, 1x1 conv (bias), ReLU, 1x1 conv (bias), Hardsigmoid, multiply]
              -> 1x1 project conv + BN  (+ input when ``spec.residual``)
    head      1x1 conv + BN + Hardswish, global avg pool, 1x1 conv (bias) + Hardswish,
              flatten, Linear

Module names follow the plan so that a ``state_dict`` reads naturally and maps one-to-one onto
the ONNX graphs of :mod:`hwnas.builders.onnx_graph`::

    stem.conv.weight, stem.bn.{weight,bias,running_mean,running_var}
    blocks.<i>.expand.conv.weight, blocks.<i>.expand.bn.*          (only when expand != 1)
    blocks.<i>.dw.conv.weight, blocks.<i>.dw.bn.*
    blocks.<i>.se.reduce.{weight,bias}, blocks.<i>.se.expand.{weight,bias}   (only when se)
    blocks.<i>.project.conv.weight, blocks.<i>.project.bn.*
    head.expand.conv.weight, head.expand.bn.*, head.feature.{weight,bias},
    head.classifier.{weight,bias}

``blocks.0`` is the fixed first block (``plan.first_block``); ``blocks.1 ...`` follow the
architecture's stages in order.  Batch-norm layers use ``eps = BN_EPS`` (1e-5).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..layers import DEFAULT_CLASSES, BlockSpec, HeadSpec, StemSpec, plan
from ..space import Arch

BN_EPS = 1e-5
"""Batch-norm epsilon of every BN layer built here (also the ONNX folding default)."""

__all__ = [
    "BN_EPS",
    "MBConvBlock",
    "MobileNetV3",
    "SqueezeExcite",
    "build_torch",
    "build_torch_block",
    "build_torch_head",
    "build_torch_stem",
    "make_act",
]


def make_act(kind: str) -> nn.Module:
    """Activation module for a plan activation name (``"relu"`` or ``"hswish"``)."""
    if kind == "relu":
        return nn.ReLU(inplace=False)
    if kind == "hswish":
        return nn.Hardswish(inplace=False)
    raise ValueError(f"unknown activation {kind!r}; expected 'relu' or 'hswish'")


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
) -> nn.Sequential:
    """``conv`` (no bias, padding ``kernel // 2``) + ``bn`` [+ ``act``] as a named Sequential."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(out_ch, eps=BN_EPS)),
    ]
    if act is not None:
        layers.append(("act", make_act(act)))
    return nn.Sequential(OrderedDict(layers))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: ``x * hardsigmoid(expand(relu(reduce(avgpool(x)))))``."""

    def __init__(self, channels: int, se_ch: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, se_ch, 1, bias=True)
        self.relu = nn.ReLU(inplace=False)
        self.expand = nn.Conv2d(se_ch, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))
        return x * s


class MBConvBlock(nn.Module):
    """One MBConv block of a :class:`~hwnas.layers.BlockSpec` (input ``[B, in_ch, in_res, in_res]``)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.mid_ch
        self.expand = _conv_bn(spec.in_ch, mid, 1, act=spec.act) if spec.expand != 1 else None
        self.dw = _conv_bn(mid, mid, spec.kernel, spec.stride, groups=mid, act=spec.act)
        self.se = SqueezeExcite(mid, spec.se_ch) if spec.se else None
        self.project = _conv_bn(mid, spec.out_ch, 1)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


def build_torch_stem(spec: StemSpec) -> nn.Sequential:
    """Stem of a :class:`~hwnas.layers.StemSpec`: 3x3 stride-2 conv + BN + Hardswish."""
    return _conv_bn(3, spec.out_ch, 3, 2, act="hswish")


def build_torch_head(spec: HeadSpec) -> nn.Sequential:
    """Head of a :class:`~hwnas.layers.HeadSpec`; maps ``[B, in_ch, r, r]`` to logits ``[B, n_classes]``."""
    return nn.Sequential(
        OrderedDict(
            [
                ("expand", _conv_bn(spec.in_ch, spec.final_expand, 1, act="hswish")),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("feature", nn.Conv2d(spec.final_expand, spec.last_ch, 1, bias=True)),
                ("feature_act", nn.Hardswish(inplace=False)),
                ("flatten", nn.Flatten(1)),
                ("classifier", nn.Linear(spec.last_ch, spec.n_classes)),
            ]
        )
    )


def build_torch_block(spec: BlockSpec) -> MBConvBlock:
    """Torch module of one MBConv block (state-dict keys ``expand.*``, ``dw.*``, ``se.*``, ``project.*``)."""
    return MBConvBlock(spec)


class MobileNetV3(nn.Module):
    """A whole network: ``stem``, ``blocks`` (Sequential, first block at index 0), ``head``."""

    def __init__(self, arch: Arch, n_classes: int = DEFAULT_CLASSES) -> None:
        super().__init__()
        p = plan(arch, n_classes)
        self.arch = arch
        self.plan = p
        self.stem = build_torch_stem(p.stem)
        self.blocks = nn.Sequential(*[build_torch_block(b) for b in p.all_blocks()])
        self.head = build_torch_head(p.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]`` of images ``[B, 3, resolution, resolution]``."""
        return self.head(self.blocks(self.stem(x)))


def build_torch(arch: Arch, n_classes: int = DEFAULT_CLASSES) -> MobileNetV3:
    """Torch model of ``arch`` (default PyTorch init, train mode; call ``.eval()`` for inference)."""
    return MobileNetV3(arch, n_classes)
