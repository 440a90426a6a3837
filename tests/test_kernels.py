"""Kernel campaign: specs, the sampler and the ONNX graphs (all fast)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.kernels import (
    ATTENTION_OPS,
    CONV_OPS,
    EXTRA_OPS,
    FUSED_ACT_CONV_OPS,
    IR_VERSION,
    OPS,
    OPSET,
    TOKEN_OPS,
    KernelSampler,
    FcKernelSampler,
    LrnKernelSampler,
    PatchKernelSampler,
    TokenKernelSampler,
    KernelSpec,
    build_kernel_onnx,
)
from hwnas.onnx_io import onnx_macs, onnx_params

# One small spec per op type (every op must appear).
EXAMPLES: dict[str, KernelSpec] = {
    "conv": KernelSpec("conv", in_ch=8, out_ch=16, res=15, kernel=3, stride=2),
    "dwconv": KernelSpec("dwconv", in_ch=16, res=14, kernel=5),
    "pwconv": KernelSpec("pwconv", in_ch=16, out_ch=24, res=14),
    "gconv": KernelSpec("gconv", in_ch=16, out_ch=32, res=14, kernel=3, groups=4),
    "gemm": KernelSpec("gemm", in_ch=64, out_ch=10, batch=2),
    "maxpool": KernelSpec("maxpool", in_ch=8, res=15, kernel=3, stride=2),
    "avgpool": KernelSpec("avgpool", in_ch=8, res=14, kernel=2, stride=2),
    "globalavgpool": KernelSpec("globalavgpool", in_ch=16, res=7),
    "relu": KernelSpec("relu", in_ch=8, res=14),
    "hswish": KernelSpec("hswish", in_ch=8, res=14),
    "sigmoid": KernelSpec("sigmoid", in_ch=8, res=14),
    "swish": KernelSpec("swish", in_ch=8, res=14),
    "hsigmoid": KernelSpec("hsigmoid", in_ch=8, res=14),
    "add": KernelSpec("add", in_ch=8, res=14),
    "mul": KernelSpec("mul", in_ch=8, res=14),
    "mul_bcast": KernelSpec("mul_bcast", in_ch=16, res=14, batch=2),
    "concat": KernelSpec("concat", in_ch=8, res=14, n_inputs=3),
    "reshape_transpose": KernelSpec("reshape_transpose", in_ch=12, res=14, groups=3),
    "batchnorm": KernelSpec("batchnorm", in_ch=8, res=14),
    "conv_relu": KernelSpec("conv_relu", in_ch=8, out_ch=16, res=14, kernel=3),
    "conv_hswish": KernelSpec("conv_hswish", in_ch=16, out_ch=16, res=14, kernel=3, groups=16, stride=2),
    "conv_add": KernelSpec("conv_add", in_ch=16, res=14, kernel=3),
    "linear": KernelSpec("linear", in_ch=16, out_ch=24, res=10),
    "gelu": KernelSpec("gelu", in_ch=16, res=10),
    "layernorm": KernelSpec("layernorm", in_ch=16, res=10),
    "add_layernorm": KernelSpec("add_layernorm", in_ch=16, res=10),
    "softmax": KernelSpec("softmax", in_ch=10, res=10, groups=2),
    "attn_qk": KernelSpec("attn_qk", in_ch=8, res=10, groups=2),
    "attn_av": KernelSpec("attn_av", in_ch=10, out_ch=8, res=10, groups=2),
    "lrn": KernelSpec("lrn", in_ch=16, res=9, kernel=5),
    "patch_conv": KernelSpec("patch_conv", in_ch=3, out_ch=24, res=32, kernel=8),
    "attention": KernelSpec("attention", in_ch=16, res=10, groups=2),
    "mha": KernelSpec("mha", in_ch=16, res=10, groups=4),
    "conv_relu6": KernelSpec("conv_relu6", in_ch=16, out_ch=16, res=14, kernel=3, groups=16),
    "conv_lrelu": KernelSpec("conv_lrelu", in_ch=8, out_ch=24, res=14, kernel=1),
    "conv_sigmoid": KernelSpec("conv_sigmoid", in_ch=8, out_ch=16, res=14, kernel=3, stride=2),
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(spec: KernelSpec, model: onnx.ModelProto) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal(spec.input_shape).astype(np.float32)
    (y,) = _session(model).run(None, {"input": x})
    return y


def test_examples_cover_every_op():
    assert set(EXAMPLES) == set(OPS)


@pytest.mark.parametrize("op", OPS)
def test_every_op_builds_checks_and_runs(op):
    spec = EXAMPLES[op]
    model = build_kernel_onnx(spec, seed=0)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    # ORT's fused attention ops live in its contrib domain (onnx's shape inference does not know them)
    contrib = [("com.microsoft", 1)] if op in ATTENTION_OPS else []
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET), *contrib]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert model.graph.name == spec.key
    assert all(n.name for n in model.graph.node)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert tuple(dims) == spec.output_shape
    y = _run(spec, model)
    assert y.shape == spec.output_shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    assert onnx_params(model) >= spec.params


def test_graph_semantics_match_numpy():
    x = np.random.default_rng(1).standard_normal((1, 8, 14, 14)).astype(np.float32)
    assert np.allclose(_run(EXAMPLES["relu"], build_kernel_onnx(EXAMPLES["relu"])), np.maximum(x, 0))
    sw = _run(EXAMPLES["swish"], build_kernel_onnx(EXAMPLES["swish"]))
    assert np.allclose(sw, x / (1 + np.exp(-x)), atol=1e-5)
    hs = _run(EXAMPLES["hsigmoid"], build_kernel_onnx(EXAMPLES["hsigmoid"]))
    assert np.allclose(hs, np.clip(x + 3, 0, 6) / 6, atol=1e-6)
    spec = EXAMPLES["reshape_transpose"]
    x12 = np.random.default_rng(1).standard_normal(spec.input_shape).astype(np.float32)
    shuffled = x12.reshape(1, 3, 4, 14, 14).transpose(0, 2, 1, 3, 4).reshape(1, 12, 14, 14)
    assert np.array_equal(_run(spec, build_kernel_onnx(spec)), shuffled)
    # conv_add adds the graph input itself (identity residual)
    ca = EXAMPLES["conv_add"]
    m = build_kernel_onnx(ca)
    assert [n.op_type for n in m.graph.node] == ["Conv", "Add"]
    assert list(m.graph.node[1].input) == ["conv_out", "input"]


def test_weights_are_seeded():
    spec = EXAMPLES["conv"]
    a, b, c = build_kernel_onnx(spec, seed=3), build_kernel_onnx(spec, seed=3), build_kernel_onnx(spec, seed=4)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.graph.initializer[0].raw_data != c.graph.initializer[0].raw_data


def test_token_ops_compute_what_they_say_and_fuse_as_in_models():
    from hwnas.devices import load_device
    from hwnas.predictors.kernel_features import kernel_family, optimized_kernels

    rng = np.random.default_rng(1)
    lin = EXAMPLES["linear"]
    m = build_kernel_onnx(lin)
    w, b = (onnx.numpy_helper.to_array(t) for t in m.graph.initializer)
    x = rng.standard_normal(lin.input_shape).astype(np.float32)
    assert np.allclose(_session(m).run(None, {"input": x})[0], x @ w + b, atol=1e-4)
    qk = EXAMPLES["attn_qk"]
    x = rng.standard_normal(qk.input_shape).astype(np.float32)
    want = x @ np.swapaxes(x, -1, -2) / math.sqrt(qk.in_ch)
    assert np.allclose(_session(build_kernel_onnx(qk)).run(None, {"input": x})[0], want, atol=1e-4)
    av = EXAMPLES["attn_av"]
    x = rng.standard_normal(av.input_shape).astype(np.float32)
    assert np.allclose(_session(build_kernel_onnx(av)).run(None, {"input": x})[0], x @ x[..., : av.out_ch], atol=1e-4)
    ln = EXAMPLES["layernorm"]
    x = rng.standard_normal(ln.input_shape).astype(np.float32)
    y = _session(build_kernel_onnx(ln)).run(None, {"input": x})[0]
    g, beta = (onnx.numpy_helper.to_array(t) for t in build_kernel_onnx(ln).graph.initializer)
    assert np.allclose((y - beta) / g, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6),
                       atol=1e-3)
    # ORT runs them as it runs a transformer: one fused kernel each, in the families the predictor knows
    dev = load_device("cpu-1t")
    main = {}
    for op in ("linear", "gelu", "add_layernorm", "attn_qk", "softmax"):
        recs = optimized_kernels(build_kernel_onnx(EXAMPLES[op]), dev)
        main[op] = [r.op_type for r in recs if r.op_type not in ("Reshape",)]
    assert main == {"linear": ["Gemm"], "gelu": ["Gelu"], "add_layernorm": ["SkipLayerNormalization"],
                    "attn_qk": ["FusedMatMul"], "softmax": ["Softmax"]}
    assert kernel_family("SkipLayerNormalization", [(1, 10, 16)] * 2) == "layernorm"
    assert kernel_family("Gelu", [(1, 10, 16)]) == "activation"


def test_token_spec_rules():
    assert KernelSpec("attn_qk", in_ch=64, res=197, groups=3).output_shape == (1, 3, 197, 197)
    assert KernelSpec("attn_qk", in_ch=64, res=197, groups=3).macs == 3 * 197 * 197 * 64
    assert KernelSpec("linear", in_ch=192, out_ch=768, res=197).macs == 197 * 192 * 768
    with pytest.raises(ValueError, match="out_ch"):
        KernelSpec("linear", in_ch=8, res=4)
    with pytest.raises(ValueError, match="must be <= res"):
        KernelSpec("attn_av", in_ch=10, res=10, out_ch=12)
    with pytest.raises(ValueError, match="groups"):
        KernelSpec("layernorm", in_ch=8, res=4, groups=2)
    with pytest.raises(ValueError, match="not drawn by KernelSampler"):
        KernelSampler(0, op_weights={"linear": 1.0})


@pytest.mark.parametrize("op", sorted(CONV_OPS) + sorted(FUSED_ACT_CONV_OPS) + ["gemm"])
def test_analytic_macs_equal_onnx_macs(op):
    spec = EXAMPLES[op]
    model = build_kernel_onnx(spec)
    assert spec.macs > 0
    assert onnx_macs(model) == spec.macs
    clip_bounds = 2 if op == "conv_relu6" else 0  # Clip's min / max: constants, not weights
    assert onnx_params(model) == spec.params + clip_bounds


def test_conv_cost_by_hand():
    s = KernelSpec("conv", in_ch=32, out_ch=64, res=56, kernel=3, stride=2)
    assert s.key == "conv_b1_i32_o64_r56_k3_s2_g1"
    assert s.out_res == 28 and s.output_shape == (1, 64, 28, 28)
    assert s.macs == 28 * 28 * 64 * 32 * 9
    assert s.weight_bytes == 4 * (64 * 32 * 9 + 64)
    assert s.input_bytes == 4 * 32 * 56 * 56 and s.output_bytes == 4 * 64 * 28 * 28
    assert onnx_macs(build_kernel_onnx(s)) == s.macs
    dw = KernelSpec("dwconv", in_ch=96, res=28, kernel=5, stride=2)
    assert (dw.out_ch, dw.groups, dw.macs) == (96, 96, 14 * 14 * 96 * 25)
    add = KernelSpec("add", in_ch=8, res=10)
    assert add.input_bytes == 2 * 4 * 800 and add.weight_bytes == 0 and add.macs == 0
    cat = KernelSpec("concat", in_ch=8, res=10, n_inputs=4)
    assert cat.out_ch == 32 and cat.input_bytes == 4 * 4 * 800 and cat.key.endswith("_n4")


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown kernel op"):
        KernelSpec("winograd", in_ch=8, res=8)
    with pytest.raises(ValueError, match="out_ch"):
        KernelSpec("relu", in_ch=8, out_ch=16, res=8)
    with pytest.raises(ValueError, match="groups"):
        KernelSpec("gconv", in_ch=16, out_ch=16, res=8, kernel=3, groups=16)
    with pytest.raises(ValueError, match="groups"):
        KernelSpec("conv_relu", in_ch=16, out_ch=12, res=8, groups=8)
    with pytest.raises(ValueError, match="odd"):
        KernelSpec("conv", in_ch=8, out_ch=8, res=8, kernel=2)
    with pytest.raises(ValueError, match="stride"):
        KernelSpec("conv_add", in_ch=8, res=8, stride=2)
    with pytest.raises(ValueError, match="out_ch is required"):
        KernelSpec("pwconv", in_ch=8, res=8)
    with pytest.raises(ValueError, match="n_inputs"):
        KernelSpec("concat", in_ch=8, res=8)
    with pytest.raises(ValueError, match="res"):
        KernelSpec("gemm", in_ch=8, out_ch=8, res=7)
    with pytest.raises(ValueError, match="no output"):
        KernelSpec("maxpool", in_ch=8, res=1, kernel=2, stride=2)


def test_key_and_dict_round_trip():
    for spec in EXAMPLES.values():
        assert KernelSpec.parse(spec.key) == spec
        assert KernelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="bad kernel key"):
        KernelSpec.parse("conv_i32_o64")
    with pytest.raises(ValueError, match="not canonical"):
        KernelSpec.parse("relu_b1_i8_o8_r8_k1_s1_g1_n1")
    with pytest.raises(ValueError, match="unknown kernel spec fields"):
        KernelSpec.from_dict({"op": "relu", "in_ch": 8, "colour": 1})


def test_sampler_deterministic_per_seed_and_differs_across_seeds():
    a = KernelSampler(7).sample(200)
    b = KernelSampler(7).sample(200)
    c = KernelSampler(8).sample(200)
    assert a == b
    assert a != c and len(set(a) & set(c)) < 50
    s = KernelSampler(7)
    assert s.sample(120) + s.sample(80) == a  # one stream, continued


def test_token_sampler_ranges_stream_and_campaign_order():
    from hwnas.profile.campaign import kernel_tasks

    specs = TokenKernelSampler(0).sample(400)
    assert specs == TokenKernelSampler(0).sample(400) != TokenKernelSampler(1).sample(400)
    assert len(set(specs)) == 400 and {s.op for s in specs} == set(TOKEN_OPS)
    for s in specs:
        assert s.macs <= 400_000_000 and 16 <= s.res <= 3136
        assert 1 <= s.groups <= 16 and (s.op in ("softmax", "attn_qk", "attn_av") or s.groups == 1)
        if s.op in ("linear", "layernorm", "add_layernorm"):
            assert 64 <= s.in_ch <= 1024
    assert {s.res for s in specs if s.op == "linear"} & {784, 3136}  # ConvNeXt's channels-last MLPs
    # the campaign interleaves both kinds; a larger campaign keeps a smaller one's kernels
    small, big = kernel_tasks(30, 0, 1, 10), kernel_tasks(40, 0, 1, 20)
    assert {t.key for t in small} < {t.key for t in big}
    kinds = ["_b1_" in t.key and t.key.split("_b1_")[0] in TOKEN_OPS for t in big]
    assert sum(kinds) == 20 and any(kinds[:5]) and any(kinds[-10:])


def test_sampler_ranges_and_uniqueness():
    specs = KernelSampler(0).sample(1500)
    assert len(set(specs)) == len(specs)
    assert {s.op for s in specs} == set(KernelSampler.OP_SET) == set(OPS) - set(TOKEN_OPS) - set(EXTRA_OPS)
    counts = {op: sum(s.op == op for s in specs) for op in OPS}
    assert counts["pwconv"] > counts["relu"] and counts["conv"] > counts["mul"]
    mult8 = 0
    for s in specs:
        assert s.macs <= 400_000_000
        assert s.batch == 1
        if s.op == "gemm":
            assert 64 <= s.in_ch <= 4096 and 10 <= s.out_ch <= 4096
            continue
        assert 7 <= s.res <= 224
        assert s.in_ch == 3 or 8 <= s.in_ch <= 1024
        assert 8 <= s.out_ch <= 1024 * 4  # concat output may be n * in_ch
        assert s.kernel in (1, 2, 3, 5, 7) and s.stride in (1, 2)
        assert 1 <= s.groups <= s.in_ch
        mult8 += s.in_ch % 8 == 0
        if s.res >= 100:  # big spatial goes with few channels
            assert s.in_ch <= 96
    assert mult8 / sum(s.op != "gemm" for s in specs) > 0.7
    convs = [s for s in specs if s.op in CONV_OPS]
    assert {1, 3, 5, 7} <= {s.kernel for s in convs}
    assert any(s.op == "gconv" and 1 < s.groups < s.in_ch for s in specs)
    spatial = [s.res for s in specs if s.op != "gemm"]
    assert max(spatial) > 100 and min(spatial) == 7


def test_sampler_options():
    specs = KernelSampler(1, op_weights={"dwconv": 1.0}, batches=(1, 4), max_macs=2_000_000).sample(60)
    assert {s.op for s in specs} == {"dwconv"}
    assert {s.batch for s in specs} == {1, 4}
    assert all(s.macs <= 2_000_000 for s in specs)
    with pytest.raises(ValueError, match="kernel ops lstm are not drawn"):
        KernelSampler(0, op_weights={"lstm": 1.0})
    with pytest.raises(ValueError, match="unique"):
        KernelSampler(0, op_weights={"gemm": 1.0}, max_macs=1).sample(1)


def test_sampled_specs_build_and_run():
    specs = KernelSampler(3).sample(40)
    for spec in specs:
        model = build_kernel_onnx(spec, seed=1)
        onnx.checker.check_model(model)
        assert onnx_macs(model) == spec.macs
    small = sorted(specs, key=lambda s: s.macs + math.prod(s.output_shape))[:15]
    for spec in small:
        assert _run(spec, build_kernel_onnx(spec)).shape == spec.output_shape


def test_lrn_spec_key_cost_and_rules():
    s = KernelSpec("lrn", in_ch=64, res=56, kernel=5)
    assert s.key == "lrn_b1_i64_o64_r56_k5_s1_g1" and KernelSpec.parse(s.key) == s
    assert KernelSpec.from_dict(s.to_dict()) == s
    assert s.output_shape == s.input_shape == (1, 64, 56, 56)
    assert s.macs == 64 * 56 * 56 * 5  # a window of `size` squares per output element
    assert s.input_bytes == s.output_bytes == 4 * 64 * 56 * 56 and s.params == 0
    assert onnx_macs(build_kernel_onnx(s)) == 0  # model-level MACs count convolutions and matrix products only
    with pytest.raises(ValueError, match="odd"):
        KernelSpec("lrn", in_ch=8, res=8, kernel=4)
    with pytest.raises(ValueError, match="stride"):
        KernelSpec("lrn", in_ch=8, res=8, kernel=3, stride=2)
    with pytest.raises(ValueError, match="out_ch"):
        KernelSpec("lrn", in_ch=8, out_ch=16, res=8, kernel=3)
    with pytest.raises(ValueError, match="groups"):
        KernelSpec.parse("lrn_b1_i8_o8_r8_k3_s1_g2")


def test_lrn_graph_is_one_lrn_node_computing_lrn():
    spec = EXAMPLES["lrn"]
    m = build_kernel_onnx(spec)
    (node,) = m.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == "LRN" and attrs["size"] == 5 and attrs["bias"] == 1.0
    x = np.random.default_rng(1).standard_normal(spec.input_shape).astype(np.float32)
    sq = np.pad(x**2, ((0, 0), (2, 2), (0, 0), (0, 0)))  # the window runs across channels
    window = sum(sq[:, i : i + spec.in_ch] for i in range(5))
    want = x / (attrs["bias"] + attrs["alpha"] / 5 * window) ** attrs["beta"]
    assert np.allclose(_session(m).run(None, {"input": x})[0], want, rtol=1e-5, atol=1e-6)


def test_lrn_sampler_shapes_and_stream():
    specs = LrnKernelSampler(0).sample(150)
    assert specs == LrnKernelSampler(0).sample(150) != LrnKernelSampler(1).sample(150)
    s = LrnKernelSampler(0, batches=(4,))
    assert s.sample(100) + s.sample(50) == LrnKernelSampler(0, batches=(4,)).sample(150)
    assert len(set(specs)) == 150 and {x.op for x in specs} == {"lrn"} and {x.kernel for x in specs} == {3, 5}
    assert all(16 <= x.in_ch <= 512 and 7 <= x.res <= 112 and x.batch == 1 for x in specs)
    assert {55, 56} & {x.res for x in specs}  # AlexNet's and GoogLeNet's maps
    with pytest.raises(ValueError, match="not drawn by LrnKernelSampler"):
        LrnKernelSampler(0, op_weights={"conv": 1.0})


def test_campaign_adds_lrn_kernels_and_leaves_the_other_streams_as_they_were():
    import hashlib

    from hwnas.profile.campaign import kernel_tasks

    old = [t.key for t in kernel_tasks(40, 3, 4, 20)]
    # the list of the version before LRN kernels existed, frozen: profiles grow by --resume
    assert hashlib.sha256("\n".join(old).encode()).hexdigest()[:16] == "46814cbe49c2431b"
    assert [t.key for t in kernel_tasks(40, 3, 4, 20, 0)] == old
    new = kernel_tasks(40, 3, 4, 20, 6)
    lrn = [t for t in new if t.key.startswith("lrn_")]
    assert len(new) == 66 and len(lrn) == 6 and [t.key for t in new if not t.key.startswith("lrn_")] == old
    assert all(KernelSpec.parse(t.key).batch == 4 and t.macs == KernelSpec.parse(t.key).macs for t in lrn)
    keys = [t.key for t in new]
    assert keys.index(lrn[0].key) < 5 and keys.index(lrn[-1].key) > 50  # interleaved, not appended
    assert {t.key for t in kernel_tasks(40, 3, 4, 20, 3)} < set(keys)  # its own stream grows too


def test_patch_conv_spec_key_cost_and_rules():
    s = KernelSpec("patch_conv", in_ch=3, out_ch=192, res=224, kernel=16)
    assert s.key == "patch_conv_b1_i3_o192_r224_k16_s16_g1" and KernelSpec.parse(s.key) == s
    assert KernelSpec.from_dict(s.to_dict()) == s
    assert s.pad == 0 and s.output_shape == (1, 192, 14, 14)
    assert s.macs == 192 * 14 * 14 * 3 * 16 * 16 and s.params == 192 * 3 * 16 * 16 + 192
    assert onnx_macs(build_kernel_onnx(s)) == s.macs
    d = KernelSpec("patch_conv", in_ch=96, out_ch=192, res=56, kernel=2)  # ConvNeXt's downsampling: even kernel
    assert d.stride == 2 and d.output_shape == (1, 192, 28, 28)
    for bad, what in ((dict(kernel=1), "kernel"), (dict(kernel=4, stride=2), "stride"), (dict(kernel=4, groups=3), "groups"),
                      (dict(kernel=64), "no output")):
        with pytest.raises(ValueError, match=what):
            KernelSpec("patch_conv", **{"in_ch": 3, "out_ch": 48, "res": 32, **bad})
    with pytest.raises(ValueError, match="out_ch is required"):
        KernelSpec("patch_conv", in_ch=3, res=32, kernel=4)


def test_patch_conv_graph_convolves_non_overlapping_patches():
    spec = EXAMPLES["patch_conv"]
    m = build_kernel_onnx(spec, seed=2)
    (node,) = m.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == "Conv" and attrs["kernel_shape"] == [8, 8] and attrs["strides"] == [8, 8]
    assert attrs["pads"] == [0, 0, 0, 0]
    w, b = (onnx.numpy_helper.to_array(t) for t in m.graph.initializer)
    x = np.random.default_rng(1).standard_normal(spec.input_shape).astype(np.float32)
    # each output pixel is one 8x8 patch times the weights: a patch embedding as a matrix product
    patches = x.reshape(1, 3, 4, 8, 4, 8).transpose(0, 2, 4, 1, 3, 5).reshape(16, 3 * 64)
    want = (patches @ w.reshape(24, -1).T + b).T.reshape(1, 24, 4, 4)
    assert np.allclose(_session(m).run(None, {"input": x})[0], want, rtol=1e-4, atol=1e-4)


def test_patch_sampler_shapes_and_stream():
    specs = PatchKernelSampler(0).sample(120)
    assert specs == PatchKernelSampler(0).sample(120) != PatchKernelSampler(1).sample(120)
    s = PatchKernelSampler(0, batches=(2,))
    assert s.sample(80) + s.sample(40) == PatchKernelSampler(0, batches=(2,)).sample(120)
    assert len(set(specs)) == 120 and {x.op for x in specs} == {"patch_conv"}
    assert all(x.stride == x.kernel and x.out_res >= 1 and x.macs <= 400_000_000 for x in specs)
    stems = [x for x in specs if x.in_ch == 3]
    assert {4, 16} <= {x.kernel for x in stems} and 0.3 < len(stems) / len(specs) < 0.7
    assert {x.kernel for x in specs if x.in_ch != 3} <= {2, 4} and 2 in {x.kernel for x in specs}
    with pytest.raises(ValueError, match="not drawn by PatchKernelSampler"):
        PatchKernelSampler(0, op_weights={"lrn": 1.0})


def test_campaign_adds_patch_kernels_and_leaves_the_other_streams_as_they_were():
    from hwnas.profile.campaign import kernel_tasks

    old = [t.key for t in kernel_tasks(40, 3, 4, 20, 6)]
    assert [t.key for t in kernel_tasks(40, 3, 4, 20, 6, 0)] == old
    new = kernel_tasks(40, 3, 4, 20, 6, 8)
    patch = [t for t in new if t.key.startswith("patch_conv_")]
    assert len(new) == 74 and len(patch) == 8 and [t.key for t in new if not t.key.startswith("patch_conv_")] == old
    assert all(KernelSpec.parse(t.key).batch == 4 and t.macs == KernelSpec.parse(t.key).macs for t in patch)
    keys = [t.key for t in new]
    assert keys.index(patch[0].key) < 5 and keys.index(patch[-1].key) > 60  # interleaved, not appended


def test_fc_sampler_draws_classifier_heads_beyond_the_cnn_sampler():
    specs = FcKernelSampler(0).sample(40)
    assert specs == FcKernelSampler(0).sample(40) != FcKernelSampler(1).sample(40)
    assert {x.op for x in specs} == {"gemm"} and all(4096 <= x.in_ch <= 25088 and 512 <= x.out_ch <= 4096 for x in specs)
    assert {9216, 25088} & {x.in_ch for x in specs} and max(x.weight_bytes for x in specs) > 100e6
    cnn = KernelSampler(0, op_weights={"gemm": 1.0}).sample(200)
    assert max(x.in_ch for x in cnn) <= 4096 < max(x.in_ch for x in specs)  # what the CNN sampler never draws
    from hwnas.profile.campaign import kernel_tasks

    old = [t.key for t in kernel_tasks(40, 3, 4, 20, 6, 8)]
    new = [t.key for t in kernel_tasks(40, 3, 4, 20, 6, 8, 4)]
    assert [k for k in new if k not in {s.key for s in FcKernelSampler(3, batches=(4,)).sample(4)}] == old
