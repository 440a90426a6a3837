"""Sealed families: listed before any result, built like the zoo, valid and runnable graphs."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.onnx_io import onnx_macs
from hwnas.zoo import candidates, families
from hwnas.zoo_sealed import _VARIANTS, OPENED_FAMILIES, SEALED_FAMILIES, model_by_name, sealed_models

BUILT = (*SEALED_FAMILIES, *OPENED_FAMILIES)

LIST = Path(__file__).resolve().parents[1] / "benchmarks" / "sealed_families.txt"


def test_sealed_list_file_matches_the_code_and_is_apart_from_the_tuning_families() -> None:
    listed = [ln.split()[0] for ln in LIST.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert tuple(listed) == SEALED_FAMILIES
    assert not set(SEALED_FAMILIES) & (set(families()) | set(OPENED_FAMILIES))
    names = [m.name for m in sealed_models(8)]
    assert len(set(names)) == len(names) == 8 * len(SEALED_FAMILIES)
    assert not set(names) & {m.name for m in candidates()}


@functools.lru_cache(maxsize=None)
def _smallest(family: str):
    m = _VARIANTS[family][0]
    return m, m.build()


@pytest.mark.parametrize("family", BUILT)
def test_smallest_builds_checks_and_runs(family: str) -> None:
    m, model = _smallest(family)
    onnx.checker.check_model(model, full_check=True)
    assert m.family == family and model.graph.name == f"zoo_{m.name}"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, m.resolution, m.resolution)).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    assert y.shape == (1, 1000) and np.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3


def _convs(model: onnx.ModelProto) -> list[dict]:
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            out.append({a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
    return out


def test_family_structures_present() -> None:
    """What makes each sealed family itself is in its graph."""
    ops = {f: {n.op_type for n in _smallest(f)[1].graph.node} for f in BUILT}
    weights = {t.name: t.dims for t in _smallest("regnetx")[1].graph.initializer}
    grouped = [n for n in _smallest("regnetx")[1].graph.node
               if n.op_type == "Conv" and 1 < dict((a.name, a.i) for a in n.attribute)["group"]]
    assert grouped and all(weights[n.input[1]][1] == 8 for n in grouped)  # group width 8, not depthwise
    assert {"Concat", "HardSigmoid", "Mul"} <= ops["ghostnet"]
    assert {"LayerNormalization", "Erf", "MatMul", "Transpose"} <= ops["convnext"]
    assert any(c["kernel_shape"] == [7, 7] and c["group"] > 1 for c in _convs(_smallest("convnext")[1]))
    mnas = _convs(_smallest("mnasnet")[1])
    assert any(c["kernel_shape"] == [5, 5] and c["strides"] == [2, 2] and c["group"] > 1 for c in mnas)
    xc = _smallest("xception")[1]
    bias_free_dw = [n for n in xc.graph.node if n.op_type == "Conv" and len(n.input) == 2]
    assert bias_free_dw and all(dict((a.name, a.i) for a in n.attribute)["group"] > 1 for n in bias_free_dw)
    assert {"MaxPool", "Add"} <= ops["xception"]
    sqnxt = [c["kernel_shape"] for c in _convs(_smallest("squeezenext")[1])]
    assert [3, 1] in sqnxt and [1, 3] in sqnxt


@pytest.mark.parametrize("family", BUILT)
def test_candidates_ordered_by_macs(family: str) -> None:
    macs = [onnx_macs(m.build()) for m in _VARIANTS[family]]
    assert macs == sorted(macs) and 10e6 < macs[0] and macs[-1] < 2e9


def test_model_by_name_and_campaign_tasks() -> None:
    from hwnas.profile.campaign import zoo_tasks

    m = sealed_models(1)[0]
    assert model_by_name(m.name) == m and model_by_name(candidates()[0].name) == candidates()[0]
    with pytest.raises(KeyError):
        model_by_name("no_such_model")
    assert zoo_tasks(0) == []  # --zoo-per-family 0: no zoo part
    keys = [t.key for t in zoo_tasks(1)]
    assert keys[-len(SEALED_FAMILIES):] == [f"zoo:{m.name}" for m in sealed_models(1)]  # one per family: in order
    from hwnas.zoo_transformers import TRANSFORMER_FAMILIES

    from hwnas.zoo_sealed import OPENED_FAMILIES

    assert len(keys) == len(families()) + len(OPENED_FAMILIES) + len(TRANSFORMER_FAMILIES) + len(SEALED_FAMILIES)
