"""Device profiles: measured latency data of one device, durable and resumable.

``Profile.load(dir)`` reads one; :func:`build_profile` measures one (``hwnas profile``).
"""

from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .. import fingerprint
from ..devices import DeviceSpec
from ..space import SearchSpace
from .campaign import PARTS, ProfilePlan, build_profile, lut_specs
from .store import ProfileStore


class DeviceMismatchWarning(UserWarning):
    """The profile was measured on a machine that differs from this one."""


def other_machine(meta: dict, where) -> str | None:
    """The warning for a profile (``meta``, at ``where``) measured on another machine, or None."""
    diffs = fingerprint.differences(meta.get("fingerprint", {}), fingerprint.capture())
    if not diffs:
        return None
    return f"profile {where} was measured on another machine ({diffs[0]}); its latencies may not hold here"


def warn_if_other_machine(directory: str | Path) -> None:
    """``Profile.load``'s warning about a profile from another machine, from its metadata alone
    (for commands that read only its predictors: predict, search)."""
    store = ProfileStore(directory, readonly=True)
    try:
        meta = store.meta()
    finally:
        store.close()
    msg = other_machine(meta, directory)
    if msg:
        warnings.warn(msg, DeviceMismatchWarning, stacklevel=2)


class Profile:
    """A measured device profile (read-only view)."""

    def __init__(self, directory: str | Path, check_machine: bool = True) -> None:
        self.dir = Path(directory)
        store = ProfileStore(self.dir, readonly=True)
        try:
            self.meta = store.meta()
            self.measurements = store.measurements()
            self.kernel_profiles = store.kernel_profiles()
            self.kernel_records = store.kernel_records()
        finally:
            store.close()
        if check_machine:
            msg = other_machine(self.meta, self.dir)
            if msg:
                warnings.warn(msg, DeviceMismatchWarning, stacklevel=2)

    @classmethod
    def load(cls, directory: str | Path, check_machine: bool = True) -> "Profile":
        return cls(directory, check_machine)

    @cached_property
    def device(self) -> DeviceSpec:
        return DeviceSpec.from_dict(self.meta["device"], source=f"profile {self.dir}")

    @cached_property
    def space(self) -> SearchSpace:
        """The mbv3 search space of the profile; a profile of another space (``hwnas profile --space
        vit``) is a one-line error naming the space to pass."""
        from ..errors import InputError
        from ..spaces import space_name_of_meta

        name = space_name_of_meta(self.meta)
        if name != "mbv3":
            raise InputError(f"profile {self.dir} is a profile of the {name!r} search space, not 'mbv3': "
                             f"pass --space {name}")
        return SearchSpace.from_dict(self.meta["space"])

    @property
    def status(self) -> str:
        return self.meta.get("status", "unknown")

    @cached_property
    def canary_reference_ms(self) -> float:
        """The canary's latency over the whole profile (median of every bracketing canary)."""
        if self.measurements.empty:
            raise ValueError(f"profile {self.dir} holds no measurements")
        return float(np.median(self.measurements["canary_ms"]))

    def table(self, kind: str) -> pd.DataFrame:
        """Measurements of one kind (``block``, ``kernel``, ``arch``), with drift-corrected ms.

        ``corrected_ms`` = ``relative_to_canary`` x the profile's canary reference.
        """
        df = self.measurements[self.measurements["kind"] == kind].copy()
        df["corrected_ms"] = df["relative_to_canary"] * self.canary_reference_ms
        return df.reset_index(drop=True)

    def noise_summary(self) -> dict:
        """Noise the profile saw: median per-round spread and canary drift, per kind."""
        out = {}
        for kind, g in self.measurements.groupby("kind"):
            out[kind] = {
                "count": int(len(g)),
                "median_noise_rel": float(g["noise_rel"].median()),
                "p90_noise_rel": float(g["noise_rel"].quantile(0.9)),
                "median_abs_canary_drift": float(g["canary_drift"].abs().median()),
            }
        return out


__all__ = ["Profile", "ProfilePlan", "ProfileStore", "build_profile", "lut_specs", "PARTS", "DeviceMismatchWarning"]
