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

from ..errors import HwnasError, InputError, first_line
from .base import LatencyPredictor, NotTrainedError
from .kernel import KernelPredictor
from .learned import LearnedPredictor
from .lut import LutPredictor
from .macs import MacsPredictor
from .registry import FORMAT_VERSION, KNOWN_PREDICTORS, ONNX_PREDICTORS, PREDICTORS, make_predictor, predictor_from_dict
from .saved import check_writable, load_predictor, predictors_dir, read_index, save_predictor, save_trained
from .transfer import TransferPredictor

# The package only gathers its modules' names and trains: no module of the package imports it
# (tests/test_imports.py), so loading, saving and the registry live in .saved and .registry.


def train_all(profile_dir: str | Path, names: list[str] | None = None, progress=None,
              kernel_intervals: bool = False) -> dict:
    """Fit every predictor on the whole profile, choose defaults by held-out accuracy, save all.

    Every predictor gets its prediction interval for architectures from the held-out half;
    ``kernel_intervals`` also judges the kernel predictor on that half and holds out each zoo family
    (one kernel fit per family: a minute or more on a full profile) for the ONNX intervals of
    ``kernel`` and ``macs`` -- ``hwnas train`` does.  Returns the index written to
    ``DIR/predictors/index.json``.
    """
    from .. import __version__
    from ..profile import Profile
    from .evaluate import choose_defaults, evaluate_in_space

    profile = Profile.load(profile_dir)
    check_writable(predictors_dir(profile_dir))
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
    heldout = evaluate_in_space(profile, names=[n for n in fitted if kernel_intervals or n != "kernel"],
                                progress=progress)
    intervals = {name: {"arch": m["interval"]} for name, m in heldout["predictors"].items() if "interval" in m}
    if kernel_intervals and any(n in fitted for n in ONNX_PREDICTORS):
        from .evaluate import evaluate_families

        families = evaluate_families(profile, progress=progress).get("overall", {})
        for name in ONNX_PREDICTORS:
            if name in fitted and "interval" in families.get(name, {}):
                intervals.setdefault(name, {})["onnx"] = families[name]["interval"]
    entries = {name: {"fit_s": fit_s} for name, (_, fit_s) in fitted.items()}
    if explicit:  # retraining some: the others' saved entries, scores and intervals stay
        _keep_untouched(profile_dir, entries, heldout, intervals)
    index = {
        "format_version": FORMAT_VERSION,
        "hwnas_version": __version__,
        "trained_at": time.time(),
        "predictors": entries,
        "default": choose_defaults(heldout, list(entries)),
        "heldout": heldout,
        "intervals": intervals,
    }
    if skipped:
        index["skipped"] = skipped
    save_trained(profile_dir, {name: pred for name, (pred, _) in fitted.items()}, index)
    return index


def _keep_untouched(profile_dir: str | Path, entries: dict, heldout: dict, intervals: dict) -> None:
    """Carry the saved index's entries of predictors not retrained now (their files stay as they
    are) into the new index: ``hwnas train --predictor kernel`` must not drop the others' held-out
    scores and intervals, nor move the default to one of the retrained.  Scores are comparable:
    the held-out half is the same hash split of the same profile."""
    try:
        old = read_index(profile_dir)
    except HwnasError:  # none yet, or unreadable: nothing to keep
        return
    pdir = predictors_dir(profile_dir)
    for name, entry in old.get("predictors", {}).items():
        if name in entries or not (pdir / f"{name}.json").is_file():
            continue
        entries[name] = entry
        score = old.get("heldout", {}).get("predictors", {}).get(name)
        if score is not None:
            heldout.setdefault("predictors", {})[name] = score
        if name in old.get("intervals", {}):
            intervals[name] = old["intervals"][name]


__all__ = ["LatencyPredictor", "MacsPredictor", "LutPredictor", "LearnedPredictor", "KernelPredictor",
           "PREDICTORS", "KNOWN_PREDICTORS", "TransferPredictor", "predictor_from_dict", "make_predictor", "load_predictor", "save_predictor", "save_trained", "train_all", "NotTrainedError",
           "FORMAT_VERSION", "predictors_dir", "read_index"]
