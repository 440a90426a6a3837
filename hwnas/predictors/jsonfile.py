"""JSON files written atomically and read with one-line errors (predictors, profiles' indexes,
supernet metadata): strict JSON only, no pickle."""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputError


class ModelError(InputError, ValueError):
    """A model dict or file is malformed, or a model was given input it cannot take."""


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def save_json(obj: dict, path: str | os.PathLike) -> None:
    """Write ``obj`` as compact, strict JSON to ``path`` atomically (temp file + ``os.replace``).

    Float NaN and +-inf (which strict JSON cannot hold) are written as ``null``; model dicts
    from :func:`export_model` never contain them.  Raises :class:`ModelError` if ``obj`` is
    not JSON-serializable; ``OSError`` from the file system propagates, leaving any existing
    ``path`` untouched.
    """
    path = Path(path)
    dump = functools.partial(json.dumps, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    try:
        try:
            text = dump(obj)
        except ValueError:  # NaN / inf somewhere (e.g. a metric): strict JSON has no such value
            text = dump(_finite_or_null(obj))
    except (TypeError, ValueError, RecursionError) as e:
        raise ModelError(f"{path}: cannot write as JSON: {_one_line(e)}") from None
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``.

    Missing, unreadable, empty, truncated or corrupt files raise :class:`ModelError`
    (a ``ValueError``) with a one-line message naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a JSON file") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {_one_line(e.strerror or e)}") from None
    if not raw.strip():
        raise ModelError(f"{path}: empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a UTF-8 text file (corrupt?)") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
        what = "truncated" if cut else "corrupt"
        raise ModelError(f"{path}: invalid JSON ({what}): {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{path}: invalid JSON: {_one_line(e)}") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a JSON object at the top level, got {type(obj).__name__}")
    return obj
