"""The whole comparison of one profile (``compare``): MACs vs measured latency, the default
latency predictor judged on a held-out half, other model families, budget picks per device
and int8 vs fp32, gathered into one JSON-able ``Comparison``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import HwnasError, InputError
from .budget_rules import budget_rules
from .budgets import compare_devices
from .heldout import default_arch_predictor, heldout_predictions
from .inputs import Progress, load_models, measure_models, open_profiles, resolution_of, zoo_points
from .precision import compare_precisions, precision_pair
from .stats import proxy_stats

@dataclass
class Comparison:
    """What ``hwnas compare`` found: statistics (JSON-able) and the data behind them."""

    stats: dict
    points: pd.DataFrame  # source, name, family, resolution, macs, params, latency_ms
    heldout: pd.DataFrame  # key, resolution, macs, measured_ms, predicted_ms, macs_linear_ms
    profile: object = None  # the primary Profile
    profiles: list = field(default_factory=list)


def compare(profile_dirs: Sequence[str | Path], models: Sequence = (), budgets_ms: Sequence[float] | None = None,
            predictor: str | None = None, input_shapes: dict[str, list[int]] | None = None,
            progress: Progress | None = None, notes_in: Sequence[str] = (), measure_config=None,
            remeasure: int = 0) -> Comparison:
    """MACs vs measured latency on the first profile (plus ONNX ``models``), the default
    predictor's held-out statistics, the MACs rule against the predictor rule under budgets
    (``budget_rules``; their picks re-measured ``remeasure`` times each when > 0), and MACs-
    vs latency-optimal picks on every profile.

    ``profile_dirs`` may hold ``Profile`` objects already opened (``open_profiles``; pass
    their machine notes as ``notes_in``).  ``measure_config``: how to time the ONNX models
    (``MeasureConfig``; default the engine's)."""
    from ..predictors import make_predictor

    say = progress or (lambda msg: None)
    loaded = load_models(models, input_shapes)  # fail on a bad file before any long step
    profiles, notes = open_profiles(profile_dirs)
    notes = list(notes_in) + notes
    prof = profiles[0]
    arch = prof.table("arch")
    say(f"loaded {len(profiles)} profile(s)")

    keys = list(arch["key"])
    resolutions = [resolution_of(k) for k in keys]
    lat = arch["corrected_ms"].to_numpy(float)
    stats: dict = {
        "profile": str(prof.dir), "device": prof.device.name, "canary_reference_ms": prof.canary_reference_ms,
        "n_archs": len(keys), "warnings": notes,
        "noise": prof.noise_summary().get("arch", {}),
        "latency": "drift-corrected ms: canary-relative measurement x the profile's canary reference",
        "archs": {"macs": proxy_stats(keys, arch["macs"].to_numpy(float), lat),
                  "params": proxy_stats(keys, arch["params"].to_numpy(float), lat)},
    }
    per_gmac = arch.assign(resolution=resolutions,
                           width=[k.split("_")[1][1:] for k in keys], ms_per_gmac=lat / (arch["macs"] / 1e9))
    stats["archs"]["ms_per_gmac"] = [
        {"resolution": int(r), "width_mult": float(w), "n": len(g), "median": float(g["ms_per_gmac"].median()),
         "min": float(g["ms_per_gmac"].min()), "max": float(g["ms_per_gmac"].max())}
        for (r, w), g in per_gmac.groupby(["resolution", "width"])]
    arch_points = pd.DataFrame({"source": "space", "name": keys, "family": "MobileNetV3 space",
                                "resolution": resolutions, "macs": arch["macs"].astype(float),
                                "params": arch["params"].astype(float), "latency_ms": lat})
    say("MACs vs latency statistics")

    # the default predictor, held out
    name = predictor or default_arch_predictor(prof.dir)
    from ..predictors import KNOWN_PREDICTORS

    if name not in KNOWN_PREDICTORS:
        make_predictor(name)  # unknown name -> InputError
    try:
        if prof.meta.get("few_shot") or name == "transfer":
            raise HwnasError(f"{prof.dir} is a few-shot profile; judge its predictor on a full profile of the "
                             f"device with `hwnas evaluate --profile {prof.dir}`")
        ho = heldout_predictions(prof, name)
    except HwnasError as e:
        ho = pd.DataFrame(columns=["key", "resolution", "macs", "measured_ms", "predicted_ms", "macs_linear_ms"])
        stats["predictor"] = {"name": name, "error": str(e)}
        rules = {"predictor": name, "error": str(e)}
        if remeasure:
            stats["warnings"].append(f"no budget rules to re-measure: {e}")
    else:
        from ..predictors.evaluate import metrics

        y = ho["measured_ms"].to_numpy(float)
        stats["predictor"] = {
            "name": name, "n_train": int(ho["n_train"].iloc[0]), "n_test": len(ho),
            "heldout": proxy_stats(list(ho["key"]), ho["predicted_ms"].to_numpy(float), y),
            "macs_same_split": proxy_stats(list(ho["key"]), ho["macs"].to_numpy(float), y),
            "accuracy": metrics(ho["predicted_ms"].to_numpy(float), y),
            "macs_linear_accuracy": metrics(ho["macs_linear_ms"].to_numpy(float), y),
        }
        rules = budget_rules(prof, name, repeats=remeasure, measure_config=measure_config, first_half=ho,
                             progress=say if remeasure else None)
        ho = ho.drop(columns="n_train")
    say(f"held-out {name} predictor")

    # other CNN families (the profile's zoo) and the given ONNX models
    zoo = zoo_points(prof)
    onnx_pts = measure_models(prof, loaded, progress, measure_config) if loaded else pd.DataFrame()
    fam = pd.concat([zoo, onnx_pts], ignore_index=True) if len(onnx_pts) else zoo
    if len(fam):
        per_gmac = fam["latency_ms"] / (fam["macs"] / 1e9)
        i_lo, i_hi = int(np.argmin(per_gmac)), int(np.argmax(per_gmac))
        stats["families"] = {
            "n": len(fam),
            "ms_per_gmac": {"min": float(per_gmac.iloc[i_lo]), "min_model": str(fam["name"].iloc[i_lo]),
                            "max": float(per_gmac.iloc[i_hi]), "max_model": str(fam["name"].iloc[i_hi]),
                            "ratio": float(per_gmac.iloc[i_hi] / per_gmac.iloc[i_lo]),
                            "by_family": {f: float(v) for f, v in per_gmac.groupby(fam["family"]).median().items()}},
            "macs": proxy_stats(list(fam["name"]), fam["macs"].to_numpy(float), fam["latency_ms"].to_numpy(float))
            if len(fam) >= 3 else None,
        }
    if len(onnx_pts):
        stats["models"] = onnx_pts.drop(columns=["source"]).to_dict(orient="records")
    say("other model families")

    stats["budget_rules"] = rules
    stats["devices"] = compare_devices(profiles, budgets_ms)
    say("MACs-optimal vs latency-optimal")
    pair = precision_pair(profiles)
    if pair is not None:
        try:
            stats["int8"] = compare_precisions(*pair)
        except InputError as e:  # e.g. a few-shot int8 profile measured other architectures
            stats["warnings"].append(f"no int8-vs-fp32 section: {e}")
        say("int8 vs fp32")
    points = pd.concat([arch_points, fam], ignore_index=True) if len(fam) else arch_points
    return Comparison(stats=_jsonable(stats), points=points, heldout=ho, profile=prof, profiles=profiles)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o
