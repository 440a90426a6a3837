"""Save fitted scikit-learn regressors as plain JSON and predict with our own numpy code.

Saved predictors never go through pickle and do not need scikit-learn (or the same version
of it) to be loaded: :func:`export_model` turns a fitted estimator into a dict of lists and
numbers, :func:`import_model` validates such a dict and returns a :class:`CompiledModel`
whose ``predict`` reproduces scikit-learn's predictions.

Supported estimators (exact types, single output only):

* ``DecisionTreeRegressor`` / ``ExtraTreeRegressor``                    -> kind ``"tree"``
* ``RandomForestRegressor`` / ``ExtraTreesRegressor`` (mean of trees)   -> kind ``"forest"``
* ``GradientBoostingRegressor`` (init ``DummyRegressor`` or ``"zero"``) -> kind ``"gbm"``
* ``LinearRegression``, ``Ridge``, ``RidgeCV``, ``Lasso``, ``ElasticNet`` -> kind ``"linear"``
* ``Pipeline`` of ``StandardScaler`` steps (or ``"passthrough"``) followed by one of the
  above                                                                 -> kind ``"pipeline"``

Tree semantics follow scikit-learn exactly: ``X`` is cast to float32 before the trees see
it and a sample goes left when ``float(x_f) <= threshold`` (threshold in float64); a NaN
goes where ``missing_go_to_left`` says (only for trees that accept NaN).  Ensembles are
summed tree by tree in scikit-learn's order, so predictions agree to the last bit or so.

Format (``version`` 1), all keys required unless marked optional::

    {"format": "hwnas-model", "version": 1, "kind": ..., "n_features": int,
     "feature_names": [str, ...]            # optional
     "sklearn_version": str, "estimator": str   # informational, optional
     ...kind-specific keys...}

    tree:     "tree": TREE, "allow_nan": bool
    forest:   "n_estimators": int, "trees": [TREE, ...], "allow_nan": bool
    gbm:      "n_estimators": int, "trees": [TREE, ...], "learning_rate": float,
              "init": float, "loss": str
    linear:   "coef": [float] * n_features, "intercept": float
    pipeline: "steps": [{"kind": "standard_scaler", "mean": [...] | null,
                         "scale": [...] | null}, ...],
              "model": <a full tree/forest/gbm/linear dict>

    TREE = {"n_nodes": int, "children_left": [int], "children_right": [int],
            "feature": [int], "threshold": [float], "value": [float],
            "missing_go_to_left": [0|1]     # optional, all 0 when absent}

Thresholds are plain JSON floats (Python writes the shortest repr that round-trips
exactly); the non-finite ones scikit-learn can produce for missing-value splits are written
as the strings ``"inf"`` / ``"-inf"`` so the files stay strict JSON.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

FORMAT = "hwnas-model"
VERSION = 1
KINDS = ("tree", "forest", "gbm", "linear", "pipeline")
GBM_LOSSES = ("squared_error", "absolute_error", "huber", "quantile")  # all: identity link

# rows * trees per block of vectorized tree traversal (bounds temporary memory)
_BLOCK = 1 << 20

__all__ = [
    "FORMAT",
    "VERSION",
    "CompiledModel",
    "ModelError",
    "export_model",
    "import_model",
    "load_json",
    "save_json",
]


class ModelError(InputError, ValueError):
    """A model dict or file is malformed, or a model was given input it cannot take."""


# --------------------------------------------------------------------------------------------
# export (needs scikit-learn; imported lazily so loading never does)
# --------------------------------------------------------------------------------------------


def _float(x: Any) -> float | str:
    """A JSON-safe float: ``inf``/``-inf`` become strings; NaN is refused."""
    f = float(x)
    if math.isnan(f):
        raise ModelError("cannot export a NaN")
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f


def _floats(a: Any) -> list:
    arr = np.asarray(a, dtype=np.float64).ravel()
    if np.isnan(arr).any():
        raise ModelError("cannot export an array containing NaN")
    if np.isinf(arr).any():
        return [_float(v) for v in arr.tolist()]
    return arr.tolist()


def _export_tree(tree: Any) -> dict:
    """The arrays of a fitted ``sklearn.tree._tree.Tree`` (single output)."""
    if tree.n_outputs != 1 or tree.value.shape[1:] != (1, 1):
        raise ModelError("only single-output regression trees can be exported")
    n = int(tree.node_count)
    out = {
        "n_nodes": n,
        "children_left": np.asarray(tree.children_left[:n], dtype=np.int64).tolist(),
        "children_right": np.asarray(tree.children_right[:n], dtype=np.int64).tolist(),
        "feature": np.asarray(tree.feature[:n], dtype=np.int64).tolist(),
        "threshold": _floats(tree.threshold[:n]),
        "value": _floats(tree.value[:n, 0, 0]),
    }
    mgl = getattr(tree, "missing_go_to_left", None)  # scikit-learn >= 1.3
    if mgl is not None:
        mgl = np.asarray(mgl[:n], dtype=bool)
        if mgl.any():
            out["missing_go_to_left"] = mgl.astype(np.int64).tolist()
    return out


def _allow_nan(est: Any) -> bool:
    """Whether scikit-learn's ``predict`` lets NaN through to the trees."""
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6

        return bool(get_tags(est).input_tags.allow_nan)
    except Exception:  # older versions: only the NaN-free path is reproduced
        return False


