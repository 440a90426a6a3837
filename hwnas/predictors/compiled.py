"""Validated models' predictions (made by :func:`hwnas.predictors.serialize.import_model`).

* A gbm predicts with a vectorized numpy traversal of its trees (:class:`StackedGBM`, which
  also evaluates several gbms in one call, row ``i`` through model ``which[i]``: the kernel
  predictor's families) below :data:`SKLEARN_MIN_ROWS` rows, and with scikit-learn's own
  ``GradientBoostingRegressor.predict`` on the estimator rebuilt from the JSON
  (:meth:`GBMModel.sklearn_estimator`: each tree through ``sklearn.tree._tree.Tree``'s state, no
  pickle) from there on; both bit-identical to the estimator that was saved.  The traversal is
  kept because it pays (``benchmarks/gbm_inference.py``, a loaded 2-core machine): an evolution
  search's gbm calls (median 56 rows) replayed in 0.6-0.7x scikit-learn's time, a kernel
  predictor's one call per model in 1/6-1/13 of one scikit-learn call per family, single calls
  of 1-100 rows in 0.1-0.8x (scikit-learn's fixed cost per call is ~0.4 ms); scikit-learn,
  called in blocks of rows, is faster from about 500-1,000 rows on (100,000 rows: 0.4x the
  traversal's time).
* An mlp predicts with the same numpy matrix products as ``MLPRegressor.predict``.

Tree semantics follow scikit-learn: ``X`` is cast to float32 before the trees see it and a
sample goes left when ``float(x_f) <= threshold`` (threshold in float64).  NaN and infinite
inputs are refused.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from .jsonfile import ModelError

GBM_LOSS = "squared_error"
SKLEARN_MIN_ROWS = 500
"""A gbm predicts batches of at least this many rows with scikit-learn's own estimator (faster
there: ``benchmarks/gbm_inference.py``), smaller ones with the numpy traversal (no per-call
overhead of ~0.35 ms)."""
# rows * trees per block of the stacked traversal (bounds temporary memory)
_BLOCK = 1 << 20
_SKLEARN_BLOCK = 2048  # rows per scikit-learn predict call


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


def _to_float32(X: np.ndarray) -> np.ndarray:
    """scikit-learn's tree input: cast to float32 (C order); NaN and infinity are refused."""
    with np.errstate(over="ignore", invalid="ignore"):
        Xf = np.ascontiguousarray(X, dtype=np.float32)
    if np.isinf(Xf).any():
        raise ModelError("X contains infinity or a value too large for float32")
    if np.isnan(Xf).any():
        raise ModelError("X contains NaN, which this model does not accept")
    return Xf


class CompiledModel:
    """A validated model; ``predict`` reproduces the scikit-learn estimator it came from."""

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


class GBMModel(CompiledModel):
    """A gradient-boosted model: batches under :data:`SKLEARN_MIN_ROWS` rows go through
    :class:`StackedGBM`'s traversal of its trees, larger ones through scikit-learn's own
    estimator rebuilt from them (:meth:`sklearn_estimator`); the same figures, bit for bit."""

    def __init__(self, spec: dict, n_features: int, names, trees: Sequence[Any], learning_rate: float, init: float):
        super().__init__(spec, "gbm", n_features, names)
        self.trees = trees
        self.learning_rate = learning_rate
        self.init = init
        self._est = None
        self._stacked: StackedGBM | None = None

    def sklearn_estimator(self):
        """The ``GradientBoostingRegressor`` this model was exported from, rebuilt (no pickle)."""
        if self._est is None:
            self._est = _rebuild_gbm(self)
        return self._est

    def traverse(self, X: Any) -> np.ndarray:
        """Predictions by :class:`StackedGBM`'s numpy traversal, at any batch size."""
        if self._stacked is None:
            self._stacked = StackedGBM([self])
        return self._stacked.predict(X, np.zeros(len(X), dtype=np.int64))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) < SKLEARN_MIN_ROWS:
            return self.traverse(X)
        est, Xf = self.sklearn_estimator(), _to_float32(X)
        # in blocks of rows: scikit-learn walks every tree over all rows, which leaves the cache
        # on large batches (100,000 rows of 143 features: 1.6 s in blocks, 9.7 s at once here)
        return np.concatenate([est.predict(Xf[a:a + _SKLEARN_BLOCK]) for a in range(0, len(Xf), _SKLEARN_BLOCK)])


