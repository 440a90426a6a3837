"""A kernel spec as a one-input ONNX graph (opset 17) for ONNX Runtime."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..onnx_io import CONTRIB_DOMAIN
from .spec import FUSED_ACT_CONV_OPS, IR_VERSION, OPSET, POOL_OPS, KernelSpec

#: the ``LRN`` node's constants (its cost does not depend on them)
LRN_ALPHA, LRN_BETA, LRN_BIAS = 1e-4, 0.75, 1.0


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

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, domain: str = "",
             **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, domain=domain or None,
                                           **attrs))

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
    if op in ("conv", "dwconv", "pwconv", "gconv", "patch_conv"):
        g.conv(spec, "output")
    elif op in ("conv_relu", "conv_hswish", *FUSED_ACT_CONV_OPS):
        g.conv(spec, "conv_out")
        if op == "conv_relu6":  # as torch exports ReLU6: Clip with min / max inputs
            lo, hi = g.init("act.min", np.array(0.0, np.float32)), g.init("act.max", np.array(6.0, np.float32))
            g.node("Clip", ["conv_out", lo, hi], ["output"], "act")
        elif op == "conv_lrelu":
            g.node("LeakyRelu", ["conv_out"], ["output"], "act", alpha=0.1)
        else:
            act = {"conv_relu": "Relu", "conv_hswish": "HardSwish", "conv_sigmoid": "Sigmoid"}[op]
            g.node(act, ["conv_out"], ["output"], "act")
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
    elif op == "lrn":  # AlexNet's / GoogLeNet's constants (bias 1: Caffe's and torch's default k)
        g.node("LRN", ["input"], ["output"], "lrn", size=spec.kernel, alpha=LRN_ALPHA, beta=LRN_BETA, bias=LRN_BIAS)
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
    elif op == "attention":
        w = g.normal("qkv.weight", (c, 3 * c), std=math.sqrt(1.0 / c))
        b = g.normal("qkv.bias", (3 * c,), std=0.01)
        g.node("Attention", ["input", w, b], ["output"], "attention", domain=CONTRIB_DOMAIN, num_heads=spec.groups)
    elif op == "mha":
        g.node("MultiHeadAttention", ["input", "input", "input"], ["output"], "mha", domain=CONTRIB_DOMAIN,
               num_heads=spec.groups)
    elif not _token_op(g, spec):  # pragma: no cover - KernelSpec validates op
        raise ValueError(f"no ONNX builder for op {op!r}")
    graph = helper.make_graph(
        g.nodes, spec.key, [_value("input", in_shape)], [_value("output", spec.output_shape)], initializer=g.inits
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == CONTRIB_DOMAIN for n in g.nodes):
        opsets.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="hwnas.kernels", ir_version=IR_VERSION)
    helper.set_model_props(model, {"hwnas.kernel": json.dumps(spec.to_dict(), sort_keys=True)})
    return model


def _i64(g: _GraphBuilder, name: str, values: Sequence[int]) -> str:
    return g.init(name, np.array(values, dtype=np.int64))


def _token_op(g: _GraphBuilder, spec: KernelSpec) -> bool:
    """The token (transformer) ops, written as torch's exporter writes them, so that ORT fuses
    them as it does in real models; False for any other op."""
    op, c = spec.op, spec.in_ch
    if op == "linear":
        w = g.normal("fc.weight", (c, spec.out_ch), std=math.sqrt(1.0 / c))
        b = g.normal("fc.bias", (spec.out_ch,), std=0.01)
        g.node("MatMul", ["input", w], ["mm"], "fc.matmul")
        g.node("Add", ["mm", b], ["output"], "fc.bias_add")
    elif op == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)): ORT fuses the five nodes into Gelu
        g.init("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
        g.init("one", np.array(1.0, dtype=np.float32))
        g.init("half", np.array(0.5, dtype=np.float32))
        g.node("Div", ["input", "sqrt2"], ["scaled"], "gelu.div")
        g.node("Erf", ["scaled"], ["erf"], "gelu.erf")
        g.node("Add", ["erf", "one"], ["erf1"], "gelu.add")
        g.node("Mul", ["input", "erf1"], ["prod"], "gelu.mul")
        g.node("Mul", ["prod", "half"], ["output"], "gelu.half")
    elif op in ("layernorm", "add_layernorm"):
        gamma = g.init("ln.weight", g.rng.uniform(0.5, 1.5, c).astype(np.float32))
        beta = g.normal("ln.bias", (c,), std=0.1)
        x = "input"
        if op == "add_layernorm":  # residual + LayerNorm: ORT fuses to SkipLayerNormalization
            g.node("Add", ["input", g.normal("residual", spec.input_shape)], ["sum"], "residual_add")
            x = "sum"
        g.node("LayerNormalization", [x, gamma, beta], ["output"], "ln", axis=-1, epsilon=1e-6)
    elif op == "softmax":
        g.node("Softmax", ["input"], ["output"], "softmax", axis=-1)
    elif op == "attn_qk":  # Q K^T x d^-1/2, Q = K = input: ORT fuses Transpose, MatMul, Mul to FusedMatMul
        g.init("scale", np.array(1.0 / math.sqrt(c), dtype=np.float32))
        g.node("Transpose", ["input"], ["kt"], "k.transpose", perm=[0, 1, 3, 2])
        g.node("MatMul", ["input", "kt"], ["scores"], "qk.matmul")
        g.node("Mul", ["scores", "scale"], ["output"], "qk.scale")
    elif op == "attn_av":  # attention weights (the input) times V, V a slice of the input: two activations
        g.node("Slice", ["input", _i64(g, "v.start", [0]), _i64(g, "v.end", [spec.out_ch]), _i64(g, "v.axis", [3])],
               ["v"], "v.slice")
        g.node("MatMul", ["input", "v"], ["output"], "av.matmul")
    else:
        return False
    return True
