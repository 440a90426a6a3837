"""Latency predictors of the vit space, fitted on a vit profile (canary units inside, ms outside).

``lut``      latency = a x (stem + sum of encoder-layer entries + head) + b: the block lookup table
             of the profile (entries it lacks interpolated from a log-log fit on measured ones, and
             listed), the overhead (a, b) fitted by least squares on relative error;
``learned``  lut(arch) x exp(ridge regression on vit features and log lut): learns the residual, as
             the mbv3 ``learned`` predictor does (there with trees; see :class:`VitLearnedPredictor`);
``macs``     latency = a x MACs + b: the baseline to beat.

Saved as JSON under ``DIR/predictors/vit/`` (``lut.json``, ``learned.json``, ``macs.json``,
``index.json``).  No pickle.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import HwnasError, InputError, ProfileError
from ..profile import Profile
from .vit import VitArch, VitSpace, layer_macs, stem_macs, head_macs, vit_cost
from .vit_profile import arch_keys

VIT_PREDICTORS = ("macs", "lut", "learned")
FORMAT = "hwnas.vit-predictor"


@dataclass(frozen=True)
class VitData:
    archs: list[VitArch]
    relative: np.ndarray  # measured latency, canary units
    noise_rel: np.ndarray


def vit_space_of(profile: Profile) -> VitSpace:
    from . import space_name_of_meta

    if space_name_of_meta(profile.meta) != "vit":
        raise InputError(f"profile {profile.dir} is not a vit-space profile: pass --space "
                         f"{space_name_of_meta(profile.meta)}")
    return VitSpace.from_dict(profile.meta["space"])


def vit_data(profile: Profile, keys: Sequence[str] | None = None) -> VitData:
    df = profile.table("arch")
    if keys is not None:
        df = df[df["key"].isin(set(keys))]
    return VitData([VitArch.parse(k) for k in df["key"]], df["relative_to_canary"].to_numpy(float),
                   df["noise_rel"].to_numpy(float))


def _as_archs(space: VitSpace, targets: Sequence) -> list[VitArch]:
    out = []
    for t in targets:
        try:
            a = t if isinstance(t, VitArch) else VitArch.parse(str(t))
        except ValueError as e:
            raise InputError(str(e)) from None
        try:
            out.append(space.validate(a))
        except ValueError as e:
            raise InputError(f"{a} is outside this profile's vit space: {e}") from None
    return out


class VitPredictor:
    """Base: ``fit(profile, keys)``, ``predict_relative(archs)`` (canary units), ``predict`` (ms)."""

    name = "base"
    min_archs = 3

    def fit(self, profile: Profile, keys: Sequence[str] | None = None) -> "VitPredictor":  # pragma: no cover
        raise NotImplementedError

    def predict_archs(self, archs: Sequence[VitArch]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_relative(self, targets: Sequence) -> np.ndarray:
        return self.predict_archs(_as_archs(self.space_, targets))

    def predict(self, targets: Sequence) -> np.ndarray:
        """Milliseconds on the profile's device."""
        return self.predict_relative(targets) * self.canary_reference_ms_

    def _base_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "space": self.space_.to_dict(),
                "canary_reference_ms": self.canary_reference_ms_}

    def _load_base(self, d: dict) -> None:
        self.space_ = VitSpace.from_dict(d["space"])
        self.canary_reference_ms_ = float(d["canary_reference_ms"])
        if not (math.isfinite(self.canary_reference_ms_) and self.canary_reference_ms_ > 0):
            raise ValueError("canary_reference_ms must be positive")