def _rebuild_tree(t: Any, n_features: int):
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import NODE_DTYPE, Tree

    nodes = np.zeros(t.n_nodes, dtype=NODE_DTYPE)
    nodes["left_child"], nodes["right_child"] = t.left, t.right
    nodes["feature"], nodes["threshold"] = t.feature, t.threshold
    if "missing_go_to_left" in NODE_DTYPE.names:  # scikit-learn >= 1.3
        nodes["missing_go_to_left"] = t.mgl
    tree = Tree(n_features, np.ones(1, dtype=np.intp), 1)
    tree.__setstate__({"max_depth": t.depth, "node_count": t.n_nodes, "nodes": nodes,
                       "values": t.value.reshape(-1, 1, 1).copy()})
    est = DecisionTreeRegressor()
    est.tree_, est.n_features_in_, est.n_outputs_, est.max_features_ = tree, n_features, 1, n_features
    return est


def _rebuild_gbm(m: GBMModel):
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import GradientBoostingRegressor

    try:
        est = GradientBoostingRegressor(loss=GBM_LOSS, learning_rate=m.learning_rate, n_estimators=len(m.trees))
        est.estimators_ = np.empty((len(m.trees), 1), dtype=object)
        for i, t in enumerate(m.trees):
            est.estimators_[i, 0] = _rebuild_tree(t, m.n_features)
        init = DummyRegressor()
        init.constant_, init.n_outputs_, init.n_features_in_ = np.full((1, 1), m.init), 1, m.n_features
        est.init_, est.n_features_in_, est.n_trees_per_iteration_ = init, m.n_features, 1
        est._loss = est._get_loss(sample_weight=None)
    except (AttributeError, TypeError, ValueError, KeyError) as e:  # a scikit-learn whose internals moved
        import sklearn

        raise ModelError(f"cannot rebuild a GradientBoostingRegressor with scikit-learn {sklearn.__version__}: "
                         f"{type(e).__name__}: {e}") from None
    return est


