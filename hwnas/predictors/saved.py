"""Trained predictors on disk: ``DIR/predictors/<name>.json`` and the ``index.json`` naming each
target type's default.  Saving, reading and finding them; no fitting (that is ``train_all``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import HwnasError, InputError
from ..paths import default_profile_dir
from .base import LatencyPredictor, NotTrainedError
from .registry import FITTED_CLASSES, FORMAT_VERSION, KNOWN_PREDICTORS
from .transfer import TransferPredictor

_CLASSES = {**FITTED_CLASSES, "transfer": TransferPredictor}


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
    return _read_predictor(path)
