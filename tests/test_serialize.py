"""Fitted models exported to JSON, validated on load and re-predicted (hwnas.predictors.serialize):
gradient-boosted trees through scikit-learn's estimator rebuilt from the JSON and through
StackedGBM's traversal, the accuracy predictor's MLP with numpy."""

from __future__ import annotations

import ast
import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from hwnas.errors import HwnasError
from hwnas.predictors import compiled, jsonfile, serialize
from hwnas.predictors.serialize import (CompiledModel, ModelError, StackedGBM, export_mlp, export_model, import_model,
                                        load_json, save_json)

pytestmark = [
    pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning"),  # Ridge on raw 1e8-scale column
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),  # sklearn, 1e39
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),  # few-iteration MLPs
]

ROOT = Path(__file__).resolve().parent.parent
N_FEATURES = 5


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed features like latency tables: small integers, wide-range sizes, continuous values."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([
        rng.integers(1, 8, n).astype(float),           # e.g. kernel size / expand ratio
        rng.choice([16, 24, 32, 48, 64, 96], n) * 1.0,  # channels
        10 ** rng.uniform(3, 8, n),                     # MACs: float32 rounding matters here
        rng.normal(size=n),
        rng.uniform(-1, 1, n) * 1e-3,
    ])
    y = np.log(X[:, 2]) * (1 + 0.1 * X[:, 0]) + X[:, 1] / 16 + np.sin(3 * X[:, 3]) + rng.normal(0, 0.1, n)
    return X, y


X_TRAIN, Y_TRAIN = _data(300, seed=0)
X_FRESH, _ = _data(200, seed=1)


def _gbm(**kw):
    return GradientBoostingRegressor(n_estimators=40, max_depth=3, learning_rate=0.1, random_state=0, **kw)


GBMS = {
    "gbm": lambda: _gbm(),
    "gbm_subsample": lambda: _gbm(subsample=0.7, max_features=3),
    "gbm_early_stopping": lambda: GradientBoostingRegressor(n_estimators=200, n_iter_no_change=3,
                                                            validation_fraction=0.2, random_state=0),
}
_FITTED: dict = {}


def fitted(name: str):
    if name not in _FITTED:
        _FITTED[name] = GBMS[name]().fit(X_TRAIN, Y_TRAIN)
    return _FITTED[name]


def roundtrip(est) -> CompiledModel:
    """export -> strict JSON text -> parse -> import."""
    return import_model(json.loads(json.dumps(export_model(est), allow_nan=False)))


def threshold_probes(est, n_max: int = 400) -> np.ndarray:
    """Rows whose split feature sits exactly at, and one float64/float32 step around, thresholds."""
    rng = np.random.default_rng(2)
    splits = []
    for t in (e.tree_ for e in est.estimators_[:, 0]):
        internal = np.flatnonzero(t.children_left >= 0)
        splits += [(int(t.feature[i]), float(t.threshold[i])) for i in internal]
    rows = []
    for k in rng.permutation(len(splits))[: n_max // 6]:
        f, thr = splits[k]
        t32 = np.float32(thr)
        for v in (thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf),
                  float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                  float(np.nextafter(t32, np.float32(np.inf)))):
            row = X_FRESH[rng.integers(len(X_FRESH))].copy()
            row[f] = v
            rows.append(row)
    return np.array(rows).reshape(-1, N_FEATURES)


# ---- gradient-boosted trees -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(GBMS))
def test_gbm_predictions_bit_identical_to_sklearn_both_paths(name):
    """The traversal (alone and stacked) and the rebuilt scikit-learn estimator give the original
    estimator's figures to the last bit, at the thresholds too (trees see float32 X)."""
    est = fitted(name)
    model = roundtrip(est)
    probes = threshold_probes(est)
    assert len(probes) > 0
    for X in (X_FRESH, X_TRAIN[:50], probes, X_FRESH[:1]):
        want = est.predict(X)
        assert np.array_equal(model.predict(X), want)
        assert np.array_equal(model.traverse(X), want)
        assert np.array_equal(model.sklearn_estimator().predict(X), want)


