"""Latency predictors and their registry.

Two calls, as in nn-Meter::

    from hwnas.predictors import load_predictor
    ms = load_predictor("profiles/cpu-1t").predict(["r224_w1.0_..."])   # or ONNX models

Saved predictors are JSON (``DIR/predictors/<name>.json``, trees as arrays, no pickle) with an
``index.json`` naming the default predictor per target type, chosen by held-out accuracy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..errors import HwnasError, InputError, first_line
from ..paths import default_profile_dir
from .base import LatencyPredictor, NotTrainedError
from .kernel import KernelPredictor
from .learned import LearnedPredictor
from .lut import LutPredictor
from .macs import MacsPredictor
from .transfer import TransferPredictor

FORMAT_VERSION = 1

PREDICTORS: dict[str, Callable[[], LatencyPredictor]] = {
    "macs": lambda: MacsPredictor("macs"),
    "macs+": lambda: MacsPredictor("macs+"),
    "lut": LutPredictor,
    "learned": LearnedPredictor,
    "kernel": KernelPredictor,
}
_CLASSES = {"macs": MacsPredictor, "lut": LutPredictor, "learned": LearnedPredictor, "kernel": KernelPredictor,
            "transfer": TransferPredictor}
#: predictors of any ONNX model, judged on whole zoo families held out
ONNX_PREDICTORS = ("kernel", "macs")
#: every name ``--predictor`` accepts: the fitted-from-scratch ones, and ``transfer`` (few-shot profiles)
KNOWN_PREDICTORS = (*PREDICTORS, "transfer")


def predictor_from_dict(d: dict) -> LatencyPredictor:
    """A predictor from its saved dict (``to_dict``); ValueError when it names no known class."""
    cls = _CLASSES.get(d.get("name"))
    if cls is None:
        raise ValueError(f"unknown predictor {d.get('name')!r}")
    return cls.from_dict(d)


def make_predictor(name: str) -> LatencyPredictor:
    if name not in PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; choose from {', '.join(PREDICTORS)}")
    return PREDICTORS[name]()


def predictors_dir(profile_dir: str | Path) -> Path:
    return Path(profile_dir) / "predictors"


def save_predictor(pred: LatencyPredictor, profile_dir: str | Path, name: str) -> Path:
    from .serialize import save_json

    d = pred.to_dict()
    d["format_version"] = FORMAT_VERSION
    path = predictors_dir(profile_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(d, path)
    return path


def _read_predictor(path: Path) -> LatencyPredictor:
    from .serialize import load_json

    try:
        d = load_json(path)
    except ValueError as e:
        raise HwnasError(f"saved predictor {path} is corrupt or truncated ({e}); re-run `hwnas train`") from None
    if int(d.get("format_version", 0)) > FORMAT_VERSION:
        raise HwnasError(f"saved predictor {path} has format {d.get('format_version')}; upgrade hwnas to read it")
    cls = _CLASSES.get(d.get("name"))
    if cls is None:
        raise HwnasError(f"saved predictor {path} names an unknown predictor {d.get('name')!r}")
    try:
        return cls.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"saved predictor {path} is corrupt ({e.__class__.__name__}: {e}); re-run `hwnas train`") from None


def read_index(profile_dir: str | Path) -> dict:
    from .serialize import load_json

    path = predictors_dir(profile_dir) / "index.json"
    if not path.is_file():
        raise NotTrainedError(f"profile {profile_dir} has no trained predictors; run `hwnas train --profile {profile_dir}`")
    try:
        return load_json(path)
    except ValueError as e:
        raise HwnasError(f"predictor index {path} is corrupt ({e}); re-run `hwnas train`") from None


def load_predictor(profile_dir: str | Path | None = None, name: str | None = None,
                   target_kind: str = "arch") -> LatencyPredictor:
    """A trained predictor of a profile (default: the bundled reference profile).

    ``name=None`` picks the profile's default for ``target_kind`` (``arch`` or ``onnx``).
    """
    profile_dir = Path(profile_dir) if profile_dir else default_profile_dir()
    if name is not None and name not in KNOWN_PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; choose from {', '.join(KNOWN_PREDICTORS)}")
    if not (profile_dir / "profile.sqlite").is_file():
        raise InputError(f"no device profile at {profile_dir}")
    index = read_index(profile_dir)
    name = name or index["default"][target_kind]
    path = predictors_dir(profile_dir) / f"{name}.json"
    if not path.is_file() and index.get("few_shot"):
        raise InputError(f"{profile_dir} is a few-shot profile: it has only the 'transfer' predictor, not {name!r}")
    why = index.get("skipped", {}).get(name)
    if why and name not in index.get("predictors", {}):
        raise NotTrainedError(f"predictor {name!r} could not be trained for {profile_dir}: {why}")
    if not path.is_file():
        raise NotTrainedError(f"predictor {name!r} was not trained for {profile_dir}; run `hwnas train --profile {profile_dir}`")
    pred = _read_predictor(path)
    pred.intervals_ = _read_intervals(index.get("intervals", {}).get(name, {}), path)
    return pred


def _read_intervals(d: dict, path: Path) -> dict:
    """The saved prediction intervals of one predictor, per target kind (``arch``, ``onnx``)."""
    from .interval import PredictionInterval

    out = {}
    for kind, v in (d or {}).items():
        try:
            out[kind] = PredictionInterval.from_dict(v)
        except ValueError as e:
            raise HwnasError(f"prediction interval of {path.stem} in {path.parent / 'index.json'} is corrupt ({e}); "
                             f"re-run `hwnas train`") from None
    return out


def train_all(profile_dir: str | Path, names: list[str] | None = None, progress=None) -> dict:
    """Fit every predictor on the whole profile, choose defaults by held-out accuracy, save all.

    Returns the index written to ``DIR/predictors/index.json``.
    """
    from .. import __version__
    from ..profile import Profile
    from .evaluate import choose_defaults, evaluate_in_space
    from .serialize import save_json

    profile = Profile.load(profile_dir)
    if profile.meta.get("few_shot"):
        from ..profile.fewshot import adapt

        if names and set(names) != {"transfer"}:
            raise InputError(f"{profile_dir} is a few-shot profile: only the 'transfer' predictor can be trained on it")
        return adapt(profile_dir, log=progress, profile=profile)
    explicit = bool(names)
    names = list(names) if names else list(PREDICTORS)
    # every predictor is fitted before any file is written: a failure leaves the saved ones as they were
    fitted: dict[str, tuple[LatencyPredictor, float]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            pred = make_predictor(name).fit(profile)
        except HwnasError as e:
            if explicit:  # asked for by name: say why it cannot be trained
                raise
            # the profile lacks this predictor's data (e.g. a profile measured without kernel parts)
            skipped[name] = first_line(e)
            if progress:
                progress(f"skipped {name}: {skipped[name]}")
            continue
        fitted[name] = (pred, round(time.perf_counter() - t0, 2))
        if progress:
            progress(f"trained {name}")
    if not fitted:
        raise HwnasError(f"no predictor could be trained on {profile_dir}: " + "; ".join(skipped.values()))
    heldout = evaluate_in_space(profile, names=list(fitted), progress=progress)
    intervals = {name: {"arch": m["interval"]} for name, m in heldout["predictors"].items() if "interval" in m}
    if any(n in fitted for n in ONNX_PREDICTORS):
        from .evaluate import evaluate_families

        families = evaluate_families(profile, progress=progress).get("overall", {})
        for name in ONNX_PREDICTORS:
            if name in fitted and "interval" in families.get(name, {}):
                intervals.setdefault(name, {})["onnx"] = families[name]["interval"]
    for name, (pred, _) in fitted.items():
        save_predictor(pred, profile_dir, name)
    index = {
        "format_version": FORMAT_VERSION,
        "hwnas_version": __version__,
        "trained_at": time.time(),
        "predictors": {name: {"fit_s": fit_s} for name, (_, fit_s) in fitted.items()},
        "default": choose_defaults(heldout, list(fitted)),
        "heldout": heldout,
        "intervals": intervals,
    }
    if skipped:
        index["skipped"] = skipped
    save_json(index, predictors_dir(profile_dir) / "index.json")
    return index


__all__ = ["LatencyPredictor", "MacsPredictor", "LutPredictor", "LearnedPredictor", "KernelPredictor",
           "PREDICTORS", "KNOWN_PREDICTORS", "TransferPredictor", "predictor_from_dict", "make_predictor", "load_predictor", "save_predictor", "train_all", "NotTrainedError"]
