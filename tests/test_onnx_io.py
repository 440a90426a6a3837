"""Loading user ONNX models: every error case, shape overrides, MACs and params."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwnas.errors import HwnasError, InputError
from hwnas.onnx_io import (
    LoadedModel,
    load_onnx,
    node_macs,
    onnx_macs,
    onnx_params,
    parse_input_shape,
    random_inputs,
)


def _conv_gemm_model(x_dims: list) -> onnx.ModelProto:
    """x (N,3,H,W) -> Conv 3->8 k3 s2 p1 -> Relu -> GlobalAveragePool -> Flatten -> Gemm 8->10."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv.w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "conv.b"),
        numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "conv_gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x_dims[0], 10])], initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# -- parse_input_shape --------------------------------------------------------------------------


def test_parse_input_shape():
    assert parse_input_shape("input=1,3,224,224") == ("input", [1, 3, 224, 224])
    assert parse_input_shape(" images = 2, 3, 32, 32 ") == ("images", [2, 3, 32, 32])
    assert parse_input_shape("a=b=7") == ("a=b", [7])


@pytest.mark.parametrize(
    "text, needle",
    [("1,3,224,224", "NAME="), ("=1,3", "name"), ("x=", "empty"), ("x=1,,3", "empty"),
     ("x=1,a,3", "'a' is not an integer"), ("x=1,0,3", "must be positive"), ("x=1,-3", "must be positive")],
)
def test_parse_input_shape_errors(text, needle):
    with pytest.raises(InputError, match=needle) as ei:
        parse_input_shape(text)
    assert "\n" not in str(ei.value)


# -- error cases ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as ei:
        load_onnx(tmp_path / "nope.onnx")
    assert "nope.onnx" in str(ei.value)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_onnx(tmp_path)


