"""Transformer zoo families: valid graphs torch's exporter could have written, fused by ORT as real ones."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.onnx_io import onnx_macs
from hwnas.zoo import families
from hwnas.zoo_sealed import SEALED_FAMILIES, model_by_name
from hwnas.zoo_transformers import _VARIANTS, TRANSFORMER_FAMILIES, build_bert, build_vit, transformer_models


@functools.lru_cache(maxsize=None)
def _smallest(family: str):
    m = _VARIANTS[family][0]
    return m, m.build()


def _run(model: onnx.ModelProto) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    (y,) = sess.run(None, {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)})
    return y


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_smallest_builds_checks_runs_and_fuses_like_a_transformer(family: str) -> None:
    from hwnas.devices import load_device
    from hwnas.predictors.kernel_features import featurize_records, optimized_kernels

    m, model = _smallest(family)
    onnx.checker.check_model(model, full_check=True)
    assert m.family == family and model.graph.name == f"zoo_{m.name}"
    y = _run(model)
    assert y.shape[0] == 1 and np.isfinite(y).all() and 1e-3 < float(y.std()) < 1e3
    recs = optimized_kernels(model, load_device("cpu-1t"))
    ops = {r.op_type for r in recs}
    assert {"Gelu", "Softmax", "FusedMatMul", "Gemm"} <= ops  # erf GELU, Q K^T x scale, token linears fused
    assert ops & {"LayerNormalization", "SkipLayerNormalization"}
    rows, uncovered = featurize_records(recs)
    assert not uncovered, sorted({u.op_type for u in uncovered})
    qk = next(r for r in recs if r.op_type == "FusedMatMul")
    assert qk.output_shapes[0][-1] == qk.output_shapes[0][-2]  # (B, H, T, T): transB read by the shapes


def test_edge_sizes_build_and_bad_sizes_raise() -> None:
    """A one-token BERT (softmax over one key) still builds and runs; sizes that cannot tile raise."""
    model = build_bert(width=8, depth=1, heads=2, resolution=1, n_classes=3)
    y = _run(model)
    assert y.shape == (1, 3) and np.isfinite(y).all()
    with pytest.raises(ValueError, match="patch"):
        build_vit(patch=16, resolution=100)
    with pytest.raises(ValueError, match="heads"):
        build_bert(width=10, heads=3)


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_candidates_ordered_by_macs_and_named_apart(family: str) -> None:
    macs = [onnx_macs(m.build()) for m in _VARIANTS[family]]
    assert macs == sorted(macs) and 10e6 < macs[0] and macs[-1] < 2e9
    names = [m.name for m in transformer_models(8)]
    assert len(set(names)) == len(names) == 8 * len(TRANSFORMER_FAMILIES)
    assert not set(TRANSFORMER_FAMILIES) & (set(families()) | set(SEALED_FAMILIES))
    assert model_by_name(_VARIANTS[family][-1].name) == _VARIANTS[family][-1]


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_fused_attention_build_runs_one_attention_kernel_per_layer(family: str) -> None:
    import json

    from hwnas.devices import load_device
    from hwnas.predictors.kernel_features import featurize_records, optimized_kernels

    m, plain = _smallest(family)
    fused = m.build_fused()
    onnx.checker.check_model(fused, full_check=True)
    depth = dict(m.config)["depth"]
    assert sum(n.op_type == "Attention" and n.domain == "com.microsoft" for n in fused.graph.node) == depth
    assert ("com.microsoft", 1) in [(o.domain, o.version) for o in fused.opset_import]
    assert json.loads(fused.metadata_props[0].value)["fused_attention"] is True
    # the plain build is left as it was: no contrib op, no flag
    assert not any(n.domain for n in plain.graph.node) and "fused_attention" not in plain.metadata_props[0].value
    y = _run(fused)
    assert y.shape == _run(plain).shape and np.isfinite(y).all()
    recs = optimized_kernels(fused, load_device("cpu-1t"))
    attn = [r for r in recs if r.op_type == "Attention"]
    assert len(attn) == depth and not any(r.op_type in ("Softmax", "FusedMatMul") for r in recs)
    rows, uncovered = featurize_records(recs)
    assert not uncovered and sum(r.family == "attention" for r in rows) == depth
