"""The kernel campaign: standalone operators as tiny ONNX graphs, shapes drawn from real CNNs.

A kernel-level latency predictor (nn-Meter style, FIELD-NOTES §1) needs measurements of single
kernels whose shapes cover what real networks use, not only what our search space produces.
This module provides the three pieces of that campaign:

* :class:`KernelSpec`: one kernel as an immutable, hashable, validated value with a stable
  text key, e.g. ``conv_b1_i32_o64_r56_k3_s2_g1``, and analytic cost (MACs, bytes).
* :class:`KernelSampler`: a seeded sampler of realistic, de-duplicated, cost-capped specs.
* :func:`build_kernel_onnx`: the spec as a one-input ONNX graph (opset 17) for ONNX Runtime.

Key grammar (tokens separated by ``_``; the op name itself may contain ``_``)::

    <op>_b<batch>_i<in_ch>_o<out_ch>_r<res>_k<kernel>_s<stride>_g<groups>[_n<n_inputs>]

``_n<n_inputs>`` appears for ``concat`` only.  Every field is concrete in a key: the spec
fills derived fields (``out_ch`` of an activation, ``groups`` of a depthwise conv) itself.

Second operands
---------------
Every graph has exactly one graph input, named ``input``.  Operators that need a second
activation tensor (``add``, ``mul``, ``mul_bcast``, ``concat``) get it as a seeded random
graph **initializer** of the shape a real second activation would have; ONNX Runtime cannot
constant-fold such a node because its other operand is the graph input.  ``conv_add`` adds the
conv output to ``input`` itself (a real identity residual), so it requires ``stride == 1`` and
``out_ch == in_ch``.  In the analytic byte counts these extra operands are activations
(:attr:`KernelSpec.input_bytes`), not weights (:attr:`KernelSpec.weight_bytes`).

Padding: convolutions and pools pad ``(kernel - 1) // 2`` on every side (``same`` for odd
kernels at stride 1); convolution kernels must be odd.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import KW_ONLY, asdict, dataclass
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # onnxruntime 1.17+ loads IR 9; newer IRs from onnx's default are refused by older ORTs
FLOAT_BYTES = 4

CONV_OPS = ("conv", "dwconv", "pwconv", "gconv", "conv_relu", "conv_hswish", "conv_add")
POOL_OPS = ("maxpool", "avgpool")
ACT_OPS = ("relu", "hswish", "sigmoid", "swish", "hsigmoid")
BINARY_OPS = ("add", "mul", "mul_bcast")
OPS: tuple[str, ...] = (
    "conv", "dwconv", "pwconv", "gconv", "gemm",
    "maxpool", "avgpool", "globalavgpool",
    "relu", "hswish", "sigmoid", "swish", "hsigmoid",
    "add", "mul", "mul_bcast", "concat", "reshape_transpose", "batchnorm",
    "conv_relu", "conv_hswish", "conv_add",
)  # fmt: skip
"""Every kernel type of the campaign."""

_KEY_RE = re.compile(
    r"^(?P<op>[a-z_]+?)_b(?P<batch>\d+)_i(?P<in_ch>\d+)_o(?P<out_ch>\d+)_r(?P<res>\d+)"
    r"_k(?P<kernel>\d+)_s(?P<stride>\d+)_g(?P<groups>\d+)(?:_n(?P<n_inputs>\d+))?$"
)


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: operator type and input geometry (fields are keyword-only).

    ``batch``: images per run.  ``in_ch`` / ``out_ch``: channels (``gemm``: in / out
    features).  ``res``: input height = width in pixels (``gemm``: must be 1).  ``kernel``,
    ``stride``: square, in pixels.  ``groups``: conv groups, or the channel-shuffle groups of
    ``reshape_transpose``.  ``n_inputs``: tensors concatenated by ``concat`` (each with
    ``in_ch`` channels).

    ``out_ch == 0`` and ``groups == 0`` mean "derive from the op"; a value that contradicts the
    op (e.g. ``relu`` with ``out_ch != in_ch``) raises ``ValueError`` naming the field.
    """

    op: str
    _: KW_ONLY
    in_ch: int
    res: int = 1
    out_ch: int = 0
    kernel: int = 1
    stride: int = 1
    groups: int = 0
    batch: int = 1
    n_inputs: int = 1

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown kernel op {self.op!r}; expected one of {', '.join(OPS)}")
        for name in ("in_ch", "res", "out_ch", "kernel", "stride", "groups", "batch", "n_inputs"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"{self.op}: {name} must be an int, got {v!r}")
            object.__setattr__(self, name, int(v))
            if v < (0 if name in ("out_ch", "groups") else 1):
                raise ValueError(f"{self.op}: {name} must be positive, got {v}")
        op, c = self.op, self.in_ch
        if op != "concat":
            self._fix("n_inputs", 1)
        if op == "gemm":
            self._fix("res", 1)
            self._fix("kernel", 1)
            self._fix("stride", 1)
            self._fix("groups", 1)
            self._require_out()
        elif op in CONV_OPS:
            if self.kernel % 2 == 0:
                raise ValueError(f"{op}: kernel must be odd, got {self.kernel}")
            if op == "dwconv":
                self._fix("out_ch", c)
                self._fix("groups", c)
            elif op == "conv_add":
                self._fix("out_ch", c)
                self._fix("stride", 1)
                self._fix("groups", 1, derive_only=True)
            else:
                self._require_out()
                if op in ("conv", "pwconv"):
                    self._fix("groups", 1)
                else:
                    self._fix("groups", 1, derive_only=True)
            if op == "pwconv":
                self._fix("kernel", 1)
            g = self.groups
            if op == "gconv" and not 1 < g < c:
                raise ValueError(f"gconv: groups must be between 2 and in_ch - 1 ({c - 1}), got {g}")
            if c % g or self.out_ch % g:
                raise ValueError(f"{op}: groups {g} must divide in_ch {c} and out_ch {self.out_ch}")
        else:
            self._fix("out_ch", c * self.n_inputs if op == "concat" else c)
            if op not in POOL_OPS:
                self._fix("kernel", 1)
                self._fix("stride", 1)
            if op == "reshape_transpose":
                if self.groups == 0 or not 1 < self.groups <= c or c % self.groups:
                    raise ValueError(
                        f"reshape_transpose: groups must be > 1 and divide in_ch {c}, got {self.groups}"
                    )
            else:
                self._fix("groups", 1)
            if op == "concat" and self.n_inputs < 2:
                raise ValueError(f"concat: n_inputs must be >= 2, got {self.n_inputs}")
        if self.out_res < 1:
            raise ValueError(f"{op}: kernel {self.kernel} stride {self.stride} leaves no output at res {self.res}")

    def _fix(self, name: str, want: int, derive_only: bool = False) -> None:
        """Set a field the op determines; 0 (unset) is filled, a contradicting value raises.

        With ``derive_only`` only the unset value is filled and any explicit value is kept.
        """
        v = getattr(self, name)
        if v == (0 if name in ("out_ch", "groups") else 1):
            object.__setattr__(self, name, want)
        elif v != want and not derive_only:
            raise ValueError(f"{self.op}: {name} must be {want}, got {v}")

    def _require_out(self) -> None:
        if self.out_ch <= 0:
            raise ValueError(f"{self.op}: out_ch is required")

    # -- text form ----------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable text key, e.g. ``conv_b1_i32_o64_r56_k3_s2_g1``; see the module docstring."""
        k = (
            f"{self.op}_b{self.batch}_i{self.in_ch}_o{self.out_ch}_r{self.res}"
            f"_k{self.kernel}_s{self.stride}_g{self.groups}"
        )
        return k + (f"_n{self.n_inputs}" if self.op == "concat" else "")

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, key: str) -> "KernelSpec":
        """Inverse of :attr:`key`.  A malformed key raises ``ValueError`` quoting it."""
        m = _KEY_RE.match(key.strip()) if isinstance(key, str) else None
        if not m:
            raise ValueError(
                f"bad kernel key {key!r}: expected <op>_b<batch>_i<in>_o<out>_r<res>_k<k>_s<s>_g<g>[_n<n>]"
            )
        d: dict[str, Any] = {k: int(v) for k, v in m.groupdict().items() if k != "op" and v is not None}
        spec = cls(m.group("op"), **d)
        if spec.key != key.strip():
            raise ValueError(f"bad kernel key {key!r}: it is not canonical, expected {spec.key!r}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KernelSpec":
        d = dict(d)
        op = d.pop("op")
        unknown = set(d) - {"in_ch", "res", "out_ch", "kernel", "stride", "groups", "batch", "n_inputs"}
        if unknown:
            raise ValueError(f"unknown kernel spec fields: {', '.join(sorted(unknown))}")
        return cls(op, **d)

    # -- geometry -----------------------------------------------------------------------------
    @property
    def pad(self) -> int:
        """Padding on each side, in pixels."""
        return (self.kernel - 1) // 2

    @property
    def out_res(self) -> int:
        """Output height = width in pixels (1 for ``gemm`` and ``globalavgpool``)."""
        if self.op in ("gemm", "globalavgpool"):
            return 1
        return (self.res + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the graph input ``input`` (NCHW; ``(batch, in_ch)`` for ``gemm``)."""
        if self.op == "gemm":
            return (self.batch, self.in_ch)
        return (self.batch, self.in_ch, self.res, self.res)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the graph output ``output``."""
        if self.op == "gemm":
            return (self.batch, self.out_ch)
        return (self.batch, self.out_ch, self.out_res, self.out_res)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: convolutions and gemm only, as in :mod:`hwnas.cost`."""
        if self.op in CONV_OPS:
            return math.prod(self.output_shape) * (self.in_ch // self.groups) * self.kernel * self.kernel
        if self.op == "gemm":
            return self.batch * self.in_ch * self.out_ch
        return 0

    @property
    def params(self) -> int:
        """Number of weight values (conv / gemm weights and biases, batch-norm's four vectors)."""
        if self.op in CONV_OPS:
            return self.out_ch * (self.in_ch // self.groups) * self.kernel * self.kernel + self.out_ch
        if self.op == "gemm":
            return self.in_ch * self.out_ch + self.out_ch
        if self.op == "batchnorm":
            return 4 * self.in_ch
        return 0

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights (fp32): ``4 * params``.  Second operands are not weights."""
        return FLOAT_BYTES * self.params

    @property
    def input_bytes(self) -> int:
        """Bytes of activation tensors read (fp32), second operands included.

        ``add``/``mul``: two input-shaped tensors; ``mul_bcast``: the input plus an
        ``(N, C, 1, 1)`` scale; ``concat``: ``n_inputs`` input-shaped tensors; ``conv_add``
        reads ``input`` twice but it is one tensor, counted once.
        """
        n = math.prod(self.input_shape)
        if self.op in ("add", "mul"):
            n *= 2
        elif self.op == "mul_bcast":
            n += self.batch * self.in_ch
        elif self.op == "concat":
            n *= self.n_inputs
        return FLOAT_BYTES * n

    @property
    def output_bytes(self) -> int:
        """Bytes of the output tensor (fp32)."""
        return FLOAT_BYTES * math.prod(self.output_shape)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------

DEFAULT_OP_WEIGHTS: dict[str, float] = {
    "conv": 0.12, "dwconv": 0.11, "pwconv": 0.14, "gconv": 0.04, "gemm": 0.04,
    "maxpool": 0.03, "avgpool": 0.02, "globalavgpool": 0.03,
    "relu": 0.03, "hswish": 0.03, "sigmoid": 0.02, "swish": 0.02, "hsigmoid": 0.02,
    "add": 0.04, "mul": 0.02, "mul_bcast": 0.03, "concat": 0.03, "reshape_transpose": 0.02,
    "batchnorm": 0.03, "conv_relu": 0.08, "conv_hswish": 0.06, "conv_add": 0.05,
}  # fmt: skip
"""Relative draw weights of the op types (convolutions most common)."""

# Stage levels: level L runs at about image_res / 2**L with channels in [lo, hi].  Level 0 is the
# stem (3-channel image, dense convs only).  Big spatial pairs with few channels, small with many.
_LEVEL_CHANNELS: dict[int, tuple[int, int]] = {1: (8, 96), 2: (16, 256), 3: (24, 512), 4: (48, 1024), 5: (64, 1024)}
_LEVEL_WEIGHTS = (0.15, 0.25, 0.25, 0.2, 0.15)  # levels 1..5
_IMAGE_RES = (128, 160, 192, 224, 256, 288, 320)
_IMAGE_RES_WEIGHTS = (0.12, 0.14, 0.16, 0.3, 0.1, 0.08, 0.1)
_STEM_OPS = ("conv", "conv_relu", "conv_hswish")
MIN_RES, MAX_RES = 7, 224
MIN_CH, MAX_CH = 8, 1024


def _weighted(rng: np.random.Generator, values: Sequence[Any], weights: Sequence[float]) -> Any:
    p = np.asarray(weights, dtype=np.float64)
    return values[int(rng.choice(len(values), p=p / p.sum()))]


class KernelSampler:
    """Seeded sampler of realistic kernel specs; owns its ``numpy.random.Generator``.

    Each draw picks an op type (``op_weights``), then a stage level (image resolution
    ``/ 2**L``) and channels consistent with that level, so shapes look like real CNN layers:
    spatial 7-224 px, channels 8-1024 (multiples of 8 with probability ``p_mult8``), kernels
    1/3/5/7, strides 1-2, groups from 1 to C; gemm with 64-4096 in and 10-4096 out features.
    Draws whose MACs exceed ``max_macs`` or whose largest tensor exceeds ``max_elements``
    values are rejected (400 M MACs runs in roughly 20 ms on one thread).

    Successive :meth:`sample` calls continue one stream and never repeat a spec, so
    ``sample(10) + sample(10)`` equals ``sample(20)`` of a fresh sampler with the same seed.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        op_weights: dict[str, float] | None = None,
        batches: Sequence[int] = (1,),
        max_macs: int = 400_000_000,
        max_elements: int = 4_000_000,
        p_mult8: float = 0.85,
    ) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        weights = dict(DEFAULT_OP_WEIGHTS if op_weights is None else op_weights)
        unknown = set(weights) - set(OPS)
        if unknown:
            raise ValueError(f"unknown kernel ops in op_weights: {', '.join(sorted(unknown))}")
        self.ops = tuple(op for op in OPS if weights.get(op, 0) > 0)
        if not self.ops:
            raise ValueError("op_weights gives no op a positive weight")
        self.op_weights = tuple(float(weights[op]) for op in self.ops)
        if not batches or any(int(b) < 1 for b in batches):
            raise ValueError(f"batches must be positive ints, got {list(batches)}")
        self.batches = tuple(int(b) for b in batches)
        self.max_macs = int(max_macs)
        self.max_elements = int(max_elements)
        self.p_mult8 = float(p_mult8)
        self._seen: set[KernelSpec] = set()

    # -- drawing helpers ----------------------------------------------------------------------
    def _channels(self, lo: float, hi: float) -> int:
        """Log-uniform channel count in [lo, hi], a multiple of 8 with probability p_mult8."""
        lo, hi = max(lo, MIN_CH), min(hi, MAX_CH)
        v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        if self.rng.random() < self.p_mult8:
            c = int(round(v / 8)) * 8
        else:
            c = int(round(v))
        return int(min(max(c, MIN_CH), MAX_CH))

    def _level_res(self, level: int) -> int:
        image = _weighted(self.rng, _IMAGE_RES, _IMAGE_RES_WEIGHTS)
        if level == 0:
            image = min(image, MAX_RES)
        return int(min(max(math.ceil(image / 2**level), MIN_RES), MAX_RES))

    def _out_like(self, c: int, lo: int, hi: int) -> int:
        """An output channel count related to ``c`` by a typical ratio (expand/project/widen)."""
        ratio = _weighted(self.rng, (1 / 6, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 6.0), (1, 2, 3, 4, 3, 2, 1))
        v = c * ratio
        c_out = int(round(v / 8)) * 8 if self.rng.random() < self.p_mult8 else int(round(v))
        return int(min(max(c_out, max(lo // 2, MIN_CH)), MAX_CH))

    def _stride(self, p2: float = 0.25) -> int:
        return 2 if self.rng.random() < p2 else 1

    def _draw(self) -> KernelSpec | None:
        """One candidate spec, or None when the drawn shape does not fit the op."""
        rng = self.rng
        op = _weighted(rng, self.ops, self.op_weights)
        batch = int(rng.choice(self.batches))
        if op == "gemm":
            fin = self._gemm_features(64, 4096)
            fout = (
                int(rng.choice((10, 100, 1000, 1001)))
                if rng.random() < 0.25
                else self._gemm_features(10, 4096)
            )
            return KernelSpec("gemm", batch=batch, in_ch=fin, out_ch=fout)
        if op in _STEM_OPS and rng.random() < 0.1:
            res = self._level_res(0)
            kernel = _weighted(rng, (3, 5, 7), (0.7, 0.1, 0.2))
            return KernelSpec(op, batch=batch, in_ch=3, out_ch=self._channels(8, 64), res=res,
                              kernel=kernel, stride=self._stride(0.85))
        level = _weighted(rng, (1, 2, 3, 4, 5), _LEVEL_WEIGHTS)
        lo, hi = _LEVEL_CHANNELS[level]
        res = self._level_res(level)
        c = self._channels(lo, hi)
        common = dict(batch=batch, in_ch=c, res=res)
        if op == "conv":
            kernel = _weighted(rng, (1, 3, 5, 7), (0.1, 0.7, 0.1, 0.1))
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), kernel=kernel, stride=self._stride(), **common)
        if op == "pwconv":
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), stride=self._stride(0.1), **common)
        if op == "dwconv":
            kernel = _weighted(rng, (3, 5, 7), (0.5, 0.3, 0.2))
            return KernelSpec(op, kernel=kernel, stride=self._stride(), **common)
        if op == "gconv":
            out = self._out_like(c, lo, hi)
            groups = self._divisor_groups(c, out)
            if groups is None:
                return None
            kernel = _weighted(rng, (1, 3), (0.4, 0.6))
            return KernelSpec(op, out_ch=out, kernel=kernel, stride=self._stride(), groups=groups, **common)
        if op in ("conv_relu", "conv_hswish", "conv_add"):
            depthwise = rng.random() < 0.4
            kernel = _weighted(rng, (3, 5, 7), (0.5, 0.3, 0.2)) if depthwise else _weighted(
                rng, (1, 3, 5, 7), (0.45, 0.45, 0.05, 0.05)
            )
            if op == "conv_add":
                return KernelSpec(op, kernel=kernel, groups=c if depthwise else 1, **common)
            if depthwise:
                return KernelSpec(op, out_ch=c, kernel=kernel, groups=c, stride=self._stride(), **common)
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), kernel=kernel, stride=self._stride(), **common)
        if op == "maxpool":
            kernel, stride = _weighted(rng, ((3, 2), (2, 2), (3, 1), (5, 1)), (0.5, 0.3, 0.1, 0.1))
            return KernelSpec(op, kernel=kernel, stride=stride, **common)
        if op == "avgpool":
            kernel, stride = _weighted(rng, ((2, 2), (3, 1), (3, 2)), (0.4, 0.4, 0.2))
            return KernelSpec(op, kernel=kernel, stride=stride, **common)
        if op == "concat":
            n = _weighted(rng, (2, 3, 4), (0.6, 0.2, 0.2))
            common["in_ch"] = self._channels(lo // n, hi // n)
            return KernelSpec(op, n_inputs=n, **common)
        if op == "reshape_transpose":
            cands = [g for g in (2, 3, 4, 8) if c % g == 0 and g < c]
            if not cands:
                return None
            return KernelSpec(op, groups=int(rng.choice(cands)), **common)
        return KernelSpec(op, **common)  # activations, add, mul, mul_bcast, batchnorm, globalavgpool

    def _gemm_features(self, lo: int, hi: int) -> int:
        v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        f = round(v / 8) * 8 if self.rng.random() < self.p_mult8 else round(v)
        return int(min(max(f, lo), hi))

    def _divisor_groups(self, c: int, out: int) -> int | None:
        """Groups of a grouped conv: ShuffleNet-style counts or RegNet/ResNeXt group widths."""
        cands = {g for g in (2, 3, 4, 8, 16, 32, 64)}
        cands |= {c // w for w in (8, 16, 32, 64) if c % w == 0}
        ok = sorted(g for g in cands if 1 < g < c and c % g == 0 and out % g == 0)
        return int(self.rng.choice(ok)) if ok else None

    def _fits(self, spec: KernelSpec) -> bool:
        biggest = max(math.prod(spec.input_shape) * spec.n_inputs, math.prod(spec.output_shape))
        return spec.macs <= self.max_macs and biggest <= self.max_elements

    # -- public -------------------------------------------------------------------------------
    def sample(self, n: int) -> list[KernelSpec]:
        """``n`` new specs, none repeating any spec this sampler has returned before."""
        out: list[KernelSpec] = []
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 200 * n + 1000:
                raise ValueError(f"could not draw {n} new unique kernels (op weights or caps too narrow)")
            spec = self._draw()
            if spec is None or spec in self._seen or not self._fits(spec):
                continue
            self._seen.add(spec)
            out.append(spec)
        return out


# --------------------------------------------------------------------------------------------
# ONNX graphs
# --------------------------------------------------------------------------------------------


def _value(name: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


class _GraphBuilder:
    """Collects nodes and seeded float32 initializers for one kernel graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def normal(self, name: str, shape: Sequence[int], std: float = 1.0) -> str:
        return self.init(name, (self.rng.standard_normal(tuple(shape)) * std).astype(np.float32))

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))

    def conv(self, spec: KernelSpec, out: str) -> None:
        k, cin_g = spec.kernel, spec.in_ch // spec.groups
        w = self.normal("conv.weight", (spec.out_ch, cin_g, k, k), std=math.sqrt(2.0 / (cin_g * k * k)))
        b = self.normal("conv.bias", (spec.out_ch,), std=0.01)
        p = spec.pad
        self.node("Conv", ["input", w, b], [out], "conv", kernel_shape=[k, k], strides=[spec.stride] * 2,
                  pads=[p, p, p, p], group=spec.groups, dilations=[1, 1])


def build_kernel_onnx(spec: KernelSpec, seed: int = 0) -> onnx.ModelProto:
    """The kernel as an ONNX model: opset 17, IR 9, float32, one input ``input``, one output ``output``.

    Weights and second operands are seeded random float32 initializers (He-normal conv /
    gemm weights); see the module docstring for how second operands are provided.  The graph
    is named after :attr:`KernelSpec.key`, nodes are named after their role (``conv``,
    ``act``, ``add``...), and metadata ``hwnas.kernel`` holds the spec as JSON.
    """
    g = _GraphBuilder(seed)
    op = spec.op
    in_shape = list(spec.input_shape)
    n, c = spec.batch, spec.in_ch
    if op in ("conv", "dwconv", "pwconv", "gconv"):
        g.conv(spec, "output")
    elif op in ("conv_relu", "conv_hswish"):
        g.conv(spec, "conv_out")
        g.node("Relu" if op == "conv_relu" else "HardSwish", ["conv_out"], ["output"], "act")
    elif op == "conv_add":
        g.conv(spec, "conv_out")
        g.node("Add", ["conv_out", "input"], ["output"], "add")
    elif op == "gemm":
        w = g.normal("fc.weight", (spec.out_ch, spec.in_ch), std=math.sqrt(1.0 / spec.in_ch))
        b = g.normal("fc.bias", (spec.out_ch,), std=0.01)
        g.node("Gemm", ["input", w, b], ["output"], "fc", transB=1)
    elif op in POOL_OPS:
        p, k = spec.pad, spec.kernel
        attrs: dict[str, Any] = dict(kernel_shape=[k, k], strides=[spec.stride] * 2, pads=[p, p, p, p])
        if op == "avgpool":
            attrs["count_include_pad"] = 0
        g.node("MaxPool" if op == "maxpool" else "AveragePool", ["input"], ["output"], "pool", **attrs)
    elif op == "globalavgpool":
        g.node("GlobalAveragePool", ["input"], ["output"], "pool")
    elif op == "relu":
        g.node("Relu", ["input"], ["output"], "act")
    elif op == "hswish":
        g.node("HardSwish", ["input"], ["output"], "act")
    elif op == "sigmoid":
        g.node("Sigmoid", ["input"], ["output"], "act")
    elif op == "hsigmoid":  # PyTorch's hardsigmoid: relu6(x + 3) / 6
        g.node("HardSigmoid", ["input"], ["output"], "act", alpha=1.0 / 6.0, beta=0.5)
    elif op == "swish":
        g.node("Sigmoid", ["input"], ["gate"], "sigmoid")
        g.node("Mul", ["input", "gate"], ["output"], "mul")
    elif op in ("add", "mul"):
        other = g.normal("other", in_shape)
        g.node("Add" if op == "add" else "Mul", ["input", other], ["output"], op)
    elif op == "mul_bcast":
        scale = g.init("scale", g.rng.uniform(0.0, 1.0, (n, c, 1, 1)).astype(np.float32))
        g.node("Mul", ["input", scale], ["output"], "mul")
    elif op == "concat":
        others = [g.normal(f"other{i}", in_shape) for i in range(1, spec.n_inputs)]
        g.node("Concat", ["input", *others], ["output"], "concat", axis=1)
    elif op == "reshape_transpose":
        grp, h = spec.groups, spec.res
        s1 = g.init("shape_split", np.array([n, grp, c // grp, h, h], dtype=np.int64))
        s2 = g.init("shape_merge", np.array([n, c, h, h], dtype=np.int64))
        g.node("Reshape", ["input", s1], ["split"], "reshape_split")
        g.node("Transpose", ["split"], ["shuffled"], "transpose", perm=[0, 2, 1, 3, 4])
        g.node("Reshape", ["shuffled", s2], ["output"], "reshape_merge")
    elif op == "batchnorm":
        scale = g.init("bn.scale", g.rng.uniform(0.5, 1.5, c).astype(np.float32))
        bias = g.normal("bn.bias", (c,), std=0.1)
        mean = g.normal("bn.mean", (c,), std=0.1)
        var = g.init("bn.var", g.rng.uniform(0.5, 1.5, c).astype(np.float32))
        g.node("BatchNormalization", ["input", scale, bias, mean, var], ["output"], "bn", epsilon=1e-5)
    else:  # pragma: no cover - KernelSpec validates op
        raise ValueError(f"no ONNX builder for op {op!r}")
    graph = helper.make_graph(
        g.nodes, spec.key, [_value("input", in_shape)], [_value("output", spec.output_shape)], initializer=g.inits
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hwnas.kernels", ir_version=IR_VERSION
    )
    helper.set_model_props(model, {"hwnas.kernel": json.dumps(spec.to_dict(), sort_keys=True)})
    return model
