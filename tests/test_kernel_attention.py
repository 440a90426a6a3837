"""Fused self-attention (ORT's ``Attention`` / ``MultiHeadAttention`` contrib ops): campaign spec,
graph, sampler, kernel features on every path, and the predictor's coverage of them."""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import fitted_kernel_predictor
from hwnas.devices import load_device
from hwnas.kernels import AttentionKernelSampler, KernelSpec, TokenKernelSampler, build_kernel_onnx
from hwnas.measure import KernelRecord, MeasureConfig, Measurer
from hwnas.predictors.kernel import KernelPredictor, UncoveredOpsWarning
from hwnas.predictors.kernel_features import (FEATURE_NAMES, OP_CODES, featurize_records, kernel_family,
                                              kernel_macs, optimized_kernels)


def test_spec_key_cost_and_rules():
    a = KernelSpec("attention", in_ch=256, res=128, groups=4)
    assert a.key == "attention_b1_i256_o256_r128_k1_s1_g4" and KernelSpec.parse(a.key) == a
    assert a.input_shape == a.output_shape == (1, 128, 256)
    assert a.macs == 128 * 256 * 768 + 2 * 128 * 128 * 256  # Q/K/V projection, then Q K^T and A V
    assert a.params == 3 * 256 * 256 + 3 * 256
    m = KernelSpec("mha", in_ch=256, res=128, groups=4, batch=2)
    assert m.macs == 2 * 2 * 128 * 128 * 256 and m.params == 0
    with pytest.raises(ValueError, match="heads"):
        KernelSpec("attention", in_ch=100, res=16, groups=3)
    with pytest.raises(ValueError, match="out_ch"):
        KernelSpec("mha", in_ch=64, out_ch=32, res=16, groups=2)


def _reference(x: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    b, t, c = q.shape
    d = c // heads
    split = [a.reshape(b, -1, heads, d).transpose(0, 2, 1, 3) for a in (q, k, v)]
    s = split[0] @ split[1].transpose(0, 1, 3, 2) / math.sqrt(d)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ split[2]).transpose(0, 2, 1, 3).reshape(b, t, c)


@pytest.mark.parametrize("op", ["attention", "mha"])
def test_graph_computes_multi_head_attention(op):
    spec = KernelSpec(op, in_ch=24, res=7, groups=3, batch=2)
    model = build_kernel_onnx(spec, seed=1)
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    if op == "attention":
        w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        qkv = x @ w["qkv.weight"] + w["qkv.bias"]
        want = _reference(x, qkv[..., :24], qkv[..., 24:48], qkv[..., 48:], 3)
    else:
        want = _reference(x, x, x, x, 3)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_sampler_shapes_and_stream():
    specs = AttentionKernelSampler(0).sample(60)
    assert specs == AttentionKernelSampler(0).sample(60) != AttentionKernelSampler(1).sample(60)
    s = AttentionKernelSampler(0, batches=(2,))
    assert s.sample(40) + s.sample(20) == AttentionKernelSampler(0, batches=(2,)).sample(60)
    assert {x.op for x in specs} == {"attention", "mha"} and len(set(specs)) == 60
    assert all(64 <= x.in_ch <= 1024 and x.in_ch % x.groups == 0 and 32 <= x.in_ch // x.groups <= 128
               and 16 <= x.res <= 1025 and x.macs <= 2_000_000_000 for x in specs)
    assert max(x.macs for x in specs) > 400_000_000  # beyond the CNN sampler's cap: a ViT-B layer's attention
    assert {x.groups for x in specs} >= {1, 4, 8}
    with pytest.raises(ValueError, match="not drawn by AttentionKernelSampler"):
        AttentionKernelSampler(0, op_weights={"linear": 1.0})
    with pytest.raises(ValueError, match="not drawn by TokenKernelSampler"):
        TokenKernelSampler(0, op_weights={"attention": 1.0})


def test_campaign_adds_attention_kernels_and_leaves_the_other_streams_as_they_were():
    from hwnas.profile.campaign import ProfilePlan, kernel_tasks

    old = [t.key for t in kernel_tasks(40, 3, 4, 20, 6, 8, 4)]
    new = kernel_tasks(40, 3, 4, 20, 6, 8, 4, 6)
    attn = [t for t in new if t.key.startswith(("attention_", "mha_"))]
    assert len(attn) == 6 and [t.key for t in new if t not in attn] == old
    assert all(KernelSpec.parse(t.key).batch == 4 and t.macs == KernelSpec.parse(t.key).macs for t in attn)
    assert ProfilePlan().n_attention_kernels == 40 and ProfilePlan.archs_only(5, 0).n_attention_kernels == 0


