"""LRN (LocalResponseNormalization, AlexNet / GoogLeNet) in the kernel predictor: family, MACs, static
shapes, and the fallback warning of a predictor that never saw one (all fast, no profile)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import conv_then, fitted_kernel_predictor, kernel_signature
from hwnas.devices import load_device
from hwnas.measure import KernelRecord
from hwnas.predictors.kernel import KernelPredictor, UncoveredOpsWarning
from hwnas.predictors.kernel_features import (FEATURE_NAMES, OP_CODES, featurize, featurize_records, kernel_family,
                                              optimized_kernels)

LRN_ATTRS = {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}


def test_lrn_is_a_windowed_pool_with_its_window_as_macs():
    x = (1, 64, 56, 56)
    row = featurize("LRN", [x], [x], LRN_ATTRS, "lrn1")
    f = dict(zip(FEATURE_NAMES, row.features))
    assert row.family == kernel_family("LRN", [x]) == "pool"
    assert f["log_macs"] == pytest.approx(np.log2(64 * 56 * 56 * 5 + 1))  # out elements x size
    assert f["kernel"] == 5 and f["stride"] == 1 and f["log_weight_elems"] == 0
    assert row.work == 4.0 * 2 * 64 * 56 * 56  # a pool's work: bytes moved
    # appended after every older op code: saved predictors keep their codes' meaning
    assert OP_CODES["LRN"] == max(v for k, v in OP_CODES.items() if k not in ("Attention", "MultiHeadAttention"))
    assert f["op_code"] == OP_CODES["LRN"]
    assert OP_CODES["LRN"] > max(OP_CODES[o] for o in ("MaxPool", "NhwcMaxPool", "FastGelu"))
    assert kernel_family("LpNormalization", [x]) is None


def test_lrn_model_kernels_from_static_shapes_equal_a_profiled_run():
    dev = load_device("cpu-1t")
    m = conv_then("LRN", **LRN_ATTRS)
    static = optimized_kernels(m, dev)
    assert all(r.duration_ms == 0.0 for r in static)  # no run: the static path knows LRN's shape
    traced = optimized_kernels(m, dev, static=False)
    assert kernel_signature(static) == kernel_signature(traced)
    rows, uncovered = featurize_records(static)
    (lrn,) = [r for r in rows if r.op_type == "LRN"]
    assert not uncovered and lrn.family == "pool"
    assert lrn.features[FEATURE_NAMES.index("log_macs")] == pytest.approx(np.log2(16 * 12 * 12 * 5 + 1))


def _fitted(op_base: dict[str, float]) -> KernelPredictor:
    return fitted_kernel_predictor({"conv": 0.0, "pool": 0.1}, op_base)


def _records() -> list[KernelRecord]:
    x, w = (1, 16, 12, 12), (16, 16, 3, 3)
    return [KernelRecord("conv", "Conv", "", (x, w), (x,), {"kernel_shape": [3, 3], "strides": [1, 1]}, 0.0, 0),
            KernelRecord("lrn", "LRN", "", (x,), (x,), dict(LRN_ATTRS), 0.0, 1),
            KernelRecord("lpnorm", "LpNormalization", "", (x,), (x,), {"axis": 1, "p": 2}, 0.0, 2)]


def _warned_ops(kp: KernelPredictor) -> tuple[dict, str]:
    preds = kp._predict_records(_records())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        KernelPredictor._warn_uncovered(preds, "m")
    (msg,) = [str(x.message) for x in w if issubclass(x.category, UncoveredOpsWarning)]
    return {p.op_type: p for p in preds}, msg


def test_uncovered_ops_warning_names_lrn_only_while_the_fit_never_saw_one():
    conv, pool = f"conv:{OP_CODES['Conv']}", f"pool:{OP_CODES['MaxPool']}"
    # fitted before LRN kernels were measured: LRN is priced and named as before it was covered
    before, msg = _warned_ops(_fitted({conv: 0.0, pool: 0.0}))
    nbytes = 4.0 * 2 * 16 * 12 * 12
    assert before["LRN"].fallback and before["LRN"].family == "uncovered"
    assert before["LRN"].relative == pytest.approx(np.exp(-2.0) * nbytes)  # the bytes-moved fallback
    assert "LRN" in msg and "LpNormalization" in msg
    # fitted with LRN kernels: the pool family prices it at its own base rate; only unknown ops are named
    after, msg = _warned_ops(_fitted({conv: 0.0, pool: 0.0, f"pool:{OP_CODES['LRN']}": 0.5}))
    assert not after["LRN"].fallback and after["LRN"].family == "pool"
    assert after["LRN"].relative == pytest.approx(np.exp(0.1 + 0.5) * nbytes)
    assert "LpNormalization" in msg and "LRN" not in msg
    assert after["LpNormalization"].family == "uncovered" and after["LpNormalization"].fallback
    # a predictor saved before per-op base rates (no op_base) never saw LRN either
    assert _warned_ops(_fitted({}))[0]["LRN"].fallback


def test_an_lrn_the_fit_never_saw_stays_out_of_the_model_context(monkeypatch):
    """As before LRN was covered, its bytes do not count in the model-context features either, so a
    saved predictor prices the model's other kernels exactly as it did."""
    import hwnas.predictors.kernel as kmod

    sizes, context_of = [], kmod._context_of
    monkeypatch.setattr(kmod, "_context_of", lambda f: sizes.append(len(f)) or context_of(f))
    conv, pool = f"conv:{OP_CODES['Conv']}", f"pool:{OP_CODES['MaxPool']}"
    _fitted({conv: 0.0, pool: 0.0})._predict_records(_records())
    _fitted({conv: 0.0, pool: 0.0, f"pool:{OP_CODES['LRN']}": 0.5})._predict_records(_records())
    assert sizes == [1, 2]  # the conv alone; then the conv and the LRN

