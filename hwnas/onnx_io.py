"""Loading any user ONNX model safely for measurement and prediction, and counting its cost.

:func:`load_onnx` turns every way a user file can be wrong into an
:class:`~hwnas.errors.InputError` with a one-line message: a missing path, a directory, an
unreadable file, bytes that are not ONNX, a graph the ONNX checker rejects, and input shapes
left dynamic.  Latency depends on the exact input shape, so a symbolic dim (a batch dim
included) is never guessed: the user fixes it with ``--input-shape NAME=1,3,224,224``
(``input_shapes`` here), and shapes are then propagated with ``onnx.shape_inference``.

:func:`onnx_macs` / :func:`node_macs` count multiply-accumulates per node from the inferred
shapes with the convention of :mod:`hwnas.cost` (convolutions and matrix products only), so
MACs and latency of any ONNX model can be compared with those of our own architectures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from .errors import InputError, first_line

SHAPE_FLAG = "--input-shape"
#: ONNX Runtime's contrib-op domain (``Attention``, ``MultiHeadAttention``, ``SkipLayerNormalization``...)
CONTRIB_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class InputInfo:
    """One graph input that must be fed: name, concrete shape, numpy dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class LoadedModel:
    """A checked model whose inputs all have concrete shapes (shape-inferred when overridden)."""

    model: onnx.ModelProto
    path: Path
    inputs: list[InputInfo] = field(default_factory=list)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {i.name: i.shape for i in self.inputs}


@dataclass(frozen=True)
class NodeMacs:
    """MACs of one node.  ``known`` is False when a shape it needs could not be inferred."""

    name: str
    op_type: str
    macs: int
    known: bool = True


# --------------------------------------------------------------------------------------------
# --input-shape strings
# --------------------------------------------------------------------------------------------


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """Parse ``NAME=D0,D1,...`` (e.g. ``input=1,3,224,224``) into ``(name, dims)``.

    The name is everything before the last ``=``; dims are positive integers.  Anything else
    raises :class:`InputError` quoting the text.
    """
    hint = "expected NAME=D0,D1,... like input=1,3,224,224"
    if not isinstance(text, str) or "=" not in text:
        raise InputError(f"bad {SHAPE_FLAG} {text!r}: {hint}")
    name, _, dims_text = text.strip().rpartition("=")
    name = name.strip()
    if not name:
        raise InputError(f"bad {SHAPE_FLAG} {text!r}: the input name before '=' is empty; {hint}")
    parts = [p.strip() for p in dims_text.split(",")]
    if not dims_text.strip() or any(p == "" for p in parts):
        raise InputError(f"bad {SHAPE_FLAG} {text!r}: empty dimension; {hint}")
    dims: list[int] = []
    for p in parts:
        if not re.fullmatch(r"[+-]?[0-9]+", p):  # ASCII digits only (int() takes any Unicode digit, '_')
            raise InputError(f"bad {SHAPE_FLAG} {text!r}: dimension {p!r} is not an integer; {hint}")
        d = int(p)
        if d <= 0:
            raise InputError(f"bad {SHAPE_FLAG} {text!r}: dimension {d} must be positive")
        if d >= 2**63:  # an ONNX dim is an int64
            raise InputError(f"bad {SHAPE_FLAG} {text!r}: dimension {d} is too large")
        dims.append(d)
    return name, dims


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def check_path(p: Path) -> None:
    """The checks of a model file that need no parsing: it exists, is a file, is readable, is
    not empty.  :class:`InputError` naming the problem, else nothing."""
    if not p.exists():
        raise InputError(f"ONNX file not found: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an ONNX file")
    try:
        with p.open("rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(f"cannot read {p}: permission denied") from None
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror or e}") from None
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty, not an ONNX model")


def _read_model(p: Path) -> onnx.ModelProto:
    check_path(p)
    try:
        model = onnx.load(str(p))
    except DecodeError:
        raise InputError(f"{p} is not an ONNX model (it does not parse as an ONNX protobuf)") from None
    except (FileNotFoundError, PermissionError) as e:  # external data files
        raise InputError(f"cannot load {p}: external data {e.filename or ''} is missing or unreadable") from None
    except Exception as e:  # noqa: BLE001 - onnx raises assorted types on corrupt files
        raise InputError(f"{p} is not a readable ONNX model ({type(e).__name__}: {first_line(e)})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise InputError(f"{p} is not an ONNX model (no IR version, graph or opset)")
    return model


def _check(model: onnx.ModelProto, p: Path, modified: bool = False) -> None:
    """The ONNX checker on the file as saved (C++ reads it: no Python serialization, which costs
    ~100 ms on a 100 MB model), or on the proto when input shapes were overridden in memory."""
    try:
        if not modified or any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer) \
                or model.ByteSize() > 2**31 - 1:
            onnx.checker.check_model(str(p))
        else:
            onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - ValidationError and protobuf errors
        raise InputError(f"{p} is not a valid ONNX graph: {first_line(e)}") from None


