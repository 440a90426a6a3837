"""Shape rules of the static kernel lister (:mod:`hwnas.predictors.static_shapes`) for single nodes."""

import numpy as np


def test_static_rules_of_transformer_ops():
    """LayerNorm (and ORT's Skip fusion, whose optional outputs are statistics or the skip sum),
    Reduce* with attribute or input axes and keepdims, Gather: the shapes of the ONNX spec."""
    import onnx
    from onnx import helper

    from hwnas.predictors.static_shapes import _infer

    def run(op, attrs, ins, outputs=("y",), consts=None, inputs=None, domain=""):
        node = helper.make_node(op, list(inputs or [f"i{k}" for k in range(len(ins))]), list(outputs), domain=domain)
        return _infer(node, attrs, ins, consts or {}, 8)

    x = (1, 50, 192)
    assert run("LayerNormalization", {"axis": -1}, [x, (192,), (192,)]) == [x]
    assert run("LayerNormalization", {"axis": 1}, [x, (50, 192), (50, 192)], ("y", "m", "s")) == [x, (1, 1, 1), (1, 1, 1)]
    assert run("SkipLayerNormalization", {}, [x, x, (192,), (192,)], ("y", "", "", "sum"),
               domain="com.microsoft") == [x, x]
    assert run("ReduceMean", {"axes": [1], "keepdims": 0}, [x]) == [(1, 192)]
    assert run("ReduceMean", {}, [(1, 64, 7, 7), (2,)], inputs=("x", "ax"),
               consts={"ax": np.array([2, 3])}) == [(1, 64, 1, 1)]
    assert run("Gather", {"axis": 1}, [x, ()]) == [(1, 192)]
    assert run("BiasGelu", {}, [x, (192,)], domain="com.microsoft") == [x]
    assert onnx.defs.has("LayerNormalization")