def _n_features(est: Any) -> int:
    n = getattr(est, "n_features_in_", None)
    if n is None:
        raise ModelError(f"{type(est).__name__} is not fitted")
    return int(n)


def _header(est: Any, kind: str) -> dict:
    import sklearn

    d: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "estimator": type(est).__name__,
        "sklearn_version": sklearn.__version__,
        "n_features": _n_features(est),
    }
    names = getattr(est, "feature_names_in_", None)
    if names is not None:
        d["feature_names"] = [str(s) for s in names]
    return d


def export_model(est: Any) -> dict:
    """A JSON-able dict describing the fitted estimator ``est`` (see the module docstring).

    Raises :class:`ModelError` (a ``ValueError``) for an unsupported or unfitted estimator.
    """
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge, RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor

    t = type(est)
    name = t.__name__

    if t is Pipeline:
        steps = [s for _, s in est.steps]
        if not steps:
            raise ModelError("cannot export an empty Pipeline")
        *transforms, final = steps
        if final is None or final == "passthrough":
            raise ModelError("the last step of the Pipeline must be an estimator")
        if type(final) is Pipeline:
            raise ModelError("nested Pipelines are not supported")
        out_steps = []
        for s in transforms:
            if s is None or (isinstance(s, str) and s == "passthrough"):
                continue
            if type(s) is not StandardScaler:
                raise ModelError(
                    f"Pipeline step {type(s).__name__} is not supported (only StandardScaler)"
                )
            if not hasattr(s, "n_features_in_"):
                raise ModelError("StandardScaler is not fitted")
            out_steps.append(
                {
                    "kind": "standard_scaler",
                    "mean": _floats(s.mean_) if s.with_mean else None,
                    "scale": _floats(s.scale_) if s.with_std else None,
                }
            )
        d = _header(est, "pipeline")
        d["steps"] = out_steps
        d["model"] = export_model(final)
        return d

    if t in (DecisionTreeRegressor, ExtraTreeRegressor):
        if not hasattr(est, "tree_"):
            raise ModelError(f"{name} is not fitted")
        d = _header(est, "tree")
        d["allow_nan"] = _allow_nan(est)
        d["tree"] = _export_tree(est.tree_)
        return d

    if t in (RandomForestRegressor, ExtraTreesRegressor):
        if not hasattr(est, "estimators_"):
            raise ModelError(f"{name} is not fitted")
        if getattr(est, "n_outputs_", 1) != 1:
            raise ModelError(f"only single-output {name} can be exported")
        d = _header(est, "forest")
        d["allow_nan"] = _allow_nan(est.estimators_[0])
        d["n_estimators"] = len(est.estimators_)
        d["trees"] = [_export_tree(e.tree_) for e in est.estimators_]
        return d

    if t is GradientBoostingRegressor:
        if not hasattr(est, "estimators_"):
            raise ModelError(f"{name} is not fitted")
        if est.loss not in GBM_LOSSES:
            raise ModelError(f"GradientBoostingRegressor loss {est.loss!r} is not supported")
        if est.estimators_.ndim != 2 or est.estimators_.shape[1] != 1:
            raise ModelError("only single-output GradientBoostingRegressor can be exported")
        init = est.init_
        if isinstance(init, str) and init == "zero":
            init_value = 0.0
        elif type(init) is DummyRegressor:
            c = np.asarray(init.constant_, dtype=np.float64).ravel()
            if c.size != 1:
                raise ModelError("the DummyRegressor init must have a single output")
            init_value = float(c[0])
        else:
            raise ModelError(
                f"GradientBoostingRegressor init {type(init).__name__} is not supported "
                "(use the default DummyRegressor or 'zero')"
            )
        d = _header(est, "gbm")
        d["loss"] = str(est.loss)
        d["learning_rate"] = _float(est.learning_rate)
        d["init"] = _float(init_value)
        d["n_estimators"] = int(est.estimators_.shape[0])
        d["trees"] = [_export_tree(e.tree_) for e in est.estimators_[:, 0]]
        return d

    if t in (LinearRegression, Ridge, RidgeCV, Lasso, ElasticNet):
        if not hasattr(est, "coef_"):
            raise ModelError(f"{name} is not fitted")
        coef = np.asarray(est.coef_, dtype=np.float64)
        intercept = np.asarray(est.intercept_, dtype=np.float64)
        if coef.ndim != 1 or intercept.ndim != 0:
            raise ModelError(f"only single-output {name} (fitted on a 1-D y) can be exported")
        d = _header(est, "linear")
        if coef.shape[0] != d["n_features"]:
            raise ModelError(f"{name}.coef_ has {coef.shape[0]} entries, expected {d['n_features']}")
        d["coef"] = _floats(coef)
        d["intercept"] = _float(intercept)
        return d

    raise ModelError(f"cannot export {name}: unsupported estimator type")


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _get(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if key not in d:
        raise ModelError(f"{where}: missing key {key!r}")
    return d[key]


def _int(x: Any, where: str, lo: int | None = None) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ModelError(f"{where}: expected an integer, got {type(x).__name__}")
    x = int(x)
    if lo is not None and x < lo:
        raise ModelError(f"{where}: must be >= {lo}, got {x}")
    return x


def _num(x: Any, where: str, finite: bool = True) -> float:
    """A float from a JSON number (or ``"inf"``/``"-inf"`` when not ``finite``)."""
    if isinstance(x, str) and not finite and x in ("inf", "-inf"):
        return float(x)
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ModelError(f"{where}: expected a number, got {type(x).__name__}")
    f = float(x)
    if math.isnan(f):
        raise ModelError(f"{where}: NaN is not allowed")
    if finite and math.isinf(f):
        raise ModelError(f"{where}: must be finite, got {f}")
    return f


def _has_bool(x: list) -> bool:
    return any(type(v) is bool for v in x)


def _int_array(x: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(x, list):
        raise ModelError(f"{where}: expected a list, got {type(x).__name__}")
    if len(x) != n:
        raise ModelError(f"{where}: expected {n} entries, got {len(x)}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        raise ModelError(f"{where}: expected a flat list of integers") from None
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ModelError(f"{where}: expected a flat list of integers")
    if _has_bool(x):
        raise ModelError(f"{where}: expected integers, got a boolean")
    return arr.astype(np.int64)


def _float_array(x: Any, n: int, where: str, finite: bool = True) -> np.ndarray:
    """A float64 array from a list of JSON numbers; ``"inf"``/``"-inf"`` allowed unless ``finite``."""
    if not isinstance(x, list):
        raise ModelError(f"{where}: expected a list, got {type(x).__name__}")
    if len(x) != n:
        raise ModelError(f"{where}: expected {n} entries, got {len(x)}")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iuf" and not _has_bool(x):
        arr = arr.astype(np.float64)
    else:
        arr = None
    if arr is None:  # mixed content (e.g. "inf" strings): check element by element
        arr = np.array([_num(v, f"{where}[{i}]", finite=finite) for i, v in enumerate(x)])
    if np.isnan(arr).any():
        raise ModelError(f"{where}[{int(np.flatnonzero(np.isnan(arr))[0])}]: NaN is not allowed")
    if finite and np.isinf(arr).any():
        raise ModelError(f"{where}[{int(np.flatnonzero(np.isinf(arr))[0])}]: must be finite")
    return arr


def _bool(x: Any, where: str) -> bool:
    if not isinstance(x, bool):
        raise ModelError(f"{where}: expected true or false, got {type(x).__name__}")
    return x


# --------------------------------------------------------------------------------------------
# compiled trees
# --------------------------------------------------------------------------------------------


class _Tree:
    """A validated tree: leaves loop to themselves so traversal needs no leaf test."""

    __slots__ = ("n_nodes", "left", "right", "feature", "threshold", "value", "mgl", "depth")

    def __init__(self, d: Any, n_features: int, where: str):
        n = _int(_get(d, "n_nodes", where), f"{where}.n_nodes", lo=1)
        left = _int_array(_get(d, "children_left", where), n, f"{where}.children_left")
        right = _int_array(_get(d, "children_right", where), n, f"{where}.children_right")
        feature = _int_array(_get(d, "feature", where), n, f"{where}.feature")
        threshold = _float_array(_get(d, "threshold", where), n, f"{where}.threshold", finite=False)
        value = _float_array(_get(d, "value", where), n, f"{where}.value")
        if "missing_go_to_left" in d:
            m = _int_array(d["missing_go_to_left"], n, f"{where}.missing_go_to_left")
            if ((m != 0) & (m != 1)).any():
                raise ModelError(f"{where}.missing_go_to_left: entries must be 0 or 1")
            mgl = m.astype(bool)
        else:
            mgl = np.zeros(n, dtype=bool)

        idx = np.arange(n)
        leaf = left == -1
        if not np.array_equal(leaf, right == -1):
            i = int(np.flatnonzero(leaf != (right == -1))[0])
            raise ModelError(f"{where}: node {i} has exactly one child (-1 marks a leaf)")
        internal = ~leaf
        # children must come after their parent (true of every scikit-learn tree builder);
        # this rules out cycles and lets depths be computed in one forward pass
        for name, ch in (("children_left", left), ("children_right", right)):
            bad = internal & ((ch <= idx) | (ch >= n))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ModelError(
                    f"{where}.{name}[{i}] = {int(ch[i])}: child index out of range "
                    f"(must be in {i + 1}..{n - 1})"
                )
        children = np.concatenate([left[internal], right[internal]])
        counts = np.bincount(children, minlength=n)
        if counts[0] != 0 or (counts[1:] != 1).any():
            i = int(np.flatnonzero(np.concatenate([[counts[0] != 0], counts[1:] != 1]))[0])
            raise ModelError(f"{where}: node {i} has {int(counts[i])} parents (not a tree)")
        bad = internal & ((feature < 0) | (feature >= n_features))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ModelError(
                f"{where}.feature[{i}] = {int(feature[i])}: out of range for {n_features} features"
            )

        depth = np.zeros(n, dtype=np.int64)
        for i in np.flatnonzero(internal):  # parents precede children
            depth[left[i]] = depth[right[i]] = depth[i] + 1

        self.n_nodes = n
        self.left = np.where(leaf, idx, left)
        self.right = np.where(leaf, idx, right)
        self.feature = np.where(leaf, 0, feature)
        self.threshold = np.where(leaf, 0.0, threshold)
        self.value = value
        self.mgl = mgl
        self.depth = int(depth.max())


def _floor_float32(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold.

    For a float32 ``x``, ``x <= t`` (compared in float64, as scikit-learn's C code does)
    holds exactly when ``x <= _floor_float32(t)``, so traversal can stay in float32.
    """
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    return np.where(t32.astype(np.float64) > t, np.nextafter(t32, np.float32(-np.inf)), t32)


class _Forest:
    """Trees packed into flat node arrays, traversed all at once, level by level."""

    def __init__(self, trees: list[_Tree]):
        sizes = np.array([t.n_nodes for t in trees], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        left = np.concatenate([t.left + o for t, o in zip(trees, offsets)])
        right = np.concatenate([t.right + o for t, o in zip(trees, offsets)])
        self.n_trees = len(trees)
        self.roots = offsets
        self.kids = np.stack([left, right], axis=1).ravel()  # [2 * node + go_right]
        self.feature = np.concatenate([t.feature for t in trees])
        self.threshold32 = _floor_float32(np.concatenate([t.threshold for t in trees]))
        self.value = np.concatenate([t.value for t in trees])
        self.mgl = np.concatenate([t.mgl for t in trees])
        self.depth = max(t.depth for t in trees)

    @classmethod
    def stacked(cls, forests: Sequence["_Forest"]) -> tuple["_Forest", np.ndarray]:
        """Several forests' nodes in one, plus a leaf of value 0 at the end; and each forest's
        roots as a row of a ``(n_forests, max trees)`` table, shorter ones padded with that leaf."""
        self = cls.__new__(cls)
        sizes = [len(f.value) for f in forests]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        pad = int(offsets[-1])  # the zero leaf
        self.kids = np.concatenate([f.kids + o for f, o in zip(forests, offsets)] + [np.array([pad, pad])])
        self.feature = np.concatenate([f.feature for f in forests] + [np.zeros(1, dtype=forests[0].feature.dtype)])
        self.threshold32 = np.concatenate([f.threshold32 for f in forests] + [np.zeros(1, dtype=np.float32)])
        self.value = np.concatenate([f.value for f in forests] + [np.zeros(1)])
        self.mgl = np.concatenate([f.mgl for f in forests] + [np.zeros(1, dtype=bool)])
        self.depth = max(f.depth for f in forests)
        self.n_trees = max(f.n_trees for f in forests)
        roots = np.full((len(forests), self.n_trees), pad, dtype=np.int64)
        for i, (f, o) in enumerate(zip(forests, offsets)):
            roots[i, : f.n_trees] = f.roots + o
        self.roots = roots[0]
        return self, roots

    def leaf_values(self, Xf: np.ndarray, row_roots: np.ndarray | None = None) -> np.ndarray:
        """``(n_samples, n_trees)`` leaf values for float32 ``Xf``; ``row_roots`` gives each row
        its own trees (``(n_samples, n_trees)`` root nodes; default: this forest's)."""
        n, n_features = Xf.shape
        out = np.empty((n, self.n_trees), dtype=np.float64)
        step = max(1, _BLOCK // self.n_trees)
        has_nan = bool(np.isnan(Xf).any())
        for a in range(0, n, step):
            flat = np.ascontiguousarray(Xf[a : a + step]).ravel()
            m = flat.shape[0] // n_features
            row0 = (np.arange(m, dtype=np.int64) * n_features)[:, None]
            if row_roots is None:
                node = np.repeat(self.roots[None, :], m, axis=0)
            else:
                node = row_roots[a : a + m]
            for _ in range(self.depth):
                x = flat[row0 + self.feature[node]]
                if has_nan:  # NaN goes where missing_go_to_left says
                    go_right = ~(x <= self.threshold32[node])
                    nan = np.isnan(x)
                    go_right[nan] = ~self.mgl[node[nan]]
                else:
                    go_right = x > self.threshold32[node]
                node = self.kids[2 * node + go_right]
            out[a : a + step] = self.value[node]
        return out


# --------------------------------------------------------------------------------------------
# compiled models
# --------------------------------------------------------------------------------------------


def _as_2d(X: Any, n_features: int) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ModelError(f"X must be a numeric array: {e}") from None
    if X.ndim != 2:
        raise ModelError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[1] != n_features:
        raise ModelError(f"X has {X.shape[1]} features, but the model expects {n_features}")
    return X


def _to_float32(X: np.ndarray, allow_nan: bool) -> np.ndarray:
    """scikit-learn's tree input check: cast to float32, then refuse inf (and NaN unless allowed)."""
    with np.errstate(over="ignore"):
        Xf = X.astype(np.float32)
    if np.isinf(Xf).any():
        raise ModelError("X contains infinity or a value too large for float32")
    if not allow_nan and np.isnan(Xf).any():
        raise ModelError("X contains NaN, which this model does not accept")
    return Xf


class CompiledModel:
    """A validated model; ``predict`` mirrors the scikit-learn estimator it came from."""

    def __init__(self, spec: dict, kind: str, n_features: int, feature_names: list[str] | None):
        self._spec = spec
        self.kind = kind
        self.n_features = n_features
        self.feature_names = feature_names

    def to_dict(self) -> dict:
        """The (validated) dict this model was imported from, as a deep copy."""
        return copy.deepcopy(self._spec)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for the rows of ``X`` (shape ``(n_samples, n_features)``), float64."""
        X = _as_2d(X, self.n_features)
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        return self._predict(X)

    def _predict(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<CompiledModel kind={self.kind} n_features={self.n_features}>"


_CUMSUM_ROWS = 256


def _stagewise_sum(init, lr, vals: np.ndarray) -> np.ndarray:
    """``init + lr * tree_1 + lr * tree_2 + ...`` added strictly in tree order (a row-wise cumsum),
    as scikit-learn's stage-by-stage loop does; ``init`` and ``lr`` scalars or per row."""
    terms = np.empty((vals.shape[0], vals.shape[1] + 1), dtype=np.float64)
    terms[:, 0] = init
    np.multiply(lr, vals, out=terms[:, 1:])
    return np.cumsum(terms, axis=1)[:, -1].copy()


class _TreeModel(CompiledModel):
    def __init__(self, spec, n_features, names, forest: _Forest, allow_nan: bool, combine: str,
                 learning_rate: float = 1.0, init: float = 0.0):
        super().__init__(spec, spec["kind"], n_features, names)
        self._forest = forest
        self._allow_nan = allow_nan
        self._combine = combine
        self._lr = learning_rate
        self._init = init

    def _predict(self, X: np.ndarray) -> np.ndarray:
        vals = self._forest.leaf_values(_to_float32(X, self._allow_nan))
        # Both paths add strictly tree by tree, so the sums round exactly as scikit-learn's
        # stage-by-stage loops do (a plain sum() adds pairwise and differs in the last bits):
        # a loop over trees for large batches, one row-wise cumsum for small ones (the search's),
        # where a Python loop over hundreds of trees would cost more than the arithmetic.
        small = X.shape[0] < _CUMSUM_ROWS
        if self._combine == "gbm":  # init, then += learning_rate * tree, stage by stage
            if small:
                return _stagewise_sum(self._init, self._lr, vals)
            y = np.full(X.shape[0], self._init, dtype=np.float64)
            lr = self._lr
            for t in range(vals.shape[1]):
                y += lr * vals[:, t]
            return y
        if self._combine == "mean":  # sum in tree order, then divide (as scikit-learn)
            if small:
                return np.cumsum(vals, axis=1)[:, -1] / vals.shape[1]
            y = np.zeros(X.shape[0], dtype=np.float64)
            for t in range(vals.shape[1]):
                y += vals[:, t]
            y /= vals.shape[1]
            return y
        return vals[:, 0].copy()


class StackedGBM:
    """Several gradient-boosted models over the same features, evaluated in one traversal: row
    ``i`` goes through model ``which[i]``.  Each row's figure equals its model's own ``predict``
    bit for bit (its trees, summed stage by stage as there; shorter models are padded with trees
    of value 0 at the end).  One call instead of one per model: the kernel predictor's families."""

    def __init__(self, models: Sequence[CompiledModel]):
        if not models or not all(isinstance(m, _TreeModel) and m._combine == "gbm" for m in models):
            raise ModelError("StackedGBM takes gradient-boosted models only")
        nf = {m.n_features for m in models}
        if len(nf) != 1:
            raise ModelError(f"StackedGBM: the models expect different feature counts {sorted(nf)}")
        self.n_features = nf.pop()
        self._forest, self._roots = _Forest.stacked([m._forest for m in models])
        self._init = np.array([m._init for m in models], dtype=np.float64)
        self._lr = np.array([m._lr for m in models], dtype=np.float64)

    def predict(self, X: Any, which: np.ndarray) -> np.ndarray:
        X = _as_2d(X, self.n_features)
        which = np.asarray(which, dtype=np.int64)
        if which.shape != (X.shape[0],):
            raise ModelError(f"which: expected {X.shape[0]} model indices, got shape {which.shape}")
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        vals = self._forest.leaf_values(_to_float32(X, False), self._roots[which])
        return _stagewise_sum(self._init[which], self._lr[which][:, None], vals)


class _LinearModel(CompiledModel):
    def __init__(self, spec, n_features, names, coef: np.ndarray, intercept: float):
        super().__init__(spec, "linear", n_features, names)
        self._coef = coef
        self._intercept = intercept

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if not np.isfinite(X).all():
            raise ModelError("X contains NaN or infinity, which this model does not accept")
        return X @ self._coef + self._intercept


class _PipelineModel(CompiledModel):
    def __init__(self, spec, n_features, names, steps: list, final: CompiledModel):
        super().__init__(spec, "pipeline", n_features, names)
        self._steps = steps
        self._final = final

    @property
    def final(self) -> CompiledModel:
        return self._final

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if np.isinf(X).any():  # StandardScaler lets NaN through, not infinity
            raise ModelError("X contains infinity")
        for mean, scale in self._steps:
            X = X.copy()
            if mean is not None:
                X -= mean
            if scale is not None:
                X /= scale
        return self._final._predict(X)


def _check_header(d: Any, where: str) -> tuple[str, int, list[str] | None]:
    if not isinstance(d, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(d).__name__}")
    fmt = _get(d, "format", where)
    if fmt != FORMAT:
        raise ModelError(f"{where}: not an hwnas model (format {fmt!r}, expected {FORMAT!r})")
    version = _get(d, "version", where)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(f"{where}: version must be an integer, got {version!r}")
    if version != VERSION:
        raise ModelError(f"{where}: unsupported model format version {version} (this hwnas reads {VERSION})")
    kind = _get(d, "kind", where)
    if kind not in KINDS:
        raise ModelError(f"{where}: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    n_features = _int(_get(d, "n_features", where), f"{where}.n_features", lo=1)
    names = d.get("feature_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise ModelError(f"{where}.feature_names: expected a list of strings")
        if len(names) != n_features:
            raise ModelError(f"{where}.feature_names: expected {n_features} entries, got {len(names)}")
        names = list(names)
    return kind, n_features, names


def _trees(d: dict, n_features: int, where: str) -> _Forest:
    n = _int(_get(d, "n_estimators", where), f"{where}.n_estimators", lo=1)
    trees = _get(d, "trees", where)
    if not isinstance(trees, list):
        raise ModelError(f"{where}.trees: expected a list, got {type(trees).__name__}")
    if len(trees) != n:
        raise ModelError(f"{where}.trees: expected {n} trees (n_estimators), got {len(trees)}")
    return _Forest([_Tree(t, n_features, f"{where}.trees[{i}]") for i, t in enumerate(trees)])


def _import(d: Any, where: str, nested: bool = False) -> CompiledModel:
    kind, nf, names = _check_header(d, where)
    if kind == "tree":
        allow_nan = _bool(_get(d, "allow_nan", where), f"{where}.allow_nan")
        forest = _Forest([_Tree(_get(d, "tree", where), nf, f"{where}.tree")])
        return _TreeModel(d, nf, names, forest, allow_nan, "single")
    if kind == "forest":
        allow_nan = _bool(_get(d, "allow_nan", where), f"{where}.allow_nan")
        return _TreeModel(d, nf, names, _trees(d, nf, where), allow_nan, "mean")
    if kind == "gbm":
        loss = _get(d, "loss", where)
        if loss not in GBM_LOSSES:
            raise ModelError(f"{where}.loss: unsupported loss {loss!r}")
        lr = _num(_get(d, "learning_rate", where), f"{where}.learning_rate")
        init = _num(_get(d, "init", where), f"{where}.init")
        return _TreeModel(d, nf, names, _trees(d, nf, where), False, "gbm", lr, init)
    if kind == "linear":
        coef = _float_array(_get(d, "coef", where), nf, f"{where}.coef")
        intercept = _num(_get(d, "intercept", where), f"{where}.intercept")
        return _LinearModel(d, nf, names, coef, intercept)
    # pipeline
    if nested:
        raise ModelError(f"{where}: nested pipelines are not supported")
    steps_in = _get(d, "steps", where)
    if not isinstance(steps_in, list):
        raise ModelError(f"{where}.steps: expected a list, got {type(steps_in).__name__}")
    steps = []
    for i, s in enumerate(steps_in):
        w = f"{where}.steps[{i}]"
        if _get(s, "kind", w) != "standard_scaler":
            raise ModelError(f"{w}: unknown step kind {s['kind']!r} (only 'standard_scaler')")
        mean, scale = _get(s, "mean", w), _get(s, "scale", w)
        mean = None if mean is None else _float_array(mean, nf, f"{w}.mean")
        scale = None if scale is None else _float_array(scale, nf, f"{w}.scale")
        if scale is not None and (scale == 0).any():
            raise ModelError(f"{w}.scale: zero scale")
        steps.append((mean, scale))
    final = _import(_get(d, "model", where), f"{where}.model", nested=True)
    if final.n_features != nf:
        raise ModelError(f"{where}.model: expects {final.n_features} features, the pipeline {nf}")
    return _PipelineModel(d, nf, names, steps, final)


def import_model(d: dict) -> CompiledModel:
    """Validate a dict made by :func:`export_model` (possibly via JSON) and compile it.

    Raises :class:`ModelError` (a ``ValueError``) naming the first problem found.
    """
    try:
        return _import(d, "model")
    except ModelError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:  # belt and braces
        raise ModelError(f"model: malformed ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def save_json(obj: dict, path: str | os.PathLike) -> None:
    """Write ``obj`` as compact, strict JSON to ``path`` atomically (temp file + ``os.replace``).

    Float NaN and +-inf (which strict JSON cannot hold) are written as ``null``; model dicts
    from :func:`export_model` never contain them.  Raises :class:`ModelError` if ``obj`` is
    not JSON-serializable; ``OSError`` from the file system propagates, leaving any existing
    ``path`` untouched.
    """
    path = Path(path)
    dump = functools.partial(json.dumps, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    try:
        try:
            text = dump(obj)
        except ValueError:  # NaN / inf somewhere (e.g. a metric): strict JSON has no such value
            text = dump(_finite_or_null(obj))
    except (TypeError, ValueError, RecursionError) as e:
        raise ModelError(f"{path}: cannot write as JSON: {_one_line(e)}") from None
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``.

    Missing, unreadable, empty, truncated or corrupt files raise :class:`ModelError`
    (a ``ValueError``) with a one-line message naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a JSON file") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {_one_line(e.strerror or e)}") from None
    if not raw.strip():
        raise ModelError(f"{path}: empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a UTF-8 text file (corrupt?)") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        what = "truncated" if cut else "corrupt"
        raise ModelError(
            f"{path}: invalid JSON ({what}): {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{path}: invalid JSON: {_one_line(e)}") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a JSON object at the top level, got {type(obj).__name__}")
    return obj
