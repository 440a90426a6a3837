"""Calibrate on first use: a profile made on another machine becomes this machine's, in minutes.

When a command is handed a profile whose machine fingerprint differs from this machine's
(:data:`hwnas.fingerprint.COMPARABLE_KEYS`), its predictions are in the *other* machine's
milliseconds.  :func:`calibrated_profile` then returns, in order of preference:

1. a full profile of this machine beside it (same device spec and search space), else
2. a few-shot profile of this machine adapted from it (``hwnas profile --from-profile PROFILE
   --quick N``, default N = 30), made once and cached in the user's cache directory under a key
   of this machine's fingerprint, the device spec, the search space, the reference profile's
   identity and the hwnas version; an interrupted calibration resumes where it stopped.

The cache lives in ``$HWNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwnas``, else ``~/.cache/hwnas``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import fingerprint
from ..errors import HwnasError, InputError
from .store import ProfileStore


@dataclass(frozen=True)
class Calibration:
    """Which profile to use on this machine and why."""

    profile_dir: Path
    reason: str  # "same machine", "full profile of this machine", "cached calibration", "new calibration"
    differences: tuple[str, ...] = ()


def cache_root() -> Path:
    env = os.environ.get("HWNAS_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hwnas"


def _meta(profile_dir: Path) -> dict:
    if not (profile_dir / "profile.sqlite").is_file():
        raise InputError(f"no device profile at {profile_dir}")
    store = ProfileStore(profile_dir, readonly=True)
    try:
        return store.meta()
    finally:
        store.close()


def machine_differences(meta: dict, here: dict | None = None) -> list[str]:
    return fingerprint.differences(meta.get("fingerprint", {}), here or fingerprint.capture())


def calibration_key(meta: dict, here: dict, version: str) -> str:
    """A stable key of (this machine, device spec, space, reference profile, hwnas version)."""
    ident = {
        "machine": {k: here.get(k) for k in fingerprint.COMPARABLE_KEYS},
        "device": meta.get("device"),
        "space": meta.get("space"),
        # the reference's identity: its own machine and when it was made
        "reference": {"fingerprint": {k: meta.get("fingerprint", {}).get(k) for k in fingerprint.COMPARABLE_KEYS},
                      "created_at": meta.get("created_at")},
        "hwnas": version,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _full_profile_here(profile_dir: Path, meta: dict, here: dict) -> Path | None:
    """A full, trained profile of this machine beside ``profile_dir`` with the same device and space."""
    parent = profile_dir.resolve().parent
    for d in sorted(parent.iterdir()):
        if d.resolve() == profile_dir.resolve() or not (d / "profile.sqlite").is_file():
            continue
        if not (d / "predictors" / "index.json").is_file():
            continue
        try:
            m = _meta(d)
        except Exception:  # a broken neighbour is not our concern here
            continue
        if (not m.get("few_shot") and m.get("status") == "complete" and m.get("device") == meta.get("device")
                and m.get("space") == meta.get("space") and not machine_differences(m, here)):
            return d
    return None


def _usable(d: Path) -> bool:
    if not (d / "predictors" / "index.json").is_file():
        return False
    try:
        return _meta(d).get("status") == "complete"
    except Exception:
        return False


def calibrated_profile(profile_dir: str | Path, n: int | None = None, *, config=None, progress=None,
                       log: Callable[[str], None] | None = None) -> Calibration:
    """The profile to use on this machine for ``profile_dir`` (see the module's docstring)."""
    from .. import __version__
    from ..devices import DeviceSpec
    from .campaign import _null_progress
    from .fewshot import DEFAULT_SHOTS, build_fewshot_profile

    profile_dir = Path(profile_dir)
    meta = _meta(profile_dir)
    here = fingerprint.capture()
    diffs = tuple(machine_differences(meta, here))
    if not diffs:
        return Calibration(profile_dir, "same machine")
    if meta.get("few_shot"):
        raise InputError(f"profile {profile_dir} is a few-shot profile made on another machine ({diffs[0]}); "
                         f"calibrate from its full reference profile instead")
    full = _full_profile_here(profile_dir, meta, here)
    if full is not None:
        return Calibration(full, "full profile of this machine", diffs)
    device = DeviceSpec.from_dict(meta["device"], source=f"profile {profile_dir}")
    out = cache_root() / "calibrated" / f"{device.name}-{calibration_key(meta, here, __version__)}"
    if _usable(out):
        return Calibration(out, "cached calibration", diffs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HwnasError(f"cannot create the calibration cache {out.parent} ({e.strerror}); "
                         f"set HWNAS_CACHE_DIR to a writable folder or pass --no-calibrate") from None
    if log:
        log(f"profile {profile_dir} was made on another machine ({diffs[0]}); calibrating this machine from it "
            f"({n or DEFAULT_SHOTS} measurements, cached in {out})")
    build_fewshot_profile(device, out, profile_dir, n or DEFAULT_SHOTS, resume=(out / "profile.sqlite").exists(),
                          config=config, progress=progress or _null_progress, log=log)
    return Calibration(out, "new calibration", diffs)


