"""Post-fusion kernels of any ONNX model, and the features a kernel-level predictor reads.

ONNX Runtime does the fusion for us: the model is optimized with the device's settings and
run **once** with the profiler on, which yields every kernel ORT really executes (``FusedConv``,
NCHWc ``Conv`` with a fused activation and residual, ``ReorderInput`` ...) with its shapes.
Durations from that run are discarded: nothing here is a latency measurement.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import onnx

from ..allocator import tune_if_wanted
from ..devices import DeviceSpec
from ..measure import (KernelRecord, make_session, optimized_node_attributes, parse_kernel_trace, random_feed,
                       static_input_shapes)

FAMILIES = ("conv", "dwconv", "pwconv", "gconv", "gemm", "pool", "globalpool", "activation", "elementwise",
            "concat", "memory", "reorder", "batchnorm", "quantize", "layernorm", "attention")

_ACTIVATIONS = {"Relu", "HardSwish", "HardSigmoid", "Sigmoid", "QuickGelu", "Clip", "Tanh", "LeakyRelu", "Gelu",
                "Softmax", "Erf", "Elu", "Selu", "Swish", "Silu", "PRelu", "Softplus"}
_ELEMENTWISE = {"Add", "Mul", "Sub", "Div", "Sum", "Max", "Min", "Pow", "Sqrt", "Neg", "Abs", "Exp", "Log"}
_MEMORY = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Split", "Slice", "Gather",
           "Pad", "Expand", "Tile", "Cast", "Shape", "DepthToSpace", "SpaceToDepth", "Resize", "Upsample"}
_POOL = {"MaxPool", "AveragePool", "LpPool"}
_GLOBALPOOL = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"}
_GEMM = {"Gemm", "MatMul", "FusedMatMul", "FusedGemm"}
_CONV = {"Conv", "FusedConv", "ConvTranspose"}

#: a stable code per op type, so one family's regressor can tell Reshape (often free) from
#: Transpose (a copy), Add from Mul, MaxPool from AveragePool...
OP_CODES = {op: i for i, op in enumerate(sorted(
    _CONV | _GEMM | _POOL | _GLOBALPOOL | _ACTIVATIONS | _ELEMENTWISE | _MEMORY
    | {"Concat", "ReorderInput", "ReorderOutput", "BatchNormalization"}))}

#: int8 kernels (QDQ models after ORT's fusion): the float op each computes and where its
#: float-layout inputs sit among the quantized op's inputs (scales and zero points skipped).
#: ``None``: inputs come in (tensor, scale, zero point) triples after (y_scale, y_zero_point).
_QUANTIZED = {
    "QLinearConv": ("Conv", (0, 3, 8)),
    "ConvInteger": ("Conv", (0, 1)),
    "QLinearMatMul": ("MatMul", (0, 3)),
    "MatMulInteger": ("MatMul", (0, 1)),
    "MatMulIntegerToFloat": ("MatMul", (0, 1)),
    "DynamicQuantizeMatMul": ("MatMul", (0, 1)),
    "QGemm": ("Gemm", (0, 3, 6)),
    "QLinearAdd": ("Add", (0, 3)),
    "QLinearMul": ("Mul", (0, 3)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,)),
    "QLinearAveragePool": ("AveragePool", (0,)),
    "QLinearReduceMean": ("ReduceMean", (0,)),
    "QLinearSigmoid": ("Sigmoid", (0,)),
    "QLinearLeakyRelu": ("LeakyRelu", (0,)),
    "QLinearSoftmax": ("Softmax", (0,)),
    "QLinearConcat": ("Concat", None),
}
_QUANTIZE = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
#: int8 kernels that always work channels-last (no ``channels_last`` attribute says so)
_ALWAYS_NHWC = {"NhwcMaxPool"}
_QUANTIZED["NhwcMaxPool"] = ("MaxPool", (0,))
# new op codes go after the existing ones, in the order they were added: saved predictors keep
# their meaning
for _op in (*[q for q in _QUANTIZED if q not in _ALWAYS_NHWC], *sorted(_QUANTIZE), "NhwcMaxPool"):
    OP_CODES.setdefault(_op, len(OP_CODES))
#: transformer kernels ORT runs on CPU (after its fusions: Gelu from the erf form, BiasGelu,
#: FastGelu from the tanh form, SkipLayerNormalization from Add + LayerNormalization)
_LAYERNORM = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
              "SkipSimplifiedLayerNormalization"}
_TRANSFORMER_ACTIVATIONS = {"BiasGelu", "FastGelu"}
_ACTIVATIONS |= _TRANSFORMER_ACTIVATIONS
for _op in (*sorted(_LAYERNORM), *sorted(_TRANSFORMER_ACTIVATIONS)):
    OP_CODES.setdefault(_op, len(OP_CODES))
#: windowed ops of older CNNs in the pool family (a reduction over a window, like a pool):
#: ``LRN`` sums ``size`` squares across channels per element (its MACs), then a power.  Not in
#: ``_POOL``: that set's codes were numbered in sorted order, so a new op there would renumber them
_WINDOWED = {"LRN"}
OP_CODES.setdefault("LRN", len(OP_CODES))
#: fused self-attention, ORT's contrib ops (graphs fused by ``onnxruntime.transformers``' optimizer or
#: an exporter): a family of their own, MACs of the Q/K/V projection (``Attention``) and of
#: Q K^T and A V over all heads
_ATTENTION = {"Attention", "MultiHeadAttention"}
for _op in sorted(_ATTENTION):
    OP_CODES.setdefault(_op, len(OP_CODES))
#: op types a family covers since a later version: a predictor fitted before (it never saw
#: one) prices them with its bytes-moved fallback and says so, as it did then
LATE_COVERED = frozenset(_WINDOWED | _ATTENTION)


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _with_prepacked_weight(op_type: str, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]],
                           attributes: dict) -> list[tuple[int, ...]]:
    """The inputs of a float matrix product with its constant weight put back where ORT pre-packed
    it.  A timed (pre-packing) session's profiler omits a pre-packed ``B``: ``Gemm`` shows
    ``(A, C)``, ``MatMul`` ``(A,)``; the untimed shape pass (pre-packing off, and the static
    propagator) shows ``(A, B, C)``.  Both must give one kernel the same features, or the trees
    learn matrix products without their weights and price them with."""
    if op_type not in _GEMM or not ins or not outs or not ins[0] or not outs[0]:
        return ins
    a, y = ins[0], outs[0]
    k, n = _inner_dim(a, attributes), int(y[-1])
    b = (n, k) if attributes.get("transB") else (k, n)
    if op_type in ("Gemm", "FusedGemm") and (len(ins) == 1 or (len(ins) == 2 and len(ins[1]) <= 1)):
        return [a, b, *ins[1:]]
    if op_type in ("MatMul", "FusedMatMul") and len(ins) == 1:
        return [a, b]
    return ins


def _attention_inputs(op_type: str, ins: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """``Attention``'s inputs with its pre-packed Q/K/V weight put back: the timed session's profiler
    shows ``(input, bias[, mask...])``, the untimed shape pass ``(input, weight, bias[, mask...])``;
    the weight is ``C x (bias length)``."""
    if op_type == "Attention" and len(ins) >= 2 and len(ins[0]) == 3 and len(ins[1]) == 1:
        return [ins[0], (ins[0][-1], ins[1][0]), *ins[1:]]
    return ins


def _attention_geometry(op_type: str, ins: Sequence[Sequence[int]], attributes: dict | None
                        ) -> tuple[int, int, int, int, int, int] | None:
    """(batch, query tokens T, key tokens S, Q/K width, V width, heads) of a fused attention kernel,
    or None for a layout it does not know (packed or past-state inputs: uncovered, priced by the fallback)."""
    heads = int((attributes or {}).get("num_heads", 1) or 1)
    if not ins or len(ins[0]) != 3:
        return None
    b, t, c = (int(v) for v in ins[0])
    if op_type == "Attention":
        sizes = [int(v) for v in (attributes or {}).get("qkv_hidden_sizes") or []]
        total = int(ins[1][-1]) if len(ins) > 1 and ins[1] else 3 * c
        qk, v = (sizes[0], sizes[2]) if len(sizes) == 3 else (total // 3, total // 3)
        return b, t, t, qk, v, heads
    if op_type == "MultiHeadAttention" and len(ins) >= 3:
        k, v = ins[1], ins[2]
        if len(k) == 3 and len(v) == 3:
            return b, t, int(k[1]), c, int(v[2]), heads
        if len(k) == 4 and len(v) == 4:  # (batch, heads, S, head size)
            return b, t, int(k[2]), int(k[1] * k[3]), int(v[1] * v[3]), heads
    return None


def float_layout(op_type: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]] = (),
                 attributes: dict | None = None) -> tuple[str, list[tuple[int, ...]], list[tuple[int, ...]], int]:
    """(float op type, input shapes, output shapes, bytes per activation element) of a kernel.

    int8 kernels are mapped onto the float op they compute: scale and zero-point inputs are
    dropped, channels-last shapes turned to NCHW, and weights ORT pre-packed (the profiler then
    shows no weight shape) rebuilt from the attributes."""
    ins = [tuple(s) for s in input_shapes]
    outs = [tuple(s) for s in output_shapes]
    attributes = attributes or {}
    if op_type not in _QUANTIZED:
        return op_type, _attention_inputs(op_type, _with_prepacked_weight(op_type, ins, outs, attributes)), outs, 4
    base, idx = _QUANTIZED[op_type]
    picked = ins[2::3] if idx is None else [ins[i] for i in idx if i < len(ins)]
    if attributes.get("channels_last") or op_type in _ALWAYS_NHWC:
        picked = [_nchw(s) for s in picked]
        outs = [_nchw(s) for s in outs]
    if base == "Conv" and picked and outs and len(picked[0]) == 4 and len(outs[0]) == 4:
        ks = list(attributes.get("kernel_shape") or [1, 1])
        group = int(attributes.get("group", 1) or 1)
        w = (outs[0][1], picked[0][1] // max(group, 1), *ks)
        picked = [picked[0], w, *([(outs[0][1],)] if len(picked) > 2 else [])]
    elif base in ("Gemm", "MatMul") and picked and outs and picked[0] and outs[0]:
        picked = [picked[0], (outs[0][-1], picked[0][-1])]
    return base, picked, outs, 1


FEATURE_NAMES = (
    "op_code", "log_out_elems", "log_in_elems", "log_macs", "log_weight_elems", "log_bytes", "log_intensity",
    "in_ch", "out_ch", "log_in_hw", "log_out_hw", "kernel", "stride", "log_groups", "has_activation",
    "has_residual", "n_inputs",
    # a matrix-product view of every kernel (appended later: predictors saved before them read the
    # first 17 only): rows x inner -> cols per matrix, times ``mats`` matrices.  gemm / MatMul:
    # M, K, N and the batched matrices (attention's heads; 1 when the second operand is a weight);
    # convolutions: output pixels, input channels per group x kernel area, output channels per
    # group, groups; row-wise ops (LayerNorm, Softmax, activations): rows = all but the last axis,
    # inner = the last axis
    "log_rows", "log_inner", "log_cols", "log_mats",
    # the kind of activation ORT fused into a Conv / Gemm (appended later still: predictors saved
    # before it read the first 21 only): has_activation alone let a ReLU6 (Clip) pass for a Relu,
    # yet on a memory-bound depthwise convolution here Clip costs ~1.4x what Relu does (0.076 vs
    # 0.054 ms, same shape, in-model)
    "fused_act",
)
#: features of predictors saved before the matrix-product view existed
N_FEATURES_V1 = 17
#: ... and before the fused activation's kind existed
N_FEATURES_V2 = 21

#: fused activation -> feature value, ordered roughly by what the fused pass costs: none; Relu
#: (applied inside MLAS's convolution kernels); cheap element-wise passes; passes with an exp
FUSED_ACTIVATION_CODES = {"": 0, "Relu": 1, "Clip": 2, "LeakyRelu": 3, "HardSigmoid": 4, "HardSwish": 5,
                          "Sigmoid": 6, "Tanh": 7}
#: a fused activation not in FUSED_ACTIVATION_CODES
OTHER_FUSED_ACTIVATION = 8


@dataclass(frozen=True)
class KernelRow:
    """One kernel, featurized.  ``work`` normalizes the regression target (MACs or bytes)."""

    family: str
    op_type: str
    name: str
    features: tuple[float, ...]
    work: float


def _prod(shape: Sequence[int]) -> int:
    return math.prod(map(int, shape))


def kernel_family(op_type: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]] = (),
                  attributes: dict | None = None) -> str | None:
    """The family a post-fusion kernel belongs to, or ``None`` when no family covers it."""
    if op_type in _QUANTIZE:
        return "quantize"
    op_type, input_shapes, _, _ = float_layout(op_type, input_shapes, output_shapes, attributes)
    if op_type in _CONV:
        if len(input_shapes) < 2 or len(input_shapes[0]) != 4 or len(input_shapes[1]) != 4:
            return "conv"
        cin = input_shapes[0][1]
        w = input_shapes[1]
        groups = max(1, cin // max(1, w[1]))
        if groups > 1 and groups == cin:
            return "dwconv"
        if groups > 1:
            return "gconv"
        if w[2] == 1 and w[3] == 1:
            return "pwconv"
        return "conv"
    if op_type in _GEMM:
        return "gemm"
    if op_type in _POOL or op_type in _WINDOWED:
        return "pool"
    if op_type in _GLOBALPOOL:
        return "globalpool"
    if op_type in _ACTIVATIONS:
        return "activation"
    if op_type in _ELEMENTWISE:
        return "elementwise"
    if op_type == "Concat":
        return "concat"
    if op_type in _MEMORY:
        return "memory"
    if op_type in ("ReorderInput", "ReorderOutput"):
        return "reorder"
    if op_type == "BatchNormalization":
        return "batchnorm"
    if op_type in _LAYERNORM:
        return "layernorm"
    if op_type in _ATTENTION:  # a layout the MACs count does not know (packed, past state): uncovered, named
        return "attention" if _attention_geometry(op_type, input_shapes, attributes) is not None else None
    return None


def kernel_macs(op_type: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]],
                attributes: dict | None = None) -> int:
    out = _prod(output_shapes[0]) if output_shapes else 0
    if op_type in _CONV and len(input_shapes) >= 2 and len(input_shapes[1]) >= 3:
        return out * _prod(input_shapes[1][1:])
    if op_type in _GEMM and input_shapes and input_shapes[0]:
        return out * _inner_dim(input_shapes[0], attributes)
    if op_type == "LRN":  # a window of ``size`` squares summed per output element
        return out * int((attributes or {}).get("size", 1))
    if op_type in _ATTENTION:
        geo = _attention_geometry(op_type, input_shapes, attributes)
        if geo is None:
            return 0
        b, t, s, qk, v, _ = geo
        proj = b * t * int(input_shapes[0][-1]) * int(input_shapes[1][-1]) if op_type == "Attention" and \
            len(input_shapes) > 1 and len(input_shapes[1]) == 2 else 0
        return proj + b * t * s * (qk + v)
    return 0


def _inner_dim(a_shape: Sequence[int], attributes: dict | None) -> int:
    """K of a matrix product whose first operand has ``a_shape`` (``transA`` reads it transposed)."""
    if (attributes or {}).get("transA") and len(a_shape) >= 2:
        return int(a_shape[-2])
    return int(a_shape[-1])


def _matrix_view(fam: str, ins: Sequence[Sequence[int]], outs: Sequence[Sequence[int]], attributes: dict,
                 groups: int, op_type: str = "") -> tuple[float, float, float, float]:
    """(rows, inner, cols, mats) of a kernel: see FEATURE_NAMES."""
    x = ins[0] if ins else ()
    y = outs[0] if outs else ()
    if fam == "gemm" and len(x) >= 1 and len(y) >= 1:
        b = ins[1] if len(ins) > 1 else ()
        mats = _prod(y[:-2]) if len(b) >= 3 and len(y) >= 3 else 1
        return _prod(y[:-1]) / max(mats, 1), _inner_dim(x, attributes), y[-1], mats
    if fam in ("conv", "dwconv", "pwconv", "gconv") and len(y) == 4 and len(ins) >= 2 and len(ins[1]) == 4:
        w = ins[1]
        return y[0] * y[2] * y[3], w[1] * w[2] * w[3], y[1] / groups, groups
    if fam == "attention":  # per head: query tokens x head width -> key tokens, times batch x heads
        geo = _attention_geometry(op_type, ins, attributes)
        if geo is not None:
            b, t, s, qk, _, heads = geo
            return t, qk / max(heads, 1), s, b * heads
    if len(x) >= 2:
        return _prod(x[:-1]), x[-1], 0, 0
    return 0, 0, 0, 0


def _as_global_pool(op_type: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]]) -> str:
    """``ReduceMean`` / ``ReduceMax`` over all the spatial axes of an NCHW map (how torch's dynamo
    exporter writes a global pool) is the global pool ORT also runs for ``GlobalAveragePool``:
    same op code, so both exports of one network are priced alike.  Other reductions (over
    tokens, over channels) keep their own code."""
    if op_type not in ("ReduceMean", "ReduceMax") or not input_shapes or not output_shapes:
        return op_type
    x, y = tuple(input_shapes[0]), tuple(output_shapes[0])
    if len(x) == 4 and x[2] * x[3] > 1 and y in ((x[0], x[1], 1, 1), (x[0], x[1])):
        return "GlobalAveragePool" if op_type == "ReduceMean" else "GlobalMaxPool"
    return op_type


def featurize(op_type: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]],
              attributes: dict, name: str = "") -> KernelRow | None:
    fam = kernel_family(op_type, input_shapes, output_shapes, attributes)
    if fam is None:
        return None
    code = float(OP_CODES.get(_as_global_pool(op_type, input_shapes, output_shapes), -1))
    op_type, ins, outs, elem_bytes = float_layout(op_type, input_shapes, output_shapes, attributes)
    x = ins[0] if ins else ()
    y = outs[0] if outs else ()
    in_sizes = [_prod(s) for s in ins]
    out_sizes = [_prod(s) for s in outs]
    out_elems = out_sizes[0] if y else 0
    in_elems = in_sizes[0] if x else 0
    macs = kernel_macs(op_type, ins, outs, attributes)
    is_weighted = fam in ("conv", "dwconv", "pwconv", "gconv", "gemm")
    weight_elems = sum(in_sizes[1:]) if is_weighted else 0
    # Attention's Q/K/V weight and bias; MultiHeadAttention's inputs are activations.  The n_inputs feature
    # counts three at most: an exporter's mask input leaves a kernel looking like the campaign's unmasked one
    if fam == "attention":
        weight_elems = sum(in_sizes[1:3]) if op_type == "Attention" else 0
        is_weighted = True  # its work is its MACs
    act_elems = sum(in_sizes) - weight_elems + sum(out_sizes)
    nbytes = float(elem_bytes) * (act_elems + weight_elems)
    in_ch = x[1] if len(x) >= 2 else (x[-1] if x else 0)
    out_ch = y[1] if len(y) >= 2 else 0
    in_hw = x[2] * x[3] if len(x) == 4 else 1
    out_hw = y[2] * y[3] if len(y) == 4 else 1
    kernel, stride, groups = 0, 1, 1
    if fam in ("conv", "dwconv", "pwconv", "gconv") and len(ins) >= 2 and len(ins[1]) == 4:
        kernel = ins[1][2]
        groups = max(1, in_ch // max(1, ins[1][1]))
        stride = int(attributes.get("strides", [0])[0]) or (round(math.sqrt(in_hw / max(out_hw, 1))) or 1)
    elif fam == "pool":
        ks = attributes.get("kernel_shape") or [attributes.get("size", 0)]  # LRN: its window, across channels
        kernel = int(ks[0])
        stride = int((attributes.get("strides") or [1])[0])
    has_act = float(bool(attributes.get("activation")) or fam == "activation")
    has_res = float(fam in ("conv", "pwconv", "dwconv", "gconv") and len(ins) >= 4)
    feats = (
        code, math.log2(out_elems + 1), math.log2(in_elems + 1), math.log2(macs + 1), math.log2(weight_elems + 1),
        math.log2(nbytes + 1), math.log2((macs + 1) / (nbytes + 1)),
        float(in_ch), float(out_ch), math.log2(in_hw), math.log2(out_hw), float(kernel), float(stride),
        math.log2(groups), has_act, has_res, float(min(len(ins), 3) if fam == "attention" else len(ins)),
        *(math.log2(v + 1) for v in _matrix_view(fam, ins, outs, attributes, groups, op_type)),
        float(FUSED_ACTIVATION_CODES.get(str(attributes.get("activation") or ""), OTHER_FUSED_ACTIVATION)),
    )
    work = float(macs) if is_weighted else nbytes
    return KernelRow(fam, op_type, name, feats, max(work, 1.0))


def featurize_records(records: Iterable[KernelRecord]) -> tuple[list[KernelRow], list[KernelRecord]]:
    """Featurized rows, and the records no family covers."""
    rows, uncovered = [], []
    for r in records:
        row = featurize(r.op_type, r.input_shapes, r.output_shapes, r.attributes, r.node_name)
        if row is None:
            uncovered.append(r)
        else:
            rows.append(row)
    return rows, uncovered


def records_from_frame(df) -> list[KernelRecord]:
    """Kernel records as stored in a profile (``Profile.kernel_records``)."""
    out = []
    for r in df.itertuples(index=False):
        out.append(KernelRecord(r.node_name, r.op_type, r.domain, tuple(tuple(s) for s in r.input_shapes),
                                tuple(tuple(s) for s in r.output_shapes), r.attributes, float(r.duration_ms),
                                int(r.node_index)))
    return out


def _scratch_dir() -> str | None:
    """Memory-backed scratch space where there is one: ORT writes every weight of the optimized
    graph out, and on disk that write cost more than the optimization itself (136-322 ms vs
    83 ms for a 48 MB model here)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