def test_large_batches_go_through_sklearn_small_ones_through_the_traversal(monkeypatch):
    """predict switches at SKLEARN_MIN_ROWS; both sides give the original estimator's bits."""
    est = fitted("gbm")
    model = roundtrip(est)
    X = np.vstack([_data(3000, seed=7)[0], threshold_probes(est)])
    assert len(X) >= compiled.SKLEARN_MIN_ROWS
    want = est.predict(X)
    used = []
    monkeypatch.setattr(compiled.GBMModel, "traverse",
                        lambda self, X, orig=compiled.GBMModel.traverse: used.append("numpy") or orig(self, X))
    assert np.array_equal(model.predict(X), want) and used == []
    monkeypatch.setattr(compiled, "_SKLEARN_BLOCK", 7)  # blocks of rows: the same figures
    assert np.array_equal(model.predict(X[:600]), want[:600]) and used == []
    assert np.array_equal(model.predict(X[:compiled.SKLEARN_MIN_ROWS - 1]), want[:compiled.SKLEARN_MIN_ROWS - 1])
    assert used == ["numpy"]
    assert np.array_equal(model.traverse(X), want)


def test_float32_semantics_matter():
    """A value just above the threshold in float64 that rounds onto it in float32 must go left."""
    def stump(X, y):
        return GradientBoostingRegressor(n_estimators=1, max_depth=1, learning_rate=1.0).fit(X, y)

    est = stump(np.array([[0.0], [1.0]]), [0.0, 1.0])
    model = roundtrip(est)
    assert est.estimators_[0, 0].tree_.threshold[0] == 0.5
    above = np.nextafter(0.5, 1.0)  # > 0.5 in float64, == 0.5 in float32
    x = np.array([[above], [0.5], [np.nextafter(0.5, 0.0)], [0.5 + 1e-7], [0.5 + 1e-6]])
    assert est.predict(x)[0] == est.predict(x)[1]  # sklearn sends it left
    assert np.array_equal(model.predict(x), est.predict(x))
    assert np.array_equal(model.sklearn_estimator().predict(x), est.predict(x))
    # float32 rounding of large values (MACs): 16777217 rounds to 16777216 (ties to even)
    big = 16777217.0
    est = stump(np.array([[16777216.0], [16777218.0]]), [0.0, 1.0])
    model = roundtrip(est)
    assert est.estimators_[0, 0].tree_.threshold[0] == big
    x = np.array([[np.nextafter(big, np.inf)], [big], [16777216.0], [16777218.0], [np.nextafter(big, 0)]])
    assert np.array_equal(model.predict(x), est.predict(x))
    assert np.array_equal(model.sklearn_estimator().predict(x), est.predict(x))


def test_thresholds_and_values_roundtrip_exactly():
    est = fitted("gbm")
    d = json.loads(json.dumps(export_model(est)))
    for td, e in zip(d["trees"], est.estimators_[:, 0]):
        t = e.tree_
        assert np.array_equal(np.array(td["threshold"]), t.threshold)
        assert np.array_equal(np.array(td["value"]), t.value[:, 0, 0])
        assert np.array_equal(td["children_left"], t.children_left)
        assert np.array_equal(td["feature"], t.feature)


def test_header_learning_rate_and_init():
    est = fitted("gbm")
    d = export_model(est)
    assert (d["format"], d["version"], d["kind"], d["loss"]) == ("hwnas-model", 1, "gbm", "squared_error")
    assert d["n_features"] == N_FEATURES and d["learning_rate"] == 0.1
    assert d["init"] == pytest.approx(float(np.mean(Y_TRAIN)), rel=1e-12)
    assert d["n_estimators"] == len(d["trees"]) == 40
    m = import_model(d)
    assert m.kind == "gbm" and m.n_features == N_FEATURES and m.to_dict() == d
    es = fitted("gbm_early_stopping")
    assert export_model(es)["n_estimators"] == es.n_estimators_ < 200


