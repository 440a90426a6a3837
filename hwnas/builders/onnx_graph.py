"""ONNX graphs of architectures and of their parts, built directly with protobuf (no torch export).

Every graph has one input named ``input`` (float32, NCHW) and one output named ``output``;
opset :data:`OPSET` (17) and IR version :data:`IR_VERSION` (8), which ONNX Runtime >= 1.14
loads.  Batch norms do not appear: each is folded into the conv before it, so a graph holds
only ``Conv`` (``group`` for depthwise), ``Relu``, ``HardSwish``, ``HardSigmoid``,
``GlobalAveragePool``, ``Mul``, ``Add``, ``Flatten`` and ``Gemm``.

Weights come from one of two sources:

* ``weights=None``: seeded random float32 (``numpy.random.Generator``), uniform with a
  variance-preserving scale per layer, so activations stay O(1) through the network.  Cheap to
  generate; meant for latency measurement.
* ``weights=state_dict``: the tensors of :func:`hwnas.builders.torch_model.build_torch` (or
  of the part builders there), BN folded with the running statistics -- the graph then computes
  the torch model's eval-mode function.

Node names follow the torch module names (``stem``, ``blocks.3.expand``, ``blocks.3.dw``,
``blocks.3.dw.act``, ``blocks.3.se.reduce``, ``blocks.3.project``, ``blocks.3.add``,
``head.classifier``, ...), and a node's output tensor carries its node's name, so profiler
events and kernels map straight back to layers.  Stem, block and head graphs (for lookup
tables) are emitted by the very same functions as the full network.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..layers import DEFAULT_CLASSES, BlockSpec, HeadSpec, StemSpec, plan
from ..space import Arch

OPSET = 17
"""ONNX default-domain opset of every graph built here."""
IR_VERSION = 8
"""ONNX IR version of every model built here (opset 17 needs >= 8)."""
BN_EPS = 1e-5
"""Default batch-norm epsilon used when folding (matches the torch builder)."""

# Squared gain that keeps E[y^2] == E[x^2] through (linear layer -> activation) for unit-normal
# pre-activations: 1 / E[act(z)^2] with z ~ N(0, 1).  ReLU: 1 / 0.5 (He); h-swish: 1 / 0.332.
_GAIN2 = {None: 1.0, "relu": 2.0, "hswish": 3.0}
# Residual branches are down-scaled so variance grows only mildly along a stage of residual
# blocks (1 + 0.25^2 per block instead of 2x) -- the role BN's learned gamma plays in training.
_RESIDUAL_BRANCH_GAIN = 0.25
# The SE gate (h-sigmoid of ~N(0, 1)) averages ~0.5, halving the rms; the project conv after it
# makes up for that.
_SE_GAIN = 1.5
_BIAS_BOUND = 0.05

__all__ = [
    "BN_EPS",
    "IR_VERSION",
    "OPSET",
    "build_block_onnx",
    "build_head_onnx",
    "build_onnx",
    "build_stem_onnx",
]


def _to_numpy(v: Any) -> np.ndarray:
    """Numpy view/copy of an array-like or a CPU torch tensor (duck-typed: no torch import here)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