def _dims(vi: onnx.ValueInfoProto) -> list[int | str] | None:
    """Dims of a tensor value: ints, symbol names, or ``"?"`` for unknown; None if rank unknown."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    out: list[int | str] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append("?")
    return out


def _fmt(dims: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _example(name: str, dims: Sequence[int | str] | None) -> str:
    if dims is None:
        return f"{SHAPE_FLAG} {name}=1,3,224,224"
    ex = [str(d) if isinstance(d, int) else ("1" if i == 0 else "224") for i, d in enumerate(dims)]
    return f"{SHAPE_FLAG} {name}={','.join(ex) or '1'}"


def _feed_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that must be fed (IR < 4 models also list initializers as inputs)."""
    inits = {t.name for t in model.graph.initializer} | {t.values.name for t in model.graph.sparse_initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _apply_overrides(
    model: onnx.ModelProto, feeds: list[onnx.ValueInfoProto], overrides: dict[str, list[int]], p: Path
) -> None:
    by_name = {vi.name: vi for vi in feeds}
    for name, shape in overrides.items():
        if name not in by_name:
            names = ", ".join(repr(n) for n in by_name) or "none"
            raise InputError(f"{SHAPE_FLAG} names input {name!r}, but {p.name} has no such input (inputs: {names})")
        shape = [int(d) for d in shape]
        if any(d <= 0 for d in shape):
            raise InputError(f"{SHAPE_FLAG} for input {name!r}: dims must be positive, got {shape}")
        vi = by_name[name]
        dims = _dims(vi)
        if dims is not None:
            if len(dims) != len(shape):
                raise InputError(
                    f"{SHAPE_FLAG} for input {name!r} has {len(shape)} dims {shape} but the model's input has "
                    f"rank {len(dims)} {_fmt(dims)}"
                )
            for i, (d, s) in enumerate(zip(dims, shape)):
                if isinstance(d, int) and d != s:
                    raise InputError(
                        f"{SHAPE_FLAG} for input {name!r} sets dim {i} to {s}, but the model fixes it to {d} "
                        f"in shape {_fmt(dims)}"
                    )
        tt = vi.type.tensor_type
        tt.ClearField("shape")
        for s in shape:
            tt.shape.dim.add().dim_value = s


def load_onnx(path: str | Path, input_shapes: dict[str, list[int]] | None = None) -> LoadedModel:
    """Load, check and fix the input shapes of an ONNX model.

    ``input_shapes`` maps an input name to its full concrete shape; it may only fill symbolic
    or unknown dims (a static dim must match).  After overrides, ``onnx.shape_inference`` is
    run so intermediate shapes are concrete.  Every problem raises :class:`InputError`.
    """
    p = Path(path)
    model = _read_model(p)
    feeds = _feed_inputs(model)
    for vi in feeds:
        if vi.type.WhichOneof("value") != "tensor_type":
            kind = vi.type.WhichOneof("value")
            raise InputError(f"input {vi.name!r} of {p.name} is not a tensor ({kind}); unsupported")
    if input_shapes:
        _apply_overrides(model, feeds, dict(input_shapes), p)
    problems = []
    for vi in feeds:
        dims = _dims(vi)
        if dims is None:
            problems.append(f"input {vi.name!r} has no shape; pass {_example(vi.name, None)}")
        elif any(not isinstance(d, int) for d in dims):
            sym = ", ".join(str(d) for d in dims if not isinstance(d, int))
            problems.append(
                f"input {vi.name!r} has dynamic dims {sym} in shape {_fmt(dims)}; pass {_example(vi.name, dims)}"
            )
    if problems:
        raise InputError("unresolved dynamic input shape: " + "; ".join(problems))
    _check(model, p, modified=bool(input_shapes))
    if input_shapes:
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception as e:  # noqa: BLE001 - InferenceError and friends
            msg = f"shape inference failed on {p.name} with the given {SHAPE_FLAG}: {first_line(e)}"
            raise InputError(msg) from None
    inputs = []
    for vi in _feed_inputs(model):
        elem = vi.type.tensor_type.elem_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
        except Exception:  # noqa: BLE001
            raise InputError(f"input {vi.name!r} of {p.name} has unsupported element type {elem}") from None
        inputs.append(InputInfo(vi.name, tuple(int(d) for d in _dims(vi) or ()), dtype))
    return LoadedModel(model=model, path=p, inputs=inputs)


#: the most bytes hwnas draws for one set of model inputs (a measurement feed, int8 calibration
#: batches): 1 GiB, e.g. a batch of ~1,700 images of 3x224x224 in fp32
MAX_FEED_BYTES = 1 << 30


def check_feed_size(inputs: Sequence[tuple[str, Sequence[int], np.dtype]], copies: int = 1,
                    what: str = "model inputs") -> None:
    """InputError, before anything is allocated, when ``copies`` feeds of ``inputs`` (name, shape,
    dtype) would take more than :data:`MAX_FEED_BYTES`; it names the largest input."""
    sizes = [(math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize, name, tuple(shape), np.dtype(dtype))
             for name, shape, dtype in inputs]
    total = copies * sum(s[0] for s in sizes)
    if total > MAX_FEED_BYTES:
        n, name, shape, dtype = max(sizes)
        raise InputError(
            f"{what} of {total / 1e9:.3g} GB are over the {MAX_FEED_BYTES / 2**30:g} GiB hwnas draws for one run "
            f"(input {name!r}: {'x'.join(map(str, shape))} {dtype}); use a smaller batch_size or {SHAPE_FLAG}"
        )


def seeded_normal(rng: np.random.Generator, shape: Sequence[int], dtype) -> np.ndarray:
    """Standard-normal values drawn in ``dtype`` itself (float16 through float32): no float64
    array, twice the size of a float32 feed, on the way."""
    dt = np.dtype(dtype)
    draw = dt if dt in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float32)
    return rng.standard_normal(tuple(shape), dtype=draw).astype(dt, copy=False)


