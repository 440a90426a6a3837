"""Post-fusion kernels without running the model: shapes propagated over ORT's optimized graph.

ORT saves the graph it will run (fused ``FusedConv``/``FusedGemm``, NCHWc ``Conv``, pools and
``Reorder*`` nodes) but no shapes for it.  :func:`static_kernels` propagates shapes from the
graph inputs with one rule per op type, giving the same ``KernelRecord`` op types and shapes as
ORT's profiler reports for one run (checked against traces in the tests).  An op without a rule,
or a shape it cannot know (a data-dependent ``Reshape``), returns ``None``: the caller then runs
the model once under the profiler, as before.  Without the run, any-ONNX prediction costs the
session's graph optimization only, whatever the model's own latency.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..measure import KernelRecord
from ..onnx_io import CONTRIB_DOMAIN

Shape = tuple[int, ...]

_UNARY = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Tanh", "LeakyRelu", "Softmax", "Erf", "Exp", "Sqrt",
          "Neg", "Abs", "Log", "Identity", "Gelu", "QuickGelu", "Elu", "Selu", "Softplus", "BatchNormalization",
          "Dropout", "PRelu", "LRN"}
_BINARY = {"Add", "Mul", "Sub", "Div", "Sum", "Max", "Min", "Pow"}
#: LayerNorm and ORT's fusions of it (com.microsoft): normalized over the last axes
_NORMS = {"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
          "SkipSimplifiedLayerNormalization"}
_REDUCES = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL2"}
#: ORT's GELU fusions with a bias input (com.microsoft)
_GELUS = {"BiasGelu", "FastGelu"}
_NCHWC_BLOCK = 8  # channels per NCHWc block with AVX2; :func:`nchwc_block` asks ORT on this machine
_BLOCKS: dict[str, int] = {}


class _Unknown(Exception):
    pass


def _pool_out(x: Shape, kernel: Sequence[int], a: dict) -> Shape:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise _Unknown("auto_pad")
    nd = len(kernel)
    strides = list(a.get("strides") or [1] * nd)
    pads = list(a.get("pads") or [0] * (2 * nd))
    dil = list(a.get("dilations") or [1] * nd)
    ceil = bool(a.get("ceil_mode", 0))
    sp = []
    for i in range(nd):
        span = x[2 + i] + pads[i] + pads[i + nd] - dil[i] * (kernel[i] - 1) - 1
        sp.append((math.ceil if ceil else math.floor)(span / strides[i]) + 1)
    return (x[0], x[1], *sp)


def _broadcast(shapes: Sequence[Shape]) -> Shape:
    first = shapes[0]
    if all(s == first for s in shapes[1:]):  # the common case, without numpy's overhead
        return tuple(first)
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise _Unknown("broadcast") from None


def _axes(node: onnx.NodeProto, a: dict, consts: dict[str, np.ndarray]) -> list[int] | None:
    """The ``axes`` of a Squeeze / Unsqueeze / Reduce*: the attribute (older opsets) or the constant
    second input (newer ones); ``None`` when neither is given."""
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in consts:
            raise _Unknown("axes")
        axes = [int(v) for v in consts[node.input[1]].ravel()]
    return axes


def _infer(node: onnx.NodeProto, a: dict, ins: list[Shape], consts: dict[str, np.ndarray], block: int) -> list[Shape]:
    """Output shapes of ``node`` (attributes ``a``) from its input shapes.  NCHWc ops
    (``com.microsoft.nchwc``) take the rules of the ops they implement; only the reorders differ."""
    op, dom = node.op_type, node.domain
    x = ins[0] if ins else ()
    if dom == "com.microsoft.nchwc" and op == "ReorderInput":
        c, sp = (x[3], x[1:3]) if a.get("channels_last") else (x[1], x[2:])
        return [(x[0], -(-c // block) * block, *sp)]
    if dom == "com.microsoft.nchwc" and op == "ReorderOutput":
        c = int(a["channels"])
        return [(x[0], *x[2:], c) if a.get("channels_last") else (x[0], c, *x[2:])]
    if dom == "com.microsoft.nchwc" and op not in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool",
                                                   "GlobalMaxPool"):
        raise _Unknown(op)
    if dom not in ("", "ai.onnx", "com.microsoft", "com.microsoft.nchwc"):
        raise _Unknown(op)
    if op in ("Conv", "FusedConv"):
        w = ins[1]
        return [_pool_out((x[0], w[0], *x[2:]), w[2:], a)]
    if op in ("MaxPool", "AveragePool"):  # MaxPool's optional indices have the output's shape
        return [_pool_out(x, a["kernel_shape"], a)] * max(1, sum(1 for o in node.output if o))
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        return [(x[0], x[1], *([1] * (len(x) - 2)))]
    if op in ("Gemm", "FusedGemm"):
        m = x[1] if a.get("transA") else x[0]
        n = ins[1][0] if a.get("transB") else ins[1][1]
        return [(m, n)]
    if op in ("MatMul", "FusedMatMul"):
        if len(x) < 2 or len(ins[1]) < 2:
            raise _Unknown("matmul rank")
        if a.get("transBatchA") or a.get("transBatchB"):
            raise _Unknown("fusedmatmul batch transpose")
        b = ins[1]
        batch = _broadcast([x[:-2], b[:-2]])
        # FusedMatMul (e.g. Q x K^T x scale, fused by ORT) may transpose either operand
        return [(*batch, x[-1] if a.get("transA") else x[-2], b[-2] if a.get("transB") else b[-1])]
    if op in _UNARY:
        return [x]
    if op in _NORMS:  # (output, mean, inverse std[, skip sum]): the statistics keep the normalized axes as 1
        ax = a.get("axis", -1) % len(x)
        stats = (*x[:ax], *([1] * (len(x) - ax)))
        return [(x, stats, stats, x)[i] for i, o in enumerate(node.output[:4]) if o]
    if op in _GELUS:  # x (+ bias along the last axis)
        return [_broadcast(ins)]
    if op in _REDUCES:
        axes = _axes(node, a, consts)
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return [x]
            axes = range(len(x))
        axes = {ax % len(x) for ax in axes}
        keep = a.get("keepdims", 1)
        return [tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)]
    if op == "Gather":
        ax = a.get("axis", 0) % len(x)
        return [(*x[:ax], *ins[1], *x[ax + 1:])]
    if op in _BINARY:
        return [_broadcast(ins)]
    if op == "Concat":
        ax = a["axis"] % len(x)
        return [tuple(sum(s[ax] for s in ins) if i == ax else d for i, d in enumerate(x))]
    if op == "Flatten":
        ax = a.get("axis", 1) % (len(x) + 1) if x else 0
        return [(math.prod(x[:ax]), math.prod(x[ax:]))]
    if op == "Transpose":
        perm = a.get("perm") or list(range(len(x)))[::-1]
        return [tuple(x[p] for p in perm)]
    if op == "Reshape":
        if node.input[1] not in consts or a.get("allowzero", 0):
            raise _Unknown("reshape shape")
        target = [int(v) for v in consts[node.input[1]].ravel()]
        target = [x[i] if v == 0 else v for i, v in enumerate(target)]
        if -1 in target:
            known = math.prod(v for v in target if v != -1)
            target[target.index(-1)] = math.prod(x) // max(known, 1)
        return [tuple(target)]
    if op == "Split":
        ax = a.get("axis", 0) % len(x)
        if len(node.input) > 1 and node.input[1]:
            if node.input[1] not in consts:
                raise _Unknown("split sizes")
            sizes = [int(v) for v in consts[node.input[1]].ravel()]
        elif "split" in a:
            sizes = list(a["split"])
        else:
            k = len(node.output)
            sizes = [-(-x[ax] // k)] * (k - 1)
            sizes.append(x[ax] - sum(sizes))
        return [tuple(s if i == ax else d for i, d in enumerate(x)) for s in sizes]
    if op in ("Attention", "MultiHeadAttention") and dom == CONTRIB_DOMAIN and len(x) == 3 \
            and sum(1 for o in node.output if o) == 1:
        # (batch, tokens, V width); past / present states and packed layouts: no rule, one profiled run
        if op == "Attention":
            sizes = list(a.get("qkv_hidden_sizes") or [])
            v = int(sizes[2]) if len(sizes) == 3 else int(ins[1][-1]) // 3
        elif len(ins) >= 3 and len(ins[2]) == 3:
            v = int(ins[2][2])
        else:
            raise _Unknown(op)
        return [(x[0], x[1], v)]
    if op in ("Squeeze", "Unsqueeze"):
        axes = _axes(node, a, consts)
        if op == "Squeeze":
            if axes is None:
                return [tuple(d for d in x if d != 1)]
            axes = {ax % len(x) for ax in axes}
            return [tuple(d for i, d in enumerate(x) if i not in axes)]
        if axes is None:
            raise _Unknown("unsqueeze axes")
        n = len(x) + len(axes)
        axes = {ax % n for ax in axes}
        it = iter(x)
        return [tuple(1 if i in axes else next(it) for i in range(n))]
    raise _Unknown(op)


def static_kernels(optimized_path: str, input_shapes: dict[str, Shape], block: int = _NCHWC_BLOCK) -> list[KernelRecord] | None:
    """The kernels of ORT's saved optimized graph with their shapes, or ``None`` when some shape
    cannot be derived without running the model."""
    from ..measure import node_attributes  # the attributes as the profiled path records them

    g = onnx.load(optimized_path, load_external_data=False).graph
    shapes: dict[str, Shape] = {k: tuple(v) for k, v in input_shapes.items()}
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        shapes[init.name] = tuple(map(int, init.dims))
        if init.data_location != onnx.TensorProto.EXTERNAL and init.data_type == onnx.TensorProto.INT64:
            consts[init.name] = numpy_helper.to_array(init)
    records = []
    try:
        for idx, node in enumerate(g.node):
            if node.op_type == "Constant":
                raise _Unknown("Constant")
            present = [i for i in node.input if i]
            if any(i not in shapes for i in present):
                raise _Unknown("input shape")
            ins = [shapes[i] for i in present]
            attrs = node_attributes(node)
            outs = _infer(node, attrs, ins, consts, block)
            real = [o for o in node.output if o]
            if len(outs) < len(real):
                raise _Unknown("outputs")
            for name, s in zip(real, outs):
                shapes[name] = tuple(map(int, s))
            records.append(KernelRecord(node.name, node.op_type, node.domain, tuple(ins),
                                        tuple(shapes[o] for o in real), attrs, 0.0, idx))
    except (_Unknown, KeyError, IndexError, ZeroDivisionError, TypeError, ValueError):
        return None
    return records


def nchwc_block(device) -> int:
    """Channels per NCHWc block ORT uses here (8 with AVX2, 16 with AVX-512): read off the padded
    weight of a probe graph's second convolution (20 output channels).  Cached per device."""
    import os
    import tempfile

    from onnx import TensorProto, helper

    from ..measure import make_session

    key = repr(sorted(device.to_dict().items()))
    if key in _BLOCKS:
        return _BLOCKS[key]
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((20, 16, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((20, 20, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 20, 8, 8])], [w1, w2])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    probe.ir_version = 8
    block = _NCHWC_BLOCK
    with tempfile.TemporaryDirectory(prefix="hwnas-probe-") as tmp:
        opt = os.path.join(tmp, "o.onnx")
        make_session(probe, device, optimized_path=opt, prepack=False)
        g = onnx.load(opt, load_external_data=False).graph
        dims = {i.name: list(i.dims) for i in g.initializer}
        for node in g.node:
            if node.domain == "com.microsoft.nchwc" and node.op_type == "Conv" and node.input[0] != "x":
                padded = dims.get(node.input[1], [20])[0]
                block = next((b for b in (4, 8, 16, 32) if -(-20 // b) * b == padded), _NCHWC_BLOCK)
    _BLOCKS[key] = block
    return block
