"""Honest evaluation: predictors fitted on one part of a profile, judged on what they never saw.

In-space: the profile's end-to-end architectures are split 50/50 by a hash of their string;
every predictor is fitted on the train half and scored on the test half, in canary units,
next to the measurement noise floor.  Out-of-space: each model family of the zoo is held out
in turn (GroupKFold-style); the kernel predictor is fitted without any of its models, and
without any model of the sealed families, which are judged apart (:mod:`hwnas.zoo_sealed`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats

from ..errors import HwnasError
from ..profile import Profile
from .data import arch_data, holdout_split
from .interval import DEFAULT_COVERAGE, PredictionInterval

def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """MAPE, RMSPE, largest single error (percent), share within ±5% / ±10%, Spearman and Kendall."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    err = p / m - 1.0
    out = {
        "n": int(len(m)),
        "mape_pct": float(100 * np.mean(np.abs(err))),
        "rmspe_pct": float(100 * np.sqrt(np.mean(err**2))),
        "max_ape_pct": float(100 * np.max(np.abs(err))) if len(m) else 0.0,
        "within_5pct": float(np.mean(np.abs(err) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
    }
    if len(m) >= 3:
        out["spearman"] = float(stats.spearmanr(p, m).statistic)
        out["kendall"] = float(stats.kendalltau(p, m).statistic)
    return out


def _add_interval(m: dict, predicted, measured, source: str) -> None:
    """``m["interval"]``: the conformal interval of these held-out residuals (when there are enough)."""
    try:
        m["interval"] = PredictionInterval.from_residuals(predicted, measured, DEFAULT_COVERAGE, source).to_dict()
    except ValueError:
        pass


def noise_floor(profile: Profile, keys: Sequence[str]) -> dict:
    df = profile.table("arch")
    df = df[df["key"].isin(set(keys))]
    return {"median_noise_rel": float(df["noise_rel"].median()),
            "median_abs_canary_drift": float(df["canary_drift"].abs().median())}


def evaluate_in_space(profile: Profile, names: Sequence[str], test_fraction: float = 0.5,
                      progress: Callable[[str], None] | None = None) -> dict:
    from .registry import make_predictor

    keys = list(profile.table("arch")["key"])
    train, test = holdout_split(keys, test_fraction)
    test_data = arch_data(profile, test)
    out = {"n_train": len(train), "n_test": len(test), "noise_floor": noise_floor(profile, test), "predictors": {}}
    for name in names:
        try:
            pred = make_predictor(name).fit(profile, train)
        except HwnasError as e:  # e.g. too few architectures in the train half for this one
            out["predictors"][name] = {"error": str(e)}
            continue
        predicted = pred.predict_relative(test_data.archs)
        out["predictors"][name] = metrics(predicted, test_data.relative)
        _add_interval(out["predictors"][name], predicted, test_data.relative, "in-space test half")
        if progress:
            progress(f"evaluated {name}")
    return out


def zoo_table(profile: Profile):
    """Measured zoo models of the profile (kind ``zoo``), with their family."""
    df = profile.table("zoo")
    if df.empty:
        return df
    df["family"] = df["target"].map(lambda t: t["family"])
    df["name"] = df["target"].map(lambda t: t["name"])
    return df


def evaluate_families(profile: Profile, progress: Callable[[str], None] | None = None) -> dict:
    """The kernel and MACs predictors on the profile's zoo models, each family held out.

    Tuning families (:mod:`hwnas.zoo`, the ones the predictor was tuned on): each held out in
    turn, the kernel predictor fitted without it.  Sealed families (:mod:`hwnas.zoo_sealed`):
    judged by a kernel predictor fitted with every sealed model excluded, reported apart under
    ``sealed``.  No sealed model is ever fitted on here, for either set, so the tuning figures
    are those of the predictor as tuned.  Transformer families (:mod:`hwnas.zoo_transformers`) are
    held out the same way and reported apart under ``transformers``.  The MACs baseline is
    fitted on in-space architectures."""
    from ..zoo_sealed import SEALED_FAMILIES
    from ..zoo_transformers import TRANSFORMER_FAMILIES
    from .macs import MacsPredictor

    df = zoo_table(profile)
    if df.empty:
        return {}
    macs = MacsPredictor("macs").fit(profile)  # in-space archs only: never sees a family
    is_sealed = df["family"].isin(SEALED_FAMILIES).to_numpy()
    never = frozenset(df.loc[is_sealed, "key"])
    fits: dict = {}
    is_tf = df["family"].isin(TRANSFORMER_FAMILIES).to_numpy()
    out = _judge_families(profile, df[~is_sealed & ~is_tf], macs, never, fits, progress)
    if is_tf.any():
        out["transformers"] = _judge_families(profile, df[is_tf], macs, never, fits, progress)
    if is_sealed.any():
        out["sealed"] = _judge_families(profile, df[is_sealed], macs, never, fits, progress)
    return out


def _judge_families(profile: Profile, df, macs, never: frozenset, fits: dict,
                    progress: Callable[[str], None] | None) -> dict:
    """Each family of ``df`` predicted by a kernel predictor fitted without it and without any of
    ``never``; ``fits`` caches the predictors by excluded set (all sealed families share one)."""
    from ..zoo_sealed import model_by_name
    from .kernel import KernelPredictor

    out: dict = {"families": {}}
    all_p, all_m, all_macs = [], [], []
    for fam, g in df.groupby("family"):
        excluded = never | frozenset(g["key"])
        if excluded not in fits:
            fits[excluded] = KernelPredictor().fit(profile, exclude_models=sorted(excluded))
        onnx_models = [model_by_name(n).build() for n in g["name"]]
        pred = fits[excluded].predict_relative(onnx_models)
        pm = macs.predict_relative(onnx_models)
        meas = g["relative_to_canary"].to_numpy(float)
        out["families"][fam] = {"kernel": metrics(pred, meas), "macs": metrics(pm, meas),
                                "n_excluded_from_fit": len(excluded),
                                "models": [{"name": n, "measured": float(y), "kernel": float(p), "macs": float(q)}
                                           for n, y, p, q in zip(g["name"], meas, pred, pm)]}
        all_p += list(pred)
        all_m += list(meas)
        all_macs += list(pm)
        if progress:
            progress(f"held out {fam}")
    out["overall"] = {"kernel": metrics(np.array(all_p), np.array(all_m)),
                      "macs": metrics(np.array(all_macs), np.array(all_m))}
    out["noise_floor"] = {"median_noise_rel": float(df["noise_rel"].median()),
                          "median_abs_canary_drift": float(df["canary_drift"].abs().median())}
    _add_interval(out["overall"]["kernel"], all_p, all_m, "zoo families held out")
    _add_interval(out["overall"]["macs"], all_macs, all_m, "zoo families held out")
    return out


def choose_defaults(heldout: dict, names: Sequence[str]) -> dict:
    """Default per target type.

    Architectures: only predictors vectorized on the search's encoded genomes (an
    :class:`EncodedPredictor`, >= 1e5 predictions/s) are eligible; among them the lowest held-out
    MAPE wins, but a predictor listed later in the registry (more fitted parameters) replaces an
    earlier one only when its MAPE is lower by at least the larger of the two predictors' largest
    single errors / n: then it stays ahead in MAPE with any one held-out architecture removed, so
    no single architecture decides the choice (closer calls keep the simpler predictor).
    ONNX models: the kernel predictor (the only one that reads any graph's kernels)."""
    from .registry import PREDICTORS
    from .base import EncodedPredictor

    scores = heldout.get("predictors", {})
    cands = [n for n in PREDICTORS if n in names and "error" not in scores.get(n, {"error": 1})
             and isinstance(PREDICTORS[n](), EncodedPredictor)]
    arch_default = cands[0] if cands else "lut"
    for n in cands[1:]:
        a, b = scores[arch_default], scores[n]
        margin = max(a.get("max_ape_pct", 0.0), b.get("max_ape_pct", 0.0)) / max(min(a["n"], b["n"]), 1)
        if b["mape_pct"] <= a["mape_pct"] - margin:
            arch_default = n
    return {"arch": arch_default, "onnx": "kernel" if "kernel" in names else "macs"}


def full_profile_mismatch(meta: dict, few: Profile) -> str | None:
    """Why the profile with ``meta`` cannot judge the few-shot profile ``few`` (None: it can):
    it must be a full profile of the same device and search space."""
    from ..devices import DeviceSpec

    if meta.get("few_shot"):
        return "is itself a few-shot profile"
    device = DeviceSpec.from_dict(meta["device"])
    if device.to_dict() != few.device.to_dict():
        return f"is of device {device.name!r}, not {few.device.name!r}"
    if meta.get("space") != few.meta.get("space"):
        return "was made for another search space"
    return None


def find_full_profile(few: Profile, search_dirs: Sequence) -> Profile | None:
    """A full (not few-shot) profile of the same device and space among ``search_dirs``' subfolders
    (only its metadata is read until one matches)."""
    from pathlib import Path

    from ..profile.store import ProfileStore

    for root in search_dirs:
        root = Path(root)
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.resolve() == few.dir.resolve() or not (d / "profile.sqlite").is_file():
                continue
            try:
                store = ProfileStore(d, readonly=True)
                try:
                    meta = store.meta()
                finally:
                    store.close()
                if full_profile_mismatch(meta, few) is not None:
                    continue
                p = Profile.load(d, check_machine=False)
            except Exception:  # a broken neighbour is not our concern here
                continue
            if len(p.table("arch")) >= 20:
                return p
    return None


def evaluate_fewshot(few: Profile, full: Profile) -> dict:
    """A few-shot profile judged on a full profile of the same device.

    Held-out set: the full profile's measured architectures the few-shot profile did not
    measure.  Side by side: the transfer predictor, the reference predictor as is (its
    canary-relative figures taken unchanged to the new device), and the full profile's own
    default predictor on its own held-out half (from its training index)."""
    import warnings

    from .. import fingerprint
    from ..profile import DeviceMismatchWarning
    from .saved import load_predictor, read_index

    diffs = fingerprint.differences(full.meta.get("fingerprint", {}), few.meta.get("fingerprint", {}))
    if diffs:  # the judge was measured elsewhere: the figures would mix two machines
        warnings.warn(f"full profile {full.dir} was measured on another machine than few-shot profile {few.dir} "
                      f"({diffs[0].replace('this machine', 'the few-shot profile')}); the judgement mixes two "
                      f"machines", DeviceMismatchWarning, stacklevel=2)
    pred = load_predictor(few.dir, "transfer")
    seen = set(few.table("arch")["key"])
    t = full.table("arch")
    t = t[~t["key"].isin(seen)]
    if len(t) < 5:
        raise HwnasError(f"full profile {full.dir} has only {len(t)} architectures the few-shot profile did not measure")
    archs = list(t["key"])
    meas = t["relative_to_canary"].to_numpy(float)
    out = {"few_shot": dict(few.meta["few_shot"]), "full_profile": str(full.dir), "n_test": len(archs),
           "noise_floor": noise_floor(full, archs),
           "transfer": metrics(predicted := pred.predict_relative(archs), meas),
           "reference_as_is": metrics(pred.reference_.predict_relative(archs), meas)}
    iv = pred.interval("arch")
    if iv is not None:  # the few-shot interval (leave-one-out) judged on measurements it never saw
        out["transfer"]["interval"] = dict(iv.to_dict(), covered=float(np.mean(iv.contains(predicted, meas))))
    try:
        idx = read_index(full.dir)
        name = idx["default"]["arch"]
        out["full_profile_default"] = dict(idx["heldout"]["predictors"][name], predictor=name,
                                           n_train=idx["heldout"]["n_train"])
    except Exception:  # untrained full profile: no figure to show
        out["full_profile_default"] = None
    return out
