"""Checkpoints: ``DIR/supernet.pt`` (a plain dict of tensors, numbers and strings, saved with
``torch.save`` and loaded with ``weights_only=True``) and ``DIR/supernet.json`` (the metadata:
space, widths, classes, dataset fingerprint, training configuration, history), and the checks
a checkpoint must pass to be resumed or loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable

import torch

from ...errors import InputError, first_line
from ..data import BUILTIN_DIGITS, ImageDataset, input_size
from .network import Supernet

if TYPE_CHECKING:
    from .training import TrainConfig

FORMAT = "hwnas-supernet"
VERSION = 1
CHECKPOINT = "supernet.pt"
META = "supernet.json"
SPACE_KEYS = ("resolutions", "width_mults", "depths", "kernels", "expands")
"""The choice lists of a space dict (``SearchSpace.to_dict``) that checkpoints are checked on."""


def checkpoint_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(out_dir)
    return d / CHECKPOINT, d / META


def _meta_doc(net: Supernet, data: ImageDataset, cfg: TrainConfig, epochs_done: int, step: int,
              history: list, mean, std, seconds: float) -> dict:
    return {"format": FORMAT, "version": VERSION, **net.meta(),
            "dataset": data.describe() | {"mean": mean, "std": std},
            "config": cfg.to_dict(), "epochs_done": epochs_done, "step_in_epoch": step,
            "train_seconds": seconds, "history": history,
            "input_sizes": {str(r): list(input_size(r, data.hw, max(net.space.resolutions)))
                            for r in net.space.resolutions}}


def _save_checkpoint(out_dir: Path, net: Supernet, opt: torch.optim.Optimizer, meta: dict) -> None:
    ckpt, meta_path = checkpoint_paths(out_dir)
    blob = {"format": FORMAT, "version": VERSION, "epoch": int(meta["epochs_done"]),
            "step_in_epoch": int(meta["step_in_epoch"]), "model": net.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else {}, "meta": json.dumps(meta, sort_keys=True)}
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, ckpt)
    from ...predictors.serialize import save_json

    save_json(meta, meta_path)


def read_meta(out_dir: str | os.PathLike) -> dict:
    """The metadata JSON of a supernet directory; clear errors when missing or corrupt."""
    from ...predictors.serialize import load_json

    ckpt, meta_path = checkpoint_paths(out_dir)
    if not meta_path.is_file():
        raise InputError(f"no supernet in {out_dir} ({META} missing); train one with "
                         f"`hwnas supernet train --data {BUILTIN_DIGITS} --out {out_dir}`")
    try:
        meta = load_json(meta_path)
    except ValueError as e:
        raise InputError(f"supernet metadata {meta_path} is unreadable: {e}") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{meta_path} is not a supernet metadata file (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(f"{meta_path} has format version {meta.get('version')}; upgrade hwnas to read it")
    return meta


def _load_blob(ckpt: Path, source: IO[bytes] | None = None) -> dict:
    """The checkpoint ``ckpt`` (read from ``source`` if given: its bytes sent by another rank)."""
    if source is None and not ckpt.is_file():
        raise InputError(f"no supernet checkpoint {ckpt}; train one with "
                         f"`hwnas supernet train --data {BUILTIN_DIGITS} --out {ckpt.parent}`")
    try:
        blob = torch.load(ckpt if source is None else source, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise InputError(f"supernet checkpoint {ckpt} is corrupt or not a weights-only checkpoint: "
                         f"{first_line(e)[:200]}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "model" not in blob:
        raise InputError(f"{ckpt} is not an hwnas supernet checkpoint")
    return blob


def _choices_within(inner: Iterable, outer: Iterable) -> bool:
    """True if every value of ``inner`` is one of ``outer`` (compared as floats)."""
    return set(map(float, inner)) <= set(map(float, outer))


def space_covers(outer: dict, inner: dict) -> bool:
    """True if every choice of space dict ``inner`` is also a choice of ``outer``."""
    try:
        return all(_choices_within(inner[k], outer[k]) for k in SPACE_KEYS)
    except (KeyError, TypeError, ValueError):
        return False


def _check_compatible(meta: dict, want: dict, where: str, exact: bool = True) -> None:
    """``want``: the wanted net's meta (space, n_classes, kernel_mode).  ``exact`` (resuming):
    the same space; otherwise (estimating) the checkpoint's space must cover the wanted one."""
    got_space, want_space = meta.get("space") or {}, want["space"]
    if exact:
        diffs = [k for k in SPACE_KEYS if list(map(float, got_space.get(k) or [])) != list(map(float, want_space[k]))]
    else:
        diffs = [k for k in SPACE_KEYS if not _choices_within(want_space[k], got_space.get(k) or [])]
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {got_space.get(k)} vs wanted {want_space[k]}" for k in diffs)
        what = "width multipliers" if diffs == ["width_mults"] else "search space"
        raise InputError(f"{where} was trained for another {what} ({detail})")
    for key in ("n_classes", "kernel_mode"):
        if key in want and meta.get(key) != want[key]:
            raise InputError(f"{where} has {key} {meta.get(key)!r}, expected {want[key]!r}")


def _check_state_shapes(net: Supernet, state: dict, where: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise InputError(f"{where} does not match this supernet (missing {missing[:2]}, unexpected {extra[:2]}); "
                         f"was it made for another space or width?")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"{where}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} "
                             f"(a checkpoint of another space or width?)")