def test_unreadable(tmp_path, monkeypatch):
    p = _save(_conv_gemm_model([1, 3, 8, 8]), tmp_path / "m.onnx")
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):  # root reads anything: simulate the permission error
            def deny(self, *a, **k):
                raise PermissionError(13, "Permission denied", str(self))

            monkeypatch.setattr(Path, "open", deny)
        with pytest.raises(InputError, match="permission denied") as ei:
            load_onnx(p)
        assert "m.onnx" in str(ei.value)
    finally:
        os.chmod(p, 0o644)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\nnot a model\n", np.random.default_rng(0).bytes(4096), b"\x08\x07", b""],
    ids=["text", "garbage", "truncated", "empty"],
)
def test_not_onnx(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(InputError, match="not an ONNX model") as ei:
        load_onnx(p)
    assert "bad.onnx" in str(ei.value) and "\n" not in str(ei.value)


def test_invalid_graph(tmp_path):
    m = _conv_gemm_model([1, 3, 8, 8])
    m.graph.node[1].input[0] = "undefined_tensor"  # consumes a tensor nobody produces
    p = _save(m, tmp_path / "broken.onnx")
    with pytest.raises(InputError, match="not a valid ONNX graph") as ei:
        load_onnx(p)
    assert "\n" not in str(ei.value)


def test_dynamic_shape_error_names_input_and_dims(tmp_path):
    p = _save(_conv_gemm_model(["batch", 3, "height", "width"]), tmp_path / "dyn.onnx")
    with pytest.raises(InputError) as ei:
        load_onnx(p)
    msg = str(ei.value)
    assert "'x'" in msg and "batch" in msg and "height" in msg and "width" in msg
    assert "--input-shape x=1,3,224,224" in msg
    assert isinstance(ei.value, HwnasError) and "\n" not in msg


def test_symbolic_batch_alone_is_not_guessed(tmp_path):
    p = _save(_conv_gemm_model(["N", 3, 32, 32]), tmp_path / "dynbatch.onnx")
    with pytest.raises(InputError, match=r"dynamic dims N .*--input-shape x=1,3,32,32"):
        load_onnx(p)


def test_unknown_dim_and_missing_shape(tmp_path):
    m = _conv_gemm_model([1, 3, 32, 32])
    m.graph.input[0].type.tensor_type.shape.dim[2].Clear()
    with pytest.raises(InputError, match=r"'x' has dynamic dims \?"):
        load_onnx(_save(m, tmp_path / "unk.onnx"))
    m.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(InputError, match="'x' has no shape; pass --input-shape x="):
        load_onnx(_save(m, tmp_path / "noshape.onnx"))
    loaded = load_onnx(tmp_path / "noshape.onnx", {"x": [1, 3, 16, 16]})
    assert loaded.inputs[0].shape == (1, 3, 16, 16)


# -- overrides --------------------------------------------------------------------------------


def test_dynamic_shape_fixed_by_input_shapes(tmp_path):
    p = _save(_conv_gemm_model(["batch", 3, "h", "w"]), tmp_path / "dyn.onnx")
    loaded = load_onnx(p, {"x": [2, 3, 32, 32]})
    assert isinstance(loaded, LoadedModel) and loaded.path == p
    assert [(i.name, i.shape, i.dtype) for i in loaded.inputs] == [("x", (2, 3, 32, 32), np.dtype(np.float32))]
    out = loaded.model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [2, 10]
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in loaded.model.graph.value_info}
    assert shapes["c"] == [2, 8, 16, 16]
    feed = random_inputs(loaded, seed=0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(loaded.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert sess.run(None, feed)[0].shape == (2, 10)
    assert onnx_macs(loaded.model) == 2 * (16 * 16 * 8 * 3 * 9 + 8 * 10)


@pytest.mark.parametrize(
    "shapes, needle",
    [({"x": [1, 3, 32]}, "3 dims .* rank 4"), ({"x": [1, 4, 32, 32]}, "dim 1 to 4, but the model fixes it to 3"),
     ({"images": [1, 3, 32, 32]}, "no such input .*'x'"), ({"x": [1, 3, 0, 32]}, "positive")],
)
def test_bad_overrides(tmp_path, shapes, needle):
    p = _save(_conv_gemm_model(["batch", 3, "h", "w"]), tmp_path / "dyn.onnx")
    with pytest.raises(InputError, match=needle) as ei:
        load_onnx(p, shapes)
    assert "'x'" in str(ei.value) or "'images'" in str(ei.value)


def test_static_model_loads_and_override_matching_static_is_fine(tmp_path):
    p = _save(_conv_gemm_model([1, 3, 8, 8]), tmp_path / "static.onnx")
    assert load_onnx(p).inputs[0].shape == (1, 3, 8, 8)
    assert load_onnx(str(p), {"x": [1, 3, 8, 8]}).inputs[0].shape == (1, 3, 8, 8)


def test_initializers_listed_as_inputs_are_not_feeds(tmp_path):
    m = _conv_gemm_model([1, 3, 8, 8])
    m.graph.input.append(helper.make_tensor_value_info("conv.w", TensorProto.FLOAT, [8, 3, 3, 3]))
    loaded = load_onnx(_save(m, tmp_path / "oldir.onnx"))
    assert [i.name for i in loaded.inputs] == ["x"]


def test_random_inputs_seeded_and_typed(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    g = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "idf"], ["y"]),
        ],
        "two_inputs", [x, ids], [y],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    loaded = load_onnx(_save(m, tmp_path / "two.onnx"))
    a, b, c = random_inputs(loaded, 1), random_inputs(loaded, 1), random_inputs(loaded, 2)
    assert a["x"].dtype == np.float32 and a["ids"].dtype == np.int64
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], c["x"])
    assert not a["ids"].any()


# -- cost -------------------------------------------------------------------------------------


def test_macs_and_params_by_hand():
    m = _conv_gemm_model([1, 3, 32, 32])
    conv = 16 * 16 * 8 * (3 * 3 * 3)  # out elements * Cin/groups * kH * kW
    gemm = 1 * 10 * 8  # M * N * K
    per_node = {n.name: (n.op_type, n.macs, n.known) for n in node_macs(m)}
    assert per_node == {
        "conv": ("Conv", conv, True), "relu": ("Relu", 0, True), "pool": ("GlobalAveragePool", 0, True),
        "flatten": ("Flatten", 0, True), "fc": ("Gemm", gemm, True),
    }
    assert onnx_macs(m) == conv + gemm == 55_376
    assert onnx_params(m) == 8 * 27 + 8 + 80 + 10


def test_macs_grouped_conv_matmul_and_unknown_shapes():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4, 3, 3)).astype(np.float32), "w")  # groups 4
    b = numpy_helper.from_array(rng.standard_normal((2, 16, 5)).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="gconv", group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "b"], ["y"], name="matmul"),
    ]
    shape = numpy_helper.from_array(np.array([2, 8, 16], dtype=np.int64), "shape")  # (1,16,4,4)->(2,8,16)
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 5])], initializer=[w, b, shape],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(m)
    assert onnx_macs(m) == 16 * 4 * 4 * 4 * 9 + 2 * 8 * 5 * 16
    # with an unknown input dim the conv cannot be counted and says so
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
    conv = next(n for n in node_macs(m) if n.name == "gconv")
    assert conv.macs == 0 and not conv.known