def _fit_overhead(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of y ~ a raw + b, least squares on relative error."""
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(np.stack([raw * w, w], axis=1), y * w, rcond=None)
    return float(coef[0]), float(coef[1])


class VitMacsPredictor(VitPredictor):
    name = "macs"

    def fit(self, profile: Profile, keys: Sequence[str] | None = None) -> "VitMacsPredictor":
        self.space_ = vit_space_of(profile)
        data = vit_data(profile, keys)
        _require(self.name, len(data.archs), self.min_archs)
        self.canary_reference_ms_ = profile.canary_reference_ms
        self.coef_ = _fit_overhead(np.array([vit_cost(a).macs / 1e9 for a in data.archs]), data.relative)
        return self

    def predict_archs(self, archs: Sequence[VitArch]) -> np.ndarray:
        a, b = self.coef_
        return a * np.array([vit_cost(x).macs / 1e9 for x in archs]) + b

    def to_dict(self) -> dict:
        return self._base_dict() | {"coef": list(self.coef_)}

    @classmethod
    def from_dict(cls, d: dict) -> "VitMacsPredictor":
        p = cls()
        p._load_base(d)
        p.coef_ = tuple(float(x) for x in d["coef"])
        return p


def _require(name: str, have: int, need: int) -> None:
    if have < need:
        raise HwnasError(f"profile too small to fit the vit {name!r} predictor: {have} measured architectures, "
                         f"needs at least {need}")


def _entry_features(target: dict) -> list[float]:
    part = target["part"]
    if part == "layer":
        macs, t, e = layer_macs(target["tokens"], target["embed"], target["mlp"]), target["tokens"], target["embed"]
        h = target["heads"]
    elif part == "stem":
        t = (target["resolution"] // target["patch"]) ** 2 + 1
        macs, e, h = stem_macs(target["patch"], target["resolution"], target["embed"]), target["embed"], 0
    else:
        macs, t, e, h = head_macs(target["embed"]), target["tokens"], target["embed"], 0
    return [1.0, math.log(macs), math.log(t), math.log(e), float(h), float(part == "stem"), float(part == "head")]


class VitLutPredictor(VitPredictor):
    """Sum of the block lookup table's entries plus a fitted overhead."""

    name = "lut"

    def fit(self, profile: Profile, keys: Sequence[str] | None = None) -> "VitLutPredictor":
        from .vit_profile import block_tasks

        self.space_ = vit_space_of(profile)
        self.canary_reference_ms_ = profile.canary_reference_ms
        blocks = profile.table("block")
        table = dict(zip(blocks["key"], blocks["relative_to_canary"].astype(float)))
        if not table:
            raise HwnasError(f"profile {profile.dir} holds no block measurements to build a vit lookup table from")
        self.interpolated_keys_: list[str] = []
        missing = [t for t in block_tasks(self.space_) if t.key not in table]
        if missing:
            X = np.array([_entry_features(t) for t in blocks["target"]])
            coef, *_ = np.linalg.lstsq(X, np.log(np.array(list(table.values()))), rcond=None)
            for t in missing:
                table[t.key] = float(np.exp(np.asarray(_entry_features(t.target)) @ coef))
                self.interpolated_keys_.append(t.key)
        self.table_ = table
        data = vit_data(profile, keys)
        _require(self.name, len(data.archs), self.min_archs)
        self.coef_ = _fit_overhead(self.lut_sum(data.archs), data.relative)
        return self

    def lut_parts(self, archs: Sequence[VitArch]) -> np.ndarray:
        """(N, 3): stem, sum of layers, head entries (canary units)."""
        out = np.zeros((len(archs), 3))
        for i, a in enumerate(archs):
            s, layers, h = arch_keys(a)
            try:
                out[i] = (self.table_[s], sum(self.table_[k] for k in layers), self.table_[h])
            except KeyError as e:
                raise InputError(f"{a}: no lookup-table entry {e.args[0]} (outside the profile's vit space)") from None
        return out

    def lut_sum(self, archs: Sequence[VitArch]) -> np.ndarray:
        return self.lut_parts(archs).sum(axis=1)

    def predict_archs(self, archs: Sequence[VitArch]) -> np.ndarray:
        a, b = self.coef_
        return a * self.lut_sum(archs) + b

    def to_dict(self) -> dict:
        return self._base_dict() | {"coef": list(self.coef_), "table": self.table_,
                                    "interpolated_keys": self.interpolated_keys_}

    @classmethod
    def from_dict(cls, d: dict) -> "VitLutPredictor":
        p = cls()
        p._load_base(d)
        p.coef_ = tuple(float(x) for x in d["coef"])
        p.table_ = {str(k): float(v) for k, v in d["table"].items()}
        if any(not (math.isfinite(v) and v >= 0) for v in p.table_.values()):
            raise ValueError("lookup table holds a negative or non-finite entry")
        p.interpolated_keys_ = list(d.get("interpolated_keys", []))
        return p


#: the architecture-level features the learned residual sees (names of :meth:`VitSpace.feature_names`)
RESIDUAL_FEATURES = ("tokens", "embed", "depth", "mean_heads", "mean_mlp", "log_macs", "log_linear_macs",
                     "log_attention_macs", "log_softmax_elems", "log_mlp_hidden_elems")


class VitLearnedPredictor(VitPredictor):
    """lut x exp(ridge regression on the vit features and log lut): learns the residual in log space.

    As the mbv3 ``learned`` predictor, but the residual model is linear (ridge, penalty chosen by
    leave-one-out error), not gradient-boosted trees: on 100-200 architectures measured with 10-30%
    per-round spread, the trees fitted the noise (5-fold CV inside the train half of three vit profiles,
    within ±10%: trees 96.3 / 84.3 / 77.8%, ridge 99.1 / 96.3 / 87.0%)."""

    name = "learned"
    min_archs = 20

    def __init__(self, alphas: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 3, 13))) -> None:
        self.alphas = tuple(alphas)

    def fit(self, profile: Profile, keys: Sequence[str] | None = None) -> "VitLearnedPredictor":
        from sklearn.linear_model import RidgeCV

        data = vit_data(profile, keys)
        _require(self.name, len(data.archs), self.min_archs)
        self.lut_ = VitLutPredictor().fit(profile, keys)
        self.space_ = self.lut_.space_
        self.canary_reference_ms_ = self.lut_.canary_reference_ms_
        base = self.lut_.predict_archs(data.archs)
        X = self._features(data.archs, base)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0) + 1e-12
        est = RidgeCV(alphas=self.alphas).fit((X - self.mean_) / self.scale_, np.log(data.relative) - np.log(base))
        self.coef_, self.intercept_, self.alpha_ = est.coef_.astype(float), float(est.intercept_), float(est.alpha_)
        return self

    def _features(self, archs: Sequence[VitArch], base: np.ndarray) -> np.ndarray:
        names = self.space_.feature_names()
        cols = [names.index(n) for n in RESIDUAL_FEATURES]
        return np.hstack([self.space_.encode(archs)[:, cols], np.log(np.maximum(base, 1e-9))[:, None]])

    def predict_archs(self, archs: Sequence[VitArch]) -> np.ndarray:
        base = self.lut_.predict_archs(archs)
        z = (self._features(archs, base) - self.mean_) / self.scale_
        with np.errstate(over="ignore"):
            return base * np.exp(z @ self.coef_ + self.intercept_)

    def to_dict(self) -> dict:
        return self._base_dict() | {"alphas": list(self.alphas), "lut": self.lut_.to_dict(),
                                    "features": list(RESIDUAL_FEATURES) + ["log_lut"],
                                    "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                                    "coef": self.coef_.tolist(), "intercept": self.intercept_, "alpha": self.alpha_}

    @classmethod
    def from_dict(cls, d: dict) -> "VitLearnedPredictor":
        p = cls(tuple(d["alphas"]))
        p._load_base(d)
        p.lut_ = VitLutPredictor.from_dict(d["lut"])
        if d.get("features") != list(RESIDUAL_FEATURES) + ["log_lut"]:
            raise ValueError("saved with other residual features")
        n = len(RESIDUAL_FEATURES) + 1
        p.mean_, p.scale_, p.coef_ = (np.asarray(d[k], dtype=float) for k in ("mean", "scale", "coef"))
        if any(a.shape != (n,) or not np.isfinite(a).all() for a in (p.mean_, p.scale_, p.coef_)):
            raise ValueError(f"residual model must hold {n} finite values per array")
        p.intercept_, p.alpha_ = float(d["intercept"]), float(d["alpha"])
        return p


_CLASSES: dict[str, type[VitPredictor]] = {"macs": VitMacsPredictor, "lut": VitLutPredictor,
                                           "learned": VitLearnedPredictor}


def make_vit_predictor(name: str) -> VitPredictor:
    if name not in _CLASSES:
        raise InputError(f"unknown vit-space predictor {name!r}: choose one of {', '.join(VIT_PREDICTORS)}")
    return _CLASSES[name]()


def vit_predictors_dir(profile_dir: str | Path) -> Path:
    return Path(profile_dir) / "predictors" / "vit"


def heldout_split(keys: Sequence[str], test_fraction: float = 0.5) -> tuple[list[str], list[str]]:
    """The same hash split as the mbv3 evaluation (stable across runs and machines)."""
    from ..predictors.data import holdout_split

    return holdout_split(keys, test_fraction)


def evaluate_vit(profile: Profile, names: Sequence[str] = VIT_PREDICTORS, test_fraction: float = 0.5) -> dict:
    """Fit each predictor on the train half of the measured architectures, score on the other half."""
    from ..predictors.evaluate import metrics

    keys = list(profile.table("arch")["key"])
    train, test = heldout_split(keys, test_fraction)
    test_data = vit_data(profile, test)
    out = {"n_train": len(train), "n_test": len(test),
           "noise_floor_median_rel": float(np.median(test_data.noise_rel)) if len(test) else None,
           "predictors": {}}
    for name in names:
        try:
            pred = make_vit_predictor(name).fit(profile, train)
        except HwnasError as e:
            out["predictors"][name] = {"error": str(e)}
            continue
        out["predictors"][name] = metrics(pred.predict_archs(test_data.archs), test_data.relative)
    return out


def train_vit(profile_dir: str | Path, names: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Fit the vit predictors on the whole profile, choose the default by held-out MAPE, save all."""
    from ..predictors.jsonfile import save_json

    profile = Profile.load(profile_dir)
    vit_space_of(profile)
    names = list(names) if names else list(VIT_PREDICTORS)
    fitted = {}
    for n in names:
        fitted[n] = make_vit_predictor(n).fit(profile)
        if progress:
            progress(f"trained vit {n}")
    heldout = evaluate_vit(profile, names)
    ok = {n: m["mape_pct"] for n, m in heldout["predictors"].items() if "mape_pct" in m}
    index = {"format": FORMAT, "space_name": "vit", "trained_at": time.time(), "predictors": list(fitted),
             "default": min(ok, key=ok.get) if ok else names[0], "heldout": heldout}
    d = vit_predictors_dir(profile_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        for n, p in fitted.items():
            save_json(p.to_dict(), d / f"{n}.json")
        save_json(index, d / "index.json")
    except OSError as e:
        raise HwnasError(f"cannot write vit predictors to {d}: {e.strerror or e}") from None
    return index


def load_vit_predictor(profile_dir: str | Path, name: str | None = None) -> VitPredictor:
    """A saved vit predictor of the profile (``name`` None: the index's default)."""
    d = vit_predictors_dir(profile_dir)
    index_path = d / "index.json"
    if not index_path.is_file():
        raise ProfileError(f"no trained vit predictors in {profile_dir}; run `hwnas train --space vit --profile "
                            f"{profile_dir}`")
    index = json.loads(index_path.read_text())
    name = name or index["default"]
    if name not in _CLASSES:
        raise InputError(f"unknown vit-space predictor {name!r}: choose one of {', '.join(VIT_PREDICTORS)}")
    path = d / f"{name}.json"
    if not path.is_file():
        raise ProfileError(f"vit predictor {name!r} is not trained in {profile_dir}")
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}")
        return _CLASSES[name].from_dict(raw)
    except (ValueError, KeyError, TypeError) as e:
        raise HwnasError(f"vit predictor file {path} is corrupt ({e}); re-run `hwnas train --space vit`") from None


__all__ = ["VIT_PREDICTORS", "VitLutPredictor", "VitLearnedPredictor", "VitMacsPredictor", "make_vit_predictor",
           "train_vit", "evaluate_vit", "load_vit_predictor", "vit_data", "vit_space_of"]