def _floor_float32(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold.

    For a float32 ``x``, ``x <= t`` (compared in float64, as scikit-learn's C code does)
    holds exactly when ``x <= _floor_float32(t)``, so traversal can stay in float32.
    """
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    return np.where(t32.astype(np.float64) > t, np.nextafter(t32, np.float32(-np.inf)), t32)


class StackedGBM:
    """Several gradient-boosted models over the same features, evaluated in one vectorized
    traversal: row ``i`` goes through model ``which[i]``.  Each row's figure equals its model's
    own ``predict`` bit for bit (its trees, summed stage by stage as scikit-learn does; shorter
    models are padded with trees of value 0 at the end).  One call instead of one per model:
    the kernel predictor's families."""

    def __init__(self, models: Sequence[CompiledModel]):
        if not models or not all(isinstance(m, GBMModel) for m in models):
            raise ModelError("StackedGBM takes gradient-boosted models only")
        nf = {m.n_features for m in models}
        if len(nf) != 1:
            raise ModelError(f"StackedGBM: the models expect different feature counts {sorted(nf)}")
        self.n_features = nf.pop()
        trees = [t for m in models for t in m.trees]
        sizes = np.array([t.n_nodes for t in trees], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        pad = int(offsets[-1])  # a leaf of value 0 at the end: the padding trees
        # leaves loop to themselves so traversal needs no leaf test
        left = np.concatenate([np.where(t.left < 0, np.arange(t.n_nodes), t.left) + o
                               for t, o in zip(trees, offsets)] + [[pad]])
        right = np.concatenate([np.where(t.right < 0, np.arange(t.n_nodes), t.right) + o
                                for t, o in zip(trees, offsets)] + [[pad]])
        self._kids = np.stack([left, right], axis=1).ravel()  # [2 * node + go_right]
        self._feature = np.concatenate([np.maximum(t.feature, 0) for t in trees] + [[0]])
        self._threshold32 = _floor_float32(np.concatenate([t.threshold for t in trees] + [[0.0]]))
        self._value = np.concatenate([t.value for t in trees] + [[0.0]])
        self._depth = max(t.depth for t in trees)
        self._n_trees = max(len(m.trees) for m in models)
        self._roots = np.full((len(models), self._n_trees), pad, dtype=np.int64)
        first = 0
        for i, m in enumerate(models):
            self._roots[i, : len(m.trees)] = offsets[first:first + len(m.trees)]
            first += len(m.trees)
        self._init = np.array([m.init for m in models], dtype=np.float64)
        self._lr = np.array([m.learning_rate for m in models], dtype=np.float64)

    def _leaf_values(self, Xf: np.ndarray, row_roots: np.ndarray) -> np.ndarray:
        """``(n_samples, n_trees)`` leaf values for float32 ``Xf``, row ``i`` from the trees at
        ``row_roots[i]``; in blocks of rows (bounds temporary memory)."""
        n, n_features = Xf.shape
        out = np.empty((n, self._n_trees), dtype=np.float64)
        step = max(1, _BLOCK // self._n_trees)
        for a in range(0, n, step):
            flat = Xf[a:a + step].ravel()
            m = flat.shape[0] // n_features
            row0 = (np.arange(m, dtype=np.int64) * n_features)[:, None]
            node = row_roots[a:a + m]
            for _ in range(self._depth):
                node = self._kids[2 * node + (flat[row0 + self._feature[node]] > self._threshold32[node])]
            out[a:a + m] = self._value[node]
        return out

    def predict(self, X: Any, which: np.ndarray) -> np.ndarray:
        X = _as_2d(X, self.n_features)
        which = np.asarray(which, dtype=np.int64)
        if which.shape != (X.shape[0],):
            raise ModelError(f"which: expected {X.shape[0]} model indices, got shape {which.shape}")
        if X.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        if which.min() < 0 or which.max() >= len(self._init):
            raise ModelError(f"which: model indices must be in 0..{len(self._init) - 1}")
        vals = self._leaf_values(_to_float32(X), self._roots[which])
        # init, then += learning_rate * tree, strictly in tree order (a row-wise cumsum), as
        # scikit-learn's stage-by-stage loop adds (a plain sum() adds pairwise: other last bits)
        terms = np.empty((vals.shape[0], vals.shape[1] + 1), dtype=np.float64)
        terms[:, 0] = self._init[which]
        np.multiply(self._lr[which][:, None], vals, out=terms[:, 1:])
        return np.cumsum(terms, axis=1)[:, -1].copy()


class MLPModel(CompiledModel):
    """The accuracy predictor's MLP: standardise, ReLU layers, linear output, un-standardise
    (the matrix products of ``MLPRegressor.predict``)."""

    def __init__(self, spec: dict, n_features: int, names, x_mean, x_scale, coefs, intercepts, y_mean, y_std):
        super().__init__(spec, "mlp", n_features, names)
        self._x_mean, self._x_scale = x_mean, x_scale
        self._coefs, self._intercepts = coefs, intercepts
        self._y_mean, self._y_std = y_mean, y_std

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if not np.isfinite(X).all():
            raise ModelError("X contains NaN or infinity, which this model does not accept")
        h = (X - self._x_mean) / self._x_scale
        last = len(self._coefs) - 1
        for i, (W, b) in enumerate(zip(self._coefs, self._intercepts)):
            h = h @ W + b
            if i < last:
                h = np.maximum(h, 0.0)
        return h[:, 0] * self._y_std + self._y_mean