def test_infinite_threshold_strings_load():
    """Non-finite thresholds (scikit-learn's missing-value splits) are saved as "inf" strings."""
    d = json.loads(json.dumps(export_model(fitted("gbm"))))
    t = d["trees"][0]
    t["threshold"][0] = "inf"  # the root now sends every finite row left
    model = import_model(d)
    x = X_FRESH[:20]
    assert np.array_equal(model.predict(x), model.sklearn_estimator().predict(x))
    t["threshold"][0] = "-inf"  # ... and now right
    model2 = import_model(d)
    assert not np.array_equal(model.predict(x), model2.predict(x))
    assert np.array_equal(model2.predict(x), model2.sklearn_estimator().predict(x))


def test_sklearn_estimator_is_rebuilt_once_and_is_sklearns():
    model = roundtrip(fitted("gbm"))
    est = model.sklearn_estimator()
    assert type(est) is GradientBoostingRegressor and est is model.sklearn_estimator()
    assert np.array_equal(est.predict(X_FRESH), fitted("gbm").predict(X_FRESH))


def test_stacked_gbms_equal_each_model_bit_for_bit(monkeypatch):
    """Several GBMs (different tree counts, depths, learning rates) in one traversal: every row
    gets exactly its own model's prediction (the kernel predictor's families)."""
    ests = [
        GradientBoostingRegressor(n_estimators=40, max_depth=3, learning_rate=0.1, random_state=0),
        GradientBoostingRegressor(n_estimators=25, max_depth=2, learning_rate=0.3, random_state=1),
        GradientBoostingRegressor(n_estimators=60, max_depth=4, learning_rate=0.05, subsample=0.8, random_state=2),
    ]
    for i, e in enumerate(ests):
        e.fit(X_TRAIN, Y_TRAIN + i)
    models = [roundtrip(e) for e in ests]
    stacked = StackedGBM(models)
    X = np.vstack([X_FRESH, X_TRAIN])
    which = np.random.default_rng(0).integers(0, 3, len(X))
    got = stacked.predict(X, which)
    for k, e in enumerate(ests):
        np.testing.assert_array_equal(got[which == k], e.predict(X[which == k]))
    monkeypatch.setattr(compiled, "_BLOCK", 600)  # 60 trees -> 10 rows per block
    np.testing.assert_array_equal(stacked.predict(X[:37], which[:37]), got[:37])
    assert stacked.predict(X[:0], which[:0]).shape == (0,)
    with pytest.raises(ModelError, match="model indices"):
        stacked.predict(X[:5], which[:4])
    with pytest.raises(ModelError, match="model indices"):
        stacked.predict(X[:2], np.array([0, 3]))
    with pytest.raises(ModelError, match="gradient-boosted"):
        StackedGBM([models[0], _mlp_model()])


def test_float32_threshold_rounding_is_exact():
    """x32 <= t (compared in float64, as in sklearn) iff x32 <= floor32(t), at the edges too."""
    rng = np.random.default_rng(4)
    f32 = np.finfo(np.float32)
    t = np.concatenate([
        rng.normal(size=200) * 10.0 ** rng.integers(-40, 39, 200),
        [0.0, -0.0, 1e-50, -1e-50, 1e-45, f32.tiny / 3, float(f32.max), float(f32.max) * 1.5,
         -float(f32.max) * 1.5, np.inf, -np.inf, 16777217.0, 0.5],
    ])
    t = np.concatenate([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)])
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
        x = np.concatenate([t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf))])
    x = x[np.isfinite(x)]
    floor = compiled._floor_float32(t)
    assert floor.dtype == np.float32
    for ti, fi in zip(t, floor):
        assert np.array_equal(x.astype(np.float64) <= ti, x <= fi), ti


# ---- the MLP --------------------------------------------------------------------------------


_MLP: dict = {}


