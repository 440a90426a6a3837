"""Fitted scikit-learn models exported to JSON and re-predicted with numpy (hwnas.predictors.serialize)."""

from __future__ import annotations

import ast
import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge, RidgeCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

from hwnas.errors import HwnasError
from hwnas.predictors import serialize
from hwnas.predictors.serialize import (
    CompiledModel,
    ModelError,
    export_model,
    import_model,
    load_json,
    save_json,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning"),  # Ridge on raw 1e8-scale column
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),  # sklearn, 1e39
]

N_FEATURES = 5
RTOL, ATOL = 1e-9, 1e-12


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


ESTIMATORS = {
    "tree": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
    "tree_unlimited": lambda: DecisionTreeRegressor(random_state=0),
    "extra_tree": lambda: ExtraTreeRegressor(max_depth=8, random_state=0),
    "random_forest": lambda: RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0),
    "extra_trees": lambda: ExtraTreesRegressor(n_estimators=20, random_state=0),
    "gbm": lambda: _gbm(),
    "gbm_subsample": lambda: _gbm(subsample=0.7, max_features=3),
    "gbm_zero_init": lambda: _gbm(init="zero"),
    "gbm_dummy_median_init": lambda: _gbm(init=DummyRegressor(strategy="median")),
    "gbm_huber": lambda: _gbm(loss="huber"),
    "gbm_early_stopping": lambda: GradientBoostingRegressor(n_estimators=200, n_iter_no_change=3,
                                                            validation_fraction=0.2, random_state=0),
    "ridge": lambda: Ridge(alpha=1.0),
    "ridge_cv": lambda: RidgeCV(),
    "ridge_no_intercept": lambda: Ridge(alpha=0.5, fit_intercept=False),
    "linear_regression": lambda: LinearRegression(),
    "lasso": lambda: Lasso(alpha=0.01, max_iter=5000),
    "elastic_net": lambda: ElasticNet(alpha=0.01, max_iter=5000),
    "pipe_ridge": lambda: Pipeline([("scale", StandardScaler()), ("model", Ridge())]),
    "pipe_gbm": lambda: Pipeline([("scale", StandardScaler()), ("model", _gbm())]),
    "pipe_forest_no_mean": lambda: Pipeline([("scale", StandardScaler(with_mean=False)),
                                             ("model", RandomForestRegressor(n_estimators=10, random_state=0))]),
    "pipe_tree_no_std": lambda: Pipeline([("scale", StandardScaler(with_std=False)),
                                          ("model", DecisionTreeRegressor(max_depth=5, random_state=0))]),
    "pipe_passthrough_two_scalers": lambda: Pipeline([("a", StandardScaler()), ("skip", "passthrough"),
                                                      ("b", StandardScaler()), ("model", LinearRegression())]),
}

_FITTED: dict = {}


def fitted(name: str):
    if name not in _FITTED:
        _FITTED[name] = ESTIMATORS[name]().fit(X_TRAIN, Y_TRAIN)
    return _FITTED[name]


def roundtrip(est) -> CompiledModel:
    """export -> strict JSON text -> parse -> import."""
    text = json.dumps(export_model(est), allow_nan=False)
    return import_model(json.loads(text))


def _final(est):
    return est.steps[-1][1] if isinstance(est, Pipeline) else est


def _tree_objects(est) -> list:
    est = _final(est)
    if hasattr(est, "tree_"):
        return [est.tree_]
    if isinstance(est, GradientBoostingRegressor):
        return [e.tree_ for e in est.estimators_[:, 0]]
    if hasattr(est, "estimators_"):
        return [e.tree_ for e in est.estimators_]
    return []


def _unscale(est, Z: np.ndarray) -> np.ndarray:
    """Map values in the final estimator's input space back to raw X (approximately)."""
    if not isinstance(est, Pipeline):
        return Z
    X = Z.copy()
    for _, s in reversed(est.steps[:-1]):
        if s == "passthrough":
            continue
        if s.with_std:
            X = X * s.scale_
        if s.with_mean:
            X = X + s.mean_
    return X