def random_inputs(loaded: LoadedModel, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded feed: float inputs standard normal, integer and bool inputs zeros."""
    check_feed_size([(i.name, i.shape, i.dtype) for i in loaded.inputs])
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for inp in loaded.inputs:
        if np.issubdtype(inp.dtype, np.floating):
            feed[inp.name] = seeded_normal(rng, inp.shape, inp.dtype)
        else:
            feed[inp.name] = np.zeros(inp.shape, dtype=inp.dtype)
    return feed


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------

# op type -> index of the weight input.  Conv-like MACs = out elements * prod(weight dims 1:).
_CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}
# op type -> (A index, B index) of matrix products.
_MATMUL_AB = {"MatMul": (0, 1), "FusedMatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}


def _shape_table(model: onnx.ModelProto) -> dict[str, list[int | str] | None]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - keep whatever shapes the model already carries
        inferred = model
    g = inferred.graph
    table: dict[str, list[int | str] | None] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        table[vi.name] = _dims(vi)
    for t in g.initializer:
        table[t.name] = [int(d) for d in t.dims]
    return table


def _concrete(dims: list[int | str] | None) -> list[int] | None:
    if dims is None or any(not isinstance(d, int) for d in dims):
        return None
    return [int(d) for d in dims]


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int | str] | None]) -> tuple[int, bool]:
    def shape(i: int, outputs: bool = False) -> list[int] | None:
        names = node.output if outputs else node.input
        return _concrete(shapes.get(names[i])) if i < len(names) and names[i] else None

    op = node.op_type
    if op in _CONV_WEIGHT:
        w, y = shape(_CONV_WEIGHT[op]), shape(0, outputs=True)
        if w is None or y is None:
            return 0, False
        return math.prod(y) * math.prod(w[1:]), True
    if op == "ConvTranspose":
        x, w = shape(0), shape(1)
        if x is None or w is None:
            return 0, False
        return math.prod(x) * math.prod(w[1:]), True  # every input pixel scatters (Cout/g)*k*k MACs
    if op in _MATMUL_AB:
        ia, _ = _MATMUL_AB[op]
        a, y = shape(ia), shape(0, outputs=True)
        if a is None or y is None or not a:
            return 0, False
        if op == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            k = a[0] if trans_a else a[1]
        else:
            k = a[-1]
        return math.prod(y) * k, True
    return 0, True


def node_macs(model: onnx.ModelProto) -> list[NodeMacs]:
    """MACs of every node of the main graph, in graph order.

    Conv (and FusedConv / ConvInteger / QLinearConv): output elements * (Cin / groups) * kH * kW.
    ConvTranspose: input elements * (Cout / groups) * kH * kW.  Gemm / MatMul: M * N * K
    (batched MatMul: every output element costs K).  Other ops: 0.  Shapes come from
    ``onnx.shape_inference``; a node whose shapes stay unknown counts 0 with ``known=False``.
    Subgraphs (If / Loop bodies) are not counted.
    """
    shapes = _shape_table(model)
    out = []
    for i, node in enumerate(model.graph.node):
        macs, known = _node_macs(node, shapes)
        out.append(NodeMacs(node.name or f"{node.op_type}_{i}", node.op_type, int(macs), known))
    return out


def onnx_macs(model: onnx.ModelProto) -> int:
    """Total MACs of the model for its input shapes (see :func:`node_macs`)."""
    return sum(n.macs for n in node_macs(model))


def onnx_params(model: onnx.ModelProto) -> int:
    """Number of values in all initializers (weights, biases and any constant tensors)."""
    total = sum(math.prod(int(d) for d in t.dims) for t in model.graph.initializer)
    total += sum(math.prod(int(d) for d in t.values.dims) for t in model.graph.sparse_initializer)
    return int(total)
