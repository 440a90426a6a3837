"""Torch and ONNX builders compute the same function; part graphs run and have the right shapes."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwnas.builders.onnx_graph import (
    IR_VERSION,
    OPSET,
    build_block_onnx,
    build_head_onnx,
    build_onnx,
    build_stem_onnx,
)
from hwnas.builders.torch_model import (
    build_torch,
    build_torch_block,
    build_torch_head,
    build_torch_stem,
)
from hwnas.layers import BlockSpec, plan
from hwnas.space import DEFAULT_SPACE, Arch

ATOL = 1e-4


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _session(model).run(["output"], {"input": x})[0]


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    """Variance-preserving random weights and non-trivial BN statistics/affine, eval mode.

    Default torch init shrinks activations layer by layer; here convs get He-normal weights,
    every BN a random affine and running stats (so BN folding is really exercised), and the
    last BN of residual blocks a small gamma so magnitudes stay O(1) through ~20 blocks.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                small = name.endswith("project.bn")
                lo, hi = (0.1, 0.4) if small else (0.6, 1.4)
                m.weight.copy_(lo + (hi - lo) * torch.rand(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
    return module.eval()


def _input(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _torch_out(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _with_res(arch: Arch, res: int) -> Arch:
    return Arch(res, arch.width_mult, arch.stages)


_W12 = next(a for a in DEFAULT_SPACE.sample_many(20, seed=7) if a.width_mult == 1.2)
_W10 = next(a for a in DEFAULT_SPACE.sample_many(20, seed=8) if a.width_mult == 1.0)
ARCHS = {
    "smallest": DEFAULT_SPACE.smallest(),  # r128, w1.0
    "largest_r128": _with_res(DEFAULT_SPACE.largest(), 128),
    "sample_w1.2_r128": _with_res(_W12, 128),
    "sample_w1.0_r160": _with_res(_W10, 160),
    "largest": DEFAULT_SPACE.largest(),  # r224, w1.2
}


# -- full networks --------------------------------------------------------------------------------
@pytest.mark.parametrize("idx,name", list(enumerate(ARCHS)))
def test_torch_and_onnx_agree(idx: int, name: str) -> None:
    arch = ARCHS[name]
    model = _randomize(build_torch(arch), seed=100 + idx)
    proto = build_onnx(arch, weights=model.state_dict())
    onnx.checker.check_model(proto)
    x = _input((1, 3, arch.resolution, arch.resolution))
    ref = _torch_out(model, x)
    got = _run(proto, x)
    assert got.shape == ref.shape == (1, 1000)
    assert ref.std() > 0.05, "reference output degenerate; the comparison would be vacuous"
    np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)


def test_batch_and_classes() -> None:
    arch = ARCHS["smallest"]
    model = _randomize(build_torch(arch, n_classes=10), seed=3)
    proto = build_onnx(arch, batch=2, n_classes=10, weights=model.state_dict())
    x = _input((2, 3, 128, 128))
    got = _run(proto, x)
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, _torch_out(model, x), atol=ATOL, rtol=0)


def test_graph_interface() -> None:
    arch = ARCHS["sample_w1.2_r128"]
    proto = build_onnx(arch, batch=3)
    onnx.checker.check_model(proto)
    assert proto.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "input" and out.name == "output"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [3, 3, 128, 128]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [3, 1000]
    assert not {i.name for i in proto.graph.initializer} & {"input", "output"}
    names = [n.name for n in proto.graph.node]
    assert len(names) == len(set(names)) and all(names)
    assert {"stem", "blocks.0.dw", "blocks.1.expand", "head.classifier"} <= set(names)
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= {"Conv", "Relu", "HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add", "Flatten", "Gemm"}
    assert "BatchNormalization" not in ops
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    assert [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim] == [3, 1000]


def test_params_match_arch() -> None:
    from hwnas.cost import arch_cost

    arch = ARCHS["sample_w1.0_r160"]
    proto = build_onnx(arch)
    n_init = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    # folding removes BN (2 params per channel) but adds one bias per folded conv (1 per channel)
    n_bn_channels = sum(m.num_features for m in build_torch(arch).modules() if isinstance(m, nn.BatchNorm2d))
    assert n_init == arch_cost(arch).params - n_bn_channels


def test_random_weights_seeded_finite_nondegenerate() -> None:
    arch = ARCHS["largest"]
    a, b, c = build_onnx(arch, seed=0), build_onnx(arch, seed=0), build_onnx(arch, seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.graph.initializer[0].raw_data != c.graph.initializer[0].raw_data
    x = _input((1, 3, 224, 224))
    y = _run(a, x)
    assert np.isfinite(y).all()
    assert 0.05 < y.std() < 100.0


# -- parts ----------------------------------------------------------------------------------------
_LARGE = plan(DEFAULT_SPACE.largest())
BLOCK_CASES = {
    "first_e1_residual": _LARGE.first_block,
    "s2_relu": _LARGE.blocks[0],  # stage 1 first block: stride 2, relu, no SE
    "se_hswish_residual": _LARGE.blocks[13],  # stage 4 second block
    "s2_se_hswish": _LARGE.blocks[16],  # stage 5 first block
    "se_relu_residual_small": BlockSpec(16, 24, 24, 5, 3, 1, "relu", True),
}


def test_block_cases_cover_features() -> None:
    c = BLOCK_CASES
    assert c["first_e1_residual"].expand == 1 and c["first_e1_residual"].residual
    assert c["s2_relu"].stride == 2 and c["s2_relu"].act == "relu" and not c["s2_relu"].se
    s = c["se_hswish_residual"]
    assert s.se and s.act == "hswish" and s.residual
    s = c["s2_se_hswish"]
    assert s.stride == 2 and s.se and s.act == "hswish"


@pytest.mark.parametrize("name", list(BLOCK_CASES))
def test_block_matches_torch(name: str) -> None:
    spec = BLOCK_CASES[name]
    block = _randomize(build_torch_block(spec), seed=11)
    proto = build_block_onnx(spec, batch=2, weights=block.state_dict())
    onnx.checker.check_model(proto)
    x = _input((2, spec.in_ch, spec.in_res, spec.in_res))
    got = _run(proto, x)
    assert got.shape == (2, spec.out_ch, spec.out_res, spec.out_res)
    np.testing.assert_allclose(got, _torch_out(block, x), atol=ATOL, rtol=0)


def test_stem_and_head_match_torch() -> None:
    p = plan(ARCHS["sample_w1.2_r128"])
    stem = _randomize(build_torch_stem(p.stem), seed=5)
    x = _input((1, 3, p.stem.in_res, p.stem.in_res))
    np.testing.assert_allclose(
        _run(build_stem_onnx(p.stem, weights=stem.state_dict()), x), _torch_out(stem, x), atol=ATOL, rtol=0
    )
    head = _randomize(build_torch_head(p.head), seed=6)
    x = _input((1, p.head.in_ch, p.head.in_res, p.head.in_res))
    np.testing.assert_allclose(
        _run(build_head_onnx(p.head, weights=head.state_dict()), x), _torch_out(head, x), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("batch", [1, 4])
def test_part_graphs_random_weights_shapes(batch: int) -> None:
    p = plan(ARCHS["sample_w1.2_r128"])
    parts = [(build_stem_onnx(p.stem, batch=batch), (3, p.stem.in_res), (batch, p.stem.out_ch, p.stem.out_res, p.stem.out_res))]
    for spec in p.all_blocks():
        parts.append(
            (build_block_onnx(spec, batch=batch), (spec.in_ch, spec.in_res), (batch, spec.out_ch, spec.out_res, spec.out_res))
        )
    h = p.head
    parts.append((build_head_onnx(h, batch=batch), (h.in_ch, h.in_res), (batch, h.n_classes)))
    for proto, (c, r), out_shape in parts:
        onnx.checker.check_model(proto)
        assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "output"
        y = _run(proto, _input((batch, c, r, r)))
        assert y.shape == out_shape
        assert np.isfinite(y).all() and y.std() > 1e-3


def test_block_node_names() -> None:
    proto = build_block_onnx(BLOCK_CASES["se_hswish_residual"])
    names = [n.name for n in proto.graph.node]
    assert names == [
        "block.expand", "block.expand.act", "block.dw", "block.dw.act",
        "block.se.pool", "block.se.reduce", "block.se.relu", "block.se.expand", "block.se.gate", "block.se.mul",
        "block.project", "block.add",
    ]  # fmt: skip
    assert proto.graph.node[-1].output[0] == "output"


def test_missing_weight_is_named() -> None:
    spec = BLOCK_CASES["s2_relu"]
    sd = build_torch_block(spec).state_dict()
    del sd["dw.bn.running_var"]
    with pytest.raises(KeyError, match="'dw.bn.running_var'"):
        build_block_onnx(spec, weights=sd)