def threshold_probes(est, n_max: int = 400) -> np.ndarray:
    """Rows whose split feature sits exactly at, and one float64/float32 step around, thresholds."""
    rng = np.random.default_rng(2)
    splits = []
    for t in _tree_objects(est):
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
            if isinstance(est, Pipeline):
                # put the *scaled* value at the threshold; the raw value is as close as float64 allows
                z = np.zeros((1, N_FEATURES))
                z[0, f] = v
                row[f] = _unscale(est, z)[0, f]
            else:
                row[f] = v
            rows.append(row)
    return np.array(rows).reshape(-1, N_FEATURES)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_predictions_match_sklearn(name):
    est = fitted(name)
    model = roundtrip(est)
    probes = threshold_probes(est)
    for X in (X_FRESH, X_TRAIN[:50], probes, X_FRESH[:1]):
        if len(X) == 0:
            continue
        np.testing.assert_allclose(model.predict(X), est.predict(X), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["tree", "random_forest", "gbm", "extra_trees"])
def test_tree_predictions_bit_identical_at_thresholds(name):
    """Trees see float32 X; with exact float32 semantics the results are identical, not just close."""
    est = fitted(name)
    model = roundtrip(est)
    probes = threshold_probes(est)
    assert len(probes) > 0
    assert np.array_equal(model.predict(probes), est.predict(probes))


def test_float32_semantics_matter():
    """A value just above the threshold in float64 that rounds onto it in float32 must go left."""
    est = DecisionTreeRegressor().fit(np.array([[0.0], [1.0]]), [0.0, 1.0])
    model = roundtrip(est)
    assert est.tree_.threshold[0] == 0.5
    above = np.nextafter(0.5, 1.0)  # > 0.5 in float64, == 0.5 in float32
    x = np.array([[above], [0.5], [np.nextafter(0.5, 0.0)], [0.5 + 1e-7], [0.5 + 1e-6]])
    assert est.predict(x)[0] == 0.0  # sklearn sends it left
    assert np.array_equal(model.predict(x), est.predict(x))
    # float32 rounding of large values (MACs): 16777217 rounds to 16777216 (ties to even)
    big = 16777217.0
    est = DecisionTreeRegressor().fit(np.array([[16777216.0], [16777218.0]]), [0.0, 1.0])
    model = roundtrip(est)
    assert est.tree_.threshold[0] == big
    x = np.array([[np.nextafter(big, np.inf)], [big], [16777216.0], [16777218.0], [np.nextafter(big, 0)]])
    assert np.array_equal(model.predict(x), est.predict(x))


def test_thresholds_and_values_roundtrip_exactly():
    for name in ("gbm", "random_forest", "pipe_gbm"):
        est = fitted(name)
        d = json.loads(json.dumps(export_model(est)))
        trees = d["model"]["trees"] if d["kind"] == "pipeline" else d["trees"]
        for td, t in zip(trees, _tree_objects(est)):
            assert np.array_equal(np.array(td["threshold"]), t.threshold)
            assert np.array_equal(np.array(td["value"]), t.value[:, 0, 0])
            assert np.array_equal(td["children_left"], t.children_left)
            assert np.array_equal(td["feature"], t.feature)


def test_header_and_kinds():
    kinds = {"tree": "tree", "extra_tree": "tree", "random_forest": "forest", "extra_trees": "forest",
             "gbm": "gbm", "ridge": "linear", "linear_regression": "linear", "pipe_gbm": "pipeline"}
    for name, kind in kinds.items():
        d = export_model(fitted(name))
        assert (d["format"], d["version"], d["kind"]) == ("hwnas-model", 1, kind)
        assert d["n_features"] == N_FEATURES
        m = import_model(d)
        assert m.kind == kind and m.n_features == N_FEATURES
        assert m.to_dict() == d