def _mlp_parts():
    if not _MLP:
        sc = StandardScaler().fit(X_TRAIN)
        mu, sd = float(Y_TRAIN.mean()), float(Y_TRAIN.std())
        est = MLPRegressor(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(sc.transform(X_TRAIN), (Y_TRAIN - mu) / sd)
        _MLP.update(est=est, sc=sc, mu=mu, sd=sd)
    return _MLP


def _mlp_dict() -> dict:
    p = _mlp_parts()
    return json.loads(json.dumps(export_mlp(p["est"], p["sc"], p["mu"], p["sd"]), allow_nan=False))


def _mlp_model() -> CompiledModel:
    return import_model(_mlp_dict())


def test_mlp_predicts_as_sklearn():
    p = _mlp_parts()
    model = _mlp_model()
    assert model.kind == "mlp" and model.n_features == N_FEATURES
    for X in (X_FRESH, X_FRESH[:1]):
        want = p["est"].predict(p["sc"].transform(X)) * p["sd"] + p["mu"]
        np.testing.assert_allclose(model.predict(X), want, rtol=1e-12, atol=1e-12)
    assert model.to_dict() == _mlp_dict()


def test_export_mlp_rejects_what_it_cannot_reproduce():
    p = _mlp_parts()
    tanh = MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", max_iter=20, random_state=0)
    tanh.fit(p["sc"].transform(X_TRAIN), Y_TRAIN)
    for args in [(tanh, p["sc"]), (MLPRegressor(), p["sc"]), (p["est"], StandardScaler()),
                 (p["est"], StandardScaler(with_mean=False).fit(X_TRAIN)), (fitted("gbm"), p["sc"])]:
        with pytest.raises(ModelError):
            export_mlp(*args, 0.0, 1.0)


# ---- bad input to predict -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gbm", "mlp"])
def test_predict_rejects_bad_input(kind):
    model = roundtrip(fitted("gbm")) if kind == "gbm" else _mlp_model()
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros(N_FEATURES))
    with pytest.raises(ValueError):
        model.predict([["a"] * N_FEATURES])
    for bad in (np.inf, np.nan):
        Xi = X_FRESH[:3].copy()
        Xi[1, 2] = bad
        with pytest.raises(ModelError, match="infinity" if bad == np.inf else "NaN"):
            model.predict(Xi)
    assert model.predict(np.zeros((0, N_FEATURES))).shape == (0,)
    # lists are fine
    assert np.array_equal(model.predict(X_FRESH[:4].tolist()), model.predict(X_FRESH[:4]))


def test_gbm_rejects_values_overflowing_float32():
    model = roundtrip(fitted("gbm"))
    X = X_FRESH[:2].copy()
    X[0, 2] = 1e39
    with pytest.raises(ModelError, match="float32"):
        model.predict(X)
    with pytest.raises(ValueError):
        fitted("gbm").predict(X)


# ---- export refuses what hwnas does not save ------------------------------------------------


def test_export_rejects_unsupported():
    bad = [
        Ridge().fit(X_TRAIN, Y_TRAIN),
        DecisionTreeRegressor(max_depth=2).fit(X_TRAIN, Y_TRAIN),
        RandomForestRegressor(n_estimators=2, max_depth=2).fit(X_TRAIN, Y_TRAIN),
        Pipeline([("s", StandardScaler()), ("m", _gbm())]).fit(X_TRAIN, Y_TRAIN),
        GradientBoostingRegressor(),  # unfitted
        GradientBoostingRegressor(n_estimators=3, loss="huber").fit(X_TRAIN, Y_TRAIN),
        GradientBoostingRegressor(n_estimators=3, init="zero").fit(X_TRAIN, Y_TRAIN),
        GradientBoostingRegressor(n_estimators=3, init=Ridge()).fit(X_TRAIN, Y_TRAIN),
    ]
    for est in bad:
        with pytest.raises(ModelError):
            export_model(est)
    # a median DummyRegressor is still a DummyRegressor constant: exported and reproduced exactly
    med = GradientBoostingRegressor(n_estimators=5, init=DummyRegressor(strategy="median")).fit(X_TRAIN, Y_TRAIN)
    assert np.array_equal(roundtrip(med).predict(X_FRESH), med.predict(X_FRESH))


# ---- malformed dicts ------------------------------------------------------------------------


