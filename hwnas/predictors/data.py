"""Training data drawn from a profile, in canary units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from ..profile import Profile
from ..space import Arch, stable_hash
from .kernel_features import KernelRow, featurize_records, records_from_frame


@dataclass(frozen=True)
class ArchData:
    archs: list[Arch]
    relative: np.ndarray  # measured latency in canary units
    noise_rel: np.ndarray


def arch_data(profile: Profile, keys: Iterable[str] | None = None) -> ArchData:
    """End-to-end measured architectures of ``profile`` (optionally only ``keys``)."""
    profile.space  # noqa: B018  (a profile of another search space: a one-line error naming its --space)
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
        (test if stable_hash(k, salt) / 2**32 < test_fraction else train).append(k)
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
    """Per-kernel records of every profiled model (campaign kernels, archs, zoo models).

    Durations are put in canary units.  A full model's kernels are rescaled so that they add
    up to its canary-bracketed end-to-end measurement: that removes the profiler's inflation
    and any burst of noise during the short profiled runs, which otherwise shift every kernel
    of a model together (±20% seen on a busy machine).  Single-op campaign graphs keep the
    canary timed around their profiled runs (their per-run overhead would dominate a rescale).
    """
    kr = profile.kernel_records
    e2e = model_end_to_end(profile).set_index("arch")
    excl = set(exclude_models)
    if excl:
        kr = kr[~kr["arch"].isin(excl)]
    # single-op campaign graphs: per-run overhead would dominate a rescale, keep the bracket
    campaign = set(profile.table("kernel")["key"])
    is_campaign = e2e.index.isin(campaign)
    # the profiler adds a fixed cost to every kernel it times; taken off first, so that a model
    # of many tiny kernels is not left with that cost spread over its real ones (fitted without
    # the excluded models: a held-out model must not shape any fitted number)
    o_rel = profiler_overhead(profile, excl)
    canary = kr["arch"].map(e2e["canary_ms"]).to_numpy(float)
    net = np.maximum(kr["duration_ms"].to_numpy(float) / canary - o_rel,
                     MIN_NET_SHARE * kr["duration_ms"].to_numpy(float) / canary)  # canary units
    net_sum = pd.Series(net).groupby(kr["arch"].to_numpy()).sum()
    per_model = np.where(is_campaign, 1.0, e2e["relative"] / net_sum.reindex(e2e.index).to_numpy(float))
    scale = kr["arch"].map(pd.Series(per_model, index=e2e.index)).to_numpy(float)
    rows, models, rel = [], [], []
    recs = records_from_frame(kr)
    for rec, sc, nt, m in zip(recs, scale, net, kr["arch"]):
        fr, _ = featurize_records([rec])
        if fr:
            rows.append(fr[0])
            models.append(m)
            rel.append(nt * sc)
    return KernelData(rows, np.asarray(rel), np.asarray(models, dtype=object))


def sealed_model_keys(profile: Profile) -> set[str]:
    """Keys of the profile's zoo models of sealed families (:mod:`hwnas.zoo_sealed`): the fits
    that judge them (and the tuning families) exclude them; the shipped predictor fits on them."""
    from ..zoo_sealed import SEALED_FAMILIES

    z = profile.measurements[profile.measurements["kind"] == "zoo"]
    return {k for k, t in zip(z["key"], z["target"]) if t.get("family") in SEALED_FAMILIES}


#: a kernel keeps at least this share of its profiled time when the profiler's cost is taken off
MIN_NET_SHARE = 0.2


def profiler_overhead(profile: Profile, exclude_models: Iterable[str] = ()) -> float:
    """The profiler's cost per timed kernel, canary units: the ``o`` of
    end-to-end = a * kernel sum - o * kernels + c, fitted (relative error) on profiled full
    models, none of ``exclude_models`` (held-out models) among them."""
    e2e = model_end_to_end(profile)
    campaign = set(profile.table("kernel")["key"])
    e2e = e2e[~e2e["arch"].isin(campaign | set(exclude_models))]
    if len(e2e) < 5:
        return 0.0
    n = profile.kernel_records.groupby("arch").size()
    ks = (e2e["kernel_sum_ms"] / e2e["canary_ms"]).to_numpy(float)
    nk = e2e["arch"].map(n).to_numpy(float)
    y = e2e["relative"].to_numpy(float)
    A = np.stack([ks, nk, np.ones(len(y))], axis=1) / y[:, None]
    (a, b, _), *_ = np.linalg.lstsq(A, np.ones(len(y)), rcond=None)
    return float(max(0.0, -b / a)) if a > 0 else 0.0


def model_end_to_end(profile: Profile) -> pd.DataFrame:
    """Profiled models with their end-to-end latency in canary units.

    Where the model was also measured with canary bracketing (architectures, zoo models),
    that figure is used; the single unbracketed timing taken next to the profiler run is
    only a fallback (it strays by up to ±20% on a busy machine).
    """
    kp = profile.kernel_profiles.copy()
    measured = dict(zip(profile.measurements["key"], profile.measurements["relative_to_canary"]))
    kp["relative"] = [measured.get(k, e / c) for k, e, c in zip(kp["arch"], kp["e2e_ms"], kp["canary_ms"])]
    return kp
