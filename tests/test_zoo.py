"""Model zoo: every family builds a valid, runnable ONNX graph; the zoo list is deterministic."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.builders.onnx_graph import IR_VERSION, OPSET
from hwnas.onnx_io import onnx_macs
from hwnas.zoo import ZooModel, families, zoo_models

FAMILIES = ("resnet", "vgg", "mobilenetv2", "shufflenet", "squeezenet", "efficientnet", "densenet", "inception",
            "resnext", "repvgg")

# Ops that make each family what it is.
FAMILY_OPS = {
    "resnet": {"Add", "Relu", "MaxPool"},
    "vgg": {"MaxPool", "Relu"},
    "mobilenetv2": {"Clip", "Add"},
    "shufflenet": {"Split", "Concat", "Reshape", "Transpose"},
    "squeezenet": {"Concat", "MaxPool"},
    "efficientnet": {"Sigmoid", "Mul", "Add"},
    "densenet": {"Concat", "BatchNormalization", "AveragePool"},
    "inception": {"Concat", "MaxPool", "Relu"},
    "resnext": {"Add", "Relu", "MaxPool"},
    "repvgg": {"Relu"},
}


def _by_family(models: list[ZooModel]) -> dict[str, list[ZooModel]]:
    out: dict[str, list[ZooModel]] = {}
    for m in models:
        out.setdefault(m.family, []).append(m)
    return out


@functools.lru_cache(maxsize=None)
def _smallest(family: str) -> tuple[ZooModel, onnx.ModelProto]:
    m = _by_family(zoo_models())[family][0]
    return m, m.build()


def test_families() -> None:
    assert families() == list(FAMILIES)
    assert set(_by_family(zoo_models())) == set(FAMILIES)


def test_zoo_models_deterministic_and_unique() -> None:
    models = zoo_models()
    assert models == zoo_models()
    assert len(models) == 6 * len(FAMILIES)
    assert len({m.name for m in models}) == len(models)
    for fam, ms in _by_family(models).items():
        assert len(ms) == 6, fam
        assert all(m.name.startswith(fam if fam != "shufflenet" else "shufflenetv2") for m in ms)
        assert all(m.description for m in ms)
    assert {m.resolution for m in models} == {112, 128, 160, 192, 224}


def test_per_family_bounds() -> None:
    small = zoo_models(1)
    assert len(small) == len(FAMILIES)
    assert [m.name for m in small] == [ms[0].name for ms in _by_family(zoo_models()).values()]
    two = _by_family(zoo_models(2))
    six = _by_family(zoo_models())
    assert all(two[f][-1] == six[f][-1] for f in FAMILIES)  # the spread always ends at the largest
    with pytest.raises(ValueError, match="per_family"):
        zoo_models(0)
    with pytest.raises(ValueError, match="per_family"):
        zoo_models(100)


@pytest.mark.parametrize("family", FAMILIES)
def test_smallest_builds_checks_and_runs(family: str) -> None:
    m, model = _smallest(family)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    r = m.resolution
    (inp,) = model.graph.input
    assert inp.name == "input"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, r, r]
    (out,) = model.graph.output
    assert out.name == "output"
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 1000]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert model.graph.node[-1].op_type == "Gemm"
    assert "GlobalAveragePool" in {n.op_type for n in model.graph.node}

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, r, r)).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == (1, 1000)
    assert np.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3  # He-style scaling keeps activations O(1)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_ops_present(family: str) -> None:
    _, model = _smallest(family)
    ops = {n.op_type for n in model.graph.node}
    missing = FAMILY_OPS[family] - ops
    assert not missing, f"{family} lacks {missing}"


def test_build_is_seeded() -> None:
    m, model = _smallest("shufflenet")
    assert m.build().SerializeToString() == model.SerializeToString()
    assert m.build(seed=1).SerializeToString() != model.SerializeToString()
    (inp,) = m.build(batch=2).graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_value == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_macs_grow_from_smallest_to_largest(family: str) -> None:
    ms = _by_family(zoo_models())[family]
    small, large = onnx_macs(ms[0].build()), onnx_macs(ms[-1].build())
    # the families with torchvision-size models (ResNet-50 at 224 px: 4.1 GMACs) go further
    assert 10e6 < small < large < (4.5e9 if family in ("resnet", "resnext", "repvgg") else 2e9)