def _set(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return d
    return f


def _delete(path):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        return d
    return f


def _edit(path, fn):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = fn(node[path[-1]])
        return d
    return f


T0 = ("trees", 0)

CORRUPTIONS = {
    # header
    "not_a_dict": ("gbm", lambda d: [d]),
    "missing_format": ("gbm", _delete(("format",))),
    "wrong_format": ("gbm", _set(("format",), "sklearn-pickle")),
    "future_version": ("gbm", _set(("version",), 2)),
    "version_as_string": ("gbm", _set(("version",), "1")),
    "version_bool": ("gbm", _set(("version",), True)),
    "unknown_kind": ("gbm", _set(("kind",), "svm")),
    "kind_hwnas_never_saved": ("gbm", _set(("kind",), "forest")),
    "missing_kind": ("gbm", _delete(("kind",))),
    "missing_n_features": ("gbm", _delete(("n_features",))),
    "zero_n_features": ("gbm", _set(("n_features",), 0)),
    "float_n_features": ("gbm", _set(("n_features",), 5.0)),
    "feature_names_wrong_length": ("gbm", _set(("feature_names",), ["a", "b"])),
    "feature_names_not_strings": ("gbm", _set(("feature_names",), [1, 2, 3, 4, 5])),
    # ensemble level
    "missing_trees": ("gbm", _delete(("trees",))),
    "trees_truncated": ("gbm", _edit(("trees",), lambda t: t[:-1])),
    "trees_empty": ("gbm", lambda d: {**d, "trees": [], "n_estimators": 0}),
    "trees_not_list": ("gbm", _set(("trees",), {"0": 1})),
    "tree_not_dict": ("gbm", _edit(("trees",), lambda t: [t[0], 7] + t[2:])),
    "missing_learning_rate": ("gbm", _delete(("learning_rate",))),
    "nan_learning_rate": ("gbm", _set(("learning_rate",), float("nan"))),
    "string_learning_rate": ("gbm", _set(("learning_rate",), "0.1")),
    "missing_init": ("gbm", _delete(("init",))),
    "infinite_init": ("gbm", _set(("init",), float("inf"))),
    "other_loss": ("gbm", _set(("loss",), "huber")),
    # tree arrays
    "missing_children_left": ("gbm", _delete(T0 + ("children_left",))),
    "missing_value": ("gbm", _delete(T0 + ("value",))),
    "missing_n_nodes": ("gbm", _delete(T0 + ("n_nodes",))),
    "threshold_truncated": ("gbm", _edit(T0 + ("threshold",), lambda a: a[:-1])),
    "value_too_long": ("gbm", _edit(T0 + ("value",), lambda a: a + [0.0])),
    "feature_truncated": ("gbm", _edit(T0 + ("feature",), lambda a: a[: len(a) // 2])),
    "n_nodes_mismatch": ("gbm", _edit(T0 + ("n_nodes",), lambda n: n + 1)),
    "child_out_of_range": ("gbm", _edit(T0 + ("children_right",), lambda a: [a[0] + 1000] + a[1:])),
    "child_negative": ("gbm", _edit(T0 + ("children_right",), lambda a: [-5] + a[1:])),
    "child_cycle": ("gbm", _edit(T0 + ("children_left",), lambda a: a[:1] + [0] + a[2:])),  # node 1 -> root
    "child_self": ("gbm", _edit(T0 + ("children_left",), lambda a: [0] + a[1:])),
    "one_child_leaf": ("gbm", _edit(T0 + ("children_left",), lambda a: [-1] + a[1:])),
    "two_parents": ("gbm", lambda d: _set(T0 + ("children_left", 0), d["trees"][0]["children_right"][0])(d)),
    "feature_out_of_range": ("gbm", _edit(T0 + ("feature",), lambda a: [N_FEATURES] + a[1:])),
    "feature_negative_internal": ("gbm", _edit(T0 + ("feature",), lambda a: [-2] + a[1:])),
    "feature_float": ("gbm", _edit(T0 + ("feature",), lambda a: [float(a[0]) + 0.5] + a[1:])),
    "children_bool": ("gbm", _edit(T0 + ("children_left",), lambda a: [True] + a[1:])),
    "nan_threshold": ("gbm", _edit(T0 + ("threshold",), lambda a: [float("nan")] + a[1:])),
    "nan_threshold_leaf": ("gbm", _edit(T0 + ("threshold",), lambda a: a[:-1] + [float("nan")])),
    "string_threshold": ("gbm", _edit(T0 + ("threshold",), lambda a: ["0.5"] + a[1:])),
    "null_threshold": ("gbm", _edit(T0 + ("threshold",), lambda a: [None] + a[1:])),
    "nested_threshold": ("gbm", _edit(T0 + ("threshold",), lambda a: [[x] for x in a])),
    "threshold_not_list": ("gbm", _set(T0 + ("threshold",), 0.5)),
    "inf_value": ("gbm", _edit(T0 + ("value",), lambda a: a[:-1] + [float("inf")])),
    "string_inf_value": ("gbm", _edit(T0 + ("value",), lambda a: a[:-1] + ["inf"])),
    "bool_value": ("gbm", _edit(T0 + ("value",), lambda a: a[:-1] + [True])),
    "missing_go_to_left_bad": ("gbm", _set(T0 + ("missing_go_to_left",), None)),
    "missing_go_to_left_two": ("gbm", lambda d: _set(T0 + ("missing_go_to_left",),
                                                     [2] * d["trees"][0]["n_nodes"])(d)),
    # mlp
    "mlp_activation": ("mlp", _set(("activation",), "tanh")),
    "mlp_missing_coefs": ("mlp", _delete(("coefs",))),
    "mlp_no_layers": ("mlp", lambda d: {**d, "coefs": [], "intercepts": []}),
    "mlp_x_mean_short": ("mlp", _edit(("x_mean",), lambda a: a[:-1])),
    "mlp_x_scale_zero": ("mlp", _edit(("x_scale",), lambda a: [0.0] + a[1:])),
    "mlp_x_scale_string": ("mlp", _edit(("x_scale",), lambda a: ["1"] + a[1:])),
    "mlp_coef_rows": ("mlp", _edit(("coefs", 0), lambda m: m[:-1])),
    "mlp_coef_ragged": ("mlp", _edit(("coefs", 1), lambda m: [m[0][:-1]] + m[1:])),
    "mlp_coef_nan": ("mlp", _edit(("coefs", 1), lambda m: [[float("nan")] + m[0][1:]] + m[1:])),
    "mlp_coef_not_matrix": ("mlp", _set(("coefs", 0), [1.0, 2.0])),
    "mlp_intercept_short": ("mlp", _edit(("intercepts", 0), lambda a: a[:-1])),
    "mlp_intercepts_count": ("mlp", _edit(("intercepts",), lambda a: a[:-1])),
    "mlp_two_outputs": ("mlp", lambda d: _edit(("intercepts", 2), lambda a: a + [0.0])(
        _edit(("coefs", 2), lambda m: [r + [0.0] for r in m])(d))),
    "mlp_y_std_zero": ("mlp", _set(("y_std",), 0.0)),
    "mlp_y_mean_inf": ("mlp", _set(("y_mean",), float("inf"))),
    "mlp_missing_y_mean": ("mlp", _delete(("y_mean",))),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_malformed_dict_raises_one_line_model_error(corruption):
    base, mutate = CORRUPTIONS[corruption]
    d = json.loads(json.dumps(export_model(fitted("gbm")))) if base == "gbm" else _mlp_dict()
    import_model(copy.deepcopy(d))  # the base itself is fine
    bad = mutate(copy.deepcopy(d))
    with pytest.raises(ValueError) as info:
        import_model(bad)
    assert isinstance(info.value, ModelError) and isinstance(info.value, HwnasError)
    msg = str(info.value)
    assert msg and "\n" not in msg


def test_error_messages_are_specific():
    d = json.loads(json.dumps(export_model(fitted("gbm"))))
    cases = [
        (_edit(T0 + ("threshold",), lambda a: a[:-1]), r"trees\[0\]\.threshold: expected \d+ entries"),
        (_edit(T0 + ("children_right",), lambda a: [a[0] + 1000] + a[1:]), "out of range"),
        (_edit(T0 + ("threshold",), lambda a: [float("nan")] + a[1:]), "NaN"),
        (_delete(("format",)), "missing key 'format'"),
        (_set(("version",), 2), "version 2"),
        (_edit(("trees",), lambda t: t[:-1]), "expected 40 trees"),
        (_set(("kind",), "pipeline"), "unsupported model kind 'pipeline'"),
    ]
    for mutate, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            import_model(mutate(copy.deepcopy(d)))


# ---- the shipped predictors -----------------------------------------------------------------


def _shipped_models() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(ROOT.glob("profiles/*/predictors/*.json")) + [ROOT / "profiles/accuracy/predictor.json"]:
        d = load_json(path)
        for key, m in ([("residual", d.get("residual")), ("regressor", d.get("regressor"))]
                       + [(f"families.{f}", v.get("model")) for f, v in d.get("families", {}).items()]):
            if isinstance(m, dict):
                out.append((f"{path.relative_to(ROOT)}:{key}", m))
    return out


def test_shipped_models_load_and_both_paths_agree_bit_for_bit():
    """Every model saved under profiles/ loads unchanged, and its predictions (the numpy
    traversal) equal scikit-learn's own predict on the estimator rebuilt from it, bit for bit."""
    models = _shipped_models()
    assert len(models) >= 10, "the shipped profiles' predictors are missing"
    rng = np.random.default_rng(5)
    for where, d in models:
        m = import_model(d)
        assert m.kind == "gbm", where
        # rows at and around the model's own thresholds, so both branches of many splits are taken
        thr = np.array([t for tree in d["trees"][:5] for t in tree["threshold"] if isinstance(t, float)])
        X = rng.choice(thr, size=(300, m.n_features)) + rng.choice([-1e-6, 0.0, 1e-6], size=(300, m.n_features))
        assert np.array_equal(m.predict(X), m.sklearn_estimator().predict(X)), where


# ---- files ----------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    est = fitted("gbm")
    path = tmp_path / "model.json"
    save_json(export_model(est), path)
    assert sorted(os.listdir(tmp_path)) == ["model.json"]  # no temp file left behind
    model = import_model(load_json(path))
    assert np.array_equal(model.predict(X_FRESH), est.predict(X_FRESH))
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    save_json({"a": 1}, str(path))  # overwrite, str path
    assert load_json(path) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["model.json"]


def test_save_json_nonfinite_become_null(tmp_path):
    path = tmp_path / "m.json"
    save_json({"spearman": float("nan"), "x": [1.0, float("inf")], "ok": np.float64(2.5)}, path)
    assert load_json(path) == {"spearman": None, "x": [1.0, None], "ok": 2.5}


def test_save_json_unserializable_keeps_old_file(tmp_path):
    path = tmp_path / "m.json"
    save_json({"v": 1}, path)
    with pytest.raises(ValueError, match="m.json"):
        save_json({"v": object()}, path)
    assert load_json(path) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_save_json_missing_dir_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        save_json({"a": 1}, tmp_path / "nope" / "m.json")


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_file_raises_value_error(tmp_path, cut):
    path = tmp_path / "model.json"
    save_json(export_model(fitted("gbm")), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError) as info:
        load_json(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "truncated" in msg


def test_short_array_in_valid_json_is_caught_by_import(tmp_path):
    """Valid JSON whose arrays were cut short is caught by import_model's length checks."""
    d = export_model(fitted("gbm"))
    d["trees"][3]["value"] = d["trees"][3]["value"][:-3]
    path = tmp_path / "m.json"
    save_json(d, path)
    with pytest.raises(ModelError, match=r"trees\[3\]\.value"):
        import_model(load_json(path))


@pytest.mark.parametrize("content,pattern", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\x80\x81\xff garbage", "UTF-8"),
    (b"{not json}", "invalid JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b'{"a": NaN}', "invalid JSON"),
    (b'{"a": 1} trailing', "invalid JSON"),
])
def test_corrupt_files_raise_value_error(tmp_path, content, pattern):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as info:
        load_json(path)
    assert "bad.json" in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="not found") as info:
        load_json(tmp_path / "absent.json")
    assert "absent.json" in str(info.value)
    with pytest.raises(ValueError, match="directory"):
        load_json(tmp_path)


# ---- no pickle ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [serialize, compiled, jsonfile])
def test_module_never_uses_pickle(module):
    source = Path(module.__file__).read_text()
    tree = ast.parse(source)
    banned = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "skops"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & banned
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in banned
        elif isinstance(node, ast.Name):
            assert node.id not in banned
        elif isinstance(node, ast.Attribute):
            assert node.attr not in {"loads", "load", "__reduce__"} or not (
                isinstance(node.value, ast.Name) and node.value.id in banned)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in banned  # no __import__("pickle")
