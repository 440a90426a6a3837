"""Training data drawn from a profile, in canary units."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from ..profile import Profile
from ..space import Arch
from .kernel_features import KernelRow, featurize_records, records_from_frame


@dataclass(frozen=True)
class ArchData:
    archs: list[Arch]
    relative: np.ndarray  # measured latency in canary units
    noise_rel: np.ndarray


def arch_data(profile: Profile, keys: Iterable[str] | None = None) -> ArchData:
    """End-to-end measured architectures of ``profile`` (optionally only ``keys``)."""
    df = profile.table("arch")
    if keys is not None:
        keep = set(keys)
        df = df[df["key"].isin(keep)]
    return ArchData([Arch.parse(k) for k in df["key"]], df["relative_to_canary"].to_numpy(float),
                    df["noise_rel"].to_numpy(float))


def holdout_split(keys: Iterable[str], test_fraction: float = 0.5, salt: str = "hwnas") -> tuple[list[str], list[str]]:
    """Deterministic train/test split by a hash of each key (stable across runs and machines)."""
    train, test = [], []
    for k in keys:
        h = int(hashlib.sha256(f"{salt}:{k}".encode()).hexdigest()[:8], 16) / 2**32
        (test if h < test_fraction else train).append(k)
    return train, test


def block_relative(profile: Profile) -> dict[str, float]:
    """Block lookup table: key -> latency in canary units."""
    df = profile.table("block")
    return dict(zip(df["key"], df["relative_to_canary"].astype(float)))


@dataclass(frozen=True)
class KernelData:
    rows: list[KernelRow]
    relative: np.ndarray  # per-kernel duration in canary units
    model: np.ndarray  # which profiled model each row came from


def kernel_data(profile: Profile, exclude_models: Iterable[str] = ()) -> KernelData:
    """Per-kernel records of every profiled model (campaign kernels, archs, zoo models)."""
    kr = profile.kernel_records
    kp = profile.kernel_profiles.set_index("arch")
    excl = set(exclude_models)
    if excl:
        kr = kr[~kr["arch"].isin(excl)]
    canary = kr["arch"].map(kp["canary_ms"]).to_numpy(float)
    rows, models, rel = [], [], []
    recs = records_from_frame(kr)
    for rec, c, m in zip(recs, canary, kr["arch"]):
        fr, _ = featurize_records([rec])
        if fr:
            rows.append(fr[0])
            models.append(m)
            rel.append(rec.duration_ms / c)
    return KernelData(rows, np.asarray(rel), np.asarray(models, dtype=object))


def model_end_to_end(profile: Profile) -> pd.DataFrame:
    """Profiled models with their unprofiled end-to-end latency in canary units."""
    kp = profile.kernel_profiles.copy()
    kp["relative"] = kp["e2e_ms"] / kp["canary_ms"]
    return kp