SCRATCH_PREFIX = "hwnas-opt-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True


def sweep_scratch(scratch_dir: str | None = None) -> list[str]:
    """Remove scratch folders left by processes that died mid-prediction (``kill -9`` skips the
    cleanup; in ``/dev/shm`` that is tens of MB of RAM).  A folder is named
    ``hwnas-opt-<pid>-<random>``; those whose pid is no longer running, and that this user may
    remove, go.  Returns the removed paths."""
    base = scratch_dir or _scratch_dir() or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(SCRATCH_PREFIX):
            continue
        pid = e.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e.path)
    return removed


_SWEPT = False


@contextlib.contextmanager
def _scratch() -> Iterator[str]:
    """A scratch folder, removed in the background once done with: freeing a big model's
    optimized weights (tens of MB) costs milliseconds the caller need not wait for.  The thread
    is not a daemon, so the interpreter waits for it at exit and nothing is left behind.  The
    first one of a process also sweeps up dead processes' leftovers (:func:`sweep_scratch`)."""
    global _SWEPT
    base = _scratch_dir()
    if not _SWEPT:
        _SWEPT = True
        sweep_scratch(base)
    tmp = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base)
    try:
        yield tmp
    finally:
        threading.Thread(target=shutil.rmtree, args=(tmp,), kwargs={"ignore_errors": True},
                         name="hwnas-scratch-cleanup").start()


