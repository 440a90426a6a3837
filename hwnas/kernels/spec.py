"""One kernel of the campaign as a value: :class:`KernelSpec` (op, geometry, key, analytic cost).

A kernel-level latency predictor (nn-Meter style, FIELD-NOTES §1) needs measurements of single
kernels whose shapes cover what real networks use, not only what our search space produces.
The campaign has three pieces (:mod:`hwnas.kernels`):

* :class:`KernelSpec` (here): one kernel as an immutable, hashable, validated value with a
  stable text key, e.g. ``conv_b1_i32_o64_r56_k3_s2_g1``, and analytic cost (MACs, bytes).
* :class:`~hwnas.kernels.sampler.KernelSampler` (CNN shapes) and
  :class:`~hwnas.kernels.sampler.TokenKernelSampler` (transformer shapes): seeded samplers of
  realistic, de-duplicated, cost-capped specs.
* :func:`~hwnas.kernels.graphs.build_kernel_onnx`: the spec as a one-input ONNX graph (opset 17).

Key grammar (tokens separated by ``_``; the op name itself may contain ``_`` and digits, e.g. ``conv_relu6``)::

    <op>_b<batch>_i<in_ch>_o<out_ch>_r<res>_k<kernel>_s<stride>_g<groups>[_n<n_inputs>]

``_n<n_inputs>`` appears for ``concat`` only.  ``lrn`` (LocalResponseNormalization, as in
AlexNet / GoogLeNet) keeps the grammar: ``kernel`` is its ``size``, the window of channels each
element is normalized over (odd), e.g. ``lrn_b1_i64_o64_r56_k5_s1_g1``.  Every field is concrete
in a key: the spec fills derived fields (``out_ch`` of an activation, ``groups`` of a depthwise conv) itself.
``patch_conv`` is a convolution over non-overlapping patches, ``stride == kernel``, no padding
(ViT / DeiT's patch embedding, 16 or 32 px from RGB; ConvNeXt's and Swin's 4 px stem and their
2 px downsampling between stages), e.g. ``patch_conv_b1_i3_o192_r224_k16_s16_g1``; its kernel
may be even (at least 2).

Second operands
---------------
Every graph has exactly one graph input, named ``input``.  Operators that need a second
activation tensor (``add``, ``mul``, ``mul_bcast``, ``concat``) get it as a seeded random
graph **initializer** of the shape a real second activation would have; ONNX Runtime cannot
constant-fold such a node because its other operand is the graph input.  ``conv_add`` adds the
conv output to ``input`` itself (a real identity residual), so it requires ``stride == 1`` and
``out_ch == in_ch``.  In the analytic byte counts these extra operands are activations
(:attr:`KernelSpec.input_bytes`), not weights (:attr:`KernelSpec.weight_bytes`).

Token ops (transformers; ConvNeXt's channels-last MLP)
-----------------------------------------------------
``linear``, ``gelu``, ``layernorm``, ``add_layernorm``, ``softmax``, ``attn_qk``, ``attn_av``
work on token tensors: ``res`` is the number of tokens T (not pixels), ``in_ch`` the features
per token, ``groups`` the attention heads H.  Inputs: ``(batch, T, in_ch)``; ``softmax`` and
``attn_qk`` ``(batch, H, T, in_ch)`` (``attn_qk``: ``in_ch`` is the head dimension d, output
Q K^T scaled ``(batch, H, T, T)``, which ORT fuses to ``FusedMatMul``); ``attn_av``
``(batch, H, T, T)`` attention weights times V ``(batch, H, T, out_ch)`` (V sliced from the input,
so both operands are activations, as in a real model).  ``linear`` is MatMul + bias (ORT runs a
``Gemm`` on the flattened tokens), ``gelu`` the erf form torch exports (fused to ``Gelu``),
``add_layernorm`` a residual Add + LayerNorm (fused to ``SkipLayerNormalization``).

Fused attention (ONNX Runtime's ``com.microsoft`` contrib ops)
--------------------------------------------------------------
``attention`` and ``mha`` are whole self-attention blocks as one kernel, as they appear in graphs
that ``onnxruntime.transformers``' optimizer (or an exporter such as optimum) has fused: ``res`` is
the number of tokens T, ``in_ch`` the embedding C (= ``out_ch``), ``groups`` the heads (they divide
C).  ``attention`` is ``Attention``: input ``(batch, T, C)`` times packed Q/K/V weights ``C x 3C``
plus bias, then softmax(Q K^T / sqrt(d)) V per head, output ``(batch, T, C)``.  ``mha`` is
``MultiHeadAttention`` on projections already made: query, key and value are the input itself
(three reads of one ``(batch, T, C)`` tensor; a real model's three are as large and as recently
written).  Key e.g. ``attention_b1_i256_o256_r128_k1_s1_g4``.

Padding: convolutions and pools pad ``(kernel - 1) // 2`` on every side (``same`` for odd
kernels at stride 1); convolution kernels must be odd.
"""