def _feature_rows(records):
    rows, uncovered = featurize_records(records)
    assert not uncovered
    return [(r.family, r.op_type, r.features, r.work) for r in rows]


@pytest.mark.parametrize("op", ["attention", "mha"])
def test_features_agree_between_profiled_static_and_traced_kernels(op):
    """The timed session pre-packs ``Attention``'s weight (its profiler then shows no weight shape);
    the static shapes and the untimed trace show it.  All three must featurize alike."""
    spec = KernelSpec(op, in_ch=64, res=20, groups=2)
    model = build_kernel_onnx(spec)
    dev = load_device("cpu-1t")
    with Measurer(dev, MeasureConfig.quick()) as m:
        profiled = m.profile_kernels(model, runs=2, warmup=1).records
    static = optimized_kernels(model, dev)
    assert all(r.duration_ms == 0.0 for r in static)  # the static path knows the contrib op's shape
    traced = optimized_kernels(model, dev, static=False)
    (a,), (b,), (c,) = (_feature_rows(r) for r in (profiled, static, traced))
    assert a == b == c
    fam, op_type, feats, work = a
    f = dict(zip(FEATURE_NAMES, feats))
    assert fam == "attention" and op_type == {"attention": "Attention", "mha": "MultiHeadAttention"}[op]
    assert work == spec.macs and f["log_macs"] == pytest.approx(math.log2(spec.macs + 1))
    assert f["op_code"] == OP_CODES[op_type]
    assert f["log_weight_elems"] == pytest.approx(math.log2(spec.params + 1))
    assert f["log_mats"] == pytest.approx(math.log2(2 + 1))  # batch x heads matrices


def test_macs_of_other_layouts():
    # cross-attention: 10 queries over 30 keys, V narrower than Q / K
    assert kernel_macs("MultiHeadAttention", [(1, 10, 64), (1, 30, 64), (1, 30, 32)], [(1, 10, 32)],
                       {"num_heads": 2}) == 10 * 30 * (64 + 32)
    # keys and values already split per head: (batch, heads, S, head size)
    assert kernel_macs("MultiHeadAttention", [(1, 10, 64), (1, 2, 30, 32), (1, 2, 30, 32)], [(1, 10, 64)],
                       {"num_heads": 2}) == 10 * 30 * 128
    # Attention with explicit Q / K / V widths
    assert kernel_macs("Attention", [(1, 8, 32), (32, 96), (96,)], [(1, 8, 32)],
                       {"num_heads": 2, "qkv_hidden_sizes": [32, 32, 32]}) == 8 * 32 * 96 + 8 * 8 * 64
    # a packed layout it does not know: no MACs, no family (the fallback prices it, named in a warning)
    packed = [(1, 10, 2, 3, 32)]
    assert kernel_macs("MultiHeadAttention", packed, [(1, 10, 64)], {"num_heads": 2}) == 0
    assert kernel_family("MultiHeadAttention", packed, [(1, 10, 64)], {"num_heads": 2}) is None
    assert kernel_family("MultiHeadAttention", [(1, 10, 64)] * 3, [(1, 10, 64)], {"num_heads": 2}) == "attention"


def _fitted(op_base: dict[str, float]) -> KernelPredictor:
    return fitted_kernel_predictor({"gemm": 0.0, "attention": -3.0}, op_base)


def test_a_predictor_fitted_before_attention_kernels_names_them_as_fallback():
    x = (1, 16, 64)
    recs = [KernelRecord("attn", "Attention", "com.microsoft", (x, (64, 192), (192,)), (x,), {"num_heads": 2}, 0.0, 0)]
    gemm = f"gemm:{OP_CODES['Gemm']}"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        (before,) = _fitted({gemm: 0.0})._predict_records(recs)
        KernelPredictor._warn_uncovered([before], "m")
    assert before.fallback and before.family == "uncovered"
    assert any("Attention" in str(m.message) for m in w if issubclass(m.category, UncoveredOpsWarning))
    (after,) = _fitted({gemm: 0.0, f"attention:{OP_CODES['Attention']}": 0.5})._predict_records(recs)
    macs = 16 * 64 * 192 + 2 * 16 * 16 * 64
    assert not after.fallback and after.family == "attention"
    assert after.relative == pytest.approx(math.exp(-3.0 + 0.5) * macs)
