"""The same network exported the ways users export it gets the same kernel prediction (within 2%).

ORT optimizes every variant to the same kernels (batch norm folded or not, Identity / Dropout
left in, Flatten or Reshape heads, Gemm or MatMul + Add, opset 13 or 17, legacy or dynamo
exporter), and the kernel predictor reads those kernels, not the exported graph."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from hwnas.predictors import load_predictor
from hwnas.space import SearchSpace


@pytest.fixture(scope="module")
def kernel_predictor():
    return load_predictor(None, "kernel")


@pytest.fixture(scope="module")
def net():
    from hwnas.builders.torch_model import build_torch

    arch = SearchSpace().sample(np.random.default_rng(3))
    arch = type(arch).parse(str(arch).replace(f"r{arch.resolution}_", "r128_", 1))
    return build_torch(arch).eval(), torch.randn(1, 3, 128, 128)


def _export(model, x, **kw) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, input_names=["input"], output_names=["output"], **kw)
    return onnx.load_from_string(f.getvalue())


def _with_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """An ``Identity`` after every ``Relu`` / ``HardSwish`` (what some exporters leave in)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in m.graph.node:
        nodes.append(n)
        if n.op_type in ("Relu", "HardSwish") and n.output[0] not in [o.name for o in m.graph.output]:
            raw = n.output[0] + "_raw"
            for other in m.graph.node:
                for i, name in enumerate(other.input):
                    if name == n.output[0]:
                        other.input[i] = raw
            nodes.append(helper.make_node("Identity", [n.output[0]], [raw], name=n.name + "_identity"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def _matmul_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier's ``Gemm`` (transB) as ``MatMul`` + ``Add``, and ``Flatten`` as ``Reshape``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        if n.op_type == "Gemm":
            w = onnx.numpy_helper.to_array(inits[n.input[1]])
            m.graph.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), n.input[1] + "_t"))
            nodes += [helper.make_node("MatMul", [n.input[0], n.input[1] + "_t"], [n.output[0] + "_mm"], name=n.name + "_mm"),
                      helper.make_node("Add", [n.output[0] + "_mm", n.input[2]], [n.output[0]], name=n.name + "_bias")]
        elif n.op_type == "Flatten":
            m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat_shape"))
            nodes.append(helper.make_node("Reshape", [n.input[0], "flat_shape"], list(n.output), name=n.name))
        else:
            nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def test_legacy_exports_and_graph_variants_predict_alike(kernel_predictor, net):
    model, x = net
    base = _export(model, x, dynamo=False, opset_version=17)
    variants = {
        "opset13": _export(model, x, dynamo=False, opset_version=13),
        "bn_unfolded": _export(model, x, dynamo=False, opset_version=17, do_constant_folding=False,
                               training=torch.onnx.TrainingMode.PRESERVE),
        "identities": _with_identities(base),
        "matmul_reshape_head": _matmul_head(base),
    }
    assert any(n.op_type == "BatchNormalization" for n in variants["bn_unfolded"].graph.node)
    assert not any(n.op_type == "Gemm" for n in variants["matmul_reshape_head"].graph.node)
    ref = float(kernel_predictor.predict([base])[0])
    got = {k: float(kernel_predictor.predict([v])[0]) for k, v in variants.items()}
    for k, v in got.items():
        assert abs(v / ref - 1) <= 0.02, (k, v, ref)


@pytest.mark.slow
def test_dynamo_export_predicts_like_legacy(kernel_predictor, net):
    pytest.importorskip("onnxscript")
    model, x = net
    legacy = _export(model, x, dynamo=False, opset_version=17)
    dynamo = _export(model, x, dynamo=True, opset_version=18)
    assert {n.op_type for n in dynamo.graph.node} != {n.op_type for n in legacy.graph.node}
    a, b = (float(kernel_predictor.predict([m])[0]) for m in (legacy, dynamo))
    assert abs(b / a - 1) <= 0.02, (a, b)


class _TinyEncoder(torch.nn.Module):
    """A pre-norm transformer encoder layer written as users write one (torch ops, not the fused
    native fast path), on embedded tokens ``[batch, tokens, width]``."""

    def __init__(self, width: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
        self.fc1, self.fc2 = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


@pytest.mark.slow
def test_torch_transformer_with_dynamic_tokens_needs_a_shape_then_predicts(tmp_path):
    """A user's transformer exported with a dynamic sequence length: `hwnas predict` names
    --input-shape in a one-line error; with the shape it prices every kernel (nothing uncovered)."""
    import subprocess
    import sys

    path = tmp_path / "encoder.onnx"
    x = torch.randn(1, 50, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TinyEncoder().eval(), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["tokens"], output_names=["out"], dynamic_axes={"tokens": {1: "seq"}})

    def hwnas(*args):
        return subprocess.run([sys.executable, "-m", "hwnas", "predict", str(path), "--json", *args],
                              capture_output=True, text=True, timeout=300)

    r = hwnas()
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--input-shape" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = hwnas("--input-shape", "tokens=1,50,64", "--breakdown")
    assert r.returncode == 0, r.stderr
    assert "not covered" not in r.stderr  # no op left to the bytes fallback
    import json

    [res] = json.loads(r.stdout)
    fams = {k["family"] for k in res["kernels"]}
    assert {"gemm", "layernorm", "activation"} <= fams and res["latency_ms"] > 0
    r2 = hwnas("--input-shape", "tokens=1,100,64")
    assert r2.returncode == 0 and json.loads(r2.stdout)[0]["latency_ms"] > res["latency_ms"]


def test_a_spatial_reduce_mean_is_priced_as_the_global_pool_it_is():
    """torch's dynamo exporter writes global average pooling as ReduceMean over H and W; it costs
    what GlobalAveragePool costs (measured here, the 11 pools of one model: 0.09-0.10 ms as ReduceMean,
    0.11-0.12 ms as GlobalAveragePool, two runs each), so it gets that
    op code. A ReduceMean over tokens (a transformer's pooling) keeps its own."""
    from hwnas.predictors.kernel_features import FEATURE_NAMES, OP_CODES, featurize

    code = FEATURE_NAMES.index("op_code")
    gap = featurize("GlobalAveragePool", [(1, 64, 7, 7)], [(1, 64, 1, 1)], {})
    for out in ((1, 64, 1, 1), (1, 64)):
        rm = featurize("ReduceMean", [(1, 64, 7, 7)], [out], {})
        assert rm.features[code] == gap.features[code] == OP_CODES["GlobalAveragePool"] and rm.family == "globalpool"
    tokens = featurize("ReduceMean", [(1, 50, 64)], [(1, 64)], {})
    assert tokens.features[code] == OP_CODES["ReduceMean"]
