"""Accuracy predictor (Once-for-All style): a regressor from the architecture encoding to accuracy.

Fitted on (architecture, accuracy) pairs, either measured on a trained supernet with
inherited weights (:func:`supernet_pairs`, cached in ``DIR/pairs.csv``) or read from a user CSV
with columns ``arch,accuracy`` (:func:`read_pairs_csv`).  Two model kinds:

* ``gbm``: scikit-learn gradient-boosted trees;
* ``mlp``: scikit-learn ``MLPRegressor`` (OFA uses a 3x400 MLP) on standardized features.

Both are saved through :mod:`hwnas.predictors.serialize` (trees or weight matrices as JSON
arrays; format version, structure and values checked on load).

Features (``features``): the space's ``ordinal`` or ``onehot`` encoding, optionally with
``+cost`` (log10 MACs and log10 params of the architecture) appended.  ``auto`` (the default of
:func:`fit_auto` / :func:`fit_predictor`) picks among gradient-boosted trees on ``ordinal``,
``ordinal+cost`` and ``onehot+cost`` by 5-fold cross-validated Spearman on the training pairs.

Everything is saved as JSON (``DIR/predictor.json``); no pickle.  :func:`fit_predictor`
reports RMSE, MAE, Spearman and Kendall on held-out pairs (a deterministic split by a hash of
the architecture string); the saved model is the one fitted on the training part, so the
reported figures describe exactly it.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..space import DEFAULT_SPACE, Arch, SearchSpace, stable_hash

FORMAT = "hwnas-accuracy-predictor"
VERSION = 2
"""2: the mlp saved as a ``regressor`` model dict (:func:`hwnas.predictors.serialize.export_mlp`);
version 1 kept it as a bare ``mlp`` dict, still read."""
PREDICTOR_FILE = "predictor.json"
PAIRS_FILE = "pairs.csv"
MODELS = ("gbm", "mlp")
FEATURES = ("ordinal", "onehot", "ordinal+cost", "onehot+cost")

__all__ = [
    "AccuracyPredictor",
    "cost_features",
    "cross_validate",
    "fit_auto",
    "fit_predictor",
    "heldout_split",
    "rank_metrics",
    "read_pairs_csv",
    "supernet_pairs",
]


def rank_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    from scipy import stats

    pred, true = np.asarray(pred, float), np.asarray(true, float)
    err = pred - true
    ok = len(true) > 2 and np.ptp(true) > 0 and np.ptp(pred) > 0
    return {"n": int(len(true)), "rmse": float(np.sqrt(np.mean(err**2))) if len(true) else float("nan"),
            "mae": float(np.mean(np.abs(err))) if len(true) else float("nan"),
            "spearman": float(stats.spearmanr(pred, true).statistic) if ok else float("nan"),
            "kendall": float(stats.kendalltau(pred, true).statistic) if ok else float("nan")}


def heldout_split(keys: Sequence[str], test_fraction: float = 0.25, salt: str = "hwnas-acc") -> tuple[list[int], list[int]]:
    """Deterministic split of positions by a hash of each key: ``(train, test)``."""
    train, test = [], []
    for i, k in enumerate(keys):
        (test if stable_hash(k, salt) / 2**32 < test_fraction else train).append(i)
    return train, test


def cost_features(X_ordinal: np.ndarray, space: SearchSpace) -> np.ndarray:
    """``[log10 MACs, log10 params]`` per row of the space's ordinal encoding (1000-class head,
    equal to :func:`hwnas.cost.arch_cost`), vectorized through the space's cost table."""
    return _genome_cost_features(space.ordinal_to_genomes(X_ordinal), space)


def _genome_cost_features(G: np.ndarray, space: SearchSpace) -> np.ndarray:
    """``[log10 MACs, log10 params]`` per index genome of ``space`` (through its cost table)."""
    from ..cost import cost_table

    c = cost_table(space).costs(G)
    return np.log10(np.stack([c["macs"], c["params"]], axis=1).astype(np.float64))


