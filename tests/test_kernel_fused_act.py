"""Convolutions with a fused ReLU6 / LeakyReLU / Sigmoid: campaign kernels, their graphs, and the
``fused_act`` feature that tells one fused activation from another."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from hwnas.devices import load_device
from hwnas.kernels import FUSED_ACT_CONV_OPS, FusedActKernelSampler, KernelSampler, KernelSpec, build_kernel_onnx
from hwnas.measure import KernelRecord, MeasureConfig, Measurer
from hwnas.predictors.kernel_features import (FEATURE_NAMES, FUSED_ACTIVATION_CODES, N_FEATURES_V2,
                                              OTHER_FUSED_ACTIVATION, featurize_records)

_FUSED = {"conv_relu6": "Clip", "conv_lrelu": "LeakyRelu", "conv_sigmoid": "Sigmoid"}


def _conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, groups: int) -> np.ndarray:
    """A stride-1, same-padded grouped convolution in numpy (NCHW)."""
    n, c, h, wd = x.shape
    o, cg, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((n, o, h, wd), np.float64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(k):
            for j in range(k):
                y[:, oc] += np.einsum("nchw,c->nhw", xp[:, g * cg:(g + 1) * cg, i:i + h, j:j + wd], w[oc, :, i, j])
    return y + b[None, :, None, None]


@pytest.mark.parametrize("op", FUSED_ACT_CONV_OPS)
@pytest.mark.parametrize("groups", [1, 8])
def test_graph_computes_conv_then_activation(op, groups):
    spec = KernelSpec(op, in_ch=8, out_ch=8, res=6, kernel=3, groups=groups)
    model = build_kernel_onnx(spec, seed=2)
    x = (3 * np.random.default_rng(0).standard_normal(spec.input_shape)).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    z = _conv_reference(x, w["conv.weight"], w["conv.bias"], groups)
    want = {"conv_relu6": np.clip(z, 0, 6), "conv_lrelu": np.where(z > 0, z, 0.1 * z),
            "conv_sigmoid": 1 / (1 + np.exp(-z))}[op]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert spec.macs == 6 * 6 * 8 * (8 // groups) * 9  # counted as the convolution alone


def test_spec_rules_follow_the_convolutions():
    s = KernelSpec("conv_relu6", in_ch=32, out_ch=32, res=28, kernel=5, groups=32, stride=2)
    assert s.key == "conv_relu6_b1_i32_o32_r28_k5_s2_g32" and KernelSpec.parse(s.key) == s
    with pytest.raises(ValueError, match="odd"):
        KernelSpec("conv_lrelu", in_ch=8, out_ch=8, res=8, kernel=2)
    with pytest.raises(ValueError, match="groups"):
        KernelSpec("conv_sigmoid", in_ch=16, out_ch=12, res=8, groups=8)


def test_sampler_shapes_and_stream():
    specs = FusedActKernelSampler(0).sample(80)
    assert specs == FusedActKernelSampler(0).sample(80) != FusedActKernelSampler(1).sample(80)
    s = FusedActKernelSampler(0, batches=(2,))
    assert s.sample(50) + s.sample(30) == FusedActKernelSampler(0, batches=(2,)).sample(80)
    ops = [x.op for x in specs]
    assert set(ops) == set(FUSED_ACT_CONV_OPS) and ops.count("conv_relu6") > len(ops) / 3
    depthwise = [x for x in specs if x.groups == x.in_ch > 1]
    assert 0.3 < len(depthwise) / len(specs) < 0.7 and {x.kernel for x in depthwise} >= {3, 5}
    assert any(x.kernel == 1 and x.out_ch >= 3 * x.in_ch for x in specs)  # an inverted residual's expansion
    assert all(x.macs <= 400_000_000 for x in specs)
    with pytest.raises(ValueError, match="not drawn by FusedActKernelSampler"):
        FusedActKernelSampler(0, op_weights={"conv_relu": 1.0})
    with pytest.raises(ValueError, match="not drawn by KernelSampler"):
        KernelSampler(0, op_weights={"conv_relu6": 1.0})


def test_campaign_adds_fused_act_kernels_and_leaves_the_other_streams_as_they_were():
    from hwnas.profile.campaign import ProfilePlan, kernel_tasks

    old = [t.key for t in kernel_tasks(40, 3, 4, 20, 6, 8, 4, 6)]
    new = kernel_tasks(40, 3, 4, 20, 6, 8, 4, 6, 9)
    act = [t for t in new if t.key.startswith(tuple(f"{op}_" for op in FUSED_ACT_CONV_OPS))]
    assert len(act) == 9 and [t.key for t in new if t not in act] == old
    assert all(KernelSpec.parse(t.key).batch == 4 and t.macs == KernelSpec.parse(t.key).macs for t in act)
    assert ProfilePlan().n_fused_act_kernels == 60 and ProfilePlan.archs_only(5, 0).n_fused_act_kernels == 0


def test_ort_fuses_each_activation_into_the_conv_and_the_feature_tells_them_apart():
    """What the campaign relies on: ORT runs each as one ``Conv`` carrying the activation, and the
    ``fused_act`` feature differs between them (``has_activation`` alone cannot)."""
    quick = MeasureConfig(warmup_runs=1, warmup_s=0.0, rounds=1, max_rounds=1, round_min_runs=2, round_min_s=0.0,
                          canary_min_runs=2, canary_min_s=0.0)
    col, has = FEATURE_NAMES.index("fused_act"), FEATURE_NAMES.index("has_activation")
    seen = {}
    with Measurer(load_device("cpu-1t"), quick) as m:
        for op in ("dwconv", "conv_relu", *FUSED_ACT_CONV_OPS):
            spec = KernelSpec(op, in_ch=16, out_ch=16, res=14, kernel=3, groups=16)
            convs = [r for r in m.profile_kernels(build_kernel_onnx(spec), runs=2, warmup=1).records
                     if r.op_type == "Conv"]
            assert len(convs) == 1, op
            assert convs[0].attributes.get("activation", "") == _FUSED.get(op, "Relu" if op == "conv_relu" else "")
            (row,), _ = featurize_records(convs)
            seen[op] = (row.features[col], row.features[has])
    assert seen["dwconv"] == (0.0, 0.0) and seen["conv_relu"] == (1.0, 1.0)
    assert {seen[op][0] for op in FUSED_ACT_CONV_OPS} == {float(FUSED_ACTIVATION_CODES[_FUSED[op]])
                                                           for op in FUSED_ACT_CONV_OPS}
    assert all(seen[op][1] == 1.0 for op in FUSED_ACT_CONV_OPS)


def test_an_unlisted_fused_activation_gets_its_own_code_and_old_predictors_read_21_features():
    rec = KernelRecord("c", "FusedConv", "com.microsoft", ((1, 8, 8, 8), (8, 8, 3, 3), (8,)), ((1, 8, 8, 8),),
                       {"activation": "Softplus", "group": 1, "strides": [1, 1]}, 0.1, 0)
    (row,), _ = featurize_records([rec])
    assert row.features[FEATURE_NAMES.index("fused_act")] == OTHER_FUSED_ACTIVATION
    assert len(row.features) == len(FEATURE_NAMES) == N_FEATURES_V2 + 1
    assert FEATURE_NAMES[:N_FEATURES_V2][-1] == "log_mats"  # saved predictors' features keep their places