class _GraphContext:
    """Accumulates nodes and initializers of one graph, directly inside a ``ModelProto``.

    Initializers are written in place into ``model.graph.initializer`` so their (possibly
    tens of MB of) raw bytes are copied once, not again by ``make_graph`` / ``make_model``.

    Weight keys are the torch state-dict keys: a ``conv_bn`` at scope ``S`` reads
    ``S.conv.weight`` and ``S.bn.{weight,bias,running_mean,running_var}``; a biased conv or
    linear at scope ``S`` reads ``S.weight`` and ``S.bias``.  With ``weight_root`` (part
    graphs), that leading scope component is dropped from the key, so a part graph whose nodes
    are named ``block.*`` reads the part module's own state dict (``dw.conv.weight``, ...).
    """

    def __init__(
        self,
        name: str,
        weights: Mapping[str, Any] | None,
        rng: np.random.Generator,
        bn_eps: float = BN_EPS,
        weight_root: str = "",
    ) -> None:
        self.model = onnx.ModelProto()
        self.model.ir_version = IR_VERSION
        self.model.producer_name = "hwnas"
        self.model.opset_import.add(domain="", version=OPSET)
        self.graph = self.model.graph
        self.graph.name = name
        self._weights = weights
        self._rng = rng
        self._eps = bn_eps
        self._root = f"{weight_root}." if weight_root else ""
        self._nodes: list[onnx.NodeProto] = []

    # -- primitives --------------------------------------------------------------------------
    def _init(self, name: str, arr: np.ndarray) -> str:
        """Add float32 initializer ``name`` holding ``arr``; returns its name."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(arr.shape)
        t.raw_data = arr.tobytes()
        return name

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs: Any) -> str:
        """Append node ``name`` of type ``op``; its output tensor is ``output`` or ``name``."""
        out = output or name
        self._nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def _weight(self, key: str) -> np.ndarray:
        assert self._weights is not None
        if self._root and key.startswith(self._root):
            key = key[len(self._root) :]
        try:
            return _to_numpy(self._weights[key])
        except KeyError:
            raise KeyError(f"weights have no tensor {key!r} (expected torch state-dict keys)") from None

    def _uniform(self, shape: tuple[int, ...], bound: float) -> np.ndarray:
        """Seeded float32 uniform in ``[-bound, bound)`` (one pass of the generator, in place)."""
        a = self._rng.random(shape, dtype=np.float32)
        a -= np.float32(0.5)
        a *= np.float32(2.0 * bound)
        return a

    def _random_conv(self, out_ch: int, in_per_group: int, k: int, gain2: float) -> np.ndarray:
        fan_in = in_per_group * k * k
        return self._uniform((out_ch, in_per_group, k, k), math.sqrt(3.0 * gain2 / fan_in))

    # -- layers ------------------------------------------------------------------------------
    def act(self, kind: str | None, x: str, name: str) -> str:
        """Activation ``kind`` (``relu``, ``hswish`` or ``None`` for identity) on ``x``."""
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x], name)
        if kind == "hswish":
            return self.node("HardSwish", [x], name)
        raise ValueError(f"unknown activation {kind!r}; expected 'relu' or 'hswish'")

    def conv_bn(
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
        """Conv (no bias, pad ``kernel // 2``) + folded BN as one ``Conv`` node named ``scope``,
        then the activation as ``scope.act``.  ``gain`` scales random init only."""
        in_pg = in_ch // groups
        if self._weights is None:
            w = self._random_conv(out_ch, in_pg, kernel, _GAIN2[act] * gain * gain)
            b = self._uniform((out_ch,), _BIAS_BOUND)
        else:
            w = self._weight(f"{scope}.conv.weight").astype(np.float64)
            gamma = self._weight(f"{scope}.bn.weight").astype(np.float64)
            beta = self._weight(f"{scope}.bn.bias").astype(np.float64)
            mean = self._weight(f"{scope}.bn.running_mean").astype(np.float64)
            var = self._weight(f"{scope}.bn.running_var").astype(np.float64)
            if w.shape != (out_ch, in_pg, kernel, kernel):
                raise ValueError(f"{scope}.conv.weight has shape {w.shape}, expected {(out_ch, in_pg, kernel, kernel)}")
            scale = gamma / np.sqrt(var + self._eps)
            w = w * scale[:, None, None, None]
            b = beta - mean * scale
        p = kernel // 2
        y = self.node(
            "Conv",
            [x, self._init(f"{scope}.weight", w), self._init(f"{scope}.bias", b)],
            scope,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[p, p, p, p],
            group=groups,
        )
        return self.act(act, y, f"{scope}.act")

    def conv_bias(self, scope: str, x: str, in_ch: int, out_ch: int, act: str | None = None) -> str:
        """1x1 conv with its own bias (no BN), node ``scope``; random init sized for ``act``."""
        if self._weights is None:
            w = self._random_conv(out_ch, in_ch, 1, _GAIN2[act])
            b = self._uniform((out_ch,), _BIAS_BOUND)
        else:
            w = self._weight(f"{scope}.weight")
            b = self._weight(f"{scope}.bias")
        return self.node(
            "Conv", [x, self._init(f"{scope}.weight", w), self._init(f"{scope}.bias", b)], scope, kernel_shape=[1, 1]
        )

    def linear(self, scope: str, x: str, in_f: int, out_f: int, output: str | None = None) -> str:
        """``Gemm`` with torch ``Linear`` layout (weight ``[out, in]``, ``transB=1``)."""
        if self._weights is None:
            w = self._uniform((out_f, in_f), math.sqrt(3.0 / in_f))
            b = self._uniform((out_f,), _BIAS_BOUND)
        else:
            w = self._weight(f"{scope}.weight")
            b = self._weight(f"{scope}.bias")
        return self.node(
            "Gemm", [x, self._init(f"{scope}.weight", w), self._init(f"{scope}.bias", b)], scope, output, transB=1
        )

    def rename_output(self, tensor: str, new: str) -> str:
        """Make the most recent node, which produced ``tensor``, write ``new`` instead."""
        last = self._nodes[-1]
        if last.output[0] != tensor:
            raise ValueError(f"last node {last.name!r} does not produce {tensor!r}")
        last.output[0] = new
        return new

    # -- finish ------------------------------------------------------------------------------
    def finish(self, in_shape: list[int], out_name: str, out_shape: list[int]) -> onnx.ModelProto:
        """Declare input ``input`` and output ``out_name`` and return the model."""
        g = self.graph
        g.node.extend(self._nodes)
        g.input.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape))
        g.output.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape))
        return self.model


# -- emitters shared by full and part graphs -----------------------------------------------------
def _emit_stem(ctx: _GraphContext, spec: StemSpec, x: str, scope: str = "stem") -> str:
    """3x3 s2 conv + BN + h-swish; returns the output tensor name."""
    return ctx.conv_bn(scope, x, 3, spec.out_ch, 3, 2, act="hswish")


def _emit_block(ctx: _GraphContext, spec: BlockSpec, x: str, scope: str) -> str:
    """MBConv block ``spec`` on tensor ``x``; node names under ``scope``; returns the output name."""
    mid = spec.mid_ch
    y = x
    if spec.expand != 1:
        y = ctx.conv_bn(f"{scope}.expand", y, spec.in_ch, mid, 1, act=spec.act)
    y = ctx.conv_bn(f"{scope}.dw", y, mid, mid, spec.kernel, spec.stride, groups=mid, act=spec.act)
    if spec.se:
        s = ctx.node("GlobalAveragePool", [y], f"{scope}.se.pool")
        s = ctx.conv_bias(f"{scope}.se.reduce", s, mid, spec.se_ch, act="relu")
        s = ctx.node("Relu", [s], f"{scope}.se.relu")
        s = ctx.conv_bias(f"{scope}.se.expand", s, spec.se_ch, mid)
        s = ctx.node("HardSigmoid", [s], f"{scope}.se.gate", alpha=1.0 / 6.0, beta=0.5)
        y = ctx.node("Mul", [y, s], f"{scope}.se.mul")
    gain = (_RESIDUAL_BRANCH_GAIN if spec.residual else 1.0) * (_SE_GAIN if spec.se else 1.0)
    y = ctx.conv_bn(f"{scope}.project", y, mid, spec.out_ch, 1, gain=gain)
    return ctx.node("Add", [x, y], f"{scope}.add") if spec.residual else y


def _emit_head(ctx: _GraphContext, spec: HeadSpec, x: str, scope: str = "head", output: str = "output") -> str:
    """1x1 conv + BN + h-swish, pool, 1x1 conv + h-swish, flatten, Gemm; returns ``output``."""
    y = ctx.conv_bn(f"{scope}.expand", x, spec.in_ch, spec.final_expand, 1, act="hswish")
    y = ctx.node("GlobalAveragePool", [y], f"{scope}.pool")
    y = ctx.conv_bias(f"{scope}.feature", y, spec.final_expand, spec.last_ch, act="hswish")
    y = ctx.node("HardSwish", [y], f"{scope}.feature_act")
    y = ctx.node("Flatten", [y], f"{scope}.flatten", axis=1)
    return ctx.linear(f"{scope}.classifier", y, spec.last_ch, spec.n_classes, output)


# -- public builders -------------------------------------------------------------------------------
def build_onnx(
    arch: Arch,
    batch: int = 1,
    n_classes: int = DEFAULT_CLASSES,
    weights: Mapping[str, Any] | None = None,
    seed: int = 0,
    bn_eps: float = BN_EPS,
) -> onnx.ModelProto:
    """Whole network of ``arch``: ``input`` ``[batch, 3, r, r]`` -> ``output`` ``[batch, n_classes]``.

    ``weights``: ``build_torch(arch).state_dict()`` (torch tensors or numpy arrays) to reproduce
    that model in eval mode, BN folded with epsilon ``bn_eps``; ``None`` for random weights
    drawn from ``numpy.random.default_rng(seed)``.
    """
    p = plan(arch, n_classes)
    ctx = _GraphContext(f"hwnas_{arch}", weights, np.random.default_rng(seed), bn_eps)
    x = _emit_stem(ctx, p.stem, "input")
    for i, b in enumerate(p.all_blocks()):
        x = _emit_block(ctx, b, x, f"blocks.{i}")
    _emit_head(ctx, p.head, x)
    r = arch.resolution
    return ctx.finish([batch, 3, r, r], "output", [batch, n_classes])


def build_block_onnx(
    spec: BlockSpec,
    batch: int = 1,
    seed: int = 0,
    weights: Mapping[str, Any] | None = None,
    bn_eps: float = BN_EPS,
) -> onnx.ModelProto:
    """One MBConv block: ``input`` ``[batch, in_ch, in_res, in_res]`` -> ``output``
    ``[batch, out_ch, out_res, out_res]``.  Nodes are named ``block.*``; ``weights`` are keyed as
    ``build_torch_block(spec).state_dict()`` (``expand.conv.weight``, ...)."""
    ctx = _GraphContext(f"hwnas_{spec.key}", weights, np.random.default_rng(seed), bn_eps, "block")
    y = _emit_block(ctx, spec, "input", "block")
    ctx.rename_output(y, "output")
    return ctx.finish(
        [batch, spec.in_ch, spec.in_res, spec.in_res], "output", [batch, spec.out_ch, spec.out_res, spec.out_res]
    )


def build_stem_onnx(
    spec: StemSpec,
    batch: int = 1,
    seed: int = 0,
    weights: Mapping[str, Any] | None = None,
    bn_eps: float = BN_EPS,
) -> onnx.ModelProto:
    """Stem: ``input`` ``[batch, 3, in_res, in_res]`` -> ``output`` ``[batch, out_ch, out_res, out_res]``.
    ``weights`` as ``build_torch_stem(spec).state_dict()`` (``conv.weight``, ``bn.*``)."""
    ctx = _GraphContext(f"hwnas_{spec.key}", weights, np.random.default_rng(seed), bn_eps, "stem")
    y = _emit_stem(ctx, spec, "input")
    ctx.rename_output(y, "output")
    return ctx.finish([batch, 3, spec.in_res, spec.in_res], "output", [batch, spec.out_ch, spec.out_res, spec.out_res])


def build_head_onnx(
    spec: HeadSpec,
    batch: int = 1,
    seed: int = 0,
    weights: Mapping[str, Any] | None = None,
    bn_eps: float = BN_EPS,
) -> onnx.ModelProto:
    """Head: ``input`` ``[batch, in_ch, in_res, in_res]`` -> ``output`` ``[batch, n_classes]``.
    ``weights`` as ``build_torch_head(spec).state_dict()`` (``expand.*``, ``feature.*``, ``classifier.*``)."""
    ctx = _GraphContext(f"hwnas_{spec.key}", weights, np.random.default_rng(seed), bn_eps, "head")
    _emit_head(ctx, spec, "input")
    return ctx.finish([batch, spec.in_ch, spec.in_res, spec.in_res], "output", [batch, spec.n_classes])