class AccuracyPredictor:
    """Predicts accuracy (the unit of the pairs it was fitted on) from the architecture."""

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, model: str = "gbm", features: str = "ordinal+cost",
                 seed: int = 0) -> None:
        if model not in MODELS:
            raise InputError(f"unknown predictor model {model!r}; choose from {', '.join(MODELS)}")
        if features not in FEATURES:
            raise InputError(f"unknown predictor features {features!r}; choose from {', '.join(FEATURES)}")
        self.space, self.model, self.features, self.seed = space, model, features, seed
        self.compiled_ = None  # a serialize.CompiledModel (gbm or mlp)
        self.info: dict = {}

    # -- features ------------------------------------------------------------------------------
    def _feature_parts(self) -> tuple[str, bool]:
        """(encoding kind, whether the cost columns are appended) of ``features``."""
        kind, _, extra = self.features.partition("+")
        return kind, extra == "cost"

    def n_features(self) -> int:
        """Width of the feature matrix (:meth:`transform`'s columns)."""
        kind, cost = self._feature_parts()
        return int(self.space.encode([self.space.smallest()], kind).shape[1]) + (2 if cost else 0)

    def transform(self, archs: Sequence[Arch]) -> np.ndarray:
        kind, cost = self._feature_parts()
        archs = list(archs)
        ordinal = self.space.encode(archs, "ordinal").astype(np.float64)
        X = ordinal if kind == "ordinal" else self.space.encode(archs, kind).astype(np.float64)
        if cost:
            X = np.hstack([X, cost_features(ordinal, self.space)])
        return X

    def features_from_genomes(self, G: np.ndarray, space: SearchSpace | None = None) -> np.ndarray:
        """The feature matrix of index genomes ``G`` of ``space`` (default: the predictor's own
        space, which must cover ``space``; ``SearchSpace.random_genomes``), vectorized: the same
        rows as :meth:`transform` of their architectures."""
        if space is not None and space.to_dict() != self.space.to_dict():
            G = space.genomes_into(self.space, G)  # a smaller space's genomes index other choices
        kind, cost = self._feature_parts()
        X = self.space.genomes_to_ordinal(G) if kind == "ordinal" else self.space.genomes_to_onehot(G)
        X = X.astype(np.float64)
        if cost:
            X = np.hstack([X, _genome_cost_features(G, self.space)])
        return X

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, archs: Sequence[Arch], accuracy: Sequence[float]) -> "AccuracyPredictor":
        y = np.asarray(accuracy, dtype=np.float64)
        if len(archs) != len(y):
            raise ValueError(f"{len(archs)} architectures but {len(y)} accuracies")
        if len(y) < 10:
            raise InputError(f"an accuracy predictor needs at least 10 (architecture, accuracy) pairs, got {len(y)}")
        from ..predictors.serialize import export_mlp, export_model, import_model

        X = self.transform(archs)
        if self.model == "gbm":
            from sklearn.ensemble import GradientBoostingRegressor

            est = GradientBoostingRegressor(n_estimators=300, learning_rate=0.04, max_depth=3, subsample=0.8,
                                            min_samples_leaf=3, random_state=self.seed)
            est.fit(X, y)
            self.compiled_ = import_model(export_model(est))
        else:
            from sklearn.neural_network import MLPRegressor
            from sklearn.preprocessing import StandardScaler

            sc = StandardScaler().fit(X)
            mu, sd = float(y.mean()), float(y.std() or 1.0)
            est = MLPRegressor(hidden_layer_sizes=(128, 128), alpha=1e-3, learning_rate_init=1e-3, max_iter=3000,
                               early_stopping=False, random_state=self.seed)
            est.fit(sc.transform(X), (y - mu) / sd)
            self.compiled_ = import_model(export_mlp(est, sc, mu, sd))
        return self

    @property
    def fitted(self) -> bool:
        return self.compiled_ is not None

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise InputError("the accuracy predictor is not fitted")
        return self.compiled_.predict(X)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.predict_features(self.transform(archs))

    def predict_encoded(self, X_ordinal: np.ndarray) -> np.ndarray:
        """Predictions from the space's ordinal encoding (fast path for searches; ordinal features only)."""
        kind, cost = self._feature_parts()
        if kind != "ordinal":
            raise ValueError(f"predict_encoded needs ordinal features; this predictor uses {self.features!r}")
        X = np.asarray(X_ordinal, dtype=np.float64)
        if cost:
            X = np.hstack([X, cost_features(X, self.space)])
        return self.predict_features(X)

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        if not self.fitted:
            raise InputError("cannot save an unfitted accuracy predictor")
        d = {"format": FORMAT, "version": VERSION, "space": self.space.to_dict(), "model": self.model,
             "features": self.features, "seed": self.seed, "info": self.info,
             "regressor": self.compiled_.to_dict()}
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "predictor") -> "AccuracyPredictor":
        """A predictor from :meth:`to_dict`'s dict (any version so far), checked through
        :func:`hwnas.predictors.serialize.import_model`; a bad one raises a one-line
        :class:`InputError`."""
        from ..predictors.serialize import import_model

        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"{where} is not an hwnas accuracy predictor")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError(f"{where} has an invalid format version {version!r}")
        if version > VERSION:
            raise InputError(f"{where} has format version {version}; upgrade hwnas to read it")
        try:
            p = cls(SearchSpace.from_dict(d["space"]), d["model"], d["features"], int(d.get("seed", 0)))
            p.info = dict(d.get("info", {}))
            reg = d["regressor"] if "regressor" in d or p.model == "gbm" else _legacy_mlp(d["mlp"])
            p.compiled_ = import_model(reg)
            if p.compiled_.kind != p.model:
                raise ValueError(f"model {p.model!r} but a {p.compiled_.kind!r} regressor")
            width = p.n_features()
            if p.compiled_.n_features != width:
                raise ValueError(f"the regressor takes {p.compiled_.n_features} features, "
                                 f"{p.features!r} on its space gives {width}")
        except (KeyError, TypeError, ValueError, InputError) as e:
            raise InputError(f"{where} is corrupt ({e.__class__.__name__}: {e})") from None
        return p

    def save(self, path: str | os.PathLike) -> Path:
        from ..predictors.serialize import save_json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(self.to_dict(), path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AccuracyPredictor":
        from ..predictors.serialize import load_json

        path = Path(path)
        try:
            d = load_json(path)
        except ValueError as e:
            raise InputError(f"accuracy predictor {path} is unreadable: {e}") from None
        return cls.from_dict(d, str(path))


def _legacy_mlp(m: dict) -> dict:
    """A version-1 file's bare ``mlp`` dict as a model dict of :mod:`hwnas.predictors.serialize`."""
    from ..predictors.serialize import FORMAT as MODEL_FORMAT, VERSION as MODEL_VERSION

    if not isinstance(m, dict):
        raise TypeError(f"mlp: expected a JSON object, got {type(m).__name__}")
    return {"format": MODEL_FORMAT, "version": MODEL_VERSION, "kind": "mlp", "n_features": len(m["mean"]),
            "activation": m["activation"], "x_mean": m["mean"], "x_scale": m["scale"], "coefs": m["coefs"],
            "intercepts": m["intercepts"], "y_mean": m["y_mean"], "y_std": m["y_std"]}


# --------------------------------------------------------------------------------------------
# pairs


def read_pairs_csv(path: str | os.PathLike, space: SearchSpace = DEFAULT_SPACE) -> tuple[list[Arch], np.ndarray]:
    """(architectures, accuracies) from a CSV with a header ``arch,accuracy`` (other columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pairs file not found: {path}")
    archs, acc = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            r = csv.DictReader(f)
            if r.fieldnames is None or "arch" not in r.fieldnames or "accuracy" not in r.fieldnames:
                raise InputError(f"{path}: expected a header with columns 'arch' and 'accuracy', got {r.fieldnames}")
            for line, row in enumerate(r, start=2):
                try:
                    a = space.parse((row["arch"] or "").strip())
                except ValueError as e:
                    raise InputError(f"{path} line {line}: {e}") from None
                try:
                    v = float(row["accuracy"])
                except (TypeError, ValueError):
                    raise InputError(f"{path} line {line}: accuracy {row['accuracy']!r} is not a number") from None
                if not math.isfinite(v):
                    raise InputError(f"{path} line {line}: accuracy {row['accuracy']!r} is not finite")
                archs.append(a)
                acc.append(v)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV: {e}") from None
    if not archs:
        raise InputError(f"{path}: no (arch, accuracy) rows")
    return archs, np.asarray(acc, dtype=np.float64)


def checkpoint_id(accuracy_dir: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of the supernet checkpoint file: which weights pairs came from."""
    from .supernet import checkpoint_paths

    ckpt, _ = checkpoint_paths(accuracy_dir)
    h = hashlib.sha256()
    with open(ckpt, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _read_cache(path: Path, ckpt: str) -> dict[str, float]:
    cache: dict[str, float] = {}
    if not path.is_file():
        return cache
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("checkpoint") == ckpt:
                    try:
                        cache[row["arch"]] = float(row["accuracy"])
                    except (TypeError, ValueError, KeyError):
                        continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return cache


def supernet_pairs(accuracy_dir: str | os.PathLike, n: int, seed: int = 1, space: SearchSpace = DEFAULT_SPACE,
                   progress: Callable[[int, int], None] | None = None, loaded=None) -> tuple[list[Arch], np.ndarray]:
    """``n`` seeded distinct architectures and their inherited-weight accuracies, measured on the
    supernet in ``accuracy_dir``; measured pairs are appended to ``DIR/pairs.csv`` as they come
    (keyed by the checkpoint's hash), so an interrupted run loses nothing and a rerun reuses them."""
    from .supernet import evaluate_archs, load_supernet

    d = Path(accuracy_dir)
    ls = loaded if loaded is not None else load_supernet(d, space)
    ckpt = checkpoint_id(d)
    path = d / PAIRS_FILE
    cache = _read_cache(path, ckpt)
    archs = space.sample_many(n, seed=seed)
    todo = [a for a in archs if str(a) not in cache]
    new_file = not path.is_file()
    done = len(archs) - len(todo)
    if progress is not None:
        progress(done, len(archs))
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new_file:
            w.writerow(["arch", "accuracy", "checkpoint"])
        for a in todo:
            acc = float(evaluate_archs(ls, [a])[0])
            cache[str(a)] = acc
            w.writerow([str(a), repr(acc), ckpt])
            f.flush()
            done += 1
            if progress is not None:
                progress(done, len(archs))
    return archs, np.array([cache[str(a)] for a in archs])


AUTO_CANDIDATES = (("gbm", "ordinal"), ("gbm", "ordinal+cost"), ("gbm", "onehot+cost"))
"""(model, features) pairs that ``auto`` chooses among by cross-validation."""


def _folds(keys: Sequence[str], k: int, salt: str = "hwnas-acc-cv") -> np.ndarray:
    return np.array([stable_hash(x, salt) % k for x in keys])


def cross_validate(archs: Sequence[Arch], accuracy: Sequence[float], space: SearchSpace = DEFAULT_SPACE,
                   candidates: Sequence[tuple[str, str]] = AUTO_CANDIDATES, folds: int = 5,
                   seed: int = 0) -> dict[str, float]:
    """Mean Spearman over ``folds`` hash folds for each ``model/features`` candidate."""
    y = np.asarray(accuracy, dtype=np.float64)
    fold = _folds([str(a) for a in archs], folds)
    out = {}
    for model, feats in candidates:
        scores = []
        for f in range(folds):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            if len(te) < 3 or len(tr) < 10:
                continue
            p = AccuracyPredictor(space, model, feats, seed).fit([archs[i] for i in tr], y[tr])
            scores.append(rank_metrics(p.predict([archs[i] for i in te]), y[te])["spearman"])
        out[f"{model}/{feats}"] = float(np.nanmean(scores)) if scores else float("nan")
    return out


def fit_auto(archs: Sequence[Arch], accuracy: Sequence[float], space: SearchSpace = DEFAULT_SPACE,
             model: str = "auto", features: str = "auto", seed: int = 0) -> AccuracyPredictor:
    """Fit on all given pairs; ``auto`` model / features are chosen by 5-fold cross-validated
    Spearman on these pairs (recorded in ``info["cv"]``)."""
    if model != "auto" and model not in MODELS:
        raise InputError(f"unknown predictor model {model!r}; choose from auto, {', '.join(MODELS)}")
    if features != "auto" and features not in FEATURES:
        raise InputError(f"unknown predictor features {features!r}; choose from auto, {', '.join(FEATURES)}")
    cv = None
    if model == "auto" or features == "auto":
        cands = [(m, f) for m, f in (AUTO_CANDIDATES if model == "auto" else [(model, f) for f in FEATURES])
                 if (model == "auto" or m == model) and (features == "auto" or f == features)]
        if not cands:
            cands = [("gbm" if model == "auto" else model, features)]
        cv = cross_validate(archs, accuracy, space, cands, seed=seed)
        best = max(cands, key=lambda mf: -np.inf if np.isnan(cv[f"{mf[0]}/{mf[1]}"]) else cv[f"{mf[0]}/{mf[1]}"])
        model, features = best
    p = AccuracyPredictor(space, model, features, seed).fit(archs, accuracy)
    if cv is not None:
        p.info["cv"] = cv
    return p


def fit_predictor(archs: Sequence[Arch], accuracy: Sequence[float], space: SearchSpace = DEFAULT_SPACE,
                  model: str = "auto", features: str = "auto", seed: int = 0,
                  test_fraction: float = 0.25) -> tuple[AccuracyPredictor, dict]:
    """Fit (with :func:`fit_auto`) on a hash-split training part of the pairs; returns the
    predictor and its metrics on the held-out part."""
    keys = [str(a) for a in archs]
    y = np.asarray(accuracy, dtype=np.float64)
    tr, te = heldout_split(keys, test_fraction)
    if len(tr) < 10 or len(te) < 3:
        raise InputError(f"need more pairs to fit and check an accuracy predictor: {len(archs)} given "
                         f"({len(tr)} train / {len(te)} held out; at least 10 / 3)")
    if np.ptp(y) == 0:
        raise InputError(f"all {len(y)} accuracies are equal ({y[0]:g}): there is no ranking for a predictor to learn")
    p = fit_auto([archs[i] for i in tr], y[tr], space, model, features, seed)
    m = rank_metrics(p.predict([archs[i] for i in te]), y[te])
    if np.isnan(m["spearman"]):  # no predictor is saved with a fit statistic that says nothing
        why = (f"the {len(te)} held-out accuracies are all equal" if np.ptp(y[te]) == 0
               else f"the predictor gives all {len(te)} held-out architectures the same value")
        raise InputError(f"cannot check the accuracy predictor: held-out Spearman is undefined ({why}); "
                         "give pairs with more varied accuracies")
    m["n_train"] = len(tr)
    p.info["heldout"] = m
    return p, m