def test_gbm_records_learning_rate_and_init():
    est = fitted("gbm")
    d = export_model(est)
    assert d["learning_rate"] == 0.1
    assert d["init"] == pytest.approx(float(np.mean(Y_TRAIN)), rel=1e-12)
    assert d["n_estimators"] == len(d["trees"]) == 40
    assert export_model(fitted("gbm_zero_init"))["init"] == 0.0
    es = fitted("gbm_early_stopping")
    assert export_model(es)["n_estimators"] == es.n_estimators_ < 200


def test_feature_names_kept():
    import pandas as pd

    df = pd.DataFrame(X_TRAIN, columns=[f"f{i}" for i in range(N_FEATURES)])
    est = Ridge().fit(df, Y_TRAIN)
    m = roundtrip(est)
    assert m.feature_names == list(df.columns)
    np.testing.assert_allclose(m.predict(X_FRESH), est.predict(pd.DataFrame(X_FRESH, columns=df.columns)),
                               rtol=RTOL, atol=ATOL)


# ---- missing values -------------------------------------------------------------------------


def _nan_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] + 2 * X[:, 1] ** 2 + rng.normal(0, 0.1, 300)
    X[rng.random(300) < 0.15, 0] = np.nan
    y[np.isnan(X[:, 0])] += 5  # make missingness informative
    X[rng.random(300) < 0.1, 2] = np.nan
    return X, y


@pytest.mark.parametrize("make", [lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
                                  lambda: RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0)],
                         ids=["tree", "forest"])
def test_nan_routing_matches_sklearn(make):
    X, y = _nan_data()
    est = make().fit(X, y)
    d = export_model(est)
    assert d["allow_nan"] is True
    model = import_model(json.loads(json.dumps(d, allow_nan=False)))
    Xt, _ = _nan_data()
    Xt = Xt[::-1].copy()
    Xt[:20, 1] = np.nan  # a feature that had no NaN in training
    np.testing.assert_array_equal(model.predict(Xt), est.predict(Xt))


def test_infinite_threshold_from_missing_split_is_strict_json():
    X = np.array([[0.0], [1.0], [2.0], [np.nan], [np.nan], [np.nan]])
    y = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 10.0])
    est = DecisionTreeRegressor(max_depth=1).fit(X, y)
    d = export_model(est)
    text = json.dumps(d, allow_nan=False)
    model = import_model(json.loads(text))
    Xt = np.array([[np.nan], [5.0], [1e30], [-3.0]])
    np.testing.assert_array_equal(model.predict(Xt), est.predict(Xt))
    if np.isinf(est.tree_.threshold).any():
        assert '"inf"' in text


def test_nan_rejected_where_sklearn_rejects():
    Xn = X_FRESH[:5].copy()
    Xn[0, 1] = np.nan
    for name in ("gbm", "ridge", "pipe_ridge", "pipe_gbm"):
        est, model = fitted(name), roundtrip(fitted(name))
        with pytest.raises(ValueError):
            est.predict(Xn)
        with pytest.raises(ValueError, match="NaN"):
            model.predict(Xn)


