"""Fitted regressors as plain JSON dicts, validated on load (files: :mod:`.jsonfile`, whose
``save_json`` / ``load_json`` / ``ModelError`` are re-exported here).

Saved predictors never go through pickle.  hwnas saves two kinds of model, and this module
supports exactly those:

* ``"gbm"``: a ``GradientBoostingRegressor`` (``loss="squared_error"``, the default
  ``DummyRegressor`` init, single output): the learned predictor's residual, the kernel
  predictor's families and the accuracy predictor's default model (:func:`export_model`);
* ``"mlp"``: the accuracy predictor's MLP, ``StandardScaler`` -> ``MLPRegressor`` (ReLU) on a
  standardised target (:func:`export_mlp`).

:func:`import_model` checks a model dict (format, version, structure and values; the one place
where loaded model values are checked: extend :func:`_check_header`, :class:`_Tree` or
:func:`_import_mlp`) and returns a :class:`CompiledModel`:

* a gbm or an mlp model of :mod:`.compiled`, which says how each predicts (gbm: a vectorized
  numpy traversal, or scikit-learn's own estimator rebuilt from the JSON for large batches;
  both bit-identical to the estimator that was saved).

Format (``version`` 1), all keys required unless marked optional::

    {"format": "hwnas-model", "version": 1, "kind": "gbm" | "mlp", "n_features": int,
     "feature_names": [str, ...]                # optional
     "sklearn_version": str, "estimator": str   # informational, optional
     ...kind-specific keys...}

    gbm: "loss": "squared_error", "learning_rate": float, "init": float,
         "n_estimators": int, "trees": [TREE, ...]
    mlp: "activation": "relu", "x_mean": [float] * n_features, "x_scale": [float] * n_features,
         "coefs": [[[float]]] (layer matrices, n_features x ... x 1), "intercepts": [[float]],
         "y_mean": float, "y_std": float

    TREE = {"n_nodes": int, "children_left": [int], "children_right": [int],
            "feature": [int], "threshold": [float], "value": [float],
            "missing_go_to_left": [0|1]     # optional, all 0 when absent}

Thresholds are plain JSON floats (Python writes the shortest repr that round-trips exactly);
non-finite ones are written as the strings ``"inf"`` / ``"-inf"`` so the files stay strict JSON.
Older versions could also export trees, forests, linear models and pipelines; hwnas never saved
any of them, so they are no longer read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .compiled import GBM_LOSS, SKLEARN_MIN_ROWS, CompiledModel, GBMModel, MLPModel, StackedGBM
from .jsonfile import ModelError, load_json, save_json

FORMAT = "hwnas-model"
VERSION = 1
KINDS = ("gbm", "mlp")
MLP_ACTIVATION = "relu"

__all__ = [
    "FORMAT",
    "VERSION",
    "CompiledModel",
    "ModelError",
    "SKLEARN_MIN_ROWS",
    "StackedGBM",
    "export_mlp",
    "export_model",
    "import_model",
    "load_json",
    "save_json",
]


# --------------------------------------------------------------------------------------------
# export (needs scikit-learn; imported lazily)
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
    arr = np.asarray(a, dtype=np.float64)
    if np.isnan(arr).any():
        raise ModelError("cannot export an array containing NaN")
    if np.isinf(arr).any():
        return [_float(v) for v in arr.ravel().tolist()]
    return arr.tolist()


def _export_tree(tree: Any) -> dict:
    """The arrays of a fitted single-output ``sklearn.tree._tree.Tree``."""
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


def _header(kind: str, estimator: Any, n_features: int) -> dict:
    import sklearn

    return {"format": FORMAT, "version": VERSION, "kind": kind, "estimator": type(estimator).__name__,
            "sklearn_version": sklearn.__version__, "n_features": int(n_features)}


def export_model(est: Any) -> dict:
    """A JSON-able dict of a fitted ``GradientBoostingRegressor`` (see the module docstring).

    Raises :class:`ModelError` (a ``ValueError``) for another estimator, loss, init or an
    unfitted or multi-output one.
    """
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import GradientBoostingRegressor

    if type(est) is not GradientBoostingRegressor:
        raise ModelError(f"cannot export {type(est).__name__}: only GradientBoostingRegressor is saved")
    if not hasattr(est, "estimators_"):
        raise ModelError("GradientBoostingRegressor is not fitted")
    if est.loss != GBM_LOSS:
        raise ModelError(f"GradientBoostingRegressor loss {est.loss!r} is not supported (only {GBM_LOSS!r})")
    if est.estimators_.ndim != 2 or est.estimators_.shape[1] != 1 or getattr(est, "n_outputs_", 1) != 1:
        raise ModelError("only single-output GradientBoostingRegressor can be exported")
    if type(est.init_) is not DummyRegressor:
        raise ModelError(f"GradientBoostingRegressor init {type(est.init_).__name__} is not supported "
                         "(only the default DummyRegressor)")
    c = np.asarray(est.init_.constant_, dtype=np.float64).ravel()
    d = _header("gbm", est, est.n_features_in_)
    d["loss"] = GBM_LOSS
    d["learning_rate"] = _float(est.learning_rate)
    d["init"] = _float(c[0])
    d["n_estimators"] = int(est.estimators_.shape[0])
    d["trees"] = [_export_tree(e.tree_) for e in est.estimators_[:, 0]]
    return d


def export_mlp(mlp: Any, scaler: Any, y_mean: float, y_std: float) -> dict:
    """A JSON-able dict of a fitted ``MLPRegressor`` (ReLU, single output) fitted on
    ``scaler.transform(X)`` against ``(y - y_mean) / y_std``: it predicts ``y``."""
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    if type(mlp) is not MLPRegressor or not hasattr(mlp, "coefs_"):
        raise ModelError(f"cannot export {type(mlp).__name__}: only a fitted MLPRegressor is saved")
    if (type(scaler) is not StandardScaler or not hasattr(scaler, "scale_") or not scaler.with_mean
            or not scaler.with_std):
        raise ModelError("the MLP's inputs must be scaled by a fitted StandardScaler (with mean and std)")
    if mlp.activation != MLP_ACTIVATION or mlp.n_outputs_ != 1:
        raise ModelError(f"only single-output MLPRegressor with activation {MLP_ACTIVATION!r} can be exported")
    d = _header("mlp", mlp, mlp.n_features_in_)
    d.update({"activation": MLP_ACTIVATION, "x_mean": _floats(scaler.mean_), "x_scale": _floats(scaler.scale_),
              "coefs": [_floats(c) for c in mlp.coefs_], "intercepts": [_floats(b) for b in mlp.intercepts_],
              "y_mean": _float(y_mean), "y_std": _float(y_std)})
    return d


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


def _list(x: Any, n: int | None, where: str) -> list:
    if not isinstance(x, list):
        raise ModelError(f"{where}: expected a list, got {type(x).__name__}")
    if n is not None and len(x) != n:
        raise ModelError(f"{where}: expected {n} entries, got {len(x)}")
    return x


def _int_array(x: Any, n: int, where: str) -> np.ndarray:
    _list(x, n, where)
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
    _list(x, n, where)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iuf" and not _has_bool(x):
        arr = arr.astype(np.float64)
    else:  # mixed content (e.g. "inf" strings): check element by element
        arr = np.array([_num(v, f"{where}[{i}]", finite=finite) for i, v in enumerate(x)])
    if np.isnan(arr).any():
        raise ModelError(f"{where}[{int(np.flatnonzero(np.isnan(arr))[0])}]: NaN is not allowed")
    if finite and np.isinf(arr).any():
        raise ModelError(f"{where}[{int(np.flatnonzero(np.isinf(arr))[0])}]: must be finite")
    return arr


def _float_matrix(x: Any, rows: int, where: str) -> np.ndarray:
    """A finite float64 ``(rows, cols)`` matrix from a list of equally long lists of numbers."""
    _list(x, rows, where)
    cols = len(_list(x[0], None, f"{where}[0]")) if rows else 0
    if cols == 0:
        raise ModelError(f"{where}: empty matrix")
    return np.stack([_float_array(r, cols, f"{where}[{i}]") for i, r in enumerate(x)])


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
        raise ModelError(f"{where}: unsupported model kind {kind!r} (this hwnas reads {', '.join(KINDS)})")
    n_features = _int(_get(d, "n_features", where), f"{where}.n_features", lo=1)
    names = d.get("feature_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise ModelError(f"{where}.feature_names: expected a list of strings")
        if len(names) != n_features:
            raise ModelError(f"{where}.feature_names: expected {n_features} entries, got {len(names)}")
        names = list(names)
    return kind, n_features, names


class _Tree:
    """A validated regression tree (scikit-learn's arrays; ``-1`` children mark a leaf)."""

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
                raise ModelError(f"{where}.{name}[{i}] = {int(ch[i])}: child index out of range "
                                 f"(must be in {i + 1}..{n - 1})")
        counts = np.bincount(np.concatenate([left[internal], right[internal]]), minlength=n)
        if counts[0] != 0 or (counts[1:] != 1).any():
            i = int(np.flatnonzero(np.concatenate([[counts[0] != 0], counts[1:] != 1]))[0])
            raise ModelError(f"{where}: node {i} has {int(counts[i])} parents (not a tree)")
        bad = internal & ((feature < 0) | (feature >= n_features))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ModelError(f"{where}.feature[{i}] = {int(feature[i])}: out of range for {n_features} features")
        depth = np.zeros(n, dtype=np.int64)
        for i in np.flatnonzero(internal):  # parents precede children
            depth[left[i]] = depth[right[i]] = depth[i] + 1

        self.n_nodes = n
        self.left, self.right, self.feature = left, right, np.where(leaf, -2, feature)
        self.threshold = np.where(leaf, -2.0, threshold)
        self.value = value
        self.mgl = mgl
        self.depth = int(depth.max())


# --------------------------------------------------------------------------------------------
def _import_gbm(d: dict, nf: int, names, where: str) -> GBMModel:
    loss = _get(d, "loss", where)
    if loss != GBM_LOSS:
        raise ModelError(f"{where}.loss: unsupported loss {loss!r} (only {GBM_LOSS!r})")
    lr = _num(_get(d, "learning_rate", where), f"{where}.learning_rate")
    init = _num(_get(d, "init", where), f"{where}.init")
    n = _int(_get(d, "n_estimators", where), f"{where}.n_estimators", lo=1)
    trees = _list(_get(d, "trees", where), None, f"{where}.trees")
    if len(trees) != n:
        raise ModelError(f"{where}.trees: expected {n} trees (n_estimators), got {len(trees)}")
    return GBMModel(d, nf, names, [_Tree(t, nf, f"{where}.trees[{i}]") for i, t in enumerate(trees)], lr, init)


def _import_mlp(d: dict, nf: int, names, where: str) -> MLPModel:
    act = _get(d, "activation", where)
    if act != MLP_ACTIVATION:
        raise ModelError(f"{where}.activation: unsupported activation {act!r} (only {MLP_ACTIVATION!r})")
    x_mean = _float_array(_get(d, "x_mean", where), nf, f"{where}.x_mean")
    x_scale = _float_array(_get(d, "x_scale", where), nf, f"{where}.x_scale")
    if (x_scale == 0).any():
        raise ModelError(f"{where}.x_scale[{int(np.flatnonzero(x_scale == 0)[0])}]: zero scale")
    coefs_in = _list(_get(d, "coefs", where), None, f"{where}.coefs")
    if not coefs_in:
        raise ModelError(f"{where}.coefs: no layers")
    intercepts_in = _list(_get(d, "intercepts", where), len(coefs_in), f"{where}.intercepts")
    coefs, intercepts, rows = [], [], nf
    for i, (w, b) in enumerate(zip(coefs_in, intercepts_in)):
        W = _float_matrix(w, rows, f"{where}.coefs[{i}]")
        coefs.append(W)
        intercepts.append(_float_array(b, W.shape[1], f"{where}.intercepts[{i}]"))
        rows = W.shape[1]
    if rows != 1:
        raise ModelError(f"{where}.coefs[{len(coefs) - 1}]: the output layer has {rows} units, expected 1")
    y_mean = _num(_get(d, "y_mean", where), f"{where}.y_mean")
    y_std = _num(_get(d, "y_std", where), f"{where}.y_std")
    if y_std <= 0:
        raise ModelError(f"{where}.y_std: must be positive, got {y_std}")
    return MLPModel(d, nf, names, x_mean, x_scale, coefs, intercepts, y_mean, y_std)


def import_model(d: dict) -> CompiledModel:
    """Validate a dict made by :func:`export_model` / :func:`export_mlp` (possibly via JSON)
    and compile it.  Raises :class:`ModelError` (a ``ValueError``) naming the first problem."""
    try:
        kind, nf, names = _check_header(d, "model")
        return (_import_gbm if kind == "gbm" else _import_mlp)(d, nf, names, "model")
    except ModelError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:  # belt and braces
        raise ModelError(f"model: malformed ({type(e).__name__}: {e})") from None