def optimized_kernels(model: onnx.ModelProto | bytes | str, device: DeviceSpec, static: bool = True) -> list[KernelRecord]:
    """The post-fusion kernels ORT runs for ``model`` under ``device``'s settings.

    ORT optimizes the graph and saves it; shapes are then propagated over the saved graph
    (:mod:`hwnas.predictors.static_shapes`), no run needed.  Where some shape cannot be derived
    that way (``static=False``, an op without a rule, int8 kernels), the model runs once, untimed,
    under ORT's profiler, which reports every kernel's shapes."""
    from ..device_graph import device_graph
    from .static_shapes import nchwc_block, static_kernels

    model = device_graph(model, device)
    tune_if_wanted()  # opt-in: see hwnas.allocator
    with _scratch() as tmp:
        opt = os.path.join(tmp, "optimized.onnx")
        if static:
            # weights are not pre-packed: this session never runs, and packing is most of its start-up
            sess = make_session(model, device, optimized_path=opt, prepack=False)
            recs = static_kernels(opt, static_input_shapes(sess), nchwc_block(device))
            if recs is not None:
                return recs
        sess = make_session(model, device, profile_prefix=os.path.join(tmp, "trace"), optimized_path=opt,
                            prepack=False)
        sess.run(None, random_feed(sess, 0))
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
        attrs = optimized_node_attributes(opt)
    return parse_kernel_trace(events, attrs, skip_runs=0)