# ---- bad input to predict -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tree", "random_forest", "gbm", "ridge", "pipe_gbm"])
def test_predict_rejects_bad_input(name):
    model = roundtrip(fitted(name))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros(N_FEATURES))
    with pytest.raises(ValueError):
        model.predict([["a"] * N_FEATURES])
    Xi = X_FRESH[:3].copy()
    Xi[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.predict(Xi)
    assert model.predict(np.zeros((0, N_FEATURES))).shape == (0,)
    # lists and float32 arrays are fine
    assert np.array_equal(model.predict(X_FRESH[:4].tolist()), model.predict(X_FRESH[:4]))


def test_tree_rejects_values_overflowing_float32():
    model = roundtrip(fitted("gbm"))
    X = X_FRESH[:2].copy()
    X[0, 2] = 1e39
    with pytest.raises(ValueError, match="float32"):
        model.predict(X)
    with pytest.raises(ValueError):
        fitted("gbm").predict(X)


# ---- export refuses what it cannot reproduce ------------------------------------------------


def test_export_rejects_unsupported():
    bad = [
        KNeighborsRegressor().fit(X_TRAIN, Y_TRAIN),
        Ridge(),  # unfitted
        GradientBoostingRegressor(),  # unfitted
        RandomForestRegressor(),  # unfitted
        DecisionTreeRegressor(),  # unfitted
        Ridge().fit(X_TRAIN, np.column_stack([Y_TRAIN, Y_TRAIN])),  # multi-output
        RandomForestRegressor(n_estimators=3, random_state=0).fit(X_TRAIN, np.column_stack([Y_TRAIN, Y_TRAIN])),
        GradientBoostingRegressor(n_estimators=3, init=Ridge()).fit(X_TRAIN, Y_TRAIN),
        Pipeline([("knn", KNeighborsRegressor())]).fit(X_TRAIN, Y_TRAIN),
        Pipeline([("scale", StandardScaler()), ("knn", KNeighborsRegressor())]).fit(X_TRAIN, Y_TRAIN),
        Pipeline([("pca", __import__("sklearn.decomposition").decomposition.PCA(2)),
                  ("m", Ridge())]).fit(X_TRAIN, Y_TRAIN),
        Pipeline([("p", Pipeline([("s", StandardScaler()), ("m", Ridge())]))]).fit(X_TRAIN, Y_TRAIN),
    ]
    for est in bad:
        with pytest.raises(ValueError):
            export_model(est)


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


def _first_internal(d, tree_path):
    node = d
    for k in tree_path:
        node = node[k]
    return next(i for i, c in enumerate(node["children_left"]) if c != -1)


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
    "unknown_loss": ("gbm", _set(("loss",), "poisson")),
    "missing_allow_nan": ("random_forest", _delete(("allow_nan",))),
    "allow_nan_not_bool": ("random_forest", _set(("allow_nan",), 1)),
    # tree arrays
    "missing_children_left": ("gbm", _delete(T0 + ("children_left",))),
    "missing_value": ("tree", _delete(("tree", "value"))),
    "missing_n_nodes": ("gbm", _delete(T0 + ("n_nodes",))),
    "threshold_truncated": ("gbm", _edit(T0 + ("threshold",), lambda a: a[:-1])),
    "value_too_long": ("gbm", _edit(T0 + ("value",), lambda a: a + [0.0])),
    "feature_truncated": ("tree", _edit(("tree", "feature"), lambda a: a[: len(a) // 2])),
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
    "missing_go_to_left_bad": ("tree", _set(("tree", "missing_go_to_left"), None)),
    "missing_go_to_left_two": ("tree", lambda d: _set(("tree", "missing_go_to_left"),
                                                      [2] * d["tree"]["n_nodes"])(d)),
    # linear
    "coef_too_short": ("ridge", _edit(("coef",), lambda a: a[:-1])),
    "coef_null": ("ridge", _edit(("coef",), lambda a: [None] + a[1:])),
    "coef_nan": ("ridge", _edit(("coef",), lambda a: [float("nan")] + a[1:])),
    "missing_intercept": ("ridge", _delete(("intercept",))),
    "intercept_list": ("ridge", _set(("intercept",), [1.0])),
    # pipeline
    "pipe_missing_model": ("pipe_gbm", _delete(("model",))),
    "pipe_model_bad_version": ("pipe_gbm", _set(("model", "version"), 99)),
    "pipe_model_corrupt_tree": ("pipe_gbm", _edit(("model", "trees", 0, "threshold"), lambda a: a[:3])),
    "pipe_model_n_features": ("pipe_gbm", _set(("model", "n_features"), N_FEATURES + 1)),
    "pipe_scale_wrong_length": ("pipe_gbm", _edit(("steps", 0, "scale"), lambda a: a + [1.0])),
    "pipe_zero_scale": ("pipe_gbm", _edit(("steps", 0, "scale"), lambda a: [0.0] + a[1:])),
    "pipe_missing_mean": ("pipe_gbm", _delete(("steps", 0, "mean"))),
    "pipe_unknown_step": ("pipe_gbm", _set(("steps", 0, "kind"), "pca")),
    "pipe_steps_not_list": ("pipe_gbm", _set(("steps",), "scaler")),
    "pipe_nested_pipeline": ("pipe_gbm", lambda d: _set(("model",), copy.deepcopy(d))(d)),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_malformed_dict_raises_value_error(corruption):
    base, mutate = CORRUPTIONS[corruption]
    d = json.loads(json.dumps(export_model(fitted(base))))
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
    ]
    for mutate, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            import_model(mutate(copy.deepcopy(d)))


# ---- files ----------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    est = fitted("pipe_gbm")
    path = tmp_path / "model.json"
    save_json(export_model(est), path)
    assert sorted(os.listdir(tmp_path)) == ["model.json"]  # no temp file left behind
    model = import_model(load_json(path))
    np.testing.assert_allclose(model.predict(X_FRESH), est.predict(X_FRESH), rtol=RTOL, atol=ATOL)
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
    d = export_model(fitted("tree"))
    d["tree"]["value"] = d["tree"]["value"][:-3]
    path = tmp_path / "m.json"
    save_json(d, path)
    with pytest.raises(ValueError):
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


def test_module_never_uses_pickle():
    source = Path(serialize.__file__).read_text()
    tree = ast.parse(source)
    banned = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & banned
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in banned
        elif isinstance(node, ast.Name):
            assert node.id not in banned
        elif isinstance(node, ast.Attribute):
            assert node.attr not in {"loads", "load"} or not (
                isinstance(node.value, ast.Name) and node.value.id in banned)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in banned  # no __import__("pickle")
    assert "import pickle" not in source


# ---- traversal internals --------------------------------------------------------------------


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
    floor = serialize._floor_float32(t)
    assert floor.dtype == np.float32
    for ti, fi in zip(t, floor):
        assert np.array_equal(x.astype(np.float64) <= ti, x <= fi), ti


def test_chunked_traversal(monkeypatch):
    est = fitted("random_forest")
    model = roundtrip(est)
    monkeypatch.setattr(serialize, "_BLOCK", 45)  # 20 trees -> 2 rows per block
    np.testing.assert_array_equal(model.predict(X_FRESH[:7]), est.predict(X_FRESH[:7]))


@pytest.mark.parametrize("name", ["gbm", "random_forest"])
def test_small_and_large_batches_add_trees_in_sklearn_order(name):
    """Small batches sum trees with a row-wise cumsum, large ones with a loop over trees: both
    bit-identical to scikit-learn."""
    est = fitted(name)
    model = roundtrip(est)
    big = np.vstack([X_FRESH, X_TRAIN])  # 500 rows: the loop
    assert len(big) >= 256
    assert np.array_equal(model.predict(big), est.predict(big))
    assert np.array_equal(model.predict(big[:40]), est.predict(big[:40]))  # the cumsum
    assert np.array_equal(model.predict(big)[:40], model.predict(big[:40]))


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
    stacked = serialize.StackedGBM(models)
    X = np.vstack([X_FRESH, X_TRAIN])
    which = np.random.default_rng(0).integers(0, 3, len(X))
    got = stacked.predict(X, which)
    for k, e in enumerate(ests):
        np.testing.assert_array_equal(got[which == k], e.predict(X[which == k]))
    monkeypatch.setattr(serialize, "_BLOCK", 600)  # 60 trees -> 10 rows per block
    np.testing.assert_array_equal(stacked.predict(X[:37], which[:37]), got[:37])
    assert stacked.predict(X[:0], which[:0]).shape == (0,)
    with pytest.raises(ModelError, match="model indices"):
        stacked.predict(X[:5], which[:4])
    with pytest.raises(ModelError, match="gradient-boosted"):
        serialize.StackedGBM([models[0], roundtrip(fitted("random_forest"))])
