"""What a comparison reads: profiles (with enough measured architectures), their zoo models, and
ONNX models loaded up front and measured on the profile's device."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..errors import InputError

#: fewest measured architectures a profile needs for the statistics
MIN_ARCHS = 20


Progress = Callable[[str], None]


def resolution_of(key: str) -> int | None:
    from ..space import Arch

    try:
        return Arch.parse(key).resolution
    except ValueError:
        return None


def zoo_points(profile) -> pd.DataFrame:
    df = profile.table("zoo")
    if df.empty:
        return pd.DataFrame(columns=["source", "name", "family", "resolution", "macs", "params", "latency_ms"])
    return pd.DataFrame({
        "source": "zoo",
        "name": df["target"].map(lambda t: t.get("name")),
        "family": df["target"].map(lambda t: t.get("family")),
        "resolution": df["target"].map(lambda t: t.get("resolution")),
        "macs": df["macs"].astype(float),
        "params": df["params"].astype(float),
        "latency_ms": df["corrected_ms"].astype(float),
    })


def load_models(paths: Sequence, input_shapes: dict[str, list[int]] | None = None) -> list:
    """Load and check every ONNX file up front (``InputError`` naming the file on any problem).
    Already loaded models (``LoadedModel``) pass through."""
    from ..onnx_io import LoadedModel, load_onnx

    loaded = []
    for p in paths:
        if isinstance(p, LoadedModel):
            loaded.append(p)
            continue
        p = Path(p)
        try:
            loaded.append(load_onnx(p, input_shapes or None))
        except InputError as e:
            raise InputError(f"--models {p}: {e}") from None
    return loaded


def measure_models(profile, loaded: Sequence, progress: Progress | None = None, config=None) -> pd.DataFrame:
    """MACs, params and measured latency (ms on the profile's device) of ONNX models.

    Latency = canary-relative measurement x the profile's canary reference, so it is
    comparable with the profile's own (drift-corrected) figures.
    """
    from ..measure import Measurer
    from ..onnx_io import onnx_macs, onnx_params

    rows = []
    with Measurer(profile.device, config) as m:
        for lm in loaded:
            r = m.measure(lm.model, lm.path.name)
            shape = lm.inputs[0].shape if lm.inputs else ()
            rows.append({"source": "onnx", "name": lm.path.name, "family": f"onnx: {lm.path.stem}",
                         "resolution": int(shape[-1]) if len(shape) == 4 else None,
                         "macs": float(onnx_macs(lm.model)), "params": float(onnx_params(lm.model)),
                         "latency_ms": r.relative_to_canary * profile.canary_reference_ms,
                         "relative_to_canary": r.relative_to_canary, "noise_rel": r.noise_rel,
                         "measured_now_ms": r.latency_ms, "path": str(lm.path)})
            if progress:
                progress(f"measured {lm.path.name}")
    return pd.DataFrame(rows)


def require_enough_archs(profile) -> int:
    n = len(profile.table("arch"))
    if n < MIN_ARCHS:
        raise InputError(
            f"profile {profile.dir} has {n} measured architectures; MACs-vs-latency statistics need at least "
            f"{MIN_ARCHS} (make a larger one: `hwnas profile --device {profile.device.name} --out NEW_DIR --n-archs 100`)"
        )
    return n


def load_profile(directory: str | Path):
    """``Profile.load`` with its machine-mismatch warning turned into a returned message."""
    from ..profile import DeviceMismatchWarning, Profile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeviceMismatchWarning)
        prof = Profile.load(directory)
    msgs = [str(w.message) for w in caught if issubclass(w.category, DeviceMismatchWarning)]
    for w in caught:
        if not issubclass(w.category, DeviceMismatchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return prof, msgs


def open_profiles(profile_dirs: Sequence) -> tuple[list, list[str]]:
    """Load profiles (directories, or ``Profile`` objects passed through), each with enough
    measured architectures for the statistics; returns them and any machine-mismatch notes."""
    from ..profile import Profile

    if not profile_dirs:
        raise InputError("give at least one profile")
    profiles, notes = [], []
    for d in profile_dirs:
        if isinstance(d, Profile):
            p = d
        else:
            p, msgs = load_profile(d)
            notes += msgs
        if not (profiles and p.meta.get("few_shot")):  # a later few-shot device is priced by its predictor
            require_enough_archs(p)
        profiles.append(p)
    return profiles, notes
