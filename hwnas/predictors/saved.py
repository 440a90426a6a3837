"""Trained predictors on disk: ``DIR/predictors/<name>.json`` and the ``index.json`` naming each
target type's default.  Saving, reading and finding them; no fitting (that is ``train_all``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import HwnasError, InputError, first_line
from ..paths import default_profile_dir
from .base import LatencyPredictor, NotTrainedError
from .registry import FITTED_CLASSES, FORMAT_VERSION, KNOWN_PREDICTORS
from .transfer import TransferPredictor

_CLASSES = {**FITTED_CLASSES, "transfer": TransferPredictor}


def predictors_dir(profile_dir: str | Path) -> Path:
    return Path(profile_dir) / "predictors"


def _predictor_json(pred: LatencyPredictor) -> dict:
    d = pred.to_dict()
    d["format_version"] = FORMAT_VERSION
    return d


def _write_all(files: dict[str, dict], directory: Path) -> None:
    """Write every JSON file of ``files`` (name -> object) into ``directory``, or none: each is
    staged in a hidden file first, and only when all are written are they renamed into place.
    A file-system error (read-only, full, not a directory) is a one-line HwnasError and leaves
    the files there as they were."""
    from .serialize import save_json

    staged: list[tuple[Path, Path]] = []
    placed = 0
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, obj in files.items():
            tmp = directory / f".{name}.staged"
            save_json(obj, tmp)
            staged.append((tmp, directory / name))
        for tmp, path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, path.stat().st_mode & 0o777)  # keep a replaced file's permissions
            os.replace(tmp, path)
            placed += 1
    except OSError as e:
        kept = "the saved files are unchanged" if not placed else f"{placed} of {len(files)} files were replaced"
        raise HwnasError(f"cannot write trained predictors to {directory}: {e.strerror or first_line(e)} "
                         f"({kept})") from None
    finally:
        for tmp, _ in staged[placed:]:
            with contextlib.suppress(OSError):
                tmp.unlink()


def save_predictor(pred: LatencyPredictor, profile_dir: str | Path, name: str) -> Path:
    path = predictors_dir(profile_dir) / f"{name}.json"
    _write_all({path.name: _predictor_json(pred)}, path.parent)
    return path


def check_writable(directory: Path) -> None:
    """HwnasError when trained predictors cannot be saved in ``directory`` (checked before
    minutes of fitting; the writes themselves are all-or-nothing anyway)."""
    where = directory if directory.exists() else directory.parent
    if not where.is_dir():
        raise HwnasError(f"cannot write trained predictors to {directory}: {where} is not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise HwnasError(f"cannot write trained predictors to {directory}: {where} is not writable "
                         "(the saved predictors are unchanged)")


def save_trained(profile_dir: str | Path, predictors: dict[str, LatencyPredictor], index: dict) -> None:
    """A training's predictors and its ``index.json``, all or none (see :func:`_write_all`)."""
    files = {f"{name}.json": _predictor_json(pred) for name, pred in predictors.items()}
    files["index.json"] = index
    _write_all(files, predictors_dir(profile_dir))


def check_format(d: dict, path: Path, what: str) -> None:
    """A saved file's ``format_version`` (absent in files from before it existed: 0) is one this
    hwnas reads; else a one-line HwnasError saying which hwnas is needed (an index records the
    version that wrote it)."""
    from .. import __version__

    v = d.get("format_version", 0)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise HwnasError(f"{what} {path} has an invalid format_version {v!r} (corrupt?); re-run `hwnas train`")
    if v > FORMAT_VERSION:
        by = d.get("hwnas_version")
        need = f"hwnas {by} or newer" if isinstance(by, str) and by else "a newer hwnas"
        raise HwnasError(f"{what} {path} has format {v}, newer than format {FORMAT_VERSION} that hwnas {__version__} "
                         f"reads: upgrade to {need} to read it")


def _read_predictor(path: Path) -> LatencyPredictor:
    from .serialize import load_json

    try:
        d = load_json(path)
    except ValueError as e:
        raise HwnasError(f"saved predictor {path} is corrupt or truncated ({e}); re-run `hwnas train`") from None
    check_format(d, path, "saved predictor")
    cls = _CLASSES.get(d.get("name"))
    if cls is None:
        raise HwnasError(f"saved predictor {path} names an unknown predictor {d.get('name')!r}")
    try:
        pred = cls.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"saved predictor {path} is corrupt ({e.__class__.__name__}: {e}); re-run `hwnas train`") from None
    pred.loaded_from = str(path)
    return pred


def read_index(profile_dir: str | Path) -> dict:
    from .serialize import load_json

    path = predictors_dir(profile_dir) / "index.json"
    if not path.is_file():
        raise NotTrainedError(f"profile {profile_dir} has no trained predictors; run `hwnas train --profile {profile_dir}`")
    try:
        index = load_json(path)
    except ValueError as e:
        raise HwnasError(f"predictor index {path} is corrupt ({e}); re-run `hwnas train`") from None
    check_format(index, path, "predictor index")
    default = index.get("default")
    if not isinstance(default, dict) or any(default.get(k) not in KNOWN_PREDICTORS for k in ("arch", "onnx")):
        raise HwnasError(f"predictor index {path} is corrupt: 'default' must name a known predictor for 'arch' "
                         f"and 'onnx', got {default!r}; re-run `hwnas train`")
    return index


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