from __future__ import annotations

import math
import re
from dataclasses import KW_ONLY, asdict, dataclass
from typing import Any

import numpy as np

OPSET = 17
IR_VERSION = 9  # onnxruntime 1.17+ loads IR 9; newer IRs from onnx's default are refused by older ORTs
FLOAT_BYTES = 4

CONV_OPS = ("conv", "dwconv", "pwconv", "gconv", "conv_relu", "conv_hswish", "conv_add")
POOL_OPS = ("maxpool", "avgpool")
ACT_OPS = ("relu", "hswish", "sigmoid", "swish", "hsigmoid")
BINARY_OPS = ("add", "mul", "mul_bcast")
TOKEN_OPS = ("linear", "gelu", "layernorm", "add_layernorm", "softmax", "attn_qk", "attn_av")
#: fused self-attention (ORT's ``Attention`` / ``MultiHeadAttention`` contrib ops)
ATTENTION_OPS = ("attention", "mha")
#: convolutions followed by an activation ORT fuses into them, beyond ``conv_relu`` / ``conv_hswish``:
#: ReLU6 (``Clip(0, 6)``: MobileNetV2, MNASNet-era and EfficientNet-lite models), LeakyReLU (detection
#: backbones), Sigmoid.  MLAS applies Relu inside its convolution kernels and these as a pass of their
#: own over the output, which a memory-bound depthwise convolution feels (ReLU6 ~1.4x Relu here)
FUSED_ACT_CONV_OPS = ("conv_relu6", "conv_lrelu", "conv_sigmoid")
#: ops drawn by samplers of their own (LRN of older CNNs; patch convolutions of ViTs and ConvNeXts; fused
#: attention; convolutions with a fused ReLU6 / LeakyReLU / Sigmoid), so that adding one leaves the CNN and
#: token samplers' streams, and the keys of measured
#: profiles, unchanged
EXTRA_OPS = ("lrn", "patch_conv", *ATTENTION_OPS, *FUSED_ACT_CONV_OPS)
#: ops timed as one ``Conv`` node (MACs and weights counted alike)
_CONV_LIKE = (*CONV_OPS, "patch_conv", *FUSED_ACT_CONV_OPS)
#: token ops whose ``groups`` are attention heads
HEAD_OPS = ("softmax", "attn_qk", "attn_av")
OPS: tuple[str, ...] = (
    "conv", "dwconv", "pwconv", "gconv", "gemm",
    "maxpool", "avgpool", "globalavgpool",
    "relu", "hswish", "sigmoid", "swish", "hsigmoid",
    "add", "mul", "mul_bcast", "concat", "reshape_transpose", "batchnorm",
    "conv_relu", "conv_hswish", "conv_add",
    *TOKEN_OPS, *EXTRA_OPS,
)  # fmt: skip
"""Every kernel type of the campaign."""

