"""The zoo families and models added on 2026-12-01: inception, resnext (with RegNetY-like
models), repvgg, full-size ResNet / SqueezeNet variants (hwnas.zoo, hwnas.zoo_cnn_extra) and
the sealed xception and squeezenext (hwnas.zoo_sealed, hwnas.zoo_sealed_extra): every one a
valid ONNX model that runs in ORT, MACs ordered and growing with width, names unique, the
sealed ones out of every tuning list."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.onnx_io import onnx_macs
from hwnas.zoo import _VARIANTS, build_inception, build_repvgg, build_resnext, candidates, families, zoo_models
from hwnas.zoo_sealed import _VARIANTS as _SEALED_VARIANTS
from hwnas.zoo_sealed import OPENED_FAMILIES, SEALED_FAMILIES, model_by_name, opened_models
from hwnas.zoo_sealed_extra import build_squeezenext, build_xception
from hwnas.zoo_transformers import transformer_candidates, transformer_models

NEW_TUNING = ("inception", "resnext", "repvgg")
NEW_SEALED = ("xception", "squeezenext")
FULL_SIZE = ("resnet18_w1.0_r224", "resnet34_w1.0_r224", "resnet50_w1.0_r224", "squeezenet1.1_w1.0_convhead_r224",
             "squeezenet1.0_w1.0_convhead_r224", "inception_googlenet_w1.0_r224")
NEW_MODELS = (*(m for f in NEW_TUNING for m in _VARIANTS[f]), *(m for f in NEW_SEALED for m in _SEALED_VARIANTS[f]),
              *(model_by_name(n) for n in FULL_SIZE if not n.startswith("inception")))


@functools.lru_cache(maxsize=None)
def _built(name: str) -> onnx.ModelProto:
    return model_by_name(name).build()


@pytest.mark.parametrize("name", [m.name for m in NEW_MODELS])
def test_new_model_checks_and_runs(name: str) -> None:
    m, model = model_by_name(name), _built(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.name == f"zoo_{m.name}" and m.name.startswith(m.family) and m.name.endswith(f"_r{m.resolution}")
    assert 128 <= m.resolution <= 224 and m.description
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, m.resolution, m.resolution)).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == (1, 1000) and np.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_candidates_ordered_by_macs_and_spread_over_them() -> None:
    for fam in families():
        macs = [onnx_macs(_built(m.name)) for m in _VARIANTS[fam]]
        assert macs == sorted(macs) and macs[0] > 10e6, fam
        assert 6 <= len(macs) <= 11, fam
        if fam in NEW_TUNING:
            assert macs[-1] / macs[0] > 10, fam  # spread over a wide latency range
    full = {n: onnx_macs(_built(n)) for n in FULL_SIZE}
    assert 1.7e9 < full["resnet18_w1.0_r224"] < full["resnet34_w1.0_r224"] < full["resnet50_w1.0_r224"] < 4.5e9
    assert 1.4e9 < full["inception_googlenet_w1.0_r224"] < 1.6e9
    # torchvision's classifier (a 1x1 conv to the classes at 13-14 px) adds ~0.1 GMACs
    assert full["squeezenet1.1_w1.0_convhead_r224"] > onnx_macs(_built("squeezenet1.1_w1.0_r224")) + 50e6


@pytest.mark.parametrize("builder,small,large", [
    (build_inception, {"width": 0.25}, {"width": 0.5}),
    (build_resnext, {"widths": (64, 128, 256, 512), "mids": (32, 64, 128, 256), "group_widths": (4, 8, 16, 32)},
     {"widths": (128, 256, 512, 1024), "mids": (64, 128, 256, 512), "group_widths": (8, 16, 32, 64)}),
    (build_repvgg, {"width": 0.25}, {"width": 0.5}),
    (build_xception, {"width": 0.25, "middle": 2}, {"width": 0.5, "middle": 2}),
    (build_squeezenext, {"width": 1.0}, {"width": 1.5}),
])
def test_macs_positive_and_grow_with_width(builder, small: dict, large: dict) -> None:
    a, b = onnx_macs(builder(**small, resolution=128)), onnx_macs(builder(**large, resolution=128))
    assert 0 < a < b


def test_names_unique_and_sealed_apart() -> None:
    tuning = [*candidates(), *(m for f in OPENED_FAMILIES for m in _SEALED_VARIANTS[f]), *transformer_candidates()]
    sealed = [m for f in SEALED_FAMILIES for m in _SEALED_VARIANTS[f]]
    names = [m.name for m in (*tuning, *sealed)]
    assert len(set(names)) == len(names)
    assert set(NEW_SEALED) <= set(SEALED_FAMILIES) and not set(NEW_SEALED) & set(families())
    assert set(NEW_TUNING) <= set(families())
    # no tuning list hands out a sealed model, at any per_family
    for k in (1, 6, 8):
        picked = {m.family for m in (*zoo_models(k), *opened_models(k), *transformer_models(k))}
        assert not picked & set(SEALED_FAMILIES)


def test_new_family_structures() -> None:
    def convs(name: str) -> list[dict]:
        return [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} | {"w": n.input[1]}
                for n in _built(name).graph.node if n.op_type == "Conv"]

    def ops(name: str) -> set[str]:
        return {n.op_type for n in _built(name).graph.node}

    g = _built("inception_googlenet_w0.25_r128")
    assert sum(n.op_type == "Concat" and len(n.input) == 4 for n in g.graph.node) == 9  # nine inception modules
    assert "LRN" not in ops("inception_googlenet_w0.25_r128") and "LRN" in ops("inception_v1_w0.25_r160")
    assert any(c["kernel_shape"] == [5, 5] for c in convs("inception_v1_w0.25_r160"))
    assert not any(c["kernel_shape"] == [5, 5] for c in convs("inception_bn_w0.25_r224"))
    dims = {t.name: list(t.dims) for t in _built("resnext50_32x4d_w0.5_r160").graph.initializer}
    grouped = [c for c in convs("resnext50_32x4d_w0.5_r160") if c["group"] > 1]
    assert {c["group"] for c in grouped} == {32} and {dims[c["w"]][1] for c in grouped} == {2, 4, 8, 16}
    assert {"GlobalAveragePool", "Sigmoid", "Mul"} <= ops("resnext_regnety400mf_r160")
    rep = convs("repvgg_a0_w0.25_r128")
    assert all(c["kernel_shape"] == [3, 3] and c["group"] == 1 for c in rep) and len(rep) == 22
    assert "Add" not in ops("repvgg_a0_w0.25_r128")
    head = _built("squeezenet1.0_w1.0_convhead_r224").graph.node
    assert [n.op_type for n in head[-4:]] == ["Conv", "Relu", "GlobalAveragePool", "Flatten"]
