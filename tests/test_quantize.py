"""int8 precision: real quantization with onnxruntime.quantization, real sessions."""

import numpy as np
import onnx
import pytest
from scipy.stats import spearmanr

from hwnas.builders.onnx_graph import build_onnx
from hwnas.devices import load_device
from hwnas.kernels import KernelSampler, build_kernel_onnx
from hwnas.measure import MeasureConfig, Measurer, make_session, random_feed
from hwnas.predictors.kernel_features import featurize_records, optimized_kernels
from hwnas.quantize import for_device, is_quantized, quantize_int8
from hwnas.space import Arch

SMALL = Arch.parse("r128_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3")


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_quantize_is_seeded_and_keeps_outputs_close():
    m = build_onnx(SMALL)
    before = m.SerializeToString()
    q1, q2 = quantize_int8(m, seed=0), quantize_int8(m, seed=0)
    assert m.SerializeToString() == before  # the input model is not modified
    assert q1.SerializeToString() == q2.SerializeToString()
    assert is_quantized(q1) and not is_quantized(m)
    ops = {n.op_type for n in q1.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # per-channel weights: some weight scale is a vector
    inits = {i.name: i for i in q1.graph.initializer}
    assert any(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1
               for n in q1.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits)
    dev = load_device("cpu-1t")
    a = make_session(m, dev)
    b = make_session(q1, dev)
    feed = random_feed(a, 0)
    ya, yb = a.run(None, feed)[0], b.run(None, feed)[0]
    assert ya.shape == yb.shape
    assert np.corrcoef(ya.ravel(), yb.ravel())[0, 1] > 0.9  # int8 approximates fp32
    assert for_device(q1, "int8") is q1  # already quantized: passes through
    assert for_device(m, "fp32") is m


@pytest.mark.slow  # 7-9 s (measures / CLI subprocesses): run by .ci/run's slow step
def test_int8_device_measures_and_profiles_quantized_kernels():
    dev = load_device("cpu-1t-int8")
    with Measurer(dev, MeasureConfig.quick()) as meas:
        r = meas.measure(build_onnx(SMALL), "small")
        kp = meas.profile_kernels(build_onnx(SMALL), runs=2, warmup=1)
    assert r.latency_ms > 0 and r.relative_to_canary > 0
    ops = {k.op_type for k in kp.records}
    assert "QLinearConv" in ops
    rows, uncovered = featurize_records(kp.records)
    assert not uncovered, sorted({u.op_type for u in uncovered})
    fams = {row.family for row in rows}
    assert {"pwconv", "dwconv", "quantize"} <= fams


def test_int8_kernel_campaign_graphs_quantize():
    dev = load_device("cpu-1t-int8")
    specs = [s for s in KernelSampler(3).sample(40) if s.op in ("conv", "dwconv", "gemm", "add")][:4]
    assert specs
    for spec in specs:
        recs = optimized_kernels(build_kernel_onnx(spec), dev)
        rows, uncovered = featurize_records(recs)
        assert rows and not uncovered, (spec.key, [u.op_type for u in uncovered])


def test_quantize_rejects_dynamic_shapes():
    m = build_onnx(SMALL)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    with pytest.raises(Exception, match="dynamic"):
        quantize_int8(m)


@pytest.mark.slow
def test_int8_vs_fp32_comparison(tiny_profile, tmp_path):
    from conftest import TINY_SPACE

    from hwnas.compare import compare_precisions, precision_pair
    from hwnas.profile import Profile, ProfilePlan, build_profile
    from hwnas.report import plot_int8_speedup

    d = tmp_path / "int8"
    plan = ProfilePlan(n_archs=6, n_kernels=0, n_token_kernels=0, n_kernel_profiles=0, zoo_per_family=0)
    build_profile(load_device("cpu-1t-int8"), d, plan, space=TINY_SPACE, config=MeasureConfig.quick(), parts=("arch",))
    fp32, int8 = Profile.load(tiny_profile[0]), Profile.load(d)
    pair = precision_pair([int8, fp32])
    assert pair is not None and pair[0] is fp32 and pair[1] is int8
    assert precision_pair([fp32, fp32]) is None
    r = compare_precisions(fp32, int8)
    a = fp32.table("arch").set_index("key")["corrected_ms"]
    b = int8.table("arch").set_index("key")["corrected_ms"]
    keys = sorted(set(a.index) & set(b.index))
    assert r["n_common_archs"] == len(keys) == 6
    speedup = a[keys].to_numpy() / b[keys].to_numpy()
    assert r["speedup"]["median"] == pytest.approx(float(np.median(speedup)))
    assert r["most_helped"][0]["speedup"] == pytest.approx(speedup.max())
    assert r["ranking"]["spearman"] == pytest.approx(spearmanr(a[keys], b[keys]).statistic)
    assert r["ranking"]["pairs"] == 15
    png = plot_int8_speedup(r, tmp_path / "int8.png")
    assert png.stat().st_size > 5000


def test_int8_nhwc_max_pool_is_a_pool_kernel():
    """ORT's int8 NhwcMaxPool (channels-last, no attribute saying so) is featurized as the NCHW
    MaxPool it computes, on int8 bytes; its op code comes after every older one (saved
    predictors keep their codes)."""
    from hwnas.predictors.kernel_features import FEATURE_NAMES, OP_CODES, featurize

    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    q = featurize("NhwcMaxPool", [(1, 56, 56, 64)], [(1, 28, 28, 64)], attrs)
    f = featurize("MaxPool", [(1, 64, 56, 56)], [(1, 64, 28, 28)], attrs)
    assert q is not None and q.family == f.family == "pool"
    same = ("in_ch", "out_ch", "log_in_hw", "log_out_hw", "kernel", "stride", "log_out_elems", "log_in_elems")
    for name in same:
        i = FEATURE_NAMES.index(name)
        assert q.features[i] == f.features[i], name
    assert q.work == f.work / 4  # one byte per element instead of four
    # op codes are append-only (saved predictors keep their meaning): int8 ops, then transformer ops, then LRN,
    # then fused attention
    assert (OP_CODES["NhwcMaxPool"] == 85 < OP_CODES["SkipLayerNormalization"] < OP_CODES["FastGelu"]
            < OP_CODES["LRN"] == 92 < OP_CODES["Attention"] < OP_CODES["MultiHeadAttention"] == max(OP_CODES.values()))