_KEY_RE = re.compile(
    r"^(?P<op>[a-z][a-z0-9_]*?)_b(?P<batch>\d+)_i(?P<in_ch>\d+)_o(?P<out_ch>\d+)_r(?P<res>\d+)"
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
        if op in TOKEN_OPS:
            self._check_token_op()
        elif op in ATTENTION_OPS:
            self._fix("kernel", 1)
            self._fix("stride", 1)
            self._fix("out_ch", c)
            if self.groups < 1 or c % self.groups:
                raise ValueError(f"{op}: groups (the heads) must divide in_ch {c}, got {self.groups}")
        elif op == "gemm":
            self._fix("res", 1)
            self._fix("kernel", 1)
            self._fix("stride", 1)
            self._fix("groups", 1)
            self._require_out()
        elif op == "patch_conv":
            self._require_out()
            self._fix("groups", 1)
            if self.kernel < 2:
                raise ValueError(f"patch_conv: kernel (the patch size) must be >= 2, got {self.kernel}")
            self._fix("stride", self.kernel)
        elif op in _CONV_LIKE:  # patch_conv is handled above
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
            if op == "lrn":
                self._fix("stride", 1)
                if self.kernel % 2 == 0:
                    raise ValueError(f"lrn: kernel (the LRN size) must be odd, got {self.kernel}")
            elif op not in POOL_OPS:
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

    def _check_token_op(self) -> None:
        op, t = self.op, self.res
        self._fix("kernel", 1)
        self._fix("stride", 1)
        if op in HEAD_OPS:
            self._fix("groups", 1, derive_only=True)
        else:
            self._fix("groups", 1)
        if op == "linear":
            self._require_out()
        elif op == "attn_qk":
            self._fix("out_ch", t)
        elif op == "attn_av":
            self._fix("in_ch", t)
            self._require_out()
            if self.out_ch > t:
                raise ValueError(f"attn_av: out_ch (head dimension, sliced from the {t} tokens) must be <= res {t}, "
                                 f"got {self.out_ch}")
        else:
            self._fix("out_ch", self.in_ch)

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
        """Padding on each side, in pixels (none for ``patch_conv``)."""
        return 0 if self.op == "patch_conv" else (self.kernel - 1) // 2

    @property
    def out_res(self) -> int:
        """Output height = width in pixels (1 for ``gemm`` and ``globalavgpool``)."""
        if self.op in ("gemm", "globalavgpool"):
            return 1
        return (self.res + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the graph input ``input`` (NCHW; ``(batch, in_ch)`` for ``gemm``; token ops:
        ``(batch, tokens, in_ch)`` or, with heads, ``(batch, heads, tokens, in_ch)``)."""
        if self.op == "gemm":
            return (self.batch, self.in_ch)
        if self.op in HEAD_OPS:
            return (self.batch, self.groups, self.res, self.in_ch)
        if self.op in TOKEN_OPS or self.op in ATTENTION_OPS:
            return (self.batch, self.res, self.in_ch)
        return (self.batch, self.in_ch, self.res, self.res)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the graph output ``output``."""
        if self.op == "gemm":
            return (self.batch, self.out_ch)
        if self.op in HEAD_OPS:
            return (self.batch, self.groups, self.res, self.out_ch)
        if self.op in TOKEN_OPS or self.op in ATTENTION_OPS:
            return (self.batch, self.res, self.out_ch)
        return (self.batch, self.out_ch, self.out_res, self.out_res)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: convolutions and matrix products, as in :mod:`hwnas.cost`; and
        ``lrn``'s window, ``size`` squares summed per output element (the kernel predictor's
        MACs feature of an ``LRN`` kernel; :func:`hwnas.onnx_io.onnx_macs` counts 0 for it)."""
        if self.op == "lrn":
            return math.prod(self.output_shape) * self.kernel
        if self.op in _CONV_LIKE:
            return math.prod(self.output_shape) * (self.in_ch // self.groups) * self.kernel * self.kernel
        if self.op == "gemm":
            return self.batch * self.in_ch * self.out_ch
        if self.op == "linear":
            return self.batch * self.res * self.in_ch * self.out_ch
        if self.op in ("attn_qk", "attn_av"):  # (T x d) (d x T) and (T x T) (T x d) per head
            return self.batch * self.groups * self.res * self.res * (self.in_ch if self.op == "attn_qk" else self.out_ch)
        if self.op in ATTENTION_OPS:  # Q K^T and A V over all heads, plus the Q/K/V projection for attention
            attn = 2 * self.batch * self.res * self.res * self.in_ch
            return attn + (self.batch * self.res * self.in_ch * 3 * self.in_ch if self.op == "attention" else 0)
        return 0

    @property
    def params(self) -> int:
        """Number of weight values (conv / gemm weights and biases, batch-norm's four vectors)."""
        if self.op in _CONV_LIKE:
            return self.out_ch * (self.in_ch // self.groups) * self.kernel * self.kernel + self.out_ch
        if self.op in ("gemm", "linear"):
            return self.in_ch * self.out_ch + self.out_ch
        if self.op == "attention":  # packed Q/K/V weights and bias
            return 3 * self.in_ch * self.in_ch + 3 * self.in_ch
        if self.op in ("layernorm", "add_layernorm"):
            return 2 * self.in_ch
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

        ``add``/``mul``/``add_layernorm``: two input-shaped tensors; ``mul_bcast``: the input plus an
        ``(N, C, 1, 1)`` scale; ``concat``: ``n_inputs`` input-shaped tensors; ``conv_add``
        reads ``input`` twice but it is one tensor, counted once.
        """
        n = math.prod(self.input_shape)
        if self.op in ("add", "mul", "add_layernorm"):
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
