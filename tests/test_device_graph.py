"""The ``transformer_fusion`` device option: ``onnxruntime.transformers``' fusions before timing or predicting."""

from __future__ import annotations

import collections
import dataclasses
import warnings

import onnx
import pytest

from hwnas.device_graph import attention_shape, device_graph, fuse_transformer
from hwnas.devices import TRANSFORMER_FUSIONS, DeviceSpec, load_device
from hwnas.errors import InputError
from hwnas.zoo_transformers import build_bert, build_vit


def _bert_device() -> DeviceSpec:
    return dataclasses.replace(load_device("cpu-1t"), name="cpu-1t-bert", transformer_fusion="bert")


def test_the_option_is_validated_and_older_specs_mean_none():
    d = load_device("cpu-1t")
    assert d.transformer_fusion == "none" and "none" in TRANSFORMER_FUSIONS
    old = d.to_dict()
    del old["transformer_fusion"]  # a spec (or a profile's stored device) from before the option
    assert DeviceSpec.from_dict(old) == d
    with pytest.raises(InputError, match="transformer_fusion"):
        DeviceSpec.from_dict({**d.to_dict(), "transformer_fusion": "berty"})
    assert _bert_device().to_dict()["transformer_fusion"] == "bert"


def test_none_passes_the_model_itself():
    m = build_bert(width=64, depth=1, heads=2, resolution=16)
    assert fuse_transformer(m, "none") is m
    assert device_graph(m, load_device("cpu-1t")) is m


def test_bert_fusion_rewrites_a_copy_and_the_kernels_follow():
    from hwnas.predictors.kernel_features import optimized_kernels

    m = build_bert(width=64, depth=2, heads=2, resolution=16)
    before = m.graph.SerializeToString()
    fused = fuse_transformer(m, "bert")
    assert m.graph.SerializeToString() == before  # the caller's graph is left alone
    assert len(fused.graph.node) < len(m.graph.node)  # LayerNorm + residual, GELU + bias fused
    ops = collections.Counter(n.op_type for n in fused.graph.node)
    assert ops["SkipLayerNormalization"] >= 2
    # a device with the option predicts (and measures) the fused graph
    plain = collections.Counter(r.op_type for r in optimized_kernels(m, load_device("cpu-1t")))
    dev = collections.Counter(r.op_type for r in optimized_kernels(m, _bert_device()))
    assert dev != plain and sum(dev.values()) < sum(plain.values())


def test_heads_and_width_are_read_from_the_graph():
    assert attention_shape(build_bert(width=96, depth=1, heads=3, resolution=16)) == (3, 96)
    # timm's packed split, (batch, tokens, 3, heads, head size): the width only; the optimizer looks for heads
    assert attention_shape(build_vit(width=64, depth=1, heads=4, patch=16, resolution=32)) == (0, 64)
    from hwnas.zoo_sealed import model_by_name

    assert attention_shape(model_by_name("resnet10_w0.25_r112").build()) == (0, 0)  # no transformer: 0, 0


def test_a_graph_the_optimizer_cannot_take_runs_unfused_with_a_warning():
    m = build_vit(width=64, depth=1, heads=2, patch=16, resolution=32)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fuse_transformer(m, "bert")
    if [x for x in w if "left this model unfused" in str(x.message)]:
        assert out.graph.SerializeToString() == m.graph.SerializeToString()
    else:  # this ORT's optimizer took it: then it rewrote a copy
        assert out is not m
